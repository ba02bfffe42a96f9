//! The tutorial's collections on a real multi-process cluster: a `rask
//! scheduler` and three `rask worker` processes (the product binary, with
//! the array, frame and image kernels built in) on 127.0.0.1. Each result
//! must equal what the embedded local cluster computes for the same graph,
//! and the local results are checked against numpy, pandas and scipy in
//! the collections' own reference tests.

use std::time::Duration;

use rask::{Client, LocalCluster};
use rask_array::{Array, BinaryOp, Chunks, Fill};
use rask_dataframe::{CsvOptions, read_csv};
use rask_image::filters::{FilterOptions, gaussian_filter};
use rask_tests::processes::{Proc, Scheduler, WorkerKind, start_worker};

fn cluster() -> (Scheduler, Vec<Proc>) {
    let s = Scheduler::start(&[]);
    let workers = (0..3).map(|i| start_worker(WorkerKind::Rask, &s.address, &format!("w{i}"), 1, &[])).collect();
    s.wait_for_workers(3, Duration::from_secs(60));
    (s, workers)
}

#[test]
fn arrays_frames_and_images_on_three_worker_processes() {
    let (s, _workers) = cluster();
    let remote = Client::connect(&s.address).expect("connect");
    let local_cluster = LocalCluster::new(1, 2).expect("local cluster");
    let local = Client::without_default(&local_cluster);

    // Arrays: x + x.T over 16 chunks, a reduction, and the tutorial's
    // histogram exercise; chunks move between workers for the transpose.
    let x = Array::random_uniform(&[2000, 2000], 11, Chunks::Uniform(vec![500, 500])).unwrap();
    let y = x.add(&x.t()).unwrap().sum_axis(0).unwrap();
    assert_eq!(y.compute_with(&remote).unwrap(), y.compute_with(&local).unwrap());
    let normal = Array::random_normal(9.0, 1.0, &[1000, 1000], 1, Chunks::Uniform(vec![250, 250])).unwrap();
    let added = normal
        .add(&Array::ones(&[1000, 1000], rask::core::DType::F64, Chunks::Uniform(vec![250, 250])).unwrap())
        .unwrap();
    let masked = added.mask(&added.scalar(BinaryOp::Lt, Fill::Float(10.0)).unwrap()).unwrap();
    let (counts, _) = masked.histogram(100, (-9.0, 11.0)).unwrap();
    assert_eq!(counts.compute_with(&remote).unwrap(), counts.compute_with(&local).unwrap());

    // Dataframes: the Birthdays workflow's groupby over 15 partitions of a
    // plain copy of the shipped (compressed, so one-partition) file,
    // written by the workers.
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/Birthdays.csv.xz");
    let whole = read_csv(shipped.to_str().unwrap(), CsvOptions::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("rask-workloads-{}", std::process::id()));
    let plain = whole.to_csv(dir.join("birthdays-*.csv").to_str().unwrap()).unwrap();
    let df = read_csv(&plain[0], CsvOptions::default().blocksize(Some(1_000_000))).unwrap();
    assert!(df.npartitions() >= 14, "{} partitions", df.npartitions());
    let by_state = df.groupby(&["state"]).mean().unwrap();
    let (r, l) = (by_state.compute_with(&remote).unwrap(), by_state.compute_with(&local).unwrap());
    assert_eq!(r.to_string(), l.to_string());
    let ak = df.filter(df.col("state").eq("AK")).unwrap();
    // `len` runs on the default client: the remote one.
    assert_eq!(ak.len().unwrap(), ak.compute_with(&local).unwrap().num_rows());

    // Images: a Gaussian filter across chunk borders (map_overlap moves
    // neighbouring chunks' edges between workers).
    let image = rask_image::synth::image(&[600, 800], rask::core::DType::F32, 5).unwrap();
    let rask::core::ArrayValue::F32(image) = image else { panic!("synth::image gives the dtype asked for") };
    let image = Array::from_ndarray(&image.to_owned(), Chunks::Uniform(vec![200, 200])).unwrap();
    let smoothed = gaussian_filter(&image, &[2.0, 3.0], &FilterOptions::default()).unwrap();
    assert_eq!(smoothed.compute_with(&remote).unwrap(), smoothed.compute_with(&local).unwrap());

    // Work ran on the workers and they moved data between themselves.
    let status = s.json("/status.json");
    let workers = status["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 3);
    let (_, metrics) = s.get("/metrics");
    let transferred: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rask_scheduler_transfer_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(transferred > 1e6, "workers fetched only {transferred} bytes from peers:\n{metrics}");
    std::fs::remove_dir_all(&dir).ok();
}
