//! What the manager keeps of each watched object: only what its decisions read.
//!
//! Part of the wiring in [`super::run`]: applied to every watch event before the reflector
//! stores it. A loader Job is about 8 KiB as the API serves it, most of it the Pod template
//! (written by the manager, never read back) and `managedFields`; with thousands of Jobs kept
//! for their logs that was most of the manager's memory. What stays of a Job: its name,
//! namespace, uid, resource version, creation time, the two annotations `observe` reads
//! (trigger and generation), its controlling owner (the crate) and the status counts and the
//! terminal condition that tell whether and how it finished. Of a crate: everything but
//! `managedFields`, labels and other annotations than the reload request (`kubectl apply`
//! leaves a copy of the whole object in one; status is written by server-side apply, which
//! needs no `managedFields` locally).
//!
//! Fields are set to `None` rather than cleared: a cleared `Vec` or map keeps its allocation.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobCondition};

use crate_operator_api::AnalyticsCrate;
use crate_operator_api::contract::ANNOTATION_RELOAD_REQUESTED_AT;

use crate::job::{ANNOTATION_CRATE_GENERATION, ANNOTATION_TRIGGER};

/// Drops what no decision reads from a loader Job.
pub fn trim_job(job: &mut Job) {
    let meta = &mut job.metadata;
    meta.managed_fields = None;
    meta.labels = None;
    keep_annotations(
        &mut meta.annotations,
        &[ANNOTATION_TRIGGER, ANNOTATION_CRATE_GENERATION],
    );
    if let Some(owners) = meta.owner_references.take() {
        let controller: Vec<_> = owners
            .into_iter()
            .filter(|o| o.controller == Some(true))
            .collect();
        meta.owner_references = (!controller.is_empty()).then_some(controller);
    }
    job.spec = None;
    if let Some(status) = &mut job.status {
        status.uncounted_terminated_pods = None;
        status.completed_indexes = None;
        status.failed_indexes = None;
        if let Some(conditions) = status.conditions.take() {
            let terminal: Vec<_> = conditions
                .into_iter()
                .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
                .map(|c| JobCondition {
                    last_probe_time: None,
                    ..c
                })
                .collect();
            status.conditions = (!terminal.is_empty()).then_some(terminal);
        }
    }
}

/// Drops what no decision reads from a crate.
pub fn trim_crate(ac: &mut AnalyticsCrate) {
    let meta = &mut ac.metadata;
    meta.managed_fields = None;
    meta.labels = None;
    keep_annotations(&mut meta.annotations, &[ANNOTATION_RELOAD_REQUESTED_AT]);
}

/// Keeps only the annotations named in `keep` (none left: `None`).
fn keep_annotations(annotations: &mut Option<BTreeMap<String, String>>, keep: &[&str]) {
    if let Some(all) = annotations.take() {
        let kept: BTreeMap<_, _> = all
            .into_iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .collect();
        *annotations = (!kept.is_empty()).then_some(kept);
    }
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt as _;

    use super::*;
    use crate::observe;

    fn loader_job() -> Job {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "omop-1a2b3c4d5e",
                "namespace": "research",
                "uid": "job-uid",
                "creationTimestamp": "2026-12-03T10:00:00Z",
                "labels": {"app.kubernetes.io/name": "crate-loader"},
                "annotations": {
                    (ANNOTATION_TRIGGER): "generation:3",
                    (ANNOTATION_CRATE_GENERATION): "3"
                },
                "ownerReferences": [{
                    "apiVersion": "xlscsde.nhs.uk/v1", "kind": "AnalyticsCrate",
                    "name": "omop", "uid": "crate-uid", "controller": true
                }, {
                    "apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "cm-uid"
                }],
                "managedFields": [{"manager": "crate-operator", "operation": "Apply"}]
            },
            "spec": {"template": {"spec": {"containers": [{"name": "load", "image": "x"}]}}},
            "status": {
                "completionTime": "2026-12-03T10:00:09Z",
                "succeeded": 1,
                "uncountedTerminatedPods": {},
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True",
                     "lastTransitionTime": "2026-12-03T10:00:09Z"},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                     "lastProbeTime": "2026-12-03T10:00:09Z",
                     "lastTransitionTime": "2026-12-03T10:00:09Z"}
                ]
            }
        }))
        .expect("job")
    }

    #[test]
    fn a_trimmed_job_observes_exactly_like_the_whole_one() {
        let whole = loader_job();
        let mut trimmed = whole.clone();
        trim_job(&mut trimmed);
        assert!(trimmed.spec.is_none());
        assert!(trimmed.metadata.managed_fields.is_none());
        assert!(trimmed.metadata.labels.is_none());
        assert!(observe::loader_job(&whole, &[]).is_some());
        assert_eq!(
            observe::loader_job(&trimmed, &[]),
            observe::loader_job(&whole, &[])
        );
        assert_eq!(trimmed.owner_references(), &whole.owner_references()[..1]);
        let status = trimmed.status.expect("status");
        let kept: Vec<&str> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(kept, ["Complete"]);
        assert_eq!(status.succeeded, Some(1));
    }

    #[test]
    fn a_trimmed_job_still_counts_as_running_until_it_finishes() {
        let mut running = loader_job();
        running.status =
            serde_json::from_value(serde_json::json!({"active": 1, "ready": 1})).expect("status");
        let whole = running.clone();
        trim_job(&mut running);
        assert_eq!(running.status, whole.status);
        assert_eq!(
            observe::loader_job(&running, &[]),
            observe::loader_job(&whole, &[])
        );
    }

    #[test]
    fn a_trimmed_crate_keeps_its_spec_status_and_reload_request() {
        let mut ac: AnalyticsCrate = serde_json::from_value(serde_json::json!({
            "apiVersion": "xlscsde.nhs.uk/v1",
            "kind": "AnalyticsCrate",
            "metadata": {
                "name": "omop", "namespace": "research", "generation": 2,
                "labels": {"team": "omop"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"spec\": {}}",
                    (ANNOTATION_RELOAD_REQUESTED_AT): "2026-12-03T10:00:00Z"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Update"}]
            },
            "spec": {"repo": {"url": "https://example.org/r.git"}, "path": "/ro-crate-metadata.json"},
            "status": {"statusText": "Ready"}
        }))
        .expect("crate");
        let before = (ac.spec.clone(), ac.status.clone(), ac.metadata.generation);
        trim_crate(&mut ac);
        assert!(ac.metadata.managed_fields.is_none());
        assert!(ac.metadata.labels.is_none());
        assert_eq!(
            ac.annotations().keys().collect::<Vec<_>>(),
            [ANNOTATION_RELOAD_REQUESTED_AT]
        );
        assert_eq!(
            (ac.spec.clone(), ac.status.clone(), ac.metadata.generation),
            before
        );
    }
}
