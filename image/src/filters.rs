//! `scipy.ndimage` filters over chunked arrays (dask-image's `ndfilters`).
//!
//! Each filter is a [`Filter`] value: it knows how far it reads along each
//! axis ([`Filter::depth`]) and how to run on one in-memory block
//! ([`Filter::apply`], scipy's exact arithmetic from [`crate::kernels`]).
//! Over a chunked array it runs through `Array::map_overlap_trimmed` with
//! that depth on the axes that are split into several chunks, so the result
//! is the same for any chunking; the filter gets the halo's extent and leaves
//! it out of its result itself (skipping its computation where it can). The edges of the whole array are extended by the
//! filter itself (the halo has `Boundary::None` there), which gives scipy's
//! `mirror` mode and arrays shorter than the filter for free; only `wrap`
//! takes its halo from the other end of its axis.
//!
//! The edge mode is scipy's `mode`: one for every axis, or ([`Modes`]) one per
//! axis for the filters scipy builds from 1-D passes (Gaussian and its
//! derivatives, uniform, minimum/maximum with a box, Sobel, Prewitt,
//! Laplace); the others refuse a sequence as scipy does.

use rask::core::{ArrayValue, DType, OpEntry, OpError, Params, Value};
use rask_array::kernels::Sel;
use rask_array::{Array, Boundary, Chunks, Index};
use serde::{Deserialize, Serialize};

