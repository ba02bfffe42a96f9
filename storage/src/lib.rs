//! rask-storage: the one storage layer every reader and writer uses.
//!
//! A URL is a local path, a `file://` URL or `s3://bucket/key`. The API is
//! blocking because ops run on the executor's plain threads; S3 calls run
//! on one shared tokio runtime (`runtime.rs`). Readers hand URLs and byte
//! ranges to tasks, never data, so each worker reads its own partitions.
//!
//! - [`expand`]: a path, glob or `s3://bucket/prefix/` to sorted URLs
//!   (S3 globs list the literal prefix, with pagination, then match keys).
//! - [`stat`], [`read_range`] (one GET, or concurrent ranged GETs of
//!   [`PART_SIZE`] for large ranges), [`read_tail`], [`read`],
//!   [`read_optional`], [`Reader`] for sequential scans with read-ahead.
//! - [`Writer`]: streaming writes that become visible only when finished
//!   (multipart upload aborted on error or drop; local temp file renamed).
//! - Retries with exponential backoff and timeouts come from the SDK's
//!   standard retry strategy; errors name the URL ([`StorageError`]).

mod error;
mod location;
mod options;
mod read;
mod runtime;
mod s3;
#[cfg(feature = "testing")]
pub mod testing;
mod write;

use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use bytes::{Bytes, BytesMut};

pub use error::{Result, StorageError};
pub use location::{KeyPattern, Location, has_glob, is_s3, join, literal_prefix};
pub use options::StorageOptions;
pub use read::{Reader, SeekableObject};
pub use write::Writer;

/// Ranged reads larger than this are split into concurrent GETs of this size.
pub const PART_SIZE: u64 = 8 << 20;
/// GETs of one large range in flight at once.
pub const MAX_CONCURRENT_GETS: usize = 8;

/// An object's size and a stamp that changes when it does (local mtime in
/// nanoseconds, S3 ETag), for task tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub version: String,
}

/// S3 requests sent and bytes received by this process so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub bytes_read: u64,
}

/// This process's S3 request counters.
pub fn counters() -> Counters {
    Counters { requests: s3::REQUESTS.load(Ordering::Relaxed), bytes_read: s3::BYTES_READ.load(Ordering::Relaxed) }
}

/// The local path of a URL that is not on S3 (`file://` stripped).
pub fn local_path(url: &str) -> Result<Option<std::path::PathBuf>> {
    Ok(match Location::parse(url)? {
        Location::Local(p) => Some(p),
        Location::S3 { .. } => None,
    })
}

/// Hidden and `_`-prefixed names (`_SUCCESS`, `_metadata`, `.crc`) are
/// not data files of a directory or prefix.
fn is_data_name(name: &str) -> bool {
    !(name.is_empty() || name.starts_with('_') || name.starts_with('.'))
}

/// The URLs a path, glob, local directory, or S3 prefix ending in `/`
/// names, sorted. A directory or prefix means the data files directly
/// inside it (as pandas and Dask read a dataset directory). A name without
/// glob characters is returned as it is (reading it reports a missing
/// object); a glob, directory or prefix matching nothing is an error.
#[tracing::instrument(skip(options))]
pub fn expand(pattern: &str, options: &StorageOptions) -> Result<Vec<String>> {
    let mut urls = match Location::parse(pattern)? {
        Location::Local(path) if path.is_dir() => std::fs::read_dir(&path)
            .map_err(|e| StorageError::Io { url: pattern.to_string(), source: e })?
            .filter_map(std::result::Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| is_data_name(&e.file_name().to_string_lossy()))
            .map(|e| e.path().to_string_lossy().into_owned())
            .collect(),
        Location::Local(path) => {
            let text = path.to_string_lossy().into_owned();
            if !has_glob(&text) {
                return Ok(vec![text]);
            }
            glob::glob(&text)
                .map_err(|e| StorageError::BadUrl { url: pattern.to_string(), reason: format!("bad glob: {e}") })?
                .filter_map(std::result::Result::ok)
                .map(|p| p.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        }
        Location::S3 { bucket, key } => {
            let directory = key.is_empty() || key.ends_with('/');
            if !has_glob(&key) && !directory {
                return Ok(vec![pattern.to_string()]);
            }
            // A prefix ending in '/' means the objects directly inside it,
            // skipping hidden and `_`-prefixed names (`_SUCCESS`, `_metadata`).
            let key_pattern = if directory { format!("{key}*") } else { key.clone() };
            let matcher = KeyPattern::new(pattern, &key_pattern)?;
            let prefix = literal_prefix(&key_pattern).to_string();
            let (url, opts) = (pattern.to_string(), options.clone());
            let listed = runtime::block_on(async move {
                let s3 = s3::client(&opts).await;
                s3::list(&s3, &url, &bucket, &prefix).await.map(|keys| (bucket, keys))
            })??;
            let (bucket, keys) = listed;
            keys.into_iter()
                .filter(|(k, _)| matcher.matches(k))
                .filter(|(k, _)| !directory || is_data_name(k.rsplit('/').next().unwrap_or(k)))
                .map(|(k, _)| format!("s3://{bucket}/{k}"))
                .collect()
        }
    };
    urls.sort();
    if urls.is_empty() {
        return Err(StorageError::NoMatch { url: pattern.to_string() });
    }
    Ok(urls)
}

/// Size and version of one object or file.
pub fn stat(url: &str, options: &StorageOptions) -> Result<ObjectMeta> {
    match Location::parse(url)? {
        Location::Local(path) => {
            let m = std::fs::metadata(&path).map_err(|e| StorageError::io(url, e))?;
            let version = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos())
                .to_string();
            Ok(ObjectMeta { size: m.len(), version })
        }
        Location::S3 { bucket, key } => {
            let (url, opts) = (url.to_string(), options.clone());
            let (size, version) = runtime::block_on(async move {
                let s3 = s3::client(&opts).await;
                s3::head(&s3, &url, &bucket, &key).await
            })??;
            Ok(ObjectMeta { size, version })
        }
    }
}

