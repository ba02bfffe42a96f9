//! The reconcilers: DaskCluster, DaskWorkerGroup and DaskJob. Each is
//! idempotent and level-based: it reads what exists, asks [`crate::plan`]
//! what to do, does it, and writes the status with server-side apply under
//! the one field manager. A crash at any point is repaired by the next run.
//!
//! Worker removal is the careful part: a pod that may hold data is marked
//! `rask.dev/retiring`, retired through the scheduler's `retire_workers`,
//! and deleted only after the scheduler says it has left. When the
//! scheduler cannot be reached such pods stay, and a condition says why.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::autoscale::{self, Decision, Direction, Observation, Policy};
use crate::cache::{self, Applied, Memory, Written};
use crate::crd::{
    AutoscalingSpec, AutoscalingStatus, DaskCluster, DaskClusterStatus, DaskJob, DaskJobStatus, DaskWorkerGroup,
    DaskWorkerGroupStatus, JobPhase, WorkerSpec,
};
use crate::plan::{self, GroupCounts, GroupTarget, ObservedPod, PodPhase, SchedulerView};
use crate::resources::{self, ANNOTATION_RETIRING, ANNOTATION_SCHEDULER_URL, DEFAULT_GROUP, MANAGER};
use crate::scheduler_api::{SchedulerApi, SchedulerUrl};
use crate::telemetry::Metrics;
use crate::{Error, Result};

/// Settings of the reconcilers.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// How long one `retire_workers` call may take (data hand-off included).
    pub retire_timeout: Duration,
    /// How often autoscaled or idle-timed clusters are looked at again: one
    /// requeue in the controller's shared queue, not a task per cluster.
    pub poll_interval: Duration,
    /// Requeue while something is in progress (rollout, retirement).
    pub busy_interval: Duration,
    /// Requeue of a converged object: a safety net; watches drive the rest.
    pub idle_interval: Duration,
    /// The client of the schedulers' HTTP API, with the token and CA
    /// shared by every cluster (`--scheduler-token`, `--scheduler-ca-file`).
    pub scheduler: SchedulerApi,
    /// Honour the `rask.dev/scheduler-http-url` annotation
    /// (`--scheduler-url-annotation`). Off by default: it lets whoever may
    /// create a DaskCluster point the operator's calls anywhere (they never
    /// carry the token, see [`SchedulerUrl`]).
    pub scheduler_url_annotation: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            retire_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_secs(5),
            busy_interval: Duration::from_secs(5),
            idle_interval: Duration::from_secs(300),
            scheduler: SchedulerApi::default(),
            scheduler_url_annotation: false,
        }
    }
}

/// The reflector caches of the children (filled by the watches that also
/// trigger the reconciles, see [`crate::run`]): reconciles read these, not
/// the API server.
#[derive(Clone, Debug)]
pub struct Caches {
    /// The scheduler Deployments (label `app.kubernetes.io/managed-by`).
    pub deployments: Store<Deployment>,
    /// The scheduler Services (label `app.kubernetes.io/managed-by`).
    pub services: Store<Service>,
    /// Every worker pod (label `rask.dev/component=worker`, a superset of
    /// every group's selector).
    pub pods: Store<Pod>,
}

impl Caches {
    /// Resolves once every cache holds its first complete list.
    pub async fn wait_until_ready(&self) {
        let _ = futures::future::join3(
            self.deployments.wait_until_ready(),
            self.services.wait_until_ready(),
            self.pods.wait_until_ready(),
        )
        .await;
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub scheduler: SchedulerApi,
    pub config: ControllerConfig,
    pub caches: Caches,
    /// Each autoscaled group's memory: its recommendations (for the
    /// stabilization window), last scale times, and the last hold reported.
    autoscalers: Mutex<HashMap<String, GroupAutoscaler>>,
    /// The last server-side apply of each child (`kind/namespace/name`), so
    /// applies that would change nothing are skipped.
    applied: Memory<Applied>,
    /// Consecutive reconciles of each object (`kind/namespace/name`) in
    /// which the API server refused a worker pod: the retry backs off.
    create_failures: Mutex<HashMap<String, u32>>,
    /// Worker pods of each group (`kind/namespace/name`) that exited with
    /// failure: replacements wait out a backoff, so a worker that crashes at
    /// once is not recreated in a hot loop.
    crashes: Mutex<HashMap<String, Crashes>>,
    /// DaskWorkerGroups waiting for their cluster (`namespace/cluster` to
    /// group names): the cluster's watch event wakes them.
    waiting_groups: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
    /// Statuses written whose watch event may not have arrived yet.
    cluster_status: Memory<Written<DaskClusterStatus>>,
    group_status: Memory<Written<DaskWorkerGroupStatus>>,
}

/// A group's run of failed worker pods (reset once every worker is ready).
#[derive(Debug)]
struct Crashes {
    /// Failed pods already counted (by UID).
    seen: std::collections::BTreeSet<String>,
    /// Replacements wait until then: 5 s after the first failure, doubling
    /// per further failure up to 5 min (the Job controller's backoff).
    hold_until: Instant,
}

/// What the autoscaler remembers of one group between reconciles.
#[derive(Debug, Default)]
struct GroupAutoscaler {
    history: autoscale::History,
    /// The kind of the last hold published as an Event, so a hold that
    /// lasts is told once, not at every poll.
    last_hold: Option<&'static str>,
    /// The last change (kind, reason, time): the status is built from it,
    /// not only from the object, which the watch cache may show without
    /// our own last status write yet.
    last_change: Option<(&'static str, String, Time)>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        config: ControllerConfig,
        caches: Caches,
    ) -> Context {
        Context {
            client,
            recorder,
            metrics,
            scheduler: config.scheduler.clone(),
            config,
            caches,
            autoscalers: Mutex::new(HashMap::new()),
            create_failures: Mutex::new(HashMap::new()),
            crashes: Mutex::new(HashMap::new()),
            waiting_groups: Mutex::new(HashMap::new()),
            applied: Memory::default(),
            cluster_status: Memory::default(),
            group_status: Memory::default(),
        }
    }

    /// Forgets an object its watch reports deleted: without a finalizer a
    /// reconcile may never see its deletion timestamp, and the gauges and
    /// per-object maps would count it forever.
    pub fn deleted<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        let namespace = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.meta().name.clone().unwrap_or_default();
        let kind = K::kind(&());
        let key = format!("{kind}/{namespace}/{name}");
        self.metrics.set_group(&key, None);
        self.forget(&key, &namespace, (kind == "DaskCluster").then_some(name.as_str()));
        info!(%key, "forgot a deleted object");
    }

    /// Notes that a DaskWorkerGroup waits for a cluster that does not exist yet.
    fn wait_for_cluster(&self, namespace: &str, cluster: &str, group: &str) {
        let mut waiting = self.waiting_groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        waiting.entry(format!("{namespace}/{cluster}")).or_default().insert(group.to_string());
    }

    /// The groups waiting for a cluster that now exists (they are forgotten:
    /// the caller reconciles them).
    pub fn groups_waiting_for(&self, namespace: &str, cluster: &str) -> Vec<String> {
        let mut waiting = self.waiting_groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        waiting.remove(&format!("{namespace}/{cluster}")).map(|g| g.into_iter().collect()).unwrap_or_default()
    }