use crate::kernels::{self, Block, Mode, Pass, Real};
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
    /// `gaussian_laplace`: the sum over axes of the second Gaussian
    /// derivative along that axis.
    GaussianLaplace { sigma: Vec<f64>, radius: Vec<usize> },
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
            Filter::Gaussian { sigma, radius, .. }
            | Filter::GradientMagnitude { sigma, radius }
            | Filter::GaussianLaplace { sigma, radius } => {
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

    /// scipy's name of the filter, for error messages.
    pub fn scipy_name(&self) -> &'static str {
        match self {
            Filter::Gaussian { .. } => "gaussian_filter",
            Filter::Uniform { .. } => "uniform_filter",
            Filter::Extremum { maximum: false, .. } => "minimum_filter",
            Filter::Extremum { maximum: true, .. } => "maximum_filter",
            Filter::Median { .. } => "median_filter",
            Filter::Edge { smooth, .. } if smooth[1] == 2.0 => "sobel",
            Filter::Edge { .. } => "prewitt",
            Filter::Laplace => "laplace",
            Filter::GradientMagnitude { .. } => "gaussian_gradient_magnitude",
            Filter::GaussianLaplace { .. } => "gaussian_laplace",
            Filter::Correlate { .. } => "correlate",
            Filter::Rank { .. } => "rank_filter",
        }
    }

    /// Why scipy refuses a sequence of modes (one per axis) for this filter,
    /// or `None` when it takes one. scipy takes a sequence for the filters it
    /// runs as 1-D passes; a rank filter is one when its rank picks the
    /// minimum or maximum of a full box (scipy then calls the separable
    /// `minimum_filter` / `maximum_filter`).
    pub fn mode_sequence_refusal(&self) -> Option<&'static str> {
        const RANK: &str = "a sequence of modes is not supported by non-separable rank filters";
        match self {
            Filter::Correlate { .. } => Some("a sequence of modes is not supported"),
            Filter::Median { size } if size.iter().product::<usize>() > 1 => Some(RANK),
            Filter::Rank { mask, rank, .. } => {
                let count = mask.iter().filter(|m| **m).count();
                if *rank != 0 && *rank + 1 != count {
                    Some(RANK)
                } else if mask.contains(&false) {
                    Some("a sequence of modes is not supported for non-separable footprints")
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// The modes the filter extends each axis with, given one mode per axis:
    /// `modes[k]` on axis `k`, except for the Gaussian derivative sums, where
    /// (as in scipy) the derivative along axis `k` runs all its passes with
    /// `modes[k]`, so every axis is read with every mode.
    pub fn axis_modes(&self, modes: &[Mode]) -> Vec<Vec<Mode>> {
        match self {
            Filter::GradientMagnitude { .. } | Filter::GaussianLaplace { .. } => vec![modes.to_vec(); modes.len()],
            _ => modes.iter().map(|&m| vec![m]).collect(),
        }
    }

    /// Runs the filter on one in-memory block, with scipy's output rules:
    /// every pass is stored as `output` before the next reads it. Axis `k`
    /// is extended by `modes[k]` (one mode per axis of `input`).
    pub fn apply(&self, input: ArrayValue, modes: &[Mode], cval: f64, output: DType) -> ArrayValue {
        let trim = vec![(0, 0); input.shape().len()];
        self.apply_trimmed(input, modes, cval, output, &trim)
    }

    /// [`Filter::apply`] without `trim[axis] = (before, after)` elements at
    /// the ends of each axis (the halo `map_overlap` added): separable
    /// filters on big blocks skip computing the trimmed slabs along the
    /// first axis, the others cut the halo off their result.
    pub fn apply_trimmed(
        &self,
        input: ArrayValue,
        modes: &[Mode],
        cval: f64,
        output: DType,
        trim: &[(usize, usize)],
    ) -> ArrayValue {
        let f32_work = input.dtype() == DType::F32 && output == DType::F32;
        if let Some(passes) = self.separable_passes(input.shape().len(), modes) {
            return if f32_work {
                kernels::separable_trimmed::<f32>(input, &passes, cval, output, trim)
            } else {
                kernels::separable_trimmed::<f64>(input, &passes, cval, output, trim)
            };
        }
        let result = self.apply_whole(input, modes, cval, output);
        if trim.iter().all(|&(b, a)| b + a == 0) {
            return result;
        }
        let sel: Vec<Sel> = result
            .shape()
            .iter()
            .zip(trim)
            .map(|(&n, &(b, a))| Sel::Range { start: b as isize, stop: Some(n.saturating_sub(a) as isize), step: 1 })
            .collect();
        rask_array::kernels::slice_value(&result, &sel).unwrap_or(result)
    }

    /// [`Filter::apply`] for the filters that are not a sequence of 1-D
    /// passes.
    fn apply_whole(&self, input: ArrayValue, modes: &[Mode], cval: f64, output: DType) -> ArrayValue {
        let f32_work = input.dtype() == DType::F32 && output == DType::F32;
        if f32_work {
            self.run::<f32>(input, modes, cval, output).into_value(output)
        } else {
            self.run::<f64>(input, modes, cval, output).into_value(output)
        }
    }

    /// The 1-D correlations of a separable filter (Gaussian with at least
    /// one pass, Sobel, Prewitt), in scipy's order, each with its axis's mode.
    fn separable_passes(&self, ndim: usize, modes: &[Mode]) -> Option<Vec<Pass>> {
        match self {
            Filter::Gaussian { sigma, order, radius } => {
                let passes = gaussian_kernels(ndim, sigma, order, radius, modes);
                (!passes.is_empty()).then_some(passes)
            }
            Filter::Edge { axis, smooth } => {
                let mut passes = vec![Pass { axis: *axis, weights: vec![-1.0, 0.0, 1.0], mode: modes[*axis] }];
                passes.extend((0..ndim).filter(|a| a != axis).map(|a| Pass {
                    axis: a,
                    weights: smooth.to_vec(),
                    mode: modes[a],
                }));
                Some(passes)
            }
            _ => None,
        }
    }

    fn run<W: Real>(&self, input: ArrayValue, modes: &[Mode], cval: f64, output: DType) -> Block<W> {
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
                        b = kernels::uniform1d(&b, axis, s, modes[axis], cval);
                        b.store_as(output);
                    }
                }
                stored(b)
            }
            Filter::Extremum { size, maximum } => {
                let mut b = src;
                for (axis, &s) in size.iter().enumerate() {
                    if s > 1 {
                        b = kernels::extremum1d(&b, axis, s, *maximum, modes[axis], cval);
                        b.store_as(output);
                    }
                }
                stored(b)
            }
            Filter::Median { size } => stored(kernels::median_nd(&src, size, modes, cval)),
            Filter::Laplace => sum_over_axes(src, output, |src, axis| {
                stored(kernels::correlate1d(src, axis, &[1.0, -2.0, 1.0], modes[axis], cval))
            }),
            Filter::GaussianLaplace { sigma, radius } => sum_over_axes(src, output, |src, axis| {
                gaussian_derivative(src, axis, 2, sigma, radius, modes[axis], cval, output)
            }),
            Filter::GradientMagnitude { sigma, radius } => {
                let mut o = sum_over_axes(src, output, |src, axis| {
                    let mut d = gaussian_derivative(src, axis, 1, sigma, radius, modes[axis], cval, output);
                    for v in &mut d.data {
                        *v = W::of(kernels::wrap_integer(v.get() * v.get(), output));
                    }
                    d
                });
                if ndim > 0 {
                    for v in &mut o.data {
                        *v = W::of(v.get().sqrt());
                    }
                }
                stored(o)
            }
            Filter::Correlate { weights, shape, origin } => {
                stored(kernels::correlate_nd(&src, weights, shape, origin, modes, cval))
            }
            Filter::Rank { mask, shape, origin, rank } => {
                stored(kernels::rank_nd(&src, mask, shape, origin, *rank, modes, cval))
            }
        }
    }
}

