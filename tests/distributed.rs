//! The distributed runtime with real processes on 127.0.0.1: a `rask
//! scheduler` process, worker processes (`rask worker` or the test worker
//! binary with the test ops), and this test process as the client over gRPC.

use std::time::Duration;

use rask::{Client, Delayed, Error, ErrorKind, op};
use rask_tests::ops::{add, block, checksum, crash, expected_checksum, fail, slow_inc, total, worker_pid};
use rask_tests::pki::Pki;
use rask_tests::processes::{Proc, Scheduler, WorkerKind, http, start_worker};

const T: Duration = Duration::from_secs(60);

fn cluster(n: usize, nthreads: usize) -> (Scheduler, Vec<Proc>) {
    let s = Scheduler::start(&[]);
    let workers = (0..n).map(|i| start_worker(WorkerKind::Test, &s.address, &format!("w{i}"), nthreads, &[])).collect();
    s.wait_for_workers(n, T);
    (s, workers)
}

fn incs(n: i64, ms: i64) -> Delayed<i64> {
    let xs: Vec<Delayed<i64>> = (0..n).map(|i| slow_inc::delayed(i, ms)).collect();
    total::delayed(xs)
}

fn sum_inc(n: i64) -> i64 {
    (0..n).map(|i| i + 1).sum()
}

#[test]
fn delayed_graphs_run_on_worker_processes() {
    let (s, workers) = cluster(3, 2);
    let client = Client::connect(&s.address).expect("connect");
    // The tutorial: inc, inc, add.
    let x = slow_inc::delayed(1, 10);
    let y = slow_inc::delayed(2, 10);
    let z = add::delayed(&x, &y);
    assert_eq!(client.compute(&z).result().unwrap(), 5);
    // Futures return at once and resolve later; shared inputs run once.
    let big = incs(200, 2);
    let f = client.compute(&big);
    assert_eq!(f.result_timeout(T).unwrap(), sum_inc(200));
    // The work was spread over the worker processes.
    let pids: Vec<Delayed<i64>> = (0..24).map(|i| worker_pid::delayed(i, 30)).collect();
    let futures = client.compute_many(&pids.iter().collect::<Vec<_>>());
    let mut seen: Vec<i64> = futures.iter().map(|f| f.result_timeout(T).unwrap()).collect();
    seen.sort_unstable();
    seen.dedup();
    let worker_pids: Vec<i64> = workers.iter().map(|w| i64::from(w.pid())).collect();
    assert!(seen.iter().all(|p| worker_pids.contains(p)), "tasks ran outside the workers: {seen:?} vs {worker_pids:?}");
    assert!(seen.len() >= 2, "24 tasks of 30 ms on 3 workers ran on {} of them", seen.len());
    // `.await` works too.
    let fut = client.compute(&add::delayed(40, 2));
    assert_eq!(rask_tests::block_on(fut).unwrap(), 42);
}

op! {
    /// Linked into this test binary only: the workers do not have it.
    fn only_here(x: i64) -> i64 { x }
}

#[test]
fn errors_reach_the_client_with_key_and_message() {
    let (s, _workers) = cluster(1, 2);
    let client = Client::connect(&s.address).expect("connect");
    let bad = add::delayed(fail::delayed("boom at row 7".to_string()), 1);
    match client.compute(&bad).result_timeout(T) {
        Err(Error::Task(e)) => {
            assert_eq!(e.kind, ErrorKind::Raised);
            assert!(e.key.to_string().starts_with("fail"), "{e}");
            assert!(e.message.contains("boom at row 7"), "{e}");
        }
        other => panic!("expected a task error, got {other:?}"),
    }
    // An op the worker binary lacks: the task fails and says so.
    match client.compute(&only_here::delayed(1)).result_timeout(T) {
        Err(Error::Task(e)) => assert!(e.message.contains("not registered"), "{e}"),
        other => panic!("expected a task error, got {other:?}"),
    }
    // Closures cannot travel: a clear error, before anything is sent.
    let closure = rask::local("plus_one", |x: i64| x + 1);
    match client.compute(&closure.call((1,))).result_timeout(T) {
        Err(Error::Remote(m)) => assert!(m.contains("rask::op!"), "{m}"),
        other => panic!("expected a remote error, got {other:?}"),
    }
    // The cluster still works after all that.
    assert_eq!(client.compute(&add::delayed(1, 2)).result_timeout(T).unwrap(), 3);
}

