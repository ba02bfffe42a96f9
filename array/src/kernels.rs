//! The ops array tasks run, registered by name so any worker binary linked
//! with this crate can run them. Each decodes its parameters, works on one
//! block (or a list of partial results) and returns a block.

use ndarray::{ArcArray, ArrayD, Axis, IxDyn, Zip};
use rask_core::ops::OpEntry;
use rask_core::{ArrayValue, DType, Element, OpError, Params, Value, with_array};
use serde::{Deserialize, Serialize};

use crate::dtype::{Scalar, cast, is_float, mean_dtype, sum_dtype};
use crate::gemm::BlockProduct;
use crate::random;

pub const FULL: &str = "array.full";
pub const ARANGE: &str = "array.arange";
pub const RANDOM: &str = "array.random";
pub const BINARY: &str = "array.binary";
pub const REDUCE: &str = "array.reduce";
pub const ASTYPE: &str = "array.astype";
pub const MASK: &str = "array.mask";
pub const HISTOGRAM: &str = "array.histogram";
pub const LEN: &str = "array.len";
pub const CONCAT: &str = "array.concat";
pub const SLICE: &str = "array.slice";
pub const TRANSPOSE: &str = "array.transpose";
pub const PIECES: &str = "array.pieces";
pub const MATMUL: &str = "array.matmul";
pub const UNARY: &str = "array.unary";
pub const WHERE: &str = "array.where";
pub const EYE: &str = "array.eye";
pub const RESHAPE: &str = "array.reshape";

fn params<T: for<'de> Deserialize<'de>>(p: &Params, op: &str) -> Result<T, OpError> {
    postcard::from_bytes(&p.0).map_err(|e| OpError::new(format!("{op}: bad parameters: {e}")))
}

fn one_array(args: Vec<Value>, op: &str) -> Result<ArrayValue, OpError> {
    match <[Value; 1]>::try_from(args) {
        Ok([Value::Array(a)]) => Ok(a),
        _ => Err(OpError::new(format!("{op} takes one array argument"))),
    }
}

// ------------------------------------------------------------------ creation

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub enum Fill {
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FullParams {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub value: Fill,
}

fn filled<T: Scalar>(shape: &[usize], v: Fill) -> ArcArray<T, IxDyn> {
    let x = match v {
        Fill::Int(i) => T::from_i64(i),
        Fill::Float(f) => T::from_f64(f),
        Fill::Bool(b) => T::from_i64(i64::from(b)),
    };
    ArrayD::from_elem(IxDyn(shape), x).into_shared()
}

/// Builds an array of `dtype` from a generic constructor.
macro_rules! by_dtype {
    ($dtype:expr, $f:ident ( $($arg:expr),* )) => {
        match $dtype {
            DType::Bool => ArrayValue::Bool($f::<bool>($($arg),*)),
            DType::I8 => ArrayValue::I8($f::<i8>($($arg),*)),
            DType::I16 => ArrayValue::I16($f::<i16>($($arg),*)),
            DType::I32 => ArrayValue::I32($f::<i32>($($arg),*)),
            DType::I64 => ArrayValue::I64($f::<i64>($($arg),*)),
            DType::U8 => ArrayValue::U8($f::<u8>($($arg),*)),
            DType::U16 => ArrayValue::U16($f::<u16>($($arg),*)),
            DType::U32 => ArrayValue::U32($f::<u32>($($arg),*)),
            DType::U64 => ArrayValue::U64($f::<u64>($($arg),*)),
            DType::F32 => ArrayValue::F32($f::<f32>($($arg),*)),
            DType::F64 => ArrayValue::F64($f::<f64>($($arg),*)),
        }
    };
}

fn full(p: &Params, _: Vec<Value>) -> Result<Value, OpError> {
    let p: FullParams = params(p, FULL)?;
    Ok(Value::Array(by_dtype!(p.dtype, filled(&p.shape, p.value))))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EyeParams {
    pub offset: Vec<usize>,
    pub block: Vec<usize>,
    pub k: isize,
    pub dtype: DType,
}

fn eye_block<T: Scalar>(p: &EyeParams) -> ArcArray<T, IxDyn> {
    ArrayD::from_shape_fn(IxDyn(&p.block), |ix| {
        let (r, c) = ((p.offset[0] + ix[0]) as isize, (p.offset[1] + ix[1]) as isize);
        T::from_i64(i64::from(c - r == p.k))
    })
    .into_shared()
}

fn eye(p: &Params, _: Vec<Value>) -> Result<Value, OpError> {
    let p: EyeParams = params(p, EYE)?;
    if p.block.len() != 2 || p.offset.len() != 2 {
        return Err(OpError::new("eye blocks are 2-d"));
    }
    Ok(Value::Array(by_dtype!(p.dtype, eye_block(&p))))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ArangeParams {
    pub start: Fill,
    pub step: Fill,
    pub offset: usize,
    pub len: usize,
    pub dtype: DType,
    /// `linspace`: the element at this global position is exactly this value.
    pub exact_last: Option<(usize, f64)>,
}

fn ramp<T: Scalar>(p: &ArangeParams) -> ArcArray<T, IxDyn> {
    let v: Vec<T> = match (p.start, p.step) {
        (Fill::Int(a), Fill::Int(s)) => {
            (0..p.len).map(|i| T::from_i64(a.wrapping_add(s.wrapping_mul((p.offset + i) as i64)))).collect()
        }
        (a, s) => {
            let f = |x: Fill| match x {
                Fill::Int(i) => i as f64,
                Fill::Float(f) => f,
                Fill::Bool(b) => f64::from(u8::from(b)),
            };
            let (a, s) = (f(a), f(s));
            // numpy's arange fills `start + i * delta` with the step as the
            // float arithmetic sees it, `delta = (start + step) - start`.
            let delta = if p.exact_last.is_none() { (a + s) - a } else { s };
            (0..p.len)
                .map(|i| {
                    let g = p.offset + i;
                    match p.exact_last {
                        Some((last, v)) if g == last => T::from_f64(v),
                        _ => T::from_f64(a + (g as f64) * delta),
                    }
                })
                .collect()
        }
    };
    ArrayD::from_shape_vec(IxDyn(&[p.len]), v).unwrap_or_else(|_| ArrayD::default(IxDyn(&[0]))).into_shared()
}

fn arange(p: &Params, _: Vec<Value>) -> Result<Value, OpError> {
    let p: ArangeParams = params(p, ARANGE)?;
    Ok(Value::Array(by_dtype!(p.dtype, ramp(&p))))
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum Distribution {
    Uniform { low: f64, high: f64 },
    Normal { loc: f64, scale: f64 },
    RandInt { low: i64, high: i64 },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RandomParams {
    pub distribution: Distribution,
    pub seed: u64,
    pub global_shape: Vec<usize>,
    pub offset: Vec<usize>,
    pub block: Vec<usize>,
}

/// Calls `f(global linear index)` for every element of the block, in C order.
fn fill_block<T: Clone + Default>(p: &RandomParams, f: impl Fn(u64) -> T) -> ArrayD<T> {
    let n: usize = p.block.iter().product();
    let mut out = Vec::with_capacity(n);
    let nd = p.block.len();
    if nd == 0 {
        out.push(f(0));
    } else if n > 0 {
        let last = p.block[nd - 1];
        let mut strides = vec![1u64; nd];
        for ax in (0..nd - 1).rev() {
            strides[ax] = strides[ax + 1] * p.global_shape[ax + 1] as u64;
        }
        let rows = n / last;
        let mut idx = vec![0usize; nd.saturating_sub(1)];
        for _ in 0..rows {
            let mut base = p.offset[nd - 1] as u64;
            for ax in 0..nd - 1 {
                base += (p.offset[ax] + idx[ax]) as u64 * strides[ax];
            }
            out.extend((0..last as u64).map(|j| f(base + j)));
            for ax in (0..nd - 1).rev() {
                idx[ax] += 1;
                if idx[ax] < p.block[ax] {
                    break;
                }
                idx[ax] = 0;
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&p.block), out).unwrap_or_else(|_| ArrayD::default(IxDyn(&[0])))
}

fn random_block(p: &Params, _: Vec<Value>) -> Result<Value, OpError> {
    let p: RandomParams = params(p, RANDOM)?;
    let seed = p.seed;
    let a = match p.distribution {
        Distribution::Uniform { low, high } => {
            ArrayValue::F64(fill_block(&p, |i| low + (high - low) * random::uniform(seed, i)).into_shared())
        }
        Distribution::Normal { loc, scale } => {
            let normals = random::Normals::new(seed);
            ArrayValue::F64(fill_block(&p, |i| loc + scale * normals.get(i)).into_shared())
        }
        Distribution::RandInt { low, high } => {
            let stream = random::Stream::new(seed, 3);
            let range = high.wrapping_sub(low) as u64;
            ArrayValue::I64(fill_block(&p, |i| stream.randint(i, low, range)).into_shared())
        }
    };
    Ok(Value::Array(a))
}

fn astype(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let to: DType = params(p, ASTYPE)?;
    Ok(Value::Array(cast(&one_array(args, ASTYPE)?, to)))
}

// --------------------------------------------------------------- elementwise

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Min,
    Max,
    /// `//`: floor division (integer division by zero gives 0, as numpy).
    FloorDiv,
    /// `%`: remainder with the divisor's sign (numpy `remainder`).
    Mod,
    /// `**`.
    Pow,
    LogicalAnd,
    LogicalOr,
    /// numpy's `fmin`: the minimum ignoring a NaN (NaN only if both are).
    FMin,
    /// numpy's `fmax`.
    FMax,
}

impl BinaryOp {
    /// Operations whose result is boolean whatever the operands.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Lt
                | BinaryOp::Le
                | BinaryOp::Gt
                | BinaryOp::Ge
                | BinaryOp::Eq
                | BinaryOp::Ne
                | BinaryOp::LogicalAnd
                | BinaryOp::LogicalOr
        )
    }

    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "truediv",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Min => "minimum",
            BinaryOp::Max => "maximum",
            BinaryOp::FloorDiv => "floordiv",
            BinaryOp::Mod => "mod",
            BinaryOp::Pow => "pow",
            BinaryOp::LogicalAnd => "logical_and",
            BinaryOp::LogicalOr => "logical_or",
            BinaryOp::FMin => "fmin",
            BinaryOp::FMax => "fmax",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BinaryParams {
    pub op: BinaryOp,
    /// Both operands are cast to this dtype first.
    pub dtype: DType,
    /// Where the scalar operand is, if one is.
    pub scalar: Option<(Fill, bool)>,
}

/// Arithmetic as numpy does it: integers wrap, floats follow IEEE.
pub trait Arith: Scalar {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// numpy's minimum/maximum: NaN wins.
    fn min_nan(self, o: Self) -> Self;
    fn max_nan(self, o: Self) -> Self;
    /// Minimum and maximum skipping a NaN (numpy's `fmin`/`fmax`).
    fn fmin(self, o: Self) -> Self {
        self.min_nan(o)
    }
    fn fmax(self, o: Self) -> Self {
        self.max_nan(o)
    }
    fn floor_div(self, o: Self) -> Self;
    fn modulo(self, o: Self) -> Self;
    /// `None` for a negative integer exponent, which numpy refuses.
    fn power(self, o: Self) -> Option<Self>;
}

macro_rules! arith_int {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn min_nan(self, o: Self) -> Self { Ord::min(self, o) }
            fn max_nan(self, o: Self) -> Self { Ord::max(self, o) }
            #[allow(unused_comparisons)] // the sign checks are no-ops for unsigned types
            fn floor_div(self, o: Self) -> Self {
                if o == 0 { return 0; }
                let q = self.wrapping_div(o);
                if (self.wrapping_rem(o) != 0) && ((self < 0) != (o < 0)) { q.wrapping_sub(1) } else { q }
            }
            #[allow(unused_comparisons)]
            fn modulo(self, o: Self) -> Self {
                if o == 0 { return 0; }
                let r = self.wrapping_rem(o);
                if r != 0 && ((r < 0) != (o < 0)) { r.wrapping_add(o) } else { r }
            }
            #[allow(unused_comparisons)]
            fn power(self, o: Self) -> Option<Self> {
                if o < 0 { return None; }
                // Square-and-multiply over the whole exponent (wrapping, as
                // numpy): `wrapping_pow` takes a u32 and would cut it.
                let (mut result, mut base, mut e) = (1 as $t, self, o as u64);
                while e > 0 {
                    if e & 1 == 1 { result = result.wrapping_mul(base); }
                    base = base.wrapping_mul(base);
                    e >>= 1;
                }
                Some(result)
            }
        }
    )*};
}
arith_int!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! arith_float {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            fn add(self, o: Self) -> Self { self + o }
            fn sub(self, o: Self) -> Self { self - o }
            fn mul(self, o: Self) -> Self { self * o }
            fn min_nan(self, o: Self) -> Self { if self.is_nan() || o.is_nan() { <$t>::NAN } else { self.min(o) } }
            fn max_nan(self, o: Self) -> Self { if self.is_nan() || o.is_nan() { <$t>::NAN } else { self.max(o) } }
            // Rust's float min/max return the other operand for one NaN.
            fn fmin(self, o: Self) -> Self { self.min(o) }
            fn fmax(self, o: Self) -> Self { self.max(o) }
            fn floor_div(self, o: Self) -> Self { (self / o).floor() }
            fn modulo(self, o: Self) -> Self {
                // numpy: the result takes the divisor's sign.
                let r = self % o;
                if r != 0.0 && ((r < 0.0) != (o < 0.0)) { r + o } else { r }
            }
            fn power(self, o: Self) -> Option<Self> { Some(self.powf(o)) }
        }
    )*};
}
arith_float!(f32, f64);

