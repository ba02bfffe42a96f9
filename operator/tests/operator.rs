//! The operator against a real kube-apiserver and etcd (see support/): CRDs,
//! validation, children, rollout, scaling through a real `rask scheduler`,
//! garbage collection, crash recovery, leader election and DaskJobs.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use rask_operator::crd::{DaskCluster, DaskJob, DaskWorkerGroup, JobPhase};
use rask_tests::processes::Scheduler;
use support::{TestEnv, eventually, scheduler_workers};

const WAIT: Duration = Duration::from_secs(60);

async fn pods(env: &TestEnv, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = env.api();
    api.list(&ListParams::default().labels(selector)).await.expect("list pods").items
}

async fn pod_names(env: &TestEnv, selector: &str) -> Vec<String> {
    let mut names: Vec<String> = pods(env, selector).await.iter().map(|p| p.name_any()).collect();
    names.sort();
    names
}

async fn events(env: &TestEnv) -> Vec<Event> {
    let api: Api<Event> = env.api();
    api.list(&ListParams::default()).await.expect("events").items
}

async fn has_event(env: &TestEnv, reason: &str) -> bool {
    events(env).await.iter().any(|e| e.reason.as_deref() == Some(reason))
}

async fn cluster(env: &TestEnv, name: &str) -> DaskCluster {
    env.api::<DaskCluster>().get(name).await.expect("get DaskCluster")
}

fn condition(dc: &DaskCluster, type_: &str) -> Option<(String, String)> {
    dc.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.message.clone()))
}

fn cluster_yaml(name: &str, replicas: i32, annotations: &str) -> String {
    format!(
        "apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n  worker:\n    replicas: {replicas}\n"
    )
}

