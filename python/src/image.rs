//! `rask.image` for Python: dask-image's `imread`, `ndfilters` and
//! `ndmeasure` over `rask_image`, on the arrays of `array.rs`.
//!
//! Each function takes the native array of a `rask.array.Array` and builds
//! the same graph a Rust program builds; the filters run on any worker.

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::prelude::*;
use rask_core::DType;
use rask_image::ImageError;
use rask_image::filters::{self, FilterOptions, Footprint, Kernel, Modes};

use crate::array::PyArray;
use crate::errors::{guarded, to_pyerr};

/// rask-image's errors as the exceptions scipy and dask-image raise.
fn image_err(py: Python<'_>, e: ImageError) -> PyErr {
    match e {
        ImageError::Io { path, message } => {
            let text = format!("{path}: {message}");
            let lower = message.to_lowercase();
            if lower.contains("no such file") || lower.contains("not found") || message.contains("NoSuchKey") {
                PyFileNotFoundError::new_err(text)
            } else {
                PyOSError::new_err(text)
            }
        }
        ImageError::Mismatch(m) if m.contains("no files match") => PyFileNotFoundError::new_err(m),
        ImageError::Array(e) => crate::array::array_err(py, e),
        ImageError::Compute(e) => to_pyerr(py, e),
        other => PyValueError::new_err(other.to_string()),
    }
}

fn build(py: Python<'_>, f: impl FnOnce() -> rask_image::Result<rask_array::Array>) -> PyResult<PyArray> {
    match guarded(f)? {
        Ok(inner) => Ok(PyArray { inner }),
        Err(e) => Err(image_err(py, e)),
    }
}

/// `mode` (one name or one per axis), `cval` and `output` as scipy takes them.
fn options(mode: Vec<String>, cval: f64, output: Option<&str>) -> PyResult<FilterOptions> {
    let modes = if mode.len() == 1 { Modes::from_name(&mode[0]) } else { Modes::from_names(&mode) }
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let output = match output {
        None => None,
        Some(name) => Some(
            DType::from_name(name)
                .ok_or_else(|| PyValueError::new_err(format!("output dtype {name:?} is not one rask filters write")))?,
        ),
    };
    Ok(FilterOptions { mode: modes, cval, output })
}

fn footprint(size: Option<Vec<usize>>, mask: Option<(Vec<bool>, Vec<usize>)>) -> PyResult<Footprint> {
    match (size, mask) {
        (_, Some((mask, shape))) => Ok(Footprint::Mask { mask, shape }),
        (Some(size), None) => Ok(Footprint::Size(size)),
        (None, None) => Err(PyValueError::new_err("no footprint provided")),
    }
}

/// `dask_image.imread.imread(pattern, nframes)`: one lazy array over the
/// files a glob names (local or `s3://`).
#[pyfunction]
#[pyo3(signature = (pattern, nframes = None))]
fn image_imread(py: Python<'_>, pattern: &str, nframes: Option<usize>) -> PyResult<PyArray> {
    let options = rask_image::io::ImreadOptions { frames_per_block: nframes, ..Default::default() };
    py.detach(|| guarded(|| rask_image::io::imread_with(pattern, &options)))?
        .map(|inner| PyArray { inner })
        .map_err(|e| image_err(py, e))
}

/// The Gaussian family: `gaussian_filter` (with `order`),
/// `gaussian_gradient_magnitude` and `gaussian_laplace`.
#[pyfunction]
#[pyo3(signature = (kind, x, sigma, order, truncate, mode, cval, output = None))]
#[allow(clippy::too_many_arguments)]
fn image_gaussian(
    py: Python<'_>,
    kind: &str,
    x: &PyArray,
    sigma: Vec<f64>,
    order: Vec<usize>,
    truncate: f64,
    mode: Vec<String>,
    cval: f64,
    output: Option<&str>,
) -> PyResult<PyArray> {
    let opts = options(mode, cval, output)?;
    let image = &x.inner;
    build(py, || match kind {
        "gaussian_filter" => filters::gaussian_filter_order(image, &sigma, &order, truncate, &opts),
        "gaussian_gradient_magnitude" => filters::gaussian_gradient_magnitude(image, &sigma, &opts),
        "gaussian_laplace" => filters::gaussian_laplace(image, &sigma, &opts),
        other => Err(ImageError::Value(format!("no Gaussian filter {other:?}"))),
    })
}

/// Box filters by size: `uniform_filter`, `minimum_filter`,
/// `maximum_filter`, `median_filter`.
#[pyfunction]
#[pyo3(signature = (kind, x, size, mode, cval, output = None))]
fn image_box(
    py: Python<'_>,
    kind: &str,
    x: &PyArray,
    size: Vec<usize>,
    mode: Vec<String>,
    cval: f64,
    output: Option<&str>,
) -> PyResult<PyArray> {
    let opts = options(mode, cval, output)?;
    let image = &x.inner;
    build(py, || match kind {
        "uniform_filter" => filters::uniform_filter(image, &size, &opts),
        "minimum_filter" => filters::minimum_filter(image, &size, &opts),
        "maximum_filter" => filters::maximum_filter(image, &size, &opts),
        "median_filter" => filters::median_filter(image, &size, &opts),
        other => Err(ImageError::Value(format!("no box filter {other:?}"))),
    })
}

