//! A discrete-event simulator that drives the state machine with virtual
//! workers and virtual time.
//!
//! It exists for two reasons. Tests use it to check scheduling properties on
//! random graphs without threads or sockets (every task runs once, after its
//! inputs; results do not depend on the number of workers; released keys are
//! freed; killed workers lose nothing). The benchmark uses it to schedule
//! graphs far larger than this machine, like a million tasks on a thousand
//! workers, and to report the scheduler's own time per task and the makespan
//! against the ideal.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Instant;

use rask_core::{Key, Task};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::{ClientId, Command, Event, Priority, SchedulerConfig, SchedulerState, WorkerId};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub workers: usize,
    pub threads_per_worker: usize,
    /// Kill a worker after this many task completions, and start a fresh one.
    pub kill_after: Vec<u64>,
    /// Retire a worker after this many completions.
    pub retire_after: Vec<u64>,
    /// Add a worker after this many completions (joining mid-computation).
    pub add_after: Vec<u64>,
    /// Bytes per second between virtual workers.
    pub bandwidth: f64,
    /// Check the state machine's invariants after every event (slow).
    pub check_invariants: bool,
    pub scheduler: SchedulerConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            threads_per_worker: 2,
            kill_after: Vec::new(),
            retire_after: Vec::new(),
            add_after: Vec::new(),
            bandwidth: 1e9,
            check_invariants: false,
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// What happened.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Value of each wanted key: a hash over the lineage, so any wrong input
    /// or missed dependency changes it.
    pub results: BTreeMap<Key, u64>,
    /// Errors reported for wanted keys.
    pub errors: BTreeMap<Key, String>,
    /// Times each key was executed to completion.
    pub executions: FxHashMap<Key, u32>,
    /// Virtual time at the end.
    pub makespan: f64,
    /// Total work divided by total threads: no schedule can beat it.
    pub ideal: f64,
    /// Wall-clock seconds spent inside the state machine.
    pub scheduler_seconds: f64,
    pub events: u64,
    /// Tasks the scheduler still tracks after the client released everything.
    pub leftover_tasks: usize,
    /// Keys still stored on virtual workers after the release.
    pub leftover_keys: usize,
}

struct VWorker {
    threads: usize,
    running: usize,
    queue: BinaryHeap<Reverse<(Priority, u64)>>,
    /// Jobs by arrival, with the scheduler's task id.
    queued: FxHashMap<u64, (Arc<Task>, u32)>,
    store: FxHashMap<Key, u64>,
    alive: bool,
}

enum Timed {
    Done { worker: WorkerId, task: Arc<Task>, id: u32 },
}

fn mix(mut h: u64, x: u64) -> u64 {
    h ^= x.wrapping_add(0x9e37_79b9_7f4a_7c15).wrapping_add(h << 6).wrapping_add(h >> 2);
    h.wrapping_mul(0xff51_afd7_ed55_8ccd)
}

fn key_hash(k: &Key) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in k.name().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    for i in k.index() {
        h = mix(h, u64::from(*i));
    }
    h
}

