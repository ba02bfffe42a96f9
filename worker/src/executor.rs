//! A pool of threads running tasks in priority order.
//!
//! Jobs wait in one priority queue per worker; threads take the most urgent.
//! A job that has not started can be stolen back (work stealing) or
//! cancelled (its key was released). A panicking op becomes a task error:
//! one bad task must not take a thread, or the worker, down with it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use rask_core::ops::execute;
use rask_core::{Key, LocalOp, OpRegistry, Task, Value};
use rask_scheduler::{Priority, WorkerId};
use rustc_hash::FxHashMap;

use crate::DataStore;

/// A task to run, with where its inputs live.
#[derive(Debug)]
pub struct Job {
    pub task: Arc<Task>,
    pub priority: Priority,
    pub who_has: Vec<(Key, Vec<WorkerId>)>,
    /// Inputs fetched ahead of time (a remote worker gathers them from its
    /// peers before queuing the job, so threads never wait on the network).
    pub fetched: Vec<(Key, Value)>,
}

/// What running a job led to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished {
        key: Key,
        nbytes: u64,
        duration: f64,
    },
    /// `origin` is the task inside a fused chain that raised, if not `key`.
    Erred {
        key: Key,
        message: String,
        origin: Option<Key>,
    },
    /// An input was not found where the scheduler said.
    Missing {
        key: Key,
        missing: Key,
    },
}

/// Where inputs that are not in the local store come from.
pub trait Inputs: Send + Sync {
    fn fetch(&self, key: &Key, holders: &[WorkerId]) -> Option<Value>;
}

/// Where outcomes go.
pub trait Reporter: Send + Sync {
    fn report(&self, worker: WorkerId, outcome: Outcome);

    /// As [`Self::report`], with the scheduler's task id when the job was
    /// submitted with one ([`Executor::submit_with_ids`]).
    fn report_with_id(&self, worker: WorkerId, id: Option<u32>, outcome: Outcome) {
        let _ = id;
        self.report(worker, outcome);
    }
}

/// Closures of graphs submitted in this process, by op name. Entries are
/// weak: the client's graph and futures own the closures, so the table never
/// keeps one alive after nothing can run it.
#[derive(Default)]
pub struct LocalOpTable {
    ops: RwLock<FxHashMap<Arc<str>, Weak<rask_core::ops::LocalOpFn>>>,
}

impl std::fmt::Debug for LocalOpTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalOpTable").finish_non_exhaustive()
    }
}

impl LocalOpTable {
    pub fn register(&self, name: Arc<str>, op: &LocalOp) {
        let mut ops = self.ops.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if ops.len() > 1024 {
            ops.retain(|_, w| w.strong_count() > 0);
        }
        ops.insert(name, Arc::downgrade(op));
    }

    pub fn get(&self, name: &str) -> Option<LocalOp> {
        self.ops.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).and_then(Weak::upgrade)
    }
}

/// Jobs by arrival number; the heap orders them. Stealing scans `jobs`
/// (steals are rare), so the hot path keeps one map, not two.
#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(Priority, u64)>>,
    /// Each job with the scheduler's id for its task, if it gave one.
    jobs: FxHashMap<u64, (Job, Option<u32>)>,
    /// The queued job of each key: releases and steals find it without a scan.
    by_key: FxHashMap<Key, u64>,
    seq: u64,
    shutdown: bool,
}

struct Shared {
    id: WorkerId,
    /// parking_lot's lock: it spins and yields before parking, which keeps
    /// threads running when the holder was only preempted for a moment (a
    /// worker's threads and the scheduler share few cores).
    queue: parking_lot::Mutex<Queue>,
    available: parking_lot::Condvar,
    store: Arc<DataStore>,
    inputs: Arc<dyn Inputs>,
    reporter: Arc<dyn Reporter>,
    local_ops: Arc<LocalOpTable>,
    busy: AtomicUsize,
    /// Set under memory pressure: threads finish their task but take no new one.
    paused: AtomicBool,
    /// Set when the worker is killed: outcomes are no longer reported.
    dead: AtomicBool,
}

pub struct Executor {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").field("id", &self.shared.id).field("threads", &self.threads.len()).finish()
    }
}

