//! Real processes on loopback for the distributed tests: a `rask scheduler`
//! (the product's binary) and workers (`rask worker`, or `rask-test-worker`
//! when the test needs the test ops). Every process is killed when its
//! handle drops, so a failing test leaves nothing running.

// Test support: failing loudly with the context is the point.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A binary of this workspace, built if missing.
pub fn workspace_bin(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("the target directory").to_path_buf();
    let bin = dir.join(name);
    // Under cargo, make sure the binary is current (a no-op when it is): a
    // stale binary would test old code. Once per binary and test process.
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|b| b == name) && (std::env::var_os("CARGO").is_some() || !bin.exists()) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", package, "--bin", name]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "cargo build -p {package} --bin {name} failed");
        built.push(name.to_string());
    }
    bin
}

/// The product's `rask` binary.
pub fn rask_bin() -> PathBuf {
    workspace_bin("rask-cli", "rask")
}

/// `rask-test-worker`: a worker with the test ops.
pub fn test_worker_bin() -> PathBuf {
    workspace_bin("rask-tests", "rask-test-worker")
}

/// `rask-test-client`: a client program computing with the test ops (a DaskJob's runner).
pub fn test_client_bin() -> PathBuf {
    workspace_bin("rask-tests", "rask-test-client")
}

/// A child process whose output lines are collected; killed on drop.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for (stream, tag) in [(Box::new(stdout) as Box<dyn Read + Send>, "out"), (Box::new(stderr), "err")] {
            let tx = tx.clone();
            let label = name.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("RASK_TEST_VERBOSE").is_some() {
                        eprintln!("[{label} {tag}] {line}");
                    }
                    if tx.send(format!("{tag}: {line}")).is_err() {
                        break;
                    }
                }
            });
        }
        Proc { name: name.into(), child, lines: rx, seen: Vec::new() }
    }

    /// Waits for a stdout line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.starts_with("out: ") && l.contains(needle)) {
                return l.trim_start_matches("out: ").to_string();
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "{} did not print {needle:?} within {timeout:?}; its output:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything printed so far.
    pub fn output(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies at once, mid-task, without a word.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, through the `kill` command (the tests stay free of unsafe).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Waits for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scheduler process with the addresses it printed.
#[derive(Debug)]
pub struct Scheduler {
    pub proc: Proc,
    /// `tcp://127.0.0.1:port`
    pub address: String,
    /// `127.0.0.1:port` of the HTTP side.
    pub http: String,
}

impl Scheduler {
    /// `rask scheduler` on free loopback ports, with extra arguments.
    pub fn start(extra: &[&str]) -> Scheduler {
        Self::start_on(0, extra)
    }

    /// `rask scheduler` with its gRPC side on `port` (0: any free port).
    pub fn start_on(port: u16, extra: &[&str]) -> Scheduler {
        let mut cmd = Command::new(rask_bin());
        cmd.args(["scheduler", "--host", "127.0.0.1", "--port", &port.to_string(), "--http-port", "0"]).args(extra);
        let mut proc = Proc::spawn("scheduler", cmd);
        let line = proc.wait_for_line("rask scheduler at", Duration::from_secs(30));
        let address = line.rsplit(' ').next().expect("address").to_string();
        let dash = proc.wait_for_line("dashboard at", Duration::from_secs(5));
        let http = dash
            .rsplit(' ')
            .next()
            .and_then(|u| u.strip_prefix("http://").or_else(|| u.strip_prefix("https://")))
            .and_then(|u| u.strip_suffix("/status"))
            .expect("dashboard URL")
            .to_string();
        Scheduler { proc, address, http }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(&self.http, "GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        http(&self.http, "POST", path, Some(body), &[])
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"))
    }

    /// A counter or gauge of the scheduler's `/metrics` without labels (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {text}");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until the scheduler reports `n` workers.
    pub fn wait_for_workers(&self, n: usize, timeout: Duration) {
        let ok = crate::eventually(timeout, || self.json("/api/v1/get_workers")["num_workers"] == n);
        assert!(ok, "expected {n} workers, have {}", self.json("/api/v1/get_workers"));
    }
}

/// Which worker binary to run.
#[derive(Clone, Copy, Debug)]
pub enum WorkerKind {
    /// The product's `rask worker`: built-in, array, frame and image ops.
    Rask,
    /// `rask-test-worker`: also the test ops of [`crate::ops`].
    Test,
}

pub fn start_worker(kind: WorkerKind, scheduler: &str, name: &str, nthreads: usize, extra: &[&str]) -> Proc {
    let mut cmd = match kind {
        WorkerKind::Rask => {
            let mut c = Command::new(rask_bin());
            c.args(["worker", scheduler, "--listen-host", "127.0.0.1", "--contact-host", "127.0.0.1"]);
            c
        }
        WorkerKind::Test => {
            let mut c = Command::new(workspace_bin("rask-tests", "rask-test-worker"));
            c.arg(scheduler);
            c
        }
    };
    cmd.args(["--name", name, "--nthreads", &nthreads.to_string()]).args(extra);
    let mut proc = Proc::spawn(name, cmd);
    proc.wait_for_line("rask worker", Duration::from_secs(30));
    proc
}

/// A minimal HTTP/1.1 request over loopback; returns status and body.
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, String) {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    request_over(stream, addr, method, path, body, headers)
}

/// A GET of an endless response (a server-sent event stream): the status
/// and what arrived until `until` showed up, the server closed, or
/// `timeout` passed.
pub fn http_stream_start(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    until: &str,
    timeout: Duration,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let deadline = std::time::Instant::now() + timeout;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline && !String::from_utf8_lossy(&response).contains(until) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A GET over HTTPS that trusts only `ca_pem` and checks the certificate
/// names `server_name`. Err carries the TLS failure.
pub fn https_get(addr: &str, server_name: &str, ca_pem: &[u8], path: &str) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
    // Finish the handshake first so a refused certificate is an Err, not an
    // empty response.
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(request_over(rustls::StreamOwned::new(conn, tcp), addr, "GET", path, None, &[]))
}

fn request_over(
    mut stream: impl Read + Write,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let body = body.unwrap_or("");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
