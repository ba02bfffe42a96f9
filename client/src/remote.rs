//! The client's side of a remote cluster: `rask.v1.Scheduler` over gRPC.
//!
//! The client owns a small tokio runtime. One task reads the scheduler's
//! stream of key updates: a key in memory is gathered (streamed in pieces
//! through the scheduler) and decoded, and its futures resolve; an erred or
//! cancelled key resolves them with the error. Closing the connection (or
//! dropping the client) ends the update stream, and the scheduler releases
//! every key the client held.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rask_core::{Key, Task, Value};
use rask_proto::auth::Bearer;
use rask_proto::pb::scheduler_client::SchedulerClient;
use rask_proto::pb::{self, KeyState};
use rask_proto::transport::Tls;
use rask_proto::{Assembler, MAX_MESSAGE_BYTES, task_to_pb};
use rask_scheduler::{ErrorKind, TaskError};
use rustc_hash::FxHashMap;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::future_state::FutureState;
use crate::{Error, Result};

type Grpc = SchedulerClient<InterceptedService<Channel, Bearer>>;
/// Futures waiting for their key, each with whether it wants the value
/// brought here (a persisted key's does not).
type Waiters = FxHashMap<Key, Vec<(Arc<FutureState>, bool)>>;
type Waiting = Arc<Mutex<Waiters>>;

/// Calls whose order matters: a graph must reach the scheduler before a
/// graph that uses its keys, and before their release. One task sends them
/// one after another; each spawned on its own, two could overtake.
enum Call {
    Submit { request: pb::SubmitGraph, wanted: Vec<Key> },
    Release(pb::ClientKeys),
    Cancel(pb::ClientKeys),
}

pub(crate) struct Remote {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    calls: tokio::sync::mpsc::UnboundedSender<Call>,
    id: u64,
    address: String,
    waiting: Waiting,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({}, client {})", self.address, self.id)
    }
}

