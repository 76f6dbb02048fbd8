//! The image archives `images/build-oci.py` assembles without a daemon or registry (the test
//! path; the Dockerfiles are the users'): reproducible, in step with the Dockerfiles' final
//! stages, and holding everything the binaries need at run time.
//!
//! The script builds the release binaries with cargo unless MANAGER_BIN and LOADER_BIN name them
//! (quick when they are fresh, minutes when they are not), and its first run downloads a handful
//! of Debian packages into ~/.cache/crate-operator/debs (CRATE_OPERATOR_CACHE moves it). It needs
//! a Debian 12 host with apt lists, python3, gzip and cargo.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

const MANAGER: &str = "crate-operator";
const LOADER: &str = "crate-loader";
const RUNNER: &str = "crate-runner";
const IMAGES: [&str; 3] = [MANAGER, LOADER, RUNNER];
const NONROOT: u64 = 65_532;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory for this process under cargo's scratch space for integration tests.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("images-{}-{name}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("an old scratch directory can be removed");
    }
    dir
}

// ---- running the script -----------------------------------------------------------------------

/// One run of the script: each archive's bytes, and what it printed (reference and digest).
struct Build {
    archives: BTreeMap<&'static str, Vec<u8>>,
    printed: BTreeMap<String, (String, String)>,
}

fn build(binaries: Option<(&Path, &Path)>) -> Build {
    let out = scratch(if binaries.is_some() {
        "second"
    } else {
        "first"
    });
    let mut command = Command::new("python3");
    command
        .arg(repo().join("images/build-oci.py"))
        .arg(&out)
        .current_dir(repo());
    // The assertions expect the defaults (localhost/…:dev, time 0), whatever the caller's
    // environment says.
    for var in [
        "CRATE_IMAGE_REGISTRY",
        "CRATE_IMAGE_TAG",
        "SOURCE_DATE_EPOCH",
    ] {
        command.env_remove(var);
    }
    if let Some((manager, loader)) = binaries {
        command
            .env("MANAGER_BIN", manager)
            .env("LOADER_BIN", loader);
    }
    let output = command.output().expect("python3 runs images/build-oci.py");
    assert!(
        output.status.success(),
        "images/build-oci.py failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let archives = IMAGES
        .iter()
        .map(|&name| {
            let path = out.join(format!("{name}.tar"));
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("the script wrote no {}: {e}", path.display()));
            (name, bytes)
        })
        .collect();
    std::fs::remove_dir_all(&out).expect("the output directory can be removed");
    let stdout = String::from_utf8(output.stdout).expect("the script prints UTF-8");
    let printed = stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let [reference, digest, path] = fields[..] else {
                panic!("the script printed {line:?}, not `reference digest path`");
            };
            let name = Path::new(path)
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("an archive path")
                .to_owned();
            (name, (reference.to_owned(), digest.to_owned()))
        })
        .collect();
    Build { archives, printed }
}

/// The first build, which every test reads.
fn first() -> &'static Build {
    static FIRST: OnceLock<Build> = OnceLock::new();
    FIRST.get_or_init(|| build(None))
}

/// The first build's images, read and checked once.
fn images() -> &'static BTreeMap<&'static str, Image> {
    static IMAGES: OnceLock<BTreeMap<&'static str, Image>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        first()
            .archives
            .iter()
            .map(|(&name, bytes)| (name, Image::read(name, bytes)))
            .collect()
    })
}

// ---- tar ----------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink(String),
}

#[derive(Clone, Debug)]
struct Entry {
    /// As written, e.g. `usr/local/bin/` for a directory.
    name: String,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    owner_names: String,
    mtime: u64,
    /// Pax records: none are expected, and never times.
    pax: BTreeMap<String, String>,
    data: Vec<u8>,
}

impl Entry {
    /// The path without `./` or a trailing `/`, as paths are keyed in a root filesystem.
    fn path(&self) -> &str {
        self.name.trim_start_matches("./").trim_end_matches('/')
    }
}

fn text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8(field[..end].to_vec()).expect("tar header fields are UTF-8")
}

fn octal(field: &[u8]) -> u64 {
    let digits = text(field);
    let digits = digits.trim_matches(' ');
    if digits.is_empty() {
        0
    } else {
        u64::from_str_radix(digits, 8).expect("tar numbers are octal")
    }
}

