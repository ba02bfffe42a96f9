//! Chunk grids: how an array's shape is cut into blocks.
//!
//! Every dimension has a list of chunk sizes. Sizes may be irregular, and
//! unknown (`None`, shown as NaN like Dask) after operations such as boolean
//! indexing whose output length depends on the data.

use std::fmt;

use crate::{ArrayError, Result};

/// Dask's default target size of one chunk.
pub const DEFAULT_CHUNK_BYTES: usize = 128 << 20;

/// How the user asks for chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunks {
    /// Pick sizes so that a chunk is about [`DEFAULT_CHUNK_BYTES`].
    Auto,
    /// The same block shape everywhere (the last block per axis may be smaller).
    Uniform(Vec<usize>),
    /// Explicit sizes per axis.
    Explicit(Vec<Vec<usize>>),
}

/// The chunk sizes of every axis.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ChunkGrid {
    sizes: Vec<Vec<Option<usize>>>,
}

impl fmt::Debug for ChunkGrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, axis) in self.sizes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str("(")?;
            for (j, s) in axis.iter().enumerate() {
                if j > 0 {
                    f.write_str(", ")?;
                }
                match s {
                    Some(n) => write!(f, "{n}")?,
                    None => f.write_str("nan")?,
                }
            }
            f.write_str(if axis.len() == 1 { ",)" } else { ")" })?;
        }
        f.write_str(if self.sizes.len() == 1 { ",)" } else { ")" })
    }
}

impl ChunkGrid {
    /// One axis of `n` blocks whose sizes are not known yet.
    pub fn unknown_1d(n: usize) -> Self {
        Self { sizes: vec![vec![None; n]] }
    }

    pub fn from_options(sizes: Vec<Vec<Option<usize>>>) -> Self {
        Self { sizes }
    }

    pub fn from_sizes(sizes: Vec<Vec<usize>>) -> Self {
        Self { sizes: sizes.into_iter().map(|a| a.into_iter().map(Some).collect()).collect() }
    }

    /// Chooses chunks for `shape` as Dask's `normalize_chunks` does.
    pub fn normalize(shape: &[usize], chunks: &Chunks, itemsize: usize) -> Result<Self> {
        let grid = match chunks {
            Chunks::Auto => Self::auto(shape, itemsize, DEFAULT_CHUNK_BYTES),
            Chunks::Uniform(block) => {
                if block.len() != shape.len() {
                    return Err(ArrayError::Shape(format!(
                        "chunks {block:?} have {} dimensions but the shape {shape:?} has {}",
                        block.len(),
                        shape.len()
                    )));
                }
                Self::from_sizes(shape.iter().zip(block).map(|(&n, &b)| split(n, b.max(1))).collect())
            }
            Chunks::Explicit(sizes) => {
                if sizes.len() != shape.len() {
                    return Err(ArrayError::Shape(format!(
                        "chunks for {} dimensions given for shape {shape:?}",
                        sizes.len()
                    )));
                }
                for (axis, (s, &n)) in sizes.iter().zip(shape).enumerate() {
                    if s.iter().sum::<usize>() != n {
                        return Err(ArrayError::Shape(format!(
                            "chunks {s:?} of axis {axis} add up to {}, not {n}",
                            s.iter().sum::<usize>()
                        )));
                    }
                }
                Self::from_sizes(sizes.clone())
            }
        };
        Ok(grid)
    }

    /// Near-cubic chunks of about `limit_bytes`: axes shorter than the ideal
    /// edge are kept whole, the others share the rest of the budget, and each
    /// is split into equal parts.
    pub fn auto(shape: &[usize], itemsize: usize, limit_bytes: usize) -> Self {
        let mut budget = (limit_bytes / itemsize.max(1)).max(1) as f64;
        let mut block: Vec<Option<usize>> = vec![None; shape.len()];
        loop {
            let open: Vec<usize> = (0..shape.len()).filter(|&i| block[i].is_none()).collect();
            if open.is_empty() {
                break;
            }
            let edge = budget.powf(1.0 / open.len() as f64);
            let small: Vec<usize> = open.iter().copied().filter(|&i| (shape[i] as f64) <= edge).collect();
            if small.is_empty() {
                for i in open {
                    let parts = (shape[i] as f64 / edge).ceil().max(1.0) as usize;
                    block[i] = Some(shape[i].div_ceil(parts).max(1));
                }
                break;
            }
            for i in small {
                block[i] = Some(shape[i].max(1));
                budget /= shape[i].max(1) as f64;
            }
        }
        Self::from_sizes(shape.iter().zip(block).map(|(&n, b)| split(n, b.unwrap_or(n).max(1))).collect())
    }

