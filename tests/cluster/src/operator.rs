//! The operator on a [`ControlPlane`], as the end-to-end tests and the scale benchmark run it:
//! the install applied as an administrator would (`kubectl apply -k deploy/`), a
//! kubeconfig holding a token of the install's ServiceAccount (so managers run with exactly the
//! ClusterRole in `deploy/`), the built `crate-loader` (refused when older than its sources),
//! a [`Kubelet`] running loader Pods with it, and `crate-operator run` processes.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate_operator_api::{AnalyticsCrate, AnalyticsCrateSpec, RepoSpec};

use crate::{
    ControlPlane, Guarded, Kubelet, KubeletConfig, Result, error, log_tail, token_kubeconfig,
};

/// Namespace of the install (`deploy/namespace.yaml`).
pub const INSTALL_NAMESPACE: &str = "crate-operator";
/// The user the install's ServiceAccount authenticates as: every manager started here.
pub const MANAGER_USER: &str = "system:serviceaccount:crate-operator:crate-operator";
/// Label selector of loader Pods (and Jobs).
pub const LOADER_SELECTOR: &str = "app.kubernetes.io/name=crate-loader";
/// How long the managers' token lasts.
const TOKEN_DURATION: &str = "--duration=8h";

/// The repository this crate lives in.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Output of a successful kubectl run.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Runs a kubectl command, failing with its stderr unless it succeeds.
pub fn kubectl_ok(command: &mut Command) -> Result<Output> {
    kubectl_with_input(command, None)
}

/// Runs a kubectl command with `input` on its stdin (when given), failing with its stderr unless
/// it succeeds.
pub fn kubectl_with_input(command: &mut Command, input: Option<&str>) -> Result<Output> {
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
        Err(error(format!(
            "{command:?} failed ({}):\n{stderr}{stdout}",
            output.status
        )))
    }
}

/// The operator installed on a control plane (`deploy/`, or the chart), with its CRDs
/// established.
pub struct Install {
    /// What `kubectl apply -k deploy/` printed on stderr (warnings, e.g. from Pod Security).
    pub warnings: String,
    /// A kubeconfig holding a token of the install's `crate-operator` ServiceAccount.
    pub manager_kubeconfig: PathBuf,
}

impl Install {
    /// Applies `deploy/` as an administrator, waits for the CRDs, and writes the managers'
    /// kubeconfig (and the CA it names) into `dir`.
    pub fn apply(plane: &ControlPlane, dir: &Path) -> Result<Install> {
        std::fs::create_dir_all(dir)?;
        let install = kubectl_ok(
            plane
                .kubectl()
                // The README's install command, word for word.
                .args(["apply", "-k"])
                .arg(repo_root().join("deploy")),
        )?;
        Install::installed(plane, dir, install.stderr)
    }

    /// An install made some other way (the chart, with `helm install`): waits for its CRDs and
    /// writes the managers' kubeconfig (and the CA it names) into `dir`.
    pub fn installed(plane: &ControlPlane, dir: &Path, warnings: String) -> Result<Install> {
        std::fs::create_dir_all(dir)?;
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
            TOKEN_DURATION,
        ]))?;
        let ca = dir.join("ca.crt");
        std::fs::write(&ca, plane.ca_pem())?;
        let manager_kubeconfig = dir.join("manager.kubeconfig");
        std::fs::write(
            &manager_kubeconfig,
            token_kubeconfig(plane.server_url(), &ca, token.stdout.trim()),
        )?;
        Ok(Install {
            warnings,
            manager_kubeconfig,
        })
    }
}

/// `path`, the built `crate-loader`, if it is newer than the loader's sources (`loader/src`,
/// `api/src`): a stale binary would test old code, so it is refused with an error telling to
/// run `build_command`.
pub fn loader_binary(path: &Path, build_command: &str) -> Result<PathBuf> {
    let built = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| {
            error(format!(
                "{} is missing ({e}): run `{build_command}` first",
                path.display()
            ))
        })?;
    let root = repo_root();
    let newest_source =
        newest_mtime(&root.join("loader/src"))?.max(newest_mtime(&root.join("api/src"))?);
    if newest_source > built {
        return Err(error(format!(
            "{} is older than the loader's sources: run `{build_command}` so the current \
             loader runs",
            path.display()
        )));
    }
    Ok(path.to_owned())
}

