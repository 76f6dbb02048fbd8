//! `crate-loader load`, the in-Job flow, run as the binary against real git servers (smart HTTP
//! with basic auth, git daemon) and a real kube-apiserver: what it applies, when it applies
//! nothing, how each failure ends (exit code and termination message), and that the git token
//! never leaks.
//!
//! Each test gets its own namespace on the control plane this test binary shares, with the
//! loader's ServiceAccount, a Role on datasources and a token for it, as the manager sets them
//! up in a crate namespace. What the loader sent is read from the apiserver's audit log (with
//! request bodies); who owns which field from the datasource's `managedFields`.

#[path = "common/binary.rs"]
mod binary;
mod common;

use binary::loader;
use common::*;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate_operator_api::contract::{FetchMode, LoadResult, Outcome, TERMINATION_MESSAGE_LIMIT};
use crate_test_cluster::operator::{kubectl_ok, kubectl_with_input, repo_root};
use crate_test_cluster::{ControlPlane, Options, audit, token_kubeconfig};
use crate_test_support::{BareRepo, GitDaemon, Relay, RepoBuilder, Request, SmartHttp, Tarpit};
use serde_json::{Value, json};

const TOKEN: &str = "ghp_loadTestTokenThatMustNeverLeak";
const WRONG_TOKEN: &str = "ghp_wrongLoadTestTokenThatMustNeverLeak";
const NAME: &str = "demo";
const UID: &str = "uid-1";
// Spelled out rather than taken from the contract module: they are the upstream API.
const LABEL_CRATE: &str = "xlscsde.nhs.uk/crate";
const LABEL_CRATE_NAMESPACE: &str = "xlscsde.nhs.uk/crateNamespace";
const RESOURCE: &str = "analyticsdatasources.xlscsde.nhs.uk";
/// What the manager's Role grants the loader in a crate namespace.
const LOADER_VERBS: &[&str] = &["get", "create", "patch"];
/// The field manager of objects a test makes as a person (or the old operator) would.
const SEED_MANAGER: &str = "seed";
/// Datasource requests are audited with their bodies, except the administrator's (the test's
/// own reads and seeds), so the log holds what the loader sent and nothing else.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ['system:masters']
- level: Request
  resources: [{group: xlscsde.nhs.uk, resources: [analyticsdatasources]}]
- level: None
";
/// Environment variables that would make a Kubernetes client look somewhere other than the
/// kubeconfig a test gives it: the in-cluster service variables, kube-rs' `KUBE_RS_DEBUG_*`
/// overrides and the proxy variables (kube 5 reads `HTTPS_PROXY` even for a loopback server).
const CLUSTER_ENV: &[&str] = &[
    "KUBECONFIG",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "KUBE_RS_DEBUG_IMPERSONATE_USER",
    "KUBE_RS_DEBUG_IMPERSONATE_GROUP",
    "KUBE_RS_DEBUG_OVERRIDE_URL",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The example crate with its root entity renamed (a new commit's content).
fn crate_named(name: &str) -> String {
    let mut doc: Value = serde_json::from_str(EXAMPLE_CRATE).expect("example crate is JSON");
    let root = doc["@graph"]
        .as_array_mut()
        .expect("@graph")
        .iter_mut()
        .find(|e| e["@id"] == "./")
        .expect("root entity");
    root["name"] = name.into();
    serde_json::to_string_pretty(&doc).expect("serialises")
}

/// The control plane of this test binary, with the CRDs installed. Only kube-apiserver and
/// etcd: the garbage collector would delete datasources owned by the made-up crate uids.
fn plane() -> &'static ControlPlane {
    static INSTALLED: OnceLock<Result<&'static ControlPlane, String>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        let plane = ControlPlane::shared_with(&Options {
            audit_policy: Some(AUDIT_POLICY.to_owned()),
            apiserver_only: true,
            ..Options::default()
        })
        .map_err(|e| e.to_string())?;
        kubectl_ok(
            plane
                .kubectl()
                .arg("apply")
                .arg("-f")
                .arg(repo_root().join("deploy/crds/crds.yaml")),
        )
        .and_then(|_| {
            kubectl_ok(plane.kubectl().args([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{RESOURCE}"),
            ]))
        })
        .map_err(|e| e.to_string())?;
        Ok(plane)
    });
    match installed {
        Ok(plane) => plane,
        Err(e) => panic!("control plane set-up failed: {e}"),
    }
}

/// Runs `check` until it holds, for what the apiserver applies asynchronously (a new Role, an
/// admission policy); fails after a minute.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen in 60 s");
        // Polling the condition itself, bounded by the deadline.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One request of the loader's, from the audit log.
#[derive(Debug, Clone)]
struct Recorded {
    /// `get`, `patch`, ...
    verb: String,
    /// The path, without the query.
    path: String,
    /// The query string, without `?`.
    query: String,
    /// The authenticated user (empty when authentication failed).
    user: String,
    /// The request body (`Null` when there was none).
    body: Value,
    status: u16,
}

