//! The benchmark's results: a table on stdout and the same numbers as JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate_test_cluster::audit::Requests;
use serde_json::{Map, Value, json};

use crate::{Config, Results};

/// The report of a run.
pub fn build(config: &Config, r: &Results) -> Report {
    let mut report = Report::default();
    run(&mut report, config, r);
    load(&mut report, config, r);
    steady(&mut report, config, r);
    memory(&mut report, r);
    resume(&mut report, config, r);
    if let Some(seeded) = &r.seeded {
        resume_at_scale(&mut report, seeded);
    }
    if let Some(handover) = &r.handover {
        crate::handover::report(&mut report, handover);
    }
    health(&mut report, r);
    report
}

fn run(report: &mut Report, config: &Config, r: &Results) {
    let f = &r.facts;
    report.section("run", "Run");
    let command = format!(
        "{} && SCALE_CRATES={} SCALE_PER_NAMESPACE={} SCALE_MAX_RUNNING={} \
         SCALE_MAX_RUNNING_PER_NAMESPACE={} SCALE_STEADY_SECS={} cargo bench --bench scale",
        crate::LOADER_BUILD,
        config.crates,
        config.per_namespace,
        config.max_running,
        config.max_running_per_namespace,
        config.steady.as_secs(),
    );
    report.text("command", "command", &format!("`{command}`"));
    report.text("commit", "commit", &f.commit);
    report.text("cpu", "CPU", &format!("{} × {}", f.cpus, f.cpu_model));
    report.count("nproc", "nproc", f.cpus);
    report.text("memory", "memory", &f.memory);
    report.text("kubernetes", "Kubernetes", &f.kubernetes);
    report.count("crates", "crates", config.crates);
    report.count("namespaces", "namespaces", config.namespaces());
    report.count(
        "crates_per_namespace",
        "crates per namespace",
        config.per_namespace,
    );
    report.count(
        "max_running_loads",
        "--max-running-loads",
        config.max_running,
    );
    let per_namespace = config.max_running_per_namespace;
    report.count(
        "max_running_loads_per_namespace",
        "--max-running-loads-per-namespace",
        per_namespace,
    );
    report.count(
        "kubelet_parallel",
        "kubelet stand-in: Pods at once",
        config.max_running,
    );
}

fn load(report: &mut Report, config: &Config, r: &Results) {
    let (n, load) = (config.crates, &r.load);
    report.section("load", "1. Load, from the manager's start");
    report.time(
        "create_crates_secs",
        "creating the crates (before the manager starts)",
        load.created,
    );
    if let Some(first) = load.first_job {
        report.time("first_job_secs", "first loader Job created", first);
    }
    report.time(
        "all_jobs_secs",
        &format!("all {n} loader Jobs created"),
        load.jobs_at,
    );
    report.time(
        "all_datasources_secs",
        &format!("all {n} datasources applied"),
        load.datasources_at,
    );
    report.time(
        "all_ready_secs",
        &format!("all {n} crates Ready at the head commit"),
        load.ready_at,
    );
    let rate = per_second(n, load.ready_at);
    report.add(
        "loads_per_sec",
        "throughput",
        rate,
        format!("{rate} loads/s"),
    );
    report.count("jobs_created", "loader Jobs created", load.jobs_created);
    report.count("loader_pods_run", "loader Pods run", load.loader_runs.0);
    report.count(
        "loader_pods_failed",
        "loader Pods failed",
        load.loader_runs.1,
    );
    requests(report, &load.requests, load.ready_at, Some(n));
    report.time("manager_cpu_secs", "manager CPU time", load.stats.cpu);
}

fn steady(report: &mut Report, config: &Config, r: &Results) {
    let steady = &r.steady;
    report.section("steady", "2. Steady state, nothing changing");
    report.time(
        "settle_secs",
        "settling pause before the window",
        config.settle,
    );
    report.time("window_secs", "window", config.steady);
    requests(report, &steady.requests, config.steady, None);
    report.number("reconciles", "reconciles in the window", steady.reconciles);
    report.count(
        "crate_watch_events",
        "crate watch events in the window",
        steady.crate_updates,
    );
    report.count(
        "job_watch_events",
        "Job watch events in the window",
        steady.job_updates,
    );
    report.time(
        "manager_cpu_secs",
        "manager CPU time in the window",
        steady.cpu,
    );
}

fn memory(report: &mut Report, r: &Results) {
    report.section("memory", "3. Manager memory");
    let (load, steady, resume) = (&r.load.stats, &r.steady.stats, &r.resume.stats);
    report.mib(
        "peak_rss_mib",
        "peak RSS (VmHWM), load and steady state",
        steady.peak_rss_kib,
    );
    report.mib(
        "peak_rss_loaded_mib",
        "peak RSS (VmHWM) when all were Ready",
        load.peak_rss_kib,
    );
    report.mib(
        "steady_rss_mib",
        "RSS (VmRSS) at the end of the steady window",
        steady.rss_kib,
    );
    report.mib(
        "resumed_peak_rss_mib",
        "restarted manager: peak RSS (VmHWM) once settled",
        resume.peak_rss_kib,
    );
    report.mib(
        "resumed_rss_mib",
        "restarted manager: RSS (VmRSS) once settled",
        resume.rss_kib,
    );
}

