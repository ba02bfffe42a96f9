//! The operator's Prometheus metrics, in one registry passed down (never a
//! global). Names start with `rask_operator_`, use base units and end
//! counters in `_total`; labels are bounded (controller, reason, phase),
//! never a cluster name.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::Result;

/// The phases a cluster can be in, so every series exists from the start.
const PHASES: [&str; 4] = ["Pending", "Running", "Scaling", "Updating"];

/// The controllers' label values (controller.rs's `instrumented` calls).
const CONTROLLERS: [&str; 3] = ["daskcluster", "daskworkergroup", "daskjob"];

/// Every value of [`crate::Error::reason`]: the error series exist at 0 from
/// the start, so a dashboard or alert that finds no data has a wrong metric
/// name rather than a quiet operator.
const ERROR_REASONS: [&str; 10] = [
    "api_status",
    "api_transport",
    "serialization",
    "io",
    "scheduler_unreachable",
    "metrics",
    "missing_field",
    "cluster_not_found",
    "lost_leadership",
    "config",
];

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub errors: IntCounterVec,
    pub duration: HistogramVec,
    pub clusters: IntGaugeVec,
    pub workers_desired: IntGauge,
    pub workers_actual: IntGauge,
    pub workers_retired: IntCounterVec,
    pub leader: IntGauge,
    /// Autoscaling decisions that changed a group's replicas, by direction
    /// (`up` or `down`); the reason of each is in its Event and the status.
    pub scaling_decisions: IntCounterVec,
    /// Per cluster (namespace/name): phase, desired and actual workers; the
    /// gauges are sums over this, so a deleted cluster stops counting.
    per_cluster: Mutex<HashMap<String, (String, i64, i64)>>,
}

impl Metrics {
    pub fn new() -> Result<Metrics> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("rask_operator_reconciles_total", "Reconciles run, by controller"),
            &["controller"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new("rask_operator_reconcile_errors_total", "Reconciles that failed, by controller and reason"),
            &["controller", "reason"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("rask_operator_reconcile_duration_seconds", "Time one reconcile took")
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0]),
            &["controller"],
        )?;
        let clusters = IntGaugeVec::new(Opts::new("rask_operator_clusters", "DaskClusters by phase"), &["phase"])?;
        let workers_desired =
            IntGauge::new("rask_operator_workers_desired", "Worker pods wanted, over all clusters and groups")?;
        let workers_actual =
            IntGauge::new("rask_operator_workers_actual", "Worker pods present, over all clusters and groups")?;
        let workers_retired = IntCounterVec::new(
            Opts::new("rask_operator_workers_removed_total", "Worker pods removed, by how (retired or deleted)"),
            &["how"],
        )?;
        let leader = IntGauge::new("rask_operator_leader", "1 while this process holds the leader Lease")?;
        let scaling_decisions = IntCounterVec::new(
            Opts::new(
                "rask_operator_scaling_decisions_total",
                "Autoscaling decisions that changed replicas, by direction",
            ),
            &["direction"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(clusters.clone()))?;
        registry.register(Box::new(workers_desired.clone()))?;
        registry.register(Box::new(workers_actual.clone()))?;
        registry.register(Box::new(workers_retired.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(scaling_decisions.clone()))?;
        for phase in PHASES {
            clusters.with_label_values(&[phase]).set(0);
        }
        for direction in ["up", "down"] {
            scaling_decisions.with_label_values(&[direction]).reset();
        }
        for controller in CONTROLLERS {
            for reason in ERROR_REASONS {
                errors.with_label_values(&[controller, reason]).reset();
            }
        }
        for how in ["retired", "deleted"] {
            workers_retired.with_label_values(&[how]).reset();
        }
        Ok(Metrics {
            registry,
            reconciles,
            errors,
            duration,
            clusters,
            workers_desired,
            workers_actual,
            workers_retired,
            leader,
            scaling_decisions,
            per_cluster: Mutex::new(HashMap::new()),
        })
    }

    /// Records a group's phase and worker counts (key: `kind/ns/name`);
    /// `None` forgets it (the object was deleted).
    pub fn set_group(&self, key: &str, state: Option<(&str, i64, i64)>) {
        let mut map = self.per_cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match state {
            Some((phase, desired, actual)) => {
                map.insert(key.to_string(), (phase.to_string(), desired, actual));
            }
            None => {
                map.remove(key);
            }
        }
        let mut by_phase: HashMap<&str, i64> = PHASES.iter().map(|p| (*p, 0)).collect();
        let (mut desired, mut actual) = (0, 0);
        for (k, (phase, d, a)) in map.iter() {
            if k.starts_with("DaskCluster/") {
                *by_phase.entry(phase.as_str()).or_default() += 1;
            }
            desired += d;
            actual += a;
        }
        for (phase, n) in by_phase {
            self.clusters.with_label_values(&[phase]).set(n);
        }
        self.workers_desired.set(desired);
        self.workers_actual.set(actual);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder.encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_sum_over_clusters_and_forget_deleted_ones() {
        let m = Metrics::new().expect("metrics");
        m.set_group("DaskCluster/ns/a", Some(("Running", 3, 3)));
        m.set_group("DaskCluster/ns/b", Some(("Scaling", 5, 2)));
        m.set_group("DaskWorkerGroup/ns/g", Some(("Running", 1, 1)));
        assert_eq!(m.workers_desired.get(), 9);
        assert_eq!(m.clusters.with_label_values(&["Running"]).get(), 1);
        m.set_group("DaskCluster/ns/b", None);
        assert_eq!(m.workers_actual.get(), 4);
        assert_eq!(m.clusters.with_label_values(&["Scaling"]).get(), 0);
        m.reconciles.with_label_values(&["daskcluster"]).inc();
        let text = m.render();
        assert!(text.contains("rask_operator_reconciles_total{controller=\"daskcluster\"} 1"), "{text}");
        assert!(text.contains("rask_operator_clusters{phase=\"Running\"} 1"));
    }

    #[test]
    fn error_and_removal_series_exist_from_the_start() {
        let text = Metrics::new().expect("metrics").render();
        assert!(
            text.contains("rask_operator_reconcile_errors_total{controller=\"daskjob\",reason=\"api_status\"} 0"),
            "{text}"
        );
        assert!(text.contains("rask_operator_workers_removed_total{how=\"retired\"} 0"), "{text}");
        // Every reason an error can have is among the pre-created ones.
        let errors = [
            crate::Error::Config("x".into()),
            crate::Error::LostLeadership,
            crate::Error::Io(std::io::Error::other("x")),
            crate::Error::Scheduler { url: "u".into(), message: "m".into() },
            crate::Error::MissingField { kind: "k", name: "n".into(), field: "f" },
            crate::Error::ClusterNotFound { group: "g".into(), cluster: "c".into() },
            crate::Error::Json(serde_json::from_str::<u8>("x").expect_err("not JSON")),
        ];
        for e in errors {
            assert!(ERROR_REASONS.contains(&e.reason()), "{} is not pre-created", e.reason());
        }
    }
}
