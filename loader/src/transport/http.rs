//! git's smart HTTP protocol over `ureq`: `GET …/info/refs?service=git-upload-pack` for the ref
//! advertisement, then one `POST …/git-upload-pack` per negotiation round.
//!
//! The rules a hostile server meets here:
//! - the token goes only to the exact scheme, host and port of `--repo`, and only after that
//!   origin asked for credentials (a 401), so a public repository never sees it;
//! - a redirect is followed only on the first request (as git's `http.followRedirects=initial`),
//!   at most [`MAX_REDIRECTS`] times, never from https to http, and a target elsewhere gets no
//!   credentials: if it asks for them, the fetch fails naming it;
//! - headers are capped at [`MAX_HEADER_BYTES`] per response and counted, with every body byte,
//!   against the transfer budget.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crate_operator_api::repo_url::Scheme;
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream};
use ureq::http::{Response, StatusCode};
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::{Agent, Body, BodyReader};
use url::Url;

use super::metered::Metered;
use super::{Session, fetch_only};
use crate::fetch::FetchError;

/// Redirects followed on the first request before giving up.
const MAX_REDIRECTS: u32 = 5;
/// Largest response head (status line and headers) accepted.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest negotiation request we build (wants, haves, deepen): far above what one branch needs.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

const LS_SUFFIX: &str = "/info/refs?service=git-upload-pack";
pub(super) const ADVERTISEMENT: &str = "application/x-git-upload-pack-advertisement";
pub(super) const RESULT: &str = "application/x-git-upload-pack-result";
const REQUEST: &str = "application/x-git-upload-pack-request";

pub(super) struct Subtransport {
    shared: Arc<Shared>,
}

/// The HTTP side of one fetch: its client, where requests go and whether they authenticate.
/// Shared by libgit2's subtransport (protocol v0) and the partial fetch's (v2, [`super::http_v2`]).
pub(super) struct Shared {
    pub session: Arc<Session>,
    agent: Agent,
    state: Mutex<State>,
}

struct State {
    /// Where requests go: the repository URL, or where the first request was redirected.
    base: String,
    /// The origin asked for credentials, so every later request to it carries them.
    authenticate: bool,
}

impl Subtransport {
    pub fn new(session: Arc<Session>) -> Self {
        Subtransport {
            shared: Arc::new(Shared::new(session)),
        }
    }
}

/// An HTTP client that follows no redirect itself, reports every status as a response, and
/// trusts the system's CA bundle (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured).
fn agent(scheme: Scheme) -> Agent {
    let mut config = Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .max_response_header_size(MAX_HEADER_BYTES)
        .user_agent(concat!(
            "git/2.0 (crate-loader/",
            env!("CARGO_PKG_VERSION"),
            ")"
        ))
        .proxy(ureq::Proxy::try_from_env());
    if scheme == Scheme::Https {
        // Loaded only for https: parsing the bundle costs milliseconds a git:// fetch need not pay.
        let native = rustls_native_certs::load_native_certs();
        let roots: Vec<Certificate<'static>> = native
            .certs
            .iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        config = config.tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&roots))
                .build(),
        );
    }
    config.build().new_agent()
}

