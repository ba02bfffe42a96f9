//! `scipy.ndimage` filters over chunked arrays (dask-image's `ndfilters`).
//!
//! Each filter is a [`Filter`] value: it knows how far it reads along each
//! axis ([`Filter::depth`]) and how to run on one in-memory block
//! ([`Filter::apply`], scipy's exact arithmetic from [`crate::kernels`]).
//! Over a chunked array it runs through `Array::map_overlap` with that
//! depth on the axes that are split into several chunks, so the result is the
//! same for any chunking. The edges of the whole array are extended by the
//! filter itself (the halo has `Boundary::None` there), which gives scipy's
//! `mirror` mode and arrays shorter than the filter for free; only `wrap`
//! takes its halo from the other end (`Boundary::Periodic`).

use rask::core::{ArrayValue, DType, OpEntry, OpError, Params, Value};
use rask_array::{Array, Boundary, Chunks};
use serde::{Deserialize, Serialize};

use crate::kernels::{self, Block, Mode, Real};
use crate::{ImageError, Result};

/// The registered op that runs a [`FilterTask`] on one (extended) block.
pub const FILTER_OP: &str = "image.filter";

/// A filter with all its parameters resolved per axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    /// `gaussian_filter`: a 1-D pass per axis with `sigma > 1e-15`.
    Gaussian { sigma: Vec<f64>, order: Vec<usize>, radius: Vec<usize> },
    /// `uniform_filter` with a box of `size[axis]`.
    Uniform { size: Vec<usize> },
    /// `minimum_filter` / `maximum_filter` with a box of `size[axis]`.
    Extremum { size: Vec<usize>, maximum: bool },
    /// `median_filter` with a box of `size[axis]`.
    Median { size: Vec<usize> },
    /// `sobel` (`[-1, 0, 1]` along `axis`, `[1, 2, 1]` along the others) or
    /// `prewitt` (`[1, 1, 1]`).
    Edge { axis: usize, smooth: [f64; 3] },
    /// `laplace`: the sum over axes of `[1, -2, 1]`.
    Laplace,
    /// `gaussian_gradient_magnitude`.
    GradientMagnitude { sigma: Vec<f64>, radius: Vec<usize> },
    /// `correlate` with an n-d kernel (C order of `shape`) and origins.
    Correlate { weights: Vec<f64>, shape: Vec<usize>, origin: Vec<isize> },
    /// `rank_filter` (and `percentile_filter`, footprint `median_filter`,
    /// `minimum_filter`, `maximum_filter`): the `rank`-th smallest of the
    /// values under the footprint (`mask` in C order of `shape`).
    Rank { mask: Vec<bool>, shape: Vec<usize>, origin: Vec<isize>, rank: usize },
}

impl Filter {
    /// How many elements the filter reads beyond an output element, per axis.
    pub fn depth(&self, ndim: usize) -> Vec<usize> {
        match self {
            Filter::Gaussian { sigma, radius, .. } | Filter::GradientMagnitude { sigma, radius } => {
                sigma.iter().zip(radius).map(|(&s, &r)| if s > 1e-15 { r } else { 0 }).collect()
            }
            Filter::Uniform { size } | Filter::Extremum { size, .. } | Filter::Median { size } => {
                size.iter().map(|&s| s / 2).collect()
            }
            Filter::Edge { .. } | Filter::Laplace => vec![1; ndim],
            Filter::Correlate { shape, origin, .. } | Filter::Rank { shape, origin, .. } => {
                kernels::window_pad(shape, origin).into_iter().map(|(before, after)| before.max(after)).collect()
            }
        }
    }

    /// Runs the filter on one in-memory block, with scipy's output rules:
    /// every pass is stored as `output` before the next reads it.
    pub fn apply(&self, input: ArrayValue, mode: Mode, cval: f64, output: DType) -> ArrayValue {
        let f32_work = input.dtype() == DType::F32 && output == DType::F32;
        if let Some(passes) = self.separable_passes(input.shape().len()) {
            return if f32_work {
                kernels::separable_to::<f32>(input, &passes, mode, cval, output)
            } else {
                kernels::separable_to::<f64>(input, &passes, mode, cval, output)
            };
        }
        if f32_work {
            self.run::<f32>(input, mode, cval, output).into_value(output)
        } else {
            self.run::<f64>(input, mode, cval, output).into_value(output)
        }
    }

