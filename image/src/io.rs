//! Reading and writing image files (dask-image's `imread`, `imsave`).
//!
//! [`imread`] expands a glob, reads only the headers (shape, dtype, page
//! count) and returns a lazy [`Array`] whose axis 0 runs over the frames of
//! all files in name order: a PNG or JPEG is one frame, a multi-page TIFF one
//! frame per page. Each file is one block (a big TIFF stack can be cut into
//! runs of pages), read by its own `image.read` task. PNG and JPEG go through
//! the `image` crate, TIFF (multi-page, 8/16/32-bit integers, float32 and
//! float64) through the `tiff` crate.
//!
//! Paths may be `s3://` URLs and patterns (listed with pagination). On S3
//! the headers are parsed through a `SeekableObject` (a few ranged GETs of
//! 256 KiB blocks, not the whole file) and each read task GETs its own file.

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::{Path, PathBuf};

use rask_storage::{SeekableObject, StorageOptions};

use ndarray::{ArrayD, IxDyn};
use rask::Delayed;
use rask::core::{ArrayValue, DType, Element, OpEntry, OpError, Params, Value};
use rask_array::{Array, ChunkGrid};
use serde::{Deserialize, Serialize};

use crate::{ImageError, Result};

/// The registered op reading a run of frames of one file.
pub const READ_OP: &str = "image.read";

/// The container of an image file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    Png,
    Jpeg,
    Tiff,
}

impl Format {
    /// The format named by a path's extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "png" => Format::Png,
            "jpg" | "jpeg" => Format::Jpeg,
            "tif" | "tiff" => Format::Tiff,
            _ => return None,
        })
    }
}

/// What a header says about a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub format: Format,
    /// Frames (TIFF pages; 1 for PNG and JPEG).
    pub frames: usize,
    /// The shape of one frame: `(height, width)` or `(height, width, channels)`.
    pub frame_shape: Vec<usize>,
    pub dtype: DType,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Io { path: path.display().to_string(), message: e.to_string() }
}

fn decode_error(path: &Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Decode { path: path.display().to_string(), message: e.to_string() }
}

fn detect(path: &Path) -> Result<Format> {
    Format::from_path(path)
        .ok_or_else(|| decode_error(path, "unknown extension (expected .png, .jpg/.jpeg or .tif/.tiff)"))
}

/// Shape and dtype from `image`'s colour type.
fn from_color(color: image::ColorType, h: usize, w: usize) -> std::result::Result<(Vec<usize>, DType), String> {
    use image::ColorType as C;
    let (channels, dtype) = match color {
        C::L8 => (1, DType::U8),
        C::La8 => (2, DType::U8),
        C::Rgb8 => (3, DType::U8),
        C::Rgba8 => (4, DType::U8),
        C::L16 => (1, DType::U16),
        C::La16 => (2, DType::U16),
        C::Rgb16 => (3, DType::U16),
        C::Rgba16 => (4, DType::U16),
        C::Rgb32F => (3, DType::F32),
        C::Rgba32F => (4, DType::F32),
        other => return Err(format!("unsupported colour type {other:?}")),
    };
    Ok((if channels == 1 { vec![h, w] } else { vec![h, w, channels] }, dtype))
}

/// A byte source for the decoders: a local file, an S3 object read on
/// demand (headers), or a whole object in memory (pixel data).
trait Input: Read + Seek + Send {}
impl<T: Read + Seek + Send> Input for T {}
type Source = BufReader<Box<dyn Input>>;

/// Opens a path or `s3://` URL; `whole` fetches an S3 object at once (one
/// GET, concurrent ranged GETs when large) instead of block by block.
fn open_input(path: &Path, whole: bool, options: &StorageOptions) -> Result<Source> {
    let text = path.to_string_lossy();
    let input: Box<dyn Input> = if rask_storage::is_s3(&text) {
        if whole {
            Box::new(Cursor::new(rask_storage::read(&text, options).map_err(|e| io_error(path, e))?))
        } else {
            Box::new(SeekableObject::open(&text, options).map_err(|e| io_error(path, e))?)
        }
    } else {
        Box::new(File::open(path).map_err(|e| io_error(path, e))?)
    };
    Ok(BufReader::new(input))
}

