//! The fetch in a child process whose memory the kernel caps.
//!
//! Why a process: whatever a server sends, the loader must end with a clear `LimitExceeded`
//! rather than an OOM kill of its container (which the manager could only retry). libgit2 and
//! the transports are budgeted ([`crate::transport`], [`crate::fetch`]), but they are large, and
//! only the kernel can promise a bound. So `preview` and `load` run the network fetch as
//! `crate-loader fetch-worker`, a copy of this binary whose `RLIMIT_DATA` is
//! `--max-memory-bytes`: an allocation past it fails (libgit2 reports it, Rust aborts), and even
//! the kernel's OOM killer picks the worker, not the loader, which then reports what happened.
//!
//! The parent also owns the worker's temporary directory and its deadline: at `--timeout` (plus
//! a short grace) it kills the worker, and the directory is removed on every path.
//!
//! Protocol: the parent passes flags (never secrets: credentials stay in files) and reads one
//! JSON [`Reply`] line from the worker's stdout, followed by the metadata file's bytes and the
//! payload paths the commit lacks (the worker parses the metadata for their list: it is the
//! process with a memory cap).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, UsageWho, getrusage, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cli::{LogArgs, SourceArgs, WorkerArgs};
use crate::credentials::Credentials;
use crate::fetch::{self, FetchError, FetchLimits, FetchRequest, Fetched};
use crate::source::{MetadataPath, Policy, Source};
use crate_operator_api::contract::FetchMode;

/// How long past the deadline the worker may take to report its own time-out before it is
/// killed.
const GRACE: Duration = Duration::from_secs(2);
/// Longest reply line accepted from the worker (the file's bytes follow it).
const MAX_REPLY_LINE: u64 = 64 * 1024;
/// Peak memory of parsing metadata, as a multiple of its size, for the worst JSON shapes
/// (`rocrate::json`; `tests/cli.rs` holds the parser to it).
const PARSE_COST: u64 = 30;

/// The worker's answer.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Unchanged {
        commit: String,
    },
    /// `len` bytes of the file follow the reply line, then `missing` bytes of a JSON array of
    /// the payload paths the commit does not have (none when the check did not run).
    File {
        commit: String,
        len: u64,
        missing: Option<u64>,
        mode: FetchMode,
    },
    Failed(FetchError),
}

/// What the parent needs to run a fetch in a worker.
pub struct Isolated<'a> {
    pub source: &'a SourceArgs,
    pub parsed: &'a Source,
    pub last_commit: Option<&'a str>,
    pub deadline: Instant,
    pub log: &'a LogArgs,
}

