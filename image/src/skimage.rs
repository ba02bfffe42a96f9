//! scikit-image's `skimage.filters.gaussian`: the image is first made float
//! (`img_as_float`, or kept in range with `preserve_range`), channels are
//! left unmixed with `channel_axis`, then `scipy.ndimage.gaussian_filter`
//! runs with `mode="nearest"` by default.

use rask::core::DType;
use rask_array::{Array, BinaryOp, Fill};

use crate::filters::{FilterOptions, gaussian_filter_order};
use crate::kernels::Mode;
use crate::{ImageError, Result};

/// Options of [`gaussian`], with scikit-image's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaussianOptions {
    /// Edge mode (`nearest` by default, unlike scipy).
    pub mode: Mode,
    pub cval: f64,
    /// Keep the input's value range instead of scaling integers to [0, 1].
    pub preserve_range: bool,
    /// The axis holding colour channels, not smoothed (negative counts from
    /// the end).
    pub channel_axis: Option<isize>,
    pub truncate: f64,
}

impl Default for GaussianOptions {
    fn default() -> Self {
        Self { mode: Mode::Nearest, cval: 0.0, preserve_range: false, channel_axis: None, truncate: 4.0 }
    }
}

/// The largest value of an integer dtype (`np.iinfo(dtype).max`).
fn integer_max(dtype: DType) -> Option<f64> {
    Some(match dtype {
        DType::U8 => f64::from(u8::MAX),
        DType::U16 => f64::from(u16::MAX),
        DType::U32 => f64::from(u32::MAX),
        DType::U64 => u64::MAX as f64,
        DType::I8 => f64::from(i8::MAX),
        DType::I16 => f64::from(i16::MAX),
        DType::I32 => f64::from(i32::MAX),
        DType::I64 => i64::MAX as f64,
        _ => return None,
    })
}

/// `skimage.img_as_float` (`preserve_range=false`) or the plain float cast
/// (`true`): float32 stays float32, everything else becomes float64;
/// integers are multiplied by `1 / max` (signed ones clipped at -1).
pub fn to_float(image: &Array, preserve_range: bool) -> Result<Array> {
    let dtype = image.dtype();
    if matches!(dtype, DType::F32 | DType::F64) {
        return Ok(image.clone());
    }
    if dtype == DType::Bool {
        return Err(ImageError::Value("boolean images are not supported by gaussian; cast to uint8 first".into()));
    }
    let float = image.astype(DType::F64);
    if preserve_range {
        return Ok(float);
    }
    let max = integer_max(dtype).unwrap_or(1.0);
    let scaled = float.scalar(BinaryOp::Mul, Fill::Float(1.0 / max))?;
    let signed = matches!(dtype, DType::I8 | DType::I16 | DType::I32 | DType::I64);
    Ok(if signed { scaled.scalar(BinaryOp::Max, Fill::Float(-1.0))? } else { scaled })
}

/// `skimage.filters.gaussian(image, sigma, ...)`. `sigma` takes one value or
/// one per axis (one per non-channel axis when `channel_axis` is set).
pub fn gaussian(image: &Array, sigma: &[f64], options: &GaussianOptions) -> Result<Array> {
    let ndim = image.ndim();
    if sigma.iter().any(|&s| s < 0.0) {
        return Err(ImageError::Value("Sigma values less than zero are not valid".into()));
    }
    let mut sigma = sigma.to_vec();
    if let Some(axis) = options.channel_axis {
        let channel = axis.rem_euclid(ndim.max(1) as isize) as usize;
        if sigma.len() == 1 {
            sigma = vec![sigma[0]; ndim.saturating_sub(1)];
        }
        if sigma.len() + 1 == ndim {
            sigma.insert(channel, 0.0);
        }
    }
    let float = to_float(image, options.preserve_range)?;
    let filter_options = FilterOptions { mode: options.mode.into(), cval: options.cval, output: None };
    gaussian_filter_order(&float, &sigma, &[0], options.truncate, &filter_options)
}
