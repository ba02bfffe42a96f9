//! The client: submits graphs to a cluster and hands back futures.
//!
//! Like Dask, the most recently created client becomes the default one that
//! `Delayed::compute` uses; without any, the scheduler named by
//! `RASK_SCHEDULER_ADDRESS` / `DASK_SCHEDULER_ADDRESS` is used, or a local
//! cluster is started on first use. A future holds a reference to its key on the cluster; when the last
//! future (or persisted value) for a key is dropped, the cluster frees it.

use std::any::Any;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use rask_core::optimize::fuse;
use rask_core::{FromValue, Key, OpRegistry, Value};
use rask_scheduler::ClientId;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::cluster::{ClusterShared, LocalCluster, Msg};
use crate::delayed::{Node, NodeKind};
use crate::future_state::FutureState;
use crate::remote::Remote;
use crate::{Delayed, Error, Result};

/// Where a client's graphs go.
enum Backend {
    Local(Arc<ClusterShared>),
    Remote(Box<Remote>),
}

struct ClientInner {
    id: ClientId,
    backend: Backend,
    /// Live futures per key: the key is released when the count drops to 0.
    refs: Mutex<FxHashMap<Key, usize>>,
    /// A cluster this client started itself and owns.
    _owned: Option<LocalCluster>,
}

impl ClientInner {
    fn release(&self, keys: Vec<Key>) {
        match &self.backend {
            Backend::Local(c) => {
                let _ = c.send(Msg::Release { client: self.id, keys });
            }
            Backend::Remote(r) => r.release(keys),
        }
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        match &self.backend {
            Backend::Local(c) => {
                let _ = c.send(Msg::ClientRemoved(self.id));
            }
            Backend::Remote(r) => r.close(),
        }
    }
}

/// How a client authenticates and protects its connection to a remote
/// scheduler (Dask's `Security`): a shared token and TLS files.
#[derive(Clone, Default)]
pub struct Security {
    /// The scheduler's shared token (`--token` / `RASK_TOKEN`).
    pub token: Option<String>,
    /// The CA, this client's certificate and key, for `tls://` schedulers.
    pub tls: rask_proto::transport::TlsFiles,
}

impl Security {
    /// `RASK_TOKEN` and `RASK_TLS_CA_FILE`, `RASK_TLS_CERT`, `RASK_TLS_KEY`,
    /// `RASK_TLS_SERVER_NAME`.
    pub fn from_env() -> Self {
        Self {
            token: std::env::var("RASK_TOKEN").ok().filter(|t| !t.is_empty()),
            tls: rask_proto::transport::TlsFiles::from_env(),
        }
    }
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// A connection to a cluster. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner.backend {
            Backend::Local(_) => write!(f, "Client(id={}, local cluster)", self.inner.id.0),
            Backend::Remote(r) => write!(f, "Client(id={}, scheduler={})", self.inner.id.0, r.address()),
        }
    }
}

/// The scheduler a default client connects to, as Dask's clients find it:
/// `RASK_SCHEDULER_ADDRESS`, else `DASK_SCHEDULER_ADDRESS` (what the
/// operator sets in a DaskJob's pod); empty values count as unset.
pub fn scheduler_address_from_env() -> Option<String> {
    ["RASK_SCHEDULER_ADDRESS", "DASK_SCHEDULER_ADDRESS"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
}

fn default_slot() -> &'static Mutex<Weak<ClientInner>> {
    static DEFAULT: OnceLock<Mutex<Weak<ClientInner>>> = OnceLock::new();
    DEFAULT.get_or_init(|| Mutex::new(Weak::new()))
}

impl Client {
    /// Connects to a local cluster, and becomes the default client.
    pub fn new(cluster: &LocalCluster) -> Self {
        Self::attach(cluster.shared().clone(), None)
    }

    /// Connects without becoming the default client (Dask's
    /// `set_as_default=False`): `Delayed::compute` keeps using the default.
    pub fn without_default(cluster: &LocalCluster) -> Self {
        Self::attach_with(cluster.shared().clone(), None, false)
    }

    /// Starts a local cluster owned by this client (Dask's `Client()`).
    pub fn local(n_workers: usize, threads_per_worker: usize) -> Result<Self> {
        let cluster = LocalCluster::new(n_workers, threads_per_worker)?;
        Ok(Self::attach(cluster.shared().clone(), Some(cluster)))
    }

