//! How array chunks serialize: dtype, shape, then the elements as one run of
//! little-endian bytes. Encoding a contiguous chunk writes its memory as it
//! is (a serializer that can keep references, as `rask_proto`'s, copies
//! nothing) and decoding checks that the byte count is exactly shape × item
//! size before it allocates, so a peer's header cannot make the receiver
//! reserve memory the message does not carry. Decoding from a borrowed
//! buffer copies the elements once, straight into the array's own vector
//! (no zero-filled buffer first). (ndarray's own serde form writes elements
//! one by one and grew buffers by doubling: 0.1–0.4 GB/s instead of memcpy
//! speed.)

use std::fmt;

use ndarray::{ArcArray, ArrayD, IxDyn};
use serde::de::{self, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ArrayValue, DType};

#[cfg(target_endian = "big")]
compile_error!("rask's wire format for arrays is little-endian; big-endian targets are not supported");

/// Bytes serialized as one byte string.
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A byte string deserialized into an owned buffer, also from formats that
/// give a sequence of bytes; allocation follows the data, not a hint.
pub(crate) struct ByteBuf(pub Vec<u8>);

/// Accepts a byte string in any of the forms a format may give it.
struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(ByteBufVisitor).map(ByteBuf)
    }
}

fn pod_bytes<T: bytemuck::Pod>(a: &ArcArray<T, IxDyn>) -> std::borrow::Cow<'_, [u8]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(bytemuck::cast_slice(s)),
        None => {
            let owned: Vec<T> = a.iter().copied().collect();
            std::borrow::Cow::Owned(bytemuck::cast_slice(&owned).to_vec())
        }
    }
}

impl Serialize for ArrayValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let shape: Vec<u64> = self.shape().iter().map(|&d| d as u64).collect();
        let data = match self {
            ArrayValue::Bool(a) => std::borrow::Cow::Owned(a.iter().map(|&b| u8::from(b)).collect()),
            ArrayValue::I8(a) => pod_bytes(a),
            ArrayValue::I16(a) => pod_bytes(a),
            ArrayValue::I32(a) => pod_bytes(a),
            ArrayValue::I64(a) => pod_bytes(a),
            ArrayValue::U8(a) => pod_bytes(a),
            ArrayValue::U16(a) => pod_bytes(a),
            ArrayValue::U32(a) => pod_bytes(a),
            ArrayValue::U64(a) => pod_bytes(a),
            ArrayValue::F32(a) => pod_bytes(a),
            ArrayValue::F64(a) => pod_bytes(a),
        };
        let mut st = s.serialize_struct("ArrayValue", 3)?;
        st.serialize_field("dtype", &self.dtype())?;
        st.serialize_field("shape", &shape)?;
        st.serialize_field("data", &Raw(&data))?;
        st.end()
    }
}

