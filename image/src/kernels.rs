//! The arithmetic of the filters, on one in-memory block, with
//! `scipy.ndimage`'s exact semantics.
//!
//! Every filter is a sequence of passes over a working buffer (`f32` for
//! `f32` data, `f64` otherwise, as scipy's line buffers are double). After
//! each pass the values are cast to the output dtype the way scipy's C code
//! does (`(type)double`: truncation toward zero, then wrap-around), because
//! scipy stores each 1-D pass in the output array before the next one reads
//! it. Sums run in the order scipy's `NI_Correlate1D` uses (centre tap first,
//! then symmetric pairs from the outside in), so integer results match it
//! exactly.
//!
//! 1-D passes along an axis other than the last work on whole rows of the
//! contiguous trailing axes at once (a tile of up to [`TILE`] elements), so
//! the inner loops run over contiguous memory and vectorise; along the last
//! axis each line is first copied into an extended line buffer.
//!
//! The edges are extended by the [`Mode`] of the block being filtered. Under
//! `map_overlap` a block carries a halo as deep as the filter's reach, so the
//! extension only matters where the block touches the array's edge, where it
//! is exactly scipy's. Big blocks skip the halo's slabs along the first axis
//! altogether ([`separable_trimmed`]): the passes after the first never read
//! across slabs, so only the kept slabs are computed.
//!
//! The binaries target baseline x86-64 (SSE2), so the hot loops (the folds,
//! the stores and the conversions around each pass) are also compiled for
//! AVX2 and AVX-512 and chosen at run time. The wider paths do the same
//! operations per element in the same order (no FMA), so results do not
//! depend on the CPU.

use std::ops::{Add, Div, Mul, Sub};

use ndarray::{ArrayD, IxDyn};
use rask_array::kernels::Sel;
use rask_core::{ArrayValue, DType, with_array};
use serde::{Deserialize, Serialize};

/// Elements per row tile in passes along non-contiguous axes: 17 rows of
/// 2048 `f64` stay in L2.
const TILE: usize = 2048;

/// Above this many elements in a window of slabs, the first pass of
/// [`separable`] runs over all slabs column tile by column tile rather than
/// streaming slab by slab.
const STREAM_LIMIT: usize = 1 << 20;

/// Column tile of that first pass: a whole column of tiles (all slabs) stays
/// in L2.
const COLUMN_TILE: usize = 512;

/// How the input is extended beyond its edges (scipy.ndimage's `mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Mode {
    /// `d c b a | a b c d | d c b a`: half-sample symmetric (scipy's default,
    /// numpy's `symmetric`, also called `grid-mirror`).
    #[default]
    Reflect,
    /// `a a a a | a b c d | d d d d`.
    Nearest,
    /// `d c b | a b c d | c b a`: whole-sample symmetric.
    Mirror,
    /// `k k k k | a b c d | k k k k` with `k = cval`.
    Constant,
    /// `a b c d | a b c d | a b c d`: periodic.
    Wrap,
}

impl Mode {
    /// Parses scipy's mode names (including the `grid-` aliases that mean the
    /// same for filters).
    pub fn from_name(name: &str) -> Option<Mode> {
        Some(match name {
            "reflect" | "grid-mirror" => Mode::Reflect,
            "nearest" => Mode::Nearest,
            "mirror" => Mode::Mirror,
            "constant" | "grid-constant" => Mode::Constant,
            "wrap" | "grid-wrap" => Mode::Wrap,
            _ => return None,
        })
    }

    /// scipy's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Reflect => "reflect",
            Mode::Nearest => "nearest",
            Mode::Mirror => "mirror",
            Mode::Constant => "constant",
            Mode::Wrap => "wrap",
        }
    }

    /// The in-range index that index `i` (possibly outside `0..n`) reads, or
    /// `None` for the constant. Extensions longer than the line repeat, as
    /// scipy's `NI_ExtendLine` does.
    pub fn source(self, i: isize, n: usize) -> Option<usize> {
        let n_i = n as isize;
        if (0..n_i).contains(&i) {
            return Some(i as usize);
        }
        if n == 0 {
            return None;
        }
        let m = match self {
            Mode::Constant => return None,
            Mode::Nearest => i.clamp(0, n_i - 1),
            Mode::Wrap => i.rem_euclid(n_i),
            Mode::Reflect => {
                let m = i.rem_euclid(2 * n_i);
                if m < n_i { m } else { 2 * n_i - 1 - m }
            }
            Mode::Mirror => {
                if n == 1 {
                    0
                } else {
                    let period = 2 * n_i - 2;
                    let m = i.rem_euclid(period);
                    if m < n_i { m } else { period - m }
                }
            }
        };
        Some(m as usize)
    }
}

/// One 1-D correlation of a separable filter: `weights` (origin 0) along
/// `axis`, with the lines extended by `mode` (scipy lets each axis of a
/// separable filter have its own mode).
#[derive(Clone, Debug, PartialEq)]
pub struct Pass {
    pub axis: usize,
    pub weights: Vec<f64>,
    pub mode: Mode,
}

impl Pass {
    /// The same pass along `axis - 1`: for the slabs of a block, which lack
    /// its first axis.
    fn inner(&self) -> Pass {
        Pass { axis: self.axis.saturating_sub(1), weights: self.weights.clone(), mode: self.mode }
    }
}

/// The working element type: `f32` or `f64`.
pub trait Real:
    Copy
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    /// The dtype of this working type.
    const DTYPE: DType;
    /// From a double (rounded for `f32`).
    fn of(x: f64) -> Self;
    /// To a double (exact).
    fn get(self) -> f64;
    /// The working values as an array of their own dtype, without a copy.
    fn wrap(data: ArrayD<Self>) -> ArrayValue;
    /// The C-order values of an array of this dtype, without a copy when it
    /// is unshared and contiguous.
    fn take(a: ArrayValue) -> Option<Vec<Self>>;
}

fn take_vec<T: Clone>(x: ndarray::ArcArray<T, IxDyn>) -> Vec<T> {
    let owned = x.into_owned();
    if owned.is_standard_layout() {
        let n = owned.len();
        let (v, offset) = owned.into_raw_vec_and_offset();
        if offset.unwrap_or(0) == 0 && v.len() == n {
            return v;
        }
        let start = offset.unwrap_or(0);
        return v[start..start + n].to_vec();
    }
    owned.iter().cloned().collect()
}

impl Real for f32 {
    const DTYPE: DType = DType::F32;
    fn wrap(data: ArrayD<Self>) -> ArrayValue {
        ArrayValue::F32(data.into_shared())
    }
    fn take(a: ArrayValue) -> Option<Vec<Self>> {
        match a {
            ArrayValue::F32(x) => Some(take_vec(x)),
            _ => None,
        }
    }
    fn of(x: f64) -> Self {
        x as f32
    }
    fn get(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    const DTYPE: DType = DType::F64;
    fn wrap(data: ArrayD<Self>) -> ArrayValue {
        ArrayValue::F64(data.into_shared())
    }
    fn take(a: ArrayValue) -> Option<Vec<Self>> {
        match a {
            ArrayValue::F64(x) => Some(take_vec(x)),
            _ => None,
        }
    }
    fn of(x: f64) -> Self {
        x
    }
    fn get(self) -> f64 {
        self
    }
}

/// A dense C-order block in the working type.
#[derive(Clone, Debug, PartialEq)]
pub struct Block<W> {
    pub data: Vec<W>,
    pub shape: Vec<usize>,
}

impl<W: Real> Block<W> {
    /// Takes an array value's buffer when it already is of the working type
    /// (and not shared), else copies it.
    pub fn from_owned(a: ArrayValue) -> Self {
        let shape = a.shape().to_vec();
        let taken: Option<Vec<W>> = match (W::DTYPE, a) {
            (DType::F32, ArrayValue::F32(x)) => W::take(ArrayValue::F32(x)),
            (DType::F64, ArrayValue::F64(x)) => W::take(ArrayValue::F64(x)),
            (_, other) => return Self::from_value(&other),
        };
        match taken {
            Some(data) => Self { data, shape },
            None => Self { data: Vec::new(), shape },
        }
    }

    /// Copies any array value into the working type.
    pub fn from_value(a: &ArrayValue) -> Self {
        let shape = a.shape().to_vec();
        let data = with_array!(a, x => {
            let mut v = Vec::with_capacity(x.len());
            match x.as_slice() {
                Some(s) => v.extend(s.iter().map(|e| W::of(rask_array::dtype::Scalar::to_f64(*e)))),
                None => v.extend(x.iter().map(|e| W::of(rask_array::dtype::Scalar::to_f64(*e)))),
            }
            v
        });
        Self { data, shape }
    }

