//! `rask._rask`: the native module under the Python package `rask`.
//!
//! The engine stays in Rust: a Python `delayed(f)(x)` builds the same
//! `rask::Delayed` node a Rust program builds, `compute` submits it through
//! `rask::Client` to the embedded local cluster or a remote scheduler, and
//! every wait into the engine releases the GIL. A Python function runs as
//! the op `python.call` (see `op.rs`), which takes the GIL only while Python
//! code runs. The pure-Python layer (`python/rask/`) gives the API Dask's
//! names; this module gives it nodes, clients, futures and workers.

// PyO3's macros expand to `unsafe` FFI glue; the crate's own code has none.
#![allow(unsafe_code)]

mod array;
mod client;
mod errors;
mod frame;
mod graph;
mod image;
mod op;
mod values;
mod worker;

use pyo3::prelude::*;

// The product's allocator, as in the `rask` binary: array chunks are large
// and glibc hands them back to the OS on every free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Names of every op this module can run: the built-ins of a `rask worker`
/// and `python.call`.
#[pyfunction]
fn registered_ops() -> Vec<&'static str> {
    link_builtin_ops();
    let mut names: Vec<&'static str> = rask_core::OpRegistry::global().names().collect();
    names.sort_unstable();
    names
}

/// Refers to each module that registers ops, so that the linker keeps their
/// registrations in this library even though nothing else here calls them.
fn link_builtin_ops() {
    let names = [
        rask_array::kernels::FULL,
        rask_dataframe::kernels::CSV_SCAN,
        rask_dataframe::ml::MOMENTS,
        rask_image::io::READ_OP,
        rask_image::measure::LABEL_BLOCK_OP,
        rask_image::filters::FILTER_OP,
    ];
    std::hint::black_box(names);
}

#[pymodule]
fn _rask(m: &Bound<'_, PyModule>) -> PyResult<()> {
    link_builtin_ops();
    m.add_function(wrap_pyfunction!(registered_ops, m)?)?;
    m.add("PYTHON_CALL", rask_core::capability::PYTHON_CALL)?;
    m.add("PICKLE_MAGIC", pyo3::types::PyBytes::new(m.py(), values::PICKLE_MAGIC))?;
    graph::register(m)?;
    array::register(m)?;
    image::register(m)?;
    client::register(m)?;
    worker::register(m)?;
    frame::register(m)?;
    Ok(())
}