fn tiff_decoder(path: &Path, whole: bool, options: &StorageOptions) -> Result<tiff::decoder::Decoder<Source>> {
    tiff::decoder::Decoder::new(open_input(path, whole, options)?)
        .map(|d| d.with_limits(tiff::decoder::Limits::unlimited()))
        .map_err(|e| decode_error(path, e))
}

/// How one TIFF page's samples are stored: contiguous (`RGBRGB…`, read as
/// `(h, w, samples)`) or planar (`RR…GG…BB…`, read as `(samples, h, w)`,
/// tifffile's default for a `(3, h, w)` array), in strips or tiles.
struct PageLayout {
    width: usize,
    height: usize,
    samples: usize,
    planar: bool,
    /// `(width, height)` of a tile, or `(width, rows per strip)` of a strip.
    chunk: (usize, usize),
}

impl PageLayout {
    fn read(path: &Path, d: &mut tiff::decoder::Decoder<Source>) -> Result<PageLayout> {
        use tiff::tags::Tag;
        let err = |e: tiff::TiffError| decode_error(path, e);
        let (w, h) = d.dimensions().map_err(err)?;
        let samples = usize::from(d.find_tag_unsigned::<u16>(Tag::SamplesPerPixel).map_err(err)?.unwrap_or(1));
        let planar = d.find_tag_unsigned::<u16>(Tag::PlanarConfiguration).map_err(err)?.unwrap_or(1) == 2;
        let chunk = match d.get_chunk_type() {
            tiff::decoder::ChunkType::Tile => {
                let tw = d.find_tag_unsigned::<u32>(Tag::TileWidth).map_err(err)?;
                let th = d.find_tag_unsigned::<u32>(Tag::TileLength).map_err(err)?;
                match (tw, th) {
                    (Some(tw), Some(th)) if tw > 0 && th > 0 => (tw as usize, th as usize),
                    _ => return Err(decode_error(path, "tiled TIFF page without a tile size")),
                }
            }
            tiff::decoder::ChunkType::Strip => {
                let rows = d.find_tag_unsigned::<u32>(Tag::RowsPerStrip).map_err(err)?.unwrap_or(h).clamp(1, h.max(1));
                (w as usize, rows as usize)
            }
        };
        Ok(PageLayout {
            width: w as usize,
            height: h as usize,
            samples: samples.max(1),
            planar: planar && samples > 1,
            chunk,
        })
    }

    fn frame_shape(&self) -> Vec<usize> {
        let (h, w, s) = (self.height, self.width, self.samples);
        if s == 1 {
            vec![h, w]
        } else if self.planar {
            vec![s, h, w]
        } else {
            vec![h, w, s]
        }
    }

    fn chunks_per_plane(&self) -> usize {
        self.width.div_ceil(self.chunk.0) * self.height.div_ceil(self.chunk.1)
    }

    /// Chunk `j` of a plane: its top-left corner and its size inside the page.
    fn chunk_rect(&self, j: usize) -> (usize, usize, usize, usize) {
        let across = self.width.div_ceil(self.chunk.0);
        let (x0, y0) = ((j % across) * self.chunk.0, (j / across) * self.chunk.1);
        (x0, y0, self.chunk.0.min(self.width - x0), self.chunk.1.min(self.height - y0))
    }

    /// The page's samples in `frame_shape` order, chunk by chunk. `read`
    /// decodes one chunk (strips and tiles alike, any compression the
    /// `tiff` crate knows); a chunk may come back with padding rows, which
    /// are dropped.
    fn assemble<T: Copy + Default>(
        &self,
        mut read: impl FnMut(u32) -> std::result::Result<Vec<T>, String>,
    ) -> std::result::Result<Vec<T>, String> {
        let (w, h, s) = (self.width, self.height, self.samples);
        let mut out = vec![T::default(); w * h * s];
        let per_chunk_samples = if self.planar { 1 } else { s };
        let planes = if self.planar { s } else { 1 };
        let per_plane = self.chunks_per_plane();
        for plane in 0..planes {
            for j in 0..per_plane {
                let index = u32::try_from(plane * per_plane + j).map_err(|_| "too many TIFF chunks".to_string())?;
                let (x0, y0, dw, dh) = self.chunk_rect(j);
                let row = dw * per_chunk_samples;
                let data = read(index)?;
                if row == 0 || dh == 0 {
                    continue;
                }
                if data.len() % row != 0 || data.len() / row < dh {
                    return Err(format!(
                        "chunk {index} decoded to {} samples, expected {dh} rows of {row}",
                        data.len()
                    ));
                }
                for r in 0..dh {
                    let src = &data[r * row..(r + 1) * row];
                    let at = if self.planar { plane * w * h + (y0 + r) * w + x0 } else { ((y0 + r) * w + x0) * s };
                    out[at..at + row].copy_from_slice(src);
                }
            }
        }
        Ok(out)
    }
}

