//! `Array`: a lazy n-dimensional array cut into blocks, each block a task.
//!
//! Metadata (dtype, shape, chunk grid) is known without computing anything;
//! every operation builds new block tasks from the old ones, so `compute`
//! runs the whole expression on the cluster. Keys are `(name, i, j, ...)`
//! with the name derived from the operation and its inputs, so identical
//! expressions share work.

use std::fmt;
use std::io::Write;
use std::sync::Arc;

use ndarray::{ArrayD, SliceInfoElem};
use rask::core::{ArrayValue, DType, Element, Key, Params, Value, with_array};
use rask::{ArgPart, Client, Delayed};
use rask_storage::StorageOptions;

use crate::chunks::{ChunkGrid, Chunks};
use crate::dtype::{promote, promote_scalar};
use crate::kernels::{
    self, ArangeParams, BinaryOp, BinaryParams, Distribution, Fill, FullParams, RandomParams, ReduceParams, Reduction,
    Sel, Stage, UnaryOp,
};
use crate::{ArrayError, Result};

/// A chunked array. Cloning is cheap: blocks are shared.
#[derive(Clone)]
pub struct Array {
    name: Arc<str>,
    dtype: DType,
    grid: ChunkGrid,
    /// Block tasks in C order of block index.
    blocks: Vec<Delayed<ArrayValue>>,
    /// Set by `full` (so `zeros` and `ones`): every element is this value,
    /// exactly representable in `dtype`. An elementwise operation with such
    /// an array becomes the operation with the scalar, which gives the same
    /// values without building, storing or reading the constant blocks.
    constant: Option<Fill>,
}

fn token_of(parts: &[&[u8]]) -> String {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(&(p.len() as u64).to_le_bytes());
        all.extend_from_slice(p);
    }
    rask::core::key::token(&all)
}

fn block_key(name: &Arc<str>, index: &[usize]) -> Key {
    let idx: Vec<u32> = index.iter().map(|&i| i as u32).collect();
    Key::chunk(name.clone(), &idx)
}

impl Array {
    fn build(
        prefix: &str,
        token_parts: &[&[u8]],
        dtype: DType,
        grid: ChunkGrid,
        mut block: impl FnMut(&[usize], Key) -> Delayed<ArrayValue>,
    ) -> Self {
        let name: Arc<str> = Arc::from(format!("{prefix}-{}", token_of(token_parts)));
        let blocks = grid.indices().iter().map(|idx| block(idx, block_key(&name, idx))).collect();
        Self { name, dtype, grid, blocks, constant: None }
    }

