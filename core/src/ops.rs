//! The op registry: names to functions.
//!
//! Built-in ops register here with `inventory`; user functions register
//! through the `rask::op!` macro, which submits an [`OpEntry`] the same way.
//! Any binary linked with those functions can run tasks that name them, which
//! is what lets a task cross a process boundary. Closures are [`LocalOp`]s
//! carried by the graph itself and only run in the process that built them.

use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashMap;

use crate::{Arg, Body, Call, Key, OpError, Params, Task, Value};

/// A registered op: parameters and resolved arguments in, a value out.
pub type OpFn = fn(&Params, Vec<Value>) -> Result<Value, OpError>;

/// A closure op, valid only in the process that created it.
pub type LocalOp = Arc<LocalOpFn>;

/// The function behind a [`LocalOp`].
pub type LocalOpFn = dyn Fn(&Params, Vec<Value>) -> Result<Value, OpError> + Send + Sync;

/// One entry in the registry, submitted with `inventory::submit!`.
#[derive(Debug)]
pub struct OpEntry {
    pub name: &'static str,
    pub func: OpFn,
}

inventory::collect!(OpEntry);

/// All ops linked into this binary, built once from the inventory.
#[derive(Debug)]
pub struct OpRegistry {
    ops: FxHashMap<&'static str, OpFn>,
}

impl OpRegistry {
    /// The registry of this binary. It is immutable once built, so sharing
    /// one instance is safe.
    pub fn global() -> &'static OpRegistry {
        static REGISTRY: OnceLock<OpRegistry> = OnceLock::new();
        REGISTRY.get_or_init(|| OpRegistry {
            ops: inventory::iter::<OpEntry>.into_iter().map(|e| (e.name, e.func)).collect(),
        })
    }

    pub fn get(&self, name: &str) -> Option<OpFn> {
        self.ops.get(name).copied()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.ops.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.ops.keys().copied()
    }
}

/// Runs one task. `input` resolves the task's dependencies; `local_ops` holds
/// the closures of the graph the task came from.
pub fn execute(
    task: &Task,
    registry: &OpRegistry,
    local_ops: &dyn Fn(&str) -> Option<LocalOp>,
    input: &dyn Fn(&Key) -> Option<Value>,
) -> Result<Value, OpError> {
    match &task.body {
        Body::Call(call) => run_call(&task.key, call, registry, local_ops, input),
        Body::Fused(chain) => {
            // Intermediate results of the chain live only in this frame.
            let mut inner: Vec<(&Key, Value)> = Vec::with_capacity(chain.len());
            let mut last = Value::None;
            for (key, call) in chain {
                let lookup =
                    |k: &Key| inner.iter().rev().find(|(ik, _)| *ik == k).map(|(_, v)| v.clone()).or_else(|| input(k));
                last = run_call(key, call, registry, local_ops, &lookup).map_err(|mut e| {
                    e.key.get_or_insert_with(|| key.clone());
                    e
                })?;
                inner.push((key, last.clone()));
            }
            Ok(last)
        }
    }
}

fn run_call(
    key: &Key,
    call: &Call,
    registry: &OpRegistry,
    local_ops: &dyn Fn(&str) -> Option<LocalOp>,
    input: &dyn Fn(&Key) -> Option<Value>,
) -> Result<Value, OpError> {
    let args = call.args.iter().map(|a| resolve(a, input)).collect::<Result<Vec<_>, _>>()?;
    if let Some(f) = registry.get(&call.op) {
        return f(&call.params, args);
    }
    if let Some(local) = local_ops(&call.op) {
        return local(&call.params, args);
    }
    Err(OpError::new(format!("task {key}: op {:?} is not registered in this binary", call.op)))
}

/// For callers without closures.
pub fn no_local_ops(_: &str) -> Option<LocalOp> {
    None
}

