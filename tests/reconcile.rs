//! Reconciler tests: `controller::reconcile` against a scripted mock API server.
//!
//! Each test builds a [`Harness`] (a real `Context` whose `kube::Client` talks to a
//! `tower_test` mock service, plus its loader-Job index) and calls
//! [`Harness::reconcile`] with the requests that reconcile must make, in order. The mock
//! server answers each one, asserting its method, path and query; it fails the test on any
//! request that is not in the script and when the reconcile finishes before the script is
//! consumed. Every request is recorded, so tests inspect the created Job, the status patch and
//! the events afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate_operator::controller::CachedJob;
use crate_operator::controller::jobs::Jobs;
use crate_operator::controller::{self, Context, Settings};
use crate_operator::job::{self, ANNOTATION_TRIGGER, CONTAINER_NAME, JobConfig};
use crate_operator::metrics::Metrics;
use crate_operator_api::contract::{ANNOTATION_RELOAD_REQUESTED_AT, LoadResult, Outcome};
use crate_operator_api::{AnalyticsCrate, AnalyticsCrateSpec, AnalyticsCrateStatus, RepoSpec};
use http::{Method, Request, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Event as CoreEvent, ObjectReference,
    Pod, PodStatus,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, ResourceExt as _};
use serde_json::{Value, json};

const NS: &str = "research";
const NAME: &str = "demo";
const UID: &str = "6f1c2a3e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
const COMMIT: &str = "3f786850e387550fdab836ed7e6dc881de23001b";
const NEW_COMMIT: &str = "89e6c98d92887913cadf06b2adb97f26cde4849b";
const RELOAD_AT: &str = "2026-11-22T10:00:00Z";
/// Generous bound on one reconcile against the mock: only a hang gets near it.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Builder of an `AnalyticsCrate` as the API server would hand it to the controller.
struct CrateFixture(AnalyticsCrate);

fn crate_fixture() -> CrateFixture {
    let mut ac = AnalyticsCrate::new(
        NAME,
        AnalyticsCrateSpec {
            display_name: Some("Demo crate".to_owned()),
            description: None,
            path: "/bagit/data/ro-crate-metadata.json".to_owned(),
            repo: RepoSpec {
                url: "https://github.com/lsc-sde/demo-crate.git".to_owned(),
                branch: "main".to_owned(),
                secret_name: Some("demo-token".to_owned()),
                secret_key: "TOKEN".to_owned(),
            },
            suspend: None,
            interval: None,
        },
    );
    ac.metadata.namespace = Some(NS.to_owned());
    ac.metadata.uid = Some(UID.to_owned());
    ac.metadata.generation = Some(1);
    ac.metadata.resource_version = Some("1000".to_owned());
    ac.metadata.creation_timestamp = Some(Time(ago(3600)));
    CrateFixture(ac)
}

impl CrateFixture {
    fn named(mut self, name: &str, uid: &str) -> Self {
        self.0.metadata.name = Some(name.to_owned());
        self.0.metadata.uid = Some(uid.to_owned());
        self
    }

    fn generation(mut self, generation: i64) -> Self {
        self.0.metadata.generation = Some(generation);
        self
    }

    fn status(mut self, status: AnalyticsCrateStatus) -> Self {
        self.0.status = Some(status);
        self
    }

    fn suspend(mut self) -> Self {
        self.0.spec.suspend = Some(true);
        self
    }

    fn reload(mut self, at: &str) -> Self {
        self.0
            .annotations_mut()
            .insert(ANNOTATION_RELOAD_REQUESTED_AT.to_owned(), at.to_owned());
        self
    }

    fn deleting(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(ago(1)));
        self
    }

    fn build(self) -> AnalyticsCrate {
        self.0
    }
}

/// The crate as the API server returns it after a status patch.
fn with_status(ac: &AnalyticsCrate, status: AnalyticsCrateStatus) -> AnalyticsCrate {
    let mut next = ac.clone();
    next.status = Some(status);
    next
}

/// `seconds` ago, in whole seconds like every `metav1.Time` that comes from the API server.
fn ago(seconds: i64) -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() - seconds).expect("a valid time")
}

fn condition(type_: &str, status: &str, reason: &str, generation: i64, at: Timestamp) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: String::new(),
        observed_generation: Some(generation),
        last_transition_time: Time(at),
    }
}

/// The status of a crate whose generation-`generation` load of `COMMIT` finished an hour ago
/// and has since settled (as written by earlier reconciles).
fn ready_status(generation: i64) -> AnalyticsCrateStatus {
    let at = ago(3600);
    AnalyticsCrateStatus {
        status_text: "Ready".to_owned(),
        commit_id: Some(COMMIT.to_owned()),
        observed_generation: Some(generation),
        conditions: vec![
            condition("Ready", "True", "Loaded", generation, at),
            condition("Reconciling", "False", "Idle", generation, at),
            condition("Stalled", "False", "Loaded", generation, at),
        ],
        revision: Some(format!("main@sha1:{COMMIT}")),
        datasource: Some(NAME.to_owned()),
        last_job: Some(job::job_name(NAME, UID, "generation:1", None)),
        warnings: Some(0),
        last_load_time: Some(Time(at)),
        ..AnalyticsCrateStatus::default()
    }
}

/// What a loader Job is doing.
#[derive(Clone, Copy)]
enum JobPhase {
    /// Its Pod runs.
    Running,
    /// Created `age` seconds ago and still without a Pod.
    NoPod { age: i64 },
    /// Created `age` seconds ago; its Pod exists but is not running.
    PodPending { age: i64 },
    /// Succeeded at `at`.
    Complete { at: Timestamp },
    /// Failed at `at` (the Job controller's reason, e.g. `PodFailurePolicy`).
    Failed { at: Timestamp, reason: &'static str },
}

/// A loader Job as the watch delivers it: built by the manager's own builder from `ac` at
/// `generation`, then given what the API server and the Job controller add.
fn loader_job(ac: &AnalyticsCrate, trigger: &str, generation: i64, phase: JobPhase) -> Job {
    let mut source = ac.clone();
    source.metadata.generation = Some(generation);
    let mut job = job::build(&source, trigger, None, &JobConfig::default()).expect("job builds");
    let created = match phase {
        JobPhase::Running => ago(30),
        JobPhase::NoPod { age } | JobPhase::PodPending { age } => ago(age),
        JobPhase::Complete { at } | JobPhase::Failed { at, .. } => {
            at - SignedDuration::from_secs(20)
        }
    };
    job.metadata.uid = Some(format!("job-uid-{}", job.name_any()));
    job.metadata.resource_version = Some("2000".to_owned());
    job.metadata.creation_timestamp = Some(Time(created));
    let terminal = |type_: &str, reason: &str, at: Timestamp| {
        vec![JobCondition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(format!("{type_} condition")),
            last_probe_time: Some(Time(at)),
            last_transition_time: Some(Time(at)),
        }]
    };
    job.status = Some(match phase {
        JobPhase::Running => JobStatus {
            active: Some(1),
            ready: Some(1),
            start_time: Some(Time(created)),
            ..JobStatus::default()
        },
        JobPhase::NoPod { .. } => JobStatus::default(),
        JobPhase::PodPending { .. } => JobStatus {
            active: Some(1),
            ready: Some(0),
            start_time: Some(Time(created)),
            ..JobStatus::default()
        },
        JobPhase::Complete { at } => JobStatus {
            succeeded: Some(1),
            start_time: Some(Time(created)),
            completion_time: Some(Time(at)),
            conditions: Some(terminal("Complete", "CompletionsReached", at)),
            ..JobStatus::default()
        },
        JobPhase::Failed { at, reason } => JobStatus {
            failed: Some(1),
            start_time: Some(Time(created)),
            conditions: Some(terminal("Failed", reason, at)),
            ..JobStatus::default()
        },
    });
    job
}