    /// Drops what is remembered of an object that is going away (its key:
    /// `kind/namespace/name`), and of its scheduler's children.
    fn forget(&self, key: &str, namespace: &str, cluster: Option<&str>) {
        self.autoscalers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
        self.create_failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
        self.crashes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
        self.cluster_status.remove(key);
        self.group_status.remove(key);
        if let Some(cluster) = cluster {
            let child = resources::scheduler_name(cluster);
            self.applied.remove(&format!("Deployment/{namespace}/{child}"));
            self.applied.remove(&format!("Service/{namespace}/{child}"));
        }
    }

    /// Server-side applies `desired` (named `name` in `namespace`) unless
    /// the cache shows that the apply would change nothing; returns the
    /// child as the server has it (the cached copy when skipped).
    async fn apply_child<K>(&self, cache: &Store<K>, namespace: &str, name: &str, desired: &K) -> Result<Arc<K>>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + Serialize
            + DeserializeOwned,
    {
        let key = format!("{}/{namespace}/{name}", K::kind(&()));
        let desired_json = serde_json::to_value(desired)?;
        let hash = cache::fingerprint(&desired_json);
        let cached = cache.get(&ObjectRef::new(name).within(namespace));
        let cached_json = cached.as_ref().map(|c| serde_json::to_value(c.as_ref())).transpose()?;
        let last = self.applied.get(&key);
        let version = cached.as_ref().and_then(|c| c.meta().resource_version.clone());
        let needed = cache::apply_needed(
            last.as_ref(),
            hash,
            &desired_json,
            cached_json.as_ref().map(|j| (version.as_deref(), j)),
        );
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        // A forced apply takes every field, ownerReferences included: never
        // run one over an object of the same name that another owner (or a
        // user) made. The cache holds only the operator's labelled
        // children, so a miss is checked with the server (once, at creation).
        let owner = desired.meta().owner_references.as_ref().and_then(|r| r.first()).map(|r| r.uid.clone());
        let existing = match &cached {
            Some(c) => Some(c.clone()),
            None => api.get_opt(name).await?.map(Arc::new),
        };
        if let (Some(owner), Some(existing)) = (owner, &existing)
            && !existing.meta().owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r.uid == owner))
        {
            let holders: Vec<String> =
                existing.meta().owner_references.iter().flatten().map(|r| format!("{} {}", r.kind, r.name)).collect();
            return Err(Error::NotOwned {
                kind: K::kind(&()).into_owned(),
                name: format!("{namespace}/{name}"),
                owner: if holders.is_empty() { "this object".into() } else { holders.join(", ") },
            });
        }
        if let (false, Some(cached)) = (needed, cached) {
            return Ok(cached);
        }
        let applied = api.patch(name, &apply_params(), &Patch::Apply(desired)).await?;
        let after = applied.meta().resource_version.clone();
        self.applied.insert(key, Applied { hash, before: version, after });
        Ok(Arc::new(applied))
    }

    /// The worker pods of one group, from the cache: those with its labels
    /// that `owner` (the DaskCluster or DaskWorkerGroup) controls. Labels
    /// come from names users chose; the owner's UID cannot be shared.
    fn group_pods(&self, namespace: &str, cluster: &str, group: &str, owner: &str) -> Vec<Arc<Pod>> {
        let wanted = [
            (resources::LABEL_CLUSTER, cluster),
            (resources::LABEL_COMPONENT, "worker"),
            (resources::LABEL_WORKER_GROUP, group),
        ];
        self.caches.pods.state_filter(|pod| {
            let labels = pod.labels();
            pod.metadata.namespace.as_deref() == Some(namespace)
                && wanted.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
                && owned_by(pod, owner)
        })
    }

    /// Names starting with `prefix` that pods of other owners hold in the
    /// namespace: a group never tries to create a pod under them.
    fn names_held_by_others(&self, namespace: &str, prefix: &str, owner: &str) -> Vec<String> {
        self.caches
            .pods
            .state_filter(|pod| {
                pod.metadata.namespace.as_deref() == Some(namespace)
                    && pod.metadata.name.as_deref().is_some_and(|n| n.starts_with(prefix))
                    && !owned_by(pod, owner)
            })
            .iter()
            .map(|p| p.name_any())
            .collect()
    }

    async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, type_: EventType, reason: &str, note: String) {
        let event = Event { type_, reason: reason.into(), note: Some(note), action: reason.into(), secondary: None };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(error = %e, reason, "publishing an event failed");
        }
    }
}

/// The aggregate `Ready` condition GitOps health checks look for: false
/// with the first cause that holds the object back.
/// `WorkersFailing`: True while worker pods end with failure (reason
/// `CrashLoop`, the exit reason of the first and the backoff).
fn failing_condition(previous: &[Condition], outcome: &GroupOutcome, generation: Option<i64>, t: &Time) -> Condition {
    match &outcome.failing {
        Some((why, wait)) => {
            let message =
                if wait.is_zero() { why.clone() } else { format!("{why}; replaced in {} s", wait.as_secs().max(1)) };
            plan::condition(previous, "WorkersFailing", true, "CrashLoop", message, generation, t)
        }
        None => plan::condition(previous, "WorkersFailing", false, "None", "No worker has failed", generation, t),
    }
}

fn ready_condition(
    previous: &[Condition],
    outcome: &GroupOutcome,
    scheduler_ready: bool,
    workers_ready: bool,
    generation: Option<i64>,
    t: &Time,
) -> Condition {
    let (ready, reason, message) = if let Some((reason, message)) = &outcome.create_failed {
        (false, reason.as_str(), message.clone())
    } else if let Some((why, _)) = &outcome.failing {
        (false, "WorkersFailing", why.clone())
    } else if !scheduler_ready {
        (false, "SchedulerUnavailable", "Waiting for the scheduler".to_string())
    } else if let Some(blocked) = &outcome.blocked {
        (false, "ScaleDownBlocked", blocked.clone())
    } else if !workers_ready {
        (false, "WorkersNotReady", "Waiting for the workers".to_string())
    } else {
        (true, "Ready", "The scheduler and every worker are ready".to_string())
    };
    plan::condition(previous, "Ready", ready, reason, message, generation, t)
}

impl Context {
    /// The requeue after a reconcile whose pod creations the API server
    /// refused: 5 s, doubling per consecutive refusal up to 5 min, like the
    /// Job controller. Forgets the object's count once it creates cleanly.
    fn create_backoff(&self, key: &str, failed: bool) -> Option<Duration> {
        let mut failures = self.create_failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !failed {
            failures.remove(key);
            return None;
        }
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let seconds = 5u64.saturating_mul(1u64 << (*n - 1).min(6)).min(300);
        Some(Duration::from_secs(seconds))
    }
}

impl Context {
    /// Counts the group's newly failed pods and says how long their
    /// replacements must still wait (`None`: go ahead). Returns whether a
    /// new failure was counted, for the Event.
    fn crash_hold(&self, key: &str, failed: &[String], all_ready: bool) -> (Option<Duration>, bool) {
        let mut crashes = self.crashes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if failed.is_empty() {
            if all_ready {
                crashes.remove(key);
            }
            return (None, false);
        }
        let now = Instant::now();
        let entry = crashes
            .entry(key.to_string())
            .or_insert_with(|| Crashes { seen: std::collections::BTreeSet::new(), hold_until: now });
        let mut counted = false;
        for name in failed {
            if entry.seen.insert(name.clone()) {
                counted = true;
                let n = u32::try_from(entry.seen.len()).unwrap_or(u32::MAX);
                let seconds = 5u64.saturating_mul(1u64 << (n - 1).min(6)).min(300);
                entry.hold_until = now + Duration::from_secs(seconds);
            }
        }
        (entry.hold_until.checked_duration_since(now).filter(|d| !d.is_zero()), counted)
    }
}

