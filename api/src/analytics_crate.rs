//! `AnalyticsCrate` (`xlscsde.nhs.uk/v1`): a git repository holding one RO-Crate.
//!
//! Field names, defaults, short names and categories match the upstream CRD so existing manifests
//! keep working (design §2). Status is minimal here; the manager extends it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
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
    printcolumn = r#"{"name":"Workspace","type":"string","jsonPath":".status.workspace","priority":1}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.statusText"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Datasource","type":"string","jsonPath":".status.datasource"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
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
    #[schemars(length(min = 1, max = 1024), extend("x-kubernetes-validations" = [
        {"rule": "!self.matches('(^|/)[.][.](/|$)')", "message": "path must not contain '..'; give it from the repository root"},
        {"rule": "!self.endsWith('/')", "message": "path must name the metadata file, e.g. /ro-crate-metadata.json"}
    ]))]
    pub path: String,
    /// Where the crate lives.
    pub repo: RepoSpec,
    /// Stop loading this crate (the datasource stays as last loaded). Extension of this operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Also check the repository for new commits this often (e.g. `1h`, `30m`); jittered per
    /// crate. Without it, loads happen on spec changes, manager restarts and reload requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"))]
    pub interval: Option<String>,
}

/// The git repository of a crate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoSpec {
    /// https or ssh URL of the repository (`https://…`, `ssh://…` or `user@host:path`).
    /// `http://` and `git://` are accepted only when the operator runs with
    /// `--allow-insecure-transport`.
    #[schemars(
        regex(
            pattern = r"^(https://|ssh://|http://|git://)[^\s]+$|^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$"
        ),
        length(max = 2048)
    )]
    pub url: String,
    /// Branch to load.
    #[serde(default = "default_branch")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$"), length(max = 255), extend("x-kubernetes-validations" = [
        {"rule": "!self.contains('..') && !self.endsWith('/') && !self.endsWith('.lock') && !self.contains('//')", "message": "branch must be a valid git branch name"}
    ]))]
    pub branch: String,
    /// Secret in the crate's namespace holding the access token (public repositories need none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Key inside the Secret that holds the token.
    #[serde(default = "default_secret_key")]
    pub secret_key: String,
}

/// Observed state of an `AnalyticsCrate`. The first three fields are upstream's; the rest are
/// this operator's, in the Kubernetes style (design §5).
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
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, with specific reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `<branch>@sha1:<commit>` last loaded successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Name of the AnalyticsDataSource made from this crate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasource: Option<String>,
    /// The current or last loader Job (`kubectl logs job/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<String>,
    /// The value of the reload annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reload_at: Option<String>,
    /// RO-Crate validation warnings of the last load (see the loader Job's log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<u32>,
    /// When the last load finished, successfully or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_load_time: Option<Time>,
    /// Consecutive failed loads, for backoff; reset by a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
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