    /// The block as an array of `dtype` (values are already representable):
    /// no copy when `dtype` is the working type.
    pub fn into_value(self, dtype: DType) -> ArrayValue {
        let shape = IxDyn(&self.shape);
        let Ok(arr) = ArrayD::from_shape_vec(shape.clone(), self.data) else {
            return rask_array::dtype::cast(&ArrayValue::F64(ArrayD::zeros(shape).into_shared()), dtype);
        };
        let own = W::wrap(arr);
        if dtype == W::DTYPE { own } else { rask_array::dtype::cast(&own, dtype) }
    }

    /// Casts every value as scipy stores a double into `dtype`.
    pub fn store_as(&mut self, dtype: DType) {
        let mut data = std::mem::take(&mut self.data);
        self.store_slice(&mut data, dtype);
        self.data = data;
    }

    /// [`Block::store_as`] on any slice of working values.
    fn store_slice(&self, values: &mut [W], dtype: DType) {
        store_values(values, dtype);
    }

    fn axis_layout(&self, axis: usize) -> (usize, usize, usize) {
        let outer = self.shape[..axis].iter().product();
        let n = self.shape[axis];
        let inner = self.shape[axis + 1..].iter().product();
        (outer, n, inner)
    }
}

/// Casts every value as scipy stores a double into `dtype` (see [`store`]),
/// with the widest vector instructions the CPU has.
#[allow(unsafe_code)] // calls of `#[target_feature]` functions, after checking the CPU has the feature
fn store_values<W: Real>(values: &mut [W], dtype: DType) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { store_values_avx512(values, dtype) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { store_values_avx2(values, dtype) };
        }
    }
    store_values_portable(values, dtype);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn store_values_avx512<W: Real>(values: &mut [W], dtype: DType) {
    store_values_truncating(values, dtype);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn store_values_avx2<W: Real>(values: &mut [W], dtype: DType) {
    store_values_truncating(values, dtype);
}

/// [`store_values_portable`] for CPUs with a vector `trunc` (SSE2 has
/// none): for integer dtypes of at most 32 bits, C's conversion of `x` is
/// `trunc(x)` whenever that is in the dtype's range; a run of values with
/// any other (out of range, NaN) goes through the exact rule. `+ 0.0` turns
/// `trunc(-0.5) = -0.0` into the `+0.0` the integer gives.
#[inline(always)]
fn store_values_truncating<W: Real>(values: &mut [W], dtype: DType) {
    let (lo, hi) = match dtype {
        DType::U8 => (0.0, 256.0),
        DType::U16 => (0.0, 65536.0),
        DType::I8 => (-128.0, 128.0),
        DType::I16 => (-32768.0, 32768.0),
        DType::I32 => (-2147483648.0, 2147483648.0),
        _ => return store_values_portable(values, dtype),
    };
    for run in values.chunks_mut(256) {
        let mut inside = true;
        for v in run.iter_mut() {
            let t = v.get().trunc() + 0.0;
            inside &= (t >= lo) & (t < hi);
            // Exact for `f32` too: the integer part of a float is one.
            *v = W::of(t);
        }
        if !inside {
            // `store(trunc(x))` is `store(x)`: C truncates toward zero.
            for v in run.iter_mut() {
                *v = W::of(store(v.get(), dtype));
            }
        }
    }
}

#[inline(always)]
fn store_values_portable<W: Real>(values: &mut [W], dtype: DType) {
    if dtype == DType::F64 || (dtype == DType::F32 && W::DTYPE == DType::F32) {
        return;
    }
    // One loop per dtype, so each vectorises.
    macro_rules! each {
        ($f:expr) => {
            for v in values.iter_mut() {
                *v = W::of($f(v.get()));
            }
        };
    }
    // C's conversion through a 32-bit integer (x86: INT_MIN when out of
    // range), written as a select so the loop vectorises.
    let small = |x: f64| {
        let y = x as i32;
        if x > -2147483649.0 && x < 2147483648.0 { y } else { i32::MIN }
    };
    match dtype {
        DType::U8 => each!(|x| f64::from(small(x) as u8)),
        DType::U16 => each!(|x| f64::from(small(x) as u16)),
        DType::I8 => each!(|x| f64::from(small(x) as i8)),
        DType::I16 => each!(|x| f64::from(small(x) as i16)),
        DType::I32 => each!(|x| f64::from(small(x))),
        _ => each!(|x| store(x, dtype)),
    }
}

/// Defines `$name` running the loop `$body` compiled for AVX-512, AVX2 or
/// SSE2, whichever the CPU has: the conversions around each pass are as
/// hot as the folds, and baseline x86-64 converts two values at a time.
macro_rules! dispatched_loop {
    ($(#[$doc:meta])* fn $name:ident<$a:ident: $ab:path, $b:ident: $bb:path>($src:ident: &[$st:ty], $dst:ident: &mut [$dt:ty]) $body:block) => {
        $(#[$doc])*
        #[allow(unsafe_code)] // calls of `#[target_feature]` functions, after checking the CPU has the feature
        fn $name<$a: $ab, $b: $bb>($src: &[$st], $dst: &mut [$dt]) {
            #[inline(always)]
            fn body<$a: $ab, $b: $bb>($src: &[$st], $dst: &mut [$dt]) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            fn avx512<$a: $ab, $b: $bb>($src: &[$st], $dst: &mut [$dt]) {
                body($src, $dst)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2<$a: $ab, $b: $bb>($src: &[$st], $dst: &mut [$dt]) {
                body($src, $dst)
            }
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512($src, $dst) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { avx2($src, $dst) };
                }
            }
            body($src, $dst)
        }
    };
}

dispatched_loop! {
    /// Stored working values (exactly representable in `O`) written as `O`.
    fn narrow_into<W: Real, O: Stored>(src: &[W], dst: &mut [O]) {
        for (o, v) in dst.iter_mut().zip(src) {
            *o = O::from_stored(v.get());
        }
    }
}

dispatched_loop! {
    /// Values of an output dtype `O` as working values.
    fn widen_stored_into<O: Stored, W: Real>(src: &[O], dst: &mut [W]) {
        for (w, &o) in dst.iter_mut().zip(src) {
            *w = W::of(o.to_work());
        }
    }
}

dispatched_loop! {
    /// Input values of any dtype as working values.
    fn widen_into<I: rask_array::dtype::Scalar, W: Real>(src: &[I], dst: &mut [W]) {
        for (w, &v) in dst.iter_mut().zip(src) {
            *w = W::of(rask_array::dtype::Scalar::to_f64(v));
        }
    }
}

/// `(type)value` as scipy's C code writes a double into an array of `dtype`
/// (x86-64: truncation toward zero through a 32- or 64-bit integer, then the
/// low bits; out-of-range 32-bit conversions give `INT_MIN`).
pub fn store(value: f64, dtype: DType) -> f64 {
    let via_i32 = || if value > -2147483649.0 && value < 2147483648.0 { value as i32 } else { i32::MIN };
    match dtype {
        DType::F64 => value,
        DType::F32 => f64::from(value as f32),
        DType::Bool => f64::from(u8::from(value != 0.0)),
        DType::I8 => f64::from(via_i32() as i8),
        DType::I16 => f64::from(via_i32() as i16),
        DType::U8 => f64::from(via_i32() as u8),
        DType::U16 => f64::from(via_i32() as u16),
        DType::I32 => f64::from(via_i32()),
        DType::U32 => f64::from(value as i64 as u32),
        DType::I64 => value as i64 as f64,
        DType::U64 => {
            if value < 0.0 {
                value as i64 as u64 as f64
            } else {
                value as u64 as f64
            }
        }
    }
}

/// numpy's integer arithmetic result stored in `dtype`: exact integers wrap
/// modulo the type's range (used after `*` and `+` on integer outputs).
pub fn wrap_integer(value: f64, dtype: DType) -> f64 {
    let v = value as i64;
    match dtype {
        DType::I8 => f64::from(v as i8),
        DType::I16 => f64::from(v as i16),
        DType::I32 => f64::from(v as i32),
        DType::U8 => f64::from(v as u8),
        DType::U16 => f64::from(v as u16),
        DType::U32 => f64::from(v as u32),
        DType::I64 => v as f64,
        DType::U64 => v as u64 as f64,
        DType::F32 => f64::from(value as f32),
        DType::F64 | DType::Bool => value,
    }
}

/// How scipy folds a 1-D kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Symmetry {
    Symmetric,
    Antisymmetric,
    General,
}

fn symmetry(w: &[f64]) -> Symmetry {
    if w.len().is_multiple_of(2) {
        return Symmetry::General;
    }
    let c = w.len() / 2;
    if (1..=c).all(|i| (w[c + i] - w[c - i]).abs() <= f64::EPSILON) {
        Symmetry::Symmetric
    } else if (1..=c).all(|i| (w[c + i] + w[c - i]).abs() <= f64::EPSILON) {
        Symmetry::Antisymmetric
    } else {
        Symmetry::General
    }
}

#[inline(always)]
fn lane<W: Real, const LANES: usize>(t: &[W], j: usize) -> [W; LANES] {
    let mut a = [W::default(); LANES];
    a.copy_from_slice(&t[j..j + LANES]);
    a
}

/// `out = Σ taps[k] · w[k]` in scipy's order. `taps[k]` holds the input at
/// offset `k - len/2` of each output element. Blocks of outputs are
/// accumulated in registers over all taps (the loops are interchanged, the
/// order of operations per element is scipy's), eight vector registers of
/// them, which amortises loading the tap pointers and weights.
///
/// The binaries target baseline x86-64 (SSE2, two `f64` lanes), so the fold
/// is also compiled for AVX2 and AVX-512 and picked at run time. Only the
/// vector width differs: every element gets the same multiplications and
/// additions in the same order (Rust never contracts them into FMAs), so
/// the results are bit-identical on every path.
#[allow(unsafe_code)] // calls of `#[target_feature]` functions, after checking the CPU has the feature
fn fold_taps<W: Real>(out: &mut [W], taps: &[&[W]], w: &[W], sym: Symmetry) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { fold_taps_avx512(out, taps, w, sym) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { fold_taps_avx2(out, taps, w, sym) };
        }
    }
    fold_taps_portable(out, taps, w, sym);
}

