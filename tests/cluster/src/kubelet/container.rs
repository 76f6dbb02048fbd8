//! Pure parts of running a container as a host process: which host path stands in for each path
//! the container would see, the rewritten command line and environment, the kubeconfig that
//! replaces in-cluster configuration, and the termination message as the kubelet reads it.
//!
//! Without mount namespaces a process sees the host's file system, so every path the Pod spec
//! names inside the container (mount paths, the termination-message path) is rewritten to the
//! host directory or file that stands in for it.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

/// The kubelet reads at most this much of a termination message file.
pub(super) const MAX_TERMINATION_MESSAGE_BYTES: usize = 4096;
/// `FallbackToLogsOnError` takes at most this many lines of the log's end …
const FALLBACK_LOG_LINES: usize = 80;
/// … and at most this many bytes.
const FALLBACK_LOG_BYTES: usize = 2048;
/// The termination-message path a container gets when its spec names none.
pub(super) const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Container paths and the host paths standing in for them.
#[derive(Debug, Clone, Default)]
pub(super) struct PathMap {
    /// `(container path without trailing '/', host path)`, longest container path first so the
    /// most specific mount wins (as a mount nested in another hides that part of it).
    entries: Vec<(String, String)>,
}

impl PathMap {
    pub(super) fn new(entries: impl IntoIterator<Item = (String, String)>) -> PathMap {
        let mut entries: Vec<(String, String)> = entries
            .into_iter()
            .map(|(container, host)| {
                let trimmed = container.trim_end_matches('/');
                let container = if trimmed.is_empty() { "/" } else { trimmed };
                (container.to_owned(), host)
            })
            .collect();
        entries.sort_by_key(|(container, _)| std::cmp::Reverse(container.len()));
        PathMap { entries }
    }

    /// The host path for `path` when it is a mapped path or lies under one; `None` otherwise.
    pub(super) fn host_path(&self, path: &str) -> Option<String> {
        self.entries.iter().find_map(|(container, host)| {
            if path == container {
                return Some(host.clone());
            }
            let rest = if container == "/" {
                path.strip_prefix('/')
            } else {
                path.strip_prefix(container.as_str())?.strip_prefix('/')
            }?;
            Some(format!("{}/{rest}", host.trim_end_matches('/')))
        })
    }

    /// `value` rewritten when it is a mapped path, unchanged otherwise.
    pub(super) fn rewrite(&self, value: &str) -> String {
        self.host_path(value).unwrap_or_else(|| value.to_owned())
    }

    /// An argument rewritten: a whole path, or the value of a `--flag=value` argument (the form
    /// the loader Job uses for every flag).
    pub(super) fn rewrite_arg(&self, arg: &str) -> String {
        if let Some(host) = self.host_path(arg) {
            return host;
        }
        if arg.starts_with('-')
            && let Some((flag, value)) = arg.split_once('=')
            && let Some(host) = self.host_path(value)
        {
            return format!("{flag}={host}");
        }
        arg.to_owned()
    }
}

/// The program and arguments to run for a container. `command[0]` under a mount is a file some
/// container put there (the copied loader); anything else is the image's own entrypoint, which
/// for every image these Pods name is the built loader, `entrypoint`. Without a command the
/// image's entrypoint runs with `args`.
pub(super) fn command_line(
    paths: &PathMap,
    command: Option<&[String]>,
    args: Option<&[String]>,
    entrypoint: &str,
) -> (String, Vec<String>) {
    let (program, rest) = match command {
        Some([program, rest @ ..]) => (
            paths
                .host_path(program)
                .unwrap_or_else(|| entrypoint.to_owned()),
            rest,
        ),
        _ => (entrypoint.to_owned(), &[][..]),
    };
    let args = rest
        .iter()
        .chain(args.unwrap_or_default())
        .map(|arg| paths.rewrite_arg(arg))
        .collect();
    (program, args)
}

/// The container's own environment variables, in order, with path values rewritten. Only what
/// the loader Pods could use is supported; anything else is an error naming it.
pub(super) fn container_env(
    pod: &Pod,
    container: &Container,
    paths: &PathMap,
) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => paths.rewrite(var.value.as_deref().unwrap_or_default()),
            Some(source) => {
                let field = source.field_ref.as_ref().ok_or_else(|| {
                    format!(
                        "container {}: env {} uses a valueFrom source the kubelet stand-in does not support (only fieldRef)",
                        container.name, var.name
                    )
                })?;
                field_value(pod, &field.field_path).ok_or_else(|| {
                    format!(
                        "container {}: env {}: fieldRef {} is not supported",
                        container.name, var.name, field.field_path
                    )
                })?
            }
        };
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