/// `Σ term(src, axis)` over the axes, added in `output`'s arithmetic (integers
/// wrap), as scipy's `generic_laplace` and `generic_gradient_magnitude` add
/// into their output; the input stored as `output` for a 0-d block.
fn sum_over_axes<W: Real>(
    src: Block<W>,
    output: DType,
    mut term: impl FnMut(&Block<W>, usize) -> Block<W>,
) -> Block<W> {
    let ndim = src.shape.len();
    if ndim == 0 {
        let mut b = src;
        b.store_as(output);
        return b;
    }
    let mut out = term(&src, 0);
    for axis in 1..ndim {
        let t = term(&src, axis);
        for (o, x) in out.data.iter_mut().zip(&t.data) {
            *o = W::of(kernels::wrap_integer(o.get() + x.get(), output));
        }
    }
    out
}

/// The reversed (scipy correlates with them reversed) Gaussian kernels of
/// the axes with `sigma > 1e-15`, in axis order, each with its axis's mode.
fn gaussian_kernels(ndim: usize, sigma: &[f64], order: &[usize], radius: &[usize], modes: &[Mode]) -> Vec<Pass> {
    (0..ndim)
        .filter(|&axis| sigma[axis] > 1e-15)
        .map(|axis| {
            let mut w = kernels::gaussian_kernel1d(sigma[axis], order[axis], radius[axis]);
            w.reverse();
            Pass { axis, weights: w, mode: modes[axis] }
        })
        .collect()
}

/// The Gaussian derivative of order `deriv` along `axis` (order 0 on the
/// other axes) stored as `output`, every pass extended by `mode`: scipy's
/// `gaussian_gradient_magnitude` and `gaussian_laplace` call
/// `gaussian_filter` once per axis with that axis's mode.
#[allow(clippy::too_many_arguments)] // the derivative's parameters, spelled out
fn gaussian_derivative<W: Real>(
    src: &Block<W>,
    axis: usize,
    deriv: usize,
    sigma: &[f64],
    radius: &[usize],
    mode: Mode,
    cval: f64,
    output: DType,
) -> Block<W> {
    let ndim = src.shape.len();
    let mut order = vec![0; ndim];
    order[axis] = deriv;
    let passes = gaussian_kernels(ndim, sigma, &order, radius, &vec![mode; ndim]);
    if passes.is_empty() {
        let mut b = src.clone();
        b.store_as(output);
        return b;
    }
    kernels::separable(src, &passes, cval, output)
}

/// What a filter task carries: the filter, the edge mode of each axis and
/// the output dtype.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FilterTask {
    pub filter: Filter,
    pub modes: Vec<Mode>,
    pub cval: f64,
    pub output: DType,
}