impl Recorded {
    fn from_event(event: &Value) -> Recorded {
        let uri = event["requestURI"].as_str().unwrap_or_default();
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        Recorded {
            verb: event["verb"].as_str().unwrap_or_default().to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            user: event["user"]["username"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body: event["requestObject"].clone(),
            status: event["responseStatus"]["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or_default(),
        }
    }

    /// The first value of query parameter `name`, percent-decoded.
    fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// `verb path status`, e.g. `get /apis/xlscsde.nhs.uk/v1/namespaces/sde-1/analyticsdatasources/demo 404`.
    fn summary(&self) -> String {
        format!("{} {} {}", self.verb, self.path, self.status)
    }
}

/// One namespace of the shared control plane, set up as the manager sets up a crate namespace
/// for the loader: the `crate-loader` ServiceAccount, a Role on datasources (with the verbs a
/// test chooses) and a token, in a kubeconfig whose server is a relay counting connections.
struct Cluster {
    plane: &'static ControlPlane,
    namespace: String,
    token: String,
    relay: Relay,
    /// Audit events of this namespace before the last [`Cluster::clear_requests`].
    cleared: std::cell::Cell<usize>,
}

impl Cluster {
    fn new(verbs: &[&str]) -> Cluster {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let plane = plane();
        let namespace = format!("sde-{}", NEXT.fetch_add(1, Ordering::SeqCst));
        let objects = format!(
            "apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: crate-loader, namespace: {namespace}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: crate-loader, namespace: {namespace}}}
rules:
- apiGroups: [xlscsde.nhs.uk]
  resources: [analyticsdatasources]
  verbs: {verbs:?}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: crate-loader, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: crate-loader}}
subjects: [{{kind: ServiceAccount, name: crate-loader, namespace: {namespace}}}]
"
        );
        kubectl_with_input(plane.kubectl().args(["apply", "-f", "-"]), Some(&objects))
            .expect("namespace set up");
        // The authorizer learns of a new Role from a watch: wait until it has.
        let user = format!("system:serviceaccount:{namespace}:crate-loader");
        wait_until("the loader's Role taking effect", || {
            plane
                .kubectl()
                .args([
                    "auth", "can-i", verbs[0], RESOURCE, "-n", &namespace, "--as", &user,
                ])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        let token = kubectl_ok(plane.kubectl().args([
            "create",
            "token",
            "crate-loader",
            "-n",
            &namespace,
            "--duration=1h",
        ]))
        .expect("token")
        .stdout
        .trim()
        .to_owned();
        let relay = Relay::start(([127, 0, 0, 1], plane.port()).into()).expect("relay");
        Cluster {
            plane,
            namespace,
            token,
            relay,
            cleared: std::cell::Cell::new(0),
        }
    }

    /// A kubeconfig for the loader, with its token, through the relay.
    fn kubeconfig(&self) -> String {
        token_kubeconfig(&self.url(), self.plane.ca_file(), &self.token)
    }

    /// The apiserver's URL as the loader is given it (the relay's).
    fn url(&self) -> String {
        format!("https://{}", self.relay.addr())
    }

    fn token(&self) -> &str {
        &self.token
    }

    fn connections(&self) -> usize {
        self.relay.connections()
    }

    /// The user the loader's token authenticates as.
    fn user(&self) -> String {
        format!("system:serviceaccount:{}:crate-loader", self.namespace)
    }

    /// The API path of datasource `name` in this namespace.
    fn path(&self, name: &str) -> String {
        format!(
            "/apis/xlscsde.nhs.uk/v1/namespaces/{}/analyticsdatasources/{name}",
            self.namespace
        )
    }

    fn kubectl(&self) -> Command {
        let mut kubectl = self.plane.kubectl();
        kubectl.args(["-n", &self.namespace]);
        kubectl
    }

    /// Datasource `name` as the apiserver holds it, `managedFields` included.
    fn get(&self, name: &str) -> Option<Value> {
        let out = kubectl_ok(self.kubectl().args([
            "get",
            RESOURCE,
            name,
            "-o",
            "json",
            "--show-managed-fields",
            "--ignore-not-found",
        ]))
        .expect("kubectl get");
        (!out.stdout.trim().is_empty())
            .then(|| serde_json::from_str(&out.stdout).expect("kubectl prints JSON"))
    }

    /// Makes datasource `name` from `object` (`metadata` and `spec`; `status` written through
    /// the status subresource), owned by [`SEED_MANAGER`] as a person's would be.
    fn seed(&self, name: &str, mut object: Value) {
        let status = object.as_object_mut().and_then(|o| o.remove("status"));
        object["apiVersion"] = json!("xlscsde.nhs.uk/v1");
        object["kind"] = json!("AnalyticsDataSource");
        object["metadata"]["name"] = json!(name);
        kubectl_with_input(
            self.kubectl().args([
                "apply",
                "--server-side",
                &format!("--field-manager={SEED_MANAGER}"),
                "-f",
                "-",
            ]),
            Some(&object.to_string()),
        )
        .expect("seeded");
        if let Some(status) = status {
            kubectl_ok(self.kubectl().args([
                "patch",
                RESOURCE,
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &json!({ "status": status }).to_string(),
            ]))
            .expect("status seeded");
        }
    }

    fn delete(&self, name: &str) {
        kubectl_ok(self.kubectl().args(["delete", RESOURCE, name])).expect("deleted");
    }

    /// What the loader sent to this namespace since the last [`Cluster::clear_requests`].
    fn requests(&self) -> Vec<Recorded> {
        let mut seen = std::collections::HashSet::new();
        let log = self.plane.audit_log().expect("audited");
        audit::events(log)
            .expect("audit log")
            .iter()
            .filter(|e| e["objectRef"]["namespace"] == self.namespace.as_str())
            .filter(|e| seen.insert(e["auditID"].to_string()))
            .map(Recorded::from_event)
            .skip(self.cleared.get())
            .collect()
    }

    fn clear_requests(&self) {
        self.cleared.set(self.cleared.get() + self.requests().len());
    }

    /// The patches among [`Cluster::requests`].
    fn patches(&self) -> Vec<Recorded> {
        let mut requests = self.requests();
        requests.retain(|r| r.verb == "patch");
        requests
    }

    /// The fields of datasource `name` that `manager` owns by apply: the top-level keys of
    /// `spec`, each label, each annotation and each owner reference (the level at which the
    /// loader claims fields), as `spec.displayName`, `metadata.labels.<key>`, ...
    fn owned_fields(&self, name: &str, manager: &str) -> Vec<String> {
        let object = self.get(name).expect("datasource");
        let Some(entry) = object["metadata"]["managedFields"]
            .as_array()
            .and_then(|m| {
                m.iter()
                    .find(|f| f["manager"] == manager && f["operation"] == "Apply")
            })
        else {
            return Vec::new();
        };
        let keys = |v: &Value, prefix: &str| -> Vec<String> {
            v.as_object()
                .into_iter()
                .flat_map(|o| o.keys())
                .filter_map(|k| k.strip_prefix(prefix))
                .map(str::to_owned)
                .collect()
        };
        let fields = &entry["fieldsV1"];
        let meta = &fields["f:metadata"];
        let mut owned = Vec::new();
        owned.extend(
            keys(&fields["f:spec"], "f:")
                .into_iter()
                .map(|k| format!("spec.{k}")),
        );
        for (what, set) in [("labels", "f:labels"), ("annotations", "f:annotations")] {
            owned.extend(
                keys(&meta[set], "f:")
                    .into_iter()
                    .map(|k| format!("metadata.{what}.{k}")),
            );
        }
        owned.extend(
            keys(&meta["f:ownerReferences"], "k:")
                .into_iter()
                .map(|k| format!("metadata.ownerReferences[{k}]")),
        );
        owned
    }
}

enum GitServer {
    Http(SmartHttp),
    /// Kept to keep serving.
    Daemon {
        _daemon: GitDaemon,
    },
}

/// A crate repository behind a git server, a namespace of the control plane, and a folder for
/// the kubeconfig, the credentials and the termination message.
struct Fixture {
    repo: BareRepo,
    git: GitServer,
    url: String,
    kube: Cluster,
    /// The crate's (and the datasource's) namespace.
    namespace: String,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    /// `--credentials-dir`, when the server wants a token.
    credentials: Option<PathBuf>,
    /// `--path`.
    path: String,
    /// `--timeout`.
    timeout: &'static str,
}

impl Fixture {
    /// The repository over smart HTTP, with basic auth `pat:<TOKEN>`, and the token in the
    /// credentials folder.
    fn http(repo: BareRepo) -> Fixture {
        Fixture::http_granting(repo, LOADER_VERBS)
    }

    /// [`Fixture::http`] with the loader's Role granting only `verbs` on datasources.
    fn http_granting(repo: BareRepo, verbs: &[&str]) -> Fixture {
        let http = SmartHttp::builder()
            .basic_auth("pat", TOKEN)
            .start(repo.base_dir())
            .expect("smart http");
        let url = http.url(repo.name());
        let mut fixture = Fixture::new(repo, GitServer::Http(http), url, verbs);
        fixture.credentials = Some(fixture.credentials_with("credentials", TOKEN));
        fixture
    }

    /// The repository over `git://` (no credentials).
    fn daemon(repo: BareRepo) -> Fixture {
        let daemon = GitDaemon::start(repo.base_dir()).expect("git daemon");
        let url = daemon.url(repo.name());
        Fixture::new(
            repo,
            GitServer::Daemon { _daemon: daemon },
            url,
            LOADER_VERBS,
        )
    }

    fn new(repo: BareRepo, git: GitServer, url: String, verbs: &[&str]) -> Fixture {
        let kube = Cluster::new(verbs);
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kube.kubeconfig()).expect("kubeconfig");
        Fixture {
            repo,
            git,
            url,
            namespace: kube.namespace.clone(),
            kube,
            dir,
            kubeconfig,
            credentials: None,
            path: PATH.to_owned(),
            timeout: "60s",
        }
    }

    /// A credentials folder `name` (under the fixture's folder) holding `token`.
    fn credentials_with(&self, name: &str, token: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("credentials dir");
        std::fs::write(dir.join("token"), format!("{token}\n")).expect("token file");
        dir
    }

    fn http_server(&self) -> &SmartHttp {
        match &self.git {
            GitServer::Http(http) => http,
            GitServer::Daemon { .. } => panic!("this fixture serves git://"),
        }
    }

    fn head(&self) -> String {
        self.repo.head("main")
    }

    fn termination_log(&self) -> PathBuf {
        self.dir.path().join("termination-log")
    }

    /// `<namespace>/demo`, as messages name the datasource.
    fn datasource_name(&self) -> String {
        format!("{}/{NAME}", self.namespace)
    }

    /// `crate-loader load` for crate `<namespace>/demo` (uid `uid-1`) with a hermetic
    /// environment; add arguments and run it with [`Fixture::run`].
    fn command(&self) -> Command {
        let mut cmd = loader();
        for var in CLUSTER_ENV {
            cmd.env_remove(var);
        }
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd.args([
            "load",
            "--allow-insecure-transport",
            "--timeout",
            self.timeout,
            "--crate-name",
            NAME,
            "--crate-namespace",
            &self.namespace,
            "--crate-uid",
            UID,
            "--path",
            &self.path,
            "--repo",
            &self.url,
            "--termination-message-path",
        ])
        .arg(self.termination_log());
        cmd
    }

    /// [`Fixture::command`] with the fixture's credentials and `args`, run.
    fn load(&self, args: &[&str]) -> Ran {
        let mut cmd = self.command();
        if let Some(credentials) = &self.credentials {
            cmd.arg("--credentials-dir").arg(credentials);
        }
        self.run(cmd.args(args))
    }

    fn run(&self, cmd: &mut Command) -> Ran {
        let log = self.termination_log();
        if log.exists() {
            std::fs::remove_file(&log).expect("remove the last termination message");
        }
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().expect("crate-loader runs");
        let stdout = String::from_utf8(stdout).expect("utf-8 stdout");
        let stderr = String::from_utf8(stderr).expect("utf-8 stderr");
        let message = std::fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("no termination message ({e}):\n{stdout}\n{stderr}"));
        let result: LoadResult = serde_json::from_str(&message)
            .unwrap_or_else(|e| panic!("termination message is not a LoadResult ({e}): {message}"));
        Ran {
            code: status.code().expect("exited normally"),
            stdout,
            stderr,
            message,
            result,
        }
    }

