//! Autoscaling end to end, on the real kube-apiserver (see support/): the
//! operator, and the test kubelet (support/kubelet.rs) running the
//! operator's pods as local processes: the scheduler Deployment's pod (made
//! by kube-controller-manager's deployment and replicaset controllers) is a
//! real `rask scheduler`, each worker pod a real worker. A client computes
//! through the scheduler pod; the operator scales on the scheduler's
//! adaptive target and back, retiring through the scheduler.
//!
//! `RASK_AUTOSCALING_ROUNDS` sets the number of rounds (default 5);
//! `RASK_AUTOSCALING_TRACE=1` prints the worker count over time.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use rask::{Client, Delayed};
use rask_operator::crd::{DaskCluster, DaskJob, JobPhase};
use rask_tests::ops::{block, checksum, expected_checksum, slow_inc, total};
use support::kubelet::Kubelet;
use support::{TestEnv, eventually};

const WAIT: Duration = Duration::from_secs(60);
const CONTROLLERS: &str = "garbagecollector,namespace,deployment,replicaset,job";

fn trace() -> bool {
    std::env::var_os("RASK_AUTOSCALING_TRACE").is_some()
}

/// A cluster whose workers run `rask-test-worker` (the test ops) with one thread.
fn cluster_yaml(name: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: rask.dev/v1alpha1
kind: DaskCluster
metadata:
  name: {name}
spec:
  worker:
    replicas: 1
    template:
      spec:
        containers:
        - name: worker
          command: [rask-test-worker]
          args: ["--nthreads", "1", "--data-port", "8788", "--http-port", "8789", "--grace-period", "10"]
{extra}"#
    )
}

