//! `ScriptedHttp`: an HTTP/1.1 server on raw TCP (optionally TLS) that answers every request
//! through a closure, for smart-HTTP clients meeting servers that redirect, ask for credentials,
//! lie about refs, or never stop sending.
//!
//! One request per connection (`Connection: close`), a thread per connection. Request heads are
//! parsed with `httparse`; bodies may come with `Content-Length` or chunked (libgit2 sends
//! chunked POSTs); `Expect: 100-continue` is answered. Every request is logged before it is
//! answered, so the log is complete as soon as a client has its answer.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use tempfile::TempDir;

use super::pktline::{self, FLUSH};
use super::upload_pack::{
    DEFAULT_CAPABILITIES, PackResponse, RefAdvertisement, write_endless_advertisement,
    write_stateless_answer,
};
use super::{ByteCounter, Counted, SETTLE_TIMEOUT, Workers};
use crate::Result;
use crate::server::{AcceptLoop, MAX_HEADERS, bad_request, lock, read_line};

/// Largest request head accepted (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted.
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Content type of a smart-HTTP ref advertisement for `git-upload-pack`.
pub const ADVERTISEMENT_TYPE: &str = "application/x-git-upload-pack-advertisement";
/// Content type of a smart-HTTP `git-upload-pack` result.
pub const RESULT_TYPE: &str = "application/x-git-upload-pack-result";

/// One request as the server read it: what the handler sees, and what the log keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Connection number, from 0, in accept order (one request per connection).
    pub connection: usize,
    /// The client's address.
    pub peer: SocketAddr,
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query as sent (`/repo.git/info/refs?service=git-upload-pack`).
    pub target: String,
    /// Header names and values in the order sent (values lossy UTF-8, trimmed).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked but not decompressed (see [`git_body`](Self::git_body)).
    pub body: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
}

impl HttpRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Authorization` header, verbatim (`Basic YWxpY2U6czNjcmV0`).
    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The body, gunzipped when it came with `Content-Encoding: gzip` (git compresses large
    /// upload-pack requests; libgit2 does not).
    pub fn git_body(&self) -> Result<Vec<u8>> {
        if self
            .header("content-encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
        {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&self.body[..])
                .take(MAX_BODY)
                .read_to_end(&mut out)?;
            Ok(out)
        } else {
            Ok(self.body.clone())
        }
    }

    /// Whether this is the smart-HTTP ref discovery:
    /// `GET .../info/refs?service=git-upload-pack`.
    pub fn is_ref_discovery(&self) -> bool {
        self.method == "GET"
            && self.path().ends_with("/info/refs")
            && self
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "service=git-upload-pack"))
    }

    /// Whether this is a `POST .../git-upload-pack`.
    pub fn is_upload_pack(&self) -> bool {
        self.method == "POST" && self.path().ends_with("/git-upload-pack")
    }
}

/// How to answer a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete response: `Content-Length` and `Connection: close` are added unless given.
    Response {
        /// Status code.
        status: u16,
        /// Headers, in order.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
    /// A redirect (301, 302, 303, 307 or 308) to `location` (absolute or relative).
    Redirect {
        /// Status code.
        status: u16,
        /// The `Location` header.
        location: String,
    },
    /// `401` with `WWW-Authenticate: Basic realm="x"`.
    Unauthorized,
    /// The smart-HTTP ref advertisement: `# service=git-upload-pack`, a flush, then the
    /// advertisement as [`super::ScriptedGitDaemon`] sends it, as
    /// `application/x-git-upload-pack-advertisement`.
    Advertisement(RefAdvertisement),
    /// The `# service=git-upload-pack` preamble, then ref lines forever (chunked).
    EndlessAdvertisement {
        /// Capabilities of the first ref line.
        capabilities: String,
    },
    /// An upload-pack result (`application/x-git-upload-pack-result`, chunked) computed from
    /// the request body as `git upload-pack --stateless-rpc` would: the shallow section when
    /// the client asked to deepen (or the script forces one), then `NAK` and the pack when the
    /// body ends with `done`.
    UploadPackResult(PackResponse),
    /// The status line, then one header whose value never ends.
    EndlessHeaderValue,
    /// The status line, then header lines forever.
    EndlessHeaderLines,
    /// A `200` with this content type and a chunked body repeating `chunk` forever.
    EndlessBody {
        /// The `Content-Type`.
        content_type: String,
        /// What is repeated (should not be empty; `x` is used if it is).
        chunk: Vec<u8>,
    },
    /// These bytes verbatim, then close.
    Raw(Vec<u8>),
    /// Close without an answer.
    Close,
}