    fn attach(cluster: Arc<ClusterShared>, owned: Option<LocalCluster>) -> Self {
        Self::attach_with(cluster, owned, true)
    }

    fn attach_with(cluster: Arc<ClusterShared>, owned: Option<LocalCluster>, set_as_default: bool) -> Self {
        let inner = Arc::new(ClientInner {
            id: cluster.new_client(),
            backend: Backend::Local(cluster),
            refs: Mutex::new(FxHashMap::default()),
            _owned: owned,
        });
        Self::adopt(inner, set_as_default)
    }

    /// Connects to a running scheduler (`rask scheduler`), e.g.
    /// `tcp://127.0.0.1:8786` or `tls://scheduler:8786`, and becomes the
    /// default client. The API is the same as on a local cluster. Functions
    /// must be registered ops (`rask::op!`): closures cannot cross a process
    /// boundary. The token and TLS files come from `RASK_TOKEN` and
    /// `RASK_TLS_*` ([`Security::from_env`]).
    pub fn connect(address: &str) -> Result<Self> {
        Self::connect_with(address, &Security::from_env())
    }

    /// As [`Self::connect`], presenting a shared token to a scheduler that
    /// requires one.
    pub fn connect_with_token(address: &str, token: Option<&str>) -> Result<Self> {
        Self::connect_with(address, &Security { token: token.map(str::to_string), ..Security::from_env() })
    }

    /// As [`Self::connect`], with explicit credentials (Dask's
    /// `Client(address, security=...)`).
    pub fn connect_with(address: &str, security: &Security) -> Result<Self> {
        let tls =
            security.tls.load().map_err(|e| Error::Connect { address: address.into(), message: e.to_string() })?;
        let remote = Remote::connect(address, security.token.as_deref(), tls.as_deref())?;
        let inner = Arc::new(ClientInner {
            id: ClientId(remote.id()),
            backend: Backend::Remote(Box::new(remote)),
            refs: Mutex::new(FxHashMap::default()),
            _owned: None,
        });
        Ok(Self::adopt(inner, true))
    }

    fn adopt(inner: Arc<ClientInner>, set_as_default: bool) -> Self {
        if set_as_default {
            *default_slot().lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::downgrade(&inner);
        }
        Self { inner }
    }

    /// The default client, found as Dask's `get_client()` finds it: the last
    /// one created that is still alive; else a client on the scheduler that
    /// `RASK_SCHEDULER_ADDRESS` (or else `DASK_SCHEDULER_ADDRESS`) names,
    /// with the token and TLS files of [`Security::from_env`]; else one on a
    /// local cluster started on first use. The one made here is kept for
    /// the process; if making it fails, the next call tries again.
    pub fn current() -> Result<Client> {
        if let Some(inner) = default_slot().lock().unwrap_or_else(std::sync::PoisonError::into_inner).upgrade() {
            return Ok(Client { inner });
        }
        // Not a OnceLock<Result<..>>: a failed start (a scheduler not up
        // yet) must not be remembered forever. The lock also makes
        // concurrent first calls share one client.
        static FALLBACK: Mutex<Option<Client>> = Mutex::new(None);
        let mut fallback = FALLBACK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = fallback.as_ref() {
            return Ok(client.clone());
        }
        let client = match scheduler_address_from_env() {
            Some(address) => {
                tracing::info!(%address, "connecting the default client to the scheduler named by the environment");
                Client::connect(&address)?
            }
            None => {
                let cluster = LocalCluster::with_config(crate::LocalClusterConfig::default())?;
                Client::attach(cluster.shared().clone(), Some(cluster))
            }
        };
        *fallback = Some(client.clone());
        Ok(client)
    }

    /// Starts computing `x` and returns at once; the future gives the value.
    pub fn compute<T: FromValue>(&self, x: &Delayed<T>) -> Future<T> {
        self.submit(&[&x.node]).pop().map(Future::typed).expect("submit returns one future per output")
    }

    /// Computes several lazy values in one graph: shared inputs run once.
    pub fn compute_many<T: FromValue>(&self, xs: &[&Delayed<T>]) -> Vec<Future<T>> {
        let nodes: Vec<&Arc<Node>> = xs.iter().map(|x| &x.node).collect();
        self.submit(&nodes).into_iter().map(Future::typed).collect()
    }

