//! The partial fetch against real servers on loopback: `git daemon` and sshd with and without
//! `uploadpack.allowFilter` (and, for ssh, with and without `AcceptEnv GIT_PROTOCOL`), and
//! smart HTTP and https. The daemon's packet trace is the request log: it shows what was asked for; the
//! byte budget shows what was not sent.

#[path = "common/binary.rs"]
mod binary;
#[path = "common/fetching.rs"]
mod fetching;

use std::time::Duration;

use binary::loader;
use crate_loader::credentials::{Credentials, Secret};
use crate_loader::fetch::{FetchError, FetchLimits, Fetched};
use crate_operator_api::contract::{FetchMode, Outcome};
use crate_test_support::{BareRepo, GitDaemon, MIB, RepoBuilder, SmartHttp, Sshd};
use fetching::{CRATE, Fetch, META};

/// A crate beside 8 MiB of data that cannot be compressed, served with or without filters.
fn data_repo(allow_filter: bool) -> BareRepo {
    let builder = RepoBuilder::new()
        .file(META, CRATE)
        .file("bagit/data/rows/a.csv", "x,y\n1,2\n")
        .large_file("bagit/data/payload.bin", 8 * MIB, 7)
        .compression(0)
        .commit("crate with data");
    let builder = if allow_filter {
        builder.config("uploadpack.allowFilter", "true")
    } else {
        builder
    };
    builder.build_bare().expect("repo")
}

/// A budget the data alone exceeds eight times over.
fn one_mib() -> FetchLimits {
    FetchLimits {
        max_transfer_bytes: MIB,
        ..FetchLimits::default()
    }
}

fn mode(fetched: &Fetched) -> FetchMode {
    match fetched {
        Fetched::File { mode, .. } => *mode,
        Fetched::Unchanged { .. } => panic!("expected the file, got {fetched:?}"),
    }
}

