//! Pure helpers of the controller. The reconcile itself is tested against a mock API server in
//! `tests/reconcile.rs`.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::*;

#[test]
fn jitter_is_stable_per_crate_and_within_a_tenth_of_the_interval() {
    let interval = Duration::from_secs(600);
    let a = jitter("uid-a", interval);
    assert_eq!(a, jitter("uid-a", interval));
    assert!(a < Duration::from_secs(60), "{a:?}");
    let spread: HashSet<Duration> = (0..20)
        .map(|i| jitter(&format!("uid-{i}"), interval))
        .collect();
    assert!(
        spread.len() > 15,
        "crates should not share a jitter: {spread:?}"
    );
}

#[test]
fn the_loader_job_selector_matches_the_job_labels() {
    assert_eq!(
        loader_job_selector(),
        "app.kubernetes.io/name=crate-loader,app.kubernetes.io/managed-by=crate-operator"
    );
}

fn crate_in(namespace: &str, name: &str, reconciling_reason: Option<&str>) -> Arc<AnalyticsCrate> {
    let mut ac: AnalyticsCrate = serde_json::from_value(serde_json::json!({
        "apiVersion": "xlscsde.nhs.uk/v1",
        "kind": "AnalyticsCrate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"repo": {"url": "https://example.org/r.git"}, "path": "/ro-crate-metadata.json"},
    }))
    .expect("crate");
    ac.status = reconciling_reason.map(|reason| AnalyticsCrateStatus {
        conditions: vec![Condition {
            type_: status::RECONCILING.to_owned(),
            status: "True".to_owned(),
            reason: reason.to_owned(),
            message: String::new(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }],
        ..AnalyticsCrateStatus::default()
    });
    Arc::new(ac)
}

#[test]
fn a_quota_change_wakes_only_the_crates_of_its_namespace_that_a_quota_holds_back() {
    let crates = [
        crate_in("a", "held", Some("QuotaExceeded")),
        crate_in("a", "loading", Some("Loading")),
        crate_in("a", "new", None),
        crate_in("b", "held-elsewhere", Some("QuotaExceeded")),
    ];
    let woken: Vec<String> = held_by_quota(&crates, Some("a"))
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(woken, ["held"]);
}