    /// Dask's `da.Array(graph, name, chunks, dtype)`: an array whose blocks
    /// are tasks made by the caller (e.g. one file read per block). `token`
    /// must identify the content (paths, modification times, parameters), as
    /// the array's name, and so its keys, are derived from it; `block` gets
    /// each block's index and the key its task must have.
    pub fn from_block_tasks(
        prefix: &str,
        token: &[u8],
        dtype: DType,
        grid: ChunkGrid,
        block: impl FnMut(&[usize], Key) -> Delayed<ArrayValue>,
    ) -> Self {
        Self::build(prefix, &[token], dtype, grid, block)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn ndim(&self) -> usize {
        self.grid.ndim()
    }

    /// Axis lengths; `None` where unknown.
    pub fn shape(&self) -> Vec<Option<usize>> {
        self.grid.shape()
    }

    pub fn chunks(&self) -> &ChunkGrid {
        &self.grid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn npartitions(&self) -> usize {
        self.blocks.len()
    }

    /// Dask's `x.to_delayed()`: the block tasks, in C order of block index
    /// (see [`Array::chunks`] for the grid), for building graphs over them.
    pub fn to_delayed(&self) -> &[Delayed<ArrayValue>] {
        &self.blocks
    }

    /// Bytes of the whole array, if its shape is known.
    pub fn nbytes(&self) -> Option<usize> {
        self.shape().into_iter().product::<Option<usize>>().map(|n| n * self.dtype.itemsize())
    }

    /// Tasks in the graph behind this array.
    pub fn task_count(&self) -> usize {
        rask::task_count(&self.blocks)
    }

    // ------------------------------------------------------------- creation

    /// `full(shape, value)`, with `dtype` chosen by the caller.
    pub fn full(shape: &[usize], value: Fill, dtype: DType, chunks: Chunks) -> Result<Self> {
        let grid = ChunkGrid::normalize(shape, &chunks, dtype.itemsize())?;
        let tok = postcard::to_stdvec(&(shape, value, dtype, format!("{grid:?}"))).unwrap_or_default();
        let g = grid.clone();
        let mut full = Self::build("full", &[&tok], dtype, grid, |idx, key| {
            let shape = g.block_shape(idx).unwrap_or_default();
            Delayed::from_task(key, kernels::FULL, Params::encode(&FullParams { shape, dtype, value }), vec![])
        });
        full.constant = crate::dtype::holds_exactly(dtype, value).then_some(value);
        Ok(full)
    }

    pub fn zeros(shape: &[usize], dtype: DType, chunks: Chunks) -> Result<Self> {
        Self::full(shape, Fill::Int(0), dtype, chunks)
    }

    pub fn ones(shape: &[usize], dtype: DType, chunks: Chunks) -> Result<Self> {
        Self::full(shape, Fill::Int(1), dtype, chunks)
    }

    /// `arange(start, stop, step)`: integers stay int64, floats give float64.
    pub fn arange(start: Fill, stop: Fill, step: Fill, chunks: Chunks) -> Result<Self> {
        let f = |x: Fill| match x {
            Fill::Int(i) => i as f64,
            Fill::Float(v) => v,
            Fill::Bool(b) => f64::from(u8::from(b)),
        };
        if f(step) == 0.0 {
            return Err(ArrayError::Value("arange: step must not be zero".into()));
        }
        let len = ((f(stop) - f(start)) / f(step)).ceil().max(0.0) as usize;
        let dtype = match (start, stop, step) {
            (Fill::Int(_), Fill::Int(_), Fill::Int(_)) => DType::I64,
            _ => DType::F64,
        };
        let grid = ChunkGrid::normalize(&[len], &chunks, dtype.itemsize())?;
        let tok = postcard::to_stdvec(&(start, stop, step, format!("{grid:?}"))).unwrap_or_default();
        let g = grid.clone();
        Ok(Self::build("arange", &[&tok], dtype, grid, |idx, key| {
            let offset = g.block_offset(idx).unwrap_or_default()[0];
            let len = g.block_shape(idx).unwrap_or_default()[0];
            let p = ArangeParams { start, step, offset, len, dtype, exact_last: None };
            Delayed::from_task(key, kernels::ARANGE, Params::encode(&p), vec![])
        }))
    }

    /// `linspace(start, stop, num)` (endpoint included), float64.
    pub fn linspace(start: f64, stop: f64, num: usize, chunks: Chunks) -> Result<Self> {
        let grid = ChunkGrid::normalize(&[num], &chunks, 8)?;
        let step = if num > 1 { (stop - start) / (num - 1) as f64 } else { 0.0 };
        let tok = postcard::to_stdvec(&(start, stop, num, format!("{grid:?}"))).unwrap_or_default();
        let g = grid.clone();
        Ok(Self::build("linspace", &[&tok], DType::F64, grid, |idx, key| {
            let p = ArangeParams {
                start: Fill::Float(start),
                step: Fill::Float(step),
                offset: g.block_offset(idx).unwrap_or_default()[0],
                len: g.block_shape(idx).unwrap_or_default()[0],
                dtype: DType::F64,
                exact_last: (num > 1).then_some((num - 1, stop)),
            };
            Delayed::from_task(key, kernels::ARANGE, Params::encode(&p), vec![])
        }))
    }

    /// `eye(n, m, k)`: ones on the k-th diagonal.
    pub fn eye(n: usize, m: Option<usize>, k: isize, dtype: DType, chunks: Chunks) -> Result<Self> {
        let shape = [n, m.unwrap_or(n)];
        let grid = ChunkGrid::normalize(&shape, &chunks, dtype.itemsize())?;
        let tok = postcard::to_stdvec(&(shape, k, dtype, format!("{grid:?}"))).unwrap_or_default();
        let g = grid.clone();
        Ok(Self::build("eye", &[&tok], dtype, grid, |idx, key| {
            let p = kernels::EyeParams {
                offset: g.block_offset(idx).unwrap_or_default(),
                block: g.block_shape(idx).unwrap_or_default(),
                k,
                dtype,
            };
            Delayed::from_task(key, kernels::EYE, Params::encode(&p), vec![])
        }))
    }

    /// `da.from_npy`-like: a lazy array over a `.npy` file. Only the header is
    /// read now; each block later reads just the rows it spans.
    pub fn from_npy(path: impl AsRef<std::path::Path>, chunks: Chunks) -> Result<Self> {
        let path = path.as_ref();
        let header = crate::npy::read_header(path)?;
        let grid = ChunkGrid::normalize(&header.shape, &chunks, header.dtype.itemsize())?;
        let abs = std::fs::canonicalize(path).map_err(|e| ArrayError::Value(format!("{}: {e}", path.display())))?;
        let path_text = abs.to_string_lossy().to_string();
        let modified = std::fs::metadata(&abs).and_then(|m| m.modified()).map(|t| format!("{t:?}")).unwrap_or_default();
        let tok = format!("{path_text}-{modified}-{grid:?}");
        let g = grid.clone();
        let dtype = header.dtype;
        Ok(Self::build("from-npy", &[tok.as_bytes()], dtype, grid, |idx, key| {
            let p = crate::npy::ReadParams {
                path: path_text.clone(),
                header: header.clone(),
                offset: g.block_offset(idx).unwrap_or_default(),
                block: g.block_shape(idx).unwrap_or_default(),
            };
            Delayed::from_task(key, kernels::NPY_READ, Params::encode(&p), vec![])
        }))
    }

    /// Writes the array to one `.npy` file that numpy reads. Blocks are
    /// computed a row-band at a time and streamed, so the array never has to
    /// fit in memory; the file appears under its name only when complete.
    pub fn to_npy(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        let shape: Vec<usize> = self.shape().into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
            ArrayError::UnknownChunks("to_npy needs known chunk sizes; call compute_chunk_sizes() first".into())
        })?;
        let rows = self.whole_rows();
        let client = Client::current()?;
        let (mut w, tmp) = crate::npy::create(path)?;
        let io = |e: std::io::Error| ArrayError::Value(format!("{}: {e}", path.display()));
        crate::npy::write_header(&mut w, self.dtype, &shape).map_err(io)?;
        for block in &rows.blocks {
            let value = client.compute(block).result()?;
            crate::npy::write_values(&mut w, &value).map_err(io)?;
        }
        w.flush().map_err(io)?;
        drop(w);
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// `da.from_zarr`: a lazy array over a local Zarr store (format 2 or 3),
    /// one block per Zarr chunk.
    ///
    /// `path` may be an `s3://bucket/prefix` URL; each chunk task then GETs
    /// its own chunk object on the worker.
    pub fn from_zarr(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::from_zarr_with(path, &StorageOptions::default())
    }

    /// [`Array::from_zarr`] with per-call S3 settings (endpoint, region,
    /// anonymous access); they travel in each chunk task.
    pub fn from_zarr_with(path: impl AsRef<std::path::Path>, storage: &StorageOptions) -> Result<Self> {
        let path_text = store_location(path.as_ref(), false)?;
        let meta = crate::zarr::read_meta(&path_text, storage)?;
        let grid = ChunkGrid::normalize(&meta.shape, &Chunks::Uniform(meta.chunks.clone()), meta.dtype.itemsize())?;
        let tok = format!("{path_text}-{meta:?}");
        let g = grid.clone();
        Ok(Self::build("from-zarr", &[tok.as_bytes()], meta.dtype, grid, |idx, key| {
            let p = crate::zarr::ChunkParams {
                path: path_text.clone(),
                meta: meta.clone(),
                index: idx.to_vec(),
                block: g.block_shape(idx).unwrap_or_default(),
                storage: storage.clone(),
            };
            Delayed::from_task(key, kernels::ZARR_READ, Params::encode(&p), vec![])
        }))
    }

    /// `da.to_zarr`: writes a Zarr store (format 2 or 3, zstd-compressed as
    /// zarr-python writes by default) that
    /// zarr-python reads. Each block is written by the task that computes it,
    /// in parallel; blocks are first made regular if they are not.
    pub fn to_zarr(&self, path: impl AsRef<std::path::Path>, format: crate::zarr::ZarrFormat) -> Result<()> {
        self.to_zarr_with(path, &crate::zarr::ZarrWriteOptions { format, ..Default::default() })
    }

    /// [`Array::to_zarr`] with a chosen compressor (zstd by default, as
    /// zarr-python) and per-call S3 settings.
    pub fn to_zarr_with(
        &self,
        path: impl AsRef<std::path::Path>,
        options: &crate::zarr::ZarrWriteOptions,
    ) -> Result<()> {
        let (format, storage) = (options.format, &options.storage);
        if format == crate::zarr::ZarrFormat::V3 && matches!(options.compressor, crate::zarr::Compressor::Zlib { .. }) {
            return Err(ArrayError::Value("zlib is a Zarr 2 compressor; Zarr 3 has zstd and gzip".into()));
        }
        let path = path.as_ref();
        let shape: Vec<usize> = self.shape().into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
            ArrayError::UnknownChunks("to_zarr needs known chunk sizes; call compute_chunk_sizes() first".into())
        })?;
        let chunk: Vec<usize> = self.grid.chunksize().into_iter().map(|c| c.unwrap_or(1).max(1)).collect();
        let regular = self.rechunk(Chunks::Uniform(chunk.clone()))?;
        let meta = crate::zarr::ZarrMeta {
            format,
            shape,
            chunks: chunk,
            dtype: self.dtype,
            fill_value: 0.0,
            separator: match format {
                crate::zarr::ZarrFormat::V2 => '.',
                crate::zarr::ZarrFormat::V3 => '/',
            },
            compressor: options.compressor,
        };
        let store = store_location(path, true)?;
        crate::zarr::prepare_store(&store, &meta, storage)?;
        let name: Arc<str> = Arc::from(format!("to-zarr-{}", token_of(&[regular.name.as_bytes(), store.as_bytes()])));
        let writes: Vec<Delayed<i64>> = regular
            .grid
            .indices()
            .into_iter()
            .map(|idx| {
                let p = crate::zarr::ChunkParams {
                    path: store.clone(),
                    meta: meta.clone(),
                    index: idx.clone(),
                    block: regular.grid.block_shape(&idx).unwrap_or_default(),
                    storage: storage.clone(),
                };
                let block = &regular.blocks[regular.grid_pos(&idx)];
                Delayed::from_task(
                    block_key(&name, &idx),
                    kernels::ZARR_WRITE,
                    Params::encode(&p),
                    vec![ArgPart::of(block)],
                )
            })
            .collect();
        let client = Client::current()?;
        let refs: Vec<&Delayed<i64>> = writes.iter().collect();
        for f in client.compute_many(&refs) {
            f.result()?;
        }
        // Last: a write cut short leaves chunks without metadata, which no
        // reader takes for a whole array.
        crate::zarr::write_meta(&store, &meta, storage)
    }

    /// `empty`: rask fills with zeros rather than leaving memory unset.
    pub fn empty(shape: &[usize], dtype: DType, chunks: Chunks) -> Result<Self> {
        Self::zeros(shape, dtype, chunks)
    }

    fn random(prefix: &str, distribution: Distribution, seed: u64, shape: &[usize], chunks: Chunks) -> Result<Self> {
        let dtype = match distribution {
            Distribution::RandInt { low, high } => {
                if high <= low {
                    return Err(ArrayError::Value(format!("randint: low {low} must be below high {high}")));
                }
                DType::I64
            }
            _ => DType::F64,
        };
        let grid = ChunkGrid::normalize(shape, &chunks, dtype.itemsize())?;
        let tok = postcard::to_stdvec(&(seed, shape, format!("{distribution:?} {grid:?}"))).unwrap_or_default();
        let g = grid.clone();
        let global: Vec<usize> = shape.to_vec();
        Ok(Self::build(prefix, &[&tok], dtype, grid, |idx, key| {
            let p = RandomParams {
                distribution,
                seed,
                global_shape: global.clone(),
                offset: g.block_offset(idx).unwrap_or_default(),
                block: g.block_shape(idx).unwrap_or_default(),
            };
            Delayed::from_task(key, kernels::RANDOM, Params::encode(&p), vec![])
        }))
    }

    /// Uniform floats in [0, 1), like `da.random.random`.
    pub fn random_uniform(shape: &[usize], seed: u64, chunks: Chunks) -> Result<Self> {
        Self::random("random_sample", Distribution::Uniform { low: 0.0, high: 1.0 }, seed, shape, chunks)
    }

    pub fn random_normal(loc: f64, scale: f64, shape: &[usize], seed: u64, chunks: Chunks) -> Result<Self> {
        Self::random("normal", Distribution::Normal { loc, scale }, seed, shape, chunks)
    }

    /// Integers in [low, high), like `da.random.randint`.
    pub fn randint(low: i64, high: i64, shape: &[usize], seed: u64, chunks: Chunks) -> Result<Self> {
        Self::random("randint", Distribution::RandInt { low, high }, seed, shape, chunks)
    }

    /// Cuts an in-memory array into blocks (`da.from_array`).
    pub fn from_ndarray<T: Element>(a: &ArrayD<T>, chunks: Chunks) -> Result<Self> {
        let grid = ChunkGrid::normalize(a.shape(), &chunks, T::DTYPE.itemsize())?;
        // Each call gets its own name (Dask's `name=False`): naming after the
        // address would let a later array at a reused address share keys.
        static FROM_ARRAY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = FROM_ARRAY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name_bytes = format!("{}-{now}-{n}-{:?}-{grid:?}", std::process::id(), a.shape());
        let g = grid.clone();
        Ok(Self::build("array", &[name_bytes.as_bytes()], T::DTYPE, grid, |idx, key| {
            let off = g.block_offset(idx).unwrap_or_default();
            let shp = g.block_shape(idx).unwrap_or_default();
            let info: Vec<SliceInfoElem> = off
                .iter()
                .zip(&shp)
                .map(|(&o, &n)| SliceInfoElem::Slice { start: o as isize, end: Some((o + n) as isize), step: 1 })
                .collect();
            let block = a.slice(info.as_slice()).to_owned().into_shared();
            Delayed::from_task(
                key,
                rask::core::ops::builtin::IDENTITY,
                Params::default(),
                vec![ArgPart::literal(Value::Array(T::wrap(block)))],
            )
        }))
    }

    // ------------------------------------------------------------ elementwise

    /// Elementwise `self op other` with numpy broadcasting across blocks:
    /// shapes are aligned from the right; an axis of length 1 is stretched
    /// (kept as one block), and equal axes share the first operand's chunks
    /// (the second is rechunked to match).
    fn binary(&self, other: &Array, op: BinaryOp) -> Result<Array> {
        let (sa, sb) = (self.shape(), other.shape());
        // With a constant operand of the same (known) shape, the scalar
        // operation gives the same values whenever it gives the same dtype.
        if sa == sb && sa.iter().all(Option::is_some) {
            let dtype = compute_dtype(op, promote(self.dtype, other.dtype));
            let same_as_scalar = |array: DType, value: Fill| {
                compute_dtype(op, promote_scalar(array, matches!(value, Fill::Float(_)))) == dtype
            };
            if let Some(value) = other.constant.filter(|v| same_as_scalar(self.dtype, *v)) {
                return self.with_scalar(value, false, op);
            }
            if let Some(value) = self.constant.filter(|v| same_as_scalar(other.dtype, *v)) {
                // The result keeps the first operand's chunks, as below.
                return other.rechunk_to(&self.grid)?.with_scalar(value, true, op);
            }
        }
        let nd = sa.len().max(sb.len());
        let pad = |s: &[Option<usize>]| -> Vec<Option<usize>> {
            std::iter::repeat_n(Some(1), nd - s.len()).chain(s.iter().copied()).collect()
        };
        let (pa, pb) = (pad(&sa), pad(&sb));
        let incompatible = || {
            ArrayError::Shape(format!(
                "operands could not be broadcast together with shapes {} {} ({})",
                fmt_shape(&sa),
                fmt_shape(&sb),
                op.symbol()
            ))
        };
        // Per output axis: which operands stretch, and the output chunks.
        let mut out_sizes: Vec<Vec<Option<usize>>> = Vec::with_capacity(nd);
        let mut target_a: Vec<Vec<Option<usize>>> = Vec::new();
        let mut target_b: Vec<Vec<Option<usize>>> = Vec::new();
        let (off_a, off_b) = (nd - sa.len(), nd - sb.len());
        for ax in 0..nd {
            let ca = (ax >= off_a).then(|| self.grid.axis(ax - off_a).to_vec());
            let cb = (ax >= off_b).then(|| other.grid.axis(ax - off_b).to_vec());
            match (pa[ax], pb[ax]) {
                (x, y) if x == y => {
                    let chunks = ca.clone().or(cb.clone()).unwrap_or_else(|| vec![Some(1)]);
                    out_sizes.push(chunks.clone());
                    if ax >= off_a {
                        target_a.push(chunks.clone());
                    }
                    if ax >= off_b {
                        target_b.push(chunks);
                    }
                }
                (Some(1), _) => {
                    let chunks = cb.clone().ok_or_else(incompatible)?;
                    out_sizes.push(chunks);
                    if ax >= off_a {
                        target_a.push(vec![Some(1)]);
                    }
                    if let Some(c) = cb {
                        target_b.push(c);
                    }
                }
                (_, Some(1)) => {
                    let chunks = ca.clone().ok_or_else(incompatible)?;
                    out_sizes.push(chunks);
                    if let Some(c) = ca {
                        target_a.push(c);
                    }
                    if ax >= off_b {
                        target_b.push(vec![Some(1)]);
                    }
                }
                _ => return Err(incompatible()),
            }
        }
        let a = if self.shape().iter().all(Option::is_some) {
            self.rechunk_to(&ChunkGrid::from_options(target_a))?
        } else {
            self.clone()
        };
        let b = if other.shape().iter().all(Option::is_some) {
            other.rechunk_to(&ChunkGrid::from_options(target_b))?
        } else {
            other.clone()
        };
        if a.grid.numblocks().len() + off_a != nd || b.grid.numblocks().len() + off_b != nd {
            return Err(incompatible());
        }
        let dtype = compute_dtype(op, promote(a.dtype, b.dtype));
        let out = if op.is_comparison() { DType::Bool } else { op_dtype(op, dtype) };
        let params = Params::encode(&BinaryParams { op, dtype, scalar: None });
        let grid = ChunkGrid::from_options(out_sizes);
        let (nba, nbb) = (a.grid.numblocks(), b.grid.numblocks());
        // Output block index -> operand block index (stretched axes use block 0).
        let source = |idx: &[usize], off: usize, nb: &[usize]| -> Vec<usize> {
            idx[off..].iter().zip(nb).map(|(&i, &n)| if n == 1 { 0 } else { i }).collect()
        };
        Ok(Self::build(op.symbol(), &[a.name.as_bytes(), b.name.as_bytes(), &params.0], out, grid, |i, key| {
            let (ia, ib) = (a.grid_pos(&source(i, off_a, &nba)), b.grid_pos(&source(i, off_b, &nbb)));
            Delayed::from_task(
                key,
                kernels::BINARY,
                params.clone(),
                vec![ArgPart::of(&a.blocks[ia]), ArgPart::of(&b.blocks[ib])],
            )
        }))
    }

    fn with_scalar(&self, scalar: Fill, scalar_first: bool, op: BinaryOp) -> Result<Array> {
        let dtype = scalar_compute_dtype(op, self.dtype, scalar)?;
        let out = if op.is_comparison() { DType::Bool } else { op_dtype(op, dtype) };
        let params = Params::encode(&BinaryParams { op, dtype, scalar: Some((scalar, scalar_first)) });
        Ok(Self::build(op.symbol(), &[self.name.as_bytes(), &params.0], out, self.grid.clone(), |i, key| {
            let at = self.grid_pos(i);
            Delayed::from_task(key, kernels::BINARY, params.clone(), vec![ArgPart::of(&self.blocks[at])])
        }))
    }

    /// For one output block built from pieces of input blocks: per axis the
    /// (input block, selection) runs; returns the input blocks in C order of
    /// the piece grid, their selections, and the piece grid's shape — what
    /// the `pieces` and `overlap` kernels gather.
    fn gather_parts(&self, runs: &[&[(usize, Sel)]]) -> (Vec<ArgPart>, Vec<Vec<Sel>>, Vec<usize>) {
        let numblocks: Vec<usize> = runs.iter().map(|r| r.len()).collect();
        let mut parts = Vec::new();
        let mut selections = Vec::new();
        for combo in crate::chunks::c_order_indices(&numblocks) {
            let in_idx: Vec<usize> = combo.iter().enumerate().map(|(ax, &k)| runs[ax][k].0).collect();
            selections.push(combo.iter().enumerate().map(|(ax, &k)| runs[ax][k].1).collect());
            parts.push(ArgPart::of(&self.blocks[self.grid_pos(&in_idx)]));
        }
        (parts, selections, numblocks)
    }

    fn grid_pos(&self, index: &[usize]) -> usize {
        let nb = self.grid.numblocks();
        index.iter().zip(&nb).fold(0, |acc, (&i, &n)| acc * n + i)
    }

    pub fn add(&self, o: &Array) -> Result<Array> {
        self.binary(o, BinaryOp::Add)
    }
    pub fn sub(&self, o: &Array) -> Result<Array> {
        self.binary(o, BinaryOp::Sub)
    }
    pub fn mul(&self, o: &Array) -> Result<Array> {
        self.binary(o, BinaryOp::Mul)
    }
    pub fn div(&self, o: &Array) -> Result<Array> {
        self.binary(o, BinaryOp::Div)
    }
    pub fn maximum(&self, o: &Array) -> Result<Array> {
        self.binary(o, BinaryOp::Max)
    }
    pub fn minimum(&self, o: &Array) -> Result<Array> {
        self.binary(o, BinaryOp::Min)
    }
    pub fn lt(&self, o: &Array) -> Result<Array> {
        self.binary(o, BinaryOp::Lt)
    }
    pub fn gt(&self, o: &Array) -> Result<Array> {
        self.binary(o, BinaryOp::Gt)
    }
    pub fn eq_elementwise(&self, o: &Array) -> Result<Array> {
        self.binary(o, BinaryOp::Eq)
    }
    /// Any binary operation, with broadcasting.
    pub fn apply(&self, op: BinaryOp, o: &Array) -> Result<Array> {
        self.binary(o, op)
    }

    /// `self op scalar`, e.g. `x.scalar(BinaryOp::Mul, Fill::Int(10))`, with
    /// the scalar taken as a Python scalar (NEP 50): an integer the array's
    /// integer dtype cannot hold is an error for arithmetic, as in numpy 2.
    pub fn scalar(&self, op: BinaryOp, value: Fill) -> Result<Array> {
        self.with_scalar(value, false, op)
    }

    /// `scalar op self`, e.g. `10 - x`.
    pub fn rscalar(&self, op: BinaryOp, value: Fill) -> Result<Array> {
        self.with_scalar(value, true, op)
    }

    /// A numpy ufunc of one argument (`abs`, `sqrt`, `exp`, `log`, `sin`,
    /// `cos`, `floor`, `ceil`, `round`, `isnan`, `logical_not`, `clip`).
    pub fn map_unary(&self, op: UnaryOp) -> Array {
        let params = Params::encode(&op);
        let dtype = op.output_dtype(self.dtype);
        Self::build(op.name(), &[self.name.as_bytes(), &params.0], dtype, self.grid.clone(), |i, key| {
            let at = self.grid_pos(i);
            Delayed::from_task(key, kernels::UNARY, params.clone(), vec![ArgPart::of(&self.blocks[at])])
        })
    }

    pub fn abs(&self) -> Array {
        self.map_unary(UnaryOp::Abs)
    }
    pub fn sqrt(&self) -> Array {
        self.map_unary(UnaryOp::Sqrt)
    }
    pub fn exp(&self) -> Array {
        self.map_unary(UnaryOp::Exp)
    }
    pub fn log(&self) -> Array {
        self.map_unary(UnaryOp::Log)
    }
    pub fn isnan(&self) -> Array {
        self.map_unary(UnaryOp::IsNan)
    }
    pub fn clip(&self, low: Fill, high: Fill) -> Array {
        self.map_unary(UnaryOp::Clip { low, high })
    }

    /// `np.where(self, a, b)`: `self` must be a boolean array of the same shape.
    pub fn where_(&self, a: &Array, b: &Array) -> Result<Array> {
        if self.dtype != DType::Bool {
            return Err(ArrayError::Value(format!("where needs a boolean condition, got {}", self.dtype)));
        }
        if self.shape() != a.shape() || self.shape() != b.shape() {
            return Err(ArrayError::Shape(format!(
                "where: condition {}, a {} and b {} must have one shape",
                fmt_shape(&self.shape()),
                fmt_shape(&a.shape()),
                fmt_shape(&b.shape())
            )));
        }
        let (a, b) = (a.rechunk_to(&self.grid)?, b.rechunk_to(&self.grid)?);
        let dtype = promote(a.dtype, b.dtype);
        let params = Params::encode(&dtype);
        Ok(Self::build(
            "where",
            &[self.name.as_bytes(), a.name.as_bytes(), b.name.as_bytes()],
            dtype,
            self.grid.clone(),
            |i, key| {
                let at = self.grid_pos(i);
                Delayed::from_task(
                    key,
                    kernels::WHERE,
                    params.clone(),
                    vec![ArgPart::of(&self.blocks[at]), ArgPart::of(&a.blocks[at]), ArgPart::of(&b.blocks[at])],
                )
            },
        ))
    }

    pub fn astype(&self, dtype: DType) -> Array {
        if dtype == self.dtype {
            return self.clone();
        }
        let params = Params::encode(&dtype);
        Self::build("astype", &[self.name.as_bytes(), &params.0], dtype, self.grid.clone(), |i, key| {
            let at = self.grid_pos(i);
            Delayed::from_task(key, kernels::ASTYPE, params.clone(), vec![ArgPart::of(&self.blocks[at])])
        })
    }

    // ------------------------------------------------------ slicing and layout

    /// numpy basic indexing: integers, slices with any step (negative too),
    /// `NewAxis` and `Ellipsis`, like `x[:2500, ::2]` or `x[-1, ..., None]`.
    /// Each output block is a slice of one input block.
    pub fn slice(&self, index: &[Index]) -> Result<Array> {
        let sizes: Vec<Vec<usize>> = (0..self.ndim())
            .map(|ax| self.grid.axis(ax).iter().copied().collect::<Option<Vec<_>>>())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ArrayError::UnknownChunks("slicing needs known chunk sizes; call compute_chunk_sizes() first".into())
            })?;
        let expanded = expand_ellipsis(index, self.ndim())?;
        // The plan, in index order. A range or new axis gives an output axis
        // with one piece per output block; an integer picks one input block.
        enum Step {
            Out(Vec<Piece>),
            At { axis: usize, block: usize, local: usize },
        }
        #[derive(Clone, Copy)]
        struct Piece {
            input: Option<(usize, usize)>, // (input axis, input block)
            sel: Sel,
            len: usize,
        }
        let mut plan = Vec::new();
        let mut in_axis = 0;
        for ix in &expanded {
            match *ix {
                Index::NewAxis => plan.push(Step::Out(vec![Piece { input: None, sel: Sel::NewAxis, len: 1 }])),
                Index::At(i) => {
                    let n: usize = sizes[in_axis].iter().sum();
                    let g = if i < 0 { i + n as isize } else { i };
                    if g < 0 || g as usize >= n {
                        return Err(ArrayError::Shape(format!(
                            "index {i} is out of bounds for axis {in_axis} with size {n}"
                        )));
                    }
                    let (block, local) = locate(&sizes[in_axis], g as usize);
                    plan.push(Step::At { axis: in_axis, block, local });
                    in_axis += 1;
                }
                Index::Range { start, stop, step } => {
                    if step == 0 {
                        return Err(ArrayError::Value("slice step cannot be zero".into()));
                    }
                    let n: usize = sizes[in_axis].iter().sum();
                    let (first, count) = normalize_slice(start, stop, step, n);
                    let pieces = range_pieces(&sizes[in_axis], first, count, step)
                        .into_iter()
                        .map(|(b, sel, len)| Piece { input: Some((in_axis, b)), sel, len })
                        .collect();
                    plan.push(Step::Out(pieces));
                    in_axis += 1;
                }
                Index::Ellipsis => unreachable_ellipsis()?,
            }
        }
        let outs: Vec<&Vec<Piece>> = plan
            .iter()
            .filter_map(|s| match s {
                Step::Out(p) => Some(p),
                Step::At { .. } => None,
            })
            .collect();
        let grid = ChunkGrid::from_sizes(outs.iter().map(|p| p.iter().map(|x| x.len).collect()).collect());
        let token = format!("{expanded:?}");
        let name: Arc<str> = Arc::from(format!("getitem-{}", token_of(&[self.name.as_bytes(), token.as_bytes()])));
        let blocks = grid
            .indices()
            .into_iter()
            .map(|out_idx| {
                let mut in_idx = vec![0usize; self.ndim()];
                let mut sel = Vec::with_capacity(plan.len());
                let mut o = 0;
                for step in &plan {
                    match step {
                        Step::Out(pieces) => {
                            let piece = pieces[out_idx[o]];
                            if let Some((axis, block)) = piece.input {
                                in_idx[axis] = block;
                            }
                            sel.push(piece.sel);
                            o += 1;
                        }
                        Step::At { axis, block, local } => {
                            in_idx[*axis] = *block;
                            sel.push(Sel::Index(*local));
                        }
                    }
                }
                let at = self.grid_pos(&in_idx);
                Delayed::from_task(
                    block_key(&name, &out_idx),
                    kernels::SLICE,
                    Params::encode(&sel),
                    vec![ArgPart::of(&self.blocks[at])],
                )
            })
            .collect();
        Ok(Array { name, dtype: self.dtype, grid, blocks, constant: None })
    }

    /// Permutes the axes (`np.transpose(x, axes)`).
    pub fn transpose(&self, perm: &[usize]) -> Result<Array> {
        let mut sorted = perm.to_vec();
        sorted.sort_unstable();
        if sorted != (0..self.ndim()).collect::<Vec<_>>() {
            return Err(ArrayError::Shape(format!("axes {perm:?} are not a permutation of {} axes", self.ndim())));
        }
        let sizes: Vec<Vec<Option<usize>>> = perm.iter().map(|&ax| self.grid.axis(ax).to_vec()).collect();
        let grid = ChunkGrid::from_options(sizes);
        let params = Params::encode(&perm.to_vec());
        let name: Arc<str> = Arc::from(format!("transpose-{}", token_of(&[self.name.as_bytes(), &params.0])));
        let blocks = grid
            .indices()
            .into_iter()
            .map(|out_idx| {
                let mut in_idx = vec![0; perm.len()];
                for (o, &ax) in perm.iter().enumerate() {
                    in_idx[ax] = out_idx[o];
                }
                let at = self.grid_pos(&in_idx);
                Delayed::from_task(
                    block_key(&name, &out_idx),
                    kernels::TRANSPOSE,
                    params.clone(),
                    vec![ArgPart::of(&self.blocks[at])],
                )
            })
            .collect();
        Ok(Array { name, dtype: self.dtype, grid, blocks, constant: None })
    }

    /// `np.swapaxes`.
    pub fn swapaxes(&self, a: usize, b: usize) -> Result<Array> {
        if a >= self.ndim() || b >= self.ndim() {
            return Err(ArrayError::Shape(format!("axes {a} and {b} out of range for {} dimensions", self.ndim())));
        }
        let mut perm: Vec<usize> = (0..self.ndim()).collect();
        perm.swap(a, b);
        self.transpose(&perm)
    }

    /// `np.moveaxis(x, source, destination)`.
    pub fn moveaxis(&self, source: usize, destination: usize) -> Result<Array> {
        if source >= self.ndim() || destination >= self.ndim() {
            return Err(ArrayError::Shape(format!("axis out of range for {} dimensions", self.ndim())));
        }
        let mut perm: Vec<usize> = (0..self.ndim()).filter(|&a| a != source).collect();
        perm.insert(destination, source);
        self.transpose(&perm)
    }

    /// `np.expand_dims(x, axis)`.
    pub fn expand_dims(&self, axis: usize) -> Result<Array> {
        if axis > self.ndim() {
            return Err(ArrayError::Shape(format!("axis {axis} out of range for {} dimensions", self.ndim() + 1)));
        }
        let mut index = vec![Index::ALL; self.ndim()];
        index.insert(axis, Index::NewAxis);
        self.slice(&index)
    }

    /// `np.squeeze(x, axis)`: removes length-1 axes (all of them when `None`).
    pub fn squeeze(&self, axes: Option<&[usize]>) -> Result<Array> {
        let shape = self.shape();
        let mut index = Vec::with_capacity(self.ndim());
        for (ax, n) in shape.iter().enumerate() {
            let chosen = axes.is_none_or(|a| a.contains(&ax));
            if chosen && *n == Some(1) {
                index.push(Index::At(0));
            } else if chosen && axes.is_some() {
                return Err(ArrayError::Shape(format!(
                    "cannot select an axis to squeeze out which has size not equal to one: axis {ax} has {n:?}"
                )));
            } else {
                index.push(Index::ALL);
            }
        }
        self.slice(&index)
    }

    /// `np.concatenate(arrays, axis)`: dtypes are promoted, and every array
    /// is rechunked to the first one's chunks on the other axes.
    pub fn concatenate(arrays: &[Array], axis: usize) -> Result<Array> {
        let first = arrays.first().ok_or_else(|| ArrayError::Value("need at least one array to concatenate".into()))?;
        let nd = first.ndim();
        if axis >= nd {
            return Err(ArrayError::Shape(format!("axis {axis} is out of bounds for an array of dimension {nd}")));
        }
        let dtype = arrays.iter().map(|a| a.dtype).reduce(promote).unwrap_or(first.dtype);
        let mut parts = Vec::with_capacity(arrays.len());
        for a in arrays {
            if a.ndim() != nd {
                return Err(ArrayError::Shape(format!("all arrays must have {nd} dimensions, one has {}", a.ndim())));
            }
            for ax in (0..nd).filter(|&x| x != axis) {
                if a.shape()[ax] != first.shape()[ax] {
                    return Err(ArrayError::Shape(format!(
                        "all dimensions except {axis} must match: {:?} vs {:?}",
                        a.shape(),
                        first.shape()
                    )));
                }
            }
            let target: Vec<Vec<Option<usize>>> = (0..nd)
                .map(|ax| if ax == axis { a.grid.axis(ax).to_vec() } else { first.grid.axis(ax).to_vec() })
                .collect();
            let aligned = a.rechunk_to(&ChunkGrid::from_options(target))?;
            parts.push(aligned.astype(dtype));
        }
        let mut sizes: Vec<Vec<Option<usize>>> = (0..nd).map(|ax| first.grid.axis(ax).to_vec()).collect();
        sizes[axis] = parts.iter().flat_map(|p| p.grid.axis(axis).to_vec()).collect();
        let grid = ChunkGrid::from_options(sizes);
        let names: Vec<&[u8]> = parts.iter().map(|p| p.name.as_bytes()).collect();
        let name: Arc<str> = Arc::from(format!("concatenate-{}", token_of(&names)));
        // Each output block along `axis` comes from one part's block.
        let owner: Vec<(usize, usize)> =
            parts.iter().enumerate().flat_map(|(pi, p)| (0..p.grid.numblocks()[axis]).map(move |b| (pi, b))).collect();
        let blocks = grid
            .indices()
            .into_iter()
            .map(|idx| {
                let (pi, b) = owner[idx[axis]];
                let mut src = idx.clone();
                src[axis] = b;
                let p = &parts[pi];
                Delayed::from_task(
                    block_key(&name, &idx),
                    rask::core::ops::builtin::IDENTITY,
                    Params::default(),
                    vec![ArgPart::of(&p.blocks[p.grid_pos(&src)])],
                )
            })
            .collect();
        Ok(Array { name, dtype, grid, blocks, constant: None })
    }

    /// `np.stack(arrays, axis)`: a new axis, then concatenation along it.
    pub fn stack(arrays: &[Array], axis: usize) -> Result<Array> {
        let expanded = arrays.iter().map(|a| a.expand_dims(axis)).collect::<Result<Vec<_>>>()?;
        Self::concatenate(&expanded, axis)
    }

    /// `x.reshape(shape)`, with one `-1` allowed. It works chunk-wise: every
    /// axis but the first is merged into whole blocks and, when needed, rows
    /// are regrouped so each block holds whole output rows. C order is kept,
    /// so the result is never silently reordered.
    pub fn reshape(&self, shape: &[isize]) -> Result<Array> {
        let in_shape: Vec<usize> = self.shape().into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
            ArrayError::UnknownChunks("reshape needs known chunk sizes; call compute_chunk_sizes() first".into())
        })?;
        let total: usize = in_shape.iter().product();
        if shape.iter().filter(|&&d| d == -1).count() > 1 || shape.iter().any(|&d| d < -1) {
            return Err(ArrayError::Value(format!("can only specify one unknown dimension; got {shape:?}")));
        }
        let known: usize = shape.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
        let out: Vec<usize> =
            shape.iter().map(|&d| if d == -1 { total.checked_div(known).unwrap_or(0) } else { d as usize }).collect();
        if out.iter().product::<usize>() != total {
            return Err(ArrayError::Shape(format!("cannot reshape array of size {total} into shape {shape:?}")));
        }
        if out == in_shape {
            return Ok(self.clone());
        }
        let whole_block = |a: &Array| -> Result<Array> {
            a.rechunk_to(&ChunkGrid::from_sizes(in_shape.iter().map(|&n| vec![n]).collect()))
        };
        if in_shape.is_empty() || out.is_empty() {
            let whole = whole_block(self)?;
            let params = Params::encode(&out);
            let name: Arc<str> = Arc::from(format!("reshape-{}", token_of(&[whole.name.as_bytes(), &params.0])));
            let block = Delayed::from_task(
                block_key(&name, &vec![0; out.len()]),
                kernels::RESHAPE,
                params,
                vec![ArgPart::of(&whole.blocks[0])],
            );
            let grid = ChunkGrid::from_sizes(out.iter().map(|&n| vec![n]).collect());
            return Ok(Array { name, dtype: self.dtype, grid, blocks: vec![block], constant: None });
        }
        let in_rest: usize = in_shape[1..].iter().product::<usize>().max(1);
        let out_rest: usize = out[1..].iter().product::<usize>().max(1);
        // Input rows that make whole output rows.
        let step = lcm(in_rest, out_rest) / in_rest;
        let rows: Vec<usize> = self.grid.axis(0).iter().map(|s| s.unwrap_or(0)).collect();
        let row_chunks: Vec<usize> = if rows.len() > 1 && rows.iter().any(|&r| !r.is_multiple_of(step)) {
            let target = rows.iter().copied().max().unwrap_or(step).div_ceil(step) * step;
            let mut v = vec![target; in_shape[0] / target];
            if !in_shape[0].is_multiple_of(target) {
                v.push(in_shape[0] % target);
            }
            v
        } else {
            rows
        };
        let mut sizes: Vec<Vec<usize>> = vec![row_chunks];
        sizes.extend(in_shape[1..].iter().map(|&n| vec![n]));
        let merged = self.rechunk_to(&ChunkGrid::from_sizes(sizes))?;
        let mut out_rows = Vec::new();
        for r in merged.grid.axis(0).iter().map(|s| s.unwrap_or(0)) {
            let elements = r * in_rest;
            if !elements.is_multiple_of(out_rest) {
                return Err(ArrayError::Shape(format!(
                    "reshape from {in_shape:?} to {out:?} cannot be done chunk-wise: a block of {r} rows does not hold whole output rows; rechunk the first axis to multiples of {step} first"
                )));
            }
            out_rows.push(elements / out_rest);
        }
        let label = format!("{out:?}");
        let name: Arc<str> = Arc::from(format!("reshape-{}", token_of(&[merged.name.as_bytes(), label.as_bytes()])));
        let mut grid_sizes: Vec<Vec<usize>> = vec![out_rows.clone()];
        grid_sizes.extend(out[1..].iter().map(|&n| vec![n]));
        let grid = ChunkGrid::from_sizes(grid_sizes);
        let blocks = out_rows
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                let mut bshape = vec![r];
                bshape.extend_from_slice(&out[1..]);
                let mut idx = vec![0; out.len()];
                idx[0] = i;
                Delayed::from_task(
                    block_key(&name, &idx),
                    kernels::RESHAPE,
                    Params::encode(&bshape),
                    vec![ArgPart::of(&merged.blocks[i])],
                )
            })
            .collect();
        Ok(Array { name, dtype: self.dtype, grid, blocks, constant: None })
    }

    /// `x.ravel()`: the elements in C order, 1-d.
    pub fn ravel(&self) -> Result<Array> {
        self.reshape(&[-1])
    }

    /// `map_blocks`: applies a registered op (e.g. one defined with
    /// `rask::op!` taking and returning an array) to every block. `dtype` is
    /// the result's dtype; blocks keep their shapes.
    pub fn map_blocks(&self, op: &str, op_params: Params, dtype: DType) -> Array {
        let params = Params::encode(&(op.to_string(), op_params.0.to_vec()));
        Self::build("map_blocks", &[self.name.as_bytes(), &params.0], dtype, self.grid.clone(), |i, key| {
            let at = self.grid_pos(i);
            Delayed::from_task(key, kernels::MAP_BLOCKS, params.clone(), vec![ArgPart::of(&self.blocks[at])])
        })
    }

    /// `map_overlap`: each block is extended by `depth[axis]` elements from
    /// its neighbours (and beyond the edges by `boundary`), the registered op
    /// runs on the extended block, and the halo is trimmed off. Results are
    /// identical to running the op on the whole array, whatever the chunks,
    /// as long as the op reads no further than `depth`.
    pub fn map_overlap(
        &self,
        op: &str,
        op_params: Params,
        depth: &[usize],
        boundary: kernels::Boundary,
        dtype: DType,
    ) -> Result<Array> {
        self.overlap_graph(op, op_params, depth, boundary, dtype, false)
    }

    /// [`Array::map_overlap`] with an op that trims its result itself: it
    /// gets the trim as a second argument (a list of `[before, after]`
    /// integer pairs, one per axis) and returns the extended block without
    /// them. The op then computes only the elements that are kept, and the
    /// result is not copied once more to cut the halo off.
    pub fn map_overlap_trimmed(
        &self,
        op: &str,
        op_params: Params,
        depth: &[usize],
        boundary: kernels::Boundary,
        dtype: DType,
    ) -> Result<Array> {
        self.overlap_graph(op, op_params, depth, boundary, dtype, true)
    }

    fn overlap_graph(
        &self,
        op: &str,
        op_params: Params,
        depth: &[usize],
        boundary: kernels::Boundary,
        dtype: DType,
        op_trims: bool,
    ) -> Result<Array> {
        if depth.len() != self.ndim() {
            return Err(ArrayError::Shape(format!("depth {depth:?} must give one value per axis ({})", self.ndim())));
        }
        let sizes: Vec<Vec<usize>> = (0..self.ndim())
            .map(|ax| self.grid.axis(ax).iter().copied().collect::<Option<Vec<_>>>())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ArrayError::UnknownChunks("map_overlap needs known chunk sizes".into()))?;
        for (ax, (&d, s)) in depth.iter().zip(&sizes).enumerate() {
            let n: usize = s.iter().sum();
            if d > n && matches!(boundary, kernels::Boundary::Reflect | kernels::Boundary::Periodic) {
                return Err(ArrayError::Value(format!("depth {d} on axis {ax} is larger than the axis ({n})")));
            }
        }
        // Per axis and block: the runs to gather, constant padding and trims.
        let plans: Vec<Vec<HaloPlan>> = sizes
            .iter()
            .zip(depth)
            .map(|(s, &d)| {
                let n: usize = s.iter().sum();
                let mut lo = 0;
                s.iter()
                    .map(|&len| {
                        let hi = lo + len;
                        let plan = halo_plan(s, n, lo, hi, d, boundary);
                        lo = hi;
                        plan
                    })
                    .collect()
            })
            .collect();
        let constant = if let kernels::Boundary::Constant(c) = boundary { c } else { 0.0 };
        let trims = if op_trims { "-trimmed" } else { "" };
        let tok = format!("{op}-{depth:?}-{boundary:?}-{dtype:?}{trims}");
        let name: Arc<str> =
            Arc::from(format!("overlap-{}", token_of(&[self.name.as_bytes(), tok.as_bytes(), &op_params.0])));
        let blocks = self
            .grid
            .indices()
            .into_iter()
            .map(|idx| {
                let per_axis: Vec<&HaloPlan> = idx.iter().enumerate().map(|(ax, &i)| &plans[ax][i]).collect();
                let runs: Vec<&[(usize, Sel)]> = per_axis.iter().map(|p| p.0.as_slice()).collect();
                let (parts, selections, numblocks) = self.gather_parts(&runs);
                let p = kernels::OverlapParams {
                    selections,
                    numblocks,
                    pad: per_axis.iter().map(|p| p.1).collect(),
                    constant,
                    op: op.to_string(),
                    op_params: op_params.0.to_vec(),
                    trim: per_axis.iter().map(|p| p.2).collect(),
                    op_trims,
                };
                Delayed::from_task(
                    block_key(&name, &idx),
                    kernels::OVERLAP,
                    Params::encode(&p),
                    vec![ArgPart::list(parts)],
                )
            })
            .collect();
        Ok(Array { name, dtype, grid: self.grid.clone(), blocks, constant: None })
    }

    /// Integer-array indexing along one axis, `x[[3, 0, 3], :]` or
    /// `np.take(x, indices, axis)`. Runs of indices in one block become one
    /// output block, so the output keeps the requested order.
    pub fn take(&self, indices: &[isize], axis: usize) -> Result<Array> {
        if axis >= self.ndim() {
            return Err(ArrayError::Shape(format!("axis {axis} is out of bounds for {} dimensions", self.ndim())));
        }
        let sizes: Vec<usize> = self
            .grid
            .axis(axis)
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ArrayError::UnknownChunks("take needs known chunk sizes".into()))?;
        let n: usize = sizes.iter().sum();
        let mut runs: Vec<(usize, Vec<usize>)> = Vec::new();
        for &i in indices {
            let g = if i < 0 { i + n as isize } else { i };
            if g < 0 || g as usize >= n {
                return Err(ArrayError::Shape(format!("index {i} is out of bounds for axis {axis} with size {n}")));
            }
            let (b, local) = locate(&sizes, g as usize);
            match runs.last_mut() {
                Some((rb, locals)) if *rb == b => locals.push(local),
                _ => runs.push((b, vec![local])),
            }
        }
        let mut out_sizes: Vec<Vec<Option<usize>>> = (0..self.ndim()).map(|ax| self.grid.axis(ax).to_vec()).collect();
        out_sizes[axis] =
            if runs.is_empty() { vec![Some(0)] } else { runs.iter().map(|(_, l)| Some(l.len())).collect() };
        let grid = ChunkGrid::from_options(out_sizes);
        let tok = format!("{axis}-{indices:?}");
        let name: Arc<str> = Arc::from(format!("take-{}", token_of(&[self.name.as_bytes(), tok.as_bytes()])));
        let blocks = grid
            .indices()
            .into_iter()
            .map(|idx| {
                let (b, locals) = runs.get(idx[axis]).cloned().unwrap_or((0, Vec::new()));
                let mut src = idx.clone();
                src[axis] = b;
                let params = Params::encode(&(axis, locals));
                Delayed::from_task(
                    block_key(&name, &idx),
                    kernels::TAKE,
                    params,
                    vec![ArgPart::of(&self.blocks[self.grid_pos(&src)])],
                )
            })
            .collect();
        Ok(Array { name, dtype: self.dtype, grid, blocks, constant: None })
    }

    /// Combines per-block results pairwise-ish in a tree of `op` tasks.
    fn tree(&self, prefix: &str, leaves: Vec<Delayed<ArrayValue>>, op: &str) -> Delayed<ArrayValue> {
        let mut level = leaves;
        let mut depth = 0;
        while level.len() > 1 {
            depth += 1;
            let name: Arc<str> = Arc::from(format!("{prefix}-agg{depth}-{}", token_of(&[self.name.as_bytes()])));
            level = level
                .chunks(8)
                .enumerate()
                .map(|(i, group)| {
                    let list = ArgPart::list(group.iter().map(ArgPart::of).collect());
                    Delayed::from_task(block_key(&name, &[i]), op, Params::default(), vec![list])
                })
                .collect();
        }
        level.pop().unwrap_or_else(|| {
            Delayed::value(ArrayValue::I64(ArrayD::from_elem(ndarray::IxDyn(&[0]), 0).into_shared()))
        })
    }

    /// `np.bincount(x, minlength)` of a 1-d array of non-negative integers.
    /// The length depends on the data, so it is unknown until computed.
    pub fn bincount(&self, minlength: usize) -> Result<Array> {
        if self.ndim() != 1 {
            return Err(ArrayError::Shape(format!("bincount needs a 1-d array, got {} dimensions", self.ndim())));
        }
        let params = Params::encode(&minlength);
        let name: Arc<str> = Arc::from(format!("bincount-{}", token_of(&[self.name.as_bytes(), &params.0])));
        let leaves = (0..self.blocks.len())
            .map(|i| {
                Delayed::from_task(
                    block_key(&name, &[i]),
                    kernels::BINCOUNT,
                    params.clone(),
                    vec![ArgPart::of(&self.blocks[i])],
                )
            })
            .collect();
        let total = self.tree("bincount", leaves, kernels::BINCOUNT_SUM);
        Ok(Array {
            name: Arc::from(total.key().name()),
            dtype: DType::I64,
            grid: ChunkGrid::unknown_1d(1),
            blocks: vec![total],
            constant: None,
        })
    }

    /// `np.unique(x)`: sorted unique values (flattened), unknown length.
    pub fn unique(&self) -> Result<Array> {
        let name: Arc<str> = Arc::from(format!("unique-{}", token_of(&[self.name.as_bytes()])));
        let leaves = (0..self.blocks.len())
            .map(|i| {
                Delayed::from_task(
                    block_key(&name, &[i]),
                    kernels::UNIQUE,
                    Params::default(),
                    vec![ArgPart::of(&self.blocks[i])],
                )
            })
            .collect();
        let total = self.tree("unique", leaves, kernels::UNIQUE);
        Ok(Array {
            name: Arc::from(total.key().name()),
            dtype: self.dtype,
            grid: ChunkGrid::unknown_1d(1),
            blocks: vec![total],
            constant: None,
        })
    }

    /// `x.T`: all axes reversed.
    pub fn t(&self) -> Array {
        let perm: Vec<usize> = (0..self.ndim()).rev().collect();
        self.transpose(&perm).unwrap_or_else(|_| self.clone())
    }

    /// Changes the chunking. Each new block is cut from the old blocks it
    /// overlaps, so the graph has one task per new block.
    pub fn rechunk(&self, chunks: Chunks) -> Result<Array> {
        let shape: Vec<usize> = self.shape().into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
            ArrayError::UnknownChunks("rechunk needs known chunk sizes; call compute_chunk_sizes() first".into())
        })?;
        let target = ChunkGrid::normalize(&shape, &chunks, self.dtype.itemsize())?;
        self.rechunk_to(&target)
    }

    fn rechunk_to(&self, target: &ChunkGrid) -> Result<Array> {
        if *target == self.grid {
            return Ok(self.clone());
        }
        let old: Vec<Vec<usize>> =
            (0..self.ndim()).map(|ax| self.grid.axis(ax).iter().map(|s| s.unwrap_or(0)).collect()).collect();
        let new: Vec<Vec<usize>> =
            (0..self.ndim()).map(|ax| target.axis(ax).iter().map(|s| s.unwrap_or(0)).collect()).collect();
        // Per axis and new block: the overlapping (old block, local range).
        let overlaps: Vec<Vec<Vec<(usize, Sel)>>> = old.iter().zip(&new).map(|(o, n)| axis_overlaps(o, n)).collect();
        let token = format!("{target:?}");
        let name: Arc<str> = Arc::from(format!("rechunk-{}", token_of(&[self.name.as_bytes(), token.as_bytes()])));
        let blocks = target
            .indices()
            .into_iter()
            .map(|out_idx| {
                let runs: Vec<&[(usize, Sel)]> =
                    out_idx.iter().enumerate().map(|(ax, &i)| overlaps[ax][i].as_slice()).collect();
                let (parts, selections, numblocks) = self.gather_parts(&runs);
                let params = Params::encode(&kernels::PiecesParams { selections, numblocks });
                Delayed::from_task(block_key(&name, &out_idx), kernels::PIECES, params, vec![ArgPart::list(parts)])
            })
            .collect();
        Ok(Array { name, dtype: self.dtype, grid: target.clone(), blocks, constant: None })
    }

    /// Matrix product of 2-d arrays (`da.dot`): block products summed over
    /// the shared axis. `other` is rechunked to match when needed.
    pub fn dot(&self, other: &Array) -> Result<Array> {
        if self.ndim() != 2 || other.ndim() != 2 {
            return Err(ArrayError::Shape(format!(
                "dot supports 2-d arrays, got {} and {} dimensions",
                self.ndim(),
                other.ndim()
            )));
        }
        if self.shape()[1] != other.shape()[0] || self.shape()[1].is_none() {
            return Err(ArrayError::Shape(format!(
                "shapes {} and {} are not aligned",
                fmt_shape(&self.shape()),
                fmt_shape(&other.shape())
            )));
        }
        let k_chunks: Vec<usize> = self.grid.axis(1).iter().map(|s| s.unwrap_or(0)).collect();
        let b_cols: Vec<usize> = other.grid.axis(1).iter().map(|s| s.unwrap_or(0)).collect();
        let other = other.rechunk_to(&ChunkGrid::from_sizes(vec![k_chunks.clone(), b_cols.clone()]))?;
        let dtype = dot_dtype(promote(self.dtype, other.dtype));
        let params = Params::encode(&dtype);
        let name: Arc<str> = Arc::from(format!("dot-{}", token_of(&[self.name.as_bytes(), other.name.as_bytes()])));
        let grid = ChunkGrid::from_options(vec![self.grid.axis(0).to_vec(), other.grid.axis(1).to_vec()]);
        let (nk, nj) = (k_chunks.len(), b_cols.len());
        let blocks = grid
            .indices()
            .into_iter()
            .map(|idx| {
                let (i, j) = (idx[0], idx[1]);
                let a = ArgPart::list((0..nk).map(|k| ArgPart::of(&self.blocks[i * nk + k])).collect());
                let b = ArgPart::list((0..nk).map(|k| ArgPart::of(&other.blocks[k * nj + j])).collect());
                Delayed::from_task(block_key(&name, &idx), kernels::MATMUL, params.clone(), vec![a, b])
            })
            .collect();
        Ok(Array { name, dtype, grid, blocks, constant: None })
    }

    /// `np.tensordot(a, b, axes=(a_axes, b_axes))`, as numpy defines it:
    /// the summed axes move to the end of `a` and the front of `b`, both
    /// become matrices, `dot` multiplies them, and the result takes the free
    /// axes of `a` then of `b`.
    pub fn tensordot(&self, other: &Array, a_axes: &[usize], b_axes: &[usize]) -> Result<Array> {
        if a_axes.len() != b_axes.len() {
            return Err(ArrayError::Shape(format!(
                "tensordot: {} axes of a against {} of b",
                a_axes.len(),
                b_axes.len()
            )));
        }
        let (sa, sb) = (self.shape(), other.shape());
        for (&x, &y) in a_axes.iter().zip(b_axes) {
            if x >= sa.len() || y >= sb.len() || sa[x] != sb[y] || sa[x].is_none() {
                return Err(ArrayError::Shape(format!(
                    "shape-mismatch for sum: {} axes {a_axes:?} vs {} axes {b_axes:?}",
                    fmt_shape(&sa),
                    fmt_shape(&sb)
                )));
            }
        }
        let free_a: Vec<usize> = (0..sa.len()).filter(|x| !a_axes.contains(x)).collect();
        let free_b: Vec<usize> = (0..sb.len()).filter(|y| !b_axes.contains(y)).collect();
        let size = |s: &[Option<usize>], axes: &[usize]| axes.iter().map(|&a| s[a].unwrap_or(0)).product::<usize>();
        let (m, k, n) = (size(&sa, &free_a), size(&sa, a_axes), size(&sb, &free_b));
        let perm_a: Vec<usize> = free_a.iter().chain(a_axes).copied().collect();
        let perm_b: Vec<usize> = b_axes.iter().chain(&free_b).copied().collect();
        let a2 = self.transpose(&perm_a)?.reshape(&[m as isize, k as isize])?;
        let b2 = other.transpose(&perm_b)?.reshape(&[k as isize, n as isize])?;
        let out_shape: Vec<isize> = free_a
            .iter()
            .map(|&x| sa[x].unwrap_or(0) as isize)
            .chain(free_b.iter().map(|&y| sb[y].unwrap_or(0) as isize))
            .collect();
        a2.dot(&b2)?.reshape(&out_shape)
    }

    /// `a @ b` with numpy's `matmul` rules: a 1-d operand acts as a row
    /// (left) or column (right) vector that is then dropped from the
    /// result; past 2-d, the leading axes are stacks of matrices that
    /// broadcast against each other (a length-1 axis repeats).
    pub fn matmul(&self, other: &Array) -> Result<Array> {
        match (self.ndim(), other.ndim()) {
            (0, _) | (_, 0) => Err(ArrayError::Shape("matmul: an operand is a scalar; use multiply".into())),
            (2, 2) => self.dot(other),
            (1, 2) => self.expand_dims(0)?.dot(other)?.squeeze(Some(&[0])),
            (2, 1) => self.dot(&other.expand_dims(1)?)?.squeeze(Some(&[1])),
            (1, 1) => self.tensordot(other, &[0], &[0]),
            (1, _) => {
                let out = self.expand_dims(0)?.stacked_matmul(other)?;
                let axis = out.ndim() - 2;
                out.squeeze(Some(&[axis]))
            }
            (_, 1) => {
                let out = self.stacked_matmul(&other.expand_dims(1)?)?;
                let axis = out.ndim() - 1;
                out.squeeze(Some(&[axis]))
            }
            _ => self.stacked_matmul(other),
        }
    }

    /// `matmul` of two arrays of at least 2 axes, one of them more: batch
    /// axes are padded to the same count and broadcast, `other` is
    /// rechunked to `self`'s batch and contraction chunks, and each output
    /// block sums the products of its row of `self` blocks with its column
    /// of `other` blocks (one task per output block).
    fn stacked_matmul(&self, other: &Array) -> Result<Array> {
        let nd = self.ndim().max(other.ndim());
        let mut a = self.clone();
        while a.ndim() < nd {
            a = a.expand_dims(0)?;
        }
        let mut b = other.clone();
        while b.ndim() < nd {
            b = b.expand_dims(0)?;
        }
        let (sa, sb) = (a.shape(), b.shape());
        let mismatch = || {
            ArrayError::Shape(format!(
                "matmul: shapes {} and {} are not aligned",
                fmt_shape(&self.shape()),
                fmt_shape(&other.shape())
            ))
        };
        if sa.iter().chain(&sb).any(Option::is_none) {
            return Err(ArrayError::UnknownChunks("matmul needs known chunk sizes; call compute_chunk_sizes()".into()));
        }
        let size = |s: &[Option<usize>], d: usize| s[d].unwrap_or(0);
        if size(&sa, nd - 1) != size(&sb, nd - 2) {
            return Err(mismatch());
        }
        // Target chunks of `other`: `self`'s on shared batch axes and on the
        // contraction, its own where it broadcasts and on its last axis.
        let mut b_sizes: Vec<Vec<usize>> = Vec::with_capacity(nd);
        let mut out_sizes: Vec<Vec<Option<usize>>> = Vec::with_capacity(nd);
        for d in 0..nd - 2 {
            let (p, q) = (size(&sa, d), size(&sb, d));
            let own = |x: &Array| x.grid.axis(d).iter().map(|c| c.unwrap_or(0)).collect::<Vec<usize>>();
            if p == q {
                b_sizes.push(own(&a));
                out_sizes.push(a.grid.axis(d).to_vec());
            } else if p == 1 {
                b_sizes.push(own(&b));
                out_sizes.push(b.grid.axis(d).to_vec());
            } else if q == 1 {
                b_sizes.push(vec![1]);
                out_sizes.push(a.grid.axis(d).to_vec());
            } else {
                return Err(ArrayError::Shape(format!(
                    "matmul: batch axes of {} and {} do not broadcast",
                    fmt_shape(&self.shape()),
                    fmt_shape(&other.shape())
                )));
            }
        }
        b_sizes.push(a.grid.axis(nd - 1).iter().map(|c| c.unwrap_or(0)).collect());
        b_sizes.push(b.grid.axis(nd - 1).iter().map(|c| c.unwrap_or(0)).collect());
        out_sizes.push(a.grid.axis(nd - 2).to_vec());
        out_sizes.push(b.grid.axis(nd - 1).to_vec());
        let b = b.rechunk_to(&ChunkGrid::from_sizes(b_sizes))?;
        let dtype = dot_dtype(promote(a.dtype, b.dtype));
        let params = Params::encode(&dtype);
        let name: Arc<str> = Arc::from(format!("matmul-{}", token_of(&[a.name.as_bytes(), b.name.as_bytes()])));
        let grid = ChunkGrid::from_options(out_sizes);
        let nk = a.grid.numblocks()[nd - 1];
        let (a_nb, b_nb) = (a.grid.numblocks(), b.grid.numblocks());
        let blocks = grid
            .indices()
            .into_iter()
            .map(|idx| {
                // A broadcast axis (one block of length 1) always uses block 0.
                let at = |nb: &[usize], d: usize| if nb[d] == 1 { 0 } else { idx[d] };
                let parts = |k: usize| {
                    let mut ia: Vec<usize> = (0..nd - 2).map(|d| at(&a_nb, d)).collect();
                    let mut ib = (0..nd - 2).map(|d| at(&b_nb, d)).collect::<Vec<usize>>();
                    ia.extend([idx[nd - 2], k]);
                    ib.extend([k, idx[nd - 1]]);
                    (ArgPart::of(&a.blocks[a.grid_pos(&ia)]), ArgPart::of(&b.blocks[b.grid_pos(&ib)]))
                };
                let (xs, ys): (Vec<ArgPart>, Vec<ArgPart>) = (0..nk).map(parts).unzip();
                Delayed::from_task(
                    block_key(&name, &idx),
                    kernels::MATMUL,
                    params.clone(),
                    vec![ArgPart::list(xs), ArgPart::list(ys)],
                )
            })
            .collect();
        Ok(Array { name, dtype, grid, blocks, constant: None })
    }

    // -------------------------------------------------- masks and histograms

    /// `x[mask]` with a boolean array of the same shape and chunks. The
    /// result is 1-d with one block per input block and unknown (NaN) chunk
    /// sizes, as in Dask; it can still be computed, and
    /// [`Self::compute_chunk_sizes`] makes them known.
    pub fn mask(&self, mask: &Array) -> Result<Array> {
        if mask.dtype != DType::Bool {
            return Err(ArrayError::Value(format!("a mask must be bool, got {}", mask.dtype)));
        }
        if self.shape() != mask.shape() || self.grid != mask.grid {
            return Err(ArrayError::Shape(format!(
                "mask of shape {} chunked {} does not match array of shape {} chunked {}",
                fmt_shape(&mask.shape()),
                fmt_chunks(&mask.grid),
                fmt_shape(&self.shape()),
                fmt_chunks(&self.grid)
            )));
        }
        // Whole rows first, so the selected elements come out in numpy's order.
        let (x, m) = (self.whole_rows(), mask.whole_rows());
        let name: Arc<str> = Arc::from(format!("getitem-{}", token_of(&[x.name.as_bytes(), m.name.as_bytes()])));
        let blocks = (0..x.blocks.len())
            .map(|i| {
                let key = block_key(&name, &[i]);
                Delayed::from_task(
                    key,
                    kernels::MASK,
                    Params::default(),
                    vec![ArgPart::of(&x.blocks[i]), ArgPart::of(&m.blocks[i])],
                )
            })
            .collect();
        Ok(Array { name, dtype: self.dtype, grid: ChunkGrid::unknown_1d(x.blocks.len()), blocks, constant: None })
    }

    /// Computes the lengths of blocks whose sizes are unknown (1-d arrays).
    pub fn compute_chunk_sizes(&self) -> Result<Array> {
        if self.grid.shape().iter().all(Option::is_some) {
            return Ok(self.clone());
        }
        if self.ndim() != 1 {
            return Err(ArrayError::UnknownChunks("compute_chunk_sizes supports 1-d arrays".into()));
        }
        let client = Client::current()?;
        let lens: Vec<Delayed<i64>> = self
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let key = block_key(&Arc::from(format!("len-{}", self.name)), &[i]);
                Delayed::from_task(key, kernels::LEN, Params::default(), vec![ArgPart::of(b)])
            })
            .collect();
        let refs: Vec<&Delayed<i64>> = lens.iter().collect();
        let sizes = client
            .compute_many(&refs)
            .iter()
            .map(|f| f.result().map(|n| n.max(0) as usize))
            .collect::<rask::Result<Vec<_>>>()?;
        Ok(Array { grid: ChunkGrid::from_sizes(vec![sizes]), ..self.clone() })
    }

    /// `histogram(x, bins, range=(low, high))`, as `da.histogram`: counts per
    /// block, summed in a tree. Returns the counts and the `bins + 1` edges.
    pub fn histogram(&self, bins: usize, range: (f64, f64)) -> Result<(Array, Vec<f64>)> {
        let (low, high) = range;
        if bins == 0
            || low.partial_cmp(&high) != Some(std::cmp::Ordering::Less)
            || !low.is_finite()
            || !high.is_finite()
        {
            return Err(ArrayError::Value(format!(
                "histogram needs bins > 0 and a finite range low < high, got {bins} bins over ({low}, {high})"
            )));
        }
        let params = Params::encode(&kernels::HistogramParams { bins, low, high });
        let name: Arc<str> = Arc::from(format!("histogram-{}", token_of(&[self.name.as_bytes(), &params.0])));
        let per_block: Vec<Delayed<ArrayValue>> = (0..self.blocks.len())
            .map(|i| {
                Delayed::from_task(
                    block_key(&name, &[i, 0]),
                    kernels::HISTOGRAM,
                    params.clone(),
                    vec![ArgPart::of(&self.blocks[i])],
                )
            })
            .collect();
        let counts = Array {
            name,
            dtype: DType::I64,
            grid: ChunkGrid::from_sizes(vec![vec![1; per_block.len()], vec![bins]]),
            blocks: per_block,
            constant: None,
        };
        let total = counts.reduce(Reduction::Sum, Some(&[0]), false, 8)?;
        Ok((total, kernels::histogram_edges(bins, low, high)))
    }

    // ------------------------------------------------------------ reductions

    /// A tree reduction over `axes` (all when `None`): one partial per block,
    /// combined `split_every` at a time along each reduced axis, then
    /// finalized. Blocks along kept axes stay separate.
    pub fn reduce(&self, op: Reduction, axes: Option<&[usize]>, keepdims: bool, split_every: usize) -> Result<Array> {
        let ndim = self.ndim();
        let mut axes: Vec<usize> = axes.map_or_else(|| (0..ndim).collect(), <[usize]>::to_vec);
        axes.sort_unstable();
        axes.dedup();
        if let Some(&bad) = axes.iter().find(|&&a| a >= ndim) {
            return Err(ArrayError::Shape(format!("axis {bad} is out of bounds for an array of dimension {ndim}")));
        }
        let split_every = split_every.max(2);
        let input_dtype = self.dtype;
        if matches!(op, Reduction::ArgMin | Reduction::ArgMax) && axes.len() != 1 && axes.len() != ndim {
            return Err(ArrayError::Value(format!("{} takes one axis or None, got {axes:?}", op.name())));
        }
        let global_shape: Vec<usize> = self.shape().into_iter().map(|s| s.unwrap_or(0)).collect();
        let stage = |stage| {
            Params::encode(&ReduceParams {
                op,
                axes: axes.clone(),
                stage,
                input_dtype,
                block_offset: Vec::new(),
                global_shape: Vec::new(),
            })
        };
        let base = format!("{}-{:?}-{keepdims}-{split_every}", op.name(), axes);

        // Partials: same block grid, reduced axes become length 1.
        let partial_params = stage(Stage::Partial);
        let name: Arc<str> =
            Arc::from(format!("{}-partial-{}", op.name(), token_of(&[self.name.as_bytes(), base.as_bytes()])));
        let mut level: Vec<(Vec<usize>, Delayed<ArrayValue>)> = self
            .grid
            .indices()
            .into_iter()
            .map(|idx| {
                let at = self.grid_pos(&idx);
                let key = block_key(&name, &idx);
                // Arg-reductions need to know where each block sits.
                let params = if matches!(op, Reduction::ArgMin | Reduction::ArgMax) {
                    Params::encode(&ReduceParams {
                        op,
                        axes: axes.clone(),
                        stage: Stage::Partial,
                        input_dtype,
                        block_offset: self.grid.block_offset(&idx).unwrap_or_default(),
                        global_shape: global_shape.clone(),
                    })
                } else {
                    partial_params.clone()
                };
                (idx, Delayed::from_task(key, kernels::REDUCE, params, vec![ArgPart::of(&self.blocks[at])]))
            })
            .collect();
        let mut counts = self.grid.numblocks();
        let combine_params = stage(Stage::Combine);
        let mut depth = 0;
        while axes.iter().any(|&a| counts[a] > 1) {
            depth += 1;
            let next_counts: Vec<usize> = counts
                .iter()
                .enumerate()
                .map(|(a, &n)| if axes.contains(&a) { n.div_ceil(split_every) } else { n })
                .collect();
            let cname: Arc<str> = Arc::from(format!("{}-combine{depth}-{}", op.name(), token_of(&[name.as_bytes()])));
            let mut groups: std::collections::BTreeMap<Vec<usize>, Vec<Delayed<ArrayValue>>> =
                std::collections::BTreeMap::new();
            for (idx, d) in level {
                let parent: Vec<usize> =
                    idx.iter().enumerate().map(|(a, &i)| if axes.contains(&a) { i / split_every } else { i }).collect();
                groups.entry(parent).or_default().push(d);
            }
            level = groups
                .into_iter()
                .map(|(idx, parts)| {
                    let key = block_key(&cname, &idx);
                    let list = ArgPart::list(parts.iter().map(ArgPart::of).collect());
                    (idx, Delayed::from_task(key, kernels::REDUCE, combine_params.clone(), vec![list]))
                })
                .collect();
            counts = next_counts;
        }
        let out_grid = self.grid.reduced(&axes, keepdims);
        let fname: Arc<str> = Arc::from(format!("{}-{}", op.name(), token_of(&[name.as_bytes(), b"final"])));
        let final_params = stage(Stage::Finalize { keepdims });
        let blocks = level
            .into_iter()
            .map(|(idx, d)| {
                let out_idx: Vec<usize> =
                    idx.iter().enumerate().filter(|(a, _)| keepdims || !axes.contains(a)).map(|(_, &i)| i).collect();
                Delayed::from_task(
                    block_key(&fname, &out_idx),
                    kernels::REDUCE,
                    final_params.clone(),
                    vec![ArgPart::of(&d)],
                )
            })
            .collect();
        Ok(Array { name: fname, dtype: op.output_dtype(input_dtype), grid: out_grid, blocks, constant: None })
    }

    pub fn sum(&self) -> Result<Array> {
        self.reduce(Reduction::Sum, None, false, 4)
    }
    pub fn mean(&self) -> Result<Array> {
        self.reduce(Reduction::Mean, None, false, 4)
    }
    pub fn max(&self) -> Result<Array> {
        self.reduce(Reduction::Max, None, false, 4)
    }
    pub fn min(&self) -> Result<Array> {
        self.reduce(Reduction::Min, None, false, 4)
    }
    pub fn prod(&self) -> Result<Array> {
        self.reduce(Reduction::Prod, None, false, 4)
    }
    pub fn var(&self, ddof: u32) -> Result<Array> {
        self.reduce(Reduction::Var { ddof }, None, false, 4)
    }
    pub fn std(&self, ddof: u32) -> Result<Array> {
        self.reduce(Reduction::Std { ddof }, None, false, 4)
    }
    pub fn any(&self) -> Result<Array> {
        self.reduce(Reduction::Any, None, false, 4)
    }
    pub fn all(&self) -> Result<Array> {
        self.reduce(Reduction::All, None, false, 4)
    }
    pub fn count_nonzero(&self) -> Result<Array> {
        self.reduce(Reduction::CountNonzero, None, false, 4)
    }
    pub fn nansum(&self) -> Result<Array> {
        self.reduce(Reduction::NanSum, None, false, 4)
    }
    /// `np.argmin(x, axis)`: flat index when `axis` is `None`.
    pub fn argmin(&self, axis: Option<usize>) -> Result<Array> {
        self.reduce(Reduction::ArgMin, axis.as_ref().map(std::slice::from_ref), false, 4)
    }
    pub fn argmax(&self, axis: Option<usize>) -> Result<Array> {
        self.reduce(Reduction::ArgMax, axis.as_ref().map(std::slice::from_ref), false, 4)
    }
    pub fn nanmean(&self) -> Result<Array> {
        self.reduce(Reduction::NanMean, None, false, 4)
    }
    /// `np.cumsum(x, axis)`: numpy's dtype (ints widen as `sum`), and its
    /// order of additions: each block continues from the previous block's
    /// last slice along the axis, so results are bit-identical to numpy's
    /// for every chunking (the blocks along the axis run one after another).
    pub fn cumsum(&self, axis: usize) -> Result<Array> {
        self.cumulate(kernels::Cumulative::Sum, axis)
    }

    /// `np.cumprod(x, axis)`, as `cumsum`.
    pub fn cumprod(&self, axis: usize) -> Result<Array> {
        self.cumulate(kernels::Cumulative::Prod, axis)
    }

    fn cumulate(&self, op: kernels::Cumulative, axis: usize) -> Result<Array> {
        if axis >= self.ndim() {
            return Err(ArrayError::Value(format!(
                "axis {axis} is out of bounds for array of dimension {}",
                self.ndim()
            )));
        }
        let dtype = crate::dtype::sum_dtype(self.dtype);
        let params = Params::encode(&kernels::CumulateParams { op, axis, dtype });
        let numblocks = self.grid.numblocks();
        let stride: usize = numblocks[axis + 1..].iter().product();
        let mut done: Vec<Delayed<ArrayValue>> = Vec::new();
        let name = format!("{op:?}").to_lowercase();
        Ok(Self::build(
            &format!("cum{name}"),
            &[self.name.as_bytes(), &params.0],
            dtype,
            self.grid.clone(),
            |idx, key| {
                let pos = self.grid_pos(idx);
                let mut args = vec![ArgPart::of(&self.blocks[pos])];
                if idx[axis] > 0 {
                    args.push(ArgPart::of(&done[pos - stride]));
                }
                let d = Delayed::from_task(key, kernels::CUMULATE, params.clone(), args);
                done.push(d.clone());
                d
            },
        ))
    }

    /// `np.diff(x, axis=axis)` (n = 1): each block reads the next block
    /// along the axis for its last difference; the last block is one
    /// shorter. Bool gives `x[i+1] != x[i]`, integers wrap, as numpy.
    pub fn diff(&self, axis: usize) -> Result<Array> {
        if axis >= self.ndim() {
            return Err(ArrayError::Value(format!(
                "diff requires input that is at least one dimensional along axis {axis}; the array has {} axes",
                self.ndim()
            )));
        }
        let mut sizes: Vec<Vec<Option<usize>>> = (0..self.ndim()).map(|a| self.grid.axis(a).to_vec()).collect();
        if sizes[axis].iter().any(Option::is_none) {
            return Err(ArrayError::UnknownChunks("diff needs known chunk sizes; call compute_chunk_sizes()".into()));
        }
        if let Some(last) = sizes[axis].last_mut() {
            *last = last.map(|n| n.saturating_sub(1));
        }
        let numblocks = self.grid.numblocks();
        let stride: usize = numblocks[axis + 1..].iter().product();
        let params = Params::encode(&axis);
        let grid = ChunkGrid::from_options(sizes);
        Ok(Self::build("diff", &[self.name.as_bytes(), &params.0], self.dtype, grid, |idx, key| {
            let pos = self.grid_pos(idx);
            let mut args = vec![ArgPart::of(&self.blocks[pos])];
            if idx[axis] + 1 < numblocks[axis] {
                args.push(ArgPart::of(&self.blocks[pos + stride]));
            }
            Delayed::from_task(key, kernels::DIFF, params.clone(), args)
        }))
    }

    /// `np.nanmin(x)` over everything; `reduce(Reduction::NanMin, axes, ..)`
    /// for axes. So too `nanmax`, `nanvar`, `nanstd`.
    pub fn nanmin(&self) -> Result<Array> {
        self.reduce(Reduction::NanMin, None, false, 4)
    }
    pub fn nanmax(&self) -> Result<Array> {
        self.reduce(Reduction::NanMax, None, false, 4)
    }
    pub fn nanvar(&self, ddof: u32) -> Result<Array> {
        self.reduce(Reduction::NanVar { ddof }, None, false, 4)
    }
    pub fn nanstd(&self, ddof: u32) -> Result<Array> {
        self.reduce(Reduction::NanStd { ddof }, None, false, 4)
    }
    pub fn sum_axis(&self, axis: usize) -> Result<Array> {
        self.reduce(Reduction::Sum, Some(&[axis]), false, 4)
    }

    // --------------------------------------------------------------- compute

    /// Computes on the current client and assembles one in-memory array.
    pub fn compute(&self) -> Result<ArrayValue> {
        self.compute_with(&Client::current()?)
    }

    pub fn compute_with(&self, client: &Client) -> Result<ArrayValue> {
        let refs: Vec<&Delayed<ArrayValue>> = self.blocks.iter().collect();
        let values = client.compute_many(&refs).iter().map(rask::Future::result).collect::<rask::Result<Vec<_>>>()?;
        self.assemble(values)
    }

    /// Computes a 0-d array (a reduction over all axes) as a scalar.
    pub fn compute_scalar<T: rask::core::FromValue>(&self) -> Result<T> {
        let a = self.compute()?;
        if !a.shape().is_empty() {
            return Err(ArrayError::Shape(format!("expected a 0-d array, got shape {:?}", a.shape())));
        }
        let v = with_array!(&a, x => x.iter().next().map(|e| (*e).into_value()).unwrap_or_default());
        T::from_value(v).map_err(|e| ArrayError::Value(e.message))
    }

    fn assemble(&self, values: Vec<ArrayValue>) -> Result<ArrayValue> {
        kernels::stitch(values, &self.grid.numblocks()).map_err(|e| ArrayError::Value(e.message))
    }

    /// Merges blocks along every axis but the first, so each block holds whole
    /// rows and block order is C order (what boolean indexing needs to give
    /// numpy's element order).
    fn whole_rows(&self) -> Array {
        let nb = self.grid.numblocks();
        if nb.iter().skip(1).all(|&n| n == 1) {
            return self.clone();
        }
        let per_row: usize = nb.iter().skip(1).product();
        let mut trailing = nb.clone();
        trailing[0] = 1;
        let params = Params::encode(&trailing);
        let name: Arc<str> = Arc::from(format!("rechunk-rows-{}", token_of(&[self.name.as_bytes()])));
        let blocks = (0..nb[0])
            .map(|i| {
                let parts = self.blocks[i * per_row..(i + 1) * per_row].iter().map(ArgPart::of).collect();
                let mut idx = vec![0; nb.len()];
                idx[0] = i;
                Delayed::from_task(block_key(&name, &idx), kernels::CONCAT, params.clone(), vec![ArgPart::list(parts)])
            })
            .collect();
        let mut sizes: Vec<Vec<Option<usize>>> = (0..nb.len()).map(|ax| self.grid.axis(ax).to_vec()).collect();
        for s in sizes.iter_mut().skip(1) {
            *s = vec![s.iter().copied().sum::<Option<usize>>()];
        }
        Array { name, dtype: self.dtype, grid: ChunkGrid::from_options(sizes), blocks, constant: None }
    }
}

