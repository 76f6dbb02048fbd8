//! Phase 5, resume at scale: `SCALE_RESUME_CRATES` (10,000) more crates in namespaces of
//! `SCALE_RESUME_PER_NAMESPACE` (100), seeded as a finished load leaves them (the status of a
//! crate the load phase loaded, written by server-side apply under the manager's field
//! manager), then a new manager on all of them and the load phase's crates and Jobs. Measured:
//! time to its first reconcile and until every crate was reconciled once, the Jobs it started
//! and statuses it changed (both should be 0), its API requests, its peak RSS and its RSS after
//! a settling pause, and the reconcile duration percentiles from its histogram.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crate_operator_api::AnalyticsCrateStatus;
use crate_test_cluster::audit::Requests;
use crate_test_cluster::operator::ProcessStats;
use jiff::Timestamp;

use crate::fixture::{Population, create_crates, seed_status};
use crate::track::{Snapshot, Tracker, ready_at};
use crate::{Config, METRICS_EVERY, Setup, Window, count, metrics, start_manager};

/// What the phase measured.
pub struct AtScale {
    pub window: Window,
    pub seeded: usize,
    pub namespaces: usize,
    pub seed_took: Duration,
    /// Every crate the manager had to look at: the seeded ones and the load phase's.
    pub crates: usize,
    pub jobs: usize,
    pub first_reconcile: Option<Duration>,
    pub reconciled: Duration,
    pub jobs_created: usize,
    pub statuses_changed: usize,
    pub reconcile_errors: f64,
    /// The manager once every crate was reconciled, and after the settling pause.
    pub reconciled_stats: ProcessStats,
    pub settled_stats: ProcessStats,
    /// Reconcile duration percentiles (50, 90, 99): the upper bound of the histogram bucket
    /// each falls in.
    pub percentiles: Vec<(u8, Option<f64>)>,
    pub requests: Requests,
}

/// Seeds the crates, starts a manager on everything and waits until it has reconciled each
/// crate once, then for the settling pause.
pub async fn phase(
    config: &Config,
    setup: &Setup,
    tracker: &mut Tracker,
) -> anyhow::Result<Option<(PathBuf, AtScale)>> {
    if config.resume_crates == 0 {
        return Ok(None);
    }
    let template = loaded_status(tracker, &setup.head)?;
    eprintln!("scale: seeding {} up-to-date crates", config.resume_crates);
    let seeding = Instant::now();
    let client = setup.plane.admin_client().await?;
    let population = Population {
        prefix: "seed",
        crates: config.resume_crates,
        per_namespace: config.resume_per_namespace,
    };
    let seeded = create_crates(&population, &client, &setup.url).await?;
    seed_status(&seeded, &template).await?;
    let total = config.crates + config.resume_crates;
    tracker
        .until("the seeded crates are seen Ready", config.timeout, |w| {
            w.ready(&setup.head) >= total
        })
        .await?;
    let seed_took = seeding.elapsed();

    let before = Snapshot::take(&tracker.world);
    eprintln!("scale: starting a manager on {total} up-to-date crates");
    let (manager, log) = start_manager(config, setup, "scale-m2")?;
    let (start, started_at) = (Instant::now(), Timestamp::now());
    let (mut first_reconcile, mut reconciled) = (None, None);
    let mut last: Option<Instant> = None;
    tracker
        .until("every crate was reconciled", config.timeout, |_| {
            if last.is_some_and(|at| at.elapsed() < METRICS_EVERY) {
                return false;
            }
            last = Some(Instant::now());
            let m = metrics(&manager);
            if m.reconciles >= 1.0 {
                first_reconcile.get_or_insert(start.elapsed());
            }
            if m.reconciles >= count(total) {
                reconciled.get_or_insert(start.elapsed());
            }
            reconciled.is_some()
        })
        .await
        .with_context(|| format!("the manager's log ends:\n{}", manager.log_tail()))?;
    let reconciled_stats = manager.stats()?;
    tracker.run_for(config.settle).await?;
    let settled_stats = manager.stats()?;
    let window = (started_at, Timestamp::now());
    let text = manager
        .get("/metrics")
        .map(|(_, text)| text)
        .unwrap_or_default();
    let percentiles = [50, 90, 99]
        .into_iter()
        .map(|p| {
            let quantile = f64::from(p) / 100.0;
            (
                p,
                histogram_quantile(&text, "crate_operator_reconcile_duration_seconds", quantile),
            )
        })
        .collect();
    let seeded = AtScale {
        window,
        seeded: config.resume_crates,
        namespaces: config.resume_crates.div_ceil(config.resume_per_namespace),
        seed_took,
        crates: total,
        jobs: before.jobs.len(),
        first_reconcile,
        reconciled: reconciled.unwrap_or_default(),
        jobs_created: before.jobs_created(&tracker.world),
        statuses_changed: before.statuses_changed(&tracker.world),
        reconcile_errors: metrics(&manager).errors,
        reconciled_stats,
        settled_stats,
        percentiles,
        requests: Requests::default(),
    };
    manager.stop();
    Ok(Some((log, seeded)))
}

/// The status of a crate the load phase loaded, to seed others with.
fn loaded_status(tracker: &Tracker, head: &str) -> anyhow::Result<AnalyticsCrateStatus> {
    tracker
        .world
        .crates
        .values()
        .find(|c| ready_at(c, head) && c.metadata.generation == Some(1))
        .and_then(|c| c.status.clone())
        .context("no crate was loaded to take a status from")
}

/// The upper bound of the histogram bucket holding quantile `q` of `name` in Prometheus text
/// (`None` without samples, or when it falls in the `+Inf` bucket).
fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, value) = rest.split_once("\"} ")?;
            Some((le.parse().ok()?, value.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.iter().map(|(_, n)| *n).fold(0.0, f64::max);
    if total == 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map(|(le, _)| *le)
        .filter(|le: &f64| le.is_finite())
}