    /// The 1-D correlations of a separable filter (Gaussian with at least
    /// one pass, Sobel, Prewitt), in scipy's order.
    fn separable_passes(&self, ndim: usize) -> Option<Vec<(usize, Vec<f64>)>> {
        match self {
            Filter::Gaussian { sigma, order, radius } => {
                let passes = gaussian_kernels(ndim, sigma, order, radius);
                (!passes.is_empty()).then_some(passes)
            }
            Filter::Edge { axis, smooth } => {
                let mut passes = vec![(*axis, vec![-1.0, 0.0, 1.0])];
                passes.extend((0..ndim).filter(|a| a != axis).map(|a| (a, smooth.to_vec())));
                Some(passes)
            }
            _ => None,
        }
    }

    fn run<W: Real>(&self, input: ArrayValue, mode: Mode, cval: f64, output: DType) -> Block<W> {
        let ndim = input.shape().len();
        let src: Block<W> = Block::from_owned(input);
        let stored = |mut b: Block<W>| {
            b.store_as(output);
            b
        };
        match self {
            Filter::Gaussian { .. } | Filter::Edge { .. } => stored(src),
            Filter::Uniform { size } => {
                let mut b = src;
                for (axis, &s) in size.iter().enumerate() {
                    if s > 1 {
                        b = kernels::uniform1d(&b, axis, s, mode, cval);
                        b.store_as(output);
                    }
                }
                stored(b)
            }
            Filter::Extremum { size, maximum } => {
                let mut b = src;
                for (axis, &s) in size.iter().enumerate() {
                    if s > 1 {
                        b = kernels::extremum1d(&b, axis, s, *maximum, mode, cval);
                        b.store_as(output);
                    }
                }
                stored(b)
            }
            Filter::Median { size } => stored(kernels::median_nd(&src, size, mode, cval)),
            Filter::Laplace => {
                if ndim == 0 {
                    return stored(src);
                }
                let mut out = stored(kernels::correlate1d(&src, 0, &[1.0, -2.0, 1.0], mode, cval));
                for axis in 1..ndim {
                    let tmp = stored(kernels::correlate1d(&src, axis, &[1.0, -2.0, 1.0], mode, cval));
                    for (o, t) in out.data.iter_mut().zip(&tmp.data) {
                        *o = W::of(kernels::wrap_integer(o.get() + t.get(), output));
                    }
                }
                out
            }
            Filter::GradientMagnitude { sigma, radius } => {
                let mut out: Option<Block<W>> = None;
                for axis in 0..ndim {
                    let mut order = vec![0; ndim];
                    order[axis] = 1;
                    let mut d = gaussian_passes(src.clone(), sigma, &order, radius, mode, cval, output);
                    for v in &mut d.data {
                        *v = W::of(kernels::wrap_integer(v.get() * v.get(), output));
                    }
                    out = Some(match out {
                        None => d,
                        Some(mut o) => {
                            for (a, b) in o.data.iter_mut().zip(&d.data) {
                                *a = W::of(kernels::wrap_integer(a.get() + b.get(), output));
                            }
                            o
                        }
                    });
                }
                let mut o = out.unwrap_or_else(|| stored(src));
                for v in &mut o.data {
                    *v = W::of(v.get().sqrt());
                }
                o.store_as(output);
                o
            }
            Filter::Correlate { weights, shape, origin } => {
                stored(kernels::correlate_nd(&src, weights, shape, origin, mode, cval))
            }
            Filter::Rank { mask, shape, origin, rank } => {
                stored(kernels::rank_nd(&src, mask, shape, origin, *rank, mode, cval))
            }
        }
    }
}

