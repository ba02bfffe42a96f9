//! The embedded local cluster: the scheduler state machine on one thread,
//! in-process workers each with their own thread pool and data store.
//!
//! It is the same state machine the distributed scheduler runs, so placement,
//! stealing, retries and lineage recomputation behave identically; only the
//! transport differs. Workers read each other's stores directly (a reference
//! count, no copy), which is what a network fetch becomes inside one process.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use rask_core::graph::GraphInputs;
use rask_core::{Key, Task, Value};
use rask_scheduler::{ClientId, Command, Event, SchedulerConfig, SchedulerState, Snapshot, WorkerId};
use rask_worker::{DataStore, Executor, Inputs, Job, LocalOpTable, Outcome, Reporter};
use rustc_hash::FxHashMap;

use crate::future_state::FutureState;
use crate::{Error, Result};

/// Settings of a [`LocalCluster`], with Dask's defaults.
#[derive(Clone, Debug)]
pub struct LocalClusterConfig {
    pub n_workers: usize,
    pub threads_per_worker: usize,
    /// Bytes per worker; 0 means no limit.
    pub memory_limit: u64,
    pub scheduler: SchedulerConfig,
}

impl Default for LocalClusterConfig {
    /// One worker with a thread per core, like Dask's threaded default.
    fn default() -> Self {
        Self {
            n_workers: 1,
            threads_per_worker: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_limit: 0,
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// A worker as the cluster reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerInfo {
    pub id: WorkerId,
    pub name: String,
    pub nthreads: usize,
    pub processing: usize,
    pub keys: usize,
    pub nbytes: u64,
}

pub(crate) enum Msg {
    Submit {
        client: ClientId,
        tasks: Vec<Arc<Task>>,
        /// Each task's inputs by position, as validation found them.
        inputs: GraphInputs,
        wanted: Vec<Key>,
        futures: Vec<(Key, Arc<FutureState>)>,
    },
    Release {
        client: ClientId,
        keys: Vec<Key>,
    },
    Cancel {
        client: ClientId,
        keys: Vec<Key>,
    },
    ClientRemoved(ClientId),
    /// An outcome, with the scheduler's task id when the job carried one.
    Outcome(WorkerId, Outcome, Option<u32>),
    AddWorker {
        nthreads: usize,
        reply: Sender<Result<WorkerId>>,
    },
    KillWorker(WorkerId),
    Retire {
        workers: Vec<WorkerId>,
        reply: Sender<()>,
    },
    Snapshot(Sender<Snapshot>),
    Shutdown,
}

/// What clients share with the scheduler thread.
pub(crate) struct ClusterShared {
    tx: Sender<Msg>,
    next_client: AtomicU64,
    pub(crate) local_ops: Arc<LocalOpTable>,
}

impl ClusterShared {
    pub(crate) fn send(&self, msg: Msg) -> Result<()> {
        self.tx.send(msg).map_err(|_| Error::ClusterClosed)
    }

    pub(crate) fn new_client(&self) -> ClientId {
        ClientId(self.next_client.fetch_add(1, Ordering::Relaxed))
    }
}

/// An in-process cluster, as Dask's `LocalCluster(n_workers, threads_per_worker)`.
/// Dropping it stops every thread after its current task.
pub struct LocalCluster {
    shared: Arc<ClusterShared>,
    scheduler: Option<JoinHandle<()>>,
    config: LocalClusterConfig,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LocalCluster(workers={}, threads_per_worker={})",
            self.workers().len(),
            self.config.threads_per_worker
        )
    }
}

struct PeerStores(RwLock<FxHashMap<WorkerId, Arc<DataStore>>>);

impl Inputs for PeerStores {
    fn fetch(&self, key: &Key, holders: &[WorkerId]) -> Option<Value> {
        let stores = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        holders.iter().find_map(|h| stores.get(h).and_then(|s| s.get(key)))
    }
}

struct ChannelReporter(Sender<Msg>);

impl Reporter for ChannelReporter {
    fn report(&self, worker: WorkerId, outcome: Outcome) {
        self.report_with_id(worker, None, outcome);
    }

    fn report_with_id(&self, worker: WorkerId, id: Option<u32>, outcome: Outcome) {
        // The scheduler thread is gone only during shutdown; nothing to tell.
        let _ = self.0.send(Msg::Outcome(worker, outcome, id));
    }
}

impl LocalCluster {
    /// Starts `n_workers` workers with `threads_per_worker` threads each.
    pub fn new(n_workers: usize, threads_per_worker: usize) -> Result<Self> {
        Self::with_config(LocalClusterConfig { n_workers, threads_per_worker, ..LocalClusterConfig::default() })
    }

