//! Unit tests of the state machine, driven by hand, plus property tests that
//! drive it through the simulator on random graphs.

use std::sync::Arc;

use proptest::prelude::*;
use rask_core::{Arg, Capabilities, Key, Params, Task};

use crate::sim::{SimConfig, simulate};
use crate::*;

fn task(key: &str, deps: &[&str]) -> Arc<Task> {
    Arc::new(Task::new(key.into(), "op", Params::default(), deps.iter().map(|d| Arg::Key((*d).into())).collect()))
}

const C: ClientId = ClientId(7);

fn with_workers(n: u64, threads: usize) -> SchedulerState {
    let mut s = SchedulerState::new(SchedulerConfig::default());
    for w in 0..n {
        s.handle(Event::WorkerAdded {
            worker: WorkerId(w),
            name: format!("w{w}"),
            nthreads: threads,
            memory_limit: 0,
            capabilities: Capabilities::NONE,
        });
    }
    s
}

fn executes(cmds: &[Command]) -> Vec<(String, WorkerId)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Execute { worker, task, .. } => Some((task.key.to_string(), *worker)),
            _ => None,
        })
        .collect()
}

fn finish(s: &mut SchedulerState, key: &str, worker: u64) -> Vec<Command> {
    s.handle(Event::TaskFinished { worker: WorkerId(worker), key: key.into(), nbytes: 8, duration: 0.01 });
    s.check_invariants().unwrap();
    s.take_commands()
}

