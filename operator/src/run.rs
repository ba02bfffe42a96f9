//! The operator process: the HTTP endpoints (`/metrics`, `/healthz`,
//! `/readyz`), leader election, and the three controllers, which run only
//! while this process leads. One shutdown future stops everything in order:
//! the controllers finish their reconciles, the Lease is released, the HTTP
//! server stops.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, ReconcileRequest, trigger_self};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::utils::CancelableJoinHandle;
use kube::runtime::{Controller, WatchStreamExt, applier, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::controller::{self, Caches, Context, ControllerConfig};
use crate::crd::{DaskCluster, DaskJob, DaskWorkerGroup};
use crate::leader::{self, LeaderConfig};
use crate::resources::{LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGER};
use crate::telemetry::Metrics;
use crate::{Error, Result};

/// The operator's settings; the CLI fills this in.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Watch one namespace, or all of them.
    pub namespace: Option<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// Run for leadership on a Lease (off: always lead; one replica only).
    pub leader_election: bool,
    pub leader: LeaderConfig,
    pub controller: ControllerConfig,
    /// Print the bound metrics address on stdout (the CLI does, so that
    /// scripts and tests can find a port chosen with `--metrics-port 0`).
    pub print_address: bool,
    /// Apply this version's CRDs before starting (see [`apply_crds`]).
    pub apply_crds: bool,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            namespace: None,
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            leader_election: true,
            leader: LeaderConfig::default(),
            controller: ControllerConfig::default(),
            print_address: false,
            apply_crds: false,
        }
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

async fn metrics_handler(State(state): State<HttpState>) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], state.metrics.render())
}

/// Readiness: the API server answered. Liveness never depends on peers.
async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Runs the operator until `shutdown` resolves (SIGTERM in production), or
/// until it loses the leader Lease (an error: the process exits and is
/// restarted, as client-go's controllers do).
pub async fn run(
    client: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let metrics = Arc::new(Metrics::new()?);
    let ready = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });

    // HTTP endpoints first, so probes answer while the rest starts.
    let listener = tokio::net::TcpListener::bind(config.metrics_addr).await?;
    let bound = listener.local_addr()?;
    info!("rask operator metrics at http://{bound}/metrics");
    if config.print_address {
        println!("rask operator metrics at http://{bound}/metrics");
    }
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(HttpState { metrics: metrics.clone(), ready: ready.clone() });
    let mut http_shutdown = shutdown_rx.clone();
    let http = tokio::spawn(async move {
        let stop = async move {
            let _ = http_shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            warn!(error = %e, "metrics server failed");
        }
    });

    let version = client.apiserver_version().await?;
    info!(version = %version.git_version, namespace = ?config.namespace, "connected to the API server");
    if config.apply_crds {
        apply_crds(&client).await?;
    }
    ready.store(true, Ordering::Relaxed);

    // Leader election: controllers run only while this process leads.
    // The election stops after the controllers, so the Lease is released
    // only once no reconcile of ours can still write.
    let (leading_tx, mut leading_rx) = watch::channel(!config.leader_election);
    let (election_stop, election_stop_rx) = watch::channel(false);
    // Without election the sender stays here, so "leading" never changes.
    let mut always_leading = None;
    let election = if config.leader_election {
        let lease_api: Api<Lease> = Api::namespaced(client.clone(), &config.leader.namespace);
        let leader_config = config.leader.clone();
        let rx = election_stop_rx;
        Some(tokio::spawn(leader::run_election(lease_api, leader_config, leading_tx, rx)))
    } else {
        always_leading = Some(leading_tx);
        None
    };

    let mut shutdown_wait = shutdown_rx.clone();
    let led = tokio::select! {
        _ = shutdown_wait.wait_for(|s| *s) => false,
        led = leading_rx.wait_for(|l| *l) => led.is_ok(),
    };
    let outcome = if led {
        metrics.leader.set(1);
        let reporter = Reporter { controller: MANAGER.into(), instance: Some(config.leader.identity.clone()) };
        let (caches, writers) = caches();
        let ctx = Arc::new(Context::new(
            client.clone(),
            Recorder::new(client.clone(), reporter),
            metrics.clone(),
            config.controller.clone(),
            caches,
        ));
        let namespace = config.namespace.as_deref();
        run_controllers(client.clone(), namespace, ctx, writers, shutdown_rx.clone(), leading_rx.clone()).await
    } else {
        Ok(())
    };
    metrics.leader.set(0);
    // Stop the election (releasing the Lease if held), then the HTTP server.
    let _ = election_stop.send(true);
    if let Some(election) = election {
        let _ = election.await;
    }
    http.abort();
    drop(always_leading);
    info!("rask operator stopped");
    outcome
}

