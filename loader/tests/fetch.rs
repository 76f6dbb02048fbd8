//! The fetch against real git servers on loopback: git daemon, smart HTTP with basic auth, and
//! sshd. Each adversarial repository asserts the specific error it must produce, from a daemon
//! that filters objects (the partial fetch) and from one that does not (the whole tip) alike.

#[path = "common/fetching.rs"]
mod fetching;

use std::path::Path;
use std::time::Duration;

use crate_loader::credentials::{Credentials, Secret};
use crate_loader::fetch::{FetchError, FetchLimits, Fetched};
use crate_operator_api::contract::{FetchMode, Outcome};
use crate_test_support::{BareRepo, GitDaemon, MIB, RepoBuilder, SmartHttp, Sshd};
use fetching::{CRATE, Fetch, META};
const TOKEN: &str = "s3cret-token-value";

fn crate_repo() -> BareRepo {
    RepoBuilder::new()
        .file(META, CRATE)
        .file("README.md", "demo")
        .commit("crate")
        .build_bare()
        .expect("repo")
}

fn serve(repo: &BareRepo) -> (GitDaemon, String) {
    let daemon = GitDaemon::start(repo.base_dir()).expect("git daemon");
    let url = daemon.url(repo.name());
    (daemon, url)
}

/// The repository from a git daemon that filters objects (the partial fetch) and from one that
/// does not (the whole tip), with the mode each fetch reports: what a test asserts of the crate's
/// content holds on both paths.
fn served(repo: &BareRepo) -> [(GitDaemon, String, FetchMode); 2] {
    let filtering = GitDaemon::start_filtering(repo.base_dir()).expect("git daemon");
    let url = filtering.url(repo.name());
    let (plain, plain_url) = serve(repo);
    [
        (filtering, url, FetchMode::Partial),
        (plain, plain_url, FetchMode::Full),
    ]
}

#[test]
fn a_crate_is_read_over_git_daemon_at_the_branch_head() {
    let repo = crate_repo();
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        let fetched = Fetch::of(url).run().expect("fetch");
        assert_eq!(
            fetched,
            Fetched::File {
                commit: repo.head("main"),
                content: CRATE.to_vec(),
                missing: None,
                mode,
            }
        );
    }
}

#[test]
fn payload_paths_are_looked_up_in_the_commits_trees_beside_the_metadata_file() {
    let repo = RepoBuilder::new()
        .file(META, CRATE)
        .file("bagit/data/rows/a.csv", "a")
        .file("bagit/data/notes", "a file where a directory is asked for")
        .file("rows/b.csv", "outside the crate's directory")
        .commit("crate")
        .build_bare()
        .expect("repo");
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        let asked = [
            "rows/a.csv",
            "rows",
            "rows/b.csv",
            "notes/x.txt",
            "notes",
            "gone",
        ];
        let fetch = Fetch {
            payload_paths: Some(asked.iter().map(ToString::to_string).collect()),
            ..Fetch::of(url)
        };
        let Fetched::File { missing, .. } = fetch.run().expect("fetch") else {
            panic!("the file was fetched");
        };
        assert_eq!(
            missing,
            Some(vec![
                "rows/b.csv".to_owned(),
                "notes/x.txt".to_owned(),
                "gone".to_owned()
            ])
        );
    }
}

#[test]
fn the_requested_branch_is_read_not_the_default_one() {
    let repo = RepoBuilder::new()
        .file(META, CRATE)
        .commit("main")
        .branch("dev")
        .file(META, b"{\"dev\":true}")
        .commit("dev")
        .build_bare()
        .expect("repo");
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        let fetch = Fetch {
            branch: "dev".into(),
            ..Fetch::of(url)
        };
        assert_eq!(
            fetch.run().expect("fetch"),
            Fetched::File {
                commit: repo.head("dev"),
                content: b"{\"dev\":true}".to_vec(),
                missing: None,
                mode,
            }
        );
    }
}

