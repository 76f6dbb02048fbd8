//! Loading: crate → Job → loader → datasource, reloads, no-ops, bad crates, private
//! repositories and adoption, each against the real apiserver and Job controller.

use crate_operator_api::contract::{ANNOTATION_REVISION, LABEL_CRATE, LOADER_FIELD_MANAGER};
use crate_operator_api::{AnalyticsCrate, AnalyticsDataSource};
use crate_test_support::SmartHttp;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, PostParams};

use crate::harness::{cluster, wait_for};
use crate::{EXAMPLE_CRATE, Fixture, META, condition};

const TITLE: &str = "Antimicrobial Prescribing in Secondary Care (OMOP)";

/// The example crate with its root entity's name replaced.
fn example_named(name: &str) -> String {
    EXAMPLE_CRATE.replacen(TITLE, name, 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_crate_is_loaded_by_a_job_into_a_datasource_owned_by_the_crate() {
    let fx = Fixture::new("new-crate").await;
    let created = fx.create_crate("omop", |_| {}).await;
    let head = fx.head();

    let ready = fx.wait_ready_at("omop", &head).await;
    let status = ready.status.as_ref().expect("status");
    assert_eq!(
        status.revision.as_deref(),
        Some(format!("main@sha1:{head}").as_str())
    );
    assert_eq!(status.datasource.as_deref(), Some("omop"));
    let ready_condition = condition(status, "Ready").expect("Ready condition");
    assert_eq!(
        (
            ready_condition.status.as_str(),
            ready_condition.reason.as_str()
        ),
        ("True", "Loaded")
    );

    let ds = fx.datasources.get("omop").await.expect("datasource");
    assert_eq!(ds.spec.display_name.as_deref(), Some(TITLE));
    let owner = &ds
        .metadata
        .owner_references
        .as_ref()
        .expect("owner references")[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
            owner.controller
        ),
        (
            "AnalyticsCrate",
            "omop",
            created.metadata.uid.as_deref().expect("uid"),
            Some(true)
        )
    );
    let annotations = ds.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(
        annotations[ANNOTATION_REVISION],
        format!("main@sha1:{head}")
    );
    assert_eq!(
        ds.metadata.labels.as_ref().expect("labels")[LABEL_CRATE],
        "omop"
    );
    let managers: Vec<_> = ds
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert_eq!(
        managers,
        [LOADER_FIELD_MANAGER],
        "only the loader writes the datasource"
    );

    let jobs = fx.job_names().await;
    assert_eq!(jobs.len(), 1, "one load, one Job: {jobs:?}");
    assert_eq!(status.last_job.as_deref(), Some(jobs[0].as_str()));
    let runs = cluster().kubelet.runs(&fx.ns.name);
    assert_eq!(runs.len(), 1, "{}", fx.context());
    assert_eq!(runs[0].exit_code, Some(0));
    assert_eq!(runs[0].job.as_deref(), Some(jobs[0].as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_commit_is_loaded_at_the_next_interval() {
    let fx = Fixture::new("interval").await;
    // The shortest interval the CRD admits is 1m, so this test waits about a minute.
    fx.create_crate("omop", |c| c.spec.interval = Some("1m".to_owned()))
        .await;
    fx.wait_ready_at("omop", &fx.head()).await;
    let jobs = fx.job_names().await.len();

    fx.repo
        .update(|r| {
            r.file(META, example_named("OMOP, second edition"))
                .commit("rename")
        })
        .expect("new commit");
    // Due 60 s (plus up to 6 s of jitter) after the last load; the wait allows 90 s.
    fx.wait_ready_at("omop", &fx.head()).await;
    assert_eq!(fx.job_names().await.len(), jobs + 1, "one interval load");

    let ds = fx.datasources.get("omop").await.expect("datasource");
    assert_eq!(
        ds.spec.display_name.as_deref(),
        Some("OMOP, second edition")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reload_annotation_loads_a_new_commit_at_once() {
    let fx = Fixture::new("reload").await;
    fx.create_crate("omop", |_| {}).await;
    fx.wait_ready_at("omop", &fx.head()).await;

    fx.repo
        .update(|r| r.file(META, example_named("Reloaded")).commit("rename"))
        .expect("new commit");
    let reloaded = fx.reload("omop", "2026-11-22T10:00:00Z").await;

    let status = reloaded.status.expect("status");
    assert_eq!(status.commit_id.as_deref(), Some(fx.head().as_str()));
    let ds = fx.datasources.get("omop").await.expect("datasource");
    assert_eq!(ds.spec.display_name.as_deref(), Some("Reloaded"));
    assert_eq!(fx.job_names().await.len(), 2, "the reload ran its own Job");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_of_an_unchanged_repository_changes_nothing() {
    let fx = Fixture::new("no-op").await;
    fx.create_crate("omop", |_| {}).await;
    fx.wait_ready_at("omop", &fx.head()).await;
    let before = fx.datasources.get("omop").await.expect("datasource");

    let reloaded = fx.reload("omop", "2026-11-22T11:00:00Z").await;

    let status = reloaded.status.as_ref().expect("status");
    let ready = condition(status, "Ready").expect("Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "UpToDate")
    );
    let after = fx.datasources.get("omop").await.expect("datasource");
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "an up-to-date load must not write the datasource"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_crate_fails_with_its_reason_and_keeps_the_previous_datasource() {
    let fx = Fixture::new("invalid").await;
    fx.create_crate("omop", |_| {}).await;
    let good = fx.head();
    fx.wait_ready_at("omop", &good).await;
    let before = fx.datasources.get("omop").await.expect("datasource");

    fx.repo
        .update(|r| r.file(META, "{\"@graph\": [").commit("break it"))
        .expect("broken commit");
    let failed = {
        fx.reload("omop", "2026-11-22T12:00:00Z").await;
        fx.wait_failed("omop", "InvalidCrate").await
    };

    let status = failed.status.as_ref().expect("status");
    let stalled = condition(status, "Stalled").expect("Stalled condition");
    assert_eq!(
        stalled.status, "True",
        "retrying cannot fix an invalid crate"
    );
    assert!(
        stalled.message.contains("JSON"),
        "the message says what is wrong: {}",
        stalled.message
    );
    assert_eq!(
        status.commit_id.as_deref(),
        Some(good.as_str()),
        "commitId stays the last good one"
    );
    let after = fx.datasources.get("omop").await.expect("datasource");
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.spec, before.spec);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_repository_is_read_with_the_namespace_secret_which_never_leaks() {
    const TOKEN: &str = "e2e-secret-token-7f3a9c";
    let fx = Fixture::new("private").await;
    let http = SmartHttp::builder()
        .basic_auth("pat", TOKEN)
        .start(fx.repo.base_dir())
        .expect("smart http");
    let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), &fx.ns.name);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "repo-token"},
        "stringData": {"TOKEN": TOKEN},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let wrong: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "wrong-token"},
        "stringData": {"TOKEN": "not-the-token"},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &wrong)
        .await
        .expect("create secret");

    let url = http.url(fx.repo.name());
    let with_secret = |secret: &'static str| {
        let url = url.clone();
        move |c: &mut AnalyticsCrate| {
            c.spec.repo.url = url;
            c.spec.repo.secret_name = Some(secret.to_owned());
        }
    };
    fx.create_crate("private", with_secret("repo-token")).await;
    fx.create_crate("wrong", with_secret("wrong-token")).await;
    let ready = fx.wait_ready_at("private", &fx.head()).await;
    let refused = fx.wait_failed("wrong", "AuthenticationFailed").await;
    assert!(
        http.request_log()
            .iter()
            .any(crate_test_support::Request::is_fetch),
        "the pack came over smart HTTP"
    );

    // The token must appear nowhere a person or another controller can read.
    let mut visible = vec![
        serde_yaml::to_string(&ready).expect("yaml"),
        serde_yaml::to_string(&refused).expect("yaml"),
        serde_yaml::to_string(
            &fx.jobs
                .list(&ListParams::default())
                .await
                .expect("jobs")
                .items,
        )
        .expect("yaml"),
        serde_yaml::to_string(
            &Api::<Event>::namespaced(fx.client.clone(), &fx.ns.name)
                .list(&ListParams::default())
                .await
                .expect("events")
                .items,
        )
        .expect("yaml"),
        serde_yaml::to_string(&fx.datasources.get("private").await.expect("datasource"))
            .expect("yaml"),
    ];
    for run in cluster().kubelet.runs(&fx.ns.name) {
        visible.extend([run.stdout, run.stderr, run.termination_message]);
    }
    visible.extend(fx.managers.iter().map(crate::harness::Manager::log));
    for (i, text) in visible.iter().enumerate() {
        assert!(
            !text.contains(TOKEN),
            "the token leaked into item {i}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_is_reported_by_name_and_the_load_goes_on_once_it_exists() {
    const TOKEN: &str = "e2e-later-token-41b7";
    let fx = Fixture::new("secret-later").await;
    let http = SmartHttp::builder()
        .basic_auth("pat", TOKEN)
        .start(fx.repo.base_dir())
        .expect("smart http");
    let url = http.url(fx.repo.name());
    // As with GitOps tools that apply the crate before its Secret.
    fx.create_crate("omop", |c| {
        c.spec.repo.url = url;
        c.spec.repo.secret_name = Some("arrives-later".to_owned());
    })
    .await;
    let blocked = wait_for(
        &fx.crates,
        "omop",
        "Ready False with reason PodBlocked",
        |c: Option<&AnalyticsCrate>| {
            c.and_then(|c| c.status.as_ref())
                .and_then(|s| condition(s, "Ready"))
                .is_some_and(|r| r.status == "False" && r.reason == "PodBlocked")
        },
        || fx.context(),
    )
    .await;
    let ready = condition(blocked.status.as_ref().expect("status"), "Ready").expect("Ready");
    assert!(
        ready.message.contains("\"arrives-later\""),
        "the message names the missing Secret: {}",
        ready.message
    );

    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "arrives-later"},
        "stringData": {"TOKEN": TOKEN},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(fx.client.clone(), &fx.ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    fx.wait_ready_at("omop", &fx.head()).await;
    assert_eq!(fx.job_names().await.len(), 1, "the same Job went on");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_datasource_made_by_the_old_operator_is_adopted_and_keeps_its_connections() {
    let fx = Fixture::new("adopt").await;
    // What the Python operator left behind: the crate's labels, no owner, and a connection an
    // administrator added by hand.
    let legacy: AnalyticsDataSource = serde_json::from_value(serde_json::json!({
        "apiVersion": "xlscsde.nhs.uk/v1",
        "kind": "AnalyticsDataSource",
        "metadata": {
            "name": "omop",
            "labels": {
                "xlscsde.nhs.uk/crate": "omop",
                "xlscsde.nhs.uk/crateNamespace": fx.ns.name,
            },
        },
        "spec": {
            "displayName": "Old title",
            "connections": [{"name": "warehouse", "type": "databricks"}],
        },
    }))
    .expect("legacy datasource");
    fx.datasources
        .create(&PostParams::default(), &legacy)
        .await
        .expect("create legacy datasource");

    let created = fx.create_crate("omop", |_| {}).await;
    fx.wait_ready_at("omop", &fx.head()).await;

    let ds = fx.datasources.get("omop").await.expect("datasource");
    assert_eq!(ds.spec.display_name.as_deref(), Some(TITLE));
    assert_eq!(
        ds.metadata.owner_references.as_ref().expect("owner")[0].uid,
        created.metadata.uid.expect("uid")
    );
    let connections = ds.spec.connections.expect("connections survive adoption");
    assert_eq!(connections[0].name.as_deref(), Some("warehouse"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_datasource_that_belongs_to_something_else_is_a_conflict_not_a_takeover() {
    let fx = Fixture::new("conflict").await;
    let foreign: AnalyticsDataSource = serde_json::from_value(serde_json::json!({
        "apiVersion": "xlscsde.nhs.uk/v1",
        "kind": "AnalyticsDataSource",
        "metadata": {"name": "omop"},
        "spec": {"displayName": "Somebody else's"},
    }))
    .expect("datasource");
    fx.datasources
        .create(&PostParams::default(), &foreign)
        .await
        .expect("create foreign datasource");

    fx.create_crate("omop", |_| {}).await;
    fx.wait_failed("omop", "Conflict").await;

    let ds = fx.datasources.get("omop").await.expect("datasource");
    assert_eq!(ds.spec.display_name.as_deref(), Some("Somebody else's"));
    assert!(ds.metadata.owner_references.is_none());
}