/// Rank filters over a box or a boolean footprint: `rank_filter`,
/// `percentile_filter` and `median_filter` with a footprint.
#[pyfunction]
#[pyo3(signature = (kind, x, value, size, mask, origin, mode, cval, output = None))]
#[allow(clippy::too_many_arguments)]
fn image_rank(
    py: Python<'_>,
    kind: &str,
    x: &PyArray,
    value: f64,
    size: Option<Vec<usize>>,
    mask: Option<(Vec<bool>, Vec<usize>)>,
    origin: Vec<isize>,
    mode: Vec<String>,
    cval: f64,
    output: Option<&str>,
) -> PyResult<PyArray> {
    let opts = options(mode, cval, output)?;
    let fp = footprint(size, mask)?;
    let image = &x.inner;
    build(py, || match kind {
        "rank_filter" => {
            if value.fract() != 0.0 {
                return Err(ImageError::Value(format!("rank must be an integer, got {value}")));
            }
            filters::rank_filter(image, value as isize, &fp, &origin, &opts)
        }
        "percentile_filter" => filters::percentile_filter(image, value, &fp, &origin, &opts),
        "median_filter" => filters::median_filter_footprint(image, &fp, &origin, &opts),
        other => Err(ImageError::Value(format!("no rank filter {other:?}"))),
    })
}

/// Edge filters: `sobel` and `prewitt` along `axis`, and `laplace`.
#[pyfunction]
#[pyo3(signature = (kind, x, axis, mode, cval, output = None))]
fn image_edge(
    py: Python<'_>,
    kind: &str,
    x: &PyArray,
    axis: isize,
    mode: Vec<String>,
    cval: f64,
    output: Option<&str>,
) -> PyResult<PyArray> {
    let opts = options(mode, cval, output)?;
    let image = &x.inner;
    build(py, || match kind {
        "sobel" => filters::sobel(image, axis, &opts),
        "prewitt" => filters::prewitt(image, axis, &opts),
        "laplace" => filters::laplace(image, &opts),
        other => Err(ImageError::Value(format!("no edge filter {other:?}"))),
    })
}

/// `correlate` and `convolve` with an n-d kernel (weights in C order).
#[pyfunction]
#[pyo3(signature = (kind, x, weights, shape, origin, mode, cval, output = None))]
#[allow(clippy::too_many_arguments)]
fn image_kernel(
    py: Python<'_>,
    kind: &str,
    x: &PyArray,
    weights: Vec<f64>,
    shape: Vec<usize>,
    origin: Vec<isize>,
    mode: Vec<String>,
    cval: f64,
    output: Option<&str>,
) -> PyResult<PyArray> {
    let opts = options(mode, cval, output)?;
    let kernel = Kernel::new(weights, shape).map_err(|e| image_err(py, e))?;
    let image = &x.inner;
    build(py, || match kind {
        "correlate" => filters::correlate(image, &kernel, &origin, &opts),
        "convolve" => filters::convolve(image, &kernel, &origin, &opts),
        other => Err(ImageError::Value(format!("no kernel filter {other:?}"))),
    })
}

/// `ndmeasure.label`: the labels and the 0-d count of features.
#[pyfunction]
#[pyo3(signature = (x, connectivity))]
fn image_label(py: Python<'_>, x: &PyArray, connectivity: usize) -> PyResult<(PyArray, PyArray)> {
    let image = &x.inner;
    match guarded(|| rask_image::measure::label(image, connectivity))? {
        Ok((labels, count)) => Ok((PyArray { inner: labels }, PyArray { inner: count })),
        Err(e) => Err(image_err(py, e)),
    }
}

/// Per-label statistics of `image` over `labels` (labels 1..=count):
/// `(sum, mean, maximum, minimum, area)`, computed on the cluster.
type Stats = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<u64>);

#[pyfunction]
#[pyo3(signature = (x, labels, count))]
fn image_label_stats(py: Python<'_>, x: &PyArray, labels: &PyArray, count: usize) -> PyResult<Stats> {
    let (image, labels) = (&x.inner, &labels.inner);
    match py.detach(|| guarded(|| rask_image::measure::label_stats(image, labels, count)))? {
        Ok(s) => Ok((s.sum, s.mean, s.maximum, s.minimum, s.area)),
        Err(e) => Err(image_err(py, e)),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(image_imread, m)?)?;
    m.add_function(wrap_pyfunction!(image_gaussian, m)?)?;
    m.add_function(wrap_pyfunction!(image_box, m)?)?;
    m.add_function(wrap_pyfunction!(image_rank, m)?)?;
    m.add_function(wrap_pyfunction!(image_edge, m)?)?;
    m.add_function(wrap_pyfunction!(image_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(image_label, m)?)?;
    m.add_function(wrap_pyfunction!(image_label_stats, m)?)?;
    Ok(())
}
