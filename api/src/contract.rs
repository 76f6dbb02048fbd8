//! The contract between the manager and the loader Job (`ARCHITECTURE.md`): the names both
//! sides use on objects, and the result summary the loader leaves in its termination message.
//!
//! The manager maps [`Outcome`]s to status conditions and to the Job's `podFailurePolicy`
//! (permanent exit codes fail the Job at once; transient ones are retried), so every outcome has
//! exactly one exit code and the codes never change meaning.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Label on a crate-made datasource naming its crate (upstream).
pub const LABEL_CRATE: &str = "xlscsde.nhs.uk/crate";
/// Label on a crate-made datasource naming its crate's namespace (upstream).
pub const LABEL_CRATE_NAMESPACE: &str = "xlscsde.nhs.uk/crateNamespace";

/// The value of [`LABEL_CRATE`] (and of the loader Jobs' crate label) for a crate: its name, or,
/// for a name longer than a label value may be (63), a prefix plus a hash of the whole name.
pub fn crate_label_value(crate_name: &str) -> String {
    const MAX: usize = 63;
    const HASH: usize = 10;
    if crate_name.len() <= MAX {
        return crate_name.to_owned();
    }
    // sha2's digests print as lower-case hex; the first HASH digits are enough to tell apart.
    let mut hash = format!("{:x}", Sha256::digest(crate_name.as_bytes()));
    hash.truncate(HASH);
    let prefix: String = crate_name.chars().take(MAX - HASH - 1).collect();
    format!("{}-{hash}", prefix.trim_end_matches(['-', '.']))
}

/// Files the loader reads from `--credentials-dir`; the manager mounts the crate Secret's keys
/// under these names.
pub mod credential_files {
    /// The https access token (sent as the password).
    pub const TOKEN: &str = "token";
    /// Optional https user name.
    pub const USERNAME: &str = "username";
    /// The ssh private key.
    pub const IDENTITY: &str = "identity";
    /// The ssh host keys (OpenSSH `known_hosts` format); required for ssh.
    pub const KNOWN_HOSTS: &str = "known_hosts";
}

/// The loader's default budget for bytes received in one fetch (`--max-transfer-bytes`); the
/// Job's work area must hold this much.
pub const DEFAULT_MAX_TRANSFER_BYTES: u64 = 512 * 1024 * 1024;

/// The loader's default memory budget for one fetch (`--max-memory-bytes`), enforced on its fetch
/// worker process; the loader container's memory limit must leave room above it for the loader
/// itself.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 384 * 1024 * 1024;

/// Annotation: repository URL the datasource was loaded from, credentials stripped.
pub const ANNOTATION_SOURCE_URL: &str = "xlscsde.nhs.uk/source-url";
/// Annotation: `<branch>@sha1:<commit>` that was loaded.
pub const ANNOTATION_REVISION: &str = "xlscsde.nhs.uk/revision";
/// Annotation: path of the metadata file inside the repository.
pub const ANNOTATION_METADATA_PATH: &str = "xlscsde.nhs.uk/metadata-path";
/// Annotation: digest of everything besides the commit that shapes the datasource, so the
/// loader can tell "nothing changed" without fetching objects.
pub const ANNOTATION_LOAD_INPUTS: &str = "xlscsde.nhs.uk/load-inputs";

/// Annotation on a crate: set or change its value (e.g. to the current time) to force a reload.
pub const ANNOTATION_RELOAD_REQUESTED_AT: &str = "xlscsde.nhs.uk/reload-requested-at";

/// The one field manager the loader uses for server-side apply of datasources.
pub const LOADER_FIELD_MANAGER: &str = "crate-loader";

/// Largest termination message the kubelet keeps.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// Formats the revision string used in annotations and status: `<branch>@sha1:<commit>`.
pub fn revision(branch: &str, commit: &str) -> String {
    format!("{branch}@sha1:{commit}")
}

/// How a load ended. Each variant has a fixed exit code and a fixed permanence.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The datasource was applied from a new commit or changed inputs.
    Loaded,
    /// The branch head and the load inputs were unchanged; nothing was fetched or applied.
    UpToDate,
    /// The metadata is not a valid RO-Crate (see the message and the loader log).
    InvalidCrate,
    /// The repository rejected the credentials, or the credentials are missing or unusable.
    AuthenticationFailed,
    /// The repository, branch or metadata file does not exist.
    NotFound,
    /// A size, object-count or nesting limit was exceeded, or the path is a symlink or gitlink.
    LimitExceeded,
    /// The request itself is unusable: bad URL, refused transport, bad path, unknown host key.
    InvalidRequest,
    /// A datasource of that name exists and was not made for this crate.
    Conflict,
    /// The repository could not be reached or the transfer broke off; retrying may help.
    FetchFailed,
    /// The Kubernetes API refused or failed the apply; retrying may help.
    ApplyFailed,
    /// The overall time limit ran out; retrying may help.
    TimedOut,
    /// A bug or an environment problem inside the loader.
    Internal,
}

impl Outcome {
    /// Every outcome, for documentation and exhaustive tests.
    pub const ALL: [Outcome; 12] = [
        Outcome::Loaded,
        Outcome::UpToDate,
        Outcome::InvalidCrate,
        Outcome::AuthenticationFailed,
        Outcome::NotFound,
        Outcome::LimitExceeded,
        Outcome::InvalidRequest,
        Outcome::Conflict,
        Outcome::FetchFailed,
        Outcome::ApplyFailed,
        Outcome::TimedOut,
        Outcome::Internal,
    ];

