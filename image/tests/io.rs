//! imread / imwrite on generated PNG, JPEG and TIFF files, and bad input.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

use std::path::PathBuf;

use rask::core::{ArrayValue, DType};
use rask_image::io::{self, ImreadOptions};
use rask_image::{ImageError, synth};

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rask-image-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pattern(dir: &std::path::Path, glob: &str) -> String {
    dir.join(glob).to_string_lossy().to_string()
}

fn arr(v: &ArrayValue) -> rask_array::Array {
    rask::core::with_array!(v, x => rask_array::Array::from_ndarray(&x.to_owned(), rask_array::Chunks::Uniform(x.shape().to_vec())).unwrap())
}

/// Volumes of several files, one after the other along axis 0.
fn concat(values: &[ArrayValue]) -> ArrayValue {
    let parts: Vec<rask_array::Array> = values.iter().map(arr).collect();
    rask_array::Array::concatenate(&parts, 0).unwrap().compute().unwrap()
}

/// Single frames of several files, stacked along a new axis 0.
fn stack(values: &[ArrayValue]) -> ArrayValue {
    let parts: Vec<rask_array::Array> = values.iter().map(arr).collect();
    rask_array::Array::stack(&parts, 0).unwrap().compute().unwrap()
}

#[test]
fn tiff_stacks_read_back_exactly_for_each_dtype() {
    for dtype in [DType::U8, DType::U16, DType::F32] {
        let dir = tempdir(&format!("tiff-{dtype}"));
        let paths = synth::tiff_stacks(&dir, 3, [5, 17, 23], dtype, 11).unwrap();
        let a = io::imread(&pattern(&dir, "*.tif")).unwrap();
        assert_eq!(a.dtype(), dtype);
        assert_eq!(a.shape(), vec![Some(15), Some(17), Some(23)]);
        assert_eq!(a.npartitions(), 3, "one block per file");
        let want: Vec<ArrayValue> = (0..3).map(|i| synth::image(&[5, 17, 23], dtype, 11 + i).unwrap()).collect();
        assert_eq!(a.compute().unwrap(), concat(&want));
        // Page blocks: the same values in blocks of 2 pages.
        let b = io::imread_with(
            &pattern(&dir, "vol_*.tif"),
            &ImreadOptions { frames_per_block: Some(2), ..Default::default() },
        )
        .unwrap();
        assert_eq!(b.npartitions(), 9);
        assert_eq!(b.compute().unwrap(), a.compute().unwrap());
        // A single path (no glob) reads one file.
        let one = io::imread(&paths[1].to_string_lossy()).unwrap().compute().unwrap();
        assert_eq!(one, concat(&want[1..2]));
    }
}

#[test]
fn png_round_trips_and_jpeg_matches_the_decoder() {
    let dir = tempdir("png-jpeg");
    synth::gray_pngs(&dir, 2, 19, 31, DType::U16, 5).unwrap();
    let gray = io::imread(&pattern(&dir, "gray_*.png")).unwrap();
    assert_eq!((gray.dtype(), gray.shape()), (DType::U16, vec![Some(2), Some(19), Some(31)]));
    let want: Vec<ArrayValue> = (0..2).map(|i| synth::image(&[19, 31], DType::U16, 5 + i).unwrap()).collect();
    assert_eq!(gray.compute().unwrap(), stack(&want));

    let paths = synth::rgb_images(&dir, 3, 21, 34, "png", 9).unwrap();
    let rgb = io::imread(&pattern(&dir, "img_*.png")).unwrap();
    assert_eq!((rgb.dtype(), rgb.shape()), (DType::U8, vec![Some(3), Some(21), Some(34), Some(3)]));
    let want: Vec<ArrayValue> = (0..3).map(|i| synth::image(&[21, 34, 3], DType::U8, 9 + i).unwrap()).collect();
    assert_eq!(rgb.compute().unwrap(), stack(&want));
    assert_eq!(paths.len(), 3);

    let jpegs = synth::rgb_images(&dir, 2, 40, 48, "jpg", 3).unwrap();
    let j = io::imread(&pattern(&dir, "*.jpg")).unwrap();
    assert_eq!(j.shape(), vec![Some(2), Some(40), Some(48), Some(3)]);
    let decoded: Vec<ArrayValue> =
        jpegs.iter().map(|p| io::read_png_or_jpeg(p, &Default::default()).unwrap()).collect();
    let got = j.compute().unwrap();
    assert_eq!(got, concat(&decoded), "imread gives the decoder's own full decode");
    // Lossy, but close to what was written.
    let ArrayValue::U8(g) = &got else { panic!() };
    let ArrayValue::U8(w) = synth::image(&[40, 48, 3], DType::U8, 3).unwrap() else { panic!() };
    let first: Vec<u8> = g.iter().take(40 * 48 * 3).copied().collect();
    let err = first.iter().zip(w.iter()).map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs()).sum::<f64>()
        / first.len() as f64;
    assert!(err < 20.0, "mean JPEG error {err}");
}

