//! Smart HTTP in git protocol v2, for the partial fetch: gix's HTTP transport (it frames the
//! commands and checks the content types) over the same [`Shared`] client libgit2's
//! subtransport uses, so the requests follow the same rules: the token only to the origin and
//! only after it asked, redirects only on the first request and never to http, headers capped,
//! every byte counted against the budget.
//!
//! gix hands out the request body as a writer and the response as readers before anything is
//! sent; here the POST goes out when the response body is first read, with the body written so
//! far.

use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::rc::Rc;
use std::sync::Arc;

use gix_protocol::transport::Protocol;
use gix_protocol::transport::client::blocking_io::http::{
    self, GetResponse, Http, PostBodyDataKind, PostResponse,
};
use ureq::BodyReader;

use super::Session;
use super::http::{ADVERTISEMENT, RESULT, Shared, append_request};
use super::metered::Metered;
use crate::fetch::FetchError;

/// gix's HTTP transport over our client.
pub(super) fn transport(session: &Arc<Session>) -> io::Result<http::Transport<Client>> {
    let url = gix_url::parse(session.shown_url().as_bytes()).map_err(|e| {
        session.fail(FetchError::Local(format!(
            "failed to parse the repository URL for the partial fetch: {e}"
        )))
    })?;
    let client = Client {
        shared: Arc::new(Shared::new(Arc::clone(session))),
    };
    Ok(http::Transport::new_http(client, url, Protocol::V2, false))
}

pub(super) struct Client {
    shared: Arc<Shared>,
}

type Reader = BufReader<Metered<BodyReader<'static>>>;

/// The `Git-Protocol` header among those gix asks for; the others (agent, content types,
/// `Authorization` from URL credentials, which we never give it) are [`Shared`]'s business.
fn git_protocol(headers: impl IntoIterator<Item = impl AsRef<str>>) -> Option<String> {
    headers.into_iter().find_map(|header| {
        let (name, value) = header.as_ref().split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("git-protocol")
            .then(|| value.trim().to_owned())
    })
}

/// The headers gix checks: the content type [`Shared`] has already checked.
fn content_type(expected: &str) -> Cursor<Vec<u8>> {
    Cursor::new(format!("Content-Type: {expected}\r\n").into_bytes())
}

fn gix_error(error: io::Error) -> gix_error::Error {
    gix_error::Error::from_error(error)
}

impl Http for Client {
    type Headers = Cursor<Vec<u8>>;
    type ResponseBody = Body;
    type PostBody = PostBody;

    fn get(
        &mut self,
        _url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> gix_error::Result<GetResponse<Self::Headers, Body>> {
        let reader =
            send(&self.shared, true, &[], git_protocol(headers).as_deref()).map_err(gix_error)?;
        Ok(GetResponse {
            headers: content_type(ADVERTISEMENT),
            body: Body::Ready(reader),
        })
    }

    fn post(
        &mut self,
        _url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
        _body: PostBodyDataKind,
    ) -> gix_error::Result<PostResponse<Self::Headers, Body, PostBody>> {
        let request = Rc::new(RefCell::new(Request {
            shared: Arc::clone(&self.shared),
            git_protocol: git_protocol(headers),
            body: Vec::new(),
        }));
        Ok(PostResponse {
            post_body: PostBody(Rc::clone(&request)),
            // gix checks the headers before reading the body, that is before the request
            // goes out; `Shared` checks the real content type when it does.
            headers: content_type(RESULT),
            body: Body::Pending(request),
        })
    }

    fn configure(&mut self, _config: &dyn std::any::Any) -> gix_error::Result {
        Ok(())
    }
}

/// Sends one request through [`Shared`] (which records a failure in the session, and that is
/// what the fetch reports) and returns its metered response body.
fn send(
    shared: &Shared,
    listing: bool,
    body: &[u8],
    git_protocol: Option<&str>,
) -> io::Result<Reader> {
    let response = shared.exchange(listing, body, git_protocol)?;
    Ok(BufReader::new(Metered::new(
        response.into_reader(),
        Arc::clone(&shared.session),
        "reading the HTTP response",
    )))
}

/// A POST being written: it goes out when its response is first read.
pub(super) struct Request {
    shared: Arc<Shared>,
    git_protocol: Option<String>,
    body: Vec<u8>,
}

/// The request body gix writes.
pub(super) struct PostBody(Rc<RefCell<Request>>);

impl Write for PostBody {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let request = &mut *self.0.borrow_mut();
        append_request(&request.shared.session, &mut request.body, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A response body: the request until it is first read, then what the server answered.
pub(super) enum Body {
    Pending(Rc<RefCell<Request>>),
    Ready(Reader),
    /// The request failed (once: it is not sent again).
    Failed,
}

impl Body {
    fn ready(&mut self) -> io::Result<&mut Reader> {
        if let Body::Pending(request) = self {
            let sent = {
                let request = request.borrow();
                send(
                    &request.shared,
                    false,
                    &request.body,
                    request.git_protocol.as_deref(),
                )
            };
            match sent {
                Ok(reader) => *self = Body::Ready(reader),
                Err(e) => {
                    *self = Body::Failed;
                    return Err(e);
                }
            }
        }
        match self {
            Body::Ready(reader) => Ok(reader),
            Body::Pending(_) | Body::Failed => Err(io::Error::other("the HTTP request failed")),
        }
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ready()?.read(buf)
    }
}

impl BufRead for Body {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.ready()?.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if let Body::Ready(reader) = self {
            reader.consume(amt);
        }
    }
}
