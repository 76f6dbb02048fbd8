//! The network under the fetch: our own git transports for `https://`, `http://`, `git://` and
//! ssh, handed to gix's protocol v2 client ([`connect_v2`]) and plugged into libgit2 as "smart
//! subtransports" for protocol v0.
//!
//! Why not libgit2's own: a hostile server must not be able to take the token elsewhere or make
//! the loader hold more than its budgets. libgit2's HTTP client keeps the credentials it was
//! given across a redirect to another port, host or scheme, and none of its transports lets us
//! count the bytes of the ref advertisement, the HTTP headers or the negotiation. Here every
//! byte a server sends passes through [`Session::count`], every request decides for itself
//! whether it may carry the token (only to the exact scheme, host and port of `--repo`), and
//! every failure records *why* in the session before libgit2 turns it into a generic error, so
//! the fetch can report it precisely (see `fetch::classify`).
//!
//! gix and libgit2 only speak the git protocol over these connections (libgit2 also indexes the
//! packs). libgit2 only ever sees the URL `crate-loader://<session id>`, so it can neither echo
//! the real URL in an error nor fall back to a built-in transport; gix is given no credentials
//! and no way to open a connection of its own.

mod git;
mod http;
mod http_v2;
mod libgit2;
mod metered;
mod ssh;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate_operator_api::repo_url::{RepoUrl, Scheme};
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream};
use gix_protocol::transport::Protocol;
pub(crate) use gix_protocol::transport::client::blocking_io::Transport as V2Transport;
use gix_protocol::transport::client::git::ConnectMode;
use gix_protocol::transport::client::git::blocking_io::Connection;

use crate::credentials::Credentials;
use crate::fetch::FetchError;
use crate::known_hosts::KnownHosts;

pub(crate) use libgit2::set_pack_limits;

/// What one fetch's transports share with each other and with the fetch's libgit2 callbacks.
pub(crate) struct Session {
    pub url: RepoUrl,
    pub credentials: Credentials,
    /// https user name when neither the credentials nor the URL name one.
    pub default_username: String,
    pub known_hosts: Option<KnownHosts>,
    pub max_transfer_bytes: u64,
    pub deadline: Instant,
    received: AtomicU64,
    failure: Mutex<Option<FetchError>>,
}

impl Session {
    pub fn new(
        url: RepoUrl,
        credentials: Credentials,
        default_username: &str,
        known_hosts: Option<KnownHosts>,
        max_transfer_bytes: u64,
        deadline: Instant,
    ) -> Session {
        Session {
            url,
            credentials,
            default_username: default_username.to_owned(),
            known_hosts,
            max_transfer_bytes,
            deadline,
            received: AtomicU64::new(0),
            failure: Mutex::new(None),
        }
    }

    /// The URL as it may be shown.
    pub fn shown_url(&self) -> String {
        self.url.display()
    }

    /// Records why the fetch must stop (the first reason wins) and returns an error to hand to
    /// libgit2, which aborts the operation with it.
    pub fn fail(&self, error: FetchError) -> io::Error {
        let message = error.to_string();
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.is_none() {
            *failure = Some(error);
        }
        io::Error::other(message)
    }

    /// The recorded reason, if any.
    pub fn take_failure(&self) -> Option<FetchError> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Counts `n` bytes received from the server against `--max-transfer-bytes`.
    pub fn count(&self, n: usize) -> io::Result<()> {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let total = self
            .received
            .fetch_add(n, Ordering::Relaxed)
            .saturating_add(n);
        if total > self.max_transfer_bytes {
            return Err(self.fail(FetchError::TransferTooLarge {
                url: self.shown_url(),
                limit: self.max_transfer_bytes,
            }));
        }
        Ok(())
    }

    /// Bytes received so far, over every connection of this fetch.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Time left before the deadline; past it, records the time-out.
    pub fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        Ok(left)
    }

    /// Records that the deadline passed.
    pub fn timed_out(&self) -> io::Error {
        self.fail(FetchError::TimedOut {
            url: self.shown_url(),
        })
    }

    /// Records a network failure (retrying may help) unless a more precise reason was recorded.
    pub fn network(&self, what: &str, error: &dyn std::fmt::Display) -> io::Error {
        if Instant::now() >= self.deadline {
            return self.timed_out();
        }
        self.fail(FetchError::Transport {
            url: self.shown_url(),
            detail: crate::escape::controls(&format!("{what}: {error}")),
        })
    }
}

/// Sessions by id: libgit2 hands a transport factory nothing but the remote's URL.
static SESSIONS: Mutex<Option<HashMap<u64, Arc<Session>>>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
const PREFIX: &str = "crate-loader://";

/// A session made reachable for libgit2 under a private URL; unreachable again when dropped.
pub(crate) struct Registered {
    id: u64,
    url: String,
}

impl Registered {
    /// The URL to give libgit2 instead of the real one.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(map) = SESSIONS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            map.remove(&self.id);
        }
    }
}

/// Makes `session` the transport of the next libgit2 remote created with [`Registered::url`].
pub(crate) fn register(session: Arc<Session>) -> Result<Registered, FetchError> {
    libgit2::register_transports()?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    SESSIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(id, session);
    Ok(Registered {
        id,
        url: format!("{PREFIX}{id}"),
    })
}

fn lookup(url: &str) -> Option<Arc<Session>> {
    let id: u64 = url.strip_prefix(PREFIX)?.parse().ok()?;
    SESSIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()?
        .get(&id)
        .cloned()
}

