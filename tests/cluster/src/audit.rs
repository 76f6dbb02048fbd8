//! Counting one user's API requests in the kube-apiserver's audit log, for a control plane
//! started with [`crate::Options::audit_policy`] (see [`policy_for_user`]).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use jiff::Timestamp;

use crate::{Result, error};

/// An audit policy recording, at Metadata level (no bodies), every request of `user` and nothing
/// else. A request shows up once when it completes, and once more when it starts streaming (a
/// watch); [`requests`] counts it once.
pub fn policy_for_user(user: &str) -> String {
    format!(
        "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ['{user}']
- level: None
"
    )
}

/// Requests counted by [`requests`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    pub total: usize,
    /// By `verb resource` (with `/subresource` when there is one), e.g. `patch
    /// analyticscrates/status`, `watch jobs`, `update leases`.
    pub by_kind: BTreeMap<String, usize>,
    /// Completed requests with an error status, by HTTP code (429 is client throttling by the
    /// apiserver's priority and fairness).
    pub errors: BTreeMap<u16, usize>,
    /// The same, by `code verb resource`, e.g. `429 patch analyticscrates/status`.
    pub errors_by_kind: BTreeMap<String, usize>,
}

impl Requests {
    /// The counts by verb alone.
    pub fn by_verb(&self) -> BTreeMap<String, usize> {
        let mut verbs = BTreeMap::new();
        for (kind, n) in &self.by_kind {
            let verb = kind.split(' ').next().unwrap_or_default().to_owned();
            *verbs.entry(verb).or_default() += n;
        }
        verbs
    }
}

