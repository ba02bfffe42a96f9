//! Dataframes for Python: `rask_dataframe`'s `DataFrame`, `Series` and
//! `GroupBy` as native classes under `rask.dataframe` (pure Python), and
//! Arrow data crossing to pyarrow and back through the Arrow C stream
//! interface (the `__arrow_c_stream__` PyCapsule protocol), without a copy.
//!
//! The classes here are thin: arguments arrive already parsed by the Python
//! layer, which also maps results to pandas (index, names, dtypes).

use std::sync::{Arc, Mutex};

use arrow::array::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use arrow::datatypes::SchemaRef;
use arrow::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use pyo3::exceptions::{PyFileNotFoundError, PyKeyError, PyPermissionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyCapsule, PyFloat, PyInt, PyString};
use rask::{ArgPart, Delayed};
use rask_core::{Key, Params, TableValue, Value};
use rask_dataframe::expr::BinOp;
use rask_dataframe::{CsvOptions, DtPart, Expr, FrameError, How, Lit, StorageOptions, StrOp};

use crate::client::PyFuture;
use crate::errors::{guarded, to_pyerr};
use crate::graph::Node;

/// A rask dataframe error as the exception pandas or Dask raises.
pub fn frame_err(py: Python<'_>, e: FrameError) -> PyErr {
    match e {
        FrameError::Rask(e) => to_pyerr(py, e),
        FrameError::Schema(m) => {
            if m.starts_with("no column") || m.contains("has no column") || m.contains("not a column") {
                PyKeyError::new_err(m)
            } else if m.contains("unknown dtype")
                || m.contains("cannot apply")
                || m.contains("cannot take the")
                || m.contains("needs a")
                || m.contains("cannot negate")
                || m.contains("cannot order")
                || m.contains("cannot produce")
            {
                PyTypeError::new_err(m)
            } else {
                PyValueError::new_err(m)
            }
        }
        FrameError::Read(m) => {
            let low = m.to_lowercase();
            if low.contains("permission denied") || low.contains("access denied") || low.contains("forbidden") {
                PyPermissionError::new_err(m)
            } else if low.contains("no such file")
                || low.contains("not found")
                || low.contains("no files")
                || low.contains("matches no")
                || low.contains("does not exist")
                || low.contains("nosuchkey")
                || low.contains("nosuchbucket")
            {
                PyFileNotFoundError::new_err(m)
            } else {
                PyValueError::new_err(m)
            }
        }
        FrameError::Compute(m) => PyValueError::new_err(m),
        FrameError::Arrow(e) => PyValueError::new_err(e.to_string()),
    }
}

/// Runs engine code without the GIL (tasks may run Python functions on
/// this process's workers), mapping its error.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, FrameError> + Send) -> PyResult<T> {
    py.detach(|| guarded(f))?.map_err(|e| frame_err(py, e))
}

fn fe<T>(py: Python<'_>, r: Result<T, FrameError>) -> PyResult<T> {
    r.map_err(|e| frame_err(py, e))
}

// ------------------------------------------------------------ Arrow C stream

/// Record batches that pyarrow (or any consumer of the Arrow PyCapsule
/// interface) imports without a copy: `pyarrow.table(stream)`.
#[derive(Debug)]
#[pyclass(frozen, name = "ArrowStream", module = "rask._rask")]
pub struct ArrowStream {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

#[pymethods]
impl ArrowStream {
    /// The stream as a PyCapsule named `arrow_array_stream`. Each call
    /// makes a new stream over the same (shared, reference-counted)
    /// buffers. `requested_schema` is ignored, as the protocol allows.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader = RecordBatchIterator::new(self.batches.clone().into_iter().map(Ok), self.schema.clone());
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        // The capsule owns the boxed stream. A consumer moves the struct out
        // (leaving `release` null); if none does, dropping the box releases
        // the stream (FFI_ArrowArrayStream's Drop).
        PyCapsule::new_with_value(py, stream, c"arrow_array_stream")
    }

    #[getter]
    fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

impl ArrowStream {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self { schema, batches }
    }
}

