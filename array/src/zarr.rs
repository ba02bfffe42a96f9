//! Zarr stores on local disk, formats 2 and 3, for arrays that live beside
//! Dask's. Each block is one chunk object, read and written by the task that
//! owns it, so data never passes through the client.
//!
//! Chunks are little-endian C-order bytes, optionally compressed with zstd
//! (zarr-python's default for both formats, and what [`Compressor`]
//! defaults to), gzip, zlib or Blosc (zarr-python 2's default: numcodecs
//! `Blosc`, or Zarr 3's `blosc` codec; read with any of its blosclz, lz4,
//! lz4hc, zlib and zstd inner compressors and any shuffle, written with
//! lz4, zlib or zstd; see `blosc.rs` for the format), or not at all. Other
//! codecs (Blosc's snappy, filters, sharding, big-endian bytes) are refused
//! with a message naming them, never misread. Decompression is bounded by
//! the chunk's known size: a chunk that inflates past it is an error, not
//! an allocation.

use rask::core::{DType, OpError, Params, Value};
use rask_storage::StorageOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

pub use crate::blosc::{BloscCname, BloscShuffle};
use crate::{ArrayError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZarrFormat {
    V2,
    V3,
}

/// How chunk bytes are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compressor {
    None,
    /// `level` 0 means zstd's default (3), as in numcodecs.
    Zstd {
        level: i32,
    },
    Gzip {
        level: u32,
    },
    /// Zarr 2 only (numcodecs `zlib`).
    Zlib {
        level: u32,
    },
    /// The Blosc container (numcodecs `blosc`, Zarr 3 `blosc`). Any
    /// `cname` reads; lz4, zlib and zstd write. The element size Blosc
    /// shuffles by is the array's dtype size.
    Blosc {
        cname: BloscCname,
        /// 0 (stored raw) to 9.
        clevel: u8,
        shuffle: BloscShuffle,
        /// Bytes per Blosc block; 0 lets Blosc choose, as numcodecs does.
        blocksize: u32,
    },
}

impl Default for Compressor {
    /// zarr-python's default: zstd at its default level.
    fn default() -> Self {
        Compressor::Zstd { level: 0 }
    }
}

impl Compressor {
    /// numcodecs' `Blosc()` default, zarr-python 2's default compressor:
    /// lz4 at level 5 with the byte shuffle and automatic blocks.
    pub const BLOSC_DEFAULT: Compressor =
        Compressor::Blosc { cname: BloscCname::Lz4, clevel: 5, shuffle: BloscShuffle::Byte, blocksize: 0 };

    /// Compresses one chunk's bytes; `itemsize` is the dtype's size (Blosc
    /// shuffles by it, the other codecs ignore it).
    pub fn encode(self, raw: &[u8], itemsize: usize) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        match self {
            Compressor::None => Ok(raw.to_vec()),
            Compressor::Zstd { level } => zstd::bulk::compress(raw, level),
            Compressor::Gzip { level } => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level.min(9)));
                e.write_all(raw)?;
                e.finish()
            }
            Compressor::Zlib { level } => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level.min(9)));
                e.write_all(raw)?;
                e.finish()
            }
            Compressor::Blosc { cname, clevel, shuffle, blocksize } => {
                let options = crate::blosc::EncodeOptions {
                    cname,
                    clevel,
                    shuffle,
                    typesize: itemsize,
                    blocksize: blocksize as usize,
                };
                crate::blosc::encode(raw, &options).map_err(std::io::Error::other)
            }
        }
    }

    /// Decompresses one chunk that must hold exactly `want` bytes; never
    /// allocates more than that, whatever the stored bytes claim.
    pub fn decode(self, stored: &[u8], want: usize) -> std::result::Result<Vec<u8>, String> {
        use std::io::Read;
        let bounded = |mut r: Box<dyn Read + '_>| -> std::result::Result<Vec<u8>, String> {
            let mut out = Vec::with_capacity(want);
            let limit = u64::try_from(want).unwrap_or(u64::MAX).saturating_add(1);
            (&mut r).take(limit).read_to_end(&mut out).map_err(|e| e.to_string())?;
            Ok(out)
        };
        let out = match self {
            Compressor::None => stored.to_vec(),
            Compressor::Zstd { .. } => {
                zstd::bulk::decompress(stored, want).map_err(|e| format!("zstd: {e} (expected {want} bytes)"))?
            }
            Compressor::Gzip { .. } => bounded(Box::new(flate2::read::MultiGzDecoder::new(stored)))?,
            Compressor::Zlib { .. } => bounded(Box::new(flate2::read::ZlibDecoder::new(stored)))?,
            Compressor::Blosc { .. } => crate::blosc::decode(stored, want)?,
        };
        if out.len() != want {
            return Err(format!("chunk holds {} bytes once decoded, expected {want}", out.len()));
        }
        Ok(out)
    }
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
    pub compressor: Compressor,
}

