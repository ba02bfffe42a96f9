//! Zarr writes are whole or absent: the metadata document is written after
//! every chunk, and an existing array's metadata is removed before its
//! chunks are overwritten, so a write cut short leaves nothing that reads as
//! a complete array (issue: "partial datasets look whole").

use std::path::{Path, PathBuf};

use rask_array::zarr::ZarrFormat;
use rask_array::{Array, Chunks};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rask-zarr-writes-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// An array whose block (1, 1) fails to decode when computed: its chunk file
/// is garbage, the other chunks are fine.
fn array_with_a_bad_chunk(dir: &Path) -> Array {
    let src = dir.join("src.zarr");
    let a = Array::random_uniform(&[40, 30], 7, Chunks::Uniform(vec![10, 10])).expect("random");
    a.to_zarr(&src, ZarrFormat::V3).expect("write the source");
    std::fs::write(src.join("c").join("1").join("1"), b"not a zstd frame").expect("corrupt a chunk");
    Array::from_zarr(&src).expect("open the source")
}

#[test]
fn a_complete_write_puts_the_metadata_after_every_chunk() {
    let dir = scratch("complete");
    let dst = dir.join("ok.zarr");
    let a = Array::random_uniform(&[40, 30], 1, Chunks::Uniform(vec![10, 10])).expect("random");
    a.to_zarr(&dst, ZarrFormat::V3).expect("to_zarr");
    let modified = |p: PathBuf| std::fs::metadata(p).expect("stat").modified().expect("mtime");
    let meta = modified(dst.join("zarr.json"));
    for i in 0..4 {
        for j in 0..3 {
            let chunk = modified(dst.join("c").join(i.to_string()).join(j.to_string()));
            assert!(chunk <= meta, "chunk {i}/{j} was written after zarr.json");
        }
    }
    let back: f64 = Array::from_zarr(&dst).expect("read").sum().expect("sum").compute_scalar().expect("compute");
    let want: f64 = a.sum().expect("sum").compute_scalar().expect("compute");
    assert!((back - want).abs() < 1e-9);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn an_interrupted_write_leaves_nothing_that_reads_as_whole() {
    let dir = scratch("interrupted");
    let bad = array_with_a_bad_chunk(&dir);
    let dst = dir.join("new.zarr");
    let err = bad.to_zarr(&dst, ZarrFormat::V3).expect_err("a chunk cannot be read");
    assert!(!err.to_string().is_empty());
    assert!(!dst.join("zarr.json").exists(), "metadata of a partial write");
    let reopened = Array::from_zarr(&dst).expect_err("a partial store must not open");
    assert!(reopened.to_string().contains("zarr.json"), "{reopened}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn an_interrupted_overwrite_removes_the_old_metadata_first() {
    for format in [ZarrFormat::V3, ZarrFormat::V2] {
        let dir = scratch(&format!("overwrite-{format:?}"));
        let dst = dir.join("old.zarr");
        let old = Array::random_uniform(&[40, 30], 9, Chunks::Uniform(vec![10, 10])).expect("random");
        old.to_zarr(&dst, format).expect("first write");
        assert!(Array::from_zarr(&dst).is_ok());
        let bad = array_with_a_bad_chunk(&dir);
        bad.to_zarr(&dst, format).expect_err("a chunk cannot be read");
        // Old chunks and some new ones are mixed on disk: no metadata may say
        // they are one array.
        assert!(!dst.join("zarr.json").exists() && !dst.join(".zarray").exists(), "{format:?}");
        assert!(Array::from_zarr(&dst).is_err(), "{format:?}: a half-overwritten store opened");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