/// Imports every batch of an object that has `__arrow_c_stream__` (a
/// pyarrow Table or RecordBatchReader): the buffers are shared, not copied.
pub fn import_stream(obj: &Bound<'_, PyAny>) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
    let capsule = obj.call_method0("__arrow_c_stream__")?;
    let capsule = capsule.cast::<PyCapsule>().map_err(PyErr::from)?;
    let ptr = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    // SAFETY: the capsule is named "arrow_array_stream", so by the Arrow
    // PyCapsule protocol its pointer is a valid, aligned, initialised
    // `ArrowArrayStream` that the capsule keeps alive while we hold it.
    // `from_raw` moves the struct out and leaves a released (empty) one
    // behind, so the capsule's own destructor does not release it again.
    let reader = unsafe { RecordBatchStreamReader::from_raw(ptr.as_ptr().cast::<FFI_ArrowArrayStream>()) }
        .map_err(|e| PyValueError::new_err(format!("cannot import the Arrow stream: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PyValueError::new_err(format!("cannot import the Arrow stream: {e}")))?;
    Ok((schema, batches))
}

/// A partition made in Python (a pandas result of `map_partitions`), as a
/// rask table value; `rask._rask.to_value` keeps it a table.
#[derive(Debug)]
#[pyclass(frozen, name = "ArrowTable", module = "rask._rask")]
pub struct ArrowTable {
    pub(crate) table: TableValue,
}

#[pymethods]
impl ArrowTable {
    /// From an object with `__arrow_c_stream__`; its batches are joined.
    #[staticmethod]
    fn from_stream(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (schema, batches) = import_stream(obj)?;
        let batch = fe(py, arrow::compute::concat_batches(&schema, &batches).map_err(FrameError::from))?;
        Ok(Self { table: TableValue::new(batch) })
    }
}

// ------------------------------------------------------------ literals

/// A Python scalar as a literal (numpy scalars through float/int).
fn lit_of(obj: &Bound<'_, PyAny>) -> PyResult<Lit> {
    if obj.is_none() {
        return Ok(Lit::Null);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Lit::Bool(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(Lit::Int(obj.extract()?));
    }
    if obj.is_instance_of::<PyFloat>() {
        let f: f64 = obj.extract()?;
        return Ok(if f.is_nan() { Lit::Null } else { Lit::Float(f) });
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Lit::Str(obj.extract()?));
    }
    Err(PyTypeError::new_err(format!(
        "a rask dataframe literal must be None, bool, int, float or str, not {}",
        obj.get_type().name()?
    )))
}

fn storage_of(storage: Option<(Option<String>, Option<String>, bool)>) -> StorageOptions {
    match storage {
        None => StorageOptions::default(),
        Some((endpoint_url, region, anonymous)) => {
            StorageOptions { endpoint_url, region, anonymous, ..StorageOptions::default() }
        }
    }
}

// ------------------------------------------------------------ DataFrame

/// A lazy, partitioned dataframe (`rask_dataframe::DataFrame`).
#[derive(Debug, Clone)]
#[pyclass(frozen, name = "Frame", module = "rask._rask")]
pub struct PyFrame {
    pub(crate) inner: rask_dataframe::DataFrame,
}

fn frame(inner: rask_dataframe::DataFrame) -> PyFrame {
    PyFrame { inner }
}

#[pymethods]
impl PyFrame {
    #[staticmethod]
    #[pyo3(signature = (pattern, blocksize, dtype, usecols, parse_dates, compression, storage, header, sep, na_values))]
    #[allow(clippy::too_many_arguments)]
    fn read_csv(
        py: Python<'_>,
        pattern: String,
        blocksize: Option<u64>,
        dtype: Vec<(String, String)>,
        usecols: Option<Vec<String>>,
        parse_dates: Vec<String>,
        compression: Option<String>,
        storage: Option<(Option<String>, Option<String>, bool)>,
        header: bool,
        sep: String,
        na_values: Vec<String>,
    ) -> PyResult<Self> {
        for (_, t) in &dtype {
            fe(py, rask_dataframe::dtype::parse_dtype(t))?;
        }
        let sep = match sep.as_bytes() {
            [b] => *b,
            _ => return Err(PyValueError::new_err(format!("sep must be one byte, got {sep:?}"))),
        };
        let mut options = CsvOptions { dtype, parse_dates, usecols, header, sep, na_values, ..CsvOptions::default() };
        if let Some(b) = blocksize {
            options = options.blocksize(Some(b));
        }
        if let Some(c) = compression {
            options = options.compression(fe(py, c.parse())?);
        }
        options = options.storage_options(storage_of(storage));
        detached(py, move || rask_dataframe::read_csv(&pattern, options)).map(frame)
    }

    #[staticmethod]
    #[pyo3(signature = (pattern, columns, storage))]
    fn read_parquet(
        py: Python<'_>,
        pattern: String,
        columns: Option<Vec<String>>,
        storage: Option<(Option<String>, Option<String>, bool)>,
    ) -> PyResult<Self> {
        let storage = storage_of(storage);
        detached(py, move || {
            let cols: Option<Vec<&str>> = columns.as_ref().map(|c| c.iter().map(String::as_str).collect());
            rask_dataframe::read_parquet_with(&pattern, cols.as_deref(), &storage)
        })
        .map(frame)
    }

    /// From an Arrow stream (a pyarrow Table), split at row `bounds`
    /// (`n + 1` increasing offsets for `n` partitions; empty ones allowed).
    /// Slices share the imported buffers. The partitions' keys are
    /// `from-pandas-{token}`: the caller names the data, so building the
    /// frame does not serialize it to hash it.
    #[staticmethod]
    fn from_arrow(py: Python<'_>, obj: &Bound<'_, PyAny>, bounds: Vec<usize>, token: &str) -> PyResult<Self> {
        let (schema, batches) = import_stream(obj)?;
        let batch = fe(py, arrow::compute::concat_batches(&schema, &batches).map_err(FrameError::from))?;
        let rows = batch.num_rows();
        if bounds.len() < 2 || bounds.windows(2).any(|w| w[0] > w[1]) || bounds.last() != Some(&rows) {
            return Err(PyValueError::new_err(format!("bad partition bounds {bounds:?} for {rows} rows")));
        }
        let name: Arc<str> = Arc::from(format!("from-pandas-{token}"));
        let parts: Vec<Delayed<TableValue>> = bounds
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let part = TableValue::new(batch.slice(w[0], w[1] - w[0]));
                Delayed::from_task(
                    Key::chunk(name.clone(), &[i as u32]),
                    rask_core::ops::builtin::IDENTITY,
                    Params::default(),
                    vec![ArgPart::literal(Value::Table(part))],
                )
            })
            .collect();
        fe(py, rask_dataframe::from_partitions(parts, schema)).map(frame)
    }

    /// A frame over computed partitions (`persist`), with this frame's
    /// schema and index.
    fn over_futures(&self, py: Python<'_>, futures: Vec<Bound<'_, PyFuture>>) -> PyResult<Self> {
        let parts: Vec<Delayed<TableValue>> =
            futures.iter().map(|f| Delayed::<Value>::from_future(f.get().inner.clone()).cast()).collect();
        let df = fe(py, rask_dataframe::from_partitions(parts, self.inner.schema().clone()))?;
        fe(py, df.with_index(self.inner.index().to_vec())).map(frame)
    }

    /// A frame over partitions made by other nodes (`map_partitions`),
    /// whose tables all have the schema of `meta` (an Arrow stream).
    #[staticmethod]
    fn from_nodes(py: Python<'_>, nodes: Vec<Bound<'_, Node>>, meta: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (schema, _) = import_stream(meta)?;
        let parts = nodes.iter().map(|n| n.get().inner.clone().cast()).collect();
        fe(py, rask_dataframe::from_partitions(parts, schema)).map(frame)
    }

    fn with_index(&self, py: Python<'_>, index: Vec<String>) -> PyResult<Self> {
        fe(py, self.inner.clone().with_index(index)).map(frame)
    }

    /// Every column, index included, with its Arrow type: an empty stream.
    fn meta(&self) -> ArrowStream {
        ArrowStream::new(self.inner.schema().clone(), Vec::new())
    }

    #[getter]
    fn columns(&self) -> Vec<String> {
        self.inner.columns()
    }

    #[getter]
    fn index(&self) -> Vec<String> {
        self.inner.index().to_vec()
    }

    #[getter]
    fn npartitions(&self) -> usize {
        self.inner.npartitions()
    }

    /// The partitions' nodes, in order.
    fn nodes(&self, py: Python<'_>) -> PyResult<Vec<Node>> {
        let parts = fe(py, self.inner.partitions())?;
        Ok(parts.into_iter().map(|p| Node { inner: p.cast() }).collect())
    }

    /// Waits for the partitions' futures (without the GIL) and gives their
    /// batches as one stream.
    fn collect(&self, py: Python<'_>, futures: Vec<Bound<'_, PyFuture>>) -> PyResult<ArrowStream> {
        let futures: Vec<Arc<rask::Future<Value>>> = futures.iter().map(|f| f.get().inner.clone()).collect();
        let schema = self.inner.schema().clone();
        let values = py.detach(|| guarded(|| futures.iter().map(|f| f.result()).collect::<rask::Result<Vec<_>>>()))?;
        let values = values.map_err(|e| to_pyerr(py, e))?;
        let mut batches = Vec::with_capacity(values.len());
        for v in values {
            match v {
                Value::Table(t) => {
                    let b = t.batch();
                    let b = if b.schema().fields() == schema.fields() {
                        b.clone()
                    } else {
                        fe(py, RecordBatch::try_new(schema.clone(), b.columns().to_vec()).map_err(FrameError::from))?
                    };
                    batches.push(b);
                }
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "a partition computed to a {} value, not a table",
                        other.type_name()
                    )));
                }
            }
        }
        Ok(ArrowStream::new(schema, batches))
    }

    fn head(&self, py: Python<'_>, n: usize) -> PyResult<ArrowStream> {
        let t = detached(py, || self.inner.head(n))?;
        Ok(ArrowStream::new(self.inner.schema().clone(), vec![t.into_batch()]))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        detached(py, || self.inner.len())
    }

    fn col(&self, py: Python<'_>, name: &str) -> PyResult<PySeries> {
        fe(py, rask_dataframe::Series::new(&self.inner, rask_dataframe::col(name), name)).map(series)
    }

    fn filter(&self, py: Python<'_>, mask: &PySeries) -> PyResult<Self> {
        fe(py, self.inner.filter(mask.inner.expr().clone())).map(frame)
    }

    fn select(&self, py: Python<'_>, columns: Vec<String>) -> PyResult<Self> {
        let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
        fe(py, self.inner.select(&cols)).map(frame)
    }

    /// Adds or replaces a column: a series of this frame or a literal.
    fn assign(&self, py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<Self> {
        let expr = match value.cast::<PySeries>() {
            Ok(s) => s.get().inner.expr().clone(),
            Err(_) => Expr::Lit(lit_of(value)?),
        };
        fe(py, self.inner.assign(name, expr)).map(frame)
    }

    fn rename(&self, py: Python<'_>, pairs: Vec<(String, String)>) -> PyResult<Self> {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        fe(py, self.inner.rename(&pairs)).map(frame)
    }

    fn astype(&self, py: Python<'_>, casts: Vec<(String, String)>) -> PyResult<Self> {
        let casts: Vec<(&str, &str)> = casts.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        fe(py, self.inner.astype(&casts)).map(frame)
    }

    #[pyo3(signature = (subset = None))]
    fn dropna(&self, py: Python<'_>, subset: Option<Vec<String>>) -> PyResult<Self> {
        match subset {
            None => fe(py, self.inner.dropna()).map(frame),
            Some(s) => {
                let s: Vec<&str> = s.iter().map(String::as_str).collect();
                fe(py, self.inner.dropna_subset(&s)).map(frame)
            }
        }
    }

    fn fillna(&self, py: Python<'_>, values: Vec<(String, Bound<'_, PyAny>)>) -> PyResult<Self> {
        let values: Vec<(String, Lit)> =
            values.iter().map(|(c, v)| Ok((c.clone(), lit_of(v)?))).collect::<PyResult<_>>()?;
        let values: Vec<(&str, Lit)> = values.iter().map(|(c, v)| (c.as_str(), v.clone())).collect();
        fe(py, self.inner.fillna(&values)).map(frame)
    }

    fn loc(&self, py: Python<'_>, i: usize) -> PyResult<Self> {
        fe(py, self.inner.loc(i)).map(frame)
    }

    /// Whole-frame aggregations, one row (`column_func` columns).
    fn agg(&self, py: Python<'_>, aggs: Vec<(String, String)>) -> PyResult<Self> {
        let aggs: Vec<(&str, &str)> = aggs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        fe(py, self.inner.agg(&aggs)).map(frame)
    }

    fn describe(&self, py: Python<'_>) -> PyResult<Self> {
        fe(py, self.inner.describe()).map(frame)
    }

    #[pyo3(signature = (keys, split_out = 1, ddof = 1))]
    fn groupby(&self, py: Python<'_>, keys: Vec<String>, split_out: usize, ddof: u32) -> PyResult<PyGroupBy> {
        for k in &keys {
            if self.inner.schema().field_with_name(k).is_err() {
                return Err(frame_err(py, FrameError::Schema(format!("no column {k:?} to group by"))));
            }
        }
        let k: Vec<&str> = keys.iter().map(String::as_str).collect();
        Ok(PyGroupBy { inner: self.inner.groupby(&k).split_out(split_out).ddof(ddof) })
    }

    fn drop_duplicates(&self, py: Python<'_>, subset: Vec<String>) -> PyResult<Self> {
        let s: Vec<&str> = subset.iter().map(String::as_str).collect();
        fe(py, self.inner.drop_duplicates(&s)).map(frame)
    }

    fn sort_values(&self, py: Python<'_>, by: Vec<String>, ascending: bool) -> PyResult<Self> {
        let by: Vec<&str> = by.iter().map(String::as_str).collect();
        fe(py, self.inner.sort_values(&by, ascending)).map(frame)
    }

    fn nlargest(&self, py: Python<'_>, n: usize, column: &str) -> PyResult<Self> {
        fe(py, self.inner.nlargest(n, column)).map(frame)
    }

    fn nsmallest(&self, py: Python<'_>, n: usize, column: &str) -> PyResult<Self> {
        fe(py, self.inner.nsmallest(n, column)).map(frame)
    }

    fn random_split(&self, py: Python<'_>, fractions: Vec<f64>, seed: u64) -> PyResult<Vec<Self>> {
        Ok(fe(py, self.inner.random_split(&fractions, seed))?.into_iter().map(frame).collect())
    }

    fn merge(&self, py: Python<'_>, other: &PyFrame, on: Vec<String>, how: &str) -> PyResult<Self> {
        let how = match how {
            "inner" => How::Inner,
            "left" => How::Left,
            "right" => How::Right,
            "outer" => How::Outer,
            other => {
                return Err(PyValueError::new_err(format!(
                    "merge how={other:?} is not one of 'inner', 'left', 'right', 'outer'"
                )));
            }
        };
        let on: Vec<&str> = on.iter().map(String::as_str).collect();
        fe(py, self.inner.merge(&other.inner, &on, how)).map(frame)
    }

    #[pyo3(signature = (path, storage = None))]
    fn to_parquet(
        &self,
        py: Python<'_>,
        path: String,
        storage: Option<(Option<String>, Option<String>, bool)>,
    ) -> PyResult<Vec<String>> {
        let storage = storage_of(storage);
        detached(py, move || self.inner.to_parquet_with(&path, &storage))
    }

    #[pyo3(signature = (path, storage = None))]
    fn to_csv(
        &self,
        py: Python<'_>,
        path: String,
        storage: Option<(Option<String>, Option<String>, bool)>,
    ) -> PyResult<Vec<String>> {
        let storage = storage_of(storage);
        detached(py, move || self.inner.to_csv_with(&path, &storage))
    }

    fn __repr__(&self) -> String {
        self.inner.to_string()
    }
}

