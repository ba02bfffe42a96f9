//! Reads: local ranges, S3 ranges as concurrent GETs, suffix reads for
//! footers, and [`Reader`], a sequential reader with one piece of
//! read-ahead for scans over whole objects.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use tokio::task::JoinHandle;

use crate::error::{Result, StorageError};
use crate::location::Location;
use crate::options::StorageOptions;
use crate::s3::{self, S3};
use crate::{MAX_CONCURRENT_GETS, PART_SIZE, concat, runtime, split_range};

pub(crate) fn local_range_into(url: &str, path: &Path, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(|e| StorageError::io(url, e))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| StorageError::io(url, e))?;
    buf.clear();
    buf.reserve(usize::try_from(len).unwrap_or(0).min(1 << 30));
    f.take(len).read_to_end(buf).map_err(|e| StorageError::io(url, e))?;
    Ok(())
}

fn range_header(offset: u64, len: u64) -> String {
    format!("bytes={}-{}", offset, offset + len - 1)
}

/// `len` bytes at `offset`: one GET, or pieces of [`PART_SIZE`] fetched
/// [`MAX_CONCURRENT_GETS`] at a time and joined in order.
pub(crate) async fn s3_range(
    s3: Arc<S3>,
    url: String,
    bucket: String,
    key: String,
    offset: u64,
    len: u64,
) -> Result<Bytes> {
    let pieces = split_range(offset, len, PART_SIZE);
    if pieces.len() == 1 {
        return Ok(s3::get(&s3, &url, &bucket, &key, Some(range_header(offset, len))).await?.0);
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_GETS));
    let handles: Vec<JoinHandle<Result<Bytes>>> = pieces
        .into_iter()
        .map(|(o, n)| {
            let (s3, url, bucket, key, limit) = (s3.clone(), url.clone(), bucket.clone(), key.clone(), limit.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.map_err(|e| StorageError::Runtime(e.to_string()))?;
                Ok(s3::get(&s3, &url, &bucket, &key, Some(range_header(o, n))).await?.0)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.map_err(|e| StorageError::Runtime(e.to_string()))??);
    }
    Ok(concat(out))
}

/// The last `len` bytes and the object's size, from one suffix-range GET.
pub(crate) async fn s3_tail(s3: &S3, url: &str, bucket: &str, key: &str, len: u64) -> Result<(Bytes, u64)> {
    if len == 0 {
        let (size, _) = s3::head(s3, url, bucket, key).await?;
        return Ok((Bytes::new(), size));
    }
    let (bytes, content_range) = s3::get(s3, url, bucket, key, Some(format!("bytes=-{len}"))).await?;
    // "bytes 100-199/200"; an object shorter than the suffix comes whole.
    let size = content_range
        .as_deref()
        .and_then(|r| r.rsplit('/').next())
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(bytes.len() as u64);
    Ok((bytes, size))
}

/// A sequential reader over a local file or an S3 object. On S3 it reads
/// pieces of [`PART_SIZE`] with ranged GETs, the next one in flight while
/// the caller consumes the current one.
#[derive(Debug)]
pub struct Reader {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Local(std::fs::File),
    S3 {
        s3: Arc<S3>,
        url: String,
        bucket: String,
        key: String,
        size: u64,
        next_offset: u64,
        current: Bytes,
        ahead: Option<JoinHandle<Result<Bytes>>>,
    },
}

impl Reader {
    /// Opens `url`, whose size the caller knows (from [`crate::stat`]).
    pub fn open(url: &str, size: u64, options: &StorageOptions) -> Result<Self> {
        let inner = match Location::parse(url)? {
            Location::Local(path) => Inner::Local(std::fs::File::open(&path).map_err(|e| StorageError::io(url, e))?),
            Location::S3 { bucket, key } => {
                let opts = options.clone();
                let s3 = runtime::block_on(async move { s3::client(&opts).await })?;
                Inner::S3 {
                    s3,
                    url: url.to_string(),
                    bucket,
                    key,
                    size,
                    next_offset: 0,
                    current: Bytes::new(),
                    ahead: None,
                }
            }
        };
        let mut r = Reader { inner };
        r.request_next();
        Ok(r)
    }

    /// Starts the GET of the next piece, if any remains and none is in flight.
    fn request_next(&mut self) {
        if let Inner::S3 { s3, url, bucket, key, size, next_offset, ahead, .. } = &mut self.inner
            && ahead.is_none()
            && *next_offset < *size
        {
            let n = PART_SIZE.min(*size - *next_offset);
            let (s3, u, b, k, o) = (s3.clone(), url.clone(), bucket.clone(), key.clone(), *next_offset);
            let fut = async move { s3::get(&s3, &u, &b, &k, Some(range_header(o, n))).await.map(|r| r.0) };
            // The runtime exists (`open` used it); if it did not, `read`
            // would see no piece in flight and end early, so fail loudly.
            match runtime::spawn(fut) {
                Ok(h) => {
                    *next_offset += n;
                    *ahead = Some(h);
                }
                Err(e) => tracing::error!(%url, "cannot read ahead: {e}"),
            }
        }
    }
}

impl Read for Reader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match &mut self.inner {
                Inner::Local(f) => return f.read(out),
                Inner::S3 { current, ahead, .. } => {
                    if current.has_remaining() {
                        let n = out.len().min(current.remaining());
                        current.copy_to_slice(&mut out[..n]);
                        return Ok(n);
                    }
                    let Some(h) = ahead.take() else { return Ok(0) };
                    let piece = runtime::block_on(h)?
                        .map_err(|e| StorageError::Runtime(e.to_string()))?
                        .map_err(std::io::Error::from)?;
                    if piece.is_empty() {
                        return Ok(0);
                    }
                    *current = piece;
                }
            }
            self.request_next();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Inner::S3 { ahead: Some(h), .. } = &self.inner {
            h.abort();
        }
    }
}

/// Random access to a file or object: `Read + Seek` over an S3 object that
/// fetches aligned blocks on demand and keeps them, so a header parser
/// (TIFF directories, say) costs a few small ranged GETs, not the object.
#[derive(Debug)]
pub struct SeekableObject {
    url: String,
    size: u64,
    pos: u64,
    block_size: u64,
    options: StorageOptions,
    blocks: std::collections::HashMap<u64, Bytes>,
}

impl SeekableObject {
    /// Block size of the on-demand reads.
    pub const BLOCK: u64 = 256 << 10;

    pub fn open(url: &str, options: &StorageOptions) -> Result<Self> {
        let size = crate::stat(url, options)?.size;
        Ok(SeekableObject {
            url: url.to_string(),
            size,
            pos: 0,
            block_size: Self::BLOCK,
            options: options.clone(),
            blocks: Default::default(),
        })
    }

    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

impl Read for SeekableObject {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size || out.is_empty() {
            return Ok(0);
        }
        let index = self.pos / self.block_size;
        let start = index * self.block_size;
        if !self.blocks.contains_key(&index) {
            let len = self.block_size.min(self.size - start);
            let block = crate::read_range(&self.url, start, len, &self.options)?;
            self.blocks.insert(index, block);
        }
        let block = self.blocks.get(&index).map(Bytes::as_ref).unwrap_or_default();
        let skip = usize::try_from(self.pos - start).unwrap_or(usize::MAX);
        let available = block.get(skip..).unwrap_or_default();
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SeekableObject {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{}: seek before the start", self.url))
        })?;
        self.pos = target;
        Ok(target)
    }
}
