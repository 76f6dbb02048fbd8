//! Observe: what a loader Job tells about a load, from the Job and its Pods.
//!
//! First step of a reconcile, after the crate itself. The loader leaves a JSON
//! [`LoadResult`] in its termination message; when it could not (killed for memory, the Job's
//! deadline, a Pod that never started), the result is derived from the Job's and Pod's status so
//! the crate's status always says what happened. Pure: the controller fetches the objects.
//!
//! The Job watch keeps only a [`JobSummary`] of each Job (see `controller::jobs`): the Pod
//! template and the rest of the Job are never read back, and with thousands of finished Jobs kept
//! for their logs their size is most of the manager's memory.

use crate_operator_api::contract::{LoadResult, Outcome};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::JobStatus;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Event, Pod};
use kube::api::ObjectMeta;

use crate::decide::{JobState, LoaderJob};
use crate::job::{ANNOTATION_CRATE_GENERATION, ANNOTATION_TRIGGER, CONTAINER_NAME};

/// Container waiting reasons that do not clear up by themselves: the Pod needs something fixed
/// (an image, a Secret, a ConfigMap) before it can start.
const BLOCKED_REASONS: &[&str] = &[
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "RunContainerError",
];

/// Why a loader Pod that should be running cannot start, in the kubelet's words: a container
/// stuck on one of [`BLOCKED_REASONS`], or else the newest `FailedMount` event among `events`
/// (the Pod's events: a missing Secret or key shows only there). `None` once the Pod runs.
pub fn pod_blocker(pod: &Pod, events: &[Event]) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Pending") {
        return None;
    }
    let containers = status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten();
    for container in containers {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if BLOCKED_REASONS.contains(&reason) {
            let message = waiting.message.as_deref().unwrap_or_default();
            return Some(format!("container {}: {reason}: {message}", container.name));
        }
    }
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedMount"))
        .max_by_key(|e| event_time(e))
        .and_then(|e| e.message.clone())
}

fn event_time(event: &Event) -> Timestamp {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// What the manager keeps of a loader Job: what [`loader_job`] and the pending diagnosis read.
/// Made once per watch event by [`JobSummary::of`]; about 500 bytes, where the Job as served
/// is 9 KiB and a `k8s_openapi` `Job` holding only its metadata and status still takes 2.8 KiB.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub name: String,
    pub namespace: String,
    /// The name of the object controlling it: the crate, whose datasource has its name.
    pub owner: Option<String>,
    /// The trigger and crate generation annotations; `None` on a Job the manager did not make.
    pub trigger: Option<String>,
    pub generation: Option<i64>,
    pub created: Option<Timestamp>,
    pub pods: PodCounts,
    /// Its terminal condition, once it has one.
    pub finished: Option<Finished>,
}

/// The Job's Pod counts, from its status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodCounts {
    pub active: i32,
    pub ready: i32,
    pub succeeded: i32,
    pub failed: i32,
}

/// A Job's terminal condition (`Complete` or `Failed`).
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub succeeded: bool,
    pub at: Timestamp,
    pub reason: Option<String>,
    pub message: Option<String>,
}

impl JobSummary {
    /// The summary of the Job with `meta` and `status`.
    pub fn of(meta: &ObjectMeta, status: Option<&JobStatus>) -> JobSummary {
        let annotation = |key| meta.annotations.as_ref()?.get(key);
        JobSummary {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            owner: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.name.clone()),
            trigger: annotation(ANNOTATION_TRIGGER).cloned(),
            generation: annotation(ANNOTATION_CRATE_GENERATION).and_then(|g| g.parse().ok()),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            pods: status.map(PodCounts::of).unwrap_or_default(),
            finished: status.and_then(finished),
        }
    }
}

impl PodCounts {
    fn of(status: &JobStatus) -> PodCounts {
        PodCounts {
            active: status.active.unwrap_or(0),
            ready: status.ready.unwrap_or(0),
            succeeded: status.succeeded.unwrap_or(0),
            failed: status.failed.unwrap_or(0),
        }
    }
}

/// The terminal condition, once the Job has one.
fn finished(status: &JobStatus) -> Option<Finished> {
    let condition = status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    let at = condition
        .last_transition_time
        .as_ref()
        .or(status.completion_time.as_ref())
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    Some(Finished {
        succeeded: condition.type_ == "Complete",
        at,
        reason: condition.reason.clone(),
        message: condition.message.clone(),
    })
}