/// `len` bytes at `offset` (fewer at the end of the object). On S3, ranges
/// over [`PART_SIZE`] are fetched as concurrent ranged GETs.
pub fn read_range(url: &str, offset: u64, len: u64, options: &StorageOptions) -> Result<Bytes> {
    match Location::parse(url)? {
        Location::Local(path) => {
            let mut buf = Vec::new();
            read::local_range_into(url, &path, offset, len, &mut buf)?;
            Ok(Bytes::from(buf))
        }
        Location::S3 { bucket, key } => {
            if len == 0 {
                return Ok(Bytes::new());
            }
            let (url, opts) = (url.to_string(), options.clone());
            runtime::block_on(async move {
                let s3 = s3::client(&opts).await;
                read::s3_range(s3, url, bucket, key, offset, len).await
            })?
        }
    }
}

/// Like [`read_range`] into a caller's buffer (replacing its contents), so
/// a thread can reuse one allocation across blocks.
pub fn read_range_into(url: &str, offset: u64, len: u64, options: &StorageOptions, buf: &mut Vec<u8>) -> Result<()> {
    match Location::parse(url)? {
        Location::Local(path) => read::local_range_into(url, &path, offset, len, buf),
        Location::S3 { .. } => {
            let bytes = read_range(url, offset, len, options)?;
            buf.clear();
            buf.extend_from_slice(&bytes);
            Ok(())
        }
    }
}

/// Several `(offset, len)` ranges of one object, fetched concurrently on
/// S3 (the column chunks a Parquet row group needs, say).
pub fn read_ranges(url: &str, ranges: &[(u64, u64)], options: &StorageOptions) -> Result<Vec<Bytes>> {
    match Location::parse(url)? {
        Location::Local(_) => ranges.iter().map(|&(o, n)| read_range(url, o, n, options)).collect(),
        Location::S3 { bucket, key } => {
            let (url, opts, ranges) = (url.to_string(), options.clone(), ranges.to_vec());
            runtime::block_on(async move {
                let s3 = s3::client(&opts).await;
                let handles: Vec<_> = ranges
                    .into_iter()
                    .map(|(o, n)| {
                        let (s3, url, bucket, key) = (s3.clone(), url.clone(), bucket.clone(), key.clone());
                        tokio::spawn(async move {
                            if n == 0 {
                                return Ok(Bytes::new());
                            }
                            read::s3_range(s3, url, bucket, key, o, n).await
                        })
                    })
                    .collect();
                let mut out = Vec::with_capacity(handles.len());
                for h in handles {
                    out.push(h.await.map_err(|e| StorageError::Runtime(e.to_string()))??);
                }
                Ok(out)
            })?
        }
    }
}

/// The last `len` bytes of an object and its total size, in one request
/// on S3 (a suffix range): what a Parquet footer read needs.
pub fn read_tail(url: &str, len: u64, options: &StorageOptions) -> Result<(Bytes, u64)> {
    match Location::parse(url)? {
        Location::Local(path) => {
            let size = std::fs::metadata(&path).map_err(|e| StorageError::io(url, e))?.len();
            let start = size.saturating_sub(len);
            let mut buf = Vec::new();
            read::local_range_into(url, &path, start, size - start, &mut buf)?;
            Ok((Bytes::from(buf), size))
        }
        Location::S3 { bucket, key } => {
            let (url, opts) = (url.to_string(), options.clone());
            runtime::block_on(async move {
                let s3 = s3::client(&opts).await;
                read::s3_tail(&s3, &url, &bucket, &key, len).await
            })?
        }
    }
}

