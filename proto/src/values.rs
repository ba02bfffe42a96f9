//! Values on the wire without extra copies.
//!
//! The bytes are rask's ordinary value encoding (postcard, what
//! [`crate::decode_value`] reads); only the way they are produced and
//! consumed differs:
//! - **Sending**, [`encode_segments`] serializes through a postcard flavor
//!   that, when the serializer writes the memory of a large array or byte
//!   string held by the value, keeps a reference to it (a [`Bytes`] that owns
//!   a clone of the `Arc`ed array) instead of copying. A 1 GiB array becomes
//!   a few header bytes and one segment over the stored chunk.
//! - **Receiving**, [`ArrayReceiver`] reads the header of an array value from
//!   the first piece, checks it against the announced total (which the
//!   assembler has already capped by the receiver's limit), reserves the
//!   element vector once, and writes each later piece's bytes straight into
//!   it: one copy, no zero-fill, no joined byte buffer, whatever the
//!   alignment of the pieces. Anything else (a header split across pieces, a
//!   table, a list) goes through the ordinary decoder.

use bytes::Bytes;
use ndarray::{ArcArray, IxDyn};
use postcard::ser_flavors::Flavor;
use rask_core::{ArrayValue, DType, Value};

use crate::WireError;
use crate::pages::Prefault;

#[cfg(target_endian = "big")]
compile_error!("rask's wire format for arrays is little-endian; big-endian targets are not supported");

/// Runs of memory at least this long are referenced instead of copied;
/// shorter ones are cheaper to copy than to keep as a separate piece.
const REFERENCE_BYTES: usize = 64 << 10;

/// A contiguous array's memory as bytes, owning (a clone of) the array.
struct ArrayBytes(ArrayValue);

fn slice_bytes<T: bytemuck::Pod>(a: &ArcArray<T, IxDyn>) -> &[u8] {
    a.as_slice().map(bytemuck::cast_slice).unwrap_or_default()
}

impl AsRef<[u8]> for ArrayBytes {
    fn as_ref(&self) -> &[u8] {
        match &self.0 {
            // Bools are encoded byte by byte, never referenced.
            ArrayValue::Bool(_) => &[],
            ArrayValue::I8(a) => slice_bytes(a),
            ArrayValue::I16(a) => slice_bytes(a),
            ArrayValue::I32(a) => slice_bytes(a),
            ArrayValue::I64(a) => slice_bytes(a),
            ArrayValue::U8(a) => slice_bytes(a),
            ArrayValue::U16(a) => slice_bytes(a),
            ArrayValue::U32(a) => slice_bytes(a),
            ArrayValue::U64(a) => slice_bytes(a),
            ArrayValue::F32(a) => slice_bytes(a),
            ArrayValue::F64(a) => slice_bytes(a),
        }
    }
}

/// Memory the value holds that the serializer may write as it is.
fn shared_memory(v: &Value, out: &mut Vec<Bytes>) {
    match v {
        Value::Array(a) => {
            let bytes = ArrayBytes(a.clone());
            if bytes.as_ref().len() >= REFERENCE_BYTES {
                out.push(Bytes::from_owner(bytes));
            }
        }
        Value::Bytes(b) if b.len() >= REFERENCE_BYTES => out.push(b.clone()),
        Value::List(items) => items.iter().for_each(|item| shared_memory(item, out)),
        _ => {}
    }
}

/// A postcard output that is a list of segments: copied runs, and
/// references to memory the value already holds.
struct Segments {
    shared: Vec<Bytes>,
    done: Vec<Bytes>,
    current: Vec<u8>,
}

impl Segments {
    fn flush(&mut self) {
        if !self.current.is_empty() {
            self.done.push(Bytes::from(std::mem::take(&mut self.current)));
        }
    }
}

impl Flavor for Segments {
    type Output = Vec<Bytes>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() >= REFERENCE_BYTES {
            // The same address and length: the serializer is writing that
            // memory, so the reference holds exactly these bytes.
            let found = self.shared.iter().find(|b| b.as_ptr() == data.as_ptr() && b.len() == data.len());
            if let Some(b) = found.cloned() {
                self.flush();
                self.done.push(b);
                return Ok(());
            }
        }
        self.current.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.current.push(data);
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<Vec<Bytes>> {
        self.flush();
        Ok(self.done)
    }
}

