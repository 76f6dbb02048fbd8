//! Fetch: resolve the branch head, and read one file at that commit (design §4 "Git").
//!
//! Second step of the flow, and the only code that talks to a git server. The interface is
//! deliberately narrow — [`fetch`] in, [`Fetched`] out — so a partial-clone implementation can
//! replace the depth-1 fetch later without touching validation or apply.
//!
//! Hardening: the fetch goes into a throw-away bare repository (no work tree, so no checkout, no
//! hooks, no submodules, no filters ever run); one branch, depth 1, no tags; the metadata blob is
//! read straight from the commit's tree, refusing symlinks, gitlinks and oversize blobs; the
//! transfer is aborted past a byte and object budget or the deadline; ssh requires the host key
//! in `known_hosts`. Messages are scrubbed of URLs with user info and of secret values.

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, FetchOptions,
    ProxyOptions, RemoteCallbacks, Repository,
};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::credentials::Credentials;
use crate::known_hosts::{KnownHosts, Verdict};
use crate::source::{MetadataPath, Source, Transport};
use crate_operator_api::contract::{Outcome, revision};

/// Budgets that stop a hostile or runaway repository.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Bytes received from the server, in total.
    pub max_transfer_bytes: u64,
    /// Objects in the fetched pack (depth 1: the trees and blobs of one commit).
    pub max_objects: u64,
    /// Size of the metadata file itself.
    pub max_file_bytes: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_transfer_bytes: crate_operator_api::contract::DEFAULT_MAX_TRANSFER_BYTES,
            max_objects: 200_000,
            max_file_bytes: 4 * 1024 * 1024,
        }
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
}

/// What the fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The branch head is the commit the caller already has; no objects were fetched.
    Unchanged { commit: String },
    /// The metadata file's bytes at the branch head.
    File { commit: String, content: Vec<u8> },
}

impl Fetched {
    pub fn commit(&self) -> &str {
        match self {
            Fetched::Unchanged { commit } | Fetched::File { commit, .. } => commit,
        }
    }
}

/// Why a fetch failed. Each variant names what to change.
#[derive(Debug, Error)]
pub enum FetchError {
    #[error(
        "failed to fetch {url}: ssh needs the server's host key; add a known_hosts key to the crate's Secret (for example the output of ssh-keyscan)"
    )]
    MissingKnownHosts { url: String },
    #[error(
        "failed to fetch {url}: the host key of {host} is {problem}; check the known_hosts entry in the crate's Secret"
    )]
    HostKey {
        url: String,
        host: String,
        problem: &'static str,
    },
    #[error(
        "failed to fetch {url}: the server asked for credentials but none were given; set spec.repo.secretName to a Secret holding an access token"
    )]
    AuthRequired { url: String },
    #[error(
        "failed to fetch {url}: the server rejected the credentials; check that the token (or ssh key) in the crate's Secret is valid and can read the repository"
    )]
    AuthRejected { url: String },
    #[error(
        "failed to fetch {url}: the repository does not exist or is not readable with these credentials ({detail})"
    )]
    RepositoryNotFound { url: String, detail: String },
    #[error("failed to fetch {url}: branch {branch:?} does not exist{}", available_hint(.available))]
    BranchNotFound {
        url: String,
        branch: String,
        available: Vec<String>,
    },
    #[error("failed to read {path} at {revision}: no such file; check spec.path")]
    FileNotFound { path: String, revision: String },
    #[error(
        "failed to read {path} at {revision}: it is a {kind}, not a regular file; commit the metadata file itself at that path"
    )]
    NotAFile {
        path: String,
        revision: String,
        kind: &'static str,
    },
    #[error("failed to read {path} at {revision}: it is {size} bytes, over the {limit}-byte limit")]
    FileTooLarge {
        path: String,
        revision: String,
        size: u64,
        limit: u64,
    },
    #[error(
        "failed to fetch {url}: the transfer exceeded the {limit}-byte budget; the branch tip is too large for a crate repository (raise --max-transfer-bytes only if this is expected)"
    )]
    TransferTooLarge { url: String, limit: u64 },
    #[error(
        "failed to fetch {url}: the branch tip has more than {limit} objects (raise --max-objects only if this is expected)"
    )]
    TooManyObjects { url: String, limit: u64 },
    #[error("failed to fetch {url}: gave up after {}s", .after.as_secs())]
    TimedOut { url: String, after: Duration },
    #[error("failed to fetch {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("failed to verify the TLS certificate of {url}: {detail}")]
    Tls { url: String, detail: String },
    #[error("failed to prepare the local fetch area: {0}")]
    Local(String),
}

