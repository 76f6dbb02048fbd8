//! What the stand-in's thread and the tests share: which namespaces are held, what each
//! unfinished Pod is doing, and the finished runs. The tests may run on other runtimes than the
//! stand-in, hence a std mutex (never held across an await) and a watch channel that wakes
//! waiters on every change instead of polling.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::PodRun;

/// The state, and the channel that announces each change of it.
#[derive(Default)]
pub(super) struct Shared {
    state: Mutex<State>,
    pub(super) notify: watch::Sender<()>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test must not take the stand-in down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes everyone waiting for a change.
    pub(super) fn changed(&self) {
        self.notify.send_replace(());
    }

    /// Records what a Pod is doing; wakes waiters only when that changed, so a Pod waiting for
    /// changes does not wake itself.
    pub(super) fn set_activity(&self, key: &PodKey, activity: Activity) {
        let changed = self.lock().active.insert(key.clone(), activity.clone()) != Some(activity);
        if changed {
            self.changed();
        }
    }

    pub(super) fn finish(&self, key: &PodKey, outcome: Finished) {
        {
            let mut state = self.lock();
            state.active.remove(key);
            match outcome {
                Finished::Ran(run) => state
                    .runs
                    .entry(run.namespace.clone())
                    .or_default()
                    .push(*run),
                Finished::Failed(message) => state
                    .failures
                    .entry(key.namespace.clone())
                    .or_default()
                    .push(format!("{}: {message}", key.name)),
                Finished::Gone => {}
            }
        }
        self.changed();
    }
}

/// How a Pod task ended.
pub(super) enum Finished {
    Ran(Box<PodRun>),
    /// The Pod could not be run (unsupported spec, local I/O failure); it stays Pending.
    Failed(String),
    /// Deleted before it finished.
    Gone,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct PodKey {
    pub(super) namespace: String,
    pub(super) name: String,
}

impl std::fmt::Display for PodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What an unfinished Pod is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Activity {
    Seen,
    Held,
    /// Waiting for a volume's content or a free slot.
    Waiting(String),
    /// Running this container.
    Running(String),
}

#[derive(Clone, Default)]
pub(super) struct State {
    pub(super) held_namespaces: HashSet<String>,
    /// Pods seen and not finished.
    active: BTreeMap<PodKey, Activity>,
    runs: HashMap<String, Vec<PodRun>>,
    /// Pods that could not be run, with why, per namespace.
    failures: HashMap<String, Vec<String>>,
}

impl State {
    pub(super) fn runs(&self, namespace: &str) -> Vec<PodRun> {
        self.runs.get(namespace).cloned().unwrap_or_default()
    }

    pub(super) fn held(&self, namespace: &str) -> Vec<String> {
        self.active
            .iter()
            .filter(|(key, activity)| key.namespace == namespace && **activity == Activity::Held)
            .map(|(key, _)| key.name.clone())
            .collect()
    }

    /// Everything known about a namespace's Pods, for failure messages. Output is shortened,
    /// never omitted: the loader never prints a secret, and the tests assert that.
    pub(super) fn describe(&self, namespace: &str) -> String {
        let mut text = String::new();
        let runs = self.runs(namespace);
        let _ = writeln!(text, "finished runs: {}", runs.len());
        for run in &runs {
            let _ = writeln!(
                text,
                "- pod {} (job {}): init exit code {}, exit code {}, termination message {:?}\n  stderr (end): {}",
                run.pod,
                run.job.as_deref().unwrap_or("-"),
                run.init_exit_code,
                run.exit_code
                    .map_or_else(|| "- (not run)".to_owned(), |c| c.to_string()),
                run.termination_message,
                tail(&run.stderr, 600).replace('\n', "\n    "),
            );
        }
        for (key, activity) in self.active.iter().filter(|(k, _)| k.namespace == namespace) {
            let what = match activity {
                Activity::Seen => "seen".to_owned(),
                Activity::Held => "held".to_owned(),
                Activity::Waiting(why) => format!("waiting: {why}"),
                Activity::Running(container) => format!("running container {container}"),
            };
            let _ = writeln!(text, "- pod {}: {what}", key.name);
        }
        for failure in self.failures.get(namespace).into_iter().flatten() {
            let _ = writeln!(text, "- could not run pod {failure}");
        }
        if self.held_namespaces.contains(namespace) {
            let _ = writeln!(text, "(the namespace is held)");
        }
        text
    }
}

/// The last `max` bytes of `text`, cut at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pod: &str, exit_code: Option<i32>) -> PodRun {
        PodRun {
            namespace: "ns".to_owned(),
            pod: pod.to_owned(),
            job: Some("job".to_owned()),
            init_exit_code: 0,
            exit_code,
            termination_message: "{}".to_owned(),
            stdout: String::new(),
            stderr: "line\n".to_owned(),
        }
    }

    fn key(name: &str) -> PodKey {
        PodKey {
            namespace: "ns".to_owned(),
            name: name.to_owned(),
        }
    }

    #[test]
    fn held_pods_and_runs_are_per_namespace() {
        let shared = Shared::default();
        shared.set_activity(&key("a"), Activity::Held);
        shared.set_activity(&key("b"), Activity::Running("load".to_owned()));
        shared.finish(&key("c"), Finished::Ran(Box::new(run("c", Some(0)))));
        let state = shared.lock().clone();
        assert_eq!(state.held("ns"), ["a"]);
        assert!(state.held("other").is_empty());
        assert_eq!(state.runs("ns").len(), 1);
        assert!(state.runs("other").is_empty());
    }

    #[test]
    fn the_description_lists_runs_active_pods_and_failures() {
        let shared = Shared::default();
        shared.set_activity(&key("a"), Activity::Held);
        shared.set_activity(
            &key("b"),
            Activity::Waiting("Secret \"s\" not found".to_owned()),
        );
        shared.finish(&key("c"), Finished::Ran(Box::new(run("c", None))));
        shared.set_activity(&key("d"), Activity::Seen);
        shared.finish(&key("d"), Finished::Failed("unsupported".to_owned()));
        shared.lock().held_namespaces.insert("ns".to_owned());
        let text = shared.lock().describe("ns");
        assert!(text.contains("finished runs: 1"), "{text}");
        assert!(
            text.contains("pod c (job job): init exit code 0, exit code - (not run)"),
            "{text}"
        );
        assert!(text.contains("- pod a: held"), "{text}");
        assert!(
            text.contains("- pod b: waiting: Secret \"s\" not found"),
            "{text}"
        );
        assert!(
            text.contains("- could not run pod d: unsupported"),
            "{text}"
        );
        assert!(text.contains("(the namespace is held)"), "{text}");
        assert!(!text.contains("- pod d:"), "{text}");
    }

    #[test]
    fn unchanged_activities_do_not_wake_waiters() {
        let shared = Shared::default();
        let mut changes = shared.notify.subscribe();
        shared.set_activity(&key("a"), Activity::Held);
        assert!(changes.has_changed().expect("open"));
        changes.borrow_and_update();
        shared.set_activity(&key("a"), Activity::Held);
        assert!(!changes.has_changed().expect("open"));
    }

    #[test]
    fn tails_cut_at_character_boundaries() {
        assert_eq!(tail("abc", 2), "bc");
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("aé", 1), "");
    }
}
