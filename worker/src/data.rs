//! The worker's data service (`rask.v1.WorkerData`): peers fetch the values
//! this worker holds, streamed in pieces of at most 1 MiB, so a value of any
//! size moves without a large message and the receiver bounds what it
//! accepts. A value is encoded into segments that reference a large array's
//! own memory, and pieces slice them: the sender copies nothing but headers.
//! The receiver writes an array's pieces straight into its new vector.
//!
//! With a cluster token, the service answers only requests that carry it
//! (`authorization: Bearer <token>`), like every other port of the cluster:
//! the values it holds are the cluster's results.

use std::pin::Pin;
use std::sync::Arc;

use rask_core::{Key, Value};
use rask_proto::auth::{Bearer, Require};
use rask_proto::pb::worker_data_client::WorkerDataClient;
use rask_proto::pb::worker_data_server::{WorkerData, WorkerDataServer};
use rask_proto::pb::{self, Keys, Piece};
use rask_proto::transport::Tls;
use rask_proto::{Assembler, MAX_MESSAGE_BYTES, PIECE_BYTES, encode_segments, pieces};
use tokio_stream::Stream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::DataStore;

/// Serves a [`DataStore`] to peers.
#[derive(Clone, Debug)]
pub struct DataService {
    store: Arc<DataStore>,
}

impl DataService {
    pub fn new(store: Arc<DataStore>) -> Self {
        Self { store }
    }

    /// The tonic service, with rask's message bounds, refusing requests
    /// without `token` when one is given.
    pub fn into_server(self, token: Option<&str>) -> InterceptedService<WorkerDataServer<Self>, Require> {
        let server = WorkerDataServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        InterceptedService::new(server, Require::new(token))
    }
}

type PieceStream = Pin<Box<dyn Stream<Item = Result<Piece, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerData for DataService {
    type FetchStream = PieceStream;

    async fn fetch(&self, request: Request<Keys>) -> Result<Response<Self::FetchStream>, Status> {
        let keys: Vec<Key> = request.into_inner().keys.into_iter().map(Key::from).collect();
        // Look every key up first: a missing one fails the whole request
        // before any piece is sent.
        let mut values = Vec::with_capacity(keys.len());
        for k in keys {
            let v = self.store.get(&k).ok_or_else(|| Status::not_found(format!("{k} is not on this worker")))?;
            values.push((k, v));
        }
        // Each value is encoded when the stream reaches it.
        let items = values.into_iter().flat_map(|(k, v)| -> Vec<Result<Piece, Status>> {
            match encode_segments(&v) {
                Ok(segments) => pieces(&k, &segments, PIECE_BYTES).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(Status::internal(format!("{k}: {e}")))],
            }
        });
        let stream = tokio_stream::iter(items);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A connection to a peer's data service.
#[derive(Clone, Debug)]
pub struct DataClient {
    inner: WorkerDataClient<InterceptedService<Channel, Bearer>>,
    limit: u64,
}

/// What can go wrong fetching from a peer.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach {address}: {message}")]
    Connect { address: String, message: String },
    #[error("{0}")]
    Status(#[from] Status),
    #[error(transparent)]
    Wire(#[from] rask_proto::WireError),
    #[error("the peer sent {got} of the {wanted} keys asked for")]
    Incomplete { wanted: usize, got: usize },
}

impl DataClient {
    /// Connects to `address` (`http://host:port`), accepting values of at
    /// most `limit` bytes.
    pub async fn connect(address: &str, limit: u64) -> Result<Self, FetchError> {
        Self::connect_with(address, limit, None, None).await
    }

    /// As [`Self::connect`], over TLS when the address is `tls://` or
    /// `https://` (with this process's certificates when it has them), and
    /// presenting the cluster's `token` when there is one.
    pub async fn connect_with(
        address: &str,
        limit: u64,
        tls: Option<&Tls>,
        token: Option<&str>,
    ) -> Result<Self, FetchError> {
        let connect_error =
            |e: &dyn std::fmt::Display| FetchError::Connect { address: address.to_string(), message: e.to_string() };
        let bearer = Bearer::new(token).map_err(|e| connect_error(&e.message()))?;
        let endpoint = rask_proto::transport::endpoint(address, tls).map_err(|e| connect_error(&e))?;
        let channel = endpoint.connect().await.map_err(|e| connect_error(&e))?;
        let inner = WorkerDataClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self { inner, limit })
    }

    /// Fetches values, in the order asked.
    pub async fn fetch(&mut self, keys: &[Key]) -> Result<Vec<(Key, Value)>, FetchError> {
        let request = Keys { keys: keys.iter().map(pb::Key::from).collect() };
        let mut stream = self.inner.fetch(request).await?.into_inner();
        let mut out = Vec::with_capacity(keys.len());
        let mut assembler = Assembler::new(self.limit);
        while let Some(piece) = stream.message().await? {
            if let Some(done) = assembler.push(piece)? {
                out.push(done);
            }
        }
        if out.len() != keys.len() {
            return Err(FetchError::Incomplete { wanted: keys.len(), got: out.len() });
        }
        Ok(out)
    }
}
