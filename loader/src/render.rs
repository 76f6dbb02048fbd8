//! Render: the `AnalyticsDataSource` object the loader applies (or `preview` prints).
//!
//! Pure step between validation and apply. It adds what the cluster needs besides the mapped
//! spec: the upstream crate labels, provenance annotations, the owner reference to the crate,
//! and the load-inputs digest that lets the next run recognise "nothing changed" cheaply.

use std::collections::BTreeMap;

use crate_operator_api::AnalyticsDataSource;
use crate_operator_api::contract::{
    ANNOTATION_LOAD_INPUTS, ANNOTATION_METADATA_PATH, ANNOTATION_REVISION, ANNOTATION_SOURCE_URL,
    LABEL_CRATE, LABEL_CRATE_NAMESPACE, crate_label_value, revision,
};
use crate_operator_api::datasource::AnalyticsDataSourceSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource as _;
use sha2::{Digest, Sha256};

use crate::rocrate::Fallback;
use crate::source::{MetadataPath, Source};

/// The `AnalyticsCrate` a load is for (in-Job only; `preview` has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateRef {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// Everything besides the commit that shapes the datasource.
pub struct Inputs<'a> {
    pub source: &'a Source,
    pub branch: &'a str,
    pub path: &'a MetadataPath,
    pub fallback: &'a Fallback,
    pub owner: Option<&'a CrateRef>,
}

impl Inputs<'_> {
    /// A digest of the inputs and of this loader's version (a new loader may map differently,
    /// so it must re-apply once). Stored as an annotation and compared on the next run.
    pub fn digest(&self) -> String {
        let fields = serde_json::json!([
            env!("CARGO_PKG_VERSION"),
            self.source.to_string(),
            self.branch,
            self.path.to_string(),
            self.fallback.display_name,
            self.fallback.description,
            self.owner.map(|o| [&o.name, &o.namespace, &o.uid]),
        ]);
        format!("sha256:{:x}", Sha256::digest(fields.to_string().as_bytes()))
    }
}

/// Largest rendered datasource we send. The API server refuses objects over ~1.5 MiB, and the
/// object must keep room for `connections`, `approvals` and managed fields added by others.
pub const MAX_DATASOURCE_BYTES: usize = 1024 * 1024;

/// A rendered datasource too large to store.
#[derive(Debug, thiserror::Error)]
#[error(
    "failed to render the datasource: it is {size} bytes, over the {MAX_DATASOURCE_BYTES}-byte limit; shorten the root entity's description or name"
)]
pub struct TooLarge {
    pub size: usize,
}

/// Checks that a rendered datasource fits in the cluster.
pub fn check_size(datasource: &AnalyticsDataSource) -> Result<(), TooLarge> {
    let size = serde_json::to_vec(datasource).map_or(usize::MAX, |b| b.len());
    if size > MAX_DATASOURCE_BYTES {
        Err(TooLarge { size })
    } else {
        Ok(())
    }
}

/// Builds the datasource object named `name` from a mapped spec and its provenance.
pub fn datasource(
    name: &str,
    spec: AnalyticsDataSourceSpec,
    inputs: &Inputs<'_>,
    commit: &str,
) -> AnalyticsDataSource {
    let annotations = BTreeMap::from([
        (ANNOTATION_SOURCE_URL.to_owned(), inputs.source.to_string()),
        (
            ANNOTATION_REVISION.to_owned(),
            revision(inputs.branch, commit),
        ),
        (ANNOTATION_METADATA_PATH.to_owned(), inputs.path.to_string()),
        (ANNOTATION_LOAD_INPUTS.to_owned(), inputs.digest()),
    ]);
    let (labels, owner_references, namespace) = match inputs.owner {
        Some(owner) => (
            Some(BTreeMap::from([
                (LABEL_CRATE.to_owned(), crate_label_value(&owner.name)),
                (LABEL_CRATE_NAMESPACE.to_owned(), owner.namespace.clone()),
            ])),
            Some(vec![owner_reference(owner)]),
            Some(owner.namespace.clone()),
        ),
        None => (None, None, None),
    };
    let mut ds = AnalyticsDataSource::new(name, spec);
    ds.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        namespace,
        labels,
        annotations: Some(annotations),
        owner_references,
        ..ObjectMeta::default()
    };
    ds
}

