//! Hash aggregation in three stages, as the array reductions do: a
//! *partial* per partition turns rows into per-group states, *combine*
//! merges state tables (a tree of them), and *finalize* turns states into
//! results. States are small Arrow tables: the key columns, then for each
//! aggregation the columns its state needs (a count, a sum, a running mean
//! and sum of squared deviations merged with Chan's formula for var/std, or
//! the row that holds the min/max so any orderable type works).

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, UInt32Array, make_comparator,
};
use arrow::compute::{SortColumn, SortOptions, cast, concat_batches, lexsort_to_indices, take, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::dtype::{dtype_name, is_integer, is_numeric};
use crate::error::{FrameError, Result};
use crate::plan::{valid_mask, with_rows};

/// An aggregation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggFunc {
    Count,
    Size,
    Sum,
    Mean,
    Min,
    Max,
    Var,
    Std,
}

impl AggFunc {
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::Count => "count",
            AggFunc::Size => "size",
            AggFunc::Sum => "sum",
            AggFunc::Mean => "mean",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Var => "var",
            AggFunc::Std => "std",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "count" => AggFunc::Count,
            "size" => AggFunc::Size,
            "sum" => AggFunc::Sum,
            "mean" => AggFunc::Mean,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "var" => AggFunc::Var,
            "std" => AggFunc::Std,
            other => return Err(FrameError::Schema(format!("unknown aggregation {other:?}"))),
        })
    }

    /// Whether the function needs numbers.
    fn numeric(self) -> bool {
        matches!(self, AggFunc::Sum | AggFunc::Mean | AggFunc::Var | AggFunc::Std)
    }
}

/// One output column: `func` over input column `column`, named `name`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agg {
    pub column: String,
    pub func: AggFunc,
    pub name: String,
}

/// A whole aggregation: group keys (none for a whole-frame reduction) and
/// the output columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggSpec {
    pub keys: Vec<String>,
    pub aggs: Vec<Agg>,
    /// Delta degrees of freedom for var/std (pandas' default is 1).
    pub ddof: u32,
    /// Sort the result by the keys, as pandas' `groupby(sort=True)` does.
    pub sort: bool,
}

impl AggSpec {
    /// The result schema over an input schema, checking the columns.
    pub fn output_schema(&self, input: &Schema) -> Result<Schema> {
        let mut fields = Vec::new();
        for k in &self.keys {
            fields.push(crate::plan::field(input, k)?.clone());
        }
        for a in &self.aggs {
            let t = crate::plan::field(input, &a.column)?.data_type();
            if a.func.numeric() && !is_numeric(t) {
                return Err(FrameError::Schema(format!(
                    "cannot take the {} of column {:?} of dtype {}",
                    a.func.name(),
                    a.column,
                    dtype_name(t)
                )));
            }
            let out = match a.func {
                AggFunc::Count | AggFunc::Size => DataType::Int64,
                AggFunc::Sum if is_integer(t) => DataType::Int64,
                AggFunc::Sum | AggFunc::Mean | AggFunc::Var | AggFunc::Std => DataType::Float64,
                AggFunc::Min | AggFunc::Max => t.clone(),
            };
            fields.push(Field::new(&a.name, out, true));
        }
        Ok(Schema::new(fields))
    }
}

/// Groups rows by key columns: each row's group id (or `None` for rows with
/// a null key, which pandas drops) and the first row of every group.
pub(crate) fn group_rows(keys: &[ArrayRef], rows: usize) -> Result<(Vec<Option<u32>>, Vec<u32>)> {
    if keys.is_empty() {
        return Ok((vec![Some(0); rows], vec![0]));
    }
    let valid: Vec<BooleanArray> = keys.iter().map(valid_mask).collect::<Result<_>>()?;
    let present = |r: usize| valid.iter().all(|v| v.value(r));
    // One string key is the common case (value_counts, groupby on a label);
    // hashing the strings directly avoids building row encodings.
    if let [k] = keys
        && let Some(s) = k.as_any().downcast_ref::<arrow::array::StringArray>()
    {
        return Ok(assign_ids(rows, present, |r| s.value(r)));
    }
    let converter = RowConverter::new(keys.iter().map(|k| SortField::new(k.data_type().clone())).collect())?;
    let encoded = converter.convert_columns(keys)?;
    Ok(assign_ids(rows, present, |r| encoded.row(r)))
}

