//! Dataframes on S3: read_csv, read_parquet, to_parquet and to_csv against
//! a real moto_server, fixtures written with boto3/pandas/pyarrow and
//! rask's output checked by pandas and pyarrow. Each body runs in a child
//! process configured by the standard AWS environment.

use rask_dataframe::{CsvOptions, StorageOptions, col, read_csv, read_parquet};
use rask_storage::testing::Moto;

/// Two CSV files (quoted commas and newlines in `note`) and one Parquet
/// file with four row groups, made by pandas and pyarrow.
const FIXTURES: &str = r#"
import io, numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
s3.create_bucket(Bucket='frames')
rng = np.random.default_rng(7)
n = 20000
df = pd.DataFrame({
    'id': np.arange(n),
    'state': rng.choice(['AK', 'CA', 'NY', 'TX'], n),
    'births': rng.integers(0, 1000, n),
    'note': np.where(rng.random(n) < 0.02, 'two\nlines, "quoted"', 'plain'),
    'x': rng.random(n),
})
for i, part in enumerate(np.array_split(df, 2)):
    s3.put_object(Bucket='frames', Key=f'births/{i}.csv', Body=part.to_csv(index=False).encode())
buf = io.BytesIO()
pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf, row_group_size=5000)
s3.put_object(Bucket='frames', Key='pq/data.parquet', Body=buf.getvalue())
print(int(df.births.sum()), int((df.state == 'AK').sum()))
"#;

fn fixtures(moto: &Moto) -> (i64, i64) {
    let out = moto.python(FIXTURES, &[]);
    let v: Vec<i64> = out.split_whitespace().map(|x| x.parse().expect("numbers")).collect();
    (v[0], v[1])
}

#[test]
fn csv_from_s3_to_parquet_and_csv_on_s3() {
    let moto = Moto::start();
    if !moto.run_in_env("csv_from_s3_to_parquet_and_csv_on_s3") {
        return;
    }
    let (births, ak) = fixtures(&moto);
    let df = read_csv("s3://frames/births/*.csv", CsvOptions::default().blocksize(Some(100_000))).expect("read_csv");
    assert!(df.npartitions() >= 6, "byte-range partitions: {}", df.npartitions());
    assert_eq!(df.len().expect("len"), 20_000);
    let total = df.col("births").sum().expect("sum").compute().expect("compute");
    assert_eq!(total, births as f64);
    let only_ak = df.filter(col("state").eq("AK")).expect("filter");
    assert_eq!(only_ak.len().expect("len"), ak as usize);

    // Written back as Parquet, checked by pyarrow.
    let paths = df.to_parquet("s3://frames/out/").expect("to_parquet");
    assert_eq!(paths.len(), df.npartitions());
    assert!(paths[0].starts_with("s3://frames/out/part.0.parquet"));
    let check = moto.python(
        "import io, pyarrow.parquet as pq, pyarrow as pa\n\
         keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket='frames', Prefix='out/')['Contents'])\n\
         t = pa.concat_tables([pq.read_table(io.BytesIO(s3.get_object(Bucket='frames', Key=k)['Body'].read())) for k in keys])\n\
         df = t.to_pandas()\n\
         print(len(keys), len(df), int(df.births.sum()), int(df.note.str.contains('\\n').sum()) > 0)",
        &[],
    );
    assert_eq!(check.trim(), format!("{} 20000 {births} True", paths.len()));

    // And as CSV, checked by pandas.
    let paths =
        df.select(&["id", "state", "births"]).expect("select").to_csv("s3://frames/csv/part-*.csv").expect("to_csv");
    let check = moto.python(
        "import io, pandas as pd\n\
         keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket='frames', Prefix='csv/')['Contents'])\n\
         df = pd.concat([pd.read_csv(io.BytesIO(s3.get_object(Bucket='frames', Key=k)['Body'].read())) for k in keys])\n\
         print(len(keys), len(df), int(df.births.sum()), list(df.columns))",
        &[],
    );
    assert_eq!(check.trim(), format!("{} 20000 {births} ['id', 'state', 'births']", paths.len()));

    // The Parquet rask wrote reads back through rask too.
    let back = read_parquet("s3://frames/out/", Some(&["births"])).expect("read_parquet of a prefix");
    assert_eq!(back.npartitions(), df.npartitions());
    let total = back.col("births").sum().expect("sum").compute().expect("compute");
    assert_eq!(total, births as f64);

    // Per-call options reach the writing tasks: an endpoint where nothing
    // listens fails each write, naming its URL, and leaves no object.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let bad = StorageOptions::default().endpoint_url(&format!("http://127.0.0.1:{port}")).max_attempts(1);
    let e = df.to_parquet_with("s3://frames/nowhere/", &bad).expect_err("dead endpoint").to_string();
    assert!(e.contains("s3://frames/nowhere/part."), "{e}");
    let e = df.to_csv_with("s3://frames/nowhere/p-*.csv", &bad).expect_err("dead endpoint").to_string();
    assert!(e.contains("s3://frames/nowhere/p-"), "{e}");
    let good = StorageOptions::default().endpoint_url(moto.endpoint());
    let paths = df.to_parquet_with("s3://frames/with-options/", &good).expect("to_parquet_with");
    assert_eq!(paths.len(), df.npartitions());
    let left = moto.python("print(s3.list_objects_v2(Bucket='frames', Prefix='nowhere/').get('KeyCount', 0))", &[]);
    assert_eq!(left.trim(), "0", "nothing written through the dead endpoint");
}