/// Decodes the current TIFF page in `frame_shape` order.
fn read_tiff_page(
    path: &Path,
    d: &mut tiff::decoder::Decoder<Source>,
    dtype: DType,
) -> Result<tiff::decoder::DecodingResult> {
    use tiff::decoder::DecodingResult as R;
    let layout = PageLayout::read(path, d)?;
    macro_rules! variant {
        ($v:ident) => {{
            let page = layout.assemble(|i| match d.read_chunk(i).map_err(|e| e.to_string())? {
                R::$v(v) => Ok(v),
                _ => Err("chunks of one page decode to different sample types".to_string()),
            });
            R::$v(page.map_err(|e| decode_error(path, e))?)
        }};
    }
    Ok(match dtype {
        DType::U8 => variant!(U8),
        DType::U16 => variant!(U16),
        DType::U32 => variant!(U32),
        DType::U64 => variant!(U64),
        DType::I8 => variant!(I8),
        DType::I16 => variant!(I16),
        DType::I32 => variant!(I32),
        DType::I64 => variant!(I64),
        DType::F32 => variant!(F32),
        DType::F64 => variant!(F64),
        DType::Bool => return Err(decode_error(path, "unsupported TIFF sample type bool")),
    })
}

/// One TIFF page's frame shape and dtype.
fn tiff_page(path: &Path, d: &mut tiff::decoder::Decoder<Source>) -> Result<(Vec<usize>, DType)> {
    let layout = PageLayout::read(path, d)?;
    use tiff::ColorType as C;
    let bits = match d.colortype().map_err(|e| decode_error(path, e))? {
        C::Gray(b) | C::GrayA(b) | C::RGB(b) | C::RGBA(b) | C::CMYK(b) | C::CMYKA(b) => b,
        C::Multiband { bit_depth, .. } => bit_depth,
        other => return Err(decode_error(path, format!("unsupported TIFF colour type {other:?}"))),
    };
    // One SampleFormat per sample; rask reads pages whose samples share one.
    let formats = d
        .find_tag_unsigned_vec::<u16>(tiff::tags::Tag::SampleFormat)
        .map_err(|e| decode_error(path, e))?
        .unwrap_or_default();
    if formats.windows(2).any(|w| w[0] != w[1]) {
        return Err(decode_error(path, format!("samples of different formats {formats:?} in one page")));
    }
    let sample_format = formats.first().copied().unwrap_or(1);
    let dtype = match (sample_format, bits) {
        (1, 8) => DType::U8,
        (1, 16) => DType::U16,
        (1, 32) => DType::U32,
        (1, 64) => DType::U64,
        (2, 8) => DType::I8,
        (2, 16) => DType::I16,
        (2, 32) => DType::I32,
        (2, 64) => DType::I64,
        (3, 32) => DType::F32,
        (3, 64) => DType::F64,
        (f, b) => return Err(decode_error(path, format!("unsupported TIFF sample format {f} with {b} bits"))),
    };
    Ok((layout.frame_shape(), dtype))
}

