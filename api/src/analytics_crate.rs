//! `AnalyticsCrate` (`xlscsde.nhs.uk/v1`): a git repository holding one RO-Crate.
//!
//! Field names, defaults, short names and categories match the upstream CRD so existing manifests
//! keep working (the README's drop-in promise). Status is minimal here; the manager extends it.

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
///
/// The admission rules below restate [`crate::rules`], which the manager and the loader apply
/// to the same fields; `tests/e2e/admission.rs` feeds both the same values.
#[serde_with::skip_serializing_none]
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
    doc = "A git repository holding one RO-Crate. The operator loads the crate's metadata into the AnalyticsDataSource of the same name, and reports in status why a load did or did not happen.",
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
    #[schemars(length(max = 1024))]
    pub display_name: Option<String>,
    /// Used when the crate's root entity has no `description`.
    #[schemars(length(max = 16384))]
    pub description: Option<String>,
    /// Path of the RO-Crate metadata file inside the repository, file name included
    /// (e.g. `/bagit/data/ro-crate-metadata.json`). A leading `/` means the repository root.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^\P{Cc}*$"), extend("x-kubernetes-validations" = [
        {"rule": "!self.matches('(^|/)[.][.](/|$)')", "message": "path must not contain '..'; give it from the repository root"},
        {"rule": "!self.endsWith('/')", "message": "path must name the metadata file, e.g. /ro-crate-metadata.json"},
        {"rule": "!self.matches('[^/]//')", "message": "path must not contain an empty component ('//')"},
        {"rule": "self.split('/').exists(c, c != '' && c != '.')", "message": "path must name a file, e.g. /ro-crate-metadata.json"}
    ]))]
    pub path: String,
    /// Where the crate lives.
    pub repo: RepoSpec,
    /// Stop loading this crate (the datasource stays as last loaded). Extension of this operator.
    pub suspend: Option<bool>,
    /// Also check the repository for new commits this often (e.g. `1h`, `30m`, `1h30m`; at least
    /// `1m`, at most `8760h`), jittered per crate. Without it, loads happen on spec changes and
    /// reload requests.
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(h|m|s))+$"), extend("x-kubernetes-validations" = [
        {"rule": "duration(self) >= duration('1m') && duration(self) <= duration('8760h')", "message": "interval must be between 1m and 8760h"}
    ]))]
    pub interval: Option<String>,
}

/// The git repository of a crate.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoSpec {
    /// https or ssh URL of the repository (`https://…`, `ssh://…` or the scp-like
    /// `user@host:path`), without a password: the token goes in the Secret named by
    /// `secretName`. `http://` and `git://` are accepted only when the operator runs with
    /// `--allow-insecure-transport`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^[^\p{Z}\p{Cc}]+$"), extend("x-kubernetes-validations" = [
        {"rule": "!self.contains('://') || self.matches('^(https|ssh|git[+]ssh|ssh[+]git|http|git)://[^/?#]+')", "message": "url must be https://host/..., ssh://host/... or the scp-like user@host:path"},
        {"rule": "!self.matches('^[a-z+]+://[^/@]*:[^/@]*@')", "message": "url must not embed a password; put the token in the Secret named by secretName"},
        {"rule": "self.contains('://') || !self.matches('^[^/]*:[^/]*@[^/:]*:')", "message": "url must not embed a password; put the token in the Secret named by secretName"},
        {"rule": "self.contains('://') || self.matches('^([^/:]+@)?([A-Za-z0-9._-]+|[[][0-9A-Fa-f:.]+[]]):.')", "message": "url must be https://host/..., ssh://host/... or the scp-like user@host:path"},
        {"rule": "!self.contains('://') || !self.matches('[?#]')", "message": "url must not have a query (?) or fragment (#)"}
    ]))]
    pub url: String,
    /// Branch to load (a valid git branch name).
    #[serde(default = "default_branch")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[^\x00-\x20\x7f~^:?*\[\\]+$"), extend("x-kubernetes-validations" = [
        {"rule": "self != 'HEAD' && self != '@'", "message": "branch must name a branch, not HEAD or @"},
        {"rule": "!self.startsWith('-')", "message": "branch must not start with '-'"},
        {"rule": "!self.contains('..') && !self.contains('@{')", "message": "branch must not contain '..' or '@{'"},
        {"rule": "!self.endsWith('.')", "message": "branch must not end with '.'"},
        {"rule": "!self.startsWith('/') && !self.endsWith('/') && !self.contains('//')", "message": "branch must not start or end with '/' or contain '//'"},
        {"rule": "!self.matches('(^|/)[.]')", "message": "no part of branch between slashes may start with '.'"},
        {"rule": "!self.matches('[.]lock(/|$)')", "message": "no part of branch between slashes may end with '.lock'"}
    ]))]
    pub branch: String,
    /// Secret in the crate's namespace holding the access token (public repositories need none).
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"), extend("x-kubernetes-validations" = [
        {"rule": "self.split('.').all(l, l.size() <= 63)", "message": "secretName must be a valid Secret name (DNS labels of at most 63 characters)"}
    ]))]
    pub secret_name: Option<String>,
    /// Key inside the Secret that holds the token (for ssh: the private key; `known_hosts`
    /// comes from the key of that name).
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"), extend("x-kubernetes-validations" = [
        {"rule": "self != '.' && !self.startsWith('..')", "message": "secretKey must not be '.' or start with '..'"}
    ]))]
    pub secret_key: String,
}

/// Observed state of an `AnalyticsCrate`. The first three fields are upstream's; the rest are
/// this operator's, in the Kubernetes style.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsCrateStatus {
    /// Upstream summary: Waiting, Loading, Ready, Failed or Suspended.
    #[serde(default = "default_status_text")]
    pub status_text: String,
    /// The commit last loaded successfully.
    pub commit_id: Option<String>,
    /// Kept for compatibility with the upstream operator; not used.
    pub workspace: Option<String>,
    /// The generation of the spec this status describes.
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, with specific reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `<branch>@sha1:<commit>` last loaded successfully.
    pub revision: Option<String>,
    /// Name of the AnalyticsDataSource made from this crate.
    pub datasource: Option<String>,
    /// The current or last loader Job (`kubectl logs job/<name>`).
    pub last_job: Option<String>,
    /// The value of the reload annotation last acted on.
    pub last_handled_reload_at: Option<String>,
    /// RO-Crate validation warnings of the last load (see the loader Job's log).
    pub warnings: Option<u32>,
    /// When the last load finished, successfully or not.
    pub last_load_time: Option<Time>,
    /// Consecutive failed loads, for backoff; reset by a success.
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
