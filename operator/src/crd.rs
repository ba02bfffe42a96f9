//! The custom resources: DaskCluster, DaskWorkerGroup and DaskJob in group
//! `rask.dev`, version `v1alpha1`.
//!
//! The Rust types are the single source of the CRD YAML in `crds/` (written
//! by `rask crdgen`, checked by a test). Validation lives in the schema, so a
//! bad manifest is refused by the API server with the message written here:
//! defaults, printer columns, short names and CEL `x-kubernetes-validations`.
//! Pod templates embed the full Kubernetes schema, so anything in a PodSpec
//! can be overridden and a wrong type is refused on apply, not in the operator.

use k8s_openapi::api::core::v1::{PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// The API group of every rask resource.
pub const GROUP: &str = "rask.dev";
/// A DNS-1035 label, what a Service name must be (CEL, on
/// `self.metadata.name`; the 40-character bound is a rule of its own).
/// Names of children are built from the names of their owners, so a name
/// the API server would refuse for a child is refused on the owner.
pub const NAME_RULE: &str = "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";

// Quantities (`cpu: banana`) and requests above limits are not checked
// here: a CEL rule over `resources` maps (k8s-openapi types without
// maxProperties/maxLength) exceeds the API server's cost budget more than
// 100-fold, and the CRD is refused.
/// An image reference holds no whitespace.
const IMAGE_RULE: &str = "!self.matches('[[:space:]]')";
/// What `rask worker --memory-limit` parses: `auto`, a number (a fraction
/// of the machine up to 1), or a size with a unit (`4GiB`, `500MB`, `1e9`).
const MEMORY_LIMIT_RULE: &str =
    "self.matches('^(?i)(auto|([0-9]+[.]?[0-9]*|[.][0-9]+)(e[+-]?[0-9]+)?[[:space:]]*(b|[kmgt]b?|[kmgt]ib)?)$')";

/// The image used when neither `spec.image` nor a pod template names one.
pub const DEFAULT_IMAGE: &str = "ghcr.io/rask-dev/rask:0.1.0";
/// The scheduler's gRPC port (clients and workers).
pub const SCHEDULER_PORT: i32 = 8786;
/// The scheduler's HTTP port (dashboard, Dask-compatible API, metrics).
pub const DASHBOARD_PORT: i32 = 8787;

fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}
fn default_replicas() -> i32 {
    1
}
fn default_max_surge() -> i32 {
    1
}
fn default_python() -> bool {
    true
}
fn default_scheduler_port() -> i32 {
    SCHEDULER_PORT
}
fn default_dashboard_port() -> i32 {
    DASHBOARD_PORT
}
fn default_stabilization() -> i32 {
    60
}
fn default_scale_down_step() -> i32 {
    5
}
fn default_scale_down_cooldown() -> i32 {
    30
}
fn default_backoff_limit() -> i32 {
    2
}

/// How the scheduler's Service is exposed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The scheduler: one pod behind a Deployment (strategy Recreate: two
/// schedulers at once would split the workers) and a Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.port != self.dashboardPort").message("scheduler.port and scheduler.dashboardPort must differ: they are two ports of one container"))]
pub struct SchedulerSpec {
    /// Type of the scheduler's Service.
    #[serde(default)]
    pub service_type: ServiceType,
    /// gRPC port for clients and workers.
    #[serde(default = "default_scheduler_port")]
    #[x_kube(validation = kube::core::Rule::new("self > 0 && self < 65536").message("scheduler.port must be between 1 and 65535"))]
    pub port: i32,
    /// HTTP port: dashboard (/status), API (/api/v1), /metrics.
    #[serde(default = "default_dashboard_port")]
    #[x_kube(validation = kube::core::Rule::new("self > 0 && self < 65536").message("scheduler.dashboardPort must be between 1 and 65535"))]
    pub dashboard_port: i32,
    /// Resources of the scheduler container (unless the template sets them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A full pod template: anything in a PodSpec can be overridden. The
    /// container named `scheduler` (or the first) gets the command, ports and
    /// environment unless it sets them itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
}

impl Default for SchedulerSpec {
    fn default() -> Self {
        SchedulerSpec {
            service_type: ServiceType::default(),
            port: SCHEDULER_PORT,
            dashboard_port: DASHBOARD_PORT,
            resources: None,
            template: None,
        }
    }
}

