//! The hostile servers and crafted packs, checked against the real git command line.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate_test_support::hostile::pack::{apply_delta, delta_result_id};
use crate_test_support::hostile::repos::{
    blob_mode_tree_entry, branches_at_non_commits, many_branches,
};
use crate_test_support::hostile::{
    BLOB_BRANCH, DaemonScript, DeltaOp, ObjectId, ObjectKind, PackBuilder, PackResponse,
    RefAdvertisement, Reply, ScriptedGitDaemon, ScriptedHttp, Shallow, TAG_BRANCH, TREE_BRANCH,
    TreeItem, copy_bomb, encode_delta, smart_git,
};
use crate_test_support::{GitDaemon, MIB, RepoBuilder, SmartHttp, git, run};

const METADATA: &[u8] = br#"{"@graph": ["crafted"]}"#;
const LOCALHOST_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A pack with one commit whose tree holds `ro-crate-metadata.json`.
struct Crafted {
    pack: Vec<u8>,
    commit: ObjectId,
}

fn crafted() -> Crafted {
    let mut pack = PackBuilder::new();
    let blob = pack.blob(METADATA);
    let tree = pack.tree(&[TreeItem::file("ro-crate-metadata.json", blob)]);
    let commit = pack.commit(tree, &[], "crafted");
    Crafted {
        pack: pack.build(),
        commit,
    }
}

/// A fresh bare repository to receive objects.
fn fresh_bare() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    run(git().args(["init", "--bare", "--quiet"]).arg(dir.path())).expect("git init");
    dir
}

fn in_repo(dir: &Path) -> Command {
    let mut cmd = git();
    cmd.arg("--git-dir").arg(dir);
    cmd
}

/// Runs `cmd` with `input` on stdin.
fn with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn git");
    let mut stdin = child.stdin.take().expect("stdin");
    // git may stop reading early (a rejected pack); its exit status tells.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("wait for git")
}

fn index_pack(dir: &Path, pack: &[u8]) -> Output {
    with_stdin(in_repo(dir).args(["index-pack", "--stdin"]), pack)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Spawns `cmd` quietly, waits until `server` has sent `bytes`, then kills it.
fn kill_after(mut cmd: Command, bytes: u64, sent: impl Fn(u64, Duration) -> bool) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn git");
    let reached = sent(bytes, Duration::from_secs(60));
    child.kill().expect("kill git");
    child.wait().expect("reap git");
    assert!(reached, "the server sent {bytes} bytes to a live client");
}

fn assert_stops(addr: std::net::SocketAddr, drop_server: impl FnOnce()) {
    let started = Instant::now();
    drop_server();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "drop took {:?}",
        started.elapsed()
    );
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "nothing listens on {addr} after drop"
    );
}

// ---- packs ----

#[test]
fn a_crafted_pack_with_deltas_is_accepted_by_git_index_pack() {
    let mut pack = PackBuilder::new();
    let blob = pack.blob(METADATA);
    let tree = pack.tree(&[TreeItem::file("ro-crate-metadata.json", blob)]);
    let commit = pack.commit(tree, &[], "crafted");
    let tag = pack.tag(commit, ObjectKind::Commit, "v1", "a tag");
    let base = b"the quick brown fox jumps over the lazy dog".to_vec();
    let base_id = pack.blob(base.clone());
    let ofs = encode_delta(
        base.len() as u64,
        20,
        &[
            DeltaOp::Copy { offset: 4, len: 15 },
            DeltaOp::Insert(b" cat!".to_vec()),
        ],
    );
    let refd = encode_delta(
        base.len() as u64,
        13,
        &[
            DeltaOp::Insert(b"lazy ".to_vec()),
            DeltaOp::Copy { offset: 40, len: 3 },
            DeltaOp::Insert(b" day!".to_vec()),
        ],
    );
    pack.ofs_delta(base_id, ofs.clone()).expect("base in pack");
    pack.ref_delta(base_id, refd.clone());
    let bytes = pack.build();

    let repo = fresh_bare();
    let out = index_pack(repo.path(), &bytes);
    assert!(out.status.success(), "{}", stderr(&out));
    let cat =
        |spec: &str| run(in_repo(repo.path()).args(["cat-file", "-p", spec])).expect("cat-file");
    assert_eq!(
        cat(&format!("{commit}:ro-crate-metadata.json")).as_bytes(),
        METADATA
    );
    assert_eq!(cat(&blob.hex()).as_bytes(), METADATA);
    assert!(cat(&tag.hex()).contains("tag v1"));
    let ofs_result = apply_delta(&base, &ofs).expect("delta applies");
    assert_eq!(ofs_result, b"quick brown fox cat!");
    let ofs_id = delta_result_id(ObjectKind::Blob, &base, &ofs).expect("id");
    assert_eq!(cat(&ofs_id.hex()).as_bytes(), ofs_result);
    let ref_id = delta_result_id(ObjectKind::Blob, &base, &refd).expect("id");
    assert_eq!(cat(&ref_id.hex()), "lazy dog day!");
}

