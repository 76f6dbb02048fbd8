//! SSH host key verification against an OpenSSH `known_hosts` file.
//!
//! Used by the fetch's certificate callback: an ssh fetch proceeds only when the server's key
//! is listed for its host (plain, `[host]:port`, wildcard or hashed `|1|salt|hash` entries).
//! `@revoked` entries reject; `@cert-authority` entries are not supported and are ignored.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// One usable `known_hosts` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    revoked: bool,
    hosts: HostPatterns,
    key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPatterns {
    Plain(Vec<String>),
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// A parsed `known_hosts` file.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

/// The verdict on a presented host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    Revoked,
    /// The host is listed, but with other keys: possibly a man in the middle.
    Mismatch,
    UnknownHost,
}

impl KnownHosts {
    /// Parses the file, skipping comments, blank lines, `@cert-authority` and malformed lines.
    pub fn parse(text: &str) -> KnownHosts {
        let entries = text.lines().filter_map(parse_line).collect();
        KnownHosts { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks the presented key for `host` on `port`. `is_presented` compares a listed key (SSH
    /// wire-format blob) with the server's, so callers can compare raw keys or fingerprints.
    pub fn verify(
        &self,
        host: &str,
        port: Option<u16>,
        is_presented: impl Fn(&[u8]) -> bool,
    ) -> Verdict {
        let name = match port {
            Some(p) if p != 22 => format!("[{host}]:{p}"),
            _ => host.to_owned(),
        };
        let matching: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.hosts.matches(&name))
            .collect();
        if matching.iter().any(|e| e.revoked && is_presented(&e.key)) {
            Verdict::Revoked
        } else if matching.iter().any(|e| !e.revoked && is_presented(&e.key)) {
            Verdict::Trusted
        } else if matching.iter().any(|e| !e.revoked) {
            Verdict::Mismatch
        } else {
            Verdict::UnknownHost
        }
    }
}

fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let mut revoked = false;
    if first.starts_with('@') {
        match first {
            "@revoked" => revoked = true,
            _ => return None,
        }
        first = fields.next()?;
    }
    let _key_type = fields.next()?;
    let key = STANDARD.decode(fields.next()?).ok()?;
    let hosts = if let Some(hashed) = first.strip_prefix("|1|") {
        let (salt, hash) = hashed.split_once('|')?;
        HostPatterns::Hashed {
            salt: STANDARD.decode(salt).ok()?,
            hash: STANDARD.decode(hash).ok()?,
        }
    } else {
        HostPatterns::Plain(first.split(',').map(str::to_owned).collect())
    };
    Some(Entry {
        revoked,
        hosts,
        key,
    })
}

impl HostPatterns {
    fn matches(&self, name: &str) -> bool {
        match self {
            HostPatterns::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            HostPatterns::Plain(patterns) => {
                let mut matched = false;
                for pattern in patterns {
                    if let Some(negated) = pattern.strip_prefix('!') {
                        if wildcard_match(&negated.to_ascii_lowercase(), &name.to_ascii_lowercase())
                        {
                            return false;
                        }
                    } else if wildcard_match(
                        &pattern.to_ascii_lowercase(),
                        &name.to_ascii_lowercase(),
                    ) {
                        matched = true;
                    }
                }
                matched
            }
        }
    }
}

/// OpenSSH host pattern matching: `*` any run, `?` one character. Iterative, so hostile
/// patterns cannot blow the stack or take exponential time.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if let Some((bp, bt)) = backtrack {
            pi = bp + 1;
            ti = bt + 1;
            backtrack = Some((bp, bt + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIA6XAzs8hVbT+cn4EF1b0E1hoEPbKj3J5HM+4IXmVPcq";

    fn key(b64: &str) -> impl Fn(&[u8]) -> bool {
        let presented = STANDARD.decode(b64).expect("test key");
        move |listed| listed == presented
    }

    #[test]
    fn a_listed_key_for_the_host_is_trusted() {
        let kh = KnownHosts::parse(&format!(
            "# comment\ngithub.com,140.82.121.4 ssh-ed25519 {KEY_A}\n"
        ));
        assert_eq!(kh.verify("github.com", None, key(KEY_A)), Verdict::Trusted);
        assert_eq!(
            kh.verify("GitHub.com", Some(22), key(KEY_A)),
            Verdict::Trusted
        );
    }

    #[test]
    fn another_key_for_a_listed_host_is_a_mismatch() {
        let kh = KnownHosts::parse(&format!("github.com ssh-ed25519 {KEY_A}"));
        assert_eq!(kh.verify("github.com", None, key(KEY_B)), Verdict::Mismatch);
        assert_eq!(
            kh.verify("gitlab.com", None, key(KEY_A)),
            Verdict::UnknownHost
        );
    }

    #[test]
    fn non_default_ports_use_the_bracketed_form() {
        let kh = KnownHosts::parse(&format!("[127.0.0.1]:2222 ssh-ed25519 {KEY_A}"));
        assert_eq!(
            kh.verify("127.0.0.1", Some(2222), key(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            kh.verify("127.0.0.1", None, key(KEY_A)),
            Verdict::UnknownHost
        );
    }

    #[test]
    fn hashed_entries_match_their_host_only() {
        // HMAC-SHA1 with the salt over "[127.0.0.1]:2222", as `ssh-keygen -H` writes it.
        let salt = b"0123456789abcdefghij";
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).expect("hmac");
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let line = format!(
            "|1|{}|{} ssh-ed25519 {KEY_A}",
            STANDARD.encode(salt),
            STANDARD.encode(hash)
        );
        let kh = KnownHosts::parse(&line);
        assert_eq!(
            kh.verify("127.0.0.1", Some(2222), key(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            kh.verify("127.0.0.2", Some(2222), key(KEY_A)),
            Verdict::UnknownHost
        );
    }

    #[test]
    fn wildcards_and_negations_follow_openssh() {
        let kh = KnownHosts::parse(&format!(
            "*.example.org,!evil.example.org ssh-ed25519 {KEY_A}"
        ));
        assert_eq!(
            kh.verify("git.example.org", None, key(KEY_A)),
            Verdict::Trusted
        );
        assert_eq!(
            kh.verify("evil.example.org", None, key(KEY_A)),
            Verdict::UnknownHost
        );
        assert!(wildcard_match("g?t*", "git.example.org"));
        assert!(!wildcard_match("a*a*a*a*a*b", &"a".repeat(200)));
    }

    #[test]
    fn a_revoked_key_is_rejected_even_when_also_listed() {
        let kh = KnownHosts::parse(&format!(
            "github.com ssh-ed25519 {KEY_A}\n@revoked * ssh-ed25519 {KEY_A}\n"
        ));
        assert_eq!(kh.verify("github.com", None, key(KEY_A)), Verdict::Revoked);
    }

    #[test]
    fn malformed_and_cert_authority_lines_are_skipped() {
        let kh = KnownHosts::parse(
            "garbage\nhost ssh-ed25519 !!notbase64!!\n@cert-authority * ssh-ed25519 AAAA\n",
        );
        assert!(kh.is_empty());
    }
}
