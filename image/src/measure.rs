//! Measurements over images (dask-image's `ndmeasure`): connected-component
//! labelling across chunks, per-label statistics, histograms.
//!
//! [`label`] labels each block on its own (union-find, scipy's connectivity),
//! makes the local labels unique by putting the block's number in the high
//! 32 bits, then merges the labels that touch across every chunk boundary:
//! the two planes on either side of a boundary are compared with every
//! neighbour offset the connectivity allows, so components meeting only at an
//! edge or a corner of a block are joined too. The merged labels are
//! renumbered 1..N by a last blockwise task. The count equals
//! `scipy.ndimage.label`'s and the components are the same; the numbering
//! follows the blocks (as dask-image's does), not scipy's scan order.

use std::collections::HashMap;

use rask::Delayed;
use rask::core::{ArrayValue, DType, OpEntry, OpError, Params, Value};
use rask_array::kernels::{FULL, FullParams};
use rask_array::{Array, BinaryOp, Fill, Index};
use serde::{Deserialize, Serialize};

use crate::{ImageError, Result};

/// Labels one block: non-zero elements, joined per `connectivity`.
pub const LABEL_BLOCK_OP: &str = "image.label_block";
/// Maps raw (block-tagged) labels to final ones.
pub const RELABEL_OP: &str = "image.relabel";

/// Neighbour offsets of `connectivity` (1 = faces … ndim = all): offsets in
/// {-1, 0, 1}^ndim with at most `connectivity` non-zero entries.
fn offsets(ndim: usize, connectivity: usize) -> Vec<Vec<isize>> {
    let mut out = Vec::new();
    let total = 3usize.pow(ndim as u32);
    for code in 0..total {
        let mut c = code;
        let off: Vec<isize> = (0..ndim)
            .map(|_| {
                let d = (c % 3) as isize - 1;
                c /= 3;
                d
            })
            .collect();
        let nz = off.iter().filter(|&&d| d != 0).count();
        if nz > 0 && nz <= connectivity {
            out.push(off);
        }
    }
    out
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Connected components of the non-zero elements of one block: labels
/// 1..=k in order of first appearance (C order), 0 for background.
pub fn label_block(foreground: &[bool], shape: &[usize], connectivity: usize) -> (Vec<i64>, usize) {
    let nd = shape.len();
    let n = foreground.len();
    let mut strides = vec![1usize; nd];
    for ax in (0..nd.saturating_sub(1)).rev() {
        strides[ax] = strides[ax + 1] * shape[ax + 1];
    }
    // Only the neighbours already visited in C order.
    let back: Vec<Vec<isize>> =
        offsets(nd, connectivity).into_iter().filter(|o| o.iter().find(|&&d| d != 0).is_some_and(|&d| d < 0)).collect();
    let mut parent: Vec<usize> = (0..n).collect();
    let mut idx = vec![0usize; nd];
    for lin in 0..n {
        if foreground[lin] {
            for o in &back {
                let inside = idx.iter().zip(o).zip(shape).all(|((&i, &d), &s)| {
                    let j = i as isize + d;
                    j >= 0 && (j as usize) < s
                });
                if !inside {
                    continue;
                }
                let nb = idx.iter().zip(o).zip(&strides).map(|((&i, &d), &st)| (i as isize + d) as usize * st).sum();
                if foreground[nb] {
                    let (a, b) = (find(&mut parent, lin), find(&mut parent, nb));
                    if a != b {
                        parent[a.max(b)] = a.min(b);
                    }
                }
            }
        }
        for ax in (0..nd).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    let mut labels = vec![0i64; n];
    let mut numbering: HashMap<usize, i64> = HashMap::new();
    for lin in 0..n {
        if foreground[lin] {
            let root = find(&mut parent, lin);
            let next = numbering.len() as i64 + 1;
            labels[lin] = *numbering.entry(root).or_insert(next);
        }
    }
    let count = numbering.len();
    (labels, count)
}

fn one_array(args: Vec<Value>, op: &str) -> std::result::Result<ArrayValue, OpError> {
    match <[Value; 1]>::try_from(args) {
        Ok([Value::Array(a)]) => Ok(a),
        _ => Err(OpError::new(format!("{op} takes one array argument"))),
    }
}

fn foreground(a: &ArrayValue) -> Vec<bool> {
    rask::core::with_array!(a, x => x.iter().map(|v| rask_array::dtype::Scalar::to_f64(*v) != 0.0).collect())
}

fn label_block_op(p: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let connectivity: usize =
        postcard::from_bytes(&p.0).map_err(|e| OpError::new(format!("{LABEL_BLOCK_OP}: bad parameters: {e}")))?;
    let a = one_array(args, LABEL_BLOCK_OP)?;
    let shape = a.shape().to_vec();
    let (labels, _) = label_block(&foreground(&a), &shape, connectivity);
    let arr = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), labels)
        .map_err(|e| OpError::new(format!("{LABEL_BLOCK_OP}: {e}")))?;
    Ok(Value::Array(ArrayValue::I64(arr.into_shared())))
}

