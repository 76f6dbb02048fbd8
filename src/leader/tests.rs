use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;

use super::{Claim, Timing, claim, claimed, holder, released};

/// A Lease as the apiserver returns it, from YAML.
fn lease(yaml: &str) -> Lease {
    serde_yaml::from_str(yaml).expect("lease YAML")
}

fn held_by_b() -> Lease {
    lease(
        "metadata: {name: crate-operator, resourceVersion: '7'}
spec:
  holderIdentity: b
  leaseDurationSeconds: 15
  acquireTime: '2026-12-03T10:00:00.000000Z'
  renewTime: '2026-12-03T10:05:00.000000Z'
  leaseTransitions: 4",
    )
}

const NOW: &str = "2026-12-03T10:05:03Z";

fn now() -> Timestamp {
    NOW.parse().expect("timestamp")
}

#[test]
fn a_missing_lease_is_created() {
    assert_eq!(claim(None, "a", Duration::ZERO), Claim::Create);
}

#[test]
fn a_lease_without_a_holder_is_taken_at_once() {
    let free = lease(
        "metadata: {name: crate-operator}\nspec: {holderIdentity: '', leaseDurationSeconds: 1}",
    );
    assert_eq!(claim(Some(&free), "a", Duration::ZERO), Claim::Take);
    let no_spec = lease("metadata: {name: crate-operator}");
    assert_eq!(claim(Some(&no_spec), "a", Duration::ZERO), Claim::Take);
}

#[test]
fn another_holders_lease_is_taken_only_once_seen_unchanged_for_its_duration() {
    let lease = held_by_b();
    assert_eq!(claim(Some(&lease), "a", Duration::ZERO), Claim::Wait);
    assert_eq!(
        claim(Some(&lease), "a", Duration::from_millis(14_999)),
        Claim::Wait
    );
    assert_eq!(
        claim(Some(&lease), "a", Duration::from_secs(15)),
        Claim::Take
    );
}

#[test]
fn a_replica_renews_its_own_lease_whatever_its_age() {
    assert_eq!(claim(Some(&held_by_b()), "b", Duration::ZERO), Claim::Take);
}

#[test]
fn taking_a_lease_counts_a_transition_and_renewing_keeps_the_acquire_time() {
    let taken = claimed(&held_by_b(), "a", Duration::from_secs(8), now());
    let spec = taken.spec.as_ref().expect("spec");
    assert_eq!(holder(&taken), Some("a"));
    assert_eq!(spec.lease_transitions, Some(5));
    assert_eq!(spec.lease_duration_seconds, Some(8));
    assert_eq!(spec.acquire_time.as_ref().map(|t| t.0), Some(now()));
    assert_eq!(spec.renew_time.as_ref().map(|t| t.0), Some(now()));
    assert_eq!(
        taken.metadata.resource_version.as_deref(),
        Some("7"),
        "the write is conditional on the version read"
    );

    let renewed = claimed(&held_by_b(), "b", Duration::from_secs(15), now());
    let spec = renewed.spec.as_ref().expect("spec");
    assert_eq!(spec.lease_transitions, Some(4));
    assert_eq!(
        spec.acquire_time
            .as_ref()
            .map(|t| t.0.to_string())
            .as_deref(),
        Some("2026-12-03T10:00:00Z")
    );
    assert_eq!(spec.renew_time.as_ref().map(|t| t.0), Some(now()));
}

#[test]
fn a_new_lease_starts_with_no_transitions() {
    let new = claimed(
        &lease("metadata: {name: crate-operator}"),
        "a",
        Duration::from_secs(15),
        now(),
    );
    assert_eq!(new.spec.and_then(|s| s.lease_transitions), Some(0));
}

#[test]
fn a_released_lease_has_no_holder_and_is_free_to_anyone_at_once() {
    let released = released(&held_by_b(), now());
    assert_eq!(holder(&released), None);
    assert_eq!(claim(Some(&released), "a", Duration::ZERO), Claim::Take);
    assert_eq!(released.metadata.resource_version.as_deref(), Some("7"));
}

#[test]
fn a_frozen_leader_stops_writing_a_third_of_the_duration_before_a_standby_may_take_over() {
    let timing = Timing {
        duration: Duration::from_secs(15),
    };
    assert_eq!(timing.fence(), Duration::from_secs(10));
    assert_eq!(timing.fence() + Duration::from_secs(5), timing.duration);
    assert!(
        timing.renew_every() + timing.retry() < timing.fence(),
        "a renewal that fails once is tried again before the fence closes"
    );
}