#[test]
fn sigkill_of_a_worker_ten_times_still_gives_correct_results() {
    let (s, mut workers) = cluster(3, 2);
    let client = Client::connect(&s.address).expect("connect");
    for round in 0..10 {
        // 60 tasks of 20 ms on 6 threads: about 200 ms of work, with chains
        // so that lost intermediate results must be recomputed.
        let firsts: Vec<Delayed<i64>> = (0..60).map(|i| slow_inc::delayed(i + round, 20)).collect();
        let seconds: Vec<Delayed<i64>> = firsts.iter().map(|x| slow_inc::delayed(x, 1)).collect();
        let sum = total::delayed(seconds);
        let f = client.compute(&sum);
        std::thread::sleep(Duration::from_millis(80));
        let victim = (round as usize) % workers.len();
        workers[victim].kill();
        workers[victim] = start_worker(WorkerKind::Test, &s.address, &format!("w{round}-{victim}"), 2, &[]);
        let expected: i64 = (0..60).map(|i| i + round + 2).sum();
        assert_eq!(f.result_timeout(T).unwrap(), expected, "round {round}");
    }
}

#[test]
fn a_worker_joining_mid_computation_takes_work() {
    let (s, first) = cluster(1, 1);
    let client = Client::connect(&s.address).expect("connect");
    // 40 tasks of 100 ms on one thread: 4 s alone.
    let pids: Vec<Delayed<i64>> = (0..40).map(|i| worker_pid::delayed(i, 100)).collect();
    let futures = client.compute_many(&pids.iter().collect::<Vec<_>>());
    assert!(rask_tests::eventually(T, || futures.iter().any(|f| f.done())), "nothing finished");
    let late = start_worker(WorkerKind::Test, &s.address, "late", 2, &[]);
    let results: Vec<i64> = futures.iter().map(|f| f.result_timeout(T).unwrap()).collect();
    let on_late = results.iter().filter(|p| **p == i64::from(late.pid())).count();
    let on_first = results.iter().filter(|p| **p == i64::from(first[0].pid())).count();
    assert_eq!(on_late + on_first, 40);
    assert!(on_late >= 5, "the late worker ran only {on_late} of 40 tasks");
}

