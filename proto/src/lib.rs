//! rask's wire protocol, `rask.v1`: the protobuf messages and tonic
//! services generated from `proto/rask/v1/rask.proto`, and conversions to
//! and from rask-core's types.
//!
//! Decoding never trusts the peer: a message missing a required part is an
//! error naming it, values are decoded with rask-core's checked encoding,
//! and values larger than one message travel as [`pb::Piece`]s that
//! [`Assembler`] joins only up to a size the receiver chose. Large arrays
//! cross without intermediate buffers (`values`): the sender's pieces slice
//! the stored array itself, and the receiver writes them straight into the
//! new array's vector.

use std::sync::Arc;

use bytes::Bytes;
use rask_core::{Arg, Body, Call, Key, Params, Task, Value};

mod pages;
pub mod transport;
mod values;

pub use values::encode_segments;

/// The generated protobuf types and services.
#[allow(clippy::all, missing_debug_implementations, rust_2018_idioms, unused_qualifications)]
pub mod pb {
    tonic::include_proto!("rask.v1");
}

/// The protocol version this build speaks.
pub const VERSION: pb::Version = pb::Version { major: 1, minor: 0 };

/// The largest piece of a value in one message.
pub const PIECE_BYTES: usize = 1 << 20;

/// The largest gRPC message rask sends or accepts: a batch of tasks or
/// pieces, with room for framing.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// A message that does not make sense.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("bad value: {0}")]
    Value(String),
    #[error("value of {key} is {total} bytes, more than the {limit} this receiver accepts")]
    TooLarge { key: String, total: u64, limit: u64 },
    #[error("piece of {key} at offset {got}, expected {expected}")]
    OutOfOrder { key: String, got: u64, expected: u64 },
    #[error("cannot reserve {total} bytes for the value of {key}")]
    NoMemory { key: String, total: u64 },
    #[error("peer speaks protocol {theirs}, this build speaks {ours}")]
    Version { theirs: String, ours: String },
}

/// `tcp://host:port` (Dask's spelling), `tls://host:port`, `host:port`,
/// `http://host:port` or `https://host:port`, as the URL gRPC dials.
pub fn grpc_url(address: &str) -> String {
    if let Some(rest) = address.strip_prefix("tls://") {
        return format!("https://{rest}");
    }
    let rest = address.strip_prefix("tcp://").unwrap_or(address);
    if rest.starts_with("http://") || rest.starts_with("https://") {
        rest.to_string()
    } else {
        format!("http://{rest}")
    }
}

/// Refuses a peer of another major version.
pub fn check_version(theirs: Option<&pb::Version>) -> Result<(), WireError> {
    let theirs = theirs.ok_or(WireError::Missing("protocol version"))?;
    if theirs.major != VERSION.major {
        return Err(WireError::Version {
            theirs: format!("{}.{}", theirs.major, theirs.minor),
            ours: format!("{}.{}", VERSION.major, VERSION.minor),
        });
    }
    Ok(())
}

/// Shared-token authentication: when a token is configured, every request
/// to every port (gRPC to the scheduler and to workers' data services, and
/// HTTP) carries `authorization: Bearer <token>`; others are refused. The
/// token is compared in constant time and never logged.
pub mod auth {
    use std::sync::Arc;