/// The crate controls its datasource, so deleting the crate garbage-collects it.
/// `blockOwnerDeletion` is left unset: it would need rights on the crate the loader lacks.
fn owner_reference(owner: &CrateRef) -> OwnerReference {
    OwnerReference {
        api_version: crate_operator_api::AnalyticsCrate::api_version(&()).into_owned(),
        kind: crate_operator_api::AnalyticsCrate::kind(&()).into_owned(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Policy;

    struct Fixture {
        source: Source,
        path: MetadataPath,
        fallback: Fallback,
        owner: CrateRef,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                source: Source::parse("https://example.org/org/crate.git", Policy::default())
                    .expect("url"),
                path: MetadataPath::parse("/bagit/data/ro-crate-metadata.json").expect("path"),
                fallback: Fallback {
                    display_name: Some("Demo".into()),
                    description: None,
                },
                owner: CrateRef {
                    name: "demo".into(),
                    namespace: "sde".into(),
                    uid: "uid-1".into(),
                },
            }
        }
        fn inputs(&self) -> Inputs<'_> {
            Inputs {
                source: &self.source,
                branch: "main",
                path: &self.path,
                fallback: &self.fallback,
                owner: Some(&self.owner),
            }
        }
    }

    #[test]
    fn a_rendered_datasource_carries_labels_provenance_and_its_owner() {
        let fixture = Fixture::new();
        let inputs = fixture.inputs();
        let ds = datasource(
            "demo",
            AnalyticsDataSourceSpec::default(),
            &inputs,
            "abc123",
        );
        let json = serde_json::to_value(&ds).expect("json");
        assert_eq!(json["apiVersion"], "xlscsde.nhs.uk/v1");
        assert_eq!(json["kind"], "AnalyticsDataSource");
        assert_eq!(json["metadata"]["namespace"], "sde");
        assert_eq!(json["metadata"]["labels"]["xlscsde.nhs.uk/crate"], "demo");
        assert_eq!(
            json["metadata"]["labels"]["xlscsde.nhs.uk/crateNamespace"],
            "sde"
        );
        let annotations = &json["metadata"]["annotations"];
        assert_eq!(annotations["xlscsde.nhs.uk/revision"], "main@sha1:abc123");
        assert_eq!(
            annotations["xlscsde.nhs.uk/source-url"],
            "https://example.org/org/crate.git"
        );
        assert_eq!(
            annotations["xlscsde.nhs.uk/metadata-path"],
            "/bagit/data/ro-crate-metadata.json"
        );
        let owner_ref = &json["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner_ref["kind"].as_str(), owner_ref["uid"].as_str()),
            (Some("AnalyticsCrate"), Some("uid-1"))
        );
        assert_eq!(owner_ref["controller"], true);
    }

    #[test]
    fn the_apply_body_never_claims_connections_approvals_or_status() {
        let fixture = Fixture::new();
        let inputs = fixture.inputs();
        let ds = datasource("demo", AnalyticsDataSourceSpec::default(), &inputs, "abc");
        let json = serde_json::to_value(&ds).expect("json");
        for field in ["connections", "approvals"] {
            assert!(
                json["spec"].get(field).is_none(),
                "{field} serialised: {json}"
            );
        }
        assert!(json.get("status").is_none(), "status serialised: {json}");
    }

    #[test]
    fn a_datasource_over_the_size_limit_is_refused_with_what_to_shorten() {
        let fixture = Fixture::new();
        let inputs = fixture.inputs();
        let spec = AnalyticsDataSourceSpec {
            description: Some("x".repeat(MAX_DATASOURCE_BYTES)),
            ..Default::default()
        };
        let err = check_size(&datasource("demo", spec, &inputs, "abc")).expect_err("too large");
        assert!(
            err.to_string()
                .contains("shorten the root entity's description"),
            "{err}"
        );
        let small = datasource("demo", AnalyticsDataSourceSpec::default(), &inputs, "abc");
        check_size(&small).expect("a normal datasource fits");
    }

    #[test]
    fn the_inputs_digest_changes_with_any_input_but_not_otherwise() {
        let fixture = Fixture::new();
        let base = fixture.inputs();
        assert_eq!(base.digest(), fixture.inputs().digest());
        assert_ne!(
            base.digest(),
            Inputs {
                branch: "dev",
                ..fixture.inputs()
            }
            .digest()
        );
        let renamed = Fallback {
            display_name: Some("Renamed".into()),
            description: None,
        };
        assert_ne!(
            base.digest(),
            Inputs {
                fallback: &renamed,
                ..fixture.inputs()
            }
            .digest()
        );
        let other_path = MetadataPath::parse("/ro-crate-metadata.json").expect("path");
        assert_ne!(
            base.digest(),
            Inputs {
                path: &other_path,
                ..fixture.inputs()
            }
            .digest()
        );
        assert_ne!(
            base.digest(),
            Inputs {
                owner: None,
                ..fixture.inputs()
            }
            .digest()
        );
    }
}
