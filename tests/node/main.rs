//! The loader where it really runs: on a real kubelet and container runtime, from the images
//! this repository builds, driven by the operator installed as Pods with `helm install` of the
//! chart.
//!
//! What only a real node can show: the init container copies the binary out of the loader image
//! and the runner image runs it; the process is user 65532 with no capabilities on a read-only
//! root; the memory limit, the volumes' size limits and the Job's deadline are enforced;
//! `kubectl logs` works per crate; the token is a file of the main container only. See `harness` for how the node is set up and how
//! the host is left as it was (`tests/node_host.rs` checks that).
//!
//! Needs root, containerd, runc and the CNI plugins (`.ci/run` installs them); the first run
//! builds the kubelet and the release binaries, later runs start in about a minute.

mod harness;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use crate_operator_api::{AnalyticsCrate, AnalyticsCrateStatus, AnalyticsDataSource};
use crate_test_cluster::node::{BRIDGE_IP, CGROUP_ROOT};
use crate_test_cluster::operator::{INSTALL_NAMESPACE, analytics_crate, kubectl_ok};
use crate_test_support::hostile::{DaemonScript, ScriptedGitDaemon};
use crate_test_support::{BareRepo, GitDaemon, RepoBuilder, SmartHttp, Tarpit};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::wait::await_condition;

use harness::{PATIENCE, TestNamespace, admin, apply, cluster, image};

const META: &str = "bagit/data/ro-crate-metadata.json";
const PATH: &str = "/bagit/data/ro-crate-metadata.json";
const EXAMPLE_CRATE: &str =
    include_str!("../../examples/demo-crate/bagit/data/ro-crate-metadata.json");
const TOKEN: &str = "ghp_node-suite-token-that-must-never-show";

fn bridge() -> IpAddr {
    IpAddr::V4(BRIDGE_IP)
}

fn example_repo() -> BareRepo {
    RepoBuilder::new()
        .file(META, EXAMPLE_CRATE)
        .commit("crate")
        .build_bare()
        .expect("repo")
}

/// One test's world: a namespace, crates and datasources there.
struct Fixture {
    ns: TestNamespace,
    crates: Api<AnalyticsCrate>,
    datasources: Api<AnalyticsDataSource>,
    pods: Api<Pod>,
}

impl Fixture {
    async fn new(test: &str) -> Fixture {
        let ns = TestNamespace::new(test);
        let client = admin().await;
        Fixture {
            crates: Api::namespaced(client.clone(), &ns.name),
            datasources: Api::namespaced(client.clone(), &ns.name),
            pods: Api::namespaced(client, &ns.name),
            ns,
        }
    }

    async fn create(&self, name: &str, url: &str, edit: impl FnOnce(&mut AnalyticsCrate)) {
        let mut object = analytics_crate(name, url, PATH);
        edit(&mut object);
        self.crates
            .create(&PostParams::default(), &object)
            .await
            .expect("create crate");
    }