/// Reads a file's header: frames, frame shape and dtype. No pixel data is
/// decoded (TIFF pages are counted by walking their directories).
pub fn read_info(path: &Path, options: &StorageOptions) -> Result<ImageInfo> {
    let format = detect(path)?;
    match format {
        Format::Png | Format::Jpeg => {
            let reader = image::ImageReader::new(open_input(path, false, options)?);
            let reader = reader.with_guessed_format().map_err(|e| io_error(path, e))?;
            let decoder = reader.into_decoder().map_err(|e| decode_error(path, e))?;
            let (w, h) = image::ImageDecoder::dimensions(&decoder);
            let color = image::ImageDecoder::color_type(&decoder);
            let (frame_shape, dtype) = from_color(color, h as usize, w as usize).map_err(|e| decode_error(path, e))?;
            Ok(ImageInfo { format, frames: 1, frame_shape, dtype })
        }
        Format::Tiff => {
            let mut d = tiff_decoder(path, false, options)?;
            let (frame_shape, dtype) = tiff_page(path, &mut d)?;
            let mut frames = 1;
            while d.more_images() {
                d.next_image().map_err(|e| decode_error(path, e))?;
                let (shape, dt) = tiff_page(path, &mut d)?;
                if shape != frame_shape || dt != dtype {
                    return Err(ImageError::Mismatch(format!(
                        "{}: page {frames} is {dt} {shape:?}, page 0 is {dtype} {frame_shape:?}",
                        path.display()
                    )));
                }
                frames += 1;
            }
            Ok(ImageInfo { format, frames, frame_shape, dtype })
        }
    }
}

fn typed<T: Element>(shape: &[usize], data: Vec<T>) -> std::result::Result<ArrayValue, String> {
    ArrayD::from_shape_vec(IxDyn(shape), data)
        .map(|a| T::wrap(a.into_shared()))
        .map_err(|e| format!("decoded data does not fill {shape:?}: {e}"))
}

/// Decodes a PNG or JPEG file fully (the reference for lossy JPEG).
pub fn read_png_or_jpeg(path: &Path, options: &StorageOptions) -> Result<ArrayValue> {
    use image::DynamicImage as D;
    let reader = image::ImageReader::new(open_input(path, true, options)?);
    let reader = reader.with_guessed_format().map_err(|e| io_error(path, e))?;
    let img = reader.decode().map_err(|e| decode_error(path, e))?;
    let (h, w) = (img.height() as usize, img.width() as usize);
    let (frame, _) = from_color(img.color(), h, w).map_err(|e| decode_error(path, e))?;
    let mut shape = vec![1];
    shape.extend(&frame);
    let out = match img {
        D::ImageLuma8(b) => typed(&shape, b.into_raw()),
        D::ImageLumaA8(b) => typed(&shape, b.into_raw()),
        D::ImageRgb8(b) => typed(&shape, b.into_raw()),
        D::ImageRgba8(b) => typed(&shape, b.into_raw()),
        D::ImageLuma16(b) => typed(&shape, b.into_raw()),
        D::ImageLumaA16(b) => typed(&shape, b.into_raw()),
        D::ImageRgb16(b) => typed(&shape, b.into_raw()),
        D::ImageRgba16(b) => typed(&shape, b.into_raw()),
        D::ImageRgb32F(b) => typed(&shape, b.into_raw()),
        D::ImageRgba32F(b) => typed(&shape, b.into_raw()),
        other => Err(format!("unsupported colour type {:?}", other.color())),
    };
    out.map_err(|e| decode_error(path, e))
}

