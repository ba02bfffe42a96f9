//! Measurements over images (dask-image's `ndmeasure`): connected-component
//! labelling across chunks, per-label statistics, histograms.
//!
//! [`label`] is lazy, as dask-image's: it labels each block on its own
//! (union-find, scipy's connectivity), makes the local labels unique by
//! putting the block's number in the high 32 bits, then one task per chunk
//! boundary compares the two planes on either side with every neighbour
//! offset the connectivity allows (so components meeting only at an edge or
//! a corner of a block are joined too), one task joins the pairs of all
//! boundaries, and a last blockwise task renumbers 1..N. The count equals
//! `scipy.ndimage.label`'s and the components are the same; the numbering
//! follows the blocks (as dask-image's does), not scipy's scan order.

use std::collections::HashMap;
use std::sync::Arc;

use rask::core::{ArrayValue, DType, Key, OpEntry, OpError, Params, Value};
use rask::{ArgPart, Delayed};
use rask_array::kernels::{FULL, FullParams};
use rask_array::{Array, BinaryOp, ChunkGrid, Chunks, Fill, Index};
use serde::{Deserialize, Serialize};

use crate::{ImageError, Result};

/// Labels one block: non-zero elements, joined per `connectivity`.
pub const LABEL_BLOCK_OP: &str = "image.label_block";
/// Maps raw (block-tagged) labels to final ones.
pub const RELABEL_OP: &str = "image.relabel";
/// Finds the raw labels touching across one chunk boundary.
pub const FACE_OP: &str = "image.label_face";
/// Joins the touching labels of every boundary into final numbers.
pub const RESOLVE_OP: &str = "image.label_resolve";
/// The number of components, from the resolved map.
pub const COUNT_OP: &str = "image.label_count";
/// Each raw label of one block with the global position of its first element.
pub const FIRSTS_OP: &str = "image.label_firsts";
/// Per-label statistics of one block pair, or merged partials.
pub const STATS_OP: &str = "image.label_stats";

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

fn as_i64(a: &ArrayValue) -> Vec<i64> {
    rask::core::with_array!(a, x => x.iter().map(|v| rask_array::dtype::Scalar::to_i64(*v)).collect())
}

fn i64_array(values: Vec<i64>, shape: &[usize], op: &str) -> std::result::Result<Value, OpError> {
    let arr = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), values)
        .map_err(|e| OpError::new(format!("{op}: {e}")))?;
    Ok(Value::Array(ArrayValue::I64(arr.into_shared())))
}

/// Parameters of a [`FACE_OP`] task: the shape of the two planes on either
/// side of one chunk boundary, and the neighbour offsets (within the plane)
/// that cross it.
#[derive(Debug, Serialize, Deserialize)]
struct Face {
    shape: Vec<usize>,
    cross: Vec<Vec<isize>>,
}

