//! The worker side: a [`DataStore`] holding task results and an [`Executor`]
//! that runs tasks on a pool of threads, highest priority first.
//!
//! The executor knows nothing about transports. Where inputs come from
//! ([`Inputs`]) and where outcomes go ([`Reporter`]) are passed in: the local
//! cluster reads peers' stores directly and reports over a channel, while a
//! remote worker fetches over the network and reports over its gRPC stream.

pub mod data;
mod executor;
mod store;

pub use executor::{Executor, Inputs, Job, LocalOpTable, Outcome, Reporter};
pub use store::DataStore;

/// A worker's settings, with Dask's defaults.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub name: String,
    pub nthreads: usize,
    /// Bytes; 0 means no limit.
    pub memory_limit: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            name: "worker".into(),
            nthreads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_limit: 0,
        }
    }
}
