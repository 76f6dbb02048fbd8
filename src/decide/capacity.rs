//! Admission: whether a load may start now, given the loader Jobs already running.
//!
//! Part of the decide step, asked by the act step just before it creates a Job, under the lock
//! that serialises "count, then create" (so concurrent reconciles cannot overshoot the caps).
//! Pure: the caller passes the running Jobs (those the watch has delivered and those it created
//! a moment ago) and the caps.

use std::collections::HashMap;

/// The loader slots as a start sees them.
#[derive(Debug, Clone, Copy)]
pub struct Slots<'a> {
    /// Loader Jobs not finished yet, name → namespace.
    pub running: &'a HashMap<String, String>,
    /// A Job this crate started a moment ago that the watch has not delivered yet:
    /// `(name, trigger)`.
    pub started_for_crate: Option<(&'a str, &'a str)>,
    /// At most this many loader Jobs run at once (`--max-running-loads`)…
    pub max_running: usize,
    /// …and this many per namespace (`--max-running-loads-per-namespace`).
    pub max_running_per_namespace: usize,
}

/// The answer to "may the Job `job` start in `namespace`?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// It is running already (another reconcile or replica created it): nothing to do.
    Running,
    /// The crate has another Job under way, started for `trigger` a moment ago (say a spec
    /// change and a reload at once): one Job at a time per crate.
    Busy { job: String, trigger: String },
    /// A cap is reached; the message says which caps and how the load will proceed.
    Full(String),
    /// Start it.
    Start,
}

/// Whether the Job `job` of a crate may start in `namespace`.
pub fn admit(slots: &Slots<'_>, job: &str, namespace: &str) -> Admission {
    if slots.running.contains_key(job) {
        return Admission::Running;
    }
    if let Some((job, trigger)) = slots.started_for_crate {
        return Admission::Busy {
            job: job.to_owned(),
            trigger: trigger.to_owned(),
        };
    }
    let in_namespace = slots.running.values().filter(|n| *n == namespace).count();
    if slots.running.len() >= slots.max_running || in_namespace >= slots.max_running_per_namespace {
        // One message for either cap: a crate that waits long alternates between them, and a
        // message that changed each time would cost a status write each time.
        return Admission::Full(format!(
            "waiting for a free loader slot: at most {} loader jobs run at once (--max-running-loads) and {} per namespace (--max-running-loads-per-namespace); the load starts when one finishes",
            slots.max_running, slots.max_running_per_namespace
        ));
    }
    Admission::Start
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Running Jobs `(name, namespace)`; caps of 3 in all and 2 per namespace.
    fn admit_with(running: &[(&str, &str)], started: Option<(&str, &str)>, job: &str) -> Admission {
        let running: HashMap<String, String> = running
            .iter()
            .map(|(n, ns)| ((*n).to_owned(), (*ns).to_owned()))
            .collect();
        let slots = Slots {
            running: &running,
            started_for_crate: started,
            max_running: 3,
            max_running_per_namespace: 2,
        };
        admit(&slots, job, "sde")
    }

    #[test]
    fn a_load_starts_while_both_caps_have_room() {
        assert_eq!(
            admit_with(&[("a", "sde"), ("b", "other")], None, "c"),
            Admission::Start
        );
    }

    #[test]
    fn a_job_already_running_is_not_started_twice() {
        assert_eq!(
            admit_with(&[("a", "sde"), ("b", "sde"), ("c", "x")], None, "a"),
            Admission::Running
        );
    }

    #[test]
    fn a_crate_with_a_job_just_started_waits_for_it() {
        assert_eq!(
            admit_with(&[], Some(("j1", "generation:2")), "j2"),
            Admission::Busy {
                job: "j1".into(),
                trigger: "generation:2".into()
            }
        );
    }

    #[test]
    fn either_cap_holds_a_load_back_with_the_same_message() {
        let namespace_full = admit_with(&[("a", "sde"), ("b", "sde")], None, "c");
        let all_full = admit_with(&[("a", "x"), ("b", "y"), ("d", "z")], None, "c");
        let Admission::Full(message) = &namespace_full else {
            panic!("not held back: {namespace_full:?}");
        };
        assert!(
            message.contains("--max-running-loads-per-namespace"),
            "{message}"
        );
        assert_eq!(all_full, namespace_full);
    }
}