/// Decodes `count` TIFF pages from `first` into one `(count, ...frame)` array.
pub fn read_tiff_pages(path: &Path, first: usize, count: usize, options: &StorageOptions) -> Result<ArrayValue> {
    use tiff::decoder::DecodingResult as R;
    let mut d = tiff_decoder(path, true, options)?;
    d.seek_to_image(first).map_err(|e| decode_error(path, e))?;
    let (frame, dtype) = tiff_page(path, &mut d)?;
    let mut shape = vec![count];
    shape.extend(&frame);
    let per_page: usize = frame.iter().product();
    let mut pages: Option<R> = None;
    for k in 0..count {
        if k > 0 {
            d.next_image().map_err(|e| decode_error(path, e))?;
        }
        let page = read_tiff_page(path, &mut d, dtype)?;
        pages = Some(match (pages, page) {
            (None, mut p) => {
                // One allocation for all pages, not a doubling per page.
                let more = per_page * (count - 1);
                match &mut p {
                    R::U8(a) => a.reserve_exact(more),
                    R::U16(a) => a.reserve_exact(more),
                    R::U32(a) => a.reserve_exact(more),
                    R::U64(a) => a.reserve_exact(more),
                    R::I8(a) => a.reserve_exact(more),
                    R::I16(a) => a.reserve_exact(more),
                    R::I32(a) => a.reserve_exact(more),
                    R::I64(a) => a.reserve_exact(more),
                    R::F32(a) => a.reserve_exact(more),
                    R::F64(a) => a.reserve_exact(more),
                    _ => {}
                }
                p
            }
            (Some(R::U8(mut a)), R::U8(b)) => {
                a.extend(b);
                R::U8(a)
            }
            (Some(R::U16(mut a)), R::U16(b)) => {
                a.extend(b);
                R::U16(a)
            }
            (Some(R::U32(mut a)), R::U32(b)) => {
                a.extend(b);
                R::U32(a)
            }
            (Some(R::U64(mut a)), R::U64(b)) => {
                a.extend(b);
                R::U64(a)
            }
            (Some(R::I8(mut a)), R::I8(b)) => {
                a.extend(b);
                R::I8(a)
            }
            (Some(R::I16(mut a)), R::I16(b)) => {
                a.extend(b);
                R::I16(a)
            }
            (Some(R::I32(mut a)), R::I32(b)) => {
                a.extend(b);
                R::I32(a)
            }
            (Some(R::I64(mut a)), R::I64(b)) => {
                a.extend(b);
                R::I64(a)
            }
            (Some(R::F32(mut a)), R::F32(b)) => {
                a.extend(b);
                R::F32(a)
            }
            (Some(R::F64(mut a)), R::F64(b)) => {
                a.extend(b);
                R::F64(a)
            }
            _ => {
                return Err(decode_error(
                    path,
                    format!("page {} has another sample type than page {first}", first + k),
                ));
            }
        });
    }
    let data = pages.ok_or_else(|| decode_error(path, "no pages requested"))?;
    let out = match data {
        R::U8(v) => typed(&shape, v),
        R::U16(v) => typed(&shape, v),
        R::U32(v) => typed(&shape, v),
        R::U64(v) => typed(&shape, v),
        R::I8(v) => typed(&shape, v),
        R::I16(v) => typed(&shape, v),
        R::I32(v) => typed(&shape, v),
        R::I64(v) => typed(&shape, v),
        R::F32(v) => typed(&shape, v),
        R::F64(v) => typed(&shape, v),
        _ => Err("unsupported sample type".to_string()),
    };
    let out = out.map_err(|e| decode_error(path, e))?;
    if out.dtype() != dtype || out.len() != per_page * count {
        return Err(decode_error(
            path,
            format!("decoded {} values of {}, header says {dtype}", out.len(), out.dtype()),
        ));
    }
    Ok(out)
}

/// Parameters of one `image.read` task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadTask {
    pub path: String,
    pub format: Format,
    pub first_frame: usize,
    pub frames: usize,
    pub frame_shape: Vec<usize>,
    pub dtype: DType,
    /// Per-call S3 settings, so workers read with the client's options.
    pub storage: StorageOptions,
}

fn read_op(p: &Params, _args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let task: ReadTask =
        postcard::from_bytes(&p.0).map_err(|e| OpError::new(format!("{READ_OP}: bad parameters: {e}")))?;
    let path = Path::new(&task.path);
    let value = match task.format {
        Format::Png | Format::Jpeg => read_png_or_jpeg(path, &task.storage),
        Format::Tiff => read_tiff_pages(path, task.first_frame, task.frames, &task.storage),
    }
    .map_err(|e| OpError::new(e.to_string()))?;
    let mut want = vec![task.frames];
    want.extend(&task.frame_shape);
    if value.shape() != want.as_slice() || value.dtype() != task.dtype {
        return Err(OpError::new(format!(
            "{}: the file changed since it was opened: read {} {:?}, expected {} {want:?}",
            task.path,
            value.dtype(),
            value.shape(),
            task.dtype
        )));
    }
    Ok(Value::Array(value))
}

rask::core::inventory::submit! { OpEntry { name: READ_OP, func: read_op } }

