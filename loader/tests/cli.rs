//! The `crate-loader` binary as users run it: preview, validate, copy-to, exit codes, and the
//! guarantee that no credential reaches its output.

#[path = "common/binary.rs"]
mod binary;
mod common;

use binary::loader;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate_operator_api::contract::Outcome;
use crate_test_support::{RepoBuilder, SmartHttp, Tarpit};

const TOKEN: &str = "ghp_s3cretTokenThatMustNeverLeak";

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("crate-loader runs");
    (
        status.code().expect("exited normally"),
        String::from_utf8(stdout).expect("utf-8 stdout"),
        String::from_utf8(stderr).expect("utf-8 stderr"),
    )
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn credentials_dir(token: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), format!("{token}\n")).expect("token file");
    dir
}

#[test]
fn preview_of_the_bundled_example_prints_the_datasource() {
    let example = repo_root().join("examples/demo-crate.git");
    let (code, stdout, stderr) = run(loader()
        .args(["preview", "--path", PATH, "--repo"])
        .arg(&example));
    assert_eq!(code, 0, "{stderr}");
    let ds: serde_yaml::Value = serde_yaml::from_str(&stdout).expect("YAML on stdout");
    assert_eq!(ds["kind"], "AnalyticsDataSource");
    assert_eq!(ds["metadata"]["name"], "demo-crate");
    assert_eq!(ds["spec"]["type"], "Uploaded");
    let root = example_root();
    assert_eq!(
        ds["spec"]["displayName"].as_str(),
        root["name"].as_str(),
        "the bundled repository is stale: run examples/make-demo-repo.sh"
    );
    assert_eq!(
        ds["spec"]["license"],
        "MIT (https://opensource.org/licenses/MIT)"
    );
    assert!(stderr.contains("valid crate at main@sha1:"), "{stderr}");
}

#[test]
fn preview_prints_json_on_request_with_provenance_annotations() {
    let repo = example_repo();
    let http = SmartHttp::start(repo.base_dir()).expect("http");
    let (code, stdout, stderr) = run(loader()
        .args([
            "preview",
            "--allow-insecure-transport",
            "--output",
            "json",
            "--name",
            "amr",
            "--path",
            PATH,
            "--repo",
        ])
        .arg(http.url(repo.name())));
    assert_eq!(code, 0, "{stderr}");
    let ds: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(ds["metadata"]["name"], "amr");
    let annotations = &ds["metadata"]["annotations"];
    assert_eq!(
        annotations["xlscsde.nhs.uk/revision"],
        format!("main@sha1:{}", repo.head("main"))
    );
    assert_eq!(
        annotations["xlscsde.nhs.uk/source-url"],
        http.url(repo.name())
    );
}

