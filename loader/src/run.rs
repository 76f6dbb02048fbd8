//! The loader's three flows, composed from the pipeline steps:
//! `preview` (fetch → validate → render), `load` (inspect → fetch → validate → render → apply)
//! and `validate` (a local file → report).
//!
//! Every failure becomes a [`Failure`] carrying one [`Outcome`] and one message that says what
//! to change; `main` turns it into output, the termination message and the exit code.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate_operator_api::AnalyticsDataSource;
use crate_operator_api::contract::{LoadResult, Outcome, revision};
use kube::Api;
use tracing::{info, warn};

use crate::apply::{self, ApplyError};
use crate::cli::{LoadArgs, LogArgs, PreviewArgs, SourceArgs, ValidateArgs};
use crate::credentials::{Credentials, CredentialsError};
use crate::fetch::{FetchError, FetchRequest, Fetched};
use crate::render::{self, CrateRef, Inputs};
use crate::rocrate::{self, Diagnostic, Fallback, Missing, Payload, Report};
use crate::source::{Branch, MetadataPath, Policy, Source, SourceError};
use crate::worker;

/// A failed flow: what kind of failure, what to tell the user, and the validation report when
/// the crate itself was at fault.
#[derive(Debug)]
pub struct Failure {
    pub outcome: Outcome,
    pub message: String,
    pub report: Option<Report>,
}

impl Failure {
    fn new(outcome: Outcome, message: impl Into<String>) -> Failure {
        Failure {
            outcome,
            message: message.into(),
            report: None,
        }
    }
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::new(Outcome::InvalidRequest, e.to_string())
    }
}
impl From<CredentialsError> for Failure {
    fn from(e: CredentialsError) -> Self {
        Failure::new(Outcome::AuthenticationFailed, e.to_string())
    }
}
impl From<FetchError> for Failure {
    fn from(e: FetchError) -> Self {
        Failure::new(e.outcome(), e.to_string())
    }
}
impl From<render::TooLarge> for Failure {
    fn from(e: render::TooLarge) -> Self {
        Failure::new(Outcome::LimitExceeded, e.to_string())
    }
}
impl From<ApplyError> for Failure {
    fn from(e: ApplyError) -> Self {
        Failure::new(e.outcome(), e.to_string())
    }
}

/// The request, checked and ready to fetch.
struct Prepared {
    source: Source,
    path: MetadataPath,
    credentials: Credentials,
    fallback: Fallback,
}

/// Checks the request. Local repositories are for `preview` only: in a Job they would read the
/// Pod's own filesystem.
fn prepare(args: &SourceArgs, allow_local: bool) -> Result<Prepared, Failure> {
    let policy = Policy {
        allow_insecure: args.allow_insecure_transport,
        allow_local,
    };
    Branch::parse(&args.branch).map_err(SourceError::from)?;
    let source = Source::parse(&args.repo, policy)?;
    let path = MetadataPath::parse(&args.path).map_err(SourceError::from)?;
    let credentials = match &args.credentials_dir {
        Some(dir) => Credentials::from_dir(dir)?,
        None => Credentials::default(),
    };
    let fallback = Fallback {
        display_name: args.display_name.clone(),
        description: args.description.clone(),
    };
    Ok(Prepared {
        source,
        path,
        credentials,
        fallback,
    })
}

impl Prepared {
    fn inputs<'a>(&'a self, branch: &'a str, owner: Option<&'a CrateRef>) -> Inputs<'a> {
        Inputs {
            source: &self.source,
            branch,
            path: &self.path,
            fallback: &self.fallback,
            owner,
        }
    }
}

