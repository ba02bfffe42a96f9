//! numpy's `.npy` format: `from_npy` reads blocks lazily with ranged reads,
//! `to_npy` streams blocks to one file in C order.
//!
//! The header is parsed defensively: its length is bounded, the dtype must
//! be one rask has, and the file must hold exactly the bytes the shape
//! needs, so a corrupt or hostile file is an error, never a huge allocation.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use rask::core::{ArrayValue, DType, OpError, Params, Value};
use serde::{Deserialize, Serialize};

use crate::{ArrayError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy itself refuses headers above this size by default.
const MAX_HEADER: usize = 10_000;

/// What the header says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NpyHeader {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data_offset: u64,
}

/// numpy's type string (`<f8`), shared with Zarr 2 metadata.
pub(crate) fn descr(d: DType) -> &'static str {
    match d {
        DType::Bool => "|b1",
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
    }
}

pub(crate) fn parse_descr(s: &str) -> Option<DType> {
    Some(match s {
        "|b1" => DType::Bool,
        "|i1" => DType::I8,
        "<i2" => DType::I16,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "|u1" => DType::U8,
        "<u2" => DType::U16,
        "<u4" => DType::U32,
        "<u8" => DType::U64,
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        _ => return None,
    })
}

/// The value of `'key': value` in the header dict, up to the next `,` or `}`
/// outside parentheses.
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = header[at + key.len() + 2..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..=i]);
                }
            }
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

pub fn read_header(path: &Path) -> Result<NpyHeader> {
    let bad = |why: String| ArrayError::Value(format!("{}: not a readable .npy file: {why}", path.display()));
    let mut f = File::open(path).map_err(|e| ArrayError::Value(format!("{}: {e}", path.display())))?;
    let file_len = f.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut pre = [0u8; 8];
    f.read_exact(&mut pre).map_err(|_| bad("shorter than the 8-byte preamble".into()))?;
    if &pre[..6] != MAGIC {
        return Err(bad("missing the \\x93NUMPY magic".into()));
    }
    let (header_len, prefix) = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            f.read_exact(&mut b).map_err(|_| bad("truncated header length".into()))?;
            (u16::from_le_bytes(b) as usize, 10u64)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            f.read_exact(&mut b).map_err(|_| bad("truncated header length".into()))?;
            (u32::from_le_bytes(b) as usize, 12u64)
        }
        v => return Err(bad(format!("unsupported format version {v}"))),
    };
    if header_len > MAX_HEADER {
        return Err(bad(format!("header of {header_len} bytes is larger than the {MAX_HEADER} allowed")));
    }
    let mut h = vec![0u8; header_len];
    f.read_exact(&mut h).map_err(|_| bad("truncated header".into()))?;
    let header = String::from_utf8(h).map_err(|_| bad("header is not text".into()))?;
    let d = field(&header, "descr").ok_or_else(|| bad("no 'descr'".into()))?.trim_matches(|c| c == '\'' || c == '"');
    let dtype = parse_descr(d).ok_or_else(|| {
        bad(format!("dtype {d:?} is not supported (little-endian bool, int8-64, uint8-64, float32/64 are)"))
    })?;
    if field(&header, "fortran_order").ok_or_else(|| bad("no 'fortran_order'".into()))? != "False" {
        return Err(bad("Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into()));
    }
    let s = field(&header, "shape").ok_or_else(|| bad("no 'shape'".into()))?;
    let inner =
        s.trim().strip_prefix('(').and_then(|x| x.strip_suffix(')')).ok_or_else(|| bad(format!("bad shape {s}")))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<usize>().map_err(|_| bad(format!("bad shape entry {x:?}"))))
        .collect::<Result<Vec<_>>>()?;
    let data_offset = prefix + header_len as u64;
    let bytes = shape
        .iter()
        .try_fold(dtype.itemsize() as u64, |acc, &n| acc.checked_mul(n as u64))
        .ok_or_else(|| bad("shape overflows".into()))?;
    if file_len != data_offset + bytes {
        return Err(bad(format!(
            "the shape {shape:?} needs {bytes} data bytes but the file has {}",
            file_len.saturating_sub(data_offset)
        )));
    }
    Ok(NpyHeader { dtype, shape, data_offset })
}

/// Parameters of one block read.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadParams {
    pub path: String,
    pub header: NpyHeader,
    pub offset: Vec<usize>,
    pub block: Vec<usize>,
}

