//! The Helm chart (charts/rask-operator): `helm lint` and `helm template` for
//! the default values and every documented option combination, the chart's
//! CRDs against `rask crdgen`, the rendered manifests through the real
//! kube-apiserver's server-side dry run, and `helm install`, the operator
//! running under the chart's ServiceAccount (its RBAC is enough), `helm
//! upgrade` with a changed CRD and `helm uninstall` keeping the CRDs.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use rask_operator::crd::DaskCluster;
use rask_tests::processes::{Proc, rask_bin};
use serde_json::Value;
use support::pack::{chart_dir, documents, helm, of_kind, render};
use support::{TestEnv, eventually, repo_root};

const WAIT: Duration = Duration::from_secs(60);

/// The documented option combinations (docs/operations.md), by name.
const COMBINATIONS: &[(&str, &[&str])] = &[
    ("defaults", &[]),
    ("watchNamespace", &["watchNamespace=team-a"]),
    ("serviceMonitor", &["serviceMonitor.enabled=true"]),
    ("podMonitor", &["podMonitor.enabled=true"]),
    ("prometheusRule", &["prometheusRule.enabled=true"]),
    ("networkPolicy", &["networkPolicy.enabled=true"]),
    (
        "schedulers with a token and TLS",
        &[
            "schedulerAuth.tokenSecret.name=rask-token",
            "schedulerAuth.caSecret.name=rask-ca",
            "schedulerAuth.serverName=rask-scheduler",
        ],
    ),
    (
        "podMonitor with the schedulers' token",
        &[
            "podMonitor.enabled=true",
            "schedulerAuth.tokenSecret.name=rask-token",
            "schedulerAuth.caSecret.name=rask-ca",
        ],
    ),
    (
        "token over plain HTTP, URL annotation honoured (tests)",
        &[
            "schedulerAuth.tokenSecret.name=rask-token",
            "schedulerAuth.allowPlaintextToken=true",
            "schedulerAuth.schedulerUrlAnnotation=true",
        ],
    ),
    ("dashboards off", &["dashboards.enabled=false"]),
    ("replicas 2", &["replicas=2"]),
    ("crds managed elsewhere", &["crds.install=false"]),
    ("operator applies the CRDs", &["crds.install=false", "crds.applyByOperator=true"]),
    (
        "everything on, one namespace",
        &[
            "watchNamespace=team-a",
            "serviceMonitor.enabled=true",
            "podMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "networkPolicy.enabled=true",
            "replicas=2",
        ],
    ),
    (
        "everything on, all namespaces",
        &[
            "serviceMonitor.enabled=true",
            "podMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "networkPolicy.enabled=true",
            "replicas=2",
        ],
    ),
];

fn sets_of(name: &str) -> &'static [&'static str] {
    COMBINATIONS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).expect("combination")
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs.iter().map(|d| d["kind"].as_str().unwrap_or("?").to_string()).collect();
    k.sort();
    k
}

fn count(docs: &[Value], kind: &str) -> usize {
    of_kind(docs, kind).len()
}

fn args(docs: &[Value]) -> Vec<String> {
    let deployment = of_kind(docs, "Deployment")[0];
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg").to_string())
        .collect()
}