/// A Pod field as the downward API gives it (env `fieldRef` and downwardAPI volume items);
/// `None` for fields the stand-in does not know.
pub(super) fn field_value(pod: &Pod, field_path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str| {
        field_path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
    };
    let formatted = |map: Option<&std::collections::BTreeMap<String, String>>| {
        map.into_iter()
            .flatten()
            .fold(String::new(), |mut text, (key, value)| {
                let _ = writeln!(text, "{key}={value:?}");
                text
            })
    };
    match field_path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(formatted(meta.labels.as_ref())),
        "metadata.annotations" => Some(formatted(meta.annotations.as_ref())),
        "spec.serviceAccountName" => Some(
            spec.and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".to_owned()),
        ),
        "spec.nodeName" => Some(spec.and_then(|s| s.node_name.clone()).unwrap_or_default()),
        _ => {
            if let Some(key) = keyed("metadata.labels") {
                Some(meta.labels.as_ref()?.get(key).cloned().unwrap_or_default())
            } else if let Some(key) = keyed("metadata.annotations") {
                Some(
                    meta.annotations
                        .as_ref()?
                        .get(key)
                        .cloned()
                        .unwrap_or_default(),
                )
            } else {
                None
            }
        }
    }
}

/// The volume mounted into `container` that projects a service-account token, and the token's
/// path inside it: what in-cluster configuration would read.
pub(super) fn token_volume<'a>(
    spec: &'a PodSpec,
    container: &Container,
) -> Option<(&'a str, &'a str)> {
    let mounted: Vec<&str> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.sub_path.as_deref().unwrap_or_default().is_empty())
        .map(|m| m.name.as_str())
        .collect();
    spec.volumes
        .iter()
        .flatten()
        .filter(|v| mounted.contains(&v.name.as_str()))
        .find_map(|v| {
            let token = v
                .projected
                .as_ref()?
                .sources
                .iter()
                .flatten()
                .find_map(|s| s.service_account_token.as_ref())?;
            Some((v.name.as_str(), token.path.as_str()))
        })
}

/// A kubeconfig equivalent to in-cluster configuration: the projected CA and token files (the
/// token is read from its file, never inlined) and the projected namespace.
pub(super) fn kubeconfig(
    server: &str,
    ca_file: &str,
    token_file: &str,
    namespace: &str,
) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": {
            "server": server,
            "certificate-authority": ca_file,
        }}],
        "users": [{"name": "pod", "user": {"tokenFile": token_file}}],
        "contexts": [{"name": "in-cluster", "context": {
            "cluster": "in-cluster",
            "user": "pod",
            "namespace": namespace,
        }}],
        "current-context": "in-cluster",
    }))
}

