//! Dataframe benchmarks: the tutorial's Birthdays workflow, and
//! `str.value_counts()` over a glob of Wikipedia-edits-shaped CSV files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rask::{Client, LocalCluster};
use rask_dataframe::{CsvOptions, read_csv};

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
        // The repository's copy (one partition: it is compressed).
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/Birthdays.csv.xz"),
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
    write_wiki_csvs(dir, files, bytes, 11)?;
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

/// A small counter-based generator, so generated files are the same on
/// every machine.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes CSV files shaped like the tutorial's Wikipedia-edits data
/// (`page_id, last_rev_id, token_id, str, origin_rev_id, in, out`), each of
/// about `bytes` bytes. Tokens follow a Zipf-like law, as words do.
fn write_wiki_csvs(dir: &Path, files: usize, bytes: u64, seed: u64) -> std::io::Result<Vec<PathBuf>> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let vocabulary: Vec<String> = (0..50_000).map(|i| format!("tok{i:x}")).collect();
    let mut out = Vec::new();
    for f in 0..files {
        let path = dir.join(format!("wiki-{f}.csv"));
        let mut g = Gen(seed.wrapping_add(f as u64 * 7919));
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        writeln!(w, "page_id,last_rev_id,token_id,str,origin_rev_id,in,out")?;
        let mut written = 0u64;
        let mut row = 0u64;
        while written < bytes {
            let u = g.uniform();
            let word = &vocabulary[((u * u * u * vocabulary.len() as f64) as usize).min(vocabulary.len() - 1)];
            let page = 1000 + row / 500;
            let line = format!(
                "{page},{},{},{word},{},{},{}\n",
                page * 10 + 7,
                row,
                page * 10 + g.next() % 7,
                g.next() % 3,
                g.next() % 2
            );
            w.write_all(line.as_bytes())?;
            written += line.len() as u64;
            row += 1;
        }
        w.flush()?;
        out.push(path);
    }
    Ok(out)
}
