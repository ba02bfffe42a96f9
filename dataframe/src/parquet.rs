//! Parquet: `read_parquet` with column projection and row-group pruning,
//! and `to_parquet`.
//!
//! Building the graph reads only each file's footer. Every row group is a
//! partition. When a plan starts with filters of the form `column <op>
//! literal` (joined by `&`), row groups whose min/max statistics show no
//! row can pass are not read at all; their partitions are empty. Only the
//! columns the plan needs are decoded.
//!
//! On S3 nothing is read that the plan does not need: building the frame
//! reads each footer with one suffix-range GET, and a partition task
//! fetches the footer and its row group's needed column chunks (concurrent
//! ranged GETs), then decodes from those buffers ([`RangedObject`]).

use std::fs::File;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::{Buf, Bytes};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaDataReader, RowGroupMetaData};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;
use rask_storage::StorageOptions;
use serde::{Deserialize, Serialize};

use crate::dtype::Column;
use crate::error::{FrameError, Result};
use crate::expr::{BinOp, Expr, Lit};
use crate::plan::{self, Step};

/// One row group of one file, with the numeric min/max of each column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowGroup {
    pub path: String,
    pub index: usize,
    pub rows: i64,
    /// `(column, min, max)` where the file has statistics.
    pub stats: Vec<(String, f64, f64)>,
}

/// A partition read: which row group, which columns, which steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParquetRead {
    pub group: RowGroup,
    pub part: usize,
    /// Every column of the file's schema, as the frame types it.
    pub columns: Vec<Column>,
    pub projection: Vec<String>,
    pub steps: Vec<Step>,
    /// Statistics showed no row can pass the filters.
    pub pruned: bool,
    #[serde(default)]
    pub storage: StorageOptions,
}

/// Bytes of the end of an object fetched for its footer: most footers fit,
/// so one request reads it; a larger one costs one more.
const FOOTER_GUESS: u64 = 64 << 10;

/// An S3 object seen through the byte ranges already fetched from it. The
/// Parquet reader asks for footer, page headers and pages; they are served
/// from the fetched pieces, and anything else is one more ranged GET.
#[derive(Debug)]
pub struct RangedObject {
    url: String,
    size: u64,
    storage: StorageOptions,
    /// `(offset, bytes)`, sorted by offset.
    pieces: Vec<(u64, Bytes)>,
}

impl RangedObject {
    /// The object's footer and size, from one suffix-range GET.
    fn footer(url: &str, storage: &StorageOptions) -> Result<Self> {
        let (tail, size) = rask_storage::read_tail(url, FOOTER_GUESS, storage)?;
        let start = size.saturating_sub(tail.len() as u64);
        Ok(RangedObject { url: url.to_string(), size, storage: storage.clone(), pieces: vec![(start, tail)] })
    }

    /// Fetches `ranges` (concurrently, neighbours merged) and keeps them.
    fn fetch(&mut self, ranges: &[(u64, u64)]) -> Result<()> {
        let ranges = coalesce(ranges, COALESCE_GAP);
        let fetched = rask_storage::read_ranges(&self.url, &ranges, &self.storage)?;
        self.pieces.extend(ranges.iter().map(|r| r.0).zip(fetched));
        self.pieces.sort_by_key(|p| p.0);
        Ok(())
    }

    /// The fetched bytes from `start` to the end of the piece holding it.
    fn piece_from(&self, start: u64) -> Option<Bytes> {
        let i = self.pieces.partition_point(|p| p.0 <= start).checked_sub(1)?;
        let (off, bytes) = &self.pieces[i];
        let skip = usize::try_from(start - off).ok()?;
        (skip < bytes.len()).then(|| bytes.slice(skip..))
    }

    fn missing(&self, start: u64, len: u64) -> parquet::errors::Result<Bytes> {
        tracing::debug!(url = %self.url, start, len, "Parquet range outside the fetched chunks");
        rask_storage::read_range(&self.url, start, len, &self.storage).map_err(|e| ParquetError::External(Box::new(e)))
    }
}

/// Column chunks closer than this are fetched as one range: a request
/// costs more than reading a few unneeded bytes.
const COALESCE_GAP: u64 = 64 << 10;

/// Sorted `(offset, len)` ranges with neighbours closer than `gap` merged.
fn coalesce(ranges: &[(u64, u64)], gap: u64) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = ranges.iter().copied().filter(|r| r.1 > 0).collect();
    sorted.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (o, n) in sorted {
        match out.last_mut() {
            Some((lo, len)) if o <= *lo + *len + gap => *len = (*len).max(o + n - *lo),
            _ => out.push((o, n)),
        }
    }
    out
}

