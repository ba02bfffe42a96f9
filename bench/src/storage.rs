//! `rask-bench s3-read`: read throughput from S3 (a local moto_server) and
//! from local disk, with the number of S3 requests per file. For
//! information only: moto is a Python test double, not a performance peer
//! of S3, MinIO or Ceph.
//!
//! The command starts moto_server from the reference venv, then re-runs
//! itself with the standard AWS environment pointing at it (the storage
//! layer reads its configuration from the environment, and setting
//! variables in a running process is unsafe).

use std::time::Instant;

use rask::{Client, LocalCluster};
use rask_dataframe::{CsvOptions, read_csv, read_parquet};
use rask_storage::StorageOptions;
use rask_storage::testing::Moto;

const CHILD: &str = "RASK_BENCH_S3_CHILD";

fn emit(workload: &str, source: &str, seconds: f64, bytes: u64, files: usize, requests: u64) {
    let row = serde_json::json!({
        "engine": "rask-local",
        "workload": workload,
        "source": source,
        "seconds": seconds,
        "mb_per_s": bytes as f64 / 1e6 / seconds.max(1e-9),
        "requests_per_file": requests as f64 / files as f64,
    });
    println!("{row}");
}

/// A CSV text of about `bytes` bytes: `id,x,state`.
fn csv_text(bytes: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 64);
    out.extend_from_slice(b"id,x,state\n");
    let mut i = 0u64;
    while out.len() < bytes {
        let x = (i.wrapping_mul(2_654_435_761).wrapping_add(seed) % 1_000_000) as f64 / 1000.0;
        let state = ["AK", "CA", "NY", "TX"][(i % 4) as usize];
        out.extend_from_slice(format!("{i},{x},{state}\n").as_bytes());
        i += 1;
    }
    out
}

pub fn s3_read(files: usize, mib: usize, threads: usize, repeat: usize) -> anyhow::Result<()> {
    if std::env::var_os(CHILD).is_none() {
        let moto = Moto::start();
        moto.create_bucket("bench");
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(std::env::args().skip(1))
            .envs(moto.env())
            .env(CHILD, "1")
            .status()?;
        anyhow::ensure!(status.success(), "the benchmark failed against moto at {}", moto.endpoint());
        return Ok(());
    }
    let o = StorageOptions::default();
    let dir = std::env::temp_dir().join(format!("rask-bench-s3-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut total = 0u64;
    for i in 0..files {
        let text = csv_text(mib << 20, i as u64);
        total += text.len() as u64;
        std::fs::write(dir.join(format!("f{i}.csv")), &text)?;
        rask_storage::write(&format!("s3://bench/csv/f{i}.csv"), &text, &o)?;
    }
    let local_glob = format!("{}/*.csv", dir.display());
    let cluster = LocalCluster::new(1, threads)?;
    let _client = Client::new(&cluster);

    for _ in 0..repeat {
        // Whole objects: one GET each, then the same bytes as concurrent
        // 8 MiB ranged GETs; local files with std::fs::read.
        let before = rask_storage::counters();
        let start = Instant::now();
        for i in 0..files {
            rask_storage::read(&format!("s3://bench/csv/f{i}.csv"), &o)?;
        }
        let requests = rask_storage::counters().requests - before.requests;
        emit("get-object", "moto", start.elapsed().as_secs_f64(), total, files, requests);

        let before = rask_storage::counters();
        let start = Instant::now();
        for i in 0..files {
            let url = format!("s3://bench/csv/f{i}.csv");
            let size = rask_storage::stat(&url, &o)?.size;
            rask_storage::read_range(&url, 0, size, &o)?;
        }
        let requests = rask_storage::counters().requests - before.requests;
        emit("ranged-gets-8MiB", "moto", start.elapsed().as_secs_f64(), total, files, requests);

        let start = Instant::now();
        for i in 0..files {
            std::fs::read(dir.join(format!("f{i}.csv")))?;
        }
        emit("get-object", "local", start.elapsed().as_secs_f64(), total, files, 0);

        // read_csv end to end: 16 MB blocks, a scan task per file, then
        // each partition GETs its line-aligned range.
        for (source, pattern) in [("moto", "s3://bench/csv/*.csv".to_string()), ("local", local_glob.clone())] {
            let before = rask_storage::counters();
            let start = Instant::now();
            let df = read_csv(&pattern, CsvOptions::default().blocksize(Some(16_000_000)))?;
            let rows = df.len()?;
            anyhow::ensure!(rows > 0, "no rows read");
            let requests = rask_storage::counters().requests - before.requests;
            emit("read_csv-len", source, start.elapsed().as_secs_f64(), total, files, requests);
        }
    }

    // Parquet: one column of three, per row group a footer and a chunk.
    let df = read_csv("s3://bench/csv/*.csv", CsvOptions::default().blocksize(Some(16_000_000)))?;
    df.to_parquet("s3://bench/pq/")?;
    df.to_parquet(dir.join("pq").to_str().unwrap_or_default())?;
    let pq_files = rask_storage::expand("s3://bench/pq/", &o)?.len();
    for _ in 0..repeat {
        for (source, pattern) in
            [("moto", "s3://bench/pq/".to_string()), ("local", format!("{}/pq/*.parquet", dir.display()))]
        {
            let before = rask_storage::counters();
            let start = Instant::now();
            let pq = read_parquet(&pattern, Some(&["x"]))?;
            let sum: f64 = pq.col("x").sum()?.compute()?;
            anyhow::ensure!(sum > 0.0, "no data");
            let requests = rask_storage::counters().requests - before.requests;
            let read = rask_storage::counters().bytes_read - before.bytes_read;
            emit("read_parquet-one-column", source, start.elapsed().as_secs_f64(), read.max(1), pq_files, requests);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
