//! The chart's life on a real control plane: `helm install` into an empty cluster, a crate loaded
//! by a manager that runs with the installed Deployment's flags and the chart's RBAC, `helm
//! upgrade` with a changed value that reaches the next loader Job, and `helm uninstall`, which
//! leaves the CRDs, the crate and its datasource in place (and a second install adopts them).
//!
//! The control plane is this test's own: the shared one holds the `kubectl apply -k deploy/`
//! install, whose cluster-wide objects (CRDs, ClusterRole) Helm rightly refuses to take over.
//! There is no kubelet for the manager Pods here, so the manager runs as a process with the
//! Deployment's args, as a Pod of the rollout would.

use std::path::Path;

use crate_operator_api::{AnalyticsCrate, AnalyticsDataSource};
use crate_test_cluster::operator::{
    INSTALL_NAMESPACE, Install, ManagerSpec, analytics_crate, kubectl_with_input, loader_binary,
    loader_kubelet,
};
use crate_test_cluster::{ControlPlane, helm};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};

use crate::harness::{Manager, Output, kubectl_ok, manager_deployment, wait_for};
use crate::{EXAMPLE_CRATE, META, PATH};

const RELEASE: &str = "crate-operator";
const CRATE_NAMESPACE: &str = "sde-data";
const CRDS: [&str; 2] = [
    "analyticscrates.xlscsde.nhs.uk",
    "analyticsdatasources.xlscsde.nhs.uk",
];
/// Flags the test's manager process is given by [`Manager::start`] itself (the kubelet stand-in
/// needs `git://`, the test reads the log as JSON); the Deployment's own are not given twice.
const SET_BY_THE_HARNESS: [&str; 5] = [
    "--loader-image",
    "--allow-insecure-transport",
    "--listen-addr",
    "--log-format",
    "--watch-namespace",
];

fn helm_ok(plane: &ControlPlane, args: &[&str]) -> Output {
    let mut command = helm::on(plane).expect("helm builds");
    command.args(args);
    kubectl_with_input(&mut command, None).unwrap_or_else(|e| panic!("helm {args:?}: {e}"))
}

/// `helm install` or `helm upgrade` of the chart in the install namespace, with `--set`s.
fn helm_release(plane: &ControlPlane, verb: &str, sets: &[&str]) -> Output {
    let chart = helm::chart_dir().display().to_string();
    let mut args = vec![verb, RELEASE, &chart, "--namespace", INSTALL_NAMESPACE];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm_ok(plane, &args)
}

/// A namespace enforcing Pod Security "restricted", as the README tells to make it.
fn restricted_namespace(plane: &ControlPlane, name: &str) {
    kubectl_ok(plane.kubectl().args(["create", "namespace", name])).expect("namespace");
    kubectl_ok(plane.kubectl().args([
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
    ]))
    .expect("label");
}

/// The args of the installed Deployment's manager container, less `run` and what the harness
/// sets itself.
fn deployment_args(plane: &ControlPlane) -> Vec<String> {
    let out = manager_deployment(plane, "{.spec.template.spec.containers[0].args}");
    let args: Vec<String> = serde_json::from_str(&out).expect("args");
    assert_eq!(args.first().map(String::as_str), Some("run"));
    args.into_iter()
        .skip(1)
        .filter(|a| {
            let flag = a.split('=').next().unwrap_or_default();
            !SET_BY_THE_HARNESS.contains(&flag)
        })
        .collect()
}

fn start_manager(plane: &ControlPlane, install: &Install, identity: &str) -> Manager {
    let log = plane.dir().join(format!("manager-{identity}.log"));
    Manager::start(ManagerSpec {
        args: deployment_args(plane),
        ..ManagerSpec::new(
            Path::new(env!("CARGO_BIN_EXE_crate-operator")),
            install,
            identity,
            &log,
        )
    })
    .expect("manager starts")
}

fn exists(plane: &ControlPlane, kind: &str, name: &str) -> bool {
    let out = kubectl_ok(plane.kubectl().args([
        "get",
        kind,
        name,
        "-n",
        INSTALL_NAMESPACE,
        "--ignore-not-found",
        "-o",
        "name",
    ]))
    .expect("kubectl get");
    !out.stdout.trim().is_empty()
}