    /// The datasource as the API server holds it.
    fn datasource(&self) -> Option<Value> {
        self.kube.get(NAME)
    }

    /// A successful first load; the logs of both servers are cleared afterwards.
    fn load_once(&self) -> Value {
        let ran = self.load(&[]);
        ran.assert_outcome(Outcome::Loaded);
        if let GitServer::Http(http) = &self.git {
            http.clear();
        }
        self.kube.clear_requests();
        self.datasource().expect("applied")
    }
}

/// One run of the loader.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    /// The termination message as written.
    message: String,
    result: LoadResult,
}

impl Ran {
    /// Asserts the outcome, its exit code, and that stdout carries the termination message.
    fn assert_outcome(&self, outcome: Outcome) -> &Ran {
        assert_eq!(
            (self.result.outcome, self.code),
            (outcome, outcome.exit_code()),
            "{self}"
        );
        assert_eq!(self.stdout.trim_end(), self.message, "stdout is the result");
        assert!(self.message.len() <= TERMINATION_MESSAGE_LIMIT, "{self}");
        if outcome != Outcome::TimedOut {
            // (the watchdog's result does not name the datasource)
            assert_eq!(self.result.datasource.as_deref(), Some(NAME), "{self}");
        }
        self
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\ntermination message: {}\nstderr:\n{}",
            self.code, self.message, self.stderr
        )
    }
}