#[test]
fn a_small_copy_bomb_expands_to_its_claimed_size() {
    let base = vec![b'x'; 1024];
    let delta = copy_bomb(1024, 5 * MIB);
    let mut pack = PackBuilder::new();
    pack.compression(9);
    let base_id = pack.blob(base.clone());
    pack.ofs_delta(base_id, delta.clone())
        .expect("base in pack");
    let bytes = pack.build();
    assert!(bytes.len() < 16 * 1024, "{} bytes", bytes.len());

    let repo = fresh_bare();
    let out = index_pack(repo.path(), &bytes);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = delta_result_id(ObjectKind::Blob, &base, &delta).expect("id");
    let size = run(in_repo(repo.path()).args(["cat-file", "-s", &id.hex()])).expect("cat-file");
    assert_eq!(size, (5 * MIB).to_string());
}

#[test]
fn a_pack_that_lies_about_its_object_count_is_rejected() {
    for claimed in [u32::MAX, 2] {
        let mut pack = PackBuilder::new();
        pack.blob(METADATA);
        pack.blob(b"second".to_vec());
        pack.blob(b"third".to_vec());
        pack.claim_count(claimed);
        let out = index_pack(fresh_bare().path(), &pack.build());
        assert!(!out.status.success(), "claimed {claimed}");
    }
}

#[test]
fn a_tree_entry_may_give_a_tree_the_blob_mode() {
    let mut pack = PackBuilder::new();
    let blob = pack.blob(METADATA);
    let inner = pack.tree(&[TreeItem::file("inner.json", blob)]);
    let outer = pack.tree(&[TreeItem::new("100644", "ro-crate-metadata.json", inner)]);
    let repo = fresh_bare();
    let out = index_pack(repo.path(), &pack.build());
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = run(in_repo(repo.path()).args(["ls-tree", &outer.hex()])).expect("ls-tree");
    assert_eq!(
        listing,
        format!("100644 blob {inner}\tro-crate-metadata.json")
    );
    let kind = run(in_repo(repo.path()).args(["cat-file", "-t", &inner.hex()])).expect("cat-file");
    assert_eq!(kind, "tree");
}

// ---- git:// ----

