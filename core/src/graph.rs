//! A task graph ready for submission, and its validation.
//!
//! Collections build graphs; `compute` culls and fuses them ([`crate::optimize`])
//! and the scheduler receives them. Validation runs before anything is
//! scheduled, so a cycle, a missing dependency or a duplicate key is reported
//! with the keys involved instead of hanging a computation.

use std::collections::hash_map::Entry as HashEntry;
use std::hash::BuildHasher;
use std::sync::Arc;

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use crate::{Error, Key, LocalOp, Result, Task};

/// What validation learned about a graph, by task index.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    /// Each task's inputs, by position in the graph or by key when the
    /// cluster holds them already.
    pub inputs: GraphInputs,
    /// Every task after its dependencies.
    pub order: Vec<usize>,
}

/// Each task's inputs as positions: inputs in the same graph by their index,
/// keys the cluster already holds (from earlier graphs) by key. Validation
/// finds them; the local scheduler takes a graph in with them, so it looks
/// up no key of an input in the same graph. Flat arrays, no list per task:
/// task `i`'s in-graph inputs are `deps[starts[i]..starts[i + 1]]`, each
/// listed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphInputs {
    starts: Vec<u32>,
    deps: Vec<u32>,
    /// Inputs outside the graph, as (reading task, key), in task order and
    /// each key once per task.
    held: Vec<(u32, Key)>,
}

impl Default for GraphInputs {
    /// The inputs of an empty graph.
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl GraphInputs {
    /// Room for `tasks` tasks with `deps` in-graph inputs in all.
    pub fn with_capacity(tasks: usize, deps: usize) -> Self {
        let mut starts = Vec::with_capacity(tasks + 1);
        starts.push(0);
        Self { starts, deps: Vec::with_capacity(deps), held: Vec::new() }
    }

    /// Adds an input of the task being described: another task of the graph.
    /// A repeated input is kept once.
    pub fn push_dep(&mut self, dep: usize) {
        let dep = to_u32(dep);
        let start = self.starts.last().copied().unwrap_or(0) as usize;
        if !self.deps[start..].contains(&dep) {
            self.deps.push(dep);
        }
    }

    /// Adds an input of the task being described that the cluster holds
    /// already. A repeated key is kept once.
    pub fn push_held(&mut self, key: Key) {
        let task = to_u32(self.len());
        let first = self.held.partition_point(|(t, _)| *t < task);
        if !self.held[first..].iter().any(|(_, k)| *k == key) {
            self.held.push((task, key));
        }
    }

    /// Ends the task being described; the next `push_*` describes the next.
    pub fn end_task(&mut self) {
        self.starts.push(to_u32(self.deps.len()));
    }

    /// Number of tasks described.
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The in-graph inputs of task `i`, by index; none for an index past
    /// the end.
    pub fn deps(&self, i: usize) -> &[u32] {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&a), Some(&b)) => self.deps.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Inputs the cluster holds already, as (reading task, key).
    pub fn held(&self) -> &[(u32, Key)] {
        &self.held
    }

    /// Total number of in-graph inputs.
    pub fn n_deps(&self) -> usize {
        self.deps.len()
    }

    /// Whether these inputs can describe a graph of `n` tasks: one entry per
    /// task and every index within the graph. Inputs from outside the process
    /// are checked with this before use.
    pub fn fits(&self, n: usize) -> bool {
        self.len() == n
            && self.starts.first() == Some(&0)
            && self.starts.windows(2).all(|w| w[0] <= w[1])
            && self.starts.last().is_some_and(|&end| end as usize == self.deps.len())
            && self.deps.iter().all(|&d| (d as usize) < n)
            && self.held.windows(2).all(|w| w[0].0 <= w[1].0)
            && self.held.iter().all(|&(t, _)| (t as usize) < n)
    }
}

/// Graph positions as [`GraphInputs`] stores them. A graph of four billion
/// tasks would not fit in memory.
fn to_u32(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 tasks and inputs in a graph")
}

#[derive(Clone, Default)]
pub struct Graph {
    tasks: Vec<Arc<Task>>,
    index: KeyIndex,
    /// Closures referenced by tasks, usable only in this process.
    local_ops: FxHashMap<Arc<str>, LocalOp>,
}

