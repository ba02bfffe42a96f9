//! The op `python.call`: runs a cloudpickled Python function.
//!
//! A task's arguments are the pickled function (`Value::Bytes`, shared by
//! every task of one `delayed(f)`), then either `None` and the function's
//! positional arguments, or a pickled template of `(args, kwargs)` with
//! placeholders and the values that fill them (nested or keyword arguments).
//! The op is registered in this module only, so only processes that host
//! Python can run it: the scheduler routes these tasks by capability
//! (`rask_core::Capabilities::PYTHON`). The GIL is held only inside.

use std::sync::Mutex;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyTuple};
use rask_core::{OpEntry, OpError, Params, Value};
use rustc_hash::FxHashMap;

use crate::values::{to_py, to_value};

rask_core::inventory::submit! {
    OpEntry { name: rask_core::capability::PYTHON_CALL, func: python_call }
}

/// Unpickled functions by their pickle: a `delayed(f)` over 100,000 items
/// unpickles `f` once per process, not once per task.
static FUNCTIONS: Mutex<Option<FxHashMap<Bytes, Py<PyAny>>>> = Mutex::new(None);
/// More distinct functions than this and the cache starts again.
const MAX_FUNCTIONS: usize = 4096;

static LOADS_FUNCTION: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static CALL_TEMPLATE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ENCODE_EXCEPTION: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn protocol<'py>(py: Python<'py>, cell: &'static PyOnceLock<Py<PyAny>>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || Ok::<_, PyErr>(py.import("rask._protocol")?.getattr(name)?.unbind()))
        .map(|f| f.bind(py).clone())
}

fn python_call(_params: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    keep_thread_state();
    Python::attach(|py| call(py, args))
}

thread_local! {
    static THREAD_STATE_KEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Gives this (worker) thread a Python thread state that outlives each task.
///
/// Attaching a thread that has none creates a thread state and detaching
/// destroys it again: for tiny Python tasks that was a large part of each
/// task. Taking the GIL once through `PyGILState_Ensure` without the
/// matching release keeps the thread state registered for the thread's
/// life; every later attach only takes and gives back the GIL.
fn keep_thread_state() {
    THREAD_STATE_KEPT.with(|kept| {
        if kept.get() {
            return;
        }
        // SAFETY: the interpreter is initialised (this module was imported by
        // it) and this thread holds no GIL here (ops run on worker threads,
        // outside any attach). Ensure takes the GIL and registers a thread
        // state; SaveThread releases the GIL but keeps the state, so the
        // matching PyGILState_Release is deliberately never called.
        unsafe {
            let _ = pyo3::ffi::PyGILState_Ensure();
            pyo3::ffi::PyEval_SaveThread();
        }
        kept.set(true);
    });
}

fn call(py: Python<'_>, args: Vec<Value>) -> Result<Value, OpError> {
    let mut args = args.into_iter();
    let Some(Value::Bytes(func)) = args.next() else {
        return Err(OpError::new("python.call: the first argument must be a pickled function"));
    };
    let template = args.next().unwrap_or_default();
    let func = load_function(py, func).map_err(|e| op_error(py, e))?;
    let values = args.map(|v| to_py(py, &v)).collect::<PyResult<Vec<_>>>().map_err(|e| op_error(py, e))?;
    let result = match template {
        Value::None => PyTuple::new(py, values).and_then(|a| func.call1(a)),
        Value::Bytes(t) => PyList::new(py, values)
            .and_then(|a| protocol(py, &CALL_TEMPLATE, "call_template")?.call1((func, PyBytes::new(py, &t), a))),
        other => {
            return Err(OpError::new(format!("python.call: the template must be bytes, found {}", other.type_name())));
        }
    };
    result.and_then(|r| to_value(&r)).map_err(|e| op_error(py, e))
}

fn load_function(py: Python<'_>, pickle: Bytes) -> PyResult<Bound<'_, PyAny>> {
    {
        let cache = FUNCTIONS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = cache.as_ref().and_then(|c| c.get(&pickle)) {
            return Ok(f.bind(py).clone());
        }
    }
    // Unpickling may import modules and release the GIL: not under the lock.
    let f = protocol(py, &LOADS_FUNCTION, "loads_function")?.call1((PyBytes::new(py, &pickle),))?;
    let mut cache = FUNCTIONS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cache = cache.get_or_insert_with(FxHashMap::default);
    if cache.len() >= MAX_FUNCTIONS {
        cache.clear();
    }
    cache.insert(pickle, f.clone().unbind());
    Ok(f)
}

/// The task's error: the exception's type, message and traceback, with the
/// pickled exception for the client to raise again (`rask._protocol`). The
/// traceback is passed apart: before Python 3.12 a fetched exception does
/// not carry it yet.
fn op_error(py: Python<'_>, err: PyErr) -> OpError {
    let encoded = protocol(py, &ENCODE_EXCEPTION, "encode_exception")
        .and_then(|f| f.call1((err.value(py), err.traceback(py))))
        .and_then(|s| s.extract::<String>());
    OpError::new(encoded.unwrap_or_else(|_| err.to_string()))
}
