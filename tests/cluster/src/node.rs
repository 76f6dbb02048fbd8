//! A real node beside the control plane: containerd, runc and the CNI bridge plugin from
//! Debian, and the official kubelet and kube-scheduler of the pinned Kubernetes release, so that
//! loader Pods run as containers under their real securityContext, limits and volumes.
//!
//! It runs as root and touches the host as little as it can, and puts back what it touches:
//! - everything lives under one run directory (containerd's root and state, the kubelet's root,
//!   the CNI configuration and address store, logs);
//! - containerd and the kubelet run in a private mount namespace ([`namespace`]) where `/run`,
//!   `/var/lib` and `/var/log` are empty tmpfs (paths both write regardless of their
//!   configuration) and the three sysctls the kubelet would set (`kernel.panic`,
//!   `kernel.panic_on_oops`, `vm.overcommit_memory`) are files of the run directory;
//! - the kubelet's cgroups live under one cgroup root, [`CGROUP_ROOT`], and it makes no iptables
//!   chains (`makeIPTablesUtilChains: false`);
//! - the network is one bridge, [`BRIDGE`] at [`BRIDGE_IP`], made here, with the CNI bridge plugin
//!   not acting as a gateway, so IP forwarding stays off; Pods reach the `kubernetes` Service
//!   address [`SERVICE_IP`] through one DNAT rule on that bridge to the apiserver on loopback
//!   (there is no kube-proxy), and reach nothing else but the bridge's own address, where the
//!   tests' git servers listen;
//! - a janitor process ([`janitor`]) stops every process by PID, kills what is left in the
//!   node's cgroups, and removes the bridge, the DNAT chain, the cgroups and the run directory
//!   when the node is dropped or the test process dies, however it dies; a node that was killed
//!   together with its janitor is cleaned up by the next start.
//!
//! There is no registry: images are OCI archives imported into containerd ([`Node::import`]),
//! and the Pod sandbox image is built here from the Kubernetes module's own `pause.c`
//! (`hack/control-plane/build.sh`).

mod config;
mod janitor;
mod namespace;
mod oci;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::control_plane::{ControlPlane, binaries};
use crate::guard::Guarded;
use crate::{Result, error};

/// The node's name.
pub const NODE_NAME: &str = "crate-node";
/// The bridge Pods attach to.
pub const BRIDGE: &str = "crateop0";
/// The bridge's address: the node's IP, and the only address Pods can reach besides the API.
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
/// The Pods' subnet.
pub const POD_CIDR: &str = "10.244.0.0/24";
/// The `kubernetes` Service's ClusterIP (the first address of the apiserver's
/// `--service-cluster-ip-range`).
pub const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// The kubelet's cgroup root, in every cgroup v1 hierarchy.
pub const CGROUP_ROOT: &str = "crate-operator-node";
/// The nat chain holding the DNAT rule.
pub const NAT_CHAIN: &str = "CRATEOP-NODE";
/// The image containerd runs as every Pod's sandbox.
pub const PAUSE_IMAGE: &str = "localhost/pause:e2e";

/// How long the node gets to become Ready. Generous: CI machines have two cores.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running node. Dropping it stops everything and puts the host back as it was.
pub struct Node {
    // Field order is drop order: the kubelet and the scheduler before containerd, the mount
    // namespace last, then the janitor cleans up what is left.
    kubelet: Guarded,
    scheduler: Guarded,
    containerd: Guarded,
    // Held for their Drop: the namespace ends, then the janitor cleans up and waits.
    _namespace: namespace::MountNamespace,
    _janitor: janitor::Janitor,
    run: PathBuf,
}

