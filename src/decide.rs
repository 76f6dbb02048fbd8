//! Decide: the pure heart of a reconcile.
//!
//! Given what was observed about one crate — its spec and status, its loader Jobs and the time —
//! say what to do next. No client and no clock: everything arrives as input, so every branch is
//! unit-tested. Nothing here depends on the manager process: every due time (interval, retry)
//! is computed from the crate's status, so a restart or a leader hand-over continues where the
//! last manager left off and starts no load for a crate that is up to date.
//!
//! Loads are identified by a *trigger*: the reason for the load, as a stable string. The Job for
//! a trigger has a name derived from it, so a retry of the same reconcile, or a second replica,
//! finds the existing Job instead of creating a duplicate. Triggers, most urgent first:
//! `generation:<g>` (new or changed spec), `reload:<annotation value>` (forced reload),
//! `retry:<g>:<n>` (transient failure, after backoff) and `interval:<last load>` (periodic
//! check). Each stays due until a finished load is recorded in the status, so a Job lost while
//! no manager ran is started again. A trigger
//! can come round again (a retry after a later failure, a reload value used twice); the Job name
//! also covers the crate's last load time (`job::build`), so no two loads share a name while
//! the older Job is kept for its logs.

use std::time::Duration;

use crate_operator_api::AnalyticsCrateStatus;

pub mod capacity;
use crate_operator_api::contract::LoadResult;
use jiff::Timestamp;

/// Shortest and longest wait before retrying a load that failed transiently.
pub const RETRY_BASE: Duration = Duration::from_secs(10);
pub const RETRY_CAP: Duration = Duration::from_secs(600);

/// A loader Job of the crate, as the observe step saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderJob {
    pub name: String,
    pub trigger: String,
    /// The crate generation the Job was built from.
    pub generation: i64,
    pub created: Timestamp,
    pub state: JobState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Not finished yet (pending, running or being retried by the Job controller).
    Active,
    /// Finished; the result comes from the loader's termination message or, failing that, from
    /// the Job's and Pod's status.
    Finished { result: LoadResult, at: Timestamp },
}

/// Why the running loader Job has no running Pod yet, as the observe step found it (the
/// manager's `controller::pending` looks once the Job has had a grace period to start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// A ResourceQuota refuses the Job's Pod.
    Quota(String),
    /// The Pod exists but cannot start (the kubelet's message).
    PodBlocked(String),
}

/// Everything `decide` looks at.
#[derive(Debug)]
pub struct Observation<'a> {
    pub generation: i64,
    /// Why the spec cannot be loaded (a rule of [`crate_operator_api::rules`] it breaks), if so.
    pub spec_error: Option<&'a str>,
    pub suspended: bool,
    /// Value of the reload annotation, if set.
    pub reload_requested: Option<&'a str>,
    pub interval: Option<Duration>,
    /// Per-crate delay added to the interval so crates created together do not load together.
    pub jitter: Duration,
    pub status: &'a AnalyticsCrateStatus,
    /// Whether the last recorded load failed permanently (the Stalled condition).
    pub stalled: bool,
    pub jobs: &'a [LoaderJob],
    /// Why the running Job ([`active`]) is not running yet, if the observe step found out.
    pub pending: Option<&'a Pending>,
    pub now: Timestamp,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// A loader Job is still running; its completion wakes the crate up again. `pending` says
    /// why it has not started, when something keeps it from starting.
    Await {
        job: String,
        trigger: String,
        pending: Option<Pending>,
    },
    /// A Job finished and its outcome is not in the status yet.
    Record {
        job: String,
        trigger: String,
        generation: i64,
        result: LoadResult,
        at: Timestamp,
    },
    /// The spec breaks a rule: report it and start nothing until it changes.
    Invalid { message: String },
    /// The crate is suspended: start nothing.
    Suspended,
    /// Start a load for `trigger`.
    Start {
        trigger: String,
        last_commit: Option<String>,
    },
    /// Nothing to do; look again after `wake_after` (a due interval or retry), or only on change.
    Idle { wake_after: Option<Duration> },
}