fn available_hint(available: &[String]) -> String {
    if available.is_empty() {
        "; the repository has no branches".to_owned()
    } else {
        format!(
            "; check spec.repo.branch (branches: {})",
            available.join(", ")
        )
    }
}

impl FetchError {
    /// The outcome this failure stands for, deciding retry and status reason.
    pub fn outcome(&self) -> Outcome {
        match self {
            FetchError::MissingKnownHosts { .. }
            | FetchError::HostKey { .. }
            | FetchError::Tls { .. } => Outcome::InvalidRequest,
            FetchError::AuthRequired { .. } | FetchError::AuthRejected { .. } => {
                Outcome::AuthenticationFailed
            }
            FetchError::RepositoryNotFound { .. }
            | FetchError::BranchNotFound { .. }
            | FetchError::FileNotFound { .. } => Outcome::NotFound,
            FetchError::NotAFile { .. } => Outcome::InvalidCrate,
            FetchError::FileTooLarge { .. }
            | FetchError::TransferTooLarge { .. }
            | FetchError::TooManyObjects { .. } => Outcome::LimitExceeded,
            FetchError::TimedOut { .. } => Outcome::TimedOut,
            FetchError::Transport { .. } => Outcome::FetchFailed,
            FetchError::Local(_) => Outcome::Internal,
        }
    }
}

/// Why our own callbacks stopped libgit2; consulted before its (less precise) error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Deadline,
    Bytes,
    Objects,
    HostKey(Verdict),
    NoCredentials,
    CredentialsRejected,
}

/// Resolves the branch head and, unless it is `skip_if_head_is`, fetches it (depth 1) and reads
/// the metadata file from its tree.
pub fn fetch(req: &FetchRequest<'_>) -> Result<Fetched, FetchError> {
    let url = req.source.to_string();
    let known_hosts = match (req.source.transport(), &req.credentials.known_hosts) {
        (Transport::Ssh, Some(text)) => Some(KnownHosts::parse(text)),
        (Transport::Ssh, None) => return Err(FetchError::MissingKnownHosts { url }),
        _ => None,
    };
    let started = Instant::now();
    let stop = Cell::new(None::<Stop>);
    let auth_attempts = Cell::new(0u32);
    let ctx = CallbackContext {
        req,
        known_hosts: known_hosts.as_ref(),
        stop: &stop,
        auth_attempts: &auth_attempts,
    };
    let fail = |e: git2::Error| ctx.classify(&e, started);

    let work = match req.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("crate-loader-")
            .tempdir_in(dir),
        None => tempfile::Builder::new().prefix("crate-loader-").tempdir(),
    }
    .map_err(|e| FetchError::Local(e.to_string()))?;
    let repo = Repository::init_bare(work.path())
        .map_err(|e| FetchError::Local(e.message().to_owned()))?;
    let mut remote = repo
        .remote_anonymous(req.source.connect_url())
        .map_err(fail)?;

    let mut connection = remote
        .connect_auth(
            Direction::Fetch,
            Some(ctx.callbacks()),
            Some(proxy_options()),
        )
        .map_err(fail)?;
    let wanted = format!("refs/heads/{}", req.branch);
    let heads = connection.list().map_err(fail)?;
    let Some(head) = heads
        .iter()
        .find(|h| h.name() == wanted)
        .map(git2::RemoteHead::oid)
    else {
        let mut available: Vec<String> = heads
            .iter()
            .filter_map(|h| h.name().strip_prefix("refs/heads/"))
            .map(str::to_owned)
            .collect();
        available.truncate(20);
        return Err(FetchError::BranchNotFound {
            url,
            branch: req.branch.to_owned(),
            available,
        });
    };
    let commit = head.to_string();
    if req.skip_if_head_is == Some(commit.as_str()) {
        return Ok(Fetched::Unchanged { commit });
    }

    let mut options = FetchOptions::new();
    options
        .remote_callbacks(ctx.callbacks())
        .proxy_options(proxy_options())
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    if req.source.transport() != Transport::Local {
        // libgit2's local transport copies objects directly and does not negotiate depth.
        options.depth(1);
    }
    let refspec = format!("+{wanted}:refs/remotes/origin/{}", req.branch);
    connection
        .remote()
        .download(&[refspec.as_str()], Some(&mut options))
        .map_err(fail)?;
    drop(connection);

    let revision = revision(req.branch, &commit);
    let content = read_file(&repo, head, req.path, &revision, req.limits.max_file_bytes)?;
    Ok(Fetched::File { commit, content })
}

