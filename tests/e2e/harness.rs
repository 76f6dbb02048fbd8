//! What every end-to-end test stands on: one real control plane per test binary with the install
//! applied exactly as an administrator would (`kubectl apply -k deploy/`), one kubelet stand-in
//! running loader Pods, and per test a fresh namespace that enforces Pod Security "restricted"
//! and its own manager processes, authenticated as the install's ServiceAccount so they run with
//! exactly the ClusterRole in `deploy/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate_operator_api::{AnalyticsCrate, AnalyticsCrateSpec, RepoSpec};
use crate_test_cluster::{ControlPlane, Guarded, Kubelet, KubeletConfig, log_tail};
use kube::api::{Api, ObjectMeta};
use kube::runtime::wait::{Condition, await_condition};

/// How long a test waits for something the system should do in a second or two. Generous for a
/// loaded two-core CI machine; a passing test never waits for it.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// Namespace of the install (`deploy/namespace.yaml`).
pub const INSTALL_NAMESPACE: &str = "crate-operator";
/// The image name managers are given; the kubelet stand-in runs the built loader for any image.
pub const LOADER_IMAGE: &str = "registry.invalid/crate-loader:e2e";

/// The shared cluster: control plane, install and kubelet.
pub struct Cluster {
    pub plane: &'static ControlPlane,
    pub kubelet: Kubelet,
    /// What `kubectl apply -k deploy/` printed on stderr (warnings, e.g. from Pod Security).
    pub install_warnings: String,
    /// A kubeconfig holding a token of the install's `crate-operator` ServiceAccount.
    manager_kubeconfig: PathBuf,
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
    let plane = ControlPlane::shared()?;
    let dir = plane.dir().join("e2e");
    std::fs::create_dir_all(&dir)?;

    let install = kubectl_ok(
        plane
            .kubectl()
            .args(["apply", "--server-side", "-k"])
            .arg(repo_root().join("deploy")),
    )?;
    kubectl_ok(plane.kubectl().args([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/analyticscrates.xlscsde.nhs.uk",
        "crd/analyticsdatasources.xlscsde.nhs.uk",
    ]))?;

    let token = kubectl_ok(plane.kubectl().args([
        "create",
        "token",
        "crate-operator",
        "--namespace",
        INSTALL_NAMESPACE,
        "--duration=4h",
    ]))?;
    let manager_kubeconfig = dir.join("manager.kubeconfig");
    std::fs::write(
        &manager_kubeconfig,
        token_kubeconfig(
            plane.server_url(),
            plane.ca_pem(),
            token.stdout.trim(),
            &dir,
        )?,
    )?;

    let client = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(plane.admin_config())
        })
        .join()
        .map_err(|_| std::io::Error::other("admin config thread panicked"))?
    })?;
    let kubelet = Kubelet::start(KubeletConfig {
        client,
        server_url: plane.server_url().to_owned(),
        ca_pem: plane.ca_pem().to_owned(),
        loader_binary: loader_binary()?,
        selector: "app.kubernetes.io/name=crate-loader".to_owned(),
        max_parallel: 8,
    })?;

    Ok(Cluster {
        plane,
        kubelet,
        install_warnings: install.stderr,
        manager_kubeconfig,
        dir,
    })
}

/// Output of a successful kubectl run.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Runs a kubectl command, failing with its stderr unless it succeeds.
pub fn kubectl_ok(command: &mut Command) -> std::io::Result<Output> {
    kubectl_with_input(command, None)
}

/// Runs a kubectl command with `input` on its stdin (when given), failing with its stderr unless
/// it succeeds.
fn kubectl_with_input(command: &mut Command, input: Option<&str>) -> std::io::Result<Output> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(Output { stdout, stderr })
    } else {
        Err(std::io::Error::other(format!(
            "{command:?} failed ({}):\n{stderr}{stdout}",
            output.status
        )))
    }
}

fn token_kubeconfig(
    server: &str,
    ca_pem: &str,
    token: &str,
    dir: &Path,
) -> std::io::Result<String> {
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, ca_pem)?;
    Ok(format!(
        "apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {{server: '{server}', certificate-authority: '{ca}'}}
users:
- name: crate-operator
  user: {{token: '{token}'}}
contexts:
- name: e2e
  context: {{cluster: e2e, user: crate-operator}}
current-context: e2e
",
        ca = ca.display()
    ))
}

