//! A task graph ready for submission, and its validation.
//!
//! Collections build graphs; `compute` culls and fuses them ([`crate::optimize`])
//! and the scheduler receives them. Validation runs before anything is
//! scheduled, so a cycle, a missing dependency or a duplicate key is reported
//! with the keys involved instead of hanging a computation.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{Error, Key, LocalOp, Result, Task};

/// What validation learned about a graph, by task index.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    /// In-graph dependencies of each task.
    pub deps: Vec<Vec<usize>>,
    /// Number of dependencies each task has outside the graph.
    pub external: Vec<u32>,
    /// Every task after its dependencies.
    pub order: Vec<usize>,
}

#[derive(Clone, Default)]
pub struct Graph {
    tasks: Vec<Arc<Task>>,
    index: FxHashMap<Key, usize>,
    /// Closures referenced by tasks, usable only in this process.
    local_ops: FxHashMap<Arc<str>, LocalOp>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("tasks", &self.tasks.len())
            .field("local_ops", &self.local_ops.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// A graph with room for `n` tasks. Collecting a 200,000-task graph
    /// otherwise rehashes its key index a dozen times, each time into fresh
    /// memory the kernel must zero.
    pub fn with_capacity(n: usize) -> Self {
        let mut index = FxHashMap::default();
        index.reserve(n);
        Self { tasks: Vec::with_capacity(n), index, local_ops: FxHashMap::default() }
    }

    /// Adds a task; a second task with the same key is an error.
    pub fn insert(&mut self, task: impl Into<Arc<Task>>) -> Result<()> {
        let task = task.into();
        match self.index.entry(task.key.clone()) {
            Entry::Occupied(_) => Err(Error::DuplicateKey(task.key.clone())),
            Entry::Vacant(slot) => {
                slot.insert(self.tasks.len());
                self.tasks.push(task);
                Ok(())
            }
        }
    }

    /// Adds a task unless one with the same key exists: identical keys name
    /// identical work, so collections share it.
    pub fn insert_shared(&mut self, task: impl Into<Arc<Task>>) {
        let task = task.into();
        if let Entry::Vacant(slot) = self.index.entry(task.key.clone()) {
            slot.insert(self.tasks.len());
            self.tasks.push(task);
        }
    }

    pub fn add_local_op(&mut self, name: Arc<str>, op: LocalOp) {
        self.local_ops.insert(name, op);
    }

    pub fn local_ops(&self) -> &FxHashMap<Arc<str>, LocalOp> {
        &self.local_ops
    }

    pub fn get(&self, key: &Key) -> Option<&Arc<Task>> {
        self.index.get(key).map(|&i| &self.tasks[i])
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.index.contains_key(key)
    }

    pub fn tasks(&self) -> &[Arc<Task>] {
        &self.tasks
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn into_parts(self) -> (Vec<Arc<Task>>, FxHashMap<Arc<str>, LocalOp>) {
        (self.tasks, self.local_ops)
    }

    /// Checks that every dependency is in the graph or `is_external` (already
    /// held by the cluster), that there is no cycle, and that every op is known
    /// to `is_known_op` or is a local closure of this graph. The analysis it
    /// returns (in-graph dependencies and a topological order) is what the
    /// optimisations need, so it is computed once.
    pub fn validate(&self, is_external: impl Fn(&Key) -> bool, is_known_op: impl Fn(&str) -> bool) -> Result<Analysis> {
        let mut deps = Vec::with_capacity(self.tasks.len());
        let mut external = vec![0u32; self.tasks.len()];
        let mut last_op: Option<&str> = None;
        let mut external_keys: Vec<&Key> = Vec::new();
        for (i, task) in self.tasks.iter().enumerate() {
            // One lookup per argument, no list of keys per task: this loop
            // runs over every task of every submitted graph.
            let mut local = Vec::new();
            let mut missing = None;
            external_keys.clear();
            task.for_each_input(|dep| {
                if missing.is_some() {
                    return;
                }
                match self.index.get(dep) {
                    Some(&j) => {
                        if !local.contains(&j) {
                            local.push(j);
                        }
                    }
                    None if is_external(dep) => {
                        if !external_keys.contains(&dep) {
                            external_keys.push(dep);
                        }
                    }
                    None => missing = Some(dep),
                }
            });
            if let Some(dep) = missing {
                return Err(Error::MissingDependency { task: task.key.clone(), missing: dep.clone() });
            }
            external[i] = external_keys.len() as u32;
            deps.push(local);
            for op in task.ops() {
                // Graphs repeat the same op many times in a row; look it up once.
                if last_op == Some(op) {
                    continue;
                }
                if !is_known_op(op) && !self.local_ops.contains_key(op) {
                    return Err(Error::UnknownOp { task: task.key.clone(), op: op.to_string() });
                }
                last_op = Some(op);
            }
        }
        let order = self.toposort_with(&deps)?;
        Ok(Analysis { deps, external, order })
    }

    /// Fails if any task uses a closure: such a graph cannot leave the process.
    pub fn ensure_sendable(&self) -> Result<()> {
        for task in &self.tasks {
            if let Some(op) = task.ops().into_iter().find(|op| self.local_ops.contains_key(*op)) {
                return Err(Error::ClosureNotSendable { task: task.key.clone(), op: op.to_string() });
            }
        }
        Ok(())
    }

    /// Task indices in an order where every task comes after its in-graph
    /// dependencies. A cycle is reported with the keys along it.
    pub fn toposort(&self) -> Result<Vec<usize>> {
        let deps: Vec<Vec<usize>> = self
            .tasks
            .iter()
            .map(|t| t.dependencies().iter().filter_map(|d| self.index.get(d).copied()).collect())
            .collect();
        self.toposort_with(&deps)
    }

    fn toposort_with(&self, deps: &[Vec<usize>]) -> Result<Vec<usize>> {
        const NEW: u8 = 0;
        const OPEN: u8 = 1;
        const DONE: u8 = 2;
        let mut mark = vec![NEW; self.tasks.len()];
        let mut order = Vec::with_capacity(self.tasks.len());
        for start in 0..self.tasks.len() {
            if mark[start] != NEW {
                continue;
            }
            // Iterative DFS: (task, next dependency to visit).
            let mut stack = vec![(start, 0usize)];
            mark[start] = OPEN;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&dep) = deps[node].get(*next) {
                    *next += 1;
                    match mark[dep] {
                        NEW => {
                            mark[dep] = OPEN;
                            stack.push((dep, 0));
                        }
                        OPEN => {
                            let pos = stack.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                            let mut cycle: Vec<Key> =
                                stack[pos..].iter().map(|&(n, _)| self.tasks[n].key.clone()).collect();
                            cycle.push(self.tasks[dep].key.clone());
                            return Err(Error::Cycle(cycle));
                        }
                        _ => {}
                    }
                } else {
                    mark[node] = DONE;
                    order.push(node);
                    stack.pop();
                }
            }
        }
        Ok(order)
    }

