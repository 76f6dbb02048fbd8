//! A fake Kubernetes API server: just enough of the API for `kube::Client` to read and
//! server-side-apply namespaced `AnalyticsDataSource`s (`xlscsde.nhs.uk/v1`), which is all
//! `crate-loader load` does.
//!
//! Plain HTTP/1.1 on `127.0.0.1`: kube's rustls connector is built `https_or_http`, so a
//! kubeconfig whose cluster `server` is `http://…` works without any special option (see
//! [`FakeKubeApi::kubeconfig`]). Connections are kept alive for as many requests as the client
//! sends (hyper pools them), unless a request says `Connection: close`. Every request needs
//! `Authorization: Bearer <token>`; without it the answer is `401`.
//!
//! Served, and nothing else (everything else is a `404` `Status`):
//! - `GET /apis/xlscsde.nhs.uk/v1/namespaces/{ns}/analyticsdatasources/{name}`: the stored
//!   object, or `404` with a `NotFound` `Status` (which kube's `get_opt` turns into `None`);
//! - `PATCH` on the same path with `Content-Type: application/apply-patch+yaml` and
//!   `?fieldManager=…[&force=true]`: server-side apply, emulated at the granularity the loader
//!   needs. The body must be JSON (which is YAML too; kube sends JSON).
//!
//! ## How apply is emulated
//!
//! Each stored object remembers which field manager owns which field, at this granularity:
//! a top-level key of `spec`, one label, one annotation, one owner reference (by `uid`), any
//! other key of `metadata` or of the object. An apply by manager `M` then works like the real
//! thing does for such fields:
//! - a field in the body whose value differs from the stored one and which another manager owns
//!   is a conflict: `409 Conflict` unless `force=true`, which takes the field over;
//! - every field in the body is set to the body's value and is (also) owned by `M`;
//! - a field `M` applied before but left out now loses `M` as owner, and is removed when no
//!   manager owns it any more;
//! - fields `M` never applied (`spec.connections` set by a person, say) are left alone;
//! - `status` in the body is ignored (the status is a subresource), as are `uid`,
//!   `resourceVersion` and the other fields the server sets.
//!
//! An absent object is created (`201`) with `metadata.uid`, `resourceVersion`, `generation` and
//! `creationTimestamp`; `resourceVersion` changes whenever the object does, `generation` when
//! its `spec` does. Objects made with [`FakeKubeApi::seed`] are owned by [`SEED_MANAGER`], as if
//! a person or the previous operator had created them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::{self, Write as _};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::Result;
use crate::server::{AcceptLoop, MAX_HEADERS, bad_request, lock, read_line};

/// API group and version of the one resource served.
pub const API_VERSION: &str = "xlscsde.nhs.uk/v1";
/// Kind of the one resource served.
pub const KIND: &str = "AnalyticsDataSource";
/// The field manager that owns everything in an object made with [`FakeKubeApi::seed`].
pub const SEED_MANAGER: &str = "seed";
/// Content type of a server-side apply request.
pub const APPLY_PATCH_CONTENT_TYPE: &str = "application/apply-patch+yaml";

const GROUP: &str = "xlscsde.nhs.uk";
const PLURAL: &str = "analyticsdatasources";
/// Path prefix of the namespaced resources of the group.
const PREFIX: &str = "/apis/xlscsde.nhs.uk/v1/namespaces/";
/// Largest request body accepted (the real API server's limit is about 3 MiB too).
const MAX_BODY: usize = 3 * 1024 * 1024;
/// Environment variables that would make a Kubernetes client look somewhere other than the
/// kubeconfig a test gives it (see [`clear_cluster_env`]).
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

/// Removes from `cmd`'s environment everything that would point a Kubernetes client elsewhere
/// than the kubeconfig a test sets afterwards: `KUBECONFIG`, the in-cluster
/// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, kube-rs' `KUBE_RS_DEBUG_*` overrides and
/// the proxy variables (kube 5 reads `HTTPS_PROXY` even for an `http://` server, and refuses to
/// start when the proxy feature is off).
pub fn clear_cluster_env(cmd: &mut Command) -> &mut Command {
    for var in CLUSTER_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// One request as the fake saw it (see [`FakeKubeApi::requests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// The path, without the query (`/apis/xlscsde.nhs.uk/v1/namespaces/sde/analyticsdatasources/demo`).
    pub path: String,
    /// The raw query string, without `?` (`fieldManager=crate-loader&force=true`), or empty.
    pub query: String,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The request body (lossy UTF-8).
    pub body: String,
    /// Whether the request carried the right bearer token.
    pub authorized: bool,
    /// The status answered.
    pub status: u16,
}

impl Recorded {
    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// `METHOD path?query status`, e.g.
    /// `PATCH /apis/xlscsde.nhs.uk/v1/namespaces/sde/analyticsdatasources/demo?fieldManager=crate-loader&force=true 201`.
    pub fn summary(&self) -> String {
        let query = if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query)
        };
        format!("{} {}{query} {}", self.method, self.path, self.status)
    }
}

/// A failure to answer instead of serving a request (see [`FakeKubeApi::fail_next`]).
#[derive(Debug, Clone)]
struct Injected {
    method: String,
    code: u16,
    reason: String,
    message: Option<String>,
}

/// A field an apply can own (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    /// `spec.<key>`
    Spec(String),
    /// `metadata.labels.<key>`
    Label(String),
    /// `metadata.annotations.<key>`
    Annotation(String),
    /// The element of `metadata.ownerReferences` with this `uid`.
    OwnerReference(String),
    /// `metadata.<key>`, other than the above and what the server sets.
    Metadata(String),
    /// `<key>` at the top level, other than `apiVersion`, `kind`, `metadata`, `spec`, `status`.
    Top(String),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Spec(k) => write!(f, "spec.{k}"),
            Field::Label(k) => write!(f, "metadata.labels.{k}"),
            Field::Annotation(k) => write!(f, "metadata.annotations.{k}"),
            Field::OwnerReference(uid) => write!(f, "metadata.ownerReferences[uid={uid}]"),
            Field::Metadata(k) => write!(f, "metadata.{k}"),
            Field::Top(k) => f.write_str(k),
        }
    }
}

