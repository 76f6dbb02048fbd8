//! The loader Job: one throw-away, unprivileged, resource-capped Pod per crate load (see
//! `ARCHITECTURE.md`).
//!
//! Where this sits in the flow: observe → decide → **act** → report. When the controller has
//! decided a crate needs loading, its "act" step calls [`build`] and creates the result (a
//! conflict on the deterministic [`job_name`] means another replica or an earlier attempt already
//! did). The builder is pure: no client and no I/O, so every hardening rule is a unit test.
//!
//! Shape of the Pod: the init container `install-loader` runs `crate-loader copy-to` into the
//! `loader-bin` emptyDir (the binary copies itself, so no shell is needed in any image); the main
//! container `load` runs that copy with `load …`. Only `load` sees the credentials and the
//! service-account token. Its JSON result comes back as the termination message; permanent exit
//! codes fail the Job at once through the `podFailurePolicy`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate_operator_api::AnalyticsCrate;
use crate_operator_api::contract::{LABEL_CRATE, Outcome};
use crate_operator_api::repo_url::{RepoUrl, RepoUrlError, Scheme};
use crate_operator_api::request::{LoadRequest, RequestLimits};
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{KeyToPath, PodTemplateSpec, SecretVolumeSource, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource as _;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::loader_namespace::{InvalidConfig, loader_labels};

mod config;
mod pod;

pub use config::{
    ContainerResources, JobConfig, LoaderLimits, LogFormat, VolumeSizes, byte_quantity,
};
use config::{is_secret_key, seconds};

/// The main container, named in the `podFailurePolicy` and read back for the termination message.
pub const CONTAINER_NAME: &str = "load";
/// The init container that installs the loader binary.
pub const INIT_CONTAINER_NAME: &str = "install-loader";

/// Annotation on the Job and its Pod: what caused this load (opaque, from the controller).
pub const ANNOTATION_TRIGGER: &str = "xlscsde.nhs.uk/load-trigger";
/// Annotation on the Job and its Pod: the crate's `metadata.generation` the Job was built from.
pub const ANNOTATION_CRATE_GENERATION: &str = "xlscsde.nhs.uk/crate-generation";

/// Where the init container puts the loader and the main container runs it from.
pub const BIN_DIR: &str = "/opt/crate-loader";
/// The copied loader binary.
pub const LOADER_PATH: &str = "/opt/crate-loader/crate-loader";
/// The loader's work area (its temporary bare repository).
pub const WORK_DIR: &str = "/work";
/// Scratch space for libraries that insist on `/tmp` (the root filesystem is read-only).
pub const TMP_DIR: &str = "/tmp";
/// Where the crate's Secret is mounted; passed as `--credentials-dir`.
pub const CREDENTIALS_DIR: &str = "/etc/crate-loader/credentials";
/// Where kube's in-cluster configuration looks for the token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The kubelet reads the loader's JSON result from here.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Volume names.
pub const VOLUME_LOADER_BIN: &str = "loader-bin";
pub const VOLUME_WORK: &str = "work";
pub const VOLUME_TMP: &str = "tmp";
pub const VOLUME_CREDENTIALS: &str = "credentials";
pub const VOLUME_KUBE_API_ACCESS: &str = "kube-api-access";

/// User and group of every container: the conventional "nonroot" id of distroless images, so
/// file ownership inside such images lines up.
pub const NON_ROOT_ID: i64 = 65532;
/// Mode of the mounted credential and token files: owner and group read, as `fsGroup` makes the
/// group ours. Nobody else, and never writable or executable.
pub const SECRET_FILE_MODE: i32 = 0o440;
/// The API server refuses projected tokens that live shorter than this.
pub const MIN_TOKEN_EXPIRATION_SECONDS: i64 = 600;

use crate_operator_api::contract::DEFAULT_MAX_TRANSFER_BYTES as LOADER_DEFAULT_MAX_TRANSFER_BYTES;
use crate_operator_api::contract::credential_files::{
    IDENTITY as IDENTITY_FILE, KNOWN_HOSTS as KNOWN_HOSTS_FILE, TOKEN as TOKEN_FILE,
};
/// Shorter than this, the manager may not see a finished Job (and nobody its logs) before it goes.
const MIN_TTL: Duration = Duration::from_secs(60);
/// How many hex digits of the hash end a generated name: 40 bits, no realistic collision among
/// one crate's loads.
const NAME_HASH_LEN: usize = 10;
/// Longest Job name: the Job controller copies it into a label value on each Pod.
const MAX_NAME_LEN: usize = 63;

/// Why no Job could be built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum JobError {
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    #[error(
        "failed to build the loader Job for AnalyticsCrate {crate_ref}: it has no {field}; build Jobs only from crates read from the API server"
    )]
    MissingField {
        crate_ref: String,
        field: &'static str,
    },
    #[error(
        "failed to build the loader Job for AnalyticsCrate {crate_ref}: spec.repo.url: {source}"
    )]
    InvalidUrl {
        crate_ref: String,
        source: RepoUrlError,
    },
    #[error("failed to build the loader Job for AnalyticsCrate {crate_ref}: {field} {reason}")]
    InvalidSpec {
        crate_ref: String,
        field: &'static str,
        reason: String,
    },
    #[error("failed to build the loader Job for AnalyticsCrate {crate_ref}: the trigger is empty")]
    EmptyTrigger { crate_ref: String },
}

