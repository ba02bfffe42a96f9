//! The worker side: a [`DataStore`] holding task results and an [`Executor`]
//! that runs tasks on a pool of threads, highest priority first.
//!
//! The executor knows nothing about transports. Where inputs come from
//! ([`Inputs`]) and where outcomes go ([`Reporter`]) are passed in: the local
//! cluster reads peers' stores directly and reports over a channel, while a
//! remote worker fetches over the network and reports over its gRPC stream.

pub mod data;
mod executor;
pub mod node;
mod store;
pub mod workdir;

pub use executor::{Executor, Inputs, Job, LocalOpTable, Outcome, Reporter};
pub use node::{WorkerConfig, WorkerError};
pub use store::{DataStore, SpillConfig};
