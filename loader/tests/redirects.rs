//! The token stays home: a repository's credentials go only to the scheme, host and port of
//! `--repo`, whatever redirects a server answers with (another host or port, after the 401,
//! from https to http), and a redirect within the origin still loads. Every server is on
//! loopback: 127.0.0.1 and 127.0.0.2 play two hosts.

#[path = "common/binary.rs"]
mod binary;
#[path = "common/fetching.rs"]
mod fetching;
#[path = "common/hostile.rs"]
mod hostile_fixtures;

use std::net::{IpAddr, Ipv4Addr};

use crate_loader::fetch::{FetchError, Fetched};
use crate_operator_api::contract::Outcome;
use crate_test_support::hostile::{PackResponse, RefAdvertisement, Reply, ScriptedHttp, smart_git};
use crate_test_support::{RepoBuilder, SmartHttp};
use hostile_fixtures::{CRATE, META, crate_pack, fetch_of, preview};

const TOKEN: &str = "s3cret-token-that-must-stay-home";
const OTHER_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn crate_repo() -> crate_test_support::BareRepo {
    RepoBuilder::new()
        .file(META, CRATE)
        .commit("crate")
        .build_bare()
        .expect("repo")
}

/// A real repository behind basic auth (user `pat`, [`TOKEN`]) on `ip`, and the URL a redirect
/// to its ref listing would name. The repository lives as long as the server's base dir.
fn private_target(ip: IpAddr) -> (crate_test_support::BareRepo, SmartHttp, String) {
    let repo = crate_repo();
    let target = SmartHttp::builder()
        .bind(ip)
        .basic_auth("pat", TOKEN)
        .start(repo.base_dir())
        .expect("target");
    let location = format!(
        "{}/info/refs?service=git-upload-pack",
        target.url(repo.name())
    );
    (repo, target, location)
}

/// Whether any request the server saw carried an Authorization header.
fn got_credentials(server: &SmartHttp) -> bool {
    server
        .request_log()
        .iter()
        .any(|r| r.authorization_header.is_some())
}