#[test]
fn git_ls_remote_and_a_shallow_fetch_work_against_a_scripted_daemon() {
    let c = crafted();
    let daemon = ScriptedGitDaemon::start(DaemonScript::UploadPack {
        advertisement: RefAdvertisement::new([
            (c.commit.hex(), "HEAD"),
            (c.commit.hex(), "refs/heads/main"),
        ]),
        response: PackResponse::new(c.pack.clone())
            .shallow(Shallow::List(vec![c.commit.hex()]))
            .progress("crafted progress\n"),
    })
    .expect("start daemon");
    let url = daemon.url("/repo.git");

    let refs = run(git().args(["-c", "protocol.version=0", "ls-remote", &url])).expect("ls-remote");
    assert_eq!(refs, format!("{0}\tHEAD\n{0}\trefs/heads/main", c.commit));

    let repo = fresh_bare();
    run(in_repo(repo.path()).args([
        "-c",
        "protocol.version=0",
        "fetch",
        "--depth",
        "1",
        &url,
        "refs/heads/main:refs/heads/main",
    ]))
    .expect("fetch --depth 1");
    let content = run(in_repo(repo.path()).args(["cat-file", "-p", "main:ro-crate-metadata.json"]))
        .expect("cat-file");
    assert_eq!(content.as_bytes(), METADATA);
    assert_eq!(
        std::fs::read_to_string(repo.path().join("shallow")).expect("shallow file"),
        format!("{}\n", c.commit)
    );

    let requests = daemon.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(daemon.connections(), 2);
    let fetch = &requests[1];
    assert_eq!(fetch.service, "git-upload-pack");
    assert_eq!(fetch.path, "/repo.git");
    assert_eq!(
        fetch.host.as_deref(),
        Some(daemon.addr().to_string().as_str())
    );
    assert_eq!(fetch.wants(), [c.commit.hex()]);
    assert!(fetch.capabilities().contains(&"side-band-64k".to_owned()));
    assert!(
        fetch.lines.contains(&"deepen 1".to_owned()),
        "{:?}",
        fetch.lines
    );
    assert_eq!(fetch.lines.last().map(String::as_str), Some("done"));
    assert_eq!(requests[0].lines, ["0000"], "ls-remote wants nothing");
    assert!(daemon.bytes_sent() > c.pack.len() as u64);
}

#[test]
fn a_full_fetch_without_side_band_gets_the_raw_pack_on_127_0_0_2() {
    let c = crafted();
    let script = DaemonScript::UploadPack {
        advertisement: RefAdvertisement::new([(c.commit.hex(), "refs/heads/main")])
            .capabilities("multi_ack_detailed thin-pack ofs-delta"),
        response: PackResponse::new(c.pack.clone()),
    };
    let daemon =
        ScriptedGitDaemon::start_on(LOCALHOST_2, move |_| script.clone()).expect("start daemon");
    assert_eq!(daemon.addr().ip(), LOCALHOST_2);
    let repo = fresh_bare();
    run(in_repo(repo.path()).args([
        "-c",
        "protocol.version=0",
        "fetch",
        &daemon.url("repo.git"),
        "refs/heads/main:refs/heads/main",
    ]))
    .expect("fetch");
    let content = run(in_repo(repo.path()).args(["cat-file", "-p", "main:ro-crate-metadata.json"]))
        .expect("cat-file");
    assert_eq!(content.as_bytes(), METADATA);
    let request = &daemon.requests()[0];
    assert!(
        !request
            .capabilities()
            .iter()
            .any(|c| c.starts_with("side-band"))
    );
    assert_eq!(request.peer.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn an_empty_repository_advertisement_lists_no_refs() {
    let daemon = ScriptedGitDaemon::start(DaemonScript::UploadPack {
        advertisement: RefAdvertisement::empty(),
        response: PackResponse::new(Vec::new()),
    })
    .expect("start daemon");
    let refs = run(git().args([
        "-c",
        "protocol.version=0",
        "ls-remote",
        &daemon.url("/e.git"),
    ]))
    .expect("ls-remote");
    assert_eq!(refs, "");
}

#[test]
fn err_and_silence_make_git_fail_with_their_messages() {
    let daemon = ScriptedGitDaemon::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), |request| {
        if request.connection == 0 {
            DaemonScript::Error("access denied by script".to_owned())
        } else {
            DaemonScript::Close
        }
    })
    .expect("start daemon");
    let url = daemon.url("/repo.git");
    let out = git()
        .args(["-c", "protocol.version=0", "ls-remote", &url])
        .output()
        .expect("run git");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("access denied by script"),
        "{}",
        stderr(&out)
    );
    let out = git()
        .args(["-c", "protocol.version=0", "ls-remote", &url])
        .output()
        .expect("run git");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Could not read from remote repository"),
        "{}",
        stderr(&out)
    );
    assert_eq!(daemon.requests().len(), 2);
}

