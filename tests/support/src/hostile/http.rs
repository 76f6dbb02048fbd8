//! `ScriptedHttp`: an HTTP/1.1 server (hyper, optionally TLS) that answers every request
//! through a closure, for smart-HTTP clients meeting servers that redirect, ask for credentials,
//! lie about refs, or never stop sending.
//!
//! One request per connection (keep-alive off); hyper reads the request, de-chunking its body
//! and answering `Expect: 100-continue`. Every request is logged before it is answered, so the
//! log is complete as soon as a client has its answer. What hyper cannot say (a header that never
//! ends, header lines forever, arbitrary bytes) is written raw: the connection is taken back
//! from hyper before it has written anything for the request.

use std::future::Future;
use std::io::{self, Read as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use http_body_util::{BodyExt as _, Limited};
use hyper::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::oneshot;

use super::pktline::{self, FLUSH};
use super::upload_pack::{
    DEFAULT_CAPABILITIES, PackResponse, RefAdvertisement, write_endless_advertisement,
    write_stateless_answer,
};
use super::upload_pack_v2::{V2Command, V2Script};
use super::{ByteCounter, SETTLE_TIMEOUT};
use crate::Result;
use crate::server::lock;
use crate::tls::{Ca, make_tls};
use crate::web::{self, Accepted, Counting, ResponseBody, Web};

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
    /// Protocol v2 as `git http-backend` speaks it to a client that sent `Git-Protocol:
    /// version=2` (answered so whatever the client sent): the capability advertisement for the
    /// ref discovery, the script's answer to the command in an upload-pack request
    /// (`application/x-git-upload-pack-result`), `404` for anything else.
    V2(V2Script),
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

/// What the connection tasks share.
struct State {
    handler: Box<Handler>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    log: Mutex<Vec<HttpRequest>>,
    sent: ByteCounter,
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
    web: Web,
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
            (Some(tokio_rustls::TlsAcceptor::from(config)), Some(ca))
        } else {
            (None, None)
        };
        let state = Arc::new(State {
            handler,
            tls,
            log: Mutex::new(Vec::new()),
            sent: ByteCounter::default(),
        });
        let web = {
            let state = Arc::clone(&state);
            Web::start(options.ip, "scripted-http", move |accepted| {
                connection(Arc::clone(&state), accepted)
            })?
        };
        Ok(Self { web, state, ca })
    }

    /// The address served (`<ip>:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.web.addr()
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
        self.web.connections()
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

/// Serves one connection: TLS if configured, one request, one answer.
async fn connection(state: Arc<State>, accepted: Accepted) {
    let count = {
        let state = Arc::clone(&state);
        Arc::new(move |n| state.sent.add(n))
    };
    let (seq, peer) = (accepted.seq, accepted.peer);
    if let Some(acceptor) = &state.tls {
        if let Ok(tls) = acceptor.accept(accepted.stream).await {
            let io = Counting { inner: tls, count };
            exchange(io, seq, peer, state).await;
        }
    } else {
        let io = Counting {
            inner: accepted.stream,
            count,
        };
        exchange(io, seq, peer, state).await;
    }
}

/// The service's future: boxed, so that the connection can be taken back from hyper.
type Answer = Pin<Box<dyn Future<Output = io::Result<Response<ResponseBody>>> + Send>>;

/// Reads one request through hyper, logs it, asks the handler and sends its reply: through
/// hyper, or raw on the connection taken back from it.
async fn exchange<S>(io: Counting<S>, connection: usize, peer: SocketAddr, state: Arc<State>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (raw_tx, mut raw_rx) = oneshot::channel::<Reply>();
    let raw_tx = Arc::new(Mutex::new(Some(raw_tx)));
    let service = hyper::service::service_fn(move |request| -> Answer {
        Box::pin(answer(
            Arc::clone(&state),
            Arc::clone(&raw_tx),
            connection,
            peer,
            request,
        ))
    });
    let mut conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(io), service);
    let mut raw_open = true;
    let raw = std::future::poll_fn(|cx| {
        if raw_open && let Poll::Ready(reply) = Pin::new(&mut raw_rx).poll(cx) {
            raw_open = false;
            if let Ok(reply) = reply {
                return Poll::Ready(Some(reply));
            }
        }
        conn.poll_without_shutdown(cx).map(|_| None)
    })
    .await;
    let mut io = conn.into_parts().io.into_inner();
    if let Some(reply) = raw {
        let _ = write_raw(&mut io, &reply).await;
    }
    // Let the client read the whole answer: end our side, then wait (bounded) for it to hang up,
    // since closing with its bytes unread would reset the connection under it.
    let _ = io.shutdown().await;
    let mut rest = (&mut io).take(1 << 20);
    let _ = tokio::time::timeout(
        SETTLE_TIMEOUT,
        tokio::io::copy(&mut rest, &mut tokio::io::sink()),
    )
    .await;
}

