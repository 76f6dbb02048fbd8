//! The per-namespace objects a loader Job needs before it can run: its ServiceAccount, the Role
//! and RoleBinding that let it apply exactly one kind of object, and the NetworkPolicy that fences
//! its untrusted git work in (`ARCHITECTURE.md`).
//!
//! Where this sits in the flow: observe → decide → **act** → report. In its "act" step the
//! controller ensures these objects exist in a crate's namespace (server-side apply) before it
//! creates a Job from [`crate::job::build`]. The builders here are pure: no client, no I/O, so
//! they are tested as plain values.
//!
//! The names and labels live in one [`LoaderNamespaceConfig`]; [`crate::job::JobConfig`] embeds
//! it, so the Pod's `serviceAccountName` and the NetworkPolicy's pod selector can never drift
//! from the objects made here.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate_operator_api::GROUP;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use thiserror::Error;

/// `app.kubernetes.io/name`: what the object is.
pub const LABEL_APP_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/managed-by`: who made it.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_APP_NAME`] on loader Pods (the NetworkPolicy selects on it).
pub const LOADER_APP_NAME: &str = "crate-loader";
/// Value of [`LABEL_MANAGED_BY`] on everything the manager makes.
pub const MANAGER_NAME: &str = "crate-operator";
/// The only resource the loader may touch (plural, in [`GROUP`]).
pub const DATASOURCE_RESOURCE: &str = "analyticsdatasources";
/// The verbs server-side apply needs: `get` to classify an existing datasource (ours, adoptable,
/// conflict), `patch` for the apply itself, `create` because an apply that creates the object is
/// also authorised as a create.
pub const LOADER_VERBS: [&str; 3] = ["get", "create", "patch"];
/// Link-local range holding the cloud instance-metadata endpoints (169.254.169.254 on AWS, Azure,
/// GCP, OpenStack). Untrusted git content must never reach them: they hand out node credentials.
pub const LINK_LOCAL_CIDR: &str = "169.254.0.0/16";
/// Every IPv4 address.
pub const ANY_IPV4: &str = "0.0.0.0/0";
/// Every IPv6 address.
pub const ANY_IPV6: &str = "::/0";
/// IPv6 ranges of instance-metadata endpoints: link-local, and the unique-local addresses AWS
/// (`fd00:ec2::254`) and GCP (`fd20:ce::254`) serve it on. The rest of the unique-local range
/// stays open: IPv6 clusters number their Pods and Services from it.
pub const IPV6_METADATA: [&str; 3] = ["fe80::/10", "fd00:ec2::254/128", "fd20:ce::254/128"];

/// Names and ports of the loader's per-namespace objects. One instance is shared with
/// [`crate::job::JobConfig`] so the Job and these objects agree by construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderNamespaceConfig {
    /// ServiceAccount the loader Pod runs as.
    pub service_account: String,
    /// Role granting get/create/patch on datasources.
    pub role: String,
    /// RoleBinding of [`Self::role`] to [`Self::service_account`].
    pub role_binding: String,
    /// NetworkPolicy fencing loader Pods.
    pub network_policy: String,
    /// TCP ports git servers are reached on (https and ssh).
    pub git_ports: Vec<i32>,
    /// TCP ports the API server is reached on after the `kubernetes` Service is resolved to its
    /// endpoints (443 on most managed clusters, 6443 on kubeadm-style ones).
    pub api_server_ports: Vec<i32>,
    /// Extra DNS server CIDRs inside the link-local range that must stay reachable on port 53,
    /// e.g. `169.254.20.10/32` for NodeLocal DNSCache. Only port 53 is opened to them.
    pub extra_dns_cidrs: Vec<String>,
}

impl Default for LoaderNamespaceConfig {
    fn default() -> Self {
        LoaderNamespaceConfig {
            service_account: LOADER_APP_NAME.to_owned(),
            role: LOADER_APP_NAME.to_owned(),
            role_binding: LOADER_APP_NAME.to_owned(),
            network_policy: LOADER_APP_NAME.to_owned(),
            git_ports: vec![443, 22],
            api_server_ports: vec![443, 6443],
            extra_dns_cidrs: Vec::new(),
        }
    }
}