fn resolve(arg: &Arg, input: &dyn Fn(&Key) -> Option<Value>) -> Result<Value, OpError> {
    match arg {
        Arg::Key(k) => input(k).ok_or_else(|| OpError::new(format!("input {k} is not available"))),
        Arg::Value(v) => Ok(v.clone()),
        Arg::List(items) => items.iter().map(|a| resolve(a, input)).collect::<Result<Vec<_>, _>>().map(Value::list),
    }
}

// ---------------------------------------------------------------------------
// Built-in scalar ops. Collections register their kernels in their own crates.

/// Binary arithmetic with Python's rules: int op int stays int (checked, so
/// overflow is an error rather than a wrap), true division gives a float,
/// and anything with a float is a float.
fn arith(
    args: Vec<Value>,
    name: &str,
    int: fn(i64, i64) -> Option<i64>,
    float: fn(f64, f64) -> f64,
) -> Result<Value, OpError> {
    let [a, b]: [Value; 2] =
        args.try_into().map_err(|v: Vec<Value>| OpError::new(format!("{name} takes 2 arguments, got {}", v.len())))?;
    match (&a, &b) {
        (Value::Int(x), Value::Int(y)) => int(*x, *y)
            .map(Value::Int)
            .ok_or_else(|| OpError::new(format!("integer overflow or division by zero in {x} {name} {y}"))),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            Ok(Value::Float(float(as_f64(&a), as_f64(&b))))
        }
        _ => {
            Err(OpError::new(format!("unsupported operand types for {name}: {} and {}", a.type_name(), b.type_name())))
        }
    }
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        _ => f64::NAN,
    }
}

fn add(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    arith(args, "+", i64::checked_add, |a, b| a + b)
}
fn sub(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    arith(args, "-", i64::checked_sub, |a, b| a - b)
}
fn mul(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    arith(args, "*", i64::checked_mul, |a, b| a * b)
}
fn div(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let [a, b]: [Value; 2] =
        args.try_into().map_err(|v: Vec<Value>| OpError::new(format!("/ takes 2 arguments, got {}", v.len())))?;
    if matches!(b, Value::Int(0)) || matches!(b, Value::Float(x) if x == 0.0) {
        return Err(OpError::new("division by zero"));
    }
    arith(vec![Value::Float(as_f64(&a)), b], "/", |_, _| None, |a, b| a / b)
}
fn neg(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    match args.as_slice() {
        [Value::Int(i)] => i.checked_neg().map(Value::Int).ok_or_else(|| OpError::new("integer overflow in negation")),
        [Value::Float(x)] => Ok(Value::Float(-x)),
        other => Err(OpError::new(format!("cannot negate {:?}", other))),
    }
}
fn identity(_: &Params, mut args: Vec<Value>) -> Result<Value, OpError> {
    if args.len() != 1 {
        return Err(OpError::new(format!("identity takes 1 argument, got {}", args.len())));
    }
    Ok(args.swap_remove(0))
}
/// Folds a list with a binary op: `sum`, `prod`, `max`, `min` of Python.
fn fold(args: Vec<Value>, name: &str, start: Value, op: OpFn) -> Result<Value, OpError> {
    let items = match args.as_slice() {
        [Value::List(items)] => items.clone(),
        _ => return Err(OpError::new(format!("{name} takes one list argument"))),
    };
    items.iter().try_fold(start, |acc, v| op(&Params::default(), vec![acc, v.clone()]))
}
fn sum(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    fold(args, "sum", Value::Int(0), add)
}
fn prod(_: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    fold(args, "prod", Value::Int(1), mul)
}
fn getitem(params: &Params, args: Vec<Value>) -> Result<Value, OpError> {
    let index: usize = postcard::from_bytes(&params.0).map_err(|e| OpError::new(format!("getitem params: {e}")))?;
    match args.as_slice() {
        [Value::List(items)] => items
            .get(index)
            .cloned()
            .ok_or_else(|| OpError::new(format!("index {index} out of range for a list of {}", items.len()))),
        _ => Err(OpError::new("getitem takes one list argument")),
    }
}

