//! Dataframe benchmarks: the tutorial's Birthdays workflow, and
//! `str.value_counts()` over a glob of Wikipedia-edits-shaped CSV files.

use std::path::Path;
use std::time::Instant;

use rask::{Client, LocalCluster};
use rask_dataframe::{CsvOptions, datasets, read_csv};

fn emit(workload: &str, seconds: f64, extra: serde_json::Value) {
    let mut row = serde_json::json!({"engine": "rask-local", "workload": workload, "seconds": seconds});
    if let (Some(m), Some(e)) = (row.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    println!("{row}");
}

/// read, filter, groupby-mean, nlargest, unique, value_counts: each its own
/// compute, as the tutorial runs them.
pub fn birthdays(path: Option<&Path>, threads: usize, repeat: usize) -> anyhow::Result<()> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => datasets::birthdays().ok_or_else(|| anyhow::anyhow!("Birthdays.csv not found; pass --path"))?,
    };
    let path = path.to_str().ok_or_else(|| anyhow::anyhow!("path is not UTF-8"))?.to_string();
    let cluster = LocalCluster::new(1, threads)?;
    let _client = Client::new(&cluster);
    for _ in 0..repeat {
        let start = Instant::now();
        let df = read_csv(&path, CsvOptions::default())?;
        let n = df.len()?;
        let ak = df.filter(df.col("state").eq("AK"))?.len()?;
        let means = df.groupby(&["state"]).mean()?;
        let _ = means.compute()?;
        let top = means.col("births").nlargest(10)?.compute()?;
        let unique = df.col("state").unique()?.compute()?;
        let counts = df.col("state").value_counts()?.compute()?;
        let secs = start.elapsed().as_secs_f64();
        emit(
            "birthdays",
            secs,
            serde_json::json!({"rows": n, "ak": ak, "top": top.num_rows(), "states": unique.num_rows(), "counts": counts.num_rows()}),
        );
    }
    Ok(())
}

/// Generates the Wikipedia-shaped files once (a marker records the size).
pub fn ensure_wiki(dir: &Path, files: usize, bytes: u64) -> anyhow::Result<()> {
    let marker = dir.join(format!("done-{files}-{bytes}"));
    if marker.exists() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    datasets::write_wiki_csvs(dir, files, bytes, 11)?;
    std::fs::write(marker, b"")?;
    Ok(())
}

/// `read_csv(glob).str.value_counts()`.
pub fn wiki(dir: &Path, files: usize, bytes: u64, threads: usize, repeat: usize) -> anyhow::Result<()> {
    ensure_wiki(dir, files, bytes)?;
    let cluster = LocalCluster::new(1, threads)?;
    let _client = Client::new(&cluster);
    let pattern = format!("{}/*.csv", dir.display());
    for _ in 0..repeat {
        let start = Instant::now();
        let df = read_csv(&pattern, CsvOptions::default())?;
        let counts = df.col("str").value_counts()?.compute()?;
        let secs = start.elapsed().as_secs_f64();
        let top = counts.i64s("count")?.first().copied().flatten().unwrap_or(0);
        emit(
            "wiki",
            secs,
            serde_json::json!({"bytes": files as u64 * bytes, "distinct": counts.num_rows(), "top": top, "partitions": df.npartitions()}),
        );
    }
    Ok(())
}
