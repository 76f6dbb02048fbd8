//! The controller: one reconcile per `AnalyticsCrate`, wired onto kube-runtime.
//!
//! `reconcile(Arc<AnalyticsCrate>, Arc<Context>)` runs the pipeline
//! observe ([`crate::observe`]) → decide ([`crate::decide`], pure) → act (create the loader Job,
//! ensure the loader's namespace resources) → report ([`crate::status`], written by server-side
//! apply, plus events). Everything that needs the API lives here; the steps it calls are pure
//! and unit-tested on their own.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate_operator_api::contract::ANNOTATION_RELOAD_REQUESTED_AT;
use crate_operator_api::rules::Interval;
use crate_operator_api::{AnalyticsCrate, AnalyticsCrateStatus};
use futures::channel::mpsc;
use futures::{Future, StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::{info, warn};

use crate::decide::{self, Decision, JobState, LoaderJob, Observation};
use crate::job::{self, JobConfig, JobError};
use crate::loader_namespace::{
    self, LABEL_APP_NAME, LABEL_MANAGED_BY, LOADER_APP_NAME, MANAGER_NAME,
};
use crate::metrics::{ErrorLabels, Metrics, OutcomeLabels};
use crate::observe;
use crate::status::{self, Progress};

mod cached;
mod drift;
pub mod jobs;
mod listed;
mod pending;
mod written;
use pending::Pending;

/// Field manager of everything the manager applies (crate status, loader namespace resources).
pub const FIELD_MANAGER: &str = "crate-operator";

/// How long a loader Job may sit without a running Pod before the manager looks for why (see
/// [`pending`]).
const POD_GRACE: Duration = Duration::from_secs(20);
/// How often a crate held back by the caps is looked at again, in case no finished load woke
/// it (see [`Context::wake_waiting`]).
const WAIT_RECHECK: Duration = Duration::from_secs(15);
/// How many waiting crates a finished load wakes.
const WAKE_PER_FINISHED_LOAD: usize = 3;
/// A change to a ResourceQuota in its namespace wakes a crate held back by a quota at once; this
/// recheck only covers a missed watch event.
const QUOTA_RECHECK: Duration = Duration::from_secs(60);

/// Objects per page of the watches' initial lists. A page is held whole, untrimmed, while it is
/// decoded: with kube's 500 Jobs a page and every crate in one response from the watch cache, a
/// restarted manager peaked at 67 MiB in the scale benchmark; with pages of 50, at 28 MiB.
const LIST_PAGE: u32 = 50;

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

#[derive(Debug, Error)]
pub enum Error {
    #[error("failed to reconcile AnalyticsCrate {0}: it has no namespace or uid")]
    Incomplete(String),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(
        "failed to start loader job {job} in namespace {namespace}: a Job of that name exists and belongs to something else; delete or rename it"
    )]
    NameTaken { job: String, namespace: String },
    #[error("failed to {action} in namespace {namespace}: {source}")]
    Api {
        action: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    fn label(&self) -> &'static str {
        match self {
            Error::Incomplete(_) => "incomplete",
            Error::Job(_) => "job_build",
            Error::NameTaken { .. } => "job_name_taken",
            Error::Api { .. } => "api",
        }
    }
}

