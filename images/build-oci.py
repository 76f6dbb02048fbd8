#!/usr/bin/env python3
"""Assembles the crate-operator, crate-loader and crate-runner images without a daemon or registry.

    images/build-oci.py OUT_DIR [--registry localhost] [--tag dev]

writes OUT_DIR/crate-operator.tar, OUT_DIR/crate-loader.tar and OUT_DIR/crate-runner.tar and
prints one line per image: its reference, its manifest digest and the archive's path.

Each archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that also carries a
Docker manifest.json, so `ctr images import`, `docker load` and `podman load` all accept it. The
images mirror the final stages of Dockerfile.manager and Dockerfile.loader (paths, user,
entrypoint, labels, exposed port) on a base layer holding what gcr.io/distroless/cc-debian12
gives them: glibc and libgcc_s from Debian 12's packages, the CA bundle, /etc/passwd and
/etc/group with nonroot (65532), /home/nonroot and /tmp. The runner image is that base alone.

This is the test path (no Docker, no registry); the Dockerfiles stay the users' path. See
images/README.md.

Environment:
  MANAGER_BIN, LOADER_BIN   use these binaries instead of building them with cargo; the loader
                            must be built with `--features vendored` (no libssl, libcrypto, libz)
  CRATE_IMAGE_REGISTRY      registry prefix of the references (default localhost; --registry)
  CRATE_IMAGE_TAG           tag of the references (default dev; --tag)
  SOURCE_DATE_EPOCH         image creation time and the binaries' mtime (default 0)
  CRATE_OPERATOR_CACHE      cache root; the .deb files go to its debs/ directory
                            (default ${XDG_CACHE_HOME:-~/.cache}/crate-operator)

The host must be Debian 12 (bookworm) with current apt lists (`apt-get update`): the packages
come from its apt sources, and binaries built here link its glibc. Only the standard library is
used, plus apt-cache, apt-get, dpkg-deb, ldd and (unless both binaries are given) cargo.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The final stages of Dockerfile.manager and Dockerfile.loader, restated; tests/images.rs reads
# the Dockerfiles and fails when these drift from them.
LABEL_SOURCE = "https://github.com/lsc-sde/crate-operator"
MANAGER = {
    "name": "crate-operator",
    "env": "MANAGER_BIN",
    "cargo": ["-p", "crate-operator", "--bin", "crate-operator"],
    "labels": {
        "org.opencontainers.image.title": "crate-operator",
        "org.opencontainers.image.description": "Kubernetes operator that turns RO-Crate "
        "repositories (AnalyticsCrate) into AnalyticsDataSources",
        "org.opencontainers.image.source": LABEL_SOURCE,
        "org.opencontainers.image.licenses": "Apache-2.0",
    },
    "exposed_ports": ["8080/tcp"],
}
LOADER = {
    "name": "crate-loader",
    "env": "LOADER_BIN",
    # `vendored` links OpenSSL and libgit2 statically, as Dockerfile.loader builds it: the runner
    # image has no libssl.
    "cargo": ["-p", "crate-loader", "--bin", "crate-loader", "--features", "vendored"],
    "labels": {
        "org.opencontainers.image.title": "crate-loader",
        "org.opencontainers.image.description": "Fetches an RO-Crate from git, validates it and "
        "applies the AnalyticsDataSource (runs inside the loader Job)",
        "org.opencontainers.image.source": LABEL_SOURCE,
        "org.opencontainers.image.licenses": "Apache-2.0",
    },
    "exposed_ports": [],
}
BIN_DIR = "usr/local/bin"
USER = "65532:65532"
NONROOT = 65532

# What distroless/cc-debian12:nonroot sets, so images built FROM it and these agree.
BASE_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
]
BASE_WORKDIR = "/home/nonroot"
BASE_USER = str(NONROOT)

# distroless/cc's runtime packages that matter to these binaries: glibc, libgcc_s (whose
# copyright lives in gcc-12-base), the CA certificates, and base-files for /etc/os-release, which
# image scanners need to recognise the distribution. Libraries `ldd` reports are added to these.
BASE_PACKAGES = ["base-files", "ca-certificates", "gcc-12-base", "libc6", "libgcc-s1"]
# Linked statically into the binaries (the loader's `vendored` feature, rustls in the manager):
# finding them dynamically linked means the binary would not run on the runner image.
FORBIDDEN_LIBS = re.compile(r"^lib(ssl|crypto|z)\.so")

# Shared objects directly in a library directory (/lib/<triplet>/libc.so.6, /lib64/ld-linux...);
# deeper ones (gconv modules for iconv) are plugins these binaries never load.
SHARED_OBJECT = re.compile(r"^(usr/)?lib[^/]*/([^/]+/)?[^/]+\.so(\.[0-9.]+)?$")
BASE_FILES_KEPT = {"etc/os-release", "usr/lib/os-release", "etc/debian_version"}

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = (
    "root:x:0:\n"
    "nobody:x:65534:\n"
    "tty:x:5:\n"
    "staff:x:50:\n"
    f"nonroot:x:{NONROOT}:\n"
)
# Without it glibc asks DNS before /etc/hosts; distroless ships one for the same reason.
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def log(message):
    print(f"build-oci: {message}", file=sys.stderr, flush=True)


def fail(message):
    print(f"build-oci: error: {message}", file=sys.stderr)
    sys.exit(1)


def run(args, capture=True, **kwargs):
    """Runs a command, returning its stdout; with capture=False its output goes to stderr, since
    stdout is for the digests."""
    try:
        stdout = subprocess.PIPE if capture else sys.stderr
        return subprocess.run(args, check=True, stdout=stdout, **kwargs).stdout
    except FileNotFoundError:
        fail(f"{args[0]} is not installed")
    except subprocess.CalledProcessError as e:
        fail(f"{' '.join(map(str, args))} failed ({e.returncode})")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def canonical_json(value):
    # Sorted keys and no whitespace: the bytes, hence the digests, depend on the values only.
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


# ---- host and binaries ------------------------------------------------------------------------


def check_host():
    release = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            release[key] = value.strip('"')
    except OSError:
        pass
    if release.get("ID") != "debian" or release.get("VERSION_CODENAME") != "bookworm":
        fail(
            "the host must be Debian 12 (bookworm): the runtime packages come from its apt "
            "sources, and the binaries built here link its glibc"
        )
    return run(["dpkg", "--print-architecture"], text=True).strip()


def binary(spec):
    given = os.environ.get(spec["env"])
    if given:
        path = Path(given)
    else:
        # The Dockerfiles' exact build commands, so the binaries are the ones they ship. Two cargo
        # runs, not one: features unify across the packages of one run.
        command = ["cargo", "build", "--release", "--locked", *spec["cargo"]]
        log(" ".join(command))
        run(command, capture=False, cwd=REPO)
        metadata = json.loads(
            run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=REPO)
        )
        path = Path(metadata["target_directory"]) / "release" / spec["name"]
    if not path.is_file():
        fail(f"{path} is not a file")
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        fail(f"{path} is not an ELF executable")
    return path, data


def needed_packages(path):
    """Packages owning the libraries `ldd` resolves for `path`, refusing the forbidden ones."""
    packages = set()
    for line in run(["ldd", str(path)], text=True).splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("linux-vdso"):
            continue
        if "=>" in parts:
            name, target = parts[0], parts[2]
            if target == "not":
                fail(f"{path} needs {name}, which is not installed here")
        else:
            name = target = parts[0]
        if FORBIDDEN_LIBS.match(name):
            fail(
                f"{path} links {name} dynamically; the images carry no {name} (build the loader "
                "with --features vendored)"
            )
        packages.add(owner(target))
    return packages


def owner(path):
    # With merged /usr, ldd may name /usr/lib/... for a file dpkg registered as /lib/... (or the
    # reverse).
    candidates = [path]
    if path.startswith("/usr/"):
        candidates.append(path[len("/usr") :])
    else:
        candidates.append("/usr" + path)
    for candidate in candidates:
        result = subprocess.run(
            ["dpkg", "-S", candidate], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        if result.returncode == 0:
            return result.stdout.split(":", 1)[0].strip()
    fail(f"no Debian package owns {path}")


# ---- Debian packages --------------------------------------------------------------------------


def cache_dir():
    root = os.environ.get("CRATE_OPERATOR_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = os.path.join(xdg, "crate-operator")
    return Path(root) / "debs"


def fetch(package, arch):
    """The candidate .deb of `package`, from the cache or downloaded into it."""
    show = run(["apt-cache", "show", "--no-all-versions", f"{package}:{arch}"], text=True)
    fields = dict(
        line.split(": ", 1) for line in show.splitlines() if ": " in line and line[0] != " "
    )
    version, filename, digest = fields.get("Version"), fields.get("Filename"), fields.get("SHA256")
    if not (version and filename and digest):
        fail(f"apt knows no candidate for {package} (run apt-get update)")
    # apt names the file package_version_arch.deb: the cache is keyed by version, and the
    # archive's SHA256 (from the signed index) guards what is in it.
    cache = cache_dir()
    path = cache / Path(filename).name
    if path.is_file() and sha256(path.read_bytes()) == digest:
        return path, version
    cache.mkdir(parents=True, exist_ok=True)
    log(f"downloading {package} {version} into {cache}")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        command = ["apt-get", "download", "-q", f"{package}={version}"]
        if os.geteuid() == 0:
            # As root apt drops to the _apt user, which cannot write to a private directory.
            command[1:1] = ["-o", "APT::Sandbox::User=root"]
        run(command, capture=False, cwd=tmp)
        downloaded = Path(tmp) / Path(filename).name
        if sha256(downloaded.read_bytes()) != digest:
            fail(f"{downloaded.name} does not match apt's SHA256 {digest}")
        os.replace(downloaded, path)
    return path, version


class Tree:
    """Files of a layer: path -> (TarInfo, data), written sorted with fixed metadata."""

    def __init__(self, mtime):
        self.mtime = mtime
        self.entries = {}

    def _info(self, path, kind, mode, uid=0):
        info = tarfile.TarInfo(path)
        info.type = kind
        info.mode = mode
        info.uid = info.gid = uid
        info.uname = info.gname = ""
        info.mtime = self.mtime
        return info

    def directory(self, path, mode=0o755, uid=0):
        self._parents(path)
        self.entries[path] = (self._info(path, tarfile.DIRTYPE, mode, uid), None)

    def file(self, path, data, mode=0o644):
        self._parents(path)
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.entries[path] = (info, data)

    def symlink(self, path, target):
        self._parents(path)
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.entries[path] = (info, None)

    def _parents(self, path):
        parent = os.path.dirname(path)
        if parent and parent not in self.entries:
            self.directory(parent)

    def tar(self):
        out = io.BytesIO()
        # PAX writes plain ustar headers unless a name does not fit, and never records times
        # beyond the header's mtime.
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                info, data = self.entries[path]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return out.getvalue()


def add_package(tree, deb, package, certificates):
    data = run(["dpkg-deb", "--fsys-tarfile", str(deb)])
    control = run(["dpkg-deb", "--info", str(deb), "control"])
    # Image scanners (trivy, grype, syft) find distroless packages here.
    tree.file(f"var/lib/dpkg/status.d/{package}", control)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        for path, member in sorted(members.items()):
            if path.startswith("usr/share/ca-certificates/") and path.endswith(".crt"):
                certificates[path] = tar.extractfile(member).read()
                continue
            wanted = (
                SHARED_OBJECT.match(path)
                or path == f"usr/share/doc/{package}/copyright"
                or (path == f"usr/share/doc/{package}" and member.issym())
                or (package == "base-files" and path in BASE_FILES_KEPT)
            )
            if not wanted or member.isdir():
                continue
            if member.issym():
                tree.symlink(path, member.linkname)
            elif member.isfile() or member.islnk():
                # Hard links become copies: sorted order may put a link before its target.
                source = members[member.linkname.removeprefix("./")] if member.islnk() else member
                tree.file(path, tar.extractfile(source).read(), member.mode & 0o7777)
            else:
                fail(f"unexpected {path} in {deb.name}")


def base_tree(debs):
    # The base layer's content depends on the Debian packages only, so its mtimes do not follow
    # SOURCE_DATE_EPOCH: the layer, and the runner image, stay the same across source changes.
    tree = Tree(mtime=0)
    certificates = {}
    for package, deb in sorted(debs.items()):
        add_package(tree, deb, package, certificates)
    if not certificates:
        fail("ca-certificates holds no certificates")
    # What update-ca-certificates would write: every certificate, in sorted order, each ending
    # in a newline.
    bundle = b"".join(
        certificates[path] if certificates[path].endswith(b"\n") else certificates[path] + b"\n"
        for path in sorted(certificates)
    )
    tree.file("etc/ssl/certs/ca-certificates.crt", bundle)
    tree.file("etc/passwd", PASSWD.encode())
    tree.file("etc/group", GROUP.encode())
    tree.file("etc/nsswitch.conf", NSSWITCH.encode())
    tree.directory("root", 0o700)
    tree.directory("home")
    tree.directory("home/nonroot", 0o700, uid=NONROOT)
    tree.directory("tmp", 0o1777)
    return tree


# ---- OCI ----------------------------------------------------------------------------------------


class Blobs:
    def __init__(self):
        self.blobs = {}

    def add(self, media_type, data):
        digest = "sha256:" + sha256(data)
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}


def layer(tree):
    raw = tree.tar()
    out = io.BytesIO()
    # mtime 0 and no file name: the gzip header carries nothing but the data (gzip -n).
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
        gz.write(raw)
    return out.getvalue(), "sha256:" + sha256(raw)


def created_at(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def image(arch, layers, config, created, reference):
    """One image archive: the OCI layout and Docker's manifest.json, as tar bytes."""
    blobs = Blobs()
    descriptors = [blobs.add(OCI_LAYER, gzipped) for gzipped, _, _ in layers]
    config_blob = {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id, _ in layers]},
        "history": [history for _, _, history in layers],
    }
    config_descriptor = blobs.add(OCI_CONFIG, canonical_json(config_blob))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_descriptor,
        "layers": descriptors,
    }
    manifest_descriptor = blobs.add(OCI_MANIFEST, canonical_json(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                **manifest_descriptor,
                # containerd names the image after the first, skopeo and podman after the second.
                "annotations": {
                    "io.containerd.image.name": reference,
                    "org.opencontainers.image.ref.name": reference,
                },
                "platform": {"architecture": arch, "os": "linux"},
            }
        ],
    }

    def blob_path(digest):
        return "blobs/" + digest.replace(":", "/")

    docker = [
        {
            "Config": blob_path(config_descriptor["digest"]),
            "RepoTags": [reference],
            "Layers": [blob_path(d["digest"]) for d in descriptors],
        }
    ]
    tree = Tree(mtime=0)
    tree.file("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    tree.file("index.json", canonical_json(index))
    tree.file("manifest.json", canonical_json(docker))
    for digest, data in blobs.blobs.items():
        tree.file(blob_path(digest), data)
    return tree.tar(), manifest_descriptor["digest"]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    parser.add_argument(
        "--registry",
        default=os.environ.get("CRATE_IMAGE_REGISTRY", "localhost"),
        help="registry prefix of the image references (default: $CRATE_IMAGE_REGISTRY or localhost)",
    )
    parser.add_argument(
        "--tag",
        default=os.environ.get("CRATE_IMAGE_TAG", "dev"),
        help="tag of the image references (default: $CRATE_IMAGE_TAG or dev)",
    )
    args = parser.parse_args()
    try:
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    except ValueError:
        fail("SOURCE_DATE_EPOCH is not a number of seconds")
    created = created_at(epoch)
    arch = check_host()

    binaries = {spec["name"]: (spec, *binary(spec)) for spec in (MANAGER, LOADER)}
    packages = set(BASE_PACKAGES)
    for _, path, _ in binaries.values():
        packages |= needed_packages(path)
    debs, versions = {}, {}
    for package in sorted(packages):
        debs[package], versions[package] = fetch(package, arch)

    log("assembling the base layer")
    base_gz, base_diff = layer(base_tree(debs))
    base_history = {
        "created": created_at(0),
        "created_by": "images/build-oci.py: Debian bookworm "
        + ", ".join(f"{p} {versions[p]}" for p in sorted(versions))
        + "; CA bundle, passwd, group, nsswitch.conf, /home/nonroot, /tmp",
    }
    base = (base_gz, base_diff, base_history)
    base_config = {"Env": BASE_ENV, "User": BASE_USER, "WorkingDir": BASE_WORKDIR}

    # The runner is the base alone, which does not follow SOURCE_DATE_EPOCH either.
    images = [("crate-runner", [base], base_config, created_at(0))]
    for name, (spec, _, data) in sorted(binaries.items()):
        tree = Tree(mtime=epoch)
        destination = f"{BIN_DIR}/{name}"
        # 0555 as the Dockerfiles' `install -m 0555`: nobody, not even the image's user, may
        # rewrite the binary.
        tree.file(destination, data, 0o555)
        gz, diff = layer(tree)
        history = {"created": created, "created_by": f"COPY {name} /{destination}"}
        config = {
            **base_config,
            "User": USER,
            "Entrypoint": [f"/{destination}"],
            "Labels": spec["labels"],
        }
        if spec["exposed_ports"]:
            config["ExposedPorts"] = {port: {} for port in spec["exposed_ports"]}
        images.append((name, [base, (gz, diff, history)], config, created))

    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, layers, config, image_created in images:
        reference = f"{args.registry}/{name}:{args.tag}"
        archive, digest = image(arch, layers, config, image_created, reference)
        out = args.out_dir / f"{name}.tar"
        partial = out.with_name(out.name + ".partial")
        partial.write_bytes(archive)
        os.replace(partial, out)
        print(f"{reference} {digest} {out}", flush=True)


if __name__ == "__main__":
    main()