/// Options of [`imread_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImreadOptions {
    /// Cut multi-page files into blocks of this many frames (`None`: one
    /// block per file).
    pub frames_per_block: Option<usize>,
    /// Per-call S3 settings (endpoint, region, anonymous access) over the
    /// standard AWS environment; they travel in each read task.
    pub storage: StorageOptions,
}

fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The files a pattern names, sorted; an error if there are none.
/// `s3://bucket/prefix/*.tif` lists the prefix (with pagination).
pub fn expand(pattern: &str, options: &StorageOptions) -> Result<Vec<PathBuf>> {
    if rask_storage::is_s3(pattern) {
        let urls = rask_storage::expand(pattern, options).map_err(|e| ImageError::Value(e.to_string()))?;
        return Ok(urls.into_iter().map(PathBuf::from).collect());
    }
    if !has_glob(pattern) {
        let p = PathBuf::from(pattern);
        if !p.is_file() {
            return Err(io_error(&p, "no such file"));
        }
        return Ok(vec![p]);
    }
    let paths = glob::glob(pattern).map_err(|e| ImageError::Value(format!("bad glob pattern {pattern:?}: {e}")))?;
    let mut files = Vec::new();
    for entry in paths {
        let p = entry.map_err(|e| io_error(e.path(), e.error()))?;
        if p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(ImageError::Mismatch(format!("no files match {pattern:?}")));
    }
    Ok(files)
}

/// `dask_image.imread.imread(pattern)`: one block per file.
pub fn imread(pattern: &str) -> Result<Array> {
    imread_with(pattern, &ImreadOptions::default())
}

/// [`imread`] with options. All files must have the same frame shape and
/// dtype; they may have different page counts.
pub fn imread_with(pattern: &str, options: &ImreadOptions) -> Result<Array> {
    let files = expand(pattern, &options.storage)?;
    let mut infos = Vec::with_capacity(files.len());
    for f in &files {
        infos.push(read_info(f, &options.storage)?);
    }
    let first = &infos[0];
    for (f, info) in files.iter().zip(&infos).skip(1) {
        if info.frame_shape != first.frame_shape || info.dtype != first.dtype {
            return Err(ImageError::Mismatch(format!(
                "{} is {} {:?} but {} is {} {:?}: the files of one array must agree",
                f.display(),
                info.dtype,
                info.frame_shape,
                files[0].display(),
                first.dtype,
                first.frame_shape
            )));
        }
    }
    // Blocks along axis 0: (file, first frame, frames).
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for (i, info) in infos.iter().enumerate() {
        let step = options.frames_per_block.unwrap_or(info.frames).max(1);
        let mut start = 0;
        while start < info.frames {
            let n = step.min(info.frames - start);
            runs.push((i, start, n));
            start += n;
        }
    }
    let mut sizes: Vec<Vec<usize>> = vec![runs.iter().map(|r| r.2).collect()];
    sizes.extend(first.frame_shape.iter().map(|&s| vec![s]));
    let grid = ChunkGrid::from_sizes(sizes);
    let mut token = Vec::new();
    let mut abs_paths = Vec::with_capacity(files.len());
    for f in &files {
        let text = f.to_string_lossy();
        if rask_storage::is_s3(&text) {
            let version = rask_storage::stat(&text, &options.storage).map_err(|e| io_error(f, e))?.version;
            token.extend_from_slice(format!("{text}|{version}|").as_bytes());
            abs_paths.push(text.into_owned());
            continue;
        }
        let abs = std::fs::canonicalize(f).map_err(|e| io_error(f, e))?;
        let modified = std::fs::metadata(&abs).and_then(|m| m.modified()).map(|t| format!("{t:?}")).unwrap_or_default();
        token.extend_from_slice(format!("{}|{modified}|", abs.display()).as_bytes());
        abs_paths.push(abs.to_string_lossy().to_string());
    }
    token.extend_from_slice(format!("{options:?}").as_bytes());
    let dtype = first.dtype;
    Ok(Array::from_block_tasks("imread", &token, dtype, grid, |idx, key| {
        let (file, start, n) = runs[idx[0]];
        let task = ReadTask {
            path: abs_paths[file].clone(),
            format: infos[file].format,
            first_frame: start,
            frames: n,
            frame_shape: infos[file].frame_shape.clone(),
            dtype,
            storage: options.storage.clone(),
        };
        Delayed::from_task(key, READ_OP, Params::encode(&task), vec![])
    }))
}