fn rules_resources(role: &Value) -> Vec<String> {
    role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| r["resources"].as_array().cloned().unwrap_or_default())
        .map(|r| r.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn chart_lints_and_renders_for_every_documented_combination() {
    let chart = chart_dir();
    let chart_str = chart.to_string_lossy().to_string();
    for (name, sets) in COMBINATIONS {
        let mut lint = vec!["lint", "--strict", chart_str.as_str()];
        let set_args = support::pack::set_args(sets);
        lint.extend(set_args.iter().map(String::as_str));
        let run = helm(None, &lint);
        assert!(run.ok, "helm lint ({name}) failed:\n{}\n{}", run.stdout, run.stderr);
        let docs = render(&chart, "rask-operator", "rask-system", sets)
            .unwrap_or_else(|e| panic!("helm template ({name}) failed: {e}"));
        assert!(!docs.is_empty(), "{name}: nothing rendered");
        for doc in &docs {
            assert!(doc["metadata"]["name"].is_string(), "{name}: a document without a name: {doc}");
        }
    }

    // Defaults: cluster-wide RBAC, CRDs kept on uninstall, a hardened pod.
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("defaults")).unwrap();
    assert_eq!(count(&docs, "CustomResourceDefinition"), 3, "{:?}", kinds(&docs));
    assert_eq!(count(&docs, "ClusterRole"), 1);
    assert_eq!(count(&docs, "ClusterRoleBinding"), 1);
    assert_eq!(count(&docs, "ServiceAccount"), 1);
    assert_eq!(count(&docs, "Service"), 1);
    assert_eq!(count(&docs, "ConfigMap"), 2, "two dashboards");
    for absent in ["ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy"] {
        assert_eq!(count(&docs, absent), 0, "{absent} is opt-in");
    }
    for crd in of_kind(&docs, "CustomResourceDefinition") {
        assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "{}", crd["metadata"]);
    }
    let pod = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(c["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"]["memory"].is_string());
    let a = args(&docs);
    assert_eq!(a[0], "operator");
    assert!(a.contains(&"--lease-namespace=rask-system".to_string()), "{a:?}");
    assert!(!a.iter().any(|x| x.starts_with("--namespace")), "{a:?}");
    let cluster_role = of_kind(&docs, "ClusterRole")[0];
    for r in ["daskclusters", "daskclusters/status", "daskclusters/scale", "pods", "deployments", "services", "jobs"] {
        assert!(rules_resources(cluster_role).contains(&r.to_string()), "ClusterRole lacks {r}");
    }
    // Nothing the operator does not call: no secrets, no wildcards.
    let text = cluster_role.to_string();
    assert!(!text.contains("secrets") && !text.contains("\"*\""), "{text}");

    // watchNamespace: a Role there, no cluster-wide grant.
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("watchNamespace")).unwrap();
    assert_eq!(count(&docs, "ClusterRole") + count(&docs, "ClusterRoleBinding"), 0, "{:?}", kinds(&docs));
    let roles = of_kind(&docs, "Role");
    let watched = roles.iter().find(|r| r["metadata"]["namespace"] == "team-a").expect("a Role in team-a");
    assert!(rules_resources(watched).contains(&"pods".to_string()));
    assert!(args(&docs).contains(&"--namespace=team-a".to_string()));

    // Monitors carry the relabelings the dashboards and alerts rely on.
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("podMonitor")).unwrap();
    let pm = of_kind(&docs, "PodMonitor")[0].to_string();
    for needle in ["__meta_kubernetes_pod_label_rask_dev_cluster", "\"cluster\"", "rask-$1", "http-dashboard"] {
        assert!(pm.contains(needle), "PodMonitor lacks {needle}: {pm}");
    }
    assert!(!pm.contains("authorization"), "no token, no credentials: {pm}");
    // With a token, every scrape presents it (schedulers and workers serve
    // /metrics only to holders of the token).
    let docs = render(&chart, "r", "rask-system", sets_of("podMonitor with the schedulers' token")).unwrap();
    let endpoints = of_kind(&docs, "PodMonitor")[0]["spec"]["podMetricsEndpoints"].as_array().unwrap().clone();
    assert_eq!(endpoints.len(), 2);
    for e in &endpoints {
        assert_eq!(e["authorization"]["type"], "Bearer", "{e}");
        assert_eq!(e["authorization"]["credentials"]["name"], "rask-token", "{e}");
        assert_eq!(e["authorization"]["credentials"]["key"], "token", "{e}");
    }
    let docs =
        render(&chart, "r", "rask-system", &["podMonitor.enabled=true", "podMonitor.tokenSecret.name=scrape"]).unwrap();
    assert!(of_kind(&docs, "PodMonitor")[0].to_string().contains("\"scrape\""));
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("serviceMonitor")).unwrap();
    assert!(of_kind(&docs, "ServiceMonitor")[0].to_string().contains("rask-operator"));

    // The PrometheusRule is the promtool-checked rules file, unchanged.
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("prometheusRule")).unwrap();
    let rules_file = std::fs::read_to_string(chart.join("rules/rask-alerts.yaml")).unwrap();
    let rules: Value = serde_yaml::from_str(&rules_file).unwrap();
    assert_eq!(of_kind(&docs, "PrometheusRule")[0]["spec"], rules);

    // Dashboards: the checked-in JSON, labelled for Grafana's sidecar.
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("defaults")).unwrap();
    for cm in of_kind(&docs, "ConfigMap") {
        assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
        let (file, json) = cm["data"].as_object().unwrap().iter().next().unwrap();
        let on_disk = std::fs::read_to_string(chart.join("dashboards").join(file)).unwrap();
        let a: Value = serde_json::from_str(json.as_str().unwrap()).unwrap();
        let b: Value = serde_json::from_str(&on_disk).unwrap();
        assert_eq!(a, b, "{file}");
    }
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("dashboards off")).unwrap();
    assert_eq!(count(&docs, "ConfigMap"), 0);
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("crds managed elsewhere")).unwrap();
    assert_eq!(count(&docs, "CustomResourceDefinition"), 0);
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("operator applies the CRDs")).unwrap();
    assert!(args(&docs).contains(&"--apply-crds".to_string()));
    let crd_role = of_kind(&docs, "ClusterRole").into_iter().find(|r| r["metadata"]["name"] == "rask-operator-crds");
    assert!(crd_role.expect("a ClusterRole for the CRDs").to_string().contains("daskclusters.rask.dev"));
    assert!(!args(&render(&chart, "r", "ns", &[]).unwrap()).contains(&"--apply-crds".to_string()));
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("networkPolicy")).unwrap();
    assert_eq!(count(&docs, "NetworkPolicy"), 1);
    // Schedulers choose their dashboardPort: by default the operator may reach
    // any port of scheduler pods (and only those); a list narrows it.
    let to_schedulers = |docs: &[Value]| {
        of_kind(docs, "NetworkPolicy")[0]["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .find(|rule| rule.to_string().contains("scheduler"))
            .cloned()
            .expect("an egress rule to scheduler pods")
    };
    assert!(to_schedulers(&docs)["ports"].is_null(), "{}", to_schedulers(&docs));
    let mut narrowed: Vec<&str> = sets_of("networkPolicy").to_vec();
    narrowed.push("networkPolicy.schedulerHttpPorts={8787,9000}");
    let docs = render(&chart, "rask-operator", "rask-system", &narrowed).unwrap();
    let ports: Vec<i64> =
        to_schedulers(&docs)["ports"].as_array().unwrap().iter().map(|p| p["port"].as_i64().unwrap()).collect();
    assert_eq!(ports, vec![8787, 9000]);

    // Schedulers' token and CA come from Secrets the kubelet mounts; the
    // operator itself still may not read Secrets.
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("schedulers with a token and TLS")).unwrap();
    let pod = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"];
    let env = pod["containers"][0]["env"].to_string();
    for needle in ["RASK_SCHEDULER_TOKEN", "rask-token", "RASK_SCHEDULER_TLS_CA_FILE", "/etc/rask/scheduler-ca/ca.crt"]
    {
        assert!(env.contains(needle), "env lacks {needle}: {env}");
    }
    assert!(env.contains("RASK_SCHEDULER_TLS_SERVER_NAME") && env.contains("rask-scheduler"), "{env}");
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "rask-ca");
    assert_eq!(pod["containers"][0]["volumeMounts"][0]["mountPath"], "/etc/rask/scheduler-ca");
    assert!(!of_kind(&docs, "ClusterRole")[0].to_string().contains("secrets"));
    let defaults = render(&chart, "rask-operator", "rask-system", &[]).unwrap();
    let plain = of_kind(&defaults, "Deployment")[0]["spec"]["template"]["spec"].clone();
    assert!(!plain["containers"][0]["env"].to_string().contains("RASK_SCHEDULER_TOKEN"));
    assert!(plain["volumes"].is_null(), "no volumes by default: {}", plain["volumes"]);
    for off in ["RASK_SCHEDULER_TOKEN_OVER_HTTP", "RASK_OPERATOR_SCHEDULER_URL_ANNOTATION"] {
        assert!(!plain["containers"][0]["env"].to_string().contains(off), "{off} is on by default");
    }
    // The token travels over HTTPS only, unless plaintext is allowed
    // explicitly; the URL annotation is honoured only when asked for.
    let err = render(&chart, "r", "ns", &["schedulerAuth.tokenSecret.name=rask-token"]).unwrap_err();
    assert!(err.contains("caSecret") && err.contains("HTTPS"), "{err}");
    let docs = render(&chart, "r", "ns", sets_of("token over plain HTTP, URL annotation honoured (tests)")).unwrap();
    let env = of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    for on in ["RASK_SCHEDULER_TOKEN_OVER_HTTP", "RASK_OPERATOR_SCHEDULER_URL_ANNOTATION"] {
        assert!(env.contains(on), "{on} missing: {env}");
    }

    // Two replicas elect a leader on the release's Lease.
    let docs = render(&chart, "rask-operator", "rask-system", sets_of("replicas 2")).unwrap();
    assert_eq!(of_kind(&docs, "Deployment")[0]["spec"]["replicas"], 2);
    assert!(args(&docs).contains(&"--lease-name=rask-operator".to_string()));
    assert!(!args(&docs).contains(&"--no-leader-election".to_string()));

    // Combinations that cannot work are refused, with the reason.
    let err = render(&chart, "r", "ns", &["replicas=2", "leaderElection.enabled=false"]).unwrap_err();
    assert!(err.contains("leaderElection"), "{err}");
    let docs = render(&chart, "r", "ns", &["leaderElection.enabled=false"]).unwrap();
    assert!(args(&docs).contains(&"--no-leader-election".to_string()));
    for bad in ["replicas=0", "logFormat=xml", "watchNamespace=Not_A_Namespace", "unknownOption=1"] {
        let err = render(&chart, "r", "ns", &[bad]).expect_err(bad);
        assert!(err.contains("schema"), "{bad}: {err}");
    }
}