/// [`fold_taps`] for AVX-512: 64 `f64` or 128 `f32` outputs per block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fold_taps_avx512<W: Real>(out: &mut [W], taps: &[&[W]], w: &[W], sym: Symmetry) {
    fold_taps_lanes::<W, 64, 128>(out, taps, w, sym);
}

/// [`fold_taps`] for AVX2: 32 `f64` or 64 `f32` outputs per block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fold_taps_avx2<W: Real>(out: &mut [W], taps: &[&[W]], w: &[W], sym: Symmetry) {
    fold_taps_lanes::<W, 32, 64>(out, taps, w, sym);
}

/// [`fold_taps`] for SSE2: 16 `f64` or 32 `f32` outputs per block.
fn fold_taps_portable<W: Real>(out: &mut [W], taps: &[&[W]], w: &[W], sym: Symmetry) {
    fold_taps_lanes::<W, 16, 32>(out, taps, w, sym);
}

#[inline(always)]
fn fold_taps_lanes<W: Real, const F64_LANES: usize, const F32_LANES: usize>(
    out: &mut [W],
    taps: &[&[W]],
    w: &[W],
    sym: Symmetry,
) {
    if W::DTYPE == DType::F32 {
        match sym {
            Symmetry::Symmetric => fold_paired::<W, F32_LANES>(out, taps, w, |a, b| a + b),
            Symmetry::Antisymmetric => fold_paired::<W, F32_LANES>(out, taps, w, |a, b| a - b),
            Symmetry::General => fold_general::<W, F32_LANES>(out, taps, w),
        }
    } else {
        match sym {
            Symmetry::Symmetric => fold_paired::<W, F64_LANES>(out, taps, w, |a, b| a + b),
            Symmetry::Antisymmetric => fold_paired::<W, F64_LANES>(out, taps, w, |a, b| a - b),
            Symmetry::General => fold_general::<W, F64_LANES>(out, taps, w),
        }
    }
}

/// `x[c]·w[c]`, then `pair(x[k], x[len-1-k])·w[k]` from the outside in.
#[inline(always)]
fn fold_paired<W: Real, const LANES: usize>(out: &mut [W], taps: &[&[W]], w: &[W], pair: impl Fn(W, W) -> W + Copy) {
    let len = w.len();
    let n = out.len();
    let c = len / 2;
    let mut j = 0;
    while j + LANES <= n {
        let x: [W; LANES] = lane(taps[c], j);
        let mut acc = [W::default(); LANES];
        for l in 0..LANES {
            acc[l] = x[l] * w[c];
        }
        for k in 0..c {
            let (lo, hi, wk): ([W; LANES], [W; LANES], W) = (lane(taps[k], j), lane(taps[len - 1 - k], j), w[k]);
            for l in 0..LANES {
                acc[l] = acc[l] + pair(lo[l], hi[l]) * wk;
            }
        }
        out[j..j + LANES].copy_from_slice(&acc);
        j += LANES;
    }
    for (jj, o) in out.iter_mut().enumerate().skip(j) {
        let mut acc = taps[c][jj] * w[c];
        for k in 0..c {
            acc = acc + pair(taps[k][jj], taps[len - 1 - k][jj]) * w[k];
        }
        *o = acc;
    }
}

/// `x[len-1]·w[len-1]`, then `x[k]·w[k]` for `k = 0..len-1`.
#[inline(always)]
fn fold_general<W: Real, const LANES: usize>(out: &mut [W], taps: &[&[W]], w: &[W]) {
    let len = w.len();
    let n = out.len();
    let mut j = 0;
    while j + LANES <= n {
        let x: [W; LANES] = lane(taps[len - 1], j);
        let mut acc = [W::default(); LANES];
        for l in 0..LANES {
            acc[l] = x[l] * w[len - 1];
        }
        for k in 0..len - 1 {
            let (t, wk): ([W; LANES], W) = (lane(taps[k], j), w[k]);
            for l in 0..LANES {
                acc[l] = acc[l] + t[l] * wk;
            }
        }
        out[j..j + LANES].copy_from_slice(&acc);
        j += LANES;
    }
    for (jj, o) in out.iter_mut().enumerate().skip(j) {
        let mut acc = taps[len - 1][jj] * w[len - 1];
        for k in 0..len - 1 {
            acc = acc + taps[k][jj] * w[k];
        }
        *o = acc;
    }
}

/// A 1-D pass along `axis`, reading a window of `before + 1 + after` input
/// rows per output row. `line` gets the window's rows (extended by `mode`)
/// and writes one output row of the same length.
fn pass_1d<W: Real>(
    src: &Block<W>,
    axis: usize,
    before: usize,
    after: usize,
    mode: Mode,
    cval: f64,
    line: impl FnMut(&mut [W], &[&[W]]),
) -> Block<W> {
    pass_1d_into(src, Vec::new(), axis, before, after, mode, cval, line)
}

/// [`pass_1d`] writing into `out`, a buffer reused from an earlier pass (its
/// pages are already mapped: fresh 100 MiB buffers cost more in page faults
/// than the filtering itself).
#[allow(clippy::too_many_arguments)] // the pass's geometry, spelled out
fn pass_1d_into<W: Real>(
    src: &Block<W>,
    mut out: Vec<W>,
    axis: usize,
    before: usize,
    after: usize,
    mode: Mode,
    cval: f64,
    mut line: impl FnMut(&mut [W], &[&[W]]),
) -> Block<W> {
    let (outer, n, inner) = src.axis_layout(axis);
    out.resize(src.data.len(), W::default());
    let width = before + 1 + after;
    if n == 0 || outer * inner == 0 {
        return Block { data: out, shape: src.shape.clone() };
    }
    if inner == 1 {
        // Along the contiguous axis: one extended line buffer per line, and
        // the taps are shifted views of it.
        let mut ext = vec![W::default(); n + before + after];
        for o in 0..outer {
            let base = o * n;
            extend_line(&src.data[base..base + n], &mut ext, before, mode, cval);
            let taps: Vec<&[W]> = (0..width).map(|k| &ext[k..k + n]).collect();
            line(&mut out[base..base + n], &taps);
        }
    } else {
        let tile = inner.min(TILE);
        let constant = vec![W::of(cval); tile];
        for o in 0..outer {
            let base = o * n * inner;
            let mut t0 = 0;
            while t0 < inner {
                let t1 = (t0 + tile).min(inner);
                for i in 0..n {
                    let taps: Vec<&[W]> = (0..width)
                        .map(|k| match mode.source(i as isize + k as isize - before as isize, n) {
                            Some(s) => &src.data[base + s * inner + t0..base + s * inner + t1],
                            None => &constant[..t1 - t0],
                        })
                        .collect();
                    let start = base + i * inner;
                    line(&mut out[start + t0..start + t1], &taps);
                }
                t0 = t1;
            }
        }
    }
    Block { data: out, shape: src.shape.clone() }
}

/// `scipy.ndimage.correlate1d` with origin 0.
pub fn correlate1d<W: Real>(src: &Block<W>, axis: usize, weights: &[f64], mode: Mode, cval: f64) -> Block<W> {
    correlate1d_into(src, Vec::new(), axis, weights, mode, cval)
}