/// The reversed (scipy correlates with them reversed) Gaussian kernels of
/// the axes with `sigma > 1e-15`, in axis order.
fn gaussian_kernels(ndim: usize, sigma: &[f64], order: &[usize], radius: &[usize]) -> Vec<(usize, Vec<f64>)> {
    (0..ndim)
        .filter(|&axis| sigma[axis] > 1e-15)
        .map(|axis| {
            let mut w = kernels::gaussian_kernel1d(sigma[axis], order[axis], radius[axis]);
            w.reverse();
            (axis, w)
        })
        .collect()
}

fn gaussian_passes<W: Real>(
    src: Block<W>,
    sigma: &[f64],
    order: &[usize],
    radius: &[usize],
    mode: Mode,
    cval: f64,
    output: DType,
) -> Block<W> {
    let passes = gaussian_kernels(src.shape.len(), sigma, order, radius);
    if passes.is_empty() {
        let mut b = src;
        b.store_as(output);
        return b;
    }
    kernels::separable(&src, &passes, mode, cval, output)
}

/// What a filter task carries: the filter, the edge mode and the output dtype.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FilterTask {
    pub filter: Filter,
    pub mode: Mode,
    pub cval: f64,
    pub output: DType,
}

fn filter_op(p: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let task: FilterTask =
        postcard::from_bytes(&p.0).map_err(|e| OpError::new(format!("{FILTER_OP}: bad parameters: {e}")))?;
    let input = match <[Value; 1]>::try_from(args) {
        Ok([Value::Array(a)]) => a,
        _ => return Err(OpError::new(format!("{FILTER_OP} takes one array argument"))),
    };
    if input.dtype() == DType::Bool {
        return Err(OpError::new(format!("{FILTER_OP}: boolean images are not supported; cast to uint8 first")));
    }
    Ok(Value::Array(task.filter.apply(input, task.mode, task.cval, task.output)))
}

rask::core::inventory::submit! { OpEntry { name: FILTER_OP, func: filter_op } }

/// Options shared by the filters: scipy's `mode`, `cval` and `output`
/// (`None`: the input's dtype).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FilterOptions {
    pub mode: Mode,
    pub cval: f64,
    pub output: Option<DType>,
}

impl Default for FilterOptions {
    fn default() -> Self {
        Self { mode: Mode::Reflect, cval: 0.0, output: None }
    }
}

impl FilterOptions {
    /// The given mode, `cval` 0 and the input's dtype.
    pub fn mode(mode: Mode) -> Self {
        Self { mode, ..Self::default() }
    }
}

/// Runs `filter` over a chunked array: `map_overlap` with the filter's depth
/// on split axes, `map_blocks` when no axis needs a halo.
pub fn apply(image: &Array, filter: Filter, options: &FilterOptions) -> Result<Array> {
    let ndim = image.ndim();
    if image.dtype() == DType::Bool {
        return Err(ImageError::Value("boolean images are not supported; cast to uint8 first".into()));
    }
    let shape: Vec<usize> =
        image.shape().into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
            ImageError::Value("filters need known chunk sizes; call compute_chunk_sizes() first".into())
        })?;
    let mut depth = filter.depth(ndim);
    let mut image = image.clone();
    if options.mode == Mode::Wrap {
        // A periodic halo deeper than the axis cannot be gathered: keep such
        // axes whole, where the filter wraps by itself.
        let too_deep: Vec<usize> =
            (0..ndim).filter(|&a| depth[a] > 0 && depth[a] >= shape[a] && image.chunks().axis(a).len() > 1).collect();
        if !too_deep.is_empty() {
            let chunks: Vec<usize> = (0..ndim)
                .map(|a| {
                    if too_deep.contains(&a) {
                        shape[a].max(1)
                    } else {
                        image.chunks().axis(a).iter().flatten().copied().max().unwrap_or(1).max(1)
                    }
                })
                .collect();
            image = image.rechunk(Chunks::Uniform(chunks))?;
        }
    }
    for (a, d) in depth.iter_mut().enumerate() {
        if image.chunks().axis(a).len() <= 1 {
            *d = 0;
        }
    }
    let output = options.output.unwrap_or(image.dtype());
    let task = FilterTask { filter, mode: options.mode, cval: options.cval, output };
    let params = Params::encode(&task);
    if depth.iter().all(|&d| d == 0) {
        return Ok(image.map_blocks(FILTER_OP, params, output));
    }
    let boundary = if options.mode == Mode::Wrap { Boundary::Periodic } else { Boundary::None };
    Ok(image.map_overlap(FILTER_OP, params, &depth, boundary, output)?)
}