/// Numbers distinct keys in order of first appearance: each row's id (or
/// `None` where `present` says its key is missing) and each id's first row.
fn assign_ids<K: std::hash::Hash + Eq>(
    rows: usize,
    present: impl Fn(usize) -> bool,
    key: impl Fn(usize) -> K,
) -> (Vec<Option<u32>>, Vec<u32>) {
    let mut ids = Vec::with_capacity(rows);
    let mut firsts: Vec<u32> = Vec::new();
    let mut map: FxHashMap<K, u32> = FxHashMap::default();
    for r in 0..rows {
        if !present(r) {
            ids.push(None);
            continue;
        }
        let next = firsts.len() as u32;
        let id = *map.entry(key(r)).or_insert_with(|| {
            firsts.push(r as u32);
            next
        });
        ids.push(Some(id));
    }
    (ids, firsts)
}

fn f64s(a: &ArrayRef) -> Result<Float64Array> {
    let c = cast(a, &DataType::Float64)?;
    c.as_any().downcast_ref::<Float64Array>().cloned().ok_or_else(|| FrameError::Compute("not numeric".into()))
}

fn i64s(a: &ArrayRef) -> Result<Int64Array> {
    let c = cast(a, &DataType::Int64)?;
    c.as_any().downcast_ref::<Int64Array>().cloned().ok_or_else(|| FrameError::Compute("not an integer".into()))
}

fn col<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| FrameError::Compute(format!("no column {name:?} in partition")))
}

/// Index of the row holding each group's min (or max), skipping missing.
fn arg_extreme(a: &ArrayRef, ids: &[Option<u32>], groups: usize, max: bool) -> Result<Vec<Option<u32>>> {
    let valid = valid_mask(a)?;
    let cmp = make_comparator(a.as_ref(), a.as_ref(), SortOptions::default())?;
    let mut best: Vec<Option<u32>> = vec![None; groups];
    for (r, id) in ids.iter().enumerate() {
        let Some(g) = id else { continue };
        if !valid.value(r) {
            continue;
        }
        let slot = &mut best[*g as usize];
        let better = match slot {
            None => true,
            Some(b) => {
                let o = cmp(r, *b as usize);
                if max { o == Ordering::Greater } else { o == Ordering::Less }
            }
        };
        if better {
            *slot = Some(r as u32);
        }
    }
    Ok(best)
}

fn take_opt(a: &ArrayRef, rows: &[Option<u32>]) -> Result<ArrayRef> {
    let idx: UInt32Array = rows.iter().copied().collect();
    Ok(take(a.as_ref(), &idx, None)?)
}

/// State column names of aggregation `i`.
fn state_names(i: usize) -> [String; 3] {
    [format!("_n{i}"), format!("_s{i}"), format!("_q{i}")]
}

/// Per-group sums of a numeric column (ints stay ints), counts and, for
/// var/std, running means and squared deviations.
struct Moments {
    n: Vec<i64>,
    sum_f: Vec<f64>,
    sum_i: Vec<i64>,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    fn new(groups: usize) -> Self {
        Self {
            n: vec![0; groups],
            sum_f: vec![0.0; groups],
            sum_i: vec![0; groups],
            mean: vec![0.0; groups],
            m2: vec![0.0; groups],
        }
    }

    /// Welford's update, one value at a time.
    fn push(&mut self, g: usize, x: f64) {
        self.n[g] += 1;
        let d = x - self.mean[g];
        self.mean[g] += d / self.n[g] as f64;
        self.m2[g] += d * (x - self.mean[g]);
    }

