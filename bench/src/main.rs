//! rask's side of the benchmarks. Each subcommand prints one JSON object per
//! measurement; `bench/run.py` runs the Python Dask side in the same session
//! and prints the ratios.

use std::sync::Arc;
use std::time::Instant;

// mimalloc keeps freed blocks for reuse: 100 MiB array chunks and millions
// of small task records no longer go back to the OS (and fault back in).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod frames;
mod storage;
mod workers;

use clap::{Parser, Subcommand};
use rask::{Client, Delayed, LocalCluster, delayed, op};
use rask_core::{Arg, Key, Params, Task};
use rask_scheduler::sim::{SimConfig, simulate};
use serde_json::json;

#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read throughput from S3 (a local moto_server it starts) and from
    /// local disk, with S3 requests per file: whole-object GETs, 8 MiB
    /// ranged GETs, read_csv and a one-column read_parquet.
    S3Read {
        #[arg(long, default_value_t = 4)]
        files: usize,
        #[arg(long, default_value_t = 64)]
        mib: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// One array of `mib` MiB fetched from a worker's data service over
    /// TCP on loopback (pieces of 1 MiB), in GB/s.
    Transfer {
        #[arg(long, default_value_t = 1024)]
        mib: usize,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// A `mib` MiB array copied between two `rask worker` processes on
    /// loopback: the worker holding it is retired through the scheduler's
    /// HTTP API, which returns once a fresh peer holds the array, in GB/s.
    TransferWorkers {
        #[arg(long, default_value_t = 1024)]
        mib: usize,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// The tutorial's Birthdays workflow: read, filter, groupby-mean,
    /// nlargest, unique, value_counts.
    DfBirthdays {
        #[arg(long)]
        path: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// `read_csv` over a glob of Wikipedia-edits-shaped files, then
    /// `str.value_counts()`.
    DfWiki {
        #[arg(long, default_value = "/tmp/rask-bench-wiki")]
        dir: std::path::PathBuf,
        #[arg(long, default_value_t = 4)]
        files: usize,
        /// Bytes per file.
        #[arg(long, default_value_t = 250_000_000)]
        bytes: u64,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 2)]
        repeat: usize,
    },
    /// `gaussian_filter(sigma=2)` then `mean()`: over a stack of uint16 TIFF
    /// volumes read with `imread` (`--case tiff`), or over an in-memory
    /// float32 volume (`--case volume`). Prints Mvox/s.
    ImageGauss {
        #[arg(long, default_value = "volume")]
        case: String,
        /// Directory of the TIFF stack (generated there if missing).
        #[arg(long, default_value = "/tmp/rask-bench-tiffs")]
        dir: std::path::PathBuf,
        #[arg(long, default_value_t = 20)]
        files: usize,
        #[arg(long, value_delimiter = ',', default_value = "40,1344,1024")]
        tiff_shape: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "128,512,512")]
        volume_shape: Vec<usize>,
        /// Chunk of the in-memory volume (dask's must match).
        #[arg(long, value_delimiter = ',', default_value = "64,512,512")]
        chunks: Vec<usize>,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 2)]
        repeat: usize,
    },
    /// n tiny independent tasks plus a binary tree reduction over them.
    Tasks {
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// The tiny-tasks graph on a real cluster: a `rask scheduler` and
    /// `workers` `rask worker` processes on loopback, built-in ops only.
    DistributedTasks {
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// `randint(0, 100, shape).mean()` with automatic chunks.
    ArrayMean {
        #[arg(long, value_delimiter = ',', default_value = "10000,1000,100")]
        shape: Vec<usize>,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// The sum of an in-memory float64 array, in GB/s.
    ArraySum {
        #[arg(long, default_value_t = 1 << 27)]
        n: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// `dot(x, x + x.T)` for a random n x n float64 array.
    ArrayDot {
        #[arg(long, default_value_t = 5000)]
        n: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// The tutorial's histogram exercise.
    ArrayHist {
        #[arg(long, default_value_t = 5000)]
        n: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// The scheduler alone, on simulated workers: scheduler time per task and
    /// makespan against the ideal.
    Simulate {
        #[arg(long, default_value_t = 1_000_000)]
        tasks: usize,
        #[arg(long, default_value_t = 1000)]
        workers: usize,
        #[arg(long, default_value_t = 4)]
        threads: usize,
    },
}

op! {
    fn inc(x: i64) -> i64 { x + 1 }
}

op! {
    fn add(x: i64, y: i64) -> i64 { x.wrapping_add(y) }
}

/// `n` leaves made by `leaf`, summed pairwise by `add` up a binary tree.
fn tree(
    n: usize,
    leaf: impl Fn(i64) -> Delayed<i64>,
    add: impl Fn(&Delayed<i64>, &Delayed<i64>) -> Delayed<i64>,
) -> Delayed<i64> {
    let mut level: Vec<Delayed<i64>> = (0..n as i64).map(leaf).collect();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| if p.len() == 2 { add(&p[0], &p[1]) } else { p[0].clone() }).collect();
    }
    level.pop().unwrap_or_else(|| Delayed::value(0))
}

fn build(n: usize) -> Delayed<i64> {
    tree(n, |i| delayed!(inc(i)), |a, b| delayed!(add(a, b)))
}

fn tasks(n: usize, workers: usize, threads: usize, repeat: usize) -> anyhow::Result<()> {
    let cluster = LocalCluster::new(workers, threads)?;
    let client = Client::without_default(&cluster);
    let expected: i64 = (1..=n as i64).sum();
    for run in 0..repeat {
        let t0 = Instant::now();
        let graph = build(n);
        let build_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let future = client.compute(&graph);
        let submit_s = t1.elapsed().as_secs_f64();
        let value = future.result()?;
        let compute_s = t1.elapsed().as_secs_f64();
        anyhow::ensure!(value == expected, "wrong result {value}, expected {expected}");
        let ntasks = 2 * n - 1;
        println!(
            "{}",
            json!({
                "bench": "tiny-tasks", "engine": "rask-local", "run": run, "n": n, "tasks": ntasks,
                "workers": workers, "threads": threads,
                "build_seconds": build_s, "submit_seconds": submit_s, "compute_seconds": compute_s,
                "tasks_per_second": ntasks as f64 / compute_s,
                "microseconds_per_task": compute_s * 1e6 / ntasks as f64,
            })
        );
    }
    Ok(())
}

/// The tiny-tasks graph with the built-in `rask.add` op, which every worker
/// binary has: `i + 1` leaves and a binary tree of sums.
fn build_builtin(n: usize) -> Delayed<i64> {
    use rask::ArgPart;
    use rask_core::Value;
    use rask_core::ops::builtin::ADD;
    let lit = |v: i64| ArgPart::literal(Value::Int(v));
    tree(
        n,
        |i| Delayed::from_call(ADD, "inc", vec![lit(i), lit(1)]),
        |a, b| Delayed::from_call(ADD, "add", vec![ArgPart::of(a), ArgPart::of(b)]),
    )
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `rask <args>` (the binary beside this one) and returns it with
/// the first stdout line containing `needle`.
fn spawn_rask(args: &[&str], needle: &str) -> anyhow::Result<(Child, String)> {
    let (child, mut lines) = spawn_rask_lines(args, &[needle])?;
    Ok((child, lines.pop().unwrap_or_default()))
}

/// Starts `rask <args>` and returns it once it has printed a line
/// containing each of `needles`, in that order, with those lines.
fn spawn_rask_lines(args: &[&str], needles: &[&str]) -> anyhow::Result<(Child, Vec<String>)> {
    use std::io::BufRead;
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("rask");
    anyhow::ensure!(bin.exists(), "{} is missing: cargo build --release -p rask-cli", bin.display());
    let mut child = std::process::Command::new(&bin)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let child = Child(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut found = Vec::with_capacity(needles.len());
    while found.len() < needles.len() {
        let line = lines.next().ok_or_else(|| anyhow::anyhow!("rask {args:?} exited"))??;
        if line.contains(needles[found.len()]) {
            found.push(line);
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, found))
}

fn distributed_tasks(n: usize, workers: usize, threads: usize, repeat: usize) -> anyhow::Result<()> {
    let (_scheduler, line) =
        spawn_rask(&["scheduler", "--host", "127.0.0.1", "--port", "0", "--http-port", "0"], "rask scheduler at")?;
    let address = line.rsplit(' ').next().unwrap_or_default().to_string();
    let procs =
        (0..workers).map(|i| workers::start_worker(&address, i, threads)).collect::<anyhow::Result<Vec<_>>>()?;
    let client = Client::connect(&address)?;
    let expected: i64 = (1..=n as i64).sum();
    for run in 0..repeat {
        let t0 = Instant::now();
        let graph = build_builtin(n);
        let build_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let value = client.compute(&graph).result()?;
        let compute_s = t1.elapsed().as_secs_f64();
        anyhow::ensure!(value == expected, "wrong result {value}, expected {expected}");
        let ntasks = 2 * n - 1;
        println!(
            "{}",
            json!({
                "bench": "tiny-tasks", "engine": "rask-distributed", "run": run, "n": n, "tasks": ntasks,
                "workers": workers, "threads": threads, "build_seconds": build_s, "compute_seconds": compute_s,
                "tasks_per_second": ntasks as f64 / compute_s,
                "microseconds_per_task": compute_s * 1e6 / ntasks as f64,
            })
        );
    }
    drop(procs);
    Ok(())
}

fn simulate_bench(n: usize, workers: usize, threads: usize) -> anyhow::Result<()> {
    // A reduction tree over n/2 leaves: n - 1 tasks in all.
    let leaves = n.div_ceil(2);
    let mut tasks = Vec::with_capacity(n);
    let mut level: Vec<Key> = (0..leaves).map(|i| Key::chunk(Arc::from("leaf"), &[i as u32])).collect();
    for k in &level {
        tasks.push(Arc::new(Task::new(k.clone(), "op", Params::default(), vec![])));
    }
    let mut depth = 0u32;
    while level.len() > 1 {
        depth += 1;
        let name: Arc<str> = Arc::from(format!("sum{depth}"));
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for (i, pair) in level.chunks(2).enumerate() {
            let key = Key::chunk(name.clone(), &[i as u32]);
            let args = pair.iter().map(|k| Arg::Key(k.clone())).collect();
            tasks.push(Arc::new(Task::new(key.clone(), "op", Params::default(), args)));
            next.push(key);
        }
        level = next;
    }
    let total = tasks.len();
    let wanted = level;
    let config = SimConfig { workers, threads_per_worker: threads, ..SimConfig::default() };
    let report = simulate(tasks, wanted, |t| if t.key.name() == "leaf" { 0.1 } else { 0.01 }, |_| 8, &config)
        .map_err(|e| anyhow::anyhow!(e))?;
    println!(
        "{}",
        json!({
            "bench": "simulate", "tasks": total, "workers": workers, "threads": threads,
            "scheduler_seconds": report.scheduler_seconds,
            "scheduler_microseconds_per_task": report.scheduler_seconds * 1e6 / total as f64,
            "makespan_seconds": report.makespan, "ideal_seconds": report.ideal,
            "makespan_over_ideal": report.makespan / report.ideal,
        })
    );
    Ok(())
}

fn array_mean(shape: &[usize], threads: usize) -> anyhow::Result<()> {
    use rask_array::{Array, Chunks};
    let cluster = LocalCluster::new(1, threads)?;
    let client = Client::without_default(&cluster);
    let x = Array::randint(0, 100, shape, 42, Chunks::Auto)?;
    let t = Instant::now();
    let v = x.mean()?.compute_with(&client)?;
    let secs = t.elapsed().as_secs_f64();
    let mean = match rask_array::dtype::cast(&v, rask_core::DType::F64) {
        rask_core::ArrayValue::F64(a) => a.iter().copied().next().unwrap_or(f64::NAN),
        _ => f64::NAN,
    };
    anyhow::ensure!((mean - 49.5).abs() < 0.1, "mean {mean} is off");
    let bytes = shape.iter().product::<usize>() * 8;
    println!(
        "{}",
        json!({"bench": "randint-mean", "engine": "rask-local", "seconds": secs, "bytes": bytes,
               "chunks": x.npartitions(), "value": mean, "threads": threads})
    );
    Ok(())
}

fn array_sum(n: usize, threads: usize) -> anyhow::Result<()> {
    use rask_array::{Array, Chunks};
    let cluster = LocalCluster::new(1, threads)?;
    let client = Client::without_default(&cluster);
    let data = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[n]), |i| (i[0] % 1000) as f64 * 0.001);
    let expected: f64 = data.sum();
    let x = Array::from_ndarray(&data, Chunks::Auto)?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let v = x.sum()?.compute_with(&client)?;
        best = best.min(t.elapsed().as_secs_f64());
        let rask_core::ArrayValue::F64(a) = v else { anyhow::bail!("sum of float64 is not float64") };
        let got = a.iter().copied().next().unwrap_or(f64::NAN);
        anyhow::ensure!((got - expected).abs() <= 1e-9 * expected.abs(), "sum {got} vs {expected}");
    }
    let bytes = n * 8;
    println!(
        "{}",
        json!({"bench": "inmemory-sum", "engine": "rask-local", "seconds": best, "bytes": bytes,
               "gb_per_second": bytes as f64 / best / 1e9, "threads": threads})
    );
    Ok(())
}

fn array_dot(n: usize, threads: usize) -> anyhow::Result<()> {
    use rask_array::{Array, Chunks};
    let cluster = LocalCluster::new(1, threads)?;
    let client = Client::without_default(&cluster);
    let x = Array::random_uniform(&[n, n], 11, Chunks::Auto)?;
    let t = Instant::now();
    let v = x.dot(&x.add(&x.t())?)?.sum()?.compute_with(&client)?;
    let secs = t.elapsed().as_secs_f64();
    let rask_core::ArrayValue::F64(a) = v else { anyhow::bail!("dot of float64 is not float64") };
    let total = a.iter().copied().next().unwrap_or(f64::NAN);
    // E[x_ik (x_kj + x_jk)] = 0.5 per term, n^3 terms.
    let expected = 0.5 * (n as f64).powi(3);
    anyhow::ensure!((total / expected - 1.0).abs() < 0.01, "sum {total} far from {expected}");
    println!(
        "{}",
        json!({"bench": "dot", "engine": "rask-local", "seconds": secs, "n": n, "chunks": x.npartitions(), "threads": threads})
    );
    Ok(())
}

fn array_hist(n: usize, threads: usize) -> anyhow::Result<()> {
    use rask_array::{Array, BinaryOp, Chunks, Fill};
    let cluster = LocalCluster::new(1, threads)?;
    let client = Client::without_default(&cluster);
    let t = Instant::now();
    let added = Array::random_normal(9.0, 1.0, &[n, n], 1, Chunks::Auto)?.add(&Array::ones(
        &[n, n],
        rask_core::DType::F64,
        Chunks::Auto,
    )?)?;
    let masked = added.mask(&added.scalar(BinaryOp::Lt, Fill::Float(10.0))?)?;
    let (counts, _) = masked.histogram(100, (-9.0, 11.0))?;
    let rask_core::ArrayValue::I64(c) = counts.compute_with(&client)? else { anyhow::bail!("counts are not int64") };
    let secs = t.elapsed().as_secs_f64();
    let total: i64 = c.iter().sum();
    anyhow::ensure!((total as f64 / (n * n) as f64 - 0.5).abs() < 0.01, "{total} values below 10");
    println!("{}", json!({"bench": "histogram", "engine": "rask-local", "seconds": secs, "n": n, "threads": threads}));
    Ok(())
}

/// Writes the benchmark's TIFF stack unless it is already there.
pub fn ensure_tiffs(dir: &std::path::Path, files: usize, shape: [usize; 3]) -> anyhow::Result<()> {
    let marker = dir.join(format!("done-{files}-{}x{}x{}", shape[0], shape[1], shape[2]));
    if marker.exists() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    rask_image::synth::tiff_stacks(dir, files, shape, rask_core::DType::U16, 2024)?;
    std::fs::write(marker, b"")?;
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one flag per argument, from clap
fn image_gauss(
    case: &str,
    dir: &std::path::Path,
    files: usize,
    tiff_shape: &[usize],
    volume_shape: &[usize],
    chunks: &[usize],
    threads: usize,
    repeat: usize,
) -> anyhow::Result<()> {
    use rask_array::{Array, Chunks};
    let cluster = LocalCluster::new(1, threads)?;
    let client = Client::without_default(&cluster);
    let (x, label) = match case {
        "tiff" => {
            let shape: [usize; 3] =
                tiff_shape.try_into().map_err(|_| anyhow::anyhow!("--tiff-shape takes 3 numbers"))?;
            ensure_tiffs(dir, files, shape)?;
            (rask_image::imread(&dir.join("vol_*.tif").to_string_lossy())?, "tiff-stack-uint16")
        }
        "volume" => {
            let x =
                Array::random_uniform(volume_shape, 5, Chunks::Uniform(chunks.to_vec()))?.astype(rask_core::DType::F32);
            // Materialise first: the benchmark times the filter, not the generator.
            let value = x.compute_with(&client)?;
            let rask_core::ArrayValue::F32(a) = value else { anyhow::bail!("not float32") };
            (Array::from_ndarray(&a.to_owned(), Chunks::Uniform(chunks.to_vec()))?, "volume-float32")
        }
        other => anyhow::bail!("unknown case {other:?} (tiff or volume)"),
    };
    let voxels: usize = x.shape().iter().map(|s| s.unwrap_or(0)).product();
    let filtered = rask_image::gaussian_filter(&x, &[2.0], &rask_image::FilterOptions::default())?;
    for _ in 0..repeat {
        let t = Instant::now();
        let mean: f64 = match rask_array::dtype::cast(&filtered.mean()?.compute_with(&client)?, rask_core::DType::F64) {
            rask_core::ArrayValue::F64(a) => a.iter().copied().next().unwrap_or(f64::NAN),
            _ => f64::NAN,
        };
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"bench": "image-gauss", "case": label, "engine": "rask-local", "seconds": secs, "voxels": voxels,
                   "mvox_per_second": voxels as f64 / secs / 1e6, "value": mean, "chunks": x.npartitions(), "threads": threads})
        );
    }
    Ok(())
}