impl Arith for bool {
    fn add(self, o: Self) -> Self {
        self || o
    }
    fn sub(self, o: Self) -> Self {
        self ^ o
    }
    fn mul(self, o: Self) -> Self {
        self && o
    }
    fn min_nan(self, o: Self) -> Self {
        self && o
    }
    fn max_nan(self, o: Self) -> Self {
        self || o
    }
    fn floor_div(self, o: Self) -> Self {
        self && o
    }
    fn modulo(self, _: Self) -> Self {
        false
    }
    fn power(self, o: Self) -> Option<Self> {
        Some(self || !o)
    }
}

/// The shape two operands broadcast to, numpy's rules.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let x = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let y = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            match (x, y) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

fn zip_map<T: Scalar, R: Clone + Default>(
    a: &ArcArray<T, IxDyn>,
    b: &ArcArray<T, IxDyn>,
    f: impl Fn(T, T) -> R,
) -> Result<ArrayD<R>, OpError> {
    let shape = broadcast_shape(a.shape(), b.shape()).ok_or_else(|| {
        OpError::new(format!("operands could not be broadcast together with shapes {:?} {:?}", a.shape(), b.shape()))
    })?;
    let (Some(av), Some(bv)) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape))) else {
        return Err(OpError::new("broadcast failed"));
    };
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

fn apply<T: Arith>(op: BinaryOp, a: &ArcArray<T, IxDyn>, b: &ArcArray<T, IxDyn>) -> Result<ArrayValue, OpError> {
    Ok(match op {
        BinaryOp::Add => T::wrap(zip_map(a, b, T::add)?.into_shared()),
        BinaryOp::Sub => T::wrap(zip_map(a, b, T::sub)?.into_shared()),
        BinaryOp::Mul => T::wrap(zip_map(a, b, T::mul)?.into_shared()),
        BinaryOp::Min => T::wrap(zip_map(a, b, T::min_nan)?.into_shared()),
        BinaryOp::Max => T::wrap(zip_map(a, b, T::max_nan)?.into_shared()),
        BinaryOp::FMin => T::wrap(zip_map(a, b, T::fmin)?.into_shared()),
        BinaryOp::FMax => T::wrap(zip_map(a, b, T::fmax)?.into_shared()),
        BinaryOp::FloorDiv => T::wrap(zip_map(a, b, T::floor_div)?.into_shared()),
        BinaryOp::Mod => T::wrap(zip_map(a, b, T::modulo)?.into_shared()),
        BinaryOp::Pow => {
            let out = zip_map(a, b, |x, y| x.power(y))?;
            if out.iter().any(Option::is_none) {
                return Err(OpError::new("Integers to negative integer powers are not allowed"));
            }
            T::wrap(out.mapv(Option::unwrap_or_default).into_shared())
        }
        BinaryOp::LogicalAnd => ArrayValue::Bool(zip_map(a, b, |x, y| !x.is_zero() && !y.is_zero())?.into_shared()),
        BinaryOp::LogicalOr => ArrayValue::Bool(zip_map(a, b, |x, y| !x.is_zero() || !y.is_zero())?.into_shared()),
        BinaryOp::Div => {
            // True division: integers divide as float64, as in numpy.
            if T::DTYPE == DType::F32 {
                ArrayValue::F32(zip_map(a, b, |x, y| (x.to_f64() / y.to_f64()) as f32)?.into_shared())
            } else {
                ArrayValue::F64(zip_map(a, b, |x, y| x.to_f64() / y.to_f64())?.into_shared())
            }
        }
        BinaryOp::Lt => ArrayValue::Bool(zip_map(a, b, |x, y| x < y)?.into_shared()),
        BinaryOp::Le => ArrayValue::Bool(zip_map(a, b, |x, y| x <= y)?.into_shared()),
        BinaryOp::Gt => ArrayValue::Bool(zip_map(a, b, |x, y| x > y)?.into_shared()),
        BinaryOp::Ge => ArrayValue::Bool(zip_map(a, b, |x, y| x >= y)?.into_shared()),
        BinaryOp::Eq => ArrayValue::Bool(zip_map(a, b, |x, y| x == y)?.into_shared()),
        BinaryOp::Ne => ArrayValue::Bool(zip_map(a, b, |x, y| x != y)?.into_shared()),
    })
}

fn scalar_array(f: Fill, dtype: DType) -> ArrayValue {
    by_dtype!(dtype, filled(&[], f))
}

fn binary(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: BinaryParams = params(p, BINARY)?;
    let (a, b) = match p.scalar {
        None => match <[Value; 2]>::try_from(args) {
            Ok([Value::Array(a), Value::Array(b)]) => (a, b),
            _ => return Err(OpError::new(format!("{BINARY} takes two arrays"))),
        },
        Some((s, scalar_first)) => {
            let a = one_array(args, BINARY)?;
            let s = scalar_array(s, p.dtype);
            if scalar_first { (s, a) } else { (a, s) }
        }
    };
    let (a, b) = (cast(&a, p.dtype), cast(&b, p.dtype));
    let out = match (&a, &b) {
        (ArrayValue::Bool(x), ArrayValue::Bool(y)) => apply(p.op, x, y),
        (ArrayValue::I8(x), ArrayValue::I8(y)) => apply(p.op, x, y),
        (ArrayValue::I16(x), ArrayValue::I16(y)) => apply(p.op, x, y),
        (ArrayValue::I32(x), ArrayValue::I32(y)) => apply(p.op, x, y),
        (ArrayValue::I64(x), ArrayValue::I64(y)) => apply(p.op, x, y),
        (ArrayValue::U8(x), ArrayValue::U8(y)) => apply(p.op, x, y),
        (ArrayValue::U16(x), ArrayValue::U16(y)) => apply(p.op, x, y),
        (ArrayValue::U32(x), ArrayValue::U32(y)) => apply(p.op, x, y),
        (ArrayValue::U64(x), ArrayValue::U64(y)) => apply(p.op, x, y),
        (ArrayValue::F32(x), ArrayValue::F32(y)) => apply(p.op, x, y),
        (ArrayValue::F64(x), ArrayValue::F64(y)) => apply(p.op, x, y),
        _ => Err(OpError::new("operands were not cast to one dtype")),
    }?;
    Ok(Value::Array(out))
}

// ---------------------------------------------------------------- reductions

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Reduction {
    Sum,
    Prod,
    Min,
    Max,
    Mean,
    /// `var(ddof=..)`, from per-block counts, means and squared deviations
    /// combined with Chan's parallel formula (stable, one pass per block).
    Var {
        ddof: u32,
    },
    Std {
        ddof: u32,
    },
    Any,
    All,
    CountNonzero,
    NanSum,
    NanMean,
    /// `nanmin`/`nanmax`: NaN skipped; an all-NaN lane gives NaN, as numpy
    /// (which also warns).
    NanMin,
    NanMax,
    /// `nanvar`/`nanstd`: moments over the non-NaN values; NaN where no
    /// more than `ddof` values remain, as numpy.
    NanVar {
        ddof: u32,
    },
    NanStd {
        ddof: u32,
    },
    /// Index of the first minimum (a NaN counts as the minimum, as in numpy).
    ArgMin,
    ArgMax,
}

impl Reduction {
    /// Reductions of an empty lane that numpy refuses (no identity).
    pub fn has_no_identity(self) -> bool {
        matches!(
            self,
            Reduction::Min
                | Reduction::Max
                | Reduction::NanMin
                | Reduction::NanMax
                | Reduction::ArgMin
                | Reduction::ArgMax
        )
    }

    /// numpy's ufunc name in its "zero-size array" message.
    fn numpy_name(self) -> &'static str {
        match self {
            Reduction::Min | Reduction::NanMin => "minimum",
            Reduction::Max | Reduction::NanMax => "maximum",
            other => other.name(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reduction::Sum => "sum",
            Reduction::Prod => "prod",
            Reduction::Min => "min",
            Reduction::Max => "max",
            Reduction::Mean => "mean",
            Reduction::Var { .. } => "var",
            Reduction::Std { .. } => "std",
            Reduction::Any => "any",
            Reduction::All => "all",
            Reduction::CountNonzero => "count_nonzero",
            Reduction::NanSum => "nansum",
            Reduction::NanMean => "nanmean",
            Reduction::NanMin => "nanmin",
            Reduction::NanMax => "nanmax",
            Reduction::NanVar { .. } => "nanvar",
            Reduction::NanStd { .. } => "nanstd",
            Reduction::ArgMin => "argmin",
            Reduction::ArgMax => "argmax",
        }
    }