    pub fn with_config(config: LocalClusterConfig) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let local_ops = Arc::new(LocalOpTable::default());
        let shared =
            Arc::new(ClusterShared { tx: tx.clone(), next_client: AtomicU64::new(1), local_ops: local_ops.clone() });
        let reaper = Reaper::start()?;
        let driver = Driver {
            state: SchedulerState::new(SchedulerConfig { hand_off_forgotten: true, ..config.scheduler.clone() }),
            reaper,
            rx,
            tx,
            workers: BTreeMap::new(),
            peers: Arc::new(PeerStores(RwLock::new(FxHashMap::default()))),
            local_ops,
            futures: FxHashMap::default(),
            next_worker: 0,
            memory_limit: config.memory_limit,
        };
        let scheduler = std::thread::Builder::new()
            .name("rask-scheduler".into())
            .spawn(move || driver.run())
            .map_err(|e| Error::Start(e.to_string()))?;
        let cluster = Self { shared, scheduler: Some(scheduler), config: config.clone() };
        for _ in 0..config.n_workers {
            cluster.add_worker(config.threads_per_worker)?;
        }
        tracing::info!(
            workers = config.n_workers,
            threads_per_worker = config.threads_per_worker,
            "local cluster started"
        );
        Ok(cluster)
    }

    pub(crate) fn shared(&self) -> &Arc<ClusterShared> {
        &self.shared
    }

    pub fn config(&self) -> &LocalClusterConfig {
        &self.config
    }

    /// Adds a worker; it takes queued work at once, even mid-computation.
    pub fn add_worker(&self, nthreads: usize) -> Result<WorkerId> {
        let (reply, rx) = mpsc::channel();
        self.shared.send(Msg::AddWorker { nthreads, reply })?;
        rx.recv().map_err(|_| Error::ClusterClosed)?
    }

    /// Kills a worker as if its process died: its data is lost and its
    /// running tasks are rescheduled; lost keys are recomputed from lineage.
    pub fn kill_worker(&self, worker: WorkerId) -> Result<()> {
        self.shared.send(Msg::KillWorker(worker))
    }

    /// Retires workers gracefully: their unique data moves to peers first.
    /// Returns once the scheduler let them go.
    pub fn retire_workers(&self, workers: Vec<WorkerId>) -> Result<()> {
        let (reply, rx) = mpsc::channel();
        self.shared.send(Msg::Retire { workers, reply })?;
        rx.recv().map_err(|_| Error::ClusterClosed)
    }

    pub fn snapshot(&self) -> Result<Snapshot> {
        let (reply, rx) = mpsc::channel();
        self.shared.send(Msg::Snapshot(reply))?;
        rx.recv().map_err(|_| Error::ClusterClosed)
    }

    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.snapshot()
            .map(|s| {
                s.workers
                    .into_iter()
                    .map(|w| WorkerInfo {
                        id: w.id,
                        name: w.name,
                        nthreads: w.nthreads,
                        processing: w.processing,
                        keys: w.keys,
                        nbytes: w.nbytes,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = self.shared.send(Msg::Shutdown);
        if let Some(handle) = self.scheduler.take() {
            let _ = handle.join();
        }
    }
}

/// The scheduler thread: feeds messages to the state machine and carries
/// out its commands.
struct Driver {
    state: SchedulerState,
    rx: Receiver<Msg>,
    tx: Sender<Msg>,
    workers: BTreeMap<WorkerId, Executor>,
    peers: Arc<PeerStores>,
    local_ops: Arc<LocalOpTable>,
    futures: FxHashMap<(ClientId, Key), Vec<Arc<FutureState>>>,
    next_worker: u64,
    memory_limit: u64,
    reaper: Reaper,
}

/// A thread that frees forgotten task definitions, so that the scheduler
/// thread spends its time deciding rather than freeing.
struct Reaper {
    tx: Sender<Vec<Arc<Task>>>,
    thread: JoinHandle<()>,
}

impl Reaper {
    fn start() -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Vec<Arc<Task>>>();
        let thread = std::thread::Builder::new()
            .name("rask-reaper".into())
            .spawn(move || rx.iter().for_each(drop))
            .map_err(|e| Error::Start(e.to_string()))?;
        Ok(Self { tx, thread })
    }

    fn free(&self, tasks: Vec<Arc<Task>>) {
        // The thread ends only in `stop`, which takes the reaper.
        let _ = self.tx.send(tasks);
    }

    /// Frees what was sent and ends the thread.
    fn stop(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// Forgotten task definitions are sent to the reaper this many at a time,
/// or whenever the scheduler thread runs out of messages.
const REAP_BATCH: usize = 4096;

/// Messages handled per batch before commands are carried out. Batching
/// amortises queue locks and thread wake-ups across many tiny tasks.
const BATCH: usize = 4096;

impl Driver {
    fn run(mut self) {
        let mut commands = Vec::new();
        let mut retire_replies: Vec<(Vec<WorkerId>, Sender<()>)> = Vec::new();
        let mut forgotten = Vec::new();
        loop {
            let first = match self.rx.try_recv() {
                Ok(msg) => msg,
                Err(_) => {
                    // Idle: a good moment to hand over what is left to free.
                    self.reap(&mut forgotten, 1);
                    match self.rx.recv() {
                        Ok(msg) => msg,
                        Err(_) => break,
                    }
                }
            };
            let mut next = Some(first);
            let mut n = 0;
            while let Some(msg) = next.take() {
                if !self.on_message(msg, &mut retire_replies) {
                    return self.stop();
                }
                n += 1;
                if n < BATCH {
                    next = self.rx.try_recv().ok();
                }
            }
            // Commands can lead to more events (steal answers, replicas,
            // departures); loop until the state machine is quiet.
            loop {
                self.state.drain_commands_into(&mut commands);
                if commands.is_empty() {
                    break;
                }
                let events = self.carry_out(&mut commands);
                for e in events {
                    self.state.handle(e);
                }
            }
            self.reap(&mut forgotten, REAP_BATCH);
            retire_replies.retain(|(ws, reply)| {
                if ws.iter().all(|w| !self.workers.contains_key(w)) {
                    let _ = reply.send(());
                    false
                } else {
                    true
                }
            });
        }
        self.stop();
    }

    /// Sends the forgotten task definitions to the reaper once there are at
    /// least `at_least` of them.
    fn reap(&mut self, forgotten: &mut Vec<Arc<Task>>, at_least: usize) {
        self.state.drain_forgotten_into(forgotten);
        if forgotten.len() >= at_least {
            self.reaper.free(std::mem::take(forgotten));
        }
    }

    fn stop(mut self) {
        for (_, exec) in std::mem::take(&mut self.workers) {
            exec.shutdown();
        }
        for (_, futures) in self.futures.drain() {
            for f in futures {
                f.resolve(Err(Error::ClusterClosed));
            }
        }
        self.reaper.stop();
    }

    /// Returns false on shutdown.
    fn on_message(&mut self, msg: Msg, retire_replies: &mut Vec<(Vec<WorkerId>, Sender<()>)>) -> bool {
        match msg {
            Msg::Submit { client, tasks, inputs, wanted, futures } => {
                for (key, f) in futures {
                    self.futures.entry((client, key)).or_default().push(f);
                }
                self.state.handle(Event::UpdateGraphIndexed { client, tasks, inputs, wanted });
            }
            Msg::Release { client, keys } => self.state.handle(Event::ReleaseKeys { client, keys }),
            Msg::Cancel { client, keys } => {
                for k in &keys {
                    if let Some(fs) = self.futures.remove(&(client, k.clone())) {
                        fs.iter().for_each(|f| f.resolve(Err(Error::Cancelled(k.clone()))));
                    }
                }
                self.state.handle(Event::CancelKeys { client, keys });
            }
            Msg::ClientRemoved(client) => {
                self.futures.retain(|(c, _), _| *c != client);
                self.state.handle(Event::ClientRemoved { client });
            }
            Msg::Outcome(worker, outcome, id) => {
                let event = match (outcome, id) {
                    (Outcome::Finished { key, nbytes, duration }, Some(id)) => {
                        Event::TaskFinishedById { worker, id, key, nbytes, duration }
                    }
                    (Outcome::Finished { key, nbytes, duration }, None) => {
                        Event::TaskFinished { worker, key, nbytes, duration }
                    }
                    (Outcome::Erred { key, message, origin }, _) => Event::TaskErred { worker, key, message, origin },
                    (Outcome::Missing { key, missing }, _) => Event::MissingData { worker, key, missing },
                };
                self.state.handle(event);
            }
            Msg::AddWorker { nthreads, reply } => {
                let _ = reply.send(self.start_worker(nthreads));
            }
            Msg::KillWorker(worker) => {
                if let Some(exec) = self.workers.remove(&worker) {
                    self.peers.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&worker);
                    exec.kill();
                    self.state.handle(Event::WorkerRemoved { worker });
                }
            }
            Msg::Retire { workers, reply } => {
                retire_replies.push((workers.clone(), reply));
                self.state.handle(Event::RetireWorkers { workers });
            }
            Msg::Snapshot(reply) => {
                let _ = reply.send(self.state.snapshot());
            }
            Msg::Shutdown => return false,
        }
        true
    }

    fn start_worker(&mut self, nthreads: usize) -> Result<WorkerId> {
        let id = WorkerId(self.next_worker);
        self.next_worker += 1;
        let name = format!("local-worker-{}", id.0);
        let store = Arc::new(DataStore::new());
        let exec = Executor::start(
            id,
            &name,
            nthreads,
            store.clone(),
            self.peers.clone(),
            Arc::new(ChannelReporter(self.tx.clone())),
            self.local_ops.clone(),
        )
        .map_err(|e| Error::Start(e.to_string()))?;
        self.peers.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, store);
        self.workers.insert(id, exec);
        // In-process workers run whatever this binary links (Python functions
        // too, inside the Python package's native module).
        let capabilities = rask_core::Capabilities::of_registry(rask_core::OpRegistry::global());
        self.state.handle(Event::WorkerAdded {
            worker: id,
            name,
            nthreads,
            memory_limit: self.memory_limit,
            capabilities,
        });
        Ok(id)
    }

    fn carry_out(&mut self, commands: &mut Vec<Command>) -> Vec<Event> {
        let mut events = Vec::new();
        let mut batches: BTreeMap<WorkerId, Vec<(Job, u32)>> = BTreeMap::new();
        // Consecutive releases are carried out together, one store lock per
        // worker; anything that reads a store first waits for them.
        let mut releases: Vec<(WorkerId, Key)> = Vec::new();
        for cmd in commands.drain(..) {
            if !matches!(cmd, Command::Execute { .. } | Command::Release { .. }) {
                self.release_all(&mut releases);
            }
            match cmd {
                Command::Execute { worker, task, priority, who_has, id } => {
                    batches.entry(worker).or_default().push((Job { task, priority, who_has, fetched: Vec::new() }, id));
                }
                Command::Release { worker, key } => releases.push((worker, key)),
                Command::Steal { worker, key } => {
                    // Jobs batched in this round have not reached the worker.
                    let stolen_from_batch = batches
                        .get_mut(&worker)
                        .and_then(|b| b.iter().position(|(j, _)| j.task.key == key).map(|pos| b.remove(pos)));
                    let stolen =
                        stolen_from_batch.is_some() || self.workers.get(&worker).is_some_and(|e| e.steal(&key));
                    events.push(Event::StealResponse { worker, key, stolen });
                }
                Command::Replicate { key, from, to } => {
                    let value = self.workers.get(&from).and_then(|e| e.store().get(&key));
                    if let (Some(v), Some(exec)) = (value, self.workers.get(&to)) {
                        let nbytes = exec.store().insert(key.clone(), v);
                        events.push(Event::ReplicaAdded { worker: to, key, nbytes });
                    }
                }
                Command::WorkerMayLeave { worker } => {
                    if let Some(exec) = self.workers.remove(&worker) {
                        self.peers.0.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&worker);
                        exec.shutdown();
                    }
                    events.push(Event::WorkerRemoved { worker });
                }
                Command::KeyInMemory { client, key, workers, .. } => {
                    let value = workers.iter().find_map(|w| self.workers.get(w).and_then(|e| e.store().get(&key)));
                    // If the holder died meanwhile the key is recomputed and
                    // reported again; the futures keep waiting.
                    if let Some(value) = value
                        && let Some(fs) = self.futures.remove(&(client, key))
                    {
                        fs.iter().for_each(|f| f.resolve(Ok(value.clone())));
                    }
                }
                Command::KeyErred { client, key, error } => {
                    if let Some(fs) = self.futures.remove(&(client, key)) {
                        fs.iter().for_each(|f| f.resolve(Err(Error::Task(error.clone()))));
                    }
                }
            }
        }
        self.release_all(&mut releases);
        for (worker, jobs) in batches {
            if let Some(exec) = self.workers.get(&worker) {
                exec.submit_with_ids(jobs);
            }
        }
        events
    }

    /// Carries out the pending releases, grouped by worker.
    fn release_all(&self, releases: &mut Vec<(WorkerId, Key)>) {
        if releases.is_empty() {
            return;
        }
        // Nearly always one worker, or a few: group without sorting.
        let mut keys = Vec::with_capacity(releases.len());
        let mut others = Vec::new();
        while let Some(&(worker, _)) = releases.first() {
            keys.clear();
            for (w, k) in releases.drain(..) {
                if w == worker {
                    keys.push(k);
                } else {
                    others.push((w, k));
                }
            }
            std::mem::swap(releases, &mut others);
            if let Some(exec) = self.workers.get(&worker) {
                exec.release_many(&keys);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_and_stops() {
        let cluster = LocalCluster::new(2, 3).unwrap();
        let workers = cluster.workers();
        assert_eq!(workers.len(), 2);
        assert!(workers.iter().all(|w| w.nthreads == 3));
        drop(cluster);
    }
}
