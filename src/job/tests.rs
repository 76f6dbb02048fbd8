use std::collections::BTreeSet;

use crate_operator_api::{AnalyticsCrateSpec, RepoSpec};
use k8s_openapi::api::core::v1::{
    Container, PodSpec, SELinuxOptions, SeccompProfile, SecurityContext,
};

use super::config::quantity;
use super::*;
use crate::loader_namespace::{self, LoaderNamespaceConfig, loader_pod_selector};

const HTTPS_WITH_SECRET: &str = include_str!("../../tests/fixtures/crate-https-secret.yaml");
const SSH: &str = include_str!("../../tests/fixtures/crate-ssh.yaml");
const PUBLIC: &str = include_str!("../../tests/fixtures/crate-public.yaml");

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixture(yaml: &str) -> AnalyticsCrate {
    serde_yaml::from_str(yaml).expect("fixture parses as an AnalyticsCrate")
}

fn fixtures() -> Vec<AnalyticsCrate> {
    vec![fixture(HTTPS_WITH_SECRET), fixture(SSH), fixture(PUBLIC)]
}

/// A crate as read from the API server, for cases the fixtures do not cover.
fn test_crate(url: &str, secret: Option<&str>) -> AnalyticsCrate {
    let mut ac = AnalyticsCrate::new(
        "demo",
        AnalyticsCrateSpec {
            display_name: None,
            description: None,
            path: "/ro-crate-metadata.json".into(),
            repo: RepoSpec {
                url: url.into(),
                branch: "main".into(),
                secret_name: secret.map(str::to_owned),
                secret_key: "TOKEN".into(),
            },
            suspend: None,
            interval: None,
        },
    );
    ac.metadata.namespace = Some("sde".into());
    ac.metadata.uid = Some("11111111-2222-4333-8444-555555555555".into());
    ac.metadata.generation = Some(1);
    ac
}

fn build_default(ac: &AnalyticsCrate) -> Job {
    build(ac, "generation-3", None, &JobConfig::default()).expect("builds")
}

fn pod(job: &Job) -> &PodSpec {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn init(pod: &PodSpec) -> &Container {
    let inits = pod.init_containers.as_deref().expect("init containers");
    assert_eq!(inits.len(), 1);
    &inits[0]
}

fn main(pod: &PodSpec) -> &Container {
    assert_eq!(pod.containers.len(), 1);
    &pod.containers[0]
}

fn containers(pod: &PodSpec) -> Vec<&Container> {
    pod.init_containers
        .iter()
        .flatten()
        .chain(&pod.containers)
        .collect()
}

fn args(job: &Job) -> Vec<String> {
    main(pod(job)).args.clone().expect("args")
}

fn mounts(c: &Container) -> Vec<(String, String, bool)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            (
                m.name.clone(),
                m.mount_path.clone(),
                m.read_only == Some(true),
            )
        })
        .collect()
}

fn volume<'a>(pod: &'a PodSpec, name: &str) -> Option<&'a Volume> {
    pod.volumes.iter().flatten().find(|v| v.name == name)
}

fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Volume types the "restricted" profile allows.
const ALLOWED_VOLUME_TYPES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The Pod Security Standards "restricted" profile (which includes "baseline"), control by
/// control, for the Pod and every container including init and ephemeral ones.
fn assert_restricted(pod: &PodSpec) {
    // Baseline: host namespaces.
    assert_ne!(pod.host_network, Some(true), "hostNetwork");
    assert_ne!(pod.host_pid, Some(true), "hostPID");
    assert_ne!(pod.host_ipc, Some(true), "hostIPC");
    // Restricted: only these volume types (so no hostPath, no in-tree network volumes).
    for v in pod.volumes.iter().flatten() {
        let json = serde_json::to_value(v).expect("volume serialises");
        for key in json.as_object().expect("object").keys() {
            assert!(
                key == "name" || ALLOWED_VOLUME_TYPES.contains(&key.as_str()),
                "volume {} has the disallowed type {key}",
                v.name
            );
        }
    }
    let psc = pod.security_context.clone().unwrap_or_default();
    // Baseline: only safe sysctls; we set none at all.
    assert!(psc.sysctls.as_ref().is_none_or(Vec::is_empty), "sysctls");
    assert_selinux(psc.se_linux_options.as_ref(), "pod");
    assert_ne!(
        psc.app_armor_profile.as_ref().map(|p| p.type_.as_str()),
        Some("Unconfined"),
        "pod AppArmor"
    );
    assert_ne!(
        psc.windows_options.as_ref().and_then(|w| w.host_process),
        Some(true),
        "pod hostProcess"
    );
    assert_ne!(psc.run_as_user, Some(0), "pod runAsUser 0");
    assert_eq!(psc.run_as_non_root, Some(true), "pod runAsNonRoot");
    assert_seccomp(psc.seccomp_profile.as_ref(), "pod");

    let all: Vec<(String, Option<SecurityContext>, Option<Vec<_>>)> = containers(pod)
        .into_iter()
        .map(|c| (c.name.clone(), c.security_context.clone(), c.ports.clone()))
        .chain(
            pod.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (c.name.clone(), c.security_context.clone(), c.ports.clone())),
        )
        .collect();
    assert!(all.len() >= 2, "init and main container checked");
    for (name, sc, ports) in all {
        for p in ports.iter().flatten() {
            assert!(p.host_port.is_none_or(|h| h == 0), "{name}: hostPort");
        }
        let sc = sc.unwrap_or_else(|| panic!("{name}: no securityContext"));
        assert_ne!(sc.privileged, Some(true), "{name}: privileged");
        assert_eq!(
            sc.allow_privilege_escalation,
            Some(false),
            "{name}: allowPrivilegeEscalation"
        );
        let caps = sc.capabilities.clone().unwrap_or_default();
        assert!(
            caps.drop.iter().flatten().any(|c| c == "ALL"),
            "{name}: capabilities.drop must contain ALL"
        );
        assert!(
            caps.add.iter().flatten().all(|c| c == "NET_BIND_SERVICE"),
            "{name}: only NET_BIND_SERVICE may be added"
        );
        assert_ne!(sc.run_as_non_root, Some(false), "{name}: runAsNonRoot");
        assert!(
            sc.run_as_non_root.or(psc.run_as_non_root) == Some(true),
            "{name}: runAsNonRoot"
        );
        assert_ne!(
            sc.run_as_user.or(psc.run_as_user),
            Some(0),
            "{name}: runAsUser 0"
        );
        assert_seccomp(
            sc.seccomp_profile.as_ref().or(psc.seccomp_profile.as_ref()),
            &name,
        );
        assert!(
            sc.proc_mount.as_deref().is_none_or(|m| m == "Default"),
            "{name}: procMount"
        );
        assert_selinux(sc.se_linux_options.as_ref(), &name);
        assert_ne!(
            sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()),
            Some("Unconfined"),
            "{name}: AppArmor"
        );
        assert_ne!(
            sc.windows_options.as_ref().and_then(|w| w.host_process),
            Some(true),
            "{name}: hostProcess"
        );
    }
}

fn assert_seccomp(profile: Option<&SeccompProfile>, who: &str) {
    let kind = profile.map(|p| p.type_.as_str());
    assert!(
        matches!(kind, Some("RuntimeDefault" | "Localhost")),
        "{who}: seccompProfile {kind:?}"
    );
}

fn assert_selinux(options: Option<&SELinuxOptions>, who: &str) {
    let Some(o) = options else { return };
    assert!(
        o.type_.as_deref().is_none_or(|t| matches!(
            t,
            "" | "container_t" | "container_init_t" | "container_kvm_t" | "container_engine_t"
        )),
        "{who}: SELinux type"
    );
    assert!(
        o.user.is_none() && o.role.is_none(),
        "{who}: SELinux user/role"
    );
}

// --- Pod hardening -------------------------------------------------------------------------

#[test]
fn every_container_including_init_and_the_pod_satisfy_the_restricted_profile() {
    for ac in fixtures() {
        let job = build_default(&ac);
        assert_restricted(pod(&job));
        let annotations = job.spec.as_ref().and_then(|s| s.template.metadata.clone());
        for (key, value) in annotations.and_then(|m| m.annotations).unwrap_or_default() {
            assert!(
                !(key.starts_with("container.apparmor.security.beta.kubernetes.io/")
                    && value == "unconfined"),
                "AppArmor annotation {key}"
            );
        }
    }
}

#[test]
fn every_container_runs_as_65532_with_a_read_only_root_filesystem() {
    let job = build_default(&fixture(HTTPS_WITH_SECRET));
    for c in containers(pod(&job)) {
        let sc = c.security_context.as_ref().expect("securityContext");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(sc.run_as_user, Some(65532), "{}", c.name);
        assert_eq!(sc.run_as_group, Some(65532), "{}", c.name);
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()])
        );
    }
    let psc = pod(&job)
        .security_context
        .as_ref()
        .expect("pod securityContext");
    assert_eq!(
        psc.fs_group,
        Some(65532),
        "so 0440 Secret files are readable"
    );
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
}

