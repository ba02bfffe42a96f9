//! Per-partition plans: the row-wise steps between a source and a result.
//!
//! A [`DataFrame`](crate::DataFrame) is a source (CSV files, or partitions
//! some earlier task made) plus a list of [`Step`]s that each partition goes
//! through independently. Steps are data; they are checked against the
//! schema when they are added, and before tasks are made the list is
//! analysed backwards to find which source columns are needed at all, so a
//! reader parses only those (projection pushdown) and drops filtered rows
//! right after parsing (filter pushdown).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{and, cast, filter_record_batch, is_not_null, or};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use serde::{Deserialize, Serialize};

use crate::dtype::dtype_name;
use crate::error::{FrameError, Result};
use crate::expr::{Expr, Lit};

/// One row-wise transformation of a partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Keep the rows where the boolean expression is true.
    Filter(Expr),
    /// Add or replace columns.
    Assign(Vec<(String, Expr)>),
    /// Keep these columns, in this order.
    Select(Vec<String>),
    Rename(Vec<(String, String)>),
    /// Drop rows with a null in any (or, with `all`, every) of the columns.
    DropNa {
        subset: Option<Vec<String>>,
        all: bool,
    },
    /// Replace nulls in each named column.
    FillNa(Vec<(String, Lit)>),
    /// Rows `offset..offset + len` of each partition.
    Slice {
        offset: usize,
        len: Option<usize>,
    },
    /// Keep the rows whose uniform draw falls in `[lo, hi)`; the draw depends
    /// on the seed, the partition and the row, so complementary ranges split
    /// a partition exactly.
    Sample {
        seed: u64,
        lo: f64,
        hi: f64,
    },
}

impl Step {
    /// The schema after this step, or an error naming the problem.
    pub fn output_schema(&self, input: &Schema) -> Result<Schema> {
        match self {
            Step::Filter(e) => {
                let t = e.data_type(input)?;
                if t != DataType::Boolean {
                    return Err(FrameError::Schema(format!(
                        "a filter needs a boolean expression, {} is {}",
                        e.default_name(),
                        dtype_name(&t)
                    )));
                }
                Ok(input.clone())
            }
            Step::Assign(cols) => {
                let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
                for (name, e) in cols {
                    let f = Field::new(name, e.data_type(input)?, true);
                    match fields.iter_mut().find(|x| x.name() == name) {
                        Some(slot) => *slot = f,
                        None => fields.push(f),
                    }
                }
                Ok(Schema::new(fields))
            }
            Step::Select(cols) => {
                let fields = cols.iter().map(|c| field(input, c).cloned()).collect::<Result<Vec<_>>>()?;
                Ok(Schema::new(fields))
            }
            Step::Rename(pairs) => {
                for (from, _) in pairs {
                    field(input, from)?;
                }
                let fields: Vec<Field> = input
                    .fields()
                    .iter()
                    .map(|f| match pairs.iter().find(|(from, _)| from == f.name()) {
                        Some((_, to)) => f.as_ref().clone().with_name(to),
                        None => f.as_ref().clone(),
                    })
                    .collect();
                Ok(Schema::new(fields))
            }
            Step::DropNa { subset, .. } => {
                for c in subset.iter().flatten() {
                    field(input, c)?;
                }
                Ok(input.clone())
            }
            Step::FillNa(values) => {
                for (c, v) in values {
                    let t = field(input, c)?.data_type();
                    let ok = matches!(
                        (t, v),
                        (_, Lit::Null)
                            | (DataType::Utf8, Lit::Str(_))
                            | (DataType::Boolean, Lit::Bool(_))
                            | (DataType::Int64 | DataType::Int32, Lit::Int(_))
                            | (DataType::Float64 | DataType::Float32, Lit::Int(_) | Lit::Float(_))
                    );
                    if !ok {
                        return Err(FrameError::Schema(format!(
                            "fillna: {v:?} does not fit column {c:?} of dtype {}",
                            dtype_name(t)
                        )));
                    }
                }
                Ok(input.clone())
            }
            Step::Slice { .. } | Step::Sample { .. } => Ok(input.clone()),
        }
    }

