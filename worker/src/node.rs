//! A worker process (`rask worker`): registers with a scheduler over one
//! long-lived `WorkerControl` stream, runs what it is sent on its
//! [`Executor`], serves its results to peers (`WorkerData`) and its
//! `/health` and `/metrics` over HTTP.
//!
//! Inputs that live on other workers are fetched directly from them, by the
//! executor thread that needs them, over cached gRPC channels.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use rask_core::{Key, Value};
use rask_proto::pb::worker_control_client::WorkerControlClient;
use rask_proto::pb::{self, worker_message::Kind as Up};
use rask_proto::transport::{self, Tls};
use rask_proto::{MAX_MESSAGE_BYTES, auth, check_version, task_from_pb};
use rask_scheduler::{Priority, WorkerId};
use rustc_hash::FxHashMap;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};

use crate::data::{DataClient, DataService, FetchError};
use crate::{DataStore, Executor, Inputs, Job, LocalOpTable, Outcome, Reporter, SpillConfig};

/// Settings of `rask worker`.
#[derive(Clone)]
pub struct WorkerConfig {
    /// The scheduler: `tcp://host:8786`, `http://host:8786` or `host:8786`.
    pub scheduler: String,
    pub name: Option<String>,
    /// The worker group, reported to the scheduler for per-group adaptive
    /// targets (the operator sets it); `None`: the default group.
    pub group: Option<String>,
    pub nthreads: usize,
    /// Bytes; 0 means no limit.
    pub memory_limit: u64,
    /// Address to bind the data and HTTP ports on.
    pub listen_host: String,
    /// The host peers and the scheduler use to reach this worker; by default
    /// the local address of the route to the scheduler.
    pub contact_host: Option<String>,
    /// 0 picks a free port.
    pub data_port: u16,
    pub http_port: u16,
    /// When set, every port requires this token: the data service, and
    /// HTTP but `/health` (and `/metrics` with `metrics_open`). It is also
    /// presented to the scheduler and to peers' data services.
    pub token: Option<String>,
    /// Serve `/metrics` without the token. Off by default.
    pub metrics_open: bool,
    /// TLS for the data service, HTTPS, and connections to the scheduler and
    /// peers; plain when `None`.
    pub tls: Option<Arc<Tls>>,
    pub heartbeat: Duration,
    /// How long a graceful shutdown may take to hand data to peers.
    pub grace_period: Duration,
    /// Where values spill under the memory limit (default: a fresh
    /// directory under the system's temp dir, removed on exit).
    pub local_directory: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("scheduler", &self.scheduler)
            .field("name", &self.name)
            .field("nthreads", &self.nthreads)
            .field("memory_limit", &self.memory_limit)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            scheduler: "tcp://127.0.0.1:8786".into(),
            name: None,
            group: None,
            nthreads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_limit: 0,
            listen_host: "0.0.0.0".into(),
            contact_host: None,
            data_port: 0,
            http_port: 0,
            token: None,
            metrics_open: false,
            tls: None,
            heartbeat: Duration::from_secs(1),
            grace_period: Duration::from_secs(30),
            local_directory: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("bad scheduler address {address:?}: {message}")]
    Address { address: String, message: String },
    #[error("cannot reach the scheduler at {address}: {message}")]
    Connect { address: String, message: String },
    #[error("the scheduler refused this worker: {0}")]
    Refused(String),
    #[error("lost the scheduler: {0}")]
    Lost(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The host part of an `http://host:port` URL.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport.rsplit_once(':').map_or(hostport, |(h, _)| h).trim_start_matches('[').trim_end_matches(']')
}

/// The local address of the route to `url`'s host: what peers should dial.
fn route_to(url: &str) -> Option<String> {
    use std::net::ToSocketAddrs;
    let target = (host_of(url), 9).to_socket_addrs().ok()?.next()?;
    let bind: SocketAddr = if target.is_ipv6() { "[::]:0".parse().ok()? } else { "0.0.0.0:0".parse().ok()? };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip().to_string())
}

/// Counters the worker reports in heartbeats and on `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    incoming: AtomicU64,
    fetches: AtomicU64,
}