#[test]
fn chart_crds_are_the_generated_crds() {
    // The chart reads files/crds, a symlink to the repository's crds/ (helm
    // follows it, and `helm package` stores the files), which `rask crdgen`
    // writes; operator.rs checks crds/ against the Rust types, this checks
    // what the chart reads.
    let link = chart_dir().join("files/crds");
    let target = std::fs::read_link(&link).expect("charts/rask-operator/files/crds is a symlink");
    assert_eq!(target, Path::new("../../../crds"));
    for (file, yaml) in rask_operator::crd::crd_files().expect("crd_files") {
        let in_chart = std::fs::read_to_string(link.join(file)).unwrap_or_default();
        assert!(in_chart == yaml, "the chart's CRD {file} is not the generated one: run `rask crdgen --out crds`");
    }
    let files = std::fs::read_dir(&link).unwrap().count();
    assert_eq!(files, 3, "files/crds holds exactly the three CRDs");
    // And the rendered CRDs carry the same schema.
    let docs = render(&chart_dir(), "rask-operator", "rask-system", &[]).unwrap();
    for crd in rask_operator::crd::crds().unwrap() {
        let rendered = of_kind(&docs, "CustomResourceDefinition")
            .into_iter()
            .find(|d| d["metadata"]["name"] == crd["metadata"]["name"])
            .unwrap_or_else(|| panic!("{} not rendered", crd["metadata"]["name"]));
        assert_eq!(rendered["spec"], crd["spec"], "{}", crd["metadata"]["name"]);
    }
}

