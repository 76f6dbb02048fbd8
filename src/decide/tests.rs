//! Every branch of `decide`, from hand-built observations.

use std::time::Duration;

use crate_operator_api::AnalyticsCrateStatus;
use crate_operator_api::contract::{LoadResult, Outcome};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("valid time")
}

fn result(outcome: Outcome) -> LoadResult {
    LoadResult {
        outcome,
        commit: Some("c0ffee".into()),
        revision: Some("main@sha1:c0ffee".into()),
        datasource: Some("demo".into()),
        fetch: None,
        warnings: 0,
        message: String::new(),
    }
}

fn job(name: &str, trigger: &str, created: i64, state: JobState) -> LoaderJob {
    LoaderJob {
        name: name.into(),
        trigger: trigger.into(),
        generation: 1,
        created: at(created),
        state,
    }
}

/// A crate at generation 1 whose last load (job `j1`, at t=0) succeeded.
struct Given {
    generation: i64,
    spec_error: Option<String>,
    suspended: bool,
    reload: Option<String>,
    interval: Option<Duration>,
    status: AnalyticsCrateStatus,
    stalled: bool,
    jobs: Vec<LoaderJob>,
    pending: Option<Pending>,
    now: Timestamp,
}

impl Given {
    fn loaded_crate() -> Given {
        Given {
            generation: 1,
            spec_error: None,
            suspended: false,
            reload: None,
            interval: None,
            status: AnalyticsCrateStatus {
                observed_generation: Some(1),
                commit_id: Some("c0ffee".into()),
                last_job: Some("j1".into()),
                last_load_time: Some(Time(at(0))),
                ..AnalyticsCrateStatus::default()
            },
            stalled: false,
            jobs: vec![],
            pending: None,
            now: at(100),
        }
    }
    fn new_crate() -> Given {
        Given {
            status: AnalyticsCrateStatus::default(),
            ..Given::loaded_crate()
        }
    }
    fn decide(&self) -> Decision {
        decide(&Observation {
            generation: self.generation,
            spec_error: self.spec_error.as_deref(),
            suspended: self.suspended,
            reload_requested: self.reload.as_deref(),
            interval: self.interval,
            jitter: Duration::from_secs(5),
            status: &self.status,
            stalled: self.stalled,
            jobs: &self.jobs,
            pending: self.pending.as_ref(),
            now: self.now,
        })
    }
}

fn start(trigger: &str, last_commit: Option<&str>) -> Decision {
    Decision::Start {
        trigger: trigger.into(),
        last_commit: last_commit.map(Into::into),
    }
}

#[test]
fn a_new_crate_is_loaded_for_its_generation() {
    assert_eq!(Given::new_crate().decide(), start("generation:1", None));
}

#[test]
fn a_changed_spec_is_loaded_from_the_last_commit() {
    let given = Given {
        generation: 2,
        ..Given::loaded_crate()
    };
    assert_eq!(given.decide(), start("generation:2", Some("c0ffee")));
}

#[test]
fn an_unchanged_loaded_crate_stays_idle_whichever_manager_loaded_it() {
    // Nothing about the manager process is an input: a restart sees exactly this.
    assert_eq!(
        Given::loaded_crate().decide(),
        Decision::Idle { wake_after: None }
    );
}

#[test]
fn after_a_restart_the_next_interval_load_is_due_from_the_last_load_in_the_status() {
    let given = Given {
        interval: Some(Duration::from_secs(3600)),
        now: at(1000),
        ..Given::loaded_crate()
    };
    // Last load at t=0, interval 1 h, jitter 5 s: due at 3605 s, whenever the manager started.
    assert_eq!(
        given.decide(),
        Decision::Idle {
            wake_after: Some(Duration::from_secs(2605))
        }
    );
}

#[test]
fn a_running_job_is_awaited_whatever_else_changed_with_what_keeps_it_from_starting() {
    let blocked = Pending::PodBlocked("secret \"repo-token\" not found".into());
    for pending in [None, Some(blocked)] {
        let given = Given {
            generation: 3,
            suspended: true,
            jobs: vec![job("j2", "generation:2", 50, JobState::Active)],
            pending: pending.clone(),
            ..Given::loaded_crate()
        };
        assert_eq!(
            given.decide(),
            Decision::Await {
                job: "j2".into(),
                trigger: "generation:2".into(),
                pending,
            }
        );
    }
}

#[test]
fn a_finished_job_not_in_the_status_is_recorded() {
    let finished = JobState::Finished {
        result: result(Outcome::Loaded),
        at: at(60),
    };
    let given = Given {
        generation: 2,
        jobs: vec![job("j2", "generation:2", 50, finished)],
        ..Given::loaded_crate()
    };
    let Decision::Record {
        job,
        trigger,
        result,
        at: when,
        ..
    } = given.decide()
    else {
        panic!("not recorded")
    };
    assert_eq!(
        (job.as_str(), trigger.as_str(), result.outcome, when),
        ("j2", "generation:2", Outcome::Loaded, at(60))
    );
}