    /// Chan's merge of a partial (n, mean, m2) into group g.
    fn merge(&mut self, g: usize, n: i64, mean: f64, m2: f64) {
        if n == 0 {
            return;
        }
        let na = self.n[g] as f64;
        let nb = n as f64;
        let total = na + nb;
        let d = mean - self.mean[g];
        self.mean[g] += d * nb / total;
        self.m2[g] += m2 + d * d * na * nb / total;
        self.n[g] += n;
    }
}

/// Stage one: rows of a partition to per-group states.
pub fn partial(spec: &AggSpec, batch: &RecordBatch) -> Result<RecordBatch> {
    let keys: Vec<ArrayRef> = spec.keys.iter().map(|k| col(batch, k).cloned()).collect::<Result<_>>()?;
    let (ids, firsts) = group_rows(&keys, batch.num_rows())?;
    let groups = firsts.len();
    let mut fields: Vec<Field> = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    let first_idx = UInt32Array::from(firsts.clone());
    for (k, name) in keys.iter().zip(&spec.keys) {
        fields.push(Field::new(name, k.data_type().clone(), true));
        arrays.push(if spec.keys.is_empty() { k.clone() } else { take(k.as_ref(), &first_idx, None)? });
    }
    for (i, a) in spec.aggs.iter().enumerate() {
        let [n_name, s_name, q_name] = state_names(i);
        let input = col(batch, &a.column)?;
        match a.func {
            AggFunc::Size => {
                let mut n = vec![0i64; groups];
                for g in ids.iter().flatten() {
                    n[*g as usize] += 1;
                }
                push(&mut fields, &mut arrays, &n_name, Arc::new(Int64Array::from(n)));
            }
            AggFunc::Count => {
                let valid = valid_mask(input)?;
                let mut n = vec![0i64; groups];
                for (r, g) in ids.iter().enumerate() {
                    if let Some(g) = g
                        && valid.value(r)
                    {
                        n[*g as usize] += 1;
                    }
                }
                push(&mut fields, &mut arrays, &n_name, Arc::new(Int64Array::from(n)));
            }
            AggFunc::Min | AggFunc::Max => {
                let best = arg_extreme(input, &ids, groups, a.func == AggFunc::Max)?;
                push(&mut fields, &mut arrays, &s_name, take_opt(input, &best)?);
            }
            AggFunc::Sum | AggFunc::Mean | AggFunc::Var | AggFunc::Std => {
                let m = moments(input, &ids, groups, a.func)?;
                let integer_sum = a.func == AggFunc::Sum && is_integer(input.data_type());
                push(&mut fields, &mut arrays, &n_name, Arc::new(Int64Array::from(m.n)));
                if integer_sum {
                    push(&mut fields, &mut arrays, &s_name, Arc::new(Int64Array::from(m.sum_i)));
                } else if matches!(a.func, AggFunc::Var | AggFunc::Std) {
                    push(&mut fields, &mut arrays, &s_name, Arc::new(Float64Array::from(m.mean)));
                    push(&mut fields, &mut arrays, &q_name, Arc::new(Float64Array::from(m.m2)));
                } else {
                    push(&mut fields, &mut arrays, &s_name, Arc::new(Float64Array::from(m.sum_f)));
                }
            }
        }
    }
    with_rows(Arc::new(Schema::new(fields)), arrays, groups)
}

fn push(fields: &mut Vec<Field>, arrays: &mut Vec<ArrayRef>, name: &str, a: ArrayRef) {
    fields.push(Field::new(name, a.data_type().clone(), true));
    arrays.push(a);
}

fn moments(input: &ArrayRef, ids: &[Option<u32>], groups: usize, func: AggFunc) -> Result<Moments> {
    let mut m = Moments::new(groups);
    let valid = valid_mask(input)?;
    if func == AggFunc::Sum && is_integer(input.data_type()) {
        let v = i64s(input)?;
        for (r, g) in ids.iter().enumerate() {
            if let Some(g) = g
                && valid.value(r)
            {
                let g = *g as usize;
                m.sum_i[g] = m.sum_i[g].wrapping_add(v.value(r));
                m.n[g] += 1;
            }
        }
        return Ok(m);
    }
    let v = f64s(input)?;
    let welford = matches!(func, AggFunc::Var | AggFunc::Std);
    for (r, g) in ids.iter().enumerate() {
        if let Some(g) = g
            && valid.value(r)
        {
            let g = *g as usize;
            if welford {
                m.push(g, v.value(r));
            } else {
                m.sum_f[g] += v.value(r);
                m.n[g] += 1;
            }
        }
    }
    Ok(m)
}

