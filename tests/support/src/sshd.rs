//! SSH server: OpenSSH's `sshd` on a generated configuration and generated keys.
//!
//! `sshd` binds the port itself, so a free port is picked by binding `127.0.0.1:0` first; the
//! tiny window in which another process could take it is closed by retrying with a new port.
//! Readiness is the SSH banner on a test connection. Git over SSH runs `git-upload-pack` as the
//! user that runs the tests (root in CI), through that user's login shell.

use std::fs::{self, File};
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use tempfile::TempDir;

use crate::Result;
use crate::process::{kill_and_reap, require_file, run, spawn, starts_with, wait_for_server};

/// Where Debian's `openssh-server` installs the daemon.
const SSHD: &str = "/usr/sbin/sshd";
/// The privilege separation folder `sshd` insists on when started as root (Debian's service
/// creates it at boot; containers usually lack it).
const PRIVSEP_DIR: &str = "/run/sshd";
/// How long `sshd` may take to answer its first connection.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Ports tried before giving up (another process may grab a free port before `sshd` binds it).
const PORT_ATTEMPTS: usize = 5;

/// An `sshd` on `127.0.0.1:<port>` that accepts the generated client keys and nothing else.
///
/// Keys (made with `ssh-keygen`, no passphrase, in a private temporary folder):
/// - [`client_key`](Self::client_key): ed25519 in the OpenSSH format, authorized;
/// - [`client_key_rsa_pem`](Self::client_key_rsa_pem): RSA in the legacy PEM format, authorized
///   (for SSH clients that cannot read the OpenSSH format);
/// - [`unauthorized_key`](Self::unauthorized_key): ed25519, not authorized (auth failures);
/// - the host key: ed25519, see [`known_hosts_line`](Self::known_hosts_line).
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use crate_test_support::{RepoBuilder, Sshd, git, run};
/// let repo = RepoBuilder::new().file("a", "1").commit("c").build_bare()?;
/// let sshd = Sshd::start()?;
/// let out = run(git()
///     .env("GIT_SSH_COMMAND", sshd.git_ssh_command())
///     .args(["ls-remote", &sshd.url(repo.path())]))?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    addr: SocketAddr,
    user: String,
    dir: TempDir,
    host_public_key: String,
    known_hosts_line: String,
    hashed_known_hosts_line: String,
}

impl Sshd {
    /// Generates keys and a configuration and starts `sshd`, waiting until it answers.
    ///
    /// Needs `/usr/sbin/sshd` (Debian package `openssh-server`) and `ssh-keygen`
    /// (`openssh-client`). When run as root, creates `/run/sshd` if it is missing.
    pub fn start() -> Result<Self> {
        Self::start_with("")
    }

    /// Like [`start`](Self::start), with extra `sshd_config` lines, e.g.
    /// `"AcceptEnv GIT_PROTOCOL\n"` to let clients ask for git protocol v2 (as GitHub and GitLab
    /// do; OpenSSH's default refuses the variable, and git then speaks v0).
    pub fn start_with(extra_config: &str) -> Result<Self> {
        require_file(Path::new(SSHD))?;
        let dir = tempfile::Builder::new()
            .prefix("crate-test-sshd-")
            .tempdir()?;
        // sshd refuses (with StrictModes) or ssh warns about keys readable by others.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
        let user = run(Command::new("id").arg("-un"))?;
        if user == "root" && !Path::new(PRIVSEP_DIR).exists() {
            fs::create_dir_all(PRIVSEP_DIR)?;
            fs::set_permissions(PRIVSEP_DIR, fs::Permissions::from_mode(0o755))?;
        }

        let path = |name: &str| dir.path().join(name);
        keygen(&path("host_ed25519"), &["-t", "ed25519"])?;
        keygen(&path("client_ed25519"), &["-t", "ed25519"])?;
        keygen(
            &path("client_rsa_pem"),
            &["-t", "rsa", "-b", "2048", "-m", "PEM"],
        )?;
        keygen(&path("unauthorized_ed25519"), &["-t", "ed25519"])?;
        let authorized = format!(
            "{}\n{}\n",
            fs::read_to_string(path("client_ed25519.pub"))?.trim_end(),
            fs::read_to_string(path("client_rsa_pem.pub"))?.trim_end()
        );
        fs::write(path("authorized_keys"), authorized)?;
        let host_public_key = {
            let text = fs::read_to_string(path("host_ed25519.pub"))?;
            let mut fields = text.split_whitespace();
            match (fields.next(), fields.next()) {
                (Some(kind), Some(key)) => format!("{kind} {key}"),
                _ => return Err(io::Error::other("unreadable host public key")),
            }
        };

        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            write_config(dir.path(), addr, extra_config)?;
            let log = File::create(path("sshd.log"))?;
            let mut child = spawn(
                Command::new(SSHD)
                    .arg("-D")
                    .arg("-e")
                    .arg("-f")
                    .arg(path("sshd_config"))
                    .env_clear()
                    .env(
                        "PATH",
                        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    )
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::from(log)),
            )?;
            match wait_for_server(addr, READY_TIMEOUT, Some(&mut child), |s| {
                starts_with(s, b"SSH-2.0-")
            }) {
                Ok(()) => {
                    let known_hosts_line = format!("[127.0.0.1]:{port} {host_public_key}");
                    let hashed_known_hosts_line =
                        hash_known_hosts_line(dir.path(), &known_hosts_line)?;
                    fs::write(path("known_hosts"), format!("{known_hosts_line}\n"))?;
                    return Ok(Self {
                        child,
                        addr,
                        user,
                        dir,
                        host_public_key,
                        known_hosts_line,
                        hashed_known_hosts_line,
                    });
                }
                Err(err) => {
                    kill_and_reap(&mut child);
                    let log = read_to_string(&path("sshd.log"));
                    let in_use = log.contains("Address already in use");
                    last_error = Some(io::Error::new(
                        err.kind(),
                        format!("sshd did not start ({err}); its log:\n{log}"),
                    ));
                    if !in_use {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("sshd did not start")))
    }