    use axum::extract::{Request, State};
    use axum::http::{StatusCode, header};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};
    use base64::Engine as _;
    use subtle::ConstantTimeEq;
    use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
    use tonic::{Request as GrpcRequest, Status};

    /// Checks a gRPC request's bearer token against the configured one.
    pub fn check(metadata: &MetadataMap, token: Option<&str>) -> Result<(), Status> {
        let Some(token) = token else { return Ok(()) };
        let given = metadata.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if same(given.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(Status::unauthenticated("wrong token")),
            None => Err(Status::unauthenticated("this cluster requires a token (--token or RASK_TOKEN)")),
        }
    }

    /// Equality whose time does not depend on where the inputs differ
    /// (only on their lengths, which the token's owner chose).
    pub fn same(a: &[u8], b: &[u8]) -> bool {
        a.ct_eq(b).into()
    }

    /// Whether an HTTP `Authorization` header carries the token: as
    /// `Bearer <token>` (API clients, Prometheus, the operator), or as the
    /// password of HTTP Basic credentials with any user name (what a browser
    /// sends after the dashboard's login prompt).
    pub fn http_authorized(header: Option<&str>, token: &str) -> bool {
        let Some(header) = header else { return false };
        if let Some(given) = header.strip_prefix("Bearer ") {
            return same(given.trim().as_bytes(), token.as_bytes());
        }
        let Some(encoded) = header.strip_prefix("Basic ") else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        match decoded.iter().position(|&b| b == b':') {
            Some(colon) => same(&decoded[colon + 1..], token.as_bytes()),
            None => false,
        }
    }

    /// Who may read a process's HTTP endpoints. With a token, every path
    /// (unknown ones too, so a caller cannot tell which exist) requires it,
    /// except `/health`, which kubelet probes call without headers and which
    /// answers `ok` and nothing more, and `/metrics` when it is left open
    /// for Prometheus set-ups that cannot present a token.
    #[derive(Clone, Default)]
    pub struct HttpGuard {
        token: Option<Arc<str>>,
        metrics_open: bool,
    }

    impl std::fmt::Debug for HttpGuard {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("HttpGuard")
                .field("token", &self.token.as_ref().map(|_| "<redacted>"))
                .field("metrics_open", &self.metrics_open)
                .finish()
        }
    }

    impl HttpGuard {
        pub fn new(token: Option<&str>, metrics_open: bool) -> Self {
            Self { token: token.map(Arc::from), metrics_open }
        }

        /// Whether `path` is served without the token.
        pub fn is_open(&self, path: &str) -> bool {
            self.token.is_none() || path == "/health" || (self.metrics_open && path == "/metrics")
        }
    }

    /// axum middleware applying an [`HttpGuard`] (as a `layer` over the
    /// whole router): a request without the token gets 401 and a Basic
    /// challenge, so a browser asks for it, and learns nothing else.
    pub async fn guard_http(State(guard): State<HttpGuard>, request: Request, next: Next) -> Response {
        if let Some(token) = guard.token.as_deref().filter(|_| !guard.is_open(request.uri().path())) {
            let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            if !http_authorized(given, token) {
                return refused();
            }
        }
        next.run(request).await
    }

    /// The answer to a request without the token.
    pub fn refused() -> Response {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"rask\", charset=\"UTF-8\"")],
            "Unauthorized: this endpoint requires the cluster's token (Authorization: Bearer <token>)\n",
        )
            .into_response()
    }

    /// Refuses, on a gRPC server, every request without the token (when
    /// one is configured).
    #[derive(Clone, Default)]
    pub struct Require(Option<Arc<str>>);

    impl std::fmt::Debug for Require {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(if self.0.is_some() { "Require(<redacted>)" } else { "Require(none)" })
        }
    }

    impl Require {
        pub fn new(token: Option<&str>) -> Self {
            Self(token.map(Arc::from))
        }
    }

    impl tonic::service::Interceptor for Require {
        fn call(&mut self, request: GrpcRequest<()>) -> Result<GrpcRequest<()>, Status> {
            check(request.metadata(), self.0.as_deref())?;
            Ok(request)
        }
    }

    /// Adds the bearer token, if any, to every outgoing request.
    #[derive(Clone, Default)]
    pub struct Bearer(Option<MetadataValue<Ascii>>);

    impl std::fmt::Debug for Bearer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            // Never print the token.
            f.write_str(if self.0.is_some() { "Bearer(<redacted>)" } else { "Bearer(none)" })
        }
    }

    impl Bearer {
        pub fn new(token: Option<&str>) -> Result<Self, Status> {
            token
                .map(|t| {
                    format!("Bearer {t}")
                        .parse::<MetadataValue<Ascii>>()
                        .map_err(|_| Status::invalid_argument("the token must be printable ASCII"))
                })
                .transpose()
                .map(Self)
        }
    }

    impl tonic::service::Interceptor for Bearer {
        fn call(&mut self, mut request: GrpcRequest<()>) -> Result<GrpcRequest<()>, Status> {
            if let Some(v) = &self.0 {
                request.metadata_mut().insert("authorization", v.clone());
            }
            Ok(request)
        }
    }
}

