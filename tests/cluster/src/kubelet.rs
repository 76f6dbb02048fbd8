//! A kubelet stand-in for loader Pods: runs their containers as local processes of the built
//! `crate-loader` and reports the outcome in the Pod's status.
//!
//! The end-to-end tests run a real API server and controller manager but no node, because a
//! real kubelet needs a container runtime, root and images. The operator's contract with the
//! loader is nevertheless all in the Pod: the args and env the manager builds, the Secret and
//! token volumes (and the RBAC behind them), the exit code and termination message the Job
//! controller and the manager read back. So this stand-in does a kubelet's part for the Pods
//! matching a label selector, and nothing more:
//!
//! - volumes become host directories, filled through the API as the kubelet fills them
//!   (`volumes`); mount paths become those directories by rewriting the paths in the command,
//!   args and env (`container`), and a kubeconfig replaces in-cluster configuration, whose fixed
//!   paths cannot be remapped per process;
//! - the init container runs to completion, then the main one, each with a cleared environment;
//! - the Pod's status follows as the kubelet would report it (`status`), so the real Job
//!   controller completes or fails the Job and applies its `podFailurePolicy`;
//! - a Pod deleted while it runs (the Job's deadline, the test's clean-up) has its processes
//!   killed.
//!
//! Pods are never bound to a node: the API server deletes unbound Pods at once, which the tests
//! rely on. Tests can hold a namespace's Pods back ([`Kubelet::hold`]) to see what the manager
//! does while its loads are pending, and read what ran ([`Kubelet::runs`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tempfile::TempDir;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;

use crate::{Result, error};

mod container;
mod pod;
mod state;
mod status;
mod volumes;

use state::{Shared, State};

/// How long [`Kubelet::start`] waits for the first list of Pods.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What the kubelet stand-in needs to know.
pub struct KubeletConfig {
    /// Admin client config (the kubelet reads Secrets/ConfigMaps and writes Pod status with it).
    pub client: kube::Config,
    /// https URL of the apiserver and its CA (PEM), for the kubeconfig each loader process gets.
    pub server_url: String,
    pub ca_pem: String,
    /// The built crate-loader binary: what every container image's entrypoint resolves to.
    pub loader_binary: PathBuf,
    /// Label selector of the Pods to run, e.g. "app.kubernetes.io/name=crate-loader".
    pub selector: String,
    /// How many Pods run at once; more wait (Pending) for a free slot.
    pub max_parallel: usize,
    /// Where the Pods' directories go: the control plane's directory, which its guard removes
    /// when the test process exits (a stand-in kept in a static is never dropped).
    pub parent_dir: PathBuf,
}

/// One Pod the stand-in ran to the end.
#[derive(Clone, Debug)]
pub struct PodRun {
    pub namespace: String,
    pub pod: String,
    /// The Job that owns the Pod, from its `batch.kubernetes.io/job-name` label or owner
    /// reference.
    pub job: Option<String>,
    /// Exit code of the init container (of the first that failed, if one did).
    pub init_exit_code: i32,
    /// Exit code of the main container; `None` if an init container failed.
    pub exit_code: Option<i32>,
    /// The termination message reported for the main container (of the failed init container
    /// if it never ran).
    pub termination_message: String,
    /// Output of all containers, init first, for asserting that secrets never appear in logs.
    pub stdout: String,
    pub stderr: String,
}

/// The running stand-in. Dropping it stops watching, kills running containers and removes the
/// Pods' directories.
pub struct Kubelet {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    // Last field: removed after the thread, and so every container process, has stopped.
    _dir: TempDir,
}

