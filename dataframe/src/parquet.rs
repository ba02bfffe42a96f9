//! Parquet: `read_parquet` with column projection and row-group pruning,
//! and `to_parquet`.
//!
//! Building the graph reads only each file's footer. Every row group is a
//! partition. When a plan starts with filters of the form `column <op>
//! literal` (joined by `&`), row groups whose min/max statistics show no
//! row can pass are not read at all; their partitions are empty. Only the
//! columns the plan needs are decoded.

use std::fs::File;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;
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
}

fn open(path: &str) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let f = File::open(path).map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
    ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| FrameError::Read(format!("{path}: not a Parquet file: {e}")))
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
pub fn inspect(paths: &[String]) -> Result<(Vec<Column>, Vec<RowGroup>)> {
    let mut columns: Option<Vec<Column>> = None;
    let mut groups = Vec::new();
    for path in paths {
        let b = open(path)?;
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
        let b = open(path)?;
        let leaves: Vec<usize> = b
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| spec.projection.contains(f.name()))
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(b.parquet_schema(), leaves);
        let reader = b
            .with_projection(mask)
            .with_row_groups(vec![spec.group.index])
            .with_batch_size(64 * 1024)
            .build()
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

/// Writes one partition as a Parquet file (snappy-compressed, as pandas
/// writes by default) and returns its row count.
pub fn write(batch: &RecordBatch, path: &str) -> Result<usize> {
    let f = File::create(path).map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut w =
        ArrowWriter::try_new(f, batch.schema(), Some(props)).map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
    w.write(batch).map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
    w.close().map_err(|e| FrameError::Read(format!("{path}: {e}")))?;
    Ok(batch.num_rows())
}