// ------------------------------------------------------------ Series

/// One column of a frame, or an expression over its columns.
#[derive(Debug, Clone)]
#[pyclass(frozen, name = "Column", module = "rask._rask")]
pub struct PySeries {
    pub(crate) inner: rask_dataframe::Series,
}

fn series(inner: rask_dataframe::Series) -> PySeries {
    PySeries { inner }
}

fn binop(name: &str) -> PyResult<BinOp> {
    Ok(match name {
        "add" => BinOp::Add,
        "sub" => BinOp::Sub,
        "mul" => BinOp::Mul,
        "truediv" => BinOp::Div,
        "floordiv" => BinOp::FloorDiv,
        "mod" => BinOp::Rem,
        "eq" => BinOp::Eq,
        "ne" => BinOp::Ne,
        "lt" => BinOp::Lt,
        "le" => BinOp::Le,
        "gt" => BinOp::Gt,
        "ge" => BinOp::Ge,
        "and" => BinOp::And,
        "or" => BinOp::Or,
        other => return Err(PyTypeError::new_err(format!("rask series have no operator {other:?}"))),
    })
}

impl PySeries {
    fn with_expr(&self, py: Python<'_>, expr: Expr) -> PyResult<PySeries> {
        fe(py, rask_dataframe::Series::new(self.inner.frame(), expr, self.inner.name())).map(series)
    }
}

