//! Image stacks and `scipy.ndimage`-style filters over chunked rask arrays:
//! the dask-image of rask.
//!
//! - [`io`]: `imread` (PNG, JPEG, TIFF stacks) into a lazy [`Array`] with
//!   one block per file (or per page run of big TIFFs), `imwrite`.
//! - [`filters`]: Gaussian, uniform, median, minimum/maximum, Sobel, Prewitt,
//!   Laplace, Gaussian Laplace, gradient magnitude, correlate/convolve with
//!   scipy's modes (one per axis where scipy allows it), dtypes and rounding, through `map_overlap`, so any chunking gives the
//!   same result.
//! - [`skimage`]: scikit-image's `gaussian` (float conversion,
//!   `preserve_range`, `channel_axis`).
//! - [`measure`]: connected-component `label` across chunks and per-label
//!   statistics.
//! - With the `testing` feature (tests, benchmarks and `rask demo`; not part
//!   of the library's API): `synth`, synthetic images and stacks, so tests
//!   and benchmarks download nothing, and `demo`, the dask-image tutorial
//!   pipelines.
//!
//! [`Array`]: rask_array::Array

#[cfg(feature = "testing")]
pub mod demo;
pub mod filters;
pub mod io;
pub mod kernels;
pub mod measure;
pub mod skimage;
#[cfg(feature = "testing")]
pub mod synth;

pub use filters::{
    Filter, FilterOptions, Footprint, Kernel, Modes, convolve, correlate, gaussian_filter, gaussian_filter_order,
    gaussian_gradient_magnitude, gaussian_laplace, laplace, maximum_filter, median_filter, median_filter_footprint,
    minimum_filter, percentile_filter, prewitt, rank_filter, sobel, uniform_filter,
};
pub use io::{ImreadOptions, imread, imread_with, imwrite, imwrite_with, write_image, write_image_with};
pub use kernels::Mode;
/// Per-call S3 settings for `imread_with` (in `ImreadOptions`) and `imwrite_with`.
pub use rask_storage::StorageOptions;

/// Errors of image reading, writing and filtering.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file could not be opened, read or written.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A file is not a readable image of a supported kind.
    #[error("{path}: not a supported image: {message}")]
    Decode { path: String, message: String },
    /// Files of one glob disagree (shape, dtype), or a pattern matched none.
    #[error("{0}")]
    Mismatch(String),
    /// A bad argument.
    #[error("{0}")]
    Value(String),
    #[error(transparent)]
    Array(#[from] rask_array::ArrayError),
    #[error(transparent)]
    Compute(#[from] rask::Error),
}

/// The result of rask-image's functions.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
