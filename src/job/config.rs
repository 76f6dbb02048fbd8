//! The loader Job's configuration: every knob with its default, and the checks that keep the
//! knobs consistent with each other (deadlines, token lifetime, storage that covers the emptyDirs).
//!
//! The manager builds one [`JobConfig`] from its flags at start-up and calls
//! [`JobConfig::validate`] there, so a bad setting stops the manager instead of failing every
//! Job; [`super::build`] validates again because it is cheap and keeps the builder total.

use std::time::Duration;

use super::{
    KNOWN_HOSTS_FILE, LOADER_DEFAULT_MAX_TRANSFER_BYTES, MIN_TOKEN_EXPIRATION_SECONDS, MIN_TTL,
};
use crate::loader_namespace::{InvalidConfig, LoaderNamespaceConfig, is_dns_subdomain};

/// Log format of the loader (`--log-format`): the manager's own.
pub use crate_operator_api::logging::LogFormat;

/// Requests and limits of one container, as Kubernetes quantities (`100m`, `512Mi`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerResources {
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
    pub ephemeral_storage_request: String,
    pub ephemeral_storage_limit: String,
}

/// Size limits of the Pod's emptyDirs. They count towards the Pod's ephemeral storage, so the
/// main container's `ephemeral_storage_limit` must cover their sum (checked by
/// [`JobConfig::validate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSizes {
    /// The copied loader binary.
    pub loader_bin: String,
    /// The temporary bare repository: must hold the loader's transfer budget.
    pub work: String,
    /// `/tmp`.
    pub tmp: String,
}

/// Loader budgets passed as flags only when set, so the loader's own defaults stay the single
/// source of truth otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoaderLimits {
    pub max_transfer_bytes: Option<u64>,
    pub max_objects: Option<u64>,
    pub max_file_bytes: Option<u64>,
    pub max_json_depth: Option<u32>,
}

/// Every knob of the loader Job. [`JobConfig::default`] is what the manager runs with unless told
/// otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobConfig {
    /// Image holding the loader binary (the init container's image).
    pub loader_image: String,
    /// Path of the loader binary inside [`Self::loader_image`].
    pub loader_binary: String,
    /// Image the main container runs the copied binary in; `None` means [`Self::loader_image`].
    /// It must provide what the binary links against (libc, OpenSSL, CA certificates).
    pub runner_image: Option<String>,
    /// `Always`, `IfNotPresent` or `Never`; `None` leaves the cluster default.
    pub image_pull_policy: Option<String>,
    pub priority_class_name: Option<String>,
    /// Names of the per-namespace objects, the ServiceAccount among them (shared with
    /// [`crate::loader_namespace`]).
    pub namespace_resources: LoaderNamespaceConfig,
    /// Key of the crate's Secret holding `known_hosts` for ssh crates.
    pub known_hosts_key: String,
    /// Lifetime of the projected service-account token (the API minimum is 600).
    pub token_expiration_seconds: i64,
    /// The loader's own overall time limit (`--timeout`).
    pub loader_timeout: Duration,
    /// The Job's `activeDeadlineSeconds`, covering all attempts; must exceed the loader timeout.
    pub active_deadline: Duration,
    /// The Job's `ttlSecondsAfterFinished`.
    pub ttl_after_finished: Duration,
    /// The Job's `backoffLimit` (transient failures only; permanent ones fail at once).
    pub backoff_limit: i32,
    pub log_format: LogFormat,
    /// Pass `--allow-insecure-transport` (local clusters and tests only).
    pub allow_insecure_transport: bool,
    pub limits: LoaderLimits,
    pub volume_sizes: VolumeSizes,
    pub init_resources: ContainerResources,
    pub main_resources: ContainerResources,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            // The loader version must match the manager's contract, so pin it to ours.
            loader_image: concat!("ghcr.io/lsc-sde/crate-loader:", env!("CARGO_PKG_VERSION"))
                .to_owned(),
            loader_binary: "/usr/local/bin/crate-loader".to_owned(),
            runner_image: None,
            image_pull_policy: None,
            priority_class_name: None,
            namespace_resources: LoaderNamespaceConfig::default(),
            known_hosts_key: KNOWN_HOSTS_FILE.to_owned(),
            token_expiration_seconds: MIN_TOKEN_EXPIRATION_SECONDS,
            loader_timeout: Duration::from_secs(5 * 60),
            active_deadline: Duration::from_secs(10 * 60),
            ttl_after_finished: Duration::from_secs(60 * 60),
            backoff_limit: 2,
            log_format: LogFormat::Text,
            allow_insecure_transport: false,
            limits: LoaderLimits::default(),
            volume_sizes: VolumeSizes {
                loader_bin: "64Mi".to_owned(),
                work: "1Gi".to_owned(),
                tmp: "64Mi".to_owned(),
            },
            init_resources: ContainerResources {
                cpu_request: "10m".to_owned(),
                cpu_limit: "200m".to_owned(),
                memory_request: "16Mi".to_owned(),
                memory_limit: "64Mi".to_owned(),
                ephemeral_storage_request: "16Mi".to_owned(),
                ephemeral_storage_limit: "64Mi".to_owned(),
            },
            main_resources: ContainerResources {
                cpu_request: "100m".to_owned(),
                cpu_limit: "1".to_owned(),
                memory_request: "128Mi".to_owned(),
                memory_limit: "512Mi".to_owned(),
                ephemeral_storage_request: "128Mi".to_owned(),
                // loader-bin 64Mi + work 1Gi + tmp 64Mi = 1152Mi, plus logs.
                ephemeral_storage_limit: "1280Mi".to_owned(),
            },
        }
    }
}