    /// Process exit code. 0 is success; 10–19 are permanent (retrying cannot help until the
    /// crate, its repository or its Secret change); 20–29 are transient. 2 stays clap's usage error.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Loaded | Outcome::UpToDate => 0,
            Outcome::InvalidCrate => 10,
            Outcome::AuthenticationFailed => 11,
            Outcome::NotFound => 12,
            Outcome::LimitExceeded => 13,
            Outcome::InvalidRequest => 14,
            Outcome::Conflict => 15,
            Outcome::FetchFailed => 20,
            Outcome::ApplyFailed => 21,
            Outcome::TimedOut => 22,
            Outcome::Internal => 23,
        }
    }

    /// The outcome an exit code stands for, if it is one of ours.
    pub fn from_exit_code(code: i32) -> Option<Outcome> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.exit_code() == code && code != 0)
    }

    /// The outcome's name (`AuthenticationFailed`): the variant name, as serialised in the
    /// result and used as the crate's condition reason. The derived `Debug` prints exactly
    /// that, so no table repeats the names.
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    /// Whether retrying without a change to the crate, repository or Secret is pointless.
    pub fn is_permanent(self) -> bool {
        (10..20).contains(&self.exit_code())
    }

    /// Whether the load succeeded.
    pub fn is_success(self) -> bool {
        self.exit_code() == 0
    }

    /// The exit codes that mean a permanent failure, for the Job's `podFailurePolicy`.
    pub fn permanent_exit_codes() -> Vec<i32> {
        Outcome::ALL
            .into_iter()
            .filter(|o| o.is_permanent())
            .map(Outcome::exit_code)
            .collect()
    }
}

/// How the loader got the metadata file from the repository.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum FetchMode {
    /// The branch tip's commit and trees, then the one blob at the path (protocol v2 with
    /// `filter blob:none`): the repository's other files never left the server.
    Partial,
    /// Every object of the branch tip (depth 1): the server offers no object filter, or does
    /// not speak git protocol v2.
    Full,
    /// Read in place from a repository on this machine (`preview` only).
    Local,
}

/// The summary the loader writes to its termination message and prints with `--output json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadResult {
    pub outcome: Outcome,
    /// The commit the branch pointed at, when it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// `<branch>@sha1:<commit>`, when the commit was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Name of the datasource applied or checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasource: Option<String>,
    /// How the metadata file was fetched, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchMode>,
    /// Number of RO-Crate validation warnings.
    #[serde(default)]
    pub warnings: u32,
    /// One human sentence: what happened, and on failure what to change.
    pub message: String,
}

impl LoadResult {
    /// Serialises the result so it fits the kubelet's termination-message limit, shortening the
    /// message (never the structured fields) when it would not.
    pub fn to_termination_message(&self) -> String {
        let mut result = self.clone();
        loop {
            let json = serde_json::to_string(&result).unwrap_or_else(|_| {
                r#"{"outcome":"Internal","warnings":0,"message":"failed to encode the result"}"#
                    .to_owned()
            });
            if json.len() <= TERMINATION_MESSAGE_LIMIT || result.message.is_empty() {
                return json;
            }
            let excess = json.len() - TERMINATION_MESSAGE_LIMIT;
            // Escaping can make the JSON longer than the message; cut generously and retry.
            let keep = result.message.len().saturating_sub(excess + 8);
            let mut cut = keep;
            while !result.message.is_char_boundary(cut) {
                cut -= 1;
            }
            result.message.truncate(cut);
            result.message.push('…');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for o in Outcome::ALL {
            if o.is_success() {
                continue;
            }
            assert!(seen.insert(o.exit_code()), "{o:?} reuses an exit code");
            assert_eq!(Outcome::from_exit_code(o.exit_code()), Some(o));
        }
        assert_eq!(Outcome::from_exit_code(0), None);
        assert_eq!(Outcome::from_exit_code(2), None, "2 is clap's usage error");
    }

    #[test]
    fn an_outcome_is_named_as_it_is_serialised() {
        for o in Outcome::ALL {
            assert_eq!(serde_json::to_value(o).ok(), Some(o.name().into()));
        }
        assert_eq!(Outcome::AuthenticationFailed.name(), "AuthenticationFailed");
    }

    #[test]
    fn permanent_failures_are_the_ones_retrying_cannot_fix() {
        assert_eq!(
            Outcome::permanent_exit_codes(),
            vec![10, 11, 12, 13, 14, 15]
        );
        assert!(!Outcome::FetchFailed.is_permanent());
        assert!(!Outcome::TimedOut.is_permanent());
    }

    #[test]
    fn crate_label_values_are_valid_label_values_and_distinct_for_long_names() {
        assert_eq!(crate_label_value("demo"), "demo");
        let long_a = format!("{}a", "x".repeat(100));
        let long_b = format!("{}b", "x".repeat(100));
        let (a, b) = (crate_label_value(&long_a), crate_label_value(&long_b));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(a, crate_label_value(&long_a));
    }

    #[test]
    fn a_huge_message_is_shortened_to_fit_the_termination_message() {
        let result = LoadResult {
            outcome: Outcome::InvalidCrate,
            commit: Some("a".repeat(40)),
            revision: Some(revision("main", &"a".repeat(40))),
            datasource: Some("demo".into()),
            fetch: None,
            warnings: 3,
            message: "\"é\n".repeat(5000),
        };
        let json = result.to_termination_message();
        assert!(
            json.len() <= TERMINATION_MESSAGE_LIMIT,
            "{} bytes",
            json.len()
        );
        let back: LoadResult = serde_json::from_str(&json).expect("still valid JSON");
        assert_eq!(back.commit, result.commit);
        assert_eq!(back.warnings, 3);
        assert!(back.message.ends_with('…'));
    }
}
