//! Fetch: resolve the branch head, and read one file at that commit.
//!
//! Second step of the flow. The interface is deliberately narrow — [`fetch`] in, [`Fetched`]
//! out — so how the objects arrive does not touch validation or apply. A remote repository is
//! fetched in git protocol v2 ([`v2`]): partially (the tip's commit and trees, then the one
//! blob) where the server filters objects, otherwise the whole tip at depth 1. A server that
//! only speaks v0 gets the depth-1 fetch through libgit2.
//!
//! Hardening: the fetch goes into a throw-away bare repository (no work tree, so no checkout, no
//! hooks, no submodules, no filters ever run); one branch, depth 1, no tags; the metadata blob is
//! read straight from the commit's tree ([`tree`]), refusing symlinks, gitlinks, oversize blobs
//! and objects whose type is not what the tree says. The same trees answer which of the crate's
//! data entity paths exist (payload presence), without reading any other blob. The network is ours ([`crate::transport`]):
//! every byte counts against the budget, credentials go only to the repository's own origin, and
//! ssh requires the host key in `known_hosts`. In production the whole fetch runs in a
//! memory-capped child process ([`crate::worker`]).

mod error;
mod tree;
mod v2;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use git2::{AutotagOption, ErrorClass, FetchOptions, RemoteCallbacks, Repository};
use serde::{Deserialize, Serialize};

pub use error::FetchError;

use crate::credentials::Credentials;
use crate::known_hosts::KnownHosts;
use crate::source::{MetadataPath, Source};
use crate::transport::{self, Session};
use crate_operator_api::contract::{FetchMode, revision};
use crate_operator_api::repo_url::{RepoUrl, Scheme};

/// Budgets that stop a hostile or runaway repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchLimits {
    /// Bytes received from the server, in total: ref advertisement, headers, negotiation, pack.
    pub max_transfer_bytes: u64,
    /// Objects in the fetched pack (depth 1: the trees and blobs of one commit).
    pub max_objects: u64,
    /// Size of the metadata file itself.
    pub max_file_bytes: u64,
    /// Memory the fetch may use (enforced by the worker process; shown in messages).
    pub max_memory_bytes: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_transfer_bytes: crate_operator_api::contract::DEFAULT_MAX_TRANSFER_BYTES,
            max_objects: 200_000,
            max_file_bytes: 4 * 1024 * 1024,
            max_memory_bytes: crate_operator_api::contract::DEFAULT_MAX_MEMORY_BYTES,
        }
    }
}

impl FetchLimits {
    /// The largest object a delta may expand to: half the memory budget, since libgit2 holds a
    /// delta's base and result at once.
    pub fn max_object_bytes(&self) -> u64 {
        self.max_memory_bytes / 2
    }
}

/// One fetch: where, what, with which credentials and within which limits.
pub struct FetchRequest<'a> {
    pub source: &'a Source,
    pub branch: &'a str,
    pub path: &'a MetadataPath,
    pub credentials: &'a Credentials,
    /// Username for https when neither the credentials nor the URL name one.
    pub default_username: &'a str,
    pub limits: FetchLimits,
    pub deadline: Instant,
    /// Where the temporary bare repository is created (the system temp dir when `None`).
    pub work_dir: Option<&'a Path>,
    /// When the branch head equals this commit, stop after the ref advertisement.
    pub skip_if_head_is: Option<&'a str>,
    /// The crate paths to look up in the commit's trees once the metadata file is read (the
    /// payload-presence check, see [`crate::rocrate::Payload`]); `None` looks up nothing.
    pub payload_paths: Option<&'a PayloadPaths<'a>>,
}

/// From the metadata file's bytes, the paths of the crate's data entities; `None` when they
/// are not to be looked up.
pub type PayloadPaths<'a> = dyn Fn(&[u8]) -> Option<Vec<String>> + Sync + 'a;

/// What the fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The branch head is the commit the caller already has; no objects were fetched.
    Unchanged { commit: String },
    /// The metadata file's bytes at the branch head, which of the payload paths asked for are
    /// not in the commit (`None` when none were asked for), and how the file was fetched.
    File {
        commit: String,
        content: Vec<u8>,
        missing: Option<Vec<String>>,
        mode: FetchMode,
    },
}

impl Fetched {
    pub fn commit(&self) -> &str {
        match self {
            Fetched::Unchanged { commit } | Fetched::File { commit, .. } => commit,
        }
    }
}

/// Resolves the branch head and, unless it is `skip_if_head_is`, fetches it (depth 1) and reads
/// the metadata file from its tree.
pub fn fetch(req: &FetchRequest<'_>) -> Result<Fetched, FetchError> {
    match req.source {
        Source::Remote(url) => fetch_remote(url, req),
        Source::Local(path) => read_local(path, req),
    }
}

