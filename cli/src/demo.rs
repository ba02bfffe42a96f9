//! `rask demo`: the tutorial's workloads, each printed with its result and
//! wall time, on an embedded local cluster or, with `--scheduler` (or
//! `RASK_SCHEDULER_ADDRESS` / `DASK_SCHEDULER_ADDRESS`), on a running one.
//! `rask demo` runs every section; `rask demo delayed` runs one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rask::{Client, Delayed, Future, LocalCluster, delayed, op};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Which part of the tutorial to run; all of them by default.
    #[arg(value_enum)]
    section: Option<Section>,
    /// Run on this scheduler (`tcp://host:8786`, `tls://...`) instead of an
    /// embedded local cluster; by default the one `RASK_SCHEDULER_ADDRESS`,
    /// else `DASK_SCHEDULER_ADDRESS`, names, if set. Token and TLS files come
    /// from `RASK_TOKEN` and `RASK_TLS_*`. The dataframe and image sections
    /// read and write local files, so their workers must see this machine's
    /// files (same machine or a shared filesystem).
    #[arg(long)]
    scheduler: Option<String>,
    /// Workers in the local cluster.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Threads per worker (the tutorial's timings assume 2).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// How long each slow `inc`/`add` sleeps, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    sleep_ms: u64,
    /// Also write the task graph of the first example here (.dot; .svg and
    /// .png need Graphviz's `dot`).
    #[arg(long)]
    visualize: Option<std::path::PathBuf>,
    /// Where the histogram exercise writes its plot.
    #[arg(long, default_value = "histogram.png")]
    histogram_png: std::path::PathBuf,
    /// Where the image section writes its generated inputs and PNGs.
    #[arg(long, default_value = "rask-image-demo")]
    image_dir: std::path::PathBuf,
    /// The tutorial's Birthdays data (by default the shipped
    /// `Birthdays.csv.xz`, beside the installed binary or in the checkout's
    /// `data/` folder).
    #[arg(long, env = "RASK_BIRTHDAYS")]
    birthdays: Option<std::path::PathBuf>,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
enum Section {
    Delayed,
    Array,
    Dataframe,
    Image,
}

static SLEEP_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);

fn nap() {
    std::thread::sleep(Duration::from_millis(SLEEP_MS.load(std::sync::atomic::Ordering::Relaxed)));
}

op! {
    /// The tutorial's `inc`: slow on purpose.
    pub fn inc(x: i64) -> i64 {
        nap();
        x + 1
    }
}

op! {
    /// The tutorial's `add`: slow on purpose.
    pub fn add(x: i64, y: i64) -> i64 {
        nap();
        x + y
    }
}

op! {
    /// `np.prod` over a list.
    pub fn prod(xs: Vec<i64>) -> i64 {
        xs.iter().product()
    }
}

/// The client of the running demo, so that Ctrl-C can close it.
static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

pub fn shutdown() {
    if let Some(client) = CLIENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
        client.close();
    }
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    SLEEP_MS.store(args.sleep_ms, std::sync::atomic::Ordering::Relaxed);
    let (client, cluster) = match args.scheduler.clone().or_else(rask::scheduler_address_from_env) {
        Some(address) => {
            let client = Client::connect(&address).with_context(|| format!("connecting to the scheduler {address}"))?;
            println!("Client: the scheduler at {address}");
            (client, None)
        }
        None => {
            let cluster = LocalCluster::new(args.workers, args.threads).context("starting the local cluster")?;
            println!("LocalCluster: {} worker(s) x {} thread(s)", args.workers, args.threads);
            (Client::new(&cluster), Some(cluster))
        }
    };
    *CLIENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(client.clone());
    let sections = match args.section {
        Some(s) => vec![s],
        None => vec![Section::Delayed, Section::Array, Section::Dataframe, Section::Image],
    };
    for section in sections {
        match section {
            Section::Delayed => delayed_section(&client, cluster.as_ref(), args)?,
            Section::Array => array_section(&client, args)?,
            Section::Dataframe => crate::frames::dataframe_section(args.birthdays.as_deref())?,
            Section::Image => image_section(args)?,
        }
    }
    shutdown();
    Ok(())
}

