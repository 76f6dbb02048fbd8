//! One Pod's life in the stand-in: wait while its namespace is held, set up its volumes, run its
//! init containers and then its main container as processes, and report each step in the Pod's
//! status. Deleting the Pod drops this future, which kills the processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, Event as CoreEvent, EventSource, ObjectReference, Pod, PodStatus,
};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::watch;

use super::container::{
    self, DEFAULT_TERMINATION_MESSAGE_PATH, PathMap, command_line, container_env,
};
use super::state::{Activity, Finished, PodKey, Shared};
use super::status::{Progress, Slot, State, Terminated};
use super::volumes::{self, MountError};
use super::{Context, Host, PodRun};

/// `PATH` of every container process, as a typical image sets it.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Where the Pod spec mounts scratch space; its host directory becomes `HOME` and `TMPDIR`.
const TMP_DIR: &str = "/tmp";
/// The loader's flag for its result file, and the environment variable that stands in for it.
const TERMINATION_FLAG: &str = "--termination-message-path";
const TERMINATION_ENV: &str = "CRATE_LOADER_TERMINATION_MESSAGE_PATH";
/// How often a missing Secret, ConfigMap or ServiceAccount is looked for again (the kubelet's
/// volume manager retries about as often).
const MOUNT_RETRY: Duration = Duration::from_secs(1);
/// Attempts at writing a status before giving up on that report.
const STATUS_ATTEMPTS: u32 = 5;

/// Why a Pod stopped short of a result.
enum PodError {
    /// The Pod was deleted.
    Gone,
    /// It cannot run here; it stays Pending.
    Fatal(String),
}

/// A container ready to start: everything rewritten to host paths.
struct Prepared {
    name: String,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    termination_file: PathBuf,
    fallback_to_logs: bool,
}

/// What a finished container left.
struct Exited {
    exit_code: i32,
    message: String,
    stdout: String,
    stderr: String,
}

/// Runs `pod` until it finishes or `deleted` turns true.
pub(super) async fn run(context: Arc<Context>, pod: Pod, mut deleted: watch::Receiver<bool>) {
    let key = PodKey {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
    };
    let Some(spec) = pod.spec.as_ref() else {
        return;
    };
    context.shared.set_activity(&key, Activity::Seen);
    let dir = context.root.join(format!(
        "{}.{}.{}",
        key.namespace,
        key.name,
        pod.uid().unwrap_or_default()
    ));
    let progress = Mutex::new(Progress::new(spec, Timestamp::now()));
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &key.namespace);

    let outcome = tokio::select! {
        result = lifecycle(&context, &api, &pod, &key, &dir, &progress) => Some(result),
        // An error means the watch loop stopped: the Kubelet is being dropped.
        _ = deleted.wait_for(|deleted| *deleted) => None,
    };
    // The lifecycle future is dropped by now, and with it any running child: killed.
    let finished = match outcome {
        Some(Ok(run)) => Finished::Ran(Box::new(run)),
        Some(Err(PodError::Gone)) => Finished::Gone,
        Some(Err(PodError::Fatal(message))) => {
            eprintln!("kubelet: pod {key} cannot run and stays Pending: {message}");
            Finished::Failed(message)
        }
        None => {
            // A kubelet marks a deleted Pod it had started Failed; the Pod is still there while
            // the Job controller's finalizer holds it, and the Job controller waits for that.
            let status = {
                let mut progress = lock(&progress);
                progress.started().then(|| {
                    progress.kill(Timestamp::now());
                    progress.to_status()
                })
            };
            if let Some(status) = status {
                let _ = write_status(&api, &key, &status).await;
            }
            Finished::Gone
        }
    };
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("kubelet: removing {} failed: {e}", dir.display());
    }
    context.shared.finish(&key, finished);
}

