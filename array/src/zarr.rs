//! Zarr stores on local disk, formats 2 and 3, for arrays that live beside
//! Dask's. Each block is one chunk object, read and written by the task that
//! owns it, so data never passes through the client.
//!
//! rask reads and writes uncompressed chunks (Zarr 2 `compressor: null`,
//! Zarr 3 the `bytes` codec alone). A store using a compressor is refused
//! with a message naming it, never misread.

use rask::core::{DType, OpError, Params, Value};
use rask_storage::StorageOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::{ArrayError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZarrFormat {
    V2,
    V3,
}

/// What rask needs from a store's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZarrMeta {
    pub format: ZarrFormat,
    pub shape: Vec<usize>,
    pub chunks: Vec<usize>,
    pub dtype: DType,
    pub fill_value: f64,
    /// Chunk keys: `0.1` (v2 default) or `c/0/1` (v3 default).
    pub separator: char,
}

impl ZarrMeta {
    /// The object name of chunk `index`.
    pub fn chunk_key(&self, index: &[usize]) -> String {
        let parts: Vec<String> = index.iter().map(ToString::to_string).collect();
        let joined = parts.join(&self.separator.to_string());
        match self.format {
            ZarrFormat::V2 if index.is_empty() => "0".into(),
            ZarrFormat::V2 => joined,
            ZarrFormat::V3 if index.is_empty() => "c".into(),
            ZarrFormat::V3 => format!("c{}{joined}", self.separator),
        }
    }
}

fn fill_of(v: &Json) -> f64 {
    match v {
        Json::Bool(b) => f64::from(u8::from(*b)),
        Json::Number(n) => n.as_f64().unwrap_or(0.0),
        Json::String(s) if s == "NaN" => f64::NAN,
        Json::String(s) if s == "Infinity" => f64::INFINITY,
        Json::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        _ => 0.0,
    }
}

fn usizes(v: Option<&Json>, what: &str, bad: &dyn Fn(String) -> ArrayError) -> Result<Vec<usize>> {
    v.and_then(Json::as_array)
        .ok_or_else(|| bad(format!("no {what}")))?
        .iter()
        .map(|x| x.as_u64().map(|n| n as usize).ok_or_else(|| bad(format!("bad {what} entry {x}"))))
        .collect()
}