/// Why a worker pod ended: its container's termination (reason, exit
/// code, message), or the pod's own reason.
fn exit_reason(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let terminated = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find_map(|c| c.state.as_ref().and_then(|st| st.terminated.as_ref())));
    match terminated {
        Some(t) => {
            let mut out = format!("{} (exit code {})", t.reason.as_deref().unwrap_or("Error"), t.exit_code);
            if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
                out.push_str(": ");
                out.extend(m.chars().take(300));
            }
            out
        }
        None => {
            status.and_then(|s| s.reason.clone().or_else(|| s.message.clone())).unwrap_or_else(|| "failed".to_string())
        }
    }
}

/// Whether `owner` (a UID) is the controller of `pod`.
fn owned_by(pod: &Pod, owner: &str) -> bool {
    pod.metadata.owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r.uid == owner))
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

fn owner_of<K: Resource<DynamicType = ()>>(obj: &K) -> Result<OwnerReference> {
    obj.controller_owner_ref(&()).ok_or_else(|| Error::MissingField {
        kind: "object",
        name: obj.meta().name.clone().unwrap_or_default(),
        field: "metadata.uid",
    })
}

fn namespace_of<K: Resource>(obj: &K) -> Result<String> {
    obj.meta().namespace.clone().ok_or_else(|| Error::MissingField {
        kind: "object",
        name: obj.meta().name.clone().unwrap_or_default(),
        field: "metadata.namespace",
    })
}

fn ignore_status(result: kube::Result<()>, code: u16) -> Result<()> {
    match result {
        Err(kube::Error::Api(s)) if s.code == code => Ok(()),
        other => Ok(other?),
    }
}

/// Counts a reconcile, its time and its errors by reason.
pub async fn instrumented<F>(metrics: &Metrics, controller: &str, work: F) -> Result<Action>
where
    F: std::future::Future<Output = Result<Action>>,
{
    let start = Instant::now();
    metrics.reconciles.with_label_values(&[controller]).inc();
    let result = work.await;
    metrics.duration.with_label_values(&[controller]).observe(start.elapsed().as_secs_f64());
    if let Err(e) = &result {
        metrics.errors.with_label_values(&[controller, e.reason()]).inc();
    }
    result
}

/// Failed reconciles are retried soon; the error was counted and logged.
pub fn error_policy<K>(_obj: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Everything the group reconcile needs to know about one pool of workers.
struct Group<'a> {
    /// `kind/namespace/name` of the owner, for the metrics and the history.
    key: String,
    namespace: &'a str,
    cluster: &'a str,
    group: &'a str,
    image: &'a str,
    worker: &'a WorkerSpec,
    replicas: u32,
    owner: OwnerReference,
    scheduler_address: String,
    scheduler_url: SchedulerUrl,
}

/// What happened to a group in one reconcile.
#[derive(Debug, Default)]
struct GroupOutcome {
    counts: GroupCounts,
    rolling: bool,
    /// Workers that must leave but could not, and why.
    blocked: Option<String>,
    /// Something is still moving: requeue soon.
    busy: bool,
    /// The API server refused a worker pod: its reason (`Forbidden`,
    /// `Invalid`...) and message.
    create_failed: Option<(String, String)>,
    /// Worker pods exit with failure: why, and how long until the next
    /// replacement.
    failing: Option<(String, Duration)>,
}

fn observe(pod: &Pod) -> ObservedPod {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let labels = pod.metadata.labels.as_ref();
    ObservedPod {
        name: pod.name_any(),
        revision: labels.and_then(|l| l.get(resources::LABEL_REVISION)).cloned().unwrap_or_default(),
        phase: PodPhase::parse(status.and_then(|s| s.phase.as_deref())),
        ready,
        retiring: pod.annotations().contains_key(ANNOTATION_RETIRING),
        terminating: pod.metadata.deletion_timestamp.is_some(),
    }
}

/// Drops what no reconcile reads from a cached child: its managedFields.
pub fn trim_meta<K: Resource>(child: &mut K) {
    child.meta_mut().managed_fields = None;
}

