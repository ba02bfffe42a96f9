//! The child objects a spec asks for, built as plain values: the scheduler's
//! Deployment and Service, worker pods, the runner Job and a DaskJob's
//! cluster. Pure functions, so the exact children (labels, environment,
//! ownerReferences, security context) are checked without a cluster.
//!
//! A user's pod template is the base; the operator fills in what it leaves
//! out (image, command, environment, ports, probes, security context) and
//! always sets its own labels and the scheduler address.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, Pod, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::{DaskClusterSpec, DaskJob, WorkerSpec};
use crate::scheduler_api::SchedulerUrl;

pub const LABEL_CLUSTER: &str = "rask.dev/cluster";
pub const LABEL_COMPONENT: &str = "rask.dev/component";
pub const LABEL_WORKER_GROUP: &str = "rask.dev/worker-group";
/// Hash of the worker pod template a pod was made from: a rollout replaces
/// pods whose revision differs.
pub const LABEL_REVISION: &str = "rask.dev/revision";
/// The UID of the object whose pool a worker pod belongs to (its DaskCluster
/// or DaskWorkerGroup): names and the other labels come from what users
/// chose, this cannot collide.
pub const LABEL_OWNER_UID: &str = "rask.dev/owner-uid";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "rask-operator";
/// Set on a worker pod once the operator has decided it leaves: after a
/// crash, the next reconcile finishes the retirement instead of forgetting it.
pub const ANNOTATION_RETIRING: &str = "rask.dev/retiring";
/// Overrides the URL of the scheduler's HTTP API (default: the scheduler
/// Service's DNS name). A hook for a scheduler the operator does not run:
/// one brought by the user, or a local process in the tests. Honoured only
/// when the operator runs with `--scheduler-url-annotation`, and never sent
/// the schedulers' token: anyone who may create a DaskCluster chooses it.
pub const ANNOTATION_SCHEDULER_URL: &str = "rask.dev/scheduler-http-url";
pub const DEFAULT_GROUP: &str = "default";
/// Fixed ports inside worker pods, so probes can reach the worker.
pub const WORKER_DATA_PORT: i32 = 8788;
pub const WORKER_HTTP_PORT: i32 = 8789;
/// A non-root user for containers that do not choose one.
const NON_ROOT_UID: i64 = 65532;

pub fn labels(cluster: &str, component: &str, group: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_CLUSTER.to_string(), cluster.to_string()),
        (LABEL_COMPONENT.to_string(), component.to_string()),
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
    ]);
    if let Some(group) = group {
        labels.insert(LABEL_WORKER_GROUP.to_string(), group.to_string());
    }
    labels
}

/// The label selector (as a string) of a worker group's pods: the scale
/// subresource's `status.selector`.
pub fn worker_selector(cluster: &str, group: &str) -> String {
    format!("{LABEL_CLUSTER}={cluster},{LABEL_COMPONENT}=worker,{LABEL_WORKER_GROUP}={group}")
}

pub fn scheduler_name(cluster: &str) -> String {
    format!("{cluster}-scheduler")
}

/// Prefix of a worker group's pod names: `<cluster>-<group>-worker-<n>`.
/// Two groups can share a prefix (cluster `a` with group `b-default`, and
/// cluster `a-b`'s own pool): a pod belongs to the object its owner
/// reference and `rask.dev/owner-uid` name, never to a prefix, and each
/// group skips names another object's pods hold.
pub fn worker_prefix(cluster: &str, group: &str) -> String {
    format!("{cluster}-{group}-worker")
}

/// The address clients and workers connect to.
pub fn scheduler_address(cluster: &str, namespace: &str, port: i32) -> String {
    format!("tcp://{}.{namespace}.svc:{port}", scheduler_name(cluster))
}

pub fn dashboard_address(cluster: &str, namespace: &str, port: i32) -> String {
    format!("http://{}.{namespace}.svc:{port}/status", scheduler_name(cluster))
}

/// Base URL of the scheduler's HTTP API, as the operator reaches it: the
/// Service the operator made (a derived URL, which may get the token), or
/// the annotation's URL when the operator honours it (untrusted: never
/// sent the token).
pub fn scheduler_api_url(
    cluster: &str,
    namespace: &str,
    spec: &DaskClusterSpec,
    annotation: Option<&str>,
    scheme: &str,
) -> SchedulerUrl {
    match annotation {
        Some(url) if !url.trim().is_empty() => SchedulerUrl::untrusted(url.trim()),
        _ => SchedulerUrl::derived(format!(
            "{scheme}://{}.{namespace}.svc:{}",
            scheduler_name(cluster),
            spec.scheduler.dashboard_port
        )),
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
            ..EnvVarSource::default()
        }),
    }
}