fn revision(commit: &str) -> String {
    format!("main@sha1:{commit}")
}

fn annotation<'a>(ds: &'a Value, key: &str) -> &'a Value {
    &ds["metadata"]["annotations"][format!("xlscsde.nhs.uk/{key}")]
}

fn summaries(requests: &[Recorded]) -> Vec<String> {
    requests.iter().map(Recorded::summary).collect()
}

/// What the old operator left in `namespace`: the crate labels, no owner, a stale spec.
fn old_operator_datasource(namespace: &str, extra_spec: &Value) -> Value {
    let mut spec = json!({"type": "Uploaded", "displayName": "Old name", "license": "old"});
    for (k, v) in extra_spec.as_object().expect("spec object") {
        spec[k] = v.clone();
    }
    json!({
        "metadata": {"labels": {LABEL_CRATE: NAME, LABEL_CRATE_NAMESPACE: namespace}},
        "spec": spec,
    })
}

#[test]
fn a_new_crate_is_applied_as_a_datasource_owned_by_the_crate() {
    let fx = Fixture::http(example_repo());
    let ran = fx.load(&[]);
    ran.assert_outcome(Outcome::Loaded);
    let head = fx.head();
    assert_eq!(ran.result.commit.as_deref(), Some(head.as_str()));
    assert_eq!(ran.result.revision, Some(revision(&head)));
    assert_eq!(ran.result.warnings, 1, "the example's Organisation quirk");
    // The test server filters nothing: protocol v2, every object of the tip.
    assert_eq!(ran.result.fetch, Some(FetchMode::Full), "{ran}");
    assert!(
        ran.result
            .message
            .contains(&format!("applied datasource {}", fx.datasource_name())),
        "{ran}"
    );

    let ds = fx.datasource().expect("datasource created");
    let root = example_root();
    assert_eq!(ds["spec"]["type"], "Uploaded");
    assert_eq!(ds["spec"]["displayName"], root["name"]);
    assert_eq!(ds["spec"]["description"], root["description"]);
    assert_eq!(
        ds["spec"]["license"],
        "MIT (https://opensource.org/licenses/MIT)"
    );
    assert_eq!(ds["spec"]["publisher"]["organisation"], "LSC SDE");
    assert_eq!(ds["spec"]["project"]["id"], "CR8TOR-017");
    assert_eq!(
        ds["metadata"]["labels"],
        json!({LABEL_CRATE: NAME, LABEL_CRATE_NAMESPACE: fx.namespace})
    );
    let owners = ds["metadata"]["ownerReferences"]
        .as_array()
        .expect("owner references");
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (
            &owners[0]["apiVersion"],
            &owners[0]["kind"],
            &owners[0]["name"],
            &owners[0]["uid"],
            &owners[0]["controller"]
        ),
        (
            &json!("xlscsde.nhs.uk/v1"),
            &json!("AnalyticsCrate"),
            &json!(NAME),
            &json!(UID),
            &json!(true)
        )
    );
    assert_eq!(annotation(&ds, "revision"), &json!(revision(&head)));
    assert_eq!(annotation(&ds, "source-url"), &json!(fx.url));
    assert_eq!(annotation(&ds, "metadata-path"), &json!(PATH));
    assert!(
        annotation(&ds, "load-inputs")
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{ds}"
    );

    let requests = fx.kube.requests();
    assert!(
        requests.iter().all(|r| r.user == fx.kube.user()),
        "the bearer token went with every request: {requests:?}"
    );
    assert_eq!(requests.len(), 2, "{:?}", summaries(&requests));
    assert_eq!(fx.kube.connections(), 1, "hyper kept the connection alive");
    let (read, patch) = (&requests[0], &requests[1]);
    let ds_path = fx.kube.path(NAME);
    assert_eq!(
        (read.verb.as_str(), read.path.as_str(), read.status),
        ("get", ds_path.as_str(), 404)
    );
    assert_eq!(
        (patch.verb.as_str(), patch.path.as_str(), patch.status),
        ("patch", ds_path.as_str(), 201)
    );
    assert_eq!(
        patch.query_param("fieldManager").as_deref(),
        Some("crate-loader")
    );
    assert_eq!(patch.query_param("force").as_deref(), Some("true"));
    // The apiserver records an apply patch (Content-Type application/apply-patch+yaml) as
    // operation Apply; any other patch type would be an Update.
    let applied = ds["metadata"]["managedFields"]
        .as_array()
        .expect("managed fields")
        .iter()
        .find(|f| f["manager"] == "crate-loader")
        .expect("crate-loader manages fields");
    assert_eq!(applied["operation"], "Apply", "{applied}");
    let body = &patch.body;
    assert!(body.is_object(), "the apply body is JSON: {body}");
    for field in ["connections", "approvals"] {
        assert!(body["spec"].get(field).is_none(), "{field} claimed: {body}");
    }
    assert!(body.get("status").is_none(), "status claimed: {body}");
    assert_eq!(
        fx.kube.owned_fields(NAME, "crate-loader").len(),
        6 + 2 + 4 + 1,
        "six spec fields, two labels, four annotations, one owner reference"
    );
}

