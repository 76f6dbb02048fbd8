//! Why a fetch failed. Each variant names what to change and stands for exactly one
//! [`Outcome`], which decides whether the manager retries.
//!
//! Text a server or repository chose (messages, ref names, content types) is escaped before it
//! gets here (`crate::escape`). Errors travel from the fetch worker to its parent as JSON, hence
//! the serde derives.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::known_hosts::Verdict;
use crate_operator_api::contract::Outcome;

#[derive(Debug, Error, Serialize, Deserialize, PartialEq, Eq)]
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
        problem: String,
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
        "failed to fetch {url}: it redirected to {target}, which asks for credentials; credentials are sent only to the scheme, host and port of spec.repo.url, so point spec.repo.url at the repository's real location"
    )]
    CredentialsElsewhere { url: String, target: String },
    #[error(
        "failed to fetch {url}: refused the redirect to {target}: {reason}; point spec.repo.url at the repository's real location"
    )]
    Redirect {
        url: String,
        target: String,
        reason: String,
    },
    #[error(
        "failed to fetch {url}: the repository does not exist or is not readable with these credentials ({detail})"
    )]
    RepositoryNotFound { url: String, detail: String },
    #[error(
        "failed to fetch {url}: {target} answered {content_type}, not git's smart HTTP protocol; check spec.repo.url"
    )]
    NotGitHttp {
        url: String,
        target: String,
        content_type: String,
    },
    #[error("failed to fetch {url}: branch {branch:?} does not exist{}", available_hint(.available))]
    BranchNotFound {
        url: String,
        branch: String,
        available: Vec<String>,
    },
    #[error(
        "failed to fetch {url}: branch {branch:?} points at a {kind}, not a commit; make refs/heads/{branch} a commit"
    )]
    NotACommit {
        url: String,
        branch: String,
        kind: String,
    },
    #[error(
        "failed to read {url} at {revision}: {detail}; the repository is damaged or was served incompletely (check it with git fsck)"
    )]
    Damaged {
        url: String,
        revision: String,
        detail: String,
    },
    #[error(
        "failed to fetch {url}: the server sent a pack git cannot use ({detail}); the repository is damaged or the server is misbehaving"
    )]
    BadPack { url: String, detail: String },
    #[error("failed to read {path} at {revision}: no such file; check spec.path")]
    FileNotFound { path: String, revision: String },
    #[error(
        "failed to read {path} at {revision}: it is a {kind}, not a regular file; commit the metadata file itself at that path"
    )]
    NotAFile {
        path: String,
        revision: String,
        kind: String,
    },
    #[error("failed to read {path} at {revision}: it is {size} bytes, over the {limit}-byte limit")]
    FileTooLarge {
        path: String,
        revision: String,
        size: u64,
        limit: u64,
    },
    #[error(
        "failed to fetch {url}: the server sent more than the {limit}-byte budget (--max-transfer-bytes; in the operator, the chart's loader.maxTransfer); a server that filters objects sends little beyond the metadata file, one without filters the whole branch tip: serve the repository with filters (git: uploadpack.allowFilter) or keep large data elsewhere, and raise the budget only if a tip this large is expected"
    )]
    TransferTooLarge { url: String, limit: u64 },
    #[error("failed to fetch {url}: the server sent HTTP headers over {limit} bytes")]
    HeadersTooLarge { url: String, limit: usize },
    #[error(
        "failed to fetch {url}: the branch tip has more than {limit} objects (raise --max-objects only if this is expected)"
    )]
    TooManyObjects { url: String, limit: u64 },
    #[error(
        "failed to fetch {url}: an object in the pack expands to more than {limit} bytes (a delta bomb, or a file too large for the loader's memory budget, --max-memory-bytes)"
    )]
    ObjectTooLarge { url: String, limit: u64 },
    #[error(
        "failed to fetch {url}: the fetch needed more than its {limit}-byte memory budget{}; the server sent something the loader cannot hold (raise --max-memory-bytes, and the loader Pod's memory limit, only if this is expected)",
        killed_hint(.killed)
    )]
    MemoryExceeded {
        url: String,
        limit: u64,
        /// The worker was killed (the kernel's OOM killer, or an allocation failure that
        /// aborted it) rather than refused an allocation.
        killed: bool,
    },
    #[error("failed to fetch {url}: gave up at the deadline (--timeout)")]
    TimedOut { url: String },
    #[error("failed to fetch {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("failed to verify the TLS certificate of {url}: {detail}")]
    Tls { url: String, detail: String },
    /// A failure in the loader's own environment (its temporary directory, its fetch worker),
    /// not the repository's: messages say so, since the crate's author cannot fix it.
    #[error("failed to fetch on the loader's side (not a problem of the repository): {0}")]
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

#[allow(clippy::trivially_copy_pass_by_ref)] // thiserror passes fields by reference
fn killed_hint(killed: &bool) -> &'static str {
    if *killed { " and was killed" } else { "" }
}

impl FetchError {
    /// The outcome this failure stands for, deciding retry and status reason.
    pub fn outcome(&self) -> Outcome {
        match self {
            FetchError::MissingKnownHosts { .. }
            | FetchError::HostKey { .. }
            | FetchError::Redirect { .. }
            | FetchError::Tls { .. } => Outcome::InvalidRequest,
            FetchError::AuthRequired { .. }
            | FetchError::AuthRejected { .. }
            | FetchError::CredentialsElsewhere { .. } => Outcome::AuthenticationFailed,
            FetchError::RepositoryNotFound { .. }
            | FetchError::NotGitHttp { .. }
            | FetchError::BranchNotFound { .. }
            | FetchError::FileNotFound { .. } => Outcome::NotFound,
            FetchError::NotAFile { .. }
            | FetchError::NotACommit { .. }
            | FetchError::Damaged { .. }
            | FetchError::BadPack { .. } => Outcome::InvalidCrate,
            FetchError::FileTooLarge { .. }
            | FetchError::TransferTooLarge { .. }
            | FetchError::HeadersTooLarge { .. }
            | FetchError::TooManyObjects { .. }
            | FetchError::ObjectTooLarge { .. }
            | FetchError::MemoryExceeded { .. } => Outcome::LimitExceeded,
            FetchError::TimedOut { .. } => Outcome::TimedOut,
            FetchError::Transport { .. } => Outcome::FetchFailed,
            FetchError::Local(_) => Outcome::Internal,
        }
    }

    /// How a host-key verdict reads in [`FetchError::HostKey`].
    pub fn host_key_problem(verdict: Verdict) -> &'static str {
        match verdict {
            Verdict::Revoked => "revoked",
            Verdict::Mismatch => {
                "not the one listed for it (possible man-in-the-middle, or the key changed)"
            }
            Verdict::UnknownHost | Verdict::Trusted => "not listed in known_hosts",
        }
    }
}
