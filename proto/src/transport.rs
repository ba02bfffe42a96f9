//! How rask's processes connect: the gRPC endpoints and servers (one place
//! that sizes HTTP/2 for bulk data), HTTP serving, and TLS (rustls on ring)
//! for all of them: gRPC between clients, the scheduler and workers, and
//! the HTTP endpoints of the scheduler and workers. TLS is off by default
//! (plain TCP on loopback is the common case); on as soon as a certificate
//! is configured.
//!
//! HTTP/2 is sized for values of hundreds of megabytes: 1 MiB frames (not
//! 16 KiB) and 16 MiB stream / 32 MiB connection windows, so a transfer is
//! not throttled by window updates on a fast network.
//!
//! The TLS model is Dask's: each process has one certificate and key signed
//! by the cluster's CA, used both when it serves and when it connects, and
//! addresses are spelled `tls://host:port`.
//! - A process that serves with a certificate and knows the CA requires
//!   client certificates signed by it on gRPC (mutual TLS). HTTP asks for no
//!   client certificate: browsers and Prometheus connect with the CA alone,
//!   and the API is guarded by the shared token.
//! - A process that connects verifies the server's certificate against the
//!   CA (the system roots when no CA is given) and the host name in the
//!   address, or `server_name` when certificates name a service instead of
//!   each pod.
//! - A process configured for TLS refuses plain `tcp://` peers: encryption
//!   is required once it is on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

/// HTTP/2 frame size both ends announce.
const FRAME_BYTES: u32 = 1 << 20;
/// Per-stream flow-control window.
const STREAM_WINDOW_BYTES: u32 = 16 << 20;
/// Per-connection flow-control window.
const CONNECTION_WINDOW_BYTES: u32 = 32 << 20;

/// A TLS setting that cannot be used, with the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {message}")]
    Read { what: &'static str, path: PathBuf, message: String },
    #[error("{what} {path} holds no PEM {expected}")]
    NoPem { what: &'static str, path: PathBuf, expected: &'static str },
    #[error("a TLS certificate needs its key, and a key its certificate (give both --tls-cert and --tls-key)")]
    Unpaired,
    #[error("serving TLS needs a certificate and key (--tls-cert, --tls-key)")]
    NoIdentity,
    #[error("the TLS certificate and key cannot be used: {0}")]
    Invalid(String),
}

/// Where a process finds its TLS material: flags or `RASK_TLS_*` variables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signs the cluster's certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// This process's certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// This process's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// The name to verify in servers' certificates instead of the host of
    /// the address.
    pub server_name: Option<String>,
}

impl TlsFiles {
    /// The files named by `RASK_TLS_CA_FILE`, `RASK_TLS_CERT`,
    /// `RASK_TLS_KEY` and `RASK_TLS_SERVER_NAME`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Self {
            ca_file: var("RASK_TLS_CA_FILE").map(PathBuf::from),
            cert: var("RASK_TLS_CERT").map(PathBuf::from),
            key: var("RASK_TLS_KEY").map(PathBuf::from),
            server_name: var("RASK_TLS_SERVER_NAME").and_then(|v| v.into_string().ok()),
        }
    }

    /// True when no TLS is configured.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// Reads and checks the files; `None` when TLS is not configured.
    pub fn load(&self) -> Result<Option<Arc<Tls>>, TlsError> {
        if self.is_empty() {
            return Ok(None);
        }
        let ca = match &self.ca_file {
            Some(path) => {
                let pem = read("CA file", path)?;
                if CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).next().is_none() {
                    return Err(TlsError::NoPem { what: "CA file", path: path.clone(), expected: "certificate" });
                }
                Some(pem)
            }
            None => None,
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(Pair::load(cert, key)?),
            (None, None) => None,
            _ => return Err(TlsError::Unpaired),
        };
        let tls = Tls { ca, identity, server_name: self.server_name.clone() };
        if tls.identity.is_some() {
            // Built once here so a key that does not fit is an error at
            // start, not at the first connection.
            tls.http_acceptor()?;
        }
        Ok(Some(Arc::new(tls)))
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read { what, path: path.to_path_buf(), message: e.to_string() })
}

/// A certificate chain and its key, as PEM.
#[derive(Clone)]
struct Pair {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Pair {
    fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert = read("certificate", cert_path)?;
        if CertificateDer::pem_slice_iter(&cert).filter_map(Result::ok).next().is_none() {
            return Err(TlsError::NoPem { what: "certificate", path: cert_path.into(), expected: "certificate" });
        }
        let key = read("key", key_path)?;
        if PrivateKeyDer::from_pem_slice(&key).is_err() {
            return Err(TlsError::NoPem { what: "key", path: key_path.into(), expected: "private key" });
        }
        Ok(Self { cert, key })
    }