/// One pool of workers: how many, how big, and their pod template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// Number of worker pods (the scale subresource's spec path).
    #[serde(default = "default_replicas")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("worker.replicas must be non-negative"))]
    // The operator manages each pod itself: 10,000 is far past any cluster
    // it was measured with, and 100,000,000 is a typo.
    #[x_kube(validation = kube::core::Rule::new("self <= 10000").message("worker.replicas must be at most 10000"))]
    pub replicas: i32,
    /// Threads per worker (`rask worker --nthreads`); default: the pod's cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self > 0").message("worker.nthreads must be positive"))]
    pub nthreads: Option<i32>,
    /// Memory per worker (`--memory-limit`), e.g. `4GiB`; default: the pod's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.size() > 0").message("worker.memoryLimit must not be empty"))]
    #[x_kube(validation = kube::core::Rule::new(MEMORY_LIMIT_RULE).message("worker.memoryLimit must be auto, a fraction of the machine such as 0.5, or a size such as 4GiB, 500MB or 1e9"))]
    #[schemars(length(max = 64))]
    pub memory_limit: Option<String>,
    /// Resources of the worker container (unless the template sets them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// How many extra workers a rollout may start before retiring old ones:
    /// the number of workers replaced at a time.
    #[serde(default = "default_max_surge")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("worker.maxSurge must be at least 1"))]
    pub max_surge: i32,
    /// Workers that host Python: started as `python -m rask worker`, they run
    /// Python functions (cloudpickled tasks from `import rask`) as well as
    /// every built-in op. rask's image contains Python and the wheel, so this
    /// is the default; `false` starts the plain `rask worker`, which the
    /// scheduler never sends a Python task. A template's own command wins.
    #[serde(default = "default_python")]
    pub python: bool,
    /// A full pod template (see the scheduler's); the container named
    /// `worker` (or the first) is the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
}

impl Default for WorkerSpec {
    fn default() -> Self {
        WorkerSpec {
            replicas: default_replicas(),
            nthreads: None,
            memory_limit: None,
            resources: None,
            max_surge: default_max_surge(),
            python: default_python(),
            template: None,
        }
    }
}

/// Adaptive scaling between bounds, driven by the scheduler's
/// `/api/v1/adaptive_target` (the group's own target from a rask scheduler):
/// up at once, down after the stabilization window, a step at a time, and
/// only through the scheduler's retire_workers. The rules are in
/// `operator/src/autoscale.rs`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.minimum <= self.maximum").message("autoscaling.minimum must be less than or equal to autoscaling.maximum"))]
pub struct AutoscalingSpec {
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("autoscaling.minimum must be non-negative"))]
    pub minimum: i32,
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("autoscaling.maximum must be non-negative"))]
    #[x_kube(validation = kube::core::Rule::new("self <= 10000").message("autoscaling.maximum must be at most 10000"))]
    pub maximum: i32,
    /// Seconds the target must stay lower before workers are retired.
    #[serde(default = "default_stabilization")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("autoscaling.scaleDownStabilizationSeconds must be non-negative"))]
    pub scale_down_stabilization_seconds: i32,
    /// Workers retired per scale-down decision at most (0: no limit).
    #[serde(default = "default_scale_down_step")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("autoscaling.scaleDownStep must be non-negative"))]
    pub scale_down_step: i32,
    /// Seconds after a scale-up before the next scale-up (0: at once).
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("autoscaling.scaleUpCooldownSeconds must be non-negative"))]
    pub scale_up_cooldown_seconds: i32,
    /// Seconds after any scaling before a scale-down.
    #[serde(default = "default_scale_down_cooldown")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("autoscaling.scaleDownCooldownSeconds must be non-negative"))]
    pub scale_down_cooldown_seconds: i32,
}

/// What the autoscaler last did for a group, and what holds it now.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// The replicas the autoscaler wants.
    #[serde(default)]
    pub desired_replicas: i32,
    /// The last change: ScaledUp or ScaledDown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
    /// Why the last change was made (queue depth, occupancy, memory, bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// What holds a change now, if anything: ScaleDownDeferred,
    /// ScaleUpCooldown, ScaleDownCooldown, WorkersStarting or
    /// SchedulerUnavailable (the Event of that name says more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holding: Option<String>,
}