fn size(value: u64) -> usize {
    usize::try_from(value).expect("sizes fit in memory")
}

/// `key=value` records of a pax extended header (`<length> key=value\n` each).
fn pax_records(mut data: &[u8]) -> BTreeMap<String, String> {
    let mut records = BTreeMap::new();
    while !data.is_empty() {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .expect("a pax record length");
        let length: usize = text(&data[..space]).parse().expect("a pax record length");
        let record = text(&data[space + 1..length]);
        let (key, value) = record
            .trim_end_matches('\n')
            .split_once('=')
            .expect("a pax key=value");
        records.insert(key.to_owned(), value.to_owned());
        data = &data[length..];
    }
    records
}

fn read_tar(bytes: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut offset = 0;
    let mut pax = BTreeMap::new();
    while offset + 512 <= bytes.len() {
        let header = &bytes[offset..offset + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        assert_eq!(&header[257..262], b"ustar", "a ustar header at {offset}");
        let length = size(octal(&header[124..136]));
        let data = bytes[offset + 512..offset + 512 + length].to_vec();
        offset += 512 + length.div_ceil(512) * 512;
        let typeflag = header[156];
        if typeflag == b'x' {
            pax = pax_records(&data);
            continue;
        }
        let prefix = text(&header[345..500]);
        let mut name = text(&header[..100]);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
        if let Some(path) = pax.get("path") {
            name.clone_from(path);
        }
        let kind = match typeflag {
            b'0' | 0 => Kind::File,
            b'5' => Kind::Dir,
            b'2' => Kind::Symlink(
                pax.get("linkpath")
                    .cloned()
                    .unwrap_or_else(|| text(&header[157..257])),
            ),
            other => panic!(
                "{name} has tar type {:?}, not a file, directory or symlink",
                other as char
            ),
        };
        entries.push(Entry {
            name,
            kind,
            mode: u32::try_from(octal(&header[100..108])).expect("a mode"),
            uid: octal(&header[108..116]),
            gid: octal(&header[116..124]),
            owner_names: text(&header[265..297]) + &text(&header[297..329]),
            mtime: octal(&header[136..148]),
            pax: std::mem::take(&mut pax),
            data,
        });
    }
    entries
}

fn gunzip(gzipped: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip runs");
    let mut stdin = child.stdin.take().expect("gzip's stdin is piped");
    let output = std::thread::scope(|scope| {
        // Written from another thread: gzip's output fills its pipe before it has read all input.
        scope.spawn(move || stdin.write_all(gzipped).expect("gzip reads the layer"));
        child.wait_with_output().expect("gzip finishes")
    });
    assert!(output.status.success(), "a layer is not valid gzip");
    output.stdout
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

// ---- images -------------------------------------------------------------------------------------

struct Image {
    outer: Vec<Entry>,
    reference: String,
    manifest_digest: String,
    config: Value,
    layer_digests: Vec<String>,
    layers: Vec<Vec<Entry>>,
}

/// The files of an image archive, by path.
struct Archive<'a> {
    name: &'a str,
    files: BTreeMap<&'a str, &'a [u8]>,
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

impl Archive<'_> {
    fn json(&self, path: &str) -> Value {
        let name = self.name;
        let bytes = self
            .files
            .get(path)
            .unwrap_or_else(|| panic!("{name}.tar has no {path}"));
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{name}.tar: {path}: {e}"))
    }

    /// The blob a descriptor points at, checked against the descriptor's digest, size and type.
    fn blob(&self, descriptor: &Value, media_type: &str) -> &[u8] {
        let name = self.name;
        let digest = descriptor["digest"].as_str().expect("a descriptor digest");
        assert_eq!(descriptor["mediaType"], media_type, "{name}: {digest}");
        let path = blob_path(digest);
        let bytes = self
            .files
            .get(path.as_str())
            .unwrap_or_else(|| panic!("{name}.tar lacks the blob {digest}"));
        assert_eq!(
            sha256(bytes),
            digest,
            "{name}: {path} is not what its name says"
        );
        assert_eq!(
            descriptor["size"],
            bytes.len(),
            "{name}: the size of {digest}"
        );
        bytes
    }

    /// A layer's entries, checked against its diff_id (the digest of the uncompressed tar).
    fn layer(&self, descriptor: &Value, diff_id: &Value) -> Vec<Entry> {
        let name = self.name;
        let gzipped = self.blob(descriptor, "application/vnd.oci.image.layer.v1.tar+gzip");
        // What `gzip -n` leaves out: no file name (flag 0x08) and no timestamp.
        assert_eq!(
            gzipped[3] & 0x08,
            0,
            "{name}: a layer's gzip header names a file"
        );
        assert_eq!(
            gzipped[4..8],
            [0; 4],
            "{name}: a layer's gzip header has a time"
        );
        let tar = gunzip(gzipped);
        assert_eq!(
            diff_id.as_str(),
            Some(sha256(&tar).as_str()),
            "{name}: a diff_id"
        );
        read_tar(&tar)
    }
}

impl Image {
    /// Reads an archive, checking that its OCI layout and its Docker manifest.json agree and
    /// that every blob is what its digest says.
    fn read(name: &str, archive: &[u8]) -> Image {
        let outer = read_tar(archive);
        let files = Archive {
            name,
            files: outer
                .iter()
                .filter(|e| e.kind == Kind::File)
                .map(|e| (e.path(), e.data.as_slice()))
                .collect(),
        };
        assert_eq!(
            files.json("oci-layout"),
            serde_json::json!({"imageLayoutVersion": "1.0.0"})
        );
        let index = files.json("index.json");
        assert_eq!(index["schemaVersion"], 2);
        let [descriptor] = index["manifests"]
            .as_array()
            .expect("index manifests")
            .as_slice()
        else {
            panic!("{name}: the index lists one image");
        };
        let annotations = &descriptor["annotations"];
        let reference = annotations["org.opencontainers.image.ref.name"]
            .as_str()
            .expect("a ref.name annotation")
            .to_owned();
        assert_eq!(annotations["io.containerd.image.name"], reference.as_str());
        let manifest_digest = descriptor["digest"].as_str().expect("a digest").to_owned();
        let manifest: Value = serde_json::from_slice(
            files.blob(descriptor, "application/vnd.oci.image.manifest.v1+json"),
        )
        .expect("the manifest is JSON");
        let config: Value = serde_json::from_slice(files.blob(
            &manifest["config"],
            "application/vnd.oci.image.config.v1+json",
        ))
        .expect("the config is JSON");
        assert_eq!(
            descriptor["platform"],
            serde_json::json!({"architecture": config["architecture"], "os": "linux"})
        );

        let descriptors = manifest["layers"].as_array().expect("manifest layers");
        let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
        assert_eq!(
            descriptors.len(),
            diff_ids.len(),
            "{name}: one diff_id per layer"
        );
        let layers = descriptors
            .iter()
            .zip(diff_ids)
            .map(|(descriptor, diff_id)| files.layer(descriptor, diff_id))
            .collect();
        let layer_digests: Vec<String> = descriptors
            .iter()
            .map(|d| d["digest"].as_str().expect("a digest").to_owned())
            .collect();

        // Docker's view of the same archive names the same config and layers.
        let docker = files.json("manifest.json");
        assert_eq!(
            docker,
            serde_json::json!([{
                "Config": blob_path(manifest["config"]["digest"].as_str().expect("a digest")),
                "RepoTags": [reference],
                "Layers": layer_digests.iter().map(|d| blob_path(d)).collect::<Vec<_>>(),
            }]),
            "{name}: manifest.json"
        );
        Image {
            outer,
            reference,
            manifest_digest,
            config,
            layer_digests,
            layers,
        }
    }

    /// The container's root filesystem: the layers applied in order (they hold no whiteouts).
    fn rootfs(&self) -> BTreeMap<String, Entry> {
        let mut fs = BTreeMap::new();
        for entry in self.layers.iter().flatten() {
            assert!(!entry.path().contains(".wh."), "a whiteout: {}", entry.name);
            fs.insert(entry.path().to_owned(), entry.clone());
        }
        fs
    }

    fn settings(&self) -> &Value {
        &self.config["config"]
    }
}

/// Where `path` leads inside the image, following symlinks (absolute ones from the image's root)
/// component by component, as the kernel does in the container; `None` when something is
/// missing.
fn resolve(fs: &BTreeMap<String, Entry>, path: &str) -> Option<String> {
    let mut pending: Vec<String> = path.split('/').rev().map(str::to_owned).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => resolved.push(part),
        }
        if let Kind::Symlink(target) = &fs.get(&resolved.join("/"))?.kind {
            hops += 1;
            if hops > 40 {
                return None;
            }
            resolved.pop();
            if target.starts_with('/') {
                resolved.clear();
            }
            pending.extend(target.split('/').rev().map(str::to_owned));
        }
    }
    Some(resolved.join("/"))
}

