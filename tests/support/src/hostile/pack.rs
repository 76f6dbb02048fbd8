//! Crafted git packfiles (version 2) and deltas, valid or not, for testing a client's limits.
//!
//! A pack is `PACK`, the version (2), the number of entries (32-bit big-endian), the entries,
//! and the SHA-1 of everything before it. Each entry is a header (type and inflated size as a
//! varint) followed by zlib data; a delta entry also names its base, by a negative offset in the
//! pack (`OFS_DELTA`) or by object id (`REF_DELTA`). A delta is the base size, the result size
//! (varints) and copy or insert instructions. See git's `Documentation/gitformat-pack.txt`.
//!
//! [`PackBuilder`] writes exactly what it is told: the object count it claims can differ from
//! the entries it holds, a commit may name a tree that is not in the pack, a tree entry can have
//! any mode, name and id, and deltas carry whatever instructions the caller encodes (see
//! [`encode_delta`] and [`copy_bomb`]).

use std::fmt::{self, Write as _};
use std::io::{self, Write as _};

use flate2::Compression;
use flate2::write::ZlibEncoder;
use sha1::{Digest, Sha1};

use crate::Result;
use crate::process::{AUTHOR_EMAIL, AUTHOR_NAME};

/// A SHA-1 object id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 20]);

impl ObjectId {
    /// Parses 40 hex digits.
    pub fn from_hex(digits: &str) -> Result<Self> {
        let mut id = [0u8; 20];
        hex::decode_to_slice(digits, &mut id).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("object id {digits:?} is not 40 hex digits"),
            )
        })?;
        Ok(Self(id))
    }

    /// The 40 lowercase hex digits.
    pub fn hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The four object types (their pack type numbers are the discriminants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A commit (type 1).
    Commit = 1,
    /// A tree (type 2).
    Tree = 2,
    /// A blob (type 3).
    Blob = 3,
    /// An annotated tag (type 4).
    Tag = 4,
}

impl ObjectKind {
    /// The name git uses in object headers and `cat-file -t`: `commit`, `tree`, `blob`, `tag`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Tree => "tree",
            Self::Blob => "blob",
            Self::Tag => "tag",
        }
    }
}

/// Pack type number of an `OFS_DELTA` entry.
const OFS_DELTA: u8 = 6;
/// Pack type number of a `REF_DELTA` entry.
const REF_DELTA: u8 = 7;

/// The id git gives an object: the SHA-1 of `"<kind> <len>\0"` followed by `data`.
pub fn object_id(kind: ObjectKind, data: &[u8]) -> ObjectId {
    let mut hasher = Sha1::new();
    hasher.update(format!("{} {}\0", kind.name(), data.len()).as_bytes());
    hasher.update(data);
    ObjectId(hasher.finalize().into())
}

/// One entry of a tree object, written exactly as given (nothing is checked, so a blob mode may
/// name a tree, a name may contain `/` or be `..`, and the mode may be any text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeItem {
    /// The octal mode as written in the tree: `100644`, `100755`, `120000`, `160000`, `40000`.
    pub mode: Vec<u8>,
    /// The entry name.
    pub name: Vec<u8>,
    /// The id of the object it points at.
    pub id: ObjectId,
}

impl TreeItem {
    /// An entry with any mode (e.g. `"100644"` pointing at a tree id).
    pub fn new(mode: &str, name: impl AsRef<[u8]>, id: ObjectId) -> Self {
        Self {
            mode: mode.as_bytes().to_vec(),
            name: name.as_ref().to_vec(),
            id,
        }
    }

    /// A regular file: mode `100644`.
    pub fn file(name: impl AsRef<[u8]>, id: ObjectId) -> Self {
        Self::new("100644", name, id)
    }

    /// A folder: mode `40000`.
    pub fn dir(name: impl AsRef<[u8]>, id: ObjectId) -> Self {
        Self::new("40000", name, id)
    }

    /// Whether the mode is git's folder mode (`40000`), for [`sort_tree`].
    fn is_dir(&self) -> bool {
        self.mode == b"40000" || self.mode == b"040000"
    }
}

/// Sorts entries the way git requires in a tree: by name, a folder's name compared as if it
/// ended with `/`.
pub fn sort_tree(items: &mut [TreeItem]) {
    items.sort_by(|a, b| {
        let key = |item: &TreeItem| {
            let mut name = item.name.clone();
            if item.is_dir() {
                name.push(b'/');
            }
            name
        };
        key(a).cmp(&key(b))
    });
}

