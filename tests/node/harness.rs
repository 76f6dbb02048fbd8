//! The node suite's cluster: the control plane, a real node, the images built by
//! `images/build-oci.py` imported into it, and the operator installed with
//! `kubectl apply -k` as Pods on it. Shared by every test of this binary and started on first
//! use; everything stops, and the host is put back, when the test process exits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate_test_cluster::node::Node;
use crate_test_cluster::operator::{INSTALL_NAMESPACE, kubectl_ok, kubectl_with_input, repo_root};
use crate_test_cluster::{ControlPlane, Options};

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
    install(plane, &dir)?;
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

/// The README's install, `kubectl apply -k`, through an overlay that points it at the imported
/// images and the test's git servers (plain `git://` on the node's bridge), with short loader
/// time limits so a stalled load ends within a test's patience.
fn install(plane: &ControlPlane, dir: &Path) -> std::io::Result<()> {
    let overlay = dir.join("install");
    std::fs::create_dir_all(&overlay)?;
    let deploy = repo_root().join("deploy").canonicalize()?;
    // Kustomize takes a base only by a relative path, and files only from below the overlay.
    let up = "../".repeat(overlay.canonicalize()?.components().count() - 1);
    let base = format!(
        "{up}{}",
        deploy.display().to_string().trim_start_matches('/')
    );
    std::fs::copy(
        deploy.join("kustomizeconfig/images.yaml"),
        overlay.join("images.yaml"),
    )?;
    let arg = |value: &str| {
        format!(
            "      - op: add\n        path: /spec/template/spec/containers/0/args/-\n        value: {value}\n"
        )
    };
    let patch: String = [
        "--allow-insecure-transport".to_owned(),
        format!("--runner-image={}", image("crate-runner")),
        "--loader-image-pull-policy=Never".to_owned(),
        "--loader-timeout=45s".to_owned(),
        "--loader-deadline=60s".to_owned(),
        "--lease-duration=10s".to_owned(),
    ]
    .iter()
    .map(|a| arg(a))
    .collect();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {base}
configurations:
  - images.yaml
images:
  - name: ghcr.io/lsc-sde/crate-operator
    newName: localhost/crate-operator
    newTag: {TAG}
  - name: ghcr.io/lsc-sde/crate-loader
    newName: localhost/crate-loader
    newTag: {TAG}
patches:
  - target: {{kind: Deployment, name: crate-operator}}
    patch: |-
{patch}",
        ),
    )?;
    kubectl_ok(plane.kubectl().args(["apply", "-k"]).arg(&overlay))?;
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
