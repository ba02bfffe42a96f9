//! A small kubelet for the end-to-end tests: it runs the pods of one
//! namespace as local processes, so the operator's real pods (the
//! scheduler's Deployment pod, worker pods, a DaskJob's runner pod) do real
//! work on this machine. Test infrastructure, kept small:
//!
//! - **Binding**: an unbound pod is bound to the node `rask-test-node`
//!   through the `pods/binding` subresource, as kube-scheduler would. Bound
//!   pods are deleted gracefully by the API server, so the deletion below
//!   follows the kubelet's protocol.
//! - **Start**: the first container's command and args run as a process.
//!   A command named in [`KubeletConfig::binaries`] (`rask`,
//!   `rask-test-worker`) runs that binary; any other is looked up on PATH.
//!   The environment is the container's `env`: plain values with `$(VAR)`
//!   expanded from earlier variables, and downward-API `fieldRef`s
//!   (`metadata.name`, `metadata.namespace`, `metadata.uid`,
//!   `spec.nodeName`, `status.podIP`, `status.hostIP`). Secrets and config
//!   maps are not supported.
//! - **Network**: every pod has IP 127.0.0.1. Each declared `containerPort`
//!   gets a free local port, and an argument equal to the port number is
//!   rewritten to it (so `--port 8786` listens on a free port). A Service
//!   name `<svc>.<ns>.svc[.cluster.local]:<port>` in an argument or env
//!   value is resolved to `127.0.0.1:<local port>` of a running pod the
//!   Service selects; a pod that names a Service without one waits, as a
//!   pod would whose DNS lookup fails and is retried.
//! - **Status**: phase, pod IP, start time, conditions, and a container
//!   status with its state (running, or terminated with the exit code) and
//!   restart count. Ready follows the container's HTTP readiness probe
//!   (through the local port), or the process running when it has none.
//! - **Restarts** follow `restartPolicy` (Always, OnFailure, Never), one
//!   second apart.
//! - **Deletion**: SIGTERM, then SIGKILL once the pod's grace period is
//!   over, then the pod object is removed (grace period 0), as a kubelet
//!   does once its containers are gone.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Node, Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

pub const NODE: &str = "rask-test-node";

