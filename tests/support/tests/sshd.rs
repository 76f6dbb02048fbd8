//! SSH server: clone with the generated keys, strict host key checking with plain and hashed
//! `known_hosts` entries, refused keys and hosts, shutdown.

use std::net::TcpStream;
use std::time::Duration;

use crate_test_support::{RepoBuilder, Sshd, git, run};

#[test]
fn git_over_ssh_with_keys_and_known_hosts() {
    let repo = RepoBuilder::new()
        .file("bagit/data/ro-crate-metadata.json", "{}")
        .commit("one")
        .branch("dev")
        .commit("two")
        .build_bare()
        .expect("fixture");
    let sshd = Sshd::start().expect("start sshd");
    let url = sshd.url(repo.path());
    assert_eq!(
        url,
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            sshd.user(),
            sshd.port(),
            repo.path().display()
        )
    );
    let port = sshd.port();
    assert_eq!(
        sshd.known_hosts_line(),
        format!("[127.0.0.1]:{port} {}", sshd.host_public_key())
    );
    assert!(sshd.host_public_key().starts_with("ssh-ed25519 AAAA"));
    assert!(sshd.hashed_known_hosts_line().starts_with("|1|"));
    assert!(
        sshd.hashed_known_hosts_line()
            .ends_with(sshd.host_public_key())
    );
    let blob = sshd.host_key_blob().expect("blob");
    assert_eq!(&blob[4..15], b"ssh-ed25519");

    // ed25519 key in OpenSSH format, plain known_hosts entry
    let refs = run(git()
        .env("GIT_SSH_COMMAND", sshd.git_ssh_command())
        .args(["ls-remote", &url]))
    .expect("ls-remote over ssh");
    assert!(
        refs.contains(&format!("{}\trefs/heads/dev", repo.head("dev"))),
        "{refs}"
    );

    // RSA key in PEM format, hashed known_hosts entry, a shallow clone
    let work = tempfile::tempdir().expect("tempdir");
    let hashed = work.path().join("known_hosts_hashed");
    std::fs::write(&hashed, format!("{}\n", sshd.hashed_known_hosts_line())).expect("write");
    let pem = std::fs::read_to_string(sshd.client_key_rsa_pem()).expect("read key");
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let ssh = sshd
        .git_ssh_command_with_key(&sshd.client_key_rsa_pem())
        .replace(
            &sshd.known_hosts_file().display().to_string(),
            &hashed.display().to_string(),
        );
    run(git()
        .env("GIT_SSH_COMMAND", ssh)
        .args([
            "clone",
            "--quiet",
            "--bare",
            "--depth=1",
            "--branch=main",
            &url,
        ])
        .arg(work.path().join("c.git")))
    .expect("clone over ssh");
    let log = sshd.log();
    assert!(log.contains("Accepted publickey"), "{log}");
}

#[test]
fn unauthorized_key_and_unknown_host_are_refused() {
    let repo = RepoBuilder::new()
        .file("a", "1")
        .commit("one")
        .build_bare()
        .expect("fixture");
    let sshd = Sshd::start().expect("start sshd");
    let url = sshd.url(repo.path());

    let out = git()
        .env(
            "GIT_SSH_COMMAND",
            sshd.git_ssh_command_with_key(&sshd.unauthorized_key()),
        )
        .args(["ls-remote", &url])
        .output()
        .expect("run git");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");

    // a known_hosts file without this server
    let work = tempfile::tempdir().expect("tempdir");
    let empty = work.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let ssh = sshd.git_ssh_command().replace(
        &sshd.known_hosts_file().display().to_string(),
        &empty.display().to_string(),
    );
    let out = git()
        .env("GIT_SSH_COMMAND", ssh)
        .args(["ls-remote", &url])
        .output()
        .expect("run git");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Host key verification failed"), "{stderr}");

    let addr = sshd.addr();
    drop(sshd);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}