/// The raw label pairs `(a, b)`, `a` before and `b` after a boundary, that
/// touch across it: an int64 `(n, 2)` array, sorted and without repeats.
fn face_op(p: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let face: Face = postcard::from_bytes(&p.0).map_err(|e| OpError::new(format!("{FACE_OP}: bad parameters: {e}")))?;
    let [Value::Array(before), Value::Array(after)] =
        <[Value; 2]>::try_from(args).map_err(|_| OpError::new(format!("{FACE_OP} takes two planes")))?
    else {
        return Err(OpError::new(format!("{FACE_OP} takes two array planes")));
    };
    let (before, after) = (as_i64(&before), as_i64(&after));
    let n: usize = face.shape.iter().product();
    if before.len() != n || after.len() != n {
        return Err(OpError::new(format!(
            "{FACE_OP}: planes of {} and {} values, expected {n}",
            before.len(),
            after.len()
        )));
    }
    let pnd = face.shape.len();
    let mut strides = vec![1usize; pnd];
    for ax in (0..pnd.saturating_sub(1)).rev() {
        strides[ax] = strides[ax + 1] * face.shape[ax + 1];
    }
    let mut pairs = std::collections::BTreeSet::new();
    let mut idx = vec![0usize; pnd];
    for &a in &before {
        if a != 0 {
            for o in &face.cross {
                let inside = idx.iter().zip(o).zip(&face.shape).all(|((&i, &d), &s)| {
                    let j = i as isize + d;
                    j >= 0 && (j as usize) < s
                });
                if !inside {
                    continue;
                }
                let nb: usize =
                    idx.iter().zip(o).zip(&strides).map(|((&i, &d), &st)| (i as isize + d) as usize * st).sum();
                if after[nb] != 0 {
                    pairs.insert((a, after[nb]));
                }
            }
        }
        for ax in (0..pnd).rev() {
            idx[ax] += 1;
            if idx[ax] < face.shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    let rows = pairs.len();
    i64_array(pairs.into_iter().flat_map(|(a, b)| [a, b]).collect(), &[rows, 2], FACE_OP)
}

/// Where one block sits in the image, for [`FIRSTS_OP`].
#[derive(Debug, Serialize, Deserialize)]
struct BlockPlace {
    offset: Vec<usize>,
    shape: Vec<usize>,
}

/// The raw labels of one block, each with the global C-order position of
/// its first element (a block's own C order runs in global order too): an
/// int64 `(k, 2)` array of `(raw, position)`.
fn firsts_op(p: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let place: BlockPlace =
        postcard::from_bytes(&p.0).map_err(|e| OpError::new(format!("{FIRSTS_OP}: bad parameters: {e}")))?;
    let block = one_array(args, FIRSTS_OP)?;
    let bshape = block.shape().to_vec();
    if bshape.len() != place.shape.len() || place.offset.len() != bshape.len() {
        return Err(OpError::new(format!(
            "{FIRSTS_OP}: a block of {} axes in an image of {}",
            bshape.len(),
            place.shape.len()
        )));
    }
    let mut strides = vec![1usize; bshape.len()];
    for ax in (0..bshape.len().saturating_sub(1)).rev() {
        strides[ax] = strides[ax + 1] * place.shape[ax + 1];
    }
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut order = Vec::new();
    let mut idx = vec![0usize; bshape.len()];
    for v in as_i64(&block) {
        if v != 0 && !seen.contains_key(&v) {
            let at: usize = idx.iter().zip(&place.offset).zip(&strides).map(|((&i, &o), &st)| (i + o) * st).sum();
            seen.insert(v, at);
            order.push(v);
        }
        for ax in (0..bshape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < bshape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    let rows = order.len();
    i64_array(order.iter().flat_map(|v| [*v, seen[v] as i64]).collect(), &[rows, 2], FIRSTS_OP)
}

/// Joins the pairs of every boundary (union-find) and numbers the
/// components 1..N in the order their first element comes in a C-order
/// scan of the whole image, as scipy does, so the numbers do not depend on
/// the chunking: an int64 `(m, 2)` array of `(raw, final)` sorted by raw
/// label. Arguments: the list of pair arrays, then the list of every
/// block's `(raw, first position)` rows.
fn resolve_op(_: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let [Value::List(faces), Value::List(firsts)] = <[Value; 2]>::try_from(args)
        .map_err(|_| OpError::new(format!("{RESOLVE_OP} takes the faces and the firsts")))?
    else {
        return Err(OpError::new(format!("{RESOLVE_OP} takes a list of pair arrays and a list of first positions")));
    };
    let mut first_of: Vec<(i64, i64)> = Vec::new();
    for f in firsts.iter() {
        let Value::Array(rows) = f else {
            return Err(OpError::new(format!("{RESOLVE_OP}: first positions are not an array")));
        };
        first_of.extend(as_i64(rows).chunks_exact(2).map(|r| (r[0], r[1])));
    }
    first_of.sort_unstable();
    first_of.dedup_by_key(|r| r.0);
    let ids: Vec<i64> = first_of.iter().map(|r| r.0).collect();
    let index = |v: i64| ids.binary_search(&v).map_err(|_| OpError::new(format!("{RESOLVE_OP}: unknown label {v}")));
    let mut parent: Vec<usize> = (0..ids.len()).collect();
    for face in faces.iter() {
        let Value::Array(pairs) = face else {
            return Err(OpError::new(format!("{RESOLVE_OP}: a face is not an array")));
        };
        for pair in as_i64(pairs).chunks_exact(2) {
            let (a, b) = (find(&mut parent, index(pair[0])?), find(&mut parent, index(pair[1])?));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    // Each component's first position: the smallest over its raw labels.
    let mut first_of_root: HashMap<usize, i64> = HashMap::new();
    for (i, &(_, at)) in first_of.iter().enumerate() {
        let root = find(&mut parent, i);
        let e = first_of_root.entry(root).or_insert(at);
        *e = (*e).min(at);
    }
    let mut roots: Vec<(i64, usize)> = first_of_root.iter().map(|(&r, &at)| (at, r)).collect();
    roots.sort_unstable();
    let final_of_root: HashMap<usize, i64> = roots.iter().enumerate().map(|(k, &(_, r))| (r, k as i64 + 1)).collect();
    let mut out = Vec::with_capacity(ids.len() * 2);
    for (i, &raw) in ids.iter().enumerate() {
        let root = find(&mut parent, i);
        out.extend([raw, final_of_root.get(&root).copied().unwrap_or(0)]);
    }
    i64_array(out, &[ids.len(), 2], RESOLVE_OP)
}

fn mapping_of(v: &ArrayValue) -> (Vec<i64>, Vec<i64>) {
    let flat = as_i64(v);
    flat.chunks_exact(2).map(|p| (p[0], p[1])).unzip()
}

/// Relabels one block of raw labels with the resolved `(raw, final)` map.
fn relabel_op(_: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let [Value::Array(ArrayValue::I64(block)), Value::Array(map)] =
        <[Value; 2]>::try_from(args).map_err(|_| OpError::new(format!("{RELABEL_OP} takes a block and the map")))?
    else {
        return Err(OpError::new(format!("{RELABEL_OP} takes int64 labels and the map")));
    };
    let (raw, finals) = mapping_of(&map);
    let out = block.map(|&v| if v == 0 { 0 } else { raw.binary_search(&v).map_or(0, |i| finals[i] as i32) });
    Ok(Value::Array(ArrayValue::I32(out.into_shared())))
}

/// The number of components: the largest final label (a 0-d int64).
fn count_op(_: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let map = one_array(args, COUNT_OP)?;
    let (_, finals) = mapping_of(&map);
    i64_array(vec![finals.iter().copied().max().unwrap_or(0)], &[], COUNT_OP)
}

rask::core::inventory::submit! { OpEntry { name: LABEL_BLOCK_OP, func: label_block_op } }
rask::core::inventory::submit! { OpEntry { name: RELABEL_OP, func: relabel_op } }
rask::core::inventory::submit! { OpEntry { name: FACE_OP, func: face_op } }
rask::core::inventory::submit! { OpEntry { name: RESOLVE_OP, func: resolve_op } }
rask::core::inventory::submit! { OpEntry { name: COUNT_OP, func: count_op } }
rask::core::inventory::submit! { OpEntry { name: FIRSTS_OP, func: firsts_op } }

/// `scipy.ndimage.label(image, structure=generate_binary_structure(ndim,
/// connectivity))`, lazily as dask-image's: int32 labels of the connected
/// non-zero regions, and their number as a 0-d int64 array. Nothing is
/// computed here: blocks are labelled in parallel, one task per chunk
/// boundary finds the labels touching across it, one task joins them, and
/// a last blockwise task renumbers. The two are computed together with
/// `rask::compute` or separately (shared tasks run once per compute).
pub fn label(image: &Array, connectivity: usize) -> Result<(Array, Array)> {
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
    let token = format!("{}-{connectivity}", image.name());
    let tag = Array::from_block_tasks("label-block-tag", token.as_bytes(), DType::I64, grid.clone(), |idx, key| {
        let linear = idx.iter().zip(&numblocks).fold(0i64, |acc, (&i, &n)| acc * n as i64 + i as i64);
        let p = FullParams {
            shape: grid.block_shape(idx).unwrap_or_default(),
            dtype: DType::I64,
            value: Fill::Int(linear << 32),
        };
        Delayed::from_task(key, FULL, Params::encode(&p), vec![])
    });
    let is_label = local.scalar(BinaryOp::Gt, Fill::Int(0))?.astype(DType::I64);
    let raw = local.add(&tag.mul(&is_label)?)?;

    // One task per chunk boundary: the two planes that meet there.
    let all_offsets = offsets(nd, connectivity);
    let mut faces: Vec<Delayed<ArrayValue>> = Vec::new();
    for axis in 0..nd {
        let pshape: Vec<usize> = shape.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &s)| s).collect();
        let cross: Vec<Vec<isize>> = all_offsets
            .iter()
            .filter(|o| o[axis] == 1)
            .map(|o| o.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &d)| d).collect())
            .collect();
        let params = Params::encode(&Face { shape: pshape.clone(), cross });
        let sizes: Vec<usize> = grid.axis(axis).iter().map(|s| s.unwrap_or(0)).collect();
        let mut edge = 0usize;
        for &len in &sizes[..sizes.len().saturating_sub(1)] {
            edge += len;
            // The plane at `at`, as one block.
            let plane = |at: usize| -> Result<Delayed<ArrayValue>> {
                let index: Vec<Index> =
                    (0..nd).map(|a| if a == axis { Index::At(at as isize) } else { Index::ALL }).collect();
                let one = raw.slice(&index)?.rechunk(Chunks::Uniform(pshape.iter().map(|&s| s.max(1)).collect()))?;
                Ok(one.to_delayed()[0].clone())
            };
            let (before, after) = (plane(edge - 1)?, plane(edge)?);
            let key = Key::chunk(Arc::from(format!("label-face-{}", raw.name())), &[axis as u32, edge as u32]);
            faces.push(Delayed::from_task(
                key,
                FACE_OP,
                params.clone(),
                vec![ArgPart::of(&before), ArgPart::of(&after)],
            ));
        }
    }
    let raw_blocks = raw.to_delayed();
    let firsts: Vec<Delayed<ArrayValue>> = grid
        .indices()
        .into_iter()
        .map(|idx| {
            let pos = idx.iter().zip(&numblocks).fold(0usize, |acc, (&i, &n)| acc * n + i);
            let place = BlockPlace { offset: grid.block_offset(&idx).unwrap_or_default(), shape: shape.clone() };
            let params = Params::encode(&place);
            let key = Key::chunk(Arc::from(format!("label-firsts-{}", raw.name())), &[pos as u32]);
            Delayed::from_task(key, FIRSTS_OP, params, vec![ArgPart::of(&raw_blocks[pos])])
        })
        .collect();
    let resolve_key = Key::chunk(Arc::from(format!("label-resolve-{}", raw.name())), &[]);
    let map: Delayed<ArrayValue> = Delayed::from_task(
        resolve_key,
        RESOLVE_OP,
        Params::default(),
        vec![
            ArgPart::list(faces.iter().map(ArgPart::of).collect()),
            ArgPart::list(firsts.iter().map(ArgPart::of).collect()),
        ],
    );
    let relabel_name = format!("{}-{}", raw.name(), map.key());
    let labels = Array::from_block_tasks("label", relabel_name.as_bytes(), DType::I32, grid.clone(), |idx, key| {
        let pos = idx.iter().zip(&numblocks).fold(0usize, |acc, (&i, &n)| acc * n + i);
        Delayed::from_task(
            key,
            RELABEL_OP,
            Params::default(),
            vec![ArgPart::of(&raw.to_delayed()[pos]), ArgPart::of(&map)],
        )
    });
    let count = Array::from_block_tasks(
        "label-count",
        relabel_name.as_bytes(),
        DType::I64,
        ChunkGrid::from_sizes(vec![]),
        |_, key| Delayed::from_task(key, COUNT_OP, Params::default(), vec![ArgPart::of(&map)]),
    );
    Ok((labels, count))
}

/// Per-label statistics of `image` over `labels` (`scipy.ndimage.sum_labels`,
/// `mean`, `maximum`, `minimum` and the area, i.e. the element count), for
/// labels `1..=count`.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelStats {
    pub sum: Vec<f64>,
    pub mean: Vec<f64>,
    pub maximum: Vec<f64>,
    pub minimum: Vec<f64>,
    pub area: Vec<u64>,
}

/// Partial statistics of one block pair, or of merged partials: a float64
/// `(k, 5)` array of rows `(label, sum, area, max, min)` sorted by label.
fn partial_stats_op(_: &Params, args: Vec<Value>) -> std::result::Result<Value, OpError> {
    let mut acc: std::collections::BTreeMap<i64, [f64; 4]> = std::collections::BTreeMap::new();
    let mut add = |label: i64, s: [f64; 4]| {
        let e = acc.entry(label).or_insert([0.0, 0.0, f64::NEG_INFINITY, f64::INFINITY]);
        e[0] += s[0];
        e[1] += s[1];
        e[2] = e[2].max(s[2]);
        e[3] = e[3].min(s[3]);
    };
    match args.as_slice() {
        // A block of the image and the same block of the labels.
        [Value::Array(image), Value::Array(labels)] if image.shape() == labels.shape() => {
            let values: Vec<f64> =
                rask::core::with_array!(image, x => x.iter().map(|v| rask_array::dtype::Scalar::to_f64(*v)).collect());
            for (v, l) in values.into_iter().zip(as_i64(labels)) {
                if l > 0 {
                    add(l, [v, 1.0, v, v]);
                }
            }
        }
        // Partials to merge.
        [Value::List(parts)] => {
            for part in parts.iter() {
                let Value::Array(ArrayValue::F64(rows)) = part else {
                    return Err(OpError::new(format!("{STATS_OP}: a partial is not float64 rows")));
                };
                for r in rows.as_slice().unwrap_or(&[]).chunks_exact(5) {
                    add(r[0] as i64, [r[1], r[2], r[3], r[4]]);
                }
            }
        }
        _ => {
            return Err(OpError::new(format!("{STATS_OP} takes an image block and its labels, or a list of partials")));
        }
    }
    let rows = acc.len();
    let flat: Vec<f64> = acc.into_iter().flat_map(|(l, s)| [l as f64, s[0], s[1], s[2], s[3]]).collect();
    let arr = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[rows, 5]), flat)
        .map_err(|e| OpError::new(format!("{STATS_OP}: {e}")))?;
    Ok(Value::Array(ArrayValue::F64(arr.into_shared())))
}