impl Length for RangedObject {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for RangedObject {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        match self.piece_from(start) {
            Some(b) => Ok(b.reader()),
            None => Ok(self.missing(start, (1 << 20).min(self.size.saturating_sub(start)))?.reader()),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self.piece_from(start) {
            Some(b) if b.len() >= length => Ok(b.slice(..length)),
            _ => self.missing(start, length as u64),
        }
    }
}

/// A file's footer: local files through `File`, S3 objects through a
/// [`RangedObject`] holding the fetched end of the object.
fn footer(path: &str, storage: &StorageOptions) -> Result<(ArrowReaderMetadata, Option<RangedObject>)> {
    let bad = |e: ParquetError| FrameError::Read(format!("{path}: not a Parquet file: {e}"));
    if rask_storage::is_s3(path) {
        let object = RangedObject::footer(path, storage)?;
        let meta = ParquetMetaDataReader::new().parse_and_finish(&object).map_err(bad)?;
        let meta = ArrowReaderMetadata::try_new(Arc::new(meta), Default::default()).map_err(bad)?;
        return Ok((meta, Some(object)));
    }
    let local = rask_storage::local_path(path)?.unwrap_or_else(|| path.into());
    let f = File::open(&local).map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
    Ok((ArrowReaderMetadata::load(&f, Default::default()).map_err(bad)?, None))
}

/// The frame type of a Parquet column: strings as `Utf8`, times in
/// nanoseconds, so frames read from Parquet and CSV agree.
fn frame_type(t: &DataType) -> DataType {
    match t {
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Nanosecond, None),
        DataType::Dictionary(_, v) => frame_type(v),
        other => other.clone(),
    }
}

fn stats_of(rg: &RowGroupMetaData, names: &[String]) -> Vec<(String, f64, f64)> {
    let mut out = Vec::new();
    for (i, c) in rg.columns().iter().enumerate() {
        let Some(name) = names.get(i) else { continue };
        let range = match c.statistics() {
            Some(Statistics::Int32(s)) => s.min_opt().zip(s.max_opt()).map(|(a, b)| (f64::from(*a), f64::from(*b))),
            Some(Statistics::Int64(s)) => s.min_opt().zip(s.max_opt()).map(|(a, b)| (*a as f64, *b as f64)),
            Some(Statistics::Double(s)) => s.min_opt().zip(s.max_opt()).map(|(a, b)| (*a, *b)),
            Some(Statistics::Float(s)) => s.min_opt().zip(s.max_opt()).map(|(a, b)| (f64::from(*a), f64::from(*b))),
            _ => None,
        };
        if let Some((lo, hi)) = range
            && !lo.is_nan()
            && !hi.is_nan()
        {
            out.push((name.clone(), lo, hi));
        }
    }
    out
}

/// Footer metadata of the files: the schema of the first and every row group.
pub fn inspect(paths: &[String], storage: &StorageOptions) -> Result<(Vec<Column>, Vec<RowGroup>)> {
    let mut columns: Option<Vec<Column>> = None;
    let mut groups = Vec::new();
    for path in paths {
        let (b, _) = footer(path, storage)?;
        let cols: Vec<Column> =
            b.schema().fields().iter().map(|f| Column::new(f.name(), frame_type(f.data_type()))).collect();
        match &columns {
            None => columns = Some(cols.clone()),
            Some(first) if *first != cols => {
                return Err(FrameError::Read(format!("{path}: its columns differ from the first file's")));
            }
            Some(_) => {}
        }
        // Statistics are per leaf column; flat schemas map one to one.
        let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
        for (index, rg) in b.metadata().row_groups().iter().enumerate() {
            groups.push(RowGroup { path: path.clone(), index, rows: rg.num_rows(), stats: stats_of(rg, &names) });
        }
    }
    Ok((columns.unwrap_or_default(), groups))
}

/// Whether statistics prove that no row of the group passes the plan's
/// leading filters.
pub fn prunable(group: &RowGroup, steps: &[Step]) -> bool {
    for s in steps {
        match s {
            Step::Filter(e) => {
                if excluded(group, e) {
                    return true;
                }
            }
            Step::Select(_) | Step::DropNa { .. } => {}
            // Later steps may change what names mean.
            _ => return false,
        }
    }
    false
}