fn fetch_remote(url: &RepoUrl, req: &FetchRequest<'_>) -> Result<Fetched, FetchError> {
    let shown = url.display();
    let known_hosts = match (url.scheme(), &req.credentials.known_hosts) {
        (Scheme::Ssh, Some(text)) => Some(KnownHosts::parse(text)),
        (Scheme::Ssh, None) => return Err(FetchError::MissingKnownHosts { url: shown }),
        _ => None,
    };
    let session = Arc::new(Session::new(
        url.clone(),
        req.credentials.clone(),
        req.default_username,
        known_hosts,
        req.limits.max_transfer_bytes,
        req.deadline,
    ));
    let work = temp_dir(req.work_dir)?;
    let repo = Repository::init_bare(work.path())
        .map_err(|e| FetchError::Local(e.message().to_owned()))?;
    match v2::fetch(&session, &repo, req)? {
        v2::Attempt::Fetched(tip) => {
            tracing::info!(
                received_bytes = session.received(),
                mode = ?tip.mode,
                "fetched the branch tip (protocol v2)"
            );
            return read_at(&repo, &tip, &shown, req);
        }
        v2::Attempt::Unchanged { commit } => return Ok(Fetched::Unchanged { commit }),
        v2::Attempt::Unsupported(reason) => tracing::info!(
            %reason,
            "no protocol v2 fetch: fetching every object of the branch tip (depth 1, protocol v0)"
        ),
    }

    let registered = transport::register(Arc::clone(&session))?;
    let fail = |e: git2::Error| classify(&session, &req.limits, &e);
    // The protocol v2 attempt has listed the refs (a v0 server answers its handshake with them):
    // the branch exists and is not the commit the caller has. libgit2 fetches the branch into a
    // tracking ref, read back here, rather than listing the refs again, because its Rust binding
    // panics on a ref name that is not UTF-8, which a hostile server may send.
    let mut remote = repo.remote_anonymous(registered.url()).map_err(fail)?;
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks(&session, req))
        .download_tags(AutotagOption::None)
        .update_fetchhead(false)
        .depth(1);
    let tracking = format!("refs/remotes/origin/{}", req.branch);
    let refspec = format!("+refs/heads/{}:{tracking}", req.branch);
    remote
        .fetch(&[refspec.as_str()], Some(&mut options), None)
        .map_err(fail)?;
    drop(remote);
    let head = match repo.find_reference(&tracking) {
        Ok(reference) => reference.target(),
        // The branch went away between the two connections.
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(FetchError::Local(e.message().to_owned())),
    }
    .ok_or_else(|| FetchError::BranchNotFound {
        url: shown.clone(),
        branch: req.branch.to_owned(),
        available: Vec::new(),
    })?;
    tracing::info!(
        received_bytes = session.received(),
        "fetched the branch tip (depth 1)"
    );

    let tip = Tip {
        head,
        blob: None,
        mode: FetchMode::Full,
    };
    read_at(&repo, &tip, &shown, req)
}

/// `preview` of a repository on this machine: read it in place (nothing is copied, nothing runs).
fn read_local(path: &Path, req: &FetchRequest<'_>) -> Result<Fetched, FetchError> {
    let shown = path.display().to_string();
    let not_found = |detail: String| FetchError::RepositoryNotFound {
        url: shown.clone(),
        detail,
    };
    let repo = Repository::open_ext(
        path,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|e| not_found(crate::escape::controls(e.message())))?;
    let wanted = format!("refs/heads/{}", req.branch);
    let Ok(reference) = repo.find_reference(&wanted) else {
        let names = repo
            .references()
            .map_err(|e| not_found(e.message().to_owned()))?;
        let names: Vec<String> = names
            .filter_map(Result::ok)
            .filter_map(|r| r.name().ok().map(str::to_owned))
            .collect();
        return Err(FetchError::BranchNotFound {
            url: shown,
            branch: req.branch.to_owned(),
            available: branches(names.iter()),
        });
    };
    let head = reference
        .target()
        .ok_or_else(|| not_found(format!("{wanted} is a symbolic reference")))?;
    if req.skip_if_head_is == Some(head.to_string().as_str()) {
        return Ok(Fetched::Unchanged {
            commit: head.to_string(),
        });
    }
    let tip = Tip {
        head,
        blob: None,
        mode: FetchMode::Local,
    };
    read_at(&repo, &tip, &shown, req)
}

