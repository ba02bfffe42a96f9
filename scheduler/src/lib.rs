//! The scheduler's decisions, as a pure state machine (docs/ARCHITECTURE.md, Crates: rask-scheduler).
//!
//! [`SchedulerState`] takes [`Event`]s (a graph was submitted, a task finished,
//! a worker joined or was lost, a client released keys, ...) and answers with
//! [`Command`]s (run this task on that worker, free this key, steal that task,
//! tell this client its key is ready). It does no IO and reads no clock: the
//! local cluster drives it from threads and channels, the distributed
//! scheduler from gRPC streams, and tests and the simulator from plain loops.
//! The same code therefore decides on a laptop and on Kubernetes.

mod order;
mod state;

pub mod adaptive;
pub mod server;
pub mod sim;

pub use adaptive::{AdaptiveTarget, GroupTarget};
pub use state::{SchedulerState, Snapshot, TaskStateName, WorkerSnapshot};

use std::sync::Arc;

use rask_core::graph::GraphInputs;
use rask_core::{Key, Task};
use serde::{Deserialize, Serialize};

/// A worker, numbered by whoever drives the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId(pub u64);

/// A client connection, numbered by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientId(pub u64);

/// Lower runs first: graphs submitted earlier, then depth-first order inside
/// a graph, so one branch finishes before the next starts and memory stays low.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Priority {
    pub generation: u64,
    pub order: u64,
}

/// Why a key could not be computed. `key` is the task that failed, which may
/// be a dependency of the key the client asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    pub key: Key,
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The op returned an error or panicked.
    Raised,
    /// The task was running on too many workers that died (Dask's KilledWorker).
    KilledWorker,
    /// The graph was refused: cycle, missing dependency, unknown op.
    InvalidGraph,
    /// The client cancelled the key.
    Cancelled,
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ErrorKind::Raised => write!(f, "task {} failed: {}", self.key, self.message),
            ErrorKind::KilledWorker => write!(f, "KilledWorker: task {}: {}", self.key, self.message),
            ErrorKind::InvalidGraph => write!(f, "invalid graph: {}", self.message),
            ErrorKind::Cancelled => write!(f, "key {} was cancelled", self.key),
        }
    }
}

impl std::error::Error for TaskError {}

/// Tunables, with Dask's defaults where Dask has one.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Root tasks are handed out only while a worker has fewer than
    /// `nthreads * worker_saturation` of them (Dask's `worker-saturation`).
    pub worker_saturation: f64,
    /// Expected duration of a task whose group has no measurement yet.
    pub unknown_task_duration: f64,
    /// Assumed network bandwidth in bytes/s, to weigh moving data against
    /// waiting for a busy worker.
    pub bandwidth: f64,
    /// A task that was running on this many workers that died is erred
    /// (KilledWorker) instead of being tried again.
    pub allowed_failures: u32,
    /// Move queued work from saturated workers to idle ones.
    pub work_stealing: bool,
    /// For tiny root tasks, keep this much expected work (seconds per thread)
    /// buffered on each worker so that threads never wait for the scheduler.
    pub root_buffer_seconds: f64,
    /// ...but never buffer more than this many bytes of root output per thread.
    pub root_buffer_bytes: u64,
    /// ...nor more than this many tasks per thread.
    pub root_buffer_tasks: usize,
    /// Forgotten tasks' definitions are kept for the driver to free
    /// ([`SchedulerState::drain_forgotten_into`]) instead of being freed on
    /// the scheduler's thread. The local cluster frees them on another
    /// thread: on tiny tasks, freeing was a fifth of the scheduler's time.
    pub hand_off_forgotten: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            worker_saturation: 1.1,
            unknown_task_duration: 0.5,
            bandwidth: 100e6,
            allowed_failures: 3,
            work_stealing: true,
            root_buffer_seconds: 0.005,
            root_buffer_bytes: 64 << 20,
            root_buffer_tasks: 128,
            hand_off_forgotten: false,
        }
    }
}