#[test]
fn every_container_requests_and_limits_cpu_memory_and_ephemeral_storage() {
    let job = build_default(&fixture(PUBLIC));
    for c in containers(pod(&job)) {
        let r = c.resources.as_ref().expect("resources");
        for map in [&r.requests, &r.limits] {
            let keys: BTreeSet<&str> = map.iter().flatten().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                BTreeSet::from(["cpu", "ephemeral-storage", "memory"]),
                "{}",
                c.name
            );
        }
    }
}

#[test]
fn every_empty_dir_has_a_size_limit_and_the_main_container_storage_limit_covers_them() {
    let cfg = JobConfig::default();
    let job = build_default(&fixture(HTTPS_WITH_SECRET));
    let mut total = 0.0;
    let mut names = Vec::new();
    for v in pod(&job).volumes.iter().flatten() {
        if let Some(dir) = &v.empty_dir {
            let size = dir.size_limit.as_ref().expect("sizeLimit");
            assert_eq!(
                dir.medium, None,
                "disk-backed, charged to ephemeral storage"
            );
            total += quantity("test", &size.0).expect("quantity");
            names.push(v.name.as_str());
        }
    }
    assert_eq!(names, vec!["loader-bin", "work", "tmp"]);
    let limit = quantity("test", &cfg.main_resources.ephemeral_storage_limit).expect("quantity");
    assert!(limit >= total, "{limit} < {total}");
}

#[test]
fn a_larger_transfer_budget_sizes_the_work_volume_and_the_storage_limit_to_hold_it() {
    // The defaults are what a budget of 512Mi sizes.
    let mut same = JobConfig::default();
    same.set_max_transfer(512 * 1024 * 1024);
    let default = JobConfig::default();
    for (sized, given) in [
        (&same.volume_sizes.work, &default.volume_sizes.work),
        (
            &same.main_resources.ephemeral_storage_limit,
            &default.main_resources.ephemeral_storage_limit,
        ),
    ] {
        assert_eq!(quantity("test", sized), quantity("test", given));
    }

    let mut cfg = JobConfig::default();
    cfg.set_max_transfer(2 * 1024 * 1024 * 1024);
    cfg.validate().expect("a consistent configuration");
    let job = build(&fixture(PUBLIC), "t", None, &cfg).expect("builds");
    assert!(args(&job).contains(&"--max-transfer-bytes=2147483648".to_owned()));
    let work = volume(pod(&job), "work").and_then(|v| v.empty_dir.as_ref());
    let size = work.and_then(|d| d.size_limit.as_ref()).expect("sizeLimit");
    assert_eq!(size.0, "4294967296");
    let limits = main(pod(&job))
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref());
    let storage = limits
        .and_then(|l| l.get("ephemeral-storage"))
        .expect("limit");
    assert_eq!(storage.0, ((4_u64 * 1024 + 256) * 1024 * 1024).to_string());
}

#[test]
fn the_pod_never_restarts_in_place_and_gets_no_service_links() {
    let job = build_default(&fixture(PUBLIC));
    let pod = pod(&job);
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.enable_service_links, Some(false));
    for c in containers(pod) {
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
    }
}

// --- Binary, token and credentials -----------------------------------------------------------

#[test]
fn the_init_container_copies_the_loader_and_mounts_nothing_but_the_binary_directory() {
    let job = build_default(&fixture(HTTPS_WITH_SECRET));
    let init = init(pod(&job));
    assert_eq!(init.name, "install-loader");
    assert_eq!(
        init.command,
        Some(vec![
            "/usr/local/bin/crate-loader".to_owned(),
            "copy-to".to_owned(),
            "/opt/crate-loader/crate-loader".to_owned(),
        ])
    );
    assert_eq!(init.args, None);
    assert_eq!(
        mounts(init),
        vec![("loader-bin".into(), "/opt/crate-loader".into(), false)]
    );
}

#[test]
fn the_main_container_runs_the_copied_binary_with_token_and_credentials_read_only() {
    let job = build_default(&fixture(HTTPS_WITH_SECRET));
    let main = main(pod(&job));
    assert_eq!(main.name, CONTAINER_NAME);
    assert_eq!(
        main.command,
        Some(vec!["/opt/crate-loader/crate-loader".to_owned()])
    );
    assert_eq!(
        mounts(main),
        vec![
            ("loader-bin".into(), "/opt/crate-loader".into(), true),
            ("work".into(), "/work".into(), false),
            ("tmp".into(), "/tmp".into(), false),
            (
                "kube-api-access".into(),
                "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                true
            ),
            (
                "credentials".into(),
                "/etc/crate-loader/credentials".into(),
                true
            ),
        ]
    );
}