    fn rustls(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Invalid(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| TlsError::Invalid(e.to_string()))?;
        Ok((chain, key))
    }
}

/// Loaded TLS material of one process. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Tls {
    ca: Option<Vec<u8>>,
    identity: Option<Pair>,
    server_name: Option<String>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Tls {
    /// Whether this process can serve TLS (it has a certificate and key).
    pub fn can_serve(&self) -> bool {
        self.identity.is_some()
    }

    /// gRPC server settings: this process's identity; client certificates
    /// signed by the CA are required when a CA is configured.
    pub fn grpc_server(&self) -> Result<ServerTlsConfig, TlsError> {
        let pair = self.identity.as_ref().ok_or(TlsError::NoIdentity)?;
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(&pair.cert, &pair.key)).timeout(Duration::from_secs(10));
        if let Some(ca) = &self.ca {
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        Ok(config)
    }

    /// gRPC client settings for a connection to `host`.
    pub fn grpc_client(&self, host: &str) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new()
            .domain_name(self.server_name.clone().unwrap_or_else(|| host.to_string()))
            .timeout(Duration::from_secs(10));
        config = match &self.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        };
        if let Some(pair) = &self.identity {
            config = config.identity(Identity::from_pem(&pair.cert, &pair.key));
        }
        config
    }

    /// The acceptor for HTTPS: server authentication only.
    pub fn http_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        let pair = self.identity.as_ref().ok_or(TlsError::NoIdentity)?;
        let (chain, key) = pair.rustls()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Invalid(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// The gRPC endpoint for `address` (`tls://`, `tcp://`, `https://`,
/// `http://` or `host:port`): TCP_NODELAY, and TLS when the address asks for
/// it. A process configured for TLS refuses a plain address.
pub fn endpoint(address: &str, tls: Option<&Tls>) -> Result<Endpoint, String> {
    let url = crate::grpc_url(address);
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| format!("bad address {address}: {e}"))?
        .tcp_nodelay(true)
        .max_frame_size(FRAME_BYTES)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
    let secure = url.starts_with("https://");
    match (secure, tls) {
        (false, None) => Ok(endpoint),
        (false, Some(_)) => {
            Err(format!("{address} is a plain address but TLS is configured here; encryption is required (use tls://)"))
        }
        (true, tls) => {
            let host = endpoint.uri().host().unwrap_or_default().trim_matches(['[', ']']).to_string();
            let config = match tls {
                Some(tls) => tls.grpc_client(&host),
                None => ClientTlsConfig::new().domain_name(host).with_native_roots(),
            };
            endpoint.tls_config(config).map_err(|e| format!("TLS settings for {address}: {e}"))
        }
    }
}

/// A gRPC server builder: TCP_NODELAY, HTTP/2 sized for bulk data, and TLS
/// when this process has a certificate.
pub fn grpc_server(tls: Option<&Tls>) -> Result<Server, TlsError> {
    let server = Server::builder()
        .tcp_nodelay(true)
        .max_frame_size(FRAME_BYTES)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
    match tls.filter(|t| t.can_serve()) {
        Some(tls) => server.tls_config(tls.grpc_server()?).map_err(|e| TlsError::Invalid(describe(&e))),
        None => Ok(server),
    }
}

/// An error with its causes, `outer: cause: root cause` — a connection
/// error's own message ("transport error") says little without them.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// The message of a failed first call to a server, with a hint when the
/// likely cause is a plaintext client against a TLS server: TLS's alert
/// record then reads as an HTTP/2 frame of an impossible size, and h2 says
/// only "h2 protocol error" (or, when the server has already closed the
/// connection, "transport error").
pub fn first_call_error(message: &str, plaintext: bool) -> String {
    // The TLS server's alert, or its closing the connection at once, shows
    // up as one of these, depending on when h2 reads it.
    let garbled = message.contains("h2 protocol error")
        || message.contains("frame with invalid size")
        || message.trim() == "transport error";
    if plaintext && garbled {
        format!(
            "{message} (the server did not answer in plaintext gRPC: if it requires TLS, connect with a tls:// \
             address and its CA, e.g. --tls-ca-file)"
        )
    } else {
        message.to_string()
    }
}

/// How a server's address is written for others: `tls://` when it serves
/// TLS, `tcp://` otherwise.
pub fn scheme(tls: Option<&Tls>) -> &'static str {
    if tls.is_some_and(Tls::can_serve) { "tls" } else { "tcp" }
}