/// A configuration value that cannot produce valid objects.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("failed to use the loader configuration: {field} {reason}")]
pub struct InvalidConfig {
    /// The configuration field, as named in the struct.
    pub field: &'static str,
    /// What is wrong and what to change.
    pub reason: String,
}

impl InvalidConfig {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}

impl LoaderNamespaceConfig {
    /// Checks every name and port, so a bad flag fails at start-up rather than as an API error
    /// in every namespace.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        for (field, name) in [
            ("service_account", &self.service_account),
            ("role", &self.role),
            ("role_binding", &self.role_binding),
            ("network_policy", &self.network_policy),
        ] {
            if !is_dns_subdomain(name) {
                return Err(InvalidConfig::new(
                    field,
                    format!(
                        "{name:?} is not a valid object name (lower-case letters, digits, '-' and '.', at most 253 characters)"
                    ),
                ));
            }
        }
        for (field, ports) in [
            ("git_ports", &self.git_ports),
            ("api_server_ports", &self.api_server_ports),
        ] {
            if ports.is_empty() {
                return Err(InvalidConfig::new(
                    field,
                    "is empty; the loader cannot work without it",
                ));
            }
            if let Some(bad) = ports.iter().find(|p| !(1..=65535).contains(*p)) {
                return Err(InvalidConfig::new(
                    field,
                    format!("contains {bad}, which is not a TCP port (1–65535)"),
                ));
            }
        }
        if let Some(bad) = self.extra_dns_cidrs.iter().find(|c| !is_cidr(c)) {
            return Err(InvalidConfig::new(
                "extra_dns_cidrs",
                format!("contains {bad:?}, which is not a CIDR such as 169.254.20.10/32"),
            ));
        }
        Ok(())
    }
}

/// Labels on every object the manager makes for the loader, Pods included.
pub fn loader_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_APP_NAME.to_owned(), LOADER_APP_NAME.to_owned()),
        (LABEL_MANAGED_BY.to_owned(), MANAGER_NAME.to_owned()),
    ])
}

/// Labels the NetworkPolicy selects loader Pods by. A subset of what [`crate::job::build`] puts
/// on the Pod template.
pub fn loader_pod_selector() -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_APP_NAME.to_owned(), LOADER_APP_NAME.to_owned())])
}

fn metadata(name: &str, ns: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(ns.to_owned()),
        labels: Some(loader_labels()),
        ..ObjectMeta::default()
    }
}

/// The loader's ServiceAccount. Automounting is off: the Job mounts a short-lived projected
/// token into the main container only, never into the init container.
pub fn service_account(ns: &str, cfg: &LoaderNamespaceConfig) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(&cfg.service_account, ns),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The loader's Role: get, create and patch of `analyticsdatasources` in this namespace, nothing
/// else (no list or watch, no delete, no Secrets, no status).
pub fn role(ns: &str, cfg: &LoaderNamespaceConfig) -> Role {
    Role {
        metadata: metadata(&cfg.role, ns),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![GROUP.to_owned()]),
            resources: Some(vec![DATASOURCE_RESOURCE.to_owned()]),
            verbs: LOADER_VERBS.iter().map(|v| (*v).to_owned()).collect(),
            ..PolicyRule::default()
        }]),
    }
}

/// Binds [`role`] to [`service_account`] in the same namespace.
pub fn role_binding(ns: &str, cfg: &LoaderNamespaceConfig) -> RoleBinding {
    RoleBinding {
        metadata: metadata(&cfg.role_binding, ns),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: cfg.role.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: cfg.service_account.clone(),
            namespace: Some(ns.to_owned()),
            api_group: None,
        }]),
    }
}

