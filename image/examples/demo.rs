//! Runs the dask-image tutorial pipelines on generated data:
//! `cargo run --release -p rask-image --example demo [DIR]`.

fn main() -> Result<(), rask_image::ImageError> {
    let mut config = rask_image::demo::DemoConfig::default();
    if let Some(dir) = std::env::args().nth(1) {
        config.dir = dir.into();
    }
    let report = rask_image::demo::run(&config)?;
    println!("{report:#?}");
    Ok(())
}
