//! The loader Jobs the manager knows of, indexed by the crate that controls them.
//!
//! Part of the wiring in [`super::run`]: every event of the Job watch is applied here, kept as a
//! [`JobSummary`] (what observing it reads, a fifth of the memory of the Job's metadata and
//! status), and the observe step of a reconcile asks for one crate's Jobs.
//! kube-runtime's reflector store has no index: finding one crate's Jobs meant walking all of
//! them, and so did counting the running ones, three times per reconcile. With 10,000 crates
//! and their finished Jobs that made a manager's start quadratic (35 s of reconciles, most of it
//! this walk). Here both answers cost the size of what they return.
//!
//! A re-list (the watch's `Init` … `InitDone`) builds a new index beside the old one, which keeps
//! answering until the list is complete, as the reflector does.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use kube::ResourceExt as _;
use kube::runtime::watcher::Event;

use super::CachedJob;
use crate::observe::JobSummary;

/// The Jobs, by crate uid, and the unfinished ones.
#[derive(Default)]
pub struct Jobs {
    index: RwLock<Index>,
    /// The index being built by a re-list, until its `InitDone`.
    relisting: RwLock<Option<Index>>,
}

#[derive(Default)]
struct Index {
    by_crate: HashMap<String, Vec<Arc<JobSummary>>>,
    /// Unfinished Jobs: name → namespace.
    running: HashMap<String, String>,
}

impl Index {
    fn apply(&mut self, job: &CachedJob) {
        let Some(owner) = controller_uid(job) else {
            return;
        };
        let job = JobSummary::of(&job.metadata, job.status.as_ref());
        if job.finished.is_some() {
            self.running.remove(&job.name);
        } else {
            self.running.insert(job.name.clone(), job.namespace.clone());
        }
        let jobs = self.by_crate.entry(owner.to_owned()).or_default();
        let job = Arc::new(job);
        match jobs.iter_mut().find(|j| same(j, &job)) {
            Some(slot) => *slot = job,
            None => jobs.push(job),
        }
    }

    fn delete(&mut self, job: &CachedJob) {
        self.running.remove(&job.name_any());
        let Some(owner) = controller_uid(job) else {
            return;
        };
        if let Some(jobs) = self.by_crate.get_mut(owner) {
            jobs.retain(|j| {
                j.name != job.name_any() || Some(&j.namespace) != job.namespace().as_ref()
            });
            if jobs.is_empty() {
                self.by_crate.remove(owner);
            }
        }
    }
}

impl Jobs {
    /// Applies one event of the Job watch.
    pub fn apply(&self, event: &Event<CachedJob>) {
        match event {
            Event::Apply(job) => write(&self.index).apply(job),
            Event::Delete(job) => write(&self.index).delete(job),
            Event::Init => *write(&self.relisting) = Some(Index::default()),
            Event::InitApply(job) => {
                if let Some(index) = write(&self.relisting).as_mut() {
                    index.apply(job);
                }
            }
            Event::InitDone => {
                if let Some(index) = write(&self.relisting).take() {
                    *write(&self.index) = index;
                }
            }
        }
    }

    /// The Jobs controlled by the crate with uid `crate_uid`.
    pub fn of(&self, crate_uid: &str) -> Vec<Arc<JobSummary>> {
        read(&self.index)
            .by_crate
            .get(crate_uid)
            .cloned()
            .unwrap_or_default()
    }

    /// Unfinished Jobs, name → namespace.
    pub fn running(&self) -> HashMap<String, String> {
        read(&self.index).running.clone()
    }

    /// How many Jobs have not finished.
    pub fn running_count(&self) -> usize {
        read(&self.index).running.len()
    }

    /// Whether the watch has delivered the Job `name` of the crate `crate_uid`.
    pub fn has(&self, crate_uid: &str, name: &str) -> bool {
        read(&self.index)
            .by_crate
            .get(crate_uid)
            .is_some_and(|jobs| jobs.iter().any(|j| j.name == name))
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn same(a: &JobSummary, b: &JobSummary) -> bool {
    a.name == b.name && a.namespace == b.namespace
}

/// The uid of the object that controls `job` (for a loader Job, its crate).
pub fn controller_uid(job: &CachedJob) -> Option<&str> {
    job.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, crate_uid: &str, finished: bool) -> CachedJob {
        let conditions = if finished {
            serde_json::json!([{"type": "Complete", "status": "True"}])
        } else {
            serde_json::json!([])
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name, "namespace": "research",
                "ownerReferences": [{
                    "apiVersion": "xlscsde.nhs.uk/v1", "kind": "AnalyticsCrate",
                    "name": "c", "uid": crate_uid, "controller": true
                }]
            },
            "status": {"conditions": conditions}
        }))
        .expect("job")
    }

    fn names(jobs: &[Arc<JobSummary>]) -> Vec<String> {
        let mut names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_crate_gets_only_the_jobs_it_controls() {
        let jobs = Jobs::default();
        jobs.apply(&Event::Apply(job("a-1", "a", true)));
        jobs.apply(&Event::Apply(job("a-2", "a", false)));
        jobs.apply(&Event::Apply(job("b-1", "b", false)));
        assert_eq!(names(&jobs.of("a")), ["a-1", "a-2"]);
        assert_eq!(names(&jobs.of("b")), ["b-1"]);
        assert!(jobs.of("c").is_empty());
        assert!(jobs.has("a", "a-2"));
        assert!(!jobs.has("b", "a-2"));
    }

    #[test]
    fn a_job_is_running_until_it_finishes_or_is_deleted() {
        let jobs = Jobs::default();
        jobs.apply(&Event::Apply(job("a-1", "a", false)));
        jobs.apply(&Event::Apply(job("b-1", "b", false)));
        assert_eq!(jobs.running().len(), 2);
        jobs.apply(&Event::Apply(job("a-1", "a", true)));
        assert_eq!(jobs.of("a").len(), 1, "an update replaces the Job");
        assert!(jobs.of("a")[0].finished.is_some());
        jobs.apply(&Event::Delete(job("b-1", "b", false)));
        assert!(jobs.running().is_empty());
        assert!(jobs.of("b").is_empty());
    }

    #[test]
    fn a_relist_replaces_the_index_only_once_complete() {
        let jobs = Jobs::default();
        jobs.apply(&Event::Apply(job("gone", "a", false)));
        jobs.apply(&Event::Init);
        jobs.apply(&Event::InitApply(job("kept", "a", true)));
        assert_eq!(
            names(&jobs.of("a")),
            ["gone"],
            "the old index answers meanwhile"
        );
        jobs.apply(&Event::InitDone);
        assert_eq!(names(&jobs.of("a")), ["kept"]);
        assert!(jobs.running().is_empty());
    }
}
