//! Reading the metadata file straight from a commit's tree, without a work tree, and looking
//! up which of the crate's data entity paths the tree has (payload presence).
//!
//! Every object is looked up by id and its type checked against what the tree says it is: a
//! repository (or a server) can claim a file where there is a directory, point a branch at a
//! tree, or leave objects out. Those are the repository's fault and permanent, so they become
//! [`FetchError::Damaged`] or [`FetchError::NotACommit`], never a retried internal error.

use std::collections::HashMap;

use git2::{ErrorCode, ObjectType, Oid, Repository};

use super::FetchError;
use crate::source::MetadataPath;

// Git tree entry modes.
const MODE_TREE: i32 = 0o040_000;
const MODE_FILE: i32 = 0o100_644;
const MODE_EXECUTABLE: i32 = 0o100_755;
const MODE_SYMLINK: i32 = 0o120_000;
const MODE_GITLINK: i32 = 0o160_000;

/// Where the commit came from, for messages.
pub(super) struct Origin<'a> {
    pub url: &'a str,
    pub branch: &'a str,
    pub revision: &'a str,
    /// The fetch's memory budget, for the message when an object does not fit.
    pub memory_limit: u64,
}

impl Origin<'_> {
    fn damaged(&self, detail: String) -> FetchError {
        FetchError::Damaged {
            url: self.url.to_owned(),
            revision: self.revision.to_owned(),
            detail,
        }
    }

    /// An object the commit needs: missing objects and unreadable ones are damage; anything
    /// else (the disk) is ours.
    fn object<'r>(
        &self,
        repo: &'r Repository,
        id: Oid,
        what: &str,
    ) -> Result<git2::Object<'r>, FetchError> {
        repo.find_object(id, None)
            .map_err(|e| self.lookup_error(&e, id, what))
    }

    /// A tree, once its header says it is one (a hostile tree entry may name a huge blob).
    fn tree<'r>(
        &self,
        repo: &'r Repository,
        id: Oid,
        what: &str,
    ) -> Result<git2::Tree<'r>, FetchError> {
        let (_, kind) = self.header(repo, id, what)?;
        if kind != ObjectType::Tree {
            return Err(self.damaged(format!(
                "{what} is recorded as a directory but is a {}",
                kind_name(Some(kind))
            )));
        }
        self.object(repo, id, what)?
            .into_tree()
            .map_err(|_| self.damaged(format!("{what} cannot be read as a tree")))
    }

    /// An object's size and type, without reading it.
    fn header(
        &self,
        repo: &Repository,
        id: Oid,
        what: &str,
    ) -> Result<(u64, ObjectType), FetchError> {
        repo.odb()
            .and_then(|odb| odb.read_header(id))
            .map(|(size, kind)| (size as u64, kind))
            .map_err(|e| self.lookup_error(&e, id, what))
    }

    fn lookup_error(&self, e: &git2::Error, id: Oid, what: &str) -> FetchError {
        match (e.code(), e.class()) {
            (ErrorCode::NotFound, _) => self.damaged(format!("{what} ({id}) is missing")),
            (_, git2::ErrorClass::NoMemory) => FetchError::MemoryExceeded {
                url: self.url.to_owned(),
                limit: self.memory_limit,
                killed: false,
            },
            _ if is_local(e) => FetchError::Local(e.message().to_owned()),
            _ => self.damaged(format!(
                "{what} ({id}) cannot be read: {}",
                crate::escape::controls(e.message())
            )),
        }
    }
}

/// Whether a libgit2 error is about this machine (disk, permissions) rather than the objects.
fn is_local(e: &git2::Error) -> bool {
    matches!(
        e.class(),
        git2::ErrorClass::Os | git2::ErrorClass::Filesystem
    )
}

fn kind_name(kind: Option<ObjectType>) -> &'static str {
    match kind {
        Some(ObjectType::Commit) => "commit",
        Some(ObjectType::Tree) => "tree",
        Some(ObjectType::Blob) => "blob",
        Some(ObjectType::Tag) => "tag",
        _ => "object of unknown type",
    }
}

/// The bytes of the file at `path` whose blob is `id` (from [`locate`]), refusing an object that
/// is not a blob or is larger than `max_bytes` before reading it.
pub(super) fn read_blob(
    repo: &Repository,
    id: Oid,
    path: &MetadataPath,
    origin: &Origin<'_>,
    max_bytes: u64,
) -> Result<Vec<u8>, FetchError> {
    let what = format!("the file {path}");
    // The header first: the blob is read whole, so its size is checked before.
    let (size, kind) = origin.header(repo, id, &what)?;
    if kind != ObjectType::Blob {
        return Err(origin.damaged(format!(
            "{path} is recorded as a file but is a {}",
            kind_name(Some(kind))
        )));
    }
    if size > max_bytes {
        return Err(FetchError::FileTooLarge {
            path: path.to_string(),
            revision: origin.revision.to_owned(),
            size,
            limit: max_bytes,
        });
    }
    let blob = origin.object(repo, id, &what)?;
    Ok(blob
        .as_blob()
        .map(|b| b.content().to_vec())
        .unwrap_or_default())
}

