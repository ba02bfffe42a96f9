//! Graph optimisation before submission: drop what the outputs do not need
//! (cull) and fuse linear chains into single tasks, so that a chain of
//! per-chunk operations runs as one task and its intermediates never reach
//! the worker's memory store.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::graph::GraphInputs;
use crate::{Analysis, Body, Call, Graph, Key, Result, Task};

/// Keeps only the tasks the outputs depend on.
pub fn cull(graph: &Graph, outputs: &[Key]) -> Result<Graph> {
    let mut keep = FxHashSet::default();
    let mut stack: Vec<Key> = Vec::new();
    for out in outputs {
        if !graph.contains(out) {
            return Err(crate::Error::UnknownOutput(out.clone()));
        }
        stack.push(out.clone());
    }
    while let Some(k) = stack.pop() {
        if !keep.insert(k.clone()) {
            continue;
        }
        if let Some(t) = graph.get(&k) {
            stack.extend(t.dependencies().into_iter().filter(|d| graph.contains(d) && !keep.contains(d)));
        }
    }
    let mut culled = Graph::new();
    for t in graph.tasks().iter().filter(|t| keep.contains(&t.key)) {
        culled.insert(t.clone())?;
    }
    for (name, op) in graph.local_ops() {
        culled.add_local_op(name.clone(), op.clone());
    }
    Ok(culled)
}