/// Stage two: merges state tables into one, group by group.
pub fn combine(spec: &AggSpec, states: &[RecordBatch]) -> Result<RecordBatch> {
    let Some(first) = states.first() else {
        return Err(FrameError::Compute("nothing to combine".into()));
    };
    let schema = first.schema();
    let all = concat_batches(&schema, states)?;
    let keys: Vec<ArrayRef> = spec.keys.iter().map(|k| col(&all, k).cloned()).collect::<Result<_>>()?;
    let (ids, firsts) = if spec.keys.is_empty() {
        (vec![Some(0); all.num_rows()], vec![0])
    } else {
        group_rows(&keys, all.num_rows())?
    };
    let groups = firsts.len();
    let first_idx = UInt32Array::from(firsts);
    let mut fields: Vec<Field> = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (k, name) in keys.iter().zip(&spec.keys) {
        push(&mut fields, &mut arrays, name, take(k.as_ref(), &first_idx, None)?);
    }
    for (i, a) in spec.aggs.iter().enumerate() {
        let [n_name, s_name, q_name] = state_names(i);
        match a.func {
            AggFunc::Count | AggFunc::Size => {
                let n = i64s(col(&all, &n_name)?)?;
                let mut out = vec![0i64; groups];
                for (r, g) in ids.iter().enumerate() {
                    if let Some(g) = g {
                        out[*g as usize] += n.value(r);
                    }
                }
                push(&mut fields, &mut arrays, &n_name, Arc::new(Int64Array::from(out)));
            }
            AggFunc::Min | AggFunc::Max => {
                let s = col(&all, &s_name)?;
                let best = arg_extreme(s, &ids, groups, a.func == AggFunc::Max)?;
                push(&mut fields, &mut arrays, &s_name, take_opt(s, &best)?);
            }
            AggFunc::Sum | AggFunc::Mean => {
                let n = i64s(col(&all, &n_name)?)?;
                let s = col(&all, &s_name)?;
                let mut out_n = vec![0i64; groups];
                for (r, g) in ids.iter().enumerate() {
                    if let Some(g) = g {
                        out_n[*g as usize] += n.value(r);
                    }
                }
                let summed: ArrayRef = if *s.data_type() == DataType::Int64 {
                    let v = i64s(s)?;
                    let mut out = vec![0i64; groups];
                    for (r, g) in ids.iter().enumerate() {
                        if let Some(g) = g {
                            out[*g as usize] = out[*g as usize].wrapping_add(v.value(r));
                        }
                    }
                    Arc::new(Int64Array::from(out))
                } else {
                    let v = f64s(s)?;
                    let mut out = vec![0f64; groups];
                    for (r, g) in ids.iter().enumerate() {
                        if let Some(g) = g {
                            out[*g as usize] += v.value(r);
                        }
                    }
                    Arc::new(Float64Array::from(out))
                };
                push(&mut fields, &mut arrays, &n_name, Arc::new(Int64Array::from(out_n)));
                push(&mut fields, &mut arrays, &s_name, summed);
            }
            AggFunc::Var | AggFunc::Std => {
                let n = i64s(col(&all, &n_name)?)?;
                let mean = f64s(col(&all, &s_name)?)?;
                let m2 = f64s(col(&all, &q_name)?)?;
                let mut m = Moments::new(groups);
                for (r, g) in ids.iter().enumerate() {
                    if let Some(g) = g {
                        m.merge(*g as usize, n.value(r), mean.value(r), m2.value(r));
                    }
                }
                push(&mut fields, &mut arrays, &n_name, Arc::new(Int64Array::from(m.n)));
                push(&mut fields, &mut arrays, &s_name, Arc::new(Float64Array::from(m.mean)));
                push(&mut fields, &mut arrays, &q_name, Arc::new(Float64Array::from(m.m2)));
            }
        }
    }
    with_rows(Arc::new(Schema::new(fields)), arrays, groups)
}

