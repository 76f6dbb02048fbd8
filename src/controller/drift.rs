//! Drift of the loader's namespace objects: a ServiceAccount, Role, RoleBinding or
//! NetworkPolicy the manager applied that was since deleted or changed in a field it sets.
//!
//! Each kind is watched by its labels; an event whose object no longer matches what
//! [`crate::loader_namespace`] builds (or a deletion) marks the namespace drifted and wakes one
//! crate there, whose reconcile applies the four objects again ([`super::prepare_namespace`]).
//! Objects that match are ignored, so a start or a resync costs no writes; a change made while
//! the manager was down (or by an older manager) is repaired on the initial listing.

use std::fmt::Debug;

use futures::{Stream, TryStreamExt as _};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::loader_namespace::{LoaderNamespaceConfig, loader_labels};

/// Builds the object the manager applies in a namespace.
pub(super) type Desired<K> = fn(&str, &LoaderNamespaceConfig) -> K;

/// The objects of one kind that drifted, as they are now (or were, when deleted).
pub(super) fn drifted<K>(
    api: Api<K>,
    desired: Desired<K>,
    cfg: LoaderNamespaceConfig,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug + Send + 'static,
{
    let selector = loader_labels()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .try_filter_map(move |event| {
            let drifted = match event {
                watcher::Event::Delete(object) => is_ours(&object, desired, &cfg).then_some(object),
                watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                    (is_ours(&object, desired, &cfg) && !matches(&object, desired, &cfg))
                        .then_some(object)
                }
                watcher::Event::Init | watcher::Event::InitDone => None,
            };
            futures::future::ready(Ok(drifted))
        })
}

/// Whether the object is the one the manager names in its namespace (not, say, one left from
/// an earlier configuration with other names).
fn is_ours<K>(object: &K, desired: Desired<K>, cfg: &LoaderNamespaceConfig) -> bool
where
    K: Resource<DynamicType = ()>,
{
    let ns = object.namespace().unwrap_or_default();
    desired(&ns, cfg).meta().name == object.meta().name
}

/// Whether everything the manager sets on the object still holds (the server and other
/// controllers may add fields; they may not change or remove ours).
fn matches<K>(object: &K, desired: Desired<K>, cfg: &LoaderNamespaceConfig) -> bool
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let ns = object.namespace().unwrap_or_default();
    let (Ok(live), Ok(mut want)) = (
        serde_json::to_value(object),
        serde_json::to_value(desired(&ns, cfg)),
    ) else {
        return false;
    };
    // Of the metadata, only the labels are ours.
    if let Some(want) = want.as_object_mut() {
        let labels = want
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .cloned()
            .unwrap_or(Value::Null);
        want.insert(
            "metadata".to_owned(),
            serde_json::json!({ "labels": labels }),
        );
    }
    contains(&live, &want)
}

/// Whether `live` holds every value of `want`: objects may have more keys, arrays must have the
/// same elements in order, and everything else must be equal.
fn contains(live: &Value, want: &Value) -> bool {
    match (live, want) {
        (Value::Object(live), Value::Object(want)) => want
            .iter()
            .all(|(k, v)| live.get(k).is_some_and(|l| contains(l, v))),
        (Value::Array(live), Value::Array(want)) => {
            live.len() == want.len() && live.iter().zip(want).all(|(l, w)| contains(l, w))
        }
        (live, want) => live == want,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::NetworkPolicy;

    use super::*;
    use crate::loader_namespace::{network_policy, service_account};

    fn cfg() -> LoaderNamespaceConfig {
        LoaderNamespaceConfig::default()
    }

    #[test]
    fn an_object_as_applied_plus_server_fields_matches() {
        let mut policy = network_policy("sde", &cfg());
        policy.metadata.uid = Some("u1".to_owned());
        policy.metadata.resource_version = Some("7".to_owned());
        policy
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("someone/else".to_owned(), "x".to_owned());
        assert!(matches(&policy, network_policy, &cfg()));
    }

    #[test]
    fn a_changed_rule_or_a_removed_label_is_drift() {
        let mut policy: NetworkPolicy = network_policy("sde", &cfg());
        if let Some(spec) = policy.spec.as_mut() {
            spec.egress = None;
        }
        assert!(!matches(&policy, network_policy, &cfg()));

        let mut account = service_account("sde", &cfg());
        account.automount_service_account_token = Some(true);
        assert!(!matches(&account, service_account, &cfg()));

        let mut account = service_account("sde", &cfg());
        account.metadata.labels = None;
        assert!(!matches(&account, service_account, &cfg()));
    }

    #[test]
    fn an_object_of_another_name_is_not_ours() {
        let mut account = service_account("sde", &cfg());
        account.metadata.name = Some("old-loader".to_owned());
        assert!(!is_ours(&account, service_account, &cfg()));
    }
}
