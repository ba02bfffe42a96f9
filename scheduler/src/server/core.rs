//! The scheduler's core: one thread owns the [`SchedulerState`], takes
//! messages from the gRPC and HTTP handlers, and turns the state machine's
//! commands into batched messages to workers and clients.
//!
//! Messages are drained in batches before commands are carried out, so a
//! burst of thousands of finished tasks costs one round of decisions and one
//! message per worker, not thousands.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rask_core::{Graph, Key, Task};
use rask_proto::pb;
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::metrics::Metrics;
use crate::{ClientId, Command, ErrorKind, Event, SchedulerConfig, SchedulerState, TaskError, WorkerId};

pub(crate) type ToWorker = mpsc::UnboundedSender<Result<pb::SchedulerMessages, Status>>;
pub(crate) type ToClient = mpsc::UnboundedSender<Result<pb::KeyUpdates, Status>>;

/// Which workers to retire: by name or address, or the `n` that hold the least.
#[derive(Clone, Debug)]
pub(crate) enum RetireWhich {
    Names(Vec<String>),
    Ids(Vec<WorkerId>),
    Count(usize),
}

pub(crate) enum CoreMsg {
    WorkerJoin {
        reg: pb::RegisterWorker,
        tx: ToWorker,
        reply: oneshot::Sender<WorkerId>,
    },
    FromWorker(WorkerId, Vec<pb::WorkerMessage>),
    WorkerLost {
        worker: WorkerId,
        reason: String,
    },
    ClientJoin {
        name: String,
        reply: oneshot::Sender<ClientId>,
    },
    ClientUpdates {
        client: ClientId,
        tx: ToClient,
    },
    Submit {
        client: ClientId,
        tasks: Vec<Task>,
        wanted: Vec<Key>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Release {
        client: ClientId,
        keys: Vec<Key>,
    },
    Cancel {
        client: ClientId,
        keys: Vec<Key>,
    },
    ClientLost(ClientId),
    /// Where each key's value lives, for gathering.
    Locate {
        keys: Vec<Key>,
        reply: oneshot::Sender<Vec<(Key, Vec<String>)>>,
    },
    Retire {
        which: RetireWhich,
        reply: oneshot::Sender<Vec<WorkerView>>,
    },
    Status {
        since: u64,
        reply: oneshot::Sender<StatusView>,
    },
    Tick,
    Shutdown,
}

/// A worker as the HTTP API and dashboard show it.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct WorkerView {
    pub id: u64,
    pub name: String,
    /// Its worker group (`default` unless it registered with one).
    pub group: String,
    pub address: String,
    pub nthreads: usize,
    pub threads_busy: u32,
    pub processing: usize,
    pub keys: usize,
    pub memory_bytes: u64,
    pub spilled_bytes: u64,
    pub memory_limit: u64,
    pub retiring: bool,
    pub last_seen: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct GroupView {
    pub name: String,
    pub done: u64,
    pub total: u64,
    pub waiting: u64,
    pub queued: u64,
    pub processing: u64,
    pub memory: u64,
    pub erred: u64,
}

/// One task execution, for the dashboard's task stream.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct StreamEntry {
    pub key: String,
    pub group: String,
    pub worker: String,
    pub thread: usize,
    pub start: f64,
    pub stop: f64,
    pub status: &'static str,
}

#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Totals {
    pub tasks_by_state: FxHashMap<&'static str, u64>,
    pub completed_total: u64,
    pub erred_total: u64,
    pub queue_depth: u64,
    pub desired_workers: usize,
    pub clients: usize,
    pub memory_bytes: u64,
    pub spilled_bytes: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct StatusView {
    pub time: f64,
    pub totals: Totals,
    pub workers: Vec<WorkerView>,
    pub groups: Vec<GroupView>,
    pub stream: Vec<StreamEntry>,
    /// The sequence number to ask from next time.
    #[serde(skip)]
    pub next: u64,
    /// Seconds since the cluster last had work, or `None` while busy.
    #[serde(skip)]
    pub idle_since: Option<f64>,
    /// The adaptive target with its inputs, in total and per worker group.
    #[serde(skip)]
    pub adaptive: crate::AdaptiveTarget,
}

/// One execution as recorded on the hot path: no strings built per task.
struct Exec {
    seq: u64,
    key: Key,
    worker: Arc<str>,
    thread: usize,
    start: f64,
    stop: f64,
    status: &'static str,
}

