//! Smart HTTP server: a small HTTP/1.1 server on `std::net` with `git http-backend` behind it as
//! a CGI program.
//!
//! One request per connection (`Connection: close`), a thread per connection. Request bodies may
//! come with `Content-Length` or chunked (libgit2 and git send chunked POSTs when a request is
//! large) and are streamed to the CGI program; `Expect: 100-continue` is honoured. Responses are
//! sent chunked. Optional HTTP basic auth answers wrong or missing credentials with `401` and
//! `WWW-Authenticate: Basic realm="git"`. Every request is logged (method, target, the
//! `Authorization` header as sent, and the status), and bytes are counted. The server binds
//! `127.0.0.1` unless told another IP ([`SmartHttpBuilder::bind`]).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use crate::Result;
use crate::process::{git, hermetic, require_file, run, spawn, with_git_suffix};
use crate::server::{AcceptLoop, MAX_HEADERS, Tracked, bad_request, lock, read_line};

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

/// What the connection threads share.
#[derive(Debug)]
struct State {
    base: PathBuf,
    backend: PathBuf,
    /// `Basic <base64(user:password)>` and the user, when auth is required.
    auth: Option<(String, String)>,
    options: SmartHttpBuilder,
    /// Finished requests with the number of their connection (accept order).
    log: Mutex<Vec<(u64, Request)>>,
    accepted: AtomicU64,
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
    accept: AcceptLoop,
    state: Arc<State>,
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
            (
                format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
                user.clone(),
            )
        });
        let state = Arc::new(State {
            base: base.canonicalize()?,
            backend,
            auth,
            options,
            log: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            in_flight: Mutex::new(0),
            settled: Condvar::new(),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            stderr_log,
        });
        let ip = state.options.ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let accept = {
            let state = Arc::clone(&state);
            AcceptLoop::start_on(ip, "smart-http", move |stream, tracked| {
                // Counted here, on the accept thread, so that a client that has finished has
                // all its requests counted before it can look at the log.
                *lock(&state.in_flight) += 1;
                let seq = state.accepted.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&state);
                let tracked = Arc::clone(tracked);
                let spawned = std::thread::Builder::new()
                    .name("smart-http-conn".to_owned())
                    .spawn({
                        let state = Arc::clone(&state);
                        move || {
                            let id = tracked.track(&stream);
                            serve(&stream, seq, &state, &tracked);
                            tracked.untrack(id);
                            state.done();
                        }
                    });
                if spawned.is_err() {
                    state.done();
                }
            })?
        };
        Ok(Self {
            accept,
            state,
            _logdir: logdir,
        })
    }

    /// `http://<ip>:<port>/<repo>` (`.git` is added unless `repo` ends with it; the IP is
    /// `127.0.0.1` unless [`SmartHttpBuilder::bind`] said otherwise).
    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{}", self.accept.addr(), with_git_suffix(repo))
    }

    /// Like [`url`](Self::url) with `user:password@` in it, for the git command line. (The
    /// loader must never put credentials in URLs; this is for driving `git` in tests.)
    pub fn url_with_credentials(&self, repo: &str, user: &str, password: &str) -> String {
        self.url(repo)
            .replacen("http://", &format!("http://{user}:{password}@"), 1)
    }

    /// The address served (`<ip>:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.accept.addr()
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

/// The parts of a request head used here.
#[derive(Debug, Default)]
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy)]
enum Body {
    None,
    Length(u64),
    Chunked,
}

/// A writer that counts bytes into the request record and the server total.
struct Counting<'a> {
    inner: TcpStream,
    record: &'a mut Request,
    total: &'a AtomicU64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.record.response_bytes += n as u64;
        self.total.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Serves one connection (one request), logging it whatever happens.
fn serve(stream: &TcpStream, seq: u64, state: &State, tracked: &Tracked) {
    let mut record = Request {
        method: String::new(),
        target: String::new(),
        authorization: false,
        authorization_header: None,
        git_protocol: None,
        user_agent: None,
        chunked: false,
        body_bytes: 0,
        git_command: None,
        status: 0,
        response_bytes: 0,
    };
    let result = serve_request(stream, state, tracked, &mut record);
    let _ = stream.shutdown(Shutdown::Both);
    if result.is_err() && record.method.is_empty() {
        // Not a request at all (e.g. a readiness probe that connected and closed).
        return;
    }
    lock(&state.log).push((seq, record));
}

