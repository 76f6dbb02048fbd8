//! Reading loads back from Job and Pod objects, as the API server returns them.

use crate_operator_api::contract::Outcome;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use super::*;

fn job(conditions: &str) -> JobSummary {
    let job = whole_job(conditions);
    JobSummary::of(&job.metadata, job.status.as_ref())
}

fn whole_job(conditions: &str) -> Job {
    serde_yaml::from_str(&format!(
        r#"
metadata:
  name: demo-0123456789
  namespace: sde
  creationTimestamp: "2026-11-22T10:00:00Z"
  annotations:
    xlscsde.nhs.uk/load-trigger: "generation:3"
    xlscsde.nhs.uk/crate-generation: "3"
  ownerReferences:
  - {{apiVersion: xlscsde.nhs.uk/v1, kind: AnalyticsCrate, name: demo, uid: u1, controller: true}}
status:
  conditions: {conditions}
"#
    ))
    .expect("job YAML")
}

fn pod(terminated: &str) -> Pod {
    serde_yaml::from_str(&format!(
        r#"
metadata: {{name: demo-0123456789-abcde}}
status:
  containerStatuses:
  - name: load
    image: loader
    imageID: ""
    ready: false
    restartCount: 0
    state:
      terminated: {terminated}
"#
    ))
    .expect("pod YAML")
}

const COMPLETE: &str =
    r#"[{type: Complete, status: "True", lastTransitionTime: "2026-11-22T10:01:00Z"}]"#;
const FAILED_LIMIT: &str = r#"[{type: Failed, status: "True", reason: BackoffLimitExceeded, message: "Job has reached the specified backoff limit", lastTransitionTime: "2026-11-22T10:02:00Z"}]"#;

fn finished_result(job: &JobSummary, pods: &[Pod]) -> (LoadResult, Timestamp) {
    match loader_job(job, pods).expect("a loader job").state {
        JobState::Finished { result, at } => (result, at),
        JobState::Active => panic!("job not finished"),
    }
}

#[test]
fn a_running_job_is_active_with_its_trigger_and_generation() {
    let view = loader_job(&job("[]"), &[]).expect("a loader job");
    assert_eq!(view.state, JobState::Active);
    assert_eq!(
        (view.trigger.as_str(), view.generation),
        ("generation:3", 3)
    );
    assert_eq!(view.name, "demo-0123456789");
}

#[test]
fn a_job_without_our_annotations_is_not_a_loader_job() {
    let mut foreign = whole_job("[]");
    foreign.metadata.annotations = None;
    let summary = JobSummary::of(&foreign.metadata, foreign.status.as_ref());
    assert_eq!(loader_job(&summary, &[]), None);
}

/// A finished loader Job as the API serves it: spec, labels, `managedFields`, a second owner
/// and the Job controller's two conditions.
const SERVED: &str = r#"{
  "apiVersion": "batch/v1", "kind": "Job",
  "metadata": {
    "name": "omop-1a2b3c4d5e", "namespace": "research", "uid": "job-uid",
    "creationTimestamp": "2026-12-03T10:00:00Z",
    "labels": {"app.kubernetes.io/name": "crate-loader"},
    "annotations": {"xlscsde.nhs.uk/load-trigger": "generation:3", "xlscsde.nhs.uk/crate-generation": "3"},
    "ownerReferences": [
      {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "cm-uid"},
      {"apiVersion": "xlscsde.nhs.uk/v1", "kind": "AnalyticsCrate", "name": "omop", "uid": "crate-uid", "controller": true}
    ],
    "managedFields": [{"manager": "crate-operator", "operation": "Apply"}]
  },
  "spec": {"template": {"spec": {"containers": [{"name": "load", "image": "x"}]}}},
  "status": {
    "completionTime": "2026-12-03T10:00:09Z", "succeeded": 1, "uncountedTerminatedPods": {},
    "conditions": [
      {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-12-03T10:00:08Z"},
      {"type": "Complete", "status": "True", "reason": "CompletionsReached",
       "lastProbeTime": "2026-12-03T10:00:09Z", "lastTransitionTime": "2026-12-03T10:00:09Z"}
    ]
  }
}"#;

#[test]
fn a_summary_keeps_what_the_served_job_says_about_the_load() {
    let served: Job = serde_json::from_str(SERVED).expect("a Job");
    let summary = JobSummary::of(&served.metadata, served.status.as_ref());
    let at: Timestamp = "2026-12-03T10:00:09Z".parse().expect("time");
    assert_eq!(
        summary,
        JobSummary {
            name: "omop-1a2b3c4d5e".into(),
            namespace: "research".into(),
            owner: Some("omop".into()),
            trigger: Some("generation:3".into()),
            generation: Some(3),
            created: Some("2026-12-03T10:00:00Z".parse().expect("time")),
            pods: PodCounts {
                succeeded: 1,
                ..PodCounts::default()
            },
            finished: Some(Finished {
                succeeded: true,
                at,
                reason: Some("CompletionsReached".into()),
                message: None,
            }),
        }
    );
    let (result, finished) = finished_result(&summary, &[]);
    assert_eq!(finished, at);
    assert_eq!(result.datasource.as_deref(), Some("omop"));
}