fn api_error(action: impl Into<String>, namespace: &str) -> impl FnOnce(kube::Error) -> Error {
    let (action, namespace) = (action.into(), namespace.to_owned());
    move |source| Error::Api {
        action,
        namespace,
        source,
    }
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
    prepared: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<()>>>>,
    /// Crates held back by the caps, in the order they were turned away, for the queue gauge
    /// and so that a freed slot goes to those that waited longest.
    waiting: Mutex<VecDeque<(String, ObjectRef<AnalyticsCrate>)>>,
    /// Wakes waiting crates when a load finishes (the controller's `reconcile_on` stream).
    wake: mpsc::UnboundedSender<ObjectRef<AnalyticsCrate>>,
    woken: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<AnalyticsCrate>>>>,
    /// Serialises "count running Jobs, then create one", so concurrent reconciles cannot
    /// overshoot the caps; also remembers Jobs created but not yet seen by the watch.
    starting: tokio::sync::Mutex<HashMap<String, Starting>>,
    /// Statuses written that the crate cache may not show yet.
    written: written::Written,
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
    /// them again ([`drift`]).
    fn forget_prepared(&self, ns: &str) {
        self.prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(ns);
    }

    /// Records that the crate `uid` is held back by the caps (`Some`) or no longer (`None`).
    fn set_waiting(&self, uid: &str, waiting: Option<ObjectRef<AnalyticsCrate>>) {
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
    fn wake_waiting(&self) {
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

    fn update_waiting_gauge(&self, len: usize) {
        self.metrics
            .crates_waiting
            .set(i64::try_from(len).unwrap_or(i64::MAX));
    }
}

/// Reconciles one crate (see the module docs).
pub async fn reconcile(ac: Arc<AnalyticsCrate>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_crate(&ac, &ctx).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    result
}

/// Requeues a failed reconcile after a pause; kube-runtime adds nothing on top.
#[allow(clippy::needless_pass_by_value)] // the signature kube-runtime expects
pub fn error_policy(ac: Arc<AnalyticsCrate>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(namespace = ac.namespace().unwrap_or_default(), name = %ac.name_any(), %error, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            error: error.label().to_owned(),
        })
        .inc();
    Action::requeue(Duration::from_secs(30))
}

async fn reconcile_crate(ac: &AnalyticsCrate, ctx: &Context) -> Result<Action, Error> {
    let name = ac.name_any();
    let (Some(ns), Some(uid)) = (ac.namespace(), ac.uid()) else {
        return Err(Error::Incomplete(name));
    };
    if ac.metadata.deletion_timestamp.is_some() {
        // Garbage collection removes its Jobs and datasource (owner references); nothing to load.
        return Ok(Action::await_change());
    }
    let generation = ac.metadata.generation.unwrap_or(0);
    let prev = ac.status.clone().unwrap_or_default();

    // Observe. Pods are only read for a finished Job whose result is about to be recorded.
    let jobs: Vec<Arc<Job>> = ctx.jobs.of(&uid);
    let views: Vec<LoaderJob> = jobs
        .iter()
        .filter_map(|j| observe::loader_job(j, &[]))
        .collect();
    update_running_gauge(ctx);
    // The shared rules ([`crate_operator_api::rules`]): what admission let through but cannot
    // load is reported on the crate, not retried.
    let valid = ac.spec.validate();
    let spec_error = valid.as_ref().err().map(ToString::to_string);
    let interval = valid
        .as_ref()
        .ok()
        .and_then(|v| v.interval)
        .map(Interval::duration);
    let observation = Observation {
        generation,
        spec_error: spec_error.as_deref(),
        suspended: ac.spec.suspend.unwrap_or(false),
        reload_requested: ac
            .annotations()
            .get(ANNOTATION_RELOAD_REQUESTED_AT)
            .map(String::as_str),
        interval,
        jitter: interval.map_or(Duration::ZERO, |i| jitter(&uid, i)),
        status: &prev,
        stalled: status::is_stalled(&prev),
        jobs: &views,
        now: Timestamp::now(),
    };

    // Decide, then act.
    let decision = decide::decide(&observation);
    ctx.set_waiting(&uid, None);
    let (next, action) = act(ctx, ac, &ns, &uid, &jobs, &prev, decision).await?;

    // Report.
    let version = ac.resource_version();
    if ctx
        .written
        .needs_write(&uid, version.as_deref(), ac.status.as_ref(), &next)
    {
        let version = patch_status(ctx, &ns, &name, &next).await?;
        ctx.written.record(&uid, version, next);
    }
    Ok(action)
}

/// Carries out a decision; returns the next status and when to look again.
async fn act(
    ctx: &Context,
    ac: &AnalyticsCrate,
    ns: &str,
    uid: &str,
    jobs: &[Arc<Job>],
    prev: &AnalyticsCrateStatus,
    decision: Decision,
) -> Result<(AnalyticsCrateStatus, Action), Error> {
    let generation = ac.metadata.generation.unwrap_or(0);
    let now = Timestamp::now();
    let next = |progress: &Progress<'_>| status::next(prev, generation, progress, now);
    Ok(match &decision {
        Decision::Await { job, trigger } => {
            let running = jobs.iter().find(|j| j.name_any() == *job);
            match pending::why(ctx, ns, running.map(AsRef::as_ref)).await? {
                Some(Pending::Quota(message)) => (
                    next(&Progress::QuotaExceeded { message }),
                    Action::requeue(QUOTA_RECHECK),
                ),
                Some(Pending::PodBlocked(message)) => {
                    if condition_reason(prev, status::RECONCILING) != Some("PodBlocked") {
                        warn!(namespace = ns, name = %ac.name_any(), job, %message, "loader pod cannot start");
                        let note = format!("loader job {job} cannot start its pod: {message}");
                        publish(ctx, ac, EventType::Warning, "PodBlocked", note).await;
                    }
                    (
                        next(&Progress::PodBlocked { job, message }),
                        Action::requeue(POD_GRACE),
                    )
                }
                // A Job may yet be held by a quota or a Pod fail to start: look again soon.
                None => (
                    next(&Progress::Loading { job, trigger }),
                    Action::requeue(POD_GRACE),
                ),
            }
        }
        Decision::Record {
            job,
            trigger,
            generation: job_generation,
            at,
            ..
        } => {
            let pods = list_pods(ctx, ns, job).await?;
            let view = jobs
                .iter()
                .find(|j| j.name_any() == *job)
                .and_then(|j| observe::loader_job(j, &pods));
            let Some(LoaderJob {
                state: JobState::Finished { result, .. },
                ..
            }) = view
            else {
                return Ok((prev.clone(), Action::requeue(Duration::from_secs(1))));
            };
            record_outcome(ctx, ac, job, &result).await;
            ctx.wake_waiting();
            let progress = Progress::Finished {
                job,
                trigger,
                generation: *job_generation,
                result: &result,
                at: *at,
            };
            // The status patch below wakes the crate up again for whatever is due next.
            (next(&progress), Action::await_change())
        }
        Decision::Invalid { message } => {
            report_invalid(ctx, ac, prev, message).await;
            (
                next(&Progress::InvalidSpec {
                    message: message.clone(),
                }),
                Action::await_change(),
            )
        }
        Decision::Suspended => (next(&Progress::Suspended), Action::await_change()),
        Decision::Start {
            trigger,
            last_commit,
        } => {
            let (progress, action) =
                start(ctx, ac, ns, uid, trigger, last_commit.as_deref()).await?;
            match progress {
                // Nothing new to say until the watch delivers the finished Job.
                Started::Finished => (prev.clone(), action),
                progress => (next(&progress.as_progress()), action),
            }
        }
        Decision::Idle { wake_after } => (
            next(&Progress::Idle),
            wake_after.map_or_else(Action::await_change, Action::requeue),
        ),
    })
}

/// A loader Job created by this process that the Job watch may not have delivered yet.
struct Starting {
    namespace: String,
    crate_uid: String,
    trigger: String,
    at: Instant,
}

/// What starting a load led to (owned, unlike [`Progress`]).
enum Started {
    Loading {
        job: String,
        trigger: String,
    },
    WaitingForCapacity(String),
    QuotaExceeded(String),
    /// The spec cannot be turned into a Job (a rule the observe step does not see, e.g. an ssh
    /// secretKey equal to the known_hosts key).
    InvalidSpec(String),
    /// The Job of this very load exists already and has finished (another replica or an
    /// earlier reconcile made it): the next reconcile records it.
    Finished,
}

impl Started {
    fn as_progress(&self) -> Progress<'_> {
        match self {
            Started::Loading { job, trigger } => Progress::Loading { job, trigger },
            Started::WaitingForCapacity(message) => Progress::WaitingForCapacity {
                message: message.clone(),
            },
            Started::QuotaExceeded(message) => Progress::QuotaExceeded {
                message: message.clone(),
            },
            Started::InvalidSpec(message) => Progress::InvalidSpec {
                message: message.clone(),
            },
            Started::Finished => Progress::Idle,
        }
    }
}

