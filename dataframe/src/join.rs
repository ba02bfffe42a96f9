//! `merge`: hash joins on key columns.
//!
//! A small right side (one partition) is broadcast: every left partition
//! joins against all of it, with no shuffle. Otherwise both sides are
//! hash-partitioned on the keys into the same number of buckets, and bucket
//! `j` of the left joins bucket `j` of the right. Inner, left, right and
//! outer joins are supported; overlapping non-key columns get pandas'
//! `_x`/`_y` suffixes. Missing keys match each other, as in pandas (NaN
//! and null are one missing value; -0.0 equals 0.0). Integer columns of a
//! side that may have no partner row (the right side of a left join, the
//! left of a right join, both of an outer join) become float64, where
//! pandas puts NaN; pandas keeps int64 when every row happens to match,
//! which is known only after computing, so rask always converts.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, UInt32Array};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::row::{RowConverter, SortField};
use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};

use crate::error::{FrameError, Result};

/// Which rows a join keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum How {
    Inner,
    Left,
    Right,
    Outer,
}

/// A join's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinSpec {
    pub on: Vec<String>,
    pub how: How,
}

/// The joined schema, or an error if a key is missing or typed differently.
pub fn output_schema(left: &Schema, right: &Schema, spec: &JoinSpec) -> Result<Schema> {
    for k in &spec.on {
        let l = left.field_with_name(k).map_err(|_| FrameError::Schema(format!("merge: left has no column {k:?}")))?;
        let r =
            right.field_with_name(k).map_err(|_| FrameError::Schema(format!("merge: right has no column {k:?}")))?;
        if l.data_type() != r.data_type() {
            return Err(FrameError::Schema(format!(
                "merge: key {k:?} is {} on the left and {} on the right; cast one side with astype",
                l.data_type(),
                r.data_type()
            )));
        }
    }
    let mut fields: Vec<Field> = Vec::new();
    for f in left.fields() {
        let name = if !spec.on.contains(f.name()) && right.field_with_name(f.name()).is_ok() {
            format!("{}_x", f.name())
        } else {
            f.name().clone()
        };
        let may_miss = matches!(spec.how, How::Right | How::Outer) && !spec.on.contains(f.name());
        fields.push(Field::new(name, gap_type(f.data_type(), may_miss), true));
    }
    for f in right.fields() {
        if spec.on.contains(f.name()) {
            continue;
        }
        let name = if left.field_with_name(f.name()).is_ok() { format!("{}_y", f.name()) } else { f.name().clone() };
        let may_miss = matches!(spec.how, How::Left | How::Outer);
        fields.push(Field::new(name, gap_type(f.data_type(), may_miss), true));
    }
    Ok(Schema::new(fields))
}

/// The type of a column that may gain missing values: pandas' int64 with
/// NaN is float64.
fn gap_type(t: &DataType, may_miss: bool) -> DataType {
    if may_miss && t.is_integer() { DataType::Float64 } else { t.clone() }
}

fn key_columns(batch: &RecordBatch, on: &[String]) -> Result<Vec<ArrayRef>> {
    on.iter()
        .map(|k| batch.column_by_name(k).cloned().ok_or_else(|| FrameError::Compute(format!("merge: no key {k:?}"))))
        .collect()
}

/// Keys as the join compares them: float NaN is null (one missing value)
/// and -0.0 is 0.0, since Arrow's row format tells both pairs apart.
fn join_keys(batch: &RecordBatch, on: &[String]) -> Result<Vec<ArrayRef>> {
    key_columns(batch, on)?
        .into_iter()
        .map(|k| {
            if !k.data_type().is_floating() {
                return Ok(k);
            }
            let f = cast(&k, &DataType::Float64)?;
            let f = f
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| FrameError::Compute("merge: float key cast failed".into()))?;
            let out: Float64Array =
                f.iter().map(|v| v.filter(|x| !x.is_nan()).map(|x| if x == 0.0 { 0.0 } else { x })).collect();
            Ok(Arc::new(out) as ArrayRef)
        })
        .collect()
}

/// Which bucket of `buckets` each row's key hashes to (missing keys hash
/// too: they match each other).
fn bucket_of(batch: &RecordBatch, on: &[String], buckets: usize) -> Result<Vec<u32>> {
    let keys = join_keys(batch, on)?;
    let conv = RowConverter::new(keys.iter().map(|k| SortField::new(k.data_type().clone())).collect())?;
    let rows = conv.convert_columns(&keys)?;
    Ok((0..batch.num_rows())
        .map(|r| {
            let mut h = FxHasher::default();
            rows.row(r).as_ref().hash(&mut h);
            (h.finish() % buckets as u64) as u32
        })
        .collect())
}

