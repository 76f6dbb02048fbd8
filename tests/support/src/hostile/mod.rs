//! Hostile git servers and crafted git data, for testing how a client copes with servers that
//! lie, never stop talking, or send objects no honest git would make.
//!
//! - [`pack`]: packfiles built entry by entry ([`PackBuilder`]): any object, `OFS_DELTA` and
//!   `REF_DELTA` entries with hand-made deltas, copy bombs ([`copy_bomb`]), a lying object count.
//! - [`pktline`]: pkt-line framing helpers and a reader.
//! - [`ScriptedGitDaemon`]: a `git://` server that follows a [`DaemonScript`]: an
//!   advertisement and a pack, an endless advertisement, `ERR`, or silence in protocol v0, or a
//!   protocol v2 [`V2Script`] (`ls-refs`, then scripted answers to each `fetch`).
//! - [`ScriptedHttp`]: an HTTP/1.1 server (optionally TLS with its own CA) that answers each
//!   request through a closure returning a [`Reply`]: responses, redirects, smart-HTTP
//!   advertisements and upload-pack results (v0, or a [`V2Script`]'s answers), `401`, endless
//!   headers or bodies.
//! - Repository fixtures on [`crate::BareRepo`] ([`repos`]): branches pointing at trees, blobs
//!   or tag objects, a blob-mode entry pointing at a tree, a million branches.
//!
//! Every server binds only the IP it is given (127.0.0.1 by default; 127.0.0.2 works too, it is
//! loopback on Linux), port 0, and stops when dropped: the listener closes, every connection is
//! shut down and the connection threads are waited for.

pub mod git_daemon;
pub mod http;
pub mod pack;
pub mod pktline;
pub mod repos;
pub mod upload_pack;
pub mod upload_pack_v2;

use std::io::{self, Write};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub use git_daemon::{DaemonScript, GitRequest, ScriptedGitDaemon};
pub use http::{HttpRequest, Reply, ScriptedHttp, ScriptedHttpBuilder, smart_git};
pub use pack::{
    DeltaOp, ObjectId, ObjectKind, PackBuilder, TreeItem, copy_bomb, encode_delta, object_id,
};
pub use repos::{BLOB_BRANCH, TAG_BRANCH, TREE_BRANCH};
pub use upload_pack::{DEFAULT_CAPABILITIES, PackResponse, RefAdvertisement, Shallow};
pub use upload_pack_v2::{FetchAnswer, LsRefs, V2_CAPABILITIES, V2Script};

use crate::Result;
use crate::server::lock;

/// How long a dropped server waits for its connection threads, and the log accessors for
/// connections in progress.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A byte count that can be waited on.
#[derive(Debug, Default)]
pub(crate) struct ByteCounter {
    count: Mutex<u64>,
    changed: Condvar,
}

impl ByteCounter {
    pub(crate) fn add(&self, n: u64) {
        *lock(&self.count) += n;
        self.changed.notify_all();
    }

    pub(crate) fn get(&self) -> u64 {
        *lock(&self.count)
    }

    /// Waits until the count reaches `at_least`; returns whether it did within `timeout`.
    pub(crate) fn wait_for(&self, at_least: u64, timeout: Duration) -> bool {
        let guard = lock(&self.count);
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |n| *n < at_least)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard >= at_least
    }
}

/// A writer that adds what it writes to a [`ByteCounter`].
pub(crate) struct Counted<'a, W> {
    pub(crate) inner: W,
    pub(crate) counter: &'a ByteCounter,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counter.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Connection threads in progress, to wait for at drop and before reading logs.
#[derive(Debug, Default)]
pub(crate) struct Workers {
    active: Mutex<usize>,
    idle: Condvar,
}

impl Workers {
    /// Runs `work` on a new thread, counted until it returns (or panics).
    pub(crate) fn spawn(
        self: &std::sync::Arc<Self>,
        name: &str,
        work: impl FnOnce() + Send + 'static,
    ) -> Result<()> {
        struct Done(std::sync::Arc<Workers>);
        impl Drop for Done {
            fn drop(&mut self) {
                let mut active = lock(&self.0.active);
                *active = active.saturating_sub(1);
                self.0.idle.notify_all();
            }
        }
        *lock(&self.active) += 1;
        let done = Done(std::sync::Arc::clone(self));
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _done = done;
                work();
            })
            .map(drop)
    }

    /// Waits until no connection thread runs; returns whether that happened within `timeout`.
    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        let guard = lock(&self.active);
        let (guard, _) = self
            .idle
            .wait_timeout_while(guard, timeout, |n| *n > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard == 0
    }
}
