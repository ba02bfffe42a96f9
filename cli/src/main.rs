//! The `rask` command. A thin layer over the libraries: it parses
//! arguments, sets up logging and Ctrl-C, and calls into `demo`.

mod cluster;
mod data;
mod demo;
mod frames;
mod plot;

// mimalloc keeps freed blocks for reuse: 100 MiB array chunks and millions of
// small task records do not go back to the OS and fault back in. Measured:
// randint(...).mean() over 8 GB 3x faster, tiny tasks 1.5x (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "rask", version, about = "Dask-style parallel computing in Rust")]
struct Cli {
    /// Log format: human-readable text or JSON lines (for clusters).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "RASK_LOG_FORMAT", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the tutorial's workloads on the embedded local cluster and prints
    /// each result with its wall time.
    Demo(demo::DemoArgs),
    /// Runs a scheduler: gRPC for clients and workers, HTTP for the
    /// dashboard, the Dask-compatible API and Prometheus metrics.
    Scheduler(cluster::SchedulerArgs),
    /// Runs a worker that joins a scheduler.
    Worker(cluster::WorkerArgs),
    /// Runs the Kubernetes operator (DaskCluster, DaskWorkerGroup, DaskJob).
    Operator(rask_operator::cli::OperatorArgs),
    /// Writes the CRDs (crds/*.yaml) from the operator's Rust types.
    Crdgen(rask_operator::cli::CrdgenArgs),
}

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    rask::alloc::use_large_os_pages();
    let cli = Cli::parse();
    match cli.command {
        // Services log what they do; the demo prints results and logs only warnings.
        Command::Scheduler(args) => {
            init_tracing(cli.log_format, "info");
            return cluster::scheduler(args);
        }
        Command::Worker(args) => {
            init_tracing(cli.log_format, "info");
            return cluster::worker(args);
        }
        Command::Operator(args) => {
            init_tracing(cli.log_format, "info");
            return Ok(rask_operator::cli::operator(&args)?);
        }
        Command::Crdgen(args) => return Ok(rask_operator::cli::crdgen(&args)?),
        Command::Demo(_) => init_tracing(cli.log_format, "warn"),
    }
    // Ctrl-C ends the process after the local cluster has been told to stop:
    // a small runtime waits for the signal beside the work.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let work = std::thread::spawn(move || {
        let result = match cli.command {
            Command::Demo(args) => demo::run(&args),
            Command::Scheduler(_) | Command::Worker(_) | Command::Operator(_) | Command::Crdgen(_) => Ok(()),
        };
        let _ = done_tx.send(());
        result
    });
    let interrupted = runtime.block_on(async {
        tokio::select! {
            _ = done_rx => false,
            _ = tokio::signal::ctrl_c() => true,
        }
    });
    if interrupted {
        eprintln!("\ninterrupted: stopping the local cluster");
        demo::shutdown();
        #[allow(clippy::disallowed_methods)] // main decides the exit code; 130 is the shell's code for SIGINT
        std::process::exit(130);
    }
    work.join().map_err(|_| anyhow::anyhow!("the demo thread panicked"))?
}
