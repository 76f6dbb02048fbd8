//! `git://`: one TCP connection to a git daemon, carrying the whole exchange. Unencrypted and
//! unauthenticated, so only tests and local previews use it (`--allow-insecure-transport`).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;

use git2::transport::SmartSubtransportStream;

use super::metered::{Metered, pkt_error};
use super::{Session, Wire};
use crate::fetch::FetchError;

/// Connects to the daemon and asks for the repository's upload-pack, in protocol `wire`.
pub(super) fn open(
    session: &Arc<Session>,
    wire: Wire,
) -> io::Result<Box<dyn SmartSubtransportStream>> {
    let url = &session.url;
    let mut tcp = connect(session, url.host(), url.effective_port())?;
    // The daemon's request: which service, which repository, and the virtual host.
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host()),
        None => url.host().to_owned(),
    };
    // The daemon passes what follows an empty field on to upload-pack as `GIT_PROTOCOL`.
    let version = match wire {
        Wire::V0 => "",
        Wire::V2 => "\0version=2\0",
    };
    let request = format!("git-upload-pack {}\0host={host}\0{version}", url.path());
    tcp.write_all(pkt_line(&request).as_bytes())
        .map_err(|e| session.network("sending the request", &e))?;
    Ok(Box::new(Stream {
        reader: Metered::new(tcp, Arc::clone(session), "reading from the git daemon"),
        session: Arc::clone(session),
        first: true,
    }))
}

/// Opens a TCP connection within the session's deadline, with socket time-outs at the deadline.
pub(super) fn connect(session: &Session, host: &str, port: u16) -> io::Result<TcpStream> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| session.network(&format!("resolving {host}"), &e))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, session.remaining()?) {
            Ok(tcp) => {
                // The protocol is request/response in small writes (a pkt-line each): with
                // Nagle's algorithm each would wait for the server's delayed ACK (40 ms).
                tcp.set_nodelay(true)?;
                let left = session.remaining()?;
                tcp.set_read_timeout(Some(left))?;
                tcp.set_write_timeout(Some(left))?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    let error = last.unwrap_or_else(|| io::Error::other("no address"));
    Err(session.network(&format!("connecting to {host}:{port}"), &error))
}

/// Acknowledges what the server sends at once instead of after Linux's delayed-ACK timer
/// (40 ms). A server without `TCP_NODELAY` (git daemon's upload-pack) holds back its next small
/// write, such as the pack after `shallow-info`, until the previous one is acknowledged; and in
/// a request/response exchange the kernel delays ACKs, hoping to send them with the next
/// request. The mode is not sticky (the kernel returns to delayed ACKs as it sees fit), so it is
/// set before every read; failing to set it only costs time. Linux only (the option is), which
/// is where Jobs run; elsewhere a preview just waits for the timer.
pub(super) fn quick_ack(tcp: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = tcp;
}

fn pkt_line(payload: &str) -> String {
    format!("{:04x}{payload}", payload.len() + 4)
}

struct Stream {
    reader: Metered<TcpStream>,
    session: Arc<Session>,
    first: bool,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.session.remaining()?;
        let tcp = self.reader.get_mut();
        tcp.set_read_timeout(Some(left))?;
        quick_ack(tcp);
        let n = self.reader.read(buf)?;
        if std::mem::take(&mut self.first)
            && let Some(message) = pkt_error(&buf[..n])
        {
            // git daemon refuses a repository it does not serve this way, before any ref.
            return Err(self.session.fail(FetchError::RepositoryNotFound {
                url: self.session.shown_url(),
                detail: format!("the server said: {message}"),
            }));
        }
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let tcp = self.reader.get_mut();
        tcp.set_write_timeout(Some(self.session.remaining()?))?;
        tcp.write(buf)
            .map_err(|e| self.session.network("writing to the git daemon", &e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.reader.get_mut().flush()
    }
}