/// Fetches inputs from peers, by the executor thread that needs them.
struct PeerInputs {
    runtime: tokio::runtime::Handle,
    addresses: RwLock<FxHashMap<WorkerId, String>>,
    clients: Mutex<FxHashMap<String, DataClient>>,
    counters: Arc<Counters>,
    limit: u64,
    tls: Option<Arc<Tls>>,
    /// The cluster's token, presented to peers' data services.
    token: Option<String>,
}

impl PeerInputs {
    /// The cached client for a peer, connecting on first use.
    async fn connected(&self, address: &str) -> Result<DataClient, FetchError> {
        let cached = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(address).cloned();
        if let Some(c) = cached {
            return Ok(c);
        }
        let client = DataClient::connect_with(address, self.limit, self.tls.as_deref(), self.token.as_deref()).await?;
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(address.to_string(), client.clone());
        Ok(client)
    }

    fn client(&self, address: &str) -> Option<DataClient> {
        self.runtime.block_on(self.connected(address)).ok()
    }

    /// The address of the first holder this worker knows.
    fn address_of(&self, holders: &[WorkerId]) -> Option<String> {
        let map = self.addresses.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        holders.iter().find_map(|h| map.get(h).cloned())
    }

    /// Fetches several keys from one peer in one request; what fails is
    /// left out (the executor retries it, key by key).
    async fn fetch_many(&self, address: &str, keys: &[Key]) -> Vec<(Key, Value)> {
        let mut client = match self.connected(address).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(peer = address, error = %e, "cannot reach peer");
                return Vec::new();
            }
        };
        match client.fetch(keys).await {
            Ok(values) => {
                let bytes: u64 = values.iter().map(|(_, v)| v.nbytes() as u64).sum();
                self.counters.incoming.fetch_add(bytes, Ordering::Relaxed);
                self.counters.fetches.fetch_add(values.len() as u64, Ordering::Relaxed);
                values
            }
            Err(e) => {
                tracing::debug!(peer = address, keys = keys.len(), error = %e, "batched fetch failed");
                Vec::new()
            }
        }
    }

    fn forget(&self, address: &str) {
        self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(address);
    }

    fn learn(&self, holders: &[pb::Holder]) {
        let known = {
            let addresses = self.addresses.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            holders.iter().all(|h| addresses.get(&WorkerId(h.worker_id)) == Some(&h.address))
        };
        if !known {
            let mut addresses = self.addresses.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for h in holders {
                addresses.insert(WorkerId(h.worker_id), h.address.clone());
            }
        }
    }

    fn fetch_from(&self, key: &Key, address: &str) -> Option<Value> {
        let mut client = self.client(address)?;
        match self.runtime.block_on(client.fetch(std::slice::from_ref(key))) {
            Ok(mut values) => {
                let (_, v) = values.pop()?;
                self.counters.incoming.fetch_add(v.nbytes() as u64, Ordering::Relaxed);
                self.counters.fetches.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Err(e) => {
                tracing::warn!(key = %key, peer = address, error = %e, "fetch from peer failed");
                self.forget(address);
                None
            }
        }
    }
}

impl Inputs for PeerInputs {
    fn fetch(&self, key: &Key, holders: &[WorkerId]) -> Option<Value> {
        let addresses: Vec<String> = {
            let map = self.addresses.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            holders.iter().filter_map(|h| map.get(h).cloned()).collect()
        };
        addresses.iter().find_map(|a| self.fetch_from(key, a))
    }
}

struct StreamReporter(mpsc::UnboundedSender<pb::WorkerMessage>);

fn up(kind: Up) -> pb::WorkerMessage {
    pb::WorkerMessage { kind: Some(kind) }
}

impl Reporter for StreamReporter {
    fn report(&self, _worker: WorkerId, outcome: Outcome) {
        let kind = match outcome {
            Outcome::Finished { key, nbytes, duration } => {
                // What a worker ran, for `RUST_LOG=rask_worker=debug`.
                tracing::debug!(key = %key, nbytes, duration_seconds = duration, "task finished");
                Up::Finished(pb::Finished { key: Some((&key).into()), nbytes, duration_seconds: duration })
            }
            Outcome::Erred { key, message, origin } => {
                Up::Erred(pb::Erred { key: Some((&key).into()), origin: origin.as_ref().map(pb::Key::from), message })
            }
            Outcome::Missing { key, missing } => {
                Up::MissingData(pb::MissingData { key: Some((&key).into()), missing: Some((&missing).into()) })
            }
        };
        let _ = self.0.send(up(kind));
    }
}