    /// Keys that no task in the graph depends on.
    pub fn sinks(&self) -> Vec<Key> {
        let mut used = FxHashSet::default();
        for t in &self.tasks {
            used.extend(t.dependencies());
        }
        self.tasks.iter().filter(|t| !used.contains(&t.key)).map(|t| t.key.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Arg, Params};

    fn task(key: &str, deps: &[&str]) -> Task {
        Task::new(key.into(), "add", Params::default(), deps.iter().map(|d| Arg::Key((*d).into())).collect())
    }

    fn graph(tasks: &[(&str, &[&str])]) -> Graph {
        let mut g = Graph::new();
        for (k, d) in tasks {
            g.insert(task(k, d)).unwrap();
        }
        g
    }

    #[test]
    fn cycle_names_its_keys() {
        let g = graph(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]);
        let err = g.validate(|_| false, |_| true).unwrap_err();
        assert!(matches!(err, Error::Cycle(_)));
        let msg = err.to_string();
        for k in ["a", "b", "c"] {
            assert!(msg.contains(k), "{msg}");
        }
        assert!(!msg.contains('d'), "{msg}");
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let g = graph(&[("a", &["a"])]);
        assert_eq!(g.validate(|_| false, |_| true).unwrap_err(), Error::Cycle(vec!["a".into(), "a".into()]));
    }

    #[test]
    fn missing_dependency_names_both_keys() {
        let g = graph(&[("a", &["ghost"])]);
        let err = g.validate(|_| false, |_| true).unwrap_err();
        assert_eq!(err, Error::MissingDependency { task: "a".into(), missing: "ghost".into() });
        assert!(err.to_string().contains("ghost"));
        // A key the cluster already holds is fine.
        g.validate(|k| k.name() == "ghost", |_| true).unwrap();
    }

    #[test]
    fn duplicate_and_unknown_op() {
        let mut g = graph(&[("a", &[])]);
        assert_eq!(g.insert(task("a", &[])).unwrap_err(), Error::DuplicateKey("a".into()));
        let err = g.validate(|_| false, |op| op != "add").unwrap_err();
        assert!(err.to_string().contains("\"add\""), "{err}");
    }

    #[test]
    fn toposort_puts_dependencies_first() {
        let g = graph(&[("z", &["x", "y"]), ("y", &["x"]), ("x", &[])]);
        let order: Vec<String> = g.toposort().unwrap().iter().map(|&i| g.tasks()[i].key.to_string()).collect();
        assert_eq!(order, ["x", "y", "z"]);
        assert_eq!(g.sinks(), vec![Key::from("z")]);
    }
}