impl From<&Key> for pb::Key {
    fn from(k: &Key) -> Self {
        pb::Key { name: k.name().to_string(), index: k.index().to_vec() }
    }
}

impl From<pb::Key> for Key {
    fn from(k: pb::Key) -> Self {
        if k.index.is_empty() { Key::new(k.name) } else { Key::chunk(Arc::from(k.name), &k.index) }
    }
}

/// A value in rask's encoding (postcard; Arrow IPC inside for tables).
pub fn encode_value(v: &Value) -> Result<Bytes, WireError> {
    // Sized up front: growing a buffer of a large array by doubling copies it
    // and faults in fresh pages each time.
    let buf = Vec::with_capacity(v.nbytes() + 64);
    postcard::to_extend(v, buf).map(Bytes::from).map_err(|e| WireError::Value(e.to_string()))
}

/// Decodes a value; malformed or truncated bytes are an error.
pub fn decode_value(bytes: &[u8]) -> Result<Value, WireError> {
    postcard::from_bytes(bytes).map_err(|e| WireError::Value(e.to_string()))
}

fn arg_to_pb(a: &Arg) -> Result<pb::Arg, WireError> {
    let kind = match a {
        Arg::Key(k) => pb::arg::Kind::Key(k.into()),
        Arg::Value(v) => pb::arg::Kind::Value(encode_value(v)?),
        Arg::List(items) => {
            pb::arg::Kind::List(pb::ArgList { items: items.iter().map(arg_to_pb).collect::<Result<_, _>>()? })
        }
    };
    Ok(pb::Arg { kind: Some(kind) })
}

fn arg_from_pb(a: pb::Arg) -> Result<Arg, WireError> {
    Ok(match a.kind.ok_or(WireError::Missing("argument"))? {
        pb::arg::Kind::Key(k) => Arg::Key(k.into()),
        pb::arg::Kind::Value(v) => Arg::Value(decode_value(&v)?),
        pb::arg::Kind::List(l) => Arg::List(l.items.into_iter().map(arg_from_pb).collect::<Result<_, _>>()?),
    })
}

fn call_to_pb(c: &Call) -> Result<pb::Call, WireError> {
    Ok(pb::Call {
        op: c.op.to_string(),
        params: c.params.0.clone(),
        args: c.args.iter().map(arg_to_pb).collect::<Result<_, _>>()?,
    })
}

fn call_from_pb(c: pb::Call) -> Result<Call, WireError> {
    if c.op.is_empty() {
        return Err(WireError::Missing("op name"));
    }
    Ok(Call {
        op: Arc::from(c.op),
        params: Params(c.params),
        args: c.args.into_iter().map(arg_from_pb).collect::<Result<_, _>>()?,
    })
}

/// A task for the wire.
pub fn task_to_pb(t: &Task) -> Result<pb::Task, WireError> {
    let body = match &t.body {
        Body::Call(c) => pb::task::Body::Call(call_to_pb(c)?),
        Body::Fused(chain) => pb::task::Body::Fused(pb::FusedChain {
            calls: chain
                .iter()
                .map(|(k, c)| Ok(pb::FusedCall { key: Some(k.into()), call: Some(call_to_pb(c)?) }))
                .collect::<Result<_, WireError>>()?,
        }),
    };
    Ok(pb::Task { key: Some((&t.key).into()), body: Some(body) })
}

