//! `git://` server: clone, ls-remote, several repositories, missing repository, shutdown.

use std::net::TcpStream;
use std::time::Duration;

use crate_test_support::{GitDaemon, RepoBuilder, git, run};

#[test]
fn clone_and_ls_remote_over_git_protocol() {
    let base = tempfile::tempdir().expect("tempdir");
    let repo = RepoBuilder::new()
        .file("bagit/data/ro-crate-metadata.json", "{}")
        .symlink("link", "/etc/passwd")
        .commit("one")
        .branch("dev")
        .file("dev-only", "x")
        .commit("two")
        .build_bare_in(base.path(), "crate")
        .expect("fixture");
    let other = RepoBuilder::new()
        .file("other", "y")
        .commit("other")
        .build_bare_in(base.path(), "other")
        .expect("fixture");

    let daemon = GitDaemon::start(base.path()).expect("start git daemon");
    let url = daemon.url("crate");
    assert_eq!(
        url,
        format!("git://127.0.0.1:{}/crate.git", daemon.addr().port())
    );
    assert_eq!(daemon.url("crate.git"), url);

    let refs = run(git().args(["ls-remote", &url])).expect("ls-remote");
    assert!(
        refs.contains(&format!("{}\trefs/heads/main", repo.head("main"))),
        "{refs}"
    );
    assert!(
        refs.contains(&format!("{}\trefs/heads/dev", repo.head("dev"))),
        "{refs}"
    );

    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("clone");
    run(git()
        .args([
            "clone",
            "--quiet",
            "--depth=1",
            "--branch=dev",
            "--no-checkout",
            &url,
        ])
        .arg(&dest))
    .expect("clone over git://");
    let head = run(git().arg("-C").arg(&dest).args(["rev-parse", "HEAD"])).expect("rev-parse");
    assert_eq!(head, repo.head("dev"));

    let refs = run(git().args(["ls-remote", &daemon.url(other.name())])).expect("ls-remote");
    assert!(refs.contains(&other.head("main")), "{refs}");
    assert!(daemon.connections() >= 3);
    assert!(daemon.log().contains("Request upload-pack"));
}

#[test]
fn missing_repository_is_an_error_and_drop_stops_the_server() {
    let repo = RepoBuilder::new()
        .file("a", "1")
        .commit("one")
        .build_bare()
        .expect("fixture");
    let daemon = GitDaemon::start(repo.base_dir()).expect("start git daemon");
    let out = git()
        .args(["ls-remote", &daemon.url("nope")])
        .output()
        .expect("run git");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no such repository: /nope.git"), "{stderr}");

    let addr = daemon.addr();
    drop(daemon);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "nothing listens after drop"
    );
}
