//! Drift of the loader's namespace objects: a ServiceAccount, Role, RoleBinding or
//! NetworkPolicy the manager applied that was since deleted or changed in a field it sets.
//!
//! Each kind is watched by its labels; an event whose object no longer matches what
//! [`crate::loader_namespace`] builds (or a deletion) names its namespace, and [`repair`]
//! applies the four objects there again ([`super::act::prepare_namespace`]) when the namespace has
//! crates. Objects that match are ignored, so a start costs no writes; a change made while the
//! manager was down (or by an older manager) is repaired on the initial listing. Repairs of one
//! namespace are spaced out, more and more while the drift keeps coming back, so a fight with
//! another controller over these objects cannot become a hot loop.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate_operator_api::AnalyticsCrate;
use futures::channel::mpsc;
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Context;
use crate::loader_namespace::{self, LoaderNamespaceConfig, loader_labels};

/// The shortest and longest wait between two repairs of one namespace.
const COOLDOWN_MIN: Duration = Duration::from_secs(1);
const COOLDOWN_MAX: Duration = Duration::from_secs(300);
/// Repairs closer together than this count as the drift coming back.
const RECURRING: Duration = Duration::from_secs(60);

/// The namespaces whose loader objects drifted, as the four kinds' watches report them.
pub(super) fn namespaces(
    client: &Client,
    scope: Option<&str>,
    cfg: &LoaderNamespaceConfig,
) -> impl Stream<Item = String> + Send + 'static {
    fn api<K>(client: &Client, scope: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    fn names<K>(
        stream: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    ) -> impl Stream<Item = String> + Send + 'static
    where
        K: Resource + Send + 'static,
    {
        stream.filter_map(|event| {
            futures::future::ready(match event {
                Ok(object) => {
                    tracing::warn!(
                        namespace = object.meta().namespace.as_deref().unwrap_or_default(),
                        name = object.meta().name.as_deref().unwrap_or_default(),
                        "loader namespace object deleted or changed"
                    );
                    object.meta().namespace.clone()
                }
                Err(error) => {
                    tracing::warn!(%error, "watching the loader namespace objects failed; retrying");
                    None
                }
            })
        })
    }
    futures::stream::select_all([
        names(drifted(
            api(client, scope),
            loader_namespace::service_account,
            cfg.clone(),
        ))
        .boxed(),
        names(drifted(
            api(client, scope),
            loader_namespace::role,
            cfg.clone(),
        ))
        .boxed(),
        names(drifted(
            api(client, scope),
            loader_namespace::role_binding,
            cfg.clone(),
        ))
        .boxed(),
        names(drifted(
            api(client, scope),
            loader_namespace::network_policy,
            cfg.clone(),
        ))
        .boxed(),
    ])
}

/// When a namespace was last repaired, and how long until it may be again.
#[derive(Clone, Copy)]
struct Spacing {
    last: Instant,
    cooldown: Duration,
}

/// Applies the loader's objects again in each drifted namespace that has crates (until the
/// stream ends).
pub(super) async fn repair(
    ctx: Arc<Context>,
    crates: Store<AnalyticsCrate>,
    drifted: impl Stream<Item = String> + Send + 'static,
) {
    let (later, again) = mpsc::unbounded::<String>();
    let mut events = futures::stream::select(drifted.boxed(), again);
    let mut spacing: HashMap<String, Spacing> = HashMap::new();
    let mut deferred: HashSet<String> = HashSet::new();
    while let Some(ns) = events.next().await {
        let has_crates = crates
            .state()
            .iter()
            .any(|ac| ac.namespace().as_deref() == Some(ns.as_str()));
        if !has_crates {
            continue;
        }
        let now = Instant::now();
        if let Some(s) = spacing.get(&ns)
            && now < s.last + s.cooldown
        {
            // Too soon: once, later.
            if deferred.insert(ns.clone()) {
                let (later, wait) = (later.clone(), s.last + s.cooldown - now);
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = later.unbounded_send(ns);
                });
            }
            continue;
        }
        deferred.remove(&ns);
        ctx.forget_prepared(&ns);
        let cooldown = match spacing.get(&ns) {
            Some(s) if now.duration_since(s.last) < RECURRING => (s.cooldown * 2).min(COOLDOWN_MAX),
            _ => COOLDOWN_MIN,
        };
        spacing.insert(
            ns.clone(),
            Spacing {
                last: now,
                cooldown,
            },
        );
        match super::act::prepare_namespace(&ctx, &ns).await {
            Ok(()) => {
                tracing::info!(namespace = %ns, "applied the loader's namespace objects again");
            }
            Err(error) => {
                tracing::warn!(namespace = %ns, %error, "failed to apply the loader's namespace objects again; retrying");
                deferred.insert(ns.clone());
                let later = later.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(cooldown).await;
                    let _ = later.unbounded_send(ns);
                });
            }
        }
    }
}

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
/// same elements in order, and everything else must be equal. An empty list or object (or
/// null) is satisfied by an absent one: the API server drops them (a NetworkPolicy's empty
/// `ingress`), and a mismatch there would repair the object forever.
fn contains(live: &Value, want: &Value) -> bool {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if empty(want) && empty(live) {
        return true;
    }
    match (live, want) {
        (Value::Object(live), Value::Object(want)) => want
            .iter()
            .all(|(k, v)| contains(live.get(k).unwrap_or(&Value::Null), v)),
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
    fn a_policy_as_the_api_server_returns_it_matches() {
        // The server drops the empty ingress list the manager sends.
        let mut live = serde_json::to_value(network_policy("sde", &cfg())).expect("json");
        live["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("ingress");
        let live: NetworkPolicy = serde_json::from_value(live).expect("policy");
        assert!(matches(&live, network_policy, &cfg()));
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