fn resume(report: &mut Report, config: &Config, r: &Results) {
    let (n, resume) = (config.crates, &r.resume);
    report.section(
        "resume",
        "4. Resume: SIGTERM, then a new manager, all up to date",
    );
    report.time(
        "graceful_stop_secs",
        "old manager's exit after SIGTERM",
        resume.stop_took,
    );
    if let Some(first) = resume.first_reconcile {
        report.time("first_reconcile_secs", "first reconcile", first);
    }
    report.time(
        "all_reconciled_secs",
        &format!("{n} reconciles done"),
        resume.reconciled,
    );
    let settled = "settled: nothing running or waiting, all Ready, new Jobs recorded";
    report.time("settled_secs", settled, resume.settled);
    report.count(
        "jobs_created",
        "loader Jobs created while resuming",
        resume.jobs_created,
    );
    report.count(
        "statuses_changed",
        "crate statuses changed while resuming",
        resume.statuses_changed,
    );
    report.number("reconciles", "reconciles while resuming", resume.reconciles);
    requests(report, &resume.requests, resume.settled, Some(n));
    report.time("manager_cpu_secs", "manager CPU time", resume.stats.cpu);
}

fn resume_at_scale(report: &mut Report, s: &crate::seeded::AtScale) {
    report.section(
        "resume_at_scale",
        "5. Resume at scale: a new manager on crates seeded up to date",
    );
    report.count("seeded_crates", "crates seeded up to date", s.seeded);
    report.count("seeded_namespaces", "  in namespaces", s.namespaces);
    report.time("seed_secs", "  seeding took", s.seed_took);
    report.count("crates", "crates in all (with the load phase's)", s.crates);
    report.count("jobs", "finished loader Jobs kept", s.jobs);
    if let Some(first) = s.first_reconcile {
        report.time("first_reconcile_secs", "first reconcile", first);
    }
    report.time(
        "all_reconciled_secs",
        &format!("all {} crates reconciled once", s.crates),
        s.reconciled,
    );
    report.count("jobs_created", "loader Jobs created", s.jobs_created);
    report.count(
        "statuses_changed",
        "crate statuses changed",
        s.statuses_changed,
    );
    report.number("reconcile_errors", "reconcile errors", s.reconcile_errors);
    let shown: Vec<String> = (s.percentiles.iter())
        .map(|(p, v)| match v {
            Some(v) => format!("p{p} ≤ {v} s"),
            None => format!("p{p} n/a"),
        })
        .collect();
    report.add(
        "reconcile_duration_percentiles",
        "reconcile duration (histogram bucket bound)",
        json!(
            s.percentiles
                .iter()
                .map(|(p, v)| (format!("p{p}"), *v))
                .collect::<std::collections::BTreeMap<_, _>>()
        ),
        shown.join(", "),
    );
    requests(report, &s.requests, s.reconciled, Some(s.crates));
    report.mib(
        "peak_rss_mib",
        "peak RSS (VmHWM) when all were reconciled",
        s.reconciled_stats.peak_rss_kib,
    );
    report.mib(
        "rss_mib",
        "RSS (VmRSS) when all were reconciled",
        s.reconciled_stats.rss_kib,
    );
    report.mib(
        "settled_rss_mib",
        "RSS (VmRSS) after the settling pause",
        s.settled_stats.rss_kib,
    );
    report.time("manager_cpu_secs", "manager CPU time", s.settled_stats.cpu);
    let t = &s.turnover;
    report.count(
        "turnover_jobs",
        "then every seeded Job deleted and created again",
        t.jobs,
    );
    report.time("turnover_secs", "  took", t.took);
    report.count(
        "turnover_jobs_created",
        "  loader Jobs created",
        t.jobs_created,
    );
    report.count(
        "turnover_statuses_changed",
        "  crate statuses changed (a re-created Job shows as running until its status is written)",
        t.statuses_changed,
    );
    report.number(
        "turnover_reconcile_errors",
        "  reconcile errors",
        t.reconcile_errors,
    );
    report.mib(
        "turnover_rss_mib",
        "  RSS (VmRSS) after it and the settling pause",
        t.stats.rss_kib,
    );
    report.mib(
        "turnover_peak_rss_mib",
        "  peak RSS (VmHWM) by then",
        t.stats.peak_rss_kib,
    );
}

