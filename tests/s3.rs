//! S3 on a real cluster: a `rask scheduler` and two `rask worker`
//! processes read a partitioned CSV from moto_server and write Parquet
//! back. The test body runs in a child process with the standard AWS
//! environment (`Moto::run_in_env`); the scheduler and workers inherit it,
//! as pods get it from IRSA or secrets. Workers read their own byte ranges:
//! the client process sends no partition reads.

use std::time::Duration;

use rask::Client;
use rask_dataframe::{CsvOptions, col, read_csv, read_parquet};
use rask_storage::testing::Moto;
use rask_tests::processes::{Scheduler, WorkerKind, start_worker};

const FIXTURE: &str = r#"
import numpy as np, pandas as pd
s3.create_bucket(Bucket='cluster')
rng = np.random.default_rng(3)
n = 60000
df = pd.DataFrame({
    'id': np.arange(n),
    'state': rng.choice(['AK', 'CA', 'NY', 'TX'], n),
    'births': rng.integers(0, 1000, n),
    'note': np.where(rng.random(n) < 0.01, 'two\nlines, "quoted"', 'plain'),
})
for i, part in enumerate(np.array_split(df, 3)):
    s3.put_object(Bucket='cluster', Key=f'in/births-{i}.csv', Body=part.to_csv(index=False).encode())
print(int(df.births.sum()), int(df[df.state == 'AK'].births.sum()))
"#;

#[test]
fn workers_read_csv_from_s3_and_write_parquet_back() {
    let moto = Moto::start();
    if !moto.run_in_env("workers_read_csv_from_s3_and_write_parquet_back") {
        return;
    }
    let expected: Vec<i64> =
        moto.python(FIXTURE, &[]).split_whitespace().map(|x| x.parse().expect("numbers")).collect();
    let s = Scheduler::start(&[]);
    let _workers: Vec<_> =
        (0..2).map(|i| start_worker(WorkerKind::Rask, &s.address, &format!("s3w{i}"), 2, &[])).collect();
    s.wait_for_workers(2, Duration::from_secs(30));
    let client = Client::connect(&s.address).expect("connect");

    let df = read_csv("s3://cluster/in/*.csv", CsvOptions::default().blocksize(Some(100_000))).expect("read_csv");
    assert!(df.npartitions() >= 9, "{} partitions", df.npartitions());
    let ak = df.filter(col("state").eq("AK")).expect("filter");

    let before = rask_storage::counters();
    let paths = ak.to_parquet("s3://cluster/out/").expect("to_parquet on the workers");
    let total: f64 = df.col("births").sum().expect("sum").compute().expect("compute");
    assert_eq!(
        rask_storage::counters(),
        before,
        "the client sent S3 requests while the workers computed: data went through it"
    );
    assert_eq!(total, expected[0] as f64);
    assert_eq!(paths.len(), df.npartitions());

    // pyarrow reads what the workers wrote.
    let check = moto.python(
        "import io, pyarrow as pa, pyarrow.parquet as pq\n\
         keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket='cluster', Prefix='out/')['Contents'])\n\
         t = pa.concat_tables([pq.read_table(io.BytesIO(s3.get_object(Bucket='cluster', Key=k)['Body'].read())) for k in keys])\n\
         df = t.to_pandas()\n\
         print(len(keys), int(df.births.sum()), sorted(set(df.state)))",
        &[],
    );
    assert_eq!(check.trim(), format!("{} {} ['AK']", paths.len(), expected[1]));

    // And the cluster reads it back, one partition per row group.
    let back = read_parquet("s3://cluster/out/", Some(&["births"])).expect("read_parquet");
    let again: f64 = back.col("births").sum().expect("sum").compute().expect("compute");
    assert_eq!(again, expected[1] as f64);
    client.close();
}