#[derive(Debug, Serialize, Deserialize)]
struct Relabel {
    /// Raw labels, sorted, and their final labels.
    raw: Vec<i64>,
    final_: Vec<i32>,
}

fn relabel_op(p: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let map: Relabel =
        postcard::from_bytes(&p.0).map_err(|e| OpError::new(format!("{RELABEL_OP}: bad parameters: {e}")))?;
    let ArrayValue::I64(a) = one_array(args, RELABEL_OP)? else {
        return Err(OpError::new(format!("{RELABEL_OP} takes int64 labels")));
    };
    let out = a.map(|&v| if v == 0 { 0 } else { map.raw.binary_search(&v).map_or(0, |i| map.final_[i]) });
    Ok(Value::Array(ArrayValue::I32(out.into_shared())))
}

rask::core::inventory::submit! { OpEntry { name: LABEL_BLOCK_OP, func: label_block_op } }
rask::core::inventory::submit! { OpEntry { name: RELABEL_OP, func: relabel_op } }

fn as_i64(a: &ArrayValue) -> Vec<i64> {
    rask::core::with_array!(a, x => x.iter().map(|v| rask_array::dtype::Scalar::to_i64(*v)).collect())
}

/// `scipy.ndimage.label(image, structure=generate_binary_structure(ndim,
/// connectivity))`: int32 labels of the connected non-zero regions, and
/// their number. Blocks are labelled in parallel; the merge across chunk
/// boundaries computes the boundary planes and the set of labels.
pub fn label(image: &Array, connectivity: usize) -> Result<(Array, usize)> {
    let nd = image.ndim();
    if connectivity == 0 || connectivity > nd.max(1) {
        return Err(ImageError::Value(format!("connectivity must be 1..={nd}, got {connectivity}")));
    }
    let shape: Vec<usize> = image
        .shape()
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ImageError::Value("label needs known chunk sizes".into()))?;
    let local = image.map_blocks(LABEL_BLOCK_OP, Params::encode(&connectivity), DType::I64);
    // Tag each block's labels with its number in the high 32 bits.
    let grid = image.chunks().clone();
    let numblocks = grid.numblocks();
    let tag = Array::from_block_tasks(
        "label-block-tag",
        format!("{}-{connectivity}", image.name()).as_bytes(),
        DType::I64,
        grid.clone(),
        |idx, key| {
            let linear = idx.iter().zip(&numblocks).fold(0i64, |acc, (&i, &n)| acc * n as i64 + i as i64);
            let p = FullParams {
                shape: grid.block_shape(idx).unwrap_or_default(),
                dtype: DType::I64,
                value: Fill::Int(linear << 32),
            };
            Delayed::from_task(key, FULL, Params::encode(&p), vec![])
        },
    );
    let is_label = local.scalar(BinaryOp::Gt, Fill::Int(0)).astype(DType::I64);
    let raw = local.add(&tag.mul(&is_label)?)?;

    // Equivalences across every chunk boundary.
    let mut parent: HashMap<i64, i64> = HashMap::new();
    fn root(parent: &mut HashMap<i64, i64>, mut x: i64) -> i64 {
        while let Some(&p) = parent.get(&x) {
            if p == x {
                break;
            }
            x = p;
        }
        x
    }
    let all_offsets = offsets(nd, connectivity);
    for axis in 0..nd {
        let mut edge = 0usize;
        let sizes: Vec<usize> = grid.axis(axis).iter().map(|s| s.unwrap_or(0)).collect();
        for &len in &sizes[..sizes.len().saturating_sub(1)] {
            edge += len;
            let plane = |at: usize| -> Result<Vec<i64>> {
                let index: Vec<Index> = (0..nd)
                    .map(|a| {
                        if a == axis {
                            Index::At(at as isize)
                        } else {
                            Index::Range { start: None, stop: None, step: 1 }
                        }
                    })
                    .collect();
                Ok(as_i64(&raw.slice(&index)?.compute()?))
            };
            let (before, after) = (plane(edge - 1)?, plane(edge)?);
            let pshape: Vec<usize> = shape.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &s)| s).collect();
            let pnd = pshape.len();
            let mut pstrides = vec![1usize; pnd];
            for ax in (0..pnd.saturating_sub(1)).rev() {
                pstrides[ax] = pstrides[ax + 1] * pshape[ax + 1];
            }
            // Offsets that step +1 along `axis`, as offsets within the plane.
            let cross: Vec<Vec<isize>> = all_offsets
                .iter()
                .filter(|o| o[axis] == 1)
                .map(|o| o.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &d)| d).collect())
                .collect();
            let mut idx = vec![0usize; pnd];
            for &a in &before {
                if a != 0 {
                    for o in &cross {
                        let inside = idx.iter().zip(o).zip(&pshape).all(|((&i, &d), &s)| {
                            let j = i as isize + d;
                            j >= 0 && (j as usize) < s
                        });
                        if !inside {
                            continue;
                        }
                        let nb: usize = idx
                            .iter()
                            .zip(o)
                            .zip(&pstrides)
                            .map(|((&i, &d), &st)| (i as isize + d) as usize * st)
                            .sum();
                        let b = after[nb];
                        if b != 0 {
                            let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                            if ra != rb {
                                parent.insert(ra.max(rb), ra.min(rb));
                                parent.entry(ra.min(rb)).or_insert(ra.min(rb));
                            }
                        }
                    }
                }
                for ax in (0..pnd).rev() {
                    idx[ax] += 1;
                    if idx[ax] < pshape[ax] {
                        break;
                    }
                    idx[ax] = 0;
                }
            }
        }
    }
    // Every raw label, numbered 1..N by merged component.
    let ids = as_i64(&raw.unique()?.compute()?);
    let mut final_of_root: HashMap<i64, i32> = HashMap::new();
    let (mut raw_ids, mut finals) = (Vec::new(), Vec::new());
    for &id in ids.iter().filter(|&&v| v != 0) {
        let r = root(&mut parent, id);
        let next = final_of_root.len() as i32 + 1;
        let f = *final_of_root.entry(r).or_insert(next);
        raw_ids.push(id);
        finals.push(f);
    }
    let count = final_of_root.len();
    let labels = raw.map_blocks(RELABEL_OP, Params::encode(&Relabel { raw: raw_ids, final_: finals }), DType::I32);
    Ok((labels, count))
}