struct WorkerConn {
    name: Arc<str>,
    group: Arc<str>,
    address: String,
    tx: ToWorker,
    heartbeat: pb::Heartbeat,
    last_seen: Instant,
    /// When each thread lane of the task stream frees up.
    lanes: Vec<f64>,
}

struct ClientConn {
    name: String,
    tx: Option<ToClient>,
    /// Updates produced before the client opened its update stream.
    pending: Vec<pb::KeyUpdate>,
}

/// A retire request waiting for its workers to leave.
type PendingRetire = (Vec<WorkerId>, Vec<WorkerView>, oneshot::Sender<Vec<WorkerView>>);

pub(crate) struct CoreConfig {
    pub scheduler: SchedulerConfig,
    pub target_duration: f64,
    pub heartbeat_timeout: Duration,
}

pub(crate) struct Core {
    state: SchedulerState,
    config: CoreConfig,
    workers: FxHashMap<WorkerId, WorkerConn>,
    clients: FxHashMap<ClientId, ClientConn>,
    next_worker: u64,
    next_client: u64,
    metrics: Arc<Metrics>,
    stream: VecDeque<Exec>,
    /// Duration histograms by task prefix, so finishing a task does not
    /// hash label values.
    durations: FxHashMap<Box<str>, prometheus::Histogram>,
    stream_seq: u64,
    retiring: Vec<PendingRetire>,
    idle_since: Option<f64>,
    out_workers: FxHashMap<WorkerId, Vec<pb::SchedulerMessage>>,
    out_clients: FxHashMap<ClientId, Vec<pb::KeyUpdate>>,
}

const BATCH: usize = 4096;
const STREAM_KEEP: usize = 20_000;

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn key_update(key: &Key, state: pb::KeyState) -> pb::KeyUpdate {
    pb::KeyUpdate { key: Some(key.into()), state: state as i32, ..Default::default() }
}

fn error_kind(kind: ErrorKind) -> pb::ErrorKind {
    match kind {
        ErrorKind::Raised => pb::ErrorKind::Raised,
        ErrorKind::KilledWorker => pb::ErrorKind::KilledWorker,
        ErrorKind::InvalidGraph => pb::ErrorKind::InvalidGraph,
        ErrorKind::Cancelled => pb::ErrorKind::Cancelled,
    }
}

fn key_of(k: Option<pb::Key>) -> Option<Key> {
    k.map(Key::from)
}

