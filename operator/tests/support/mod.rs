//! A real control plane for the operator's tests: etcd (from the
//! etcd-bin-vendored crate) and kube-apiserver plus kube-controller-manager
//! (garbage collection and namespace deletion), built from source once by
//! scripts/envtest.sh into ~/.cache/rask/envtest/<version>/. One control plane
//! per test binary, a namespace per test. No mock API server anywhere.
//!
//! There is no kubelet: [`NodeAgent`] plays the node. It marks worker pods
//! Running and Ready, marks the scheduler Deployment available, and (when
//! asked) starts a real `rask worker` process named after each pod, joined to
//! a real `rask scheduler` process that stands in for the scheduler pod.

// Test support: failing loudly with the context is the point.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rask_tests::processes::{Proc, WorkerKind, start_worker};

pub const K8S_VERSION: &str = "v1.34.4";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repo root")
}

fn envtest_dir() -> PathBuf {
    match std::env::var_os("RASK_ENVTEST_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/rask/envtest").join(K8S_VERSION),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts `program` so that it dies with this test process: a small shell
/// watchdog kills it when our pid goes away (statics are never dropped, and
/// the tests stay free of unsafe prctl calls).
fn spawn_watched(program: &Path, args: &[String], log: &Path) -> Child {
    let log_file = std::fs::File::create(log).expect("log file");
    let script = r#"watch=$1; shift; "$@" & child=$!; trap 'kill $child 2>/dev/null' TERM INT; while kill -0 "$watch" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done; kill -9 "$child" 2>/dev/null; wait "$child""#;
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .arg(std::process::id().to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()))
}

/// etcd, kube-apiserver and kube-controller-manager on loopback.
#[derive(Debug)]
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: String,
    children: Mutex<Vec<Child>>,
}

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();
/// kube-controller-manager's controllers, when a test binary needs more than
/// garbage collection and namespace deletion (see [`use_controllers`]).
static CONTROLLERS: OnceLock<String> = OnceLock::new();

/// Runs these kube-controller-manager controllers (e.g. with `deployment,
/// replicaset,job` for the kubelet's end-to-end tests) in this test binary's
/// control plane. Call before the first [`TestEnv::new`]; the first call wins.
pub fn use_controllers(list: &str) {
    let _ = CONTROLLERS.set(list.to_string());
}

