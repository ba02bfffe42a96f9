use thiserror::Error;

/// Everything that can go wrong building or computing a dataframe.
#[derive(Debug, Error)]
pub enum FrameError {
    /// A column, dtype or schema problem found while building the graph.
    #[error("{0}")]
    Schema(String),
    /// Reading or parsing input data.
    #[error("{0}")]
    Read(String),
    /// A problem found while computing.
    #[error("{0}")]
    Compute(String),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Rask(#[from] rask::Error),
}

pub type Result<T, E = FrameError> = std::result::Result<T, E>;

impl From<rask_storage::StorageError> for FrameError {
    fn from(e: rask_storage::StorageError) -> Self {
        FrameError::Read(e.to_string())
    }
}

impl From<FrameError> for rask_core::OpError {
    fn from(e: FrameError) -> Self {
        rask_core::OpError::new(e.to_string())
    }
}