/// [`correlate1d`] into a reused buffer.
pub fn correlate1d_into<W: Real>(
    src: &Block<W>,
    out: Vec<W>,
    axis: usize,
    weights: &[f64],
    mode: Mode,
    cval: f64,
) -> Block<W> {
    if weights.is_empty() {
        return src.clone();
    }
    let before = weights.len() / 2;
    let after = weights.len() - before - 1;
    let sym = symmetry(weights);
    let w: Vec<W> = weights.iter().map(|&x| W::of(x)).collect();
    pass_1d_into(src, out, axis, before, after, mode, cval, |out, taps| fold_taps(out, taps, &w, sym))
}

/// A sequence of 1-D correlations ([`Pass`]es, applied in order, each
/// stored as `output` before the next), streamed over the first axis when
/// possible: the passes of one slab run while it is in cache, and no
/// full-size intermediate is allocated. Each element is computed exactly as
/// by the passes one after the other.
pub fn separable<W: Real>(src: &Block<W>, passes: &[Pass], cval: f64, output: DType) -> Block<W> {
    let mut out = vec![W::default(); src.data.len()];
    separable_into(&src.data, &src.shape, passes, cval, output, &mut out);
    Block { data: out, shape: src.shape.clone() }
}

fn separable_into<W: Real>(src: &[W], shape: &[usize], passes: &[Pass], cval: f64, output: DType, out: &mut [W]) {
    let Some((Pass { axis, weights, mode }, rest)) = passes.split_first() else {
        out.copy_from_slice(src);
        return;
    };
    let nd = shape.len();
    let n0 = shape.first().copied().unwrap_or(0);
    let full_pass = |out: &mut [W]| {
        let block = Block { data: src.to_vec(), shape: shape.to_vec() };
        let mut b = correlate1d(&block, *axis, weights, *mode, cval);
        b.store_as(output);
        separable_into(&b.data, shape, rest, cval, output, out);
    };
    if nd < 2 || n0 == 0 || src.is_empty() {
        if nd == 1 && rest.is_empty() && !src.is_empty() {
            line_into(src, weights, *mode, cval, out);
            Block { data: Vec::new(), shape: Vec::new() }.store_slice(out, output);
        } else {
            full_pass(out);
        }
        return;
    }
    let slab_len = src.len() / n0;
    let slab_shape = &shape[1..];
    let shifted = |ps: &[Pass]| -> Vec<Pass> { ps.iter().map(Pass::inner).collect() };
    if column_first(shape, passes) {
        column_passes(src, shape, passes, cval, output, out, |x: &[W], y: &mut [W]| y.copy_from_slice(x));
        return;
    }
    if *axis == 0 && rest.iter().all(|p| p.axis > 0) {
        // The axis-0 pass one output slab at a time, then the other passes
        // on that slab, written straight into the output.
        let before = weights.len() / 2;
        let sym = symmetry(weights);
        let w: Vec<W> = weights.iter().map(|&x| W::of(x)).collect();
        let rest = shifted(rest);
        let constant = vec![W::of(cval); slab_len];
        let mut slab = vec![W::default(); slab_len];
        for (i, dst) in out.chunks_exact_mut(slab_len).enumerate() {
            let taps: Vec<&[W]> = (0..weights.len())
                .map(|k| match mode.source(i as isize + k as isize - before as isize, n0) {
                    Some(r) => &src[r * slab_len..(r + 1) * slab_len],
                    None => &constant[..],
                })
                .collect();
            let target: &mut [W] = if rest.is_empty() { dst } else { &mut slab };
            let mut t0 = 0;
            while t0 < slab_len {
                let t1 = (t0 + TILE).min(slab_len);
                let tile: Vec<&[W]> = taps.iter().map(|t| &t[t0..t1]).collect();
                fold_taps(&mut target[t0..t1], &tile, &w, sym);
                t0 = t1;
            }
            Block { data: Vec::new(), shape: Vec::new() }.store_slice(target, output);
            if !rest.is_empty() {
                separable_into(&slab, slab_shape, &rest, cval, output, dst);
            }
        }
        return;
    }
    if passes.iter().all(|p| p.axis > 0) {
        // Slabs are independent.
        let all = shifted(passes);
        for (s, dst) in src.chunks_exact(slab_len).zip(out.chunks_exact_mut(slab_len)) {
            separable_into(s, slab_shape, &all, cval, output, dst);
        }
        return;
    }
    // A later pass along axis 0 needs every slab of this one: a full pass.
    full_pass(out);
}

/// Fills `ext` with `line` at offset `before` and the `mode` extension
/// around it (only the edges go through [`Mode::source`]).
fn extend_line<W: Real>(line: &[W], ext: &mut [W], before: usize, mode: Mode, cval: f64) {
    let n = line.len();
    ext[before..before + n].copy_from_slice(line);
    let edge = |j: usize| match mode.source(j as isize - before as isize, n) {
        Some(s) => line[s],
        None => W::of(cval),
    };
    for j in (0..before).chain(before + n..ext.len()) {
        ext[j] = edge(j);
    }
}

/// Whether [`separable`] runs its first pass column tile by column tile:
/// a first pass along axis 0 followed by passes along other axes only, on
/// slabs too big for a window of them to stay in cache.
fn column_first(shape: &[usize], passes: &[Pass]) -> bool {
    let Some((Pass { axis, weights, .. }, rest)) = passes.split_first() else { return false };
    let n0 = shape.first().copied().unwrap_or(0);
    let slab_len: usize = shape.iter().skip(1).product();
    shape.len() >= 2
        && n0 > 0
        && *axis == 0
        && !rest.is_empty()
        && rest.iter().all(|p| p.axis > 0)
        && slab_len * weights.len() > STREAM_LIMIT
}

/// The axis-0 pass of the column-tiled kernels: each column tile of all
/// slabs is converted into a cache-sized buffer, and for every output row
/// `i` and tile `t0..t1`, `fold(i, t0..t1, taps, weights, symmetry)` gets the
/// tile's input rows the kernel reads (constant rows beyond the edges).
/// Only the output rows in `rows` are computed.
#[allow(clippy::too_many_arguments)] // the pass's geometry, spelled out
fn axis0_tiles<I: Copy, W: Real>(
    src: &[I],
    shape: &[usize],
    weights: &[f64],
    mode: Mode,
    cval: f64,
    rows: std::ops::Range<usize>,
    convert: impl Fn(&[I], &mut [W]),
    mut fold: impl FnMut(usize, std::ops::Range<usize>, &[&[W]], &[W], Symmetry),
) {
    let n0 = shape[0];
    let slab_len = src.len() / n0.max(1);
    let before = weights.len() / 2;
    let sym = symmetry(weights);
    let w: Vec<W> = weights.iter().map(|&x| W::of(x)).collect();
    let constant = [W::of(cval); COLUMN_TILE];
    let mut column = vec![W::default(); n0 * COLUMN_TILE];
    let mut t0 = 0;
    while t0 < slab_len {
        let t1 = (t0 + COLUMN_TILE).min(slab_len);
        let m = t1 - t0;
        for r in 0..n0 {
            convert(&src[r * slab_len + t0..r * slab_len + t1], &mut column[r * m..(r + 1) * m]);
        }
        for i in rows.clone() {
            let taps: Vec<&[W]> = (0..weights.len())
                .map(|k| match mode.source(i as isize + k as isize - before as isize, n0) {
                    Some(r) => &column[r * m..(r + 1) * m],
                    None => &constant[..m],
                })
                .collect();
            fold(i, t0..t1, &taps, &w, sym);
        }
        t0 = t1;
    }
}

/// The passes of [`separable`] when [`column_first`] holds, reading the
/// input in its own element type `I` (`convert` turns a run of it into
/// working values), so no full-size working copy of the input is made: each
/// column tile of all slabs is converted into a cache-sized buffer, the
/// axis-0 pass reads it from there (each input element leaves memory once),
/// then the other passes run slab by slab.
#[allow(clippy::too_many_arguments)] // the passes' geometry, spelled out
fn column_passes<I: Copy, W: Real>(
    src: &[I],
    shape: &[usize],
    passes: &[Pass],
    cval: f64,
    output: DType,
    out: &mut [W],
    convert: impl Fn(&[I], &mut [W]),
) {
    let Some((first, rest)) = passes.split_first() else { return };
    let slab_len = src.len() / shape[0].max(1);
    axis0_tiles(src, shape, &first.weights, first.mode, cval, 0..shape[0], convert, |i, tile, taps, w, sym| {
        fold_taps(&mut out[i * slab_len + tile.start..i * slab_len + tile.end], taps, w, sym);
    });
    let empty: Block<W> = Block { data: Vec::new(), shape: Vec::new() };
    empty.store_slice(out, output);
    let rest: Vec<Pass> = rest.iter().map(Pass::inner).collect();
    let mut scratch = vec![W::default(); slab_len];
    for dst in out.chunks_exact_mut(slab_len) {
        separable_into(dst, &shape[1..], &rest, cval, output, &mut scratch);
        dst.copy_from_slice(&scratch);
    }
}

