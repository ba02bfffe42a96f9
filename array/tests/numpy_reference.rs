//! The same inputs through rask and numpy must give the same numbers and
//! dtypes. numpy comes from PyPI, in the virtualenv `scripts/setup.sh` makes.
//! Integers must match exactly; floats within 1e-12 relative (float64) or
//! 1e-5 (float32, where numpy sums pairwise and rask per block).
#![allow(clippy::panic, clippy::unwrap_used)] // test helpers fail loudly, naming the case

use std::io::Write;
use std::process::{Command, Stdio};

use ndarray::{ArrayD, IxDyn};
use rask::core::{ArrayValue, DType};
use rask_array::{Array, BinaryOp, Boundary, Chunks, Fill, Index, Reduction, UnaryOp};
use serde_json::{Value as Json, json};

const DTYPES: [DType; 11] = DType::ALL;

fn python() -> String {
    let default = format!("{}/.cache/rask/pyref/bin/python", std::env::var("HOME").unwrap_or_default());
    let py = std::env::var("RASK_PYREF").map(|d| format!("{d}/bin/python")).unwrap_or(default);
    assert!(
        std::path::Path::new(&py).exists(),
        "numpy reference interpreter {py} is missing: run scripts/setup.sh (the test command does)"
    );
    py
}

fn numpy(cases: &[Json]) -> Vec<Json> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/numpy_ref.py");
    let mut child =
        Command::new(python()).arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start python");
    child.stdin.take().unwrap().write_all(serde_json::to_string(cases).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "numpy reference failed");
    serde_json::from_slice(&out.stdout).expect("numpy output is JSON")
}

/// Small values so products do not overflow differently and unsigned stays
/// non-negative; `shift` varies the second operand.
fn data(dtype: DType, n: usize, shift: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let v = ((i * 7 + shift * 3) % 5) as f64;
            match dtype {
                DType::Bool => f64::from(u8::from(v as usize % 2 == 1)),
                DType::U8 | DType::U16 | DType::U32 | DType::U64 => v + 1.0,
                DType::F32 | DType::F64 => v - 1.75,
                _ => v - 2.0,
            }
        })
        .collect()
}

fn array_of(dtype: DType, shape: &[usize], values: &[f64], chunks: &[usize]) -> Array {
    let a = ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap();
    let f = Array::from_ndarray(&a, Chunks::Uniform(chunks.to_vec())).unwrap();
    f.astype(dtype)
}

fn json_list(values: &[f64], dtype: DType) -> Json {
    match dtype {
        DType::Bool => json!(values.iter().map(|v| *v != 0.0).collect::<Vec<_>>()),
        DType::F32 | DType::F64 => json!(values),
        _ => json!(values.iter().map(|v| *v as i64).collect::<Vec<_>>()),
    }
}

fn flat(a: &ArrayValue) -> (String, Vec<usize>, Vec<f64>) {
    let f = rask_array::dtype::cast(a, DType::F64);
    let ArrayValue::F64(x) = f else { unreachable!() };
    (a.dtype().name().to_string(), a.shape().to_vec(), x.iter().copied().collect())
}

/// Checks every result against its reference; the lists must be as long.
fn check_all<L: AsRef<str>>(ours: &[(L, ArrayValue)], reference: &[Json]) {
    assert_eq!(ours.len(), reference.len(), "one numpy result per case");
    for ((label, got), want) in ours.iter().zip(reference) {
        check(label.as_ref(), got, want);
    }
}

fn check(label: &str, ours: &ArrayValue, reference: &Json) {
    if let Some(e) = reference.get("error") {
        panic!("{label}: numpy raised {e}");
    }
    let (dtype, shape, values) = flat(ours);
    assert_eq!(dtype, reference["dtype"].as_str().unwrap(), "{label}: dtype");
    let want_shape: Vec<usize> =
        reference["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(shape, want_shape, "{label}: shape");
    let want: Vec<f64> = reference["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_f64()
                .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .unwrap()
        })
        .collect();
    let tol = match ours.dtype() {
        DType::F32 => 1e-5,
        DType::F64 => 1e-12,
        _ => 0.0,
    };
    for (i, (g, w)) in values.iter().zip(&want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (tol > 0.0 && (g - w).abs() <= tol * w.abs().max(1.0));
        assert!(ok, "{label}: element {i}: rask {g} vs numpy {w}");
    }
}

#[test]
fn reductions_match_numpy() {
    let shape = [3usize, 4, 5];
    let chunks = [2usize, 3, 2];
    let n: usize = shape.iter().product();
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    let axes_options: [Option<Vec<usize>>; 5] = [None, Some(vec![0]), Some(vec![1]), Some(vec![2]), Some(vec![0, 2])];
    for dtype in DTYPES {
        let mut values = data(dtype, n, 0);
        // Floats get a few NaNs for the nan-aware reductions.
        let with_nans = matches!(dtype, DType::F32 | DType::F64);
        for (op, fname, ddof) in [
            (Reduction::Sum, "sum", None),
            (Reduction::Prod, "prod", None),
            (Reduction::Min, "min", None),
            (Reduction::Max, "max", None),
            (Reduction::Mean, "mean", None),
            (Reduction::Var { ddof: 0 }, "var", Some(0)),
            (Reduction::Var { ddof: 1 }, "var", Some(1)),
            (Reduction::Std { ddof: 1 }, "std", Some(1)),
            (Reduction::Any, "any", None),
            (Reduction::All, "all", None),
            (Reduction::CountNonzero, "count_nonzero", None),
            (Reduction::NanSum, "nansum", None),
            (Reduction::NanMean, "nanmean", None),
            (Reduction::NanMin, "nanmin", None),
            (Reduction::NanMax, "nanmax", None),
            (Reduction::NanVar { ddof: 0 }, "nanvar", Some(0)),
            (Reduction::NanStd { ddof: 1 }, "nanstd", Some(1)),
            (Reduction::ArgMin, "argmin", None),
            (Reduction::ArgMax, "argmax", None),
        ] {
            let nan_op = matches!(
                op,
                Reduction::NanSum
                    | Reduction::NanMean
                    | Reduction::NanMin
                    | Reduction::NanMax
                    | Reduction::NanVar { .. }
                    | Reduction::NanStd { .. }
                    | Reduction::ArgMin
                    | Reduction::ArgMax
            );
            if nan_op && with_nans {
                for i in (0..n).step_by(7) {
                    values[i] = f64::NAN;
                }
            } else {
                values = data(dtype, n, 0);
            }
            let x = array_of(dtype, &shape, &values, &chunks);
            for axes in &axes_options {
                // numpy's argmin/argmax take one axis or None.
                let arg = matches!(op, Reduction::ArgMin | Reduction::ArgMax);
                if arg && axes.as_ref().is_some_and(|a| a.len() > 1) {
                    assert!(x.reduce(op, axes.as_deref(), false, 2).is_err());
                    continue;
                }
                for keepdims in [false, true] {
                    let got = x.reduce(op, axes.as_deref(), keepdims, 2).unwrap().compute().unwrap();
                    ours.push((format!("{fname}({dtype}, axis={axes:?}, keepdims={keepdims}, ddof={ddof:?})"), got));
                    let axis_json = if arg { json!(axes.as_ref().map(|a| a[0])) } else { json!(axes) };
                    let mut case = json!({
                        "op": "reduce", "fn": fname, "a": json_list(&values, dtype), "dtype": dtype.name(),
                        "shape": shape, "axis": axis_json, "keepdims": keepdims, "scalar_axis": arg,
                    });
                    if let Some(d) = ddof {
                        case["ddof"] = json!(d);
                    }
                    cases.push(case);
                }
            }
        }
    }
    let reference = numpy(&cases);
    check_all(&ours, &reference);
}