    /// Computes `x` and keeps it on the cluster: the returned lazy value
    /// refers to the stored result, so later graphs start from it.
    pub fn persist<T>(&self, x: &Delayed<T>) -> Delayed<T> {
        // The value stays on the cluster: a remote client does not fetch it.
        let future = self.submit_with(&[&x.node], false).pop();
        match future {
            Some(f) => {
                let key = f.key_ref.key.clone();
                Delayed::persisted(key, Arc::new(f) as Holder)
            }
            None => x.clone(),
        }
    }

    pub(crate) fn submit(&self, outputs: &[&Arc<Node>]) -> Vec<Future<Value>> {
        self.submit_with(outputs, true)
    }

    /// `fetch`: whether the futures' values are brought to this process.
    fn submit_with(&self, outputs: &[&Arc<Node>], fetch: bool) -> Vec<Future<Value>> {
        let keys: Vec<Key> = outputs.iter().map(|n| n.key.clone()).collect();
        let (graph, keep) = collect(outputs);
        let fail = |e: Error| {
            keys.iter().map(|k| self.make_future(k.clone(), FutureState::done(Err(e.clone())), Vec::new())).collect()
        };
        let registry = OpRegistry::global();
        let external: FxHashSet<Key> = keep.iter().map(|(k, _)| k.clone()).collect();
        let analysis = match graph.validate(|k| external.contains(k), |op| registry.contains(op)) {
            Ok(a) => a,
            Err(e) => return fail(e.into()),
        };
        let (graph, inputs) = match fuse(graph, analysis, &keys) {
            Ok(fused) => fused,
            Err(e) => return fail(e.into()),
        };
        let (tasks, local_ops) = graph.into_parts();
        match &self.inner.backend {
            Backend::Local(cluster) => {
                for (name, op) in &local_ops {
                    cluster.local_ops.register(name.clone(), op);
                }
            }
            Backend::Remote(_) if !local_ops.is_empty() => {
                let mut names: Vec<&str> = local_ops.keys().map(|n| &**n).collect();
                names.sort_unstable();
                return fail(Error::Remote(format!(
                    "the graph calls local functions ({}), which cannot be sent to a remote cluster; \
                     define them with `rask::op!` so every worker binary has them",
                    names.join(", ")
                )));
            }
            Backend::Remote(_) => {}
        }
        // The closures stay alive as long as a future of this graph does.
        let mut holders: Vec<Holder> = keep.into_iter().map(|(_, h)| h).collect();
        if !local_ops.is_empty() {
            holders.push(Arc::new(local_ops.into_values().collect::<Vec<_>>()));
        }
        let holders = Arc::new(holders);
        let mut futures = Vec::with_capacity(keys.len());
        let mut registrations = Vec::with_capacity(keys.len());
        for key in &keys {
            let state = FutureState::new();
            registrations.push((key.clone(), state.clone()));
            futures.push(self.make_future(key.clone(), state, vec![holders.clone() as Holder]));
        }
        match &self.inner.backend {
            Backend::Local(cluster) => {
                let msg = Msg::Submit { client: self.inner.id, tasks, inputs, wanted: keys, futures: registrations };
                if cluster.send(msg).is_err() {
                    futures.iter().for_each(|f| f.state.resolve(Err(Error::ClusterClosed)));
                }
            }
            Backend::Remote(remote) => remote.submit(&tasks, keys, registrations, fetch),
        }
        futures
    }

    fn make_future(&self, key: Key, state: Arc<FutureState>, keep: Vec<Holder>) -> Future<Value> {
        *self.inner.refs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(key.clone()).or_default() += 1;
        Future { state, key_ref: KeyRef { key, client: self.clone() }, _keep: keep, _t: PhantomData }
    }

    fn release(&self, key: &Key) {
        let mut refs = self.inner.refs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = refs.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                refs.remove(key);
                self.inner.release(vec![key.clone()]);
            }
        }
    }

    /// Disconnects: the cluster releases every key this client holds, as when
    /// a remote client goes away. Futures already resolved keep their values.
    pub fn close(&self) {
        match &self.inner.backend {
            Backend::Local(c) => {
                let _ = c.send(Msg::ClientRemoved(self.inner.id));
            }
            Backend::Remote(r) => r.close(),
        }
    }

    /// Cancels the computation of a future's key for this client.
    pub fn cancel<T>(&self, future: &Future<T>) {
        future.state.resolve(Err(Error::Cancelled(future.key_ref.key.clone())));
        let keys = vec![future.key_ref.key.clone()];
        match &self.inner.backend {
            Backend::Local(c) => {
                let _ = c.send(Msg::Cancel { client: self.inner.id, keys });
            }
            Backend::Remote(r) => r.cancel(keys),
        }
    }
}

