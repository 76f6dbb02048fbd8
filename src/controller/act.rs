//! Act: carries out what `decide` said for one crate — await a running Job (and find out why
//! it may not start), record a finished one, or start a load under the caps — and returns the
//! next status for the report step and when to look again.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crate_operator_api::{AnalyticsCrate, AnalyticsCrateStatus};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use tracing::{info, warn};

use super::context::{Context, Starting, running_jobs, slots};
use super::report::{publish, record_outcome, report_invalid};
use super::{CachedJob, Error, FIELD_MANAGER, api_error, condition_reason, jobs};
use crate::decide::capacity::{self, Admission};
use crate::decide::{Decision, JobState, LoaderJob, Pending};
use crate::job::{self, JobError};
use crate::loader_namespace;
use crate::observe::{self, JobSummary};
use crate::status::{self, Progress};

/// How long a loader Job may sit without a running Pod before the manager looks for why (see
/// [`pending`]).
pub(super) const POD_GRACE: Duration = Duration::from_secs(20);
/// How often a crate held back by the caps is looked at again, in case no finished load woke
/// it (see [`Context::wake_waiting`]).
const WAIT_RECHECK: Duration = Duration::from_secs(15);
/// A change to a ResourceQuota in its namespace wakes a crate held back by a quota at once; this
/// recheck only covers a missed watch event.
const QUOTA_RECHECK: Duration = Duration::from_secs(60);

/// Carries out a decision; returns the next status and when to look again.
pub(super) async fn act(
    ctx: &Context,
    ac: &AnalyticsCrate,
    ns: &str,
    uid: &str,
    jobs: &[Arc<JobSummary>],
    prev: &AnalyticsCrateStatus,
    decision: Decision,
) -> Result<(AnalyticsCrateStatus, Action), Error> {
    let generation = ac.metadata.generation.unwrap_or(0);
    let now = Timestamp::now();
    let next = |progress: &Progress<'_>| status::next(prev, generation, progress, now);
    Ok(match &decision {
        Decision::Await {
            job,
            trigger,
            pending,
        } => match pending {
            Some(Pending::Quota(message)) => (
                next(&Progress::QuotaExceeded {
                    message: message.clone(),
                }),
                Action::requeue(QUOTA_RECHECK),
            ),
            Some(Pending::PodBlocked(message)) => {
                if condition_reason(prev, status::RECONCILING) != Some("PodBlocked") {
                    warn!(namespace = ns, name = %ac.name_any(), job, %message, "loader pod cannot start");
                    let note = format!("loader job {job} cannot start its pod: {message}");
                    publish(ctx, ac, EventType::Warning, "PodBlocked", note).await;
                }
                (
                    next(&Progress::PodBlocked {
                        job,
                        message: message.clone(),
                    }),
                    Action::requeue(POD_GRACE),
                )
            }
            // A Job may yet be held by a quota or a Pod fail to start: look again soon.
            None => (
                next(&Progress::Loading {
                    job: job.clone(),
                    trigger: trigger.clone(),
                }),
                Action::requeue(POD_GRACE),
            ),
        },
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
                .find(|j| j.name == *job)
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
                Some(progress) => (next(&progress), action),
                // Nothing new to say until the watch delivers the finished Job.
                None => (prev.clone(), action),
            }
        }
        Decision::Idle { wake_after } => (
            next(&Progress::Idle),
            wake_after.map_or_else(Action::await_change, Action::requeue),
        ),
    })
}

/// What starting a load led to: `None` when the Job of this very load exists already and has
/// finished (another replica or an earlier reconcile made it), so there is nothing new to say
/// until the watch delivers it and the next reconcile records it.
type Started = Option<Progress<'static>>;

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
            return Ok((
                Some(Progress::InvalidSpec { message }),
                Action::await_change(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let name = job.name_any();
    let loading = || {
        Some(Progress::Loading {
            job: name.clone(),
            trigger: trigger.to_owned(),
        })
    };

    let mut starting = ctx.starting.lock().await;
    let running = running_jobs(ctx, &mut starting);
    match capacity::admit(&slots(ctx, &running, &starting, uid), &name, ns) {
        Admission::Start => {}
        Admission::Running => return Ok((loading(), Action::await_change())),
        Admission::Busy { job, trigger } => {
            return Ok((
                Some(Progress::Loading { job, trigger }),
                Action::await_change(),
            ));
        }
        Admission::Full(message) => {
            ctx.set_waiting(uid, Some(ObjectRef::from_obj(ac)));
            return Ok((
                Some(Progress::WaitingForCapacity { message }),
                Action::requeue(WAIT_RECHECK),
            ));
        }
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
            existing_job(ctx, &name, ns, uid, trigger).await
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
                Some(Progress::QuotaExceeded { message }),
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
    ctx: &Context,
    name: &str,
    ns: &str,
    uid: &str,
    trigger: &str,
) -> Result<(Started, Action), Error> {
    let api: Api<CachedJob> = Api::namespaced(ctx.client.clone(), ns);
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
    if JobSummary::of(&existing.metadata, existing.status.as_ref())
        .finished
        .is_some()
    {
        return Ok((None, Action::requeue(Duration::from_secs(1))));
    }
    let loading = Progress::Loading {
        job: name.to_owned(),
        trigger: trigger.to_owned(),
    };
    Ok((Some(loading), Action::await_change()))
}

pub(super) async fn list_pods(ctx: &Context, ns: &str, job: &str) -> Result<Vec<Pod>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let params = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    Ok(pods
        .list(&params)
        .await
        .map_err(api_error(format!("list the pods of job {job}"), ns))?
        .items)
}

/// Applies the loader's ServiceAccount, Role, RoleBinding and NetworkPolicy once per namespace
/// and process (server-side apply makes it idempotent; the cache makes it cheap). When many
/// crates of a namespace start at once, one applies and the others wait for it; a failure leaves
/// the cell empty, so the next reconcile tries again.
pub(super) async fn prepare_namespace(ctx: &Context, ns: &str) -> Result<(), Error> {
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
