//! `spec.repo.url`: one parser for the manager and the loader.
//!
//! Both binaries must agree on what a repository URL is, which transport it uses and how it is
//! shown, or a URL the manager accepted could fail inside the loader Pod (or the other way round).
//! The rules: `https://`, `ssh://` (also `git+ssh://`, `ssh+git://`), git's scp-like
//! `[user@]host:path`, and the unencrypted `http://` and `git://`, which only tests and local
//! previews may use. A password is refused in every form, including the scp-like
//! `user:password@host:path` that git itself would misread as a host named `user`. The form that
//! reaches logs, errors, status and annotations ([`RepoUrl::display`]) never carries user
//! information.

use std::fmt;

use percent_encoding::percent_decode_str;
use thiserror::Error;
use url::Url;

/// Longest accepted URL (the CRD enforces the same bound).
pub const MAX_URL_LEN: usize = 2048;

/// How a repository is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Https,
    Ssh,
    /// `http://`: no transport security.
    Http,
    /// `git://`: no transport security and no authentication.
    Git,
}

impl Scheme {
    /// Whether the transport is unencrypted (`http://`, `git://`).
    pub fn is_insecure(self) -> bool {
        matches!(self, Scheme::Http | Scheme::Git)
    }

    /// The port a URL without one connects to.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Https => 443,
            Scheme::Ssh => 22,
            Scheme::Http => 80,
            Scheme::Git => 9418,
        }
    }

    /// The scheme as written in a URL (`https`, `ssh`, `http`, `git`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Ssh => "ssh",
            Scheme::Http => "http",
            Scheme::Git => "git",
        }
    }
}

/// Why a URL is refused. Messages never repeat user information.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RepoUrlError {
    #[error("failed to parse the repository URL {url}: {reason}")]
    Malformed { url: String, reason: String },
    #[error(
        "refused the repository URL {url}: it embeds a password; remove it from the URL and put the token in the crate's Secret (spec.repo.secretName)"
    )]
    Password { url: String },
    #[error("refused the unsupported URL scheme {scheme}:// in {url}: use https:// or ssh://")]
    UnsupportedScheme { scheme: String, url: String },
    #[error(
        "refused the unencrypted transport {scheme}:// for {url}: use an https:// or ssh:// URL (--allow-insecure-transport exists for local testing only)"
    )]
    InsecureTransport { scheme: String, url: String },
}

/// A parsed repository URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoUrl {
    scheme: Scheme,
    /// User name from the URL (ssh `git@`, or an https `user@`); never a password.
    user: Option<String>,
    host: String,
    port: Option<u16>,
    /// The path as the server expects it: `/org/repo.git`, or for scp-like URLs the text after
    /// the colon (relative to the ssh user's home, as git sends it).
    path: String,
    /// Written `host:path` rather than `ssh://host/path`.
    scp_like: bool,
}