/// Fetches in a worker process (see [`crate::worker`]).
fn fetch_isolated(
    args: &SourceArgs,
    prepared: &Prepared,
    log: &LogArgs,
    deadline: Instant,
    skip_if_head_is: Option<&str>,
) -> Result<Fetched, FetchError> {
    let json = args.limits.json();
    let paths = move |bytes: &[u8]| Some(rocrate::payload_paths(bytes, &json));
    let mut request = fetch_request(args, prepared, deadline, skip_if_head_is);
    // Used when the fetch runs here (a local repository); the worker builds its own.
    request.payload_paths = Some(&paths);
    let isolated = worker::Isolated {
        source: args,
        parsed: &prepared.source,
        last_commit: skip_if_head_is,
        deadline,
        log,
    };
    worker::fetch(&request, &isolated)
}

fn fetch_request<'a>(
    args: &'a SourceArgs,
    prepared: &'a Prepared,
    deadline: Instant,
    skip_if_head_is: Option<&'a str>,
) -> FetchRequest<'a> {
    FetchRequest {
        source: &prepared.source,
        branch: &args.branch,
        path: &prepared.path,
        credentials: &prepared.credentials,
        default_username: &args.username,
        limits: args.limits.fetch(),
        deadline,
        work_dir: args.work_dir.as_deref(),
        skip_if_head_is,
        payload_paths: None,
    }
}

/// Validates and maps fetched bytes, turning a crate with errors into an `InvalidCrate` failure
/// whose message lists the first errors (the full report travels alongside). `missing` are the
/// data entity paths the fetched commit lacks (`None`: presence was not checked).
fn check_crate(
    content: &[u8],
    missing: Option<Vec<String>>,
    args: &SourceArgs,
    prepared: &Prepared,
    rev: &str,
) -> Result<rocrate::Loaded, Failure> {
    let payload = missing.map(|paths| Missing(paths.into_iter().collect()));
    let payload = payload.as_ref().map(|p| p as &dyn Payload);
    rocrate::load(content, &args.limits.json(), &prepared.fallback, payload).map_err(|report| {
        let errors: Vec<String> = report.errors().take(3).map(ToString::to_string).collect();
        let total = report.errors().count();
        let more = if total > errors.len() {
            format!(" (and {} more)", total - errors.len())
        } else {
            String::new()
        };
        Failure {
            outcome: Outcome::InvalidCrate,
            message: format!(
                "failed to validate {} at {rev}: {total} error(s): {}{more}",
                prepared.path,
                errors.join("; ")
            ),
            report: Some(report),
        }
    })
}

/// What `preview` produced.
pub enum Previewed {
    /// The branch head is `--last-commit`: nothing was fetched or rendered.
    Unchanged { revision: String },
    /// A valid crate and its datasource.
    Rendered {
        datasource: Box<AnalyticsDataSource>,
        report: Report,
        revision: String,
    },
}

/// Fetches and validates a crate and renders its datasource, touching no cluster.
pub fn preview(args: &PreviewArgs, log: &LogArgs, deadline: Instant) -> Result<Previewed, Failure> {
    let src = &args.source;
    let prepared = prepare(src, true)?;
    let fetched = fetch_isolated(src, &prepared, log, deadline, args.last_commit.as_deref())?;
    let rev = revision(&src.branch, fetched.commit());
    let (commit, content, missing) = match fetched {
        Fetched::Unchanged { .. } => return Ok(Previewed::Unchanged { revision: rev }),
        Fetched::File {
            commit,
            content,
            missing,
            ..
        } => (commit, content, missing),
    };
    let loaded = check_crate(&content, missing, src, &prepared, &rev)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| name_from_url(&src.repo));
    let inputs = prepared.inputs(&src.branch, None);
    let datasource = Box::new(render::datasource(&name, loaded.spec, &inputs, &commit));
    render::check_size(&datasource)?;
    Ok(Previewed::Rendered {
        datasource,
        report: loaded.report,
        revision: rev,
    })
}