impl Node {
    /// Starts a node registered with `plane` and waits until it is Ready. Only one node can run
    /// on a machine at a time (it owns [`BRIDGE`], [`CGROUP_ROOT`] and the kubelet's port).
    pub fn start(plane: &ControlPlane) -> Result<Node> {
        require_root()?;
        let bin = binaries()?;
        Node::wait_for_earlier_nodes()?;
        let run = tempfile::Builder::new()
            .prefix(janitor::RUN_DIR_PREFIX)
            .tempdir()
            .map_err(|e| error(format!("failed to make the node's directory: {e}")))?
            .keep();
        // From here on the janitor puts everything back, whatever happens next.
        let janitor = janitor::Janitor::start(&run)?;
        janitor::make_network(plane.port())?;
        janitor::make_cgroup_root()?;
        let files = config::write(&run, plane)?;
        let namespace = namespace::MountNamespace::start(&run)?;

        let containerd = namespace.spawn(
            "containerd",
            Path::new("/usr/bin/containerd"),
            &[format!("--config={}", files.containerd.display())],
            &run.join("containerd.log"),
        )?;
        wait_for_socket(&files.containerd_socket, &containerd)?;
        let node = Node {
            kubelet: namespace.spawn(
                "kubelet",
                &bin.join("kubelet"),
                &config::kubelet_args(&run, &files),
                &run.join("kubelet.log"),
            )?,
            scheduler: Guarded::spawn(
                "kube-scheduler",
                &bin.join("kube-scheduler"),
                &[
                    format!("--kubeconfig={}", plane.kubeconfig().display()),
                    "--leader-elect=false".to_owned(),
                    "--secure-port=0".to_owned(),
                ],
                &[],
                &run.join("kube-scheduler.log"),
                None,
            )?,
            containerd,
            _namespace: namespace,
            _janitor: janitor,
            run,
        };
        node.import(&oci::pause_image(&node.run, &bin.join("pause"))?)?;
        node.wait_until_ready(plane)?;
        Ok(node)
    }

    /// Waits for the janitor of a node that just stopped (in this process or one that ended) to
    /// finish, and cleans up after one that was killed. [`Node::start`] does this itself; a test
    /// that compares the host before and after a node calls it before its first look.
    pub fn wait_for_earlier_nodes() -> Result<()> {
        require_root()?;
        janitor::clean_leftovers()
    }

    /// Where the node's files and logs are.
    pub fn dir(&self) -> &Path {
        &self.run
    }

    /// `ctr` against the node's containerd, in the namespace the kubelet uses.
    pub fn ctr(&self) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg(format!(
                "--address={}",
                config::containerd_socket(&self.run).display()
            ))
            .args(["--namespace", "k8s.io"]);
        command
    }

    /// Imports an OCI (or docker) image archive; Pods can then use the names it carries with
    /// `imagePullPolicy: IfNotPresent` or `Never`.
    pub fn import(&self, archive: &Path) -> Result<()> {
        let output = self
            .ctr()
            .args(["images", "import", "--all-platforms"])
            .arg(archive)
            .output()
            .map_err(|e| error(format!("failed to run ctr: {e}")))?;
        if !output.status.success() {
            return Err(error(format!(
                "ctr images import {} failed: {}",
                archive.display(),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(())
    }

    /// The end of the kubelet's, containerd's and the scheduler's logs, for failure messages.
    pub fn logs(&self) -> String {
        [
            ("kubelet", self.kubelet.log()),
            ("containerd", self.containerd.log()),
            ("kube-scheduler", self.scheduler.log()),
        ]
        .iter()
        .map(|(name, log)| format!("--- {name} ---\n{}", crate::log_tail(log, 30)))
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// Waits until the node object says Ready (the kubelet registered it, its runtime and network
    /// are up, and the node-lifecycle controller lifted the not-ready taint).
    fn wait_until_ready(&self, plane: &ControlPlane) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let output = plane
                .kubectl()
                .args([
                    "get",
                    "node",
                    NODE_NAME,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.spec.taints}",
                ])
                .stderr(Stdio::null())
                .output()
                .map_err(|e| error(format!("failed to run kubectl: {e}")))?;
            let text = String::from_utf8_lossy(&output.stdout);
            if text.starts_with("True") && !text.contains("not-ready") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(error(format!(
                    "the node was not Ready within {READY_TIMEOUT:?} ({text}); logs:\n{}",
                    self.logs()
                )));
            }
            // Polling the node's status: the wait is for a condition, bounded by the deadline.
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn require_root() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("");
    if uid == "0" {
        Ok(())
    } else {
        Err(error(
            "the real node needs root (containerd, the kubelet, a bridge and a DNAT rule); run the tests as root, as CI does",
        ))
    }
}

/// Waits until containerd listens on its socket, or exits.
fn wait_for_socket(socket: &Path, process: &Guarded) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !socket.exists() {
        if Instant::now() > deadline {
            return Err(process.failure(&format!("made no socket within {READY_TIMEOUT:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
