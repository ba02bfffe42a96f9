//! `read_csv`: files split into partitions on record boundaries.
//!
//! Building the graph reads only the header and a sample of the first file
//! (256 kB, as Dask does) to name and type the columns. Each file larger
//! than `blocksize` gets a *scan* task: one pass that tracks quoting and
//! counts lines, and returns for every block the byte offset of the first
//! record that starts in it and that record's line number. Splitting at a
//! newline inside a quoted field would be wrong, and only a pass from the
//! start of the file knows whether a newline is quoted; the pass runs at
//! memchr speed and gives exact line numbers for error messages too. Each
//! partition task then parses its byte range with the `csv` crate, only the
//! columns the plan needs, and runs the plan's steps on the result.
//!
//! A compressed file (`.gz`, `.zst`, `.bz2`, `.xz`, or `compression=`) is
//! one partition, read through its decoder from the start: see
//! [`crate::compression`].

use std::io::Read;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use rask_storage::StorageOptions;
use serde::{Deserialize, Serialize};

use crate::compression::{self, Compression};
use crate::dtype::{Column, dtype_name, parse_dtype};
use crate::error::{FrameError, Result};
use crate::plan::{self, Step};

/// pandas' default missing-value markers.
const DEFAULT_NA: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// Options of [`read_csv`](crate::read_csv), named as in pandas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CsvOptions {
    /// Target bytes per partition; `None` makes one partition per file.
    /// Dask's default is 64 MB.
    pub blocksize: Option<u64>,
    /// Whether the first line names the columns.
    pub header: bool,
    pub sep: u8,
    /// Read only these columns.
    pub usecols: Option<Vec<String>>,
    /// Extra strings read as missing.
    pub na_values: Vec<String>,
    /// Whether pandas' default missing markers apply too.
    pub keep_default_na: bool,
    /// Columns parsed as `datetime64[ns]`.
    pub parse_dates: Vec<String>,
    /// Dtype overrides, by column name (`"float64"`, `"object"`, ...).
    pub dtype: Vec<(String, String)>,
    /// Bytes of the first file read to infer dtypes.
    pub sample: usize,
    /// Split inputs smaller than `blocksize` x cores into smaller blocks, so
    /// that every core has a partition to parse. On by default; setting
    /// `blocksize` explicitly turns it off.
    pub split_for_cores: bool,
    /// Overrides of the AWS environment for `s3://` inputs; they travel
    /// with the read tasks, so workers use them too.
    #[serde(default)]
    pub storage: StorageOptions,
    /// How the files are compressed; by default inferred from each file's
    /// suffix, as pandas' `compression="infer"`. A compressed file is one
    /// partition whatever `blocksize` says.
    #[serde(default)]
    pub compression: Compression,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            blocksize: Some(64_000_000),
            header: true,
            sep: b',',
            usecols: None,
            na_values: Vec::new(),
            keep_default_na: true,
            parse_dates: Vec::new(),
            dtype: Vec::new(),
            sample: 256_000,
            split_for_cores: true,
            storage: StorageOptions::default(),
            compression: Compression::Infer,
        }
    }
}

impl CsvOptions {
    pub fn blocksize(mut self, bytes: Option<u64>) -> Self {
        self.blocksize = bytes;
        self.split_for_cores = false;
        self
    }

    /// The block size to split `total` bytes of input with.
    pub(crate) fn effective_blocksize(&self, total: u64) -> Option<u64> {
        let b = self.blocksize?;
        if !self.split_for_cores {
            return Some(b);
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) as u64;
        Some(b.min(total.div_ceil(cores).max(1 << 20)))
    }
    /// Per-call storage options (endpoint, region, anonymous access).
    pub fn storage_options(mut self, storage: StorageOptions) -> Self {
        self.storage = storage;
        self
    }

    /// How the inputs are compressed (pandas' `compression=`).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The codec `path` is read with under these options.
    pub(crate) fn codec(&self, path: &str) -> Compression {
        self.compression.for_path(path)
    }

    pub fn header(mut self, header: bool) -> Self {
        self.header = header;
        self
    }
    pub fn sep(mut self, sep: u8) -> Self {
        self.sep = sep;
        self
    }
    pub fn usecols(mut self, cols: &[&str]) -> Self {
        self.usecols = Some(cols.iter().map(|c| c.to_string()).collect());
        self
    }
    pub fn na_values(mut self, values: &[&str]) -> Self {
        self.na_values = values.iter().map(|c| c.to_string()).collect();
        self
    }
    pub fn parse_dates(mut self, cols: &[&str]) -> Self {
        self.parse_dates = cols.iter().map(|c| c.to_string()).collect();
        self
    }
    pub fn dtype(mut self, col: &str, dtype: &str) -> Self {
        self.dtype.push((col.to_string(), dtype.to_string()));
        self
    }
}

/// Missing-value markers indexed by length, so the common field that is no
/// marker at all is rejected by one comparison.
struct NaSet {
    by_len: Vec<Vec<Vec<u8>>>,
    /// For each length, the first bytes the markers of that length have,
    /// as a 256-bit set: most fields are ruled out by one bit test.
    firsts: Vec<[u64; 4]>,
}

impl NaSet {
    fn new(options: &CsvOptions) -> Self {
        let mut by_len: Vec<Vec<Vec<u8>>> = Vec::new();
        let defaults = if options.keep_default_na { DEFAULT_NA } else { &[] };
        for n in defaults.iter().map(|s| s.as_bytes()).chain(options.na_values.iter().map(|s| s.as_bytes())) {
            if by_len.len() <= n.len() {
                by_len.resize(n.len() + 1, Vec::new());
            }
            by_len[n.len()].push(n.to_vec());
        }
        let firsts = by_len
            .iter()
            .map(|list| {
                let mut set = [0u64; 4];
                for n in list {
                    let b = n.first().copied().unwrap_or(0);
                    set[usize::from(b >> 6)] |= 1 << (b & 63);
                }
                set
            })
            .collect();
        Self { by_len, firsts }
    }