/// Minimal CRDs of prometheus-operator's kinds, so that the API server can
/// dry-run the chart's ServiceMonitor, PodMonitor and PrometheusRule.
fn install_monitoring_crds(env: &TestEnv) {
    let path = repo_root().join("operator/tests/fixtures/monitoring-crds.yaml");
    let out = env.cp.kubectl(None, &["apply", "--server-side", "-f", &path.to_string_lossy()]);
    assert!(out.ok, "installing the monitoring CRDs: {}", out.stderr);
    for crd in ["servicemonitors", "podmonitors", "prometheusrules"] {
        let name = format!("{crd}.monitoring.coreos.com");
        let jsonpath = "-o=jsonpath={.status.conditions[?(@.type=='Established')].status}";
        let ok = support::wait_for(WAIT, || env.cp.kubectl(None, &["get", "crd", &name, jsonpath]).stdout == "True");
        assert!(ok, "{name} did not become Established");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_manifests_pass_server_side_dry_run() {
    let env = TestEnv::new("helm-dry-run").await;
    install_monitoring_crds(&env);
    let watched = format!("{}-watched", env.ns);
    assert!(env.cp.kubectl(None, &["create", "namespace", &watched]).ok);
    let watch_set = format!("watchNamespace={watched}");
    let mut combos: Vec<(String, Vec<&str>)> = COMBINATIONS
        .iter()
        .map(|(n, s)| ((*n).to_string(), s.iter().copied().filter(|s| !s.starts_with("watchNamespace")).collect()))
        .collect();
    combos.push((
        "watched namespace, everything on".into(),
        vec![
            &watch_set,
            "serviceMonitor.enabled=true",
            "podMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "networkPolicy.enabled=true",
            "replicas=2",
        ],
    ));
    for (name, sets) in combos {
        let run = {
            let chart = chart_dir().to_string_lossy().to_string();
            let mut a = vec!["template".to_string(), "rask-dry".into(), chart, "--namespace".into(), env.ns.clone()];
            a.extend(support::pack::set_args(&sets));
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            helm(None, &a)
        };
        assert!(run.ok, "{name}: {}", run.stderr);
        assert!(!documents(&run.stdout).is_empty());
        // Every namespaced object names its namespace (the release's or the watched one).
        let out = env.cp.kubectl_stdin(None, &["apply", "--dry-run=server", "-f", "-"], Some(&run.stdout));
        assert!(out.ok, "{name}: kubectl apply --dry-run=server refused the chart:\n{}\n{}", out.stderr, out.stdout);
        for kind in ["deployment.apps", "serviceaccount", "service"] {
            assert!(out.stdout.contains(kind), "{name}: {kind} not applied:\n{}", out.stdout);
        }
    }
    // The dry run really validates: a bad Deployment is refused.
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: c}}, spec: {containers: [{name: x, image: y}]}}}\n";
    let out = env.cp.kubectl_stdin(Some(&env.ns), &["apply", "--dry-run=server", "-f", "-"], Some(bad));
    assert!(!out.ok, "a selector that does not match the template was accepted");
}