/// The worker's Prometheus metrics (`rask_worker_*`).
struct WorkerMetrics {
    registry: prometheus::Registry,
    managed: prometheus::IntGauge,
    spilled: prometheus::IntGauge,
    unmanaged: prometheus::IntGauge,
    threads: prometheus::IntGauge,
    busy: prometheus::IntGauge,
    tasks: prometheus::IntGaugeVec,
    transfer: prometheus::IntCounter,
    fetches: prometheus::IntCounter,
}

impl WorkerMetrics {
    fn new() -> prometheus::Result<Self> {
        let registry = prometheus::Registry::new();
        let gauge = |name: &str, help: &str| -> prometheus::Result<prometheus::IntGauge> {
            let g = prometheus::IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let managed = gauge("rask_worker_memory_managed_bytes", "Bytes of task results held in memory")?;
        let spilled = gauge("rask_worker_memory_spilled_bytes", "Bytes of task results spilled to disk")?;
        let unmanaged =
            gauge("rask_worker_memory_unmanaged_bytes", "Resident memory of the process not held as results")?;
        let threads = gauge("rask_worker_threads", "Threads running tasks")?;
        let busy = gauge("rask_worker_threads_busy", "Threads running a task right now")?;
        let tasks = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("rask_worker_tasks", "Tasks on this worker, by state"),
            &["state"],
        )?;
        registry.register(Box::new(tasks.clone()))?;
        let transfer = prometheus::IntCounter::new(
            "rask_worker_transfer_incoming_bytes_total",
            "Bytes of inputs fetched from peers",
        )?;
        registry.register(Box::new(transfer.clone()))?;
        let fetches = prometheus::IntCounter::new("rask_worker_transfer_incoming_total", "Inputs fetched from peers")?;
        registry.register(Box::new(fetches.clone()))?;
        Ok(Self { registry, managed, spilled, unmanaged, threads, busy, tasks, transfer, fetches })
    }
}

struct Node {
    exec: Executor,
    store: Arc<DataStore>,
    counters: Arc<Counters>,
    metrics: WorkerMetrics,
}

impl Node {
    fn refresh(&self) -> pb::Heartbeat {
        let managed = self.store.nbytes();
        let rss = rss_bytes().unwrap_or(0);
        let spilled = self.store.spilled_bytes();
        let m = &self.metrics;
        m.managed.set(managed as i64);
        m.spilled.set(spilled as i64);
        m.unmanaged.set(rss.saturating_sub(managed) as i64);
        m.busy.set(self.exec.busy() as i64);
        m.tasks.with_label_values(&["executing"]).set(self.exec.busy() as i64);
        m.tasks.with_label_values(&["ready"]).set(self.exec.queued() as i64);
        m.tasks.with_label_values(&["memory"]).set(self.store.len() as i64);
        let incoming = self.counters.incoming.load(Ordering::Relaxed);
        if incoming > m.transfer.get() {
            m.transfer.inc_by(incoming - m.transfer.get());
        }
        let fetches = self.counters.fetches.load(Ordering::Relaxed);
        if fetches > m.fetches.get() {
            m.fetches.inc_by(fetches - m.fetches.get());
        }
        pb::Heartbeat {
            memory_managed_bytes: managed,
            memory_spilled_bytes: spilled,
            threads_busy: self.exec.busy() as u32,
            memory_rss_bytes: rss,
            transfer_incoming_bytes_total: incoming,
            transfer_outgoing_bytes_total: 0,
        }
    }

