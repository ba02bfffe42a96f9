//! Where the tutorial's data lives.

use std::path::{Path, PathBuf};

/// The tutorial's `Birthdays.csv`: `$RASK_BIRTHDAYS`, else
/// `shared/data/Birthdays.csv` beside or above the repository checkout,
/// else under `/work/shared/data`.
pub fn birthdays() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RASK_BIRTHDAYS") {
        return Some(PathBuf::from(p));
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf);
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(r) = &repo {
        candidates.push(r.join("shared/data/Birthdays.csv"));
        if let Some(up) = r.parent() {
            candidates.push(up.join("shared/data/Birthdays.csv"));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            candidates.push(dir.join("shared/data/Birthdays.csv"));
        }
    }
    candidates.push(PathBuf::from("/work/shared/data/Birthdays.csv"));
    candidates.into_iter().find(|p| p.is_file())
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

/// Writes a Chicago-taxi-shaped CSV: `taxi_id` (integers, then a float far
/// into the file, where inference from a sample goes wrong), `trip_seconds`,
/// `trip_miles`, `fare` (about 2% missing) and `payment_type`.
pub fn write_taxi_csv(path: &Path, rows: usize, seed: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut g = Gen(seed);
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "taxi_id,trip_seconds,trip_miles,fare,payment_type")?;
    let payments = ["Cash", "Credit Card", "No Charge", "Dispute"];
    for i in 0..rows {
        let secs = 60.0 + g.uniform() * 3600.0;
        let miles = secs / 3600.0 * (8.0 + g.uniform() * 20.0);
        let fare = 3.25 + 0.0025 * secs + 1.8 * miles + (g.uniform() - 0.5) * 2.0;
        let taxi = g.next() % 5000;
        let pay = payments[(g.next() % 4) as usize];
        if i == rows * 9 / 10 {
            write!(w, "{taxi}.5,")?;
        } else {
            write!(w, "{taxi},")?;
        }
        if g.uniform() < 0.02 {
            writeln!(w, "{secs:.0},{miles:.2},,{pay}")?;
        } else {
            writeln!(w, "{secs:.0},{miles:.2},{fare:.2},{pay}")?;
        }
    }
    w.flush()
}

/// Writes CSV files shaped like the tutorial's Wikipedia-edits data
/// (`page_id, last_rev_id, token_id, str, origin_rev_id, in, out`), each of
/// about `bytes` bytes. Tokens follow a Zipf-like law, as words do.
pub fn write_wiki_csvs(dir: &Path, files: usize, bytes: u64, seed: u64) -> std::io::Result<Vec<PathBuf>> {
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