/// Fuses linear chains: a task whose only dependent is `b`, where `b` has no
/// other dependency, runs inside `b`. Outputs are never fused away, because
/// the client asks for them by key. Takes the graph by value and moves tasks,
/// so a graph with nothing to fuse costs one pass. Returns the graph with its
/// tasks' inputs by position: the analysis's when nothing was fused.
pub fn fuse(graph: Graph, analysis: Analysis, outputs: &[Key]) -> Result<(Graph, GraphInputs)> {
    let n = graph.len();
    let inputs = &analysis.inputs;
    let deps = |i: usize| inputs.deps(i);
    let mut dependents = vec![0u32; n];
    let mut only_dependent = vec![usize::MAX; n];
    for i in 0..n {
        for &d in deps(i) {
            dependents[d as usize] += 1;
            only_dependent[d as usize] = i;
        }
    }
    let mut reads_held = vec![false; n];
    for &(t, _) in inputs.held() {
        reads_held[t as usize] = true;
    }
    let is_output: FxHashSet<&Key> = outputs.iter().collect();
    // `fuses_into(a) = Some(b)` when a runs inside b.
    // `a` runs inside its only dependent `b` when `b` reads nothing else
    // (a linear chain), or when `b` is blockwise: every input of `b` is the
    // block at `b`'s own position (`x + y` then `.sum()` becomes one task per
    // block, so inputs and intermediates never reach memory). A step that
    // reads blocks at other positions (a tree-reduction combine, a matrix
    // product) is never fused into, which keeps the parallelism.
    let blockwise: Vec<bool> = (0..n)
        .map(|b| {
            let idx = graph.tasks()[b].key.index();
            !idx.is_empty() && !reads_held[b] && deps(b).iter().all(|&d| graph.tasks()[d as usize].key.index() == idx)
        })
        .collect();
    let fuses_into = |a: usize| -> Option<usize> {
        if dependents[a] != 1 || is_output.contains(&graph.tasks()[a].key) {
            return None;
        }
        let b = only_dependent[a];
        (deps(b).len() == 1 || blockwise[b]).then_some(b)
    };
    let mut fused_away = vec![false; n];
    let mut chain_into: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
    for &i in &analysis.order {
        if let Some(b) = fuses_into(i) {
            fused_away[i] = true;
            // Topological order: everything `i` absorbed, then `i`, appended
            // after whatever `b` absorbed from its other inputs.
            let mut chain = chain_into.remove(&i).unwrap_or_default();
            chain.push(i);
            chain_into.entry(b).or_default().extend(chain);
        }
    }
    if chain_into.is_empty() {
        return Ok((graph, analysis.inputs));
    }
    let (tasks, local_ops) = graph.into_parts();
    let mut slots: Vec<Option<Arc<Task>>> = tasks.into_iter().map(Some).collect();
    let mut out = Graph::with_capacity(n - fused_away.iter().filter(|f| **f).count());
    for i in 0..n {
        if fused_away[i] {
            continue;
        }
        let Some(task) = slots[i].take() else { continue };
        let Some(chain) = chain_into.remove(&i) else {
            out.insert(task)?;
            continue;
        };
        let mut calls: Vec<(Key, Call)> = Vec::new();
        let members = chain.iter().filter_map(|&c| slots[c].take()).chain(std::iter::once(task));
        let mut last_key = None;
        for t in members {
            last_key = Some(t.key.clone());
            let t = Arc::unwrap_or_clone(t);
            match t.body {
                Body::Call(call) => calls.push((t.key, call)),
                Body::Fused(inner) => calls.extend(inner),
            }
        }
        let key = last_key.unwrap_or_else(|| Key::new("fused"));
        out.insert(Task { key, body: Body::Fused(calls) })?;
    }
    for (name, op) in local_ops {
        out.add_local_op(name, op);
    }
    // Fused tasks read what their chains read: look the inputs up again.
    let held: FxHashSet<&Key> = analysis.inputs.held().iter().map(|(_, k)| k).collect();
    let inputs = out.inputs(|k| held.contains(k))?;
    Ok((out, inputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{OpRegistry, builtin, execute, no_local_ops};
    use crate::{Arg, Params, Value};

    fn neg_of(key: &str, dep: &str) -> Task {
        Task::new(key.into(), builtin::NEG, Params::default(), vec![Arg::Key(dep.into())])
    }

    /// Runs every task of a graph in dependency order, in this thread.
    fn run_all(graph: &Graph) -> FxHashMap<Key, Value> {
        let mut results: FxHashMap<Key, Value> = FxHashMap::default();
        for i in graph.toposort().unwrap() {
            let t = &graph.tasks()[i];
            let v = execute(t, OpRegistry::global(), &no_local_ops, &|k| results.get(k).cloned()).unwrap();
            results.insert(t.key.clone(), v);
        }
        results
    }

    fn fuse_all(g: Graph, outputs: &[Key]) -> Graph {
        let analysis = g.validate(|_| false, |_| true).unwrap();
        let (fused, inputs) = fuse(g, analysis, outputs).unwrap();
        assert_eq!(inputs, fused.inputs(|_| false).unwrap(), "the inputs describe the fused graph");
        fused
    }

    fn chain_graph() -> Graph {
        // x -> a -> b -> c, and d = x + c, plus an unrelated task u.
        let mut g = Graph::new();
        g.insert(Task::new("x".into(), builtin::IDENTITY, Params::default(), vec![Arg::Value(Value::Int(3))])).unwrap();
        g.insert(neg_of("a", "x")).unwrap();
        g.insert(neg_of("b", "a")).unwrap();
        g.insert(neg_of("c", "b")).unwrap();
        g.insert(Task::new(
            "d".into(),
            builtin::ADD,
            Params::default(),
            vec![Arg::Key("x".into()), Arg::Key("c".into())],
        ))
        .unwrap();
        g.insert(Task::new("u".into(), builtin::IDENTITY, Params::default(), vec![Arg::Value(Value::Int(0))])).unwrap();
        g
    }

    #[test]
    fn cull_keeps_only_what_outputs_need() {
        let g = cull(&chain_graph(), &["c".into()]).unwrap();
        let mut keys: Vec<String> = g.tasks().iter().map(|t| t.key.to_string()).collect();
        keys.sort();
        assert_eq!(keys, ["a", "b", "c", "x"]);
        assert!(cull(&chain_graph(), &["zz".into()]).is_err());
    }

    #[test]
    fn fuse_collapses_linear_chains_and_keeps_outputs() {
        let g = fuse_all(chain_graph(), &["d".into()]);
        let keys: Vec<String> = g.tasks().iter().map(|t| t.key.to_string()).collect();
        // a and b fuse into c; x has two dependents and stays.
        assert_eq!(keys, ["x", "c", "d", "u"]);
        match &g.get(&"c".into()).unwrap().body {
            Body::Fused(chain) => assert_eq!(chain.len(), 3),
            other => panic!("expected a fused task, got {other:?}"),
        }
        // Asking for b keeps it.
        let g = fuse_all(chain_graph(), &["b".into(), "d".into()]);
        assert!(g.contains(&"b".into()));
    }

    #[test]
    fn blockwise_tasks_fuse_per_block_but_reductions_do_not() {
        // x[i] and y[i] feed add[i] feeds part[i]; part[0], part[1] feed total.
        let mut g = Graph::new();
        let idx = |name: &str, i: u32| Key::chunk(name.into(), &[i]);
        for i in 0..2 {
            for (name, v) in [("x", 2), ("y", 3)] {
                g.insert(Task::new(
                    idx(name, i),
                    builtin::IDENTITY,
                    Params::default(),
                    vec![Arg::Value(Value::Int(v + i64::from(i)))],
                ))
                .unwrap();
            }
            g.insert(Task::new(
                idx("add", i),
                builtin::ADD,
                Params::default(),
                vec![Arg::Key(idx("x", i)), Arg::Key(idx("y", i))],
            ))
            .unwrap();
            g.insert(Task::new(idx("part", i), builtin::NEG, Params::default(), vec![Arg::Key(idx("add", i))]))
                .unwrap();
        }
        g.insert(Task::new(
            "total".into(),
            builtin::ADD,
            Params::default(),
            vec![Arg::Key(idx("part", 0)), Arg::Key(idx("part", 1))],
        ))
        .unwrap();
        let f = fuse_all(g.clone(), &["total".into()]);
        let mut keys: Vec<String> = f.tasks().iter().map(|t| t.key.to_string()).collect();
        keys.sort();
        assert_eq!(keys, ["('part', 0)", "('part', 1)", "total"]);
        for graph in [&g, &f] {
            assert_eq!(run_all(graph)[&Key::from("total")], Value::Int(-(2 + 3) - (3 + 4)));
        }
    }

    #[test]
    fn fused_graph_computes_the_same() {
        let g = chain_graph();
        let f = fuse_all(g.clone(), &["d".into()]);
        for graph in [&g, &f] {
            assert_eq!(run_all(graph)[&Key::from("d")], Value::Int(0));
        }
    }
}