/// Reads `zarr.json` (format 3) or `.zarray` (format 2) of a local store
/// or one under an `s3://` prefix.
pub fn read_meta(path: &str, options: &StorageOptions) -> Result<ZarrMeta> {
    let bad = |why: String| ArrayError::Value(format!("{path}: not a readable Zarr array: {why}"));
    let read = |name: &str| -> Result<Option<Vec<u8>>> {
        let url = rask_storage::join(path, name);
        match rask_storage::read_optional(&url, options) {
            Ok(b) => Ok(b.map(|b| b.to_vec())),
            // A local store that is not a directory reads as "not Zarr".
            Err(rask_storage::StorageError::Io { .. }) => Ok(None),
            Err(e) => Err(ArrayError::Value(e.to_string())),
        }
    };
    if let Some(bytes) = read("zarr.json")? {
        let m: Json = serde_json::from_slice(&bytes).map_err(|e| bad(format!("zarr.json: {e}")))?;
        if m["node_type"] != "array" {
            return Err(bad(format!("node_type is {}, not array", m["node_type"])));
        }
        let dtype_name = m["data_type"].as_str().ok_or_else(|| bad("no data_type".into()))?;
        let dtype =
            DType::from_name(dtype_name).ok_or_else(|| bad(format!("data type {dtype_name:?} is not supported")))?;
        if m["chunk_grid"]["name"] != "regular" {
            return Err(bad(format!("chunk grid {} is not supported (regular is)", m["chunk_grid"]["name"])));
        }
        let chunks = usizes(m["chunk_grid"]["configuration"].get("chunk_shape"), "chunk_shape", &bad)?;
        let shape = usizes(m.get("shape"), "shape", &bad)?;
        let codecs = m["codecs"].as_array().cloned().unwrap_or_default();
        let plain = codecs.len() == 1
            && codecs[0]["name"] == "bytes"
            && (codecs[0]["configuration"]["endian"] == "little" || dtype.itemsize() == 1);
        if !plain {
            let names: Vec<String> = codecs.iter().map(|c| c["name"].to_string()).collect();
            return Err(bad(format!(
                "codecs [{}] are not supported: rask reads uncompressed chunks (the little-endian bytes codec alone)",
                names.join(", ")
            )));
        }
        let enc = &m["chunk_key_encoding"];
        let separator = match enc["configuration"]["separator"].as_str() {
            Some(".") => '.',
            _ => '/',
        };
        if enc["name"] != "default" {
            return Err(bad(format!("chunk key encoding {} is not supported", enc["name"])));
        }
        return Ok(ZarrMeta {
            format: ZarrFormat::V3,
            shape,
            chunks,
            dtype,
            fill_value: fill_of(&m["fill_value"]),
            separator,
        });
    }
    let bytes = read(".zarray")?.ok_or_else(|| bad("neither zarr.json nor .zarray found".into()))?;
    let m: Json = serde_json::from_slice(&bytes).map_err(|e| bad(format!(".zarray: {e}")))?;
    if m["zarr_format"] != 2 {
        return Err(bad(format!("zarr_format {} in .zarray", m["zarr_format"])));
    }
    let descr = m["dtype"].as_str().ok_or_else(|| bad("no dtype".into()))?;
    let dtype = crate::npy::parse_descr(descr)
        .ok_or_else(|| bad(format!("dtype {descr:?} is not supported (little-endian numeric types are)")))?;
    if !m["compressor"].is_null() {
        return Err(bad(format!(
            "compressor {} is not supported: rask reads uncompressed chunks (compressor: null)",
            m["compressor"]["id"]
        )));
    }
    if m["filters"].as_array().is_some_and(|f| !f.is_empty()) {
        return Err(bad("filters are not supported".into()));
    }
    if m["order"] != "C" {
        return Err(bad("only C order is supported".into()));
    }
    let separator = match m["dimension_separator"].as_str() {
        Some("/") => '/',
        _ => '.',
    };
    Ok(ZarrMeta {
        format: ZarrFormat::V2,
        shape: usizes(m.get("shape"), "shape", &bad)?,
        chunks: usizes(m.get("chunks"), "chunks", &bad)?,
        dtype,
        fill_value: fill_of(&m["fill_value"]),
        separator,
    })
}

/// Writes the metadata document for `meta` (a local directory is created;
/// on S3 the store is just a key prefix).
pub fn write_meta(path: &str, meta: &ZarrMeta, options: &StorageOptions) -> Result<()> {
    let io = |e: rask_storage::StorageError| ArrayError::Value(e.to_string());
    rask_storage::create_dir_all(path).map_err(io)?;
    let fill = if meta.dtype == DType::Bool {
        json!(meta.fill_value != 0.0)
    } else if crate::dtype::is_float(meta.dtype) {
        json!(meta.fill_value)
    } else {
        json!(meta.fill_value as i64)
    };
    let (name, doc) = match meta.format {
        ZarrFormat::V3 => (
            "zarr.json",
            json!({
                "zarr_format": 3,
                "node_type": "array",
                "shape": meta.shape,
                "data_type": meta.dtype.name(),
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": meta.chunks}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": meta.separator.to_string()}},
                "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
                "fill_value": fill,
                "attributes": {},
            }),
        ),
        ZarrFormat::V2 => (
            ".zarray",
            json!({
                "zarr_format": 2,
                "shape": meta.shape,
                "chunks": meta.chunks,
                "dtype": crate::npy::descr(meta.dtype),
                "compressor": null,
                "fill_value": fill,
                "order": "C",
                "filters": null,
                "dimension_separator": meta.separator.to_string(),
            }),
        ),
    };
    let text = serde_json::to_vec_pretty(&doc).map_err(|e| ArrayError::Value(e.to_string()))?;
    rask_storage::write(&rask_storage::join(path, name), &text, options).map_err(io)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChunkParams {
    pub path: String,
    pub meta: ZarrMeta,
    pub index: Vec<usize>,
    /// The block's shape (edge chunks are stored full-size and cut).
    pub block: Vec<usize>,
    /// Per-call S3 settings, so workers use the client's options.
    pub storage: StorageOptions,
}