/// Drops what no reconcile reads from a cached worker pod: all but its
/// metadata, phase and conditions (what [`observe`] looks at). Most of a
/// pod's size is its spec, and the cache holds every worker.
pub fn trim_pod(pod: &mut Pod) {
    trim_meta(pod);
    pod.spec = None;
    if let Some(status) = pod.status.take() {
        // A failed pod's container termination says why a worker ended
        // (exit code, reason, message): only that part is kept, only for
        // ended pods.
        let ended = status.phase.as_deref() == Some("Failed");
        let container_statuses = status.container_statuses.filter(|_| ended).map(|cs| {
            cs.into_iter()
                .filter_map(|c| {
                    let terminated = c.state.and_then(|s| s.terminated)?;
                    Some(k8s_openapi::api::core::v1::ContainerStatus {
                        name: c.name,
                        state: Some(k8s_openapi::api::core::v1::ContainerState {
                            terminated: Some(terminated),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                })
                .collect()
        });
        pod.status = Some(PodStatus {
            phase: status.phase,
            conditions: status.conditions,
            container_statuses,
            reason: status.reason.filter(|_| ended),
            message: status.message.filter(|_| ended),
            ..PodStatus::default()
        });
    }
}

/// Reconciles one worker group: create the missing pods, and remove the
/// leaving ones the safe way.
async fn reconcile_group<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    owner_obj: &K,
    g: &Group<'_>,
) -> Result<GroupOutcome> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), g.namespace);
    // From the watch cache: a pod it does not show yet (just created) is
    // created again and refused (409), one it still shows after deletion is
    // deleted again (404); the watch event of either triggers another pass.
    let observed: Vec<ObservedPod> =
        ctx.group_pods(g.namespace, g.cluster, g.group, &g.owner.uid).iter().map(|p| observe(p)).collect();
    let template = resources::worker_template(g.cluster, g.group, g.image, g.worker, &g.scheduler_address);
    let revision = resources::revision(&template);
    let target = GroupTarget {
        name_prefix: resources::worker_prefix(g.cluster, g.group),
        replicas: g.replicas,
        revision: revision.clone(),
        max_surge: u32::try_from(g.worker.max_surge.max(1)).unwrap_or(1),
    };
    let held = ctx.names_held_by_others(g.namespace, &target.name_prefix, &g.owner.uid);
    let mut plan = plan::plan_workers(&target, &observed, &held);
    // Failed workers: their replacements wait out a backoff (the failed pods
    // stay meanwhile, so `kubectl logs` still shows why they ended).
    let cached = ctx.group_pods(g.namespace, g.cluster, g.group, &g.owner.uid);
    let failed: Vec<&Arc<Pod>> = cached
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && observe(p).phase == PodPhase::Failed)
        .collect();
    let failed_names: Vec<String> = failed.iter().map(|p| p.name_any()).collect();
    // Counted by UID: a replacement reuses the lowest free name.
    let failed_uids: Vec<String> =
        failed.iter().map(|p| p.metadata.uid.clone().unwrap_or_else(|| p.name_any())).collect();
    let all_ready = plan.counts.ready >= g.replicas && plan.create.is_empty();
    let (hold, counted) = ctx.crash_hold(&g.key, &failed_uids, all_ready);
    let failing = failed.first().map(|p| format!("worker pod {} ended: {}", p.name_any(), exit_reason(p)));
    if let (Some(wait), Some(why)) = (hold, failing.as_ref()) {
        let message = format!("{why}; {} failed, next replacement in {} s", failed.len(), wait.as_secs().max(1));
        if counted {
            warn!(group = %g.key, %message, "workers are failing");
            ctx.event(owner_obj, EventType::Warning, "WorkersFailing", message.clone()).await;
        }
        plan.create.clear();
        plan.leaving.retain(|p| !failed_names.contains(&p.name));
    }
    let mut outcome = GroupOutcome {
        // The pods created below count: the status need not be written
        // again when their watch events arrive.
        counts: plan.counts_after_creation(),
        rolling: plan.rolling,
        busy: plan.rolling || !plan.create.is_empty() || !plan.leaving.is_empty(),
        blocked: None,
        create_failed: None,
        failing: failing.map(|why| (why, hold.unwrap_or_default())),
    };

    // Creations are independent: issue them together. A refusal (quota,
    // admission, a name held elsewhere) does not stop the reconcile: the
    // status and an Event say why, and the retry backs off.
    let creations = plan.create.iter().map(|name| {
        let pod = resources::worker_pod(&template, name, &revision, g.owner.clone());
        let pods = pods.clone();
        async move { (name, ignore_status(pods.create(&PostParams::default(), &pod).await.map(|_| ()), 409)) }
    });
    let mut refused = Vec::new();
    for (name, result) in futures::future::join_all(creations).await {
        match result {
            Ok(()) => {}
            Err(Error::Kube(kube::Error::Api(status))) => {
                let reason = Some(status.reason.as_str())
                    .filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric()))
                    .unwrap_or("FailedCreate")
                    .to_string();
                refused.push((name.clone(), reason, status.message.clone()));
            }
            Err(e) => return Err(e),
        }
    }
    let created = plan.create.len() - refused.len();
    if created > 0 {
        info!(group = %g.key, created, "created workers");
    }
    if let Some((name, reason, message)) = refused.first() {
        let failed = u32::try_from(refused.len()).unwrap_or(u32::MAX);
        outcome.counts.replicas = outcome.counts.replicas.saturating_sub(failed);
        outcome.counts.updated = outcome.counts.updated.saturating_sub(failed);
        let note = format!("The API server refused {} worker pod(s), {name} first: {reason}: {message}", refused.len());
        warn!(group = %g.key, %note, "creating workers failed");
        ctx.event(owner_obj, EventType::Warning, "FailedCreate", note.clone()).await;
        outcome.create_failed = Some((reason.clone(), note));
    }
    if plan.leaving.is_empty() {
        return Ok(outcome);
    }

    let view = if plan::needs_scheduler(&plan.leaving) {
        Some(match ctx.scheduler.workers(&g.scheduler_url).await {
            Ok(workers) => SchedulerView::Reachable { workers },
            Err(e) => SchedulerView::Unreachable { reason: e.to_string() },
        })
    } else {
        None
    };
    let removals = plan::route_removals(&plan.leaving, view.as_ref());
    for name in &removals.delete {
        ignore_status(pods.delete(name, &DeleteParams::default()).await.map(|_| ()), 404)?;
        ctx.metrics.workers_retired.with_label_values(&["deleted"]).inc();
    }
    let (ended, idle): (Vec<&String>, Vec<&String>) = removals.delete.iter().partition(|n| failed_names.contains(n));
    if !ended.is_empty() {
        let names: Vec<&str> = ended.iter().map(|n| n.as_str()).collect();
        let message = format!("Replacing failed worker pods: {}", names.join(", "));
        ctx.event(owner_obj, EventType::Warning, "WorkersReplaced", message).await;
    }
    if !idle.is_empty() {
        let names: Vec<&str> = idle.iter().map(|n| n.as_str()).collect();
        let message = format!("Deleted worker pods that held no data: {}", names.join(", "));
        ctx.event(owner_obj, EventType::Normal, "WorkersDeleted", message).await;
    }
    if !removals.retire.is_empty() {
        // Mark first: after a crash the next reconcile finishes the job.
        for name in &removals.retire {
            let patch = json!({"metadata": {"annotations": {ANNOTATION_RETIRING: "true"}}});
            ignore_status(pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()), 404)?;
        }
        match ctx.scheduler.retire(&g.scheduler_url, &removals.retire, ctx.config.retire_timeout).await {
            Ok(()) => {
                for name in &removals.retire {
                    ignore_status(pods.delete(name, &DeleteParams::default()).await.map(|_| ()), 404)?;
                    ctx.metrics.workers_retired.with_label_values(&["retired"]).inc();
                }
                info!(group = %g.key, retired = ?removals.retire, "retired workers through the scheduler");
                ctx.event(
                    owner_obj,
                    EventType::Normal,
                    "WorkersRetired",
                    format!("The scheduler retired {} and their pods were deleted", removals.retire.join(", ")),
                )
                .await;
            }
            Err(e) => {
                outcome.blocked = Some(format!("retiring {} failed: {e}", removals.retire.join(", ")));
            }
        }
    }
    if !removals.blocked.is_empty() {
        let reason = match &view {
            Some(SchedulerView::Unreachable { reason }) => reason.clone(),
            _ => "the scheduler was not asked".into(),
        };
        outcome.blocked =
            Some(format!("not removing {} until the scheduler can retire them: {reason}", removals.blocked.join(", ")));
    }
    if let Some(message) = &outcome.blocked {
        warn!(group = %g.key, %message, "scale-down blocked");
        ctx.event(owner_obj, EventType::Warning, "ScaleDownBlocked", message.clone()).await;
    }
    Ok(outcome)
}

