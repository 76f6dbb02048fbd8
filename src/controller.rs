//! The controller: one reconcile per `AnalyticsCrate`, wired onto kube-runtime.
//!
//! `reconcile(Arc<AnalyticsCrate>, Arc<Context>)` runs the pipeline
//! observe ([`crate::observe`], over the Job index [`jobs`]) → decide ([`crate::decide`], pure)
//! → act (`controller/act.rs`: create the loader Job under the caps kept in `context.rs`,
//! ensure the loader's namespace resources) → report ([`crate::status`], pure, then
//! `controller/report.rs`: the status written by server-side apply, events). [`run`] wires it
//! onto kube-runtime's watches.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate_operator_api::contract::ANNOTATION_RELOAD_REQUESTED_AT;
use crate_operator_api::rules::Interval;
use crate_operator_api::{AnalyticsCrate, AnalyticsCrateStatus};
use futures::{Future, StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::warn;

use crate::decide::{self, LoaderJob, Observation};
use crate::job::JobError;
use crate::loader_namespace::{LABEL_APP_NAME, LABEL_MANAGED_BY, LOADER_APP_NAME, MANAGER_NAME};
use crate::metrics::{ErrorLabels, Metrics};
use crate::observe::{self, JobSummary};
use crate::status;

mod act;
mod cached;
mod context;
mod drift;
pub mod jobs;
mod listed;
mod pending;
mod report;
mod written;

pub use cached::CachedJob;
pub use context::{Context, Settings};

/// Field manager of everything the manager applies (crate status, loader namespace resources).
pub const FIELD_MANAGER: &str = "crate-operator";

/// Objects per page of the watches' initial lists. A page is held whole, untrimmed, while it is
/// decoded: with kube's 500 Jobs a page and every crate in one response from the watch cache, a
/// restarted manager peaked at 67 MiB in the scale benchmark; with pages of 50, at 28 MiB.
const LIST_PAGE: u32 = 50;

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

    // Observe. Pods are only read for a finished Job whose result is about to be recorded, and
    // for a running one that has had time to start and has not.
    let jobs: Vec<Arc<JobSummary>> = ctx.jobs.of(&uid);
    let views: Vec<LoaderJob> = jobs
        .iter()
        .filter_map(|j| observe::loader_job(j, &[]))
        .collect();
    let running = decide::active(&views).and_then(|v| jobs.iter().find(|j| j.name == v.name));
    let pending = match running {
        Some(job) => pending::why(ctx, &ns, job).await?,
        None => None,
    };
    context::update_running_gauge(ctx);
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
        pending: pending.as_ref(),
        now: Timestamp::now(),
    };

    // Decide, then act.
    let decision = decide::decide(&observation);
    ctx.set_waiting(&uid, None);
    let (next, action) = act::act(ctx, ac, &ns, &uid, &jobs, &prev, decision).await?;

    // Report.
    let version = ac.resource_version();
    if ctx
        .written
        .needs_write(&uid, version.as_deref(), ac.status.as_ref(), &next)
    {
        let version = report::patch_status(ctx, &ns, &name, &next).await?;
        ctx.written.record(&uid, version, next);
    }
    Ok(action)
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
    let (crates, jobs_api, quotas): (Api<AnalyticsCrate>, Api<CachedJob>, Api<ResourceQuota>) =
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