/// The requests `user` made that the apiserver received in `[from, to)`, read from the audit
/// log at `log`. Each request is counted once, however many stages it logged.
pub fn requests(log: &Path, user: &str, from: Timestamp, to: Timestamp) -> Result<Requests> {
    let mut seen = HashSet::new();
    let mut completed = HashSet::new();
    let mut out = Requests::default();
    for event in events(log)? {
        if event["user"]["username"].as_str() != Some(user) {
            continue;
        }
        let received = event["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok());
        if !received.is_some_and(|t| from <= t && t < to) {
            continue;
        }
        let Some(id) = event["auditID"].as_str() else {
            continue;
        };
        if event["stage"].as_str() == Some("ResponseComplete")
            && completed.insert(id.to_owned())
            && let Some(code) = event["responseStatus"]["code"].as_u64()
            && code >= 400
        {
            *out.errors
                .entry(u16::try_from(code).unwrap_or(u16::MAX))
                .or_default() += 1;
            *out.errors_by_kind
                .entry(format!("{code} {}", kind(&event)))
                .or_default() += 1;
        }
        if !seen.insert(id.to_owned()) {
            continue;
        }
        out.total += 1;
        *out.by_kind.entry(kind(&event)).or_default() += 1;
    }
    Ok(out)
}

/// The write requests (create, update, patch, delete) of `user` whose User-Agent contains
/// `agent` that the apiserver received at or after `from`, each as `time verb resource/name`.
/// The manager names its replica in its User-Agent, so this tells one replica's writes apart.
pub fn writes(log: &Path, user: &str, agent: &str, from: Timestamp) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for event in events(log)? {
        let received = event["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok());
        let verb = event["verb"].as_str().unwrap_or_default();
        if event["user"]["username"].as_str() != Some(user)
            || !event["userAgent"]
                .as_str()
                .is_some_and(|a| a.contains(agent))
            || !matches!(
                verb,
                "create" | "update" | "patch" | "delete" | "deletecollection"
            )
            || received.is_none_or(|t| t < from)
            || !seen.insert(event["auditID"].as_str().unwrap_or_default().to_owned())
        {
            continue;
        }
        let name = event["objectRef"]["name"].as_str().unwrap_or_default();
        out.push(format!(
            "{} {}/{name}",
            event["requestReceivedTimestamp"]
                .as_str()
                .unwrap_or_default(),
            kind(&event)
        ));
    }
    Ok(out)
}

/// The events of the audit log at `log`, skipping a line being written as it is read.
pub fn events(log: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(log).map_err(|e| {
        error(format!(
            "failed to read the audit log {}: {e}",
            log.display()
        ))
    })?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// `verb resource[/subresource]` of an audit event.
fn kind(event: &serde_json::Value) -> String {
    let verb = event["verb"].as_str().unwrap_or("?");
    let object = &event["objectRef"];
    let resource = object["resource"].as_str().unwrap_or_else(|| {
        // Non-resource requests (discovery, /version) have no objectRef.
        event["requestURI"].as_str().unwrap_or("?")
    });
    match object["subresource"].as_str() {
        Some(sub) => format!("{verb} {resource}/{sub}"),
        None => format!("{verb} {resource}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_counts_once_within_the_window_and_for_the_user_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("audit.log");
        let event = |id: &str, stage: &str, user: &str, at: &str, verb: &str, code: u16| {
            serde_json::json!({
                "auditID": id, "stage": stage, "verb": verb,
                "user": {"username": user},
                "objectRef": {"resource": "analyticscrates", "subresource": "status"},
                "requestReceivedTimestamp": at,
                "responseStatus": {"code": code},
            })
            .to_string()
        };
        let lines = [
            event(
                "a",
                "ResponseStarted",
                "m",
                "2025-01-01T00:00:01.000000Z",
                "watch",
                200,
            ),
            event(
                "a",
                "ResponseComplete",
                "m",
                "2025-01-01T00:00:01.000000Z",
                "watch",
                200,
            ),
            event(
                "b",
                "ResponseComplete",
                "m",
                "2025-01-01T00:00:02.000000Z",
                "patch",
                429,
            ),
            event(
                "c",
                "ResponseComplete",
                "other",
                "2025-01-01T00:00:02.000000Z",
                "get",
                200,
            ),
            event(
                "d",
                "ResponseComplete",
                "m",
                "2025-01-01T00:00:09.000000Z",
                "get",
                200,
            ),
            "{\"truncated".to_owned(),
        ];
        std::fs::write(&log, lines.join("\n")).expect("write log");
        let from: Timestamp = "2025-01-01T00:00:00Z".parse().expect("time");
        let to: Timestamp = "2025-01-01T00:00:05Z".parse().expect("time");
        let counted = requests(&log, "m", from, to).expect("counts");
        assert_eq!(counted.total, 2);
        assert_eq!(counted.by_kind["watch analyticscrates/status"], 1);
        assert_eq!(counted.by_verb()["patch"], 1);
        assert_eq!(counted.errors, BTreeMap::from([(429, 1)]));
        assert_eq!(
            counted.errors_by_kind,
            BTreeMap::from([("429 patch analyticscrates/status".to_owned(), 1)])
        );
    }

    #[test]
    fn writes_are_those_of_one_replica_from_a_time_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("audit.log");
        let event = |id: &str, agent: &str, at: &str, verb: &str| {
            serde_json::json!({
                "auditID": id, "stage": "ResponseComplete", "verb": verb,
                "user": {"username": "m"}, "userAgent": agent,
                "objectRef": {"resource": "jobs", "name": "load-a"},
                "requestReceivedTimestamp": at,
            })
            .to_string()
        };
        let lines = [
            event(
                "early",
                "crate-operator/0.1.0 (old)",
                "2025-01-01T00:00:01Z",
                "create",
            ),
            event(
                "late",
                "crate-operator/0.1.0 (old)",
                "2025-01-01T00:00:09Z",
                "patch",
            ),
            event(
                "read",
                "crate-operator/0.1.0 (old)",
                "2025-01-01T00:00:09Z",
                "get",
            ),
            event(
                "new",
                "crate-operator/0.1.0 (new)",
                "2025-01-01T00:00:09Z",
                "create",
            ),
        ];
        std::fs::write(&log, lines.join("\n")).expect("write log");
        let from: Timestamp = "2025-01-01T00:00:05Z".parse().expect("time");
        assert_eq!(
            writes(&log, "m", "(old)", from).expect("writes"),
            ["2025-01-01T00:00:09Z patch jobs/load-a"]
        );
    }
}
