//! Lazy nodes for Python: `rask::Delayed` values built from Python calls.

use std::cell::RefCell;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use rask::{ArgPart, Delayed};
use rask_core::{Key, Params, Value};

use crate::errors::to_pyerr;
use crate::values::to_value;

/// A lazy value: a key and the graph that computes it.
#[derive(Debug)]
#[pyclass(frozen, name = "Node", module = "rask._rask")]
pub struct Node {
    pub(crate) inner: Delayed<Value>,
}

#[pymethods]
impl Node {
    #[getter]
    fn key(&self) -> String {
        self.inner.key().to_string()
    }

    fn __repr__(&self) -> String {
        format!("Node('{}')", self.inner.key())
    }
}

thread_local! {
    /// The last function pickle seen, shared by the tasks that call it: one
    /// copy of the bytes for a whole `delayed(f)` map, not one per task.
    static LAST_FUNCTION: RefCell<Option<(Py<PyBytes>, Bytes)>> = const { RefCell::new(None) };
}

pub(crate) fn shared_bytes(b: &Bound<'_, PyBytes>) -> Bytes {
    LAST_FUNCTION.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((obj, bytes)) = last.as_ref()
            && obj.bind(b.py()).is(b)
        {
            return bytes.clone();
        }
        let bytes = Bytes::copy_from_slice(b.as_bytes());
        *last = Some((b.clone().unbind(), bytes.clone()));
        bytes
    })
}

/// One argument: a node is a dependency, anything else a literal value.
pub(crate) fn arg_part(a: &Bound<'_, PyAny>) -> PyResult<ArgPart> {
    if let Ok(node) = a.cast::<Node>() {
        return Ok(ArgPart::of(&node.get().inner));
    }
    Ok(ArgPart::literal(to_value(a)?))
}

/// The lazy call of a pickled function (`python.call`, see `op.rs`).
/// `function` is the pickle itself, or a node of it ([`function_node`]).
#[pyfunction]
#[pyo3(signature = (key, function, template, args))]
fn call_node(
    key: &str,
    function: &Bound<'_, PyAny>,
    template: Option<&Bound<'_, PyBytes>>,
    args: &Bound<'_, PyList>,
) -> PyResult<Node> {
    let mut parts = Vec::with_capacity(args.len() + 2);
    if let Ok(node) = function.cast::<Node>() {
        parts.push(ArgPart::of(&node.get().inner));
    } else {
        parts.push(ArgPart::literal(Value::Bytes(shared_bytes(function.cast::<PyBytes>().map_err(PyErr::from)?))));
    }
    parts.push(ArgPart::literal(template.map_or(Value::None, |t| Value::Bytes(Bytes::copy_from_slice(t.as_bytes())))));
    for a in args.iter() {
        parts.push(arg_part(&a)?);
    }
    let inner = Delayed::from_task(Key::new(key), rask_core::capability::PYTHON_CALL, Params::default(), parts);
    Ok(Node { inner })
}

/// A task whose value is a function's pickle. Graphs for a remote cluster
/// refer to it instead of carrying the pickle in every task: it crosses the
/// network once per worker, not once per call (a function defined in
/// `__main__` pickles to hundreds of bytes).
#[pyfunction]
fn function_node(key: &str, function: &Bound<'_, PyBytes>) -> Node {
    let inner = Delayed::from_task(
        Key::new(key),
        rask_core::ops::builtin::IDENTITY,
        Params::default(),
        vec![ArgPart::literal(Value::Bytes(shared_bytes(function)))],
    );
    Node { inner }
}

/// A lazy value holding a literal (Python's `delayed(obj)` of a non-callable).
#[pyfunction]
fn literal_node(key: &str, value: &Bound<'_, PyAny>) -> PyResult<Node> {
    let v = to_value(value)?;
    let inner = Delayed::from_task(
        Key::new(key),
        rask_core::ops::builtin::IDENTITY,
        Params::default(),
        vec![ArgPart::literal(v)],
    );
    Ok(Node { inner })
}

/// How many tasks the graph behind some nodes has (shared ones once).
#[pyfunction]
fn task_count(nodes: Vec<Bound<'_, Node>>) -> usize {
    let values: Vec<Delayed<Value>> = nodes.iter().map(|n| n.get().inner.clone()).collect();
    rask::task_count(&values)
}

/// Graphviz DOT source of the graph behind some nodes.
#[pyfunction]
fn dot_source(nodes: Vec<Bound<'_, Node>>) -> String {
    let values: Vec<&Delayed<Value>> = nodes.iter().map(|n| &n.get().inner).collect();
    rask::visualize_all(&values).0
}

/// Writes the drawing of some nodes' graph (format from the file name: svg, png, pdf, dot).
#[pyfunction]
fn write_drawing(py: Python<'_>, nodes: Vec<Bound<'_, Node>>, filename: std::path::PathBuf) -> PyResult<()> {
    let values: Vec<&Delayed<Value>> = nodes.iter().map(|n| &n.get().inner).collect();
    let dot = rask::visualize_all(&values);
    py.detach(|| dot.write(&filename)).map_err(|e| to_pyerr(py, e))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Node>()?;
    m.add_function(wrap_pyfunction!(call_node, m)?)?;
    m.add_function(wrap_pyfunction!(literal_node, m)?)?;
    m.add_function(wrap_pyfunction!(function_node, m)?)?;
    m.add_function(wrap_pyfunction!(dot_source, m)?)?;
    m.add_function(wrap_pyfunction!(task_count, m)?)?;
    m.add_function(wrap_pyfunction!(write_drawing, m)?)?;
    Ok(())
}
