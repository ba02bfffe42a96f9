//! The scheduler's gRPC services: `rask.v1.Scheduler` for clients and
//! `rask.v1.WorkerControl` for workers. Handlers decode and check what
//! arrives, then hand it to the core thread; nothing here decides.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rask_core::Key;
use rask_proto::pb::scheduler_server::Scheduler;
use rask_proto::pb::worker_control_server::WorkerControl;
use rask_proto::pb::worker_data_client::WorkerDataClient;
use rask_proto::pb::{self, Piece};
use rask_proto::transport::Tls;
use rask_proto::{MAX_MESSAGE_BYTES, auth, check_version, task_from_pb};
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use super::core::CoreMsg;
use super::metrics::Metrics;
use crate::{ClientId, WorkerId};

#[derive(Clone)]
pub(crate) struct Handle {
    pub core: mpsc::UnboundedSender<CoreMsg>,
    pub token: Option<Arc<str>>,
    tls: Option<Arc<Tls>>,
    pub metrics: Arc<Metrics>,
    peers: Arc<Mutex<FxHashMap<String, PeerClient>>>,
    /// The HTTP side serves `/metrics` without the token.
    pub metrics_open: bool,
}

/// A worker's data service, asked with the cluster's token.
type PeerClient = WorkerDataClient<InterceptedService<Channel, auth::Bearer>>;

impl Handle {
    pub(crate) fn new(
        core: mpsc::UnboundedSender<CoreMsg>,
        token: Option<Arc<str>>,
        tls: Option<Arc<Tls>>,
        metrics: Arc<Metrics>,
        metrics_open: bool,
    ) -> Self {
        Self { core, token, tls, metrics, peers: Arc::default(), metrics_open }
    }

    fn send(&self, msg: CoreMsg) -> Result<(), Status> {
        self.core.send(msg).map_err(|_| Status::unavailable("the scheduler is shutting down"))
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> CoreMsg) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| Status::unavailable("the scheduler is shutting down"))
    }

    fn auth<T>(&self, request: &Request<T>) -> Result<(), Status> {
        auth::check(request.metadata(), self.token.as_deref())
    }

    /// A channel to a worker's data service, made once per address.
    fn peer(&self, address: &str) -> Result<PeerClient, Status> {
        let mut peers = self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = peers.get(address) {
            return Ok(c.clone());
        }
        let endpoint = rask_proto::transport::endpoint(address, self.tls.as_deref())
            .map_err(|e| Status::internal(format!("worker {address}: {e}")))?;
        let bearer = auth::Bearer::new(self.token.as_deref())?;
        let client = WorkerDataClient::with_interceptor(endpoint.connect_lazy(), bearer)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        peers.insert(address.to_string(), client.clone());
        Ok(client)
    }
}

fn keys_of(keys: Vec<pb::Key>) -> Vec<Key> {
    keys.into_iter().map(Key::from).collect()
}

/// A stream that tells the core when the client's end goes away: the
/// response body is dropped when the connection closes.
struct UpdatesStream {
    inner: UnboundedReceiverStream<Result<pb::KeyUpdates, Status>>,
    client: ClientId,
    core: mpsc::UnboundedSender<CoreMsg>,
}

