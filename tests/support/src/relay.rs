//! A TCP relay that counts connections, for a test that asks how many connections a client's
//! requests took to a server it cannot instrument (the real kube-apiserver). Bytes pass through
//! untouched, so TLS ends at the server as it would without the relay.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use crate::Result;
use crate::server::{AcceptLoop, Tracked};

/// Forwards every connection on `127.0.0.1:<port>` to one upstream address until dropped.
#[derive(Debug)]
pub struct Relay {
    accept: AcceptLoop,
}

impl Relay {
    /// Starts relaying to `upstream` (which must listen on a loopback address the server's
    /// certificate names, as `127.0.0.1` does for the test control plane).
    pub fn start(upstream: SocketAddr) -> Result<Self> {
        let accept = AcceptLoop::start("relay", move |client, tracked| {
            if let Ok(server) = TcpStream::connect(upstream) {
                pipe(&client, &server, tracked);
                pipe(&server, &client, tracked);
            }
        })?;
        Ok(Self { accept })
    }

    /// The address to connect to instead of the upstream one.
    pub fn addr(&self) -> SocketAddr {
        self.accept.addr()
    }

    /// Number of connections relayed so far.
    pub fn connections(&self) -> usize {
        self.accept.tracked().connections()
    }
}

/// Copies `from` to `to` on a thread until `from` ends, then ends `to`'s write side so the other
/// end sees the close. Both are tracked, so dropping the relay closes them.
fn pipe(from: &TcpStream, to: &TcpStream, tracked: &Arc<Tracked>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    tracked.track(&from);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}