/// Output element types of [`column_passes_to`]: conversions of values
/// already stored as the type (so exactly representable), written so that
/// the loops vectorise (through 32-bit integers for the small types).
pub trait Stored: Copy + Default {
    /// From a double already representable in the type.
    fn from_stored(x: f64) -> Self;
    /// To a double (exact).
    fn to_work(self) -> f64;
}

/// 1.5 · 2⁵²: adding it to an integer `x` with `|x| < 2³¹` leaves `x` in
/// two's complement in the low 32 bits of the sum's mantissa.
const INTEGER_BITS: f64 = 6_755_399_441_055_744.0;

macro_rules! stored_via_i32 {
    ($($t:ty),*) => {$(
        impl Stored for $t {
            // Not `x as i32`: its saturating rule has no vector form on x86,
            // and these values are integers in range anyway.
            #[inline(always)]
            fn from_stored(x: f64) -> Self {
                (x + INTEGER_BITS).to_bits() as u32 as i32 as $t
            }
            fn to_work(self) -> f64 {
                f64::from(self)
            }
        }
    )*};
}
stored_via_i32!(u8, u16, i8, i16, i32);

macro_rules! stored_as {
    ($($t:ty),*) => {$(
        impl Stored for $t {
            fn from_stored(x: f64) -> Self {
                x as $t
            }
            fn to_work(self) -> f64 {
                self as f64
            }
        }
    )*};
}
stored_as!(u32, u64, i64, f32, f64);

/// The column-tiled passes (as [`column_passes`]) writing straight into an
/// output of the output dtype `O`, for the output rows `rows` of axis 0
/// only (`out` holds those slabs): the first pass's results are stored in
/// `out` (scipy stores them in the output array too, so they are exactly
/// representable), then the other passes run slab by slab on `out`. The
/// only full-size buffer is the output itself, a quarter of a float64
/// intermediate for uint16.
#[allow(clippy::too_many_arguments)] // the passes' geometry, spelled out
fn column_passes_to<I: Copy, W: Real, O: Stored>(
    src: &[I],
    shape: &[usize],
    passes: &[Pass],
    cval: f64,
    output: DType,
    rows: std::ops::Range<usize>,
    out: &mut [O],
    convert: impl Fn(&[I], &mut [W]),
) {
    let Some((first, rest)) = passes.split_first() else { return };
    let slab_len = src.len() / shape[0].max(1);
    let mut result = [W::default(); COLUMN_TILE];
    let r0 = rows.start;
    axis0_tiles(src, shape, &first.weights, first.mode, cval, rows, convert, |i, tile, taps, w, sym| {
        let m = tile.len();
        fold_taps(&mut result[..m], taps, w, sym);
        store_values(&mut result[..m], output);
        let at = (i - r0) * slab_len;
        narrow_into(&result[..m], &mut out[at + tile.start..at + tile.end]);
    });
    let rest: Vec<Pass> = rest.iter().map(Pass::inner).collect();
    if let Some(mut rows_pass) = SlabRows::<W>::new(&shape[1..], &rest, cval, output) {
        for dst in out.chunks_exact_mut(slab_len) {
            rows_pass.run(dst);
        }
        return;
    }
    let mut slab = vec![W::default(); slab_len];
    let mut scratch = vec![W::default(); slab_len];
    for dst in out.chunks_exact_mut(slab_len) {
        for (s, &o) in slab.iter_mut().zip(dst.iter()) {
            *s = W::of(o.to_work());
        }
        separable_into(&slab, &shape[1..], &rest, cval, output, &mut scratch);
        for (o, v) in dst.iter_mut().zip(&scratch) {
            *o = O::from_stored(v.get());
        }
    }
}

/// The two passes of a 2-D slab (along its rows, then along each row), run
/// in place on the stored values: each output row is folded from a ring of
/// the last `width` input rows, converted to working values once, and the
/// row pass reads it from an extended line buffer. Nothing slab-sized is
/// allocated or streamed through memory in the working type. Valid when
/// every row the first pass reads for output row `i` lies in
/// `i - before ..= i + after` (so it is still in the ring, unwritten): odd
/// kernels with modes other than `wrap`, on slabs at least as tall as the
/// kernel.
#[derive(Debug)]
struct SlabRows<W> {
    rows: usize,
    cols: usize,
    down: PassTaps<W>,
    along: PassTaps<W>,
    cval: W,
    output: DType,
    /// Converted input rows, row `r` in slot `r % width`.
    ring: Vec<W>,
    /// The first pass's output row, then the second's.
    folded: Vec<W>,
    /// A stored row extended for the second pass.
    ext: Vec<W>,
    constant: Vec<W>,
}

/// A pass's weights in the working type, its reach and its symmetry.
#[derive(Debug)]
struct PassTaps<W> {
    weights: Vec<W>,
    before: usize,
    mode: Mode,
    sym: Symmetry,
}

impl<W: Real> PassTaps<W> {
    fn new(pass: &Pass) -> Self {
        PassTaps {
            weights: pass.weights.iter().map(|&x| W::of(x)).collect(),
            before: pass.weights.len() / 2,
            mode: pass.mode,
            sym: symmetry(&pass.weights),
        }
    }
}

impl<W: Real> SlabRows<W> {
    fn new(shape: &[usize], passes: &[Pass], cval: f64, output: DType) -> Option<Self> {
        let [down, along] = passes else { return None };
        let &[rows, cols] = shape else { return None };
        let width = down.weights.len();
        if down.axis != 0 || along.axis != 1 || width == 0 || along.weights.is_empty() {
            return None;
        }
        // An odd width keeps the first rows' reflections within the ring.
        if down.mode == Mode::Wrap || rows < width || width % 2 == 0 || cols == 0 {
            return None;
        }
        let (down, along) = (PassTaps::new(down), PassTaps::new(along));
        let reach = along.weights.len() - 1;
        Some(SlabRows {
            rows,
            cols,
            cval: W::of(cval),
            output,
            ring: vec![W::default(); width * cols],
            folded: vec![W::default(); cols],
            ext: vec![W::default(); cols + reach],
            constant: vec![W::of(cval); cols],
            down,
            along,
        })
    }

    fn run<O: Stored>(&mut self, dst: &mut [O]) {
        let (rows, cols) = (self.rows, self.cols);
        let width = self.down.weights.len();
        let before = self.down.before;
        let mut converted = 0;
        for i in 0..rows {
            // Every row this output row reads, up to `i + after`, is in the ring.
            let last = (i + width - before).min(rows);
            while converted < last {
                let slot = converted % width;
                widen_stored_into(
                    &dst[converted * cols..(converted + 1) * cols],
                    &mut self.ring[slot * cols..(slot + 1) * cols],
                );
                converted += 1;
            }
            let taps: Vec<&[W]> = (0..width)
                .map(|k| match self.down.mode.source(i as isize + k as isize - before as isize, rows) {
                    Some(r) => &self.ring[(r % width) * cols..(r % width + 1) * cols],
                    None => &self.constant[..],
                })
                .collect();
            fold_taps(&mut self.folded, &taps, &self.down.weights, self.down.sym);
            store_values(&mut self.folded, self.output);
            let b = self.along.before;
            let cval = self.cval.get();
            extend_line(&self.folded, &mut self.ext, b, self.along.mode, cval);
            let taps: Vec<&[W]> = (0..self.along.weights.len()).map(|k| &self.ext[k..k + cols]).collect();
            fold_taps(&mut self.folded, &taps, &self.along.weights, self.along.sym);
            store_values(&mut self.folded, self.output);
            narrow_into(&self.folded, &mut dst[i * cols..(i + 1) * cols]);
        }
    }
}

/// [`separable`] from an array value of any dtype to an array of `output`:
/// big blocks go through [`column_passes_to`] (no full-size working copy),
/// others through [`separable`].
pub fn separable_to<W: Real>(input: ArrayValue, passes: &[Pass], cval: f64, output: DType) -> ArrayValue {
    let trim = vec![(0, 0); input.shape().len()];
    separable_trimmed::<W>(input, passes, cval, output, &trim)
}