fn newest_mtime(dir: &Path) -> Result<SystemTime> {
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

/// A [`Kubelet`] running the loader Pods of `plane` with `loader`, `max_parallel` at a time.
/// Callable from inside an async runtime.
pub fn loader_kubelet(
    plane: &ControlPlane,
    loader: PathBuf,
    max_parallel: usize,
) -> Result<Kubelet> {
    // The admin config is async; a thread of its own keeps this callable from any context.
    let client = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(plane.admin_config())
        })
        .join()
        .map_err(|_| error("admin config thread panicked"))?
    })?;
    Kubelet::start(KubeletConfig {
        client,
        server_url: plane.server_url().to_owned(),
        ca_pem: plane.ca_pem().to_owned(),
        loader_binary: loader,
        selector: LOADER_SELECTOR.to_owned(),
        max_parallel,
        parent_dir: plane.dir().to_owned(),
    })
}

/// How to run one `crate-operator run` process.
#[derive(Debug, Clone)]
pub struct ManagerSpec {
    /// The built `crate-operator`.
    pub binary: PathBuf,
    /// [`Install::manager_kubeconfig`].
    pub kubeconfig: PathBuf,
    /// Its identity in the leader-election Lease (`POD_NAME`).
    pub identity: String,
    /// `--watch-namespace`; `None` watches all namespaces.
    pub watch_namespace: Option<String>,
    /// Namespace of its Lease (`POD_NAMESPACE`).
    pub lease_namespace: String,
    /// `--loader-image`: any name does, the kubelet stand-in runs the built loader.
    pub loader_image: String,
    /// `--listen-addr` (port 0: any free one, and [`Manager::get`] cannot reach it).
    pub listen_addr: SocketAddr,
    /// More flags, e.g. `--lease-duration=4s` or the caps.
    pub args: Vec<String>,
    /// `CRATE_OPERATOR_LOG`.
    pub log_filter: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl ManagerSpec {
    /// A manager watching all namespaces, electing its leader in the install's namespace,
    /// serving on a port of its own choosing, logging JSON at `info` to `log`.
    pub fn new(binary: &Path, install: &Install, identity: &str, log: &Path) -> ManagerSpec {
        ManagerSpec {
            binary: binary.to_owned(),
            kubeconfig: install.manager_kubeconfig.clone(),
            identity: identity.to_owned(),
            watch_namespace: None,
            lease_namespace: INSTALL_NAMESPACE.to_owned(),
            loader_image: "registry.invalid/crate-loader:test".to_owned(),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            args: Vec::new(),
            log_filter: "info".to_owned(),
            log: log.to_owned(),
        }
    }
}

/// A `crate-operator run` process, as the install's ServiceAccount. Stopped (SIGTERM) on drop.
pub struct Manager {
    process: Option<Guarded>,
    spec: ManagerSpec,
    pub identity: String,
}

impl Manager {
    pub fn start(spec: ManagerSpec) -> Result<Manager> {
        let mut args = vec![
            "run".to_owned(),
            format!("--loader-image={}", spec.loader_image),
            "--allow-insecure-transport".to_owned(),
            format!("--listen-addr={}", spec.listen_addr),
            "--log-format=json".to_owned(),
        ];
        if let Some(namespace) = &spec.watch_namespace {
            args.push(format!("--watch-namespace={namespace}"));
        }
        args.extend(spec.args.iter().cloned());
        let kubeconfig = spec.kubeconfig.display().to_string();
        let process = Guarded::spawn(
            &format!("manager {}", spec.identity),
            &spec.binary,
            &args,
            &[
                ("KUBECONFIG", kubeconfig.as_str()),
                ("POD_NAMESPACE", spec.lease_namespace.as_str()),
                ("POD_NAME", spec.identity.as_str()),
                ("CRATE_OPERATOR_LOG", spec.log_filter.as_str()),
            ],
            &spec.log,
            None,
        )?;
        Ok(Manager {
            process: Some(process),
            identity: spec.identity.clone(),
            spec,
        })
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.spec.log, 30)
    }