/// Ephemeral storage the loader container needs beside its work volume: the copied binary's and
/// `/tmp`'s emptyDirs (64Mi each) and its logs (128Mi), as the defaults count it.
const STORAGE_BESIDE_WORK: u64 = 256 * 1024 * 1024;

impl JobConfig {
    /// Sets the loader's transfer budget (`--max-transfer-bytes`) and sizes the storage that
    /// holds what it lets in: the work volume at twice the budget (the pack, its index, and room
    /// as the defaults give: 1Gi for 512Mi), and the main container's ephemeral-storage limit to
    /// cover it.
    pub fn set_max_transfer(&mut self, max_transfer_bytes: u64) {
        self.limits.max_transfer_bytes = Some(max_transfer_bytes);
        let work = max_transfer_bytes.saturating_mul(2);
        self.volume_sizes.work = work.to_string();
        self.main_resources.ephemeral_storage_limit =
            work.saturating_add(STORAGE_BESIDE_WORK).to_string();
    }

    /// The ServiceAccount loader Pods run as.
    pub fn service_account(&self) -> &str {
        &self.namespace_resources.service_account
    }

    /// The fetch worker's memory budget (the loader's `--max-memory-bytes`): the main
    /// container's memory limit less [`LOADER_OWN_MEMORY`], so the container is never OOM-killed
    /// for what a server sends; the loader reports `LimitExceeded` instead.
    pub fn fetch_memory_bytes(&self) -> u64 {
        quantity("main_resources", &self.main_resources.memory_limit)
            .map_or(0, bytes)
            .saturating_sub(LOADER_OWN_MEMORY)
    }

    /// The image of the main container.
    pub fn runner_image(&self) -> &str {
        self.runner_image.as_deref().unwrap_or(&self.loader_image)
    }

