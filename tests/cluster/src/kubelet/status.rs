//! The Pod status a kubelet would report, built from what the stand-in knows about each
//! container. Pure, so every phase and reason is a unit test; the Job controller and the manager
//! read exactly these fields (phase, container exit codes and termination messages).

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub(super) const PENDING: &str = "Pending";
pub(super) const RUNNING: &str = "Running";
pub(super) const SUCCEEDED: &str = "Succeeded";
pub(super) const FAILED: &str = "Failed";

/// Exit code and signal the kubelet reports for a container it killed (SIGKILL).
const KILLED_EXIT_CODE: i32 = 137;
const SIGKILL: i32 = 9;

/// What happened to a Pod's containers so far.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Progress {
    /// When the stand-in started working on the Pod (`status.startTime`).
    pub start_time: Timestamp,
    pub init: Vec<Container>,
    pub main: Vec<Container>,
    /// The Pod was deleted while it ran; a kubelet marks such Pods Failed.
    pub killed: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Container {
    pub name: String,
    pub image: String,
    pub state: State,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum State {
    Waiting,
    Running { pid: u32, started: Timestamp },
    Terminated(Terminated),
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Terminated {
    pub pid: u32,
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub message: String,
    pub started: Timestamp,
    pub finished: Timestamp,
}

/// Which container of a Pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Init(usize),
    Main(usize),
}

impl Container {
    fn succeeded(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }
    fn failed(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code != 0)
    }
    fn finished(&self) -> Option<Timestamp> {
        match &self.state {
            State::Terminated(t) => Some(t.finished),
            _ => None,
        }
    }
}

impl Progress {
    /// Every container waiting.
    pub(super) fn new(spec: &PodSpec, start_time: Timestamp) -> Progress {
        let containers = |list: &[k8s_openapi::api::core::v1::Container]| {
            list.iter()
                .map(|c| Container {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    state: State::Waiting,
                })
                .collect()
        };
        Progress {
            start_time,
            init: containers(spec.init_containers.as_deref().unwrap_or_default()),
            main: containers(&spec.containers),
            killed: false,
        }
    }

    pub(super) fn container_mut(&mut self, slot: Slot) -> Option<&mut Container> {
        match slot {
            Slot::Init(i) => self.init.get_mut(i),
            Slot::Main(i) => self.main.get_mut(i),
        }
    }

    /// Whether any container was started, i.e. a status was reported.
    pub(super) fn started(&self) -> bool {
        self.init
            .iter()
            .chain(&self.main)
            .any(|c| c.state != State::Waiting)
    }

    /// The Pod was deleted: running containers were killed with SIGKILL.
    pub(super) fn kill(&mut self, now: Timestamp) {
        self.killed = true;
        for container in self.init.iter_mut().chain(&mut self.main) {
            if let State::Running { pid, started } = container.state {
                container.state = State::Terminated(Terminated {
                    pid,
                    exit_code: KILLED_EXIT_CODE,
                    signal: Some(SIGKILL),
                    message: String::new(),
                    started,
                    finished: now,
                });
            }
        }
    }