/// A kubeconfig that authenticates as the chart's ServiceAccount.
fn service_account_kubeconfig(env: &TestEnv, sa: &str) -> std::path::PathBuf {
    let token = env.kubectl(&["create", "token", sa, "--duration=1h"]);
    assert!(token.ok, "kubectl create token: {}", token.stderr);
    let admin = std::fs::read_to_string(&env.cp.kubeconfig).unwrap();
    let admin_token = admin.lines().find_map(|l| l.trim().strip_prefix("token: ")).expect("admin token").to_string();
    let path = env.cp.dir.join(format!("kubeconfig-{sa}"));
    std::fs::write(&path, admin.replace(&admin_token, token.stdout.trim())).unwrap();
    path
}

/// Makes CRDs that `kubectl apply` created adoptable by a Helm release: the
/// documented path from a kubectl install to the chart (docs/operations.md).
fn adopt_crds(env: &TestEnv, release: &str) {
    for crd in ["daskclusters.rask.dev", "daskworkergroups.rask.dev", "daskjobs.rask.dev"] {
        let annotate = env.cp.kubectl(
            None,
            &[
                "annotate",
                "--overwrite",
                "crd",
                crd,
                &format!("meta.helm.sh/release-name={release}"),
                &format!("meta.helm.sh/release-namespace={}", env.ns),
            ],
        );
        assert!(annotate.ok, "{}", annotate.stderr);
        let label = env.cp.kubectl(None, &["label", "--overwrite", "crd", crd, "app.kubernetes.io/managed-by=Helm"]);
        assert!(label.ok, "{}", label.stderr);
    }
}

