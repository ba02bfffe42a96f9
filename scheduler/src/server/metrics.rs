//! The scheduler's Prometheus metrics: `rask_scheduler_*`, base units,
//! `_total` counters. Gauges are refreshed from the state machine on every
//! tick; durations are observed as tasks finish.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub workers: IntGauge,
    pub threads: IntGauge,
    pub tasks: IntGaugeVec,
    pub queue_depth: IntGauge,
    pub desired_workers: IntGauge,
    pub completed: IntCounter,
    pub erred: IntCounter,
    pub durations: HistogramVec,
    pub stored: IntGauge,
    pub spilled: IntGauge,
    pub transferred: IntCounter,
    pub gathered: IntCounter,
    pub clients: IntGauge,
    pub tick: Histogram,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub(crate) fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let tasks =
            IntGaugeVec::new(Opts::new("rask_scheduler_tasks", "Tasks known to the scheduler, by state"), &["state"])?;
        r.register(Box::new(tasks.clone()))?;
        let durations = HistogramVec::new(
            HistogramOpts::new("rask_scheduler_task_duration_seconds", "Run time of finished tasks, by task prefix")
                .buckets(prometheus::exponential_buckets(1e-5, 4.0, 12)?),
            &["prefix"],
        )?;
        r.register(Box::new(durations.clone()))?;
        let tick = Histogram::with_opts(
            HistogramOpts::new("rask_scheduler_tick_duration_seconds", "Time to refresh the scheduler's metrics")
                .buckets(prometheus::exponential_buckets(1e-5, 4.0, 10)?),
        )?;
        r.register(Box::new(tick.clone()))?;
        Ok(Self {
            workers: gauge(&r, "rask_scheduler_workers", "Workers connected")?,
            threads: gauge(&r, "rask_scheduler_threads", "Worker threads in the cluster")?,
            tasks,
            queue_depth: gauge(
                &r,
                "rask_scheduler_queue_depth",
                "Ready tasks waiting for a thread: queued on the scheduler or on a worker",
            )?,
            desired_workers: gauge(
                &r,
                "rask_scheduler_desired_workers",
                "Workers the current load could use (the adaptive target)",
            )?,
            completed: counter(&r, "rask_scheduler_tasks_completed_total", "Tasks that finished")?,
            erred: counter(&r, "rask_scheduler_tasks_erred_total", "Tasks that failed")?,
            durations,
            stored: gauge(&r, "rask_scheduler_stored_bytes", "Bytes of results held by workers")?,
            spilled: gauge(&r, "rask_scheduler_spilled_bytes", "Bytes of results spilled to disk by workers")?,
            transferred: counter(&r, "rask_scheduler_transfer_bytes_total", "Bytes workers fetched from their peers")?,
            gathered: counter(&r, "rask_scheduler_gather_bytes_total", "Bytes sent to clients by gather")?,
            clients: gauge(&r, "rask_scheduler_clients", "Clients connected")?,
            tick,
            registry: r,
        })
    }

    /// Moves a counter up to a total kept elsewhere (counters never go down).
    pub(crate) fn set_counter(&self, c: &IntCounter, total: u64) {
        let now = c.get();
        if total > now {
            c.inc_by(total - now);
        }
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