/// One value per axis: a single value is repeated.
fn per_axis<T: Copy + std::fmt::Debug>(values: &[T], ndim: usize, what: &str) -> Result<Vec<T>> {
    match values.len() {
        1 => Ok(vec![values[0]; ndim]),
        n if n == ndim => Ok(values.to_vec()),
        n => Err(ImageError::Value(format!("{what} has {n} values {values:?}, expected 1 or {ndim} (one per axis)"))),
    }
}

fn checked_axis(axis: isize, ndim: usize) -> Result<usize> {
    let a = if axis < 0 { axis + ndim as isize } else { axis };
    if (0..ndim as isize).contains(&a) {
        Ok(a as usize)
    } else {
        Err(ImageError::Value(format!("axis {axis} is out of bounds for {ndim} dimensions")))
    }
}

/// `scipy.ndimage.gaussian_filter(image, sigma, order, mode, cval, truncate)`.
/// `sigma` and `order` take one value or one per axis.
pub fn gaussian_filter_order(
    image: &Array,
    sigma: &[f64],
    order: &[usize],
    truncate: f64,
    options: &FilterOptions,
) -> Result<Array> {
    let ndim = image.ndim();
    let sigma = per_axis(sigma, ndim, "sigma")?;
    let order = per_axis(order, ndim, "order")?;
    if sigma.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
        return Err(ImageError::Value(format!("sigma must be finite and non-negative, got {sigma:?}")));
    }
    if !(truncate.is_finite() && truncate >= 0.0) {
        return Err(ImageError::Value(format!("truncate must be finite and non-negative, got {truncate}")));
    }
    let radius = sigma.iter().map(|&s| kernels::gaussian_radius(s, truncate)).collect();
    apply(image, Filter::Gaussian { sigma, order, radius }, options)
}

/// `scipy.ndimage.gaussian_filter(image, sigma)` (order 0, `truncate=4.0`).
pub fn gaussian_filter(image: &Array, sigma: &[f64], options: &FilterOptions) -> Result<Array> {
    gaussian_filter_order(image, sigma, &[0], 4.0, options)
}

fn sizes(image: &Array, size: &[usize]) -> Result<Vec<usize>> {
    let size = per_axis(size, image.ndim(), "size")?;
    if size.contains(&0) {
        return Err(ImageError::Value(format!("filter sizes must be at least 1, got {size:?}")));
    }
    Ok(size)
}

/// `scipy.ndimage.uniform_filter(image, size)`.
pub fn uniform_filter(image: &Array, size: &[usize], options: &FilterOptions) -> Result<Array> {
    apply(image, Filter::Uniform { size: sizes(image, size)? }, options)
}

/// `scipy.ndimage.minimum_filter(image, size)`.
pub fn minimum_filter(image: &Array, size: &[usize], options: &FilterOptions) -> Result<Array> {
    apply(image, Filter::Extremum { size: sizes(image, size)?, maximum: false }, options)
}

/// `scipy.ndimage.maximum_filter(image, size)`.
pub fn maximum_filter(image: &Array, size: &[usize], options: &FilterOptions) -> Result<Array> {
    apply(image, Filter::Extremum { size: sizes(image, size)?, maximum: true }, options)
}

/// `scipy.ndimage.median_filter(image, size)`.
pub fn median_filter(image: &Array, size: &[usize], options: &FilterOptions) -> Result<Array> {
    apply(image, Filter::Median { size: sizes(image, size)? }, options)
}

