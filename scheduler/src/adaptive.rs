//! The adaptive target: how many workers the current work could use, in
//! total and per worker group. This is what `/api/v1/adaptive_target` serves
//! and what the operator's autoscaler reads.
//!
//! It follows Dask's `Scheduler.adaptive_target`: the expected work (the
//! occupancy of the workers plus the queued tasks, each at the duration
//! learned for its key prefix, the op family) divided by a target duration
//! (5 s by default), never more threads than there are tasks to run, and
//! divided by the threads per worker. Memory is the second signal: enough
//! workers to hold the data at 60 % of their memory limit (where spilling
//! starts).
//!
//! Per group: each group's own work is what runs on its workers; the queued
//! work, which any worker may take, is shared among the groups in proportion
//! to their threads (all of it to the `default` group while no worker has
//! joined). A pure function of [`WorkerLoad`]s, unit tested without sockets.

use std::collections::BTreeMap;

use serde::Serialize;

/// The group of workers that did not name one (and of every classic Dask worker).
pub const DEFAULT_GROUP: &str = "default";

/// Data held above this fraction of a worker's memory limit asks for more
/// workers: Dask's spill threshold.
const MEMORY_TARGET_FRACTION: f64 = 0.6;

/// One worker's load, as the scheduler state sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerLoad {
    pub group: String,
    pub nthreads: usize,
    /// Expected seconds of the tasks assigned to it.
    pub occupancy: f64,
    /// Tasks assigned to it (running or waiting for a thread).
    pub processing: usize,
    pub memory_bytes: u64,
    /// 0: no limit.
    pub memory_limit: u64,
}

/// The target, its inputs, and a sentence saying why.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AdaptiveTarget {
    /// Dask's field: the workers the whole cluster could use.
    pub workers: usize,
    pub target_duration: f64,
    /// Ready tasks queued on the scheduler, not yet given to a worker.
    pub queued_tasks: u64,
    /// Tasks on workers (running or waiting for a thread).
    pub processing_tasks: u64,
    /// Expected seconds of all that work, from the durations learned per op family.
    pub expected_seconds: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub reason: String,
    /// The same, per worker group.
    pub groups: BTreeMap<String, GroupTarget>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GroupTarget {
    /// Workers this group could use.
    pub workers: usize,
    /// Workers of this group now.
    pub current_workers: usize,
    pub threads: usize,
    /// Its share of the queued tasks.
    pub queued_tasks: u64,
    pub processing_tasks: u64,
    pub expected_seconds: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub reason: String,
}

/// The work of one group (or of all), before it is turned into workers.
struct Work {
    seconds: f64,
    tasks: u64,
    memory_bytes: u64,
    /// Memory limit of one worker (average); 0: no limit.
    limit_per_worker: f64,
    threads_per_worker: f64,
}

/// (workers, reason) for an amount of work.
fn workers_for(work: &Work, target_duration: f64, queued: u64, processing: u64) -> (usize, String) {
    let target_duration = target_duration.max(1e-3);
    // Never more threads than tasks: a few long tasks do not ask for many workers.
    let threads = ((work.seconds / target_duration).ceil() as u64).min(work.tasks);
    let cpu = (threads as f64 / work.threads_per_worker.max(1.0)).ceil() as usize;
    let cpu = if work.tasks > 0 { cpu.max(1) } else { 0 };
    let memory = if work.limit_per_worker > 0.0 {
        (work.memory_bytes as f64 / (MEMORY_TARGET_FRACTION * work.limit_per_worker)).ceil() as usize
    } else {
        0
    };
    let mut reason = if work.tasks == 0 {
        "idle: no ready or running tasks".to_string()
    } else {
        format!(
            "queue depth: {queued} ready + {processing} running tasks ≈ {:.0} s of work; target {} s → {cpu} workers",
            work.seconds,
            fmt_seconds(target_duration)
        )
    };
    if memory > cpu {
        reason.push_str(&format!(
            "; memory: {} held, {} per worker, spill at {:.0} % → {memory} workers",
            fmt_bytes(work.memory_bytes),
            fmt_bytes(work.limit_per_worker as u64),
            MEMORY_TARGET_FRACTION * 100.0
        ));
    }
    (cpu.max(memory), reason)
}

