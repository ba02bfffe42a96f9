//! How a program finds its cluster, as Dask's clients do: the default
//! client connects to `RASK_SCHEDULER_ADDRESS`, else `DASK_SCHEDULER_ADDRESS`,
//! and `rask demo --scheduler` (or those variables) runs the tutorial on a
//! running cluster. Real `rask scheduler` and `rask worker` processes on
//! 127.0.0.1. Bodies that need the variables run in a child process of
//! this test binary with them set (the environment is the process's).

#![allow(clippy::panic)]

use std::process::Command;
use std::time::Duration;

use rask::{Client, Delayed};
use rask_tests::processes::{Proc, Scheduler, WorkerKind, rask_bin, start_worker};

/// Set in the child that runs a test's body.
const CHILD: &str = "RASK_TEST_DEFAULT_CLIENT_CHILD";

/// Whether this process is the child that runs a test's body.
fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Runs `test` in a child of this binary with `env` set, and checks it passed.
fn run_child(test: &str, env: &[(&str, &str)]) {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"]).env(CHILD, "1");
    for var in ["RASK_SCHEDULER_ADDRESS", "DASK_SCHEDULER_ADDRESS"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("re-run the test binary");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{test} failed in its child:\n{text}");
}

/// A loopback port nothing listens on (free a moment ago).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A sum computed by the default client, and the tasks the scheduler saw.
fn computes_on(s: &Scheduler) {
    let before = s.metric("rask_scheduler_tasks_completed_total");
    let x = &(&Delayed::value(20i64) + 1) * 2;
    assert_eq!(x.compute().expect("computes on the cluster"), 42);
    let after = s.metric("rask_scheduler_tasks_completed_total");
    assert!(after > before, "the scheduler ran no task: {before} -> {after}");
}

/// The issue-22 bug: the default client cached a failed first start
/// forever. Here the scheduler the environment names is not up on the
/// first call; the second call, once it is, must connect.
#[test]
fn the_default_client_tries_again_after_a_failed_start() {
    if !is_child() {
        let address = format!("tcp://127.0.0.1:{}", free_port());
        run_child("the_default_client_tries_again_after_a_failed_start", &[("RASK_SCHEDULER_ADDRESS", &address)]);
        return;
    }
    let address = std::env::var("RASK_SCHEDULER_ADDRESS").expect("set by the parent");
    let port: u16 = address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    let err = Client::current().expect_err("nothing listens yet");
    assert!(err.to_string().contains(&port.to_string()), "the error names the address: {err}");
    let s = Scheduler::start_on(port, &[]);
    let _w = start_worker(WorkerKind::Rask, &s.address, "w0", 2, &[]);
    s.wait_for_workers(1, Duration::from_secs(60));
    let client = Client::current().expect("the scheduler is up now: the default client connects");
    assert!(format!("{client:?}").contains(&format!("127.0.0.1:{port}")), "{client:?}");
    computes_on(&s);
}

/// `DASK_SCHEDULER_ADDRESS` alone is enough (what Dask's tools set), and
/// `RASK_SCHEDULER_ADDRESS` wins when both are set.
#[test]
fn dask_scheduler_address_and_the_order_of_the_variables() {
    if is_child() {
        let x = &(&Delayed::value(20i64) + 1) * 2;
        assert_eq!(x.compute().expect("computes on the cluster the environment names"), 42);
        return;
    }
    let s = Scheduler::start(&[]);
    let _w = start_worker(WorkerKind::Rask, &s.address, "w0", 2, &[]);
    s.wait_for_workers(1, Duration::from_secs(60));
    let cases = [
        ("dask only", vec![("DASK_SCHEDULER_ADDRESS", s.address.as_str())]),
        ("both", vec![("RASK_SCHEDULER_ADDRESS", s.address.as_str()), ("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9")]),
    ];
    for (name, env) in cases {
        let before = s.metric("rask_scheduler_tasks_completed_total");
        run_child("dask_scheduler_address_and_the_order_of_the_variables", &env);
        let after = s.metric("rask_scheduler_tasks_completed_total");
        assert!(after > before, "{name}: the child's tasks did not run on the scheduler: {before} -> {after}");
    }
}

/// Runs `rask demo delayed` against `s`, by flag or by variable; returns
/// the task count the demo printed and its output.
fn demo_on(s: &Scheduler, by_flag: bool) -> (f64, String) {
    let mut cmd = Command::new(rask_bin());
    cmd.args(["demo", "delayed", "--sleep-ms", "50"]);
    if by_flag {
        cmd.args(["--scheduler", &s.address]).env("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9");
    } else {
        cmd.env_remove("RASK_SCHEDULER_ADDRESS").env("DASK_SCHEDULER_ADDRESS", &s.address);
    }
    let out = cmd.output().expect("rask demo runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "rask demo failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("Client: the scheduler at {}", s.address)), "{text}");
    assert!(!text.contains("LocalCluster"), "the demo started a local cluster:\n{text}");
    let tasks = text
        .lines()
        .find_map(|l| l.trim().strip_suffix(" tasks in this section"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("the demo printed no task count:\n{text}"));
    (tasks, text)
}

fn finished_lines(workers: &mut [Proc]) -> Vec<usize> {
    workers.iter_mut().map(|w| w.output().lines().filter(|l| l.contains("task finished")).count()).collect()
}

/// `rask demo delayed --scheduler ADDR`, then with `DASK_SCHEDULER_ADDRESS`
/// alone: each run's tasks are all counted by the scheduler, and the
/// workers' logs show they ran them.
#[test]
fn rask_demo_runs_the_tutorial_on_a_running_cluster() {
    let s = Scheduler::start(&[]);
    let mut workers: Vec<Proc> = (0..2)
        .map(|i| {
            let mut cmd = Command::new(rask_bin());
            cmd.args(["worker", &s.address, "--listen-host", "127.0.0.1", "--contact-host", "127.0.0.1"])
                .args(["--name", &format!("w{i}")])
                .args(["--nthreads", "2"])
                .env("RUST_LOG", "info,rask_worker=debug");
            let mut p = Proc::spawn(&format!("w{i}"), cmd);
            p.wait_for_line("rask worker", Duration::from_secs(30));
            p
        })
        .collect();
    s.wait_for_workers(2, Duration::from_secs(60));
    let mut expected_lines = 0usize;
    for by_flag in [true, false] {
        let before = s.metric("rask_scheduler_tasks_completed_total");
        let (tasks, text) = demo_on(&s, by_flag);
        assert!(tasks >= 20.0, "the delayed section has 24 tasks:\n{text}");
        assert!(text.contains("total = add(z, z2)") && text.contains("= 10 "), "{text}");
        let ok = rask_tests::eventually(Duration::from_secs(10), || {
            s.metric("rask_scheduler_tasks_completed_total") - before >= tasks
        });
        let after = s.metric("rask_scheduler_tasks_completed_total");
        assert!(
            ok && after - before == tasks,
            "by flag {by_flag}: the scheduler completed {} tasks, the demo ran {tasks}",
            after - before
        );
        expected_lines += tasks as usize;
        let ok = rask_tests::eventually(Duration::from_secs(10), || {
            finished_lines(&mut workers).iter().sum::<usize>() >= expected_lines
        });
        let per_worker = finished_lines(&mut workers);
        assert!(
            ok && per_worker.iter().sum::<usize>() == expected_lines,
            "workers logged {per_worker:?} tasks, expected {expected_lines}"
        );
    }
    let per_worker = finished_lines(&mut workers);
    assert!(per_worker.iter().all(|&n| n > 0), "both workers ran tasks: {per_worker:?}");
}

/// The README's quick start, as a user types it: `rask scheduler`, two
/// `rask worker`s, `rask demo delayed --scheduler ADDR`, and the dashboard
/// open in (headless) Chromium while the demo runs. The screenshot goes to
/// `<target>/artifacts/quickstart-dashboard.png`; with
/// `RASK_DOCS_SCREENSHOT=1` it also replaces `docs/dashboard.png`, the
/// picture the README shows.
#[test]
fn the_readme_quick_start_on_one_machine() {
    let s = Scheduler::start(&[]);
    let _workers: Vec<Proc> =
        (0..2).map(|i| start_worker(WorkerKind::Rask, &s.address, &format!("worker-{i}"), 2, &[])).collect();
    s.wait_for_workers(2, Duration::from_secs(60));
    let mut cmd = Command::new(rask_bin());
    cmd.args(["demo", "delayed", "--scheduler", &s.address]);
    let mut demo = Proc::spawn("demo", cmd);
    demo.wait_for_line("Client: the scheduler at", Duration::from_secs(30));

    let exe = std::env::current_exe().expect("test binary path");
    let artifacts = exe.ancestors().nth(3).expect("target dir").join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("quickstart-dashboard.png");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/chromium.py");
    // Two workers, and the demo's third graph (eight `inc`s into `prod`)
    // under way, so the task stream shows the earlier ones too.
    let probe = r#"(() => {
        const rows = [...document.querySelectorAll('#workers .worker-row')].map(r => r.dataset.name);
        const groups = [...document.querySelectorAll('#progress .progress-group')].map(g => g.dataset.group);
        return rows.length === 2 && groups.includes('prod') ? {rows, groups} : null;
    })()"#;
    let url = format!("http://{}/status", s.http);
    let out = Command::new("python3")
        .args([script, &url, shot.to_str().expect("utf-8 path"), "30", probe])
        .output()
        .expect("run python3 with the chromium driver");
    assert!(out.status.success(), "chromium driver failed: {}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the driver prints JSON");
    assert!(!seen.is_null(), "the dashboard never showed 2 workers and the demo's prod graph");
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false), "no screenshot at {shot:?}");
    if std::env::var_os("RASK_DOCS_SCREENSHOT").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::copy(&shot, &docs).expect("copy the screenshot into docs/");
    }
    let status = demo.wait_exit(Duration::from_secs(120)).expect("the demo ends");
    let text = demo.output();
    assert!(status.success() && text.contains("tasks in this section"), "rask demo:\n{text}");
}