/// How [`crate::Array::to_zarr_with`] writes a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZarrWriteOptions {
    pub format: ZarrFormat,
    pub compressor: Compressor,
    /// Per-call S3 settings; they travel in each chunk task.
    pub storage: StorageOptions,
}

impl Default for ZarrWriteOptions {
    fn default() -> Self {
        ZarrWriteOptions {
            format: ZarrFormat::V3,
            compressor: Compressor::default(),
            storage: StorageOptions::default(),
        }
    }
}

/// A codec's `level`: its default when absent, an error when not an
/// integer in `T`'s range.
fn level_of<T: TryFrom<i64>>(c: &Json, default: T) -> std::result::Result<T, String> {
    match c.get("level") {
        None | Some(Json::Null) => Ok(default),
        Some(v) => v.as_i64().and_then(|l| T::try_from(l).ok()).ok_or_else(|| format!("bad compression level {v}")),
    }
}

/// A Zarr 3 codec chain: the little-endian `bytes` codec, then at most one
/// supported compressor.
fn v3_codecs(codecs: &[Json], dtype: DType) -> std::result::Result<Compressor, String> {
    let names = || codecs.iter().map(|c| c["name"].to_string()).collect::<Vec<_>>().join(", ");
    let unsupported = || {
        format!(
            "codecs [{}] are not supported: rask reads the little-endian bytes codec, optionally followed by \
             zstd, gzip or blosc",
            names()
        )
    };
    let Some((first, rest)) = codecs.split_first() else { return Err(unsupported()) };
    let little = first["configuration"]["endian"] == "little" || dtype.itemsize() == 1;
    if first["name"] != "bytes" || !little {
        return Err(unsupported());
    }
    match rest {
        [] => Ok(Compressor::None),
        [c] if c["name"] == "zstd" => Ok(Compressor::Zstd { level: level_of(&c["configuration"], 0)? }),
        [c] if c["name"] == "gzip" => Ok(Compressor::Gzip { level: level_of(&c["configuration"], 6)? }),
        [c] if c["name"] == "blosc" => v3_blosc(&c["configuration"], dtype),
        _ => Err(unsupported()),
    }
}

/// An optional non-negative integer setting of a codec, `default` when
/// absent or null.
fn uint_of<T: TryFrom<u64>>(c: &Json, key: &str, default: T) -> std::result::Result<T, String> {
    match c.get(key) {
        None | Some(Json::Null) => Ok(default),
        Some(v) => v.as_u64().and_then(|l| T::try_from(l).ok()).ok_or_else(|| format!("bad blosc {key} {v}")),
    }
}

/// Blosc's settings shared by both formats: `cname` (default lz4, as
/// numcodecs), `clevel` 0-9 (default 5) and `blocksize` (0: automatic).
fn blosc_of(c: &Json, shuffle: BloscShuffle) -> std::result::Result<Compressor, String> {
    let cname = match c.get("cname") {
        None | Some(Json::Null) => BloscCname::Lz4,
        Some(Json::String(name)) => BloscCname::parse(name)?,
        Some(v) => return Err(format!("bad blosc cname {v}")),
    };
    let clevel: u8 = uint_of(c, "clevel", 5)?;
    if clevel > 9 {
        return Err(format!("blosc clevel {clevel} is out of range 0-9"));
    }
    Ok(Compressor::Blosc { cname, clevel, shuffle, blocksize: uint_of(c, "blocksize", 0)? })
}