#[test]
fn elementwise_promotion_matches_numpy() {
    let shape = [4usize, 6];
    let chunks = [3usize, 4];
    let n = 24;
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    let ops = [
        (BinaryOp::Add, "add"),
        (BinaryOp::Sub, "subtract"),
        (BinaryOp::Mul, "multiply"),
        (BinaryOp::Div, "true_divide"),
        (BinaryOp::Lt, "less"),
        (BinaryOp::Eq, "equal"),
        (BinaryOp::Max, "maximum"),
        (BinaryOp::FloorDiv, "floor_divide"),
        (BinaryOp::Mod, "remainder"),
        (BinaryOp::Pow, "power"),
        (BinaryOp::LogicalAnd, "logical_and"),
        (BinaryOp::LogicalOr, "logical_or"),
    ];
    for da in DTYPES {
        for db in DTYPES {
            let (va, vb) = (data(da, n, 0), data(db, n, 1));
            let (x, y) = (array_of(da, &shape, &va, &chunks), array_of(db, &shape, &vb, &chunks));
            for (op, fname) in ops {
                // numpy refuses boolean subtraction; so does the test.
                if op == BinaryOp::Sub && da == DType::Bool && db == DType::Bool {
                    continue;
                }
                // Negative integer exponents are an error in numpy and in rask
                // (checked below); so is the float64 result of u64 ** i64.
                let int_exponent = !matches!(
                    db,
                    DType::F32 | DType::F64 | DType::Bool | DType::U8 | DType::U16 | DType::U32 | DType::U64
                );
                if op == BinaryOp::Pow && int_exponent && !matches!(da, DType::F32 | DType::F64) {
                    continue;
                }
                let got = match op {
                    BinaryOp::Add => x.add(&y),
                    BinaryOp::Sub => x.sub(&y),
                    BinaryOp::Mul => x.mul(&y),
                    BinaryOp::Div => x.div(&y),
                    BinaryOp::Lt => x.lt(&y),
                    BinaryOp::Eq => x.eq_elementwise(&y),
                    BinaryOp::Max => x.maximum(&y),
                    other => x.apply(other, &y),
                }
                .unwrap()
                .compute()
                .unwrap();
                ours.push((format!("{fname}({da}, {db})"), got));
                cases.push(json!({
                    "op": "binary", "fn": fname, "a": json_list(&va, da), "dtype": da.name(),
                    "b": json_list(&vb, db), "b_dtype": db.name(), "shape": shape,
                }));
            }
        }
        // Python scalars follow NEP 50.
        let va = data(da, n, 0);
        let x = array_of(da, &shape, &va, &chunks);
        for (scalar, fill) in [(json!(3), Fill::Int(3)), (json!(2.5), Fill::Float(2.5))] {
            for (op, fname) in [(BinaryOp::Add, "add"), (BinaryOp::Mul, "multiply"), (BinaryOp::Div, "true_divide")] {
                for first in [false, true] {
                    let got = if first { x.rscalar(op, fill) } else { x.scalar(op, fill) }.unwrap().compute().unwrap();
                    ours.push((format!("{fname}({da}, {scalar}, scalar_first={first})"), got));
                    cases.push(json!({
                        "op": "scalar", "fn": fname, "a": json_list(&va, da), "dtype": da.name(), "shape": shape,
                        "scalar": scalar, "scalar_first": first,
                    }));
                }
            }
        }
    }
    let reference = numpy(&cases);
    assert_eq!(reference.len(), ours.len());
    check_all(&ours, &reference);
}

/// NEP 50 with integers the array's dtype cannot hold: numpy 2 raises
/// `OverflowError` for arithmetic and answers comparisons and true division
/// exactly. rask must give the same error text or the same values, at every
/// chunking.
#[test]
fn out_of_bounds_python_integers_follow_numpy() {
    let shape = [5usize, 4];
    let n = 20;
    let ops = [
        (BinaryOp::Add, "add"),
        (BinaryOp::Sub, "subtract"),
        (BinaryOp::Mul, "multiply"),
        (BinaryOp::Div, "true_divide"),
        (BinaryOp::FloorDiv, "floor_divide"),
        (BinaryOp::Mod, "remainder"),
        (BinaryOp::Pow, "power"),
        (BinaryOp::Max, "maximum"),
        (BinaryOp::Lt, "less"),
        (BinaryOp::Ge, "greater_equal"),
        (BinaryOp::Eq, "equal"),
        (BinaryOp::Ne, "not_equal"),
        (BinaryOp::LogicalAnd, "logical_and"),
    ];
    let int_dtypes = [DType::U8, DType::I8, DType::U16, DType::I16, DType::U32, DType::I32, DType::U64, DType::Bool];
    for chunks in [[5usize, 4], [2, 3], [1, 1]] {
        let mut cases = Vec::new();
        let mut ours = Vec::new();
        for dtype in int_dtypes {
            let values = data(dtype, n, 2);
            let x = array_of(dtype, &shape, &values, &chunks);
            for scalar in [300i64, -200, 128, -1, 70_000, 5_000_000_000, 255] {
                for (op, fname) in ops {
                    for first in [false, true] {
                        let label = format!("{fname}({dtype}, {scalar}, scalar_first={first}) chunks {chunks:?}");
                        let got =
                            if first { x.rscalar(op, Fill::Int(scalar)) } else { x.scalar(op, Fill::Int(scalar)) }
                                .and_then(|a| a.compute());
                        ours.push((label, got));
                        cases.push(json!({
                            "op": "scalar", "fn": fname, "a": json_list(&values, dtype), "dtype": dtype.name(),
                            "shape": shape, "scalar": scalar, "scalar_first": first,
                        }));
                    }
                }
            }
        }
        let reference = numpy(&cases);
        assert_eq!(reference.len(), ours.len());
        let mut errors = 0;
        for ((label, got), want) in ours.iter().zip(&reference) {
            match (got, want.get("error")) {
                (Ok(got), None) => check(label, got, want),
                (Err(e), Some(numpy_error)) => {
                    let numpy_error = numpy_error.as_str().unwrap();
                    // numpy's repr: `OverflowError('...')`, or `ValueError('...')` for
                    // integers to negative powers (which rask finds when computing).
                    let message = numpy_error.split_once("('").map_or(numpy_error, |(_, m)| m).trim_end_matches("')");
                    let message = message.trim_end_matches('.');
                    assert!(e.to_string().contains(message), "{label}: rask said {e}, numpy {numpy_error}");
                    errors += 1;
                }
                (Ok(_), Some(numpy_error)) => panic!("{label}: rask computed, numpy raised {numpy_error}"),
                (Err(e), None) => panic!("{label}: rask failed with {e}, numpy computed"),
            }
        }
        assert!(errors > 100, "the cases include numpy's OverflowErrors ({errors})");
    }
}

/// nanmin/nanmax/nanvar/nanstd where whole lanes and whole blocks are NaN,
/// and lanes with fewer values than `ddof`: numpy's NaNs, at every chunking.
#[test]
fn nan_reductions_with_all_nan_lanes_match_numpy() {
    let shape = [6usize, 5];
    let mut values: Vec<f64> = (0..30).map(|i| ((i * 11) % 13) as f64 - 6.5).collect();
    for i in 0..5 {
        values[i] = f64::NAN; // row 0 all NaN
        values[5 + i] = if i == 2 { 4.0 } else { f64::NAN }; // row 1 one value
    }
    for r in 0..6 {
        values[r * 5 + 4] = f64::NAN; // column 4 all NaN
    }
    let ops = [
        (Reduction::NanMin, "nanmin", None),
        (Reduction::NanMax, "nanmax", None),
        (Reduction::NanVar { ddof: 1 }, "nanvar", Some(1)),
        (Reduction::NanStd { ddof: 0 }, "nanstd", Some(0)),
        (Reduction::NanMean, "nanmean", None),
    ];
    for chunks in [[6usize, 5], [2, 2], [1, 3], [4, 1]] {
        for dtype in [DType::F64, DType::F32] {
            let x = array_of(dtype, &shape, &values, &chunks);
            let mut ours = Vec::new();
            let mut cases = Vec::new();
            for (op, fname, ddof) in ops {
                for axes in [None, Some(vec![0]), Some(vec![1])] {
                    let got = x.reduce(op, axes.as_deref(), false, 2).unwrap().compute().unwrap();
                    ours.push((format!("{fname}({dtype}, axis={axes:?}) chunks {chunks:?}"), got));
                    let mut case = json!({"op": "reduce", "fn": fname, "a": json_list(&values, dtype),
                        "dtype": dtype.name(), "shape": shape, "axis": axes, "keepdims": false});
                    if let Some(d) = ddof {
                        case["ddof"] = json!(d);
                    }
                    cases.push(case);
                }
            }
            check_all(&ours, &numpy(&cases));
        }
    }
    // Bad input: an empty array has no nanmin, as in numpy.
    let empty = Array::from_ndarray(&ArrayD::<f64>::zeros(IxDyn(&[0])), Chunks::Uniform(vec![1])).unwrap();
    let e = empty.nanmin().and_then(|a| a.compute()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("zero-size array"), "{e}");
}

