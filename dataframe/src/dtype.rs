//! Column dtypes: pandas' names over Arrow types.
//!
//! Users write the dtype names they know from pandas (`"int64"`,
//! `"float64"`, `"object"`, `"bool"`, `"datetime64[ns]"`); columns are Arrow
//! arrays underneath. Where pandas turns an integer column with missing
//! values into float64 (CSV gaps, merges), rask does too; the dtype rules
//! are in docs/ARCHITECTURE.md ("Dtype rules").

use arrow::datatypes::{DataType, TimeUnit};

use crate::error::{FrameError, Result};

/// A named, typed column, as task parameters carry it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(with = "crate::expr::datatype_serde")]
    pub dtype: DataType,
}

impl Column {
    pub fn new(name: &str, dtype: DataType) -> Self {
        Self { name: name.to_string(), dtype }
    }
}

/// Arrow type of a pandas dtype name.
pub fn parse_dtype(name: &str) -> Result<DataType> {
    Ok(match name.trim() {
        "int64" | "Int64" | "int" | "i8" => DataType::Int64,
        "int32" | "Int32" | "i4" => DataType::Int32,
        "float64" | "Float64" | "float" | "f8" => DataType::Float64,
        "float32" | "Float32" | "f4" => DataType::Float32,
        "object" | "str" | "string" | "O" => DataType::Utf8,
        "bool" | "boolean" => DataType::Boolean,
        "datetime64[ns]" | "datetime64" | "datetime" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        other => {
            return Err(FrameError::Schema(format!(
                "unknown dtype {other:?}: use int64, int32, float64, float32, object, bool or datetime64[ns]"
            )));
        }
    })
}

/// The pandas name of an Arrow type, for display.
pub fn dtype_name(t: &DataType) -> String {
    match t {
        DataType::Int64 => "int64".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int8 => "int8".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "object".into(),
        DataType::Boolean => "bool".into(),
        DataType::Timestamp(TimeUnit::Nanosecond, None) => "datetime64[ns]".into(),
        other => other.to_string(),
    }
}

pub fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean)
}

pub fn is_integer(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Boolean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in ["int64", "int32", "float64", "float32", "object", "bool", "datetime64[ns]"] {
            assert_eq!(dtype_name(&parse_dtype(n).expect("known")), n);
        }
        assert!(parse_dtype("complex128").is_err());
    }
}