impl ControlPlane {
    /// The control plane of this test binary, started on first use, with the
    /// CRDs installed and Established.
    pub fn get() -> &'static ControlPlane {
        CONTROL_PLANE.get_or_init(ControlPlane::start)
    }

    fn start() -> ControlPlane {
        let bin = envtest_dir();
        if !bin.join("kube-apiserver").exists() || !bin.join("kube-controller-manager").exists() {
            // Builds once (10-20 minutes cold); scripts/setup.sh normally did it.
            run(Command::new(repo_root().join("scripts/envtest.sh")).env("RASK_ENVTEST_DIR", &bin));
        }
        // Data of earlier runs whose test process is gone.
        for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.strip_prefix("rask-envtest-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = std::env::temp_dir().join(format!("rask-envtest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = |name: &str| dir.join(name).to_string_lossy().to_string();

        // A CA, a serving certificate for 127.0.0.1, and the service-account key pair.
        run(Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]).args([
            "-subj",
            "/CN=rask-envtest-ca",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.crt"),
        ]));
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("san");
        run(Command::new("openssl").args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"]).args([
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
        ]));
        run(Command::new("openssl").args(["x509", "-req", "-days", "2"]).args([
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &p("san.ext"),
            "-out",
            &p("server.crt"),
        ]));
        run(Command::new("openssl").args(["genrsa", "-out", &p("sa.key"), "2048"]));
        run(Command::new("openssl").args(["rsa", "-in", &p("sa.key"), "-pubout", "-out", &p("sa.pub")]));
        let token = format!("rask-test-{}", std::process::id());
        std::fs::write(dir.join("tokens.csv"), format!("{token},admin,admin,\"system:masters\"\n")).expect("tokens");

        let mut children = Vec::new();
        let etcd_port = free_port();
        let peer_port = free_port();
        let etcd = etcd_bin_vendored::etcd_bin_path().expect("etcd binary");
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        children.push(spawn_watched(
            etcd,
            &[
                format!("--data-dir={}", p("etcd")),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
            &dir.join("etcd.log"),
        ));
        let ok = wait_for(Duration::from_secs(30), || {
            Command::new("curl").args(["-sf", &format!("{etcd_url}/health")]).output().is_ok_and(|o| o.status.success())
        });
        assert!(ok, "etcd did not start: {}", std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default());

        let api_port = free_port();
        let server = format!("https://127.0.0.1:{api_port}");
        children.push(spawn_watched(
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers={etcd_url}"),
                format!("--cert-dir={}", p("certs")),
                format!("--tls-cert-file={}", p("server.crt")),
                format!("--tls-private-key-file={}", p("server.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--secure-port={api_port}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--allow-privileged=true".into(),
                "--authorization-mode=RBAC".into(),
                format!("--token-auth-file={}", p("tokens.csv")),
                format!("--service-account-issuer={server}/"),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                "--disable-admission-plugins=ServiceAccount".into(),
                "--enable-priority-and-fairness=false".into(),
                "--v=0".into(),
            ],
            &dir.join("kube-apiserver.log"),
        ));
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: envtest\n  context:\n    cluster: envtest\n    user: admin\ncurrent-context: envtest\n",
                ca = p("ca.crt")
            ),
        )
        .expect("kubeconfig");
        let kc = kubeconfig.to_string_lossy().to_string();
        let ok = wait_for(Duration::from_secs(90), || {
            Command::new("kubectl")
                .args(["--kubeconfig", &kc, "get", "--raw", "/readyz"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(ok, "kube-apiserver did not become ready: {}", tail(&dir.join("kube-apiserver.log")));

        children.push(spawn_watched(
            &bin.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={kc}"),
                format!("--authentication-kubeconfig={kc}"),
                format!("--authorization-kubeconfig={kc}"),
                format!("--controllers={}", CONTROLLERS.get().map_or("garbagecollector,namespace", |c| c.as_str())),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--v=0".into(),
            ],
            &dir.join("kube-controller-manager.log"),
        ));

        let cp = ControlPlane { dir, kubeconfig, server, children: Mutex::new(children) };
        // The user's way in: kubectl apply of the generated CRDs.
        let out = cp.kubectl(None, &["apply", "-f", &repo_root().join("crds").to_string_lossy()]);
        assert!(out.ok, "installing the CRDs failed: {}", out.stderr);
        // Polled rather than `kubectl wait`, which fails while conditions are still unset.
        for crd in ["daskclusters.rask.dev", "daskworkergroups.rask.dev", "daskjobs.rask.dev"] {
            let jsonpath = "-o=jsonpath={.status.conditions[?(@.type=='Established')].status}";
            let ok =
                wait_for(Duration::from_secs(60), || cp.kubectl(None, &["get", "crd", crd, jsonpath]).stdout == "True");
            assert!(ok, "CRD {crd} did not become Established");
        }
        cp
    }

    pub fn kubectl(&self, namespace: Option<&str>, args: &[&str]) -> Output {
        self.kubectl_stdin(namespace, args, None)
    }

    pub fn kubectl_stdin(&self, namespace: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        if let Some(ns) = namespace {
            cmd.args(["-n", ns]);
        }
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().expect("kubectl");
        if let Some(text) = stdin {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("kubectl output");
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    pub async fn client(&self) -> Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("client config");
        Client::try_from(config).expect("client")
    }
}

#[derive(Debug)]
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// The scheduler's `/api/v1/get_workers`, from a blocking-safe place.
pub async fn scheduler_workers(http: &str) -> serde_json::Value {
    let http = http.to_string();
    tokio::task::spawn_blocking(move || {
        let (code, body) = rask_tests::processes::http(&http, "GET", "/api/v1/get_workers", None, &[]);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    })
    .await
    .expect("get_workers")
}

pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    f()
}

/// Polls an async condition until it holds or the time is up.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f().await
}

