//! A Pod's volumes as host directories, filled the way the kubelet fills them: Secrets and
//! ConfigMaps read through the API (so RBAC, missing objects and missing keys behave as in a
//! cluster), service-account tokens from the TokenRequest API bound to the Pod (so the loader has
//! exactly its ServiceAccount's rights), and the downward API from the Pod itself.
//!
//! Everything is fetched before anything is written: a missing Secret leaves nothing behind, and
//! the caller retries the whole set as the kubelet's volume manager does.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount,
    ServiceAccountTokenProjection, Volume,
};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt as _};

use super::container::field_value;

/// Mode of volume files when the spec names none (the API server's default `defaultMode`).
const DEFAULT_MODE: i32 = 0o644;
/// Lifetime of a projected token when the projection names none (the API's default).
const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// Why a Pod's volumes could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MountError {
    /// Something the Pod needs does not exist (yet) or the API failed: retry, as the kubelet's
    /// `FailedMount` loop does.
    Retry(String),
    /// The spec asks for something the stand-in cannot do; retrying cannot help.
    Fatal(String),
}

/// One file of a volume. Its content may be a secret: never print it.
pub(super) struct File {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A volume's content: a directory holding these files (none for an emptyDir).
pub(super) struct VolumeFiles {
    pub name: String,
    pub files: Vec<File>,
}

/// Reads everything the Pod's volumes hold.
pub(super) async fn fetch(client: &Client, pod: &Pod) -> Result<Vec<VolumeFiles>, MountError> {
    let mut volumes = Vec::new();
    for volume in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let files = volume_files(client, pod, volume).await?;
        volumes.push(VolumeFiles {
            name: volume.name.clone(),
            files,
        });
    }
    Ok(volumes)
}

/// Writes the volumes under `root`, one directory each; returns each volume's directory.
pub(super) fn write(
    root: &Path,
    volumes: Vec<VolumeFiles>,
) -> std::io::Result<HashMap<String, PathBuf>> {
    let mut dirs = HashMap::new();
    for volume in volumes {
        let dir = root.join(&volume.name);
        std::fs::create_dir_all(&dir)?;
        for file in volume.files {
            let path = dir.join(&file.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &file.data)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))?;
        }
        dirs.insert(volume.name, dir);
    }
    Ok(dirs)
}

async fn volume_files(
    client: &Client,
    pod: &Pod,
    volume: &Volume,
) -> Result<Vec<File>, MountError> {
    let namespace = pod.namespace().unwrap_or_default();
    if volume.empty_dir.is_some() {
        return Ok(Vec::new());
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.as_deref().unwrap_or_default();
        let data = secret_data(client, &namespace, name).await?;
        return select(
            "Secret",
            name,
            data.as_ref(),
            source.items.as_deref(),
            source.default_mode.unwrap_or(DEFAULT_MODE),
            source.optional.unwrap_or(false),
        );
    }
    if let Some(source) = &volume.config_map {
        let data = config_map_data(client, &namespace, &source.name).await?;
        return select(
            "ConfigMap",
            &source.name,
            data.as_ref(),
            source.items.as_deref(),
            source.default_mode.unwrap_or(DEFAULT_MODE),
            source.optional.unwrap_or(false),
        );
    }
    if let Some(source) = &volume.downward_api {
        return downward_files(
            pod,
            source.items.as_deref().unwrap_or_default(),
            source.default_mode.unwrap_or(DEFAULT_MODE),
        );
    }
    if let Some(source) = &volume.projected {
        let default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let mut files = Vec::new();
        for projection in source.sources.iter().flatten() {
            if let Some(secret) = &projection.secret {
                let data = secret_data(client, &namespace, &secret.name).await?;
                files.extend(select(
                    "Secret",
                    &secret.name,
                    data.as_ref(),
                    secret.items.as_deref(),
                    default_mode,
                    secret.optional.unwrap_or(false),
                )?);
            } else if let Some(config_map) = &projection.config_map {
                let data = config_map_data(client, &namespace, &config_map.name).await?;
                files.extend(select(
                    "ConfigMap",
                    &config_map.name,
                    data.as_ref(),
                    config_map.items.as_deref(),
                    default_mode,
                    config_map.optional.unwrap_or(false),
                )?);
            } else if let Some(downward) = &projection.downward_api {
                files.extend(downward_files(
                    pod,
                    downward.items.as_deref().unwrap_or_default(),
                    default_mode,
                )?);
            } else if let Some(token) = &projection.service_account_token {
                files.push(File {
                    path: relative_path(&token.path)?,
                    data: service_account_token(client, pod, token).await?,
                    mode: mode(default_mode)?,
                });
            } else {
                return Err(MountError::Fatal(format!(
                    "volume {}: a projected source other than secret, configMap, downwardAPI and serviceAccountToken is not supported by the kubelet stand-in",
                    volume.name
                )));
            }
        }
        return Ok(files);
    }
    Err(MountError::Fatal(format!(
        "volume {}: only emptyDir, secret, configMap, downwardAPI and projected volumes are supported by the kubelet stand-in",
        volume.name
    )))
}