#[test]
fn the_service_account_token_is_short_lived_and_projected_only_into_the_main_container() {
    let job = build_default(&fixture(PUBLIC));
    let pod = pod(&job);
    assert_eq!(pod.service_account_name.as_deref(), Some("crate-loader"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let projected = volume(pod, "kube-api-access")
        .and_then(|v| v.projected.clone())
        .expect("projected volume");
    assert_eq!(
        serde_json::to_value(&projected).expect("json"),
        serde_json::json!({
            "defaultMode": 0o440,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]
        })
    );
    let with_token: Vec<&str> = containers(pod)
        .into_iter()
        .filter(|c| mounts(c).iter().any(|(n, _, _)| n == "kube-api-access"))
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(with_token, vec!["load"]);
}

#[test]
fn an_https_crate_mounts_only_the_named_key_as_token() {
    let job = build_default(&fixture(HTTPS_WITH_SECRET));
    let secret = volume(pod(&job), "credentials")
        .and_then(|v| v.secret.clone())
        .expect("secret volume");
    assert_eq!(
        serde_json::to_value(&secret).expect("json"),
        serde_json::json!({
            "secretName": "hic-covid-git",
            "items": [{"key": "PAT", "path": "token"}],
            "defaultMode": 0o440,
            "optional": false,
        })
    );
}

#[test]
fn an_ssh_crate_mounts_the_identity_and_the_known_hosts() {
    let scp_like = fixture(SSH);
    let ssh_url = test_crate("ssh://git@example.org:2222/org/crate.git", Some("key"));
    for (ac, secret) in [(scp_like, "genomics-deploy-key"), (ssh_url, "key")] {
        let job = build_default(&ac);
        let volume = volume(pod(&job), "credentials")
            .and_then(|v| v.secret.clone())
            .expect("secret volume");
        assert_eq!(volume.secret_name.as_deref(), Some(secret));
        assert_eq!(
            serde_json::to_value(&volume.items).expect("json"),
            serde_json::json!([
                {"key": "TOKEN", "path": "identity"},
                {"key": "known_hosts", "path": "known_hosts"},
            ])
        );
    }
}

#[test]
fn the_known_hosts_key_is_configurable() {
    let cfg = JobConfig {
        known_hosts_key: "KNOWN_HOSTS".into(),
        ..JobConfig::default()
    };
    let job = build(&fixture(SSH), "t", None, &cfg).expect("builds");
    let items = volume(pod(&job), "credentials")
        .and_then(|v| v.secret.clone())
        .and_then(|s| s.items)
        .expect("items");
    assert_eq!(items[1].key, "KNOWN_HOSTS");
    assert_eq!(items[1].path, "known_hosts");
}

#[test]
fn a_public_crate_gets_no_credentials_volume() {
    let job = build_default(&fixture(PUBLIC));
    assert!(volume(pod(&job), "credentials").is_none());
    for c in containers(pod(&job)) {
        assert!(!mounts(c).iter().any(|(n, _, _)| n == "credentials"));
    }
}

#[test]
fn no_container_has_environment_variables() {
    for ac in fixtures() {
        let job = build_default(&ac);
        for c in containers(pod(&job)) {
            assert_eq!(c.env_from, None, "{}", c.name);
            assert_eq!(c.env, None, "{} {}", c.name, ac.spec.repo.url);
        }
    }
}

// --- Arguments -------------------------------------------------------------------------------

#[test]
fn an_https_crate_with_a_secret_gets_exactly_these_arguments() {
    let job = build(
        &fixture(HTTPS_WITH_SECRET),
        "generation-3",
        Some(COMMIT),
        &JobConfig::default(),
    )
    .expect("builds");
    assert_eq!(
        args(&job),
        vec![
            "load",
            "--repo=https://github.com/lsc-sde-crates/hic-covid.git",
            "--branch=release/2024",
            "--path=/bagit/data/ro-crate-metadata.json",
            "--crate-name=hic-covid",
            "--crate-namespace=sde-data",
            "--crate-uid=6f1c2d3e-4b5a-4c6d-8e7f-000000000001",
            "--last-commit=0123456789abcdef0123456789abcdef01234567",
            "--display-name=HIC COVID-19 cohort",
            "--description=-- linked records (a description starting with dashes must stay a value)",
            "--credentials-dir=/etc/crate-loader/credentials",
            "--work-dir=/work",
            "--timeout=5m",
            "--log-format=text",
            "--termination-message-path=/dev/termination-log",
            "--max-memory-bytes=402653184",
        ]
    );
}

#[test]
fn an_ssh_crate_gets_exactly_these_arguments() {
    assert_eq!(
        args(&build_default(&fixture(SSH))),
        vec![
            "load",
            "--repo=git@github.com:lsc-sde-crates/genomics.git",
            "--branch=main",
            "--path=/ro-crate-metadata.json",
            "--crate-name=genomics",
            "--crate-namespace=sde-genomics",
            "--crate-uid=0a9b8c7d-6e5f-4a3b-9c2d-000000000002",
            "--credentials-dir=/etc/crate-loader/credentials",
            "--work-dir=/work",
            "--timeout=5m",
            "--log-format=text",
            "--termination-message-path=/dev/termination-log",
            "--max-memory-bytes=402653184",
        ]
    );
}

#[test]
fn a_public_crate_gets_exactly_these_arguments() {
    assert_eq!(
        args(&build_default(&fixture(PUBLIC))),
        vec![
            "load",
            "--repo=https://github.com/lsc-sde-crates/open-demo.git",
            "--branch=main",
            "--path=/ro-crate-metadata.json",
            "--crate-name=open-demo",
            "--crate-namespace=sde-public",
            "--crate-uid=3c4d5e6f-7a8b-4c9d-8e0f-000000000003",
            "--display-name=Open demo crate",
            "--work-dir=/work",
            "--timeout=5m",
            "--log-format=text",
            "--termination-message-path=/dev/termination-log",
            "--max-memory-bytes=402653184",
        ]
    );
}

#[test]
fn arguments_never_name_the_secret_or_its_key() {
    let ac = fixture(HTTPS_WITH_SECRET);
    for arg in args(&build_default(&ac)) {
        assert!(!arg.contains("hic-covid-git"), "{arg}");
        assert!(!arg.contains("PAT"), "{arg}");
    }
}

#[test]
fn limit_insecure_transport_and_log_flags_appear_only_when_configured() {
    let cfg = JobConfig {
        loader_timeout: Duration::from_secs(90),
        log_format: LogFormat::Json,
        allow_insecure_transport: true,
        limits: LoaderLimits {
            max_transfer_bytes: Some(100 * 1024 * 1024),
            max_objects: Some(1000),
            max_file_bytes: Some(65536),
            max_json_depth: Some(16),
        },
        ..JobConfig::default()
    };
    let job = build(
        &test_crate("http://127.0.0.1:8080/r.git", None),
        "t",
        None,
        &cfg,
    )
    .expect("builds");
    let args = args(&job);
    assert_eq!(
        &args[args.len() - 10..],
        [
            "--work-dir=/work",
            "--timeout=90s",
            "--log-format=json",
            "--termination-message-path=/dev/termination-log",
            "--max-memory-bytes=402653184",
            "--max-transfer-bytes=104857600",
            "--max-objects=1000",
            "--max-file-bytes=65536",
            "--max-json-depth=16",
            "--allow-insecure-transport",
        ]
    );
    // The memory budget always follows the container's limit; the others keep the loader's
    // defaults unless configured.
    let default_args = args_of_default();
    assert!(!default_args.iter().any(|a| {
        (a.starts_with("--max-") && !a.starts_with("--max-memory-bytes="))
            || a == "--allow-insecure-transport"
    }));
}

#[test]
fn the_fetch_memory_budget_is_the_container_limit_less_what_the_loader_keeps() {
    let mut cfg = JobConfig::default();
    assert_eq!(cfg.fetch_memory_bytes(), 384 * 1024 * 1024);
    cfg.main_resources.memory_limit = "1Gi".to_owned();
    assert_eq!(cfg.fetch_memory_bytes(), 896 * 1024 * 1024);
    cfg.main_resources.memory_limit = "160Mi".to_owned();
    let err = cfg
        .validate()
        .expect_err("too small for the loader and its fetch");
    assert!(err.to_string().contains("at least 192Mi"), "{err}");
}

fn args_of_default() -> Vec<String> {
    args(&build_default(&test_crate(
        "https://example.org/r.git",
        None,
    )))
}

// --- Job ---------------------------------------------------------------------------------------

#[test]
fn permanent_exit_codes_a_killed_loader_and_disruptions_fail_the_job_at_once() {
    let job = build_default(&fixture(PUBLIC));
    let policy = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.clone())
        .expect("podFailurePolicy");
    assert_eq!(policy.rules.len(), 2);
    let fail = &policy.rules[0];
    assert_eq!(fail.action, "FailJob");
    let codes = fail.on_exit_codes.as_ref().expect("onExitCodes");
    assert_eq!(codes.container_name.as_deref(), Some("load"));
    assert_eq!(codes.operator, "In");
    let mut expected = Outcome::permanent_exit_codes();
    // SIGKILL: an OOM kill or an eviction for a storage limit, which carries no condition.
    expected.push(137);
    assert_eq!(codes.values, expected);
    let disrupted = &policy.rules[1];
    assert_eq!(disrupted.action, "FailJob");
    assert_eq!(
        serde_json::to_value(&disrupted.on_pod_conditions).expect("json"),
        serde_json::json!([{"type": "DisruptionTarget", "status": "True"}])
    );
}

