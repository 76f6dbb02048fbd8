//! The statuses this manager wrote that its crate cache may not show yet: the report step's
//! guard against writing the same status twice.
//!
//! A reconcile compares the status it computed with the crate's cached copy. Right after a
//! status write, a Job event can wake the crate again before the watch has delivered that write:
//! the cache still shows the status before it, and the same status would go out again (a
//! quarter of the status writes of a large load were such repeats). So each write is
//! remembered with the `resourceVersion` the apiserver returned until the cache shows that
//! version, or for [`TTL`] at most: a cache that lags longer than that, or a status someone else
//! wrote meanwhile, is written over as before.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate_operator_api::AnalyticsCrateStatus;

/// How long a write is trusted to be on its way to the cache.
pub const TTL: Duration = Duration::from_secs(30);

/// The last status written per crate uid, until the cache shows it.
#[derive(Default)]
pub struct Written(Mutex<HashMap<String, Entry>>);

struct Entry {
    status: AnalyticsCrateStatus,
    /// The crate's `resourceVersion` after the write.
    version: Option<String>,
    at: Instant,
}

impl Written {
    /// Whether `next` must be written for the crate `uid`, whose cached copy is at `version`
    /// with status `cached` (`None`: it has none yet).
    pub fn needs_write(
        &self,
        uid: &str,
        version: Option<&str>,
        cached: Option<&AnalyticsCrateStatus>,
        next: &AnalyticsCrateStatus,
    ) -> bool {
        self.needs_write_at(uid, version, cached, next, Instant::now())
    }

    fn needs_write_at(
        &self,
        uid: &str,
        version: Option<&str>,
        cached: Option<&AnalyticsCrateStatus>,
        next: &AnalyticsCrateStatus,
        now: Instant,
    ) -> bool {
        let mut written = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let settled = written
            .get(uid)
            .is_some_and(|w| w.version.as_deref() == version || now.duration_since(w.at) >= TTL);
        if settled {
            written.remove(uid);
        }
        // A crate without a status that still has nothing to say gets none written.
        if cached.map_or(*next == AnalyticsCrateStatus::default(), |s| s == next) {
            return false;
        }
        written.get(uid).is_none_or(|w| w.status != *next)
    }

    /// Records that `status` was written to the crate `uid`, which is now at `version`.
    pub fn record(&self, uid: &str, version: Option<String>, status: AnalyticsCrateStatus) {
        let now = Instant::now();
        let mut written = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Entries of crates deleted right after a write would otherwise stay.
        written.retain(|_, w| now.duration_since(w.at) < TTL);
        written.insert(
            uid.to_owned(),
            Entry {
                status,
                version,
                at: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(text: &str) -> AnalyticsCrateStatus {
        AnalyticsCrateStatus {
            status_text: text.to_owned(),
            ..AnalyticsCrateStatus::default()
        }
    }

    #[test]
    fn a_status_the_cache_already_shows_is_not_written() {
        let written = Written::default();
        assert!(!written.needs_write("u", Some("1"), Some(&status("Ready")), &status("Ready")));
        assert!(!written.needs_write("u", None, None, &AnalyticsCrateStatus::default()));
        assert!(written.needs_write("u", Some("1"), Some(&status("Waiting")), &status("Ready")));
    }

    #[test]
    fn a_status_just_written_is_not_written_again_while_the_cache_lags() {
        let written = Written::default();
        written.record("u", Some("8".to_owned()), status("Loading"));
        // The cache is still at version 7, from before the write.
        assert!(!written.needs_write("u", Some("7"), Some(&status("Waiting")), &status("Loading")));
        assert!(
            written.needs_write("u", Some("7"), Some(&status("Waiting")), &status("Ready")),
            "a different status goes out"
        );
        assert!(
            written.needs_write(
                "other",
                Some("7"),
                Some(&status("Waiting")),
                &status("Loading")
            ),
            "another crate is not affected"
        );
    }

    #[test]
    fn once_the_cache_shows_the_write_the_cache_decides_again() {
        let written = Written::default();
        written.record("u", Some("8".to_owned()), status("Loading"));
        assert!(!written.needs_write("u", Some("8"), Some(&status("Loading")), &status("Loading")));
        // Someone else wrote a status since: the cache shows it, and ours goes out again.
        assert!(written.needs_write("u", Some("9"), Some(&status("Waiting")), &status("Loading")));
    }

    #[test]
    fn a_write_is_trusted_to_reach_the_cache_for_a_limited_time() {
        let written = Written::default();
        written.record("u", Some("8".to_owned()), status("Loading"));
        let later = Instant::now() + TTL;
        assert!(written.needs_write_at(
            "u",
            Some("7"),
            Some(&status("Waiting")),
            &status("Loading"),
            later
        ));
    }
}
