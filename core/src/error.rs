//! The one error type of the core crate. Messages name the keys involved and
//! say what was expected and what was found, because they reach users.

use crate::Key;

/// Errors found while building, validating or running a graph.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    #[error("the graph has a cycle through keys: {}", join(.0))]
    Cycle(Vec<Key>),
    #[error("task {task} depends on {missing}, which is neither in the graph nor already computed")]
    MissingDependency { task: Key, missing: Key },
    #[error("key {0} is defined twice in one graph")]
    DuplicateKey(Key),
    #[error(
        "task {task} uses op {op:?}, which is not registered in this binary (known ops are registered with rask::op! or built in)"
    )]
    UnknownOp { task: Key, op: String },
    #[error(
        "task {task} uses the local closure {op:?}; closures cannot leave this process. Register the function with rask::op! to run it on a remote cluster"
    )]
    ClosureNotSendable { task: Key, op: String },
    #[error("output key {0} is not in the graph")]
    UnknownOutput(Key),
    #[error("could not decode parameters of task {task}: {reason}")]
    BadParams { task: Key, reason: String },
}

fn join(keys: &[Key]) -> String {
    keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> ")
}

/// The error an op returns. It is carried to the client together with the key
/// of the task that raised it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[error("{message}")]
pub struct OpError {
    pub message: String,
    /// The task that raised, when it ran inside a fused chain under another
    /// task's key; users should see the key they wrote.
    pub key: Option<crate::Key>,
}

impl OpError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), key: None }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
