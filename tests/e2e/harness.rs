//! What every end-to-end test stands on: one real control plane per test binary with the install
//! applied exactly as an administrator would (`kubectl apply -k deploy/`), one kubelet stand-in
//! running loader Pods, and per test a fresh namespace that enforces Pod Security "restricted"
//! and its own manager processes, authenticated as the install's ServiceAccount so they run with
//! exactly the ClusterRole in `deploy/`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate_test_cluster::operator::MANAGER_USER;
pub use crate_test_cluster::operator::{INSTALL_NAMESPACE, Manager, Output, kubectl_ok};
use crate_test_cluster::operator::{Install, ManagerSpec, kubectl_with_input, loader_kubelet};
use crate_test_cluster::{ControlPlane, Kubelet, Options, audit, free_port};
use kube::api::Api;
use kube::runtime::wait::{Condition, await_condition};

/// How long a test waits for something the system should do in a second or two. Generous for a
/// loaded two-core CI machine; a passing test never waits for it.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The image name managers are given; the kubelet stand-in runs the built loader for any image.
pub const LOADER_IMAGE: &str = "registry.invalid/crate-loader:e2e";

/// The shared cluster: control plane, install and kubelet.
pub struct Cluster {
    pub plane: &'static ControlPlane,
    pub kubelet: Kubelet,
    pub install: Install,
    dir: PathBuf,
}

/// The cluster, set up on first use. Panics (failing the calling test) with what went wrong.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(|| set_up().map_err(|e| e.to_string())) {
        Ok(cluster) => cluster,
        Err(e) => panic!("end-to-end cluster set-up failed: {e}"),
    }
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn set_up() -> std::io::Result<Cluster> {
    // The managers' requests are audited, so a test can tell what each replica wrote.
    let plane = ControlPlane::shared_with(&Options {
        audit_policy: Some(audit::policy_for_user(MANAGER_USER)),
        ..Options::default()
    })?;
    let dir = plane.dir().join("e2e");
    let install = Install::apply(plane, &dir)?;
    // The debug loader beside the manager: `cargo test --workspace` builds it (the loader's own
    // integration tests need it).
    let loader = crate_test_cluster::operator::loader_binary(
        &Path::new(env!("CARGO_BIN_EXE_crate-operator")).with_file_name("crate-loader"),
        "cargo build -p crate-loader",
    )?;
    let kubelet = loader_kubelet(plane, loader, 8)?;
    Ok(Cluster {
        plane,
        kubelet,
        install,
        dir,
    })
}

/// A fresh namespace for one test, enforcing Pod Security "restricted", with the install's
/// leader-election Role bound to the manager there (so each test's managers elect among
/// themselves). Deleted, with everything in it, when dropped.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub fn new(test: &str) -> TestNamespace {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("e2e-{test}-{n}").replace('_', "-");
        // The install's Role and RoleBinding, moved to this namespace (the binding's subject,
        // the install's ServiceAccount, stays where it is).
        let install_role =
            std::fs::read_to_string(repo_root().join("deploy/leader-election-role.yaml"))
                .expect("deploy/leader-election-role.yaml");
        let role = serde_yaml::Deserializer::from_str(&install_role)
            .map(|doc| {
                let mut doc: serde_json::Value =
                    serde::Deserialize::deserialize(doc).expect("leader-election-role.yaml");
                doc["metadata"]["namespace"] = name.clone().into();
                serde_json::to_string(&doc).expect("JSON")
            })
            .collect::<Vec<_>>()
            .join("\n---\n");
        let manifest = format!(
            "apiVersion: v1
kind: Namespace
metadata:
  name: {name}
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
---
{role}"
        );
        apply_stdin(&manifest).expect("test namespace");
        TestNamespace { name }
    }

    /// A manager watching this namespace only, electing a leader with the others of this test.
    pub fn manager(&self, identity: &str) -> Manager {
        start_manager(&self.name, identity)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = cluster()
            .plane
            .kubectl()
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .output();
    }
}

/// `kubectl apply --server-side -f -` with `manifest` on stdin.
pub fn apply_stdin(manifest: &str) -> std::io::Result<Output> {
    let mut command = cluster().plane.kubectl();
    command.args(["apply", "--server-side", "-f", "-"]);
    kubectl_with_input(&mut command, Some(manifest))
}

/// A manager watching `namespace` only and electing its leader there.
fn start_manager(namespace: &str, identity: &str) -> Manager {
    let cluster = cluster();
    let log = cluster
        .dir
        .join(format!("manager-{namespace}-{identity}.log"));
    let spec = ManagerSpec {
        watch_namespace: Some(namespace.to_owned()),
        lease_namespace: namespace.to_owned(),
        loader_image: LOADER_IMAGE.to_owned(),
        // Shorter than the default 15 s, for quick takeovers, but long enough that a manager
        // does not lose its Lease when the shared 2-core CI machine is busy.
        args: vec!["--lease-duration=8s".to_owned()],
        log_filter: "info,crate_operator=debug".to_owned(),
        // A known port, so a test can read its metrics.
        listen_addr: std::net::SocketAddr::from(([127, 0, 0, 1], free_port().expect("a port"))),
        ..ManagerSpec::new(
            Path::new(env!("CARGO_BIN_EXE_crate-operator")),
            &cluster.install,
            identity,
            &log,
        )
    };
    Manager::start(spec).expect("manager starts")
}

/// An admin client on the calling test's runtime.
pub async fn admin() -> kube::Client {
    cluster().plane.admin_client().await.expect("admin client")
}

pub use crate_test_cluster::operator::analytics_crate;

/// Waits until the object `name` satisfies `condition`; on time-out, fails with what it looked
/// like last and `context` (e.g. the manager's log).
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    condition: impl Condition<K>,
    context: impl Fn() -> String,
) -> K
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Send
        + 'static,
{
    match tokio::time::timeout(PATIENCE, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(Some(object))) => object,
        Ok(Ok(None)) => panic!("{name} was deleted while waiting for {what}\n{}", context()),
        Ok(Err(e)) => panic!("watching {name} failed while waiting for {what}: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            panic!(
                "{name} did not reach {what} within {PATIENCE:?}; it is now:\n{}\n{}",
                serde_yaml::to_string(&last).unwrap_or_default(),
                context()
            )
        }
    }
}

/// Waits until `name` no longer exists.
pub async fn wait_for_deletion<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let gone = await_condition(api.clone(), name, |object: Option<&K>| object.is_none());
    match tokio::time::timeout(PATIENCE, gone).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("watching {name} failed while waiting for its deletion: {e}"),
        Err(tokio::time::error::Elapsed { .. }) => {
            panic!("{name} still exists after {PATIENCE:?}")
        }
    }
}

/// `jsonpath` of the install's manager Deployment on `plane`, as kubectl prints it.
pub fn manager_deployment(plane: &ControlPlane, jsonpath: &str) -> String {
    kubectl_ok(plane.kubectl().args([
        "get",
        "deployment",
        "crate-operator",
        "-n",
        INSTALL_NAMESPACE,
        "-o",
        &format!("jsonpath={jsonpath}"),
    ]))
    .expect("the manager's Deployment")
    .stdout
}

/// `kubectl create --dry-run=server -f -`: full admission, nothing stored.
pub fn create_dry_run(manifest: &str, namespace: &str) -> std::io::Result<Output> {
    let mut command = cluster().plane.kubectl();
    command.args(["create", "--dry-run=server", "-n", namespace, "-f", "-"]);
    kubectl_with_input(&mut command, Some(manifest))
}
