//! Phase 5's loader Jobs: a finished Job beside each seeded crate, as a load leaves it, so the
//! manager starts on 10,000 crates *and* the Jobs kept for their logs.
//!
//! Each Job carries the labels and annotations of a Job the load phase ran (the crate label
//! changed to its own crate), is controlled by its crate, and has the status the Job controller
//! writes for a completed Job. Its `spec.managedBy` names no real controller, so the Job
//! controller leaves it alone: no Pods, and the status written here stays.

use std::collections::BTreeMap;

use anyhow::Context as _;
use crate_operator_api::contract::LABEL_CRATE;
use crate_operator_api::{AnalyticsCrate, AnalyticsCrateStatus};
use jiff::{Timestamp, ToSpan as _};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource as _, ResourceExt as _};

use crate::fixture::all_at_once;

/// The `spec.managedBy` of the seeded Jobs: a controller that does not exist.
const MANAGED_BY: &str = "bench.xlscsde.nhs.uk/seeded";

/// What every seeded Job copies from a Job the load phase ran.
pub struct Template {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

impl Template {
    /// The labels and annotations of one of the load phase's Jobs.
    pub async fn take(client: &kube::Client) -> anyhow::Result<Template> {
        let jobs: Api<Job> = Api::all(client.clone());
        let selector = crate_operator::controller::loader_job_selector();
        let listed = jobs
            .list(&ListParams::default().labels(&selector).limit(1))
            .await?;
        let job = listed
            .items
            .into_iter()
            .next()
            .context("the load phase left no loader Job to copy")?;
        Ok(Template {
            labels: job.labels().clone(),
            annotations: job.annotations().clone(),
        })
    }
}

/// The name of the seeded Job of crate `name`.
pub fn job_name(crate_name: &str) -> String {
    format!("{crate_name}-seeded")
}

/// `status` as it reads after the seeded Job of crate `crate_name` was recorded.
pub fn recorded(status: &AnalyticsCrateStatus, crate_name: &str) -> AnalyticsCrateStatus {
    AnalyticsCrateStatus {
        last_job: Some(job_name(crate_name)),
        ..status.clone()
    }
}

/// Creates each crate's finished Job, completed at `finished` (the time its status records),
/// and writes the Job's status.
pub async fn create(
    client: &kube::Client,
    crates: &[AnalyticsCrate],
    template: &Template,
    finished: Timestamp,
) -> anyhow::Result<()> {
    let status = completed(finished)?;
    all_at_once(crates.iter().map(|ac| {
        let namespace = ac.namespace().unwrap_or_default();
        let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
        let job = finished_job(ac, template);
        let status = &status;
        async move {
            let name = job.name_any();
            jobs.create(&PostParams::default(), &job).await?;
            jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await
        }
    }))
    .await
    .context("failed to seed a finished loader Job")?;
    Ok(())
}

/// Deletes every loader Job in `namespaces`.
pub async fn delete(client: &kube::Client, namespaces: &[String]) -> anyhow::Result<()> {
    let selector = crate_operator::controller::loader_job_selector();
    all_at_once(namespaces.iter().map(|namespace| {
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let selector = &selector;
        async move {
            jobs.delete_collection(
                &DeleteParams::background(),
                &ListParams::default().labels(selector),
            )
            .await
        }
    }))
    .await
    .context("failed to delete the seeded Jobs")?;
    Ok(())
}

fn finished_job(ac: &AnalyticsCrate, template: &Template) -> Job {
    let name = ac.name_any();
    let mut labels = template.labels.clone();
    labels.insert(
        LABEL_CRATE.to_owned(),
        crate_operator::job::crate_label_value(&name),
    );
    let owner = OwnerReference {
        api_version: AnalyticsCrate::api_version(&()).into_owned(),
        kind: AnalyticsCrate::kind(&()).into_owned(),
        name: name.clone(),
        uid: ac.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name)),
            namespace: ac.namespace(),
            labels: Some(labels),
            annotations: Some(template.annotations.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            managed_by: Some(MANAGED_BY.to_owned()),
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: crate_operator::job::CONTAINER_NAME.to_owned(),
                        image: Some("registry.invalid/never-pulled".to_owned()),
                        ..Container::default()
                    }],
                    restart_policy: Some("Never".to_owned()),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// The status the Job controller writes for a Job whose one Pod succeeded at `at`.
fn completed(at: Timestamp) -> anyhow::Result<serde_json::Value> {
    let started = at.checked_sub(10.seconds())?;
    let condition = |type_: &str| {
        serde_json::json!({
            "type": type_,
            "status": "True",
            "lastProbeTime": at,
            "lastTransitionTime": at,
            "reason": "CompletionsReached",
            "message": "Reached expected number of succeeded pods",
        })
    };
    Ok(serde_json::json!({
        "status": {
            "startTime": started,
            "completionTime": at,
            "succeeded": 1,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": [condition("SuccessCriteriaMet"), condition("Complete")],
        }
    }))
}