rask::core::inventory::submit! { OpEntry { name: STATS_OP, func: partial_stats_op } }

/// [`LabelStats`] for labels `1..=count` (index `i` holds label `i + 1`):
/// one task per block pair (the labels are rechunked to the image's
/// chunks), merged in a tree of 8; only the per-label rows reach the
/// client, never the image.
pub fn label_stats(image: &Array, labels: &Array, count: usize) -> Result<LabelStats> {
    if image.shape() != labels.shape() {
        return Err(ImageError::Mismatch(format!(
            "image {:?} and labels {:?} differ in shape",
            image.shape(),
            labels.shape()
        )));
    }
    let sizes: Vec<Vec<usize>> =
        (0..image.ndim()).map(|a| image.chunks().axis(a).iter().map(|c| c.unwrap_or(0)).collect()).collect();
    let labels = labels.rechunk(Chunks::Explicit(sizes))?;
    let name = format!("label-stats-{}-{}", image.name(), labels.name());
    let mut level: Vec<Delayed<ArrayValue>> = image
        .to_delayed()
        .iter()
        .zip(labels.to_delayed())
        .enumerate()
        .map(|(i, (x, l))| {
            let key = Key::chunk(Arc::from(name.as_str()), &[0, i as u32]);
            Delayed::from_task(key, STATS_OP, Params::default(), vec![ArgPart::of(x), ArgPart::of(l)])
        })
        .collect();
    let mut depth = 1u32;
    while level.len() > 1 || depth == 1 {
        level = level
            .chunks(8)
            .enumerate()
            .map(|(i, group)| {
                let key = Key::chunk(Arc::from(name.as_str()), &[depth, i as u32]);
                Delayed::from_task(
                    key,
                    STATS_OP,
                    Params::default(),
                    vec![ArgPart::list(group.iter().map(ArgPart::of).collect())],
                )
            })
            .collect();
        depth += 1;
    }
    let rows = match level.first() {
        Some(total) => total.compute()?,
        None => ArrayValue::F64(ndarray::ArrayD::zeros(ndarray::IxDyn(&[0, 5])).into_shared()),
    };
    let ArrayValue::F64(rows) = rows else {
        return Err(ImageError::Value("label statistics are not float64 rows".into()));
    };
    let mut s = LabelStats {
        sum: vec![0.0; count],
        mean: vec![f64::NAN; count],
        maximum: vec![f64::NEG_INFINITY; count],
        minimum: vec![f64::INFINITY; count],
        area: vec![0; count],
    };
    for r in rows.iter().copied().collect::<Vec<f64>>().chunks_exact(5) {
        let l = r[0] as i64;
        if l >= 1 && (l as usize) <= count {
            let i = l as usize - 1;
            (s.sum[i], s.area[i], s.maximum[i], s.minimum[i]) = (r[1], r[2] as u64, r[3], r[4]);
            s.mean[i] = r[1] / r[2];
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