    #[inline]
    fn contains(&self, field: &[u8]) -> bool {
        let Some(set) = self.firsts.get(field.len()) else { return false };
        let Some(&b) = field.first() else { return !self.by_len[0].is_empty() };
        if set[usize::from(b >> 6)] & (1 << (b & 63)) == 0 {
            return false;
        }
        self.by_len[field.len()].iter().any(|n| n.as_slice() == field)
    }
}

/// One input file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CsvFile {
    pub path: String,
    pub size: u64,
    /// Partitions this file is split into.
    pub parts: usize,
}

/// Everything a partition task needs to parse its range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadSpec {
    pub file: CsvFile,
    pub part: usize,
    /// Partition number across all files, for per-partition steps.
    pub global_part: usize,
    pub blocksize: u64,
    /// Every column of the file, in file order, with its type.
    pub columns: Vec<Column>,
    /// Positions (in `columns`) to parse.
    pub projection: Vec<usize>,
    pub options: CsvOptions,
    pub steps: Vec<Step>,
}

/// Where each block starts: `(byte offset, line number)` of its first record.
pub type Boundaries = Vec<(u64, u64)>;

/// Reads `len` bytes at `offset` of a file or object (one ranged GET on S3).
pub(crate) fn read_range(path: &str, offset: u64, len: u64, storage: &StorageOptions) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    read_range_into(path, offset, len, storage, &mut buf)?;
    Ok(buf)
}

/// Reads `len` bytes at `offset` into `buf`, replacing its contents. On S3
/// this is a ranged GET (concurrent GETs past 8 MiB) of exactly the block.
fn read_range_into(path: &str, offset: u64, len: u64, storage: &StorageOptions, buf: &mut Vec<u8>) -> Result<()> {
    Ok(rask_storage::read_range_into(path, offset, len, storage, buf)?)
}

thread_local! {
    /// The raw bytes of the block this thread parses last, kept so the next
    /// block reuses the memory instead of faulting in fresh pages.
    static BLOCK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Blocks up to this size keep their buffer for the thread's next block.
const KEEP_BLOCK_BYTES: usize = 256 << 20;

/// The file's size, or a clear error if it is missing.
pub(crate) fn file_size(path: &str, storage: &StorageOptions) -> Result<u64> {
    Ok(rask_storage::stat(path, storage)?.size)
}

/// Splits `size` bytes into blocks of `blocksize`.
pub(crate) fn parts_for(size: u64, blocksize: Option<u64>) -> usize {
    match blocksize {
        Some(b) if b > 0 => usize::try_from(size.div_ceil(b)).unwrap_or(usize::MAX).max(1),
        _ => 1,
    }
}

/// One pass over a file: the first record boundary at or after each block
/// start, outside quotes, with its line number.
///
/// On S3 the scan streams the object once with ranged GETs (read-ahead of
/// one piece); the partitions then fetch exactly their line-aligned ranges.
pub fn scan_boundaries(
    path: &str,
    size: u64,
    blocksize: u64,
    parts: usize,
    storage: &StorageOptions,
) -> Result<Boundaries> {
    let mut f = rask_storage::Reader::open(path, size, storage)?;
    scan_reader(&mut f, path, size, blocksize, parts, 1 << 20)
}

/// [`scan_boundaries`] over any reader, `buf_len` bytes at a time.
fn scan_reader(
    f: &mut impl Read,
    path: &str,
    size: u64,
    blocksize: u64,
    parts: usize,
    buf_len: usize,
) -> Result<Boundaries> {
    let mut out: Boundaries = vec![(0, 1)];
    let mut next_target = blocksize;
    let mut buf = vec![0u8; buf_len.max(1)];
    let (mut pos, mut line, mut quoted) = (0u64, 1u64, false);
    while out.len() < parts {
        let n = f.read(&mut buf).map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if !quoted && memchr::memchr(b'"', chunk).is_none() {
            // No quote: every newline ends a record. Jump to the first
            // newline past each block start and count the lines between
            // with vector counts instead of visiting every newline.
            let mut counted = 0usize;
            while out.len() < parts {
                let Ok(from) = usize::try_from(next_target.saturating_sub(pos + 1)) else { break };
                let Some(i) = chunk.get(from..).and_then(|rest| memchr::memchr(b'\n', rest)).map(|o| from + o) else {
                    break;
                };
                line += memchr::memchr_iter(b'\n', &chunk[counted..=i]).count() as u64;
                counted = i + 1;
                let start = pos + counted as u64;
                while start >= next_target && out.len() < parts {
                    out.push((start, line));
                    next_target = next_target.saturating_add(blocksize);
                }
            }
            line += memchr::memchr_iter(b'\n', &chunk[counted..]).count() as u64;
            pos += n as u64;
            continue;
        }
        for i in memchr::memchr2_iter(b'"', b'\n', &buf[..n]) {
            if buf[i] == b'"' {
                quoted = !quoted;
                continue;
            }
            line += 1;
            if quoted {
                continue;
            }
            let start = pos + i as u64 + 1;
            while start >= next_target && out.len() < parts {
                out.push((start, line));
                next_target = next_target.saturating_add(blocksize);
            }
        }
        pos += n as u64;
    }
    // Blocks past the last record boundary are empty.
    while out.len() < parts {
        out.push((size, line));
    }
    Ok(out)
}

/// Column names from a header record, as pandas makes them: an empty name
/// becomes `Unnamed: i`, a repeated one gets `.1`, `.2`, ...
fn column_names(header: &csv::ByteRecord) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let base = String::from_utf8_lossy(raw).trim().to_string();
        let base = if base.is_empty() { format!("Unnamed: {i}") } else { base };
        let mut name = base.clone();
        let mut k = 1;
        while names.contains(&name) {
            name = format!("{base}.{k}");
            k += 1;
        }
        names.push(name);
    }
    names
}

/// What a sample says a column is, in pandas' order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Guess {
    Empty,
    Bool,
    Int,
    Float,
    Str,
}

