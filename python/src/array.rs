//! `rask._rask.Array`: `rask_array::Array` for the Python package
//! (`rask.array` gives it Dask's API), and numpy arrays in and out.
//!
//! numpy in: `from_numpy` reads the array's buffer (the buffer protocol) and
//! copies each block out of it once. numpy out: an [`ArrayValue`] becomes a
//! numpy array that views its memory (`__array_interface__` of a
//! [`NumpyView`], which numpy keeps alive as the array's base), so a result
//! is never copied again after the blocks are stitched together. A value
//! that other owners share (a block still held by the cluster) is viewed
//! read-only, or copied when the caller asks for a writable array.

use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{ArrayViewD, IxDyn, SliceInfoElem};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};
use rask::{ArgPart, Delayed};
use rask_array::kernels::{self, BinaryOp, Boundary, Fill, Reduction, UnaryOp};
use rask_array::{Array, ArrayError, ChunkGrid, Chunks, Index, StorageOptions};
use rask_core::{ArrayValue, DType, Element, Key, Params, Value, with_array};

use crate::client::PyFuture;
use crate::errors::{guarded, to_pyerr};
use crate::graph::{Node, arg_part, shared_bytes};

/// An `ArrayError` as the exception Dask and numpy raise for it.
pub(crate) fn array_err(py: Python<'_>, e: ArrayError) -> PyErr {
    match e {
        ArrayError::Compute(e) => to_pyerr(py, e),
        ArrayError::Shape(m) if m.contains("out of bounds for axis") && m.starts_with("index") => {
            PyIndexError::new_err(m)
        }
        ArrayError::Shape(m) if m.contains("too many indices") => PyIndexError::new_err(m),
        ArrayError::Value(m) | ArrayError::Shape(m) | ArrayError::UnknownChunks(m) => PyValueError::new_err(m),
    }
}

fn dtype_of(name: &str) -> PyResult<DType> {
    DType::from_name(name).ok_or_else(|| {
        PyTypeError::new_err(format!(
            "rask arrays have no dtype {name:?}: bool, int8..int64, uint8..uint64, float32 and float64 only"
        ))
    })
}

/// A Python scalar as a fill value (bool before int: `bool` is an `int`).
fn fill_of(v: &Bound<'_, PyAny>) -> PyResult<Fill> {
    if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
        return Ok(Fill::Bool(b.is_true()));
    }
    if v.is_instance_of::<pyo3::types::PyInt>() {
        return v
            .extract::<i64>()
            .map(Fill::Int)
            .map_err(|_| PyValueError::new_err(format!("the integer {v} does not fit in int64")));
    }
    if let Ok(x) = v.extract::<f64>() {
        return Ok(Fill::Float(x));
    }
    Err(PyTypeError::new_err(format!("expected a bool, int or float scalar, got {}", v.get_type().name()?)))
}

/// Chunks from Python: `"auto"`, or explicit sizes per axis.
fn chunks_of(c: &Bound<'_, PyAny>) -> PyResult<Chunks> {
    if let Ok(s) = c.extract::<String>() {
        return if s == "auto" {
            Ok(Chunks::Auto)
        } else {
            Err(PyValueError::new_err(format!("unknown chunks {s:?}")))
        };
    }
    Ok(Chunks::Explicit(c.extract()?))
}

fn storage_of(o: Option<&Bound<'_, PyDict>>) -> PyResult<StorageOptions> {
    let mut s = StorageOptions::default();
    let Some(o) = o else { return Ok(s) };
    for (k, v) in o.iter() {
        let k: String = k.extract()?;
        match k.as_str() {
            "endpoint_url" => s.endpoint_url = v.extract()?,
            "region" | "region_name" => s.region = v.extract()?,
            "anon" | "anonymous" => s.anonymous = v.extract()?,
            "max_attempts" => s.max_attempts = v.extract()?,
            "attempt_timeout_ms" => s.attempt_timeout_ms = v.extract()?,
            "client_kwargs" => {
                let d = v.cast::<PyDict>().map_err(PyErr::from)?;
                if let Some(u) = d.get_item("endpoint_url")? {
                    s.endpoint_url = u.extract()?;
                }
                if let Some(r) = d.get_item("region_name")? {
                    s.region = r.extract()?;
                }
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown storage option {other:?} (rask has endpoint_url, region, anon, max_attempts, \
                     attempt_timeout_ms, client_kwargs)"
                )));
            }
        }
    }
    Ok(s)
}