    /// Reductions kept as (count, mean, M2) moments rather than one array.
    pub fn uses_moments(self) -> bool {
        matches!(
            self,
            Reduction::Mean
                | Reduction::NanMean
                | Reduction::Var { .. }
                | Reduction::Std { .. }
                | Reduction::NanVar { .. }
                | Reduction::NanStd { .. }
        )
    }

    /// The dtype partial results are kept in.
    pub fn partial_dtype(self, input: DType) -> DType {
        match self {
            Reduction::Sum | Reduction::Prod | Reduction::NanSum => sum_dtype(input),
            Reduction::Min | Reduction::Max | Reduction::NanMin | Reduction::NanMax => input,
            Reduction::Any | Reduction::All => DType::Bool,
            Reduction::CountNonzero | Reduction::ArgMin | Reduction::ArgMax => DType::I64,
            _ => DType::F64,
        }
    }

    pub fn output_dtype(self, input: DType) -> DType {
        if self.uses_moments() { mean_dtype(input) } else { self.partial_dtype(input) }
    }

    /// The elementwise op that merges two partials of the simple kind.
    fn combine_op(self) -> BinaryOp {
        match self {
            Reduction::Prod => BinaryOp::Mul,
            Reduction::Min | Reduction::All => BinaryOp::Min,
            Reduction::Max | Reduction::Any => BinaryOp::Max,
            Reduction::NanMin => BinaryOp::FMin,
            Reduction::NanMax => BinaryOp::FMax,
            _ => BinaryOp::Add,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Stage {
    /// Reduce one block, keeping reduced axes with length 1.
    Partial,
    /// Combine a list of partials elementwise.
    Combine,
    /// Turn the last partial into the result.
    Finalize { keepdims: bool },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReduceParams {
    pub op: Reduction,
    pub axes: Vec<usize>,
    pub stage: Stage,
    pub input_dtype: DType,
    /// For arg-reductions: where this block starts and the whole shape, to
    /// turn block positions into the array's (flat) indices.
    pub block_offset: Vec<usize>,
    pub global_shape: Vec<usize>,
}

/// Is `x` a better extreme than `best` (NaN wins, as numpy's argmin/argmax)?
fn better<T: Scalar>(x: T, best: T, want_max: bool) -> bool {
    let (xf, bf) = (x.to_f64(), best.to_f64());
    if bf.is_nan() {
        return false;
    }
    if xf.is_nan() {
        return true;
    }
    if want_max { x > best } else { x < best }
}

/// Per-lane (value, global index) of a block's first extreme.
fn arg_partial<T: Scalar>(
    a: &ArcArray<T, IxDyn>,
    p: &ReduceParams,
    want_max: bool,
) -> (ArcArray<T, IxDyn>, ArcArray<i64, IxDyn>) {
    let nd = a.ndim();
    if p.axes.len() == nd {
        // Flat index in the whole array, C order.
        let mut best: Option<(T, i64)> = None;
        for (ix, &v) in a.indexed_iter() {
            let mut flat = 0i64;
            for ax in 0..nd {
                flat = flat * p.global_shape[ax] as i64 + (p.block_offset[ax] + ix[ax]) as i64;
            }
            if best.is_none_or(|(b, _)| better(v, b, want_max)) {
                best = Some((v, flat));
            }
        }
        let (v, i) = best.unwrap_or((T::default(), 0));
        let shape = vec![1; nd];
        return (ArrayD::from_elem(IxDyn(&shape), v).into_shared(), ArrayD::from_elem(IxDyn(&shape), i).into_shared());
    }
    let ax = p.axes[0];
    let off = p.block_offset[ax] as i64;
    let pairs = a.map_axis(Axis(ax), |lane| {
        let mut best: Option<(T, i64)> = None;
        for (k, &v) in lane.iter().enumerate() {
            if best.is_none_or(|(b, _)| better(v, b, want_max)) {
                best = Some((v, off + k as i64));
            }
        }
        best.unwrap_or((T::default(), 0))
    });
    (
        pairs.mapv(|(v, _)| v).insert_axis(Axis(ax)).into_shared(),
        pairs.mapv(|(_, i)| i).insert_axis(Axis(ax)).into_shared(),
    )
}

/// Merges two (value, index) partials: the better value, then the smaller index.
fn arg_merge<T: Scalar>(
    a: (&ArcArray<T, IxDyn>, &ArcArray<i64, IxDyn>),
    b: (&ArcArray<T, IxDyn>, &ArcArray<i64, IxDyn>),
    want_max: bool,
) -> (ArcArray<T, IxDyn>, ArcArray<i64, IxDyn>) {
    let pairs = Zip::from(a.0).and(a.1).and(b.0).and(b.1).map_collect(|&va, &ia, &vb, &ib| {
        // b wins if strictly better, or on a tie (equal, or both NaN) when it
        // comes first.
        if better(vb, va, want_max) || (!better(va, vb, want_max) && ib < ia) { (vb, ib) } else { (va, ia) }
    });
    (pairs.mapv(|(v, _)| v).into_shared(), pairs.mapv(|(_, i)| i).into_shared())
}

fn arg_value(v: ArrayValue, i: ArcArray<i64, IxDyn>) -> Value {
    Value::list([Value::Array(v), Value::Array(ArrayValue::I64(i))])
}

fn arg_parts(v: &Value) -> Result<(ArrayValue, ArcArray<i64, IxDyn>), OpError> {
    match v {
        Value::List(items) if items.len() == 2 => match (&items[0], &items[1]) {
            (Value::Array(a), Value::Array(ArrayValue::I64(i))) => Ok((a.clone(), i.clone())),
            _ => Err(OpError::new("malformed arg-reduction partial")),
        },
        _ => Err(OpError::new("malformed arg-reduction partial")),
    }
}

fn arg_combine(items: &[Value], want_max: bool) -> Result<Value, OpError> {
    let mut acc: Option<(ArrayValue, ArcArray<i64, IxDyn>)> = None;
    for item in items {
        let (v, i) = arg_parts(item)?;
        acc = Some(match acc {
            None => (v, i),
            Some((av, ai)) => {
                macro_rules! merge {
                    ($($variant:ident),*) => {
                        match (&av, &v) {
                            $((ArrayValue::$variant(x), ArrayValue::$variant(y)) => {
                                let (mv, mi) = arg_merge((x, &ai), (y, &i), want_max);
                                (ArrayValue::$variant(mv), mi)
                            })*
                            _ => return Err(OpError::new("arg-reduction partials of different dtypes")),
                        }
                    };
                }
                merge!(Bool, I8, I16, I32, I64, U8, U16, U32, U64, F32, F64)
            }
        });
    }
    let (v, i) = acc.ok_or_else(|| OpError::new("nothing to combine"))?;
    Ok(arg_value(v, i))
}

fn fold_axes<T: Arith>(
    a: &ArcArray<T, IxDyn>,
    axes: &[usize],
    init: T,
    f: impl Fn(T, T) -> T + Copy,
) -> ArcArray<T, IxDyn> {
    if axes.len() == a.ndim() && a.is_standard_layout() {
        // Whole block: one pass over contiguous memory.
        let total = a.as_slice().map_or_else(|| a.iter().copied().reduce(f).unwrap_or(init), |s| lane_fold(s, init, f));
        return ArrayD::from_elem(IxDyn(&vec![1; a.ndim()]), total).into_shared();
    }
    let mut out = a.to_owned();
    for &ax in axes {
        // Each lane starts from its own first element (min/max have no
        // identity); empty lanes give `init`.
        out = out.map_axis(Axis(ax), |lane| lane.iter().copied().reduce(f).unwrap_or(init)).insert_axis(Axis(ax));
    }
    out.into_shared()
}

/// Folds a slice in 8 independent lanes, so the loop vectorises instead of
/// waiting on one accumulator. The ops folded here are associative (float
/// addition up to rounding, which lanes make smaller, as numpy's pairwise
/// summation does).
fn lane_fold<T: Arith>(s: &[T], init: T, f: impl Fn(T, T) -> T + Copy) -> T {
    if s.len() < 16 {
        return s.iter().copied().reduce(f).unwrap_or(init);
    }
    let mut lanes = [s[0]; 8];
    lanes.copy_from_slice(&s[..8]);
    let chunks = s[8..].chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = f(*l, x);
        }
    }
    let mut acc = lanes.into_iter().reduce(f).unwrap_or(init);
    for &x in rest {
        acc = f(acc, x);
    }
    acc
}

fn sum_f64<T: Scalar>(a: &ArcArray<T, IxDyn>, axes: &[usize]) -> ArcArray<f64, IxDyn> {
    if axes.len() == a.ndim()
        && let Some(s) = a.as_slice()
    {
        // Whole contiguous block: convert on the fly, in 8 independent
        // accumulators so the loop vectorises and rounding error stays small.
        let mut acc = [0.0f64; 8];
        let chunks = s.chunks_exact(8);
        let rest: f64 = chunks.remainder().iter().map(|x| x.to_f64()).sum();
        for c in chunks {
            for (a, x) in acc.iter_mut().zip(c) {
                *a += x.to_f64();
            }
        }
        let total = acc.iter().sum::<f64>() + rest;
        return ArrayD::from_elem(IxDyn(&vec![1; a.ndim()]), total).into_shared();
    }
    let as_f64: ArcArray<f64, IxDyn> = a.mapv(Scalar::to_f64).into_shared();
    fold_axes(&as_f64, axes, 0.0, |x, y| x + y)
}

fn partial_typed<T: Arith>(op: Reduction, a: &ArcArray<T, IxDyn>, axes: &[usize]) -> ArcArray<T, IxDyn> {
    match op {
        Reduction::Prod => fold_axes(a, axes, T::from_i64(1), T::mul),
        Reduction::Min => fold_axes(a, axes, first(a), T::min_nan),
        Reduction::Max => fold_axes(a, axes, first(a), T::max_nan),
        // On booleans: true and false are the identities of min and max.
        Reduction::All => fold_axes(a, axes, T::from_i64(1), T::min_nan),
        Reduction::Any => fold_axes(a, axes, T::from_i64(0), T::max_nan),
        Reduction::NanMin => fold_axes(a, axes, first(a), T::fmin),
        Reduction::NanMax => fold_axes(a, axes, first(a), T::fmax),
        _ => fold_axes(a, axes, T::from_i64(0), T::add),
    }
}

/// Per-lane moments of a block: counts, means and sums of squared
/// deviations (kept with the reduced axes as length 1). NaNs are skipped
/// when `skip_nan`; squared deviations only when `with_m2`.
fn moments(a: &ArrayValue, axes: &[usize], skip_nan: bool, with_m2: bool) -> [ArcArray<f64, IxDyn>; 3] {
    let ArrayValue::F64(x) = cast(a, DType::F64) else { unreachable_f64() };
    let valid = |v: f64| !(skip_nan && v.is_nan());
    let counts = fold_axes(&x.mapv(|v| f64::from(u8::from(valid(v)))).into_shared(), axes, 0.0, |p, q| p + q);
    let sums = fold_axes(&x.mapv(|v| if valid(v) { v } else { 0.0 }).into_shared(), axes, 0.0, |p, q| p + q);
    let means: ArcArray<f64, IxDyn> = Zip::from(&sums).and(&counts).map_collect(|&s, &c| s / c).into_shared();
    let m2 = if with_m2 {
        let b = means.broadcast(x.raw_dim());
        let dev: ArcArray<f64, IxDyn> = match b {
            Some(m) => Zip::from(&x)
                .and(&m)
                .map_collect(|&v, &mu| if valid(v) { (v - mu) * (v - mu) } else { 0.0 })
                .into_shared(),
            None => x.mapv(|_| f64::NAN).into_shared(),
        };
        fold_axes(&dev, axes, 0.0, |p, q| p + q)
    } else {
        counts.mapv(|_| 0.0).into_shared()
    };
    [counts, means, m2]
}

fn unreachable_f64() -> ! {
    // cast(.., F64) always returns an F64 array.
    unreachable!("a cast to float64 returned another dtype")
}

/// Chan et al.'s pairwise update of (count, mean, M2).
fn merge_moments(a: &[ArcArray<f64, IxDyn>; 3], b: &[ArcArray<f64, IxDyn>; 3]) -> [ArcArray<f64, IxDyn>; 3] {
    let n: ArcArray<f64, IxDyn> = (&a[0] + &b[0]).into_shared();
    let mean = Zip::from(&a[0]).and(&b[0]).and(&a[1]).and(&b[1]).map_collect(|&na, &nb, &ma, &mb| {
        let n = na + nb;
        if n == 0.0 {
            f64::NAN
        } else if na == 0.0 {
            mb
        } else if nb == 0.0 {
            ma
        } else {
            ma + (mb - ma) * nb / n
        }
    });
    let cross = Zip::from(&a[0]).and(&b[0]).and(&a[1]).and(&b[1]).map_collect(|&na, &nb, &ma, &mb| {
        if na == 0.0 || nb == 0.0 { 0.0 } else { (mb - ma) * (mb - ma) * na * nb / (na + nb) }
    });
    let m2 = &a[2] + &b[2] + &cross;
    [n, mean.into_shared(), m2.into_shared()]
}

fn moments_of(v: &Value) -> Result<[ArcArray<f64, IxDyn>; 3], OpError> {
    match v {
        Value::List(items) if items.len() == 3 => {
            let get = |i: usize| match &items[i] {
                Value::Array(ArrayValue::F64(x)) => Ok(x.clone()),
                _ => Err(OpError::new("malformed moments partial")),
            };
            Ok([get(0)?, get(1)?, get(2)?])
        }
        _ => Err(OpError::new("malformed moments partial")),
    }
}

fn moments_value(m: [ArcArray<f64, IxDyn>; 3]) -> Value {
    Value::list(m.into_iter().map(|x| Value::Array(ArrayValue::F64(x))))
}

fn first<T: Scalar>(a: &ArcArray<T, IxDyn>) -> T {
    a.iter().next().copied().unwrap_or_default()
}

macro_rules! on_typed {
    ($value:expr, $a:ident => $body:expr) => {
        match $value {
            ArrayValue::Bool($a) => ArrayValue::Bool($body),
            ArrayValue::I8($a) => ArrayValue::I8($body),
            ArrayValue::I16($a) => ArrayValue::I16($body),
            ArrayValue::I32($a) => ArrayValue::I32($body),
            ArrayValue::I64($a) => ArrayValue::I64($body),
            ArrayValue::U8($a) => ArrayValue::U8($body),
            ArrayValue::U16($a) => ArrayValue::U16($body),
            ArrayValue::U32($a) => ArrayValue::U32($body),
            ArrayValue::U64($a) => ArrayValue::U64($body),
            ArrayValue::F32($a) => ArrayValue::F32($body),
            ArrayValue::F64($a) => ArrayValue::F64($body),
        }
    };
}

fn combine_two(op: Reduction, a: &ArrayValue, b: &ArrayValue) -> Result<ArrayValue, OpError> {
    let p = Params::encode(&BinaryParams { op: op.combine_op(), dtype: a.dtype(), scalar: None });
    match binary(&p, vec![Value::Array(a.clone()), Value::Array(b.clone())])? {
        Value::Array(x) => Ok(x),
        _ => Err(OpError::new("combine produced a non-array")),
    }
}

/// Prepares a block for a simple reduction: the casts and NaN handling that
/// turn any/all/count_nonzero/nansum into max/min/sum.
fn prepare(op: Reduction, a: &ArrayValue) -> ArrayValue {
    match op {
        Reduction::Any | Reduction::All => cast(a, DType::Bool),
        Reduction::CountNonzero => cast(&cast(a, DType::Bool), DType::I64),
        Reduction::NanSum => match cast(a, sum_dtype(a.dtype())) {
            ArrayValue::F64(x) => ArrayValue::F64(x.mapv(|v| if v.is_nan() { 0.0 } else { v }).into_shared()),
            ArrayValue::F32(x) => ArrayValue::F32(x.mapv(|v| if v.is_nan() { 0.0 } else { v }).into_shared()),
            other => other,
        },
        _ => cast(a, op.partial_dtype(a.dtype())),
    }
}

fn reduce(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: ReduceParams = params(p, REDUCE)?;
    match p.stage {
        Stage::Partial => {
            let a = one_array(args, REDUCE)?;
            // A block whose lanes are all empty (a reduced axis of length 0,
            // as blocks of a boolean-mask result can be) adds nothing to an
            // extreme: its partial is None, which combine skips; only a
            // reduction whose every partial is None has no identity.
            let empty_lanes = p.axes.iter().any(|&ax| a.shape().get(ax) == Some(&0))
                && (0..a.shape().len()).filter(|ax| !p.axes.contains(ax)).all(|ax| a.shape()[ax] > 0);
            if empty_lanes && p.op.has_no_identity() {
                return Ok(Value::None);
            }
            if matches!(p.op, Reduction::ArgMin | Reduction::ArgMax) {
                let want_max = p.op == Reduction::ArgMax;
                let (v, i) = on_arg_typed(&a, &p, want_max);
                return Ok(arg_value(v, i));
            }
            if p.op == Reduction::Mean && p.axes.len() == a.shape().len() {
                // Whole-block mean: one fast pass, no NaN skipping needed.
                let count: f64 = a.len() as f64;
                let sums = with_array!(&a, x => sum_f64(x, &p.axes));
                let means = sums.mapv(|s| s / count).into_shared();
                let counts = means.mapv(|_| count).into_shared();
                let m2 = means.mapv(|_| 0.0).into_shared();
                return Ok(moments_value([counts, means, m2]));
            }
            if p.op.uses_moments() {
                let skip_nan = matches!(p.op, Reduction::NanMean | Reduction::NanVar { .. } | Reduction::NanStd { .. });
                let with_m2 = matches!(
                    p.op,
                    Reduction::Var { .. } | Reduction::Std { .. } | Reduction::NanVar { .. } | Reduction::NanStd { .. }
                );
                return Ok(moments_value(moments(&a, &p.axes, skip_nan, with_m2)));
            }
            let a = prepare(p.op, &a);
            Ok(Value::Array(on_typed!(&a, x => partial_typed(p.op, x, &p.axes))))
        }
        Stage::Combine => {
            let items = match <[Value; 1]>::try_from(args) {
                Ok([Value::List(items)]) => items,
                _ => return Err(OpError::new(format!("{REDUCE} combine takes a list of partials"))),
            };
            let items: Vec<Value> = items.iter().filter(|v| !matches!(v, Value::None)).cloned().collect();
            if items.is_empty() {
                return Ok(Value::None);
            }
            if matches!(p.op, Reduction::ArgMin | Reduction::ArgMax) {
                return arg_combine(&items, p.op == Reduction::ArgMax);
            }
            if p.op.uses_moments() {
                let mut acc: Option<[ArcArray<f64, IxDyn>; 3]> = None;
                for item in items.iter() {
                    let m = moments_of(item)?;
                    acc = Some(match acc {
                        None => m,
                        Some(a) => merge_moments(&a, &m),
                    });
                }
                return acc.map(moments_value).ok_or_else(|| OpError::new("nothing to combine"));
            }
            let mut acc: Option<ArrayValue> = None;
            for item in items.iter() {
                let Value::Array(b) = item else { return Err(OpError::new("partials of different kinds")) };
                acc = Some(match acc {
                    None => b.clone(),
                    Some(a) => combine_two(p.op, &a, b)?,
                });
            }
            acc.map(Value::Array).ok_or_else(|| OpError::new("nothing to combine"))
        }
        Stage::Finalize { keepdims } => {
            let [partial]: [Value; 1] = args.try_into().map_err(|_| OpError::new("finalize takes one partial"))?;
            if matches!(partial, Value::None) {
                return Err(OpError::new(match p.op {
                    Reduction::ArgMin | Reduction::ArgMax => {
                        format!("attempt to get {} of an empty sequence", p.op.name())
                    }
                    _ => format!("zero-size array to reduction operation {} which has no identity", p.op.numpy_name()),
                }));
            }
            let mut out = if matches!(p.op, Reduction::ArgMin | Reduction::ArgMax) {
                ArrayValue::I64(arg_parts(&partial)?.1)
            } else if p.op.uses_moments() {
                let [n, mean, m2] = moments_of(&partial)?;
                let v = match p.op {
                    Reduction::Var { ddof } => Zip::from(&m2).and(&n).map_collect(|&q, &c| q / (c - f64::from(ddof))),
                    Reduction::Std { ddof } => {
                        Zip::from(&m2).and(&n).map_collect(|&q, &c| (q / (c - f64::from(ddof))).sqrt())
                    }
                    Reduction::NanVar { ddof } | Reduction::NanStd { ddof } => {
                        let sqrt = matches!(p.op, Reduction::NanStd { .. });
                        Zip::from(&m2).and(&n).map_collect(|&q, &c| {
                            let dof = c - f64::from(ddof);
                            let v = if dof <= 0.0 { f64::NAN } else { q / dof };
                            if sqrt { v.sqrt() } else { v }
                        })
                    }
                    _ => mean.to_owned(),
                };
                cast(&ArrayValue::F64(v.into_shared()), p.op.output_dtype(p.input_dtype))
            } else {
                match partial {
                    Value::Array(a) => a,
                    _ => return Err(OpError::new("finalize got no partial")),
                }
            };
            if !keepdims {
                let mut axes = p.axes.clone();
                axes.sort_unstable_by(|a, b| b.cmp(a));
                out = on_typed!(&out, x => {
                    let mut y = x.clone();
                    for &ax in &axes {
                        y = y.index_axis_move(Axis(ax), 0).into_shared();
                    }
                    y
                });
            }
            Ok(Value::Array(out))
        }
    }
}

fn on_arg_typed(a: &ArrayValue, p: &ReduceParams, want_max: bool) -> (ArrayValue, ArcArray<i64, IxDyn>) {
    macro_rules! go {
        ($($variant:ident),*) => {
            match a {
                $(ArrayValue::$variant(x) => {
                    let (v, i) = arg_partial(x, p, want_max);
                    (ArrayValue::$variant(v), i)
                })*
            }
        };
    }
    go!(Bool, I8, I16, I32, I64, U8, U16, U32, U64, F32, F64)
}

// ------------------------------------------------------- masks and histograms

/// `block[mask]`: the selected elements, flattened in C order.
fn mask_select(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let [Value::Array(a), Value::Array(ArrayValue::Bool(m))] =
        <[Value; 2]>::try_from(args).map_err(|_| OpError::new(format!("{MASK} takes an array and a mask")))?
    else {
        return Err(OpError::new(format!("{MASK} takes an array and a boolean mask")));
    };
    if a.shape() != m.shape() {
        return Err(OpError::new(format!("mask shape {:?} does not match block shape {:?}", m.shape(), a.shape())));
    }
    // Counting first sizes the output exactly: no regrowth, and no copies
    // of a half-built block.
    let n = match m.as_slice() {
        Some(keep) => keep.iter().filter(|k| **k).count(),
        None => m.iter().filter(|k| **k).count(),
    };
    let out = with_array!(&a, x => {
        let mut picked = Vec::with_capacity(n);
        match (x.as_slice(), m.as_slice()) {
            (Some(values), Some(keep)) => picked.extend(values.iter().zip(keep).filter(|(_, k)| **k).map(|(v, _)| *v)),
            _ => picked.extend(x.iter().zip(m.iter()).filter(|(_, k)| **k).map(|(v, _)| *v)),
        }
        Element::wrap(ArrayD::from_shape_vec(IxDyn(&[n]), picked).unwrap_or_else(|_| ArrayD::default(IxDyn(&[0]))).into_shared())
    });
    Ok(Value::Array(out))
}

/// The length of a 1-d block, for `compute_chunk_sizes`.
fn block_len(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let a = one_array(args, LEN)?;
    Ok(Value::Int(a.len() as i64))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HistogramParams {
    pub bins: usize,
    pub low: f64,
    pub high: f64,
}

/// numpy's bin edges for `bins` equal bins over `[low, high]`.
pub fn histogram_edges(bins: usize, low: f64, high: f64) -> Vec<f64> {
    // np.linspace: start + i * step, with the last edge exactly `high`.
    let step = (high - low) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| low + i as f64 * step).collect();
    if let Some(last) = edges.last_mut() {
        *last = high;
    }
    edges
}

/// Counts per bin as `np.histogram` does: the last bin includes `high`,
/// values outside the range and NaNs are ignored, and bin indices are
/// corrected against the edges so float rounding never moves a value.
fn histogram(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: HistogramParams = params(p, HISTOGRAM)?;
    if p.bins == 0 || p.low.partial_cmp(&p.high) != Some(std::cmp::Ordering::Less) {
        return Err(OpError::new(format!(
            "histogram needs bins > 0 and low < high, got {} bins over [{}, {}]",
            p.bins, p.low, p.high
        )));
    }
    let a = one_array(args, HISTOGRAM)?;
    let edges = histogram_edges(p.bins, p.low, p.high);
    let norm = p.bins as f64 / (p.high - p.low);
    let mut counts = vec![0i64; p.bins];
    let mut add = |x: f64| {
        if !(x >= p.low && x <= p.high) {
            return;
        }
        let mut i = (((x - p.low) * norm) as usize).min(p.bins - 1);
        if x < edges[i] {
            i = i.saturating_sub(1);
        } else if i + 1 < p.bins && x >= edges[i + 1] {
            i += 1;
        }
        counts[i] += 1;
    };
    with_array!(&a, x => x.iter().for_each(|v| add(v.to_f64())));
    // Shape (1, bins): one row of the per-block counts that are summed over axis 0.
    Ok(Value::Array(ArrayValue::I64(
        ArrayD::from_shape_vec(IxDyn(&[1, p.bins]), counts)
            .unwrap_or_else(|_| ArrayD::default(IxDyn(&[0])))
            .into_shared(),
    )))
}

/// Joins blocks given in C order of a `numblocks` grid into one array. Block
/// sizes are read from the blocks themselves, so unknown chunk sizes work.
pub fn stitch(values: Vec<ArrayValue>, numblocks: &[usize]) -> Result<ArrayValue, OpError> {
    if values.len() == 1 {
        return values.into_iter().next().ok_or_else(|| OpError::new("no blocks"));
    }
    let total: usize = numblocks.iter().product();
    if values.len() != total {
        return Err(OpError::new(format!("{} blocks for a grid of {numblocks:?}", values.len())));
    }
    let dtype = values.first().map(ArrayValue::dtype).ok_or_else(|| OpError::new("no blocks"))?;
    // Index of each block, and the size of each block along each axis.
    let indices = crate::chunks::c_order_indices(numblocks);
    let mut sizes: Vec<Vec<usize>> = numblocks.iter().map(|&n| vec![0; n]).collect();
    for (idx, v) in indices.iter().zip(&values) {
        if v.shape().len() != idx.len() {
            return Err(OpError::new(format!(
                "block {idx:?} has {} dimensions, expected {}",
                v.shape().len(),
                idx.len()
            )));
        }
        for (ax, &i) in idx.iter().enumerate() {
            sizes[ax][i] = v.shape()[ax];
        }
    }
    let offsets: Vec<Vec<usize>> = sizes
        .iter()
        .map(|s| {
            s.iter()
                .scan(0, |acc, &n| {
                    let o = *acc;
                    *acc += n;
                    Some(o)
                })
                .collect()
        })
        .collect();
    let shape: Vec<usize> = sizes.iter().map(|s| s.iter().sum()).collect();
    macro_rules! join {
        ($t:ty, $variant:ident) => {{
            let mut out = ArrayD::<$t>::default(IxDyn(&shape));
            for (idx, v) in indices.iter().zip(values) {
                let ArrayValue::$variant(block) = v else {
                    return Err(OpError::new(format!("block {idx:?} has dtype {}, expected {dtype}", v.dtype())));
                };
                let info: Vec<ndarray::SliceInfoElem> = idx
                    .iter()
                    .enumerate()
                    .map(|(ax, &i)| {
                        let o = offsets[ax][i];
                        ndarray::SliceInfoElem::Slice {
                            start: o as isize,
                            end: Some((o + block.shape()[ax]) as isize),
                            step: 1,
                        }
                    })
                    .collect();
                out.slice_mut(info.as_slice()).assign(&block);
            }
            ArrayValue::$variant(out.into_shared())
        }};
    }
    Ok(match dtype {
        DType::Bool => join!(bool, Bool),
        DType::I8 => join!(i8, I8),
        DType::I16 => join!(i16, I16),
        DType::I32 => join!(i32, I32),
        DType::I64 => join!(i64, I64),
        DType::U8 => join!(u8, U8),
        DType::U16 => join!(u16, U16),
        DType::U32 => join!(u32, U32),
        DType::U64 => join!(u64, U64),
        DType::F32 => join!(f32, F32),
        DType::F64 => join!(f64, F64),
    })
}

fn concat(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let numblocks: Vec<usize> = params(p, CONCAT)?;
    let items = match <[Value; 1]>::try_from(args) {
        Ok([Value::List(items)]) => items,
        _ => return Err(OpError::new(format!("{CONCAT} takes a list of blocks"))),
    };
    let blocks = items
        .iter()
        .map(|v| match v {
            Value::Array(a) => Ok(a.clone()),
            other => Err(OpError::new(format!("{CONCAT}: expected array blocks, found {}", other.type_name()))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    stitch(blocks, &numblocks).map(Value::Array)
}

// ------------------------------------------------------------------- unary

/// numpy ufuncs of one argument.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub enum UnaryOp {
    Abs,
    Negative,
    Sqrt,
    Exp,
    Log,
    Sin,
    Cos,
    Floor,
    Ceil,
    /// `np.round(x, decimals)`: half to even, as numpy.
    Round(i32),
    IsNan,
    LogicalNot,
    /// Bounds follow NEP 50: float bounds make an integer array float64.
    Clip {
        low: Fill,
        high: Fill,
    },
}

impl UnaryOp {
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Abs => "absolute",
            UnaryOp::Negative => "negative",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Floor => "floor",
            UnaryOp::Ceil => "ceil",
            UnaryOp::Round(_) => "round",
            UnaryOp::IsNan => "isnan",
            UnaryOp::LogicalNot => "logical_not",
            UnaryOp::Clip { .. } => "clip",
        }
    }

    /// numpy's output dtype for an input dtype.
    pub fn output_dtype(self, input: DType) -> DType {
        match self {
            UnaryOp::Sqrt | UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sin | UnaryOp::Cos => {
                match input {
                    DType::F32 => DType::F32,
                    // Small ints compute in float32 in numpy (float16 for 8-bit,
                    // which rask does not have; float32 is the nearest).
                    DType::Bool | DType::I8 | DType::U8 | DType::I16 | DType::U16 => DType::F32,
                    _ => DType::F64,
                }
            }
            UnaryOp::IsNan | UnaryOp::LogicalNot => DType::Bool,
            UnaryOp::Clip { low, high } => {
                crate::dtype::promote_scalar(input, matches!(low, Fill::Float(_)) || matches!(high, Fill::Float(_)))
            }
            UnaryOp::Floor | UnaryOp::Ceil if !is_float(input) => input,
            _ => input,
        }
    }
}

fn fill_f64(f: Fill) -> f64 {
    match f {
        Fill::Int(i) => i as f64,
        Fill::Float(x) => x,
        Fill::Bool(b) => f64::from(u8::from(b)),
    }
}

fn round_half_even(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    let y = x * scale;
    let r = y.round();
    let r = if (y - y.trunc()).abs() == 0.5 { 2.0 * (y / 2.0).round() } else { r };
    r / scale
}

fn unary_float(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Abs => x.abs(),
        UnaryOp::Negative => -x,
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Round(d) => round_half_even(x, d),
        UnaryOp::Clip { low, high } => {
            if x.is_nan() {
                x
            } else {
                x.max(fill_f64(low)).min(fill_f64(high))
            }
        }
        UnaryOp::IsNan | UnaryOp::LogicalNot => x,
    }
}

fn unary(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let op: UnaryOp = params(p, UNARY)?;
    let a = one_array(args, UNARY)?;
    let out_dtype = op.output_dtype(a.dtype());
    let out = match op {
        UnaryOp::IsNan => ArrayValue::Bool(with_array!(&a, x => x.mapv(|v| v.to_f64().is_nan()).into_shared())),
        UnaryOp::LogicalNot => ArrayValue::Bool(with_array!(&a, x => x.mapv(|v| v.is_zero()).into_shared())),
        // Integer abs/negative wrap like numpy; integer clip stays integer.
        UnaryOp::Abs
        | UnaryOp::Negative
        | UnaryOp::Clip { .. }
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round(_)
            if !is_float(a.dtype()) && !is_float(out_dtype) =>
        {
            on_typed!(&a, x => x.mapv(|v| {
                let i = v.to_i64();
                let r = match op {
                    UnaryOp::Abs => i.wrapping_abs(),
                    UnaryOp::Negative => i.wrapping_neg(),
                    UnaryOp::Clip { low, high } => i.max(fill_f64(low) as i64).min(fill_f64(high) as i64),
                    UnaryOp::Round(d) if d < 0 => round_half_even(i as f64, d) as i64,
                    _ => i,
                };
                Scalar::from_i64(r)
            }).into_shared())
        }
        _ if out_dtype == DType::F32 => {
            let f = cast(&a, DType::F32);
            let ArrayValue::F32(x) = f else { return Err(OpError::new("cast to float32 failed")) };
            ArrayValue::F32(x.mapv(|v| unary_float(op, f64::from(v)) as f32).into_shared())
        }
        _ => {
            let f = cast(&a, DType::F64);
            let ArrayValue::F64(x) = f else { return Err(OpError::new("cast to float64 failed")) };
            cast(&ArrayValue::F64(x.mapv(|v| unary_float(op, v)).into_shared()), out_dtype)
        }
    };
    Ok(Value::Array(out))
}

/// `np.where(cond, a, b)` on blocks of one shape, in dtype `dtype`.
fn where_(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let dtype: DType = params(p, WHERE)?;
    let [Value::Array(ArrayValue::Bool(c)), Value::Array(a), Value::Array(b)] =
        <[Value; 3]>::try_from(args).map_err(|_| OpError::new(format!("{WHERE} takes a condition and two arrays")))?
    else {
        return Err(OpError::new(format!("{WHERE} takes a boolean condition and two arrays")));
    };
    let (a, b) = (cast(&a, dtype), cast(&b, dtype));
    macro_rules! pick {
        ($variant:ident) => {{
            let (ArrayValue::$variant(x), ArrayValue::$variant(y)) = (&a, &b) else {
                return Err(OpError::new("where: operands were not cast"));
            };
            let shape = broadcast_shape(c.shape(), x.shape())
                .and_then(|s| broadcast_shape(&s, y.shape()))
                .ok_or_else(|| OpError::new("where: shapes do not broadcast"))?;
            let (Some(cv), Some(xv), Some(yv)) =
                (c.broadcast(IxDyn(&shape)), x.broadcast(IxDyn(&shape)), y.broadcast(IxDyn(&shape)))
            else {
                return Err(OpError::new("where: broadcast failed"));
            };
            ArrayValue::$variant(
                Zip::from(&cv).and(&xv).and(&yv).map_collect(|&k, &u, &v| if k { u } else { v }).into_shared(),
            )
        }};
    }
    let out = match dtype {
        DType::Bool => pick!(Bool),
        DType::I8 => pick!(I8),
        DType::I16 => pick!(I16),
        DType::I32 => pick!(I32),
        DType::I64 => pick!(I64),
        DType::U8 => pick!(U8),
        DType::U16 => pick!(U16),
        DType::U32 => pick!(U32),
        DType::U64 => pick!(U64),
        DType::F32 => pick!(F32),
        DType::F64 => pick!(F64),
    };
    Ok(Value::Array(out))
}

// ------------------------------------------------------- slicing and layout

/// One axis of a block-local selection.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Sel {
    /// Elements `start, start + step, ...` while before `stop` (after it,
    /// for negative steps); `stop = None` runs to the end.
    Range { start: isize, stop: Option<isize>, step: isize },
    /// One element; the axis goes away.
    Index(usize),
    /// A new axis of length 1.
    NewAxis,
}

