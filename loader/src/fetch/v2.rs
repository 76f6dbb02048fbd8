//! The protocol v2 fetch, partial where the server allows it: `filter blob:none`, so that only
//! the branch tip's commit, its trees and the one blob at `--path` leave the server, whatever
//! else the repository holds. A v2 server without filters gets the whole tip at depth 1 on the
//! same connection.
//!
//! gix's protocol crate speaks v2 over our own connections ([`transport::connect_v2`]): every
//! byte still counts against the transfer budget, the deadline holds, credentials go only to
//! the origin and ssh requires the host key. The packs go into the fetch's throw-away bare
//! repository through libgit2's pack indexer, under the same object limits as the v0 fetch, and
//! are read by the same tree walk ([`super::tree`]), so the refusals (symlinks, submodules,
//! oversize or mistyped objects) are the same on every path. Protocol v2 lets a client want any
//! object, which is how the blob is asked for by the id the trees give.
//!
//! A server that answers in protocol v0 (an ssh server that drops `GIT_PROTOCOL`, an old
//! server) or refuses a request yields [`Attempt::Unsupported`], and the caller fetches through
//! libgit2 as before. A failure the session recorded (budget, deadline, network, host key,
//! credentials) is final on every path, and so is a pack the indexer refuses: the v0 fetch would
//! only transfer it again to refuse it the same way.

use std::fmt::Display;
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::sync::Arc;

use git2::{Oid, Repository};
use gix_protocol::fetch::{Arguments, Response};
use gix_protocol::handshake::Ref;
use gix_protocol::ls_refs::RefPrefixes;
use gix_protocol::transport::bstr::BString;
use gix_protocol::transport::client::blocking_io::ExtendedBufRead;
use gix_protocol::transport::{Protocol, Service};
use gix_protocol::{Command, LsRefsCommand};
use gix_utils::progress::Discard;

use super::tree;
use super::{FetchError, FetchLimits, FetchRequest, Tip};
use crate::transport::{self, Session, V2Transport};
use crate_operator_api::contract::FetchMode;

/// How the protocol v2 fetch went.
pub(super) enum Attempt {
    /// The tip's commit, its trees and the metadata file's blob are in the repository: only
    /// those when the mode is partial, every object of the tip when the server has no filter.
    Fetched(Tip),
    /// The branch head is the commit the caller already has; nothing was fetched.
    Unchanged { commit: String },
    /// This server does not speak protocol v2 or refused a request; why, for the log.
    Unsupported(String),
}

type V2Connection = Box<dyn V2Transport>;

/// How the loader names itself to the server (`agent`), as git does.
const AGENT: &str = concat!("crate-loader/", env!("CARGO_PKG_VERSION"));

/// Lists the branch and, unless it is unchanged, fetches its tip's trees and then the blob at
/// `req.path` into `repo`.
pub(super) fn fetch(
    session: &Arc<Session>,
    repo: &Repository,
    req: &FetchRequest<'_>,
) -> Result<Attempt, FetchError> {
    let mut conn = transport::connect_v2(session).map_err(|e| final_error(session, &e))?;
    // Credentials are the transport's business (ssh keys, the token after a 401, never a
    // prompt): gix gets no helper.
    let handshake = gix_protocol::handshake(
        &mut conn,
        Service::UploadPack,
        |_| Ok(None),
        Vec::new(),
        &mut Discard,
    )
    .map_err(|e| final_error(session, &e))?;

    let wanted = format!("refs/heads/{}", req.branch);
    // A v0 server advertised its refs already; in v2 they are asked for.
    let refs = if let Some(refs) = handshake.refs {
        refs
    } else {
        let mut prefixes = RefPrefixes::new();
        // Every branch, not just ours: their names make the hint when ours is missing.
        prefixes.extend([BString::from("refs/heads/")]);
        LsRefsCommand::new(
            Some(prefixes),
            &handshake.capabilities,
            ("agent", Some(AGENT.to_owned())),
        )
        .invoke_blocking(&mut conn, &mut Discard, false)
        .map_err(|e| final_error(session, &e))?
    };
    let Some(head) = refs.iter().find_map(|r| branch_head(r, &wanted)) else {
        return Err(FetchError::BranchNotFound {
            url: session.shown_url(),
            branch: req.branch.to_owned(),
            available: super::branches(refs.iter().map(ref_name)),
        });
    };
    let commit = head.to_string();
    if req.skip_if_head_is == Some(commit.as_str()) {
        return Ok(Attempt::Unchanged { commit });
    }
    if handshake.server_protocol_version != Protocol::V2 {
        return Ok(Attempt::Unsupported(
            "the server answered in git protocol v0".to_owned(),
        ));
    }

    let features = Command::Fetch.default_features(Protocol::V2, &handshake.capabilities);
    let mut tip = Arguments::new(Protocol::V2, features.clone(), false);
    if !tip.can_use_shallow() {
        return Ok(Attempt::Unsupported(
            "the server cannot limit the fetch to the tip commit (no shallow support)".to_owned(),
        ));
    }
    let partial = tip.can_use_filter();
    tip.want(head);
    tip.deepen(1);
    if partial {
        tip.filter("blob:none");
    } else {
        tracing::info!(
            "the server offers no object filter (git: uploadpack.allowFilter): fetching every object of the branch tip"
        );
    }
    if let Err(failure) = receive(&mut conn, tip, repo, session, &req.limits) {
        return refused(session, "the branch tip", failure);
    }
    let head = Oid::from_bytes(head.as_bytes()).map_err(|e| final_error(session, &e))?;
    if !partial {
        return Ok(Attempt::Fetched(Tip {
            head,
            blob: None,
            mode: FetchMode::Full,
        }));
    }

    let revision = crate_operator_api::contract::revision(req.branch, &commit);
    let shown = session.shown_url();
    let blob = tree::locate(repo, head, req.path, &super::origin(&shown, req, &revision))?;
    let wanted =
        gix_hash::ObjectId::try_from(blob.as_bytes()).map_err(|e| final_error(session, &e))?;
    let mut file = Arguments::new(Protocol::V2, features, false);
    file.want(wanted);
    if let Err(failure) = receive(&mut conn, file, repo, session, &req.limits) {
        return refused(session, "the metadata file's blob", failure);
    }
    Ok(Attempt::Fetched(Tip {
        head,
        blob: Some(blob),
        mode: FetchMode::Partial,
    }))
}