/// The finished Pod of `job`, whose `load` container left `result` as its termination message.
fn loader_pod(job: &Job, result: &LoadResult) -> Pod {
    let job_name = job.name_any();
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.last_transition_time.clone());
    let exit_code = result.outcome.exit_code();
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{job_name}-x7k2p")),
            namespace: job.namespace(),
            labels: Some(BTreeMap::from([
                ("batch.kubernetes.io/job-name".to_owned(), job_name.clone()),
                ("job-name".to_owned(), job_name),
            ])),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(
                if exit_code == 0 {
                    "Succeeded"
                } else {
                    "Failed"
                }
                .to_owned(),
            ),
            container_statuses: Some(vec![ContainerStatus {
                name: CONTAINER_NAME.to_owned(),
                image: JobConfig::default().loader_image,
                image_id: "ghcr.io/lsc-sde/crate-loader@sha256:0".to_owned(),
                ready: false,
                restart_count: 0,
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code,
                        reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.to_owned()),
                        message: Some(result.to_termination_message()),
                        finished_at: finished,
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn loaded_result() -> LoadResult {
    LoadResult {
        outcome: Outcome::Loaded,
        commit: Some(NEW_COMMIT.to_owned()),
        revision: Some(format!("main@sha1:{NEW_COMMIT}")),
        datasource: Some(NAME.to_owned()),
        fetch: None,
        warnings: 2,
        message: format!("applied AnalyticsDataSource {NS}/{NAME} from main@sha1:{NEW_COMMIT}"),
    }
}

fn failed_result(outcome: Outcome, message: &str) -> LoadResult {
    LoadResult {
        outcome,
        commit: None,
        revision: None,
        datasource: None,
        fetch: None,
        warnings: 0,
        message: message.to_owned(),
    }
}

const AUTH_MESSAGE: &str = "failed to fetch https://github.com/lsc-sde/demo-crate.git: the repository rejected the credentials; check the token in Secret demo-token";
const FETCH_MESSAGE: &str = "failed to fetch https://github.com/lsc-sde/demo-crate.git: connection reset; retrying may help";

// ---------------------------------------------------------------------------------------------
// The mock API server
// ---------------------------------------------------------------------------------------------

/// One request the mock server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: Option<String>,
    body: Value,
}

type Reply = Box<dyn FnOnce(&Value) -> (StatusCode, Value) + Send>;

/// One expected request and the answer to it.
struct Step {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    reply: Reply,
    /// The reconcile may end without making this request (only trailing steps may be).
    optional: bool,
}

impl Step {
    fn new(method: Method, path: String, reply: Reply) -> Self {
        Step {
            method,
            path,
            query: Vec::new(),
            reply,
            optional: false,
        }
    }

    fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    fn describe(&self) -> String {
        format!("{} {} {:?}", self.method, self.path, self.query)
    }

    fn check(&self, index: usize, seen: &Seen, before: &[Seen]) {
        let context = || {
            format!(
                "request #{index}: expected {}, got {} {} {:?}\nrequests before it: {:#?}",
                self.describe(),
                seen.method,
                seen.path,
                seen.query,
                before
                    .iter()
                    .map(|s| format!("{} {}", s.method, s.path))
                    .collect::<Vec<_>>()
            )
        };
        assert_eq!(seen.method, self.method, "{}", context());
        assert_eq!(seen.path, self.path, "{}", context());
        for (key, value) in &self.query {
            assert_eq!(
                seen.query.get(*key),
                Some(value),
                "query {key}: {}",
                context()
            );
        }
    }
}

/// Echoes the request body, as the API server does for creates and applies, adding what it
/// would set on a new object.
fn echo() -> Reply {
    Box::new(|body| {
        let mut object = body.clone();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("uid")
                .or_insert_with(|| json!("server-assigned-uid"));
            meta.entry("resourceVersion")
                .or_insert_with(|| json!("3000"));
            meta.entry("creationTimestamp")
                .or_insert_with(|| json!(Timestamp::now().to_string()));
        }
        (StatusCode::OK, object)
    })
}

fn respond(value: Value) -> Reply {
    Box::new(move |_| (StatusCode::OK, value))
}

fn api_status(code: StatusCode, reason: &str, message: &str) -> Reply {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    Box::new(move |_| (code, body))
}

fn list(kind: &str, items: &[Value]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"resourceVersion": "4000"},
        "items": items,
    })
}

// Expected requests.

fn apply_step(path: String) -> Step {
    Step::new(Method::PATCH, path, echo())
        .query("fieldManager", "crate-operator")
        .query("force", "true")
}

/// The loader's ServiceAccount, Role, RoleBinding and NetworkPolicy in `ns`, in that order.
fn namespace_resources(ns: &str) -> Vec<Step> {
    vec![
        apply_step(format!(
            "/api/v1/namespaces/{ns}/serviceaccounts/crate-loader"
        )),
        apply_step(format!(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/crate-loader"
        )),
        apply_step(format!(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/crate-loader"
        )),
        apply_step(format!(
            "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/crate-loader"
        )),
    ]
}

fn jobs_path(ns: &str) -> String {
    format!("/apis/batch/v1/namespaces/{ns}/jobs")
}

fn create_job(ns: &str) -> Step {
    Step::new(Method::POST, jobs_path(ns), echo())
}

fn create_job_fails(ns: &str, code: StatusCode, reason: &str, message: &str) -> Step {
    Step::new(
        Method::POST,
        jobs_path(ns),
        api_status(code, reason, message),
    )
}

fn publish_event(ns: &str) -> Step {
    Step::new(
        Method::POST,
        format!("/apis/events.k8s.io/v1/namespaces/{ns}/events"),
        echo(),
    )
}

fn list_pods(ns: &str, job: &str, pods: &[Pod]) -> Step {
    let items: Vec<Value> = pods
        .iter()
        .map(|p| serde_json::to_value(p).expect("pod serialises"))
        .collect();
    Step::new(
        Method::GET,
        format!("/api/v1/namespaces/{ns}/pods"),
        respond(list("PodList", &items)),
    )
    .query(
        "labelSelector",
        format!("batch.kubernetes.io/job-name={job}"),
    )
}

fn list_pod_mount_events(ns: &str, pod: &str, events: &[CoreEvent]) -> Step {
    list_events(
        ns,
        format!("involvedObject.kind=Pod,involvedObject.name={pod},reason=FailedMount"),
        events,
    )
}

fn list_job_events(ns: &str, job: &str, events: &[CoreEvent]) -> Step {
    list_events(
        ns,
        format!("involvedObject.kind=Job,involvedObject.name={job},reason=FailedCreate"),
        events,
    )
}

fn list_events(ns: &str, field_selector: String, events: &[CoreEvent]) -> Step {
    let items: Vec<Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).expect("event serialises"))
        .collect();
    Step::new(
        Method::GET,
        format!("/api/v1/namespaces/{ns}/events"),
        respond(list("EventList", &items)),
    )
    .query("fieldSelector", field_selector)
}

/// The server-side apply of the crate's status; answers with the crate carrying that status.
fn patch_status(ac: &AnalyticsCrate) -> Step {
    let ac = ac.clone();
    Step::new(
        Method::PATCH,
        format!(
            "/apis/xlscsde.nhs.uk/v1/namespaces/{}/analyticscrates/{}/status",
            ac.namespace().expect("namespaced"),
            ac.name_any()
        ),
        Box::new(move |body| {
            let status = serde_json::from_value(body["status"].clone()).expect("status parses");
            let value = serde_json::to_value(with_status(&ac, status)).expect("crate serialises");
            (StatusCode::OK, value)
        }),
    )
    .query("fieldManager", "crate-operator")
    .query("force", "true")
}

/// What one reconcile did.
struct Reconciled {
    result: Result<Action, controller::Error>,
    seen: Vec<Seen>,
}

impl Reconciled {
    fn action(&self) -> Action {
        match &self.result {
            Ok(action) => action.clone(),
            Err(error) => panic!("reconcile failed: {error}"),
        }
    }

    fn bodies(&self, method: &Method, path_suffix: &str) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|s| s.method == *method && s.path.ends_with(path_suffix))
            .map(|s| &s.body)
            .collect()
    }

    /// The Job the reconcile created.
    fn created_job(&self) -> Job {
        let bodies = self.bodies(&Method::POST, "/jobs");
        assert_eq!(bodies.len(), 1, "exactly one Job create");
        serde_json::from_value(bodies[0].clone()).expect("a Job")
    }

    /// The status the reconcile applied, checking the body carries nothing but the status.
    fn status(&self) -> AnalyticsCrateStatus {
        self.status_if_patched().expect("a status patch")
    }

    fn status_if_patched(&self) -> Option<AnalyticsCrateStatus> {
        let bodies = self.bodies(&Method::PATCH, "/status");
        assert!(bodies.len() <= 1, "at most one status patch");
        let body = bodies.first()?;
        let keys: Vec<&str> = body
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["apiVersion", "kind", "status"], "{body}");
        assert_eq!(body["apiVersion"], "xlscsde.nhs.uk/v1");
        assert_eq!(body["kind"], "AnalyticsCrate");
        Some(serde_json::from_value(body["status"].clone()).expect("status parses"))
    }

    fn events(&self) -> Vec<Event> {
        self.bodies(&Method::POST, "/events")
            .into_iter()
            .map(|b| serde_json::from_value(b.clone()).expect("an events.k8s.io Event"))
            .collect()
    }

    fn paths(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }
}

/// A `Context` over a mock API server, plus its loader-Job index.
struct Harness {
    ctx: Arc<Context>,
    handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    jobs: Arc<Jobs>,
}

fn settings() -> Settings {
    Settings {
        job: JobConfig::default(),
        manage_loader_namespaces: true,
        max_running: 10,
        max_running_per_namespace: 3,
        max_concurrent_reconciles: 8,
    }
}

impl Harness {
    fn new() -> Self {
        Self::with(settings())
    }

    fn with(settings: Settings) -> Self {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let jobs = Arc::new(Jobs::default());
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "crate-operator".to_owned(),
                instance: Some("crate-operator-0".to_owned()),
            },
        );
        let ctx = Context::new(
            client,
            settings,
            Arc::clone(&jobs),
            recorder,
            Arc::new(Metrics::default()),
        );
        Harness {
            ctx: Arc::new(ctx),
            handle,
            jobs,
        }
    }

    /// Delivers a Job to the store, as the Job watch would.
    fn watch(&mut self, job: &Job) {
        self.jobs
            .apply(&watcher::Event::Apply(CachedJob::from(job.clone())));
    }

    /// The reconcile that the watch event of a status write triggers. It must start nothing and
    /// write nothing. Returns the crate as it is afterwards.
    async fn settle(&mut self, ac: &AnalyticsCrate) -> AnalyticsCrate {
        let out = self.reconcile(ac, vec![]).await;
        assert_eq!(out.action(), Action::await_change());
        out.status_if_patched()
            .map_or_else(|| ac.clone(), |status| with_status(ac, status))
    }

    /// Runs one reconcile of `ac` while the mock server answers exactly `steps`, in order.
    async fn reconcile(&mut self, ac: &AnalyticsCrate, steps: Vec<Step>) -> Reconciled {
        let ctx = self.ctx.clone();
        let object = Arc::new(ac.clone());
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        // Boxed: the reconcile future is large (clippy::large_futures).
        let run = Box::pin(async move {
            let result = controller::reconcile(object, ctx).await;
            done.send(()).expect("the server waits for the reconcile");
            result
        });
        let serve = Box::pin(serve(&mut self.handle, steps, finished));
        let (result, seen) =
            tokio::time::timeout(SCENARIO_TIMEOUT, async { tokio::join!(run, serve) })
                .await
                .expect("the reconcile and the scripted requests finish in time");
        Reconciled { result, seen }
    }
}