#[test]
fn an_unchanged_head_is_up_to_date_without_fetching_objects_or_applying() {
    let fx = Fixture::http(example_repo());
    let before = fx.load_once();
    let head = fx.head();

    let ran = fx.load(&["--last-commit", &head]);
    ran.assert_outcome(Outcome::UpToDate);
    assert_eq!(ran.result.commit.as_deref(), Some(head.as_str()));
    assert_eq!(ran.result.revision, Some(revision(&head)));
    assert!(ran.result.message.contains("fetched no objects"), "{ran}");

    let git = fx.http_server().request_log();
    assert!(!git.is_empty(), "the branch head was listed");
    assert!(
        git.iter().all(|r| !r.is_fetch()),
        "objects were fetched: {:?}",
        fx.http_server().requests()
    );
    assert_eq!(
        summaries(&fx.kube.requests()),
        [format!("get {} 200", fx.kube.path(NAME))],
        "one read, no PATCH"
    );
    assert_eq!(fx.datasource(), Some(before));
}

#[test]
fn changed_inputs_at_the_same_head_are_applied_again() {
    let fx = Fixture::http(example_repo());
    let before = fx.load_once();
    let head = fx.head();

    // The fallback display name is one of the load inputs, even when the crate has its own.
    let ran = fx.load(&["--last-commit", &head, "--display-name", "Fallback name"]);
    ran.assert_outcome(Outcome::Loaded);
    assert_eq!(ran.result.revision, Some(revision(&head)));
    assert!(
        fx.http_server().request_log().iter().any(Request::is_fetch),
        "{:?}",
        fx.http_server().requests()
    );
    assert_eq!(fx.kube.patches().len(), 1);
    let after = fx.datasource().expect("datasource");
    assert_ne!(
        annotation(&after, "load-inputs"),
        annotation(&before, "load-inputs")
    );
    assert_eq!(
        annotation(&after, "revision"),
        annotation(&before, "revision")
    );
    assert_eq!(after["spec"], before["spec"], "the crate's own name wins");

    // and the next run with the same inputs is a no-op again
    let ran = fx.load(&["--last-commit", &head, "--display-name", "Fallback name"]);
    ran.assert_outcome(Outcome::UpToDate);
}

#[test]
fn a_new_commit_is_applied_with_its_new_revision() {
    let fx = Fixture::daemon(example_repo());
    let before = fx.load_once();
    let old_head = fx.head();
    fx.repo
        .update(|b| {
            b.file(META, crate_named("Renamed dataset"))
                .commit("rename")
        })
        .expect("new commit");
    let new_head = fx.head();
    assert_ne!(old_head, new_head);

    let ran = fx.load(&["--last-commit", &old_head]);
    ran.assert_outcome(Outcome::Loaded);
    assert_eq!(ran.result.commit.as_deref(), Some(new_head.as_str()));
    assert_eq!(ran.result.revision, Some(revision(&new_head)));
    let after = fx.datasource().expect("datasource");
    assert_eq!(after["spec"]["displayName"], "Renamed dataset");
    assert_eq!(annotation(&after, "revision"), &json!(revision(&new_head)));
    assert_eq!(
        annotation(&after, "load-inputs"),
        annotation(&before, "load-inputs")
    );
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(fx.kube.patches().len(), 1);
}

#[test]
fn a_data_entity_missing_from_the_commit_is_a_warning_and_the_crate_still_loads() {
    let repo = example_repo_without(&["bagit/data/data/cr8-ingress.yaml"]);
    let fx = Fixture::http(repo);
    let ran = fx.load(&[]);
    ran.assert_outcome(Outcome::Loaded);
    assert_eq!(ran.result.warnings, 2, "{ran}");
    assert!(
        ran.stderr
            .contains("File 'data/cr8-ingress.yaml' is described but not in the crate"),
        "{ran}"
    );
}

#[test]
fn a_field_the_crate_no_longer_has_is_removed_from_the_datasource() {
    let fx = Fixture::http(example_repo());
    let before = fx.load_once();
    assert!(before["spec"].get("license").is_some());
    let mut doc: Value = serde_json::from_str(EXAMPLE_CRATE).expect("example crate is JSON");
    for entity in doc["@graph"].as_array_mut().expect("@graph") {
        if entity["@id"] == "./" {
            entity.as_object_mut().expect("root").remove("license");
        }
    }
    fx.repo
        .update(|b| b.file(META, doc.to_string()).commit("drop the licence"))
        .expect("new commit");

    let ran = fx.load(&["--last-commit", &before_commit(&before)]);
    ran.assert_outcome(Outcome::Loaded);
    assert!(
        ran.result.warnings > 1,
        "a missing licence is a warning: {ran}"
    );
    let after = fx.datasource().expect("datasource");
    assert!(after["spec"].get("license").is_none(), "{after}");
    assert_eq!(after["spec"]["displayName"], before["spec"]["displayName"]);
}

/// The commit a datasource's revision annotation names.
fn before_commit(ds: &Value) -> String {
    annotation(ds, "revision")
        .as_str()
        .and_then(|r| r.strip_prefix("main@sha1:"))
        .expect("revision annotation")
        .to_owned()
}