async fn start(
    ctx: &Context,
    ac: &AnalyticsCrate,
    ns: &str,
    uid: &str,
    trigger: &str,
    last_commit: Option<&str>,
) -> Result<(Started, Action), Error> {
    if ctx.settings.manage_loader_namespaces {
        prepare_namespace(ctx, ns).await?;
    }
    let job = match job::build(ac, trigger, last_commit, &ctx.settings.job) {
        Ok(job) => job,
        Err(e @ (JobError::InvalidUrl { .. } | JobError::InvalidSpec { .. })) => {
            let message = e.to_string();
            let prev = ac.status.clone().unwrap_or_default();
            report_invalid(ctx, ac, &prev, &message).await;
            return Ok((Started::InvalidSpec(message), Action::await_change()));
        }
        Err(e) => return Err(e.into()),
    };
    let name = job.name_any();
    let loading = || Started::Loading {
        job: name.clone(),
        trigger: trigger.to_owned(),
    };

    let mut starting = ctx.starting.lock().await;
    let running = running_jobs(ctx, &mut starting);
    if running.contains_key(&name) {
        return Ok((loading(), Action::await_change()));
    }
    // One Job at a time per crate: one started a moment ago for another trigger (say a spec
    // change and a reload at once) is not in the watch cache yet, but it is running.
    if let Some((job, started)) = starting.iter().find(|(_, s)| s.crate_uid == uid) {
        let loading = Started::Loading {
            job: job.clone(),
            trigger: started.trigger.clone(),
        };
        return Ok((loading, Action::await_change()));
    }
    let in_namespace = running.values().filter(|n| n.as_str() == ns).count();
    let settings = &ctx.settings;
    // One message for either cap: a crate that waits long alternates between them, and a
    // message that changed each time would cost a status write each time.
    let full = (running.len() >= settings.max_running
        || in_namespace >= settings.max_running_per_namespace)
        .then(|| {
            format!(
                "waiting for a free loader slot: at most {} loader jobs run at once (--max-running-loads) and {} per namespace (--max-running-loads-per-namespace); the load starts when one finishes",
                settings.max_running, settings.max_running_per_namespace
            )
        });
    if let Some(message) = full {
        ctx.set_waiting(uid, Some(ObjectRef::from_obj(ac)));
        return Ok((
            Started::WaitingForCapacity(message),
            Action::requeue(WAIT_RECHECK),
        ));
    }

    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    match api.create(&PostParams::default(), &job).await {
        Ok(_) => {
            starting.insert(
                name.clone(),
                Starting {
                    namespace: ns.to_owned(),
                    crate_uid: uid.to_owned(),
                    trigger: trigger.to_owned(),
                    at: Instant::now(),
                },
            );
            drop(starting);
            ctx.metrics.jobs_started.inc();
            info!(namespace = ns, name = %ac.name_any(), job = %name, trigger, "started loader job");
            publish(
                ctx,
                ac,
                EventType::Normal,
                "Loading",
                format!("started loader job {name} ({trigger})"),
            )
            .await;
            Ok((loading(), Action::await_change()))
        }
        // Another reconcile or replica got there first: same trigger and status, same Job. It
        // may even have finished; then it is recorded once the watch delivers it.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            drop(starting);
            existing_job(&api, &name, ns, uid, trigger).await
        }
        Err(kube::Error::Api(status))
            if status.code == 403 && status.message.contains("exceeded quota") =>
        {
            drop(starting);
            let message = format!("a ResourceQuota refused the loader job: {}", status.message);
            publish(
                ctx,
                ac,
                EventType::Warning,
                "QuotaExceeded",
                message.clone(),
            )
            .await;
            Ok((
                Started::QuotaExceeded(message),
                Action::requeue(QUOTA_RECHECK),
            ))
        }
        Err(e) => Err(api_error(format!("create loader job {name}"), ns)(e)),
    }
}

