//! The tutorial's "Delaying computation" part, in rask.
#![allow(clippy::panic)] // an op panics on purpose, to test that panics become task errors

use std::sync::LazyLock;
use std::time::Duration;

use rask::{Client, Delayed, Error, LocalCluster, compute_all, delayed, local, op};
use rask_tests::{Concurrency, block_on};

static INC_CALLS: LazyLock<Concurrency> = LazyLock::new(Concurrency::default);

op! {
    /// The tutorial's slow `inc`.
    fn slow_inc(x: i64) -> i64 {
        let _g = INC_CALLS.enter();
        std::thread::sleep(Duration::from_millis(100));
        x + 1
    }
}

op! {
    fn add(x: i64, y: i64) -> i64 { x + y }
}

op! {
    fn inc(x: i64) -> i64 { x + 1 }
}

op! {
    fn prod(xs: Vec<i64>) -> i64 { xs.iter().product() }
}

op! {
    fn fails(x: i64) -> Result<i64, String> {
        if x < 0 { Err(format!("negative input {x}")) } else { Ok(x) }
    }
}

op! {
    fn panics(x: i64) -> i64 {
        if x == 13 { panic!("unlucky {x}") }
        x
    }
}

#[test]
fn inc_inc_add_is_lazy_then_computes_5_with_parallel_leaves() {
    let cluster = LocalCluster::new(1, 2).unwrap();
    let client = Client::without_default(&cluster);
    let before = INC_CALLS.calls();
    let x = delayed!(slow_inc(1));
    let y = delayed!(slow_inc(2));
    let z = delayed!(add(&x, &y));
    assert_eq!(INC_CALLS.calls(), before, "building the graph runs nothing");
    let shown = format!("{z:?}");
    assert!(shown.starts_with("Delayed('add-") && shown.ends_with("')"), "{shown}");
    assert_eq!(client.compute(&z).result().unwrap(), 5);
    assert_eq!(INC_CALLS.calls(), before + 2);
    assert_eq!(INC_CALLS.max(), 2, "the two incs run at the same time on 2 threads");
}

#[test]
fn operators_build_graph_nodes() {
    let x = delayed!(inc(1));
    let y = delayed!(inc(2));
    let z = delayed!(add(&x, &y));
    let z2 = delayed!(add(delayed!(inc(1)), delayed!(inc(2))));
    let total = &z + &z2;
    assert!(format!("{total:?}").starts_with("Delayed('add-"));
    assert_eq!(total.compute().unwrap(), 10);
    assert_eq!((z.clone() * 3).compute().unwrap(), 15);
    assert_eq!((-(z.clone() - 7)).compute().unwrap(), 2);
    assert_eq!((z / delayed!(inc(1))).compute().unwrap(), 2.5);
    assert_eq!(Delayed::value(41i64).compute().unwrap(), 41);
}

#[test]
fn list_reduction_runs_over_all_leaves() {
    let data = [1i64, 2, 3, 4, 5, 6, 7, 8];
    let newdata: Vec<Delayed<i64>> = data.iter().map(|&x| delayed!(inc(x))).collect();
    let p = delayed!(prod(&newdata));
    assert_eq!(p.compute().unwrap(), (2..=9).product::<i64>());
    assert_eq!(rask::sum(&newdata).compute().unwrap(), (2..=9).sum::<i64>());
}

#[test]
fn compute_many_shares_intermediates() {
    let calls = std::sync::Arc::new(Concurrency::default());
    let c = calls.clone();
    let counted = local("counted", move |x: i64| {
        let _g = c.enter();
        x * 10
    });
    let shared = counted.call((4i64,));
    let a = &shared + 1;
    let b = &shared + 2;
    assert_eq!(compute_all(&[a, b]).unwrap(), vec![41, 42]);
    assert_eq!(calls.calls(), 1);
}

