//! A DaskJob that runs `python script.py` against its cluster, end to end on
//! the real kube-apiserver with the test kubelet (support/kubelet.rs): the
//! scheduler pod is a real `rask scheduler`, the worker pods run the
//! operator's default worker command, `python -m rask worker`, and the
//! runner pod runs the script of examples/python-job.yaml, all with the
//! reference virtualenv's Python and the rask wheel (scripts/python.sh
//! install; the test fails, saying so, without it). The scheduler's
//! completed-task counter shows the work ran on the cluster's workers; the
//! job succeeds and its cluster goes away.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use rask_operator::crd::{DaskCluster, DaskJob, JobPhase};
use support::TestEnv;
use support::kubelet::Kubelet;

const CONTROLLERS: &str = "garbagecollector,namespace,deployment,replicaset,job";

/// The script of examples/python-job.yaml (its ConfigMap's `script.py`).
fn example_script() -> String {
    let path = support::repo_root().join("examples/python-job.yaml");
    let text = std::fs::read_to_string(&path).expect("examples/python-job.yaml");
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).expect("YAML");
        if value["kind"].as_str() == Some("ConfigMap") {
            return value["data"]["script.py"].as_str().expect("script.py in the ConfigMap").to_string();
        }
    }
    panic!("{} has no ConfigMap with script.py", path.display());
}

fn component(p: &Pod) -> Option<&str> {
    p.labels().get("rask.dev/component").map(String::as_str)
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The scheduler's `rask_scheduler_tasks_completed_total`, if it answers
/// (`None` once the pod is gone: the counter is read while the cluster lives).
async fn tasks_completed(http: u16) -> Option<f64> {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", http)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: scheduler\r\nConnection: close\r\n\r\n").ok()?;
        let mut body = String::new();
        conn.read_to_string(&mut body).ok()?;
        if !body.starts_with("HTTP/1.1 200") {
            return None;
        }
        body.lines()
            .filter(|l| l.starts_with("rask_scheduler_tasks_completed_total"))
            .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<f64>().ok())
            .reduce(|a, b| a + b)
    })
    .await
    .ok()
    .flatten()
}

/// The local HTTP port of the cluster's scheduler pod, once it is ready.
async fn scheduler_http(env: &TestEnv, kubelet: &Kubelet, cluster: &str) -> Option<u16> {
    let selector = format!("rask.dev/cluster={cluster},rask.dev/component=scheduler");
    let pods = env.api::<Pod>().list(&ListParams::default().labels(&selector)).await.ok()?.items;
    pods.iter().filter(|p| is_ready(p)).find_map(|p| kubelet.local_port(&p.name_any(), 8787))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dask_job_runs_a_python_script_on_python_workers() {
    support::use_controllers(CONTROLLERS);
    let env = TestEnv::new("python-job").await;
    let kubelet = env.python_kubelet();
    let operator = env.start_operator();
    let dir = std::env::temp_dir().join(format!("rask-python-job-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("script dir");
    let script = dir.join("script.py");
    std::fs::write(&script, example_script()).expect("write the script");
    // The example's DaskJob, with the script at a local path (the test
    // kubelet mounts no volumes) and the workers' default command.
    let yaml = format!(
        r#"apiVersion: rask.dev/v1alpha1
kind: DaskJob
metadata:
  name: pyetl
spec:
  backoffLimit: 0
  job:
    template:
      spec:
        containers:
        - name: client
          command: [python, "{}"]
  cluster:
    worker:
      replicas: 2
      nthreads: 2
"#,
        script.display()
    );
    let t0 = Instant::now();
    let out = env.apply(&yaml);
    assert!(out.ok, "{}", out.stderr);

    // Follow the job; watch the scheduler's counter while the cluster lives.
    let daskjobs: Api<DaskJob> = env.api();
    let mut completed: Option<f64> = None;
    let mut phase = None;
    let end = Instant::now() + Duration::from_secs(180);
    while Instant::now() < end {
        if let Some(http) = scheduler_http(&env, &kubelet, "pyetl").await
            && let Some(n) = tasks_completed(http).await
        {
            completed = Some(completed.unwrap_or(0.0).max(n));
        }
        phase = daskjobs.get("pyetl").await.ok().and_then(|j| j.status).and_then(|s| s.phase);
        if phase.is_some_and(JobPhase::is_finished) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let pods: Vec<Pod> = env.api::<Pod>().list(&ListParams::default()).await.expect("pods").items;
    let logs: Vec<String> =
        pods.iter().map(|p| format!("--- {}:\n{}", p.name_any(), kubelet.log(&p.name_any()))).collect();
    assert_eq!(phase, Some(JobPhase::Succeeded), "the DaskJob did not succeed; pod logs:\n{}", logs.join("\n"));

    // The runner ran the script to the right total, computed in processes
    // other than its own (the script exits 1 otherwise), with exit code 0.
    let runner = pods.iter().find(|p| component(p) == Some("job-runner")).expect("the runner pod");
    let log = kubelet.log(&runner.name_any());
    assert!(log.contains("python-job: total = 5050 (expected 5050)"), "runner log:\n{log}");
    let exit = runner
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs[0].state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code);
    assert_eq!(exit, Some(0), "{:?}", runner.status);
    // The workers were Python workers: the operator's default command.
    let workers: Vec<&Pod> = pods.iter().filter(|p| component(p) == Some("worker")).collect();
    for w in &workers {
        let c = &w.spec.as_ref().expect("spec").containers[0];
        assert_eq!(c.command.as_deref(), Some(&["python", "-m", "rask", "worker"].map(String::from)[..]));
    }
    // The scheduler completed the script's tasks (100 inc, 100 first, 99
    // add, 100 where): the cluster's workers, its only workers, ran them.
    let completed = completed.expect("the scheduler pod's /metrics never answered");
    assert!(completed >= 399.0, "rask_scheduler_tasks_completed_total = {completed}, want >= 399");
    eprintln!(
        "python job: Succeeded after {:.1} s, rask_scheduler_tasks_completed_total = {completed}",
        t0.elapsed().as_secs_f64()
    );

    // The cluster is gone, and with it its scheduler and worker pods.
    let ok = support::eventually(Duration::from_secs(90), || async {
        env.api::<DaskCluster>().get_opt("pyetl").await.expect("get").is_none()
            && env
                .api::<Pod>()
                .list(&ListParams::default().labels("rask.dev/cluster=pyetl"))
                .await
                .expect("pods")
                .items
                .iter()
                .all(|p| component(p) == Some("job-runner"))
    })
    .await;
    assert!(ok, "the job's cluster was not cleaned up: {:?}", kubelet.running_pods(""));
    assert!(
        kubelet.running_pods("pyetl-scheduler").is_empty() && kubelet.running_pods("pyetl-default-worker").is_empty()
    );
    operator.stop().await;
    drop(kubelet);
    let _ = std::fs::remove_dir_all(&dir);
}