#[pymethods]
impl PySeries {
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_string()
    }

    fn dtype(&self, py: Python<'_>) -> PyResult<String> {
        fe(py, self.inner.dtype())
    }

    fn frame(&self) -> PyFrame {
        frame(self.inner.frame().clone())
    }

    /// `self <op> other` (or `other <op> self` when `reflected`), other a
    /// series over the same frame or a scalar.
    fn binary(&self, py: Python<'_>, op: &str, other: &Bound<'_, PyAny>, reflected: bool) -> PyResult<PySeries> {
        let op = binop(op)?;
        let rhs = match other.cast::<PySeries>() {
            Ok(s) => s.get().inner.expr().clone(),
            Err(_) => Expr::Lit(lit_of(other)?),
        };
        let lhs = self.inner.expr().clone();
        let (a, b) = if reflected { (rhs, lhs) } else { (lhs, rhs) };
        self.with_expr(py, Expr::Bin(op, Box::new(a), Box::new(b)))
    }

    fn neg(&self, py: Python<'_>) -> PyResult<PySeries> {
        self.with_expr(py, Expr::Neg(Box::new(self.inner.expr().clone())))
    }

    fn invert(&self, py: Python<'_>) -> PyResult<PySeries> {
        self.with_expr(py, Expr::Not(Box::new(self.inner.expr().clone())))
    }

    fn isna(&self, py: Python<'_>) -> PyResult<PySeries> {
        self.with_expr(py, self.inner.expr().clone().is_null())
    }

    fn notna(&self, py: Python<'_>) -> PyResult<PySeries> {
        self.with_expr(py, self.inner.expr().clone().not_null())
    }

    fn isin(&self, py: Python<'_>, values: Vec<Bound<'_, PyAny>>) -> PyResult<PySeries> {
        let lits = values.iter().map(lit_of).collect::<PyResult<Vec<_>>>()?;
        self.with_expr(py, self.inner.expr().clone().isin(lits))
    }

    fn between(&self, py: Python<'_>, lo: &Bound<'_, PyAny>, hi: &Bound<'_, PyAny>) -> PyResult<PySeries> {
        self.with_expr(py, self.inner.expr().clone().between(lit_of(lo)?, lit_of(hi)?))
    }

    #[pyo3(signature = (op, arg = None))]
    fn str_op(&self, py: Python<'_>, op: &str, arg: Option<String>) -> PyResult<PySeries> {
        let arg = || arg.clone().ok_or_else(|| PyTypeError::new_err(format!("str.{op} needs a pattern")));
        let op = match op {
            "lower" => StrOp::Lower,
            "upper" => StrOp::Upper,
            "len" => StrOp::Len,
            "contains" => StrOp::Contains(arg()?),
            "startswith" => StrOp::StartsWith(arg()?),
            "endswith" => StrOp::EndsWith(arg()?),
            other => return Err(PyTypeError::new_err(format!("rask has no str.{other}"))),
        };
        self.with_expr(py, self.inner.expr().clone().str(op))
    }

    fn dt(&self, py: Python<'_>, part: &str) -> PyResult<PySeries> {
        let part = match part {
            "year" => DtPart::Year,
            "month" => DtPart::Month,
            "day" => DtPart::Day,
            "hour" => DtPart::Hour,
            "minute" => DtPart::Minute,
            "second" => DtPart::Second,
            "dayofweek" | "weekday" | "day_of_week" => DtPart::DayOfWeek,
            "dayofyear" | "day_of_year" => DtPart::DayOfYear,
            other => return Err(PyTypeError::new_err(format!("rask has no dt.{other}"))),
        };
        self.with_expr(py, self.inner.expr().clone().dt(part))
    }

    fn astype(&self, py: Python<'_>, dtype: &str) -> PyResult<PySeries> {
        fe(py, self.inner.astype(dtype)).map(series)
    }

    fn rename(&self, name: &str) -> PySeries {
        series(self.inner.rename(name))
    }

    fn to_frame(&self, py: Python<'_>) -> PyResult<PyFrame> {
        fe(py, self.inner.to_frame()).map(frame)
    }

    fn unique(&self, py: Python<'_>) -> PyResult<PySeries> {
        fe(py, self.inner.unique()).map(series)
    }

    /// The count of distinct non-missing values, a node of an int.
    fn nunique(&self, py: Python<'_>) -> PyResult<Node> {
        Ok(Node { inner: fe(py, self.inner.nunique())?.cast() })
    }

    fn value_counts(&self, py: Python<'_>) -> PyResult<PySeries> {
        fe(py, self.inner.value_counts()).map(series)
    }

    fn nlargest(&self, py: Python<'_>, n: usize) -> PyResult<PySeries> {
        fe(py, self.inner.nlargest(n)).map(series)
    }

    fn nsmallest(&self, py: Python<'_>, n: usize) -> PyResult<PySeries> {
        fe(py, self.inner.nsmallest(n)).map(series)
    }

    fn dropna(&self, py: Python<'_>) -> PyResult<PySeries> {
        fe(py, self.inner.dropna()).map(series)
    }

    fn fillna(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<PySeries> {
        fe(py, self.inner.fillna(lit_of(value)?)).map(series)
    }
}

