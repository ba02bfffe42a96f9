//! Chunked n-dimensional arrays, the `dask.array` of rask.
//!
//! An [`Array`] knows its dtype, shape and chunk grid without computing
//! anything; each block is a task. Operations build new block tasks
//! (elementwise ops one per block, reductions as trees of partials), and
//! `compute` runs them on the current rask client. Random arrays are
//! counter-based, so their values do not depend on the chunking.

mod array;
mod blosc;
mod chunks;
pub mod dtype;
mod gemm;
pub mod kernels;
pub mod npy;
pub mod random;
pub mod zarr;

pub use array::{Array, Index, format_bytes};
pub use chunks::{ChunkGrid, Chunks, DEFAULT_CHUNK_BYTES};
pub use kernels::{BinaryOp, Boundary, Fill, Reduction, UnaryOp};
/// Per-call S3 settings for `from_zarr_with` and `to_zarr_with`.
pub use rask_storage::StorageOptions;

#[derive(Debug, thiserror::Error)]
pub enum ArrayError {
    #[error("shape error: {0}")]
    Shape(String),
    #[error("value error: {0}")]
    Value(String),
    #[error("unknown chunk sizes: {0}")]
    UnknownChunks(String),
    #[error(transparent)]
    Compute(#[from] rask::Error),
}

pub type Result<T, E = ArrayError> = std::result::Result<T, E>;
