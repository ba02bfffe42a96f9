//! S3 through aws-sdk-s3: one client per distinct [`StorageOptions`],
//! built from the standard AWS environment, and the async requests the
//! blocking API in `lib.rs` is made of. Every SDK error is mapped here to a
//! [`StorageError`] that names the URL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bytes::Bytes;

use crate::error::{Result, StorageError};
use crate::options::StorageOptions;

/// Requests sent and bytes received, for the benchmark's per-file counts.
pub(crate) static REQUESTS: AtomicU64 = AtomicU64::new(0);
pub(crate) static BYTES_READ: AtomicU64 = AtomicU64::new(0);

const DEFAULT_ATTEMPTS: u32 = 5;
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// A configured client and the endpoint it talks to (for messages).
#[derive(Debug)]
pub(crate) struct S3 {
    pub client: Client,
    pub endpoint: String,
}

fn env_endpoint() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"].iter().find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

async fn build(options: &StorageOptions) -> S3 {
    let http =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let retry = RetryConfig::standard()
        .with_max_attempts(options.max_attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1))
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5));
    let attempt = options.attempt_timeout_ms.map_or(DEFAULT_ATTEMPT_TIMEOUT, Duration::from_millis);
    let timeout =
        TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).operation_attempt_timeout(attempt).build();
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(http).retry_config(retry).timeout_config(timeout);
    // The loader's own region chain (environment, profile, instance
    // metadata) shares the HTTP client configured above.
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if options.anonymous {
        loader = loader.no_credentials();
    }
    let sdk = loader.load().await;
    let custom = options.endpoint_url.clone().or_else(env_endpoint);
    let mut conf = aws_sdk_s3::config::Builder::from(&sdk);
    if sdk.region().is_none() {
        conf = conf.region(Region::new("us-east-1"));
    }
    if custom.is_some() {
        // S3-compatible stores want path-style URLs (no bucket DNS names),
        // and not all of them check the newer default checksums.
        conf = conf
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    let endpoint = custom.unwrap_or_else(|| "AWS S3".to_string());
    tracing::debug!(%endpoint, region = ?sdk.region(), "S3 client configured");
    S3 { client: Client::from_conf(conf.build()), endpoint }
}

type Clients = Mutex<HashMap<StorageOptions, Arc<S3>>>;
static CLIENTS: OnceLock<Clients> = OnceLock::new();

/// The client for these options, built once per process.
pub(crate) async fn client(options: &StorageOptions) -> Arc<S3> {
    let clients = CLIENTS.get_or_init(Default::default);
    if let Some(c) = clients.lock().unwrap_or_else(|p| p.into_inner()).get(options) {
        return c.clone();
    }
    let built = Arc::new(build(options).await);
    clients.lock().unwrap_or_else(|p| p.into_inner()).entry(options.clone()).or_insert(built).clone()
}

/// Maps an SDK error to one that names the URL.
pub(crate) fn error<E>(s3: &S3, url: &str, bucket: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let url = url.to_string();
    let endpoint = s3.endpoint.clone();
    match &err {
        SdkError::TimeoutError(_) => StorageError::Timeout { url, endpoint },
        SdkError::DispatchFailure(d) if d.is_timeout() => StorageError::Timeout { url, endpoint },
        SdkError::DispatchFailure(_) => {
            StorageError::Endpoint { url, endpoint, detail: DisplayErrorContext(&err).to_string() }
        }
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or_default().to_string();
            let status = s.raw().status().as_u16();
            match code.as_str() {
                "NoSuchBucket" => StorageError::NoSuchBucket { url, bucket: bucket.to_string(), endpoint },
                "NoSuchKey" | "NotFound" => StorageError::NoSuchKey { url },
                "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AllAccessDisabled" => {
                    StorageError::AccessDenied { url, code }
                }
                _ if status == 403 => StorageError::AccessDenied { url, code: format!("HTTP {status}") },
                _ if status == 404 => StorageError::NoSuchKey { url },
                _ => StorageError::S3 {
                    url,
                    code: if code.is_empty() { format!("HTTP {status}") } else { code },
                    detail: s.err().message().unwrap_or_default().to_string(),
                },
            }
        }
        _ => StorageError::S3 { url, code: "request".into(), detail: DisplayErrorContext(&err).to_string() },
    }
}