/// Task positions by key, holding no keys: a key's cached hash (folded to
/// 32 bits) maps to the last task inserted with that hash, and tasks whose
/// hashes collide are chained. A map holding keys took 48 bytes per task
/// and a key clone (an atomic increment) per insertion; this takes about 12,
/// and a 200,000-task graph no longer faults in ten megabytes each time it
/// is collected.
#[derive(Clone, Default)]
struct KeyIndex {
    by_hash: FxHashMap<u32, u32>,
    /// The previous task with the same folded hash, or `NONE`.
    next: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl KeyIndex {
    fn with_capacity(n: usize) -> Self {
        let mut by_hash = FxHashMap::default();
        by_hash.reserve(n);
        Self { by_hash, next: Vec::with_capacity(n) }
    }

    fn fold(key: &Key) -> u32 {
        let h = FxBuildHasher.hash_one(key);
        (h ^ (h >> 32)) as u32
    }

    fn find(&self, tasks: &[Arc<Task>], key: &Key) -> Option<usize> {
        let mut i = *self.by_hash.get(&Self::fold(key))?;
        while i != NONE {
            if tasks[i as usize].key == *key {
                return Some(i as usize);
            }
            i = self.next[i as usize];
        }
        None
    }

    /// Indexes `task` as the next one of `tasks`, unless a task with its
    /// key is there already: then that task's position is returned.
    fn insert(&mut self, tasks: &[Arc<Task>], task: &Task) -> std::result::Result<(), usize> {
        let pos = to_u32(tasks.len());
        match self.by_hash.entry(Self::fold(&task.key)) {
            HashEntry::Vacant(slot) => {
                slot.insert(pos);
                self.next.push(NONE);
            }
            HashEntry::Occupied(mut slot) => {
                let mut i = *slot.get();
                while i != NONE {
                    if tasks[i as usize].key == task.key {
                        return Err(i as usize);
                    }
                    i = self.next[i as usize];
                }
                self.next.push(*slot.get());
                slot.insert(pos);
            }
        }
        Ok(())
    }
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
        Self { tasks: Vec::with_capacity(n), index: KeyIndex::with_capacity(n), local_ops: FxHashMap::default() }
    }

    /// Adds a task; a second task with the same key is an error.
    pub fn insert(&mut self, task: impl Into<Arc<Task>>) -> Result<()> {
        let task = task.into();
        match self.index.insert(&self.tasks, &task) {
            Ok(()) => {
                self.tasks.push(task);
                Ok(())
            }
            Err(_) => Err(Error::DuplicateKey(task.key.clone())),
        }
    }