fn excluded(group: &RowGroup, e: &Expr) -> bool {
    let num = |l: &Lit| match l {
        Lit::Int(i) => Some(*i as f64),
        Lit::Float(f) => Some(*f),
        _ => None,
    };
    match e {
        Expr::Bin(BinOp::And, a, b) => excluded(group, a) || excluded(group, b),
        Expr::Bin(op, a, b) => {
            let (c, v, op) = match (a.as_ref(), b.as_ref()) {
                (Expr::Col(c), Expr::Lit(l)) => (c, num(l), *op),
                (Expr::Lit(l), Expr::Col(c)) => (c, num(l), flip(*op)),
                _ => return false,
            };
            let (Some(v), Some((_, lo, hi))) = (v, group.stats.iter().find(|s| &s.0 == c)) else { return false };
            match op {
                BinOp::Gt => *hi <= v,
                BinOp::Ge => *hi < v,
                BinOp::Lt => *lo >= v,
                BinOp::Le => *lo > v,
                BinOp::Eq => v < *lo || v > *hi,
                _ => false,
            }
        }
        _ => false,
    }
}

fn flip(op: BinOp) -> BinOp {
    match op {
        BinOp::Gt => BinOp::Lt,
        BinOp::Ge => BinOp::Le,
        BinOp::Lt => BinOp::Gt,
        BinOp::Le => BinOp::Ge,
        other => other,
    }
}

/// Reads one row group (or nothing, when pruned) and runs the steps.
pub fn read(spec: &ParquetRead) -> Result<RecordBatch> {
    let fields: Vec<Field> = spec
        .columns
        .iter()
        .filter(|c| spec.projection.contains(&c.name))
        .map(|c| Field::new(&c.name, c.dtype.clone(), true))
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let batch = if spec.pruned {
        RecordBatch::new_empty(schema.clone())
    } else {
        let path = spec.group.path.as_str();
        let (meta, object) = footer(path, &spec.storage)?;
        let roots: Vec<usize> = meta
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| spec.projection.contains(f.name()))
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(meta.parquet_schema(), roots.clone());
        let reader = match object {
            Some(mut object) => {
                // Only this row group's chunks of the needed columns.
                let rg = meta.metadata().row_groups().get(spec.group.index).ok_or_else(|| {
                    FrameError::Read(format!("{path}: no row group {} (was the file rewritten?)", spec.group.index))
                })?;
                let schema = meta.parquet_schema();
                let ranges: Vec<(u64, u64)> = (0..rg.num_columns())
                    .filter(|&leaf| roots.contains(&schema.get_column_root_idx(leaf)))
                    .map(|leaf| rg.column(leaf).byte_range())
                    .collect();
                object.fetch(&ranges)?;
                projected(ParquetRecordBatchReaderBuilder::new_with_metadata(object, meta), mask, spec.group.index)
            }
            None => {
                let local = rask_storage::local_path(path)?.unwrap_or_else(|| path.into());
                let f = File::open(&local).map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
                projected(ParquetRecordBatchReaderBuilder::new_with_metadata(f, meta), mask, spec.group.index)
            }
        }
        .map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
        let mut batches = Vec::new();
        for b in reader {
            let b = b.map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
            let arrays = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(a, f)| if a.data_type() == f.data_type() { Ok(a.clone()) } else { Ok(cast(a, f.data_type())?) })
                .collect::<Result<Vec<ArrayRef>>>()?;
            batches.push(plan::with_rows(schema.clone(), arrays, b.num_rows())?);
        }
        arrow::compute::concat_batches(&schema, &batches)?
    };
    plan::run(&spec.steps, batch, spec.part)
}

/// A reader of one row group's projected columns.
fn projected<R: ChunkReader + 'static>(
    builder: ParquetRecordBatchReaderBuilder<R>,
    mask: ProjectionMask,
    row_group: usize,
) -> parquet::errors::Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    builder.with_projection(mask).with_row_groups(vec![row_group]).with_batch_size(64 * 1024).build()
}

/// Writes one partition as a Parquet file (snappy-compressed, as pandas
/// writes by default) and returns its row count. The file or S3 object
/// appears only once complete (`rask_storage::Writer`: multipart upload
/// for large objects).
pub fn write(batch: &RecordBatch, path: &str, storage: &StorageOptions) -> Result<usize> {
    let f = rask_storage::Writer::create(path, storage)?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut w =
        ArrowWriter::try_new(f, batch.schema(), Some(props)).map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
    w.write(batch).map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
    w.into_inner().map_err(|e| FrameError::Read(format!("{path}: {e}")))?.finish()?;
    Ok(batch.num_rows())
}

#[cfg(test)]
mod tests {
    use super::coalesce;

    #[test]
    fn neighbouring_ranges_merge() {
        assert_eq!(coalesce(&[(100, 10), (0, 50), (50, 20)], 0), vec![(0, 70), (100, 10)]);
        assert_eq!(coalesce(&[(100, 10), (0, 50), (50, 20)], 30), vec![(0, 110)]);
        assert_eq!(coalesce(&[(0, 100), (10, 5), (200, 0)], 0), vec![(0, 100)]);
    }
}
