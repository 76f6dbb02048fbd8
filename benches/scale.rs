//! Scale benchmark (not a test): one manager and N AnalyticsCrates on a real control plane.
//!
//! Runs on the end-to-end tests' machinery (`crate_test_cluster`): etcd, kube-apiserver and
//! kube-controller-manager built by `hack/control-plane/build.sh`, the install applied from
//! `deploy/`, managers authenticated as the install's ServiceAccount, and the kubelet stand-in
//! running loader Pods with the release `crate-loader`. The apiserver keeps an audit log of the
//! manager's ServiceAccount only, so its API requests are counted exactly. Measured:
//!
//! 1. **Load.** N crates (`SCALE_CRATES`, 1000) in namespaces of `SCALE_PER_NAMESPACE` (20),
//!    all created before the manager starts, all pointing at one repository served by
//!    `git daemon`. From the manager's start: until every crate has its loader Job, every
//!    datasource exists, and every crate is Ready at the repository head for its generation
//!    (the strict end); loads per second; the API requests of the phase.
//! 2. **Steady state.** After a settling pause (`SCALE_SETTLE_SECS`, 15), nothing changing, the
//!    manager's API requests per minute over `SCALE_STEADY_SECS` (120), by verb and resource.
//! 3. **Memory and CPU.** The manager's VmHWM (peak) and VmRSS from `/proc/<pid>/status` of the
//!    manager process itself, and its CPU time per phase.
//! 4. **Resume.** SIGTERM (graceful), then a new manager: time to its first reconcile, to N
//!    reconciles (its `/metrics`), and until it has settled: no loader Job running or waiting,
//!    every crate Ready at the head, and every Job it created recorded in its crate's status.
//!    Also the Jobs it created, the crate statuses it changed, and its API requests.
//! 5. **Resume at scale** (`scale/seeded.rs`): 10,000 more crates seeded up to date, and a new
//!    manager on all of them; `SCALE_RESUME_CRATES=0` skips it and phase 6.
//! 6. **Hand-over at scale** (`scale/handover.rs`): that manager frozen past its Lease while a
//!    standby takes over every crate; the frozen leader's late writes from the audit log.
//!
//! The caps are `SCALE_MAX_RUNNING` (10) and `SCALE_MAX_RUNNING_PER_NAMESPACE` (2), the
//! manager's defaults; the kubelet stand-in runs as many Pods at once as the global cap, so it
//! never holds loads back below it. Run:
//!
//! ```sh
//! cargo build --release -p crate-loader && cargo bench --bench scale
//! SCALE_CRATES=50 SCALE_STEADY_SECS=30 cargo bench --bench scale   # a quick check
//! ```
//!
//! Each wait gives up after `SCALE_TIMEOUT_SECS` (600 + 3 s per crate). It prints a table and
//! writes the same numbers to `target/scale-bench.json`; the managers' logs and the audit log
//! stay in `target/scale-bench/`.

#[path = "scale/finished.rs"]
mod finished;
#[path = "scale/fixture.rs"]
mod fixture;
#[path = "scale/handover.rs"]
mod handover;
#[path = "scale/report.rs"]
mod report;
#[path = "scale/seeded.rs"]
mod seeded;
#[path = "scale/track.rs"]
mod track;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use crate_test_cluster::audit::{self, Requests};
use crate_test_cluster::operator::{
    Install, MANAGER_USER, Manager, ManagerSpec, ProcessStats, loader_binary, loader_kubelet,
    metric,
};
use crate_test_cluster::{ControlPlane, Kubelet, Options, free_port};
use crate_test_support::{GitDaemon, RepoBuilder};
use jiff::Timestamp;

use fixture::{Facts, LogProblems, Population, create_crates, loader_runs, log_problems};
use report::seconds;
use track::{Snapshot, Tracker};

