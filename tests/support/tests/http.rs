//! Smart HTTP server: clone, basic auth, the request log, chunked pushes, byte counts, stalls.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate_test_support::{MIB, RepoBuilder, SmartHttp, git, run};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret";

#[test]
fn clone_without_auth_and_the_request_log() {
    let repo = RepoBuilder::new()
        .file("bagit/data/ro-crate-metadata.json", "{}")
        .commit("one")
        .build_bare()
        .expect("fixture");
    let http = SmartHttp::start(repo.base_dir()).expect("start http");
    let url = http.url("repo");
    assert_eq!(
        url,
        format!("http://127.0.0.1:{}/repo.git", http.addr().port())
    );

    // ls-remote in protocol v0 (what libgit2 speaks): one GET, no POST at all
    let refs = run(git().args([
        "-c",
        "protocol.version=0",
        "ls-remote",
        &url,
        "refs/heads/main",
    ]))
    .expect("ls-remote");
    assert!(refs.starts_with(&repo.head("main")), "{refs}");
    assert_eq!(
        http.requests(),
        ["GET /repo.git/info/refs?service=git-upload-pack auth=no 200"],
        "ls-remote lists refs only"
    );
    assert!(
        !http
            .request_log()
            .iter()
            .any(crate_test_support::Request::is_upload_pack)
    );
    assert_eq!(http.request_log()[0].git_protocol, None);
    assert!(http.bytes_sent() > 0);

    // ls-remote in protocol v2 (git's default): the ref listing is a POST, but not a fetch
    http.clear();
    run(git().args(["ls-remote", &url])).expect("ls-remote");
    assert_eq!(
        http.requests(),
        [
            "GET /repo.git/info/refs?service=git-upload-pack auth=no 200",
            "POST /repo.git/git-upload-pack [ls-refs] auth=no 200",
        ]
    );
    assert_eq!(
        http.request_log()[0].git_protocol.as_deref(),
        Some("version=2")
    );
    assert!(
        !http
            .request_log()
            .iter()
            .any(crate_test_support::Request::is_fetch)
    );

    // clone: refs, then objects
    http.clear();
    let work = tempfile::tempdir().expect("tempdir");
    run(git()
        .args(["clone", "--quiet", "--bare", &url])
        .arg(work.path().join("c.git")))
    .expect("clone over http");
    let log = http.request_log();
    assert!(
        log.iter().any(|r| r.is_fetch() && r.status == 200),
        "{log:?}"
    );
    assert!(
        http.requests()
            .contains(&"POST /repo.git/git-upload-pack [fetch] auth=no 200".to_owned()),
        "{:?}",
        http.requests()
    );
    assert!(http.bytes_sent() > 0 && http.bytes_received() > 0);
    let fetched: u64 = log.iter().map(|r| r.response_bytes).sum();
    assert_eq!(fetched, http.bytes_sent());

    // unknown repository: 404 from http-backend, logged
    let out = git()
        .args(["ls-remote", &http.url("nope")])
        .output()
        .expect("run git");
    assert!(!out.status.success());
    assert!(
        http.requests()
            .iter()
            .any(|r| r.starts_with("GET /nope.git/info/refs") && r.ends_with(" 404")),
        "{:?}",
        http.requests()
    );
}