#[test]
fn preview_of_an_invalid_crate_lists_every_error_and_exits_with_the_invalid_crate_code() {
    let repo = RepoBuilder::new()
        .file("ro-crate-metadata.json", r#"{"@graph": {}}"#)
        .commit("broken")
        .build_bare()
        .expect("repo");
    let http = SmartHttp::start(repo.base_dir()).expect("http");
    let (code, stdout, stderr) = run(loader()
        .args(["preview", "--allow-insecure-transport", "--repo"])
        .arg(http.url(repo.name())));
    assert_eq!(code, Outcome::InvalidCrate.exit_code(), "{stderr}");
    assert!(
        stdout.is_empty(),
        "nothing is rendered for an invalid crate: {stdout}"
    );
    assert!(stderr.contains("@context"), "{stderr}");
    assert!(stderr.contains("@graph"), "{stderr}");
}

#[test]
fn unencrypted_transports_are_refused_without_the_flag() {
    let (code, _, stderr) = run(loader().args(["preview", "--repo", "http://127.0.0.1:1/r.git"]));
    assert_eq!(code, Outcome::InvalidRequest.exit_code());
    assert!(stderr.contains("--allow-insecure-transport"), "{stderr}");
}

#[test]
fn a_path_that_escapes_the_repository_is_refused() {
    let (code, _, stderr) = run(loader().args([
        "preview",
        "--repo",
        "https://example.invalid/r.git",
        "--path",
        "/../../etc/passwd",
    ]));
    assert_eq!(code, Outcome::InvalidRequest.exit_code());
    assert!(stderr.contains("'..' is not allowed"), "{stderr}");
}

#[test]
fn a_server_that_never_answers_is_given_up_on_at_the_timeout() {
    let tarpit = Tarpit::start().expect("tarpit");
    let url = format!("http://127.0.0.1:{}/r.git", tarpit.port());
    let started = std::time::Instant::now();
    let (code, _, stderr) = run(loader().args([
        "preview",
        "--allow-insecure-transport",
        "--timeout",
        "1s",
        "--repo",
        &url,
    ]));
    assert_eq!(code, Outcome::TimedOut.exit_code(), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn no_credential_reaches_stdout_or_stderr_on_success_or_failure() {
    let repo = example_repo();
    let http = SmartHttp::builder()
        .basic_auth("pat", TOKEN)
        .start(repo.base_dir())
        .expect("http");
    let url = http.url(repo.name());
    let good = credentials_dir(TOKEN);
    let bad = credentials_dir("ghp_wrongTokenThatMustNeverLeak");
    for (creds, expected) in [
        (&good, 0),
        (&bad, Outcome::AuthenticationFailed.exit_code()),
    ] {
        let (code, stdout, stderr) = run(loader()
            .args([
                "preview",
                "--allow-insecure-transport",
                "--log-level",
                "trace",
                "--path",
                PATH,
                "--repo",
                &url,
                "--credentials-dir",
            ])
            .arg(creds.path()));
        assert_eq!(code, expected, "{stderr}");
        for secret in [TOKEN, "ghp_wrongTokenThatMustNeverLeak"] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "a token leaked:\n{stdout}\n{stderr}"
            );
        }
    }
}

/// A directory holding the example crate's metadata and, unless left out, its payload.
fn example_dir(left_out: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ro-crate-metadata.json"), EXAMPLE_CRATE).expect("write");
    for (path, text) in EXAMPLE_PAYLOAD {
        let relative = path
            .strip_prefix("bagit/data/")
            .expect("payload under bagit/data");
        if left_out.contains(&relative) {
            continue;
        }
        let file = dir.path().join(relative);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, text).expect("write");
    }
    dir
}

#[test]
fn validate_reports_warnings_and_exits_zero_for_a_valid_crate() {
    let dir = example_dir(&[]);
    let (code, stdout, stderr) = run(loader().arg("validate").arg(dir.path()));
    assert_eq!(code, 0, "{stdout}{stderr}");
    // The example keeps cr8tor's real-world quirk: a publisher typed `Organisation`.
    assert!(
        stdout.contains("warning: entity './' property 'publisher'"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("0 error(s), 1 warning(s)"),
        "{stdout}"
    );
}

#[test]
fn validate_of_a_directory_names_each_data_entity_missing_from_it() {
    let dir = example_dir(&["data/cr8-ingress.yaml"]);
    let (code, stdout, stderr) = run(loader().arg("validate").arg(dir.path()));
    assert_eq!(code, 0, "a missing file is a warning: {stdout}{stderr}");
    assert!(
        stdout.contains(
            "warning: entity 'data/cr8-ingress.yaml' property '@id': File 'data/cr8-ingress.yaml' \
             is described but not in the crate"
        ),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("0 error(s), 2 warning(s)"),
        "{stdout}"
    );
}

#[test]
fn validate_of_a_directory_without_a_crate_prints_json_with_the_error_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stdout, stderr) = run(loader()
        .args(["validate", "--format", "json"])
        .arg(dir.path()));
    assert_eq!(code, Outcome::NotFound.exit_code(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"], 1);
    let message = report["diagnostics"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("has no ro-crate-metadata.json"),
        "{message}"
    );
}

#[test]
fn validate_of_a_0_2_draft_crate_names_the_jsonld_descriptor_it_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("ro-crate-metadata.jsonld"),
        r#"{"@context":"https://w3id.org/ro/crate/0.2-DRAFT/context","@graph":[
            {"@id":"ro-crate-metadata.jsonld","@type":"CreativeWork","about":{"@id":"./"}},
            {"@id":"./","@type":"Dataset","name":"x","description":"y","datePublished":"2019","license":"MIT"}]}"#,
    )
    .expect("write");
    let (code, stdout, _) = run(loader().arg("validate").arg(dir.path()));
    assert_eq!(code, Outcome::InvalidCrate.exit_code(), "{stdout}");
    assert!(
        stdout.contains("has no ro-crate-metadata.json but has ro-crate-metadata.jsonld"),
        "{stdout}"
    );
    assert!(
        stdout.contains("entity 'ro-crate-metadata.jsonld' property '@id'"),
        "{stdout}"
    );
}

