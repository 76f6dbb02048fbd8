//! What the HTTP test servers ([`crate::SmartHttp`], [`crate::hostile::ScriptedHttp`]) share:
//! hyper on a tokio runtime of the server's own thread, connections whose sent bytes are
//! counted as they reach the socket, and bodies fed from a thread or a task.
//!
//! A server binds before its constructor returns (connections wait in the backlog until the
//! runtime accepts them, so there is no port race and no readiness wait) and stops when dropped:
//! the listener closes, and shutting the runtime down drops every connection and every child
//! process it started (`kill_on_drop`).

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

use crate::Result;

/// The body type of every response served here.
pub(crate) type ResponseBody = BoxBody<Bytes, io::Error>;

/// How long a dropped server waits for work it cannot cancel (threads feeding bodies).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// A listener served on its own thread; dropping it stops the server.
#[derive(Debug)]
pub(crate) struct Web {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// One accepted connection.
pub(crate) struct Accepted {
    /// Connection number, from 0, in accept order.
    pub(crate) seq: usize,
    pub(crate) stream: tokio::net::TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
}

impl Web {
    /// Binds `ip:0` and runs `serve` as a task for every accepted connection.
    pub(crate) fn start<F, Fut>(ip: IpAddr, name: &str, serve: F) -> Result<Web>
    where
        F: Fn(Accepted) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind((ip, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = oneshot::channel();
        let thread = {
            let connections = Arc::clone(&connections);
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    runtime.block_on(async {
                        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                            return;
                        };
                        loop {
                            let accepted = tokio::select! {
                                _ = &mut stopped => break,
                                accepted = listener.accept() => accepted,
                            };
                            let Ok((stream, peer)) = accepted else {
                                continue;
                            };
                            let seq = connections.fetch_add(1, Ordering::SeqCst);
                            tokio::spawn(serve(Accepted {
                                seq,
                                stream,
                                peer,
                                local: addr,
                            }));
                        }
                    });
                    // Cancels every connection task; bounded for body threads still running.
                    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
                })?
        };
        Ok(Web {
            addr,
            connections,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A connection that reports every byte written to the socket (head, body and chunk framing, or
/// the plaintext under TLS) to `count`.
pub(crate) struct Counting<S> {
    pub(crate) inner: S,
    pub(crate) count: Arc<dyn Fn(u64) + Send + Sync>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            (self.count)(n as u64);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A complete body.
pub(crate) fn full(body: impl Into<Bytes>) -> ResponseBody {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A body whose data comes through a channel, sent chunked; it ends when every sender is gone.
struct Channel(mpsc::Receiver<Bytes>);

impl Body for Channel {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|data| data.map(|d| Ok(Frame::data(d))))
    }
}

/// A body and the sender feeding it. Few chunks are buffered, so a client that stops reading
/// stops the sender (as TCP flow control would a server writing to the socket).
pub(crate) fn channel() -> (mpsc::Sender<Bytes>, ResponseBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, Channel(rx).boxed())
}

/// A body written by `write` on a thread of its own, through a [`Write`] that sends 32 KiB
/// chunks: for the writers of endless or computed answers, which are synchronous. The write
/// fails (and the thread ends) once the client is gone.
pub(crate) fn written_by(
    write: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
) -> ResponseBody {
    let (tx, body) = channel();
    std::thread::spawn(move || {
        let mut out = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        if write(&mut out).is_ok() {
            let _ = out.flush();
        }
    });
    body
}

/// Size of the chunks [`written_by`] sends.
const CHUNK: usize = 32 * 1024;

struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client has gone"))
    }
}

/// A body that never sends anything and never ends, for stalling a client after the head.
pub(crate) fn stalled() -> ResponseBody {
    struct Stalled;
    impl Body for Stalled {
        type Data = Bytes;
        type Error = io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<std::result::Result<Frame<Bytes>, io::Error>>> {
            Poll::Pending
        }
    }
    Stalled.boxed()
}
