//! Running the external tools (git, OpenSSH) hermetically, with errors that say what to install.

use std::ffi::OsStr;
use std::io::{self, ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::Result;

/// Author and committer identity used by every git command run through [`git`].
pub(crate) const AUTHOR_NAME: &str = "Crate Test";
/// Author and committer e-mail used by every git command run through [`git`].
pub(crate) const AUTHOR_EMAIL: &str = "crate-test@example.invalid";

/// Environment variables that would make a git command depend on the caller's setup.
const GIT_ENV_TO_CLEAR: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSH_VARIANT",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_PROXY_COMMAND",
    "GIT_TRACE",
    "GIT_TRACE_PACKET",
    "GIT_CURL_VERBOSE",
    "GIT_EXEC_PATH",
    "GIT_TEMPLATE_DIR",
    "GIT_PROTOCOL",
    "GIT_ALLOW_PROTOCOL",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "all_proxy",
];

/// An empty folder used as `HOME` for every git command, so no `~/.gitconfig`, credential
/// helper or `~/.ssh` of the machine is ever read.
fn empty_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = std::env::temp_dir().join("crate-test-support-empty-home");
        // If this fails, git reports a missing HOME clearly enough; nothing is read from it.
        let _ = std::fs::create_dir_all(&home);
        home
    })
}

/// A `git` command with a hermetic environment: no system or global configuration
/// (`GIT_CONFIG_NOSYSTEM=1`, `GIT_CONFIG_GLOBAL=/dev/null`), an empty `HOME`, no terminal
/// prompts, no proxies, a fixed author and committer, `init.defaultBranch=main` and the C locale
/// (stable messages). Variables such as `GIT_DIR` that leak in from hooks are removed.
///
/// Use it in tests instead of `Command::new("git")`; set `GIT_SSH_COMMAND` yourself
/// (see [`crate::Sshd::git_ssh_command`]) when talking to [`crate::Sshd`].
pub fn git() -> Command {
    let mut cmd = Command::new("git");
    hermetic(&mut cmd);
    cmd.args([
        "-c",
        "init.defaultBranch=main",
        "-c",
        "protocol.file.allow=always",
    ]);
    cmd
}

/// Gives `cmd` the hermetic git environment of [`git`] (for git programs run directly, such as
/// `git-http-backend`).
pub(crate) fn hermetic(cmd: &mut Command) {
    for var in GIT_ENV_TO_CLEAR {
        cmd.env_remove(var);
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", empty_home())
        .env("XDG_CONFIG_HOME", empty_home())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", AUTHOR_NAME)
        .env("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL)
        .env("GIT_COMMITTER_NAME", AUTHOR_NAME)
        .env("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL)
        .env("LC_ALL", "C")
        .env("LANGUAGE", "C");
}

/// `name` with `.git` appended unless it already ends with it (leading `/` removed).
pub(crate) fn with_git_suffix(name: &str) -> String {
    let name = name.trim_start_matches('/');
    if Path::new(name).extension().is_some_and(|ext| ext == "git") {
        name.to_owned()
    } else {
        format!("{name}.git")
    }
}

/// The Debian package that provides `program`, for error messages.
fn package_for(program: &OsStr) -> &'static str {
    let name = Path::new(program)
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or_default();
    match name {
        "sshd" => "openssh-server",
        "ssh" | "ssh-keygen" | "ssh-keyscan" => "openssh-client",
        "git" | "git-http-backend" => "git",
        _ => "the package that provides it",
    }
}

/// The error for a tool that cannot be started.
pub(crate) fn missing_tool(program: &OsStr, err: &io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        format!(
            "cannot run `{}` ({err}): install the Debian package `{}` (apt-get install -y {})",
            program.to_string_lossy(),
            package_for(program),
            package_for(program),
        ),
    )
}

/// Checks that `path` exists, or says which package provides it.
pub(crate) fn require_file(path: &Path) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(missing_tool(
            path.as_os_str(),
            &io::Error::new(ErrorKind::NotFound, "no such file"),
        ))
    }
}

/// Spawns `cmd`, turning "not found" into an error that names the package to install.
pub(crate) fn spawn(cmd: &mut Command) -> Result<Child> {
    cmd.spawn()
        .map_err(|err| missing_tool(cmd.get_program(), &err))
}

/// A short rendering of a command line for error messages.
fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` to completion and returns its stdout (lossy UTF-8, trailing whitespace trimmed).
///
/// Fails, with the command line, exit status and stderr in the message, when the command cannot
/// be started or exits unsuccessfully.
pub fn run(cmd: &mut Command) -> Result<String> {
    let output = output(cmd)?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned())
}

/// Like [`run`], but returns the whole [`Output`] of a successful command.
pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    output(cmd)
}

fn output(cmd: &mut Command) -> Result<Output> {
    let output = cmd
        .output()
        .map_err(|err| missing_tool(cmd.get_program(), &err))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(io::Error::other(format!(
            "`{}` failed with {}: {}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        )))
    }
}

/// Waits until a TCP connection to `addr` succeeds and `ready` accepts the connected stream,
/// polling every 10 ms; gives up after `timeout`, or as soon as `child` (if any) has exited.
pub(crate) fn wait_for_server(
    addr: SocketAddr,
    timeout: Duration,
    mut child: Option<&mut Child>,
    ready: impl Fn(&mut TcpStream) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(child) = child.as_deref_mut()
            && let Some(status) = child.try_wait()?
        {
            return Err(io::Error::other(format!(
                "server for {addr} exited before it was ready ({status})"
            )));
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            if ready(&mut stream) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!("server on {addr} not ready after {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads from `stream` until `prefix` has been seen at the start of the data (for banners).
pub(crate) fn starts_with(stream: &mut TcpStream, prefix: &[u8]) -> bool {
    let mut buf = vec![0u8; prefix.len()];
    stream.read_exact(&mut buf).is_ok() && buf == prefix
}

/// Kills and reaps a child process, ignoring errors (it may have exited already).
pub(crate) fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::{run, with_git_suffix};

    #[test]
    fn missing_tool_names_the_package() {
        let err = run(&mut Command::new("/nonexistent/sshd")).expect_err("no such program");
        let msg = err.to_string();
        assert!(msg.contains("apt-get install -y openssh-server"), "{msg}");
    }

    #[test]
    fn failed_command_reports_stderr() {
        let err = run(super::git()
            .args(["rev-parse", "--git-dir"])
            .current_dir("/"))
        .expect_err("not a repository");
        assert!(err.to_string().contains("not a git repository"), "{err}");
    }

    #[test]
    fn git_suffix() {
        assert_eq!(with_git_suffix("a"), "a.git");
        assert_eq!(with_git_suffix("/a.git"), "a.git");
        assert_eq!(with_git_suffix("x/a"), "x/a.git");
    }
}