// Git tree entry modes.
const MODE_TREE: i32 = 0o040_000;
const MODE_FILE: i32 = 0o100_644;
const MODE_EXECUTABLE: i32 = 0o100_755;
const MODE_SYMLINK: i32 = 0o120_000;
const MODE_GITLINK: i32 = 0o160_000;

/// Walks `path` from the commit's root tree, refusing anything but trees on the way and a
/// regular-file blob at the end.
fn read_file(
    repo: &Repository,
    commit: git2::Oid,
    path: &MetadataPath,
    revision: &str,
    max_bytes: u64,
) -> Result<Vec<u8>, FetchError> {
    let local = |e: git2::Error| FetchError::Local(e.message().to_owned());
    let mut tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(local)?;
    let components = path.components();
    let mut walked = String::new();
    for (i, name) in components.iter().enumerate() {
        walked.push('/');
        walked.push_str(name);
        let not_found = || FetchError::FileNotFound {
            path: path.to_string(),
            revision: revision.to_owned(),
        };
        let not_a_file = |kind| FetchError::NotAFile {
            path: walked.clone(),
            revision: revision.to_owned(),
            kind,
        };
        let entry = tree.get_name(name).ok_or_else(not_found)?.to_owned();
        let last = i + 1 == components.len();
        match (entry.filemode(), last) {
            (MODE_TREE, false) => tree = repo.find_tree(entry.id()).map_err(local)?,
            (MODE_FILE | MODE_EXECUTABLE, true) => {
                let (size, _) = repo
                    .odb()
                    .and_then(|odb| odb.read_header(entry.id()))
                    .map_err(local)?;
                let size = size as u64;
                if size > max_bytes {
                    return Err(FetchError::FileTooLarge {
                        path: path.to_string(),
                        revision: revision.to_owned(),
                        size,
                        limit: max_bytes,
                    });
                }
                return Ok(repo
                    .find_blob(entry.id())
                    .map_err(local)?
                    .content()
                    .to_vec());
            }
            (MODE_SYMLINK, _) => return Err(not_a_file("symbolic link")),
            (MODE_GITLINK, _) => return Err(not_a_file("submodule (gitlink)")),
            (MODE_TREE, true) => return Err(not_a_file("directory")),
            _ => return Err(not_found()),
        }
    }
    Err(FetchError::FileNotFound {
        path: path.to_string(),
        revision: revision.to_owned(),
    })
}

fn proxy_options() -> ProxyOptions<'static> {
    // Honour the cluster's egress proxy settings (HTTPS_PROXY and friends).
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    proxy
}

/// State shared by the callbacks of one fetch.
struct CallbackContext<'a> {
    req: &'a FetchRequest<'a>,
    known_hosts: Option<&'a KnownHosts>,
    stop: &'a Cell<Option<Stop>>,
    auth_attempts: &'a Cell<u32>,
}