fn frame_dims(shape: &[usize], path: &Path) -> Result<(u32, u32, usize)> {
    let (h, w, c) = match shape {
        [h, w] => (*h, *w, 1),
        [h, w, c] if (1..=4).contains(c) => (*h, *w, *c),
        other => {
            return Err(ImageError::Value(format!(
                "{}: an image frame must be (height, width) or (height, width, 1-4 channels), got {other:?}",
                path.display()
            )));
        }
    };
    let to_u32 = |v: usize| {
        u32::try_from(v).map_err(|_| ImageError::Value(format!("{}: {v} pixels is too large", path.display())))
    };
    Ok((to_u32(h)?, to_u32(w)?, c))
}

/// Writes one frame (`(h, w)` or `(h, w, channels)`, uint8 or uint16) as
/// PNG or JPEG (quality 90), chosen by the extension.
fn write_png_or_jpeg(out: &mut dyn Sink, path: &Path, frame: &ArrayValue, format: Format) -> Result<()> {
    use image::ExtendedColorType as E;
    let (h, w, c) = frame_dims(frame.shape(), path)?;
    let (bytes, color): (Vec<u8>, E) = match (frame, c) {
        (ArrayValue::U8(a), _) => (a.iter().copied().collect(), [E::L8, E::La8, E::Rgb8, E::Rgba8][c - 1]),
        (ArrayValue::U16(a), _) if format == Format::Png => {
            (a.iter().flat_map(|v| v.to_ne_bytes()).collect(), [E::L16, E::La16, E::Rgb16, E::Rgba16][c - 1])
        }
        (other, _) => {
            return Err(ImageError::Value(format!(
                "{}: cannot write {} pixels as {format:?} (PNG takes uint8/uint16, JPEG uint8)",
                path.display(),
                other.dtype()
            )));
        }
    };
    let result = match format {
        Format::Jpeg => {
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut *out, 90);
            image::ImageEncoder::write_image(enc, &bytes, w, h, color)
        }
        _ => {
            let enc = image::codecs::png::PngEncoder::new(&mut *out);
            image::ImageEncoder::write_image(enc, &bytes, w, h, color)
        }
    };
    result.map_err(|e| io_error(path, e))
}

/// Writes frames `(pages, h, w[, c])` as one multi-page TIFF.
fn write_tiff(out: &mut dyn Sink, path: &Path, stack: &ArrayValue) -> Result<()> {
    use tiff::encoder::{TiffEncoder, colortype};
    let shape = stack.shape();
    let Some((&pages, frame)) = shape.split_first() else {
        return Err(ImageError::Value(format!("{}: a TIFF stack needs at least 3 axes", path.display())));
    };
    let (h, w, c) = frame_dims(frame, path)?;
    let per_page: usize = frame.iter().product();
    let mut enc = TiffEncoder::new(out).map_err(|e| io_error(path, e))?;
    let err = |e: tiff::TiffError| io_error(path, e);
    macro_rules! pages {
        ($a:expr, $gray:ty, $rgb:ty, $rgba:ty) => {{
            let data: Vec<_> = $a.iter().copied().collect();
            for p in 0..pages {
                let page = &data[p * per_page..(p + 1) * per_page];
                match c {
                    1 => enc.write_image::<$gray>(w, h, page).map_err(err)?,
                    3 => enc.write_image::<$rgb>(w, h, page).map_err(err)?,
                    4 => enc.write_image::<$rgba>(w, h, page).map_err(err)?,
                    _ => {
                        return Err(ImageError::Value(format!(
                            "{}: TIFF frames take 1, 3 or 4 channels",
                            path.display()
                        )));
                    }
                }
            }
        }};
    }
    match stack {
        ArrayValue::U8(a) => pages!(a, colortype::Gray8, colortype::RGB8, colortype::RGBA8),
        ArrayValue::U16(a) => pages!(a, colortype::Gray16, colortype::RGB16, colortype::RGBA16),
        ArrayValue::F32(a) => pages!(a, colortype::Gray32Float, colortype::RGB32Float, colortype::RGBA32Float),
        ArrayValue::I16(a) => pages!(a, colortype::GrayI16, colortype::GrayI16, colortype::GrayI16),
        other => {
            return Err(ImageError::Value(format!(
                "{}: TIFF writing takes uint8, uint16, int16 or float32, got {}",
                path.display(),
                other.dtype()
            )));
        }
    }
    Ok(())
}

