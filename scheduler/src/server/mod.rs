//! The distributed scheduler: the same [`SchedulerState`](crate::SchedulerState)
//! the local cluster drives, served over gRPC to clients and workers and over
//! HTTP to people, Prometheus and the operator.
//!
//! One thread (the core) owns the state machine. gRPC and HTTP handlers run
//! on tokio and talk to it through a channel; a ticker checks heartbeats and
//! refreshes metrics.

mod core;
mod grpc;
mod http;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rask_proto::MAX_MESSAGE_BYTES;
use rask_proto::pb::scheduler_server::SchedulerServer as SchedulerService;
use rask_proto::pb::worker_control_server::WorkerControlServer;
use rask_proto::transport::{self, Tls};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::TcpListenerStream;

use self::core::{Core, CoreConfig, CoreMsg};
use crate::SchedulerConfig;

/// Settings of `rask scheduler`.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to bind, e.g. `0.0.0.0` or `127.0.0.1`.
    pub host: String,
    /// gRPC port for clients and workers (Dask's 8786); 0 picks a free one.
    pub port: u16,
    /// HTTP port for the dashboard, API and metrics (Dask's 8787).
    pub http_port: u16,
    /// When set, every port requires this token: gRPC from clients and
    /// workers, and every HTTP endpoint but `/health` (and `/metrics` with
    /// `metrics_open`).
    pub token: Option<String>,
    /// Serve `/metrics` without the token (for Prometheus set-ups that
    /// cannot present one). Off by default.
    pub metrics_open: bool,
    /// TLS for gRPC (mutual when a CA is given) and HTTPS; plain when `None`.
    pub tls: Option<Arc<Tls>>,
    pub scheduler: SchedulerConfig,
    /// The adaptive target aims to finish the current work in this many seconds.
    pub target_duration: f64,
    /// A worker silent this long is considered dead.
    pub heartbeat_timeout: Duration,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("http_port", &self.http_port)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("metrics_open", &self.metrics_open)
            .field("tls", &self.tls)
            .field("target_duration", &self.target_duration)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8786,
            http_port: 8787,
            token: None,
            metrics_open: false,
            tls: None,
            // Messages to workers cross a network and the processes share
            // cores: keep more tiny root tasks buffered on each worker than
            // in-process (50 ms of work per thread, up to 4,096 tasks), so a
            // worker keeps running while the scheduler waits for a CPU.
            scheduler: SchedulerConfig {
                root_buffer_seconds: 0.05,
                root_buffer_tasks: 4096,
                ..SchedulerConfig::default()
            },
            target_duration: 5.0,
            heartbeat_timeout: Duration::from_secs(30),
        }
    }
}

/// A running scheduler. Dropping it does not stop it; call [`Self::shutdown`].
#[derive(Debug)]
pub struct SchedulerServer {
    grpc: SocketAddr,
    http: SocketAddr,
    stop: watch::Sender<bool>,
    core: mpsc::UnboundedSender<CoreMsg>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    core_thread: Option<std::thread::JoinHandle<()>>,
}