fn lock(w: &Waiting) -> std::sync::MutexGuard<'_, Waiters> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Remote {
    pub(crate) fn connect(address: &str, token: Option<&str>, tls: Option<&Tls>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rask-client")
            .enable_all()
            .build()
            .map_err(|e| Error::Connect { address: address.into(), message: e.to_string() })?;
        let url = rask_proto::grpc_url(address);
        let bearer =
            Bearer::new(token).map_err(|e| Error::Connect { address: address.into(), message: e.message().into() })?;
        let connect = async {
            let endpoint = rask_proto::transport::endpoint(address, tls)?
                .connect_timeout(Duration::from_secs(10))
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(20));
            let channel = endpoint.connect().await.map_err(|e| rask_proto::transport::describe(&e))?;
            let mut grpc = SchedulerClient::with_interceptor(channel, bearer)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let hello =
                pb::Hello { version: Some(rask_proto::VERSION), name: format!("rask-client-{}", std::process::id()) };
            let welcome = grpc
                .connect(hello)
                .await
                .map_err(|s| rask_proto::transport::first_call_error(s.message(), !url.starts_with("https://")))?
                .into_inner();
            rask_proto::check_version(welcome.version.as_ref()).map_err(|e| e.to_string())?;
            let updates = grpc
                .updates(pb::UpdatesRequest { client_id: welcome.client_id })
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            Ok::<_, String>((grpc, welcome.client_id, updates))
        };
        // Blocking on a runtime is refused inside another runtime (a user's
        // async main), so the handshake runs on a thread of its own.
        let (grpc, id, updates) = std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(connect))
                .join()
                .unwrap_or_else(|_| Err("the connecting thread panicked".into()))
        })
        .map_err(|message| Error::Connect { address: address.into(), message })?;
        let waiting: Waiting = Arc::default();
        runtime.spawn(read_updates(updates, grpc.clone(), id, waiting.clone()));
        let (calls, rx) = tokio::sync::mpsc::unbounded_channel();
        runtime.spawn(send_in_order(grpc.clone(), rx, waiting.clone()));
        tracing::info!(scheduler = %url, client = id, "connected");
        Ok(Self { runtime: Mutex::new(Some(runtime)), calls, id, address: url, waiting })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Sends a graph; the futures resolve as the scheduler reports their keys.
    pub(crate) fn submit(
        &self,
        tasks: &[Arc<Task>],
        wanted: Vec<Key>,
        futures: Vec<(Key, Arc<FutureState>)>,
        fetch: bool,
    ) {
        let encoded: std::result::Result<Vec<pb::Task>, _> = tasks.iter().map(|t| task_to_pb(t)).collect();
        let tasks = match encoded {
            Ok(t) => t,
            Err(e) => {
                let err = Error::Remote(format!("cannot send the graph: {e}"));
                futures.iter().for_each(|(_, f)| f.resolve(Err(err.clone())));
                return;
            }
        };
        {
            let mut w = lock(&self.waiting);
            for (k, f) in &futures {
                w.entry(k.clone()).or_default().push((f.clone(), fetch));
            }
        }
        let request =
            pb::SubmitGraph { client_id: self.id, tasks, outputs: wanted.iter().map(pb::Key::from).collect() };
        if self.calls.send(Call::Submit { request, wanted: wanted.clone() }).is_err() {
            let err = Error::Remote("the client is closed".into());
            refuse(&self.waiting, &wanted, &err);
        }
    }

    pub(crate) fn release(&self, keys: Vec<Key>) {
        let request = pb::ClientKeys { client_id: self.id, keys: keys.iter().map(pb::Key::from).collect() };
        let _ = self.calls.send(Call::Release(request));
    }

    pub(crate) fn cancel(&self, keys: Vec<Key>) {
        {
            let mut w = lock(&self.waiting);
            for k in &keys {
                if let Some(fs) = w.remove(k) {
                    fs.iter().for_each(|(f, _)| f.resolve(Err(Error::Cancelled(k.clone()))));
                }
            }
        }
        let request = pb::ClientKeys { client_id: self.id, keys: keys.iter().map(pb::Key::from).collect() };
        let _ = self.calls.send(Call::Cancel(request));
    }

    /// Drops the connection: the scheduler releases this client's keys.
    pub(crate) fn close(&self) {
        let runtime = self.runtime.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(rt) = runtime {
            rt.shutdown_background();
        }
        for (_, fs) in lock(&self.waiting).drain() {
            fs.iter().for_each(|(f, _)| f.resolve(Err(Error::ClusterClosed)));
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.close();
    }
}

/// Resolves the futures of `keys` with `err`.
fn refuse(waiting: &Waiting, keys: &[Key], err: &Error) {
    let mut w = lock(waiting);
    for k in keys {
        if let Some(fs) = w.remove(k) {
            fs.iter().for_each(|(f, _)| f.resolve(Err(err.clone())));
        }
    }
}

/// Sends the order-sensitive calls one after another, in the order made.
async fn send_in_order(mut grpc: Grpc, mut calls: tokio::sync::mpsc::UnboundedReceiver<Call>, waiting: Waiting) {
    while let Some(call) = calls.recv().await {
        match call {
            Call::Submit { request, wanted } => {
                if let Err(status) = grpc.submit(request).await {
                    let err = Error::Remote(format!("the scheduler refused the graph: {}", status.message()));
                    refuse(&waiting, &wanted, &err);
                }
            }
            Call::Release(request) => {
                let _ = grpc.release(request).await;
            }
            Call::Cancel(request) => {
                let _ = grpc.cancel(request).await;
            }
        }
    }
}

