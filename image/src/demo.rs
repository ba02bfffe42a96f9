//! The two dask-image tutorial pipelines, on generated data.
//!
//! (a) RGB photographs: `imread("*.jpg")`, `images[:, ::4, ::4, 0]`,
//! `gaussian_filter(sigma=(0, 2, 2))`, the original and the filtered images
//! computed together (one graph, the shared reads run once), written as PNGs.
//! (b) 3-D TIFF volumes: for each file `imread`, scikit-image's `gaussian` of
//! `im[0:40]` with sigma 0.1, its mean; then the largest mean.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rask::core::{ArrayValue, DType};
use rask_array::{Array, Index};

use crate::filters::{FilterOptions, gaussian_filter};
use crate::io::{imread, write_image};
use crate::skimage::{GaussianOptions, gaussian};
use crate::{ImageError, Result, synth};

/// What the demo generates and where.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoConfig {
    /// Working directory for the generated inputs and the outputs.
    pub dir: PathBuf,
    /// RGB JPEGs for pipeline (a), and their size (height, width).
    pub photos: usize,
    pub photo_shape: (usize, usize),
    /// TIFF volumes for pipeline (b), and their shape (pages, height, width).
    pub volumes: usize,
    pub volume_shape: [usize; 3],
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir().join("rask-image-demo"),
            photos: 4,
            photo_shape: (864, 1296),
            volumes: 3,
            volume_shape: [60, 256, 256],
            seed: 42,
        }
    }
}

/// The demo's results.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoReport {
    /// Shape of `images[:, ::4, ::4, 0]`.
    pub subsampled_shape: Vec<usize>,
    /// Mean of the original and of the filtered subsampled images.
    pub original_mean: f64,
    pub filtered_mean: f64,
    /// The PNGs written (original and filtered, per photo).
    pub pngs: Vec<PathBuf>,
    /// Mean of the smoothed `im[0:40]` per volume, and their maximum.
    pub volume_means: Vec<f64>,
    pub max_mean: f64,
}

fn mean_of(a: &ArrayValue) -> f64 {
    let ArrayValue::F64(x) = rask_array::dtype::cast(a, DType::F64) else { return f64::NAN };
    if x.is_empty() { f64::NAN } else { x.iter().sum::<f64>() / x.len() as f64 }
}

fn frame(a: &ArrayValue, index: &[usize]) -> ArrayValue {
    rask::core::with_array!(a, x => {
        let mut v = x.view();
        for &i in index {
            v = v.index_axis_move(ndarray::Axis(0), i);
        }
        rask::core::Element::wrap(v.to_owned().into_shared())
    })
}

/// Pipeline (a) on the JPEGs in `dir`; writes the PNGs into `out`.
fn photos(pattern: &str, out: &Path) -> Result<(Vec<usize>, f64, f64, Vec<PathBuf>)> {
    let images = imread(pattern)?;
    println!("  imread({pattern}) -> {images:?}");
    let every4 = Index::Range { start: None, stop: None, step: 4 };
    let all = Index::Range { start: None, stop: None, step: 1 };
    let sub = images.slice(&[all, every4, every4, Index::At(0)])?;
    let smoothed = gaussian_filter(&sub, &[0.0, 2.0, 2.0], &FilterOptions::default())?;
    // One compute for both outputs: the reads and the slice are shared.
    let both = Array::stack(&[sub.clone(), smoothed], 0)?.compute()?;
    let shape = both.shape()[1..].to_vec();
    let (original, filtered) = (frame(&both, &[0]), frame(&both, &[1]));
    let mut pngs = Vec::new();
    for i in 0..shape[0] {
        for (name, value) in [("original", &original), ("filtered", &filtered)] {
            let path = out.join(format!("{name}_{i}.png"));
            write_image(&path, &frame(value, &[i]))?;
            pngs.push(path);
        }
    }
    Ok((shape, mean_of(&original), mean_of(&filtered), pngs))
}

/// Pipeline (b): per volume, the mean of skimage's gaussian of `im[0:40]`,
/// all files in one graph (so they run in parallel), then the maximum.
fn volumes(paths: &[PathBuf]) -> Result<Vec<f64>> {
    let mut lazy = Vec::with_capacity(paths.len());
    for p in paths {
        let im = imread(&p.to_string_lossy())?;
        let head = im.slice(&[Index::Range { start: Some(0), stop: Some(40), step: 1 }])?;
        let smooth = gaussian(&head, &[0.1], &GaussianOptions::default())?;
        println!("  {}: {im:?}", p.display());
        lazy.push(smooth.mean()?);
    }
    let stacked = Array::stack(&lazy, 0)?.compute()?;
    let ArrayValue::F64(means) = rask_array::dtype::cast(&stacked, DType::F64) else {
        return Err(ImageError::Value("the means are not numbers".into()));
    };
    let means: Vec<f64> = means.iter().copied().collect();
    for (p, m) in paths.iter().zip(&means) {
        println!("  mean of gaussian(imread({}) [0:40], sigma=0.1) = {m:.6}", p.display());
    }
    Ok(means)
}

/// Generates the inputs under `config.dir`, runs both pipelines on the
/// current rask client and prints what they compute.
pub fn run(config: &DemoConfig) -> Result<DemoReport> {
    let t0 = Instant::now();
    let (h, w) = config.photo_shape;
    let photo_dir = config.dir.join("photos");
    let volume_dir = config.dir.join("volumes");
    let out_dir = config.dir.join("out");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| ImageError::Io { path: out_dir.display().to_string(), message: e.to_string() })?;
    synth::rgb_images(&photo_dir, config.photos, h, w, "jpg", config.seed)?;
    let vols = synth::tiff_stacks(&volume_dir, config.volumes, config.volume_shape, DType::U16, config.seed)?;
    println!(
        "generated {} RGB JPEGs {h}x{w} and {} uint16 TIFF volumes {:?} in {:.2?}",
        config.photos,
        config.volumes,
        config.volume_shape,
        t0.elapsed()
    );

    println!("(a) photos: images[:, ::4, ::4, 0], gaussian_filter(sigma=(0, 2, 2))");
    let t1 = Instant::now();
    let pattern = photo_dir.join("*.jpg").to_string_lossy().to_string();
    let (subsampled_shape, original_mean, filtered_mean, pngs) = photos(&pattern, &out_dir)?;
    println!(
        "  {subsampled_shape:?} uint8: mean {original_mean:.3} -> {filtered_mean:.3} after smoothing; {} PNGs in {} ({:.2?})",
        pngs.len(),
        out_dir.display(),
        t1.elapsed()
    );

    println!("(b) volumes: skimage gaussian(im[0:40], sigma=0.1).mean(), max over files");
    let t2 = Instant::now();
    let volume_means = volumes(&vols)?;
    let max_mean = volume_means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    println!("  max of the means: {max_mean:.6} ({:.2?})", t2.elapsed());
    Ok(DemoReport { subsampled_shape, original_mean, filtered_mean, pngs, volume_means, max_mean })
}
