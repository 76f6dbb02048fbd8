//! The install manifests under `deploy/`: every document is a well-formed object of its kind (no
//! misspelt or misplaced fields), the kustomization installs every file, the manager's pod meets
//! Pod Security "restricted", its RBAC is exactly the least privilege it needs, and the
//! Deployment passes only flags the manager accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate_operator_api::AnalyticsCrate;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Container, Namespace, PodSpec, Secret, SecurityContext, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPort};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const NAMESPACE: &str = "crate-operator";
const SERVICE_ACCOUNT: &str = "crate-operator";
const MANAGER_IMAGE: &str = "ghcr.io/lsc-sde/crate-operator";
const LOADER_IMAGE: &str = "ghcr.io/lsc-sde/crate-loader";
const LEASE_NAME: &str = "crate-operator";

/// Flags of `crate-operator run`, and whether each takes a value.
const MANAGER_FLAGS: [(&str, bool); 24] = [
    ("--loader-image", true),
    ("--runner-image", true),
    ("--loader-image-pull-policy", true),
    ("--watch-namespace", true),
    ("--listen-addr", true),
    ("--lease-namespace", true),
    ("--lease-holder", true),
    ("--log-format", true),
    ("--log-level", true),
    ("--external-loader-rbac", false),
    ("--allow-insecure-transport", false),
    ("--max-running-loads", true),
    ("--max-running-loads-per-namespace", true),
    ("--max-concurrent-reconciles", true),
    ("--api-qps", true),
    ("--leader-election", true),
    ("--lease-duration", true),
    ("--loader-timeout", true),
    ("--loader-deadline", true),
    ("--loader-ttl", true),
    ("--loader-cpu-request", true),
    ("--loader-cpu-limit", true),
    ("--loader-memory-request", true),
    ("--loader-memory-limit", true),
];
/// Environment variables the manager reads.
const MANAGER_ENV: [&str; 5] = [
    "CRATE_OPERATOR_LOADER_IMAGE",
    "CRATE_OPERATOR_WATCH_NAMESPACE",
    "CRATE_OPERATOR_LOG_FORMAT",
    "POD_NAMESPACE",
    "POD_NAME",
];

// ---------------------------------------------------------------------------------------------
// Reading deploy/

/// One YAML document of a file under `deploy/`.
struct Doc {
    /// Path relative to `deploy/`, with `/` separators.
    file: String,
    /// Position of the document in its file, from 0.
    index: usize,
    value: Value,
}

impl Doc {
    fn kind(&self) -> Option<&str> {
        self.value.get("kind").and_then(Value::as_str)
    }

    fn name(&self) -> Option<&str> {
        self.value.pointer("/metadata/name").and_then(Value::as_str)
    }

    fn at(&self) -> String {
        format!("deploy/{} (document {})", self.file, self.index + 1)
    }