#[test]
fn connections_approvals_and_status_set_by_others_survive_every_reload() {
    let connections = json!([{
        "type": "databricks",
        "name": "warehouse",
        "databricksConnection": {"hostName": "adb.example", "httpPath": "/sql/1"},
    }]);
    let approvals = json!([{
        "type": "data-owner",
        "name": "Ada Owner",
        "email": "ada@example.org",
        "jobTitle": "Caldicott Guardian",
        "approvalGiven": "2025-01-02T03:04:05Z",
    }]);
    let fx = Fixture::http(example_repo());
    let mut seeded = old_operator_datasource(
        &fx.namespace,
        &json!({"connections": connections, "approvals": approvals}),
    );
    seeded["status"] = json!({"statusText": "Ready"});
    fx.kube.seed(NAME, seeded);

    fx.load(&[]).assert_outcome(Outcome::Loaded);
    fx.repo
        .update(|b| b.file(META, crate_named("Second name")).commit("rename"))
        .expect("new commit");
    fx.load(&[]).assert_outcome(Outcome::Loaded);

    let ds = fx.datasource().expect("datasource");
    assert_eq!(ds["spec"]["displayName"], "Second name");
    assert_eq!(ds["spec"]["connections"], connections);
    assert_eq!(ds["spec"]["approvals"], approvals);
    assert_eq!(ds["status"], json!({"statusText": "Ready"}));
    for patch in fx.kube.patches() {
        let body = &patch.body;
        assert!(body["spec"].get("connections").is_none(), "{body}");
        assert!(body["spec"].get("approvals").is_none(), "{body}");
        assert!(body.get("status").is_none(), "{body}");
    }
    let ours = fx.kube.owned_fields(NAME, "crate-loader");
    assert!(
        !ours
            .iter()
            .any(|f| f == "spec.connections" || f == "spec.approvals"),
        "{ours:?}"
    );
}

#[test]
fn an_invalid_crate_in_a_new_commit_leaves_the_applied_datasource_unchanged() {
    let fx = Fixture::http(example_repo());
    let before = fx.load_once();
    let old_head = fx.head();
    fx.repo
        .update(|b| b.file(META, r#"{"@graph": {}}"#).commit("break the crate"))
        .expect("new commit");
    let new_head = fx.head();

    let ran = fx.load(&["--last-commit", &old_head]);
    ran.assert_outcome(Outcome::InvalidCrate);
    assert_eq!(ran.result.commit.as_deref(), Some(new_head.as_str()));
    assert_eq!(ran.result.revision, Some(revision(&new_head)));
    let message = &ran.result.message;
    assert!(
        message.starts_with(&format!(
            "failed to validate {PATH} at {}",
            revision(&new_head)
        )),
        "{ran}"
    );
    assert!(
        message.contains("@context") && message.contains("@graph"),
        "{ran}"
    );
    assert!(
        fx.kube.patches().is_empty(),
        "{:?}",
        summaries(&fx.kube.requests())
    );
    assert_eq!(fx.datasource(), Some(before));
}

#[test]
fn a_deleted_datasource_is_applied_again_even_when_the_head_is_unchanged() {
    let fx = Fixture::http(example_repo());
    let before = fx.load_once();
    fx.kube.delete(NAME);

    let ran = fx.load(&["--last-commit", &fx.head()]);
    ran.assert_outcome(Outcome::Loaded);
    let after = fx.datasource().expect("recreated");
    assert_eq!(after["spec"], before["spec"]);
    assert_eq!(
        after["metadata"]["annotations"],
        before["metadata"]["annotations"]
    );
    assert_ne!(after["metadata"]["uid"], before["metadata"]["uid"]);
}

#[test]
fn a_datasource_labelled_for_the_crate_by_the_old_operator_is_adopted() {
    let fx = Fixture::daemon(example_repo());
    fx.kube
        .seed(NAME, old_operator_datasource(&fx.namespace, &json!({})));
    let uid = fx.datasource().expect("seeded")["metadata"]["uid"].clone();

    let ran = fx.load(&[]);
    ran.assert_outcome(Outcome::Loaded);
    assert!(ran.stderr.contains("adopting"), "{ran}");
    let ds = fx.datasource().expect("datasource");
    assert_eq!(ds["metadata"]["uid"], uid, "the same object, not a new one");
    let owners = ds["metadata"]["ownerReferences"]
        .as_array()
        .expect("owner references");
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (&owners[0]["uid"], &owners[0]["controller"]),
        (&json!(UID), &json!(true))
    );
    assert_eq!(ds["spec"]["displayName"], example_root()["name"]);
    assert_eq!(
        ds["spec"]["license"],
        "MIT (https://opensource.org/licenses/MIT)"
    );
    assert_eq!(annotation(&ds, "revision"), &json!(revision(&fx.head())));

    // adopted, it is ours: the next run with the same head is a no-op
    fx.load(&["--last-commit", &fx.head()])
        .assert_outcome(Outcome::UpToDate);
}

/// Seeds what `existing` makes for the namespace, loads, and checks the load is a conflict that
/// touched nothing and says `why` (with `{namespace}` standing for the namespace).
fn assert_conflict(existing: impl Fn(&str) -> Value, why: &str) {
    let fx = Fixture::http(example_repo());
    fx.kube.seed(NAME, existing(&fx.namespace));
    let before = fx.datasource();

    let ran = fx.load(&[]);
    ran.assert_outcome(Outcome::Conflict);
    assert!(
        ran.result.message.starts_with(&format!(
            "failed to take over datasource {}",
            fx.datasource_name()
        )),
        "{ran}"
    );
    let why = why.replace("{namespace}", &fx.namespace);
    assert!(ran.result.message.contains(&why), "{ran}");
    assert_eq!(ran.result.commit, None, "decided before fetching: {ran}");
    assert!(
        fx.http_server().request_log().is_empty(),
        "{:?}",
        fx.http_server().requests()
    );
    assert!(
        fx.kube.patches().is_empty(),
        "{:?}",
        summaries(&fx.kube.requests())
    );
    assert_eq!(fx.datasource(), before);
}

#[test]
fn a_hand_made_datasource_without_the_crate_labels_is_a_conflict_and_left_alone() {
    assert_conflict(
        |_| json!({"spec": {"displayName": "Made by hand"}}),
        "lacks the labels xlscsde.nhs.uk/crate=demo and xlscsde.nhs.uk/crateNamespace={namespace})",
    );
}

#[test]
fn a_datasource_labelled_for_another_crate_is_a_conflict_and_left_alone() {
    assert_conflict(
        |namespace| {
            json!({
                "metadata": {"labels": {LABEL_CRATE: "other", LABEL_CRATE_NAMESPACE: namespace}},
                "spec": {"displayName": "Another crate's"},
            })
        },
        "lacks the labels",
    );
}

#[test]
fn a_datasource_controlled_by_another_owner_is_a_conflict_even_with_the_crate_labels() {
    let existing = |namespace: &str| {
        let mut existing = old_operator_datasource(namespace, &json!({}));
        existing["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "xlscsde.nhs.uk/v1",
            "kind": "AnalyticsCrate",
            "name": "demo",
            "uid": "uid-of-a-deleted-and-recreated-crate",
            "controller": true,
        }]);
        existing
    };
    assert_conflict(
        existing,
        "controlled by AnalyticsCrate demo (uid uid-of-a-deleted-and-recreated-crate)",
    );
}