/// The raw content of a tree object: for each item, in the given order, `<mode> <name>\0` and
/// the 20-byte id. (Git requires [`sort_tree`] order; this does not sort.)
pub fn tree_bytes(items: &[TreeItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(&item.mode);
        out.push(b' ');
        out.extend_from_slice(&item.name);
        out.push(0);
        out.extend_from_slice(&item.id.0);
    }
    out
}

/// Fixed author, committer and time (2023-11-14T22:13:20Z) of crafted commits and tags, so
/// their ids are the same on every run.
const SIGNATURE_TIME: &str = "1700000000 +0000";

/// The raw content of a commit object with `tree`, `parents` and `message` (fixed author and
/// committer, the same as [`crate::RepoBuilder`]'s).
pub fn commit_bytes(tree: ObjectId, parents: &[ObjectId], message: &str) -> Vec<u8> {
    let mut text = format!("tree {tree}\n");
    for parent in parents {
        let _ = writeln!(text, "parent {parent}");
    }
    let _ = write!(
        text,
        "author {AUTHOR_NAME} <{AUTHOR_EMAIL}> {SIGNATURE_TIME}\n\
         committer {AUTHOR_NAME} <{AUTHOR_EMAIL}> {SIGNATURE_TIME}\n\n{message}\n"
    );
    text.into_bytes()
}

/// The raw content of an annotated tag object named `name` pointing at `target` (of type
/// `target_kind`, which is written as given and not checked).
pub fn tag_bytes(target: ObjectId, target_kind: ObjectKind, name: &str, message: &str) -> Vec<u8> {
    format!(
        "object {target}\ntype {}\ntag {name}\n\
         tagger {AUTHOR_NAME} <{AUTHOR_EMAIL}> {SIGNATURE_TIME}\n\n{message}\n",
        target_kind.name()
    )
    .into_bytes()
}

/// One delta instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaOp {
    /// Copy `len` bytes of the base from `offset`. A length over 16 MiB − 1 (the most one
    /// instruction can say) is written as several instructions; a length of 0 is written with
    /// no size bytes, which git reads as 65536.
    Copy {
        /// Where in the base to copy from.
        offset: u32,
        /// How many bytes to copy.
        len: u32,
    },
    /// Insert these bytes; more than 127 are written as several instructions, and an empty
    /// insert as the reserved opcode 0 (which git rejects).
    Insert(Vec<u8>),
    /// These bytes verbatim, e.g. a truncated or reserved instruction.
    Raw(Vec<u8>),
}

/// Longest copy one instruction can express (three size bytes).
const MAX_COPY: u32 = 0x00ff_ffff;

/// Appends a delta size varint (7 bits a byte, least significant first).
fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends one copy instruction: only the non-zero offset and size bytes are written, and a
/// size of exactly 65536 is written with no size bytes (as git does).
fn push_copy(out: &mut Vec<u8>, offset: u32, len: u32) {
    let at = out.len();
    out.push(0x80);
    let mut op = 0x80u8;
    for (i, byte) in offset.to_le_bytes().into_iter().enumerate() {
        if byte != 0 {
            op |= 1 << i;
            out.push(byte);
        }
    }
    if len != 0x10000 {
        for (i, byte) in len.to_le_bytes().into_iter().take(3).enumerate() {
            if byte != 0 {
                op |= 0x10 << i;
                out.push(byte);
            }
        }
    }
    out[at] = op;
}