async fn read(request: Request<Body>) -> Seen {
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.expect("request body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("request bodies are JSON")
    };
    Seen {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(parse_query).unwrap_or_default(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    }
}

/// Answers `steps` in order; panics on a request out of script, and when the reconcile ends
/// with required steps left.
async fn serve(
    handle: &mut tower_test::mock::Handle<Request<Body>, Response<Body>>,
    steps: Vec<Step>,
    mut finished: tokio::sync::oneshot::Receiver<()>,
) -> Vec<Seen> {
    let total = steps.len();
    let mut steps = std::collections::VecDeque::from(steps);
    let mut seen: Vec<Seen> = Vec::new();
    let made = |seen: &[Seen]| {
        seen.iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect::<Vec<_>>()
    };
    while let Some(step) = steps.pop_front() {
        let index = seen.len();
        let next = tokio::select! {
            biased;
            next = handle.next_request() => Some(next.expect("the client is alive")),
            _ = &mut finished => None,
        };
        let Some((request, send)) = next else {
            let missing: Vec<String> = std::iter::once(&step)
                .chain(&steps)
                .filter(|s| !s.optional)
                .map(Step::describe)
                .collect();
            assert!(
                missing.is_empty(),
                "the reconcile finished after {index} of {total} expected requests; never made: {missing:#?}\nmade: {:#?}",
                made(&seen)
            );
            return seen;
        };
        let request = read(request).await;
        step.check(index, &request, &seen);
        let (code, body) = (step.reply)(&request.body);
        let response = Response::builder()
            .status(code)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response");
        send.send_response(response);
        seen.push(request);
    }
    tokio::select! {
        biased;
        next = handle.next_request() => {
            let (request, _) = next.expect("the client is alive");
            let request = read(request).await;
            panic!(
                "unexpected request after the {total} scripted ones: {} {} {:?}\nbody: {}\nmade before: {:#?}",
                request.method, request.path, request.query, request.body, made(&seen)
            );
        }
        _ = &mut finished => {}
    }
    seen
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------------

/// Asserts a condition's status and reason (and that it describes `generation`).
#[track_caller]
fn assert_condition(
    status: &AnalyticsCrateStatus,
    type_: &str,
    expected: &str,
    reason: &str,
    generation: i64,
) -> Condition {
    let found = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:#?}", status.conditions));
    assert_eq!(
        (found.status.as_str(), found.reason.as_str()),
        (expected, reason),
        "{type_}: {found:#?}"
    );
    assert_eq!(found.observed_generation, Some(generation), "{found:#?}");
    found.clone()
}

#[track_caller]
fn assert_no_condition_reason(status: &AnalyticsCrateStatus, reason: &str) {
    assert!(
        status.conditions.iter().all(|c| c.reason != reason),
        "no condition should have reason {reason}: {:?}",
        status.conditions
    );
}

fn assert_no_condition(status: &AnalyticsCrateStatus, type_: &str) {
    assert!(
        status.conditions.iter().all(|c| c.type_ != type_),
        "unexpected {type_} condition: {:#?}",
        status.conditions
    );
}

/// The requeue delay of an action (`Action` keeps it private; its `Debug` shows it).
fn requeue_after(action: &Action) -> Option<Duration> {
    let text = format!("{action:?}");
    if text.contains("requeue_after: None") {
        return None;
    }
    let start = text.find("Some(").expect("requeue_after: Some(..)") + "Some(".len();
    let end = start + text[start..].find(')').expect("closing parenthesis");
    let duration = &text[start..end];
    let split = duration
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .expect("a unit");
    let (number, unit) = duration.split_at(split);
    let number: f64 = number.parse().expect("a number");
    let seconds = match unit {
        "s" => number,
        "ms" => number / 1e3,
        "µs" => number / 1e6,
        "ns" => number / 1e9,
        _ => panic!("unknown unit in {duration}"),
    };
    Some(Duration::from_secs_f64(seconds))
}

fn main_args(job: &Job) -> Vec<String> {
    let spec = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    spec.containers
        .iter()
        .find(|c| c.name == CONTAINER_NAME)
        .and_then(|c| c.args.clone())
        .expect("load container args")
}

#[track_caller]
fn assert_owned_by_crate(job: &Job, ac: &AnalyticsCrate) {
    let owners = job.owner_references();
    assert_eq!(owners.len(), 1, "{owners:?}");
    let owner = &owners[0];
    assert_eq!(owner.api_version, "xlscsde.nhs.uk/v1");
    assert_eq!(owner.kind, "AnalyticsCrate");
    assert_eq!(Some(owner.name.clone()), ac.metadata.name);
    assert_eq!(Some(owner.uid.clone()), ac.metadata.uid);
    assert_eq!(owner.controller, Some(true));
}

#[track_caller]
fn assert_event(event: &Event, type_: &str, reason: &str, note_contains: &str) {
    assert_eq!(event.type_.as_deref(), Some(type_), "{event:#?}");
    assert_eq!(event.reason.as_deref(), Some(reason), "{event:#?}");
    assert!(
        event
            .note
            .as_deref()
            .is_some_and(|n| n.contains(note_contains)),
        "note should contain {note_contains:?}: {event:#?}"
    );
    let regarding: &ObjectReference = event.regarding.as_ref().expect("regarding");
    assert_eq!(regarding.kind.as_deref(), Some("AnalyticsCrate"));
    assert_eq!(regarding.name.as_deref(), Some(NAME));
    assert_eq!(regarding.namespace.as_deref(), Some(NS));
    assert_eq!(regarding.uid.as_deref(), Some(UID));
    assert_eq!(
        event.reporting_controller.as_deref(),
        Some("crate-operator")
    );
}

fn start_steps(with_namespace: bool) -> Vec<Step> {
    let mut steps = if with_namespace {
        namespace_resources(NS)
    } else {
        Vec::new()
    };
    steps.push(create_job(NS));
    steps.push(publish_event(NS));
    steps
}

// ---------------------------------------------------------------------------------------------
// 1, 2: a new crate
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_new_crate_gets_the_loader_namespace_resources_a_generation_job_an_event_and_a_loading_status()
 {
    let mut h = Harness::new();
    let ac = crate_fixture().build();

    let mut steps = start_steps(true);
    steps.push(patch_status(&ac));
    let out = h.reconcile(&ac, steps).await;

    assert_eq!(out.action(), Action::await_change());
    // Namespace resources: server-side applied by the manager's field manager.
    for (seen, kind) in
        out.seen
            .iter()
            .zip(["ServiceAccount", "Role", "RoleBinding", "NetworkPolicy"])
    {
        assert_eq!(seen.body["kind"], kind);
        assert_eq!(seen.body["metadata"]["namespace"], NS);
        assert_eq!(
            seen.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
    }
    // The Job: deterministic name, owned by the crate, annotated with trigger and generation.
    let created = out.created_job();
    assert_eq!(
        created.name_any(),
        job::job_name(NAME, UID, "generation:1", None)
    );
    assert_eq!(created.namespace().as_deref(), Some(NS));
    assert_owned_by_crate(&created, &ac);
    assert_eq!(created.annotations()[ANNOTATION_TRIGGER], "generation:1");
    assert_eq!(created.annotations()[job::ANNOTATION_CRATE_GENERATION], "1");
    assert!(
        created.finalizers().is_empty(),
        "the Job carries no finalizer"
    );
    assert!(
        !main_args(&created)
            .iter()
            .any(|a| a.starts_with("--last-commit")),
        "nothing was loaded before"
    );
    // The event.
    let events = out.events();
    assert_eq!(events.len(), 1);
    assert_event(&events[0], "Normal", "Loading", &created.name_any());
    assert_event(&events[0], "Normal", "Loading", "generation:1");
    // The status.
    let status = out.status();
    assert_eq!(status.status_text, "Loading");
    assert_eq!(status.last_job, Some(created.name_any()));
    assert_eq!(status.observed_generation, None, "nothing loaded yet");
    assert_eq!(status.commit_id, None);
    assert_eq!(status.failures, None);
    assert_condition(&status, "Reconciling", "True", "Loading", 1);
    assert_condition(&status, "Ready", "Unknown", "Loading", 1);
    assert_no_condition(&status, "Stalled");
    assert_eq!(h.ctx.metrics.jobs_started.get(), 1);
}

#[tokio::test]
async fn the_loader_namespace_resources_are_applied_once_per_namespace_and_a_job_is_created_once() {
    let mut h = Harness::new();
    let ac = crate_fixture().build();
    let mut steps = start_steps(true);
    steps.push(patch_status(&ac));
    let first = h.reconcile(&ac, steps).await;
    let loading = with_status(&ac, first.status());

    // The same crate again, before the Job watch delivered the new Job: nothing to do at all.
    let again = h.reconcile(&loading, Vec::new()).await;
    assert_eq!(again.action(), Action::await_change());

    // Another new crate in the same namespace: a Job, but no second round of applies.
    let other = crate_fixture()
        .named("other", "0d7e3c51-7a1b-4a4b-8f0e-5a4c3b2a1f00")
        .build();
    let mut steps = start_steps(false);
    steps.push(patch_status(&other));
    let second = h.reconcile(&other, steps).await;
    assert_eq!(
        second.created_job().name_any(),
        job::job_name(
            "other",
            "0d7e3c51-7a1b-4a4b-8f0e-5a4c3b2a1f00",
            "generation:1",
            None
        )
    );
    assert_eq!(h.ctx.metrics.jobs_started.get(), 2);
}

#[tokio::test]
async fn a_reload_asked_for_while_a_just_started_job_is_not_yet_watched_waits_for_that_job() {
    let mut h = Harness::new();
    // A changed spec starts a Job.
    let ac = crate_fixture()
        .generation(2)
        .status(ready_status(1))
        .build();
    let mut steps = start_steps(true);
    steps.push(patch_status(&ac));
    let first = h.reconcile(&ac, steps).await;
    let started = first.created_job().name_any();

    // A reload arrives before the Job watch has delivered that Job: no second Job for the crate.
    let mut reloaded = with_status(&ac, first.status());
    reloaded.metadata.annotations = Some(std::collections::BTreeMap::from([(
        ANNOTATION_RELOAD_REQUESTED_AT.to_owned(),
        "2026-11-22T13:00:00Z".to_owned(),
    )]));
    let again = h.reconcile(&reloaded, Vec::new()).await;
    assert_eq!(again.action(), Action::await_change());
    assert_eq!(h.ctx.metrics.jobs_started.get(), 1, "still only {started}");
}

#[tokio::test]
async fn without_manage_loader_namespaces_no_namespace_resources_are_applied() {
    let mut h = Harness::with(Settings {
        manage_loader_namespaces: false,
        ..settings()
    });
    let ac = crate_fixture().build();
    let mut steps = start_steps(false);
    steps.push(patch_status(&ac));
    let out = h.reconcile(&ac, steps).await;

    assert_eq!(
        out.paths(),
        [
            format!("POST /apis/batch/v1/namespaces/{NS}/jobs"),
            format!("POST /apis/events.k8s.io/v1/namespaces/{NS}/events"),
            format!("PATCH /apis/xlscsde.nhs.uk/v1/namespaces/{NS}/analyticscrates/{NAME}/status"),
        ]
    );
    assert_eq!(
        out.created_job().name_any(),
        job::job_name(NAME, UID, "generation:1", None)
    );
    assert_eq!(out.status().status_text, "Loading");
}

// ---------------------------------------------------------------------------------------------
// 7, 3: recording a success; an unchanged crate afterwards
// ---------------------------------------------------------------------------------------------

/// The status after the generation-1 Job was created (what scenario 1 writes).
fn loading_status(trigger: &str) -> AnalyticsCrateStatus {
    let at = ago(60);
    AnalyticsCrateStatus {
        status_text: "Loading".to_owned(),
        conditions: vec![
            condition("Reconciling", "True", "Loading", 1, at),
            condition("Ready", "Unknown", "Loading", 1, at),
        ],
        last_job: Some(job::job_name(NAME, UID, trigger, None)),
        ..AnalyticsCrateStatus::default()
    }
}

/// Reconciles a crate whose `trigger` Job just succeeded with `loaded_result()`.
async fn record_success(h: &mut Harness, ac: &AnalyticsCrate, trigger: &str) -> Reconciled {
    record_success_at(h, ac, trigger, ago(5)).await
}

/// Reconciles a crate whose `trigger` Job succeeded at `at` with `loaded_result()`.
async fn record_success_at(
    h: &mut Harness,
    ac: &AnalyticsCrate,
    trigger: &str,
    at: Timestamp,
) -> Reconciled {
    let finished = loader_job(
        ac,
        trigger,
        ac.metadata.generation.expect("generation"),
        JobPhase::Complete { at },
    );
    h.watch(&finished);
    let pod = loader_pod(&finished, &loaded_result());
    h.reconcile(
        ac,
        vec![
            list_pods(NS, &finished.name_any(), &[pod]),
            publish_event(NS),
            patch_status(ac),
        ],
    )
    .await
}

#[tokio::test]
async fn a_succeeded_job_is_recorded_from_its_pods_termination_message() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .status(loading_status("generation:1"))
        .build();
    let out = record_success(&mut h, &ac, "generation:1").await;

    assert_eq!(out.action(), Action::await_change());
    let events = out.events();
    assert_eq!(events.len(), 1);
    assert_event(&events[0], "Normal", "Loaded", &loaded_result().message);

    let status = out.status();
    let job_name = job::job_name(NAME, UID, "generation:1", None);
    assert_eq!(status.status_text, "Ready");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.commit_id.as_deref(), Some(NEW_COMMIT));
    assert_eq!(status.revision, Some(format!("main@sha1:{NEW_COMMIT}")));
    assert_eq!(status.datasource.as_deref(), Some(NAME));
    assert_eq!(status.warnings, Some(2));
    assert_eq!(status.last_job, Some(job_name));
    assert_eq!(status.failures, None);
    assert!(status.last_load_time.is_some());
    let ready = assert_condition(&status, "Ready", "True", "Loaded", 1);
    assert_eq!(ready.message, loaded_result().message);
    assert_condition(&status, "Reconciling", "False", "Loaded", 1);
    assert_condition(&status, "Stalled", "False", "Loaded", 1);
    assert_eq!(status.last_handled_reload_at, None);
}

#[tokio::test]
async fn a_success_clears_earlier_failures() {
    let mut h = Harness::new();
    let mut prev = loading_status("retry:1:2");
    prev.failures = Some(2);
    prev.status_text = "Loading".to_owned();
    let ac = crate_fixture().status(prev).build();
    let out = record_success(&mut h, &ac, "retry:1:2").await;
    let status = out.status();
    assert_eq!(status.failures, None);
    assert_eq!(status.status_text, "Ready");
    assert_condition(&status, "Ready", "True", "Loaded", 1);
}

#[tokio::test]

async fn an_unchanged_crate_just_loaded_makes_no_requests() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .status(loading_status("generation:1"))
        .build();
    let recorded = record_success(&mut h, &ac, "generation:1").await;
    let loaded = with_status(&ac, recorded.status());

    // The watch brings back the crate with the status just written: nothing is due.
    let out = h.reconcile(&loaded, Vec::new()).await;
    assert_eq!(out.action(), Action::await_change());
}