/// A Dask cluster: a scheduler and a default pool of workers.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "rask.dev",
    version = "v1alpha1",
    kind = "DaskCluster",
    namespaced,
    shortname = "dc",
    category = "rask",
    status = "DaskClusterStatus",
    doc = "A Dask cluster: a scheduler (Deployment and Service) and a pool of worker pods",
    scale(
        spec_replicas_path = ".spec.worker.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas", description = "Ready workers"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.worker.replicas", description = "Desired workers"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Scheduler", type_ = "string", json_path = ".status.schedulerAddress"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::Rule::new("self.metadata.name.size() <= 40").message("metadata.name must be at most 40 characters: child names and labels are built from it"),
    validation = kube::core::Rule::new(NAME_RULE).message("metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, ending with a letter or digit): the scheduler's Service is named <name>-scheduler")
)]
#[serde(rename_all = "camelCase")]
pub struct DaskClusterSpec {
    /// Image of the scheduler and workers (unless a pod template names one).
    #[serde(default = "default_image")]
    #[x_kube(validation = kube::core::Rule::new("self.size() > 0").message("image must not be empty"))]
    #[x_kube(validation = kube::core::Rule::new(IMAGE_RULE).message("image must not contain whitespace"))]
    #[schemars(length(max = 1024))]
    pub image: String,
    #[serde(default)]
    pub scheduler: SchedulerSpec,
    #[serde(default)]
    pub worker: WorkerSpec,
    /// When set, the operator drives `worker.replicas` from the scheduler's
    /// adaptive target, within these bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Delete the cluster after the scheduler has been idle this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self > 0").message("idleTimeoutSeconds must be positive"))]
    pub idle_timeout_seconds: Option<i64>,
}

/// Observed state of a DaskCluster, written by the operator with server-side
/// apply under one field manager.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaskClusterStatus {
    /// Pending, Running, Scaling or Updating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Worker pods of the default group (not retiring).
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// Workers running the current spec.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Label selector of the default group's workers (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The default group's autoscaler, when `spec.autoscaling` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
}

/// An extra pool of workers for an existing DaskCluster, such as
/// high-memory workers, with its own replicas and autoscaling.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "rask.dev",
    version = "v1alpha1",
    kind = "DaskWorkerGroup",
    namespaced,
    shortname = "dwg",
    category = "rask",
    status = "DaskWorkerGroupStatus",
    doc = "An extra pool of workers for an existing DaskCluster",
    scale(
        spec_replicas_path = ".spec.worker.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.worker.replicas"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::Rule::new("self.metadata.name.size() <= 40").message("metadata.name must be at most 40 characters: child names and labels are built from it"),
    validation = kube::core::Rule::new(NAME_RULE).message("metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, ending with a letter or digit): worker pods and labels are named after it"),
    validation = kube::core::Rule::new("self.metadata.name != 'default'").message("metadata.name 'default' is reserved: it names a DaskCluster's own worker pool")
)]
#[serde(rename_all = "camelCase")]
pub struct DaskWorkerGroupSpec {
    /// Name of the DaskCluster (same namespace) these workers join.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("cluster is immutable"))]
    #[x_kube(validation = kube::core::Rule::new("self.size() > 0").message("cluster must not be empty"))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("cluster must be a DaskCluster's name: a DNS-1035 label"))]
    #[schemars(length(max = 40))]
    pub cluster: String,
    /// Image of the workers; default: the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.size() > 0").message("image must not be empty"))]
    #[x_kube(validation = kube::core::Rule::new(IMAGE_RULE).message("image must not contain whitespace"))]
    #[schemars(length(max = 1024))]
    pub image: Option<String>,
    #[serde(default)]
    pub worker: WorkerSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaskWorkerGroupStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub updated_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The group's autoscaler, when `spec.autoscaling` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
}

/// The client program of a DaskJob, run as a Kubernetes Job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRunnerSpec {
    /// The client pod; its containers get the scheduler address in
    /// `RASK_SCHEDULER_ADDRESS` and `DASK_SCHEDULER_ADDRESS`.
    pub template: PodTemplateSpec,
}

/// A client program run against a cluster made for it; the cluster is torn
/// down when the program ends.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "rask.dev",
    version = "v1alpha1",
    kind = "DaskJob",
    namespaced,
    shortname = "dj",
    category = "rask",
    status = "DaskJobStatus",
    doc = "A client program run as a Kubernetes Job against a DaskCluster made for it",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".status.clusterName"),
    printcolumn(name = "Started", type_ = "date", json_path = ".status.startTime"),
    printcolumn(name = "Ended", type_ = "date", json_path = ".status.endTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::Rule::new("self.metadata.name.size() <= 40").message("metadata.name must be at most 40 characters: child names and labels are built from it"),
    validation = kube::core::Rule::new(NAME_RULE).message("metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, ending with a letter or digit): the job's DaskCluster and its Service are named after it")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("a DaskJob's spec is immutable: create a new DaskJob"))]
