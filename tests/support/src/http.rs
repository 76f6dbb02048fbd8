//! Smart HTTP server: `git http-backend` as a CGI program behind hyper.
//!
//! One request per connection (keep-alive off). hyper reads request bodies however they come
//! (`Content-Length` or chunked: libgit2 and git send chunked POSTs when a request is large),
//! answers `Expect: 100-continue` when the body is read, and sends responses chunked; bodies
//! stream to and from the CGI program. Optional HTTP basic auth answers wrong or missing
//! credentials with `401` and `WWW-Authenticate: Basic realm="git"`. Every request is logged
//! (method, target, the `Authorization` header as sent, and the status), and bytes are counted.
//! The server binds `127.0.0.1` unless told another IP ([`SmartHttpBuilder::bind`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::Result;
use crate::process::{git, hermetic, require_file, run, with_git_suffix};
use crate::server::lock;
use crate::tls::{Ca, make_tls};
use crate::web::{self, Accepted, Counting, ResponseBody, Web};

/// One request as the server saw it (see [`SmartHttp::request_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as sent: path and query (`/repo.git/info/refs?service=git-upload-pack`).
    pub target: String,
    /// Whether an `Authorization` header was present.
    pub authorization: bool,
    /// The `Authorization` header as sent (`Basic YWxpY2U6czNjcmV0`), for checking which
    /// credentials a client sent to which server (e.g. none after a cross-host redirect).
    pub authorization_header: Option<String>,
    /// The `Git-Protocol` header (`version=2` when the client asked for protocol v2).
    pub git_protocol: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// Whether the request body came chunked.
    pub chunked: bool,
    /// Request body bytes received (after de-chunking).
    pub body_bytes: u64,
    /// What a `POST` asked git to do, read from the first pkt-line of its body:
    /// - protocol v2: the command (`ls-refs`, `fetch`, `object-info`);
    /// - protocol v0/v1 `git-upload-pack`: `fetch` (the body starts with `want` lines);
    /// - `git-receive-pack`: `push` (the body starts with a ref update);
    /// - `None`: no body, only a flush packet (git's auth probe before a large request), a
    ///   gzip-compressed body (git compresses large fetch requests), or anything else.
    pub git_command: Option<String>,
    /// HTTP status answered (0 if the connection broke before an answer).
    pub status: u16,
    /// Bytes sent in answer, head and body (as on the wire, chunk framing included).
    pub response_bytes: u64,
}

impl Request {
    /// The request line, the git command (if any) in brackets, whether credentials came and
    /// the status, e.g. `GET /repo.git/info/refs?service=git-upload-pack auth=no 401` or
    /// `POST /repo.git/git-upload-pack [fetch] auth=yes 200`.
    pub fn summary(&self) -> String {
        let command = self
            .git_command
            .as_ref()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        format!(
            "{} {}{command} auth={} {}",
            self.method,
            self.target,
            if self.authorization { "yes" } else { "no" },
            self.status
        )
    }

    /// Whether this is a `POST .../git-upload-pack`: an object fetch in protocol v0/v1 (what
    /// libgit2 speaks), a fetch or a ref listing in protocol v2 (the git command line's
    /// default); see [`is_fetch`](Self::is_fetch).
    pub fn is_upload_pack(&self) -> bool {
        self.method == "POST" && self.target.ends_with("/git-upload-pack")
    }

    /// Whether this request may have transferred objects: a `POST .../git-upload-pack` that was
    /// not a protocol v2 `ls-refs` or `object-info` command (an unreadable body counts as a
    /// fetch). A no-op check that only lists refs has no such request.
    pub fn is_fetch(&self) -> bool {
        self.is_upload_pack()
            && !matches!(self.git_command.as_deref(), Some("ls-refs" | "object-info"))
    }
}

/// Options for [`SmartHttp`]; start with [`SmartHttp::builder`].
#[derive(Debug, Clone, Default)]
#[must_use = "call .start(base) to run the server"]
pub struct SmartHttpBuilder {
    ip: Option<IpAddr>,
    credentials: Option<(String, String)>,
    receive_pack: bool,
    stall_upload_pack: bool,
    tls: bool,
}