// ------------------------------------------------------------ GroupBy

/// `df.groupby(keys)`.
#[derive(Debug, Clone)]
#[pyclass(frozen, name = "GroupBy", module = "rask._rask")]
pub struct PyGroupBy {
    inner: rask_dataframe::GroupBy,
}

#[pymethods]
impl PyGroupBy {
    fn agg(&self, py: Python<'_>, aggs: Vec<(String, String)>) -> PyResult<PyFrame> {
        let aggs: Vec<(&str, &str)> = aggs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        fe(py, self.inner.agg(&aggs)).map(frame)
    }

    /// `mean`, `sum`, `count`, `min`, `max`, `var` or `std` of every column
    /// it applies to.
    fn each(&self, py: Python<'_>, func: &str) -> PyResult<PyFrame> {
        let r = match func {
            "mean" => self.inner.mean(),
            "sum" => self.inner.sum(),
            "count" => self.inner.count(),
            "min" => self.inner.min(),
            "max" => self.inner.max(),
            "var" => self.inner.var(),
            "std" => self.inner.std(),
            other => return Err(PyValueError::new_err(format!("unknown aggregation {other:?}"))),
        };
        fe(py, r).map(frame)
    }

    fn size(&self, py: Python<'_>) -> PyResult<PySeries> {
        fe(py, self.inner.size()).map(series)
    }

