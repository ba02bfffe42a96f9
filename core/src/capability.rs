//! What a worker can run beyond the ops every rask binary has.
//!
//! Most ops are built in, so any worker can run them. A few need something a
//! worker may not host: a Python function (`delayed(f)` from the Python
//! package) needs a Python interpreter, which a plain `rask worker` does
//! not have. Such ops live in a namespace (`python.`); a task's requirement
//! follows from its op names, and a worker's capabilities from the ops
//! registered in its binary. The scheduler routes on both, as Dask routes on
//! worker resources.

use serde::{Deserialize, Serialize};

use crate::{Body, OpRegistry, Task};

/// The op that calls a cloudpickled Python function (registered by the
/// Python package's native module).
pub const PYTHON_CALL: &str = "python.call";

/// Ops in this namespace need a worker that hosts Python.
const PYTHON_NAMESPACE: &str = "python.";

/// A small set of capabilities, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capabilities(u8);

impl Capabilities {
    pub const NONE: Capabilities = Capabilities(0);
    /// Hosts a Python interpreter: runs `python.*` ops.
    pub const PYTHON: Capabilities = Capabilities(1);

    const NAMED: [(Capabilities, &'static str); 1] = [(Capabilities::PYTHON, "python")];

    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names that go on the wire (`"python"`).
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMED.iter().filter(|(c, _)| self.contains(*c)).map(|(_, n)| *n).collect()
    }

    /// From wire names; names this build does not know are ignored (a newer
    /// worker may announce more than this scheduler routes on).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Capabilities {
        names
            .into_iter()
            .filter_map(|n| Self::NAMED.iter().find(|(_, name)| *name == n).map(|(c, _)| *c))
            .fold(Capabilities::NONE, Capabilities::union)
    }

    /// What a binary with these registered ops can run.
    pub fn of_registry(registry: &OpRegistry) -> Capabilities {
        if registry.contains(PYTHON_CALL) { Capabilities::PYTHON } else { Capabilities::NONE }
    }

    /// What a worker needs to run `task` (every call of a fused chain counts).
    pub fn required_by(task: &Task) -> Capabilities {
        let needs = |op: &str| if op.starts_with(PYTHON_NAMESPACE) { Capabilities::PYTHON } else { Capabilities::NONE };
        match &task.body {
            Body::Call(call) => needs(&call.op),
            Body::Fused(chain) => chain.iter().fold(Capabilities::NONE, |acc, (_, c)| acc.union(needs(&c.op))),
        }
    }

    /// How to get a worker with the capabilities a task misses, for errors.
    pub fn how_to_get(self) -> &'static str {
        if self.contains(Capabilities::PYTHON) {
            "Python functions run only on workers that host Python: start one with \
             `python -m rask worker <scheduler address>` (it also runs every built-in op)"
        } else {
            "no worker has the capabilities this task needs"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Call, Params};

    #[test]
    fn requirements_follow_op_names() {
        let py = Task::new("f-1".into(), PYTHON_CALL, Params::default(), vec![]);
        let plain = Task::new("a-1".into(), crate::ops::builtin::ADD, Params::default(), vec![]);
        assert_eq!(Capabilities::required_by(&py), Capabilities::PYTHON);
        assert_eq!(Capabilities::required_by(&plain), Capabilities::NONE);
        let fused = Task {
            key: "out".into(),
            body: Body::Fused(vec![
                ("a".into(), Call { op: crate::ops::builtin::NEG.into(), params: Params::default(), args: vec![] }),
                ("out".into(), Call { op: PYTHON_CALL.into(), params: Params::default(), args: vec![] }),
            ]),
        };
        assert_eq!(Capabilities::required_by(&fused), Capabilities::PYTHON);
        assert!(Capabilities::PYTHON.contains(Capabilities::NONE));
        assert!(!Capabilities::NONE.contains(Capabilities::PYTHON));
        assert_eq!(Capabilities::from_names(["python", "gpu"]), Capabilities::PYTHON);
        assert_eq!(Capabilities::PYTHON.names(), vec!["python"]);
        // Core itself registers no Python op.
        assert_eq!(Capabilities::of_registry(OpRegistry::global()), Capabilities::NONE);
    }
}