    fn render(&self) -> String {
        self.refresh();
        let mut buf = Vec::new();
        let _ = prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &self.metrics.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Resident set size from /proc (Linux); `None` elsewhere.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A worker that has registered and is serving.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: u64,
    pub name: String,
    pub data_address: String,
    pub http_address: SocketAddr,
}

/// Runs a worker until the scheduler lets it go, the scheduler is lost, or
/// `shutdown` resolves (then it retires gracefully within the grace period).
/// `on_start` is called once registered.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl std::future::Future<Output = ()>,
    on_start: impl FnOnce(&Started),
) -> Result<(), WorkerError> {
    let url = rask_proto::grpc_url(&config.scheduler);
    let scheduler_endpoint = transport::endpoint(&config.scheduler, config.tls.as_deref())
        .map_err(|message| WorkerError::Address { address: config.scheduler.clone(), message })?;
    let contact = config.contact_host.clone().or_else(|| route_to(&url)).unwrap_or_else(|| "127.0.0.1".into());

    // Data service first: the scheduler hands our address to peers at once.
    // Locked while we run, removed when we stop; ones left by killed workers are purged.
    let work_dir = crate::workdir::WorkDir::new(config.local_directory.as_deref())?;
    let store = Arc::new(if config.memory_limit > 0 {
        DataStore::with_spill(SpillConfig::new(config.memory_limit, work_dir.path().join("spill")))?
    } else {
        DataStore::new()
    });
    let data_listener = TcpListener::bind((config.listen_host.as_str(), config.data_port)).await?;
    let data_port = data_listener.local_addr()?.port();
    let web = if config.tls.as_deref().is_some_and(Tls::can_serve) { "https" } else { "http" };
    let data_address = format!("{web}://{contact}:{data_port}");
    let data_svc = DataService::new(store.clone()).into_server(config.token.as_deref());
    let mut data_server = transport::grpc_server(config.tls.as_deref()).map_err(std::io::Error::other)?;
    let data_task =
        tokio::spawn(data_server.add_service(data_svc).serve_with_incoming(TcpListenerStream::new(data_listener)));

    let bearer = auth::Bearer::new(config.token.as_deref()).map_err(|e| WorkerError::Refused(e.message().into()))?;
    let channel = scheduler_endpoint
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .connect()
        .await
        .map_err(|e| WorkerError::Connect { address: url.clone(), message: transport::describe(&e) })?;
    let mut control = WorkerControlClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let name = config.name.clone().unwrap_or_else(|| format!("{contact}:{data_port}"));
    let (up_tx, up_rx) = mpsc::unbounded_channel::<pb::WorkerMessages>();
    let register = up(Up::Register(pb::RegisterWorker {
        version: Some(rask_proto::VERSION),
        name: name.clone(),
        nthreads: config.nthreads as u32,
        memory_limit_bytes: config.memory_limit,
        data_address: data_address.clone(),
        group: config.group.clone().unwrap_or_default(),
        capabilities: rask_core::Capabilities::of_registry(rask_core::OpRegistry::global())
            .names()
            .into_iter()
            .map(String::from)
            .collect(),
    }));
    let _ = up_tx.send(pb::WorkerMessages { messages: vec![register] });
    let mut inbound = control
        .connect(UnboundedReceiverStream::new(up_rx))
        .await
        .map_err(|e| {
            let plaintext = !url.starts_with("https://");
            WorkerError::Refused(transport::first_call_error(e.message(), plaintext))
        })?
        .into_inner();
    let welcome = inbound.message().await.map_err(|e| WorkerError::Refused(e.message().to_string()))?;
    let id = match welcome.and_then(|b| b.messages.into_iter().next()).and_then(|m| m.kind) {
        Some(pb::scheduler_message::Kind::Welcome(w)) => {
            check_version(w.version.as_ref()).map_err(|e| WorkerError::Refused(e.to_string()))?;
            WorkerId(w.worker_id)
        }
        _ => return Err(WorkerError::Refused("no welcome from the scheduler".into())),
    };

    // Outcomes are batched (see `batch_outcomes`), once the executor exists.
    let (out_tx, out_rx) = mpsc::unbounded_channel::<pb::WorkerMessage>();

    let counters = Arc::new(Counters::default());
    let peers = Arc::new(PeerInputs {
        runtime: tokio::runtime::Handle::current(),
        addresses: RwLock::default(),
        clients: Mutex::default(),
        counters: counters.clone(),
        limit: u64::MAX,
        tls: config.tls.clone(),
        token: config.token.clone(),
    });
    let exec = Executor::start(
        id,
        &name,
        config.nthreads,
        store.clone(),
        peers.clone(),
        Arc::new(StreamReporter(out_tx.clone())),
        Arc::new(LocalOpTable::default()),
    )?;
    let node = Arc::new(Node {
        exec,
        store: store.clone(),
        counters,
        metrics: WorkerMetrics::new().map_err(std::io::Error::other)?,
    });
    node.metrics.threads.set(config.nthreads as i64);
    let batcher = tokio::spawn(batch_outcomes(out_rx, up_tx.clone(), node.clone()));

    let http_listener = TcpListener::bind((config.listen_host.as_str(), config.http_port)).await?;
    let http_address = http_listener.local_addr()?;
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(node): State<Arc<Node>>| async move {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], node.render()).into_response()
            }),
        )
        .with_state(node.clone())
        // `/health` stays open for kubelet probes and says only `ok`.
        .layer(axum::middleware::from_fn_with_state(
            auth::HttpGuard::new(config.token.as_deref(), config.metrics_open),
            auth::guard_http,
        ));
    let http_tls = config.tls.clone();
    let http_task = tokio::spawn(async move {
        if let Err(e) = transport::serve_http(http_listener, app, http_tls, std::future::pending()).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    tracing::info!(id = id.0, name = %name, data = %data_address, http = %http_address, nthreads = config.nthreads, "worker registered");
    on_start(&Started { id: id.0, name: name.clone(), data_address, http_address });

    let heartbeat = {
        let node = node.clone();
        let out_tx = out_tx.clone();
        let every = config.heartbeat;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            loop {
                interval.tick().await;
                if out_tx.send(up(Up::Heartbeat(node.refresh()))).is_err() {
                    return;
                }
            }
        })
    };

    let monitor =
        (config.memory_limit > 0).then(|| tokio::spawn(memory_monitor(node.clone(), name.clone(), out_tx.clone())));

    let mut shutdown = std::pin::pin!(shutdown);
    let mut retiring: Option<tokio::time::Instant> = None;
    let result = loop {
        let deadline = retiring.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400 * 365));
        tokio::select! {
            batch = inbound.message() => match batch {
                Ok(Some(batch)) => {
                    if handle_batch(&node, &peers, &out_tx, batch.messages) {
                        tracing::info!(name = %name, "the scheduler let this worker go");
                        break Ok(());
                    }
                }
                Ok(None) => break Err(WorkerError::Lost("the scheduler closed the connection".into())),
                Err(e) => break Err(WorkerError::Lost(e.message().to_string())),
            },
            () = &mut shutdown, if retiring.is_none() => {
                tracing::info!(name = %name, grace = ?config.grace_period, "shutting down: handing data to peers");
                let _ = out_tx.send(up(Up::Retire(pb::Empty {})));
                retiring = Some(tokio::time::Instant::now() + config.grace_period);
            }
            () = tokio::time::sleep_until(deadline), if retiring.is_some() => {
                tracing::warn!(name = %name, "grace period over; exiting with data not yet handed over");
                break Ok(());
            }
        }
    };
    heartbeat.abort();
    batcher.abort();
    if let Some(m) = monitor {
        m.abort();
        let _ = m.await;
    }
    // These hold the node: wait until they are gone so it can be shut down.
    let _ = heartbeat.await;
    let _ = batcher.await;
    http_task.abort();
    data_task.abort();
    if let Ok(node) = Arc::try_unwrap(node) {
        let exec = node.exec;
        let _ = tokio::task::spawn_blocking(move || exec.shutdown()).await;
    }
    drop(work_dir);
    result
}