#[test]
fn an_endless_advertisement_runs_until_git_is_killed_and_drop_stops_the_daemon() {
    let daemon =
        ScriptedGitDaemon::start(DaemonScript::endless_advertisement()).expect("start daemon");
    let mut cmd = git();
    cmd.args([
        "-c",
        "protocol.version=0",
        "ls-remote",
        &daemon.url("/repo.git"),
    ]);
    kill_after(cmd, 8 * MIB, |n, t| daemon.wait_for_bytes_sent(n, t));
    assert!(daemon.bytes_sent() >= 8 * MIB);
    let addr = daemon.addr();
    assert_stops(addr, move || drop(daemon));
}

#[test]
fn endless_shallow_lines_run_until_git_is_killed() {
    let c = crafted();
    let daemon = ScriptedGitDaemon::start(DaemonScript::UploadPack {
        advertisement: RefAdvertisement::new([(c.commit.hex(), "refs/heads/main")]),
        response: PackResponse::new(c.pack).shallow(Shallow::Endless),
    })
    .expect("start daemon");
    let repo = fresh_bare();
    let mut cmd = in_repo(repo.path());
    cmd.args([
        "-c",
        "protocol.version=0",
        "fetch",
        "--depth=1",
        &daemon.url("/repo.git"),
        "refs/heads/main:refs/heads/main",
    ]);
    kill_after(cmd, 4 * MIB, |n, t| daemon.wait_for_bytes_sent(n, t));
    let addr = daemon.addr();
    assert_stops(addr, move || drop(daemon));
}

// ---- HTTP ----

#[test]
fn git_ls_remote_reads_a_scripted_advertisement_over_http_and_https() {
    let c = crafted();
    let advertisement = RefAdvertisement::new([(c.commit.hex(), "refs/heads/main")]);
    for tls in [false, true] {
        let mut builder = ScriptedHttp::builder().ip(LOCALHOST_2);
        if tls {
            builder = builder.tls();
        }
        let http = builder
            .start(smart_git(
                advertisement.clone(),
                PackResponse::new(c.pack.clone()),
            ))
            .expect("start http");
        let url = http.url("/repo.git");
        assert!(url.starts_with(if tls {
            "https://127.0.0.2:"
        } else {
            "http://127.0.0.2:"
        }));
        let mut cmd = git();
        cmd.args(["-c", "protocol.version=0", "ls-remote", &url]);
        if let Some(ca) = http.ca_file() {
            assert!(
                http.ca_pem()
                    .is_some_and(|p| p.contains("BEGIN CERTIFICATE"))
            );
            // git's libcurl uses GnuTLS on Debian, which reads GIT_SSL_CAINFO, not SSL_CERT_FILE
            cmd.env("GIT_SSL_CAINFO", ca);
        }
        let refs = run(&mut cmd).expect("ls-remote");
        assert_eq!(refs, format!("{}\trefs/heads/main", c.commit));
        let log = http.take_log();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].target, "/repo.git/info/refs?service=git-upload-pack");
        assert!(log[0].is_ref_discovery());
        assert!(http.take_log().is_empty());
    }
}

#[test]
fn https_without_the_ca_is_refused_by_git() {
    let http = ScriptedHttp::builder()
        .tls()
        .start(|_| Reply::status(404))
        .expect("start https");
    let out = git()
        .args(["ls-remote", &http.url("/repo.git")])
        .env("GIT_SSL_CAINFO", "/dev/null")
        .output()
        .expect("run git");
    assert!(!out.status.success());
    assert!(http.requests().is_empty(), "no request gets through");
}

#[test]
fn a_shallow_fetch_over_scripted_http_gets_the_crafted_pack() {
    let c = crafted();
    let http = ScriptedHttp::start(smart_git(
        RefAdvertisement::new([(c.commit.hex(), "refs/heads/main")]),
        PackResponse::new(c.pack.clone()).shallow(Shallow::List(vec![c.commit.hex()])),
    ))
    .expect("start http");
    let repo = fresh_bare();
    run(in_repo(repo.path()).args([
        "-c",
        "protocol.version=0",
        "fetch",
        "--depth=1",
        &http.url("/repo.git"),
        "refs/heads/main:refs/heads/main",
    ]))
    .expect("fetch over http");
    let content = run(in_repo(repo.path()).args(["cat-file", "-p", "main:ro-crate-metadata.json"]))
        .expect("cat-file");
    assert_eq!(content.as_bytes(), METADATA);
    let log = http.requests();
    let posts: Vec<_> = log.iter().filter(|r| r.is_upload_pack()).collect();
    // the shallow probe (wants, deepen, flush), then the same with `done`
    assert_eq!(posts.len(), 2, "{log:?}");
    assert!(String::from_utf8_lossy(&posts[1].body).contains("done"));
}

