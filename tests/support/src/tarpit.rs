//! A server that accepts TCP connections and never answers, for client time-out tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Starts listening on `ip` (e.g. the test node's bridge address, which Pods can reach).
    pub fn start_on(ip: IpAddr) -> Result<Self> {
        let accept = AcceptLoop::start_on(ip, "tarpit", |stream, tracked| {
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