fn guess(field: &[u8]) -> Guess {
    let Ok(s) = std::str::from_utf8(field) else { return Guess::Str };
    let t = s.trim();
    if t.parse::<i64>().is_ok() {
        Guess::Int
    } else if parse_float(t).is_some() {
        Guess::Float
    } else if parse_bool(t).is_some() {
        Guess::Bool
    } else {
        Guess::Str
    }
}

/// Plain decimal integers straight from bytes; anything else (spaces, a
/// plus sign, overflow) returns `None` for the general parser to judge.
#[inline]
fn parse_i64(field: &[u8]) -> Option<i64> {
    let (neg, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        let x = d.wrapping_sub(b'0');
        if x > 9 {
            return None;
        }
        v = v * 10 + i64::from(x);
    }
    Some(if neg { -v } else { v })
}

fn parse_float(s: &str) -> Option<f64> {
    // Rust also accepts "infinity" and "nan" spellings pandas does.
    s.parse::<f64>().ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "True" | "TRUE" | "true" => Some(true),
        "False" | "FALSE" | "false" => Some(false),
        _ => None,
    }
}

/// The schema of a CSV source: names from the header, types from a sample
/// of the first file, overridden by `dtype` and `parse_dates`.
pub fn infer_schema(path: &str, options: &CsvOptions) -> Result<Vec<(String, DataType)>> {
    let size = file_size(path, &options.storage)?;
    let codec = options.codec(path);
    let (bytes, whole) = if codec.is_compressed() {
        compression::read_prefix(path, size, codec, options.sample, &options.storage)?
    } else {
        let sample_len = (options.sample as u64).min(size);
        (read_range(path, 0, sample_len, &options.storage)?, sample_len == size)
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(options.sep)
        .from_reader(bytes.as_slice());
    let mut rec = csv::ByteRecord::new();
    let mut records: Vec<csv::ByteRecord> = Vec::new();
    loop {
        match reader.read_byte_record(&mut rec) {
            Ok(true) => records.push(rec.clone()),
            Ok(false) => break,
            // The sample may end inside a quoted field; stop there.
            Err(_) if !whole => break,
            Err(e) => return Err(FrameError::Read(format!("{path}: {e}"))),
        }
    }
    // The last record of a partial sample may be cut short.
    if !whole && records.len() > 1 {
        records.pop();
    }
    let (names, rows): (Vec<String>, &[csv::ByteRecord]) = if options.header {
        let Some(first) = records.first() else {
            return Err(FrameError::Read(format!("{path}: the file is empty, there is no header")));
        };
        (column_names(first), &records[1..])
    } else {
        let n = records.first().map_or(0, csv::ByteRecord::len);
        ((0..n).map(|i| i.to_string()).collect(), &records[..])
    };
    let na = NaSet::new(options);
    let mut guesses = vec![Guess::Empty; names.len()];
    let mut has_na = vec![false; names.len()];
    for r in rows {
        for (i, g) in guesses.iter_mut().enumerate() {
            let f = r.get(i).unwrap_or(b"");
            if na.contains(f) {
                has_na[i] = true;
                continue;
            }
            let this = guess(f);
            *g = match (*g, this) {
                (Guess::Empty, x) => x,
                (a, b) if a == b => a,
                (Guess::Int, Guess::Float) | (Guess::Float, Guess::Int) => Guess::Float,
                _ => Guess::Str,
            };
        }
    }
    let mut cols: Vec<(String, DataType)> = names
        .into_iter()
        .zip(guesses)
        .zip(has_na)
        .map(|((name, g), na)| {
            let t = match g {
                // pandas reads an all-missing column, and an integer column
                // with gaps, as float64.
                Guess::Empty | Guess::Float => DataType::Float64,
                Guess::Int if na => DataType::Float64,
                Guess::Int => DataType::Int64,
                Guess::Bool if na => DataType::Utf8,
                Guess::Bool => DataType::Boolean,
                Guess::Str => DataType::Utf8,
            };
            (name, t)
        })
        .collect();
    for c in &options.parse_dates {
        let slot = cols
            .iter_mut()
            .find(|(n, _)| n == c)
            .ok_or_else(|| FrameError::Schema(format!("parse_dates names {c:?}, which is not a column of {path}")))?;
        slot.1 = DataType::Timestamp(TimeUnit::Nanosecond, None);
    }
    for (c, t) in &options.dtype {
        let t = parse_dtype(t)?;
        let slot = cols
            .iter_mut()
            .find(|(n, _)| n == c)
            .ok_or_else(|| FrameError::Schema(format!("dtype names {c:?}, which is not a column of {path}")))?;
        slot.1 = t;
    }
    Ok(cols)
}

/// The schema of the columns a source exposes after `usecols`.
pub fn exposed_schema(columns: &[(String, DataType)], options: &CsvOptions) -> Result<SchemaRef> {
    let fields = columns
        .iter()
        .filter(|(n, _)| options.usecols.as_ref().is_none_or(|u| u.contains(n)))
        .map(|(n, t)| Field::new(n, t.clone(), true))
        .collect::<Vec<_>>();
    if let Some(u) = &options.usecols {
        for c in u {
            if !columns.iter().any(|(n, _)| n == c) {
                return Err(FrameError::Schema(format!("usecols names {c:?}, which is not a column")));
            }
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// A typed column being filled.
enum Builder {
    Int64(Int64Builder),
    Int32(Int32Builder),
    Float64(Float64Builder),
    Float32(Float32Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    Time(TimestampNanosecondBuilder),
}

impl Builder {
    fn new(t: &DataType, cap: usize) -> Result<Self> {
        Ok(match t {
            DataType::Int64 => Builder::Int64(Int64Builder::with_capacity(cap)),
            DataType::Int32 => Builder::Int32(Int32Builder::with_capacity(cap)),
            DataType::Float64 => Builder::Float64(Float64Builder::with_capacity(cap)),
            DataType::Float32 => Builder::Float32(Float32Builder::with_capacity(cap)),
            DataType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(cap)),
            DataType::Utf8 => Builder::Str(StringBuilder::with_capacity(cap, cap * 8)),
            DataType::Timestamp(TimeUnit::Nanosecond, None) => {
                Builder::Time(TimestampNanosecondBuilder::with_capacity(cap))
            }
            other => return Err(FrameError::Schema(format!("read_csv cannot produce {}", dtype_name(other)))),
        })
    }

    fn append_null(&mut self) {
        match self {
            Builder::Int64(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Str(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
        }
    }

    /// Appends a present value; `Err` carries the dtype it failed to parse as.
    fn append(&mut self, field: &[u8]) -> std::result::Result<(), &'static str> {
        let text = || std::str::from_utf8(field).map_err(|_| "valid UTF-8");
        match self {
            Builder::Int64(b) => b.append_value(match parse_i64(field) {
                Some(v) => v,
                None => text()?.trim().parse::<i64>().map_err(|_| "int64")?,
            }),
            Builder::Int32(b) => b.append_value(text()?.trim().parse::<i32>().map_err(|_| "int32")?),
            Builder::Float64(b) => b.append_value(parse_float(text()?.trim()).ok_or("float64")?),
            Builder::Float32(b) => b.append_value(text()?.trim().parse::<f32>().map_err(|_| "float32")?),
            Builder::Bool(b) => b.append_value(parse_bool(text()?.trim()).ok_or("bool")?),
            Builder::Str(b) => b.append_value(text()?),
            Builder::Time(b) => b.append_value(
                arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text()?.trim())
                    .map_err(|_| "datetime64[ns]")?,
            ),
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::Int32(mut b) => Arc::new(b.finish()),
            Builder::Float64(mut b) => Arc::new(b.finish()),
            Builder::Float32(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Str(mut b) => Arc::new(b.finish()),
            Builder::Time(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The error for a value that does not parse as its column's dtype, with
/// the fix spelled out as Dask does.
fn mismatch(path: &str, line: u64, column: &str, value: &[u8], wanted: &str) -> FrameError {
    let shown = String::from_utf8_lossy(value);
    let suggest = match guess(value) {
        Guess::Int | Guess::Float => "float64",
        _ => "object",
    };
    FrameError::Read(format!(
        "{path}:{line}: column {column:?}: value {shown:?} is not {wanted}. Its dtype was inferred from a sample \
         at the start of the data and a later row does not fit; specify the dtype when reading, e.g. \
         dtype={{{column:?}: {suggest:?}}}"
    ))
}

/// Parses one partition: the records in `[start, end)`, then the plan.
pub fn read_partition(spec: &ReadSpec, bounds: Option<&Boundaries>) -> Result<RecordBatch> {
    with_block(spec, bounds, |bytes, first_line| parse_block(spec, bytes, first_line))
}

/// Reads the partition's bytes (into this thread's reused buffer) and
/// hands them to `f` with the line number of the first record.
fn with_block<T>(spec: &ReadSpec, bounds: Option<&Boundaries>, f: impl FnOnce(&[u8], u64) -> Result<T>) -> Result<T> {
    let path = spec.file.path.as_str();
    let ((start, first_line), end) = match bounds {
        Some(b) => {
            let s = *b.get(spec.part).ok_or_else(|| FrameError::Read(format!("{path}: no block {}", spec.part)))?;
            let e = b.get(spec.part + 1).map_or(spec.file.size, |x| x.0);
            (s, e)
        }
        None => ((0, 1), spec.file.size),
    };
    let mut bytes = BLOCK.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let codec = spec.options.codec(path);
    if codec.is_compressed() {
        // The whole file, decoded from its start: one partition.
        compression::read_all_into(path, spec.file.size, codec, &spec.options.storage, &mut bytes)?;
        let result = f(&bytes, 1);
        if bytes.capacity() <= KEEP_BLOCK_BYTES {
            BLOCK.with(|b| *b.borrow_mut() = bytes);
        }
        return result;
    }
    let len = end.saturating_sub(start);
    let want = usize::try_from(len).unwrap_or(usize::MAX);
    if bytes.capacity() < want && want <= KEEP_BLOCK_BYTES {
        // A fresh buffer with room to spare: blocks differ by a few bytes,
        // and growing the kept one would copy it and fault in new pages for
        // every block.
        bytes = Vec::new();
        bytes.reserve_exact(want + want / 8);
    }
    read_range_into(path, start, len, &spec.options.storage, &mut bytes)?;
    let result = f(&bytes, first_line);
    if bytes.capacity() <= KEEP_BLOCK_BYTES {
        BLOCK.with(|b| *b.borrow_mut() = bytes);
    }
    result
}

/// A group-by count fused into a CSV read: the partial aggregation state
/// of `value_counts` (or `groupby(key).size()`) over one string column,
/// counted straight from the parsed bytes with no column built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountSpec {
    /// Position (in `ReadSpec::columns`) of the key column, a string column.
    pub column: usize,
    /// The key column's name in the state table.
    pub key: String,
    /// Names of the count columns of the state table (each holds the count).
    pub counts: Vec<String>,
}

/// Counts the non-missing values of one string column of a partition:
/// the same state table `agg::partial` makes from the parsed column (keys
/// in order of first appearance, then the counts), with the same errors.
pub fn count_partition(spec: &ReadSpec, count: &CountSpec, bounds: Option<&Boundaries>) -> Result<RecordBatch> {
    with_block(spec, bounds, |bytes, first_line| count_block(spec, count, bytes, first_line))
}

/// Distinct byte strings with their counts, in order of first appearance.
/// Each table slot holds the key's first 16 bytes (zero-padded) and its
/// count, so finding a short key touches the table alone: one hash, two
/// word comparisons, no call. Longer keys compare their tail in the arena.
struct ByteCounter {
    table: hashbrown::HashTable<Slot>,
    /// Every distinct key in order of first appearance, its bytes in `arena`.
    entries: Vec<CountEntry>,
    arena: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Slot {
    lo: u64,
    hi: u64,
    len: u32,
    entry: u32,
    count: i64,
}

struct CountEntry {
    hash: u64,
    start: usize,
    end: usize,
    /// A missing-value marker: counted, then left out.
    missing: bool,
}

/// A byte string's first 16 bytes as two little-endian words, zero-padded.
#[inline(always)]
fn padded_words(b: &[u8]) -> (u64, u64) {
    #[inline(always)]
    fn word(s: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[..8]);
        u64::from_le_bytes(w)
    }
    #[inline(always)]
    fn half(s: &[u8]) -> u64 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&s[..4]);
        u64::from(u32::from_le_bytes(w))
    }
    let n = b.len();
    if n >= 16 {
        (word(b), word(&b[8..]))
    } else if n > 8 {
        // The last eight bytes, shifted so byte 8 comes first.
        (word(b), word(&b[n - 8..]) >> (8 * (16 - n)))
    } else if n == 8 {
        (word(b), 0)
    } else if n >= 4 {
        (half(b) | (half(&b[n - 4..]) >> (8 * (8 - n))) << 32, 0)
    } else {
        let mut lo = 0u64;
        for (i, &x) in b.iter().enumerate() {
            lo |= u64::from(x) << (8 * i);
        }
        (lo, 0)
    }
}

/// A fast hash of a byte string from its padded first words (and, for long
/// strings, every further 16 bytes): multiply-folds, as foldhash does.
#[inline(always)]
fn hash_key(b: &[u8], lo: u64, hi: u64) -> u64 {
    const K1: u64 = 0x9E37_79B9_7F4A_7C15;
    const K2: u64 = 0xD1B5_4A32_D192_ED03;
    #[inline(always)]
    fn fold(a: u64, b: u64) -> u64 {
        let p = u128::from(a).wrapping_mul(u128::from(b));
        (p as u64) ^ ((p >> 64) as u64)
    }
    let mut h = fold(lo ^ K1, hi ^ K2 ^ (b.len() as u64));
    if b.len() > 16 {
        for piece in b[16..].chunks(16) {
            let (a, c) = padded_words(piece);
            h = fold(a ^ h ^ K2, c ^ K1);
        }
    }
    h
}

/// [`hash_key`] of a whole byte string.
#[cfg(test)]
fn hash_bytes(b: &[u8]) -> u64 {
    let (lo, hi) = padded_words(b);
    hash_key(b, lo, hi)
}

thread_local! {
    /// The counter of the block this thread counted last, emptied: the next
    /// block reuses its table instead of growing a new one.
    static COUNTER: std::cell::RefCell<Option<ByteCounter>> = const { std::cell::RefCell::new(None) };
}

/// Tables up to this many slots are kept for the thread's next block.
const KEEP_COUNTER_SLOTS: usize = 1 << 20;

impl ByteCounter {
    fn new() -> Self {
        Self { table: hashbrown::HashTable::with_capacity(1024), entries: Vec::new(), arena: Vec::new() }
    }

    /// This thread's kept counter, emptied, or a new one.
    fn take() -> Self {
        match COUNTER.with(|c| c.borrow_mut().take()) {
            Some(mut c) => {
                c.table.clear();
                c.entries.clear();
                c.arena.clear();
                c
            }
            None => Self::new(),
        }
    }

    /// Keeps the counter's memory for the thread's next block.
    fn give_back(self) {
        if self.table.capacity() <= KEEP_COUNTER_SLOTS {
            COUNTER.with(|c| *c.borrow_mut() = Some(self));
        }
    }

    /// Counts `field`; a field not seen before is first judged by `judge`,
    /// which says whether it is missing (or fails).
    #[inline]
    fn add(&mut self, field: &[u8], judge: impl FnOnce(&[u8]) -> Result<bool>) -> Result<()> {
        let (lo, hi) = padded_words(field);
        let hash = hash_key(field, lo, hi);
        let len = field.len() as u32;
        let (entries, arena) = (&self.entries, &self.arena);
        let found = self.table.find_mut(hash, |s| {
            s.lo == lo
                && s.hi == hi
                && s.len == len
                && (len <= 16 || {
                    let e = &entries[s.entry as usize];
                    arena[e.start..e.end] == *field
                })
        });
        if let Some(slot) = found {
            slot.count += 1;
            return Ok(());
        }
        let missing = judge(field)?;
        let entry = u32::try_from(self.entries.len())
            .ok()
            .filter(|_| u32::try_from(field.len()).is_ok())
            .ok_or_else(|| FrameError::Compute("too many distinct values in one partition".into()))?;
        let start = self.arena.len();
        if field.len() > 16 {
            self.arena.extend_from_slice(field);
        }
        self.entries.push(CountEntry { hash, start, end: self.arena.len(), missing });
        let entries = &self.entries;
        self.table.insert_unique(hash, Slot { lo, hi, len, entry, count: 1 }, |s| entries[s.entry as usize].hash);
        Ok(())
    }

    /// The present keys (valid UTF-8, checked when first seen) and their
    /// counts, in order of first appearance.
    fn finish(&self) -> Result<(ArrayRef, Vec<i64>)> {
        let mut slots: Vec<Option<Slot>> = vec![None; self.entries.len()];
        for s in self.table.iter().copied() {
            if let Some(x) = slots.get_mut(s.entry as usize) {
                *x = Some(s);
            }
        }
        let mut keys = StringBuilder::with_capacity(self.entries.len(), self.arena.len() + 16 * self.entries.len());
        let mut counts = Vec::with_capacity(self.entries.len());
        for (e, s) in self.entries.iter().zip(slots) {
            let Some(s) = s else { continue };
            if e.missing {
                continue;
            }
            let mut short = [0u8; 16];
            short[..8].copy_from_slice(&s.lo.to_le_bytes());
            short[8..].copy_from_slice(&s.hi.to_le_bytes());
            let bytes = if s.len <= 16 { &short[..s.len as usize] } else { &self.arena[e.start..e.end] };
            let text =
                std::str::from_utf8(bytes).map_err(|_| FrameError::Compute("a counted key is not UTF-8".into()))?;
            keys.append_value(text);
            counts.push(s.count);
        }
        Ok((Arc::new(keys.finish()), counts))
    }
}

fn count_block(spec: &ReadSpec, count: &CountSpec, bytes: &[u8], first_line: u64) -> Result<RecordBatch> {
    let path = spec.file.path.as_str();
    let name = spec
        .columns
        .get(count.column)
        .filter(|c| c.dtype == DataType::Utf8)
        .map(|c| c.name.as_str())
        .ok_or_else(|| FrameError::Read(format!("{path}: column {} is not a string column", count.column)))?;
    let na = NaSet::new(&spec.options);
    let mut counter = ByteCounter::take();
    let key = count.column;
    let counted = data_records(spec, bytes, first_line, key + 1, |rec| {
        let line = rec.line;
        let f = rec.get(key).unwrap_or(b"");
        counter.add(f, |f| {
            if na.contains(f) {
                Ok(true)
            } else if std::str::from_utf8(f).is_err() {
                Err(mismatch(path, line, name, f, "valid UTF-8"))
            } else {
                Ok(false)
            }
        })
    });
    let finished = counted.and_then(|()| counter.finish());
    counter.give_back();
    let (keys, counts) = finished?;
    let rows = counts.len();
    let mut fields = vec![Field::new(&count.key, DataType::Utf8, true)];
    let mut arrays: Vec<ArrayRef> = vec![keys];
    let counts: ArrayRef = Arc::new(arrow::array::Int64Array::from(counts));
    for c in &count.counts {
        fields.push(Field::new(c, DataType::Int64, true));
        arrays.push(counts.clone());
    }
    plan::with_rows(Arc::new(Schema::new(fields)), arrays, rows)
}

/// Calls `f` for each data record of one block (the header skipped in a
/// file's first block); a record with more fields than the schema, and any
/// error without a place, is an error naming the file and line.
fn data_records(
    spec: &ReadSpec,
    bytes: &[u8],
    first_line: u64,
    wanted: usize,
    mut f: impl FnMut(&crate::tokenize::Record<'_>) -> Result<()>,
) -> Result<()> {
    let path = spec.file.path.as_str();
    let mut skip_header = spec.part == 0 && spec.options.header;
    let ncols = spec.columns.len();
    crate::tokenize::for_each_record(bytes, spec.options.sep, first_line, wanted, |rec| {
        if skip_header {
            skip_header = false;
            return Ok(());
        }
        if rec.len() > ncols {
            return Err(FrameError::Read(format!(
                "{path}:{}: expected {ncols} fields, saw {} (error tokenizing data)",
                rec.line,
                rec.len()
            )));
        }
        f(rec)
    })
    .map_err(|e| match e {
        FrameError::Read(m) if !m.starts_with(path) => FrameError::Read(format!("{path}:{first_line}: {m}")),
        other => other,
    })
}

/// Parses the records of one block into the projected columns, then runs
/// the plan.
fn parse_block(spec: &ReadSpec, bytes: &[u8], first_line: u64) -> Result<RecordBatch> {
    let path = spec.file.path.as_str();
    let columns: Vec<(usize, (&str, &DataType))> = spec
        .projection
        .iter()
        .map(|&i| {
            let c = spec.columns.get(i).ok_or_else(|| FrameError::Read(format!("{path}: no column {i}")))?;
            Ok((i, (c.name.as_str(), &c.dtype)))
        })
        .collect::<Result<_>>()?;
    let estimate = bytes.len() / 32 + 16;
    let mut builders = columns.iter().map(|(_, (_, t))| Builder::new(t, estimate)).collect::<Result<Vec<_>>>()?;
    let na = NaSet::new(&spec.options);
    let mut rows = 0usize;
    let wanted = spec.projection.iter().max().map_or(0, |m| m + 1);
    data_records(spec, bytes, first_line, wanted, |rec| {
        let line = rec.line;
        for (b, (i, (name, _))) in builders.iter_mut().zip(&columns) {
            let f = rec.get(*i).unwrap_or(b"");
            if na.contains(f) {
                b.append_null();
            } else if let Err(wanted) = b.append(f) {
                return Err(mismatch(path, line, name, f, wanted));
            }
        }
        rows += 1;
        Ok(())
    })?;
    let fields: Vec<Field> = columns.iter().map(|(_, (n, t))| Field::new(*n, (*t).clone(), true)).collect();
    let arrays: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect();
    let batch = plan::with_rows(Arc::new(Schema::new(fields)), arrays, rows)?;
    plan::run(&spec.steps, batch, spec.global_part)
}

/// Writes a batch as CSV with a header, as pandas' `to_csv(index=False)`
/// would: missing values empty, booleans `True`/`False`, floats in their
/// shortest exact form.
///
/// The file (or S3 object) appears only once complete: see
/// `rask_storage::Writer`.
pub fn write(batch: &RecordBatch, path: &str, storage: &StorageOptions) -> Result<usize> {
    use arrow::array::{Array, BooleanArray, Float64Array};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let err = |e: csv::Error| FrameError::Read(format!("{path}: {e}"));
    let sink = rask_storage::Writer::create(path, storage)?;
    let mut w = csv::Writer::from_writer(sink);
    w.write_record(batch.schema().fields().iter().map(|f| f.name().as_str())).map_err(err)?;
    let opts = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut cells: Vec<String> = Vec::with_capacity(batch.num_columns());
    for r in 0..batch.num_rows() {
        cells.clear();
        for (c, f) in batch.columns().iter().zip(&formatters) {
            let cell = if c.is_null(r) {
                String::new()
            } else if let Some(x) = c.as_any().downcast_ref::<Float64Array>() {
                let v = x.value(r);
                if v.is_nan() { String::new() } else { format!("{v:?}") }
            } else if let Some(x) = c.as_any().downcast_ref::<BooleanArray>() {
                if x.value(r) { "True".into() } else { "False".into() }
            } else if matches!(c.data_type(), DataType::Timestamp(..)) {
                f.value(r).to_string().replace('T', " ")
            } else {
                f.value(r).to_string()
            };
            cells.push(cell);
        }
        w.write_record(&cells).map_err(err)?;
    }
    w.flush().map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
    let sink = w.into_inner().map_err(|e| FrameError::Read(format!("{path}: {}", e.error())))?;
    sink.finish()?;
    Ok(batch.num_rows())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A CSV file in a directory of its own, removed when dropped.
    struct TempCsv(String, std::path::PathBuf);

    impl std::ops::Deref for TempCsv {
        type Target = str;
        fn deref(&self) -> &str {
            &self.0
        }
    }

    impl Drop for TempCsv {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }

    fn temp_csv(name: &str, text: &str) -> TempCsv {
        let dir = std::env::temp_dir().join(format!("rask-csv-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).expect("create");
        f.write_all(text.as_bytes()).expect("write");
        TempCsv(p.to_string_lossy().into_owned(), dir)
    }

    #[test]
    fn boundaries_skip_quoted_newlines() {
        let text = "a,b\n1,\"x\ny\"\n2,z\n3,\"p\nq\nr\"\n4,w\n";
        let p = temp_csv("quoted.csv", text);
        let size = text.len() as u64;
        for bs in 1..size {
            let parts = parts_for(size, Some(bs));
            let b = scan_boundaries(&p, size, bs, parts, &StorageOptions::default()).expect("scan");
            assert_eq!(b.len(), parts);
            for (off, line) in &b[1..] {
                let off = *off as usize;
                // Every boundary starts a record: right after an unquoted newline.
                assert!(off == text.len() || [4, 12, 16, 26].contains(&off), "bs {bs}: boundary at {off}");
                if off < text.len() {
                    assert_eq!(*line as usize, text[..off].matches('\n').count() + 1);
                }
            }
        }
    }

    /// Boundaries the slow way: every byte, from the start.
    fn reference_boundaries(text: &[u8], blocksize: u64, parts: usize) -> Boundaries {
        let mut out = vec![(0, 1)];
        let (mut line, mut quoted, mut target) = (1u64, false, blocksize);
        for (i, &b) in text.iter().enumerate() {
            if b == b'"' {
                quoted = !quoted;
            } else if b == b'\n' {
                line += 1;
                let start = i as u64 + 1;
                while !quoted && start >= target && out.len() < parts {
                    out.push((start, line));
                    target += blocksize;
                }
            }
        }
        while out.len() < parts {
            out.push((text.len() as u64, line));
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]
        /// The scan's quick path for quote-free pieces and its byte-by-byte
        /// path give the boundaries the slow way gives, wherever the read
        /// pieces end.
        #[test]
        fn scan_matches_the_slow_way(
            data in proptest::collection::vec(proptest::prop_oneof![
                8 => proptest::strategy::Just(b'a'), 3 => proptest::strategy::Just(b'\n'),
                1 => proptest::strategy::Just(b'"'), 2 => proptest::strategy::Just(b','),
            ], 0..300),
            blocksize in 1u64..120,
            buf_len in 1usize..70,
        ) {
            let size = data.len() as u64;
            let parts = parts_for(size, Some(blocksize));
            let got = scan_reader(&mut data.as_slice(), "t", size, blocksize, parts, buf_len).expect("scans");
            proptest::prop_assert_eq!(got, reference_boundaries(&data, blocksize, parts));
        }
    }

    #[test]
    fn names_follow_pandas() {
        let rec = csv::ByteRecord::from(vec!["", "a", "a", "b"]);
        assert_eq!(column_names(&rec), vec!["Unnamed: 0", "a", "a.1", "b"]);
    }

    #[test]
    fn inference_and_mismatch_error() {
        let p = temp_csv("infer.csv", "i,f,s,g,b\n1,1.5,x,1,True\n2,2,y,,False\n3,3,z,3,True\n");
        let cols = infer_schema(&p, &CsvOptions::default()).expect("infers");
        let types: Vec<DataType> = cols.iter().map(|c| c.1.clone()).collect();
        assert_eq!(
            types,
            vec![DataType::Int64, DataType::Float64, DataType::Utf8, DataType::Float64, DataType::Boolean]
        );
        let p2 = temp_csv("later.csv", "id,v\n1,a\n2,b\n2.5,c\n");
        let opts = CsvOptions { sample: 10, ..CsvOptions::default() };
        let cols = infer_schema(&p2, &opts).expect("infers");
        assert_eq!(cols[0].1, DataType::Int64);
        let spec = ReadSpec {
            file: CsvFile {
                path: p2.to_string(),
                size: file_size(&p2, &StorageOptions::default()).expect("size"),
                parts: 1,
            },
            part: 0,
            global_part: 0,
            blocksize: 1 << 20,
            columns: cols.iter().map(|(n, t)| Column::new(n, t.clone())).collect(),
            projection: vec![0, 1],
            options: opts,
            steps: vec![],
        };
        let err = read_partition(&spec, None).expect_err("2.5 is not int64").to_string();
        assert!(
            err.contains(":4:") && err.contains("\"id\"") && err.contains("2.5") && err.contains("float64"),
            "{err}"
        );
    }

    /// Every block of `text` counted in the reader, and parsed then
    /// aggregated: the state tables (or the errors) must be equal.
    fn fused_and_plain(text: &str, key: usize, blocksize: u64, case: &str) -> Vec<(String, String)> {
        let p = temp_csv(&format!("count-{case}.csv"), text);
        let size = text.len() as u64;
        let names = ["a", "b", "c"];
        let columns: Vec<Column> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Column::new(n, if i == 0 { DataType::Int64 } else { DataType::Utf8 }))
            .collect();
        let parts = parts_for(size, Some(blocksize));
        let bounds = scan_boundaries(&p, size, blocksize, parts, &StorageOptions::default()).expect("scan");
        let spec = crate::agg::AggSpec {
            keys: vec![names[key].into()],
            aggs: vec![crate::agg::Agg {
                column: names[key].into(),
                func: crate::agg::AggFunc::Size,
                name: "count".into(),
            }],
            ddof: 1,
            sort: false,
        };
        let count = CountSpec { column: key, key: names[key].into(), counts: vec!["_n0".into()] };
        (0..parts)
            .map(|part| {
                let read = ReadSpec {
                    file: CsvFile { path: p.to_string(), size, parts },
                    part,
                    global_part: part,
                    blocksize,
                    columns: columns.clone(),
                    projection: vec![key],
                    options: CsvOptions::default(),
                    steps: vec![],
                };
                let plain = read_partition(&read, Some(&bounds)).and_then(|b| crate::agg::partial(&spec, &b));
                let fused = count_partition(&read, &count, Some(&bounds));
                (format!("{plain:?}"), format!("{fused:?}"))
            })
            .collect()
    }

    #[test]
    fn fused_counts_equal_parsed_then_counted() {
        let text = "a,b,c\n1,x,\"q,1\"\n2,,NA\r\n\n3,\"x\",\"two\nlines\"\n4,y,n/a\n5,x,\"q,1\"\n6,\"\",z";
        for blocksize in 1..text.len() as u64 + 2 {
            for key in [1, 2] {
                for (plain, fused) in fused_and_plain(text, key, blocksize, "fixed") {
                    assert_eq!(plain, fused, "blocksize {blocksize}, key {key}");
                }
            }
        }
        let bad = fused_and_plain("a,b,c\n1,x,y\n2,x,y,z\n", 1, 1 << 20, "bad");
        assert!(bad[0].1.contains(":3:") && bad[0].1.contains("expected 3 fields"), "{bad:?}");
        assert_eq!(bad[0].0, bad[0].1);
        let invalid = fused_and_plain("a,b,c\n1,x,y\n2,\u{0}\u{0},y\n", 1, 1 << 20, "nul");
        assert_eq!(invalid[0].0, invalid[0].1);
    }

    #[test]
    fn invalid_utf8_in_a_counted_key_is_the_same_error() {
        let p = temp_csv("utf8.csv", "");
        std::fs::write(&*p, b"a,b\n1,x\n2,\xff\xfe\n3,x\n").expect("write");
        let size = file_size(&p, &StorageOptions::default()).expect("size");
        let read = ReadSpec {
            file: CsvFile { path: p.to_string(), size, parts: 1 },
            part: 0,
            global_part: 0,
            blocksize: 1 << 20,
            columns: vec![Column::new("a", DataType::Int64), Column::new("b", DataType::Utf8)],
            projection: vec![1],
            options: CsvOptions::default(),
            steps: vec![],
        };
        let count = CountSpec { column: 1, key: "b".into(), counts: vec!["_n0".into()] };
        let plain = read_partition(&read, None).expect_err("not UTF-8").to_string();
        let fused = count_partition(&read, &count, None).expect_err("not UTF-8").to_string();
        assert_eq!(plain, fused);
        assert!(fused.contains(":3:") && fused.contains("UTF-8"), "{fused}");
    }

    #[test]
    fn byte_hash_separates_short_keys() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..=40usize {
            for v in 0..64u8 {
                let key: Vec<u8> = (0..n).map(|i| v.wrapping_add(i as u8)).collect();
                seen.insert(hash_bytes(&key));
            }
        }
        // 41 lengths x 64 values, minus the one empty key counted 64 times.
        assert_eq!(seen.len(), 40 * 64 + 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
        /// Counting in the reader equals parsing the column and counting it,
        /// for any rows (missing markers, quotes, CRLF) and block size.
        #[test]
        fn fused_counts_match_for_any_rows(
            rows in proptest::collection::vec(
                proptest::collection::vec(proptest::prop_oneof![
                    "[a-c]{0,3}",
                    "(NA|null|nan)",
                    "\"[a-c,\n]{0,4}\"",
                    "\"[a-c]{0,2}\"\"[a-c]{0,2}\"",
                ], 2..3),
                0..30,
            ),
            crlf in proptest::bool::ANY,
            blocksize in 1u64..300,
            key in 1usize..3,
            case in 0u32..1_000_000,
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut text = format!("a,b,c{nl}");
            for (i, r) in rows.iter().enumerate() {
                text.push_str(&format!("{i},{}{nl}", r.join(",")));
            }
            for (plain, fused) in fused_and_plain(&text, key, blocksize, &format!("p{case}")) {
                proptest::prop_assert_eq!(plain, fused);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
        /// Whatever a file holds, inference and parsing return a result:
        /// never a panic, whatever the block size.
        #[test]
        fn arbitrary_files_never_panic(
            data in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(b','), proptest::strategy::Just(b'"'), proptest::strategy::Just(b'\n'),
                proptest::strategy::Just(b'1'), proptest::strategy::Just(b'.'), proptest::num::u8::ANY,
            ], 0..400),
            blocksize in 1u64..200,
            case in 0u32..1_000_000,
        ) {
            let p = temp_csv(&format!("fuzz-{case}.csv"), "");
            std::fs::write(&*p, &data).expect("write");
            let size = data.len() as u64;
            if let Ok(cols) = infer_schema(&p, &CsvOptions::default()) {
                let parts = parts_for(size, Some(blocksize));
                let bounds = scan_boundaries(&p, size, blocksize, parts, &StorageOptions::default())
                    .expect("scan reads the file");
                for part in 0..parts {
                    let spec = ReadSpec {
                        file: CsvFile { path: p.to_string(), size, parts },
                        part,
                        global_part: part,
                        blocksize,
                        columns: cols.iter().map(|(n, t)| Column::new(n, t.clone())).collect(),
                        projection: (0..cols.len()).collect(),
                        options: CsvOptions::default(),
                        steps: vec![],
                    };
                    let _ = read_partition(&spec, Some(&bounds));
                }
            }
        }
    }
}