#[test]
fn the_job_has_a_deadline_a_small_backoff_limit_and_a_ttl() {
    let job = build_default(&fixture(PUBLIC));
    let spec = job.spec.as_ref().expect("spec");
    assert_eq!(spec.backoff_limit, Some(2));
    assert_eq!(spec.active_deadline_seconds, Some(600));
    assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
    assert!(
        JobConfig::default().loader_timeout.as_secs() < 600,
        "the loader times out before the Job's deadline"
    );
    let json = serde_json::to_value(&job).expect("json");
    assert_eq!(json["apiVersion"], "batch/v1");
    assert_eq!(json["kind"], "Job");
}

#[test]
fn the_job_is_controlled_by_its_crate() {
    let job = build_default(&fixture(SSH));
    assert_eq!(job.metadata.namespace.as_deref(), Some("sde-genomics"));
    assert_eq!(
        serde_json::to_value(&job.metadata.owner_references).expect("json"),
        serde_json::json!([{
            "apiVersion": "xlscsde.nhs.uk/v1",
            "kind": "AnalyticsCrate",
            "name": "genomics",
            "uid": "0a9b8c7d-6e5f-4a3b-9c2d-000000000002",
            "controller": true,
            "blockOwnerDeletion": true,
        }])
    );
}

#[test]
fn job_and_pod_carry_the_labels_that_select_one_crates_loads() {
    let job = build_default(&fixture(HTTPS_WITH_SECRET));
    let expected = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "crate-loader".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "crate-operator".to_owned(),
        ),
        ("xlscsde.nhs.uk/crate".to_owned(), "hic-covid".to_owned()),
    ]);
    let template = job
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.clone())
        .expect("template metadata");
    assert_eq!(job.metadata.labels.as_ref(), Some(&expected));
    assert_eq!(template.labels.as_ref(), Some(&expected));
    assert_eq!(
        selector_for("hic-covid"),
        "app.kubernetes.io/name=crate-loader,xlscsde.nhs.uk/crate=hic-covid"
    );
}