/// One autoscaling decision for a group: the scheduler's adaptive target
/// in, [`autoscale::decide`], the decision recorded as an Event (every
/// change, and each new reason to hold) and in the status. `ready` comes
/// from the group's last status, so this costs one request to the
/// scheduler and none to the API server.
#[allow(clippy::too_many_arguments)] // The observations of one group, each needed once.
async fn autoscale<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    key: &str,
    url: &SchedulerUrl,
    group: &str,
    spec: &AutoscalingSpec,
    replicas: u32,
    ready: u32,
    previous: Option<&AutoscalingStatus>,
) -> (Decision, AutoscalingStatus) {
    let demand = match ctx.scheduler.adaptive_target(url).await {
        Ok(target) => Some(target.demand_for(group)),
        Err(e) => {
            warn!(group = %key, error = %e, "reading the adaptive target failed");
            None
        }
    };
    let observation = Observation { now: Instant::now(), replicas, starting: replicas.saturating_sub(ready), demand };
    let policy = Policy::from_spec(spec);
    let (decision, publish, last_change) = {
        let mut all = ctx.autoscalers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = all.entry(key.to_string()).or_default();
        let decision = autoscale::decide(&policy, &observation, &mut state.history);
        if decision.direction != Direction::Hold {
            state.last_change = Some((decision.kind, decision.reason.clone(), now()));
        }
        let last_change = state.last_change.clone();
        let publish = match decision.direction {
            Direction::Up | Direction::Down => {
                state.last_hold = None;
                true
            }
            Direction::Hold if decision.kind == "AtTarget" => {
                state.last_hold = None;
                false
            }
            Direction::Hold => state.last_hold.replace(decision.kind) != Some(decision.kind),
        };
        (decision, publish, last_change)
    };
    match decision.direction {
        Direction::Up => ctx.metrics.scaling_decisions.with_label_values(&["up"]).inc(),
        Direction::Down => ctx.metrics.scaling_decisions.with_label_values(&["down"]).inc(),
        Direction::Hold => {}
    }
    if publish {
        info!(group = %key, kind = decision.kind, replicas = decision.replicas, reason = %decision.reason, "autoscaler");
        let type_ = if decision.kind == "SchedulerUnavailable" { EventType::Warning } else { EventType::Normal };
        ctx.event(obj, type_, decision.kind, decision.reason.clone()).await;
    }
    let mut status = previous.cloned().unwrap_or_default();
    status.desired_replicas = i32::try_from(decision.replicas).unwrap_or(i32::MAX);
    status.holding =
        (decision.direction == Direction::Hold && decision.kind != "AtTarget").then(|| decision.kind.to_string());
    if let Some((kind, reason, time)) = last_change {
        status.last_decision = Some(kind.to_string());
        status.reason = Some(reason);
        status.last_scale_time = Some(time);
    }
    (decision, status)
}

fn replicas_of(worker: &WorkerSpec) -> u32 {
    u32::try_from(worker.replicas).unwrap_or(0)
}

/// The DaskCluster reconciler.
#[instrument(skip(dc, ctx), fields(namespace = dc.namespace().unwrap_or_default(), name = dc.name_any()))]
pub async fn reconcile_cluster(dc: Arc<DaskCluster>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(&ctx.metrics, "daskcluster", reconcile_cluster_inner(&dc, &ctx)).await
}

async fn reconcile_cluster_inner(dc: &DaskCluster, ctx: &Context) -> Result<Action> {
    let name = dc.name_any();
    let ns = namespace_of(dc)?;
    let key = format!("DaskCluster/{ns}/{name}");
    if dc.metadata.deletion_timestamp.is_some() {
        // Children go by garbage collection through their ownerReferences.
        ctx.metrics.set_group(&key, None);
        ctx.forget(&key, &ns, Some(&name));
        return Ok(Action::await_change());
    }
    let owner = owner_of(dc)?;
    let spec = &dc.spec;

    let deployment = resources::scheduler_deployment(&name, spec, owner.clone());
    let service = resources::scheduler_service(&name, spec, owner.clone());
    let child_name = resources::scheduler_name(&name);
    let applied = futures::future::try_join(
        ctx.apply_child(&ctx.caches.deployments, &ns, &child_name, &deployment),
        ctx.apply_child(&ctx.caches.services, &ns, &child_name, &service),
    )
    .await;
    let deployment = match applied {
        Ok((deployment, _)) => {
            ctx.create_backoff(&format!("{key}/scheduler"), false);
            deployment
        }
        Err(e) => return report_scheduler_failure(dc, &key, e, ctx).await,
    };
    let scheduler_ready = deployment
        .status
        .as_ref()
        .is_some_and(|s| s.available_replicas.unwrap_or(0) >= 1 || s.ready_replicas.unwrap_or(0) >= 1);

    let scheduler_address = resources::scheduler_address(&name, &ns, spec.scheduler.port);
    let scheduler_url = resources::scheduler_api_url(
        &name,
        &ns,
        spec,
        dc.annotations()
            .get(ANNOTATION_SCHEDULER_URL)
            .map(String::as_str)
            .filter(|_| ctx.config.scheduler_url_annotation),
        ctx.scheduler.scheme(),
    );
    let mut replicas = replicas_of(&spec.worker);
    // The status the server has: ours if the cache has not caught up yet.
    let version = dc.metadata.resource_version.clone();
    let written = ctx.cluster_status.get(&key);
    if written.as_ref().is_some_and(|w| w.before != version) {
        ctx.cluster_status.remove(&key);
    }
    let last = cache::known(written.as_ref(), version.as_deref(), dc.status.as_ref());
    let mut autoscaling_status = last.and_then(|s| s.autoscaling.clone()).filter(|_| spec.autoscaling.is_some());
    if let (Some(auto), true) = (&spec.autoscaling, scheduler_ready) {
        let ready = last.map_or(0, |s| u32::try_from(s.ready_replicas).unwrap_or(0));
        let previous = last.and_then(|s| s.autoscaling.as_ref());
        let (decision, status) =
            autoscale(ctx, dc, &key, &scheduler_url, DEFAULT_GROUP, auto, replicas, ready, previous).await;
        if decision.replicas != replicas {
            let api: Api<DaskCluster> = Api::namespaced(ctx.client.clone(), &ns);
            let patch = json!({"spec": {"replicas": decision.replicas}});
            api.patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            replicas = decision.replicas;
        }
        autoscaling_status = Some(status);
    }

    if let (Some(timeout), true) = (spec.idle_timeout_seconds, scheduler_ready)
        && let Ok(Some(since)) = ctx.scheduler.idle_since(&scheduler_url).await
    {
        let now_s = k8s_openapi::jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        if now_s - since >= timeout as f64 {
            ctx.event(dc, EventType::Normal, "IdleTimeout", format!("Idle for {timeout} s: deleting the cluster"))
                .await;
            let api: Api<DaskCluster> = Api::namespaced(ctx.client.clone(), &ns);
            ignore_status(api.delete(&name, &DeleteParams::default()).await.map(|_| ()), 404)?;
            return Ok(Action::await_change());
        }
    }

    let group = Group {
        key: key.clone(),
        namespace: &ns,
        cluster: &name,
        group: DEFAULT_GROUP,
        image: &spec.image,
        worker: &spec.worker,
        replicas,
        owner,
        scheduler_address: scheduler_address.clone(),
        scheduler_url,
    };
    let outcome = reconcile_group(ctx, dc, &group).await?;

    let previous = last.cloned().unwrap_or_default();
    let generation = dc.metadata.generation;
    let t = now();
    let counts = outcome.counts;
    let mut conditions = vec![
        plan::condition(
            &previous.conditions,
            "SchedulerReady",
            scheduler_ready,
            if scheduler_ready { "DeploymentAvailable" } else { "DeploymentUnavailable" },
            if scheduler_ready { "The scheduler pod is available" } else { "Waiting for the scheduler pod" },
            generation,
            &t,
        ),
        plan::condition(
            &previous.conditions,
            "WorkersReady",
            counts.ready >= replicas && counts.replicas == replicas,
            if counts.ready >= replicas { "AllReady" } else { "Waiting" },
            format!("{}/{} workers ready", counts.ready, replicas),
            generation,
            &t,
        ),
        plan::condition(
            &previous.conditions,
            "WorkersUpToDate",
            !outcome.rolling,
            if outcome.rolling { "RollingOut" } else { "Current" },
            format!("{}/{} workers run the current spec", counts.updated, counts.replicas),
            generation,
            &t,
        ),
    ];
    conditions.push(plan::condition(
        &previous.conditions,
        "ScaleDownBlocked",
        outcome.blocked.is_some(),
        if outcome.blocked.is_some() { "SchedulerUnreachable" } else { "None" },
        outcome.blocked.clone().unwrap_or_else(|| "Nothing waits for the scheduler".into()),
        generation,
        &t,
    ));
    conditions.push(failing_condition(&previous.conditions, &outcome, generation, &t));
    conditions.push(ready_condition(
        &previous.conditions,
        &outcome,
        scheduler_ready,
        counts.ready >= replicas && counts.replicas == replicas,
        generation,
        &t,
    ));
    let phase = plan::cluster_phase(scheduler_ready, replicas, counts, outcome.rolling);
    let status = DaskClusterStatus {
        phase: Some(phase.into()),
        conditions,
        replicas: i32::try_from(counts.replicas).unwrap_or(i32::MAX),
        ready_replicas: i32::try_from(counts.ready).unwrap_or(i32::MAX),
        updated_replicas: i32::try_from(counts.updated).unwrap_or(i32::MAX),
        selector: Some(resources::worker_selector(&name, DEFAULT_GROUP)),
        scheduler_address: Some(scheduler_address),
        dashboard_address: Some(resources::dashboard_address(&name, &ns, spec.scheduler.dashboard_port)),
        observed_generation: generation,
        autoscaling: autoscaling_status,
    };
    if previous.phase.as_deref() != Some(phase) {
        ctx.event(dc, EventType::Normal, "PhaseChanged", format!("Phase is now {phase}")).await;
    }
    // Conditions keep their transition times, so an unchanged status
    // compares equal: skip the write (one request fewer per quiet reconcile).
    if last != Some(&status) {
        let api: Api<DaskCluster> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({"apiVersion": "rask.dev/v1alpha1", "kind": "DaskCluster", "status": status});
        api.patch_status(&name, &apply_params(), &Patch::Apply(&patch)).await?;
        ctx.cluster_status.insert(key.clone(), Written { before: version, status });
    }
    ctx.metrics.set_group(&key, Some((phase, i64::from(replicas), i64::from(counts.replicas))));

    if let Some(backoff) = ctx.create_backoff(&key, outcome.create_failed.is_some()) {
        return Ok(Action::requeue(backoff));
    }
    if let Some((_, wait)) = outcome.failing.as_ref().filter(|(_, w)| !w.is_zero()) {
        return Ok(Action::requeue(*wait + Duration::from_millis(100)));
    }
    Ok(if spec.autoscaling.is_some() || spec.idle_timeout_seconds.is_some() {
        Action::requeue(ctx.config.poll_interval)
    } else if outcome.busy || outcome.blocked.is_some() {
        Action::requeue(ctx.config.busy_interval)
    } else {
        Action::requeue(ctx.config.idle_interval)
    })
}