async fn read_updates(mut updates: tonic::Streaming<pb::KeyUpdates>, grpc: Grpc, id: u64, waiting: Waiting) {
    loop {
        let batch = match updates.message().await {
            Ok(Some(b)) => b,
            Ok(None) | Err(_) => break,
        };
        for u in batch.updates {
            let Some(key) = u.key.map(Key::from) else { continue };
            match KeyState::try_from(u.state).unwrap_or(KeyState::Unspecified) {
                KeyState::Memory => {
                    // Futures that only hold the key resolve now; the value
                    // is gathered only if some future wants it here.
                    let wanted_here = {
                        let mut w = lock(&waiting);
                        let entry = w.get_mut(&key);
                        let wanted_here = entry.as_ref().is_some_and(|fs| fs.iter().any(|(_, fetch)| *fetch));
                        if let Some(fs) = entry {
                            fs.retain(|(f, fetch)| {
                                if !fetch {
                                    f.resolve(Ok(Value::None));
                                }
                                *fetch
                            });
                            if fs.is_empty() {
                                w.remove(&key);
                            }
                        }
                        wanted_here
                    };
                    if wanted_here {
                        tokio::spawn(gather(grpc.clone(), id, key, waiting.clone()));
                    }
                }
                KeyState::Erred => {
                    let kind = match pb::ErrorKind::try_from(u.error_kind).unwrap_or(pb::ErrorKind::Unspecified) {
                        pb::ErrorKind::KilledWorker => ErrorKind::KilledWorker,
                        pb::ErrorKind::InvalidGraph => ErrorKind::InvalidGraph,
                        pb::ErrorKind::Cancelled => ErrorKind::Cancelled,
                        pb::ErrorKind::Raised | pb::ErrorKind::Unspecified => ErrorKind::Raised,
                    };
                    let origin = u.origin.map_or_else(|| key.clone(), Key::from);
                    let err = Error::Task(Arc::new(TaskError { key: origin, kind, message: u.error }));
                    if let Some(fs) = lock(&waiting).remove(&key) {
                        fs.iter().for_each(|(f, _)| f.resolve(Err(err.clone())));
                    }
                }
                KeyState::Cancelled => {
                    if let Some(fs) = lock(&waiting).remove(&key) {
                        fs.iter().for_each(|(f, _)| f.resolve(Err(Error::Cancelled(key.clone()))));
                    }
                }
                KeyState::Unspecified => {}
            }
        }
    }
    // The scheduler went away: nothing pending can finish.
    for (_, fs) in lock(&waiting).drain() {
        fs.iter().for_each(|(f, _)| f.resolve(Err(Error::ClusterClosed)));
    }
}

async fn gather(mut grpc: Grpc, id: u64, key: Key, waiting: Waiting) {
    if !lock(&waiting).contains_key(&key) {
        return;
    }
    let request = pb::ClientKeys { client_id: id, keys: vec![(&key).into()] };
    let result = async {
        let mut stream = grpc.gather(request).await?.into_inner();
        let mut assembler = Assembler::new(u64::MAX);
        while let Some(piece) = stream.message().await? {
            if let Some((_, value)) = assembler.push(piece).map_err(|e| tonic::Status::data_loss(e.to_string()))? {
                return Ok(value);
            }
        }
        Err(tonic::Status::not_found("the value ended early"))
    }
    .await;
    match result {
        Ok(value) => resolve(&waiting, &key, Ok(value)),
        // The holder died between the update and the gather: the scheduler
        // recomputes the key and reports it again, so the futures wait.
        Err(s) if matches!(s.code(), tonic::Code::NotFound | tonic::Code::Unavailable | tonic::Code::Unknown) => {
            tracing::debug!(key = %key, error = %s.message(), "gather failed; waiting for the key to be recomputed");
        }
        Err(s) => resolve(&waiting, &key, Err(Error::Remote(format!("gathering {key}: {}", s.message())))),
    }
}

fn resolve(waiting: &Waiting, key: &Key, result: Result<Value>) {
    if let Some(fs) = lock(waiting).remove(key) {
        fs.iter().for_each(|(f, _)| f.resolve(result.clone()));
    }
}