/// Keys of `metadata` the server sets or that identify the object: never owned by an apply.
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];
/// Top-level keys never owned as a whole by an apply.
const SYSTEM_TOP: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// A stored object and who owns which of its fields.
#[derive(Debug, Clone)]
struct Stored {
    object: Map<String, Value>,
    owners: BTreeMap<Field, BTreeSet<String>>,
}

/// Everything behind the one lock: objects, the request log, injected failures.
#[derive(Debug, Default)]
struct Store {
    objects: BTreeMap<(String, String), Stored>,
    requests: Vec<Recorded>,
    failures: VecDeque<Injected>,
    /// Last `resourceVersion` handed out (one counter for all objects, as etcd's revision).
    revision: u64,
    /// Objects created so far, for uids.
    created: u64,
}

#[derive(Debug)]
struct State {
    token: String,
    /// Number of this fake in the process, for uids.
    instance: u64,
    store: Mutex<Store>,
}

/// An answer: status code and JSON body.
#[derive(Debug)]
struct Answer {
    code: u16,
    body: Value,
}

impl Answer {
    fn ok(code: u16, object: &Map<String, Value>) -> Answer {
        Answer {
            code,
            body: Value::Object(object.clone()),
        }
    }

    /// A `metav1.Status` failure, with `details` when the request named an object.
    fn status(code: u16, reason: &str, message: &str, object: Option<&str>) -> Answer {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        });
        if let Some(name) = object {
            body["details"] = json!({"name": name, "group": GROUP, "kind": PLURAL});
        }
        Answer { code, body }
    }
}

/// Serves `analyticsdatasources` over `http://127.0.0.1:<port>`; stops when dropped.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use crate_test_support::FakeKubeApi;
/// let kube = FakeKubeApi::start()?;
/// let dir = tempfile::tempdir()?;
/// let kubeconfig = kube.kubeconfig(dir.path())?; // run the client with KUBECONFIG=<this>
/// kube.seed("sde", "demo", serde_json::json!({"spec": {"connections": []}}));
/// // ... run the client ...
/// let applied = kube.get("sde", "demo").expect("exists");
/// let patches = kube.patches();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FakeKubeApi {
    // Dropped first: stops accepting and closes the connections.
    accept: AcceptLoop,
    state: Arc<State>,
}

impl FakeKubeApi {
    /// Starts serving (ready at once: the listener is bound before this returns).
    pub fn start() -> Result<Self> {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let instance = INSTANCES.fetch_add(1, Ordering::SeqCst);
        let state = Arc::new(State {
            token: format!("fake-kube-token-{}-{instance}", std::process::id()),
            instance,
            store: Mutex::new(Store::default()),
        });
        let accept = {
            let state = Arc::clone(&state);
            AcceptLoop::start("fake-kube", move |stream, tracked| {
                let (state, tracked) = (Arc::clone(&state), Arc::clone(tracked));
                // On failure to spawn, the connection is just closed.
                let _ = std::thread::Builder::new()
                    .name("fake-kube-conn".to_owned())
                    .spawn(move || {
                        let id = tracked.track(&stream);
                        let _ = serve_connection(&stream, &state);
                        tracked.untrack(id);
                    });
            })?
        };
        Ok(Self { accept, state })
    }