/// What a fetch brought into the repository: the branch head, and how.
struct Tip {
    head: git2::Oid,
    /// The metadata file's blob, when the fetch has already walked the trees to it.
    blob: Option<git2::Oid>,
    mode: FetchMode,
}

/// What errors about `req`'s file at `revision` name: the URL shown, the branch, the revision.
fn origin<'a>(shown: &'a str, req: &'a FetchRequest<'_>, revision: &'a str) -> tree::Origin<'a> {
    tree::Origin {
        url: shown,
        branch: req.branch,
        revision,
        memory_limit: req.limits.max_memory_bytes,
    }
}

/// The metadata file at the fetched tip of `repo`.
fn read_at(
    repo: &Repository,
    tip: &Tip,
    shown: &str,
    req: &FetchRequest<'_>,
) -> Result<Fetched, FetchError> {
    let head = tip.head;
    let commit = head.to_string();
    let revision = revision(req.branch, &commit);
    let origin = origin(shown, req, &revision);
    let blob = match tip.blob {
        Some(blob) => blob,
        None => tree::locate(repo, head, req.path, &origin)?,
    };
    let content = tree::read_blob(repo, blob, req.path, &origin, req.limits.max_file_bytes)?;
    // Only trees are read for this, never a blob: a partial fetch without blobs can answer too.
    let missing = req
        .payload_paths
        .and_then(|paths| paths(&content))
        .map(|paths| tree::missing(repo, head, req.path, &paths));
    Ok(Fetched::File {
        commit,
        content,
        missing,
        mode: tip.mode,
    })
}

/// The branch names among advertised refs, escaped, at most 20, for a "no such branch" hint.
fn branches(refs: impl Iterator<Item = impl AsRef<str>>) -> Vec<String> {
    refs.filter_map(|name| {
        name.as_ref()
            .strip_prefix("refs/heads/")
            .map(crate::escape::controls)
    })
    .take(20)
    .collect()
}

fn temp_dir(work_dir: Option<&Path>) -> Result<tempfile::TempDir, FetchError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("crate-loader-");
    match work_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .map_err(|e| FetchError::Local(e.to_string()))
}

/// libgit2's progress callbacks: the deadline and the object budget, checked as the pack
/// arrives (bytes are counted by the transport itself).
fn callbacks<'a>(session: &'a Arc<Session>, req: &FetchRequest<'_>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks.transfer_progress(within_budget(session, req.limits.max_objects));
    callbacks.sideband_progress(move |_| session.remaining().is_ok());
    callbacks
}

/// The pack indexer's progress check (v0 and v2 fetch): false, which aborts, past the
/// deadline or once the pack declares more than `max_objects` objects.
fn within_budget(
    session: &Session,
    max_objects: u64,
) -> impl FnMut(git2::Progress<'_>) -> bool + '_ {
    move |progress| {
        if session.remaining().is_err() {
            return false;
        }
        if progress.total_objects() as u64 > max_objects {
            let _ = session.fail(FetchError::TooManyObjects {
                url: session.shown_url(),
                limit: max_objects,
            });
            return false;
        }
        true
    }
}

/// Turns a libgit2 failure into a [`FetchError`]. What our transports and callbacks recorded
/// comes first: it is precise. Then libgit2's own error class: memory, and the pack indexer's
/// refusals, which are the server's fault and permanent. libgit2 reports its two pack limits
/// with no code of their own, so those two are told apart by their fixed messages (text from
/// the server never reaches these classes).
fn classify(session: &Session, limits: &FetchLimits, err: &git2::Error) -> FetchError {
    if let Some(recorded) = session.take_failure() {
        return recorded;
    }
    let url = session.shown_url();
    if session.remaining().is_err() {
        return FetchError::TimedOut { url };
    }
    let detail = crate::escape::controls(err.message());
    match err.class() {
        ErrorClass::NoMemory => FetchError::MemoryExceeded {
            url,
            limit: limits.max_memory_bytes,
            killed: false,
        },
        ErrorClass::Indexer if err.message() == "too many objects" => FetchError::TooManyObjects {
            url,
            limit: limits.max_objects,
        },
        ErrorClass::Invalid if err.message().ends_with("overly large object") => {
            FetchError::ObjectTooLarge {
                url,
                limit: limits.max_object_bytes(),
            }
        }
        ErrorClass::Indexer | ErrorClass::Invalid | ErrorClass::Zlib | ErrorClass::Odb => {
            FetchError::BadPack { url, detail }
        }
        ErrorClass::Os | ErrorClass::Filesystem => FetchError::Local(detail),
        _ => FetchError::Transport { url, detail },
    }
}