async fn lifecycle(
    context: &Context,
    api: &Api<Pod>,
    pod: &Pod,
    key: &PodKey,
    dir: &Path,
    progress: &Mutex<Progress>,
) -> Result<PodRun, PodError> {
    let spec = pod.spec.as_ref().ok_or(PodError::Gone)?;
    let init = spec.init_containers.as_deref().unwrap_or_default();
    // Loader Pods have one; PodRun reports one exit code.
    let [main] = spec.containers.as_slice() else {
        return Err(PodError::Fatal(format!(
            "{} containers; the kubelet stand-in runs Pods with exactly one",
            spec.containers.len()
        )));
    };
    wait_released(&context.shared, key).await;
    lock(progress).start_time = Timestamp::now();
    let volumes = mount(context, pod, key, dir).await?;

    let prepared_init = init
        .iter()
        .map(|c| prepare(&context.host, pod, c, &volumes, dir))
        .collect::<Result<Vec<_>, _>>()
        .map_err(PodError::Fatal)?;
    let prepared_main =
        prepare(&context.host, pod, main, &volumes, dir).map_err(PodError::Fatal)?;

    context.shared.set_activity(
        key,
        Activity::Waiting("a free slot (max_parallel Pods are running)".to_owned()),
    );
    let _slot = context.slots.acquire().await.map_err(|_| PodError::Gone)?;

    let mut run = PodRun {
        namespace: key.namespace.clone(),
        pod: key.name.clone(),
        job: job_name(pod),
        init_exit_code: 0,
        exit_code: None,
        termination_message: String::new(),
        stdout: String::new(),
        stderr: String::new(),
    };
    for (i, container) in prepared_init.iter().enumerate() {
        let exited =
            run_container(context, api, key, container, dir, progress, Slot::Init(i)).await?;
        run.stdout.push_str(&exited.stdout);
        run.stderr.push_str(&exited.stderr);
        run.init_exit_code = exited.exit_code;
        if exited.exit_code != 0 {
            run.termination_message = exited.message;
            let status = lock(progress).to_status();
            write_status(api, key, &status).await?;
            return Ok(run);
        }
    }
    let exited = run_container(
        context,
        api,
        key,
        &prepared_main,
        dir,
        progress,
        Slot::Main(0),
    )
    .await?;
    run.stdout.push_str(&exited.stdout);
    run.stderr.push_str(&exited.stderr);
    run.exit_code = Some(exited.exit_code);
    run.termination_message = exited.message;
    let status = lock(progress).to_status();
    write_status(api, key, &status).await?;
    Ok(run)
}