    fn is_example(&self) -> bool {
        self.file.starts_with("examples/")
    }
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every file under `dir`, recursively, as sorted paths relative to `dir`.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                let parts: Vec<_> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn has_extension(file: &str, extensions: &[&str]) -> bool {
    Path::new(file)
        .extension()
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn is_yaml(file: &str) -> bool {
    has_extension(file, &["yaml", "yml"])
}

/// Every non-empty YAML document under `deploy/`, in file order.
fn documents() -> Vec<Doc> {
    let dir = deploy_dir();
    let mut docs = Vec::new();
    for file in files_under(&dir).into_iter().filter(|f| is_yaml(f)) {
        let text = std::fs::read_to_string(dir.join(&file))
            .unwrap_or_else(|e| panic!("deploy/{file}: {e}"));
        for (index, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = <Value as serde::Deserialize>::deserialize(de)
                .unwrap_or_else(|e| panic!("deploy/{file} (document {}): {e}", index + 1));
            if !value.is_null() {
                docs.push(Doc {
                    file: file.clone(),
                    index,
                    value,
                });
            }
        }
    }
    assert!(!docs.is_empty(), "no YAML documents under deploy/");
    docs
}

fn kustomization(docs: &[Doc]) -> &Value {
    let found: Vec<_> = docs
        .iter()
        .filter(|d| d.file == "kustomization.yaml")
        .collect();
    assert_eq!(
        found.len(),
        1,
        "deploy/kustomization.yaml holds one document"
    );
    &found[0].value
}

fn string_list<'a>(value: &'a Value, key: &str) -> Vec<&'a str> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Strict typed parsing

/// Lists every place where `original` has something that `round_trip` lost or changed: a
/// misspelt or misplaced field is dropped by the typed deserializer, so it shows up here.
/// Fields that the round trip adds (defaults) are fine.
fn lost_fields(original: &Value, round_trip: &Value, path: &str, out: &mut Vec<String>) {
    match (original, round_trip) {
        (Value::Null, _) => out.push(format!("{path}: empty value")),
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => lost_fields(value, other, &here, out),
                    None => out.push(format!("{here}: unknown field")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                lost_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} became {b}")),
    }
}

/// Deserialises a document into its typed struct and fails unless serialising it back keeps
/// every field of the original (the effect of `deny_unknown_fields`, which k8s-openapi lacks).
fn strict<T: DeserializeOwned + Serialize>(doc: &Doc) -> T {
    let typed: T = serde_json::from_value(doc.value.clone())
        .unwrap_or_else(|e| panic!("{}: not a valid {}: {e}", doc.at(), kind_of(doc)));
    let back = serde_json::to_value(&typed).expect("serialise");
    let mut lost = Vec::new();
    lost_fields(&doc.value, &back, "", &mut lost);
    assert!(
        lost.is_empty(),
        "{}: fields a {} does not have (misspelt or misplaced?):\n  {}",
        doc.at(),
        kind_of(doc),
        lost.join("\n  ")
    );
    typed
}

fn kind_of(doc: &Doc) -> &str {
    doc.kind().unwrap_or("document without a kind")
}

/// Keys a kustomization may use here (a subset of kustomize's, so typos fail).
const KUSTOMIZATION_KEYS: [&str; 8] = [
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "configurations",
    "images",
    "patches",
];

fn check_kustomization(doc: &Doc) {
    let v = &doc.value;
    assert_eq!(
        v["apiVersion"],
        "kustomize.config.k8s.io/v1beta1",
        "{}",
        doc.at()
    );
    let object = v.as_object().expect("a mapping");
    for key in object.keys() {
        assert!(
            KUSTOMIZATION_KEYS.contains(&key.as_str()),
            "{}: unexpected kustomization field {key}",
            doc.at()
        );
    }
    for image in v["images"].as_array().expect("images: is a list") {
        for key in image
            .as_object()
            .expect("an image entry is a mapping")
            .keys()
        {
            assert!(
                ["name", "newName", "newTag", "digest"].contains(&key.as_str()),
                "{}: unexpected images field {key}",
                doc.at()
            );
        }
    }
}

/// A kustomize transformer configuration (listed under `configurations:`), which has no kind.
fn check_transformer_config(doc: &Doc) {
    let object = doc.value.as_object().expect("a mapping");
    for (key, specs) in object {
        assert_eq!(
            key,
            "images",
            "{}: unexpected transformer config {key}",
            doc.at()
        );
        for spec in specs.as_array().expect("a list of field specs") {
            for field in spec.as_object().expect("a field spec").keys() {
                assert!(
                    ["group", "version", "kind", "path", "create"].contains(&field.as_str()),
                    "{}: unexpected field spec key {field}",
                    doc.at()
                );
            }
        }
    }
}

/// The first document of `kind` (optionally also `name`) outside the examples, typed strictly.
fn one<T: DeserializeOwned + Serialize>(docs: &[Doc], kind: &str, name: Option<&str>) -> T {
    let found: Vec<_> = docs
        .iter()
        .filter(|d| !d.is_example() && d.kind() == Some(kind))
        .filter(|d| name.is_none_or(|n| d.name() == Some(n)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind} {} in deploy/",
        name.unwrap_or("")
    );
    strict(found[0])
}

fn all<T: DeserializeOwned + Serialize>(docs: &[Doc], kind: &str) -> Vec<T> {
    docs.iter()
        .filter(|d| !d.is_example() && d.kind() == Some(kind))
        .map(strict)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn every_document_under_deploy_is_a_typed_object_without_unknown_fields() {
    let docs = documents();
    let kust = kustomization(&docs);
    let configurations = string_list(kust, "configurations");
    for doc in &docs {
        let api_version = doc.value.get("apiVersion").and_then(Value::as_str);
        match doc.kind() {
            Some("Namespace") => drop(strict::<Namespace>(doc)),
            Some("ServiceAccount") => drop(strict::<ServiceAccount>(doc)),
            Some("Secret") => drop(strict::<Secret>(doc)),
            Some("Service") => drop(strict::<Service>(doc)),
            Some("ClusterRole") => drop(strict::<ClusterRole>(doc)),
            Some("ClusterRoleBinding") => drop(strict::<ClusterRoleBinding>(doc)),
            Some("Role") => drop(strict::<Role>(doc)),
            Some("RoleBinding") => drop(strict::<RoleBinding>(doc)),
            Some("Deployment") => drop(strict::<Deployment>(doc)),
            Some("NetworkPolicy") => drop(strict::<NetworkPolicy>(doc)),
            Some("PodDisruptionBudget") => drop(strict::<PodDisruptionBudget>(doc)),
            Some("CustomResourceDefinition") => drop(strict::<CustomResourceDefinition>(doc)),
            Some("AnalyticsCrate") => {
                assert_eq!(api_version, Some("xlscsde.nhs.uk/v1"), "{}", doc.at());
                drop(strict::<AnalyticsCrate>(doc));
            }
            Some("Kustomization") => check_kustomization(doc),
            None if configurations.contains(&doc.file.as_str()) => check_transformer_config(doc),
            other => panic!("{}: no typed check for kind {other:?}; add one", doc.at()),
        }
    }
}

#[test]
fn every_file_in_deploy_except_the_examples_is_installed_by_the_kustomization() {
    let docs = documents();
    let kust = kustomization(&docs);
    let mut listed: BTreeSet<&str> = string_list(kust, "resources").into_iter().collect();
    listed.extend(string_list(kust, "configurations"));
    let present: BTreeSet<String> = files_under(&deploy_dir())
        .into_iter()
        .filter(|f| f != "kustomization.yaml" && !f.starts_with("examples/"))
        .filter(|f| !has_extension(f, &["md"]))
        .collect();
    let missing: Vec<_> = present
        .iter()
        .filter(|f| !listed.contains(f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "files in deploy/ that kustomization.yaml does not list: {missing:?}"
    );
    let dangling: Vec<_> = listed.iter().filter(|f| !present.contains(**f)).collect();
    assert!(
        dangling.is_empty(),
        "kustomization.yaml lists files that do not exist: {dangling:?}"
    );
    assert_eq!(kust["namespace"], NAMESPACE);
    let pairs = &kust["labels"][0]["pairs"];
    assert_eq!(pairs["app.kubernetes.io/name"], "crate-operator");
    assert_eq!(pairs["app.kubernetes.io/part-of"], "crate-operator");
}

#[test]
fn every_namespaced_object_names_the_operator_namespace() {
    let docs = documents();
    let cluster_scoped = [
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
    ];
    for doc in docs.iter().filter(|d| !d.is_example()) {
        let Some(kind) = doc.kind() else { continue };
        if kind == "Kustomization" {
            continue;
        }
        let namespace = doc.value.pointer("/metadata/namespace");
        if cluster_scoped.contains(&kind) {
            assert_eq!(namespace, None, "{}: {kind} is cluster-scoped", doc.at());
        } else {
            assert_eq!(
                namespace.and_then(Value::as_str),
                Some(NAMESPACE),
                "{}: {kind} belongs in {NAMESPACE}",
                doc.at()
            );
        }
    }
}

#[test]
fn the_namespace_enforces_pod_security_restricted() {
    let docs = documents();
    let ns: Namespace = one(&docs, "Namespace", Some(NAMESPACE));
    let labels = ns.metadata.labels.expect("labels");
    for mode in ["enforce", "audit", "warn"] {
        let key = format!("pod-security.kubernetes.io/{mode}");
        assert_eq!(
            labels.get(&key).map(String::as_str),
            Some("restricted"),
            "{key}"
        );
        assert_eq!(
            labels.get(&format!("{key}-version")).map(String::as_str),
            Some("latest"),
            "{key}-version"
        );
    }
}

/// Violations of the Pod Security Standards "restricted" profile (which includes "baseline"),
/// plus this project's own bar: read-only root filesystem and uid/gid 65532.
fn restricted_violations(pod: &PodSpec) -> Vec<String> {
    let mut v = Vec::new();
    for (what, set) in [
        ("hostNetwork", pod.host_network),
        ("hostPID", pod.host_pid),
        ("hostIPC", pod.host_ipc),
        ("hostUsers", pod.host_users.map(|b| !b)),
    ] {
        if set == Some(true) {
            v.push(format!("pod: {what} must not be set"));
        }
    }
    if pod.ephemeral_containers.is_some() {
        v.push("pod: ephemeral containers are not expected in a manifest".into());
    }
    let allowed_volumes = |vol: &k8s_openapi::api::core::v1::Volume| {
        vol.config_map.is_some()
            || vol.csi.is_some()
            || vol.downward_api.is_some()
            || vol.empty_dir.is_some()
            || vol.ephemeral.is_some()
            || vol.persistent_volume_claim.is_some()
            || vol.projected.is_some()
            || vol.secret.is_some()
    };
    for vol in pod.volumes.iter().flatten() {
        if !allowed_volumes(vol) {
            v.push(format!("volume {}: type not allowed", vol.name));
        }
    }
    let psc = pod.security_context.clone().unwrap_or_default();
    if psc.run_as_user == Some(0) {
        v.push("pod: runAsUser 0".into());
    }
    if psc
        .seccomp_profile
        .as_ref()
        .is_some_and(|s| s.type_ == "Unconfined")
    {
        v.push("pod: seccomp Unconfined".into());
    }
    if psc
        .app_armor_profile
        .as_ref()
        .is_some_and(|a| a.type_ == "Unconfined")
    {
        v.push("pod: AppArmor Unconfined".into());
    }
    if psc.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
        v.push("pod: sysctls".into());
    }
    let pod_non_root = psc.run_as_non_root == Some(true);
    let pod_seccomp = psc
        .seccomp_profile
        .as_ref()
        .is_some_and(|s| s.type_ == "RuntimeDefault" || s.type_ == "Localhost");
    for c in pod.init_containers.iter().flatten().chain(&pod.containers) {
        container_violations(c, pod_non_root, pod_seccomp, &mut v);
    }
    if psc.run_as_user != Some(65532) || psc.run_as_group != Some(65532) {
        v.push("pod: runAsUser and runAsGroup must be 65532".into());
    }
    v
}

fn container_violations(c: &Container, pod_non_root: bool, pod_seccomp: bool, v: &mut Vec<String>) {
    let n = &c.name;
    let sc: SecurityContext = c.security_context.clone().unwrap_or_default();
    if c.ports.iter().flatten().any(|p| p.host_port.is_some()) {
        v.push(format!("{n}: hostPort"));
    }
    if sc.privileged == Some(true) {
        v.push(format!("{n}: privileged"));
    }
    if sc.allow_privilege_escalation != Some(false) {
        v.push(format!("{n}: allowPrivilegeEscalation must be false"));
    }
    if !(sc.run_as_non_root == Some(true) || pod_non_root && sc.run_as_non_root.is_none()) {
        v.push(format!("{n}: runAsNonRoot must be true"));
    }
    if sc.run_as_user == Some(0) {
        v.push(format!("{n}: runAsUser 0"));
    }
    let seccomp = sc.seccomp_profile.as_ref().map(|s| s.type_.as_str());
    match seccomp {
        Some("RuntimeDefault" | "Localhost") => {}
        None if pod_seccomp => {}
        other => v.push(format!(
            "{n}: seccomp profile {other:?}, need RuntimeDefault"
        )),
    }
    if sc
        .app_armor_profile
        .as_ref()
        .is_some_and(|a| a.type_ == "Unconfined")
    {
        v.push(format!("{n}: AppArmor Unconfined"));
    }
    if sc.proc_mount.as_deref().is_some_and(|p| p != "Default") {
        v.push(format!("{n}: procMount"));
    }
    if sc
        .se_linux_options
        .as_ref()
        .is_some_and(|s| s.user.is_some() || s.role.is_some())
    {
        v.push(format!("{n}: SELinux user or role"));
    }
    let caps = sc.capabilities.clone().unwrap_or_default();
    if caps.drop.as_deref() != Some(&["ALL".to_owned()][..]) {
        v.push(format!("{n}: capabilities must drop [ALL]"));
    }
    if caps.add.iter().flatten().any(|a| a != "NET_BIND_SERVICE") {
        v.push(format!("{n}: capabilities added"));
    }
    if sc.read_only_root_filesystem != Some(true) {
        v.push(format!("{n}: readOnlyRootFilesystem must be true"));
    }
}

fn manager_deployment(docs: &[Doc]) -> Deployment {
    one(docs, "Deployment", Some("crate-operator"))
}

fn pod_spec(deployment: &Deployment) -> PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod template spec")
}

fn manager_container(deployment: &Deployment) -> Container {
    let pod = pod_spec(deployment);
    assert_eq!(pod.containers.len(), 1, "one container: the manager");
    pod.containers[0].clone()
}

#[test]
fn the_manager_pod_meets_pod_security_restricted() {
    let docs = documents();
    let deployment = manager_deployment(&docs);
    let pod = pod_spec(&deployment);
    let violations = restricted_violations(&pod);
    assert!(violations.is_empty(), "{}", violations.join("\n"));

    let container = manager_container(&deployment);
    let resources = container.resources.expect("resources");
    for (what, set) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        let set = set.clone().unwrap_or_default();
        for name in ["cpu", "memory", "ephemeral-storage"] {
            assert!(set.contains_key(name), "resources.{what}.{name} is missing");
        }
    }
}