fn file<'a>(fs: &'a BTreeMap<String, Entry>, path: &str) -> Option<&'a Entry> {
    let entry = fs.get(&resolve(fs, path)?)?;
    (entry.kind == Kind::File).then_some(entry)
}

// ---- ELF ----------------------------------------------------------------------------------------

/// What the dynamic loader reads from an ELF file.
#[derive(Default)]
struct Elf {
    interpreter: Option<String>,
    needed: Vec<String>,
    /// (library file, symbol version) pairs the object cannot run without.
    requires: Vec<(String, String)>,
    /// Symbol versions a library defines.
    defines: BTreeSet<String>,
}

fn number(data: &[u8], at: usize, width: usize) -> usize {
    let mut bytes = [0; 8];
    bytes[..width].copy_from_slice(&data[at..at + width]);
    size(u64::from_le_bytes(bytes))
}

fn read_elf(data: &[u8]) -> Elf {
    const PT_LOAD: usize = 1;
    const PT_DYNAMIC: usize = 2;
    const PT_INTERP: usize = 3;
    const DT_NEEDED: usize = 1;
    const DT_STRTAB: usize = 5;
    const DT_VERDEF: usize = 0x6fff_fffc;
    const DT_VERDEFNUM: usize = 0x6fff_fffd;
    const DT_VERNEED: usize = 0x6fff_fffe;
    const DT_VERNEEDNUM: usize = 0x6fff_ffff;
    const VER_FLG_WEAK: usize = 2;

    assert_eq!(&data[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(data[4], 2, "only 64-bit ELF files are read here");
    assert_eq!(data[5], 1, "only little-endian ELF files are read here");
    let u16_at = |at| number(data, at, 2);
    let u32_at = |at| number(data, at, 4);
    let u64_at = |at| number(data, at, 8);

    let mut elf = Elf::default();
    let mut loads = Vec::new();
    let mut dynamic = None;
    let (phoff, phentsize) = (u64_at(0x20), u16_at(0x36));
    for header in (0..u16_at(0x38)).map(|i| phoff + i * phentsize) {
        let (offset, vaddr, filesz) =
            (u64_at(header + 8), u64_at(header + 16), u64_at(header + 32));
        match u32_at(header) {
            PT_LOAD => loads.push((vaddr, offset, filesz)),
            PT_DYNAMIC => dynamic = Some((offset, filesz)),
            PT_INTERP => elf.interpreter = Some(text(&data[offset..offset + filesz])),
            _ => {}
        }
    }
    let Some((offset, length)) = dynamic else {
        return elf;
    };
    let to_offset = |address: usize| {
        loads
            .iter()
            .find(|&&(vaddr, _, filesz)| (vaddr..vaddr + filesz).contains(&address))
            .map(|&(vaddr, offset, _)| address - vaddr + offset)
            .expect("dynamic addresses lie in a loaded segment")
    };
    let tags: Vec<(usize, usize)> = (offset..offset + length)
        .step_by(16)
        .map(|at| (u64_at(at), u64_at(at + 8)))
        .take_while(|&(tag, _)| tag != 0)
        .collect();
    let tag = |wanted| tags.iter().find(|&&(t, _)| t == wanted).map(|&(_, v)| v);
    let strtab = to_offset(tag(DT_STRTAB).expect("a dynamic string table"));
    let string = |index: usize| text(&data[strtab + index..]);

    elf.needed = tags
        .iter()
        .filter(|&&(t, _)| t == DT_NEEDED)
        .map(|&(_, v)| string(v))
        .collect();
    if let (Some(address), Some(count)) = (tag(DT_VERNEED), tag(DT_VERNEEDNUM)) {
        let mut need = to_offset(address);
        for _ in 0..count {
            let library = string(u32_at(need + 4));
            let mut aux = need + u32_at(need + 8);
            for _ in 0..u16_at(need + 2) {
                if u16_at(aux + 4) & VER_FLG_WEAK == 0 {
                    elf.requires
                        .push((library.clone(), string(u32_at(aux + 8))));
                }
                aux += u32_at(aux + 12);
            }
            need += u32_at(need + 12);
        }
    }
    if let (Some(address), Some(count)) = (tag(DT_VERDEF), tag(DT_VERDEFNUM)) {
        let mut def = to_offset(address);
        for _ in 0..count {
            // The first auxiliary entry names the version; further ones name its parents.
            elf.defines.insert(string(u32_at(def + u32_at(def + 12))));
            def += u32_at(def + 16);
        }
    }
    elf
}

/// Checks that `binary` can start in `fs`: its interpreter, every library it needs (and they
/// need) found where glibc's loader looks, and every symbol version defined by the library it is
/// required from. Returns the interpreter's path and the libraries' paths by the names they are
/// needed as.
fn assert_loadable(
    fs: &BTreeMap<String, Entry>,
    binary: &[u8],
    what: &str,
) -> (String, BTreeMap<String, String>) {
    let elf = read_elf(binary);
    let interpreter = elf
        .interpreter
        .clone()
        .expect("the binaries are dynamically linked");
    let interpreter_path = resolve(fs, &interpreter)
        .filter(|p| file(fs, p).is_some())
        .unwrap_or_else(|| panic!("{what}: the ELF interpreter {interpreter} is not in the image"));
    // glibc's system search path: its multiarch directory (where the interpreter lives), then
    // /usr's, then /lib and /usr/lib. The image has no ld.so.cache to look elsewhere.
    let multiarch = Path::new(&interpreter_path)
        .parent()
        .and_then(Path::to_str)
        .expect("the interpreter is in a directory")
        .to_owned();
    let search = [
        multiarch.clone(),
        format!("usr/{multiarch}"),
        "lib".to_owned(),
        "usr/lib".to_owned(),
    ];

    let mut loaded: BTreeMap<String, String> = BTreeMap::new();
    let mut objects = vec![(format!("the {what} binary"), elf)];
    let mut next = 0;
    while next < objects.len() {
        for library in objects[next].1.needed.clone() {
            if loaded.contains_key(&library) {
                continue;
            }
            let path = search
                .iter()
                .find_map(|dir| {
                    resolve(fs, &format!("{dir}/{library}")).filter(|p| file(fs, p).is_some())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{what}: {library}, needed by {}, is not in {search:?}",
                        objects[next].0
                    )
                });
            loaded.insert(library, path.clone());
            objects.push((format!("/{path}"), read_elf(&fs[&path].data)));
        }
        next += 1;
    }
    let defined: BTreeMap<&str, &BTreeSet<String>> = objects
        .iter()
        .map(|(path, elf)| (path.trim_start_matches('/'), &elf.defines))
        .collect();
    for (object, elf) in &objects {
        for (library, version) in &elf.requires {
            let path = &loaded[library];
            assert!(
                defined[path.as_str()].contains(version),
                "{what}: {object} needs {version} from {library}, which /{path} does not define"
            );
        }
    }
    (interpreter_path, loaded)
}

// ---- Dockerfiles --------------------------------------------------------------------------------

/// What a Dockerfile's final stage sets.
#[derive(Debug, Default)]
struct Stage {
    labels: BTreeMap<String, String>,
    copies: Vec<String>,
    user: Option<String>,
    entrypoint: Option<Vec<String>>,
    exposed: BTreeSet<String>,
}

/// Words as Dockerfile instructions split them: on whitespace outside double quotes, with `\`
/// escaping the next character.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut started) = (false, false);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            '\\' => {
                word.extend(chars.next());
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    assert!(!quoted, "an unterminated quote in {text:?}");
    if started {
        words.push(word);
    }
    words
}