impl SmartHttpBuilder {
    /// Bind `ip` (port 0) instead of `127.0.0.1`, e.g. `127.0.0.2` (loopback too on Linux), so
    /// that a redirect from a server on `127.0.0.1` leads to another host.
    pub fn bind(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Require HTTP basic auth with this user and password on every request.
    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Accept pushes (`git-receive-pack`) even without auth (`http.receivepack=true`).
    pub fn enable_push(mut self) -> Self {
        self.receive_pack = true;
        self
    }

    /// Answer object fetches (`POST .../git-upload-pack` other than a protocol v2 `ls-refs`)
    /// with a `200` head and then send nothing until the client gives up or the server is
    /// dropped, for testing a client's transfer time-out. Ref listings still work.
    pub fn stall_upload_pack(mut self) -> Self {
        self.stall_upload_pack = true;
        self
    }

    /// Serve https, with a certificate for the IP and `localhost` signed by a CA of its own
    /// ([`SmartHttp::ca_file`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Starts serving the bare repositories in `base`.
    pub fn start(self, base: &Path) -> Result<SmartHttp> {
        SmartHttp::start_with(self, base)
    }
}

impl State {
    /// One accepted connection is over (and its request logged).
    fn done(&self) {
        let mut in_flight = lock(&self.in_flight);
        *in_flight = in_flight.saturating_sub(1);
        self.settled.notify_all();
    }

    /// Waits (up to [`SETTLE_TIMEOUT`]) until every accepted connection is over, so the log and
    /// counters include the requests of a client that has just finished.
    fn settle(&self) {
        let guard = lock(&self.in_flight);
        let _ = self
            .settled
            .wait_timeout_while(guard, SETTLE_TIMEOUT, |n| *n > 0);
    }
}

/// How long the log accessors wait for requests in progress.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the connection tasks share.
#[derive(Debug)]
struct State {
    base: PathBuf,
    backend: PathBuf,
    /// `Basic <base64(user:password)>` and the user, when auth is required.
    auth: Option<(String, String)>,
    options: SmartHttpBuilder,
    /// The https configuration, with [`SmartHttpBuilder::tls`].
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Finished requests with the number of their connection (accept order).
    log: Mutex<Vec<(usize, Request)>>,
    /// Connections accepted whose request is not logged yet.
    in_flight: Mutex<usize>,
    settled: Condvar,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    stderr_log: PathBuf,
}

/// Serves every bare repository under a folder over `http://127.0.0.1:<port>/<name>.git` (or
/// another IP, see [`SmartHttpBuilder::bind`]).
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use crate_test_support::{RepoBuilder, SmartHttp};
/// let repo = RepoBuilder::new().file("a", "1").commit("c").build_bare()?;
/// let http = SmartHttp::builder().basic_auth("alice", "s3cret").start(repo.base_dir())?;
/// let url = http.url(repo.name()); // http://127.0.0.1:PORT/repo.git
/// // ... fetch ...
/// assert!(!http.request_log().iter().any(|r| r.is_upload_pack()));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SmartHttp {
    // Dropped first: stops accepting, closes connections, kills CGI processes.
    web: Web,
    state: Arc<State>,
    ca: Option<Ca>,
    _logdir: TempDir,
}

impl SmartHttp {
    /// Starts serving the bare repositories in `base`, without auth.
    pub fn start(base: &Path) -> Result<Self> {
        Self::start_with(SmartHttpBuilder::default(), base)
    }

    /// Options: the IP to bind, basic auth, push, stalling.
    pub fn builder() -> SmartHttpBuilder {
        SmartHttpBuilder::default()
    }

