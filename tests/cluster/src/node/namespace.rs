//! The node's private mount namespace, where containerd and the kubelet run.
//!
//! A holder process (`unshare --mount --propagation private`) mounts empty tmpfs over `/run`,
//! `/var/lib` and `/var/log`, binds files of the run directory over the three sysctls the
//! kubelet sets, and then waits; containerd and the kubelet join its namespace with `nsenter`.
//! Every mount they make (container root filesystems, Secret and token volumes, network
//! namespaces) stays in there and disappears with the last of its processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::guard::Guarded;
use crate::{Result, error};

/// Runs inside the new namespace, with the run directory as `$0`. The three sysctls are the ones
/// the kubelet writes at start; in here it writes files holding the host's values instead.
const SETUP: &str = r#"
set -eu
run="$0"
mount -t tmpfs -o mode=0755 crate-node /run
mount -t tmpfs -o mode=0755 crate-node /var/lib
mount -t tmpfs -o mode=0755 crate-node /var/log
for sysctl in kernel/panic kernel/panic_on_oops vm/overcommit_memory; do
  file="$run/sysctl/$(echo "$sysctl" | tr / .)"
  cat "/proc/sys/$sysctl" > "$file"
  mount --bind "$file" "/proc/sys/$sysctl"
done
echo "$$" > "$run/namespace.pid"
exec sleep infinity
"#;

/// The holder of the namespace; stopping it (with the processes in the namespace) ends it.
pub(super) struct MountNamespace {
    // Held for its Drop: stopping the holder ends the namespace.
    _holder: Guarded,
    pid: u32,
    run: PathBuf,
}

impl MountNamespace {
    pub(super) fn start(run: &Path) -> Result<MountNamespace> {
        std::fs::create_dir_all(run.join("sysctl"))
            .map_err(|e| error(format!("failed to make {}: {e}", run.display())))?;
        let pid_file = run.join("namespace.pid");
        let holder = Guarded::spawn(
            "node-namespace",
            Path::new("/usr/bin/unshare"),
            &[
                "--mount".to_owned(),
                "--propagation".to_owned(),
                "private".to_owned(),
                "--".to_owned(),
                "sh".to_owned(),
                "-c".to_owned(),
                SETUP.to_owned(),
                run.display().to_string(),
            ],
            &[],
            &run.join("namespace.log"),
            None,
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                break pid;
            }
            if Instant::now() > deadline {
                return Err(holder.failure("did not set up the mount namespace"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(MountNamespace {
            _holder: holder,
            pid,
            run: run.to_owned(),
        })
    }

    /// Starts `program` inside the namespace, guarded like any control-plane process.
    pub(super) fn spawn(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Guarded> {
        let mut all = vec![
            format!("--target={}", self.pid),
            "--mount".to_owned(),
            "--".to_owned(),
            program.display().to_string(),
        ];
        all.extend_from_slice(args);
        Guarded::spawn(
            name,
            Path::new("/usr/bin/nsenter"),
            &all,
            &[("HOME", &self.run.display().to_string())],
            log,
            None,
        )
    }
}
