//! The benchmark's fixture and what it records besides timings: the namespaces and crates it
//! creates, the machine it ran on, the loader Pods that ran, and the managers' log problems.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use crate_operator_api::{AnalyticsCrate, AnalyticsCrateStatus};
use crate_test_cluster::Kubelet;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt as _;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

use crate::Config;

/// Crates and namespaces created at once.
const CREATE_CONCURRENCY: usize = 32;
/// Where cr8tor puts the metadata file, as `spec.path`.
const PATH: &str = "/bagit/data/ro-crate-metadata.json";

/// The machine and the versions.
pub struct Facts {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kubernetes: String,
    pub commit: String,
}

impl Facts {
    pub async fn gather(client: &kube::Client) -> anyhow::Result<Facts> {
        let proc_line = |file: &str, key: &str| {
            std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.lines().find(|l| l.starts_with(key)).map(str::to_owned))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
                .unwrap_or_default()
        };
        let commit = std::process::Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Ok(Facts {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: proc_line("/proc/cpuinfo", "model name"),
            memory: proc_line("/proc/meminfo", "MemTotal"),
            kubernetes: client.apiserver_version().await?.git_version,
            commit,
        })
    }
}

/// Namespace `i` of the benchmark.
pub fn namespace(i: usize) -> String {
    namespace_of("scale", i)
}

/// Namespace `i` of the crates named by `prefix`.
fn namespace_of(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:03}")
}

/// A set of crates: `crates` of them, `per_namespace` in each namespace `{prefix}-NNN`.
pub struct Population<'a> {
    pub prefix: &'a str,
    pub crates: usize,
    pub per_namespace: usize,
}

impl Population<'_> {
    /// The namespaces of these crates.
    pub fn namespaces(&self) -> Vec<String> {
        (0..self.crates.div_ceil(self.per_namespace))
            .map(|i| namespace_of(self.prefix, i))
            .collect()
    }
}

/// Creates the namespaces (Pod Security "restricted", like a real crate namespace) and the
/// crates, `CREATE_CONCURRENCY` requests at a time; returns the crates as created.
pub async fn create_crates(
    population: &Population<'_>,
    client: &kube::Client,
    url: &str,
) -> anyhow::Result<Vec<AnalyticsCrate>> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names = population.namespaces();
    all_at_once(names.iter().map(|name| {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    "pod-security.kubernetes.io/enforce".to_owned(),
                    "restricted".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let namespaces = namespaces.clone();
        async move { namespaces.create(&PostParams::default(), &namespace).await }
    }))
    .await
    .context("failed to create a namespace")?;

    all_at_once((0..population.crates).map(|i| {
        let api: Api<AnalyticsCrate> =
            Api::namespaced(client.clone(), &names[i / population.per_namespace]);
        let object =
            crate_test_cluster::operator::analytics_crate(&format!("crate-{i:05}"), url, PATH);
        async move { api.create(&PostParams::default(), &object).await }
    }))
    .await
    .context("failed to create a crate")
}

/// Writes `status(name)` to every crate, as the manager does (server-side apply, its field
/// manager): the crates look as a finished load leaves them.
pub async fn seed_status(
    client: &kube::Client,
    crates: &[AnalyticsCrate],
    status: impl Fn(&str) -> AnalyticsCrateStatus,
) -> anyhow::Result<()> {
    let params = PatchParams::apply(crate_operator::controller::FIELD_MANAGER).force();
    all_at_once(crates.iter().map(|ac| {
        let name = ac.name_any();
        let api: Api<AnalyticsCrate> =
            Api::namespaced(client.clone(), &ac.namespace().unwrap_or_default());
        let body = serde_json::json!({
            "apiVersion": "xlscsde.nhs.uk/v1",
            "kind": "AnalyticsCrate",
            "status": status(&name),
        });
        let params = &params;
        async move { api.patch_status(&name, params, &Patch::Apply(&body)).await }
    }))
    .await
    .context("failed to write a crate's status")?;
    Ok(())
}

/// Runs `requests`, `CREATE_CONCURRENCY` at a time; the first error if any failed.
pub async fn all_at_once<T, E>(
    requests: impl Iterator<Item = impl Future<Output = Result<T, E>>>,
) -> Result<Vec<T>, E> {
    futures::stream::iter(requests)
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Loader Pods run by the stand-in, and how many of them failed.
pub fn loader_runs(config: &Config, kubelet: &Kubelet) -> (usize, usize) {
    let runs: Vec<_> = (0..config.namespaces())
        .flat_map(|i| kubelet.runs(&namespace(i)))
        .collect();
    let failed = runs.iter().filter(|r| r.exit_code != Some(0)).count();
    (runs.len(), failed)
}

/// WARN and ERROR lines in a manager's JSON log.
pub struct LogProblems {
    pub warnings: usize,
    pub errors: usize,
    /// A few distinct messages.
    pub samples: Vec<String>,
    pub path: PathBuf,
}

pub fn log_problems(path: &Path) -> LogProblems {
    let mut problems = LogProblems {
        warnings: 0,
        errors: 0,
        samples: Vec::new(),
        path: path.to_owned(),
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match event["level"].as_str() {
            Some("WARN") => problems.warnings += 1,
            Some("ERROR") => problems.errors += 1,
            _ => continue,
        }
        let message = format!(
            "{} {}",
            event["message"].as_str().unwrap_or_default(),
            event["error"].as_str().unwrap_or_default()
        );
        if problems.samples.len() < 5 && !problems.samples.contains(&message) {
            problems.samples.push(message);
        }
    }
    problems
}
