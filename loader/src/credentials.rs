//! Git credentials, read from files only (the crate Secret mounted into the main container).
//!
//! Layout of the credentials directory (the manager mounts the Secret's keys under these names):
//! `token` (https password / access token), `username` (optional), `identity` (ssh private key),
//! `known_hosts` (ssh host keys, required for ssh). Values are held in [`Secret`], whose `Debug`
//! never shows them; they go to libgit2 and nowhere else.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// File names inside the credentials directory (shared with the manager, which mounts them).
pub use crate_operator_api::contract::credential_files::{
    IDENTITY as IDENTITY_FILE, KNOWN_HOSTS as KNOWN_HOSTS_FILE, TOKEN as TOKEN_FILE,
    USERNAME as USERNAME_FILE,
};

/// A credential file larger than this is not a credential.
const MAX_CREDENTIAL_BYTES: u64 = 64 * 1024;

#[derive(Debug, Error)]
pub enum CredentialsError {
    #[error("failed to read the credential file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to read the credential file {path}: it is larger than 64 KiB")]
    TooLarge { path: PathBuf },
    #[error("failed to read the credential file {path}: it is not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("failed to use the credential file {path}: it is empty")]
    Empty { path: PathBuf },
}

/// A secret string. Only [`Secret::expose`] gives the value away.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Everything the fetch may authenticate with. Empty for public repositories.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub token: Option<Secret>,
    pub identity: Option<Secret>,
    pub known_hosts: Option<String>,
}

impl Credentials {
    /// Reads whichever of the known files exist in `dir`. A missing directory is an error (the
    /// caller asked for it); missing files are simply absent credentials.
    pub fn from_dir(dir: &Path) -> Result<Credentials, CredentialsError> {
        if let Err(source) = std::fs::read_dir(dir) {
            return Err(CredentialsError::Read {
                path: dir.to_owned(),
                source,
            });
        }
        Ok(Credentials {
            username: read_optional(&dir.join(USERNAME_FILE))?,
            token: read_optional(&dir.join(TOKEN_FILE))?.map(Secret),
            identity: read_optional(&dir.join(IDENTITY_FILE))?.map(Secret),
            known_hosts: read_optional(&dir.join(KNOWN_HOSTS_FILE))?,
        })
    }

    /// Every secret value, so callers can scrub foreign messages (defence in depth).
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        [&self.token, &self.identity]
            .into_iter()
            .flatten()
            .map(Secret::expose)
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, CredentialsError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialsError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIAL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > MAX_CREDENTIAL_BYTES {
        return Err(CredentialsError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| CredentialsError::NotText {
        path: path.to_owned(),
    })?;
    // Secrets created with `echo` or editors carry a trailing newline that is not part of them.
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.trim().is_empty() {
        return Err(CredentialsError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Some(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_and_trailing_newlines_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(TOKEN_FILE), "tok-123\n").expect("write");
        let creds = Credentials::from_dir(dir.path()).expect("read");
        assert_eq!(creds.token.as_ref().map(Secret::expose), Some("tok-123"));
        assert_eq!(creds.identity, None);
        assert!(!format!("{creds:?}").contains("tok-123"));
    }

    #[test]
    fn an_empty_token_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(TOKEN_FILE), "\n").expect("write");
        let err = Credentials::from_dir(dir.path()).expect_err("empty");
        assert!(err.to_string().ends_with("token: it is empty"), "{err}");
    }

    #[test]
    fn an_oversized_credential_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(IDENTITY_FILE), vec![b'k'; 70_000]).expect("write");
        assert!(matches!(
            Credentials::from_dir(dir.path()),
            Err(CredentialsError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        assert!(matches!(
            Credentials::from_dir(Path::new("/nonexistent/creds")),
            Err(CredentialsError::Read { .. })
        ));
    }
}