    /// The address served (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.accept.addr()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.accept.addr())
    }

    /// The bearer token every request must carry.
    pub fn token(&self) -> &str {
        &self.state.token
    }

    /// Writes `dir/kubeconfig`, pointing at this server with its bearer token, and returns its
    /// path: run the client with `KUBECONFIG=<path>` (and see [`clear_cluster_env`]).
    ///
    /// kube 5's `Client::try_default()` accepts the `http://` server as it is: its rustls
    /// connector is built with `https_or_http()`, and a token is sent over plain HTTP too.
    pub fn kubeconfig(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: fake\n  user:\n    token: {token}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n",
            url = self.url(),
            token = self.state.token,
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Stores `object` as `namespace/name` (replacing any object there), as if a person or the
    /// previous operator had created it: [`SEED_MANAGER`] owns every field of it, so an apply
    /// removes none of them. `apiVersion`, `kind`, `metadata.name`, `metadata.namespace`, `uid`,
    /// `resourceVersion`, `generation` and `creationTimestamp` are filled in when missing, and
    /// `spec` defaults to `{}`.
    ///
    /// # Panics
    /// When `object` is not a JSON object or its labels, annotations or owner references are
    /// malformed (a broken test).
    pub fn seed(&self, namespace: &str, name: &str, object: Value) {
        let Value::Object(mut object) = object else {
            panic!("FakeKubeApi::seed takes a JSON object, not {object}");
        };
        object
            .entry("apiVersion")
            .or_insert_with(|| API_VERSION.into());
        object.entry("kind").or_insert_with(|| KIND.into());
        object.entry("spec").or_insert_with(|| json!({}));
        let mut store = lock(&self.state.store);
        let metadata = new_metadata(&mut store, self.state.instance, namespace, name);
        let existing = object
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap_or_else(|| panic!("FakeKubeApi::seed: metadata must be an object"));
        for (key, value) in metadata {
            existing.entry(key).or_insert(value);
        }
        let fields = fields_of(&object)
            .unwrap_or_else(|e| panic!("FakeKubeApi::seed: malformed object: {e}"));
        let owners = fields
            .into_keys()
            .map(|field| (field, BTreeSet::from([SEED_MANAGER.to_owned()])))
            .collect();
        store.objects.insert(
            (namespace.to_owned(), name.to_owned()),
            Stored { object, owners },
        );
    }

    /// The object stored as `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.state.store)
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|stored| Value::Object(stored.object.clone()))
    }

    /// Deletes the object stored as `namespace/name` (as `kubectl delete` would), returning it.
    pub fn delete(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.state.store)
            .objects
            .remove(&(namespace.to_owned(), name.to_owned()))
            .map(|stored| Value::Object(stored.object))
    }

    /// The fields of `namespace/name` that `manager` owns, e.g. `spec.displayName`,
    /// `metadata.labels.xlscsde.nhs.uk/crate`, `metadata.ownerReferences[uid=uid-1]`.
    pub fn owned_fields(&self, namespace: &str, name: &str, manager: &str) -> Vec<String> {
        lock(&self.state.store)
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|stored| {
                stored
                    .owners
                    .iter()
                    .filter(|(_, managers)| managers.contains(manager))
                    .map(|(field, _)| field.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every request so far, in the order they arrived. A request is logged before it is
    /// answered, so a client that has its answer (or has exited) finds its requests here.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.store).requests.clone()
    }

    /// The `PATCH` requests so far.
    pub fn patches(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect()
    }

    /// Forgets the requests logged so far.
    pub fn clear_requests(&self) {
        lock(&self.state.store).requests.clear();
    }

    /// Answers the next authorized request with `method` (`GET`, `PATCH`; any path) with a
    /// `Status` failure of `code` and `reason` (e.g. `403`, `"Forbidden"`; `422`, `"Invalid"`;
    /// `500`, `"InternalError"`) instead of serving it. Failures queue up in order.
    pub fn fail_next(&self, method: &str, code: u16, reason: &str) {
        self.push_failure(method, code, reason, None);
    }

    /// Like [`fail_next`](Self::fail_next), with the `Status` message to send.
    pub fn fail_next_with_message(&self, method: &str, code: u16, reason: &str, message: &str) {
        self.push_failure(method, code, reason, Some(message.to_owned()));
    }

    fn push_failure(&self, method: &str, code: u16, reason: &str, message: Option<String>) {
        lock(&self.state.store).failures.push_back(Injected {
            method: method.to_ascii_uppercase(),
            code,
            reason: reason.to_owned(),
            message,
        });
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accept.tracked().connections()
    }
}

/// The server-set metadata of a new object.
fn new_metadata(
    store: &mut Store,
    instance: u64,
    namespace: &str,
    name: &str,
) -> Map<String, Value> {
    store.created += 1;
    store.revision += 1;
    let mut metadata = Map::new();
    metadata.insert("name".into(), name.into());
    metadata.insert("namespace".into(), namespace.into());
    metadata.insert(
        "uid".into(),
        format!("{instance:08x}-0000-4000-8000-{:012x}", store.created).into(),
    );
    metadata.insert("resourceVersion".into(), store.revision.to_string().into());
    metadata.insert("generation".into(), 1.into());
    metadata.insert(
        "creationTimestamp".into(),
        rfc3339(SystemTime::now()).into(),
    );
    metadata
}

/// Serves requests on one connection until the client closes it or asks to.
fn serve_connection(stream: &TcpStream, state: &State) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader, &mut writer) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let answer = Answer::status(400, "BadRequest", &e.to_string(), None);
                return write_answer(&mut writer, &answer, true);
            }
            Err(e) => return Err(e),
        };
        let close = request.wants_close();
        let answer = state.handle(&request);
        write_answer(&mut writer, &answer, close)?;
        if close {
            return Ok(());
        }
    }
}