    fn start_with(options: SmartHttpBuilder, base: &Path) -> Result<Self> {
        let exec_path = run(git().arg("--exec-path"))?;
        let backend = Path::new(&exec_path).join("git-http-backend");
        require_file(&backend)?;
        let logdir = tempfile::Builder::new()
            .prefix("crate-test-http-")
            .tempdir()?;
        let stderr_log = logdir.path().join("http-backend.log");
        File::create(&stderr_log)?;
        let auth = options.credentials.as_ref().map(|(user, password)| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            (format!("Basic {encoded}"), user.clone())
        });
        let ip = options.ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let (tls, ca) = if options.tls {
            let (config, ca) = make_tls(ip)?;
            (Some(config), Some(ca))
        } else {
            (None, None)
        };
        let state = Arc::new(State {
            base: base.canonicalize()?,
            backend,
            auth,
            options,
            tls,
            log: Mutex::new(Vec::new()),
            in_flight: Mutex::new(0),
            settled: Condvar::new(),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            stderr_log,
        });
        let web = {
            let state = Arc::clone(&state);
            Web::start(ip, "smart-http", move |accepted| {
                connection(Arc::clone(&state), accepted)
            })?
        };
        Ok(Self {
            web,
            state,
            ca,
            _logdir: logdir,
        })
    }

    /// `http://<ip>:<port>/<repo>` (`.git` is added unless `repo` ends with it; the IP is
    /// `127.0.0.1` unless [`SmartHttpBuilder::bind`] said otherwise).
    pub fn url(&self, repo: &str) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/{}", self.web.addr(), with_git_suffix(repo))
    }

    /// With [`SmartHttpBuilder::tls`], a file holding the CA certificate (PEM) that signed the
    /// server's; point `SSL_CERT_FILE` at it.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_ref().map(|ca| ca.file.as_path())
    }

    /// Like [`url`](Self::url) with `user:password@` in it, for the git command line. (The
    /// loader must never put credentials in URLs; this is for driving `git` in tests.)
    pub fn url_with_credentials(&self, repo: &str, user: &str, password: &str) -> String {
        self.url(repo)
            .replacen("http://", &format!("http://{user}:{password}@"), 1)
    }

    /// The address served (`<ip>:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.web.addr()
    }

    /// The folder whose repositories are served.
    pub fn base_dir(&self) -> &Path {
        &self.state.base
    }

    /// Every request so far, in the order their connections were accepted, as
    /// [`Request::summary`] lines: `GET /repo.git/info/refs?service=git-upload-pack auth=yes 200`.
    ///
    /// This and the other accessors first wait (up to 5 s) for connections in progress to end,
    /// so a client that has returned has all its requests in the log.
    pub fn requests(&self) -> Vec<String> {
        self.request_log().iter().map(Request::summary).collect()
    }

    /// Every request so far, in the order their connections were accepted, with all details.
    pub fn request_log(&self) -> Vec<Request> {
        self.state.settle();
        let mut log = lock(&self.state.log).clone();
        log.sort_by_key(|(seq, _)| *seq);
        log.into_iter().map(|(_, request)| request).collect()
    }

    /// Forgets the requests logged so far and resets the byte counters.
    pub fn clear(&self) {
        self.state.settle();
        lock(&self.state.log).clear();
        self.state.bytes_sent.store(0, Ordering::SeqCst);
        self.state.bytes_received.store(0, Ordering::SeqCst);
    }

    /// Bytes sent to clients so far (response heads and bodies, as on the wire).
    pub fn bytes_sent(&self) -> u64 {
        self.state.settle();
        self.state.bytes_sent.load(Ordering::SeqCst)
    }

    /// Request body bytes received so far (after de-chunking).
    pub fn bytes_received(&self) -> u64 {
        self.state.settle();
        self.state.bytes_received.load(Ordering::SeqCst)
    }

    /// What `git http-backend` wrote to stderr so far (empty if unreadable).
    pub fn backend_log(&self) -> String {
        std::fs::read_to_string(&self.state.stderr_log).unwrap_or_default()
    }
}