/// The most messages in one batch to the scheduler.
const OUT_BATCH: usize = 4096;
/// How long outcomes may wait for company while the worker is busy.
const COALESCE: Duration = Duration::from_millis(1);
/// Coalesce only while at least this many jobs are queued: then the worker
/// has work for longer than the wait, and the scheduler is told less often.
const COALESCE_QUEUED: usize = 64;

/// Sends outcomes to the scheduler in batches: whatever piled up while the
/// last batch was sent and, while the executor still has plenty queued, what
/// arrives within a millisecond more. A worker close to running dry (or
/// idle, or running a chain where each task waits for the last) sends at
/// once.
async fn batch_outcomes(
    mut out_rx: mpsc::UnboundedReceiver<pb::WorkerMessage>,
    up_tx: mpsc::UnboundedSender<pb::WorkerMessages>,
    node: Arc<Node>,
) {
    while let Some(first) = out_rx.recv().await {
        let mut messages = vec![first];
        drain_into(&mut out_rx, &mut messages);
        if messages.len() < OUT_BATCH && node.exec.queued() >= COALESCE_QUEUED {
            let deadline = tokio::time::Instant::now() + COALESCE;
            while messages.len() < OUT_BATCH {
                match tokio::time::timeout_at(deadline, out_rx.recv()).await {
                    Ok(Some(m)) => {
                        messages.push(m);
                        drain_into(&mut out_rx, &mut messages);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        if up_tx.send(pb::WorkerMessages { messages }).is_err() {
            return;
        }
    }
}

fn drain_into(rx: &mut mpsc::UnboundedReceiver<pb::WorkerMessage>, messages: &mut Vec<pb::WorkerMessage>) {
    while messages.len() < OUT_BATCH {
        match rx.try_recv() {
            Ok(m) => messages.push(m),
            Err(_) => break,
        }
    }
}

/// Dask's memory monitor: every 100 ms, compare the process's resident
/// memory with the limit; above `spill`, move values to disk; above
/// `pause`, stop starting tasks until memory is back under it, and tell the
/// scheduler, which sends no new tasks meanwhile. Pausing
/// only while there is something left to spill, so memory held outside the
/// store can never pause a worker for good.
async fn memory_monitor(node: Arc<Node>, name: String, out: mpsc::UnboundedSender<pb::WorkerMessage>) {
    let Some(cfg) = node.store.spill_config().cloned() else { return };
    let limit = cfg.limit as f64;
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        let Some(rss) = rss_bytes() else { return };
        node.store.set_unmanaged(rss.saturating_sub(node.store.nbytes()));
        let rss = rss as f64;
        if rss > cfg.spill * limit && node.store.nbytes() > 0 {
            let want = (rss - cfg.target * limit).max(0.0) as u64;
            let store = node.store.clone();
            let moved = tokio::task::spawn_blocking(move || store.spill_bytes(want)).await.unwrap_or(0);
            tracing::debug!(worker = %name, rss, moved, "over the spill threshold: spilled");
        }
        let pause = rss > cfg.pause * limit && node.store.nbytes() > 0;
        if pause != node.exec.paused() {
            if pause {
                tracing::warn!(worker = %name, rss_bytes = rss, limit = cfg.limit, "memory above 80% of the limit: pausing new tasks");
            } else {
                tracing::info!(worker = %name, "memory back under the pause threshold: resuming");
            }
            node.exec.set_paused(pause);
            // The scheduler stops sending new tasks here until we resume.
            let _ = out.send(up(Up::Paused(pb::Paused { paused: pause })));
        }
    }
}

/// Carries out one batch from the scheduler. True when the worker may leave.
fn handle_batch(
    node: &Arc<Node>,
    peers: &Arc<PeerInputs>,
    out: &mpsc::UnboundedSender<pb::WorkerMessage>,
    messages: Vec<pb::SchedulerMessage>,
) -> bool {
    use pb::scheduler_message::Kind;
    let mut jobs = Vec::new();
    for m in messages {
        match m.kind {
            Some(Kind::Execute(e)) => {
                let Some(task) = e.task else { continue };
                let key = task.key.clone();
                let task = match task_from_pb(task) {
                    Ok(t) => t,
                    Err(err) => {
                        // Decoding failed: the task fails with the reason, nothing panics.
                        tracing::warn!(error = %err, "undecodable task");
                        if key.is_some() {
                            let message = format!("the worker could not decode the task: {err}");
                            let _ = out.send(up(Up::Erred(pb::Erred { key, origin: None, message })));
                        }
                        continue;
                    }
                };
                let who_has = e
                    .inputs
                    .into_iter()
                    .filter_map(|loc| {
                        peers.learn(&loc.holders);
                        let key: Key = loc.key?.into();
                        Some((key, loc.holders.iter().map(|h| WorkerId(h.worker_id)).collect()))
                    })
                    .collect();
                jobs.push(Job {
                    task: Arc::new(task),
                    priority: Priority { generation: e.priority_generation, order: e.priority_order },
                    who_has,
                    fetched: Vec::new(),
                });
            }
            Some(Kind::Release(keys)) => {
                for k in keys.keys {
                    node.exec.release(&k.into());
                }
            }
            Some(Kind::Steal(keys)) => {
                // Jobs of this very batch have not been queued yet.
                for k in keys.keys {
                    let key: Key = k.into();
                    let pos = jobs.iter().position(|j: &Job| j.task.key == key);
                    let stolen = pos.map(|p| jobs.remove(p)).is_some() || node.exec.steal(&key);
                    let _ = out.send(up(Up::StealResponse(pb::StealResponse { key: Some((&key).into()), stolen })));
                }
            }
            Some(Kind::Replicate(loc)) => {
                peers.learn(&loc.holders);
                let Some(key) = loc.key.map(Key::from) else { continue };
                let peers = peers.clone();
                let store = node.store.clone();
                let out = out.clone();
                let addresses: Vec<String> = loc.holders.into_iter().map(|h| h.address).collect();
                // Fetching blocks; keep it off the runtime's threads.
                tokio::task::spawn_blocking(move || {
                    let value = addresses.iter().find_map(|a| peers.fetch_from(&key, a));
                    let msg = match value {
                        Some(v) => {
                            let nbytes = store.insert(key.clone(), v);
                            Up::ReplicaAdded(pb::ReplicaAdded { key: Some((&key).into()), nbytes })
                        }
                        None => Up::ReplicaFailed(pb::Keys { keys: vec![(&key).into()] }),
                    };
                    let _ = out.send(up(msg));
                });
            }
            Some(Kind::MayLeave(_)) => {
                dispatch(node, peers, jobs);
                return true;
            }
            Some(Kind::Welcome(_)) | None => {}
        }
    }
    dispatch(node, peers, jobs);
    false
}

/// Queues jobs whose inputs are all here at once; for the others, fetches
/// the missing inputs first — one request per peer for the whole batch,
/// concurrently — so that no executor thread waits on the network.
fn dispatch(node: &Arc<Node>, peers: &Arc<PeerInputs>, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    let (ready, waiting): (Vec<Job>, Vec<Job>) =
        jobs.into_iter().partition(|j| j.who_has.iter().all(|(k, _)| node.store.contains(k)));
    if !ready.is_empty() {
        node.exec.submit(ready);
    }
    if waiting.is_empty() {
        return;
    }
    let mut by_peer: FxHashMap<String, Vec<Key>> = FxHashMap::default();
    for j in &waiting {
        for (k, holders) in &j.who_has {
            if !node.store.contains(k)
                && let Some(address) = peers.address_of(holders)
            {
                let keys = by_peer.entry(address).or_default();
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    let node = node.clone();
    let peers = peers.clone();
    tokio::spawn(async move {
        let fetches: Vec<_> = by_peer
            .into_iter()
            .map(|(address, keys)| {
                let peers = peers.clone();
                tokio::spawn(async move { peers.fetch_many(&address, &keys).await })
            })
            .collect();
        let mut got: FxHashMap<Key, Value> = FxHashMap::default();
        for f in fetches {
            if let Ok(values) = f.await {
                got.extend(values);
            }
        }
        // Whatever could not be fetched here, the executor tries again per
        // key and reports as missing if it is really gone.
        let jobs: Vec<Job> = waiting
            .into_iter()
            .map(|mut j| {
                j.fetched = j.who_has.iter().filter_map(|(k, _)| got.get(k).map(|v| (k.clone(), v.clone()))).collect();
                j
            })
            .collect();
        node.exec.submit(jobs);
    });
}
