//! The rask Kubernetes operator.
//!
//! - [`crd`]: the DaskCluster, DaskWorkerGroup and DaskJob types, the single
//!   source of `crds/*.yaml`.
//! - [`autoscale`]: the autoscaler's decision, a pure function (the
//!   scheduler's target, replicas, starting workers, bounds, knobs and
//!   history in; the replicas, direction and reason out).
//! - [`plan`]: pure reconcile planning (spec and observed pods in, actions
//!   out), unit tested without a cluster.
//! - [`resources`]: the child objects built from a spec (Deployment, Service,
//!   worker pods, runner Job), also pure.
//! - [`scheduler_api`]: the scheduler's Dask-compatible HTTP API, the only way
//!   the operator removes a worker that may hold data.
//! - [`cache`]: what the reconcilers know without asking the API server:
//!   whether an apply would change nothing, and our own writes the watches
//!   have not shown yet (pure, unit tested).
//! - [`controller`]: the kube-runtime controllers that join the two.
//! - [`leader`], [`telemetry`], [`run`]: the process: leader election on a
//!   Lease, `/metrics`, `/healthz`, `/readyz`, graceful shutdown.

pub mod autoscale;
pub mod cache;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod plan;
pub mod resources;
pub mod run;
pub mod scheduler_api;
pub mod telemetry;

pub use run::{OperatorConfig, run};

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serializing: {0}")]
    Json(#[from] serde_json::Error),
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("scheduler API at {url}: {message}")]
    Scheduler { url: String, message: String },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{kind} {name} has no {field}")]
    MissingField { kind: &'static str, name: String, field: &'static str },
    #[error("DaskWorkerGroup {group}: cluster {cluster} was not found")]
    ClusterNotFound { group: String, cluster: String },
    #[error("{kind} {name} already exists and is not owned by {owner}: the operator does not take it over")]
    NotOwned { kind: String, name: String, owner: String },
    #[error("lost the leader Lease to another replica")]
    LostLeadership,
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short, bounded label for the errors-by-reason metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api_status",
            Error::Kube(_) => "api_transport",
            Error::Json(_) | Error::Yaml(_) => "serialization",
            Error::Io(_) => "io",
            Error::Scheduler { .. } => "scheduler_unreachable",
            Error::Metrics(_) => "metrics",
            Error::MissingField { .. } => "missing_field",
            Error::ClusterNotFound { .. } => "cluster_not_found",
            Error::NotOwned { .. } => "not_owned",
            Error::LostLeadership => "lost_leadership",
            Error::Config(_) => "config",
        }
    }
}
