//! The scheduler state machine itself. See the crate docs for the contract.
//!
//! Bookkeeping invariants, checked by `check_invariants` in tests:
//! - `waiters(t)` is the number of dependents of `t` that are waiting, queued
//!   or processing: they will read `t`, so its data must stay.
//! - `waiting_on(t)`, for a waiting task, is the number of its dependencies
//!   not in memory; at zero the task is ready.
//! - A task in memory is released (its data freed on every worker) as soon as
//!   no waiter and no client needs it. Its spec stays while a dependent
//!   exists, so lost data can be recomputed from lineage; it is forgotten
//!   once nothing refers to it.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as HashEntry;
use rask_core::graph::GraphInputs;
use rask_core::{Capabilities, Key};
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use crate::adaptive::{AdaptiveTarget, DEFAULT_GROUP, WorkerLoad};
use crate::order::depth_first_order;
use crate::{ClientId, Command, ErrorKind, Event, Priority, SchedulerConfig, TaskError, WorkerId};

type TaskId = usize;

/// The lifecycle states of a task, as in Dask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskStateName {
    Released,
    Waiting,
    Queued,
    Processing,
    Memory,
    Erred,
}

impl TaskStateName {
    pub const ALL: [TaskStateName; 6] = [
        TaskStateName::Released,
        TaskStateName::Waiting,
        TaskStateName::Queued,
        TaskStateName::Processing,
        TaskStateName::Memory,
        TaskStateName::Erred,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStateName::Released => "released",
            TaskStateName::Waiting => "waiting",
            TaskStateName::Queued => "queued",
            TaskStateName::Processing => "processing",
            TaskStateName::Memory => "memory",
            TaskStateName::Erred => "erred",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TState {
    Released,
    Waiting,
    Queued,
    Processing(WorkerId),
    Memory,
    Erred,
}

impl TState {
    fn name(self) -> TaskStateName {
        match self {
            TState::Released => TaskStateName::Released,
            TState::Waiting => TaskStateName::Waiting,
            TState::Queued => TaskStateName::Queued,
            TState::Processing(_) => TaskStateName::Processing,
            TState::Memory => TaskStateName::Memory,
            TState::Erred => TaskStateName::Erred,
        }
    }

    /// Active tasks will run and read their dependencies.
    fn is_active(self) -> bool {
        matches!(self, TState::Waiting | TState::Queued | TState::Processing(_))
    }
}

/// A task record: 128 bytes, and no allocation of its own for the common
/// shapes (up to three inputs and three dependents, one holder). The record
/// table of a 200,000-task graph is written once at intake and read on every
/// transition, so its size is what the scheduler's cache and page faults
/// pay for; what few tasks need is behind `rare`.
struct TaskEntry {
    /// The task's definition; its key is `spec.key`.
    spec: Arc<rask_core::Task>,
    state: TState,
    deps: Ids,
    dependents: Ids,
    who_has: Few<WorkerId, 1>,
    priority: Priority,
    nbytes: u64,
    /// Expected duration used for the occupancy of the worker running it.
    expected: f64,
    rare: Option<Box<Rare>>,
    waiting_on: u32,
    waiters: u32,
    group: u32,
    /// The worker refused a steal (the task had started): do not ask again.
    started: bool,
    replicating: bool,
    /// What a worker must be able to run (a Python function): fits in the
    /// record's padding.
    needs: Capabilities,
}

/// The parts of a task record that few tasks use: the clients that want it
/// (a graph's outputs), failures, errors, steals.
#[derive(Default)]
struct Rare {
    who_wants: Vec<ClientId>,
    /// Workers that died while running this task.
    failures: u32,
    error: Option<Arc<TaskError>>,
    steal_to: Option<WorkerId>,
}

impl TaskEntry {
    /// A released task with no inputs or dependents yet.
    fn new(spec: Arc<rask_core::Task>, priority: Priority, group: usize) -> Self {
        TaskEntry {
            needs: Capabilities::required_by(&spec),
            spec,
            state: TState::Released,
            deps: Ids::default(),
            dependents: Ids::default(),
            who_has: Few::default(),
            priority,
            nbytes: 0,
            expected: 0.0,
            rare: None,
            waiting_on: 0,
            waiters: 0,
            // Groups are numbered from 0 as they are first seen; four billion
            // distinct key prefixes would not fit in memory.
            group: u32::try_from(group).expect("fewer than 2^32 task groups"),
            started: false,
            replicating: false,
        }
    }

    fn group(&self) -> usize {
        self.group as usize
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn who_wants(&self) -> &[ClientId] {
        self.rare.as_ref().map_or(&[], |r| &r.who_wants)
    }

    fn error(&self) -> Option<&Arc<TaskError>> {
        self.rare.as_ref()?.error.as_ref()
    }

    fn steal_to(&self) -> Option<WorkerId> {
        self.rare.as_ref()?.steal_to
    }
}

/// A short list kept in place: up to `N` items need no allocation; longer
/// lists move to the heap. 16 bytes for `Few<u32, 3>` and `Few<u64, 1>`,
/// against 24 bytes and an allocation for a `Vec`.
#[derive(Clone, Debug, Default)]
enum Few<T, const N: usize> {
    #[default]
    Empty,
    /// The length (1..=N) and the items; those past it are stale.
    Inline(u8, [T; N]),
    /// Boxed: a bare `Vec` would make every list 24 bytes.
    #[allow(clippy::box_collection)]
    Heap(Box<Vec<T>>),
}

impl<T: Copy + PartialEq, const N: usize> Few<T, N> {
    fn as_slice(&self) -> &[T] {
        match self {
            Few::Empty => &[],
            Few::Inline(n, items) => &items[..*n as usize],
            Few::Heap(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn contains(&self, x: &T) -> bool {
        self.as_slice().contains(x)
    }

    fn push(&mut self, x: T) {
        match self {
            Few::Empty => *self = Few::Inline(1, [x; N]),
            Few::Inline(n, items) if (*n as usize) < N => {
                items[*n as usize] = x;
                *n += 1;
            }
            Few::Inline(_, items) => {
                let mut v = Vec::with_capacity(2 * N);
                v.extend_from_slice(items);
                v.push(x);
                *self = Few::Heap(Box::new(v));
            }
            Few::Heap(v) => v.push(x),
        }
    }

    fn clear(&mut self) {
        *self = Few::Empty;
    }

    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut kept = Few::Empty;
        for x in self.as_slice() {
            if keep(x) {
                kept.push(*x);
            }
        }
        *self = kept;
    }

    /// Removes the item at `pos`, moving the last one there.
    fn swap_remove(&mut self, pos: usize) {
        match self {
            Few::Empty => {}
            Few::Inline(n, items) => {
                let last = *n as usize - 1;
                items[pos] = items[last];
                *n -= 1;
                if *n == 0 {
                    *self = Few::Empty;
                }
            }
            Few::Heap(v) => {
                v.swap_remove(pos);
            }
        }
    }

    fn to_vec(&self) -> Vec<T> {
        self.as_slice().to_vec()
    }
}

/// Task ids in a record (inputs, dependents), stored as `u32` as in the key
/// index.
#[derive(Clone, Debug, Default)]
struct Ids(Few<u32, 3>);

impl Ids {
    fn ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.0.as_slice().iter().map(|&id| id as TaskId)
    }

    fn get(&self, k: usize) -> TaskId {
        self.0.as_slice()[k] as TaskId
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, id: TaskId) -> bool {
        self.ids().any(|x| x == id)
    }

    fn push(&mut self, id: TaskId) {
        self.0.push(to_u32(id));
    }

    fn position(&self, id: TaskId) -> Option<usize> {
        self.ids().position(|x| x == id)
    }

    fn swap_remove(&mut self, pos: usize) {
        self.0.swap_remove(pos);
    }
}

/// What an indexed graph intake has claimed so far, to give back if the
/// graph is rejected.
struct Intake {
    n_before: usize,
    recycled_before: usize,
    /// Ids of the records made, in the order they were claimed.
    new: Vec<TaskId>,
}

struct WorkerEntry {
    name: String,
    nthreads: usize,
    memory_limit: u64,
    processing: FxHashSet<TaskId>,
    occupancy: f64,
    has_what: FxHashSet<TaskId>,
    nbytes: u64,
    retiring: bool,
    /// Paused for memory: it keeps its running tasks and serves its data,
    /// but gets no new tasks.
    paused: bool,
    told_to_leave: bool,
    incoming_steals: usize,
    capabilities: Capabilities,
}

impl WorkerEntry {
    /// Whether new tasks may go to this worker.
    fn accepts_work(&self) -> bool {
        !self.retiring && !self.paused
    }

    fn can_run(&self, t: &TaskEntry) -> bool {
        self.capabilities.contains(t.needs)
    }
}

/// Per task-group statistics: learned durations and progress counters.
struct Group {
    name: Arc<str>,
    duration: Option<f64>,
    nbytes_avg: f64,
    counts: [u64; 6],
    completed: u64,
}

/// A read-only view for metrics, dashboards and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub tasks_by_state: Vec<(TaskStateName, u64)>,
    pub workers: Vec<WorkerSnapshot>,
    pub groups: Vec<GroupSnapshot>,
    pub completed_total: u64,
    pub erred_total: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSnapshot {
    pub id: WorkerId,
    pub name: String,
    pub nthreads: usize,
    pub memory_limit: u64,
    pub processing: usize,
    pub occupancy: f64,
    pub keys: usize,
    pub nbytes: u64,
    pub retiring: bool,
    pub paused: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupSnapshot {
    pub name: Arc<str>,
    pub by_state: Vec<(TaskStateName, u64)>,
    pub completed: u64,
    pub duration: Option<f64>,
}

pub struct SchedulerState {
    config: SchedulerConfig,
    tasks: Vec<Option<TaskEntry>>,
    free_ids: Vec<TaskId>,
    /// Task ids by key. The table holds ids only, and compares keys in
    /// the task records: it is a tenth of the size of a map holding keys,
    /// and claiming or forgetting a key copies and drops nothing. Ids are
    /// stored as `u32` to halve the table again.
    by_key: HashTable<u32>,
    workers: BTreeMap<WorkerId, WorkerEntry>,
    /// Running workers with a free thread.
    idle: BTreeSet<WorkerId>,
    /// Workers with more tasks than threads.
    saturated: BTreeSet<WorkerId>,
    /// Workers that may have room for queued tasks.
    may_have_slots: BTreeSet<WorkerId>,
    retiring: BTreeSet<WorkerId>,
    queued: BTreeSet<(Priority, TaskId)>,
    groups: Vec<Group>,
    group_index: FxHashMap<Arc<str>, usize>,
    last_group: Option<usize>,
    generation: u64,
    counts: [u64; 6],
    completed_total: u64,
    erred_total: u64,
    /// Tasks to check for release or forgetting: a worklist instead of
    /// recursion, so a million-long chain cannot overflow the stack.
    release_worklist: Vec<TaskId>,
    /// Scratch for `decide_worker`.
    candidates: Vec<WorkerId>,
    commands: Vec<Command>,
    /// Definitions of forgotten tasks, for the driver to free
    /// (`SchedulerConfig::hand_off_forgotten`).
    forgotten: Vec<Arc<rask_core::Task>>,
}

impl std::fmt::Debug for SchedulerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerState")
            .field("tasks", &self.by_key.len())
            .field("workers", &self.workers.len())
            .field("queued", &self.queued.len())
            .finish()
    }
}

impl SchedulerState {
    pub fn new(config: SchedulerConfig) -> Self {
        Self {
            config,
            tasks: Vec::new(),
            free_ids: Vec::new(),
            by_key: HashTable::new(),
            workers: BTreeMap::new(),
            idle: BTreeSet::new(),
            saturated: BTreeSet::new(),
            may_have_slots: BTreeSet::new(),
            retiring: BTreeSet::new(),
            queued: BTreeSet::new(),
            groups: Vec::new(),
            group_index: FxHashMap::default(),
            last_group: None,
            generation: 0,
            counts: [0; 6],
            completed_total: 0,
            erred_total: 0,
            release_worklist: Vec::new(),
            candidates: Vec::new(),
            commands: Vec::new(),
            forgotten: Vec::new(),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Applies one event. Commands accumulate until [`Self::take_commands`].
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::WorkerAdded { worker, name, nthreads, memory_limit, capabilities } => {
                self.add_worker(worker, name, nthreads, memory_limit, capabilities)
            }
            Event::WorkerRemoved { worker } => self.remove_worker(worker),
            Event::WorkerPaused { worker, paused } => self.set_paused(worker, paused),
            Event::UpdateGraph { client, tasks, wanted } => self.update_graph(client, tasks, wanted),
            Event::UpdateGraphIndexed { client, tasks, inputs, wanted } => {
                self.update_graph_indexed(client, tasks, inputs, wanted)
            }
            Event::TaskFinished { worker, key, nbytes, duration } => {
                let id = self.id_of(&key);
                self.task_finished(worker, id, key, nbytes, duration)
            }
            Event::TaskFinishedById { worker, id, key, nbytes, duration } => {
                let id = self.checked_id(id, &key);
                self.task_finished(worker, id, key, nbytes, duration)
            }
            Event::TaskErred { worker, key, message, origin } => self.task_erred(worker, &key, message, origin),
            Event::MissingData { worker, key, missing } => self.missing_data(worker, &key, &missing),
            Event::ReleaseKeys { client, keys } => keys.iter().for_each(|k| self.release_want(client, k)),
            Event::CancelKeys { client, keys } => keys.iter().for_each(|k| self.release_want(client, k)),
            Event::ClientRemoved { client } => {
                let keys: Vec<Key> = self
                    .live()
                    .filter(|(_, t)| t.who_wants().contains(&client))
                    .map(|(_, t)| t.spec.key.clone())
                    .collect();
                keys.iter().for_each(|k| self.release_want(client, k));
            }
            Event::StealResponse { worker, key, stolen } => self.steal_response(worker, &key, stolen),
            Event::RetireWorkers { workers } => self.retire_workers(&workers),
            Event::ReplicaAdded { worker, key, nbytes } => self.replica_added(worker, &key, nbytes),
            Event::ReplicaFailed { key, .. } => {
                if let Some(id) = self.id_of(&key) {
                    self.task_mut(id).replicating = false;
                }
            }
        }
        self.drain_releases();
        self.fill_slots();
        if self.config.work_stealing {
            self.balance();
        }
        self.check_retiring();
    }

    /// Takes the commands produced so far, in order.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    /// Appends the commands produced so far to `out`, keeping its allocation.
    pub fn drain_commands_into(&mut self, out: &mut Vec<Command>) {
        out.append(&mut self.commands);
    }

    /// Appends the definitions of tasks forgotten since the last call to
    /// `out`, for the driver to free where it suits it. Empty unless
    /// `SchedulerConfig::hand_off_forgotten` is set.
    pub fn drain_forgotten_into(&mut self, out: &mut Vec<Arc<rask_core::Task>>) {
        out.append(&mut self.forgotten);
    }

    // ----------------------------------------------------------------- queries

    pub fn task_state(&self, key: &Key) -> Option<TaskStateName> {
        self.id_of(key).map(|id| self.task(id).state.name())
    }

    pub fn who_has(&self, key: &Key) -> Vec<WorkerId> {
        self.id_of(key).map(|id| self.task(id).who_has.to_vec()).unwrap_or_default()
    }

    pub fn contains_key(&self, key: &Key) -> bool {
        self.id_of(key).is_some()
    }

    pub fn n_tasks(&self) -> usize {
        self.by_key.len()
    }

    pub fn workers(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.workers.keys().copied()
    }

    /// Ready work not yet running: queued on the scheduler plus tasks waiting
    /// for a thread on their worker. This is the queue depth autoscaling uses.
    pub fn queue_depth(&self) -> u64 {
        let waiting_on_workers: usize =
            self.workers.values().map(|w| w.processing.len().saturating_sub(w.nthreads)).sum();
        self.queued.len() as u64 + waiting_on_workers as u64
    }

    /// Tasks waiting, queued or running.
    pub fn active_tasks(&self) -> u64 {
        [TaskStateName::Waiting, TaskStateName::Queued, TaskStateName::Processing]
            .iter()
            .map(|s| self.counts[*s as usize])
            .sum()
    }

    pub fn snapshot(&self) -> Snapshot {
        let by_state = |counts: &[u64; 6]| TaskStateName::ALL.iter().map(|s| (*s, counts[*s as usize])).collect();
        Snapshot {
            tasks_by_state: by_state(&self.counts),
            workers: self
                .workers
                .iter()
                .map(|(id, w)| WorkerSnapshot {
                    id: *id,
                    name: w.name.clone(),
                    nthreads: w.nthreads,
                    memory_limit: w.memory_limit,
                    processing: w.processing.len(),
                    occupancy: w.occupancy,
                    keys: w.has_what.len(),
                    nbytes: w.nbytes,
                    retiring: w.retiring,
                    paused: w.paused,
                })
                .collect(),
            groups: self
                .groups
                .iter()
                .filter(|g| g.counts.iter().any(|c| *c > 0) || g.completed > 0)
                .map(|g| GroupSnapshot {
                    name: g.name.clone(),
                    by_state: by_state(&g.counts),
                    completed: g.completed,
                    duration: g.duration,
                })
                .collect(),
            completed_total: self.completed_total,
            erred_total: self.erred_total,
        }
    }

    /// How many workers the current work could use, in total and per worker
    /// group ([`crate::adaptive`]). `group_of` names each worker's group:
    /// the state machine does not keep it, the server's connections do.
    pub fn adaptive_target_by(&self, target_duration: f64, group_of: impl Fn(WorkerId) -> String) -> AdaptiveTarget {
        // Like Dask, the queued work is estimated from its first 100 tasks:
        // a million queued tasks cost no more than a hundred.
        const SAMPLE: usize = 100;
        let queued = self.queued.len();
        let sampled: f64 = self.queued.iter().take(SAMPLE).map(|&(_, id)| self.expected_duration(id)).sum();
        let queued_seconds = if queued > SAMPLE { sampled * queued as f64 / SAMPLE as f64 } else { sampled };
        let loads: Vec<WorkerLoad> = self
            .workers
            .iter()
            .map(|(id, w)| WorkerLoad {
                group: group_of(*id),
                nthreads: w.nthreads,
                occupancy: w.occupancy,
                processing: w.processing.len(),
                memory_bytes: w.nbytes,
                memory_limit: w.memory_limit,
            })
            .collect();
        crate::adaptive::adaptive_target(queued as u64, queued_seconds, &loads, target_duration)
    }

    /// The total of [`Self::adaptive_target_by`]: Dask's `adaptive_target`.
    pub fn adaptive_target(&self, target_duration: f64) -> usize {
        self.adaptive_target_by(target_duration, |_| DEFAULT_GROUP.to_string()).workers
    }

    // ------------------------------------------------------------------ helpers

    /// The id of a live task.
    fn id_of(&self, key: &Key) -> Option<TaskId> {
        self.by_key
            .find(key_hash(key), |&id| self.tasks[id as TaskId].as_ref().is_some_and(|t| t.spec.key == *key))
            .map(|&id| id as TaskId)
    }

    /// `id` if it is a live task with this key (the hash and the shared
    /// name settle that without hashing), else a lookup by key.
    fn checked_id(&self, id: u32, key: &Key) -> Option<TaskId> {
        let id = id as TaskId;
        match self.tasks.get(id) {
            Some(Some(t)) if t.spec.key == *key => Some(id),
            _ => self.id_of(key),
        }
    }

    fn task(&self, id: TaskId) -> &TaskEntry {
        self.tasks[id].as_ref().expect("task ids in the scheduler refer to live tasks")
    }

    fn task_mut(&mut self, id: TaskId) -> &mut TaskEntry {
        self.tasks[id].as_mut().expect("task ids in the scheduler refer to live tasks")
    }

    fn live(&self) -> impl Iterator<Item = (TaskId, &TaskEntry)> {
        self.tasks.iter().enumerate().filter_map(|(i, t)| t.as_ref().map(|t| (i, t)))
    }

    fn set_state(&mut self, id: TaskId, new: TState) {
        let (old, group) = {
            let t = self.task_mut(id);
            let old = t.state;
            t.state = new;
            (old, t.group())
        };
        self.counts[old.name() as usize] -= 1;
        self.counts[new.name() as usize] += 1;
        let g = &mut self.groups[group];
        g.counts[old.name() as usize] -= 1;
        g.counts[new.name() as usize] += 1;
    }

    fn needed(&self, id: TaskId) -> bool {
        let t = self.task(id);
        t.waiters > 0 || !t.who_wants().is_empty()
    }

    fn expected_duration(&self, id: TaskId) -> f64 {
        self.groups[self.task(id).group()].duration.unwrap_or(self.config.unknown_task_duration)
    }

    fn group_of(&mut self, key: &Key) -> usize {
        let prefix = key.prefix();
        // Graphs list many tasks of one group in a row.
        if let Some(last) = self.last_group
            && *self.groups[last].name == *prefix
        {
            return last;
        }
        if let Some(&g) = self.group_index.get(prefix) {
            self.last_group = Some(g);
            return g;
        }
        let name: Arc<str> = prefix.into();
        self.groups.push(Group { name: name.clone(), duration: None, nbytes_avg: 0.0, counts: [0; 6], completed: 0 });
        self.group_index.insert(name, self.groups.len() - 1);
        self.groups.len() - 1
    }

    /// A worker paused for memory gets no new tasks until it resumes; then
    /// its free slots are filled again.
    fn set_paused(&mut self, w: WorkerId, paused: bool) {
        let Some(entry) = self.workers.get_mut(&w) else { return };
        if entry.paused == paused {
            return;
        }
        entry.paused = paused;
        if !paused {
            self.may_have_slots.insert(w);
        }
        self.refresh_worker(w);
    }

    /// Updates a worker's membership in the idle and saturated sets.
    fn refresh_worker(&mut self, w: WorkerId) {
        let Some(entry) = self.workers.get(&w) else { return };
        let n = entry.processing.len();
        if n < entry.nthreads && entry.accepts_work() {
            self.idle.insert(w);
        } else {
            self.idle.remove(&w);
        }
        if n > entry.nthreads {
            self.saturated.insert(w);
        } else {
            self.saturated.remove(&w);
        }
    }

    fn reject(&mut self, client: ClientId, wanted: &[Key], message: String) {
        tracing::warn!(%message, "graph rejected");
        let error = Arc::new(TaskError {
            key: wanted.first().cloned().unwrap_or_else(|| Key::new("graph")),
            kind: ErrorKind::InvalidGraph,
            message,
        });
        for key in wanted {
            self.commands.push(Command::KeyErred { client, key: key.clone(), error: error.clone() });
        }
    }

    // ------------------------------------------------------------------ workers

    fn add_worker(
        &mut self,
        worker: WorkerId,
        name: String,
        nthreads: usize,
        memory_limit: u64,
        capabilities: Capabilities,
    ) {
        self.workers.insert(
            worker,
            WorkerEntry {
                name,
                nthreads: nthreads.max(1),
                memory_limit,
                processing: FxHashSet::default(),
                occupancy: 0.0,
                has_what: FxHashSet::default(),
                nbytes: 0,
                retiring: false,
                paused: false,
                told_to_leave: false,
                incoming_steals: 0,
                capabilities,
            },
        );
        self.refresh_worker(worker);
        self.may_have_slots.insert(worker);
    }

    fn remove_worker(&mut self, worker: WorkerId) {
        let Some(entry) = self.workers.remove(&worker) else { return };
        self.idle.remove(&worker);
        self.saturated.remove(&worker);
        self.may_have_slots.remove(&worker);
        self.retiring.remove(&worker);
        tracing::info!(worker = %entry.name, processing = entry.processing.len(), keys = entry.has_what.len(), "worker removed");

        // First the data: keys held only there are lost.
        let mut lost = Vec::new();
        let mut held: Vec<TaskId> = entry.has_what.into_iter().collect();
        held.sort_unstable();
        for id in held {
            let t = self.task_mut(id);
            t.who_has.retain(|w| *w != worker);
            if t.who_has.is_empty() && t.state == TState::Memory {
                lost.push(id);
            }
        }
        for &id in &lost {
            self.mark_lost(id);
        }

        // Then the work that was running there: back to waiting, or erred
        // after too many deaths.
        let mut running: Vec<TaskId> = entry.processing.into_iter().collect();
        running.sort_unstable_by_key(|&id| self.task(id).priority);
        for id in running {
            let failures = {
                let rare = self.task_mut(id).rare_mut();
                rare.failures += 1;
                rare.failures
            };
            self.set_state(id, TState::Waiting);
            if failures >= self.config.allowed_failures.max(1) {
                let key = self.task(id).spec.key.clone();
                let error = Arc::new(TaskError {
                    key,
                    kind: ErrorKind::KilledWorker,
                    message: format!(
                        "the task was running on {failures} workers that died (the last was {}); it may be crashing them, e.g. by running out of memory",
                        entry.name
                    ),
                });
                self.mark_erred(id, error);
            } else {
                self.rewait(id);
            }
        }

        for id in lost {
            if self.task(id).state == TState::Released && self.needed(id) {
                self.ensure(id);
            } else {
                self.release_worklist.push(id);
            }
        }
        if !entry.capabilities.is_empty() {
            self.err_unrunnable_queued();
        }
    }

    /// Whether some connected worker could run the task; with no worker at
    /// all, every task waits for one (as in Dask).
    fn runnable_somewhere(&self, id: TaskId) -> bool {
        let t = self.task(id);
        t.needs.is_empty() || self.workers.is_empty() || self.workers.values().any(|w| w.can_run(t))
    }

    /// Errs a task that needs what no connected worker has: waiting for a
    /// worker that may never come would hang the client.
    fn err_unrunnable(&mut self, id: TaskId) {
        let t = self.task(id);
        let error = Arc::new(TaskError {
            key: t.spec.key.clone(),
            kind: ErrorKind::Raised,
            message: format!(
                "no worker of the {} connected can run this task. {}",
                self.workers.len(),
                t.needs.how_to_get()
            ),
        });
        self.mark_erred(id, error);
    }

    /// After the last worker with a capability left: queued tasks that need
    /// it cannot run anywhere.
    fn err_unrunnable_queued(&mut self) {
        let stuck: Vec<TaskId> = self
            .queued
            .iter()
            .map(|&(_, id)| id)
            .filter(|&id| !self.task(id).needs.is_empty() && !self.runnable_somewhere(id))
            .collect();
        for id in stuck {
            if self.task(id).state == TState::Queued {
                self.err_unrunnable(id);
            }
        }
    }

    /// A key in memory lost its last copy: it is released, and dependents
    /// that counted it as available wait for it again.
    fn mark_lost(&mut self, id: TaskId) {
        let (key, nbytes, holders) = {
            let t = self.task_mut(id);
            (t.spec.key.clone(), t.nbytes, std::mem::take(&mut t.who_has))
        };
        for &w in holders.as_slice() {
            if let Some(entry) = self.workers.get_mut(&w) {
                entry.has_what.remove(&id);
                entry.nbytes = entry.nbytes.saturating_sub(nbytes);
                self.commands.push(Command::Release { worker: w, key: key.clone() });
            }
        }
        self.set_state(id, TState::Released);
        let dependents = self.task(id).dependents.clone();
        for d in dependents.ids() {
            match self.task(d).state {
                TState::Waiting => self.task_mut(d).waiting_on += 1,
                TState::Queued => {
                    let prio = self.task(d).priority;
                    self.queued.remove(&(prio, d));
                    self.set_state(d, TState::Waiting);
                    self.rewait(d);
                }
                TState::Processing(_) => {
                    // It may not have read the input yet; run it again once
                    // the input is back, as Dask does. A result that still
                    // arrives is accepted.
                    if let Some(w) = self.unassign(d) {
                        self.commands.push(Command::Release { worker: w, key: self.task(d).spec.key.clone() });
                    }
                    self.set_state(d, TState::Waiting);
                    self.rewait(d);
                }
                _ => {}
            }
        }
    }

    /// Puts a task that is (now) waiting back on track: counts its missing
    /// inputs, and makes it ready when there are none.
    fn rewait(&mut self, id: TaskId) {
        let deps = self.task(id).deps.clone();
        let missing = deps.ids().filter(|&d| self.task(d).state != TState::Memory).count() as u32;
        self.task_mut(id).waiting_on = missing;
        if missing == 0 {
            self.make_ready(id);
        } else {
            // Inputs that were lost and are needed again must be recomputed.
            for d in deps.ids() {
                if self.task(d).state == TState::Released {
                    self.ensure(d);
                }
            }
        }
    }

    // -------------------------------------------------------------------- graph

    /// Graph intake by keys alone (the gRPC scheduler's; a remote client is
    /// not trusted): each task's inputs are found by key here, in the graph
    /// or held from earlier ones, and the graph is taken in as
    /// [`Self::update_graph_indexed`] takes a local client's, with the same
    /// refusals, leaving the state as it was.
    fn update_graph(&mut self, client: ClientId, specs: Vec<Arc<rask_core::Task>>, wanted: Vec<Key>) {
        let mut graph = rask_core::Graph::with_capacity(specs.len());
        for spec in specs {
            if let Err(e) = graph.insert(spec) {
                let message = match e {
                    rask_core::Error::DuplicateKey(key) => format!("key {key} is defined twice in one graph"),
                    other => other.to_string(),
                };
                return self.reject(client, &wanted, message);
            }
        }
        // Keys outside the graph are taken as held; intake checks they are.
        let inputs = match graph.inputs(|_| true) {
            Ok(inputs) => inputs,
            Err(e) => return self.reject(client, &wanted, e.to_string()),
        };
        let (specs, _) = graph.into_parts();
        self.update_graph_indexed(client, specs, inputs, wanted);
    }

    /// Graph intake with each task's inputs given by position, as the
    /// client's validation found them ([`GraphInputs`]): an input in the same
    /// graph is found by its index, so only the new keys themselves and the
    /// inputs held from earlier graphs cost a key lookup. Each new task's
    /// record is made when its key is claimed; a rejected graph removes them
    /// again and leaves the state as it was. The indices must describe the
    /// tasks' arguments (they come from [`rask_core::Graph::validate`] or
    /// [`rask_core::Graph::inputs`]);
    /// indices that do not fit the graph are refused.
    fn update_graph_indexed(
        &mut self,
        client: ClientId,
        specs: Vec<Arc<rask_core::Task>>,
        inputs: GraphInputs,
        wanted: Vec<Key>,
    ) {
        let n = specs.len();
        if !inputs.fits(n) {
            let message = format!("the graph's input indices do not describe its {n} tasks");
            return self.reject(client, &wanted, message);
        }
        // Records made by this intake carry the next generation: that is how
        // a key defined twice is told from a key shared with earlier graphs.
        let generation = self.generation + 1;
        let mut intake = Intake { n_before: self.tasks.len(), recycled_before: self.free_ids.len(), new: Vec::new() };
        {
            let tasks = &self.tasks;
            self.by_key.reserve(n, |&id| key_hash(live_key(tasks, id as TaskId)));
        }
        self.tasks.reserve(n.saturating_sub(intake.recycled_before));
        intake.new.reserve(n);
        // The task id at each position, new or shared.
        let mut ids: Vec<TaskId> = Vec::with_capacity(n);
        let mut fresh: Vec<bool> = Vec::with_capacity(n);
        for (pos, spec) in specs.into_iter().enumerate() {
            let entry = {
                let tasks = &self.tasks;
                self.by_key.entry(
                    key_hash(&spec.key),
                    |&id| *live_key(tasks, id as TaskId) == spec.key,
                    |&id| key_hash(live_key(tasks, id as TaskId)),
                )
            };
            match entry {
                HashEntry::Occupied(e) => {
                    let id = *e.get() as TaskId;
                    if self.task(id).priority.generation == generation {
                        let message = format!("key {} is defined twice in one graph", spec.key);
                        return self.reject_intake(client, &wanted, message, intake);
                    }
                    // Identical keys are identical work: share it.
                    ids.push(id);
                    fresh.push(false);
                }
                HashEntry::Vacant(e) => {
                    let id = self.free_ids.pop().unwrap_or_else(|| {
                        self.tasks.push(None);
                        self.tasks.len() - 1
                    });
                    e.insert(to_u32(id));
                    // The position stands in for the order until it is known.
                    let group = self.group_of(&spec.key);
                    self.tasks[id] = Some(TaskEntry::new(spec, Priority { generation, order: pos as u64 }, group));
                    intake.new.push(id);
                    ids.push(id);
                    fresh.push(true);
                }
            }
        }
        // Inputs: by position in the graph, or by key when held already.
        let mut held = inputs.held().iter().peekable();
        for pos in 0..n {
            if !fresh[pos] {
                while held.next_if(|(t, _)| *t as usize == pos).is_some() {}
                continue;
            }
            let mut deps = Ids::default();
            for &d in inputs.deps(pos) {
                let d = ids[d as usize];
                if !deps.contains(d) {
                    deps.push(d);
                }
            }
            while let Some((_, key)) = held.next_if(|(t, _)| *t as usize == pos) {
                let d = match self.id_of(key) {
                    Some(d) if self.task(d).priority.generation != generation => d,
                    found => {
                        let task = &self.task(ids[pos]).spec.key;
                        let message = match found {
                            None => format!(
                                "task {task} depends on {key}, which is neither in the graph nor already computed"
                            ),
                            Some(_) => format!("task {task} names its input {key} as held, but it is in the graph"),
                        };
                        return self.reject_intake(client, &wanted, message, intake);
                    }
                };
                if !deps.contains(d) {
                    deps.push(d);
                }
            }
            self.task_mut(ids[pos]).deps = deps;
        }
        // Outputs, and where the new ones are, to order from them.
        let mut wanted_ids = Vec::with_capacity(wanted.len());
        let mut outputs = Vec::new();
        for key in &wanted {
            let Some(id) = self.id_of(key) else {
                let message = format!("output key {key} is not in the graph");
                return self.reject_intake(client, &wanted, message, intake);
            };
            wanted_ids.push(id);
            let p = self.task(id).priority;
            if p.generation == generation {
                outputs.push(p.order as usize);
            }
        }
        // Shared tasks keep the inputs they have: they order as leaves.
        let deps_of = |pos: usize| if fresh[pos] { inputs.deps(pos) } else { &[] };
        let order = match depth_first_order(n, deps_of, &outputs) {
            Ok(order) => order,
            Err(cycle) => {
                let keys: Vec<String> = cycle.iter().map(|&pos| self.task(ids[pos]).spec.key.to_string()).collect();
                let message = format!("the graph has a cycle through keys: {}", keys.join(" -> "));
                return self.reject_intake(client, &wanted, message, intake);
            }
        };
        drop(inputs);

        debug_assert!(
            intake.new.iter().all(|&id| self.deps_match_spec(id)),
            "graph input indices that differ from the tasks' arguments"
        );

        // Accepted: the new tasks are released, with their priorities.
        self.generation = generation;
        for (pos, &id) in ids.iter().enumerate() {
            if !fresh[pos] {
                continue;
            }
            let t = self.task_mut(id);
            t.priority.order = order[pos];
            let group = t.group();
            self.counts[TaskStateName::Released as usize] += 1;
            self.groups[group].counts[TaskStateName::Released as usize] += 1;
        }
        self.link_dependents(&intake.new);
        self.start_wanted(client, &wanted, &wanted_ids, intake.new);
    }

    /// Whether a task's inputs are exactly the keys its spec reads: what
    /// the input indices of an indexed intake promise (checked in tests).
    fn deps_match_spec(&self, id: TaskId) -> bool {
        let t = self.task(id);
        let mut all_listed = true;
        t.spec.for_each_input(|k| all_listed &= t.deps.ids().any(|d| self.task(d).spec.key == *k));
        let all_read = t.deps.ids().all(|d| {
            let mut read = false;
            t.spec.for_each_input(|k| read |= self.task(d).spec.key == *k);
            read
        });
        all_listed && all_read
    }

    /// Gives back what a rejected indexed intake claimed (keys, ids, the
    /// records made), newest first, then tells the client why.
    fn reject_intake(&mut self, client: ClientId, wanted: &[Key], message: String, intake: Intake) {
        for &id in intake.new.iter().rev() {
            if let Some(t) = self.tasks[id].take()
                && let Ok(entry) = self.by_key.find_entry(key_hash(&t.spec.key), |&x| x as TaskId == id)
            {
                entry.remove();
            }
            if id < intake.n_before {
                self.free_ids.push(id);
            }
        }
        debug_assert_eq!(self.free_ids.len(), intake.recycled_before);
        self.tasks.truncate(intake.n_before);
        self.reject(client, wanted, message);
    }

    /// New tasks join their inputs' lists of dependents.
    fn link_dependents(&mut self, new_ids: &[TaskId]) {
        for &id in new_ids {
            for k in 0..self.task(id).deps.len() {
                let d = self.task(id).deps.get(k);
                self.task_mut(d).dependents.push(id);
            }
        }
    }

    /// Records that `client` wants the keys of a graph just taken in and
    /// brings them to memory; new tasks nothing wanted are dropped again.
    fn start_wanted(&mut self, client: ClientId, wanted: &[Key], wanted_ids: &[TaskId], new_ids: Vec<TaskId>) {
        // Record who wants what, then bring the wanted keys to memory.
        for &id in wanted_ids {
            let t = self.task_mut(id);
            if !t.who_wants().contains(&client) {
                t.rare_mut().who_wants.push(client);
            }
        }
        for (key, &id) in wanted.iter().zip(wanted_ids) {
            match self.task(id).state {
                TState::Memory => self.notify_memory(id, client),
                TState::Erred => {
                    let error = self.task(id).error().cloned().unwrap_or_else(|| Arc::new(unknown_error(key)));
                    self.commands.push(Command::KeyErred { client, key: key.clone(), error });
                }
                TState::Released => self.ensure(id),
                _ => {}
            }
        }
        // Tasks that nothing wanted are dropped again.
        let mut unused: Vec<TaskId> =
            new_ids.into_iter().filter(|&id| self.task(id).state == TState::Released).collect();
        unused.sort_unstable_by_key(|&id| std::cmp::Reverse(self.task(id).priority));
        self.release_worklist.extend(unused);
    }

    /// Brings a released task (and, recursively, its released inputs) back
    /// into play: it waits for its inputs or becomes ready.
    fn ensure(&mut self, root: TaskId) {
        let mut stack = vec![root];
        let mut ready = Vec::new();
        while let Some(id) = stack.pop() {
            if self.task(id).state != TState::Released {
                continue;
            }
            let mut missing = 0;
            let mut erred_dep = None;
            for k in 0..self.task(id).deps.len() {
                let d = self.task(id).deps.get(k);
                self.task_mut(d).waiters += 1;
                match self.task(d).state {
                    TState::Memory => {}
                    TState::Erred => {
                        erred_dep = erred_dep.or(self.task(d).error().cloned());
                        missing += 1;
                    }
                    TState::Released => {
                        missing += 1;
                        stack.push(d);
                    }
                    _ => missing += 1,
                }
            }
            self.set_state(id, TState::Waiting);
            self.task_mut(id).waiting_on = missing;
            if let Some(error) = erred_dep {
                self.mark_erred(id, error);
            } else if missing == 0 {
                // The priority is read here, while the record is in cache:
                // sorting 100,000 ready leaves by looking it up again costs
                // a cache miss per comparison.
                ready.push((self.task(id).priority, id));
            }
        }
        ready.sort_unstable();
        // Ready roots join the queue in one bulk insertion (the list is
        // sorted): a graph's 100,000 leaves are not inserted one by one.
        // They are gathered at the front of `ready` itself.
        let mut roots = 0;
        let mut root_needs = Capabilities::NONE;
        for k in 0..ready.len() {
            let (prio, id) = ready[k];
            if self.task(id).state != TState::Waiting {
                continue;
            }
            if self.task(id).deps.is_empty() {
                self.set_state(id, TState::Queued);
                root_needs = root_needs.union(self.task(id).needs);
                ready[roots] = (prio, id);
                roots += 1;
            } else {
                self.make_ready(id);
            }
        }
        ready.truncate(roots);
        if self.queued.is_empty() {
            self.queued = ready.into_iter().collect();
        } else {
            self.queued.extend(ready);
        }
        if !root_needs.is_empty()
            && !self.workers.is_empty()
            && !self.workers.values().any(|w| w.capabilities.contains(root_needs))
        {
            self.err_unrunnable_queued();
        }
    }

    fn make_ready(&mut self, id: TaskId) {
        if !self.runnable_somewhere(id) {
            self.err_unrunnable(id);
            return;
        }
        let is_root = self.task(id).deps.is_empty();
        if !is_root && let Some(w) = self.decide_worker(id) {
            self.assign(id, w);
            return;
        }
        self.set_state(id, TState::Queued);
        let prio = self.task(id).priority;
        self.queued.insert((prio, id));
    }

    /// Chooses where a non-root task runs: where most of its input bytes
    /// already are, unless that worker is so busy that moving the data to an
    /// idle worker finishes sooner.
    fn decide_worker(&mut self, id: TaskId) -> Option<WorkerId> {
        // A kept buffer: this runs for every non-root task.
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        let best = self.rank_workers(id, &mut candidates);
        self.candidates = candidates;
        best
    }

    fn rank_workers(&self, id: TaskId, candidates: &mut Vec<WorkerId>) -> Option<WorkerId> {
        let t = self.task(id);
        let usable = |e: &WorkerEntry| e.accepts_work() && e.can_run(t);
        for d in t.deps.ids() {
            for &w in self.task(d).who_has.as_slice() {
                if !candidates.contains(&w) && self.workers.get(&w).is_some_and(usable) {
                    candidates.push(w);
                }
            }
        }
        if let Some(&w) = self.idle.iter().find(|w| self.workers.get(w).is_some_and(usable))
            && !candidates.contains(&w)
        {
            candidates.push(w);
        }
        if candidates.is_empty() {
            candidates.extend(self.workers.iter().filter(|(_, e)| usable(e)).map(|(w, _)| *w).take(64));
        }
        let deps = &t.deps;
        let mut best: Option<(f64, usize, WorkerId)> = None;
        for &w in candidates.iter() {
            let entry = &self.workers[&w];
            let missing_bytes: u64 =
                deps.ids().map(|d| self.task(d)).filter(|dt| !dt.who_has.contains(&w)).map(|dt| dt.nbytes).sum();
            let start = entry.occupancy / entry.nthreads as f64 + missing_bytes as f64 / self.config.bandwidth;
            let rank = (start, entry.processing.len(), w);
            if best.is_none_or(|b| (rank.0, rank.1, rank.2) < b) {
                best = Some(rank);
            }
        }
        best.map(|b| b.2)
    }

    fn assign(&mut self, id: TaskId, w: WorkerId) {
        let expected = self.expected_duration(id);
        self.set_state(id, TState::Processing(w));
        let t = self.task_mut(id);
        t.expected = expected;
        t.started = false;
        let entry = self.workers.get_mut(&w).expect("assign targets a live worker");
        entry.processing.insert(id);
        entry.occupancy += expected;
        self.refresh_worker(w);
        let t = self.task(id);
        let who_has = t.deps.ids().map(|d| (self.task(d).spec.key.clone(), self.task(d).who_has.to_vec())).collect();
        self.commands.push(Command::Execute {
            worker: w,
            task: t.spec.clone(),
            priority: t.priority,
            who_has,
            id: to_u32(id),
        });
    }

    /// Takes a processing task off its worker's books.
    fn unassign(&mut self, id: TaskId) -> Option<WorkerId> {
        let TState::Processing(w) = self.task(id).state else { return None };
        let expected = self.task(id).expected;
        if let Some(entry) = self.workers.get_mut(&w) {
            entry.processing.remove(&id);
            entry.occupancy = (entry.occupancy - expected).max(0.0);
            self.may_have_slots.insert(w);
            self.refresh_worker(w);
        }
        Some(w)
    }

    /// How many tasks from the queue a worker may hold.
    fn slot_limit(&self, w: &WorkerEntry, group: Option<usize>) -> usize {
        let base = ((w.nthreads as f64 * self.config.worker_saturation).ceil() as usize).max(w.nthreads);
        let extra = group
            .and_then(|g| {
                let g = &self.groups[g];
                let d = g.duration?;
                let by_time = self.config.root_buffer_seconds * w.nthreads as f64 / d.max(1e-9);
                let by_bytes = if g.nbytes_avg > 0.0 {
                    self.config.root_buffer_bytes as f64 * w.nthreads as f64 / g.nbytes_avg
                } else {
                    f64::INFINITY
                };
                Some(by_time.min(by_bytes).min((self.config.root_buffer_tasks * w.nthreads) as f64) as usize)
            })
            .unwrap_or(0);
        base + extra
    }

    /// Hands queued tasks to workers with free slots, highest priority first,
    /// spreading them round-robin.
    fn fill_slots(&mut self) {
        if self.queued.is_empty() || self.may_have_slots.is_empty() {
            return;
        }
        let head_group = self.queued.first().map(|&(_, id)| self.task(id).group());
        let mut open: Vec<(WorkerId, usize)> = Vec::new();
        for &w in &self.may_have_slots {
            let Some(entry) = self.workers.get(&w) else { continue };
            if !entry.accepts_work() {
                continue;
            }
            let limit = self.slot_limit(entry, head_group);
            if entry.processing.len() < limit {
                open.push((w, limit - entry.processing.len()));
            }
        }
        self.may_have_slots.clear();
        // Workers with room but nothing near the queue's head they can run.
        let mut passed_over = Vec::new();
        while !open.is_empty() && !self.queued.is_empty() {
            for (w, free) in open.iter_mut() {
                if *free == 0 {
                    continue;
                }
                let Some(id) = self.pop_queued_for(*w) else {
                    passed_over.push(*w);
                    *free = 0;
                    continue;
                };
                self.assign(id, *w);
                *free -= 1;
            }
            open.retain(|(_, free)| *free > 0);
        }
        for w in open.into_iter().map(|(w, _)| w).chain(passed_over) {
            self.may_have_slots.insert(w);
        }
    }

    /// The first queued task `w` can run. Tasks that need a capability `w`
    /// lacks are passed over, looking no further than 64 entries (beyond
    /// that, a worker that can run them will take them first).
    fn pop_queued_for(&mut self, w: WorkerId) -> Option<TaskId> {
        let entry = self.workers.get(&w)?;
        let &(_, head) = self.queued.first()?;
        if entry.can_run(self.task(head)) {
            // The common case, one tree operation: every worker can run it.
            return self.queued.pop_first().map(|(_, id)| id);
        }
        let &(prio, id) = self.queued.iter().take(64).find(|&&(_, id)| entry.can_run(self.task(id)))?;
        self.queued.remove(&(prio, id));
        Some(id)
    }

    // ------------------------------------------------------------ completions

    fn task_finished(&mut self, worker: WorkerId, id: Option<TaskId>, key: Key, nbytes: u64, duration: f64) {
        let Some(id) = id else {
            // Forgotten meanwhile: the worker should not keep the data.
            self.commands.push(Command::Release { worker, key });
            return;
        };
        if !self.workers.contains_key(&worker) {
            return;
        }
        match self.task(id).state {
            TState::Processing(w) if w == worker => {
                self.unassign(id);
                let group = self.task(id).group();
                let g = &mut self.groups[group];
                // An exponential moving average, as Dask keeps per prefix.
                g.duration = Some(g.duration.map_or(duration, |d| 0.5 * d + 0.5 * duration));
            }
            TState::Memory => {
                self.add_replica(id, worker, nbytes);
                return;
            }
            TState::Processing(_) => {
                // Computed twice (a steal raced with the start): keep this
                // result and stop the other copy.
                if let Some(other) = self.unassign(id) {
                    self.commands.push(Command::Release { worker: other, key: key.clone() });
                }
            }
            TState::Queued => {
                let prio = self.task(id).priority;
                self.queued.remove(&(prio, id));
            }
            TState::Waiting => {}
            TState::Released | TState::Erred => {
                self.commands.push(Command::Release { worker, key });
                return;
            }
        }
        self.store_result(id, worker, nbytes);
    }

    fn store_result(&mut self, id: TaskId, worker: WorkerId, nbytes: u64) {
        self.set_state(id, TState::Memory);
        self.completed_total += 1;
        {
            let t = self.task_mut(id);
            t.who_has.clear();
            t.who_has.push(worker);
            t.nbytes = nbytes;
            if let Some(rare) = &mut t.rare {
                rare.failures = 0;
            }
        }
        let group = self.task(id).group();
        let g = &mut self.groups[group];
        g.completed += 1;
        g.nbytes_avg += (nbytes as f64 - g.nbytes_avg) / g.completed.min(100) as f64;
        if let Some(entry) = self.workers.get_mut(&worker) {
            entry.has_what.insert(id);
            entry.nbytes += nbytes;
        }
        for i in 0..self.task(id).who_wants().len() {
            let c = self.task(id).who_wants()[i];
            self.notify_memory(id, c);
        }
        let dependents = std::mem::take(&mut self.task_mut(id).dependents);
        for d in dependents.ids() {
            if self.task(d).state == TState::Waiting {
                let t = self.task_mut(d);
                t.waiting_on = t.waiting_on.saturating_sub(1);
                if t.waiting_on == 0 {
                    self.make_ready(d);
                }
            }
        }
        self.task_mut(id).dependents = dependents;
        self.done_with_inputs(id);
        self.release_worklist.push(id);
    }

    /// A task stopped being active: its inputs lose a waiter.
    fn done_with_inputs(&mut self, id: TaskId) {
        let deps = std::mem::take(&mut self.task_mut(id).deps);
        for d in deps.ids() {
            let t = self.task_mut(d);
            t.waiters = t.waiters.saturating_sub(1);
            self.release_worklist.push(d);
        }
        self.task_mut(id).deps = deps;
    }

    fn notify_memory(&mut self, id: TaskId, client: ClientId) {
        let t = self.task(id);
        self.commands.push(Command::KeyInMemory {
            client,
            key: t.spec.key.clone(),
            workers: t.who_has.to_vec(),
            nbytes: t.nbytes,
        });
    }

    fn add_replica(&mut self, id: TaskId, worker: WorkerId, nbytes: u64) {
        let t = self.task_mut(id);
        t.replicating = false;
        if t.who_has.contains(&worker) {
            return;
        }
        t.who_has.push(worker);
        if let Some(entry) = self.workers.get_mut(&worker) {
            entry.has_what.insert(id);
            entry.nbytes += nbytes;
        }
    }

    fn replica_added(&mut self, worker: WorkerId, key: &Key, nbytes: u64) {
        let Some(id) = self.id_of(key) else {
            self.commands.push(Command::Release { worker, key: key.clone() });
            return;
        };
        if self.task(id).state == TState::Memory && self.workers.contains_key(&worker) {
            self.add_replica(id, worker, nbytes);
        } else {
            self.task_mut(id).replicating = false;
            self.commands.push(Command::Release { worker, key: key.clone() });
        }
    }

    fn task_erred(&mut self, worker: WorkerId, key: &Key, message: String, origin: Option<Key>) {
        let Some(id) = self.id_of(key) else { return };
        if self.task(id).state != TState::Processing(worker) {
            return;
        }
        let error =
            Arc::new(TaskError { key: origin.unwrap_or_else(|| key.clone()), kind: ErrorKind::Raised, message });
        self.mark_erred(id, error);
    }

    /// Errs a task and everything waiting on it, telling the clients.
    fn mark_erred(&mut self, root: TaskId, error: Arc<TaskError>) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let state = self.task(id).state;
            if !state.is_active() && state != TState::Released {
                continue;
            }
            self.stop_running(id);
            self.set_state(id, TState::Erred);
            self.erred_total += 1;
            self.task_mut(id).rare_mut().error = Some(error.clone());
            let t = self.task(id);
            let key = t.spec.key.clone();
            for &client in &t.who_wants().to_vec() {
                self.commands.push(Command::KeyErred { client, key: key.clone(), error: error.clone() });
            }
            if state.is_active() {
                self.done_with_inputs(id);
            }
            for d in self.task(id).dependents.ids() {
                if self.task(d).state.is_active() {
                    stack.push(d);
                }
            }
        }
    }

    /// Takes a queued task off the queue, or a processing one off its worker
    /// (telling the worker to drop it).
    fn stop_running(&mut self, id: TaskId) {
        match self.task(id).state {
            TState::Queued => {
                let prio = self.task(id).priority;
                self.queued.remove(&(prio, id));
            }
            TState::Processing(_) => {
                if let Some(w) = self.unassign(id) {
                    self.commands.push(Command::Release { worker: w, key: self.task(id).spec.key.clone() });
                }
            }
            _ => {}
        }
    }

    fn missing_data(&mut self, worker: WorkerId, key: &Key, missing: &Key) {
        let Some(id) = self.id_of(key) else { return };
        if self.task(id).state != TState::Processing(worker) {
            return;
        }
        // Where the scheduler thought the input was, it is not: treat it as
        // lost everywhere and recompute it, rather than retry a dead address.
        if let Some(mid) = self.id_of(missing)
            && self.task(mid).state == TState::Memory
        {
            self.mark_lost(mid);
        }
        self.unassign(id);
        self.set_state(id, TState::Waiting);
        self.rewait(id);
    }

    // -------------------------------------------------------- releasing keys

    fn release_want(&mut self, client: ClientId, key: &Key) {
        let Some(id) = self.id_of(key) else { return };
        if let Some(rare) = &mut self.task_mut(id).rare {
            rare.who_wants.retain(|c| *c != client);
        }
        self.release_worklist.push(id);
    }

    /// Frees data and forgets tasks that nothing needs any more.
    fn drain_releases(&mut self) {
        while let Some(id) = self.release_worklist.pop() {
            if self.tasks.get(id).is_none_or(Option::is_none) || self.needed(id) {
                continue;
            }
            match self.task(id).state {
                TState::Memory => {
                    let (key, nbytes, holders) = {
                        let t = self.task_mut(id);
                        (t.spec.key.clone(), t.nbytes, std::mem::take(&mut t.who_has))
                    };
                    for &w in holders.as_slice() {
                        if let Some(entry) = self.workers.get_mut(&w) {
                            entry.has_what.remove(&id);
                            entry.nbytes = entry.nbytes.saturating_sub(nbytes);
                        }
                        self.commands.push(Command::Release { worker: w, key: key.clone() });
                    }
                    self.set_state(id, TState::Released);
                }
                state if state.is_active() => {
                    // Nobody needs this running work any more (cancelled).
                    self.stop_running(id);
                    self.set_state(id, TState::Released);
                    self.done_with_inputs(id);
                }
                _ => {}
            }
            self.maybe_forget(id);
        }
    }

    fn maybe_forget(&mut self, id: TaskId) {
        let t = self.task(id);
        if !matches!(t.state, TState::Released | TState::Erred) || !t.dependents.is_empty() || self.needed(id) {
            return;
        }
        let Some(t) = self.tasks[id].take() else { return };
        self.counts[t.state.name() as usize] -= 1;
        self.groups[t.group()].counts[t.state.name() as usize] -= 1;
        if let Ok(entry) = self.by_key.find_entry(key_hash(&t.spec.key), |&x| x as TaskId == id) {
            entry.remove();
        }
        self.free_ids.push(id);
        for d in t.deps.ids() {
            if let Some(dt) = self.tasks[d].as_mut() {
                if let Some(pos) = dt.dependents.position(id) {
                    dt.dependents.swap_remove(pos);
                }
                self.release_worklist.push(d);
            }
        }
        if self.config.hand_off_forgotten {
            self.forgotten.push(t.spec);
        }
    }

    // ----------------------------------------------------------- balancing

    /// Work stealing: idle workers take queued (not yet started) tasks from
    /// saturated ones when moving the inputs costs less than waiting.
    fn balance(&mut self) {
        if self.idle.is_empty() || self.saturated.is_empty() {
            return;
        }
        let thieves: Vec<WorkerId> = self.idle.iter().copied().collect();
        for thief in thieves {
            let Some(t_entry) = self.workers.get(&thief) else { continue };
            let mut free = t_entry.nthreads.saturating_sub(t_entry.processing.len() + t_entry.incoming_steals);
            while free > 0 {
                let victim = self
                    .saturated
                    .iter()
                    .filter(|w| **w != thief)
                    .max_by_key(|w| {
                        let e = &self.workers[*w];
                        e.processing.len().saturating_sub(e.nthreads)
                    })
                    .copied();
                let Some(victim) = victim else { break };
                let Some(id) = self.steal_candidate(victim, thief) else { break };
                self.task_mut(id).rare_mut().steal_to = Some(thief);
                if let Some(e) = self.workers.get_mut(&thief) {
                    e.incoming_steals += 1;
                }
                let key = self.task(id).spec.key.clone();
                self.commands.push(Command::Steal { worker: victim, key });
                free -= 1;
            }
        }
    }

    /// The victim's task that would run last, if its inputs are cheap to move.
    fn steal_candidate(&self, victim: WorkerId, thief: WorkerId) -> Option<TaskId> {
        let entry = &self.workers[&victim];
        let stealable = entry.processing.len().saturating_sub(entry.nthreads);
        let pending = entry.processing.iter().filter(|&&id| self.task(id).steal_to().is_some()).count();
        if pending >= stealable {
            return None;
        }
        entry
            .processing
            .iter()
            .copied()
            .filter(|&id| self.task(id).steal_to().is_none() && !self.task(id).started)
            .filter(|&id| self.workers.get(&thief).is_some_and(|e| e.can_run(self.task(id))))
            .filter(|&id| {
                let t = self.task(id);
                let bytes: u64 =
                    t.deps.ids().map(|d| self.task(d)).filter(|d| !d.who_has.contains(&thief)).map(|d| d.nbytes).sum();
                bytes as f64 / self.config.bandwidth <= 2.0 * t.expected.max(1e-6)
            })
            .max_by_key(|&id| self.task(id).priority)
    }

    fn steal_response(&mut self, worker: WorkerId, key: &Key, stolen: bool) {
        let Some(id) = self.id_of(key) else { return };
        let thief = self.task_mut(id).rare.as_mut().and_then(|r| r.steal_to.take());
        if let Some(thief) = thief
            && let Some(e) = self.workers.get_mut(&thief)
        {
            e.incoming_steals = e.incoming_steals.saturating_sub(1);
        }
        if self.task(id).state != TState::Processing(worker) {
            return;
        }
        if !stolen {
            self.task_mut(id).started = true;
            return;
        }
        self.unassign(id);
        match thief.filter(|t| self.workers.get(t).is_some_and(WorkerEntry::accepts_work)) {
            Some(thief) => self.assign(id, thief),
            None => {
                self.set_state(id, TState::Waiting);
                self.rewait(id);
            }
        }
    }

    // ------------------------------------------------------------ retiring

    fn retire_workers(&mut self, workers: &[WorkerId]) {
        for &w in workers {
            if let Some(entry) = self.workers.get_mut(&w) {
                entry.retiring = true;
                self.retiring.insert(w);
                self.refresh_worker(w);
            }
        }
        // Their queued-but-unstarted work can move now.
        for &w in workers {
            let Some(entry) = self.workers.get(&w) else { continue };
            let excess = entry.processing.len().saturating_sub(entry.nthreads);
            let mut stealable: Vec<TaskId> = entry.processing.iter().copied().collect();
            stealable.sort_unstable_by_key(|&id| std::cmp::Reverse(self.task(id).priority));
            for id in stealable.into_iter().take(excess) {
                if self.task(id).steal_to().is_none() {
                    let key = self.task(id).spec.key.clone();
                    self.commands.push(Command::Steal { worker: w, key });
                }
            }
        }
    }

    /// A retiring worker leaves once it runs nothing and every key it holds
    /// that is still needed has a copy elsewhere.
    fn check_retiring(&mut self) {
        if self.retiring.is_empty() {
            return;
        }
        let retiring: Vec<WorkerId> = self.retiring.iter().copied().collect();
        for w in retiring {
            let Some(entry) = self.workers.get(&w) else { continue };
            if entry.told_to_leave || !entry.processing.is_empty() {
                continue;
            }
            let target =
                self.workers.iter().filter(|(_, e)| !e.retiring).min_by_key(|(_, e)| e.nbytes).map(|(id, _)| *id);
            let mut unique: Vec<TaskId> =
                entry.has_what.iter().copied().filter(|&id| self.task(id).who_has.len() == 1).collect();
            unique.sort_unstable();
            let mut pending = false;
            for id in unique {
                pending = true;
                if self.task(id).replicating {
                    continue;
                }
                let Some(to) = target else { break };
                self.task_mut(id).replicating = true;
                let key = self.task(id).spec.key.clone();
                self.commands.push(Command::Replicate { key, from: w, to });
            }
            if !pending {
                if let Some(e) = self.workers.get_mut(&w) {
                    e.told_to_leave = true;
                }
                self.commands.push(Command::WorkerMayLeave { worker: w });
            }
        }
    }

    /// Checks the bookkeeping invariants. Used by tests and the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut counts = [0u64; 6];
        for (id, t) in self.live() {
            counts[t.state.name() as usize] += 1;
            let active_dependents = t.dependents.ids().filter(|&d| self.task(d).state.is_active()).count() as u32;
            if active_dependents != t.waiters {
                return Err(format!(
                    "{}: waiters {} but {} active dependents",
                    t.spec.key, t.waiters, active_dependents
                ));
            }
            if t.state == TState::Waiting {
                let missing = t.deps.ids().filter(|&d| self.task(d).state != TState::Memory).count() as u32;
                if missing != t.waiting_on {
                    return Err(format!("{}: waiting_on {} but {} inputs missing", t.spec.key, t.waiting_on, missing));
                }
                if missing == 0 {
                    return Err(format!("{}: waiting with all inputs in memory", t.spec.key));
                }
            }
            if matches!(t.state, TState::Queued | TState::Processing(_))
                && let Some(d) = t.deps.ids().find(|&d| self.task(d).state != TState::Memory)
            {
                return Err(format!("{} is runnable but input {} is not in memory", t.spec.key, self.task(d).spec.key));
            }
            if t.state == TState::Memory && t.who_has.is_empty() {
                return Err(format!("{} in memory nowhere", t.spec.key));
            }
            if t.state == TState::Memory && !self.needed(id) {
                return Err(format!("{} is in memory but nothing needs it", t.spec.key));
            }
            if let TState::Processing(w) = t.state
                && !self.workers.get(&w).is_some_and(|e| e.processing.contains(&id))
            {
                return Err(format!("{} processing on {w:?} which does not list it", t.spec.key));
            }
            for d in t.deps.ids() {
                if !self.task(d).dependents.contains(id) {
                    return Err(format!("{} missing from dependents of {}", t.spec.key, self.task(d).spec.key));
                }
            }
        }
        if counts != self.counts {
            return Err(format!("state counts {:?} but recount gives {:?}", self.counts, counts));
        }
        Ok(())
    }
}