#[tokio::test]
async fn an_unchanged_crate_that_settled_after_its_load_makes_no_requests() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .status(loading_status("generation:1"))
        .build();
    let recorded = record_success(&mut h, &ac, "generation:1").await;
    let loaded = with_status(&ac, recorded.status());
    let settled = h.settle(&loaded).await;

    // Whatever the settling rewrote, the crate still reads as loaded.
    let status = settled.status.clone().expect("status");
    assert_eq!(status.status_text, "Ready");
    assert_eq!(status.commit_id.as_deref(), Some(NEW_COMMIT));
    assert_eq!(status.observed_generation, Some(1));
    assert_condition(&status, "Ready", "True", "Loaded", 1);
    assert_eq!(
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "Reconciling")
            .map(|c| c.status.as_str()),
        Some("False")
    );
    for _ in 0..2 {
        let out = h.reconcile(&settled, Vec::new()).await;
        assert_eq!(out.action(), Action::await_change());
    }
}

// ---------------------------------------------------------------------------------------------
// 4, 5: restarts and spec changes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn first_sight_of_an_up_to_date_crate_after_a_restart_makes_no_requests() {
    // A fresh harness is a manager that has just started: the crate was loaded by another.
    let mut h = Harness::new();
    let ac = crate_fixture().status(ready_status(1)).build();
    let out = h.reconcile(&ac, Vec::new()).await;
    assert_eq!(out.action(), Action::await_change());
    assert_eq!(h.ctx.metrics.jobs_started.get(), 0);
}

#[tokio::test]
async fn first_sight_after_a_restart_continues_the_interval_from_the_status() {
    let mut h = Harness::new();
    let mut ac = crate_fixture().status(ready_status(1)).build();
    ac.spec.interval = Some("2h".to_owned());
    let out = h.reconcile(&ac, Vec::new()).await;
    assert_eq!(h.ctx.metrics.jobs_started.get(), 0);
    // Loaded an hour ago (ready_status): the next load is due in an hour plus the crate's
    // jitter (at most a tenth of the interval), not now.
    let wait = requeue_after(&out.action()).expect("a requeue for the next interval");
    assert!(
        wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600 + 720),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_changed_spec_starts_a_job_for_the_new_generation() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .generation(2)
        .status(ready_status(1))
        .build();
    let mut steps = start_steps(true);
    steps.push(patch_status(&ac));
    let out = h.reconcile(&ac, steps).await;

    let created = out.created_job();
    assert_eq!(
        created.name_any(),
        job::job_name(NAME, UID, "generation:2", job::last_load_second(&ac))
    );
    assert_eq!(created.annotations()[job::ANNOTATION_CRATE_GENERATION], "2");
    assert!(main_args(&created).contains(&format!("--last-commit={COMMIT}")));
    let status = out.status();
    assert_eq!(status.status_text, "Loading");
    assert_eq!(status.observed_generation, Some(1), "not loaded yet");
    assert_condition(&status, "Reconciling", "True", "Loading", 2);
    // Ready keeps describing the loaded generation-1 datasource.
    assert_eq!(
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status.as_str()),
        Some("True")
    );
}