impl SchedulerServer {
    /// Binds both ports and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: ServerConfig) -> std::io::Result<Self> {
        let metrics = Arc::new(metrics::Metrics::new().map_err(std::io::Error::other)?);
        let (core_tx, core_rx) = mpsc::unbounded_channel();
        let core = Core::new(
            CoreConfig {
                scheduler: config.scheduler.clone(),
                target_duration: config.target_duration,
                heartbeat_timeout: config.heartbeat_timeout,
            },
            metrics.clone(),
        );
        let core_thread =
            std::thread::Builder::new().name("rask-scheduler-core".into()).spawn(move || core.run(core_rx))?;
        let handle = grpc::Handle::new(
            core_tx.clone(),
            config.token.as_deref().map(Arc::from),
            config.tls.clone(),
            metrics,
            config.metrics_open,
        );
        let mut grpc_server = transport::grpc_server(config.tls.as_deref())
            .map_err(std::io::Error::other)?
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)));

        let grpc_listener = TcpListener::bind((config.host.as_str(), config.port)).await?;
        let http_listener = TcpListener::bind((config.host.as_str(), config.http_port)).await?;
        let grpc_addr = grpc_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);

        let mut tasks = Vec::new();
        let scheduler_svc = SchedulerService::new(handle.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let worker_svc = WorkerControlServer::new(handle.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut grpc_stop = stop_rx.clone();
        let incoming = TcpListenerStream::new(grpc_listener);
        tasks.push(tokio::spawn(async move {
            let served = grpc_server
                .add_service(scheduler_svc)
                .add_service(worker_svc)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = grpc_stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "gRPC server failed");
            }
        }));
        let mut http_stop = stop_rx.clone();
        let app = http::router(handle);
        let http_tls = config.tls.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = http_stop.wait_for(|s| *s).await;
            };
            let served = transport::serve_http(http_listener, app, http_tls, shutdown).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }));
        let ticker = core_tx.clone();
        let mut tick_stop = stop_rx;
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = interval.tick() => {
                        if ticker.send(CoreMsg::Tick).is_err() {
                            return;
                        }
                    }
                    _ = tick_stop.wait_for(|s| *s) => return,
                }
            }
        }));
        tracing::info!(grpc = %grpc_addr, http = %http_addr, "scheduler started");
        Ok(Self { grpc: grpc_addr, http: http_addr, stop, core: core_tx, tasks, core_thread: Some(core_thread) })
    }

    /// The gRPC address as bound.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Stops serving: open streams end, the core thread exits.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = self.core.send(CoreMsg::Shutdown);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        if let Some(t) = self.core_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rask_core::{Arg, Key, Params, Task, Value};
    use rask_proto::pb::{self, scheduler_client::SchedulerClient};

    fn task(key: &str, inputs: &[&str]) -> pb::Task {
        let args = if inputs.is_empty() {
            vec![Arg::Value(Value::Int(1))]
        } else {
            inputs.iter().map(|k| Arg::Key(Key::from(*k))).collect()
        };
        rask_proto::task_to_pb(&Task::new(Key::from(key), "rask.identity", Params::default(), args)).unwrap()
    }

    /// The state machine checks submitted graphs; a refused graph is the
    /// answer to the submit request and leaves nothing behind.
    #[test]
    fn bad_graphs_are_refused_with_the_reason() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let config = ServerConfig { host: "127.0.0.1".into(), port: 0, http_port: 0, ..ServerConfig::default() };
            let server = SchedulerServer::start(config).await.unwrap();
            let url = format!("http://{}", server.grpc_addr());
            let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
            let mut grpc = SchedulerClient::new(channel);
            let hello = pb::Hello { version: Some(rask_proto::VERSION), name: "test".into() };
            let id = grpc.connect(hello).await.unwrap().into_inner().client_id;
            let mut submit = async |tasks: Vec<pb::Task>, outputs: &[&str]| {
                let outputs = outputs.iter().map(|k| pb::Key::from(&Key::from(*k))).collect();
                grpc.submit(pb::SubmitGraph { client_id: id, tasks, outputs }).await.map(|_| ())
            };
            let refused = submit(vec![task("a", &["b"]), task("b", &["a"])], &["a"]).await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument);
            assert!(refused.message().contains("cycle"), "{}", refused.message());
            let refused = submit(vec![task("a", &["gone"])], &["a"]).await.unwrap_err();
            assert!(refused.message().contains("gone"), "{}", refused.message());
            let refused = submit(vec![task("a", &[]), task("a", &[])], &["a"]).await.unwrap_err();
            assert!(refused.message().contains("twice"), "{}", refused.message());
            let refused = submit(vec![task("a", &[])], &["elsewhere"]).await.unwrap_err();
            assert!(refused.message().contains("elsewhere"), "{}", refused.message());
            // Without outputs, too.
            let refused = submit(vec![task("a", &["b"]), task("b", &["a"])], &[]).await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument);
            // Nothing was kept: the same keys make a good graph now.
            submit(vec![task("a", &[]), task("b", &["a"])], &["b"]).await.unwrap();
            server.shutdown().await;
        });
    }
}
