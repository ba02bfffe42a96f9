//! The operator's client of the schedulers' HTTP API (what scale-down and
//! autoscaling call) against a real `rask scheduler` process that requires
//! a token and serves TLS, with a real `rask worker` to list and retire.

use std::time::{Duration, Instant};

use rask_operator::scheduler_api::{SchedulerApi, SchedulerAuth};
use rask_tests::pki::Pki;
use rask_tests::processes::{Scheduler, WorkerKind, start_worker};

const TOKEN: &str = "op-s3cret-token";
const T: Duration = Duration::from_secs(5);

async fn until_workers(api: &SchedulerApi, url: &str, want: usize) -> Vec<String> {
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
    let url = format!("https://localhost:{port}");

    let auth = SchedulerAuth { token: Some(TOKEN.into()), ca_file: Some(pki.path("ca.pem").into()), server_name: None };
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
    assert!(e.contains("403") && e.contains("Unauthorized"), "{e}");
    let other =
        SchedulerApi::with_auth(T, &SchedulerAuth { ca_file: Some(pki.path("other-ca.pem").into()), ..auth.clone() })
            .expect("client");
    let e = other.workers(&url).await.expect_err("unknown CA").to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let misnamed = SchedulerApi::with_auth(T, &SchedulerAuth { server_name: Some("elsewhere".into()), ..auth.clone() })
        .expect("client");
    let e = misnamed.workers(&url).await.expect_err("wrong name").to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let plain = SchedulerApi::with_auth(T, &SchedulerAuth { ca_file: None, ..auth.clone() }).expect("client");
    assert_eq!(plain.scheme(), "http");
    assert!(plain.workers(&format!("http://localhost:{port}")).await.is_err(), "plaintext must not be answered");
    // A fixed server name verifies in place of the URL's host.
    let named = SchedulerApi::with_auth(T, &SchedulerAuth { server_name: Some("localhost".into()), ..auth.clone() })
        .expect("client");
    assert_eq!(named.workers(&format!("https://127.0.0.1:{port}")).await.expect("by fixed name").len(), 1);
    // A CA file that holds no certificate is a configuration error at start.
    let e = SchedulerApi::with_auth(T, &SchedulerAuth { ca_file: Some(pki.path("node.key").into()), ..auth.clone() })
        .expect_err("a key is not a CA")
        .to_string();
    assert!(e.contains("no PEM certificate"), "{e}");

    // Scale-down's call: the worker retires and leaves.
    api.retire(&url, &["w0".to_string()], Duration::from_secs(60)).await.expect("retire_workers over TLS");
    assert_eq!(until_workers(&api, &url, 0).await, Vec::<String>::new());
}
