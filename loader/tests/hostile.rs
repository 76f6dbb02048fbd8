//! The loader against servers and repositories built to hurt it, all on loopback: redirects
//! that would carry the token elsewhere, responses that never end, packs that expand without
//! bound or lie about themselves, refs that point at the wrong kind of object, and text full of
//! terminal escapes. Each case asserts the outcome (permanent where retrying cannot help) and,
//! where memory is at stake, the peak the kernel measured.
//!
//! The loader fetches in git protocol v2 where the server speaks it and in v0 through libgit2
//! where it does not, so the attacks on the pack, the shallow list and the ref names are made by a
//! server of each kind ([`served_both_ways`]), and the endless listing at the memory cap in both
//! protocols; the v2 server offers filters, which puts the loader on its partial path. The real
//! `git daemon` cases (a million branches, branches at non-commits) speak v2; the endless v0
//! advertisements and a ref name that is not UTF-8 are v0's. The protocol v2 exchanges of their
//! own (`ls-refs`, the blob want) are in `hostile_v2.rs`.
//!
//! Memory cases run the `crate-loader` binary, since the memory cap lives in its fetch worker;
//! the others call the library's fetch directly.

use std::net::{IpAddr, Ipv4Addr};

#[path = "common/binary.rs"]
mod binary;
#[path = "common/fetching.rs"]
mod fetching;
#[path = "common/hostile.rs"]
mod hostile_fixtures;

use crate_loader::fetch::{FetchError, Fetched};
use crate_operator_api::contract::Outcome;
use crate_test_support::hostile::pack::{commit_bytes, tree_bytes};
use crate_test_support::hostile::repos::{
    blob_mode_tree_entry, branches_at_non_commits, many_branches,
};
use crate_test_support::hostile::{
    BLOB_BRANCH, DEFAULT_CAPABILITIES, DaemonScript, FetchAnswer, ObjectKind, PackBuilder,
    PackResponse, RefAdvertisement, Reply, ScriptedGitDaemon, ScriptedHttp, Shallow, TAG_BRANCH,
    TREE_BRANCH, TreeItem, V2Script, copy_bomb, object_id, pktline,
};
use crate_test_support::{GitDaemon, MIB};
use fetching::Fetch;
use hostile_fixtures::{CRATE, META, crate_pack, fetch_of, preview};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A server of a hostile answer (see [`served_both_ways`]).
struct Server {
    /// Whether it answers a client asking for protocol v2 in v2.
    v2: bool,
    daemon: ScriptedGitDaemon,
}

impl Server {
    fn url(&self) -> String {
        self.daemon.url("/crate.git")
    }

    /// Names the path taken in assertion messages.
    fn path(&self) -> &'static str {
        if self.v2 {
            "protocol v2 (partial)"
        } else {
            "protocol v0 (libgit2)"
        }
    }

    /// On the v2 server, the failure ended the load where it arose: one connection, which sent
    /// a fetch command, and no second transfer in v0 after it.
    fn ended_without_falling_back(&self) {
        if !self.v2 {
            return;
        }
        let requests = self.daemon.requests();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        assert!(
            requests[0].lines.iter().any(|l| l == "command=fetch"),
            "{requests:#?}"
        );
    }
}

/// `refs` and `response` as a v0-only server says them, and as a v2 server with filters says
/// them to a client asking for v2 (the same in v0 to one that does not).
fn served_both_ways(refs: &[(&str, &str)], response: &PackResponse) -> [Server; 2] {
    let refs: Vec<(String, String)> = refs
        .iter()
        .map(|(id, name)| ((*id).to_owned(), (*name).to_owned()))
        .collect();
    let v0 = DaemonScript::UploadPack {
        advertisement: RefAdvertisement::new(refs.clone()),
        response: response.clone(),
    };
    let v2 = DaemonScript::V2(V2Script::new(
        refs,
        vec![FetchAnswer::Pack(response.clone())],
    ));
    let both = {
        let v0 = v0.clone();
        move |request: &crate_test_support::hostile::GitRequest| {
            if request.extra.iter().any(|e| e == "version=2") {
                v2.clone()
            } else {
                v0.clone()
            }
        }
    };
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    [
        Server {
            v2: false,
            daemon: ScriptedGitDaemon::start(v0).expect("v0 daemon"),
        },
        Server {
            v2: true,
            daemon: ScriptedGitDaemon::start_on(localhost, both).expect("v2 daemon"),
        },
    ]
}