const MANAGER: &str = env!("CARGO_BIN_EXE_crate-operator");
const LOADER_BUILD: &str = "cargo build --release -p crate-loader";
/// Where cr8tor puts the metadata file.
const META: &str = "bagit/data/ro-crate-metadata.json";
const EXAMPLE_CRATE: &str =
    include_str!("../examples/demo-crate/bagit/data/ro-crate-metadata.json");
/// How often the resume phase reads the manager's `/metrics`.
const METRICS_EVERY: Duration = Duration::from_millis(200);

struct Config {
    crates: usize,
    per_namespace: usize,
    max_running: usize,
    max_running_per_namespace: usize,
    settle: Duration,
    steady: Duration,
    timeout: Duration,
    /// Crates seeded up to date for phase 5 (0: skip it), and how many per namespace.
    resume_crates: usize,
    resume_per_namespace: usize,
}

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name}={value} is not a whole number")),
        Err(_) => Ok(default),
    }
}

impl Config {
    fn from_env() -> anyhow::Result<Config> {
        let size = |name, default| {
            env_number(name, default)
                .and_then(|n| usize::try_from(n).context("too large"))
                .and_then(|n| {
                    if n == 0 {
                        bail!("{name} must be positive");
                    }
                    Ok(n)
                })
        };
        let crates = size("SCALE_CRATES", 1000)?;
        Ok(Config {
            crates,
            per_namespace: size("SCALE_PER_NAMESPACE", 20)?,
            resume_crates: usize::try_from(env_number("SCALE_RESUME_CRATES", 10_000)?)?,
            resume_per_namespace: size("SCALE_RESUME_PER_NAMESPACE", 100)?,
            max_running: size("SCALE_MAX_RUNNING", 10)?,
            max_running_per_namespace: size("SCALE_MAX_RUNNING_PER_NAMESPACE", 2)?,
            settle: Duration::from_secs(env_number("SCALE_SETTLE_SECS", 15)?),
            steady: Duration::from_secs(env_number("SCALE_STEADY_SECS", 120)?),
            timeout: Duration::from_secs(env_number(
                "SCALE_TIMEOUT_SECS",
                600 + 3 * crates as u64,
            )?),
        })
    }

    fn namespaces(&self) -> usize {
        self.crates.div_ceil(self.per_namespace)
    }
}