// ---------------------------------------------------------------------------------------------
// 6: a running Job
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_running_job_is_awaited_without_creating_another() {
    let mut h = Harness::new();
    let ac = crate_fixture().build();
    let running = loader_job(&ac, "generation:1", 1, JobPhase::Running);
    h.watch(&running);

    let out = h.reconcile(&ac, vec![patch_status(&ac)]).await;
    assert_eq!(requeue_after(&out.action()), Some(Duration::from_secs(20)));
    let status = out.status();
    assert_eq!(status.status_text, "Loading");
    assert_eq!(status.last_job, Some(running.name_any()));
    assert_condition(&status, "Reconciling", "True", "Loading", 1);
    assert_condition(&status, "Ready", "Unknown", "Loading", 1);

    // Once the status says so, looking again changes nothing.
    let loading = with_status(&ac, status);
    let again = h.reconcile(&loading, Vec::new()).await;
    assert_eq!(
        requeue_after(&again.action()),
        Some(Duration::from_secs(20))
    );
}

#[tokio::test]
async fn a_job_whose_pod_a_quota_refuses_is_reported_as_quota_exceeded() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .status(loading_status("generation:1"))
        .build();
    let stuck = loader_job(&ac, "generation:1", 1, JobPhase::NoPod { age: 120 });
    h.watch(&stuck);
    let refused = CoreEvent {
        metadata: ObjectMeta {
            name: Some(format!("{}.17a", stuck.name_any())),
            namespace: Some(NS.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("Job".to_owned()),
            name: Some(stuck.name_any()),
            namespace: Some(NS.to_owned()),
            ..ObjectReference::default()
        },
        reason: Some("FailedCreate".to_owned()),
        message: Some(format!(
            "Error creating: pods \"{}-abcde\" is forbidden: exceeded quota: compute, requested: limits.memory=512Mi, used: limits.memory=2Gi, limited: limits.memory=2Gi",
            stuck.name_any()
        )),
        ..CoreEvent::default()
    };
    let out = h
        .reconcile(
            &ac,
            vec![
                list_job_events(NS, &stuck.name_any(), &[refused]),
                patch_status(&ac),
            ],
        )
        .await;
    assert_eq!(requeue_after(&out.action()), Some(Duration::from_secs(60)));
    let status = out.status();
    assert_eq!(status.status_text, "Waiting");
    let ready = assert_condition(&status, "Ready", "False", "QuotaExceeded", 1);
    assert!(ready.message.contains("exceeded quota"), "{ready:?}");
    assert_condition(&status, "Reconciling", "True", "QuotaExceeded", 1);
}

/// The Pod of `job`, created but not started (`ContainerCreating`).
fn pending_pod(job: &Job) -> Pod {
    let job_name = job.name_any();
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{job_name}-x7k2p")),
            namespace: job.namespace(),
            labels: Some(BTreeMap::from([(
                "batch.kubernetes.io/job-name".to_owned(),
                job_name,
            )])),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Pending".to_owned()),
            ..PodStatus::default()
        }),
    }
}

fn failed_mount(pod: &Pod, message: &str) -> CoreEvent {
    CoreEvent {
        metadata: ObjectMeta {
            name: Some(format!("{}.18b", pod.name_any())),
            namespace: Some(NS.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".to_owned()),
            name: Some(pod.name_any()),
            namespace: Some(NS.to_owned()),
            ..ObjectReference::default()
        },
        reason: Some("FailedMount".to_owned()),
        message: Some(message.to_owned()),
        type_: Some("Warning".to_owned()),
        ..CoreEvent::default()
    }
}

const MOUNT_MESSAGE: &str =
    "MountVolume.SetUp failed for volume \"credentials\" : secret \"demo-git\" not found";

/// A crate whose loader Job is 90 s old and whose Pod has not started.
struct PendingLoad {
    h: Harness,
    ac: AnalyticsCrate,
    pod: Pod,
}

impl PendingLoad {
    fn new() -> PendingLoad {
        let mut h = Harness::new();
        let ac = crate_fixture()
            .status(loading_status("generation:1"))
            .build();
        let job = loader_job(&ac, "generation:1", 1, JobPhase::PodPending { age: 90 });
        h.watch(&job);
        let pod = pending_pod(&job);
        PendingLoad { h, ac, pod }
    }

    /// The requests that look at the Pod, which has `mount_failures` as its events; then `more`.
    fn steps(&self, mount_failures: &[&str], more: Vec<Step>) -> Vec<Step> {
        let job = self.pod.labels()["batch.kubernetes.io/job-name"].clone();
        let events: Vec<CoreEvent> = mount_failures
            .iter()
            .map(|m| failed_mount(&self.pod, m))
            .collect();
        let mut steps = vec![
            list_pods(NS, &job, std::slice::from_ref(&self.pod)),
            list_pod_mount_events(NS, &self.pod.name_any(), &events),
        ];
        steps.extend(more);
        steps
    }
}

#[tokio::test]
async fn a_loader_pod_that_cannot_mount_the_crate_secret_is_reported_with_the_kubelets_reason() {
    let mut load = PendingLoad::new();
    let ac = load.ac.clone();
    let steps = load.steps(&[MOUNT_MESSAGE], vec![publish_event(NS), patch_status(&ac)]);
    let out = load.h.reconcile(&ac, steps).await;
    // Still a load under way: once the Secret exists the Pod starts and the Job goes on.
    assert_eq!(requeue_after(&out.action()), Some(Duration::from_secs(20)));
    let status = out.status();
    assert_eq!(status.status_text, "Loading");
    let ready = assert_condition(&status, "Ready", "False", "PodBlocked", 1);
    assert!(
        ready.message.contains("secret \"demo-git\" not found"),
        "{ready:?}"
    );
    assert_condition(&status, "Reconciling", "True", "PodBlocked", 1);
    assert_event(&out.events()[0], "Warning", "PodBlocked", "demo-git");

    // Looking again while it is still blocked repeats neither the event nor the status write.
    let blocked = with_status(&ac, status);
    let steps = load.steps(&[MOUNT_MESSAGE], Vec::new());
    let again = load.h.reconcile(&blocked, steps).await;
    assert!(again.events().is_empty());
    assert!(again.status_if_patched().is_none());
}

#[tokio::test]
async fn a_loader_pod_that_is_slow_to_start_but_not_blocked_is_just_loading() {
    let mut load = PendingLoad::new();
    let ac = load.ac.clone();
    let steps = load.steps(&[], vec![patch_status(&ac)]);
    let out = load.h.reconcile(&ac, steps).await;
    assert_eq!(requeue_after(&out.action()), Some(Duration::from_secs(20)));
    let status = out.status();
    assert_condition(&status, "Reconciling", "True", "Loading", 1);
    assert_no_condition_reason(&status, "PodBlocked");
    assert!(out.events().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 8, 9: failures
// ---------------------------------------------------------------------------------------------

/// Reconciles a crate whose `trigger` Job failed at `at` with `result`.
async fn record_failure(
    h: &mut Harness,
    ac: &AnalyticsCrate,
    trigger: &str,
    result: &LoadResult,
    at: Timestamp,
) -> Reconciled {
    let reason = if result.outcome.is_permanent() {
        "PodFailurePolicy"
    } else {
        "BackoffLimitExceeded"
    };
    let failed = loader_job(ac, trigger, 1, JobPhase::Failed { at, reason });
    h.watch(&failed);
    let pod = loader_pod(&failed, result);
    h.reconcile(
        ac,
        vec![
            list_pods(NS, &failed.name_any(), &[pod]),
            publish_event(NS),
            patch_status(ac),
        ],
    )
    .await
}

#[tokio::test]
async fn a_permanent_failure_stalls_the_crate_and_nothing_is_retried() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .status(loading_status("generation:1"))
        .build();
    let result = failed_result(Outcome::AuthenticationFailed, AUTH_MESSAGE);
    assert_eq!(result.outcome.exit_code(), 11);
    let out = record_failure(&mut h, &ac, "generation:1", &result, ago(5)).await;

    assert_eq!(out.action(), Action::await_change());
    let events = out.events();
    assert_eq!(events.len(), 1);
    assert_event(&events[0], "Warning", "AuthenticationFailed", AUTH_MESSAGE);
    assert_event(
        &events[0],
        "Warning",
        "AuthenticationFailed",
        &format!(
            "kubectl logs job/{}",
            job::job_name(NAME, UID, "generation:1", None)
        ),
    );
    let status = out.status();
    assert_eq!(status.status_text, "Failed");
    assert_eq!(status.failures, Some(1));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.commit_id, None);
    let stalled = assert_condition(&status, "Stalled", "True", "AuthenticationFailed", 1);
    assert!(
        stalled
            .message
            .starts_with(&format!("{AUTH_MESSAGE}; no retry until")),
        "{}",
        stalled.message
    );
    let ready = assert_condition(&status, "Ready", "False", "AuthenticationFailed", 1);
    assert_eq!(ready.message, AUTH_MESSAGE);
    assert_condition(&status, "Reconciling", "False", "AuthenticationFailed", 1);

    // The following reconcile (woken by that status) starts nothing and writes nothing.
    let stalled_crate = with_status(&ac, status);
    let again = h.reconcile(&stalled_crate, Vec::new()).await;
    assert_eq!(again.action(), Action::await_change());
}

#[tokio::test]
async fn a_transient_failure_schedules_a_retry_and_waits_for_the_backoff() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .status(loading_status("generation:1"))
        .build();
    let result = failed_result(Outcome::FetchFailed, FETCH_MESSAGE);
    let out = record_failure(&mut h, &ac, "generation:1", &result, ago(1)).await;

    assert_eq!(out.action(), Action::await_change());
    assert_event(&out.events()[0], "Warning", "FetchFailed", FETCH_MESSAGE);
    let status = out.status();
    assert_eq!(status.status_text, "Failed");
    assert_eq!(status.failures, Some(1));
    let reconciling = assert_condition(&status, "Reconciling", "True", "RetryScheduled", 1);
    assert!(reconciling.message.contains(FETCH_MESSAGE));
    assert_condition(&status, "Ready", "False", "FetchFailed", 1);
    assert_condition(&status, "Stalled", "False", "FetchFailed", 1);

    // Before the backoff (10 s after the failure) nothing starts; the crate is requeued for it.
    let failed = with_status(&ac, status);
    let again = h.reconcile(&failed, Vec::new()).await;
    let wait = requeue_after(&again.action()).expect("a requeue for the retry");
    assert!(
        wait > Duration::from_secs(5) && wait <= Duration::from_secs(10),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_failed_job_without_a_termination_message_is_classified_by_its_exit_code() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .status(loading_status("generation:1"))
        .build();
    let failed = loader_job(
        &ac,
        "generation:1",
        1,
        JobPhase::Failed {
            at: ago(5),
            reason: "PodFailurePolicy",
        },
    );
    h.watch(&failed);
    let mut pod = loader_pod(&failed, &failed_result(Outcome::NotFound, "unused"));
    for status in pod
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut())
        .expect("container statuses")
    {
        if let Some(t) = status.state.as_mut().and_then(|s| s.terminated.as_mut()) {
            t.message = None;
        }
    }
    let out = h
        .reconcile(
            &ac,
            vec![
                list_pods(NS, &failed.name_any(), &[pod]),
                publish_event(NS),
                patch_status(&ac),
            ],
        )
        .await;
    let status = out.status();
    assert_eq!(status.status_text, "Failed");
    let stalled = assert_condition(&status, "Stalled", "True", "NotFound", 1);
    assert!(
        stalled.message.contains("exited with code 12"),
        "{stalled:?}"
    );
    assert_event(
        &out.events()[0],
        "Warning",
        "NotFound",
        "exited with code 12",
    );
    // The datasource name still comes from the Job's owner.
    assert_eq!(status.datasource.as_deref(), Some(NAME));
}