#[test]
fn the_pod_is_selected_by_the_network_policy_and_runs_as_its_service_account() {
    let cfg = JobConfig {
        namespace_resources: LoaderNamespaceConfig {
            service_account: "sde-loader".into(),
            ..LoaderNamespaceConfig::default()
        },
        ..JobConfig::default()
    };
    let job = build(&fixture(PUBLIC), "t", None, &cfg).expect("builds");
    let labels = job
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.clone())
        .and_then(|m| m.labels)
        .expect("labels");
    for (key, value) in loader_pod_selector() {
        assert_eq!(labels.get(&key), Some(&value));
    }
    let account = loader_namespace::service_account("sde-public", &cfg.namespace_resources);
    assert_eq!(pod(&job).service_account_name, account.metadata.name);
}

#[test]
fn the_trigger_and_the_crate_generation_are_annotated_on_job_and_pod() {
    let job = build(
        &fixture(PUBLIC),
        "reload-2024-06-01T10:00",
        None,
        &JobConfig::default(),
    )
    .expect("builds");
    let expected = BTreeMap::from([
        (
            "xlscsde.nhs.uk/load-trigger".to_owned(),
            "reload-2024-06-01T10:00".to_owned(),
        ),
        ("xlscsde.nhs.uk/crate-generation".to_owned(), "7".to_owned()),
    ]);
    assert_eq!(job.metadata.annotations.as_ref(), Some(&expected));
    let template = job
        .spec
        .and_then(|s| s.template.metadata)
        .expect("metadata");
    assert_eq!(template.annotations, Some(expected));
}

#[test]
fn images_pull_policy_and_priority_class_come_from_the_configuration() {
    let default = build_default(&fixture(PUBLIC));
    let image = concat!("ghcr.io/lsc-sde/crate-loader:", env!("CARGO_PKG_VERSION"));
    for c in containers(pod(&default)) {
        assert_eq!(
            c.image.as_deref(),
            Some(image),
            "runner defaults to the loader image"
        );
        assert_eq!(c.image_pull_policy, None);
    }
    assert_eq!(pod(&default).priority_class_name, None);

    let cfg = JobConfig {
        loader_image: "registry.example/loader:1".into(),
        loader_binary: "/crate-loader".into(),
        runner_image: Some("gcr.io/distroless/cc-debian12:nonroot".into()),
        image_pull_policy: Some("IfNotPresent".into()),
        priority_class_name: Some("low".into()),
        ..JobConfig::default()
    };
    let job = build(&fixture(PUBLIC), "t", None, &cfg).expect("builds");
    let pod = pod(&job);
    assert_eq!(
        init(pod).image.as_deref(),
        Some("registry.example/loader:1")
    );
    assert_eq!(
        init(pod).command.as_ref().map(|c| c[0].as_str()),
        Some("/crate-loader")
    );
    assert_eq!(
        main(pod).image.as_deref(),
        Some("gcr.io/distroless/cc-debian12:nonroot")
    );
    for c in containers(pod) {
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    }
    assert_eq!(pod.priority_class_name.as_deref(), Some("low"));
}

