//! The observability pack against real data: promtool checks and unit-tests
//! the alert rules; a real Prometheus scrapes a live `rask scheduler`, two
//! `rask worker`s running a workload, and a `rask operator` process
//! reconciling a DaskCluster on the real kube-apiserver; then every query of
//! every dashboard panel (and template variable) must return data, and every
//! metric an alert rule reads must exist. A renamed metric breaks this.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use rask::Client;
use rask_array::{Array, Chunks};
use rask_tests::processes::{Scheduler, WorkerKind, start_worker};
use serde_json::Value;
use support::pack::{Prometheus, chart_dir, query};
use support::{TestEnv, eventually};

const WAIT: Duration = Duration::from_secs(60);

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(chart_dir().join("rules"))
        .output()
        .expect("promtool (Debian's prometheus package; scripts/setup.sh installs it)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

const ALERTS: [&str; 5] = [
    "RaskWorkersBelowDesired",
    "RaskQueueGrowingAtMaxWorkers",
    "RaskTasksErring",
    "RaskOperatorReconcileErrors",
    "RaskSchedulerDown",
];

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "rask-alerts.yaml"]);
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("5 rules found"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "rask-alerts.test.yaml"]);
    assert!(ok, "promtool test rules:\n{out}");
    // A unit test for each alert: every alert is named in the tests, and each
    // is expected to fire at least once.
    let tests: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("rules/rask-alerts.test.yaml")).unwrap())
            .unwrap();
    for alert in ALERTS {
        let fires = tests["tests"].as_array().unwrap().iter().any(|t| {
            t["alert_rule_test"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["alertname"] == alert && c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        });
        assert!(fires, "no promtool unit test makes {alert} fire");
    }
    let rules = rule_exprs();
    let names: Vec<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ALERTS, "the alerts of rask-alerts.yaml");
}

/// (alert, expr) of every rule in the rules file.
fn rule_exprs() -> Vec<(String, String)> {
    let rules: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("rules/rask-alerts.yaml")).unwrap()).unwrap();
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| (r["alert"].as_str().unwrap().to_string(), r["expr"].as_str().unwrap().to_string()))
        .collect()
}

/// (dashboard title, panel title or variable name, query).
type Query = (String, String, String);

