//! Errors users see from compute, futures and clusters.

use std::sync::Arc;

use rask_core::{Key, OpError};
use rask_scheduler::TaskError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A task failed; the error names the task that raised and its message.
    #[error(transparent)]
    Task(Arc<TaskError>),
    /// The graph was refused before it ran.
    #[error(transparent)]
    Graph(#[from] rask_core::Error),
    #[error("the result of {key} has an unexpected type: {source}")]
    Conversion { key: Key, source: OpError },
    #[error("{0} was cancelled")]
    Cancelled(Key),
    #[error("the cluster has shut down")]
    ClusterClosed,
    #[error("timed out waiting for {0}")]
    Timeout(Key),
    #[error("could not start the local cluster: {0}")]
    Start(String),
    #[error("{0}")]
    Visualize(String),
    #[error("cannot connect to the scheduler at {address}: {message}")]
    Connect { address: String, message: String },
    /// The remote cluster refused or could not carry out a request.
    #[error("{0}")]
    Remote(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