/// numpy has no boolean loops for `//`, `%` and `**`: they compute in int8.
fn compute_dtype(op: BinaryOp, promoted: DType) -> DType {
    if promoted == DType::Bool && matches!(op, BinaryOp::FloorDiv | BinaryOp::Mod | BinaryOp::Pow) {
        DType::I8
    } else {
        promoted
    }
}

/// The dtype an array-and-Python-scalar operation computes in (NEP 50): the
/// array's, unless the scalar is an integer outside an integer dtype's range.
/// Then numpy 2 raises for arithmetic ("Python integer 300 out of bounds for
/// uint8") but answers comparisons, logical operations and true division
/// exactly; those compute in int64 here (float64 for uint64 against a
/// negative integer, where only the sign matters and float64 keeps it).
fn scalar_compute_dtype(op: BinaryOp, array: DType, scalar: Fill) -> Result<DType> {
    let dtype = compute_dtype(op, promote_scalar(array, matches!(scalar, Fill::Float(_))));
    let is_int = crate::dtype::is_signed(dtype) || crate::dtype::is_unsigned(dtype);
    match scalar {
        Fill::Int(v) if is_int && !crate::dtype::holds_exactly(dtype, scalar) => {
            let exact = op.is_comparison() || op == BinaryOp::Div;
            if !exact {
                Err(ArrayError::Value(format!("Python integer {v} out of bounds for {dtype}")))
            } else if dtype == DType::U64 {
                Ok(DType::F64)
            } else {
                Ok(DType::I64)
            }
        }
        _ => Ok(dtype),
    }
}