/// The DaskWorkerGroup reconciler.
#[instrument(skip(wg, ctx), fields(namespace = wg.namespace().unwrap_or_default(), name = wg.name_any()))]
pub async fn reconcile_worker_group(wg: Arc<DaskWorkerGroup>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(&ctx.metrics, "daskworkergroup", reconcile_worker_group_inner(&wg, &ctx)).await
}

async fn reconcile_worker_group_inner(wg: &DaskWorkerGroup, ctx: &Context) -> Result<Action> {
    let name = wg.name_any();
    let ns = namespace_of(wg)?;
    let key = format!("DaskWorkerGroup/{ns}/{name}");
    if name == DEFAULT_GROUP {
        // The CRD refuses this name; a group made before that rule would
        // share the cluster's own pool's workers on the scheduler.
        let message = format!("a DaskWorkerGroup may not be named {DEFAULT_GROUP:?}: it names each cluster's own pool");
        ctx.event(wg, EventType::Warning, "ReservedName", message).await;
        return Ok(Action::await_change());
    }
    if wg.metadata.deletion_timestamp.is_some() {
        ctx.metrics.set_group(&key, None);
        ctx.forget(&key, &ns, None);
        return Ok(Action::await_change());
    }
    let clusters: Api<DaskCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let groups: Api<DaskWorkerGroup> = Api::namespaced(ctx.client.clone(), &ns);
    // The status the server has: ours if the cache has not caught up yet.
    let version = wg.metadata.resource_version.clone();
    let written = ctx.group_status.get(&key);
    if written.as_ref().is_some_and(|w| w.before != version) {
        ctx.group_status.remove(&key);
    }
    let last = cache::known(written.as_ref(), version.as_deref(), wg.status.as_ref());
    let previous = last.cloned().unwrap_or_default();
    let generation = wg.metadata.generation;
    let t = now();
    let Some(dc) = clusters.get_opt(&wg.spec.cluster).await? else {
        let condition = plan::condition(
            &previous.conditions,
            "ClusterFound",
            false,
            "ClusterNotFound",
            format!("DaskCluster {} does not exist in namespace {ns}", wg.spec.cluster),
            generation,
            &t,
        );
        let status = DaskWorkerGroupStatus { conditions: vec![condition], observed_generation: generation, ..previous };
        if last != Some(&status) {
            let patch = json!({"apiVersion": "rask.dev/v1alpha1", "kind": "DaskWorkerGroup", "status": status});
            groups.patch_status(&name, &apply_params(), &Patch::Apply(&patch)).await?;
            ctx.group_status.insert(key.clone(), Written { before: version, status });
        }
        // The cluster's watch event wakes the group when it appears; the
        // requeue is only a fallback.
        ctx.wait_for_cluster(&ns, &wg.spec.cluster, &name);
        return Ok(Action::requeue(Duration::from_secs(300)));
    };

    // The group belongs to its cluster too: deleting the cluster removes it.
    let cluster_ref = owner_of(&dc)?;
    let owners = wg.metadata.owner_references.clone().unwrap_or_default();
    if !owners.iter().any(|o| o.uid == cluster_ref.uid) {
        let mut owners = owners;
        owners.push(OwnerReference { controller: Some(false), ..cluster_ref });
        let patch = json!({"metadata": {"ownerReferences": owners}});
        groups.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }

    let owner = owner_of(wg)?;
    let scheduler_url = resources::scheduler_api_url(
        &dc.name_any(),
        &ns,
        &dc.spec,
        dc.annotations()
            .get(ANNOTATION_SCHEDULER_URL)
            .map(String::as_str)
            .filter(|_| ctx.config.scheduler_url_annotation),
        ctx.scheduler.scheme(),
    );
    let scheduler_ready = dc
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "SchedulerReady" && c.status == "True"));
    let mut replicas = replicas_of(&wg.spec.worker);
    let mut autoscaling_status = previous.autoscaling.clone().filter(|_| wg.spec.autoscaling.is_some());
    if let (Some(auto), true) = (&wg.spec.autoscaling, scheduler_ready) {
        let ready = u32::try_from(previous.ready_replicas).unwrap_or(0);
        let (decision, status) =
            autoscale(ctx, wg, &key, &scheduler_url, &name, auto, replicas, ready, previous.autoscaling.as_ref()).await;
        if decision.replicas != replicas {
            let patch = json!({"spec": {"replicas": decision.replicas}});
            groups.patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            replicas = decision.replicas;
        }
        autoscaling_status = Some(status);
    }
    let image = wg.spec.image.clone().unwrap_or_else(|| dc.spec.image.clone());
    let group = Group {
        key: key.clone(),
        namespace: &ns,
        cluster: &wg.spec.cluster,
        group: &name,
        image: &image,
        worker: &wg.spec.worker,
        replicas,
        owner,
        scheduler_address: resources::scheduler_address(&wg.spec.cluster, &ns, dc.spec.scheduler.port),
        scheduler_url,
    };
    let outcome = reconcile_group(ctx, wg, &group).await?;
    let counts = outcome.counts;
    let conditions: Vec<Condition> = vec![
        plan::condition(
            &previous.conditions,
            "ClusterFound",
            true,
            "ClusterFound",
            "The cluster exists",
            generation,
            &t,
        ),
        plan::condition(
            &previous.conditions,
            "WorkersReady",
            counts.ready >= replicas && counts.replicas == replicas,
            if counts.ready >= replicas { "AllReady" } else { "Waiting" },
            format!("{}/{} workers ready", counts.ready, replicas),
            generation,
            &t,
        ),
        plan::condition(
            &previous.conditions,
            "ScaleDownBlocked",
            outcome.blocked.is_some(),
            if outcome.blocked.is_some() { "SchedulerUnreachable" } else { "None" },
            outcome.blocked.clone().unwrap_or_else(|| "Nothing waits for the scheduler".into()),
            generation,
            &t,
        ),
        failing_condition(&previous.conditions, &outcome, generation, &t),
        ready_condition(
            &previous.conditions,
            &outcome,
            scheduler_ready,
            counts.ready >= replicas && counts.replicas == replicas,
            generation,
            &t,
        ),
    ];
    let status = DaskWorkerGroupStatus {
        conditions,
        replicas: i32::try_from(counts.replicas).unwrap_or(i32::MAX),
        ready_replicas: i32::try_from(counts.ready).unwrap_or(i32::MAX),
        updated_replicas: i32::try_from(counts.updated).unwrap_or(i32::MAX),
        selector: Some(resources::worker_selector(&wg.spec.cluster, &name)),
        observed_generation: generation,
        autoscaling: autoscaling_status,
    };
    if last != Some(&status) {
        let patch = json!({"apiVersion": "rask.dev/v1alpha1", "kind": "DaskWorkerGroup", "status": status});
        groups.patch_status(&name, &apply_params(), &Patch::Apply(&patch)).await?;
        ctx.group_status.insert(key.clone(), Written { before: version, status });
    }
    let phase = if outcome.rolling { "Updating" } else { "Running" };
    ctx.metrics.set_group(&key, Some((phase, i64::from(replicas), i64::from(counts.replicas))));
    if let Some(backoff) = ctx.create_backoff(&key, outcome.create_failed.is_some()) {
        return Ok(Action::requeue(backoff));
    }
    if let Some((_, wait)) = outcome.failing.as_ref().filter(|(_, w)| !w.is_zero()) {
        return Ok(Action::requeue(*wait + Duration::from_millis(100)));
    }
    Ok(if wg.spec.autoscaling.is_some() {
        Action::requeue(ctx.config.poll_interval)
    } else if outcome.busy || outcome.blocked.is_some() {
        Action::requeue(ctx.config.busy_interval)
    } else {
        Action::requeue(ctx.config.idle_interval)
    })
}

