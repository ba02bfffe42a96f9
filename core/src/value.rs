//! The values tasks produce and consume.
//!
//! A [`Value`] is cheap to clone: every heavy variant is reference counted,
//! so handing an input to several tasks, or to a peer in the same process,
//! never copies data. Each value knows its size in bytes ([`Value::nbytes`]),
//! which drives memory accounting, spilling and placement.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use ndarray::{ArcArray, ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::OpError;

/// Element types of arrays: the closed set numpy users meet most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
}

impl DType {
    /// Every dtype, in numpy's kind order.
    pub const ALL: [DType; 11] = [
        DType::Bool,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::F32,
        DType::F64,
    ];

    /// The dtype named like numpy names it (`"int64"`, `"float32"`, ...).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn itemsize(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// numpy's name for the type, used in summaries and error messages.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An n-dimensional array chunk of one of the supported dtypes. It
/// serializes as dtype, shape and raw little-endian bytes (`array_wire`).
#[derive(Clone, PartialEq)]
pub enum ArrayValue {
    Bool(ArcArray<bool, IxDyn>),
    I8(ArcArray<i8, IxDyn>),
    I16(ArcArray<i16, IxDyn>),
    I32(ArcArray<i32, IxDyn>),
    I64(ArcArray<i64, IxDyn>),
    U8(ArcArray<u8, IxDyn>),
    U16(ArcArray<u16, IxDyn>),
    U32(ArcArray<u32, IxDyn>),
    U64(ArcArray<u64, IxDyn>),
    F32(ArcArray<f32, IxDyn>),
    F64(ArcArray<f64, IxDyn>),
}

/// Runs `$body` with `$a` bound to the typed array inside an [`ArrayValue`].
#[macro_export]
macro_rules! with_array {
    ($value:expr, $a:ident => $body:expr) => {
        match $value {
            $crate::ArrayValue::Bool($a) => $body,
            $crate::ArrayValue::I8($a) => $body,
            $crate::ArrayValue::I16($a) => $body,
            $crate::ArrayValue::I32($a) => $body,
            $crate::ArrayValue::I64($a) => $body,
            $crate::ArrayValue::U8($a) => $body,
            $crate::ArrayValue::U16($a) => $body,
            $crate::ArrayValue::U32($a) => $body,
            $crate::ArrayValue::U64($a) => $body,
            $crate::ArrayValue::F32($a) => $body,
            $crate::ArrayValue::F64($a) => $body,
        }
    };
}

impl ArrayValue {
    pub fn dtype(&self) -> DType {
        match self {
            ArrayValue::Bool(_) => DType::Bool,
            ArrayValue::I8(_) => DType::I8,
            ArrayValue::I16(_) => DType::I16,
            ArrayValue::I32(_) => DType::I32,
            ArrayValue::I64(_) => DType::I64,
            ArrayValue::U8(_) => DType::U8,
            ArrayValue::U16(_) => DType::U16,
            ArrayValue::U32(_) => DType::U32,
            ArrayValue::U64(_) => DType::U64,
            ArrayValue::F32(_) => DType::F32,
            ArrayValue::F64(_) => DType::F64,
        }
    }

    pub fn shape(&self) -> &[usize] {
        with_array!(self, a => a.shape())
    }

    pub fn len(&self) -> usize {
        with_array!(self, a => a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn nbytes(&self) -> usize {
        self.len() * self.dtype().itemsize()
    }
}

impl fmt::Debug for ArrayValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "array<{}{:?}>", self.dtype(), self.shape())
    }
}

/// A task's result.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Value {
    #[default]
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    Bytes(Bytes),
    List(Arc<[Value]>),
    Array(ArrayValue),
    /// A partition of a dataframe: an Arrow record batch.
    Table(crate::TableValue),
}

/// Fixed per-value overhead counted in [`Value::nbytes`], so that a million
/// tiny values are not accounted as free.
const VALUE_OVERHEAD: usize = std::mem::size_of::<Value>();

impl Value {
    /// Size in bytes, counting the payload and a small fixed overhead.
    pub fn nbytes(&self) -> usize {
        VALUE_OVERHEAD
            + match self {
                Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) => 0,
                Value::Str(s) => s.len(),
                Value::Bytes(b) => b.len(),
                Value::List(items) => items.iter().map(Value::nbytes).sum(),
                Value::Array(a) => a.nbytes(),
                Value::Table(t) => t.nbytes(),
            }
    }

    /// A short name of the variant, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "none",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Array(_) => "array",
            Value::Table(_) => "table",
        }
    }

    pub fn list(items: impl IntoIterator<Item = Value>) -> Value {
        Value::List(items.into_iter().collect())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "bytes[{}]", b.len()),
            Value::List(items) => f.debug_list().entries(items.iter()).finish(),
            Value::Array(a) => write!(f, "{a:?}"),
            Value::Table(t) => write!(f, "{t:?}"),
        }
    }
}

fn mismatch(expected: &str, found: &Value) -> OpError {
    OpError::new(format!("expected {expected}, found {}", found.type_name()))
}