#[test]
fn basic_auth_rejects_wrong_and_missing_credentials() {
    let repo = RepoBuilder::new()
        .file("a", "1")
        .commit("one")
        .build_bare()
        .expect("fixture");
    let http = SmartHttp::builder()
        .basic_auth(USER, PASSWORD)
        .start(repo.base_dir())
        .expect("start http");

    // no credentials: 401, and git cannot prompt (GIT_TERMINAL_PROMPT=0)
    let out = git()
        .args(["ls-remote", &http.url("repo")])
        .output()
        .expect("run git");
    assert!(!out.status.success());
    assert_eq!(
        http.requests(),
        ["GET /repo.git/info/refs?service=git-upload-pack auth=no 401"]
    );

    // wrong password
    http.clear();
    let out = git()
        .args([
            "ls-remote",
            &http.url_with_credentials("repo", USER, "wrong"),
        ])
        .output()
        .expect("run git");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Authentication failed"), "{stderr}");
    let log = http.request_log();
    assert!(
        log.iter().any(|r| r.authorization && r.status == 401),
        "{log:?}"
    );
    assert!(log.iter().all(|r| r.status == 401), "{log:?}");

    // right password: curl first asks without credentials, then sends them
    http.clear();
    let work = tempfile::tempdir().expect("tempdir");
    run(git()
        .args(["clone", "--quiet", "--bare"])
        .arg(http.url_with_credentials("repo", USER, PASSWORD))
        .arg(work.path().join("c.git")))
    .expect("clone with credentials");
    let log = http.request_log();
    assert!(
        log.iter()
            .any(|r| r.authorization && r.status == 200 && r.is_fetch()),
        "{log:?}"
    );
    assert!(
        log.iter()
            .filter(|r| r.status == 200)
            .all(|r| r.authorization),
        "only authenticated requests succeed: {log:?}"
    );
    // the log never holds the password
    assert!(!format!("{log:?}").contains(PASSWORD));
}

#[test]
fn large_push_is_chunked_and_fetch_counts_bytes() {
    let repo = RepoBuilder::new()
        .file("a", "1")
        .commit("one")
        .build_bare()
        .expect("fixture");
    let http = SmartHttp::builder()
        .enable_push()
        .start(repo.base_dir())
        .expect("start http");
    let url = http.url("repo");

    // a client repository with a 3 MiB incompressible commit on top of main
    let work = tempfile::tempdir().expect("tempdir");
    let client = work.path().join("client.git");
    run(git()
        .args(["clone", "--quiet", "--bare", &url])
        .arg(&client))
    .expect("clone");
    let client_repo = crate_test_support::BareRepo::open(&client).expect("open");
    client_repo
        .update(|b| b.large_file("big.bin", 3 * MIB, 7).commit("big"))
        .expect("commit in client");

    http.clear();
    // git sends request bodies over http.postBuffer (1 MiB) chunked
    run(git()
        .arg("--git-dir")
        .arg(&client)
        .args(["push", "--quiet", &url, "main:main"]))
    .expect("push over http");
    assert_eq!(repo.head("main"), client_repo.head("main"));
    let log = http.request_log();
    // git first probes with a 4-byte flush packet, then sends the pack
    let push = log
        .iter()
        .filter(|r| r.target == "/repo.git/git-receive-pack")
        .max_by_key(|r| r.body_bytes)
        .unwrap_or_else(|| panic!("no receive-pack POST in {log:?}"));
    assert_eq!(push.git_command.as_deref(), Some("push"));
    assert!(push.chunked, "large push body is chunked: {push:?}");
    assert!(push.body_bytes >= 3 * MIB, "{push:?}");
    assert_eq!(push.status, 200);

    // fetching it back sends at least the blob
    http.clear();
    run(git()
        .args(["clone", "--quiet", "--bare", &url])
        .arg(work.path().join("again.git")))
    .expect("clone");
    assert!(http.bytes_sent() >= 3 * MIB, "sent {}", http.bytes_sent());
}

#[test]
fn stalled_transfer_times_out_and_drop_stops_the_server() {
    let repo = RepoBuilder::new()
        .file("a", "1")
        .commit("one")
        .build_bare()
        .expect("fixture");
    let http = SmartHttp::builder()
        .stall_upload_pack()
        .start(repo.base_dir())
        .expect("start http");
    let work = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let out = git()
        .args(["-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=1"])
        .args(["clone", "--quiet", "--bare", &http.url("repo")])
        .arg(work.path().join("c.git"))
        .output()
        .expect("run git");
    assert!(!out.status.success(), "clone of a stalled server fails");
    assert!(started.elapsed() < Duration::from_secs(20));
    let log = http.request_log();
    assert!(
        log.iter()
            .any(|r| r.git_command.as_deref() == Some("fetch") && r.status == 200),
        "{log:?}"
    );
    // the ref listing before it was answered
    assert!(
        log.iter()
            .any(|r| r.git_command.as_deref() == Some("ls-refs") && r.status == 200),
        "{log:?}"
    );

    let addr = http.addr();
    drop(http);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}
