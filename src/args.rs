//! Command line of `crate-operator run`: clap argument groups flattened into [`RunArgs`], each
//! flag with a `CRATE_OPERATOR_*` environment fallback, turned into the controller's
//! [`Settings`].

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::Args;

use crate::controller::Settings;
use crate::job::{JobConfig, LogFormat, byte_quantity};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub controller: ControllerArgs,
    #[command(flatten)]
    pub loader: LoaderArgs,
    #[command(flatten)]
    pub election: ElectionArgs,
    /// Address of the /livez, /readyz and /metrics endpoints.
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        env = "CRATE_OPERATOR_LISTEN_ADDR"
    )]
    pub listen_addr: SocketAddr,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format on stderr (also used by the loader Jobs).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CRATE_OPERATOR_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, default_value = "info", env = "CRATE_OPERATOR_LOG")]
    pub log_level: String,
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CRATE_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Most loader Jobs running at once, over all namespaces (at least 1).
    #[arg(long, default_value_t = 10, value_parser = at_least_one, env = "CRATE_OPERATOR_MAX_RUNNING_LOADS")]
    pub max_running_loads: usize,
    /// Most loader Jobs running at once in one namespace (at least 1).
    #[arg(
        long,
        default_value_t = 2,
        value_parser = at_least_one,
        env = "CRATE_OPERATOR_MAX_RUNNING_LOADS_PER_NAMESPACE"
    )]
    pub max_running_loads_per_namespace: usize,
    /// Most crates reconciled at once (at least 1). Each reconcile makes a few API requests, so
    /// this bounds how many the manager has in flight when thousands of crates need a look at
    /// once (at a start, or after a resync of its watches).
    #[arg(
        long,
        default_value_t = 8,
        value_parser = at_least_one,
        env = "CRATE_OPERATOR_MAX_CONCURRENT_RECONCILES"
    )]
    pub max_concurrent_reconciles: usize,
    /// Most API requests the controller sends per second (at least 1): a ceiling that keeps a
    /// start with thousands of crates from crowding the apiserver. Lease renewals do not count
    /// against it.
    #[arg(long, default_value = "100", env = "CRATE_OPERATOR_API_QPS")]
    pub api_qps: NonZeroU32,
    /// The administrator provides the loader's ServiceAccount, Role, RoleBinding and
    /// NetworkPolicy in each crate namespace; the manager does not apply them.
    #[arg(long, env = "CRATE_OPERATOR_EXTERNAL_LOADER_RBAC")]
    pub external_loader_rbac: bool,
}

