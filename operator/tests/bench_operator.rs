//! The operator benchmark (run by bench/operator.sh, ignored by `cargo test`):
//! on the real control plane of support/, the time from `kubectl apply`
//! until every child exists (scheduler Deployment and Service, worker pods)
//! for 1 and for 100 DaskClusters, and the resident memory of the
//! `rask operator` process while it manages the 100. Prints one JSON object
//! per figure; timings are reported, never asserted.
//!
//! With each timing comes its breakdown: how long the `kubectl apply` itself
//! took (one process for the whole manifest, as a user types it), the API
//! requests the API server answered meanwhile and in the 10 s after (by
//! verb and resource, from its own `apiserver_request_total`), and the
//! operator's reconciles.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
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

/// Sums of the samples of `metric` in a Prometheus text exposition, by the
/// values of `labels` (joined with a space).
fn counters(text: &str, metric: &str, labels: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric).and_then(|r| r.strip_prefix('{')) else { continue };
        let Some((label_text, value)) = rest.rsplit_once("} ") else { continue };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        let label = |name: &str| {
            label_text
                .split("\",")
                .filter_map(|kv| kv.split_once("=\""))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let key = labels.iter().map(|l| label(l)).filter(|v| !v.is_empty()).collect::<Vec<_>>().join(" ");
        *out.entry(key).or_default() += value;
    }
    out
}

/// What grew between two readings of the same counters.
fn growth(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), (v - before.get(k).copied().unwrap_or(0.0)).round() as u64))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The API server's requests so far, by verb, resource and subresource.
fn api_requests(env: &TestEnv) -> BTreeMap<String, f64> {
    let out = env.cp.kubectl(None, &["get", "--raw", "/metrics"]);
    assert!(out.ok, "{}", out.stderr);
    counters(&out.stdout, "apiserver_request_total", &["verb", "resource", "subresource"])
}

/// The operator's reconciles so far, by controller.
fn reconciles(metrics_addr: &str) -> BTreeMap<String, f64> {
    let (code, body) = rask_tests::processes::http(metrics_addr, "GET", "/metrics", None, &[]);
    assert_eq!(code, 200, "{body}");
    counters(&body, "rask_operator_reconciles_total", &["controller"])
}

/// `kubectl apply [flags] -f -` of `yaml` in the test's namespace: one
/// process for the whole manifest, as a user runs it.
fn apply(env: &TestEnv, yaml: &str, flags: &[&str]) -> support::Output {
    let args: Vec<&str> = ["apply"].iter().chain(flags).chain(&["-f", "-"]).copied().collect();
    env.cp.kubectl_stdin(Some(&env.ns), &args, Some(yaml))
}

/// Seconds from the start of `kubectl apply [flags]` until `n` clusters'
/// children all exist, and the seconds the apply itself took.
async fn apply_and_wait(env: &TestEnv, prefix: &str, n: usize, flags: &[&str]) -> (f64, f64) {
    let deployments: Api<Deployment> = env.api();
    let services: Api<Service> = env.api();
    let pods: Api<Pod> = env.api();
    let count_prefixed = |names: Vec<String>| names.iter().filter(|name| name.starts_with(prefix)).count();
    let yaml = clusters_yaml(prefix, n);
    let start = Instant::now();
    let out = apply(env, &yaml, flags);
    let applied = start.elapsed().as_secs_f64();
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
            return (start.elapsed().as_secs_f64(), applied);
        }
        assert!(start.elapsed() < Duration::from_secs(300), "children of {n} clusters not made: {d} {s} {p}");
        tokio::time::sleep(pause).await;
    }
}