/// Size and a version stamp (the ETag) of an object. A 404 on HEAD has no
/// body, so a bucket check tells a missing bucket from a missing key.
pub(crate) async fn head(s3: &S3, url: &str, bucket: &str, key: &str) -> Result<(u64, String)> {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    match s3.client.head_object().bucket(bucket).key(key).send().await {
        Ok(out) => {
            let size = u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0);
            Ok((size, out.e_tag().unwrap_or_default().to_string()))
        }
        Err(e) => {
            let mapped = error(s3, url, bucket, e);
            if let StorageError::NoSuchKey { .. } = mapped {
                REQUESTS.fetch_add(1, Ordering::Relaxed);
                if let Err(b) = s3.client.head_bucket().bucket(bucket).send().await {
                    let b = error(s3, url, bucket, b);
                    if let StorageError::NoSuchKey { .. } = b {
                        return Err(StorageError::NoSuchBucket {
                            url: url.to_string(),
                            bucket: bucket.to_string(),
                            endpoint: s3.endpoint.clone(),
                        });
                    }
                    return Err(b);
                }
            }
            Err(mapped)
        }
    }
}

/// One GET of `range` (an HTTP Range value such as `bytes=0-99`); returns
/// the body and the `Content-Range` header.
pub(crate) async fn get(
    s3: &S3,
    url: &str,
    bucket: &str,
    key: &str,
    range: Option<String>,
) -> Result<(Bytes, Option<String>)> {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    let out = s3.client.get_object().bucket(bucket).key(key).set_range(range).send().await;
    let out = out.map_err(|e| error(s3, url, bucket, e))?;
    let content_range = out.content_range().map(str::to_string);
    let body = out.body.collect().await.map_err(|e| StorageError::S3 {
        url: url.to_string(),
        code: "body".into(),
        detail: format!("reading the response body: {e}"),
    })?;
    let bytes = body.into_bytes();
    BYTES_READ.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok((bytes, content_range))
}

/// Keys and sizes under `prefix`, following continuation tokens.
pub(crate) async fn list(s3: &S3, url: &str, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let page = s3
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| error(s3, url, bucket, e))?;
        for o in page.contents() {
            if let Some(k) = o.key() {
                out.push((k.to_string(), u64::try_from(o.size().unwrap_or(0)).unwrap_or(0)));
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// A single PUT: S3 makes the object visible only when it is complete.
pub(crate) async fn put(s3: &S3, url: &str, bucket: &str, key: &str, body: Bytes) -> Result<()> {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    s3.client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| error(s3, url, bucket, e))?;
    Ok(())
}

/// DELETE of one object (S3 answers 204 whether or not it existed).
pub(crate) async fn delete(s3: &S3, url: &str, bucket: &str, key: &str) -> Result<()> {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    s3.client.delete_object().bucket(bucket).key(key).send().await.map_err(|e| error(s3, url, bucket, e))?;
    Ok(())
}

pub(crate) async fn create_multipart(s3: &S3, url: &str, bucket: &str, key: &str) -> Result<String> {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    let out = s3
        .client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| error(s3, url, bucket, e))?;
    out.upload_id().map(str::to_string).ok_or_else(|| StorageError::S3 {
        url: url.to_string(),
        code: "CreateMultipartUpload".into(),
        detail: "the answer had no upload id".into(),
    })
}

pub(crate) async fn upload_part(
    s3: &S3,
    url: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
    number: i32,
    body: Bytes,
) -> Result<CompletedPart> {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    let out = s3
        .client
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(number)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| error(s3, url, bucket, e))?;
    Ok(CompletedPart::builder().set_e_tag(out.e_tag().map(str::to_string)).part_number(number).build())
}

pub(crate) async fn complete_multipart(
    s3: &S3,
    url: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> Result<()> {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    s3.client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .map_err(|e| error(s3, url, bucket, e))?;
    Ok(())
}

pub(crate) async fn abort_multipart(s3: &S3, url: &str, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    s3.client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
        .map_err(|e| error(s3, url, bucket, e))?;
    Ok(())
}