/// The loader's NetworkPolicy: no ingress at all; egress only to DNS, git (https, ssh) and the
/// API server, to any IPv4 or IPv6 address except those of the instance-metadata endpoints
/// (IPv4 link-local, [`IPV6_METADATA`]), so single-stack IPv6 and dual-stack clusters work too.
///
/// Ports are the fence that matters most (metadata services listen on 80); the excepted ranges
/// are defence in depth. NetworkPolicies are additive: another policy selecting these Pods can
/// widen this one, and a CNI without NetworkPolicy support ignores it.
pub fn network_policy(ns: &str, cfg: &LoaderNamespaceConfig) -> NetworkPolicy {
    let block = |cidr: &str, except: &[&str]| NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.to_owned(),
            except: Some(except.iter().map(|&c| c.to_owned()).collect()),
        }),
        ..NetworkPolicyPeer::default()
    };
    let anywhere_but_metadata = || {
        vec![
            block(ANY_IPV4, &[LINK_LOCAL_CIDR]),
            block(ANY_IPV6, &IPV6_METADATA),
        ]
    };
    let port = |protocol: &str, port: i32| NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(port)),
        end_port: None,
    };
    let tcp = |ports: &[i32]| ports.iter().map(|p| port("TCP", *p)).collect::<Vec<_>>();

    let mut dns_peers = anywhere_but_metadata();
    dns_peers.extend(cfg.extra_dns_cidrs.iter().map(|cidr| NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.clone(),
            except: None,
        }),
        ..NetworkPolicyPeer::default()
    }));

    NetworkPolicy {
        metadata: metadata(&cfg.network_policy, ns),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(loader_pod_selector()),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            // Nothing ever needs to connect to a loader.
            ingress: Some(Vec::new()),
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(dns_peers),
                    ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
                },
                NetworkPolicyEgressRule {
                    to: Some(anywhere_but_metadata()),
                    ports: Some(tcp(&cfg.git_ports)),
                },
                NetworkPolicyEgressRule {
                    to: Some(anywhere_but_metadata()),
                    ports: Some(tcp(&cfg.api_server_ports)),
                },
            ]),
        }),
    }
}