/// The chunk's file or object: chunks map to objects one to one.
fn chunk_path(p: &ChunkParams) -> String {
    rask_storage::join(&p.path, &p.meta.chunk_key(&p.index))
}

/// Reads one chunk object (a missing one is all fill value) and cuts it to
/// the block's shape.
pub fn read_chunk(params: &Params, _: Vec<Value>) -> std::result::Result<Value, OpError> {
    let p: ChunkParams = postcard::from_bytes(&params.0).map_err(|e| OpError::new(format!("zarr read params: {e}")))?;
    let file = chunk_path(&p);
    let n: usize = p.meta.chunks.iter().product();
    let full = match rask_storage::read_optional(&file, &p.storage) {
        Ok(Some(bytes)) => {
            let want = n * p.meta.dtype.itemsize();
            if bytes.len() != want {
                return Err(OpError::new(format!("{file}: chunk has {} bytes, expected {want}", bytes.len())));
            }
            crate::npy::decode_le(p.meta.dtype, &bytes, &p.meta.chunks)?
        }
        Ok(None) => crate::kernels::filled_value(&p.meta.chunks, p.meta.dtype, p.meta.fill_value),
        Err(e) => return Err(OpError::new(e.to_string())),
    };
    if p.block == p.meta.chunks {
        return Ok(Value::Array(full));
    }
    let sel: Vec<crate::kernels::Sel> =
        p.block.iter().map(|&b| crate::kernels::Sel::Range { start: 0, stop: Some(b as isize), step: 1 }).collect();
    crate::kernels::slice_value(&full, &sel).map(Value::Array)
}

/// Writes one block as a chunk object (edge blocks padded with the fill
/// value), through a temporary name so readers never see half a chunk.
pub fn write_chunk(params: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let p: ChunkParams =
        postcard::from_bytes(&params.0).map_err(|e| OpError::new(format!("zarr write params: {e}")))?;
    let [Value::Array(block)] = <[Value; 1]>::try_from(args).map_err(|_| OpError::new("zarr write takes one block"))?
    else {
        return Err(OpError::new("zarr write takes one array block"));
    };
    let block = crate::dtype::cast(&block, p.meta.dtype);
    let full = if block.shape() == p.meta.chunks.as_slice() {
        block
    } else {
        let pad: Vec<(usize, usize)> =
            p.meta.chunks.iter().zip(block.shape()).map(|(&c, &b)| (0, c.saturating_sub(b))).collect();
        crate::kernels::pad_value(&block, &pad, p.meta.fill_value)
    };
    let file = chunk_path(&p);
    let mut bytes = Vec::with_capacity(full.nbytes());
    crate::npy::write_values(&mut bytes, &full).map_err(|e| OpError::new(e.to_string()))?;
    // Visible only once whole: a local temp file renamed, or one S3 PUT
    // (multipart past 8 MiB, aborted on failure).
    rask_storage::write(&file, &bytes, &p.storage).map_err(|e| OpError::new(e.to_string()))?;
    Ok(Value::Int(bytes.len() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_follow_the_formats() {
        let mut m = ZarrMeta {
            format: ZarrFormat::V2,
            shape: vec![4, 4],
            chunks: vec![2, 2],
            dtype: DType::F64,
            fill_value: 0.0,
            separator: '.',
        };
        assert_eq!(m.chunk_key(&[1, 0]), "1.0");
        m.format = ZarrFormat::V3;
        m.separator = '/';
        assert_eq!(m.chunk_key(&[1, 0]), "c/1/0");
    }
}