/// Waits for a future while a progress bar follows the local cluster's
/// completed task count (hidden when stderr is not a terminal, and on a
/// remote cluster, whose dashboard shows progress instead).
fn wait<T: rask::core::FromValue>(cluster: Option<&LocalCluster>, future: &Future<T>, tasks: u64) -> anyhow::Result<T> {
    let Some(cluster) = cluster else { return Ok(future.result()?) };
    let start = cluster.snapshot().map(|s| s.completed_total).unwrap_or(0);
    let bar = ProgressBar::new(tasks);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    loop {
        match future.result_timeout(Duration::from_millis(100)) {
            Err(rask::Error::Timeout(_)) => {
                let done = cluster.snapshot().map(|s| s.completed_total).unwrap_or(start);
                bar.set_position(done.saturating_sub(start).min(tasks));
            }
            other => {
                bar.finish_and_clear();
                return Ok(other?);
            }
        }
    }
}

pub(crate) fn report(label: &str, value: impl std::fmt::Display, started: Instant) {
    println!("  {label:<44} = {value:<10} ({:.2} s)", started.elapsed().as_secs_f64());
}

fn delayed_section(client: &Client, cluster: Option<&LocalCluster>, args: &DemoArgs) -> anyhow::Result<()> {
    println!("\n== delayed: lazy task graphs ==");
    let x = delayed!(inc(1));
    let y = delayed!(inc(2));
    let z = delayed!(add(&x, &y));
    println!("  z = {z}   (nothing has run yet)");
    if let Some(path) = &args.visualize {
        visualize(&z, path)?;
    }
    // Each graph runs from scratch (its results are released once read):
    // the section's task count is the sum of the graphs' sizes.
    let mut tasks = 0;
    let started = Instant::now();
    tasks += rask::task_count(std::slice::from_ref(&z));
    let value = wait(cluster, &client.compute(&z), 3)?;
    report("z.compute()  [inc(1), inc(2) in parallel]", value, started);

    let z2 = delayed!(add(delayed!(inc(1)), delayed!(inc(2))));
    let total: Delayed<i64> = delayed!(add(&z, &z2));
    let started = Instant::now();
    tasks += rask::task_count(std::slice::from_ref(&total));
    let value = wait(cluster, &client.compute(&total), 7)?;
    report("total = add(z, z2)", value, started);

    let data = [3i64, 8, 1, 4, 2, 9, 4, 6];
    let newdata: Vec<Delayed<i64>> = data.iter().map(|&x| delayed!(inc(x))).collect();
    let product = delayed!(prod(&newdata));
    let started = Instant::now();
    tasks += rask::task_count(std::slice::from_ref(&product));
    let value = wait(cluster, &client.compute(&product), data.len() as u64 + 1)?;
    report("prod([inc(x) for x in data])", value, started);

    let (a, b) = (delayed!(inc(10)), delayed!(inc(20)));
    let shared = delayed!(add(&a, &b));
    let started = Instant::now();
    let both = [&shared + 1, &shared * 2];
    tasks += rask::task_count(&both);
    let futures = client.compute_many(&[&both[0], &both[1]]);
    let values: Vec<i64> = futures.iter().map(Future::result).collect::<Result<_, _>>()?;
    report("compute((s + 1, s * 2)) sharing s", format!("{values:?}"), started);
    println!("  {tasks} tasks in this section");
    Ok(())
}

/// Writes the task graph. Drawing (.svg, .png) needs Graphviz, which the
/// demo's set-up does not install: without it, the DOT text is written
/// beside and the message says how to get the drawing.
fn visualize(z: &Delayed<i64>, path: &std::path::Path) -> anyhow::Result<()> {
    match z.visualize().write(path) {
        Ok(()) => println!("  task graph written to {}", path.display()),
        Err(e) => {
            let dot = path.with_extension("dot");
            z.visualize().write(&dot)?;
            println!("  {e}\n  the graph is in {} instead", dot.display());
        }
    }
    Ok(())
}