/// Where an encoder writes: a buffered local file or an in-memory buffer
/// bound for S3 (TIFF needs to seek back to patch offsets).
trait Sink: std::io::Write + Seek {}
impl<T: std::io::Write + Seek> Sink for T {}

/// Runs `encode` into `path`: a local file, or an `s3://` object that
/// appears only once complete (one PUT, or a multipart upload aborted on
/// failure).
fn store(path: &Path, options: &StorageOptions, encode: impl FnOnce(&mut dyn Sink) -> Result<()>) -> Result<()> {
    let text = path.to_string_lossy();
    if rask_storage::is_s3(&text) {
        let mut buf = Cursor::new(Vec::new());
        encode(&mut buf)?;
        return rask_storage::write(&text, buf.get_ref(), options).map_err(|e| io_error(path, e));
    }
    let file = File::create(path).map_err(|e| io_error(path, e))?;
    let mut out = std::io::BufWriter::new(file);
    encode(&mut out)?;
    std::io::Write::flush(&mut out).map_err(|e| io_error(path, e))
}

/// Writes an in-memory image: a TIFF holds a `(pages, h, w[, c])` stack (or
/// one `(h, w)` frame), a PNG or JPEG one `(h, w[, c])` frame.
pub fn write_image(path: impl AsRef<Path>, image: &ArrayValue) -> Result<()> {
    write_image_with(path, image, &StorageOptions::default())
}

/// [`write_image`] to a local path or an `s3://` URL with per-call S3
/// settings.
pub fn write_image_with(path: impl AsRef<Path>, image: &ArrayValue, options: &StorageOptions) -> Result<()> {
    let path = path.as_ref();
    match detect(path)? {
        Format::Tiff => {
            if image.shape().len() == 2 {
                let mut shape = vec![1];
                shape.extend(image.shape());
                let reshaped = rask::core::with_array!(image, a => {
                    let v = a.clone().into_shape_with_order(IxDyn(&shape)).map_err(|e| ImageError::Value(e.to_string()))?;
                    Element::wrap(v)
                });
                store(path, options, |out| write_tiff(out, path, &reshaped))
            } else {
                store(path, options, |out| write_tiff(out, path, image))
            }
        }
        f => store(path, options, |out| write_png_or_jpeg(out, path, image, f)),
    }
}

/// `imwrite`: computes `array` and writes it. A `.tif`/`.tiff` path gets the
/// whole array as one multi-page file; for PNG and JPEG, `path` must contain
/// `{}`, replaced by the frame number along axis 0 (one file per frame).
/// `path` may be an `s3://` URL; each object appears only once complete.
pub fn imwrite(array: &Array, path: &str) -> Result<Vec<PathBuf>> {
    imwrite_with(array, path, &StorageOptions::default())
}

/// [`imwrite`] with per-call S3 settings.
pub fn imwrite_with(array: &Array, path: &str, options: &StorageOptions) -> Result<Vec<PathBuf>> {
    let value = array.compute()?;
    let format = detect(Path::new(path))?;
    if format == Format::Tiff {
        write_image_with(path, &value, options)?;
        return Ok(vec![PathBuf::from(path)]);
    }
    if !path.contains("{}") {
        return Err(ImageError::Value(format!(
            "{path}: a PNG/JPEG path for several frames needs {{}} for the frame number"
        )));
    }
    let frames = value.shape().first().copied().unwrap_or(0);
    let mut written = Vec::with_capacity(frames);
    for i in 0..frames {
        let frame = rask::core::with_array!(&value, a => Element::wrap(a.index_axis(ndarray::Axis(0), i).to_owned().into_shared()));
        let p = PathBuf::from(path.replace("{}", &format!("{i:04}")));
        write_image_with(&p, &frame, options)?;
        written.push(p);
    }
    Ok(written)
}
