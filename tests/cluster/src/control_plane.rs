//! etcd, kube-apiserver and kube-controller-manager on loopback, started in that order and
//! stopped in reverse. The binaries come from `hack/control-plane/build.sh` (built once per
//! Kubernetes version and cached outside the repository, or taken from `KUBEBUILDER_ASSETS`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::certs::{self, Pki};
use crate::guard::Guarded;
use crate::{Result, error};

/// How long each component gets to become ready. Generous: CI machines have two cores.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The controllers the operator relies on.
const CONTROLLERS: &[&str] = &[
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "resourcequota-controller",
    "namespace-controller",
    // Lifts the not-ready taint off the real node (`node`) once its kubelet reports Ready.
    "node-lifecycle-controller",
];

/// Opt-in settings of a control plane started with [`ControlPlane::start_with`]. The default is
/// what [`ControlPlane::start`] and [`ControlPlane::shared`] run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// An audit policy (YAML, `audit.k8s.io/v1` `Policy`). When set, kube-apiserver writes the
    /// audit events it selects as JSON lines to [`ControlPlane::audit_log`].
    pub audit_policy: Option<String>,
    /// Also run the Deployment and ReplicaSet controllers, so that an install's Deployment makes
    /// Pods (for a control plane with a real node, `node`).
    pub workloads: bool,
    /// Run etcd and kube-apiserver only, no kube-controller-manager: for tests of what one
    /// client does to the API (the loader's apply), where the garbage collector would delete
    /// objects whose owner references name owners the test never made.
    pub apiserver_only: bool,
}

/// The Deployment's controllers, for [`Options::workloads`].
const WORKLOAD_CONTROLLERS: &[&str] = &["deployment-controller", "replicaset-controller"];

/// A running control plane. Dropping it stops every process and removes its files.
pub struct ControlPlane {
    // Field order is drop order: controller-manager, apiserver, etcd, then the files.
    controller_manager: Option<Guarded>,
    apiserver: Guarded,
    etcd: Guarded,
    server_url: String,
    kubeconfig: PathBuf,
    pki: Pki,
    bin_dir: PathBuf,
    dir: PathBuf,
    audit_log: Option<PathBuf>,
    temp: Option<tempfile::TempDir>,
}