/// A Zarr 3 `blosc` codec's configuration; `shuffle` is a name there.
fn v3_blosc(c: &Json, dtype: DType) -> std::result::Result<Compressor, String> {
    let shuffle = match c.get("shuffle") {
        None | Some(Json::Null) => BloscShuffle::auto(dtype.itemsize()),
        Some(v) => match v.as_str() {
            Some("noshuffle") => BloscShuffle::NoShuffle,
            Some("shuffle") => BloscShuffle::Byte,
            Some("bitshuffle") => BloscShuffle::Bit,
            _ => return Err(format!("bad blosc shuffle {v} (noshuffle, shuffle or bitshuffle)")),
        },
    };
    // The chunks' own headers carry the typesize; this one only has to be
    // well-formed.
    let _: u8 = uint_of(c, "typesize", 1)?;
    blosc_of(c, shuffle)
}

/// A Zarr 2 `compressor` entry (numcodecs ids); `dtype` resolves Blosc's
/// automatic shuffle (-1).
fn v2_compressor(c: &Json, dtype: DType) -> std::result::Result<Compressor, String> {
    if c.is_null() {
        return Ok(Compressor::None);
    }
    match c["id"].as_str() {
        Some("zstd") => Ok(Compressor::Zstd { level: level_of(c, 0)? }),
        Some("gzip") => Ok(Compressor::Gzip { level: level_of(c, 6)? }),
        Some("zlib") => Ok(Compressor::Zlib { level: level_of(c, 6)? }),
        Some("blosc") => {
            let shuffle = match c.get("shuffle").map(|v| (v, v.as_i64())) {
                None | Some((Json::Null, _)) | Some((_, Some(1))) => BloscShuffle::Byte,
                Some((_, Some(-1))) => BloscShuffle::auto(dtype.itemsize()),
                Some((_, Some(0))) => BloscShuffle::NoShuffle,
                Some((_, Some(2))) => BloscShuffle::Bit,
                Some((v, _)) => return Err(format!("bad blosc shuffle {v} (-1, 0, 1 or 2)")),
            };
            blosc_of(c, shuffle)
        }
        _ => Err(format!(
            "compressor {} is not supported: rask reads zstd, gzip, zlib, blosc or uncompressed chunks",
            c["id"]
        )),
    }
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
        let compressor = v3_codecs(&codecs, dtype).map_err(bad)?;
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
            compressor,
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
    let compressor = v2_compressor(&m["compressor"], dtype).map_err(bad)?;
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
        compressor,
    })
}

fn v3_codec_doc(c: Compressor, dtype: DType) -> Result<Json> {
    let bytes = json!({"name": "bytes", "configuration": {"endian": "little"}});
    Ok(match c {
        Compressor::None => json!([bytes]),
        Compressor::Zstd { level } => {
            json!([bytes, {"name": "zstd", "configuration": {"level": level, "checksum": false}}])
        }
        Compressor::Gzip { level } => json!([bytes, {"name": "gzip", "configuration": {"level": level}}]),
        Compressor::Blosc { cname, clevel, shuffle, blocksize } => json!([bytes, {"name": "blosc", "configuration": {
            "typesize": dtype.itemsize(),
            "cname": cname.name(),
            "clevel": clevel,
            "shuffle": shuffle.name(),
            "blocksize": blocksize,
        }}]),
        Compressor::Zlib { .. } => {
            return Err(ArrayError::Value("zlib is a Zarr 2 compressor; Zarr 3 has zstd and gzip".into()));
        }
    })
}

fn v2_compressor_doc(c: Compressor) -> Json {
    match c {
        Compressor::None => Json::Null,
        Compressor::Zstd { level } => json!({"id": "zstd", "level": level}),
        Compressor::Gzip { level } => json!({"id": "gzip", "level": level}),
        Compressor::Zlib { level } => json!({"id": "zlib", "level": level}),
        Compressor::Blosc { cname, clevel, shuffle, blocksize } => json!({
            "id": "blosc",
            "cname": cname.name(),
            "clevel": clevel,
            "shuffle": shuffle.code(),
            "blocksize": blocksize,
        }),
    }
}

