//! Prometheus metrics of the manager, served on `/metrics` by [`crate::server`].
//!
//! Counters for reconciles and loader Jobs (started, finished by outcome), a reconcile-duration
//! histogram, and gauges for running loader Jobs, crates waiting for capacity (the queue) and
//! whether this replica leads.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// Every metric the manager exports.
#[derive(Debug)]
pub struct Metrics {
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub jobs_started: Counter,
    pub jobs_finished: Family<OutcomeLabels, Counter>,
    pub jobs_running: Gauge,
    pub crates_waiting: Gauge,
    /// 1 while this replica runs the controller (it holds the Lease, or runs without election).
    pub leader: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("crate_operator");
        let reconciles = Counter::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let jobs_started = Counter::default();
        let jobs_finished = Family::<OutcomeLabels, Counter>::default();
        let jobs_running = Gauge::default();
        let crates_waiting = Gauge::default();
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles of AnalyticsCrates",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time taken by one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "loader_jobs_started",
            "Loader Jobs created",
            jobs_started.clone(),
        );
        registry.register(
            "loader_jobs_finished",
            "Loader Jobs finished, by outcome",
            jobs_finished.clone(),
        );
        registry.register(
            "loader_jobs_running",
            "Loader Jobs not finished yet",
            jobs_running.clone(),
        );
        registry.register(
            "crates_waiting",
            "Crates with a load due but held back by the running-Job caps",
            crates_waiting.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica runs the controller (holds the leader Lease), else 0",
            leader.clone(),
        );
        Metrics {
            reconciles,
            reconcile_errors,
            reconcile_duration,
            jobs_started,
            jobs_finished,
            jobs_running,
            crates_waiting,
            leader,
            registry,
        }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, took: Duration) {
        self.reconciles.inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_with_the_operator_prefix() {
        let metrics = Metrics::default();
        metrics.observe_reconcile(Duration::from_millis(3));
        metrics
            .jobs_finished
            .get_or_create(&OutcomeLabels {
                outcome: "Loaded".into(),
            })
            .inc();
        let text = metrics.encode().expect("encodes");
        for name in [
            "crate_operator_reconciles_total 1",
            "crate_operator_reconcile_duration_seconds_count 1",
            "crate_operator_loader_jobs_finished_total{outcome=\"Loaded\"} 1",
            "crate_operator_loader_jobs_running 0",
            "crate_operator_crates_waiting 0",
            "crate_operator_leader 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