/// [`separable_to`] without `trim[axis] = (before, after)` elements at the
/// ends of each axis (a `map_overlap` halo). Along the first axis of big
/// blocks the trimmed rows are not computed at all; other trims are cut off
/// the result.
pub fn separable_trimmed<W: Real>(
    input: ArrayValue,
    passes: &[Pass],
    cval: f64,
    output: DType,
    trim: &[(usize, usize)],
) -> ArrayValue {
    let shape = input.shape().to_vec();
    let keep = |n: usize, (b, a): (usize, usize)| b.min(n)..n.saturating_sub(a).max(b.min(n));
    let cut = |value: ArrayValue, first: bool| -> ArrayValue {
        let sel: Vec<Sel> = value
            .shape()
            .iter()
            .zip(trim)
            .enumerate()
            .map(|(ax, (&n, &t))| {
                let r = if ax == 0 && !first { 0..n } else { keep(n, t) };
                Sel::Range { start: r.start as isize, stop: Some(r.end as isize), step: 1 }
            })
            .collect();
        let untrimmed = value
            .shape()
            .iter()
            .zip(&sel)
            .all(|(&n, s)| matches!(s, Sel::Range { start: 0, stop: Some(e), .. } if *e as usize == n));
        if untrimmed {
            return value;
        }
        rask_array::kernels::slice_value(&value, &sel).unwrap_or(value)
    };
    if column_first(&shape, passes) && output != DType::Bool && trim.len() == shape.len() {
        let rows = keep(shape[0], trim[0]);
        let slab_len: usize = shape[1..].iter().product();
        let mut out_shape = shape.clone();
        out_shape[0] = rows.len();
        macro_rules! to {
            ($o:ty, $wrap:path) => {{
                let mut out: Vec<$o> = vec![<$o>::default(); rows.len() * slab_len];
                let done = with_array!(&input, x => match x.as_slice() {
                    Some(s) => {
                        column_passes_to(s, &shape, passes, cval, output, rows.clone(), &mut out, widen_into::<_, W>);
                        true
                    }
                    None => false,
                });
                if done {
                    if let Ok(arr) = ArrayD::from_shape_vec(IxDyn(&out_shape), out) {
                        return cut($wrap(arr.into_shared()), false);
                    }
                }
            }};
        }
        match output {
            DType::U8 => to!(u8, ArrayValue::U8),
            DType::U16 => to!(u16, ArrayValue::U16),
            DType::U32 => to!(u32, ArrayValue::U32),
            DType::U64 => to!(u64, ArrayValue::U64),
            DType::I8 => to!(i8, ArrayValue::I8),
            DType::I16 => to!(i16, ArrayValue::I16),
            DType::I32 => to!(i32, ArrayValue::I32),
            DType::I64 => to!(i64, ArrayValue::I64),
            DType::F32 => to!(f32, ArrayValue::F32),
            DType::F64 => to!(f64, ArrayValue::F64),
            DType::Bool => {}
        }
    }
    cut(separable_value::<W>(input, passes, cval, output).into_value(output), true)
}

/// [`separable`] on an array value of any dtype: big blocks are converted
/// to the working type a column tile at a time instead of all at once.
pub fn separable_value<W: Real>(input: ArrayValue, passes: &[Pass], cval: f64, output: DType) -> Block<W> {
    let shape = input.shape().to_vec();
    if column_first(&shape, passes) && input.dtype() != W::DTYPE {
        let mut out = vec![W::default(); input.len()];
        let done = with_array!(&input, x => match x.as_slice() {
            Some(s) => {
                column_passes(s, &shape, passes, cval, output, &mut out, |a, b: &mut [W]| {
                    for (o, &v) in b.iter_mut().zip(a) {
                        *o = W::of(rask_array::dtype::Scalar::to_f64(v));
                    }
                });
                true
            }
            None => false,
        });
        if done {
            return Block { data: out, shape };
        }
    }
    separable(&Block::from_owned(input), passes, cval, output)
}

/// One line correlated with `weights` into `out` (extended by `mode`).
fn line_into<W: Real>(src: &[W], weights: &[f64], mode: Mode, cval: f64, out: &mut [W]) {
    let n = src.len();
    let before = weights.len() / 2;
    let after = weights.len() - before - 1;
    let mut ext = vec![W::default(); n + before + after];
    extend_line(src, &mut ext, before, mode, cval);
    let w: Vec<W> = weights.iter().map(|&x| W::of(x)).collect();
    let taps: Vec<&[W]> = (0..weights.len()).map(|k| &ext[k..k + n]).collect();
    fold_taps(out, &taps, &w, symmetry(weights));
}

/// `scipy.ndimage.uniform_filter1d`: the window's sum divided by its size.
/// scipy keeps a running sum; each window is summed here on its own (in
/// order), which gives scipy's integers exactly (sums of integers are exact)
/// and floats to rounding, and does not depend on where a block starts, so
/// chunked results are identical to unchunked ones.
pub fn uniform1d<W: Real>(src: &Block<W>, axis: usize, size: usize, mode: Mode, cval: f64) -> Block<W> {
    if size <= 1 {
        return src.clone();
    }
    let before = size / 2;
    let after = size - before - 1;
    let sz = W::of(size as f64);
    pass_1d(src, axis, before, after, mode, cval, |out, taps| {
        let n = out.len();
        out.copy_from_slice(&taps[0][..n]);
        for tap in &taps[1..] {
            for (o, &x) in out.iter_mut().zip(&tap[..n]) {
                *o = *o + x;
            }
        }
        for o in out.iter_mut() {
            *o = *o / sz;
        }
    })
}

/// `minimum_filter1d` / `maximum_filter1d`.
pub fn extremum1d<W: Real>(src: &Block<W>, axis: usize, size: usize, maximum: bool, mode: Mode, cval: f64) -> Block<W> {
    if size <= 1 {
        return src.clone();
    }
    let before = size / 2;
    let after = size - before - 1;
    pass_1d(src, axis, before, after, mode, cval, |out, taps| {
        let n = out.len();
        out.copy_from_slice(&taps[0][..n]);
        for tap in &taps[1..] {
            for (o, &x) in out.iter_mut().zip(&tap[..n]) {
                let better = if maximum { x > *o } else { x < *o };
                if better {
                    *o = x;
                }
            }
        }
    })
}