#[tokio::test]
async fn after_the_backoff_a_transient_failure_is_retried_with_a_retry_job() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .status(loading_status("generation:1"))
        .build();
    let result = failed_result(Outcome::FetchFailed, FETCH_MESSAGE);
    // The Job failed (and was recorded) longer ago than the first backoff step.
    let recorded = record_failure(&mut h, &ac, "generation:1", &result, ago(30)).await;
    let failed = with_status(&ac, recorded.status());

    let mut steps = start_steps(true);
    steps.push(patch_status(&failed));
    let out = h.reconcile(&failed, steps).await;
    let created = out.created_job();
    assert_eq!(
        created.name_any(),
        job::job_name(NAME, UID, "retry:1:1", job::last_load_second(&failed))
    );
    assert_eq!(created.annotations()[ANNOTATION_TRIGGER], "retry:1:1");
    let status = out.status();
    assert_eq!(status.status_text, "Loading");
    assert_eq!(status.failures, Some(1), "kept until the retry finishes");
    assert_eq!(status.last_job, Some(created.name_any()));
    assert_condition(&status, "Reconciling", "True", "Loading", 1);
    assert_condition(&status, "Ready", "False", "FetchFailed", 1);
}

// ---------------------------------------------------------------------------------------------
// 10, 14: the API server refuses the Job
// ---------------------------------------------------------------------------------------------

const QUOTA_MESSAGE: &str = "jobs.batch \"demo-0123456789\" is forbidden: exceeded quota: object-counts, requested: count/jobs.batch=1, used: count/jobs.batch=5, limited: count/jobs.batch=5";

#[tokio::test]
async fn a_job_refused_by_a_resource_quota_leaves_the_crate_waiting_without_a_hot_loop() {
    let mut h = Harness::new();
    let ac = crate_fixture().build();
    let mut steps = namespace_resources(NS);
    steps.push(create_job_fails(
        NS,
        StatusCode::FORBIDDEN,
        "Forbidden",
        QUOTA_MESSAGE,
    ));
    steps.push(publish_event(NS));
    steps.push(patch_status(&ac));
    let out = h.reconcile(&ac, steps).await;

    let action = out.action();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    assert!(requeue_after(&action).is_some_and(|d| d >= Duration::from_secs(60)));
    assert_event(
        &out.events()[0],
        "Warning",
        "QuotaExceeded",
        "exceeded quota",
    );
    let status = out.status();
    assert_eq!(status.status_text, "Waiting");
    let ready = assert_condition(&status, "Ready", "False", "QuotaExceeded", 1);
    assert!(ready.message.contains(QUOTA_MESSAGE), "{ready:?}");
    assert_condition(&status, "Reconciling", "True", "QuotaExceeded", 1);
    assert_eq!(status.last_job, None, "no Job exists");

    // The reconcile the status patch triggers tries once more and writes no status: the crate
    // is then only looked at every 60 s. The repeated event is counted on the first one.
    let waiting = with_status(&ac, status);
    let again = h
        .reconcile(
            &waiting,
            vec![
                create_job_fails(NS, StatusCode::FORBIDDEN, "Forbidden", QUOTA_MESSAGE),
                Step::new(
                    Method::PATCH,
                    format!(
                        "/apis/events.k8s.io/v1/namespaces/{NS}/events/{}",
                        out.events()[0].name_any()
                    ),
                    echo(),
                ),
            ],
        )
        .await;
    assert_eq!(again.action(), Action::requeue(Duration::from_secs(60)));
}

/// The create of `job` answered 409, then the read of the existing Job.
fn create_conflicts_with(ns: &str, existing: &Job) -> Vec<Step> {
    let name = existing.name_any();
    let body = serde_json::to_value(existing).expect("job serialises");
    vec![
        create_job_fails(
            ns,
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("jobs.batch \"{name}\" already exists"),
        ),
        Step::new(
            Method::GET,
            format!("{}/{name}", jobs_path(ns)),
            respond(body),
        ),
    ]
}

#[tokio::test]
async fn an_already_existing_running_job_counts_as_loading() {
    let mut h = Harness::new();
    let ac = crate_fixture().build();
    let existing = loader_job(&ac, "generation:1", 1, JobPhase::Running);
    let mut steps = namespace_resources(NS);
    steps.extend(create_conflicts_with(NS, &existing));
    steps.push(patch_status(&ac));
    let out = h.reconcile(&ac, steps).await;

    assert_eq!(out.action(), Action::await_change());
    assert!(out.events().is_empty(), "the other replica announced it");
    let status = out.status();
    assert_eq!(status.status_text, "Loading");
    assert_eq!(status.last_job, Some(existing.name_any()));
    assert_condition(&status, "Reconciling", "True", "Loading", 1);
    assert_eq!(h.ctx.metrics.jobs_started.get(), 0);
}

#[tokio::test]
async fn an_already_existing_finished_job_is_not_reported_as_loading_but_recorded_once_watched() {
    let mut h = Harness::new();
    let ac = crate_fixture().build();
    let existing = loader_job(&ac, "generation:1", 1, JobPhase::Complete { at: ago(5) });
    let mut steps = namespace_resources(NS);
    steps.extend(create_conflicts_with(NS, &existing));
    let out = h.reconcile(&ac, steps).await;

    // No false "Loading": the status is left alone and the crate is looked at again shortly.
    assert_eq!(out.status_if_patched(), None);
    assert_eq!(out.action(), Action::requeue(Duration::from_secs(1)));
    assert!(out.events().is_empty());
    // Once the watch delivers it, it is recorded like any finished load, and only once.
    h.watch(&existing);
    let recorded = record_success(&mut h, &ac, "generation:1").await;
    assert_eq!(recorded.status().last_job, Some(existing.name_any()));
}

#[tokio::test]
async fn a_job_of_the_same_name_that_is_not_the_crates_fails_the_reconcile_naming_it() {
    let mut h = Harness::new();
    let ac = crate_fixture().build();
    let mut foreign = loader_job(&ac, "generation:1", 1, JobPhase::Running);
    foreign.metadata.owner_references = None;
    let mut steps = namespace_resources(NS);
    steps.extend(create_conflicts_with(NS, &foreign));
    let out = h.reconcile(&ac, steps).await;
    let error = out.result.expect_err("the reconcile fails");
    assert!(
        error.to_string().contains("belongs to something else"),
        "{error}"
    );
}

