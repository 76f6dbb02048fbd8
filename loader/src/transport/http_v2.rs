//! Smart HTTP in git protocol v2, for the partial fetch: gix's HTTP transport (it frames the
//! commands and checks the content types) over the same [`Shared`] client libgit2's
//! subtransport uses, so the requests follow the same rules: the token only to the origin and
//! only after it asked, redirects only on the first request and never to http, headers capped,
//! every byte counted against the budget.
//!
//! gix hands out the request body as a writer and the response as readers before anything is
//! sent; here the POST goes out when the response is first read, with the body written so far.

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
    type Headers = Headers;
    type ResponseBody = Body;
    type PostBody = PostBody;

    fn get(
        &mut self,
        _url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> gix_error::Result<GetResponse<Headers, Body>> {
        let mut exchange = Exchange::new(&self.shared, true, git_protocol(headers));
        let reader = exchange.response().map_err(gix_error)?;
        Ok(GetResponse {
            headers: Headers::Ready(content_type(ADVERTISEMENT)),
            body: Body::Ready(reader),
        })
    }

    fn post(
        &mut self,
        _url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
        _body: PostBodyDataKind,
    ) -> gix_error::Result<PostResponse<Headers, Body, PostBody>> {
        let exchange = Rc::new(RefCell::new(Exchange::new(
            &self.shared,
            false,
            git_protocol(headers),
        )));
        Ok(PostResponse {
            post_body: PostBody(Rc::clone(&exchange)),
            headers: Headers::Pending(Rc::clone(&exchange)),
            body: Body::Pending(exchange),
        })
    }

    fn configure(&mut self, _config: &dyn std::any::Any) -> gix_error::Result {
        Ok(())
    }
}

/// One request and its response, sent when the response is first needed.
pub(super) struct Exchange {
    shared: Arc<Shared>,
    listing: bool,
    git_protocol: Option<String>,
    request: Vec<u8>,
    /// The response once sent, until the body takes it.
    response: Option<Reader>,
    sent: bool,
}

impl Exchange {
    fn new(shared: &Arc<Shared>, listing: bool, git_protocol: Option<String>) -> Exchange {
        Exchange {
            shared: Arc::clone(shared),
            listing,
            git_protocol,
            request: Vec::new(),
            response: None,
            sent: false,
        }
    }

    /// Sends the request once. A failure is returned to whoever asks first (and recorded in
    /// the session, which is what the fetch reports).
    fn send(&mut self) -> io::Result<()> {
        if std::mem::replace(&mut self.sent, true) {
            return Ok(());
        }
        let body =
            self.shared
                .exchange(self.listing, &self.request, self.git_protocol.as_deref())?;
        let session = Arc::clone(&self.shared.session);
        self.response = Some(BufReader::new(Metered::new(
            body.into_reader(),
            session,
            "reading the HTTP response",
        )));
        Ok(())
    }

    /// The response body, sending the request first if needed.
    fn response(&mut self) -> io::Result<Reader> {
        self.send()?;
        self.response
            .take()
            .ok_or_else(|| io::Error::other("the HTTP response is not available"))
    }
}

/// The request body gix writes.
pub(super) struct PostBody(Rc<RefCell<Exchange>>);

impl Write for PostBody {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let exchange = &mut *self.0.borrow_mut();
        append_request(&exchange.shared.session, &mut exchange.request, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The response headers gix reads before the body: reading them sends the request.
pub(super) enum Headers {
    Pending(Rc<RefCell<Exchange>>),
    Ready(Cursor<Vec<u8>>),
}

impl Headers {
    fn ready(&mut self) -> io::Result<&mut Cursor<Vec<u8>>> {
        if let Headers::Pending(exchange) = self {
            exchange.borrow_mut().send()?;
            *self = Headers::Ready(content_type(RESULT));
        }
        match self {
            Headers::Ready(cursor) => Ok(cursor),
            Headers::Pending(_) => Err(io::Error::other("the HTTP request was not sent")),
        }
    }
}

impl Read for Headers {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ready()?.read(buf)
    }
}

impl BufRead for Headers {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.ready()?.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if let Headers::Ready(cursor) = self {
            cursor.consume(amt);
        }
    }
}

/// The response body: the exchange's reader once the request went out.
pub(super) enum Body {
    Pending(Rc<RefCell<Exchange>>),
    Ready(Reader),
}

impl Body {
    fn ready(&mut self) -> io::Result<&mut Reader> {
        if let Body::Pending(exchange) = self {
            let reader = exchange.borrow_mut().response()?;
            *self = Body::Ready(reader);
        }
        match self {
            Body::Ready(reader) => Ok(reader),
            Body::Pending(_) => Err(io::Error::other("the HTTP request was not sent")),
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
