//! A throwaway PKI for TLS tests: a CA, one certificate for the cluster's
//! processes (named `localhost` and `127.0.0.1`), one for a client, and a
//! second CA that signs nothing of ours. Removed on drop.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Writes `ca.pem`, `other-ca.pem`, `node.pem`/`node.key` and
    /// `client.pem`/`client.key` into a fresh directory.
    pub fn new(label: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("rask-tls-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let write = |name: &str, pem: String| std::fs::write(dir.join(name), pem).expect("write pem");
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca")
        };
        let cluster_ca = ca("rask test CA");
        write("ca.pem", cluster_ca.pem());
        write("other-ca.pem", ca("someone else's CA").pem());
        for (name, sans) in [("node", vec!["localhost".to_string(), "127.0.0.1".to_string()]), ("client", vec![])] {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(sans).expect("params");
            params.distinguished_name.push(DnType::CommonName, format!("rask {name}"));
            let cert = params.signed_by(&key, &cluster_ca).expect("sign");
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// Client settings trusting `ca`, with the certificate `identity` if any.
    pub fn files(&self, ca: &str, identity: Option<&str>) -> rask::TlsFiles {
        rask::TlsFiles {
            ca_file: Some(self.dir.join(ca)),
            cert: identity.map(|n| self.dir.join(format!("{n}.pem"))),
            key: identity.map(|n| self.dir.join(format!("{n}.key"))),
            server_name: None,
        }
    }

    /// The flags that make a `rask scheduler` or `rask worker` use TLS with
    /// the node certificate.
    pub fn node_args(&self) -> Vec<String> {
        ["--tls-ca-file", "ca.pem", "--tls-cert", "node.pem", "--tls-key", "node.key"]
            .iter()
            .map(|a| if a.starts_with("--") { a.to_string() } else { self.path(a) })
            .collect()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