/// libgit2's transport factory: the subtransport for the session's scheme. HTTP is stateless
/// (a request per round trip); git:// and ssh keep one connection.
fn transport_for(remote: &git2::Remote<'_>) -> Result<git2::transport::Transport, git2::Error> {
    let session = remote.url().ok().and_then(lookup).ok_or_else(|| {
        git2::Error::from_str("crate-loader: no transport session for this remote")
    })?;
    let connected = |open| Connected {
        session: Arc::clone(&session),
        open,
    };
    match session.url.scheme() {
        Scheme::Https | Scheme::Http => git2::transport::Transport::smart(
            remote,
            true,
            http::Subtransport::new(Arc::clone(&session)),
        ),
        Scheme::Git => git2::transport::Transport::smart(remote, false, connected(git::open)),
        Scheme::Ssh => git2::transport::Transport::smart(remote, false, connected(ssh::open)),
    }
}

/// Which version of the git protocol a connection asks the server for. libgit2 speaks v0
/// only; the partial fetch needs v2 (`filter`, and wants of any object).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    V0,
    V2,
}

/// Opens the one connection of a stateful exchange.
type Open = fn(&Arc<Session>, Wire) -> io::Result<Box<dyn SmartSubtransportStream>>;

/// A connection to the repository that asks for protocol v2, as gix's transport: one
/// connection for git:// and ssh, a request per command for HTTP. The server may still answer
/// in v0 (an ssh server that does not pass `GIT_PROTOCOL` on, an old server).
pub(crate) fn connect_v2(session: &Arc<Session>) -> io::Result<Box<dyn V2Transport>> {
    let open: Open = match session.url.scheme() {
        Scheme::Https | Scheme::Http => return Ok(Box::new(http_v2::transport(session)?)),
        Scheme::Git => git::open,
        Scheme::Ssh => ssh::open,
    };
    let stream = Rc::new(RefCell::new(open(session, Wire::V2)?));
    // Buffered so the first read takes whatever the server sent at once, like libgit2's: the
    // streams recognise a refusal (`ERR …`) in their first read, and gix asks for 4 bytes.
    let reader = io::BufReader::with_capacity(64 * 1024, StreamReader(Rc::clone(&stream)));
    // The request line or command that selects the repository went out when connecting.
    Ok(Box::new(Connection::new(
        reader,
        WriteHalf(stream),
        Protocol::V2,
        "",
        None::<(String, Option<u16>)>,
        ConnectMode::Process,
        false,
    )))
}

type Stream = Rc<RefCell<Box<dyn SmartSubtransportStream>>>;

/// The reading side of a [`connect_v2`] connection. The exchange is strictly request then
/// response on one thread, so the halves never borrow the stream at once.
struct StreamReader(Stream);

/// The writing side of a [`connect_v2`] connection.
struct WriteHalf(Stream);

impl io::Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl io::Write for WriteHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// A transport that keeps one connection for the whole exchange (git://, ssh): git2 hands
/// libgit2 the stream of the listing again for the upload-pack that follows.
struct Connected {
    session: Arc<Session>,
    open: Open,
}

impl SmartSubtransport for Connected {
    fn action(
        &self,
        _url: &str,
        service: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        fetch_only(service)?;
        (self.open)(&self.session, Wire::V0).map_err(|e| git_error(&e))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// Only fetching is supported: the loader never pushes.
fn fetch_only(service: Service) -> Result<(), git2::Error> {
    if service == Service::UploadPackLs {
        Ok(())
    } else {
        Err(git2::Error::from_str(
            "crate-loader: only fetching is supported",
        ))
    }
}

/// A git2 error carrying an I/O failure's message (the session already holds the reason).
fn git_error(error: &io::Error) -> git2::Error {
    git2::Error::from_str(&error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(limit: u64, deadline: Instant) -> Session {
        Session::new(
            RepoUrl::parse("https://example.org/r.git").expect("url"),
            Credentials::default(),
            "pat",
            None,
            limit,
            deadline,
        )
    }

    #[test]
    fn bytes_over_the_budget_fail_the_session_as_transfer_too_large() {
        let s = session(10, Instant::now() + Duration::from_secs(60));
        s.count(6).expect("within");
        s.count(4).expect("exactly at the budget");
        assert!(s.count(1).is_err());
        assert!(matches!(
            s.take_failure(),
            Some(FetchError::TransferTooLarge { limit: 10, .. })
        ));
    }

    #[test]
    fn the_first_recorded_reason_wins() {
        let s = session(10, Instant::now() + Duration::from_secs(60));
        let _ = s.count(11);
        let _ = s.network("read", &"connection reset");
        assert!(matches!(
            s.take_failure(),
            Some(FetchError::TransferTooLarge { .. })
        ));
    }

    #[test]
    fn a_network_error_after_the_deadline_is_a_time_out() {
        let s = session(10, Instant::now());
        let _ = s.network("read", &"would block");
        assert!(matches!(
            s.take_failure(),
            Some(FetchError::TimedOut { .. })
        ));
    }

    #[test]
    fn a_registered_session_is_found_by_its_url_until_dropped() {
        let s = Arc::new(session(10, Instant::now()));
        let registered = register(Arc::clone(&s)).expect("register");
        assert!(lookup(registered.url()).is_some_and(|found| Arc::ptr_eq(&found, &s)));
        let url = registered.url().to_owned();
        drop(registered);
        assert!(lookup(&url).is_none());
        assert!(lookup("https://example.org/r.git").is_none());
    }
}