/// Decides the next step for one crate.
pub fn decide(o: &Observation<'_>) -> Decision {
    if let Some(job) = active(o.jobs) {
        return Decision::Await {
            job: job.name.clone(),
            trigger: job.trigger.clone(),
            pending: o.pending.cloned(),
        };
    }
    if let Some(record) = unrecorded(o) {
        return record;
    }
    if let Some(message) = o.spec_error {
        return Decision::Invalid {
            message: message.to_owned(),
        };
    }
    if o.suspended {
        return Decision::Suspended;
    }
    match wanted_trigger(o) {
        Wanted::Now(trigger) => Decision::Start {
            trigger,
            last_commit: o.status.commit_id.clone(),
        },
        Wanted::Later(wait) => Decision::Idle {
            wake_after: Some(wait),
        },
        Wanted::Never => Decision::Idle { wake_after: None },
    }
}

/// The crate's running loader Job, which [`decide`] awaits (one at a time per crate).
pub fn active(jobs: &[LoaderJob]) -> Option<&LoaderJob> {
    jobs.iter().find(|j| j.state == JobState::Active)
}

/// The newest finished Job, unless the status already describes it. Older finished Jobs are
/// history: the newest one supersedes them.
fn unrecorded(o: &Observation<'_>) -> Option<Decision> {
    // Creation times have whole seconds: the name breaks ties, so every reconcile agrees on
    // which Job is the newest.
    let newest = o.jobs.iter().max_by_key(|j| (j.created, &j.name))?;
    let JobState::Finished { result, at } = &newest.state else {
        return None;
    };
    let recorded = o.status.last_job.as_deref() == Some(newest.name.as_str())
        && o.status.last_load_time.as_ref().map(|t| t.0) == Some(*at);
    (!recorded).then(|| Decision::Record {
        job: newest.name.clone(),
        trigger: newest.trigger.clone(),
        generation: newest.generation,
        result: result.clone(),
        at: *at,
    })
}

enum Wanted {
    Now(String),
    Later(Duration),
    Never,
}

fn wanted_trigger(o: &Observation<'_>) -> Wanted {
    if o.status.observed_generation != Some(o.generation) {
        return Wanted::Now(format!("generation:{}", o.generation));
    }
    if let Some(value) = o.reload_requested
        && o.status.last_handled_reload_at.as_deref() != Some(value)
    {
        return Wanted::Now(format!("reload:{value}"));
    }
    let last_load = o.status.last_load_time.as_ref().map(|t| t.0);
    let failures = o.status.failures.unwrap_or(0);
    let mut wake: Option<Duration> = None;
    if failures > 0 && !o.stalled {
        let due = last_load.map_or(o.now, |t| t + retry_delay(failures));
        match until(o.now, due) {
            None => return Wanted::Now(format!("retry:{}:{failures}", o.generation)),
            Some(wait) => wake = Some(wait),
        }
    }
    if let (Some(interval), Some(last)) = (o.interval, last_load) {
        match until(o.now, last + interval + o.jitter) {
            None => return Wanted::Now(format!("interval:{}", last.as_second())),
            Some(wait) => wake = Some(wake.map_or(wait, |w| w.min(wait))),
        }
    }
    wake.map_or(Wanted::Never, Wanted::Later)
}

/// Exponential backoff: 10 s, 20 s, 40 s, … capped at 10 minutes.
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_BASE.saturating_mul(1 << doublings).min(RETRY_CAP)
}

/// Time from `now` until `due`, or `None` when it is due.
fn until(now: Timestamp, due: Timestamp) -> Option<Duration> {
    let wait = now.duration_until(due);
    if wait.is_positive() {
        Duration::try_from(wait).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