/// Asserts that the CRDs are the very objects with `uids` (`when` says at which step).
async fn assert_same_crds(
    crds: &Api<CustomResourceDefinition>,
    uids: &[Option<String>],
    when: &str,
) {
    for (name, uid) in CRDS.iter().zip(uids) {
        let crd = crds
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{name} {when}: {e}"));
        assert_eq!(&crd.metadata.uid, uid, "{name} replaced {when}");
    }
}

/// Waits until `name` is Ready with `commit` loaded; returns it.
async fn ready_at(
    crates: &Api<AnalyticsCrate>,
    name: &str,
    commit: &str,
    manager: &Manager,
) -> AnalyticsCrate {
    let commit = commit.to_owned();
    wait_for(
        crates,
        name,
        &format!("Ready at {commit}"),
        move |c: Option<&AnalyticsCrate>| {
            c.and_then(|c| c.status.as_ref()).is_some_and(|s| {
                s.status_text == "Ready" && s.commit_id.as_deref() == Some(commit.as_str())
            })
        },
        || manager.log_tail(),
    )
    .await
}

/// `ttlSecondsAfterFinished` of the loader Job the crate's status names last.
async fn last_job_ttl(jobs: &Api<Job>, ac: &AnalyticsCrate) -> Option<i32> {
    let job = ac
        .status
        .as_ref()
        .and_then(|s| s.last_job.clone())
        .expect("a last Job in the status");
    jobs.get(&job)
        .await
        .expect("the loader Job")
        .spec
        .and_then(|s| s.ttl_seconds_after_finished)
}

/// The test's cluster and its API handles.
struct World {
    plane: ControlPlane,
    crds: Api<CustomResourceDefinition>,
    crates: Api<AnalyticsCrate>,
    datasources: Api<AnalyticsDataSource>,
    jobs: Api<Job>,
}

impl World {
    async fn start() -> World {
        let plane = ControlPlane::start().expect("a control plane of this test's own");
        let client = plane.admin_client().await.expect("admin client");
        World {
            crds: Api::all(client.clone()),
            crates: Api::namespaced(client.clone(), CRATE_NAMESPACE),
            datasources: Api::namespaced(client.clone(), CRATE_NAMESPACE),
            jobs: Api::namespaced(client, CRATE_NAMESPACE),
            plane,
        }
    }