impl Executor {
    pub fn start(
        id: WorkerId,
        name: &str,
        nthreads: usize,
        store: Arc<DataStore>,
        inputs: Arc<dyn Inputs>,
        reporter: Arc<dyn Reporter>,
        local_ops: Arc<LocalOpTable>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            id,
            queue: parking_lot::Mutex::new(Queue::default()),
            available: parking_lot::Condvar::new(),
            store,
            inputs,
            reporter,
            local_ops,
            busy: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            dead: AtomicBool::new(false),
        });
        let threads = (0..nthreads.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || run_thread(&shared))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self { shared, threads })
    }

    pub fn id(&self) -> WorkerId {
        self.shared.id
    }

    pub fn store(&self) -> &Arc<DataStore> {
        &self.shared.store
    }

    /// Stops (or resumes) starting new tasks; running ones finish.
    pub fn set_paused(&self, paused: bool) {
        let was = self.shared.paused.swap(paused, Ordering::SeqCst);
        if was && !paused {
            self.shared.available.notify_all();
        }
    }

    pub fn paused(&self) -> bool {
        self.shared.paused.load(Ordering::SeqCst)
    }

    /// Threads running a task right now.
    pub fn busy(&self) -> usize {
        self.shared.busy.load(Ordering::Relaxed)
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.lock().jobs.len()
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Queue> {
        self.shared.queue.lock()
    }

    /// Enqueues jobs under one lock and wakes as many threads as needed.
    pub fn submit(&self, jobs: impl IntoIterator<Item = Job>) {
        self.enqueue(jobs.into_iter().map(|job| (job, None)));
    }

    /// As [`Self::submit`], each job with the scheduler's id for its task,
    /// which comes back with the outcome ([`Reporter::report_with_id`]).
    pub fn submit_with_ids(&self, jobs: impl IntoIterator<Item = (Job, u32)>) {
        self.enqueue(jobs.into_iter().map(|(job, id)| (job, Some(id))));
    }

    fn enqueue(&self, jobs: impl Iterator<Item = (Job, Option<u32>)>) {
        let mut n = 0;
        {
            let mut q = self.lock();
            for (job, id) in jobs {
                q.seq += 1;
                let seq = q.seq;
                q.heap.push(Reverse((job.priority, seq)));
                q.by_key.insert(job.task.key.clone(), seq);
                q.jobs.insert(seq, (job, id));
                n += 1;
            }
        }
        if n == 1 {
            self.shared.available.notify_one();
        } else if n > 1 {
            self.shared.available.notify_all();
        }
    }

    /// Takes back a job that has not started. False if it is running or done.
    pub fn steal(&self, key: &Key) -> bool {
        let mut q = self.lock();
        let found = q.by_key.remove(key);
        found.is_some_and(|seq| q.jobs.remove(&seq).is_some())
    }

    /// Drops the key: its stored data is freed, or, if it has none yet, a
    /// queued job for it is cancelled.
    pub fn release(&self, key: &Key) {
        if self.shared.store.remove(key).is_none() {
            self.steal(key);
        }
    }

    /// [`Self::release`] for many keys: one store lock for all of them, and
    /// one queue lock for those that had no data.
    pub fn release_many(&self, keys: &[Key]) {
        let mut absent = Vec::new();
        self.shared.store.remove_many(keys, |k| absent.push(k));
        if absent.is_empty() {
            return;
        }
        let mut q = self.lock();
        for key in absent {
            if let Some(seq) = q.by_key.remove(key) {
                q.jobs.remove(&seq);
            }
        }
    }

    /// Stops taking jobs and joins the threads after their current task.
    pub fn shutdown(mut self) {
        self.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Marks the worker dead: queued jobs are dropped, running ones finish
    /// but report nothing, as if the process had been killed.
    pub fn kill(self) {
        self.shared.dead.store(true, Ordering::SeqCst);
        self.shutdown();
    }

    fn stop(&self) {
        let mut q = self.lock();
        q.shutdown = true;
        q.jobs.clear();
        q.by_key.clear();
        q.heap.clear();
        drop(q);
        self.shared.available.notify_all();
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run_thread(shared: &Shared) {
    loop {
        let job = {
            let mut q = shared.queue.lock();
            loop {
                if q.shutdown {
                    return;
                }
                if shared.paused.load(Ordering::SeqCst) {
                    shared.available.wait_for(&mut q, std::time::Duration::from_millis(50));
                    continue;
                }
                if let Some(Reverse((_, seq))) = q.heap.pop() {
                    if let Some(job) = q.jobs.remove(&seq) {
                        if q.by_key.get(&job.0.task.key) == Some(&seq) {
                            q.by_key.remove(&job.0.task.key);
                        }
                        break job;
                    }
                    continue; // stolen or cancelled
                }
                shared.available.wait(&mut q);
            }
        };
        shared.busy.fetch_add(1, Ordering::Relaxed);
        let (job, id) = job;
        let outcome = run_job(shared, &job);
        // The job's task and inputs are freed here, not by the scheduler.
        drop(job);
        shared.busy.fetch_sub(1, Ordering::Relaxed);
        if !shared.dead.load(Ordering::SeqCst) {
            shared.reporter.report_with_id(shared.id, id, outcome);
        }
    }
}

fn run_job(shared: &Shared, job: &Job) -> Outcome {
    let key = job.task.key.clone();
    // Gather the inputs first, so a missing one is reported as such.
    // Tasks have few inputs: a vector beats a map here.
    let mut inputs: Vec<(&Key, Value)> = Vec::with_capacity(job.who_has.len());
    for (dep, holders) in &job.who_has {
        let value = job
            .fetched
            .iter()
            .find(|(k, _)| k == dep)
            .map(|(_, v)| v.clone())
            .or_else(|| shared.store.get(dep))
            .or_else(|| shared.inputs.fetch(dep, holders));
        match value {
            Some(v) => inputs.push((dep, v)),
            None => return Outcome::Missing { key, missing: dep.clone() },
        }
    }
    let started = Instant::now();
    let local = |name: &str| shared.local_ops.get(name);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        execute(&job.task, OpRegistry::global(), &local, &|k| {
            inputs.iter().find(|(d, _)| *d == k).map(|(_, v)| v.clone())
        })
    }));
    let duration = started.elapsed().as_secs_f64();
    drop(inputs);
    match result {
        Ok(Ok(value)) => {
            let nbytes = shared.store.insert(key.clone(), value);
            Outcome::Finished { key, nbytes, duration }
        }
        Ok(Err(e)) => Outcome::Erred { key, message: e.message, origin: e.key },
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the op panicked".to_string());
            Outcome::Erred { key, message: format!("panic: {message}"), origin: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rask_core::ops::builtin;
    use rask_core::{Arg, Params};
    use std::sync::{Condvar, Mutex, mpsc};

    struct NoPeers;
    impl Inputs for NoPeers {
        fn fetch(&self, _: &Key, _: &[WorkerId]) -> Option<Value> {
            None
        }
    }
    struct Chan(Mutex<mpsc::Sender<Outcome>>);
    impl Reporter for Chan {
        fn report(&self, _: WorkerId, outcome: Outcome) {
            let _ = self.0.lock().unwrap().send(outcome);
        }
    }

    fn executor(threads: usize) -> (Executor, mpsc::Receiver<Outcome>) {
        let (tx, rx) = mpsc::channel();
        let exec = Executor::start(
            WorkerId(0),
            "test",
            threads,
            Arc::new(DataStore::new()),
            Arc::new(NoPeers),
            Arc::new(Chan(Mutex::new(tx))),
            Arc::new(LocalOpTable::default()),
        )
        .unwrap();
        (exec, rx)
    }

    fn job(key: &str, op: &str, args: Vec<Arg>, who_has: Vec<(Key, Vec<WorkerId>)>) -> Job {
        Job {
            task: Arc::new(Task::new(key.into(), op, Params::default(), args)),
            priority: Priority::default(),
            who_has,
            fetched: Vec::new(),
        }
    }

    #[test]
    fn runs_jobs_and_stores_results() {
        let (exec, rx) = executor(2);
        exec.submit([job("a", builtin::ADD, vec![Arg::Value(Value::Int(2)), Arg::Value(Value::Int(3))], vec![])]);
        match rx.recv().unwrap() {
            Outcome::Finished { key, nbytes, .. } => {
                assert_eq!(key, Key::from("a"));
                assert!(nbytes > 0);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(exec.store().get(&"a".into()), Some(Value::Int(5)));
        exec.submit([job("b", builtin::NEG, vec![Arg::Key("a".into())], vec![("a".into(), vec![WorkerId(0)])])]);
        assert!(matches!(rx.recv().unwrap(), Outcome::Finished { .. }));
        assert_eq!(exec.store().get(&"b".into()), Some(Value::Int(-5)));
    }

    #[test]
    fn errors_and_missing_inputs_are_reported() {
        let (exec, rx) = executor(1);
        exec.submit([job("bad", builtin::NEG, vec![Arg::Value(Value::Str("x".into()))], vec![])]);
        assert!(matches!(rx.recv().unwrap(), Outcome::Erred { message, .. } if message.contains("negate")));
        exec.submit([job("c", builtin::NEG, vec![Arg::Key("gone".into())], vec![("gone".into(), vec![WorkerId(9)])])]);
        assert_eq!(rx.recv().unwrap(), Outcome::Missing { key: "c".into(), missing: "gone".into() });
    }

    #[test]
    fn panics_become_task_errors() {
        let (exec, rx) = executor(1);
        let table = exec.shared.local_ops.clone();
        let op: LocalOp = Arc::new(|_, _| panic!("kaboom"));
        table.register("boom".into(), &op);
        exec.submit([job("p", "boom", vec![], vec![])]);
        assert!(matches!(rx.recv().unwrap(), Outcome::Erred { message, .. } if message == "panic: kaboom"));
        // The thread survived.
        exec.submit([job("q", builtin::IDENTITY, vec![Arg::Value(Value::Int(1))], vec![])]);
        assert!(matches!(rx.recv().unwrap(), Outcome::Finished { .. }));
    }

    /// Reports outcomes with the ids their jobs carried.
    struct IdChan(Mutex<mpsc::Sender<(Option<u32>, Outcome)>>);
    impl Reporter for IdChan {
        fn report(&self, _: WorkerId, outcome: Outcome) {
            let _ = self.0.lock().unwrap().send((None, outcome));
        }
        fn report_with_id(&self, _: WorkerId, id: Option<u32>, outcome: Outcome) {
            let _ = self.0.lock().unwrap().send((id, outcome));
        }
    }

    #[test]
    fn ids_come_back_with_outcomes_and_releases_are_batched() {
        let (tx, rx) = mpsc::channel();
        let exec = Executor::start(
            WorkerId(0),
            "ids",
            2,
            Arc::new(DataStore::new()),
            Arc::new(NoPeers),
            Arc::new(IdChan(Mutex::new(tx))),
            Arc::new(LocalOpTable::default()),
        )
        .unwrap();
        let one = |k: &str| job(k, builtin::IDENTITY, vec![Arg::Value(Value::Int(1))], vec![]);
        exec.submit_with_ids([(one("x"), 5), (one("y"), 9)]);
        exec.submit([one("z")]);
        let mut got: Vec<(Option<u32>, String)> = (0..3)
            .map(|_| match rx.recv().unwrap() {
                (id, Outcome::Finished { key, .. }) => (id, key.to_string()),
                other => panic!("{other:?}"),
            })
            .collect();
        got.sort();
        assert_eq!(got, [(None, "z".to_string()), (Some(5), "x".to_string()), (Some(9), "y".to_string())]);
        assert_eq!(exec.store().len(), 3);
        // Held keys are freed; a key with no data and no job is ignored.
        exec.release_many(&["x".into(), "ghost".into(), "z".into()]);
        assert_eq!(exec.store().keys(), vec![Key::from("y")]);
    }

    /// Whether the blocker runs, whether it may finish, and its op, which
    /// the op table holds only weakly.
    type Gate = (Arc<(Mutex<(bool, bool)>, Condvar)>, LocalOp);

    /// Starts job "blocker" on `exec`'s one thread and returns once its op
    /// runs; it finishes when the returned gate is opened ([`open`]).
    fn occupy(exec: &Executor) -> Gate {
        let gate = Arc::new((Mutex::new((false, false)), Condvar::new()));
        let g = gate.clone();
        let op: LocalOp = Arc::new(move |_, _| {
            let (m, cv) = &*g;
            let mut state = m.lock().unwrap();
            state.0 = true;
            cv.notify_all();
            while !state.1 {
                state = cv.wait(state).unwrap();
            }
            Ok(Value::None)
        });
        exec.shared.local_ops.register("wait".into(), &op);
        exec.submit([job("blocker", "wait", vec![], vec![])]);
        let mut state = gate.0.lock().unwrap();
        while !state.0 {
            state = gate.1.wait(state).unwrap();
        }
        drop(state);
        (gate, op)
    }

    fn open((gate, _): &Gate) {
        gate.0.lock().unwrap().1 = true;
        gate.1.notify_all();
    }

    #[test]
    fn release_many_cancels_queued_jobs() {
        let (exec, rx) = executor(1);
        let gate = occupy(&exec);
        exec.submit_with_ids([(job("later", builtin::IDENTITY, vec![Arg::Value(Value::Int(1))], vec![]), 3)]);
        exec.release_many(&["later".into()]);
        assert_eq!(exec.queued(), 0);
        open(&gate);
        assert!(matches!(rx.recv().unwrap(), Outcome::Finished { key, .. } if key.name() == "blocker"));
        assert!(rx.recv_timeout(std::time::Duration::from_millis(100)).is_err(), "the released job never ran");
    }

    #[test]
    fn queued_jobs_can_be_stolen() {
        let (exec, rx) = executor(1);
        let gate = occupy(&exec);
        exec.submit([job("later", builtin::IDENTITY, vec![Arg::Value(Value::Int(1))], vec![])]);
        assert!(exec.steal(&"later".into()));
        assert!(!exec.steal(&"blocker".into()), "a running job cannot be stolen");
        open(&gate);
        assert!(matches!(rx.recv().unwrap(), Outcome::Finished { key, .. } if key.name() == "blocker"));
        assert!(rx.recv_timeout(std::time::Duration::from_millis(100)).is_err());
    }
}