/// The in-Job flow. Never panics into the kubelet: every path ends in a [`LoadResult`].
pub async fn load(args: &LoadArgs, log: &LogArgs, deadline: Instant) -> LoadResult {
    let owner = CrateRef {
        name: args.crate_name.clone(),
        namespace: args.crate_namespace.clone(),
        uid: args.crate_uid.clone(),
    };
    let mut result = LoadResult {
        outcome: Outcome::Internal,
        commit: None,
        revision: None,
        datasource: Some(owner.name.clone()),
        fetch: None,
        warnings: 0,
        message: String::new(),
    };
    match load_steps(args, log, &owner, deadline, &mut result).await {
        Ok(()) => {}
        Err(failure) => {
            if let Some(report) = &failure.report {
                log_report(report);
            }
            result.outcome = failure.outcome;
            result.message = failure.message;
        }
    }
    result
}

async fn load_steps(
    args: &LoadArgs,
    log: &LogArgs,
    owner: &CrateRef,
    deadline: Instant,
    result: &mut LoadResult,
) -> Result<(), Failure> {
    let src = &args.source;
    let prepared = prepare(src, false)?;
    info!(url = %prepared.source, branch = %src.branch, path = %prepared.path, "loading crate");
    let client = kube::Client::try_default().await.map_err(|e| {
        Failure::new(
            Outcome::Internal,
            format!("failed to configure the Kubernetes client: {e}"),
        )
    })?;
    let api: Api<AnalyticsDataSource> = Api::namespaced(client, &owner.namespace);
    let existing = apply::inspect(&api, owner).await?;
    let inputs = prepared.inputs(&src.branch, Some(owner));
    let digest = inputs.digest();
    let skip = args
        .last_commit
        .as_deref()
        .filter(|commit| existing.is_current(&revision(&src.branch, commit), &digest));

    // The worker blocks; the runtime has nothing else to do meanwhile.
    let fetched = fetch_isolated(src, &prepared, log, deadline, skip)?;
    let commit = fetched.commit().to_owned();
    let rev = revision(&src.branch, &commit);
    result.commit = Some(commit.clone());
    result.revision = Some(rev.clone());
    let (content, missing) = match fetched {
        Fetched::Unchanged { .. } => {
            result.outcome = Outcome::UpToDate;
            result.message =
                format!("{rev} is already loaded and nothing else changed; fetched no objects");
            return Ok(());
        }
        Fetched::File {
            content,
            missing,
            mode,
            ..
        } => {
            result.fetch = Some(mode);
            (content, missing)
        }
    };
    info!(revision = %rev, bytes = content.len(), "fetched metadata");
    let loaded = check_crate(&content, missing, src, &prepared, &rev)?;
    log_report(&loaded.report);
    result.warnings = u32::try_from(loaded.report.warnings().count()).unwrap_or(u32::MAX);
    let datasource = render::datasource(&owner.name, loaded.spec, &inputs, &commit);
    render::check_size(&datasource)?;
    if existing == apply::Existing::Adoptable {
        info!(datasource = %owner.name, "adopting the datasource made for this crate by the previous operator");
    }
    apply::apply(&api, owner, &datasource).await?;
    result.outcome = Outcome::Loaded;
    result.message = format!(
        "applied datasource {}/{} from {rev} with {} warning(s)",
        owner.namespace, owner.name, result.warnings
    );
    Ok(())
}

fn log_report(report: &Report) {
    for d in &report.diagnostics {
        let entity = d.entity.as_deref().unwrap_or("");
        let property = d.property.as_deref().unwrap_or("");
        match d.severity {
            rocrate::Severity::Error => tracing::error!(entity, property, "{}", d.message),
            rocrate::Severity::Warning => warn!(entity, property, "{}", d.message),
        }
    }
}

/// The metadata file's name since RO-Crate 1.0, and the name RO-Crate 0.2-DRAFT used.
const METADATA_FILE: &str = "ro-crate-metadata.json";
const DRAFT_METADATA_FILE: &str = "ro-crate-metadata.jsonld";