/// The scheduler address in both spellings: rask's and Dask's.
fn scheduler_env(address: &str) -> [EnvVar; 2] {
    [env("RASK_SCHEDULER_ADDRESS", address), env("DASK_SCHEDULER_ADDRESS", address)]
}

fn http_probe(port: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/health".into()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        ..Probe::default()
    }
}

/// What the operator puts into the main container of a pod it makes.
struct MainContainer<'a> {
    name: &'a str,
    image: &'a str,
    command: Vec<String>,
    args: Vec<String>,
    env: Vec<EnvVar>,
    ports: Vec<ContainerPort>,
    resources: Option<&'a ResourceRequirements>,
    probe_port: Option<i32>,
}

/// Merges the operator's container into a user's template: the user's
/// choices win, the operator fills the gaps, and the security context
/// defaults to non-root, read-only root, no capabilities, RuntimeDefault
/// seccomp (with an emptyDir at /tmp, the one place rask writes).
fn build_pod_spec(template: Option<&PodTemplateSpec>, main: MainContainer<'_>) -> (ObjectMeta, PodSpec) {
    let template = template.cloned().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let index = match spec.containers.iter().position(|c| c.name == main.name) {
        Some(i) => i,
        None if !spec.containers.is_empty() => 0,
        None => {
            spec.containers.push(Container { name: main.name.into(), ..Container::default() });
            0
        }
    };
    let mut volume_needed = false;
    if let Some(c) = spec.containers.get_mut(index) {
        if c.image.as_deref().is_none_or(str::is_empty) {
            c.image = Some(main.image.into());
        }
        if c.command.as_ref().is_none_or(Vec::is_empty) && c.args.as_ref().is_none_or(Vec::is_empty) {
            c.command = Some(main.command);
            c.args = if main.args.is_empty() { None } else { Some(main.args) };
        }
        let env = c.env.get_or_insert_with(Vec::new);
        for var in main.env {
            if !env.iter().any(|e| e.name == var.name) {
                env.push(var);
            }
        }
        if c.ports.as_ref().is_none_or(Vec::is_empty) && !main.ports.is_empty() {
            c.ports = Some(main.ports);
        }
        if c.resources.is_none() {
            c.resources = main.resources.cloned();
        }
        if let Some(port) = main.probe_port {
            if c.readiness_probe.is_none() {
                c.readiness_probe = Some(http_probe(port));
            }
            if c.liveness_probe.is_none() {
                c.liveness_probe = Some(Probe { failure_threshold: Some(6), ..http_probe(port) });
            }
        }
        if c.security_context.is_none() {
            c.security_context = Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
                seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
                ..SecurityContext::default()
            });
        }
        let read_only = c.security_context.as_ref().and_then(|s| s.read_only_root_filesystem).unwrap_or(false);
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        if read_only && !mounts.iter().any(|m| m.mount_path == "/tmp") {
            mounts.push(VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..VolumeMount::default() });
            volume_needed = true;
        }
    }
    if volume_needed {
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        if !volumes.iter().any(|v| v.name == "tmp") {
            volumes.push(Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            });
        }
    }
    if spec.security_context.is_none() {
        spec.security_context = Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NON_ROOT_UID),
            run_as_group: Some(NON_ROOT_UID),
            fs_group: Some(NON_ROOT_UID),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
            ..PodSecurityContext::default()
        });
    }
    (meta, spec)
}