/// A delta: `base_len` and `result_len` (as claimed: nothing checks them against the
/// instructions) followed by `ops`.
pub fn encode_delta(base_len: u64, result_len: u64, ops: &[DeltaOp]) -> Vec<u8> {
    let mut out = Vec::new();
    push_varint(&mut out, base_len);
    push_varint(&mut out, result_len);
    for op in ops {
        match op {
            DeltaOp::Copy { offset, len } => {
                let mut offset = *offset;
                let mut left = *len;
                loop {
                    let n = left.min(MAX_COPY);
                    push_copy(&mut out, offset, n);
                    left -= n;
                    offset = offset.wrapping_add(n);
                    if left == 0 {
                        break;
                    }
                }
            }
            DeltaOp::Insert(bytes) if bytes.is_empty() => out.push(0),
            DeltaOp::Insert(bytes) => {
                for chunk in bytes.chunks(0x7f) {
                    // chunk.len() <= 127
                    out.push(u8::try_from(chunk.len()).unwrap_or(0x7f));
                    out.extend_from_slice(chunk);
                }
            }
            DeltaOp::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
    out
}

/// A delta whose result is `result_len` bytes made of the first `min(base_len, 16 MiB − 1)`
/// bytes of a `base_len`-byte base, copied again and again (the last copy shorter). It costs a
/// few bytes per copy and compresses about 1000:1, so a small pack expands to a huge object:
/// a 16 MiB − 1 base of zeros and `result_len` = 2 GiB make a pack of 16 KiB (16,389 bytes at
/// zlib level 9) that inflates to 2 GiB. With `base_len` 0 the delta has no instructions (and
/// still claims `result_len`).
pub fn copy_bomb(base_len: u64, result_len: u64) -> Vec<u8> {
    let chunk = u32::try_from(base_len.min(u64::from(MAX_COPY))).unwrap_or(MAX_COPY);
    let mut out = Vec::new();
    push_varint(&mut out, base_len);
    push_varint(&mut out, result_len);
    if chunk == 0 {
        return out;
    }
    let mut left = result_len;
    while left > 0 {
        let n = u32::try_from(left.min(u64::from(chunk))).unwrap_or(chunk);
        push_copy(&mut out, 0, n);
        left -= u64::from(n);
    }
    out
}

/// Reads a delta size varint at `*pos`.
fn read_varint(delta: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = *delta.get(*pos).ok_or_else(|| bad_delta("truncated size"))?;
        *pos += 1;
        if shift > 63 {
            return Err(bad_delta("size varint too long"));
        }
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
}

fn bad_delta(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad delta: {msg}"))
}

/// Applies `delta` to `base` as git does, handing the result to `sink` piece by piece (so a
/// huge result needs no memory); returns the result length. Fails where git would: a base of
/// the wrong size, a copy outside the base, opcode 0, or a result of the wrong size.
pub fn apply_delta_to(base: &[u8], delta: &[u8], mut sink: impl FnMut(&[u8])) -> Result<u64> {
    let mut pos = 0;
    let base_len = read_varint(delta, &mut pos)?;
    if base_len != base.len() as u64 {
        return Err(bad_delta("base size mismatch"));
    }
    let result_len = read_varint(delta, &mut pos)?;
    let mut written = 0u64;
    while pos < delta.len() {
        let op = delta[pos];
        pos += 1;
        if op & 0x80 != 0 {
            let mut arg = |bit: u8, shift: u32| -> Result<u32> {
                if op & bit == 0 {
                    return Ok(0);
                }
                let byte = *delta.get(pos).ok_or_else(|| bad_delta("truncated copy"))?;
                pos += 1;
                Ok(u32::from(byte) << shift)
            };
            let offset = arg(0x01, 0)? | arg(0x02, 8)? | arg(0x04, 16)? | arg(0x08, 24)?;
            let mut len = arg(0x10, 0)? | arg(0x20, 8)? | arg(0x40, 16)?;
            if len == 0 {
                len = 0x10000;
            }
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            let end = start
                .checked_add(usize::try_from(len).map_err(io::Error::other)?)
                .filter(|&end| end <= base.len())
                .ok_or_else(|| bad_delta("copy outside the base"))?;
            sink(&base[start..end]);
            written += u64::from(len);
        } else if op != 0 {
            let end = pos + usize::from(op);
            let bytes = delta
                .get(pos..end)
                .ok_or_else(|| bad_delta("truncated insert"))?;
            sink(bytes);
            pos = end;
            written += u64::from(op);
        } else {
            return Err(bad_delta("opcode 0"));
        }
        if written > result_len {
            return Err(bad_delta("result longer than claimed"));
        }
    }
    if written == result_len {
        Ok(written)
    } else {
        Err(bad_delta("result shorter than claimed"))
    }
}

/// The result of applying `delta` to `base`, in memory.
pub fn apply_delta(base: &[u8], delta: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    apply_delta_to(base, delta, |piece| out.extend_from_slice(piece))?;
    Ok(out)
}

/// The id of the object a delta makes from `base` (of type `kind`), computed while streaming:
/// a 2 GiB copy bomb takes a few seconds and no memory.
pub fn delta_result_id(kind: ObjectKind, base: &[u8], delta: &[u8]) -> Result<ObjectId> {
    let mut pos = 0;
    read_varint(delta, &mut pos)?;
    let result_len = read_varint(delta, &mut pos)?;
    let mut hasher = Sha1::new();
    hasher.update(format!("{} {result_len}\0", kind.name()).as_bytes());
    apply_delta_to(base, delta, |piece| hasher.update(piece))?;
    Ok(ObjectId(hasher.finalize().into()))
}

/// One entry of a pack being built.
#[derive(Debug, Clone)]
enum Entry {
    Object {
        kind: ObjectKind,
        data: Vec<u8>,
        id: ObjectId,
    },
    OfsDelta {
        base: usize,
        delta: Vec<u8>,
    },
    RefDelta {
        base: ObjectId,
        delta: Vec<u8>,
    },
    Raw(Vec<u8>),
}

/// Builds a version 2 packfile entry by entry.
///
/// ```
/// use crate_test_support::hostile::pack::{PackBuilder, TreeItem};
/// let mut pack = PackBuilder::new();
/// let blob = pack.blob(b"{}");
/// let tree = pack.tree(&[TreeItem::file("ro-crate-metadata.json", blob)]);
/// let commit = pack.commit(tree, &[], "crafted");
/// let bytes = pack.build();
/// assert_eq!(&bytes[..4], b"PACK");
/// # let _ = commit;
/// ```
#[derive(Debug, Clone)]
pub struct PackBuilder {
    entries: Vec<Entry>,
    claimed: Option<u32>,
    level: u32,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackBuilder {
    /// An empty pack (zlib level 6, git's default).
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            claimed: None,
            level: 6,
        }
    }

    /// Adds a whole object of any type with any content; returns its id.
    pub fn object(&mut self, kind: ObjectKind, data: impl Into<Vec<u8>>) -> ObjectId {
        let data = data.into();
        let id = object_id(kind, &data);
        self.entries.push(Entry::Object { kind, data, id });
        id
    }

    /// Adds a blob.
    pub fn blob(&mut self, data: impl Into<Vec<u8>>) -> ObjectId {
        self.object(ObjectKind::Blob, data)
    }

    /// Adds a tree with `items` in the given order (see [`sort_tree`]); the objects they name
    /// need not be in the pack.
    pub fn tree(&mut self, items: &[TreeItem]) -> ObjectId {
        self.object(ObjectKind::Tree, tree_bytes(items))
    }

    /// Adds a commit of `tree` (which need not be in the pack) with `parents`.
    pub fn commit(&mut self, tree: ObjectId, parents: &[ObjectId], message: &str) -> ObjectId {
        self.object(ObjectKind::Commit, commit_bytes(tree, parents, message))
    }

    /// Adds an annotated tag object `name` pointing at `target` (said to be a `target_kind`).
    pub fn tag(
        &mut self,
        target: ObjectId,
        target_kind: ObjectKind,
        name: &str,
        message: &str,
    ) -> ObjectId {
        self.object(
            ObjectKind::Tag,
            tag_bytes(target, target_kind, name, message),
        )
    }

    /// Adds an `OFS_DELTA` entry on the whole object `base`, which must be in the pack already;
    /// returns the new entry's index (for [`ofs_delta_on_entry`](Self::ofs_delta_on_entry)).
    pub fn ofs_delta(&mut self, base: ObjectId, delta: Vec<u8>) -> Result<usize> {
        let index = self
            .entries
            .iter()
            .position(|e| matches!(e, Entry::Object { id, .. } if *id == base))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("OFS_DELTA base {base} is not a whole object in this pack"),
                )
            })?;
        self.ofs_delta_on_entry(index, delta)
    }

    /// Adds an `OFS_DELTA` entry whose base is the entry at `base_index` (any kind, so delta
    /// chains can be built); returns the new entry's index.
    pub fn ofs_delta_on_entry(&mut self, base_index: usize, delta: Vec<u8>) -> Result<usize> {
        if base_index >= self.entries.len() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no entry {base_index} to be an OFS_DELTA base"),
            ));
        }
        self.entries.push(Entry::OfsDelta {
            base: base_index,
            delta,
        });
        Ok(self.entries.len() - 1)
    }

    /// Adds a `REF_DELTA` entry on `base`, which may be anywhere in the pack or nowhere (a thin
    /// pack, or a missing base); returns the new entry's index.
    pub fn ref_delta(&mut self, base: ObjectId, delta: Vec<u8>) -> usize {
        self.entries.push(Entry::RefDelta { base, delta });
        self.entries.len() - 1
    }

    /// Adds `bytes` verbatim as an entry (header and data: e.g. a bad type or a lying size).
    pub fn raw_entry(&mut self, bytes: Vec<u8>) -> usize {
        self.entries.push(Entry::Raw(bytes));
        self.entries.len() - 1
    }

    /// Makes the header claim `count` objects whatever the pack holds (e.g. `u32::MAX`).
    pub fn claim_count(&mut self, count: u32) -> &mut Self {
        self.claimed = Some(count);
        self
    }

    /// zlib level 0-9 for the entries (9 makes the smallest copy bombs).
    pub fn compression(&mut self, level: u32) -> &mut Self {
        self.level = level.min(9);
        self
    }

    /// Number of entries added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pack: header, entries in the order added, SHA-1 trailer.
    pub fn build(&self) -> Vec<u8> {
        let count = self
            .claimed
            .unwrap_or_else(|| u32::try_from(self.entries.len()).unwrap_or(u32::MAX));
        let mut out = Vec::new();
        out.extend_from_slice(b"PACK");
        out.extend_from_slice(&2u32.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        let mut offsets = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            let here = out.len();
            offsets.push(here);
            match entry {
                Entry::Object { kind, data, .. } => {
                    push_entry_header(&mut out, *kind as u8, data.len() as u64);
                    self.deflate(&mut out, data);
                }
                Entry::OfsDelta { base, delta } => {
                    push_entry_header(&mut out, OFS_DELTA, delta.len() as u64);
                    push_ofs(&mut out, (here - offsets[*base]) as u64);
                    self.deflate(&mut out, delta);
                }
                Entry::RefDelta { base, delta } => {
                    push_entry_header(&mut out, REF_DELTA, delta.len() as u64);
                    out.extend_from_slice(&base.0);
                    self.deflate(&mut out, delta);
                }
                Entry::Raw(bytes) => out.extend_from_slice(bytes),
            }
        }
        let trailer: [u8; 20] = Sha1::digest(&out).into();
        out.extend_from_slice(&trailer);
        out
    }

    fn deflate(&self, out: &mut Vec<u8>, data: &[u8]) {
        let mut encoder = ZlibEncoder::new(std::mem::take(out), Compression::new(self.level));
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(data);
        *out = encoder.finish().unwrap_or_default();
    }
}