/// Runs the fetch of `req` in a worker process (remote repositories), or in this process (a
/// repository on this machine, which is only read).
pub fn fetch(req: &FetchRequest<'_>, isolated: &Isolated<'_>) -> Result<Fetched, FetchError> {
    if matches!(isolated.parsed, Source::Local(_)) {
        return fetch::fetch(req);
    }
    let area = temp_area(isolated.source.work_dir.as_deref())?;
    let exe = std::env::current_exe()
        .map_err(|e| FetchError::Local(format!("failed to find the loader executable: {e}")))?;
    let mut command = Command::new(exe);
    command
        .arg("fetch-worker")
        .args(worker_flags(isolated, area.path()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // The worker reads its flags only from its arguments: an inherited CRATE_LOADER_* variable
    // (say, the Job's last commit) must not override what the parent decided.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CRATE_LOADER_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| FetchError::Local(format!("failed to start the fetch worker: {e}")))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));

    // Kills the worker at the deadline (plus grace) unless told it finished.
    let (finished, cancelled) = mpsc::channel::<()>();
    let fired = Arc::new(AtomicBool::new(false));
    let killer = {
        let fired = Arc::clone(&fired);
        let until = isolated.deadline + GRACE;
        std::thread::spawn(move || {
            let wait = until.saturating_duration_since(Instant::now());
            if cancelled.recv_timeout(wait) == Err(mpsc::RecvTimeoutError::Timeout) {
                fired.store(true, Ordering::SeqCst);
                let _ = kill(pid, Signal::SIGKILL);
            }
        })
    };

    let reply = child
        .stdout
        .take()
        .and_then(|stdout| read_reply(stdout, req.limits.max_file_bytes));
    let status = child.wait();
    let _ = finished.send(());
    let _ = killer.join();
    // Peak resident memory in KiB, as the kernel measured it: the worker's (this process's only
    // child) and this process's own. The latter comes from VmHWM, because getrusage's own
    // figure keeps what the process that started us held before exec.
    if let Ok(worker) = getrusage(UsageWho::RUSAGE_CHILDREN) {
        tracing::info!(
            worker_peak_kib = worker.max_rss(),
            loader_peak_kib = own_peak_kib(),
            "fetch worker finished"
        );
    }
    drop(area);
    let url = isolated.parsed.to_string();
    match reply {
        Some(result) => result,
        None if fired.load(Ordering::SeqCst) => Err(FetchError::TimedOut { url }),
        None => Err(died(&url, status, req.limits.max_memory_bytes)),
    }
}

/// This process's peak resident memory (`VmHWM`), in KiB; 0 when unknown.
fn own_peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The worker's reply and the file that follows it; `None` when it wrote no complete reply.
fn read_reply(stdout: impl std::io::Read, max_file: u64) -> Option<Result<Fetched, FetchError>> {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    (&mut reader)
        .take(MAX_REPLY_LINE)
        .read_until(b'\n', &mut line)
        .ok()?;
    match serde_json::from_slice::<Reply>(&line).ok()? {
        Reply::Unchanged { commit } => Some(Ok(Fetched::Unchanged { commit })),
        Reply::Failed(error) => Some(Err(error)),
        Reply::File {
            commit,
            len,
            missing,
            mode,
        } if len <= max_file => {
            let mut content = Vec::new();
            (&mut reader).take(len).read_to_end(&mut content).ok()?;
            if content.len() as u64 != len {
                return None;
            }
            // The paths come from the file, so their list is never much larger than it.
            let missing = missing
                .filter(|&n| n <= max_file.saturating_mul(2).saturating_add(MAX_REPLY_LINE))
                .and_then(|n| {
                    let mut list = Vec::new();
                    reader.take(n).read_to_end(&mut list).ok()?;
                    serde_json::from_slice::<Vec<String>>(&list).ok()
                });
            Some(Ok(Fetched::File {
                commit,
                content,
                missing,
                mode,
            }))
        }
        Reply::File { .. } => None,
    }
}

/// Why a worker ended without a reply: killed for memory (by the kernel's OOM killer, or
/// aborted by a failed allocation past its limit), or something we cannot explain.
fn died(url: &str, status: std::io::Result<std::process::ExitStatus>, limit: u64) -> FetchError {
    let status = match status {
        Ok(status) => status,
        Err(e) => return FetchError::Local(format!("failed to wait for the fetch worker: {e}")),
    };
    match status.signal() {
        Some(signal) if signal == Signal::SIGKILL as i32 || signal == Signal::SIGABRT as i32 => {
            FetchError::MemoryExceeded {
                url: url.to_owned(),
                limit,
                killed: true,
            }
        }
        Some(signal) => FetchError::Local(format!(
            "the fetch worker for {url} died of signal {signal}"
        )),
        None => FetchError::Local(format!(
            "the fetch worker for {url} exited with {status} without a result"
        )),
    }
}

/// Fetch areas that exist right now, for [`remove_areas`].
static AREAS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The worker's temporary directory: removed when dropped, or by [`remove_areas`] when the
/// process must exit at once.
struct Area(tempfile::TempDir);

impl Area {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        AREAS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|p| p != self.0.path());
    }
}

fn temp_area(work_dir: Option<&Path>) -> Result<Area, FetchError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("crate-loader-fetch-");
    let dir = match work_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .map_err(|e| FetchError::Local(format!("failed to create the fetch area: {e}")))?;
    AREAS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(dir.path().to_owned());
    Ok(Area(dir))
}

