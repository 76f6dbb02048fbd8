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
use crate_operator_api::{AnalyticsCrate, AnalyticsCrateStatus};
use crate_test_cluster::audit::Requests;
use crate_test_cluster::operator::{Manager, ProcessStats};
use jiff::Timestamp;

use crate::finished;
use crate::fixture::{Population, create_crates, seed_status};
use crate::track::{Snapshot, Tracker, ready_at};
use crate::{Config, METRICS_EVERY, Metrics, Setup, Window, count, metrics, start_manager};

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
    pub turnover: Turned,
}

/// What turning over every seeded Job measured.
pub struct Turned {
    pub jobs: usize,
    pub took: Duration,
    pub jobs_created: usize,
    pub statuses_changed: usize,
    pub reconcile_errors: f64,
    /// The manager after the settling pause that follows.
    pub stats: ProcessStats,
}

/// Seeds the crates, starts a manager on everything and waits until it has reconciled each
/// crate once, then for the settling pause; returns that manager, still leading, for phase 6.
pub async fn phase(
    config: &Config,
    setup: &Setup,
    tracker: &mut Tracker,
) -> anyhow::Result<Option<(Manager, PathBuf, AtScale)>> {
    if config.resume_crates == 0 {
        return Ok(None);
    }
    let (seeded, seed_took) = Seeded::create(config, setup, tracker).await?;
    let total = config.crates + config.resume_crates;
    let before = Snapshot::take(&tracker.world);
    eprintln!("scale: starting a manager on {total} up-to-date crates");
    let (manager, log) = start_manager(config, setup, "scale-m2")?;
    let (start, started_at) = (Instant::now(), Timestamp::now());
    let (mut first_reconcile, mut reconciled) = (None, None);
    until_metrics(
        config,
        tracker,
        &manager,
        "every crate was reconciled",
        |m| {
            if m.reconciles >= 1.0 {
                first_reconcile.get_or_insert(start.elapsed());
            }
            if m.reconciles >= count(total) {
                reconciled.get_or_insert(start.elapsed());
            }
            reconciled.is_some()
        },
    )
    .await?;
    let reconciled_stats = manager.stats()?;
    tracker.run_for(config.settle).await?;
    let settled_stats = manager.stats()?;
    let window = (started_at, Timestamp::now());
    let reconcile_errors = metrics(&manager).errors;
    let (jobs_created, statuses_changed) = (
        before.jobs_created(&tracker.world),
        before.statuses_changed(&tracker.world),
    );
    let turnover = seeded.turn_over(config, tracker, &manager).await?;
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
        jobs_created,
        statuses_changed,
        reconcile_errors,
        reconciled_stats,
        settled_stats,
        percentiles,
        requests: Requests::default(),
        turnover,
    };
    Ok(Some((manager, log, seeded)))
}

/// The seeded crates and what their Jobs copy.
struct Seeded {
    client: kube::Client,
    namespaces: Vec<String>,
    crates: Vec<AnalyticsCrate>,
    template: finished::Template,
    finished_at: Timestamp,
}

impl Seeded {
    /// Creates the crates, their statuses and their finished Jobs, and waits until the tracker
    /// has seen them all; returns them and how long that took.
    async fn create(
        config: &Config,
        setup: &Setup,
        tracker: &mut Tracker,
    ) -> anyhow::Result<(Seeded, Duration)> {
        let status = loaded_status(tracker, &setup.head)?;
        let finished_at = (status.last_load_time.as_ref().map(|t| t.0))
            .context("the loaded crate's status has no lastLoadTime")?;
        eprintln!(
            "scale: seeding {} up-to-date crates and their finished Jobs",
            config.resume_crates
        );
        let seeding = Instant::now();
        let client = setup.plane.admin_client().await?;
        let template = finished::Template::take(&client).await?;
        let population = Population {
            prefix: "seed",
            crates: config.resume_crates,
            per_namespace: config.resume_per_namespace,
        };
        let crates = create_crates(&population, &client, &setup.url).await?;
        seed_status(&client, &crates, |name| finished::recorded(&status, name)).await?;
        finished::create(&client, &crates, &template, finished_at).await?;
        let total = config.crates + config.resume_crates;
        let jobs = tracker.world.jobs.len() + config.resume_crates;
        tracker
            .until(
                "the seeded crates are seen Ready, and their Jobs",
                config.timeout,
                |w| w.ready(&setup.head) >= total && w.jobs.len() >= jobs,
            )
            .await?;
        let seeded = Seeded {
            client,
            namespaces: population.namespaces(),
            crates,
            template,
            finished_at,
        };
        Ok((seeded, seeding.elapsed()))
    }

    /// Jobs coming and going: every seeded Job deleted, then created again as it was, the way
    /// the Jobs' TTL removes them and loads bring new ones. The manager's memory should come
    /// back to where it was, and none of this is a reason to load.
    async fn turn_over(
        &self,
        config: &Config,
        tracker: &mut Tracker,
        manager: &Manager,
    ) -> anyhow::Result<Turned> {
        let jobs = self.crates.len();
        eprintln!("scale: deleting the {jobs} seeded Jobs and creating them again");
        let before = Snapshot::take(&tracker.world);
        let start = Instant::now();
        // A Job deleted or created wakes its crate once: the reconciles count both sightings.
        let reconciles = metrics(manager).reconciles;
        let what = "the Jobs' crates were reconciled";
        finished::delete(&self.client, &self.namespaces).await?;
        until_metrics(config, tracker, manager, what, |m| {
            m.reconciles >= reconciles + count(jobs)
        })
        .await?;
        finished::create(&self.client, &self.crates, &self.template, self.finished_at).await?;
        until_metrics(config, tracker, manager, what, |m| {
            m.reconciles >= reconciles + count(2 * jobs)
        })
        .await?;
        let took = start.elapsed();
        tracker.run_for(config.settle).await?;
        Ok(Turned {
            jobs,
            took,
            jobs_created: before.jobs_created(&tracker.world),
            statuses_changed: before.statuses_changed(&tracker.world),
            reconcile_errors: metrics(manager).errors,
            stats: manager.stats()?,
        })
    }
}

/// Waits until `done` holds for the manager's `/metrics`, read every `METRICS_EVERY`.
pub async fn until_metrics(
    config: &Config,
    tracker: &mut Tracker,
    manager: &Manager,
    what: &str,
    mut done: impl FnMut(&Metrics) -> bool,
) -> anyhow::Result<()> {
    let mut last: Option<Instant> = None;
    tracker
        .until(what, config.timeout, |_| {
            if last.is_some_and(|at| at.elapsed() < METRICS_EVERY) {
                return false;
            }
            last = Some(Instant::now());
            done(&metrics(manager))
        })
        .await
        .with_context(|| format!("the manager's log ends:\n{}", manager.log_tail()))
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