/// cumsum, cumprod and diff along each axis against numpy, for several
/// dtypes (bool and small ints widen for the cumulative ones, integers
/// wrap) and chunkings, which must also agree with each other bit for bit.
#[test]
fn cumsum_cumprod_and_diff_match_numpy() {
    let shape = [5usize, 7];
    let n = 35;
    for dtype in [DType::Bool, DType::I8, DType::U8, DType::I32, DType::U64, DType::F32, DType::F64] {
        let values: Vec<f64> = (0..n)
            .map(|i| {
                let v = ((i * 37) % 11) as f64;
                match dtype {
                    DType::Bool => f64::from(u8::from(i % 3 == 0)),
                    DType::U8 | DType::U64 => v * 23.0,
                    DType::F32 | DType::F64 => (v - 5.0) * 0.37,
                    _ => v * 13.0 - 60.0,
                }
            })
            .collect();
        let mut single: Vec<ArrayValue> = Vec::new();
        for (k, chunks) in [[5usize, 7], [2, 3], [1, 1], [4, 2]].into_iter().enumerate() {
            let x = array_of(dtype, &shape, &values, &chunks);
            let mut ours = Vec::new();
            let mut cases = Vec::new();
            for axis in 0..2 {
                for (fname, got) in [
                    ("cumsum", x.cumsum(axis).unwrap().compute().unwrap()),
                    ("cumprod", x.cumprod(axis).unwrap().compute().unwrap()),
                    ("diff", x.diff(axis).unwrap().compute().unwrap()),
                ] {
                    ours.push((format!("{fname}({dtype}, axis={axis}) chunks {chunks:?}"), got));
                    cases.push(
                        json!({"op": "expr", "a": json_list(&values, dtype), "dtype": dtype.name(), "shape": shape,
                        "expr": format!("np.{fname}(a, axis={axis})")}),
                    );
                }
            }
            check_all(&ours, &numpy(&cases));
            let results: Vec<ArrayValue> = ours.into_iter().map(|(_, v)| v).collect();
            if k == 0 {
                single = results;
            } else {
                assert_eq!(results, single, "{dtype} chunks {chunks:?}: results differ from one block's");
            }
        }
    }
    let x = array_of(DType::F64, &shape, &[0.0; 35], &[2, 2]);
    assert!(x.cumsum(2).is_err() && x.diff(5).is_err(), "axes out of range are refused");
}