/// Walks the lazy values back to their inputs, once each.
/// Something kept alive as long as a future needs it.
type Holder = Arc<dyn Any + Send + Sync>;

fn collect(outputs: &[&Arc<Node>]) -> (rask_core::Graph, Vec<(Key, Holder)>) {
    let mut keep = Vec::new();
    let mut seen: FxHashSet<*const Node> = FxHashSet::default();
    let mut stack: Vec<&Arc<Node>> = outputs.to_vec();
    let mut order = Vec::new();
    while let Some(node) = stack.pop() {
        if !seen.insert(Arc::as_ptr(node)) {
            continue;
        }
        order.push(node);
        if let NodeKind::Task { deps, .. } = &node.kind {
            stack.extend(deps.iter());
        }
    }
    let mut graph = rask_core::Graph::with_capacity(order.len());
    for node in order {
        match &node.kind {
            NodeKind::Task { task, local, .. } => {
                if let (Some(op), rask_core::Body::Call(call)) = (local, &task.body) {
                    graph.add_local_op(call.op.clone(), op.clone());
                }
                graph.insert_shared(task.clone());
            }
            NodeKind::Persisted { keep: holder } => keep.push((node.key.clone(), holder.clone())),
        }
    }
    (graph, keep)
}

/// A value being computed on a cluster. `result()` blocks; `.await` works too.
pub struct Future<T> {
    state: Arc<FutureState>,
    key_ref: KeyRef,
    _keep: Vec<Holder>,
    _t: PhantomData<fn() -> T>,
}

/// One reference to a key on the cluster, released when dropped.
struct KeyRef {
    key: Key,
    client: Client,
}

impl Drop for KeyRef {
    fn drop(&mut self) {
        self.client.release(&self.key);
    }
}

impl<T> std::fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.state.peek() {
            None => "pending",
            Some(Ok(_)) => "finished",
            Some(Err(Error::Cancelled(_))) => "cancelled",
            Some(Err(_)) => "error",
        };
        write!(f, "<Future: {status}, key: {}>", self.key_ref.key)
    }
}

impl Future<Value> {
    fn typed<T>(self) -> Future<T> {
        Future { state: self.state, key_ref: self.key_ref, _keep: self._keep, _t: PhantomData }
    }
}

impl<T> Future<T> {
    pub fn key(&self) -> &Key {
        &self.key_ref.key
    }

    /// True once the value, an error or a cancellation is in.
    pub fn done(&self) -> bool {
        self.state.peek().is_some()
    }

    pub fn cancel(&self) {
        self.key_ref.client.cancel(self);
    }
}

impl<T: FromValue> Future<T> {
    fn convert(&self, r: Result<Value>) -> Result<T> {
        r.and_then(|v| T::from_value(v).map_err(|source| Error::Conversion { key: self.key_ref.key.clone(), source }))
    }

    /// Waits for the value.
    pub fn result(&self) -> Result<T> {
        let r = self.state.wait(None).unwrap_or(Err(Error::ClusterClosed));
        self.convert(r)
    }

    /// Waits at most `timeout`.
    pub fn result_timeout(&self, timeout: Duration) -> Result<T> {
        match self.state.wait(Some(timeout)) {
            Some(r) => self.convert(r),
            None => Err(Error::Timeout(self.key_ref.key.clone())),
        }
    }
}

impl<T: FromValue> std::future::Future for Future<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.state.poll_with(cx.waker()) {
            Poll::Ready(r) => Poll::Ready(self.convert(r)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Computes several lazy values together on the current client; shared
/// intermediates run once. Like `dask.compute(*values)`.
pub fn compute_all<T: FromValue>(values: &[Delayed<T>]) -> Result<Vec<T>> {
    let client = Client::current()?;
    let refs: Vec<&Delayed<T>> = values.iter().collect();
    client.compute_many(&refs).iter().map(Future::result).collect()
}
