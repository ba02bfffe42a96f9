//! The container image's build, without a Docker engine: the Dockerfile's
//! build steps are scripts/build.sh, and this test runs the same script (dev
//! profile, the shared target directory, so it costs little) and checks the
//! binary it produces, the dependency recipe the image caches, and the
//! Dockerfile's shape (non-root, no HEALTHCHECK, only build.sh steps),
//! and the Python package the image carries (build.sh python).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repo root")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn target_dir() -> PathBuf {
    // The test binary lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|d| d.parent()).and_then(|d| d.parent()).expect("target dir").to_path_buf()
}

#[test]
fn the_dockerfile_build_script_builds_a_rask_that_runs() {
    let out = std::env::temp_dir().join(format!("rask-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    run(Command::new(repo_root().join("scripts/build.sh"))
        .args(["--profile", "dev", "--out"])
        .arg(&out)
        .env("CARGO_TARGET_DIR", target_dir()));
    let help = run(Command::new(out.join("rask")).arg("--help"));
    for sub in ["scheduler", "worker", "operator", "crdgen"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(sub)), "`rask --help` lacks {sub}:\n{help}");
    }
    let version = run(Command::new(out.join("rask")).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_dependency_recipe_is_a_valid_workspace_of_manifests_and_stubs() {
    let recipe = std::env::temp_dir().join(format!("rask-recipe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&recipe);
    run(Command::new(repo_root().join("scripts/build.sh")).arg("recipe").arg(&recipe));
    for f in ["Cargo.toml", "Cargo.lock", "cli/Cargo.toml", "proto/build.rs", "scripts/build.sh"] {
        assert!(recipe.join(f).exists(), "the recipe lacks {f}");
    }
    // Sources are stubs: an edit of the code does not change the recipe.
    let main = std::fs::read_to_string(recipe.join("cli/src/main.rs")).unwrap();
    assert_eq!(main.trim(), "fn main() {}");
    assert_eq!(
        std::fs::read(recipe.join("Cargo.lock")).unwrap(),
        std::fs::read(repo_root().join("Cargo.lock")).unwrap()
    );
    // Cargo loads it as a workspace with every member and target.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let meta = run(Command::new(cargo)
        .args(["metadata", "--offline", "--locked", "--no-deps", "--format-version", "1"])
        .current_dir(&recipe));
    assert!(meta.contains("\"name\":\"rask-cli\""), "{meta}");
    let _ = std::fs::remove_dir_all(&recipe);
}

/// The Python reference virtualenv (scripts/setup.sh), which has maturin.
fn pyref_python() -> PathBuf {
    let pyref = std::env::var_os("RASK_PYREF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/rask/pyref"));
    pyref.join("bin/python")
}

#[test]
fn the_dockerfile_python_step_builds_an_importable_package_with_the_worker() {
    let python = pyref_python();
    assert!(python.exists(), "no {}: run scripts/setup.sh", python.display());
    let out = std::env::temp_dir().join(format!("rask-build-python-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    run(Command::new(repo_root().join("scripts/build.sh"))
        .args(["python", "--profile", "dev", "--out"])
        .arg(&out)
        .env("PYTHON", &python)
        .env("CARGO_TARGET_DIR", target_dir()));
    let site = out.join("python");
    assert!(site.join("cloudpickle").is_dir() && site.join("tblib").is_dir(), "the dependencies are installed too");
    // As in the image: the package from PYTHONPATH, ahead of any installed copy.
    let file = run(Command::new(&python)
        .args(["-c", "import rask, rask._rask; print(rask.__file__)"])
        .env("PYTHONPATH", &site)
        .env("PYTHONDONTWRITEBYTECODE", "1"));
    assert!(file.trim().starts_with(&*site.to_string_lossy()), "rask came from {file}");
    let help = run(Command::new(&python).args(["-m", "rask", "worker", "--help"]).env("PYTHONPATH", &site));
    for option in ["--nthreads", "--memory-limit", "--data-port", "--http-port"] {
        assert!(help.contains(option), "`python -m rask worker --help` lacks {option}:\n{help}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_dockerfile_builds_only_through_the_shared_script() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let steps: Vec<&str> = dockerfile.lines().filter(|l| l.starts_with("RUN ")).collect();
    let builds: Vec<&str> = steps.iter().copied().filter(|l| l.contains("scripts/build.sh")).collect();
    assert_eq!(
        builds,
        [
            "RUN scripts/build.sh recipe /recipe",
            "RUN scripts/build.sh deps --profile release",
            "RUN scripts/build.sh --profile release --out /out",
            "RUN scripts/build.sh python --profile release --out /out"
        ],
        "the Dockerfile's build steps"
    );
    // The other step only installs protoc, Python and maturin into the toolchain image.
    for step in steps.iter().filter(|l| !l.contains("scripts/build.sh")) {
        assert!(step.contains("apt-get"), "an unexpected build step: {step}");
    }
    assert!(dockerfile.contains("/opt/maturin/bin/pip install --no-cache-dir \"maturin>=1.9.4,<2\""));
    assert!(dockerfile.contains("PYTHON=/opt/maturin/bin/python"), "build.sh python uses the maturin venv");
    assert!(!dockerfile.lines().any(|l| l.trim_start().starts_with("HEALTHCHECK")), "probes, not HEALTHCHECK");
    let from: Vec<&str> = dockerfile.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(from.last().unwrap().contains("RUNTIME_IMAGE"), "{from:?}");
    // Python 3.11 on distroless's cc base, non-root; the package on PYTHONPATH,
    // with bytecode compiled at build time (a read-only root writes none).
    assert!(dockerfile.contains("ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian12:nonroot"));
    assert!(dockerfile.contains("COPY --from=builder /out/python /opt/rask/python"));
    assert!(dockerfile.contains("ENV PYTHONPATH=/opt/rask/python"));
    assert!(dockerfile.contains("PYTHONDONTWRITEBYTECODE=1"));
    let user = dockerfile.lines().rfind(|l| l.starts_with("USER ")).expect("a USER");
    let uid: u32 = user[5..].split(':').next().unwrap().parse().expect("a numeric USER, for runAsNonRoot");
    assert_ne!(uid, 0);
    for label in
        ["org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.licenses"]
    {
        assert!(dockerfile.contains(label), "OCI label {label} missing");
    }
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"), ".dockerignore must keep target/ out of the context");
}