/// The dtype `dot`/`matmul` compute and return in: numpy's promoted dtype
/// for float32/64, int32, int64 and uint64; the narrower integers and bool
/// (which numpy keeps) compute in int64, as rask has no block product for
/// them.
fn dot_dtype(promoted: DType) -> DType {
    match promoted {
        DType::F32 | DType::F64 | DType::I32 | DType::I64 | DType::U64 => promoted,
        _ => DType::I64,
    }
}

fn op_dtype(op: BinaryOp, dtype: DType) -> DType {
    match op {
        BinaryOp::Div if dtype != DType::F32 => DType::F64,
        _ => dtype,
    }
}

use rask::core::IntoValue;

/// Human-readable sizes as Dask prints them.
pub fn format_bytes(n: usize) -> String {
    let units = ["B", "kiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.2} {}", units[u]) }
}

/// Chunks as Dask prints them: `((2, 2, 1), (3,))`, nan for unknown sizes.
fn fmt_chunks(g: &ChunkGrid) -> String {
    let axes: Vec<String> = (0..g.ndim()).map(|ax| fmt_shape(g.axis(ax))).collect();
    if axes.len() == 1 { format!("({},)", axes[0]) } else { format!("({})", axes.join(", ")) }
}

fn fmt_shape(s: &[Option<usize>]) -> String {
    let parts: Vec<String> = s.iter().map(|x| x.map_or("nan".to_string(), |n| n.to_string())).collect();
    if parts.len() == 1 { format!("({},)", parts[0]) } else { format!("({})", parts.join(", ")) }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rask.array<{}, shape={}, dtype={}, chunksize={}>",
            rask::core::key::prefix_of(&self.name),
            fmt_shape(&self.shape()),
            self.dtype,
            fmt_shape(&self.grid.chunksize())
        )
    }
}