#[derive(Debug, Args)]
pub struct LoaderArgs {
    /// Image holding /usr/local/bin/crate-loader (the Job's init container copies it).
    #[arg(long, env = "CRATE_OPERATOR_LOADER_IMAGE")]
    pub loader_image: String,
    /// Image the copied loader runs in (any image with glibc; default: the loader image).
    #[arg(long, env = "CRATE_OPERATOR_RUNNER_IMAGE")]
    pub runner_image: Option<String>,
    /// imagePullPolicy of the loader containers.
    #[arg(long, env = "CRATE_OPERATOR_LOADER_IMAGE_PULL_POLICY")]
    pub loader_image_pull_policy: Option<String>,
    /// Allow http:// and git:// repositories (testing only).
    #[arg(long, env = "CRATE_OPERATOR_ALLOW_INSECURE_TRANSPORT")]
    pub allow_insecure_transport: bool,
    /// The loader's own time limit (its --timeout).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, env = "CRATE_OPERATOR_LOADER_TIMEOUT")]
    pub loader_timeout: Duration,
    /// activeDeadlineSeconds of a loader Job (must exceed --loader-timeout).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration, env = "CRATE_OPERATOR_LOADER_DEADLINE")]
    pub loader_deadline: Duration,
    /// How long finished loader Jobs (and their logs) are kept.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, env = "CRATE_OPERATOR_LOADER_TTL")]
    pub loader_ttl: Duration,
    /// CPU request and limit of the loader container.
    #[arg(
        long,
        default_value = "100m",
        env = "CRATE_OPERATOR_LOADER_CPU_REQUEST"
    )]
    pub loader_cpu_request: String,
    #[arg(long, default_value = "1", env = "CRATE_OPERATOR_LOADER_CPU_LIMIT")]
    pub loader_cpu_limit: String,
    /// Memory request and limit of the loader container.
    #[arg(
        long,
        default_value = "128Mi",
        env = "CRATE_OPERATOR_LOADER_MEMORY_REQUEST"
    )]
    pub loader_memory_request: String,
    #[arg(
        long,
        default_value = "512Mi",
        env = "CRATE_OPERATOR_LOADER_MEMORY_LIMIT"
    )]
    pub loader_memory_limit: String,
    /// Most bytes one load may receive from the git server (the loader's --max-transfer-bytes,
    /// 1Mi to 1Ti; 512Mi when not given). A server that filters objects sends kilobytes; one without
    /// filters, or an ssh server that drops GIT_PROTOCOL, sends the whole branch tip, so raise
    /// this for larger repositories there. The loader's work volume is sized to twice it and
    /// its ephemeral-storage limit to match.
    #[arg(long, value_parser = byte_quantity, env = "CRATE_OPERATOR_LOADER_MAX_TRANSFER")]
    pub loader_max_transfer: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ElectionArgs {
    /// Elect one active replica through a Lease (turn off only for a single replica).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "CRATE_OPERATOR_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(
        long,
        default_value = "crate-operator",
        env = "CRATE_OPERATOR_LEASE_NAME"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (the manager's own).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease (its Pod name).
    #[arg(long, env = "POD_NAME")]
    pub lease_holder: Option<String>,
    /// How long a Lease stays valid without renewal (at least 3s): a standby takes over at most
    /// this long (plus a fifth) after the leader crashed; a leader that could not renew stops
    /// writing a third of it before.
    #[arg(long, default_value = "15s", value_parser = lease_duration, env = "CRATE_OPERATOR_LEASE_DURATION")]
    pub lease_duration: Duration,
}

/// A cap of 0 would start nothing, ever, and say nothing about it.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("0 would never start a load; give at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Below 3 s the renewals (every third of it) would crowd out everything else.
fn lease_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d < Duration::from_secs(3) => {
            Err("a Lease shorter than 3s would be renewed more often than once a second".to_owned())
        }
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

impl RunArgs {
    /// The controller settings these flags describe.
    pub fn settings(&self) -> Settings {
        let loader = &self.loader;
        let mut job = JobConfig {
            loader_image: loader.loader_image.clone(),
            runner_image: loader.runner_image.clone(),
            image_pull_policy: loader.loader_image_pull_policy.clone(),
            allow_insecure_transport: loader.allow_insecure_transport,
            loader_timeout: loader.loader_timeout,
            active_deadline: loader.loader_deadline,
            ttl_after_finished: loader.loader_ttl,
            log_format: self.log.log_format,
            ..JobConfig::default()
        };
        job.main_resources
            .cpu_request
            .clone_from(&loader.loader_cpu_request);
        job.main_resources
            .cpu_limit
            .clone_from(&loader.loader_cpu_limit);
        job.main_resources
            .memory_request
            .clone_from(&loader.loader_memory_request);
        job.main_resources
            .memory_limit
            .clone_from(&loader.loader_memory_limit);
        if let Some(bytes) = loader.loader_max_transfer {
            job.set_max_transfer(bytes);
        }
        Settings {
            job,
            manage_loader_namespaces: !self.controller.external_loader_rbac,
            max_running: self.controller.max_running_loads,
            max_running_per_namespace: self.controller.max_running_loads_per_namespace,
            max_concurrent_reconciles: self.controller.max_concurrent_reconciles,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_of_zero_are_refused_at_start() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").is_err_and(|e| e.contains("never start a load")));
        assert!(at_least_one("-1").is_err());
    }

    #[test]
    fn a_transfer_budget_is_a_size_from_one_mebibyte_to_one_tebibyte() {
        assert_eq!(byte_quantity("2Gi"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(byte_quantity("1048576"), Ok(1024 * 1024));
        assert!(byte_quantity("0").is_err_and(|e| e.contains("from 1Mi to 1Ti")));
        assert!(byte_quantity("2Ti").is_err());
        assert!(byte_quantity("1.5").is_err());
        assert!(byte_quantity("lots").is_err_and(|e| e.contains("such as 512Mi")));
    }

    #[test]
    fn a_lease_shorter_than_three_seconds_is_refused_at_start() {
        assert_eq!(lease_duration("8s"), Ok(Duration::from_secs(8)));
        assert!(lease_duration("2s").is_err_and(|e| e.contains("shorter than 3s")));
        assert!(lease_duration("soon").is_err());
    }
}
