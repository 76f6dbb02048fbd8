//! Fixture bare repositories, written in one pass by `git fast-import`.
//!
//! fast-import takes every tree entry mode directly (100644, 100755, 120000 and 160000), so
//! symlinks and gitlinks need no work tree, and thousands of objects cost one process. Commit
//! times are fixed (from 2023-11-14 on, one minute apart), so a fixture's shas are the same on
//! every run.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tempfile::TempDir;

use crate::process::{AUTHOR_EMAIL, AUTHOR_NAME, git, run, spawn, with_git_suffix};
use crate::{Result, XorShift64};

/// One mebibyte, for [`RepoBuilder::large_file`] sizes.
pub const MIB: u64 = 1024 * 1024;

/// Files per folder for [`RepoBuilder::many_files`]: fast-import inserts tree entries in linear
/// time, so 20,000 files in one folder take seconds, in folders of 1,000 a fraction of one.
const MANY_PER_FOLDER: usize = 1000;

/// Commit time of the first commit of a new fixture (2023-11-14T22:13:20Z).
const FIRST_COMMIT_TIME: i64 = 1_700_000_000;

/// The content of a staged file.
#[derive(Debug, Clone)]
enum Content {
    Bytes(Vec<u8>),
    /// `len` pseudo-random bytes from [`XorShift64`] with `seed`.
    Random {
        len: u64,
        seed: u64,
    },
    /// A gitlink: the commit sha the entry points at (it need not exist anywhere).
    Commit(String),
}

/// One change to the tree of the next commit.
#[derive(Debug, Clone)]
enum Change {
    Modify {
        mode: &'static str,
        path: String,
        content: Content,
    },
    /// `count` distinct small blobs at `dir/00000.txt`, `dir/00001.txt`, ...
    Many {
        dir: String,
        count: usize,
    },
    Delete(String),
    DeleteAll,
}

/// One step of the import, in order.
#[derive(Debug, Clone)]
enum Event {
    Commit {
        branch: String,
        message: String,
        changes: Vec<Change>,
    },
    /// Create (or move) `branch` to the tip of `from`.
    Branch { name: String, from: String },
    /// Lightweight tag at the tip of `branch`.
    Tag { name: String, branch: String },
}

/// Builds a bare repository from a script of file changes, commits, branches and tags.
///
/// Changes (`file`, `symlink`, ...) are staged and go into the next [`commit`](Self::commit) on
/// the current branch (initially `main`); every commit keeps the tree of its parent, so later
/// commits only list what changes. Nothing runs until [`build_bare`](Self::build_bare) or
/// [`build_bare_in`](Self::build_bare_in), which report every problem as an error.
///
/// ```no_run
/// use crate_test_support::RepoBuilder;
/// # fn main() -> std::io::Result<()> {
/// let repo = RepoBuilder::new()
///     .file("bagit/data/ro-crate-metadata.json", br#"{"@graph": []}"#)
///     .symlink("link", "../../x")
///     .gitlink("vendor/lib", "0123456789abcdef0123456789abcdef01234567")
///     .commit("first")
///     .branch("dev")
///     .file("bagit/data/ro-crate-metadata.json", b"{}")
///     .commit("second, on dev only")
///     .build_bare()?;
/// let main_sha = repo.head("main");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a RepoBuilder does nothing until build_bare() is called"]
pub struct RepoBuilder {
    events: Vec<Event>,
    staged: Vec<Change>,
    current: String,
    gitmodules: Vec<(String, String)>,
    bare_hooks: Vec<(String, Vec<u8>)>,
    config: Vec<(String, String)>,
    default_branch: Option<String>,
    compression: Option<u8>,
}

impl Default for RepoBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RepoBuilder {
    /// An empty script on branch `main`.
    pub fn new() -> Self {
        Self {
            events: Vec::new(),
            staged: Vec::new(),
            current: "main".to_owned(),
            gitmodules: Vec::new(),
            bare_hooks: Vec::new(),
            config: Vec::new(),
            default_branch: None,
            compression: None,
        }
    }

    fn modify(mut self, mode: &'static str, path: &str, content: Content) -> Self {
        self.staged.push(Change::Modify {
            mode,
            path: path.to_owned(),
            content,
        });
        self
    }

