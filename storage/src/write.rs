//! [`Writer`]: a streaming write that becomes visible only when finished.
//!
//! Local files are written to a hidden temporary file beside the target and
//! renamed over it by [`Writer::finish`]. On S3 a small object is one PUT;
//! once the buffer passes [`PART_SIZE`] a multipart upload starts and parts
//! go up (a few in flight) while the caller keeps writing; `finish`
//! completes it. An error, or dropping the writer unfinished (a failed
//! task), aborts the upload, so readers never see a partial object.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::types::CompletedPart;
use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::error::{Result, StorageError};
use crate::location::Location;
use crate::options::StorageOptions;
use crate::s3::{self, S3};
use crate::{PART_SIZE, runtime};

/// Parts uploading at once per writer.
const PARTS_IN_FLIGHT: usize = 4;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A write to a local file or an S3 object; see the module doc.
#[derive(Debug)]
pub struct Writer {
    url: String,
    inner: Inner,
    done: bool,
}

#[derive(Debug)]
enum Inner {
    Local { tmp: PathBuf, dest: PathBuf, file: Option<std::io::BufWriter<std::fs::File>> },
    S3(Box<Upload>),
}

#[derive(Debug)]
struct Upload {
    s3: Arc<S3>,
    bucket: String,
    key: String,
    part_size: usize,
    buf: Vec<u8>,
    upload_id: Option<String>,
    next_part: i32,
    in_flight: VecDeque<JoinHandle<Result<CompletedPart>>>,
    parts: Vec<CompletedPart>,
}

impl Writer {
    /// Starts a write to `url`; local parent directories are created.
    pub fn create(url: &str, options: &StorageOptions) -> Result<Self> {
        Self::with_part_size(url, options, PART_SIZE as usize)
    }