#[test]
fn imwrite_writes_what_imread_reads() {
    let dir = tempdir("imwrite");
    synth::tiff_stacks(&dir, 1, [4, 9, 10], DType::U16, 1).unwrap();
    let a = io::imread(&pattern(&dir, "vol_000.tif")).unwrap();
    let written = io::imwrite(&a, &pattern(&dir, "copy.tiff")).unwrap();
    assert_eq!(io::imread(&written[0].to_string_lossy()).unwrap().compute().unwrap(), a.compute().unwrap());
    let frames = io::imwrite(&a, &pattern(&dir, "frame_{}.png")).unwrap();
    assert_eq!(frames.len(), 4);
    assert_eq!(io::imread(&pattern(&dir, "frame_*.png")).unwrap().compute().unwrap(), a.compute().unwrap());
    assert!(matches!(io::imwrite(&a, &pattern(&dir, "no_placeholder.png")), Err(ImageError::Value(_))));
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempdir("bad");
    // Missing file, and a glob matching nothing.
    let e = io::imread(&pattern(&dir, "missing.tif")).unwrap_err();
    assert!(matches!(e, ImageError::Io { .. }) && e.to_string().contains("missing.tif"), "{e}");
    let e = io::imread(&pattern(&dir, "*.png")).unwrap_err();
    assert!(e.to_string().contains("no files match"), "{e}");
    // Corrupt files of each kind.
    for name in ["bad.png", "bad.jpg", "bad.tif"] {
        std::fs::write(dir.join(name), b"this is not an image at all").unwrap();
        let e = io::imread(&pattern(&dir, name)).unwrap_err();
        assert!(matches!(e, ImageError::Decode { .. }) && e.to_string().contains(name), "{name}: {e}");
    }
    // Truncated TIFF: the header reads, the pixels do not -> compute error.
    let good = synth::tiff_stacks(&dir.join("t"), 1, [2, 64, 64], DType::U16, 3).unwrap();
    let bytes = std::fs::read(&good[0]).unwrap();
    let cut = dir.join("cut.tif");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    match io::imread(&cut.to_string_lossy()) {
        Err(e) => assert!(e.to_string().contains("cut.tif"), "{e}"),
        Ok(a) => {
            let e = a.compute().unwrap_err();
            assert!(e.to_string().contains("cut.tif"), "{e}");
        }
    }
    // Unknown extension.
    std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
    assert!(matches!(io::imread(&pattern(&dir, "notes.txt")), Err(ImageError::Decode { .. })));
    // Mismatched shapes across a glob.
    let mixed = dir.join("mixed");
    synth::gray_pngs(&mixed, 1, 10, 10, DType::U8, 1).unwrap();
    std::fs::rename(mixed.join("gray_000.png"), mixed.join("a.png")).unwrap();
    synth::gray_pngs(&mixed, 1, 10, 12, DType::U8, 1).unwrap();
    let e = io::imread(&pattern(&mixed, "*.png")).unwrap_err();
    assert!(matches!(e, ImageError::Mismatch(_)) && e.to_string().contains("must agree"), "{e}");
    // Mismatched dtypes.
    synth::gray_pngs(&dir.join("dt"), 1, 10, 10, DType::U8, 1).unwrap();
    std::fs::rename(dir.join("dt/gray_000.png"), dir.join("dt/a.png")).unwrap();
    synth::gray_pngs(&dir.join("dt"), 1, 10, 10, DType::U16, 1).unwrap();
    assert!(matches!(io::imread(&pattern(&dir.join("dt"), "*.png")), Err(ImageError::Mismatch(_))));
}

#[test]
fn demo_runs_both_pipelines() {
    let dir = tempdir("demo");
    let config = rask_image::demo::DemoConfig {
        dir: dir.clone(),
        photos: 2,
        photo_shape: (64, 96),
        volumes: 2,
        volume_shape: [45, 20, 24],
        seed: 1,
    };
    let r = rask_image::demo::run(&config).unwrap();
    assert_eq!(r.subsampled_shape, vec![2, 16, 24]);
    assert_eq!(r.pngs.len(), 4);
    assert!((r.original_mean - r.filtered_mean).abs() < 5.0);
    assert_eq!(r.volume_means.len(), 2);
    // uint16 12-bit data scaled by 1/65535: means well inside (0, 1/16).
    assert!(r.max_mean > 0.0 && r.max_mean < 1.0 / 16.0, "{}", r.max_mean);
    assert_eq!(r.max_mean, r.volume_means.iter().copied().fold(f64::MIN, f64::max));
}