/// A value in rask's encoding, as segments whose concatenation is what
/// [`crate::encode_value`] returns; large arrays and byte strings are
/// referenced, not copied.
pub fn encode_segments(v: &Value) -> Result<Vec<Bytes>, WireError> {
    let mut shared = Vec::new();
    shared_memory(v, &mut shared);
    let out = Segments { shared, done: Vec::new(), current: Vec::new() };
    postcard::serialize_with_flavor(v, out).map_err(|e| WireError::Value(e.to_string()))
}

/// The variant number postcard writes for `Value::Array`, taken from the
/// encoding itself so that it follows `Value`'s definition.
fn array_tag() -> Option<u32> {
    static TAG: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *TAG.get_or_init(|| {
        let probe = Value::Array(ArrayValue::U8(ArcArray::from_shape_vec(IxDyn(&[0]), Vec::new()).ok()?));
        let bytes = postcard::to_stdvec(&probe).ok()?;
        postcard::take_from_bytes::<u32>(&bytes).ok().map(|(tag, _)| tag)
    })
}

/// An array's elements as they are received, in the vector that becomes the
/// array.
#[derive(Debug)]
enum Elements {
    Bool(Vec<bool>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

fn reserved<T>(count: usize) -> Result<Vec<T>, WireError> {
    let mut v = Vec::new();
    v.try_reserve_exact(count)
        .map_err(|_| WireError::Value(format!("cannot reserve memory for an array of {count} elements")))?;
    Ok(v)
}

impl Elements {
    fn new(dtype: DType, count: usize) -> Result<Self, WireError> {
        Ok(match dtype {
            DType::Bool => Elements::Bool(reserved(count)?),
            DType::I8 => Elements::I8(reserved(count)?),
            DType::I16 => Elements::I16(reserved(count)?),
            DType::I32 => Elements::I32(reserved(count)?),
            DType::I64 => Elements::I64(reserved(count)?),
            DType::U8 => Elements::U8(reserved(count)?),
            DType::U16 => Elements::U16(reserved(count)?),
            DType::U32 => Elements::U32(reserved(count)?),
            DType::U64 => Elements::U64(reserved(count)?),
            DType::F32 => Elements::F32(reserved(count)?),
            DType::F64 => Elements::F64(reserved(count)?),
        })
    }
}

/// Where the next element of `v` goes, and the bytes of spare capacity
/// from there.
fn spare<T>(v: &[T], capacity: usize) -> (*const u8, usize) {
    (v.as_ptr().wrapping_add(v.len()).cast(), (capacity - v.len()) * std::mem::size_of::<T>())
}

impl Elements {
    /// The spare capacity of the vector: where the next bytes will land.
    fn spare(&self) -> (*const u8, usize) {
        match self {
            Elements::Bool(v) => spare(v, v.capacity()),
            Elements::I8(v) => spare(v, v.capacity()),
            Elements::I16(v) => spare(v, v.capacity()),
            Elements::I32(v) => spare(v, v.capacity()),
            Elements::I64(v) => spare(v, v.capacity()),
            Elements::U8(v) => spare(v, v.capacity()),
            Elements::U16(v) => spare(v, v.capacity()),
            Elements::U32(v) => spare(v, v.capacity()),
            Elements::U64(v) => spare(v, v.capacity()),
            Elements::F32(v) => spare(v, v.capacity()),
            Elements::F64(v) => spare(v, v.capacity()),
        }
    }
}

/// Appends little-endian elements; an element split between two pieces
/// waits in `carry`.
fn append<T: bytemuck::Pod>(v: &mut Vec<T>, carry: &mut Carry, mut bytes: &[u8]) {
    let size = std::mem::size_of::<T>();
    if carry.len > 0 {
        let take = (size - carry.len).min(bytes.len());
        carry.bytes[carry.len..carry.len + take].copy_from_slice(&bytes[..take]);
        carry.len += take;
        bytes = &bytes[take..];
        if carry.len < size {
            return;
        }
        v.push(bytemuck::pod_read_unaligned(&carry.bytes[..size]));
        carry.len = 0;
    }
    let whole = bytes.len() - bytes.len() % size;
    v.extend(bytes[..whole].chunks_exact(size).map(bytemuck::pod_read_unaligned::<T>));
    let rest = &bytes[whole..];
    carry.bytes[..rest.len()].copy_from_slice(rest);
    carry.len = rest.len();
}

#[derive(Debug, Default)]
struct Carry {
    bytes: [u8; 8],
    len: usize,
}

fn finish<T: Clone>(shape: &[usize], v: Vec<T>) -> Result<ArcArray<T, IxDyn>, WireError> {
    ArcArray::from_shape_vec(IxDyn(shape), v).map_err(|e| WireError::Value(e.to_string()))
}

/// Builds an array value from its encoding as the pieces arrive.
#[derive(Debug)]
pub(crate) struct ArrayReceiver {
    shape: Vec<usize>,
    elements: Elements,
    carry: Carry,
    /// Maps the vector's fresh pages just ahead of the writes.
    prefault: Prefault,
}

impl ArrayReceiver {
    /// A receiver when `first` begins with the complete header of an array
    /// value whose elements are exactly the rest of the `total` bytes;
    /// `None` when the value is something else (or its header is not all
    /// here), for the ordinary decoder. Returns the header's length.
    pub(crate) fn start(first: &[u8], total: u64) -> Result<Option<(Self, usize)>, WireError> {
        let Some(tag) = array_tag() else { return Ok(None) };
        let Ok(((variant, dtype, shape, len), rest)) =
            postcard::take_from_bytes::<(u32, DType, Vec<u64>, usize)>(first)
        else {
            return Ok(None);
        };
        if variant != tag {
            return Ok(None);
        }
        let head = first.len() - rest.len();
        let shape: Vec<usize> = match shape.iter().map(|&d| usize::try_from(d)).collect() {
            Ok(s) => s,
            Err(_) => return Ok(None),
        };
        let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let consistent = count.and_then(|c| c.checked_mul(dtype.itemsize())) == Some(len)
            && (head as u64).checked_add(len as u64) == Some(total);
        let Some(count) = count.filter(|_| consistent) else {
            // The ordinary decoder reports what is wrong.
            return Ok(None);
        };
        // `count × itemsize` is at most `total`, which the caller capped.
        let elements = Elements::new(dtype, count)?;
        let (at, capacity) = elements.spare();
        let prefault = Prefault::new(at, capacity);
        Ok(Some((Self { shape, elements, carry: Carry::default(), prefault }, head)))
    }

    /// Appends the next bytes of the elements.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let (at, _) = self.elements.spare();
        self.prefault.ahead(at, bytes.len());
        let carry = &mut self.carry;
        match &mut self.elements {
            Elements::Bool(v) => {
                if bytes.iter().any(|&b| b > 1) {
                    return Err(WireError::Value("a bool array holds a byte other than 0 or 1".into()));
                }
                v.extend(bytes.iter().map(|&b| b == 1));
            }
            Elements::I8(v) => append(v, carry, bytes),
            Elements::I16(v) => append(v, carry, bytes),
            Elements::I32(v) => append(v, carry, bytes),
            Elements::I64(v) => append(v, carry, bytes),
            Elements::U8(v) => v.extend_from_slice(bytes),
            Elements::U16(v) => append(v, carry, bytes),
            Elements::U32(v) => append(v, carry, bytes),
            Elements::U64(v) => append(v, carry, bytes),
            Elements::F32(v) => append(v, carry, bytes),
            Elements::F64(v) => append(v, carry, bytes),
        }
        Ok(())
    }

    /// The array, once every byte has been pushed.
    pub(crate) fn finish(self) -> Result<Value, WireError> {
        if self.carry.len != 0 {
            return Err(WireError::Value("an array ends inside an element".into()));
        }
        let s = &self.shape;
        Ok(Value::Array(match self.elements {
            Elements::Bool(v) => ArrayValue::Bool(finish(s, v)?),
            Elements::I8(v) => ArrayValue::I8(finish(s, v)?),
            Elements::I16(v) => ArrayValue::I16(finish(s, v)?),
            Elements::I32(v) => ArrayValue::I32(finish(s, v)?),
            Elements::I64(v) => ArrayValue::I64(finish(s, v)?),
            Elements::U8(v) => ArrayValue::U8(finish(s, v)?),
            Elements::U16(v) => ArrayValue::U16(finish(s, v)?),
            Elements::U32(v) => ArrayValue::U32(finish(s, v)?),
            Elements::U64(v) => ArrayValue::U64(finish(s, v)?),
            Elements::F32(v) => ArrayValue::F32(finish(s, v)?),
            Elements::F64(v) => ArrayValue::F64(finish(s, v)?),
        }))
    }
}
