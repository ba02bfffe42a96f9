//! The operator's client of the schedulers' HTTP API (what scale-down and
//! autoscaling call) against a real `rask scheduler` process that requires
//! a token and serves TLS, with a real `rask worker` to list and retire;
//! and, on the real API server, that a DaskCluster's annotation cannot
//! collect the schedulers' token.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rask_operator::scheduler_api::{SchedulerApi, SchedulerAuth, SchedulerUrl};
use rask_tests::pki::Pki;
use rask_tests::processes::{Scheduler, WorkerKind, start_worker};

const TOKEN: &str = "op-s3cret-token";
const T: Duration = Duration::from_secs(5);

async fn until_workers(api: &SchedulerApi, url: &SchedulerUrl, want: usize) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let names: Vec<String> = api.workers(url).await.map(|w| w.into_iter().collect()).unwrap_or_default();
        if names.len() == want || Instant::now() > end {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reaches_a_scheduler_that_requires_a_token_and_tls() {
    let pki = Pki::new("operator");
    let mut args = pki.node_args();
    args.extend(["--token".to_string(), TOKEN.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Blocking waits for the processes' first lines: fine on this multi-thread runtime.
    let s = Scheduler::start(&args);
    let _w = start_worker(WorkerKind::Rask, &s.address, "w0", 1, &args);
    let port = s.http.rsplit(':').next().expect("port");
    let url = SchedulerUrl::derived(format!("https://localhost:{port}"));

    let auth = SchedulerAuth {
        token: Some(TOKEN.into()),
        allow_plaintext_token: false,
        ca_file: Some(pki.path("ca.pem").into()),
        server_name: None,
    };
    let api = SchedulerApi::with_auth(T, &auth).expect("operator's scheduler client");
    assert_eq!(api.scheme(), "https");
    assert_eq!(until_workers(&api, &url, 1).await, ["w0"]);
    assert!(api.adaptive_target(&url).await.is_ok());
    // The token never shows in what the operator might log.
    assert!(!format!("{api:?} {auth:?}").contains(TOKEN));

    // Refusals name their cause: no token, a CA that signed nothing of
    // ours, a certificate not made for the name, plain HTTP.
    let no_token = SchedulerApi::with_auth(T, &SchedulerAuth { token: None, ..auth.clone() }).expect("client");
    let e = no_token.workers(&url).await.expect_err("no token").to_string();
    assert!(e.contains("401") && e.contains("Unauthorized"), "{e}");
    // The same scheduler named by a URL the operator did not derive (a
    // user's annotation): the token is not sent, so it is refused.
    let e =
        api.workers(&SchedulerUrl::untrusted(url.base())).await.expect_err("no token to untrusted URLs").to_string();
    assert!(e.contains("401"), "{e}");
    let other =
        SchedulerApi::with_auth(T, &SchedulerAuth { ca_file: Some(pki.path("other-ca.pem").into()), ..auth.clone() })
            .expect("client");
    let e = other.workers(&url).await.expect_err("unknown CA").to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let misnamed = SchedulerApi::with_auth(T, &SchedulerAuth { server_name: Some("elsewhere".into()), ..auth.clone() })
        .expect("client");
    let e = misnamed.workers(&url).await.expect_err("wrong name").to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // A token without a CA would travel in the clear: refused at start,
    // unless plaintext is allowed explicitly.
    let e = SchedulerApi::with_auth(T, &SchedulerAuth { ca_file: None, ..auth.clone() })
        .expect_err("a token over plain HTTP")
        .to_string();
    assert!(e.contains("plain HTTP"), "{e}");
    let plain =
        SchedulerApi::with_auth(T, &SchedulerAuth { ca_file: None, allow_plaintext_token: true, ..auth.clone() })
            .expect("client");
    assert_eq!(plain.scheme(), "http");
    let plain_url = SchedulerUrl::derived(format!("http://localhost:{port}"));
    assert!(plain.workers(&plain_url).await.is_err(), "plaintext must not be answered");
    // A fixed server name verifies in place of the URL's host.
    let named = SchedulerApi::with_auth(T, &SchedulerAuth { server_name: Some("localhost".into()), ..auth.clone() })
        .expect("client");
    assert_eq!(
        named.workers(&SchedulerUrl::derived(format!("https://127.0.0.1:{port}"))).await.expect("by fixed name").len(),
        1
    );
    // A CA file that holds no certificate is a configuration error at start.
    let e = SchedulerApi::with_auth(T, &SchedulerAuth { ca_file: Some(pki.path("node.key").into()), ..auth.clone() })
        .expect_err("a key is not a CA")
        .to_string();
    assert!(e.contains("no PEM certificate"), "{e}");

    // Scale-down's call: the worker retires and leaves.
    api.retire(&url, &["w0".to_string()], Duration::from_secs(60)).await.expect("retire_workers over TLS");
    assert_eq!(until_workers(&api, &url, 0).await, Vec::<String>::new());
}

/// A plain-HTTP listener on loopback, as an attacker would run one: answers
/// every request with an adaptive target and keeps what it was sent.
struct Listener {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    fn start() -> Listener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = vec![0u8; 16 << 10];
                let mut got = Vec::new();
                while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock().unwrap().push(String::from_utf8_lossy(&got).to_string());
                let body = r#"{"workers": 1, "workers_list": [], "idle_since": null}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Listener { port, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The operator holds the schedulers' token (and, at worst, may send it
/// over plain HTTP). A DaskCluster whose `rask.dev/scheduler-http-url`
/// annotation points at a listener: by default the operator ignores the
/// annotation (the listener hears nothing while the autoscaler asks the
/// Service it derived); with `--scheduler-url-annotation` it calls the
/// listener, but never with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dask_cluster_annotation_cannot_collect_the_token() {
    let env = support::TestEnv::new("token-leak").await;
    let listener = Listener::start();
    let _agent = env.node_agent(None);
    let with_token = |c: &mut rask_operator::controller::ControllerConfig| {
        let auth = SchedulerAuth { token: Some(TOKEN.into()), allow_plaintext_token: true, ..SchedulerAuth::default() };
        c.scheduler = SchedulerApi::with_auth(T, &auth).expect("client");
    };
    let operator = env.start_operator_with(with_token);
    let yaml = format!(
        "apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: leak\n  annotations: {{rask.dev/scheduler-http-url: \"http://127.0.0.1:{}\"}}\nspec:\n  worker:\n    replicas: 1\n  autoscaling: {{minimum: 0, maximum: 3}}\n",
        listener.port
    );
    let out = env.apply(&yaml);
    assert!(out.ok, "{}", out.stderr);
    // The autoscaler runs and asks the scheduler it derived (which does not
    // resolve here), not the annotation's URL.
    let api = env.api::<rask_operator::crd::DaskCluster>();
    let holding =
        || async { api.get("leak").await.ok().and_then(|dc| dc.status?.autoscaling?.holding).unwrap_or_default() };
    let asked =
        support::eventually(Duration::from_secs(60), || async { holding().await == "SchedulerUnavailable" }).await;
    assert!(asked, "the autoscaler did not try the scheduler: holding {:?}", holding().await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(listener.requests(), Vec::<String>::new(), "the annotation was honoured without the flag");
    operator.stop().await;

    // Honoured on request: the listener is called, never with the token.
    let operator = env.start_operator_with(|c| {
        with_token(c);
        c.scheduler_url_annotation = true;
    });
    let called = support::eventually(Duration::from_secs(60), || async { listener.requests().len() >= 3 }).await;
    assert!(called, "the operator never called the annotation's URL");
    operator.stop().await;
    for request in listener.requests() {
        let lower = request.to_ascii_lowercase();
        assert!(!lower.contains("authorization") && !request.contains(TOKEN), "the token leaked: {request}");
        assert!(request.starts_with("GET /api/v1/"), "{request}");
    }
}
