//! User mistakes: what the CRD refuses at admission, what the manager reports on the crate when
//! admission let it through, and drift of the loader's namespace objects.
//!
//! The table test is the proof that the CRD's rules and the Rust rules the manager and the
//! loader apply (`crate_operator_api::rules`) agree: every value goes to both, and both must
//! give the expected verdict.

use std::time::Duration;

use crate_operator_api::AnalyticsCrate;
use k8s_openapi::api::core::v1::{Event, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

use crate::harness::{analytics_crate, wait_for};
use crate::{Fixture, PATH, condition};

type Edit = fn(&mut AnalyticsCrate, &str);

/// `(field, value, valid)`: one edit of a valid crate per row.
fn table() -> Vec<(&'static str, String, bool)> {
    let mut rows: Vec<(&'static str, String, bool)> = Vec::new();
    let mut add = |field, values: &[&str], valid| {
        rows.extend(values.iter().map(|v| (field, (*v).to_owned(), valid)));
    };
    add(
        "url",
        &[
            "https://github.com/org/r.git",
            "ssh://git@example.org:2222/org/r.git",
            "git@github.com:org/r.git",
            "example.org:org/r.git",
            "git+ssh://example.org/r.git",
            "http://example.org/r.git",
            "git://example.org/r.git",
            "https://pat@example.org/r.git",
        ],
        true,
    );
    add(
        "url",
        &[
            "https://pat:secret@example.org/r.git",
            "ssh://git:secret@example.org/r.git",
            "pat:secret@example.org:org/r.git",
            "https://",
            "ftp://example.org/r.git",
            "HTTPS://example.org/r.git",
            "https://example.org/r.git?x=1",
            "https://example.org/r .git",
            "https://example.org/r.git\u{2003}",
            "https://example.org/\u{7}r.git",
            "just-a-word",
            "/local/path",
            ":path",
            "@host:path",
        ],
        false,
    );
    add(
        "branch",
        &["main", "release/2024-10", "X.LOCK", "v1.0", "a@b", "ü-ok"],
        true,
    );
    add(
        "branch",
        &[
            "-x", "a..b", "a b", "x.lock", "a/.b", "v1.", "HEAD", "@", "a//b", "/a", "a/", "@{-1}",
            "a:b", "a~1", "a\\b",
        ],
        false,
    );
    add(
        "path",
        &[
            "/ro-crate-metadata.json",
            "bagit/data/x.json",
            "/.../x",
            "./x",
        ],
        true,
    );
    add(
        "path",
        &["/", "dir/", "/../x", "a/../b", "a//b", "/./.", "a\u{1b}b"],
        false,
    );
    add("secretName", &["my-secret", "a.b-c"], true);
    add("secretName", &["My_Secret", "-a", "a-", "a..b"], false);
    add("secretKey", &["TOKEN", "token.txt", "ssh-key"], true);
    add("secretKey", &[".", "..x", "my token", "a/b"], false);
    add("interval", &["1m", "90s", "1h30m", "8760h"], true);
    add("interval", &["0s", "59s", "8761h", "1d", "1.5h", ""], false);
    rows.push(("branch", "b".repeat(256), false));
    rows.push(("path", format!("/{}", "a".repeat(1024)), false));
    rows.push(("secretName", format!("{}.b", "a".repeat(64)), false));
    rows.push(("displayName", "d".repeat(1025), false));
    rows
}

fn edit(field: &str) -> Edit {
    match field {
        "url" => |ac, v| v.clone_into(&mut ac.spec.repo.url),
        "branch" => |ac, v| v.clone_into(&mut ac.spec.repo.branch),
        "path" => |ac, v| v.clone_into(&mut ac.spec.path),
        "secretName" => |ac, v| ac.spec.repo.secret_name = Some(v.to_owned()),
        "secretKey" => |ac, v| v.clone_into(&mut ac.spec.repo.secret_key),
        "interval" => |ac, v| ac.spec.interval = Some(v.to_owned()),
        "displayName" => |ac, v| ac.spec.display_name = Some(v.to_owned()),
        other => panic!("no edit for {other}"),
    }
}

#[tokio::test]
async fn the_crd_and_the_shared_rules_give_the_same_verdict_on_every_value() {
    let fx = Fixture::without_manager("admission").await;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut disagreements = Vec::new();
    for (i, (field, value, valid)) in table().into_iter().enumerate() {
        let mut object = analytics_crate(&format!("c{i}"), "https://example.org/r.git", PATH);
        edit(field)(&mut object, &value);
        let rust = object.spec.validate();
        let server = fx.crates.create(&dry_run, &object).await;
        let server_ok = match &server {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if status.code == 422 => false,
            Err(other) => panic!("{field}={value:?}: unexpected error {other}"),
        };
        if rust.is_ok() != valid || server_ok != valid {
            disagreements.push(format!(
                "{field}={value:?}: expected {}, rules said {:?}, the API server said {}",
                if valid { "valid" } else { "invalid" },
                rust.err().map(|e| e.to_string()),
                match server {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => e.to_string(),
                }
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

#[tokio::test]
async fn a_spec_admission_cannot_refuse_is_reported_on_the_crate_and_loads_once_fixed() {
    let fx = Fixture::new("invalid_spec").await;
    // ssh with the private key under the key known_hosts comes from: the CRD cannot know the
    // operator's known_hosts key; the manager can.
    fx.create_crate("ssh", |ac| {
        ac.spec.repo.url = "git@example.org:org/crate.git".to_owned();
        ac.spec.repo.secret_name = Some("ssh-credentials".to_owned());
        ac.spec.repo.secret_key = "known_hosts".to_owned();
    })
    .await;
    let failed = wait_for(
        &fx.crates,
        "ssh",
        "InvalidSpec",
        |c: Option<&AnalyticsCrate>| {
            c.and_then(|c| c.status.as_ref()).is_some_and(|s| {
                condition(s, "Stalled")
                    .is_some_and(|c| c.reason == "InvalidSpec" && c.status == "True")
            })
        },
        || fx.context(),
    )
    .await;
    let status = failed.status.expect("status");
    assert_eq!(status.status_text, "Failed");
    let ready = condition(&status, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(ready.message.contains("secretKey"), "{ready:?}");
    assert!(
        fx.job_names().await.is_empty(),
        "no Job for an invalid spec"
    );
    let events = Api::<Event>::namespaced(fx.client.clone(), &fx.ns.name)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("InvalidSpec")
                && e.type_.as_deref() == Some("Warning")),
        "{events:?}"
    );

    // Fixed: the crate is loaded from its own repository.
    let patch = serde_json::json!({"spec": {"repo": {
        "url": fx.url(), "secretName": null, "secretKey": "TOKEN"
    }}});
    fx.crates
        .patch("ssh", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("fix the spec");
    fx.wait_ready_at("ssh", &fx.head()).await;
}

#[tokio::test]
async fn deleted_or_changed_loader_namespace_objects_are_restored_without_a_load() {
    let fx = Fixture::new("drift").await;
    fx.create_crate("demo", |_| {}).await;
    fx.wait_ready_at("demo", &fx.head()).await;
    let jobs_before = fx.job_names().await.len();

    let policies: Api<NetworkPolicy> = Api::namespaced(fx.client.clone(), &fx.ns.name);
    let accounts: Api<ServiceAccount> = Api::namespaced(fx.client.clone(), &fx.ns.name);
    policies
        .delete("crate-loader", &DeleteParams::default())
        .await
        .expect("delete the NetworkPolicy");
    accounts
        .delete("crate-loader", &DeleteParams::default())
        .await
        .expect("delete the ServiceAccount");
    wait_for(
        &policies,
        "crate-loader",
        "NetworkPolicy restored",
        |p: Option<&NetworkPolicy>| p.is_some(),
        || fx.context(),
    )
    .await;
    wait_for(
        &accounts,
        "crate-loader",
        "ServiceAccount restored",
        |a: Option<&ServiceAccount>| a.is_some(),
        || fx.context(),
    )
    .await;

    // A change to a rule it sets is undone too.
    let open_everything = serde_json::json!({"spec": {"egress": [{}]}});
    policies
        .patch(
            "crate-loader",
            &PatchParams::default(),
            &Patch::Merge(&open_everything),
        )
        .await
        .expect("widen the policy");
    let restored = wait_for(
        &policies,
        "crate-loader",
        "egress fenced again",
        |p: Option<&NetworkPolicy>| {
            p.and_then(|p| p.spec.as_ref())
                .and_then(|s| s.egress.as_ref())
                .is_some_and(|e| e.len() == 3)
        },
        || fx.context(),
    )
    .await;
    assert!(restored.spec.is_some());
    assert_eq!(
        fx.job_names().await.len(),
        jobs_before,
        "the repair needed no load"
    );
    // And the next load runs as the restored ServiceAccount.
    fx.reload("demo", "2026-12-03T12:00:00Z").await;
    tokio::time::timeout(
        Duration::from_secs(90),
        fx.wait_ready_at("demo", &fx.head()),
    )
    .await
    .expect("loads after the repair");
}