/// Stage three: states to results, sorted by the keys when asked.
pub fn finalize(spec: &AggSpec, state: &RecordBatch, out_schema: &SchemaRef) -> Result<RecordBatch> {
    let rows = state.num_rows();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for k in &spec.keys {
        arrays.push(col(state, k)?.clone());
    }
    for (i, a) in spec.aggs.iter().enumerate() {
        let [n_name, s_name, q_name] = state_names(i);
        let out: ArrayRef = match a.func {
            AggFunc::Count | AggFunc::Size => col(state, &n_name)?.clone(),
            AggFunc::Min | AggFunc::Max => col(state, &s_name)?.clone(),
            AggFunc::Sum => col(state, &s_name)?.clone(),
            AggFunc::Mean => {
                let n = i64s(col(state, &n_name)?)?;
                let s = f64s(col(state, &s_name)?)?;
                Arc::new(
                    (0..rows)
                        .map(|r| (n.value(r) > 0).then(|| s.value(r) / n.value(r) as f64))
                        .collect::<Float64Array>(),
                )
            }
            AggFunc::Var | AggFunc::Std => {
                let n = i64s(col(state, &n_name)?)?;
                let m2 = f64s(col(state, &q_name)?)?;
                let ddof = i64::from(spec.ddof);
                Arc::new(
                    (0..rows)
                        .map(|r| {
                            let dof = n.value(r) - ddof;
                            (dof > 0).then(|| {
                                let v = m2.value(r) / dof as f64;
                                if a.func == AggFunc::Std { v.sqrt() } else { v }
                            })
                        })
                        .collect::<Float64Array>(),
                )
            }
        };
        arrays.push(out);
    }
    // A whole-frame sum over nothing is 0 in pandas, not missing.
    let arrays = arrays
        .into_iter()
        .zip(out_schema.fields())
        .map(|(a, f)| if a.data_type() == f.data_type() { Ok(a) } else { Ok(cast(&a, f.data_type())?) })
        .collect::<Result<Vec<_>>>()?;
    let batch = with_rows(out_schema.clone(), arrays, rows)?;
    if spec.sort && !spec.keys.is_empty() && rows > 1 {
        return sort_batch(&batch, &spec.keys, &vec![true; spec.keys.len()]);
    }
    Ok(batch)
}

/// Sorts a batch by columns, nulls last, stably.
pub fn sort_batch(batch: &RecordBatch, by: &[String], ascending: &[bool]) -> Result<RecordBatch> {
    let mut cols: Vec<SortColumn> = by
        .iter()
        .zip(ascending)
        .map(|(c, asc)| {
            Ok(SortColumn {
                values: col(batch, c)?.clone(),
                options: Some(SortOptions { descending: !asc, nulls_first: false }),
            })
        })
        .collect::<Result<_>>()?;
    // Row position as the last key makes the sort stable.
    cols.push(SortColumn {
        values: Arc::new(UInt32Array::from_iter_values(0..batch.num_rows() as u32)),
        options: Some(SortOptions { descending: false, nulls_first: false }),
    });
    let idx = lexsort_to_indices(&cols, None)?;
    Ok(take_record_batch(batch, &idx)?)
}

/// The row encoder that orders rows exactly as [`sort_batch`] does: key
/// columns with their directions, missing values last.
fn sort_rows(batch: &RecordBatch, by: &[String], ascending: &[bool]) -> Result<(RowConverter, arrow::row::Rows)> {
    let keys: Vec<ArrayRef> = by.iter().map(|c| col(batch, c).cloned()).collect::<Result<_>>()?;
    let fields = keys
        .iter()
        .zip(ascending)
        .map(|(k, asc)| {
            SortField::new_with_options(k.data_type().clone(), SortOptions { descending: !asc, nulls_first: false })
        })
        .collect();
    let converter = RowConverter::new(fields)?;
    let rows = converter.convert_columns(&keys)?;
    Ok((converter, rows))
}