impl Reply {
    /// A `status` response with a content type and body.
    pub fn with_body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::Response {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    /// An empty response with `status` (e.g. 404, 500).
    pub fn status(status: u16) -> Self {
        Self::Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A redirect with `status` to `location`.
    pub fn redirect(status: u16, location: impl Into<String>) -> Self {
        Self::Redirect {
            status,
            location: location.into(),
        }
    }

    /// [`Reply::EndlessAdvertisement`] with the default capabilities.
    pub fn endless_advertisement() -> Self {
        Self::EndlessAdvertisement {
            capabilities: DEFAULT_CAPABILITIES.to_owned(),
        }
    }

    /// [`Reply::EndlessBody`].
    pub fn endless_body(content_type: &str, chunk: impl Into<Vec<u8>>) -> Self {
        Self::EndlessBody {
            content_type: content_type.to_owned(),
            chunk: chunk.into(),
        }
    }
}

/// A handler serving a scripted git repository over smart HTTP: the ref discovery gets
/// `advertisement`, a `POST .../git-upload-pack` gets `response`, anything else `404`.
pub fn smart_git(
    advertisement: RefAdvertisement,
    response: PackResponse,
) -> impl Fn(&HttpRequest) -> Reply + Send + Sync + 'static {
    move |request| {
        if request.is_ref_discovery() {
            Reply::Advertisement(advertisement.clone())
        } else if request.is_upload_pack() {
            Reply::UploadPackResult(response.clone())
        } else {
            Reply::status(404)
        }
    }
}

/// The handler's signature.
type Handler = dyn Fn(&HttpRequest) -> Reply + Send + Sync;

/// What the connection threads share.
struct State {
    handler: Box<Handler>,
    tls: Option<Arc<ServerConfig>>,
    log: Mutex<Vec<HttpRequest>>,
    sent: ByteCounter,
    workers: Arc<Workers>,
}

/// Options for [`ScriptedHttp`]; start with [`ScriptedHttp::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .start(handler) to run the server"]
pub struct ScriptedHttpBuilder {
    ip: IpAddr,
    tls: bool,
}

impl ScriptedHttpBuilder {
    /// Bind `ip` instead of `127.0.0.1` (e.g. `127.0.0.2`).
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = ip;
        self
    }

    /// Serve HTTPS with a certificate for the bound IP (and `localhost`) signed by a CA made
    /// for this server (see [`ScriptedHttp::ca_pem`] and [`ScriptedHttp::ca_file`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Starts serving, answering every request with `handler`.
    pub fn start(
        self,
        handler: impl Fn(&HttpRequest) -> Reply + Send + Sync + 'static,
    ) -> Result<ScriptedHttp> {
        ScriptedHttp::start_with(&self, Box::new(handler))
    }
}

/// The CA of a TLS server, kept for clients.
#[derive(Debug)]
struct Ca {
    pem: String,
    file: PathBuf,
    _dir: TempDir,
}

/// An HTTP/1.1 server on `<ip>:<port>` (optionally HTTPS) answering each request through a
/// handler closure; see [`Reply`] for what it can say.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use crate_test_support::hostile::{Reply, ScriptedHttp};
/// let http = ScriptedHttp::builder().tls().start(|request| {
///     if request.authorization().is_none() {
///         Reply::Unauthorized
///     } else {
///         Reply::redirect(302, "https://127.0.0.1:1/elsewhere.git")
///     }
/// })?;
/// let url = http.url("/repo.git"); // https://127.0.0.1:PORT/repo.git
/// // point SSL_CERT_FILE (libgit2) or GIT_SSL_CAINFO (git) at http.ca_file()
/// # Ok(()) }
/// ```
pub struct ScriptedHttp {
    accept: Option<AcceptLoop>,
    state: Arc<State>,
    ca: Option<Ca>,
}

impl std::fmt::Debug for ScriptedHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedHttp")
            .field("addr", &self.addr())
            .field("tls", &self.ca.is_some())
            .finish_non_exhaustive()
    }
}