/// The block extended by `pad[axis] = (before, after)` with `modes[axis]`.
fn padded<W: Real>(src: &Block<W>, pad: &[(usize, usize)], modes: &[Mode], cval: f64) -> Block<W> {
    let nd = src.shape.len();
    let shape: Vec<usize> = src.shape.iter().zip(pad).map(|(&n, &(b, a))| n + b + a).collect();
    let total: usize = shape.iter().product();
    // Per axis: the source index (or None) of each padded position.
    let maps: Vec<Vec<Option<usize>>> = (0..nd)
        .map(|ax| (0..shape[ax]).map(|j| modes[ax].source(j as isize - pad[ax].0 as isize, src.shape[ax])).collect())
        .collect();
    let mut strides = vec![1usize; nd];
    for ax in (0..nd.saturating_sub(1)).rev() {
        strides[ax] = strides[ax + 1] * src.shape[ax + 1];
    }
    let mut data = Vec::with_capacity(total);
    let mut idx = vec![0usize; nd];
    for _ in 0..total {
        let mut lin = Some(0usize);
        for ax in 0..nd {
            lin = match (lin, maps[ax][idx[ax]]) {
                (Some(l), Some(s)) => Some(l + s * strides[ax]),
                _ => None,
            };
        }
        data.push(lin.map_or(W::of(cval), |l| src.data[l]));
        for ax in (0..nd).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    Block { data, shape }
}

/// Linear offsets (in the padded block) of the window positions in C order,
/// with each position's multi-index.
fn window_offsets(window: &[usize], padded_shape: &[usize]) -> Vec<(usize, Vec<usize>)> {
    let nd = window.len();
    let mut strides = vec![1usize; nd];
    for ax in (0..nd.saturating_sub(1)).rev() {
        strides[ax] = strides[ax + 1] * padded_shape[ax + 1];
    }
    let count: usize = window.iter().product();
    let mut idx = vec![0usize; nd];
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push((idx.iter().zip(&strides).map(|(i, s)| i * s).sum(), idx.clone()));
        for ax in (0..nd).rev() {
            idx[ax] += 1;
            if idx[ax] < window[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

/// Calls `f(output linear index, padded linear index of the window origin)`
/// for every output element.
fn for_each_output(shape: &[usize], padded_shape: &[usize], mut f: impl FnMut(usize, usize)) {
    let nd = shape.len();
    let mut pstrides = vec![1usize; nd];
    for ax in (0..nd.saturating_sub(1)).rev() {
        pstrides[ax] = pstrides[ax + 1] * padded_shape[ax + 1];
    }
    let total: usize = shape.iter().product();
    let mut idx = vec![0usize; nd];
    for lin in 0..total {
        f(lin, idx.iter().zip(&pstrides).map(|(i, s)| i * s).sum());
        for ax in (0..nd).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
}

/// The padding before and after each axis that a window of `shape`
/// centred at `shape / 2 + origin` reads beyond a block.
pub fn window_pad(shape: &[usize], origin: &[isize]) -> Vec<(usize, usize)> {
    shape
        .iter()
        .zip(origin)
        .map(|(&s, &o)| {
            let before = (s / 2) as isize + o;
            let after = s as isize - 1 - before;
            (before.max(0) as usize, after.max(0) as usize)
        })
        .collect()
}

/// `scipy.ndimage.correlate` with an n-d kernel (`weights` in C order of
/// `wshape`) and per-axis `origin`: sums the non-zero weights in C order
/// starting from zero, as `NI_Correlate` does. The edges of axis `k` are
/// extended by `modes[k]`.
pub fn correlate_nd<W: Real>(
    src: &Block<W>,
    weights: &[f64],
    wshape: &[usize],
    origin: &[isize],
    modes: &[Mode],
    cval: f64,
) -> Block<W> {
    let p = padded(src, &window_pad(wshape, origin), modes, cval);
    let taps: Vec<(usize, W)> = window_offsets(wshape, &p.shape)
        .into_iter()
        .zip(weights)
        .filter(|(_, w)| **w != 0.0)
        .map(|((off, _), &w)| (off, W::of(w)))
        .collect();
    let mut out = vec![W::default(); src.data.len()];
    for_each_output(&src.shape, &p.shape, |o, base| {
        let mut acc = W::of(0.0);
        for &(off, w) in &taps {
            acc = acc + p.data[base + off] * w;
        }
        out[o] = acc;
    });
    Block { data: out, shape: src.shape.clone() }
}

/// `scipy.ndimage.median_filter` with a box of `size[axis]`: the element of
/// rank `count / 2` of each window (edges of axis `k` extended by `modes[k]`).
pub fn median_nd<W: Real>(src: &Block<W>, size: &[usize], modes: &[Mode], cval: f64) -> Block<W> {
    let pad: Vec<(usize, usize)> = size.iter().map(|&s| (s / 2, s - s / 2 - 1)).collect();
    let p = padded(src, &pad, modes, cval);
    let offs: Vec<usize> = window_offsets(size, &p.shape).into_iter().map(|(o, _)| o).collect();
    let rank = offs.len() / 2;
    let mut window = vec![W::default(); offs.len()];
    let mut out = vec![W::default(); src.data.len()];
    for_each_output(&src.shape, &p.shape, |o, base| {
        for (w, &off) in window.iter_mut().zip(&offs) {
            *w = p.data[base + off];
        }
        let (_, m, _) =
            window.select_nth_unstable_by(rank, |a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        out[o] = *m;
    });
    Block { data: out, shape: src.shape.clone() }
}

/// `scipy.ndimage.rank_filter` with a footprint (`mask` in C order of
/// `fshape`) and per-axis `origin`: the element of `rank` among the
/// footprint's values of each window (ties are equal values, so the pick
/// is exact for any selection order). The edges of axis `k` are extended by
/// `modes[k]` (with a full box, rank 0 and the last rank are scipy's
/// separable minimum and maximum with one mode per axis).
pub fn rank_nd<W: Real>(
    src: &Block<W>,
    mask: &[bool],
    fshape: &[usize],
    origin: &[isize],
    rank: usize,
    modes: &[Mode],
    cval: f64,
) -> Block<W> {
    let p = padded(src, &window_pad(fshape, origin), modes, cval);
    let offs: Vec<usize> =
        window_offsets(fshape, &p.shape).into_iter().zip(mask).filter(|(_, m)| **m).map(|((o, _), _)| o).collect();
    let rank = rank.min(offs.len().saturating_sub(1));
    let mut window = vec![W::default(); offs.len()];
    let mut out = vec![W::default(); src.data.len()];
    for_each_output(&src.shape, &p.shape, |o, base| {
        for (w, &off) in window.iter_mut().zip(&offs) {
            *w = p.data[base + off];
        }
        if !window.is_empty() {
            let (_, m, _) =
                window.select_nth_unstable_by(rank, |a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            out[o] = *m;
        }
    });
    Block { data: out, shape: src.shape.clone() }
}

/// numpy's pairwise summation of a contiguous float64 vector (what
/// `ndarray.sum()` does), so kernels are normalised bit for bit as scipy's.
pub fn numpy_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&a[..n2]) + numpy_sum(&a[n2..])
    }
}

/// scipy's `_gaussian_kernel1d(sigma, order, radius)`: the sampled Gaussian
/// (normalised) times the polynomial of its `order`-th derivative.
pub fn gaussian_kernel1d(sigma: f64, order: usize, radius: usize) -> Vec<f64> {
    let sigma2 = sigma * sigma;
    let r = radius as i64;
    let xs: Vec<f64> = (-r..=r).map(|x| x as f64).collect();
    let factor = -0.5 / sigma2;
    let phi: Vec<f64> = (-r..=r).map(|x| (factor * (x * x) as f64).exp()).collect();
    let total = numpy_sum(&phi);
    let phi: Vec<f64> = phi.iter().map(|p| p / total).collect();
    if order == 0 {
        return phi;
    }
    // q holds the polynomial's coefficients; (D + P) q differentiates
    // q(x)·phi(x) (D: q', P: q·(-x/sigma²)).
    let mut q = vec![0.0; order + 1];
    q[0] = 1.0;
    let inv = 1.0 / -sigma2;
    for _ in 0..order {
        let mut next = vec![0.0; order + 1];
        for (i, nx) in next.iter_mut().enumerate() {
            let mut acc = 0.0;
            for (j, &qj) in q.iter().enumerate() {
                let d = if j == i + 1 { j as f64 } else { 0.0 };
                let p = if i >= 1 && j == i - 1 { inv } else { 0.0 };
                acc += (d + p) * qj;
            }
            *nx = acc;
        }
        q = next;
    }
    xs.iter()
        .zip(&phi)
        .map(|(&x, &p)| {
            let mut poly = 0.0;
            for (e, &qe) in q.iter().enumerate() {
                poly += x.powi(e as i32) * qe;
            }
            poly * p
        })
        .collect()
}

/// scipy's radius for `sigma` and `truncate`: `int(truncate * sigma + 0.5)`.
pub fn gaussian_radius(sigma: f64, truncate: f64) -> usize {
    (truncate * sigma + 0.5).max(0.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_extend_like_scipy() {
        let ext = |m: Mode| (-5..9).map(|i| m.source(i, 4).map_or(-1, |s| s as i64)).collect::<Vec<_>>();
        assert_eq!(ext(Mode::Reflect), vec![3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0]);
        assert_eq!(ext(Mode::Mirror), vec![1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert_eq!(ext(Mode::Nearest), vec![0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3, 3]);
        assert_eq!(ext(Mode::Wrap), vec![3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0]);
        assert_eq!(ext(Mode::Constant), vec![-1, -1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, -1]);
    }

    #[test]
    fn stores_truncate_and_wrap_like_c() {
        assert_eq!(store(2.9, DType::U8), 2.0);
        assert_eq!(store(-1.5, DType::U8), 255.0);
        assert_eq!(store(-2.7, DType::I16), -2.0);
        assert_eq!(store(300.0, DType::U8), 44.0);
    }

    #[test]
    fn gaussian_kernel_sums_to_one_and_derivatives_are_odd_even() {
        let k = gaussian_kernel1d(2.0, 0, 8);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let d1 = gaussian_kernel1d(2.0, 1, 8);
        assert!((d1[0] + d1[16]).abs() < 1e-15 && d1[0] > 0.0);
        let d2 = gaussian_kernel1d(2.0, 2, 8);
        assert!((d2[0] - d2[16]).abs() < 1e-15 && d2[8] < 0.0);
    }

    /// The streamed and column-tiled paths of `separable` (slabs big enough
    /// for the column path, any input dtype) give exactly the passes' result.
    #[test]
    fn separable_paths_equal_pass_by_pass() {
        let shape = vec![6usize, 260, 300];
        let n: usize = shape.iter().product();
        let values: Vec<u16> = (0..n).map(|i| ((i * 7919) % 65521) as u16).collect();
        let Ok(arr) = ArrayD::from_shape_vec(IxDyn(&shape), values) else { unreachable!() };
        let input = ArrayValue::U16(arr.into_shared());
        let mut w = gaussian_kernel1d(2.0, 0, 8);
        w.reverse();
        let all = [Mode::Reflect, Mode::Nearest, Mode::Mirror, Mode::Constant, Mode::Wrap];
        // One mode for every pass, then a different mode per axis.
        let mut mode_sets: Vec<[Mode; 3]> = [Mode::Reflect, Mode::Constant, Mode::Wrap].map(|m| [m; 3]).to_vec();
        mode_sets.extend((0..all.len()).map(|i| [all[i], all[(i + 1) % 5], all[(i + 3) % 5]]));
        for modes in mode_sets {
            let passes: Vec<Pass> = (0..3).map(|a| Pass { axis: a, weights: w.clone(), mode: modes[a] }).collect();
            assert!(column_first(&shape, &passes));
            let mut want: Block<f64> = Block::from_value(&input);
            for p in &passes {
                want = correlate1d(&want, p.axis, &p.weights, p.mode, 5.0);
                want.store_as(DType::U16);
            }
            let got: Block<f64> = separable_value(input.clone(), &passes, 5.0, DType::U16);
            assert!(got == want, "column path differs for {modes:?}");
            let direct = separable_to::<f64>(input.clone(), &passes, 5.0, DType::U16);
            assert!(direct == want.clone().into_value(DType::U16), "column path into uint16 differs for {modes:?}");
            let streamed: Block<f64> = separable(&Block::from_value(&input), &passes[..2], 5.0, DType::U16);
            let mut want2: Block<f64> = Block::from_value(&input);
            for p in &passes[..2] {
                want2 = correlate1d(&want2, p.axis, &p.weights, p.mode, 5.0);
                want2.store_as(DType::U16);
            }
            assert!(streamed == want2, "streamed path differs for {modes:?}");
        }
    }

    /// Trimming the halo inside the kernel (the first axis's trimmed slabs
    /// are never computed) gives the untrimmed result's middle exactly.
    #[test]
    fn trimmed_passes_equal_the_trimmed_result() {
        let shape = vec![24usize, 250, 260];
        let n: usize = shape.iter().product();
        let values: Vec<u16> = (0..n).map(|i| ((i * 7919) % 65521) as u16).collect();
        let Ok(arr) = ArrayD::from_shape_vec(IxDyn(&shape), values) else { unreachable!() };
        let input = ArrayValue::U16(arr.into_shared());
        let w = gaussian_kernel1d(2.0, 0, 8);
        for mode in [Mode::Reflect, Mode::Mirror, Mode::Constant, Mode::Wrap] {
            let passes: Vec<Pass> = (0..3).map(|a| Pass { axis: a, weights: w.clone(), mode }).collect();
            assert!(column_first(&shape, &passes));
            let whole = separable_to::<f64>(input.clone(), &passes, 3.0, DType::U16);
            for trim in [[(6, 6), (0, 0), (0, 0)], [(0, 6), (2, 3), (0, 1)], [(6, 0), (0, 0), (5, 0)]] {
                let got = separable_trimmed::<f64>(input.clone(), &passes, 3.0, DType::U16, &trim);
                let sel: Vec<Sel> = shape
                    .iter()
                    .zip(&trim)
                    .map(|(&n, &(b, a))| Sel::Range { start: b as isize, stop: Some((n - a) as isize), step: 1 })
                    .collect();
                let want = rask_array::kernels::slice_value(&whole, &sel).expect("slice");
                assert!(got == want, "trim {trim:?} differs for {mode:?}");
            }
        }
    }

    /// The folds compiled for wider vectors give bit-identical results: the
    /// same operations per element in the same order.
    #[test]
    #[allow(unsafe_code)] // calls of `#[target_feature]` functions, after checking the CPU has the feature
    fn vector_widths_fold_identically() {
        fn check<W: Real + std::fmt::Debug>(scale: f64) {
            let len = 200;
            let inputs: Vec<Vec<W>> = (0..17)
                .map(|k| (0..len).map(|i| W::of((((i * 31 + k * 17) % 97) as f64 - 40.0) * scale)).collect())
                .collect();
            let taps: Vec<&[W]> = inputs.iter().map(|t| &t[..]).collect();
            let g = gaussian_kernel1d(2.0, 0, 8);
            let d = gaussian_kernel1d(2.0, 1, 8);
            let general: Vec<f64> = (0..17).map(|i| 0.01 * f64::from(i as u8) + 0.3).collect();
            for weights in [g, d, general] {
                let sym = symmetry(&weights);
                let w: Vec<W> = weights.iter().map(|&x| W::of(x)).collect();
                for n in [len, 131, 7] {
                    let cut: Vec<&[W]> = taps.iter().map(|t| &t[..n]).collect();
                    let mut want = vec![W::default(); n];
                    fold_taps_portable(&mut want, &cut, &w, sym);
                    #[cfg(target_arch = "x86_64")]
                    {
                        let mut got = vec![W::default(); n];
                        if std::arch::is_x86_feature_detected!("avx2") {
                            // SAFETY: the CPU has AVX2.
                            unsafe { fold_taps_avx2(&mut got, &cut, &w, sym) };
                            assert_eq!(got, want, "AVX2 fold differs ({sym:?}, {n})");
                        }
                        if std::arch::is_x86_feature_detected!("avx512f") {
                            // SAFETY: the CPU has AVX-512F.
                            unsafe { fold_taps_avx512(&mut got, &cut, &w, sym) };
                            assert_eq!(got, want, "AVX-512 fold differs ({sym:?}, {n})");
                        }
                    }
                    let mut stored = want.clone();
                    store_values(&mut stored, DType::U16);
                    let mut portable = want.clone();
                    store_values_portable(&mut portable, DType::U16);
                    assert_eq!(stored, portable, "stores differ");
                }
            }
        }
        check::<f64>(123.456);
        check::<f32>(0.731);
        // Stores of values in and out of every integer dtype's range.
        let edge = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            -0.5,
            0.5,
            -1.0,
            127.9,
            128.0,
            -128.5,
            -129.0,
            255.5,
            256.0,
            32767.9,
            -32768.9,
            65535.99,
            65536.0,
            1e10,
            -1e10,
            2147483647.5,
            2147483648.0,
            -2147483648.9,
            -2147483649.0,
        ];
        for dtype in [DType::U8, DType::U16, DType::I8, DType::I16, DType::I32, DType::U32, DType::F32] {
            let mut values: Vec<f64> = (0..300).map(|i| edge[i % edge.len()] + (i / edge.len()) as f64).collect();
            values.extend((0..300).map(|i| f64::from(i as u16) * 0.37));
            let mut want = values.clone();
            store_values_portable(&mut want, dtype);
            let mut got = values.clone();
            store_values(&mut got, dtype);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "stores into {dtype:?} differ");
            let mut want32: Vec<f32> = values.iter().map(|&x| x as f32).collect();
            let mut got32 = want32.clone();
            store_values_portable(&mut want32, dtype);
            store_values(&mut got32, dtype);
            assert_eq!(
                got32.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want32.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "f32 stores into {dtype:?} differ"
            );
        }
    }

    #[test]
    fn stored_integers_convert_exactly() {
        for x in [0.0, 1.0, 255.0, 65535.0, 12345.0] {
            assert_eq!(<u16 as Stored>::from_stored(x), x as u16);
        }
        for x in [-128.0, -1.0, 0.0, 127.0] {
            assert_eq!(<i8 as Stored>::from_stored(x), x as i8);
        }
        for x in [-32768.0, -2.0, 32767.0] {
            assert_eq!(<i16 as Stored>::from_stored(x), x as i16);
        }
        for x in [-2147483648.0, -7.0, 0.0, 2147483647.0] {
            assert_eq!(<i32 as Stored>::from_stored(x), x as i32);
        }
        assert_eq!(<u8 as Stored>::from_stored(200.0), 200);
    }

    #[test]
    fn passes_along_any_axis_agree_with_a_direct_sum() {
        let shape = vec![5, 4, 3];
        let data: Vec<f64> = (0..60).map(|i| f64::from((i * 37 % 11) as u8)).collect();
        let b = Block { data: data.clone(), shape: shape.clone() };
        let w = [0.25, 0.5, 0.25];
        for axis in 0..3 {
            let got = correlate1d(&b, axis, &w, Mode::Nearest, 0.0);
            let wshape: Vec<usize> = (0..3).map(|a| if a == axis { 3 } else { 1 }).collect();
            let want = correlate_nd(&b, &w, &wshape, &[0, 0, 0], &[Mode::Nearest; 3], 0.0);
            for (g, x) in got.data.iter().zip(&want.data) {
                assert!((g - x).abs() < 1e-12);
            }
        }
    }
}