#[test]
fn the_deployment_runs_two_spread_replicas_with_probes_on_the_metrics_port() {
    let docs = documents();
    let deployment = manager_deployment(&docs);
    let spec = deployment.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let strategy = spec.strategy.clone().expect("strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));

    let template_labels = spec
        .template
        .metadata
        .clone()
        .and_then(|m| m.labels)
        .unwrap_or_default();
    let selector = spec.selector.match_labels.clone().expect("matchLabels");
    assert!(
        selector
            .iter()
            .all(|(k, v)| template_labels.get(k) == Some(v)),
        "the selector {selector:?} must match the pod labels {template_labels:?}"
    );

    let pod = pod_spec(&deployment);
    assert_eq!(pod.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
    let grace = pod
        .termination_grace_period_seconds
        .expect("terminationGracePeriodSeconds");
    assert!(
        (10..=60).contains(&grace),
        "terminationGracePeriodSeconds {grace}"
    );
    let spread = pod.topology_spread_constraints.iter().flatten().any(|t| {
        t.topology_key == "kubernetes.io/hostname"
            && t.label_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                == Some(&selector)
    });
    let anti_affinity = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .is_some();
    assert!(
        spread || anti_affinity,
        "replicas are not spread over nodes"
    );

    let container = manager_container(&deployment);
    let ports: Vec<_> = container.ports.clone().unwrap_or_default();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].container_port, 8080);
    let port_name = ports[0].name.clone().expect("named port");
    for (probe, path) in [
        (&container.liveness_probe, "/livez"),
        (&container.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("an httpGet probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert!(
            get.port == IntOrString::Int(8080)
                || get.port == IntOrString::String(port_name.clone()),
            "{path} probe is not on 8080"
        );
    }
}

/// Images the kustomization sets: name → `name:tag` or `name@digest` as kustomize writes it.
fn kustomize_images(kust: &Value) -> BTreeMap<String, String> {
    kust["images"]
        .as_array()
        .expect("images:")
        .iter()
        .map(|image| {
            let name = image["name"].as_str().expect("image name").to_owned();
            let new_name = image["newName"].as_str().unwrap_or(&name).to_owned();
            let reference = match (image["digest"].as_str(), image["newTag"].as_str()) {
                (Some(digest), _) => format!("{new_name}@{digest}"),
                (None, Some(tag)) => format!("{new_name}:{tag}"),
                (None, None) => new_name,
            };
            (name, reference)
        })
        .collect()
}

#[test]
fn the_kustomization_sets_both_images_and_the_deployment_uses_them() {
    let docs = documents();
    let kust = kustomization(&docs);
    let images = kustomize_images(kust);
    assert_eq!(
        images.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([MANAGER_IMAGE, LOADER_IMAGE])
    );
    let container = manager_container(&manager_deployment(&docs));
    assert_eq!(
        container.image.as_deref(),
        Some(images[MANAGER_IMAGE].as_str())
    );
    let loader = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "CRATE_OPERATOR_LOADER_IMAGE")
        .and_then(|e| e.value.clone());
    assert_eq!(loader.as_deref(), Some(images[LOADER_IMAGE].as_str()));

    // The loader image is an env value, which kustomize leaves alone unless a transformer
    // configuration names that field; without it `kustomize edit set image` would miss it.
    let configurations = string_list(kust, "configurations");
    let rewrites_env = docs
        .iter()
        .filter(|d| configurations.contains(&d.file.as_str()))
        .flat_map(|d| d.value["images"].as_array().into_iter().flatten())
        .any(|spec| {
            spec["kind"] == "Deployment"
                && spec["path"] == "spec/template/spec/containers/env/value"
        });
    assert!(
        rewrites_env,
        "no images field spec for the Deployment's env values under configurations:"
    );
}