/// [`served_both_ways`] for the branch `main` at `commit`.
fn serving(
    commit: &str,
    pack: Vec<u8>,
    response: impl FnOnce(PackResponse) -> PackResponse,
) -> [Server; 2] {
    served_both_ways(
        &[(commit, "refs/heads/main")],
        &response(PackResponse::new(pack)),
    )
}

// ---------------------------------------------------------------------------------------------
// 2. Memory and transfer budgets

#[test]
fn a_delta_bomb_is_refused_as_a_limit_within_the_memory_budget() {
    let (commit, pack) = crate_pack(|pack| {
        let base = pack.blob(vec![b'x'; 1024]);
        let bomb = pack
            .ofs_delta(base, copy_bomb(1024, 2 << 30))
            .expect("bomb");
        // A chain: each delta expands the previous result again.
        let mut last = bomb;
        for _ in 0..3 {
            last = pack
                .ofs_delta_on_entry(last, copy_bomb(2 << 30, 2 << 30))
                .expect("chain");
        }
    });
    assert!(
        pack.len() < 100_000,
        "the bomb is small on the wire: {}",
        pack.len()
    );
    for server in serving(&commit, pack, |r| r) {
        let run = preview(&server.url(), &["--max-transfer-bytes", "100000"], &[]);
        eprintln!("{}", server.path());
        run.limit_exceeded("expands to more than");
        server.ended_without_falling_back();
    }
}

#[test]
fn an_endless_ref_advertisement_stops_at_the_transfer_budget() {
    let daemon = ScriptedGitDaemon::start(DaemonScript::endless_advertisement()).expect("daemon");
    let run = preview(
        &daemon.url("/crate.git"),
        &["--max-transfer-bytes", "1048576"],
        &[],
    );
    run.limit_exceeded("1048576-byte budget");
    // The server may have buffered a little more than the budget into the socket, no more.
    assert!(
        daemon.bytes_sent() < 16 * MIB,
        "sent {}",
        daemon.bytes_sent()
    );
}

#[test]
fn an_endless_ref_listing_stops_at_the_memory_budget_whatever_the_transfer_budget() {
    // In v0 the refs are advertised; in v2 they are the answer to ls-refs.
    for script in [
        DaemonScript::endless_advertisement(),
        DaemonScript::V2(V2Script::endless_ls_refs()),
    ] {
        let daemon = ScriptedGitDaemon::start(script).expect("daemon");
        let run = preview(
            &daemon.url("/crate.git"),
            &["--max-transfer-bytes", "100000000000"],
            &[],
        );
        run.limit_exceeded("memory budget");
        assert_eq!(daemon.connections(), 1, "no second attempt after a budget");
    }
}

#[test]
fn an_endless_http_header_is_refused_at_its_size_limit() {
    for reply in [Reply::EndlessHeaderValue, Reply::EndlessHeaderLines] {
        let server = ScriptedHttp::start(move |_| reply.clone()).expect("server");
        let run = preview(&server.url("/crate.git"), &[], &[]);
        run.limit_exceeded("HTTP headers over 65536 bytes");
    }
}

#[test]
fn an_endless_http_advertisement_stops_at_the_transfer_budget() {
    let server = ScriptedHttp::start(|_| Reply::endless_advertisement()).expect("server");
    let run = preview(
        &server.url("/crate.git"),
        &["--max-transfer-bytes", "1048576"],
        &[],
    );
    run.limit_exceeded("1048576-byte budget");
}

#[test]
fn endless_shallow_lines_stop_at_the_transfer_budget() {
    let (commit, pack) = crate_pack(|_| {});
    for server in serving(&commit, pack, |r| r.shallow(Shallow::Endless)) {
        let run = preview(&server.url(), &["--max-transfer-bytes", "1048576"], &[]);
        eprintln!("{}", server.path());
        run.limit_exceeded("1048576-byte budget");
        server.ended_without_falling_back();
    }
}

#[test]
fn a_pack_claiming_four_billion_objects_is_refused_before_allocating_for_them() {
    let (commit, _) = crate_pack(|_| {});
    let mut pack = PackBuilder::new();
    let blob = pack.blob(CRATE.to_vec());
    let tree = pack.tree(&[TreeItem::file(META, blob)]);
    pack.commit(tree, &[], "crate");
    let bytes = pack.claim_count(u32::MAX).build();
    for server in serving(&commit, bytes, |r| r) {
        let run = preview(&server.url(), &[], &[]);
        eprintln!("{}", server.path());
        run.limit_exceeded("more than 200000 objects");
        server.ended_without_falling_back();
    }
}