/// Asserts that neither git token appears in the run's output or in what the API server got,
/// and that the API token does not appear in the output either.
fn assert_no_token_leaked(fx: &Fixture, ran: &Ran) {
    for output in [&ran.stdout, &ran.stderr, &ran.message] {
        assert!(!output.contains(fx.kube.token()), "API token leaked: {ran}");
    }
    let bodies: Vec<String> = fx
        .kube
        .requests()
        .into_iter()
        .map(|r| r.body.to_string())
        .collect();
    for token in [TOKEN, WRONG_TOKEN] {
        assert!(!ran.stdout.contains(token), "token on stdout: {ran}");
        assert!(!ran.stderr.contains(token), "token on stderr: {ran}");
        assert!(!ran.message.contains(token), "token in the result: {ran}");
        assert!(
            !bodies.iter().any(|b| b.contains(token)),
            "token sent to the API server: {bodies:?}"
        );
    }
}

#[test]
fn a_rejected_git_token_fails_authentication_and_never_leaks() {
    let fx = Fixture::http(example_repo());
    let wrong = fx.credentials_with("wrong-credentials", WRONG_TOKEN);
    let ran = fx.run(
        fx.command()
            .args(["--log-level", "trace", "--credentials-dir"])
            .arg(&wrong),
    );
    ran.assert_outcome(Outcome::AuthenticationFailed);
    assert!(fx.kube.patches().is_empty());
    assert_eq!(fx.datasource(), None);
    assert!(
        fx.http_server()
            .request_log()
            .iter()
            .any(|r| r.status == 401),
        "{:?}",
        fx.http_server().requests()
    );
    assert_no_token_leaked(&fx, &ran);
}

#[test]
fn the_git_token_never_leaks_from_a_successful_load() {
    let fx = Fixture::http(example_repo());
    let ran = fx.load(&["--log-level", "trace"]);
    ran.assert_outcome(Outcome::Loaded);
    assert!(
        fx.http_server()
            .request_log()
            .iter()
            .any(|r| r.authorization),
        "the token was used"
    );
    assert_no_token_leaked(&fx, &ran);
}

#[test]
fn a_forbidden_apply_is_a_transient_failure_that_names_the_service_account() {
    // The Role lacks `patch`: the apiserver's own refusal, as when the manager's Role is wrong.
    let fx = Fixture::http_granting(example_repo(), &["get", "create"]);
    let ran = fx.load(&[]);
    ran.assert_outcome(Outcome::ApplyFailed);
    assert!(!Outcome::ApplyFailed.is_permanent());
    let message = &ran.result.message;
    assert!(
        message.starts_with(&format!(
            "failed to apply datasource {}",
            fx.datasource_name()
        )),
        "{ran}"
    );
    assert!(message.contains("ServiceAccount"), "{ran}");
    assert!(message.contains("cannot patch resource"), "{ran}");
    assert_eq!(ran.result.revision, Some(revision(&fx.head())));
    assert_eq!(fx.datasource(), None);
}

/// A ValidatingAdmissionPolicy refusing, as `Invalid` (422), datasources in `namespace` whose
/// display name is longer than 10 characters, as a platform's own policy might. Returns once
/// the apiserver enforces it (it learns of policies from a watch).
fn refuse_long_display_names(fx: &Fixture) {
    let namespace = &fx.namespace;
    let policy = format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: display-name-limit}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [xlscsde.nhs.uk]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [analyticsdatasources]
  validations:
  - expression: '!has(object.spec.displayName) || object.spec.displayName.size() <= 10'
    message: 'spec.displayName: Too long: may not be longer than 10'
    reason: Invalid
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: display-name-limit-{namespace}}}
spec:
  policyName: display-name-limit
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {namespace}}}
"
    );
    let plane = fx.kube.plane;
    kubectl_with_input(plane.kubectl().args(["apply", "-f", "-"]), Some(&policy))
        .expect("policy applied");
    let probe = json!({
        "apiVersion": "xlscsde.nhs.uk/v1",
        "kind": "AnalyticsDataSource",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {"displayName": "longer than ten"},
    })
    .to_string();
    wait_until("the admission policy taking effect", || {
        let mut dry_run = plane.kubectl();
        dry_run.args(["apply", "--server-side", "--dry-run=server", "-f", "-"]);
        kubectl_with_input(&mut dry_run, Some(&probe))
            .is_err_and(|e| e.to_string().contains("Too long"))
    });
}