#[tokio::test]
async fn a_retry_after_a_later_failure_gets_a_new_job_name_while_the_old_job_is_kept() {
    // Generation 1 failed (retry:1:1 ran and succeeded), later failed again: the retry counter
    // is back at 1, but the Job of the first retry is still kept for its logs.
    let h = Harness::new();
    let first_failure = crate_fixture()
        .status(AnalyticsCrateStatus {
            failures: Some(1),
            last_load_time: Some(Time(ago(7200))),
            ..ready_status(1)
        })
        .build();
    let second_failure = crate_fixture()
        .status(AnalyticsCrateStatus {
            failures: Some(1),
            last_load_time: Some(Time(ago(60))),
            ..ready_status(1)
        })
        .build();
    let cfg = &h.ctx.settings.job;
    let first = job::build(&first_failure, "retry:1:1", None, cfg).expect("builds");
    let second = job::build(&second_failure, "retry:1:1", None, cfg).expect("builds");
    assert_ne!(first.name_any(), second.name_any());
}

#[tokio::test]
async fn an_invalid_spec_is_reported_on_the_crate_once_and_starts_nothing() {
    let mut h = Harness::new();
    let mut ac = crate_fixture()
        .status(ready_status(1))
        .generation(2)
        .build();
    ac.spec.interval = Some("0s".to_owned());
    let out = h
        .reconcile(&ac, vec![publish_event(NS), patch_status(&ac)])
        .await;

    assert_eq!(out.action(), Action::await_change(), "no retry loop");
    assert_event(
        &out.events()[0],
        "Warning",
        "InvalidSpec",
        "spec.interval \"0s\"",
    );
    let status = out.status();
    assert_eq!(status.status_text, "Failed");
    assert_eq!(status.observed_generation, Some(2));
    let ready = assert_condition(&status, "Ready", "False", "InvalidSpec", 2);
    assert!(ready.message.contains("minimum of 1m"), "{ready:?}");
    assert_condition(&status, "Stalled", "True", "InvalidSpec", 2);
    // What was loaded before stays: the datasource and the commit.
    assert_eq!(status.commit_id.as_deref(), Some(COMMIT));
    assert_eq!(status.datasource, ready_status(1).datasource);

    // The reconcile its own status write triggers changes nothing and says nothing again.
    let reported = with_status(&ac, status);
    let again = h.reconcile(&reported, Vec::new()).await;
    assert_eq!(again.action(), Action::await_change());
    assert_eq!(again.status_if_patched(), None);
}

#[tokio::test]
async fn a_spec_only_the_job_builder_can_refuse_is_reported_as_invalid_too() {
    let mut h = Harness::new();
    let mut ac = crate_fixture().build();
    ac.spec.repo.url = "git@example.org:org/crate.git".to_owned();
    ac.spec.repo.secret_key = "known_hosts".to_owned();
    let mut steps = namespace_resources(NS);
    steps.push(publish_event(NS));
    steps.push(patch_status(&ac));
    let out = h.reconcile(&ac, steps).await;
    assert_eq!(out.action(), Action::await_change());
    assert_event(&out.events()[0], "Warning", "InvalidSpec", "known_hosts");
    assert_condition(&out.status(), "Stalled", "True", "InvalidSpec", 1);
    assert_eq!(h.ctx.metrics.jobs_started.get(), 0);
}

#[tokio::test]
async fn a_fixed_spec_loads_again() {
    let mut h = Harness::new();
    let mut ac = crate_fixture()
        .status(ready_status(1))
        .generation(2)
        .build();
    ac.spec.repo.secret_name = Some("My_Secret".to_owned());
    let out = h
        .reconcile(&ac, vec![publish_event(NS), patch_status(&ac)])
        .await;
    let invalid = with_status(&ac, out.status());
    let mut fixed = invalid.clone();
    fixed.spec.repo.secret_name = Some("my-secret".to_owned());
    fixed.metadata.generation = Some(3);
    let mut steps = start_steps(true);
    steps.push(patch_status(&fixed));
    let started = h.reconcile(&fixed, steps).await;
    assert_eq!(
        started.created_job().annotations()[ANNOTATION_TRIGGER],
        "generation:3"
    );
}

#[tokio::test]
async fn any_other_job_creation_error_fails_the_reconcile_without_a_status_write() {
    let mut h = Harness::new();
    let ac = crate_fixture().build();
    let mut steps = namespace_resources(NS);
    steps.push(create_job_fails(
        NS,
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        "Job.batch \"demo\" is invalid: spec.template.spec.containers[0].image: Required value",
    ));
    let out = h.reconcile(&ac, steps).await;
    let error = out.result.expect_err("the reconcile fails");
    assert!(error.to_string().contains("create loader job"), "{error}");
    assert!(error.to_string().contains(NS), "{error}");
}

// ---------------------------------------------------------------------------------------------
// 11: capacity
// ---------------------------------------------------------------------------------------------

/// Running loader Jobs of other crates in `ns`.
fn other_running_jobs(ns: &str, count: usize) -> Vec<Job> {
    (0..count)
        .map(|i| {
            let mut other = crate_fixture()
                .named(&format!("busy-{i}"), &format!("busy-uid-{ns}-{i}"))
                .build();
            other.metadata.namespace = Some(ns.to_owned());
            loader_job(&other, "generation:1", 1, JobPhase::Running)
        })
        .collect()
}

#[tokio::test]
async fn at_the_per_namespace_cap_no_job_is_created_and_the_crate_waits() {
    let mut h = Harness::with(Settings {
        manage_loader_namespaces: false,
        max_running: 10,
        max_running_per_namespace: 2,
        ..settings()
    });
    for job in other_running_jobs(NS, 2)
        .iter()
        .chain(&other_running_jobs("elsewhere", 3))
    {
        h.watch(job);
    }
    let ac = crate_fixture().build();
    let out = h.reconcile(&ac, vec![patch_status(&ac)]).await;

    assert_eq!(requeue_after(&out.action()), Some(Duration::from_secs(15)));
    let status = out.status();
    assert_eq!(status.status_text, "Waiting");
    let reconciling = assert_condition(&status, "Reconciling", "True", "WaitingForCapacity", 1);
    assert!(
        reconciling
            .message
            .contains("--max-running-loads-per-namespace"),
        "{reconciling:?}"
    );
    assert_condition(&status, "Ready", "Unknown", "WaitingForCapacity", 1);
    assert_eq!(status.last_job, None);
    assert_eq!(h.ctx.metrics.crates_waiting.get(), 1);
}

#[tokio::test]
async fn a_crate_waiting_for_capacity_is_not_rewritten_and_starts_once_a_job_finishes() {
    let mut h = Harness::with(Settings {
        manage_loader_namespaces: false,
        max_running: 10,
        max_running_per_namespace: 1,
        ..settings()
    });
    let busy = other_running_jobs(NS, 1).remove(0);
    h.watch(&busy);
    let ac = crate_fixture().build();
    let out = h.reconcile(&ac, vec![patch_status(&ac)]).await;
    let waiting = with_status(&ac, out.status());

    // Woken by its own status write, or by the 15 s requeue, while still full: silent.
    let again = h.reconcile(&waiting, Vec::new()).await;
    assert_eq!(
        requeue_after(&again.action()),
        Some(Duration::from_secs(15))
    );

    // The other crate's Job finishes: the next look starts the load.
    let mut finished = busy.clone();
    finished.status = loader_job(
        &crate_fixture().build(),
        "x",
        1,
        JobPhase::Complete { at: ago(1) },
    )
    .status;
    h.watch(&finished);
    let mut steps = start_steps(false);
    steps.push(patch_status(&waiting));
    let started = h.reconcile(&waiting, steps).await;
    assert_eq!(
        started.created_job().name_any(),
        job::job_name(NAME, UID, "generation:1", None)
    );
    let status = started.status();
    assert_eq!(status.status_text, "Loading");
    assert_condition(&status, "Reconciling", "True", "Loading", 1);
    assert_eq!(h.ctx.metrics.crates_waiting.get(), 0);
}

#[tokio::test]
async fn a_finished_load_wakes_the_crates_that_waited_longest_for_its_slot() {
    let mut h = Harness::with(Settings {
        manage_loader_namespaces: false,
        max_running: 1,
        ..settings()
    });
    let mut woken = h.ctx.take_woken().expect("the wake stream");
    // `other` is loading and holds the only slot; `demo` waits for it.
    let other = crate_fixture()
        .named("other", "0d7e3c51-7a1b-4a4b-8f0e-5a4c3b2a1f00")
        .status(loading_status("generation:1"))
        .build();
    h.watch(&loader_job(&other, "generation:1", 1, JobPhase::Running));
    let demo = crate_fixture().build();
    let out = h.reconcile(&demo, vec![patch_status(&demo)]).await;
    assert_condition(
        &out.status(),
        "Reconciling",
        "True",
        "WaitingForCapacity",
        1,
    );
    assert_eq!(h.ctx.metrics.crates_waiting.get(), 1);

    record_success(&mut h, &other, "generation:1").await;
    let next = woken.try_recv().expect("a crate was woken");
    assert_eq!(next.name, NAME);
    assert_eq!(h.ctx.metrics.crates_waiting.get(), 0);
}

#[tokio::test]
async fn at_the_global_cap_no_job_is_created_and_the_crate_waits() {
    let mut h = Harness::with(Settings {
        manage_loader_namespaces: false,
        max_running: 3,
        max_running_per_namespace: 3,
        ..settings()
    });
    for job in other_running_jobs("a", 2)
        .iter()
        .chain(&other_running_jobs("b", 1))
    {
        h.watch(job);
    }
    let ac = crate_fixture().build();
    let out = h.reconcile(&ac, vec![patch_status(&ac)]).await;

    assert_eq!(requeue_after(&out.action()), Some(Duration::from_secs(15)));
    let status = out.status();
    assert_eq!(status.status_text, "Waiting");
    let reconciling = assert_condition(&status, "Reconciling", "True", "WaitingForCapacity", 1);
    assert!(
        reconciling.message.contains("(--max-running-loads)"),
        "{reconciling:?}"
    );
    assert_eq!(h.ctx.metrics.crates_waiting.get(), 1);
}

