//! The `rask operator` and `rask crdgen` subcommands: clap arguments and the
//! thin entry points the `rask` binary calls. The work is in [`crate::run`]
//! and [`crate::crd`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tracing::info;

use crate::controller::ControllerConfig;
use crate::leader::LeaderConfig;
use crate::scheduler_api::{SchedulerApi, SchedulerAuth};
use crate::{Error, OperatorConfig, Result};

#[derive(Args, Debug)]
pub struct OperatorArgs {
    /// Watch this namespace only (default: all namespaces).
    #[arg(long, env = "RASK_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Port of /metrics, /healthz and /readyz.
    #[arg(long, default_value_t = 8080, env = "RASK_OPERATOR_METRICS_PORT")]
    pub metrics_port: u16,
    /// Address to bind the metrics port on.
    #[arg(long, default_value = "0.0.0.0")]
    pub metrics_host: String,
    /// Run without leader election (only safe with a single replica).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "rask-operator")]
    pub lease_name: String,
    /// Namespace of the leader Lease (default: --namespace, else
    /// $POD_NAMESPACE, else "default").
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease (default: $POD_NAME, else host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
    /// Seconds between election rounds.
    #[arg(long, default_value_t = 2)]
    pub lease_retry: u64,
    /// Seconds one retire_workers call may take (the workers hand their data to peers).
    #[arg(long, default_value_t = 120)]
    pub retire_timeout: u64,
    /// The token schedulers require (their `--token`/`RASK_TOKEN`), sent to
    /// every scheduler's HTTP API. Give it through the environment (a
    /// Secret), not the command line, where `ps` shows it.
    #[arg(long, env = "RASK_SCHEDULER_TOKEN", hide_env_values = true)]
    pub scheduler_token: Option<String>,
    /// Send the schedulers' token over plain HTTP (no --scheduler-ca-file).
    /// For tests on loopback only: anyone on the path reads the token.
    #[arg(long, env = "RASK_SCHEDULER_TOKEN_OVER_HTTP")]
    pub scheduler_token_over_http: bool,
    /// Honour the annotation rask.dev/scheduler-http-url on DaskClusters
    /// (a scheduler the operator does not run, or a test's). Off by
    /// default; calls to such URLs never carry the token.
    #[arg(long, env = "RASK_OPERATOR_SCHEDULER_URL_ANNOTATION")]
    pub scheduler_url_annotation: bool,
    /// The CA (PEM) of the schedulers' certificates: the operator then
    /// speaks HTTPS to schedulers, trusting this CA only.
    #[arg(long, env = "RASK_SCHEDULER_TLS_CA_FILE")]
    pub scheduler_ca_file: Option<PathBuf>,
    /// The name to verify in schedulers' certificates instead of their
    /// Service's DNS name (a certificate shared by the pods).
    #[arg(long, env = "RASK_SCHEDULER_TLS_SERVER_NAME")]
    pub scheduler_tls_server_name: Option<String>,
    /// Path of a kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Apply this version's CRDs (server-side apply) before starting: the
    /// CRD upgrade path for installs without Helm. Needs RBAC on
    /// customresourcedefinitions.
    #[arg(long, env = "RASK_OPERATOR_APPLY_CRDS")]
    pub apply_crds: bool,
}

#[derive(Args, Debug)]
pub struct CrdgenArgs {
    /// Directory to write the CRD YAML files into.
    #[arg(long, default_value = "crds")]
    pub out: PathBuf,
}

/// `rask crdgen`: writes crds/*.yaml from the Rust types.
pub fn crdgen(args: &CrdgenArgs) -> Result<()> {
    for path in crate::crd::write_crds(&args.out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{}-{}", if host.is_empty() { "rask-operator" } else { &host }, std::process::id())
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Config(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| Error::Config(format!("no Kubernetes configuration: {e}")))?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// SIGTERM (what Kubernetes sends) or SIGINT starts the graceful stop.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    info!("signal received: stopping gracefully");
}

/// `rask operator`: runs the controllers until SIGTERM.
pub fn operator(args: &OperatorArgs) -> Result<()> {
    let host: std::net::IpAddr =
        args.metrics_host.parse().map_err(|e| Error::Config(format!("--metrics-host {}: {e}", args.metrics_host)))?;
    let lease_namespace = args
        .lease_namespace
        .clone()
        .or_else(|| args.namespace.clone())
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let config = OperatorConfig {
        namespace: args.namespace.clone(),
        metrics_addr: SocketAddr::new(host, args.metrics_port),
        leader_election: !args.no_leader_election,
        leader: LeaderConfig {
            lease_name: args.lease_name.clone(),
            namespace: lease_namespace,
            identity: args.identity.clone().unwrap_or_else(identity),
            lease_duration: Duration::from_secs(args.lease_duration.max(1)),
            renew_deadline: Duration::from_secs((args.lease_duration * 2 / 3).max(1)),
            retry_period: Duration::from_secs(args.lease_retry.max(1)),
        },
        controller: ControllerConfig {
            retire_timeout: Duration::from_secs(args.retire_timeout),
            scheduler: SchedulerApi::with_auth(
                Duration::from_secs(5),
                &SchedulerAuth {
                    token: args.scheduler_token.clone(),
                    allow_plaintext_token: args.scheduler_token_over_http,
                    ca_file: args.scheduler_ca_file.clone(),
                    server_name: args.scheduler_tls_server_name.clone(),
                },
            )?,
            scheduler_url_annotation: args.scheduler_url_annotation,
            ..ControllerConfig::default()
        },
        print_address: true,
        apply_crds: args.apply_crds,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let client = client(args.kubeconfig.as_ref()).await?;
        crate::run(client, config, shutdown_signal()).await
    })
}
