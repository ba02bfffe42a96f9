//! Filters give bit-identical results whatever the chunking: random shapes,
//! random chunk shapes (down to one element, far smaller than the halo),
//! every mode, against the same filter on one block.
#![allow(clippy::unwrap_used)] // proptest bodies: a failure names the case

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use rask::core::{ArrayValue, DType};
use rask_array::{Array, Chunks};
use rask_image::{FilterOptions, Kernel, Mode, filters};

fn modes() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Reflect), Just(Mode::Nearest), Just(Mode::Mirror), Just(Mode::Constant), Just(Mode::Wrap)]
}

/// A shape of 1-3 axes, chunk sizes for it, and values.
fn case() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Vec<u16>)> {
    prop::collection::vec(1usize..12, 1..=3).prop_flat_map(|shape| {
        let n: usize = shape.iter().product();
        let chunks = shape.iter().map(|&s| 1..=s).collect::<Vec<_>>();
        (Just(shape), chunks, prop::collection::vec(any::<u16>(), n))
    })
}

fn run(
    filter: &dyn Fn(&Array) -> Array,
    shape: &[usize],
    chunks: &[usize],
    values: &[u16],
    dtype: DType,
) -> (ArrayValue, ArrayValue) {
    let a = ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap();
    let whole = Array::from_ndarray(&a, Chunks::Uniform(shape.to_vec())).unwrap().astype(dtype);
    let split = Array::from_ndarray(&a, Chunks::Uniform(chunks.to_vec())).unwrap().astype(dtype);
    (filter(&whole).compute().unwrap(), filter(&split).compute().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn gaussian_is_chunk_invariant((shape, chunks, values) in case(), mode in modes(), sigma in 0.0f64..3.0, f32_data in any::<bool>()) {
        let o = FilterOptions { mode: mode.into(), cval: 3.0, output: None };
        let dtype = if f32_data { DType::F32 } else { DType::U16 };
        let (whole, split) = run(&|x| rask_image::gaussian_filter(x, &[sigma], &o).unwrap(), &shape, &chunks, &values, dtype);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn size_filters_are_chunk_invariant((shape, chunks, values) in case(), mode in modes(), size in 1usize..6, which in 0usize..4) {
        let o = FilterOptions { mode: mode.into(), cval: 7.0, output: None };
        let f = |x: &Array| match which {
            0 => filters::uniform_filter(x, &[size], &o).unwrap(),
            1 => filters::minimum_filter(x, &[size], &o).unwrap(),
            2 => filters::maximum_filter(x, &[size], &o).unwrap(),
            _ => filters::median_filter(x, &[size], &o).unwrap(),
        };
        let (whole, split) = run(&f, &shape, &chunks, &values, DType::F64);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn edge_and_kernel_filters_are_chunk_invariant((shape, chunks, values) in case(), mode in modes(), which in 0usize..5) {
        let o = FilterOptions { mode: mode.into(), cval: 1.0, output: None };
        let nd = shape.len();
        let kshape: Vec<usize> = (0..nd).map(|a| 2 + a % 2).collect();
        let n: usize = kshape.iter().product();
        let kernel = Kernel::new((0..n).map(|i| i as f64 - 1.5).collect(), kshape).unwrap();
        let f = |x: &Array| match which {
            0 => filters::sobel(x, -1, &o).unwrap(),
            1 => filters::laplace(x, &o).unwrap(),
            2 => filters::gaussian_gradient_magnitude(x, &[1.1], &o).unwrap(),
            3 => filters::convolve(x, &kernel, &[], &o).unwrap(),
            _ => filters::correlate(x, &kernel, &[], &o).unwrap(),
        };
        let (whole, split) = run(&f, &shape, &chunks, &values, DType::I32);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn footprint_rank_filters_are_chunk_invariant((shape, chunks, values) in case(), mode in modes(), bits in any::<u32>(), percentile in -100.0f64..=100.0) {
        let o = FilterOptions { mode: mode.into(), cval: 2.0, output: None };
        let nd = shape.len();
        let fshape: Vec<usize> = (0..nd).map(|a| 3 - a % 2).collect();
        let n: usize = fshape.iter().product();
        // A random footprint with at least its first element set.
        let mask: Vec<bool> = (0..n).map(|i| i == 0 || bits >> (i % 32) & 1 == 1).collect();
        let fp = filters::Footprint::Mask { mask, shape: fshape };
        let f = |x: &Array| filters::percentile_filter(x, percentile, &fp, &[], &o).unwrap();
        let (whole, split) = run(&f, &shape, &chunks, &values, DType::U16);
        prop_assert_eq!(whole, split);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Labels: the same count and the same numbering for any chunking.
    #[test]
    fn label_is_chunk_invariant((shape, chunks, values) in case(), connectivity in 1usize..=3) {
        let connectivity = connectivity.min(shape.len());
        let fg: Vec<u16> = values.iter().map(|v| u16::from(v % 3 == 0)).collect();
        let a = ArrayD::from_shape_vec(IxDyn(&shape), fg).unwrap();
        let whole = Array::from_ndarray(&a, Chunks::Uniform(shape.clone())).unwrap();
        let split = Array::from_ndarray(&a, Chunks::Uniform(chunks.clone())).unwrap();
        let (lw, cw) = rask_image::measure::label(&whole, connectivity).unwrap();
        let (ls, cs) = rask_image::measure::label(&split, connectivity).unwrap();
        prop_assert_eq!(cw.compute_scalar::<i64>().unwrap(), cs.compute_scalar::<i64>().unwrap());
        let (ArrayValue::I32(x), ArrayValue::I32(y)) = (lw.compute().unwrap(), ls.compute().unwrap()) else { unreachable!() };
        // The same numbers, not only the same regions (numbered in scan order).
        prop_assert_eq!(x, y);
    }
}

/// One mode per axis of a shape of `ndim` axes.
fn per_axis_modes(ndim: usize) -> impl Strategy<Value = Vec<Mode>> {
    prop::collection::vec(modes(), ndim)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Per-axis modes (`wrap` next to others included): the same bits for
    /// any chunking, for every filter that takes a sequence of modes.
    #[test]
    fn per_axis_modes_are_chunk_invariant(
        (shape, chunks, values, modes) in case().prop_flat_map(|(s, c, v)| {
            let nd = s.len();
            (Just(s), Just(c), Just(v), per_axis_modes(nd))
        }),
        which in 0usize..9,
        sigma in 0.3f64..2.5,
        size in 1usize..6,
        f32_data in any::<bool>(),
    ) {
        let o = FilterOptions::modes(modes).with_cval(5.0);
        let f = |x: &Array| match which {
            0 => rask_image::gaussian_filter(x, &[sigma], &o).unwrap(),
            1 => rask_image::gaussian_filter_order(x, &[sigma], &[1], 4.0, &o).unwrap(),
            2 => filters::uniform_filter(x, &[size], &o).unwrap(),
            3 => filters::minimum_filter(x, &[size], &o).unwrap(),
            4 => filters::maximum_filter(x, &[size], &o).unwrap(),
            5 => filters::sobel(x, 0, &o).unwrap(),
            6 => filters::laplace(x, &o).unwrap(),
            7 => filters::gaussian_gradient_magnitude(x, &[sigma], &o).unwrap(),
            _ => filters::gaussian_laplace(x, &[sigma], &o).unwrap(),
        };
        let dtype = if f32_data { DType::F32 } else { DType::U16 };
        let (whole, split) = run(&f, &shape, &chunks, &values, dtype);
        prop_assert_eq!(whole, split);
    }
}

/// Blocks big enough for the column-tiled kernel, split along the first
/// axis (the halo slabs are then never computed, only the kept ones) and
/// along the others (their halo is cut off the result): every mode, uint16
/// and float32, bit-identical to one block.
#[test]
fn big_blocks_are_chunk_invariant() {
    let shape = [30usize, 250, 262];
    let n: usize = shape.iter().product();
    let values: Vec<u16> = (0..n).map(|i| ((i * 7919 + i / 977) % 65521) as u16).collect();
    for mode in [Mode::Reflect, Mode::Nearest, Mode::Mirror, Mode::Constant, Mode::Wrap] {
        for dtype in [DType::U16, DType::F32] {
            let o = FilterOptions { mode: mode.into(), cval: 3.0, output: None };
            let gauss = |x: &Array| rask_image::gaussian_filter(x, &[2.0], &o).unwrap();
            for chunks in [[11, 250, 262], [30, 240, 262]] {
                let (whole, split) = run(&gauss, &shape, &chunks, &values, dtype);
                assert!(whole == split, "{mode:?} {dtype:?} chunks {chunks:?} differ");
            }
        }
    }
}
