//! `python -m rask worker`: rask's worker node, hosting this interpreter.
//!
//! The worker is `rask_worker::node::run`, as in `rask worker`; because this
//! module registers `python.call`, the worker announces the Python
//! capability and the scheduler sends it Python functions as well as every
//! built-in op. The Python layer parses the same options as `rask worker`
//! (`rask/__main__.py`); this runs the nodes with the GIL released until
//! SIGTERM or SIGINT, which retire them gracefully.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use rask_worker::WorkerConfig;

/// Options of `rask worker`, already parsed by the Python layer.
#[pyfunction]
#[pyo3(signature = (
    scheduler, *, nthreads, memory_limit, nworkers = 1, name = None, group = None,
    listen_host = "0.0.0.0".to_string(), contact_host = None, data_port = 0, http_port = 0, token = None,
    tls_ca_file = None, tls_cert = None, tls_key = None, tls_server_name = None,
    grace_period = 30.0, local_directory = None,
))]
#[allow(clippy::too_many_arguments)] // one keyword per `rask worker` option
fn run_worker(
    py: Python<'_>,
    scheduler: String,
    nthreads: usize,
    memory_limit: u64,
    nworkers: usize,
    name: Option<String>,
    group: Option<String>,
    listen_host: String,
    contact_host: Option<String>,
    data_port: u16,
    http_port: u16,
    token: Option<String>,
    tls_ca_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_server_name: Option<String>,
    grace_period: f64,
    local_directory: Option<PathBuf>,
) -> PyResult<()> {
    crate::link_builtin_ops();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tonic=warn,h2=warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let tls = rask_proto::transport::TlsFiles {
        ca_file: tls_ca_file,
        cert: tls_cert,
        key: tls_key,
        server_name: tls_server_name,
    }
    .load()
    .map_err(|e| PyValueError::new_err(e.to_string()))?;
    if tls.as_ref().is_some_and(|t| !t.can_serve()) {
        return Err(PyValueError::new_err(
            "a worker in a TLS cluster serves its data over TLS: give --tls-cert and --tls-key",
        ));
    }
    let nworkers = nworkers.max(1);
    let web = if tls.is_some() { "https" } else { "http" };
    let configs: Vec<WorkerConfig> = (0..nworkers)
        .map(|i| WorkerConfig {
            scheduler: scheduler.clone(),
            name: match (&name, nworkers) {
                (Some(n), 1) => Some(n.clone()),
                (Some(n), _) => Some(format!("{n}-{i}")),
                (None, _) => None,
            },
            group: group.clone().filter(|g| !g.is_empty()),
            nthreads: nthreads.max(1),
            memory_limit,
            listen_host: listen_host.clone(),
            contact_host: contact_host.clone(),
            data_port: if data_port == 0 { 0 } else { data_port + i as u16 },
            http_port: if http_port == 0 { 0 } else { http_port + i as u16 },
            token: token.clone().filter(|t| !t.is_empty()),
            tls: tls.clone(),
            grace_period: Duration::from_secs_f64(grace_period.max(0.0)),
            local_directory: local_directory
                .as_ref()
                .map(|d| if nworkers > 1 { d.join(format!("worker-{i}")) } else { d.clone() }),
            ..WorkerConfig::default()
        })
        .collect();
    let outcome = py.detach(move || crate::errors::guarded(move || serve(configs, web)))?;
    outcome.map_err(PyOSError::new_err)
}

fn serve(configs: Vec<WorkerConfig>, web: &'static str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(configs.len().clamp(1, 4))
        .enable_all()
        .thread_name("rask-worker")
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut handles = Vec::new();
        for config in configs {
            let mut stop = stop_rx.clone();
            handles.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                rask_worker::node::run(config, shutdown, |s| {
                    println!(
                        "rask worker {} at {} (metrics at {web}://{}/metrics; runs Python functions)",
                        s.name, s.data_address, s.http_address
                    );
                })
                .await
            }));
        }
        let signals = tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = stop_tx.send(true);
        });
        let mut failure = None;
        for h in handles {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failure = Some(e.to_string()),
                Err(e) => failure = Some(format!("worker task failed: {e}")),
            }
        }
        signals.abort();
        failure.map_or(Ok(()), Err)
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_worker, m)?)?;
    Ok(())
}