#[test]
fn smart_http_with_basic_auth_sends_the_token_as_the_password_of_user_pat() {
    let repo = crate_repo();
    let http = SmartHttp::builder()
        .basic_auth("pat", TOKEN)
        .start(repo.base_dir())
        .expect("http");
    let fetched = Fetch::of(http.url(repo.name()))
        .token(TOKEN)
        .run()
        .expect("fetch");
    assert_eq!(fetched.commit(), repo.head("main"));
    assert!(
        http.request_log()
            .iter()
            .any(|r| r.authorization && r.is_upload_pack())
    );
}

#[test]
fn wrong_credentials_are_reported_as_rejected_without_echoing_them() {
    let repo = crate_repo();
    let http = SmartHttp::builder()
        .basic_auth("pat", TOKEN)
        .start(repo.base_dir())
        .expect("http");
    let err = Fetch::of(http.url(repo.name()))
        .token("wrong-token-value")
        .fails();
    assert!(matches!(err, FetchError::AuthRejected { .. }), "{err}");
    assert_eq!(err.outcome(), Outcome::AuthenticationFailed);
    assert!(!err.to_string().contains("wrong-token-value"), "{err}");
}

#[test]
fn a_private_repository_without_credentials_says_to_set_the_secret() {
    let repo = crate_repo();
    let http = SmartHttp::builder()
        .basic_auth("pat", TOKEN)
        .start(repo.base_dir())
        .expect("http");
    let err = Fetch::of(http.url(repo.name())).fails();
    assert!(matches!(err, FetchError::AuthRequired { .. }), "{err}");
    assert!(err.to_string().contains("spec.repo.secretName"), "{err}");
}

#[test]
fn an_unchanged_head_is_recognised_without_fetching_any_object() {
    let repo = crate_repo();
    let http = SmartHttp::start(repo.base_dir()).expect("http");
    let fetch = Fetch {
        skip_if_head_is: Some(repo.head("main")),
        ..Fetch::of(http.url(repo.name()))
    };
    assert_eq!(
        fetch.run().expect("fetch"),
        Fetched::Unchanged {
            commit: repo.head("main")
        }
    );
    let log = http.request_log();
    assert!(!log.is_empty(), "the refs were listed");
    assert!(
        !log.iter().any(crate_test_support::Request::is_fetch),
        "objects were requested: {:?}",
        http.requests()
    );
}

#[test]
fn a_new_commit_is_fetched_even_when_a_previous_one_was_loaded() {
    let repo = crate_repo();
    let old = repo.head("main");
    repo.update(|b| b.file(META, b"{\"v\":2}").commit("second"))
        .expect("update");
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        let fetch = Fetch {
            skip_if_head_is: Some(old.clone()),
            ..Fetch::of(url)
        };
        let fetched = fetch.run().expect("fetch");
        assert_ne!(fetched.commit(), old);
        assert_eq!(
            fetched,
            Fetched::File {
                commit: repo.head("main"),
                content: b"{\"v\":2}".to_vec(),
                missing: None,
                mode,
            }
        );
    }
}

#[test]
fn a_missing_branch_is_not_found_and_the_existing_branches_are_listed() {
    let repo = RepoBuilder::new()
        .file(META, CRATE)
        .commit("c")
        .branch("release")
        .commit("r")
        .build_bare()
        .expect("repo");
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        let err = Fetch {
            branch: "mian".into(),
            ..Fetch::of(url)
        }
        .fails();
        assert_eq!(err.outcome(), Outcome::NotFound);
        assert!(
            err.to_string()
                .contains("branch \"mian\" does not exist; check spec.repo.branch (branches: "),
            "{err}"
        );
        assert!(err.to_string().contains("release"), "{err}");
    }
}

#[test]
fn a_missing_metadata_file_is_not_found_and_names_the_path_and_revision() {
    let repo = crate_repo();
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        let err = Fetch {
            path: "/ro-crate-metadata.json".into(),
            ..Fetch::of(url)
        }
        .fails();
        assert!(matches!(err, FetchError::FileNotFound { .. }), "{err}");
        let expected = format!(
            "failed to read /ro-crate-metadata.json at main@sha1:{}: no such file; check spec.path",
            repo.head("main")
        );
        assert_eq!(err.to_string(), expected);
    }
}