/// What the kubelet needs to know besides the API server.
#[derive(Clone, Debug, Default)]
pub struct KubeletConfig {
    /// Command names mapped to local binaries.
    pub binaries: HashMap<String, PathBuf>,
    /// Extra environment for every process (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

/// One pod's process and what the kubelet knows of it.
#[derive(Debug)]
struct Running {
    uid: String,
    child: Option<Child>,
    /// containerPort -> local port.
    ports: BTreeMap<i32, u16>,
    port_names: BTreeMap<String, i32>,
    restarts: i32,
    started_at: String,
    ready: bool,
    /// Exit code of the last run, once it ended.
    exit: Option<i32>,
    ended_at: Option<Instant>,
    term_sent: Option<Instant>,
    log: PathBuf,
    /// The last status written, so unchanged status is not written again.
    written: Option<serde_json::Value>,
}

/// Plays the node for one namespace until dropped.
#[derive(Debug)]
pub struct Kubelet {
    stop: Arc<AtomicBool>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub log_dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn timestamp() -> String {
    k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second).expect("round").to_string()
}

/// `$(VAR)` references to variables defined so far; unknown ones stay as written.
fn expand(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) if vars.contains_key(&after[..end]) => {
                out.push_str(&vars[&after[..end]]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("$(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every `<svc>.<ns>.svc[.cluster.local]:<port>` in `text`, as (start, end, svc, ns, port).
fn service_refs(text: &str) -> Vec<(usize, usize, String, String, i32)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find(".svc") {
        let at = from + pos;
        from = at + 4;
        let host_start =
            text[..at].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.')).map_or(0, |i| i + 1);
        let Some((svc, ns)) = text[host_start..at].split_once('.') else { continue };
        let mut end = at + 4;
        if text[end..].starts_with(".cluster.local") {
            end += ".cluster.local".len();
        }
        let Some(port_text) = text[end..].strip_prefix(':') else { continue };
        let digits: String = port_text.chars().take_while(char::is_ascii_digit).collect();
        let Ok(port) = digits.parse() else { continue };
        out.push((host_start, end + 1 + digits.len(), svc.to_string(), ns.to_string(), port));
        from = end;
    }
    out
}

fn field_ref(pod: &Pod, path: &str) -> Option<String> {
    match path {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "metadata.uid" => pod.metadata.uid.clone(),
        "spec.nodeName" => Some(NODE.to_string()),
        "status.podIP" | "status.hostIP" => Some("127.0.0.1".to_string()),
        _ => None,
    }
}

/// A GET answered with 2xx within a second.
fn http_ok(port: u16, path: &str) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 2")
}

/// The state of the world the loop works from.
struct World {
    pods: Vec<Pod>,
    services: Vec<Service>,
}

impl World {
    /// The local address behind `svc:port`, if a pod it selects runs.
    fn resolve(&self, running: &HashMap<String, Running>, svc: &str, port: i32) -> Option<String> {
        let service = self.services.iter().find(|s| s.name_any() == svc)?;
        let spec = service.spec.as_ref()?;
        let selector = spec.selector.clone().unwrap_or_default();
        let sp = spec.ports.as_ref()?.iter().find(|p| p.port == port)?;
        for pod in &self.pods {
            let labels = pod.labels();
            if pod.metadata.deletion_timestamp.is_some() || !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                continue;
            }
            let Some(run) = running.get(&pod.name_any()).filter(|r| r.child.is_some() && r.ready) else { continue };
            use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
            let container_port = match &sp.target_port {
                Some(IntOrString::Int(p)) => *p,
                Some(IntOrString::String(name)) => *run.port_names.get(name)?,
                None => port,
            };
            if let Some(local) = run.ports.get(&container_port) {
                return Some(format!("127.0.0.1:{local}"));
            }
        }
        None
    }

    /// `text` with every Service name resolved; `None` while one cannot be.
    fn resolve_all(&self, running: &HashMap<String, Running>, ns: &str, text: &str) -> Option<String> {
        let mut out = text.to_string();
        for (start, end, svc, svc_ns, port) in service_refs(text).into_iter().rev() {
            if svc_ns != ns {
                continue;
            }
            out.replace_range(start..end, &self.resolve(running, &svc, port)?);
        }
        Some(out)
    }
}

impl Kubelet {
    pub fn start(client: Client, ns: &str, config: KubeletConfig) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let running: Arc<Mutex<HashMap<String, Running>>> = Arc::new(Mutex::new(HashMap::new()));
        let log_dir = std::env::temp_dir().join(format!("rask-kubelet-{}-{ns}", std::process::id()));
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let (stop2, running2, dir2, ns2) = (stop.clone(), running.clone(), log_dir.clone(), ns.to_string());
        let task = tokio::spawn(async move {
            let nodes: Api<Node> = Api::all(client.clone());
            let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": NODE}})).expect("node");
            let _ = nodes.create(&PostParams::default(), &node).await;
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns2);
            let services: Api<Service> = Api::namespaced(client, &ns2);
            while !stop2.load(Ordering::Relaxed) {
                let (Ok(p), Ok(s)) =
                    (pods.list(&ListParams::default()).await, services.list(&ListParams::default()).await)
                else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                let world = World { pods: p.items, services: s.items };
                sync(&pods, &world, &running2, &config, &dir2, &ns2).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Kubelet { stop, running, task: Some(task), log_dir }
    }

    /// The local port behind a pod's containerPort, once it runs.
    pub fn local_port(&self, pod: &str, container_port: i32) -> Option<u16> {
        let running = self.running.lock().unwrap();
        running.get(pod).filter(|r| r.child.is_some()).and_then(|r| r.ports.get(&container_port).copied())
    }

    /// The running pods whose name starts with `prefix`.
    pub fn running_pods(&self, prefix: &str) -> Vec<String> {
        let running = self.running.lock().unwrap();
        let mut names: Vec<String> = running
            .iter()
            .filter(|(n, r)| n.starts_with(prefix) && r.child.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// The log of a pod's process (all its runs).
    pub fn log(&self, pod: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("{pod}.log"))).unwrap_or_default()
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
        for run in self.running.lock().unwrap().values_mut() {
            if let Some(mut child) = run.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
}

/// Starts the pod's first container; `None` while a Service it names has no backend.
fn spawn(
    pod: &Pod,
    world: &World,
    running: &HashMap<String, Running>,
    config: &KubeletConfig,
    dir: &std::path::Path,
    ns: &str,
    ports: &BTreeMap<i32, u16>,
) -> Option<Child> {
    let container: &Container = pod.spec.as_ref()?.containers.first()?;
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for e in container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => expand(v, &vars),
            (None, Some(from)) => match from.field_ref.as_ref().and_then(|f| field_ref(pod, &f.field_path)) {
                Some(v) => v,
                None => continue,
            },
            (None, None) => String::new(),
        };
        vars.insert(e.name.clone(), world.resolve_all(running, ns, &value)?);
    }
    let mut argv: Vec<String> = container.command.clone().unwrap_or_default();
    for a in container.args.iter().flatten() {
        let a = expand(a, &vars);
        let a = match a.parse::<i32>().ok().and_then(|p| ports.get(&p)) {
            Some(local) => local.to_string(),
            None => a,
        };
        argv.push(world.resolve_all(running, ns, &a)?);
    }
    let (program, rest) = argv.split_first()?;
    let program = config.binaries.get(program).cloned().unwrap_or_else(|| PathBuf::from(program));
    let name = pod.name_any();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{name}.log"))).ok()?;
    let workdir = dir.join(&name);
    let _ = std::fs::create_dir_all(&workdir);
    let mut cmd = Command::new(&program);
    cmd.args(rest)
        .envs(config.env.iter().cloned())
        .envs(&vars)
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().ok()?)
        .stderr(log);
    match cmd.spawn() {
        Ok(child) => Some(child),
        Err(e) => panic!("kubelet: starting pod {name} ({}): {e}", program.display()),
    }
}

/// One pass: start, watch, restart and stop processes, and write statuses.
async fn sync(
    pods: &Api<Pod>,
    world: &World,
    running: &Arc<Mutex<HashMap<String, Running>>>,
    config: &KubeletConfig,
    dir: &std::path::Path,
    ns: &str,
) {
    let mut writes: Vec<(String, serde_json::Value)> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    let mut removals: Vec<String> = Vec::new();
    {
        let mut running = running.lock().unwrap();
        // Pods gone from the API (deleted without grace): stop their process.
        let names: Vec<String> = world.pods.iter().map(ResourceExt::name_any).collect();
        running.retain(|name, run| {
            let keep = names.contains(name);
            if !keep && let Some(mut child) = run.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            keep
        });
        for pod in &world.pods {
            let name = pod.name_any();
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let spec = pod.spec.clone().unwrap_or_default();
            if spec.node_name.is_none() {
                binds.push(name);
                continue;
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            // Deletion: SIGTERM, then SIGKILL after the grace period, then remove.
            if pod.metadata.deletion_timestamp.is_some() {
                let grace = Duration::from_secs(pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64);
                let done = match running.get_mut(&name) {
                    None => true,
                    Some(run) => match run.child.as_mut() {
                        None => true,
                        Some(child) => {
                            if let Ok(Some(_)) = child.try_wait() {
                                true
                            } else if run.term_sent.is_none() {
                                signal(child, "TERM");
                                run.term_sent = Some(Instant::now());
                                false
                            } else if run.term_sent.is_some_and(|t| t.elapsed() >= grace) {
                                let _ = child.kill();
                                let _ = child.wait();
                                true
                            } else {
                                false
                            }
                        }
                    },
                };
                if done {
                    running.remove(&name);
                    removals.push(name);
                }
                continue;
            }
            if phase == "Succeeded" || phase == "Failed" {
                continue;
            }
            // A pod of the same name re-created: forget the old one.
            if running.get(&name).is_some_and(|r| r.uid != uid)
                && let Some(mut old) = running.remove(&name)
                && let Some(mut child) = old.child.take()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
            if !running.contains_key(&name) {
                let container = spec.containers.first().cloned().unwrap_or_default();
                let mut ports = BTreeMap::new();
                let mut port_names = BTreeMap::new();
                for p in container.ports.iter().flatten() {
                    ports.insert(p.container_port, free_port());
                    if let Some(n) = &p.name {
                        port_names.insert(n.clone(), p.container_port);
                    }
                }
                let Some(child) = spawn(pod, world, &running, config, dir, ns, &ports) else { continue };
                running.insert(
                    name.clone(),
                    Running {
                        uid,
                        child: Some(child),
                        ports,
                        port_names,
                        restarts: 0,
                        started_at: timestamp(),
                        ready: false,
                        exit: None,
                        ended_at: None,
                        term_sent: None,
                        log: dir.join(format!("{name}.log")),
                        written: None,
                    },
                );
            }
            let restart_policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
            let container = spec.containers.first().cloned().unwrap_or_default();
            // Exited? Restart per policy, or end the pod.
            let (restart_now, ended_phase) = {
                let Some(run) = running.get_mut(&name) else { continue };
                if let Some(child) = run.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    run.exit = Some(status.code().unwrap_or(137));
                    run.ended_at = Some(Instant::now());
                    run.child = None;
                    run.ready = false;
                }
                if run.child.is_some() {
                    (false, None)
                } else {
                    let code = run.exit.unwrap_or(0);
                    let restart = match restart_policy.as_str() {
                        "Always" => true,
                        "OnFailure" => code != 0,
                        _ => false,
                    };
                    if restart {
                        (run.ended_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(1)), None)
                    } else {
                        (false, Some(if code == 0 { "Succeeded" } else { "Failed" }))
                    }
                }
            };
            if restart_now {
                // The same local ports, so the Service still points at it.
                let ports = running.get(&name).map(|r| r.ports.clone()).unwrap_or_default();
                if let Some(child) = spawn(pod, world, &running, config, dir, ns, &ports)
                    && let Some(run) = running.get_mut(&name)
                {
                    run.child = Some(child);
                    run.restarts += 1;
                    run.started_at = timestamp();
                    run.exit = None;
                }
            }
            let Some(run) = running.get_mut(&name) else { continue };
            // Readiness: the HTTP probe through the local port, or running.
            if run.child.is_some() && !run.ready {
                run.ready = match container.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()) {
                    Some(get) => {
                        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
                        let port = match &get.port {
                            IntOrString::Int(p) => Some(*p),
                            IntOrString::String(n) => run.port_names.get(n).copied(),
                        };
                        port.and_then(|p| run.ports.get(&p))
                            .is_some_and(|local| http_ok(*local, get.path.as_deref().unwrap_or("/")))
                    }
                    None => true,
                };
            }
            let now = timestamp();
            let state = match (&run.child, run.exit) {
                (Some(_), _) => serde_json::json!({"running": {"startedAt": run.started_at}}),
                (None, code) => serde_json::json!({"terminated": {
                    "exitCode": code.unwrap_or(0),
                    "reason": if code == Some(0) { "Completed" } else { "Error" },
                    "startedAt": run.started_at, "finishedAt": now}}),
            };
            let ready = if run.ready { "True" } else { "False" };
            let condition =
                |t: &str, s: &str| serde_json::json!({"type": t, "status": s, "lastTransitionTime": run.started_at});
            let status = serde_json::json!({
                "phase": ended_phase.unwrap_or(if run.child.is_some() { "Running" } else { "Pending" }),
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "hostIP": "127.0.0.1",
                "startTime": run.started_at,
                "conditions": [condition("PodScheduled", "True"), condition("Initialized", "True"),
                               condition("ContainersReady", ready), condition("Ready", ready)],
                "containerStatuses": [{
                    "name": container.name,
                    "image": container.image.clone().unwrap_or_default(),
                    "imageID": "",
                    "containerID": format!("rask-kubelet://{name}"),
                    "ready": run.ready,
                    "started": run.child.is_some(),
                    "restartCount": run.restarts,
                    "state": state,
                }],
            });
            // Compare without the times, which change every pass.
            let key = serde_json::json!([status["phase"], run.ready, run.restarts, run.exit, run.child.is_some()]);
            if run.written.as_ref() != Some(&key) {
                run.written = Some(key);
                writes.push((name, status));
            }
        }
    }
    for name in binds {
        let binding = serde_json::json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
        });
        let _ =
            pods.create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await;
    }
    for (name, status) in writes {
        let patch = serde_json::json!({"status": status});
        let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
    }
    for name in removals {
        let _ = pods.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_finds_service_names() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)-$(A)", &vars), "x-$(B)-x");
        let refs = service_refs("tcp://c-scheduler.ns.svc:8786 and http://d.n.svc.cluster.local:80/x");
        assert_eq!(refs.len(), 2);
        assert_eq!((refs[0].2.as_str(), refs[0].3.as_str(), refs[0].4), ("c-scheduler", "ns", 8786));
        assert_eq!((refs[1].2.as_str(), refs[1].4), ("d", 80));
    }
}