fn to_info(sel: &[Sel]) -> Vec<ndarray::SliceInfoElem> {
    sel.iter()
        .map(|s| match *s {
            Sel::Range { start, stop, step } => {
                if step > 0 {
                    ndarray::SliceInfoElem::Slice { start, end: stop, step }
                } else {
                    // ndarray slices [start, end) then reverses for negative
                    // steps; numpy walks down from `start`. Convert.
                    let hi = start + 1;
                    let lo = stop.map_or(0, |s| s + 1);
                    let n = (hi - lo).max(0);
                    let m = (n + (-step) - 1) / (-step);
                    let first = hi - 1 - (m - 1) * (-step);
                    if m == 0 {
                        ndarray::SliceInfoElem::Slice { start: 0, end: Some(0), step: 1 }
                    } else {
                        ndarray::SliceInfoElem::Slice { start: first, end: Some(hi), step }
                    }
                }
            }
            Sel::Index(i) => ndarray::SliceInfoElem::Index(i as isize),
            Sel::NewAxis => ndarray::SliceInfoElem::NewAxis,
        })
        .collect()
}

/// Applies a selection to a block, copying into standard layout.
pub fn slice_value(a: &ArrayValue, sel: &[Sel]) -> Result<ArrayValue, OpError> {
    let info = to_info(sel);
    let dims = sel.iter().filter(|s| !matches!(s, Sel::NewAxis)).count();
    if dims != a.shape().len() {
        return Err(OpError::new(format!("selection for {dims} axes applied to a block of shape {:?}", a.shape())));
    }
    Ok(on_typed!(a, x => x.slice(info.as_slice()).to_owned().into_shared()))
}