/// A Secret's data; `None` when it does not exist.
async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, MountError> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| MountError::Retry(format!("reading Secret {name:?} failed: {e}")))?;
    Ok(secret.map(|s| {
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0))
            .collect()
    }))
}

/// A ConfigMap's data and binary data; `None` when it does not exist.
async fn config_map_data(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, MountError> {
    let config_map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| MountError::Retry(format!("reading ConfigMap {name:?} failed: {e}")))?;
    Ok(config_map.map(|c| {
        let text = c
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.into_bytes()));
        let binary = c
            .binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0));
        text.chain(binary).collect()
    }))
}

/// A token for the Pod's ServiceAccount from the TokenRequest API, bound to the Pod so it dies
/// with it, as the kubelet requests it for a projected token.
async fn service_account_token(
    client: &Client,
    pod: &Pod,
    projection: &ServiceAccountTokenProjection,
) -> Result<Vec<u8>, MountError> {
    let namespace = pod.namespace().unwrap_or_default();
    let service_account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_owned());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            // Empty means the API server's own audiences, as for an audience-less projection.
            audiences: projection.audience.iter().cloned().collect(),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            expiration_seconds: Some(
                projection
                    .expiration_seconds
                    .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS),
            ),
        },
        ..TokenRequest::default()
    };
    let response: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
        .create_subresource("token", &service_account, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            MountError::Retry(format!(
                "requesting a token for ServiceAccount {service_account:?} failed: {e}"
            ))
        })?;
    response
        .status
        .map(|status| status.token.into_bytes())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            MountError::Retry(format!(
                "the TokenRequest for ServiceAccount {service_account:?} returned no token"
            ))
        })
}

/// The files a Secret or ConfigMap source projects: the listed `items` under their paths, or
/// every key under its own name. A missing object or key is retried unless the source is
/// optional, as the kubelet does.
fn select(
    kind: &str,
    name: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Vec<File>, MountError> {
    let Some(data) = data else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(MountError::Retry(format!("{kind} {name:?} not found")))
        };
    };
    let Some(items) = items else {
        return data
            .iter()
            .map(|(key, value)| {
                Ok(File {
                    path: relative_path(key)?,
                    data: value.clone(),
                    mode: mode(default_mode)?,
                })
            })
            .collect();
    };
    let mut files = Vec::new();
    for item in items {
        match data.get(&item.key) {
            Some(value) => files.push(File {
                path: relative_path(&item.path)?,
                data: value.clone(),
                mode: mode(item.mode.unwrap_or(default_mode))?,
            }),
            None if optional => {}
            None => {
                return Err(MountError::Retry(format!(
                    "{kind} {name:?} has no key {:?}",
                    item.key
                )));
            }
        }
    }
    Ok(files)
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
) -> Result<Vec<File>, MountError> {
    items
        .iter()
        .map(|item| {
            let field = item.field_ref.as_ref().ok_or_else(|| {
                MountError::Fatal(format!(
                    "downwardAPI item {:?}: only fieldRef is supported by the kubelet stand-in",
                    item.path
                ))
            })?;
            let value = field_value(pod, &field.field_path).ok_or_else(|| {
                MountError::Fatal(format!(
                    "downwardAPI item {:?}: fieldRef {} is not supported by the kubelet stand-in",
                    item.path, field.field_path
                ))
            })?;
            Ok(File {
                path: relative_path(&item.path)?,
                data: value.into_bytes(),
                mode: mode(item.mode.unwrap_or(default_mode))?,
            })
        })
        .collect()
}

/// A file path inside a volume: relative and never leaving it (the API server validates this
/// too; checked again because the stand-in writes to the host).
fn relative_path(path: &str) -> Result<String, MountError> {
    let valid = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if valid {
        Ok(path.to_owned())
    } else {
        Err(MountError::Fatal(format!(
            "volume file path {path:?} is not a relative path inside the volume"
        )))
    }
}

