//! What to fetch: the repository URL with its transport policy, and the metadata path inside it.
//!
//! First step of the flow. Everything here is pure and decided before any network I/O, so an
//! unusable request fails fast with a message that says which field to change. The display form
//! of a URL never carries credentials; it is the only form that reaches logs, errors and output.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;
use url::Url;

/// A request we refuse before touching the network.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("failed to parse the repository URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "refused the repository URL {url}: it embeds a password; remove it from the URL and put the token in the crate's Secret (spec.repo.secretName)"
    )]
    PasswordInUrl { url: String },
    #[error(
        "refused the unencrypted transport {scheme}:// for {url}: use an https:// or ssh:// URL (--allow-insecure-transport exists for local testing only)"
    )]
    InsecureTransport { scheme: String, url: String },
    #[error("refused the local repository {url}: only preview reads repositories on this machine")]
    LocalNotAllowed { url: String },
    #[error("refused the unsupported URL scheme {scheme}:// in {url}: use https:// or ssh://")]
    UnsupportedScheme { scheme: String, url: String },
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
#[derive(Clone, PartialEq, Eq)]
pub struct Source {
    /// What libgit2 connects to (may carry a username, never a password).
    url: String,
    /// The same URL without any user information, safe to print.
    display: String,
    transport: Transport,
    /// Username taken from the URL, if any (ssh `git@`, or an https `user@`).
    url_username: Option<String>,
    host: Option<String>,
    port: Option<u16>,
}

#[allow(clippy::missing_fields_in_debug)] // by design: only the safe fields
impl fmt::Debug for Source {
    // Debug must be as safe as Display: the raw URL may carry a username that is really a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("url", &self.display)
            .field("transport", &self.transport)
            .finish()
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl Source {
    /// Parses a repository location and applies the transport policy.
    pub fn parse(raw: &str, policy: Policy) -> Result<Source, SourceError> {
        let raw = raw.trim();
        if raw.contains("://") {
            Self::parse_url(raw, policy)
        } else if let Some(scp) = parse_scp_like(raw) {
            Ok(scp)
        } else if raw.is_empty() {
            Err(SourceError::BadUrl {
                url: String::new(),
                reason: "it is empty".into(),
            })
        } else if policy.allow_local {
            let path =
                std::path::absolute(PathBuf::from(raw)).map_err(|e| SourceError::BadUrl {
                    url: raw.into(),
                    reason: e.to_string(),
                })?;
            let shown = path.display().to_string();
            Ok(Source {
                url: shown.clone(),
                display: shown,
                transport: Transport::Local,
                url_username: None,
                host: None,
                port: None,
            })
        } else {
            Err(SourceError::LocalNotAllowed { url: raw.into() })
        }
    }

    fn parse_url(raw: &str, policy: Policy) -> Result<Source, SourceError> {
        let parsed = Url::parse(raw).map_err(|e| SourceError::BadUrl {
            url: redact_unparsed(raw),
            reason: e.to_string(),
        })?;
        let mut display = parsed.clone();
        // Infallible for URLs with a host; file:// has no user info to clear.
        let _ = display.set_username("");
        let _ = display.set_password(None);
        let display = display.to_string();
        if parsed.password().is_some() {
            return Err(SourceError::PasswordInUrl { url: display });
        }
        let scheme = parsed.scheme().to_owned();
        let transport = match scheme.as_str() {
            "https" => Transport::Https,
            "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
            "http" | "git" if policy.allow_insecure => Transport::Insecure,
            "http" | "git" => {
                return Err(SourceError::InsecureTransport {
                    scheme,
                    url: display,
                });
            }
            "file" if policy.allow_local => Transport::Local,
            "file" => return Err(SourceError::LocalNotAllowed { url: display }),
            _ => {
                return Err(SourceError::UnsupportedScheme {
                    scheme,
                    url: display,
                });
            }
        };
        let url_username = Some(parsed.username())
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        // libgit2 only understands plain ssh://.
        let url = if transport == Transport::Ssh && scheme != "ssh" {
            format!("ssh{}", &raw[scheme.len()..])
        } else {
            raw.to_owned()
        };
        let url = if transport == Transport::Https && url_username.is_some() {
            // The username is passed to the credential callback instead; keeping it in the URL
            // would let libgit2 echo it in errors.
            display.clone()
        } else {
            url
        };
        Ok(Source {
            url,
            display,
            transport,
            url_username,
            host: parsed.host_str().map(str::to_owned),
            port: parsed.port(),
        })
    }

    /// The URL handed to libgit2. Never log it: use `Display`.
    pub fn connect_url(&self) -> &str {
        &self.url
    }
    pub fn transport(&self) -> Transport {
        self.transport
    }
    pub fn url_username(&self) -> Option<&str> {
        self.url_username.as_deref()
    }
    /// Host name for known_hosts matching (ssh) or messages.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }
    /// Explicit port, if the URL names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
    /// Replaces every form of the URL that may carry credentials in a foreign message
    /// (libgit2 errors echo URLs) with the display form.
    pub fn scrub(&self, message: &str) -> String {
        message.replace(&self.url, &self.display)
    }
}

/// `user@host:path` — git's scp-like ssh syntax. A colon after a slash is a path, not this.
fn parse_scp_like(raw: &str) -> Option<Source> {
    let colon = raw.find(':')?;
    let (authority, path) = (&raw[..colon], &raw[colon + 1..]);
    if authority.contains('/') || authority.is_empty() || path.is_empty() {
        return None;
    }
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_owned()), h),
        None => (None, authority),
    };
    if host.is_empty() {
        return None;
    }
    Some(Source {
        url: raw.to_owned(),
        display: raw.to_owned(),
        transport: Transport::Ssh,
        url_username: user,
        host: Some(host.to_owned()),
        port: None,
    })
}