/// The summary table Dask shows for an array, computed from metadata only.
impl fmt::Display for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chunk = self.grid.chunksize();
        let chunk_bytes = chunk.iter().copied().product::<Option<usize>>().map(|n| n * self.dtype.itemsize());
        let bytes = |b: Option<usize>| b.map_or_else(|| "unknown".to_string(), format_bytes);
        writeln!(f, "{self:?}")?;
        writeln!(f, "{:<8} {:>24} {:>24}", "", "Array", "Chunk")?;
        writeln!(f, "{:<8} {:>24} {:>24}", "Bytes", bytes(self.nbytes()), bytes(chunk_bytes))?;
        writeln!(f, "{:<8} {:>24} {:>24}", "Shape", fmt_shape(&self.shape()), fmt_shape(&chunk))?;
        writeln!(
            f,
            "{:<8} {:>24} {:>24}",
            "Count",
            format!("{} tasks", self.task_count()),
            format!("{} chunks", self.npartitions())
        )?;
        write!(f, "{:<8} {:>24} {:>24}", "Type", self.dtype.name(), "ndarray")
    }
}

/// One entry of a numpy index expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Index {
    /// An integer: the axis goes away. Negative counts from the end.
    At(isize),
    /// `start:stop:step`, with numpy's defaults when `None`.
    Range { start: Option<isize>, stop: Option<isize>, step: isize },
    /// `None` / `np.newaxis`.
    NewAxis,
    /// `...`
    Ellipsis,
}