    /// The Pod phase for `restartPolicy: Never`.
    pub(super) fn phase(&self) -> &'static str {
        if self.killed || self.init.iter().any(Container::failed) {
            return FAILED;
        }
        if !self.init.iter().all(Container::succeeded) {
            return PENDING;
        }
        if !self.main.is_empty() && self.main.iter().all(|c| c.finished().is_some()) {
            return if self.main.iter().all(Container::succeeded) {
                SUCCEEDED
            } else {
                FAILED
            };
        }
        if self.main.iter().any(|c| c.state != State::Waiting) {
            RUNNING
        } else {
            PENDING
        }
    }

    /// The complete status, for a merge patch (lists are replaced whole).
    pub(super) fn to_status(&self) -> PodStatus {
        let phase = self.phase();
        PodStatus {
            phase: Some(phase.to_owned()),
            start_time: Some(Time(self.start_time)),
            conditions: Some(self.conditions(phase)),
            init_container_statuses: Some(
                self.init
                    .iter()
                    .map(|c| container_status(c, true))
                    .collect(),
            ),
            container_statuses: Some(
                self.main
                    .iter()
                    .map(|c| container_status(c, false))
                    .collect(),
            ),
            ..PodStatus::default()
        }
    }

    /// The conditions a kubelet sets, with transition times taken from the container events
    /// that caused them, so repeated reports agree with each other.
    fn conditions(&self, phase: &str) -> Vec<PodCondition> {
        let condition =
            |type_: &str, at: Timestamp, reason: Option<&str>, message: String| PodCondition {
                type_: type_.to_owned(),
                status: if reason.is_none() { "True" } else { "False" }.to_owned(),
                reason: reason.map(str::to_owned),
                message: (!message.is_empty()).then_some(message),
                last_transition_time: Some(Time(at)),
                ..PodCondition::default()
            };
        let names = |containers: Vec<&Container>| {
            let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
            format!("[{}]", names.join(" "))
        };
        let terminal = phase == SUCCEEDED || phase == FAILED;
        let last_finish = self
            .init
            .iter()
            .chain(&self.main)
            .filter_map(Container::finished)
            .max()
            .unwrap_or(self.start_time);

        let incomplete: Vec<&Container> = self.init.iter().filter(|c| !c.succeeded()).collect();
        let initialized = if incomplete.is_empty() {
            let at = self
                .init
                .iter()
                .filter_map(Container::finished)
                .max()
                .unwrap_or(self.start_time);
            condition("Initialized", at, None, String::new())
        } else {
            condition(
                "Initialized",
                self.start_time,
                Some("ContainersNotInitialized"),
                format!("containers with incomplete status: {}", names(incomplete)),
            )
        };

        let unready: Vec<&Container> = self
            .main
            .iter()
            .filter(|c| !matches!(c.state, State::Running { .. }))
            .collect();
        let ready = |type_: &str| {
            if terminal {
                condition(type_, last_finish, Some("PodCompleted"), String::new())
            } else if unready.is_empty() {
                let at = self
                    .main
                    .iter()
                    .filter_map(|c| match c.state {
                        State::Running { started, .. } => Some(started),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(self.start_time);
                condition(type_, at, None, String::new())
            } else {
                condition(
                    type_,
                    self.start_time,
                    Some("ContainersNotReady"),
                    format!("containers with unready status: {}", names(unready.clone())),
                )
            }
        };

        vec![
            condition(
                "PodReadyToStartContainers",
                self.start_time,
                None,
                String::new(),
            ),
            initialized,
            ready("Ready"),
            ready("ContainersReady"),
        ]
    }
}

/// `harness://<pid>`: a container ID that says what ran it.
pub(super) fn container_id(pid: u32) -> String {
    format!("harness://{pid}")
}

fn container_status(container: &Container, init: bool) -> ContainerStatus {
    let (state, ready, started, id) = match &container.state {
        State::Waiting => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("PodInitializing".to_owned()),
                    message: None,
                }),
                ..ContainerState::default()
            },
            false,
            false,
            None,
        ),
        State::Running { pid, started } => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started)),
                }),
                ..ContainerState::default()
            },
            // Init containers are ready once they completed; main ones while they run (no
            // readiness probes).
            !init,
            true,
            Some(container_id(*pid)),
        ),
        State::Terminated(t) => (
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some(container_id(t.pid)),
                    exit_code: t.exit_code,
                    signal: t.signal,
                    reason: Some(
                        if t.exit_code == 0 {
                            "Completed"
                        } else {
                            "Error"
                        }
                        .to_owned(),
                    ),
                    message: (!t.message.is_empty()).then(|| t.message.clone()),
                    started_at: Some(Time(t.started)),
                    finished_at: Some(Time(t.finished)),
                }),
                ..ContainerState::default()
            },
            init && t.exit_code == 0,
            false,
            Some(container_id(t.pid)),
        ),
    };
    ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone(),
        image_id: String::new(),
        container_id: id,
        ready,
        restart_count: 0,
        started: Some(started),
        state: Some(state),
        ..ContainerStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("valid")
    }

    fn loader_pod() -> Progress {
        let container = |name: &str| k8s_openapi::api::core::v1::Container {
            name: name.to_owned(),
            image: Some("registry.invalid/crate-loader:e2e".to_owned()),
            ..k8s_openapi::api::core::v1::Container::default()
        };
        let spec = PodSpec {
            init_containers: Some(vec![container("install-loader")]),
            containers: vec![container("load")],
            ..PodSpec::default()
        };
        Progress::new(&spec, at(0))
    }

    fn terminated(pid: u32, exit_code: i32, message: &str, started: i64, finished: i64) -> State {
        State::Terminated(Terminated {
            pid,
            exit_code,
            signal: None,
            message: message.to_owned(),
            started: at(started),
            finished: at(finished),
        })
    }

    fn running(pid: u32, started: i64) -> State {
        State::Running {
            pid,
            started: at(started),
        }
    }

    /// The loader Pod with its init container done and its main container running.
    fn main_running() -> Progress {
        let mut progress = loader_pod();
        set(&mut progress, Slot::Init(0), terminated(7, 0, "", 1, 2));
        set(&mut progress, Slot::Main(0), running(8, 3));
        progress
    }

    fn terminated_state(
        status: &k8s_openapi::api::core::v1::ContainerStatus,
    ) -> &k8s_openapi::api::core::v1::ContainerStateTerminated {
        status
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("terminated")
    }

    fn set(progress: &mut Progress, slot: Slot, state: State) {
        progress.container_mut(slot).expect("container").state = state;
    }

    fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .expect("condition")
    }

    #[test]
    fn a_new_pod_is_pending_and_not_started() {
        let progress = loader_pod();
        assert_eq!(progress.phase(), PENDING);
        assert!(!progress.started());
    }

    #[test]
    fn while_the_init_container_runs_the_pod_is_pending_and_main_waits() {
        let mut progress = loader_pod();
        set(&mut progress, Slot::Init(0), running(7, 1));
        let status = progress.to_status();
        assert_eq!(status.phase.as_deref(), Some(PENDING));
        assert_eq!(status.start_time, Some(Time(at(0))));
        let init = &status.init_container_statuses.as_ref().expect("init")[0];
        assert_eq!(init.name, "install-loader");
        assert_eq!(init.image, "registry.invalid/crate-loader:e2e");
        assert_eq!(init.container_id.as_deref(), Some("harness://7"));
        assert!(init.state.as_ref().expect("state").running.is_some());
        assert!(!init.ready);
        let main = &status.container_statuses.as_ref().expect("main")[0];
        let waiting = main
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .expect("waiting");
        assert_eq!(waiting.reason.as_deref(), Some("PodInitializing"));
        assert_eq!((main.ready, main.restart_count), (false, 0));
        let initialized = condition(&status, "Initialized");
        assert_eq!(initialized.status, "False");
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [install-loader]")
        );
    }

    #[test]
    fn after_init_succeeds_and_main_starts_the_pod_is_running_and_ready() {
        let progress = main_running();
        let status = progress.to_status();
        assert_eq!(status.phase.as_deref(), Some(RUNNING));
        let init = &status.init_container_statuses.as_ref().expect("init")[0];
        let t = terminated_state(init);
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
        assert!(init.ready);
        let main = &status.container_statuses.as_ref().expect("main")[0];
        assert!(main.ready);
        assert_eq!(main.started, Some(true));
        let initialized = condition(&status, "Initialized");
        assert_eq!(initialized.status, "True");
        assert_eq!(initialized.last_transition_time, Some(Time(at(2))));
        let ready = condition(&status, "Ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.last_transition_time, Some(Time(at(3))));
    }

    #[test]
    fn a_failed_init_container_fails_the_pod_and_main_never_starts() {
        let mut progress = loader_pod();
        set(&mut progress, Slot::Init(0), terminated(7, 1, "", 1, 2));
        let status = progress.to_status();
        assert_eq!(status.phase.as_deref(), Some(FAILED));
        let init = &status.init_container_statuses.as_ref().expect("init")[0];
        let t = terminated_state(init);
        assert_eq!((t.exit_code, t.reason.as_deref()), (1, Some("Error")));
        let main = &status.container_statuses.as_ref().expect("main")[0];
        assert!(main.state.as_ref().expect("state").waiting.is_some());
        assert_eq!(
            condition(&status, "Ready").reason.as_deref(),
            Some("PodCompleted")
        );
    }

    #[test]
    fn the_main_exit_code_decides_success_and_carries_the_message() {
        for (exit_code, phase, reason) in [(0, SUCCEEDED, "Completed"), (10, FAILED, "Error")] {
            let mut progress = loader_pod();
            set(&mut progress, Slot::Init(0), terminated(7, 0, "", 1, 2));
            set(
                &mut progress,
                Slot::Main(0),
                terminated(8, exit_code, "{\"outcome\":\"x\"}", 3, 4),
            );
            let status = progress.to_status();
            assert_eq!(status.phase.as_deref(), Some(phase));
            let main = &status.container_statuses.as_ref().expect("main")[0];
            let t = terminated_state(main);
            assert_eq!(t.exit_code, exit_code);
            assert_eq!(t.reason.as_deref(), Some(reason));
            assert_eq!(t.message.as_deref(), Some("{\"outcome\":\"x\"}"));
            assert_eq!(t.container_id.as_deref(), Some("harness://8"));
            assert_eq!(t.started_at, Some(Time(at(3))));
            assert_eq!(t.finished_at, Some(Time(at(4))));
            assert!(!main.ready);
            let ready = condition(&status, "ContainersReady");
            assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
            assert_eq!(ready.last_transition_time, Some(Time(at(4))));
        }
    }

    #[test]
    fn an_empty_termination_message_is_left_out() {
        let mut progress = loader_pod();
        set(&mut progress, Slot::Init(0), terminated(7, 0, "", 1, 2));
        let status = progress.to_status();
        let init = &status.init_container_statuses.as_ref().expect("init")[0];
        let t = terminated_state(init);
        assert_eq!(t.message, None);
    }

    #[test]
    fn a_killed_pod_is_failed_with_sigkill_exit_codes() {
        let mut progress = main_running();
        assert!(progress.started());
        progress.kill(at(9));
        let status = progress.to_status();
        assert_eq!(status.phase.as_deref(), Some(FAILED));
        let main = &status.container_statuses.as_ref().expect("main")[0];
        let t = terminated_state(main);
        assert_eq!((t.exit_code, t.signal), (137, Some(9)));
        assert_eq!(t.finished_at, Some(Time(at(9))));
    }

    #[test]
    fn the_status_serialises_with_the_required_container_fields() {
        let mut progress = loader_pod();
        set(&mut progress, Slot::Init(0), running(7, 1));
        let json = serde_json::to_value(progress.to_status()).expect("serialises");
        let main = &json["containerStatuses"][0];
        assert_eq!(main["imageID"], "");
        assert_eq!(main["ready"], false);
        assert_eq!(main["restartCount"], 0);
        assert_eq!(json["phase"], "Pending");
    }
}