impl ControlPlane {
    /// The control plane shared by every test of this test binary, started on first use.
    /// It stops when the test process exits.
    pub fn shared() -> Result<&'static ControlPlane> {
        Self::shared_with(&Options::default())
    }

    /// Like [`ControlPlane::shared`], started with `options` by the first caller.
    pub fn shared_with(options: &Options) -> Result<&'static ControlPlane> {
        static SHARED: OnceLock<std::result::Result<ControlPlane, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| ControlPlane::start_kept(options).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| error(format!("the shared control plane failed to start: {e}")))
    }

    /// Starts a control plane owned by the caller: dropping it stops it.
    pub fn start() -> Result<ControlPlane> {
        Self::start_with(&Options::default())
    }

    /// Like [`ControlPlane::start`], with `options`.
    pub fn start_with(options: &Options) -> Result<ControlPlane> {
        let temp = tempfile::Builder::new()
            .prefix("crate-operator-e2e-")
            .tempdir()
            .map_err(|e| error(format!("failed to make a directory: {e}")))?;
        let dir = temp.path().to_owned();
        let mut plane = Self::start_in(dir, false, options)?;
        plane.temp = Some(temp);
        Ok(plane)
    }

    /// Like [`ControlPlane::start`], but the directory is removed by etcd's guard when the test
    /// process exits (a static is never dropped).
    fn start_kept(options: &Options) -> Result<ControlPlane> {
        let dir = tempfile::Builder::new()
            .prefix("crate-operator-e2e-")
            .tempdir()
            .map_err(|e| error(format!("failed to make a directory: {e}")))?
            .keep();
        Self::start_in(dir, true, options)
    }

    fn start_in(dir: PathBuf, cleanup_on_exit: bool, options: &Options) -> Result<ControlPlane> {
        let bin_dir = binaries()?;
        let pki = certs::write(&dir)?;

        let etcd_data = dir.join("etcd");
        let mut etcd = Guarded::spawn(
            "etcd",
            &bin_dir.join("etcd"),
            &[format!("--data-dir={}", etcd_data.display())],
            &[],
            &dir.join("etcd.log"),
            cleanup_on_exit.then_some(dir.as_path()),
        )?;
        let etcd_url = etcd.wait_for_line("client-url=", READY_TIMEOUT)?;

        let mut extra_args = Vec::new();
        let mut audit_log = None;
        if let Some(policy) = &options.audit_policy {
            let policy_file = dir.join("audit-policy.yaml");
            std::fs::write(&policy_file, policy)
                .map_err(|e| error(format!("failed to write {}: {e}", policy_file.display())))?;
            let log = dir.join("audit.log");
            extra_args.push(format!("--audit-policy-file={}", policy_file.display()));
            extra_args.push(format!("--audit-log-path={}", log.display()));
            // Every event, synchronously and unrotated: readers count them all.
            extra_args.push("--audit-log-mode=blocking".to_owned());
            extra_args.push("--audit-log-maxsize=0".to_owned());
            audit_log = Some(log);
        }
        let (apiserver, server_url) =
            start_apiserver(&bin_dir, &dir, &pki, &etcd_url, &extra_args)?;
        let kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(&kubeconfig, &server_url, &pki)?;

        let mut plane = ControlPlane {
            controller_manager: if options.apiserver_only {
                None
            } else {
                Some(start_controller_manager(
                    &bin_dir,
                    &dir,
                    &kubeconfig,
                    &pki,
                    options.workloads,
                )?)
            },
            apiserver,
            etcd,
            server_url,
            kubeconfig,
            pki,
            bin_dir,
            dir,
            audit_log,
            temp: None,
        };
        plane.wait_until_ready()?;
        Ok(plane)
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// The port the apiserver listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(443)
    }

    /// The cluster CA certificate file.
    pub fn ca_file(&self) -> &Path {
        &self.pki.ca_cert
    }

    /// A kubeconfig file for a cluster administrator (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Where the control plane's files and logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The audit log, when started with an audit policy ([`Options::audit_policy`]).
    pub fn audit_log(&self) -> Option<&Path> {
        self.audit_log.as_deref()
    }

    /// A `kubectl` of the same Kubernetes version, pointed at this control plane as administrator.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.bin_dir.join("kubectl"));
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            // Without HOME kubectl would write its discovery cache into the working directory.
            .env("HOME", &self.dir)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        command
    }

    /// Client configuration for a cluster administrator.
    pub async fn admin_config(&self) -> Result<kube::Config> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|e| error(format!("failed to read the admin kubeconfig: {e}")))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| error(format!("failed to load the admin kubeconfig: {e}")))
    }

    /// A client for a cluster administrator, on the caller's runtime.
    pub async fn admin_client(&self) -> Result<kube::Client> {
        kube::Client::try_from(self.admin_config().await?)
            .map_err(|e| error(format!("failed to make a client: {e}")))
    }

    /// Waits until the apiserver reports ready, failing early if a component exits.
    fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let components = [Some(&mut self.etcd), Some(&mut self.apiserver)]
                .into_iter()
                .chain([self.controller_manager.as_mut()])
                .flatten();
            for guarded in components {
                if let Some(status) = guarded.exited() {
                    return Err(guarded.failure(&format!("exited ({status})")));
                }
            }
            let ready = self
                .kubectl()
                .args(["get", "--raw", "/readyz"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self
                    .apiserver
                    .failure(&format!("was not ready within {READY_TIMEOUT:?}")));
            }
            // Polling a readiness endpoint: the wait is for a condition, bounded by the deadline.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Finds or builds the control-plane binaries.
pub fn binaries() -> Result<PathBuf> {
    static BINARIES: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BINARIES
        .get_or_init(|| build_binaries().map_err(|e| e.to_string()))
        .clone()
        .map_err(error)
}

fn build_binaries() -> Result<PathBuf> {
    run_build_script(
        "hack/control-plane/build.sh",
        "it needs Go and the Go module proxy, or KUBEBUILDER_ASSETS pointing at etcd, \
         kube-apiserver, kube-controller-manager and kubectl",
    )
}

/// Runs one of the repository's `hack/*/build.sh` scripts, which build a tool once per version
/// (or find it cached) and print the directory holding it; `needs` says what a failure lacks.
pub(crate) fn run_build_script(script: &str, needs: &str) -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(script);
    let output = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| error(format!("failed to run {}: {e}", script.display())))?;
    if !output.status.success() {
        return Err(error(format!(
            "{} failed ({}); {needs}",
            script.display(),
            output.status
        )));
    }
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok(PathBuf::from(dir))
}

/// A port on 127.0.0.1 that was free a moment ago. The apiserver cannot report the port it
/// bound, so there is a small window for another process to take it; [`start_apiserver`]
/// retries if that happens.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| error(format!("failed to find a free port: {e}")))?;
    Ok(listener
        .local_addr()
        .map_err(|e| error(format!("failed to find a free port: {e}")))?
        .port())
}