fn filter_op(p: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let task: FilterTask =
        postcard::from_bytes(&p.0).map_err(|e| OpError::new(format!("{FILTER_OP}: bad parameters: {e}")))?;
    // Under `map_overlap_trimmed`, a second argument: the halo to leave out.
    let (input, trim) = match <[Value; 1]>::try_from(args) {
        Ok([Value::Array(a)]) => (a, None),
        Ok(_) => return Err(OpError::new(format!("{FILTER_OP} takes an array"))),
        Err(args) => match <[Value; 2]>::try_from(args) {
            Ok([Value::Array(a), Value::List(t)]) => (a, Some(trim_pairs(&t)?)),
            _ => return Err(OpError::new(format!("{FILTER_OP} takes an array and optionally its halo trim"))),
        },
    };
    if input.dtype() == DType::Bool {
        return Err(OpError::new(format!("{FILTER_OP}: boolean images are not supported; cast to uint8 first")));
    }
    if task.modes.len() != input.shape().len() {
        return Err(OpError::new(format!(
            "{FILTER_OP}: {} modes for a block of {} axes",
            task.modes.len(),
            input.shape().len()
        )));
    }
    let trim = trim.unwrap_or_else(|| vec![(0, 0); input.shape().len()]);
    if trim.len() != input.shape().len() {
        return Err(OpError::new(format!(
            "{FILTER_OP}: a trim of {} axes for a block of {}",
            trim.len(),
            input.shape().len()
        )));
    }
    Ok(Value::Array(task.filter.apply_trimmed(input, &task.modes, task.cval, task.output, &trim)))
}

/// `[[before, after], ...]` as `map_overlap_trimmed` passes it.
fn trim_pairs(list: &[Value]) -> std::result::Result<Vec<(usize, usize)>, OpError> {
    list.iter()
        .map(|pair| match pair {
            Value::List(p) => match p.as_ref() {
                [Value::Int(b), Value::Int(a)] if *b >= 0 && *a >= 0 => Ok((*b as usize, *a as usize)),
                _ => Err(OpError::new(format!("{FILTER_OP}: a trim is two non-negative integers"))),
            },
            _ => Err(OpError::new(format!("{FILTER_OP}: a trim is a list of pairs"))),
        })
        .collect()
}

rask::core::inventory::submit! { OpEntry { name: FILTER_OP, func: filter_op } }

/// scipy's `mode` argument: one [`Mode`] for every axis (a string in
/// scipy), or a sequence with exactly one mode per axis of the image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Modes {
    /// The same mode on every axis.
    All(Mode),
    /// `modes[k]` extends axis `k`. Only the filters scipy builds from 1-D
    /// passes take a sequence, even one that repeats a single mode.
    PerAxis(Vec<Mode>),
}

impl Default for Modes {
    fn default() -> Self {
        Modes::All(Mode::Reflect)
    }
}

impl From<Mode> for Modes {
    fn from(mode: Mode) -> Self {
        Modes::All(mode)
    }
}

impl From<Vec<Mode>> for Modes {
    fn from(modes: Vec<Mode>) -> Self {
        Modes::PerAxis(modes)
    }
}

impl<const N: usize> From<[Mode; N]> for Modes {
    fn from(modes: [Mode; N]) -> Self {
        Modes::PerAxis(modes.to_vec())
    }
}

impl Modes {
    /// One mode for every axis from scipy's name (`"reflect"`, `"wrap"`, …).
    pub fn from_name(name: &str) -> Result<Modes> {
        Ok(Modes::All(parse_mode(name)?))
    }

    /// One mode per axis from scipy's names, as scipy's `mode=("reflect",
    /// "wrap")`.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Modes> {
        Ok(Modes::PerAxis(names.iter().map(|n| parse_mode(n.as_ref())).collect::<Result<_>>()?))
    }

    /// Whether this is a sequence (one mode per axis).
    pub fn is_sequence(&self) -> bool {
        matches!(self, Modes::PerAxis(_))
    }

    /// The mode of each of `ndim` axes. A sequence must have exactly `ndim`
    /// entries (scipy: "sequence argument must have length equal to input
    /// rank").
    pub fn per_axis(&self, ndim: usize) -> Result<Vec<Mode>> {
        match self {
            Modes::All(mode) => Ok(vec![*mode; ndim]),
            Modes::PerAxis(modes) if modes.len() == ndim => Ok(modes.clone()),
            Modes::PerAxis(modes) => Err(ImageError::Value(format!(
                "sequence argument must have length equal to input rank: {} modes {} for {ndim} axes",
                modes.len(),
                self.names()
            ))),
        }
    }

    /// The modes as scipy spells the argument: `reflect` or
    /// `('reflect', 'wrap')`.
    pub fn names(&self) -> String {
        match self {
            Modes::All(mode) => mode.name().to_string(),
            Modes::PerAxis(modes) => {
                let names: Vec<String> = modes.iter().map(|m| format!("'{}'", m.name())).collect();
                format!("({})", names.join(", "))
            }
        }
    }
}