#[test]
fn retiring_workers_loses_no_keys() {
    let (s, mut workers) = cluster(3, 2);
    let client = Client::connect(&s.address).expect("connect");
    let n = 50_000;
    let blocks: Vec<Delayed<bytes::Bytes>> = (0..30).map(|i| client.persist(&block::delayed(i, n))).collect();
    // Wait until every block is in memory, spread over the workers.
    assert!(rask_tests::eventually(T, || {
        s.json("/status.json")["totals"]["tasks_by_state"]["memory"].as_u64() == Some(30)
    }));
    let before = s.json("/api/v1/get_workers");
    let (status, body) = s.post("/api/v1/retire_workers", r#"{"n": 2}"#);
    assert_eq!(status, 200, "{body}");
    let retired: serde_json::Value = serde_json::from_str(&body).unwrap();
    let retired = retired.as_object().expect("a map from address to worker info");
    assert_eq!(retired.len(), 2, "{body}");
    for (address, info) in retired {
        assert!(address.starts_with("http://127.0.0.1:"), "{address}");
        assert_eq!(info["type"], "Worker");
        assert!(info["name"].is_string() && info["nthreads"] == 2, "{info}");
    }
    s.wait_for_workers(1, T);
    // The retired processes exit by themselves.
    let names: Vec<String> = retired.values().map(|v| v["name"].as_str().unwrap_or_default().to_string()).collect();
    for w in workers.iter_mut().filter(|w| names.contains(&w.name)) {
        assert!(w.wait_exit(T).is_some_and(|st| st.success()), "{} did not exit cleanly", w.name);
    }
    assert_eq!(before["num_workers"], 3);
    // Every block is still there and intact: nothing was recomputed from scratch
    // because nothing was lost (the checksums read the stored values).
    let sums: Vec<Delayed<i64>> = blocks.iter().map(checksum::delayed).collect();
    let futures = client.compute_many(&sums.iter().collect::<Vec<_>>());
    for (i, f) in futures.iter().enumerate() {
        assert_eq!(f.result_timeout(T).unwrap(), expected_checksum(i as i64, n));
    }
    let processing = s.json("/status.json");
    assert_eq!(processing["totals"]["completed_total"].as_u64(), Some(60), "blocks were recomputed: {processing}");
}

#[test]
fn a_task_that_kills_three_workers_is_killed_worker() {
    let s = Scheduler::start(&[]);
    let client = Client::connect(&s.address).expect("connect");
    let f = client.compute(&crash::delayed(1));
    let mut dead = Vec::new();
    for i in 0..3 {
        let mut w = start_worker(WorkerKind::Test, &s.address, &format!("victim{i}"), 1, &[]);
        assert!(w.wait_exit(T).is_some(), "the crash task did not kill worker {i}");
        dead.push(w);
    }
    match f.result_timeout(T) {
        Err(Error::Task(e)) => {
            assert_eq!(e.kind, ErrorKind::KilledWorker, "{e}");
            assert!(e.to_string().contains("KilledWorker") && e.message.contains("3 workers"), "{e}");
        }
        other => panic!("expected KilledWorker, got {other:?}"),
    }
}

#[test]
fn a_client_that_disconnects_releases_its_keys() {
    let (s, _workers) = cluster(2, 1);
    let client = Client::connect(&s.address).expect("connect");
    let kept: Vec<Delayed<bytes::Bytes>> = (0..10).map(|i| client.persist(&block::delayed(i, 10_000))).collect();
    assert!(rask_tests::eventually(T, || s.json("/status.json")["totals"]["memory_bytes"].as_u64() >= Some(100_000)));
    assert_eq!(s.json("/status.json")["totals"]["clients"], 1);
    // Keep the lazy values (they still refer to the keys) but drop the connection.
    client.close();
    drop(client);
    assert!(
        rask_tests::eventually(T, || {
            let st = s.json("/status.json");
            st["totals"]["memory_bytes"] == 0 && st["totals"]["clients"] == 0
        }),
        "keys were not released: {}",
        s.json("/status.json")
    );
    drop(kept);
}

#[test]
fn http_api_and_metrics() {
    let (s, _workers) = cluster(2, 1);
    assert_eq!(s.get("/health"), (200, "ok".to_string()));
    assert_eq!(s.get("/api/v1").1, "API V1");
    let workers = s.json("/api/v1/get_workers");
    assert_eq!(workers["num_workers"], 2);
    let mut names: Vec<&str> =
        workers["workers"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["w0", "w1"]);
    assert!(workers["workers"][0]["address"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    // Idle: the adaptive target is 0 and check_idle says since when.
    let target = s.json("/api/v1/adaptive_target");
    assert_eq!(target["workers"], 0, "{target}");
    assert_eq!(target["groups"]["default"]["workers"], 0, "{target}");
    assert_eq!(target["groups"]["default"]["current_workers"], 2, "{target}");
    assert!(s.json("/api/v1/check_idle")["idle_since"].is_f64());
    // Under load the target grows and the cluster is not idle.
    let client = Client::connect(&s.address).expect("connect");
    let f = client.compute(&incs(400, 50));
    assert!(rask_tests::eventually(T, || s.json("/api/v1/adaptive_target")["workers"].as_u64() > Some(2)));
    assert!(s.json("/api/v1/check_idle")["idle_since"].is_null());
    // Retire by name.
    let (status, body) = s.post("/api/v1/retire_workers", r#"{"workers": ["w1"]}"#);
    assert_eq!(status, 200, "{body}");
    let retired: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(retired.as_object().unwrap().values().next().unwrap()["name"], "w1");
    assert_eq!(f.result_timeout(T).unwrap(), sum_inc(400));
    // Bad requests are refused with a reason, not a crash.
    let (status, body) = s.post("/api/v1/retire_workers", "{not json");
    assert_eq!(status, 400, "{body}");
    // Metrics: Prometheus text with rask_ names.
    let (status, metrics) = s.get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "rask_scheduler_workers 1",
        "rask_scheduler_tasks{state=\"memory\"}",
        "rask_scheduler_queue_depth",
        "rask_scheduler_desired_workers",
        "rask_scheduler_tasks_completed_total 401",
        "rask_scheduler_task_duration_seconds_bucket{prefix=\"slow_inc\"",
        "rask_scheduler_clients 1",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    promtool_check(&metrics);
    // The dashboard page and its data.
    let (status, page) = s.get("/status");
    assert_eq!(status, 200);
    assert!(page.contains("task-stream"));
    let st = s.json("/status.json");
    assert!(st["groups"].as_array().unwrap().iter().any(|g| g["name"] == "slow_inc" && g["done"] == 400), "{st}");
}

/// `promtool check metrics` (Prometheus's own linter, installed by the
/// test set-up) accepts the exposition: names, units, types and help.
fn promtool_check(metrics: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup.sh installs it)");
    child.stdin.take().expect("stdin").write_all(metrics.as_bytes()).expect("write metrics");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{metrics}");
}

#[test]
fn worker_metrics_and_health() {
    let (s, mut workers) = cluster(1, 1);
    let out = workers[0].output();
    let http_addr = out
        .lines()
        .find_map(|l| l.split("metrics at http://").nth(1))
        .and_then(|rest| rest.strip_suffix("/metrics)"))
        .expect("the worker prints its metrics address")
        .to_string();
    assert_eq!(http(&http_addr, "GET", "/health", None, &[]), (200, "ok".to_string()));
    let client = Client::connect(&s.address).expect("connect");
    let _kept = client.persist(&block::delayed(1, 123_456));
    let managed = || {
        let (_, m) = http(&http_addr, "GET", "/metrics", None, &[]);
        m.lines()
            .find_map(|l| l.strip_prefix("rask_worker_memory_managed_bytes "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // The value's bytes, plus a little bookkeeping.
    assert!(rask_tests::eventually(T, || (123_456..124_000).contains(&managed())), "managed: {}", managed());
    let (_, m) = http(&http_addr, "GET", "/metrics", None, &[]);
    for name in ["rask_worker_threads 1", "rask_worker_threads_busy", "rask_worker_transfer_incoming_bytes_total"] {
        assert!(m.contains(name), "{name} missing:\n{m}");
    }
    promtool_check(&m);
}

/// The metrics address a worker prints at start.
fn worker_http_address(worker: &mut Proc) -> String {
    worker
        .output()
        .lines()
        .find_map(|l| l.split("metrics at http://").nth(1))
        .and_then(|rest| rest.strip_suffix("/metrics)"))
        .expect("the worker prints its metrics address")
        .to_string()
}

/// The data address a worker prints at start (`rask worker NAME at ADDR`).
fn worker_data_address(worker: &mut Proc) -> String {
    worker
        .output()
        .lines()
        .find_map(|l| l.split(" at ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .expect("the worker prints its data address")
        .to_string()
}

/// Fetches `key` from a worker's data service as a peer would, presenting
/// `token`.
fn fetch_from_worker(address: &str, key: &rask_core::Key, token: Option<&str>) -> Result<rask_core::Value, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut peer = rask_worker::data::DataClient::connect_with(address, 1 << 30, None, token)
            .await
            .map_err(|e| e.to_string())?;
        let mut got = peer.fetch(std::slice::from_ref(key)).await.map_err(|e| e.to_string())?;
        got.pop().map(|(_, v)| v).ok_or_else(|| "nothing came back".to_string())
    })
}

/// With `--token`, every port of every process requires it: the
/// scheduler's gRPC and every HTTP path but `/health` (dashboard, JSON,
/// events, API, metrics, unknown paths), each worker's data service and
/// its `/metrics`. A peer without the token, or with a wrong one, learns
/// nothing; with it, a computation that moves data between workers and
/// back to the client works end to end.
#[test]
fn a_token_guards_every_port() {
    const TOKEN: &str = "s3cret-token";
    let s = Scheduler::start(&["--token", TOKEN]);
    let mut workers: Vec<Proc> = (0..2)
        .map(|i| start_worker(WorkerKind::Test, &s.address, &format!("tok{i}"), 1, &["--token", TOKEN]))
        .collect();
    let bearer = format!("Bearer {TOKEN}");
    let authorized = [("Authorization", bearer.as_str())];
    let get = |addr: &str, path: &str, headers: &[(&str, &str)]| http(addr, "GET", path, None, headers);
    assert!(
        rask_tests::eventually(T, || get(&s.http, "/api/v1/get_workers", &authorized).1.contains("\"num_workers\":2")),
        "the workers did not join"
    );

    // gRPC without the token, or with a wrong one: refused, saying why.
    for token in [None, Some("wrong"), Some("s3cret-toke"), Some("s3cret-token-and-more")] {
        match Client::connect_with_token(&s.address, token) {
            Err(Error::Connect { message, .. }) => assert!(message.contains("token"), "{token:?}: {message}"),
            other => panic!("{token:?}: expected a refusal, got {other:?}"),
        }
    }
    // A worker without the token cannot join.
    let mut intruder = {
        let mut cmd = std::process::Command::new(rask_tests::processes::test_worker_bin());
        cmd.args([s.address.as_str(), "--name", "intruder", "--token", "wrong"]);
        Proc::spawn("intruder", cmd)
    };
    let exit = intruder.wait_exit(T).expect("a worker with a wrong token exits");
    assert!(!exit.success());
    assert!(intruder.output().contains("token"), "{}", intruder.output());

    // Right token: a graph whose inputs sit on both workers, gathered back.
    let client = Client::connect_with_token(&s.address, Some(TOKEN)).expect("connect with the token");
    let blocks: Vec<Delayed<bytes::Bytes>> = (0..8).map(|i| block::delayed(i, 200_000)).collect();
    let sums: Vec<Delayed<i64>> = blocks.iter().map(|b| checksum::delayed(b.clone())).collect();
    let expected: i64 = (0..8).map(|i| expected_checksum(i, 200_000)).sum();
    assert_eq!(client.compute(&total::delayed(sums)).result_timeout(T).unwrap(), expected);
    // A stored result, as the issue's intruder read it.
    let kept = client.compute(&block::delayed(99, 1_000));
    let value = kept.result_timeout(T).unwrap();

    // Each worker's data service: nothing without the right token.
    let data: Vec<String> = workers.iter_mut().map(worker_data_address).collect();
    for address in &data {
        for token in [None, Some("wrong"), Some("s3cret-toke")] {
            let err = fetch_from_worker(address, kept.key(), token).expect_err("refused");
            assert!(err.contains("token"), "{address} {token:?}: {err}");
        }
    }
    // With it, the holder serves the value (the other has not got it).
    let served: Vec<rask_core::Value> =
        data.iter().filter_map(|a| fetch_from_worker(a, kept.key(), Some(TOKEN)).ok()).collect();
    assert_eq!(served, vec![rask_core::Value::Bytes(value)]);
    // The workers fetched from each other, with the token.
    let web: Vec<String> = workers.iter_mut().map(worker_http_address).collect();
    let fetched: u64 = web
        .iter()
        .map(|a| {
            let (status, m) = get(a, "/metrics", &authorized);
            assert_eq!(status, 200, "{m}");
            m.lines()
                .find_map(|l| l.strip_prefix("rask_worker_transfer_incoming_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert!(fetched > 0, "the graph moved no data between the workers");

    // HTTP: every path but /health needs the token, and a refusal says
    // nothing about the cluster.
    let scheduler_paths = [
        "/",
        "/status",
        "/status.json",
        "/api/v1",
        "/api/v1/get_workers",
        "/api/v1/adaptive_target",
        "/api/v1/check_idle",
        "/metrics",
        "/no-such-path",
    ];
    let basic = |password: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("user:{password}")))
    };
    let wrong_bearer = "Bearer wrong".to_string();
    let wrong_basic = basic("wrong");
    let refusals: [&[(&str, &str)]; 4] = [
        &[],
        &[("Authorization", wrong_bearer.as_str())],
        &[("Authorization", wrong_basic.as_str())],
        &[("Authorization", TOKEN)],
    ];
    let check_refused = |addr: &str, path: &str, status: u16, body: &str| {
        assert_eq!(status, 401, "{addr}{path}: {body}");
        for secret in ["127.0.0.1", "tok0", "tok1", "rask_"] {
            assert!(!body.contains(secret), "{addr}{path} revealed {secret:?}: {body}");
        }
    };
    for headers in refusals {
        for path in scheduler_paths {
            let (status, body) = get(&s.http, path, headers);
            check_refused(&s.http, path, status, &body);
        }
        let (status, body) = http(&s.http, "POST", "/api/v1/retire_workers", Some(r#"{"n": 2}"#), headers);
        check_refused(&s.http, "/api/v1/retire_workers", status, &body);
        let (status, body) = rask_tests::processes::http_stream_start(
            &s.http,
            "/status/events",
            headers,
            "data:",
            Duration::from_secs(2),
        );
        assert!(status == 401 && !body.contains("data:"), "/status/events: {body}");
        for w in &web {
            for path in ["/metrics", "/", "/no-such-path"] {
                let (status, body) = get(w, path, headers);
                check_refused(w, path, status, &body);
            }
        }
    }
    // Probes need no token, and /health says no more than "ok".
    assert_eq!(get(&s.http, "/health", &[]), (200, "ok".to_string()));
    for w in &web {
        assert_eq!(get(w, "/health", &[]), (200, "ok".to_string()));
    }
    // With the token (Bearer, or a browser's Basic login), everything answers.
    let login = basic(TOKEN);
    for headers in [authorized, [("Authorization", login.as_str())]] {
        for path in ["/status", "/status.json", "/api/v1/get_workers", "/metrics"] {
            let (status, body) = get(&s.http, path, &headers);
            assert_eq!(status, 200, "{path}: {body}");
        }
        let (status, body) = rask_tests::processes::http_stream_start(&s.http, "/status/events", &headers, "data:", T);
        assert!(status == 200 && body.contains("data:"), "/status/events: {body}");
    }
    assert!(get(&s.http, "/metrics", &authorized).1.contains("rask_scheduler_workers 2"));
    // The token never shows in the logs.
    drop(client);
    let mut sched = s.proc;
    assert!(!sched.output().contains(TOKEN));
    for w in &mut workers {
        assert!(!w.output().contains(TOKEN));
    }
}

/// `--metrics-open` leaves `/metrics` (and only it) to scrapers without
/// the token, on the scheduler and on workers.
#[test]
fn metrics_open_leaves_only_metrics_open() {
    let s = Scheduler::start(&["--token", "tok", "--metrics-open"]);
    let mut w = start_worker(WorkerKind::Test, &s.address, "open", 1, &["--token", "tok", "--metrics-open"]);
    let web = worker_http_address(&mut w);
    let (status, m) = s.get("/metrics");
    assert_eq!(status, 200, "{m}");
    assert!(m.contains("rask_scheduler_workers"), "{m}");
    let (status, m) = http(&web, "GET", "/metrics", None, &[]);
    assert_eq!(status, 200, "{m}");
    assert!(m.contains("rask_worker_threads 1"), "{m}");
    for path in ["/status", "/status.json", "/api/v1/get_workers"] {
        assert_eq!(s.get(path).0, 401, "{path}");
    }
    let data = worker_data_address(&mut w);
    assert!(fetch_from_worker(&data, &rask_core::Key::new("x"), None).unwrap_err().contains("token"));
}

/// Where test artifacts (screenshots) go: `<target>/artifacts`.
fn artifacts() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

#[test]
fn the_dashboard_shows_workers_and_progress_in_chromium() {
    let (s, _workers) = cluster(2, 1);
    let client = Client::connect(&s.address).expect("connect");
    // About 6 s of work on 2 threads: the page loads while it runs.
    let f = client.compute(&incs(300, 40));
    let shot = artifacts().join("dashboard.png");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/chromium.py");
    let probe = r#"(() => {
        const rows = [...document.querySelectorAll('#workers .worker-row')].map(r => r.dataset.name);
        const groups = [...document.querySelectorAll('#progress .progress-group')].map(g => g.dataset.group);
        const label = [...document.querySelectorAll('#progress .progress-group')].map(g => g.textContent).join(' ');
        const conn = document.getElementById('conn').textContent;
        return rows.length === 2 && groups.includes('slow_inc') && /\d+\s*\/\s*300/.test(label)
            ? {rows, groups, conn, label} : null;
    })()"#;
    let url = format!("http://{}/status", s.http);
    let out = std::process::Command::new("python3")
        .args([script, &url, shot.to_str().expect("utf-8 path"), "30", probe])
        .output()
        .expect("run python3 with the chromium driver");
    assert!(out.status.success(), "chromium driver failed: {}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the driver prints JSON");
    assert!(!seen.is_null(), "the dashboard never showed 2 workers and slow_inc progress");
    let mut rows: Vec<&str> = seen["rows"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    rows.sort_unstable();
    assert_eq!(rows, ["w0", "w1"]);
    assert_eq!(seen["conn"], "connected", "{seen}");
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false), "no screenshot at {shot:?}");
    assert_eq!(f.result_timeout(T).unwrap(), sum_inc(300));
}

/// The peak resident memory of a process, from /proc.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn spilling_keeps_a_worker_under_its_memory_limit() {
    let s = Scheduler::start(&[]);
    let limit: u64 = 200_000_000;
    let w = start_worker(WorkerKind::Test, &s.address, "small", 2, &["--memory-limit", &limit.to_string()]);
    s.wait_for_workers(1, T);
    let client = Client::connect(&s.address).expect("connect");
    // 40 blocks of 10 MB: twice what the worker may hold.
    let n = 10_000_000;
    let started = std::time::Instant::now();
    let blocks: Vec<Delayed<bytes::Bytes>> = (0..40).map(|i| client.persist(&block::delayed(i, n))).collect();
    assert!(
        rask_tests::eventually(T, || s.json("/status.json")["totals"]["tasks_by_state"]["memory"] == 40),
        "{}",
        s.json("/status.json")
    );
    assert!(
        rask_tests::eventually(T, || s.json("/status.json")["totals"]["spilled_bytes"].as_u64() > Some(150_000_000)),
        "nothing was spilled: {}",
        s.json("/status.json")["totals"]
    );
    eprintln!("worker peak RSS after storing: {} bytes ({:?})", peak_rss(w.pid()), started.elapsed());
    // Spilled values come back transparently, intact.
    let sums: Vec<Delayed<i64>> = blocks.iter().map(checksum::delayed).collect();
    let futures = client.compute_many(&sums.iter().collect::<Vec<_>>());
    for (i, f) in futures.iter().enumerate() {
        assert_eq!(f.result_timeout(T).unwrap(), expected_checksum(i as i64, n), "block {i}");
    }
    let peak = peak_rss(w.pid());
    eprintln!("worker peak RSS: {peak} bytes, limit {limit} ({:?})", started.elapsed());
    assert!(peak > 0 && peak < limit, "peak RSS {peak} bytes is over the {limit}-byte limit");
}

#[test]
fn sigterm_retires_a_worker_without_losing_its_data() {
    let (s, mut workers) = cluster(2, 1);
    let client = Client::connect(&s.address).expect("connect");
    let n = 100_000;
    let blocks: Vec<Delayed<bytes::Bytes>> = (0..10).map(|i| client.persist(&block::delayed(i, n))).collect();
    assert!(rask_tests::eventually(T, || s.json("/status.json")["totals"]["tasks_by_state"]["memory"] == 10));
    let held = |name: &str| {
        s.json("/status.json")["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .map_or(0, |w| w["keys"].as_u64().unwrap_or(0))
    };
    assert!(held("w0") > 0, "w0 holds nothing: {}", s.json("/status.json"));
    workers[0].terminate();
    let status = workers[0].wait_exit(T).expect("the worker exits after SIGTERM");
    assert!(status.success(), "{status:?}: {}", workers[0].output());
    s.wait_for_workers(1, T);
    let sums: Vec<Delayed<i64>> = blocks.iter().map(checksum::delayed).collect();
    let futures = client.compute_many(&sums.iter().collect::<Vec<_>>());
    for (i, f) in futures.iter().enumerate() {
        assert_eq!(f.result_timeout(T).unwrap(), expected_checksum(i as i64, n));
    }
    // 10 blocks once, 10 checksums: nothing was recomputed.
    assert_eq!(s.json("/status.json")["totals"]["completed_total"], 20);
}

#[test]
fn tls_encrypts_and_authenticates_grpc_and_https() {
    let pki = Pki::new("grpc");
    let (ca, cert, key) = (pki.path("ca.pem"), pki.path("node.pem"), pki.path("node.key"));
    let tls_args = ["--tls-ca-file", ca.as_str(), "--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let s = Scheduler::start(&tls_args);
    assert!(s.address.starts_with("tls://127.0.0.1:"), "{}", s.address);
    let workers: Vec<Proc> =
        (0..2).map(|i| start_worker(WorkerKind::Test, &s.address, &format!("tls{i}"), 1, &tls_args)).collect();

    // A client with the cluster's CA and its own certificate computes; the
    // final sum needs inputs held on both workers (a peer fetch over TLS)
    // and comes back through the scheduler (a gather over TLS).
    let security = rask::Security { token: None, tls: pki.files("ca.pem", Some("client")) };
    let client = Client::connect_with(&s.address, &security).expect("connect over TLS");
    let pids: Vec<Delayed<i64>> = (0..16).map(|i| worker_pid::delayed(i, 20)).collect();
    let futures = client.compute_many(&pids.iter().collect::<Vec<_>>());
    let mut seen: Vec<i64> = futures.iter().map(|f| f.result_timeout(T).unwrap()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 2, "16 tasks of 20 ms should use both workers: {seen:?}");
    let sums: Vec<Delayed<i64>> = (0..16).map(|i| slow_inc::delayed(i, 20)).collect();
    assert_eq!(client.compute(&total::delayed(sums)).result_timeout(T).unwrap(), sum_inc(16));
    let b = block::delayed(7, 3 << 20);
    assert_eq!(client.compute(&checksum::delayed(&b)).result_timeout(T).unwrap(), expected_checksum(7, 3 << 20));

    // Refusals, each with a message that says why.
    let refused = |address: &str, security: &rask::Security| match Client::connect_with(address, security) {
        Err(Error::Connect { message, .. }) => message,
        Ok(_) => panic!("{address} with {security:?} connected"),
        Err(other) => panic!("unexpected error {other}"),
    };
    let plain = s.address.replace("tls://", "tcp://");
    let m = refused(&plain, &rask::Security::default());
    assert!(m.contains("requires TLS") && m.contains("tls://"), "a plaintext client is told TLS is needed: {m}");
    // A plaintext worker is refused too (its message depends on when h2
    // reads the TLS alert: "h2 protocol error", "transport error" or
    // "operation was canceled"; the first two carry the same hint).
    let mut cmd = std::process::Command::new(rask_tests::processes::workspace_bin("rask-tests", "rask-test-worker"));
    cmd.args([plain.as_str(), "--name", "plain", "--nthreads", "1"]);
    let mut plain_worker = Proc::spawn("plain", cmd);
    assert!(plain_worker.wait_exit(T).is_some_and(|s| !s.success()), "a plaintext worker must not join");
    let m = refused(&plain, &security);
    assert!(m.contains("encryption is required"), "{m}");
    let m = refused(&s.address, &rask::Security { token: None, tls: pki.files("other-ca.pem", Some("client")) });
    assert!(m.to_lowercase().contains("certificate"), "a server certificate from an unknown CA: {m}");
    // Mutual TLS: no client certificate, no connection.
    let m = refused(&s.address, &rask::Security { token: None, tls: pki.files("ca.pem", None) });
    assert!(!m.is_empty());
    let bad = rask::Security { token: None, tls: rask::TlsFiles { key: None, ..pki.files("ca.pem", Some("client")) } };
    assert!(refused(&s.address, &bad).contains("--tls-key"));

    // HTTPS: the dashboard's API answers over TLS to anyone with the CA,
    // not over plaintext, and not to someone trusting another CA.
    let ca_pem = std::fs::read(&ca).expect("ca");
    let (status, body) =
        rask_tests::processes::https_get(&s.http, "localhost", &ca_pem, "/api/v1/get_workers").expect("HTTPS GET");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("json")["num_workers"], 2);
    assert_eq!(http(&s.http, "GET", "/health", None, &[]).0, 0, "plaintext HTTP must not be answered");
    let other = std::fs::read(pki.path("other-ca.pem")).expect("other ca");
    let err = rask_tests::processes::https_get(&s.http, "localhost", &other, "/health").expect_err("unknown CA");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // Workers serve their metrics over HTTPS too; the key never reaches a log.
    drop(client);
    let key_pem = std::fs::read_to_string(&key).expect("key");
    let key_line = key_pem.lines().nth(1).expect("key body");
    let mut sched = s.proc;
    assert!(!sched.output().contains(key_line));
    for mut w in workers {
        let line = w.output();
        let metrics = line
            .split("metrics at https://")
            .nth(1)
            .and_then(|r| r.split("/metrics").next())
            .unwrap_or_else(|| panic!("worker metrics URL in {line}"))
            .to_string();
        let (status, body) =
            rask_tests::processes::https_get(&metrics, "localhost", &ca_pem, "/metrics").expect("worker HTTPS");
        assert_eq!(status, 200);
        assert!(body.contains("rask_worker_threads 1"), "{body}");
        assert!(!line.contains(key_line));
    }
}

#[test]
fn graphs_reach_the_scheduler_in_the_order_they_were_made() {
    // `persist` sends a graph and returns at once, and the next graph uses
    // its key: sent each on a task of its own, the second could overtake
    // the first and be refused for a key "neither in the graph nor on the
    // cluster".
    let s = Scheduler::start(&[]);
    let _w = start_worker(WorkerKind::Test, &s.address, "order", 1, &[]);
    let client = Client::connect(&s.address).expect("connect");
    for i in 0..100 {
        let persisted = client.persist(&slow_inc::delayed(i, 0));
        assert_eq!(client.compute(&total::delayed(vec![persisted])).result_timeout(T).unwrap(), i + 1, "round {i}");
    }
}