    /// Runs the step on partition number `part`.
    pub fn apply(&self, batch: RecordBatch, part: usize) -> Result<RecordBatch> {
        match self {
            Step::Filter(e) => {
                let mask = e.eval(&batch)?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| FrameError::Compute("filter expression is not boolean".into()))?;
                Ok(filter_record_batch(&batch, mask)?)
            }
            Step::Assign(cols) => {
                let schema = self.output_schema(&batch.schema())?;
                let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
                for (name, e) in cols {
                    let mut a = e.eval(&batch)?;
                    let want = schema.field_with_name(name)?.data_type();
                    if a.data_type() != want {
                        a = cast(&a, want)?;
                    }
                    match batch.schema().index_of(name) {
                        Ok(i) => arrays[i] = a,
                        Err(_) => arrays.push(a),
                    }
                }
                with_rows(Arc::new(schema), arrays, batch.num_rows())
            }
            Step::Select(cols) => {
                // The schema was checked when the plan was built; a column
                // missing here was left unread because nothing later needs it.
                let schema = batch.schema();
                let idx: Vec<usize> = cols.iter().filter_map(|c| schema.index_of(c).ok()).collect();
                Ok(batch.project(&idx)?)
            }
            Step::Rename(_) => {
                let schema = self.output_schema(&batch.schema())?;
                with_rows(Arc::new(schema), batch.columns().to_vec(), batch.num_rows())
            }
            Step::DropNa { subset, all } => {
                let cols: Vec<&ArrayRef> = match subset {
                    Some(s) => s.iter().map(|c| column(&batch, c)).collect::<Result<_>>()?,
                    None => batch.columns().iter().collect(),
                };
                let mut keep: Option<BooleanArray> = None;
                for c in cols {
                    let valid = valid_mask(c)?;
                    keep = Some(match keep {
                        None => valid,
                        Some(k) if *all => or(&k, &valid)?,
                        Some(k) => and(&k, &valid)?,
                    });
                }
                match keep {
                    Some(k) => Ok(filter_record_batch(&batch, &k)?),
                    None => Ok(batch),
                }
            }
            Step::FillNa(values) => {
                let mut arrays = batch.columns().to_vec();
                for (c, v) in values {
                    let Ok(i) = batch.schema().index_of(c) else { continue };
                    let a = &arrays[i];
                    if a.null_count() == 0 || *v == Lit::Null {
                        continue;
                    }
                    let fill = cast(&v.to_array(), a.data_type())?;
                    let fill = arrow::array::Scalar::new(fill);
                    arrays[i] = zip(&is_not_null(a)?, a, &fill)?;
                }
                with_rows(batch.schema(), arrays, batch.num_rows())
            }
            Step::Slice { offset, len } => {
                let start = (*offset).min(batch.num_rows());
                let end = len.map_or(batch.num_rows(), |l| start.saturating_add(l).min(batch.num_rows()));
                Ok(batch.slice(start, end - start))
            }
            Step::Sample { seed, lo, hi } => {
                let keep: BooleanArray = (0..batch.num_rows())
                    .map(|row| {
                        let u = uniform(*seed, part as u64, row as u64);
                        Some(u >= *lo && u < *hi)
                    })
                    .collect();
                Ok(filter_record_batch(&batch, &keep)?)
            }
        }
    }
}

/// A column of a schema, or an error listing the columns there are.
pub(crate) fn field<'a>(schema: &'a Schema, name: &str) -> Result<&'a Field> {
    schema.field_with_name(name).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        FrameError::Schema(format!("no column {name:?}; the columns are {names:?}"))
    })
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| FrameError::Compute(format!("no column {name:?} in partition")))
}

/// True where a value is present: not null and, for floats, not NaN (pandas
/// treats NaN as missing).
pub(crate) fn valid_mask(a: &ArrayRef) -> Result<BooleanArray> {
    let present = is_not_null(a)?;
    if let Some(f) = a.as_any().downcast_ref::<Float64Array>() {
        let not_nan: BooleanArray = f.values().iter().map(|x| Some(!x.is_nan())).collect();
        return Ok(and(&present, &not_nan)?);
    }
    if let Some(f) = a.as_any().downcast_ref::<arrow::array::Float32Array>() {
        let not_nan: BooleanArray = f.values().iter().map(|x| Some(!x.is_nan())).collect();
        return Ok(and(&present, &not_nan)?);
    }
    Ok(present)
}

/// A batch with an explicit row count, so that zero-column batches keep
/// their length.
pub(crate) fn with_rows(schema: SchemaRef, arrays: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new_with_options(schema, arrays, &RecordBatchOptions::new().with_row_count(Some(rows)))?)
}

