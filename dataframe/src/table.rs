//! A computed dataframe or series: one Arrow batch in local memory, shown
//! the way pandas shows it.

use std::fmt;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{FrameError, Result};

/// A computed result. Index columns, if any, are shown first.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    batch: RecordBatch,
    index: Vec<String>,
}

impl Table {
    pub fn new(batch: RecordBatch, index: Vec<String>) -> Self {
        Self { batch, index }
    }

    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    pub fn into_batch(self) -> RecordBatch {
        self.batch
    }

    pub fn index(&self) -> &[String] {
        &self.index
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    pub fn column(&self, name: &str) -> Result<&ArrayRef> {
        self.batch.column_by_name(name).ok_or_else(|| FrameError::Schema(format!("no column {name:?} in result")))
    }

    /// A column as floats (ints widened; missing as NaN).
    pub fn f64s(&self, name: &str) -> Result<Vec<f64>> {
        let c = cast(self.column(name)?, &DataType::Float64)?;
        let c = c.as_any().downcast_ref::<Float64Array>().ok_or_else(|| FrameError::Schema("not numeric".into()))?;
        Ok(c.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }

    /// A column as integers (missing as `None`).
    pub fn i64s(&self, name: &str) -> Result<Vec<Option<i64>>> {
        let c = cast(self.column(name)?, &DataType::Int64)?;
        let c = c.as_any().downcast_ref::<Int64Array>().ok_or_else(|| FrameError::Schema("not integer".into()))?;
        Ok(c.iter().collect())
    }

    /// A column as strings (missing as `None`).
    pub fn strings(&self, name: &str) -> Result<Vec<Option<String>>> {
        let c = cast(self.column(name)?, &DataType::Utf8)?;
        let c = c.as_any().downcast_ref::<StringArray>().ok_or_else(|| FrameError::Schema("not text".into()))?;
        Ok(c.iter().map(|v| v.map(str::to_string)).collect())
    }

    /// One cell as pandas prints it.
    fn cell(a: &ArrayRef, row: usize) -> String {
        if a.is_null(row) {
            return match a.data_type() {
                DataType::Utf8 => "None".into(),
                DataType::Timestamp(..) => "NaT".into(),
                _ => "NaN".into(),
            };
        }
        if let Some(f) = a.as_any().downcast_ref::<Float64Array>() {
            let v = f.value(row);
            return if v.is_nan() { "NaN".into() } else { format!("{v:.6}") };
        }
        if let Some(b) = a.as_any().downcast_ref::<BooleanArray>() {
            return if b.value(row) { "True".into() } else { "False".into() };
        }
        match ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default()) {
            Ok(f) => f.value(row).to_string(),
            Err(_) => "?".into(),
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let schema = self.batch.schema();
        let rows = self.batch.num_rows();
        // Like pandas: more than 60 rows shows the first and last five.
        let shown: Vec<Option<usize>> = if rows > 60 {
            (0..5).map(Some).chain(std::iter::once(None)).chain((rows - 5..rows).map(Some)).collect()
        } else {
            (0..rows).map(Some).collect()
        };
        let order: Vec<usize> = {
            let idx: Vec<usize> = self.index.iter().filter_map(|n| schema.index_of(n).ok()).collect();
            let rest = (0..schema.fields().len()).filter(|i| !idx.contains(i));
            idx.iter().copied().chain(rest).collect()
        };
        let default_index = self.index.is_empty();
        let mut grid: Vec<Vec<String>> = Vec::new();
        let mut header: Vec<String> = Vec::new();
        if default_index {
            header.push(String::new());
        }
        header.extend(order.iter().map(|&i| schema.field(i).name().clone()));
        grid.push(header);
        for r in &shown {
            let mut line = Vec::new();
            match r {
                Some(r) => {
                    if default_index {
                        line.push(r.to_string());
                    }
                    line.extend(order.iter().map(|&i| Self::cell(self.batch.column(i), *r)));
                }
                None => line.extend(std::iter::repeat_n("...".to_string(), order.len() + usize::from(default_index))),
            }
            grid.push(line);
        }
        let ncols = grid[0].len();
        let widths: Vec<usize> = (0..ncols)
            .map(|c| grid.iter().map(|l| l.get(c).map_or(0, |s| s.chars().count())).max().unwrap_or(0))
            .collect();
        let nindex = if default_index { 1 } else { self.index.len() };
        for line in &grid {
            let cells: Vec<String> = line
                .iter()
                .enumerate()
                .map(
                    |(c, s)| {
                        if c < nindex { format!("{s:<w$}", w = widths[c]) } else { format!("{s:>w$}", w = widths[c]) }
                    },
                )
                .collect();
            writeln!(f, "{}", cells.join("  ").trim_end())?;
        }
        write!(f, "[{rows} rows x {} columns]", order.len() - self.index.len())
    }
}