/// The scheduler-URL hook pointing at a real `rask scheduler` on loopback.
fn scheduler_annotation(s: &Scheduler) -> String {
    format!("rask.dev/scheduler-http-url: \"http://{}\"", s.http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_install_and_are_established() {
    let env = TestEnv::new("crds").await;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for name in ["daskclusters.rask.dev", "daskworkergroups.rask.dev", "daskjobs.rask.dev"] {
        let crd = crds.get(name).await.expect("crd");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not Established");
    }
    // Short names and printer columns work through kubectl.
    let out = env.apply(&cluster_yaml("cols", 0, ""));
    assert!(out.ok, "{}", out.stderr);
    let out = env.kubectl(&["get", "dc"]);
    assert!(out.ok, "{}", out.stderr);
    for column in ["READY", "DESIRED", "PHASE", "SCHEDULER", "AGE"] {
        assert!(out.stdout.contains(column), "no {column} column: {}", out.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_applies() {
    let env = TestEnv::new("examples").await;
    let dir = support::repo_root().join("examples");
    // The manifests at the top; examples/autoscaling/ holds a KEDA object
    // (whose CRD is not installed here) and is checked below.
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.push(dir.join("autoscaling/cluster.yaml"));
    files.sort();
    assert!(files.len() >= 5, "expected at least 5 examples, found {files:?}");
    for file in &files {
        let out = env.kubectl(&["apply", "-f", &file.to_string_lossy()]);
        assert!(out.ok, "kubectl apply -f {} failed: {}", file.display(), out.stderr);
    }
    // The operator turns them into children.
    let operator = env.start_operator();
    let ok = eventually(WAIT, || async {
        pod_names(&env, "rask.dev/cluster=my,rask.dev/worker-group=highmem").await.len() == 1
    })
    .await;
    assert!(ok, "the worker group's pod was not made");
    let ok = eventually(WAIT, || async {
        env.api::<Deployment>().get_opt("full-scheduler").await.ok().flatten().is_some()
            && pods(&env, "rask.dev/cluster=full").await.len() == 3
    })
    .await;
    assert!(ok, "the full example's scheduler and workers were not made");
    let full = pods(&env, "rask.dev/cluster=full").await;
    let spec = full[0].spec.clone().expect("spec");
    let tolerations = spec.tolerations.unwrap_or_default();
    assert!(tolerations.iter().any(|t| t.key.as_deref() == Some("dedicated")), "the template's tolerations were kept");
    assert!(spec.volumes.unwrap_or_default().iter().any(|v| v.name == "scratch"));
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_are_refused_with_the_cel_message() {
    let env = TestEnv::new("invalid").await;
    let dc =
        |spec: &str| format!("apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: bad\nspec:\n{spec}");
    let table: Vec<(String, &str)> = vec![
        (
            dc("  autoscaling: {minimum: 5, maximum: 2}\n"),
            "autoscaling.minimum must be less than or equal to autoscaling.maximum",
        ),
        (dc("  worker: {replicas: -1}\n"), "worker.replicas must be non-negative"),
        (
            dc("  autoscaling: {minimum: 1, maximum: 2, scaleDownStep: -1}\n"),
            "autoscaling.scaleDownStep must be non-negative",
        ),
        (dc("  image: \"\"\n"), "image must not be empty"),
        (dc("  worker: {maxSurge: 0}\n"), "worker.maxSurge must be at least 1"),
        (dc("  scheduler: {port: 70000}\n"), "scheduler.port must be between 1 and 65535"),
        // Specs that used to be accepted and then failed at child creation
        // or at start (issue 26 point 2).
        (dc("  scheduler: {port: 9000, dashboardPort: 9000}\n"), "scheduler.port and scheduler.dashboardPort must differ"),
        (dc("  image: \"repo/image:1 --privileged\"\n"), "image must not contain whitespace"),
        (dc("  worker: {memoryLimit: lots}\n"), "worker.memoryLimit must be auto"),
        (dc("  worker: {replicas: 100000000}\n"), "worker.replicas must be at most 10000"),
        (dc("  autoscaling: {minimum: 0, maximum: 100000000}\n"), "autoscaling.maximum must be at most 10000"),
        (
            "apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: a-name-that-is-far-too-long-for-children-labels\nspec: {}\n"
                .to_string(),
            "metadata.name must be at most 40 characters",
        ),
        (
            "apiVersion: rask.dev/v1alpha1\nkind: DaskWorkerGroup\nmetadata:\n  name: g\nspec:\n  cluster: my\n  autoscaling: {minimum: 3, maximum: 1}\n"
                .to_string(),
            "autoscaling.minimum must be less than or equal to autoscaling.maximum",
        ),
        (
            "apiVersion: rask.dev/v1alpha1\nkind: DaskJob\nmetadata:\n  name: j\nspec:\n  backoffLimit: -1\n  job:\n    template:\n      spec:\n        containers: [{name: client}]\n"
                .to_string(),
            "backoffLimit must be non-negative",
        ),
    ];
    for (manifest, message) in &table {
        let out = env.apply(manifest);
        assert!(!out.ok, "accepted a bad manifest:\n{manifest}");
        assert!(out.stderr.contains(message), "expected {message:?} in: {}", out.stderr);
    }
    // Immutable fields: a worker group's cluster, a DaskJob's spec.
    let wg = "apiVersion: rask.dev/v1alpha1\nkind: DaskWorkerGroup\nmetadata:\n  name: g\nspec:\n  cluster: one\n";
    assert!(env.apply(wg).ok);
    let out = env.apply(&wg.replace("cluster: one", "cluster: two"));
    assert!(!out.ok && out.stderr.contains("cluster is immutable"), "{}", out.stderr);
    let job = "apiVersion: rask.dev/v1alpha1\nkind: DaskJob\nmetadata:\n  name: j\nspec:\n  backoffLimit: 1\n  job:\n    template:\n      spec:\n        containers: [{name: client}]\n";
    assert!(env.apply(job).ok);
    let out = env.apply(&job.replace("backoffLimit: 1", "backoffLimit: 3"));
    assert!(!out.ok && out.stderr.contains("a DaskJob's spec is immutable"), "{}", out.stderr);
    // What works is still accepted.
    let out = env.apply(&dc(
        "  worker:\n    memoryLimit: 4GiB\n    resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {cpu: 1, memory: 1Gi}}\n",
    ));
    assert!(out.ok, "{}", out.stderr);
    for limit in ["auto", "0.5", "1e9", "500MB", "4 GiB", "0", "2g"] {
        let out = env.apply(&dc(&format!("  worker: {{memoryLimit: \"{limit}\"}}\n")));
        assert!(out.ok, "memoryLimit {limit}: {}", out.stderr);
    }
    // A pod template of the wrong shape is refused by the schema itself.
    let out = env.apply(&dc("  worker:\n    template:\n      spec:\n        containers: \"not a list\"\n"));
    assert!(!out.ok, "a malformed pod template was accepted");
}

/// Names whose children the API server would refuse, and the worker group
/// name reserved for each cluster's own pool, are refused at admission
/// with a message that says why; names that work are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_cannot_work_are_refused_at_admission() {
    let env = TestEnv::new("names").await;
    let dc = |name: &str| {
        format!("apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: {name}\nspec: {{}}\n")
    };
    let wg = |name: &str, cluster: &str| {
        format!(
            "apiVersion: rask.dev/v1alpha1\nkind: DaskWorkerGroup\nmetadata:\n  name: {name}\nspec:\n  cluster: {cluster}\n"
        )
    };
    let dj = |name: &str| {
        format!(
            "apiVersion: rask.dev/v1alpha1\nkind: DaskJob\nmetadata:\n  name: {name}\nspec:\n  job:\n    template:\n      spec:\n        containers: [{{name: client}}]\n"
        )
    };
    let dns = "must be a DNS-1035 label";
    let table: Vec<(String, &str)> = vec![
        (dc("1abc"), dns),
        (dc("my.cl"), dns),
        (dc("-x"), ""),
        (wg("9g", "ok"), dns),
        (wg("g.h", "ok"), dns),
        (wg("default", "ok"), "metadata.name 'default' is reserved"),
        (wg("g", "My.Cluster"), "cluster must be a DaskCluster's name"),
        (wg("g", "a-cluster-name-that-is-far-too-long-to-be-one"), "spec.cluster"),
        (dj("9job"), dns),
        (dj("job.x"), dns),
    ];
    for (manifest, message) in &table {
        let out = env.apply(manifest);
        assert!(!out.ok, "accepted a name that cannot work:\n{manifest}");
        assert!(out.stderr.contains(message), "expected {message:?} in: {}", out.stderr);
    }
    for good in [dc("a"), dc("a-b"), dc("x9"), wg("b-default", "a"), wg("default2", "a"), dj("job9")] {
        let out = env.apply(&good);
        assert!(out.ok, "refused a good name:\n{good}\n{}", out.stderr);
    }
}

/// Cluster `a` with worker group `b-default`, and cluster `a-b`, share the
/// pod name prefix `a-b-default-worker`. Both get all their workers, each
/// pod belongs to exactly one of them, and nothing is created or deleted
/// once they have converged: no two reconcilers fight over a pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colliding_child_names_both_get_their_workers_without_a_fight() {
    use std::collections::BTreeSet;
    let env = TestEnv::new("collide").await;
    let _agent = env.node_agent(None);
    let operator = env.start_operator();
    let manifests = [
        cluster_yaml("a", 1, ""),
        "apiVersion: rask.dev/v1alpha1\nkind: DaskWorkerGroup\nmetadata:\n  name: b-default\nspec:\n  cluster: a\n  worker: {replicas: 2}\n".to_string(),
        cluster_yaml("a-b", 2, ""),
    ];
    for m in &manifests {
        let out = env.apply(m);
        assert!(out.ok, "{}", out.stderr);
    }
    let uid = |kind: &str, name: &str| {
        let out = env.kubectl(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"]);
        assert!(out.ok, "{}", out.stderr);
        out.stdout.trim().to_string()
    };
    let (a, b_default, a_b) = (uid("dc", "a"), uid("dwg", "b-default"), uid("dc", "a-b"));
    let owned = |pods: &[Pod], owner: &str| {
        pods.iter()
            .filter(|p| {
                p.owner_references().iter().any(|o| o.uid == owner)
                    && p.labels().get("rask.dev/owner-uid").map(String::as_str) == Some(owner)
            })
            .count()
    };
    // Every pod ever seen, by UID, while they converge and for 10 s after.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let api: Api<Pod> = env.api();
    let list = || async { api.list(&ListParams::default().labels("rask.dev/component=worker")).await.unwrap().items };
    let converged = |pods: &[Pod]| {
        pods.len() == 5 && owned(pods, &a) == 1 && owned(pods, &b_default) == 2 && owned(pods, &a_b) == 2
    };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let pods = list().await;
        seen.extend(pods.iter().filter_map(|p| p.metadata.uid.clone()));
        if converged(&pods) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not converged: {:?}",
            pods.iter().map(|p| p.name_any()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let quiet = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < quiet {
        let pods = list().await;
        seen.extend(pods.iter().filter_map(|p| p.metadata.uid.clone()));
        assert!(
            converged(&pods),
            "the groups fell out of step: {:?}",
            pods.iter().map(|p| p.name_any()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen.len(), 5, "pods were created and deleted: {} pods seen for 5 workers", seen.len());
    let names: BTreeSet<String> = list().await.iter().map(|p| p.name_any()).collect();
    for prefix in ["a-default-worker-", "a-b-default-worker-"] {
        assert!(names.iter().any(|n| n.starts_with(prefix)), "{prefix}: {names:?}");
    }
    operator.stop().await;
}

/// A ResourceQuota of one pod and a cluster of three workers: the API
/// server refuses two worker pods. The cluster does not look blank: a
/// Warning Event and the `Ready=False` condition carry the API server's
/// reason, the status shows the one worker that exists, and the refused
/// creations are retried with backoff, not every few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_pods_end_in_an_event_and_a_ready_false_condition() {
    let env = TestEnv::new("quota").await;
    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: pods\nspec:\n  hard: {pods: \"1\"}\n";
    assert!(env.apply(quota).ok);
    // No quota controller runs here: give the quota its status, as it would.
    let status = r#"{"status": {"hard": {"pods": "1"}, "used": {"pods": "0"}}}"#;
    let out = env.kubectl(&["patch", "resourcequota", "pods", "--subresource=status", "--type=merge", "-p", status]);
    assert!(out.ok, "{}", out.stderr);
    let operator = env.start_operator();
    assert!(env.apply(&cluster_yaml("q", 3, "")).ok);
    let ok = eventually(WAIT, || async {
        condition(&cluster(&env, "q").await, "Ready")
            .is_some_and(|(status, message)| status == "False" && message.contains("exceeded quota"))
    })
    .await;
    let dc = cluster(&env, "q").await;
    assert!(ok, "no Ready=False with the quota's refusal: {:?}", dc.status);
    let ready = dc.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().clone();
    assert_eq!(ready.reason, "Forbidden", "{ready:?}");
    assert_eq!(dc.status.as_ref().unwrap().replicas, 1, "{:?}", dc.status);
    assert_eq!(pod_names(&env, "rask.dev/cluster=q").await.len(), 1);
    let warned = eventually(WAIT, || async {
        events(&env).await.iter().any(|e| {
            e.reason.as_deref() == Some("FailedCreate")
                && e.note.as_deref().is_some_and(|n| n.contains("exceeded quota"))
        })
    })
    .await;
    assert!(warned, "no FailedCreate Event");
    // Backoff: over 12 s, at 5, 10, 20 s... at most a few more tries (the
    // quota admission counts each refused create in the apiserver's
    // metrics; here, the Events' count says how often it was tried).
    let tries = || async {
        events(&env)
            .await
            .iter()
            .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
            .map(|e| e.series.as_ref().map_or(1, |s| s.count))
            .sum::<i32>()
    };
    let before = tries().await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = tries().await;
    assert!(after - before <= 3, "retried {} times in 12 s", after - before);
    operator.stop().await;
}

/// What the CRD cannot check (quantities, requests above limits: CEL over
/// the resources maps is over the API server's cost budget) is reported:
/// the worker pods are refused (BadRequest, Invalid), and the cluster says so in its
/// Ready condition instead of looking blank.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrunnable_worker_resources_are_reported() {
    let env = TestEnv::new("badres").await;
    let operator = env.start_operator();
    let dc = |name: &str, resources: &str| {
        format!(
            "apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: {name}\nspec:\n  worker:\n    replicas: 1\n    resources: {resources}\n"
        )
    };
    assert!(env.apply(&dc("banana", "{requests: {cpu: banana}}")).ok);
    assert!(env.apply(&dc("over", "{requests: {cpu: '2'}, limits: {cpu: '1'}}")).ok);
    for name in ["banana", "over"] {
        let ok = eventually(WAIT, || async {
            condition(&cluster(&env, name).await, "Ready").is_some_and(|(status, _)| status == "False")
                && cluster(&env, name).await.status.is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && ["BadRequest", "Invalid"].contains(&c.reason.as_str()))
                })
        })
        .await;
        assert!(ok, "{name}: no Ready=False with the API server's refusal: {:?}", cluster(&env, name).await.status);
        let (_, message) = condition(&cluster(&env, name).await, "Ready").unwrap();
        assert!(message.contains("quantit") || message.contains("cpu"), "{name}: {message}");
    }
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_creates_exactly_the_expected_children() {
    let env = TestEnv::new("children").await;
    let operator = env.start_operator();
    assert!(env.apply(&cluster_yaml("c1", 2, "")).ok);
    let ok = eventually(WAIT, || async { pod_names(&env, "rask.dev/cluster=c1").await.len() == 2 }).await;
    assert!(ok, "workers not created");
    let dc = cluster(&env, "c1").await;
    let uid = dc.metadata.uid.clone().expect("uid");

    // Exactly: one Deployment, one Service, two worker pods.
    let deployments = env.api::<Deployment>().list(&ListParams::default()).await.expect("list").items;
    let services = env.api::<Service>().list(&ListParams::default()).await.expect("list").items;
    assert_eq!(deployments.iter().map(|d| d.name_any()).collect::<Vec<_>>(), ["c1-scheduler"]);
    assert_eq!(services.iter().map(|s| s.name_any()).collect::<Vec<_>>(), ["c1-scheduler"]);
    assert_eq!(pod_names(&env, "").await, ["c1-default-worker-0", "c1-default-worker-1"]);

    let owned_by_dc = |refs: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
        refs.is_some_and(|r| {
            r.len() == 1 && r[0].uid == uid && r[0].kind == "DaskCluster" && r[0].controller == Some(true)
        })
    };
    let d = &deployments[0];
    assert!(owned_by_dc(d.metadata.owner_references.as_ref()));
    let labels = d.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["rask.dev/cluster"], "c1");
    assert_eq!(labels["rask.dev/component"], "scheduler");
    let ports: Vec<i32> =
        services[0].spec.clone().and_then(|s| s.ports).unwrap_or_default().iter().map(|p| p.port).collect();
    assert_eq!(ports, [8786, 8787]);
    assert!(owned_by_dc(services[0].metadata.owner_references.as_ref()));

    for pod in pods(&env, "").await {
        assert!(owned_by_dc(pod.metadata.owner_references.as_ref()));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["rask.dev/cluster"], "c1");
        assert_eq!(labels["rask.dev/component"], "worker");
        assert_eq!(labels["rask.dev/worker-group"], "default");
        let spec = pod.spec.expect("spec");
        let c = &spec.containers[0];
        let env_vars: std::collections::BTreeMap<String, String> =
            c.env
                .iter()
                .flatten()
                .map(|e| {
                    let v = e.value.clone().or_else(|| {
                        e.value_from.as_ref().and_then(|f| f.field_ref.as_ref()).map(|f| f.field_path.clone())
                    });
                    (e.name.clone(), v.unwrap_or_default())
                })
                .collect();
        let addr = format!("tcp://c1-scheduler.{}.svc:8786", env.ns);
        assert_eq!(env_vars["RASK_SCHEDULER_ADDRESS"], addr);
        assert_eq!(env_vars["DASK_SCHEDULER_ADDRESS"], addr);
        assert_eq!(env_vars["RASK_WORKER_NAME"], "metadata.name");
        let psc = spec.security_context.expect("pod securityContext");
        assert_eq!(psc.run_as_non_root, Some(true));
        let sc = c.security_context.clone().expect("container securityContext");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_string()]));
    }

    // Status: written with server-side apply by the one field manager.
    let ok = eventually(WAIT, || async {
        let dc = cluster(&env, "c1").await;
        dc.status.as_ref().is_some_and(|s| s.replicas == 2 && s.observed_generation == dc.metadata.generation)
    })
    .await;
    assert!(ok, "status not written");
    let dc = cluster(&env, "c1").await;
    let status = dc.status.clone().expect("status");
    assert_eq!(
        status.selector.as_deref(),
        Some("rask.dev/cluster=c1,rask.dev/component=worker,rask.dev/worker-group=default")
    );
    assert_eq!(status.scheduler_address, Some(format!("tcp://c1-scheduler.{}.svc:8786", env.ns)));
    assert_eq!(status.phase.as_deref(), Some("Pending"), "no scheduler pod is available yet");
    assert_eq!(condition(&dc, "SchedulerReady").map(|c| c.0), Some("False".into()));
    let managers: Vec<String> = dc
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["rask-operator"]);
    assert!(eventually(WAIT, || has_event(&env, "PhaseChanged")).await, "no Event recorded");

    // With the node agent, the scheduler becomes ready and the phase Running.
    let _agent = env.node_agent(None);
    let ok = eventually(WAIT, || async {
        cluster(&env, "c1").await.status.and_then(|s| s.phase).as_deref() == Some("Running")
    })
    .await;
    assert!(ok, "phase did not become Running: {:?}", cluster(&env, "c1").await.status);
    // Reconcile is idempotent: nothing new appears.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pod_names(&env, "").await.len(), 2);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_retires_through_the_real_scheduler() {
    let env = TestEnv::new("scaledown").await;
    let scheduler = tokio::task::spawn_blocking(|| Scheduler::start(&[])).await.expect("scheduler");
    let agent = env.node_agent(Some(scheduler.address.clone()));
    let operator = env.start_operator_with_url_annotation();
    assert!(env.apply(&cluster_yaml("sd", 3, &scheduler_annotation(&scheduler))).ok);
    let joined = eventually(WAIT, || async { scheduler_workers(&scheduler.http).await["num_workers"] == 3 }).await;
    assert!(joined, "three workers did not join the scheduler");

    // kubectl scale through the scale subresource.
    let out = env.kubectl(&["scale", "dc/sd", "--replicas=1"]);
    assert!(out.ok, "{}", out.stderr);
    let ok =
        eventually(WAIT, || async { pod_names(&env, "rask.dev/cluster=sd").await == ["sd-default-worker-0"] }).await;
    assert!(ok, "pods after scale-down: {:?}", pod_names(&env, "rask.dev/cluster=sd").await);
    // The scheduler retired them: they left it gracefully (not by pod deletion).
    let workers = scheduler_workers(&scheduler.http).await;
    assert_eq!(workers["num_workers"], 1, "{workers}");
    assert_eq!(workers["workers"][0]["name"], "sd-default-worker-0");
    let retired: Vec<String> = events(&env)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("WorkersRetired"))
        .filter_map(|e| e.note)
        .collect();
    assert!(
        retired.iter().any(|n| n.contains("sd-default-worker-1"))
            && retired.iter().any(|n| n.contains("sd-default-worker-2")),
        "retirements not recorded: {retired:?}"
    );
    drop(agent);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_scheduler_blocks_scale_down_and_says_why() {
    let env = TestEnv::new("unreachable").await;
    // A port nothing listens on: the scheduler cannot be asked.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let _agent = env.node_agent(None);
    let operator = env.start_operator_with_url_annotation();
    let annotation = format!("rask.dev/scheduler-http-url: \"http://127.0.0.1:{port}\"");
    assert!(env.apply(&cluster_yaml("un", 2, &annotation)).ok);
    let ok = eventually(WAIT, || async {
        pods(&env, "rask.dev/cluster=un")
            .await
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count()
            == 2
    })
    .await;
    assert!(ok, "workers not running");
    assert!(env.kubectl(&["scale", "dc/un", "--replicas=0"]).ok);
    let ok = eventually(WAIT, || async {
        condition(&cluster(&env, "un").await, "ScaleDownBlocked").is_some_and(|(status, _)| status == "True")
    })
    .await;
    assert!(ok, "no ScaleDownBlocked condition: {:?}", cluster(&env, "un").await.status);
    let (_, message) = condition(&cluster(&env, "un").await, "ScaleDownBlocked").expect("condition");
    assert!(message.contains("until the scheduler can retire them"), "{message}");
    assert!(has_event(&env, "ScaleDownBlocked").await);
    // Busy workers are kept.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pod_names(&env, "rask.dev/cluster=un").await.len(), 2, "busy workers were deleted blind");
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_edit_rolls_out_each_worker_retired() {
    let env = TestEnv::new("rollout").await;
    let scheduler = tokio::task::spawn_blocking(|| Scheduler::start(&[])).await.expect("scheduler");
    let _agent = env.node_agent(Some(scheduler.address.clone()));
    let operator = env.start_operator_with_url_annotation();
    assert!(env.apply(&cluster_yaml("ro", 2, &scheduler_annotation(&scheduler))).ok);
    let revisions = |pods: &[Pod]| -> Vec<String> {
        pods.iter().filter_map(|p| p.labels().get("rask.dev/revision").cloned()).collect()
    };
    let ok = eventually(WAIT, || async {
        let c = cluster(&env, "ro").await;
        c.status.is_some_and(|s| s.ready_replicas == 2)
    })
    .await;
    assert!(ok, "two ready workers");
    let before = revisions(&pods(&env, "rask.dev/cluster=ro").await);
    let old = before[0].clone();

    // kubectl scale up, then edit the image: every worker is replaced.
    assert!(env.kubectl(&["scale", "dc/ro", "--replicas=3"]).ok);
    let ok =
        eventually(WAIT, || async { cluster(&env, "ro").await.status.is_some_and(|s| s.ready_replicas == 3) }).await;
    assert!(ok, "scale up to 3");
    let patch = r#"{"spec":{"image":"ghcr.io/rask-dev/rask:0.2.0"}}"#;
    assert!(env.kubectl(&["patch", "dc/ro", "--type=merge", "-p", patch]).ok);
    let ok = eventually(Duration::from_secs(120), || async {
        let p = pods(&env, "rask.dev/cluster=ro").await;
        let revs = revisions(&p);
        revs.len() == 3
            && revs.iter().all(|r| *r != old)
            && cluster(&env, "ro").await.status.is_some_and(|s| s.ready_replicas == 3 && s.updated_replicas == 3)
    })
    .await;
    assert!(ok, "rollout did not finish: {:?}", cluster(&env, "ro").await.status);
    for pod in pods(&env, "rask.dev/cluster=ro").await {
        let image = pod.spec.and_then(|s| s.containers[0].image.clone());
        assert_eq!(image.as_deref(), Some("ghcr.io/rask-dev/rask:0.2.0"));
    }
    // Every old worker was retired by the scheduler, not deleted blind.
    let retired: usize = events(&env)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("WorkersRetired"))
        .map(|e| e.series.map(|s| s.count as usize).unwrap_or(1))
        .sum();
    assert!(retired >= 3, "expected 3 retirements, saw {retired}");
    let dc = cluster(&env, "ro").await;
    assert_eq!(dc.status.as_ref().and_then(|s| s.observed_generation), dc.metadata.generation);
    assert_eq!(condition(&dc, "WorkersUpToDate").map(|c| c.0), Some("True".into()));
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_group_adds_a_pool_that_scales() {
    let env = TestEnv::new("group").await;
    let _agent = env.node_agent(None);
    let operator = env.start_operator();
    assert!(env.apply(&cluster_yaml("gc", 1, "")).ok);
    let wg = "apiVersion: rask.dev/v1alpha1\nkind: DaskWorkerGroup\nmetadata:\n  name: highmem\nspec:\n  cluster: gc\n  worker:\n    replicas: 2\n    memoryLimit: 60GiB\n";
    assert!(env.apply(wg).ok);
    let sel = "rask.dev/cluster=gc,rask.dev/worker-group=highmem";
    let ok = eventually(WAIT, || async { pod_names(&env, sel).await.len() == 2 }).await;
    assert!(ok, "group pods: {:?}", pod_names(&env, sel).await);
    let group = env.api::<DaskWorkerGroup>().get("highmem").await.expect("wg");
    for pod in pods(&env, sel).await {
        let owner = &pod.metadata.owner_references.clone().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("DaskWorkerGroup", group.metadata.uid.as_deref().unwrap_or(""))
        );
        let args = pod.spec.expect("spec").containers[0].args.clone().unwrap_or_default();
        assert!(args.windows(2).any(|w| w == ["--memory-limit", "60GiB"]), "{args:?}");
    }
    // The group belongs to its cluster too, so deleting the cluster removes it.
    let dc = cluster(&env, "gc").await;
    let ok = eventually(WAIT, || async {
        let g = env.api::<DaskWorkerGroup>().get("highmem").await.expect("wg");
        g.owner_references().iter().any(|o| Some(&o.uid) == dc.metadata.uid.as_ref())
    })
    .await;
    assert!(ok, "the group was not tied to its cluster");
    // Its own scale subresource: not ready pods (the agent is paused) go at once.
    _agent.paused.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(env.kubectl(&["scale", "dwg/highmem", "--replicas=3"]).ok);
    let ok = eventually(WAIT, || async { pod_names(&env, sel).await.len() == 3 }).await;
    assert!(ok, "group did not scale to 3");
    let ok = eventually(WAIT, || async {
        env.api::<DaskWorkerGroup>().get("highmem").await.ok().and_then(|g| g.status).is_some_and(|s| s.replicas == 3)
    })
    .await;
    assert!(ok, "group status");
    // The default group is untouched.
    assert_eq!(pod_names(&env, "rask.dev/cluster=gc,rask.dev/worker-group=default").await.len(), 1);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_cluster_removes_its_children() {
    let env = TestEnv::new("gc").await;
    let operator = env.start_operator();
    assert!(env.apply(&cluster_yaml("del", 2, "")).ok);
    let ok = eventually(WAIT, || async { pod_names(&env, "rask.dev/cluster=del").await.len() == 2 }).await;
    assert!(ok);
    let out = env.kubectl(&["delete", "dc/del", "--wait=true", "--timeout=60s"]);
    assert!(out.ok, "{}", out.stderr);
    // kube-controller-manager's garbage collector follows the ownerReferences.
    let ok = eventually(WAIT, || async {
        pod_names(&env, "").await.is_empty()
            && env.api::<Deployment>().list(&ListParams::default()).await.expect("list").items.is_empty()
            && env.api::<Service>().list(&ListParams::default()).await.expect("list").items.is_empty()
    })
    .await;
    assert!(ok, "children left behind: {:?}", pod_names(&env, "").await);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_mid_reconcile_converges_after_restart() {
    let env = TestEnv::new("crash").await;
    let mut op = env.start_operator_process("crash-1", &["--no-leader-election"]);
    assert!(env.apply(&cluster_yaml("big", 30, "")).ok);
    // Kill it as soon as it has started making workers: mid-reconcile.
    let started = eventually(WAIT, || async { !pod_names(&env, "rask.dev/cluster=big").await.is_empty() }).await;
    assert!(started);
    op.kill();
    let partial = pod_names(&env, "rask.dev/cluster=big").await.len();
    let _op = env.start_operator_process("crash-2", &["--no-leader-election"]);
    let ok = eventually(WAIT, || async {
        cluster(&env, "big").await.status.is_some_and(|s| s.replicas == 30)
            && pod_names(&env, "rask.dev/cluster=big").await.len() == 30
    })
    .await;
    assert!(ok, "did not converge (had {partial} pods at the kill)");
    let names = pod_names(&env, "rask.dev/cluster=big").await;
    let mut expected: Vec<String> = (0..30).map(|i| format!("big-default-worker-{i}")).collect();
    expected.sort();
    assert_eq!(names, expected, "exactly the 30 workers, no duplicates");
    assert_eq!(env.api::<Deployment>().list(&ListParams::default()).await.expect("list").items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_operators_only_the_leader_writes() {
    let env = TestEnv::new("leader").await;
    let mut a = env.start_operator_process("op-a", &[]);
    let leases: Api<Lease> = env.api();
    let ok = eventually(WAIT, || async {
        leases.get_opt("rask-operator").await.ok().flatten().and_then(|l| l.spec?.holder_identity).as_deref()
            == Some("op-a")
    })
    .await;
    assert!(ok, "op-a did not take the Lease");
    let mut b = env.start_operator_process("op-b", &[]);
    assert!(env.apply(&cluster_yaml("le", 2, "")).ok);
    let ok = eventually(WAIT, || async { pod_names(&env, "rask.dev/cluster=le").await.len() == 2 }).await;
    assert!(ok);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Every Event came from the leader; the standby never started its controllers.
    let instances: std::collections::BTreeSet<String> =
        events(&env).await.into_iter().filter_map(|e| e.reporting_instance).collect();
    assert_eq!(instances, ["op-a".to_string()].into());
    assert!(!b.output().contains("controllers started"), "the standby ran controllers");
    // Metrics and health of both.
    let a_out = a.output();
    let metrics_url = |out: &str| {
        out.lines()
            .find_map(|l| l.split("rask operator metrics at http://").nth(1))
            .and_then(|s| s.split('/').next())
            .map(str::to_string)
            .expect("metrics address")
    };
    let a_addr = metrics_url(&a_out);
    let b_addr = metrics_url(&b.output());
    let get = |addr: String, path: &'static str| {
        tokio::task::spawn_blocking(move || rask_tests::processes::http(&addr, "GET", path, None, &[]))
    };
    let (code, text) = get(a_addr.clone(), "/metrics").await.expect("metrics");
    assert_eq!(code, 200);
    for name in [
        "rask_operator_reconciles_total{controller=\"daskcluster\"}",
        "rask_operator_reconcile_duration_seconds_bucket",
        "rask_operator_clusters{phase=\"Pending\"} 1",
        "rask_operator_workers_desired 2",
        "rask_operator_workers_actual 2",
        "rask_operator_leader 1",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    let (_, text) = get(b_addr.clone(), "/metrics").await.expect("metrics");
    assert!(text.contains("rask_operator_leader 0"));
    assert_eq!(get(b_addr.clone(), "/healthz").await.expect("healthz").0, 200);
    assert_eq!(get(b_addr.clone(), "/readyz").await.expect("readyz").0, 200);

    // SIGTERM: the leader stops gracefully and releases the Lease; the
    // standby takes over and serves a change.
    a.terminate();
    assert!(a.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()), "op-a did not stop gracefully");
    let ok = eventually(WAIT, || async {
        leases.get_opt("rask-operator").await.ok().flatten().and_then(|l| l.spec?.holder_identity).as_deref()
            == Some("op-b")
    })
    .await;
    assert!(ok, "op-b did not take over");
    assert!(env.kubectl(&["scale", "dc/le", "--replicas=3"]).ok);
    let ok = eventually(WAIT, || async { pod_names(&env, "rask.dev/cluster=le").await.len() == 3 }).await;
    assert!(ok, "the new leader did not reconcile");
    drop(b);
}

async fn run_job(env: &TestEnv, name: &str, succeed: bool) {
    let operator = env.start_operator();
    let _agent = env.node_agent(None);
    let yaml = format!(
        "apiVersion: rask.dev/v1alpha1\nkind: DaskJob\nmetadata:\n  name: {name}\nspec:\n  backoffLimit: 3\n  activeDeadlineSeconds: 600\n  ttlSecondsAfterFinished: 60\n  job:\n    template:\n      spec:\n        containers:\n        - name: client\n          command: [rask, demo, delayed]\n  cluster:\n    worker:\n      replicas: 1\n"
    );
    assert!(env.apply(&yaml).ok);
    let jobs: Api<Job> = env.api();
    let daskjobs: Api<DaskJob> = env.api();
    let ok =
        eventually(WAIT, || async { !jobs.list(&ListParams::default()).await.expect("jobs").items.is_empty() }).await;
    assert!(ok, "no runner Job: {:?}", daskjobs.get(name).await.ok().and_then(|j| j.status));
    let dj = daskjobs.get(name).await.expect("dj");
    let job = jobs.list(&ListParams::default()).await.expect("jobs").items.remove(0);
    let uid = dj.metadata.uid.clone().expect("uid");
    assert_eq!(job.name_any(), format!("{name}-runner-{}", &uid.replace('-', "")[..8]), "unique runner name");
    let spec = job.spec.clone().expect("job spec");
    assert_eq!(
        (spec.backoff_limit, spec.active_deadline_seconds, spec.ttl_seconds_after_finished),
        (Some(3), Some(600), Some(60))
    );
    let client_env = spec.template.spec.expect("pod").containers[0].env.clone().unwrap_or_default();
    assert!(client_env.iter().any(|e| e.name == "DASK_SCHEDULER_ADDRESS"));
    assert_eq!(job.owner_references()[0].uid, uid);
    let ok = eventually(WAIT, || async {
        daskjobs.get(name).await.ok().and_then(|j| j.status).and_then(|s| s.phase) == Some(JobPhase::Running)
    })
    .await;
    assert!(ok, "not Running");
    assert!(env.api::<DaskCluster>().get_opt(name).await.expect("get").is_some(), "the job's cluster exists");

    // The test plays the Job controller: the runner ends.
    let now = "2026-01-01T00:00:00Z";
    let later = "2026-01-01T00:01:00Z";
    let status = if succeed {
        serde_json::json!({"status": {"startTime": now, "completionTime": later, "succeeded": 1, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": later, "lastTransitionTime": later},
            {"type": "Complete", "status": "True", "lastProbeTime": later, "lastTransitionTime": later}]}})
    } else {
        serde_json::json!({"status": {"startTime": now, "failed": 4, "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "lastProbeTime": later, "lastTransitionTime": later},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastProbeTime": later, "lastTransitionTime": later}]}})
    };
    jobs.patch_status(&job.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await.expect("set Job status");
    let want = if succeed { JobPhase::Succeeded } else { JobPhase::Failed };
    let ok = eventually(WAIT, || async {
        daskjobs.get(name).await.ok().and_then(|j| j.status).and_then(|s| s.phase) == Some(want)
    })
    .await;
    assert!(ok, "not {want:?}: {:?}", daskjobs.get(name).await.ok().and_then(|j| j.status));
    let status = daskjobs.get(name).await.expect("dj").status.expect("status");
    assert!(status.start_time.is_some() && status.end_time.is_some());
    assert_eq!(status.cluster_name.as_deref(), Some(name));
    // The cluster is torn down, and with it (garbage collection) its children.
    let ok = eventually(WAIT, || async {
        env.api::<DaskCluster>().get_opt(name).await.expect("get").is_none()
            && pod_names(env, &format!("rask.dev/cluster={name}")).await.is_empty()
    })
    .await;
    assert!(ok, "the job's cluster was not cleaned up");
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dask_job_runs_to_succeeded() {
    let env = TestEnv::new("job-ok").await;
    run_job(&env, "etl", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dask_job_runs_to_failed() {
    let env = TestEnv::new("job-fail").await;
    run_job(&env, "etl", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_follows_the_scheduler_and_retires_through_it() {
    let env = TestEnv::new("autoscale").await;
    let scheduler = tokio::task::spawn_blocking(|| Scheduler::start(&[])).await.expect("scheduler");
    let _agent = env.node_agent(Some(scheduler.address.clone()));
    let operator = env.start_operator_with_url_annotation();
    // An idle scheduler wants no workers: the operator goes to the minimum,
    // after a (here zero) stabilization window, retiring through the scheduler.
    let yaml = format!(
        "apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: auto\n  annotations: {{{}}}\nspec:\n  worker:\n    replicas: 3\n  autoscaling: {{minimum: 1, maximum: 4, scaleDownStabilizationSeconds: 0}}\n",
        scheduler_annotation(&scheduler)
    );
    assert!(env.apply(&yaml).ok);
    let ok = eventually(WAIT, || async {
        cluster(&env, "auto").await.spec.worker.replicas == 1
            && pod_names(&env, "rask.dev/cluster=auto").await.len() == 1
    })
    .await;
    assert!(ok, "did not scale to the minimum: {:?}", pod_names(&env, "rask.dev/cluster=auto").await);
    assert!(has_event(&env, "ScaledDown").await);
    // The status says why (written at the end of the reconcile that scaled).
    let ok = eventually(WAIT, || async {
        cluster(&env, "auto").await.status.and_then(|s| s.autoscaling).is_some_and(|a| {
            a.last_decision.as_deref() == Some("ScaledDown") && a.reason.is_some_and(|r| r.contains("idle"))
        })
    })
    .await;
    assert!(ok, "status.autoscaling: {:?}", cluster(&env, "auto").await.status.and_then(|s| s.autoscaling));
    let ok = eventually(WAIT, || async { scheduler_workers(&scheduler.http).await["num_workers"] == 1 }).await;
    assert!(ok, "the scheduler still has {}", scheduler_workers(&scheduler.http).await);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cluster_is_deleted_after_its_idle_timeout() {
    let env = TestEnv::new("idle").await;
    let scheduler = tokio::task::spawn_blocking(|| Scheduler::start(&[])).await.expect("scheduler");
    let _agent = env.node_agent(None);
    let operator = env.start_operator_with_url_annotation();
    let yaml = format!(
        "apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: idle\n  annotations: {{{}}}\nspec:\n  worker:\n    replicas: 0\n  idleTimeoutSeconds: 2\n",
        scheduler_annotation(&scheduler)
    );
    assert!(env.apply(&yaml).ok);
    let ok =
        eventually(WAIT, || async { env.api::<DaskCluster>().get_opt("idle").await.expect("get").is_none() }).await;
    assert!(ok, "the idle cluster was not deleted");
    assert!(has_event(&env, "IdleTimeout").await);
    operator.stop().await;
}

/// A DaskJob whose name is taken by a user's DaskCluster never takes the
/// cluster over (no apply over its spec, no ownerReference, so deleting the
/// job cannot garbage-collect it): the job says why and waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dask_job_never_takes_over_a_cluster_it_does_not_own() {
    let env = TestEnv::new("job-foreign").await;
    let operator = env.start_operator();
    let user = "apiVersion: rask.dev/v1alpha1\nkind: DaskCluster\nmetadata:\n  name: shared\nspec:\n  image: team/prod:1\n  worker:\n    replicas: 3\n";
    assert!(env.apply(user).ok);
    let job = "apiVersion: rask.dev/v1alpha1\nkind: DaskJob\nmetadata:\n  name: shared\nspec:\n  job:\n    template:\n      spec:\n        containers:\n        - name: client\n          command: [rask, demo, delayed]\n  cluster:\n    worker:\n      replicas: 1\n";
    assert!(env.apply(job).ok);
    let daskjobs: Api<DaskJob> = env.api();
    let ok = eventually(WAIT, || async {
        daskjobs.get("shared").await.ok().and_then(|j| j.status).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "ClusterReady" && c.status == "False" && c.reason == "ClusterNameTaken")
        })
    })
    .await;
    assert!(ok, "no ClusterNameTaken condition: {:?}", daskjobs.get("shared").await.ok().and_then(|j| j.status));
    assert!(eventually(WAIT, || has_event(&env, "ClusterNameTaken")).await, "no ClusterNameTaken Event");
    let dc = cluster(&env, "shared").await;
    assert_eq!((dc.spec.image.as_str(), dc.spec.worker.replicas), ("team/prod:1", 3), "the user's spec was changed");
    assert!(dc.owner_references().is_empty(), "the job adopted the cluster: {:?}", dc.owner_references());
    let jobs: Api<Job> = env.api();
    assert!(
        jobs.list(&ListParams::default()).await.expect("jobs").items.is_empty(),
        "a runner ran on a foreign cluster"
    );
    // Deleting the job leaves the user's cluster alone.
    assert!(env.kubectl(&["delete", "daskjob", "shared", "--wait=true"]).ok);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dc = env.api::<DaskCluster>().get_opt("shared").await.expect("get");
    assert!(dc.is_some_and(|c| c.spec.worker.replicas == 3), "the user's cluster went with the job");
    operator.stop().await;
}

/// A Service of the scheduler's name that someone else made is not taken
/// over by a forced apply: the cluster reports the conflict (Event,
/// `Ready=False` with reason `NameTaken`) and recovers once the name is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_name_held_by_another_owner_is_reported_not_taken() {
    let env = TestEnv::new("foreign-svc").await;
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-scheduler\nspec:\n  ports:\n  - port: 80\n";
    assert!(env.apply(svc).ok);
    let operator = env.start_operator();
    assert!(env.apply(&cluster_yaml("web", 1, "")).ok);
    let ok = eventually(WAIT, || async {
        let dc = cluster(&env, "web").await;
        let ready = dc.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
        ready.is_some_and(|c| c.status == "False" && c.reason == "NameTaken" && c.message.contains("web-scheduler"))
    })
    .await;
    assert!(ok, "no Ready=False/NameTaken: {:?}", cluster(&env, "web").await.status);
    assert!(eventually(WAIT, || has_event(&env, "FailedApply")).await, "no FailedApply Event");
    let services: Api<Service> = env.api();
    let held = services.get("web-scheduler").await.expect("svc");
    assert!(held.owner_references().is_empty(), "the Service was taken over");
    assert_eq!(held.spec.as_ref().and_then(|s| s.ports.as_ref()).map(|p| p[0].port), Some(80));
    // Once the name is free, the next retry (backoff 5 s, 10 s, ...) makes the scheduler.
    assert!(env.kubectl(&["delete", "service", "web-scheduler", "--wait=true"]).ok);
    let ok = eventually(WAIT, || async {
        services
            .get_opt("web-scheduler")
            .await
            .expect("get")
            .is_some_and(|s| s.owner_references().iter().any(|r| r.kind == "DaskCluster" && r.name == "web"))
            && env.api::<Deployment>().get_opt("web-scheduler").await.expect("get").is_some()
    })
    .await;
    assert!(ok, "the scheduler was not made once the name was free");
    operator.stop().await;
}

/// A worker that exits at once is replaced after a backoff (5 s, doubling),
/// not in a hot loop, and the cluster says why: a `WorkersFailing`
/// condition and Event with the container's exit reason. The test plays the
/// kubelet: every worker pod it sees fails at once with exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_looping_workers_back_off_and_say_why() {
    let env = TestEnv::new("crashloop").await;
    let operator = env.start_operator();
    assert!(env.apply(&cluster_yaml("crash", 1, "")).ok);
    let pods_api: Api<Pod> = env.api();
    let mut seen = std::collections::BTreeSet::new();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        for pod in pods(&env, "rask.dev/cluster=crash,rask.dev/component=worker").await {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() || !seen.insert(uid) {
                continue;
            }
            let t = "2026-01-01T00:00:00Z";
            let status = serde_json::json!({"status": {"phase": "Failed", "containerStatuses": [{
                "name": "worker", "image": "rask", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "cannot parse --memory-limit lots",
                                         "startedAt": t, "finishedAt": t}}}]}});
            pods_api
                .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&status))
                .await
                .expect("fail the pod");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Without a backoff this was 56 pods in 20 s; with 5 s, 10 s, 20 s: 3 or 4.
    assert!((2..=5).contains(&seen.len()), "{} worker pods in 20 s", seen.len());
    let dc = cluster(&env, "crash").await;
    let (status, message) = condition(&dc, "WorkersFailing").expect("a WorkersFailing condition");
    assert_eq!(status, "True", "{message}");
    assert!(message.contains("exit code 1") && message.contains("--memory-limit lots"), "{message}");
    let (ready, _) = condition(&dc, "Ready").expect("Ready");
    assert_eq!(ready, "False");
    assert!(has_event(&env, "WorkersFailing").await, "no WorkersFailing Event");
    operator.stop().await;
}

