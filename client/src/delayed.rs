//! Lazy values: `Delayed<T>` is a key plus the graph fragment that computes
//! it. Building one runs nothing.
//!
//! Each `Delayed` points at a node; nodes point at the nodes of their inputs.
//! Building a graph of n calls is n small allocations, and collecting it for
//! `compute` walks it once — no dictionaries are merged per call, so a
//! 100,000-task graph builds in milliseconds.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Add, Div, Mul, Neg, Sub};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rask_core::ops::builtin;
use rask_core::{Arg, FromValue, IntoValue, Key, LocalOp, OpError, OpOutput, Params, Task, Value};

use crate::{Client, Result};

pub(crate) enum NodeKind {
    Task {
        task: Arc<Task>,
        deps: Vec<Arc<Node>>,
        local: Option<LocalOp>,
    },
    /// A key already computed on a cluster, kept alive by `keep` (a future).
    Persisted {
        keep: Arc<dyn Any + Send + Sync>,
    },
}

pub(crate) struct Node {
    pub(crate) key: Key,
    pub(crate) kind: NodeKind,
}

impl Drop for Node {
    // Long chains (`acc = acc + x` in a loop) would otherwise drop
    // recursively and overflow the stack.
    fn drop(&mut self) {
        let NodeKind::Task { deps, .. } = &mut self.kind else { return };
        let mut stack = std::mem::take(deps);
        while let Some(node) = stack.pop() {
            if let Some(mut inner) = Arc::into_inner(node)
                && let NodeKind::Task { deps, .. } = &mut inner.kind
            {
                stack.append(deps);
            }
        }
    }
}

/// A lazy value of type `T`.
pub struct Delayed<T> {
    pub(crate) node: Arc<Node>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Delayed<T> {
    fn clone(&self) -> Self {
        Self { node: self.node.clone(), _t: PhantomData }
    }
}

impl<T> fmt::Debug for Delayed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Delayed('{}')", self.node.key)
    }
}

impl<T> fmt::Display for Delayed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A unique key for an impure call, like Dask's `name-<uuid>`.
pub(crate) fn fresh_key(prefix: &str) -> Key {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        t ^ u64::from(std::process::id()).rotate_left(32)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..].copy_from_slice(&n.to_le_bytes());
    Key::new(format!("{prefix}-{}", rask_core::key::token(&bytes)))
}

impl<T> Delayed<T> {
    pub(crate) fn from_node(node: Arc<Node>) -> Self {
        Self { node, _t: PhantomData }
    }

    /// A lazy call of the registered op `op`. Used by `op!`.
    pub fn from_call(op: &str, prefix: &str, args: Vec<ArgPart>) -> Self {
        Self::build(op.into(), prefix, args, None)
    }

    fn build(op: Arc<str>, prefix: &str, args: Vec<ArgPart>, local: Option<LocalOp>) -> Self {
        Self::node(fresh_key(prefix), op, Params::default(), args, local)
    }

    /// A lazy call with a chosen key and parameters: the building block of
    /// collections, whose chunk keys are `(name, i, j, ...)`.
    pub fn from_task(key: Key, op: &str, params: Params, args: Vec<ArgPart>) -> Self {
        Self::node(key, op.into(), params, args, None)
    }

    fn node(key: Key, op: Arc<str>, params: Params, args: Vec<ArgPart>, local: Option<LocalOp>) -> Self {
        let part = ArgPart::list(args);
        let Arg::List(args) = part.arg else { unreachable!("ArgPart::list builds a list") };
        let task = Arc::new(Task::new(key.clone(), op, params, args));
        Self::from_node(Arc::new(Node { key, kind: NodeKind::Task { task, deps: part.deps, local } }))
    }

    /// Reinterprets the value type; for collections that know better.
    pub fn cast<U>(self) -> Delayed<U> {
        Delayed::from_node(self.node)
    }

    /// A lazy value holding a literal.
    pub fn value(v: T) -> Self
    where
        T: IntoValue,
    {
        Self::build(builtin::IDENTITY.into(), "literal", vec![ArgPart::literal(v.into_value())], None)
    }

    pub fn key(&self) -> &Key {
        &self.node.key
    }

    /// Computes the value on the current client (or the default local cluster).
    pub fn compute(&self) -> Result<T>
    where
        T: FromValue,
    {
        Client::current()?.compute(self).result()
    }

    /// The task graph behind this value, as Graphviz DOT.
    pub fn visualize(&self) -> crate::Dot {
        crate::Dot::of(&[&self.node])
    }
}

/// One argument of a lazy call, with the lazy values it depends on.
pub struct ArgPart {
    pub(crate) arg: Arg,
    pub(crate) deps: Vec<Arc<Node>>,
}

impl fmt::Debug for ArgPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.arg)
    }
}