    /// A regular file (mode 100644) at `path` (nested folders are implied: `a/b/c.json`).
    pub fn file(self, path: &str, content: impl AsRef<[u8]>) -> Self {
        self.modify("100644", path, Content::Bytes(content.as_ref().to_vec()))
    }

    /// An executable file (mode 100755).
    pub fn executable(self, path: &str, content: impl AsRef<[u8]>) -> Self {
        self.modify("100755", path, Content::Bytes(content.as_ref().to_vec()))
    }

    /// A symlink (mode 120000) at `path` whose target is `target` (e.g. `/etc/passwd` or
    /// `../../x`); the target is stored verbatim and need not exist.
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.modify("120000", path, Content::Bytes(target.as_bytes().to_vec()))
    }

    /// A gitlink (mode 160000, a submodule's commit) at `path` pointing at commit `sha`
    /// (40 hex digits; the commit need not exist). No `.gitmodules` entry is written: use
    /// [`submodule`](Self::submodule) for that.
    pub fn gitlink(self, path: &str, sha: &str) -> Self {
        self.modify("160000", path, Content::Commit(sha.to_owned()))
    }

    /// A submodule: a gitlink at `path` plus a `.gitmodules` entry with `url`. `.gitmodules`
    /// lists every submodule added through this builder so far.
    pub fn submodule(mut self, path: &str, url: &str, sha: &str) -> Self {
        self.gitmodules.push((path.to_owned(), url.to_owned()));
        let mut text = String::new();
        for (path, url) in &self.gitmodules {
            let _ = write!(
                text,
                "[submodule \"{path}\"]\n\tpath = {path}\n\turl = {url}\n"
            );
        }
        self.gitlink(path, sha).file(".gitmodules", text)
    }

    /// A regular file of `len` incompressible pseudo-random bytes ([`XorShift64`] with `seed`),
    /// generated while streaming, so it costs no memory. Use [`MIB`] for sizes.
    pub fn large_file(self, path: &str, len: u64, seed: u64) -> Self {
        self.modify("100644", path, Content::Random { len, seed })
    }

    /// `count` small files with distinct contents, 1,000 to a folder: `dir/000/00000.txt`,
    /// `dir/000/00001.txt`, ..., `dir/001/01000.txt`, ... (file numbers have at least five
    /// digits). That is `count` blobs plus `count / 1000 + 2` trees; 20,000 files take about
    /// 0.2 s.
    pub fn many_files(mut self, dir: &str, count: usize) -> Self {
        self.staged.push(Change::Many {
            dir: dir.trim_end_matches('/').to_owned(),
            count,
        });
        self
    }

    /// An executable hook script at `.githooks/<name>` in the tree (e.g. `post-checkout`).
    /// A client that ran hooks from the tree (`core.hooksPath=.githooks`) would run it.
    pub fn tree_hook(self, name: &str, script: &str) -> Self {
        self.executable(&format!(".githooks/{name}"), script)
    }

    /// An executable hook script at `hooks/<name>` in the bare repository itself (written after
    /// the import, so no hook runs while building).
    pub fn bare_hook(mut self, name: &str, script: &str) -> Self {
        self.bare_hooks
            .push((name.to_owned(), script.as_bytes().to_vec()));
        self
    }

    /// Removes `path` (a file or a whole folder) from the next commit's tree.
    pub fn remove(mut self, path: &str) -> Self {
        self.staged.push(Change::Delete(path.to_owned()));
        self
    }

    /// Starts the next commit's tree from empty instead of from its parent's tree.
    pub fn clear(mut self) -> Self {
        self.staged.push(Change::DeleteAll);
        self.gitmodules.clear();
        self
    }

    /// Commits the staged changes on the current branch (an empty change list makes a commit
    /// with the parent's tree).
    pub fn commit(mut self, message: &str) -> Self {
        let changes = std::mem::take(&mut self.staged);
        self.events.push(Event::Commit {
            branch: self.current.clone(),
            message: message.to_owned(),
            changes,
        });
        self
    }

    /// Creates (or moves) branch `name` at the tip of the current branch and switches to it.
    /// The current branch must have a commit by then.
    pub fn branch(mut self, name: &str) -> Self {
        self.events.push(Event::Branch {
            name: name.to_owned(),
            from: self.current.clone(),
        });
        name.clone_into(&mut self.current);
        self
    }

    /// Switches to branch `name` without moving it; the first commit on a branch that does not
    /// exist yet has no parent (an orphan branch).
    pub fn checkout(mut self, name: &str) -> Self {
        name.clone_into(&mut self.current);
        self
    }

    /// A lightweight tag `name` at the tip of the current branch.
    pub fn tag(mut self, name: &str) -> Self {
        self.events.push(Event::Tag {
            name: name.to_owned(),
            branch: self.current.clone(),
        });
        self
    }

    /// Sets `key = value` in the bare repository's config (e.g. `uploadpack.allowAnySHA1InWant`).
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_owned(), value.to_owned()));
        self
    }

    /// zlib level (0-9) for the objects written by this build (default: git's, i.e. 6 for
    /// `fast-import`). Level 0 stores objects uncompressed: three times faster for large random
    /// blobs (8 MiB: 0.25 s instead of 0.75 s), which cannot be compressed anyway; servers send
    /// stored objects as they are, so small text files then travel uncompressed too.
    pub fn compression(mut self, level: u8) -> Self {
        self.compression = Some(level.min(9));
        self
    }

    /// Points the bare repository's `HEAD` at `branch` (default: `main`).
    pub fn default_branch(mut self, branch: &str) -> Self {
        self.default_branch = Some(branch.to_owned());
        self
    }

    /// Builds the repository at `<new temporary folder>/repo.git`; the folder is deleted when the
    /// returned [`BareRepo`] is dropped. Serve [`BareRepo::base_dir`] and ask for `repo.git`.
    pub fn build_bare(self) -> Result<BareRepo> {
        let dir = tempfile::Builder::new()
            .prefix("crate-test-repo-")
            .tempdir()?;
        let mut repo = self.build_bare_in(dir.path(), "repo")?;
        repo.dir = Some(dir);
        Ok(repo)
    }

    /// Builds the repository at `<base>/<name>.git` (`.git` is added unless `name` has it), so
    /// several repositories can share one folder for a server. The caller owns `base`.
    pub fn build_bare_in(self, base: &Path, name: &str) -> Result<BareRepo> {
        let name = with_git_suffix(name);
        let path = base.join(&name);
        if path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists already", path.display()),
            ));
        }
        run(git().arg("init").arg("--bare").arg("--quiet").arg(&path))?;
        let repo = BareRepo {
            path,
            name,
            dir: None,
        };
        self.apply(&repo)?;
        Ok(repo)
    }

    /// Runs the script against `repo` (new or existing).
    fn apply(self, repo: &BareRepo) -> Result<()> {
        if !self.staged.is_empty() {
            return Err(io::Error::other(
                "RepoBuilder: staged changes were never committed (call .commit(..) after them)",
            ));
        }
        for (key, value) in &self.config {
            run(repo.git().args(["config", key, value]))?;
        }
        if !self.events.is_empty() {
            import(repo, &self.events, self.compression)?;
        }
        if let Some(branch) = &self.default_branch {
            run(repo
                .git()
                .args(["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")]))?;
        }
        for (name, script) in &self.bare_hooks {
            let hooks = repo.path.join("hooks");
            std::fs::create_dir_all(&hooks)?;
            let hook = hooks.join(name);
            std::fs::write(&hook, script)?;
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    }
}