/// Returns once the Pod's namespace is not held.
async fn wait_released(shared: &Shared, key: &PodKey) {
    let mut changes = shared.notify.subscribe();
    loop {
        changes.borrow_and_update();
        if !shared.lock().held_namespaces.contains(&key.namespace) {
            return;
        }
        shared.set_activity(key, Activity::Held);
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Fetches and writes the Pod's volumes, retrying what may yet appear.
async fn mount(
    context: &Context,
    pod: &Pod,
    key: &PodKey,
    dir: &Path,
) -> Result<HashMap<String, PathBuf>, PodError> {
    let mut reported: Option<String> = None;
    loop {
        match volumes::fetch(&context.client, pod).await {
            Ok(contents) => {
                return volumes::write(&dir.join("volumes"), contents).map_err(|e| {
                    PodError::Fatal(format!(
                        "writing its volumes under {} failed: {e}",
                        dir.display()
                    ))
                });
            }
            Err(MountError::Fatal(message)) => return Err(PodError::Fatal(message)),
            Err(MountError::Retry(message)) => {
                if reported.as_ref() != Some(&message) {
                    context
                        .shared
                        .set_activity(key, Activity::Waiting(format!("volumes: {message}")));
                    failed_mount_event(context, pod, &message).await;
                    reported = Some(message);
                }
                tokio::time::sleep(MOUNT_RETRY).await;
            }
        }
    }
}

/// Tells, as the kubelet does with a `FailedMount` Warning event on the Pod, why its volumes
/// cannot be set up. Best effort: a lost event only hides the reason.
async fn failed_mount_event(context: &Context, pod: &Pod, message: &str) {
    let namespace = pod.namespace().unwrap_or_default();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now());
    let event = CoreEvent {
        metadata: kube::api::ObjectMeta {
            generate_name: Some(format!("{}.", pod.name_any())),
            namespace: Some(namespace.clone()),
            ..kube::api::ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(pod.name_any()),
            namespace: Some(namespace.clone()),
            uid: pod.uid(),
            ..ObjectReference::default()
        },
        reason: Some("FailedMount".to_owned()),
        message: Some(format!("MountVolume.SetUp failed: {message}")),
        type_: Some("Warning".to_owned()),
        source: Some(EventSource {
            component: Some("kubelet".to_owned()),
            host: Some("crate-test-kubelet".to_owned()),
        }),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        ..CoreEvent::default()
    };
    let events: Api<CoreEvent> = Api::namespaced(context.client.clone(), &namespace);
    if let Err(e) = events.create(&PostParams::default(), &event).await {
        eprintln!("kubelet: posting a FailedMount event failed: {e}");
    }
}

/// The container's command line and environment on the host.
fn prepare(
    host: &Host,
    pod: &Pod,
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
    dir: &Path,
) -> Result<Prepared, String> {
    let name = &container.name;
    let io = |what: &str, e: std::io::Error| format!("container {name}: {what} failed: {e}");
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes.get(&mount.name).ok_or_else(|| {
            format!(
                "container {name}: volumeMount {:?} names no volume of the Pod",
                mount.name
            )
        })?;
        let host = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub_path)
                if Path::new(sub_path)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))) =>
            {
                volume.join(sub_path)
            }
            Some(sub_path) => {
                return Err(format!(
                    "container {name}: subPath {sub_path:?} is not valid"
                ));
            }
            None => volume.clone(),
        };
        mounts.push((mount.mount_path.clone(), text(&host)?));
    }
    // The kubelet bind-mounts a fresh file at the termination-message path.
    let termination_file = dir.join("termination").join(name);
    std::fs::create_dir_all(dir.join("termination"))
        .and_then(|()| std::fs::write(&termination_file, b""))
        .map_err(|e| io("creating the termination-message file", e))?;
    let termination_path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.to_owned());
    mounts.push((termination_path, text(&termination_file)?));
    let paths = PathMap::new(mounts);

    let (program, args) = command_line(
        &paths,
        container.command.as_deref(),
        container.args.as_deref(),
        &host.loader_binary,
    );
    let home = paths.host_path(TMP_DIR).map_or_else(|| text(dir), Ok)?;
    // The Pod's own scratch space, never the host's home or /tmp: git and TLS libraries read
    // configuration from HOME, and nothing may leak between Pods.
    let mut env = vec![
        ("PATH".to_owned(), PATH.to_owned()),
        ("HOME".to_owned(), home.clone()),
        ("TMPDIR".to_owned(), home),
    ];
    env.extend(container_env(pod, container, &paths)?);
    if let Some(kubeconfig) = write_kubeconfig(host, pod, container, volumes, dir)? {
        env.push(("KUBECONFIG".to_owned(), text(&kubeconfig)?));
    }
    let flag_given = args
        .iter()
        .any(|a| a == TERMINATION_FLAG || a.starts_with(&format!("{TERMINATION_FLAG}=")));
    if !flag_given && !env.iter().any(|(k, _)| k == TERMINATION_ENV) {
        // The loader's default is the container's /dev/termination-log, which is the host's
        // here; its environment fallback points it at the stand-in's file instead.
        env.push((TERMINATION_ENV.to_owned(), text(&termination_file)?));
    }
    Ok(Prepared {
        name: name.clone(),
        program,
        args,
        env,
        termination_file,
        fallback_to_logs: container.termination_message_policy.as_deref()
            == Some("FallbackToLogsOnError"),
    })
}