async fn worker_pods(env: &TestEnv, cluster: &str) -> Vec<Pod> {
    let api: Api<Pod> = env.api();
    let selector = format!("rask.dev/cluster={cluster},rask.dev/component=worker");
    api.list(&ListParams::default().labels(&selector)).await.expect("pods").items
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The scheduler pod's local gRPC and HTTP ports, once it runs.
async fn scheduler_ports(env: &TestEnv, kubelet: &Kubelet, cluster: &str) -> (u16, u16) {
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        let api: Api<Pod> = env.api();
        let selector = format!("rask.dev/cluster={cluster},rask.dev/component=scheduler");
        let pods = api.list(&ListParams::default().labels(&selector)).await.expect("pods").items;
        let found = pods.iter().filter(|p| is_ready(p)).find_map(|p| {
            let name = p.name_any();
            Some((kubelet.local_port(&name, 8786)?, kubelet.local_port(&name, 8787)?))
        });
        if let Some(ports) = found {
            return ports;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the scheduler pod did not become ready");
}

/// Samples the workers until `done` holds of (pods, ready, desired) or the
/// time is up; returns whether it held and the most ready workers seen.
async fn watch_workers(
    env: &TestEnv,
    cluster: &str,
    t0: Instant,
    timeout: Duration,
    done: impl Fn(usize, usize, i32) -> bool,
) -> (bool, usize) {
    let end = Instant::now() + timeout;
    let mut peak = 0;
    loop {
        let (pods, ready, desired) = sample(env, cluster, t0).await;
        peak = peak.max(ready);
        if done(pods, ready, desired) {
            return (true, peak);
        }
        if Instant::now() >= end {
            return (false, peak);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn scheduler_json(http: u16, path: &'static str) -> serde_json::Value {
    tokio::task::spawn_blocking(move || {
        let (code, body) = rask_tests::processes::http(&format!("127.0.0.1:{http}"), "GET", path, None, &[]);
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    })
    .await
    .expect("request")
}

/// One line of the worker count over time.
async fn sample(env: &TestEnv, cluster: &str, t0: Instant) -> (usize, usize, i32) {
    let pods = worker_pods(env, cluster).await;
    let ready = pods.iter().filter(|p| is_ready(p)).count();
    let desired = env.api::<DaskCluster>().get(cluster).await.expect("dc").spec.worker.replicas;
    if trace() {
        eprintln!("t={:5.1}s  desired={desired}  pods={}  ready={ready}", t0.elapsed().as_secs_f64(), pods.len());
    }
    (pods.len(), ready, desired)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_under_load_and_back_to_the_minimum_without_losing_a_key() {
    support::use_controllers(CONTROLLERS);
    let env = TestEnv::new("autoscale-e2e").await;
    let kubelet = env.kubelet();
    let operator = env.start_operator_with_url_annotation();
    let autoscaling = "  autoscaling:\n    minimum: 1\n    maximum: 4\n    scaleDownStabilizationSeconds: 5\n    scaleDownCooldownSeconds: 1\n";
    let out = env.apply(&cluster_yaml("auto", autoscaling));
    assert!(out.ok, "{}", out.stderr);
    let (grpc, http) = scheduler_ports(&env, &kubelet, "auto").await;
    // The operator runs outside the cluster network: point it at the pod.
    let annotation = format!("rask.dev/scheduler-http-url=http://127.0.0.1:{http}");
    assert!(env.kubectl(&["annotate", "dc/auto", &annotation]).ok);
    let ok = eventually(WAIT, || async { scheduler_json(http, "/api/v1/get_workers").await["num_workers"] == 1 }).await;
    assert!(ok, "the first worker did not join the scheduler pod");

    let rounds: usize = std::env::var("RASK_AUTOSCALING_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let address = format!("tcp://127.0.0.1:{grpc}");
    let client = {
        let address = address.clone();
        tokio::task::spawn_blocking(move || Client::connect(&address).expect("connect")).await.expect("client")
    };
    let client = std::sync::Arc::new(client);
    let n: i64 = 50_000;
    for round in 0..rounds {
        let t0 = Instant::now();
        // A key persisted before the scale-up (and so before the scale-down).
        let c = client.clone();
        let kept: Delayed<bytes::Bytes> =
            tokio::task::spawn_blocking(move || c.persist(&block::delayed(1000 + round as i64, n))).await.unwrap();
        // 16 s of work (160 tasks of 100 ms) on one single-threaded worker.
        let c = client.clone();
        let work = std::thread::spawn(move || {
            let xs: Vec<Delayed<i64>> = (0..160).map(|i| slow_inc::delayed(i, 100)).collect();
            c.compute(&total::delayed(xs)).result_timeout(Duration::from_secs(120))
        });
        // Scale-up: more than one ready worker within a bounded time.
        let (up, mut peak) = watch_workers(&env, "auto", t0, Duration::from_secs(30), |_, ready, _| ready > 1).await;
        assert!(up, "round {round}: ready workers did not rise above 1 (peak {peak})");
        let rose_after = t0.elapsed();
        let result = tokio::task::spawn_blocking(move || work.join().expect("client thread")).await.unwrap();
        assert_eq!(result.expect("the computation"), (0..160).map(|i| i + 1).sum::<i64>(), "round {round}");
        let computed_after = t0.elapsed();
        // Idle: back to one worker, through the scheduler.
        let (down, peak_after) = watch_workers(&env, "auto", t0, Duration::from_secs(60), |pods, ready, desired| {
            pods == 1 && ready == 1 && desired == 1
        })
        .await;
        peak = peak.max(peak_after);
        assert!(down, "round {round}: did not go back to 1 worker: {:?}", sample(&env, "auto", t0).await);
        let ok =
            eventually(WAIT, || async { scheduler_json(http, "/api/v1/get_workers").await["num_workers"] == 1 }).await;
        assert!(ok, "round {round}: the scheduler still has {}", scheduler_json(http, "/api/v1/get_workers").await);
        // The persisted key survived the scale-down: its checksum is the only
        // task that runs (a lost key would be recomputed from lineage first).
        let before = scheduler_json(http, "/status.json").await["totals"].clone();
        let c = client.clone();
        let sum = tokio::task::spawn_blocking(move || c.compute(&checksum::delayed(&kept)).result_timeout(WAIT))
            .await
            .unwrap()
            .expect("checksum of the kept key");
        assert_eq!(sum, expected_checksum(1000 + round as i64, n), "round {round}");
        let after = scheduler_json(http, "/status.json").await["totals"].clone();
        assert_eq!(
            after["completed_total"].as_u64().unwrap() - before["completed_total"].as_u64().unwrap(),
            1,
            "round {round}: the kept key was recomputed"
        );
        assert_eq!(after["erred_total"], 0, "round {round}: a task erred");
        eprintln!(
            "round {round}: >1 ready worker after {:.1} s (peak {peak}), result after {:.1} s, back to 1 after {:.1} s",
            rose_after.as_secs_f64(),
            computed_after.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
    }
    // Every decision is an Event with its reason, and the status says the last one.
    let events: Vec<Event> = env.api::<Event>().list(&ListParams::default()).await.expect("events").items;
    let notes: Vec<String> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("ScaledUp") || e.reason.as_deref() == Some("ScaledDown"))
        .filter_map(|e| e.note.clone())
        .collect();
    assert!(notes.iter().any(|n| n.contains("queue depth")), "no scale-up event with its reason: {notes:?}");
    assert!(notes.iter().any(|n| n.contains("idle")), "no scale-down event with its reason: {notes:?}");
    let out = env.kubectl(&["describe", "dc/auto"]);
    assert!(out.stdout.contains("ScaledDown"), "kubectl describe shows no decision:\n{}", out.stdout);
    let dc = env.api::<DaskCluster>().get("auto").await.expect("dc");
    let status = dc.status.and_then(|s| s.autoscaling).expect("status.autoscaling");
    assert_eq!(status.last_decision.as_deref(), Some("ScaledDown"));
    assert!(status.last_scale_time.is_some());
    drop(client);
    operator.stop().await;
    drop(kubelet);
}

/// A DaskJob on the kubelet: its cluster's scheduler and worker run as
/// processes, kube-controller-manager's Job controller makes the runner pod,
/// the runner (`rask-test-client`) computes through the scheduler pod and
/// exits 0, the Job completes, the DaskJob succeeds, and its cluster is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dask_job_runs_to_completion_and_its_cluster_is_removed() {
    support::use_controllers(CONTROLLERS);
    let env = TestEnv::new("job-e2e").await;
    let kubelet = env.kubelet();
    let operator = env.start_operator();
    let yaml = r#"apiVersion: rask.dev/v1alpha1
kind: DaskJob
metadata:
  name: etl
spec:
  backoffLimit: 1
  job:
    template:
      spec:
        containers:
        - name: client
          command: [rask-test-client, "30"]
  cluster:
    worker:
      replicas: 2
      template:
        spec:
          containers:
          - name: worker
            command: [rask-test-worker]
            args: ["--nthreads", "1", "--data-port", "8788", "--http-port", "8789"]
"#;
    let out = env.apply(yaml);
    assert!(out.ok, "{}", out.stderr);
    let daskjobs: Api<DaskJob> = env.api();
    let phase = || async { daskjobs.get("etl").await.ok().and_then(|j| j.status).and_then(|s| s.phase) };
    let ok = eventually(Duration::from_secs(120), || async { phase().await == Some(JobPhase::Succeeded) }).await;
    let runner_logs: Vec<String> = kubelet.running_pods("").iter().map(|p| kubelet.log(p)).collect();
    assert!(
        ok,
        "the DaskJob did not succeed: {:?}\nlogs: {runner_logs:?}",
        daskjobs.get("etl").await.ok().and_then(|j| j.status)
    );
    // The runner's pod ran the client to a correct result, exit code 0.
    let pods: Vec<Pod> = env.api::<Pod>().list(&ListParams::default()).await.expect("pods").items;
    let runner = pods
        .iter()
        .find(|p| p.labels().get("rask.dev/component").map(String::as_str) == Some("job-runner"))
        .expect("the runner pod (kept until the Job's TTL)");
    let log = kubelet.log(&runner.name_any());
    assert!(log.contains("rask-test-client: total = 465 (expected 465)"), "runner log:\n{log}");
    let exit = runner
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs[0].state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code);
    assert_eq!(exit, Some(0), "{:?}", runner.status);
    let job = env.api::<Job>().list(&ListParams::default()).await.expect("jobs").items.remove(0);
    assert_eq!(job.status.and_then(|s| s.succeeded), Some(1));
    // The cluster is gone, and with it (garbage collection, then the
    // kubelet's graceful stop) the scheduler and worker pods.
    let ok = eventually(Duration::from_secs(90), || async {
        env.api::<DaskCluster>().get_opt("etl").await.expect("get").is_none()
            && env
                .api::<Pod>()
                .list(&ListParams::default().labels("rask.dev/cluster=etl"))
                .await
                .expect("pods")
                .items
                .iter()
                .all(|p| p.labels().get("rask.dev/component").map(String::as_str) == Some("job-runner"))
    })
    .await;
    assert!(ok, "the job's cluster was not cleaned up: {:?}", kubelet.running_pods(""));
    assert!(kubelet.running_pods("etl-scheduler").is_empty() && kubelet.running_pods("etl-default-worker").is_empty());
    operator.stop().await;
    drop(kubelet);
}

/// The DaskJob of examples/job.yaml for real: its runner runs `rask demo
/// delayed` with no address of its own, so the client finds the cluster
/// through `RASK_SCHEDULER_ADDRESS`, which the operator sets in the job's
/// pod. The scheduler pod counts exactly the demo's tasks, the worker pods'
/// logs show they ran them, the job succeeds and the cluster goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dask_job_runs_rask_demo_on_the_cluster_made_for_it() {
    support::use_controllers(CONTROLLERS);
    let env = TestEnv::new("job-demo").await;
    let kubelet = env.kubelet();
    let operator = env.start_operator();
    let yaml = r#"apiVersion: rask.dev/v1alpha1
kind: DaskJob
metadata:
  name: demo
spec:
  backoffLimit: 0
  job:
    template:
      spec:
        containers:
        - name: client
          command: [rask, demo, delayed, "--sleep-ms", "200"]
  cluster:
    worker:
      replicas: 2
      # rask demo needs only the built-in ops: plain `rask worker`s.
      python: false
      template:
        spec:
          containers:
          - name: worker
            env: [{name: RUST_LOG, value: "info,rask_worker=debug"}]
"#;
    let out = env.apply(yaml);
    assert!(out.ok, "{}", out.stderr);
    let daskjobs: Api<DaskJob> = env.api();
    let phase = || async { daskjobs.get("demo").await.ok().and_then(|j| j.status).and_then(|s| s.phase) };
    // While the job runs: the scheduler pod's completed-task counter (its
    // largest value seen) and the names of the worker pods.
    let (_, http) = scheduler_ports(&env, &kubelet, "demo").await;
    let mut completed = 0.0f64;
    let mut workers: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(180);
    let mut succeeded = false;
    while Instant::now() < end {
        workers.extend(kubelet.running_pods("demo-default-worker"));
        let metrics = tokio::task::spawn_blocking(move || {
            std::net::TcpStream::connect(("127.0.0.1", http))
                .ok()
                .map(|_| rask_tests::processes::http(&format!("127.0.0.1:{http}"), "GET", "/metrics", None, &[]))
        })
        .await
        .expect("request");
        if let Some((200, text)) = metrics {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix("rask_scheduler_tasks_completed_total "))
                .and_then(|v| v.trim().parse::<f64>().ok());
            completed = completed.max(value.unwrap_or(0.0));
        }
        if phase().await == Some(JobPhase::Succeeded) {
            succeeded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Vec<Pod> = env.api::<Pod>().list(&ListParams::default()).await.expect("pods").items;
    let runner = pods
        .iter()
        .find(|p| p.labels().get("rask.dev/component").map(String::as_str) == Some("job-runner"))
        .map(|p| p.name_any());
    let log = runner.as_deref().map(|r| kubelet.log(r)).unwrap_or_default();
    assert!(succeeded, "the DaskJob did not succeed: {:?}\nrunner log:\n{log}", daskjobs.get("demo").await.ok());
    // The runner used the cluster, not an embedded one.
    assert!(log.contains("Client: the scheduler at tcp://") && !log.contains("LocalCluster"), "runner log:\n{log}");
    assert!(log.contains("total = add(z, z2)"), "runner log:\n{log}");
    let tasks: f64 = log
        .lines()
        .find_map(|l| l.trim().strip_suffix(" tasks in this section"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no task count in the runner log:\n{log}"));
    assert!(tasks >= 20.0, "{log}");
    assert_eq!(completed, tasks, "the scheduler pod completed {completed} tasks; the demo ran {tasks}");
    // The workers' logs show they ran them all, and both took part.
    assert_eq!(workers.len(), 2, "{workers:?}");
    let per_worker: Vec<usize> =
        workers.iter().map(|w| kubelet.log(w).lines().filter(|l| l.contains("task finished")).count()).collect();
    assert_eq!(per_worker.iter().sum::<usize>() as f64, tasks, "tasks in the worker logs: {per_worker:?}");
    assert!(per_worker.iter().all(|&n| n > 0), "a worker ran nothing: {per_worker:?}");
    // The cluster is removed afterwards.
    let ok = eventually(Duration::from_secs(90), || async {
        env.api::<DaskCluster>().get_opt("demo").await.expect("get").is_none()
            && kubelet.running_pods("demo-scheduler").is_empty()
            && kubelet.running_pods("demo-default-worker").is_empty()
    })
    .await;
    assert!(ok, "the job's cluster was not cleaned up: {:?}", kubelet.running_pods(""));
    operator.stop().await;
    drop(kubelet);
}