/// Up to `n` key rows spread evenly over the sorted partition: the sample
/// range partitioning chooses its splitters from.
pub fn sort_sample(batch: &RecordBatch, by: &[String], ascending: &[bool], n: usize) -> Result<RecordBatch> {
    let sorted = sort_batch(batch, by, ascending)?;
    let rows = sorted.num_rows();
    let take: Vec<u32> =
        if rows <= n { (0..rows as u32).collect() } else { (0..n).map(|i| (i * rows / n) as u32).collect() };
    let keys =
        sorted.project(&by.iter().map(|c| sorted.schema().index_of(c)).collect::<std::result::Result<Vec<_>, _>>()?)?;
    Ok(take_record_batch(&keys, &UInt32Array::from(take))?)
}

/// `parts - 1` splitters (key rows) at the quantiles of the pooled samples.
pub fn sort_splitters(samples: &RecordBatch, by: &[String], ascending: &[bool], parts: usize) -> Result<RecordBatch> {
    let sorted = sort_batch(samples, by, ascending)?;
    let rows = sorted.num_rows();
    let take: Vec<u32> = if rows == 0 { vec![] } else { (1..parts).map(|i| (i * rows / parts) as u32).collect() };
    Ok(take_record_batch(&sorted, &UInt32Array::from(take))?)
}

/// Splits a partition into `parts` pieces by key range: a row goes to the
/// number of splitters that order strictly before it, so equal keys always
/// land together and the pieces, sorted and concatenated in bucket order,
/// are the whole frame sorted.
pub fn range_split(
    batch: &RecordBatch,
    splitters: &RecordBatch,
    by: &[String],
    ascending: &[bool],
    parts: usize,
) -> Result<Vec<RecordBatch>> {
    let (converter, rows) = sort_rows(batch, by, ascending)?;
    let split_keys: Vec<ArrayRef> = by.iter().map(|c| col(splitters, c).cloned()).collect::<Result<_>>()?;
    let bounds = converter.convert_columns(&split_keys)?;
    let bounds: Vec<arrow::row::Row<'_>> = (0..bounds.num_rows()).map(|i| bounds.row(i)).collect();
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); parts.max(1)];
    for r in 0..batch.num_rows() {
        let row = rows.row(r);
        let b = bounds.partition_point(|s| *s < row).min(buckets.len() - 1);
        buckets[b].push(r as u32);
    }
    buckets.into_iter().map(|idx| Ok(take_record_batch(batch, &UInt32Array::from(idx))?)).collect()
}

/// Rows with distinct values in `columns` (all columns when empty), first
/// appearance kept, in order.
pub fn distinct(batch: &RecordBatch, columns: &[String]) -> Result<RecordBatch> {
    let keys: Vec<ArrayRef> = if columns.is_empty() {
        batch.columns().to_vec()
    } else {
        columns.iter().map(|c| col(batch, c).cloned()).collect::<Result<_>>()?
    };
    if batch.num_rows() == 0 || keys.is_empty() {
        return Ok(batch.clone());
    }
    // Nulls are values here (pandas keeps one missing row in unique()).
    let converter = RowConverter::new(keys.iter().map(|k| SortField::new(k.data_type().clone())).collect())?;
    let encoded = converter.convert_columns(&keys)?;
    let mut seen: rustc_hash::FxHashSet<arrow::row::Row<'_>> = rustc_hash::FxHashSet::default();
    let keep: Vec<u32> = (0..batch.num_rows()).filter(|&r| seen.insert(encoded.row(r))).map(|r| r as u32).collect();
    Ok(take_record_batch(batch, &UInt32Array::from(keep))?)
}

