//! The same images through rask-image and scipy.ndimage / scikit-image must
//! give the same numbers and dtypes. Python comes from PyPI, in the
//! virtualenv `scripts/setup.sh` makes (`~/.cache/rask/pyref`, or
//! `$RASK_PYREF`); the tests fail if it is missing.
//!
//! Tolerances: integer results must match exactly (rask-image reproduces
//! scipy's summation order and its C casts). float64 results within 1e-12 and
//! float32 within 1e-5 of the largest reference magnitude (scipy filters
//! float32 in double precision, rask-image in single).
//!
//! Every case runs on a chunked array whose chunks are smaller than the
//! filter's reach, so halos span several blocks.
#![allow(clippy::panic, clippy::unwrap_used)] // test helpers fail loudly, naming the case

use std::io::Write;
use std::process::{Command, Stdio};

use ndarray::{ArrayD, IxDyn};
use rask::core::{ArrayValue, DType};
use rask_array::{Array, Chunks};
use rask_image::{FilterOptions, Kernel, Mode, Modes, filters, skimage};
use serde_json::{Value as Json, json};

const DTYPES: [DType; 5] = [DType::U8, DType::U16, DType::I32, DType::F32, DType::F64];
const MODES: [Mode; 5] = [Mode::Reflect, Mode::Nearest, Mode::Mirror, Mode::Constant, Mode::Wrap];

fn python() -> String {
    let default = format!("{}/.cache/rask/pyref/bin/python", std::env::var("HOME").unwrap_or_default());
    let py = std::env::var("RASK_PYREF").map(|d| format!("{d}/bin/python")).unwrap_or(default);
    assert!(
        std::path::Path::new(&py).exists(),
        "scipy reference interpreter {py} is missing: run scripts/setup.sh (the test command does)"
    );
    py
}

fn reference(cases: &[Json]) -> Vec<Json> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/ndimage_ref.py");
    let mut child =
        Command::new(python()).arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start python");
    child.stdin.take().unwrap().write_all(serde_json::to_string(cases).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "scipy reference script failed");
    let results: Vec<Json> = serde_json::from_slice(&out.stdout).expect("reference output is JSON");
    assert_eq!(results.len(), cases.len(), "one reference result per case");
    results
}

/// Deterministic test values over most of each dtype's range.
fn data(dtype: DType, n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            match dtype {
                DType::U8 => (u * 256.0).floor(),
                DType::U16 => (u * 65536.0).floor(),
                DType::I32 => (u * 20001.0).floor() - 10000.0,
                DType::F32 => f64::from(((u - 0.3) * 100.0) as f32),
                _ => (u - 0.3) * 100.0,
            }
        })
        .collect()
}

fn json_list(values: &[f64], dtype: DType) -> Json {
    match dtype {
        DType::F32 | DType::F64 => json!(values),
        _ => json!(values.iter().map(|v| *v as i64).collect::<Vec<_>>()),
    }
}

fn image(dtype: DType, shape: &[usize], values: &[f64], chunks: &[usize]) -> Array {
    let a = ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap();
    Array::from_ndarray(&a, Chunks::Uniform(chunks.to_vec())).unwrap().astype(dtype)
}

fn flat(a: &ArrayValue) -> Vec<f64> {
    let ArrayValue::F64(x) = rask_array::dtype::cast(a, DType::F64) else { unreachable!() };
    x.iter().copied().collect()
}

/// One case: our result and what to ask Python.
struct Case {
    label: String,
    ours: ArrayValue,
    ask: Json,
}

struct Input {
    dtype: DType,
    shape: Vec<usize>,
    values: Vec<f64>,
    array: Array,
}

fn input(dtype: DType, shape: &[usize], chunks: &[usize], seed: u64) -> Input {
    let n = shape.iter().product();
    let values = data(dtype, n, seed);
    let array = image(dtype, shape, &values, chunks);
    Input { dtype, shape: shape.to_vec(), values, array }
}

fn ask(inp: &Input, func: &str, kwargs: Json) -> Json {
    json!({"fn": func, "dtype": inp.dtype.name(), "shape": inp.shape, "a": json_list(&inp.values, inp.dtype), "kwargs": kwargs})
}

fn mode_kwargs(options: &FilterOptions) -> serde_json::Map<String, Json> {
    let mut m = serde_json::Map::new();
    let mode = match &options.mode {
        Modes::All(mode) => json!(mode.name()),
        Modes::PerAxis(modes) => json!(modes.iter().map(|m| m.name()).collect::<Vec<_>>()),
    };
    m.insert("mode".into(), mode);
    m.insert("cval".into(), json!(options.cval));
    m
}

