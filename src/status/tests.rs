//! The status a crate shows after each kind of progress.

use crate_operator_api::AnalyticsCrateStatus;
use crate_operator_api::contract::{LoadResult, Outcome};
use jiff::Timestamp;

use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("valid time")
}

fn result(outcome: Outcome, message: &str) -> LoadResult {
    LoadResult {
        outcome,
        commit: Some("c0ffee".into()),
        revision: Some("main@sha1:c0ffee".into()),
        datasource: Some("demo".into()),
        fetch: None,
        warnings: 2,
        message: message.into(),
    }
}

fn finished<'a>(result: &'a LoadResult, trigger: &'a str) -> Progress<'a> {
    Progress::Finished {
        job: "demo-abc",
        trigger,
        generation: 4,
        result,
        at: at(10),
    }
}

fn cond<'a>(s: &'a AnalyticsCrateStatus, t: &str) -> (&'a str, &'a str) {
    let c = condition(s, t).unwrap_or_else(|| panic!("no {t} condition in {s:?}"));
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn a_successful_load_makes_the_crate_ready_with_its_revision() {
    let loaded = result(Outcome::Loaded, "applied");
    let s = next(
        &AnalyticsCrateStatus::default(),
        4,
        &finished(&loaded, "generation:4"),
        at(11),
    );
    assert_eq!(s.status_text, "Ready");
    assert_eq!(s.commit_id.as_deref(), Some("c0ffee"));
    assert_eq!(s.revision.as_deref(), Some("main@sha1:c0ffee"));
    assert_eq!(
        (s.observed_generation, s.warnings, s.failures),
        (Some(4), Some(2), None)
    );
    assert_eq!(s.datasource.as_deref(), Some("demo"));
    assert_eq!(s.last_job.as_deref(), Some("demo-abc"));
    assert_eq!(cond(&s, READY), ("True", "Loaded"));
    assert_eq!(cond(&s, RECONCILING), ("False", "Loaded"));
    assert_eq!(cond(&s, STALLED), ("False", "Loaded"));
}

#[test]
fn a_permanent_failure_stalls_and_keeps_the_last_good_commit() {
    let good = next(
        &AnalyticsCrateStatus::default(),
        4,
        &finished(&result(Outcome::Loaded, ""), "generation:4"),
        at(11),
    );
    let mut bad_result = result(
        Outcome::AuthenticationFailed,
        "the server rejected the credentials",
    );
    bad_result.commit = None;
    let s = next(&good, 5, &finished(&bad_result, "generation:5"), at(20));
    assert_eq!(s.status_text, "Failed");
    assert_eq!(
        s.commit_id.as_deref(),
        Some("c0ffee"),
        "the last loaded commit is kept"
    );
    assert_eq!(cond(&s, READY), ("False", "AuthenticationFailed"));
    assert_eq!(cond(&s, STALLED), ("True", "AuthenticationFailed"));
    assert_eq!(cond(&s, RECONCILING), ("False", "AuthenticationFailed"));
    assert!(is_stalled(&s));
    assert_eq!(s.failures, Some(1));
    let stalled = &condition(&s, STALLED).expect("Stalled").message;
    assert!(
        stalled.starts_with("the server rejected the credentials; no retry until")
            && stalled.contains(crate_operator_api::contract::ANNOTATION_RELOAD_REQUESTED_AT),
        "the Stalled message says what failed and how to load again: {stalled}"
    );
}

#[test]
fn a_transient_failure_schedules_a_retry_and_counts_failures() {
    let first = next(
        &AnalyticsCrateStatus::default(),
        1,
        &finished(
            &result(Outcome::FetchFailed, "connection reset"),
            "generation:1",
        ),
        at(1),
    );
    let second = next(
        &first,
        1,
        &finished(
            &result(Outcome::FetchFailed, "connection reset"),
            "retry:1:1",
        ),
        at(2),
    );
    assert_eq!(second.failures, Some(2));
    assert_eq!(cond(&second, RECONCILING), ("True", "RetryScheduled"));
    assert_eq!(cond(&second, STALLED), ("False", "FetchFailed"));
    assert!(!is_stalled(&second));
}

#[test]
fn a_handled_reload_request_is_remembered() {
    let s = next(
        &AnalyticsCrateStatus::default(),
        1,
        &finished(&result(Outcome::UpToDate, ""), "reload:now"),
        at(1),
    );
    assert_eq!(s.last_handled_reload_at.as_deref(), Some("now"));
    assert_eq!(cond(&s, READY), ("True", "UpToDate"));
}

#[test]
fn loading_keeps_an_existing_ready_condition_and_says_which_job() {
    let ready = next(
        &AnalyticsCrateStatus::default(),
        1,
        &finished(&result(Outcome::Loaded, ""), "generation:1"),
        at(1),
    );
    let s = next(
        &ready,
        2,
        &Progress::Loading {
            job: "demo-def".into(),
            trigger: "generation:2".into(),
        },
        at(5),
    );
    assert_eq!(s.status_text, "Loading");
    assert_eq!(cond(&s, READY), ("True", "Loaded"));
    assert_eq!(cond(&s, RECONCILING), ("True", "Loading"));
    assert_eq!(s.last_job.as_deref(), Some("demo-def"));
    let fresh = next(
        &AnalyticsCrateStatus::default(),
        1,
        &Progress::Loading {
            job: "j".into(),
            trigger: "generation:1".into(),
        },
        at(0),
    );
    assert_eq!(cond(&fresh, READY), ("Unknown", "Loading"));
}

#[test]
fn waiting_for_capacity_and_quota_are_reported_as_waiting() {
    let waiting = next(
        &AnalyticsCrateStatus::default(),
        1,
        &Progress::WaitingForCapacity {
            message: "2 of 2 running".into(),
        },
        at(0),
    );
    assert_eq!(
        (waiting.status_text.as_str(), cond(&waiting, RECONCILING)),
        ("Waiting", ("True", "WaitingForCapacity"))
    );
    let quota = next(
        &AnalyticsCrateStatus::default(),
        1,
        &Progress::QuotaExceeded {
            message: "exceeded quota: compute".into(),
        },
        at(0),
    );
    assert_eq!(cond(&quota, READY), ("False", "QuotaExceeded"));
    assert_eq!(quota.status_text, "Waiting");
}

#[test]
fn suspension_is_shown_without_touching_readiness() {
    let ready = next(
        &AnalyticsCrateStatus::default(),
        1,
        &finished(&result(Outcome::Loaded, ""), "generation:1"),
        at(1),
    );
    let s = next(&ready, 2, &Progress::Suspended, at(2));
    assert_eq!(s.status_text, "Suspended");
    assert_eq!(cond(&s, READY), ("True", "Loaded"));
    assert_eq!(cond(&s, RECONCILING), ("False", "Suspended"));
}

#[test]
fn a_condition_keeps_its_transition_time_while_its_status_holds() {
    let first = next(
        &AnalyticsCrateStatus::default(),
        1,
        &finished(&result(Outcome::Loaded, ""), "generation:1"),
        at(1),
    );
    let mut later = result(Outcome::UpToDate, "");
    later.commit = Some("c0ffee".into());
    let second = next(
        &first,
        1,
        &Progress::Finished {
            job: "j2",
            trigger: "interval:0",
            generation: 1,
            result: &later,
            at: at(50),
        },
        at(51),
    );
    let t = |s: &AnalyticsCrateStatus| condition(s, READY).map(|c| c.last_transition_time.clone());
    assert_eq!(t(&first), t(&second));
    assert_eq!(cond(&second, READY), ("True", "UpToDate"));
}

#[test]
fn idle_reports_the_last_result() {
    assert_eq!(
        next(&AnalyticsCrateStatus::default(), 1, &Progress::Idle, at(0)).status_text,
        "Waiting"
    );
    let failed = next(
        &AnalyticsCrateStatus::default(),
        1,
        &finished(&result(Outcome::InvalidCrate, "bad"), "generation:1"),
        at(1),
    );
    assert_eq!(
        next(&failed, 1, &Progress::Idle, at(2)).status_text,
        "Failed"
    );
}

#[test]
fn a_quota_refusal_is_cleared_once_the_loader_job_runs() {
    let refused = next(
        &AnalyticsCrateStatus::default(),
        1,
        &Progress::QuotaExceeded {
            message: "exceeded quota".into(),
        },
        at(0),
    );
    let running = next(
        &refused,
        1,
        &Progress::Loading {
            job: "j".into(),
            trigger: "generation:1".into(),
        },
        at(5),
    );
    assert_eq!(cond(&running, READY), ("Unknown", "Loading"));
}

#[test]
fn a_ready_crate_waiting_for_capacity_still_says_ready() {
    let ready = next(
        &AnalyticsCrateStatus::default(),
        1,
        &finished(&result(Outcome::Loaded, ""), "generation:1"),
        at(1),
    );
    let waiting = next(
        &ready,
        1,
        &Progress::WaitingForCapacity {
            message: "full".into(),
        },
        at(2),
    );
    assert_eq!(waiting.status_text, "Ready");
    assert_eq!(cond(&waiting, RECONCILING), ("True", "WaitingForCapacity"));
}

#[test]
fn idling_after_a_load_keeps_the_loads_reconciling_condition() {
    let loaded = next(
        &AnalyticsCrateStatus::default(),
        1,
        &finished(&result(Outcome::Loaded, "applied"), "generation:1"),
        at(1),
    );
    assert_eq!(next(&loaded, 1, &Progress::Idle, at(2)), loaded);
    let suspended = next(&loaded, 1, &Progress::Suspended, at(3));
    assert_eq!(
        cond(&next(&suspended, 1, &Progress::Idle, at(4)), RECONCILING),
        ("False", "Idle")
    );
}

#[test]
fn a_blocked_loader_pod_says_why_and_a_loaded_crate_stays_ready() {
    let blocked = Progress::PodBlocked {
        job: "demo-abc",
        message: "secret \"amr-git\" not found".into(),
    };
    let fresh = next(&AnalyticsCrateStatus::default(), 1, &blocked, at(0));
    assert_eq!(fresh.status_text, "Loading");
    assert_eq!(cond(&fresh, RECONCILING), ("True", "PodBlocked"));
    assert_eq!(cond(&fresh, READY), ("False", "PodBlocked"));
    let message = &condition(&fresh, READY).expect("Ready").message;
    assert!(
        message.contains("demo-abc") && message.contains("\"amr-git\" not found"),
        "{message}"
    );

    let ready = next(
        &AnalyticsCrateStatus::default(),
        1,
        &finished(&result(Outcome::Loaded, ""), "generation:1"),
        at(1),
    );
    let reloading = next(&ready, 2, &blocked, at(5));
    assert_eq!(cond(&reloading, READY), ("True", "Loaded"));
    assert_eq!(cond(&reloading, RECONCILING), ("True", "PodBlocked"));
}

#[test]
fn once_a_waiting_crate_loads_ready_no_longer_names_the_wait() {
    let waiting = next(
        &AnalyticsCrateStatus::default(),
        1,
        &Progress::WaitingForCapacity {
            message: "waiting for a free loader slot".into(),
        },
        at(0),
    );
    assert_eq!(cond(&waiting, READY), ("Unknown", "WaitingForCapacity"));
    let loading = next(
        &waiting,
        1,
        &Progress::Loading {
            job: "j".into(),
            trigger: "generation:1".into(),
        },
        at(3),
    );
    assert_eq!(cond(&loading, READY), ("Unknown", "Loading"));
}

#[test]
fn an_invalid_spec_stalls_the_crate_and_keeps_what_was_loaded() {
    let loaded = next(
        &AnalyticsCrateStatus::default(),
        4,
        &finished(&result(Outcome::Loaded, "applied"), "generation:4"),
        at(10),
    );
    let message = "spec.repo.secretName \"My_Secret\" is not a valid Secret name".to_owned();
    let s = next(&loaded, 5, &Progress::InvalidSpec { message }, at(20));
    assert_eq!(s.status_text, "Failed");
    assert_eq!(s.observed_generation, Some(5));
    assert_eq!(cond(&s, READY), ("False", "InvalidSpec"));
    assert_eq!(cond(&s, STALLED), ("True", "InvalidSpec"));
    assert_eq!(cond(&s, RECONCILING), ("False", "InvalidSpec"));
    assert!(condition(&s, READY).is_some_and(|c| c.message.contains("My_Secret")));
    assert_eq!(
        (s.commit_id.as_deref(), s.datasource.as_deref()),
        (Some("c0ffee"), Some("demo")),
        "the datasource stays as last loaded"
    );
    assert!(is_stalled(&s));
}