fn transfer(mib: usize, repeat: usize) -> anyhow::Result<()> {
    use rask_worker::DataStore;
    use rask_worker::data::{DataClient, DataService};
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let store = Arc::new(DataStore::new());
        let n = mib * (1 << 20) / 8;
        let data = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), (0..n).map(|i| i as f64).collect())?;
        store.insert(Key::new("big"), rask_core::Value::Array(rask_core::ArrayValue::F64(data.into_shared())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = format!("http://{}", listener.local_addr()?);
        // The worker's data server, as `rask worker` builds it.
        tokio::spawn(
            rask_proto::transport::grpc_server(None)?
                .add_service(DataService::new(store).into_server(None))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let mut client = DataClient::connect(&addr, 4 << 30).await?;
        for _ in 0..repeat {
            let start = Instant::now();
            let got = client.fetch(&[Key::new("big")]).await?;
            let secs = start.elapsed().as_secs_f64();
            let bytes = got.first().map_or(0, |(_, v)| v.nbytes());
            println!(
                "{}",
                json!({"bench": "transfer", "engine": "rask-grpc-loopback", "bytes": bytes, "seconds": secs,
                       "gb_per_second": bytes as f64 / secs / 1e9})
            );
        }
        Ok(())
    })
}

fn main() -> anyhow::Result<()> {
    rask::alloc::use_large_os_pages();
    match Cli::parse().command {
        Command::Transfer { mib, repeat } => transfer(mib, repeat),
        Command::TransferWorkers { mib, repeat } => workers::transfer_between_workers(mib, repeat),
        Command::S3Read { files, mib, threads, repeat } => storage::s3_read(files, mib, threads, repeat),
        Command::DfBirthdays { path, threads, repeat } => frames::birthdays(path.as_deref(), threads, repeat),
        Command::DfWiki { dir, files, bytes, threads, repeat } => frames::wiki(&dir, files, bytes, threads, repeat),
        Command::ImageGauss { case, dir, files, tiff_shape, volume_shape, chunks, threads, repeat } => {
            image_gauss(&case, &dir, files, &tiff_shape, &volume_shape, &chunks, threads, repeat)
        }
        Command::ArrayHist { n, threads } => array_hist(n, threads),
        Command::ArrayDot { n, threads } => array_dot(n, threads),
        Command::ArrayMean { shape, threads } => array_mean(&shape, threads),
        Command::ArraySum { n, threads } => array_sum(n, threads),
        Command::Tasks { n, workers, threads, repeat } => tasks(n, workers, threads, repeat),
        Command::DistributedTasks { n, workers, threads, repeat } => distributed_tasks(n, workers, threads, repeat),
        Command::Simulate { tasks, workers, threads } => simulate_bench(tasks, workers, threads),
    }
}