impl ScriptedHttp {
    /// Plain HTTP on `127.0.0.1`, answering every request with `handler`.
    pub fn start(handler: impl Fn(&HttpRequest) -> Reply + Send + Sync + 'static) -> Result<Self> {
        Self::builder().start(handler)
    }

    /// Options: the IP to bind, TLS.
    pub fn builder() -> ScriptedHttpBuilder {
        ScriptedHttpBuilder {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls: false,
        }
    }

    fn start_with(options: &ScriptedHttpBuilder, handler: Box<Handler>) -> Result<Self> {
        let (tls, ca) = if options.tls {
            let (config, ca) = make_tls(options.ip)?;
            (Some(config), Some(ca))
        } else {
            (None, None)
        };
        let state = Arc::new(State {
            handler,
            tls,
            log: Mutex::new(Vec::new()),
            sent: ByteCounter::default(),
            workers: Arc::new(Workers::default()),
        });
        let accept = {
            let state = Arc::clone(&state);
            let mut next = 0usize;
            AcceptLoop::start_on(options.ip, "scripted-http", move |stream, tracked| {
                let connection = next;
                next += 1;
                let id = tracked.track(&stream);
                let tracked = Arc::clone(tracked);
                let state2 = Arc::clone(&state);
                let _ = state.workers.spawn("scripted-http-conn", move || {
                    let _ = serve(&stream, connection, &state2);
                    let _ = stream.shutdown(Shutdown::Both);
                    tracked.untrack(id);
                });
            })?
        };
        Ok(Self {
            accept: Some(accept),
            state,
            ca,
        })
    }

    /// The address served (`<ip>:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.accept
            .as_ref()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), AcceptLoop::addr)
    }

    /// `http://<ip>:<port><path>` (`https://` with TLS; a `/` is put before `path` if it has
    /// none).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("{scheme}://{}{slash}{path}", self.addr())
    }

    /// The CA certificate (PEM) that signed the server's certificate, with TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(|ca| ca.pem.as_str())
    }

    /// A file holding [`ca_pem`](Self::ca_pem) (deleted when the server is dropped). Point
    /// `SSL_CERT_FILE` at it for OpenSSL (libgit2) or rustls-native-certs, and `GIT_SSL_CAINFO`
    /// for the git command line (Debian's git uses GnuTLS, which ignores `SSL_CERT_FILE`).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_ref().map(|ca| ca.file.as_path())
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accept
            .as_ref()
            .map_or(0, |a| a.tracked().connections())
    }

    /// Bytes of HTTP sent so far (before TLS encryption).
    pub fn bytes_sent(&self) -> u64 {
        self.state.sent.get()
    }

    /// Waits until at least `n` bytes have been sent; returns whether that happened within
    /// `timeout`.
    pub fn wait_for_bytes_sent(&self, n: u64, timeout: Duration) -> bool {
        self.state.sent.wait_for(n, timeout)
    }

    /// Every request read so far, in the order read (each is logged before it is answered).
    pub fn requests(&self) -> Vec<HttpRequest> {
        lock(&self.state.log).clone()
    }

    /// Takes the log: returns every request read so far and forgets them.
    pub fn take_log(&self) -> Vec<HttpRequest> {
        std::mem::take(&mut *lock(&self.state.log))
    }
}

impl Drop for ScriptedHttp {
    fn drop(&mut self) {
        drop(self.accept.take());
        self.state.workers.wait_idle(SETTLE_TIMEOUT);
    }
}

/// A CA and a server certificate for `ip` and `localhost`, as a rustls configuration.
fn make_tls(ip: IpAddr) -> Result<(Arc<ServerConfig>, Ca)> {
    let failed =
        |what: &'static str| move |e: rcgen::Error| io::Error::other(format!("{what}: {e}"));
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "crate-test-support scripted CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(failed("CA key"))?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(failed("CA certificate"))?;

    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, ip.to_string());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.subject_alt_names = vec![
        SanType::IpAddress(ip),
        SanType::DnsName("localhost".try_into().map_err(failed("SAN"))?),
    ];
    let key = KeyPair::generate().map_err(failed("server key"))?;
    let cert = params
        .signed_by(&key, &ca)
        .map_err(failed("server certificate"))?;

    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(io::Error::other)?;

    let dir = tempfile::Builder::new()
        .prefix("crate-test-scripted-ca-")
        .tempdir()?;
    let file = dir.path().join("ca.pem");
    let pem = ca.pem();
    std::fs::write(&file, &pem)?;
    Ok((
        Arc::new(config),
        Ca {
            pem,
            file,
            _dir: dir,
        },
    ))
}