fn crd_json(env: &TestEnv, name: &str) -> Value {
    let out = env.cp.kubectl(None, &["get", "crd", name, "-o", "json", "--show-managed-fields"]);
    assert!(out.ok, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        // Follows symlinks: the copy gets files/crds's contents.
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_operator_and_upgrade_changes_the_crds() {
    let env = TestEnv::new("helm-install").await;
    let kc = env.cp.kubeconfig.clone();
    let release = "rask";
    let fullname = "rask-rask-operator";
    adopt_crds(&env, release);
    let chart = chart_dir().to_string_lossy().to_string();
    // One namespace: the release's own, so tests in other namespaces are untouched.
    let watch = format!("watchNamespace={}", env.ns);
    let run = helm(
        Some(&kc),
        &["install", release, &chart, "--namespace", &env.ns, "--set", &watch, "--set", "image.tag=test"],
    );
    assert!(run.ok, "helm install failed:\n{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("kubectl apply") && run.stdout.contains("examples/cluster.yaml"),
        "NOTES:\n{}",
        run.stdout
    );
    let deployments: kube::Api<Deployment> = env.api();
    let d = deployments.get(fullname).await.expect("the operator Deployment");
    assert_eq!(
        d.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(),
        Some("registry.example.invalid/rask:test")
    );
    let crd = crd_json(&env, "daskclusters.rask.dev");
    assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
    assert_eq!(crd["metadata"]["labels"]["helm.sh/chart"], "rask-operator-0.1.0");

    // The operator under the chart's ServiceAccount: its RBAC is enough to
    // elect a leader, create the children, write status and record Events.
    let sa_kubeconfig = service_account_kubeconfig(&env, fullname);
    let mut cmd = std::process::Command::new(rask_bin());
    cmd.args(["operator", "--namespace", &env.ns, "--metrics-host", "127.0.0.1", "--metrics-port", "0"])
        .args(["--lease-name", fullname, "--lease-namespace", &env.ns, "--identity", "chart-sa"])
        .args(["--lease-duration", "4", "--lease-retry", "1"])
        .arg("--kubeconfig")
        .arg(&sa_kubeconfig)
        .env("RUST_LOG", "info,kube=warn");
    let mut operator = Proc::spawn("operator-as-sa", cmd);
    operator.wait_for_line("rask operator metrics at", WAIT);
    let example = std::fs::read_to_string(repo_root().join("examples/cluster.yaml")).unwrap();
    let applied = env.apply(&example);
    assert!(applied.ok, "{}", applied.stderr);
    let pods: kube::Api<Pod> = env.api();
    let ok = eventually(WAIT, || async {
        let workers = pods.list(&ListParams::default().labels("rask.dev/cluster=my,rask.dev/component=worker")).await;
        let scheduler = deployments.get_opt("my-scheduler").await.ok().flatten();
        workers.is_ok_and(|w| w.items.len() == 2) && scheduler.is_some()
    })
    .await;
    assert!(ok, "the operator under the chart's RBAC did not create the children:\n{}", operator.output());
    let clusters: kube::Api<DaskCluster> = env.api();
    let ok = eventually(WAIT, || async {
        clusters.get("my").await.ok().and_then(|c| c.status).is_some_and(|s| !s.conditions.is_empty())
    })
    .await;
    assert!(ok, "no status written under the chart's RBAC:\n{}", operator.output());
    let output = operator.output();
    assert!(!output.contains("forbidden"), "the chart's RBAC refused a call:\n{output}");
    operator.terminate();
    assert!(operator.wait_exit(Duration::from_secs(30)).is_some(), "the operator did not stop");

    // helm upgrade with a changed CRD (a new optional field): the API
    // server's CRD changes; helm never upgrades a chart's crds/ directory,
    // which is why the chart templates them.
    let changed = env.cp.dir.join("chart-with-changed-crd");
    let _ = std::fs::remove_dir_all(&changed);
    copy_dir(&chart_dir(), &changed);
    let crd_path = changed.join("files/crds/daskcluster.yaml");
    let mut crd_doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&crd_path).unwrap()).unwrap();
    crd_doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["upgradeProbe"] =
        serde_json::json!({"type": "string", "description": "added by the upgrade test"});
    std::fs::write(&crd_path, serde_yaml::to_string(&crd_doc).unwrap()).unwrap();
    let before = crd_json(&env, "daskclusters.rask.dev");
    let field = |crd: &Value| {
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["upgradeProbe"]
            .clone()
    };
    assert!(field(&before).is_null());
    let run = helm(
        Some(&kc),
        &[
            "upgrade",
            release,
            &changed.to_string_lossy(),
            "--namespace",
            &env.ns,
            "--set",
            &watch,
            "--set",
            "image.tag=test2",
        ],
    );
    assert!(run.ok, "helm upgrade failed:\n{}\n{}", run.stdout, run.stderr);
    let after = crd_json(&env, "daskclusters.rask.dev");
    assert_eq!(field(&after)["type"], "string", "helm upgrade did not change the CRD");
    let d = deployments.get(fullname).await.unwrap();
    assert_eq!(
        d.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(),
        Some("registry.example.invalid/rask:test2")
    );
    // The new field is served: the API server keeps it instead of pruning it.
    let patched = env.kubectl(&["patch", "dc/my", "--type=merge", "-p", r#"{"spec":{"upgradeProbe":"kept"}}"#]);
    assert!(patched.ok, "{}", patched.stderr);
    let got = env.kubectl(&["get", "dc/my", "-o", "jsonpath={.spec.upgradeProbe}"]);
    assert_eq!(got.stdout, "kept");

    // Back to the repository's chart: the field goes again (a downgrade).
    let run = helm(Some(&kc), &["upgrade", release, &chart, "--namespace", &env.ns, "--set", &watch]);
    assert!(run.ok, "helm upgrade back failed:\n{}", run.stderr);
    assert!(field(&crd_json(&env, "daskclusters.rask.dev")).is_null());

    // helm uninstall: the operator goes, the CRDs (and so every cluster) stay.
    let run = helm(Some(&kc), &["uninstall", release, "--namespace", &env.ns]);
    assert!(run.ok, "helm uninstall failed: {}", run.stderr);
    assert!(
        run.stdout.contains("kept due to the resource policy")
            || run.stderr.contains("kept due to the resource policy"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(deployments.get_opt(fullname).await.unwrap().is_none(), "the operator Deployment is still there");
    let kept = env.cp.kubectl(None, &["get", "crd", "daskclusters.rask.dev"]);
    assert!(kept.ok, "helm uninstall deleted the CRD");
    assert!(clusters.get_opt("my").await.unwrap().is_some(), "the DaskCluster went with the release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_applies_its_own_crds_under_the_charts_rbac() {
    // The upgrade path without Helm's CRD templates: crds.install=false,
    // crds.applyByOperator=true, and a live CRD older than the operator.
    let env = TestEnv::new("helm-apply-crds").await;
    let kc = env.cp.kubeconfig.clone();
    let (release, fullname) = ("crdop", "crdop-rask-operator");
    let chart = chart_dir().to_string_lossy().to_string();
    let watch = format!("watchNamespace={}", env.ns);
    let run = helm(
        Some(&kc),
        &["install", release, &chart, "--namespace", &env.ns, "--set", &watch]
            .into_iter()
            .chain(["--set", "crds.install=false", "--set", "crds.applyByOperator=true"])
            .collect::<Vec<_>>(),
    );
    assert!(run.ok, "helm install failed:\n{}\n{}", run.stdout, run.stderr);
    let crd = "daskworkergroups.rask.dev";
    let stale = env.cp.kubectl(
        None,
        &[
            "patch",
            "crd",
            crd,
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/versions/0/additionalPrinterColumns/0/jsonPath","value":".spec.stale"}]"#,
        ],
    );
    assert!(stale.ok, "{}", stale.stderr);
    // A field the operator's CRD sets, changed by someone else: an apply
    // with force takes it back.
    let column = |crd: &Value| crd["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPath"].clone();
    assert_eq!(column(&crd_json(&env, crd)), ".spec.stale");
    let generated = rask_operator::crd::crds().unwrap().into_iter().find(|c| c["metadata"]["name"] == crd).unwrap();

    let sa_kubeconfig = service_account_kubeconfig(&env, fullname);
    let mut cmd = std::process::Command::new(rask_bin());
    cmd.args([
        "operator",
        "--apply-crds",
        "--namespace",
        &env.ns,
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        "0",
    ])
    .args(["--lease-name", fullname, "--lease-namespace", &env.ns, "--identity", "crd-applier"])
    .arg("--kubeconfig")
    .arg(&sa_kubeconfig)
    .env("RUST_LOG", "info,kube=warn");
    let mut operator = Proc::spawn("operator-apply-crds", cmd);
    operator.wait_for_line("rask operator metrics at", WAIT);
    let ok = support::wait_for(WAIT, || {
        let live = crd_json(&env, crd);
        live["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|m| m.iter().any(|f| f["manager"] == "rask-operator" && f["operation"] == "Apply"))
            && column(&live) == column(&generated)
    });
    let live = crd_json(&env, crd);
    let managers: Vec<String> = live["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| format!("{} {}", f["manager"], f["operation"]))
        .collect();
    assert!(
        ok,
        "the operator did not apply its CRD: column {}, managers {managers:?}\n{}",
        column(&live),
        operator.output()
    );
    assert!(operator.wait_exit(Duration::from_secs(1)).is_none(), "the operator exited:\n{}", operator.output());
    let output = operator.output();
    assert!(!output.contains("forbidden"), "the chart's RBAC refused a call:\n{output}");
    operator.terminate();
    assert!(operator.wait_exit(Duration::from_secs(30)).is_some(), "the operator did not stop");
    let run = helm(Some(&kc), &["uninstall", release, "--namespace", &env.ns]);
    assert!(run.ok, "{}", run.stderr);
}
