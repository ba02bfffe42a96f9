//! The ops dataframe tasks run, registered by name so any worker linked
//! with this crate can run them. Each decodes its parameters and works on
//! one partition or on a list of partial results.

use std::sync::Arc;

use arrow::array::{Array, Float64Array, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use rask_core::ops::OpEntry;
use rask_core::{OpError, Params, TableValue, Value};
use serde::{Deserialize, Serialize};

use crate::agg::{self, AggSpec};
use crate::csv::{self, ReadSpec};
use crate::dtype::Column;
use crate::error::FrameError;
use crate::plan::{self, Step};

pub const CSV_SCAN: &str = "df.csv_scan";
pub const READ_CSV: &str = "df.read_csv";
pub const READ_CSV_COUNT: &str = "df.read_csv_count";
pub const APPLY: &str = "df.apply";
pub const NROWS: &str = "df.nrows";
pub const AGG_PARTIAL: &str = "df.agg_partial";
pub const AGG_COMBINE: &str = "df.agg_combine";
pub const AGG_FINAL: &str = "df.agg_final";
pub const CONCAT: &str = "df.concat";
pub const DISTINCT: &str = "df.distinct";
pub const TOPK: &str = "df.topk";
pub const SORT: &str = "df.sort";
pub const SORT_SAMPLE: &str = "df.sort_sample";
pub const SORT_SPLITTERS: &str = "df.sort_splitters";
pub const RANGE_SPLIT: &str = "df.range_split";
pub const SORT_BUCKET: &str = "df.sort_bucket";
pub const SCALAR: &str = "df.scalar";
pub const HASH_SPLIT: &str = "df.hash_split";
pub const READ_PARQUET: &str = "df.read_parquet";
pub const DESCRIBE: &str = "df.describe";
pub const WRITE_PARQUET: &str = "df.write_parquet";
pub const WRITE_CSV: &str = "df.write_csv";
pub const JOIN: &str = "df.join";

pub(crate) fn params<T: for<'de> Deserialize<'de>>(p: &Params, op: &str) -> Result<T, OpError> {
    postcard::from_bytes(&p.0).map_err(|e| OpError::new(format!("{op}: bad parameters: {e}")))
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Params {
    Params::encode(v)
}

pub(crate) fn table(v: Value, op: &str) -> Result<RecordBatch, OpError> {
    match v {
        Value::Table(t) => Ok(t.batch().clone()),
        other => Err(OpError::new(format!("{op}: expected a table, got {}", other.type_name()))),
    }
}

fn one_table(args: Vec<Value>, op: &str) -> Result<RecordBatch, OpError> {
    match <[Value; 1]>::try_from(args) {
        Ok([v]) => table(v, op),
        Err(_) => Err(OpError::new(format!("{op} takes one table"))),
    }
}

/// A list of tables, as tree reductions pass them.
pub(crate) fn tables(args: Vec<Value>, op: &str) -> Result<Vec<RecordBatch>, OpError> {
    split_tables(args, None, op)
}

/// The single list argument's tables; with `bucket`, each item is a split
/// (a list of buckets) and bucket `b` of each is taken.
fn split_tables(args: Vec<Value>, bucket: Option<usize>, op: &str) -> Result<Vec<RecordBatch>, OpError> {
    match <[Value; 1]>::try_from(args) {
        Ok([v]) => list_tables(&v, bucket, op),
        Err(_) => Err(OpError::new(format!("{op} takes a list"))),
    }
}

fn list_tables(v: &Value, bucket: Option<usize>, op: &str) -> Result<Vec<RecordBatch>, OpError> {
    let Value::List(items) = v else { return Err(OpError::new(format!("{op} takes a list of tables"))) };
    items
        .iter()
        .map(|it| match (bucket, it) {
            (Some(b), Value::List(pieces)) => {
                table(pieces.get(b).cloned().ok_or_else(|| OpError::new(format!("{op}: no bucket {b}")))?, op)
            }
            (Some(_), other) => Err(OpError::new(format!("{op}: expected split tables, got {}", other.type_name()))),
            (None, other) => table(other.clone(), op),
        })
        .collect()
}

fn out(b: RecordBatch) -> Value {
    Value::Table(TableValue::new(b))
}

// ------------------------------------------------------------------ csv

#[derive(Debug, Serialize, Deserialize)]
pub struct ScanParams {
    pub path: String,
    pub size: u64,
    pub blocksize: u64,
    pub parts: usize,
    #[serde(default)]
    pub storage: rask_storage::StorageOptions,
}

fn csv_scan(p: &Params, _args: Vec<Value>) -> Result<Value, OpError> {
    let p: ScanParams = params(p, CSV_SCAN)?;
    let b = csv::scan_boundaries(&p.path, p.size, p.blocksize, p.parts, &p.storage)?;
    Ok(Value::list(
        b.into_iter().map(|(off, line)| {
            Value::list([Value::Int(i64::try_from(off).unwrap_or(i64::MAX)), Value::Int(line as i64)])
        }),
    ))
}

fn boundaries(v: &Value) -> Result<csv::Boundaries, OpError> {
    let bad = || OpError::new("read_csv: malformed block boundaries");
    let Value::List(items) = v else { return Err(bad()) };
    items
        .iter()
        .map(|it| match it {
            Value::List(pair) => match pair.as_ref() {
                [Value::Int(o), Value::Int(l)] => Ok((u64::try_from(*o).map_err(|_| bad())?, *l as u64)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        })
        .collect()
}

fn read_csv(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let spec: ReadSpec = params(p, READ_CSV)?;
    let bounds = match args.first() {
        Some(v) => Some(boundaries(v)?),
        None => None,
    };
    Ok(out(csv::read_partition(&spec, bounds.as_ref())?))
}

/// A read fused with the partial of a count on one string column.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadCountParams {
    pub read: ReadSpec,
    pub count: csv::CountSpec,
}

fn read_csv_count(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: ReadCountParams = params(p, READ_CSV_COUNT)?;
    let bounds = match args.first() {
        Some(v) => Some(boundaries(v)?),
        None => None,
    };
    Ok(out(csv::count_partition(&p.read, &p.count, bounds.as_ref())?))
}

// ------------------------------------------------------------------ row-wise

#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyParams {
    pub steps: Vec<Step>,
    pub part: usize,
}

fn apply(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: ApplyParams = params(p, APPLY)?;
    let batch = one_table(args, APPLY)?;
    Ok(out(plan::run(&p.steps, batch, p.part)?))
}

fn nrows(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let batch = one_table(args, NROWS)?;
    Ok(Value::Int(batch.num_rows() as i64))
}

// ------------------------------------------------------------------ aggregation

/// Final stage parameters: the spec and the result schema.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinalParams {
    pub spec: AggSpec,
    pub fields: Vec<Column>,
    /// Steps on the result (value_counts sorts by count).
    pub then: Vec<Post>,
    /// After a shuffle: which bucket of each split state table to combine.
    pub bucket: Option<usize>,
}

/// What happens to an aggregation's result before it is returned.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Post {
    Sort { by: Vec<String>, ascending: Vec<bool> },
}

