//! Child processes that cannot outlive the test process.
//!
//! Each control-plane process runs under a small `sh` guard that holds the read end of a pipe
//! whose write end only the test process has. When the test process goes, however it goes
//! (normal exit, panic, abort, SIGKILL), the kernel closes the pipe, the guard sees end-of-file
//! and stops the process. Statics are never dropped in Rust, so this, not `Drop`, is what stops
//! the control plane shared by a test binary. Dropping a [`Guarded`] stops it early.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use crate::{Result, error};

/// Runs `"$@"`; stops it with SIGTERM (SIGKILL 10 s later) when stdin reaches end-of-file; exits
/// with its status; removes `$CLEANUP` afterwards when set.
const GUARD_SCRIPT: &str = r#"
exec 3<&0
"$@" &
child=$!
( while read -r _ <&3; do :; done; kill -TERM "$child" 2>/dev/null; sleep 10; kill -KILL "$child" 2>/dev/null ) &
watcher=$!
wait "$child"
status=$?
kill "$watcher" 2>/dev/null
if [ -n "$CLEANUP" ]; then rm -rf "$CLEANUP"; fi
exit "$status"
"#;

/// A running guarded process. Its stdout and stderr go to a log file; stdout lines are also
/// offered to [`Guarded::wait_for_line`].
pub struct Guarded {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    // A Mutex only to make the type Sync (a shared control plane lives in a static).
    lines: Mutex<mpsc::Receiver<String>>,
}

impl Guarded {
    /// Starts `program` with `args` and only the environment `env` (plus a minimal `PATH`),
    /// logging to `log`. `cleanup` is removed once it has stopped.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
        cleanup: Option<&Path>,
    ) -> Result<Guarded> {
        let stderr = File::create(log)
            .map_err(|e| error(format!("failed to create {}: {e}", log.display())))?;
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg(name)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(env.iter().copied());
        if let Some(dir) = cleanup {
            command.env("CLEANUP", dir);
        }
        let mut child = command
            .spawn()
            .map_err(|e| error(format!("failed to start {name}: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, lines) = mpsc::channel();
        let log_path = log.to_owned();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                let mut log = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log_path)
                    .ok();
                for line in BufReader::new(stdout)
                    .lines()
                    .map_while(std::io::Result::ok)
                {
                    if let Some(log) = log.as_mut() {
                        let _ = writeln!(log, "{line}");
                    }
                    // Nobody listening any more is fine: the line is in the log.
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Guarded {
            name: name.to_owned(),
            child,
            stdin,
            log: log.to_owned(),
            lines: Mutex::new(lines),
        })
    }

    /// The first stdout line starting with `prefix`, without the prefix.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let next = match self.lines.get_mut() {
                Ok(lines) => lines.recv_timeout(left),
                Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.to_owned());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("printed no {prefix:?} line in {timeout:?}")));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.failure(&format!("exited before printing {prefix:?}")));
                }
            }
        }
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// An error naming the process, with the end of its log.
    pub fn failure(&self, what: &str) -> std::io::Error {
        error(format!(
            "{} {what}; the end of its log ({}):\n{}",
            self.name,
            self.log.display(),
            log_tail(&self.log, 40)
        ))
    }
}

impl Guarded {
    /// The pid of the guard shell; the process itself is its child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file its stdout and stderr go to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Stops it now (SIGTERM, as a Pod's container would get), waits for it to exit, and says how
    /// it ended.
    pub fn stop(mut self) -> Option<ExitStatus> {
        drop(self.stdin.take());
        self.child.wait().ok()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // Closing stdin is the stop signal; waiting makes "dropped" mean "stopped".
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