#[allow(clippy::missing_fields_in_debug)] // by design: the user name may really be a token
impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RepoUrl").field(&self.display()).finish()
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl RepoUrl {
    /// Parses a repository URL. Local paths and `file://` are not repository URLs here (the
    /// loader's preview handles them itself).
    pub fn parse(raw: &str) -> Result<RepoUrl, RepoUrlError> {
        let malformed = |reason: &str| RepoUrlError::Malformed {
            url: redact(raw),
            reason: reason.to_owned(),
        };
        if raw.is_empty() {
            return Err(malformed("it is empty"));
        }
        if raw.chars().count() > MAX_URL_LEN {
            return Err(malformed("it is longer than 2048 characters"));
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(malformed("it contains whitespace or control characters"));
        }
        match raw.split_once("://") {
            Some((scheme, _)) if !scheme.contains(['/', '@', ':']) => Self::parse_url(raw),
            _ => Self::parse_scp_like(raw).ok_or_else(|| {
                malformed("it is neither scheme://host/path nor the scp-like user@host:path")
            })?,
        }
    }

    /// Parses a repository URL and applies the transport policy the manager and the loader
    /// share: `http://` and `git://` carry no transport security, so they are refused unless
    /// `allow_insecure` (both binaries' `--allow-insecure-transport`, for local testing).
    pub fn parse_with_policy(raw: &str, allow_insecure: bool) -> Result<RepoUrl, RepoUrlError> {
        let url = RepoUrl::parse(raw)?;
        if url.scheme.is_insecure() && !allow_insecure {
            return Err(RepoUrlError::InsecureTransport {
                scheme: url.scheme.as_str().to_owned(),
                url: url.display(),
            });
        }
        Ok(url)
    }

    fn parse_url(raw: &str) -> Result<RepoUrl, RepoUrlError> {
        // Checked as written: the URL parser would lower-case an `HTTPS://` that the CRD refuses.
        let written = raw.split_once("://").map_or("", |(scheme, _)| scheme);
        if !["https", "ssh", "git+ssh", "ssh+git", "http", "git"].contains(&written) {
            return Err(RepoUrlError::UnsupportedScheme {
                scheme: crate::rules::shown(written),
                url: redact(raw),
            });
        }
        let parsed = Url::parse(raw).map_err(|e| RepoUrlError::Malformed {
            url: redact(raw),
            reason: e.to_string(),
        })?;
        let mut shown = parsed.clone();
        // Cannot fail for URLs with a host; the others are refused below.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        if parsed.password().is_some() {
            return Err(RepoUrlError::Password {
                url: shown.to_string(),
            });
        }
        let scheme = match parsed.scheme() {
            "https" => Scheme::Https,
            "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
            "http" => Scheme::Http,
            "git" => Scheme::Git,
            other => {
                return Err(RepoUrlError::UnsupportedScheme {
                    scheme: other.to_owned(),
                    url: shown.to_string(),
                });
            }
        };
        let host = match parsed.host() {
            Some(url::Host::Domain(h)) if !h.is_empty() => h.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => {
                return Err(RepoUrlError::Malformed {
                    url: shown.to_string(),
                    reason: "it names no host".to_owned(),
                });
            }
        };
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(RepoUrlError::Malformed {
                url: shown.to_string(),
                reason: "a repository URL has no query (?) or fragment (#)".to_owned(),
            });
        }
        let user = Some(parsed.username())
            .filter(|u| !u.is_empty())
            .map(|u| percent_decode_str(u).decode_utf8_lossy().into_owned());
        Ok(RepoUrl {
            scheme,
            user,
            host,
            port: parsed.port(),
            path: parsed.path().to_owned(),
            scp_like: false,
        })
    }

    /// `[user@]host:path`. `user:password@host:path` is refused rather than read as git would
    /// (host `user`, path `password@host:path`), which would send the password to a host named
    /// after the user and print it as part of the "host".
    fn parse_scp_like(raw: &str) -> Option<Result<RepoUrl, RepoUrlError>> {
        let first_slash = raw.find('/').unwrap_or(raw.len());
        let (userinfo, rest) = match raw[..first_slash].rfind('@') {
            Some(at) => (Some(&raw[..at]), &raw[at + 1..]),
            None => (None, raw),
        };
        let (host, path) = rest.split_once(':')?;
        if host.is_empty() || path.is_empty() || host.contains('/') {
            return None;
        }
        if let Some(userinfo) = userinfo {
            if userinfo.contains(':') {
                return Some(Err(RepoUrlError::Password {
                    url: format!("{host}:{path}"),
                }));
            }
            if userinfo.is_empty() {
                return None;
            }
        }
        let valid_host = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
            || (host.starts_with('[') && host.ends_with(']'));
        if !valid_host {
            return None;
        }
        Some(Ok(RepoUrl {
            scheme: Scheme::Ssh,
            user: userinfo.map(str::to_owned),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: None,
            path: path.to_owned(),
            scp_like: true,
        }))
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
    /// The user name the URL carries, if any. Never shown.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    /// The host name or address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }
    /// The port the URL names, if it names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
    /// The port connected to.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }
    /// The repository path as written (percent-encoded as in the URL; for scp-like URLs the text
    /// after the colon).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Written `[user@]host:path`.
    pub fn is_scp_like(&self) -> bool {
        self.scp_like
    }

    /// The URL without user information: the only form that may be logged or stored.
    pub fn display(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.scp_like {
            return format!("{host}:{}", self.path);
        }
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{}://{host}{port}{}", self.scheme.as_str(), self.path)
    }

    /// The URL of the repository for HTTP(S), without user information.
    pub fn http_base(&self) -> Option<String> {
        matches!(self.scheme, Scheme::Https | Scheme::Http).then(|| self.display())
    }
}