#[test]
fn the_deployment_passes_only_flags_and_variables_the_manager_accepts() {
    let docs = documents();
    let container = manager_container(&manager_deployment(&docs));
    assert!(
        container.command.is_none(),
        "the image's entrypoint is the manager"
    );
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(
        args.first().map(String::as_str),
        Some("run"),
        "the subcommand is run"
    );
    let mut flags = BTreeMap::new();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (arg.as_str(), None),
        };
        let (_, takes_value) = MANAGER_FLAGS
            .iter()
            .find(|(f, _)| *f == flag)
            .unwrap_or_else(|| panic!("crate-operator run has no flag {flag}"));
        let value = match (takes_value, inline) {
            (true, Some(v)) => v,
            (true, None) => rest
                .next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
                .clone(),
            (false, None) => String::new(),
            (false, Some(_)) => panic!("{flag} takes no value"),
        };
        assert!(
            flags.insert(flag.to_owned(), value).is_none(),
            "{flag} given twice"
        );
    }

    let env: BTreeMap<_, _> = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e))
        .collect();
    for name in env.keys() {
        assert!(
            MANAGER_ENV.contains(name),
            "the manager reads no variable {name}"
        );
    }
    assert!(
        env.contains_key("CRATE_OPERATOR_LOADER_IMAGE") || flags.contains_key("--loader-image"),
        "the loader image is required"
    );
    let log_format = flags.get("--log-format").cloned().or_else(|| {
        env.get("CRATE_OPERATOR_LOG_FORMAT")
            .and_then(|e| e.value.clone())
    });
    assert_eq!(log_format.as_deref(), Some("json"));
    for (name, field) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        let from = env
            .get(name)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|f| f.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(from, Some(field), "{name} comes from the downward API");
    }
    assert!(
        container.env_from.is_none(),
        "no envFrom: every variable is listed"
    );
}