/// Little-endian bytes to an array of `shape`.
pub fn decode_le(dtype: DType, bytes: &[u8], shape: &[usize]) -> std::result::Result<ArrayValue, OpError> {
    macro_rules! le {
        ($t:ty, $variant:ident, $n:expr) => {{
            let v: Vec<$t> =
                bytes.chunks_exact($n).map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n]))).collect();
            ArrayValue::$variant(
                ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| OpError::new(e.to_string()))?.into_shared(),
            )
        }};
    }
    Ok(match dtype {
        DType::Bool => ArrayValue::Bool(
            ArrayD::from_shape_vec(IxDyn(shape), bytes.iter().map(|&b| b != 0).collect())
                .map_err(|e| OpError::new(e.to_string()))?
                .into_shared(),
        ),
        DType::I8 => le!(i8, I8, 1),
        DType::I16 => le!(i16, I16, 2),
        DType::I32 => le!(i32, I32, 4),
        DType::I64 => le!(i64, I64, 8),
        DType::U8 => le!(u8, U8, 1),
        DType::U16 => le!(u16, U16, 2),
        DType::U32 => le!(u32, U32, 4),
        DType::U64 => le!(u64, U64, 8),
        DType::F32 => le!(f32, F32, 4),
        DType::F64 => le!(f64, F64, 8),
    })
}

/// Reads the rows a block spans (one ranged read), then slices the block.
pub fn read_block(p: &Params, _: Vec<Value>) -> std::result::Result<Value, OpError> {
    let p: ReadParams = postcard::from_bytes(&p.0).map_err(|e| OpError::new(format!("npy read params: {e}")))?;
    let h = &p.header;
    let io = |e: std::io::Error| OpError::new(format!("{}: {e}", p.path));
    let item = h.dtype.itemsize();
    let (rows, rest_shape): (usize, Vec<usize>) =
        if h.shape.is_empty() { (1, vec![]) } else { (p.block[0], h.shape[1..].to_vec()) };
    let row_bytes = item * rest_shape.iter().product::<usize>();
    let first_row = if h.shape.is_empty() { 0 } else { p.offset[0] };
    let mut f = File::open(&p.path).map_err(io)?;
    f.seek(SeekFrom::Start(h.data_offset + (first_row * row_bytes) as u64)).map_err(io)?;
    let mut buf = vec![0u8; rows * row_bytes];
    f.read_exact(&mut buf).map_err(io)?;
    let mut full_shape = if h.shape.is_empty() { vec![] } else { vec![rows] };
    full_shape.extend(&rest_shape);
    let rows_value = decode_le(h.dtype, &buf, &full_shape)?;
    if h.shape.len() <= 1 || p.block[1..] == h.shape[1..] {
        return Ok(Value::Array(rows_value));
    }
    let mut sel = vec![crate::kernels::Sel::Range { start: 0, stop: None, step: 1 }];
    for ax in 1..h.shape.len() {
        let (o, n) = (p.offset[ax] as isize, p.block[ax] as isize);
        sel.push(crate::kernels::Sel::Range { start: o, stop: Some(o + n), step: 1 });
    }
    crate::kernels::slice_value(&rows_value, &sel).map(Value::Array)
}

/// Writes the header for `dtype` and `shape`, padded to 64 bytes as numpy does.
pub fn write_header(w: &mut impl Write, dtype: DType, shape: &[usize]) -> std::io::Result<()> {
    let shape_text = match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}", descr(dtype));
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    w.write_all(MAGIC)?;
    w.write_all(&[1, 0])?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())
}

/// Appends a block's elements in C order, little-endian.
pub fn write_values(w: &mut impl Write, a: &ArrayValue) -> std::io::Result<()> {
    macro_rules! put {
        ($x:expr) => {{
            for v in $x.as_standard_layout().iter() {
                w.write_all(&v.to_le_bytes())?;
            }
        }};
    }
    match a {
        ArrayValue::Bool(x) => {
            for v in x.as_standard_layout().iter() {
                w.write_all(&[u8::from(*v)])?;
            }
        }
        ArrayValue::I8(x) => put!(x),
        ArrayValue::I16(x) => put!(x),
        ArrayValue::I32(x) => put!(x),
        ArrayValue::I64(x) => put!(x),
        ArrayValue::U8(x) => put!(x),
        ArrayValue::U16(x) => put!(x),
        ArrayValue::U32(x) => put!(x),
        ArrayValue::U64(x) => put!(x),
        ArrayValue::F32(x) => put!(x),
        ArrayValue::F64(x) => put!(x),
    }
    Ok(())
}

/// Opens a file for `to_npy`, writing to a temporary name first so that a
/// failed write never leaves a partial file under the final name.
pub fn create(path: &Path) -> Result<(BufWriter<File>, std::path::PathBuf)> {
    let tmp = path.with_extension("npy.partial");
    let f = File::create(&tmp).map_err(|e| ArrayError::Value(format!("{}: {e}", tmp.display())))?;
    Ok((BufWriter::new(f), tmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_parse() {
        let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }";
        assert_eq!(field(h, "descr"), Some("'<f8'"));
        assert_eq!(field(h, "shape"), Some("(3, 4)"));
        assert_eq!(field(h, "fortran_order"), Some("False"));
        assert_eq!(field("{'shape': (7,), }", "shape"), Some("(7,)"));
    }
}
