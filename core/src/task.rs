//! Tasks are data: a key, an op name, serialized parameters and argument
//! templates that refer to input keys. Nothing in a task is a closure, so a
//! task can cross a process boundary and be re-run from lineage.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Error, Key, Result, Value};

/// Op parameters, encoded with postcard. Kernels decode them into their own
/// parameter struct; the bytes are what travels on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params(pub Bytes);

impl Params {
    pub fn encode<T: Serialize>(params: &T) -> Self {
        // Serializing plain data structs into a Vec cannot fail; an error here
        // would be a bug in a Serialize impl, which we surface as empty params
        // and let the kernel's decode report.
        Params(postcard::to_stdvec(params).map(Bytes::from).unwrap_or_default())
    }

    pub fn decode<T: DeserializeOwned>(&self, task: &Key) -> Result<T> {
        postcard::from_bytes(&self.0).map_err(|e| Error::BadParams { task: task.clone(), reason: e.to_string() })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One argument of a call: the value of an input key, a literal, or a list
/// of arguments (Dask traverses lists of delayed values the same way).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Arg {
    Key(Key),
    Value(Value),
    List(Vec<Arg>),
}

impl Arg {
    /// Calls `f` on every key this argument refers to.
    pub fn for_each_key<'a>(&'a self, f: &mut impl FnMut(&'a Key)) {
        match self {
            Arg::Key(k) => f(k),
            Arg::Value(_) => {}
            Arg::List(items) => items.iter().for_each(|a| a.for_each_key(f)),
        }
    }
}

/// An op applied to arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub op: Arc<str>,
    pub params: Params,
    pub args: Vec<Arg>,
}

/// What a task runs: one call, or a fused chain of calls that runs as one
/// task. Inside a chain, each call's result is bound to its inner key and
/// later calls may refer to it; the last call's result is the task's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Body {
    Call(Call),
    Fused(Vec<(Key, Call)>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub key: Key,
    pub body: Body,
}

impl Task {
    pub fn new(key: Key, op: impl Into<Arc<str>>, params: Params, args: Vec<Arg>) -> Self {
        Task { key, body: Body::Call(Call { op: op.into(), params, args }) }
    }

    /// Calls `f` on every key this task reads, in first-use order, without
    /// allocating; a key used twice is passed twice. Keys bound inside a
    /// fused chain are internal and skipped. Graph intake walks every task
    /// this way, so it must not build a list per task.
    pub fn for_each_input<'a>(&'a self, mut f: impl FnMut(&'a Key)) {
        match &self.body {
            Body::Call(call) => call.args.iter().for_each(|a| a.for_each_key(&mut f)),
            Body::Fused(chain) => {
                for (i, (_, call)) in chain.iter().enumerate() {
                    for a in &call.args {
                        a.for_each_key(&mut |k| {
                            if !chain[..i].iter().any(|(inner, _)| inner == k) {
                                f(k);
                            }
                        });
                    }
                }
            }
        }
    }

    /// The keys this task reads, each once, in first-use order. Keys bound
    /// inside a fused chain are internal and not listed.
    pub fn dependencies(&self) -> Vec<Key> {
        let mut out: Vec<Key> = Vec::new();
        let push = |k: &Key, out: &mut Vec<Key>| {
            if !out.contains(k) {
                out.push(k.clone());
            }
        };
        match &self.body {
            Body::Call(call) => {
                for a in &call.args {
                    a.for_each_key(&mut |k| push(k, &mut out));
                }
            }
            Body::Fused(chain) => {
                for (i, (_, call)) in chain.iter().enumerate() {
                    for a in &call.args {
                        a.for_each_key(&mut |k| {
                            if !chain[..i].iter().any(|(inner, _)| inner == k) {
                                push(k, &mut out);
                            }
                        });
                    }
                }
            }
        }
        out
    }

    /// The op names this task uses.
    pub fn ops(&self) -> Vec<&str> {
        match &self.body {
            Body::Call(c) => vec![&c.op],
            Body::Fused(chain) => chain.iter().map(|(_, c)| &*c.op).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_unique_and_skip_fused_internals() {
        let a = Key::new("a");
        let b = Key::new("b");
        let t = Task::new(
            "t".into(),
            "add",
            Params::default(),
            vec![Arg::Key(a.clone()), Arg::List(vec![Arg::Key(b.clone()), Arg::Key(a.clone())])],
        );
        assert_eq!(t.dependencies(), vec![a.clone(), b.clone()]);

        let inner = Key::new("inner");
        let fused = Task {
            key: "out".into(),
            body: Body::Fused(vec![
                (inner.clone(), Call { op: "neg".into(), params: Params::default(), args: vec![Arg::Key(a.clone())] }),
                (
                    "out".into(),
                    Call {
                        op: "add".into(),
                        params: Params::default(),
                        args: vec![Arg::Key(inner), Arg::Key(b.clone())],
                    },
                ),
            ]),
        };
        assert_eq!(fused.dependencies(), vec![a, b]);
    }

    #[test]
    fn params_round_trip_and_bad_params_name_the_task() {
        let p = Params::encode(&(3u32, "x".to_string()));
        assert_eq!(p.decode::<(u32, String)>(&"t".into()).unwrap(), (3, "x".to_string()));
        let err = Params(Bytes::from_static(&[0xff])).decode::<(u32, String)>(&"t".into()).unwrap_err();
        assert!(err.to_string().contains("task t"), "{err}");
    }
}