/// Flags (`--name`) and environment variables (`[env: NAME=]`) that `crate-operator run --help`
/// documents.
fn run_help_words() -> (BTreeSet<String>, BTreeSet<String>) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crate-operator"))
        .args(["run", "--help"])
        .output()
        .expect("run crate-operator run --help");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let help = String::from_utf8(out.stdout).expect("utf-8");
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=';
    let words: Vec<&str> = help.split(|c: char| !is_word(c)).collect();
    let flags = words
        .iter()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches('=').to_owned())
        .collect();
    let vars = words
        .iter()
        .filter_map(|w| w.strip_suffix('='))
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect();
    (flags, vars)
}

#[test]
fn the_deployment_flags_and_variables_are_documented_by_crate_operator_run() {
    let (flags, vars) = run_help_words();
    for (flag, _) in MANAGER_FLAGS {
        assert!(
            flags.contains(flag),
            "crate-operator run --help lacks {flag}"
        );
    }
    for var in MANAGER_ENV {
        assert!(
            vars.contains(var),
            "crate-operator run --help lacks the variable {var}"
        );
    }
    let docs = documents();
    let container = manager_container(&manager_deployment(&docs));
    for arg in container.args.iter().flatten().skip(1) {
        if let Some(flag) = arg.split('=').next().filter(|a| a.starts_with("--")) {
            assert!(
                flags.contains(flag),
                "crate-operator run has no flag {flag}"
            );
        }
    }
    for env in container.env.iter().flatten() {
        assert!(
            vars.contains(&env.name),
            "crate-operator run reads no variable {}",
            env.name
        );
    }
}

