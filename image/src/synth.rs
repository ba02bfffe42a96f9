//! Synthetic images, so tests, benchmarks and the demo download nothing.
//!
//! The pictures are smooth blobs (products of per-axis waves, different for
//! each seed) plus hashed noise: structure for filters to smooth, noise for
//! them to remove, and values over most of the dtype's range. Generation is a
//! few table look-ups per pixel, so multi-gigabyte stacks take seconds.

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use rask::core::{ArrayValue, DType};

use crate::io::write_image;
use crate::{ImageError, Result};

fn mix(mut x: u64) -> u64 {
    // SplitMix64's finaliser.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A wave along one axis, in [0, 1].
fn wave(n: usize, seed: u64, axis: usize) -> Vec<f64> {
    let h = mix(seed ^ (axis as u64).wrapping_mul(0x1234_5678_9ABC));
    let periods = 1.0 + (h % 5) as f64;
    let phase = (h >> 8) as f64 / (1u64 << 56) as f64 * std::f64::consts::TAU;
    (0..n).map(|i| 0.5 + 0.5 * (std::f64::consts::TAU * periods * i as f64 / n.max(1) as f64 + phase).sin()).collect()
}

/// Values in [0, 1): smooth structure (80 %) plus uniform noise (20 %).
fn unit_values(shape: &[usize], seed: u64) -> Vec<f64> {
    let waves: Vec<Vec<f64>> = shape.iter().enumerate().map(|(ax, &n)| wave(n, seed, ax)).collect();
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; shape.len()];
    for lin in 0..total {
        let smooth: f64 = idx.iter().zip(&waves).map(|(&i, w)| w[i]).product();
        let noise = (mix(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ lin as u64) >> 11) as f64 / (1u64 << 53) as f64;
        out.push((0.8 * smooth + 0.2 * noise).min(0.999_999));
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

fn build<T: rask::core::Element>(shape: &[usize], values: Vec<T>) -> Result<ArrayValue> {
    ArrayD::from_shape_vec(IxDyn(shape), values)
        .map(|a| T::wrap(a.into_shared()))
        .map_err(|e| ImageError::Value(e.to_string()))
}

/// A synthetic image of any shape: uint8 over 0-255, uint16 over 0-4095 (a
/// 12-bit camera), float32/float64 over [0, 1).
pub fn image(shape: &[usize], dtype: DType, seed: u64) -> Result<ArrayValue> {
    let unit = unit_values(shape, seed);
    match dtype {
        DType::U8 => build(shape, unit.iter().map(|v| (v * 256.0) as u8).collect()),
        DType::U16 => build(shape, unit.iter().map(|v| (v * 4096.0) as u16).collect()),
        DType::F32 => build(shape, unit.iter().map(|&v| v as f32).collect()),
        DType::F64 => build(shape, unit),
        other => Err(ImageError::Value(format!("synthetic images are uint8, uint16, float32 or float64, not {other}"))),
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ImageError::Io { path: dir.display().to_string(), message: e.to_string() })
}

/// Writes `count` multi-page TIFF volumes `vol_000.tif`, … of `shape`
/// (pages, height, width) into `dir`; returns their paths.
pub fn tiff_stacks(dir: &Path, count: usize, shape: [usize; 3], dtype: DType, seed: u64) -> Result<Vec<PathBuf>> {
    create_dir(dir)?;
    (0..count)
        .map(|i| {
            let path = dir.join(format!("vol_{i:03}.tif"));
            write_image(&path, &image(&shape, dtype, seed.wrapping_add(i as u64))?)?;
            Ok(path)
        })
        .collect()
}

/// Writes `count` RGB images `img_000.<ext>` of `height × width` into `dir`
/// (`ext` is `png` or `jpg`); returns their paths.
pub fn rgb_images(dir: &Path, count: usize, height: usize, width: usize, ext: &str, seed: u64) -> Result<Vec<PathBuf>> {
    create_dir(dir)?;
    (0..count)
        .map(|i| {
            let path = dir.join(format!("img_{i:03}.{ext}"));
            write_image(&path, &image(&[height, width, 3], DType::U8, seed.wrapping_add(i as u64))?)?;
            Ok(path)
        })
        .collect()
}

/// Writes `count` grayscale PNGs `gray_000.png` of `dtype` (uint8 or uint16).
pub fn gray_pngs(
    dir: &Path,
    count: usize,
    height: usize,
    width: usize,
    dtype: DType,
    seed: u64,
) -> Result<Vec<PathBuf>> {
    create_dir(dir)?;
    (0..count)
        .map(|i| {
            let path = dir.join(format!("gray_{i:03}.png"));
            write_image(&path, &image(&[height, width], dtype, seed.wrapping_add(i as u64))?)?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_deterministic_and_span_the_range() {
        let a = image(&[4, 30, 40], DType::U16, 7).ok();
        assert_eq!(a, image(&[4, 30, 40], DType::U16, 7).ok());
        let Some(ArrayValue::U16(x)) = a else { unreachable!("uint16 requested") };
        let (lo, hi) = x.iter().fold((u16::MAX, 0), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(lo < 800 && hi > 3000 && hi < 4096, "range {lo}..{hi}");
        assert_ne!(image(&[5, 5], DType::U8, 1).ok(), image(&[5, 5], DType::U8, 2).ok());
    }
}
