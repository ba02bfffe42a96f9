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