/// Best-effort redaction for a URL we could not parse: drop everything between `://` and `@`.
fn redact_unparsed(raw: &str) -> String {
    match (raw.find("://"), raw.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &raw[..s + 3], &raw[at + 1..]),
        _ => raw.to_owned(),
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
        if raw.contains('\0') {
            return Err(bad("it contains a NUL byte"));
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
        let s = Source::parse("https://github.com/lsc-sde/crate.git", STRICT).expect("https");
        assert_eq!(s.transport(), Transport::Https);
        assert_eq!(s.host(), Some("github.com"));
        let s = Source::parse("ssh://git@example.org:2222/org/crate.git", STRICT).expect("ssh");
        assert_eq!(
            (s.transport(), s.url_username(), s.port()),
            (Transport::Ssh, Some("git"), Some(2222))
        );
        let s = Source::parse("git@github.com:org/crate.git", STRICT).expect("scp-like");
        assert_eq!(
            (s.transport(), s.host()),
            (Transport::Ssh, Some("github.com"))
        );
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
    fn a_password_in_the_url_is_refused_without_repeating_it() {
        let err = Source::parse("https://pat:s3cr3t-token@example.org/r.git", STRICT)
            .expect_err("password");
        let msg = err.to_string();
        assert!(
            !msg.contains("s3cr3t-token") && !msg.contains("pat@"),
            "{msg}"
        );
        assert!(msg.contains("https://example.org/r.git"), "{msg}");
    }

    #[test]
    fn an_https_username_never_reaches_the_display_or_the_connect_url() {
        let s =
            Source::parse("https://ghp_tokenlike@example.org/r.git", STRICT).expect("user only");
        assert_eq!(s.url_username(), Some("ghp_tokenlike"));
        assert_eq!(s.to_string(), "https://example.org/r.git");
        assert_eq!(s.connect_url(), "https://example.org/r.git");
        assert!(!format!("{s:?}").contains("ghp_tokenlike"));
    }

    #[test]
    fn an_unparseable_url_is_reported_without_its_user_info() {
        let err = Source::parse("https://user:pw@exa mple.org/r.git", STRICT).expect_err("bad");
        assert!(!err.to_string().contains("pw@"), "{err}");
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let err = Source::parse("ftp://example.org/r.git", STRICT).expect_err("ftp");
        assert_eq!(
            err.to_string(),
            "refused the unsupported URL scheme ftp:// in ftp://example.org/r.git: use https:// or ssh://"
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
        ] {
            assert!(check_branch(bad).is_err(), "{bad:?} accepted");
        }
    }
}
