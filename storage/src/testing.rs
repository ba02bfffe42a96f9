//! Test support (feature `testing`): a real `moto_server` on 127.0.0.1 with
//! a free port, and Python (boto3, pandas, pyarrow, zarr, scikit-image) from
//! the reference venv that scripts/setup.sh makes, for writing fixtures
//! and checking what rask wrote. Tests fail, never skip, without them.
//!
//! Test bodies run in a child process with [`Moto::env`] set (the standard
//! AWS environment: endpoint, region, access keys), through
//! [`Moto::run_in_env`], because setting variables in a running test is
//! unsafe; processes the child starts (workers) inherit the environment.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::StorageOptions;

/// The reference venv's Python.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("RASK_PYREF_PYTHON") {
        return p.into();
    }
    let root = std::env::var("RASK_PYREF")
        .unwrap_or_else(|_| format!("{}/.cache/rask/pyref", std::env::var("HOME").unwrap_or_default()));
    PathBuf::from(root).join("bin/python")
}

/// A moto_server process, killed on drop.
#[derive(Debug)]
pub struct Moto {
    /// `None` in a child of [`Moto::run_in_env`]: the parent owns the server.
    child: Option<Child>,
    endpoint: String,
}

/// Set in the child that [`Moto::run_in_env`] starts.
const CHILD_MARK: &str = "RASK_S3_TEST_CHILD";

impl Moto {
    /// Starts moto_server on a free port and waits until it answers. In a
    /// child of [`Moto::run_in_env`], returns a handle to the parent's server.
    pub fn start() -> Moto {
        if std::env::var_os(CHILD_MARK).is_some() {
            let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("the parent sets AWS_ENDPOINT_URL");
            return Moto { child: None, endpoint };
        }
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server from the reference venv (scripts/setup.sh installs moto[server])");
        let moto = Moto { child: Some(child), endpoint: format!("http://127.0.0.1:{port}") };
        let end = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "moto_server did not listen on port {port} within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Options for a test body under [`Moto::run_in_env`]: the defaults,
    /// since the environment points at this server. (moto refuses unsigned
    /// reads of private objects, so per-call `anonymous` options do not do.)
    pub fn options(&self) -> StorageOptions {
        StorageOptions::default()
    }

    /// The standard AWS environment pointing at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// Runs Python code with boto3 configured for this server; `args` are
    /// `sys.argv[1:]`. Returns stdout; panics with stderr on failure.
    ///
    /// A snippet that finishes leaves through `os._exit(0)` after flushing:
    /// pyarrow's thread pools can abort the interpreter's teardown
    /// ("terminate called without an active exception") after the work is
    /// done and printed. An exception still fails the run with its traceback.
    pub fn python(&self, code: &str, args: &[&str]) -> String {
        let prelude = "import boto3, sys, os\n\
                       s3 = boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL'])\n";
        let epilogue = "\nsys.stdout.flush()\nsys.stderr.flush()\nos._exit(0)\n";
        let out = Command::new(python())
            .arg("-c")
            .arg(format!("{prelude}{code}{epilogue}"))
            .args(args)
            .envs(self.env())
            .output()
            .expect("run the reference venv's python");
        assert!(out.status.success(), "python failed:\n{code}\n--- stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        self.python("s3.create_bucket(Bucket=sys.argv[1])", &[bucket]);
    }

    /// Puts an object from bytes.
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        let dir = std::env::temp_dir().join(format!("rask-moto-put-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join(key.replace('/', "_"));
        std::fs::write(&file, data).expect("write the fixture");
        self.python("s3.upload_file(sys.argv[3], sys.argv[1], sys.argv[2])", &[bucket, key, &file.to_string_lossy()]);
        std::fs::remove_file(&file).ok();
    }

    /// Runs the calling test's body in a child process with [`Moto::env`]
    /// set (so the child and every process it starts use the standard
    /// environment). Returns `true` in the child, where the body should
    /// run, and `false` in the parent once the child passed.
    pub fn run_in_env(&self, test_name: &str) -> bool {
        if std::env::var_os(CHILD_MARK).is_some() {
            return true;
        }
        let exe = std::env::current_exe().expect("the test binary");
        let out = Command::new(exe)
            .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .envs(self.env())
            .env(CHILD_MARK, "1")
            .output()
            .expect("re-run the test binary");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{test_name} failed in its AWS environment:\n{text}");
        assert!(text.contains("1 passed"), "{test_name} did not run in the child:\n{text}");
        false
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