fn health(report: &mut Report, r: &Results) {
    report.section("health", "Manager health");
    report.number(
        "first_reconcile_errors",
        "first manager: reconcile errors",
        r.steady.reconcile_errors,
    );
    report.number(
        "restarted_reconcile_errors",
        "restarted manager: reconcile errors",
        r.resume.reconcile_errors,
    );
    for (who, log) in ["first", "restarted", "at_scale", "standby"]
        .iter()
        .zip(&r.logs)
    {
        let samples = if log.samples.is_empty() {
            String::new()
        } else {
            format!(": {}", log.samples.join("; "))
        };
        report.add(
            &format!("{who}_manager_log"),
            &format!("{who} manager: WARN / ERROR log lines"),
            json!({"warn": log.warnings, "error": log.errors, "samples": log.samples, "path": log.path}),
            format!("{} / {}{samples}", log.warnings, log.errors),
        );
    }
}

/// The rows of the manager's API requests over `window` (and per crate when given).
pub fn requests(report: &mut Report, requests: &Requests, window: Duration, crates: Option<usize>) {
    let rpm = per_minute(requests.total, window);
    report.add(
        "requests",
        "manager API requests",
        requests.total,
        requests.total.to_string(),
    );
    report.add("requests_per_min", "  per minute", rpm, rpm.to_string());
    if let Some(crates) = crates {
        #[allow(clippy::cast_precision_loss)]
        let per_crate = round(requests.total as f64 / crates.max(1) as f64, 1);
        report.add(
            "requests_per_crate",
            "  per crate",
            per_crate,
            per_crate.to_string(),
        );
    }
    let by_verb = requests.by_verb();
    report.add(
        "requests_by_verb",
        "  by verb",
        json!(by_verb),
        listing(&by_verb),
    );
    report.add(
        "requests_by_kind",
        "  by verb and resource",
        json!(requests.by_kind),
        listing(&requests.by_kind),
    );
    report.add(
        "error_responses",
        "  error responses by code",
        json!(requests.errors),
        listing(&requests.errors),
    );
    if !requests.errors_by_kind.is_empty() {
        report.add(
            "error_responses_by_kind",
            "  error responses by code, verb and resource",
            json!(requests.errors_by_kind),
            listing(&requests.errors_by_kind),
        );
    }
}

fn listing<K: std::fmt::Display>(counts: &std::collections::BTreeMap<K, usize>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Results, grouped in sections, in the order they were added.
#[derive(Default)]
pub struct Report {
    rows: Vec<(String, String)>,
    json: Map<String, Value>,
    section: String,
}

impl Report {
    /// Starts a section: `key` in the JSON, `title` in the table.
    pub fn section(&mut self, key: &str, title: &str) {
        key.clone_into(&mut self.section);
        self.json.insert(key.to_owned(), Value::Object(Map::new()));
        self.rows.push((format!("**{title}**"), String::new()));
    }

    /// One result: `value` under `key` in the JSON, shown as `shown` in the table.
    pub fn add(
        &mut self,
        key: &str,
        label: &str,
        value: impl Into<Value>,
        shown: impl Into<String>,
    ) {
        if let Some(Value::Object(section)) = self.json.get_mut(&self.section) {
            section.insert(key.to_owned(), value.into());
        }
        self.rows.push((label.to_owned(), shown.into()));
    }

    /// A count.
    pub fn count(&mut self, key: &str, label: &str, n: usize) {
        self.add(key, label, n, n.to_string());
    }

    /// A number.
    pub fn number(&mut self, key: &str, label: &str, value: f64) {
        self.add(key, label, value, value.to_string());
    }

    /// A text.
    pub fn text(&mut self, key: &str, label: &str, text: &str) {
        self.add(key, label, text, text);
    }

    /// A memory size given in KiB, in MiB.
    pub fn mib(&mut self, key: &str, label: &str, kib: u64) {
        self.add(key, label, kib_to_mib(kib), mib(kib));
    }

    /// A duration, in seconds.
    pub fn time(&mut self, key: &str, label: &str, took: Duration) {
        self.add(key, label, round(took.as_secs_f64(), 2), seconds(took));
    }

    /// The table, Markdown.
    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut out = format!(
            "| {:width$} | value |\n|{}|-------|\n",
            "metric",
            "-".repeat(width + 2)
        );
        for (label, value) in &self.rows {
            let _ = writeln!(out, "| {label:width$} | {value} |");
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&Value::Object(self.json.clone()))?;
        std::fs::write(path, text + "\n")
    }
}

pub fn seconds(took: Duration) -> String {
    format!("{:.1} s", took.as_secs_f64())
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// KiB as MiB, one decimal.
fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib_to_mib(kib))
}

#[allow(clippy::cast_precision_loss)] // memory sizes are far below 2^52 KiB
fn kib_to_mib(kib: u64) -> f64 {
    round(kib as f64 / 1024.0, 1)
}

/// `n` per minute over `window`.
#[allow(clippy::cast_precision_loss)] // request counts are far below 2^52
fn per_minute(n: usize, window: Duration) -> f64 {
    round(n as f64 * 60.0 / window.as_secs_f64().max(f64::EPSILON), 1)
}

/// `n` per second over `window`.
#[allow(clippy::cast_precision_loss)]
fn per_second(n: usize, window: Duration) -> f64 {
    round(n as f64 / window.as_secs_f64().max(f64::EPSILON), 2)
}
