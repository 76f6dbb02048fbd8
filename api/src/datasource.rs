//! `AnalyticsDataSource` (`xlscsde.nhs.uk/v1`): what the platform consumes.
//!
//! Every optional field is skipped when unset (`skip_serializing_none` on each struct): the
//! loader server-side-applies this type, and a field that is serialised is a field the loader
//! claims. `connections` and `approvals` belong to
//! people and other controllers, so the loader always leaves them `None` (see the
//! invariants in `ARCHITECTURE.md`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Datasource type the loader sets for crate-made datasources.
pub const DEFAULT_TYPE: &str = "Uploaded";

/// Desired state of an `AnalyticsDataSource`.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "xlscsde.nhs.uk",
    version = "v1",
    kind = "AnalyticsDataSource",
    plural = "analyticsdatasources",
    singular = "analyticsdatasource",
    shortname = "ads",
    category = "krap",
    category = "krap-core",
    namespaced,
    status = "AnalyticsDataSourceStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A data source the platform offers to workspaces: its description, publisher, project, connections and approvals. Crate-made ones are loaded by crate-operator from an AnalyticsCrate of the same name; connections and approvals are set by people and other controllers and survive every reload.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.statusText"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsDataSourceSpec {
    /// Kind of datasource; crate-made datasources are `Uploaded`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// Free-text licence.
    pub license: Option<String>,
    pub publisher: Option<Publisher>,
    pub project: Option<Project>,
    /// Set by people or other controllers; never by the loader.
    pub connections: Option<Vec<Connection>>,
    /// Set by people or other controllers; never by the loader.
    pub approvals: Option<Vec<Approval>>,
}

/// Who publishes the data.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Publisher {
    pub organisation: Option<String>,
    pub contact: Option<Contact>,
}

/// A person to contact about the data.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub name: Option<String>,
    pub role: Option<String>,
}

/// The project the data belongs to.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: Option<String>,
}

/// How to reach the data (managed outside this operator).
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub name: Option<String>,
    pub connection_string: Option<ConnectionString>,
    pub databricks_connection: Option<DatabricksConnection>,
    pub ro_crate: Option<RoCrateConnection>,
}

/// A connection string, inline or from a Secret.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionString {
    pub secret_name: Option<String>,
    pub value: Option<String>,
}

/// A Databricks SQL endpoint.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabricksConnection {
    pub host_name: Option<String>,
    pub http_path: Option<String>,
    pub personal_access_token: Option<SecretKeyRef>,
    pub oauth2_token: Option<SecretKeyRef>,
    pub service_principle: Option<SecretRef>,
}

/// A key in a Secret.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub secret_name: Option<String>,
    pub secret_key: Option<String>,
}

/// A whole Secret.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub secret_name: Option<String>,
}

/// A connection described by another RO-Crate.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoCrateConnection {
    pub repo: Option<RoCrateRepo>,
    /// Free-form crate content.
    // A custom schema hides the `Option` from schemars: `default` keeps the field optional.
    #[serde(default)]
    #[schemars(schema_with = "preserve_unknown")]
    pub spec: Option<Value>,
}

/// Repository of an RO-Crate connection.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoCrateRepo {
    pub url: Option<String>,
    pub path: Option<String>,
    pub secret_name: Option<String>,
    pub secret_key: Option<String>,
}

/// A recorded approval to use the data.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    #[serde(rename = "type")]
    pub type_: String,
    pub name: String,
    pub email: String,
    pub job_title: String,
    /// RFC 3339 date-time.
    pub approval_given: String,
}

/// Written by the downstream datasource controller, never by this operator.
#[serde_with::skip_serializing_none]
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsDataSourceStatus {
    pub status_text: Option<String>,
}

fn preserve_unknown(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}