fn job_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The scheduler's Deployment or Service could not be applied (a name taken
/// by another owner, a quota, an admission webhook, an invalid field): a
/// Warning Event with the cause, `Ready=False` with the reason, and a retry
/// after a backoff that doubles per consecutive failure (5 s to 5 min).
async fn report_scheduler_failure(dc: &DaskCluster, key: &str, error: Error, ctx: &Context) -> Result<Action> {
    let reason = match &error {
        Error::NotOwned { .. } => "NameTaken".to_string(),
        Error::Kube(kube::Error::Api(status)) if !status.reason.is_empty() => status.reason.clone(),
        _ => "ApplyFailed".to_string(),
    };
    let message = format!("Could not apply the scheduler: {error}");
    warn!(%message, "reconcile failed");
    ctx.metrics.errors.with_label_values(&["daskcluster", error.reason()]).inc();
    ctx.event(dc, EventType::Warning, "FailedApply", message.clone()).await;
    let previous = dc.status.clone().unwrap_or_default();
    let t = now();
    let mut conditions: Vec<Condition> =
        previous.conditions.iter().filter(|c| c.type_ != "Ready" && c.type_ != "SchedulerReady").cloned().collect();
    conditions.push(plan::condition(
        &previous.conditions,
        "SchedulerReady",
        false,
        &reason,
        message.clone(),
        dc.metadata.generation,
        &t,
    ));
    conditions.push(plan::condition(
        &previous.conditions,
        "Ready",
        false,
        &reason,
        message,
        dc.metadata.generation,
        &t,
    ));
    let status = DaskClusterStatus {
        phase: Some(previous.phase.clone().unwrap_or_else(|| "Pending".into())),
        conditions,
        observed_generation: dc.metadata.generation,
        ..previous
    };
    let api: Api<DaskCluster> = Api::namespaced(ctx.client.clone(), &namespace_of(dc)?);
    let patch = json!({"apiVersion": "rask.dev/v1alpha1", "kind": "DaskCluster", "status": status});
    api.patch_status(&dc.name_any(), &apply_params(), &Patch::Apply(&patch)).await?;
    let backoff = ctx.create_backoff(&format!("{key}/scheduler"), true).unwrap_or(Duration::from_secs(5));
    Ok(Action::requeue(backoff))
}

/// The DaskJob reconciler.
#[instrument(skip(dj, ctx), fields(namespace = dj.namespace().unwrap_or_default(), name = dj.name_any()))]
pub async fn reconcile_job(dj: Arc<DaskJob>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(&ctx.metrics, "daskjob", reconcile_job_inner(&dj, &ctx)).await
}