pub(crate) fn schema_of(fields: &[Column]) -> Arc<Schema> {
    Arc::new(Schema::new(fields.iter().map(|c| Field::new(&c.name, c.dtype.clone(), true)).collect::<Vec<_>>()))
}

fn agg_partial(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let spec: AggSpec = params(p, AGG_PARTIAL)?;
    Ok(out(agg::partial(&spec, &one_table(args, AGG_PARTIAL)?)?))
}

fn agg_combine(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let spec: AggSpec = params(p, AGG_COMBINE)?;
    Ok(out(agg::combine(&spec, &tables(args, AGG_COMBINE)?)?))
}

fn agg_final(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: FinalParams = params(p, AGG_FINAL)?;
    let inputs = split_tables(args, p.bucket, AGG_FINAL)?;
    let state = agg::combine(&p.spec, &inputs)?;
    let mut result = agg::finalize(&p.spec, &state, &schema_of(&p.fields))?;
    for post in &p.then {
        match post {
            Post::Sort { by, ascending } => result = agg::sort_batch(&result, by, ascending)?,
        }
    }
    Ok(out(result))
}

// ------------------------------------------------------------------ whole-frame

fn concat(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    Ok(out(agg::concat(&tables(args, CONCAT)?)?))
}

fn distinct(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let cols: Vec<String> = params(p, DISTINCT)?;
    let all = agg::concat(&tables(args, DISTINCT)?)?;
    Ok(out(agg::distinct(&all, &cols)?))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TopKParams {
    pub column: String,
    pub n: usize,
    pub largest: bool,
}

fn topk(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: TopKParams = params(p, TOPK)?;
    let all = agg::concat(&tables(args, TOPK)?)?;
    Ok(out(agg::top_k(&all, &p.column, p.n, p.largest)?))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SortParams {
    pub by: Vec<String>,
    pub ascending: Vec<bool>,
}

fn sort(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: SortParams = params(p, SORT)?;
    let all = agg::concat(&tables(args, SORT)?)?;
    Ok(out(agg::sort_batch(&all, &p.by, &p.ascending)?))
}

/// Parameters of the stages of a range-partitioned sort.
#[derive(Debug, Serialize, Deserialize)]
pub struct RangeSortParams {
    pub sort: SortParams,
    /// Output partitions.
    pub parts: usize,
    /// Sample rows per input partition; the bucket an output task takes.
    pub n: usize,
}

fn sort_sample(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: RangeSortParams = params(p, SORT_SAMPLE)?;
    let batch = one_table(args, SORT_SAMPLE)?;
    Ok(out(agg::sort_sample(&batch, &p.sort.by, &p.sort.ascending, p.n)?))
}

fn sort_splitters(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: RangeSortParams = params(p, SORT_SPLITTERS)?;
    let samples = agg::concat(&tables(args, SORT_SPLITTERS)?)?;
    Ok(out(agg::sort_splitters(&samples, &p.sort.by, &p.sort.ascending, p.parts)?))
}

fn range_split(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: RangeSortParams = params(p, RANGE_SPLIT)?;
    let [part, splitters] = <[Value; 2]>::try_from(args)
        .map_err(|_| OpError::new(format!("{RANGE_SPLIT} takes a partition and the splitters")))?;
    let (part, splitters) = (table(part, RANGE_SPLIT)?, table(splitters, RANGE_SPLIT)?);
    let pieces = agg::range_split(&part, &splitters, &p.sort.by, &p.sort.ascending, p.parts)?;
    Ok(Value::list(pieces.into_iter().map(out)))
}

/// Output partition `n` of a range sort: that bucket of every split, in
/// input order, sorted stably.
fn sort_bucket(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: RangeSortParams = params(p, SORT_BUCKET)?;
    let [splits] = <[Value; 1]>::try_from(args).map_err(|_| OpError::new(format!("{SORT_BUCKET} takes the splits")))?;
    let all = agg::concat(&list_tables(&splits, Some(p.n), SORT_BUCKET)?)?;
    Ok(out(agg::sort_batch(&all, &p.sort.by, &p.sort.ascending)?))
}

rask_core::inventory::submit! { OpEntry { name: SORT_SAMPLE, func: sort_sample } }
rask_core::inventory::submit! { OpEntry { name: SORT_SPLITTERS, func: sort_splitters } }
rask_core::inventory::submit! { OpEntry { name: RANGE_SPLIT, func: range_split } }
rask_core::inventory::submit! { OpEntry { name: SORT_BUCKET, func: sort_bucket } }

/// The last column of a one-row table as a plain number.
fn scalar(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let as_int: bool = params(p, SCALAR)?;
    let batch = one_table(args, SCALAR)?;
    let Some(c) = batch.columns().last() else {
        return Err(OpError::new("scalar: the table has no columns"));
    };
    if batch.num_rows() != 1 {
        return Err(OpError::new(format!("scalar: expected one row, got {}", batch.num_rows())));
    }
    if as_int {
        let v = cast(c, &DataType::Int64).map_err(FrameError::from)?;
        let v = v.as_any().downcast_ref::<Int64Array>().ok_or_else(|| OpError::new("scalar: not an integer"))?;
        return Ok(if v.is_null(0) { Value::None } else { Value::Int(v.value(0)) });
    }
    let v = cast(c, &DataType::Float64).map_err(FrameError::from)?;
    let v = v.as_any().downcast_ref::<Float64Array>().ok_or_else(|| OpError::new("scalar: not a number"))?;
    Ok(Value::Float(if v.is_null(0) { f64::NAN } else { v.value(0) }))
}

// ------------------------------------------------------------------ describe

/// pandas' quantile with linear interpolation over sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q * last as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b) = (sorted[lo.min(last)], sorted[hi.min(last)]);
    Some(a + (b - a) * (pos - lo as f64))
}

fn describe(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    use arrow::array::{Float64Array, StringArray};
    let columns: Vec<String> = params(p, DESCRIBE)?;
    let parts = tables(args, DESCRIBE)?;
    let stats = ["count", "mean", "std", "min", "25%", "50%", "75%", "max"];
    let mut out: Vec<arrow::array::ArrayRef> = vec![Arc::new(StringArray::from(stats.to_vec()))];
    let mut fields = vec![Field::new("statistic", DataType::Utf8, false)];
    for c in &columns {
        let mut v: Vec<f64> = Vec::new();
        for b in &parts {
            let a = b.column_by_name(c).ok_or_else(|| OpError::new(format!("describe: no column {c:?}")))?;
            let a = cast(a, &DataType::Float64).map_err(FrameError::from)?;
            let a = a.as_any().downcast_ref::<Float64Array>().ok_or_else(|| OpError::new("not numeric"))?;
            v.extend(a.iter().flatten().filter(|x| !x.is_nan()));
        }
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = (n > 0.0).then(|| v.iter().sum::<f64>() / n);
        let std =
            mean.filter(|_| n > 1.0).map(|m| (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt());
        let col: Float64Array = vec![
            Some(n),
            mean,
            std,
            v.first().copied(),
            quantile(&v, 0.25),
            quantile(&v, 0.5),
            quantile(&v, 0.75),
            v.last().copied(),
        ]
        .into_iter()
        .collect();
        out.push(Arc::new(col));
        fields.push(Field::new(c, DataType::Float64, true));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), out).map_err(FrameError::from)?;
    Ok(Value::Table(TableValue::new(batch)))
}

rask_core::inventory::submit! { OpEntry { name: DESCRIBE, func: describe } }

// ------------------------------------------------------------------ files

fn read_parquet(p: &Params, _args: Vec<Value>) -> Result<Value, OpError> {
    let spec: crate::parquet::ParquetRead = params(p, READ_PARQUET)?;
    Ok(out(crate::parquet::read(&spec)?))
}

/// Parameters of a partition write: where, and the per-call S3 settings.
#[derive(Debug, Serialize, Deserialize)]
pub struct WriteParams {
    pub path: String,
    pub storage: rask_storage::StorageOptions,
}

fn write_parquet(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let w: WriteParams = params(p, WRITE_PARQUET)?;
    let batch = one_table(args, WRITE_PARQUET)?;
    Ok(Value::Int(crate::parquet::write(&batch, &w.path, &w.storage)? as i64))
}

fn write_csv(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let w: WriteParams = params(p, WRITE_CSV)?;
    let batch = one_table(args, WRITE_CSV)?;
    Ok(Value::Int(csv::write(&batch, &w.path, &w.storage)? as i64))
}

rask_core::inventory::submit! { OpEntry { name: READ_PARQUET, func: read_parquet } }
rask_core::inventory::submit! { OpEntry { name: WRITE_PARQUET, func: write_parquet } }
rask_core::inventory::submit! { OpEntry { name: WRITE_CSV, func: write_csv } }

// ------------------------------------------------------------------ joins

#[derive(Debug, Serialize, Deserialize)]
pub struct SplitParams {
    pub on: Vec<String>,
    pub buckets: usize,
}

fn hash_split(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: SplitParams = params(p, HASH_SPLIT)?;
    let batch = one_table(args, HASH_SPLIT)?;
    Ok(Value::list(crate::join::hash_split(&batch, &p.on, p.buckets)?.into_iter().map(out)))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinParams {
    pub spec: crate::join::JoinSpec,
    /// With a shuffle: which bucket of each split input to take.
    pub bucket: Option<usize>,
    pub left_fields: Vec<Column>,
    pub right_fields: Vec<Column>,
}

/// Collects one side's input: whole tables, or bucket `b` of split lists.
fn side(v: &Value, bucket: Option<usize>, fields: &[Column], op: &str) -> Result<RecordBatch, OpError> {
    let batches = list_tables(v, bucket, op)?;
    Ok(arrow::compute::concat_batches(&schema_of(fields), &batches).map_err(FrameError::from)?)
}

fn join(p: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let p: JoinParams = params(p, JOIN)?;
    let [l, r] = <[Value; 2]>::try_from(args).map_err(|_| OpError::new("df.join takes two sides"))?;
    let left = side(&l, p.bucket, &p.left_fields, JOIN)?;
    let right = side(&r, p.bucket, &p.right_fields, JOIN)?;
    Ok(out(crate::join::join(&left, &right, &p.spec)?))
}

rask_core::inventory::submit! { OpEntry { name: HASH_SPLIT, func: hash_split } }
rask_core::inventory::submit! { OpEntry { name: JOIN, func: join } }
rask_core::inventory::submit! { OpEntry { name: CSV_SCAN, func: csv_scan } }
rask_core::inventory::submit! { OpEntry { name: READ_CSV, func: read_csv } }
rask_core::inventory::submit! { OpEntry { name: READ_CSV_COUNT, func: read_csv_count } }
rask_core::inventory::submit! { OpEntry { name: APPLY, func: apply } }
rask_core::inventory::submit! { OpEntry { name: NROWS, func: nrows } }
rask_core::inventory::submit! { OpEntry { name: AGG_PARTIAL, func: agg_partial } }
rask_core::inventory::submit! { OpEntry { name: AGG_COMBINE, func: agg_combine } }
rask_core::inventory::submit! { OpEntry { name: AGG_FINAL, func: agg_final } }
rask_core::inventory::submit! { OpEntry { name: CONCAT, func: concat } }
rask_core::inventory::submit! { OpEntry { name: DISTINCT, func: distinct } }
rask_core::inventory::submit! { OpEntry { name: TOPK, func: topk } }
rask_core::inventory::submit! { OpEntry { name: SORT, func: sort } }
rask_core::inventory::submit! { OpEntry { name: SCALAR, func: scalar } }
