//! Partitioned dataframes on Arrow: the `dask.dataframe` of rask.
//!
//! ```no_run
//! use rask_dataframe::{read_csv, CsvOptions};
//! # fn main() -> Result<(), rask_dataframe::FrameError> {
//! let df = read_csv("Birthdays.csv", CsvOptions::default())?;
//! println!("{df}"); // columns, dtypes, npartitions; nothing read yet
//! let ak = df.filter(df.col("state").eq("AK"))?;
//! println!("{}", ak.len()?);
//! let by_state = df.groupby(&["state"]).mean()?;
//! println!("{}", by_state.col("births").nlargest(10)?.compute()?);
//! # Ok(()) }
//! ```

pub mod agg;
pub mod compression;
pub mod csv;
pub mod dtype;
pub mod error;
pub mod expr;
pub mod frame;
pub mod join;
pub mod kernels;
pub mod ml;
pub mod parquet;
pub mod plan;
pub mod table;
pub mod tokenize;

pub use compression::Compression;
pub use csv::CsvOptions;
pub use error::{FrameError, Result};
pub use expr::{DtPart, Expr, Lit, StrOp, col, lit};
pub use frame::{
    DataFrame, GroupBy, Series, from_batch, from_batches, from_partitions, read_csv, read_parquet, read_parquet_with,
};
pub use join::How;
/// Per-call S3 settings for readers and writers (`read_parquet_with`, `to_parquet_with`, `CsvOptions::storage`).
pub use rask_storage::StorageOptions;
pub use table::Table;