/// A parsed request.
#[derive(Debug)]
struct Incoming {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Incoming {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn wants_close(&self) -> bool {
        match self.header("Connection") {
            Some(v) if v.eq_ignore_ascii_case("close") => true,
            Some(v) if v.eq_ignore_ascii_case("keep-alive") => false,
            _ => self.http10,
        }
    }
}

/// Reads one request; `None` when the client closed the connection between requests.
/// Malformed requests are `InvalidData` errors.
fn read_request(
    reader: &mut impl BufRead,
    writer: &mut impl Write,
) -> io::Result<Option<Incoming>> {
    if reader.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let line = read_line(reader)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_request(&format!("bad request line {line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad_request(&format!("unsupported version {version:?}")));
    }
    let mut request = Incoming {
        method: method.to_owned(),
        target: target.to_owned(),
        http10: version == "HTTP/1.0",
        headers: Vec::new(),
        body: Vec::new(),
    };
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        if request.headers.len() >= MAX_HEADERS {
            return Err(bad_request("too many headers"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad_request(&format!("bad header line {line:?}")))?;
        request
            .headers
            .push((name.trim().to_owned(), value.trim().to_owned()));
    }
    if request
        .header("Expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    request.body = read_body(reader, &request)?;
    Ok(Some(request))
}

/// The body, by `Transfer-Encoding: chunked` or `Content-Length` (none without either).
fn read_body(reader: &mut impl BufRead, request: &Incoming) -> io::Result<Vec<u8>> {
    let too_large = || bad_request("request body too large");
    if let Some(te) = request.header("Transfer-Encoding") {
        if !te.eq_ignore_ascii_case("chunked") {
            return Err(bad_request(&format!(
                "unsupported Transfer-Encoding {te:?}"
            )));
        }
        let mut body = Vec::new();
        loop {
            let line = read_line(reader)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| bad_request(&format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // trailers, then the empty line
                while !read_line(reader)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(too_large());
            }
            read_exact_into(reader, size, &mut body)?;
            if !read_line(reader)?.is_empty() {
                return Err(bad_request("chunk not followed by CRLF"));
            }
        }
    }
    let Some(len) = request.header("Content-Length") else {
        return Ok(Vec::new());
    };
    let len: usize = len
        .parse()
        .map_err(|_| bad_request(&format!("bad Content-Length {len:?}")))?;
    if len > MAX_BODY {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(len);
    read_exact_into(reader, len, &mut body)?;
    Ok(body)
}

fn read_exact_into(reader: &mut impl BufRead, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    out.resize(start + len, 0);
    reader.read_exact(&mut out[start..])
}

fn write_answer(writer: &mut impl Write, answer: &Answer, close: bool) -> io::Result<()> {
    let body = answer.body.to_string();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        answer.code,
        reason_phrase(answer.code),
        body.len()
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(body.as_bytes())?;
    writer.flush()
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

impl State {
    /// Answers one request and logs it, under one lock (so the log and the objects agree).
    fn handle(&self, request: &Incoming) -> Answer {
        let (path, query) = request
            .target
            .split_once('?')
            .unwrap_or((request.target.as_str(), ""));
        let authorized = request
            .header("Authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t.trim() == self.token);
        let mut store = lock(&self.store);
        let answer = if authorized {
            self.route(&mut store, &request.method, path, query, request)
        } else {
            Answer::status(401, "Unauthorized", "Unauthorized", None)
        };
        store.requests.push(Recorded {
            method: request.method.clone(),
            path: path.to_owned(),
            query: query.to_owned(),
            content_type: request.header("Content-Type").map(str::to_owned),
            body: String::from_utf8_lossy(&request.body).into_owned(),
            authorized,
            status: answer.code,
        });
        answer
    }

    fn route(
        &self,
        store: &mut Store,
        method: &str,
        path: &str,
        query: &str,
        request: &Incoming,
    ) -> Answer {
        if let Some(i) = store.failures.iter().position(|f| f.method == method) {
            let failure = store.failures.remove(i).unwrap_or_else(|| unreachable!());
            let message = failure.message.unwrap_or_else(|| {
                format!(
                    "{method} {path}: injected failure {} {}",
                    failure.code, failure.reason
                )
            });
            return Answer::status(failure.code, &failure.reason, &message, object_name(path));
        }
        let Some((namespace, name)) = object_path(path) else {
            return Answer::status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                None,
            );
        };
        let key = (namespace.to_owned(), name.to_owned());
        match method {
            "GET" => match store.objects.get(&key) {
                Some(stored) => Answer::ok(200, &stored.object),
                None => not_found(name),
            },
            "PATCH" => self.apply(store, &key, query, request),
            _ => Answer::status(
                405,
                "MethodNotAllowed",
                &format!("the fake API server does not serve {method} on {PLURAL}"),
                Some(name),
            ),
        }
    }

    /// Server-side apply (see the module documentation).
    fn apply(
        &self,
        store: &mut Store,
        key: &(String, String),
        query: &str,
        request: &Incoming,
    ) -> Answer {
        let (namespace, name) = (key.0.as_str(), key.1.as_str());
        let apply = match Apply::parse(query, request, namespace, name) {
            Ok(apply) => apply,
            Err(answer) => return answer,
        };
        let existing = store.objects.get(key).cloned();
        let created = existing.is_none();
        let mut stored = existing.unwrap_or_else(|| {
            let mut object = Map::new();
            object.insert("apiVersion".into(), API_VERSION.into());
            object.insert("kind".into(), KIND.into());
            let metadata = new_metadata(store, self.instance, namespace, name);
            object.insert("metadata".into(), Value::Object(metadata));
            object.insert("spec".into(), json!({}));
            Stored {
                object,
                owners: BTreeMap::new(),
            }
        });
        let before = stored.object.clone();
        if let Err(message) = stored.merge(&apply) {
            return Answer::status(409, "Conflict", &message, Some(name));
        }
        if !created && stored.object != before {
            store.revision += 1;
            let spec_changed = stored.object.get("spec") != before.get("spec");
            let metadata = child(&mut stored.object, "metadata");
            metadata.insert("resourceVersion".into(), store.revision.to_string().into());
            if spec_changed {
                let generation = metadata
                    .get("generation")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                metadata.insert("generation".into(), (generation + 1).into());
            }
        }
        let answer = Answer::ok(if created { 201 } else { 200 }, &stored.object);
        store.objects.insert(key.clone(), stored);
        answer
    }
}

/// A checked server-side apply request.
#[derive(Debug)]
struct Apply {
    manager: String,
    force: bool,
    /// The fields the body sets, with their values.
    desired: BTreeMap<Field, Value>,
}

impl Apply {
    /// Checks the content type, the query and the body as the API server would; a failure is
    /// the answer to send.
    fn parse(
        query: &str,
        request: &Incoming,
        namespace: &str,
        name: &str,
    ) -> std::result::Result<Apply, Answer> {
        let fail =
            |code, reason: &str, message: &str| Answer::status(code, reason, message, Some(name));
        let content_type = request.header("Content-Type").unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case(APPLY_PATCH_CONTENT_TYPE) {
            return Err(fail(
                415,
                "UnsupportedMediaType",
                &format!(
                    "the fake API server only serves server-side apply ({APPLY_PATCH_CONTENT_TYPE}), not {content_type:?}"
                ),
            ));
        }
        let params = query_pairs(query);
        let param = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let Some(manager) = param("fieldManager").filter(|m| !m.is_empty()) else {
            return Err(fail(
                400,
                "BadRequest",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        };
        let body = match serde_json::from_slice::<Value>(&request.body) {
            Ok(Value::Object(body)) => body,
            Ok(other) => {
                let message = format!("the apply body must be an object, not {other}");
                return Err(fail(400, "BadRequest", &message));
            }
            Err(e) => {
                let message = format!("the fake API server reads apply bodies as JSON only: {e}");
                return Err(fail(400, "BadRequest", &message));
            }
        };
        check_identity(&body, namespace, name).map_err(|m| fail(400, "BadRequest", &m))?;
        let desired = fields_of(&body).map_err(|m| {
            fail(
                422,
                "Invalid",
                &format!("{KIND}.{GROUP} \"{name}\" is invalid: {m}"),
            )
        })?;
        Ok(Apply {
            manager: manager.to_owned(),
            force: param("force") == Some("true"),
            desired,
        })
    }
}

impl Stored {
    /// Applies `apply` to the object and its field ownership; a conflict (without force) is
    /// the `Status` message, and leaves `self` unchanged.
    fn merge(&mut self, apply: &Apply) -> std::result::Result<(), String> {
        let manager = apply.manager.as_str();
        let conflicts: Vec<(Field, Vec<String>)> = apply
            .desired
            .iter()
            .filter(|(field, value)| get_field(&self.object, field) != Some(*value))
            .filter_map(|(field, _)| {
                let others: Vec<String> = self
                    .owners
                    .get(field)
                    .into_iter()
                    .flatten()
                    .filter(|m| *m != manager)
                    .cloned()
                    .collect();
                (!others.is_empty()).then(|| (field.clone(), others))
            })
            .collect();
        if !conflicts.is_empty() && !apply.force {
            let list: Vec<String> = conflicts
                .iter()
                .map(|(field, others)| {
                    let others: Vec<String> = others.iter().map(|m| format!("{m:?}")).collect();
                    format!("conflict with {} using v1: .{field}", others.join(", "))
                })
                .collect();
            return Err(format!(
                "Apply failed with {} conflict(s): {}",
                conflicts.len(),
                list.join("; ")
            ));
        }
        // Forced: the conflicting fields change hands.
        for (field, _) in conflicts {
            if let Some(managers) = self.owners.get_mut(&field) {
                managers.retain(|m| m == manager);
            }
        }
        // Fields this manager applied before and leaves out now.
        let dropped: Vec<Field> = self
            .owners
            .iter()
            .filter(|(field, managers)| {
                managers.contains(manager) && !apply.desired.contains_key(field)
            })
            .map(|(field, _)| field.clone())
            .collect();
        for field in dropped {
            let orphaned = self.owners.get_mut(&field).is_some_and(|managers| {
                managers.remove(manager);
                managers.is_empty()
            });
            if orphaned {
                self.owners.remove(&field);
                remove_field(&mut self.object, &field);
            }
        }
        for (field, value) in &apply.desired {
            set_field(&mut self.object, field, value.clone());
            self.owners
                .entry(field.clone())
                .or_default()
                .insert(manager.to_owned());
        }
        Ok(())
    }
}

fn not_found(name: &str) -> Answer {
    Answer::status(
        404,
        "NotFound",
        &format!("{PLURAL}.{GROUP} \"{name}\" not found"),
        Some(name),
    )
}

/// `(namespace, name)` of `/apis/xlscsde.nhs.uk/v1/namespaces/{ns}/analyticsdatasources/{name}`.
fn object_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(PREFIX)?;
    let mut parts = rest.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(ns), Some(PLURAL), Some(name), None) if !ns.is_empty() && !name.is_empty() => {
            Some((ns, name))
        }
        _ => None,
    }
}

/// The object name in a datasource path, for `Status` details.
fn object_name(path: &str) -> Option<&str> {
    object_path(path).map(|(_, name)| name)
}

/// The apply body must be this resource, named as on the URL.
fn check_identity(
    body: &Map<String, Value>,
    namespace: &str,
    name: &str,
) -> std::result::Result<(), String> {
    let api_version = body.get("apiVersion").and_then(Value::as_str);
    let kind = body.get("kind").and_then(Value::as_str);
    if api_version != Some(API_VERSION) || kind != Some(KIND) {
        return Err(format!(
            "the apply body is {} {}, not {API_VERSION} {KIND}",
            api_version.unwrap_or("(no apiVersion)"),
            kind.unwrap_or("(no kind)")
        ));
    }
    let metadata = body.get("metadata").and_then(Value::as_object);
    let body_name = metadata.and_then(|m| m.get("name")).and_then(Value::as_str);
    if body_name != Some(name) {
        return Err(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            body_name.unwrap_or("")
        ));
    }
    match metadata.and_then(|m| m.get("namespace")) {
        None => Ok(()),
        Some(Value::String(ns)) if ns == namespace => Ok(()),
        Some(other) => Err(format!(
            "the namespace of the object ({other}) does not match the namespace on the URL ({namespace})"
        )),
    }
}

/// The fields an object sets, with their values (see [`Field`]).
fn fields_of(object: &Map<String, Value>) -> std::result::Result<BTreeMap<Field, Value>, String> {
    let mut fields = BTreeMap::new();
    for (key, value) in object {
        if !SYSTEM_TOP.contains(&key.as_str()) {
            fields.insert(Field::Top(key.clone()), value.clone());
        }
    }
    match object.get("spec") {
        None | Some(Value::Null) => {}
        Some(Value::Object(spec)) => {
            for (key, value) in spec {
                fields.insert(Field::Spec(key.clone()), value.clone());
            }
        }
        Some(other) => return Err(format!("spec: Invalid value: {other}: must be an object")),
    }
    let metadata = match object.get("metadata") {
        None | Some(Value::Null) => return Ok(fields),
        Some(Value::Object(metadata)) => metadata,
        Some(other) => {
            return Err(format!(
                "metadata: Invalid value: {other}: must be an object"
            ));
        }
    };
    for (key, value) in metadata {
        match key.as_str() {
            "labels" | "annotations" => {
                let map = match value {
                    Value::Null => continue,
                    Value::Object(map) => map,
                    other => {
                        return Err(format!(
                            "metadata.{key}: Invalid value: {other}: must be a map of strings"
                        ));
                    }
                };
                for (k, v) in map {
                    if !v.is_string() {
                        return Err(format!(
                            "metadata.{key}.{k}: Invalid value: {v}: must be a string"
                        ));
                    }
                    let field = if key == "labels" {
                        Field::Label(k.clone())
                    } else {
                        Field::Annotation(k.clone())
                    };
                    fields.insert(field, v.clone());
                }
            }
            "ownerReferences" => {
                let refs = match value {
                    Value::Null => continue,
                    Value::Array(refs) => refs,
                    other => {
                        return Err(format!(
                            "metadata.ownerReferences: Invalid value: {other}: must be a list"
                        ));
                    }
                };
                for reference in refs {
                    let uid = reference.get("uid").and_then(Value::as_str).ok_or_else(|| {
                        format!("metadata.ownerReferences: Invalid value: {reference}: uid: Required value")
                    })?;
                    fields.insert(Field::OwnerReference(uid.to_owned()), reference.clone());
                }
            }
            other if SYSTEM_METADATA.contains(&other) => {}
            other => {
                fields.insert(Field::Metadata(other.to_owned()), value.clone());
            }
        }
    }
    Ok(fields)
}

/// The value of `field` in `object`.
fn get_field<'a>(object: &'a Map<String, Value>, field: &Field) -> Option<&'a Value> {
    let metadata = || object.get("metadata").and_then(Value::as_object);
    match field {
        Field::Spec(k) => object.get("spec")?.get(k),
        Field::Label(k) => metadata()?.get("labels")?.get(k),
        Field::Annotation(k) => metadata()?.get("annotations")?.get(k),
        Field::OwnerReference(uid) => metadata()?
            .get("ownerReferences")?
            .as_array()?
            .iter()
            .find(|r| r.get("uid").and_then(Value::as_str) == Some(uid)),
        Field::Metadata(k) => metadata()?.get(k),
        Field::Top(k) => object.get(k),
    }
}

/// `object[key]` as an object, made one if it is missing or is something else.
fn child<'a>(object: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = object.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(map) => map,
        _ => unreachable!("made an object just above"),
    }
}