/// RFC 1123 subdomain, as Kubernetes object names must be.
pub(crate) fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_cidr(text: &str) -> bool {
    let Some((addr, prefix)) = text.split_once('/') else {
        return false;
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    prefix.parse::<u8>().is_ok_and(|p| p <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
        serde_json::to_value(value).expect("serialises")
    }

    #[test]
    fn the_service_account_does_not_automount_its_token() {
        let sa = service_account("sde", &LoaderNamespaceConfig::default());
        assert_eq!(sa.metadata.name.as_deref(), Some("crate-loader"));
        assert_eq!(sa.metadata.namespace.as_deref(), Some("sde"));
        assert_eq!(sa.automount_service_account_token, Some(false));
    }

    #[test]
    fn the_role_allows_exactly_get_create_and_patch_on_datasources() {
        let role = role("sde", &LoaderNamespaceConfig::default());
        assert_eq!(
            json(&role.rules),
            serde_json::json!([{
                "apiGroups": ["xlscsde.nhs.uk"],
                "resources": ["analyticsdatasources"],
                "verbs": ["get", "create", "patch"],
            }])
        );
    }

    #[test]
    fn the_role_binding_binds_the_role_to_the_service_account_of_the_same_namespace() {
        let cfg = LoaderNamespaceConfig {
            service_account: "sa".into(),
            role: "r".into(),
            ..LoaderNamespaceConfig::default()
        };
        let binding = role_binding("sde", &cfg);
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(binding.role_ref.name, "r");
        assert_eq!(
            json(&binding.subjects),
            serde_json::json!([{"kind": "ServiceAccount", "name": "sa", "namespace": "sde"}])
        );
    }

    #[test]
    fn every_object_is_labelled_as_managed_by_the_operator() {
        let cfg = LoaderNamespaceConfig::default();
        for meta in [
            service_account("sde", &cfg).metadata,
            role("sde", &cfg).metadata,
            role_binding("sde", &cfg).metadata,
            network_policy("sde", &cfg).metadata,
        ] {
            let labels = meta.labels.expect("labels");
            assert_eq!(
                labels.get(LABEL_MANAGED_BY).map(String::as_str),
                Some("crate-operator")
            );
            assert_eq!(meta.namespace.as_deref(), Some("sde"));
        }
    }

    #[test]
    fn the_network_policy_denies_ingress_and_excepts_the_metadata_ranges_from_all_ipv4_and_ipv6_egress()
     {
        let policy = network_policy("sde", &LoaderNamespaceConfig::default());
        let spec = policy.spec.expect("spec");
        assert_eq!(
            spec.pod_selector.and_then(|s| s.match_labels),
            Some(loader_pod_selector())
        );
        assert_eq!(
            spec.policy_types,
            Some(vec!["Ingress".into(), "Egress".into()])
        );
        assert_eq!(spec.ingress, Some(Vec::new()));
        let egress = spec.egress.expect("egress");
        assert_eq!(egress.len(), 3);
        for rule in &egress {
            for peer in rule.to.as_deref().expect("every rule names its peers") {
                let block = peer.ip_block.as_ref().expect("only ipBlocks");
                assert!(peer.pod_selector.is_none() && peer.namespace_selector.is_none());
                let except = block.except.clone().unwrap_or_default();
                match block.cidr.as_str() {
                    "0.0.0.0/0" => assert_eq!(except, ["169.254.0.0/16"]),
                    "::/0" => assert_eq!(
                        except,
                        ["fe80::/10", "fd00:ec2::254/128", "fd20:ce::254/128"]
                    ),
                    other => panic!("unexpected peer {other}"),
                }
            }
            let cidrs: Vec<&str> = rule
                .to
                .iter()
                .flatten()
                .filter_map(|p| p.ip_block.as_ref().map(|b| b.cidr.as_str()))
                .collect();
            assert_eq!(cidrs, ["0.0.0.0/0", "::/0"], "IPv4 and IPv6 alike");
        }
    }

    #[test]
    fn the_network_policy_opens_only_dns_git_and_api_server_ports() {
        let policy = network_policy("sde", &LoaderNamespaceConfig::default());
        let ports: Vec<Vec<(String, i32)>> = policy
            .spec
            .and_then(|s| s.egress)
            .expect("egress")
            .into_iter()
            .map(|rule| {
                rule.ports
                    .expect("every rule names its ports")
                    .into_iter()
                    .map(|p| {
                        let Some(IntOrString::Int(n)) = p.port else {
                            panic!("numeric port expected")
                        };
                        assert!(p.end_port.is_none(), "no port ranges");
                        (p.protocol.expect("protocol"), n)
                    })
                    .collect()
            })
            .collect();
        let tcp = |n| ("TCP".to_owned(), n);
        assert_eq!(
            ports,
            vec![
                vec![("UDP".to_owned(), 53), tcp(53)],
                vec![tcp(443), tcp(22)],
                vec![tcp(443), tcp(6443)],
            ]
        );
    }

    #[test]
    fn a_node_local_dns_cache_can_be_allowed_on_port_53_only() {
        let cfg = LoaderNamespaceConfig {
            extra_dns_cidrs: vec!["169.254.20.10/32".into()],
            ..LoaderNamespaceConfig::default()
        };
        cfg.validate().expect("valid");
        let egress = network_policy("sde", &cfg)
            .spec
            .and_then(|s| s.egress)
            .expect("egress");
        let cidrs = |rule: &NetworkPolicyEgressRule| -> Vec<String> {
            rule.to
                .iter()
                .flatten()
                .filter_map(|p| p.ip_block.as_ref().map(|b| b.cidr.clone()))
                .collect()
        };
        assert_eq!(
            cidrs(&egress[0]),
            vec!["0.0.0.0/0", "::/0", "169.254.20.10/32"]
        );
        assert_eq!(cidrs(&egress[1]), vec!["0.0.0.0/0", "::/0"]);
        assert_eq!(cidrs(&egress[2]), vec!["0.0.0.0/0", "::/0"]);
    }

    #[test]
    fn the_default_configuration_is_valid() {
        LoaderNamespaceConfig::default()
            .validate()
            .expect("defaults are valid");
    }

    #[test]
    fn bad_names_ports_and_cidrs_are_refused_naming_the_field() {
        let bad = [
            LoaderNamespaceConfig {
                service_account: "Crate_Loader".into(),
                ..LoaderNamespaceConfig::default()
            },
            LoaderNamespaceConfig {
                api_server_ports: vec![0],
                ..LoaderNamespaceConfig::default()
            },
            LoaderNamespaceConfig {
                git_ports: Vec::new(),
                ..LoaderNamespaceConfig::default()
            },
            LoaderNamespaceConfig {
                extra_dns_cidrs: vec!["169.254.20.10".into()],
                ..LoaderNamespaceConfig::default()
            },
        ];
        let fields: Vec<&str> = bad
            .iter()
            .map(|cfg| cfg.validate().expect_err("invalid").field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "service_account",
                "api_server_ports",
                "git_ports",
                "extra_dns_cidrs"
            ]
        );
        let message = bad[0].validate().expect_err("invalid").to_string();
        assert!(
            message.starts_with("failed to use the loader configuration: service_account"),
            "{message}"
        );
    }
}