/// Deleted clusters are forgotten: the operator's gauges (clusters by
/// phase, desired workers) fall back to zero, though no finalizer makes a
/// reconcile see the deletion (the watch's delete event does it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_clusters_leave_the_gauges() {
    let env = TestEnv::new("forget").await;
    let mut operator = env.start_operator_process("op-forget", &[]);
    let line = operator.wait_for_line("rask operator metrics at", WAIT);
    let addr = line.split("http://").nth(1).and_then(|s| s.split('/').next()).expect("metrics address").to_string();
    let gauge = |name: &'static str| {
        let addr = addr.clone();
        async move {
            let (_, body) =
                tokio::task::spawn_blocking(move || rask_tests::processes::http(&addr, "GET", "/metrics", None, &[]))
                    .await
                    .expect("scrape");
            body.lines()
                .filter(|l| l.starts_with(name) && !l.starts_with('#'))
                .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
                .sum::<f64>()
        }
    };
    for i in 0..3 {
        assert!(env.apply(&cluster_yaml(&format!("gone{i}"), 2, "")).ok);
    }
    let counted = eventually(WAIT, || async {
        gauge("rask_operator_clusters").await == 3.0 && gauge("rask_operator_workers_desired").await == 6.0
    })
    .await;
    assert!(
        counted,
        "clusters {} desired {}",
        gauge("rask_operator_clusters").await,
        gauge("rask_operator_workers_desired").await
    );
    assert!(env.kubectl(&["delete", "daskcluster", "--all", "--wait=true"]).ok);
    let forgotten = eventually(WAIT, || async {
        gauge("rask_operator_clusters").await == 0.0 && gauge("rask_operator_workers_desired").await == 0.0
    })
    .await;
    assert!(
        forgotten,
        "after delete: clusters {} desired {}",
        gauge("rask_operator_clusters").await,
        gauge("rask_operator_workers_desired").await
    );
    operator.kill();
}

