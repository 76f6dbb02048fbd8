//! Apply: the in-Job step that writes the datasource with server-side apply (see the invariants
//! in `ARCHITECTURE.md`).
//!
//! Last step of the flow. Before fetching, [`inspect`] reads the existing datasource once to
//! decide ownership (ours, adoptable from the old operator, or a conflict) and whether the last
//! load is still current; after validation, [`apply`] sends the rendered object. The loader's
//! field manager owns only the fields it renders, so `connections` and `approvals` written by
//! people or other controllers survive every reload.

use crate_operator_api::AnalyticsDataSource;
use crate_operator_api::contract::{
    ANNOTATION_LOAD_INPUTS, ANNOTATION_REVISION, LABEL_CRATE, LABEL_CRATE_NAMESPACE,
    LOADER_FIELD_MANAGER, Outcome, crate_label_value,
};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt as _};
use thiserror::Error;

use crate::render::CrateRef;

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(
        "failed to take over datasource {namespace}/{name}: {why}; delete or rename that datasource, or rename the crate"
    )]
    Conflict {
        namespace: String,
        name: String,
        why: String,
    },
    #[error(
        "failed to {verb} datasource {namespace}/{name}: the API server rejected it as invalid: {message}"
    )]
    Invalid {
        verb: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    #[error("failed to {verb} datasource {namespace}/{name}: {message}")]
    Api {
        verb: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
}

impl ApplyError {
    pub fn outcome(&self) -> Outcome {
        match self {
            ApplyError::Conflict { .. } => Outcome::Conflict,
            ApplyError::Invalid { .. } => Outcome::InvalidCrate,
            ApplyError::Api { .. } => Outcome::ApplyFailed,
        }
    }
}

/// What already exists under the datasource's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    Absent,
    /// Made by this operator for this crate; carries what the last load recorded.
    Ours {
        revision: Option<String>,
        inputs: Option<String>,
    },
    /// Made for this crate by the previous operator (crate labels, no owner): taken over.
    Adoptable,
}

impl Existing {
    /// Whether the last load recorded exactly this revision and inputs digest.
    pub fn is_current(&self, revision: &str, inputs: &str) -> bool {
        matches!(self, Existing::Ours { revision: Some(r), inputs: Some(i) } if r == revision && i == inputs)
    }
}

/// The adoption rule: ours when owned by this crate; adoptable when it carries this crate's two
/// labels and no other controller; anything else is a conflict, never a silent takeover.
pub fn classify(
    existing: Option<&AnalyticsDataSource>,
    owner: &CrateRef,
) -> Result<Existing, ApplyError> {
    let Some(ds) = existing else {
        return Ok(Existing::Absent);
    };
    let conflict = |why: String| ApplyError::Conflict {
        namespace: owner.namespace.clone(),
        name: ds.name_any(),
        why,
    };
    let owners = ds.owner_references();
    if owners.iter().any(|o| o.uid == owner.uid) {
        let annotation = |key: &str| ds.annotations().get(key).cloned();
        return Ok(Existing::Ours {
            revision: annotation(ANNOTATION_REVISION),
            inputs: annotation(ANNOTATION_LOAD_INPUTS),
        });
    }
    if let Some(other) = owners.iter().find(|o| o.controller == Some(true)) {
        return Err(conflict(format!(
            "it is controlled by {} {} (uid {})",
            other.kind, other.name, other.uid
        )));
    }
    let labels = ds.labels();
    let labelled_for_us = labels.get(LABEL_CRATE) == Some(&crate_label_value(&owner.name))
        && labels.get(LABEL_CRATE_NAMESPACE) == Some(&owner.namespace);
    if labelled_for_us {
        Ok(Existing::Adoptable)
    } else {
        Err(conflict(format!(
            "it exists but was not made for this crate (it lacks the labels {LABEL_CRATE}={} and {LABEL_CRATE_NAMESPACE}={})",
            owner.name, owner.namespace
        )))
    }
}

/// Reads the datasource named after the crate and classifies it.
pub async fn inspect(
    api: &Api<AnalyticsDataSource>,
    owner: &CrateRef,
) -> Result<Existing, ApplyError> {
    let existing = api
        .get_opt(&owner.name)
        .await
        .map_err(|e| api_error("read", owner, &e))?;
    classify(existing.as_ref(), owner)
}

