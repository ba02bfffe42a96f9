//! The operator benchmark (run by bench/operator.sh, ignored by `cargo test`):
//! on the real control plane of support/, the time from `kubectl apply`
//! until every child exists (scheduler Deployment and Service, worker pods)
//! for 1 and for 100 DaskClusters, and the resident memory of the
//! `rask operator` process while it manages the 100. Prints one JSON object
//! per figure; timings are reported, never asserted.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;
use support::TestEnv;

const WORKERS: usize = 2;

fn clusters_yaml(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: {prefix}{i}\nspec:\n  worker:\n    replicas: {WORKERS}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Seconds from the start of `kubectl apply` until `n` clusters' children all exist.
async fn apply_and_wait(env: &TestEnv, prefix: &str, n: usize) -> f64 {
    let deployments: Api<Deployment> = env.api();
    let services: Api<Service> = env.api();
    let pods: Api<Pod> = env.api();
    let count_prefixed = |names: Vec<String>| names.iter().filter(|name| name.starts_with(prefix)).count();
    let yaml = clusters_yaml(prefix, n);
    let start = Instant::now();
    let out = env.apply(&yaml);
    assert!(out.ok, "{}", out.stderr);
    // Metadata-only lists, not too often: the poll must not load the API
    // server that the operator is being measured against.
    let pause = Duration::from_millis(if n == 1 { 10 } else { 50 });
    loop {
        let lp = ListParams::default();
        let d = count_prefixed(names(deployments.list_metadata(&lp).await.expect("list")));
        let s = count_prefixed(names(services.list_metadata(&lp).await.expect("list")));
        let p = count_prefixed(names(pods.list_metadata(&lp).await.expect("list")));
        if d == n && s == n && p == n * WORKERS {
            return start.elapsed().as_secs_f64();
        }
        assert!(start.elapsed() < Duration::from_secs(300), "children of {n} clusters not made: {d} {s} {p}");
        tokio::time::sleep(pause).await;
    }
}

fn names<K: Clone>(list: kube::core::ObjectList<kube::core::PartialObjectMeta<K>>) -> Vec<String> {
    list.items.into_iter().filter_map(|o| o.metadata.name).collect()
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with bench/operator.sh"]
async fn operator_benchmark() {
    let env = TestEnv::new("bench").await;
    let operator = env.start_operator_process("bench", &["--no-leader-election"]);
    let pid = operator.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(pid, "VmRSS:");

    let one = apply_and_wait(&env, "one", 1).await;
    println!("{}", serde_json::json!({"bench": "operator_apply_to_children", "clusters": 1, "seconds": one}));
    let hundred = apply_and_wait(&env, "many", 100).await;
    println!("{}", serde_json::json!({"bench": "operator_apply_to_children", "clusters": 100, "seconds": hundred}));
    // Let the status writes and requeues settle, then read the memory.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mib = |field| rss_kib(pid, field) as f64 / 1024.0;
    println!(
        "{}",
        serde_json::json!({"bench": "operator_rss", "clusters": 101, "idle_mib": idle_rss as f64 / 1024.0,
            "rss_mib": mib("VmRSS:"), "anon_mib": mib("RssAnon:"), "file_mib": mib("RssFile:"), "peak_mib": mib("VmHWM:")})
    );
    drop(operator);
}