impl SmartSubtransport for Subtransport {
    fn action(
        &self,
        _url: &str,
        service: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let listing = service == Service::UploadPackLs;
        if !listing && service != Service::UploadPack {
            fetch_only(service)?;
        }
        Ok(Box::new(Stream {
            shared: Arc::clone(&self.shared),
            listing,
            request: Vec::new(),
            response: None,
        }))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// One request: libgit2 writes the request body (for a POST), then reads the response.
struct Stream {
    shared: Arc<Shared>,
    listing: bool,
    request: Vec<u8>,
    response: Option<Metered<BodyReader<'static>>>,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.response.is_none() {
            let body = self.shared.exchange(self.listing, &self.request, None)?;
            self.response = Some(Metered::new(
                body.into_reader(),
                Arc::clone(&self.shared.session),
                "reading the HTTP response",
            ));
        }
        match &mut self.response {
            Some(reader) => reader.read(buf),
            None => Ok(0),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        append_request(&self.shared.session, &mut self.request, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    pub fn new(session: Arc<Session>) -> Shared {
        let base = session.shown_url().trim_end_matches('/').to_owned();
        let agent = agent(session.url.scheme());
        Shared {
            session,
            agent,
            state: Mutex::new(State {
                base,
                authenticate: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the request (following redirects and answering one credentials challenge) and
    /// returns the body of a successful response. `git_protocol` is the `Git-Protocol` header
    /// (`version=2`), which asks the server for that protocol version.
    pub fn exchange(
        &self,
        listing: bool,
        body: &[u8],
        git_protocol: Option<&str>,
    ) -> io::Result<Body> {
        let session = &self.session;
        let base = self.state().base.clone();
        let mut target = if listing {
            format!("{base}{LS_SUFFIX}")
        } else {
            format!("{base}/git-upload-pack")
        };
        let mut redirects = 0;
        loop {
            let same_origin = self.is_origin(&target);
            let token = session.credentials.token.as_ref();
            let with_token = same_origin && self.state().authenticate && token.is_some();
            let response = self.send(listing, &target, body, with_token, git_protocol)?;
            session.count(head_bytes(&response))?;
            let status = response.status();
            match status.as_u16() {
                200 => return self.accept(listing, &target, response),
                301 | 302 | 303 | 307 | 308 if listing && redirects < MAX_REDIRECTS => {
                    redirects += 1;
                    target = self.redirect(&target, &response)?;
                }
                301..=308 => {
                    let reason = if listing {
                        "it redirected more than 5 times"
                    } else {
                        "it redirected a negotiation request (only the first request may be redirected)"
                    };
                    return Err(self.refuse_redirect(&target, reason));
                }
                401 | 403 => {
                    if !same_origin {
                        return Err(session.fail(FetchError::CredentialsElsewhere {
                            url: session.shown_url(),
                            target: shown(&target),
                        }));
                    }
                    if token.is_none() {
                        return Err(session.fail(FetchError::AuthRequired {
                            url: session.shown_url(),
                        }));
                    }
                    if with_token {
                        return Err(session.fail(FetchError::AuthRejected {
                            url: session.shown_url(),
                        }));
                    }
                    // The origin asked: answer with the token, now and on every later request.
                    self.state().authenticate = true;
                }
                404 | 410 => {
                    return Err(session.fail(FetchError::RepositoryNotFound {
                        url: session.shown_url(),
                        detail: format!("{} answered {}", shown(&target), describe(status)),
                    }));
                }
                _ => {
                    return Err(session.fail(FetchError::Transport {
                        url: session.shown_url(),
                        detail: format!("{} answered {}", shown(&target), describe(status)),
                    }));
                }
            }
        }
    }

    fn send(
        &self,
        listing: bool,
        target: &str,
        body: &[u8],
        with_token: bool,
        git_protocol: Option<&str>,
    ) -> io::Result<Response<Body>> {
        let session = &self.session;
        let timeout = Some(session.remaining()?);
        let authorization = with_token
            .then(|| session.credentials.token.as_ref())
            .flatten()
            .map(|token| {
                let user = session
                    .credentials
                    .username
                    .as_deref()
                    .or(session.url.user())
                    .unwrap_or(&session.default_username);
                format!(
                    "Basic {}",
                    STANDARD.encode(format!("{user}:{}", token.expose()))
                )
            });
        let sent = if listing {
            let mut request = self.agent.get(target).header("Accept", "*/*");
            if let Some(value) = &authorization {
                request = request.header("Authorization", value);
            }
            if let Some(value) = git_protocol {
                request = request.header("Git-Protocol", value);
            }
            request.config().timeout_global(timeout).build().call()
        } else {
            let mut request = self
                .agent
                .post(target)
                .header("Content-Type", REQUEST)
                .header("Accept", RESULT);
            if let Some(value) = &authorization {
                request = request.header("Authorization", value);
            }
            if let Some(value) = git_protocol {
                request = request.header("Git-Protocol", value);
            }
            request.config().timeout_global(timeout).build().send(body)
        };
        sent.map_err(|e| self.transport_error(target, e))
    }

    /// A 200: the body, once its content type says it is what git expects.
    fn accept(&self, listing: bool, target: &str, response: Response<Body>) -> io::Result<Body> {
        let expected = if listing { ADVERTISEMENT } else { RESULT };
        let got = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content type");
        if got.split(';').next().map(str::trim) == Some(expected) {
            return Ok(response.into_body());
        }
        Err(self.session.fail(FetchError::NotGitHttp {
            url: self.session.shown_url(),
            target: shown(target),
            content_type: crate::escape::controls(got),
        }))
    }

    /// Where a redirect of the first request leads, as the new base for every later request.
    fn redirect(&self, from: &str, response: &Response<Body>) -> io::Result<String> {
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.refuse_redirect(from, "it has no usable Location header"))?;
        let mut next = Url::parse(from)
            .and_then(|base| base.join(location))
            .map_err(|_| self.refuse_redirect(from, "its Location is not a URL"))?;
        // Credentials never come from a server.
        let _ = next.set_username("");
        let _ = next.set_password(None);
        match (
            Url::parse(from).map(|u| u.scheme().to_owned()),
            next.scheme(),
        ) {
            (Ok(old), "http") if old == "https" => {
                return Err(self.refuse_redirect_to(&next, "it would leave https for http"));
            }
            (_, "http" | "https") => {}
            _ => return Err(self.refuse_redirect_to(&next, "it leaves http(s)")),
        }
        let text = next.to_string();
        let Some(base) = text.strip_suffix(LS_SUFFIX) else {
            return Err(self.refuse_redirect_to(
                &next,
                "it does not end in /info/refs?service=git-upload-pack",
            ));
        };
        base.clone_into(&mut self.state().base);
        Ok(text)
    }

    fn refuse_redirect(&self, target: &str, reason: &str) -> io::Error {
        self.session.fail(FetchError::Redirect {
            url: self.session.shown_url(),
            target: shown(target),
            reason: reason.to_owned(),
        })
    }

    fn refuse_redirect_to(&self, target: &Url, reason: &str) -> io::Error {
        self.refuse_redirect(target.as_str(), reason)
    }

    /// Whether `target` has exactly the scheme, host and port of the crate's URL.
    fn is_origin(&self, target: &str) -> bool {
        let own = &self.session.url;
        Url::parse(target).is_ok_and(|t| {
            let host = match t.host() {
                Some(url::Host::Domain(d)) => d.to_owned(),
                Some(url::Host::Ipv4(ip)) => ip.to_string(),
                Some(url::Host::Ipv6(ip)) => ip.to_string(),
                None => return false,
            };
            let scheme_matches = match own.scheme() {
                Scheme::Https => t.scheme() == "https",
                Scheme::Http => t.scheme() == "http",
                Scheme::Ssh | Scheme::Git => false,
            };
            scheme_matches
                && host.eq_ignore_ascii_case(own.host())
                && t.port_or_known_default() == Some(own.effective_port())
        })
    }

    fn transport_error(&self, target: &str, error: ureq::Error) -> io::Error {
        let session = &self.session;
        match error {
            ureq::Error::Timeout(_) => session.timed_out(),
            ureq::Error::LargeResponseHeader(..)
            | ureq::Error::Protocol(ureq_proto::Error::HttpParseTooManyHeaders) => {
                session.fail(FetchError::HeadersTooLarge {
                    url: session.shown_url(),
                    limit: MAX_HEADER_BYTES,
                })
            }
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) => session.fail(FetchError::Tls {
                url: session.shown_url(),
                detail: crate::escape::controls(&error.to_string()),
            }),
            ureq::Error::Io(e) if is_tls(&e) => session.fail(FetchError::Tls {
                url: session.shown_url(),
                detail: crate::escape::controls(&e.to_string()),
            }),
            other => session.network(&format!("requesting {}", shown(target)), &other),
        }
    }
}

/// Adds `buf` to a request body being written, within [`MAX_REQUEST_BYTES`].
pub(super) fn append_request(
    session: &Session,
    request: &mut Vec<u8>,
    buf: &[u8],
) -> io::Result<usize> {
    if request.len() + buf.len() > MAX_REQUEST_BYTES {
        return Err(session.fail(FetchError::Local(
            "the fetch request grew past 1 MiB".to_owned(),
        )));
    }
    request.extend_from_slice(buf);
    Ok(buf.len())
}

/// Whether an I/O error is rustls refusing the server (an untrusted or mismatched certificate).
fn is_tls(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

/// A URL as it may be shown: without user information or query.
fn shown(target: &str) -> String {
    match Url::parse(target) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            crate::escape::controls(url.as_str())
        }
        Err(_) => "an unparsable URL".to_owned(),
    }
}

fn describe(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Bytes of the status line and headers, as received (give or take the separators).
fn head_bytes(response: &Response<Body>) -> usize {
    let headers: usize = response
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    headers + 32
}