/// `scipy.ndimage.sobel(image, axis)`.
pub fn sobel(image: &Array, axis: isize, options: &FilterOptions) -> Result<Array> {
    let axis = checked_axis(axis, image.ndim())?;
    apply(image, Filter::Edge { axis, smooth: [1.0, 2.0, 1.0] }, options)
}

/// `scipy.ndimage.prewitt(image, axis)`.
pub fn prewitt(image: &Array, axis: isize, options: &FilterOptions) -> Result<Array> {
    let axis = checked_axis(axis, image.ndim())?;
    apply(image, Filter::Edge { axis, smooth: [1.0, 1.0, 1.0] }, options)
}

/// `scipy.ndimage.laplace(image)`.
pub fn laplace(image: &Array, options: &FilterOptions) -> Result<Array> {
    apply(image, Filter::Laplace, options)
}

/// `scipy.ndimage.gaussian_gradient_magnitude(image, sigma)` (`truncate=4`).
pub fn gaussian_gradient_magnitude(image: &Array, sigma: &[f64], options: &FilterOptions) -> Result<Array> {
    let sigma = per_axis(sigma, image.ndim(), "sigma")?;
    if sigma.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
        return Err(ImageError::Value(format!("sigma must be finite and non-negative, got {sigma:?}")));
    }
    let radius = sigma.iter().map(|&s| kernels::gaussian_radius(s, 4.0)).collect();
    apply(image, Filter::GradientMagnitude { sigma, radius }, options)
}

/// An n-d kernel for [`correlate`] and [`convolve`].
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// Weights in C order of `shape`.
    pub weights: Vec<f64>,
    pub shape: Vec<usize>,
}

impl Kernel {
    /// Checks that `weights` fills `shape`.
    pub fn new(weights: Vec<f64>, shape: Vec<usize>) -> Result<Self> {
        if weights.len() != shape.iter().product::<usize>() || shape.contains(&0) {
            return Err(ImageError::Value(format!(
                "kernel of shape {shape:?} needs {} weights, got {}",
                shape.iter().product::<usize>(),
                weights.len()
            )));
        }
        Ok(Self { weights, shape })
    }
}

fn check_kernel(image: &Array, kernel: &Kernel, origin: &[isize]) -> Result<Vec<isize>> {
    if kernel.shape.len() != image.ndim() {
        return Err(ImageError::Value(format!(
            "kernel has {} dimensions, the image {}",
            kernel.shape.len(),
            image.ndim()
        )));
    }
    check_origin(image.ndim(), &kernel.shape, origin)
}

/// `scipy.ndimage.correlate(image, weights, origin=origin)`; an empty
/// `origin` means 0 on every axis.
pub fn correlate(image: &Array, kernel: &Kernel, origin: &[isize], options: &FilterOptions) -> Result<Array> {
    let origin = check_kernel(image, kernel, origin)?;
    let filter = Filter::Correlate { weights: kernel.weights.clone(), shape: kernel.shape.clone(), origin };
    apply(image, filter, options)
}

/// The neighbourhood of a rank filter: a box (scipy's `size`, one value or
/// one per axis) or a boolean footprint.
#[derive(Clone, Debug, PartialEq)]
pub enum Footprint {
    Size(Vec<usize>),
    /// `mask` in C order of `shape`; at least one element is set.
    Mask {
        mask: Vec<bool>,
        shape: Vec<usize>,
    },
}

impl Footprint {
    /// How many elements the footprint selects.
    fn count(&self, ndim: usize) -> Result<usize> {
        Ok(self.resolve(ndim)?.0.iter().filter(|m| **m).count())
    }

    /// The mask and its shape for an image of `ndim` axes.
    fn resolve(&self, ndim: usize) -> Result<(Vec<bool>, Vec<usize>)> {
        let (mask, shape) = match self {
            Footprint::Size(size) => {
                let shape = per_axis(size, ndim, "size")?;
                (vec![true; shape.iter().product()], shape)
            }
            Footprint::Mask { mask, shape } => (mask.clone(), shape.clone()),
        };
        if shape.len() != ndim || shape.contains(&0) || mask.len() != shape.iter().product::<usize>() {
            return Err(ImageError::Value(format!(
                "footprint of shape {shape:?} with {} values does not fit a {ndim}-d image",
                mask.len()
            )));
        }
        if !mask.contains(&true) {
            return Err(ImageError::Value("the footprint selects no element".into()));
        }
        Ok((mask, shape))
    }
}