fn final_stage(dockerfile: &str) -> Stage {
    let text = std::fs::read_to_string(repo().join(dockerfile))
        .unwrap_or_else(|e| panic!("{dockerfile}: {e}"));
    // Logical lines: comment lines dropped (also inside a continuation, as Docker does), lines
    // ending in `\` joined to the next.
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            instructions.push(std::mem::take(&mut current));
        }
    }
    let split = |instruction: &str| {
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((instruction, ""));
        (keyword.to_ascii_uppercase(), rest.trim().to_owned())
    };
    let last_from = instructions
        .iter()
        .rposition(|i| split(i).0 == "FROM")
        .unwrap_or_else(|| panic!("{dockerfile} has no FROM"));

    let mut stage = Stage::default();
    for instruction in &instructions[last_from + 1..] {
        let (keyword, rest) = split(instruction);
        match keyword.as_str() {
            "LABEL" => {
                for word in words(&rest) {
                    let (key, value) = word
                        .split_once('=')
                        .unwrap_or_else(|| panic!("{dockerfile}: LABEL {word} is not key=value"));
                    stage.labels.insert(key.to_owned(), value.to_owned());
                }
            }
            "COPY" => stage
                .copies
                .push(words(&rest).pop().expect("COPY has a destination")),
            "USER" => stage.user = Some(rest),
            "ENTRYPOINT" => {
                stage.entrypoint = Some(serde_json::from_str(&rest).unwrap_or_else(|e| {
                    panic!("{dockerfile}: ENTRYPOINT is not in exec form ({e})")
                }));
            }
            "EXPOSE" => stage.exposed.extend(words(&rest).into_iter().map(|port| {
                if port.contains('/') {
                    port
                } else {
                    format!("{port}/tcp")
                }
            })),
            other => panic!(
                "{dockerfile}'s final stage has {other}, which images/build-oci.py does not \
                 mirror: teach it (and this test) to"
            ),
        }
    }
    stage
}

