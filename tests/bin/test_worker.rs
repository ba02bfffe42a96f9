//! `rask-test-worker`: a worker binary built with the test ops, the way a
//! user builds a worker with their own registered functions. It takes the
//! same core arguments as `rask worker`.
//!
//! Usage: rask-test-worker [<scheduler>] [--nthreads N] [--name NAME]
//!        [--group GROUP] [--memory-limit BYTES] [--grace-period SECONDS]
//!        [--data-port P] [--http-port P]
//!        [--tls-ca-file PEM --tls-cert PEM --tls-key PEM] [--token TOKEN]
//!        [--metrics-open]
//!
//! As in a worker pod, the scheduler, name, group, contact host and token
//! may come from `RASK_SCHEDULER_ADDRESS`, `RASK_WORKER_NAME`,
//! `RASK_WORKER_GROUP`, `RASK_CONTACT_HOST` and `RASK_TOKEN` instead.

use std::time::Duration;

// The allocator and allocator options of the product's binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// `ops::link()` below makes sure the ops are linked in.

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

/// A flag's value, or else the environment variable's.
fn arg_or_env(args: &[String], flag: &str, var: &str) -> Option<String> {
    arg(args, flag).or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    rask::alloc::use_large_os_pages();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scheduler = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .or_else(|| std::env::var("RASK_SCHEDULER_ADDRESS").ok())
        .ok_or("usage: rask-test-worker <scheduler> [options]")?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    rask_tests::ops::link();
    let tls = rask::TlsFiles {
        ca_file: arg(&args, "--tls-ca-file").map(Into::into),
        cert: arg(&args, "--tls-cert").map(Into::into),
        key: arg(&args, "--tls-key").map(Into::into),
        server_name: None,
    }
    .load()?;
    let web = if tls.is_some() { "https" } else { "http" };
    let config = rask_worker::WorkerConfig {
        scheduler,
        name: arg_or_env(&args, "--name", "RASK_WORKER_NAME"),
        group: arg_or_env(&args, "--group", "RASK_WORKER_GROUP"),
        nthreads: arg(&args, "--nthreads").map(|n| n.parse()).transpose()?.unwrap_or(1),
        memory_limit: arg(&args, "--memory-limit").map(|n| n.parse()).transpose()?.unwrap_or(0),
        listen_host: "127.0.0.1".into(),
        contact_host: Some(arg_or_env(&args, "--contact-host", "RASK_CONTACT_HOST").unwrap_or("127.0.0.1".into())),
        data_port: arg(&args, "--data-port").map(|n| n.parse()).transpose()?.unwrap_or(0),
        http_port: arg(&args, "--http-port").map(|n| n.parse()).transpose()?.unwrap_or(0),
        grace_period: Duration::from_secs_f64(
            arg(&args, "--grace-period").map(|n| n.parse()).transpose()?.unwrap_or(10.0),
        ),
        tls,
        token: arg_or_env(&args, "--token", "RASK_TOKEN"),
        metrics_open: args.iter().any(|a| a == "--metrics-open")
            || std::env::var("RASK_METRICS_OPEN").is_ok_and(|v| v == "true" || v == "1"),
        ..rask_worker::WorkerConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            term.recv().await;
        };
        rask_worker::node::run(config, shutdown, |s| {
            println!("rask worker {} at {} (metrics at {web}://{}/metrics)", s.name, s.data_address, s.http_address);
        })
        .await
    })?;
    Ok(())
}
