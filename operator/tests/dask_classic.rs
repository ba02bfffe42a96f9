//! The operator against a classic Python Dask scheduler (PyPI
//! `distributed`) with its HTTP API enabled (the route module
//! `distributed.http.scheduler.api` in `distributed.scheduler.http.routes`):
//! the same JSON contract as rask's scheduler, so the same autoscaler
//! manages it. Real `dask scheduler` and `dask worker` processes; the
//! DaskCluster's `rask.dev/scheduler-http-url` annotation points the
//! operator at the Dask scheduler, which stands in for the scheduler pod.
//!
//! The Dask installation is found in `$RASK_DASK_VENV`, the reference venv
//! (`~/.cache/rask/pyref`) or the benchmark venv (`~/.cache/rask/bench-venv`).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use rask_operator::crd::DaskCluster;
use rask_operator::scheduler_api::{SchedulerApi, SchedulerUrl};
use rask_tests::processes::{Proc, http};
use support::{TestEnv, eventually};

const WAIT: Duration = Duration::from_secs(60);

/// The bin directory of a Python environment with `distributed`.
fn dask_bin_dir() -> PathBuf {
    let home = PathBuf::from(std::env::var("HOME").expect("HOME"));
    let candidates = [
        std::env::var_os("RASK_DASK_VENV").map(PathBuf::from),
        Some(home.join(".cache/rask/pyref")),
        Some(home.join(".cache/rask/bench-venv")),
    ];
    candidates.into_iter().flatten().map(|venv| venv.join("bin")).find(|bin| bin.join("dask").exists()).unwrap_or_else(
        || panic!("no `dask` command: install dask[distributed] into ~/.cache/rask/pyref (scripts/setup.sh)"),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A `dask scheduler` with the `/api/v1` routes on, and its addresses.
struct DaskScheduler {
    _proc: Proc,
    address: String,
    /// Base URL of the HTTP API.
    /// Its HTTP API, as the annotation names it: not the operator's own
    /// derivation, so never sent a token.
    url: SchedulerUrl,
}

impl DaskScheduler {
    fn start() -> DaskScheduler {
        let (port, http_port) = (free_port(), free_port());
        let mut cmd = Command::new(dask_bin_dir().join("dask"));
        cmd.args(["scheduler", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--dashboard-address", &format!("127.0.0.1:{http_port}")])
            .env(
                "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES",
                "['distributed.http.scheduler.api', 'distributed.http.health']",
            );
        let proc = Proc::spawn("dask-scheduler", cmd);
        let addr = format!("127.0.0.1:{http_port}");
        let up = support::wait_for(WAIT, || {
            std::net::TcpStream::connect(&addr).is_ok() && http(&addr, "GET", "/health", None, &[]).0 == 200
        });
        assert!(up, "the Dask scheduler's HTTP server did not start");
        DaskScheduler {
            _proc: proc,
            address: format!("tcp://127.0.0.1:{port}"),
            url: SchedulerUrl::untrusted(format!("http://{addr}")),
        }
    }

    fn worker(&self, name: &str) -> Proc {
        let mut cmd = Command::new(dask_bin_dir().join("dask"));
        cmd.args(["worker", &self.address, "--name", name, "--nthreads", "1", "--no-nanny", "--no-dashboard"]).args([
            "--memory-limit",
            "0",
            "--host",
            "127.0.0.1",
        ]);
        Proc::spawn(name, cmd)
    }
}

async fn workers(api: &SchedulerApi, url: &SchedulerUrl) -> Vec<String> {
    api.workers(url).await.map(|w| w.into_iter().collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_client_reads_a_dask_target_and_retires_the_chosen_worker() {
    let dask = tokio::task::spawn_blocking(DaskScheduler::start).await.expect("dask scheduler");
    let mut w0 = dask.worker("w0");
    let mut w1 = dask.worker("w1");
    let api = SchedulerApi::default();
    let ok = eventually(WAIT, || async { workers(&api, &dask.url).await == ["w0", "w1"] }).await;
    assert!(ok, "the Dask workers did not join: {:?}", workers(&api, &dask.url).await);

    // Dask's shape: the total only, which is the default group's demand.
    let target = api.adaptive_target(&dask.url).await.expect("adaptive_target");
    assert!(target.groups.is_empty() && target.workers <= 2, "{target:?}");
    let demand = target.demand_for("default");
    assert_eq!(demand.workers, target.workers);
    assert!(demand.reason.starts_with("scheduler's adaptive target"), "{}", demand.reason);
    assert!(api.idle_since(&dask.url).await.expect("check_idle").is_some(), "an idle Dask scheduler");

    // Retire by name (sent as the address Dask expects): exactly w1 leaves.
    api.retire(&dask.url, &["w1".to_string()], WAIT).await.expect("retire_workers");
    assert_eq!(workers(&api, &dask.url).await, ["w0"]);
    let exited = tokio::task::spawn_blocking(move || w1.wait_exit(Duration::from_secs(30))).await.expect("wait");
    assert!(exited.is_some(), "the retired Dask worker did not exit");
    assert!(w0.wait_exit(Duration::from_millis(100)).is_none(), "w0 was not chosen and keeps running");
}

/// The whole decision path on a DaskCluster whose scheduler is a classic
/// Dask scheduler: Dask's adaptive target rises under a Dask client's work
/// and the operator scales up; when idle it scales down, retiring the chosen
/// Dask worker through Dask's `retire_workers` before deleting its pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autoscaler_manages_a_classic_dask_scheduler() {
    let env = TestEnv::new("dask-classic").await;
    let dask = tokio::task::spawn_blocking(DaskScheduler::start).await.expect("dask scheduler");
    // Marks the pods running and ready; the Dask workers below are the pods' processes.
    let _agent = env.node_agent(None);
    let operator = env.start_operator_with_url_annotation();
    let yaml = format!(
        "apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: classic\n  annotations: {{rask.dev/scheduler-http-url: \"{}\"}}\nspec:\n  worker:\n    replicas: 2\n  autoscaling: {{minimum: 1, maximum: 3, scaleDownStabilizationSeconds: 3, scaleDownCooldownSeconds: 0}}\n",
        dask.url
    );
    let _w0 = dask.worker("classic-default-worker-0");
    let mut w1 = dask.worker("classic-default-worker-1");
    let api = SchedulerApi::default();
    let ok = eventually(WAIT, || async { workers(&api, &dask.url).await.len() == 2 }).await;
    assert!(ok, "the Dask workers did not join");
    // Work first, so the operator's first decisions see a queue.
    let python = dask_bin_dir().join("python");
    let script = format!(
        "import time\nfrom distributed import Client\nc = Client('{}')\nfs = c.map(time.sleep, [0.25] * 60, pure=False)\nc.gather(fs)\nprint('dask client done')\n",
        dask.address
    );
    let mut cmd = Command::new(python);
    cmd.args(["-c", &script]);
    let mut client = Proc::spawn("dask-client", cmd);
    let ok = eventually(WAIT, || async { api.adaptive_target(&dask.url).await.is_ok_and(|t| t.workers > 2) }).await;
    assert!(ok, "Dask's adaptive target did not rise");
    assert!(env.apply(&yaml).ok);
    let dcs: Api<DaskCluster> = env.api();
    let ok = eventually(WAIT, || async { dcs.get("classic").await.is_ok_and(|d| d.spec.worker.replicas == 3) }).await;
    assert!(
        ok,
        "the operator did not scale up on Dask's target: {:?}",
        dcs.get("classic").await.ok().map(|d| d.status)
    );
    let done = tokio::task::spawn_blocking(move || client.wait_for_line("dask client done", Duration::from_secs(120)))
        .await
        .expect("client");
    assert!(done.contains("done"));

    // Idle: back to one worker. worker-2 never joined Dask (its pod has no
    // process here) and is deleted at once; worker-1 is retired by Dask first.
    let pods: Api<Pod> = env.api();
    let ok = eventually(Duration::from_secs(90), || async {
        let names: Vec<String> = pods
            .list(&ListParams::default().labels("rask.dev/cluster=classic"))
            .await
            .expect("pods")
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        names == ["classic-default-worker-0"]
    })
    .await;
    assert!(ok, "did not scale down to worker-0: {:?}", dcs.get("classic").await.ok().map(|d| d.status));
    assert_eq!(workers(&api, &dask.url).await, ["classic-default-worker-0"]);
    let exited = tokio::task::spawn_blocking(move || w1.wait_exit(Duration::from_secs(30))).await.expect("wait");
    assert!(exited.is_some(), "the retired Dask worker did not exit");
    let events: Vec<Event> = env.api::<Event>().list(&ListParams::default()).await.expect("events").items;
    let reasons: Vec<(String, String)> =
        events.iter().map(|e| (e.reason.clone().unwrap_or_default(), e.note.clone().unwrap_or_default())).collect();
    assert!(reasons.iter().any(|(r, n)| r == "ScaledUp" && n.contains("scheduler's adaptive target")), "{reasons:?}");
    assert!(reasons.iter().any(|(r, _)| r == "ScaledDown"), "{reasons:?}");
    assert!(
        reasons.iter().any(|(r, n)| r == "WorkersRetired" && n.contains("classic-default-worker-1")),
        "{reasons:?}"
    );
    let status = dcs.get("classic").await.expect("dc").status.and_then(|s| s.autoscaling).expect("autoscaling");
    assert_eq!(status.last_decision.as_deref(), Some("ScaledDown"));
    operator.stop().await;
}
