//! The scheduler's HTTP side (axum): `/health`, Dask's `/api/v1` endpoints
//! with the same paths and JSON shapes as dask.distributed, `/metrics` for
//! Prometheus, and the `/status` dashboard fed by server-sent events.
//!
//! With a token, every endpoint but `/health` requires it: the dashboard,
//! `/status.json` and the event stream show every worker's data address
//! and the task stream, the API retires workers. A browser is asked for it
//! by a Basic challenge (any user name, the token as password); programs
//! send `Authorization: Bearer <token>`. `/metrics` requires it too unless
//! the scheduler runs with `--metrics-open`. `/health` answers `ok` and
//! nothing else, for kubelet probes, which cannot send headers.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::core::{CoreMsg, RetireWhich, StatusView, WorkerView};
use super::grpc::Handle;

const STATUS_PAGE: &str = include_str!("../http/status.html");

pub(crate) fn router(handle: Handle) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/status") }))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/status", get(|| async { Html(STATUS_PAGE) }))
        .route("/status.json", get(status_json))
        .route("/status/events", get(status_events))
        .route("/api/v1", get(|| async { ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "API V1") }))
        .route("/api/v1/get_workers", get(get_workers))
        .route("/api/v1/adaptive_target", get(adaptive_target))
        .route("/api/v1/check_idle", get(check_idle))
        .route("/api/v1/retire_workers", post(retire_workers))
        // Over every path, unknown ones too (see `HttpGuard`).
        .layer(middleware::from_fn_with_state(
            rask_proto::auth::HttpGuard::new(handle.token.as_deref(), handle.metrics_open),
            rask_proto::auth::guard_http,
        ))
        .with_state(handle)
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"Error": "the scheduler is shutting down"}))).into_response()
}

async fn status(h: &Handle, since: u64) -> Option<StatusView> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    h.core.send(CoreMsg::Status { since, reply }).ok()?;
    rx.await.ok()
}

async fn get_workers(State(h): State<Handle>) -> Response {
    let Some(s) = status(&h, u64::MAX).await else { return unavailable() };
    let workers: Vec<Json> =
        s.workers.iter().map(|w| json!({"name": w.name, "address": w.address, "group": w.group})).collect();
    axum::Json(json!({"num_workers": workers.len(), "workers": workers})).into_response()
}

/// Dask's `{"workers": n}`, extended with the inputs (queued and running
/// tasks, their expected seconds, memory), a sentence saying why, and the
/// same per worker group under `groups` (see [`crate::adaptive`]).
async fn adaptive_target(State(h): State<Handle>) -> Response {
    let Some(s) = status(&h, u64::MAX).await else { return unavailable() };
    axum::Json(s.adaptive).into_response()
}

async fn check_idle(State(h): State<Handle>) -> Response {
    let Some(s) = status(&h, u64::MAX).await else { return unavailable() };
    axum::Json(json!({"idle_since": s.idle_since})).into_response()
}

#[derive(Debug, Deserialize)]
struct RetireBody {
    #[serde(default)]
    n: usize,
    #[serde(default)]
    workers: Vec<String>,
}

/// Dask's worker identity, as `retire_workers` returns it per address.
fn identity(w: &WorkerView) -> Json {
    json!({
        "type": "Worker",
        "id": w.name,
        "name": w.name,
        "host": w.address.trim_start_matches("http://").rsplit_once(':').map_or("", |(h, _)| h),
        "nthreads": w.nthreads,
        "memory_limit": w.memory_limit,
        "last_seen": w.last_seen,
        "metrics": {"managed_bytes": w.memory_bytes, "spilled_bytes": w.spilled_bytes, "executing": w.threads_busy},
    })
}

async fn retire_workers(State(h): State<Handle>, body: axum::body::Bytes) -> Response {
    let parsed: RetireBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"Error": format!("bad request body: {e}")})))
                .into_response();
        }
    };
    let which = if parsed.n > 0 { RetireWhich::Count(parsed.n) } else { RetireWhich::Names(parsed.workers) };
    let (reply, rx) = tokio::sync::oneshot::channel();
    if h.core.send(CoreMsg::Retire { which, reply }).is_err() {
        return unavailable();
    }
    let Ok(retired) = rx.await else { return unavailable() };
    let out: serde_json::Map<String, Json> = retired.iter().map(|w| (w.address.clone(), identity(w))).collect();
    axum::Json(Json::Object(out)).into_response()
}

async fn metrics(State(h): State<Handle>) -> Response {
    // Refresh the gauges first, so a scrape never reads values a tick old.
    let _ = status(&h, u64::MAX).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], h.metrics.render()).into_response()
}

async fn status_json(State(h): State<Handle>) -> Response {
    match status(&h, 0).await {
        Some(s) => axum::Json(s).into_response(),
        None => unavailable(),
    }
}

/// A snapshot every 500 ms; each carries only the task-stream entries that
/// are new since the previous one.
async fn status_events(State(h): State<Handle>) -> impl IntoResponse {
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(4);
    tokio::spawn(async move {
        let mut since = 0;
        let mut interval = tokio::time::interval(Duration::from_millis(500));
        loop {
            interval.tick().await;
            let Some(s) = status(&h, since).await else { return };
            since = s.next;
            let Ok(event) = Event::default().json_data(&s) else { return };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}
