//! Report: what a reconcile tells about a crate besides its status conditions (built by the
//! pure [`crate::status`]): the status write itself (server-side apply), the events and the
//! outcome metrics of a finished load.

use crate_operator_api::{AnalyticsCrate, AnalyticsCrateStatus};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use super::context::Context;
use super::{Error, FIELD_MANAGER, api_error};
use crate::metrics::OutcomeLabels;
use crate::status;

pub(super) async fn record_outcome(
    ctx: &Context,
    ac: &AnalyticsCrate,
    job: &str,
    result: &crate_operator_api::contract::LoadResult,
) {
    let reason = result.outcome.name();
    ctx.metrics
        .jobs_finished
        .get_or_create(&OutcomeLabels {
            outcome: reason.clone(),
        })
        .inc();
    let namespace = ac.namespace().unwrap_or_default();
    if result.outcome.is_success() {
        info!(namespace, name = %ac.name_any(), job, outcome = reason, commit = result.commit.as_deref(), "load finished");
        // Up-to-date checks are routine; only a change is worth an event.
        if result.outcome == crate_operator_api::contract::Outcome::Loaded {
            publish(ctx, ac, EventType::Normal, &reason, result.message.clone()).await;
        }
    } else {
        warn!(namespace, name = %ac.name_any(), job, outcome = reason, message = %result.message, "load failed");
        publish(
            ctx,
            ac,
            EventType::Warning,
            &reason,
            format!("{} (see kubectl logs job/{job})", result.message),
        )
        .await;
    }
}

/// A Warning event for a spec that cannot be loaded, unless the crate already says so.
pub(super) async fn report_invalid(
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

pub(super) async fn publish(
    ctx: &Context,
    ac: &AnalyticsCrate,
    type_: EventType,
    reason: &str,
    note: String,
) {
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

/// Writes the crate's status; returns its `resourceVersion` after the write.
pub(super) async fn patch_status(
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