fn assert_matches_final_stage(dockerfile: &str, name: &str) {
    let stage = final_stage(dockerfile);
    let image = &images()[name];
    let settings = image.settings();

    let labels: BTreeMap<String, String> =
        serde_json::from_value(settings["Labels"].clone()).expect("the image has labels");
    assert_eq!(
        labels, stage.labels,
        "{name}: labels differ from {dockerfile}'s"
    );
    assert_eq!(
        settings["Entrypoint"],
        serde_json::json!(stage.entrypoint.expect("the final stage has an ENTRYPOINT")),
        "{name}: entrypoint"
    );
    assert_eq!(
        settings["User"].as_str(),
        stage.user.as_deref(),
        "{name}: user"
    );
    assert!(
        settings.get("Cmd").is_none(),
        "{name}: ENTRYPOINT leaves no Cmd"
    );
    let exposed: BTreeSet<String> = settings
        .get("ExposedPorts")
        .and_then(Value::as_object)
        .map(|ports| ports.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(exposed, stage.exposed, "{name}: exposed ports");

    let [destination] = stage.copies.as_slice() else {
        panic!(
            "{dockerfile}'s final stage copies one file, not {:?}",
            stage.copies
        );
    };
    let fs = image.rootfs();
    let binary = fs
        .get(destination.trim_start_matches('/'))
        .unwrap_or_else(|| panic!("{name} has nothing at {destination}"));
    assert_eq!(binary.kind, Kind::File, "{name}: {destination}");
    assert_eq!(
        format!("{:04o}", binary.mode),
        "0555",
        "{name}: {destination} is installed 0555"
    );
    assert_eq!(
        (binary.uid, binary.gid),
        (0, 0),
        "{name}: {destination} belongs to root"
    );
    assert_eq!(
        &binary.data[..4],
        b"\x7fELF",
        "{name}: {destination} is an executable"
    );
}

/// The binary a Dockerfile copies into its image, as it is in the image.
fn binary(name: &str) -> Vec<u8> {
    let path = format!("usr/local/bin/{name}");
    images()[name].rootfs()[&path].data.clone()
}

// ---- tests --------------------------------------------------------------------------------------

#[test]
fn two_builds_from_the_same_binaries_give_byte_identical_archives_and_digests() {
    let first = first();
    // The second build takes its binaries out of the first's images: a cargo build running at
    // the same time cannot change its inputs.
    let dir = scratch("binaries");
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let manager = dir.join(MANAGER);
    let loader = dir.join(LOADER);
    std::fs::write(&manager, binary(MANAGER)).expect("the manager binary is written");
    std::fs::write(&loader, binary(LOADER)).expect("the loader binary is written");
    let second = build(Some((&manager, &loader)));
    std::fs::remove_dir_all(&dir).expect("the scratch directory can be removed");

    for name in IMAGES {
        assert!(
            first.archives[name] == second.archives[name],
            "{name}.tar differs between two builds"
        );
    }
    assert_eq!(first.printed, second.printed, "the printed digests differ");
}

#[test]
fn each_archive_is_an_oci_layout_and_a_docker_archive_naming_its_image_and_digest() {
    let printed = &first().printed;
    assert_eq!(
        printed.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(IMAGES),
        "the script prints one line per image"
    );
    for name in IMAGES {
        // Image::read checks the layout, the blobs' digests and Docker's manifest.json.
        let image = &images()[name];
        assert_eq!(image.reference, format!("localhost/{name}:dev"));
        assert_eq!(
            printed[name],
            (image.reference.clone(), image.manifest_digest.clone())
        );
        assert_eq!(image.config["os"], "linux");
        assert_eq!(
            image.config["created"], "1970-01-01T00:00:00Z",
            "{name}: created"
        );
        let history = image.config["history"].as_array().expect("history");
        assert_eq!(
            history.len(),
            image.layers.len(),
            "{name}: one history entry per layer"
        );
    }
}

#[test]
fn archives_and_layers_list_sorted_entries_with_time_zero_owned_by_root_except_home_nonroot() {
    for name in IMAGES {
        let image = &images()[name];
        for (what, entries) in std::iter::once(("the archive", &image.outer))
            .chain(image.layers.iter().map(|layer| ("a layer", layer)))
        {
            let paths: Vec<&str> = entries.iter().map(Entry::path).collect();
            assert!(paths.is_sorted(), "{name}: {what} is not sorted: {paths:?}");
            for entry in entries {
                let context = format!("{name}: {} in {what}", entry.name);
                assert_eq!(entry.mtime, 0, "{context}: mtime");
                assert!(
                    entry.pax.is_empty(),
                    "{context}: pax records {:?}",
                    entry.pax
                );
                assert_eq!(entry.owner_names, "", "{context}: owner names");
                let owner = if entry.path() == "home/nonroot" {
                    NONROOT
                } else {
                    0
                };
                assert_eq!((entry.uid, entry.gid), (owner, owner), "{context}: owner");
            }
        }
    }
}

#[test]
fn the_manager_image_matches_the_final_stage_of_dockerfile_manager() {
    assert_matches_final_stage("Dockerfile.manager", MANAGER);
}

#[test]
fn the_loader_image_matches_the_final_stage_of_dockerfile_loader() {
    assert_matches_final_stage("Dockerfile.loader", LOADER);
}

#[test]
fn the_runner_image_is_the_base_the_others_are_built_on_with_no_entrypoint() {
    let runner = &images()[RUNNER];
    assert_eq!(runner.layer_digests.len(), 1, "the runner is one layer");
    for name in [MANAGER, LOADER] {
        let image = &images()[name];
        assert_eq!(
            image.layer_digests.len(),
            2,
            "{name}: the base and the binary"
        );
        assert_eq!(
            image.layer_digests[0], runner.layer_digests[0],
            "{name}'s base"
        );
        // What distroless/cc-debian12:nonroot gives an image built FROM it.
        for key in ["Env", "WorkingDir"] {
            assert_eq!(
                image.settings()[key],
                runner.settings()[key],
                "{name}: {key}"
            );
        }
    }
    let settings = runner.settings();
    assert_eq!(settings["User"], "65532");
    assert_eq!(settings["WorkingDir"], "/home/nonroot");
    assert!(
        settings["Env"]
            .as_array()
            .expect("Env")
            .contains(&Value::from(
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
            ))
    );
    assert!(settings.get("Entrypoint").is_none() && settings.get("Cmd").is_none());
}

#[test]
fn every_image_holds_the_ca_bundle_the_nonroot_user_its_home_and_a_sticky_tmp() {
    for name in IMAGES {
        let fs = images()[name].rootfs();
        let bundle = file(&fs, "etc/ssl/certs/ca-certificates.crt")
            .unwrap_or_else(|| panic!("{name} has no CA bundle"));
        let bundle = String::from_utf8_lossy(&bundle.data);
        let begins = bundle.matches("-----BEGIN CERTIFICATE-----\n").count();
        assert!(
            bundle.starts_with("-----BEGIN CERTIFICATE-----\n"),
            "{name}: a PEM bundle"
        );
        assert!(begins > 100, "{name}: {begins} certificates in the bundle");
        assert_eq!(
            bundle.matches("-----END CERTIFICATE-----\n").count(),
            begins
        );
        assert!(
            !fs.contains_key("usr/share/ca-certificates"),
            "{name}: the certificates are in the bundle only"
        );

        let passwd = String::from_utf8_lossy(&file(&fs, "etc/passwd").expect("/etc/passwd").data)
            .into_owned();
        assert!(passwd.starts_with("root:x:0:0:"), "{name}: {passwd}");
        assert!(
            passwd
                .lines()
                .any(|l| l == "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin"),
            "{name}: {passwd}"
        );
        let group =
            String::from_utf8_lossy(&file(&fs, "etc/group").expect("/etc/group").data).into_owned();
        assert!(
            group.lines().any(|l| l == "nonroot:x:65532:"),
            "{name}: {group}"
        );

        let home = &fs["home/nonroot"];
        assert_eq!(home.kind, Kind::Dir);
        assert_eq!(
            (home.uid, home.gid),
            (NONROOT, NONROOT),
            "{name}: /home/nonroot's owner"
        );
        let tmp = &fs["tmp"];
        assert_eq!(
            (tmp.kind.clone(), format!("{:04o}", tmp.mode)),
            (Kind::Dir, "1777".to_owned()),
            "{name}: /tmp"
        );
    }
}

#[test]
fn every_library_and_symbol_version_the_binaries_need_is_in_their_images_and_the_runner() {
    let manager = binary(MANAGER);
    let loader = binary(LOADER);
    // The runner runs the loader the init container copied out of the loader image.
    for (image, binary, what) in [
        (MANAGER, &manager, "the manager in its image"),
        (LOADER, &loader, "the loader in its image"),
        (RUNNER, &loader, "the loader in the runner image"),
    ] {
        let (_, libraries) = assert_loadable(&images()[image].rootfs(), binary, what);
        assert!(
            libraries.contains_key("libc.so.6"),
            "{what}: libc is among {libraries:?}"
        );
        assert!(
            !libraries
                .keys()
                .any(|l| l.starts_with("libssl") || l.starts_with("libcrypto")),
            "{what}: OpenSSL is linked statically, not loaded from {libraries:?}"
        );
    }
}

#[test]
fn the_binaries_start_with_nothing_but_their_images_loader_and_libraries() {
    for name in [MANAGER, LOADER] {
        let fs = images()[name].rootfs();
        let binary = binary(name);
        let (interpreter, libraries) = assert_loadable(&fs, &binary, name);
        // The image's loader, its libraries under the names they are needed as, and the binary,
        // written out; the image's loader then runs the binary with those libraries only (no
        // ld.so.cache; the directory is searched first, and assert_loadable showed it is enough).
        let root = scratch(&format!("root-{name}"));
        let program = format!("usr/local/bin/{name}");
        let files = libraries
            .iter()
            .map(|(needed, path)| (format!("needed/{needed}"), path))
            .chain([
                (interpreter.clone(), &interpreter),
                (program.clone(), &program),
            ]);
        for (target, source) in files {
            let target = root.join(target);
            std::fs::create_dir_all(target.parent().expect("a parent")).expect("a directory");
            std::fs::write(&target, &fs[source].data).expect("a file is written");
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(fs[source].mode))
                .expect("the file's mode is set");
        }
        let output = Command::new(root.join(&interpreter))
            .arg("--inhibit-cache")
            .arg("--library-path")
            .arg(root.join("needed"))
            .arg(root.join(&program))
            .arg("--help")
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("LD_PRELOAD")
            .output()
            .expect("the image's dynamic loader runs");
        std::fs::remove_dir_all(&root).expect("the scratch root can be removed");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("Usage:"),
            "{name} --help on the image's glibc ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
