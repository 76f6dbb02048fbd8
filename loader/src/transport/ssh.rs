//! ssh: libssh2 (through the `ssh2` crate) on a TCP connection we open, running
//! `git-upload-pack` on the server. The server must present a host key listed in the crate's
//! `known_hosts`, and we authenticate with the private key from the crate's Secret.

use std::io::{self, Read, Write};
use std::sync::Arc;

use crate_operator_api::repo_url::RepoUrl;
use git2::transport::SmartSubtransportStream;
use percent_encoding::percent_decode_str;

use super::git::{connect, quick_ack};
use super::metered::{Metered, pkt_error};
use super::{Session, Wire};
use crate::fetch::FetchError;
use crate::known_hosts::Verdict;

/// At most this much of the server's stderr is kept for an error message.
const MAX_STDERR: u64 = 4096;

/// Connects, checks the host key, authenticates and starts `git-upload-pack`, asking for
/// protocol `wire`.
pub(super) fn open(
    session: &Arc<Session>,
    wire: Wire,
) -> io::Result<Box<dyn SmartSubtransportStream>> {
    let url = &session.url;
    let shown = session.shown_url();
    let tcp = connect(session, url.host(), url.effective_port())?;
    // libssh2 owns the connection; a second handle to the socket sets its ACK mode.
    let socket = tcp
        .try_clone()
        .map_err(|e| session.network("starting ssh", &e))?;
    let mut ssh = ssh2::Session::new().map_err(|e| session.network("starting ssh", &e))?;
    ssh.set_tcp_stream(tcp);
    ssh.set_timeout(timeout_ms(session)?);
    ssh.handshake()
        .map_err(|e| session.network("the ssh handshake", &e))?;

    let verdict = match (&session.known_hosts, ssh.host_key()) {
        (Some(known), Some((key, _))) => {
            known.verify(url.host(), url.port(), |listed| listed == key)
        }
        _ => Verdict::UnknownHost,
    };
    if verdict != Verdict::Trusted {
        return Err(session.fail(FetchError::HostKey {
            url: shown,
            host: url.host().to_owned(),
            problem: FetchError::host_key_problem(verdict).to_owned(),
        }));
    }

    let user = session
        .credentials
        .username
        .as_deref()
        .or(url.user())
        .unwrap_or("git");
    let Some(identity) = &session.credentials.identity else {
        return Err(session.fail(FetchError::AuthRequired { url: shown }));
    };
    if ssh
        .userauth_pubkey_memory(user, None, identity.expose(), None)
        .is_err()
        || !ssh.authenticated()
    {
        return Err(session.fail(FetchError::AuthRejected { url: shown }));
    }

    let mut channel = ssh
        .channel_session()
        .map_err(|e| session.network("opening an ssh channel", &e))?;
    if wire == Wire::V2 {
        // Servers pass the variable on only when configured to (OpenSSH: `AcceptEnv
        // GIT_PROTOCOL`); a refusal is not an error, the server then answers in v0.
        let _ = channel.setenv("GIT_PROTOCOL", "version=2");
    }
    channel
        .exec(&format!(
            "git-upload-pack {}",
            shell_quote(&remote_path(url))
        ))
        .map_err(|e| session.network("starting git-upload-pack", &e))?;
    Ok(Box::new(Stream {
        reader: Metered::new(channel, Arc::clone(session), "reading from the ssh server"),
        session: Arc::clone(session),
        ssh,
        socket,
        first: true,
    }))
}

fn timeout_ms(session: &Session) -> io::Result<u32> {
    Ok(u32::try_from(session.remaining()?.as_millis())
        .unwrap_or(u32::MAX)
        .max(1))
}

/// The path git sends: as written for scp-like URLs; percent-decoded for `ssh://` ones, where
/// `/~user/…` is relative to a home directory.
fn remote_path(url: &RepoUrl) -> String {
    if url.is_scp_like() {
        return url.path().to_owned();
    }
    let decoded = percent_decode_str(url.path())
        .decode_utf8_lossy()
        .into_owned();
    match decoded.strip_prefix("/~") {
        Some(rest) => format!("~{rest}"),
        None => decoded,
    }
}

/// Single-quotes `text` for the remote shell, as git does (`'` → `'\''`, `!` → `'\!'`).
fn shell_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' | '!' => {
                out.push_str("'\\");
                out.push(c);
                out.push('\'');
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

struct Stream {
    reader: Metered<ssh2::Channel>,
    session: Arc<Session>,
    /// Keeps the connection alive as long as the channel.
    ssh: ssh2::Session,
    socket: std::net::TcpStream,
    first: bool,
}

impl Stream {
    /// Why the command ended without a word on stdout: its exit status and the start of stderr.
    fn refused(&mut self) -> io::Error {
        let mut stderr = Vec::new();
        let _ = self
            .reader
            .get_mut()
            .stderr()
            .take(MAX_STDERR)
            .read_to_end(&mut stderr);
        let _ = self.session.count(stderr.len());
        let status = self.reader.get_mut().exit_status().unwrap_or(-1);
        let said = crate::escape::controls(String::from_utf8_lossy(&stderr).trim());
        self.session.fail(FetchError::RepositoryNotFound {
            url: self.session.shown_url(),
            detail: format!("git-upload-pack exited with status {status}: {said}"),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ssh.set_timeout(timeout_ms(&self.session)?);
        quick_ack(&self.socket);
        let n = self.reader.read(buf)?;
        if std::mem::take(&mut self.first) {
            if n == 0 {
                return Err(self.refused());
            }
            if let Some(message) = pkt_error(&buf[..n]) {
                return Err(self.session.fail(FetchError::RepositoryNotFound {
                    url: self.session.shown_url(),
                    detail: format!("the server said: {message}"),
                }));
            }
        }
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ssh.set_timeout(timeout_ms(&self.session)?);
        self.reader
            .get_mut()
            .write(buf)
            .map_err(|e| self.session.network("writing to the ssh server", &e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.reader.get_mut().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_the_remote_shell_as_git_quotes_them() {
        assert_eq!(shell_quote("/srv/r.git"), "'/srv/r.git'");
        assert_eq!(shell_quote("it's!"), "'it'\\''s'\\!''");
    }

    #[test]
    fn ssh_url_paths_are_decoded_and_home_relative_paths_kept() {
        let path = |raw| remote_path(&RepoUrl::parse(raw).expect("url"));
        assert_eq!(path("ssh://h/srv/my%20repo.git"), "/srv/my repo.git");
        assert_eq!(path("ssh://h/~alice/r.git"), "~alice/r.git");
        assert_eq!(path("git@h:org/r%20x.git"), "org/r%20x.git");
    }
}
