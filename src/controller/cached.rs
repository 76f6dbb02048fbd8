//! What the manager keeps of each watched object: only what its decisions read.
//!
//! Part of the wiring in [`super::run`]: applied to every watch event before the reflector
//! stores it. A loader Job is about 8 KiB as the API serves it, most of it the Pod template
//! (written by the manager, never read back) and `managedFields`; with thousands of Jobs kept
//! for their logs that was most of the manager's memory. What stays of a Job: its name,
//! namespace, uid, creation time, labels, annotations (trigger and generation), owner (the
//! crate) and status. Of a crate: everything but `managedFields` (status is written by
//! server-side apply, which needs none of them locally).

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

use crate_operator_api::AnalyticsCrate;

/// Drops what no decision reads from a loader Job.
pub fn trim_job(job: &mut Job) {
    job.managed_fields_mut().clear();
    job.spec = None;
}

/// Drops what no decision reads from a crate.
pub fn trim_crate(ac: &mut AnalyticsCrate) {
    ac.managed_fields_mut().clear();
}

#[cfg(test)]
mod tests {
    use crate_operator_api::AnalyticsCrate;
    use k8s_openapi::api::batch::v1::Job;

    use super::*;
    use crate::job::{ANNOTATION_CRATE_GENERATION, ANNOTATION_TRIGGER};
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
                }],
                "managedFields": [{"manager": "crate-operator", "operation": "Apply"}]
            },
            "spec": {"template": {"spec": {"containers": [{"name": "load", "image": "x"}]}}},
            "status": {
                "completionTime": "2026-12-03T10:00:09Z",
                "conditions": [{"type": "Complete", "status": "True"}]
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
        assert!(trimmed.managed_fields().is_empty());
        assert!(observe::loader_job(&whole, &[]).is_some());
        assert_eq!(
            observe::loader_job(&trimmed, &[]),
            observe::loader_job(&whole, &[])
        );
        assert_eq!(trimmed.labels(), whole.labels());
        assert_eq!(trimmed.owner_references(), whole.owner_references());
    }

    #[test]
    fn a_trimmed_crate_keeps_its_spec_and_status() {
        let mut ac: AnalyticsCrate = serde_json::from_value(serde_json::json!({
            "apiVersion": "xlscsde.nhs.uk/v1",
            "kind": "AnalyticsCrate",
            "metadata": {
                "name": "omop", "namespace": "research", "generation": 2,
                "managedFields": [{"manager": "kubectl", "operation": "Update"}]
            },
            "spec": {"repo": {"url": "https://example.org/r.git"}, "path": "/ro-crate-metadata.json"},
            "status": {"statusText": "Ready"}
        }))
        .expect("crate");
        let before = (ac.spec.clone(), ac.status.clone(), ac.metadata.generation);
        trim_crate(&mut ac);
        assert!(ac.managed_fields().is_empty());
        assert_eq!(
            (ac.spec.clone(), ac.status.clone(), ac.metadata.generation),
            before
        );
    }
}
