//! Command-line interface of `crate-loader` (clap derive).
//!
//! The in-Job flags all have `CRATE_LOADER_*` environment fallbacks. None of them carries a
//! secret: credentials only ever come from files in `--credentials-dir`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::fetch::FetchLimits;
use crate::rocrate::Limits;

/// Fetch an RO-Crate from git, validate it and render or apply its AnalyticsDataSource.
#[derive(Debug, Parser)]
#[command(name = "crate-loader", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch a crate and print the AnalyticsDataSource that would be applied (no cluster needed).
    ///
    /// Exits 0 only when the crate is valid; warnings go to stderr.
    Preview(Box<PreviewArgs>),
    /// Validate a local RO-Crate metadata file and report every error and warning.
    Validate(ValidateArgs),
    /// Copy this executable to PATH with mode 0555 (the loader Job's init container).
    CopyTo {
        /// Destination file, or a directory to copy `crate-loader` into.
        path: PathBuf,
    },
    /// Fetch, validate and server-side-apply the AnalyticsDataSource (the loader Job's main
    /// container). Writes a JSON result to the termination-message path.
    ///
    /// Exit codes: 0 loaded or up to date; 10 invalid crate; 11 authentication failed;
    /// 12 repository, branch or file not found; 13 limit exceeded; 14 invalid request (URL,
    /// transport, path, host key); 15 datasource conflict — all permanent. 20 fetch failed;
    /// 21 apply failed; 22 timed out; 23 internal error — transient. 2 is a usage error.
    Load(Box<LoadArgs>),
    /// Internal: the memory-capped child process `preview` and `load` run the fetch in.
    #[command(hide = true)]
    FetchWorker(Box<WorkerArgs>),
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CRATE_LOADER_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info` or `crate_loader=debug`).
    #[arg(long, global = true, default_value = "info", env = "CRATE_LOADER_LOG")]
    pub log_level: String,
}

pub use crate_operator_api::logging::LogFormat;

/// Where the crate lives and how to fetch it (shared by `preview` and `load`).
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Repository URL (https:// or ssh://; git:// and http:// need --allow-insecure-transport;
    /// `preview` also takes a local path).
    #[arg(long, env = "CRATE_LOADER_REPO")]
    pub repo: String,
    /// Branch to load.
    #[arg(long, default_value = "main", env = "CRATE_LOADER_BRANCH")]
    pub branch: String,
    /// Path of the metadata file in the repository (a leading / is the repository root).
    #[arg(
        long,
        default_value = "/ro-crate-metadata.json",
        env = "CRATE_LOADER_PATH"
    )]
    pub path: String,
    /// Directory holding credential files: `token` (https), `identity` and `known_hosts` (ssh),
    /// optionally `username`.
    #[arg(long, env = "CRATE_LOADER_CREDENTIALS_DIR")]
    pub credentials_dir: Option<PathBuf>,
    /// Username sent with the https token when neither the URL nor the credentials name one.
    #[arg(long, default_value = "pat", env = "CRATE_LOADER_USERNAME")]
    pub username: String,
    /// Allow unencrypted git:// and http:// (local testing only).
    #[arg(long, env = "CRATE_LOADER_ALLOW_INSECURE_TRANSPORT")]
    pub allow_insecure_transport: bool,
    /// Give up after this long, whatever is happening (e.g. `90s`, `5m`; at most 24h).
    #[arg(long, default_value = "5m", value_parser = parse_timeout, env = "CRATE_LOADER_TIMEOUT")]
    pub timeout: Duration,
    /// Directory for the temporary bare repository (default: the system temp directory).
    #[arg(long, env = "CRATE_LOADER_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Display name used when the crate's root entity has none (spec.displayName).
    #[arg(long, env = "CRATE_LOADER_DISPLAY_NAME")]
    pub display_name: Option<String>,
    /// Description used when the crate's root entity has none (spec.description).
    #[arg(long, env = "CRATE_LOADER_DESCRIPTION")]
    pub description: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Longest accepted `--timeout`: a load is minutes; a typo (`5000h`) should not look like one.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err("give a duration between 1s and 24h".to_owned());
    }
    Ok(timeout)
}

/// Budgets for hostile or runaway repositories.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Abort the fetch after receiving this many bytes (everything the server sends: ref
    /// listing, HTTP headers, negotiation and pack).
    #[arg(long, default_value_t = FetchLimits::default().max_transfer_bytes, env = "CRATE_LOADER_MAX_TRANSFER_BYTES")]
    pub max_transfer_bytes: u64,
    /// Abort the fetch when the branch tip has more objects than this.
    #[arg(long, default_value_t = FetchLimits::default().max_objects, env = "CRATE_LOADER_MAX_OBJECTS")]
    pub max_objects: u64,
    /// Largest accepted metadata file, in bytes.
    #[arg(long, default_value_t = FetchLimits::default().max_file_bytes, env = "CRATE_LOADER_MAX_FILE_BYTES")]
    pub max_file_bytes: u64,
    /// Deepest accepted JSON nesting in the metadata file.
    #[arg(long, default_value_t = Limits::default().max_depth, env = "CRATE_LOADER_MAX_JSON_DEPTH")]
    pub max_json_depth: usize,
    /// Memory the fetch may use, in bytes: the fetch runs in a child process that cannot
    /// allocate more (the container's memory limit must leave room for the loader above it).
    #[arg(long, default_value_t = FetchLimits::default().max_memory_bytes, value_parser = clap::value_parser!(u64).range(16 * 1024 * 1024..), env = "CRATE_LOADER_MAX_MEMORY_BYTES")]
    pub max_memory_bytes: u64,
}

impl LimitArgs {
    pub fn fetch(&self) -> FetchLimits {
        FetchLimits {
            max_transfer_bytes: self.max_transfer_bytes,
            max_objects: self.max_objects,
            max_file_bytes: self.max_file_bytes,
            max_memory_bytes: self.max_memory_bytes,
        }
    }
    pub fn json(&self) -> Limits {
        Limits {
            max_bytes: usize::try_from(self.max_file_bytes).unwrap_or(usize::MAX),
            max_depth: self.max_json_depth,
        }
    }
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Name of the rendered datasource (default: derived from the repository name).
    #[arg(long)]
    pub name: Option<String>,
    /// Output format of the datasource on stdout.
    #[arg(long, short, value_enum, default_value_t = Output::Yaml)]
    pub output: Output,
    /// Stop after listing the branch head when it equals this commit (prints nothing on
    /// stdout, fetches no objects): the same check `load` makes before fetching.
    #[arg(long)]
    pub last_commit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// A metadata file, or a directory containing `ro-crate-metadata.json`.
    pub path: PathBuf,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Largest accepted metadata file, in bytes.
    #[arg(long, default_value_t = FetchLimits::default().max_file_bytes)]
    pub max_file_bytes: u64,
    /// Deepest accepted JSON nesting.
    #[arg(long, default_value_t = Limits::default().max_depth)]
    pub max_json_depth: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Name of the AnalyticsCrate (and of the datasource).
    #[arg(long, env = "CRATE_LOADER_CRATE_NAME")]
    pub crate_name: String,
    /// Namespace of the AnalyticsCrate (and of the datasource).
    #[arg(long, env = "CRATE_LOADER_CRATE_NAMESPACE")]
    pub crate_namespace: String,
    /// UID of the AnalyticsCrate, for the datasource's owner reference.
    #[arg(long, env = "CRATE_LOADER_CRATE_UID")]
    pub crate_uid: String,
    /// Commit loaded last time; when the branch head and the load inputs are unchanged the
    /// loader stops before fetching any object.
    #[arg(long, env = "CRATE_LOADER_LAST_COMMIT")]
    pub last_commit: Option<String>,
    /// Where the JSON result goes (the kubelet reads it back as the termination message).
    #[arg(
        long,
        default_value = "/dev/termination-log",
        env = "CRATE_LOADER_TERMINATION_MESSAGE_PATH"
    )]
    pub termination_message_path: PathBuf,
}

/// What the fetch worker gets from its parent: the same source flags, and whether to stop at an
/// unchanged head. Never given by people.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Stop after listing when the branch head is this commit.
    #[arg(long)]
    pub last_commit: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn load_reads_its_flags_from_arguments() {
        let cli = Cli::try_parse_from([
            "crate-loader",
            "load",
            "--repo",
            "https://example.org/r.git",
            "--crate-name",
            "demo",
            "--crate-namespace",
            "sde",
            "--crate-uid",
            "u1",
            "--timeout",
            "90s",
            "--path",
            "/bagit/data/ro-crate-metadata.json",
        ])
        .expect("parses");
        let Command::Load(args) = cli.command else {
            panic!("not load")
        };
        assert_eq!(args.source.timeout, Duration::from_secs(90));
        assert_eq!(args.source.branch, "main");
        assert_eq!(args.source.username, "pat");
        assert_eq!(
            args.termination_message_path,
            PathBuf::from("/dev/termination-log")
        );
    }

    #[test]
    fn an_absurd_timeout_is_a_usage_error_not_a_panic() {
        for timeout in ["500000000000y", "0s", "25h"] {
            let err = Cli::try_parse_from([
                "crate-loader",
                "preview",
                "--repo",
                "x",
                "--timeout",
                timeout,
            ])
            .expect_err(timeout);
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{timeout}: {err}"
            );
        }
    }

    #[test]
    fn every_field_of_the_managers_load_request_parses_back() {
        use crate_operator_api::request::{LoadRequest, RequestLimits};
        let request = LoadRequest {
            repo: "https://git.example.org/sde/crate.git".into(),
            branch: "release/2024".into(),
            path: "/bagit/data/ro-crate-metadata.json".into(),
            crate_name: "demo".into(),
            crate_namespace: "sde".into(),
            crate_uid: "u-1".into(),
            last_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            display_name: Some("Demo".into()),
            description: Some("--starts with dashes".into()),
            credentials_dir: Some("/etc/crate-loader/credentials".into()),
            work_dir: "/work".into(),
            timeout: Duration::from_secs(90),
            log_format: "json",
            termination_message_path: "/dev/termination-log".into(),
            limits: RequestLimits {
                max_memory_bytes: 256 * 1024 * 1024,
                max_transfer_bytes: Some(1_000_000),
                max_objects: Some(1000),
                max_file_bytes: Some(65536),
                max_json_depth: Some(16),
            },
            allow_insecure_transport: true,
        };
        let command_line = std::iter::once("crate-loader".to_owned()).chain(request.to_args());
        let cli =
            Cli::try_parse_from(command_line).expect("the loader parses the manager's arguments");
        assert_eq!(cli.log.log_format, LogFormat::Json);
        let Command::Load(args) = cli.command else {
            panic!("not load")
        };
        let s = &args.source;
        assert_eq!(
            (s.repo.as_str(), s.branch.as_str(), s.path.as_str()),
            (
                request.repo.as_str(),
                request.branch.as_str(),
                request.path.as_str()
            )
        );
        assert_eq!(
            (&args.crate_name, &args.crate_namespace, &args.crate_uid),
            (
                &request.crate_name,
                &request.crate_namespace,
                &request.crate_uid
            )
        );
        assert_eq!(args.last_commit, request.last_commit);
        assert_eq!(s.display_name, request.display_name);
        assert_eq!(s.description, request.description);
        assert_eq!(s.credentials_dir, request.credentials_dir);
        assert_eq!(s.work_dir.as_ref(), Some(&request.work_dir));
        assert_eq!(s.timeout, request.timeout);
        assert_eq!(
            args.termination_message_path,
            request.termination_message_path
        );
        assert!(s.allow_insecure_transport);
        let l = &s.limits;
        assert_eq!(
            (
                l.max_memory_bytes,
                Some(l.max_transfer_bytes),
                Some(l.max_objects)
            ),
            (
                request.limits.max_memory_bytes,
                request.limits.max_transfer_bytes,
                request.limits.max_objects
            )
        );
        assert_eq!(Some(l.max_file_bytes), request.limits.max_file_bytes);
        assert_eq!(
            u32::try_from(l.max_json_depth).ok(),
            request.limits.max_json_depth
        );
    }
}