/// The Job's name: the crate's name (made a DNS-1123 label and shortened) plus 10 hex digits of
/// SHA-256 over the crate's UID, the trigger and the crate's last load time (`since`, in
/// seconds; `None` before the first load). The same crate, trigger and status always give the
/// same name, so a second replica or a retried reconcile hits "already exists" instead of
/// starting a duplicate load; and since every finished load moves the last load time on, no
/// later load can be given the name of an earlier Job still kept for its logs. At most 63
/// characters because the Job controller copies it into a label.
pub fn job_name(crate_name: &str, crate_uid: &str, trigger: &str, since: Option<i64>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(crate_uid.as_bytes());
    // A separator no UID or trigger contains keeps ("ab", "c") and ("a", "bc") apart.
    hasher.update([0]);
    hasher.update(trigger.as_bytes());
    if let Some(since) = since {
        hasher.update([0]);
        hasher.update(since.to_string().as_bytes());
    }
    // sha2's digests print as lower-case hex.
    let mut hash = format!("{:x}", hasher.finalize());
    hash.truncate(NAME_HASH_LEN);
    let cleaned: String = crate_name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(MAX_NAME_LEN - NAME_HASH_LEN - 1)
        .collect();
    let prefix = cleaned.trim_matches('-');
    let prefix = if prefix.is_empty() { "crate" } else { prefix };
    format!("{prefix}-{hash}")
}

/// When the crate's last load finished, in seconds: what makes each load's Job name new.
pub fn last_load_second(ac: &AnalyticsCrate) -> Option<i64> {
    ac.status
        .as_ref()?
        .last_load_time
        .as_ref()
        .map(|t| t.0.as_second())
}

/// The value of the [`LABEL_CRATE`] label for a crate: its name, or for names longer than a label
/// value may be (63), a shortened name plus a hash of the full one.
pub fn crate_label_value(crate_name: &str) -> String {
    crate_operator_api::contract::crate_label_value(crate_name)
}

/// Label selector for one crate's loader Jobs and Pods, e.g. for
/// `kubectl logs -n <ns> -l <selector>`.
pub fn selector_for(crate_name: &str) -> String {
    format!(
        "{}={},{LABEL_CRATE}={}",
        crate::loader_namespace::LABEL_APP_NAME,
        crate::loader_namespace::LOADER_APP_NAME,
        crate_label_value(crate_name)
    )
}

/// Builds the loader Job for one load of `ac`. `trigger` names what caused the load and decides
/// the Job's name; `last_commit` lets the loader stop early when nothing changed.
pub fn build(
    ac: &AnalyticsCrate,
    trigger: &str,
    last_commit: Option<&str>,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    cfg.validate()?;
    let meta = &ac.metadata;
    let name = meta.name.as_deref().unwrap_or_default();
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let crate_ref = format!("{namespace}/{name}");
    let missing = |field| JobError::MissingField {
        crate_ref: crate_ref.clone(),
        field,
    };
    if name.is_empty() {
        return Err(missing("metadata.name"));
    }
    if namespace.is_empty() {
        return Err(missing("metadata.namespace"));
    }
    let uid = meta
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing("metadata.uid"))?;
    if trigger.is_empty() {
        return Err(JobError::EmptyTrigger { crate_ref });
    }
    // The loader's own parser and transport policy: a URL it would refuse (one with a password,
    // which anyone who can read Jobs would see, or an unencrypted one the operator was not
    // started to allow) never makes a Job.
    let url = RepoUrl::parse_with_policy(&ac.spec.repo.url, cfg.allow_insecure_transport).map_err(
        |source| JobError::InvalidUrl {
            crate_ref: crate_ref.clone(),
            source,
        },
    )?;
    let credentials = credentials_volume(ac, &url, cfg, &crate_ref)?;

    let mut labels = loader_labels();
    labels.insert(LABEL_CRATE.to_owned(), crate_label_value(name));
    let mut annotations = BTreeMap::from([(ANNOTATION_TRIGGER.to_owned(), trigger.to_owned())]);
    if let Some(generation) = meta.generation {
        annotations.insert(
            ANNOTATION_CRATE_GENERATION.to_owned(),
            generation.to_string(),
        );
    }
    let owner = OwnerReference {
        api_version: AnalyticsCrate::api_version(&()).into_owned(),
        kind: AnalyticsCrate::kind(&()).into_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };

    let args = load_args(
        ac,
        name,
        namespace,
        uid,
        last_commit,
        credentials.is_some(),
        cfg,
    );
    let pod = pod::pod_spec(cfg, args, credentials);

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(name, uid, trigger, last_load_second(ac))),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(cfg.backoff_limit),
            active_deadline_seconds: Some(seconds(
                "active_deadline",
                cfg.active_deadline,
                Duration::from_secs(1),
            )?),
            ttl_seconds_after_finished: Some(seconds(
                "ttl_after_finished",
                cfg.ttl_after_finished,
                MIN_TTL,
            )?),
            pod_failure_policy: Some(pod_failure_policy()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// The main container's exit code when it was killed by SIGKILL (128 + 9).
const KILLED_EXIT_CODE: i32 = 137;

/// Permanent loader failures fail the Job at once (retrying cannot help until something
/// changes), and so does a loader killed outright or a Pod lost to a disruption; retrying those
/// inside the Job would repeat them until the deadline. A SIGKILL comes from the kernel's OOM
/// killer (the container's memory limit), from the kubelet evicting the Pod for going over a
/// volume's `sizeLimit` or its ephemeral-storage limit (such an eviction carries no
/// `DisruptionTarget` condition: a real kubelet showed it), or at the end of a drain's grace
/// period. A drain or a node-pressure eviction is marked `DisruptionTarget`. The manager reads
/// the Pod to tell them apart (`observe`): a limit is permanent, a drain or preemption is
/// retried with the usual backoff.
fn pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".to_owned(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER_NAME.to_owned()),
                    operator: "In".to_owned(),
                    values: Outcome::permanent_exit_codes()
                        .into_iter()
                        .chain([KILLED_EXIT_CODE])
                        .collect(),
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "FailJob".to_owned(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".to_owned(),
                    status: "True".to_owned(),
                }]),
            },
        ],
    }
}