/// Names of the built-in scalar ops, used by `Delayed`'s operators.
pub mod builtin {
    pub const ADD: &str = "rask.add";
    pub const SUB: &str = "rask.sub";
    pub const MUL: &str = "rask.mul";
    pub const DIV: &str = "rask.div";
    pub const NEG: &str = "rask.neg";
    pub const IDENTITY: &str = "rask.identity";
    pub const SUM: &str = "rask.sum";
    pub const PROD: &str = "rask.prod";
    pub const GETITEM: &str = "rask.getitem";
}

inventory::submit! { OpEntry { name: builtin::ADD, func: add } }
inventory::submit! { OpEntry { name: builtin::SUB, func: sub } }
inventory::submit! { OpEntry { name: builtin::MUL, func: mul } }
inventory::submit! { OpEntry { name: builtin::DIV, func: div } }
inventory::submit! { OpEntry { name: builtin::NEG, func: neg } }
inventory::submit! { OpEntry { name: builtin::IDENTITY, func: identity } }
inventory::submit! { OpEntry { name: builtin::SUM, func: sum } }
inventory::submit! { OpEntry { name: builtin::PROD, func: prod } }
inventory::submit! { OpEntry { name: builtin::GETITEM, func: getitem } }

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &str, args: Vec<Value>) -> Result<Value, OpError> {
        let task = Task::new("t".into(), op, Params::default(), args.into_iter().map(Arg::Value).collect());
        execute(&task, OpRegistry::global(), &no_local_ops, &|_| None)
    }

    #[test]
    fn builtins_follow_python_arithmetic() {
        assert_eq!(run(builtin::ADD, vec![Value::Int(2), Value::Int(3)]).unwrap(), Value::Int(5));
        assert_eq!(run(builtin::ADD, vec![Value::Int(2), Value::Float(0.5)]).unwrap(), Value::Float(2.5));
        assert_eq!(run(builtin::DIV, vec![Value::Int(3), Value::Int(2)]).unwrap(), Value::Float(1.5));
        assert!(run(builtin::DIV, vec![Value::Int(3), Value::Int(0)]).unwrap_err().message.contains("zero"));
        assert!(run(builtin::MUL, vec![Value::Int(i64::MAX), Value::Int(2)]).unwrap_err().message.contains("overflow"));
        let list = Value::list([Value::Int(2), Value::Int(3), Value::Int(4)]);
        assert_eq!(run(builtin::PROD, vec![list.clone()]).unwrap(), Value::Int(24));
        assert_eq!(run(builtin::SUM, vec![list]).unwrap(), Value::Int(9));
        assert!(run(builtin::ADD, vec![Value::Int(1), Value::Str("a".into())]).unwrap_err().message.contains("str"));
    }

    #[test]
    fn unknown_op_is_an_error() {
        let err = run("nope", vec![]).unwrap_err();
        assert!(err.message.contains("\"nope\""), "{err}");
    }

    #[test]
    fn fused_chain_threads_inner_results() {
        let a = Key::new("a");
        let mid = Key::new("mid");
        let task = Task {
            key: "out".into(),
            body: Body::Fused(vec![
                (
                    mid.clone(),
                    Call { op: builtin::NEG.into(), params: Params::default(), args: vec![Arg::Key(a.clone())] },
                ),
                (
                    "out".into(),
                    Call {
                        op: builtin::MUL.into(),
                        params: Params::default(),
                        args: vec![Arg::Key(mid), Arg::Value(Value::Int(10))],
                    },
                ),
            ]),
        };
        let v = execute(&task, OpRegistry::global(), &no_local_ops, &|k| (k == &a).then_some(Value::Int(4))).unwrap();
        assert_eq!(v, Value::Int(-40));
    }
}