fn binary_op(name: &str) -> PyResult<BinaryOp> {
    Ok(match name {
        "add" => BinaryOp::Add,
        "sub" => BinaryOp::Sub,
        "mul" => BinaryOp::Mul,
        "truediv" => BinaryOp::Div,
        "floordiv" => BinaryOp::FloorDiv,
        "mod" => BinaryOp::Mod,
        "pow" => BinaryOp::Pow,
        "lt" => BinaryOp::Lt,
        "le" => BinaryOp::Le,
        "gt" => BinaryOp::Gt,
        "ge" => BinaryOp::Ge,
        "eq" => BinaryOp::Eq,
        "ne" => BinaryOp::Ne,
        "minimum" => BinaryOp::Min,
        "maximum" => BinaryOp::Max,
        "fmin" => BinaryOp::FMin,
        "fmax" => BinaryOp::FMax,
        "logical_and" => BinaryOp::LogicalAnd,
        "logical_or" => BinaryOp::LogicalOr,
        other => return Err(PyValueError::new_err(format!("rask has no binary operation {other:?}"))),
    })
}

fn unary_op(name: &str, decimals: i32) -> PyResult<UnaryOp> {
    Ok(match name {
        "absolute" => UnaryOp::Abs,
        "negative" => UnaryOp::Negative,
        "sqrt" => UnaryOp::Sqrt,
        "exp" => UnaryOp::Exp,
        "log" => UnaryOp::Log,
        "sin" => UnaryOp::Sin,
        "cos" => UnaryOp::Cos,
        "floor" => UnaryOp::Floor,
        "ceil" => UnaryOp::Ceil,
        "round" => UnaryOp::Round(decimals),
        "isnan" => UnaryOp::IsNan,
        "logical_not" => UnaryOp::LogicalNot,
        other => return Err(PyValueError::new_err(format!("rask has no unary operation {other:?}"))),
    })
}

fn reduction(name: &str, ddof: u32) -> PyResult<Reduction> {
    Ok(match name {
        "sum" => Reduction::Sum,
        "prod" => Reduction::Prod,
        "min" => Reduction::Min,
        "max" => Reduction::Max,
        "mean" => Reduction::Mean,
        "var" => Reduction::Var { ddof },
        "std" => Reduction::Std { ddof },
        "any" => Reduction::Any,
        "all" => Reduction::All,
        "count_nonzero" => Reduction::CountNonzero,
        "nansum" => Reduction::NanSum,
        "nanmean" => Reduction::NanMean,
        "nanmin" => Reduction::NanMin,
        "nanmax" => Reduction::NanMax,
        "nanvar" => Reduction::NanVar { ddof },
        "nanstd" => Reduction::NanStd { ddof },
        "argmin" => Reduction::ArgMin,
        "argmax" => Reduction::ArgMax,
        other => return Err(PyValueError::new_err(format!("rask has no reduction {other:?}"))),
    })
}

/// One normalized index item from Python: `("at", i)`, `("range", start,
/// stop, step)`, `("newaxis",)` or `("ellipsis",)`.
fn index_of(item: &Bound<'_, PyAny>) -> PyResult<Index> {
    let t = item.cast::<PyTuple>().map_err(PyErr::from)?;
    let kind: String = t.get_item(0)?.extract()?;
    Ok(match kind.as_str() {
        "at" => Index::At(t.get_item(1)?.extract()?),
        "range" => Index::range(t.get_item(1)?.extract()?, t.get_item(2)?.extract()?, t.get_item(3)?.extract()?),
        "newaxis" => Index::NewAxis,
        "ellipsis" => Index::Ellipsis,
        other => return Err(PyValueError::new_err(format!("unknown index item {other:?}"))),
    })
}

static NUMPY_ASARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Holds an [`ArrayValue`] for numpy: `np.asarray(view)` views its memory
/// (numpy keeps this object as the array's base, so the memory lives as
/// long as the numpy array).
#[derive(Debug)]
#[pyclass(frozen, name = "NumpyView", module = "rask._rask")]
pub struct NumpyView {
    value: ArrayValue,
    readonly: bool,
}