async fn reconcile_job_inner(dj: &DaskJob, ctx: &Context) -> Result<Action> {
    let name = dj.name_any();
    let ns = namespace_of(dj)?;
    if dj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = dj.metadata.uid.clone().unwrap_or_default();
    let owner = owner_of(dj)?;
    let clusters: Api<DaskCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let daskjobs: Api<DaskJob> = Api::namespaced(ctx.client.clone(), &ns);
    let cluster_name = name.clone();
    let runner_name = resources::runner_name(&name, &uid);

    let cluster = clusters.get_opt(&cluster_name).await?;
    // A DaskCluster of the job's name that the job does not own is someone
    // else's: applying the job's spec over it would take it over (and
    // deleting it at the end would destroy it). Say so and touch nothing.
    if let Some(foreign) = cluster.as_ref().filter(|c| !c.owner_references().iter().any(|r| r.uid == uid)) {
        return report_foreign_cluster(dj, foreign, &daskjobs, ctx).await;
    }
    let runner = jobs.get_opt(&runner_name).await?;
    let observed = plan::JobObserved {
        cluster_exists: cluster.is_some(),
        scheduler_ready: cluster.as_ref().is_some_and(|c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "SchedulerReady" && c.status == "True"))
        }),
        runner_exists: runner.is_some(),
        runner_succeeded: runner.as_ref().is_some_and(|j| job_condition(j, "Complete")),
        runner_failed: runner.as_ref().is_some_and(|j| job_condition(j, "Failed")),
    };
    let previous = dj.status.clone().unwrap_or_default();
    let job_plan = plan::plan_job(previous.phase, observed);
    let scheduler_address = resources::scheduler_address(&cluster_name, &ns, dj.spec.cluster.scheduler.port);

    if job_plan.apply_cluster {
        let mut labels = resources::labels(&cluster_name, "cluster", None);
        labels.insert("rask.dev/job".into(), name.clone());
        let mut annotations = BTreeMap::new();
        // The scheduler-URL hook carries over to the job's cluster.
        if let Some(url) = dj.annotations().get(ANNOTATION_SCHEDULER_URL) {
            annotations.insert(ANNOTATION_SCHEDULER_URL.to_string(), url.clone());
        }
        let cluster = json!({
            "apiVersion": "rask.dev/v1alpha1",
            "kind": "DaskCluster",
            "metadata": {"name": cluster_name, "labels": labels, "annotations": annotations, "ownerReferences": [owner.clone()]},
            "spec": dj.spec.cluster,
        });
        clusters.patch(&cluster_name, &apply_params(), &Patch::Apply(&cluster)).await?;
    }
    if job_plan.create_runner {
        let job = resources::runner_job(dj, &runner_name, &cluster_name, &scheduler_address, owner.clone());
        ignore_status(jobs.create(&PostParams::default(), &job).await.map(|_| ()), 409)?;
        ctx.event(dj, EventType::Normal, "RunnerCreated", format!("Created Job {runner_name} to run the client")).await;
    }
    if job_plan.delete_cluster {
        ignore_status(clusters.delete(&cluster_name, &DeleteParams::background()).await.map(|_| ()), 404)?;
        ctx.event(
            dj,
            EventType::Normal,
            "ClusterDeleted",
            format!("The job {:?} ended: deleted its DaskCluster {cluster_name}", job_plan.phase),
        )
        .await;
    }

    let t = now();
    let start_time = previous.start_time.clone().or_else(|| (job_plan.phase == JobPhase::Running).then(|| t.clone()));
    let end_time = previous.end_time.clone().or_else(|| job_plan.phase.is_finished().then(|| t.clone()));
    let finished = job_plan.phase.is_finished();
    let conditions = vec![
        plan::condition(
            &previous.conditions,
            "ClusterReady",
            observed.scheduler_ready,
            if observed.scheduler_ready { "SchedulerReady" } else { "Waiting" },
            format!("DaskCluster {cluster_name}"),
            dj.metadata.generation,
            &t,
        ),
        plan::condition(
            &previous.conditions,
            "Finished",
            finished,
            match job_plan.phase {
                JobPhase::Succeeded => "Succeeded",
                JobPhase::Failed => "Failed",
                _ => "Running",
            },
            format!("Runner Job {runner_name}"),
            dj.metadata.generation,
            &t,
        ),
    ];
    if previous.phase != Some(job_plan.phase) {
        let type_ = if job_plan.phase == JobPhase::Failed { EventType::Warning } else { EventType::Normal };
        ctx.event(dj, type_, "PhaseChanged", format!("Phase is now {:?}", job_plan.phase)).await;
    }
    let status = DaskJobStatus {
        phase: Some(job_plan.phase),
        conditions,
        cluster_name: Some(cluster_name),
        job_name: Some(runner_name),
        start_time,
        end_time,
        observed_generation: dj.metadata.generation,
    };
    let patch = json!({"apiVersion": "rask.dev/v1alpha1", "kind": "DaskJob", "status": status});
    daskjobs.patch_status(&name, &apply_params(), &Patch::Apply(&patch)).await?;
    Ok(if finished { Action::await_change() } else { Action::requeue(ctx.config.idle_interval) })
}

/// The job's DaskCluster name is taken by a cluster the job does not own:
/// a Warning Event and `ClusterReady=False` (reason `ClusterNameTaken`);
/// the job waits (phase Pending) until the name is free.
async fn report_foreign_cluster(
    dj: &DaskJob,
    foreign: &DaskCluster,
    daskjobs: &Api<DaskJob>,
    ctx: &Context,
) -> Result<Action> {
    let name = dj.name_any();
    let owners: Vec<String> = foreign.owner_references().iter().map(|r| format!("{} {}", r.kind, r.name)).collect();
    let message = format!(
        "DaskCluster {name} already exists and is not this job's (owned by {}): the job will not take it over; \
         delete or rename one of them",
        if owners.is_empty() { "nobody".to_string() } else { owners.join(", ") }
    );
    let previous = dj.status.clone().unwrap_or_default();
    let already = previous.conditions.iter().any(|c| c.type_ == "ClusterReady" && c.reason == "ClusterNameTaken");
    if !already {
        ctx.event(dj, EventType::Warning, "ClusterNameTaken", message.clone()).await;
    }
    let t = now();
    let conditions = vec![plan::condition(
        &previous.conditions,
        "ClusterReady",
        false,
        "ClusterNameTaken",
        message,
        dj.metadata.generation,
        &t,
    )];
    let status = DaskJobStatus {
        phase: Some(previous.phase.unwrap_or(JobPhase::Pending)),
        conditions,
        cluster_name: None,
        job_name: previous.job_name,
        start_time: previous.start_time,
        end_time: previous.end_time,
        observed_generation: dj.metadata.generation,
    };
    let patch = json!({"apiVersion": "rask.dev/v1alpha1", "kind": "DaskJob", "status": status});
    daskjobs.patch_status(&name, &apply_params(), &Patch::Apply(&patch)).await?;
    Ok(Action::requeue(ctx.config.idle_interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trimmed_pod_is_observed_as_the_whole_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {
                "name": "c-default-worker-3",
                "labels": {resources::LABEL_REVISION: "abc", resources::LABEL_CLUSTER: "c"},
                "annotations": {ANNOTATION_RETIRING: "true"},
                "deletionTimestamp": "2026-11-26T00:00:00Z",
                "managedFields": [{"manager": "rask-operator", "operation": "Update"}],
            },
            "spec": {"containers": [{"name": "worker", "image": "x"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "worker", "image": "x", "imageID": "", "ready": true, "restartCount": 0}],
            },
        }))
        .expect("pod");
        let mut trimmed = pod.clone();
        trim_pod(&mut trimmed);
        assert_eq!(observe(&trimmed), observe(&pod));
        assert_eq!(
            observe(&pod),
            ObservedPod {
                name: "c-default-worker-3".into(),
                revision: "abc".into(),
                phase: PodPhase::Running,
                ready: true,
                retiring: true,
                terminating: true,
            }
        );
        assert!(trimmed.spec.is_none() && trimmed.metadata.managed_fields.is_none());
        assert_eq!(trimmed.labels(), pod.labels());
        let status = trimmed.status.expect("status");
        assert!(status.pod_ip.is_none() && status.container_statuses.is_none());
        // A failed pod keeps its container's termination (why it ended), and nothing else of it.
        let mut failed = pod.clone();
        let terminated = serde_json::json!([{"name": "worker", "image": "x", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "bad flag"}}}]);
        let st = failed.status.as_mut().expect("status");
        st.phase = Some("Failed".into());
        st.container_statuses = serde_json::from_value(terminated).expect("statuses");
        trim_pod(&mut failed);
        assert_eq!(exit_reason(&failed), "Error (exit code 3): bad flag");
        let kept = failed.status.expect("status").container_statuses.expect("kept");
        assert_eq!((kept.len(), kept[0].image.as_str()), (1, ""));
    }
}