#[test]
fn many_wants_arrive_gzipped_or_chunked_and_are_decoded() {
    let mut pack = PackBuilder::new();
    let blob = pack.blob(METADATA);
    let tree = pack.tree(&[TreeItem::file("ro-crate-metadata.json", blob)]);
    let refs: Vec<(String, String)> = (0..2000)
        .map(|i| {
            let commit = pack.commit(tree, &[], &format!("commit {i}"));
            (commit.hex(), format!("refs/heads/b{i:04}"))
        })
        .collect();
    let http = ScriptedHttp::start(smart_git(
        RefAdvertisement::new(refs),
        PackResponse::new(pack.build()),
    ))
    .expect("start http");
    // 2000 wants are ~100 KB: gzipped by default, chunked when over http.postBuffer
    for (post_buffer, chunked) in [("1m", false), ("65520", true)] {
        let repo = fresh_bare();
        run(in_repo(repo.path()).args([
            "-c",
            "protocol.version=0",
            "-c",
            &format!("http.postBuffer={post_buffer}"),
            "fetch",
            &http.url("/repo.git"),
            "refs/heads/*:refs/heads/*",
        ]))
        .expect("fetch over http");
        let count = run(in_repo(repo.path()).args(["for-each-ref", "--format=x"])).expect("refs");
        assert_eq!(count.lines().count(), 2000);
        let log = http.take_log();
        // (a chunked request follows a probe whose body is a flush)
        let post = log.iter().rfind(|r| r.is_upload_pack()).expect("a POST");
        assert_eq!(post.chunked, chunked, "postBuffer {post_buffer}");
        assert_eq!(
            post.header("content-encoding").is_some(),
            !chunked,
            "postBuffer {post_buffer}"
        );
        let body = String::from_utf8_lossy(&post.git_body().expect("decodable")).into_owned();
        assert_eq!(body.matches("want ").count(), 2000);
    }
}

#[test]
fn git_follows_a_redirect_reply_to_a_repository_on_another_ip() {
    let repo = RepoBuilder::new()
        .file("ro-crate-metadata.json", "{}")
        .commit("real")
        .build_bare()
        .expect("fixture");
    let real = SmartHttp::builder()
        .bind(LOCALHOST_2)
        .start(repo.base_dir())
        .expect("start smart http");
    assert!(real.url("repo").starts_with("http://127.0.0.2:"));
    let target = real.url("repo");
    let redirector = ScriptedHttp::start(move |request| {
        Reply::redirect(
            302,
            format!("{target}/info/refs?{}", request.query().unwrap_or_default()),
        )
    })
    .expect("start redirector");
    let refs = run(git().args([
        "-c",
        "protocol.version=0",
        "ls-remote",
        &redirector.url("/repo.git"),
        "refs/heads/main",
    ]))
    .expect("ls-remote follows the redirect");
    assert!(refs.starts_with(&repo.head("main")), "{refs}");
    assert_eq!(redirector.requests().len(), 1);
    assert_eq!(
        real.requests(),
        ["GET /repo.git/info/refs?service=git-upload-pack auth=no 200"]
    );
}