#[test]
fn a_missing_repository_is_not_found_over_http_and_git_daemon() {
    let repo = crate_repo();
    let http = SmartHttp::start(repo.base_dir()).expect("http");
    let err = Fetch::of(http.url("nope.git")).fails();
    assert!(
        matches!(err, FetchError::RepositoryNotFound { .. }),
        "{err}"
    );
    let daemon = GitDaemon::start(repo.base_dir()).expect("daemon");
    let err = Fetch::of(daemon.url("nope.git")).fails();
    assert_eq!(err.outcome(), Outcome::NotFound, "{err}");
}

#[test]
fn a_symlink_at_the_metadata_path_is_refused() {
    let repo = RepoBuilder::new()
        .symlink(META, "/etc/passwd")
        .commit("evil")
        .build_bare()
        .expect("repo");
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        let err = Fetch::of(url).fails();
        assert!(
            matches!(&err, FetchError::NotAFile { kind, .. } if kind == "symbolic link"),
            "{err}"
        );
        assert_eq!(err.outcome(), Outcome::InvalidCrate);
    }
}

#[test]
fn a_symlinked_directory_on_the_way_to_the_metadata_is_refused() {
    let repo = RepoBuilder::new()
        .file("elsewhere/data/ro-crate-metadata.json", CRATE)
        .symlink("bagit", "elsewhere")
        .commit("evil")
        .build_bare()
        .expect("repo");
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        let err = Fetch::of(url).fails();
        assert!(
            err.to_string()
                .starts_with("failed to read /bagit at main@sha1:"),
            "{err}"
        );
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
}

#[test]
fn a_gitlink_at_the_metadata_path_is_refused() {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let repo = RepoBuilder::new()
        .submodule(META, "https://example.org/x.git", sha)
        .commit("sub")
        .build_bare()
        .expect("repo");
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        let err = Fetch::of(url).fails();
        assert!(
            matches!(&err, FetchError::NotAFile { kind, .. } if kind == "submodule (gitlink)"),
            "{err}"
        );
    }
}

#[test]
fn submodules_elsewhere_in_the_tree_are_never_fetched() {
    let other = RepoBuilder::new()
        .file("x", "x")
        .commit("other")
        .build_bare()
        .expect("other");
    let other_daemon = GitDaemon::start(other.base_dir()).expect("daemon");
    let repo = RepoBuilder::new()
        .file(META, CRATE)
        .submodule(
            "vendor/other",
            &other_daemon.url(other.name()),
            &other.head("main"),
        )
        .commit("with submodule")
        .build_bare()
        .expect("repo");
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        assert_eq!(
            Fetch::of(url).run().expect("fetch").commit(),
            repo.head("main")
        );
        assert_eq!(
            other_daemon.connections(),
            0,
            "the submodule's server was contacted"
        );
    }
}

#[test]
fn a_directory_at_the_metadata_path_is_refused() {
    let repo = RepoBuilder::new()
        .file(&format!("{META}/inner.json"), CRATE)
        .commit("dir")
        .build_bare()
        .expect("repo");
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        assert!(
            matches!(Fetch::of(url).fails(), FetchError::NotAFile { kind, .. } if kind == "directory")
        );
    }
}

#[test]
fn hooks_in_the_repository_never_run() {
    let marker = tempfile::tempdir().expect("tempdir");
    let flag = marker.path().join("ran");
    let script = format!("#!/bin/sh\ntouch {}\n", flag.display());
    let repo = RepoBuilder::new()
        .file(META, CRATE)
        .tree_hook("post-checkout", &script)
        .tree_hook("post-merge", &script)
        .config("core.hooksPath", ".githooks")
        .commit("hooks")
        .build_bare()
        .expect("repo");
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        Fetch::of(url).run().expect("fetch");
        assert!(!flag.exists(), "a hook from the repository ran");
    }
}