#[test]
fn futures_return_at_once_and_can_be_awaited() {
    let cluster = LocalCluster::new(2, 1).unwrap();
    let client = Client::without_default(&cluster);
    let gate = std::sync::Arc::new(std::sync::Barrier::new(2));
    let g = gate.clone();
    let waits = local("waits", move |x: i64| {
        g.wait();
        x
    });
    let future = client.compute(&waits.call((7i64,)));
    assert!(!future.done(), "compute returns before the work is done");
    gate.wait();
    assert_eq!(block_on(future).unwrap(), 7);
}

#[test]
fn futures_can_be_cancelled() {
    let cluster = LocalCluster::new(1, 1).unwrap();
    let client = Client::without_default(&cluster);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Mutex::new(rx);
    let blocks = local("blocks", move |x: i64| {
        let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(5));
        x
    });
    let first = client.compute(&blocks.call((1i64,)));
    let queued = client.compute(&delayed!(inc(delayed!(inc(1)))));
    queued.cancel();
    match queued.result() {
        Err(Error::Cancelled(key)) => assert_eq!(&key, queued.key()),
        other => panic!("expected a cancellation, got {other:?}"),
    }
    tx.send(()).unwrap();
    assert_eq!(first.result().unwrap(), 1);
}

#[test]
fn task_errors_name_the_key_and_keep_the_message() {
    let bad = delayed!(fails(-3));
    let downstream = delayed!(add(&bad, 1));
    let err = downstream.compute().unwrap_err();
    let Error::Task(task_error) = &err else { panic!("{err:?}") };
    assert_eq!(&task_error.key, bad.key());
    assert_eq!(task_error.message, "negative input -3");
    assert!(err.to_string().contains(&bad.key().to_string()), "{err}");

    let err = delayed!(panics(13)).compute().unwrap_err();
    assert!(err.to_string().contains("panic: unlucky 13"), "{err}");
    // The worker survived the panic.
    assert_eq!(delayed!(panics(12)).compute().unwrap(), 12);
}

#[test]
fn unknown_ops_are_refused_before_running() {
    let bogus: Delayed<i64> = Delayed::from_call("no::such::op", "bogus", vec![]);
    let err = bogus.compute().unwrap_err();
    assert!(matches!(err, Error::Graph(rask_core::Error::UnknownOp { .. })), "{err:?}");
    assert!(err.to_string().contains("no::such::op"), "{err}");
}

#[test]
fn wrong_result_types_are_errors_not_panics() {
    let text = local("text", |s: String| s);
    let as_int: Delayed<i64> = Delayed::from_call(
        rask_core::ops::builtin::IDENTITY,
        "id",
        vec![rask::IntoArg::<String>::into_arg(text.call(("x".to_string(),)))],
    );
    let err = as_int.compute().unwrap_err();
    assert!(matches!(err, Error::Conversion { .. }), "{err:?}");
    assert!(err.to_string().contains("expected int, found str"), "{err}");
}

#[test]
fn visualize_draws_the_graph() {
    let x = delayed!(inc(1));
    let y = delayed!(inc(2));
    let z = delayed!(add(&x, &y));
    let dot = z.visualize();
    assert_eq!(dot.0.matches("shape=circle").count(), 3);
    assert!(dot.0.contains("label=\"inc\"") && dot.0.contains("label=\"add\""));
    assert_eq!(dot.0.matches("->").count(), 5, "{dot}");
    let dir = std::env::temp_dir().join(format!("rask-viz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dot.write(dir.join("z.dot")).unwrap();
    assert!(std::fs::read_to_string(dir.join("z.dot")).unwrap().starts_with("digraph"));
    // Graphviz is installed by the test set-up, so SVG is really drawn...
    dot.write(dir.join("z.svg")).unwrap();
    assert!(std::fs::read_to_string(dir.join("z.svg")).unwrap().contains("<svg"));
    // ...and without it the error says how to get it.
    let e = dot.write_with(dir.join("y.svg"), "/nonexistent/dot").unwrap_err();
    assert!(e.to_string().contains("apt-get install graphviz"), "{e}");
    assert!(dot.write(dir.join("z.bmp")).unwrap_err().to_string().contains("unsupported"));
}
