//! The scheduler's Dask-compatible HTTP API, as the operator uses it: which
//! workers exist, the adaptive target, idleness, and `retire_workers`, which
//! returns only after the named workers have handed their data to peers and
//! left. The same paths and shapes as dask.distributed, so a Python Dask
//! scheduler with its HTTP API enabled is managed the same way.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::{Error, Result};

/// A client for any number of schedulers (the base URL is per call).
#[derive(Clone, Debug)]
pub struct SchedulerApi {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Bound on the quick calls (workers, target, idle).
    timeout: Duration,
}

#[derive(Deserialize)]
struct WorkerEntry {
    name: Option<String>,
    address: Option<String>,
}

#[derive(Deserialize)]
struct GetWorkers {
    workers: Vec<WorkerEntry>,
}

#[derive(Deserialize)]
struct AdaptiveTarget {
    workers: u32,
}

#[derive(Deserialize)]
struct CheckIdle {
    idle_since: Option<f64>,
}

impl Default for SchedulerApi {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

impl SchedulerApi {
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        SchedulerApi { client, timeout }
    }

    async fn call(
        &self,
        base: &str,
        method: hyper::Method,
        path: &str,
        body: Option<String>,
        timeout: Duration,
        token: Option<&str>,
    ) -> Result<Bytes> {
        let url = format!("{base}{path}");
        let fail = |message: String| Error::Scheduler { url: url.clone(), message };
        let mut request = hyper::Request::builder().method(method).uri(&url);
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| fail(format!("bad request: {e}")))?;
        let response = tokio::time::timeout(timeout, async {
            let response = self.client.request(request).await.map_err(|e| fail(format!("{e}")))?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|e| fail(format!("reading body: {e}")))?;
            Ok::<_, Error>((status, body.to_bytes()))
        })
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))??;
        let (status, body) = response;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
            return Err(fail(format!("HTTP {status}: {text}")));
        }
        Ok(body)
    }

    fn parse<T: serde::de::DeserializeOwned>(base: &str, path: &str, body: &[u8]) -> Result<T> {
        serde_json::from_slice(body)
            .map_err(|e| Error::Scheduler { url: format!("{base}{path}"), message: format!("unexpected answer: {e}") })
    }

    /// The names (or, for unnamed workers, addresses) of the workers the
    /// scheduler knows.
    pub async fn workers(&self, base: &str, token: Option<&str>) -> Result<BTreeSet<String>> {
        let path = "/api/v1/get_workers";
        let body = self.call(base, hyper::Method::GET, path, None, self.timeout, token).await?;
        let parsed: GetWorkers = Self::parse(base, path, &body)?;
        Ok(parsed.workers.into_iter().filter_map(|w| w.name.or(w.address)).collect())
    }

    /// Retires the named workers: returns once they have handed their data
    /// to peers and left, or fails after `timeout`.
    pub async fn retire(&self, base: &str, names: &[String], timeout: Duration, token: Option<&str>) -> Result<()> {
        let path = "/api/v1/retire_workers";
        let body = serde_json::json!({ "workers": names }).to_string();
        let answer = self.call(base, hyper::Method::POST, path, Some(body), timeout, token).await?;
        let _: serde_json::Value = Self::parse(base, path, &answer)?;
        Ok(())
    }

    /// The number of workers the scheduler would like.
    pub async fn adaptive_target(&self, base: &str, token: Option<&str>) -> Result<u32> {
        let path = "/api/v1/adaptive_target";
        let body = self.call(base, hyper::Method::GET, path, None, self.timeout, token).await?;
        Ok(Self::parse::<AdaptiveTarget>(base, path, &body)?.workers)
    }

    /// Since when (Unix seconds) the scheduler has had nothing to do.
    pub async fn idle_since(&self, base: &str, token: Option<&str>) -> Result<Option<f64>> {
        let path = "/api/v1/check_idle";
        let body = self.call(base, hyper::Method::GET, path, None, self.timeout, token).await?;
        Ok(Self::parse::<CheckIdle>(base, path, &body)?.idle_since)
    }
}
