//! Pure helpers of the controller. The reconcile itself is tested against a mock API server in
//! `tests/reconcile.rs`.

use std::time::Duration;

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