impl Kubelet {
    /// Starts watching Pods on a thread with its own runtime, so the stand-in serves every test
    /// (each `#[tokio::test]` has its own runtime) and outlives them. Returns once the first
    /// list of Pods succeeded.
    pub fn start(config: KubeletConfig) -> Result<Kubelet> {
        let KubeletConfig {
            client,
            server_url,
            ca_pem,
            loader_binary,
            selector,
            max_parallel,
            parent_dir,
        } = config;
        let loader_binary = utf8(loader_binary)?;
        let dir = tempfile::Builder::new()
            .prefix("kubelet-")
            .tempdir_in(parent_dir)?;
        // Host paths replace container paths inside argument strings, so they must be text.
        let root = PathBuf::from(utf8(dir.path().to_path_buf())?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kubelet")
            .enable_all()
            .build()?;
        let client = {
            // The client's middleware spawns onto the current runtime.
            let _runtime = runtime.enter();
            kube::Client::try_from(client)
                .map_err(|e| error(format!("kubelet: building the API client failed: {e}")))?
        };
        let shared = Arc::new(Shared::default());
        let context = Arc::new(Context {
            client,
            host: Host {
                server_url,
                ca_pem,
                loader_binary,
            },
            root,
            shared: shared.clone(),
            slots: Semaphore::new(max_parallel.max(1)),
        });
        let (stop, stopped) = oneshot::channel();
        let (ready, listed) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kubelet".to_owned())
            .spawn(move || {
                runtime.block_on(watch_pods(context, selector, stopped, ready));
                runtime.shutdown_timeout(Duration::from_secs(5));
            })?;
        let kubelet = Kubelet {
            shared,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        };
        match listed.recv_timeout(START_TIMEOUT) {
            Ok(()) => Ok(kubelet),
            Err(_) => Err(error(format!(
                "kubelet: listing Pods did not succeed within {START_TIMEOUT:?} (its errors are on stderr)"
            ))),
        }
    }

    /// Pods in this namespace are seen but not started (they stay Pending) until
    /// [`Self::release`]. Pods already started are not affected.
    pub fn hold(&self, namespace: &str) {
        self.shared
            .lock()
            .held_namespaces
            .insert(namespace.to_owned());
        self.shared.changed();
    }

    /// Starts the held Pods of this namespace, and any later ones.
    pub fn release(&self, namespace: &str) {
        self.shared.lock().held_namespaces.remove(namespace);
        self.shared.changed();
    }

    /// Finished pod runs in a namespace, in finishing order.
    pub fn runs(&self, namespace: &str) -> Vec<PodRun> {
        self.shared.lock().runs(namespace)
    }

    /// Waits until at least `n` runs finished in `namespace`; after `timeout`, fails with what
    /// did run and what is still pending.
    pub async fn wait_for_runs(
        &self,
        namespace: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<PodRun>> {
        self.wait_until(timeout, |state| {
            let runs = state.runs(namespace);
            (runs.len() >= n).then_some(runs)
        })
        .await
        .map_err(|state| {
            error(format!(
                "kubelet: {n} pod run(s) in namespace {namespace} did not finish within {timeout:?}\n{}",
                state.describe(namespace)
            ))
        })
    }

    /// Pods currently held (seen, not started) in a namespace, by name.
    pub fn held(&self, namespace: &str) -> Vec<String> {
        self.shared.lock().held(namespace)
    }

    /// Waits until at least `n` Pods are held in `namespace`.
    pub async fn wait_for_held(
        &self,
        namespace: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        self.wait_until(timeout, |state| {
            let held = state.held(namespace);
            (held.len() >= n).then_some(held)
        })
        .await
        .map_err(|state| {
            error(format!(
                "kubelet: {n} pod(s) in namespace {namespace} were not held within {timeout:?}\n{}",
                state.describe(namespace)
            ))
        })
    }

    /// Waits for `check` to return something, woken by every change of the state (no polling);
    /// on time-out returns the state for the error message.
    async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> std::result::Result<T, Box<State>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.notify.subscribe();
        loop {
            // Marked seen before checking, so a change after the check wakes the wait below.
            changes.borrow_and_update();
            if let Some(found) = check(&self.shared.lock()) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `shared`, which `self` keeps alive: only the deadline ends
                // the wait.
                Ok(Err(_)) | Err(_) => return Err(Box::new(self.shared.lock().clone())),
            }
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("kubelet: its thread panicked");
        }
    }
}

fn utf8(path: PathBuf) -> Result<String> {
    path.into_os_string().into_string().map_err(|path| {
        error(format!(
            "kubelet: path {} is not UTF-8",
            std::path::Path::new(&path).display()
        ))
    })
}

/// What the pod tasks share: the client, the configuration and the slots.
struct Context {
    client: kube::Client,
    host: Host,
    /// Where pod directories go.
    root: PathBuf,
    shared: Arc<Shared>,
    /// `max_parallel` permits: one per running Pod.
    slots: Semaphore,
}

/// What container processes are given on this host.
struct Host {
    server_url: String,
    ca_pem: String,
    /// The built loader, standing in for every image's entrypoint.
    loader_binary: String,
}