/// A connection, plain or TLS.
trait Transport: Read + Write {
    /// Ends the sending side (TLS: `close_notify` first).
    fn finish(&mut self);
}

impl Transport for TcpStream {
    fn finish(&mut self) {
        let _ = self.flush();
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Transport for StreamOwned<ServerConnection, TcpStream> {
    fn finish(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
        let _ = self.sock.shutdown(Shutdown::Write);
    }
}

/// Serves one connection: TLS if configured, one request, one answer.
fn serve(raw: &TcpStream, connection: usize, state: &State) -> Result<()> {
    let stream = raw.try_clone()?;
    let peer = raw.peer_addr()?;
    if let Some(config) = &state.tls {
        let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        exchange(&mut StreamOwned::new(conn, stream), peer, connection, state)?;
    } else {
        exchange(&mut { stream }, peer, connection, state)?;
    }
    // Let the client read the whole answer: wait (bounded) for it to hang up.
    raw.set_read_timeout(Some(SETTLE_TIMEOUT))?;
    let _ = io::copy(&mut raw.take(1 << 20), &mut io::sink());
    Ok(())
}

/// Reads one request, logs it, asks the handler and sends its reply.
fn exchange(
    conn: &mut impl Transport,
    peer: SocketAddr,
    connection: usize,
    state: &State,
) -> Result<()> {
    let Some(request) = read_request(conn, peer, connection)? else {
        return Ok(());
    };
    lock(&state.log).push(request.clone());
    let reply = (state.handler)(&request);
    {
        let mut out = BufWriter::with_capacity(
            64 * 1024,
            Counted {
                inner: &mut *conn,
                counter: &state.sent,
            },
        );
        write_reply(&mut out, &request, &reply)?;
        out.flush()?;
    }
    conn.finish();
    Ok(())
}

/// Reads a request head and body; `None` when the client closed before sending anything.
fn read_request(
    conn: &mut impl Transport,
    peer: SocketAddr,
    connection: usize,
) -> Result<Option<HttpRequest>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (mut request, consumed) = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let request = HttpRequest {
                    connection,
                    peer,
                    method: parsed.method.unwrap_or_default().to_owned(),
                    target: parsed.path.unwrap_or_default().to_owned(),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).trim().to_owned(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                    chunked: false,
                };
                break (request, n);
            }
            Ok(httparse::Status::Partial) => {}
            Err(err) => return Err(bad_request(&format!("bad request head: {err}"))),
        }
        if buf.len() > MAX_HEAD {
            return Err(bad_request("request head too large"));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a request head",
                ))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        conn.flush()?;
    }
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = match request.header("content-length") {
        Some(len) if !chunked => Some(
            len.parse::<u64>()
                .map_err(|_| bad_request(&format!("bad Content-Length {len:?}")))?,
        ),
        _ => None,
    };
    let mut reader = BufReader::new((&buf[consumed..]).chain(&mut *conn));
    if chunked {
        request.chunked = true;
        request.body = read_chunked(&mut reader)?;
    } else if let Some(len) = length {
        if len > MAX_BODY {
            return Err(bad_request("request body too large"));
        }
        (&mut reader).take(len).read_to_end(&mut request.body)?;
        if request.body.len() as u64 != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "request body shorter than Content-Length",
            ));
        }
    }
    Ok(Some(request))
}

/// Reads a chunked body (chunk sizes parsed by `httparse`), and the trailers after it.
fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let Ok(httparse::Status::Complete((_, size))) =
            httparse::parse_chunk_size(format!("{line}\r\n").as_bytes())
        else {
            return Err(bad_request(&format!("bad chunk size {line:?}")));
        };
        if size == 0 {
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() as u64 + size > MAX_BODY {
            return Err(bad_request("request body too large"));
        }
        let before = body.len();
        reader.take(size).read_to_end(&mut body)?;
        if (body.len() - before) as u64 != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "request body ended inside a chunk",
            ));
        }
        if !read_line(reader)?.is_empty() {
            return Err(bad_request("chunk not followed by CRLF"));
        }
    }
}

/// The reason phrase for the status codes used in tests.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Scripted",
    }
}

