//! Python objects <-> rask values.
//!
//! Values that rask has a type for cross as that type (None, bool, int in
//! i64, float, str), so built-in ops read them and nothing is pickled; every
//! other object crosses as a pickle (protocol 5) in `Value::Bytes`, marked by
//! [`PICKLE_MAGIC`] so that it is never mistaken for a `bytes` result of a
//! built-in op. Lists of values (a built-in op's result) become lists; a
//! table (a dataframe partition) becomes a pandas DataFrame.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString};
use rask_core::Value;

/// Marks a pickled Python object inside `Value::Bytes`.
pub const PICKLE_MAGIC: &[u8] = b"\x00rask-pickle5\x00";

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TABLE_TO_PANDAS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn protocol_fn<'py>(py: Python<'py>, cell: &'static PyOnceLock<Py<PyAny>>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || Ok::<_, PyErr>(py.import("rask._protocol")?.getattr(name)?.unbind()))
        .map(|f| f.bind(py).clone())
}

/// A Python object as a rask value.
pub fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::None);
    }
    if obj.is_exact_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract()?));
    }
    if obj.is_exact_instance_of::<PyInt>()
        && let Ok(i) = obj.extract::<i64>()
    {
        return Ok(Value::Int(i));
    }
    if obj.is_exact_instance_of::<PyFloat>() {
        return Ok(Value::Float(obj.extract()?));
    }
    if obj.is_exact_instance_of::<PyString>() {
        return Ok(Value::Str(obj.extract::<String>()?.into()));
    }
    if let Some(array) = numpy_value(obj)? {
        return Ok(Value::Array(array));
    }
    if let Ok(t) = obj.cast::<crate::frame::ArrowTable>() {
        return Ok(Value::Table(t.get().table.clone()));
    }
    pickled(obj)
}

/// A numpy ndarray of a dtype rask has (native byte order) as an array
/// value, copied once; None for anything else (which is pickled).
fn numpy_value(obj: &Bound<'_, PyAny>) -> PyResult<Option<rask_core::ArrayValue>> {
    let t = obj.get_type();
    if t.name()? != "ndarray" || t.module()? != "numpy" {
        return Ok(None);
    }
    let dtype = obj.getattr("dtype")?;
    if !dtype.getattr("isnative")?.extract::<bool>()? {
        return Ok(None);
    }
    let Some(d) = rask_core::DType::from_name(&dtype.getattr("name")?.extract::<String>()?) else {
        return Ok(None);
    };
    let source = if d == rask_core::DType::Bool { obj.call_method1("view", ("uint8",))? } else { obj.clone() };
    crate::array::value_from_buffer(&source, d).map(Some)
}

/// Pickles any object (the protocol module adds the mark).
pub fn pickled(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let py = obj.py();
    let data = protocol_fn(py, &DUMPS, "dumps")?.call1((obj,))?;
    let data = data.cast::<PyBytes>().map_err(PyErr::from)?;
    Ok(Value::Bytes(Bytes::copy_from_slice(data.as_bytes())))
}

/// A rask value as a Python object.
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::None => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(x) => PyFloat::new(py, *x).into_any(),
        Value::Str(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) if b.starts_with(PICKLE_MAGIC) => {
            protocol_fn(py, &LOADS, "loads")?.call1((PyBytes::new(py, b),))?
        }
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::List(items) => {
            PyList::new(py, items.iter().map(|v| to_py(py, v)).collect::<PyResult<Vec<_>>>()?)?.into_any()
        }
        Value::Array(a) => crate::array::to_numpy(py, a.clone(), false)?,
        // A partition: a pandas DataFrame through the Arrow C stream (no copy
        // into pyarrow; `rask.dataframe._convert` maps the dtypes).
        Value::Table(t) => {
            let stream = crate::frame::ArrowStream::new(t.schema(), vec![t.batch().clone()]);
            let convert = TABLE_TO_PANDAS.get_or_try_init(py, || {
                Ok::<_, PyErr>(py.import("rask.dataframe._convert")?.getattr("table_to_pandas")?.unbind())
            })?;
            convert.bind(py).call1((stream,))?
        }
    })
}