/// Streams `events` into `git fast-import` on `repo`.
fn import(repo: &BareRepo, events: &[Event], compression: Option<u8>) -> Result<()> {
    let existing: HashSet<String> =
        run(repo
            .git()
            .args(["for-each-ref", "--format=%(refname)", "refs/heads/"]))?
        .lines()
        .map(str::to_owned)
        .collect();
    // Later commits on an existing repository come after its newest commit.
    let mut time = if existing.is_empty() {
        FIRST_COMMIT_TIME
    } else {
        let newest = run(repo.git().args(["log", "-1", "--all", "--format=%ct"]))?;
        newest.parse::<i64>().unwrap_or(FIRST_COMMIT_TIME) + 60
    };

    let mut cmd = repo.git();
    if let Some(level) = compression {
        cmd.arg("-c").arg(format!("core.compression={level}"));
    }
    let mut child = spawn(
        cmd.args(["fast-import", "--quiet", "--done", "--force"])
            // glibc otherwise returns zlib's ~300 KB deflate state to the kernel after every
            // object and faults it back in for the next: 1 s of system time per 20,000 objects.
            .env(
                "GLIBC_TUNABLES",
                "glibc.malloc.trim_threshold=268435456:glibc.malloc.top_pad=67108864",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("fast-import has no stdin"))?;
    // Write in this thread; fast-import prints nothing with --quiet unless it fails, and then it
    // exits, so a write error is followed by the real reason on stderr.
    let written = write_stream(stdin, events, &existing, &mut time);
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "git fast-import failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        )));
    }
    written
}