fn typestr(d: DType) -> &'static str {
    match d {
        DType::Bool => "|b1",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I16 => "<i2",
        DType::U16 => "<u2",
        DType::I32 => "<i4",
        DType::U32 => "<u4",
        DType::F32 => "<f4",
        DType::I64 => "<i8",
        DType::U64 => "<u8",
        DType::F64 => "<f8",
    }
}

#[pymethods]
impl NumpyView {
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let (ptr, shape, strides) =
            with_array!(&self.value, a => (a.as_ptr() as usize, a.shape().to_vec(), a.strides().to_vec()));
        let itemsize = self.value.dtype().itemsize();
        let standard = with_array!(&self.value, a => a.is_standard_layout());
        d.set_item("shape", PyTuple::new(py, &shape)?)?;
        d.set_item("typestr", typestr(self.value.dtype()))?;
        // An empty array may have a dangling pointer; numpy needs none.
        let ptr = if shape.contains(&0) { 0 } else { ptr };
        d.set_item("data", (ptr, self.readonly))?;
        if standard {
            d.set_item("strides", py.None())?;
        } else {
            let bytes: Vec<isize> = strides.iter().map(|&s| s * itemsize as isize).collect();
            d.set_item("strides", PyTuple::new(py, &bytes)?)?;
        }
        d.set_item("version", 3)?;
        Ok(d)
    }
}

/// An array value as a numpy array without copying it: writable when this
/// is the only owner, read-only (or copied, with `writable`) when shared.
pub fn to_numpy<'py>(py: Python<'py>, value: ArrayValue, writable: bool) -> PyResult<Bound<'py, PyAny>> {
    let unique = with_array!(&value, a => a.is_unique());
    let (value, readonly) = if unique {
        (value, false)
    } else if writable {
        (with_array!(value, a => Element::wrap(a.as_standard_layout().to_owned().into_shared())), false)
    } else {
        (value, true)
    };
    let view = Bound::new(py, NumpyView { value, readonly })?;
    let asarray = NUMPY_ASARRAY
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("numpy")?.getattr("asarray")?.unbind()))?
        .bind(py);
    asarray.call1((view,))
}