/// Converts a Rust value into a [`Value`]; implemented for the types ops take
/// and return.
pub trait IntoValue {
    fn into_value(self) -> Value;
}

/// Converts a [`Value`] back into a Rust type, failing with a message that says
/// what was expected and what was found.
pub trait FromValue: Sized {
    fn from_value(value: Value) -> Result<Self, OpError>;
}

impl IntoValue for Value {
    fn into_value(self) -> Value {
        self
    }
}

impl FromValue for Value {
    fn from_value(value: Value) -> Result<Self, OpError> {
        Ok(value)
    }
}

impl IntoValue for () {
    fn into_value(self) -> Value {
        Value::None
    }
}

impl FromValue for () {
    fn from_value(value: Value) -> Result<Self, OpError> {
        match value {
            Value::None => Ok(()),
            other => Err(mismatch("none", &other)),
        }
    }
}

impl IntoValue for bool {
    fn into_value(self) -> Value {
        Value::Bool(self)
    }
}

impl FromValue for bool {
    fn from_value(value: Value) -> Result<Self, OpError> {
        match value {
            Value::Bool(b) => Ok(b),
            other => Err(mismatch("bool", &other)),
        }
    }
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl IntoValue for $t {
            fn into_value(self) -> Value {
                Value::Int(self as i64)
            }
        }
        impl FromValue for $t {
            fn from_value(value: Value) -> Result<Self, OpError> {
                match value {
                    Value::Int(i) => <$t>::try_from(i).map_err(|_| {
                        OpError::new(format!("integer {i} does not fit in {}", stringify!($t)))
                    }),
                    other => Err(mismatch("int", &other)),
                }
            }
        }
    )*};
}
int_value!(i8, i16, i32, i64, u8, u16, u32, isize);

impl IntoValue for u64 {
    fn into_value(self) -> Value {
        // Values above i64::MAX become floats rather than wrapping silently.
        i64::try_from(self).map_or(Value::Float(self as f64), Value::Int)
    }
}

impl FromValue for u64 {
    fn from_value(value: Value) -> Result<Self, OpError> {
        match value {
            Value::Int(i) => {
                u64::try_from(i).map_err(|_| OpError::new(format!("integer {i} is negative, expected u64")))
            }
            other => Err(mismatch("int", &other)),
        }
    }
}

impl IntoValue for usize {
    fn into_value(self) -> Value {
        (self as u64).into_value()
    }
}

impl FromValue for usize {
    fn from_value(value: Value) -> Result<Self, OpError> {
        let v = u64::from_value(value)?;
        usize::try_from(v).map_err(|_| OpError::new(format!("integer {v} does not fit in usize")))
    }
}

impl IntoValue for f64 {
    fn into_value(self) -> Value {
        Value::Float(self)
    }
}

impl FromValue for f64 {
    fn from_value(value: Value) -> Result<Self, OpError> {
        match value {
            Value::Float(x) => Ok(x),
            // Ints widen to floats, as Python's numeric tower does.
            Value::Int(i) => Ok(i as f64),
            other => Err(mismatch("float", &other)),
        }
    }
}

impl IntoValue for f32 {
    fn into_value(self) -> Value {
        Value::Float(f64::from(self))
    }
}

impl FromValue for f32 {
    fn from_value(value: Value) -> Result<Self, OpError> {
        f64::from_value(value).map(|x| x as f32)
    }
}

impl IntoValue for String {
    fn into_value(self) -> Value {
        Value::Str(self.into())
    }
}

impl IntoValue for &str {
    fn into_value(self) -> Value {
        Value::Str(self.into())
    }
}

impl FromValue for String {
    fn from_value(value: Value) -> Result<Self, OpError> {
        match value {
            Value::Str(s) => Ok(s.to_string()),
            other => Err(mismatch("str", &other)),
        }
    }
}

impl IntoValue for Bytes {
    fn into_value(self) -> Value {
        Value::Bytes(self)
    }
}

impl FromValue for Bytes {
    fn from_value(value: Value) -> Result<Self, OpError> {
        match value {
            Value::Bytes(b) => Ok(b),
            other => Err(mismatch("bytes", &other)),
        }
    }
}

impl<T: IntoValue> IntoValue for Vec<T> {
    fn into_value(self) -> Value {
        Value::List(self.into_iter().map(IntoValue::into_value).collect())
    }
}

impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(value: Value) -> Result<Self, OpError> {
        match value {
            Value::List(items) => items.iter().cloned().map(T::from_value).collect(),
            other => Err(mismatch("list", &other)),
        }
    }
}

