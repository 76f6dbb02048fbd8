//! The load request: everything the manager tells a loader Job, as one typed value that becomes
//! the main container's arguments ([`LoadRequest::to_args`]).
//!
//! The manager builds one from a crate (its spec checked by [`crate::rules`]) and its own
//! configuration; the loader parses the arguments back with its command line (`crate-loader
//! load`), whose values go through the same rules. A test in the loader parses
//! [`LoadRequest::to_args`] and expects every field back, so the two sides cannot drift apart
//! on a flag's name or form.

use std::path::PathBuf;
use std::time::Duration;

/// The in-Job load of one crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRequest {
    /// `spec.repo.url` as written (the loader parses it with [`crate::repo_url::RepoUrl`]).
    pub repo: String,
    pub branch: String,
    pub path: String,
    pub crate_name: String,
    pub crate_namespace: String,
    pub crate_uid: String,
    /// The commit loaded last time: the loader stops before fetching when nothing changed.
    pub last_commit: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// Where the crate's Secret is mounted, when it has one.
    pub credentials_dir: Option<PathBuf>,
    pub work_dir: PathBuf,
    pub timeout: Duration,
    /// `text` or `json`.
    pub log_format: &'static str,
    pub termination_message_path: PathBuf,
    pub limits: RequestLimits,
    pub allow_insecure_transport: bool,
}

/// Budgets passed only when set, so the loader's own defaults stay the one source of truth
/// otherwise; the memory budget always follows the container's limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_memory_bytes: u64,
    pub max_transfer_bytes: Option<u64>,
    pub max_objects: Option<u64>,
    pub max_file_bytes: Option<u64>,
    pub max_json_depth: Option<u32>,
}

/// A whole-second duration as the loader reads it: `5m`, `2h`, `90s`.
fn duration(d: Duration) -> String {
    match d.as_secs() {
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl LoadRequest {
    /// The main container's arguments. Values use the `--flag=value` form so a value starting
    /// with `-` (a free-text description, say) can never be read as a flag. No field holds a
    /// secret, so none can end up in the Pod spec.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec!["load".to_owned()];
        let mut flag = |name: &str, value: &str| args.push(format!("--{name}={value}"));
        flag("repo", &self.repo);
        flag("branch", &self.branch);
        flag("path", &self.path);
        flag("crate-name", &self.crate_name);
        flag("crate-namespace", &self.crate_namespace);
        flag("crate-uid", &self.crate_uid);
        for (name, value) in [
            ("last-commit", &self.last_commit),
            ("display-name", &self.display_name),
            ("description", &self.description),
        ] {
            if let Some(value) = value {
                flag(name, value);
            }
        }
        if let Some(dir) = &self.credentials_dir {
            flag("credentials-dir", &dir.display().to_string());
        }
        flag("work-dir", &self.work_dir.display().to_string());
        flag("timeout", &duration(self.timeout));
        flag("log-format", self.log_format);
        flag(
            "termination-message-path",
            &self.termination_message_path.display().to_string(),
        );
        let limits = &self.limits;
        flag("max-memory-bytes", &limits.max_memory_bytes.to_string());
        for (name, value) in [
            ("max-transfer-bytes", limits.max_transfer_bytes),
            ("max-objects", limits.max_objects),
            ("max-file-bytes", limits.max_file_bytes),
            ("max-json-depth", limits.max_json_depth.map(u64::from)),
        ] {
            if let Some(value) = value {
                flag(name, &value.to_string());
            }
        }
        if self.allow_insecure_transport {
            args.push("--allow-insecure-transport".to_owned());
        }
        args
    }
}