    pub fn ndim(&self) -> usize {
        self.sizes.len()
    }

    pub fn axis(&self, i: usize) -> &[Option<usize>] {
        &self.sizes[i]
    }

    /// Blocks per axis.
    pub fn numblocks(&self) -> Vec<usize> {
        self.sizes.iter().map(Vec::len).collect()
    }

    pub fn nblocks(&self) -> usize {
        self.sizes.iter().map(Vec::len).product()
    }

    /// The total length of each axis, if known.
    pub fn shape(&self) -> Vec<Option<usize>> {
        self.sizes.iter().map(|a| a.iter().copied().sum::<Option<usize>>()).collect()
    }

    /// The largest block shape (Dask's `chunksize`).
    pub fn chunksize(&self) -> Vec<Option<usize>> {
        self.sizes.iter().map(|a| a.iter().copied().max().flatten()).collect()
    }

    /// Block shape at a block index.
    pub fn block_shape(&self, index: &[usize]) -> Option<Vec<usize>> {
        index.iter().enumerate().map(|(ax, &i)| self.sizes[ax][i]).collect()
    }

    /// Offset of a block's first element along each axis.
    pub fn block_offset(&self, index: &[usize]) -> Option<Vec<usize>> {
        index.iter().enumerate().map(|(ax, &i)| self.sizes[ax][..i].iter().copied().sum::<Option<usize>>()).collect()
    }

    /// Every block index, in C order.
    pub fn indices(&self) -> Vec<Vec<usize>> {
        c_order_indices(&self.numblocks())
    }

    /// Replaces the sizes of `axes` by one block of size 1 (or removes them),
    /// the grid of a reduction's result.
    pub fn reduced(&self, axes: &[usize], keepdims: bool) -> Self {
        let sizes = self
            .sizes
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match (axes.contains(&i), keepdims) {
                (true, true) => Some(vec![Some(1)]),
                (true, false) => None,
                (false, _) => Some(a.clone()),
            })
            .collect();
        Self { sizes }
    }
}

/// Every index of a grid with `counts` entries per axis, in C order.
pub fn c_order_indices(counts: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = counts.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; counts.len()];
    for _ in 0..total {
        out.push(idx.clone());
        for ax in (0..counts.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < counts[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

/// Splits `n` into blocks of `block`, the last one shorter.
fn split(n: usize, block: usize) -> Vec<usize> {
    if n == 0 {
        return vec![0];
    }
    let mut out = vec![block; n / block];
    if !n.is_multiple_of(block) {
        out.push(n % block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tutorial_randint_is_cut_into_about_128_mib_blocks() {
        let g = ChunkGrid::auto(&[10000, 1000, 100], 8, DEFAULT_CHUNK_BYTES);
        let block: Vec<usize> = g.chunksize().into_iter().map(Option::unwrap).collect();
        let bytes = block.iter().product::<usize>() * 8;
        assert!(bytes <= DEFAULT_CHUNK_BYTES && bytes > DEFAULT_CHUNK_BYTES / 2, "{block:?} = {bytes} bytes");
        assert_eq!(block[2], 100, "a short axis stays whole");
        assert_eq!(g.shape(), vec![Some(10000), Some(1000), Some(100)]);
    }

    #[test]
    fn explicit_and_uniform_chunks_are_checked() {
        let g = ChunkGrid::normalize(&[10, 7], &Chunks::Uniform(vec![4, 7]), 8).unwrap();
        assert_eq!(format!("{g:?}"), "((4, 4, 2), (7,))");
        assert!(ChunkGrid::normalize(&[10], &Chunks::Explicit(vec![vec![3, 3]]), 8).is_err());
        assert!(ChunkGrid::normalize(&[10], &Chunks::Uniform(vec![3, 3]), 8).is_err());
        assert_eq!(g.block_offset(&[2, 0]), Some(vec![8, 0]));
        assert_eq!(g.indices().len(), 3);
    }

    proptest! {
        #[test]
        fn auto_chunks_cover_the_shape_within_the_limit(
            shape in proptest::collection::vec(1usize..3000, 1..4), itemsize in prop::sample::select(vec![1usize, 2, 4, 8])
        ) {
            let limit = 1 << 20;
            let g = ChunkGrid::auto(&shape, itemsize, limit);
            prop_assert_eq!(g.shape(), shape.iter().map(|&n| Some(n)).collect::<Vec<_>>());
            let block: usize = g.chunksize().into_iter().map(Option::unwrap).product();
            prop_assert!(block * itemsize <= limit * 2, "block {:?} too big", g.chunksize());
        }
    }
}