#[test]
fn a_finished_job_already_in_the_status_is_not_recorded_twice() {
    let finished = JobState::Finished {
        result: result(Outcome::Loaded),
        at: at(0),
    };
    let given = Given {
        jobs: vec![job("j1", "generation:1", -10, finished)],
        ..Given::loaded_crate()
    };
    assert_eq!(given.decide(), Decision::Idle { wake_after: None });
}

#[test]
fn only_the_newest_finished_job_is_recorded() {
    let old = JobState::Finished {
        result: result(Outcome::FetchFailed),
        at: at(20),
    };
    let new = JobState::Finished {
        result: result(Outcome::Loaded),
        at: at(40),
    };
    let given = Given {
        jobs: vec![
            job("new", "retry:1:1", 30, new),
            job("old", "generation:1", 10, old),
        ],
        ..Given::loaded_crate()
    };
    assert!(matches!(given.decide(), Decision::Record { job, .. } if job == "new"));
}

#[test]
fn a_suspended_crate_starts_nothing() {
    let given = Given {
        generation: 2,
        suspended: true,
        ..Given::loaded_crate()
    };
    assert_eq!(given.decide(), Decision::Suspended);
}

#[test]
fn a_new_reload_request_forces_a_load_once() {
    let mut given = Given {
        reload: Some("2026-11-22T10:00:00Z".into()),
        ..Given::loaded_crate()
    };
    assert_eq!(
        given.decide(),
        start("reload:2026-11-22T10:00:00Z", Some("c0ffee"))
    );
    given.status.last_handled_reload_at = given.reload.clone();
    assert_eq!(given.decide(), Decision::Idle { wake_after: None });
}

#[test]
fn a_transient_failure_is_retried_after_backoff() {
    let mut given = Given::loaded_crate();
    given.status.failures = Some(2);
    given.now = at(10);
    assert_eq!(
        given.decide(),
        Decision::Idle {
            wake_after: Some(Duration::from_secs(10))
        }
    );
    given.now = at(20);
    assert_eq!(given.decide(), start("retry:1:2", Some("c0ffee")));
}

#[test]
fn a_permanent_failure_is_not_retried_until_something_changes() {
    let mut given = Given {
        stalled: true,
        ..Given::loaded_crate()
    };
    given.status.failures = Some(1);
    given.now = at(10_000);
    assert_eq!(given.decide(), Decision::Idle { wake_after: None });
    given.generation = 2;
    assert_eq!(given.decide(), start("generation:2", Some("c0ffee")));
}

#[test]
fn the_interval_triggers_a_check_once_due_with_jitter() {
    let mut given = Given {
        interval: Some(Duration::from_secs(300)),
        ..Given::loaded_crate()
    };
    assert_eq!(
        given.decide(),
        Decision::Idle {
            wake_after: Some(Duration::from_secs(205))
        }
    );
    given.now = at(305);
    assert_eq!(
        given.decide(),
        start(&format!("interval:{}", at(0).as_second()), Some("c0ffee"))
    );
}

#[test]
fn a_stalled_crate_is_still_checked_at_its_interval() {
    let given = Given {
        stalled: true,
        interval: Some(Duration::from_secs(60)),
        now: at(1_000),
        ..Given::loaded_crate()
    };
    assert!(
        matches!(given.decide(), Decision::Start { trigger, .. } if trigger.starts_with("interval:"))
    );
}

#[test]
fn the_earliest_of_retry_and_interval_wakes_the_crate() {
    let mut given = Given {
        interval: Some(Duration::from_secs(15)),
        now: at(1),
        ..Given::loaded_crate()
    };
    given.status.failures = Some(3);
    assert_eq!(
        given.decide(),
        Decision::Idle {
            wake_after: Some(Duration::from_secs(19))
        }
    );
}

#[test]
fn retry_delays_double_up_to_ten_minutes() {
    let delays: Vec<u64> = [1, 2, 3, 7, 40]
        .into_iter()
        .map(|n| retry_delay(n).as_secs())
        .collect();
    assert_eq!(delays, [10, 20, 40, 600, 600]);
}

#[test]
fn an_invalid_spec_starts_nothing_and_says_why() {
    let given = Given {
        generation: 2,
        spec_error: Some("spec.interval \"0s\" is shorter than the minimum of 1m".into()),
        ..Given::loaded_crate()
    };
    assert_eq!(
        given.decide(),
        Decision::Invalid {
            message: "spec.interval \"0s\" is shorter than the minimum of 1m".into()
        }
    );
}

#[test]
fn a_load_running_or_finished_before_the_spec_turned_invalid_is_still_awaited_and_recorded() {
    let running = Given {
        spec_error: Some("bad".into()),
        jobs: vec![job("j2", "generation:2", 50, JobState::Active)],
        ..Given::loaded_crate()
    };
    assert!(matches!(running.decide(), Decision::Await { .. }));
    let finished = Given {
        spec_error: Some("bad".into()),
        jobs: vec![job(
            "j2",
            "generation:2",
            50,
            JobState::Finished {
                result: result(Outcome::Loaded),
                at: at(60),
            },
        )],
        ..Given::loaded_crate()
    };
    assert!(matches!(finished.decide(), Decision::Record { .. }));
}
