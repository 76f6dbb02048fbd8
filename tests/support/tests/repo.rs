//! Fixture repositories: modes, sizes, branches, tags, hooks and later commits, checked with the
//! git command line.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use crate_test_support::{BareRepo, MIB, RepoBuilder, TreeEntry, XorShift64, git, run};

const METADATA: &str = "bagit/data/ro-crate-metadata.json";
const SUBMODULE_SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn entries(repo: &BareRepo, rev: &str) -> HashMap<String, TreeEntry> {
    repo.ls_tree(rev)
        .expect("ls-tree of fixture")
        .into_iter()
        .map(|e| (e.path.clone(), e))
        .collect()
}

#[test]
fn tree_entries_have_the_expected_modes() {
    let repo = RepoBuilder::new()
        .file(METADATA, br#"{"@graph": []}"#)
        .executable("bin/run.sh", "#!/bin/sh\necho hi\n")
        .symlink("bagit/data/escape", "/etc/passwd")
        .symlink("rel", "../../x")
        .submodule(
            "vendor/sub",
            "https://example.invalid/sub.git",
            SUBMODULE_SHA,
        )
        .tree_hook(
            "post-checkout",
            "#!/bin/sh\ntouch /tmp/should-never-exist\n",
        )
        .file("name with spaces.txt", "quoted path")
        .commit("first")
        .build_bare()
        .expect("build fixture");

    let tree = entries(&repo, "main");
    let mode = |path: &str| {
        tree.get(path)
            .unwrap_or_else(|| panic!("{path} missing from {tree:?}"))
            .mode
            .clone()
    };
    assert_eq!(mode(METADATA), "100644");
    assert_eq!(mode("bagit/data"), "040000");
    assert_eq!(mode("bin/run.sh"), "100755");
    assert_eq!(mode("bagit/data/escape"), "120000");
    assert_eq!(mode("rel"), "120000");
    assert_eq!(mode("vendor/sub"), "160000");
    assert_eq!(tree["vendor/sub"].kind, "commit");
    assert_eq!(tree["vendor/sub"].sha, SUBMODULE_SHA);
    assert_eq!(mode(".githooks/post-checkout"), "100755");
    assert_eq!(mode("name with spaces.txt"), "100644");

    let show = |spec: &str| run(repo.git().args(["cat-file", "-p", spec])).expect("cat-file");
    assert_eq!(show("main:bagit/data/escape"), "/etc/passwd");
    assert_eq!(show("main:rel"), "../../x");
    assert_eq!(show(&format!("main:{METADATA}")), r#"{"@graph": []}"#);
    let gitmodules = show("main:.gitmodules");
    assert!(
        gitmodules.contains("[submodule \"vendor/sub\"]"),
        "{gitmodules}"
    );
    assert!(
        gitmodules.contains("url = https://example.invalid/sub.git"),
        "{gitmodules}"
    );

    // fsck is happy (gitlinks to missing commits are fine for git)
    run(repo.git().args(["fsck", "--no-dangling"])).expect("fsck");
    // the bare repository has a hooks/ folder
    assert!(repo.path().join("hooks").is_dir());
    assert_eq!(repo.name(), "repo.git");
}

#[test]
fn symlink_at_the_metadata_path() {
    let repo = RepoBuilder::new()
        .symlink(METADATA, "../../x")
        .commit("metadata is a symlink")
        .build_bare()
        .expect("build fixture");
    assert_eq!(entries(&repo, "main")[METADATA].mode, "120000");
}

#[test]
fn large_blob_is_incompressible_and_many_files_are_fast() {
    let started = Instant::now();
    let repo = RepoBuilder::new()
        .file(METADATA, "{}")
        .large_file("big.bin", 8 * MIB, 42)
        .many_files("many", 20_000)
        .commit("big")
        .build_bare()
        .expect("build fixture");
    let took = started.elapsed();

    let size = run(repo.git().args(["cat-file", "-s", "main:big.bin"])).expect("size");
    assert_eq!(size, (8 * MIB).to_string());
    // The same seed gives the same bytes as XorShift64 directly.
    let out = repo
        .git()
        .args(["cat-file", "blob", "main:big.bin"])
        .output()
        .expect("cat-file");
    assert_eq!(&out.stdout[..4096], &XorShift64::new(42).bytes(4096)[..]);

    let tree = entries(&repo, "main");
    let many = tree
        .values()
        .filter(|e| e.kind == "blob" && e.path.starts_with("many/"))
        .count();
    assert_eq!(many, 20_000);
    assert!(tree.contains_key("many/000/00000.txt") && tree.contains_key("many/019/19999.txt"));
    // pack size on disk is at least the blob size: it did not compress
    let count = run(repo.git().args(["count-objects", "-v"])).expect("count-objects");
    let size_pack: u64 = count
        .lines()
        .find_map(|l| l.strip_prefix("size-pack: "))
        .and_then(|v| v.parse().ok())
        .expect("size-pack");
    assert!(size_pack * 1024 >= 8 * MIB, "pack is {size_pack} KiB");
    eprintln!("8 MiB blob + 20,000 files built in {took:?}");
}

#[test]
fn branches_tags_and_deterministic_shas() {
    let build = || {
        RepoBuilder::new()
            .file(METADATA, "v1")
            .commit("one")
            .tag("v1")
            .branch("dev")
            .file(METADATA, "v2 on dev")
            .commit("two")
            .checkout("main")
            .file("other", "x")
            .commit("three")
            .checkout("orphan")
            .file("only", "orphan")
            .commit("orphan root")
            .build_bare()
            .expect("build fixture")
    };
    let repo = build();
    let again = build();
    assert_eq!(
        repo.head("main"),
        again.head("main"),
        "fixtures are deterministic"
    );

    let main = repo.head("main");
    let dev = repo.head("dev");
    let v1 = repo.rev_parse("refs/tags/v1").expect("tag");
    assert_ne!(main, dev);
    assert_eq!(repo.rev_parse("main~1").expect("parent"), v1);
    assert_eq!(repo.rev_parse("dev~1").expect("parent"), v1);
    let show = |spec: &str| run(repo.git().args(["cat-file", "-p", spec])).expect("cat-file");
    assert_eq!(show(&format!("dev:{METADATA}")), "v2 on dev");
    assert_eq!(show(&format!("main:{METADATA}")), "v1");
    assert!(repo.rev_parse("orphan~1").is_err(), "orphan has no parent");
    assert!(repo.rev_parse("main:only").is_err());
    let head = run(repo.git().args(["symbolic-ref", "HEAD"])).expect("HEAD");
    assert_eq!(head, "refs/heads/main");
}

#[test]
fn update_adds_a_new_commit_on_top() {
    let repo = RepoBuilder::new()
        .file(METADATA, "v1")
        .file("keep", "k")
        .commit("one")
        .branch("dev")
        .commit("dev one")
        .build_bare()
        .expect("build fixture");
    let before = repo.head("main");
    let dev_before = repo.head("dev");

    repo.update(|b| b.file(METADATA, "v2").remove("keep").commit("two"))
        .expect("update");
    let after = repo.head("main");
    assert_ne!(before, after);
    assert_eq!(repo.rev_parse("main~1").expect("parent"), before);
    assert_eq!(repo.head("dev"), dev_before, "other branches untouched");
    let tree = entries(&repo, "main");
    assert!(!tree.contains_key("keep"));
    let time = |rev: &str| run(repo.git().args(["log", "-1", "--format=%ct", rev])).expect("log");
    assert!(time("main") > time("dev"), "newer commit has a later time");

    // a later update can branch from an existing branch too
    repo.update(|b| b.checkout("dev").branch("feature").commit("feature one"))
        .expect("update");
    assert_eq!(repo.rev_parse("feature~1").expect("parent"), dev_before);
}

#[test]
fn bare_hooks_and_config_and_default_branch() {
    let repo = RepoBuilder::new()
        .file("a", "1")
        .commit("one")
        .branch("trunk")
        .bare_hook("post-update", "#!/bin/sh\nexit 0\n")
        .config("uploadpack.allowAnySHA1InWant", "true")
        .default_branch("trunk")
        .build_bare()
        .expect("build fixture");
    let hook = repo.path().join("hooks/post-update");
    let mode = std::fs::metadata(&hook)
        .expect("hook exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "hook is executable");
    let value = run(repo.git().args(["config", "uploadpack.allowAnySHA1InWant"])).expect("config");
    assert_eq!(value, "true");
    let head = run(repo.git().args(["symbolic-ref", "HEAD"])).expect("HEAD");
    assert_eq!(head, "refs/heads/trunk");
}

#[test]
fn several_repositories_share_one_folder() {
    let base = tempfile::tempdir().expect("tempdir");
    let a = RepoBuilder::new()
        .file("a", "1")
        .commit("a")
        .build_bare_in(base.path(), "a")
        .expect("a");
    let b = RepoBuilder::new()
        .file("b", "2")
        .commit("b")
        .build_bare_in(base.path(), "b.git")
        .expect("b");
    assert_eq!(a.name(), "a.git");
    assert_eq!(b.name(), "b.git");
    assert_eq!(a.base_dir(), b.base_dir());
    assert!(
        RepoBuilder::new()
            .commit("again")
            .build_bare_in(base.path(), "a")
            .is_err(),
        "existing repository is not overwritten"
    );
}

#[test]
fn errors_are_reported() {
    let err = RepoBuilder::new()
        .file("a", "1")
        .build_bare()
        .expect_err("uncommitted changes");
    assert!(err.to_string().contains("never committed"), "{err}");

    let err = RepoBuilder::new()
        .gitlink("sub", "not-a-sha")
        .commit("bad gitlink")
        .build_bare()
        .expect_err("bad sha");
    assert!(err.to_string().contains("fast-import"), "{err}");

    // git() is hermetic: no global config is read
    let global = run(git().args(["config", "--global", "--list"])).expect("config");
    assert_eq!(global, "");
    let branch = run(git().args(["config", "init.defaultBranch"])).expect("config");
    assert_eq!(branch, "main");
}
