//! What to fetch: the repository URL with its transport policy, and the metadata path inside it.
//!
//! First step of the flow. Everything here is pure and decided before any network I/O, so an
//! unusable request fails fast with a message that says which field to change. The display form
//! of a URL never carries credentials; it is the only form that reaches logs, errors and output.

use std::fmt;
use std::path::PathBuf;

use crate_operator_api::repo_url::{RepoUrl, RepoUrlError, Scheme};
use thiserror::Error;

/// A request we refuse before touching the network.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceError {
    #[error(transparent)]
    Url(#[from] RepoUrlError),
    #[error(
        "refused the unencrypted transport {scheme}:// for {url}: use an https:// or ssh:// URL (--allow-insecure-transport exists for local testing only)"
    )]
    InsecureTransport { scheme: String, url: String },
    #[error("refused the local repository {url}: only preview reads repositories on this machine")]
    LocalNotAllowed { url: String },
    #[error("failed to use the local repository {url}: {reason}")]
    BadLocalPath { url: String, reason: String },
    #[error("refused the metadata path {path:?}: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("refused the branch name {branch:?}: {reason}")]
    BadBranch {
        branch: String,
        reason: &'static str,
    },
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
            let url = RepoUrl::parse(raw)?;
            if url.scheme().is_insecure() && !policy.allow_insecure {
                return Err(SourceError::InsecureTransport {
                    scheme: url.scheme().as_str().to_owned(),
                    url: url.display(),
                });
            }
            return Ok(Source::Remote(url));
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

/// The metadata file's location inside the repository, as tree path components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataPath {
    components: Vec<String>,
}

impl MetadataPath {
    /// Parses `spec.path`: a leading `/` means the repository root; `.` components are ignored;
    /// `..`, empty names and a trailing `/` are refused (the file name is part of the path).
    pub fn parse(raw: &str) -> Result<MetadataPath, SourceError> {
        let bad = |reason| SourceError::BadPath {
            path: raw.to_owned(),
            reason,
        };
        if raw.chars().any(char::is_control) {
            return Err(bad("it contains control characters"));
        }
        if raw.ends_with('/') {
            return Err(bad(
                "it names a directory; include the file name, e.g. /ro-crate-metadata.json",
            ));
        }
        let mut components = Vec::new();
        for part in raw.trim_start_matches('/').split('/') {
            match part {
                "." => {}
                ".." => {
                    return Err(bad(
                        "'..' is not allowed; give the path from the repository root",
                    ));
                }
                "" => return Err(bad("it contains an empty path component ('//')")),
                p => components.push(p.to_owned()),
            }
        }
        if components.is_empty() {
            return Err(bad("it names no file"));
        }
        Ok(MetadataPath { components })
    }

    pub fn components(&self) -> &[String] {
        &self.components
    }
}

impl fmt::Display for MetadataPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.components.join("/"))
    }
}

/// Checks a branch name the way `git check-ref-format --branch` would reject the obvious abuses
/// (option injection, ref-path games), before it becomes part of a refspec.
pub fn check_branch(branch: &str) -> Result<(), SourceError> {
    let bad = |reason| SourceError::BadBranch {
        branch: branch.to_owned(),
        reason,
    };
    if branch.is_empty() {
        return Err(bad("it is empty"));
    }
    if branch == "HEAD" || branch == "@" {
        return Err(bad("'HEAD' and '@' name the current commit, not a branch"));
    }
    if branch.len() > 255 {
        return Err(bad("it is longer than 255 bytes"));
    }
    if branch.starts_with('-') || branch.starts_with('/') || branch.ends_with('/') {
        return Err(bad("it may not start with '-' or '/' or end with '/'"));
    }
    if branch.contains("..") || branch.contains("@{") || branch.contains("//") {
        return Err(bad("it may not contain '..', '@{' or '//'"));
    }
    if branch.to_ascii_lowercase().ends_with(".lock") || branch.ends_with('.') {
        return Err(bad("it may not end with '.lock' or '.'"));
    }
    if branch
        .chars()
        .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c))
    {
        return Err(bad(
            "it may not contain spaces, control characters or any of ~ ^ : ? * [ \\",
        ));
    }
    if branch.split('/').any(|c| c.starts_with('.')) {
        return Err(bad("no path component may start with '.'"));
    }
    Ok(())
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
                matches!(err, SourceError::InsecureTransport { .. }),
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

    #[test]
    fn metadata_paths_are_relative_to_the_repository_root() {
        let p = MetadataPath::parse("/bagit/data/ro-crate-metadata.json").expect("cr8tor path");
        assert_eq!(p.components(), ["bagit", "data", "ro-crate-metadata.json"]);
        assert_eq!(p.to_string(), "/bagit/data/ro-crate-metadata.json");
        assert_eq!(
            MetadataPath::parse("./ro-crate-metadata.json")
                .expect("dot")
                .to_string(),
            "/ro-crate-metadata.json"
        );
    }

    #[test]
    fn metadata_paths_that_escape_or_name_no_file_are_refused() {
        for bad in [
            "/../etc/passwd",
            "a/../../b",
            "/",
            "",
            "dir/",
            "a//b",
            "a\0b",
        ] {
            assert!(
                matches!(MetadataPath::parse(bad), Err(SourceError::BadPath { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn branch_names_that_could_inject_options_or_refs_are_refused() {
        check_branch("main").expect("main");
        check_branch("release/2024-10").expect("slash");
        for bad in [
            "",
            "-x",
            "a..b",
            "a b",
            "refs/../x",
            "x.lock",
            "a:b",
            "@{-1}",
            &"b".repeat(256),
            ".hidden",
            "a/.b",
            "a\nb",
            "HEAD",
            "@",
        ] {
            assert!(check_branch(bad).is_err(), "{bad:?} accepted");
        }
    }
}
