//! The local cluster under change: workers joining, dying and retiring
//! mid-computation, persisted data, releases, and results that do not depend
//! on how many workers or threads there are.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rask::{Client, Delayed, LocalCluster, delayed, local, op};
use rask_tests::eventually;

op! {
    fn slow_square(x: i64) -> i64 {
        std::thread::sleep(Duration::from_millis(20));
        x * x
    }
}

op! {
    fn add(x: i64, y: i64) -> i64 { x + y }
}

op! {
    fn combine(xs: Vec<i64>) -> i64 {
        xs.iter().fold(17i64, |acc, x| acc.wrapping_mul(31).wrapping_add(*x))
    }
}

fn tree_sum(leaves: &[Delayed<i64>]) -> Delayed<i64> {
    let mut level: Vec<Delayed<i64>> = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| if pair.len() == 2 { delayed!(add(&pair[0], &pair[1])) } else { pair[0].clone() })
            .collect();
    }
    level.pop().expect("at least one leaf")
}

#[test]
fn a_worker_joining_mid_computation_takes_work() {
    let cluster = LocalCluster::new(1, 1).unwrap();
    let client = Client::without_default(&cluster);
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let s = seen.clone();
    let which = local("which", move |x: i64| {
        s.lock().unwrap().insert(std::thread::current().name().unwrap_or("?").to_string());
        std::thread::sleep(Duration::from_millis(10));
        x
    });
    let leaves: Vec<Delayed<i64>> = (0..60).map(|i| which.call((i,))).collect();
    let future = client.compute(&tree_sum(&leaves));
    std::thread::sleep(Duration::from_millis(50));
    cluster.add_worker(2).unwrap();
    assert_eq!(future.result().unwrap(), (0..60).sum::<i64>());
    let threads = seen.lock().unwrap().clone();
    assert!(threads.iter().any(|t| t.starts_with("local-worker-1")), "the new worker ran nothing: {threads:?}");
}

#[test]
fn killing_workers_mid_computation_loses_nothing() {
    for round in 0..3 {
        let cluster = LocalCluster::new(3, 2).unwrap();
        let client = Client::without_default(&cluster);
        let leaves: Vec<Delayed<i64>> = (0..40).map(|i| delayed!(slow_square(i))).collect();
        let future = client.compute(&tree_sum(&leaves));
        std::thread::sleep(Duration::from_millis(60 + 20 * round));
        let victim = cluster.workers()[round as usize % 3].id;
        cluster.kill_worker(victim).unwrap();
        cluster.add_worker(2).unwrap();
        assert_eq!(future.result().unwrap(), (0..40).map(|i| i * i).sum::<i64>(), "round {round}");
    }
}

#[test]
fn persisted_values_are_reused_and_survive_retirement() {
    let cluster = LocalCluster::new(2, 1).unwrap();
    let client = Client::without_default(&cluster);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    let expensive = local("expensive", move |x: i64| {
        c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        x * 100
    });
    let base = client.persist(&expensive.call((3i64,)));
    assert_eq!(client.compute(&(&base + 1)).result().unwrap(), 301);
    assert_eq!(client.compute(&(&base + 2)).result().unwrap(), 302);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "persisted work runs once");
    // Retire whichever worker holds it: the data moves first.
    let holder = cluster.workers().into_iter().find(|w| w.keys > 0).expect("someone holds the key").id;
    cluster.retire_workers(vec![holder]).unwrap();
    assert_eq!(cluster.workers().len(), 1);
    assert_eq!(client.compute(&(&base + 3)).result().unwrap(), 303);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "nothing was lost on retirement");
}

#[test]
fn dropping_futures_frees_the_cluster() {
    let cluster = LocalCluster::new(2, 2).unwrap();
    let client = Client::without_default(&cluster);
    let leaves: Vec<Delayed<i64>> = (0..100).map(|i| delayed!(add(i, 1))).collect();
    let futures = client.compute_many(&leaves.iter().collect::<Vec<_>>());
    let total: i64 = futures.iter().map(|f| f.result().unwrap()).sum();
    assert_eq!(total, (1..=100).sum::<i64>());
    let held = cluster.workers().iter().map(|w| w.keys).sum::<usize>();
    assert_eq!(held, 100, "results stay while futures exist");
    drop(futures);
    assert!(
        eventually(Duration::from_secs(5), || cluster.workers().iter().all(|w| w.keys == 0 && w.nbytes == 0)),
        "released keys are freed: {:?}",
        cluster.workers()
    );
    let snapshot = cluster.snapshot().unwrap();
    assert!(snapshot.tasks_by_state.iter().all(|(_, n)| *n == 0), "{snapshot:?}");
}

#[test]
fn dropping_the_client_releases_its_keys_and_dropping_the_cluster_stops() {
    let cluster = LocalCluster::new(1, 2).unwrap();
    let client = Client::without_default(&cluster);
    let kept = client.compute(&delayed!(add(1, 2)));
    assert_eq!(kept.result().unwrap(), 3);
    assert_eq!(cluster.workers()[0].keys, 1);
    client.close();
    assert!(eventually(Duration::from_secs(5), || cluster.workers().iter().all(|w| w.keys == 0)));
    let client = Client::without_default(&cluster);
    let pending = client.compute(&delayed!(slow_square(3)));
    drop(cluster);
    // Either it finished before shutdown or it reports the closed cluster.
    match pending.result() {
        Ok(v) => assert_eq!(v, 9),
        Err(e) => assert!(matches!(e, rask::Error::ClusterClosed), "{e}"),
    }
}

/// Random DAGs of `combine` calls: each node combines a few earlier ones.
fn random_dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..40).prop_flat_map(|n| {
        (0..n).map(|i| proptest::collection::vec(0..i.max(1), if i == 0 { 0..1 } else { 0..4 })).collect::<Vec<_>>()
    })
}

fn reference(deps: &[Vec<usize>]) -> Vec<i64> {
    let mut values: Vec<i64> = Vec::new();
    for (i, ds) in deps.iter().enumerate() {
        let inputs: Vec<i64> =
            if ds.is_empty() || i == 0 { vec![i as i64] } else { ds.iter().map(|d| values[*d]).collect() };
        values.push(combine(inputs));
    }
    values
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn results_do_not_depend_on_workers_or_threads(deps in random_dag(), workers in 1usize..4, threads in 1usize..4) {
        let cluster = LocalCluster::new(workers, threads).unwrap();
        let client = Client::without_default(&cluster);
        let mut nodes: Vec<Delayed<i64>> = Vec::new();
        for (i, ds) in deps.iter().enumerate() {
            let node = if ds.is_empty() || i == 0 {
                delayed!(combine(vec![i as i64]))
            } else {
                let inputs: Vec<Delayed<i64>> = ds.iter().map(|d| nodes[*d].clone()).collect();
                delayed!(combine(inputs))
            };
            nodes.push(node);
        }
        let expected = reference(&deps);
        let futures = client.compute_many(&nodes.iter().collect::<Vec<_>>());
        for (f, want) in futures.iter().zip(&expected) {
            prop_assert_eq!(f.result().unwrap(), *want);
        }
        drop(futures);
        prop_assert!(eventually(Duration::from_secs(5), || cluster.workers().iter().all(|w| w.keys == 0)));
    }
}