impl<T: IntoValue> IntoValue for Option<T> {
    fn into_value(self) -> Value {
        self.map_or(Value::None, IntoValue::into_value)
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: Value) -> Result<Self, OpError> {
        match value {
            Value::None => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

macro_rules! tuple_value {
    ($n:literal; $($name:ident),+) => {
        impl<$($name: IntoValue),+> IntoValue for ($($name,)+) {
            #[allow(non_snake_case)] // the tuple's parts are named after their type parameters
            fn into_value(self) -> Value {
                let ($($name,)+) = self;
                Value::List(vec![$($name.into_value()),+].into())
            }
        }
        impl<$($name: FromValue),+> FromValue for ($($name,)+) {
            fn from_value(value: Value) -> Result<Self, OpError> {
                match value {
                    Value::List(items) if items.len() == $n => {
                        let mut it = items.iter().cloned();
                        Ok(($($name::from_value(it.next().unwrap_or_default())?,)+))
                    }
                    other => Err(mismatch(concat!("a tuple of ", $n), &other)),
                }
            }
        }
    };
}
tuple_value!(2; A, B);
tuple_value!(3; A, B, C);
tuple_value!(4; A, B, C, D);

/// Element types that can live in an [`ArrayValue`].
pub trait Element: Clone + Send + Sync + 'static {
    const DTYPE: DType;
    fn wrap(a: ArcArray<Self, IxDyn>) -> ArrayValue;
    fn unwrap(a: ArrayValue) -> Option<ArcArray<Self, IxDyn>>;
}

macro_rules! element {
    ($($t:ty => $v:ident),*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$v;
            fn wrap(a: ArcArray<Self, IxDyn>) -> ArrayValue {
                ArrayValue::$v(a)
            }
            fn unwrap(a: ArrayValue) -> Option<ArcArray<Self, IxDyn>> {
                match a {
                    ArrayValue::$v(x) => Some(x),
                    _ => None,
                }
            }
        }
    )*};
}
element!(bool => Bool, i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16,
         u32 => U32, u64 => U64, f32 => F32, f64 => F64);

impl<T: Element> IntoValue for ArrayD<T> {
    fn into_value(self) -> Value {
        Value::Array(T::wrap(self.into_shared()))
    }
}

impl<T: Element> IntoValue for ArcArray<T, IxDyn> {
    fn into_value(self) -> Value {
        Value::Array(T::wrap(self))
    }
}

impl<T: Element> FromValue for ArcArray<T, IxDyn> {
    fn from_value(value: Value) -> Result<Self, OpError> {
        match value {
            Value::Array(a) => {
                let found = a.dtype();
                T::unwrap(a).ok_or_else(|| OpError::new(format!("expected an array of {}, found {found}", T::DTYPE)))
            }
            other => Err(mismatch("array", &other)),
        }
    }
}

impl<T: Element> FromValue for ArrayD<T> {
    fn from_value(value: Value) -> Result<Self, OpError> {
        // Takes the buffer without copying when this is the only reference.
        ArcArray::<T, IxDyn>::from_value(value).map(ArcArray::into_owned)
    }
}

impl IntoValue for ArrayValue {
    fn into_value(self) -> Value {
        Value::Array(self)
    }
}

impl FromValue for ArrayValue {
    fn from_value(value: Value) -> Result<Self, OpError> {
        match value {
            Value::Array(a) => Ok(a),
            other => Err(mismatch("array", &other)),
        }
    }
}

/// What an op may return: a plain value, or a `Result` whose error becomes the
/// task's error message.
pub trait OpOutput {
    type Output;
    fn into_op_result(self) -> Result<Value, OpError>;
}

impl<T: IntoValue> OpOutput for T {
    type Output = T;
    fn into_op_result(self) -> Result<Value, OpError> {
        Ok(self.into_value())
    }
}

impl<T: IntoValue, E: fmt::Display> OpOutput for Result<T, E> {
    type Output = T;
    fn into_op_result(self) -> Result<Value, OpError> {
        self.map(IntoValue::into_value).map_err(|e| OpError::new(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(i64::from_value(5i64.into_value()).unwrap(), 5);
        assert_eq!(f64::from_value(Value::Int(2)).unwrap(), 2.0);
        let v = vec![(1i64, "a".to_string()), (2, "b".to_string())];
        assert_eq!(Vec::<(i64, String)>::from_value(v.clone().into_value()).unwrap(), v);
        let a = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        assert_eq!(ArrayD::<f32>::from_value(a.clone().into_value()).unwrap(), a);
    }

    #[test]
    fn mismatches_say_what_was_found() {
        let err = i64::from_value(Value::Str("x".into())).unwrap_err();
        assert_eq!(err.message, "expected int, found str");
        let err = ArrayD::<f32>::from_value(ArrayD::<u8>::zeros(IxDyn(&[1])).into_value()).unwrap_err();
        assert_eq!(err.message, "expected an array of float32, found uint8");
        let err = u8::from_value(Value::Int(300)).unwrap_err();
        assert!(err.message.contains("300"), "{err}");
    }

    #[test]
    fn nbytes_counts_payload() {
        let a = ArrayD::<f64>::zeros(IxDyn(&[10, 10])).into_value();
        assert_eq!(a.nbytes(), 800 + VALUE_OVERHEAD);
        assert!(Value::Int(1).nbytes() > 0);
        let list = Value::list([Value::Int(1), Value::Int(2)]);
        assert_eq!(list.nbytes(), 3 * VALUE_OVERHEAD);
    }
}