fn with_labels(meta: ObjectMeta, labels: &BTreeMap<String, String>) -> ObjectMeta {
    let mut meta = meta;
    meta.labels.get_or_insert_with(BTreeMap::new).extend(labels.clone());
    meta.name = None;
    meta.namespace = None;
    meta
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

/// The scheduler's Deployment: one replica, Recreate (two schedulers at once
/// would split the workers).
pub fn scheduler_deployment(cluster: &str, spec: &DaskClusterSpec, owner: OwnerReference) -> Deployment {
    let labels = labels(cluster, "scheduler", None);
    let s = &spec.scheduler;
    let (meta, pod_spec) = build_pod_spec(
        s.template.as_ref(),
        MainContainer {
            name: "scheduler",
            image: &spec.image,
            command: vec!["rask".into(), "scheduler".into()],
            args: vec!["--port".into(), s.port.to_string(), "--http-port".into(), s.dashboard_port.to_string()],
            env: vec![env("RASK_HOST", "0.0.0.0")],
            ports: vec![port("tcp-comm", s.port), port("http-dashboard", s.dashboard_port)],
            resources: s.resources.as_ref(),
            probe_port: Some(s.dashboard_port),
        },
    );
    let selector = BTreeMap::from([
        (LABEL_CLUSTER.to_string(), cluster.to_string()),
        (LABEL_COMPONENT.to_string(), "scheduler".to_string()),
    ]);
    Deployment {
        metadata: ObjectMeta {
            name: Some(scheduler_name(cluster)),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector { match_labels: Some(selector), match_expressions: None },
            strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None }),
            template: PodTemplateSpec { metadata: Some(with_labels(meta, &labels)), spec: Some(pod_spec) },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The scheduler's Service: gRPC and HTTP.
pub fn scheduler_service(cluster: &str, spec: &DaskClusterSpec, owner: OwnerReference) -> Service {
    let s = &spec.scheduler;
    let svc_port = |name: &str, p: i32| ServicePort {
        name: Some(name.into()),
        port: p,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some(scheduler_name(cluster)),
            labels: Some(labels(cluster, "scheduler", None)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(s.service_type.as_str().into()),
            selector: Some(BTreeMap::from([
                (LABEL_CLUSTER.to_string(), cluster.to_string()),
                (LABEL_COMPONENT.to_string(), "scheduler".to_string()),
            ])),
            ports: Some(vec![svc_port("tcp-comm", s.port), svc_port("http-dashboard", s.dashboard_port)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A worker group's pod template (without a name). Its hash is the group's
/// revision; the worker's name comes from the pod's own name.
pub fn worker_template(
    cluster: &str,
    group: &str,
    image: &str,
    worker: &WorkerSpec,
    scheduler_address: &str,
) -> PodTemplateSpec {
    let mut args = vec![
        "--data-port".to_string(),
        WORKER_DATA_PORT.to_string(),
        "--http-port".to_string(),
        WORKER_HTTP_PORT.to_string(),
    ];
    if let Some(n) = worker.nthreads {
        args.extend(["--nthreads".to_string(), n.to_string()]);
    }
    if let Some(m) = &worker.memory_limit {
        args.extend(["--memory-limit".to_string(), m.clone()]);
    }
    let mut env = scheduler_env(scheduler_address).to_vec();
    env.push(env_field("RASK_WORKER_NAME", "metadata.name"));
    // The scheduler gives its adaptive target per group.
    env.push(self::env("RASK_WORKER_GROUP", group));
    env.push(env_field("RASK_CONTACT_HOST", "status.podIP"));
    let (meta, mut spec) = build_pod_spec(
        worker.template.as_ref(),
        MainContainer {
            name: "worker",
            image,
            command: if worker.python {
                vec!["python".into(), "-m".into(), "rask".into(), "worker".into()]
            } else {
                vec!["rask".into(), "worker".into()]
            },
            args,
            env,
            ports: vec![port("tcp-data", WORKER_DATA_PORT), port("http", WORKER_HTTP_PORT)],
            resources: worker.resources.as_ref(),
            probe_port: Some(WORKER_HTTP_PORT),
        },
    );
    // The operator replaces ended workers itself; a worker that exits has
    // retired or failed, and either way a fresh pod is the answer.
    if spec.restart_policy.is_none() {
        spec.restart_policy = Some("Never".into());
    }
    let labels = labels(cluster, "worker", Some(group));
    PodTemplateSpec { metadata: Some(with_labels(meta, &labels)), spec: Some(spec) }
}

/// A short stable hash of a pod template (FNV-1a over its JSON), so the
/// same spec gives the same revision in every process and release.
pub fn revision(template: &PodTemplateSpec) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

/// One worker pod from the group's template.
pub fn worker_pod(template: &PodTemplateSpec, name: &str, revision: &str, owner: OwnerReference) -> Pod {
    let mut meta = template.metadata.clone().unwrap_or_default();
    meta.name = Some(name.into());
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(LABEL_REVISION.into(), revision.into());
    labels.insert(LABEL_OWNER_UID.into(), owner.uid.clone());
    meta.owner_references = Some(vec![owner]);
    Pod { metadata: meta, spec: template.spec.clone(), status: None }
}

/// The name of a DaskJob's runner Job: unique per DaskJob object (it carries
/// the uid), so a re-created DaskJob never collides with an old runner.
pub fn runner_name(job: &str, uid: &str) -> String {
    let short: String = uid.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    format!("{job}-runner-{short}")
}

/// The runner Job of a DaskJob.
pub fn runner_job(dj: &DaskJob, name: &str, cluster: &str, scheduler_address: &str, owner: OwnerReference) -> Job {
    let labels = labels(cluster, "job-runner", None);
    let (meta, mut spec) = build_pod_spec(
        Some(&dj.spec.job.template),
        MainContainer {
            name: "client",
            image: &dj.spec.cluster.image,
            command: vec!["rask".into(), "demo".into()],
            args: Vec::new(),
            env: scheduler_env(scheduler_address).to_vec(),
            ports: Vec::new(),
            resources: None,
            probe_port: None,
        },
    );
    // Every container of the client pod may be the one that connects.
    for c in &mut spec.containers {
        let env = c.env.get_or_insert_with(Vec::new);
        for var in scheduler_env(scheduler_address) {
            if !env.iter().any(|e| e.name == var.name) {
                env.push(var);
            }
        }
    }
    if spec.restart_policy.is_none() {
        spec.restart_policy = Some("Never".into());
    }
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(dj.spec.backoff_limit),
            active_deadline_seconds: dj.spec.active_deadline_seconds,
            ttl_seconds_after_finished: dj.spec.ttl_seconds_after_finished,
            template: PodTemplateSpec { metadata: Some(with_labels(meta, &labels)), spec: Some(spec) },
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "rask.dev/v1alpha1".into(),
            kind: "DaskCluster".into(),
            name: "my".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn env_of(c: &Container) -> BTreeMap<String, String> {
        c.env
            .iter()
            .flatten()
            .map(|e| {
                let v = e.value.clone().or_else(|| {
                    e.value_from
                        .as_ref()
                        .and_then(|f| f.field_ref.as_ref())
                        .map(|f| format!("fieldRef:{}", f.field_path))
                });
                (e.name.clone(), v.unwrap_or_default())
            })
            .collect()
    }

    #[test]
    fn worker_pod_has_labels_env_owner_and_a_locked_down_security_context() {
        let spec = DaskClusterSpec::default();
        let addr = scheduler_address("my", "ns", 8786);
        assert_eq!(addr, "tcp://my-scheduler.ns.svc:8786");
        let t = worker_template("my", DEFAULT_GROUP, &spec.image, &spec.worker, &addr);
        let rev = revision(&t);
        let pod = worker_pod(&t, "my-default-worker-0", &rev, owner());
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[LABEL_CLUSTER], "my");
        assert_eq!(labels[LABEL_COMPONENT], "worker");
        assert_eq!(labels[LABEL_WORKER_GROUP], "default");
        assert_eq!(labels[LABEL_REVISION], rev);
        assert_eq!(pod.metadata.owner_references, Some(vec![owner()]));
        let spec = pod.spec.expect("spec");
        let c = &spec.containers[0];
        assert_eq!(c.name, "worker");
        assert_eq!(c.image.as_deref(), Some(crate::crd::DEFAULT_IMAGE));
        // Workers host Python by default (rask's image has it).
        let command = ["python", "-m", "rask", "worker"].map(String::from).to_vec();
        assert_eq!(c.command, Some(command));
        assert!(c.args.iter().flatten().any(|a| a == "--data-port"));
        let env = env_of(c);
        assert_eq!(env["RASK_SCHEDULER_ADDRESS"], addr);
        assert_eq!(env["DASK_SCHEDULER_ADDRESS"], addr);
        assert_eq!(env["RASK_WORKER_NAME"], "fieldRef:metadata.name");
        assert_eq!(env["RASK_WORKER_GROUP"], "default");
        let sc = c.security_context.as_ref().expect("container security context");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_string()]));
        let psc = spec.security_context.expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.map(|s| s.type_), Some("RuntimeDefault".to_string()));
        assert!(spec.volumes.iter().flatten().any(|v| v.name == "tmp" && v.empty_dir.is_some()));
    }

    #[test]
    fn a_user_template_wins_and_the_operator_fills_the_gaps() {
        let template: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"team": "data"}},
            "spec": {
                "nodeSelector": {"pool": "highmem"},
                "containers": [{
                    "name": "worker",
                    "image": "example.com/rask:custom",
                    "env": [{"name": "EXTRA", "value": "1"}, {"name": "RASK_SCHEDULER_ADDRESS", "value": "mine"}],
                    "securityContext": {"runAsUser": 1000}
                }]
            }
        }))
        .expect("template");
        let worker = WorkerSpec { template: Some(template), nthreads: Some(4), ..WorkerSpec::default() };
        let t = worker_template("my", "highmem", "unused", &worker, "tcp://x:8786");
        let spec = t.spec.expect("spec");
        assert_eq!(spec.node_selector.as_ref().map(|n| n["pool"].clone()), Some("highmem".into()));
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("example.com/rask:custom"));
        let env = env_of(c);
        assert_eq!(env["EXTRA"], "1");
        assert_eq!(env["RASK_SCHEDULER_ADDRESS"], "mine", "the user's value is kept");
        assert_eq!(env["DASK_SCHEDULER_ADDRESS"], "tcp://x:8786");
        assert!(c.args.iter().flatten().any(|a| a == "--nthreads"));
        assert_eq!(c.security_context.as_ref().and_then(|s| s.run_as_user), Some(1000));
        let labels = t.metadata.and_then(|m| m.labels).unwrap_or_default();
        assert_eq!(labels["team"], "data");
        assert_eq!(labels[LABEL_WORKER_GROUP], "highmem");
    }

    #[test]
    fn python_false_starts_the_plain_rask_worker() {
        let worker: WorkerSpec = serde_json::from_value(serde_json::json!({"python": false})).expect("spec");
        let t = worker_template("my", DEFAULT_GROUP, "img", &worker, "tcp://s:1");
        let c = &t.spec.expect("spec").containers[0];
        assert_eq!(c.command, Some(vec!["rask".to_string(), "worker".to_string()]));
        let default: WorkerSpec = serde_json::from_value(serde_json::json!({})).expect("spec");
        assert!(default.python, "an omitted worker.python means Python workers");
        let python = revision(&worker_template("my", DEFAULT_GROUP, "img", &default, "tcp://s:1"));
        let plain = revision(&worker_template("my", DEFAULT_GROUP, "img", &worker, "tcp://s:1"));
        assert_ne!(python, plain, "switching worker.python rolls the workers");
    }

    #[test]
    fn revision_changes_with_the_spec_and_only_then() {
        let spec = DaskClusterSpec::default();
        let a = revision(&worker_template("my", "default", &spec.image, &spec.worker, "tcp://s:1"));
        let b = revision(&worker_template("my", "default", &spec.image, &spec.worker, "tcp://s:1"));
        let c = revision(&worker_template("my", "default", "other:image", &spec.worker, "tcp://s:1"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 10);
    }

    #[test]
    fn scheduler_children() {
        let spec = DaskClusterSpec::default();
        let d = scheduler_deployment("my", &spec, owner());
        assert_eq!(d.metadata.name.as_deref(), Some("my-scheduler"));
        let ds = d.spec.expect("spec");
        assert_eq!(ds.replicas, Some(1));
        assert_eq!(ds.strategy.and_then(|s| s.type_), Some("Recreate".into()));
        let c = &ds.template.spec.expect("pod").containers[0];
        assert_eq!(c.command, Some(vec!["rask".to_string(), "scheduler".to_string()]));
        let s = scheduler_service("my", &spec, owner());
        let ports: Vec<i32> = s.spec.and_then(|s| s.ports).unwrap_or_default().iter().map(|p| p.port).collect();
        assert_eq!(ports, [8786, 8787]);
    }

    #[test]
    fn runner_names_are_unique_per_object() {
        assert_eq!(runner_name("etl", "0a1b2c3d-4e5f"), "etl-runner-0a1b2c3d");
        assert_ne!(runner_name("etl", "0a1b2c3d-4e5f"), runner_name("etl", "99999999-0000"));
    }
}