fn write_stream(
    stdin: impl Write,
    events: &[Event],
    existing: &HashSet<String>,
    time: &mut i64,
) -> Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, stdin);
    // Branches fast-import knows in this stream; others continue from the repository's ref.
    let mut seen: HashSet<String> = HashSet::new();
    for event in events {
        match event {
            Event::Commit {
                branch,
                message,
                changes,
            } => {
                let refname = format!("refs/heads/{branch}");
                writeln!(out, "commit {refname}")?;
                writeln!(out, "author {AUTHOR_NAME} <{AUTHOR_EMAIL}> {time} +0000")?;
                writeln!(out, "committer {AUTHOR_NAME} <{AUTHOR_EMAIL}> {time} +0000")?;
                *time += 60;
                write_data(&mut out, message.as_bytes())?;
                if !seen.contains(&refname) && existing.contains(&refname) {
                    // The documented way to continue a branch of an earlier import.
                    writeln!(out, "from {refname}^0")?;
                }
                seen.insert(refname);
                for change in changes {
                    write_change(&mut out, change)?;
                }
                writeln!(out)?;
            }
            Event::Branch { name, from } => {
                let refname = format!("refs/heads/{name}");
                writeln!(out, "reset {refname}")?;
                // No `^0`: fast-import resolves a name from its own table first, then the repository.
                writeln!(out, "from refs/heads/{from}")?;
                writeln!(out)?;
                seen.insert(refname);
            }
            Event::Tag { name, branch } => {
                writeln!(out, "reset refs/tags/{name}")?;
                writeln!(out, "from refs/heads/{branch}")?;
                writeln!(out)?;
            }
        }
    }
    writeln!(out, "done")?;
    out.flush()
}

fn write_data(out: &mut impl Write, data: &[u8]) -> Result<()> {
    writeln!(out, "data {}", data.len())?;
    out.write_all(data)?;
    writeln!(out)
}

fn write_change(out: &mut impl Write, change: &Change) -> Result<()> {
    match change {
        Change::Modify {
            mode,
            path,
            content,
        } => match content {
            Content::Commit(sha) => writeln!(out, "M {mode} {sha} {}", quote(path)),
            Content::Bytes(bytes) => {
                writeln!(out, "M {mode} inline {}", quote(path))?;
                write_data(out, bytes)
            }
            Content::Random { len, seed } => {
                writeln!(out, "M {mode} inline {}", quote(path))?;
                writeln!(out, "data {len}")?;
                let mut rng = XorShift64::new(*seed);
                let mut buf = vec![0u8; 1 << 20];
                let mut left = *len;
                while left > 0 {
                    let n =
                        usize::try_from(left.min(buf.len() as u64)).map_err(io::Error::other)?;
                    rng.fill(&mut buf[..n]);
                    out.write_all(&buf[..n])?;
                    left -= n as u64;
                }
                writeln!(out)
            }
        },
        Change::Many { dir, count } => {
            let width = count.saturating_sub(1).to_string().len().max(5);
            for i in 0..*count {
                let name = format!("{:03}/{i:0width$}.txt", i / MANY_PER_FOLDER);
                let path = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                writeln!(out, "M 100644 inline {}", quote(&path))?;
                write_data(out, format!("fixture file {i} in {dir}\n").as_bytes())?;
            }
            Ok(())
        }
        Change::Delete(path) => writeln!(out, "D {}", quote(path)),
        Change::DeleteAll => writeln!(out, "deleteall"),
    }
}