/// Runs `tasks` to completion of `wanted`, then releases everything.
/// `duration` gives each task's virtual run time; `nbytes` its output size.
pub fn simulate(
    tasks: Vec<Arc<Task>>,
    wanted: Vec<Key>,
    duration: impl Fn(&Task) -> f64,
    nbytes: impl Fn(&Task) -> u64,
    config: &SimConfig,
) -> Result<SimReport, String> {
    let mut state = SchedulerState::new(config.scheduler.clone());
    let mut report = SimReport::default();
    let client = ClientId(1);
    let mut workers: BTreeMap<WorkerId, VWorker> = BTreeMap::new();
    let mut next_worker = 0u64;
    let mut seq = 0u64;
    let mut now = 0.0f64;
    let mut timeline: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new(); // (time in ns, seq)
    let mut pending: FxHashMap<u64, Timed> = FxHashMap::default();
    let mut completions = 0u64;
    let total_work: f64 = tasks.iter().map(|t| duration(t)).sum();
    let mut outstanding: FxHashSet<Key> = wanted.iter().cloned().collect();
    let mut events: Vec<Event> = Vec::new();

    let mut add_worker = |workers: &mut BTreeMap<WorkerId, VWorker>, events: &mut Vec<Event>| {
        let id = WorkerId(next_worker);
        next_worker += 1;
        workers.insert(
            id,
            VWorker {
                threads: config.threads_per_worker,
                running: 0,
                queue: BinaryHeap::new(),
                queued: FxHashMap::default(),
                store: FxHashMap::default(),
                alive: true,
            },
        );
        events.push(Event::WorkerAdded {
            worker: id,
            name: format!("sim-{}", id.0),
            nthreads: config.threads_per_worker,
            memory_limit: 0,
            capabilities: rask_core::Capabilities::NONE,
        });
    };
    for _ in 0..config.workers {
        add_worker(&mut workers, &mut events);
    }
    events.push(Event::UpdateGraph { client, tasks, wanted: wanted.clone() });

    let mut released = false;
    let mut commands = Vec::new();
    loop {
        // Feed events to the scheduler and carry out its commands.
        while !events.is_empty() {
            let started = Instant::now();
            for e in events.drain(..) {
                state.handle(e);
                report.events += 1;
                if config.check_invariants {
                    state.check_invariants()?;
                }
            }
            state.drain_commands_into(&mut commands);
            report.scheduler_seconds += started.elapsed().as_secs_f64();
            for cmd in commands.drain(..) {
                match cmd {
                    Command::Execute { worker, task, priority, who_has, id } => {
                        if !workers.get(&worker).is_some_and(|w| w.alive) {
                            continue;
                        }
                        // The inputs must exist where the scheduler says.
                        for (dep, holders) in &who_has {
                            // A holder that died since the scheduler last heard
                            // is a race the worker reports as missing data;
                            // live holders without the data are a scheduler bug.
                            let found =
                                holders.iter().any(|h| workers.get(h).is_some_and(|hw| hw.store.contains_key(dep)));
                            let all_alive = holders.iter().all(|h| workers.contains_key(h));
                            if !found && all_alive {
                                return Err(format!("{} sent to run but input {dep} is not on {holders:?}", task.key));
                            }
                        }
                        seq += 1;
                        let w = workers.get_mut(&worker).expect("checked above");
                        w.queue.push(Reverse((priority, seq)));
                        w.queued.insert(seq, (task, id));
                    }
                    Command::Release { worker, key } => {
                        if let Some(w) = workers.get_mut(&worker) {
                            w.store.remove(&key);
                            let ids: Vec<u64> =
                                w.queued.iter().filter(|(_, (t, _))| t.key == key).map(|(s, _)| *s).collect();
                            for s in ids {
                                w.queued.remove(&s);
                            }
                        }
                    }
                    Command::Steal { worker, key } => {
                        let stolen = workers.get_mut(&worker).is_some_and(|w| {
                            let found = w.queued.iter().find(|(_, (t, _))| t.key == key).map(|(s, _)| *s);
                            found.map(|s| w.queued.remove(&s)).is_some()
                        });
                        events.push(Event::StealResponse { worker, key, stolen });
                    }
                    Command::Replicate { key, from, to } => {
                        let value = workers.get(&from).and_then(|w| w.store.get(&key).copied());
                        if let (Some(v), Some(w)) = (value, workers.get_mut(&to)) {
                            w.store.insert(key.clone(), v);
                            events.push(Event::ReplicaAdded { worker: to, key, nbytes: 8 });
                        }
                    }
                    Command::WorkerMayLeave { worker } => {
                        workers.remove(&worker);
                        events.push(Event::WorkerRemoved { worker });
                    }
                    Command::KeyInMemory { key, workers: holders, .. } => {
                        let value =
                            holders.iter().find_map(|h| workers.get(h).and_then(|w| w.store.get(&key).copied()));
                        match value {
                            Some(v) => {
                                report.results.insert(key.clone(), v);
                                outstanding.remove(&key);
                            }
                            // The holder died after it finished: the scheduler
                            // recomputes the key and reports it again.
                            None if holders.iter().all(|h| !workers.contains_key(h)) => {}
                            None => return Err(format!("{key} reported in memory on {holders:?} but is not there")),
                        }
                    }
                    Command::KeyErred { key, error, .. } => {
                        report.errors.insert(key.clone(), error.to_string());
                        outstanding.remove(&key);
                    }
                }
            }
        }
        if outstanding.is_empty() && !released {
            released = true;
            events.push(Event::ReleaseKeys { client, keys: wanted.clone() });
            continue;
        }
        // Start queued tasks on free threads.
        for (&wid, w) in workers.iter_mut() {
            while w.running < w.threads {
                let Some(Reverse((_, s))) = w.queue.pop() else { break };
                let Some((task, id)) = w.queued.remove(&s) else { continue };
                w.running += 1;
                seq += 1;
                let end = now + duration(&task);
                pending.insert(seq, Timed::Done { worker: wid, task, id });
                timeline.push(Reverse(((end * 1e9) as u64, seq)));
            }
        }
        let Some(Reverse((t_ns, s))) = timeline.pop() else {
            if !events.is_empty() {
                continue;
            }
            break;
        };
        now = now.max(t_ns as f64 / 1e9);
        let Some(Timed::Done { worker, task, id }) = pending.remove(&s) else { continue };
        let Some(w) = workers.get_mut(&worker) else { continue };
        w.running -= 1;
        if !w.alive {
            continue;
        }
        // Recompute the value with peer data now: inputs must be somewhere.
        let mut value = key_hash(&task.key);
        let mut missing = None;
        for dep in task.dependencies() {
            let found = workers.values().filter(|p| p.alive).find_map(|p| p.store.get(&dep).copied());
            match found {
                Some(v) => value = mix(value, v),
                None => missing = Some(dep),
            }
        }
        if let Some(dep) = missing {
            events.push(Event::MissingData { worker, key: task.key.clone(), missing: dep });
            continue;
        }
        let w = workers.get_mut(&worker).expect("worker exists");
        w.store.insert(task.key.clone(), value);
        *report.executions.entry(task.key.clone()).or_default() += 1;
        completions += 1;
        // Half the completions carry the scheduler's id, as the local
        // cluster reports them; the rest only the key, as remote workers do.
        let (key, nbytes, duration) = (task.key.clone(), nbytes(&task), duration(&task));
        events.push(if completions.is_multiple_of(2) {
            Event::TaskFinishedById { worker, id, key, nbytes, duration }
        } else {
            Event::TaskFinished { worker, key, nbytes, duration }
        });
        if config.kill_after.contains(&completions) {
            let victim = *workers.keys().next().expect("a worker to kill");
            workers.remove(&victim);
            events.push(Event::WorkerRemoved { worker: victim });
            add_worker(&mut workers, &mut events);
        }
        if config.retire_after.contains(&completions)
            && let Some(&victim) = workers.keys().next()
        {
            events.push(Event::RetireWorkers { workers: vec![victim] });
        }
        if config.add_after.contains(&completions) {
            add_worker(&mut workers, &mut events);
        }
    }
    if !outstanding.is_empty() {
        return Err(format!(
            "simulation stalled with {} keys outstanding, e.g. {:?}",
            outstanding.len(),
            outstanding.iter().next()
        ));
    }
    report.makespan = now;
    let threads = (config.workers * config.threads_per_worker).max(1) as f64;
    report.ideal = total_work / threads;
    report.leftover_tasks = state.n_tasks();
    report.leftover_keys = workers.values().map(|w| w.store.len()).sum();
    state.check_invariants()?;
    Ok(report)
}
