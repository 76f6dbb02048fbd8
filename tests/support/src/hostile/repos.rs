//! Hostile repositories for the real servers ([`crate::GitDaemon`], [`crate::SmartHttp`]):
//! refs and objects that `git` itself refuses to make, written around its checks.
//!
//! - [`BareRepo::write_object`] stores any bytes as any object type
//!   (`git hash-object --literally`), [`BareRepo::commit_tree`] commits a tree id,
//!   [`BareRepo::write_ref`] writes a loose ref file directly (`git update-ref` refuses
//!   non-commits under `refs/heads/`), [`BareRepo::write_packed_branches`] writes `packed-refs`.
//! - [`branches_at_non_commits`], [`blob_mode_tree_entry`] and [`many_branches`] are ready-made
//!   fixtures built with them.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::Stdio;

use super::pack::{ObjectId, ObjectKind, TreeItem, tag_bytes, tree_bytes};
use crate::process::spawn;
use crate::{BareRepo, RepoBuilder, Result, run};

/// Branch of [`branches_at_non_commits`] that points at the tree of `main`.
pub const TREE_BRANCH: &str = "to-tree";
/// Branch of [`branches_at_non_commits`] that points at a blob (`ro-crate-metadata.json`).
pub const BLOB_BRANCH: &str = "to-blob";
/// Branch of [`branches_at_non_commits`] that points at an annotated tag object (of `main`).
pub const TAG_BRANCH: &str = "to-tag";

/// Date of the commits made here, so their ids are the same on every run.
const FIXED_DATE: &str = "1700000000 +0000";

/// Header of a `packed-refs` file as git writes it.
const PACKED_REFS_HEADER: &str = "# pack-refs with: peeled fully-peeled sorted \n";

