//! One tokio runtime shared by every storage call in the process.
//!
//! Ops run on the executor's plain threads, not in async code, so the
//! storage API is blocking. Each call spawns its future on this runtime and
//! waits on a std channel: that works from any thread, including one inside
//! another runtime (where `Runtime::block_on` would panic).

use std::future::Future;
use std::sync::{Mutex, OnceLock};

use tokio::runtime::Runtime;

use crate::error::{Result, StorageError};

/// The runtime once built. A failed build is not kept: the next call tries
/// again (a `OnceLock<Result<..>>` would remember the failure forever).
static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Held while building, so concurrent first calls build one runtime.
static BUILDING: Mutex<()> = Mutex::new(());

fn runtime() -> Result<&'static Runtime> {
    get_or_try_init(&RUNTIME, &BUILDING, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rask-storage")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Runtime(e.to_string()))
    })
}

/// `cell`'s value, made by `init` if there is none yet; an error is
/// returned and not stored, so a later call runs `init` again.
fn get_or_try_init<'a, T>(
    cell: &'a OnceLock<T>,
    building: &Mutex<()>,
    init: impl FnOnce() -> Result<T>,
) -> Result<&'a T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let _guard = building.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let value = init()?;
    Ok(cell.get_or_init(|| value))
}

/// Runs `future` on the shared runtime and waits for its output.
pub(crate) fn block_on<F>(future: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        // The receiver only goes away if the caller's thread died.
        let _ = tx.send(future.await);
    });
    rx.recv().map_err(|_| StorageError::Runtime("a storage task ended without an answer".into()))
}

/// Starts `future` on the shared runtime without waiting for it.
pub(crate) fn spawn<F>(future: F) -> Result<tokio::task::JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(runtime()?.spawn(future))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_is_tried_again() {
        let cell: OnceLock<u32> = OnceLock::new();
        let building = Mutex::new(());
        let mut calls = 0;
        let first = get_or_try_init(&cell, &building, || {
            calls += 1;
            Err(StorageError::Runtime("no threads left".into()))
        });
        assert!(first.is_err());
        let second = get_or_try_init(&cell, &building, || {
            calls += 1;
            Ok(7)
        });
        assert_eq!(second.ok(), Some(&7));
        let third = get_or_try_init(&cell, &building, || {
            calls += 1;
            Ok(8)
        });
        assert_eq!(third.ok(), Some(&7), "a made value is kept");
        assert_eq!(calls, 2);
    }
}