fn fmt_seconds(s: f64) -> String {
    if s.fract() == 0.0 { format!("{s:.0}") } else { format!("{s:.1}") }
}

fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// The adaptive target of a cluster: `queued_tasks` ready tasks worth
/// `queued_seconds` wait on the scheduler; `workers` are the workers' loads.
pub fn adaptive_target(
    queued_tasks: u64,
    queued_seconds: f64,
    workers: &[WorkerLoad],
    target_duration: f64,
) -> AdaptiveTarget {
    let mut by_group: BTreeMap<&str, Vec<&WorkerLoad>> = BTreeMap::new();
    for w in workers {
        by_group.entry(w.group.as_str()).or_default().push(w);
    }
    let total_threads: usize = workers.iter().map(|w| w.nthreads.max(1)).sum();
    let average = |ws: &[&WorkerLoad], f: &dyn Fn(&WorkerLoad) -> f64| -> f64 {
        if ws.is_empty() { 0.0 } else { ws.iter().map(|w| f(w)).sum::<f64>() / ws.len() as f64 }
    };
    let all: Vec<&WorkerLoad> = workers.iter().collect();
    let processing: u64 = workers.iter().map(|w| w.processing as u64).sum();
    let occupancy: f64 = workers.iter().map(|w| w.occupancy).sum();
    let memory_bytes: u64 = workers.iter().map(|w| w.memory_bytes).sum();
    let limited: Vec<&WorkerLoad> = workers.iter().filter(|w| w.memory_limit > 0).collect();
    let total = Work {
        seconds: occupancy + queued_seconds,
        tasks: queued_tasks + processing,
        memory_bytes,
        limit_per_worker: average(&limited, &|w| w.memory_limit as f64),
        threads_per_worker: if all.is_empty() { 1.0 } else { average(&all, &|w| w.nthreads.max(1) as f64) },
    };
    let (target, reason) = workers_for(&total, target_duration, queued_tasks, processing);
    let mut out = AdaptiveTarget {
        workers: target,
        target_duration,
        queued_tasks,
        processing_tasks: processing,
        expected_seconds: total.seconds,
        memory_bytes,
        memory_limit_bytes: workers.iter().map(|w| w.memory_limit).sum(),
        reason,
        groups: BTreeMap::new(),
    };
    if by_group.is_empty() {
        // No worker yet: all the work is the default group's.
        out.groups.insert(
            DEFAULT_GROUP.to_string(),
            GroupTarget {
                workers: target,
                queued_tasks,
                expected_seconds: total.seconds,
                reason: out.reason.clone(),
                ..GroupTarget::default()
            },
        );
        return out;
    }
    // The queued tasks are shared in proportion to threads; rounding by
    // largest remainder, so the shares add up to the queued tasks.
    let groups: Vec<(&str, Vec<&WorkerLoad>)> = by_group.into_iter().collect();
    let threads_of = |ws: &[&WorkerLoad]| ws.iter().map(|w| w.nthreads.max(1)).sum::<usize>();
    let exact: Vec<f64> =
        groups.iter().map(|(_, ws)| queued_tasks as f64 * threads_of(ws) as f64 / total_threads as f64).collect();
    let mut shares: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut left = queued_tasks - shares.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for i in order {
        if left == 0 {
            break;
        }
        shares[i] += 1;
        left -= 1;
    }
    for ((name, ws), share) in groups.iter().zip(shares) {
        let threads = threads_of(ws);
        let fraction = threads as f64 / total_threads as f64;
        let processing: u64 = ws.iter().map(|w| w.processing as u64).sum();
        let memory_bytes: u64 = ws.iter().map(|w| w.memory_bytes).sum();
        let limited: Vec<&WorkerLoad> = ws.iter().copied().filter(|w| w.memory_limit > 0).collect();
        let work = Work {
            seconds: ws.iter().map(|w| w.occupancy).sum::<f64>() + queued_seconds * fraction,
            tasks: share + processing,
            memory_bytes,
            limit_per_worker: average(&limited, &|w| w.memory_limit as f64),
            threads_per_worker: threads as f64 / ws.len() as f64,
        };
        let (workers, reason) = workers_for(&work, target_duration, share, processing);
        out.groups.insert(
            (*name).to_string(),
            GroupTarget {
                workers,
                current_workers: ws.len(),
                threads,
                queued_tasks: share,
                processing_tasks: processing,
                expected_seconds: work.seconds,
                memory_bytes,
                memory_limit_bytes: ws.iter().map(|w| w.memory_limit).sum(),
                reason,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(group: &str, nthreads: usize, occupancy: f64, processing: usize) -> WorkerLoad {
        WorkerLoad { group: group.into(), nthreads, occupancy, processing, memory_bytes: 0, memory_limit: 1 << 30 }
    }

    #[test]
    fn idle_wants_nothing() {
        let t = adaptive_target(0, 0.0, &[worker("default", 2, 0.0, 0)], 5.0);
        assert_eq!(t.workers, 0);
        assert_eq!(t.groups["default"].workers, 0);
        assert!(t.reason.starts_with("idle"), "{}", t.reason);
        // Nothing at all: the default group is still reported.
        let t = adaptive_target(0, 0.0, &[], 5.0);
        assert_eq!((t.workers, t.groups["default"].workers), (0, 0));
    }

    #[test]
    fn queued_work_over_the_target_duration() {
        // 120 tasks of 0.3 s = 36 s; 5 s target → 8 single-threaded workers.
        let t = adaptive_target(119, 35.7, &[worker("default", 1, 0.3, 1)], 5.0);
        assert_eq!(t.workers, 8);
        assert_eq!(t.groups["default"].workers, 8);
        assert_eq!(t.queued_tasks, 119);
        assert!((t.expected_seconds - 36.0).abs() < 1e-9);
        assert_eq!(t.reason, "queue depth: 119 ready + 1 running tasks ≈ 36 s of work; target 5 s → 8 workers");
        // Threads per worker divide: 4 threads each → 2 workers.
        let t = adaptive_target(119, 35.7, &[worker("default", 4, 0.3, 1)], 5.0);
        assert_eq!(t.workers, 2);
        // A longer target duration asks for fewer.
        let t = adaptive_target(119, 35.7, &[worker("default", 1, 0.3, 1)], 20.0);
        assert_eq!(t.workers, 2);
    }

    #[test]
    fn never_more_workers_than_tasks() {
        // Three tasks of 100 s each: three workers, not sixty.
        let t = adaptive_target(3, 300.0, &[worker("default", 1, 0.0, 0)], 5.0);
        assert_eq!(t.workers, 3);
        // Work queued before any worker joined: at least one.
        let t = adaptive_target(1, 0.01, &[], 5.0);
        assert_eq!((t.workers, t.groups["default"].workers), (1, 1));
    }

    #[test]
    fn memory_pressure_asks_for_more() {
        let mut w = worker("default", 1, 0.0, 0);
        w.memory_bytes = 900 << 20;
        w.memory_limit = 1 << 30;
        // 900 MiB at 60 % of 1 GiB per worker: 2 workers, although idle.
        let t = adaptive_target(0, 0.0, &[w], 5.0);
        assert_eq!(t.workers, 2);
        assert!(t.reason.contains("memory: 900.0 MiB held"), "{}", t.reason);
    }

    #[test]
    fn groups_get_their_own_work_and_a_share_of_the_queue() {
        let workers = [worker("default", 1, 0.0, 0), worker("highmem", 2, 20.0, 2), worker("highmem", 2, 0.0, 0)];
        // 10 queued tasks of 1 s: 2 of 5 threads are default's → 2 tasks, 4 s.
        let t = adaptive_target(10, 10.0, &workers, 5.0);
        let d = &t.groups["default"];
        let h = &t.groups["highmem"];
        assert_eq!((d.current_workers, d.threads, d.queued_tasks), (1, 1, 2));
        assert_eq!((h.current_workers, h.threads, h.queued_tasks, h.processing_tasks), (2, 4, 8, 2));
        assert_eq!(d.workers, 1);
        // highmem: 20 s running + 8 s queued = 28 s / 5 s = 6 threads / 2 per worker = 3.
        assert_eq!(h.workers, 3);
        assert_eq!(t.queued_tasks, d.queued_tasks + h.queued_tasks);
        // An idle group is not asked to grow by another group's work.
        let t = adaptive_target(0, 0.0, &workers, 5.0);
        assert_eq!(t.groups["default"].workers, 0);
        // highmem: its 2 running tasks fit one 2-thread worker.
        assert_eq!(t.groups["highmem"].workers, 1);
    }
}