/// A whole object.
pub fn read(url: &str, options: &StorageOptions) -> Result<Bytes> {
    match Location::parse(url)? {
        Location::Local(path) => std::fs::read(&path).map(Bytes::from).map_err(|e| StorageError::io(url, e)),
        Location::S3 { bucket, key } => {
            let (url, opts) = (url.to_string(), options.clone());
            runtime::block_on(async move {
                let s3 = s3::client(&opts).await;
                s3::get(&s3, &url, &bucket, &key, None).await.map(|(b, _)| b)
            })?
        }
    }
}

/// A whole object, or `None` when it (not its bucket) is missing.
pub fn read_optional(url: &str, options: &StorageOptions) -> Result<Option<Bytes>> {
    match read(url, options) {
        Ok(b) => Ok(Some(b)),
        Err(StorageError::NoSuchKey { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a whole object; visible only once complete.
pub fn write(url: &str, data: &[u8], options: &StorageOptions) -> Result<()> {
    let mut w = Writer::create(url, options)?;
    std::io::Write::write_all(&mut w, data).map_err(|e| StorageError::io(url, e))?;
    w.finish()
}

/// Removes one object or file; a missing one is not an error.
pub fn remove(url: &str, options: &StorageOptions) -> Result<()> {
    match Location::parse(url)? {
        Location::Local(path) => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::io(url, e)),
            _ => Ok(()),
        },
        Location::S3 { bucket, key } => {
            let (url, opts) = (url.to_string(), options.clone());
            runtime::block_on(async move {
                let s3 = s3::client(&opts).await;
                s3::delete(&s3, &url, &bucket, &key).await
            })?
        }
    }
}

/// Creates a local directory and its parents; S3 has no directories.
pub fn create_dir_all(url: &str) -> Result<()> {
    match Location::parse(url)? {
        Location::Local(path) => {
            std::fs::create_dir_all(&path).map_err(|e| StorageError::Io { url: url.into(), source: e })
        }
        Location::S3 { .. } => Ok(()),
    }
}

/// Splits `[offset, offset + len)` into pieces of at most `part` bytes.
pub(crate) fn split_range(offset: u64, len: u64, part: u64) -> Vec<(u64, u64)> {
    let part = part.max(1);
    let mut out = Vec::new();
    let mut start = offset;
    let end = offset.saturating_add(len);
    while start < end {
        let n = part.min(end - start);
        out.push((start, n));
        start += n;
    }
    out
}

/// Joins pieces read in order into one buffer.
pub(crate) fn concat(pieces: Vec<Bytes>) -> Bytes {
    if pieces.len() == 1 {
        return pieces.into_iter().next().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
    for p in pieces {
        out.extend_from_slice(&p);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_into_parts() {
        assert_eq!(split_range(10, 25, 10), vec![(10, 10), (20, 10), (30, 5)]);
        assert_eq!(split_range(0, 0, 10), vec![]);
        assert_eq!(split_range(5, 3, 10), vec![(5, 3)]);
    }

    #[test]
    fn local_round_trip_is_atomic() {
        let dir = std::env::temp_dir().join(format!("rask-storage-{}", std::process::id()));
        let url = format!("file://{}/sub/x.bin", dir.display());
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        write(&url, &data, &StorageOptions::default()).expect("write");
        assert_eq!(read(&url, &StorageOptions::default()).expect("read"), data);
        assert_eq!(read_range(&url, 99_990, 100, &StorageOptions::default()).expect("range"), data[99_990..]);
        let (tail, size) = read_tail(&url, 10, &StorageOptions::default()).expect("tail");
        assert_eq!((tail.as_ref(), size), (&data[99_990..], 100_000));
        // A writer dropped before finish leaves nothing behind.
        let other = format!("{}/sub/y.bin", dir.display());
        {
            let mut w = Writer::create(&other, &StorageOptions::default()).expect("create");
            std::io::Write::write_all(&mut w, b"partial").expect("write");
        }
        assert!(!std::path::Path::new(&other).exists());
        let left: Vec<_> = std::fs::read_dir(dir.join("sub")).expect("dir").collect();
        assert_eq!(left.len(), 1, "only x.bin remains");
        let missing = read(&format!("{}/nope", dir.display()), &StorageOptions::default()).expect_err("missing");
        assert!(matches!(missing, StorageError::NoSuchKey { .. }), "{missing}");
        let text = missing.to_string();
        assert!(text.ends_with("/nope: no such file or directory") && !text.contains("NoSuchKey"), "{text}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