fn main() -> ExitCode {
    // `cargo test --benches` runs bench targets without `--bench`: this is no test.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the scale benchmark runs with `cargo bench --bench scale`");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale benchmark failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Everything the benchmark sets up before the manager starts.
/// Field order is drop order: the kubelet stand-in stops before the control plane.
struct Setup {
    kubelet: Kubelet,
    _daemon: GitDaemon,
    _repo: crate_test_support::BareRepo,
    install: Install,
    url: String,
    head: String,
    /// The managers' logs and kubeconfig (kept after the run, unlike the control plane's).
    dir: PathBuf,
    plane: ControlPlane,
}

fn run() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let manager = Path::new(MANAGER);
    let target = manager
        .parent()
        .filter(|dir| dir.ends_with("release"))
        .and_then(Path::parent)
        .context("the manager is not a release build: run `cargo bench --bench scale`")?;
    let loader = loader_binary(&manager.with_file_name("crate-loader"), LOADER_BUILD)?;

    eprintln!("scale: starting the control plane");
    let plane = ControlPlane::start_with(&Options {
        audit_policy: Some(audit::policy_for_user(MANAGER_USER)),
        ..Options::default()
    })?;
    let dir = target.join("scale-bench");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let install = Install::apply(&plane, &dir)?;
    let kubelet = loader_kubelet(&plane, loader, config.max_running)?;
    let repo = RepoBuilder::new()
        .file(META, EXAMPLE_CRATE)
        .commit("crate")
        .build_bare()?;
    let daemon = GitDaemon::start(repo.base_dir())?;
    let setup = Setup {
        url: daemon.url(repo.name()),
        head: repo.head("main"),
        plane,
        install,
        kubelet,
        dir,
        _daemon: daemon,
        _repo: repo,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(bench(&config, &setup))?;
    let report = report::build(&config, &results);
    let table = report.table();
    println!("\n{table}");
    let json = target.join("scale-bench.json");
    report
        .write_json(&json)
        .with_context(|| format!("failed to write {}", json.display()))?;
    println!("written to {}", json.display());
    Ok(())
}

async fn bench(config: &Config, setup: &Setup) -> anyhow::Result<Results> {
    let client = setup.plane.admin_client().await?;
    let facts = Facts::gather(&client).await?;
    eprintln!(
        "scale: creating {} crates in {} namespaces",
        config.crates,
        config.namespaces()
    );
    let created = Instant::now();
    let population = Population {
        prefix: "scale",
        crates: config.crates,
        per_namespace: config.per_namespace,
    };
    create_crates(&population, &client, &setup.url).await?;
    let created = created.elapsed();
    let job_selector = crate_operator::controller::loader_job_selector();
    let mut tracker = Tracker::start(&client, &job_selector, &setup.head).await?;

    let (m1, m1_log, mut load) = load_phase(config, setup, &mut tracker, created).await?;
    let mut steady = steady_phase(config, &mut tracker, &m1).await?;
    let (m2_log, mut resume) = resume_phase(config, setup, &mut tracker, m1).await?;
    let (mut seeded, mut handover) = match seeded::phase(config, setup, &mut tracker).await? {
        Some((leader, log, seeded)) => {
            let crates = seeded.crates;
            let handover = handover::phase(config, setup, &mut tracker, leader, crates).await?;
            (Some((log, seeded)), Some(handover))
        }
        None => (None, None),
    };

    // Requests, from the audit log now that both managers are gone.
    let log = (setup.plane.audit_log()).context("the control plane keeps no audit log")?;
    let requests = |(from, to)| audit::requests(log, MANAGER_USER, from, to);
    load.requests = requests(load.window)?;
    steady.requests = requests(steady.window)?;
    resume.requests = requests(resume.window)?;
    let mut logs = vec![log_problems(&m1_log), log_problems(&m2_log)];
    if let Some((log, seeded)) = &mut seeded {
        seeded.requests = requests(seeded.window)?;
        logs.push(log_problems(log));
    }
    if let Some((standby_log, h)) = &mut handover {
        h.requests = requests(h.window)?;
        let agent = format!("({})", h.old_identity);
        h.late_writes = audit::writes(log, MANAGER_USER, &agent, h.expiry)?;
        logs.push(log_problems(standby_log));
    }
    // The control plane's files go with it; the audit log is worth keeping beside the logs.
    std::fs::copy(log, setup.dir.join("audit.log")).context("failed to keep the audit log")?;
    Ok(Results {
        facts,
        load,
        steady,
        resume,
        seeded: seeded.map(|(_, seeded)| seeded),
        handover: handover.map(|(_, handover)| handover),
        logs,
    })
}

/// 1. Load: from the manager's start until every crate is Ready at the head.
async fn load_phase(
    config: &Config,
    setup: &Setup,
    tracker: &mut Tracker,
    created: Duration,
) -> anyhow::Result<(Manager, PathBuf, Load)> {
    let n = config.crates;
    eprintln!("scale: starting the manager");
    let (manager, log) = start_manager(config, setup, "scale-m0")?;
    let (start, started_at) = (Instant::now(), Timestamp::now());
    let (mut jobs_at, mut datasources_at, mut ready_at) = (None, None, None);
    tracker
        .until("every crate is Ready at the head", config.timeout, |w| {
            let now = start.elapsed();
            if w.jobs.len() >= n {
                jobs_at.get_or_insert(now);
            }
            if w.datasources.len() >= n {
                datasources_at.get_or_insert(now);
            }
            if w.ready(&setup.head) >= n {
                ready_at.get_or_insert(now);
            }
            jobs_at.is_some() && datasources_at.is_some() && ready_at.is_some()
        })
        .await
        .with_context(|| format!("the manager's log ends:\n{}", manager.log_tail()))?;
    let load = Load {
        window: (started_at, Timestamp::now()),
        created,
        first_job: (tracker.world.jobs.values())
            .map(|j| j.first_seen.duration_since(start))
            .min(),
        jobs_at: jobs_at.unwrap_or_default(),
        datasources_at: datasources_at.unwrap_or_default(),
        ready_at: ready_at.unwrap_or_default(),
        jobs_created: tracker.world.jobs.len(),
        stats: manager.stats()?,
        loader_runs: loader_runs(config, &setup.kubelet),
        requests: Requests::default(),
    };
    Ok((manager, log, load))
}

/// 2. Steady state: a settling pause, then a fixed window with nothing changing.
async fn steady_phase(
    config: &Config,
    tracker: &mut Tracker,
    manager: &Manager,
) -> anyhow::Result<Steady> {
    eprintln!("scale: all Ready; settling for {}", seconds(config.settle));
    tracker.run_for(config.settle).await?;
    let (before, before_stats) = (metrics(manager), manager.stats()?);
    let updates = (tracker.world.crate_updates, tracker.world.job_updates);
    let from = Timestamp::now();
    eprintln!(
        "scale: measuring the steady state for {}",
        seconds(config.steady)
    );
    tracker.run_for(config.steady).await?;
    let window = (from, Timestamp::now());
    let (after, stats) = (metrics(manager), manager.stats()?);
    Ok(Steady {
        window,
        reconciles: after.reconciles - before.reconciles,
        reconcile_errors: after.errors,
        crate_updates: tracker.world.crate_updates - updates.0,
        job_updates: tracker.world.job_updates - updates.1,
        cpu: stats.cpu.saturating_sub(before_stats.cpu),
        stats,
        requests: Requests::default(),
    })
}

/// 4. Resume: SIGTERM, a new manager, and wait until it has settled.
async fn resume_phase(
    config: &Config,
    setup: &Setup,
    tracker: &mut Tracker,
    old: Manager,
) -> anyhow::Result<(PathBuf, Resume)> {
    let n = config.crates;
    eprintln!("scale: restarting the manager");
    let before = Snapshot::take(&tracker.world);
    let stopping = Instant::now();
    old.stop();
    let stop_took = stopping.elapsed();
    let (manager, log) = start_manager(config, setup, "scale-m1")?;
    let (restart, restarted_at) = (Instant::now(), Timestamp::now());
    let (mut first_reconcile, mut reconciled) = (None, None);
    let mut last: Option<(Instant, Metrics)> = None;
    tracker
        .until("the new manager has settled", config.timeout, |w| {
            if (last.as_ref()).is_none_or(|(at, _)| at.elapsed() >= METRICS_EVERY) {
                last = Some((Instant::now(), metrics(&manager)));
            }
            let Some((_, m)) = &last else { return false };
            if m.reconciles >= 1.0 {
                first_reconcile.get_or_insert(restart.elapsed());
            }
            if m.reconciles >= count(n) {
                reconciled.get_or_insert(restart.elapsed());
            }
            reconciled.is_some()
                && m.running == 0.0
                && m.waiting == 0.0
                && w.ready(&setup.head) >= n
                && new_jobs_recorded(w, &before.jobs)
        })
        .await
        .with_context(|| format!("the new manager's log ends:\n{}", manager.log_tail()))?;
    let settled = restart.elapsed();
    let window = (restarted_at, Timestamp::now());
    let after = metrics(&manager);
    let resume = Resume {
        window,
        stop_took,
        first_reconcile,
        reconciled: reconciled.unwrap_or_default(),
        settled,
        jobs_created: before.jobs_created(&tracker.world),
        statuses_changed: before.statuses_changed(&tracker.world),
        reconciles: after.reconciles,
        reconcile_errors: after.errors,
        stats: manager.stats()?,
        requests: Requests::default(),
    };
    manager.stop();
    Ok((log, resume))
}

/// Everything measured, for [`report::build`].
struct Results {
    facts: Facts,
    load: Load,
    steady: Steady,
    resume: Resume,
    seeded: Option<seeded::AtScale>,
    handover: Option<handover::HandOver>,
    /// Of the managers of phases 1–2, 4, 5 and 6's standby.
    logs: Vec<LogProblems>,
}

/// When a phase began and ended, for the audit log.
type Window = (Timestamp, Timestamp);

struct Load {
    window: Window,
    created: Duration,
    first_job: Option<Duration>,
    jobs_at: Duration,
    datasources_at: Duration,
    ready_at: Duration,
    jobs_created: usize,
    stats: ProcessStats,
    /// Pods the kubelet stand-in ran, and how many of those failed.
    loader_runs: (usize, usize),
    requests: Requests,
}

struct Steady {
    window: Window,
    reconciles: f64,
    /// `crate_operator_reconcile_errors_total` of the first manager, at the window's end.
    reconcile_errors: f64,
    crate_updates: usize,
    job_updates: usize,
    cpu: Duration,
    stats: ProcessStats,
    requests: Requests,
}

struct Resume {
    window: Window,
    stop_took: Duration,
    first_reconcile: Option<Duration>,
    reconciled: Duration,
    settled: Duration,
    jobs_created: usize,
    statuses_changed: usize,
    reconciles: f64,
    reconcile_errors: f64,
    stats: ProcessStats,
    requests: Requests,
}

/// What the manager's `/metrics` says (zeros while it cannot be read).
#[derive(Default)]
struct Metrics {
    reconciles: f64,
    errors: f64,
    running: f64,
    waiting: f64,
}

fn metrics(manager: &Manager) -> Metrics {
    let Ok((200, text)) = manager.get("/metrics") else {
        return Metrics {
            running: f64::NAN,
            waiting: f64::NAN,
            ..Metrics::default()
        };
    };
    let value = |name| metric(&text, name).unwrap_or_default();
    Metrics {
        reconciles: value("crate_operator_reconciles_total"),
        errors: value("crate_operator_reconcile_errors_total"),
        running: value("crate_operator_loader_jobs_running"),
        waiting: value("crate_operator_crates_waiting"),
    }
}

#[allow(clippy::cast_precision_loss)] // crate counts are far below 2^52
fn count(n: usize) -> f64 {
    n as f64
}

/// Whether every crate that got a loader Job after `before` has that Job's result recorded.
fn new_jobs_recorded(w: &track::World, before: &HashSet<String>) -> bool {
    let new: HashSet<&str> = (w.jobs.keys())
        .filter(|k| !before.contains(*k))
        .map(String::as_str)
        .collect();
    (w.jobs.iter())
        .filter(|(k, _)| new.contains(k.as_str()))
        .filter_map(|(_, j)| j.owner.as_ref())
        .all(|owner| {
            let namespace = owner.split('/').next().unwrap_or_default();
            w.crates
                .get(owner)
                .and_then(|c| c.status.as_ref()?.last_job.as_deref())
                .is_some_and(|job| new.contains(format!("{namespace}/{job}").as_str()))
        })
}

fn start_manager(
    config: &Config,
    setup: &Setup,
    identity: &str,
) -> anyhow::Result<(Manager, PathBuf)> {
    let log = setup.dir.join(format!("{identity}.log"));
    let mut spec = ManagerSpec::new(Path::new(MANAGER), &setup.install, identity, &log);
    spec.listen_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    spec.args = vec![
        format!("--max-running-loads={}", config.max_running),
        format!(
            "--max-running-loads-per-namespace={}",
            config.max_running_per_namespace
        ),
    ];
    Ok((Manager::start(spec)?, log))
}
