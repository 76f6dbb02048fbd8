//! Report: the crate's next status, computed from the previous one and what the reconcile did.
//!
//! Pure, like `decide`. The controller server-side-applies the result to the status
//! subresource. Conditions follow the Kubernetes conventions (kstatus): `Ready` says whether the
//! datasource reflects the crate, `Reconciling` whether work is under way, `Stalled` whether
//! only a change to the crate, its repository or its Secret can help. `statusText` and
//! `commitId` keep their upstream meaning.

use crate_operator_api::AnalyticsCrateStatus;
use crate_operator_api::contract::LoadResult;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// What happened in this reconcile, as far as the status is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress<'a> {
    /// A loader Job is running (just created, or found running).
    Loading {
        job: String,
        trigger: String,
    },
    /// A loader Job's Pod cannot start until something is fixed (a missing Secret or key, an
    /// image that cannot be pulled); `message` is the kubelet's.
    PodBlocked {
        job: &'a str,
        message: String,
    },
    /// A load is due but the running-Job caps are reached.
    WaitingForCapacity {
        message: String,
    },
    /// A ResourceQuota refused the loader Job or its Pod.
    QuotaExceeded {
        message: String,
    },
    /// The spec breaks a rule (`message` says which and what to change).
    InvalidSpec {
        message: String,
    },
    Suspended,
    /// A finished Job's result.
    Finished {
        job: &'a str,
        trigger: &'a str,
        generation: i64,
        result: &'a LoadResult,
        at: Timestamp,
    },
    /// Nothing under way; the status keeps describing the last result.
    Idle,
}

/// Whether the last recorded load failed permanently.
pub fn is_stalled(status: &AnalyticsCrateStatus) -> bool {
    condition(status, STALLED).is_some_and(|c| c.status == "True")
}

pub fn condition<'a>(status: &'a AnalyticsCrateStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// The next status of a crate at `generation`.
pub fn next(
    prev: &AnalyticsCrateStatus,
    generation: i64,
    progress: &Progress<'_>,
    now: Timestamp,
) -> AnalyticsCrateStatus {
    let mut s = prev.clone();
    let mut conditions = std::mem::take(&mut s.conditions);
    let mut set = |type_: &str, status: &str, reason: &str, message: String| {
        set_condition(
            &mut conditions,
            type_,
            status,
            reason,
            message,
            generation,
            now,
        );
    };
    match progress {
        Progress::Loading { job, trigger } => {
            set(
                RECONCILING,
                "True",
                "Loading",
                format!("loader job {job} is loading the crate ({trigger})"),
            );
            // A wait for a quota or a slot is over once the Job runs; before the first load,
            // readiness is unknown.
            if condition(prev, READY).is_none_or(|c| {
                ["QuotaExceeded", "WaitingForCapacity", "PodBlocked"].contains(&c.reason.as_str())
            }) {
                set(
                    READY,
                    "Unknown",
                    "Loading",
                    "the first load is in progress".to_owned(),
                );
            }
            "Loading".clone_into(&mut s.status_text);
            s.last_job = Some(job.clone());
        }
        Progress::PodBlocked { job, message } => {
            let message = format!(
                "loader job {job} cannot start its pod: {message}; the load goes on once this is fixed"
            );
            set(RECONCILING, "True", "PodBlocked", message.clone());
            // A crate that loaded before still serves that datasource.
            if condition(prev, READY).is_none_or(|c| c.status != "True") {
                set(READY, "False", "PodBlocked", message);
            }
            "Loading".clone_into(&mut s.status_text);
            s.last_job = Some((*job).to_owned());
        }
        Progress::WaitingForCapacity { message } => {
            set(RECONCILING, "True", "WaitingForCapacity", message.clone());
            if condition(prev, READY).is_none() {
                set(READY, "Unknown", "WaitingForCapacity", message.clone());
            }
            // A Ready crate waiting for its next load still serves its datasource.
            if condition(prev, READY).is_none_or(|c| c.status != "True") {
                "Waiting".clone_into(&mut s.status_text);
            }
        }
        Progress::QuotaExceeded { message } => {
            set(RECONCILING, "True", "QuotaExceeded", message.clone());
            set(READY, "False", "QuotaExceeded", message.clone());
            "Waiting".clone_into(&mut s.status_text);
        }
        Progress::InvalidSpec { message } => {
            for (type_, status, message) in invalid_spec_conditions(message) {
                set(type_, status, "InvalidSpec", message);
            }
            s.observed_generation = Some(generation);
            "Failed".clone_into(&mut s.status_text);
        }
        Progress::Suspended => {
            set(
                RECONCILING,
                "False",
                "Suspended",
                "spec.suspend is true: no loads are started".to_owned(),
            );
            "Suspended".clone_into(&mut s.status_text);
        }
        Progress::Finished {
            job,
            trigger,
            generation: job_generation,
            result,
            at,
        } => {
            record_finished(&mut s, prev, job, trigger, *job_generation, result, *at);
            let outcome = result.outcome.name();
            for (type_, status, reason, message) in finished_conditions(result, &outcome) {
                set(type_, status, reason, message);
            }
        }
        Progress::Idle => {
            idle_text(prev).clone_into(&mut s.status_text);
            // A finished load already left Reconciling=False with its own reason and message;
            // rewriting it here would cost a status write after every load. Only a stale
            // "in progress" or "suspended" state is cleared.
            let settled = condition(prev, RECONCILING)
                .is_some_and(|c| c.status == "False" && c.reason != "Suspended");
            if !settled && !is_stalled(prev) && prev.failures.unwrap_or(0) == 0 {
                set(RECONCILING, "False", "Idle", String::new());
            }
        }
    }
    s.conditions = conditions;
    s
}

