//! Arrays against plain ndarray computations: for random shapes and random
//! chunkings the chunked result must equal the in-memory one.
#![allow(clippy::panic, clippy::unwrap_used)] // test helpers fail loudly on a wrong dtype

use ndarray::{ArrayD, Axis, IxDyn};
use proptest::prelude::*;
use rask::core::{ArrayValue, DType};
use rask_array::{Array, BinaryOp, Chunks, Fill, Index, Reduction};

fn f64s(a: ArrayValue) -> ArrayD<f64> {
    match rask_array::dtype::cast(&a, DType::F64) {
        ArrayValue::F64(x) => x.into_owned(),
        _ => unreachable!(),
    }
}

fn i64s(a: ArrayValue) -> ArrayD<i64> {
    match a {
        ArrayValue::I64(x) => x.into_owned(),
        other => panic!("expected int64, got {}", other.dtype()),
    }
}

/// A shape of 1-3 axes and, per axis, a block size.
fn shape_and_chunks() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    proptest::collection::vec(1usize..12, 1..4).prop_flat_map(|shape| {
        let blocks = shape.iter().map(|&n| 1..=n).collect::<Vec<_>>();
        (Just(shape), blocks)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_values_do_not_depend_on_chunks((shape, block) in shape_and_chunks(), seed in 0u64..1000) {
        let one = Array::randint(0, 100, &shape, seed, Chunks::Uniform(shape.clone())).unwrap().compute().unwrap();
        let many = Array::randint(0, 100, &shape, seed, Chunks::Uniform(block.clone())).unwrap().compute().unwrap();
        prop_assert_eq!(one, many);
        let u1 = Array::random_normal(9.0, 1.0, &shape, seed, Chunks::Uniform(shape.clone())).unwrap().compute().unwrap();
        let u2 = Array::random_normal(9.0, 1.0, &shape, seed, Chunks::Uniform(block)).unwrap().compute().unwrap();
        prop_assert_eq!(u1, u2);
    }

    #[test]
    fn reductions_equal_ndarray((shape, block) in shape_and_chunks(), seed in 0u64..1000, split_every in 2usize..5, keepdims: bool) {
        let x = Array::randint(-50, 50, &shape, seed, Chunks::Uniform(block)).unwrap();
        let whole = i64s(x.compute().unwrap());
        // Reduce over every single axis and over all axes.
        for axis in 0..shape.len() {
            let got = i64s(x.reduce(Reduction::Sum, Some(&[axis]), keepdims, split_every).unwrap().compute().unwrap());
            let mut want = whole.sum_axis(Axis(axis));
            if keepdims { want = want.insert_axis(Axis(axis)); }
            prop_assert_eq!(got, want);
            let got = i64s(x.reduce(Reduction::Max, Some(&[axis]), keepdims, split_every).unwrap().compute().unwrap());
            let mut want = whole.fold_axis(Axis(axis), i64::MIN, |a, b| *a.max(b));
            if keepdims { want = want.insert_axis(Axis(axis)); }
            prop_assert_eq!(got, want);
        }
        let total: i64 = x.reduce(Reduction::Sum, None, false, split_every).unwrap().compute_scalar().unwrap();
        prop_assert_eq!(total, whole.sum());
        let mean: f64 = x.reduce(Reduction::Mean, None, false, split_every).unwrap().compute_scalar().unwrap();
        let want = whole.iter().map(|&v| v as f64).sum::<f64>() / whole.len() as f64;
        prop_assert!((mean - want).abs() <= 1e-12 * want.abs().max(1.0), "{} vs {}", mean, want);
        let min: i64 = x.min().unwrap().compute_scalar().unwrap();
        prop_assert_eq!(min, *whole.iter().min().unwrap());
        // Variance from merged per-block moments equals the two-pass formula.
        let var: f64 = x.reduce(Reduction::Var { ddof: 0 }, None, false, split_every).unwrap().compute_scalar().unwrap();
        let two_pass = whole.iter().map(|&v| (v as f64 - want) * (v as f64 - want)).sum::<f64>() / whole.len() as f64;
        prop_assert!((var - two_pass).abs() <= 1e-9 * two_pass.max(1.0), "{} vs {}", var, two_pass);
    }

    #[test]
    fn elementwise_equals_ndarray((shape, block) in shape_and_chunks(), seed in 0u64..1000) {
        let x = Array::random_uniform(&shape, seed, Chunks::Uniform(block.clone())).unwrap();
        let y = Array::random_uniform(&shape, seed + 1, Chunks::Uniform(block)).unwrap();
        let (xa, ya) = (f64s(x.compute().unwrap()), f64s(y.compute().unwrap()));
        prop_assert_eq!(f64s(x.add(&y).unwrap().compute().unwrap()), &xa + &ya);
        prop_assert_eq!(f64s(x.mul(&y).unwrap().compute().unwrap()), &xa * &ya);
        prop_assert_eq!(f64s(x.scalar(BinaryOp::Mul, Fill::Int(10)).unwrap().compute().unwrap()), &xa * 10.0);
        prop_assert_eq!(f64s(x.rscalar(BinaryOp::Sub, Fill::Float(1.0)).unwrap().compute().unwrap()), xa.mapv(|v| 1.0 - v));
        let mask = x.lt(&y).unwrap();
        prop_assert_eq!(mask.dtype(), DType::Bool);
        let m = match mask.compute().unwrap() { ArrayValue::Bool(m) => m.into_owned(), _ => unreachable!() };
        prop_assert_eq!(m, ndarray::Zip::from(&xa).and(&ya).map_collect(|a, b| a < b));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn mask_and_histogram_do_not_depend_on_chunks((shape, block) in shape_and_chunks(), seed in 0u64..1000) {
        let x = Array::random_normal(9.0, 1.0, &shape, seed, Chunks::Uniform(block.clone())).unwrap();
        let ones = Array::ones(&shape, DType::F64, Chunks::Uniform(block)).unwrap();
        let added = x.add(&ones).unwrap();
        let masked = added.mask(&added.scalar(BinaryOp::Lt, Fill::Float(10.0)).unwrap()).unwrap();
        prop_assert!(masked.shape()[0].is_none(), "mask results have unknown chunk sizes");
        let whole = f64s(added.compute().unwrap());
        let want: Vec<f64> = whole.iter().copied().filter(|v| *v < 10.0).collect();
        let got = f64s(masked.compute().unwrap()).into_raw_vec_and_offset().0;
        prop_assert_eq!(&got, &want);
        let sized = masked.compute_chunk_sizes().unwrap();
        prop_assert_eq!(sized.shape(), vec![Some(want.len())]);
        let (counts, _) = masked.histogram(10, (7.0, 11.0)).unwrap();
        let c = i64s(counts.compute().unwrap());
        let single = Array::from_ndarray(&ArrayD::from_shape_vec(IxDyn(&[want.len()]), want.clone()).unwrap(), Chunks::Auto).unwrap();
        let (c1, _) = single.histogram(10, (7.0, 11.0)).unwrap();
        prop_assert_eq!(c, i64s(c1.compute().unwrap()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn slicing_transpose_rechunk_do_not_depend_on_chunks(
        (shape, block) in shape_and_chunks(),
        starts in proptest::collection::vec(-12isize..12, 3),
        stops in proptest::collection::vec(proptest::option::of(-12isize..12), 3),
        steps in proptest::collection::vec(prop::sample::select(vec![-3isize, -2, -1, 1, 2, 3]), 3),
        new_block in proptest::collection::vec(1usize..6, 3),
    ) {
        let x = Array::randint(0, 1000, &shape, 9, Chunks::Uniform(block)).unwrap();
        let one = Array::randint(0, 1000, &shape, 9, Chunks::Uniform(shape.clone())).unwrap();
        let index: Vec<Index> = (0..shape.len()).map(|i| Index::range(Some(starts[i]), stops[i], steps[i])).collect();
        prop_assert_eq!(x.slice(&index).unwrap().compute().unwrap(), one.slice(&index).unwrap().compute().unwrap());
        prop_assert_eq!(x.t().compute().unwrap(), one.t().compute().unwrap());
        prop_assert_eq!(x.ravel().unwrap().compute().unwrap(), one.ravel().unwrap().compute().unwrap());
        let rows = shape[0] as isize;
        prop_assert_eq!(x.reshape(&[rows, -1]).unwrap().compute().unwrap(), one.reshape(&[rows, -1]).unwrap().compute().unwrap());
        let nb: Vec<usize> = new_block[..shape.len()].to_vec();
        let r = x.rechunk(Chunks::Uniform(nb)).unwrap();
        prop_assert_eq!(r.compute().unwrap(), one.compute().unwrap());
    }
}

#[test]
fn tutorial_randint_summary_and_mean() {
    let x = Array::randint(0, 100, &[10000, 1000, 100], 42, Chunks::Auto).unwrap();
    let text = x.to_string();
    assert!(text.contains("7.45 GiB"), "{text}");
    assert!(text.contains("(10000, 1000, 100)"), "{text}");
    assert!(text.contains("int64"), "{text}");
    assert!(text.contains(&format!("{} chunks", x.npartitions())), "{text}");
    // The mean of a small slice of the same generator is about 49.5; the
    // full 8 GB mean runs in `rask demo array` and the benchmark.
    let small = Array::randint(0, 100, &[200, 100, 50], 42, Chunks::Uniform(vec![50, 100, 50])).unwrap();
    let mean: f64 = small.mean().unwrap().compute_scalar().unwrap();
    assert!((mean - 49.5).abs() < 0.2, "{mean}");
}

#[test]
fn creation_functions_match_numpy_semantics() {
    let a = Array::arange(Fill::Int(3), Fill::Int(20), Fill::Int(4), Chunks::Uniform(vec![2])).unwrap();
    assert_eq!(a.dtype(), DType::I64);
    assert_eq!(i64s(a.compute().unwrap()).into_raw_vec_and_offset().0, vec![3, 7, 11, 15, 19]);
    let f = Array::arange(Fill::Float(0.0), Fill::Float(1.0), Fill::Float(0.25), Chunks::Auto).unwrap();
    assert_eq!(f64s(f.compute().unwrap()).into_raw_vec_and_offset().0, vec![0.0, 0.25, 0.5, 0.75]);
    let z = Array::zeros(&[3, 4], DType::F32, Chunks::Uniform(vec![2, 2])).unwrap();
    assert_eq!(z.compute().unwrap(), ArrayValue::F32(ArrayD::zeros(IxDyn(&[3, 4])).into_shared()));
    let o = Array::ones(&[5], DType::U8, Chunks::Auto).unwrap();
    let ten_max: u64 = o.scalar(BinaryOp::Mul, Fill::Int(10)).unwrap().max().unwrap().compute_scalar().unwrap();
    assert_eq!(ten_max, 10);
    let data = ArrayD::from_shape_fn(IxDyn(&[4, 6]), |ix| (ix[0] * 6 + ix[1]) as i32);
    let d = Array::from_ndarray(&data, Chunks::Uniform(vec![3, 4])).unwrap();
    assert_eq!(d.compute().unwrap(), ArrayValue::I32(data.clone().into_shared()));
    let s: i64 = d.sum().unwrap().compute_scalar().unwrap();
    assert_eq!(s, (0..24).sum::<i64>());
}

#[test]
fn bad_input_is_a_clear_error() {
    assert!(
        Array::randint(5, 5, &[3], 0, Chunks::Auto).unwrap_err().to_string().contains("low 5 must be below high 5")
    );
    let a = Array::zeros(&[4], DType::F64, Chunks::Uniform(vec![2])).unwrap();
    let b = Array::zeros(&[4], DType::F64, Chunks::Uniform(vec![3])).unwrap();
    // Different chunkings are unified by rechunking the second operand.
    let sum = a.add(&b.scalar(BinaryOp::Add, Fill::Int(2)).unwrap()).unwrap();
    assert_eq!(sum.chunks(), a.chunks());
    assert_eq!(f64s(sum.compute().unwrap()).into_raw_vec_and_offset().0, vec![2.0; 4]);
    let c = Array::zeros(&[5], DType::F64, Chunks::Auto).unwrap();
    assert!(a.add(&c).unwrap_err().to_string().contains("shapes"));
    assert!(a.reduce(Reduction::Sum, Some(&[3]), false, 4).unwrap_err().to_string().contains("out of bounds"));
    assert!(Array::arange(Fill::Int(0), Fill::Int(3), Fill::Int(0), Chunks::Auto).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `x op full(v)` becomes `x op v` when that gives the same dtype; the
    /// values must be those of the blockwise operation with the constant
    /// array built out (here: rechunked, which hides that it is constant).
    #[test]
    fn operations_with_constant_arrays_match_the_blockwise_result(
        (shape, block) in shape_and_chunks(),
        op in prop::sample::select(vec![
            BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Lt, BinaryOp::Eq,
            BinaryOp::Max, BinaryOp::FloorDiv, BinaryOp::Mod, BinaryOp::Pow, BinaryOp::LogicalAnd,
        ]),
        x_dtype in prop::sample::select(vec![DType::F64, DType::F32, DType::I32, DType::U8, DType::Bool]),
        c_dtype in prop::sample::select(vec![DType::F64, DType::F32, DType::I64, DType::U8, DType::Bool]),
        value in prop::sample::select(vec![Fill::Int(1), Fill::Int(0), Fill::Int(-3), Fill::Int(300), Fill::Float(0.5), Fill::Float(2.0), Fill::Bool(true)]),
        constant_first in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let x = Array::random_uniform(&shape, seed, Chunks::Uniform(block.clone()))
            .unwrap()
            .scalar(BinaryOp::Mul, Fill::Float(20.0))
            .unwrap()
            .scalar(BinaryOp::Sub, Fill::Float(5.0))
            .unwrap()
            .astype(x_dtype);
        let constant = Array::full(&shape, value, c_dtype, Chunks::Uniform(block.clone())).unwrap();
        let halves: Vec<usize> = shape.iter().map(|n| n.div_ceil(2)).collect();
        let hidden = constant.rechunk(Chunks::Uniform(if halves == block { shape.clone() } else { halves })).unwrap();
        let (folded, blockwise) = if constant_first {
            (constant.apply(op, &x).unwrap(), hidden.apply(op, &x).unwrap())
        } else {
            (x.apply(op, &constant).unwrap(), x.apply(op, &hidden).unwrap())
        };
        prop_assert_eq!(folded.dtype(), blockwise.dtype());
        let (a, b) = match (folded.compute(), blockwise.compute()) {
            (Ok(a), Ok(b)) => (f64s(a), f64s(b)),
            // e.g. integers to negative integer powers: an error either way.
            (Err(_), Err(_)) => return Ok(()),
            (a, b) => return Err(TestCaseError::fail(format!("{op:?} {x_dtype} with {value:?} as {c_dtype}: {a:?} vs {b:?}"))),
        };
        prop_assert_eq!(a.shape(), b.shape());
        for (p, q) in a.iter().zip(b.iter()) {
            prop_assert!(p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()), "{p} != {q} for {op:?} {x_dtype} with {value:?} as {c_dtype}");
        }
    }
}

#[test]
fn adding_ones_needs_no_ones_blocks() {
    let x = Array::random_normal(9.0, 1.0, &[40, 30], 1, Chunks::Uniform(vec![10, 10])).unwrap();
    let ones = Array::ones(&[40, 30], DType::F64, Chunks::Uniform(vec![10, 10])).unwrap();
    let added = x.add(&ones).unwrap();
    assert_eq!(added.task_count(), x.task_count() + x.npartitions(), "the ones blocks are not in the graph");
    let want = f64s(x.compute().unwrap()).mapv(|v| v + 1.0);
    assert_eq!(f64s(added.compute().unwrap()), want);
    // Where the scalar would change the dtype the blockwise form stays:
    // uint8 + float32 0.5 is float32, uint8 + the Python float 0.5 float64.
    let bytes = x.astype(DType::U8);
    let half = Array::full(&[40, 30], Fill::Float(0.5), DType::F32, Chunks::Uniform(vec![10, 10])).unwrap();
    let mixed = bytes.apply(BinaryOp::Add, &half).unwrap();
    assert_eq!(mixed.dtype(), DType::F32);
    assert_eq!(mixed.task_count(), bytes.task_count() + 2 * bytes.npartitions(), "the constant blocks are tasks");
    let want = f64s(bytes.compute().unwrap()).mapv(|v| v + 0.5);
    assert_eq!(f64s(mixed.compute().unwrap()), want);
    // A constant first operand: the result keeps its chunks.
    let by_rows = Array::random_uniform(&[40, 30], 2, Chunks::Uniform(vec![40, 5])).unwrap();
    let lhs = ones.apply(BinaryOp::Sub, &by_rows).unwrap();
    assert_eq!(lhs.chunks(), ones.chunks());
    assert_eq!(f64s(lhs.compute().unwrap()), f64s(by_rows.compute().unwrap()).mapv(|v| 1.0 - v));
}

/// Shape errors print shapes as numpy does, never Rust's `Some(..)`.
#[test]
fn shape_errors_print_shapes_as_numpy() {
    let a = Array::from_ndarray(&ndarray::ArrayD::<f64>::zeros(ndarray::IxDyn(&[3, 4])), Chunks::Uniform(vec![2, 2]))
        .unwrap();
    let b =
        Array::from_ndarray(&ndarray::ArrayD::<f64>::zeros(ndarray::IxDyn(&[5])), Chunks::Uniform(vec![2])).unwrap();
    let e = a.add(&b).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("shapes (3, 4) (5,)"), "{e}");
    let e = a.dot(&a).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("shapes (3, 4) and (3, 4) are not aligned"), "{e}");
    let e = a.matmul(&b).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!e.is_empty() && !e.contains("Some("), "{e}");
}

/// MIN // -1 and MIN % -1 wrap as numpy's (MIN and 0) instead of
/// panicking the task (Rust's `%` overflows there).
#[test]
fn integer_min_floor_divided_by_minus_one_wraps_as_numpy() {
    let a = Array::from_ndarray(&ndarray::arr1(&[i64::MIN, 7]).into_dyn(), Chunks::Uniform(vec![1])).unwrap();
    let minus_one = Array::full(&[2], Fill::Int(-1), DType::I64, Chunks::Uniform(vec![2])).unwrap();
    let minus_one = minus_one.add(&Array::zeros(&[2], DType::I64, Chunks::Uniform(vec![1])).unwrap()).unwrap();
    let q = a.apply(BinaryOp::FloorDiv, &minus_one).unwrap().compute().unwrap();
    assert_eq!(q, ArrayValue::I64(ndarray::arr1(&[i64::MIN, -7]).into_dyn().into_shared()));
    let r = a.apply(BinaryOp::Mod, &minus_one).unwrap().compute().unwrap();
    assert_eq!(r, ArrayValue::I64(ndarray::arr1(&[0, 0]).into_dyn().into_shared()));
}