/// The `n` rows with the largest (or smallest) values of `column`, ties in
/// row order, missing values never chosen.
pub fn top_k(batch: &RecordBatch, column: &str, n: usize, largest: bool) -> Result<RecordBatch> {
    let values = col(batch, column)?;
    let valid = valid_mask(values)?;
    let present: Vec<u32> = (0..batch.num_rows()).filter(|&r| valid.value(r)).map(|r| r as u32).collect();
    let batch = take_record_batch(batch, &UInt32Array::from(present))?;
    let sorted = sort_batch(&batch, &[column.to_string()], &[!largest])?;
    Ok(sorted.slice(0, n.min(sorted.num_rows())))
}

/// Concatenates partitions that share a schema.
pub fn concat(parts: &[RecordBatch]) -> Result<RecordBatch> {
    let Some(first) = parts.first() else {
        return Err(FrameError::Compute("nothing to concatenate".into()));
    };
    Ok(concat_batches(&first.schema(), parts)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    #[test]
    fn range_split_keeps_ties_together_and_orders_buckets() {
        let b = batch(
            vec!["c", "a", "b", "a", "c", "b", "a", "d"],
            vec![Some(1.0), None, Some(3.0), Some(3.0), Some(0.5), None, Some(2.0), Some(9.0)],
        );
        for (by, asc) in [(vec!["k".to_string()], vec![true]), (vec!["k".into(), "v".into()], vec![false, true])] {
            let samples = sort_sample(&b, &by, &asc, 3).expect("sample");
            assert_eq!(samples.num_rows(), 3);
            let splitters = sort_splitters(&samples, &by, &asc, 3).expect("splitters");
            assert_eq!(splitters.num_rows(), 2);
            let pieces = range_split(&b, &splitters, &by, &asc, 3).expect("split");
            assert_eq!(pieces.iter().map(RecordBatch::num_rows).sum::<usize>(), b.num_rows());
            let sorted: Vec<RecordBatch> = pieces.iter().map(|p| sort_batch(p, &by, &asc).expect("sort")).collect();
            let joined = concat(&sorted).expect("concat");
            assert_eq!(joined, sort_batch(&b, &by, &asc).expect("whole"), "{by:?} {asc:?}");
        }
        // No rows: every piece empty, nothing fails.
        let empty = b.slice(0, 0);
        let none =
            sort_splitters(&sort_sample(&empty, &["k".into()], &[true], 3).expect("s"), &["k".into()], &[true], 4)
                .expect("splitters");
        let pieces = range_split(&empty, &none, &["k".into()], &[true], 4).expect("split");
        assert_eq!(pieces.len(), 4);
    }

    fn batch(keys: Vec<&str>, vals: Vec<Option<f64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(keys)), Arc::new(Float64Array::from(vals))])
            .expect("valid")
    }

    fn spec() -> AggSpec {
        let aggs = [AggFunc::Count, AggFunc::Sum, AggFunc::Mean, AggFunc::Min, AggFunc::Max, AggFunc::Var]
            .iter()
            .map(|f| Agg { column: "v".into(), func: *f, name: f.name().into() })
            .collect();
        AggSpec { keys: vec!["k".into()], aggs, ddof: 1, sort: true }
    }

    #[test]
    fn split_and_combined_equal_whole() {
        let whole = batch(vec!["b", "a", "b", "a", "c"], vec![Some(1.0), Some(2.0), None, Some(4.0), Some(5.0)]);
        let s = spec();
        let out_schema = Arc::new(s.output_schema(&whole.schema()).expect("valid"));
        let one = finalize(&s, &combine(&s, &[partial(&s, &whole).expect("p")]).expect("c"), &out_schema).expect("f");
        let parts = [whole.slice(0, 2), whole.slice(2, 3)];
        let states: Vec<RecordBatch> = parts.iter().map(|p| partial(&s, p).expect("p")).collect();
        let two = finalize(&s, &combine(&s, &states).expect("c"), &out_schema).expect("f");
        assert_eq!(one, two);
        let keys = one.column(0).as_any().downcast_ref::<StringArray>().expect("str");
        assert_eq!(keys.iter().flatten().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        let var = one.column(6).as_any().downcast_ref::<Float64Array>().expect("f64");
        assert!((var.value(0) - 2.0).abs() < 1e-12);
        assert!(var.is_null(1) && var.is_null(2));
    }
}
