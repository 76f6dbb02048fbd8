//! The state all reconciles share, and the capacity slots: the caps on running loader Jobs,
//! the queue of crates held back by them, and the Jobs created but not yet seen by the watch.
//!
//! Part of the act step ([`super::act`]): `start` counts the running Jobs here and creates one
//! only under both caps; a finished load wakes the crates that waited longest.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate_operator_api::AnalyticsCrate;
use futures::channel::mpsc;
use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;

use super::{jobs, written};
use crate::decide::capacity::Slots;
use crate::job::JobConfig;
use crate::metrics::Metrics;

/// How many waiting crates a finished load wakes.
const WAKE_PER_FINISHED_LOAD: usize = 3;

/// The manager's settings, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub job: JobConfig,
    /// Whether the manager applies the loader's ServiceAccount, Role, RoleBinding and
    /// NetworkPolicy in each crate namespace (otherwise the administrator provides them).
    pub manage_loader_namespaces: bool,
    pub max_running: usize,
    pub max_running_per_namespace: usize,
    pub max_concurrent_reconciles: usize,
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    /// Every loader Job the manager can see (label-selected watch).
    pub jobs: Arc<jobs::Jobs>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Per namespace, whether its loader resources were applied since this process started.
    /// One cell per namespace, so concurrent reconciles there apply them once, not each.
    pub(super) prepared: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<()>>>>,
    /// Crates held back by the caps, in the order they were turned away, for the queue gauge
    /// and so that a freed slot goes to those that waited longest.
    pub(super) waiting: Mutex<VecDeque<(String, ObjectRef<AnalyticsCrate>)>>,
    /// Wakes waiting crates when a load finishes (the controller's `reconcile_on` stream).
    pub(super) wake: mpsc::UnboundedSender<ObjectRef<AnalyticsCrate>>,
    pub(super) woken: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<AnalyticsCrate>>>>,
    /// Serialises "count running Jobs, then create one", so concurrent reconciles cannot
    /// overshoot the caps; also remembers Jobs created but not yet seen by the watch.
    pub(super) starting: tokio::sync::Mutex<HashMap<String, Starting>>,
    /// Statuses written that the crate cache may not show yet.
    pub(super) written: written::Written,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        jobs: Arc<jobs::Jobs>,
        recorder: Recorder,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (wake, woken) = mpsc::unbounded();
        Context {
            client,
            settings,
            jobs,
            recorder,
            metrics,
            prepared: Mutex::default(),
            waiting: Mutex::default(),
            wake,
            woken: Mutex::new(Some(woken)),
            starting: tokio::sync::Mutex::default(),
            written: written::Written::default(),
        }
    }

    /// Forgets that the loader objects of `ns` were applied, so the next preparation applies
    /// them again ([`super::drift`]).
    pub(super) fn forget_prepared(&self, ns: &str) {
        self.prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(ns);
    }

    /// Records that the crate `uid` is held back by the caps (`Some`) or no longer (`None`).
    pub(super) fn set_waiting(&self, uid: &str, waiting: Option<ObjectRef<AnalyticsCrate>>) {
        let mut queue = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        queue.retain(|(u, _)| u != uid);
        if let Some(object) = waiting {
            queue.push_back((uid.to_owned(), object));
        }
        self.update_waiting_gauge(queue.len());
    }

    /// The crates [`Context::wake_waiting`] wakes, for the controller to reconcile; `None` once
    /// taken.
    pub fn take_woken(&self) -> Option<mpsc::UnboundedReceiver<ObjectRef<AnalyticsCrate>>> {
        self.woken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// A load finished, so a slot is free: wake the crates that have waited longest. A few, as
    /// the first may still be held back by its namespace's cap; the others wait again.
    pub(super) fn wake_waiting(&self) {
        let mut queue = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..WAKE_PER_FINISHED_LOAD {
            let Some((_, object)) = queue.pop_front() else {
                break;
            };
            // Only fails once the controller has stopped, when nothing needs waking.
            let _ = self.wake.unbounded_send(object);
        }
        self.update_waiting_gauge(queue.len());
    }

    pub(super) fn update_waiting_gauge(&self, len: usize) {
        self.metrics
            .crates_waiting
            .set(i64::try_from(len).unwrap_or(i64::MAX));
    }
}

/// A loader Job created by this process that the Job watch may not have delivered yet.
pub(super) struct Starting {
    pub(super) namespace: String,
    pub(super) crate_uid: String,
    pub(super) trigger: String,
    pub(super) at: Instant,
}

/// Loader Jobs not finished yet, by name → namespace: those in the watch cache plus those
/// created so recently that the watch has not delivered them.
pub(super) fn running_jobs(
    ctx: &Context,
    starting: &mut HashMap<String, Starting>,
) -> HashMap<String, String> {
    let mut running = ctx.jobs.running();
    starting.retain(|name, s| {
        !ctx.jobs.has(&s.crate_uid, name) && s.at.elapsed() < Duration::from_secs(60)
    });
    for (name, s) in starting.iter() {
        running.insert(name.clone(), s.namespace.clone());
    }
    running
}

/// The loader slots as a start of the crate `uid` sees them, for
/// [`crate::decide::capacity::admit`].
pub(super) fn slots<'a>(
    ctx: &Context,
    running: &'a HashMap<String, String>,
    starting: &'a HashMap<String, Starting>,
    uid: &str,
) -> Slots<'a> {
    Slots {
        running,
        started_for_crate: starting
            .iter()
            .find(|(_, s)| s.crate_uid == uid)
            .map(|(job, s)| (job.as_str(), s.trigger.as_str())),
        max_running: ctx.settings.max_running,
        max_running_per_namespace: ctx.settings.max_running_per_namespace,
    }
}

pub(super) fn update_running_gauge(ctx: &Context) {
    let running = ctx.jobs.running_count();
    ctx.metrics
        .jobs_running
        .set(i64::try_from(running).unwrap_or(i64::MAX));
}