/// Per-label statistics of `image` over `labels` (`scipy.ndimage.sum_labels`,
/// `mean`, `maximum`, `minimum` and the area, i.e. the element count), for
/// labels `1..=count`. Computed in one pass over both arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelStats {
    pub sum: Vec<f64>,
    pub mean: Vec<f64>,
    pub maximum: Vec<f64>,
    pub minimum: Vec<f64>,
    pub area: Vec<u64>,
}

/// [`LabelStats`] for labels `1..=count` (index `i` holds label `i + 1`).
pub fn label_stats(image: &Array, labels: &Array, count: usize) -> Result<LabelStats> {
    if image.shape() != labels.shape() {
        return Err(ImageError::Mismatch(format!(
            "image {:?} and labels {:?} differ in shape",
            image.shape(),
            labels.shape()
        )));
    }
    let both = Array::stack(&[image.astype(DType::F64), labels.astype(DType::F64)], 0)?.compute()?;
    let ArrayValue::F64(x) = both else {
        return Err(ImageError::Value("stacked image and labels are not float64".into()));
    };
    let n = x.len() / 2;
    let values: Vec<f64> = x.iter().copied().collect();
    let mut s = LabelStats {
        sum: vec![0.0; count],
        mean: vec![f64::NAN; count],
        maximum: vec![f64::NEG_INFINITY; count],
        minimum: vec![f64::INFINITY; count],
        area: vec![0; count],
    };
    for (&v, &l) in values[..n].iter().zip(&values[n..]) {
        let l = l as i64;
        if l >= 1 && (l as usize) <= count {
            let i = l as usize - 1;
            s.sum[i] += v;
            s.area[i] += 1;
            s.maximum[i] = s.maximum[i].max(v);
            s.minimum[i] = s.minimum[i].min(v);
        }
    }
    for i in 0..count {
        if s.area[i] > 0 {
            s.mean[i] = s.sum[i] / s.area[i] as f64;
        }
    }
    Ok(s)
}

/// `ndmeasure.histogram(image, min, max, bins)`: counts of intensities in
/// `bins` equal bins over `[min, max]` (numpy's edge rules: the last bin
/// includes `max`), with the bin edges. Reuses rask-array's histogram.
pub fn histogram(image: &Array, min: f64, max: f64, bins: usize) -> Result<(Array, Vec<f64>)> {
    Ok(image.histogram(bins, (min, max))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_label_in_scan_order_with_connectivity() {
        // 1 1 0 1
        // 0 0 1 0   -> faces: 3 components; with diagonals: 1.
        let fg = [true, true, false, true, false, false, true, false];
        assert_eq!(label_block(&fg, &[2, 4], 1), (vec![1, 1, 0, 2, 0, 0, 3, 0], 3));
        assert_eq!(label_block(&fg, &[2, 4], 2).1, 1);
        assert_eq!(offsets(3, 1).len(), 6);
        assert_eq!(offsets(3, 3).len(), 26);
    }
}
