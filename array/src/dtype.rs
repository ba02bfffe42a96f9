//! numpy's type rules over rask's dtype set: promotion, casts, and the
//! result types of reductions.

use ndarray::{ArcArray, IxDyn};
use rask_core::{ArrayValue, DType, Element, with_array};

/// Numeric element types with numpy's conversions (`astype` semantics:
/// floats truncate toward zero into ints, ints wrap).
pub trait Scalar: Element + Copy + PartialOrd + Default {
    fn to_f64(self) -> f64;
    fn to_i64(self) -> i64;
    fn to_u64(self) -> u64;
    fn from_f64(x: f64) -> Self;
    fn from_i64(x: i64) -> Self;
    fn from_u64(x: u64) -> Self;
    fn is_zero(self) -> bool;
}

macro_rules! scalar_int {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn to_f64(self) -> f64 { self as f64 }
            fn to_i64(self) -> i64 { self as i64 }
            fn to_u64(self) -> u64 { self as u64 }
            fn from_f64(x: f64) -> Self { x as i64 as $t }
            fn from_i64(x: i64) -> Self { x as $t }
            fn from_u64(x: u64) -> Self { x as $t }
            fn is_zero(self) -> bool { self == 0 }
        }
    )*};
}
scalar_int!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! scalar_float {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn to_f64(self) -> f64 { self as f64 }
            fn to_i64(self) -> i64 { self as i64 }
            fn to_u64(self) -> u64 { self as u64 }
            fn from_f64(x: f64) -> Self { x as $t }
            fn from_i64(x: i64) -> Self { x as $t }
            fn from_u64(x: u64) -> Self { x as $t }
            fn is_zero(self) -> bool { self == 0.0 }
        }
    )*};
}
scalar_float!(f32, f64);

impl Scalar for bool {
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn to_i64(self) -> i64 {
        i64::from(self)
    }
    fn to_u64(self) -> u64 {
        u64::from(self)
    }
    fn from_f64(x: f64) -> Self {
        x != 0.0
    }
    fn from_i64(x: i64) -> Self {
        x != 0
    }
    fn from_u64(x: u64) -> Self {
        x != 0
    }
    fn is_zero(self) -> bool {
        !self
    }
}

pub fn is_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64)
}

pub fn is_signed(d: DType) -> bool {
    matches!(d, DType::I8 | DType::I16 | DType::I32 | DType::I64)
}

pub fn is_unsigned(d: DType) -> bool {
    matches!(d, DType::U8 | DType::U16 | DType::U32 | DType::U64)
}

fn signed_of_size(bytes: usize) -> DType {
    match bytes {
        1 => DType::I8,
        2 => DType::I16,
        4 => DType::I32,
        _ => DType::I64,
    }
}

/// `np.result_type` of two array dtypes.
pub fn promote(a: DType, b: DType) -> DType {
    use DType::*;
    if a == b {
        return a;
    }
    match (a, b) {
        (Bool, x) | (x, Bool) => x,
        (F64, _) | (_, F64) => F64,
        (F32, x) | (x, F32) => {
            if x.itemsize() <= 2 {
                F32
            } else {
                F64
            }
        }
        _ if is_signed(a) == is_signed(b) => {
            if a.itemsize() >= b.itemsize() {
                a
            } else {
                b
            }
        }
        _ => {
            let (s, u) = if is_signed(a) { (a, b) } else { (b, a) };
            if s.itemsize() > u.itemsize() {
                s
            } else if u.itemsize() < 8 {
                signed_of_size(u.itemsize() * 2)
            } else {
                F64
            }
        }
    }
}

/// Whether `value` is stored in `dtype` without change (no rounding,
/// truncation or wrapping), so an array full of it equals the scalar.
pub fn holds_exactly(dtype: DType, value: crate::kernels::Fill) -> bool {
    use crate::kernels::Fill;
    use DType::*;
    match (value, dtype) {
        (Fill::Bool(_), Bool) => true,
        (Fill::Bool(_), _) | (_, Bool) => false,
        (Fill::Float(_), F64) => true,
        (Fill::Float(f), F32) => f.is_nan() || f64::from(f as f32) == f,
        (Fill::Float(_), _) => false,
        (Fill::Int(v), F64) => v.unsigned_abs() <= 1 << 53,
        (Fill::Int(v), F32) => v.unsigned_abs() <= 1 << 24,
        (Fill::Int(v), I8) => i8::try_from(v).is_ok(),
        (Fill::Int(v), I16) => i16::try_from(v).is_ok(),
        (Fill::Int(v), I32) => i32::try_from(v).is_ok(),
        (Fill::Int(_), I64) => true,
        (Fill::Int(v), U8) => u8::try_from(v).is_ok(),
        (Fill::Int(v), U16) => u16::try_from(v).is_ok(),
        (Fill::Int(v), U32) => u32::try_from(v).is_ok(),
        (Fill::Int(v), U64) => v >= 0,
    }
}