/// One test's world: a fresh namespace, a client, kubectl in that namespace.
pub struct TestEnv {
    pub cp: &'static ControlPlane,
    pub ns: String,
    pub client: Client,
}

impl TestEnv {
    pub async fn new(name: &str) -> TestEnv {
        // The operator's logs, shown for failing tests (RUST_LOG to tune).
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        let cp = tokio::task::spawn_blocking(ControlPlane::get).await.expect("control plane");
        let client = cp.client().await;
        let ns = format!("t-{name}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let body: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("ns");
        namespaces.create(&PostParams::default(), &body).await.expect("create namespace");
        TestEnv { cp, ns, client }
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.cp.kubectl(Some(&self.ns), args)
    }

    pub fn apply(&self, yaml: &str) -> Output {
        self.cp.kubectl_stdin(Some(&self.ns), &["apply", "-f", "-"], Some(yaml))
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The operator in this process, watching this namespace only.
    pub fn start_operator(&self) -> InProcessOperator {
        self.start_operator_with(|_| {})
    }

    /// The operator honouring `rask.dev/scheduler-http-url`
    /// (`--scheduler-url-annotation`), for tests whose DaskClusters point
    /// it at a scheduler process on loopback.
    pub fn start_operator_with_url_annotation(&self) -> InProcessOperator {
        self.start_operator_with(|c| c.scheduler_url_annotation = true)
    }

    /// The operator in this process with its reconcilers' settings edited.
    pub fn start_operator_with(
        &self,
        edit: impl FnOnce(&mut rask_operator::controller::ControllerConfig),
    ) -> InProcessOperator {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut config = rask_operator::OperatorConfig {
            namespace: Some(self.ns.clone()),
            metrics_addr: "127.0.0.1:0".parse().expect("addr"),
            leader_election: false,
            controller: rask_operator::controller::ControllerConfig {
                busy_interval: Duration::from_secs(1),
                poll_interval: Duration::from_secs(1),
                retire_timeout: Duration::from_secs(60),
                ..Default::default()
            },
            ..Default::default()
        };
        edit(&mut config.controller);
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            rask_operator::run(client, config, async move {
                let _ = rx.await;
            })
            .await
        });
        InProcessOperator { stop: Some(tx), task: Some(task) }
    }

    /// `rask operator` as a separate process on this namespace.
    pub fn start_operator_process(&self, identity: &str, extra: &[&str]) -> Proc {
        let mut cmd = Command::new(rask_tests::processes::rask_bin());
        cmd.arg("operator")
            .args(["--namespace", &self.ns, "--metrics-host", "127.0.0.1", "--metrics-port", "0"])
            .args(["--identity", identity, "--lease-duration", "4", "--lease-retry", "1"])
            .arg("--kubeconfig")
            .arg(&self.cp.kubeconfig)
            .args(extra)
            .env("RUST_LOG", "info,kube=warn");
        let mut proc = Proc::spawn(identity, cmd);
        proc.wait_for_line("rask operator metrics at", Duration::from_secs(60));
        proc
    }

    /// The test kubelet (see kubelet.rs): runs this namespace's pods as local
    /// processes, with `rask`, `rask-test-worker` and `rask-test-client` as
    /// the local binaries.
    pub fn kubelet(&self) -> kubelet::Kubelet {
        let binaries = HashMap::from([
            ("rask".to_string(), rask_tests::processes::rask_bin()),
            ("rask-test-worker".to_string(), rask_tests::processes::test_worker_bin()),
            ("rask-test-client".to_string(), rask_tests::processes::test_client_bin()),
        ]);
        let config = kubelet::KubeletConfig { binaries, env: vec![("RUST_LOG".into(), "info".into())] };
        kubelet::Kubelet::start(self.client.clone(), &self.ns, config)
    }