/// Every layout tifffile writes by default or on request: planar and
/// contiguous samples, strips and tiles (with padding), several pages,
/// zlib with and without a predictor. rask must read exactly what
/// `tifffile.imread` reads, whatever the page blocking.
#[test]
fn tiff_layouts_written_by_tifffile_read_exactly() {
    let dir = tempdir("tifffile-layouts");
    let script = r#"
import json, sys
import numpy as np, tifffile
d = sys.argv[1]
rng = np.random.default_rng(7)
cases = {
    "planar_rgb": (rng.integers(0, 60000, (3, 20, 30), dtype=np.uint16), {}),
    "planar_rgba": (rng.integers(0, 255, (4, 20, 30), dtype=np.uint8), {}),
    "contig_rgb": (rng.integers(0, 60000, (20, 30, 3), dtype=np.uint16), {}),
    "pages_planar": (rng.integers(-30000, 30000, (4, 3, 20, 30), dtype=np.int16), {}),
    "pages_gray": (rng.random((5, 20, 30), dtype=np.float32), {}),
    "tiled_gray": (rng.integers(0, 60000, (40, 50), dtype=np.uint16), {"tile": (16, 16)}),
    "tiled_planar": (rng.integers(0, 60000, (3, 40, 50), dtype=np.uint16), {"tile": (16, 16)}),
    "tiled_contig": (rng.random((40, 50, 3)), {"tile": (16, 32)}),
    "zlib_planar": (rng.integers(0, 60000, (3, 20, 30), dtype=np.uint16), {"compression": "zlib"}),
    "zlib_predictor": (rng.integers(0, 60000, (2, 20, 30), dtype=np.uint16), {"compression": "zlib", "predictor": True, "photometric": "minisblack"}),
    "strips_planar": (rng.integers(0, 60000, (3, 40, 30), dtype=np.uint32), {"rowsperstrip": 7, "compression": "zlib"}),
    "five_bands": (rng.integers(0, 60000, (5, 20, 30), dtype=np.uint16), {"planarconfig": "separate", "photometric": "minisblack"}),
}
out = {}
for name, (a, kw) in cases.items():
    path = f"{d}/{name}.tif"
    tifffile.imwrite(path, a, **kw)
    back = tifffile.imread(path)
    assert (back == a).all()
    with tifffile.TiffFile(path) as t:
        pages = len(t.pages)
    out[name] = {"pages": pages, "shape": list(back.shape), "dtype": str(back.dtype), "values": [repr(v) for v in back.ravel().tolist()]}
json.dump(out, sys.stdout)
"#;
    let python = format!("{}/.cache/rask/pyref/bin/python", std::env::var("HOME").unwrap_or_default());
    let out = std::process::Command::new(python)
        .args(["-c", script, &dir.to_string_lossy()])
        .output()
        .expect("run tifffile (scripts/setup.sh installs it)");
    assert!(out.status.success(), "tifffile failed: {}", String::from_utf8_lossy(&out.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, want) in reference.as_object().unwrap() {
        let pages = want["pages"].as_u64().unwrap() as usize;
        let mut shape: Vec<usize> =
            want["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        if pages == 1 {
            shape.insert(0, 1); // imread's axis 0 runs over pages
        }
        // As text: Rust's parser rounds correctly, serde_json's may not.
        let values: Vec<f64> =
            want["values"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().parse().unwrap()).collect();
        let path = pattern(&dir, &format!("{name}.tif"));
        for frames_per_block in [None, Some(1), Some(3)] {
            let label = format!("{name} (frames per block {frames_per_block:?})");
            let a = io::imread_with(&path, &ImreadOptions { frames_per_block, ..Default::default() })
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(a.dtype().name(), want["dtype"].as_str().unwrap(), "{label}: dtype");
            assert_eq!(a.shape(), shape.iter().map(|&n| Some(n)).collect::<Vec<_>>(), "{label}: shape");
            let got = a.compute().unwrap_or_else(|e| panic!("{label}: {e}"));
            let got = rask_array::dtype::cast(&got, DType::F64);
            let ArrayValue::F64(got) = got else { unreachable!() };
            assert_eq!(got.shape(), shape.as_slice(), "{label}: computed shape");
            let first_difference = got.iter().zip(&values).position(|(g, w)| g != w);
            assert_eq!(first_difference, None, "{label}: values differ from tifffile's");
        }
    }
}