/// The object ids `upload-pack` was asked for, in order (`want <id>` lines of the trace).
fn wants(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter_map(|line| line.split_once("upload-pack< want ").map(|(_, rest)| rest))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn a_server_with_filters_sends_only_the_commit_the_trees_and_the_metadata_blob() {
    let repo = data_repo(true);
    let daemon = GitDaemon::start_traced(repo.base_dir()).expect("git daemon");
    let fetched = Fetch {
        limits: one_mib(),
        payload_paths: Some(vec![
            "rows/a.csv".into(),
            "payload.bin".into(),
            "gone".into(),
        ]),
        ..Fetch::of(daemon.url(repo.name()))
    }
    .run()
    .expect("a partial fetch stays far within 1 MiB");
    assert_eq!(
        fetched,
        Fetched::File {
            commit: repo.head("main"),
            content: CRATE.to_vec(),
            missing: Some(vec!["gone".into()]),
            mode: FetchMode::Partial,
        }
    );
    let trace = daemon.packet_trace();
    let blob = repo
        .rev_parse(&format!("main:{META}"))
        .expect("the metadata blob's id");
    assert_eq!(wants(&trace), [repo.head("main"), blob], "{trace}");
    assert!(trace.contains("upload-pack< filter blob:none"), "{trace}");
    assert!(trace.contains("upload-pack< deepen 1"), "{trace}");
}

#[test]
fn a_server_without_filters_gets_the_whole_tip_at_depth_one() {
    let repo = data_repo(false);
    let daemon = GitDaemon::start(repo.base_dir()).expect("git daemon");
    let url = daemon.url(repo.name());
    let fetched = Fetch::of(url.clone()).run().expect("fetch");
    assert_eq!(mode(&fetched), FetchMode::Full);
    // The full path really moves the data: the same budget that a partial fetch kept is too small.
    let err = Fetch {
        limits: one_mib(),
        ..Fetch::of(url)
    }
    .fails();
    assert!(matches!(err, FetchError::TransferTooLarge { .. }), "{err}");
}

#[test]
fn smart_http_fetches_partially_and_falls_back_without_filters() {
    let repo = data_repo(true);
    let http = SmartHttp::start(repo.base_dir()).expect("http");
    let fetched = Fetch {
        limits: one_mib(),
        ..Fetch::of(http.url(repo.name()))
    }
    .run()
    .expect("a partial fetch over smart HTTP");
    assert_eq!(mode(&fetched), FetchMode::Partial);
    assert!(http.bytes_sent() < MIB, "sent {} bytes", http.bytes_sent());

    let plain = data_repo(false);
    let http = SmartHttp::start(plain.base_dir()).expect("http");
    let fetched = Fetch::of(http.url(plain.name())).run().expect("fetch");
    assert_eq!(mode(&fetched), FetchMode::Full);
}

#[test]
fn a_private_repository_is_fetched_partially_with_the_token_sent_only_after_the_401() {
    let repo = data_repo(true);
    let http = SmartHttp::builder()
        .basic_auth("pat", "s3cret-token-value")
        .start(repo.base_dir())
        .expect("http");
    let fetched = Fetch {
        limits: one_mib(),
        ..Fetch::of(http.url(repo.name())).token("s3cret-token-value")
    }
    .run()
    .expect("a private partial fetch");
    assert_eq!(mode(&fetched), FetchMode::Partial);
    let log = http.request_log();
    let summaries: Vec<String> = log
        .iter()
        .map(crate_test_support::Request::summary)
        .collect();
    let name = repo.name();
    assert_eq!(
        summaries,
        [
            format!("GET /{name}/info/refs?service=git-upload-pack auth=no 401"),
            format!("GET /{name}/info/refs?service=git-upload-pack auth=yes 200"),
            format!("POST /{name}/git-upload-pack [ls-refs] auth=yes 200"),
            format!("POST /{name}/git-upload-pack [fetch] auth=yes 200"),
            format!("POST /{name}/git-upload-pack [fetch] auth=yes 200"),
        ]
    );
    assert!(
        log.iter()
            .all(|r| r.git_protocol.as_deref() == Some("version=2")),
        "{log:?}"
    );
}

#[test]
fn https_fetches_partially_through_the_loader_binary() {
    let repo = RepoBuilder::new()
        .file(
            META,
            include_bytes!("../../examples/demo-crate/bagit/data/ro-crate-metadata.json"),
        )
        .large_file("bagit/data/payload.bin", 8 * MIB, 9)
        .compression(0)
        .commit("the example crate with data")
        .config("uploadpack.allowFilter", "true")
        .build_bare()
        .expect("repo");
    let https = SmartHttp::builder()
        .tls()
        .start(repo.base_dir())
        .expect("https");
    let out = loader()
        .args(["preview", "--repo", &https.url(repo.name())])
        .args(["--path", &format!("/{META}")])
        // The data alone is 8 MiB: only a partial fetch fits.
        .args(["--max-transfer-bytes", &MIB.to_string()])
        .env("SSL_CERT_FILE", https.ca_file().expect("tls"))
        .output()
        .expect("crate-loader runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Partial"), "{stderr}");
    assert!(https.bytes_sent() < MIB, "sent {}", https.bytes_sent());
}

#[test]
fn an_unchanged_head_stops_after_ls_refs_on_a_partial_capable_server() {
    let repo = data_repo(true);
    let daemon = GitDaemon::start_traced(repo.base_dir()).expect("git daemon");
    let fetched = Fetch {
        skip_if_head_is: Some(repo.head("main")),
        ..Fetch::of(daemon.url(repo.name()))
    }
    .run()
    .expect("fetch");
    assert_eq!(
        fetched,
        Fetched::Unchanged {
            commit: repo.head("main")
        }
    );
    let trace = daemon.packet_trace();
    assert!(trace.contains("command=ls-refs"), "{trace}");
    assert!(!trace.contains("command=fetch"), "{trace}");
}