#[test]
fn the_log_shows_the_authorization_git_sends_after_a_401() {
    let c = crafted();
    let advertisement = RefAdvertisement::new([(c.commit.hex(), "refs/heads/main")]);
    let http = ScriptedHttp::start(move |request| {
        if request.authorization().is_some() {
            Reply::Advertisement(advertisement.clone())
        } else {
            Reply::Unauthorized
        }
    })
    .expect("start http");
    let url = http
        .url("/repo.git")
        .replacen("http://", "http://alice:s3cret@", 1);
    let refs = run(git().args(["-c", "protocol.version=0", "ls-remote", &url])).expect("ls-remote");
    assert!(refs.starts_with(&c.commit.hex()));
    let log = http.take_log();
    let auth: Vec<Option<&str>> = log.iter().map(|r| r.authorization()).collect();
    assert_eq!(auth, [None, Some("Basic YWxpY2U6czNjcmV0")]);
    assert!(
        log.iter()
            .all(|r| r.peer.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST))
    );

    // The same through the real server on 127.0.0.2, whose log keeps the header too.
    let repo = RepoBuilder::new()
        .file("a", "1")
        .commit("one")
        .build_bare()
        .expect("fixture");
    let real = SmartHttp::builder()
        .bind(LOCALHOST_2)
        .basic_auth("alice", "s3cret")
        .start(repo.base_dir())
        .expect("start smart http");
    run(git().args([
        "-c",
        "protocol.version=0",
        "ls-remote",
        &real.url_with_credentials("repo", "alice", "s3cret"),
    ]))
    .expect("ls-remote with credentials");
    let headers: Vec<_> = real
        .request_log()
        .into_iter()
        .map(|r| (r.status, r.authorization_header))
        .collect();
    assert_eq!(
        headers,
        [
            (401, None),
            (200, Some("Basic YWxpY2U6czNjcmV0".to_owned()))
        ]
    );
}

#[test]
fn endless_headers_and_bodies_stream_until_the_client_goes() {
    for reply in [
        Reply::EndlessHeaderValue,
        Reply::EndlessHeaderLines,
        Reply::endless_body(
            "application/x-git-upload-pack-advertisement",
            b"0000".to_vec(),
        ),
        Reply::endless_advertisement(),
    ] {
        let http = ScriptedHttp::start(move |_| reply.clone()).expect("start http");
        let mut cmd = git();
        cmd.args([
            "-c",
            "protocol.version=0",
            "ls-remote",
            &http.url("/repo.git"),
        ]);
        kill_after(cmd, 64 * 1024, |n, t| http.wait_for_bytes_sent(n, t));
        let addr = http.addr();
        assert_stops(addr, move || drop(http));
    }
}

// ---- repository fixtures ----

#[test]
fn branches_may_point_at_a_tree_a_blob_or_a_tag_object() {
    let repo = branches_at_non_commits().expect("fixture");
    let daemon = GitDaemon::start(repo.base_dir()).expect("start daemon");
    let refs = run(git().args(["ls-remote", &daemon.url(repo.name())])).expect("ls-remote");
    for (branch, kind) in [
        (TREE_BRANCH, "tree"),
        (BLOB_BRANCH, "blob"),
        (TAG_BRANCH, "tag"),
    ] {
        let id = repo
            .rev_parse(&format!("refs/heads/{branch}"))
            .expect("ref");
        assert!(
            refs.contains(&format!("{id}\trefs/heads/{branch}")),
            "{refs}"
        );
        let actual = run(repo.git().args(["cat-file", "-t", &id])).expect("cat-file");
        assert_eq!(actual, kind, "{branch}");
    }
    // git peels the tag for the advertisement
    assert!(
        refs.contains(&format!(
            "{}\trefs/heads/{TAG_BRANCH}^{{}}",
            repo.head("main")
        )),
        "{refs}"
    );
}

#[test]
fn a_blob_mode_entry_can_point_at_a_tree() {
    let repo = blob_mode_tree_entry("bagit/data/ro-crate-metadata.json").expect("fixture");
    let entry = run(repo
        .git()
        .args(["ls-tree", "main:bagit/data", "ro-crate-metadata.json"]))
    .expect("ls-tree");
    let (meta, name) = entry.split_once('\t').expect("ls-tree line");
    assert_eq!(name, "ro-crate-metadata.json");
    let fields: Vec<&str> = meta.split(' ').collect();
    assert_eq!(fields[..2], ["100644", "blob"]);
    let kind = run(repo.git().args(["cat-file", "-t", fields[2]])).expect("cat-file");
    assert_eq!(kind, "tree");
    let daemon = GitDaemon::start(repo.base_dir()).expect("start daemon");
    let refs = run(git().args(["ls-remote", &daemon.url(repo.name()), "refs/heads/main"]))
        .expect("ls-remote");
    assert!(refs.starts_with(&repo.head("main")));
}