/// For a container that mounts a service-account token: a kubeconfig using the projected
/// token, CA and namespace files, as in-cluster configuration would.
fn write_kubeconfig(
    host: &Host,
    pod: &Pod,
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
    dir: &Path,
) -> Result<Option<PathBuf>, String> {
    let name = &container.name;
    let Some((volume, token)) = pod
        .spec
        .as_ref()
        .and_then(|spec| container::token_volume(spec, container))
    else {
        return Ok(None);
    };
    let io = |what: &str, e: std::io::Error| format!("container {name}: {what} failed: {e}");
    let volume_dir = volumes
        .get(volume)
        .ok_or_else(|| format!("container {name}: volume {volume:?} was not set up"))?;
    let ca = volume_dir.join("ca.crt");
    let ca = if ca.is_file() {
        ca
    } else {
        // The projection has no CA (the loader Pod's always does): trust the server's.
        let ca = dir.join("server-ca.crt");
        std::fs::write(&ca, &host.ca_pem).map_err(|e| io("writing the server CA", e))?;
        ca
    };
    let namespace = std::fs::read_to_string(volume_dir.join("namespace")).map_or_else(
        |_| pod.namespace().unwrap_or_default(),
        |namespace| namespace.trim().to_owned(),
    );
    let config = container::kubeconfig(
        &host.server_url,
        &text(&ca)?,
        &text(&volume_dir.join(token))?,
        &namespace,
    )
    .map_err(|e| format!("container {name}: writing its kubeconfig failed: {e}"))?;
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, config).map_err(|e| io("writing its kubeconfig", e))?;
    Ok(Some(path))
}

/// Runs one container to its end, reporting it running once started. Its terminated state is
/// recorded in `progress`; the caller reports it with whatever comes next.
async fn run_container(
    context: &Context,
    api: &Api<Pod>,
    key: &PodKey,
    container: &Prepared,
    dir: &Path,
    progress: &Mutex<Progress>,
    slot: Slot,
) -> Result<Exited, PodError> {
    context
        .shared
        .set_activity(key, Activity::Running(container.name.clone()));
    let child = tokio::process::Command::new(&container.program)
        .args(&container.args)
        .env_clear()
        .envs(container.env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            PodError::Fatal(format!(
                "container {}: starting {} failed: {e}",
                container.name, container.program
            ))
        })?;
    let pid = child.id().unwrap_or_default();
    let started = Timestamp::now();
    let status = {
        let mut progress = lock(progress);
        set_state(&mut progress, slot, State::Running { pid, started });
        progress.to_status()
    };
    write_status(api, key, &status).await?;

    let output = child.wait_with_output().await.map_err(|e| {
        PodError::Fatal(format!(
            "container {}: waiting for it failed: {e}",
            container.name
        ))
    })?;
    let finished = Timestamp::now();
    let signal = std::os::unix::process::ExitStatusExt::signal(&output.status);
    let exit_code = output
        .status
        .code()
        .unwrap_or_else(|| 128 + signal.unwrap_or_default());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let file = tokio::fs::read(&container.termination_file)
        .await
        .unwrap_or_default();
    let message = container::termination_message(
        &file,
        container.fallback_to_logs,
        exit_code,
        &format!("{stdout}{stderr}"),
    );
    set_state(
        &mut lock(progress),
        slot,
        State::Terminated(Terminated {
            pid,
            exit_code,
            signal,
            message: message.clone(),
            started,
            finished,
        }),
    );
    Ok(Exited {
        exit_code,
        message,
        stdout,
        stderr,
    })
}

fn set_state(progress: &mut Progress, slot: Slot, state: State) {
    if let Some(container) = progress.container_mut(slot) {
        container.state = state;
    }
}

