//! Logging as both binaries set it up: the `--log-format` values (the manager also passes its
//! own to the loader Jobs) and the subscriber writing to stderr. Behind the `cli` feature, so
//! the API types alone pull in neither clap nor tracing-subscriber.

use std::str::FromStr;

/// Log format on stderr (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, for `kubectl logs`.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The flag value that selects this format.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// A `--log-format` value that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of text, json")]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [LogFormat::Text, LogFormat::Json]
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownLogFormat(s.to_owned()))
    }
}

/// Installs the process's logger: `format` on stderr, filtered by `filter` (tracing `EnvFilter`
/// syntax; `info` when it does not parse). `targets` shows each event's module in text, which
/// helps in the manager's many modules and is noise in the loader's logs read per crate.
pub fn init(format: LogFormat, filter: &str, targets: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_target(targets).init(),
    }
}
