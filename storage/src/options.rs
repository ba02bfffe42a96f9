//! Per-call storage options. The defaults come from the standard AWS
//! environment; these override it for one read or write and travel inside
//! task parameters, so workers use the same settings as the client.

use serde::{Deserialize, Serialize};

/// Overrides of the AWS environment for one read or write.
///
/// Credentials never go here: they come from the standard chain
/// (environment, profile, web identity / IRSA, container and instance
/// metadata) on each worker, so they are never serialized into tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StorageOptions {
    /// An S3-compatible endpoint (MinIO, Ceph, moto); implies path-style
    /// addressing. Default: `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Default: `AWS_REGION` / the profile, else `us-east-1`.
    pub region: Option<String>,
    /// Send unsigned requests (public buckets).
    pub anonymous: bool,
    /// Attempts per request, first included (default 5), with exponential
    /// backoff between them.
    pub max_attempts: Option<u32>,
    /// Timeout of one attempt in milliseconds (default 120 s).
    pub attempt_timeout_ms: Option<u64>,
}

impl StorageOptions {
    pub fn endpoint_url(mut self, url: &str) -> Self {
        self.endpoint_url = Some(url.to_string());
        self
    }

    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.to_string());
        self
    }

    pub fn anonymous(mut self, anonymous: bool) -> Self {
        self.anonymous = anonymous;
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    pub fn attempt_timeout_ms(mut self, ms: u64) -> Self {
        self.attempt_timeout_ms = Some(ms);
        self
    }
}