    /// How it exited, once it has (without waiting).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.process.as_mut().and_then(Guarded::exited)
    }

    /// Stops it with SIGTERM, as Kubernetes stops a Pod, waits for it to exit, and says how.
    pub fn stop(mut self) -> Option<std::process::ExitStatus> {
        self.process.take().and_then(Guarded::stop)
    }

    /// The pid of the manager itself (not of the guard shell around it).
    pub fn pid(&self) -> Result<u32> {
        let guard = self
            .process
            .as_ref()
            .map(Guarded::pid)
            .ok_or_else(|| error("the manager was stopped"))?;
        let binary = self.spec.binary.canonicalize()?;
        for entry in std::fs::read_dir("/proc")? {
            let Some(pid) = entry?
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            if stat_field(&stat, 1) == Some(guard.to_string().as_str())
                && exe.as_deref() == Some(binary.as_path())
            {
                return Ok(pid);
            }
        }
        Err(error(format!(
            "no {} process under its guard (pid {guard}): it exited, or is still starting",
            binary.display()
        )))
    }

    /// Its memory high-water mark, current memory and CPU time so far, from `/proc`.
    pub fn stats(&self) -> Result<ProcessStats> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .ok_or_else(|| error(format!("no {key} in /proc/{pid}/status")))
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let ticks = |field| {
            stat_field(&stat, field)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| error(format!("unreadable /proc/{pid}/stat: {stat}")))
        };
        // utime and stime, the 14th and 15th fields.
        let cpu_ticks = ticks(11)? + ticks(12)?;
        Ok(ProcessStats {
            peak_rss_kib: kib("VmHWM:")?,
            rss_kib: kib("VmRSS:")?,
            cpu: Duration::from_millis(cpu_ticks * 1000 / clock_ticks_per_second()),
        })
    }

    /// `GET path` on its `--listen-addr`: the status code and body.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        let addr = self.spec.listen_addr;
        if addr.port() == 0 {
            return Err(error(
                "the manager was started on port 0: give it a known port",
            ));
        }
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| error(format!("not an HTTP response from {addr}: {response}")))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Ok((code, body))
    }
}

/// What `/proc` says about a process.
#[derive(Debug, Clone, Copy)]
pub struct ProcessStats {
    /// `VmHWM`: the most resident memory it ever had.
    pub peak_rss_kib: u64,
    /// `VmRSS`: resident memory now.
    pub rss_kib: u64,
    /// User and system CPU time so far.
    pub cpu: Duration,
}

/// The sum of a metric's samples (over all label sets) in Prometheus text, e.g.
/// `crate_operator_reconciles_total`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let series_name = series.split('{').next()?;
            (series_name == name).then(|| value.parse::<f64>().ok())?
        })
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// Field `index` (0 = state, 1 = ppid) of `/proc/<pid>/stat`, counted after the command name,
/// which may itself hold spaces and parentheses.
fn stat_field(stat: &str, index: usize) -> Option<&str> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(index)
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

/// An AnalyticsCrate named `name` loading `path` from `url` on `main`, public (no Secret).
pub fn analytics_crate(name: &str, url: &str, path: &str) -> AnalyticsCrate {
    AnalyticsCrate {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..kube::api::ObjectMeta::default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_over_their_label_sets() {
        let text = "# HELP x\ncrate_operator_reconciles_total 12\n\
                    crate_operator_loader_jobs_finished_total{outcome=\"Loaded\"} 3\n\
                    crate_operator_loader_jobs_finished_total{outcome=\"UpToDate\"} 4\n";
        assert_eq!(metric(text, "crate_operator_reconciles_total"), Some(12.0));
        assert_eq!(
            metric(text, "crate_operator_loader_jobs_finished_total"),
            Some(7.0)
        );
        assert_eq!(metric(text, "crate_operator_reconciles"), None);
    }

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = "42 (a) b) S 7 42 42 0 -1 4194560 1 0 0 0 5 6 0 0";
        assert_eq!(stat_field(stat, 0), Some("S"));
        assert_eq!(stat_field(stat, 1), Some("7"));
        assert_eq!(stat_field(stat, 11), Some("5"));
        assert_eq!(stat_field(stat, 12), Some("6"));
    }
}