impl Core {
    pub(crate) fn new(config: CoreConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            state: SchedulerState::new(config.scheduler.clone()),
            config,
            workers: FxHashMap::default(),
            clients: FxHashMap::default(),
            next_worker: 0,
            next_client: 1,
            metrics,
            stream: VecDeque::new(),
            durations: FxHashMap::default(),
            stream_seq: 0,
            retiring: Vec::new(),
            idle_since: Some(now()),
            out_workers: FxHashMap::default(),
            out_clients: FxHashMap::default(),
        }
    }

    /// Runs until [`CoreMsg::Shutdown`] or until every sender is gone.
    pub(crate) fn run(mut self, mut rx: mpsc::UnboundedReceiver<CoreMsg>) {
        let mut commands = Vec::new();
        'outer: while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            let mut n = 0;
            while let Some(msg) = next.take() {
                if !self.on_message(msg) {
                    break 'outer;
                }
                n += 1;
                if n < BATCH {
                    next = rx.try_recv().ok();
                }
            }
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
            self.flush();
            self.answer_retirements();
            self.track_idle();
        }
        tracing::info!("scheduler core stopped");
    }

    fn on_message(&mut self, msg: CoreMsg) -> bool {
        match msg {
            CoreMsg::WorkerJoin { reg, tx, reply } => self.worker_join(reg, tx, reply),
            CoreMsg::FromWorker(worker, messages) => {
                if let Some(conn) = self.workers.get_mut(&worker) {
                    conn.last_seen = Instant::now();
                    for m in messages {
                        self.on_worker_message(worker, m);
                    }
                }
            }
            CoreMsg::WorkerLost { worker, reason } => self.remove_worker(worker, &reason),
            CoreMsg::ClientJoin { name, reply } => {
                let id = ClientId(self.next_client);
                self.next_client += 1;
                tracing::info!(client = id.0, name = %name, "client connected");
                self.clients.insert(id, ClientConn { name, tx: None, pending: Vec::new() });
                let _ = reply.send(id);
            }
            CoreMsg::ClientUpdates { client, tx } => {
                if let Some(conn) = self.clients.get_mut(&client) {
                    if !conn.pending.is_empty() {
                        let _ = tx.send(Ok(pb::KeyUpdates { updates: std::mem::take(&mut conn.pending) }));
                    }
                    conn.tx = Some(tx);
                } else {
                    let _ = tx.send(Err(Status::not_found(format!("client {} is not connected", client.0))));
                }
            }
            CoreMsg::Submit { client, tasks, wanted, reply } => {
                let _ = reply.send(self.submit(client, tasks, wanted));
            }
            CoreMsg::Release { client, keys } => self.state.handle(Event::ReleaseKeys { client, keys }),
            CoreMsg::Cancel { client, keys } => {
                for k in &keys {
                    self.out_clients.entry(client).or_default().push(key_update(k, pb::KeyState::Cancelled));
                }
                self.state.handle(Event::CancelKeys { client, keys });
            }
            CoreMsg::ClientLost(client) => {
                if let Some(conn) = self.clients.remove(&client) {
                    tracing::info!(client = client.0, name = %conn.name, "client disconnected; its keys are released");
                    self.out_clients.remove(&client);
                    self.state.handle(Event::ClientRemoved { client });
                }
            }
            CoreMsg::Locate { keys, reply } => {
                let located = keys
                    .into_iter()
                    .map(|k| {
                        let holders = self
                            .state
                            .who_has(&k)
                            .iter()
                            .filter_map(|w| self.workers.get(w).map(|c| c.address.clone()))
                            .collect();
                        (k, holders)
                    })
                    .collect();
                let _ = reply.send(located);
            }
            CoreMsg::Retire { which, reply } => self.retire(which, reply),
            CoreMsg::Status { since, reply } => {
                // Idleness as of this message, not as of the last round.
                self.track_idle();
                self.update_metrics();
                let _ = reply.send(self.status(since));
            }
            CoreMsg::Tick => self.tick(),
            CoreMsg::Shutdown => return false,
        }
        true
    }

    fn worker_join(&mut self, reg: pb::RegisterWorker, tx: ToWorker, reply: oneshot::Sender<WorkerId>) {
        let id = WorkerId(self.next_worker);
        self.next_worker += 1;
        let name = if reg.name.is_empty() { format!("worker-{}", id.0) } else { reg.name };
        let nthreads = (reg.nthreads as usize).max(1);
        let group = if reg.group.is_empty() { crate::adaptive::DEFAULT_GROUP } else { reg.group.as_str() };
        tracing::info!(worker = id.0, name = %name, group, address = %reg.data_address, nthreads, "worker joined");
        let welcome = pb::SchedulerMessage {
            kind: Some(pb::scheduler_message::Kind::Welcome(pb::WorkerWelcome {
                version: Some(rask_proto::VERSION),
                worker_id: id.0,
            })),
        };
        let _ = tx.send(Ok(pb::SchedulerMessages { messages: vec![welcome] }));
        self.workers.insert(
            id,
            WorkerConn {
                name: Arc::from(name.as_str()),
                group: Arc::from(group),
                address: reg.data_address,
                tx,
                heartbeat: pb::Heartbeat::default(),
                last_seen: Instant::now(),
                lanes: vec![0.0; nthreads],
            },
        );
        let capabilities = rask_core::Capabilities::from_names(reg.capabilities.iter().map(String::as_str));
        self.state.handle(Event::WorkerAdded {
            worker: id,
            name,
            nthreads,
            memory_limit: reg.memory_limit_bytes,
            capabilities,
        });
        let _ = reply.send(id);
    }

    fn remove_worker(&mut self, worker: WorkerId, reason: &str) {
        if let Some(conn) = self.workers.remove(&worker) {
            tracing::warn!(worker = worker.0, name = %conn.name, reason, "worker lost; its work is rescheduled");
            self.out_workers.remove(&worker);
            self.state.handle(Event::WorkerRemoved { worker });
        }
    }

    fn on_worker_message(&mut self, worker: WorkerId, m: pb::WorkerMessage) {
        use pb::worker_message::Kind;
        let Some(kind) = m.kind else { return };
        let event = match kind {
            Kind::Register(_) => {
                tracing::warn!(worker = worker.0, "worker registered twice; ignored");
                return;
            }
            Kind::Finished(f) => {
                let Some(key) = key_of(f.key) else { return };
                let duration = if f.duration_seconds.is_finite() { f.duration_seconds.max(0.0) } else { 0.0 };
                self.record(worker, &key, duration, "ok");
                let prefix = key.prefix();
                if let Some(h) = self.durations.get(prefix) {
                    h.observe(duration);
                } else {
                    let h = self.metrics.durations.with_label_values(&[prefix]);
                    h.observe(duration);
                    self.durations.insert(prefix.into(), h);
                }
                Event::TaskFinished { worker, key, nbytes: f.nbytes, duration }
            }
            Kind::Erred(e) => {
                let Some(key) = key_of(e.key) else { return };
                self.record(worker, &key, 0.0, "error");
                Event::TaskErred { worker, key, message: e.message, origin: key_of(e.origin) }
            }
            Kind::Heartbeat(h) => {
                if let Some(conn) = self.workers.get_mut(&worker) {
                    let delta =
                        h.transfer_incoming_bytes_total.saturating_sub(conn.heartbeat.transfer_incoming_bytes_total);
                    self.metrics.transferred.inc_by(delta);
                    conn.heartbeat = h;
                }
                return;
            }
            Kind::StealResponse(s) => {
                let Some(key) = key_of(s.key) else { return };
                Event::StealResponse { worker, key, stolen: s.stolen }
            }
            Kind::MissingData(m) => {
                let (Some(key), Some(missing)) = (key_of(m.key), key_of(m.missing)) else { return };
                Event::MissingData { worker, key, missing }
            }
            Kind::ReplicaAdded(r) => {
                let Some(key) = key_of(r.key) else { return };
                Event::ReplicaAdded { worker, key, nbytes: r.nbytes }
            }
            Kind::Paused(p) => {
                tracing::info!(worker = worker.0, paused = p.paused, "worker memory pause changed");
                Event::WorkerPaused { worker, paused: p.paused }
            }
            Kind::Retire(_) => {
                let name = self.workers.get(&worker).map(|c| c.name.clone()).unwrap_or_default();
                tracing::info!(worker = worker.0, name = %name, "worker asked to retire");
                // Nobody waits for the answer: the worker learns by being let go.
                let (reply, _) = oneshot::channel();
                self.retire(RetireWhich::Ids(vec![worker]), reply);
                return;
            }
            Kind::ReplicaFailed(keys) => {
                for k in keys.keys {
                    self.state.handle(Event::ReplicaFailed { worker, key: k.into() });
                }
                return;
            }
        };
        self.state.handle(event);
    }

    /// Adds a finished execution to the task stream, in the first free lane.
    fn record(&mut self, worker: WorkerId, key: &Key, duration: f64, status: &'static str) {
        let Some(conn) = self.workers.get_mut(&worker) else { return };
        let stop = now();
        let start = stop - duration;
        let lane =
            conn.lanes.iter().position(|&free| free <= start + 1e-3).unwrap_or_else(|| {
                conn.lanes.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
            });
        if let Some(l) = conn.lanes.get_mut(lane) {
            *l = stop;
        }
        self.stream_seq += 1;
        self.stream.push_back(Exec {
            seq: self.stream_seq,
            key: key.clone(),
            worker: conn.name.clone(),
            thread: lane,
            start,
            stop,
            status,
        });
        if self.stream.len() > STREAM_KEEP {
            self.stream.pop_front();
        }
    }

    fn submit(&mut self, client: ClientId, tasks: Vec<Task>, wanted: Vec<Key>) -> Result<(), String> {
        if !self.clients.contains_key(&client) {
            return Err(format!("client {} is not connected", client.0));
        }
        // The client validated the graph too, but a scheduler never trusts
        // its peers: duplicate keys, cycles, missing inputs and unknown
        // outputs are refused. Op names are not checked: workers may run
        // another binary than the scheduler, with the user's ops; an op a
        // worker lacks fails its task with a message that names it.
        tracing::debug!(client = client.0, tasks = tasks.len(), wanted = wanted.len(), "graph submitted");
        if wanted.is_empty() {
            // Nothing would report a rejection: check here.
            let mut graph = Graph::new();
            for t in tasks {
                graph.insert(t).map_err(|e| e.to_string())?;
            }
            graph.validate(|k| self.state.contains_key(k), |_| true).map_err(|e| e.to_string())?;
            let (tasks, _) = graph.into_parts();
            self.state.handle(Event::UpdateGraph { client, tasks, wanted });
            return Ok(());
        }
        // The state machine takes the graph in with the same checks, in one
        // pass, and leaves its state as it was when it refuses one: then
        // every wanted key errs as an invalid graph, which is what the
        // caller hears (as the answer to its request, not as key updates).
        let tasks = tasks.into_iter().map(Arc::new).collect();
        self.state.handle(Event::UpdateGraph { client, tasks, wanted });
        let mut commands = Vec::new();
        self.state.drain_commands_into(&mut commands);
        let mut refused = None;
        commands.retain(|c| match c {
            Command::KeyErred { client: c, error, .. } if *c == client && error.kind == ErrorKind::InvalidGraph => {
                refused.get_or_insert_with(|| error.message.clone());
                false
            }
            _ => true,
        });
        // Carried out now, as the core's loop would after this message.
        let events = self.carry_out(&mut commands);
        for e in events {
            self.state.handle(e);
        }
        refused.map_or(Ok(()), Err)
    }

    fn send_worker(&mut self, worker: WorkerId, kind: pb::scheduler_message::Kind) {
        self.out_workers.entry(worker).or_default().push(pb::SchedulerMessage { kind: Some(kind) });
    }

    fn location(&self, key: &Key, holders: &[WorkerId]) -> pb::Location {
        pb::Location {
            key: Some(key.into()),
            holders: holders
                .iter()
                .filter_map(|w| self.workers.get(w).map(|c| pb::Holder { worker_id: w.0, address: c.address.clone() }))
                .collect(),
        }
    }

    fn carry_out(&mut self, commands: &mut Vec<Command>) -> Vec<Event> {
        use pb::scheduler_message::Kind;
        let mut events = Vec::new();
        for cmd in commands.drain(..) {
            match cmd {
                Command::Execute { worker, task, priority, who_has, .. } => {
                    let task_pb = match rask_proto::task_to_pb(&task) {
                        Ok(t) => t,
                        Err(e) => {
                            // Values inside the task that cannot be encoded: the
                            // task fails as if it had raised.
                            events.push(Event::TaskErred {
                                worker,
                                key: task.key.clone(),
                                message: format!("cannot send the task to a worker: {e}"),
                                origin: None,
                            });
                            continue;
                        }
                    };
                    let inputs = who_has.iter().map(|(k, ws)| self.location(k, ws)).collect();
                    self.send_worker(
                        worker,
                        Kind::Execute(pb::Execute {
                            task: Some(task_pb),
                            priority_generation: priority.generation,
                            priority_order: priority.order,
                            inputs,
                        }),
                    );
                }
                Command::Release { worker, key } => {
                    self.send_worker(worker, Kind::Release(pb::Keys { keys: vec![(&key).into()] }))
                }
                Command::Steal { worker, key } => {
                    // An execute still in this round's batch never left: take it back here.
                    let batch = self.out_workers.get_mut(&worker);
                    let pos = batch.as_ref().and_then(|b| {
                        b.iter().position(|m| match &m.kind {
                            Some(Kind::Execute(e)) => e
                                .task
                                .as_ref()
                                .and_then(|t| t.key.as_ref())
                                .is_some_and(|k| Key::from(k.clone()) == key),
                            _ => false,
                        })
                    });
                    if let (Some(pos), Some(batch)) = (pos, self.out_workers.get_mut(&worker)) {
                        batch.remove(pos);
                        events.push(Event::StealResponse { worker, key, stolen: true });
                    } else if self.workers.contains_key(&worker) {
                        self.send_worker(worker, Kind::Steal(pb::Keys { keys: vec![(&key).into()] }));
                    } else {
                        events.push(Event::StealResponse { worker, key, stolen: false });
                    }
                }
                Command::Replicate { key, from, to } => {
                    let location = self.location(&key, &[from]);
                    if location.holders.is_empty() || !self.workers.contains_key(&to) {
                        events.push(Event::ReplicaFailed { worker: to, key });
                    } else {
                        self.send_worker(to, Kind::Replicate(location));
                    }
                }
                Command::WorkerMayLeave { worker } => {
                    self.send_worker(worker, Kind::MayLeave(pb::Empty {}));
                    self.flush_worker(worker);
                    if let Some(conn) = self.workers.remove(&worker) {
                        tracing::info!(worker = worker.0, name = %conn.name, "worker retired");
                    }
                    events.push(Event::WorkerRemoved { worker });
                }
                Command::KeyInMemory { client, key, nbytes, .. } => {
                    let mut u = key_update(&key, pb::KeyState::Memory);
                    u.nbytes = nbytes;
                    self.out_clients.entry(client).or_default().push(u);
                }
                Command::KeyErred { client, key, error } => {
                    let TaskError { key: origin, kind, message } = &*error;
                    let mut u = key_update(&key, pb::KeyState::Erred);
                    u.origin = Some(origin.into());
                    u.error = message.clone();
                    u.error_kind = error_kind(*kind) as i32;
                    self.out_clients.entry(client).or_default().push(u);
                }
            }
        }
        events
    }

    fn flush_worker(&mut self, worker: WorkerId) {
        if let Some(messages) = self.out_workers.remove(&worker)
            && let Some(conn) = self.workers.get(&worker)
        {
            let _ = conn.tx.send(Ok(pb::SchedulerMessages { messages }));
        }
    }

    /// Sends what this round produced: one batch per worker and per client.
    fn flush(&mut self) {
        let workers: Vec<WorkerId> = self.out_workers.keys().copied().collect();
        for w in workers {
            self.flush_worker(w);
        }
        for (client, updates) in std::mem::take(&mut self.out_clients) {
            let Some(conn) = self.clients.get_mut(&client) else { continue };
            match &conn.tx {
                Some(tx) => {
                    if tx.send(Ok(pb::KeyUpdates { updates })).is_err() {
                        conn.tx = None;
                    }
                }
                None => conn.pending.extend(updates),
            }
        }
    }

    fn retire(&mut self, which: RetireWhich, reply: oneshot::Sender<Vec<WorkerView>>) {
        let views = self.worker_views();
        let chosen: Vec<WorkerView> = match which {
            RetireWhich::Names(names) => views
                .into_iter()
                .filter(|v| names.iter().any(|n| *n == v.name || *n == v.address || v.address.ends_with(n.as_str())))
                .collect(),
            RetireWhich::Ids(ids) => views.into_iter().filter(|v| ids.contains(&WorkerId(v.id))).collect(),
            RetireWhich::Count(n) => {
                // Those holding the least data go first: the least to move.
                let mut v: Vec<WorkerView> = views.into_iter().filter(|v| !v.retiring).collect();
                v.sort_by_key(|w| (w.memory_bytes, std::cmp::Reverse(w.id)));
                v.truncate(n);
                v
            }
        };
        let ids: Vec<WorkerId> = chosen.iter().map(|v| WorkerId(v.id)).collect();
        tracing::info!(workers = ?chosen.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), "retiring workers");
        if !ids.is_empty() {
            self.state.handle(Event::RetireWorkers { workers: ids.clone() });
        }
        self.retiring.push((ids, chosen, reply));
    }

    fn answer_retirements(&mut self) {
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|(ids, _, _)| ids.iter().all(|w| !self.workers.contains_key(w)));
        self.retiring = waiting;
        for (_, views, reply) in done {
            let _ = reply.send(views);
        }
    }

    fn track_idle(&mut self) {
        let busy = self.state.queue_depth() > 0
            || self.state.active_tasks() > 0
            || self.workers.values().any(|w| w.heartbeat.threads_busy > 0);
        match (busy, self.idle_since) {
            (true, _) => self.idle_since = None,
            (false, None) => self.idle_since = Some(now()),
            (false, Some(_)) => {}
        }
    }

    fn tick(&mut self) {
        let timeout = self.config.heartbeat_timeout;
        let stale: Vec<WorkerId> =
            self.workers.iter().filter(|(_, c)| c.last_seen.elapsed() > timeout).map(|(id, _)| *id).collect();
        for w in stale {
            self.remove_worker(w, "no heartbeat");
        }
        self.update_metrics();
    }

    fn worker_views(&self) -> Vec<WorkerView> {
        let snap = self.state.snapshot();
        let wall = now();
        let mut views: Vec<WorkerView> = snap
            .workers
            .into_iter()
            .filter_map(|w| {
                let conn = self.workers.get(&w.id)?;
                Some(WorkerView {
                    id: w.id.0,
                    name: w.name,
                    group: conn.group.to_string(),
                    address: conn.address.clone(),
                    nthreads: w.nthreads,
                    threads_busy: conn.heartbeat.threads_busy,
                    processing: w.processing,
                    keys: w.keys,
                    memory_bytes: w.nbytes,
                    spilled_bytes: conn.heartbeat.memory_spilled_bytes,
                    memory_limit: w.memory_limit,
                    retiring: w.retiring,
                    last_seen: wall - conn.last_seen.elapsed().as_secs_f64(),
                })
            })
            .collect();
        views.sort_by_key(|v| v.id);
        views
    }

    fn status(&self, since: u64) -> StatusView {
        let snap = self.state.snapshot();
        let workers = self.worker_views();
        let tasks_by_state = snap.tasks_by_state.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        let count = |by: &[(crate::TaskStateName, u64)], s: crate::TaskStateName| {
            by.iter().find(|(n, _)| *n == s).map_or(0, |(_, c)| *c)
        };
        use crate::TaskStateName as S;
        let groups = snap
            .groups
            .iter()
            .map(|g| {
                let waiting = count(&g.by_state, S::Waiting);
                let queued = count(&g.by_state, S::Queued);
                let processing = count(&g.by_state, S::Processing);
                let erred = count(&g.by_state, S::Erred);
                GroupView {
                    name: g.name.to_string(),
                    done: g.completed,
                    total: g.completed + waiting + queued + processing + erred,
                    waiting,
                    queued,
                    processing,
                    memory: count(&g.by_state, S::Memory),
                    erred,
                }
            })
            .collect();
        // Only the dashboard's window: a new page does not get the whole buffer.
        let horizon = now() - 20.0;
        let stream: Vec<StreamEntry> = self
            .stream
            .iter()
            .filter(|e| e.seq > since && e.stop > horizon)
            .map(|e| StreamEntry {
                key: e.key.to_string(),
                group: e.key.prefix().to_string(),
                worker: e.worker.to_string(),
                thread: e.thread,
                start: e.start,
                stop: e.stop,
                status: e.status,
            })
            .collect();
        let adaptive = self.adaptive_target();
        StatusView {
            time: now(),
            totals: Totals {
                tasks_by_state,
                completed_total: snap.completed_total,
                erred_total: snap.erred_total,
                queue_depth: self.state.queue_depth(),
                desired_workers: adaptive.workers,
                clients: self.clients.len(),
                memory_bytes: workers.iter().map(|w| w.memory_bytes).sum(),
                spilled_bytes: workers.iter().map(|w| w.spilled_bytes).sum(),
            },
            workers,
            groups,
            stream,
            next: self.stream_seq,
            idle_since: self.idle_since,
            adaptive,
        }
    }

    /// The adaptive target, with each worker's group from its registration.
    fn adaptive_target(&self) -> crate::AdaptiveTarget {
        self.state.adaptive_target_by(self.config.target_duration, |w| {
            self.workers.get(&w).map_or_else(|| crate::adaptive::DEFAULT_GROUP.to_string(), |c| c.group.to_string())
        })
    }

    fn update_metrics(&self) {
        let _timer = self.metrics.tick.start_timer();
        let snap = self.state.snapshot();
        let m = &self.metrics;
        m.workers.set(self.workers.len() as i64);
        m.threads.set(snap.workers.iter().map(|w| w.nthreads as i64).sum());
        for (s, n) in &snap.tasks_by_state {
            m.tasks.with_label_values(&[s.as_str()]).set(*n as i64);
        }
        m.queue_depth.set(self.state.queue_depth() as i64);
        m.desired_workers.set(self.state.adaptive_target(self.config.target_duration) as i64);
        m.set_counter(&m.completed, snap.completed_total);
        m.set_counter(&m.erred, snap.erred_total);
        m.stored.set(snap.workers.iter().map(|w| w.nbytes as i64).sum());
        m.spilled.set(self.workers.values().map(|c| c.heartbeat.memory_spilled_bytes as i64).sum());
        m.clients.set(self.clients.len() as i64);
    }
}