fn slice(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let sel: Vec<Sel> = params(p, SLICE)?;
    slice_value(&one_array(args, SLICE)?, &sel).map(Value::Array)
}

fn transpose(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let perm: Vec<usize> = params(p, TRANSPOSE)?;
    let a = one_array(args, TRANSPOSE)?;
    if perm.len() != a.shape().len() {
        return Err(OpError::new(format!("axes {perm:?} do not match a block of {} dimensions", a.shape().len())));
    }
    Ok(Value::Array(
        on_typed!(&a, x => x.clone().permuted_axes(perm.clone()).as_standard_layout().into_owned().into_shared()),
    ))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PiecesParams {
    /// The selection applied to each input block, in order.
    pub selections: Vec<Vec<Sel>>,
    /// How the selected pieces tile the output block.
    pub numblocks: Vec<usize>,
}

/// Slices each block of a list argument by its selection and joins the
/// pieces on a `numblocks` grid: the gather step of rechunk and overlap.
fn gather(op: &str, args: Vec<Value>, selections: &[Vec<Sel>], numblocks: &[usize]) -> Result<ArrayValue, OpError> {
    let items = match <[Value; 1]>::try_from(args) {
        Ok([Value::List(items)]) => items,
        _ => return Err(OpError::new(format!("{op} takes a list of blocks"))),
    };
    if items.len() != selections.len() {
        return Err(OpError::new(format!("{op}: {} blocks for {} selections", items.len(), selections.len())));
    }
    let parts = items
        .iter()
        .zip(selections)
        .map(|(v, sel)| match v {
            Value::Array(a) => slice_value(a, sel),
            other => Err(OpError::new(format!("{op}: expected arrays, found {}", other.type_name()))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    stitch(parts, numblocks)
}

/// A rechunked block: slices of several input blocks, joined.
fn pieces(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: PiecesParams = params(p, PIECES)?;
    gather(PIECES, args, &p.selections, &p.numblocks).map(Value::Array)
}

fn matmul_typed<T>(a: &[ArcArray<T, IxDyn>], b: &[ArcArray<T, IxDyn>]) -> Result<ArcArray<T, IxDyn>, OpError>
where
    T: BlockProduct,
{
    if a.first().is_some_and(|x| x.ndim() > 2) {
        return batched_matmul(a, b);
    }
    let mut acc: Option<ndarray::Array2<T>> = None;
    for (x, y) in a.iter().zip(b) {
        let x = x.view().into_dimensionality::<ndarray::Ix2>().map_err(|e| OpError::new(format!("dot: {e}")))?;
        let y = y.view().into_dimensionality::<ndarray::Ix2>().map_err(|e| OpError::new(format!("dot: {e}")))?;
        if x.ncols() != y.nrows() {
            return Err(OpError::new(format!("dot: shapes {:?} and {:?} are not aligned", x.shape(), y.shape())));
        }
        match acc.as_mut() {
            None => {
                let mut first = ndarray::Array2::zeros((x.nrows(), y.ncols()));
                T::mul_into(&mut first, &x, &y, true);
                acc = Some(first);
            }
            Some(sum) => T::mul_into(sum, &x, &y, false),
        }
    }
    acc.map(|m| m.into_dyn().into_shared()).ok_or_else(|| OpError::new("dot of no blocks"))
}

/// Stacks of matrices, numpy's `matmul`: blocks `(batch..., n, k)` and
/// `(batch..., k, m)` with the same number of axes, where a batch axis of
/// length 1 broadcasts; the products over the pairs are summed.
fn batched_matmul<T>(a: &[ArcArray<T, IxDyn>], b: &[ArcArray<T, IxDyn>]) -> Result<ArcArray<T, IxDyn>, OpError>
where
    T: ndarray::LinalgScalar,
{
    use ndarray::{Axis, Ix2};
    let (Some(x0), Some(y0)) = (a.first(), b.first()) else { return Err(OpError::new("matmul of no blocks")) };
    let nd = x0.ndim();
    let batch = |xs: &[usize], ys: &[usize]| -> Result<Vec<usize>, OpError> {
        xs.iter()
            .zip(ys)
            .map(|(&p, &q)| match (p, q) {
                _ if p == q => Ok(p),
                (1, q) => Ok(q),
                (p, 1) => Ok(p),
                _ => Err(OpError::new(format!("matmul: batch shapes {xs:?} and {ys:?} do not broadcast"))),
            })
            .collect()
    };
    if y0.ndim() != nd {
        return Err(OpError::new(format!("matmul: blocks of {nd} and {} axes", y0.ndim())));
    }
    let out_batch = batch(&x0.shape()[..nd - 2], &y0.shape()[..nd - 2])?;
    let (n, m) = (x0.shape()[nd - 2], y0.shape()[nd - 1]);
    let mut shape = out_batch.clone();
    shape.extend([n, m]);
    let mut out = ndarray::ArrayD::<T>::zeros(IxDyn(&shape));
    let count: usize = out_batch.iter().product();
    for (x, y) in a.iter().zip(b) {
        let (xs, ys) = (x.shape(), y.shape());
        if xs.len() != nd || ys.len() != nd || xs[nd - 1] != ys[nd - 2] || xs[nd - 2] != n || ys[nd - 1] != m {
            return Err(OpError::new(format!("matmul: blocks {xs:?} and {ys:?} are not aligned")));
        }
        if batch(&xs[..nd - 2], &ys[..nd - 2])? != out_batch {
            return Err(OpError::new(format!("matmul: blocks {xs:?} and {ys:?} do not match the output batch")));
        }
        for flat in 0..count {
            // The batch index, and its broadcast position in each operand.
            let mut rest = flat;
            let mut idx = vec![0usize; nd - 2];
            for d in (0..nd - 2).rev() {
                idx[d] = rest % out_batch[d];
                rest /= out_batch[d];
            }
            let (mut xv, mut yv, mut ov) = (x.view(), y.view(), out.view_mut());
            for (d, &i) in idx.iter().enumerate() {
                xv = xv.index_axis_move(Axis(0), if xs[d] == 1 { 0 } else { i });
                yv = yv.index_axis_move(Axis(0), if ys[d] == 1 { 0 } else { i });
                ov = ov.index_axis_move(Axis(0), i);
            }
            let err = |e: ndarray::ShapeError| OpError::new(format!("matmul: {e}"));
            let (xv, yv) =
                (xv.into_dimensionality::<Ix2>().map_err(err)?, yv.into_dimensionality::<Ix2>().map_err(err)?);
            let mut ov = ov.into_dimensionality::<Ix2>().map_err(err)?;
            ndarray::linalg::general_mat_mul(T::one(), &xv, &yv, T::one(), &mut ov);
        }
    }
    Ok(out.into_shared())
}

fn matmul(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let dtype: DType = params(p, MATMUL)?;
    let [Value::List(a), Value::List(b)] =
        <[Value; 2]>::try_from(args).map_err(|_| OpError::new(format!("{MATMUL} takes two lists of blocks")))?
    else {
        return Err(OpError::new(format!("{MATMUL} takes two lists of blocks")));
    };
    let arrays = |l: &[Value]| -> Result<Vec<ArrayValue>, OpError> {
        l.iter()
            .map(|v| match v {
                Value::Array(x) => Ok(cast(x, dtype)),
                _ => Err(OpError::new("dot: blocks must be arrays")),
            })
            .collect()
    };
    let (a, b) = (arrays(&a)?, arrays(&b)?);
    macro_rules! typed {
        ($variant:ident) => {{
            let xs: Vec<_> =
                a.iter().filter_map(|v| if let ArrayValue::$variant(x) = v { Some(x.clone()) } else { None }).collect();
            let ys: Vec<_> =
                b.iter().filter_map(|v| if let ArrayValue::$variant(x) = v { Some(x.clone()) } else { None }).collect();
            ArrayValue::$variant(matmul_typed(&xs, &ys)?)
        }};
    }
    let out = match dtype {
        DType::F64 => typed!(F64),
        DType::F32 => typed!(F32),
        DType::I64 => typed!(I64),
        DType::I32 => typed!(I32),
        DType::U64 => typed!(U64),
        other => return Err(OpError::new(format!("dot is not supported for {other}; cast to int64 or float64"))),
    };
    Ok(Value::Array(out))
}

/// Whether a dtype is a float; re-exported for the array API.
pub fn float_dtype(d: DType) -> bool {
    is_float(d)
}

fn reshape(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let shape: Vec<usize> = params(p, RESHAPE)?;
    let a = one_array(args, RESHAPE)?;
    if shape.iter().product::<usize>() != a.len() {
        return Err(OpError::new(format!("cannot reshape a block of {} elements into {shape:?}", a.len())));
    }
    Ok(Value::Array(on_typed!(&a, x => x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| OpError::new(format!("reshape: {e}")))?
        .into_shared())))
}

pub const NPY_READ: &str = "array.npy_read";
pub const OVERLAP: &str = "array.overlap";
pub const TAKE: &str = "array.take";
pub const ZARR_READ: &str = "array.zarr_read";
pub const ZARR_WRITE: &str = "array.zarr_write";

/// An array of `shape` filled with `value` (for absent Zarr chunks).
pub fn filled_value(shape: &[usize], dtype: DType, value: f64) -> ArrayValue {
    by_dtype!(dtype, filled(shape, Fill::Float(value)))
}

/// Pads an array at the end of each axis with a constant.
pub fn pad_value(a: &ArrayValue, pad: &[(usize, usize)], value: f64) -> ArrayValue {
    on_typed!(a, x => pad_constant(x, pad, Scalar::from_f64(value)))
}
pub const BINCOUNT: &str = "array.bincount";
pub const BINCOUNT_SUM: &str = "array.bincount_sum";
pub const UNIQUE: &str = "array.unique";

/// `x.take(indices, axis)` on one block (indices are local to it).
fn take(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let (axis, indices): (usize, Vec<usize>) = params(p, TAKE)?;
    let a = one_array(args, TAKE)?;
    if axis >= a.shape().len() || indices.iter().any(|&i| i >= a.shape()[axis]) {
        return Err(OpError::new(format!("take: index out of range for a block of shape {:?}", a.shape())));
    }
    Ok(Value::Array(on_typed!(&a, x => x.select(Axis(axis), &indices).into_shared())))
}

/// Per-block `np.bincount` of non-negative integers.
fn bincount(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let minlength: usize = params(p, BINCOUNT)?;
    let a = one_array(args, BINCOUNT)?;
    if crate::dtype::is_float(a.dtype()) {
        return Err(OpError::new(format!("bincount needs integers, got {}", a.dtype())));
    }
    let values: Vec<i64> = with_array!(&a, x => x.iter().map(|v| v.to_i64()).collect());
    if let Some(neg) = values.iter().find(|v| **v < 0) {
        return Err(OpError::new(format!("bincount: input contains the negative value {neg}")));
    }
    let len = values.iter().max().map_or(0, |m| *m as usize + 1).max(minlength);
    let mut counts = vec![0i64; len];
    for v in values {
        counts[v as usize] += 1;
    }
    Ok(Value::Array(ArrayValue::I64(
        ArrayD::from_shape_vec(IxDyn(&[len]), counts).unwrap_or_else(|_| ArrayD::default(IxDyn(&[0]))).into_shared(),
    )))
}

/// Adds bincount partials of different lengths.
fn bincount_sum(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let items = match <[Value; 1]>::try_from(args) {
        Ok([Value::List(items)]) => items,
        _ => return Err(OpError::new(format!("{BINCOUNT_SUM} takes a list"))),
    };
    let mut total: Vec<i64> = Vec::new();
    for item in items.iter() {
        let Value::Array(ArrayValue::I64(c)) = item else { return Err(OpError::new("bincount partial is not int64")) };
        if c.len() > total.len() {
            total.resize(c.len(), 0);
        }
        for (t, v) in total.iter_mut().zip(c.iter()) {
            *t += v;
        }
    }
    let n = total.len();
    Ok(Value::Array(ArrayValue::I64(
        ArrayD::from_shape_vec(IxDyn(&[n]), total).unwrap_or_else(|_| ArrayD::default(IxDyn(&[0]))).into_shared(),
    )))
}

fn sorted_unique<T: Scalar>(mut v: Vec<T>) -> Vec<T> {
    // Total order with NaN last; NaNs collapse to one, as numpy >= 1.21.
    v.sort_by(|a, b| {
        let (x, y) = (a.to_f64(), b.to_f64());
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
        }
    });
    v.dedup_by(|a, b| a == b || (a.to_f64().is_nan() && b.to_f64().is_nan()));
    v
}

/// Sorted unique values of a block, or of a list of partials.
fn unique(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let parts: Vec<ArrayValue> = match <[Value; 1]>::try_from(args) {
        Ok([Value::Array(a)]) => vec![a],
        Ok([Value::List(items)]) => items
            .iter()
            .map(|v| match v {
                Value::Array(a) => Ok(a.clone()),
                _ => Err(OpError::new("unique partials must be arrays")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(OpError::new(format!("{UNIQUE} takes an array or a list"))),
    };
    let first = parts.first().ok_or_else(|| OpError::new("unique of nothing"))?;
    macro_rules! go {
        ($($variant:ident),*) => {
            match first {
                $(ArrayValue::$variant(_) => {
                    let mut all = Vec::new();
                    for p in &parts {
                        let ArrayValue::$variant(x) = p else { return Err(OpError::new("unique partials of different dtypes")) };
                        all.extend(x.iter().copied());
                    }
                    let u = sorted_unique(all);
                    let n = u.len();
                    ArrayValue::$variant(ArrayD::from_shape_vec(IxDyn(&[n]), u).unwrap_or_else(|_| ArrayD::default(IxDyn(&[0]))).into_shared())
                })*
            }
        };
    }
    Ok(Value::Array(go!(Bool, I8, I16, I32, I64, U8, U16, U32, U64, F32, F64)))
}

pub const MAP_BLOCKS: &str = "array.map_blocks";

// ------------------------------------------------------ map_blocks / overlap

/// How `map_overlap` fills the halo beyond the array's edges.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub enum Boundary {
    /// Mirror including the edge element (numpy's `symmetric`, Dask's `reflect`).
    Reflect,
    /// Repeat the edge element.
    Nearest,
    /// Wrap around to the other end of the array.
    Periodic,
    /// A constant value.
    Constant(f64),
    /// No halo at the array's edges.
    None,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OverlapParams {
    /// Selections of the gathered input blocks, in C order of `numblocks`.
    pub selections: Vec<Vec<Sel>>,
    pub numblocks: Vec<usize>,
    /// Constant padding (before, after) per axis, for `Boundary::Constant`.
    pub pad: Vec<(usize, usize)>,
    pub constant: f64,
    /// The registered op applied to the extended block, and its parameters.
    pub op: String,
    pub op_params: Vec<u8>,
    /// Elements trimmed from each side of the op's result, per axis.
    pub trim: Vec<(usize, usize)>,
    /// The op takes `trim` as a second argument and trims its result itself.
    pub op_trims: bool,
}

fn pad_constant<T: Scalar>(x: &ArcArray<T, IxDyn>, pad: &[(usize, usize)], c: T) -> ArcArray<T, IxDyn> {
    let shape: Vec<usize> = x.shape().iter().zip(pad).map(|(&n, &(b, a))| n + b + a).collect();
    let mut out = ArrayD::from_elem(IxDyn(&shape), c);
    let info: Vec<ndarray::SliceInfoElem> = x
        .shape()
        .iter()
        .zip(pad)
        .map(|(&n, &(b, _))| ndarray::SliceInfoElem::Slice { start: b as isize, end: Some((b + n) as isize), step: 1 })
        .collect();
    out.slice_mut(info.as_slice()).assign(x);
    out.into_shared()
}

/// Gathers a block with its halo, applies the op, trims the halo.
fn overlap(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: OverlapParams = params(p, OVERLAP)?;
    let mut extended = gather(OVERLAP, args, &p.selections, &p.numblocks)?;
    if p.pad.iter().any(|&(b, a)| b + a > 0) {
        let c = p.constant;
        extended = on_typed!(&extended, x => pad_constant(x, &p.pad, Scalar::from_f64(c)));
    }
    let f = rask_core::OpRegistry::global()
        .get(&p.op)
        .ok_or_else(|| OpError::new(format!("map_overlap: op {:?} is not registered in this binary", p.op)))?;
    let extended_shape = extended.shape().to_vec();
    let mut args = vec![Value::Array(extended)];
    if p.op_trims {
        let pairs: Vec<Value> = p
            .trim
            .iter()
            .map(|&(b, a)| Value::List(std::sync::Arc::from([Value::Int(b as i64), Value::Int(a as i64)])))
            .collect();
        args.push(Value::List(std::sync::Arc::from(pairs)));
    }
    let result = match f(&Params(p.op_params.clone().into()), args)? {
        Value::Array(a) => a,
        other => {
            return Err(OpError::new(format!("map_overlap: {} returned {}, not an array", p.op, other.type_name())));
        }
    };
    if result.shape().len() != p.trim.len() {
        return Err(OpError::new(format!("map_overlap: {} changed the number of dimensions", p.op)));
    }
    if p.op_trims {
        // The op left the halo out itself: check it did.
        let expected: Vec<usize> =
            extended_shape.iter().zip(&p.trim).map(|(&n, &(b, a))| n.saturating_sub(b + a)).collect();
        if result.shape() != expected.as_slice() {
            return Err(OpError::new(format!(
                "map_overlap: {} returned shape {:?}, expected the trimmed {:?}",
                p.op,
                result.shape(),
                expected
            )));
        }
        return Ok(Value::Array(result));
    }
    let sel: Vec<Sel> = result
        .shape()
        .iter()
        .zip(&p.trim)
        .map(|(&n, &(b, a))| Sel::Range { start: b as isize, stop: Some(n.saturating_sub(a) as isize), step: 1 })
        .collect();
    slice_value(&result, &sel).map(Value::Array)
}

/// `map_blocks`: a registered op applied to each block.
fn map_blocks(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let (op, op_params): (String, Vec<u8>) = params(p, MAP_BLOCKS)?;
    let f = rask_core::OpRegistry::global()
        .get(&op)
        .ok_or_else(|| OpError::new(format!("map_blocks: op {op:?} is not registered in this binary")))?;
    f(&Params(op_params.into()), args)
}

rask_core::inventory::submit! { OpEntry { name: FULL, func: full } }
rask_core::inventory::submit! { OpEntry { name: NPY_READ, func: crate::npy::read_block } }
rask_core::inventory::submit! { OpEntry { name: OVERLAP, func: overlap } }
rask_core::inventory::submit! { OpEntry { name: TAKE, func: take } }
rask_core::inventory::submit! { OpEntry { name: ZARR_READ, func: crate::zarr::read_chunk } }
rask_core::inventory::submit! { OpEntry { name: ZARR_WRITE, func: crate::zarr::write_chunk } }
rask_core::inventory::submit! { OpEntry { name: BINCOUNT, func: bincount } }
rask_core::inventory::submit! { OpEntry { name: BINCOUNT_SUM, func: bincount_sum } }
rask_core::inventory::submit! { OpEntry { name: UNIQUE, func: unique } }
rask_core::inventory::submit! { OpEntry { name: MAP_BLOCKS, func: map_blocks } }
rask_core::inventory::submit! { OpEntry { name: ARANGE, func: arange } }
rask_core::inventory::submit! { OpEntry { name: RANDOM, func: random_block } }
rask_core::inventory::submit! { OpEntry { name: BINARY, func: binary } }
rask_core::inventory::submit! { OpEntry { name: REDUCE, func: reduce } }
rask_core::inventory::submit! { OpEntry { name: ASTYPE, func: astype } }
rask_core::inventory::submit! { OpEntry { name: MASK, func: mask_select } }
rask_core::inventory::submit! { OpEntry { name: HISTOGRAM, func: histogram } }
rask_core::inventory::submit! { OpEntry { name: LEN, func: block_len } }
rask_core::inventory::submit! { OpEntry { name: CONCAT, func: concat } }
rask_core::inventory::submit! { OpEntry { name: SLICE, func: slice } }
rask_core::inventory::submit! { OpEntry { name: TRANSPOSE, func: transpose } }
rask_core::inventory::submit! { OpEntry { name: PIECES, func: pieces } }
rask_core::inventory::submit! { OpEntry { name: MATMUL, func: matmul } }
rask_core::inventory::submit! { OpEntry { name: UNARY, func: unary } }
rask_core::inventory::submit! { OpEntry { name: WHERE, func: where_ } }
rask_core::inventory::submit! { OpEntry { name: EYE, func: eye } }
rask_core::inventory::submit! { OpEntry { name: RESHAPE, func: reshape } }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shape(&[5, 1, 3], &[4, 1]), Some(vec![5, 4, 3]));
        assert_eq!(broadcast_shape(&[], &[2, 2]), Some(vec![2, 2]));
        assert_eq!(broadcast_shape(&[3], &[4]), None);
    }

    #[test]
    fn random_blocks_do_not_depend_on_chunking() {
        let whole = RandomParams {
            distribution: Distribution::RandInt { low: 0, high: 100 },
            seed: 3,
            global_shape: vec![4, 6],
            offset: vec![0, 0],
            block: vec![4, 6],
        };
        let all = fill_block(&whole, |i| random::randint(3, i, 0, 100));
        let part = RandomParams { offset: vec![1, 2], block: vec![2, 3], ..whole };
        let sub = fill_block(&part, |i| random::randint(3, i, 0, 100));
        assert_eq!(sub, all.slice(ndarray::s![1..3, 2..5]).into_dyn());
    }
}

// ------------------------------------------------------------- cumulative

pub const CUMULATE: &str = "array.cumulate";
pub const DIFF: &str = "array.diff";

/// `cumsum` or `cumprod`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Cumulative {
    Sum,
    Prod,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CumulateParams {
    pub op: Cumulative,
    pub axis: usize,
    pub dtype: DType,
}

/// Runs the sum or product along `axis` element after element, starting
/// from `carry` (the previous block's last slice) when there is one: the
/// additions happen in numpy's order, so results equal numpy's bit for bit
/// whatever the chunking.
fn cumulate_typed<T: Arith + Scalar>(
    op: Cumulative,
    axis: usize,
    x: &ArcArray<T, IxDyn>,
    carry: Option<&ArcArray<T, IxDyn>>,
) -> Result<ArcArray<T, IxDyn>, OpError> {
    let step = |acc: T, v: T| if op == Cumulative::Sum { acc.add(v) } else { acc.mul(v) };
    let mut out = x.to_owned();
    let len = out.shape().get(axis).copied().ok_or_else(|| OpError::new(format!("{CUMULATE}: no axis {axis}")))?;
    if len == 0 {
        return Ok(out.into_shared());
    }
    let carry_slice = match carry {
        Some(c) => {
            let last = c.shape().get(axis).copied().unwrap_or(0);
            if last == 0 { None } else { Some(c.index_axis(Axis(axis), last - 1).to_owned()) }
        }
        None => None,
    };
    let mut first = out.index_axis(Axis(axis), 0).to_owned();
    if let Some(c) = &carry_slice {
        if c.shape() != first.shape() {
            return Err(OpError::new(format!("{CUMULATE}: carry of shape {:?}, lanes {:?}", c.shape(), first.shape())));
        }
        Zip::from(&mut first).and(c).for_each(|f, &c| *f = step(c, *f));
    }
    out.index_axis_mut(Axis(axis), 0).assign(&first);
    for i in 1..len {
        let (before, mut rest) = out.view_mut().split_at(Axis(axis), i);
        let prev = before.index_axis(Axis(axis), i - 1);
        let mut cur = rest.index_axis_mut(Axis(axis), 0);
        Zip::from(&mut cur).and(&prev).for_each(|v, &p| *v = step(p, *v));
    }
    Ok(out.into_shared())
}

fn cumulate(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: CumulateParams = params(p, CUMULATE)?;
    let mut arrays = args.into_iter().map(|v| match v {
        Value::Array(a) => Ok(cast(&a, p.dtype)),
        _ => Err(OpError::new(format!("{CUMULATE} takes arrays"))),
    });
    let x = arrays.next().ok_or_else(|| OpError::new(format!("{CUMULATE} takes a block")))??;
    let carry = arrays.next().transpose()?;
    macro_rules! go {
        ($($v:ident),*) => {
            match (&x, carry.as_ref()) {
                $((ArrayValue::$v(a), None) => ArrayValue::$v(cumulate_typed(p.op, p.axis, a, None)?),
                (ArrayValue::$v(a), Some(ArrayValue::$v(c))) => ArrayValue::$v(cumulate_typed(p.op, p.axis, a, Some(c))?),)*
                _ => return Err(OpError::new(format!("{CUMULATE}: block and carry of different dtypes"))),
            }
        };
    }
    Ok(Value::Array(go!(I8, I16, I32, I64, U8, U16, U32, U64, F32, F64)))
}

/// `np.diff(x, n=1, axis)` on one block, given the next block along the
/// axis (whose first slice is the last difference's right operand).
fn diff_typed<T: Arith + Scalar>(
    axis: usize,
    x: &ArcArray<T, IxDyn>,
    next: Option<&ArcArray<T, IxDyn>>,
) -> Result<ArcArray<T, IxDyn>, OpError> {
    let len = x.shape().get(axis).copied().ok_or_else(|| OpError::new(format!("{DIFF}: no axis {axis}")))?;
    let mut joined = x.to_owned();
    if let Some(n) = next.filter(|n| n.shape().get(axis).is_some_and(|&l| l > 0)) {
        joined = ndarray::concatenate(Axis(axis), &[x.view(), n.slice_axis(Axis(axis), ndarray::Slice::from(0..1))])
            .map_err(|e| OpError::new(format!("{DIFF}: {e}")))?;
    }
    let total = joined.shape()[axis];
    let out_len = total.saturating_sub(1).min(if next.is_some() { len } else { len.saturating_sub(1) });
    let hi = joined.slice_axis(Axis(axis), ndarray::Slice::from(1..1 + out_len));
    let lo = joined.slice_axis(Axis(axis), ndarray::Slice::from(0..out_len));
    Ok(Zip::from(&hi).and(&lo).map_collect(|&h, &l| h.sub(l)).into_shared())
}

fn diff(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let axis: usize = params(p, DIFF)?;
    let mut arrays = args.into_iter().map(|v| match v {
        Value::Array(a) => Ok(a),
        _ => Err(OpError::new(format!("{DIFF} takes arrays"))),
    });
    let x = arrays.next().ok_or_else(|| OpError::new(format!("{DIFF} takes a block")))??;
    let next = arrays.next().transpose()?;
    macro_rules! go {
        ($($v:ident),*) => {
            match (&x, next.as_ref()) {
                $((ArrayValue::$v(a), None) => ArrayValue::$v(diff_typed(axis, a, None)?),
                (ArrayValue::$v(a), Some(ArrayValue::$v(n))) => ArrayValue::$v(diff_typed(axis, a, Some(n))?),)*
                _ => return Err(OpError::new(format!("{DIFF}: neighbouring blocks of different dtypes"))),
            }
        };
    }
    Ok(Value::Array(go!(Bool, I8, I16, I32, I64, U8, U16, U32, U64, F32, F64)))
}

rask_core::inventory::submit! { OpEntry { name: CUMULATE, func: cumulate } }
rask_core::inventory::submit! { OpEntry { name: DIFF, func: diff } }