/// A counter-based uniform draw in [0, 1): SplitMix64 over (seed, partition,
/// row), the same on every machine and every run.
pub(crate) fn uniform(seed: u64, part: u64, row: u64) -> f64 {
    let mut z = seed
        .wrapping_add(part.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(row.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Schemas after each step: `out[0]` is the input, `out[i + 1]` follows
/// step `i`.
pub fn schemas(input: &Schema, steps: &[Step]) -> Result<Vec<Schema>> {
    let mut out = vec![input.clone()];
    for s in steps {
        let next = s.output_schema(out.last().unwrap_or(input))?;
        out.push(next);
    }
    Ok(out)
}

/// The source columns a plan reads, walking the steps backwards from the
/// columns of the result.
pub fn needed_columns(input: &Schema, steps: &[Step]) -> Result<Vec<String>> {
    let schemas = schemas(input, steps)?;
    let last = schemas.last().unwrap_or(&schemas[0]);
    let mut needed: Vec<String> = last.fields().iter().map(|f| f.name().clone()).collect();
    for (i, step) in steps.iter().enumerate().rev() {
        let before = &schemas[i];
        match step {
            Step::Filter(e) => e.columns(&mut needed),
            Step::Assign(cols) => {
                let mut reads = Vec::new();
                for (name, e) in cols {
                    needed.retain(|c| c != name);
                    e.columns(&mut reads);
                }
                for c in reads {
                    if !needed.contains(&c) {
                        needed.push(c);
                    }
                }
            }
            Step::Select(cols) => needed.retain(|c| cols.contains(c)),
            Step::Rename(pairs) => {
                for c in &mut needed {
                    if let Some((from, _)) = pairs.iter().find(|(_, to)| to == c) {
                        *c = from.clone();
                    }
                }
            }
            Step::DropNa { subset: Some(s), .. } => {
                for c in s {
                    if !needed.contains(c) {
                        needed.push(c.clone());
                    }
                }
            }
            Step::DropNa { subset: None, .. } => {
                needed = before.fields().iter().map(|f| f.name().clone()).collect();
            }
            Step::FillNa(_) | Step::Slice { .. } | Step::Sample { .. } => {}
        }
    }
    // Source order, so readers can fill columns left to right.
    Ok(input.fields().iter().map(|f| f.name().clone()).filter(|c| needed.contains(c)).collect())
}

/// The source column that column `name` of the plan's result holds
/// unchanged, when the steps keep every row: selections, renames and
/// assignments of a plain column reference are followed back; any step that
/// drops rows or computes values gives `None`. Readers use it to aggregate
/// a column straight from the parsed bytes.
pub fn source_column(steps: &[Step], name: &str) -> Option<String> {
    let mut current = name.to_string();
    for step in steps.iter().rev() {
        match step {
            Step::Select(_) => {}
            Step::Rename(pairs) => {
                if let Some((from, _)) = pairs.iter().find(|(_, to)| *to == current) {
                    current = from.clone();
                }
            }
            Step::Assign(cols) => match cols.iter().rev().find(|(n, _)| *n == current) {
                Some((_, Expr::Col(c))) => current = c.clone(),
                Some(_) => return None,
                None => {}
            },
            Step::Filter(_) | Step::DropNa { .. } | Step::FillNa(_) | Step::Slice { .. } | Step::Sample { .. } => {
                return None;
            }
        }
    }
    Some(current)
}

/// Runs all steps over one partition.
pub fn run(steps: &[Step], mut batch: RecordBatch, part: usize) -> Result<RecordBatch> {
    for s in steps {
        batch = s.apply(batch, part)?;
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit};
    use arrow::array::{Int64Array, StringArray};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)])),
                Arc::new(Float64Array::from(vec![Some(0.5), Some(f64::NAN), None, Some(2.0)])),
                Arc::new(StringArray::from(vec![Some("x"), Some("y"), None, Some("x")])),
            ],
        )
        .expect("valid")
    }

    #[test]
    fn projection_walks_back_through_assign_and_filter() {
        let b = batch();
        let steps = vec![
            Step::Filter(col("s").eq(lit("x"))),
            Step::Assign(vec![("c".into(), col("a") * 2)]),
            Step::Select(vec!["c".into()]),
        ];
        assert_eq!(needed_columns(&b.schema(), &steps).expect("valid"), vec!["a".to_string(), "s".to_string()]);
        let out = run(&steps, b, 0).expect("runs");
        let c = out.column(0).as_any().downcast_ref::<Int64Array>().expect("int");
        assert_eq!(c.values().to_vec(), vec![2, 8]);
    }

    #[test]
    fn dropna_treats_nan_as_missing() {
        let out = run(&[Step::DropNa { subset: None, all: false }], batch(), 0).expect("runs");
        assert_eq!(out.num_rows(), 2);
        let out = run(&[Step::DropNa { subset: Some(vec!["b".into()]), all: false }], batch(), 0).expect("runs");
        assert_eq!(out.num_rows(), 2);
    }

    #[test]
    fn fillna_and_unknown_columns() {
        let out = run(&[Step::FillNa(vec![("a".into(), Lit::Int(0))])], batch(), 0).expect("runs");
        assert_eq!(out.column(0).null_count(), 0);
        let err = Step::Select(vec!["nope".into()]).output_schema(&batch().schema()).expect_err("unknown column");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = Step::FillNa(vec![("a".into(), Lit::Str("z".into()))]).output_schema(&batch().schema());
        assert!(err.is_err());
    }

    #[test]
    fn samples_split_exactly() {
        let b = batch();
        let a = run(&[Step::Sample { seed: 7, lo: 0.0, hi: 0.5 }], b.clone(), 3).expect("runs");
        let c = run(&[Step::Sample { seed: 7, lo: 0.5, hi: 1.0 }], b, 3).expect("runs");
        assert_eq!(a.num_rows() + c.num_rows(), 4);
    }
}