#[test]
fn an_apply_rejected_as_invalid_is_an_invalid_crate() {
    let fx = Fixture::http(example_repo());
    refuse_long_display_names(&fx);
    let ran = fx.load(&[]);
    ran.assert_outcome(Outcome::InvalidCrate);
    let message = &ran.result.message;
    assert!(message.contains("rejected it as invalid"), "{ran}");
    assert!(message.contains("spec.displayName: Too long"), "{ran}");
    assert_eq!(fx.datasource(), None);
}

#[test]
fn a_failed_read_of_the_existing_datasource_is_a_transient_failure_before_any_fetch() {
    // The Role lacks `get`: the apiserver refuses the read.
    let fx = Fixture::http_granting(example_repo(), &["create", "patch"]);
    let ran = fx.load(&[]);
    ran.assert_outcome(Outcome::ApplyFailed);
    assert!(
        ran.result.message.starts_with(&format!(
            "failed to read datasource {}",
            fx.datasource_name()
        )),
        "{ran}"
    );
    assert!(fx.http_server().request_log().is_empty());
    assert!(fx.kube.patches().is_empty());
}

#[test]
fn an_api_server_that_rejects_the_loader_token_is_a_transient_failure() {
    let fx = Fixture::http(example_repo());
    let kubeconfig = std::fs::read_to_string(&fx.kubeconfig).expect("kubeconfig");
    let expired = fx.dir.path().join("kubeconfig-with-an-expired-token");
    std::fs::write(
        &expired,
        kubeconfig.replace(fx.kube.token(), "expired-token"),
    )
    .expect("write kubeconfig");
    let ran = fx.run(fx.command().env("KUBECONFIG", &expired));
    ran.assert_outcome(Outcome::ApplyFailed);
    assert!(
        ran.result.message.starts_with(&format!(
            "failed to read datasource {}",
            fx.datasource_name()
        )),
        "{ran}"
    );
    assert!(ran.result.message.contains("Unauthorized"), "{ran}");
    let requests = fx.kube.requests();
    assert!(!requests.is_empty(), "the apiserver saw the loader");
    assert!(
        requests.iter().all(|r| r.status == 401),
        "{:?}",
        summaries(&requests)
    );
}

#[test]
fn an_api_server_that_never_answers_is_given_up_on_at_the_timeout() {
    let mut fx = Fixture::http(example_repo());
    fx.timeout = "1s";
    let tarpit = Tarpit::start().expect("tarpit");
    let kubeconfig = std::fs::read_to_string(&fx.kubeconfig).expect("kubeconfig");
    let silent = fx.dir.path().join("kubeconfig-of-a-silent-server");
    let url = format!("https://{}", tarpit.addr());
    std::fs::write(&silent, kubeconfig.replace(&fx.kube.url(), &url)).expect("write kubeconfig");
    let started = Instant::now();
    let ran = fx.run(fx.command().env("KUBECONFIG", &silent));
    ran.assert_outcome(Outcome::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        tarpit.connections() > 0,
        "the loader did call the silent server"
    );
    assert!(fx.http_server().request_log().is_empty(), "nothing fetched");
}

#[test]
fn the_termination_message_stays_within_4_kib_for_a_crate_with_hundreds_of_errors() {
    // 500 entities without @id, each named at length, at a path as long as spec.path may be
    // (1024 characters, here of 4 bytes each), so that the untruncated message would not fit
    let mut graph = vec![
        json!({"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": {"@id": "./"}}),
        json!({"@id": "./", "@type": "Dataset", "name": "Broken"}),
    ];
    graph.extend((0..500).map(|i| json!({"name": format!("entity {i} {}", "x".repeat(300))})));
    let content = json!({"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": graph});
    let dirs: Vec<String> = (0..4)
        .map(|i| format!("{i:02}dd{}", "\u{1d521}".repeat(238)))
        .collect();
    let long_path = format!("{}/ro-crate-metadata.json", dirs.join("/"));
    let repo = RepoBuilder::new()
        .file(&long_path, content.to_string())
        .commit("hundreds of errors")
        .build_bare()
        .expect("repo");
    let mut fx = Fixture::daemon(repo);
    fx.path = format!("/{long_path}");

    let ran = fx.load(&[]);
    ran.assert_outcome(Outcome::InvalidCrate);
    assert!(
        ran.message.len() <= TERMINATION_MESSAGE_LIMIT,
        "{} bytes",
        ran.message.len()
    );
    assert!(ran.result.message.ends_with('…'), "shortened: {ran}");
    assert!(
        ran.result.message.starts_with("failed to validate /00dd"),
        "{ran}"
    );
    assert_eq!(ran.result.revision, Some(revision(&fx.head())));
    assert!(
        ran.stderr.matches("has no @id").count() >= 200,
        "the log has the errors the message has no room for"
    );
}

#[test]
fn without_a_cluster_configuration_the_load_is_an_internal_failure() {
    let fx = Fixture::http(example_repo());
    let mut cmd = fx.command();
    cmd.env("KUBECONFIG", fx.dir.path().join("no-such-kubeconfig"));
    let ran = fx.run(&mut cmd);
    ran.assert_outcome(Outcome::Internal);
    let message = &ran.result.message;
    assert!(
        message.starts_with("failed to configure the Kubernetes client"),
        "{ran}"
    );
    assert!(
        message.contains("no-such-kubeconfig") && message.contains("in-cluster"),
        "says what was tried: {ran}"
    );
    assert!(fx.kubeconfig.exists(), "only the variable was wrong");
    assert!(fx.kube.requests().is_empty());
    assert!(fx.http_server().request_log().is_empty(), "nothing fetched");
}