/// Validates a local metadata file (or `DIR/ro-crate-metadata.json`). The payload is checked in
/// the crate's directory: `DIR`, or the directory of a file whose name ends in
/// `ro-crate-metadata.json` (a detached crate's `NAME-ro-crate-metadata.json` too); any other
/// file name is a metadata file on its own, such as a test fixture, and has no payload to check.
pub fn validate(args: &ValidateArgs) -> Result<(PathBuf, Report), Failure> {
    let (file, draft) = metadata_file(&args.path)?;
    let bytes = read_bounded(&file, args.max_file_bytes)?;
    let limits = rocrate::Limits {
        max_bytes: usize::try_from(args.max_file_bytes).unwrap_or(usize::MAX),
        max_depth: args.max_json_depth,
    };
    let crate_dir = file
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.ends_with(METADATA_FILE) || name == DRAFT_METADATA_FILE)
        .then(|| file.parent().map(Path::to_path_buf))
        .flatten();
    // Any entry counts, a symbolic link included, as it would in a git tree.
    let present = |path: &str| {
        crate_dir
            .as_ref()
            .is_some_and(|dir| dir.join(path).symlink_metadata().is_ok())
    };
    let payload = crate_dir.is_some().then_some(&present as &dyn Payload);
    let mut report = rocrate::validate(&bytes, &limits, payload);
    if draft {
        report.diagnostics.insert(
            0,
            Diagnostic::error(format!(
                "{} has no {METADATA_FILE} but has {DRAFT_METADATA_FILE}, the name RO-Crate \
                 0.2-DRAFT used (validated below); RO-Crate 1.0 and later name the metadata file \
                 {METADATA_FILE}: rename it",
                crate::escape::controls(&args.path.display().to_string())
            )),
        );
    }
    Ok((file, report))
}

/// The metadata file `path` names: itself, or in a directory its `ro-crate-metadata.json`, else
/// (flagged `true`) the 0.2-DRAFT `ro-crate-metadata.jsonld`.
fn metadata_file(path: &Path) -> Result<(PathBuf, bool), Failure> {
    if !path.is_dir() {
        return Ok((path.to_owned(), false));
    }
    let file = path.join(METADATA_FILE);
    if file.exists() {
        return Ok((file, false));
    }
    let draft = path.join(DRAFT_METADATA_FILE);
    if draft.is_file() {
        return Ok((draft, true));
    }
    Err(Failure::new(
        Outcome::NotFound,
        format!(
            "{} is not an RO-Crate: it has no {METADATA_FILE}; give the crate's directory or its \
             metadata file",
            crate::escape::controls(&path.display().to_string())
        ),
    ))
}

/// Reads at most `max + 1` bytes so an enormous file is refused without being read whole; the
/// +1 lets the validator report the size error itself.
fn read_bounded(file: &Path, max: u64) -> Result<Vec<u8>, Failure> {
    use std::io::Read as _;
    let handle = std::fs::File::open(file).map_err(|e| {
        Failure::new(
            Outcome::NotFound,
            format!("failed to open {}: {e}", file.display()),
        )
    })?;
    let mut bytes = Vec::new();
    handle
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Failure::new(
                Outcome::Internal,
                format!("failed to read {}: {e}", file.display()),
            )
        })?;
    Ok(bytes)
}

/// A Kubernetes-style name from the repository URL's last path segment.
fn name_from_url(url: &str) -> String {
    let last = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or_default();
    let base = last
        .strip_suffix(".git")
        .unwrap_or(last)
        .to_ascii_lowercase();
    let name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "preview".to_owned()
    } else {
        name.chars().take(63).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::name_from_url;

    #[test]
    fn preview_names_come_from_the_repository_name() {
        assert_eq!(
            name_from_url("https://github.com/lsc-sde/My_Crate.git"),
            "my-crate"
        );
        assert_eq!(
            name_from_url("git@github.com:org/demo-crate.git"),
            "demo-crate"
        );
        assert_eq!(name_from_url("/tmp/x/"), "x");
        assert_eq!(name_from_url("..."), "preview");
    }
}