/// One permission: (apiGroup, resource, verb, resourceName or "").
type Grant = (String, String, String, String);

fn grants(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rules {
        assert!(rule.non_resource_urls.is_none(), "no nonResourceURLs");
        let names = rule
            .resource_names
            .clone()
            .unwrap_or_else(|| vec![String::new()]);
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for name in &names {
                        out.insert((group.clone(), resource.clone(), verb.clone(), name.clone()));
                    }
                }
            }
        }
    }
    out
}

fn expected_grants(table: &[(&str, &[&str], &[&str])]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in table {
        for resource in *resources {
            for verb in *verbs {
                out.insert((
                    (*group).to_owned(),
                    (*resource).to_owned(),
                    (*verb).to_owned(),
                    String::new(),
                ));
            }
        }
    }
    out
}

fn describe(set: &BTreeSet<Grant>) -> String {
    let mut s = String::new();
    for (group, resource, verb, name) in set {
        let _ = write!(s, "\n  {verb} {resource}.{group}");
        if !name.is_empty() {
            let _ = write!(s, " named {name}");
        }
    }
    s
}

#[test]
fn the_cluster_role_grants_exactly_the_least_privilege_the_manager_needs() {
    let docs = documents();
    let cluster_roles: Vec<ClusterRole> = all(&docs, "ClusterRole");
    assert_eq!(cluster_roles.len(), 1, "one ClusterRole");
    let role = &cluster_roles[0];
    assert!(role.aggregation_rule.is_none(), "no aggregation");
    let rules = role.rules.clone().unwrap_or_default();
    for rule in &rules {
        let fields = [
            rule.api_groups.clone().unwrap_or_default(),
            rule.resources.clone().unwrap_or_default(),
            rule.verbs.clone(),
        ];
        assert!(
            !fields.iter().flatten().any(|s| s.contains('*')),
            "wildcard in {rule:?}"
        );
    }
    let granted = grants(&rules);
    for (_, resource, verb, _) in &granted {
        assert_ne!(resource, "secrets", "the manager never reads Secrets");
        assert!(
            ![
                "pods/log",
                "pods/exec",
                "pods/attach",
                "pods/portforward",
                "leases"
            ]
            .contains(&resource.as_str()),
            "the ClusterRole must not grant {resource}"
        );
        assert!(
            !["escalate", "bind", "impersonate"].contains(&verb.as_str()),
            "no {verb}"
        );
    }
    let rwc: &[&str] = &["get", "create", "patch"];
    // The loader's namespace objects are also watched, to repair drift.
    let rwcw: &[&str] = &["get", "list", "watch", "create", "patch"];
    let expected = expected_grants(&[
        (
            "xlscsde.nhs.uk",
            &["analyticscrates"],
            &["get", "list", "watch"],
        ),
        ("xlscsde.nhs.uk", &["analyticscrates/status"], &["patch"]),
        (
            "xlscsde.nhs.uk",
            &["analyticscrates/finalizers"],
            &["update"],
        ),
        ("xlscsde.nhs.uk", &["analyticsdatasources"], rwc),
        (
            "batch",
            &["jobs"],
            &["get", "list", "watch", "create", "delete"],
        ),
        ("", &["pods"], &["get", "list", "watch"]),
        ("", &["resourcequotas"], &["list", "watch"]),
        (
            "",
            &["events"],
            &["get", "list", "watch", "create", "patch"],
        ),
        ("events.k8s.io", &["events"], &["create", "patch"]),
        ("", &["serviceaccounts"], rwcw),
        (
            "rbac.authorization.k8s.io",
            &["roles", "rolebindings"],
            rwcw,
        ),
        ("networking.k8s.io", &["networkpolicies"], rwcw),
    ]);
    let extra: BTreeSet<_> = granted.difference(&expected).cloned().collect();
    let missing: BTreeSet<_> = expected.difference(&granted).cloned().collect();
    assert!(
        extra.is_empty(),
        "the ClusterRole grants more than needed:{}",
        describe(&extra)
    );
    assert!(
        missing.is_empty(),
        "the ClusterRole lacks:{}",
        describe(&missing)
    );

    let binding: ClusterRoleBinding = one(&docs, "ClusterRoleBinding", None);
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    assert_binds_the_manager(binding.subjects.as_deref());
}