/// The `crate-loader` built beside the manager. `cargo test --workspace` builds it (the loader's
/// own integration tests need it); a binary older than the loader's sources would test stale
/// code, so that is refused rather than trusted.
fn loader_binary() -> std::io::Result<PathBuf> {
    let manager = Path::new(env!("CARGO_BIN_EXE_crate-operator"));
    let loader = manager.with_file_name("crate-loader");
    let built = std::fs::metadata(&loader)
        .and_then(|m| m.modified())
        .map_err(|e| {
            std::io::Error::other(format!(
                "{} is missing ({e}): run the end-to-end tests with `cargo test --workspace`, \
                 or `cargo build -p crate-loader` first",
                loader.display()
            ))
        })?;
    let newest_source = newest_mtime(&repo_root().join("loader/src"))?
        .max(newest_mtime(&repo_root().join("api/src"))?);
    if newest_source > built {
        return Err(std::io::Error::other(format!(
            "{} is older than the loader's sources: run `cargo test --workspace` or \
             `cargo build -p crate-loader` so the end-to-end tests run the current loader",
            loader.display()
        )));
    }
    Ok(loader)
}

fn newest_mtime(dir: &Path) -> std::io::Result<SystemTime> {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let modified = if entry.file_type()?.is_dir() {
            newest_mtime(&entry.path())?
        } else {
            entry.metadata()?.modified()?
        };
        newest = newest.max(modified);
    }
    Ok(newest)
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
        let role = std::fs::read_to_string(repo_root().join("deploy/leader-election-role.yaml"))
            .expect("deploy/leader-election-role.yaml")
            .replace(
                &format!("  namespace: {INSTALL_NAMESPACE}\nrules"),
                &format!("  namespace: {name}\nrules"),
            )
            .replace(
                &format!("  namespace: {INSTALL_NAMESPACE}\nroleRef"),
                &format!("  namespace: {name}\nroleRef"),
            );
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
        Manager::start(&self.name, identity)
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

/// A `crate-operator run` process, as the install's ServiceAccount. Stopped (SIGTERM) on drop.
pub struct Manager {
    process: Option<Guarded>,
    pub identity: String,
}

impl Manager {
    fn start(namespace: &str, identity: &str) -> Manager {
        let cluster = cluster();
        let log = cluster
            .dir
            .join(format!("manager-{namespace}-{identity}.log"));
        let kubeconfig = cluster.manager_kubeconfig.display().to_string();
        let process = Guarded::spawn(
            &format!("manager {identity} ({namespace})"),
            Path::new(env!("CARGO_BIN_EXE_crate-operator")),
            &[
                "run".to_owned(),
                format!("--watch-namespace={namespace}"),
                format!("--loader-image={LOADER_IMAGE}"),
                "--allow-insecure-transport".to_owned(),
                "--listen-addr=127.0.0.1:0".to_owned(),
                "--lease-duration=4s".to_owned(),
                "--log-format=json".to_owned(),
            ],
            &[
                ("KUBECONFIG", kubeconfig.as_str()),
                ("POD_NAMESPACE", namespace),
                ("POD_NAME", identity),
                ("CRATE_OPERATOR_LOG", "info,crate_operator=debug"),
            ],
            &log,
            None,
        )
        .expect("manager starts");
        Manager {
            process: Some(process),
            identity: identity.to_owned(),
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(|p| std::fs::read_to_string(p.log()).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process
            .as_ref()
            .map(|p| log_tail(p.log(), 30))
            .unwrap_or_default()
    }

    /// Stops it with SIGTERM, as Kubernetes stops a Pod, and waits for it to exit.
    pub fn stop(mut self) {
        if let Some(process) = self.process.take() {
            process.stop();
        }
    }
}

/// An admin client on the calling test's runtime.
pub async fn admin() -> kube::Client {
    cluster().plane.admin_client().await.expect("admin client")
}

/// An AnalyticsCrate named `name` loading `path` from `url` on `main`.
pub fn analytics_crate(name: &str, url: &str, path: &str) -> AnalyticsCrate {
    AnalyticsCrate {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: AnalyticsCrateSpec {
            display_name: None,
            description: None,
            path: path.to_owned(),
            repo: RepoSpec {
                url: url.to_owned(),
                branch: "main".to_owned(),
                secret_name: None,
                secret_key: "TOKEN".to_owned(),
            },
            suspend: None,
            interval: None,
        },
        status: None,
    }
}

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

/// `kubectl create --dry-run=server -f -`: full admission, nothing stored.
pub fn create_dry_run(manifest: &str, namespace: &str) -> std::io::Result<Output> {
    let mut command = cluster().plane.kubectl();
    command.args(["create", "--dry-run=server", "-n", namespace, "-f", "-"]);
    kubectl_with_input(&mut command, Some(manifest))
}
