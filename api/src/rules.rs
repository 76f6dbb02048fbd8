//! What a valid `AnalyticsCrate` spec is: one set of rules for the CRD's admission checks, the
//! manager (which reports what admission let through, e.g. objects stored before a rule
//! existed) and the loader (which parses its arguments with the same types).
//!
//! Each rule is a parser into a type that can only hold a valid value ([`Branch`],
//! [`MetadataPath`], [`Interval`], and [`crate::repo_url::RepoUrl`]), so code that has one
//! never re-checks it. The CRD's CEL rules in [`crate::analytics_crate`] restate these checks for
//! the API server; a table-driven test on the real control plane feeds both the same values and
//! expects the same verdicts (`tests/e2e/admission.rs`).

use std::fmt;
use std::time::Duration;

use thiserror::Error;

use crate::AnalyticsCrateSpec;
use crate::repo_url::{RepoUrl, RepoUrlError};

/// Longest branch name accepted.
pub const MAX_BRANCH_LEN: usize = 255;
/// Longest metadata path accepted.
pub const MAX_PATH_LEN: usize = 1024;
/// Shortest `spec.interval`: a crate checked more often than this would keep a loader Job
/// running most of the time.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Longest `spec.interval` (a year): anything longer is a typo.
pub const MAX_INTERVAL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A spec value that breaks a rule: which field, and why, in words that say what to change. The
/// value is shown as [`shown`] makes it: at most 64 characters, control characters escaped.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("spec.repo.url: {0}")]
    Url(#[from] RepoUrlError),
    #[error("spec.repo.branch \"{branch}\" is not a valid branch name: {reason}")]
    Branch {
        branch: String,
        reason: &'static str,
    },
    #[error("spec.path \"{path}\" is not a valid metadata path: {reason}")]
    Path { path: String, reason: &'static str },
    #[error("spec.interval \"{interval}\" {reason}")]
    Interval {
        interval: String,
        reason: &'static str,
    },
    #[error("spec.repo.secretName \"{name}\" is not a valid Secret name: {reason}")]
    SecretName { name: String, reason: &'static str },
    #[error("spec.repo.secretKey \"{key}\" is not a valid Secret key: {reason}")]
    SecretKey { key: String, reason: &'static str },
    #[error("spec.{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
}

/// Longest `spec.displayName`.
pub const MAX_DISPLAY_NAME_LEN: usize = 1024;
/// Longest `spec.description`.
pub const MAX_DESCRIPTION_LEN: usize = 16384;

/// Text from a spec as it may be shown: at most 64 characters (then `…`), control characters
/// escaped.
pub(crate) fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(64)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_debug().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if text.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

/// A branch name git accepts, as `git check-ref-format --branch` decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch(String);

impl Branch {
    pub fn parse(branch: &str) -> Result<Branch, SpecError> {
        let bad = |reason| SpecError::Branch {
            branch: shown(branch),
            reason,
        };
        if branch.is_empty() {
            return Err(bad("it is empty"));
        }
        if branch.chars().count() > MAX_BRANCH_LEN {
            return Err(bad("it is longer than 255 characters"));
        }
        if branch == "HEAD" || branch == "@" {
            return Err(bad("'HEAD' and '@' name the current commit, not a branch"));
        }
        if branch.starts_with('-') {
            return Err(bad("it may not start with '-'"));
        }
        if branch
            .chars()
            .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c))
        {
            return Err(bad(
                "it may not contain spaces, control characters or any of ~ ^ : ? * [ \\",
            ));
        }
        if branch.contains("..") || branch.contains("@{") {
            return Err(bad("it may not contain '..' or '@{'"));
        }
        if branch.ends_with('.') {
            return Err(bad("it may not end with '.'"));
        }
        for component in branch.split('/') {
            if component.is_empty() {
                return Err(bad("it may not start or end with '/' or contain '//'"));
            }
            if component.starts_with('.') {
                return Err(bad("no part between slashes may start with '.'"));
            }
            // Case-sensitive on purpose: git's own rule (`X.LOCK` is a valid branch).
            #[allow(clippy::case_sensitive_file_extension_comparisons)]
            if component.ends_with(".lock") {
                return Err(bad("no part between slashes may end with '.lock'"));
            }
        }
        Ok(Branch(branch.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The metadata file's location inside the repository, as tree path components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataPath {
    components: Vec<String>,
}

impl MetadataPath {
    /// Parses `spec.path`: a leading `/` means the repository root; `.` components are ignored;
    /// `..`, empty names, control characters and a trailing `/` are refused (the file name is
    /// part of the path).
    pub fn parse(raw: &str) -> Result<MetadataPath, SpecError> {
        let bad = |reason| SpecError::Path {
            path: shown(raw),
            reason,
        };
        if raw.chars().count() > MAX_PATH_LEN {
            return Err(bad("it is longer than 1024 characters"));
        }
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

/// `spec.interval`: whole numbers of hours, minutes and seconds (`1h`, `90m`, `1h30m`), between
/// [`MIN_INTERVAL`] and [`MAX_INTERVAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(Duration);

impl Interval {
    pub fn parse(text: &str) -> Result<Interval, SpecError> {
        let bad = |reason| SpecError::Interval {
            interval: shown(text),
            reason,
        };
        let format = "is not a duration such as 30m, 1h or 1h30m (whole numbers of h, m and s)";
        if text.is_empty() || text.len() > 32 {
            return Err(bad(format));
        }
        let mut total: u64 = 0;
        let mut number: Option<u64> = None;
        for c in text.chars() {
            if let Some(digit) = c.to_digit(10) {
                number = Some(
                    number
                        .unwrap_or(0)
                        .saturating_mul(10)
                        .saturating_add(u64::from(digit)),
                );
                continue;
            }
            let unit = match c {
                'h' => 3600,
                'm' => 60,
                's' => 1,
                _ => return Err(bad(format)),
            };
            let Some(n) = number.take() else {
                return Err(bad(format));
            };
            total = total.saturating_add(n.saturating_mul(unit));
        }
        if number.is_some() {
            return Err(bad(format));
        }
        let interval = Duration::from_secs(total);
        if interval < MIN_INTERVAL {
            return Err(bad("is shorter than the minimum of 1m"));
        }
        if interval > MAX_INTERVAL {
            return Err(bad("is longer than the maximum of 8760h (a year)"));
        }
        Ok(Interval(interval))
    }

    pub fn duration(self) -> Duration {
        self.0
    }
}

/// A Secret name: a DNS-1123 subdomain.
pub fn check_secret_name(name: &str) -> Result<(), SpecError> {
    let bad = |reason| SpecError::SecretName {
        name: shown(name),
        reason,
    };
    if name.is_empty() || name.len() > 253 {
        return Err(bad("it must be 1 to 253 characters"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(bad(
            "use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

/// A key of a Secret's `data`.
pub fn check_secret_key(key: &str) -> Result<(), SpecError> {
    let bad = |reason| SpecError::SecretKey {
        key: shown(key),
        reason,
    };
    if key.is_empty() || key.len() > 253 {
        return Err(bad("it must be 1 to 253 characters"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad("use letters, digits, '-', '_' and '.'"));
    }
    if key == "." || key.starts_with("..") {
        return Err(bad("it may not be '.' or start with '..'"));
    }
    Ok(())
}

/// A spec that passed every rule, in the types the rules produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSpec {
    pub url: RepoUrl,
    pub branch: Branch,
    pub path: MetadataPath,
    pub interval: Option<Interval>,
}

impl AnalyticsCrateSpec {
    /// Checks every rule of the spec; the first broken one is the error.
    pub fn validate(&self) -> Result<ValidSpec, SpecError> {
        let url = RepoUrl::parse(&self.repo.url)?;
        let branch = Branch::parse(&self.repo.branch)?;
        let path = MetadataPath::parse(&self.path)?;
        let interval = self.interval.as_deref().map(Interval::parse).transpose()?;
        if let Some(name) = &self.repo.secret_name {
            check_secret_name(name)?;
        }
        check_secret_key(&self.repo.secret_key)?;
        for (field, text, max) in [
            ("displayName", &self.display_name, MAX_DISPLAY_NAME_LEN),
            ("description", &self.description, MAX_DESCRIPTION_LEN),
        ] {
            if text.as_ref().is_some_and(|t| t.chars().count() > max) {
                return Err(SpecError::TooLong { field, max });
            }
        }
        Ok(ValidSpec {
            url,
            branch,
            path,
            interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_follow_git_check_ref_format() {
        for good in [
            "main",
            "release/2024-10",
            "feature/a.b",
            "v1.0",
            "x@y",
            "ü-ok",
            "a.lockx",
        ] {
            Branch::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "-x",
            "a..b",
            "a b",
            "x.lock",
            "a/x.lock/b",
            "a:b",
            "@{-1}",
            ".hidden",
            "a/.b",
            "a\nb",
            "HEAD",
            "@",
            "v1.",
            "a/",
            "/a",
            "a//b",
            "a~1",
            "a^",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "a\u{7f}",
        ] {
            assert!(Branch::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Branch::parse(&"b".repeat(256)).is_err());
        // git's own rule is case-sensitive: only a lower-case `.lock` suffix is refused.
        Branch::parse("X.LOCK").expect("git accepts X.LOCK");
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
        assert!(MetadataPath::parse("/.../x").is_ok(), "'...' is a name");
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
            "/./.",
            "a\u{1b}b",
        ] {
            assert!(MetadataPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(MetadataPath::parse(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn intervals_are_whole_hours_minutes_and_seconds_within_bounds() {
        for (text, secs) in [
            ("1m", 60),
            ("90s", 90),
            ("1h30m", 5400),
            ("8760h", 31_536_000),
        ] {
            assert_eq!(
                Interval::parse(text).map(|i| i.duration().as_secs()),
                Ok(secs),
                "{text}"
            );
        }
        for bad in [
            "0s",
            "59s",
            "8761h",
            "1d",
            "",
            "h",
            "1",
            "1.5h",
            "-1h",
            "99999999999999999999h",
        ] {
            assert!(Interval::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_refused_value_is_shown_short_and_escaped() {
        let err =
            MetadataPath::parse(&format!("/a\u{1b}[2J{}", "x".repeat(2000))).expect_err("long");
        let message = err.to_string();
        assert!(message.len() < 200, "{message}");
        assert!(
            message.contains("a\\u{1b}[2J") && message.contains('…'),
            "{message}"
        );
        assert!(!message.contains('\u{1b}'));
    }

    #[test]
    fn secret_names_are_dns_subdomains_and_keys_are_data_keys() {
        check_secret_name("amr-prescribing-git").expect("valid");
        check_secret_name("a.b-c").expect("valid");
        for bad in [
            "",
            "My_Secret",
            "-a",
            "a-",
            "a..b",
            &"a".repeat(254),
            "UPPER",
        ] {
            assert!(check_secret_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["TOKEN", "token.txt", "ssh-key", "a_b"] {
            check_secret_key(good).expect(good);
        }
        for bad in ["", ".", "..", "..x", "my token", "a/b"] {
            assert!(check_secret_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
