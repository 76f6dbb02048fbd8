//! The node suite's cluster: the control plane, a real node, the images built by
//! `images/build-oci.py` imported into it, and the operator installed with `helm install` of
//! the chart as Pods on it. Shared by every test of this binary and started on first
//! use; everything stops, and the host is put back, when the test process exits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate_test_cluster::node::Node;
use crate_test_cluster::operator::{INSTALL_NAMESPACE, kubectl_ok, kubectl_with_input, repo_root};
use crate_test_cluster::{ControlPlane, Options, helm};

/// How long a test waits for a condition. Loader Pods start in seconds; CI machines are busy.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The image tag the suite builds and imports.
pub const TAG: &str = "node-e2e";

/// The images as the node knows them.
pub fn image(name: &str) -> String {
    format!("localhost/{name}:{TAG}")
}

pub struct Cluster {
    pub plane: &'static ControlPlane,
    pub node: Node,
}

/// The shared cluster; panics (failing the test) when it cannot start.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER
        .get_or_init(|| start().unwrap_or_else(|e| panic!("the node cluster failed to start: {e}")))
}

fn start() -> std::io::Result<Cluster> {
    let plane = ControlPlane::shared_with(&Options {
        workloads: true,
        ..Options::default()
    })?;
    let dir = plane.dir().join("node-suite");
    std::fs::create_dir_all(&dir)?;
    let images = build_images(&dir.join("images"))?;
    let node = Node::start(plane)?;
    for archive in &images {
        node.import(archive)?;
    }
    install(plane)?;
    Ok(Cluster { plane, node })
}

/// `images/build-oci.py`: the manager, loader and runner images from the release binaries.
fn build_images(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let status = Command::new("python3")
        .arg(repo_root().join("images/build-oci.py"))
        .arg(out)
        .args(["--registry", "localhost", "--tag", TAG])
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "images/build-oci.py failed ({status})"
        )));
    }
    Ok(["crate-operator", "crate-loader", "crate-runner"]
        .iter()
        .map(|name| out.join(format!("{name}.tar")))
        .collect())
}

/// The README's first install, `helm upgrade --install` of the chart into a namespace made beforehand,
/// with values pointing it at the imported images and the test's git servers (plain `git://` on
/// the node's bridge), and short loader time limits so a stalled load ends within a test's
/// patience.
fn install(plane: &ControlPlane) -> std::io::Result<()> {
    kubectl_with_input(
        plane.kubectl().args(["apply", "-f", "-"]),
        Some(&format!(
            "apiVersion: v1
kind: Namespace
metadata:
  name: {INSTALL_NAMESPACE}
  labels:
    pod-security.kubernetes.io/enforce: restricted
"
        )),
    )?;
    let mut command = helm::on(plane)?;
    command
        // upgrade --install, as the README has it: a second start after a failed one (each test
        // tries again) finds the release in place instead of failing on its name.
        .args(["upgrade", "--install", "crate-operator"])
        .arg(helm::chart_dir())
        .args(["--namespace", INSTALL_NAMESPACE]);
    for set in [
        "image.repository=localhost/crate-operator".to_owned(),
        format!("image.tag={TAG}"),
        "loader.image.repository=localhost/crate-loader".to_owned(),
        format!("loader.image.tag={TAG}"),
        "loader.image.pullPolicy=Never".to_owned(),
        format!("loader.runnerImage={}", image("crate-runner")),
        "loader.allowInsecureTransport=true".to_owned(),
        "loader.timeout=45s".to_owned(),
        "loader.deadline=60s".to_owned(),
        "leaderElection.leaseDuration=10s".to_owned(),
    ] {
        command.args(["--set", &set]);
    }
    kubectl_ok(&mut command)?;
    let rolled_out = kubectl_ok(plane.kubectl().args([
        "rollout",
        "status",
        "deployment/crate-operator",
        "--namespace",
        INSTALL_NAMESPACE,
        "--timeout=180s",
    ]));
    if let Err(e) = rolled_out {
        let said = |args: &[&str]| {
            plane
                .kubectl()
                .args(args)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout).into_owned()
                        + &String::from_utf8_lossy(&o.stderr)
                })
                .unwrap_or_default()
        };
        return Err(std::io::Error::other(format!(
            "{e}\n{}\n{}\n{}",
            said(&["get", "pods", "-A", "-o", "wide"]),
            said(&["describe", "pods", "-n", INSTALL_NAMESPACE]),
            said(&[
                "logs",
                "-n",
                INSTALL_NAMESPACE,
                "-l",
                "app.kubernetes.io/component=manager",
                "--tail=-1",
                "--prefix"
            ])
            .lines()
            .filter(|l| !l.contains("leases/crate-operator"))
            .collect::<Vec<_>>()
            .join("\n"),
        )));
    }
    Ok(())
}

/// A fresh namespace for one test, enforcing Pod Security "restricted". Deleted when dropped.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub fn new(test: &str) -> TestNamespace {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("node-{test}-{n}").replace('_', "-");
        apply(&format!(
            "apiVersion: v1
kind: Namespace
metadata:
  name: {name}
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
"
        ));
        TestNamespace { name }
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

/// `kubectl apply --server-side -f -`.
pub fn apply(manifest: &str) {
    let mut command = cluster().plane.kubectl();
    command.args(["apply", "--server-side", "-f", "-"]);
    kubectl_with_input(&mut command, Some(manifest)).expect("kubectl apply");
}

/// An admin client on the calling test's runtime.
pub async fn admin() -> kube::Client {
    cluster().plane.admin_client().await.expect("admin client")
}