/// Every (dashboard title, panel title, expr) of the checked-in dashboards,
/// and their template variables' queries.
fn dashboard_queries() -> (Vec<Query>, Vec<Query>) {
    let mut panels = Vec::new();
    let mut variables = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(chart_dir().join("dashboards")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 2, "the cluster overview and operator dashboards");
    for file in files {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let title = d["title"].as_str().unwrap().to_string();
        for p in d["panels"].as_array().unwrap() {
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{title} / {}: no queries", p["title"]);
            for t in targets {
                panels.push((
                    title.clone(),
                    p["title"].as_str().unwrap().to_string(),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                let q = v["query"]["query"].as_str().unwrap().to_string();
                variables.push((title.clone(), v["name"].as_str().unwrap().to_string(), q));
            }
        }
    }
    (panels, variables)
}

/// Grafana's `label_values(selector, label)` as PromQL.
fn label_values_query(q: &str) -> String {
    let inner = q.strip_prefix("label_values(").and_then(|s| s.strip_suffix(')')).expect("label_values(...)");
    let (selector, label) = inner.rsplit_once(',').expect("label_values(selector, label)");
    format!("count by ({}) ({})", label.trim(), selector.trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_and_alert_metric_has_real_data() {
    // The operator against the real API server, reconciling one DaskCluster.
    let env = TestEnv::new("observability").await;
    let (scheduler, mut workers) = tokio::task::spawn_blocking(|| {
        let s = Scheduler::start(&[]);
        let workers: Vec<_> = (0..2)
            .map(|i| start_worker(WorkerKind::Rask, &s.address, &format!("w{i}"), 2, &["--memory-limit", "512MiB"]))
            .collect();
        s.wait_for_workers(2, WAIT);
        (s, workers)
    })
    .await
    .unwrap();
    let mut operator = env.start_operator_process("op-observability", &["--scheduler-url-annotation"]);
    let operator_line = operator.wait_for_line("rask operator metrics at", WAIT);
    let operator_addr =
        operator_line.split("http://").nth(1).and_then(|s| s.split('/').next()).expect("metrics address").to_string();
    let cluster = format!(
        "apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: my\n  annotations: {{rask.dev/scheduler-http-url: \"http://{}\"}}\nspec:\n  worker:\n    replicas: 2\n",
        scheduler.http
    );
    assert!(env.apply(&cluster).ok);

    // Prometheus with the labels the chart's PodMonitor/ServiceMonitor
    // relabelings give: job, namespace, cluster, pod.
    let ns = env.ns.clone();
    let mut scrape = format!(
        "  - job_name: rask-scheduler\n    static_configs:\n      - targets: ['{}']\n        labels: {{namespace: {ns}, cluster: my, pod: my-scheduler-0}}\n",
        scheduler.http
    );
    scrape.push_str("  - job_name: rask-worker\n    static_configs:\n");
    for w in &mut workers {
        let line = w.wait_for_line("metrics at http://", WAIT);
        let addr = line.split("metrics at http://").nth(1).and_then(|s| s.split('/').next()).unwrap().to_string();
        scrape.push_str(&format!(
            "      - targets: ['{addr}']\n        labels: {{namespace: {ns}, cluster: my, pod: {}}}\n",
            w.name
        ));
    }
    scrape.push_str(&format!(
        "  - job_name: rask-operator\n    static_configs:\n      - targets: ['{operator_addr}']\n        labels: {{namespace: {ns}, pod: rask-operator-0}}\n"
    ));
    let prometheus = tokio::task::spawn_blocking(move || Prometheus::start("dashboards", &scrape)).await.unwrap();

    // A workload while Prometheus scrapes: chunks move between the workers
    // for the transpose; task durations land in the histogram.
    let address = scheduler.address.clone();
    tokio::task::spawn_blocking(move || {
        let client = Client::connect(&address).expect("connect");
        for seed in 0..4 {
            let x = Array::random_uniform(&[1200, 1200], seed, Chunks::Uniform(vec![300, 300])).unwrap();
            let y = x.add(&x.t()).unwrap().sum_axis(0).unwrap();
            y.compute_with(&client).expect("workload");
            std::thread::sleep(Duration::from_millis(700));
        }
    })
    .await
    .unwrap();

    // Every target up, and a few more scrapes so rates have two samples.
    let addr = prometheus.addr.clone();
    let p = addr.clone();
    let ok = eventually(WAIT, || {
        let p = p.clone();
        async move {
            tokio::task::spawn_blocking(move || query(&p, "sum(up)").ok().and_then(|r| r.first().cloned()))
                .await
                .unwrap()
                .is_some_and(|r| r["value"][1] == "4")
        }
    })
    .await;
    assert!(ok, "not every target is up: {:?}", prometheus.query("up"));
    tokio::time::sleep(Duration::from_secs(4)).await;

    let ns2 = env.ns.clone();
    let p = addr.clone();
    let failures = tokio::task::spawn_blocking(move || {
        let substitute = |expr: &str| {
            expr.replace("$namespace", &ns2)
                .replace("$cluster", "my")
                .replace("$__rate_interval", "20s")
                .replace("$__range", "5m")
        };
        let mut failures = Vec::new();
        let (panels, variables) = dashboard_queries();
        assert!(panels.len() >= 20, "only {} panel queries", panels.len());
        for (dashboard, panel, expr) in &panels {
            let q = substitute(expr);
            match query(&p, &q) {
                Ok(r) if !r.is_empty() => {}
                Ok(_) => failures.push(format!("dashboard {dashboard:?}, panel {panel:?}: no data for {q}")),
                Err(e) => failures.push(format!("dashboard {dashboard:?}, panel {panel:?}: {e} in {q}")),
            }
        }
        for (dashboard, variable, variable_query) in &variables {
            let q = substitute(&label_values_query(variable_query));
            match query(&p, &q) {
                Ok(r) if !r.is_empty() => {}
                other => failures.push(format!("dashboard {dashboard:?}, variable ${variable}: {other:?} for {q}")),
            }
        }
        // The alerts: every metric each rule reads exists (the expressions
        // themselves are evaluated by promtool's unit tests).
        for (alert, expr) in rule_exprs() {
            let mut names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("rask_") || *w == "up")
                .collect();
            names.dedup();
            assert!(!names.is_empty(), "{alert}: no metric found in {expr}");
            for name in names {
                let q = if name == "up" {
                    "up{job=\"rask-scheduler\"}".to_string()
                } else {
                    format!("{{__name__=\"{name}\"}}")
                };
                if query(&p, &q).map(|r| r.is_empty()).unwrap_or(true) {
                    failures.push(format!("alert {alert}: metric {name} has no data"));
                }
            }
        }
        // The check can fail: a misspelled metric has no data.
        assert!(query(&p, "sum(rask_scheduler_queue_depthx)").unwrap().is_empty());
        failures
    })
    .await
    .unwrap();
    assert!(
        failures.is_empty(),
        "{} queries without data:\n{}\n(operator output:\n{})",
        failures.len(),
        failures.join("\n"),
        operator.output()
    );
    drop(workers);
    drop(scheduler);
}
