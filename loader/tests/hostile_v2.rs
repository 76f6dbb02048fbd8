//! Hostile servers speaking git protocol v2, where the exchange has steps of its own: `ls-refs`
//! (asked for, not advertised), and the partial path's second request, the want of the one blob
//! the trees name. The attacks both protocols share (packs that expand, lie or break, endless
//! shallow lists, escapes in ref names) are made in both in `hostile.rs`.

#[path = "common/binary.rs"]
mod binary;
#[path = "common/fetching.rs"]
mod fetching;
#[path = "common/hostile.rs"]
mod hostile_fixtures;

use std::net::{IpAddr, Ipv4Addr};

use crate_loader::fetch::{FetchError, Fetched};
use crate_operator_api::contract::{FetchMode, Outcome};
use crate_test_support::hostile::{
    DaemonScript, FetchAnswer, GitRequest, ObjectKind, PackBuilder, PackResponse, Reply,
    ScriptedGitDaemon, ScriptedHttp, TreeItem, V2Script, copy_bomb, object_id,
};
use hostile_fixtures::{CRATE, META, crate_pack, fetch_of, preview};

/// The crate split as a partial fetch receives it: (commit id, a pack of the commit and its
/// tree, a pack of the metadata blob alone).
fn crate_in_two_packs() -> (String, Vec<u8>, Vec<u8>) {
    let mut trees = PackBuilder::new();
    let tree = trees.tree(&[TreeItem::file(META, object_id(ObjectKind::Blob, CRATE))]);
    let commit = trees.commit(tree, &[], "crate");
    let mut blob = PackBuilder::new();
    blob.blob(CRATE.to_vec());
    (commit.hex(), trees.build(), blob.build())
}

/// A daemon answering in v2 with `script`, and in v0 (`v0`) to a client that does not ask for
/// v2 (the loader's fallback).
fn daemon(script: V2Script, v0: DaemonScript) -> ScriptedGitDaemon {
    ScriptedGitDaemon::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), move |r: &GitRequest| {
        if r.extra.iter().any(|e| e == "version=2") {
            DaemonScript::V2(script.clone())
        } else {
            v0.clone()
        }
    })
    .expect("daemon")
}

#[test]
fn an_endless_ls_refs_answer_stops_at_the_transfer_budget_over_git_and_http() {
    let daemon = daemon(V2Script::endless_ls_refs(), DaemonScript::Close);
    let http = ScriptedHttp::start(|_| Reply::V2(V2Script::endless_ls_refs())).expect("http");
    for url in [daemon.url("/crate.git"), http.url("/crate.git")] {
        let run = preview(&url, &["--max-transfer-bytes", "1048576"], &[]);
        eprintln!("{url}");
        run.limit_exceeded("1048576-byte budget");
    }
    assert_eq!(daemon.connections(), 1, "no second attempt after a budget");
}

#[test]
fn a_server_that_refuses_the_blob_want_gets_the_full_fetch_instead() {
    let (commit, trees, _) = crate_in_two_packs();
    let (_, full) = crate_pack(|_| {});
    let refs = [(commit.clone(), "refs/heads/main".to_owned())];
    for refusal in [
        FetchAnswer::Error("want of an object not reachable from a ref".to_owned()),
        FetchAnswer::Close,
    ] {
        let script = V2Script::new(
            refs.clone(),
            vec![
                FetchAnswer::Pack(PackResponse::new(trees.clone())),
                refusal.clone(),
            ],
        );
        let daemon = daemon(
            script.clone(),
            DaemonScript::upload_pack(refs.clone(), full.clone()),
        );
        let fetched = fetch_of(daemon.url("/crate.git"))
            .run()
            .unwrap_or_else(|e| panic!("{refusal:?}: {e}"));
        assert_eq!(
            fetched,
            Fetched::File {
                commit: commit.clone(),
                content: CRATE.to_vec(),
                missing: None,
                mode: FetchMode::Full,
            },
            "{refusal:?}"
        );
        assert_eq!(script.fetches_received(), 2, "{refusal:?}");
        let versions: Vec<bool> = daemon
            .requests()
            .iter()
            .map(|r| r.extra.iter().any(|e| e == "version=2"))
            .collect();
        assert_eq!(
            versions,
            [true, false],
            "{refusal:?}: v2, then the v0 fetch"
        );
    }
}

#[test]
fn a_blob_other_than_the_one_asked_for_is_an_invalid_crate() {
    let (commit, trees, _) = crate_in_two_packs();
    let mut other = PackBuilder::new();
    other.blob(b"{\"not\": \"the crate\"}".to_vec());
    let script = V2Script::new(
        [(commit, "refs/heads/main")],
        vec![
            FetchAnswer::Pack(PackResponse::new(trees)),
            FetchAnswer::Pack(PackResponse::new(other.build())),
        ],
    );
    let daemon = daemon(script, DaemonScript::Close);
    let err = fetch_of(daemon.url("/crate.git")).fails();
    assert!(matches!(err, FetchError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains("is missing"), "{err}");
    assert_eq!(err.outcome(), Outcome::InvalidCrate);
    assert_eq!(daemon.connections(), 1, "no v0 fetch after it");
}

#[test]
fn a_delta_bomb_over_smart_http_in_protocol_v2_is_refused_within_the_memory_budget() {
    let (commit, pack) = crate_pack(|pack| {
        let base = pack.blob(vec![b'x'; 1024]);
        pack.ofs_delta(base, copy_bomb(1024, 2 << 30))
            .expect("bomb");
    });
    let script = V2Script::new(
        [(commit, "refs/heads/main")],
        vec![FetchAnswer::Pack(PackResponse::new(pack))],
    );
    let server = ScriptedHttp::start(move |_| Reply::V2(script.clone())).expect("http");
    let run = preview(
        &server.url("/crate.git"),
        &["--max-transfer-bytes", "100000"],
        &[],
    );
    run.limit_exceeded("expands to more than");
    let posts = server
        .requests()
        .iter()
        .filter(|r| r.is_upload_pack())
        .count();
    assert_eq!(
        posts, 2,
        "ls-refs and one fetch, no v0 fetch after the refusal"
    );
}