#[test]
fn a_hundred_thousand_branches_are_listed_by_ls_remote() {
    let started = Instant::now();
    let repo = many_branches(100_000).expect("fixture");
    eprintln!("100,000 branches made in {:?}", started.elapsed());
    let daemon = GitDaemon::start(repo.base_dir()).expect("start daemon");
    let refs =
        run(git().args(["ls-remote", "--heads", &daemon.url(repo.name())])).expect("ls-remote");
    assert_eq!(refs.lines().count(), 100_001);
    let head = repo.head("main");
    assert!(refs.lines().all(|line| line.starts_with(&head)));
    assert!(refs.contains("\trefs/heads/many/0099999"));
}

#[test]
#[ignore = "timing only: cargo test -p crate-test-support --test hostile -- --ignored"]
fn a_million_branches_are_made_in_seconds() {
    let started = Instant::now();
    let repo = many_branches(1_000_000).expect("fixture");
    let elapsed = started.elapsed();
    eprintln!("1,000,000 branches made in {elapsed:?}");
    let count = run(repo.git().args([
        "for-each-ref",
        "--count=2",
        "--format=%(refname)",
        "refs/heads/many/",
    ]))
    .expect("for-each-ref");
    assert_eq!(count.lines().count(), 2);
    assert!(elapsed < Duration::from_secs(10));
}

#[test]
fn a_two_gib_copy_bomb_fits_in_a_pack_under_20_kib() {
    let base_len = (1 << 24) - 1;
    let delta = copy_bomb(base_len, 2048 * MIB);
    let mut pack = PackBuilder::new();
    pack.compression(9);
    let base = pack.blob(vec![0u8; usize::try_from(base_len).expect("fits")]);
    pack.ofs_delta(base, delta).expect("base in pack");
    let started = Instant::now();
    let bytes = pack.build();
    eprintln!(
        "2 GiB copy bomb: {} bytes, built in {:?}",
        bytes.len(),
        started.elapsed()
    );
    assert!(bytes.len() < 20 * 1024, "{} bytes", bytes.len());
}

#[test]
fn git_sends_no_credentials_across_a_redirect_to_another_ip() {
    let repo = RepoBuilder::new()
        .file("a", "1")
        .commit("one")
        .build_bare()
        .expect("fixture");
    let real = SmartHttp::builder()
        .bind(LOCALHOST_2)
        .basic_auth("alice", "s3cret")
        .start(repo.base_dir())
        .expect("start smart http");
    let target = real.url("repo");
    let redirector = ScriptedHttp::start(move |request| {
        Reply::redirect(
            302,
            format!("{target}/info/refs?{}", request.query().unwrap_or_default()),
        )
    })
    .expect("start redirector");
    let url = redirector
        .url("/repo.git")
        .replacen("http://", "http://alice:s3cret@", 1);
    let out = git()
        .args(["-c", "protocol.version=0", "ls-remote", &url])
        .output()
        .expect("run git");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Authentication failed"),
        "{}",
        stderr(&out)
    );
    let log = real.request_log();
    assert!(!log.is_empty());
    assert!(
        log.iter()
            .all(|r| r.status == 401 && r.authorization_header.is_none())
    );
}

#[test]
fn servers_stop_promptly_with_idle_connections_open() {
    let daemon = ScriptedGitDaemon::start(DaemonScript::Close).expect("start daemon");
    let http = ScriptedHttp::builder()
        .tls()
        .start(|_| Reply::status(204))
        .expect("start https");
    let idle: Vec<TcpStream> = [daemon.addr(), http.addr()]
        .into_iter()
        .map(|addr| TcpStream::connect(addr).expect("connect"))
        .collect();
    let addr = daemon.addr();
    assert_stops(addr, move || drop(daemon));
    let addr = http.addr();
    assert_stops(addr, move || drop(http));
    drop(idle);
}