    /// Adds a task unless one with the same key exists: identical keys name
    /// identical work, so collections share it.
    pub fn insert_shared(&mut self, task: impl Into<Arc<Task>>) {
        let task = task.into();
        if self.index.insert(&self.tasks, &task).is_ok() {
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
        self.index.find(&self.tasks, key).map(|i| &self.tasks[i])
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.index.find(&self.tasks, key).is_some()
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
    /// returns (each task's inputs by position and a topological order) is
    /// what the optimisations and the local scheduler need, so it is
    /// computed once.
    pub fn validate(&self, is_external: impl Fn(&Key) -> bool, is_known_op: impl Fn(&str) -> bool) -> Result<Analysis> {
        let mut last_op: Option<&str> = None;
        let inputs = self.index_inputs(is_external, |task| {
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
            Ok(())
        })?;
        let order = self.toposort_with(&inputs)?;
        Ok(Analysis { inputs, order })
    }

    /// Each task's inputs by position; an input neither in the graph nor
    /// `is_external` is an error. Cycles are not looked for.
    pub fn inputs(&self, is_external: impl Fn(&Key) -> bool) -> Result<GraphInputs> {
        self.index_inputs(is_external, |_| Ok(()))
    }

    fn index_inputs<'a>(
        &'a self,
        is_external: impl Fn(&Key) -> bool,
        mut check: impl FnMut(&'a Task) -> Result<()>,
    ) -> Result<GraphInputs> {
        // Most tasks read one or two others.
        let mut inputs = GraphInputs::with_capacity(self.tasks.len(), self.tasks.len() * 2);
        for task in &self.tasks {
            // One lookup per argument, no list of keys per task: this loop
            // runs over every task of every submitted graph.
            let mut missing = None;
            task.for_each_input(|dep| {
                if missing.is_some() {
                    return;
                }
                match self.index.find(&self.tasks, dep) {
                    Some(j) => inputs.push_dep(j),
                    None if is_external(dep) => inputs.push_held(dep.clone()),
                    None => missing = Some(dep),
                }
            });
            if let Some(dep) = missing {
                return Err(Error::MissingDependency { task: task.key.clone(), missing: dep.clone() });
            }
            inputs.end_task();
            check(task)?;
        }
        Ok(inputs)
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
        let inputs = self.inputs(|_| true)?;
        self.toposort_with(&inputs)
    }

    fn toposort_with(&self, deps: &GraphInputs) -> Result<Vec<usize>> {
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
                if let Some(&dep) = deps.deps(node).get(*next) {
                    let dep = dep as usize;
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
    fn inputs_are_positions_and_held_keys_each_once() {
        let g = graph(&[("z", &["x", "held", "y", "x", "held"]), ("y", &["x"]), ("x", &[])]);
        let a = g.validate(|k| k.name() == "held", |_| true).unwrap();
        let inputs = &a.inputs;
        assert_eq!(inputs.len(), 3);
        assert_eq!((inputs.deps(0), inputs.deps(1), inputs.deps(2)), (&[2, 1][..], &[2][..], &[][..]));
        assert_eq!(inputs.held(), &[(0, Key::from("held"))]);
        assert_eq!(inputs.n_deps(), 3);
        assert!(inputs.fits(3) && !inputs.fits(2) && !inputs.fits(4));
        assert_eq!(inputs.deps(7), &[] as &[u32], "past the end");
        assert_eq!(&g.inputs(|k| k.name() == "held").unwrap(), inputs);
    }

    #[test]
    fn malformed_inputs_do_not_fit() {
        let mut out_of_range = GraphInputs::with_capacity(1, 1);
        out_of_range.push_dep(1);
        out_of_range.end_task();
        assert!(!out_of_range.fits(1));
        assert!(GraphInputs::default().fits(0) && !GraphInputs::default().fits(1));
        let mut held_ok = GraphInputs::with_capacity(2, 0);
        held_ok.end_task();
        held_ok.push_held("k".into());
        held_ok.push_held("k".into());
        held_ok.end_task();
        assert_eq!(held_ok.held(), &[(1, Key::from("k"))]);
        assert!(held_ok.fits(2));
    }

    /// The key index chains keys whose folded hashes collide; with 300,000
    /// keys some do, and every key is still found once.
    #[test]
    fn key_index_finds_every_key_among_colliding_hashes() {
        let n = 300_000;
        let mut g = Graph::with_capacity(n);
        for i in 0..n {
            g.insert(task(&format!("k-{i}"), &[])).unwrap();
        }
        assert!(g.index.next.iter().any(|&i| i != NONE), "no folded hashes collided: the chains are untested");
        for i in 0..n {
            let key = Key::from(format!("k-{i}"));
            assert_eq!(g.get(&key).map(|t| &t.key), Some(&key));
        }
        for i in (0..n).step_by(997) {
            assert_eq!(
                g.insert(task(&format!("k-{i}"), &[])).unwrap_err(),
                Error::DuplicateKey(format!("k-{i}").into())
            );
            g.insert_shared(task(&format!("k-{i}"), &[]));
        }
        assert_eq!(g.len(), n);
        assert!(!g.contains(&"k-300000".into()));
    }

    #[test]
    fn toposort_puts_dependencies_first() {
        let g = graph(&[("z", &["x", "y"]), ("y", &["x"]), ("x", &[])]);
        let order: Vec<String> = g.toposort().unwrap().iter().map(|&i| g.tasks()[i].key.to_string()).collect();
        assert_eq!(order, ["x", "y", "z"]);
        assert_eq!(g.sinks(), vec![Key::from("z")]);
    }
}