fn assert_binds_the_manager(subjects: Option<&[k8s_openapi::api::rbac::v1::Subject]>) {
    let subjects = subjects.expect("subjects");
    assert_eq!(subjects.len(), 1, "bound to the manager only");
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, SERVICE_ACCOUNT);
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
}

#[test]
fn the_lease_role_is_namespaced_and_covers_only_the_managers_lease() {
    let docs = documents();
    let roles: Vec<Role> = all(&docs, "Role");
    assert_eq!(roles.len(), 1, "one Role: leader election");
    let role = &roles[0];
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
    let granted = grants(role.rules.as_deref().unwrap_or_default());
    let verbs: BTreeSet<_> = granted.iter().map(|(_, _, v, _)| v.as_str()).collect();
    assert_eq!(verbs, BTreeSet::from(["create", "get", "patch", "update"]));
    for (group, resource, verb, name) in &granted {
        assert_eq!(
            (group.as_str(), resource.as_str()),
            ("coordination.k8s.io", "leases")
        );
        // create cannot be restricted by name; everything else is.
        if verb != "create" {
            assert_eq!(
                name, LEASE_NAME,
                "{verb} leases is limited to the manager's lease"
            );
        }
    }
    let binding: RoleBinding = one(&docs, "RoleBinding", None);
    assert_eq!(binding.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    assert_binds_the_manager(binding.subjects.as_deref());

    let account: ServiceAccount = one(&docs, "ServiceAccount", Some(SERVICE_ACCOUNT));
    assert_eq!(account.metadata.namespace.as_deref(), Some(NAMESPACE));
}

fn port_list(ports: Option<&[NetworkPolicyPort]>) -> BTreeSet<(String, i32)> {
    ports
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let port = match p.port.clone().expect("a port number") {
                IntOrString::Int(n) => n,
                IntOrString::String(s) => panic!("use port numbers, not {s}"),
            };
            (p.protocol.clone().unwrap_or_else(|| "TCP".into()), port)
        })
        .collect()
}