/// Best-effort redaction for a URL we could not parse: drop everything between the scheme and
/// the last `@` of the authority.
fn redact(raw: &str) -> String {
    let (prefix, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let shown = match rest[..authority_end].rfind('@') {
        Some(at) => format!("{prefix}{}", &rest[at + 1..]),
        None => raw.to_owned(),
    };
    shown.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> RepoUrl {
        RepoUrl::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn https_ssh_and_scp_like_urls_are_understood() {
        let u = parse("https://github.com/lsc-sde/crate.git");
        assert_eq!(
            (u.scheme(), u.host(), u.effective_port(), u.path()),
            (Scheme::Https, "github.com", 443, "/lsc-sde/crate.git")
        );
        let u = parse("ssh://git@example.org:2222/org/crate.git");
        assert_eq!(
            (u.scheme(), u.user(), u.port(), u.path()),
            (Scheme::Ssh, Some("git"), Some(2222), "/org/crate.git")
        );
        let u = parse("git@github.com:org/crate.git");
        assert_eq!(
            (u.scheme(), u.user(), u.host(), u.path()),
            (Scheme::Ssh, Some("git"), "github.com", "org/crate.git")
        );
        assert_eq!(parse("git+ssh://h/x").scheme(), Scheme::Ssh);
        assert!(parse("git://h/x").scheme().is_insecure());
        assert!(parse("http://h/x").scheme().is_insecure());
    }

    #[test]
    fn a_password_is_refused_in_every_form_without_being_repeated() {
        for raw in [
            "https://pat:SECRET@example.org/r.git",
            "ssh://git:SECRET@example.org/r.git",
            "http://u:SECRET@example.org/r.git",
            "pat:SECRET@example.org:org/r.git",
        ] {
            let err = RepoUrl::parse(raw).expect_err(raw);
            assert!(matches!(err, RepoUrlError::Password { .. }), "{raw}: {err}");
            let msg = err.to_string();
            assert!(!msg.contains("SECRET") && !msg.contains("pat"), "{msg}");
            assert!(msg.contains("example.org"), "{msg}");
        }
    }

    #[test]
    fn shown_urls_never_carry_user_information() {
        assert_eq!(
            parse("https://ghp_tokenlike@example.org/r.git").display(),
            "https://example.org/r.git"
        );
        assert_eq!(
            parse("git@example.org:org/r.git").display(),
            "example.org:org/r.git"
        );
        assert_eq!(
            parse("ssh://git@[::1]:2222/r.git").display(),
            "ssh://[::1]:2222/r.git"
        );
        let debug = format!("{:?}", parse("https://ghp_tokenlike@example.org/r.git"));
        assert!(!debug.contains("ghp_tokenlike"), "{debug}");
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason_and_without_user_information() {
        for raw in [
            "",
            "https://",
            "https://user:pw@exa mple.org/r.git",
            "https://h/r.git\n",
            "https://h/r.git?x=1",
            "just-a-word",
            "/local/path",
            ":path",
            "@host:path",
        ] {
            let err = RepoUrl::parse(raw).expect_err(raw);
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
        let err = RepoUrl::parse("ftp://example.org/r.git").expect_err("ftp");
        assert_eq!(
            err.to_string(),
            "refused the unsupported URL scheme ftp:// in ftp://example.org/r.git: use https:// or ssh://"
        );
    }

    #[test]
    fn an_at_sign_after_the_first_slash_is_part_of_the_path() {
        let u = parse("example.org:org/file@v1");
        assert_eq!(
            (u.user(), u.host(), u.path()),
            (None, "example.org", "org/file@v1")
        );
    }
}