#[test]
fn a_million_branches_count_against_the_transfer_budget() {
    let repo = many_branches(1_000_000).expect("repository with a million branches");
    let daemon = GitDaemon::start(repo.base_dir()).expect("git daemon");
    let run = preview(
        &daemon.url(repo.name()),
        &["--max-transfer-bytes", "1048576"],
        &[],
    );
    run.limit_exceeded("1048576-byte budget");
}

// ---------------------------------------------------------------------------------------------
// 3 and 4. Content that can never load is permanent; transport trouble is not

#[test]
fn a_branch_pointing_at_a_tree_blob_or_tag_is_an_invalid_crate() {
    let repo = branches_at_non_commits().expect("repository");
    let daemon = GitDaemon::start(repo.base_dir()).expect("git daemon");
    for branch in [TREE_BRANCH, BLOB_BRANCH, TAG_BRANCH] {
        let err = Fetch {
            branch: branch.to_owned(),
            ..fetch_of(daemon.url(repo.name()))
        }
        .fails();
        assert!(err.outcome().is_permanent(), "{branch}: {err:?}");
        assert_eq!(err.outcome(), Outcome::InvalidCrate, "{branch}: {err}");
    }
}

#[test]
fn a_tree_entry_whose_mode_says_file_but_is_a_tree_is_an_invalid_crate() {
    let repo = blob_mode_tree_entry(META).expect("repository");
    let daemon = GitDaemon::start(repo.base_dir()).expect("git daemon");
    let err = fetch_of(daemon.url(repo.name())).fails();
    assert!(matches!(err, FetchError::Damaged { .. }), "{err:?}");
    assert!(
        err.to_string().contains("recorded as a file but is a tree"),
        "{err}"
    );
    assert_eq!(err.outcome(), Outcome::InvalidCrate);
}

#[test]
fn objects_missing_from_the_pack_are_an_invalid_crate() {
    let mut pack = PackBuilder::new();
    let blob_id = object_id(ObjectKind::Blob, CRATE);
    let tree = tree_bytes(&[TreeItem::file(META, blob_id)]);
    let tree_id = object_id(ObjectKind::Tree, &tree);
    // The commit, without its tree or blob.
    let commit = pack.object(ObjectKind::Commit, commit_bytes(tree_id, &[], "crate"));
    for server in serving(&commit.hex(), pack.build(), |r| r) {
        let err = fetch_of(server.url()).fails();
        let path = server.path();
        assert!(matches!(err, FetchError::Damaged { .. }), "{path}: {err:?}");
        assert!(err.to_string().contains("is missing"), "{path}: {err}");
        assert_eq!(err.outcome(), Outcome::InvalidCrate, "{path}");
        server.ended_without_falling_back();
    }
}

#[test]
fn a_pack_git_cannot_index_is_an_invalid_crate_fetched_once() {
    let (commit, pack) = crate_pack(|_| {});
    // A valid header and object count, then bytes that are no object at all.
    let mut garbage = pack[..12].to_vec();
    garbage.extend_from_slice(&[0xff; 64]);
    for server in serving(&commit, garbage, |r| r) {
        let err = fetch_of(server.url()).fails();
        let path = server.path();
        assert!(matches!(err, FetchError::BadPack { .. }), "{path}: {err:?}");
        assert_eq!(err.outcome(), Outcome::InvalidCrate, "{path}");
        server.ended_without_falling_back();
    }
}

#[test]
fn server_errors_are_transient_whatever_the_url_says() {
    // The old classifier searched messages for "401", "403" and "404".
    let server = ScriptedHttp::start(|_| Reply::status(503)).expect("server");
    let err = fetch_of(server.url("/401-403-404/not-found.git")).fails();
    assert!(matches!(err, FetchError::Transport { .. }), "{err:?}");
    assert_eq!(err.outcome(), Outcome::FetchFailed);
    assert!(!err.outcome().is_permanent());
}

#[test]
fn http_statuses_decide_the_outcome() {
    for (status, outcome) in [
        (404, Outcome::NotFound),
        (410, Outcome::NotFound),
        (401, Outcome::AuthenticationFailed),
        (500, Outcome::FetchFailed),
        (429, Outcome::FetchFailed),
    ] {
        let server = ScriptedHttp::start(move |_| Reply::status(status)).expect("server");
        let err = fetch_of(server.url("/crate.git")).fails();
        assert_eq!(err.outcome(), outcome, "{status}: {err}");
    }
}