/// The termination message as the kubelet reports it: the file's content, at most 4 KiB (cut at
/// a character boundary); for policy `FallbackToLogsOnError` and a failed container with an
/// empty file, the end of its log instead.
pub(super) fn termination_message(
    file: &[u8],
    fallback_to_logs: bool,
    exit_code: i32,
    log: &str,
) -> String {
    if file.is_empty() && fallback_to_logs && exit_code != 0 {
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(FALLBACK_LOG_LINES)..].join("\n");
        let start = tail.len().saturating_sub(FALLBACK_LOG_BYTES);
        let start = (start..=tail.len())
            .find(|&i| tail.is_char_boundary(i))
            .unwrap_or(tail.len());
        return tail[start..].to_owned();
    }
    let text = String::from_utf8_lossy(file);
    let end = (0..=text.len().min(MAX_TERMINATION_MESSAGE_BYTES))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EnvVar, EnvVarSource, ObjectFieldSelector, ProjectedVolumeSource, SecretKeySelector,
        ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn loader_paths() -> PathMap {
        PathMap::new([
            ("/opt/crate-loader".to_owned(), "/h/p/loader-bin".to_owned()),
            ("/work".to_owned(), "/h/p/work".to_owned()),
            ("/tmp/".to_owned(), "/h/p/tmp".to_owned()),
            (
                "/etc/crate-loader/credentials".to_owned(),
                "/h/p/credentials".to_owned(),
            ),
            (
                "/dev/termination-log".to_owned(),
                "/h/p/termination/load".to_owned(),
            ),
        ])
    }

    #[test]
    fn paths_equal_to_or_under_a_mount_are_rewritten() {
        let paths = loader_paths();
        assert_eq!(paths.host_path("/work").as_deref(), Some("/h/p/work"));
        assert_eq!(paths.host_path("/work/").as_deref(), Some("/h/p/work/"));
        assert_eq!(
            paths.host_path("/work/a/b").as_deref(),
            Some("/h/p/work/a/b")
        );
        assert_eq!(paths.host_path("/tmp").as_deref(), Some("/h/p/tmp"));
        assert_eq!(
            paths.host_path("/dev/termination-log").as_deref(),
            Some("/h/p/termination/load")
        );
        // A shared prefix that is not a path component is not a match.
        assert_eq!(paths.host_path("/workspace"), None);
        assert_eq!(paths.host_path("/dev/null"), None);
        assert_eq!(paths.host_path("work"), None);
        assert_eq!(paths.rewrite("/dev/null"), "/dev/null");
    }

    #[test]
    fn the_longest_mount_path_wins() {
        let paths = PathMap::new([
            ("/var".to_owned(), "/h/var".to_owned()),
            ("/var/run/secrets".to_owned(), "/h/secrets".to_owned()),
        ]);
        assert_eq!(
            paths.host_path("/var/run/secrets/token").as_deref(),
            Some("/h/secrets/token")
        );
        assert_eq!(paths.host_path("/var/run").as_deref(), Some("/h/var/run"));
        let root = PathMap::new([("/".to_owned(), "/h/root".to_owned())]);
        assert_eq!(root.host_path("/etc/x").as_deref(), Some("/h/root/etc/x"));
        assert_eq!(root.host_path("/").as_deref(), Some("/h/root"));
    }

    #[test]
    fn flag_values_are_rewritten_but_not_other_text() {
        let paths = loader_paths();
        assert_eq!(
            paths.rewrite_arg("--work-dir=/work"),
            "--work-dir=/h/p/work"
        );
        assert_eq!(
            paths.rewrite_arg("--termination-message-path=/dev/termination-log"),
            "--termination-message-path=/h/p/termination/load"
        );
        assert_eq!(paths.rewrite_arg("/work"), "/h/p/work");
        assert_eq!(paths.rewrite_arg("--path=/work"), "--path=/h/p/work");
        // Not a flag: `=` in free text stays as it is.
        assert_eq!(paths.rewrite_arg("a=/work"), "a=/work");
        assert_eq!(
            paths.rewrite_arg("--repo=https://example.org/work"),
            "--repo=https://example.org/work"
        );
        assert_eq!(
            paths.rewrite_arg("--description=/workshop"),
            "--description=/workshop"
        );
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_init_container_runs_the_built_loader_as_the_image_entrypoint() {
        let paths = PathMap::new([("/opt/crate-loader".to_owned(), "/h/p/loader-bin".to_owned())]);
        let command = strings(&["/crate-loader", "copy-to", "/opt/crate-loader/crate-loader"]);
        let (program, args) = command_line(&paths, Some(&command), None, "/build/crate-loader");
        assert_eq!(program, "/build/crate-loader");
        assert_eq!(args, ["copy-to", "/h/p/loader-bin/crate-loader"]);
    }

    #[test]
    fn the_main_container_runs_the_copy_from_its_mount() {
        let paths = loader_paths();
        let command = strings(&["/opt/crate-loader/crate-loader"]);
        let args = strings(&[
            "load",
            "--repo=git://127.0.0.1:1/r.git",
            "--credentials-dir=/etc/crate-loader/credentials",
            "--work-dir=/work",
            "--termination-message-path=/dev/termination-log",
        ]);
        let (program, args) = command_line(&paths, Some(&command), Some(&args), "/build/x");
        assert_eq!(program, "/h/p/loader-bin/crate-loader");
        assert_eq!(
            args,
            [
                "load",
                "--repo=git://127.0.0.1:1/r.git",
                "--credentials-dir=/h/p/credentials",
                "--work-dir=/h/p/work",
                "--termination-message-path=/h/p/termination/load",
            ]
        );
    }

    #[test]
    fn without_a_command_the_entrypoint_gets_the_args() {
        let paths = loader_paths();
        let args = strings(&["preview", "/work"]);
        let (program, args) = command_line(&paths, None, Some(&args), "/build/crate-loader");
        assert_eq!(program, "/build/crate-loader");
        assert_eq!(args, ["preview", "/h/p/work"]);
        let (program, args) = command_line(&paths, Some(&[]), None, "/e");
        assert_eq!((program.as_str(), args.len()), ("/e", 0));
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".to_owned()),
                namespace: Some("ns".to_owned()),
                uid: Some("u-1".to_owned()),
                labels: Some([("a".to_owned(), "b".to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                service_account_name: Some("loader".to_owned()),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value: Some(value.to_owned()),
            value_from: None,
        }
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: path.to_owned(),
                }),
                ..EnvVarSource::default()
            }),
        }
    }

    #[test]
    fn env_values_and_field_refs_are_resolved() {
        let container = Container {
            name: "load".to_owned(),
            env: Some(vec![
                var("SSL_CERT_FILE", "/dev/null"),
                var("WORK", "/work/x"),
                field("POD", "metadata.name"),
                field("NS", "metadata.namespace"),
                field("UID", "metadata.uid"),
                field("SA", "spec.serviceAccountName"),
                field("LABEL", "metadata.labels['a']"),
            ]),
            ..Container::default()
        };
        let env = container_env(&pod(), &container, &loader_paths()).expect("supported");
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("SSL_CERT_FILE", "/dev/null"),
                ("WORK", "/h/p/work/x"),
                ("POD", "p"),
                ("NS", "ns"),
                ("UID", "u-1"),
                ("SA", "loader"),
                ("LABEL", "b"),
            ]
        );
    }

    #[test]
    fn unsupported_env_sources_are_errors_naming_the_variable() {
        let secret = EnvVar {
            name: "TOKEN".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "s".to_owned(),
                    key: "k".to_owned(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        };
        let container = Container {
            name: "load".to_owned(),
            env: Some(vec![secret]),
            ..Container::default()
        };
        let e = container_env(&pod(), &container, &PathMap::default()).expect_err("unsupported");
        assert!(e.contains("TOKEN"), "{e}");
        let container = Container {
            name: "load".to_owned(),
            env: Some(vec![field("IP", "status.podIP")]),
            ..Container::default()
        };
        let e = container_env(&pod(), &container, &PathMap::default()).expect_err("unsupported");
        assert!(e.contains("status.podIP"), "{e}");
    }

    #[test]
    fn the_token_volume_is_found_only_where_it_is_mounted() {
        let projected = Volume {
            name: "kube-api-access".to_owned(),
            projected: Some(ProjectedVolumeSource {
                default_mode: None,
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".to_owned(),
                        audience: None,
                        expiration_seconds: Some(600),
                    }),
                    ..VolumeProjection::default()
                }]),
            }),
            ..Volume::default()
        };
        let spec = PodSpec {
            volumes: Some(vec![projected]),
            ..PodSpec::default()
        };
        let mount = |name: &str| VolumeMount {
            name: name.to_owned(),
            mount_path: "/x".to_owned(),
            ..VolumeMount::default()
        };
        let main = Container {
            volume_mounts: Some(vec![mount("work"), mount("kube-api-access")]),
            ..Container::default()
        };
        let init = Container {
            volume_mounts: Some(vec![mount("loader-bin")]),
            ..Container::default()
        };
        assert_eq!(
            token_volume(&spec, &main),
            Some(("kube-api-access", "token"))
        );
        assert_eq!(token_volume(&spec, &init), None);
    }

    #[test]
    fn the_kubeconfig_points_at_the_projected_files() {
        let text = kubeconfig("https://127.0.0.1:6443", "/h/ca.crt", "/h/token", "sde")
            .expect("serialises");
        let value: serde_yaml::Value = serde_yaml::from_str(&text).expect("parses");
        assert_eq!(
            value["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            value["clusters"][0]["cluster"]["certificate-authority"],
            "/h/ca.crt"
        );
        assert_eq!(value["users"][0]["user"]["tokenFile"], "/h/token");
        assert_eq!(value["contexts"][0]["context"]["namespace"], "sde");
        assert_eq!(value["current-context"], "in-cluster");
        assert!(!text.contains("token:"), "no inline token: {text}");
    }

    #[test]
    fn termination_messages_are_cut_at_four_kib_on_a_character_boundary() {
        assert_eq!(termination_message(b"{\"a\":1}", false, 0, ""), "{\"a\":1}");
        let long = "é".repeat(3000); // 6000 bytes
        let message = termination_message(long.as_bytes(), false, 1, "");
        assert_eq!(message.len(), MAX_TERMINATION_MESSAGE_BYTES);
        assert!(message.chars().all(|c| c == 'é'));
        let odd = format!("x{long}");
        let message = termination_message(odd.as_bytes(), false, 1, "");
        assert_eq!(message.len(), MAX_TERMINATION_MESSAGE_BYTES - 1);
    }

    #[test]
    fn fallback_to_logs_only_for_failures_with_an_empty_file() {
        let log = (0..100)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let tail = termination_message(b"", true, 1, &log);
        assert!(tail.starts_with("line 20\n"), "{tail}");
        assert!(tail.ends_with("line 99"), "{tail}");
        assert_eq!(termination_message(b"", true, 0, &log), "");
        assert_eq!(termination_message(b"", false, 1, &log), "");
        assert_eq!(termination_message(b"file", true, 1, &log), "file");
        let long_lines = "y".repeat(3000);
        assert_eq!(termination_message(b"", true, 1, &long_lines).len(), 2048);
    }
}