/// What the branch `wanted` points at when `r` is it: the tag object, not its target, when a
/// branch names an annotated tag (as the full fetch sees it, so both refuse it the same way).
fn branch_head(r: &Ref, wanted: &str) -> Option<gix_hash::ObjectId> {
    let (name, id) = match r {
        Ref::Direct {
            full_ref_name,
            object,
        } => (full_ref_name, *object),
        Ref::Peeled {
            full_ref_name, tag, ..
        } => (full_ref_name, *tag),
        Ref::Symbolic {
            full_ref_name,
            tag,
            object,
            ..
        } => (full_ref_name, tag.unwrap_or(*object)),
        Ref::Unborn { .. } => return None,
    };
    (name.as_slice() == wanted.as_bytes()).then_some(id)
}

/// The ref's name; bytes that are not UTF-8 (git allows them) shown as U+FFFD.
fn ref_name(r: &Ref) -> std::borrow::Cow<'_, str> {
    let (Ref::Direct { full_ref_name, .. }
    | Ref::Peeled { full_ref_name, .. }
    | Ref::Symbolic { full_ref_name, .. }
    | Ref::Unborn { full_ref_name, .. }) = r;
    String::from_utf8_lossy(full_ref_name)
}

/// Why a fetch command brought no objects.
enum Failure {
    /// The server refused the request or broke the exchange (what it said, for the log): the
    /// v0 fetch may still work.
    Refused(String),
    /// The pack arrived but cannot be stored (bad, or over a budget): final.
    Pack(FetchError),
}

/// Sends one fetch command and indexes the pack it answers with into `repo`.
fn receive(
    conn: &mut V2Connection,
    mut args: Arguments,
    repo: &Repository,
    session: &Session,
    limits: &FetchLimits,
) -> Result<(), Failure> {
    let server_side = |e: &dyn Display| Failure::Refused(e.to_string());
    let mut reader = args.send(conn, true).map_err(|e| server_side(&e))?;
    let response = Response::from_line_reader(Protocol::V2, &mut reader, true, false)
        .map_err(|e| server_side(&e))?;
    if !response.has_pack() {
        return Err(server_side(&"the server sent no pack"));
    }
    // Progress messages are read (and counted by the transport) but not shown.
    reader.set_progress_handler(Some(Box::new(|_, _| ControlFlow::Continue(()))));
    let local = |e: git2::Error| Failure::Pack(FetchError::Local(e.message().to_owned()));
    let odb = repo.odb().map_err(local)?;
    let mut pack = odb.packwriter().map_err(local)?;
    pack.progress(super::within_budget(session, limits.max_objects));
    // Not io::copy: a failed read is the server's doing, a failed write the indexer's refusal,
    // which libgit2 explains in its last error (the writer's own error says only "Write error").
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(server_side(&e)),
        };
        if pack.write_all(&buf[..n]).is_err() {
            return Err(indexer_refused(
                session,
                limits,
                &git2::Error::last_error(-1),
            ));
        }
    }
    pack.commit()
        .map_err(|e| indexer_refused(session, limits, &e))?;
    Ok(())
}

/// The indexer's refusal of a pack, classified as on the v0 path; one libgit2 gives no reason
/// for is still the pack's fault, not the network's (which would be retried).
fn indexer_refused(session: &Session, limits: &FetchLimits, error: &git2::Error) -> Failure {
    Failure::Pack(match super::classify(session, limits, error) {
        FetchError::Transport { url, detail } if error.class() == git2::ErrorClass::None => {
            FetchError::BadPack { url, detail }
        }
        classified => classified,
    })
}

/// A request that brought no objects: final when the session recorded why (a budget, the
/// deadline, the network) or the pack was refused, otherwise a reason to fetch in v0 instead.
fn refused(session: &Session, what: &str, failure: Failure) -> Result<Attempt, FetchError> {
    match (session.take_failure(), failure) {
        (Some(recorded), _) => Err(recorded),
        (None, Failure::Pack(error)) => Err(error),
        (None, Failure::Refused(detail)) => Ok(Attempt::Unsupported(format!(
            "the server did not send {what}: {}",
            crate::escape::controls(&detail)
        ))),
    }
}

/// An error before the fetch requests: what the session recorded, else a transport error.
fn final_error(session: &Session, error: &dyn Display) -> FetchError {
    session
        .take_failure()
        .unwrap_or_else(|| FetchError::Transport {
            url: session.shown_url(),
            detail: crate::escape::controls(&error.to_string()),
        })
}