/// A listener for axum that completes TLS handshakes off the accept path: a
/// slow or failing handshake never holds up other connections.
pub struct TlsListener {
    local: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::net::SocketAddr)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsListener({})", self.local)
    }
}

impl TlsListener {
    /// Starts accepting on `listener`; must run inside a tokio runtime.
    pub fn new(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local, ready, acceptor })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, over TLS when this
/// process has a certificate.
pub async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<Tls>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls.filter(|t| t.can_serve()) {
        Some(tls) => {
            let acceptor = tls.http_acceptor().map_err(std::io::Error::other)?;
            axum::serve(TlsListener::new(listener, acceptor)?, app).with_graceful_shutdown(shutdown).await
        }
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A directory with a self-signed certificate and key, a second key,
    /// and a file that is not PEM.
    fn material(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("rask-proto-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params").self_signed(&key);
        std::fs::write(dir.join("cert.pem"), cert.expect("cert").pem()).expect("write");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
        std::fs::write(dir.join("other.key"), rcgen::KeyPair::generate().expect("key").serialize_pem()).expect("write");
        std::fs::write(dir.join("junk.pem"), "not a certificate").expect("write");
        Dir(dir)
    }

    fn files(dir: &Dir, ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> TlsFiles {
        TlsFiles {
            ca_file: ca.map(|n| dir.0.join(n)),
            cert: cert.map(|n| dir.0.join(n)),
            key: key.map(|n| dir.0.join(n)),
            server_name: None,
        }
    }

    #[test]
    fn nothing_configured_is_plain() {
        assert!(TlsFiles::default().load().expect("plain").is_none());
        assert!(endpoint("tcp://127.0.0.1:8786", None).is_ok());
        assert_eq!(scheme(None), "tcp");
    }

    #[test]
    fn good_material_loads_and_serves() {
        let dir = material("good");
        let tls = files(&dir, Some("cert.pem"), Some("cert.pem"), Some("key.pem")).load().expect("loads").expect("tls");
        assert!(tls.can_serve());
        assert_eq!(scheme(Some(&tls)), "tls");
        assert!(tls.grpc_server().is_ok());
        assert!(endpoint("tls://localhost:8786", Some(&tls)).is_ok());
        // The key never shows in Debug.
        let shown = format!("{tls:?}");
        let key = std::fs::read_to_string(dir.0.join("key.pem")).expect("key");
        assert!(!shown.contains(key.lines().nth(1).expect("key body")), "{shown}");
        assert!(shown.contains("<redacted>"));
        // A CA alone connects but cannot serve.
        let ca_only = files(&dir, Some("cert.pem"), None, None).load().expect("loads").expect("tls");
        assert!(!ca_only.can_serve());
        assert!(matches!(ca_only.grpc_server(), Err(TlsError::NoIdentity)));
    }

    #[test]
    fn bad_material_is_a_clear_error() {
        let dir = material("bad");
        let err = |f: TlsFiles| f.load().expect_err("must fail").to_string();
        assert!(err(files(&dir, None, Some("cert.pem"), None)).contains("--tls-key"));
        assert!(err(files(&dir, None, None, Some("key.pem"))).contains("--tls-cert"));
        let missing = err(files(&dir, Some("nope.pem"), None, None));
        assert!(missing.contains("cannot read CA file") && missing.contains("nope.pem"), "{missing}");
        let junk = err(files(&dir, Some("junk.pem"), None, None));
        assert!(junk.contains("no PEM certificate") && junk.contains("junk.pem"), "{junk}");
        let junk_key = err(files(&dir, None, Some("cert.pem"), Some("junk.pem")));
        assert!(junk_key.contains("no PEM private key"), "{junk_key}");
        let swapped = err(files(&dir, None, Some("key.pem"), Some("key.pem")));
        assert!(swapped.contains("no PEM certificate"), "{swapped}");
        // A key that is not the certificate's is refused at start.
        let mismatched = err(files(&dir, None, Some("cert.pem"), Some("other.key")));
        assert!(mismatched.contains("cannot be used"), "{mismatched}");
    }

    #[test]
    fn tls_requires_encrypted_peers() {
        let dir = material("peers");
        let tls = files(&dir, Some("cert.pem"), Some("cert.pem"), Some("key.pem")).load().expect("loads").expect("tls");
        for plain in ["tcp://10.0.0.1:8786", "http://10.0.0.1:8786", "10.0.0.1:8786"] {
            let e = endpoint(plain, Some(&tls)).expect_err("plain refused");
            assert!(e.contains("encryption is required"), "{e}");
        }
        assert_eq!(crate::grpc_url("tls://h:1"), "https://h:1");
        assert!(endpoint("https://10.0.0.1:8786", Some(&tls)).is_ok());
    }
}