/// Inputs to the state machine.
#[derive(Clone, Debug)]
pub enum Event {
    WorkerAdded {
        worker: WorkerId,
        name: String,
        nthreads: usize,
        memory_limit: u64,
        /// What it can run beyond the built-in ops (Python functions): tasks
        /// that need more are never sent to it.
        capabilities: rask_core::Capabilities,
    },
    /// The worker died or left; what it held is gone.
    WorkerRemoved {
        worker: WorkerId,
    },
    /// The worker paused for memory (no new tasks go to it) or resumed.
    WorkerPaused {
        worker: WorkerId,
        paused: bool,
    },
    /// A client submitted tasks and wants the listed keys.
    UpdateGraph {
        client: ClientId,
        tasks: Vec<Arc<Task>>,
        wanted: Vec<Key>,
    },
    /// As [`Event::UpdateGraph`], with each task's inputs by position in
    /// `tasks` (or by key, for keys held from earlier graphs), as
    /// [`rask_core::Graph::validate`] found them: intake then looks up no
    /// key of an input in the same graph. The local cluster sends this.
    UpdateGraphIndexed {
        client: ClientId,
        tasks: Vec<Arc<Task>>,
        inputs: GraphInputs,
        wanted: Vec<Key>,
    },
    TaskFinished {
        worker: WorkerId,
        key: Key,
        nbytes: u64,
        duration: f64,
    },
    /// As [`Event::TaskFinished`], with the `id` the scheduler gave in
    /// [`Command::Execute`]: the task is found without a key lookup. An id
    /// that no longer names `key` (forgotten and reused) falls back to the key.
    TaskFinishedById {
        worker: WorkerId,
        id: u32,
        key: Key,
        nbytes: u64,
        duration: f64,
    },
    /// `origin` names the task that raised when it ran fused into `key`.
    TaskErred {
        worker: WorkerId,
        key: Key,
        message: String,
        origin: Option<Key>,
    },
    /// A worker could not find an input of `key` on the workers it was told.
    MissingData {
        worker: WorkerId,
        key: Key,
        missing: Key,
    },
    /// The client no longer needs these keys (its futures were dropped).
    ReleaseKeys {
        client: ClientId,
        keys: Vec<Key>,
    },
    /// The client cancels these keys: like a release, and running work that
    /// nobody needs any more is stopped.
    CancelKeys {
        client: ClientId,
        keys: Vec<Key>,
    },
    ClientRemoved {
        client: ClientId,
    },
    /// Answer to [`Command::Steal`]: `stolen` is false if the task had started.
    StealResponse {
        worker: WorkerId,
        key: Key,
        stolen: bool,
    },
    /// Retire these workers gracefully: copy their unique data away first.
    RetireWorkers {
        workers: Vec<WorkerId>,
    },
    /// A copy of `key` now also lives on `worker`.
    ReplicaAdded {
        worker: WorkerId,
        key: Key,
        nbytes: u64,
    },
    /// `worker` could not copy `key` (its holder went away): the copy may be
    /// asked for again.
    ReplicaFailed {
        worker: WorkerId,
        key: Key,
    },
}

/// Outputs of the state machine, for the driver to carry out.
#[derive(Clone, Debug)]
pub enum Command {
    /// Run `task` on `worker`; `who_has` says where each input lives. `id`
    /// is the scheduler's number for the task while it is known: a driver
    /// may report the outcome with it ([`Event::TaskFinishedById`]).
    Execute { worker: WorkerId, task: Arc<Task>, priority: Priority, who_has: Vec<(Key, Vec<WorkerId>)>, id: u32 },
    /// Drop the data of `key` (or stop computing it) on `worker`.
    Release { worker: WorkerId, key: Key },
    /// Ask `worker` to give up `key` if it has not started it.
    Steal { worker: WorkerId, key: Key },
    /// Copy `key` from one worker to another.
    Replicate { key: Key, from: WorkerId, to: WorkerId },
    /// The worker holds nothing unique and runs nothing: it may exit.
    WorkerMayLeave { worker: WorkerId },
    /// A key the client wants is in memory.
    KeyInMemory { client: ClientId, key: Key, workers: Vec<WorkerId>, nbytes: u64 },
    /// A key the client wants cannot be computed.
    KeyErred { client: ClientId, key: Key, error: Arc<TaskError> },
}

#[cfg(test)]
mod tests;