// --- Names -------------------------------------------------------------------------------------

#[test]
fn the_job_name_is_deterministic_and_a_dns_label() {
    let a = job_name("hic-covid", "uid-1", "generation-3", None);
    assert_eq!(a, job_name("hic-covid", "uid-1", "generation-3", None));
    assert!(a.starts_with("hic-covid-"), "{a}");
    assert_eq!(a.len(), "hic-covid-".len() + 10);
    assert!(is_dns_label(&a), "{a}");
}

#[test]
fn the_job_name_differs_for_different_triggers_and_uids() {
    let base = job_name("demo", "uid-1", "generation-3", None);
    assert_ne!(base, job_name("demo", "uid-1", "generation-4", None));
    assert_ne!(base, job_name("demo", "uid-2", "generation-3", None));
    // The separator keeps the two inputs apart.
    assert_ne!(
        job_name("demo", "ab", "c", None),
        job_name("demo", "a", "bc", None)
    );
}

#[test]
fn the_job_name_of_a_253_character_crate_name_is_a_dns_label_of_at_most_63() {
    // The longest valid crate name: three 63-character labels and one of 61, dot-separated.
    let label = |n: usize| format!("a{}", "-b".repeat((n - 1) / 2));
    let long = &[label(63), label(63), label(63), label(61)].join(".");
    assert_eq!(long.len(), 253);
    assert!(loader_namespace::is_dns_subdomain(long));
    let name = job_name(long, "uid", "generation-1", None);
    assert!(name.len() <= 63, "{} characters", name.len());
    assert!(is_dns_label(&name), "{name}");
    assert_ne!(name, job_name(long, "uid", "generation-2", None));
    // Dots (valid in crate names) and odd characters never reach the Job name.
    assert!(is_dns_label(&job_name("a.b", "u", "t", None)));
    assert!(is_dns_label(&job_name("-.-", "u", "t", None)));
    assert!(is_dns_label(&job_name("Ünïcode.-", "u", "t", None)));
}

#[test]
fn a_crate_name_longer_than_a_label_value_gets_a_stable_hashed_label() {
    let long = format!("{}.{}", "a".repeat(60), "b".repeat(60));
    let value = crate_label_value(&long);
    assert!(value.len() <= 63);
    assert_eq!(value, crate_label_value(&long));
    assert_ne!(value, crate_label_value(&format!("{long}c")));
    assert!(value.starts_with(&"a".repeat(52)));
    assert!(
        value
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
    );
    let mut ac = test_crate("https://example.org/r.git", None);
    ac.metadata.name = Some(long.clone());
    let job = build_default(&ac);
    let labels = job.metadata.labels.expect("labels");
    assert_eq!(labels.get(LABEL_CRATE), Some(&value));
    assert!(selector_for(&long).ends_with(&format!("xlscsde.nhs.uk/crate={value}")));
}

// --- Refusals ----------------------------------------------------------------------------------

#[test]
fn a_crate_without_uid_or_namespace_is_refused() {
    let mut no_uid = test_crate("https://example.org/r.git", None);
    no_uid.metadata.uid = None;
    let err = build(&no_uid, "t", None, &JobConfig::default()).expect_err("no uid");
    assert_eq!(
        err.to_string(),
        "failed to build the loader Job for AnalyticsCrate sde/demo: it has no metadata.uid; build Jobs only from crates read from the API server"
    );
    let mut no_ns = test_crate("https://example.org/r.git", None);
    no_ns.metadata.namespace = None;
    assert!(matches!(
        build(&no_ns, "t", None, &JobConfig::default()),
        Err(JobError::MissingField {
            field: "metadata.namespace",
            ..
        })
    ));
    assert!(matches!(
        build(&fixture(PUBLIC), "", None, &JobConfig::default()),
        Err(JobError::EmptyTrigger { .. })
    ));
}