fn parse_mode(name: &str) -> Result<Mode> {
    Mode::from_name(name).ok_or_else(|| {
        ImageError::Value(format!(
            "boundary mode not supported: {name:?} (expected reflect, nearest, mirror, constant or wrap)"
        ))
    })
}

/// Options shared by the filters: scipy's `mode` (one for all axes or, for
/// the separable filters, one per axis), `cval` and `output` (`None`: the
/// input's dtype).
#[derive(Clone, Debug, PartialEq)]
pub struct FilterOptions {
    pub mode: Modes,
    pub cval: f64,
    pub output: Option<DType>,
}

impl Default for FilterOptions {
    fn default() -> Self {
        Self { mode: Modes::default(), cval: 0.0, output: None }
    }
}

impl FilterOptions {
    /// The given mode on every axis, `cval` 0 and the input's dtype.
    pub fn mode(mode: Mode) -> Self {
        Self { mode: Modes::All(mode), ..Self::default() }
    }

    /// One mode per axis (`modes[k]` on axis `k`), `cval` 0 and the input's
    /// dtype.
    pub fn modes(modes: impl Into<Vec<Mode>>) -> Self {
        Self { mode: Modes::PerAxis(modes.into()), ..Self::default() }
    }

    /// The same options with `cval`, the value beyond the edges in
    /// `constant` mode.
    pub fn with_cval(self, cval: f64) -> Self {
        Self { cval, ..self }
    }

    /// The same options with the output dtype.
    pub fn with_output(self, output: DType) -> Self {
        Self { output: Some(output), ..self }
    }
}

/// How a filter's halo is taken along one axis of a chunked array.
#[derive(Clone, Copy, Debug, PartialEq)]
enum AxisHalo {
    /// No halo: one chunk, or the filter does not read beyond an element.
    Skip,
    /// Neighbouring chunks; the kernel extends the array's edges itself.
    Extend,
    /// Neighbouring chunks, wrapping around at the array's edges.
    Periodic,
    /// The axis is merged into one chunk, where the kernel extends the
    /// edges itself: `wrap` mixed with other modes on the axis (Gaussian
    /// derivative sums), or a wrapping halo at least as long as the axis.
    Merge,
}

/// Runs `filter` over a chunked array: `map_overlap` with the filter's depth
/// on split axes, `map_blocks` when no axis needs a halo. Errors name the
/// filter by scipy's name.
pub fn apply(image: &Array, filter: Filter, options: &FilterOptions) -> Result<Array> {
    let name = filter.scipy_name();
    apply_named(image, filter, options, name)
}

/// The modes of each axis for `filter`, refusing a sequence as scipy does
/// for the filters that take one mode only (`name` is the function called).
fn resolve_modes(filter: &Filter, options: &FilterOptions, ndim: usize, name: &str) -> Result<Vec<Mode>> {
    if options.mode.is_sequence() {
        let refusal = filter.mode_sequence_refusal();
        // scipy's correlate and convolve refuse any sequence before looking
        // at its length; the rank filters check the length first.
        if let (Filter::Correlate { .. }, Some(why)) = (filter, refusal) {
            return Err(ImageError::Value(format!("{name}: {why} (got mode={})", options.mode.names())));
        }
        let modes = options.mode.per_axis(ndim).map_err(|e| ImageError::Value(format!("{name}: {e}")))?;
        if let Some(why) = refusal {
            return Err(ImageError::Value(format!("{name}: {why} (got mode={})", options.mode.names())));
        }
        return Ok(modes);
    }
    options.mode.per_axis(ndim)
}