    /// Checks the configuration once, so a bad flag stops the manager at start-up instead of
    /// failing every Job.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.namespace_resources.validate()?;
        for (field, image) in [
            ("loader_image", Some(&self.loader_image)),
            ("runner_image", self.runner_image.as_ref()),
        ] {
            if let Some(image) = image
                && (image.is_empty() || image.contains(char::is_whitespace))
            {
                return Err(InvalidConfig::new(
                    field,
                    format!("{image:?} is not an image reference"),
                ));
            }
        }
        if !self.loader_binary.starts_with('/') {
            return Err(InvalidConfig::new(
                "loader_binary",
                format!(
                    "{:?} must be an absolute path: no shell resolves it",
                    self.loader_binary
                ),
            ));
        }
        if let Some(policy) = &self.image_pull_policy
            && !["Always", "IfNotPresent", "Never"].contains(&policy.as_str())
        {
            return Err(InvalidConfig::new(
                "image_pull_policy",
                format!("{policy:?} is not one of Always, IfNotPresent, Never"),
            ));
        }
        if let Some(class) = &self.priority_class_name
            && !is_dns_subdomain(class)
        {
            return Err(InvalidConfig::new(
                "priority_class_name",
                format!("{class:?} is not a valid object name"),
            ));
        }
        if !is_secret_key(&self.known_hosts_key) {
            return Err(InvalidConfig::new(
                "known_hosts_key",
                format!("{:?} is not a valid Secret key", self.known_hosts_key),
            ));
        }
        if !(MIN_TOKEN_EXPIRATION_SECONDS..=i64::from(u32::MAX))
            .contains(&self.token_expiration_seconds)
        {
            return Err(InvalidConfig::new(
                "token_expiration_seconds",
                format!(
                    "{} is outside what the API server accepts (600 to 4294967295)",
                    self.token_expiration_seconds
                ),
            ));
        }
        self.validate_times()?;
        if let Some((field, _)) = [
            ("limits.max_transfer_bytes", self.limits.max_transfer_bytes),
            ("limits.max_objects", self.limits.max_objects),
            ("limits.max_file_bytes", self.limits.max_file_bytes),
            (
                "limits.max_json_depth",
                self.limits.max_json_depth.map(u64::from),
            ),
        ]
        .into_iter()
        .find(|(_, v)| *v == Some(0))
        {
            return Err(InvalidConfig::new(
                field,
                "is 0, which would refuse every crate",
            ));
        }
        self.validate_resources()
    }

    fn validate_times(&self) -> Result<(), InvalidConfig> {
        seconds::<i64>(
            "loader_timeout",
            self.loader_timeout,
            Duration::from_secs(1),
        )?;
        seconds::<i64>(
            "active_deadline",
            self.active_deadline,
            Duration::from_secs(1),
        )?;
        seconds::<i32>("ttl_after_finished", self.ttl_after_finished, MIN_TTL)?;
        if self.active_deadline <= self.loader_timeout {
            return Err(InvalidConfig::new(
                "active_deadline",
                format!(
                    "({}) must be longer than loader_timeout ({}) so the loader can report a time-out itself",
                    humantime::format_duration(self.active_deadline),
                    humantime::format_duration(self.loader_timeout)
                ),
            ));
        }
        if self.backoff_limit < 0 {
            return Err(InvalidConfig::new("backoff_limit", "must not be negative"));
        }
        Ok(())
    }

    fn validate_resources(&self) -> Result<(), InvalidConfig> {
        for (prefix, r) in [
            ("init_resources", &self.init_resources),
            ("main_resources", &self.main_resources),
        ] {
            for (resource, request, limit) in [
                ("cpu", &r.cpu_request, &r.cpu_limit),
                ("memory", &r.memory_request, &r.memory_limit),
                (
                    "ephemeral_storage",
                    &r.ephemeral_storage_request,
                    &r.ephemeral_storage_limit,
                ),
            ] {
                let request = quantity(prefix, request)?;
                let limit = quantity(prefix, limit)?;
                if request <= 0.0 || request > limit {
                    return Err(InvalidConfig::new(
                        prefix,
                        format!("{resource}: the request must be above 0 and at most the limit"),
                    ));
                }
            }
        }
        let sizes = &self.volume_sizes;
        let bin = quantity("volume_sizes.loader_bin", &sizes.loader_bin)?;
        let work = quantity("volume_sizes.work", &sizes.work)?;
        let tmp = quantity("volume_sizes.tmp", &sizes.tmp)?;
        if bin <= 0.0 || work <= 0.0 || tmp <= 0.0 {
            return Err(InvalidConfig::new(
                "volume_sizes",
                "every size must be above 0",
            ));
        }
        let transfer = self
            .limits
            .max_transfer_bytes
            .unwrap_or(LOADER_DEFAULT_MAX_TRANSFER_BYTES);
        // The fetched pack lands in the work area; a full emptyDir gets the Pod evicted, which
        // reads as a transient failure instead of the loader's clear LimitExceeded.
        if work < approximate(transfer) {
            return Err(InvalidConfig::new(
                "volume_sizes.work",
                format!(
                    "({}) must hold the loader's transfer budget of {transfer} bytes",
                    sizes.work
                ),
            ));
        }
        // emptyDirs are charged to the Pod's ephemeral storage, whose limit is the sum of the
        // app containers' limits (init containers run before and do not add up).
        let main_limit = quantity(
            "main_resources",
            &self.main_resources.ephemeral_storage_limit,
        )?;
        let memory = quantity("main_resources", &self.main_resources.memory_limit)?;
        if memory < approximate(LOADER_OWN_MEMORY + MIN_FETCH_MEMORY) {
            return Err(InvalidConfig::new(
                "main_resources",
                "memory_limit must be at least 192Mi: the loader keeps 128Mi for itself and gives \
                 the rest (at least 64Mi) to its fetch",
            ));
        }
        if main_limit < bin + work + tmp {
            return Err(InvalidConfig::new(
                "main_resources",
                "ephemeral_storage_limit must cover the emptyDirs (loader_bin + work + tmp)",
            ));
        }
        Ok(())
    }
}