/// The answer to one request, or, for a reply hyper cannot send, the reply handed to
/// [`exchange`] and no answer.
async fn answer(
    state: Arc<State>,
    raw: Arc<Mutex<Option<oneshot::Sender<Reply>>>>,
    connection: usize,
    peer: SocketAddr,
    request: hyper::Request<Incoming>,
) -> io::Result<Response<ResponseBody>> {
    let (head, body) = request.into_parts();
    let chunked = head.headers.get("transfer-encoding").is_some_and(|te| {
        String::from_utf8_lossy(te.as_bytes())
            .to_ascii_lowercase()
            .contains("chunked")
    });
    let body = Limited::new(body, usize::try_from(MAX_BODY).unwrap_or(usize::MAX))
        .collect()
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        .to_bytes();
    let request = HttpRequest {
        connection,
        peer,
        method: head.method.to_string(),
        target: head
            .uri
            .path_and_query()
            .map_or_else(|| head.uri.to_string(), |p| p.as_str().to_owned()),
        headers: head
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).trim().to_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        chunked,
    };
    lock(&state.log).push(request.clone());
    let reply = {
        let (state, request) = (Arc::clone(&state), request.clone());
        // The handler may build packs: off the runtime's thread.
        tokio::task::spawn_blocking(move || (state.handler)(&request))
            .await
            .map_err(io::Error::other)?
    };
    if matches!(
        reply,
        Reply::EndlessHeaderValue | Reply::EndlessHeaderLines | Reply::Raw(_) | Reply::Close
    ) {
        if let Some(raw) = lock(&raw).take() {
            let _ = raw.send(reply);
        }
        // The connection is taken back from hyper: this answer never comes.
        return std::future::pending().await;
    }
    respond(&request, reply)
}

/// A response with `status`, `headers` and `body`.
fn response(
    status: u16,
    headers: &[(String, String)],
    body: ResponseBody,
) -> io::Result<Response<ResponseBody>> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response.body(body).map_err(io::Error::other)
}

/// A header list from string pairs.
fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// The `# service=git-upload-pack` preamble of a smart-HTTP advertisement, with its flush.
fn service_preamble() -> Vec<u8> {
    let mut out = pktline::text("# service=git-upload-pack");
    out.extend_from_slice(FLUSH);
    out
}

/// The response for a reply hyper can send. Complete bodies get `Content-Length`, the others
/// go chunked; the synchronous writers of endless or computed bodies run on a thread.
fn respond(request: &HttpRequest, reply: Reply) -> io::Result<Response<ResponseBody>> {
    let streamed = &[("Cache-Control", "no-cache")];
    match reply {
        Reply::Response {
            status,
            headers,
            body,
        } => response(status, &headers, web::full(body)),
        Reply::Redirect { status, location } => {
            response(status, &headers(&[("Location", &location)]), web::full(""))
        }
        Reply::Unauthorized => response(
            401,
            &headers(&[
                ("WWW-Authenticate", "Basic realm=\"x\""),
                ("Content-Type", "text/plain"),
            ]),
            web::full("authentication required\n"),
        ),
        Reply::Advertisement(advertisement) => {
            let mut body = service_preamble();
            body.extend_from_slice(&advertisement.encode());
            response(
                200,
                &headers(&[("Content-Type", ADVERTISEMENT_TYPE), streamed[0]]),
                web::full(body),
            )
        }
        Reply::EndlessAdvertisement { capabilities } => response(
            200,
            &headers(&[("Content-Type", ADVERTISEMENT_TYPE), streamed[0]]),
            web::written_by(move |mut out| {
                out.write_all(&service_preamble())?;
                write_endless_advertisement(&mut out, &capabilities)
            }),
        ),
        Reply::UploadPackResult(pack) => {
            let body = request.git_body()?;
            response(
                200,
                &headers(&[("Content-Type", RESULT_TYPE), streamed[0]]),
                web::written_by(move |mut out| write_stateless_answer(&mut out, &body, &pack)),
            )
        }
        Reply::V2(script) if request.is_ref_discovery() => response(
            200,
            &headers(&[("Content-Type", ADVERTISEMENT_TYPE), streamed[0]]),
            web::full(script.advertisement()),
        ),
        Reply::V2(script) if request.is_upload_pack() => {
            let command = V2Command::parse(&request.git_body()?);
            response(
                200,
                &headers(&[("Content-Type", RESULT_TYPE), streamed[0]]),
                web::written_by(move |mut out| script.answer(&command, &mut out).map(drop)),
            )
        }
        Reply::V2(_) => response(404, &[], web::full("")),
        Reply::EndlessBody {
            content_type,
            chunk,
        } => {
            let piece = if chunk.is_empty() {
                b"x".to_vec()
            } else {
                chunk
            };
            response(
                200,
                &headers(&[("Content-Type", &content_type), streamed[0]]),
                web::written_by(move |out| {
                    loop {
                        out.write_all(&piece)?;
                    }
                }),
            )
        }
        Reply::EndlessHeaderValue | Reply::EndlessHeaderLines | Reply::Raw(_) | Reply::Close => {
            Err(io::Error::other("a raw reply goes through write_raw"))
        }
    }
}

/// Writes a reply hyper cannot send straight to the connection.
async fn write_raw(out: &mut (impl AsyncWrite + Unpin), reply: &Reply) -> io::Result<()> {
    match reply {
        Reply::EndlessHeaderValue => {
            out.write_all(b"HTTP/1.1 200 OK\r\nX-Endless: ").await?;
            let filler = vec![b'a'; 64 * 1024];
            loop {
                out.write_all(&filler).await?;
            }
        }
        Reply::EndlessHeaderLines => {
            out.write_all(b"HTTP/1.1 200 OK\r\n").await?;
            let mut batch = Vec::with_capacity(72 * 1024);
            for n in 0u64.. {
                batch.extend_from_slice(format!("X-Filler-{n:012}: x\r\n").as_bytes());
                if batch.len() >= 64 * 1024 {
                    out.write_all(&batch).await?;
                    batch.clear();
                }
            }
            Ok(())
        }
        Reply::Raw(bytes) => out.write_all(bytes).await,
        _ => Ok(()),
    }
}