/// Serves one connection (one request) and logs its request, if one came, when it is over.
async fn connection(state: Arc<State>, accepted: Accepted) {
    // Counted before any answer can go out, so a client that has its answers finds its
    // requests counted.
    *lock(&state.in_flight) += 1;
    let record: Arc<Mutex<Option<Request>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let io = Counting {
        inner: accepted.stream,
        count: {
            let (state, sent) = (Arc::clone(&state), Arc::clone(&sent));
            Arc::new(move |n| {
                sent.fetch_add(n, Ordering::SeqCst);
                state.bytes_sent.fetch_add(n, Ordering::SeqCst);
            })
        },
    };
    let service = {
        let (state, record) = (Arc::clone(&state), Arc::clone(&record));
        let (local, peer) = (accepted.local, accepted.peer);
        hyper::service::service_fn(move |request| {
            handle(
                Arc::clone(&state),
                Arc::clone(&record),
                local,
                peer,
                request,
            )
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(false);
    match &state.tls {
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(config));
            if let Ok(tls) = acceptor.accept(io).await {
                let _ = http
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            }
        }
        None => {
            let _ = http
                .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                .await;
        }
    }
    // A connection without a request (a probe that connected and closed) is not logged.
    if let Some(mut request) = lock(&record).take() {
        request.response_bytes = sent.load(Ordering::SeqCst);
        lock(&state.log).push((accepted.seq, request));
    }
    state.done();
}

/// Answers one request: `401` without the right credentials, a stall in stall mode, else what
/// `git http-backend` says. `record` is kept up to date as the request goes.
async fn handle(
    state: Arc<State>,
    record: Arc<Mutex<Option<Request>>>,
    local: SocketAddr,
    peer: SocketAddr,
    request: hyper::Request<Incoming>,
) -> io::Result<Response<ResponseBody>> {
    let (head, body) = request.into_parts();
    let header = |name: &str| {
        head.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let target = head
        .uri
        .path_and_query()
        .map_or_else(|| head.uri.to_string(), |p| p.as_str().to_owned());
    *lock(&record) = Some(record_of(&head, &target));
    let update = |f: &dyn Fn(&mut Request)| {
        if let Some(r) = lock(&record).as_mut() {
            f(r);
        }
    };

    let user = match &state.auth {
        None => None,
        Some((expected, user)) => {
            let given = header("authorization").unwrap_or_default();
            if constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
                Some(user.clone())
            } else {
                // Read the body first, unless the client waits for 100-continue, so the client
                // gets the answer rather than a connection reset.
                let continues =
                    header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
                if !continues {
                    let _ = body.collect().await;
                }
                update(&|r| r.status = 401);
                return unauthorized();
            }
        }
    };

    let path = target.split('?').next().unwrap_or_default().to_owned();
    // In stall mode an upload-pack body is read first, to stall fetches but not ref listings.
    let mut body = Some(body);
    let mut buffered = None;
    if state.options.stall_upload_pack
        && head.method == hyper::Method::POST
        && path.ends_with("/git-upload-pack")
    {
        let bytes = body
            .take()
            .map(BodyExt::collect)
            .ok_or_else(|| io::Error::other("no body"))?
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        state
            .bytes_received
            .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        let command = git_command(&bytes);
        let listing = matches!(command.as_deref(), Some("ls-refs" | "object-info"));
        update(&|r| {
            r.body_bytes = bytes.len() as u64;
            r.git_command.clone_from(&command);
            if !listing {
                r.status = 200;
            }
        });
        if !listing {
            return Response::builder()
                .header(CONTENT_TYPE, "application/x-git-upload-pack-result")
                .body(web::stalled())
                .map_err(io::Error::other);
        }
        buffered = Some(bytes);
    }

    let content_length = match (&buffered, header("content-length")) {
        (Some(bytes), _) => Some(bytes.len().to_string()),
        (None, length) => length,
    };
    let mut command = backend_command(&state, &head, &target, local, peer, content_length, user)?;
    let mut child = command.spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(io::Error::other("http-backend has no pipes"));
    };

    tokio::spawn(feed(
        Arc::clone(&state),
        Arc::clone(&record),
        stdin,
        body,
        buffered,
    ));
    let mut stdout = BufReader::new(stdout);
    let response = cgi_head(&mut stdout).await?;
    let (tx, response_body) = web::channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = stdout.read(&mut buf).await
            && n > 0
            && tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_ok()
        {}
        let _ = child.wait().await;
    });
    let response = response.body(response_body).map_err(io::Error::other)?;
    update(&|r| r.status = response.status().as_u16());
    Ok(response)
}

/// `401` asking for basic auth.
fn unauthorized() -> io::Result<Response<ResponseBody>> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header("WWW-Authenticate", "Basic realm=\"git\"")
        .header(CONTENT_TYPE, "text/plain")
        .body(web::full("authentication required\n"))
        .map_err(io::Error::other)
}

/// The log entry of a request, before its answer.
fn record_of(head: &hyper::http::request::Parts, target: &str) -> Request {
    let header = |name: &str| {
        head.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    Request {
        method: head.method.to_string(),
        target: target.to_owned(),
        authorization: head.headers.contains_key(AUTHORIZATION),
        authorization_header: header("authorization"),
        git_protocol: header("git-protocol"),
        user_agent: header("user-agent"),
        chunked: header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked")),
        body_bytes: 0,
        git_command: None,
        status: 0,
        response_bytes: 0,
    }
}

/// Sends the request body (or the `buffered` one) to the backend as it comes, counting it and
/// noting what git asked for from its first bytes; the backend sees the end of the body when
/// this returns (its stdin is dropped).
async fn feed(
    state: Arc<State>,
    record: Arc<Mutex<Option<Request>>>,
    mut stdin: tokio::process::ChildStdin,
    body: Option<Incoming>,
    buffered: Option<Bytes>,
) {
    if let Some(bytes) = buffered {
        // Already counted.
        let _ = stdin.write_all(&bytes).await;
        return;
    }
    let Some(mut body) = body else { return };
    let mut sniffed = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        // Counted before the backend can answer, so the log has it with the answer.
        state
            .bytes_received
            .fetch_add(data.len() as u64, Ordering::SeqCst);
        if sniffed.len() < SNIFF_LEN {
            let keep = data.len().min(SNIFF_LEN - sniffed.len());
            sniffed.extend_from_slice(&data[..keep]);
        }
        if let Some(r) = lock(&record).as_mut() {
            r.body_bytes += data.len() as u64;
            r.git_command = git_command(&sniffed);
        }
        if stdin.write_all(&data).await.is_err() {
            break;
        }
    }
}