/// Typed copy of a C-contiguous buffer's blocks.
fn copy_blocks<T: pyo3::buffer::Element + Copy>(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    chunks: &Chunks,
    dtype: DType,
    make: fn(ArrayViewD<'_, T>) -> ArrayValue,
) -> PyResult<Array> {
    let buf = PyBuffer::<T>::get(obj)?;
    if !buf.is_c_contiguous() {
        return Err(PyValueError::new_err("from_numpy needs a C-contiguous array (np.ascontiguousarray)"));
    }
    let shape = buf.shape().to_vec();
    let grid = ChunkGrid::normalize(&shape, chunks, dtype.itemsize()).map_err(|e| array_err(py, e))?;
    let n: usize = shape.iter().product();
    let slice: &[T] = if n == 0 {
        &[]
    } else {
        let ptr = buf.as_slice_ptr().ok_or_else(|| PyValueError::new_err("the buffer is not C-contiguous"))?;
        // SAFETY: the buffer is C-contiguous and holds `n` elements of `T`
        // (PyBuffer checked the format and item size); `buf` keeps the
        // exporter's memory alive and we hold the GIL until the blocks are
        // copied out below.
        unsafe { ptr.as_ref() }
    };
    let view = ArrayViewD::from_shape(IxDyn(&shape), slice).map_err(|e| PyValueError::new_err(e.to_string()))?;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let token = format!("{}-{}-{:?}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), shape);
    let g = grid.clone();
    let array = Array::from_block_tasks("array", token.as_bytes(), dtype, grid, |idx, key| {
        let off = g.block_offset(idx).unwrap_or_default();
        let shp = g.block_shape(idx).unwrap_or_default();
        let info: Vec<SliceInfoElem> = off
            .iter()
            .zip(&shp)
            .map(|(&o, &n)| SliceInfoElem::Slice { start: o as isize, end: Some((o + n) as isize), step: 1 })
            .collect();
        let block = view.slice(info.as_slice());
        let value = make(block);
        Delayed::from_task(
            key,
            rask_core::ops::builtin::IDENTITY,
            Params::default(),
            vec![ArgPart::literal(Value::Array(value))],
        )
    });
    drop(buf);
    Ok(array)
}

/// A numpy array (any object with the buffer protocol) of `dtype` as an
/// array value, copied once (bool arrays come as their uint8 view).
pub fn value_from_buffer(obj: &Bound<'_, PyAny>, dtype: DType) -> PyResult<ArrayValue> {
    // A 0-d array's buffer has no shape: read it as one element.
    let zero_d = obj.getattr("ndim")?.extract::<usize>()? == 0;
    let flat = if zero_d { obj.call_method1("reshape", (1,))? } else { obj.clone() };
    let obj = &flat;
    fn whole<T: Element + pyo3::buffer::Element + Copy>(obj: &Bound<'_, PyAny>) -> PyResult<ArcArrayD<T>> {
        let buf = PyBuffer::<T>::get(obj)?;
        let shape = buf.shape().to_vec();
        let data = buf.to_vec(obj.py())?;
        drop(buf);
        ndarray::ArrayD::from_shape_vec(IxDyn(&shape), data)
            .map(ndarray::ArrayBase::into_shared)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }
    let value = match dtype {
        DType::Bool => ArrayValue::Bool(whole::<u8>(obj)?.mapv(|b| b != 0).into_shared()),
        DType::I8 => ArrayValue::I8(whole(obj)?),
        DType::I16 => ArrayValue::I16(whole(obj)?),
        DType::I32 => ArrayValue::I32(whole(obj)?),
        DType::I64 => ArrayValue::I64(whole(obj)?),
        DType::U8 => ArrayValue::U8(whole(obj)?),
        DType::U16 => ArrayValue::U16(whole(obj)?),
        DType::U32 => ArrayValue::U32(whole(obj)?),
        DType::U64 => ArrayValue::U64(whole(obj)?),
        DType::F32 => ArrayValue::F32(whole(obj)?),
        DType::F64 => ArrayValue::F64(whole(obj)?),
    };
    if !zero_d {
        return Ok(value);
    }
    Ok(with_array!(value, a => Element::wrap(
        a.into_shape_with_order(IxDyn(&[])).map_err(|e| PyValueError::new_err(e.to_string()))?
    )))
}

type ArcArrayD<T> = ndarray::ArcArray<T, IxDyn>;

fn numpy_array(py: Python<'_>, obj: &Bound<'_, PyAny>, dtype: DType, chunks: &Chunks) -> PyResult<Array> {
    fn owned<T: Element + Clone>(v: ArrayViewD<'_, T>) -> ArrayValue {
        T::wrap(v.to_owned().into_shared())
    }
    match dtype {
        DType::Bool => {
            copy_blocks::<u8>(py, obj, chunks, dtype, |v| ArrayValue::Bool(v.mapv(|b| b != 0).into_shared()))
        }
        DType::I8 => copy_blocks::<i8>(py, obj, chunks, dtype, owned),
        DType::I16 => copy_blocks::<i16>(py, obj, chunks, dtype, owned),
        DType::I32 => copy_blocks::<i32>(py, obj, chunks, dtype, owned),
        DType::I64 => copy_blocks::<i64>(py, obj, chunks, dtype, owned),
        DType::U8 => copy_blocks::<u8>(py, obj, chunks, dtype, owned),
        DType::U16 => copy_blocks::<u16>(py, obj, chunks, dtype, owned),
        DType::U32 => copy_blocks::<u32>(py, obj, chunks, dtype, owned),
        DType::U64 => copy_blocks::<u64>(py, obj, chunks, dtype, owned),
        DType::F32 => copy_blocks::<f32>(py, obj, chunks, dtype, owned),
        DType::F64 => copy_blocks::<f64>(py, obj, chunks, dtype, owned),
    }
}

/// A lazy chunked array (`rask_array::Array`).
#[derive(Debug)]
#[pyclass(frozen, name = "Array", module = "rask._rask")]
pub struct PyArray {
    pub(crate) inner: Array,
}

fn wrap(py: Python<'_>, r: rask_array::Result<Array>) -> PyResult<PyArray> {
    r.map(|inner| PyArray { inner }).map_err(|e| array_err(py, e))
}

/// Runs graph-building code: panics become `RuntimeError`s.
fn build(py: Python<'_>, f: impl FnOnce() -> rask_array::Result<Array>) -> PyResult<PyArray> {
    wrap(py, guarded(f)?)
}

#[pymethods]
impl PyArray {
    // ------------------------------------------------------------ metadata
    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().name()
    }
    #[getter]
    fn shape(&self) -> Vec<Option<usize>> {
        self.inner.shape()
    }
    /// Chunk sizes per axis (`None` where unknown).
    #[getter]
    fn chunks(&self) -> Vec<Vec<Option<usize>>> {
        let g = self.inner.chunks();
        (0..g.ndim()).map(|ax| g.axis(ax).to_vec()).collect()
    }
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }
    #[getter]
    fn npartitions(&self) -> usize {
        self.inner.npartitions()
    }
    fn task_count(&self) -> usize {
        self.inner.task_count()
    }

    /// The block tasks in C order, for the collection protocol.
    fn nodes(&self) -> Vec<Node> {
        self.inner.to_delayed().iter().map(|b| Node { inner: b.clone().cast::<Value>() }).collect()
    }

    /// The array assembled from the computed blocks (futures in C order), as numpy.
    fn finalize<'py>(&self, py: Python<'py>, futures: Vec<Bound<'py, PyFuture>>) -> PyResult<Bound<'py, PyAny>> {
        let futures: Vec<_> = futures.iter().map(|f| f.get().inner.clone()).collect();
        let numblocks = self.inner.chunks().numblocks();
        let r = py.detach(|| {
            guarded(|| -> Result<ArrayValue, Result<rask::Error, String>> {
                let mut values = Vec::with_capacity(futures.len());
                for f in &futures {
                    match f.result().map_err(Ok)? {
                        Value::Array(a) => values.push(a),
                        other => return Err(Err(format!("a block computed to a {}, not an array", other.type_name()))),
                    }
                }
                kernels::stitch(values, &numblocks).map_err(|e| Err(e.message))
            })
        })?;
        match r {
            Ok(v) => to_numpy(py, v, true),
            Err(Ok(e)) => Err(to_pyerr(py, e)),
            Err(Err(m)) => Err(PyValueError::new_err(m)),
        }
    }

    /// The same array over computed futures (`persist`).
    fn persisted(&self, futures: Vec<Bound<'_, PyFuture>>) -> PyResult<PyArray> {
        let grid = self.inner.chunks().clone();
        if futures.len() != grid.nblocks() {
            return Err(PyValueError::new_err(format!("{} futures for {} blocks", futures.len(), grid.nblocks())));
        }
        let mut it = futures.iter().map(|f| Delayed::from_future(f.get().inner.clone()).cast::<ArrayValue>());
        let token = format!("persist-{}", self.inner.name());
        let inner = Array::from_block_tasks("persist", token.as_bytes(), self.inner.dtype(), grid, |_, _| {
            it.next().unwrap_or_else(unreachable_block)
        });
        Ok(PyArray { inner })
    }

    // ------------------------------------------------------------ creation
    #[staticmethod]
    fn full(
        py: Python<'_>,
        shape: Vec<usize>,
        value: &Bound<'_, PyAny>,
        dtype: &str,
        chunks: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let (v, d, c) = (fill_of(value)?, dtype_of(dtype)?, chunks_of(chunks)?);
        build(py, || Array::full(&shape, v, d, c))
    }
    #[staticmethod]
    fn arange(
        py: Python<'_>,
        start: &Bound<'_, PyAny>,
        stop: &Bound<'_, PyAny>,
        step: &Bound<'_, PyAny>,
        chunks: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let (a, b, s, c) = (fill_of(start)?, fill_of(stop)?, fill_of(step)?, chunks_of(chunks)?);
        build(py, || Array::arange(a, b, s, c))
    }
    #[staticmethod]
    fn linspace(py: Python<'_>, start: f64, stop: f64, num: usize, chunks: &Bound<'_, PyAny>) -> PyResult<Self> {
        let c = chunks_of(chunks)?;
        build(py, || Array::linspace(start, stop, num, c))
    }
    #[staticmethod]
    #[pyo3(signature = (n, m, k, dtype, chunks))]
    fn eye(
        py: Python<'_>,
        n: usize,
        m: Option<usize>,
        k: isize,
        dtype: &str,
        chunks: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let (d, c) = (dtype_of(dtype)?, chunks_of(chunks)?);
        build(py, || Array::eye(n, m, k, d, c))
    }
    #[staticmethod]
    fn random(
        py: Python<'_>,
        kind: &str,
        shape: Vec<usize>,
        seed: u64,
        a: f64,
        b: f64,
        chunks: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let c = chunks_of(chunks)?;
        match kind {
            "uniform" => build(py, || Array::random_uniform(&shape, seed, c)),
            "normal" => build(py, || Array::random_normal(a, b, &shape, seed, c)),
            "randint" => build(py, || Array::randint(a as i64, b as i64, &shape, seed, c)),
            other => Err(PyValueError::new_err(format!("unknown distribution {other:?}"))),
        }
    }
    /// `from_array` of a C-contiguous numpy array of `dtype` (bool as its uint8 view).
    #[staticmethod]
    fn from_numpy(py: Python<'_>, obj: &Bound<'_, PyAny>, dtype: &str, chunks: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (d, c) = (dtype_of(dtype)?, chunks_of(chunks)?);
        Ok(PyArray { inner: numpy_array(py, obj, d, &c)? })
    }
    #[staticmethod]
    fn from_npy(py: Python<'_>, path: std::path::PathBuf, chunks: &Bound<'_, PyAny>) -> PyResult<Self> {
        let c = chunks_of(chunks)?;
        wrap(py, py.detach(|| guarded(|| Array::from_npy(&path, c)))?)
    }
    #[staticmethod]
    #[pyo3(signature = (path, storage_options = None))]
    fn from_zarr(py: Python<'_>, path: String, storage_options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let s = storage_of(storage_options)?;
        wrap(py, py.detach(|| guarded(|| Array::from_zarr_with(&path, &s)))?)
    }
    /// Blocks made by Python calls: `args[i]` are the arguments (nodes or
    /// literal values) of block `i` in C order; `function` is the pickle or
    /// a node of it, `template` as in `call_node`.
    #[staticmethod]
    #[pyo3(signature = (prefix, token, function, template, args, dtype, chunks))]
    #[allow(clippy::too_many_arguments)]
    fn from_calls(
        prefix: &str,
        token: &str,
        function: &Bound<'_, PyAny>,
        template: Option<&Bound<'_, pyo3::types::PyBytes>>,
        args: Vec<Bound<'_, PyList>>,
        dtype: &str,
        chunks: Vec<Vec<Option<usize>>>,
    ) -> PyResult<Self> {
        let d = dtype_of(dtype)?;
        let grid = ChunkGrid::from_options(chunks);
        if args.len() != grid.nblocks() {
            return Err(PyValueError::new_err(format!("{} argument lists for {} blocks", args.len(), grid.nblocks())));
        }
        let func: Result<Delayed<Value>, bytes::Bytes> = if let Ok(node) = function.cast::<Node>() {
            Ok(node.get().inner.clone())
        } else {
            Err(shared_bytes(function.cast::<pyo3::types::PyBytes>().map_err(PyErr::from)?))
        };
        let func_part = || match &func {
            Ok(node) => ArgPart::of(node),
            Err(b) => ArgPart::literal(Value::Bytes(b.clone())),
        };
        let tmpl = template.map_or(Value::None, |t| Value::Bytes(bytes::Bytes::copy_from_slice(t.as_bytes())));
        let mut per_block = Vec::with_capacity(args.len());
        for list in &args {
            let mut parts = vec![func_part(), ArgPart::literal(tmpl.clone())];
            for a in list.iter() {
                parts.push(arg_part(&a)?);
            }
            per_block.push(parts);
        }
        let mut it = per_block.into_iter();
        let inner = Array::from_block_tasks(prefix, token.as_bytes(), d, grid, |_, key: Key| {
            let parts = it.next().unwrap_or_default();
            Delayed::from_task(key, rask_core::capability::PYTHON_CALL, Params::default(), parts)
        });
        Ok(PyArray { inner })
    }

    // ---------------------------------------------------------- elementwise
    fn binary(&self, py: Python<'_>, op: &str, other: &PyArray) -> PyResult<Self> {
        let op = binary_op(op)?;
        build(py, || self.inner.apply(op, &other.inner))
    }
    /// `self op value`, or `value op self` when `reflected`.
    fn scalar(&self, py: Python<'_>, op: &str, value: &Bound<'_, PyAny>, reflected: bool) -> PyResult<Self> {
        let (op, v) = (binary_op(op)?, fill_of(value)?);
        build(py, || if reflected { self.inner.rscalar(op, v) } else { self.inner.scalar(op, v) })
    }
    #[pyo3(signature = (op, decimals = 0))]
    fn unary(&self, py: Python<'_>, op: &str, decimals: i32) -> PyResult<Self> {
        let op = unary_op(op, decimals)?;
        build(py, || Ok(self.inner.map_unary(op)))
    }
    fn clip(&self, py: Python<'_>, low: &Bound<'_, PyAny>, high: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (l, h) = (fill_of(low)?, fill_of(high)?);
        build(py, || Ok(self.inner.clip(l, h)))
    }
    fn where_(&self, py: Python<'_>, a: &PyArray, b: &PyArray) -> PyResult<Self> {
        build(py, || self.inner.where_(&a.inner, &b.inner))
    }
    fn astype(&self, py: Python<'_>, dtype: &str) -> PyResult<Self> {
        let d = dtype_of(dtype)?;
        build(py, || Ok(self.inner.astype(d)))
    }

    // ---------------------------------------------------------- reductions
    #[pyo3(signature = (op, axes, keepdims, ddof = 0, split_every = 4))]
    fn reduce(
        &self,
        py: Python<'_>,
        op: &str,
        axes: Option<Vec<usize>>,
        keepdims: bool,
        ddof: u32,
        split_every: usize,
    ) -> PyResult<Self> {
        let op = reduction(op, ddof)?;
        build(py, || self.inner.reduce(op, axes.as_deref(), keepdims, split_every))
    }
    fn cumulative(&self, py: Python<'_>, op: &str, axis: usize) -> PyResult<Self> {
        match op {
            "cumsum" => build(py, || self.inner.cumsum(axis)),
            "cumprod" => build(py, || self.inner.cumprod(axis)),
            other => Err(PyValueError::new_err(format!("unknown cumulative operation {other:?}"))),
        }
    }
    fn diff(&self, py: Python<'_>, axis: usize) -> PyResult<Self> {
        build(py, || self.inner.diff(axis))
    }
    fn histogram(&self, py: Python<'_>, bins: usize, low: f64, high: f64) -> PyResult<(Self, Vec<f64>)> {
        let (counts, edges) = guarded(|| self.inner.histogram(bins, (low, high)))?.map_err(|e| array_err(py, e))?;
        Ok((PyArray { inner: counts }, edges))
    }
    fn unique(&self, py: Python<'_>) -> PyResult<Self> {
        build(py, || self.inner.unique())
    }
    fn bincount(&self, py: Python<'_>, minlength: usize) -> PyResult<Self> {
        build(py, || self.inner.bincount(minlength))
    }

    // ------------------------------------------------- indexing and layout
    fn slice(&self, py: Python<'_>, index: Vec<Bound<'_, PyAny>>) -> PyResult<Self> {
        let index = index.iter().map(index_of).collect::<PyResult<Vec<_>>>()?;
        build(py, || self.inner.slice(&index))
    }
    fn take(&self, py: Python<'_>, indices: Vec<isize>, axis: usize) -> PyResult<Self> {
        build(py, || self.inner.take(&indices, axis))
    }
    fn mask(&self, py: Python<'_>, mask: &PyArray) -> PyResult<Self> {
        build(py, || self.inner.mask(&mask.inner))
    }
    fn compute_chunk_sizes(&self, py: Python<'_>) -> PyResult<Self> {
        let r = py.detach(|| guarded(|| self.inner.compute_chunk_sizes()))?;
        wrap(py, r)
    }
    fn transpose(&self, py: Python<'_>, perm: Vec<usize>) -> PyResult<Self> {
        build(py, || self.inner.transpose(&perm))
    }
    fn reshape(&self, py: Python<'_>, shape: Vec<isize>) -> PyResult<Self> {
        build(py, || self.inner.reshape(&shape))
    }
    fn rechunk(&self, py: Python<'_>, chunks: &Bound<'_, PyAny>) -> PyResult<Self> {
        let c = chunks_of(chunks)?;
        build(py, || self.inner.rechunk(c))
    }
    #[staticmethod]
    fn concatenate(py: Python<'_>, arrays: Vec<Bound<'_, PyArray>>, axis: usize) -> PyResult<Self> {
        let arrays: Vec<Array> = arrays.iter().map(|a| a.get().inner.clone()).collect();
        build(py, || Array::concatenate(&arrays, axis))
    }
    #[staticmethod]
    fn stack(py: Python<'_>, arrays: Vec<Bound<'_, PyArray>>, axis: usize) -> PyResult<Self> {
        let arrays: Vec<Array> = arrays.iter().map(|a| a.get().inner.clone()).collect();
        build(py, || Array::stack(&arrays, axis))
    }
    #[pyo3(signature = (axes = None))]
    fn squeeze(&self, py: Python<'_>, axes: Option<Vec<usize>>) -> PyResult<Self> {
        build(py, || self.inner.squeeze(axes.as_deref()))
    }
    fn expand_dims(&self, py: Python<'_>, axis: usize) -> PyResult<Self> {
        build(py, || self.inner.expand_dims(axis))
    }
    fn dot(&self, py: Python<'_>, other: &PyArray) -> PyResult<Self> {
        build(py, || self.inner.dot(&other.inner))
    }
    fn matmul(&self, py: Python<'_>, other: &PyArray) -> PyResult<Self> {
        build(py, || self.inner.matmul(&other.inner))
    }
    fn tensordot(&self, py: Python<'_>, other: &PyArray, a_axes: Vec<usize>, b_axes: Vec<usize>) -> PyResult<Self> {
        build(py, || self.inner.tensordot(&other.inner, &a_axes, &b_axes))
    }
    /// `map_overlap` with a built-in op (Python functions go through `from_calls`).
    fn map_overlap_op(
        &self,
        py: Python<'_>,
        op: &str,
        depth: Vec<usize>,
        boundary: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let b = boundary_of(boundary)?;
        build(py, || self.inner.map_overlap(op, Params::default(), &depth, b, self.inner.dtype()))
    }

    // -------------------------------------------------------------- output
    #[pyo3(signature = (path, zarr_format = 3, storage_options = None))]
    fn to_zarr(
        &self,
        py: Python<'_>,
        path: String,
        zarr_format: u8,
        storage_options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let format = match zarr_format {
            2 => rask_array::zarr::ZarrFormat::V2,
            3 => rask_array::zarr::ZarrFormat::V3,
            other => return Err(PyValueError::new_err(format!("zarr_format must be 2 or 3, got {other}"))),
        };
        let options =
            rask_array::zarr::ZarrWriteOptions { format, storage: storage_of(storage_options)?, ..Default::default() };
        let r = py.detach(|| guarded(|| self.inner.to_zarr_with(&path, &options)))?;
        r.map_err(|e| array_err(py, e))
    }
    fn to_npy(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let r = py.detach(|| guarded(|| self.inner.to_npy(&path)))?;
        r.map_err(|e| array_err(py, e))
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.inner)
    }
}

fn boundary_of(b: &Bound<'_, PyAny>) -> PyResult<Boundary> {
    if let Ok(s) = b.extract::<String>() {
        return Ok(match s.as_str() {
            "reflect" => Boundary::Reflect,
            "nearest" => Boundary::Nearest,
            "periodic" => Boundary::Periodic,
            "none" => Boundary::None,
            other => return Err(PyValueError::new_err(format!("unknown boundary {other:?}"))),
        });
    }
    Ok(Boundary::Constant(b.extract()?))
}

fn unreachable_block() -> Delayed<ArrayValue> {
    Delayed::from_task(Key::new("missing-block"), rask_core::ops::builtin::IDENTITY, Params::default(), vec![])
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyArray>()?;
    m.add_class::<NumpyView>()?;
    Ok(())
}