    /// As [`Writer::create`] with another multipart part size (S3 wants at
    /// least 5 MiB for every part but the last).
    pub fn with_part_size(url: &str, options: &StorageOptions, part_size: usize) -> Result<Self> {
        let inner = match Location::parse(url)? {
            Location::Local(dest) => {
                let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(|| {
                    StorageError::BadUrl { url: url.to_string(), reason: "expected a file name".into() }
                })?;
                if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| StorageError::Io { url: url.to_string(), source: e })?;
                }
                let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
                let tmp = dest.with_file_name(format!(".{name}.rask-{}-{n}.tmp", std::process::id()));
                let file =
                    std::fs::File::create(&tmp).map_err(|e| StorageError::Io { url: url.to_string(), source: e })?;
                Inner::Local { tmp, dest, file: Some(std::io::BufWriter::with_capacity(1 << 20, file)) }
            }
            Location::S3 { bucket, key } => {
                if key.is_empty() || key.ends_with('/') {
                    return Err(StorageError::BadUrl { url: url.to_string(), reason: "expected an object key".into() });
                }
                let opts = options.clone();
                let s3 = runtime::block_on(async move { s3::client(&opts).await })?;
                Inner::S3(Box::new(Upload {
                    s3,
                    bucket,
                    key,
                    part_size: part_size.max(1),
                    buf: Vec::new(),
                    upload_id: None,
                    next_part: 1,
                    in_flight: VecDeque::new(),
                    parts: Vec::new(),
                }))
            }
        };
        Ok(Writer { url: url.to_string(), inner, done: false })
    }

    /// The URL being written.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one full part, waiting for the oldest when too many are in flight.
    fn send_part(url: &str, up: &mut Upload, body: Bytes) -> Result<()> {
        if up.upload_id.is_none() {
            let (s3, u, b, k) = (up.s3.clone(), url.to_string(), up.bucket.clone(), up.key.clone());
            up.upload_id = Some(runtime::block_on(async move { s3::create_multipart(&s3, &u, &b, &k).await })??);
        }
        while up.in_flight.len() >= PARTS_IN_FLIGHT {
            Self::wait_oldest(up)?;
        }
        let (s3, u, b, k) = (up.s3.clone(), url.to_string(), up.bucket.clone(), up.key.clone());
        let id = up.upload_id.clone().unwrap_or_default();
        let number = up.next_part;
        up.next_part += 1;
        up.in_flight
            .push_back(runtime::spawn(async move { s3::upload_part(&s3, &u, &b, &k, &id, number, body).await })?);
        Ok(())
    }

    fn wait_oldest(up: &mut Upload) -> Result<()> {
        if let Some(h) = up.in_flight.pop_front() {
            let part = runtime::block_on(h)?.map_err(|e| StorageError::Runtime(e.to_string()))??;
            up.parts.push(part);
        }
        Ok(())
    }

    /// Makes the object visible: renames the temporary file, or completes
    /// the upload (a single PUT when it stayed small).
    pub fn finish(mut self) -> Result<()> {
        let result = self.commit();
        // On failure, Drop cleans up what `commit` left.
        self.done = result.is_ok();
        result
    }

    fn commit(&mut self) -> Result<()> {
        let url = self.url.clone();
        match &mut self.inner {
            Inner::Local { tmp, dest, file } => {
                if let Some(f) = file.take() {
                    let f = f.into_inner().map_err(|e| StorageError::io(&url, e.into_error()))?;
                    f.sync_data().map_err(|e| StorageError::io(&url, e))?;
                }
                std::fs::rename(&*tmp, &*dest).map_err(|e| StorageError::Io { url, source: e })
            }
            Inner::S3(up) => {
                let rest = Bytes::from(std::mem::take(&mut up.buf));
                if up.upload_id.is_none() {
                    let (s3, b, k) = (up.s3.clone(), up.bucket.clone(), up.key.clone());
                    return runtime::block_on(async move { s3::put(&s3, &url, &b, &k, rest).await })?;
                }
                if !rest.is_empty() {
                    Self::send_part(&url, up, rest)?;
                }
                while !up.in_flight.is_empty() {
                    Self::wait_oldest(up)?;
                }
                let mut parts = std::mem::take(&mut up.parts);
                parts.sort_by_key(|p| p.part_number());
                let (s3, b, k, id) = (up.s3.clone(), up.bucket.clone(), up.key.clone(), up.upload_id.clone());
                let id = id.unwrap_or_default();
                runtime::block_on(async move { s3::complete_multipart(&s3, &url, &b, &k, &id, parts).await })??;
                up.upload_id = None;
                Ok(())
            }
        }
    }

    /// Throws the write away: removes the temporary file or aborts the
    /// multipart upload (S3 then frees its parts).
    fn abandon(&mut self) {
        match &mut self.inner {
            Inner::Local { tmp, file, .. } => {
                file.take();
                if let Err(e) = std::fs::remove_file(&*tmp)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(url = %self.url, "cannot remove the unfinished temporary file: {e}");
                }
            }
            Inner::S3(up) => {
                for h in up.in_flight.drain(..) {
                    h.abort();
                }
                if let Some(id) = up.upload_id.take() {
                    let (s3, url, b, k) = (up.s3.clone(), self.url.clone(), up.bucket.clone(), up.key.clone());
                    let aborted = runtime::block_on(async move { s3::abort_multipart(&s3, &url, &b, &k, &id).await });
                    match aborted {
                        Ok(Ok(())) => tracing::info!(url = %self.url, "unfinished multipart upload aborted"),
                        Ok(Err(e)) | Err(e) => {
                            tracing::warn!(url = %self.url, "cannot abort the multipart upload: {e}")
                        }
                    }
                }
            }
        }
    }
}

impl Write for Writer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let url = self.url.clone();
        match &mut self.inner {
            Inner::Local { file: Some(f), .. } => f.write(data),
            Inner::Local { file: None, .. } => Err(std::io::Error::other(format!("{url}: already finished"))),
            Inner::S3(up) => {
                up.buf.extend_from_slice(data);
                while up.buf.len() >= up.part_size {
                    let rest = up.buf.split_off(up.part_size);
                    let part = std::mem::replace(&mut up.buf, rest);
                    Self::send_part(&url, up, Bytes::from(part))?;
                }
                Ok(data.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            Inner::Local { file: Some(f), .. } => f.flush(),
            _ => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.done {
            self.abandon();
        }
    }
}