pub struct DaskJobSpec {
    pub job: JobRunnerSpec,
    /// The cluster created for this job.
    #[serde(default)]
    pub cluster: DaskClusterSpec,
    /// Retries of the client pod before the job fails.
    #[serde(default = "default_backoff_limit")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("backoffLimit must be non-negative"))]
    pub backoff_limit: i32,
    /// Seconds the runner may take in all before it is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self > 0").message("activeDeadlineSeconds must be positive"))]
    pub active_deadline_seconds: Option<i64>,
    /// Seconds after the runner ends before Kubernetes deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("ttlSecondsAfterFinished must be non-negative"))]
    pub ttl_seconds_after_finished: Option<i32>,
}

impl Default for DaskClusterSpec {
    fn default() -> Self {
        DaskClusterSpec {
            image: default_image(),
            scheduler: SchedulerSpec::default(),
            worker: WorkerSpec::default(),
            autoscaling: None,
            idle_timeout_seconds: None,
        }
    }
}

/// The phases of a DaskJob.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum JobPhase {
    Pending,
    ClusterReady,
    Running,
    Succeeded,
    Failed,
}

impl JobPhase {
    pub fn is_finished(self) -> bool {
        matches!(self, JobPhase::Succeeded | JobPhase::Failed)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaskJobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Name of the runner Job (unique per DaskJob: it carries the DaskJob's uid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Removes the descriptions inside embedded pod templates. They are the
/// Kubernetes API's own documentation, repeated for every template, and
/// would make the CRDs several megabytes (past etcd's object size); our own
/// fields keep theirs. controller-gen's `maxDescLen=0`, for the templates only.
fn strip_template_descriptions(value: &mut serde_json::Value, inside_template: bool) {
    match value {
        serde_json::Value::Object(map) => {
            if inside_template {
                map.remove("description");
            }
            for (key, child) in map.iter_mut() {
                let entering = key == "template" && child.get("properties").is_some();
                strip_template_descriptions(child, inside_template || entering);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                strip_template_descriptions(item, inside_template);
            }
        }
        _ => {}
    }
}

/// The CRDs as JSON values, ready to install.
pub fn crds() -> crate::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for crd in [DaskCluster::crd(), DaskWorkerGroup::crd(), DaskJob::crd()] {
        let mut value = serde_json::to_value(&crd)?;
        strip_template_descriptions(&mut value, false);
        out.push(value);
    }
    Ok(out)
}

/// The CRDs as (file name, YAML), in a fixed order: what `rask crdgen` writes.
pub fn crd_files() -> crate::Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    let files = ["daskcluster.yaml", "daskworkergroup.yaml", "daskjob.yaml"];
    for (file, crd) in files.into_iter().zip(crds()?) {
        let yaml = serde_yaml::to_string(&crd)?;
        out.push((file, format!("# Generated by `rask crdgen` from operator/src/crd.rs; do not edit.\n{yaml}")));
    }
    Ok(out)
}

/// Writes the CRDs into `dir` (created if missing); returns the paths written.
pub fn write_crds(dir: &std::path::Path) -> crate::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (file, yaml) in crd_files()? {
        let path = dir.join(file);
        std::fs::write(&path, yaml)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_manifest_gets_the_defaults() {
        let spec: DaskClusterSpec = serde_json::from_value(serde_json::json!({})).expect("empty spec");
        assert_eq!(spec.image, DEFAULT_IMAGE);
        assert_eq!(spec.worker.replicas, 1);
        assert_eq!(spec.scheduler.port, 8786);
        assert_eq!(spec.scheduler.dashboard_port, 8787);
        assert_eq!(spec, DaskClusterSpec::default());
    }

    #[test]
    fn the_crds_carry_the_cel_rules_scale_and_short_names() {
        let crd = serde_json::to_string(&DaskCluster::crd()).expect("json");
        for needle in [
            "autoscaling.minimum must be less than or equal to autoscaling.maximum",
            "worker.replicas must be non-negative",
            "image must not be empty",
            "\"specReplicasPath\":\".spec.worker.replicas\"",
            "\"shortNames\":[\"dc\"]",
        ] {
            assert!(crd.contains(needle), "DaskCluster CRD lacks {needle}");
        }
        let crd = serde_json::to_string(&DaskWorkerGroup::crd()).expect("json");
        assert!(crd.contains("cluster is immutable"));
        let crd = serde_json::to_string(&DaskJob::crd()).expect("json");
        assert!(crd.contains("a DaskJob's spec is immutable"));
    }

    /// `rask crdgen` output is checked in; this fails when it is stale.
    #[test]
    fn checked_in_crds_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
        for (file, yaml) in crd_files().expect("crds") {
            let path = dir.join(file);
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(on_disk == yaml, "{} is stale: run `cargo run -p rask-cli -- crdgen`", path.display());
        }
    }
}