/// Reports the Pod's status (a merge patch: the lists in it replace the old ones). A Pod that
/// is gone ends the run; other failures are retried, then reported and skipped, as a kubelet
/// would report again later.
async fn write_status(api: &Api<Pod>, key: &PodKey, status: &PodStatus) -> Result<(), PodError> {
    let patch = Patch::Merge(serde_json::json!({ "status": status }));
    let mut attempt = 1;
    loop {
        match api
            .patch_status(&key.name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => return Err(PodError::Gone),
            Err(e) if attempt >= STATUS_ATTEMPTS => {
                eprintln!("kubelet: pod {key}: writing its status failed: {e}");
                return Ok(());
            }
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The Job that owns the Pod.
fn job_name(pod: &Pod) -> Option<String> {
    let labels = pod.labels();
    labels
        .get("batch.kubernetes.io/job-name")
        .or_else(|| labels.get("job-name"))
        .cloned()
        .or_else(|| {
            pod.owner_references()
                .iter()
                .find(|o| o.kind == "Job" && o.controller == Some(true))
                .map(|o| o.name.clone())
        })
}

fn text(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("path {} is not UTF-8", path.display()))
}

fn lock(progress: &Mutex<Progress>) -> MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::volumes::{File, VolumeFiles};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use serde_json::json;

    /// The shape `src/job/pod.rs` builds, trimmed to what the stand-in reads.
    fn loader_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "sde", "uid": "u-1"},
            "spec": {
                "serviceAccountName": "crate-loader",
                "initContainers": [{
                    "name": "install-loader",
                    "image": "registry.invalid/crate-loader:e2e",
                    "command": ["/usr/local/bin/crate-loader", "copy-to", "/opt/crate-loader/crate-loader"],
                    "volumeMounts": [{"name": "loader-bin", "mountPath": "/opt/crate-loader"}],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }],
                "containers": [{
                    "name": "load",
                    "image": "registry.invalid/crate-loader:e2e",
                    "command": ["/opt/crate-loader/crate-loader"],
                    "args": ["load", "--repo=https://example.org/r.git",
                             "--credentials-dir=/etc/crate-loader/credentials",
                             "--work-dir=/work",
                             "--termination-message-path=/dev/termination-log"],
                    "env": [{"name": "SSL_CERT_FILE", "value": "/dev/null"}],
                    "volumeMounts": [
                        {"name": "loader-bin", "mountPath": "/opt/crate-loader", "readOnly": true},
                        {"name": "work", "mountPath": "/work"},
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "kube-api-access", "readOnly": true,
                         "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
                        {"name": "credentials", "mountPath": "/etc/crate-loader/credentials"}
                    ],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }],
                "volumes": [
                    {"name": "loader-bin", "emptyDir": {}},
                    {"name": "work", "emptyDir": {}},
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "kube-api-access", "projected": {"defaultMode": 288, "sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}},
                        {"configMap": {"name": "kube-root-ca.crt",
                                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                    ]}},
                    {"name": "credentials", "secret": {"secretName": "repo", "defaultMode": 288,
                        "items": [{"key": "TOKEN", "path": "token"}]}}
                ]
            }
        }))
        .expect("a Pod")
    }

    /// The volumes as `mount` leaves them.
    fn loader_volumes(dir: &Path) -> HashMap<String, PathBuf> {
        let file = |path: &str, data: &[u8]| File {
            path: path.to_owned(),
            data: data.to_vec(),
            mode: 0o440,
        };
        let volume = |name: &str, files: Vec<File>| VolumeFiles {
            name: name.to_owned(),
            files,
        };
        volumes::write(
            &dir.join("volumes"),
            vec![
                volume("loader-bin", Vec::new()),
                volume("work", Vec::new()),
                volume("tmp", Vec::new()),
                volume(
                    "kube-api-access",
                    vec![
                        file("token", b"t"),
                        file("ca.crt", b"CA"),
                        file("namespace", b"sde"),
                    ],
                ),
                volume("credentials", vec![file("token", b"s")]),
            ],
        )
        .expect("volumes")
    }

    fn host() -> Host {
        Host {
            server_url: "https://127.0.0.1:6443".to_owned(),
            ca_pem: "PEM".to_owned(),
            loader_binary: "/build/crate-loader".to_owned(),
        }
    }

    fn env<'a>(prepared: &'a Prepared, name: &str) -> Option<&'a str> {
        prepared
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_init_container_copies_the_built_loader_into_the_volume() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_str().expect("UTF-8");
        let pod = loader_pod();
        let volumes = loader_volumes(dir.path());
        let spec = pod.spec.as_ref().expect("spec");
        let init = &spec.init_containers.as_ref().expect("init")[0];
        let prepared = prepare(&host(), &pod, init, &volumes, dir.path()).expect("prepared");
        assert_eq!(prepared.program, "/build/crate-loader");
        assert_eq!(
            prepared.args,
            [
                "copy-to".to_owned(),
                format!("{d}/volumes/loader-bin/crate-loader")
            ]
        );
        let names: Vec<&str> = prepared.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "HOME", "TMPDIR", TERMINATION_ENV]);
        // No /tmp mount: the pod directory is home. No token: no kubeconfig.
        assert_eq!(env(&prepared, "HOME"), Some(d));
        assert_eq!(
            env(&prepared, TERMINATION_ENV).map(PathBuf::from),
            Some(dir.path().join("termination/install-loader"))
        );
    }

    #[test]
    fn the_load_container_gets_host_paths_and_a_kubeconfig_of_its_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_str().expect("UTF-8");
        let pod = loader_pod();
        let volumes = loader_volumes(dir.path());
        let main = &pod.spec.as_ref().expect("spec").containers[0];
        let prepared = prepare(&host(), &pod, main, &volumes, dir.path()).expect("prepared");
        assert_eq!(
            prepared.program,
            format!("{d}/volumes/loader-bin/crate-loader")
        );
        assert_eq!(
            prepared.args,
            [
                "load".to_owned(),
                "--repo=https://example.org/r.git".to_owned(),
                format!("--credentials-dir={d}/volumes/credentials"),
                format!("--work-dir={d}/volumes/work"),
                format!("--termination-message-path={d}/termination/load"),
            ]
        );
        assert_eq!(env(&prepared, "PATH"), Some(PATH));
        assert_eq!(env(&prepared, "SSL_CERT_FILE"), Some("/dev/null"));
        let tmp = format!("{d}/volumes/tmp");
        assert_eq!(env(&prepared, "HOME"), Some(tmp.as_str()));
        assert_eq!(env(&prepared, "TMPDIR"), Some(tmp.as_str()));
        // The flag names the file already.
        assert_eq!(env(&prepared, TERMINATION_ENV), None);
        assert_eq!(
            std::fs::read(&prepared.termination_file).expect("termination file"),
            b""
        );

        let kubeconfig = env(&prepared, "KUBECONFIG").expect("KUBECONFIG");
        let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
        let config: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
        let cluster = &config["clusters"][0]["cluster"];
        assert_eq!(cluster["server"], "https://127.0.0.1:6443");
        assert_eq!(
            cluster["certificate-authority"].as_str(),
            Some(format!("{d}/volumes/kube-api-access/ca.crt").as_str())
        );
        assert_eq!(
            config["users"][0]["user"]["tokenFile"].as_str(),
            Some(format!("{d}/volumes/kube-api-access/token").as_str())
        );
        assert_eq!(config["contexts"][0]["context"]["namespace"], "sde");
    }

    #[test]
    fn a_mount_of_a_volume_the_pod_lacks_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod = loader_pod();
        let mut volumes = loader_volumes(dir.path());
        volumes.remove("work");
        let main = &pod.spec.as_ref().expect("spec").containers[0];
        let Err(e) = prepare(&host(), &pod, main, &volumes, dir.path()) else {
            panic!("a missing volume is an error");
        };
        assert!(e.contains("\"work\""), "{e}");
    }

    #[test]
    fn the_job_comes_from_its_label_or_owner() {
        let mut pod = Pod {
            metadata: ObjectMeta {
                labels: Some([("batch.kubernetes.io/job-name".to_owned(), "j1".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        assert_eq!(job_name(&pod).as_deref(), Some("j1"));
        pod.metadata.labels = None;
        assert_eq!(job_name(&pod), None);
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "batch/v1".to_owned(),
            kind: "Job".to_owned(),
            name: "j2".to_owned(),
            uid: "u".to_owned(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        assert_eq!(job_name(&pod).as_deref(), Some("j2"));
    }
}
