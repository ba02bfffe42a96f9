//! A worker's scratch directory, where spilled values go, and the clean-up
//! of the ones left behind by workers that never got to remove theirs
//! (SIGKILL, the OOM killer, a node losing power).
//!
//! Each directory, `rask-worker-<pid>-<n>` under the system's temporary
//! directory unless the user names one, holds a `.lock` file that its worker
//! keeps locked (`flock`) for as long as it runs. A starting worker removes
//! every sibling whose lock it can take: the process that held it is gone,
//! because the kernel drops a lock with its holder. This is what Dask's
//! `dask-scratch-space` purge does with its lock files.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

const PREFIX: &str = "rask-worker-";
const LOCK: &str = ".lock";

/// A directory that lives while its worker does. It is removed on drop when
/// this process made it, and kept when the user named it.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    owned: bool,
    // Held for the directory's life; the kernel releases it if we die.
    _lock: Option<File>,
}

impl WorkDir {
    /// Uses `local_directory` when the user gave one (it is neither locked
    /// nor removed), or else makes a fresh locked directory under the
    /// temporary directory after removing stale ones there.
    pub fn new(local_directory: Option<&Path>) -> io::Result<Self> {
        match local_directory {
            Some(dir) => Ok(Self { path: dir.to_path_buf(), owned: false, _lock: None }),
            None => Self::create_in(&std::env::temp_dir()),
        }
    }

    /// Makes `rask-worker-<pid>-<n>` under `parent` and locks it, after
    /// removing the siblings nobody holds.
    pub fn create_in(parent: &Path) -> io::Result<Self> {
        static N: AtomicU64 = AtomicU64::new(0);
        let removed = purge_stale(parent, STALE_AFTER);
        if removed > 0 {
            tracing::info!(removed, parent = %parent.display(), "removed scratch directories of workers that are gone");
        }
        std::fs::create_dir_all(parent)?;
        loop {
            let n = N.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("{PREFIX}{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            let lock = OpenOptions::new().create(true).truncate(false).write(true).open(path.join(LOCK))?;
            lock.try_lock().map_err(|e| match e {
                TryLockError::Error(e) => e,
                TryLockError::WouldBlock => io::Error::other("a fresh scratch directory's lock is held"),
            })?;
            return Ok(Self { path, owned: true, _lock: Some(lock) });
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A directory younger than this is never taken for stale: its worker may
/// be between making it and locking it.
const STALE_AFTER: Duration = Duration::from_secs(10);

/// Removes the `rask-worker-*` directories under `parent` whose lock no
/// process holds (or that never got a lock and are older than `min_age`).
/// Returns how many it removed. Errors are skipped: clean-up is best effort
/// and must never stop a worker from starting.
pub fn purge_stale(parent: &Path, min_age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else { return 0 };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(|n| n.starts_with(PREFIX)) {
            continue;
        }
        // Not following symlinks: only real directories are ours to remove.
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        if !meta.is_dir() {
            continue;
        }
        let old = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).is_some_and(|age| age >= min_age);
        let path = entry.path();
        let stale = match File::open(path.join(LOCK)) {
            Ok(lock) => match lock.try_lock() {
                // Removed while we hold the lock; the open file keeps it until then.
                Ok(()) => old,
                Err(_) => false,
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => old,
            Err(_) => false,
        };
        if stale && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rask-workdir-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_worker_directory_is_locked_while_it_lives_and_removed_after() {
        let parent = scratch("life");
        let dir = WorkDir::create_in(&parent).unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.file_name().unwrap().to_str().unwrap().starts_with(PREFIX));
        std::fs::write(path.join("spilled"), b"x").unwrap();
        // Held: not stale even with no minimum age.
        assert_eq!(purge_stale(&parent, Duration::ZERO), 0);
        assert!(path.join("spilled").exists());
        drop(dir);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(parent);
    }

    #[test]
    fn directories_of_dead_workers_are_purged_and_others_kept() {
        let parent = scratch("purge");
        // A dead worker's directory: its lock file is there, nobody holds it.
        let dead = parent.join(format!("{PREFIX}999999-0"));
        std::fs::create_dir_all(dead.join("spill")).unwrap();
        std::fs::write(dead.join(LOCK), b"").unwrap();
        std::fs::write(dead.join("spill").join("k"), vec![0u8; 1000]).unwrap();
        // One that never got its lock file, and something that is not ours.
        let unlocked = parent.join(format!("{PREFIX}999999-1"));
        std::fs::create_dir_all(&unlocked).unwrap();
        let other = parent.join("something-else");
        std::fs::create_dir_all(&other).unwrap();
        // Too young to judge yet: both kept.
        assert_eq!(purge_stale(&parent, Duration::from_secs(3600)), 0);
        assert!(dead.exists() && unlocked.exists());
        let live = WorkDir::create_in(&parent).unwrap();
        assert_eq!(purge_stale(&parent, Duration::ZERO), 2);
        assert!(!dead.exists() && !unlocked.exists());
        assert!(other.exists());
        assert!(live.path().exists(), "a live worker's directory stays");
        drop(live);
        let _ = std::fs::remove_dir_all(parent);
    }

    #[test]
    fn a_named_directory_is_neither_locked_nor_removed() {
        let parent = scratch("named");
        let dir = WorkDir::new(Some(&parent)).unwrap();
        assert_eq!(dir.path(), parent);
        drop(dir);
        assert!(parent.exists());
        let _ = std::fs::remove_dir_all(parent);
    }
}