/// A path as fast-import wants it: C-style quoted when it has a space, quote, backslash,
/// control character or starts with `"`.
fn quote(path: &str) -> String {
    let needs = path
        .chars()
        .any(|c| c == '"' || c == '\\' || c == ' ' || c.is_control());
    if !needs {
        return path.to_owned();
    }
    let mut out = String::from("\"");
    for c in path.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\{:03o}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One entry of [`BareRepo::ls_tree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Octal mode as git prints it: `100644`, `100755`, `120000`, `160000`, ...
    pub mode: String,
    /// `blob`, `tree` or `commit` (a gitlink).
    pub kind: String,
    /// Object id.
    pub sha: String,
    /// Path from the root of the tree.
    pub path: String,
}

/// A bare repository made by [`RepoBuilder`] (or opened with [`BareRepo::open`]).
#[derive(Debug)]
pub struct BareRepo {
    path: PathBuf,
    name: String,
    /// The temporary folder holding the repository, when this value owns it.
    dir: Option<TempDir>,
}

impl BareRepo {
    /// Wraps an existing bare repository (not deleted on drop).
    pub fn open(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?
            .to_owned();
        let path = path.canonicalize()?;
        Ok(Self {
            path,
            name,
            dir: None,
        })
    }

    /// The repository folder (`.../name.git`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder holding the repository: what a server should serve.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }

    /// The folder name, with `.git` (e.g. `repo.git`): what to ask a server for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `git --git-dir=<this repository>` with the hermetic environment of [`crate::git`].
    pub fn git(&self) -> std::process::Command {
        let mut cmd = git();
        cmd.arg("--git-dir").arg(&self.path);
        cmd
    }

    /// The full object id `spec` names (`main`, `refs/tags/v1`, `main:path/file`, ...).
    pub fn rev_parse(&self, spec: &str) -> Result<String> {
        run(self
            .git()
            .args(["rev-parse", "--verify", "--end-of-options", spec]))
    }

    /// The commit sha at the tip of `branch`.
    ///
    /// # Panics
    /// When the branch does not exist (a broken fixture); use [`rev_parse`](Self::rev_parse) to
    /// get an error instead.
    pub fn head(&self, branch: &str) -> String {
        self.rev_parse(&format!("refs/heads/{branch}^{{commit}}"))
            .unwrap_or_else(|err| panic!("branch {branch} of {}: {err}", self.path.display()))
    }

    /// Every entry of the tree of `rev`, recursively (trees themselves included).
    pub fn ls_tree(&self, rev: &str) -> Result<Vec<TreeEntry>> {
        let out = run(self.git().args(["ls-tree", "-r", "-t", "-z", rev]))?;
        out.split('\0')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (meta, path) = line
                    .split_once('\t')
                    .ok_or_else(|| io::Error::other(format!("bad ls-tree line {line:?}")))?;
                let mut meta = meta.split(' ');
                let mut next = || {
                    meta.next()
                        .map(str::to_owned)
                        .ok_or_else(|| io::Error::other(format!("bad ls-tree line {line:?}")))
                };
                Ok(TreeEntry {
                    mode: next()?,
                    kind: next()?,
                    sha: next()?,
                    path: path.to_owned(),
                })
            })
            .collect()
    }

    /// Adds commits, branches or tags to this repository with a fresh [`RepoBuilder`]: the
    /// first commit on an existing branch continues from that branch's tip. Commit times go on
    /// from the newest commit, so the result is still deterministic.
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// # let repo = crate_test_support::RepoBuilder::new().commit("a").build_bare()?;
    /// repo.update(|b| b.file("ro-crate-metadata.json", "{}").commit("second"))?;
    /// # Ok(()) }
    /// ```
    pub fn update(&self, script: impl FnOnce(RepoBuilder) -> RepoBuilder) -> Result<()> {
        script(RepoBuilder::new()).apply(self)
    }
}