/// Checks that `meta` can be written and readies the store for chunks: a
/// local directory is created (on S3 the store is just a key prefix), and
/// the metadata of an array already there is removed, so that a write cut
/// short leaves no metadata and nothing reads as a whole array. The
/// metadata is written last, by [`write_meta`], once every chunk is stored.
pub fn prepare_store(path: &str, meta: &ZarrMeta, options: &StorageOptions) -> Result<()> {
    meta_doc(meta)?;
    let io = |e: rask_storage::StorageError| ArrayError::Value(e.to_string());
    rask_storage::create_dir_all(path).map_err(io)?;
    for name in ["zarr.json", ".zarray"] {
        rask_storage::remove(&rask_storage::join(path, name), options).map_err(io)?;
    }
    Ok(())
}

/// Writes the metadata document for `meta`: after the chunks (see
/// [`prepare_store`]).
pub fn write_meta(path: &str, meta: &ZarrMeta, options: &StorageOptions) -> Result<()> {
    let (name, doc) = meta_doc(meta)?;
    let text = serde_json::to_vec_pretty(&doc).map_err(|e| ArrayError::Value(e.to_string()))?;
    rask_storage::create_dir_all(path).map_err(|e| ArrayError::Value(e.to_string()))?;
    rask_storage::write(&rask_storage::join(path, name), &text, options).map_err(|e| ArrayError::Value(e.to_string()))
}