/// Walks `path` from the root tree of `commit`, refusing anything but trees on the way and a
/// regular file at the end, and returns that file's blob id. Only trees are read: the blob need
/// not be here yet (the partial fetch asks for it by this id).
pub(super) fn locate(
    repo: &Repository,
    commit: Oid,
    path: &MetadataPath,
    origin: &Origin<'_>,
) -> Result<Oid, FetchError> {
    let (_, kind) = origin.header(repo, commit, "the branch's commit")?;
    if kind != ObjectType::Commit {
        return Err(FetchError::NotACommit {
            url: origin.url.to_owned(),
            branch: origin.branch.to_owned(),
            kind: kind_name(Some(kind)).to_owned(),
        });
    }
    let head = origin.object(repo, commit, "the branch's commit")?;
    let tree_id = head
        .as_commit()
        .map(git2::Commit::tree_id)
        .ok_or_else(|| origin.damaged("the branch's commit cannot be read".to_owned()))?;
    let mut tree = origin.tree(repo, tree_id, "the commit's tree")?;
    let components = path.components();
    let mut walked = String::new();
    for (i, name) in components.iter().enumerate() {
        walked.push('/');
        walked.push_str(name);
        let not_found = || FetchError::FileNotFound {
            path: path.to_string(),
            revision: origin.revision.to_owned(),
        };
        let not_a_file = |kind: &str| FetchError::NotAFile {
            path: walked.clone(),
            revision: origin.revision.to_owned(),
            kind: kind.to_owned(),
        };
        let entry = tree.get_name(name).ok_or_else(not_found)?.to_owned();
        let last = i + 1 == components.len();
        match (entry.filemode(), last) {
            (MODE_TREE, false) => {
                tree = origin.tree(repo, entry.id(), &format!("the directory {walked}"))?;
            }
            (MODE_FILE | MODE_EXECUTABLE, true) => return Ok(entry.id()),
            (MODE_SYMLINK, _) => return Err(not_a_file("symbolic link")),
            (MODE_GITLINK, _) => return Err(not_a_file("submodule (gitlink)")),
            (MODE_TREE, true) => return Err(not_a_file("directory")),
            _ => return Err(not_found()),
        }
    }
    Err(FetchError::FileNotFound {
        path: path.to_string(),
        revision: origin.revision.to_owned(),
    })
}

/// Which of `paths` (relative to the directory of the metadata file) have no entry in the tree
/// of `commit`. Only trees are read, each once, and each checked to be a tree by its header
/// first (a hostile entry may call a huge blob a directory). A lookup that cannot be answered (a
/// damaged repository) counts as present: payload presence is a warning, and a false one is
/// worse than a missed one.
pub(super) fn missing(
    repo: &Repository,
    commit: Oid,
    metadata: &MetadataPath,
    paths: &[String],
) -> Vec<String> {
    let Ok(root) = repo.find_commit(commit).and_then(|c| c.tree()) else {
        return Vec::new();
    };
    let components = metadata.components();
    let crate_dir = components[..components.len().saturating_sub(1)].join("/");
    let mut walker = Walker {
        repo,
        dirs: HashMap::from([(String::new(), Dir::Tree(root))]),
    };
    paths
        .iter()
        // Deeper than any real crate; the walk recurses once per component.
        .filter(|path| path.matches('/').count() < MAX_PATH_DEPTH)
        .filter(|path| {
            let full = if crate_dir.is_empty() {
                (*path).clone()
            } else {
                format!("{crate_dir}/{path}")
            };
            walker.lookup(&full) == Dir::Absent
        })
        .cloned()
        .collect()
}

/// Paths with more components than this are not looked up (and so never reported missing).
const MAX_PATH_DEPTH: usize = 256;

/// What a path names, as far as payload presence cares.
#[derive(Clone)]
enum Dir<'r> {
    Tree(git2::Tree<'r>),
    /// Something that is not a directory (a file, a link), for the last component.
    Other,
    Absent,
    /// The repository could not say.
    Unknown,
}

impl PartialEq for Dir<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Looks paths up through the trees, remembering every directory it has read.
struct Walker<'r> {
    repo: &'r Repository,
    dirs: HashMap<String, Dir<'r>>,
}

impl<'r> Walker<'r> {
    fn lookup(&mut self, path: &str) -> Dir<'r> {
        if let Some(known) = self.dirs.get(path) {
            return known.clone();
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let found = match self.lookup(parent) {
            Dir::Tree(tree) => match tree.get_name(name) {
                None => Dir::Absent,
                Some(entry) if entry.filemode() == MODE_TREE => self.subtree(entry.id()),
                Some(_) => Dir::Other,
            },
            Dir::Other | Dir::Absent => Dir::Absent,
            Dir::Unknown => Dir::Unknown,
        };
        // Only directories are looked up again (as parents); files are asked for once.
        if matches!(found, Dir::Tree(_) | Dir::Absent | Dir::Unknown) {
            self.dirs.insert(path.to_owned(), found.clone());
        }
        found
    }

    fn subtree(&self, id: Oid) -> Dir<'r> {
        let is_tree = self
            .repo
            .odb()
            .and_then(|odb| odb.read_header(id))
            .map(|(_, kind)| kind == ObjectType::Tree);
        match is_tree {
            Ok(true) => self.repo.find_tree(id).map_or(Dir::Unknown, Dir::Tree),
            // Recorded as a directory but something else: not a directory of the crate.
            Ok(false) => Dir::Other,
            Err(_) => Dir::Unknown,
        }
    }
}