#[test]
fn a_redirect_to_another_host_never_receives_the_token() {
    let (_repo, target, location) = private_target(OTHER_HOST);
    let origin =
        ScriptedHttp::start(move |_| Reply::redirect(302, location.clone())).expect("origin");

    let err = fetch_of(origin.url("/crate.git")).token(TOKEN).fails();
    assert!(
        matches!(err, FetchError::CredentialsElsewhere { .. }),
        "{err}"
    );
    assert_eq!(err.outcome(), Outcome::AuthenticationFailed);
    assert!(err.to_string().contains("127.0.0.2"), "{err}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
    assert!(
        !target.request_log().is_empty(),
        "the redirect was followed"
    );
    assert!(
        !got_credentials(&target),
        "the token went to the redirect target"
    );
}

#[test]
fn a_redirect_after_authentication_does_not_carry_the_token_along() {
    let (_repo, target, location) = private_target(OTHER_HOST);
    // The origin asks for credentials first, then sends the client elsewhere.
    let origin = ScriptedHttp::start(move |request| match request.authorization() {
        None => Reply::Unauthorized,
        Some(_) => Reply::redirect(307, location.clone()),
    })
    .expect("origin");

    let err = fetch_of(origin.url("/crate.git")).token(TOKEN).fails();
    assert!(
        matches!(err, FetchError::CredentialsElsewhere { .. }),
        "{err}"
    );
    assert!(
        !got_credentials(&target),
        "the token went to the redirect target"
    );
    assert!(
        origin
            .requests()
            .iter()
            .any(|r| r.authorization().is_some()),
        "the origin itself did get the token after asking"
    );
}

#[test]
fn a_redirect_to_another_port_of_the_same_host_never_receives_the_token() {
    let (_repo, target, location) = private_target(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let origin =
        ScriptedHttp::start(move |_| Reply::redirect(301, location.clone())).expect("origin");

    let err = fetch_of(origin.url("/crate.git")).token(TOKEN).fails();
    assert!(
        matches!(err, FetchError::CredentialsElsewhere { .. }),
        "{err}"
    );
    assert!(!got_credentials(&target));
}

#[test]
fn a_redirect_within_the_origin_keeps_the_token_and_loads() {
    let (commit, pack) = crate_pack(|_| {});
    let serve = smart_git(
        RefAdvertisement::new([(commit, "refs/heads/main".to_owned())]),
        PackResponse::new(pack),
    );
    let expected = format!("Basic {}", base64_of(&format!("pat:{TOKEN}")));
    // The repository moved on the same server: a relative redirect, then a private repository.
    let origin = ScriptedHttp::start(move |request| {
        if request.path().starts_with("/old.git/") {
            Reply::redirect(301, "/new.git/info/refs?service=git-upload-pack")
        } else if request.authorization() != Some(expected.as_str()) {
            Reply::Unauthorized
        } else {
            serve(request)
        }
    })
    .expect("origin");
    let fetched = fetch_of(origin.url("/old.git"))
        .token(TOKEN)
        .run()
        .expect("loads");
    assert!(matches!(fetched, Fetched::File { ref content, .. } if content == CRATE));
    let log = origin.requests();
    assert!(
        log.iter()
            .any(|r| r.is_upload_pack() && r.authorization().is_some()),
        "the moved repository got the token on the same origin"
    );
    assert!(
        log.iter()
            .filter(|r| r.path().starts_with("/old.git/"))
            .all(|r| r.authorization().is_none()),
        "the token is sent only once the origin asked for it"
    );
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn a_public_repository_may_redirect_elsewhere_and_still_loads() {
    let repo = crate_repo();
    let target = SmartHttp::builder()
        .bind(OTHER_HOST)
        .start(repo.base_dir())
        .expect("target");
    let location = format!(
        "{}/info/refs?service=git-upload-pack",
        target.url(repo.name())
    );
    let origin =
        ScriptedHttp::start(move |_| Reply::redirect(302, location.clone())).expect("origin");

    // With a token configured but never asked for, nothing is sent anywhere.
    let fetched = fetch_of(origin.url("/crate.git"))
        .token(TOKEN)
        .run()
        .expect("loads");
    assert!(matches!(fetched, Fetched::File { ref content, .. } if content == CRATE));
    assert!(!got_credentials(&target));
}

#[test]
fn an_https_redirect_to_another_host_never_receives_the_token() {
    let target = ScriptedHttp::builder()
        .ip(OTHER_HOST)
        .tls()
        .start(|request| match request.authorization() {
            None => Reply::Unauthorized,
            Some(_) => Reply::status(404),
        })
        .expect("https target");
    let location = target.url("/crate.git/info/refs?service=git-upload-pack");
    let origin = ScriptedHttp::builder()
        .tls()
        .start(move |_| Reply::redirect(302, location.clone()))
        .expect("https origin");
    let bundle = tempfile::NamedTempFile::new().expect("bundle");
    let pems = [origin.ca_pem(), target.ca_pem()].map(|p| p.expect("tls").to_owned());
    std::fs::write(bundle.path(), pems.concat()).expect("write bundle");
    let credentials = tempfile::tempdir().expect("credentials");
    std::fs::write(credentials.path().join("token"), TOKEN).expect("token");

    let run = preview(
        &origin.url("/crate.git"),
        &[
            "--credentials-dir",
            &credentials.path().display().to_string(),
        ],
        &[("SSL_CERT_FILE", bundle.path())],
    );
    assert_eq!(
        run.code,
        Outcome::AuthenticationFailed.exit_code(),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("https://127.0.0.2"), "{}", run.stderr);
    assert!(!run.stderr.contains(TOKEN));
    assert!(
        target
            .requests()
            .iter()
            .all(|r| r.authorization().is_none())
    );
}

#[test]
fn a_redirect_from_https_to_http_is_refused() {
    let origin = ScriptedHttp::builder()
        .tls()
        .start(|_| {
            Reply::redirect(
                302,
                "http://127.0.0.2:9/crate.git/info/refs?service=git-upload-pack",
            )
        })
        .expect("https origin");
    let ca = origin.ca_file().expect("ca").to_owned();
    let run = preview(&origin.url("/crate.git"), &[], &[("SSL_CERT_FILE", &ca)]);
    assert_eq!(
        run.code,
        Outcome::InvalidRequest.exit_code(),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("leave https for http"),
        "{}",
        run.stderr
    );
}