/// The create of this load's Job answered "already exists": another reconcile or replica made
/// it (same trigger and status, same name). Running, it is this load; finished, it is recorded
/// once the watch delivers it, without a false "Loading" meanwhile.
async fn existing_job(
    api: &Api<Job>,
    name: &str,
    ns: &str,
    uid: &str,
    trigger: &str,
) -> Result<(Started, Action), Error> {
    let existing = api.get(name).await.map_err(api_error(
        format!("read the existing loader job {name}"),
        ns,
    ))?;
    if jobs::controller_uid(&existing) != Some(uid) {
        return Err(Error::NameTaken {
            job: name.to_owned(),
            namespace: ns.to_owned(),
        });
    }
    if jobs::is_finished(&existing) {
        return Ok((Started::Finished, Action::requeue(Duration::from_secs(1))));
    }
    let loading = Started::Loading {
        job: name.to_owned(),
        trigger: trigger.to_owned(),
    };
    Ok((loading, Action::await_change()))
}

/// Loader Jobs not finished yet, by name → namespace: those in the watch cache plus those
/// created so recently that the watch has not delivered them.
fn running_jobs(
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

fn update_running_gauge(ctx: &Context) {
    let running = ctx.jobs.running_count();
    ctx.metrics
        .jobs_running
        .set(i64::try_from(running).unwrap_or(i64::MAX));
}

/// A per-crate delay of up to a tenth of the interval, stable across restarts.
fn jitter(uid: &str, interval: Duration) -> Duration {
    let digest = Sha256::digest(uid.as_bytes());
    let seed = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default());
    let span = (interval.as_millis() / 10).max(1);
    Duration::from_millis(u64::try_from(u128::from(seed) % span).unwrap_or_default())
}