/// Memory the loader process needs beside its fetch worker: the Kubernetes client and the parsed
/// crate (at most about 25× the 4 MiB metadata limit for the worst JSON shapes).
pub const LOADER_OWN_MEMORY: u64 = 128 * 1024 * 1024;
/// The smallest fetch budget the manager will configure.
const MIN_FETCH_MEMORY: u64 = 64 * 1024 * 1024;

/// A parsed quantity as whole bytes.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "quantities are validated positive; fractions of a byte are dropped"
)]
fn bytes(quantity: f64) -> u64 {
    quantity as u64
}

/// Whole seconds of a duration of at least `min` that fits the API field type `T`.
pub(super) fn seconds<T: TryFrom<u64>>(
    field: &'static str,
    d: Duration,
    min: Duration,
) -> Result<T, InvalidConfig> {
    if d < min || d.subsec_nanos() != 0 {
        return Err(InvalidConfig::new(
            field,
            format!(
                "({}) must be whole seconds and at least {}",
                humantime::format_duration(d),
                humantime::format_duration(min)
            ),
        ));
    }
    T::try_from(d.as_secs())
        .map_err(|_| InvalidConfig::new(field, "is too long for the Kubernetes API"))
}

/// A valid key of a Secret's `data`.
pub(super) fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A Kubernetes quantity as a number (cores or bytes). Plain decimals with the binary (`Ki`…`Ei`)
/// and decimal (`m`, `k`…`E`) suffixes; exponent notation is not accepted.
pub(super) fn quantity(field: &'static str, text: &str) -> Result<f64, InvalidConfig> {
    let invalid = || {
        InvalidConfig::new(
            field,
            format!("{text:?} is not a quantity such as 100m or 512Mi"),
        )
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let multiplier = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Pi" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Ei" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(invalid()),
    };
    Ok(number * multiplier)
}

/// A size flag (`512Mi`, `2Gi`, `1073741824`) in bytes, from 1Mi to 1Ti (the chart's schema
/// accepts a subset of this).
pub fn byte_quantity(text: &str) -> Result<u64, String> {
    const MI: u64 = 1024 * 1024;
    let size = quantity("size", text)
        .map_err(|_| format!("{text:?} is not a size such as 512Mi or 2Gi"))?;
    if !(approximate(MI)..=approximate(MI * MI)).contains(&size) || size.fract() != 0.0 {
        return Err(format!(
            "{text:?} must be a whole number of bytes from 1Mi to 1Ti"
        ));
    }
    Ok(bytes(size))
}

/// A byte count as a float, for comparing with parsed quantities (exact below 2^53 bytes).
#[expect(
    clippy::cast_precision_loss,
    reason = "a size comparison, not arithmetic"
)]
fn approximate(bytes: u64) -> f64 {
    bytes as f64
}
