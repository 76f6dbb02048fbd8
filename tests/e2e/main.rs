//! End-to-end tests: the manager and the loader against a real control plane.
//!
//! `harness` starts etcd, kube-apiserver and kube-controller-manager (built from the official Go
//! modules by `hack/control-plane/build.sh`), applies `deploy/` with kubectl, and runs loader Pods
//! through a kubelet stand-in. Every test gets its own namespace enforcing Pod Security
//! "restricted", its own git server and its own manager processes, so tests run in parallel.
//! The chart's install, upgrade and uninstall (`chart`) runs on a control plane of its own.
//! Nothing here sleeps to synchronise: every wait is for a condition, bounded by
//! [`harness::PATIENCE`].

mod admission;
mod chart;
mod harness;
mod install;
mod lifecycle;
mod loading;
mod security;

use crate_operator_api::{AnalyticsCrate, AnalyticsDataSource};
use crate_test_support::{BareRepo, GitDaemon, RepoBuilder};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams, PostParams};

use harness::{Manager, TestNamespace, analytics_crate, cluster, wait_for};

/// Where cr8tor puts the metadata file, as a tree path and as `spec.path`.
const META: &str = "bagit/data/ro-crate-metadata.json";
const PATH: &str = "/bagit/data/ro-crate-metadata.json";
/// The bundled example crate (the one the README previews).
const EXAMPLE_CRATE: &str =
    include_str!("../../examples/demo-crate/bagit/data/ro-crate-metadata.json");

/// One test's world: a namespace, a repository with the example crate served over `git://`, a
/// manager, and API handles.
struct Fixture {
    ns: TestNamespace,
    repo: BareRepo,
    daemon: GitDaemon,
    client: kube::Client,
    crates: Api<AnalyticsCrate>,
    datasources: Api<AnalyticsDataSource>,
    jobs: Api<Job>,
    managers: Vec<Manager>,
}

impl Fixture {
    /// A fixture with one running manager.
    async fn new(test: &str) -> Fixture {
        let mut fixture = Fixture::without_manager(test).await;
        fixture.start_manager("m0");
        fixture
    }

    /// A fixture whose test starts its managers itself.
    async fn without_manager(test: &str) -> Fixture {
        let ns = TestNamespace::new(test);
        let (repo, daemon) = example_repo();
        let client = harness::admin().await;
        Fixture {
            crates: Api::namespaced(client.clone(), &ns.name),
            datasources: Api::namespaced(client.clone(), &ns.name),
            jobs: Api::namespaced(client.clone(), &ns.name),
            client,
            ns,
            repo,
            daemon,
            managers: Vec::new(),
        }
    }

    fn start_manager(&mut self, identity: &str) {
        self.managers.push(self.ns.manager(identity));
    }

    /// The `git://` URL of the fixture repository.
    fn url(&self) -> String {
        self.daemon.url(self.repo.name())
    }

    /// The head of `main`.
    fn head(&self) -> String {
        self.repo.head("main")
    }

    /// Creates the crate `name` for the fixture repository, with `edit` applied first.
    async fn create_crate(
        &self,
        name: &str,
        edit: impl FnOnce(&mut AnalyticsCrate),
    ) -> AnalyticsCrate {
        let mut object = analytics_crate(name, &self.url(), PATH);
        edit(&mut object);
        self.crates
            .create(&PostParams::default(), &object)
            .await
            .expect("create crate")
    }

    /// Waits until `name` is Ready with `commit` loaded for its current generation.
    async fn wait_ready_at(&self, name: &str, commit: &str) -> AnalyticsCrate {
        let commit = commit.to_owned();
        wait_for(
            &self.crates,
            name,
            &format!("Ready at {commit}"),
            move |c: Option<&AnalyticsCrate>| {
                c.is_some_and(|c| {
                    c.status.as_ref().is_some_and(|s| {
                        s.status_text == "Ready"
                            && s.commit_id.as_deref() == Some(commit.as_str())
                            && s.observed_generation == c.metadata.generation
                    })
                })
            },
            || self.context(),
        )
        .await
    }

    /// Waits until `name` has failed with `reason` on its Ready condition.
    async fn wait_failed(&self, name: &str, reason: &str) -> AnalyticsCrate {
        let reason = reason.to_owned();
        wait_for(
            &self.crates,
            name,
            &format!("Failed with {reason}"),
            move |c: Option<&AnalyticsCrate>| {
                c.and_then(|c| c.status.as_ref()).is_some_and(|s| {
                    s.status_text == "Failed"
                        && condition(s, "Ready").is_some_and(|r| r.reason == reason)
                })
            },
            || self.context(),
        )
        .await
    }

    /// Asks for a reload with the force-reload annotation and waits until it has been handled.
    async fn reload(&self, name: &str, at: &str) -> AnalyticsCrate {
        request_reload(&self.crates, name, at).await;
        let at = at.to_owned();
        wait_for(
            &self.crates,
            name,
            &format!("reload {at} handled"),
            move |c: Option<&AnalyticsCrate>| {
                c.and_then(|c| c.status.as_ref())
                    .is_some_and(|s| s.last_handled_reload_at.as_deref() == Some(at.as_str()))
            },
            || self.context(),
        )
        .await
    }

    /// The loader Jobs in the namespace.
    async fn job_names(&self) -> Vec<String> {
        self.jobs
            .list(&kube::api::ListParams::default())
            .await
            .expect("list jobs")
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect()
    }

    /// What a failure message should show: the managers' logs and the loader runs.
    fn context(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for manager in &self.managers {
            let _ = writeln!(
                out,
                "--- manager {} log (end) ---\n{}",
                manager.identity,
                manager.log_tail()
            );
        }
        for run in cluster().kubelet.runs(&self.ns.name) {
            let _ = writeln!(
                out,
                "--- loader pod {} exit {:?} ---\n{}\n{}",
                run.pod, run.exit_code, run.termination_message, run.stderr
            );
        }
        out
    }
}

/// Sets the force-reload annotation of crate `name` to `at`.
async fn request_reload(crates: &Api<AnalyticsCrate>, name: &str, at: &str) {
    let patch = serde_json::json!({"metadata": {"annotations": {
        crate_operator_api::contract::ANNOTATION_RELOAD_REQUESTED_AT: at
    }}});
    crates
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate crate");
}

/// A repository holding the example crate, served over `git://`.
fn example_repo() -> (BareRepo, GitDaemon) {
    let repo = RepoBuilder::new()
        .file(META, EXAMPLE_CRATE)
        .commit("crate")
        .build_bare()
        .expect("repo");
    let daemon = GitDaemon::start(repo.base_dir()).expect("git daemon");
    (repo, daemon)
}

/// A condition of a crate's status by type.
fn condition<'a>(
    status: &'a crate_operator_api::AnalyticsCrateStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}