/// Server-side-applies the rendered datasource. Forcing is safe here: [`classify`] has already
/// established that this crate may own the object, and the body only names loader-owned fields.
pub async fn apply(
    api: &Api<AnalyticsDataSource>,
    owner: &CrateRef,
    datasource: &AnalyticsDataSource,
) -> Result<(), ApplyError> {
    let params = PatchParams::apply(LOADER_FIELD_MANAGER).force();
    api.patch(&owner.name, &params, &Patch::Apply(datasource))
        .await
        .map(drop)
        .map_err(|e| api_error("apply", owner, &e))
}

fn api_error(verb: &'static str, owner: &CrateRef, err: &kube::Error) -> ApplyError {
    let (namespace, name) = (owner.namespace.clone(), owner.name.clone());
    match err {
        kube::Error::Api(status) if status.code == 422 => ApplyError::Invalid {
            verb,
            namespace,
            name,
            message: status.message.clone(),
        },
        kube::Error::Api(status) if status.code == 403 => ApplyError::Api {
            verb,
            namespace,
            name,
            message: format!(
                "forbidden ({}); the loader's ServiceAccount needs get, create and patch on analyticsdatasources in this namespace",
                status.message
            ),
        },
        other => ApplyError::Api {
            verb,
            namespace,
            name,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::collections::BTreeMap;

    fn owner() -> CrateRef {
        CrateRef {
            name: "demo".into(),
            namespace: "sde".into(),
            uid: "uid-1".into(),
        }
    }

    fn datasource(labels: &[(&str, &str)], owner_uid: Option<(&str, bool)>) -> AnalyticsDataSource {
        let mut ds = AnalyticsDataSource::new(
            "demo",
            crate_operator_api::AnalyticsDataSourceSpec::default(),
        );
        ds.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        ds.metadata.annotations = Some(BTreeMap::from([
            (ANNOTATION_REVISION.to_owned(), "main@sha1:abc".to_owned()),
            (ANNOTATION_LOAD_INPUTS.to_owned(), "sha256:1".to_owned()),
        ]));
        ds.metadata.owner_references = owner_uid.map(|(uid, controller)| {
            vec![OwnerReference {
                api_version: "xlscsde.nhs.uk/v1".into(),
                kind: "AnalyticsCrate".into(),
                name: "someone".into(),
                uid: uid.into(),
                controller: Some(controller),
                block_owner_deletion: None,
            }]
        });
        ds
    }

    #[test]
    fn no_datasource_means_a_fresh_apply() {
        assert_eq!(classify(None, &owner()).expect("absent"), Existing::Absent);
    }

    #[test]
    fn a_datasource_owned_by_this_crate_is_ours_and_reports_its_last_load() {
        let existing =
            classify(Some(&datasource(&[], Some(("uid-1", true)))), &owner()).expect("ours");
        assert!(existing.is_current("main@sha1:abc", "sha256:1"));
        assert!(!existing.is_current("main@sha1:def", "sha256:1"));
        assert!(!existing.is_current("main@sha1:abc", "sha256:2"));
    }

    #[test]
    fn a_datasource_labelled_for_this_crate_by_the_old_operator_is_adopted() {
        let ds = datasource(
            &[(LABEL_CRATE, "demo"), (LABEL_CRATE_NAMESPACE, "sde")],
            None,
        );
        assert_eq!(
            classify(Some(&ds), &owner()).expect("adopt"),
            Existing::Adoptable
        );
    }

    #[test]
    fn a_datasource_labelled_for_another_crate_is_a_conflict() {
        let ds = datasource(
            &[(LABEL_CRATE, "other"), (LABEL_CRATE_NAMESPACE, "sde")],
            None,
        );
        let err = classify(Some(&ds), &owner()).expect_err("conflict");
        assert_eq!(err.outcome(), Outcome::Conflict);
        assert!(
            err.to_string()
                .contains("lacks the labels xlscsde.nhs.uk/crate=demo"),
            "{err}"
        );
    }

    #[test]
    fn a_datasource_controlled_by_something_else_is_a_conflict_even_with_our_labels() {
        let ds = datasource(
            &[(LABEL_CRATE, "demo"), (LABEL_CRATE_NAMESPACE, "sde")],
            Some(("uid-9", true)),
        );
        let err = classify(Some(&ds), &owner()).expect_err("conflict");
        assert!(
            err.to_string()
                .contains("controlled by AnalyticsCrate someone (uid uid-9)"),
            "{err}"
        );
    }

    #[test]
    fn a_hand_made_datasource_without_labels_is_a_conflict() {
        let err = classify(Some(&datasource(&[], None)), &owner()).expect_err("conflict");
        assert!(
            err.to_string()
                .starts_with("failed to take over datasource sde/demo"),
            "{err}"
        );
    }
}
