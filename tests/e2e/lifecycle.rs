//! Lifecycle on a real control plane: garbage collection on deletion, a manager restart in the
//! middle of a load, leader election between two managers, fencing of a frozen leader, and
//! ResourceQuotas.

use std::time::{Duration, Instant};

use crate_operator_api::AnalyticsCrate;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{PATIENCE, cluster, wait_for, wait_for_deletion};
use crate::{Fixture, condition};
use crate_test_cluster::audit;
use crate_test_cluster::operator::{MANAGER_USER, metric};

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_crate_garbage_collects_its_datasource_and_jobs() {
    let fx = Fixture::new("delete").await;
    fx.create_crate("omop", |_| {}).await;
    fx.wait_ready_at("omop", &fx.head()).await;
    let jobs = fx.job_names().await;
    assert_eq!(jobs.len(), 1);

    fx.crates
        .delete("omop", &DeleteParams::foreground())
        .await
        .expect("delete crate");

    wait_for_deletion(&fx.crates, "omop").await;
    wait_for_deletion(&fx.datasources, "omop").await;
    wait_for_deletion(&fx.jobs, &jobs[0]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manager_restart_mid_load_neither_loses_nor_duplicates_the_load() {
    let mut fx = Fixture::new("restart").await;
    let kubelet = &cluster().kubelet;
    kubelet.hold(&fx.ns.name);
    fx.create_crate("omop", |_| {}).await;
    kubelet
        .wait_for_held(&fx.ns.name, 1, PATIENCE)
        .await
        .expect("the loader Pod is created");

    // The load is in flight (its Pod exists, not yet run) when the manager goes away.
    fx.managers.pop().expect("manager").stop();
    fx.start_manager("m1");
    kubelet.release(&fx.ns.name);
    fx.wait_ready_at("omop", &fx.head()).await;

    assert_eq!(
        fx.job_names().await.len(),
        1,
        "the restarted manager started no second load"
    );
    assert_eq!(kubelet.runs(&fx.ns.name).len(), 1, "{}", fx.context());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manager_restart_starts_no_load_for_an_up_to_date_crate() {
    let mut fx = Fixture::new("resume").await;
    fx.create_crate("omop", |_| {}).await;
    fx.wait_ready_at("omop", &fx.head()).await;

    fx.managers.pop().expect("manager").stop();
    fx.start_manager("m1");
    let restarted = fx.managers.last().expect("the new manager");
    // Its metrics say when it has reconciled the crate (the only one it watches).
    let metric = |name: &str| {
        restarted
            .get("/metrics")
            .ok()
            .and_then(|(_, body)| metric(&body, name))
    };
    let deadline = Instant::now() + PATIENCE;
    while metric("crate_operator_reconciles_total").unwrap_or(0.0) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the new manager never reconciled:\n{}",
            fx.context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric("crate_operator_loader_jobs_started_total"),
        Some(0.0),
        "{}",
        fx.context()
    );
    assert_eq!(fx.job_names().await.len(), 1, "{}", fx.context());
    let status = fx.crates.get("omop").await.expect("crate").status;
    assert_eq!(status.map(|s| s.status_text).as_deref(), Some("Ready"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_managers_elect_one_leader_and_the_other_takes_over_when_it_stops() {
    let mut fx = Fixture::without_manager("leader").await;
    fx.start_manager("m-a");
    fx.start_manager("m-b");
    let leases: Api<Lease> = Api::namespaced(fx.client.clone(), &fx.ns.name);

    fx.create_crate("omop", |_| {}).await;
    fx.wait_ready_at("omop", &fx.head()).await;
    assert_eq!(
        fx.job_names().await.len(),
        1,
        "only the leader started a load"
    );
    let first = holder(&leases.get("crate-operator").await.expect("lease"));
    assert!(first == "m-a" || first == "m-b", "lease held by {first:?}");

    let leader = fx
        .managers
        .iter()
        .position(|m| m.identity == first)
        .expect("leader is ours");
    // Each replica says on /metrics whether it leads (the "no leader" alert reads it).
    for (i, manager) in fx.managers.iter().enumerate() {
        let (_, text) = manager.get("/metrics").expect("metrics");
        let expected = if i == leader { 1.0 } else { 0.0 };
        assert_eq!(
            metric(&text, "crate_operator_leader"),
            Some(expected),
            "{}",
            manager.identity
        );
    }
    let stopped = fx.managers.remove(leader).stop();
    // SIGTERM makes the leader release the Lease and exit on its own; the harness's SIGKILL,
    // 10 s later, would show here as a failure (and the hand-over would wait for expiry).
    assert!(
        stopped.is_some_and(|s| s.success()),
        "the leader did not shut down cleanly: {stopped:?}"
    );
    let second = wait_for(
        &leases,
        "crate-operator",
        "a new holder",
        {
            let first = first.clone();
            move |l: Option<&Lease>| l.is_some_and(|l| !holder(l).is_empty() && holder(l) != first)
        },
        || fx.context(),
    )
    .await;
    assert_ne!(holder(&second), first);

    // The new leader acts on new requests.
    fx.reload("omop", "2026-11-22T13:00:00Z").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_frozen_past_its_lease_writes_nothing_after_it_expired_and_no_crate_gets_two_jobs()
{
    let mut fx = Fixture::without_manager("fence").await;
    let leases: Api<Lease> = Api::namespaced(fx.client.clone(), &fx.ns.name);
    fx.start_manager("m-old");
    wait_for_holder(&fx, &leases, "m-old").await;
    fx.start_manager("m-new");

    // Work the old leader is in the middle of when it freezes: crates arriving at once.
    let names: Vec<String> = (0..16).map(|i| format!("crate-{i}")).collect();
    for name in &names {
        fx.create_crate(name, |_| {}).await;
    }
    wait_for_jobs(&fx, 1).await;
    let old_pid =
        Pid::from_raw(i32::try_from(fx.managers[0].pid().expect("old leader's pid")).expect("pid"));
    kill(old_pid, Signal::SIGSTOP).expect("SIGSTOP the old leader");

    // The Lease as the old leader last renewed it: from its expiry on, it may write nothing.
    let lease = leases.get("crate-operator").await.expect("lease");
    let spec = lease.spec.expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("m-old"));
    let expiry = spec.renew_time.expect("renew time").0
        + jiff::SignedDuration::from_secs(spec.lease_duration_seconds.expect("duration").into());

    wait_for_holder(&fx, &leases, "m-new").await;
    kill(old_pid, Signal::SIGCONT).expect("SIGCONT the old leader");

    // It finds its Lease gone, stops on its own and says why.
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = fx.managers[0].exited() {
            break exit;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the old leader kept running\n{}",
            fx.context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !exit.success(),
        "a replica that lost its Lease exits with a failure"
    );
    assert!(
        fx.managers[0]
            .log()
            .contains("the leader lease expired before this replica could renew it"),
        "{}",
        fx.context()
    );

    for name in &names {
        fx.wait_ready_at(name, &fx.head()).await;
    }
    let log = cluster()
        .plane
        .audit_log()
        .expect("the e2e control plane audits");
    let late = audit::writes(log, MANAGER_USER, "(m-old)", expiry).expect("audit log");
    assert!(
        late.is_empty(),
        "the old leader wrote after its Lease expired at {expiry}:\n{}\n{}",
        late.join("\n"),
        fx.context()
    );
    let jobs = fx.jobs.list(&ListParams::default()).await.expect("jobs");
    let mut per_crate = std::collections::BTreeMap::<String, usize>::new();
    for job in &jobs.items {
        for owner in job.metadata.owner_references.iter().flatten() {
            *per_crate.entry(owner.name.clone()).or_default() += 1;
        }
    }
    assert!(
        per_crate.len() == names.len() && per_crate.values().all(|n| *n == 1),
        "every crate has exactly one Job: {per_crate:?}"
    );
}

/// The holder named in `lease`, or "" when none.
fn holder(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default()
}

async fn wait_for_holder(fx: &Fixture, leases: &Api<Lease>, identity: &str) {
    let expected = identity.to_owned();
    wait_for(
        leases,
        "crate-operator",
        &format!("held by {identity}"),
        move |l: Option<&Lease>| l.is_some_and(|l| holder(l) == expected),
        || fx.context(),
    )
    .await;
}

/// Waits until the namespace has at least `n` loader Jobs.
async fn wait_for_jobs(fx: &Fixture, n: usize) {
    let started = Instant::now();
    while fx.job_names().await.len() < n {
        assert!(
            started.elapsed() < PATIENCE,
            "no {n} Jobs\n{}",
            fx.context()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn quota(name: &str, hard: &serde_json::Value) -> ResourceQuota {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"hard": hard},
    }))
    .expect("quota")
}

/// Waits until the quota controller has computed the quota's status: before that, admission
/// refuses everything it covers.
async fn wait_for_quota_status(quotas: &Api<ResourceQuota>, name: &str) {
    wait_for(
        quotas,
        name,
        "a computed status",
        |q: Option<&ResourceQuota>| {
            q.and_then(|q| q.status.as_ref())
                .is_some_and(|s| s.hard.is_some())
        },
        String::new,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_with_a_resource_quota_runs_loads_within_it() {
    let fx = Fixture::without_manager("quota-room").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(fx.client.clone(), &fx.ns.name);
    // Quotas on compute make every Pod declare requests and limits, or be refused.
    let hard = serde_json::json!({
        "requests.cpu": "2", "limits.cpu": "4",
        "requests.memory": "2Gi", "limits.memory": "4Gi",
        "requests.ephemeral-storage": "4Gi", "limits.ephemeral-storage": "8Gi",
        "pods": "4",
    });
    quotas
        .create(&PostParams::default(), &quota("compute", &hard))
        .await
        .expect("quota");
    wait_for_quota_status(&quotas, "compute").await;

    let mut fx = fx;
    fx.start_manager("m0");
    fx.create_crate("omop", |_| {}).await;
    fx.wait_ready_at("omop", &fx.head()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quota_without_room_is_reported_and_the_load_runs_once_there_is_room() {
    let mut fx = Fixture::without_manager("quota-full").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(fx.client.clone(), &fx.ns.name);
    quotas
        .create(
            &PostParams::default(),
            &quota("jobs", &serde_json::json!({"count/jobs.batch": "0"})),
        )
        .await
        .expect("quota");
    wait_for_quota_status(&quotas, "jobs").await;
    fx.start_manager("m0");
    fx.create_crate("omop", |_| {}).await;

    let waiting = wait_for(
        &fx.crates,
        "omop",
        "QuotaExceeded",
        |c: Option<&AnalyticsCrate>| {
            c.and_then(|c| c.status.as_ref())
                .and_then(|s| condition(s, "Ready"))
                .is_some_and(|r| r.reason == "QuotaExceeded")
        },
        || fx.context(),
    )
    .await;
    let status = waiting.status.expect("status");
    assert_eq!(status.status_text, "Waiting");
    let ready = condition(&status, "Ready").expect("Ready");
    assert!(ready.message.contains("quota"), "{}", ready.message);
    assert!(fx.job_names().await.is_empty());

    quotas
        .patch(
            "jobs",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"hard": {"count/jobs.batch": "5"}}})),
        )
        .await
        .expect("raise quota");
    // The quota change wakes the crate: no need to wait for the minute's recheck.
    let raised = Instant::now();
    fx.wait_ready_at("omop", &fx.head()).await;
    assert!(
        raised.elapsed() < Duration::from_secs(45),
        "the load waited {:?} for the recheck instead of reacting to the quota change",
        raised.elapsed()
    );
}
