//! rask's wire protocol, `rask.v1`: the protobuf messages and tonic
//! services generated from `proto/rask/v1/rask.proto`, and conversions to
//! and from rask-core's types.
//!
//! Decoding never trusts the peer: a message missing a required part is an
//! error naming it, values are decoded with rask-core's checked encoding,
//! and values larger than one message travel as [`pb::Piece`]s that
//! [`Assembler`] joins only up to a size the receiver chose.

use std::sync::Arc;

use bytes::Bytes;
use rask_core::{Arg, Body, Call, Key, Params, Task, Value};

pub mod transport;

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
/// carries `authorization: Bearer <token>`; others are refused. The token is
/// compared in constant time and never logged.
pub mod auth {
    use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
    use tonic::{Request, Status};

    /// Checks a request's bearer token against the configured one.
    pub fn check(metadata: &MetadataMap, token: Option<&str>) -> Result<(), Status> {
        let Some(token) = token else { return Ok(()) };
        let given = metadata.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if same(given.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(Status::unauthenticated("wrong token")),
            None => Err(Status::unauthenticated("this scheduler requires a token (--token or RASK_TOKEN)")),
        }
    }

    /// Equality whose time does not depend on where the inputs differ.
    pub fn same(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
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

/// Splits a serialized value into pieces of at most `piece` bytes; the
/// pieces share the buffer (no copies).
pub fn pieces(key: &Key, data: &Bytes, piece: usize) -> Vec<pb::Piece> {
    let piece = piece.max(1);
    let total = data.len() as u64;
    if data.is_empty() {
        return vec![pb::Piece { key: Some(key.into()), total, offset: 0, data: Bytes::new() }];
    }
    (0..data.len())
        .step_by(piece)
        .map(|start| pb::Piece {
            key: Some(key.into()),
            total,
            offset: start as u64,
            data: data.slice(start..(start + piece).min(data.len())),
        })
        .collect()
}

/// Joins the pieces of one value. It allocates only as pieces arrive, never
/// from the announced total, and refuses values over `limit` bytes, pieces
/// out of order and pieces past the announced end.
#[derive(Debug)]
pub struct Assembler {
    limit: u64,
    key: Option<Key>,
    total: u64,
    buf: Vec<u8>,
}

impl Assembler {
    pub fn new(limit: u64) -> Self {
        Self { limit, key: None, total: 0, buf: Vec::new() }
    }

    /// Adds a piece; returns the key and the whole value once complete.
    pub fn push(&mut self, p: pb::Piece) -> Result<Option<(Key, Bytes)>, WireError> {
        let key: Key = p.key.ok_or(WireError::Missing("piece key"))?.into();
        if self.key.is_none() {
            if p.total > self.limit {
                return Err(WireError::TooLarge { key: key.to_string(), total: p.total, limit: self.limit });
            }
            self.key = Some(key.clone());
            self.total = p.total;
            // Bounded by this receiver's own limit, checked above; reserving
            // touches no pages until data arrives.
            self.buf = Vec::with_capacity(usize::try_from(p.total).unwrap_or(0));
        }
        let expected = self.buf.len() as u64;
        if self.key.as_ref() != Some(&key) || p.offset != expected || p.total != self.total {
            return Err(WireError::OutOfOrder { key: key.to_string(), got: p.offset, expected });
        }
        if expected + p.data.len() as u64 > self.total {
            return Err(WireError::TooLarge {
                key: key.to_string(),
                total: expected + p.data.len() as u64,
                limit: self.total,
            });
        }
        if p.data.len() as u64 == self.total && expected == 0 {
            // One piece: hand the buffer on without copying.
            self.key = None;
            return Ok(Some((key, p.data)));
        }
        self.buf.extend_from_slice(&p.data);
        if self.buf.len() as u64 == self.total {
            self.key = None;
            return Ok(Some((key, Bytes::from(std::mem::take(&mut self.buf)))));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
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
        let mut a = Assembler::new(100);
        let data = Bytes::from_static(b"0123456789");
        let ps = pieces(&k, &data, 4);
        assert!(matches!(a.push(ps[1].clone()), Err(WireError::OutOfOrder { .. })));
        let mut a = Assembler::new(100);
        let lie = pb::Piece { key: Some((&k).into()), total: 2, offset: 0, data: Bytes::from_static(b"abc") };
        assert!(matches!(a.push(lie), Err(WireError::TooLarge { .. })));
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
        fn pieces_reassemble(data in proptest::collection::vec(proptest::num::u8::ANY, 0..5000), piece in 1usize..700) {
            let k = Key::chunk(Arc::from("x"), &[3]);
            let data = Bytes::from(data);
            let mut a = Assembler::new(10_000);
            let mut out = None;
            for p in pieces(&k, &data, piece) {
                proptest::prop_assert!(out.is_none());
                out = a.push(p).expect("valid pieces");
            }
            let (key, bytes) = out.expect("complete");
            proptest::prop_assert_eq!(key, k);
            proptest::prop_assert_eq!(bytes, data);
        }
    }
}