/// A task from the wire, with every required part checked.
pub fn task_from_pb(t: pb::Task) -> Result<Task, WireError> {
    let key: Key = t.key.ok_or(WireError::Missing("task key"))?.into();
    let body = match t.body.ok_or(WireError::Missing("task body"))? {
        pb::task::Body::Call(c) => Body::Call(call_from_pb(c)?),
        pb::task::Body::Fused(chain) => {
            if chain.calls.is_empty() {
                return Err(WireError::Missing("calls of a fused task"));
            }
            Body::Fused(
                chain
                    .calls
                    .into_iter()
                    .map(|fc| {
                        let k: Key = fc.key.ok_or(WireError::Missing("fused call key"))?.into();
                        Ok((k, call_from_pb(fc.call.ok_or(WireError::Missing("fused call"))?)?))
                    })
                    .collect::<Result<_, WireError>>()?,
            )
        }
    };
    Ok(Task { key, body })
}

/// Splits a serialized value (the segments of [`encode_segments`], or one
/// buffer) into pieces of at most `piece` bytes; the pieces share the
/// segments' memory (no copies). A piece never spans two segments.
pub fn pieces(key: &Key, segments: &[Bytes], piece: usize) -> Vec<pb::Piece> {
    let piece = piece.max(1);
    let total: u64 = segments.iter().map(|s| s.len() as u64).sum();
    let mut out = Vec::new();
    let mut offset = 0u64;
    for segment in segments {
        for start in (0..segment.len()).step_by(piece) {
            let data = segment.slice(start..(start + piece).min(segment.len()));
            let len = data.len() as u64;
            out.push(pb::Piece { key: Some(key.into()), total, offset, data });
            offset += len;
        }
    }
    if out.is_empty() {
        out.push(pb::Piece { key: Some(key.into()), total, offset: 0, data: Bytes::new() });
    }
    out
}

/// Where the bytes of the value being received go.
#[derive(Debug)]
enum Sink {
    /// An array, written into its own vector as pieces arrive.
    Array(values::ArrayReceiver),
    /// Anything else, joined and then decoded.
    Joined(Vec<u8>, pages::Prefault),
}

#[derive(Debug)]
struct Partial {
    key: Key,
    total: u64,
    received: u64,
    sink: Sink,
}

/// Joins the pieces of values and decodes them. It refuses values over
/// `limit` bytes (before reserving anything), pieces out of order and pieces
/// past the announced end; the one reservation per value is bounded by the
/// limit and fallible. Array values are written straight into the array's
/// vector: one copy of the elements, none for the joined buffer.
#[derive(Debug)]
pub struct Assembler {
    limit: u64,
    partial: Option<Partial>,
}

impl Assembler {
    pub fn new(limit: u64) -> Self {
        Self { limit, partial: None }
    }