    /// `ssh://<user>@127.0.0.1:<port><absolute path>` for a repository on this machine, e.g.
    /// `ssh://root@127.0.0.1:40123/tmp/crate-test-repo-x/repo.git`.
    pub fn url(&self, repo: &Path) -> String {
        format!("ssh://{}@{}{}", self.user, self.addr, repo.display())
    }

    /// The address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The user to log in as (the one running the tests).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The authorized client private key: ed25519, OpenSSH format, no passphrase. Its public
    /// key is next to it with `.pub` appended.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// An authorized RSA (2048-bit) private key in the legacy PEM format
    /// (`-----BEGIN RSA PRIVATE KEY-----`), for SSH clients that cannot read the OpenSSH format.
    pub fn client_key_rsa_pem(&self) -> PathBuf {
        self.dir.path().join("client_rsa_pem")
    }

    /// A valid ed25519 private key that the server does not accept.
    pub fn unauthorized_key(&self) -> PathBuf {
        self.dir.path().join("unauthorized_ed25519")
    }

    /// The host public key as `ssh-ed25519 AAAA...`.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// The host key's raw wire-format blob (the base64 part of
    /// [`host_public_key`](Self::host_public_key), decoded): what libgit2 hands a certificate
    /// check as the host key.
    pub fn host_key_blob(&self) -> Result<Vec<u8>> {
        let b64 = self
            .host_public_key
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| io::Error::other("no key in host public key"))?;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(io::Error::other)
    }

    /// `[127.0.0.1]:<port> ssh-ed25519 AAAA...`: a `known_hosts` line for this server.
    pub fn known_hosts_line(&self) -> &str {
        &self.known_hosts_line
    }

    /// The same entry with the host name hashed (`|1|<salt>|<hmac-sha1> ssh-ed25519 AAAA...`),
    /// made by `ssh-keygen -H`.
    pub fn hashed_known_hosts_line(&self) -> &str {
        &self.hashed_known_hosts_line
    }

    /// A `known_hosts` file holding [`known_hosts_line`](Self::known_hosts_line).
    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A `GIT_SSH_COMMAND` for the git command line: OpenSSH's `ssh` with the authorized key,
    /// strict host key checking against [`known_hosts_file`](Self::known_hosts_file), no user
    /// configuration and no prompts.
    pub fn git_ssh_command(&self) -> String {
        self.git_ssh_command_with_key(&self.client_key())
    }

    /// Like [`git_ssh_command`](Self::git_ssh_command) with another private key.
    pub fn git_ssh_command_with_key(&self, key: &Path) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
             -o LogLevel=ERROR",
            key.display(),
            self.known_hosts_file().display()
        )
    }

    /// What `sshd` logged so far (`LogLevel VERBOSE`: connections, accepted keys, failures).
    pub fn log(&self) -> String {
        read_to_string(&self.dir.path().join("sshd.log"))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Sessions in progress are separate processes that end when their connection closes.
        kill_and_reap(&mut self.child);
    }
}

/// Generates a key pair at `path` (and `path.pub`) without a passphrase.
fn keygen(path: &Path, args: &[&str]) -> Result<()> {
    run(Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", "crate-test-support", "-f"])
        .arg(path)
        .args(args)
        .stdin(Stdio::null()))?;
    Ok(())
}

fn write_config(dir: &Path, addr: SocketAddr, extra: &str) -> Result<()> {
    let d = dir.display();
    let config = format!(
        "# generated by crate-test-support\n\
         ListenAddress {addr}\n\
         AddressFamily inet\n\
         HostKey {d}/host_ed25519\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         AuthorizedPrincipalsFile none\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         HostbasedAuthentication no\n\
         StrictModes no\n\
         UsePAM no\n\
         UseDNS no\n\
         PidFile none\n\
         PermitTTY no\n\
         X11Forwarding no\n\
         AllowTcpForwarding no\n\
         AllowAgentForwarding no\n\
         PermitUserEnvironment no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         MaxStartups 100\n\
         LoginGraceTime 30\n\
         LogLevel VERBOSE\n\
         {extra}"
    );
    fs::write(dir.join("sshd_config"), config)?;
    Ok(())
}

/// Hashes the host part of a `known_hosts` line with `ssh-keygen -H` (HMAC-SHA1, random salt).
fn hash_known_hosts_line(dir: &Path, line: &str) -> Result<String> {
    let file = dir.join("known_hosts_hashed");
    fs::write(&file, format!("{line}\n"))?;
    run(Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&file)
        .stdin(Stdio::null()))?;
    let hashed = fs::read_to_string(&file)?;
    let _ = fs::remove_file(dir.join("known_hosts_hashed.old"));
    hashed
        .lines()
        .find(|l| l.starts_with("|1|"))
        .map(str::to_owned)
        .ok_or_else(|| io::Error::other(format!("ssh-keygen -H gave no hashed line: {hashed}")))
}

fn read_to_string(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}