/// The main container's arguments: the [`LoadRequest`] for this crate and configuration.
fn load_args(
    ac: &AnalyticsCrate,
    name: &str,
    namespace: &str,
    uid: &str,
    last_commit: Option<&str>,
    with_credentials: bool,
    cfg: &JobConfig,
) -> Vec<String> {
    let spec = &ac.spec;
    LoadRequest {
        repo: spec.repo.url.clone(),
        branch: spec.repo.branch.clone(),
        path: spec.path.clone(),
        crate_name: name.to_owned(),
        crate_namespace: namespace.to_owned(),
        crate_uid: uid.to_owned(),
        last_commit: last_commit.map(str::to_owned),
        display_name: spec.display_name.clone(),
        description: spec.description.clone(),
        credentials_dir: with_credentials.then(|| CREDENTIALS_DIR.into()),
        work_dir: WORK_DIR.into(),
        timeout: cfg.loader_timeout,
        log_format: cfg.log_format.as_str(),
        // Explicit, so the flag and the container's terminationMessagePath cannot disagree.
        termination_message_path: TERMINATION_MESSAGE_PATH.into(),
        limits: RequestLimits {
            max_memory_bytes: cfg.fetch_memory_bytes(),
            max_transfer_bytes: cfg.limits.max_transfer_bytes,
            max_objects: cfg.limits.max_objects,
            max_file_bytes: cfg.limits.max_file_bytes,
            max_json_depth: cfg.limits.max_json_depth,
        },
        allow_insecure_transport: cfg.allow_insecure_transport,
    }
    .to_args()
}

/// The crate's Secret as a volume holding only the keys the loader reads, under the file names
/// it expects; `None` for public repositories.
fn credentials_volume(
    ac: &AnalyticsCrate,
    url: &RepoUrl,
    cfg: &JobConfig,
    crate_ref: &str,
) -> Result<Option<Volume>, JobError> {
    let repo = &ac.spec.repo;
    let Some(secret_name) = &repo.secret_name else {
        return Ok(None);
    };
    let invalid = |field, reason: String| JobError::InvalidSpec {
        crate_ref: crate_ref.to_owned(),
        field,
        reason,
    };
    if !crate::loader_namespace::is_dns_subdomain(secret_name) {
        return Err(invalid(
            "spec.repo.secretName",
            format!("{secret_name:?} is not a valid Secret name"),
        ));
    }
    if !is_secret_key(&repo.secret_key) {
        return Err(invalid(
            "spec.repo.secretKey",
            format!(
                "{:?} is not a valid Secret key (letters, digits, '-', '_' and '.')",
                repo.secret_key
            ),
        ));
    }
    let item = |key: &str, path: &str| KeyToPath {
        key: key.to_owned(),
        path: path.to_owned(),
        mode: None,
    };
    let items = if url.scheme() == Scheme::Ssh {
        if repo.secret_key == cfg.known_hosts_key {
            return Err(invalid(
                "spec.repo.secretKey",
                format!(
                    "{:?} is the key the operator reads known_hosts from; put the ssh private key under another key",
                    repo.secret_key
                ),
            ));
        }
        vec![
            item(&repo.secret_key, IDENTITY_FILE),
            item(&cfg.known_hosts_key, KNOWN_HOSTS_FILE),
        ]
    } else {
        vec![item(&repo.secret_key, TOKEN_FILE)]
    };
    Ok(Some(Volume {
        name: VOLUME_CREDENTIALS.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name.clone()),
            items: Some(items),
            default_mode: Some(SECRET_FILE_MODE),
            // A missing Secret or key must stop the Pod from starting, not silently load as
            // anonymous.
            optional: Some(false),
        }),
        ..Volume::default()
    }))
}

#[cfg(test)]
mod tests;