    /// Installs the chart as the README says (a restricted namespace first); returns the
    /// install and the CRDs' uids.
    async fn install(&self) -> (Install, Vec<Option<String>>) {
        restricted_namespace(&self.plane, INSTALL_NAMESPACE);
        let out = helm_release(
            &self.plane,
            "install",
            &["loader.allowInsecureTransport=true"],
        );
        assert!(!out.stderr.contains("PodSecurity"), "{}", out.stderr);
        let install = Install::installed(
            &self.plane,
            &self.plane.dir().join("helm-install"),
            out.stderr,
        )
        .expect("the chart's CRDs are established");
        for (kind, name) in [
            ("deployment", "crate-operator"),
            ("serviceaccount", "crate-operator"),
            ("clusterrole", "crate-operator"),
            ("role", "crate-operator-leader-election"),
            ("networkpolicy", "crate-operator"),
            ("poddisruptionbudget", "crate-operator"),
            ("service", "crate-operator-metrics"),
        ] {
            assert!(exists(&self.plane, kind, name), "{kind} {name}");
        }
        let mut uids = Vec::new();
        for name in CRDS {
            let crd = self.crds.get(name).await.expect("CRD");
            let policy = crd
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("helm.sh/resource-policy"));
            assert_eq!(policy.map(String::as_str), Some("keep"), "{name}");
            uids.push(crd.metadata.uid);
        }
        (install, uids)
    }

    /// Asks for a reload of `name` and waits until it is Ready at `commit`.
    async fn reload(&self, name: &str, commit: &str, manager: &Manager) -> AnalyticsCrate {
        crate::request_reload(&self.crates, name, commit).await;
        ready_at(&self.crates, name, commit, manager).await
    }

    /// Uninstalls the chart: the operator's objects go, the CRDs stay.
    async fn uninstall(&self, crd_uids: &[Option<String>]) {
        let out = helm_ok(
            &self.plane,
            &["uninstall", RELEASE, "--namespace", INSTALL_NAMESPACE],
        );
        assert!(
            out.stdout.contains("kept due to the resource policy"),
            "{}",
            out.stdout
        );
        for (kind, name) in [
            ("deployment", "crate-operator"),
            ("serviceaccount", "crate-operator"),
            ("clusterrole", "crate-operator"),
            ("clusterrolebinding", "crate-operator"),
            ("networkpolicy", "crate-operator"),
        ] {
            assert!(
                !exists(&self.plane, kind, name),
                "{kind} {name} outlived the uninstall"
            );
        }
        assert_same_crds(&self.crds, crd_uids, "by the uninstall").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_installs_upgrades_and_uninstalls_the_operator_around_a_loaded_crate() {
    let world = World::start().await;
    let (install, crd_uids) = world.install().await;

    // A crate, loaded by a manager with the chart's flags and RBAC.
    let loader = loader_binary(
        &Path::new(env!("CARGO_BIN_EXE_crate-operator")).with_file_name("crate-loader"),
        "cargo build -p crate-loader",
    )
    .expect("the built loader");
    let _kubelet = loader_kubelet(&world.plane, loader, 2).expect("kubelet stand-in");
    restricted_namespace(&world.plane, CRATE_NAMESPACE);
    let (repo, daemon) = crate::example_repo();
    let manager = start_manager(&world.plane, &install, "helm-1");
    let url = daemon.url(repo.name());
    let created = analytics_crate("amr", &url, PATH);
    world
        .crates
        .create(&PostParams::default(), &created)
        .await
        .expect("create crate");
    let first = ready_at(&world.crates, "amr", &repo.head("main"), &manager).await;
    assert_eq!(last_job_ttl(&world.jobs, &first).await, Some(3600));
    world.datasources.get("amr").await.expect("the datasource");

    // Upgrade with a changed value: the crate is left alone, the next loader Job gets it.
    let upgrade = helm_release(
        &world.plane,
        "upgrade",
        &["loader.allowInsecureTransport=true", "loader.ttl=2h"],
    );
    assert!(upgrade.stdout.contains("REVISION: 2"), "{}", upgrade.stdout);
    assert!(deployment_args(&world.plane).contains(&"--loader-ttl=2h".to_owned()));
    assert_same_crds(&world.crds, &crd_uids, "by the upgrade").await;
    let untouched = world.crates.get("amr").await.expect("crate");
    assert_eq!(
        untouched.status, first.status,
        "the upgrade changed the crate"
    );
    // The rollout replaces the manager with one of the new template.
    drop(manager);
    let manager = start_manager(&world.plane, &install, "helm-2");
    repo.update(|b| {
        b.file(META, EXAMPLE_CRATE.replace("\"name\"", "\"name\" "))
            .commit("second")
    })
    .expect("second commit");
    let second = world.reload("amr", &repo.head("main"), &manager).await;
    assert_eq!(last_job_ttl(&world.jobs, &second).await, Some(7200));
    drop(manager);

    // Uninstall: the operator goes; the CRDs, the crate and its datasource stay.
    world.uninstall(&crd_uids).await;
    let kept = world.crates.get("amr").await.expect("the crate is kept");
    assert_eq!(kept.status, second.status);
    let datasources = world.datasources.list(&ListParams::default()).await;
    assert_eq!(datasources.expect("datasources").items.len(), 1);

    // Installing again takes the kept CRDs back into the release.
    helm_release(&world.plane, "install", &[]);
    let history = helm_ok(
        &world.plane,
        &["history", RELEASE, "--namespace", INSTALL_NAMESPACE],
    );
    assert!(history.stdout.contains("deployed"), "{}", history.stdout);
    assert_same_crds(&world.crds, &crd_uids, "by the second install").await;
}