impl Stream for UpdatesStream {
    type Item = Result<pb::KeyUpdates, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl Drop for UpdatesStream {
    fn drop(&mut self) {
        let _ = self.core.send(CoreMsg::ClientLost(self.client));
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Scheduler for Handle {
    async fn connect(&self, request: Request<pb::Hello>) -> Result<Response<pb::Welcome>, Status> {
        self.auth(&request)?;
        let hello = request.into_inner();
        check_version(hello.version.as_ref()).map_err(|e| Status::failed_precondition(e.to_string()))?;
        let id = self.ask(|reply| CoreMsg::ClientJoin { name: hello.name, reply }).await?;
        Ok(Response::new(pb::Welcome { version: Some(rask_proto::VERSION), client_id: id.0 }))
    }

    async fn submit(&self, request: Request<pb::SubmitGraph>) -> Result<Response<pb::Empty>, Status> {
        self.auth(&request)?;
        let graph = request.into_inner();
        let tasks = graph
            .tasks
            .into_iter()
            .map(task_from_pb)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(format!("bad task: {e}")))?;
        let wanted = keys_of(graph.outputs);
        let client = ClientId(graph.client_id);
        self.ask(|reply| CoreMsg::Submit { client, tasks, wanted, reply }).await?.map_err(Status::invalid_argument)?;
        Ok(Response::new(pb::Empty {}))
    }

    type UpdatesStream = BoxStream<pb::KeyUpdates>;

    async fn updates(&self, request: Request<pb::UpdatesRequest>) -> Result<Response<Self::UpdatesStream>, Status> {
        self.auth(&request)?;
        let client = ClientId(request.into_inner().client_id);
        let (tx, rx) = mpsc::unbounded_channel();
        self.send(CoreMsg::ClientUpdates { client, tx })?;
        let stream = UpdatesStream { inner: UnboundedReceiverStream::new(rx), client, core: self.core.clone() };
        Ok(Response::new(Box::pin(stream)))
    }

    type GatherStream = BoxStream<Piece>;

    async fn gather(&self, request: Request<pb::ClientKeys>) -> Result<Response<Self::GatherStream>, Status> {
        self.auth(&request)?;
        let keys = keys_of(request.into_inner().keys);
        let located = self.ask(|reply| CoreMsg::Locate { keys, reply }).await?;
        for (k, holders) in &located {
            if holders.is_empty() {
                return Err(Status::not_found(format!("{k} is not in memory on any worker")));
            }
        }
        // Pieces are forwarded as they arrive, never decoded here; the
        // bounded channel makes a slow client slow the fetch, not fill memory.
        let (tx, rx) = mpsc::channel(16);
        let handle = self.clone();
        tokio::spawn(async move {
            for (key, holders) in located {
                let mut last_error = None;
                let mut sent = false;
                for address in &holders {
                    match handle.forward(&key, address, &tx).await {
                        Ok(()) => {
                            sent = true;
                            break;
                        }
                        Err(Forward::Client) => return,
                        Err(Forward::Peer(e)) => last_error = Some(e),
                    }
                }
                if !sent {
                    let e = last_error.unwrap_or_else(|| Status::not_found(format!("{key} has no holder")));
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel(&self, request: Request<pb::ClientKeys>) -> Result<Response<pb::Empty>, Status> {
        self.auth(&request)?;
        let ck = request.into_inner();
        self.send(CoreMsg::Cancel { client: ClientId(ck.client_id), keys: keys_of(ck.keys) })?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn release(&self, request: Request<pb::ClientKeys>) -> Result<Response<pb::Empty>, Status> {
        self.auth(&request)?;
        let ck = request.into_inner();
        self.send(CoreMsg::Release { client: ClientId(ck.client_id), keys: keys_of(ck.keys) })?;
        Ok(Response::new(pb::Empty {}))
    }
}

enum Forward {
    /// The client went away.
    Client,
    /// The worker failed; another holder may do.
    Peer(Status),
}

impl Handle {
    async fn forward(&self, key: &Key, address: &str, tx: &mpsc::Sender<Result<Piece, Status>>) -> Result<(), Forward> {
        let mut peer = self.peer(address).map_err(Forward::Peer)?;
        let request = pb::Keys { keys: vec![key.into()] };
        let mut stream = peer.fetch(request).await.map_err(Forward::Peer)?.into_inner();
        let mut started = false;
        loop {
            match stream.message().await {
                Ok(Some(piece)) => {
                    started = true;
                    self.metrics.gathered.inc_by(piece.data.len() as u64);
                    tx.send(Ok(piece)).await.map_err(|_| Forward::Client)?;
                }
                Ok(None) => return Ok(()),
                // Pieces already went out: the client must see the failure.
                Err(e) if started => {
                    let _ = tx.send(Err(e)).await;
                    return Err(Forward::Client);
                }
                Err(e) => return Err(Forward::Peer(e)),
            }
        }
    }
}

/// Tells the core when a worker's stream ends, however it ends.
struct WorkerGuard {
    worker: WorkerId,
    core: mpsc::UnboundedSender<CoreMsg>,
    reason: String,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let reason = std::mem::take(&mut self.reason);
        let _ = self.core.send(CoreMsg::WorkerLost { worker: self.worker, reason });
    }
}

#[tonic::async_trait]
impl WorkerControl for Handle {
    type ConnectStream = BoxStream<pb::SchedulerMessages>;

    async fn connect(
        &self,
        request: Request<Streaming<pb::WorkerMessages>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        self.auth(&request)?;
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| Status::invalid_argument("no registration"))?;
        let mut messages = first.messages.into_iter();
        let reg = match messages.next().and_then(|m| m.kind) {
            Some(pb::worker_message::Kind::Register(r)) => r,
            _ => return Err(Status::invalid_argument("the first message of a worker must register it")),
        };
        check_version(reg.version.as_ref()).map_err(|e| Status::failed_precondition(e.to_string()))?;
        if !reg.data_address.starts_with("http://") && !reg.data_address.starts_with("https://") {
            return Err(Status::invalid_argument(format!("bad data address {:?}", reg.data_address)));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = self.ask(|reply| CoreMsg::WorkerJoin { reg, tx, reply }).await?;
        let rest: Vec<pb::WorkerMessage> = messages.collect();
        if !rest.is_empty() {
            self.send(CoreMsg::FromWorker(worker, rest))?;
        }
        let core = self.core.clone();
        tokio::spawn(async move {
            let mut guard = WorkerGuard { worker, core: core.clone(), reason: String::new() };
            loop {
                match inbound.message().await {
                    Ok(Some(batch)) => {
                        if core.send(CoreMsg::FromWorker(worker, batch.messages)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        guard.reason = "the worker closed its stream".into();
                        return;
                    }
                    Err(e) => {
                        guard.reason = format!("stream failed: {}", e.message());
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}