fn condition_reason<'a>(status: &'a AnalyticsCrateStatus, type_: &str) -> Option<&'a str> {
    status::condition(status, type_).map(|c| c.reason.as_str())
}

async fn list_pods(ctx: &Context, ns: &str, job: &str) -> Result<Vec<Pod>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let params = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    Ok(pods
        .list(&params)
        .await
        .map_err(api_error(format!("list the pods of job {job}"), ns))?
        .items)
}

async fn record_outcome(
    ctx: &Context,
    ac: &AnalyticsCrate,
    job: &str,
    result: &crate_operator_api::contract::LoadResult,
) {
    let reason = status::outcome_reason(result.outcome);
    ctx.metrics
        .jobs_finished
        .get_or_create(&OutcomeLabels {
            outcome: reason.to_owned(),
        })
        .inc();
    let namespace = ac.namespace().unwrap_or_default();
    if result.outcome.is_success() {
        info!(namespace, name = %ac.name_any(), job, outcome = reason, commit = result.commit.as_deref(), "load finished");
        // Up-to-date checks are routine; only a change is worth an event.
        if result.outcome == crate_operator_api::contract::Outcome::Loaded {
            publish(ctx, ac, EventType::Normal, reason, result.message.clone()).await;
        }
    } else {
        warn!(namespace, name = %ac.name_any(), job, outcome = reason, message = %result.message, "load failed");
        publish(
            ctx,
            ac,
            EventType::Warning,
            reason,
            format!("{} (see kubectl logs job/{job})", result.message),
        )
        .await;
    }
}

/// A Warning event for a spec that cannot be loaded, unless the crate already says so.
async fn report_invalid(
    ctx: &Context,
    ac: &AnalyticsCrate,
    prev: &AnalyticsCrateStatus,
    message: &str,
) {
    let already = status::condition(prev, status::STALLED).is_some_and(|c| {
        c.reason == "InvalidSpec" && c.observed_generation == ac.metadata.generation
    });
    if !already {
        warn!(namespace = ac.namespace().unwrap_or_default(), name = %ac.name_any(), message, "invalid spec");
        publish(
            ctx,
            ac,
            EventType::Warning,
            "InvalidSpec",
            message.to_owned(),
        )
        .await;
    }
}

async fn publish(ctx: &Context, ac: &AnalyticsCrate, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Load".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &ac.object_ref(&())).await {
        warn!(%error, reason, "failed to publish an event");
    }
}

/// Applies the loader's ServiceAccount, Role, RoleBinding and NetworkPolicy once per namespace
/// and process (server-side apply makes it idempotent; the cache makes it cheap). When many
/// crates of a namespace start at once, one applies and the others wait for it; a failure leaves
/// the cell empty, so the next reconcile tries again.
async fn prepare_namespace(ctx: &Context, ns: &str) -> Result<(), Error> {
    let cell = ctx
        .prepared
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(ns.to_owned())
        .or_default()
        .clone();
    cell.get_or_try_init(|| async {
        let cfg = &ctx.settings.job.namespace_resources;
        apply(ctx, ns, &loader_namespace::service_account(ns, cfg)).await?;
        apply(ctx, ns, &loader_namespace::role(ns, cfg)).await?;
        apply(ctx, ns, &loader_namespace::role_binding(ns, cfg)).await?;
        apply(ctx, ns, &loader_namespace::network_policy(ns, cfg)).await
    })
    .await
    .map(drop)
}

