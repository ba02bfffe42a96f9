//! The scheduler's Dask-compatible HTTP API, as the operator uses it: which
//! workers exist, the adaptive target, idleness, and `retire_workers`, which
//! returns only after the named workers have handed their data to peers and
//! left. The same paths and shapes as dask.distributed, so a Python Dask
//! scheduler with its HTTP API enabled is managed the same way.
//!
//! The shared token never leaves for a URL the operator did not build
//! itself: a [`SchedulerUrl`] is either derived (from the Service the
//! operator made) or given by a user's annotation, and only derived URLs
//! get the token, only over HTTPS unless plaintext was explicitly allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;

use crate::{Error, Result};

/// How the operator authenticates to schedulers started with `--token`
/// and TLS (`RASK_TOKEN`, `RASK_TLS_*` in their pod templates): one shared
/// token and one CA for every cluster this operator manages. The token is
/// never logged (`Debug` shows only whether there is one).
#[derive(Clone, Default)]
pub struct SchedulerAuth {
    /// Sent as `Authorization: Bearer <token>`, to derived URLs only.
    pub token: Option<String>,
    /// Send the token over plain HTTP too. Off by default: without a CA the
    /// operator refuses to start with a token, since anyone on the path
    /// could read it.
    pub allow_plaintext_token: bool,
    /// The CA that signs the schedulers' certificates (PEM). With it, the
    /// operator speaks HTTPS to schedulers and refuses any other CA.
    pub ca_file: Option<PathBuf>,
    /// The name to verify in the schedulers' certificates instead of the
    /// Service's DNS name (a certificate shared by the pods, as
    /// `RASK_TLS_SERVER_NAME` does for workers).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for SchedulerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allow_plaintext_token", &self.allow_plaintext_token)
            .field("ca_file", &self.ca_file)
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// A client for any number of schedulers (the base URL is per call).
#[derive(Clone)]
pub struct SchedulerApi {
    client: Transport,
    /// Bound on the quick calls (workers, target, idle).
    timeout: Duration,
    token: Option<Arc<str>>,
    allow_plaintext_token: bool,
}

/// Where a scheduler's HTTP API is, and whether the operator may trust it
/// with the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerUrl {
    base: String,
    derived: bool,
}

impl SchedulerUrl {
    /// A URL the operator built itself, from the scheduler Service it made
    /// (see `resources::scheduler_api_url`): the token may go there.
    pub fn derived(base: impl Into<String>) -> Self {
        Self { base: base.into().trim_end_matches('/').to_string(), derived: true }
    }

    /// A URL someone else chose (the `rask.dev/scheduler-http-url`
    /// annotation): called without the token, whatever it is.
    pub fn untrusted(base: impl Into<String>) -> Self {
        Self { base: base.into().trim_end_matches('/').to_string(), derived: false }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn is_derived(&self) -> bool {
        self.derived
    }
}

impl std::fmt::Display for SchedulerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

#[derive(Clone)]
enum Transport {
    Http(Client<HttpConnector, Full<Bytes>>),
    /// HTTPS, and HTTP for `http://` URLs given by annotation.
    Https(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
}

impl std::fmt::Debug for SchedulerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerApi")
            .field("timeout", &self.timeout)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allow_plaintext_token", &self.allow_plaintext_token)
            .field("https", &matches!(self.client, Transport::Https(_)))
            .finish()
    }
}