fn mode(mode: i32) -> Result<u32, MountError> {
    u32::try_from(mode)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| MountError::Fatal(format!("file mode {mode:o} is not valid")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectFieldSelector;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn data() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            ("TOKEN".to_owned(), b"s3cret".to_vec()),
            ("known_hosts".to_owned(), b"host key".to_vec()),
        ])
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.to_owned(),
            path: path.to_owned(),
            mode,
        }
    }

    fn summary(files: &[File]) -> Vec<(&str, &[u8], u32)> {
        files
            .iter()
            .map(|f| (f.path.as_str(), f.data.as_slice(), f.mode))
            .collect()
    }

    #[test]
    fn items_pick_keys_and_name_the_files_with_their_modes() {
        let items = [
            item("TOKEN", "token", None),
            item("known_hosts", "kh", Some(0o400)),
        ];
        let files = select("Secret", "repo", Some(&data()), Some(&items), 0o440, false)
            .unwrap_or_else(|_| panic!("selects"));
        assert_eq!(
            summary(&files),
            [
                ("token", b"s3cret".as_slice(), 0o440),
                ("kh", b"host key".as_slice(), 0o400)
            ]
        );
    }

    #[test]
    fn without_items_every_key_becomes_a_file() {
        let files = select("ConfigMap", "c", Some(&data()), None, 0o644, false)
            .unwrap_or_else(|_| panic!("selects"));
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["TOKEN", "known_hosts"]);
        assert!(files.iter().all(|f| f.mode == 0o644));
    }

    #[test]
    fn a_missing_object_or_key_is_retried_unless_optional() {
        let items = [item("identity", "identity", None)];
        let missing_key = select("Secret", "repo", Some(&data()), Some(&items), 0o440, false);
        let Err(MountError::Retry(message)) = missing_key else {
            panic!("a missing key is retried");
        };
        assert_eq!(message, "Secret \"repo\" has no key \"identity\"");
        assert!(!message.contains("s3cret"));
        let Err(MountError::Retry(message)) = select("Secret", "repo", None, None, 0o440, false)
        else {
            panic!("a missing Secret is retried");
        };
        assert_eq!(message, "Secret \"repo\" not found");
        let optional = select("Secret", "repo", Some(&data()), Some(&items), 0o440, true)
            .unwrap_or_else(|_| panic!("optional"));
        assert!(optional.is_empty());
        let optional = select("Secret", "repo", None, None, 0o440, true)
            .unwrap_or_else(|_| panic!("optional"));
        assert!(optional.is_empty());
    }

    #[test]
    fn paths_leaving_the_volume_and_bad_modes_are_refused() {
        for path in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert!(
                matches!(relative_path(path), Err(MountError::Fatal(_))),
                "{path}"
            );
        }
        assert_eq!(relative_path("a/b").ok().as_deref(), Some("a/b"));
        assert!(mode(-1).is_err());
        assert!(mode(0o1777).is_err());
        assert_eq!(mode(0o440).ok(), Some(0o440));
    }

    #[test]
    fn the_downward_api_projects_the_namespace() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".to_owned()),
                namespace: Some("sde".to_owned()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        let item = |field: &str| DownwardAPIVolumeFile {
            path: "namespace".to_owned(),
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: field.to_owned(),
            }),
            ..DownwardAPIVolumeFile::default()
        };
        let files = downward_files(&pod, &[item("metadata.namespace")], 0o440)
            .unwrap_or_else(|_| panic!("projects"));
        assert_eq!(summary(&files), [("namespace", b"sde".as_slice(), 0o440)]);
        assert!(matches!(
            downward_files(&pod, &[item("status.podIP")], 0o440),
            Err(MountError::Fatal(_))
        ));
    }

    #[test]
    fn written_volumes_have_their_files_and_modes() {
        let root = tempfile::tempdir().expect("tempdir");
        let dirs = write(
            root.path(),
            vec![
                VolumeFiles {
                    name: "work".to_owned(),
                    files: Vec::new(),
                },
                VolumeFiles {
                    name: "credentials".to_owned(),
                    files: vec![File {
                        path: "sub/token".to_owned(),
                        data: b"t".to_vec(),
                        mode: 0o440,
                    }],
                },
            ],
        )
        .expect("writes");
        assert!(dirs["work"].is_dir());
        let token = dirs["credentials"].join("sub/token");
        assert_eq!(std::fs::read(&token).expect("reads"), b"t");
        let mode = std::fs::metadata(&token)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o440);
    }
}