impl Index {
    /// `:`
    pub const ALL: Index = Index::Range { start: None, stop: None, step: 1 };

    pub fn range(start: Option<isize>, stop: Option<isize>, step: isize) -> Index {
        Index::Range { start, stop, step }
    }
}

fn unreachable_ellipsis() -> Result<()> {
    Err(ArrayError::Value("an ellipsis was left after expansion".into()))
}

/// Replaces `...` by as many `:` as needed, and pads missing axes with `:`.
fn expand_ellipsis(index: &[Index], ndim: usize) -> Result<Vec<Index>> {
    let ellipses = index.iter().filter(|i| matches!(i, Index::Ellipsis)).count();
    if ellipses > 1 {
        return Err(ArrayError::Value("an index can only have a single ellipsis ('...')".into()));
    }
    let used = index.iter().filter(|i| matches!(i, Index::At(_) | Index::Range { .. })).count();
    if used > ndim {
        return Err(ArrayError::Shape(format!(
            "too many indices for array: array is {ndim}-dimensional, but {used} were indexed"
        )));
    }
    let mut out = Vec::new();
    for ix in index {
        if matches!(ix, Index::Ellipsis) {
            out.extend(std::iter::repeat_n(Index::ALL, ndim - used));
        } else {
            out.push(*ix);
        }
    }
    if ellipses == 0 {
        out.extend(std::iter::repeat_n(Index::ALL, ndim - used));
    }
    Ok(out)
}

