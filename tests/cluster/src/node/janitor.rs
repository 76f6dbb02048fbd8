//! Putting the host back: the node's network and cgroups are made here, and a janitor process
//! removes them, with every process of the node, when the node stops or the test process dies.
//!
//! The janitor is a `setsid` shell that reads its stdin, a pipe only the test process holds, until
//! end-of-file (the [`super::Node`] is dropped, or the process exits or is killed), then runs
//! `cleanup.sh` of the run directory. A run directory without a live janitor is a leftover of a
//! run whose janitor was killed too; [`clean_leftovers`] runs its cleanup before a new node
//! starts.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BRIDGE, BRIDGE_IP, CGROUP_ROOT, NAT_CHAIN, SERVICE_IP};
use crate::{Result, error};

/// Run directories are `$TMPDIR/<this>XXXXXX`.
pub(super) const RUN_DIR_PREFIX: &str = "crate-operator-node.";

/// The cleanup, with the run directory as `$1`. Every step tolerates what is already gone.
const CLEANUP: &str = r#"
run="$1"
me=$$
# The node's processes: containerd, the kubelet, the namespace holder and the containerd shims
# all name the run directory on their command line; their guards stop the first three too.
node_pids() {
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$me" ] && continue
    if tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -qF -- "$run"; then echo "$pid"; fi
  done
}
# Container processes live in the kubelet's cgroups.
cgroup_pids() {
  for hierarchy in /sys/fs/cgroup/*/; do
    [ -d "${hierarchy}@ROOT@" ] && find "${hierarchy}@ROOT@" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
}
killed=""
for pid in $(node_pids); do kill -TERM "$pid" 2>/dev/null; killed="$killed $pid"; done
for _ in 1 2 3 4 5 6 7 8 9 10; do
  [ -z "$(node_pids)" ] && break
  sleep 1
done
for _ in 1 2 3 4 5; do
  pids="$(node_pids; cgroup_pids)"
  [ -z "$pids" ] && break
  kill -KILL $pids 2>/dev/null
  killed="$killed $pids"
  sleep 0.2
done
# A killed process stays in /proc as a zombie until its parent reaps it, and once the shims are
# gone that parent is init, which reaps when it gets to it (the host's `pause` processes were
# still listed when the test looked, in one CI run). Wait for that, so the host is as it was
# when the node's drop returns.
for _ in $(seq 50); do
  left=""
  for pid in $killed; do [ -e "/proc/$pid" ] && left=1 && break; done
  [ -z "$left" ] && break
  sleep 0.2
done
for _ in 1 2 3 4 5; do
  for hierarchy in /sys/fs/cgroup/*/; do
    [ -d "${hierarchy}@ROOT@" ] && find "${hierarchy}@ROOT@" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  ls -d /sys/fs/cgroup/*/@ROOT@ >/dev/null 2>&1 || break
  sleep 0.2
done
ip link delete @BRIDGE@ 2>/dev/null
while iptables -w -t nat -D PREROUTING -i @BRIDGE@ -j @CHAIN@ 2>/dev/null; do :; done
iptables -w -t nat -F @CHAIN@ 2>/dev/null
iptables -w -t nat -X @CHAIN@ 2>/dev/null
rm -rf "$run"
"#;

fn cleanup_script() -> String {
    CLEANUP
        .replace("@ROOT@", CGROUP_ROOT)
        .replace("@BRIDGE@", BRIDGE)
        .replace("@CHAIN@", NAT_CHAIN)
}

/// The janitor of one run directory. Dropping it makes it clean up, and waits until it has.
pub(super) struct Janitor {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Janitor {
    pub(super) fn start(run: &Path) -> Result<Janitor> {
        let script = run.join("cleanup.sh");
        std::fs::write(&script, cleanup_script())
            .map_err(|e| error(format!("failed to write {}: {e}", script.display())))?;
        let mut child = Command::new("setsid")
            .args([
                "sh",
                "-c",
                "while read -r _; do :; done; exec sh \"$0\" \"$1\"",
            ])
            .arg(&script)
            .arg(run)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| error(format!("failed to start the node's janitor: {e}")))?;
        std::fs::write(run.join("janitor.pid"), child.id().to_string())
            .map_err(|e| error(format!("failed to record the janitor: {e}")))?;
        let stdin = child.stdin.take();
        Ok(Janitor { child, stdin })
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.wait();
    }
}

/// Runs the cleanup of every run directory whose janitor is gone, and removes a bridge or DNAT
/// chain left without a run directory.
pub(super) fn clean_leftovers() -> Result<()> {
    let temp = std::env::temp_dir();
    let entries = std::fs::read_dir(&temp)
        .map_err(|e| error(format!("failed to list {}: {e}", temp.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_run = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(RUN_DIR_PREFIX));
        if !is_run {
            continue;
        }
        let janitor = std::fs::read_to_string(path.join("janitor.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        // A live janitor is either cleaning up after a test process that just ended (wait for
        // it) or guarding a node that still runs (then it does not end, and this one cannot
        // start).
        if let Some(pid) = janitor
            && !wait_for_exit(pid, Duration::from_secs(60))
        {
            return Err(error(format!(
                "another node is running ({}); only one can run on a machine",
                path.display()
            )));
        }
        if path.exists() {
            run_cleanup(&path)?;
        }
    }
    // A bridge or chain without a run directory (the directory was removed by hand).
    run_cleanup(&temp.join(format!("{RUN_DIR_PREFIX}gone")))
}

/// Whether process `pid` is gone within `timeout`.
fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let deadline = Instant::now() + timeout;
    while proc.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn run_cleanup(run: &Path) -> Result<()> {
    let status = Command::new("sh")
        .args(["-c", &cleanup_script(), "cleanup"])
        .arg(run)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| error(format!("failed to clean up {}: {e}", run.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(error(format!(
            "cleaning up {} failed ({status})",
            run.display()
        )))
    }
}

fn sh(what: &str, script: &str) -> Result<()> {
    let output = Command::new("sh")
        .args(["-c", script])
        .output()
        .map_err(|e| error(format!("failed to {what}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(error(format!(
            "failed to {what}: {}",
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// The bridge at [`BRIDGE_IP`], and the DNAT of the `kubernetes` Service address on it to the
/// apiserver on loopback (`route_localnet` lets the bridge deliver to 127.0.0.1; it is a setting
/// of this bridge and goes with it).
pub(super) fn make_network(apiserver_port: u16) -> Result<()> {
    sh(
        "make the node's bridge and DNAT rule",
        &format!(
            "set -e
ip link add {BRIDGE} type bridge
ip addr add {BRIDGE_IP}/24 dev {BRIDGE}
ip link set {BRIDGE} up
echo 1 > /proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet
iptables -w -t nat -N {NAT_CHAIN}
iptables -w -t nat -A {NAT_CHAIN} -d {SERVICE_IP}/32 -p tcp --dport 443 -j DNAT --to-destination 127.0.0.1:{apiserver_port}
iptables -w -t nat -A PREROUTING -i {BRIDGE} -j {NAT_CHAIN}"
        ),
    )
}

/// The kubelet's cgroup root in every cgroup v1 hierarchy (it creates what is below).
pub(super) fn make_cgroup_root() -> Result<()> {
    sh(
        "make the node's cgroup root",
        &format!(
            "set -e
for hierarchy in /sys/fs/cgroup/*/; do
  [ -e \"$hierarchy/cgroup.procs\" ] && mkdir -p \"${{hierarchy}}{CGROUP_ROOT}\"
done
true"
        ),
    )
}