/// `scipy.ndimage.rank_filter(image, rank, size | footprint, origin=...)`:
/// a negative `rank` counts from the largest (-1 is the maximum).
pub fn rank_filter(
    image: &Array,
    rank: isize,
    footprint: &Footprint,
    origin: &[isize],
    options: &FilterOptions,
) -> Result<Array> {
    let (mask, shape) = footprint.resolve(image.ndim())?;
    let count = mask.iter().filter(|m| **m).count() as isize;
    let r = if rank < 0 { rank + count } else { rank };
    if !(0..count).contains(&r) {
        return Err(ImageError::Value(format!("rank {rank} is out of range for a footprint of {count} elements")));
    }
    let origin = check_origin(image.ndim(), &shape, origin)?;
    apply(image, Filter::Rank { mask, shape, origin, rank: r as usize }, options)
}

/// `scipy.ndimage.percentile_filter`: the rank is `int(n * percentile /
/// 100)` of the `n` footprint elements (the maximum at 100; a negative
/// percentile counts from 100), as scipy computes it.
pub fn percentile_filter(
    image: &Array,
    percentile: f64,
    footprint: &Footprint,
    origin: &[isize],
    options: &FilterOptions,
) -> Result<Array> {
    let n = footprint.count(image.ndim())?;
    let p = if percentile < 0.0 { percentile + 100.0 } else { percentile };
    if !(0.0..=100.0).contains(&p) {
        return Err(ImageError::Value(format!("invalid percentile {percentile}")));
    }
    let rank = if p == 100.0 { n - 1 } else { (n as f64 * p / 100.0) as usize };
    rank_filter(image, rank as isize, footprint, origin, options)
}

/// `scipy.ndimage.median_filter` with a footprint (or a size): rank
/// `n / 2` of the `n` footprint elements.
pub fn median_filter_footprint(
    image: &Array,
    footprint: &Footprint,
    origin: &[isize],
    options: &FilterOptions,
) -> Result<Array> {
    let n = footprint.count(image.ndim())?;
    rank_filter(image, (n / 2) as isize, footprint, origin, options)
}

/// Origins (empty: all 0) that keep the window's centre inside it.
fn check_origin(ndim: usize, shape: &[usize], origin: &[isize]) -> Result<Vec<isize>> {
    let origin = if origin.is_empty() { vec![0; ndim] } else { per_axis(origin, ndim, "origin")? };
    for (&o, &s) in origin.iter().zip(shape) {
        let half = (s / 2) as isize;
        if half + o < 0 || half + o >= s as isize {
            return Err(ImageError::Value(format!("invalid origin {o} for a window axis of {s}")));
        }
    }
    Ok(origin)
}

/// `scipy.ndimage.convolve(image, weights, origin=origin)`: correlation with
/// the kernel reversed on every axis and the origin mirrored (shifted by one
/// on even-length axes), as scipy defines it.
pub fn convolve(image: &Array, kernel: &Kernel, origin: &[isize], options: &FilterOptions) -> Result<Array> {
    let origin = check_kernel(image, kernel, origin)?;
    let mut weights = kernel.weights.clone();
    weights.reverse();
    let origin: Vec<isize> =
        origin.iter().zip(&kernel.shape).map(|(&o, &s)| if s.is_multiple_of(2) { -o - 1 } else { -o }).collect();
    let flipped = Kernel { weights, shape: kernel.shape.clone() };
    let origin_checked = check_kernel(image, &flipped, &origin)?;
    let filter = Filter::Correlate { weights: flipped.weights, shape: flipped.shape, origin: origin_checked };
    apply(image, filter, options)
}