#[test]
fn a_missing_branch_is_named_with_the_branches_ls_refs_listed() {
    let repo = RepoBuilder::new()
        .file(META, CRATE)
        .commit("c")
        .branch("release")
        .config("uploadpack.allowFilter", "true")
        .build_bare()
        .expect("repo");
    let daemon = GitDaemon::start(repo.base_dir()).expect("git daemon");
    let err = Fetch {
        branch: "mian".into(),
        ..Fetch::of(daemon.url(repo.name()))
    }
    .fails();
    let FetchError::BranchNotFound { available, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(available, &["main".to_owned(), "release".to_owned()]);
}

#[test]
fn the_partial_path_refuses_what_the_full_path_refuses() {
    let symlink = RepoBuilder::new()
        .symlink(META, "/etc/passwd")
        .commit("link")
        .config("uploadpack.allowFilter", "true")
        .build_bare()
        .expect("repo");
    let daemon = GitDaemon::start(symlink.base_dir()).expect("git daemon");
    let err = Fetch::of(daemon.url(symlink.name())).fails();
    assert!(
        matches!(&err, FetchError::NotAFile { kind, .. } if kind == "symbolic link"),
        "{err}"
    );

    let oversize = RepoBuilder::new()
        .large_file(META, 2 * MIB, 1)
        .commit("huge metadata")
        .config("uploadpack.allowFilter", "true")
        .build_bare()
        .expect("repo");
    let daemon = GitDaemon::start(oversize.base_dir()).expect("git daemon");
    let err = Fetch {
        limits: FetchLimits {
            max_file_bytes: MIB,
            ..FetchLimits::default()
        },
        ..Fetch::of(daemon.url(oversize.name()))
    }
    .fails();
    assert!(matches!(err, FetchError::FileTooLarge { .. }), "{err}");
}

#[test]
fn the_partial_path_keeps_every_budget() {
    let many = RepoBuilder::new()
        .file(META, CRATE)
        .many_files("many", 3_000)
        .commit("many")
        .config("uploadpack.allowFilter", "true")
        .build_bare()
        .expect("repo");
    let daemon = GitDaemon::start(many.base_dir()).expect("git daemon");
    let url = daemon.url(many.name());
    // A blob-less tip is still one commit and its trees: those count, blobs are not sent.
    let fetched = Fetch {
        limits: FetchLimits {
            max_objects: 100,
            ..FetchLimits::default()
        },
        ..Fetch::of(url.clone())
    }
    .run()
    .expect("3,000 files in few trees stay within 100 objects");
    assert_eq!(mode(&fetched), FetchMode::Partial);

    let err = Fetch {
        limits: FetchLimits {
            max_transfer_bytes: 2_000,
            ..FetchLimits::default()
        },
        ..Fetch::of(url.clone())
    }
    .fails();
    assert!(
        matches!(err, FetchError::TransferTooLarge { limit: 2_000, .. }),
        "{err}"
    );

    let err = Fetch {
        timeout: Duration::ZERO,
        ..Fetch::of(url)
    }
    .fails();
    assert_eq!(err.outcome(), Outcome::TimedOut, "{err}");
}

fn ssh_credentials(sshd: &Sshd) -> Credentials {
    Credentials {
        identity: Some(Secret::new(
            std::fs::read_to_string(sshd.client_key()).expect("client key"),
        )),
        known_hosts: Some(sshd.known_hosts_line().to_owned()),
        username: Some(sshd.user().to_owned()),
        ..Credentials::default()
    }
}

#[test]
fn ssh_fetches_partially_when_the_server_passes_git_protocol_on() {
    let sshd = Sshd::start_with("AcceptEnv GIT_PROTOCOL\n").expect("sshd");
    let repo = data_repo(true);
    let fetched = Fetch {
        credentials: ssh_credentials(&sshd),
        limits: one_mib(),
        ..Fetch::of(sshd.url(repo.path()))
    }
    .run()
    .expect("ssh partial fetch");
    assert_eq!(mode(&fetched), FetchMode::Partial);
}

#[test]
fn ssh_to_a_server_that_refuses_git_protocol_fetches_the_whole_tip() {
    // OpenSSH's default: the variable is dropped and git-upload-pack answers in protocol v0.
    let sshd = Sshd::start().expect("sshd");
    let repo = data_repo(true);
    let credentials = ssh_credentials(&sshd);
    let fetched = Fetch {
        credentials: credentials.clone(),
        ..Fetch::of(sshd.url(repo.path()))
    }
    .run()
    .expect("ssh fetch");
    assert_eq!(mode(&fetched), FetchMode::Full);
    // Two sessions: the v2 attempt, answered in v0, then libgit2's fetch.
    let sessions = || sshd.log().matches("Accepted publickey").count();
    assert_eq!(sessions(), 2, "{}", sshd.log());
    // The v0 advertisement already answers the no-op check: no second session.
    let fetched = Fetch {
        credentials,
        skip_if_head_is: Some(repo.head("main")),
        ..Fetch::of(sshd.url(repo.path()))
    }
    .run()
    .expect("ssh no-op");
    assert!(matches!(fetched, Fetched::Unchanged { .. }), "{fetched:?}");
    assert_eq!(sessions(), 3, "{}", sshd.log());
}