/// One timed apply with its breakdown, printed as JSON.
async fn measure(env: &TestEnv, metrics_addr: &str, prefix: &str, n: usize, flags: &[&str]) {
    let (requests0, reconciles0) = (api_requests(env), reconciles(metrics_addr));
    let (seconds, apply_seconds) = apply_and_wait(env, prefix, n, flags).await;
    let (requests1, reconciles1) = (api_requests(env), reconciles(metrics_addr));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (requests2, reconciles2) = (api_requests(env), reconciles(metrics_addr));
    println!(
        "{}",
        serde_json::json!({
            "bench": "operator_apply_to_children", "clusters": n, "kubectl_flags": flags, "seconds": seconds,
            "kubectl_apply_seconds": apply_seconds,
            "requests_until_children": growth(&requests0, &requests1),
            "requests_next_10s": growth(&requests1, &requests2),
            "reconciles_until_children": growth(&reconciles0, &reconciles1),
            "reconciles_next_10s": growth(&reconciles1, &reconciles2),
        })
    );
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

#[test]
fn counters_sum_by_the_chosen_labels() {
    let text = "# HELP x\napiserver_request_total{code=\"201\",resource=\"pods\",subresource=\"\",verb=\"POST\"} 3\n\
                apiserver_request_total{code=\"409\",resource=\"pods\",subresource=\"\",verb=\"POST\"} 2\n\
                apiserver_request_total{code=\"200\",resource=\"daskclusters\",subresource=\"status\",verb=\"APPLY\"} 1\n\
                apiserver_request_totally_other{verb=\"GET\"} 9\n";
    let c = counters(text, "apiserver_request_total", &["verb", "resource", "subresource"]);
    assert_eq!(c.get("POST pods"), Some(&5.0));
    assert_eq!(c.get("APPLY daskclusters status"), Some(&1.0));
    assert_eq!(c.len(), 2);
    let later = BTreeMap::from([("POST pods".to_string(), 7.0), ("APPLY daskclusters status".to_string(), 1.0)]);
    assert_eq!(growth(&c, &later), BTreeMap::from([("POST pods".to_string(), 2)]));
}

/// The floor under the timings: the same `kubectl apply` of 100
/// DaskClusters into a namespace no operator watches, as a user types it
/// (client-side: a GET and a POST per object), with `--server-side` (one
/// PATCH per object), and with `--validate=false`. kubectl re-reads the
/// group's OpenAPI v3 document for every object it validates
/// (kubernetes/kubernetes#127095), and rask.dev's embeds pod templates.
async fn kubectl_alone() {
    let alone = TestEnv::new("bench-kubectl").await;
    let mut seconds = BTreeMap::new();
    for (label, flags) in
        [("client_side", &[][..]), ("server_side", &["--server-side"]), ("validate_false", &["--validate=false"])]
    {
        let yaml = clusters_yaml(&format!("{}-", label.replace('_', "-")), 100);
        let start = Instant::now();
        let out = apply(&alone, &yaml, flags);
        assert!(out.ok, "{}", out.stderr);
        seconds.insert(label, start.elapsed().as_secs_f64());
    }
    println!("{}", serde_json::json!({"bench": "kubectl_apply_without_operator", "clusters": 100, "seconds": seconds}));
    let out = alone.kubectl(&["delete", "daskclusters", "--all", "--wait=false"]);
    assert!(out.ok, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with bench/operator.sh"]
async fn operator_benchmark() {
    kubectl_alone().await;
    let env = TestEnv::new("bench").await;
    let mut operator = env.start_operator_process("bench", &["--no-leader-election"]);
    let line = operator.wait_for_line("rask operator metrics at", Duration::from_secs(5));
    let metrics_addr = line.split("metrics at http://").nth(1).and_then(|s| s.split('/').next()).unwrap().to_string();
    let pid = operator.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(pid, "VmRSS:");

    measure(&env, &metrics_addr, "one", 1, &[]).await;
    measure(&env, &metrics_addr, "many", 100, &[]).await;
    // The status writes and requeues settled during the breakdown's 10 s.
    let mib = |field| rss_kib(pid, field) as f64 / 1024.0;
    println!(
        "{}",
        serde_json::json!({"bench": "operator_rss", "clusters": 101, "idle_mib": idle_rss as f64 / 1024.0,
            "rss_mib": mib("VmRSS:"), "anon_mib": mib("RssAnon:"), "file_mib": mib("RssFile:"), "peak_mib": mib("VmHWM:")})
    );
    // The operator's share without kubectl's per-object OpenAPI parsing.
    measure(&env, &metrics_addr, "fast", 100, &["--validate=false"]).await;
    drop(operator);
}