/// numpy's `slice.indices(n)`: the first index and the count selected.
fn normalize_slice(start: Option<isize>, stop: Option<isize>, step: isize, n: usize) -> (isize, usize) {
    let n = n as isize;
    let clamp = |v: isize, lo: isize, hi: isize| v.max(lo).min(hi);
    let (lo, hi) = if step > 0 { (0, n) } else { (-1, n - 1) };
    let fix = |v: Option<isize>, default: isize| match v {
        None => default,
        Some(v) if v < 0 => clamp(v + n, lo, hi),
        Some(v) => clamp(v, lo, hi),
    };
    let (s, e) = if step > 0 { (fix(start, 0), fix(stop, n)) } else { (fix(start, n - 1), fix(stop, -1)) };
    let count = if step > 0 {
        if e > s { (e - s + step - 1) / step } else { 0 }
    } else if s > e {
        (s - e + (-step) - 1) / (-step)
    } else {
        0
    };
    (s, count as usize)
}

/// Which block holds global position `g`, and where in it.
fn locate(sizes: &[usize], g: usize) -> (usize, usize) {
    let mut off = 0;
    for (b, &n) in sizes.iter().enumerate() {
        if g < off + n {
            return (b, g - off);
        }
        off += n;
    }
    (sizes.len().saturating_sub(1), 0)
}