/// Ready, Reconciling and Stalled for a spec that breaks a rule. The datasource stays as last
/// loaded, but from a spec that is no longer the one asked for, hence Ready=False.
fn invalid_spec_conditions(message: &str) -> [(&'static str, &'static str, String); 3] {
    [
        (READY, "False", message.to_owned()),
        (RECONCILING, "False", String::new()),
        (
            STALLED,
            "True",
            format!("{message}; nothing is loaded until the spec changes"),
        ),
    ]
}

/// What a person can do about a permanent failure, since the manager will not retry it.
const STALLED_HINT: &str = "no retry until the crate's spec changes, its interval comes round or a reload is requested (kubectl annotate ac NAME xlscsde.nhs.uk/reload-requested-at=\"$(date -Is)\" --overwrite), for example after fixing its Secret";

/// Ready, Reconciling and Stalled after a finished load.
fn finished_conditions<'a>(
    result: &LoadResult,
    reason: &'a str,
) -> [(&'static str, &'static str, &'a str, String); 3] {
    let message = result.message.clone();
    if result.outcome.is_success() {
        [
            (READY, "True", reason, message.clone()),
            (RECONCILING, "False", reason, message),
            (STALLED, "False", reason, String::new()),
        ]
    } else if result.outcome.is_permanent() {
        [
            (READY, "False", reason, message.clone()),
            (RECONCILING, "False", reason, String::new()),
            (
                STALLED,
                "True",
                reason,
                format!("{message}; {STALLED_HINT}"),
            ),
        ]
    } else {
        [
            (READY, "False", reason, message.clone()),
            (
                RECONCILING,
                "True",
                "RetryScheduled",
                format!("retrying after: {message}"),
            ),
            (STALLED, "False", reason, String::new()),
        ]
    }
}

/// The non-condition fields a finished load changes.
fn record_finished(
    s: &mut AnalyticsCrateStatus,
    prev: &AnalyticsCrateStatus,
    job: &str,
    trigger: &str,
    generation: i64,
    result: &LoadResult,
    at: Timestamp,
) {
    s.observed_generation = Some(generation);
    s.last_job = Some(job.to_owned());
    s.last_load_time = Some(Time(at));
    s.datasource = result.datasource.clone().or(s.datasource.take());
    if let Some(value) = trigger.strip_prefix("reload:") {
        s.last_handled_reload_at = Some(value.to_owned());
    }
    if result.outcome.is_success() {
        "Ready".clone_into(&mut s.status_text);
        s.commit_id = result.commit.clone().or(s.commit_id.take());
        s.revision = result.revision.clone().or(s.revision.take());
        s.warnings = Some(result.warnings);
        s.failures = None;
    } else {
        "Failed".clone_into(&mut s.status_text);
        s.failures = Some(prev.failures.unwrap_or(0).saturating_add(1));
    }
}

/// What `statusText` says when nothing is under way: the last result.
fn idle_text(prev: &AnalyticsCrateStatus) -> &'static str {
    match condition(prev, READY).map(|c| c.status.as_str()) {
        Some("True") => "Ready",
        Some("False") => "Failed",
        _ => "Waiting",
    }
}

/// Sets a condition, keeping its `lastTransitionTime` when its status does not change.
fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: i64,
    now: Timestamp,
) {
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    let new = Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: Some(generation),
        last_transition_time: transition,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => *existing = new,
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests;