#[tokio::test]
async fn finished_jobs_do_not_count_against_the_caps() {
    let mut h = Harness::with(Settings {
        manage_loader_namespaces: false,
        max_running: 1,
        max_running_per_namespace: 1,
        ..settings()
    });
    let mut other = crate_fixture().named("done", "done-uid").build();
    other.metadata.namespace = Some(NS.to_owned());
    h.watch(&loader_job(
        &other,
        "generation:1",
        1,
        JobPhase::Complete { at: ago(100) },
    ));
    let ac = crate_fixture().build();
    let mut steps = start_steps(false);
    steps.push(patch_status(&ac));
    let out = h.reconcile(&ac, steps).await;
    assert_eq!(out.status().status_text, "Loading");
    assert_eq!(h.ctx.metrics.crates_waiting.get(), 0);
}

// ---------------------------------------------------------------------------------------------
// 12: suspend
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_suspended_crate_starts_no_job() {
    let mut h = Harness::new();
    let ac = crate_fixture().suspend().build();
    let out = h.reconcile(&ac, vec![patch_status(&ac)]).await;

    assert_eq!(out.action(), Action::await_change());
    let status = out.status();
    assert_eq!(status.status_text, "Suspended");
    assert_condition(&status, "Reconciling", "False", "Suspended", 1);
    assert_eq!(status.last_job, None);

    let suspended = with_status(&ac, status);
    let again = h.reconcile(&suspended, Vec::new()).await;
    assert_eq!(again.action(), Action::await_change());
}

#[tokio::test]
async fn a_job_running_when_the_crate_is_suspended_is_awaited_not_deleted() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .generation(2)
        .status(loading_status("generation:1"))
        .suspend()
        .build();
    let running = loader_job(&ac, "generation:1", 1, JobPhase::Running);
    h.watch(&running);

    // No DELETE (nor anything else but the status) reaches the server.
    let out = h.reconcile(&ac, vec![patch_status(&ac)]).await;
    assert_eq!(requeue_after(&out.action()), Some(Duration::from_secs(20)));
    let status = out.status();
    assert_eq!(status.status_text, "Loading");
    assert_eq!(status.last_job, Some(running.name_any()));
    assert_condition(&status, "Reconciling", "True", "Loading", 2);
}

#[tokio::test]
async fn a_load_that_finishes_after_suspension_is_recorded_and_then_nothing_starts() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .generation(2)
        .status(loading_status("generation:1"))
        .suspend()
        .build();
    let out = record_success(&mut h, &ac, "generation:1").await;
    let status = out.status();
    assert_eq!(status.status_text, "Ready");
    // The spec changed (generation 2) but the crate is suspended: no generation-2 Job.
    let recorded = with_status(&ac, status);
    let again = h.reconcile(&recorded, vec![patch_status(&recorded)]).await;
    assert_eq!(again.action(), Action::await_change());
    assert_eq!(again.status().status_text, "Suspended");
}

// ---------------------------------------------------------------------------------------------
// 13: reload
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_reload_request_starts_a_reload_job_and_is_handled_once() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .status(ready_status(1))
        .reload(RELOAD_AT)
        .build();
    let trigger = format!("reload:{RELOAD_AT}");

    // The request: a reload Job.
    let mut steps = start_steps(true);
    steps.push(patch_status(&ac));
    let started = h.reconcile(&ac, steps).await;
    let created = started.created_job();
    assert_eq!(
        created.name_any(),
        job::job_name(NAME, UID, &trigger, job::last_load_second(&ac))
    );
    assert_eq!(created.annotations()[ANNOTATION_TRIGGER], trigger);
    assert!(main_args(&created).contains(&format!("--last-commit={COMMIT}")));
    let loading = with_status(&ac, started.status());
    assert_eq!(
        loading.status.as_ref().map(|s| s.status_text.as_str()),
        Some("Loading")
    );

    // Its success: recorded, with the handled request.
    let recorded = record_success(&mut h, &loading, &trigger).await;
    let status = recorded.status();
    assert_eq!(status.last_handled_reload_at.as_deref(), Some(RELOAD_AT));
    assert_eq!(status.commit_id.as_deref(), Some(NEW_COMMIT));
    assert_eq!(status.last_job, Some(created.name_any()));
    let done = h.settle(&with_status(&ac, status)).await;
    assert_eq!(
        done.status
            .as_ref()
            .and_then(|s| s.last_handled_reload_at.as_deref()),
        Some(RELOAD_AT)
    );

    // No further load for the same annotation value.
    let again = h.reconcile(&done, Vec::new()).await;
    assert_eq!(again.action(), Action::await_change());
}

// ---------------------------------------------------------------------------------------------
// Periodic checks (spec.interval)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn with_an_interval_the_next_check_is_requeued_for_when_it_is_due() {
    let mut h = Harness::new();
    let mut ac = crate_fixture()
        .status(loading_status("generation:1"))
        .build();
    ac.spec.interval = Some("1h".to_owned());
    let recorded = record_success(&mut h, &ac, "generation:1").await;
    let loaded = with_status(&ac, recorded.status());

    let out = h
        .reconcile(&loaded, vec![patch_status(&loaded).optional()])
        .await;
    let wait = requeue_after(&out.action()).expect("a requeue for the next check");
    // One hour after the load (5 s ago), plus at most a tenth of the interval as jitter.
    assert!(
        wait > Duration::from_secs(3590) && wait <= Duration::from_secs(3600 + 360),
        "{wait:?}"
    );
}

#[tokio::test]
async fn with_an_interval_a_due_check_starts_an_interval_job() {
    let mut h = Harness::new();
    let mut ac = crate_fixture()
        .status(loading_status("generation:1"))
        .build();
    ac.spec.interval = Some("1h".to_owned());
    let at = ago(2 * 3600);
    let recorded = record_success_at(&mut h, &ac, "generation:1", at).await;
    let loaded = with_status(&ac, recorded.status());

    let mut steps = start_steps(true);
    steps.push(patch_status(&loaded));
    let out = h.reconcile(&loaded, steps).await;
    let trigger = format!("interval:{}", at.as_second());
    let created = out.created_job();
    assert_eq!(
        created.name_any(),
        job::job_name(NAME, UID, &trigger, job::last_load_second(&loaded))
    );
    assert!(main_args(&created).contains(&format!("--last-commit={NEW_COMMIT}")));
    let status = out.status();
    assert_eq!(status.status_text, "Loading");
    assert_condition(&status, "Ready", "True", "Loaded", 1);
}

// ---------------------------------------------------------------------------------------------
// 15: deletion
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_crate_being_deleted_gets_no_job_and_no_status_write() {
    let mut h = Harness::new();
    let ac = crate_fixture()
        .generation(2)
        .status(ready_status(1))
        .deleting()
        .build();
    let out = h.reconcile(&ac, Vec::new()).await;
    assert_eq!(out.action(), Action::await_change());

    // Also with its Job still running (garbage collection removes it through the owner
    // reference): nothing is touched.
    let running = loader_job(&ac, "generation:2", 2, JobPhase::Running);
    h.watch(&running);
    let out = h.reconcile(&ac, Vec::new()).await;
    assert_eq!(out.action(), Action::await_change());
}

#[tokio::test]
async fn the_manager_relies_on_owner_references_and_adds_no_finalizer() {
    let mut h = Harness::new();
    let ac = crate_fixture().build();
    let mut steps = start_steps(true);
    steps.push(patch_status(&ac));
    let out = h.reconcile(&ac, steps).await;
    let created = out.created_job();
    assert!(created.finalizers().is_empty());
    assert_owned_by_crate(&created, &ac);
    assert_eq!(
        created.owner_references()[0].block_owner_deletion,
        Some(true)
    );
    // The only write to the crate is its status (checked by `status()`): no metadata, so no
    // finalizer, is ever applied.
    let _ = out.status();
    assert!(
        out.seen
            .iter()
            .filter(|s| s.path.contains("/analyticscrates/"))
            .all(|s| s.path.ends_with("/status")),
        "{:?}",
        out.paths()
    );
}

// ---------------------------------------------------------------------------------------------
// The harness itself fails loudly
// ---------------------------------------------------------------------------------------------

#[tokio::test]
#[should_panic(expected = "unexpected request after the 0 scripted ones: POST /apis/batch/v1")]
async fn the_harness_fails_on_a_request_out_of_script() {
    let mut h = Harness::with(Settings {
        manage_loader_namespaces: false,
        ..settings()
    });
    let ac = crate_fixture().build();
    h.reconcile(&ac, Vec::new()).await;
}

#[tokio::test]
#[should_panic(expected = "never made")]
async fn the_harness_fails_when_a_scripted_request_is_not_made() {
    let mut h = Harness::new();
    let ac = crate_fixture().suspend().build();
    h.reconcile(&ac, vec![patch_status(&ac), create_job(NS)])
        .await;
}

#[tokio::test]
#[should_panic(expected = "request #0: expected PATCH")]
async fn the_harness_fails_on_a_request_other_than_the_scripted_one() {
    let mut h = Harness::new();
    let ac = crate_fixture().build();
    h.reconcile(&ac, vec![patch_status(&ac)]).await;
}