/// [`apply`] with the name of the scipy function called, for errors.
fn apply_named(image: &Array, filter: Filter, options: &FilterOptions, name: &str) -> Result<Array> {
    let ndim = image.ndim();
    if image.dtype() == DType::Bool {
        return Err(ImageError::Value(format!("{name}: boolean images are not supported; cast to uint8 first")));
    }
    let modes = resolve_modes(&filter, options, ndim, name)?;
    let shape: Vec<usize> = image.shape().into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
        ImageError::Value(format!("{name}: filters need known chunk sizes; call compute_chunk_sizes() first"))
    })?;
    let mut depth = filter.depth(ndim);
    let axis_modes = filter.axis_modes(&modes);
    let split = |image: &Array, a: usize| image.chunks().axis(a).len() > 1;
    let halo: Vec<AxisHalo> = (0..ndim)
        .map(|a| {
            if depth[a] == 0 || !split(image, a) {
                return AxisHalo::Skip;
            }
            let wraps = axis_modes[a].contains(&Mode::Wrap);
            let others = axis_modes[a].iter().any(|&m| m != Mode::Wrap);
            match (wraps, others) {
                (true, true) => AxisHalo::Merge,
                (true, false) if depth[a] >= shape[a] => AxisHalo::Merge,
                (true, false) => AxisHalo::Periodic,
                _ => AxisHalo::Extend,
            }
        })
        .collect();
    let original = image;
    let mut image = image.clone();
    if halo.contains(&AxisHalo::Merge) {
        // A periodic halo deeper than the axis cannot be gathered, nor can
        // one halo serve both `wrap` and another mode: keep such axes whole,
        // where the filter extends the edges by itself.
        let chunks: Vec<Vec<usize>> = (0..ndim)
            .map(|a| {
                if halo[a] == AxisHalo::Merge {
                    vec![shape[a]]
                } else {
                    image.chunks().axis(a).iter().flatten().copied().collect()
                }
            })
            .collect();
        image = image.rechunk(Chunks::Explicit(chunks))?;
    }
    for (a, d) in depth.iter_mut().enumerate() {
        if matches!(halo[a], AxisHalo::Skip | AxisHalo::Merge) {
            *d = 0;
        }
    }
    let output = options.output.unwrap_or(image.dtype());
    let task = FilterTask { filter, modes, cval: options.cval, output };
    let filtered = filter_with_halo(&image, &task, &depth, &halo, &shape)?;
    if halo.contains(&AxisHalo::Merge) {
        // Give the result the input's chunks back, as for any other call.
        let chunks: Vec<Vec<usize>> =
            (0..ndim).map(|a| original.chunks().axis(a).iter().flatten().copied().collect()).collect();
        return Ok(filtered.rechunk(Chunks::Explicit(chunks))?);
    }
    Ok(filtered)
}

/// Runs `task` over `image` with `depth` (0 where no halo is needed) and
/// each axis's halo kind: `map_blocks` without any halo, one `map_overlap`
/// when all halo axes agree on the boundary; with `wrap` on some axes and
/// kernel-extended edges on others, the wrapping axes get their far ends
/// attached first (then they need no halo beyond the extended array) and
/// are cut back after filtering.
fn filter_with_halo(
    image: &Array,
    task: &FilterTask,
    depth: &[usize],
    halo: &[AxisHalo],
    shape: &[usize],
) -> Result<Array> {
    let params = Params::encode(task);
    let output = task.output;
    if depth.iter().all(|&d| d == 0) {
        return Ok(image.map_blocks(FILTER_OP, params, output));
    }
    let periodic: Vec<usize> = (0..depth.len()).filter(|&a| depth[a] > 0 && halo[a] == AxisHalo::Periodic).collect();
    if periodic.is_empty() {
        return Ok(image.map_overlap_trimmed(FILTER_OP, params, depth, Boundary::None, output)?);
    }
    if (0..depth.len()).all(|a| depth[a] == 0 || halo[a] == AxisHalo::Periodic) {
        return Ok(image.map_overlap_trimmed(FILTER_OP, params, depth, Boundary::Periodic, output)?);
    }
    let mut extended = image.clone();
    for &a in &periodic {
        extended = wrap_extend(&extended, a, depth[a], shape[a])?;
    }
    let filtered = extended.map_overlap_trimmed(FILTER_OP, params, depth, Boundary::None, output)?;
    let index: Vec<Index> = (0..depth.len())
        .map(|a| {
            if periodic.contains(&a) {
                Index::range(Some(depth[a] as isize), Some((depth[a] + shape[a]) as isize), 1)
            } else {
                Index::ALL
            }
        })
        .collect();
    Ok(filtered.slice(&index)?)
}

