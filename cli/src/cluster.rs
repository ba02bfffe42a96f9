//! `rask scheduler` and `rask worker`: the processes of a distributed cluster.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rask_scheduler::server::{SchedulerServer, ServerConfig};
use rask_worker::WorkerConfig;

/// TLS files, as Dask's `--tls-ca-file`, `--tls-cert` and `--tls-key`.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// CA certificate (PEM) that signs the cluster's certificates. A server
    /// with a CA requires client certificates signed by it on gRPC.
    #[arg(long, env = "RASK_TLS_CA_FILE")]
    tls_ca_file: Option<std::path::PathBuf>,
    /// This process's certificate (PEM). With --tls-key, it serves TLS:
    /// its address becomes tls://, HTTP becomes HTTPS.
    #[arg(long, env = "RASK_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// This process's private key (PEM).
    #[arg(long, env = "RASK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Name to verify in servers' certificates instead of the address's host.
    #[arg(long, env = "RASK_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
}

impl TlsArgs {
    fn load(&self) -> anyhow::Result<Option<std::sync::Arc<rask_proto::transport::Tls>>> {
        let files = rask_proto::transport::TlsFiles {
            ca_file: self.tls_ca_file.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            server_name: self.tls_server_name.clone(),
        };
        Ok(files.load()?)
    }
}

#[derive(Args, Debug)]
pub struct SchedulerArgs {
    /// Address to bind both ports on.
    #[arg(long, default_value = "0.0.0.0", env = "RASK_HOST")]
    host: String,
    /// gRPC port for clients and workers.
    #[arg(long, default_value_t = 8786, env = "RASK_PORT")]
    port: u16,
    /// HTTP port: dashboard (/status), API (/api/v1), /metrics and /health.
    #[arg(long, default_value_t = 8787, env = "RASK_HTTP_PORT")]
    http_port: u16,
    /// Require this shared token on every port: gRPC from clients and
    /// workers, and every HTTP endpoint but /health (the dashboard asks a
    /// browser for it as the password of a login prompt).
    #[arg(long, env = "RASK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve /metrics without the token (by default a scrape must send
    /// `Authorization: Bearer <token>` when a token is set).
    #[arg(long, env = "RASK_METRICS_OPEN")]
    metrics_open: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// Seconds of work the adaptive target aims for (Dask's target-duration).
    #[arg(long, default_value_t = 5.0)]
    target_duration: f64,
    /// Seconds without a heartbeat after which a worker is considered dead.
    #[arg(long, default_value_t = 30.0)]
    heartbeat_timeout: f64,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The scheduler, e.g. tcp://127.0.0.1:8786.
    #[arg(env = "RASK_SCHEDULER_ADDRESS")]
    scheduler: String,
    /// Threads per worker (default: one per core, split among --nworkers).
    #[arg(long)]
    nthreads: Option<usize>,
    /// Memory per worker: bytes, a size such as 4GiB or 500MB, a fraction of
    /// the machine's memory such as 0.5, or "auto" (the machine's memory
    /// split among --nworkers).
    #[arg(long, default_value = "auto")]
    memory_limit: String,
    /// Worker name (default: its data address).
    #[arg(long, env = "RASK_WORKER_NAME")]
    name: Option<String>,
    /// Worker group (the operator sets it): the scheduler's adaptive target
    /// is given per group (default: "default").
    #[arg(long, env = "RASK_WORKER_GROUP")]
    group: Option<String>,
    /// Workers to start in this process.
    #[arg(long, default_value_t = 1)]
    nworkers: usize,
    /// Address to bind the data and HTTP ports on.
    #[arg(long, default_value = "0.0.0.0")]
    listen_host: String,
    /// Host that peers and the scheduler use to reach this worker
    /// (default: this machine's address on the route to the scheduler).
    #[arg(long, env = "RASK_CONTACT_HOST")]
    contact_host: Option<String>,
    /// Port of the data service (0: any free port).
    #[arg(long, default_value_t = 0)]
    data_port: u16,
    /// Port of /health and /metrics (0: any free port).
    #[arg(long, default_value_t = 0)]
    http_port: u16,
    /// The cluster's shared token: presented to the scheduler and to peers,
    /// and required on this worker's data service and HTTP port (but
    /// /health).
    #[arg(long, env = "RASK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve /metrics without the token.
    #[arg(long, env = "RASK_METRICS_OPEN")]
    metrics_open: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// Seconds a graceful shutdown (SIGTERM) may take to hand data to peers.
    #[arg(long, default_value_t = 30.0)]
    grace_period: f64,
    /// Directory for values spilled under the memory limit (default: a
    /// fresh directory in the system's temp dir, removed on exit).
    #[arg(long, env = "RASK_LOCAL_DIRECTORY")]
    local_directory: Option<std::path::PathBuf>,
}

/// Total memory of the machine (or of the cgroup it runs in), from /proc.
fn system_memory() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<u64>().ok());
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
    });
    match (cgroup, meminfo) {
        (Some(c), Some(m)) => Some(c.min(m)),
        (c, m) => c.or(m),
    }
}