fn start_apiserver(
    bin_dir: &Path,
    dir: &Path,
    pki: &Pki,
    etcd_url: &str,
    extra_args: &[String],
) -> Result<(Guarded, String)> {
    let mut last_error = None;
    for _ in 0..3 {
        let port = free_port()?;
        let mut args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            "--authorization-mode=RBAC".to_owned(),
            "--anonymous-auth=false".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            format!("--service-account-key-file={}", pki.service_account_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            // PodSecurity and ResourceQuota are on by default; named so the intent is visible.
            "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,ResourceQuota"
                .to_owned(),
            // As kubeadm sets it: Pod Security admission, not this switch, is what must refuse
            // privileged Pods in a "restricted" namespace.
            "--allow-privileged=true".to_owned(),
            "--profiling=false".to_owned(),
            "--endpoint-reconciler-type=none".to_owned(),
            // For `kubectl logs` on the real node: the apiserver calls the kubelet as the
            // administrator, at the node's InternalIP.
            format!("--kubelet-client-certificate={}", pki.admin_cert.display()),
            format!("--kubelet-client-key={}", pki.admin_key.display()),
            "--kubelet-preferred-address-types=InternalIP".to_owned(),
        ];
        args.extend_from_slice(extra_args);
        let mut apiserver = Guarded::spawn(
            "kube-apiserver",
            &bin_dir.join("kube-apiserver"),
            &args,
            &[],
            &dir.join("kube-apiserver.log"),
            None,
        )?;
        let server_url = format!("https://127.0.0.1:{port}");
        // Give the port race a chance to show: a lost bind makes the apiserver exit at once.
        match wait_for_listen(&mut apiserver, port) {
            Ok(()) => return Ok((apiserver, server_url)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| error("kube-apiserver did not start")))
}

/// Waits until something accepts connections on `port`, or the process exits.
fn wait_for_listen(process: &mut Guarded, port: u16) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = process.exited() {
            return Err(process.failure(&format!("exited ({status})")));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(process.failure(&format!("did not listen within {READY_TIMEOUT:?}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_controller_manager(
    bin_dir: &Path,
    dir: &Path,
    kubeconfig: &Path,
    pki: &Pki,
    workloads: bool,
) -> Result<Guarded> {
    let mut controllers = CONTROLLERS.to_vec();
    if workloads {
        controllers.extend_from_slice(WORKLOAD_CONTROLLERS);
    }
    let args = vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        // No HTTPS endpoint: nothing scrapes it, and it would need another free port.
        "--secure-port=0".to_owned(),
        "--leader-elect=false".to_owned(),
        format!("--controllers={}", controllers.join(",")),
        format!("--root-ca-file={}", pki.ca_cert.display()),
        format!(
            "--service-account-private-key-file={}",
            pki.service_account_key.display()
        ),
        "--use-service-account-credentials=false".to_owned(),
        // The defaults (20 QPS, burst 30) make a thousand-Job benchmark measure the controller
        // manager's client rather than the operator; managed clusters run far higher.
        "--kube-api-qps=200".to_owned(),
        "--kube-api-burst=400".to_owned(),
        "--concurrent-job-syncs=20".to_owned(),
    ];
    Guarded::spawn(
        "kube-controller-manager",
        &bin_dir.join("kube-controller-manager"),
        &args,
        &[],
        &dir.join("kube-controller-manager.log"),
        None,
    )
}

/// A kubeconfig for the apiserver at `server` (its CA in the file `ca`) authenticating with a
/// bearer `token`, as a ServiceAccount's Pod would.
pub fn token_kubeconfig(server: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {{server: '{server}', certificate-authority: '{ca}'}}
users:
- name: token
  user: {{token: '{token}'}}
contexts:
- name: test
  context: {{cluster: test, user: token}}
current-context: test
",
        ca = ca.display(),
    )
}

fn write_kubeconfig(path: &Path, server_url: &str, pki: &Pki) -> Result<()> {
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: {server_url}
    certificate-authority: {ca}
users:
- name: admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: e2e
  context:
    cluster: e2e
    user: admin
    namespace: default
current-context: e2e
",
        ca = pki.ca_cert.display(),
        cert = pki.admin_cert.display(),
        key = pki.admin_key.display(),
    );
    std::fs::write(path, yaml)
        .map_err(|e| error(format!("failed to write {}: {e}", path.display())))
}