    fn nunique(&self, py: Python<'_>, column: &str) -> PyResult<PySeries> {
        fe(py, self.inner.nunique(column)).map(series)
    }
}

// ------------------------------------------------------------ ml

/// `rask_dataframe::ml::LinearRegression`.
#[derive(Debug)]
#[pyclass(frozen, name = "LinearRegression", module = "rask._rask")]
pub struct PyLinearRegression {
    inner: Mutex<rask_dataframe::ml::LinearRegression>,
}

#[pymethods]
impl PyLinearRegression {
    #[new]
    #[pyo3(signature = (fit_intercept = true))]
    fn new(fit_intercept: bool) -> Self {
        let mut m = rask_dataframe::ml::LinearRegression::new();
        m.fit_intercept = fit_intercept;
        Self { inner: Mutex::new(m) }
    }

    /// Fits on `x` and `y` (computing them); returns `(coef, intercept)`.
    fn fit(&self, py: Python<'_>, x: &PyFrame, y: &PySeries) -> PyResult<(Vec<f64>, f64)> {
        let mut model = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let fitted = detached(py, || {
            model.fit(&x.inner, &y.inner)?;
            Ok(model)
        })?;
        let out = (fitted.coef_.clone(), fitted.intercept_);
        *self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fitted;
        Ok(out)
    }

    fn predict(&self, py: Python<'_>, x: &PyFrame) -> PyResult<PySeries> {
        let model = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        fe(py, model.predict(&x.inner)).map(series)
    }

    fn score(&self, py: Python<'_>, x: &PyFrame, y: &PySeries) -> PyResult<f64> {
        let model = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        detached(py, || model.score(&x.inner, &y.inner))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ArrowStream>()?;
    m.add_class::<ArrowTable>()?;
    m.add_class::<PyFrame>()?;
    m.add_class::<PySeries>()?;
    m.add_class::<PyGroupBy>()?;
    m.add_class::<PyLinearRegression>()?;
    Ok(())
}