/// A DaskWorkerGroup made before its cluster says so, and starts its
/// workers as soon as the cluster appears: the cluster's watch event wakes
/// it (the fallback requeue is minutes away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_group_wakes_when_its_cluster_appears() {
    let env = TestEnv::new("group-wait").await;
    let operator = env.start_operator();
    let wg = "apiVersion: rask.dev/v1alpha1\nkind: DaskWorkerGroup\nmetadata:\n  name: early\nspec:\n  cluster: late\n  worker:\n    replicas: 1\n";
    assert!(env.apply(wg).ok);
    let groups: Api<DaskWorkerGroup> = env.api();
    let waiting = eventually(WAIT, || async {
        groups.get("early").await.ok().and_then(|g| g.status).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "ClusterFound" && c.status == "False" && c.reason == "ClusterNotFound")
        })
    })
    .await;
    assert!(waiting, "no ClusterFound=False: {:?}", groups.get("early").await.ok().and_then(|g| g.status));
    let created = std::time::Instant::now();
    assert!(env.apply(&cluster_yaml("late", 0, "")).ok);
    let sel = "rask.dev/cluster=late,rask.dev/worker-group=early";
    let ok = eventually(WAIT, || async { pod_names(&env, sel).await.len() == 1 }).await;
    assert!(ok, "the group never started its worker");
    assert!(created.elapsed() < Duration::from_secs(8), "woke after {:?}: a poll, not the watch", created.elapsed());
    operator.stop().await;
}