/// The CGI head: a `Status: 200 OK` line and headers, up to a blank line.
async fn cgi_head(
    stdout: &mut BufReader<tokio::process::ChildStdout>,
) -> io::Result<hyper::http::response::Builder> {
    let mut response = Response::builder();
    loop {
        let mut line = String::new();
        stdout.read_line(&mut line).await?;
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(response);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| io::Error::other(format!("bad CGI header {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            let code = value.split(' ').next().unwrap_or(value);
            response = response.status(code.parse::<u16>().map_err(io::Error::other)?);
        } else {
            response = response.header(name.trim(), value);
        }
    }
}

/// The `git http-backend` CGI command for one request.
fn backend_command(
    state: &State,
    head: &hyper::http::request::Parts,
    target: &str,
    local: SocketAddr,
    peer: SocketAddr,
    content_length: Option<String>,
    user: Option<String>,
) -> Result<tokio::process::Command> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path_info = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "path is not UTF-8"))?;
    let mut cmd = std::process::Command::new(&state.backend);
    hermetic(&mut cmd);
    cmd.env("GIT_PROJECT_ROOT", &state.base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "crate-test-support")
        .env("SERVER_NAME", local.ip().to_string())
        .env("SERVER_PORT", local.port().to_string())
        .env("REQUEST_METHOD", head.method.as_str())
        .env("REQUEST_URI", target)
        .env("SCRIPT_NAME", "")
        .env("PATH_INFO", path_info.as_ref())
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", peer.ip().to_string())
        .env(
            "CONTENT_TYPE",
            head.headers
                .get(CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            OpenOptions::new().append(true).open(&state.stderr_log)?,
        ));
    if let Some(n) = content_length {
        cmd.env("CONTENT_LENGTH", n);
    }
    if let Some(user) = user {
        cmd.env("REMOTE_USER", user);
    }
    if state.options.receive_pack {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.receivepack")
            .env("GIT_CONFIG_VALUE_0", "true");
    }
    let skip = [
        "authorization",
        "content-type",
        "content-length",
        "proxy-authorization",
    ];
    for (name, value) in &head.headers {
        if skip.contains(&name.as_str()) {
            continue;
        }
        let var = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        cmd.env(var, String::from_utf8_lossy(value.as_bytes()).as_ref());
    }
    let mut cmd = tokio::process::Command::from(cmd);
    // Dropping the server (its runtime) kills a backend still running.
    cmd.kill_on_drop(true);
    Ok(cmd)
}

/// Bytes of a request body kept for [`git_command`].
const SNIFF_LEN: usize = 1024;

/// What a git request body asks for, from its first pkt-line (see [`Request::git_command`]).
fn git_command(body: &[u8]) -> Option<String> {
    let len = usize::from_str_radix(std::str::from_utf8(body.get(..4)?).ok()?, 16).ok()?;
    // 0000 flush, 0001 delim, 0002 response-end: no payload
    let line = body.get(4..len.max(4).min(body.len()))?;
    let line = std::str::from_utf8(line.split(|&b| b == 0).next()?)
        .ok()?
        .trim_end();
    if let Some(command) = line.strip_prefix("command=") {
        return Some(command.to_owned());
    }
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some("want"), Some(_), _) => Some("fetch".to_owned()),
        (Some(old), Some(new), Some(_))
            if old.len() >= 40
                && new.len() == old.len()
                && old
                    .bytes()
                    .chain(new.bytes())
                    .all(|b| b.is_ascii_hexdigit()) =>
        {
            Some("push".to_owned())
        }
        _ => None,
    }
}

/// Compares without an early exit (habit; these are test credentials).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::git_command;

    #[test]
    fn git_commands_are_recognised() {
        assert_eq!(
            git_command(b"0014command=ls-refs\n0001").as_deref(),
            Some("ls-refs")
        );
        assert_eq!(
            git_command(b"0012command=fetch\n").as_deref(),
            Some("fetch")
        );
        let want = b"0032want 0123456789abcdef0123456789abcdef01234567\n00000009done\n";
        assert_eq!(git_command(want).as_deref(), Some("fetch"));
        let zero = "0".repeat(40);
        let new = "a".repeat(40);
        let update = format!("{zero} {new} refs/heads/main\0 report-status");
        let push = format!("{:04x}{update}0000", update.len() + 4);
        assert_eq!(git_command(push.as_bytes()).as_deref(), Some("push"));
        assert_eq!(git_command(b"0000"), None);
        assert_eq!(git_command(b"\x1f\x8b\x08\x00"), None);
        assert_eq!(git_command(b""), None);
    }
}