fn array_section(client: &Client, args: &DemoArgs) -> anyhow::Result<()> {
    use rask_array::{Array, BinaryOp, Chunks, Fill};
    println!("\n== array: chunked n-dimensional arrays ==");
    let x = Array::randint(0, 100, &[10000, 1000, 100], 42, Chunks::Auto)?;
    println!("x = random.randint(0, 100, (10000, 1000, 100))   (nothing computed yet)");
    for line in x.to_string().lines() {
        println!("    {line}");
    }
    let started = Instant::now();
    let mean: f64 = x.mean()?.compute_with(client).map(|v| scalar_f64(&v))??;
    report("x.mean()   [8 GB, never all in memory]", format!("{mean:.6}"), started);

    let ones = Array::ones(&[1000, 1000], rask::core::DType::F64, Chunks::Uniform(vec![500, 500]))?;
    let started = Instant::now();
    let v = ones.scalar(BinaryOp::Mul, Fill::Int(10))?.max()?.compute_with(client).map(|v| scalar_f64(&v))??;
    report("(10 * ones((1000, 1000))).max()", v, started);

    let y = Array::random_uniform(&[10000, 10000], 7, Chunks::Auto)?;
    let started = Instant::now();
    let s = y.add(&y.scalar(BinaryOp::Mul, Fill::Int(2))?)?.mean()?.compute_with(client).map(|v| scalar_f64(&v))??;
    report("(y + 2 * y).mean(), y = random((10000, 10000))", format!("{s:.6}"), started);

    let z = Array::random_uniform(&[5000, 5000], 3, Chunks::Uniform(vec![2500, 2500]))?;
    let part = z.slice(&[rask_array::Index::range(None, Some(2500), 1), rask_array::Index::range(None, None, 2)])?;
    println!("  z[:2500, ::2] -> {part:?}");
    let started = Instant::now();
    let s = part.sum()?.compute_with(client).map(|v| scalar_f64(&v))??;
    report("z[:2500, ::2].sum()", format!("{s:.3}"), started);
    let started = Instant::now();
    let col = z.sum_axis(0)?.compute_with(client)?;
    report("z.sum(axis=0)", format!("shape {:?}", col.shape()), started);
    let small = Array::random_uniform(&[2000, 2000], 4, Chunks::Uniform(vec![1000, 1000]))?;
    let sym = small.add(&small.t())?;
    let started = Instant::now();
    let d = small.dot(&sym)?.mean()?.compute_with(client).map(|v| scalar_f64(&v))??;
    report("dot(x, x + x.T).mean(), x: 2000 x 2000", format!("{d:.4}"), started);

    // The exercise: normal(9, 1) + 1, keep values below 10, histogram, plot.
    let started = Instant::now();
    let normal = Array::random_normal(9.0, 1.0, &[5000, 5000], 1, Chunks::Auto)?;
    let added = normal.add(&Array::ones(&[5000, 5000], rask::core::DType::F64, Chunks::Auto)?)?;
    let masked = added.mask(&added.scalar(BinaryOp::Lt, Fill::Float(10.0))?)?;
    println!("  masked = added[added < 10]: {masked:?}");
    let (counts, edges) = masked.histogram(100, (-9.0, 11.0))?;
    let rask::core::ArrayValue::I64(counts) = counts.compute_with(client)? else {
        anyhow::bail!("histogram counts are not int64");
    };
    let counts: Vec<i64> = counts.iter().copied().collect();
    let peak = counts.iter().enumerate().max_by_key(|(_, c)| **c).map_or(0, |(i, _)| i);
    crate::plot::bar_chart(&counts, &args.histogram_png)?;
    report(
        "histogram(added[added < 10], 100, (-9, 11))",
        format!("{} values, peak bin [{:.1}, {:.1})", counts.iter().sum::<i64>(), edges[peak], edges[peak + 1]),
        started,
    );
    println!("  plot written to {}", args.histogram_png.display());
    Ok(())
}

fn image_section(args: &DemoArgs) -> anyhow::Result<()> {
    println!("\n== image: image stacks and ndimage filters ==");
    // The tutorial's photos are 3456 x 5184 RGB JPEGs; generate that size.
    let config =
        rask_image::demo::DemoConfig { dir: args.image_dir.clone(), photo_shape: (3456, 5184), ..Default::default() };
    let started = Instant::now();
    let outcome = rask_image::demo::run(&config)?;
    report("max over files of mean(gaussian(im[0:40]))", format!("{:.6}", outcome.max_mean), started);
    Ok(())
}

fn scalar_f64(v: &rask::core::ArrayValue) -> anyhow::Result<f64> {
    let as_f64 = rask_array::dtype::cast(v, rask::core::DType::F64);
    match as_f64 {
        rask::core::ArrayValue::F64(a) if a.len() == 1 => Ok(a.iter().copied().next().unwrap_or(f64::NAN)),
        other => anyhow::bail!("expected a scalar, got shape {:?}", other.shape()),
    }
}
