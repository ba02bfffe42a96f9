//! rask's errors as the Python exceptions a Dask user catches.
//!
//! The mapping itself is in `rask._protocol.make_exception` (Python), which
//! also raises a task's original exception again with its traceback; here
//! each error becomes its kind, key and message. Panics never reach Python:
//! [`guarded`] turns one into a `RuntimeError` that says it is a bug.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use rask::ErrorKind;

pub fn to_pyerr(py: Python<'_>, e: rask::Error) -> PyErr {
    let message = e.to_string();
    let (kind, key, message) = match e {
        rask::Error::Task(t) => {
            let kind = match t.kind {
                ErrorKind::Raised => "raised",
                ErrorKind::KilledWorker => "killed",
                ErrorKind::InvalidGraph => "invalid",
                ErrorKind::Cancelled => "cancelled",
            };
            (kind, t.key.to_string(), t.message.clone())
        }
        rask::Error::Graph(_) => ("invalid", String::new(), message),
        rask::Error::Conversion { key, .. } => ("conversion", key.to_string(), message),
        rask::Error::Cancelled(key) => ("cancelled", key.to_string(), message),
        rask::Error::ClusterClosed => ("closed", String::new(), message),
        rask::Error::Timeout(key) => ("timeout", key.to_string(), message),
        rask::Error::Start(_) => ("start", String::new(), message),
        rask::Error::Visualize(_) => ("visualize", String::new(), message),
        rask::Error::Connect { .. } => ("connect", String::new(), message),
        rask::Error::Remote(_) => ("remote", String::new(), message),
    };
    match py.import("rask._protocol").and_then(|m| m.getattr("make_exception")?.call1((kind, key, message))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

/// Runs engine code; a panic becomes a `RuntimeError` instead of unwinding
/// into the interpreter.
pub fn guarded<T>(f: impl FnOnce() -> T) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        PyRuntimeError::new_err(format!("internal error in rask (please report it): {what}"))
    })
}
