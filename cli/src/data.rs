//! The demo's data: where the tutorial's Birthdays file is, and the
//! generated taxi-style trips of the regression section.

use std::path::{Path, PathBuf};

/// The file name the repository ships (`data/Birthdays.csv.xz`).
const BIRTHDAYS: &str = "Birthdays.csv.xz";

/// The tutorial's Birthdays data: beside the installed binary
/// (`<bin>/../share/rask/`, `<bin>/data/`), in the `data/` folder of a
/// checkout at or above the working directory, or in the checkout this
/// binary was built from. `--birthdays` / `RASK_BIRTHDAYS` come first.
pub fn birthdays() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(bin) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        candidates.push(bin.join("../share/rask").join(BIRTHDAYS));
        candidates.push(bin.join("data").join(BIRTHDAYS));
        // A build inside the checkout: target/<profile>/rask.
        candidates.extend(bin.ancestors().map(|d| d.join("data").join(BIRTHDAYS)));
    }
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|d| d.join("data").join(BIRTHDAYS)));
    }
    // The checkout this binary was built from (cli/ is one level down).
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../data").join(BIRTHDAYS));
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