/// Appends an entry header: type in bits 4-6 of the first byte, then the size, 4 bits first and
/// 7 bits a byte after that.
fn push_entry_header(out: &mut Vec<u8>, kind: u8, size: u64) {
    let mut byte = (kind << 4) | (size & 0x0f) as u8;
    let mut size = size >> 4;
    while size > 0 {
        out.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    out.push(byte);
}

/// Appends an `OFS_DELTA` base distance: big-endian 7-bit groups, each but the last with the
/// high bit set, where every group above the lowest counts one more (git's encoding).
fn push_ofs(out: &mut Vec<u8>, mut distance: u64) {
    let mut bytes = vec![(distance & 0x7f) as u8];
    distance >>= 7;
    while distance > 0 {
        distance -= 1;
        bytes.push(0x80 | (distance & 0x7f) as u8);
        distance >>= 7;
    }
    bytes.reverse();
    out.extend_from_slice(&bytes);
}

#[cfg(test)]
mod tests {
    use super::{
        DeltaOp, ObjectId, ObjectKind, apply_delta, copy_bomb, encode_delta, object_id, push_ofs,
    };

    #[test]
    fn object_ids_match_git() {
        // `printf '' | git hash-object --stdin` and `git hash-object -t tree /dev/null`
        assert_eq!(
            object_id(ObjectKind::Blob, b"").hex(),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert_eq!(
            object_id(ObjectKind::Tree, b"").hex(),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
        let id = ObjectId::from_hex("4b825dc642cb6eb9a060e54bf8d69288fbee4904").expect("hex");
        assert_eq!(id, object_id(ObjectKind::Tree, b""));
        assert!(ObjectId::from_hex("xyz").is_err());
    }

    #[test]
    fn deltas_round_trip() {
        let base = b"hello, world";
        let delta = encode_delta(
            12,
            17,
            &[
                DeltaOp::Copy { offset: 7, len: 5 },
                DeltaOp::Insert(b" and ".to_vec()),
                DeltaOp::Copy { offset: 0, len: 5 },
                DeltaOp::Insert(b"!!".to_vec()),
            ],
        );
        assert_eq!(
            apply_delta(base, &delta).expect("apply"),
            b"world and hello!!"
        );
        let bomb = copy_bomb(4, 10);
        assert_eq!(apply_delta(b"abcd", &bomb).expect("apply"), b"abcdabcdab");
        assert!(apply_delta(b"abc", &bomb).is_err(), "wrong base size");
    }

    #[test]
    fn ofs_distances_use_gits_encoding() {
        let enc = |d| {
            let mut out = Vec::new();
            push_ofs(&mut out, d);
            out
        };
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x00]);
        assert_eq!(enc(16511), [0xff, 0x7f]);
        assert_eq!(enc(16512), [0x80, 0x80, 0x00]);
    }
}