#[test]
fn the_network_policy_admits_only_the_metrics_port_and_reaches_only_dns_and_the_api_server() {
    let docs = documents();
    let deployment = manager_deployment(&docs);
    let selector = deployment.spec.clone().expect("spec").selector.match_labels;
    let policy: NetworkPolicy = one(&docs, "NetworkPolicy", None);
    let spec = policy.spec.expect("spec");
    assert_eq!(spec.pod_selector.and_then(|s| s.match_labels), selector);
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_owned(), "Egress".to_owned()][..])
    );
    let ingress = spec.ingress.unwrap_or_default();
    assert!(!ingress.is_empty());
    for rule in &ingress {
        assert_eq!(
            port_list(rule.ports.as_deref()),
            BTreeSet::from([("TCP".into(), 8080)])
        );
    }
    let egress: BTreeSet<_> = spec
        .egress
        .unwrap_or_default()
        .iter()
        .flat_map(|rule| {
            let ports = port_list(rule.ports.as_deref());
            assert!(
                !ports.is_empty(),
                "an egress rule without ports allows everything"
            );
            ports
        })
        .collect();
    let expected = BTreeSet::from([
        ("UDP".into(), 53),
        ("TCP".into(), 53),
        ("TCP".into(), 443),
        ("TCP".into(), 6443),
    ]);
    assert_eq!(egress, expected);
}

#[test]
fn the_metrics_service_and_the_disruption_budget_select_the_manager_pods() {
    let docs = documents();
    let deployment = manager_deployment(&docs);
    let selector = deployment
        .spec
        .clone()
        .expect("spec")
        .selector
        .match_labels
        .expect("labels");

    let service: Service = one(&docs, "Service", None);
    let spec = service.spec.expect("spec");
    assert_eq!(spec.selector.as_ref(), Some(&selector));
    let ports = spec.ports.expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("http-metrics"));
    assert_eq!(ports[0].port, 8080);

    let pdb: PodDisruptionBudget = one(&docs, "PodDisruptionBudget", None);
    let spec = pdb.spec.expect("spec");
    assert_eq!(spec.selector.and_then(|s| s.match_labels), Some(selector));
    let one_pod = Some(IntOrString::Int(1));
    assert!(
        spec.max_unavailable == one_pod || spec.min_available == one_pod,
        "maxUnavailable 1 or minAvailable 1 for two replicas"
    );
}

#[test]
fn the_examples_cover_a_public_a_token_and_an_ssh_repository() {
    let docs = documents();
    let examples: Vec<_> = docs.iter().filter(|d| d.is_example()).collect();
    let crates: Vec<(String, AnalyticsCrate)> = examples
        .iter()
        .filter(|d| d.kind() == Some("AnalyticsCrate"))
        .map(|d| (d.file.clone(), strict(d)))
        .collect();
    let secrets: Vec<Secret> = examples
        .iter()
        .filter(|d| d.kind() == Some("Secret"))
        .map(|d| strict(d))
        .collect();
    let secret_keys = |name: &str| -> BTreeSet<String> {
        let secret = secrets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("the examples have no Secret {name}"));
        assert!(
            secret.data.is_none(),
            "examples use stringData placeholders"
        );
        secret
            .string_data
            .clone()
            .unwrap_or_default()
            .into_keys()
            .collect()
    };
    let (mut public, mut token, mut ssh) = (false, false, false);
    for (file, c) in &crates {
        assert_eq!(c.spec.path, "/bagit/data/ro-crate-metadata.json", "{file}");
        assert!(
            c.metadata.namespace.is_none(),
            "{file}: examples go into the reader's namespace"
        );
        let repo = &c.spec.repo;
        match &repo.secret_name {
            None => public |= repo.url.starts_with("https://"),
            Some(name) if repo.url.starts_with("https://") => {
                assert!(secret_keys(name).contains(&repo.secret_key), "{file}");
                token = true;
            }
            Some(name) => {
                assert_eq!(repo.secret_key, "identity", "{file}");
                let keys = secret_keys(name);
                assert!(
                    keys.contains("identity") && keys.contains("known_hosts"),
                    "{file}"
                );
                ssh = true;
            }
        }
    }
    assert!(
        public && token && ssh,
        "public {public}, token {token}, ssh {ssh}"
    );
}
