//! A server that accepts TCP connections and never answers, for client time-out tests.

use std::net::SocketAddr;

use crate::Result;
use crate::server::AcceptLoop;

/// Accepts connections on `127.0.0.1:<port>`, reads nothing and sends nothing until dropped.
///
/// Any protocol can be pointed at it (`git://`, `http://`, `ssh://` with [`Tarpit::port`]) to
/// check that a client gives up in time instead of hanging.
#[derive(Debug)]
pub struct Tarpit {
    accept: AcceptLoop,
}

impl Tarpit {
    /// Starts listening.
    pub fn start() -> Result<Self> {
        let accept = AcceptLoop::start("tarpit", |stream, tracked| {
            // The tracked clone keeps the connection open until the tarpit is dropped.
            tracked.track(&stream);
        })?;
        Ok(Self { accept })
    }

    /// The address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.accept.addr()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.accept.addr().port()
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accept.tracked().connections()
    }
}