#[test]
fn inc_inc_add_runs_leaves_in_parallel_then_frees_them() {
    let mut s = with_workers(1, 2);
    s.handle(Event::UpdateGraph {
        client: C,
        tasks: vec![task("inc-1", &[]), task("inc-2", &[]), task("add", &["inc-1", "inc-2"])],
        wanted: vec!["add".into()],
    });
    let cmds = s.take_commands();
    let mut ran: Vec<String> = executes(&cmds).into_iter().map(|(k, _)| k).collect();
    ran.sort();
    assert_eq!(ran, ["inc-1", "inc-2"]);
    assert!(executes(&finish(&mut s, "inc-1", 0)).is_empty());
    let cmds = finish(&mut s, "inc-2", 0);
    assert_eq!(executes(&cmds), [("add".to_string(), WorkerId(0))]);
    let cmds = finish(&mut s, "add", 0);
    // Inputs are freed once add has them; the client hears about add.
    let released: Vec<String> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Release { key, .. } => Some(key.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(released.len(), 2, "{cmds:?}");
    assert!(cmds.iter().any(|c| matches!(c, Command::KeyInMemory { key, .. } if key.name() == "add")));
    assert_eq!(s.task_state(&"add".into()), Some(TaskStateName::Memory));
    s.handle(Event::ReleaseKeys { client: C, keys: vec!["add".into()] });
    assert_eq!(s.n_tasks(), 0, "everything is forgotten after the release");
}

#[test]
fn root_tasks_are_queued_to_saturation() {
    let mut s = with_workers(1, 2);
    let tasks: Vec<_> = (0..100).map(|i| task(&format!("leaf-{i}"), &[])).collect();
    let wanted = tasks.iter().map(|t| t.key.clone()).collect();
    s.handle(Event::UpdateGraph { client: C, tasks, wanted });
    // ceil(2 * 1.1) = 3 until durations are known.
    assert_eq!(executes(&s.take_commands()).len(), 3);
    assert_eq!(s.queue_depth(), 97 + 1);
    // A slow task frees exactly one slot.
    s.handle(Event::TaskFinished { worker: WorkerId(0), key: "leaf-0".into(), nbytes: 8, duration: 1.0 });
    let next = executes(&s.take_commands());
    assert_eq!(next.len(), 1, "one slot freed: {next:?}");
}

#[test]
fn forgotten_definitions_are_handed_to_the_driver_only_when_asked() {
    for hand_off in [false, true] {
        let mut s = SchedulerState::new(SchedulerConfig { hand_off_forgotten: hand_off, ..SchedulerConfig::default() });
        s.handle(Event::WorkerAdded {
            worker: WorkerId(0),
            name: "w0".into(),
            nthreads: 2,
            memory_limit: 0,
            capabilities: Capabilities::NONE,
        });
        let tasks = vec![task("inc-1", &[]), task("inc-2", &[]), task("add", &["inc-1", "inc-2"])];
        let weak: Vec<_> = tasks.iter().map(Arc::downgrade).collect();
        s.handle(Event::UpdateGraph { client: C, tasks, wanted: vec!["add".into()] });
        s.take_commands();
        for key in ["inc-1", "inc-2", "add"] {
            finish(&mut s, key, 0);
        }
        let mut out = Vec::new();
        s.drain_forgotten_into(&mut out);
        // add is still wanted, and its inputs stay known while it is.
        assert!(out.is_empty());
        s.handle(Event::ReleaseKeys { client: C, keys: vec!["add".into()] });
        s.drain_forgotten_into(&mut out);
        let mut got: Vec<String> = out.iter().map(|t| t.key.to_string()).collect();
        got.sort();
        let expected: &[&str] = if hand_off { &["add", "inc-1", "inc-2"] } else { &[] };
        assert_eq!(got, expected);
        assert_eq!(s.n_tasks(), 0);
        // Whoever holds them last frees them: the driver, or the state itself.
        drop(out);
        assert!(weak.iter().all(|w| w.upgrade().is_none()), "hand_off={hand_off}: a definition outlived its task");
    }
}

#[test]
fn tiny_root_tasks_get_a_deeper_buffer() {
    let mut s = with_workers(1, 2);
    let tasks: Vec<_> = (0..1000).map(|i| task(&format!("leaf-{i}"), &[])).collect();
    let wanted = tasks.iter().map(|t| t.key.clone()).collect();
    s.handle(Event::UpdateGraph { client: C, tasks, wanted });
    s.take_commands();
    s.handle(Event::TaskFinished { worker: WorkerId(0), key: "leaf-0".into(), nbytes: 8, duration: 1e-6 });
    let more = executes(&s.take_commands()).len();
    assert!(more > 100, "microsecond tasks should be buffered deeply, got {more}");
}

#[test]
fn placement_prefers_the_worker_holding_the_inputs() {
    let mut s = with_workers(3, 1);
    s.handle(Event::UpdateGraph {
        client: C,
        tasks: vec![task("a", &[]), task("b", &["a"])],
        wanted: vec!["b".into()],
    });
    let first = executes(&s.take_commands());
    let (_, holder) = first[0].clone();
    let cmds = finish(&mut s, "a", holder.0);
    assert_eq!(executes(&cmds), [("b".to_string(), holder)]);
}

#[test]
fn paused_workers_get_no_new_tasks_until_they_resume() {
    let mut s = with_workers(2, 1);
    s.handle(Event::WorkerPaused { worker: WorkerId(1), paused: true });
    let tasks: Vec<_> = (0..6).map(|i| task(&format!("leaf-{i}"), &[])).collect();
    let wanted = tasks.iter().map(|t| t.key.clone()).collect();
    s.handle(Event::UpdateGraph { client: C, tasks, wanted });
    let first = executes(&s.take_commands());
    assert!(!first.is_empty() && first.iter().all(|(_, w)| *w == WorkerId(0)), "only the running worker: {first:?}");
    // A task whose input sits on the paused worker still goes elsewhere
    // (the paused worker serves its data but starts nothing).
    s.handle(Event::UpdateGraph {
        client: C,
        tasks: vec![task("x", &[]), task("y", &["x"])],
        wanted: vec!["y".into()],
    });
    s.take_commands();
    s.handle(Event::WorkerPaused { worker: WorkerId(0), paused: true });
    s.check_invariants().unwrap();
    // Everything finishing on worker 0 queues the rest: nobody accepts work.
    for key in first.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>() {
        let cmds = finish(&mut s, &key, 0);
        assert!(executes(&cmds).is_empty(), "paused workers got {cmds:?}");
    }
    assert!(s.queue_depth() > 0);
    // Resuming fills the worker's slots again.
    s.handle(Event::WorkerPaused { worker: WorkerId(1), paused: false });
    let resumed = executes(&s.take_commands());
    assert!(!resumed.is_empty() && resumed.iter().all(|(_, w)| *w == WorkerId(1)), "{resumed:?}");
    s.check_invariants().unwrap();
    assert!(s.snapshot().workers.iter().any(|w| w.paused), "the snapshot shows the pause");
}

#[test]
fn idle_worker_steals_queued_work() {
    let mut s = with_workers(1, 1);
    // Non-root tasks are assigned eagerly, so they pile up on the holder.
    let mut tasks = vec![task("src", &[])];
    let mut wanted = Vec::new();
    for i in 0..6 {
        let k = format!("child-{i}");
        tasks.push(task(&k, &["src"]));
        wanted.push(Key::from(k.as_str()));
    }
    s.handle(Event::UpdateGraph { client: C, tasks, wanted });
    s.take_commands();
    assert_eq!(executes(&finish(&mut s, "src", 0)).len(), 6);
    s.handle(Event::WorkerAdded {
        worker: WorkerId(1),
        name: "late".into(),
        nthreads: 2,
        memory_limit: 0,
        capabilities: Capabilities::NONE,
    });
    let steals: Vec<Key> = s
        .take_commands()
        .into_iter()
        .filter_map(|c| match c {
            Command::Steal { worker: WorkerId(0), key } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(steals.len(), 2, "the new worker fills its two threads");
    s.handle(Event::StealResponse { worker: WorkerId(0), key: steals[0].clone(), stolen: true });
    s.handle(Event::StealResponse { worker: WorkerId(0), key: steals[1].clone(), stolen: false });
    let moved = executes(&s.take_commands());
    assert_eq!(moved, [(steals[0].to_string(), WorkerId(1))]);
    s.check_invariants().unwrap();
}

#[test]
fn errors_reach_the_client_with_the_failing_key() {
    let mut s = with_workers(1, 2);
    s.handle(Event::UpdateGraph {
        client: C,
        tasks: vec![task("bad", &[]), task("ok", &[]), task("sum", &["bad", "ok"])],
        wanted: vec!["sum".into()],
    });
    s.take_commands();
    s.handle(Event::TaskErred { worker: WorkerId(0), key: "bad".into(), message: "boom".into(), origin: None });
    let cmds = s.take_commands();
    let err = cmds
        .iter()
        .find_map(|c| match c {
            Command::KeyErred { key, error, .. } if key.name() == "sum" => Some(error.clone()),
            _ => None,
        })
        .expect("the client hears about sum");
    assert_eq!(err.key, Key::from("bad"));
    assert_eq!(err.to_string(), "task bad failed: boom");
    s.check_invariants().unwrap();
    finish(&mut s, "ok", 0);
    s.handle(Event::ReleaseKeys { client: C, keys: vec!["sum".into()] });
    assert_eq!(s.n_tasks(), 0);
}

#[test]
fn a_task_that_kills_workers_becomes_killed_worker() {
    let mut s = with_workers(1, 1);
    s.handle(Event::UpdateGraph { client: C, tasks: vec![task("crash", &[])], wanted: vec!["crash".into()] });
    for w in 0..3u64 {
        let ran = executes(&s.take_commands());
        assert_eq!(ran, [("crash".to_string(), WorkerId(w))], "attempt {w}");
        s.handle(Event::WorkerAdded {
            worker: WorkerId(w + 1),
            name: format!("w{}", w + 1),
            nthreads: 1,
            memory_limit: 0,
            capabilities: Capabilities::NONE,
        });
        s.handle(Event::WorkerRemoved { worker: WorkerId(w) });
        s.check_invariants().unwrap();
    }
    let cmds = s.take_commands();
    let err = cmds
        .iter()
        .find_map(|c| match c {
            Command::KeyErred { error, .. } => Some(error.clone()),
            _ => None,
        })
        .expect("KilledWorker after 3 deaths");
    assert_eq!(err.kind, ErrorKind::KilledWorker);
    assert!(err.to_string().contains("KilledWorker") && err.to_string().contains("3 workers"), "{err}");
}

#[test]
fn lost_data_is_recomputed_from_lineage() {
    let mut s = with_workers(2, 1);
    s.handle(Event::UpdateGraph {
        client: C,
        tasks: vec![task("a", &[]), task("b", &[]), task("c", &["a", "b"])],
        wanted: vec!["c".into()],
    });
    let ran = executes(&s.take_commands());
    let where_a = ran.iter().find(|(k, _)| k == "a").unwrap().1;
    let where_b = ran.iter().find(|(k, _)| k == "b").unwrap().1;
    finish(&mut s, "a", where_a.0);
    // a's worker dies before b finishes: a must be recomputed.
    s.handle(Event::WorkerRemoved { worker: where_a });
    s.check_invariants().unwrap();
    let again = executes(&s.take_commands());
    assert!(again.iter().any(|(k, _)| k == "a"), "{again:?}");
    assert_eq!(s.task_state(&"c".into()), Some(TaskStateName::Waiting));
    let _ = where_b;
}

#[test]
fn invalid_graphs_are_rejected_with_the_keys() {
    let mut s = with_workers(1, 1);
    s.handle(Event::UpdateGraph {
        client: C,
        tasks: vec![task("a", &["c"]), task("b", &["a"]), task("c", &["b"])],
        wanted: vec!["c".into()],
    });
    let msg = match &s.take_commands()[..] {
        [Command::KeyErred { error, .. }] => error.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(msg.contains("cycle") && msg.contains('a') && msg.contains('b'), "{msg}");
    s.handle(Event::UpdateGraph { client: C, tasks: vec![task("x", &["ghost"])], wanted: vec!["x".into()] });
    let msg = match &s.take_commands()[..] {
        [Command::KeyErred { error, .. }] => error.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(msg.contains("ghost"), "{msg}");
    assert_eq!(s.n_tasks(), 0, "nothing of a rejected graph is kept");
}

/// A rejected graph gives back the keys and ids it claimed, whether the ids
/// were new or recycled from forgotten tasks, and leaves live tasks alone.
#[test]
fn rejected_graphs_leave_the_state_as_it_was() {
    let mut s = with_workers(1, 1);
    // Run and forget a few tasks, so that later graphs reuse their ids.
    s.handle(Event::UpdateGraph {
        client: C,
        tasks: vec![task("p", &[]), task("q", &["p"])],
        wanted: vec!["q".into()],
    });
    s.take_commands();
    finish(&mut s, "p", 0);
    finish(&mut s, "q", 0);
    s.handle(Event::ReleaseKeys { client: C, keys: vec!["q".into()] });
    assert_eq!(s.n_tasks(), 0);
    s.handle(Event::UpdateGraph { client: C, tasks: vec![task("live", &[])], wanted: vec!["live".into()] });
    s.take_commands();
    let rejected = [
        vec![task("a", &["live"]), task("b", &["a"]), task("c", &["a"]), task("b", &["c"])],
        vec![task("a", &["live"]), task("b", &["a"]), task("c", &["ghost"])],
        vec![task("a", &["c"]), task("b", &["a"]), task("c", &["b"]), task("d", &["live"])],
    ];
    for tasks in rejected {
        s.handle(Event::UpdateGraph { client: C, tasks, wanted: vec!["b".into()] });
        assert!(matches!(&s.take_commands()[..], [Command::KeyErred { .. }]));
        s.check_invariants().unwrap();
        assert_eq!(s.n_tasks(), 1, "only the live task is known");
        assert!(!s.contains_key(&"a".into()) && s.contains_key(&"live".into()));
    }
    // The same keys are welcome in a valid graph afterwards.
    s.handle(Event::UpdateGraph {
        client: C,
        tasks: vec![task("a", &["live"]), task("b", &["a"]), task("live", &[])],
        wanted: vec!["b".into()],
    });
    assert_eq!(s.n_tasks(), 3);
    assert!(executes(&s.take_commands()).is_empty(), "live is running already");
    assert_eq!(executes(&finish(&mut s, "live", 0)), [("a".to_string(), WorkerId(0))]);
    assert_eq!(executes(&finish(&mut s, "a", 0)), [("b".to_string(), WorkerId(0))]);
    let cmds = finish(&mut s, "b", 0);
    assert!(cmds.iter().any(|c| matches!(c, Command::KeyInMemory { key, .. } if key.name() == "b")));
}

#[test]
fn shared_keys_run_once_for_two_clients() {
    let mut s = with_workers(1, 1);
    s.handle(Event::UpdateGraph { client: C, tasks: vec![task("shared", &[])], wanted: vec!["shared".into()] });
    s.handle(Event::UpdateGraph {
        client: ClientId(8),
        tasks: vec![task("shared", &[])],
        wanted: vec!["shared".into()],
    });
    assert_eq!(executes(&s.take_commands()).len(), 1);
    let cmds = finish(&mut s, "shared", 0);
    let told: Vec<ClientId> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::KeyInMemory { client, .. } => Some(*client),
            _ => None,
        })
        .collect();
    assert_eq!(told, [C, ClientId(8)]);
    s.handle(Event::ClientRemoved { client: C });
    assert_eq!(s.task_state(&"shared".into()), Some(TaskStateName::Memory), "the other client still wants it");
    s.handle(Event::ClientRemoved { client: ClientId(8) });
    assert_eq!(s.n_tasks(), 0);
}

#[test]
fn cancel_stops_work_nobody_needs() {
    let mut s = with_workers(1, 1);
    s.handle(Event::UpdateGraph {
        client: C,
        tasks: vec![task("a", &[]), task("b", &["a"])],
        wanted: vec!["b".into()],
    });
    s.take_commands();
    s.handle(Event::CancelKeys { client: C, keys: vec!["b".into()] });
    let cmds = s.take_commands();
    assert!(cmds.iter().any(|c| matches!(c, Command::Release { key, .. } if key.name() == "a")), "{cmds:?}");
    assert_eq!(s.n_tasks(), 0);
    s.check_invariants().unwrap();
}

#[test]
fn retiring_copies_unique_data_then_lets_the_worker_go() {
    let mut s = with_workers(2, 1);
    s.handle(Event::UpdateGraph { client: C, tasks: vec![task("keep", &[])], wanted: vec!["keep".into()] });
    let (_, w) = executes(&s.take_commands())[0].clone();
    finish(&mut s, "keep", w.0);
    s.handle(Event::RetireWorkers { workers: vec![w] });
    let cmds = s.take_commands();
    let (from, to) = cmds
        .iter()
        .find_map(|c| match c {
            Command::Replicate { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .expect("unique data is copied first");
    assert_eq!(from, w);
    assert!(!cmds.iter().any(|c| matches!(c, Command::WorkerMayLeave { .. })));
    s.handle(Event::ReplicaAdded { worker: to, key: "keep".into(), nbytes: 8 });
    let cmds = s.take_commands();
    assert!(cmds.iter().any(|c| matches!(c, Command::WorkerMayLeave { worker } if *worker == w)));
    s.handle(Event::WorkerRemoved { worker: w });
    assert_eq!(s.who_has(&"keep".into()), vec![to]);
    assert_eq!(s.task_state(&"keep".into()), Some(TaskStateName::Memory));
}

#[test]
fn adaptive_target_follows_queued_work() {
    let mut s = with_workers(1, 2);
    assert_eq!(s.adaptive_target(5.0), 0);
    let tasks: Vec<_> = (0..100).map(|i| task(&format!("leaf-{i}"), &[])).collect();
    let wanted = tasks.iter().map(|t| t.key.clone()).collect();
    s.handle(Event::UpdateGraph { client: C, tasks, wanted });
    // 100 tasks * 0.5 s unknown duration / 5 s target / 2 threads = 5 workers.
    assert_eq!(s.adaptive_target(5.0), 5);
}

#[test]
fn adaptive_target_is_given_per_worker_group() {
    // w0 is in "default", w1 and w2 in "highmem"; 2 threads each.
    let mut s = with_workers(3, 2);
    let group = |w: WorkerId| if w.0 == 0 { "default".to_string() } else { "highmem".to_string() };
    let idle = s.adaptive_target_by(5.0, group);
    assert_eq!((idle.workers, idle.groups["default"].workers, idle.groups["highmem"].workers), (0, 0, 0));
    assert_eq!(idle.groups["highmem"].current_workers, 2);
    let tasks: Vec<_> = (0..300).map(|i| task(&format!("leaf-{i}"), &[])).collect();
    let wanted = tasks.iter().map(|t| t.key.clone()).collect();
    s.handle(Event::UpdateGraph { client: C, tasks, wanted });
    let t = s.adaptive_target_by(5.0, group);
    // 300 tasks of 0.5 s (no duration learned yet) = 150 s / 5 s / 2 threads = 15 workers.
    assert_eq!(t.workers, 15, "{t:?}");
    assert_eq!(t.queued_tasks + t.processing_tasks, 300);
    assert!(t.reason.starts_with("queue depth:"), "{}", t.reason);
    // The queue is shared by threads: a third to default, two thirds to highmem.
    let (d, h) = (&t.groups["default"], &t.groups["highmem"]);
    assert_eq!(d.queued_tasks + h.queued_tasks, t.queued_tasks);
    assert!((4..=6).contains(&d.workers) && (9..=11).contains(&h.workers), "{d:?} {h:?}");
    // The total is Dask's number, the same with or without groups.
    assert_eq!(s.adaptive_target(5.0), t.workers);
}

// ---------------------------------------------------------------- properties

/// A random DAG: task i depends on up to 6 earlier tasks (more than a record keeps in place).
fn random_dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..60).prop_flat_map(|n| {
        (0..n).map(|i| proptest::collection::vec(0..i.max(1), if i == 0 { 0..1 } else { 0..7 })).collect::<Vec<_>>()
    })
}

fn dag_tasks(deps: &[Vec<usize>]) -> (Vec<Arc<Task>>, Vec<Key>) {
    let keys: Vec<String> = (0..deps.len()).map(|i| format!("t-{i}")).collect();
    let tasks = deps
        .iter()
        .enumerate()
        .map(|(i, ds)| {
            let mut ds: Vec<usize> = ds.iter().copied().filter(|d| *d < i).collect();
            ds.dedup();
            let names: Vec<&str> = ds.iter().map(|d| keys[*d].as_str()).collect();
            task(&keys[i], &names)
        })
        .collect::<Vec<_>>();
    // Want every sink plus a few interior keys.
    let mut used = vec![false; deps.len()];
    for t in &tasks {
        for d in t.dependencies() {
            used[d.name()[2..].parse::<usize>().unwrap()] = true;
        }
    }
    let wanted = (0..deps.len()).filter(|i| !used[*i] || i % 7 == 3).map(|i| Key::from(keys[i].as_str())).collect();
    (tasks, wanted)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_task_runs_once_and_results_do_not_depend_on_the_cluster(
        deps in random_dag(), workers in 1usize..5, threads in 1usize..4, seed_dur in 0u64..1000
    ) {
        let (tasks, wanted) = dag_tasks(&deps);
        let dur = move |t: &Task| 0.001 + ((rask_core::key::token(t.key.name().as_bytes()).len() as u64 + seed_dur) % 13) as f64 * 0.01;
        let reference = simulate(tasks.clone(), wanted.clone(), dur, |_| 8,
            &SimConfig { workers: 1, threads_per_worker: 1, check_invariants: true, ..SimConfig::default() }).unwrap();
        let report = simulate(tasks.clone(), wanted.clone(), dur, |_| 8,
            &SimConfig { workers, threads_per_worker: threads, check_invariants: true, ..SimConfig::default() }).unwrap();
        prop_assert_eq!(&report.results, &reference.results);
        prop_assert_eq!(report.results.len(), wanted.len());
        for t in &tasks {
            prop_assert_eq!(report.executions.get(&t.key).copied().unwrap_or(0), 1, "{} ran more or less than once", t.key);
        }
        prop_assert_eq!(report.leftover_tasks, 0);
        prop_assert_eq!(report.leftover_keys, 0);
    }

    #[test]
    fn killed_retired_and_added_workers_lose_nothing(
        deps in random_dag(), kills in proptest::collection::vec(1u64..40, 0..3),
        retire in proptest::collection::vec(1u64..40, 0..2), add in proptest::collection::vec(1u64..40, 0..2)
    ) {
        let (tasks, wanted) = dag_tasks(&deps);
        let reference = simulate(tasks.clone(), wanted.clone(), |_| 0.01, |_| 8,
            &SimConfig { workers: 1, threads_per_worker: 1, ..SimConfig::default() }).unwrap();
        let config = SimConfig {
            workers: 3, threads_per_worker: 2, kill_after: kills, retire_after: retire, add_after: add,
            check_invariants: true, ..SimConfig::default()
        };
        let report = simulate(tasks, wanted, |_| 0.01, |_| 8, &config).unwrap();
        prop_assert!(report.errors.is_empty(), "{:?}", report.errors);
        prop_assert_eq!(&report.results, &reference.results);
        prop_assert_eq!(report.leftover_tasks, 0);
        prop_assert_eq!(report.leftover_keys, 0);
    }
}

#[test]
fn simulated_tree_reduction_is_near_ideal() {
    const LEAVES: usize = 4096;
    // 4096 leaves summed pairwise on 16 workers x 4 threads.
    let mut tasks = Vec::new();
    let mut level: Vec<String> = (0..LEAVES).map(|i| format!("leaf-{i}")).collect();
    for k in &level {
        tasks.push(task(k, &[]));
    }
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        let next: Vec<String> = level.chunks(2).enumerate().map(|(i, _)| format!("sum{depth}-{i}")).collect();
        for (i, pair) in level.chunks(2).enumerate() {
            let deps: Vec<&str> = pair.iter().map(String::as_str).collect();
            tasks.push(task(&next[i], &deps));
        }
        level = next;
    }
    let wanted = vec![Key::from(level[0].as_str())];
    let report = simulate(
        tasks,
        wanted,
        |_| 0.01,
        |_| 8,
        &SimConfig { workers: 16, threads_per_worker: 4, ..SimConfig::default() },
    )
    .unwrap();
    assert!(report.makespan < report.ideal * 1.5 + 0.2, "makespan {} vs ideal {}", report.makespan, report.ideal);
}

#[test]
fn finished_by_id_uses_the_id_and_falls_back_to_the_key() {
    let mut s = with_workers(1, 2);
    s.handle(Event::UpdateGraph {
        client: C,
        tasks: vec![task("a", &[]), task("b", &[]), task("c", &["a", "b"])],
        wanted: vec!["c".into()],
    });
    let ids: Vec<(String, u32)> = s
        .take_commands()
        .iter()
        .filter_map(|c| match c {
            Command::Execute { task, id, .. } => Some((task.key.to_string(), *id)),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    let id_of = |k: &str| ids.iter().find(|(key, _)| key == k).map(|(_, id)| *id).unwrap();
    // The right id.
    s.handle(Event::TaskFinishedById {
        worker: WorkerId(0),
        id: id_of("a"),
        key: "a".into(),
        nbytes: 8,
        duration: 0.01,
    });
    s.check_invariants().unwrap();
    assert_eq!(s.task_state(&"a".into()), Some(TaskStateName::Memory));
    // An id naming another task (reused, or wrong) is not trusted: the key decides.
    s.handle(Event::TaskFinishedById {
        worker: WorkerId(0),
        id: id_of("a"),
        key: "b".into(),
        nbytes: 8,
        duration: 0.01,
    });
    s.check_invariants().unwrap();
    assert_eq!(s.task_state(&"b".into()), Some(TaskStateName::Memory));
    let c = s
        .take_commands()
        .iter()
        .find_map(|c| match c {
            Command::Execute { task, id, .. } if task.key.name() == "c" => Some(*id),
            _ => None,
        })
        .expect("c runs once a and b are in memory");
    // An id out of range, too.
    s.handle(Event::TaskFinishedById { worker: WorkerId(0), id: u32::MAX, key: "c".into(), nbytes: 8, duration: 0.01 });
    s.check_invariants().unwrap();
    assert_eq!(s.task_state(&"c".into()), Some(TaskStateName::Memory));
    // A stale id of a forgotten task is answered with a release, as a key would be.
    s.handle(Event::ReleaseKeys { client: C, keys: vec!["c".into()] });
    assert_eq!(s.n_tasks(), 0);
    s.take_commands();
    s.handle(Event::TaskFinishedById { worker: WorkerId(0), id: c, key: "c".into(), nbytes: 8, duration: 0.01 });
    assert!(s.take_commands().iter().any(|cmd| matches!(cmd, Command::Release { key, .. } if key.name() == "c")));
    assert_eq!(s.n_tasks(), 0);
}

// ------------------------------------------------- intake with input indices

/// The graph as the local client submits it: tasks with their inputs by
/// position, keys outside the graph counted as held.
fn indexed(tasks: &[Arc<Task>]) -> (Vec<Arc<Task>>, rask_core::graph::GraphInputs) {
    let mut g = rask_core::Graph::new();
    for t in tasks {
        g.insert(t.clone()).unwrap();
    }
    let inputs = g.inputs(|_| true).unwrap();
    (g.tasks().to_vec(), inputs)
}

fn submit_indexed(s: &mut SchedulerState, client: ClientId, tasks: &[Arc<Task>], wanted: &[&str]) {
    let (tasks, inputs) = indexed(tasks);
    let wanted = wanted.iter().map(|k| Key::from(*k)).collect();
    s.handle(Event::UpdateGraphIndexed { client, tasks, inputs, wanted });
    s.check_invariants().unwrap();
}

fn rejection(s: &mut SchedulerState) -> String {
    match &s.take_commands()[..] {
        [Command::KeyErred { error, .. }, ..] => {
            assert_eq!(error.kind, ErrorKind::InvalidGraph);
            error.to_string()
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn indexed_intake_runs_a_graph_like_keyed_intake() {
    let mut s = with_workers(1, 2);
    // Dependents before their inputs, as the client collects them.
    submit_indexed(
        &mut s,
        C,
        &[task("add", &["inc-1", "inc-2", "inc-1"]), task("inc-1", &[]), task("inc-2", &[])],
        &["add"],
    );
    let mut ran: Vec<String> = executes(&s.take_commands()).into_iter().map(|(k, _)| k).collect();
    ran.sort();
    assert_eq!(ran, ["inc-1", "inc-2"]);
    finish(&mut s, "inc-1", 0);
    assert_eq!(executes(&finish(&mut s, "inc-2", 0)), [("add".to_string(), WorkerId(0))]);
    let cmds = finish(&mut s, "add", 0);
    assert!(cmds.iter().any(|c| matches!(c, Command::KeyInMemory { key, .. } if key.name() == "add")));
    assert_eq!(cmds.iter().filter(|c| matches!(c, Command::Release { .. })).count(), 2, "{cmds:?}");
    s.handle(Event::ReleaseKeys { client: C, keys: vec!["add".into()] });
    assert_eq!(s.n_tasks(), 0);
}

/// Inputs held from an earlier graph are found by key; keys of the new graph
/// that are already known are shared, not defined twice.
#[test]
fn indexed_intake_uses_keys_held_from_earlier_graphs() {
    let mut s = with_workers(1, 1);
    submit_indexed(&mut s, C, &[task("p", &[]), task("r", &[])], &["p", "r"]);
    s.take_commands();
    finish(&mut s, "p", 0);
    finish(&mut s, "r", 0);
    // `p` is held (not in the graph); `r` is in the graph again, already in memory.
    submit_indexed(&mut s, C, &[task("q", &["p", "r", "p"]), task("r", &[])], &["q"]);
    assert_eq!(executes(&s.take_commands()), [("q".to_string(), WorkerId(0))]);
    let cmds = finish(&mut s, "q", 0);
    assert!(cmds.iter().any(|c| matches!(c, Command::KeyInMemory { key, .. } if key.name() == "q")));
    assert_eq!(s.task_state(&"p".into()), Some(TaskStateName::Memory), "the client still wants p");
    s.handle(Event::ReleaseKeys { client: C, keys: vec!["p".into(), "q".into(), "r".into()] });
    assert_eq!(s.n_tasks(), 0);
}

/// Every refusal names the problem and leaves the state as it was, with ids
/// recycled from forgotten tasks given back too.
#[test]
fn indexed_intake_refuses_bad_graphs_and_keeps_the_state() {
    use rask_core::graph::GraphInputs;
    let mut s = with_workers(1, 1);
    submit_indexed(&mut s, C, &[task("old", &[])], &["old"]);
    s.take_commands();
    finish(&mut s, "old", 0);
    s.handle(Event::ReleaseKeys { client: C, keys: vec!["old".into()] });
    submit_indexed(&mut s, C, &[task("live", &[])], &["live"]);
    s.take_commands();
    let check = |s: &mut SchedulerState, msg: &str, expect: &[&str]| {
        for e in expect {
            assert!(msg.contains(e), "{msg:?} should mention {e:?}");
        }
        s.check_invariants().unwrap();
        assert_eq!(s.n_tasks(), 1, "only the live task is known");
        assert!(!s.contains_key(&"a".into()));
    };

    // A missing input.
    submit_indexed(&mut s, C, &[task("a", &["live"]), task("b", &["a", "ghost"])], &["b"]);
    let msg = rejection(&mut s);
    check(&mut s, &msg, &["b", "ghost"]);

    // A cycle.
    submit_indexed(&mut s, C, &[task("a", &["c"]), task("b", &["a"]), task("c", &["b", "live"])], &["b"]);
    let msg = rejection(&mut s);
    check(&mut s, &msg, &["cycle", "a", "b", "c"]);

    // An output the graph does not have.
    submit_indexed(&mut s, C, &[task("a", &["live"])], &["zz"]);
    let msg = rejection(&mut s);
    check(&mut s, &msg, &["zz"]);

    // A key defined twice (a remote or buggy sender; `Graph` refuses it).
    let tasks = vec![task("a", &[]), task("b", &["a"]), task("a", &[])];
    let mut inputs = GraphInputs::with_capacity(3, 1);
    inputs.end_task();
    inputs.push_dep(0);
    inputs.end_task();
    inputs.end_task();
    s.handle(Event::UpdateGraphIndexed { client: C, tasks, inputs, wanted: vec!["b".into()] });
    let msg = rejection(&mut s);
    check(&mut s, &msg, &["a", "twice"]);

    // Indices that do not fit the graph.
    let tasks = vec![task("a", &[]), task("b", &["a"])];
    let mut inputs = GraphInputs::with_capacity(2, 1);
    inputs.end_task();
    inputs.push_dep(5);
    inputs.end_task();
    s.handle(Event::UpdateGraphIndexed { client: C, tasks: tasks.clone(), inputs, wanted: vec!["b".into()] });
    let msg = rejection(&mut s);
    check(&mut s, &msg, &["indices"]);
    s.handle(Event::UpdateGraphIndexed {
        client: C,
        tasks: tasks.clone(),
        inputs: GraphInputs::default(),
        wanted: vec!["b".into()],
    });
    let msg = rejection(&mut s);
    check(&mut s, &msg, &["indices"]);

    // A held input that is in the graph after all: its edge would escape
    // the cycle check.
    let mut inputs = GraphInputs::with_capacity(2, 0);
    inputs.push_held("b".into());
    inputs.end_task();
    inputs.push_dep(0);
    inputs.end_task();
    s.handle(Event::UpdateGraphIndexed { client: C, tasks, inputs, wanted: vec!["b".into()] });
    let msg = rejection(&mut s);
    check(&mut s, &msg, &["b", "held"]);

    // The same keys are welcome in a valid graph afterwards.
    submit_indexed(&mut s, C, &[task("b", &["a"]), task("a", &["live"]), task("live", &[])], &["b"]);
    assert_eq!(s.n_tasks(), 3);
    assert!(executes(&s.take_commands()).is_empty(), "live is running already");
    assert_eq!(executes(&finish(&mut s, "live", 0)), [("a".to_string(), WorkerId(0))]);
    assert_eq!(executes(&finish(&mut s, "a", 0)), [("b".to_string(), WorkerId(0))]);
    finish(&mut s, "b", 0);
    s.handle(Event::ReleaseKeys { client: C, keys: vec!["b".into(), "live".into()] });
    assert_eq!(s.n_tasks(), 0);
}

/// Runs the state machine with one worker until nothing is left to run,
/// finishing tasks in the order they were handed out.
fn run_to_end(s: &mut SchedulerState, ran: &mut Vec<(String, Priority)>) {
    let mut pending = std::collections::VecDeque::new();
    loop {
        for c in s.take_commands() {
            if let Command::Execute { task, priority, .. } = c {
                pending.push_back((task.key.clone(), priority));
            }
        }
        let Some((key, priority)) = pending.pop_front() else { break };
        ran.push((key.to_string(), priority));
        s.handle(Event::TaskFinished { worker: WorkerId(0), key, nbytes: 8, duration: 0.001 });
        s.check_invariants().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Indexed and keyed intake decide alike: the same tasks run in the same
    /// order, for graphs in any task order, using
    /// keys persisted by an earlier graph and repeating some of them.
    #[test]
    fn indexed_intake_decides_like_keyed_intake(
        (deps, order) in random_dag().prop_flat_map(|deps| {
            let n = deps.len();
            (Just(deps), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        })
    ) {
        let (tasks, wanted) = dag_tasks(&deps);
        let n = tasks.len();
        // The first half is persisted by a first graph; the second graph
        // reads it as held keys and repeats the last persisted task.
        let split = n / 2;
        let first: Vec<Arc<Task>> = tasks[..split].to_vec();
        let first_wanted: Vec<Key> = first.iter().map(|t| t.key.clone()).collect();
        let second: Vec<Arc<Task>> =
            order.iter().filter(|&&i| i >= split || i + 1 == split).map(|&i| tasks[i].clone()).collect();
        let second_wanted: Vec<Key> = wanted.into_iter().filter(|k| second.iter().any(|t| t.key == *k)).collect();
        let mut runs = Vec::new();
        for use_indices in [false, true] {
            let mut s = with_workers(1, 2);
            let mut ran = Vec::new();
            for (graph, wanted) in [(&first, &first_wanted), (&second, &second_wanted)] {
                if use_indices {
                    let (tasks, inputs) = indexed(graph);
                    s.handle(Event::UpdateGraphIndexed { client: C, tasks, inputs, wanted: wanted.clone() });
                } else {
                    s.handle(Event::UpdateGraph { client: C, tasks: graph.clone(), wanted: wanted.clone() });
                }
                s.check_invariants().unwrap();
                run_to_end(&mut s, &mut ran);
                for k in wanted.iter() {
                    prop_assert_eq!(s.task_state(k), Some(TaskStateName::Memory), "{} is not in memory", k);
                }
            }
            let mut counts = std::collections::HashMap::new();
            for (k, _) in &ran {
                *counts.entry(k.clone()).or_insert(0) += 1;
            }
            prop_assert!(counts.values().all(|&c| c == 1), "a task ran twice: {:?}", counts);
            let all: Vec<Key> = first_wanted.iter().chain(&second_wanted).cloned().collect();
            s.handle(Event::ReleaseKeys { client: C, keys: all });
            prop_assert_eq!(s.n_tasks(), 0);
            // Priorities may number a repeated (shared) task in one and not
            // the other: the order they give is what must agree.
            runs.push(ran.into_iter().map(|(k, _)| k).collect::<Vec<_>>());
        }
        prop_assert_eq!(&runs[0], &runs[1]);
    }
}

fn python_task(key: &str, deps: &[&str]) -> Arc<Task> {
    Arc::new(Task::new(
        key.into(),
        rask_core::capability::PYTHON_CALL,
        Params::default(),
        deps.iter().map(|d| Arg::Key((*d).into())).collect(),
    ))
}

fn add_worker(s: &mut SchedulerState, w: u64, threads: usize, capabilities: Capabilities) {
    s.handle(Event::WorkerAdded {
        worker: WorkerId(w),
        name: format!("w{w}"),
        nthreads: threads,
        memory_limit: 0,
        capabilities,
    });
}

#[test]
fn python_tasks_go_only_to_python_workers_and_builtins_anywhere() {
    let mut s = SchedulerState::new(SchedulerConfig::default());
    add_worker(&mut s, 0, 4, Capabilities::NONE);
    add_worker(&mut s, 1, 1, Capabilities::PYTHON);
    // Python roots, built-in roots, and Python tasks on built-in inputs.
    let mut tasks = Vec::new();
    let mut wanted = Vec::new();
    for i in 0..20 {
        tasks.push(python_task(&format!("py-{i}"), &[]));
        tasks.push(task(&format!("lit-{i}"), &[]));
        tasks.push(python_task(&format!("use-{i}"), &[&format!("lit-{i}")]));
        wanted.push(Key::from(format!("py-{i}").as_str()));
        wanted.push(Key::from(format!("use-{i}").as_str()));
    }
    s.handle(Event::UpdateGraph { client: C, tasks, wanted });
    let mut ran_on_plain = 0;
    let mut pending = executes(&s.take_commands());
    let mut steps = 0;
    while let Some((key, w)) = pending.pop() {
        steps += 1;
        assert!(steps < 1000, "the graph does not finish");
        if key.starts_with("py-") || key.starts_with("use-") {
            assert_eq!(w, WorkerId(1), "{key} is a Python task but ran on a plain worker");
        } else {
            ran_on_plain += usize::from(w == WorkerId(0));
        }
        pending.extend(executes(&finish(&mut s, &key, w.0)));
        // Stealing must not move Python tasks to the plain worker either.
        s.check_invariants().unwrap();
    }
    assert!(ran_on_plain > 0, "built-in tasks should use the plain worker too");
    assert_eq!(s.snapshot().completed_total, 60);
}

#[test]
fn python_task_without_python_worker_errs_with_how_to_start_one() {
    let mut s = with_workers(1, 2);
    s.handle(Event::UpdateGraph { client: C, tasks: vec![python_task("py-1", &[])], wanted: vec!["py-1".into()] });
    let cmds = s.take_commands();
    let error = cmds
        .iter()
        .find_map(|c| match c {
            Command::KeyErred { key, error, .. } if key.to_string() == "py-1" => Some(error.clone()),
            _ => None,
        })
        .expect("the client hears about the Python task at once");
    assert!(error.message.contains("python -m rask worker"), "{}", error.message);
    assert!(executes(&cmds).is_empty());

    // With no worker at all, Python tasks wait like every task; when the
    // last Python worker leaves, the queued ones err instead of hanging.
    let mut s = SchedulerState::new(SchedulerConfig::default());
    s.handle(Event::UpdateGraph {
        client: C,
        tasks: (0..5).map(|i| python_task(&format!("p-{i}"), &[])).collect(),
        wanted: (0..5).map(|i| Key::from(format!("p-{i}").as_str())).collect(),
    });
    assert!(s.take_commands().is_empty());
    add_worker(&mut s, 0, 1, Capabilities::NONE);
    add_worker(&mut s, 1, 1, Capabilities::PYTHON);
    let ran = executes(&s.take_commands());
    assert!(!ran.is_empty() && ran.iter().all(|(_, w)| *w == WorkerId(1)), "{ran:?}");
    s.handle(Event::WorkerRemoved { worker: WorkerId(1) });
    let erred = s.take_commands().iter().filter(|c| matches!(c, Command::KeyErred { .. })).count();
    assert_eq!(erred, 5);
    s.check_invariants().unwrap();
}