/// Task ids as the key index stores them. More than four billion live
/// tasks would not fit in memory anyway.
fn to_u32(id: TaskId) -> u32 {
    u32::try_from(id).expect("fewer than 2^32 tasks")
}

fn key_hash(key: &Key) -> u64 {
    // `Key` hashes as its cached hash: this is one multiplication.
    FxBuildHasher.hash_one(key)
}

/// The key of a live task.
fn live_key(tasks: &[Option<TaskEntry>], id: TaskId) -> &Key {
    &tasks[id].as_ref().expect("indexed ids refer to live tasks").spec.key
}

fn unknown_error(key: &Key) -> TaskError {
    TaskError { key: key.clone(), kind: ErrorKind::Raised, message: "unknown error".into() }
}

#[cfg(test)]
mod layout {
    use super::*;

    /// The record table is what a big graph's intake writes: keep records
    /// at two cache lines.
    #[test]
    fn task_record_size() {
        let size = std::mem::size_of::<TaskEntry>();
        println!("size_of::<TaskEntry>() = {size}, Option: {}", std::mem::size_of::<Option<TaskEntry>>());
        assert!(size <= 128, "TaskEntry is {size} bytes");
        assert_eq!(std::mem::size_of::<Few<u32, 3>>(), 16);
        assert_eq!(std::mem::size_of::<Few<WorkerId, 1>>(), 16);
    }

    #[test]
    fn few_lists() {
        let mut f: Few<u32, 3> = Few::default();
        assert!(f.is_empty());
        for i in 0..10 {
            f.push(i);
            assert_eq!(f.as_slice(), (0..=i).collect::<Vec<_>>().as_slice());
        }
        f.retain(|&x| x % 3 == 0);
        assert_eq!(f.as_slice(), &[0, 3, 6, 9]);
        f.swap_remove(0);
        assert_eq!(f.as_slice(), &[9, 3, 6]);
        let mut g: Few<u32, 3> = Few::default();
        g.push(1);
        g.push(2);
        g.swap_remove(0);
        assert_eq!(g.as_slice(), &[2]);
        g.swap_remove(0);
        assert!(g.is_empty() && matches!(g, Few::Empty));
        g.push(5);
        g.retain(|_| false);
        assert!(g.is_empty());
        f.clear();
        assert_eq!(f.len(), 0);
    }
}
