//! The accept loop of the raw TCP servers (git daemon, scripted `git://`, tarpit, relay), and
//! clean shutdown on drop. The HTTP servers run on hyper instead (`web.rs`).
//!
//! The listener is bound to `127.0.0.1:0` (or another given IP, port 0) before the constructor
//! returns, so a server is ready as soon as it exists (connections wait in the backlog) and there
//! is no port race. Dropping the loop stops accepting, shuts down every connection a handler
//! tracks (which unblocks the threads serving them) and kills every child process the handlers
//! registered.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::Result;
use crate::process::kill_and_reap;

/// Locks a mutex, ignoring poisoning (a panicking handler thread must not break shutdown).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a server has handed out and must take back when it stops.
#[derive(Debug, Default)]
pub(crate) struct Tracked {
    streams: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
    children: Mutex<Vec<Child>>,
    connections: AtomicUsize,
    stopped: AtomicBool,
}

impl Tracked {
    /// Remembers a clone of `stream` so that shutdown can close it; returns the key for
    /// [`Tracked::untrack`]. Only for connections this process serves itself: a clone kept here
    /// would keep a socket handed to a child process open after the child exits.
    pub(crate) fn track(&self, stream: &TcpStream) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut streams = lock(&self.streams);
        if self.stopped.load(Ordering::SeqCst) {
            // The server is stopping: close at once (checked under the lock, see add_child).
            let _ = stream.shutdown(Shutdown::Both);
        } else if let Ok(clone) = stream.try_clone() {
            streams.insert(id, clone);
        }
        id
    }

    /// Forgets a connection registered with [`Tracked::track`] (closing the kept clone).
    pub(crate) fn untrack(&self, id: u64) {
        lock(&self.streams).remove(&id);
    }

    /// Registers a child process to kill on shutdown; reaps children that have exited. When the
    /// server is already stopping, the child is killed at once.
    pub(crate) fn add_child(&self, mut child: Child) {
        // Checked under the lock: shutdown sets the flag before it drains the list.
        let mut children = lock(&self.children);
        if self.stopped.load(Ordering::SeqCst) {
            drop(children);
            kill_and_reap(&mut child);
            return;
        }
        children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        children.push(child);
    }

    /// Number of connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Closes every tracked connection and kills every tracked child.
    fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for (_, stream) in lock(&self.streams).drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for mut child in lock(&self.children).drain(..) {
            kill_and_reap(&mut child);
        }
    }
}

/// A listener on `127.0.0.1:<free port>` (or another given IP) whose connections go to a handler on a thread.
#[derive(Debug)]
pub(crate) struct AcceptLoop {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tracked: Arc<Tracked>,
    thread: Option<JoinHandle<()>>,
}

impl AcceptLoop {
    /// Binds `127.0.0.1:0` and calls `handler` (on the accept thread: spawn a thread in it for
    /// long work) for every accepted connection.
    pub(crate) fn start(
        name: &str,
        handler: impl FnMut(TcpStream, &Arc<Tracked>) + Send + 'static,
    ) -> Result<Self> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), name, handler)
    }

    /// Like [`AcceptLoop::start`], bound to `ip:0` instead (e.g. `127.0.0.2`, which is loopback
    /// too on Linux).
    pub(crate) fn start_on(
        ip: IpAddr,
        name: &str,
        mut handler: impl FnMut(TcpStream, &Arc<Tracked>) + Send + 'static,
    ) -> Result<Self> {
        let listener = TcpListener::bind((ip, 0))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let tracked = Arc::new(Tracked::default());
        let thread = {
            let stop = Arc::clone(&stop);
            let tracked = Arc::clone(&tracked);
            std::thread::Builder::new()
                .name(format!("{name}-accept"))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        tracked.connections.fetch_add(1, Ordering::SeqCst);
                        handler(stream, &tracked);
                    }
                })?
        };
        Ok(Self {
            addr,
            stop,
            tracked,
            thread: Some(thread),
        })
    }

    /// The bound address (`<ip>:<port>`).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections and children of this server.
    pub(crate) fn tracked(&self) -> &Arc<Tracked> {
        &self.tracked
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept(); it sees the flag and returns, closing the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.tracked.shutdown();
    }
}
