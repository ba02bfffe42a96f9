//! The storage layer's one error type. Every variant names the URL it was
//! about, so a failed task on a worker says which object was the problem.

use thiserror::Error;

/// Everything that can go wrong reading or writing storage.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The URL cannot be parsed or uses a scheme rask does not read.
    #[error("{url}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The bucket does not exist on the endpoint.
    #[error("{url}: bucket {bucket:?} does not exist (NoSuchBucket) at {endpoint}")]
    NoSuchBucket { url: String, bucket: String, endpoint: String },
    /// The object (or local file) does not exist.
    #[error("{url}: {}", missing(.url))]
    NoSuchKey { url: String },
    /// A glob or directory matched nothing.
    #[error("{url}: no files match")]
    NoMatch { url: String },
    /// The credentials were refused or do not allow this request.
    #[error("{url}: access denied ({code}); check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, web identity)")]
    AccessDenied { url: String, code: String },
    /// A request took longer than the configured timeout, after retries.
    #[error("{url}: timed out talking to {endpoint} after retries")]
    Timeout { url: String, endpoint: String },
    /// The endpoint could not be reached (refused, DNS, TLS), after retries.
    #[error("{url}: cannot reach the S3 endpoint {endpoint}: {detail}")]
    Endpoint { url: String, endpoint: String, detail: String },
    /// Any other answer from S3.
    #[error("{url}: S3 error {code}: {detail}")]
    S3 { url: String, code: String, detail: String },
    /// A local IO error.
    #[error("{url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The shared runtime could not start or a storage task was lost.
    #[error("storage runtime: {0}")]
    Runtime(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What a missing URL is called: an S3 object by S3's code, a local path
/// as a missing file.
fn missing(url: &str) -> &'static str {
    if crate::is_s3(url) { "no such object (NoSuchKey)" } else { "no such file or directory" }
}

impl StorageError {
    /// Whether the object or bucket was missing.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StorageError::NoSuchKey { .. } | StorageError::NoSuchBucket { .. } | StorageError::NoMatch { .. }
        )
    }

    pub(crate) fn io(url: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return StorageError::NoSuchKey { url: url.to_string() };
        }
        StorageError::Io { url: url.to_string(), source }
    }
}

impl From<StorageError> for std::io::Error {
    fn from(e: StorageError) -> Self {
        let kind = match &e {
            StorageError::NoSuchKey { .. } | StorageError::NoSuchBucket { .. } | StorageError::NoMatch { .. } => {
                std::io::ErrorKind::NotFound
            }
            StorageError::AccessDenied { .. } => std::io::ErrorKind::PermissionDenied,
            StorageError::Timeout { .. } => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