/// Applies this version's CRDs (the same as `rask crdgen` writes) with
/// server-side apply under the operator's field manager, and waits until
/// each is Established. Helm never upgrades a chart's `crds/`, and a
/// `kubectl apply` install has no upgrade step at all: an operator that
/// brings its own schema keeps the two in step. Replicas applying the same
/// content at once is harmless (apply is idempotent).
pub async fn apply_crds(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(MANAGER).force();
    let mut names = Vec::new();
    for crd in crate::crd::crds()? {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
        api.patch(&name, &params, &Patch::Apply(&crd)).await?;
        names.push(name);
    }
    for name in names {
        let mut established = false;
        for _ in 0..300 {
            let crd = api.get(&name).await?;
            let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
                established = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if !established {
            return Err(Error::Config(format!("CRD {name} was applied but did not become Established within 30 s")));
        }
        info!(crd = %name, "applied the CRD");
    }
    Ok(())
}

/// The writing halves of [`Caches`], consumed by the child watches.
struct CacheWriters {
    deployments: Writer<Deployment>,
    services: Writer<Service>,
    pods: Writer<Pod>,
}

fn caches() -> (Caches, CacheWriters) {
    let (deployments, deployments_w) = reflector::store();
    let (services, services_w) = reflector::store();
    let (pods, pods_w) = reflector::store();
    (
        Caches { deployments, services, pods },
        CacheWriters { deployments: deployments_w, services: services_w, pods: pods_w },
    )
}

/// Where a child's change is sent: the reconcile queue of each owner that is
/// a DaskCluster or a DaskWorkerGroup.
#[derive(Clone)]
struct Owners {
    clusters: mpsc::UnboundedSender<ObjectRef<DaskCluster>>,
    groups: mpsc::UnboundedSender<ObjectRef<DaskWorkerGroup>>,
}

impl Owners {
    fn notify<K: Resource>(&self, child: &K) {
        let namespace = child.meta().namespace.as_deref();
        for owner in child.meta().owner_references.iter().flatten() {
            if let Some(cluster) = ObjectRef::from_owner_ref(namespace, owner, ()) {
                let _ = self.clusters.unbounded_send(cluster);
            } else if let Some(group) = ObjectRef::from_owner_ref(namespace, owner, ()) {
                let _ = self.groups.unbounded_send(group);
            }
        }
    }
}

/// One watch per kind of child: it fills the child's cache (trimmed by
/// `trim` to what the reconcilers read) and then asks the owners to
/// reconcile, so a reconcile always finds the change that triggered it.
async fn watch_children<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    writer: Writer<K>,
    owners: Owners,
    stop: impl Future<Output = ()>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let changes =
        watcher(api, config).default_backoff().modify(trim).reflect(writer).touched_objects().take_until(stop);
    futures::pin_mut!(changes);
    while let Some(change) = changes.next().await {
        match change {
            Ok(child) => owners.notify(&child),
            Err(e) => warn!(kind = %K::kind(&()), error = %e, "watching children failed; retrying"),
        }
    }
}

/// A controller for `K` on kube-runtime's applier: reconciles run
/// concurrently (one at a time per object), triggered by `K`'s own watch and
/// by `related` (its children's changes), and only once the child caches
/// hold their first full list. Stops taking work when `stop` resolves and
/// ends when the running reconciles have finished.
#[allow(clippy::too_many_arguments)]
fn controller<K, F, Fut>(
    api: Api<K>,
    related: mpsc::UnboundedReceiver<ObjectRef<K>>,
    caches: Caches,
    stop: impl Future<Output = ()> + Send + 'static,
    reconcile: F,
    ctx: Arc<Context>,
    on_apply: impl Fn(&K) + Send + 'static,
) -> impl futures::Stream<Item = std::result::Result<(ObjectRef<K>, Action), impl std::fmt::Display>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action>> + Send + 'static,
{
    let (store, writer) = reflector::store();
    let forget = ctx.clone();
    let own = trigger_self(
        reflector(writer, watcher(api, watcher::Config::default()).default_backoff())
            .inspect_ok(move |event| match event {
                // Deleted: nothing of it may stay in the gauges and maps.
                watcher::Event::Delete(obj) => forget.deleted(obj),
                watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => on_apply(obj),
                _ => {}
            })
            .applied_objects(),
        (),
    );
    let related = related.map(|obj_ref| Ok(ReconcileRequest::from(obj_ref)));
    let queue = futures::stream::once(async move {
        caches.wait_until_ready().await;
        futures::stream::select(own, related)
    })
    .flatten()
    .take_until(stop);
    applier(
        move |obj, ctx| CancelableJoinHandle::spawn(reconcile(obj, ctx), &tokio::runtime::Handle::current()),
        controller::error_policy,
        ctx,
        store,
        queue,
        kube::runtime::Config::default(),
    )
}