/// Sets `field` in `object` to `value`.
fn set_field(object: &mut Map<String, Value>, field: &Field, value: Value) {
    match field {
        Field::Spec(k) => {
            child(object, "spec").insert(k.clone(), value);
        }
        Field::Label(k) => {
            child(child(object, "metadata"), "labels").insert(k.clone(), value);
        }
        Field::Annotation(k) => {
            child(child(object, "metadata"), "annotations").insert(k.clone(), value);
        }
        Field::OwnerReference(uid) => {
            let metadata = child(object, "metadata");
            let refs = metadata
                .entry("ownerReferences")
                .or_insert_with(|| json!([]));
            if !refs.is_array() {
                *refs = json!([]);
            }
            if let Value::Array(refs) = refs {
                match refs
                    .iter_mut()
                    .find(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                {
                    Some(existing) => *existing = value,
                    None => refs.push(value),
                }
            }
        }
        Field::Metadata(k) => {
            child(object, "metadata").insert(k.clone(), value);
        }
        Field::Top(k) => {
            object.insert(k.clone(), value);
        }
    }
}

/// Removes `field` from `object`, and the label, annotation or owner reference list it leaves
/// empty.
fn remove_field(object: &mut Map<String, Value>, field: &Field) {
    if let Field::Spec(k) = field {
        child(object, "spec").remove(k);
        return;
    }
    if let Field::Top(k) = field {
        object.remove(k);
        return;
    }
    let metadata = child(object, "metadata");
    match field {
        Field::Label(k) | Field::Annotation(k) => {
            let key = if matches!(field, Field::Label(_)) {
                "labels"
            } else {
                "annotations"
            };
            let map = child(metadata, key);
            map.remove(k);
            if map.is_empty() {
                metadata.remove(key);
            }
        }
        Field::OwnerReference(uid) => {
            if let Some(Value::Array(refs)) = metadata.get_mut("ownerReferences") {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                if refs.is_empty() {
                    metadata.remove("ownerReferences");
                }
            }
        }
        Field::Metadata(k) => {
            metadata.remove(k);
        }
        Field::Spec(_) | Field::Top(_) => {}
    }
}

/// `a=1&b=x%20y` as decoded pairs (`+` is a space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// `time` as `YYYY-MM-DDTHH:MM:SSZ` (UTC), as `metav1.Time` is written.
fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, for days >= 0).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut out = String::with_capacity(20);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::time::Duration;

    const DS: &str = "/apis/xlscsde.nhs.uk/v1/namespaces/sde/analyticsdatasources/demo";
    const APPLY: &str = "/apis/xlscsde.nhs.uk/v1/namespaces/sde/analyticsdatasources/demo?fieldManager=crate-loader&force=true";

    /// A raw HTTP/1.1 client on one keep-alive connection.
    struct Raw {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
        token: Option<String>,
    }

    impl Raw {
        fn connect(kube: &FakeKubeApi) -> Raw {
            let stream = TcpStream::connect(kube.addr()).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("read timeout");
            Raw {
                reader: BufReader::new(stream.try_clone().expect("clone")),
                writer: stream,
                token: Some(kube.token().to_owned()),
            }
        }

        fn send(&mut self, method: &str, target: &str, extra: &[(&str, &str)], body: &str) {
            let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            if let Some(token) = &self.token {
                let _ = write!(head, "Authorization: Bearer {token}\r\n");
            }
            for (name, value) in extra {
                let _ = write!(head, "{name}: {value}\r\n");
            }
            if !extra.iter().any(|(n, _)| *n == "Transfer-Encoding") {
                let _ = write!(head, "Content-Length: {}\r\n", body.len());
            }
            head.push_str("\r\n");
            head.push_str(body);
            self.writer.write_all(head.as_bytes()).expect("send");
        }

        /// Status, headers and JSON body of the next answer.
        fn receive(&mut self) -> (u16, Vec<(String, String)>, Value) {
            let status = read_line(&mut self.reader).expect("status line");
            let code = status
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("status code");
            let mut headers = Vec::new();
            loop {
                let line = read_line(&mut self.reader).expect("header");
                if line.is_empty() {
                    break;
                }
                let (n, v) = line.split_once(':').expect("header line");
                headers.push((n.trim().to_owned(), v.trim().to_owned()));
            }
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
                .and_then(|(_, v)| v.parse().ok())
                .expect("content length");
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body).expect("body");
            (
                code,
                headers,
                serde_json::from_slice(&body).expect("JSON body"),
            )
        }

        fn call(&mut self, method: &str, target: &str, body: &str) -> (u16, Value) {
            let content_type = [("Content-Type", APPLY_PATCH_CONTENT_TYPE)];
            let extra: &[(&str, &str)] = if method == "PATCH" {
                &content_type
            } else {
                &[]
            };
            self.send(method, target, extra, body);
            let (code, _, body) = self.receive();
            (code, body)
        }
    }

    fn apply_body(spec: &Value, labels: &Value) -> String {
        json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": "demo", "namespace": "sde", "labels": labels},
            "spec": spec,
        })
        .to_string()
    }

    #[test]
    fn requests_without_the_bearer_token_are_unauthorized_and_logged() {
        let kube = FakeKubeApi::start().expect("start");
        let mut raw = Raw::connect(&kube);
        raw.token = None;
        let (code, status) = raw.call("GET", DS, "");
        assert_eq!(code, 401);
        assert_eq!(status["reason"], "Unauthorized");
        raw.token = Some("wrong".into());
        assert_eq!(raw.call("GET", DS, "").0, 401);
        let log = kube.requests();
        assert_eq!(log.len(), 2);
        assert!(log.iter().all(|r| !r.authorized && r.status == 401));
    }

    #[test]
    fn a_missing_object_is_a_not_found_status_and_other_paths_are_not_found() {
        let kube = FakeKubeApi::start().expect("start");
        let mut raw = Raw::connect(&kube);
        let (code, status) = raw.call("GET", DS, "");
        assert_eq!(code, 404);
        assert_eq!(
            (
                &status["kind"],
                &status["apiVersion"],
                &status["status"],
                &status["reason"],
                &status["code"]
            ),
            (
                &json!("Status"),
                &json!("v1"),
                &json!("Failure"),
                &json!("NotFound"),
                &json!(404)
            )
        );
        assert_eq!(
            status["message"],
            "analyticsdatasources.xlscsde.nhs.uk \"demo\" not found"
        );
        for path in [
            "/api/v1/namespaces/sde/pods/demo",
            "/apis/xlscsde.nhs.uk/v1/namespaces/sde/analyticsdatasources",
            "/apis/xlscsde.nhs.uk/v1/namespaces/sde/analyticscrates/demo",
            "/version",
        ] {
            let (code, status) = raw.call("GET", path, "");
            assert_eq!(
                (code, &status["reason"]),
                (404, &json!("NotFound")),
                "{path}"
            );
        }
    }

    #[test]
    fn an_apply_creates_then_reads_back_on_one_kept_alive_connection() {
        let kube = FakeKubeApi::start().expect("start");
        let mut raw = Raw::connect(&kube);
        let body = apply_body(&json!({"displayName": "A"}), &json!({"a": "1"}));
        let (code, created) = raw.call("PATCH", APPLY, &body);
        assert_eq!(code, 201, "{created}");
        let metadata = &created["metadata"];
        assert!(metadata["uid"].as_str().is_some_and(|u| !u.is_empty()));
        assert_eq!(metadata["resourceVersion"], "1");
        assert_eq!(metadata["generation"], 1);
        assert!(
            metadata["creationTimestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert_eq!(created["spec"], json!({"displayName": "A"}));
        let (code, read) = raw.call("GET", DS, "");
        assert_eq!((code, &read), (200, &created));
        assert_eq!(kube.get("sde", "demo"), Some(created));
        assert_eq!(kube.connections(), 1, "both requests used one connection");
        let patch = &kube.patches()[0];
        assert_eq!(
            patch.query_param("fieldManager").as_deref(),
            Some("crate-loader")
        );
        assert_eq!(patch.query_param("force").as_deref(), Some("true"));
        assert_eq!(
            patch.content_type.as_deref(),
            Some(APPLY_PATCH_CONTENT_TYPE)
        );
        assert_eq!(patch.json(), serde_json::from_str(&body).ok());
        assert_eq!(
            kube.owned_fields("sde", "demo", "crate-loader"),
            ["spec.displayName", "metadata.labels.a"]
        );
    }

    #[test]
    fn an_apply_keeps_what_others_own_and_removes_what_it_no_longer_applies() {
        let kube = FakeKubeApi::start().expect("start");
        kube.seed(
            "sde",
            "demo",
            json!({
                "metadata": {"labels": {"person": "yes"}},
                "spec": {"displayName": "Old", "connections": [{"name": "db"}]},
            }),
        );
        let uid = kube.get("sde", "demo").expect("seeded")["metadata"]["uid"].clone();
        let mut raw = Raw::connect(&kube);
        let target_without_force = DS.to_owned() + "?fieldManager=crate-loader";
        let first = apply_body(
            &json!({"displayName": "New", "license": "MIT"}),
            &json!({"ours": "1"}),
        );

        // displayName belongs to the seed manager and changes: a conflict unless forced
        let (code, status) = raw.call("PATCH", &target_without_force, &first);
        assert_eq!(
            (code, &status["reason"]),
            (409, &json!("Conflict")),
            "{status}"
        );
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains(".spec.displayName"))
        );

        let (code, applied) = raw.call("PATCH", APPLY, &first);
        assert_eq!(code, 200, "{applied}");
        assert_eq!(
            applied["spec"],
            json!({"displayName": "New", "license": "MIT", "connections": [{"name": "db"}]})
        );
        assert_eq!(
            applied["metadata"]["labels"],
            json!({"person": "yes", "ours": "1"})
        );
        assert_eq!(applied["metadata"]["uid"], uid);

        // license left out: removed; connections never applied by us: kept
        let second = apply_body(&json!({"displayName": "New"}), &json!({"ours": "1"}));
        let (code, applied) = raw.call("PATCH", &target_without_force, &second);
        assert_eq!(code, 200, "{applied}");
        assert_eq!(
            applied["spec"],
            json!({"displayName": "New", "connections": [{"name": "db"}]})
        );
        assert_eq!(
            kube.owned_fields("sde", "demo", SEED_MANAGER),
            ["spec.connections", "metadata.labels.person"]
        );

        // the same apply again changes nothing, not even the resourceVersion
        let (_, again) = raw.call("PATCH", APPLY, &second);
        assert_eq!(again, applied);
    }

    #[test]
    fn owner_references_are_merged_by_uid() {
        let kube = FakeKubeApi::start().expect("start");
        let mut raw = Raw::connect(&kube);
        let with_owner = |uid: &str| {
            json!({
                "apiVersion": API_VERSION, "kind": KIND,
                "metadata": {"name": "demo", "ownerReferences": [{"kind": "AnalyticsCrate", "name": "demo", "uid": uid, "controller": true}]},
                "spec": {},
            })
            .to_string()
        };
        raw.call("PATCH", APPLY, &with_owner("uid-1"));
        let (code, applied) = raw.call("PATCH", APPLY, &with_owner("uid-2"));
        assert_eq!(code, 200);
        let refs = applied["metadata"]["ownerReferences"]
            .as_array()
            .expect("refs");
        assert_eq!(
            refs.len(),
            1,
            "the reference uid-1 was ours and is left out now"
        );
        assert_eq!(refs[0]["uid"], "uid-2");
    }

    #[test]
    fn injected_failures_answer_the_next_request_of_their_method_once() {
        let kube = FakeKubeApi::start().expect("start");
        kube.fail_next("patch", 403, "Forbidden");
        kube.fail_next_with_message("PATCH", 422, "Invalid", "spec.type: Unsupported value");
        let mut raw = Raw::connect(&kube);
        assert_eq!(raw.call("GET", DS, "").0, 404, "GETs are not affected");
        let body = apply_body(&json!({}), &json!({}));
        let (code, status) = raw.call("PATCH", APPLY, &body);
        assert_eq!(
            (code, &status["reason"], &status["code"]),
            (403, &json!("Forbidden"), &json!(403))
        );
        assert_eq!(status["details"]["name"], "demo");
        let (code, status) = raw.call("PATCH", APPLY, &body);
        assert_eq!(
            (code, &status["message"]),
            (422, &json!("spec.type: Unsupported value"))
        );
        assert_eq!(kube.get("sde", "demo"), None);
        assert_eq!(raw.call("PATCH", APPLY, &body).0, 201);
        let statuses: Vec<u16> = kube.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [404, 403, 422, 201]);
    }

    #[test]
    fn only_server_side_apply_with_a_field_manager_and_a_matching_body_is_accepted() {
        let kube = FakeKubeApi::start().expect("start");
        let mut raw = Raw::connect(&kube);
        let body = apply_body(&json!({}), &json!({}));
        raw.send(
            "PATCH",
            APPLY,
            &[("Content-Type", "application/merge-patch+json")],
            &body,
        );
        assert_eq!(raw.receive().0, 415);
        assert_eq!(raw.call("PATCH", DS, &body).0, 400, "no fieldManager");
        let renamed = body.replace("\"demo\"", "\"other\"");
        let (code, status) = raw.call("PATCH", APPLY, &renamed);
        assert_eq!(code, 400);
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains("does not match"))
        );
        assert_eq!(
            raw.call("PATCH", APPLY, "spec: {}").0,
            400,
            "YAML is not read"
        );
        let bad_labels = apply_body(&json!({}), &json!({"a": 1}));
        assert_eq!(raw.call("PATCH", APPLY, &bad_labels).0, 422);
        assert_eq!(raw.call("DELETE", DS, "").0, 405);
        assert_eq!(kube.get("sde", "demo"), None);
    }

    #[test]
    fn chunked_bodies_and_connection_close_are_understood() {
        let kube = FakeKubeApi::start().expect("start");
        let mut raw = Raw::connect(&kube);
        let body = apply_body(&json!({"displayName": "chunked"}), &json!({}));
        let (a, b) = body.split_at(10);
        let chunked = format!("{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len());
        raw.send(
            "PATCH",
            APPLY,
            &[
                ("Content-Type", APPLY_PATCH_CONTENT_TYPE),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "close"),
            ],
            &chunked,
        );
        let (code, headers, applied) = raw.receive();
        assert_eq!(code, 201);
        assert_eq!(applied["spec"]["displayName"], "chunked");
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == "Connection" && v == "close")
        );
        let mut rest = Vec::new();
        raw.reader
            .read_to_end(&mut rest)
            .expect("closed by the server");
        assert!(rest.is_empty());
    }

    #[test]
    fn the_kubeconfig_points_at_the_server_with_the_token() {
        let kube = FakeKubeApi::start().expect("start");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = kube.kubeconfig(dir.path()).expect("kubeconfig");
        let text = std::fs::read_to_string(path).expect("read");
        assert!(text.contains(&format!("server: {}", kube.url())), "{text}");
        assert!(text.contains(&format!("token: {}", kube.token())), "{text}");
        assert!(kube.url().starts_with("http://127.0.0.1:"));
    }

    #[test]
    fn clearing_the_cluster_env_removes_in_cluster_and_proxy_settings() {
        let mut cmd = Command::new("true");
        cmd.env("KUBERNETES_SERVICE_HOST", "10.0.0.1")
            .env("HTTPS_PROXY", "http://proxy");
        clear_cluster_env(&mut cmd);
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        for var in [
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT",
            "KUBECONFIG",
            "HTTPS_PROXY",
        ] {
            assert!(removed.iter().any(|r| r == var), "{var}: {removed:?}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn query_parameters_are_decoded() {
        let pairs = query_pairs("fieldManager=crate%2Dloader&force=true&x=a+b&flag");
        assert_eq!(
            pairs,
            [
                ("fieldManager".to_owned(), "crate-loader".to_owned()),
                ("force".to_owned(), "true".to_owned()),
                ("x".to_owned(), "a b".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
    }
}
