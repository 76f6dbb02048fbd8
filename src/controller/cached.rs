//! What the manager keeps of each watched object: only what its decisions read.
//!
//! Part of the wiring in [`super::run`]. A loader Job is about 9 KiB as the API serves it, most
//! of it the Pod template (written by the manager, never read back) and `managedFields`. Decoded
//! as a `k8s_openapi` `Job` it took 80 KiB while parsed, and even with its spec dropped the
//! struct alone is 2.5 KiB (the Pod template is inline): with thousands of Jobs kept for their
//! logs that was most of the manager's memory. So the Job watch decodes a [`CachedJob`], which
//! has no spec (the template is skipped while parsing, never allocated), and the Job index keeps
//! only its `observe::JobSummary`.
//!
//! Crates are trimmed before the reflector stores them: everything but `managedFields`, labels
//! and other annotations than the reload request goes (`kubectl apply` leaves a copy of the whole
//! object in one; status is written by server-side apply, which needs no `managedFields`
//! locally). Fields are set to `None` rather than cleared: a cleared `Vec` or map keeps its
//! allocation.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use kube::api::ObjectMeta;
use serde::Deserialize;

use crate_operator_api::AnalyticsCrate;
use crate_operator_api::contract::ANNOTATION_RELOAD_REQUESTED_AT;

/// A `batch/v1` Job without its spec: what the Job watch decodes and the index keeps.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CachedJob {
    pub metadata: ObjectMeta,
    pub status: Option<JobStatus>,
}

impl kube::Resource for CachedJob {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind((): &()) -> Cow<'_, str> {
        <Job as kube::Resource>::kind(&())
    }
    fn group((): &()) -> Cow<'_, str> {
        <Job as kube::Resource>::group(&())
    }
    fn version((): &()) -> Cow<'_, str> {
        <Job as kube::Resource>::version(&())
    }
    fn plural((): &()) -> Cow<'_, str> {
        <Job as kube::Resource>::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<Job> for CachedJob {
    fn from(job: Job) -> Self {
        CachedJob {
            metadata: job.metadata,
            status: job.status,
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

    #[test]
    fn a_cached_job_is_read_from_the_jobs_api() {
        use kube::Resource as _;
        assert_eq!(
            CachedJob::url_path(&(), Some("research")),
            Job::url_path(&(), Some("research"))
        );
        assert_eq!(CachedJob::api_version(&()), "batch/v1");
        assert_eq!(CachedJob::kind(&()), "Job");
    }

    #[test]
    fn a_cached_job_decodes_a_served_job_but_its_spec() {
        let job: CachedJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "omop-1a2b3c4d5e", "namespace": "research"},
            "spec": {"template": {"spec": {"containers": [{"name": "load", "image": "x"}]}}},
            "status": {"succeeded": 1}
        }))
        .expect("a CachedJob");
        assert_eq!(job.name_any(), "omop-1a2b3c4d5e");
        assert_eq!(job.status.and_then(|s| s.succeeded), Some(1));
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