fn serve_request(
    stream: &TcpStream,
    state: &State,
    tracked: &Tracked,
    record: &mut Request,
) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let head = read_head(&mut reader)?;
    record.method.clone_from(&head.method);
    record.target.clone_from(&head.target);
    record.authorization = head.header("Authorization").is_some();
    record.authorization_header = head.header("Authorization").map(str::to_owned);
    record.git_protocol = head.header("Git-Protocol").map(str::to_owned);
    record.user_agent = head.header("User-Agent").map(str::to_owned);
    let body = body_framing(&head)?;
    record.chunked = matches!(body, Body::Chunked);
    let expects_continue = head
        .header("Expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));

    let mut out = Counting {
        inner: stream.try_clone()?,
        record,
        total: &state.bytes_sent,
    };

    let user = match &state.auth {
        None => None,
        Some((expected, user)) => {
            let given = head.header("Authorization").unwrap_or_default();
            if constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
                Some(user.as_str())
            } else {
                // Read the body first, unless the client waits for 100-continue, so the client
                // gets the answer rather than a connection reset.
                if !expects_continue {
                    copy_body(&mut reader, body, &mut io::sink())?;
                }
                return respond_simple(
                    &mut out,
                    401,
                    "Unauthorized",
                    &[("WWW-Authenticate", "Basic realm=\"git\"")],
                    "authentication required\n",
                );
            }
        }
    };

    if expects_continue {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }

    let path = head.target.split('?').next().unwrap_or_default();
    // In stall mode an upload-pack body is read first, to stall fetches but not ref listings.
    let mut buffered = None;
    if state.options.stall_upload_pack
        && head.method == "POST"
        && path.ends_with("/git-upload-pack")
    {
        match stall_fetch(&mut reader, body, state, &mut out)? {
            Some(buf) => buffered = Some(buf),
            None => return Ok(()),
        }
    }

    let content_length = match (&buffered, body) {
        (Some(buf), _) => Some(buf.len() as u64),
        (None, Body::Length(n)) => Some(n),
        (None, _) => None,
    };
    let mut cmd = backend_command(state, stream, &head, content_length, user)?;
    let mut child = spawn(&mut cmd)?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let pid = child.id();
    tracked.add_child(child);
    let (Some(mut stdin), Some(stdout)) = (stdin, stdout) else {
        return Err(io::Error::other("http-backend has no pipes"));
    };

    let received = &state.bytes_received;
    let outcome = std::thread::scope(|scope| {
        let feeder = scope.spawn(move || -> Result<(u64, Vec<u8>)> {
            if let Some(buf) = buffered {
                stdin.write_all(&buf)?;
                return Ok((buf.len() as u64, buf));
            }
            let mut sniff = Sniff {
                inner: &mut stdin,
                head: Vec::new(),
            };
            let n = copy_body(&mut reader, body, &mut sniff)?;
            received.fetch_add(n, Ordering::SeqCst);
            Ok((n, sniff.head))
            // stdin is dropped here: the backend sees the end of the body
        });
        let sent = relay_response(BufReader::new(stdout), &mut out);
        let fed = feeder
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("body thread panicked")));
        (sent, fed)
    });
    let _ = tracked.wait_child(pid);
    let (sent, fed) = outcome;
    if let Ok((n, head)) = fed {
        out.record.body_bytes = n;
        out.record.git_command = git_command(&head);
    }
    sent
}

/// Stall mode, for a `POST .../git-upload-pack`: reads the body; a fetch gets a `200` head and
/// then nothing until the client gives up or the server is dropped (returns `None`), a ref
/// listing's body is given back to be forwarded.
fn stall_fetch(
    reader: &mut impl BufRead,
    body: Body,
    state: &State,
    out: &mut Counting<'_>,
) -> Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    copy_body(reader, body, &mut buf)?;
    state
        .bytes_received
        .fetch_add(buf.len() as u64, Ordering::SeqCst);
    out.record.body_bytes = buf.len() as u64;
    out.record.git_command = git_command(&buf);
    if matches!(
        out.record.git_command.as_deref(),
        Some("ls-refs" | "object-info")
    ) {
        return Ok(Some(buf));
    }
    out.record.status = 200;
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-result\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )?;
    out.flush()?;
    let _ = io::copy(reader, &mut io::sink());
    Ok(None)
}

/// The `git http-backend` CGI command for one request.
fn backend_command(
    state: &State,
    stream: &TcpStream,
    head: &Head,
    content_length: Option<u64>,
    user: Option<&str>,
) -> Result<Command> {
    let (path, query) = head
        .target
        .split_once('?')
        .unwrap_or((head.target.as_str(), ""));
    let mut cmd = Command::new(&state.backend);
    hermetic(&mut cmd);
    cmd.env("GIT_PROJECT_ROOT", &state.base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "crate-test-support")
        .env("SERVER_NAME", stream.local_addr()?.ip().to_string())
        .env("SERVER_PORT", stream.local_addr()?.port().to_string())
        .env("REQUEST_METHOD", &head.method)
        .env("REQUEST_URI", &head.target)
        .env("SCRIPT_NAME", "")
        .env("PATH_INFO", percent_decode(path)?)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", stream.peer_addr()?.ip().to_string())
        .env(
            "CONTENT_TYPE",
            head.header("Content-Type").unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            OpenOptions::new().append(true).open(&state.stderr_log)?,
        ));
    if let Some(n) = content_length {
        cmd.env("CONTENT_LENGTH", n.to_string());
    }
    if let Some(user) = user {
        cmd.env("REMOTE_USER", user);
    }
    if state.options.receive_pack {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.receivepack")
            .env("GIT_CONFIG_VALUE_0", "true");
    }
    for (name, value) in &head.headers {
        let skip = [
            "authorization",
            "content-type",
            "content-length",
            "proxy-authorization",
        ];
        if skip.iter().any(|s| name.eq_ignore_ascii_case(s)) {
            continue;
        }
        let var = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        cmd.env(var, value);
    }
    Ok(cmd)
}