impl<'a> CallbackContext<'a> {
    fn callbacks(&self) -> RemoteCallbacks<'a> {
        let (req, stop, attempts, known_hosts) =
            (self.req, self.stop, self.auth_attempts, self.known_hosts);
        let mut cb = RemoteCallbacks::new();
        cb.credentials(move |_url, url_user, allowed| {
            credential(req, url_user, allowed, attempts).inspect_err(|_| {
                let why = if attempts.get() > 1 {
                    Stop::CredentialsRejected
                } else {
                    Stop::NoCredentials
                };
                stop.set(Some(why));
            })
        });
        cb.certificate_check(move |cert, _host| {
            let Some(hostkey) = cert.as_hostkey() else {
                // TLS: libgit2 has verified the chain against the system roots; keep its verdict.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let verdict = match (known_hosts, req.source.host()) {
                (Some(kh), Some(host)) => kh.verify(host, req.source.port(), |listed| {
                    hostkey.hostkey().map_or_else(
                        || {
                            hostkey
                                .hash_sha256()
                                .is_some_and(|h| Sha256::digest(listed).as_slice() == h)
                        },
                        |presented| presented == listed,
                    )
                }),
                _ => Verdict::UnknownHost,
            };
            if verdict == Verdict::Trusted {
                Ok(CertificateCheckStatus::CertificateOk)
            } else {
                stop.set(Some(Stop::HostKey(verdict)));
                Err(git2::Error::from_str("host key not trusted"))
            }
        });
        cb.transfer_progress(move |progress| {
            let over = if Instant::now() >= req.deadline {
                Some(Stop::Deadline)
            } else if progress.received_bytes() as u64 > req.limits.max_transfer_bytes {
                Some(Stop::Bytes)
            } else if progress.total_objects() as u64 > req.limits.max_objects {
                Some(Stop::Objects)
            } else {
                None
            };
            stop.set(over.or(stop.get()));
            over.is_none()
        });
        cb.sideband_progress(move |_| {
            if Instant::now() >= req.deadline {
                stop.set(Some(Stop::Deadline));
                return false;
            }
            true
        });
        cb
    }

    /// Turns a libgit2 failure into a [`FetchError`], preferring what our callbacks recorded.
    fn classify(&self, err: &git2::Error, started: Instant) -> FetchError {
        let url = self.req.source.to_string();
        let limits = self.req.limits;
        match self.stop.get() {
            Some(Stop::Deadline) => {
                return FetchError::TimedOut {
                    url,
                    after: started.elapsed(),
                };
            }
            Some(Stop::Bytes) => {
                return FetchError::TransferTooLarge {
                    url,
                    limit: limits.max_transfer_bytes,
                };
            }
            Some(Stop::Objects) => {
                return FetchError::TooManyObjects {
                    url,
                    limit: limits.max_objects,
                };
            }
            Some(Stop::HostKey(verdict)) => {
                let problem = match verdict {
                    Verdict::Revoked => "revoked",
                    Verdict::Mismatch => {
                        "not the one listed for it (possible man-in-the-middle, or the key changed)"
                    }
                    Verdict::UnknownHost | Verdict::Trusted => "not listed in known_hosts",
                };
                let host = self.req.source.host().unwrap_or_default().to_owned();
                return FetchError::HostKey { url, host, problem };
            }
            Some(Stop::NoCredentials) => return FetchError::AuthRequired { url },
            Some(Stop::CredentialsRejected) => return FetchError::AuthRejected { url },
            None => {}
        }
        if Instant::now() >= self.req.deadline {
            return FetchError::TimedOut {
                url,
                after: started.elapsed(),
            };
        }
        let detail = self.scrub(err.message());
        let lower = detail.to_ascii_lowercase();
        match err.code() {
            git2::ErrorCode::Auth => return FetchError::AuthRejected { url },
            git2::ErrorCode::Certificate => return FetchError::Tls { url, detail },
            _ => {}
        }
        if lower.contains("401") || lower.contains("403") || lower.contains("authentication") {
            FetchError::AuthRejected { url }
        } else if err.code() == git2::ErrorCode::NotFound
            || [
                "404",
                "not found",
                "does not appear to be a git repository",
                "no such repository",
                "not exported",
                "could not find repository",
            ]
            .iter()
            .any(|m| lower.contains(m))
        {
            FetchError::RepositoryNotFound { url, detail }
        } else if err.class() == git2::ErrorClass::Ssl {
            FetchError::Tls { url, detail }
        } else {
            FetchError::Transport { url, detail }
        }
    }

    fn scrub(&self, message: &str) -> String {
        let mut text = self.req.source.scrub(message);
        for secret in self.req.credentials.secret_values() {
            text = text.replace(secret, "<redacted>");
        }
        text
    }
}

/// Answers libgit2's credential request. Fails on the second request of a kind: libgit2 asks
/// again only after the server rejected the first answer, and asking forever would loop.
fn credential(
    req: &FetchRequest<'_>,
    url_user: Option<&str>,
    allowed: CredentialType,
    attempts: &Cell<u32>,
) -> Result<Cred, git2::Error> {
    let creds = req.credentials;
    if allowed.contains(CredentialType::USERNAME) {
        return Cred::username(&username_for(req, url_user, "git"));
    }
    attempts.set(attempts.get() + 1);
    if attempts.get() > 1 {
        return Err(git2::Error::from_str("credentials rejected"));
    }
    if allowed.contains(CredentialType::SSH_KEY)
        && let Some(key) = &creds.identity
    {
        return Cred::ssh_key_from_memory(
            &username_for(req, url_user, "git"),
            None,
            key.expose(),
            None,
        );
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
        && let Some(token) = &creds.token
    {
        return Cred::userpass_plaintext(
            &username_for(req, url_user, req.default_username),
            token.expose(),
        );
    }
    Err(git2::Error::from_str("no usable credentials"))
}

fn username_for(req: &FetchRequest<'_>, url_user: Option<&str>, fallback: &str) -> String {
    req.credentials
        .username
        .as_deref()
        .or(url_user)
        .or(req.source.url_username())
        .unwrap_or(fallback)
        .to_owned()
}