    /// Adds a piece; returns the key and its value once complete.
    pub fn push(&mut self, p: pb::Piece) -> Result<Option<(Key, Value)>, WireError> {
        let key: Key = p.key.ok_or(WireError::Missing("piece key"))?.into();
        let len = p.data.len() as u64;
        let Some(partial) = &mut self.partial else {
            if p.total > self.limit {
                return Err(WireError::TooLarge { key: key.to_string(), total: p.total, limit: self.limit });
            }
            if p.offset != 0 {
                return Err(WireError::OutOfOrder { key: key.to_string(), got: p.offset, expected: 0 });
            }
            if len > p.total {
                return Err(WireError::TooLarge { key: key.to_string(), total: len, limit: p.total });
            }
            if len == p.total {
                // One piece: decode it where it is.
                return Ok(Some((key, decode_value(&p.data)?)));
            }
            let sink = match values::ArrayReceiver::start(&p.data, p.total)? {
                Some((mut array, head)) => {
                    array.push(&p.data[head..])?;
                    Sink::Array(array)
                }
                None => {
                    let no_memory = || WireError::NoMemory { key: key.to_string(), total: p.total };
                    let mut buf = Vec::new();
                    buf.try_reserve_exact(usize::try_from(p.total).map_err(|_| no_memory())?)
                        .map_err(|_| no_memory())?;
                    let mut prefault = pages::Prefault::new(buf.as_ptr(), buf.capacity());
                    prefault.ahead(buf.as_ptr(), p.data.len());
                    buf.extend_from_slice(&p.data);
                    Sink::Joined(buf, prefault)
                }
            };
            self.partial = Some(Partial { key, total: p.total, received: len, sink });
            return Ok(None);
        };
        if partial.key != key || p.offset != partial.received || p.total != partial.total {
            return Err(WireError::OutOfOrder { key: key.to_string(), got: p.offset, expected: partial.received });
        }
        let received = partial.received + len;
        if received > partial.total {
            return Err(WireError::TooLarge { key: key.to_string(), total: received, limit: partial.total });
        }
        match &mut partial.sink {
            Sink::Array(array) => array.push(&p.data)?,
            Sink::Joined(buf, prefault) => {
                prefault.ahead(buf.as_ptr().wrapping_add(buf.len()), p.data.len());
                buf.extend_from_slice(&p.data);
            }
        }
        partial.received = received;
        if received < partial.total {
            return Ok(None);
        }
        let Some(done) = self.partial.take() else { return Ok(None) };
        let value = match done.sink {
            Sink::Array(array) => array.finish()?,
            Sink::Joined(buf, _) => decode_value(&buf)?,
        };
        Ok(Some((done.key, value)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_credentials_must_carry_the_token() {
        use super::auth::http_authorized;
        use base64::Engine as _;
        let basic = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        assert!(http_authorized(Some("Bearer s3cret"), "s3cret"));
        assert!(http_authorized(Some(&basic("anyone:s3cret")), "s3cret"));
        assert!(http_authorized(Some(&basic(":s3cret")), "s3cret"));
        for wrong in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("bearer s3cret"),
            Some("s3cret"),
            Some("Basic !!!"),
            Some(basic("s3cret").as_str()),
            Some(basic("s3cret:").as_str()),
            Some(basic("u:s3cret ").as_str()),
        ] {
            assert!(!http_authorized(wrong, "s3cret"), "{wrong:?}");
        }
    }

    use super::*;
    use prost::Message;

    fn sample_task() -> Task {
        let k = Key::chunk(Arc::from("sum-ab12"), &[1, 2]);
        let inner = Key::new("inc-0f");
        let call = Call {
            op: Arc::from("rask.add"),
            params: Params::encode(&(3u32, "x")),
            args: vec![
                Arg::Key(Key::new("a-1")),
                Arg::Value(Value::Float(2.5)),
                Arg::List(vec![Arg::Value(Value::Str(Arc::from("s"))), Arg::Key(Key::chunk(Arc::from("b"), &[0]))]),
            ],
        };
        Task { key: k, body: Body::Fused(vec![(inner, call.clone()), (Key::new("sum-ab12"), call)]) }
    }

    #[test]
    fn tasks_round_trip_through_protobuf_bytes() {
        let t = sample_task();
        let bytes = task_to_pb(&t).expect("encodes").encode_to_vec();
        let back = task_from_pb(pb::Task::decode(bytes.as_slice()).expect("decodes")).expect("valid");
        assert_eq!(back, t);
    }

    #[test]
    fn malformed_tasks_are_errors_not_panics() {
        assert_eq!(task_from_pb(pb::Task::default()), Err(WireError::Missing("task key")));
        let no_body = pb::Task { key: Some((&Key::new("x")).into()), body: None };
        assert_eq!(task_from_pb(no_body), Err(WireError::Missing("task body")));
        let bad_value = pb::Task {
            key: Some((&Key::new("x")).into()),
            body: Some(pb::task::Body::Call(pb::Call {
                op: "rask.add".into(),
                params: Bytes::new(),
                args: vec![pb::Arg { kind: Some(pb::arg::Kind::Value(Bytes::from_static(&[0xff, 0xff, 0xff]))) }],
            })),
        };
        assert!(matches!(task_from_pb(bad_value), Err(WireError::Value(_))));
        // Garbage protobuf bytes fail to decode.
        assert!(pb::Task::decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f][..]).is_err());
    }

    #[test]
    fn versions_are_checked() {
        assert!(check_version(Some(&VERSION)).is_ok());
        assert!(check_version(Some(&pb::Version { major: 2, minor: 0 })).is_err());
        assert!(check_version(None).is_err());
    }

