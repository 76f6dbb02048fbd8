//! What the benchmark watches: every loader Job (when it first showed up, and for which crate),
//! every AnalyticsCrate, and every AnalyticsDataSource, over all namespaces, from watches
//! opened before the manager starts. Phases wait on conditions over this state, re-checked
//! after every watch event and on a short tick (for conditions that also read `/metrics`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use crate_operator_api::{AnalyticsCrate, AnalyticsDataSource};
use futures::stream::{BoxStream, StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt as _, watcher as watch};
use kube::{Resource, ResourceExt as _};

/// How often a wait re-checks its condition without an event, and prints progress.
const TICK: Duration = Duration::from_millis(250);
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

enum Change {
    Job(Box<Event<Job>>),
    Crate(Event<AnalyticsCrate>),
    DataSource(Event<AnalyticsDataSource>),
}

/// A loader Job as first seen.
pub struct SeenJob {
    pub first_seen: Instant,
    /// `namespace/name` of the crate controlling it.
    pub owner: Option<String>,
}

/// The watched state.
#[derive(Default)]
pub struct World {
    /// Every loader Job ever seen, by `namespace/name` (deleted ones stay: they were created).
    pub jobs: HashMap<String, SeenJob>,
    pub crates: HashMap<String, AnalyticsCrate>,
    pub datasources: HashSet<String>,
    /// Watch events after the initial lists: how much changed.
    pub crate_updates: usize,
    pub job_updates: usize,
    synced: usize,
}

fn key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// Whether `ac` is Ready with `commit` loaded for its current generation.
pub fn ready_at(ac: &AnalyticsCrate, commit: &str) -> bool {
    ac.status.as_ref().is_some_and(|s| {
        s.status_text == "Ready"
            && s.commit_id.as_deref() == Some(commit)
            && s.observed_generation == ac.metadata.generation
    })
}

impl World {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Job(event) => match *event {
                Event::Apply(job) => {
                    self.job_updates += 1;
                    self.seen_job(&job);
                }
                Event::InitApply(job) => self.seen_job(&job),
                Event::InitDone => self.synced += 1,
                Event::Init | Event::Delete(_) => {}
            },
            Change::Crate(event) => match event {
                Event::Apply(ac) => {
                    self.crate_updates += 1;
                    self.crates.insert(key(&ac), ac);
                }
                Event::InitApply(ac) => {
                    self.crates.insert(key(&ac), ac);
                }
                Event::Delete(ac) => {
                    self.crates.remove(&key(&ac));
                }
                Event::InitDone => self.synced += 1,
                Event::Init => {}
            },
            Change::DataSource(event) => match event {
                Event::Apply(ds) | Event::InitApply(ds) => {
                    self.datasources.insert(key(&ds));
                }
                Event::Delete(ds) => {
                    self.datasources.remove(&key(&ds));
                }
                Event::InitDone => self.synced += 1,
                Event::Init => {}
            },
        }
    }

    fn seen_job(&mut self, job: &Job) {
        self.jobs.entry(key(job)).or_insert_with(|| SeenJob {
            first_seen: Instant::now(),
            owner: job
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .map(|o| format!("{}/{}", job.namespace().unwrap_or_default(), o.name)),
        });
    }

    /// Crates Ready at `commit`.
    pub fn ready(&self, commit: &str) -> usize {
        self.crates.values().filter(|c| ready_at(c, commit)).count()
    }

    fn summary(&self, commit: &str) -> String {
        format!(
            "{} loader jobs seen, {} datasources, {}/{} crates Ready at the head",
            self.jobs.len(),
            self.datasources.len(),
            self.ready(commit),
            self.crates.len()
        )
    }
}

/// The watches and their state.
pub struct Tracker {
    events: BoxStream<'static, Result<Change, watcher::Error>>,
    pub world: World,
    head: String,
}

impl Tracker {
    /// Opens the watches and returns once each has listed what exists.
    pub async fn start(
        client: &kube::Client,
        job_selector: &str,
        head: &str,
    ) -> anyhow::Result<Tracker> {
        let jobs = watch(
            Api::<Job>::all(client.clone()),
            watcher::Config::default().labels(job_selector),
        )
        .default_backoff()
        .map_ok(|event| Change::Job(Box::new(event)))
        .boxed();
        let crates = watch(
            Api::<AnalyticsCrate>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .map_ok(Change::Crate)
        .boxed();
        let datasources = watch(
            Api::<AnalyticsDataSource>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .map_ok(Change::DataSource)
        .boxed();
        let mut tracker = Tracker {
            events: futures::stream::select_all([jobs, crates, datasources]).boxed(),
            world: World::default(),
            head: head.to_owned(),
        };
        tracker
            .until("the watches list", Duration::from_secs(120), |w| {
                w.synced >= 3
            })
            .await?;
        // Events before the manager started are not its doing.
        tracker.world.crate_updates = 0;
        tracker.world.job_updates = 0;
        Ok(tracker)
    }

    /// Applies watch events until `done` holds (checked after each event and every [`TICK`]);
    /// fails after `timeout` with what was reached.
    pub async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&World) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(TICK);
        let mut progress = Instant::now();
        loop {
            if done(&self.world) {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    bail!("{what}: not reached within {timeout:?}; {}", self.world.summary(&self.head));
                }
                _ = tick.tick() => {
                    if progress.elapsed() >= PROGRESS_EVERY {
                        eprintln!("scale: waiting until {what}: {}", self.world.summary(&self.head));
                        progress = Instant::now();
                    }
                }
                event = self.events.next() => match event {
                    Some(Ok(change)) => self.world.apply(change),
                    Some(Err(e)) => eprintln!("scale: a watch failed, retrying: {e}"),
                    None => return Err(anyhow::anyhow!("the watches ended")).context(what.to_owned()),
                },
            }
        }
    }

    /// Applies watch events for `duration`: a fixed measurement window.
    pub async fn run_for(&mut self, duration: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + duration;
        self.until(
            "the window ends",
            duration + Duration::from_secs(60),
            |_| Instant::now() >= end,
        )
        .await
    }
}

/// The crates' statuses and the Jobs seen at one moment, to tell what a manager changed since.
pub struct Snapshot {
    statuses: HashMap<String, serde_json::Value>,
    pub jobs: HashSet<String>,
}

fn status_of(ac: &AnalyticsCrate) -> serde_json::Value {
    serde_json::to_value(&ac.status).unwrap_or_default()
}

impl Snapshot {
    pub fn take(world: &World) -> Snapshot {
        Snapshot {
            statuses: (world.crates.iter())
                .map(|(k, c)| (k.clone(), status_of(c)))
                .collect(),
            jobs: world.jobs.keys().cloned().collect(),
        }
    }

    /// Loader Jobs created since.
    pub fn jobs_created(&self, world: &World) -> usize {
        world.jobs.len() - self.jobs.len()
    }

    /// Crates whose status differs from then.
    pub fn statuses_changed(&self, world: &World) -> usize {
        (world.crates.iter())
            .filter(|(k, c)| self.statuses.get(*k) != Some(&status_of(c)))
            .count()
    }
}