/// Parses a memory limit as Dask does: `4GiB`, `500MB`, `1e9`, `0.5`
/// (a fraction of the machine), `auto`, or `0` for no limit.
pub fn parse_memory_limit(s: &str, nworkers: usize) -> anyhow::Result<u64> {
    let s = s.trim();
    let total = || system_memory().context("cannot read the machine's memory size");
    if s.eq_ignore_ascii_case("auto") {
        return Ok(total()? / nworkers.max(1) as u64);
    }
    // A plain number (`1e9` too) has no unit; otherwise the unit starts at
    // the first letter.
    let split =
        if s.parse::<f64>().is_ok() { s.len() } else { s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()) };
    let (number, unit) = s.split_at(split);
    let value: f64 = number.trim().parse().with_context(|| format!("bad memory limit {s:?}"))?;
    if !value.is_finite() || value < 0.0 {
        anyhow::bail!("bad memory limit {s:?}: must be a non-negative size");
    }
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" if value > 0.0 && value <= 1.0 => return Ok((total()? as f64 * value) as u64),
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => anyhow::bail!("bad memory limit {s:?}: unknown unit {other:?}"),
    };
    Ok((value * scale) as u64)
}

/// The address to print for a bound socket: an unspecified bind address is
/// shown as this machine's address on its default route, or loopback.
fn shown_host(bound: std::net::IpAddr) -> String {
    if !bound.is_unspecified() {
        return bound.to_string();
    }
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub fn scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let tls = args.tls.load()?;
    if tls.as_ref().is_some_and(|t| !t.can_serve()) {
        anyhow::bail!("the scheduler serves TLS only with a certificate and key (--tls-cert, --tls-key)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("rask-scheduler").build()?;
    runtime.block_on(async {
        let config = ServerConfig {
            host: args.host,
            port: args.port,
            http_port: args.http_port,
            token: args.token.filter(|t| !t.is_empty()),
            metrics_open: args.metrics_open,
            tls: tls.clone(),
            target_duration: args.target_duration,
            heartbeat_timeout: Duration::from_secs_f64(args.heartbeat_timeout.max(0.1)),
            ..ServerConfig::default()
        };
        let server = SchedulerServer::start(config).await.context("cannot start the scheduler")?;
        let grpc = server.grpc_addr();
        let http = server.http_addr();
        let scheme = rask_proto::transport::scheme(tls.as_deref());
        let web = if tls.is_some() { "https" } else { "http" };
        println!("rask scheduler at {scheme}://{}:{}", shown_host(grpc.ip()), grpc.port());
        println!("dashboard at {web}://{}:{}/status", shown_host(http.ip()), http.port());
        terminated().await;
        tracing::info!("stopping the scheduler");
        server.shutdown().await;
        Ok(())
    })
}

pub fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let nworkers = args.nworkers.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let nthreads = args.nthreads.unwrap_or_else(|| (cores / nworkers).max(1));
    let memory_limit = parse_memory_limit(&args.memory_limit, nworkers)?;
    let tls = args.tls.load()?;
    if tls.as_ref().is_some_and(|t| !t.can_serve()) {
        anyhow::bail!("a worker in a TLS cluster serves its data over TLS: give --tls-cert and --tls-key");
    }
    let web = if tls.is_some() { "https" } else { "http" };
    // One worker's control, transfers and HTTP run on one thread beside its
    // executor threads (Dask's event loop): on a small machine a pool of
    // runtime threads mostly wakes itself up. Several workers get a pool.
    let runtime = if nworkers == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().thread_name("rask-worker").build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("rask-worker").build()?
    };
    runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut handles = Vec::new();
        for i in 0..nworkers {
            let name = match (&args.name, nworkers) {
                (Some(n), 1) => Some(n.clone()),
                (Some(n), _) => Some(format!("{n}-{i}")),
                (None, _) => None,
            };
            let config = WorkerConfig {
                scheduler: args.scheduler.clone(),
                name,
                group: args.group.clone().filter(|g| !g.is_empty()),
                nthreads,
                memory_limit,
                listen_host: args.listen_host.clone(),
                contact_host: args.contact_host.clone(),
                data_port: if args.data_port == 0 { 0 } else { args.data_port + i as u16 },
                http_port: if args.http_port == 0 { 0 } else { args.http_port + i as u16 },
                token: args.token.clone().filter(|t| !t.is_empty()),
                metrics_open: args.metrics_open,
                tls: tls.clone(),
                grace_period: Duration::from_secs_f64(args.grace_period.max(0.0)),
                local_directory: args
                    .local_directory
                    .as_ref()
                    .map(|d| if nworkers > 1 { d.join(format!("worker-{i}")) } else { d.clone() }),
                ..WorkerConfig::default()
            };
            let mut stop = stop_rx.clone();
            handles.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                rask_worker::node::run(config, shutdown, |s| {
                    println!(
                        "rask worker {} at {} (metrics at {web}://{}/metrics)",
                        s.name, s.data_address, s.http_address
                    );
                })
                .await
            }));
        }
        let all = futures_join(handles);
        tokio::pin!(all);
        let results = tokio::select! {
            r = &mut all => r,
            () = terminated() => {
                let _ = stop_tx.send(true);
                all.await
            }
        };
        for r in results {
            r.context("worker task failed")??;
        }
        Ok(())
    })
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_parse_like_dask() {
        assert_eq!(parse_memory_limit("4GiB", 1).unwrap(), 4 << 30);
        assert_eq!(parse_memory_limit("500MB", 1).unwrap(), 500_000_000);
        assert_eq!(parse_memory_limit("1e9", 1).unwrap(), 1_000_000_000);
        assert_eq!(parse_memory_limit("0", 1).unwrap(), 0);
        assert!(parse_memory_limit("0.5", 1).unwrap() > 0);
        assert!(parse_memory_limit("auto", 2).unwrap() > 0);
        assert!(parse_memory_limit("4 parsecs", 1).is_err());
        assert!(parse_memory_limit("-1GB", 1).is_err());
        assert!(parse_memory_limit("lots", 1).is_err());
    }
}