impl ArgPart {
    pub fn literal(v: Value) -> Self {
        Self { arg: Arg::Value(v), deps: Vec::new() }
    }

    fn of_node(node: &Arc<Node>) -> Self {
        Self { arg: Arg::Key(node.key.clone()), deps: vec![node.clone()] }
    }

    /// The value of a lazy input.
    pub fn of<T>(d: &Delayed<T>) -> Self {
        Self::of_node(&d.node)
    }

    /// A list argument made of several parts.
    pub fn list(parts: Vec<ArgPart>) -> Self {
        let mut deps = Vec::new();
        let args = parts
            .into_iter()
            .map(|p| {
                deps.extend(p.deps);
                p.arg
            })
            .collect();
        Self { arg: Arg::List(args), deps }
    }
}

/// Things that can be an argument of type `T` to a lazy call: a plain value,
/// a `Delayed<T>`, or a list of `Delayed` for a `Vec<T>` parameter.
pub trait IntoArg<T> {
    fn into_arg(self) -> ArgPart;
}

impl<T: IntoValue> IntoArg<T> for T {
    fn into_arg(self) -> ArgPart {
        ArgPart::literal(self.into_value())
    }
}

impl<T> IntoArg<T> for Delayed<T> {
    fn into_arg(self) -> ArgPart {
        ArgPart::of_node(&self.node)
    }
}

impl<T> IntoArg<T> for &Delayed<T> {
    fn into_arg(self) -> ArgPart {
        ArgPart::of_node(&self.node)
    }
}

impl<T> IntoArg<Vec<T>> for Vec<Delayed<T>> {
    fn into_arg(self) -> ArgPart {
        self.as_slice().into_arg()
    }
}

impl<T> IntoArg<Vec<T>> for &Vec<Delayed<T>> {
    fn into_arg(self) -> ArgPart {
        self.as_slice().into_arg()
    }
}

impl<T> IntoArg<Vec<T>> for &[Delayed<T>] {
    fn into_arg(self) -> ArgPart {
        ArgPart {
            arg: Arg::List(self.iter().map(|d| Arg::Key(d.node.key.clone())).collect()),
            deps: self.iter().map(|d| d.node.clone()).collect(),
        }
    }
}

// ------------------------------------------------------------------ closures

/// Closures usable as local ops: `Fn(A, B, ...) -> R` with convertible types.
pub trait LocalFn<Args>: Send + Sync + 'static {
    type Output;
    fn invoke(&self, args: Vec<Value>) -> Result<Value, OpError>;
}

/// Tuples of arguments for [`LocalFunction::call`].
pub trait ArgTuple<Args> {
    fn into_parts(self) -> Vec<ArgPart>;
}

macro_rules! local_fn_arity {
    ($n:literal; $($a:ident $x:ident),*) => {
        impl<Func, R, $($a),*> LocalFn<($($a,)*)> for Func
        where
            Func: Fn($($a),*) -> R + Send + Sync + 'static,
            R: OpOutput,
            $($a: FromValue,)*
        {
            type Output = R::Output;
            #[allow(non_snake_case, unused_mut, unused_variables)] // argument names follow their type parameters; arity 0 reads none
            fn invoke(&self, args: Vec<Value>) -> Result<Value, OpError> {
                if args.len() != $n {
                    return Err(OpError::new(format!("the closure takes {} arguments, got {}", $n, args.len())));
                }
                let mut it = args.into_iter();
                $(let $a = $a::from_value(it.next().unwrap_or_default())?;)*
                self($($a),*).into_op_result()
            }
        }

        impl<$($a,)* $($x: IntoArg<$a>),*> ArgTuple<($($a,)*)> for ($($x,)*) {
            #[allow(non_snake_case)]
            fn into_parts(self) -> Vec<ArgPart> {
                let ($($x,)*) = self;
                vec![$($x.into_arg()),*]
            }
        }
    };
}
local_fn_arity!(0;);
local_fn_arity!(1; A XA);
local_fn_arity!(2; A XA, B XB);
local_fn_arity!(3; A XA, B XB, C XC);
local_fn_arity!(4; A XA, B XB, C XC, D XD);

/// A closure wrapped for lazy calls on the local cluster.
pub struct LocalFunction<Args, R> {
    name: Arc<str>,
    prefix: String,
    op: LocalOp,
    _t: PhantomData<fn(Args) -> R>,
}

impl<Args, R> fmt::Debug for LocalFunction<Args, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalFunction({})", self.name)
    }
}

/// Wraps a closure so that it can be called lazily, like `delayed(f)` on a
/// Python function. The closure cannot leave this process: computing it on a
/// remote cluster is an error that names it.
pub fn local<Args, F: LocalFn<Args>>(name: &str, f: F) -> LocalFunction<Args, F::Output> {
    let key = fresh_key(name);
    let op: LocalOp = Arc::new(move |_params: &Params, args: Vec<Value>| f.invoke(args));
    LocalFunction { name: format!("local:{}", key.name()).into(), prefix: name.to_string(), op, _t: PhantomData }
}

