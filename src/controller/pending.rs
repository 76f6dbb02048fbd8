//! Why a loader Job is not running yet, asked while the crate is `Loading`.
//!
//! Part of the observe step, for a crate whose Job is under way: what it finds goes to `decide`
//! as [`Pending`]. A Job that has had no Pod for [`POD_GRACE`] may be
//! held by a ResourceQuota (the Job controller's `FailedCreate` events say so); a Pod pending for
//! that long may be unable to start at all, say because the crate's Secret or key is missing
//! (the kubelet's `FailedMount` events and container waiting reasons say so). Either is reported
//! on the crate at once instead of after the Job's deadline. The reading itself is pure
//! ([`observe::pod_blocker`]); this module only fetches.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::ResourceExt as _;
use kube::api::{Api, ListParams};

use super::act::{POD_GRACE, list_pods};
use super::{Context, Error, api_error};
use crate::decide::Pending;
use crate::observe::{self, JobSummary};

/// Looks for a reason only once the Job has had [`POD_GRACE`] to get going, so a normal start
/// costs no requests.
pub async fn why(ctx: &Context, ns: &str, job: &JobSummary) -> Result<Option<Pending>, Error> {
    if age(job) < POD_GRACE {
        return Ok(None);
    }
    let pods = job.pods;
    if pods.active + pods.succeeded + pods.failed == 0 {
        return Ok(quota_rejection(ctx, ns, job).await?.map(Pending::Quota));
    }
    if pods.ready > 0 {
        return Ok(None);
    }
    for pod in list_pods(ctx, ns, &job.name).await? {
        if let Some(message) = pod_blocker(ctx, ns, &pod).await? {
            return Ok(Some(Pending::PodBlocked(message)));
        }
    }
    Ok(None)
}

fn age(job: &JobSummary) -> Duration {
    job.created.map_or(Duration::ZERO, |t| {
        Duration::try_from(t.duration_until(Timestamp::now())).unwrap_or_default()
    })
}

/// The Job controller's `FailedCreate` events say whether a ResourceQuota refuses the Pod.
async fn quota_rejection(
    ctx: &Context,
    ns: &str,
    job: &JobSummary,
) -> Result<Option<String>, Error> {
    let selector = format!(
        "involvedObject.kind=Job,involvedObject.name={},reason=FailedCreate",
        job.name
    );
    Ok(events(ctx, ns, &selector, &format!("job {}", job.name))
        .await?
        .into_iter()
        .filter_map(|e| e.message)
        .find(|m| m.contains("exceeded quota"))
        .map(|m| format!("a ResourceQuota keeps the loader job from creating its pod: {m}")))
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
