//! What to fetch: the repository location with its transport policy. The branch and metadata
//! path rules are the spec's own ([`crate_operator_api::rules`]), shared with the manager.
//!
//! First step of the flow. Everything here is pure and decided before any network I/O, so an
//! unusable request fails fast with a message that says which field to change. The display form
//! of a URL never carries credentials; it is the only form that reaches logs, errors and output.

use std::fmt;
use std::path::PathBuf;

use crate_operator_api::repo_url::{RepoUrl, RepoUrlError, Scheme};
use crate_operator_api::rules::SpecError;
pub use crate_operator_api::rules::{Branch, MetadataPath};
use thiserror::Error;

/// A request we refuse before touching the network.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceError {
    #[error(transparent)]
    Url(#[from] RepoUrlError),
    #[error("refused the local repository {url}: only preview reads repositories on this machine")]
    LocalNotAllowed { url: String },
    #[error("failed to use the local repository {url}: {reason}")]
    BadLocalPath { url: String, reason: String },
    #[error("refused the request: {0}")]
    Spec(#[from] SpecError),
}

/// How the repository is reached, which decides the credential kind and the trust checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Https,
    Ssh,
    /// `http://` or `git://`: no transport security at all.
    Insecure,
    /// A path or `file://` URL on this machine (preview only).
    Local,
}

/// Which transports a caller accepts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    pub allow_insecure: bool,
    pub allow_local: bool,
}

/// A repository location that passed the transport policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A repository reached over the network (the only kind a Job may load).
    Remote(RepoUrl),
    /// A repository on this machine, read in place (`preview` only).
    Local(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Remote(url) => f.write_str(&url.display()),
            Source::Local(path) => {
                f.write_str(&crate::escape::controls(&path.display().to_string()))
            }
        }
    }
}

impl Source {
    /// Parses a repository location and applies the transport policy. A location is a URL
    /// (`scheme://…`), git's scp-like `[user@]host:path` (a colon before any slash), or else a
    /// path on this machine.
    pub fn parse(raw: &str, policy: Policy) -> Result<Source, SourceError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(RepoUrl::parse(raw).err().map_or(
                SourceError::BadLocalPath {
                    url: String::new(),
                    reason: "it is empty".to_owned(),
                },
                SourceError::Url,
            ));
        }
        let local = if let Some(path) = raw.strip_prefix("file://") {
            Some(path)
        } else if raw.contains("://") {
            None
        } else {
            let colon = raw.find(':');
            let slash = raw.find('/');
            match (colon, slash) {
                (Some(c), Some(s)) if c < s => None,
                (Some(_), None) => None,
                _ => Some(raw),
            }
        };
        let Some(path) = local else {
            return Ok(Source::Remote(RepoUrl::parse_with_policy(
                raw,
                policy.allow_insecure,
            )?));
        };
        let shown = crate::escape::controls(path);
        if !policy.allow_local {
            return Err(SourceError::LocalNotAllowed { url: shown });
        }
        std::path::absolute(PathBuf::from(path))
            .map(Source::Local)
            .map_err(|e| SourceError::BadLocalPath {
                url: shown,
                reason: e.to_string(),
            })
    }

    pub fn transport(&self) -> Transport {
        match self {
            Source::Remote(url) => match url.scheme() {
                Scheme::Https => Transport::Https,
                Scheme::Ssh => Transport::Ssh,
                Scheme::Http | Scheme::Git => Transport::Insecure,
            },
            Source::Local(_) => Transport::Local,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy {
        allow_insecure: false,
        allow_local: false,
    };
    const LOOSE: Policy = Policy {
        allow_insecure: true,
        allow_local: true,
    };

    #[test]
    fn https_and_ssh_urls_are_accepted_by_default() {
        for (raw, transport) in [
            ("https://github.com/lsc-sde/crate.git", Transport::Https),
            ("ssh://git@example.org:2222/org/crate.git", Transport::Ssh),
            ("git@github.com:org/crate.git", Transport::Ssh),
        ] {
            let s = Source::parse(raw, STRICT).expect(raw);
            assert_eq!(s.transport(), transport, "{raw}");
        }
    }

    #[test]
    fn unencrypted_transports_need_the_explicit_flag() {
        for url in ["http://example.org/r.git", "git://example.org/r.git"] {
            let err = Source::parse(url, STRICT).expect_err(url);
            assert!(
                matches!(
                    err,
                    SourceError::Url(RepoUrlError::InsecureTransport { .. })
                ),
                "{err}"
            );
            assert!(err.to_string().contains("--allow-insecure-transport"));
            assert_eq!(
                Source::parse(url, LOOSE).expect(url).transport(),
                Transport::Insecure
            );
        }
    }

    #[test]
    fn local_repositories_are_refused_unless_allowed() {
        assert!(matches!(
            Source::parse("/srv/repo", STRICT),
            Err(SourceError::LocalNotAllowed { .. })
        ));
        assert!(matches!(
            Source::parse("file:///srv/repo", STRICT),
            Err(SourceError::LocalNotAllowed { .. })
        ));
        assert_eq!(
            Source::parse("./examples/demo", LOOSE)
                .expect("local")
                .transport(),
            Transport::Local
        );
    }

    #[test]
    fn url_errors_are_the_shared_repo_url_rules() {
        // The rules themselves are tested in crate_operator_api::repo_url.
        let err = Source::parse("pat:s3cr3t@example.org:org/r.git", STRICT).expect_err("password");
        assert!(
            matches!(err, SourceError::Url(RepoUrlError::Password { .. })),
            "{err}"
        );
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(matches!(
            Source::parse("ftp://example.org/r.git", LOOSE),
            Err(SourceError::Url(RepoUrlError::UnsupportedScheme { .. }))
        ));
        assert!(matches!(Source::parse("", LOOSE), Err(SourceError::Url(_))));
    }

    #[test]
    fn a_colon_before_any_slash_makes_a_location_scp_like_not_local() {
        assert_eq!(
            Source::parse("host:dir/repo.git", LOOSE)
                .expect("scp")
                .transport(),
            Transport::Ssh
        );
        assert_eq!(
            Source::parse("dir/with:colon", LOOSE)
                .expect("local")
                .transport(),
            Transport::Local
        );
    }
}