/// The view of a loader Job that `decide` needs, with its Pods once it has finished (for the
/// loader's result). `None` for a Job without our annotations.
pub fn loader_job(job: &JobSummary, pods: &[Pod]) -> Option<LoaderJob> {
    let (trigger, generation) = (job.trigger.clone()?, job.generation?);
    let state = match &job.finished {
        None => JobState::Active,
        Some(finished) => {
            let result = result_from_pods(pods).unwrap_or_else(|| {
                fallback_result(
                    finished.succeeded,
                    finished.reason.as_deref(),
                    finished.message.as_deref(),
                    pods,
                    job.owner.clone(),
                )
            });
            JobState::Finished {
                result,
                at: finished.at,
            }
        }
    };
    Some(LoaderJob {
        name: job.name.clone(),
        trigger,
        generation,
        created: job.created.unwrap_or(Timestamp::UNIX_EPOCH),
        state,
    })
}

/// The load container's termination in the newest Pod that has one.
fn last_termination(pods: &[Pod]) -> Option<&ContainerStateTerminated> {
    let mut terminations: Vec<&ContainerStateTerminated> = pods
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter(|c| c.name == CONTAINER_NAME)
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .collect();
    terminations.sort_by_key(|t| t.finished_at.as_ref().map(|f| f.0));
    terminations.pop()
}

/// The loader's own result, when its termination message parses.
fn result_from_pods(pods: &[Pod]) -> Option<LoadResult> {
    let message = last_termination(pods)?.message.as_deref()?;
    serde_json::from_str(message).ok()
}

/// Evictions the kubelet makes because the Pod itself went over a limit it was given: retrying
/// cannot help. Matched on the kubelet's own messages (Kubernetes 1.27–1.35 wording).
const LIMIT_EVICTIONS: [(&str, &str); 3] = [
    (
        "ephemeral local storage usage exceeds the total limit",
        "its ephemeral-storage limit",
    ),
    ("exceeds the limit", "the sizeLimit of one of its volumes"),
    (
        "exceeded its local ephemeral storage limit",
        "its container's ephemeral-storage limit",
    ),
];

/// Why the newest loader Pod was lost without a result, when it was evicted or disrupted:
/// permanent for an eviction over the Pod's own limits, transient for everything the cluster
/// did to it (node pressure, a drain, preemption).
fn pod_loss(pods: &[Pod]) -> Option<(Outcome, String)> {
    let pod = pods
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    let status = pod.status.as_ref()?;
    let disruption = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    let evicted = status.reason.as_deref() == Some("Evicted");
    if !evicted && disruption.is_none() {
        return None;
    }
    let said = status
        .message
        .as_deref()
        .or_else(|| disruption.and_then(|c| c.message.as_deref()))
        .unwrap_or("no message");
    if let Some((_, which)) = LIMIT_EVICTIONS
        .iter()
        .find(|(words, _)| said.to_ascii_lowercase().contains(words))
    {
        return Some((
            Outcome::LimitExceeded,
            format!(
                "the kubelet evicted the loader Pod for going over {which} ({said}); the \
                 repository needs more space than the loader Pod has: raise the loader's \
                 storage limits, or lower --max-transfer-bytes so the loader refuses it itself"
            ),
        ));
    }
    let reason = disruption
        .and_then(|c| c.reason.as_deref())
        .unwrap_or("Evicted");
    Some((
        Outcome::FetchFailed,
        format!("the loader Pod was stopped by the cluster ({reason}: {said}); retrying"),
    ))
}

/// A result for a Job whose loader left none.
fn fallback_result(
    succeeded: bool,
    job_reason: Option<&str>,
    job_message: Option<&str>,
    pods: &[Pod],
    datasource: Option<String>,
) -> LoadResult {
    let termination = last_termination(pods);
    let (outcome, message) = if succeeded {
        (
            Outcome::Internal,
            "the loader Job succeeded but left no readable result".to_owned(),
        )
    } else if job_reason == Some("DeadlineExceeded") {
        (
            Outcome::TimedOut,
            "the loader Job ran past its activeDeadlineSeconds and was stopped; see its log"
                .to_owned(),
        )
    } else if let Some(loss) = pod_loss(pods) {
        loss
    } else if termination.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled")) {
        (
            Outcome::LimitExceeded,
            "the loader was killed for going over its container memory limit; the repository \
             needs more memory than the loader Pod has (raise the loader's memory limit and \
             --max-memory-bytes only if this is expected), or request a reload to try again"
                .to_owned(),
        )
    } else if let Some(t) = termination {
        let outcome = Outcome::from_exit_code(t.exit_code).unwrap_or(Outcome::Internal);
        (
            outcome,
            format!(
                "the loader exited with code {} without a result; see its log",
                t.exit_code
            ),
        )
    } else {
        let detail = [job_reason, job_message]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        (
            Outcome::Internal,
            format!("the loader Job failed before the loader ran ({detail})"),
        )
    };
    LoadResult {
        outcome,
        commit: None,
        revision: None,
        datasource,
        fetch: None,
        warnings: 0,
        message,
    }
}

#[cfg(test)]
mod tests;