#[test]
fn histogram_matches_numpy() {
    // Normal values around 9 with the tutorial's range, plus values exactly
    // on edges and outside the range.
    let shape = [40usize, 50];
    let x = Array::random_normal(9.0, 1.0, &shape, 5, Chunks::Uniform(vec![15, 20])).unwrap();
    let ArrayValue::F64(data) = x.compute().unwrap() else { unreachable!() };
    let mut values: Vec<f64> = data.iter().copied().collect();
    values.extend([-9.0, 11.0, 10.8, -9.2, 11.5, 0.0, 1.0]);
    let n = values.len();
    let edge_cases = array_of(DType::F64, &[n], &values, &[300]);
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (bins, range) in [(100usize, (-9.0, 11.0)), (7, (8.0, 10.0)), (1, (0.0, 1.0))] {
        let (counts, edges) = edge_cases.histogram(bins, range).unwrap();
        let ArrayValue::I64(c) = counts.compute().unwrap() else { unreachable!() };
        ours.push((bins, c.iter().copied().collect::<Vec<i64>>(), edges));
        cases.push(json!({"op": "histogram", "a": values, "dtype": "float64", "shape": [n], "bins": bins, "range": [range.0, range.1]}));
    }
    let reference = numpy(&cases);
    assert_eq!(reference.len(), ours.len());
    for ((bins, counts, edges), want) in ours.iter().zip(&reference) {
        let want_counts: Vec<i64> = want["counts"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(counts, &want_counts, "{bins} bins");
        let want_edges: Vec<f64> = want["edges"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        for (g, w) in edges.iter().zip(&want_edges) {
            assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{bins} bins: edge {g} vs {w}");
        }
    }
}

fn index_json(ix: &Index) -> Json {
    match ix {
        Index::At(i) => json!(["int", i]),
        Index::Range { start, stop, step } => json!(["slice", start, stop, step]),
        Index::NewAxis => json!(["newaxis"]),
        Index::Ellipsis => json!(["ellipsis"]),
    }
}

#[test]
fn slicing_matches_numpy() {
    let shape = [6usize, 7, 5];
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let x = array_of(DType::I64, &shape, &values, &[4, 3, 2]);
    let r = Index::range;
    let indexes: Vec<Vec<Index>> = vec![
        vec![r(None, Some(4), 1), r(None, None, 2)],
        vec![r(None, None, -1)],
        vec![Index::At(-1), r(Some(5), Some(0), -2)],
        vec![Index::Ellipsis, Index::At(3)],
        vec![Index::NewAxis, r(Some(1), Some(-1), 3), Index::Ellipsis, Index::NewAxis],
        vec![r(Some(-2), None, 1), Index::At(0), r(None, None, -3)],
        vec![r(Some(10), Some(20), 1)],
        vec![r(Some(4), Some(1), 1), Index::ALL, Index::At(2)],
        vec![Index::At(2), Index::NewAxis, r(None, None, -2), r(Some(-1), Some(-6), -1)],
    ];
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for ix in &indexes {
        ours.push((format!("x[{ix:?}]"), x.slice(ix).unwrap().compute().unwrap()));
        cases.push(json!({"op": "getitem", "a": json_list(&values, DType::I64), "dtype": "int64", "shape": shape,
                          "index": ix.iter().map(index_json).collect::<Vec<_>>()}));
    }
    check_all(&ours, &numpy(&cases));
    assert!(x.slice(&[Index::At(6)]).unwrap_err().to_string().contains("out of bounds"));
    assert!(
        x.slice(&[Index::ALL, Index::ALL, Index::ALL, Index::ALL])
            .unwrap_err()
            .to_string()
            .contains("too many indices")
    );
}

#[test]
fn transpose_rechunk_and_dot_match_numpy() {
    let (m, k, p) = (7usize, 9usize, 5usize);
    let a_vals: Vec<f64> = (0..m * k).map(|i| ((i * 13) % 17) as f64 - 8.0).collect();
    let b_vals: Vec<f64> = (0..k * p).map(|i| ((i * 7) % 11) as f64 * 0.5).collect();
    let a = array_of(DType::F64, &[m, k], &a_vals, &[3, 4]);
    let b = array_of(DType::F64, &[k, p], &b_vals, &[2, 5]);
    let sq_vals: Vec<f64> = (0..k * k).map(|i| i as f64).collect();
    let sq = array_of(DType::I64, &[k, k], &sq_vals, &[4, 3]);
    let ours = [
        ("dot".to_string(), a.dot(&b).unwrap().compute().unwrap()),
        ("x + x.T".to_string(), sq.add(&sq.t()).unwrap().compute().unwrap()),
        ("dot(x, x + x.T)".to_string(), sq.dot(&sq.add(&sq.t()).unwrap()).unwrap().compute().unwrap()),
    ];
    let cases = vec![
        json!({"op": "dot", "a": a_vals, "dtype": "float64", "shape": [m, k], "b": b_vals, "b_dtype": "float64", "b_shape": [k, p]}),
        json!({"op": "xxt", "a": json_list(&sq_vals, DType::I64), "dtype": "int64", "shape": [k, k]}),
        json!({"op": "dot", "a": json_list(&sq_vals, DType::I64), "dtype": "int64", "shape": [k, k],
               "b": (0..k * k).map(|i| { let (r, c) = (i / k, i % k); (r * k + c + c * k + r) as i64 }).collect::<Vec<_>>(),
               "b_dtype": "int64", "b_shape": [k, k]}),
    ];
    check_all(&ours, &numpy(&cases));
    let r = a.rechunk(Chunks::Uniform(vec![5, 2])).unwrap();
    assert_eq!(format!("{:?}", r.chunks()), "((5, 2), (2, 2, 2, 2, 1))");
    assert_eq!(r.compute().unwrap(), a.compute().unwrap());
}

/// `arange` bit for bit (numpy fills `start + i * ((start + step) - start)`)
/// and `dot` keeping int32 (wrapping on overflow as numpy's does), for
/// several chunkings.
#[test]
fn arange_bits_and_int32_dot_match_numpy() {
    let ranges = [
        (Fill::Float(1.0), Fill::Float(-1.0), Fill::Float(-0.3), "1.0, -1.0, -0.3"),
        (Fill::Float(0.1), Fill::Float(1.0), Fill::Float(0.1), "0.1, 1.0, 0.1"),
        (Fill::Float(-3.7), Fill::Float(10.2), Fill::Float(0.7), "-3.7, 10.2, 0.7"),
        (Fill::Int(1), Fill::Float(2.0), Fill::Float(1.0 / 3.0), "1, 2.0, 1/3"),
        (Fill::Int(5), Fill::Int(-7), Fill::Int(-2), "5, -7, -2"),
    ];
    let mut cases = Vec::new();
    for (.., args) in &ranges {
        cases.push(json!({"op": "expr", "a": [0], "dtype": "int64", "shape": [1],
            "expr": format!("np.array([repr(v) for v in np.arange({args}).tolist()])")}));
        cases.push(json!({"op": "expr", "a": [0], "dtype": "int64", "shape": [1],
            "expr": format!("np.array([str(np.arange({args}).dtype)])")}));
    }
    let reference = numpy(&cases);
    for chunk in [1usize, 3, 4, 100] {
        for (k, (start, stop, step, args)) in ranges.iter().enumerate() {
            let got = Array::arange(*start, *stop, *step, Chunks::Uniform(vec![chunk])).unwrap().compute().unwrap();
            let label = format!("arange({args}) chunks {chunk}");
            assert_eq!(got.dtype().name(), reference[2 * k + 1]["values"][0].as_str().unwrap(), "{label}: dtype");
            let (_, _, values) = flat(&got);
            let want: Vec<f64> = reference[2 * k]["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().parse().unwrap())
                .collect();
            assert_eq!(values.len(), want.len(), "{label}: length");
            for (i, (g, w)) in values.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{label}: element {i}: rask {g:e} vs numpy {w:e}");
            }
        }
    }
    let (m, k, p) = (6usize, 7usize, 5usize);
    let a_vals: Vec<f64> = (0..m * k).map(|i| ((i * 7919) % 40_000) as f64 * 50_000.0 - 1.0e9).collect();
    let b_vals: Vec<f64> = (0..k * p).map(|i| ((i * 13) % 17) as f64 - 8.0).collect();
    for (ca, cb) in [([6, 7], [7, 5]), ([2, 3], [3, 2]), ([1, 1], [1, 1]), ([4, 7], [2, 5])] {
        let a = array_of(DType::I32, &[m, k], &a_vals, &ca);
        let ours = [
            (
                "int32 dot int32".to_string(),
                a.dot(&array_of(DType::I32, &[k, p], &b_vals, &cb)).unwrap().compute().unwrap(),
            ),
            (
                "int32 dot int16".to_string(),
                a.dot(&array_of(DType::I16, &[k, p], &b_vals, &cb)).unwrap().compute().unwrap(),
            ),
            (
                "int32 matmul int32".to_string(),
                a.matmul(&array_of(DType::I32, &[k, p], &b_vals, &cb)).unwrap().compute().unwrap(),
            ),
        ];
        let a_json = json_list(&a_vals, DType::I32);
        let cases = vec![
            json!({"op": "dot", "a": a_json, "dtype": "int32", "shape": [m, k], "b": json_list(&b_vals, DType::I32), "b_dtype": "int32", "b_shape": [k, p]}),
            json!({"op": "dot", "a": a_json, "dtype": "int32", "shape": [m, k], "b": json_list(&b_vals, DType::I16), "b_dtype": "int16", "b_shape": [k, p]}),
            json!({"op": "dot", "a": a_json, "dtype": "int32", "shape": [m, k], "b": json_list(&b_vals, DType::I32), "b_dtype": "int32", "b_shape": [k, p]}),
        ];
        check_all(&ours, &numpy(&cases));
    }
}

#[test]
fn unary_functions_and_where_match_numpy() {
    let shape = [5usize, 4];
    let chunks = [2usize, 3];
    let n = 20;
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    let ops = [
        UnaryOp::Abs,
        UnaryOp::Negative,
        UnaryOp::Sqrt,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round(0),
        UnaryOp::Round(1),
        UnaryOp::IsNan,
        UnaryOp::LogicalNot,
        UnaryOp::Clip { low: Fill::Float(-1.0), high: Fill::Float(2.0) },
        UnaryOp::Clip { low: Fill::Int(-1), high: Fill::Int(2) },
    ];
    // numpy computes float functions of 8-bit inputs in float16, which rask
    // does not have; those pairs are left out (rask uses float32).
    let float_fns = [UnaryOp::Sqrt, UnaryOp::Exp, UnaryOp::Log, UnaryOp::Sin, UnaryOp::Cos];
    for dtype in DTYPES {
        let values: Vec<f64> =
            data(dtype, n, 2).iter().enumerate().map(|(i, v)| if i % 3 == 0 { v + 0.25 } else { *v }).collect();
        let values: Vec<f64> = if matches!(dtype, DType::F32 | DType::F64) { values } else { data(dtype, n, 2) };
        let x = array_of(dtype, &shape, &values, &chunks);
        for op in ops {
            if float_fns.contains(&op) && matches!(dtype, DType::Bool | DType::I8 | DType::U8) {
                continue;
            }
            // numpy refuses negating booleans and has no clip/round defaults for bool.
            if dtype == DType::Bool
                && matches!(
                    op,
                    UnaryOp::Negative
                        | UnaryOp::Clip { .. }
                        | UnaryOp::Round(_)
                        | UnaryOp::Floor
                        | UnaryOp::Ceil
                        | UnaryOp::Abs
                )
            {
                continue;
            }
            ours.push((format!("{}({dtype}) {op:?}", op.name()), x.map_unary(op).compute().unwrap()));
            let mut case = json!({"op": "unary", "fn": op.name(), "a": json_list(&values, dtype), "dtype": dtype.name(), "shape": shape});
            if let UnaryOp::Round(d) = op {
                case["decimals"] = json!(d);
            }
            if let UnaryOp::Clip { low, high } = op {
                let j = |f: Fill| match f {
                    Fill::Int(i) => json!(i),
                    Fill::Float(x) => json!(x),
                    Fill::Bool(b) => json!(b),
                };
                case["low"] = j(low);
                case["high"] = j(high);
            }
            cases.push(case);
        }
        let other: Vec<f64> = data(DType::F64, n, 4);
        let y = array_of(DType::F64, &shape, &other, &[5, 1]);
        let cond = x.scalar(BinaryOp::Gt, Fill::Int(0)).unwrap();
        ours.push((format!("where({dtype})"), cond.where_(&x, &y).unwrap().compute().unwrap()));
        cases.push(json!({"op": "where", "a": json_list(&values, dtype), "dtype": dtype.name(), "shape": shape,
                          "b": other, "b_dtype": "float64"}));
    }
    let reference = numpy(&cases);
    assert_eq!(reference.len(), ours.len());
    check_all(&ours, &reference);
}

#[test]
fn creation_and_structure_match_numpy() {
    let shape = [6usize, 4, 3];
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let x = array_of(DType::I64, &shape, &values, &[4, 3, 2]);
    let b_shape = [2usize, 4, 3];
    let b_vals: Vec<f64> = (0..24).map(|i| 100.0 + i as f64).collect();
    let b = array_of(DType::I32, &b_shape, &b_vals, &[1, 2, 3]);
    let u = Chunks::Uniform;
    let cases: Vec<(&str, Array)> = vec![
        ("np.linspace(-3.0, 7.5, 11)", Array::linspace(-3.0, 7.5, 11, u(vec![4])).unwrap()),
        ("np.linspace(0.0, 1.0, 7)", Array::linspace(0.0, 1.0, 7, u(vec![3])).unwrap()),
        ("np.eye(5, 7, 2)", Array::eye(5, Some(7), 2, DType::F64, u(vec![2, 3])).unwrap()),
        ("np.eye(4, dtype='int32', k=-1)", Array::eye(4, None, -1, DType::I32, u(vec![3, 3])).unwrap()),
        ("a.reshape(24, 3)", x.reshape(&[24, 3]).unwrap()),
        ("a.reshape(-1, 6)", x.reshape(&[-1, 6]).unwrap()),
        ("a.reshape(8, 9)", x.reshape(&[8, 9]).unwrap()),
        ("a.reshape(3, 2, 12)", x.reshape(&[3, 2, 12]).unwrap()),
        ("a.ravel()", x.ravel().unwrap()),
        ("np.concatenate([a, b], axis=0)", Array::concatenate(&[x.clone(), b.clone()], 0).unwrap()),
        ("np.stack([a, a], axis=1)", Array::stack(&[x.clone(), x.clone()], 1).unwrap()),
        ("np.swapaxes(a, 0, 2)", x.swapaxes(0, 2).unwrap()),
        ("np.moveaxis(a, 0, 2)", x.moveaxis(0, 2).unwrap()),
        ("np.expand_dims(a, 1)", x.expand_dims(1).unwrap()),
        ("np.squeeze(np.expand_dims(a, 3))", x.expand_dims(3).unwrap().squeeze(None).unwrap()),
    ];
    let mut reqs = Vec::new();
    for (expr, _) in &cases {
        reqs.push(
            json!({"op": "expr", "expr": expr, "a": json_list(&values, DType::I64), "dtype": "int64", "shape": shape,
                          "b": json_list(&b_vals, DType::I32), "b_dtype": "int32", "b_shape": b_shape}),
        );
    }
    let reference = numpy(&reqs);
    assert_eq!(reference.len(), cases.len());
    for ((expr, arr), want) in cases.iter().zip(&reference) {
        check(expr, &arr.compute().unwrap(), want);
    }
    assert!(x.reshape(&[5, -1]).unwrap_err().to_string().contains("cannot reshape"));
    assert!(x.squeeze(Some(&[0])).unwrap_err().to_string().contains("size not equal to one"));
}

#[test]
fn npy_files_round_trip_with_numpy() {
    let dir = std::env::temp_dir().join(format!("rask-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shape = [7usize, 5, 3];
    let n: usize = shape.iter().product();
    for dtype in DTYPES {
        let values = data(dtype, n, 1);
        // rask writes (from a multi-axis chunking), numpy reads.
        let x = array_of(dtype, &shape, &values, &[3, 2, 2]);
        let ours = dir.join(format!("rask-{}.npy", dtype.name()));
        x.to_npy(&ours).unwrap();
        assert!(!ours.with_extension("npy.partial").exists());
        let read_back = numpy(&[json!({"op": "expr", "expr": format!("np.load({:?})", ours.to_string_lossy()),
                                        "a": [0], "dtype": "int64", "shape": [1]})]);
        check(&format!("numpy reads rask's {dtype}"), &x.compute().unwrap(), &read_back[0]);
        // numpy writes, rask reads with several chunkings.
        let theirs = dir.join(format!("numpy-{}.npy", dtype.name()));
        numpy(&[json!({"op": "expr", "expr": format!("(np.save({:?}, a), a)[1]", theirs.to_string_lossy()),
                        "a": json_list(&values, dtype), "dtype": dtype.name(), "shape": shape})]);
        for chunks in [vec![7, 5, 3], vec![2, 5, 3], vec![3, 2, 2]] {
            let y = Array::from_npy(&theirs, Chunks::Uniform(chunks.clone())).unwrap();
            assert_eq!(y.dtype(), dtype);
            assert_eq!(y.compute().unwrap(), x.compute().unwrap(), "{dtype} chunks {chunks:?}");
        }
    }
    // Bad files are clear errors.
    let bad = dir.join("bad.npy");
    std::fs::write(&bad, b"not numpy").unwrap();
    assert!(Array::from_npy(&bad, Chunks::Auto).unwrap_err().to_string().contains("magic"));
    let good = std::fs::read(dir.join("rask-float64.npy")).unwrap();
    std::fs::write(&bad, &good[..good.len() - 8]).unwrap();
    assert!(Array::from_npy(&bad, Chunks::Auto).unwrap_err().to_string().contains("data bytes"));
    numpy(&[json!({"op": "expr", "expr": format!("(np.save({:?}, a.astype('>f8')), a)[1]", bad.to_string_lossy()),
                    "a": [1.0, 2.0], "dtype": "float64", "shape": [2]})]);
    assert!(Array::from_npy(&bad, Chunks::Auto).unwrap_err().to_string().contains("not supported"));
    assert!(Array::from_npy(dir.join("missing.npy"), Chunks::Auto).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

rask::op! {
    /// A 3-point sum along axis 0, then along axis 1; edges are copied (the
    /// halo makes them irrelevant after trimming).
    fn box3(x: ndarray::ArrayD<f64>) -> ndarray::ArrayD<f64> {
        let mut y = x.clone();
        for ax in 0..2 {
            let src = y.clone();
            let n = src.shape()[ax];
            for i in 1..n.saturating_sub(1) {
                let s = &src.index_axis(ndarray::Axis(ax), i - 1) + &src.index_axis(ndarray::Axis(ax), i) + &src.index_axis(ndarray::Axis(ax), i + 1);
                y.index_axis_mut(ndarray::Axis(ax), i).assign(&s);
            }
        }
        y
    }
}

#[test]
fn map_overlap_matches_numpy_pad_modes() {
    let shape = [9usize, 7];
    let values: Vec<f64> = (0..63).map(|i| ((i * 5) % 11) as f64 - 3.0).collect();
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (boundary, mode) in [
        (Boundary::Reflect, "mode='symmetric'"),
        (Boundary::Nearest, "mode='edge'"),
        (Boundary::Periodic, "mode='wrap'"),
        (Boundary::Constant(2.5), "mode='constant', constant_values=2.5"),
    ] {
        for chunks in [vec![9, 7], vec![4, 3], vec![2, 5]] {
            let x = array_of(DType::F64, &shape, &values, &chunks);
            let y = x.map_overlap(box3::NAME, rask::core::Params::default(), &[1, 1], boundary, DType::F64).unwrap();
            ours.push((format!("box3 {boundary:?} chunks {chunks:?}"), y.compute().unwrap()));
            cases.push(json!({"op": "expr", "a": values, "dtype": "float64", "shape": shape,
                "expr": format!("(lambda p: (lambda q: q[:, :-2] + q[:, 1:-1] + q[:, 2:])(p[:-2] + p[1:-1] + p[2:]))(np.pad(a, 1, {mode}))")}));
        }
    }
    check_all(&ours, &numpy(&cases));
    // map_blocks applies the op per block.
    let x = array_of(DType::F64, &shape, &values, &[9, 7]);
    let whole = x.map_blocks(box3::NAME, rask::core::Params::default(), DType::F64).compute().unwrap();
    let direct = box3(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), values.clone()).unwrap());
    assert_eq!(whole, ArrayValue::F64(direct.into_shared()));
    // With no halo at the edges, results still do not depend on chunks.
    let none_one = array_of(DType::F64, &shape, &values, &[9, 7])
        .map_overlap(box3::NAME, rask::core::Params::default(), &[1, 1], Boundary::None, DType::F64)
        .unwrap();
    let none_many = array_of(DType::F64, &shape, &values, &[2, 3])
        .map_overlap(box3::NAME, rask::core::Params::default(), &[1, 1], Boundary::None, DType::F64)
        .unwrap();
    assert_eq!(none_one.compute().unwrap(), none_many.compute().unwrap());
}

#[test]
fn broadcasting_between_chunked_arrays_matches_numpy() {
    /// Shapes of a and b, then their chunks.
    type Case<'a> = (&'a [usize], &'a [usize], &'a [usize], &'a [usize]);
    let cases: [Case<'_>; 4] = [
        (&[6, 5], &[5], &[4, 2], &[3]),
        (&[6, 1], &[1, 5], &[2, 1], &[1, 2]),
        (&[4, 1, 3], &[5, 1], &[3, 1, 2], &[2, 1]),
        (&[1], &[3, 4], &[1], &[2, 2]),
    ];
    let mut ours = Vec::new();
    let mut reqs = Vec::new();
    for (sa, sb, ca, cb) in cases {
        let va: Vec<f64> = (0..sa.iter().product::<usize>()).map(|i| i as f64 - 3.0).collect();
        let vb: Vec<f64> = (0..sb.iter().product::<usize>()).map(|i| (i * 2) as f64 + 1.0).collect();
        let a = array_of(DType::I64, sa, &va, ca);
        let b = array_of(DType::F64, sb, &vb, cb);
        for (op, f) in [(BinaryOp::Add, "add"), (BinaryOp::Mul, "multiply"), (BinaryOp::Lt, "less")] {
            ours.push((format!("{f} {sa:?} {sb:?}"), a.apply(op, &b).unwrap().compute().unwrap()));
            reqs.push(json!({"op": "binary", "fn": f, "a": json_list(&va, DType::I64), "dtype": "int64", "shape": sa,
                             "b": vb, "b_dtype": "float64", "b_shape": sb}));
        }
    }
    check_all(&ours, &numpy(&reqs));
    let a = array_of(DType::F64, &[3, 4], &[0.0; 12], &[2, 2]);
    let b = array_of(DType::F64, &[3], &[0.0; 3], &[3]);
    assert!(a.add(&b).unwrap_err().to_string().contains("could not be broadcast"));
    let ints = array_of(DType::I64, &[2], &[2.0, 3.0], &[2]);
    let neg = array_of(DType::I64, &[2], &[1.0, -1.0], &[2]);
    assert!(
        ints.apply(BinaryOp::Pow, &neg).unwrap().compute().unwrap_err().to_string().contains("negative integer powers")
    );
}

#[test]
fn take_bincount_and_unique_match_numpy() {
    let shape = [7usize, 4];
    let values: Vec<f64> = (0..28).map(|i| ((i * 7) % 9) as f64).collect();
    let x = array_of(DType::I64, &shape, &values, &[3, 3]);
    let mut ours = vec![
        ("a[[6, 0, 0, -1, 3, 4]]".to_string(), x.take(&[6, 0, 0, -1, 3, 4], 0).unwrap().compute().unwrap()),
        ("a[:, [3, 1, 2]]".to_string(), x.take(&[3, 1, 2], 1).unwrap().compute().unwrap()),
        ("np.unique(a)".to_string(), x.unique().unwrap().compute().unwrap()),
        ("np.bincount(a.ravel())".to_string(), x.ravel().unwrap().bincount(0).unwrap().compute().unwrap()),
        (
            "np.bincount(a.ravel(), minlength=15)".to_string(),
            x.ravel().unwrap().bincount(15).unwrap().compute().unwrap(),
        ),
    ];
    let mut floats: Vec<f64> = (0..20).map(|i| ((i * 3) % 7) as f64 * 0.5).collect();
    floats[4] = f64::NAN;
    floats[11] = f64::NAN;
    let f = array_of(DType::F64, &[20], &floats, &[6]);
    ours.push(("np.unique(b)".to_string(), f.unique().unwrap().compute().unwrap()));
    let reqs: Vec<Json> = ours
        .iter()
        .map(|(expr, _)| {
            json!({"op": "expr", "expr": expr, "a": json_list(&values, DType::I64), "dtype": "int64", "shape": shape,
                   "b": floats, "b_dtype": "float64", "b_shape": [20]})
        })
        .collect();
    check_all(&ours, &numpy(&reqs));
    assert!(x.take(&[7], 0).unwrap_err().to_string().contains("out of bounds"));
    let neg = array_of(DType::I64, &[3], &[1.0, -2.0, 0.0], &[2]);
    assert!(neg.bincount(0).unwrap().compute().unwrap_err().to_string().contains("negative"));
}

/// A zstd frame of `n` zero bytes, compressed by zarr-python's codec.
fn zstd_frame_of_zeros(n: usize) -> Vec<u8> {
    let out = numpy(&[json!({"op": "expr", "a": [0], "dtype": "int64", "shape": [1],
        "expr": format!("np.frombuffer(__import__('numcodecs').Zstd().encode(bytes({n})), dtype=np.uint8).astype(np.int64)")})]);
    out[0]["values"].as_array().expect("bytes").iter().map(|v| v.as_f64().expect("byte") as u8).collect()
}

#[test]
fn zarr_stores_round_trip_with_zarr_python() {
    use rask_array::zarr::ZarrFormat;
    let dir = std::env::temp_dir().join(format!("rask-zarr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shape = [7usize, 5];
    let n = 35;
    for (format, fmt) in [(ZarrFormat::V2, 2), (ZarrFormat::V3, 3)] {
        for dtype in [DType::Bool, DType::I16, DType::U8, DType::I64, DType::F32, DType::F64] {
            let values = data(dtype, n, 3);
            let x = array_of(dtype, &shape, &values, &[3, 2]);
            // rask writes, zarr-python reads.
            let ours = dir.join(format!("rask-v{fmt}-{}.zarr", dtype.name()));
            x.to_zarr(&ours, format).unwrap();
            let read = numpy(&[json!({"op": "expr", "a": [0], "dtype": "int64", "shape": [1],
                "expr": format!("np.asarray(__import__('zarr').open_array({:?}, mode='r')[...])", ours.to_string_lossy())})]);
            check(&format!("zarr-python reads rask's v{fmt} {dtype}"), &x.compute().unwrap(), &read[0]);
            // zarr-python writes (uncompressed), rask reads.
            let theirs = dir.join(format!("zarr-v{fmt}-{}.zarr", dtype.name()));
            numpy(&[json!({"op": "expr", "a": json_list(&values, dtype), "dtype": dtype.name(), "shape": shape,
                "expr": format!("(lambda z: (z.__setitem__(Ellipsis, a), a)[1])(__import__('zarr').create_array(store={:?}, shape=a.shape, chunks=(4, 3), dtype=a.dtype, compressors=None, zarr_format={fmt}, fill_value=0))", theirs.to_string_lossy())})]);
            let y = Array::from_zarr(&theirs).unwrap();
            assert_eq!(format!("{:?}", y.chunks()), "((4, 3), (3, 2))");
            assert_eq!(y.compute().unwrap(), x.compute().unwrap(), "v{fmt} {dtype}");
        }
    }
    // Compressed chunks both ways: zarr-python's default (zstd), gzip, and
    // zlib (Zarr 2), for an integer and a float dtype.
    use rask_array::zarr::{Compressor, ZarrWriteOptions};
    let cases = [
        (ZarrFormat::V3, 3, "None", Compressor::Zstd { level: 0 }),
        (ZarrFormat::V3, 3, "zarr.codecs.GzipCodec(level=5)", Compressor::Gzip { level: 5 }),
        (ZarrFormat::V2, 2, "None", Compressor::Zstd { level: 0 }),
        (ZarrFormat::V2, 2, "numcodecs.Zlib(level=3)", Compressor::Zlib { level: 3 }),
        (ZarrFormat::V2, 2, "numcodecs.GZip(level=1)", Compressor::Gzip { level: 1 }),
    ];
    for (i, (format, fmt, python_codec, ours_codec)) in cases.into_iter().enumerate() {
        for dtype in [DType::I16, DType::F64] {
            let values = data(dtype, n, 5);
            let x = array_of(dtype, &shape, &values, &[3, 2]);
            // zarr-python writes with its default (None) or the named codec.
            let theirs = dir.join(format!("zarr-c{i}-{}.zarr", dtype.name()));
            let compressors = if python_codec == "None" { "'auto'".to_string() } else { python_codec.to_string() };
            numpy(&[json!({"op": "expr", "a": json_list(&values, dtype), "dtype": dtype.name(), "shape": shape,
                "expr": format!("(lambda zarr, numcodecs: (lambda z: (z.__setitem__(Ellipsis, a), a)[1])(zarr.create_array(store={:?}, shape=a.shape, chunks=(4, 3), dtype=a.dtype, compressors={compressors}, zarr_format={fmt}, fill_value=0)))(__import__('zarr'), __import__('numcodecs'))", theirs.to_string_lossy())})]);
            let y = Array::from_zarr(&theirs).unwrap();
            assert_eq!(y.compute().unwrap(), x.compute().unwrap(), "zarr-python v{fmt} {python_codec} {dtype}");
            // rask writes with the matching codec, zarr-python reads.
            let ours = dir.join(format!("rask-c{i}-{}.zarr", dtype.name()));
            let options = ZarrWriteOptions { format, compressor: ours_codec, ..Default::default() };
            x.to_zarr_with(&ours, &options).unwrap();
            let read = numpy(&[json!({"op": "expr", "a": [0], "dtype": "int64", "shape": [1],
                "expr": format!("np.asarray(__import__('zarr').open_array({:?}, mode='r')[...])", ours.to_string_lossy())})]);
            check(&format!("zarr-python reads rask's v{fmt} {ours_codec:?} {dtype}"), &x.compute().unwrap(), &read[0]);
            assert_eq!(Array::from_zarr(&ours).unwrap().compute().unwrap(), x.compute().unwrap());
        }
    }
    // Blosc with zarr-python's default settings reads (a 16-byte chunk is
    // stored raw inside the Blosc header); blosc_chunks_* test the rest.
    let blosc = dir.join("blosc.zarr");
    numpy(&[json!({"op": "expr", "a": [1.0, 2.0], "dtype": "float64", "shape": [2],
        "expr": format!("(lambda z: (z.__setitem__(Ellipsis, a), a)[1])(__import__('zarr').create_array(store={:?}, shape=a.shape, chunks=(2,), dtype=a.dtype, compressors=__import__('zarr').codecs.BloscCodec()))", blosc.to_string_lossy())})]);
    let two = array_of(DType::F64, &[2], &[1.0, 2.0], &[2]);
    assert_eq!(Array::from_zarr(&blosc).unwrap().compute().unwrap(), two.compute().unwrap());
    // A chunk that inflates past its size is an error, not an allocation.
    let bomb = dir.join("bomb.zarr");
    let small = array_of(DType::U8, &[4], &[1.0, 2.0, 3.0, 4.0], &[4]);
    small.to_zarr(&bomb, ZarrFormat::V3).unwrap();
    let big = zstd_frame_of_zeros(1 << 20);
    std::fs::write(bomb.join("c").join("0"), big).unwrap();
    let err = Array::from_zarr(&bomb).unwrap().compute().unwrap_err().to_string();
    assert!(err.contains("expected 4 bytes"), "{err}");
    assert!(
        Array::from_zarr(dir.join("missing.zarr")).unwrap_err().to_string().contains("neither zarr.json nor .zarray")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs a Python script in the reference interpreter with `args`; returns
/// what it prints.
fn python_script(script: &str, args: &[String]) -> String {
    let out = Command::new(python()).arg("-c").arg(script).args(args).stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "python script failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The Blosc reference data: one chunk of 300 007 elements is larger than
/// any Blosc block c-blosc picks at level 5 (up to 1 MiB), is not a
/// multiple of any block or element count, and the second chunk is a
/// padded edge chunk.
const BLOSC_DATA: &str = r#"
import numpy as np
N, C = 450011, 300007
i = np.arange(N, dtype=np.int64)
# Runs of 16 equal values with sparse noise: compressible by every cname
# with every shuffle, so chunks are really split into blocks and streams.
noise = (i * 2654435761 >> 11) % 5 * (i % 64 == 0)
DATA = {
    "uint8": ((i // 16) % 200 + noise).astype("u1"),
    "int16": ((i // 16) % 20000 - 10000 + noise).astype("i2"),
    "float32": (np.sin(i // 16 / 300.0) * 1000 + noise * 0.25).astype("f4"),
    "float64": np.cos(i // 16 / 200.0) * 1e6 + noise * 0.125,
}
SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
"#;

const BLOSC_DTYPES: [&str; 4] = ["uint8", "int16", "float32", "float64"];
const BLOSC_SHUFFLES: [&str; 3] = ["noshuffle", "shuffle", "bitshuffle"];

/// zarr-python (numcodecs' c-blosc) writes every cname × shuffle × dtype
/// in both formats; rask reads each exactly as numpy holds it.
#[test]
fn blosc_chunks_written_by_zarr_python_read_exactly() {
    let dir = std::env::temp_dir().join(format!("rask-blosc-read-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cnames = ["lz4", "lz4hc", "blosclz", "zstd", "zlib"];
    let script = format!(
        r#"{BLOSC_DATA}
import sys, zarr, numcodecs
d = sys.argv[1]
for name, a in DATA.items():
    np.save(f"{{d}}/{{name}}.npy", a)
for fmt in (2, 3):
    for cname in {cnames:?}:
        for sname, scode in SHUFFLES.items():
            for name, a in DATA.items():
                if fmt == 2:
                    comp = numcodecs.Blosc(cname=cname, clevel=5, shuffle=scode)
                else:
                    comp = zarr.codecs.BloscCodec(cname=cname, clevel=5, shuffle=sname)
                z = zarr.create_array(store=f"{{d}}/v{{fmt}}-{{cname}}-{{sname}}-{{name}}.zarr", shape=a.shape,
                                      chunks=(C,), dtype=a.dtype, compressors=comp, zarr_format=fmt, fill_value=0)
                z[...] = a
"#
    );
    python_script(&script, &[dir.to_string_lossy().to_string()]);
    for dtype in BLOSC_DTYPES {
        let want = Array::from_npy(dir.join(format!("{dtype}.npy")), Chunks::Auto).unwrap().compute().unwrap();
        for fmt in [2, 3] {
            for cname in cnames {
                for shuffle in BLOSC_SHUFFLES {
                    let label = format!("v{fmt}-{cname}-{shuffle}-{dtype}");
                    let store = dir.join(format!("{label}.zarr"));
                    // zarr-python wrote what was asked, in several blocks.
                    let chunk = std::fs::read(store.join(if fmt == 2 { "0" } else { "c/0" })).unwrap();
                    let field = |at: usize| u32::from_le_bytes(chunk[at..at + 4].try_into().unwrap());
                    let code = match cname {
                        "blosclz" => 0,
                        "lz4" | "lz4hc" => 1,
                        "zlib" => 3,
                        _ => 4,
                    };
                    assert_eq!(chunk[2] >> 5, code, "{label}: compressor");
                    let flags = [0, 1, 4][BLOSC_SHUFFLES.iter().position(|s| *s == shuffle).unwrap()];
                    assert_eq!(chunk[2] & 0x07, flags, "{label}: shuffle, and compressed (not stored raw)");
                    assert!(field(4) > field(8), "{label}: one chunk spans several blocks");
                    let got = Array::from_zarr(&store).unwrap();
                    assert_eq!(got.dtype().name(), dtype, "{label}");
                    assert!(got.compute().unwrap() == want, "{label}: values differ from numpy's");
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// rask writes lz4, zstd and zlib × every shuffle × dtype in both formats;
/// zarr-python reads each exactly, and with automatic blocks rask's Blosc
/// header matches numcodecs' own for the same chunk.
#[test]
fn blosc_chunks_written_by_rask_read_in_zarr_python() {
    use rask_array::zarr::{BloscCname, BloscShuffle, Compressor, ZarrFormat, ZarrWriteOptions};
    let dir = std::env::temp_dir().join(format!("rask-blosc-write-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = format!(
        "{BLOSC_DATA}\nimport sys\nfor name, a in DATA.items():\n    np.save(f\"{{sys.argv[1]}}/{{name}}.npy\", a)\n"
    );
    python_script(&data, &[dir.to_string_lossy().to_string()]);
    let mut stores = Vec::new();
    for dtype in BLOSC_DTYPES {
        let x = Array::from_npy(dir.join(format!("{dtype}.npy")), Chunks::Uniform(vec![300_007])).unwrap();
        let want = x.compute().unwrap();
        for (format, fmt) in [(ZarrFormat::V2, 2), (ZarrFormat::V3, 3)] {
            for (cname, name) in [(BloscCname::Lz4, "lz4"), (BloscCname::Zstd, "zstd"), (BloscCname::Zlib, "zlib")] {
                for (s, shuffle) in
                    [BloscShuffle::NoShuffle, BloscShuffle::Byte, BloscShuffle::Bit].into_iter().enumerate()
                {
                    // zstd also tries a forced block size.
                    let blocksize = if cname == BloscCname::Zstd && fmt == 3 { 100_000 } else { 0 };
                    let compressor = Compressor::Blosc { cname, clevel: 5, shuffle, blocksize };
                    let label = format!("v{fmt}-{name}-{}-{dtype}-{blocksize}", BLOSC_SHUFFLES[s]);
                    let store = dir.join(format!("{label}.zarr"));
                    x.to_zarr_with(&store, &ZarrWriteOptions { format, compressor, ..Default::default() }).unwrap();
                    assert!(Array::from_zarr(&store).unwrap().compute().unwrap() == want, "{label}: rask reads back");
                    let chunk = store.join(if fmt == 2 { "0" } else { "c/0" });
                    stores.push(json!({"label": label, "store": store, "chunk": chunk, "dtype": dtype,
                                       "cname": name, "shuffle": s, "blocksize": blocksize}));
                }
            }
        }
    }
    let script = format!(
        r#"{BLOSC_DATA}
import json, sys, zarr, numcodecs
d, stores = sys.argv[1], json.loads(sys.argv[2])
problems = []
for s in stores:
    a = np.load(f"{{d}}/{{s['dtype']}}.npy")
    z = zarr.open_array(s["store"], mode="r")
    got = z[...]
    if got.dtype != a.dtype or not np.array_equal(got, a):
        problems.append(f"{{s['label']}}: zarr-python reads other values")
    theirs = numcodecs.Blosc(cname=s["cname"], clevel=5, shuffle=s["shuffle"], blocksize=s["blocksize"]).encode(a[:C])
    ours = open(s["chunk"], "rb").read()
    # Whether a chunk ends up stored raw (flag 0x02) depends on how well
    # each lz4 implementation compresses; the rest of the header must agree.
    if ours[:2] + bytes([ours[2] & ~2]) + ours[3:12] != theirs[:2] + bytes([theirs[2] & ~2]) + theirs[3:12]:
        problems.append(f"{{s['label']}}: header {{ours[:12].hex()}}, numcodecs writes {{theirs[:12].hex()}}")
    if numcodecs.Blosc().decode(ours) != a[:C].tobytes():
        problems.append(f"{{s['label']}}: numcodecs decodes other bytes")
print(json.dumps(problems))
"#
    );
    let out = python_script(&script, &[dir.to_string_lossy().to_string(), Json::Array(stores).to_string()]);
    let problems: Vec<String> = serde_json::from_str(&out).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    // The read-only cnames are refused before anything is written.
    let x = Array::from_npy(dir.join("uint8.npy"), Chunks::Auto).unwrap();
    for cname in [BloscCname::BloscLz, BloscCname::Lz4Hc] {
        let compressor = Compressor::Blosc { cname, clevel: 5, shuffle: BloscShuffle::Byte, blocksize: 0 };
        let store = dir.join("refused.zarr");
        let err = x.to_zarr_with(&store, &ZarrWriteOptions { compressor, ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("not written"), "{err}");
        assert!(!store.join(".zarray").exists() && !store.join("zarr.json").exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tensordot_and_matmul_match_numpy() {
    let a_vals: Vec<f64> = (0..60).map(|i| ((i * 7) % 13) as f64 - 6.0).collect();
    let b_vals: Vec<f64> = (0..40).map(|i| ((i * 3) % 11) as f64 * 0.5).collect();
    let a = array_of(DType::F64, &[3, 4, 5], &a_vals, &[2, 3, 2]);
    let b = array_of(DType::F64, &[5, 4, 2], &b_vals, &[3, 2, 2]);
    let m = array_of(DType::F64, &[4, 5], &a_vals[..20], &[3, 2]);
    let v = array_of(DType::F64, &[5], &b_vals[..5], &[2]);
    let w = array_of(DType::F64, &[4], &b_vals[..4], &[3]);
    let ours = [
        ("np.tensordot(a, b, axes=([1, 2], [1, 0]))", a.tensordot(&b, &[1, 2], &[1, 0]).unwrap()),
        ("np.tensordot(a, b, axes=([2], [0]))", a.tensordot(&b, &[2], &[0]).unwrap()),
        ("a.ravel()[:20].reshape(4, 5) @ b.ravel()[:5]", m.matmul(&v).unwrap()),
        ("b.ravel()[:4] @ a.ravel()[:20].reshape(4, 5)", w.matmul(&m).unwrap()),
        ("b.ravel()[:5] @ b.ravel()[:5]", v.matmul(&v).unwrap()),
    ];
    // The numpy side rebuilds the same operands from a and b.
    let exprs = [
        "np.tensordot(a, b, axes=([1, 2], [1, 0]))",
        "np.tensordot(a, b, axes=([2], [0]))",
        "a.ravel()[:20].reshape(4, 5) @ b.ravel()[:5]",
        "b.ravel()[:4] @ a.ravel()[:20].reshape(4, 5)",
        "b.ravel()[:5] @ b.ravel()[:5]",
    ];
    let reqs: Vec<Json> = exprs
        .iter()
        .map(|e| {
            json!({"op": "expr", "expr": e, "a": a_vals, "dtype": "float64", "shape": [3, 4, 5],
                        "b": b_vals, "b_dtype": "float64", "b_shape": [5, 4, 2]})
        })
        .collect();
    let results: Vec<(String, ArrayValue)> = ours.iter().map(|(l, x)| (l.to_string(), x.compute().unwrap())).collect();
    check_all(&results, &numpy(&reqs));
    assert!(a.matmul(&b).unwrap_err().to_string().contains("not aligned"));
    assert!(a.tensordot(&b, &[0], &[0]).unwrap_err().to_string().contains("shape-mismatch"));
}

#[test]
fn stacked_matmul_matches_numpy_for_any_chunking() {
    // a: (2, 3, 4), b: (1, 4, 5) broadcasting over the batch axis, c: (4,)
    // and d: (3, 2, 1, 3, 4) for padding and two broadcast axes.
    let a_vals: Vec<f64> = (0..24).map(|i| ((i * 5) % 11) as f64 - 5.0).collect();
    let b_vals: Vec<f64> = (0..20).map(|i| ((i * 3) % 7) as f64 * 0.5).collect();
    let exprs = [
        "a @ b",
        "b.reshape(4, 5).T @ a.transpose(0, 2, 1)",
        "a @ b[0, :, 0]",
        "a[0, 0] @ b",
        "np.tile(a, (3, 1, 1)).reshape(3, 2, 1, 3, 4) @ b",
    ];
    let reqs: Vec<Json> = exprs
        .iter()
        .map(|e| {
            json!({"op": "expr", "expr": e, "a": a_vals, "dtype": "float64", "shape": [2, 3, 4],
                   "b": b_vals, "b_dtype": "float64", "b_shape": [1, 4, 5]})
        })
        .collect();
    let want = numpy(&reqs);
    for (ca, cb) in [(vec![1, 3, 4], vec![1, 4, 5]), (vec![2, 2, 3], vec![1, 3, 2]), (vec![1, 1, 1], vec![1, 1, 1])] {
        let a = array_of(DType::F64, &[2, 3, 4], &a_vals, &ca);
        let b = array_of(DType::F64, &[1, 4, 5], &b_vals, &cb);
        let bt = b.reshape(&[4, 5]).unwrap().transpose(&[1, 0]).unwrap();
        let col = b.slice(&[Index::At(0), Index::ALL, Index::At(0)]).unwrap();
        let row = a.slice(&[Index::At(0), Index::At(0), Index::ALL]).unwrap();
        let tiled =
            Array::concatenate(&[a.clone(), a.clone(), a.clone()], 0).unwrap().reshape(&[3, 2, 1, 3, 4]).unwrap();
        let ours = [
            a.matmul(&b).unwrap(),
            bt.matmul(&a.transpose(&[0, 2, 1]).unwrap()).unwrap(),
            a.matmul(&col).unwrap(),
            row.matmul(&b).unwrap(),
            tiled.matmul(&b).unwrap(),
        ];
        let results: Vec<(String, ArrayValue)> =
            ours.iter().zip(exprs).map(|(x, e)| (format!("{e} chunked {ca:?} {cb:?}"), x.compute().unwrap())).collect();
        check_all(&results, &want);
    }
    let a = array_of(DType::F64, &[2, 3, 4], &a_vals, &[1, 3, 4]);
    let bad = array_of(DType::F64, &[3, 4, 2], &a_vals, &[1, 4, 2]);
    assert!(a.matmul(&bad).unwrap_err().to_string().contains("do not broadcast"));
    let wrong_k = array_of(DType::F64, &[2, 3, 4], &a_vals, &[1, 3, 4]);
    assert!(a.matmul(&wrong_k).unwrap_err().to_string().contains("not aligned"));
}

#[test]
fn astype_matches_numpy() {
    let shape = [10usize];
    let values: Vec<f64> = vec![0.0, 1.7, 2.5, 3.9, 100.2, 250.0, 7.0, 0.4, 65.5, 12.0];
    let x = array_of(DType::F64, &shape, &values, &[4]);
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for to in DTYPES {
        ours.push((format!("astype({to})"), x.astype(to).compute().unwrap()));
        cases.push(json!({"op": "astype", "a": values, "dtype": "float64", "shape": shape, "to": to.name()}));
    }
    check_all(&ours, &numpy(&cases));
}