#[test]
fn a_url_with_a_password_is_refused_but_a_user_name_is_fine() {
    for url in [
        "https://pat:ghp_secret@github.com/org/r.git",
        "pat:ghp_secret@github.com:org/r.git",
    ] {
        let ac = test_crate(url, Some("s"));
        let err = build(&ac, "t", None, &JobConfig::default()).expect_err("password");
        assert!(
            matches!(
                err,
                JobError::InvalidUrl {
                    source: RepoUrlError::Password { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.to_string().contains("ghp_secret"), "{err}");
    }
    let ac = test_crate("https://pat@github.com/org/r.git", Some("s"));
    build(&ac, "t", None, &JobConfig::default()).expect("a user name is not a secret");
}

#[test]
fn an_unusable_secret_key_is_refused_naming_the_field() {
    let mut ac = test_crate("https://example.org/r.git", Some("s"));
    ac.spec.repo.secret_key = "my token".into();
    let err = build(&ac, "t", None, &JobConfig::default()).expect_err("bad key");
    assert!(
        err.to_string()
            .contains("sde/demo: spec.repo.secretKey \"my token\" is not a valid Secret key"),
        "{err}"
    );
    let mut ssh = test_crate("git@example.org:r.git", Some("s"));
    ssh.spec.repo.secret_key = "known_hosts".into();
    assert!(matches!(
        build(&ssh, "t", None, &JobConfig::default()),
        Err(JobError::InvalidSpec {
            field: "spec.repo.secretKey",
            ..
        })
    ));
}

#[test]
fn the_default_configuration_is_valid() {
    JobConfig::default().validate().expect("defaults are valid");
}

/// A change that breaks a valid configuration, and the field the refusal must name.
type Breakage = (&'static str, fn(&mut JobConfig));

#[test]
fn configurations_that_cannot_work_are_refused_naming_the_field() {
    let cases: [Breakage; 13] = [
        ("active_deadline", |c| c.loader_timeout = c.active_deadline),
        ("token_expiration_seconds", |c| {
            c.token_expiration_seconds = 599;
        }),
        ("ttl_after_finished", |c| {
            c.ttl_after_finished = Duration::ZERO;
        }),
        ("backoff_limit", |c| c.backoff_limit = -1),
        ("loader_binary", |c| c.loader_binary = "crate-loader".into()),
        ("image_pull_policy", |c| {
            c.image_pull_policy = Some("Sometimes".into());
        }),
        ("known_hosts_key", |c| {
            c.known_hosts_key = "known hosts".into();
        }),
        ("limits.max_objects", |c| c.limits.max_objects = Some(0)),
        // The work area would not hold the transfer budget.
        ("volume_sizes.work", |c| {
            c.limits.max_transfer_bytes = Some(2 * 1024 * 1024 * 1024);
        }),
        // The emptyDirs would not fit the Pod's ephemeral storage.
        ("main_resources", |c| {
            c.main_resources.ephemeral_storage_limit = "1Gi".into();
        }),
        ("main_resources", |c| {
            c.main_resources.memory_request = "1Gi".into();
        }),
        ("init_resources", |c| {
            c.init_resources.cpu_limit = "lots".into();
        }),
        ("service_account", |c| {
            c.namespace_resources.service_account = String::new();
        }),
    ];
    for (field, change) in cases {
        let mut cfg = JobConfig::default();
        change(&mut cfg);
        let err = cfg.validate().expect_err(field);
        assert_eq!(err.field, field, "{err}");
        assert!(err.to_string().starts_with("failed to "), "{err}");
        let built = build(&fixture(PUBLIC), "t", None, &cfg);
        assert!(matches!(built, Err(JobError::Config(_))), "{field}");
    }
}

#[test]
fn quantities_are_read_in_binary_and_decimal_units() {
    let q = |s| quantity("test", s);
    assert_eq!(q("100m"), Ok(0.1));
    assert_eq!(q("2"), Ok(2.0));
    assert_eq!(q("1280Mi"), Ok(1280.0 * 1024.0 * 1024.0));
    assert_eq!(q("1.5Gi"), Ok(1.5 * 1024.0 * 1024.0 * 1024.0));
    assert_eq!(q("1G"), Ok(1e9));
    for bad in ["", "Mi", "1e3", "-1", "12Q", "1 Mi"] {
        assert!(q(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn log_formats_parse_from_their_flag_values() {
    assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
    assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
    assert!("yaml".parse::<LogFormat>().is_err());
}

#[test]
fn an_insecure_url_is_an_invalid_spec_unless_the_operator_allows_it() {
    for url in [
        "http://git.example.org/r.git",
        "git://git.example.org/r.git",
    ] {
        let ac = test_crate(url, None);
        let err = build(&ac, "t", None, &JobConfig::default()).expect_err("refused");
        assert!(
            matches!(
                err,
                JobError::InvalidUrl {
                    source: RepoUrlError::InsecureTransport { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("--allow-insecure-transport"),
            "{err}"
        );
        let allowed = JobConfig {
            allow_insecure_transport: true,
            ..JobConfig::default()
        };
        build(&ac, "t", None, &allowed).expect("allowed for testing");
    }
}