/// Watches the selected Pods until `stop`, starting one task per new Pod and telling tasks when
/// their Pod is deleted; then stops every task, which kills their processes.
async fn watch_pods(
    context: Arc<Context>,
    selector: String,
    mut stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let api: Api<Pod> = Api::all(context.client.clone());
    let events =
        watcher::watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut tasks = JoinSet::new();
    let mut pods = Pods::default();
    let mut ready = Some(ready);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    eprintln!("kubelet: a pod task panicked: {e}");
                }
            }
            event = events.next() => match event {
                None => break,
                Some(Err(e)) => {
                    // The watcher retries with backoff; say so once per distinct error.
                    let message = e.to_string();
                    if last_error.as_ref() != Some(&message) {
                        eprintln!("kubelet: watching Pods failed, retrying: {message}");
                        last_error = Some(message);
                    }
                }
                Some(Ok(event)) => {
                    last_error = None;
                    match event {
                        Event::Init => pods.relisting = Some(HashSet::new()),
                        Event::InitApply(pod) => {
                            if let (Some(relisted), Some(uid)) =
                                (&mut pods.relisting, pod.metadata.uid.clone())
                            {
                                relisted.insert(uid);
                            }
                            pods.apply(&context, &mut tasks, pod);
                        }
                        Event::InitDone => {
                            pods.relisted();
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(());
                            }
                        }
                        Event::Apply(pod) => pods.apply(&context, &mut tasks, pod),
                        Event::Delete(pod) => pods.deleted(pod.metadata.uid.as_deref()),
                    }
                }
            }
        }
    }
    // Dropping each task's future drops its child processes, which kills them.
    tasks.shutdown().await;
}

/// The Pods the stand-in took on, by UID, each with the sender that tells its task the Pod was
/// deleted. A UID stays here until the Pod is gone, so each Pod runs once.
#[derive(Default)]
struct Pods {
    tasks: HashMap<String, watch::Sender<bool>>,
    /// UIDs listed since the watch (re)started.
    relisting: Option<HashSet<String>>,
}

impl Pods {
    fn apply(&mut self, context: &Arc<Context>, tasks: &mut JoinSet<()>, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let deleting = pod.metadata.deletion_timestamp.is_some();
        if let Some(deleted) = self.tasks.get(&uid) {
            if deleting {
                deleted.send_replace(true);
            }
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if deleting || matches!(phase, Some(status::SUCCEEDED | status::FAILED)) {
            return;
        }
        let (deleted, watch_deleted) = watch::channel(false);
        self.tasks.insert(uid, deleted);
        tasks.spawn(pod::run(context.clone(), pod, watch_deleted));
    }

    fn deleted(&mut self, uid: Option<&str>) {
        if let Some(deleted) = uid.and_then(|uid| self.tasks.remove(uid)) {
            deleted.send_replace(true);
        }
    }

    /// After a relist: Pods not listed again were deleted while the watch was down.
    fn relisted(&mut self) {
        let Some(listed) = self.relisting.take() else {
            return;
        };
        self.tasks.retain(|uid, deleted| {
            let keep = listed.contains(uid);
            if !keep {
                deleted.send_replace(true);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelet_can_live_in_a_static() {
        fn shareable<T: Send + Sync + 'static>() {}
        // Tests may spawn the waits onto their runtimes.
        fn send<T: Send>(_: T) {}
        shareable::<Kubelet>();
        shareable::<PodRun>();
        let _ = |kubelet: &Kubelet| {
            send(kubelet.wait_for_runs("ns", 1, Duration::ZERO));
            send(kubelet.wait_for_held("ns", 1, Duration::ZERO));
        };
    }

    #[test]
    fn relisting_forgets_pods_deleted_meanwhile() {
        let mut pods = Pods::default();
        let (kept, watch_kept) = watch::channel(false);
        let (gone, watch_gone) = watch::channel(false);
        pods.tasks.insert("kept".to_owned(), kept);
        pods.tasks.insert("gone".to_owned(), gone);
        pods.relisting = Some(HashSet::from(["kept".to_owned()]));
        pods.relisted();
        assert!(!*watch_kept.borrow());
        assert!(*watch_gone.borrow());
        assert_eq!(pods.tasks.len(), 1);
        pods.deleted(Some("kept"));
        assert!(*watch_kept.borrow());
        assert!(pods.tasks.is_empty());
    }
}