    /// The test kubelet with `python` as well: the reference virtualenv's
    /// interpreter (~/.cache/rask/pyref, or `RASK_PYREF`), which must have
    /// the rask wheel installed (scripts/python.sh install). Panics, saying
    /// so, when it has not: a missing wheel fails the test, never skips it.
    pub fn python_kubelet(&self) -> kubelet::Kubelet {
        let pyref = std::env::var_os("RASK_PYREF")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/rask/pyref"));
        let python = pyref.join("bin/python");
        let check = Command::new(&python).args(["-c", "import rask._rask, rask.distributed"]).output();
        match check {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "the rask wheel is not installed in {}: run `scripts/python.sh install`\n{}",
                pyref.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!(
                "no Python at {} ({e}): run scripts/setup.sh, then `scripts/python.sh install`",
                python.display()
            ),
        }
        let mut binaries = HashMap::from([
            ("rask".to_string(), rask_tests::processes::rask_bin()),
            ("python".to_string(), python.clone()),
            ("python3".to_string(), python),
        ]);
        binaries.insert("rask-test-worker".to_string(), rask_tests::processes::test_worker_bin());
        let config = kubelet::KubeletConfig { binaries, env: vec![("RUST_LOG".into(), "info".into())] };
        kubelet::Kubelet::start(self.client.clone(), &self.ns, config)
    }

    /// `scheduler`: the address (tcp://...) of a real scheduler to run real workers against.
    pub fn node_agent(&self, scheduler: Option<String>) -> NodeAgent {
        NodeAgent::start(self.client.clone(), &self.ns, scheduler)
    }
}

/// The operator running as a task of the test's runtime.
#[derive(Debug)]
pub struct InProcessOperator {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<rask_operator::Result<()>>>,
}

impl InProcessOperator {
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(30), task).await;
            assert!(matches!(result, Ok(Ok(Ok(())))), "operator did not stop cleanly: {result:?}");
        }
    }
}

impl Drop for InProcessOperator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Plays the kubelet for one namespace: marks pods Running and Ready (with
/// pod IP 127.0.0.1), marks the scheduler Deployments available, and, given
/// a real scheduler, runs a real `rask worker` per worker pod, named after
/// the pod. Deleted pods' workers are stopped.
#[derive(Debug)]
pub struct NodeAgent {
    stop: Arc<std::sync::atomic::AtomicBool>,
    pub workers: Arc<Mutex<HashMap<String, Proc>>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Set to stop marking new pods ready.
    pub paused: Arc<std::sync::atomic::AtomicBool>,
}

impl NodeAgent {
    fn start(client: Client, ns: &str, scheduler: Option<String>) -> NodeAgent {
        use std::sync::atomic::Ordering;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Arc<Mutex<HashMap<String, Proc>>> = Arc::new(Mutex::new(HashMap::new()));
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let deployments: Api<Deployment> = Api::namespaced(client, ns);
        let (stop2, paused2, workers2) = (stop.clone(), paused.clone(), workers.clone());
        let task = tokio::spawn(async move {
            while !stop2.load(Ordering::Relaxed) {
                if let Ok(list) = deployments.list(&ListParams::default()).await {
                    for d in list.items {
                        let available = d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
                        if available < 1 {
                            let status = serde_json::json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}});
                            let name = d.metadata.name.clone().unwrap_or_default();
                            let _ =
                                deployments.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
                        }
                    }
                }
                if let Ok(list) = pods.list(&ListParams::default().labels("rask.dev/component=worker")).await {
                    let names: Vec<String> = list.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
                    for pod in list.items {
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                        if running || paused2.load(Ordering::Relaxed) || pod.metadata.deletion_timestamp.is_some() {
                            continue;
                        }
                        if let Some(addr) = &scheduler {
                            let (addr, n) = (addr.clone(), name.clone());
                            let proc = tokio::task::spawn_blocking(move || {
                                start_worker(WorkerKind::Rask, &addr, &n, 1, &["--memory-limit", "256MiB"])
                            })
                            .await
                            .expect("worker start");
                            workers2.lock().unwrap().insert(name.clone(), proc);
                        }
                        let status = serde_json::json!({"status": {
                            "phase": "Running",
                            "podIP": "127.0.0.1",
                            "conditions": [{"type": "Ready", "status": "True"}],
                        }});
                        let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
                    }
                    // Pods that are gone: their worker process goes too.
                    workers2.lock().unwrap().retain(|n, _| names.contains(n));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        NodeAgent { stop, workers, task: Some(task), paused }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
pub mod kubelet;
pub mod pack;