/// rustls client settings trusting only the CA in `path`.
fn tls_config(path: &Path) -> Result<rustls::ClientConfig> {
    let bad = |message: String| Error::Config(format!("scheduler CA file {}: {message}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[derive(Deserialize)]
struct WorkerEntry {
    /// A string from rask; any JSON value from Dask (a worker's name may be a number).
    #[serde(default)]
    name: serde_json::Value,
    address: Option<String>,
}

impl WorkerEntry {
    fn name(&self) -> Option<String> {
        match &self.name {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

#[derive(Deserialize)]
struct GetWorkers {
    workers: Vec<WorkerEntry>,
}

/// `/api/v1/adaptive_target`: Dask's `{"workers": n}`; a rask scheduler
/// adds why and the same per worker group.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AdaptiveTarget {
    pub workers: u32,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub groups: BTreeMap<String, GroupTarget>,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct GroupTarget {
    pub workers: u32,
    #[serde(default)]
    pub reason: Option<String>,
}

impl AdaptiveTarget {
    /// What this target asks of one worker group. A classic Dask scheduler
    /// knows no groups: its total is the group's (so with Dask, autoscale
    /// one group). A rask scheduler that has not met a worker of the group
    /// gives it none of the queued work: the groups with workers share it.
    pub fn demand_for(&self, group: &str) -> crate::autoscale::Demand {
        use crate::autoscale::Demand;
        if self.groups.is_empty() {
            let reason =
                self.reason.clone().unwrap_or_else(|| format!("scheduler's adaptive target: {} workers", self.workers));
            return Demand { workers: self.workers, reason };
        }
        match self.groups.get(group) {
            Some(g) => Demand {
                workers: g.workers,
                reason: g.reason.clone().unwrap_or_else(|| format!("group {group}'s adaptive target: {}", g.workers)),
            },
            None => Demand {
                workers: 0,
                reason: format!("no worker of group {group} has joined the scheduler: no queued work is given to it"),
            },
        }
    }
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
    /// Plain HTTP and no token.
    pub fn new(timeout: Duration) -> Self {
        let client = Transport::Http(Client::builder(TokioExecutor::new()).build(Self::tcp(timeout)));
        SchedulerApi { client, timeout, token: None, allow_plaintext_token: false }
    }

    /// With the token and the CA of `auth`: HTTPS when a CA is given. A
    /// token without a CA is refused unless plaintext is explicitly allowed.
    pub fn with_auth(timeout: Duration, auth: &SchedulerAuth) -> Result<Self> {
        let token = auth.token.as_deref().filter(|t| !t.is_empty()).map(Arc::from);
        let allow_plaintext_token = auth.allow_plaintext_token;
        let Some(ca) = &auth.ca_file else {
            if token.is_some() && !allow_plaintext_token {
                return Err(Error::Config(
                    "the schedulers' token would travel over plain HTTP: give the schedulers' CA \
                     (--scheduler-ca-file, chart value schedulerAuth.caSecret) so the operator speaks HTTPS, \
                     or allow plaintext explicitly (--scheduler-token-over-http)"
                        .into(),
                ));
            }
            return Ok(SchedulerApi { token, allow_plaintext_token, ..Self::new(timeout) });
        };
        let builder = HttpsConnectorBuilder::new().with_tls_config(tls_config(ca)?).https_or_http();
        let builder = match &auth.server_name {
            Some(name) => {
                let name = ServerName::try_from(name.clone())
                    .map_err(|e| Error::Config(format!("scheduler TLS server name {name:?}: {e}")))?;
                builder.with_server_name_resolver(FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let connector = builder.enable_http1().wrap_connector(Self::tcp(timeout));
        let client = Transport::Https(Client::builder(TokioExecutor::new()).build(connector));
        Ok(SchedulerApi { client, timeout, token, allow_plaintext_token })
    }

    fn tcp(timeout: Duration) -> HttpConnector {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        // https:// URLs are passed through to the TLS layer.
        connector.enforce_http(false);
        connector
    }

    /// The scheme of schedulers' API URLs: `https` with a CA configured.
    pub fn scheme(&self) -> &'static str {
        match self.client {
            Transport::Http(_) => "http",
            Transport::Https(_) => "https",
        }
    }

    /// The token, when it may go to `url`: a URL the operator derived,
    /// over HTTPS (or plain HTTP where that was explicitly allowed).
    fn token_for(&self, url: &SchedulerUrl) -> Option<&str> {
        let https = url.base.starts_with("https://");
        self.token.as_deref().filter(|_| url.derived && (https || self.allow_plaintext_token))
    }

    async fn call(
        &self,
        base: &SchedulerUrl,
        method: hyper::Method,
        path: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<Bytes> {
        let url = format!("{base}{path}");
        let fail = |message: String| Error::Scheduler { url: url.clone(), message };
        let mut request = hyper::Request::builder().method(method).uri(&url);
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = self.token_for(base) {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| fail(format!("bad request: {e}")))?;
        let response = tokio::time::timeout(timeout, async {
            let response = match &self.client {
                Transport::Http(c) => c.request(request).await,
                Transport::Https(c) => c.request(request).await,
            }
            .map_err(|e| fail(with_causes(&e)))?;
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

    fn parse<T: serde::de::DeserializeOwned>(base: &SchedulerUrl, path: &str, body: &[u8]) -> Result<T> {
        serde_json::from_slice(body)
            .map_err(|e| Error::Scheduler { url: format!("{base}{path}"), message: format!("unexpected answer: {e}") })
    }

    /// The names (or, for unnamed workers, addresses) of the workers the
    /// scheduler knows.
    pub async fn workers(&self, base: &SchedulerUrl) -> Result<BTreeSet<String>> {
        let path = "/api/v1/get_workers";
        let body = self.call(base, hyper::Method::GET, path, None, self.timeout).await?;
        let parsed: GetWorkers = Self::parse(base, path, &body)?;
        Ok(parsed.workers.into_iter().filter_map(|w| w.name().or(w.address)).collect())
    }

    /// Retires the named workers: returns once they have handed their data
    /// to peers and left, or fails after `timeout`.
    ///
    /// Names are sent as the workers' addresses (from `get_workers`): a rask
    /// scheduler takes either, Dask's `retire_workers` takes addresses.
    pub async fn retire(&self, base: &SchedulerUrl, names: &[String], timeout: Duration) -> Result<()> {
        let listed = self.call(base, hyper::Method::GET, "/api/v1/get_workers", None, self.timeout).await?;
        let listed: GetWorkers = Self::parse(base, "/api/v1/get_workers", &listed)?;
        let addresses: Vec<String> = names
            .iter()
            .map(|n| {
                listed
                    .workers
                    .iter()
                    .find(|w| w.name().as_deref() == Some(n.as_str()))
                    .and_then(|w| w.address.clone())
                    .unwrap_or_else(|| n.clone())
            })
            .collect();
        let path = "/api/v1/retire_workers";
        let body = serde_json::json!({ "workers": addresses }).to_string();
        let answer = self.call(base, hyper::Method::POST, path, Some(body), timeout).await?;
        let _: serde_json::Value = Self::parse(base, path, &answer)?;
        Ok(())
    }

    /// The workers the scheduler would like, in total and per group.
    pub async fn adaptive_target(&self, base: &SchedulerUrl) -> Result<AdaptiveTarget> {
        let path = "/api/v1/adaptive_target";
        let body = self.call(base, hyper::Method::GET, path, None, self.timeout).await?;
        Self::parse::<AdaptiveTarget>(base, path, &body)
    }

    /// Since when (Unix seconds) the scheduler has had nothing to do.
    pub async fn idle_since(&self, base: &SchedulerUrl) -> Result<Option<f64>> {
        let path = "/api/v1/check_idle";
        let body = self.call(base, hyper::Method::GET, path, None, self.timeout).await?;
        Ok(Self::parse::<CheckIdle>(base, path, &body)?.idle_since)
    }
}

/// An error with its causes: hyper's own message ("client error
/// (Connect)") says nothing of a refused certificate or connection.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dask_target_is_the_total_and_a_rask_target_is_per_group() {
        let dask: AdaptiveTarget = serde_json::from_str(r#"{"workers": 3}"#).expect("Dask's shape");
        let d = dask.demand_for("default");
        assert_eq!(d.workers, 3);
        assert_eq!(d.reason, "scheduler's adaptive target: 3 workers");
        let rask: AdaptiveTarget = serde_json::from_str(
            r#"{"workers": 5, "reason": "all", "queued_tasks": 9,
                "groups": {"default": {"workers": 1, "reason": "idle"}, "highmem": {"workers": 4, "current_workers": 1}}}"#,
        )
        .expect("rask's shape");
        assert_eq!(rask.demand_for("default").workers, 1);
        assert_eq!(rask.demand_for("default").reason, "idle");
        assert_eq!(rask.demand_for("highmem").workers, 4);
        let absent = rask.demand_for("gpu");
        assert_eq!(absent.workers, 0);
        assert!(absent.reason.contains("no worker of group gpu"), "{}", absent.reason);
    }

    #[test]
    fn the_token_goes_only_to_derived_urls_and_never_over_plain_http_unless_allowed() {
        let t = Duration::from_secs(1);
        let auth = SchedulerAuth { token: Some("tok".into()), ..SchedulerAuth::default() };
        let e = SchedulerApi::with_auth(t, &auth).expect_err("a token without a CA is refused").to_string();
        assert!(e.contains("plain HTTP") && e.contains("--scheduler-ca-file"), "{e}");
        let plain = SchedulerApi::with_auth(t, &SchedulerAuth { allow_plaintext_token: true, ..auth.clone() })
            .expect("plaintext explicitly allowed");
        assert_eq!(plain.token_for(&SchedulerUrl::derived("http://s.ns.svc:8787")), Some("tok"));
        assert_eq!(plain.token_for(&SchedulerUrl::untrusted("http://evil:80")), None);
        assert_eq!(plain.token_for(&SchedulerUrl::untrusted("https://evil:443")), None);
        let strict = SchedulerApi { token: Some(Arc::from("tok")), ..SchedulerApi::new(t) };
        assert_eq!(strict.token_for(&SchedulerUrl::derived("https://s.ns.svc:8787")), Some("tok"));
        assert_eq!(strict.token_for(&SchedulerUrl::derived("http://s.ns.svc:8787")), None);
        assert_eq!(strict.token_for(&SchedulerUrl::untrusted("https://s.ns.svc:8787")), None);
    }

    #[test]
    fn dask_worker_names_may_be_numbers() {
        let listed: GetWorkers = serde_json::from_str(
            r#"{"workers": [{"name": 0, "address": "tcp://a:1"}, {"name": "w1", "address": "tcp://b:2"}]}"#,
        )
        .expect("get_workers");
        let names: Vec<Option<String>> = listed.workers.iter().map(WorkerEntry::name).collect();
        assert_eq!(names, [Some("0".to_string()), Some("w1".to_string())]);
    }
}