/// Splits the progression `first, first + step, ...` (`count` terms) over
/// the blocks of one axis, in output order.
fn range_pieces(sizes: &[usize], first: isize, count: usize, step: isize) -> Vec<(usize, Sel, usize)> {
    let mut out: Vec<(usize, Sel, usize)> = Vec::new();
    let offsets: Vec<usize> = sizes
        .iter()
        .scan(0, |acc, &n| {
            let o = *acc;
            *acc += n;
            Some(o)
        })
        .collect();
    let mut k = 0usize;
    while k < count {
        let g = (first + k as isize * step) as usize;
        let (b, local) = locate(sizes, g);
        let (lo, hi) = (offsets[b], offsets[b] + sizes[b]);
        // How many further terms stay inside this block.
        let room = if step > 0 { (hi - 1 - g) / step as usize + 1 } else { (g - lo) / (-step) as usize + 1 };
        let take = room.min(count - k);
        let last_local = local as isize + (take as isize - 1) * step;
        let stop = if step > 0 {
            Some(last_local + 1)
        } else if last_local - 1 < 0 {
            None
        } else {
            Some(last_local - 1)
        };
        out.push((b, Sel::Range { start: local as isize, stop, step }, take));
        k += take;
    }
    if out.is_empty() {
        out.push((0, Sel::Range { start: 0, stop: Some(0), step: 1 }, 0));
    }
    out
}

/// For each new block of an axis, the old blocks it overlaps and the range
/// taken from each.
fn axis_overlaps(old: &[usize], new: &[usize]) -> Vec<Vec<(usize, Sel)>> {
    let old_off: Vec<usize> = old
        .iter()
        .scan(0, |a, &n| {
            let o = *a;
            *a += n;
            Some(o)
        })
        .collect();
    let mut out = Vec::with_capacity(new.len());
    let mut start = 0usize;
    for &n in new {
        let end = start + n;
        let mut parts = Vec::new();
        for (b, (&o, &len)) in old_off.iter().zip(old).enumerate() {
            let (lo, hi) = (start.max(o), end.min(o + len));
            if lo < hi {
                parts.push((b, Sel::Range { start: (lo - o) as isize, stop: Some((hi - o) as isize), step: 1 }));
            }
        }
        if parts.is_empty() {
            parts.push((0, Sel::Range { start: 0, stop: Some(0), step: 1 }));
        }
        out.push(parts);
        start = end;
    }
    out
}

fn lcm(a: usize, b: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    if a == 0 || b == 0 { 0 } else { a / gcd(a, b) * b }
}

/// The halo plan of one block along one axis: the runs of input elements
/// to gather (block, local selection), constant padding (before, after) and
/// the trim (before, after) that removes the halo from the result.
type HaloPlan = (Vec<(usize, Sel)>, (usize, usize), (usize, usize));

fn halo_plan(sizes: &[usize], n: usize, lo: usize, hi: usize, d: usize, boundary: kernels::Boundary) -> HaloPlan {
    use kernels::Boundary;
    let mut globals: Vec<usize> = Vec::with_capacity(hi - lo + 2 * d);
    let (mut pad_before, mut pad_after) = (0, 0);
    let start = lo as isize - d as isize;
    let end = (hi + d) as isize;
    for i in start..end {
        let mapped = if (0..n as isize).contains(&i) {
            Some(i as usize)
        } else {
            match boundary {
                Boundary::Reflect => {
                    let m = if i < 0 { -i - 1 } else { 2 * n as isize - i - 1 };
                    (0..n as isize).contains(&m).then_some(m as usize)
                }
                Boundary::Nearest => Some(if i < 0 { 0 } else { n - 1 }),
                Boundary::Periodic => Some(i.rem_euclid(n as isize) as usize),
                Boundary::Constant(_) => {
                    if i < 0 {
                        pad_before += 1;
                    } else {
                        pad_after += 1;
                    }
                    None
                }
                Boundary::None => None,
            }
        };
        if let Some(g) = mapped {
            globals.push(g);
        }
    }
    let trim = match boundary {
        Boundary::None => (d.min(lo), d.min(n - hi)),
        _ => (d, d),
    };
    // Group consecutive indices in one block into runs of step +1 or -1.
    let offsets: Vec<usize> = sizes
        .iter()
        .scan(0, |acc, &len| {
            let o = *acc;
            *acc += len;
            Some(o)
        })
        .collect();
    let block_of = |g: usize| offsets.iter().rposition(|&o| o <= g).unwrap_or(0);
    let mut runs: Vec<(usize, Sel)> = Vec::new();
    let mut k = 0;
    while k < globals.len() {
        let b = block_of(globals[k]);
        let mut step = 1isize;
        let mut j = k + 1;
        if j < globals.len() && block_of(globals[j]) == b {
            let diff = globals[j] as isize - globals[k] as isize;
            if diff == 1 || diff == -1 {
                step = diff;
                while j < globals.len()
                    && block_of(globals[j]) == b
                    && globals[j] as isize - globals[j - 1] as isize == step
                {
                    j += 1;
                }
            } else {
                j = k + 1;
            }
        }
        let first = (globals[k] - offsets[b]) as isize;
        let last = (globals[j - 1] - offsets[b]) as isize;
        let stop = if step > 0 {
            Some(last + 1)
        } else if last == 0 {
            None
        } else {
            Some(last - 1)
        };
        runs.push((b, Sel::Range { start: first, stop, step }));
        k = j;
    }
    (runs, (pad_before, pad_after), trim)
}

/// A Zarr store's location as tasks carry it: an `s3://` URL as given, a
/// local path made absolute (so workers in other directories find it).
/// `create` makes the local directory first (for `to_zarr`).
fn store_location(path: &std::path::Path, create: bool) -> Result<String> {
    let text = path.to_string_lossy().to_string();
    if rask_storage::is_s3(&text) {
        return Ok(text.trim_end_matches('/').to_string());
    }
    let local = rask_storage::local_path(&text).map_err(|e| ArrayError::Value(e.to_string()))?.unwrap_or_default();
    if create {
        std::fs::create_dir_all(&local).map_err(|e| ArrayError::Value(format!("{}: {e}", local.display())))?;
    }
    // A missing store stays as named, so reading it says what is missing.
    let abs = std::fs::canonicalize(&local)
        .or_else(|_| std::path::absolute(&local))
        .map_err(|e| ArrayError::Value(format!("{}: {e}", local.display())))?;
    Ok(abs.to_string_lossy().to_string())
}