#[test]
fn validate_json_output_carries_each_diagnostic_with_entity_and_property() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("crate.json");
    std::fs::write(
        &file,
        r#"{"@context":"https://w3id.org/ro/crate/1.1/context","@graph":[
            {"@id":"ro-crate-metadata.json","@type":"CreativeWork","about":{"@id":"./"},"conformsTo":{"@id":"https://w3id.org/ro/crate/1.1"}},
            {"@id":"./","@type":"Dataset","name":"x","description":"y","datePublished":"2024-01-01"}]}"#,
    )
    .expect("write");
    let (code, stdout, _) = run(loader().args(["validate", "--format", "json"]).arg(&file));
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["valid"], true);
    let licence = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .find(|d| d["property"] == "license")
        .expect("licence warning");
    assert_eq!(
        (licence["severity"].as_str(), licence["entity"].as_str()),
        (Some("warning"), Some("./"))
    );
}

#[test]
fn validate_exits_with_the_invalid_crate_code_on_errors_and_not_found_for_a_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.json");
    std::fs::write(&file, "not json").expect("write");
    assert_eq!(
        run(loader().arg("validate").arg(&file)).0,
        Outcome::InvalidCrate.exit_code()
    );
    assert_eq!(
        run(loader()
            .arg("validate")
            .arg(dir.path().join("missing.json")))
        .0,
        Outcome::NotFound.exit_code()
    );
}

#[test]
fn copy_to_installs_a_read_only_executable_copy_that_runs() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = run(loader().arg("copy-to").arg(dir.path()));
    assert_eq!(code, 0, "{stderr}");
    let copy = dir.path().join("crate-loader");
    let mode = std::fs::metadata(&copy)
        .expect("copied")
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o555);
    let (code, stdout, _) = run(Command::new(&copy).arg("--version"));
    assert_eq!(code, 0);
    assert!(stdout.starts_with("crate-loader "), "{stdout}");
}

/// 4 MiB documents in the shapes that cost the parser most per input byte.
fn hostile_json_shapes() -> Vec<(&'static str, String)> {
    const SIZE: usize = 4 * 1024 * 1024 - 64;
    fn repeat(unit: &str) -> String {
        let count = SIZE / (unit.len() + 1);
        format!("[{}]", vec![unit; count].join(","))
    }
    fn tree(depth: u32) -> String {
        if depth == 0 {
            "[]".to_owned()
        } else {
            let child = tree(depth - 1);
            format!("[{child},{child}]")
        }
    }
    vec![
        (
            "nested arrays",
            repeat(&format!("{}{}", "[".repeat(60), "]".repeat(60))),
        ),
        ("binary trees of arrays", repeat(&tree(10))),
        ("small objects", repeat(r#"{"a":0}"#)),
        ("empty arrays", repeat("[]")),
    ]
}

#[test]
fn json_parsing_memory_stays_within_thirty_times_the_input_for_hostile_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (shape, doc) in hostile_json_shapes() {
        let file = dir.path().join("ro-crate-metadata.json");
        std::fs::write(&file, &doc).expect("write");
        // GNU time reports the peak resident memory of the process in KiB.
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M"])
            .arg(env!("CARGO_BIN_EXE_crate-loader"))
            .args(["validate", "--max-json-depth", "64"])
            .arg(&file)
            .output()
            .expect("GNU time (Debian package time) runs crate-loader");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let peak_kib: u64 = stderr
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("{shape}: no peak in {stderr}"));
        let ratio = peak_kib * 1024 / doc.len() as u64;
        assert!(
            ratio <= 30,
            "{shape}: {} MiB for 4 MiB ({ratio}×)",
            peak_kib / 1024
        );
    }
}