#[test]
fn an_oversize_metadata_blob_is_refused() {
    let repo = RepoBuilder::new()
        .large_file(META, 2 * MIB, 7)
        .commit("huge")
        .build_bare()
        .expect("repo");
    for (_daemon, url, mode) in served(&repo) {
        eprintln!("{mode:?}");
        let limits = FetchLimits {
            max_file_bytes: MIB,
            ..FetchLimits::default()
        };
        let err = Fetch {
            limits,
            ..Fetch::of(url)
        }
        .fails();
        assert!(
            matches!(err, FetchError::FileTooLarge { size, .. } if size == 2 * MIB),
            "{err}"
        );
        assert_eq!(err.outcome(), Outcome::LimitExceeded);
    }
}

#[test]
fn a_transfer_over_the_byte_budget_is_aborted() {
    let repo = RepoBuilder::new()
        .file(META, CRATE)
        .large_file("data/blob.bin", 8 * MIB, 3)
        .commit("big")
        .build_bare()
        .expect("repo");
    let http = SmartHttp::start(repo.base_dir()).expect("http");
    let limits = FetchLimits {
        max_transfer_bytes: MIB,
        ..FetchLimits::default()
    };
    let err = Fetch {
        limits,
        ..Fetch::of(http.url(repo.name()))
    }
    .fails();
    assert!(
        matches!(err, FetchError::TransferTooLarge { limit, .. } if limit == MIB),
        "{err}"
    );
    assert_eq!(err.outcome(), Outcome::LimitExceeded);
}

#[test]
fn a_tip_with_too_many_objects_is_aborted() {
    let repo = RepoBuilder::new()
        .file(META, CRATE)
        .many_files("many", 5_000)
        .commit("many")
        .build_bare()
        .expect("repo");
    let (_daemon, url) = serve(&repo);
    let limits = FetchLimits {
        max_objects: 1_000,
        ..FetchLimits::default()
    };
    let err = Fetch {
        limits,
        ..Fetch::of(url)
    }
    .fails();
    assert!(
        matches!(err, FetchError::TooManyObjects { limit: 1_000, .. }),
        "{err}"
    );
}

#[test]
fn only_the_tip_commit_is_fetched() {
    // Ten commits of a 1 MiB file each: a full clone would move ~10 MiB, depth 1 only ~1 MiB.
    let mut builder = RepoBuilder::new().file(META, CRATE);
    for i in 0..10 {
        builder = builder
            .large_file("data/blob.bin", MIB, i)
            .commit(&format!("c{i}"));
    }
    let repo = builder.build_bare().expect("repo");
    let http = SmartHttp::start(repo.base_dir()).expect("http");
    Fetch::of(http.url(repo.name())).run().expect("fetch");
    assert!(
        http.bytes_sent() < 3 * MIB,
        "sent {} bytes: history was fetched",
        http.bytes_sent()
    );
}

#[test]
fn an_expired_deadline_stops_the_fetch_as_timed_out() {
    let repo = RepoBuilder::new()
        .file(META, CRATE)
        .large_file("data/blob.bin", 4 * MIB, 1)
        .commit("c")
        .build_bare()
        .expect("repo");
    let (_daemon, url) = serve(&repo);
    let err = Fetch {
        timeout: Duration::ZERO,
        ..Fetch::of(url)
    }
    .fails();
    assert_eq!(err.outcome(), Outcome::TimedOut, "{err}");
}

fn ssh_fixture() -> (Sshd, BareRepo) {
    let sshd = Sshd::start().expect("sshd (Debian package openssh-server)");
    (sshd, crate_repo())
}

fn ssh_credentials(sshd: &Sshd, key: &Path, known_hosts: &str) -> Credentials {
    Credentials {
        identity: Some(Secret::new(
            std::fs::read_to_string(key).expect("client key"),
        )),
        known_hosts: Some(known_hosts.to_owned()),
        ..Credentials::default()
    }
    .tap_user(sshd)
}

trait TapUser {
    fn tap_user(self, sshd: &Sshd) -> Self;
}
impl TapUser for Credentials {
    fn tap_user(mut self, sshd: &Sshd) -> Self {
        self.username = Some(sshd.user().to_owned());
        self
    }
}