#[test]
fn a_running_jobs_summary_counts_its_pods_and_has_no_end() {
    let mut served: Job = serde_json::from_str(SERVED).expect("a Job");
    served.status = serde_json::from_str(r#"{"active": 1, "ready": 1}"#).expect("status");
    let summary = JobSummary::of(&served.metadata, served.status.as_ref());
    assert_eq!(
        (summary.pods.active, summary.pods.ready, &summary.finished),
        (1, 1, &None)
    );
    assert_eq!(
        loader_job(&summary, &[]).map(|j| j.state),
        Some(JobState::Active)
    );
}

#[test]
fn a_completed_job_yields_the_loaders_termination_message() {
    let message = r#"{"outcome":"Loaded","commit":"abc","revision":"main@sha1:abc","datasource":"demo","warnings":1,"message":"applied"}"#;
    let p = pod(&format!(
        "{{exitCode: 0, message: '{message}', finishedAt: '2026-11-22T10:00:59Z'}}"
    ));
    let (result, at) = finished_result(&job(COMPLETE), &[p]);
    assert_eq!(
        (result.outcome, result.commit.as_deref(), result.warnings),
        (Outcome::Loaded, Some("abc"), 1)
    );
    assert_eq!(at.to_string(), "2026-11-22T10:01:00Z");
}

#[test]
fn the_newest_pods_result_wins_after_retries() {
    let old = pod(
        r#"{exitCode: 20, message: '{"outcome":"FetchFailed","warnings":0,"message":"reset"}', finishedAt: '2026-11-22T10:00:10Z'}"#,
    );
    let new = pod(
        r#"{exitCode: 11, message: '{"outcome":"AuthenticationFailed","warnings":0,"message":"rejected"}', finishedAt: '2026-11-22T10:00:50Z'}"#,
    );
    let (result, _) = finished_result(&job(FAILED_LIMIT), &[new, old]);
    assert_eq!(result.outcome, Outcome::AuthenticationFailed);
}

#[test]
fn an_out_of_memory_kill_is_a_permanent_limit_that_says_which() {
    let (result, _) = finished_result(
        &job(FAILED_LIMIT),
        &[pod("{exitCode: 137, reason: OOMKilled}")],
    );
    assert_eq!(result.outcome, Outcome::LimitExceeded);
    assert!(result.outcome.is_permanent());
    assert!(
        result.message.contains("container memory limit"),
        "{}",
        result.message
    );
    assert_eq!(result.datasource.as_deref(), Some("demo"));
}

/// A Pod the kubelet evicted, with the condition the Job controller's FailJob rule matched.
fn evicted_pod(message: &str, disruption_reason: &str) -> Pod {
    serde_yaml::from_str(&format!(
        r#"
metadata: {{name: demo-0123456789-abcde, creationTimestamp: "2026-11-22T10:01:00Z"}}
status:
  phase: Failed
  reason: Evicted
  message: "{message}"
  conditions:
  - {{type: DisruptionTarget, status: "True", reason: {disruption_reason}, message: "{message}"}}
  containerStatuses:
  - name: load
    image: loader
    imageID: ""
    ready: false
    restartCount: 0
    state:
      terminated: {{exitCode: 137, reason: ContainerStatusUnknown}}
"#
    ))
    .expect("pod YAML")
}

const FAILED_BY_POLICY: &str = r#"[{type: Failed, status: "True", reason: PodFailurePolicy, message: "Pod sde/demo-0123456789-abcde has condition DisruptionTarget matching FailJob rule at index 1", lastTransitionTime: "2026-11-22T10:02:00Z"}]"#;

#[test]
fn an_eviction_over_the_pods_own_storage_limits_is_a_permanent_limit() {
    for message in [
        "Pod ephemeral local storage usage exceeds the total limit of containers 1280Mi. ",
        "Usage of EmptyDir volume \\\"work\\\" exceeds the limit \\\"1Gi\\\". ",
        "Container load exceeded its local ephemeral storage limit \\\"1280Mi\\\". ",
    ] {
        let (result, _) = finished_result(
            &job(FAILED_BY_POLICY),
            &[evicted_pod(message, "TerminationByKubelet")],
        );
        assert_eq!(result.outcome, Outcome::LimitExceeded, "{message}");
        assert!(result.message.contains("evicted"), "{}", result.message);
    }
}

#[test]
fn a_pod_lost_to_the_cluster_is_retried() {
    for (message, reason) in [
        (
            "The node was low on resource: ephemeral-storage. ",
            "TerminationByKubelet",
        ),
        ("Eviction API: evicting", "EvictionByEvictionAPI"),
        (
            "Preempted by a higher priority pod",
            "PreemptionByScheduler",
        ),
    ] {
        let (result, _) = finished_result(&job(FAILED_BY_POLICY), &[evicted_pod(message, reason)]);
        assert_eq!(result.outcome, Outcome::FetchFailed, "{message}");
        assert!(!result.outcome.is_permanent());
        assert!(result.message.contains(reason), "{}", result.message);
    }
}

#[test]
fn an_exit_code_without_a_message_still_gives_its_outcome() {
    let (result, _) = finished_result(&job(FAILED_LIMIT), &[pod("{exitCode: 12}")]);
    assert_eq!(result.outcome, Outcome::NotFound);
}

#[test]
fn a_job_past_its_deadline_timed_out() {
    let deadline = r#"[{type: Failed, status: "True", reason: DeadlineExceeded, lastTransitionTime: "2026-11-22T10:10:00Z"}]"#;
    let (result, _) = finished_result(&job(deadline), &[]);
    assert_eq!(result.outcome, Outcome::TimedOut);
}

#[test]
fn a_job_whose_pod_never_ran_says_so_with_the_jobs_reason() {
    let (result, _) = finished_result(&job(FAILED_LIMIT), &[]);
    assert_eq!(result.outcome, Outcome::Internal);
    assert!(
        result.message.contains("BackoffLimitExceeded"),
        "{}",
        result.message
    );
}

#[test]
fn a_garbled_termination_message_falls_back_to_the_exit_code() {
    let (result, _) = finished_result(
        &job(FAILED_LIMIT),
        &[pod("{exitCode: 10, message: 'not json'}")],
    );
    assert_eq!(result.outcome, Outcome::InvalidCrate);
}

fn pending_pod(container_statuses: &str) -> Pod {
    serde_yaml::from_str(&format!(
        "
metadata: {{name: demo-0123456789-abcde, namespace: sde}}
status:
  phase: Pending
  {container_statuses}
"
    ))
    .expect("pod YAML")
}

fn event(reason: &str, message: &str, last: &str) -> k8s_openapi::api::core::v1::Event {
    serde_yaml::from_str(&format!(
        r#"
metadata: {{name: e, namespace: sde}}
involvedObject: {{kind: Pod, name: demo-0123456789-abcde}}
reason: {reason}
message: '{message}'
lastTimestamp: "{last}"
"#
    ))
    .expect("event YAML")
}

#[test]
fn a_pod_waiting_for_a_missing_secret_is_blocked_with_the_newest_mount_failure() {
    let pod = pending_pod(
        "containerStatuses: [{name: load, image: l, imageID: '', ready: false, restartCount: 0, state: {waiting: {reason: ContainerCreating}}}]",
    );
    let events = [
        event(
            "FailedMount",
            "secret \"old\" not found",
            "2026-11-22T10:00:00Z",
        ),
        event("Scheduled", "assigned", "2026-11-22T10:05:00Z"),
        event(
            "FailedMount",
            "MountVolume.SetUp failed for volume \"credentials\" : secret \"amr-git\" not found",
            "2026-11-22T10:02:00Z",
        ),
    ];
    assert_eq!(
        pod_blocker(&pod, &events).as_deref(),
        Some("MountVolume.SetUp failed for volume \"credentials\" : secret \"amr-git\" not found")
    );
}

#[test]
fn a_container_that_cannot_pull_its_image_blocks_the_pod_init_containers_first() {
    let pod = pending_pod(
        "initContainerStatuses: [{name: copy-loader, image: l, imageID: '', ready: false, restartCount: 0, state: {waiting: {reason: ImagePullBackOff, message: 'Back-off pulling image \"registry.invalid/loader\"'}}}]",
    );
    assert_eq!(
        pod_blocker(&pod, &[]).as_deref(),
        Some(
            "container copy-loader: ImagePullBackOff: Back-off pulling image \"registry.invalid/loader\""
        )
    );
}

#[test]
fn a_pod_that_is_merely_starting_or_already_running_is_not_blocked() {
    let starting = pending_pod(
        "containerStatuses: [{name: load, image: l, imageID: '', ready: false, restartCount: 0, state: {waiting: {reason: ContainerCreating}}}]",
    );
    assert_eq!(pod_blocker(&starting, &[]), None);

    let mut running = starting.clone();
    if let Some(status) = running.status.as_mut() {
        status.phase = Some("Running".to_owned());
    }
    let stale = [event(
        "FailedMount",
        "secret \"amr-git\" not found",
        "2026-11-22T10:00:00Z",
    )];
    assert_eq!(pod_blocker(&running, &stale), None);
}