    /// Waits until the crate's status satisfies `check`; fails with the status and the node's
    /// logs otherwise.
    async fn wait(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&AnalyticsCrateStatus) -> bool,
    ) -> AnalyticsCrateStatus {
        let condition =
            move |c: Option<&AnalyticsCrate>| c.and_then(|c| c.status.as_ref()).is_some_and(&check);
        match tokio::time::timeout(
            PATIENCE,
            await_condition(self.crates.clone(), name, condition),
        )
        .await
        {
            Ok(Ok(Some(ac))) => ac.status.unwrap_or_default(),
            other => {
                let now = self.crates.get_opt(name).await.ok().flatten();
                panic!(
                    "{name} did not reach {what} ({other:?}); it is:\n{}\nloader pods:\n{}\nnode:\n{}",
                    serde_yaml::to_string(&now).unwrap_or_default(),
                    self.pod_summary().await,
                    cluster().node.logs()
                )
            }
        }
    }

    async fn wait_ready(&self, name: &str) -> AnalyticsCrateStatus {
        self.wait(name, "Ready", |s| s.status_text == "Ready").await
    }

    async fn wait_failed(&self, name: &str, reason: &str) -> AnalyticsCrateStatus {
        self.wait(name, reason, |s| {
            s.status_text == "Failed" && condition_reason(s, "Ready") == Some(reason)
        })
        .await
    }

    /// Waits until `name` failed permanently for `reason`, after one try; returns the `Stalled`
    /// condition's message.
    async fn wait_stalled(&self, name: &str, reason: &str) -> String {
        let status = self.wait_failed(name, reason).await;
        let stalled = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .expect("Stalled");
        assert_eq!(stalled.status, "True", "permanent: not retried");
        assert_eq!(status.failures, Some(1), "tried once");
        stalled.message.clone()
    }

    /// A crate whose loader is kept running by a server that never answers; returns once the
    /// loader has connected to it.
    async fn stalled_load(&self, name: &str) -> Tarpit {
        let tarpit = Tarpit::start_on(bridge()).expect("tarpit");
        let url = format!("git://{}/{name}.git", tarpit.addr());
        self.create(name, &url, |_| {}).await;
        let deadline = std::time::Instant::now() + PATIENCE;
        while tarpit.connections() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the loader never connected:\n{}",
                self.pod_summary().await
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        tarpit
    }

    async fn pod_summary(&self) -> String {
        self.pods
            .list(&ListParams::default())
            .await
            .map(|l| {
                serde_yaml::to_string(&l.items.iter().map(|p| &p.status).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

fn condition_reason<'a>(s: &'a AnalyticsCrateStatus, type_: &str) -> Option<&'a str> {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.as_str())
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_install_runs_as_pods_that_pass_their_probes_and_elect_one_leader() {
    let client = admin().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), INSTALL_NAMESPACE);
    let managers = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=manager"))
        .await
        .expect("manager pods")
        .items;
    assert_eq!(managers.len(), 2, "two replicas");
    for pod in &managers {
        let status = pod.status.as_ref().expect("status");
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        assert!(ready, "{:?} is not ready", pod.metadata.name);
        let running = &status.container_statuses.as_ref().expect("containers")[0].image;
        assert!(running.contains(&image("crate-operator")), "{running}");
    }
    let lease: Api<Lease> = Api::namespaced(client, INSTALL_NAMESPACE);
    let holder = lease
        .get("crate-operator")
        .await
        .expect("the Lease")
        .spec
        .and_then(|s| s.holder_identity)
        .expect("a holder");
    assert!(
        managers
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(holder.as_str())),
        "the leader {holder} is one of the replicas"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crate_loads_through_the_real_images_and_its_log_is_read_per_crate() {
    let fx = Fixture::new("load").await;
    let repo = example_repo();
    let daemon = GitDaemon::start_on(bridge(), repo.base_dir(), &[]).expect("git daemon");
    fx.create("demo", &daemon.url(repo.name()), |_| {}).await;
    let status = fx.wait_ready("demo").await;
    assert_eq!(
        status.commit_id.as_deref(),
        Some(repo.head("main").as_str())
    );
    let ds = fx.datasources.get("demo").await.expect("datasource");
    assert!(ds.spec.display_name.is_some());

    // The Job's Pod: the init container ran the loader image, the main one the runner image.
    let pod = fx
        .pods
        .list(&ListParams::default().labels("xlscsde.nhs.uk/crate=demo"))
        .await
        .expect("pods")
        .items
        .pop()
        .expect("the loader pod");
    let status = pod.status.expect("pod status");
    let init = &status.init_container_statuses.expect("init")[0];
    let main = &status.container_statuses.expect("main")[0];
    assert!(
        init.image.contains(&image("crate-loader")),
        "{}",
        init.image
    );
    assert!(
        main.image.contains(&image("crate-runner")),
        "{}",
        main.image
    );
    let exit = |s: &k8s_openapi::api::core::v1::ContainerStatus| {
        s.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    assert_eq!((exit(init), exit(main)), (Some(0), Some(0)));

    // `kubectl logs` for one crate, as the README gives it.
    let logs = kubectl_ok(cluster().plane.kubectl().args([
        "logs",
        "--namespace",
        &fx.ns.name,
        "-l",
        "app.kubernetes.io/name=crate-loader,xlscsde.nhs.uk/crate=demo",
        "-c",
        "load",
    ]))
    .expect("kubectl logs")
    .stdout;
    assert!(logs.contains("applied datasource"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_repository_loads_with_the_token_from_its_secret_and_the_token_shows_nowhere() {
    let fx = Fixture::new("private").await;
    let repo = example_repo();
    let http = SmartHttp::builder()
        .bind(bridge())
        .basic_auth("pat", TOKEN)
        .start(repo.base_dir())
        .expect("smart http");
    apply(&format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: git-token, namespace: {ns}}}
stringData: {{TOKEN: {TOKEN}}}
",
        ns = fx.ns.name
    ));
    fx.create("private", &http.url(repo.name()), |ac| {
        ac.spec.repo.secret_name = Some("git-token".to_owned());
    })
    .await;
    fx.wait_ready("private").await;
    assert!(
        http.request_log()
            .iter()
            .any(|r| r.authorization_header.is_some()),
        "the token was sent"
    );
    let mut visible = Vec::new();
    for kind in ["analyticscrates", "jobs", "pods", "events"] {
        visible.push(
            kubectl_ok(cluster().plane.kubectl().args([
                "get",
                kind,
                "-o",
                "yaml",
                "-n",
                &fx.ns.name,
            ]))
            .expect("kubectl get")
            .stdout,
        );
    }
    visible.push(
        kubectl_ok(cluster().plane.kubectl().args([
            "logs",
            "-n",
            &fx.ns.name,
            "-l",
            "xlscsde.nhs.uk/crate=private",
            "--all-containers",
        ]))
        .expect("logs")
        .stdout,
    );
    visible.push(
        kubectl_ok(cluster().plane.kubectl().args([
            "logs",
            "-n",
            INSTALL_NAMESPACE,
            "-l",
            "app.kubernetes.io/component=manager",
            "--all-containers",
        ]))
        .expect("manager logs")
        .stdout,
    );
    for text in visible {
        assert!(!text.contains(TOKEN), "the token leaked:\n{text}");
    }
}

/// The `crate-loader` processes running in the node's cgroups, with their `/proc` status.
fn loader_processes() -> Vec<(u32, String)> {
    let mut pids = Vec::new();
    let root = PathBuf::from(format!("/sys/fs/cgroup/pids/{CGROUP_ROOT}"));
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "cgroup.procs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
    }
    pids.into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "crate-loader")
        })
        .filter_map(|pid| {
            Some((
                pid,
                std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
            ))
        })
        .collect()
}

fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map_or("", str::trim)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_loader_runs_as_65532_without_capabilities_on_a_read_only_root() {
    let fx = Fixture::new("identity").await;
    let _tarpit = fx.stalled_load("stalled").await;
    // The loader and its fetch worker (which made the connection).
    let processes = loader_processes();
    assert!(processes.len() >= 2, "{processes:?}");
    for (pid, status) in &processes {
        assert_eq!(
            status_field(status, "Uid:"),
            "65532\t65532\t65532\t65532",
            "pid {pid}"
        );
        assert_eq!(
            status_field(status, "Gid:"),
            "65532\t65532\t65532\t65532",
            "pid {pid}"
        );
        for caps in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
            assert_eq!(
                status_field(status, caps),
                "0000000000000000",
                "pid {pid} {caps}"
            );
        }
        assert_eq!(status_field(status, "NoNewPrivs:"), "1", "pid {pid}");
        assert_eq!(
            status_field(status, "Seccomp:"),
            "2",
            "pid {pid}: seccomp filter"
        );
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
        let root = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/"))
            .expect("a root mount");
        let options = root.split_whitespace().nth(5).unwrap_or_default();
        assert!(
            options.split(',').any(|o| o == "ro"),
            "root mounted {options}: {root}"
        );
    }
    // The stalled load ends at the loader's own time limit (--loader-timeout=45s here).
    fx.wait_failed("stalled", "TimedOut").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_that_needs_more_memory_than_the_pod_has_is_a_permanent_limit() {
    let fx = Fixture::new("memory").await;
    // A ref advertisement that never ends: only the memory budget stops it.
    let daemon = ScriptedGitDaemon::start_on(bridge(), |_| DaemonScript::endless_advertisement())
        .expect("daemon");
    fx.create("hungry", &daemon.url("/hungry.git"), |_| {})
        .await;
    let stalled = fx.wait_stalled("hungry", "LimitExceeded").await;
    assert!(stalled.contains("memory"), "{stalled}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loader_pod_that_fills_a_volume_past_its_size_limit_is_evicted_as_a_permanent_limit() {
    let fx = Fixture::new("evicted").await;
    // The loader itself never gets that far: the manager refuses a work volume smaller than the
    // transfer budget, so the loader stops with LimitExceeded first. The kubelet's eviction is
    // the backstop for what escapes the budget; here the test fills the volume for it, from the
    // node's side, while the loader waits on a server that never answers.
    let _tarpit = fx.stalled_load("full").await;
    let uid = fx
        .pods
        .list(&ListParams::default().labels("xlscsde.nhs.uk/crate=full"))
        .await
        .expect("pods")
        .items
        .pop()
        .and_then(|p| p.metadata.uid)
        .expect("the loader pod");
    let tmp = cluster().node.dir().join(format!(
        "kubelet/pods/{uid}/volumes/kubernetes.io~empty-dir/tmp"
    ));
    // 80 MiB of written (not sparse) data in the 64Mi `tmp` volume.
    std::fs::write(tmp.join("filler"), vec![1u8; 80 << 20]).expect("fill the tmp volume");

    let stalled = fx.wait_stalled("full", "LimitExceeded").await;
    assert!(
        stalled.contains("sizeLimit") && stalled.contains("\"tmp\""),
        "{stalled}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_whose_pod_never_starts_is_ended_by_the_jobs_deadline() {
    let fx = Fixture::new("deadline").await;
    let repo = example_repo();
    let daemon = GitDaemon::start_on(bridge(), repo.base_dir(), &[]).expect("git daemon");
    // The Secret never comes: the Pod waits for it until activeDeadlineSeconds (60 s here).
    fx.create("blocked", &daemon.url(repo.name()), |ac| {
        ac.spec.repo.secret_name = Some("never-created".to_owned());
    })
    .await;
    fx.wait("blocked", "PodBlocked", |s| {
        condition_reason(s, "Reconciling") == Some("PodBlocked")
    })
    .await;
    fx.wait_failed("blocked", "TimedOut").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_quota_on_cpu_memory_and_storage_admits_the_loader_jobs() {
    let fx = Fixture::new("quota").await;
    apply(&format!(
        "apiVersion: v1
kind: ResourceQuota
metadata: {{name: compute, namespace: {ns}}}
spec:
  hard:
    requests.cpu: '1'
    requests.memory: 1Gi
    limits.cpu: '2'
    limits.memory: 2Gi
    requests.ephemeral-storage: 2Gi
    limits.ephemeral-storage: 4Gi
",
        ns = fx.ns.name
    ));
    let repo = example_repo();
    let daemon = GitDaemon::start_on(bridge(), repo.base_dir(), &[]).expect("git daemon");
    fx.create("quota", &daemon.url(repo.name()), |_| {}).await;
    fx.wait_ready("quota").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_account_token_is_mounted_in_the_main_container_only() {
    let fx = Fixture::new("token").await;
    let repo = example_repo();
    let daemon = GitDaemon::start_on(bridge(), repo.base_dir(), &[]).expect("git daemon");
    fx.create("token", &daemon.url(repo.name()), |_| {}).await;
    fx.wait_ready("token").await;
    // The runtime's own record of each container's mounts.
    let node = &cluster().node;
    let ids = node
        .ctr()
        .args(["containers", "ls", "-q"])
        .output()
        .expect("ctr");
    let mut mounts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in String::from_utf8_lossy(&ids.stdout).lines() {
        let info = node
            .ctr()
            .args(["containers", "info", id])
            .output()
            .expect("ctr info");
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
        let labels = &info["Labels"];
        if labels["io.kubernetes.pod.namespace"] != fx.ns.name.as_str() {
            continue;
        }
        let Some(container) = labels["io.kubernetes.container.name"].as_str() else {
            continue;
        };
        let destinations = info["Spec"]["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["destination"].as_str().map(str::to_owned))
            .collect();
        mounts.insert(container.to_owned(), destinations);
    }
    let token_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let main = mounts.get("load").expect("the main container");
    let init = mounts.get("install-loader").expect("the init container");
    assert!(main.iter().any(|m| m == token_dir), "main: {main:?}");
    assert!(
        !init.iter().any(|m| m.starts_with("/var/run/secrets")),
        "init: {init:?}"
    );
}