async fn apply<K>(ctx: &Context, ns: &str, object: &K) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let name = object.name_any();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(drop)
    .map_err(api_error(format!("apply {} {name}", K::kind(&())), ns))
}

/// Writes the crate's status; returns its `resourceVersion` after the write.
async fn patch_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &AnalyticsCrateStatus,
) -> Result<Option<String>, Error> {
    let api: Api<AnalyticsCrate> = Api::namespaced(ctx.client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": AnalyticsCrate::api_version(&()),
        "kind": AnalyticsCrate::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|written| written.resource_version())
    .map_err(api_error(
        format!("update the status of AnalyticsCrate {name}"),
        ns,
    ))
}

/// The crates in `namespace` that a ResourceQuota is holding back.
fn held_by_quota(
    crates: &[Arc<AnalyticsCrate>],
    namespace: Option<&str>,
) -> Vec<ObjectRef<AnalyticsCrate>> {
    crates
        .iter()
        .filter(|ac| ac.namespace().as_deref() == namespace)
        .filter(|ac| {
            ac.status
                .as_ref()
                .and_then(|s| condition_reason(s, status::RECONCILING))
                == Some("QuotaExceeded")
        })
        .map(|ac| ObjectRef::from_obj(ac.as_ref()))
        .collect()
}

/// Label selector of the loader Jobs this manager owns.
pub fn loader_job_selector() -> String {
    format!("{LABEL_APP_NAME}={LOADER_APP_NAME},{LABEL_MANAGED_BY}={MANAGER_NAME}")
}

/// Runs the controller until `shutdown` resolves. `ready` turns true once both watches have
/// listed their objects.
pub async fn run(
    client: Client,
    settings: Settings,
    watch_namespace: Option<String>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (crates, jobs_api, quotas): (Api<AnalyticsCrate>, Api<Job>, Api<ResourceQuota>) =
        match &watch_namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
    // Ready once both watches have listed; read from the streams (see `listed` for why).
    let listings = listed::Listings::new(2, ready);
    let jobs = Arc::new(jobs::Jobs::default());
    let indexed = Arc::clone(&jobs);
    let job_events = watcher(
        jobs_api,
        watcher::Config::default()
            .labels(&loader_job_selector())
            .page_size(LIST_PAGE),
    )
    .default_backoff()
    .modify(cached::trim_job)
    .inspect_ok(move |event| indexed.apply(event))
    .inspect_ok(listings.watch())
    .touched_objects();
    let (crate_store, crate_writer) = reflector::store();
    let crate_events = watcher(crates, watcher::Config::default().page_size(LIST_PAGE))
        .default_backoff()
        .modify(cached::trim_crate)
        .reflect(crate_writer)
        .inspect_ok(listings.watch())
        .applied_objects();
    let concurrency = u16::try_from(settings.max_concurrent_reconciles).unwrap_or(u16::MAX);
    let ctx = Arc::new(Context::new(client, settings, jobs, recorder, metrics));
    let woken = ctx.take_woken();
    let controller = Controller::for_stream(crate_events, crate_store.clone())
        .with_config(controller::Config::default().concurrency(concurrency))
        .owns_stream(job_events);
    let controller = match woken {
        Some(woken) => controller.reconcile_on(woken),
        None => controller,
    };
    // A quota raised, or freed by finished Jobs, lets held-back crates start without waiting
    // for their recheck.
    let held = crate_store.clone();
    let controller = controller.watches(quotas, watcher::Config::default(), move |quota| {
        held_by_quota(&held.state(), quota.namespace().as_deref())
    });
    // Deleted or changed loader namespace objects are applied again, beside the controller.
    let repairs = ctx.settings.manage_loader_namespaces.then(|| {
        let drifted = drift::namespaces(
            &ctx.client,
            watch_namespace.as_deref(),
            &ctx.settings.job.namespace_resources,
        );
        tokio::spawn(drift::repair(
            Arc::clone(&ctx),
            crate_store.clone(),
            drifted,
        ))
    });
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    if let Some(repairs) = repairs {
        repairs.abort();
    }
}

#[cfg(test)]
mod tests;