fn check(cases: Vec<Case>) {
    let asks: Vec<Json> = cases.iter().map(|c| c.ask.clone()).collect();
    let results = reference(&asks);
    let mut failures = Vec::new();
    for (case, want) in cases.iter().zip(&results) {
        if let Some(e) = want.get("error") {
            failures.push(format!("{}: scipy raised {e}", case.label));
            continue;
        }
        let dtype = want["dtype"].as_str().unwrap();
        if case.ours.dtype().name() != dtype {
            failures.push(format!("{}: dtype {} != scipy's {dtype}", case.label, case.ours.dtype()));
            continue;
        }
        let shape: Vec<usize> =
            want["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        if case.ours.shape() != shape.as_slice() {
            failures.push(format!("{}: shape {:?} != {shape:?}", case.label, case.ours.shape()));
            continue;
        }
        let want: Vec<f64> =
            want["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
        let got = flat(&case.ours);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1.0);
        let tol = match case.ours.dtype() {
            DType::F32 => 1e-5 * scale,
            DType::F64 => 1e-12 * scale,
            _ => 0.0,
        };
        let bad: Vec<(usize, f64, f64)> = got
            .iter()
            .zip(&want)
            .enumerate()
            .filter(|(_, (g, w))| !((*g - *w).abs() <= tol || (g.is_nan() && w.is_nan())))
            .map(|(i, (g, w))| (i, *g, *w))
            .collect();
        if !bad.is_empty() {
            failures.push(format!(
                "{}: {} of {} values differ (tol {tol:e}), first (index, ours, scipy): {:?}",
                case.label,
                bad.len(),
                got.len(),
                &bad[..bad.len().min(3)]
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// 2-D and 3-D inputs of every dtype, chunked finer than the filters reach.
fn inputs() -> Vec<Input> {
    let mut v = Vec::new();
    for (k, &dtype) in DTYPES.iter().enumerate() {
        v.push(input(dtype, &[13, 17], &[5, 6], k as u64));
        v.push(input(dtype, &[6, 7, 9], &[4, 3, 5], 10 + k as u64));
    }
    v
}

fn options_all() -> Vec<FilterOptions> {
    MODES
        .iter()
        .map(|&mode| FilterOptions {
            mode: mode.into(),
            cval: if mode == Mode::Constant { 1.5 } else { 0.0 },
            output: None,
        })
        .collect()
}

fn label(inp: &Input, what: &str, o: &FilterOptions) -> String {
    format!("{what} {} {:?} mode={}", inp.dtype, inp.shape, o.mode.names())
}

#[test]
fn gaussian_filter_matches_scipy() {
    let mut cases = Vec::new();
    for inp in inputs() {
        for o in options_all() {
            for sigma in [vec![1.0], vec![2.0], vec![0.0, 1.5], vec![0.7, 0.0, 2.5]] {
                if sigma.len() != 1 && sigma.len() != inp.shape.len() {
                    continue;
                }
                let ours = rask_image::gaussian_filter(&inp.array, &sigma, &o).unwrap().compute().unwrap();
                let mut kw = mode_kwargs(&o);
                kw.insert("sigma".into(), if sigma.len() == 1 { json!(sigma[0]) } else { json!(sigma) });
                cases.push(Case {
                    label: label(&inp, &format!("gaussian sigma={sigma:?}"), &o),
                    ours,
                    ask: ask(&inp, "gaussian_filter", Json::Object(kw)),
                });
            }
        }
    }
    check(cases);
}

#[test]
fn gaussian_derivatives_and_truncate_match_scipy() {
    let mut cases = Vec::new();
    for inp in inputs().into_iter().filter(|i| matches!(i.dtype, DType::F32 | DType::F64 | DType::I32)) {
        for o in options_all() {
            for (order, truncate) in [(1usize, 4.0), (2, 4.0), (0, 2.5), (1, 3.0)] {
                let ours = rask_image::gaussian_filter_order(&inp.array, &[1.3], &[order], truncate, &o)
                    .unwrap()
                    .compute()
                    .unwrap();
                let mut kw = mode_kwargs(&o);
                kw.insert("sigma".into(), json!(1.3));
                kw.insert("order".into(), json!(order));
                kw.insert("truncate".into(), json!(truncate));
                let what = format!("gaussian order={order} truncate={truncate}");
                cases.push(Case {
                    label: label(&inp, &what, &o),
                    ours,
                    ask: ask(&inp, "gaussian_filter", Json::Object(kw)),
                });
            }
        }
    }
    check(cases);
}

#[test]
fn size_filters_match_scipy() {
    let mut cases = Vec::new();
    for inp in inputs() {
        for o in options_all() {
            for size in [vec![3], vec![4], vec![2, 5], vec![5, 1, 2]] {
                if size.len() != 1 && size.len() != inp.shape.len() {
                    continue;
                }
                type F = fn(&Array, &[usize], &FilterOptions) -> rask_image::Result<Array>;
                let all: [(&str, F); 4] = [
                    ("uniform_filter", filters::uniform_filter),
                    ("minimum_filter", filters::minimum_filter),
                    ("maximum_filter", filters::maximum_filter),
                    ("median_filter", filters::median_filter),
                ];
                for (name, f) in all {
                    let ours = f(&inp.array, &size, &o).unwrap().compute().unwrap();
                    let mut kw = mode_kwargs(&o);
                    kw.insert("size".into(), if size.len() == 1 { json!(size[0]) } else { json!(size) });
                    cases.push(Case {
                        label: label(&inp, &format!("{name} size={size:?}"), &o),
                        ours,
                        ask: ask(&inp, name, Json::Object(kw)),
                    });
                }
            }
        }
    }
    check(cases);
}

#[test]
fn edge_filters_match_scipy() {
    let mut cases = Vec::new();
    for inp in inputs() {
        for o in options_all() {
            for axis in [0isize, -1] {
                for (name, ours) in [
                    ("sobel", filters::sobel(&inp.array, axis, &o)),
                    ("prewitt", filters::prewitt(&inp.array, axis, &o)),
                ] {
                    let mut kw = mode_kwargs(&o);
                    kw.insert("axis".into(), json!(axis));
                    cases.push(Case {
                        label: label(&inp, &format!("{name} axis={axis}"), &o),
                        ours: ours.unwrap().compute().unwrap(),
                        ask: ask(&inp, name, Json::Object(kw)),
                    });
                }
            }
            let kw = mode_kwargs(&o);
            cases.push(Case {
                label: label(&inp, "laplace", &o),
                ours: filters::laplace(&inp.array, &o).unwrap().compute().unwrap(),
                ask: ask(&inp, "laplace", Json::Object(kw)),
            });
            let mut kw = mode_kwargs(&o);
            kw.insert("sigma".into(), json!(1.2));
            cases.push(Case {
                label: label(&inp, "gaussian_gradient_magnitude", &o),
                ours: filters::gaussian_gradient_magnitude(&inp.array, &[1.2], &o).unwrap().compute().unwrap(),
                ask: ask(&inp, "gaussian_gradient_magnitude", Json::Object(kw.clone())),
            });
            cases.push(Case {
                label: label(&inp, "gaussian_laplace", &o),
                ours: filters::gaussian_laplace(&inp.array, &[1.2], &o).unwrap().compute().unwrap(),
                ask: ask(&inp, "gaussian_laplace", Json::Object(kw)),
            });
        }
    }
    check(cases);
}

#[test]
fn rank_filters_with_footprints_match_scipy() {
    use rask_image::filters::{Footprint, median_filter_footprint, percentile_filter, rank_filter};
    let mut cases = Vec::new();
    for inp in inputs() {
        let nd = inp.shape.len();
        let masks: Vec<(Vec<usize>, Vec<bool>)> = if nd == 2 {
            vec![
                (vec![3, 3], vec![false, true, false, true, true, true, false, true, false]),
                (vec![2, 4], vec![true, false, true, true, false, true, true, false]),
            ]
        } else {
            vec![(vec![3, 1, 3], vec![true, false, true, false, true, false, true, true, false])]
        };
        for o in options_all() {
            for (fshape, mask) in &masks {
                let fp = Footprint::Mask { mask: mask.clone(), shape: fshape.clone() };
                let n = mask.iter().filter(|m| **m).count() as isize;
                let origin: Vec<isize> = fshape.iter().map(|&s| if s == 3 { -1 } else { 0 }).collect();
                let with = |name: &str, extra: Json| {
                    let mut kw = mode_kwargs(&o);
                    kw.insert("origin".into(), json!(origin));
                    if let Json::Object(m) = extra {
                        kw.extend(m);
                    }
                    let mut a = ask(&inp, name, Json::Object(kw));
                    a["footprint"] = json!(mask);
                    a["fshape"] = json!(fshape);
                    a
                };
                for rank in [0, 1, n - 1, -2] {
                    cases.push(Case {
                        label: label(&inp, &format!("rank_filter rank={rank} {fshape:?}"), &o),
                        ours: rank_filter(&inp.array, rank, &fp, &origin, &o).unwrap().compute().unwrap(),
                        ask: with("rank_filter", json!({"rank": rank})),
                    });
                }
                for p in [0.0, 37.5, 50.0, 100.0, -20.0] {
                    cases.push(Case {
                        label: label(&inp, &format!("percentile_filter {p} {fshape:?}"), &o),
                        ours: percentile_filter(&inp.array, p, &fp, &origin, &o).unwrap().compute().unwrap(),
                        ask: with("percentile_filter", json!({"percentile": p})),
                    });
                }
                cases.push(Case {
                    label: label(&inp, &format!("median_filter footprint {fshape:?}"), &o),
                    ours: median_filter_footprint(&inp.array, &fp, &origin, &o).unwrap().compute().unwrap(),
                    ask: with("median_filter", json!({})),
                });
            }
            // A size box through the same path as scipy's `size=`.
            let mut kw = mode_kwargs(&o);
            kw.insert("size".into(), json!(3));
            kw.insert("rank".into(), json!(4));
            cases.push(Case {
                label: label(&inp, "rank_filter size=3 rank=4", &o),
                ours: rank_filter(&inp.array, 4, &Footprint::Size(vec![3]), &[], &o).unwrap().compute().unwrap(),
                ask: ask(&inp, "rank_filter", Json::Object(kw)),
            });
        }
    }
    check(cases);
    // Bad input: clear errors, no panic.
    let inp = input(DType::U8, &[5, 5], &[2, 2], 1);
    let fp = Footprint::Mask { mask: vec![true; 4], shape: vec![2, 2] };
    let e = rank_filter(&inp.array, 4, &fp, &[], &FilterOptions::default()).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
    let empty = Footprint::Mask { mask: vec![false; 4], shape: vec![2, 2] };
    assert!(rank_filter(&inp.array, 0, &empty, &[], &FilterOptions::default()).is_err());
    let wrong = Footprint::Mask { mask: vec![true; 3], shape: vec![2, 2] };
    assert!(rank_filter(&inp.array, 0, &wrong, &[], &FilterOptions::default()).is_err());
    assert!(percentile_filter(&inp.array, 120.0, &fp, &[], &FilterOptions::default()).is_err());
    assert!(rank_filter(&inp.array, 0, &fp, &[5, 5], &FilterOptions::default()).is_err());
}

#[test]
fn correlate_and_convolve_match_scipy() {
    let mut cases = Vec::new();
    for inp in inputs() {
        let nd = inp.shape.len();
        let kernels: Vec<Vec<usize>> =
            if nd == 2 { vec![vec![3, 3], vec![2, 4], vec![1, 5]] } else { vec![vec![3, 2, 3], vec![1, 1, 4]] };
        for o in options_all() {
            for wshape in &kernels {
                let n: usize = wshape.iter().product();
                let weights: Vec<f64> = (0..n).map(|i| [0.5, -1.0, 0.0, 2.0, 0.25, 1.0][i % 6]).collect();
                let kernel = Kernel::new(weights.clone(), wshape.clone()).unwrap();
                for (name, ours) in [
                    ("correlate", filters::correlate(&inp.array, &kernel, &[], &o)),
                    ("convolve", filters::convolve(&inp.array, &kernel, &[], &o)),
                ] {
                    let mut ask = ask(&inp, name, Json::Object(mode_kwargs(&o)));
                    ask["weights"] = json!(weights);
                    ask["wshape"] = json!(wshape);
                    cases.push(Case {
                        label: label(&inp, &format!("{name} {wshape:?}"), &o),
                        ours: ours.unwrap().compute().unwrap(),
                        ask,
                    });
                }
            }
        }
    }
    check(cases);
}

#[test]
fn output_dtype_and_short_axes_match_scipy() {
    let mut cases = Vec::new();
    // Axes shorter than the kernel: extensions repeat (reflect of a reflect).
    for &dtype in &DTYPES {
        let inp = input(dtype, &[3, 20], &[2, 7], 99);
        for o in options_all() {
            let ours = rask_image::gaussian_filter(&inp.array, &[3.0], &o).unwrap().compute().unwrap();
            let mut kw = mode_kwargs(&o);
            kw.insert("sigma".into(), json!(3.0));
            cases.push(Case {
                label: label(&inp, "gaussian short axis", &o),
                ours,
                ask: ask(&inp, "gaussian_filter", Json::Object(kw)),
            });
            let ours = filters::uniform_filter(&inp.array, &[7], &o).unwrap().compute().unwrap();
            let mut kw = mode_kwargs(&o);
            kw.insert("size".into(), json!(7));
            cases.push(Case {
                label: label(&inp, "uniform short axis", &o),
                ours,
                ask: ask(&inp, "uniform_filter", Json::Object(kw)),
            });
        }
        // output=float32/float64 from integer input, and narrowing outputs
        // (scipy's first pass reads the input, not the input cast).
        for out in [DType::F32, DType::F64, DType::U8, DType::I16] {
            let o = FilterOptions { output: Some(out), ..FilterOptions::default() };
            let ours = rask_image::gaussian_filter(&inp.array, &[1.5], &o).unwrap().compute().unwrap();
            let mut a = ask(&inp, "gaussian_filter", json!({"sigma": 1.5}));
            a["output"] = json!(out.name());
            cases.push(Case { label: label(&inp, &format!("gaussian output={out}"), &o), ours, ask: a });
            let ours = filters::uniform_filter(&inp.array, &[3, 1], &o).unwrap().compute().unwrap();
            let mut a = ask(&inp, "uniform_filter", json!({"size": [3, 1]}));
            a["output"] = json!(out.name());
            cases.push(Case { label: label(&inp, &format!("uniform output={out}"), &o), ours, ask: a });
        }
    }
    check(cases);
}

#[test]
fn skimage_gaussian_matches_scikit_image() {
    let mut cases = Vec::new();
    for &dtype in &DTYPES {
        let inp = input(dtype, &[9, 11, 3], &[4, 5, 2], 7);
        for preserve_range in [false, true] {
            for channel_axis in [None, Some(-1isize)] {
                let opts = skimage::GaussianOptions { preserve_range, channel_axis, ..Default::default() };
                let ours = skimage::gaussian(&inp.array, &[1.5], &opts).unwrap().compute().unwrap();
                let kw = json!({"sigma": 1.5, "preserve_range": preserve_range, "channel_axis": channel_axis});
                cases.push(Case {
                    label: format!(
                        "skimage.gaussian {dtype} preserve_range={preserve_range} channel_axis={channel_axis:?}"
                    ),
                    ours,
                    ask: ask(&inp, "skimage.gaussian", kw),
                });
            }
        }
    }
    check(cases);
}

/// True when two labelings have the same components (a bijection between
/// their non-zero labels, and the same background).
fn same_partition(a: &[f64], b: &[f64]) -> bool {
    let mut ab = std::collections::HashMap::new();
    let mut ba = std::collections::HashMap::new();
    a.iter().zip(b).all(|(&x, &y)| {
        (x == 0.0) == (y == 0.0)
            && *ab.entry(x.to_bits()).or_insert(y.to_bits()) == y.to_bits()
            && *ba.entry(y.to_bits()).or_insert(x.to_bits()) == x.to_bits()
    })
}

#[test]
fn label_and_label_stats_match_scipy() {
    let mut asks = Vec::new();
    let mut ours = Vec::new();
    for (k, (shape, chunks)) in
        [(vec![23, 31], vec![5, 7]), (vec![9, 10, 11], vec![4, 3, 5]), (vec![40], vec![6])].into_iter().enumerate()
    {
        let n: usize = shape.iter().product();
        // Sparse-ish blobs: thresholded smooth noise.
        let raw = data(DType::F64, n, 100 + k as u64);
        let values: Vec<f64> = raw.iter().map(|v| f64::from(u8::from(*v > 45.0))).collect();
        let inp = Input {
            dtype: DType::U8,
            shape: shape.clone(),
            values: values.clone(),
            array: image(DType::U8, &shape, &values, &chunks),
        };
        for connectivity in 1..=shape.len() {
            let (labels, count) = rask_image::measure::label(&inp.array, connectivity).unwrap();
            // Lazy: building the labels ran nothing.
            assert!(labels.task_count() > labels.npartitions());
            let got = labels.compute().unwrap();
            let count = count.compute_scalar::<i64>().unwrap() as usize;
            assert_eq!(got.dtype(), DType::I32);
            let mut a = ask(&inp, "label", json!({}));
            a["connectivity"] = json!(connectivity);
            asks.push(a);
            // Statistics of an intensity image over our labels.
            let intensity = input(DType::U16, &shape, &chunks, 7 + k as u64);
            let stats = rask_image::measure::label_stats(&intensity.array, &labels, count).unwrap();
            let index: Vec<usize> = (1..=count).collect();
            let label_values: Vec<i64> = flat(&got).iter().map(|v| *v as i64).collect();
            for name in ["sum_labels", "mean", "maximum", "minimum"] {
                let mut s = ask(&intensity, name, json!({}));
                s["labels"] = json!(label_values);
                s["index"] = json!(index);
                asks.push(s);
            }
            ours.push((format!("label {shape:?} connectivity={connectivity}"), got, count, stats));
        }
    }
    let results = reference(&asks);
    let mut it = results.iter();
    for (what, got, count, stats) in &ours {
        let want = it.next().unwrap();
        assert_eq!(*count as u64, want["count"].as_u64().unwrap(), "{what}: label count");
        let want_labels: Vec<f64> = want["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(same_partition(&flat(got), &want_labels), "{what}: components differ from scipy's");
        // scipy numbers in scan order, and so does rask at any chunking.
        let first_difference = flat(got).iter().zip(&want_labels).position(|(g, w)| g != w);
        assert_eq!(first_difference, None, "{what}: numbering differs from scipy's");
        assert!(*count > 1, "{what}: the test image should have several components");
        for (name, ours) in
            [("sum", &stats.sum), ("mean", &stats.mean), ("maximum", &stats.maximum), ("minimum", &stats.minimum)]
        {
            let want = it.next().unwrap();
            let want: Vec<f64> = want["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(ours.len(), want.len(), "{what} {name}");
            for (o, w) in ours.iter().zip(&want) {
                assert!((o - w).abs() <= 1e-9 * w.abs().max(1.0), "{what} {name}: {o} vs {w}");
            }
        }
        assert_eq!(stats.area.iter().sum::<u64>() as usize, flat(got).iter().filter(|v| **v != 0.0).count());
    }
}

/// Mixed per-axis modes: 2-D and 3-D inputs of the dtypes below, each at two
/// chunkings (one far finer than the filters' reach, one coarser).
const PER_AXIS_DTYPES: [DType; 4] = [DType::F32, DType::F64, DType::U8, DType::U16];

fn per_axis_inputs() -> Vec<Input> {
    let mut v = Vec::new();
    for (k, &dtype) in PER_AXIS_DTYPES.iter().enumerate() {
        for chunks in [vec![2, 3], vec![7, 9]] {
            v.push(input(dtype, &[13, 17], &chunks, 200 + k as u64));
        }
        for chunks in [vec![2, 3, 2], vec![4, 7, 9]] {
            v.push(input(dtype, &[6, 7, 9], &chunks, 300 + k as u64));
        }
    }
    v
}

/// Mode sequences for an image of `ndim` axes, with `cval` 1.5 (it matters
/// where `constant` is among them).
fn per_axis_options(ndim: usize) -> Vec<FilterOptions> {
    use Mode::*;
    let sets: Vec<Vec<Mode>> = if ndim == 2 {
        vec![vec![Reflect, Wrap], vec![Constant, Nearest], vec![Wrap, Mirror], vec![Mirror, Constant]]
    } else {
        vec![vec![Constant, Nearest, Mirror], vec![Wrap, Reflect, Constant], vec![Nearest, Wrap, Wrap]]
    };
    sets.into_iter().map(|m| FilterOptions::modes(m).with_cval(1.5)).collect()
}

fn chunk_label(inp: &Input) -> String {
    format!("chunks={:?}", inp.array.chunks())
}

/// Every filter scipy runs with one mode per axis, against scipy with the
/// same sequence.
fn per_axis_cases(inp: &Input, o: &FilterOptions) -> Vec<Case> {
    let nd = inp.shape.len();
    let mut cases = Vec::new();
    let mut push = |what: String, ours: rask_image::Result<Array>, func: &str, extra: Json| {
        let mut kw = mode_kwargs(o);
        if let Json::Object(m) = extra {
            kw.extend(m);
        }
        cases.push(Case {
            label: format!("{} {}", label(inp, &what, o), chunk_label(inp)),
            ours: ours.unwrap().compute().unwrap(),
            ask: ask(inp, func, Json::Object(kw)),
        });
    };
    let sigma: Vec<f64> = (0..nd).map(|a| [1.5, 0.0, 2.2][a % 3]).collect();
    push(
        "gaussian sigma=1.7".into(),
        rask_image::gaussian_filter(&inp.array, &[1.7], o),
        "gaussian_filter",
        json!({"sigma": 1.7}),
    );
    push(
        format!("gaussian sigma={sigma:?}"),
        rask_image::gaussian_filter(&inp.array, &sigma, o),
        "gaussian_filter",
        json!({"sigma": sigma}),
    );
    push(
        "gaussian order=1".into(),
        rask_image::gaussian_filter_order(&inp.array, &[1.1], &[1], 4.0, o),
        "gaussian_filter",
        json!({"sigma": 1.1, "order": 1}),
    );
    let size: Vec<usize> = (0..nd).map(|a| [3, 4, 1][a % 3]).collect();
    push(
        format!("uniform size={size:?}"),
        filters::uniform_filter(&inp.array, &size, o),
        "uniform_filter",
        json!({"size": size}),
    );
    push("minimum size=3".into(), filters::minimum_filter(&inp.array, &[3], o), "minimum_filter", json!({"size": 3}));
    push(
        format!("maximum size={size:?}"),
        filters::maximum_filter(&inp.array, &size, o),
        "maximum_filter",
        json!({"size": size}),
    );
    for axis in [0isize, -1] {
        push(format!("sobel axis={axis}"), filters::sobel(&inp.array, axis, o), "sobel", json!({"axis": axis}));
        push(format!("prewitt axis={axis}"), filters::prewitt(&inp.array, axis, o), "prewitt", json!({"axis": axis}));
    }
    push("laplace".into(), filters::laplace(&inp.array, o), "laplace", json!({}));
    push(
        "gaussian_laplace".into(),
        filters::gaussian_laplace(&inp.array, &[1.2], o),
        "gaussian_laplace",
        json!({"sigma": 1.2}),
    );
    push(
        "gaussian_gradient_magnitude".into(),
        filters::gaussian_gradient_magnitude(&inp.array, &[0.9], o),
        "gaussian_gradient_magnitude",
        json!({"sigma": 0.9}),
    );
    // Rank filters that scipy turns into its separable minimum / maximum.
    let box3 = filters::Footprint::Size(vec![3]);
    push(
        "rank_filter rank=0 size=3".into(),
        filters::rank_filter(&inp.array, 0, &box3, &[], o),
        "rank_filter",
        json!({"rank": 0, "size": 3}),
    );
    push(
        "percentile_filter 100 size=3".into(),
        filters::percentile_filter(&inp.array, 100.0, &box3, &[], o),
        "percentile_filter",
        json!({"percentile": 100.0, "size": 3}),
    );
    push(
        "median_filter size=1".into(),
        filters::median_filter(&inp.array, &[1], o),
        "median_filter",
        json!({"size": 1}),
    );
    cases
}

#[test]
fn per_axis_modes_match_scipy_2d() {
    let mut cases = Vec::new();
    for inp in per_axis_inputs().iter().filter(|i| i.shape.len() == 2) {
        for o in per_axis_options(2) {
            cases.extend(per_axis_cases(inp, &o));
        }
    }
    check(cases);
}

#[test]
fn per_axis_modes_match_scipy_3d() {
    let mut cases = Vec::new();
    for inp in per_axis_inputs().iter().filter(|i| i.shape.len() == 3) {
        for o in per_axis_options(3) {
            cases.extend(per_axis_cases(inp, &o));
        }
    }
    check(cases);
}

/// A sequence that repeats one mode gives what that mode gives, and scipy's
/// names parse (with the `grid-` aliases).
#[test]
fn per_axis_modes_agree_with_single_modes_and_parse() {
    let inp = input(DType::U16, &[13, 17], &[3, 4], 5);
    for mode in MODES {
        let one = FilterOptions::mode(mode).with_cval(4.0);
        let seq = FilterOptions::modes([mode, mode]).with_cval(4.0);
        let a = rask_image::gaussian_filter(&inp.array, &[1.5], &one).unwrap().compute().unwrap();
        let b = rask_image::gaussian_filter(&inp.array, &[1.5], &seq).unwrap().compute().unwrap();
        assert_eq!(a, b, "mode {mode:?}");
    }
    assert_eq!(
        Modes::from_names(&["reflect", "grid-wrap", "constant"]).unwrap(),
        Modes::PerAxis(vec![Mode::Reflect, Mode::Wrap, Mode::Constant])
    );
    assert_eq!(Modes::from_name("nearest").unwrap(), Modes::All(Mode::Nearest));
    let e = Modes::from_names(&["reflect", "bogus"]).unwrap_err().to_string();
    assert!(e.contains("boundary mode not supported") && e.contains("bogus"), "{e}");
    assert_eq!(Modes::from(vec![Mode::Reflect, Mode::Wrap]).names(), "('reflect', 'wrap')");
    // Mixed modes keep the input's chunks, whether the wrapping axis gets a
    // halo of its own (Gaussian) or is filtered whole (gradient magnitude,
    // whose derivatives read both axes with both modes).
    let mixed = FilterOptions::modes([Mode::Reflect, Mode::Wrap]);
    let g = rask_image::gaussian_filter(&inp.array, &[1.5], &mixed).unwrap();
    assert_eq!(g.chunks(), inp.array.chunks());
    let m = filters::gaussian_gradient_magnitude(&inp.array, &[1.5], &mixed).unwrap();
    assert_eq!(m.chunks(), inp.array.chunks());
}

/// Wrong lengths and single-mode filters: our error names the filter and
/// says what scipy says, and scipy raises for the same call.
#[test]
fn per_axis_mode_errors_match_scipy() {
    use filters::Footprint;
    let inp = input(DType::F64, &[8, 9], &[3, 4], 3);
    let short = FilterOptions::modes([Mode::Reflect]);
    let long = FilterOptions::modes([Mode::Reflect, Mode::Wrap, Mode::Nearest]);
    let two = FilterOptions::modes([Mode::Reflect, Mode::Wrap]);
    let kernel = Kernel::new(vec![1.0; 9], vec![3, 3]).unwrap();
    let cross =
        Footprint::Mask { mask: vec![false, true, false, true, true, true, false, true, false], shape: vec![3, 3] };
    let box3 = Footprint::Size(vec![3]);
    const LENGTH: &str = "sequence argument must have length equal to input rank";
    const RANK: &str = "a sequence of modes is not supported by non-separable rank filters";
    const FOOTPRINT: &str = "a sequence of modes is not supported for non-separable footprints";
    const ANY: &str = "a sequence of modes is not supported";
    type Call<'a> = (&'a str, rask_image::Result<Array>, &'a str, &'a FilterOptions, Json, &'a str);
    let calls: Vec<Call<'_>> = vec![
        (
            "gaussian_filter",
            rask_image::gaussian_filter(&inp.array, &[1.0], &short),
            "gaussian_filter",
            &short,
            json!({"sigma": 1.0}),
            LENGTH,
        ),
        (
            "uniform_filter",
            filters::uniform_filter(&inp.array, &[3], &long),
            "uniform_filter",
            &long,
            json!({"size": 3}),
            LENGTH,
        ),
        (
            "minimum_filter",
            filters::minimum_filter(&inp.array, &[3], &short),
            "minimum_filter",
            &short,
            json!({"size": 3}),
            LENGTH,
        ),
        (
            "maximum_filter",
            filters::maximum_filter(&inp.array, &[3], &long),
            "maximum_filter",
            &long,
            json!({"size": 3}),
            LENGTH,
        ),
        ("sobel", filters::sobel(&inp.array, 0, &short), "sobel", &short, json!({"axis": 0}), LENGTH),
        ("prewitt", filters::prewitt(&inp.array, 1, &long), "prewitt", &long, json!({"axis": 1}), LENGTH),
        ("laplace", filters::laplace(&inp.array, &short), "laplace", &short, json!({}), LENGTH),
        (
            "gaussian_laplace",
            filters::gaussian_laplace(&inp.array, &[1.0], &long),
            "gaussian_laplace",
            &long,
            json!({"sigma": 1.0}),
            LENGTH,
        ),
        (
            "gaussian_gradient_magnitude",
            filters::gaussian_gradient_magnitude(&inp.array, &[1.0], &short),
            "gaussian_gradient_magnitude",
            &short,
            json!({"sigma": 1.0}),
            LENGTH,
        ),
        (
            "median_filter",
            filters::median_filter(&inp.array, &[3], &two),
            "median_filter",
            &two,
            json!({"size": 3}),
            RANK,
        ),
        (
            "median_filter",
            filters::median_filter(&inp.array, &[3], &short),
            "median_filter",
            &short,
            json!({"size": 3}),
            LENGTH,
        ),
        (
            "rank_filter",
            filters::rank_filter(&inp.array, 1, &box3, &[], &two),
            "rank_filter",
            &two,
            json!({"rank": 1, "size": 3}),
            RANK,
        ),
        (
            "percentile_filter",
            filters::percentile_filter(&inp.array, 50.0, &box3, &[], &two),
            "percentile_filter",
            &two,
            json!({"percentile": 50.0, "size": 3}),
            RANK,
        ),
        ("correlate", filters::correlate(&inp.array, &kernel, &[], &two), "correlate", &two, json!({}), ANY),
        ("convolve", filters::convolve(&inp.array, &kernel, &[], &short), "convolve", &short, json!({}), ANY),
    ];
    let mut asks = Vec::new();
    for (name, ours, func, o, extra, phrase) in calls {
        let e = ours.err().unwrap_or_else(|| panic!("{name} with mode={} should fail", o.mode.names())).to_string();
        assert!(e.starts_with(name) && e.contains(phrase), "{name} mode={}: {e}", o.mode.names());
        let mut kw = mode_kwargs(o);
        if let Json::Object(m) = extra {
            kw.extend(m);
        }
        let mut a = ask(&inp, func, Json::Object(kw));
        if func == "correlate" || func == "convolve" {
            a["weights"] = json!(kernel.weights);
            a["wshape"] = json!(kernel.shape);
        }
        asks.push((format!("{name} mode={}", o.mode.names()), phrase, a));
    }
    // Footprints: rank 0 with a cross is scipy's non-separable minimum; a
    // median over a cross is a non-separable rank filter.
    for (name, ours, phrase) in [
        ("rank_filter", filters::rank_filter(&inp.array, 0, &cross, &[], &two), FOOTPRINT),
        ("median_filter", filters::median_filter_footprint(&inp.array, &cross, &[], &two), RANK),
    ] {
        let e = ours.err().unwrap_or_else(|| panic!("{name} with a footprint should fail")).to_string();
        assert!(e.starts_with(name) && e.contains(phrase), "{name}: {e}");
        let mut kw = mode_kwargs(&two);
        if name == "rank_filter" {
            kw.insert("rank".into(), json!(0));
        }
        let mut a = ask(&inp, name, Json::Object(kw));
        a["footprint"] = json!([false, true, false, true, true, true, false, true, false]);
        a["fshape"] = json!([3, 3]);
        asks.push((format!("{name} footprint"), phrase, a));
    }
    let results = reference(&asks.iter().map(|(_, _, a)| a.clone()).collect::<Vec<_>>());
    for ((what, phrase, _), got) in asks.iter().zip(&results) {
        let err = got.get("error").and_then(Json::as_str).unwrap_or_else(|| panic!("{what}: scipy did not raise"));
        assert!(err.to_lowercase().contains(phrase), "{what}: scipy raised {err}, we say {phrase:?}");
    }
}