#[test]
fn ssh_with_a_listed_host_key_and_an_authorised_key_reads_the_crate() {
    let (sshd, repo) = ssh_fixture();
    let credentials = ssh_credentials(&sshd, &sshd.client_key(), sshd.known_hosts_line());
    let fetched = Fetch {
        credentials,
        ..Fetch::of(sshd.url(repo.path()))
    }
    .run()
    .expect("ssh fetch");
    assert_eq!(
        fetched,
        Fetched::File {
            commit: repo.head("main"),
            content: CRATE.to_vec(),
            missing: None,
            mode: FetchMode::Full,
        }
    );
}

#[test]
fn ssh_accepts_hashed_known_hosts_entries() {
    let (sshd, repo) = ssh_fixture();
    let credentials = ssh_credentials(&sshd, &sshd.client_key(), sshd.hashed_known_hosts_line());
    Fetch {
        credentials,
        ..Fetch::of(sshd.url(repo.path()))
    }
    .run()
    .expect("ssh fetch");
}

#[test]
fn ssh_without_known_hosts_is_refused_before_connecting() {
    let (sshd, repo) = ssh_fixture();
    let mut credentials = ssh_credentials(&sshd, &sshd.client_key(), "");
    credentials.known_hosts = None;
    let err = Fetch {
        credentials,
        ..Fetch::of(sshd.url(repo.path()))
    }
    .fails();
    assert!(matches!(err, FetchError::MissingKnownHosts { .. }), "{err}");
    assert_eq!(err.outcome(), Outcome::InvalidRequest);
}

#[test]
fn ssh_to_a_host_with_an_unlisted_key_is_refused() {
    let (sshd, repo) = ssh_fixture();
    let other = format!(
        "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        sshd.port()
    );
    let credentials = ssh_credentials(&sshd, &sshd.client_key(), &other);
    let err = Fetch {
        credentials,
        ..Fetch::of(sshd.url(repo.path()))
    }
    .fails();
    assert!(matches!(err, FetchError::HostKey { .. }), "{err}");
    assert!(
        err.to_string().contains("possible man-in-the-middle"),
        "{err}"
    );
}

#[test]
fn ssh_with_an_unauthorised_client_key_is_rejected() {
    let (sshd, repo) = ssh_fixture();
    let credentials = ssh_credentials(&sshd, &sshd.unauthorized_key(), sshd.known_hosts_line());
    let err = Fetch {
        credentials,
        ..Fetch::of(sshd.url(repo.path()))
    }
    .fails();
    assert_eq!(err.outcome(), Outcome::AuthenticationFailed, "{err}");
}

#[test]
fn the_shared_branch_rule_agrees_with_libgit2s_reference_name_check() {
    use crate_loader::source::Branch;
    // Branch names from the shared rule's own tests and beyond, including every single
    // printable ASCII character inside a name.
    let mut names: Vec<String> = [
        "main",
        "release/2024-10",
        "feature/a.b",
        "v1.0",
        "x@y",
        "ü-ok",
        "a.lockx",
        "X.LOCK",
        "",
        "a..b",
        "a b",
        "x.lock",
        "a/x.lock/b",
        "a:b",
        "@{-1}",
        ".hidden",
        "a/.b",
        "a\nb",
        "@",
        "v1.",
        "a/",
        "/a",
        "a//b",
        "a~1",
        "a^",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "a\u{7f}",
        "a/b.",
        "a.",
        "a@",
        "@b",
        "a/@/b",
        "-",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.extend((0x20u8..0x7f).map(|b| format!("a{}b", b as char)));
    for name in names {
        // A branch name adds rules of its own to the ref name check, as `git branch` applies
        // them: no leading '-', and neither HEAD nor '@' (its shorthand).
        let git = git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
            && !name.starts_with('-')
            && name != "HEAD"
            && name != "@";
        assert_eq!(Branch::parse(&name).is_ok(), git, "{name:?}");
    }
}
