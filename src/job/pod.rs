//! The loader Pod: two containers, five volumes at most, and the hardening that makes untrusted
//! git content harmless (Pod Security "restricted", read-only root filesystem, size-limited
//! emptyDirs, requests and limits everywhere). [`super::build`] wraps it in the Job.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile,
    EmptyDirVolumeSource, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec,
    ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{
    BIN_DIR, CONTAINER_NAME, CREDENTIALS_DIR, ContainerResources, INIT_CONTAINER_NAME, JobConfig,
    LOADER_PATH, NON_ROOT_ID, SECRET_FILE_MODE, SERVICE_ACCOUNT_DIR, TERMINATION_MESSAGE_PATH,
    TMP_DIR, VOLUME_CREDENTIALS, VOLUME_KUBE_API_ACCESS, VOLUME_LOADER_BIN, VOLUME_TMP,
    VOLUME_WORK, WORK_DIR,
};

/// The Pod spec of a loader Job: `args` for the main container, and the crate's credentials
/// volume when it has a Secret. No environment variables: everything the loader needs is in
/// its arguments and files.
pub(super) fn pod_spec(cfg: &JobConfig, args: Vec<String>, credentials: Option<Volume>) -> PodSpec {
    let empty_dir = |name: &str, size: &str| Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: None,
            size_limit: Some(Quantity(size.to_owned())),
        }),
        ..Volume::default()
    };
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let sizes = &cfg.volume_sizes;
    let mut volumes = vec![
        empty_dir(VOLUME_LOADER_BIN, &sizes.loader_bin),
        empty_dir(VOLUME_WORK, &sizes.work),
        empty_dir(VOLUME_TMP, &sizes.tmp),
        kube_api_access_volume(cfg.token_expiration_seconds),
    ];
    let mut main_mounts = vec![
        mount(VOLUME_LOADER_BIN, BIN_DIR, true),
        mount(VOLUME_WORK, WORK_DIR, false),
        mount(VOLUME_TMP, TMP_DIR, false),
        mount(VOLUME_KUBE_API_ACCESS, SERVICE_ACCOUNT_DIR, true),
    ];
    if let Some(credentials) = credentials {
        volumes.push(credentials);
        main_mounts.push(mount(VOLUME_CREDENTIALS, CREDENTIALS_DIR, true));
    }

    let container = |name: &str, image: &str, resources: &ContainerResources| Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: cfg.image_pull_policy.clone(),
        resources: Some(requirements(resources)),
        security_context: Some(container_security_context()),
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_owned()),
        termination_message_policy: Some("File".to_owned()),
        ..Container::default()
    };
    let init = Container {
        command: Some(vec![
            cfg.loader_binary.clone(),
            "copy-to".to_owned(),
            LOADER_PATH.to_owned(),
        ]),
        volume_mounts: Some(vec![mount(VOLUME_LOADER_BIN, BIN_DIR, false)]),
        ..container(INIT_CONTAINER_NAME, &cfg.loader_image, &cfg.init_resources)
    };
    let main = Container {
        command: Some(vec![LOADER_PATH.to_owned()]),
        args: Some(args),
        volume_mounts: Some(main_mounts),
        ..container(CONTAINER_NAME, cfg.runner_image(), &cfg.main_resources)
    };

    PodSpec {
        init_containers: Some(vec![init]),
        containers: vec![main],
        volumes: Some(volumes),
        restart_policy: Some("Never".to_owned()),
        service_account_name: Some(cfg.service_account().to_owned()),
        // The token is projected into the main container only (see kube_api_access_volume).
        automount_service_account_token: Some(false),
        // Service links inject environment variables the loader would read as flag fallbacks
        // (`CRATE_LOADER_*`); the loader needs none of them.
        enable_service_links: Some(false),
        priority_class_name: cfg.priority_class_name.clone(),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NON_ROOT_ID),
            run_as_group: Some(NON_ROOT_ID),
            // Makes the 0440 Secret and token files group-readable by the loader.
            fs_group: Some(NON_ROOT_ID),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    }
}

/// What the kubelet would automount, made by hand so it reaches the main container only and the
/// token lives [`JobConfig::token_expiration_seconds`] (the kubelet refreshes it before expiry).
fn kube_api_access_volume(expiration_seconds: i64) -> Volume {
    Volume {
        name: VOLUME_KUBE_API_ACCESS.to_owned(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(SECRET_FILE_MODE),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".to_owned(),
                        expiration_seconds: Some(expiration_seconds),
                        audience: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".to_owned(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".to_owned(),
                            path: "ca.crt".to_owned(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".to_owned(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".to_owned()),
                                field_path: "metadata.namespace".to_owned(),
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    }
}

/// Pod Security "restricted", plus a read-only root filesystem, for every container.
fn container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NON_ROOT_ID),
        run_as_group: Some(NON_ROOT_ID),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

fn requirements(r: &ContainerResources) -> ResourceRequirements {
    let map = |cpu: &str, memory: &str, storage: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
            ("ephemeral-storage".to_owned(), Quantity(storage.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(map(
            &r.cpu_request,
            &r.memory_request,
            &r.ephemeral_storage_request,
        )),
        limits: Some(map(
            &r.cpu_limit,
            &r.memory_limit,
            &r.ephemeral_storage_limit,
        )),
        claims: None,
    }
}