/// NEP 50: a Python int keeps the array's dtype; a Python float makes an
/// integer array float64 and keeps a float array's precision.
pub fn promote_scalar(array: DType, scalar_is_float: bool) -> DType {
    if scalar_is_float && !is_float(array) {
        DType::F64
    } else if array == DType::Bool && !scalar_is_float {
        DType::I64
    } else {
        array
    }
}

/// The dtype `sum`/`prod` return: small ints widen to 64 bits.
pub fn sum_dtype(d: DType) -> DType {
    match d {
        DType::Bool | DType::I8 | DType::I16 | DType::I32 | DType::I64 => DType::I64,
        DType::U8 | DType::U16 | DType::U32 | DType::U64 => DType::U64,
        f => f,
    }
}

/// The dtype `mean` returns.
pub fn mean_dtype(d: DType) -> DType {
    if d == DType::F32 { DType::F32 } else { DType::F64 }
}

fn convert<S: Scalar, T: Scalar>(a: &ArcArray<S, IxDyn>, to: DType) -> ArcArray<T, IxDyn> {
    if is_float(to) {
        a.mapv(|x| T::from_f64(x.to_f64())).into_shared()
    } else if is_unsigned(to) {
        a.mapv(|x| {
            if S::DTYPE == DType::F32 || S::DTYPE == DType::F64 {
                T::from_i64(x.to_i64())
            } else {
                T::from_u64(x.to_u64())
            }
        })
        .into_shared()
    } else if to == DType::Bool {
        a.mapv(|x| T::from_u64(u64::from(!x.is_zero()))).into_shared()
    } else {
        a.mapv(|x| T::from_i64(x.to_i64())).into_shared()
    }
}

fn cast_to<T: Scalar>(a: &ArrayValue) -> ArcArray<T, IxDyn> {
    with_array!(a, x => convert::<_, T>(x, T::DTYPE))
}

/// `astype`: a copy in the new dtype (no copy when it already is).
pub fn cast(a: &ArrayValue, to: DType) -> ArrayValue {
    if a.dtype() == to {
        return a.clone();
    }
    match to {
        DType::Bool => ArrayValue::Bool(cast_to(a)),
        DType::I8 => ArrayValue::I8(cast_to(a)),
        DType::I16 => ArrayValue::I16(cast_to(a)),
        DType::I32 => ArrayValue::I32(cast_to(a)),
        DType::I64 => ArrayValue::I64(cast_to(a)),
        DType::U8 => ArrayValue::U8(cast_to(a)),
        DType::U16 => ArrayValue::U16(cast_to(a)),
        DType::U32 => ArrayValue::U32(cast_to(a)),
        DType::U64 => ArrayValue::U64(cast_to(a)),
        DType::F32 => ArrayValue::F32(cast_to(a)),
        DType::F64 => ArrayValue::F64(cast_to(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DType::*;

    #[test]
    fn promotion_matches_numpy() {
        // Values from np.result_type.
        let cases = [
            (Bool, I8, I8),
            (I8, U8, I16),
            (I16, U16, I32),
            (I32, U32, I64),
            (I64, U64, F64),
            (U8, I32, I32),
            (I16, F32, F32),
            (I32, F32, F64),
            (U64, F32, F64),
            (F32, F64, F64),
            (U8, U16, U16),
            (I64, I8, I64),
        ];
        for (a, b, want) in cases {
            assert_eq!(promote(a, b), want, "{a} + {b}");
            assert_eq!(promote(b, a), want, "{b} + {a}");
        }
        assert_eq!(promote_scalar(I32, false), I32);
        assert_eq!(promote_scalar(I32, true), F64);
        assert_eq!(promote_scalar(F32, true), F32);
    }

    #[test]
    fn casts_follow_astype() {
        let a = ArrayValue::F64(ndarray::arr1(&[-1.7, 2.9, 0.0]).into_dyn().into_shared());
        assert_eq!(cast(&a, I32), ArrayValue::I32(ndarray::arr1(&[-1, 2, 0]).into_dyn().into_shared()));
        assert_eq!(cast(&a, Bool), ArrayValue::Bool(ndarray::arr1(&[true, true, false]).into_dyn().into_shared()));
        let b = ArrayValue::I16(ndarray::arr1(&[300i16, -1]).into_dyn().into_shared());
        assert_eq!(cast(&b, U8), ArrayValue::U8(ndarray::arr1(&[44u8, 255]).into_dyn().into_shared()));
    }
}