#[test]
fn parquet_reads_only_needed_columns_and_row_groups() {
    let moto = Moto::start();
    if !moto.run_in_env("parquet_reads_only_needed_columns_and_row_groups") {
        return;
    }
    let (births, _) = fixtures(&moto);
    let size = rask_storage::stat("s3://frames/pq/data.parquet", &Default::default()).expect("stat").size;
    let df = read_parquet("s3://frames/pq/data.parquet", None).expect("read_parquet");
    assert_eq!(df.npartitions(), 4, "one partition per row group");

    let before = rask_storage::counters();
    let total = df.col("births").sum().expect("sum").compute().expect("compute");
    let used = rask_storage::counters();
    assert_eq!(total, births as f64);
    // Per row group: one footer GET and one GET of the births chunk.
    assert_eq!(used.requests - before.requests, 8, "{used:?} vs {before:?}");
    let read = used.bytes_read - before.bytes_read;
    assert!(read < size, "read {read} bytes of a {size}-byte file for one column of five");

    // Statistics prune row groups: ids 0..4999 are the first group only.
    let before = rask_storage::counters();
    let first = df.filter(col("id").lt(1000)).expect("filter").compute().expect("compute");
    assert_eq!(first.len(), 1000);
    let used = rask_storage::counters();
    // The footer, then the group's five adjacent column chunks as one GET.
    assert_eq!(used.requests - before.requests, 2, "only the first row group is fetched");
}

#[test]
fn missing_objects_are_clear_errors() {
    let moto = Moto::start();
    if !moto.run_in_env("missing_objects_are_clear_errors") {
        return;
    }
    moto.create_bucket("empty-bucket");
    let e = read_csv("s3://no-such-bucket/x.csv", CsvOptions::default()).expect_err("missing bucket").to_string();
    assert!(e.contains("s3://no-such-bucket/x.csv") && e.contains("NoSuchBucket"), "{e}");
    let e = read_csv("s3://empty-bucket/x.csv", CsvOptions::default()).expect_err("missing key").to_string();
    assert!(e.contains("s3://empty-bucket/x.csv") && e.contains("NoSuchKey"), "{e}");
    let e = read_parquet("s3://empty-bucket/*.parquet", None).expect_err("no match").to_string();
    assert!(e.contains("s3://empty-bucket/*.parquet") && e.contains("no files match"), "{e}");
}

/// Compressed CSV objects on S3, each codec pandas infers from a suffix:
/// one partition per object, streamed through its decoder, with pandas'
/// numbers; a bad row names the object and its line.
#[test]
fn compressed_csv_objects_on_s3() {
    let moto = Moto::start();
    if !moto.run_in_env("compressed_csv_objects_on_s3") {
        return;
    }
    let out = moto.python(
        r#"
import bz2, gzip, lzma, numpy as np, pandas as pd, zstandard
s3.create_bucket(Bucket='packed')
rng = np.random.default_rng(3)
n = 30000
df = pd.DataFrame({'state': rng.choice(['AK', 'CA', 'NY'], n), 'births': rng.integers(0, 1000, n)})
text = df.to_csv(index=False).encode()
for suffix, pack in [('gz', gzip.compress), ('bz2', bz2.compress), ('xz', lzma.compress),
                     ('zst', zstandard.ZstdCompressor().compress)]:
    s3.put_object(Bucket='packed', Key=f'b.csv.{suffix}', Body=pack(text))
s3.put_object(Bucket='packed', Key='bad.csv.gz', Body=gzip.compress(b'a,b\n1,2\n3,4,5\n'))
print(int(df.births.sum()), int((df.state == 'AK').sum()))
"#,
        &[],
    );
    let v: Vec<i64> = out.split_whitespace().map(|x| x.parse().expect("numbers")).collect();
    for suffix in ["gz", "bz2", "xz", "zst"] {
        let url = format!("s3://packed/b.csv.{suffix}");
        let df = read_csv(&url, CsvOptions::default().blocksize(Some(50_000))).expect("read_csv");
        assert_eq!(df.npartitions(), 1, "{suffix}");
        assert_eq!(df.col("births").sum().expect("sum").compute().expect("compute"), v[0] as f64, "{suffix}");
        assert_eq!(df.filter(col("state").eq("AK")).expect("filter").len().expect("len"), v[1] as usize, "{suffix}");
    }
    let all = read_csv("s3://packed/b.csv.*", CsvOptions::default()).expect("a glob of objects");
    assert_eq!(all.npartitions(), 4);
    assert_eq!(all.len().expect("len"), 4 * 30000);
    let e = read_csv("s3://packed/bad.csv.gz", CsvOptions::default())
        .expect("builds")
        .compute()
        .expect_err("a row with 3 fields")
        .to_string();
    assert!(e.contains("s3://packed/bad.csv.gz:3:") && e.contains("expected 2 fields"), "{e}");
}