/// Writes a complete response with `Content-Length` (unless a header sets framing).
fn write_complete(
    out: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<()> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if !has("content-length") && !has("transfer-encoding") {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    if !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    Ok(())
}

/// Writes a `200` head with `content_type` and a chunked body.
fn write_chunked_head(out: &mut impl Write, content_type: &str) -> Result<()> {
    out.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nCache-Control: no-cache\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )?;
    Ok(())
}

/// The `# service=git-upload-pack` preamble of a smart-HTTP advertisement, with its flush.
fn service_preamble() -> Vec<u8> {
    let mut out = pktline::text("# service=git-upload-pack");
    out.extend_from_slice(FLUSH);
    out
}

fn write_reply(out: &mut impl Write, request: &HttpRequest, reply: &Reply) -> Result<()> {
    match reply {
        Reply::Response {
            status,
            headers,
            body,
        } => write_complete(out, *status, headers, body),
        Reply::Redirect { status, location } => write_complete(
            out,
            *status,
            &[("Location".to_owned(), location.clone())],
            b"",
        ),
        Reply::Unauthorized => write_complete(
            out,
            401,
            &[
                (
                    "WWW-Authenticate".to_owned(),
                    "Basic realm=\"x\"".to_owned(),
                ),
                ("Content-Type".to_owned(), "text/plain".to_owned()),
            ],
            b"authentication required\n",
        ),
        Reply::Advertisement(advertisement) => {
            let mut body = service_preamble();
            body.extend_from_slice(&advertisement.encode());
            write_complete(
                out,
                200,
                &[
                    ("Content-Type".to_owned(), ADVERTISEMENT_TYPE.to_owned()),
                    ("Cache-Control".to_owned(), "no-cache".to_owned()),
                ],
                &body,
            )
        }
        Reply::EndlessAdvertisement { capabilities } => {
            write_chunked_head(out, ADVERTISEMENT_TYPE)?;
            let mut body = Chunked::new(out);
            body.write_all(&service_preamble())?;
            write_endless_advertisement(&mut body, capabilities)
        }
        Reply::UploadPackResult(response) => {
            write_chunked_head(out, RESULT_TYPE)?;
            let mut body = Chunked::new(out);
            write_stateless_answer(&mut body, &request.git_body()?, response)?;
            body.finish()
        }
        Reply::EndlessHeaderValue => {
            out.write_all(b"HTTP/1.1 200 OK\r\nX-Endless: ")?;
            let filler = vec![b'a'; 64 * 1024];
            loop {
                out.write_all(&filler)?;
            }
        }
        Reply::EndlessHeaderLines => {
            out.write_all(b"HTTP/1.1 200 OK\r\n")?;
            let mut batch = Vec::with_capacity(72 * 1024);
            for n in 0u64.. {
                batch.extend_from_slice(format!("X-Filler-{n:012}: x\r\n").as_bytes());
                if batch.len() >= 64 * 1024 {
                    out.write_all(&batch)?;
                    batch.clear();
                }
            }
            Ok(())
        }
        Reply::EndlessBody {
            content_type,
            chunk,
        } => {
            write_chunked_head(out, content_type)?;
            let piece: &[u8] = if chunk.is_empty() { b"x" } else { chunk };
            let mut body = Chunked::new(out);
            loop {
                body.write_all(piece)?;
            }
        }
        Reply::Raw(bytes) => Ok(out.write_all(bytes)?),
        Reply::Close => Ok(()),
    }
}

/// A writer that sends what it is given as HTTP chunks of up to 32 KiB.
struct Chunked<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

/// Size of the chunks [`Chunked`] sends.
const CHUNK: usize = 32 * 1024;

impl<W: Write> Chunked<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn emit(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner
                .write_all(format!("{:x}\r\n", self.buf.len()).as_bytes())?;
            self.inner.write_all(&self.buf)?;
            self.inner.write_all(b"\r\n")?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Sends what is buffered and the last (empty) chunk.
    fn finish(mut self) -> Result<()> {
        self.emit()?;
        self.inner.write_all(b"0\r\n\r\n")?;
        self.inner.flush()
    }
}

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::read_chunked;

    #[test]
    fn chunked_bodies_are_decoded() {
        let mut input: &[u8] = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\nrest";
        let body = read_chunked(&mut input).expect("valid chunked body");
        assert_eq!(body, b"hello, world");
        assert_eq!(input, b"rest");
    }
}