/// The elements' bytes as the format gives them: borrowed from the input
/// when it can (postcard over a slice), owned otherwise.
enum Data<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Data<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Data::Borrowed(b) => b,
            Data::Owned(v) => v,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Data<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Data<'de>, E> {
                Ok(Data::Borrowed(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Data<'de>, E> {
                Ok(Data::Owned(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Data<'de>, E> {
                Ok(Data::Owned(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Data<'de>, A::Error> {
                ByteBufVisitor.visit_seq(seq).map(Data::Owned)
            }
        }
        d.deserialize_bytes(V)
    }
}

#[derive(Deserialize)]
#[serde(rename = "ArrayValue")]
struct Repr<'a> {
    dtype: DType,
    shape: Vec<u64>,
    #[serde(borrow)]
    data: Data<'a>,
}

fn build<T: Clone>(shape: Vec<usize>, items: Vec<T>) -> Result<ArcArray<T, IxDyn>, String> {
    ArrayD::from_shape_vec(IxDyn(&shape), items).map(ArrayD::into_shared).map_err(|e| e.to_string())
}

/// Little-endian bytes as elements, written once into a vector sized from
/// the (already checked) byte count: no zero-fill, any alignment.
fn pod_vec<T: bytemuck::Pod>(data: &[u8]) -> Vec<T> {
    let mut out = Vec::with_capacity(data.len() / std::mem::size_of::<T>());
    out.extend(data.chunks_exact(std::mem::size_of::<T>()).map(bytemuck::pod_read_unaligned::<T>));
    out
}

fn pods<T: bytemuck::Pod>(shape: Vec<usize>, data: &[u8]) -> Result<ArcArray<T, IxDyn>, String> {
    build(shape, pod_vec(data))
}

impl<'de> Deserialize<'de> for ArrayValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = Repr::deserialize(d)?;
        let shape: Vec<usize> =
            r.shape.iter().map(|&x| usize::try_from(x)).collect::<Result<_, _>>().map_err(de::Error::custom)?;
        let count = shape.iter().try_fold(1usize, |acc, &x| acc.checked_mul(x));
        let expected = count.and_then(|c| c.checked_mul(r.dtype.itemsize()));
        if expected != Some(r.data.as_slice().len()) {
            return Err(de::Error::custom(format!(
                "array of dtype {} and shape {:?} needs {} bytes, got {}",
                r.dtype,
                shape,
                expected.map_or_else(|| "more than usize".to_string(), |e| e.to_string()),
                r.data.as_slice().len()
            )));
        }
        let data = r.data.as_slice();
        let out = match r.dtype {
            DType::Bool => {
                if data.iter().any(|&b| b > 1) {
                    return Err(de::Error::custom("a bool array holds a byte other than 0 or 1"));
                }
                build(shape, data.iter().map(|&b| b == 1).collect()).map(ArrayValue::Bool)
            }
            DType::I8 => pods(shape, data).map(ArrayValue::I8),
            DType::I16 => pods(shape, data).map(ArrayValue::I16),
            DType::I32 => pods(shape, data).map(ArrayValue::I32),
            DType::I64 => pods(shape, data).map(ArrayValue::I64),
            DType::U8 => match r.data {
                Data::Owned(v) => build(shape, v),
                Data::Borrowed(b) => build(shape, b.to_vec()),
            }
            .map(ArrayValue::U8),
            DType::U16 => pods(shape, data).map(ArrayValue::U16),
            DType::U32 => pods(shape, data).map(ArrayValue::U32),
            DType::U64 => pods(shape, data).map(ArrayValue::U64),
            DType::F32 => pods(shape, data).map(ArrayValue::F32),
            DType::F64 => pods(shape, data).map(ArrayValue::F64),
        };
        out.map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;
    use ndarray::{Array2, ShapeBuilder};

    fn round_trip(v: &ArrayValue) -> ArrayValue {
        let bytes = postcard::to_stdvec(&Value::Array(v.clone())).expect("encodes");
        match postcard::from_bytes(&bytes).expect("decodes") {
            Value::Array(a) => a,
            other => unreachable!("not an array: {other:?}"),
        }
    }

    fn sample(dt: DType) -> ArrayValue {
        let f = |i: usize| i as i64 * 37 - 50;
        macro_rules! arr {
            ($v:ident, $t:ty) => {
                ArrayValue::$v(ArrayD::from_shape_fn(IxDyn(&[2, 3]), |ix| f(ix[0] * 3 + ix[1]) as $t).into_shared())
            };
        }
        match dt {
            DType::Bool => ArrayValue::Bool(ArrayD::from_shape_fn(IxDyn(&[2, 3]), |ix| ix[1] % 2 == 0).into_shared()),
            DType::I8 => arr!(I8, i8),
            DType::I16 => arr!(I16, i16),
            DType::I32 => arr!(I32, i32),
            DType::I64 => arr!(I64, i64),
            DType::U8 => arr!(U8, u8),
            DType::U16 => arr!(U16, u16),
            DType::U32 => arr!(U32, u32),
            DType::U64 => arr!(U64, u64),
            DType::F32 => arr!(F32, f32),
            DType::F64 => arr!(F64, f64),
        }
    }

    #[test]
    fn every_dtype_round_trips_including_views_and_empty() {
        for dt in DType::ALL {
            let v = sample(dt);
            assert_eq!(round_trip(&v), v, "{dt}");
        }
        // A column-major (non-standard layout) array keeps its logical order.
        let f = Array2::from_shape_vec((2, 3).f(), vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]).expect("shape");
        let v = ArrayValue::F64(f.into_dyn().into_shared());
        assert_eq!(round_trip(&v), v);
        let empty = ArrayValue::I32(ArrayD::from_shape_vec(IxDyn(&[0, 4]), vec![]).expect("shape").into_shared());
        assert_eq!(round_trip(&empty), empty);
    }

    #[derive(Serialize)]
    #[serde(rename = "ArrayValue")]
    struct Fake<'a> {
        dtype: DType,
        shape: Vec<u64>,
        data: Raw<'a>,
    }

    fn decode(f: &Fake<'_>) -> Result<ArrayValue, postcard::Error> {
        postcard::from_bytes(&postcard::to_stdvec(f).expect("encodes"))
    }

    #[test]
    fn lying_headers_are_refused() {
        let eight = [0u8; 8];
        assert!(decode(&Fake { dtype: DType::F64, shape: vec![1], data: Raw(&eight) }).is_ok());
        // A huge shape with 8 bytes of data: refused before any allocation.
        assert!(decode(&Fake { dtype: DType::F64, shape: vec![1 << 40], data: Raw(&eight) }).is_err());
        assert!(decode(&Fake { dtype: DType::F64, shape: vec![u64::MAX, u64::MAX], data: Raw(&eight) }).is_err());
        assert!(decode(&Fake { dtype: DType::I16, shape: vec![3], data: Raw(&eight) }).is_err());
        assert!(decode(&Fake { dtype: DType::Bool, shape: vec![2], data: Raw(&[1, 7]) }).is_err());
        assert!(postcard::from_bytes::<ArrayValue>(&[0xff, 0xff]).is_err());
    }
}
