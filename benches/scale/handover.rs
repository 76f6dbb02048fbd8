//! Phase 6, hand-over at scale: phase 5's manager leads on all the crates; a standby starts
//! beside it; the leader is frozen (SIGSTOP) past its Lease, the standby takes over and
//! reconciles every crate, then the old leader is woken (SIGCONT). Measured from the freeze:
//! the standby's first reconcile and when it had reconciled every crate; the Jobs it started and
//! the statuses it changed (both should be 0); whether the old leader stopped by itself on
//! waking; the standby's memory and CPU. The old leader's writes after its Lease expired are
//! read from the audit log at the end of the run (there should be none).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use crate_test_cluster::audit::Requests;
use crate_test_cluster::operator::{INSTALL_NAMESPACE, Manager, ProcessStats};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::report::Report;
use crate::seeded::until_metrics;
use crate::track::{Snapshot, Tracker};
use crate::{Config, Setup, Window, count, start_manager};

/// The Lease both managers compete for (the manager's `--lease-name` default).
const LEASE: &str = "crate-operator";
/// What the old leader logs when it wakes to find its Lease gone.
const LOST: &str = "the leader lease expired before this replica could renew it";

/// What the phase measured.
pub struct HandOver {
    pub window: Window,
    pub crates: usize,
    /// The old leader's identity, and when its Lease expired: from then on it may write nothing.
    pub old_identity: String,
    pub expiry: Timestamp,
    pub first_reconcile: Duration,
    pub reconciled: Duration,
    pub jobs_created: usize,
    pub statuses_changed: usize,
    /// Whether the old leader exited by itself with a failure, saying it lost its Lease.
    pub old_stopped_itself: bool,
    /// The standby once it had reconciled every crate and the settling pause had passed.
    pub stats: ProcessStats,
    /// Filled in from the audit log at the end of the run.
    pub late_writes: Vec<String>,
    pub requests: Requests,
}

/// Freezes `leader`, lets a standby take over all `crates`, wakes the old leader; returns the
/// standby's log and what was measured.
pub async fn phase(
    config: &Config,
    setup: &Setup,
    tracker: &mut Tracker,
    mut leader: Manager,
    crates: usize,
) -> anyhow::Result<(PathBuf, HandOver)> {
    eprintln!("scale: a standby beside the leader; freezing the leader");
    let (standby, log) = start_manager(config, setup, "scale-m3")?;
    tracker
        .until("the standby serves its probes", config.timeout, |_| {
            matches!(standby.get("/livez"), Ok((200, _)))
        })
        .await?;
    let leases: Api<Lease> = Api::namespaced(setup.plane.admin_client().await?, INSTALL_NAMESPACE);
    let before = Snapshot::take(&tracker.world);
    let (start, started_at) = (Instant::now(), Timestamp::now());
    let pid = Pid::from_raw(i32::try_from(leader.pid()?)?);
    kill(pid, Signal::SIGSTOP).context("failed to SIGSTOP the leader")?;
    // The Lease as the leader last renewed it: from its expiry on, the leader may write nothing.
    let spec = leases
        .get(LEASE)
        .await?
        .spec
        .context("the Lease has no spec")?;
    if spec.holder_identity.as_deref() != Some(leader.identity.as_str()) {
        bail!(
            "the Lease is held by {:?}, not the leader",
            spec.holder_identity
        );
    }
    let renewed = spec.renew_time.context("the Lease was never renewed")?.0;
    let duration = spec
        .lease_duration_seconds
        .context("the Lease has no duration")?;
    let expiry = renewed + SignedDuration::from_secs(duration.into());

    let (mut first_reconcile, mut reconciled) = (None, None);
    until_metrics(
        config,
        tracker,
        &standby,
        "the standby reconciled every crate",
        |m| {
            if m.reconciles >= 1.0 {
                first_reconcile.get_or_insert(start.elapsed());
            }
            if m.reconciles >= count(crates) {
                reconciled.get_or_insert(start.elapsed());
            }
            reconciled.is_some()
        },
    )
    .await?;

    kill(pid, Signal::SIGCONT).context("failed to SIGCONT the old leader")?;
    let exit = tracker
        .until("the old leader stops by itself", config.timeout, |_| {
            leader.exited().is_some()
        })
        .await
        .map(|()| leader.exited());
    let old_stopped_itself =
        exit.is_ok_and(|e| e.is_some_and(|e| !e.success())) && leader.log().contains(LOST);
    tracker.run_for(config.settle).await?;
    let handover = HandOver {
        window: (started_at, Timestamp::now()),
        crates,
        old_identity: leader.identity.clone(),
        expiry,
        first_reconcile: first_reconcile.unwrap_or_default(),
        reconciled: reconciled.unwrap_or_default(),
        jobs_created: before.jobs_created(&tracker.world),
        statuses_changed: before.statuses_changed(&tracker.world),
        old_stopped_itself,
        stats: standby.stats()?,
        late_writes: Vec::new(),
        requests: Requests::default(),
    };
    standby.stop();
    leader.stop();
    Ok((log, handover))
}

/// The phase's rows of the report.
pub fn report(report: &mut Report, h: &HandOver) {
    report.section(
        "handover",
        "6. Hand-over at scale: the leader frozen (SIGSTOP) past its Lease, a standby takes over",
    );
    report.time(
        "first_reconcile_secs",
        "the standby's first reconcile, from the freeze",
        h.first_reconcile,
    );
    report.time(
        "all_reconciled_secs",
        &format!(
            "all {} crates reconciled by the standby, from the freeze",
            h.crates
        ),
        h.reconciled,
    );
    report.count("jobs_created", "loader Jobs created", h.jobs_created);
    report.count(
        "statuses_changed",
        "crate statuses changed",
        h.statuses_changed,
    );
    report.count(
        "late_writes",
        "writes by the frozen leader after its Lease expired (audit log)",
        h.late_writes.len(),
    );
    report.text(
        "old_stopped_itself",
        "the old leader, woken, stopped by itself",
        if h.old_stopped_itself { "yes" } else { "no" },
    );
    report.mib(
        "peak_rss_mib",
        "the standby's peak RSS (VmHWM)",
        h.stats.peak_rss_kib,
    );
    report.time("manager_cpu_secs", "the standby's CPU time", h.stats.cpu);
    crate::report::requests(report, &h.requests, h.reconciled, Some(h.crates));
}