/// Splits a partition into `buckets` pieces by key hash.
pub fn hash_split(batch: &RecordBatch, on: &[String], buckets: usize) -> Result<Vec<RecordBatch>> {
    let b = bucket_of(batch, on, buckets.max(1))?;
    let mut idx: Vec<Vec<u32>> = vec![Vec::new(); buckets.max(1)];
    for (r, bucket) in b.iter().enumerate() {
        idx[*bucket as usize].push(r as u32);
    }
    idx.into_iter().map(|rows| Ok(arrow::compute::take_record_batch(batch, &UInt32Array::from(rows))?)).collect()
}

/// Joins two batches.
pub fn join(left: &RecordBatch, right: &RecordBatch, spec: &JoinSpec) -> Result<RecordBatch> {
    let schema = Arc::new(output_schema(&left.schema(), &right.schema(), spec)?);
    let lk = join_keys(left, &spec.on)?;
    let rk = join_keys(right, &spec.on)?;
    let fields: Vec<SortField> = lk.iter().map(|k| SortField::new(k.data_type().clone())).collect();
    let conv = RowConverter::new(fields)?;
    let lrows = conv.convert_columns(&lk)?;
    let rrows = conv.convert_columns(&rk)?;
    let mut table: FxHashMap<arrow::row::Row<'_>, Vec<u32>> = FxHashMap::default();
    for r in 0..right.num_rows() {
        table.entry(rrows.row(r)).or_default().push(r as u32);
    }
    let keep_left = matches!(spec.how, How::Left | How::Outer);
    let keep_right = matches!(spec.how, How::Right | How::Outer);
    let mut li: Vec<Option<u32>> = Vec::new();
    let mut ri: Vec<Option<u32>> = Vec::new();
    let mut matched = vec![false; right.num_rows()];
    for l in 0..left.num_rows() {
        let hits = table.get(&lrows.row(l));
        match hits {
            Some(rs) => {
                for &r in rs {
                    li.push(Some(l as u32));
                    ri.push(Some(r));
                    matched[r as usize] = true;
                }
            }
            None if keep_left => {
                li.push(Some(l as u32));
                ri.push(None);
            }
            None => {}
        }
    }
    if keep_right {
        for (r, m) in matched.iter().enumerate() {
            if !m {
                li.push(None);
                ri.push(Some(r as u32));
            }
        }
    }
    let li = UInt32Array::from(li);
    let ri = UInt32Array::from(ri);
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (i, f) in left.schema().fields().iter().enumerate() {
        let a = take(left.column(i).as_ref(), &li, None)?;
        if let Some(pos) = spec.on.iter().position(|k| k == f.name()) {
            // A key missing on the left (a right-only row) comes from the right.
            let b = take(key_columns(right, &spec.on)?[pos].as_ref(), &ri, None)?;
            let from_left = arrow::compute::is_not_null(&li)?;
            arrays.push(zip(&from_left, &a, &b)?);
        } else {
            arrays.push(a);
        }
    }
    for (i, f) in right.schema().fields().iter().enumerate() {
        if !spec.on.contains(f.name()) {
            arrays.push(take(right.column(i).as_ref(), &ri, None)?);
        }
    }
    let arrays = arrays
        .into_iter()
        .zip(schema.fields())
        .map(|(a, f)| if a.data_type() == f.data_type() { Ok(a) } else { Ok(cast(&a, f.data_type())?) })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::DataType;

    fn left() -> RecordBatch {
        let s =
            Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true), Field::new("v", DataType::Utf8, true)]));
        RecordBatch::try_new(
            s,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(2), None])),
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
            ],
        )
        .expect("valid")
    }

    fn right() -> RecordBatch {
        let s =
            Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true), Field::new("v", DataType::Utf8, true)]));
        RecordBatch::try_new(
            s,
            vec![Arc::new(Int64Array::from(vec![2, 3])), Arc::new(StringArray::from(vec!["x", "y"]))],
        )
        .expect("valid")
    }

    #[test]
    fn join_kinds_count_rows_like_pandas() {
        for (how, rows) in [(How::Inner, 2), (How::Left, 4), (How::Right, 3), (How::Outer, 5)] {
            let out = join(&left(), &right(), &JoinSpec { on: vec!["k".into()], how }).expect("joins");
            assert_eq!(out.num_rows(), rows, "{how:?}");
            let names: Vec<String> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
            assert_eq!(names, ["k", "v_x", "v_y"]);
        }
        let outer = join(&left(), &right(), &JoinSpec { on: vec!["k".into()], how: How::Outer }).expect("joins");
        let k = outer.column(0).as_any().downcast_ref::<Int64Array>().expect("int");
        assert_eq!(k.value(4), 3, "right-only keys come from the right");
    }

    #[test]
    fn buckets_partition_rows() {
        let parts = hash_split(&left(), &["k".into()], 3).expect("splits");
        assert_eq!(parts.iter().map(RecordBatch::num_rows).sum::<usize>(), 4);
    }
}