/// `image` with its last `depth` elements along `axis` (of length `n >
/// depth`) put before it and its first `depth` after it: the periodic halo
/// of the whole axis.
fn wrap_extend(image: &Array, axis: usize, depth: usize, n: usize) -> Result<Array> {
    let along = |start: usize, stop: usize| -> Vec<Index> {
        (0..image.ndim())
            .map(|a| if a == axis { Index::range(Some(start as isize), Some(stop as isize), 1) } else { Index::ALL })
            .collect()
    };
    let tail = image.slice(&along(n - depth, n))?;
    let head = image.slice(&along(0, depth))?;
    Ok(Array::concatenate(&[tail, image.clone(), head], axis)?)
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

/// One sigma per axis, checked, and the kernel radius each gives with
/// `truncate` (scipy's `int(truncate * sigma + 0.5)`).
fn gaussian_sigmas(sigma: &[f64], ndim: usize, truncate: f64) -> Result<(Vec<f64>, Vec<usize>)> {
    let sigma = per_axis(sigma, ndim, "sigma")?;
    if sigma.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
        return Err(ImageError::Value(format!("sigma must be finite and non-negative, got {sigma:?}")));
    }
    let radius = sigma.iter().map(|&s| kernels::gaussian_radius(s, truncate)).collect();
    Ok((sigma, radius))
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
    let (sigma, radius) = gaussian_sigmas(sigma, ndim, truncate)?;
    let order = per_axis(order, ndim, "order")?;
    if !(truncate.is_finite() && truncate >= 0.0) {
        return Err(ImageError::Value(format!("truncate must be finite and non-negative, got {truncate}")));
    }
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
    let (sigma, radius) = gaussian_sigmas(sigma, image.ndim(), 4.0)?;
    apply(image, Filter::GradientMagnitude { sigma, radius }, options)
}

/// `scipy.ndimage.gaussian_laplace(image, sigma)` (`truncate=4`): the sum
/// over axes of the second Gaussian derivative along each axis.
pub fn gaussian_laplace(image: &Array, sigma: &[f64], options: &FilterOptions) -> Result<Array> {
    let (sigma, radius) = gaussian_sigmas(sigma, image.ndim(), 4.0)?;
    apply(image, Filter::GaussianLaplace { sigma, radius }, options)
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
    rank_filter_named(image, rank, footprint, origin, options, "rank_filter")
}

/// [`rank_filter`] called as scipy's `name` (for errors).
fn rank_filter_named(
    image: &Array,
    rank: isize,
    footprint: &Footprint,
    origin: &[isize],
    options: &FilterOptions,
    name: &str,
) -> Result<Array> {
    let (mask, shape) = footprint.resolve(image.ndim())?;
    let count = mask.iter().filter(|m| **m).count() as isize;
    let r = if rank < 0 { rank + count } else { rank };
    if !(0..count).contains(&r) {
        return Err(ImageError::Value(format!("rank {rank} is out of range for a footprint of {count} elements")));
    }
    let origin = check_origin(image.ndim(), &shape, origin)?;
    apply_named(image, Filter::Rank { mask, shape, origin, rank: r as usize }, options, name)
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
    rank_filter_named(image, rank as isize, footprint, origin, options, "percentile_filter")
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
    rank_filter_named(image, (n / 2) as isize, footprint, origin, options, "median_filter")
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
    apply_named(image, filter, options, "convolve")
}