/// The three controllers and the child watches, until shutdown or loss of
/// leadership.
async fn run_controllers(
    client: Client,
    namespace: Option<&str>,
    ctx: Arc<Context>,
    writers: CacheWriters,
    shutdown: watch::Receiver<bool>,
    mut leading: watch::Receiver<bool>,
) -> Result<()> {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    // Children are watched by the operator's own label, not all objects;
    // pods by the worker label, which every group's selector includes.
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let workers = watcher::Config::default().labels(&format!("{LABEL_COMPONENT}=worker"));
    let mut stops = Vec::new();
    let mut stop = || {
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        async move {
            let _ = rx.await;
        }
    };

    let (clusters_tx, clusters_rx) = mpsc::unbounded();
    let (groups_tx, groups_rx) = mpsc::unbounded();
    let wake_groups = groups_tx.clone();
    let owners = Owners { clusters: clusters_tx, groups: groups_tx };
    let children = futures::future::join3(
        watch_children(
            api::<Deployment>(&client, namespace),
            owned.clone(),
            controller::trim_meta,
            writers.deployments,
            owners.clone(),
            stop(),
        ),
        watch_children(
            api::<Service>(&client, namespace),
            owned.clone(),
            controller::trim_meta,
            writers.services,
            owners.clone(),
            stop(),
        ),
        watch_children(api::<Pod>(&client, namespace), workers, controller::trim_pod, writers.pods, owners, stop()),
    );
    let caches = ctx.caches.clone();
    let clusters = controller(
        api::<DaskCluster>(&client, namespace),
        clusters_rx,
        caches.clone(),
        stop(),
        controller::reconcile_cluster,
        ctx.clone(),
        {
            // A cluster that appears wakes the worker groups waiting for it.
            let ctx = ctx.clone();
            move |dc: &DaskCluster| {
                let namespace = dc.meta().namespace.clone().unwrap_or_default();
                for group in ctx.groups_waiting_for(&namespace, dc.meta().name.as_deref().unwrap_or_default()) {
                    let _ = wake_groups.unbounded_send(ObjectRef::new(&group).within(&namespace));
                }
            }
        },
    )
    .for_each(|r| async move { log_result("daskcluster", r) });
    let groups = controller(
        api::<DaskWorkerGroup>(&client, namespace),
        groups_rx,
        caches,
        stop(),
        controller::reconcile_worker_group,
        ctx.clone(),
        |_: &DaskWorkerGroup| {},
    )
    .for_each(|r| async move { log_result("daskworkergroup", r) });
    let jobs = Controller::new(api::<DaskJob>(&client, namespace), watcher::Config::default())
        .owns(api::<DaskCluster>(&client, namespace), watcher::Config::default())
        .owns(api::<Job>(&client, namespace), owned)
        .graceful_shutdown_on(stop())
        .run(controller::reconcile_job, controller::error_policy, ctx.clone())
        .for_each(|r| async move { log_result("daskjob", r) });
    info!("leading: controllers started");

    let all = futures::future::join(children, futures::future::join3(clusters, groups, jobs));
    tokio::pin!(all);
    let mut shutdown_wait = shutdown.clone();
    let lost = tokio::select! {
        _ = &mut all => false,
        _ = shutdown_wait.wait_for(|s| *s) => false,
        _ = async {
            if leading.wait_for(|l| !*l).await.is_err() {
                std::future::pending::<()>().await;
            }
        } => true,
    };
    // Graceful: no new reconciles, running ones finish.
    for tx in stops {
        let _ = tx.send(());
    }
    all.await;
    if lost {
        warn!("lost the leader Lease: stopping");
        return Err(Error::LostLeadership);
    }
    Ok(())
}

fn log_result<T: std::fmt::Debug, E: std::fmt::Display>(controller: &str, result: std::result::Result<T, E>) {
    match result {
        Ok(done) => debug!(controller, ?done, "reconciled"),
        Err(e) => warn!(controller, error = %e, "controller error"),
    }
}
