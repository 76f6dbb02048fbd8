//! Why a loader Job is not running yet, asked while the crate is `Loading`.
//!
//! Part of the act step for a Job under way. A Job that has had no Pod for [`POD_GRACE`] may be
//! held by a ResourceQuota (the Job controller's `FailedCreate` events say so); a Pod pending for
//! that long may be unable to start at all, say because the crate's Secret or key is missing
//! (the kubelet's `FailedMount` events and container waiting reasons say so). Either is reported
//! on the crate at once instead of after the Job's deadline. The reading itself is pure
//! ([`observe::pod_blocker`]); this module only fetches.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::act::{POD_GRACE, list_pods};
use super::{Context, Error, api_error};
use crate::observe;

/// What keeps a loader Job from running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// A ResourceQuota refuses the Job's Pod.
    Quota(String),
    /// The Pod exists but cannot start (the kubelet's message).
    PodBlocked(String),
}

/// Looks for a reason only once the Job has had [`POD_GRACE`] to get going, so a normal start
/// costs no requests.
pub async fn why(ctx: &Context, ns: &str, job: Option<&Job>) -> Result<Option<Pending>, Error> {
    let Some(job) = job else { return Ok(None) };
    if age(job) < POD_GRACE {
        return Ok(None);
    }
    let status = job.status.as_ref();
    let has_pods = status.is_some_and(|s| {
        s.active.unwrap_or(0) + s.succeeded.unwrap_or(0) + s.failed.unwrap_or(0) > 0
    });
    if !has_pods {
        return Ok(quota_rejection(ctx, ns, job).await?.map(Pending::Quota));
    }
    if status.and_then(|s| s.ready).unwrap_or(0) > 0 {
        return Ok(None);
    }
    for pod in list_pods(ctx, ns, &job.name_any()).await? {
        if let Some(message) = pod_blocker(ctx, ns, &pod).await? {
            return Ok(Some(Pending::PodBlocked(message)));
        }
    }
    Ok(None)
}

fn age(job: &Job) -> Duration {
    job.creation_timestamp().map_or(Duration::ZERO, |t| {
        Duration::try_from(t.0.duration_until(Timestamp::now())).unwrap_or_default()
    })
}

/// The Job controller's `FailedCreate` events say whether a ResourceQuota refuses the Pod.
async fn quota_rejection(ctx: &Context, ns: &str, job: &Job) -> Result<Option<String>, Error> {
    let selector = format!(
        "involvedObject.kind=Job,involvedObject.name={},reason=FailedCreate",
        job.name_any()
    );
    Ok(
        events(ctx, ns, &selector, &format!("job {}", job.name_any()))
            .await?
            .into_iter()
            .filter_map(|e| e.message)
            .find(|m| m.contains("exceeded quota"))
            .map(|m| format!("a ResourceQuota keeps the loader job from creating its pod: {m}")),
    )
}

async fn pod_blocker(ctx: &Context, ns: &str, pod: &Pod) -> Result<Option<String>, Error> {
    if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Pending") {
        return Ok(None);
    }
    let selector = format!(
        "involvedObject.kind=Pod,involvedObject.name={},reason=FailedMount",
        pod.name_any()
    );
    let events = events(ctx, ns, &selector, &format!("pod {}", pod.name_any())).await?;
    Ok(observe::pod_blocker(pod, &events))
}

async fn events(
    ctx: &Context,
    ns: &str,
    selector: &str,
    of: &str,
) -> Result<Vec<CoreEvent>, Error> {
    let api: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api
        .list(&ListParams::default().fields(selector))
        .await
        .map_err(api_error(format!("list the events of {of}"), ns))?
        .items)
}
