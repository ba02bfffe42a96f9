//! One tokio runtime shared by every storage call in the process.
//!
//! Ops run on the executor's plain threads, not in async code, so the
//! storage API is blocking. Each call spawns its future on this runtime and
//! waits on a std channel: that works from any thread, including one inside
//! another runtime (where `Runtime::block_on` would panic).

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

use crate::error::{Result, StorageError};

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

fn runtime() -> Result<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("rask-storage")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| StorageError::Runtime(e.clone()))
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
