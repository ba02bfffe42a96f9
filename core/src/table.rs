//! Dataframe partitions as task values.
//!
//! A [`TableValue`] is an Arrow [`RecordBatch`] behind an `Arc`: cloning it is
//! cheap and the columns are shared. On the wire it travels as an Arrow IPC
//! stream, the format every Arrow implementation reads, so a partition
//! crosses a process boundary without a custom encoding. Decoding checks the
//! stream's framing and rejects anything but exactly one batch.

use std::fmt;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One dataframe partition.
#[derive(Clone, PartialEq)]
pub struct TableValue(pub Arc<RecordBatch>);

impl TableValue {
    pub fn new(batch: RecordBatch) -> Self {
        Self(Arc::new(batch))
    }

    pub fn batch(&self) -> &RecordBatch {
        &self.0
    }

    pub fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    pub fn num_rows(&self) -> usize {
        self.0.num_rows()
    }

    /// Bytes held by the columns' buffers.
    pub fn nbytes(&self) -> usize {
        self.0.get_array_memory_size()
    }

    /// Encodes the batch as an Arrow IPC stream.
    pub fn to_ipc(&self) -> Result<Vec<u8>, arrow_schema::ArrowError> {
        let mut out = Vec::new();
        let mut writer = StreamWriter::try_new(&mut out, &self.0.schema())?;
        writer.write(&self.0)?;
        writer.finish()?;
        drop(writer);
        Ok(out)
    }

    /// Decodes an Arrow IPC stream holding exactly one batch.
    pub fn from_ipc(bytes: &[u8]) -> Result<Self, arrow_schema::ArrowError> {
        let mut reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        let first = reader
            .next()
            .transpose()?
            .ok_or_else(|| arrow_schema::ArrowError::IpcError("table stream holds no batch".into()))?;
        if reader.next().is_some() {
            return Err(arrow_schema::ArrowError::IpcError("table stream holds more than one batch".into()));
        }
        Ok(Self::new(first))
    }
}

impl fmt::Debug for TableValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cols: Vec<String> =
            self.0.schema().fields().iter().map(|c| format!("{}: {}", c.name(), c.data_type())).collect();
        write!(f, "table<{} rows; {}>", self.0.num_rows(), cols.join(", "))
    }
}

impl Serialize for TableValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.to_ipc().map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for TableValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = crate::array_wire::ByteBuf::deserialize(d)?;
        Self::from_ipc(&bytes.0).map_err(D::Error::custom)
    }
}

impl crate::IntoValue for TableValue {
    fn into_value(self) -> crate::Value {
        crate::Value::Table(self)
    }
}

impl crate::FromValue for TableValue {
    fn from_value(value: crate::Value) -> Result<Self, crate::OpError> {
        match value {
            crate::Value::Table(t) => Ok(t),
            other => Err(crate::OpError::new(format!("expected table, found {}", other.type_name()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    fn sample() -> TableValue {
        let schema =
            Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("s", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(StringArray::from(vec!["x", "y", "z"])),
            ],
        )
        .expect("valid batch");
        TableValue::new(batch)
    }

    #[test]
    fn round_trips_through_postcard() {
        let t = sample();
        let bytes = postcard::to_stdvec(&crate::Value::Table(t.clone())).expect("encodes");
        let back: crate::Value = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, crate::Value::Table(t));
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        let bytes = sample().to_ipc().expect("encodes");
        assert!(TableValue::from_ipc(&bytes[..bytes.len() / 2]).is_err());
        assert!(TableValue::from_ipc(&[0xff; 64]).is_err());
        assert!(TableValue::from_ipc(&[]).is_err());
    }
}
