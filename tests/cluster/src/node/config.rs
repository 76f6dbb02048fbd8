//! The node's configuration files: containerd's, the kubelet's, and the CNI network's, all in the
//! run directory and all pointing back into it.

use std::path::{Path, PathBuf};

use super::{BRIDGE, BRIDGE_IP, CGROUP_ROOT, NODE_NAME, PAUSE_IMAGE, POD_CIDR};
use crate::control_plane::ControlPlane;
use crate::{Result, error};

/// Where [`write`] put what the processes are started with.
pub(super) struct Files {
    pub containerd: PathBuf,
    pub containerd_socket: PathBuf,
    pub kubelet: PathBuf,
    pub kubeconfig: PathBuf,
}

/// containerd's socket in `run`.
pub(super) fn containerd_socket(run: &Path) -> PathBuf {
    run.join("containerd/containerd.sock")
}

pub(super) fn write(run: &Path, plane: &ControlPlane) -> Result<Files> {
    let write = |name: &str, text: &str| -> Result<PathBuf> {
        let path = run.join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| error(format!("failed to make {}: {e}", dir.display())))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| error(format!("failed to write {}: {e}", path.display())))?;
        Ok(path)
    };
    let socket = containerd_socket(run);
    let containerd = write("containerd.toml", &containerd(run, &socket))?;
    write("cni/net.d/10-crate-node.conflist", &cni(run)?)?;
    write(
        "resolv.conf",
        "# Pods on the test node resolve no names.\noptions ndots:1\n",
    )?;
    let kubelet = write("kubelet.yaml", &kubelet(run, plane, &socket))?;
    Ok(Files {
        containerd,
        containerd_socket: socket,
        kubelet,
        kubeconfig: plane.kubeconfig().to_owned(),
    })
}

/// containerd 1.6: its own root and state, the CRI plugin's CNI config here, and the sandbox
/// image built from pause.c. Without CAP_SYS_RESOURCE (as in this sandbox) runc cannot raise the
/// OOM score of a container above its parent's, so the CRI plugin must not ask it to
/// (`restrict_oom_score_adj`).
fn containerd(run: &Path, socket: &Path) -> String {
    let r = run.display();
    let socket = socket.display();
    format!(
        r#"version = 2
root = "{r}/containerd/root"
state = "{r}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{r}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{r}/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
"#
    )
}

/// The bridge exists already, with its address (`janitor::make_network`); the plugin only
/// attaches Pods to it. Not a gateway, so no forwarding; the default route points at the
/// bridge's address, where the DNAT rule and the test servers are.
fn cni(run: &Path) -> Result<String> {
    serde_json::to_string_pretty(&serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "crate-node",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": false,
            "ipMasq": false,
            "hairpinMode": false,
            "ipam": {
                "type": "host-local",
                "dataDir": format!("{}/cni/ipam", run.display()),
                "ranges": [[{"subnet": POD_CIDR, "rangeStart": "10.244.0.10", "gateway": BRIDGE_IP.to_string()}]],
                "routes": [{"dst": "0.0.0.0/0", "gw": BRIDGE_IP.to_string()}]
            }
        }, {"type": "loopback"}]
    }))
    .map_err(|e| error(format!("failed to encode the CNI config: {e}")))
}

/// The kubelet: serving only on the bridge, trusting the cluster CA for the apiserver's calls,
/// cgroups under [`CGROUP_ROOT`], no iptables chains, no kernel defaults enforced, and no image
/// garbage collection (the imported images cannot be pulled again). Volumes are measured every
/// 2 s instead of every minute, so an emptyDir over its `sizeLimit` is evicted within a test's
/// patience (the eviction manager itself looks every 10 s).
fn kubelet(run: &Path, plane: &ControlPlane, socket: &Path) -> String {
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {BRIDGE_IP}
port: 10250
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: AlwaysAllow}}
cgroupDriver: cgroupfs
cgroupRoot: /{CGROUP_ROOT}
containerRuntimeEndpoint: unix://{socket}
failSwapOn: false
makeIPTablesUtilChains: false
protectKernelDefaults: false
resolvConf: {r}/resolv.conf
podCIDR: {POD_CIDR}
podLogsDir: {r}/pod-logs
maxPods: 110
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
evictionPressureTransitionPeriod: 5s
volumeStatsAggPeriod: 2s
registerNode: true
",
        ca = plane.ca_file().display(),
        socket = socket.display(),
        r = run.display(),
    )
}

/// The kubelet's flags (what its configuration file cannot say).
pub(super) fn kubelet_args(run: &Path, files: &Files) -> Vec<String> {
    vec![
        format!("--config={}", files.kubelet.display()),
        format!("--kubeconfig={}", files.kubeconfig.display()),
        format!("--root-dir={}", run.join("kubelet").display()),
        format!("--cert-dir={}", run.join("kubelet/pki").display()),
        format!("--hostname-override={NODE_NAME}"),
        format!("--node-ip={BRIDGE_IP}"),
        "--v=1".to_owned(),
    ]
}