impl BareRepo {
    /// Stores `data` as an object of type `kind` (`blob`, `tree`, `commit`, `tag`) with
    /// `git hash-object --literally` (no format checks) and returns its id.
    pub fn write_object(&self, kind: &str, data: &[u8]) -> Result<String> {
        let mut child = spawn(
            self.git()
                .args(["hash-object", "-t", kind, "--literally", "-w", "--stdin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("hash-object has no stdin"))?;
        let written = stdin.write_all(data);
        drop(stdin);
        let output = child.wait_with_output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "git hash-object -t {kind} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            )));
        }
        written?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Makes a commit of `tree` with `parents` and `message` (`git commit-tree`, fixed author,
    /// committer and date) and returns its id. No ref is moved.
    pub fn commit_tree(&self, tree: &str, parents: &[&str], message: &str) -> Result<String> {
        let mut cmd = self.git();
        cmd.args(["commit-tree", tree, "-m", message])
            .env("GIT_AUTHOR_DATE", FIXED_DATE)
            .env("GIT_COMMITTER_DATE", FIXED_DATE);
        for parent in parents {
            cmd.args(["-p", parent]);
        }
        run(&mut cmd)
    }

    /// Points `refname` (`refs/heads/x`) at `id` by writing the loose ref file directly: no
    /// check that `id` exists or is a commit.
    pub fn write_ref(&self, refname: &str, id: &str) -> Result<()> {
        let path = self.path().join(refname);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, format!("{id}\n"))
    }

    /// Adds `count` branches `refs/heads/many/0000000`, `.../0000001`, ... (seven digits or
    /// more) all pointing at `id`, by writing `packed-refs` directly (refs already packed are
    /// kept). A million branches take about a second.
    pub fn write_packed_branches(&self, count: usize, id: &str) -> Result<()> {
        let path = self.path().join("packed-refs");
        let existing = read_packed_refs(&path)?;
        let width = count.saturating_sub(1).to_string().len().max(7);
        let tmp = self.path().join("packed-refs.new");
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        out.write_all(PACKED_REFS_HEADER.as_bytes())?;
        // Merge the (sorted) existing entries with the (sorted) new names.
        let mut existing = existing.into_iter().peekable();
        let mut name = String::new();
        for i in 0..count {
            name.clear();
            name.push_str("refs/heads/many/");
            let _ = write!(name, "{i:0width$}");
            while let Some((_, text)) = existing.next_if(|(other, _)| *other < name) {
                out.write_all(text.as_bytes())?;
            }
            if existing.peek().is_some_and(|(other, _)| *other == name) {
                existing.next();
            }
            writeln!(out, "{id} {name}")?;
        }
        for (_, text) in existing {
            out.write_all(text.as_bytes())?;
        }
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()?;
        std::fs::rename(tmp, path)
    }
}

/// The entries of a `packed-refs` file, each ref line with the peeled line after it, in file
/// order (sorted, as git writes it); empty if there is no such file.
fn read_packed_refs(path: &Path) -> Result<Vec<(String, String)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('^') {
            if let Some((_, text)) = entries.last_mut() {
                text.push_str(&line);
                text.push('\n');
            }
            continue;
        }
        let name = line
            .split_once(' ')
            .map(|(_, n)| n.to_owned())
            .unwrap_or_default();
        entries.push((name, format!("{line}\n")));
    }
    Ok(entries)
}

/// A repository whose `main` has one commit with `ro-crate-metadata.json` (`{}`), plus branches
/// that are not commits: [`TREE_BRANCH`] points at `main`'s tree, [`BLOB_BRANCH`] at the blob
/// `ro-crate-metadata.json`, [`TAG_BRANCH`] at an annotated tag object `v1` of `main` (only the
/// branch names it; there is no `refs/tags/v1`).
pub fn branches_at_non_commits() -> Result<BareRepo> {
    let repo = RepoBuilder::new()
        .file("ro-crate-metadata.json", "{}")
        .commit("a commit among non-commits")
        .build_bare()?;
    let commit = repo.rev_parse("refs/heads/main")?;
    let tree = repo.rev_parse("refs/heads/main^{tree}")?;
    let blob = repo.rev_parse("refs/heads/main:ro-crate-metadata.json")?;
    let tag = repo.write_object(
        "tag",
        &tag_bytes(
            ObjectId::from_hex(&commit)?,
            ObjectKind::Commit,
            "v1",
            "an annotated tag",
        ),
    )?;
    repo.write_ref(&format!("refs/heads/{TREE_BRANCH}"), &tree)?;
    repo.write_ref(&format!("refs/heads/{BLOB_BRANCH}"), &blob)?;
    repo.write_ref(&format!("refs/heads/{TAG_BRANCH}"), &tag)?;
    Ok(repo)
}

/// A repository whose `main` commit has, at `path` (e.g. `ro-crate-metadata.json` or
/// `bagit/data/ro-crate-metadata.json`), an entry with the blob mode `100644` that points at a
/// tree (one holding `inner.json`). Folders on the way are ordinary. The tree is reachable with
/// its true type too, through the parent commit (whose tree has it at `payload/`), so servers
/// can pack it.
pub fn blob_mode_tree_entry(path: &str) -> Result<BareRepo> {
    let repo = RepoBuilder::new()
        .file("payload/inner.json", "{}")
        .commit("the tree that a blob entry will name")
        .build_bare()?;
    let base = repo.rev_parse("refs/heads/main")?;
    let subtree = ObjectId::from_hex(&repo.rev_parse("refs/heads/main:payload")?)?;
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let leaf = parts
        .pop()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty path"))?;
    let mut id = repo.write_object("tree", &tree_bytes(&[TreeItem::file(leaf, subtree)]))?;
    for dir in parts.iter().rev() {
        let item = TreeItem::dir(dir, ObjectId::from_hex(&id)?);
        id = repo.write_object("tree", &tree_bytes(&[item]))?;
    }
    let commit = repo.commit_tree(&id, &[&base], "a blob entry that is a tree")?;
    repo.write_ref("refs/heads/main", &commit)?;
    Ok(repo)
}

/// A repository with one commit on `main` and `count` more branches
/// (`refs/heads/many/0000000`, ...) pointing at it, written as `packed-refs`.
pub fn many_branches(count: usize) -> Result<BareRepo> {
    let repo = RepoBuilder::new()
        .file("ro-crate-metadata.json", "{}")
        .commit("one commit, many branches")
        .build_bare()?;
    let head = repo.rev_parse("refs/heads/main")?;
    repo.write_packed_branches(count, &head)?;
    Ok(repo)
}