impl<Args, R> LocalFunction<Args, R> {
    pub fn call(&self, args: impl ArgTuple<Args>) -> Delayed<R> {
        Delayed::build(self.name.clone(), &self.prefix, args.into_parts(), Some(self.op.clone()))
    }
}

impl<T> Delayed<T> {
    pub(crate) fn persisted(key: Key, keep: Arc<dyn Any + Send + Sync>) -> Self {
        Self::from_node(Arc::new(Node { key, kind: NodeKind::Persisted { keep } }))
    }
}

impl<T: 'static> Delayed<T> {
    /// A lazy value for a future's key: graphs that use it start from the
    /// result on the cluster, which the future keeps alive (Dask passes
    /// futures as arguments the same way).
    pub fn from_future(future: Arc<crate::Future<T>>) -> Self {
        Self::persisted(future.key().clone(), future)
    }
}

/// The task graph behind several lazy values, as Graphviz DOT.
pub fn visualize_all<T>(values: &[&Delayed<T>]) -> crate::Dot {
    let nodes: Vec<&Arc<Node>> = values.iter().map(|d| &d.node).collect();
    crate::Dot::of(&nodes)
}

// ----------------------------------------------------------------- operators

macro_rules! binary_op {
    ($trait:ident, $method:ident, $op:expr, $prefix:literal) => {
        impl<T: $trait<Output = T>> $trait<Delayed<T>> for Delayed<T> {
            type Output = Delayed<T>;
            fn $method(self, rhs: Delayed<T>) -> Delayed<T> {
                Delayed::build(
                    $op.into(),
                    $prefix,
                    vec![ArgPart::of_node(&self.node), ArgPart::of_node(&rhs.node)],
                    None,
                )
            }
        }
        impl<T: $trait<Output = T>> $trait<&Delayed<T>> for &Delayed<T> {
            type Output = Delayed<T>;
            fn $method(self, rhs: &Delayed<T>) -> Delayed<T> {
                Delayed::build(
                    $op.into(),
                    $prefix,
                    vec![ArgPart::of_node(&self.node), ArgPart::of_node(&rhs.node)],
                    None,
                )
            }
        }
        impl<T: $trait<Output = T> + IntoValue> $trait<T> for Delayed<T> {
            type Output = Delayed<T>;
            fn $method(self, rhs: T) -> Delayed<T> {
                Delayed::build(
                    $op.into(),
                    $prefix,
                    vec![ArgPart::of_node(&self.node), ArgPart::literal(rhs.into_value())],
                    None,
                )
            }
        }
        impl<T: $trait<Output = T> + IntoValue> $trait<T> for &Delayed<T> {
            type Output = Delayed<T>;
            fn $method(self, rhs: T) -> Delayed<T> {
                Delayed::build(
                    $op.into(),
                    $prefix,
                    vec![ArgPart::of_node(&self.node), ArgPart::literal(rhs.into_value())],
                    None,
                )
            }
        }
    };
}
binary_op!(Add, add, builtin::ADD, "add");
binary_op!(Sub, sub, builtin::SUB, "sub");
binary_op!(Mul, mul, builtin::MUL, "mul");

// True division gives a float, as Python's `/` does.
impl<T> Div<Delayed<T>> for Delayed<T> {
    type Output = Delayed<f64>;
    fn div(self, rhs: Delayed<T>) -> Delayed<f64> {
        Delayed::build(
            builtin::DIV.into(),
            "truediv",
            vec![ArgPart::of_node(&self.node), ArgPart::of_node(&rhs.node)],
            None,
        )
    }
}

impl<T: Neg<Output = T>> Neg for Delayed<T> {
    type Output = Delayed<T>;
    fn neg(self) -> Delayed<T> {
        Delayed::build(builtin::NEG.into(), "neg", vec![ArgPart::of_node(&self.node)], None)
    }
}

/// Number of distinct tasks behind some lazy values.
pub fn task_count<T>(values: &[Delayed<T>]) -> usize {
    let mut seen: rustc_hash::FxHashSet<*const Node> = rustc_hash::FxHashSet::default();
    let mut stack: Vec<&Arc<Node>> = values.iter().map(|d| &d.node).collect();
    let mut n = 0;
    while let Some(node) = stack.pop() {
        if !seen.insert(Arc::as_ptr(node)) {
            continue;
        }
        if let NodeKind::Task { deps, .. } = &node.kind {
            n += 1;
            stack.extend(deps.iter());
        }
    }
    n
}

/// Sums a list of lazy values in one task, like Python's `sum`.
pub fn sum<T>(items: &[Delayed<T>]) -> Delayed<T> {
    Delayed::build(builtin::SUM.into(), "sum", vec![items.into_arg()], None)
}