#[test]
fn a_web_page_instead_of_a_git_server_is_not_found() {
    let server = ScriptedHttp::start(|_| Reply::with_body(200, "text/html", "<html>login</html>"))
        .expect("server");
    let err = fetch_of(server.url("/crate.git")).fails();
    assert!(matches!(err, FetchError::NotGitHttp { .. }), "{err:?}");
    assert!(err.to_string().contains("text/html"), "{err}");
    assert_eq!(err.outcome(), Outcome::NotFound);
}

#[test]
fn a_daemon_refusing_the_repository_is_not_found_with_its_words_escaped() {
    let daemon = ScriptedGitDaemon::start(DaemonScript::Error(
        "access denied\x1b[2J or repository not exported".to_owned(),
    ))
    .expect("daemon");
    let err = fetch_of(daemon.url("/crate.git")).fails();
    assert_eq!(err.outcome(), Outcome::NotFound, "{err}");
    let message = err.to_string();
    assert!(message.contains("access denied\\u{1b}[2J"), "{message}");
    assert!(!message.contains('\x1b'));
}

// ---------------------------------------------------------------------------------------------
// 6. What a server says reaches people escaped

#[test]
fn a_ref_name_that_is_not_utf8_does_not_stop_the_crate_from_loading() {
    // git allows any bytes but a few in ref names; libgit2's Rust binding insists on UTF-8.
    let (commit, pack) = crate_pack(|_| {});
    let mut first = format!("{commit} refs/heads/").into_bytes();
    first.extend_from_slice(b"\xff-latin1\0");
    first.extend_from_slice(DEFAULT_CAPABILITIES.as_bytes());
    first.push(b'\n');
    let mut advertisement = pktline::data(&first);
    advertisement.extend_from_slice(&pktline::data(
        format!("{commit} refs/heads/main\n").as_bytes(),
    ));
    advertisement.extend_from_slice(pktline::FLUSH);
    let daemon = ScriptedGitDaemon::start(DaemonScript::RawAdvertisementUploadPack {
        advertisement,
        response: PackResponse::new(pack),
    })
    .expect("daemon");
    let fetched = fetch_of(daemon.url("/crate.git"))
        .run()
        .expect("the crate loads");
    assert!(matches!(fetched, Fetched::File { ref content, .. } if content == CRATE));
    // And a missing branch's hint shows the name as well as it can.
    let err = Fetch {
        branch: "nope".into(),
        ..fetch_of(daemon.url("/crate.git"))
    }
    .fails();
    assert!(err.to_string().contains("\u{fffd}-latin1"), "{err}");
}

#[test]
fn ref_names_with_terminal_escapes_are_listed_escaped() {
    let (commit, pack) = crate_pack(|_| {});
    let refs = [(commit.as_str(), "refs/heads/\x1b[31mred\x07")];
    for server in served_both_ways(&refs, &PackResponse::new(pack)) {
        let err = fetch_of(server.url()).fails();
        let message = format!("{}: {err}", server.path());
        assert!(
            matches!(err, FetchError::BranchNotFound { .. }),
            "{message}"
        );
        assert!(message.contains("\\u{1b}[31mred\\u{7}"), "{message}");
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
}

#[test]
fn a_timed_out_fetch_leaves_no_temporary_repository_behind() {
    let tarpit = crate_test_support::Tarpit::start().expect("tarpit");
    let work = tempfile::tempdir().expect("work dir");
    let run = preview(
        &format!("git://{}/crate.git", tarpit.addr()),
        &[
            "--timeout",
            "2s",
            "--work-dir",
            &work.path().display().to_string(),
        ],
        &[],
    );
    assert_eq!(run.code, Outcome::TimedOut.exit_code(), "{}", run.stderr);
    let left: Vec<_> = std::fs::read_dir(work.path()).expect("read").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_scp_like_url_with_a_password_is_refused_without_echoing_it() {
    let run = preview("pat:SECRET-VALUE@git.example.org:org/crate.git", &[], &[]);
    assert_eq!(
        run.code,
        Outcome::InvalidRequest.exit_code(),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("embeds a password"), "{}", run.stderr);
    assert!(!run.stderr.contains("SECRET-VALUE"), "{}", run.stderr);
}