    #[test]
    fn assembler_refuses_oversized_and_out_of_order() {
        let k = Key::new("v");
        let mut a = Assembler::new(10);
        let big = pb::Piece { key: Some((&k).into()), total: 1 << 40, offset: 0, data: Bytes::from_static(b"x") };
        assert!(matches!(a.push(big), Err(WireError::TooLarge { .. })));
        // Within a limit no machine can reserve: an error, not an abort.
        let mut a = Assembler::new(u64::MAX);
        let huge = pb::Piece { key: Some((&k).into()), total: 1 << 62, offset: 0, data: Bytes::from_static(b"x") };
        assert!(matches!(a.push(huge), Err(WireError::NoMemory { .. })));
        let mut a = Assembler::new(100);
        let data = Bytes::from_static(b"0123456789");
        let ps = pieces(&k, &[data], 4);
        assert!(matches!(a.push(ps[1].clone()), Err(WireError::OutOfOrder { .. })));
        let mut a = Assembler::new(100);
        let lie = pb::Piece { key: Some((&k).into()), total: 2, offset: 0, data: Bytes::from_static(b"abc") };
        assert!(matches!(a.push(lie), Err(WireError::TooLarge { .. })));
    }

    fn f64_array(n: usize) -> Value {
        let a = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[n / 4, 4]), |ix| (ix[0] * 4 + ix[1]) as f64 * 0.5);
        Value::Array(rask_core::ArrayValue::F64(a.into_shared()))
    }

    #[test]
    fn segments_are_the_encoding_and_reference_the_array() {
        let big = f64_array(1 << 16);
        let list =
            Value::List(Arc::from(vec![Value::Int(3), big.clone(), Value::Bytes(Bytes::from(vec![7u8; 1 << 17]))]));
        for v in [big.clone(), list, Value::Str(Arc::from("small")), f64_array(8)] {
            let segments = encode_segments(&v).expect("encodes");
            let joined: Vec<u8> = segments.iter().flat_map(|s| s.iter().copied()).collect();
            assert_eq!(joined, encode_value(&v).expect("encodes").to_vec());
        }
        // The elements are the stored array's memory, not a copy of it.
        let Value::Array(rask_core::ArrayValue::F64(a)) = &big else { unreachable!() };
        let segments = encode_segments(&big).expect("encodes");
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[1].as_ptr(), a.as_ptr().cast::<u8>());
    }

    #[test]
    fn arrays_arrive_whole_from_any_split() {
        let v = f64_array(1 << 12);
        let k = Key::new("a");
        let segments = encode_segments(&v).expect("encodes");
        let joined = encode_value(&v).expect("encodes");
        // The sender's split (header, then the elements), splits that cut
        // elements, one byte at a time (the header is split: the ordinary
        // decoder), and the elements in one piece.
        let splits = [
            pieces(&k, &segments, 1000),
            pieces(&k, std::slice::from_ref(&joined), 333),
            pieces(&k, std::slice::from_ref(&joined), 1),
            pieces(&k, &segments, usize::MAX),
        ];
        for ps in splits {
            let mut a = Assembler::new(joined.len() as u64);
            let mut out = None;
            for p in ps {
                assert!(out.is_none());
                out = a.push(p).expect("valid pieces");
            }
            assert_eq!(out, Some((k.clone(), v.clone())));
        }
    }

    /// Values big enough for the receive buffer to be pre-faulted (arrays
    /// into their vector, anything else into the joined buffer) arrive
    /// whole, also when pieces cut elements and runs at odd places.
    #[test]
    fn large_values_arrive_whole_into_prefaulted_buffers() {
        let array = f64_array((9 << 20) / 8 + 3);
        let bytes = Value::Bytes(Bytes::from((0..(6 << 20) + 5).map(|i| (i % 253) as u8).collect::<Vec<u8>>()));
        let list = Value::List(Arc::from(vec![Value::Int(7), array.clone()]));
        let k = Key::new("big");
        for v in [array, bytes, list] {
            let joined = encode_value(&v).expect("encodes");
            for piece in [PIECE_BYTES, 999_999, 3 << 20] {
                let mut a = Assembler::new(joined.len() as u64);
                let mut out = None;
                for p in pieces(&k, &encode_segments(&v).expect("encodes"), piece) {
                    assert!(out.is_none());
                    out = a.push(p).expect("valid pieces");
                }
                assert_eq!(out, Some((k.clone(), v.clone())));
            }
        }
    }

    #[test]
    fn lying_array_pieces_are_errors() {
        let v = f64_array(64);
        let good = encode_value(&v).expect("encodes").to_vec();
        // Claims more elements than the value carries: the header does not
        // match the total, so the ordinary decoder refuses it.
        let mut more = good.clone();
        more.truncate(good.len() - 8);
        let mut a = Assembler::new(1 << 20);
        let ps = pieces(&Key::new("a"), &[Bytes::from(more)], 100);
        let results: Vec<_> = ps.into_iter().map(|p| a.push(p)).collect();
        assert!(results.iter().any(Result::is_err));
        // A bool array with a byte that is not 0 or 1.
        let b = Value::Array(rask_core::ArrayValue::Bool(
            ndarray::ArrayD::from_elem(ndarray::IxDyn(&[300]), true).into_shared(),
        ));
        let mut bytes = encode_value(&b).expect("encodes").to_vec();
        let last = bytes.len() - 1;
        bytes[last] = 9;
        let mut a = Assembler::new(1 << 20);
        let results: Vec<_> =
            pieces(&Key::new("b"), &[Bytes::from(bytes)], 100).into_iter().map(|p| a.push(p)).collect();
        assert!(results.iter().any(Result::is_err));
    }

    proptest::proptest! {
        /// Whatever a peer sends, decoding returns a result; it never
        /// panics or allocates what a length prefix claims.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_value(&data);
            if let Ok(t) = pb::Task::decode(data.as_slice()) {
                let _ = task_from_pb(t);
            }
            let _ = pb::WorkerMessage::decode(data.as_slice());
        }

        #[test]
        fn mutated_tasks_never_panic(flip in 0usize..4096, byte in proptest::num::u8::ANY) {
            let mut bytes = task_to_pb(&sample_task()).expect("encodes").encode_to_vec();
            let i = flip % bytes.len();
            bytes[i] = byte;
            if let Ok(t) = pb::Task::decode(bytes.as_slice()) {
                let _ = task_from_pb(t);
            }
        }

        #[test]
        fn pieces_reassemble(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..5000),
            piece in 1usize..700,
            as_array in proptest::bool::ANY,
        ) {
            let k = Key::chunk(Arc::from("x"), &[3]);
            let v = if as_array {
                let n = data.len() / 2;
                let items: Vec<i16> = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
                let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), items).expect("shape");
                Value::Array(rask_core::ArrayValue::I16(a.into_shared()))
            } else {
                Value::Bytes(Bytes::from(data))
            };
            let mut a = Assembler::new(10_000);
            let mut out = None;
            for p in pieces(&k, &encode_segments(&v).expect("encodes"), piece) {
                proptest::prop_assert!(out.is_none());
                out = a.push(p).expect("valid pieces");
            }
            let (key, got) = out.expect("complete");
            proptest::prop_assert_eq!(key, k);
            proptest::prop_assert_eq!(got, v);
        }

        /// Pieces of garbage, split anywhere, are errors or values; never a
        /// panic.
        #[test]
        fn arbitrary_pieces_never_panic(
            data in proptest::collection::vec(proptest::num::u8::ANY, 1..2000),
            piece in 1usize..500,
            prefix in proptest::bool::ANY,
        ) {
            let mut bytes = if prefix { encode_value(&f64_array(16)).expect("encodes")[..6].to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&data);
            let mut a = Assembler::new(10_000);
            for p in pieces(&Key::new("g"), &[Bytes::from(bytes)], piece) {
                if a.push(p).is_err() {
                    break;
                }
            }
        }
    }
}