/// Removes every fetch area, for an exit that skips destructors (the watchdog's).
pub fn remove_areas() {
    for path in AREAS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
    {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// The worker's command line: the parent's source flags, the time left, and its own area.
fn worker_flags(isolated: &Isolated<'_>, area: &Path) -> Vec<std::ffi::OsString> {
    let s = isolated.source;
    let left = isolated.deadline.saturating_duration_since(Instant::now());
    let mut flags: Vec<std::ffi::OsString> = Vec::new();
    let mut flag = |name: &str, value: &dyn std::fmt::Display| {
        flags.push(format!("--{name}").into());
        flags.push(value.to_string().into());
    };
    flag("repo", &s.repo);
    flag("branch", &s.branch);
    flag("path", &s.path);
    flag("username", &s.username);
    flag("timeout", &format!("{}ms", left.as_millis().max(1)));
    flag("max-transfer-bytes", &s.limits.max_transfer_bytes);
    flag("max-objects", &s.limits.max_objects);
    flag("max-file-bytes", &s.limits.max_file_bytes);
    flag("max-json-depth", &s.limits.max_json_depth);
    flag("max-memory-bytes", &s.limits.max_memory_bytes);
    flag("log-format", &isolated.log.log_format.as_str());
    flag("log-level", &isolated.log.log_level);
    if let Some(commit) = isolated.last_commit {
        flag("last-commit", &commit);
    }
    flags.push("--work-dir".into());
    flags.push(area.as_os_str().to_owned());
    if let Some(dir) = &s.credentials_dir {
        flags.push("--credentials-dir".into());
        flags.push(dir.as_os_str().to_owned());
    }
    if s.allow_insecure_transport {
        flags.push("--allow-insecure-transport".into());
    }
    flags
}

/// The worker's side: cap memory, fetch, reply. Returns the process exit code.
pub fn serve(args: &WorkerArgs) -> i32 {
    let source = &args.source;
    let limits = source.limits.fetch();
    let json_limits = source.limits.json();
    let memory = limits.max_memory_bytes;
    // Listing the paths parses the metadata here, under the memory cap: a file whose worst-case
    // parse (30× its size, see `rocrate::json`) would not fit in half the cap is not listed,
    // and presence goes unchecked rather than the fetch failing for memory.
    let payload_paths = move |bytes: &[u8]| {
        ((bytes.len() as u64).saturating_mul(PARSE_COST) <= memory / 2)
            .then(|| crate::rocrate::payload_paths(bytes, &json_limits))
    };
    let reply = prepare(source).and_then(|(parsed, path, credentials)| {
        cap_memory(&limits)?;
        let deadline = Instant::now() + source.timeout;
        fetch::fetch(&FetchRequest {
            source: &parsed,
            branch: &source.branch,
            path: &path,
            credentials: &credentials,
            default_username: &source.username,
            limits,
            deadline,
            work_dir: source.work_dir.as_deref(),
            skip_if_head_is: args.last_commit.as_deref(),
            payload_paths: Some(&payload_paths),
        })
    });
    let (header, content, missing) = match reply {
        Ok(Fetched::Unchanged { commit }) => (Reply::Unchanged { commit }, Vec::new(), Vec::new()),
        Ok(Fetched::File {
            commit,
            content,
            missing,
            mode,
        }) => {
            let missing = missing
                .and_then(|list| serde_json::to_vec(&list).ok())
                .unwrap_or_default();
            let header = Reply::File {
                commit,
                len: content.len() as u64,
                missing: (!missing.is_empty()).then_some(missing.len() as u64),
                mode,
            };
            (header, content, missing)
        }
        Err(error) => (Reply::Failed(error), Vec::new(), Vec::new()),
    };
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, &header)
        .map_err(std::io::Error::other)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.write_all(&content))
        .and_then(|()| out.write_all(&missing))
        .and_then(|()| out.flush());
    i32::from(written.is_err())
}

/// The request again, from the flags the parent checked (so a failure here is ours).
fn prepare(source: &SourceArgs) -> Result<(Source, MetadataPath, Credentials), FetchError> {
    let local = |e: &dyn std::fmt::Display| FetchError::Local(format!("fetch worker: {e}"));
    let policy = Policy {
        allow_insecure: source.allow_insecure_transport,
        allow_local: false,
    };
    let parsed = Source::parse(&source.repo, policy).map_err(|e| local(&e))?;
    let path = MetadataPath::parse(&source.path).map_err(|e| local(&e))?;
    let credentials = match &source.credentials_dir {
        Some(dir) => Credentials::from_dir(dir).map_err(|e| local(&e))?,
        None => Credentials::default(),
    };
    Ok((parsed, path, credentials))
}

/// Caps this process's data segment (heap and private mappings) and libgit2's pack indexer.
fn cap_memory(limits: &FetchLimits) -> Result<(), FetchError> {
    setrlimit(
        Resource::RLIMIT_DATA,
        limits.max_memory_bytes,
        limits.max_memory_bytes,
    )
    .map_err(|e| FetchError::Local(format!("failed to cap the fetch worker's memory: {e}")))?;
    crate::transport::set_pack_limits(limits.max_objects, limits.max_object_bytes())
}
