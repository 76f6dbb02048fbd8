//! `git://` server: `git daemon --inetd` run once per connection accepted here.
//!
//! The listener is ours (bound to `127.0.0.1:0` before `start` returns), so there is no port race
//! and no readiness wait; each accepted socket becomes the stdin and stdout of one
//! `git daemon --inetd` process, as inetd would do.

use std::fs::{File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tempfile::TempDir;

use crate::Result;
use crate::process::{git, require_file, run, with_git_suffix};
use crate::server::AcceptLoop;

/// Serves every bare repository under a folder over `git://127.0.0.1:<port>/<name>.git`.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use crate_test_support::{GitDaemon, RepoBuilder};
/// let repo = RepoBuilder::new().file("a", "1").commit("c").build_bare()?;
/// let daemon = GitDaemon::start(repo.base_dir())?;
/// let url = daemon.url(repo.name()); // git://127.0.0.1:PORT/repo.git
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct GitDaemon {
    accept: AcceptLoop,
    base: PathBuf,
    log: PathBuf,
    packets: PathBuf,
    _logdir: TempDir,
}

/// How [`GitDaemon::spawn`] runs the daemon.
#[derive(Debug, Clone, Copy, Default)]
struct Options {
    /// Write `GIT_TRACE_PACKET` to the packet log.
    trace: bool,
    /// Let clients filter objects (`uploadpack.allowFilter`).
    filter: bool,
}

impl GitDaemon {
    /// Starts serving the bare repositories in `base` (read-only: `upload-pack` only).
    pub fn start(base: &Path) -> Result<Self> {
        Self::start_with(base, &[])
    }

    /// Like [`start`](Self::start), with extra `git daemon` options, e.g.
    /// `["--enable=receive-pack"]` to accept pushes or `["--timeout=2"]`.
    pub fn start_with(base: &Path, extra_args: &[&str]) -> Result<Self> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), base, extra_args)
    }

    /// Like [`start_with`](Self::start_with), listening on `ip` (e.g. the test node's bridge
    /// address, which Pods can reach).
    pub fn start_on(ip: IpAddr, base: &Path, extra_args: &[&str]) -> Result<Self> {
        Self::spawn(ip, base, extra_args, Options::default())
    }

    /// Like [`start`](Self::start), with `uploadpack.allowFilter` on for every repository, as
    /// GitHub, GitLab and Gitea serve: clients may ask for a partial fetch.
    pub fn start_filtering(base: &Path) -> Result<Self> {
        let options = Options {
            filter: true,
            ..Options::default()
        };
        Self::spawn(IpAddr::V4(Ipv4Addr::LOCALHOST), base, &[], options)
    }

    /// Like [`start`](Self::start), with git's packet trace (`GIT_TRACE_PACKET`) of every
    /// `upload-pack` written to a file that [`packet_trace`](Self::packet_trace) reads: the
    /// request log of what clients asked for.
    pub fn start_traced(base: &Path) -> Result<Self> {
        let options = Options {
            trace: true,
            ..Options::default()
        };
        Self::spawn(IpAddr::V4(Ipv4Addr::LOCALHOST), base, &[], options)
    }

    fn spawn(ip: IpAddr, base: &Path, extra_args: &[&str], options: Options) -> Result<Self> {
        let exec_path = run(git().arg("--exec-path"))?;
        require_file(&Path::new(&exec_path).join("git-daemon"))?;
        let base = base.canonicalize()?;
        let logdir = tempfile::Builder::new()
            .prefix("crate-test-daemon-")
            .tempdir()?;
        let log = logdir.path().join("daemon.log");
        File::create(&log)?;
        let packets = logdir.path().join("packets.log");
        let trace: Vec<(&str, PathBuf)> = if options.trace {
            vec![("GIT_TRACE_PACKET", packets.clone())]
        } else {
            Vec::new()
        };
        let args: Vec<String> = extra_args.iter().map(|&a| a.to_owned()).collect();
        let accept = {
            let base = base.clone();
            let log = log.clone();
            AcceptLoop::start_on(ip, "git-daemon", move |stream, tracked| {
                let spawned = (|| -> Result<_> {
                    let input = stream.try_clone()?;
                    let stderr = OpenOptions::new().append(true).open(&log)?;
                    let mut git = git();
                    if options.filter {
                        // Passed on to upload-pack in GIT_CONFIG_PARAMETERS.
                        git.args(["-c", "uploadpack.allowFilter=true"]);
                    }
                    git.args([
                        "daemon",
                        "--inetd",
                        "--export-all",
                        "--informative-errors",
                        "--verbose",
                        "--log-destination=stderr",
                    ])
                    .arg(format!("--base-path={}", base.display()))
                    .args(&args)
                    .envs(trace.iter().map(|(k, v)| (k, v)))
                    .stdin(Stdio::from(OwnedFd::from(input)))
                    .stdout(Stdio::from(OwnedFd::from(stream)))
                    .stderr(Stdio::from(stderr))
                    .spawn()
                })();
                // On failure the connection is just closed; the client sees the error.
                if let Ok(child) = spawned {
                    tracked.add_child(child);
                }
            })?
        };
        Ok(Self {
            accept,
            base,
            log,
            packets,
            _logdir: logdir,
        })
    }

    /// `git://127.0.0.1:<port>/<repo>` (`.git` is added unless `repo` ends with it).
    pub fn url(&self, repo: &str) -> String {
        format!("git://{}/{}", self.accept.addr(), with_git_suffix(repo))
    }

    /// The address served (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.accept.addr()
    }

    /// The folder whose repositories are served.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accept.tracked().connections()
    }

    /// The packet lines `upload-pack` exchanged so far, as git traces them (`packet: …`
    /// lines); empty unless started with [`start_traced`](Self::start_traced).
    pub fn packet_trace(&self) -> String {
        std::fs::read_to_string(&self.packets).unwrap_or_default()
    }

    /// What the `git daemon` processes logged so far (`--verbose`; empty if unreadable).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
