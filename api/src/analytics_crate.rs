//! `AnalyticsCrate` (`xlscsde.nhs.uk/v1`): a git repository holding one RO-Crate.
//!
//! Field names, defaults, short names and categories match the upstream CRD so existing manifests
//! keep working (design §2). Status is minimal here; the manager extends it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default location of the metadata file: the repository root.
pub const DEFAULT_PATH: &str = "/ro-crate-metadata.json";
/// Default branch when `spec.repo.branch` is omitted.
pub const DEFAULT_BRANCH: &str = "main";
/// Default key inside the crate's Secret that holds the access token.
pub const DEFAULT_SECRET_KEY: &str = "TOKEN";

/// Desired state of an `AnalyticsCrate`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "xlscsde.nhs.uk",
    version = "v1",
    kind = "AnalyticsCrate",
    plural = "analyticscrates",
    singular = "analyticscrate",
    shortname = "ac",
    category = "krap",
    category = "krap-core",
    namespaced,
    status = "AnalyticsCrateStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Workspace","type":"string","jsonPath":".status.workspace"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.statusText"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsCrateSpec {
    /// Human-readable name; used when the crate's root entity has no `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Used when the crate's root entity has no `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Path of the RO-Crate metadata file inside the repository, file name included.
    /// A leading `/` means the repository root.
    #[serde(default = "default_path")]
    pub path: String,
    /// Where the crate lives.
    pub repo: RepoSpec,
}

/// The git repository of a crate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoSpec {
    /// https or ssh URL of the repository.
    pub url: String,
    /// Branch to load.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Secret in the crate's namespace holding the access token (public repositories need none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Key inside the Secret that holds the token.
    #[serde(default = "default_secret_key")]
    pub secret_key: String,
}

/// Observed state of an `AnalyticsCrate`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsCrateStatus {
    /// Upstream summary: Waiting, Loading, Ready, Failed or Suspended.
    #[serde(default = "default_status_text")]
    pub status_text: String,
    /// The commit last loaded successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_id: Option<String>,
    /// Kept for compatibility with the upstream operator; not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

fn default_path() -> String {
    DEFAULT_PATH.to_owned()
}
fn default_branch() -> String {
    DEFAULT_BRANCH.to_owned()
}
fn default_secret_key() -> String {
    DEFAULT_SECRET_KEY.to_owned()
}
fn default_status_text() -> String {
    "Waiting".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_manifest_without_optional_fields_gets_the_upstream_defaults() {
        let spec: AnalyticsCrateSpec = serde_yaml::from_str(
            "displayName: Demo\nrepo:\n  url: https://example.org/org/crate.git\n",
        )
        .expect("minimal spec parses");
        assert_eq!(spec.path, "/ro-crate-metadata.json");
        assert_eq!(spec.repo.branch, "main");
        assert_eq!(spec.repo.secret_key, "TOKEN");
        assert_eq!(spec.repo.secret_name, None);
    }
}