/// The metadata document's name and JSON for `meta`, or why it cannot be written.
fn meta_doc(meta: &ZarrMeta) -> Result<(&'static str, Json)> {
    if let Compressor::Blosc { cname, clevel, .. } = meta.compressor {
        if !cname.writable() {
            return Err(ArrayError::Value(format!(
                "blosc cname {:?} can be read but not written by rask; write lz4, zstd or zlib",
                cname.name()
            )));
        }
        if clevel > 9 {
            return Err(ArrayError::Value(format!("blosc clevel {clevel} is out of range 0-9")));
        }
    }
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
                "codecs": v3_codec_doc(meta.compressor, meta.dtype)?,
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
                "compressor": v2_compressor_doc(meta.compressor),
                "fill_value": fill,
                "order": "C",
                "filters": null,
                "dimension_separator": meta.separator.to_string(),
            }),
        ),
    };
    Ok((name, doc))
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
        Ok(Some(stored)) => {
            let want = n * p.meta.dtype.itemsize();
            let bytes = p.meta.compressor.decode(&stored, want).map_err(|e| OpError::new(format!("{file}: {e}")))?;
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
    let mut raw = Vec::with_capacity(full.nbytes());
    crate::npy::write_values(&mut raw, &full).map_err(|e| OpError::new(e.to_string()))?;
    let bytes =
        p.meta.compressor.encode(&raw, p.meta.dtype.itemsize()).map_err(|e| OpError::new(format!("{file}: {e}")))?;
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
            compressor: Compressor::None,
        };
        assert_eq!(m.chunk_key(&[1, 0]), "1.0");
        m.format = ZarrFormat::V3;
        m.separator = '/';
        assert_eq!(m.chunk_key(&[1, 0]), "c/1/0");
    }

    #[test]
    fn codecs_round_trip_and_bound_what_they_inflate() {
        let raw: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for c in [
            Compressor::None,
            Compressor::Zstd { level: 0 },
            Compressor::Gzip { level: 6 },
            Compressor::Zlib { level: 1 },
            Compressor::BLOSC_DEFAULT,
            Compressor::Blosc { cname: BloscCname::Zstd, clevel: 3, shuffle: BloscShuffle::Bit, blocksize: 4096 },
        ] {
            let stored = c.encode(&raw, 4).expect("encode");
            assert_eq!(c.decode(&stored, raw.len()).expect("decode"), raw, "{c:?}");
            // Claiming a smaller chunk than the data holds is refused.
            let e = c.decode(&stored, 100).expect_err("too long");
            assert!(e.contains("100"), "{c:?}: {e}");
            // Garbage never panics.
            let _ = c.decode(&stored[..stored.len() / 2], raw.len());
            let _ = c.decode(b"\x28\xb5\x2f\xfd garbage", raw.len());
        }
    }

    #[test]
    fn codec_chains_are_read_or_refused_by_name() {
        let bytes = json!({"name": "bytes", "configuration": {"endian": "little"}});
        let zstd = json!({"name": "zstd", "configuration": {"level": 3, "checksum": false}});
        assert_eq!(v3_codecs(&[bytes.clone(), zstd], DType::F64), Ok(Compressor::Zstd { level: 3 }));
        assert_eq!(v3_codecs(std::slice::from_ref(&bytes), DType::F64), Ok(Compressor::None));
        let big = json!({"name": "bytes", "configuration": {"endian": "big"}});
        assert!(v3_codecs(&[big], DType::F64).is_err());
        assert_eq!(v2_compressor(&json!({"id": "zlib", "level": 1}), DType::F64), Ok(Compressor::Zlib { level: 1 }));
        assert!(v2_compressor(&json!({"id": "lz4"}), DType::F64).expect_err("lz4").contains("lz4"));
        assert!(v2_compressor(&json!({"id": "zstd", "level": 1e10}), DType::F64).is_err());
        // Blosc reads in both formats; snappy and bad settings are named.
        let blosc =
            |config: Json| v3_codecs(&[bytes.clone(), json!({"name": "blosc", "configuration": config})], DType::F64);
        let config = json!({"typesize": 8, "cname": "zstd", "clevel": 7, "shuffle": "bitshuffle", "blocksize": 0});
        let want = Compressor::Blosc { cname: BloscCname::Zstd, clevel: 7, shuffle: BloscShuffle::Bit, blocksize: 0 };
        assert_eq!(blosc(config), Ok(want));
        assert!(blosc(json!({"cname": "snappy"})).expect_err("snappy").contains("snappy"));
        assert!(blosc(json!({"cname": "lz4", "shuffle": "sideways"})).expect_err("shuffle").contains("sideways"));
        assert!(blosc(json!({"cname": "lz4", "clevel": 10})).expect_err("clevel").contains("clevel"));
        let v2 = json!({"id": "blosc", "cname": "lz4hc", "clevel": 1, "shuffle": 0, "blocksize": 65536});
        let want = Compressor::Blosc {
            cname: BloscCname::Lz4Hc,
            clevel: 1,
            shuffle: BloscShuffle::NoShuffle,
            blocksize: 65536,
        };
        assert_eq!(v2_compressor(&v2, DType::F64), Ok(want));
        // numcodecs' automatic shuffle: bits for bytes, bytes otherwise.
        let auto = json!({"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": -1});
        assert!(matches!(v2_compressor(&auto, DType::U8), Ok(Compressor::Blosc { shuffle: BloscShuffle::Bit, .. })));
        assert!(matches!(v2_compressor(&auto, DType::F32), Ok(Compressor::Blosc { shuffle: BloscShuffle::Byte, .. })));
        assert!(v2_compressor(&json!({"id": "blosc", "shuffle": 3}), DType::F64).is_err());
        assert!(
            v2_compressor(&json!({"id": "blosc", "cname": "snappy"}), DType::F64).expect_err("").contains("snappy")
        );
        // Both formats write back what they read.
        for c in [Compressor::BLOSC_DEFAULT, want] {
            assert_eq!(v2_compressor(&v2_compressor_doc(c), DType::F64), Ok(c));
            let doc = v3_codec_doc(c, DType::F64).expect("v3 doc");
            assert_eq!(v3_codecs(doc.as_array().expect("list"), DType::F64), Ok(c));
        }
    }

    #[test]
    fn blosc_writes_are_refused_for_read_only_cnames() {
        let dir = std::env::temp_dir().join(format!("rask-zarr-blosc-meta-{}", std::process::id()));
        let mut meta = ZarrMeta {
            format: ZarrFormat::V2,
            shape: vec![4],
            chunks: vec![4],
            dtype: DType::F64,
            fill_value: 0.0,
            separator: '.',
            compressor: Compressor::Blosc {
                cname: BloscCname::BloscLz,
                clevel: 5,
                shuffle: BloscShuffle::Byte,
                blocksize: 0,
            },
        };
        let path = dir.to_string_lossy().to_string();
        let e = write_meta(&path, &meta, &StorageOptions::default()).expect_err("blosclz");
        assert!(e.to_string().contains("blosclz"), "{e}");
        assert!(!dir.exists(), "nothing is written before the refusal");
        meta.compressor = Compressor::BLOSC_DEFAULT;
        write_meta(&path, &meta, &StorageOptions::default()).expect("lz4 writes");
        let read = read_meta(&path, &StorageOptions::default()).expect("reads back");
        assert_eq!(read.compressor, Compressor::BLOSC_DEFAULT);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
