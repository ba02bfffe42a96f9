//! Compiles `rask/v1/rask.proto` with the system `protoc` (scripts/setup.sh
//! installs it).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=rask/v1/rask.proto");
    tonic_prost_build::configure().bytes(".").compile_protos(&["rask/v1/rask.proto"], &["."])?;
    Ok(())
}