/// Keeps the first bytes written through it, to see what a request asked for.
struct Sniff<W> {
    inner: W,
    head: Vec<u8>,
}

/// Bytes of a request body kept for [`git_command`].
const SNIFF_LEN: usize = 1024;

impl<W: Write> Write for Sniff<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let keep = n.min(SNIFF_LEN.saturating_sub(self.head.len()));
        self.head.extend_from_slice(&buf[..keep]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

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

/// Reads the request line and headers.
fn read_head(reader: &mut impl BufRead) -> Result<Head> {
    let line = read_line(reader)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_request(&format!("bad request line {line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad_request(&format!("unsupported version {version:?}")));
    }
    let mut head = Head {
        method: method.to_owned(),
        target: target.to_owned(),
        headers: Vec::new(),
    };
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            return Ok(head);
        }
        if head.headers.len() >= MAX_HEADERS {
            return Err(bad_request("too many headers"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad_request(&format!("bad header line {line:?}")))?;
        head.headers
            .push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

fn body_framing(head: &Head) -> Result<Body> {
    if let Some(te) = head.header("Transfer-Encoding") {
        if te.eq_ignore_ascii_case("chunked") {
            return Ok(Body::Chunked);
        }
        return Err(bad_request(&format!(
            "unsupported Transfer-Encoding {te:?}"
        )));
    }
    match head.header("Content-Length") {
        Some(len) => len
            .parse()
            .map(Body::Length)
            .map_err(|_| bad_request(&format!("bad Content-Length {len:?}"))),
        None => Ok(Body::None),
    }
}

/// Copies the request body (de-chunked) to `out`; returns the number of body bytes.
fn copy_body(reader: &mut impl BufRead, body: Body, out: &mut impl Write) -> Result<u64> {
    match body {
        Body::None => Ok(0),
        Body::Length(n) => {
            let copied = io::copy(&mut reader.take(n), out)?;
            if copied == n {
                Ok(n)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "request body shorter than Content-Length",
                ))
            }
        }
        Body::Chunked => {
            let mut total = 0;
            loop {
                let line = read_line(reader)?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = u64::from_str_radix(size, 16)
                    .map_err(|_| bad_request(&format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    // trailers, then the empty line
                    while !read_line(reader)?.is_empty() {}
                    return Ok(total);
                }
                let copied = io::copy(&mut reader.take(size), out)?;
                if copied != size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "request body ended inside a chunk",
                    ));
                }
                total += size;
                if !read_line(reader)?.is_empty() {
                    return Err(bad_request("chunk not followed by CRLF"));
                }
            }
        }
    }
}

/// Turns the CGI output (headers, blank line, body) into a chunked HTTP response.
fn relay_response(mut cgi: impl BufRead, out: &mut Counting<'_>) -> Result<()> {
    let mut status = (200u16, "OK".to_owned());
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut cgi)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| io::Error::other(format!("bad CGI header {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            let (code, reason) = value.split_once(' ').unwrap_or((value, ""));
            let code = code
                .parse()
                .map_err(|_| io::Error::other(format!("bad CGI status {value:?}")))?;
            status = (code, reason.to_owned());
        } else {
            headers.push((name.trim().to_owned(), value.to_owned()));
        }
    }
    out.record.status = status.0;
    let mut head = format!("HTTP/1.1 {} {}\r\n", status.0, status.1);
    for (name, value) in &headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    out.write_all(head.as_bytes())?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = cgi.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(format!("{n:x}\r\n").as_bytes())?;
        out.write_all(&buf[..n])?;
        out.write_all(b"\r\n")?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

/// A complete small response with `Content-Length`.
fn respond_simple(
    out: &mut Counting<'_>,
    code: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<()> {
    out.record.status = code;
    let mut head = format!("HTTP/1.1 {code} {reason}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(
        head,
        "Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.flush()
}

/// `%XX` decoding of a URL path (no `+` handling: that is for query strings).
fn percent_decode(path: &str) -> Result<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad_request("bad %-escape in path"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad_request("path is not UTF-8"))
}

/// Compares without an early exit (habit; these are test credentials).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 with padding (RFC 4648), for the expected `Authorization` value.
fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(TABLE[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Body, base64, copy_body, git_command, percent_decode};

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

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"alice:s3cret"), "YWxpY2U6czNjcmV0");
    }

    #[test]
    fn chunked_body_is_decoded() {
        let mut input: &[u8] = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\nrest";
        let mut out = Vec::new();
        let n = copy_body(&mut input, Body::Chunked, &mut out).expect("valid chunked body");
        assert_eq!(n, 12);
        assert_eq!(out, b"hello, world");
        assert_eq!(input, b"rest");
    }

    #[test]
    fn path_is_percent_decoded() {
        assert_eq!(
            percent_decode("/a%20b.git/info/refs").expect("valid escape"),
            "/a b.git/info/refs"
        );
        assert!(percent_decode("/a%2").is_err());
    }
}
