//! Leader election over a `coordination.k8s.io` Lease, and the clock that keeps the [`Fence`]
//! open: with several replicas, one runs the controller and the others wait, healthy and ready to
//! take over.
//!
//! The rules are client-go's (`leaderelection`): a standby takes a Lease held by another replica
//! only once it has seen it unchanged for the Lease's duration *on its own clock*, so clocks
//! that disagree between nodes cannot make two leaders; the leader renews every third of the
//! duration with the Lease's `resourceVersion`, so a write anyone else made since fails.
//!
//! Fencing: each successful renewal opens the fence until two thirds of the duration after the
//! renewal was *sent*. A standby cannot take over before a whole duration has passed since then,
//! so a leader that was frozen (SIGSTOP, a paused VM) stops writing at least a third of the
//! duration before anyone else may start; when it wakes it finds the fence closed, writes
//! nothing (not even the Lease), and stops. The leader releases the Lease when it shuts down, so
//! a hand-over on upgrade waits only for the standby's next look.

use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::fence::Fence;

/// The election's timings, all derived from the Lease duration.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
}

impl Timing {
    /// How long writes stay allowed after a renewal was sent.
    fn fence(self) -> Duration {
        self.duration * 2 / 3
    }

    /// How often the leader renews: twice within the fence's window.
    fn renew_every(self) -> Duration {
        self.duration / 3
    }

    /// How often a standby looks at the Lease, and how soon a failed renewal is tried again.
    fn retry(self) -> Duration {
        self.duration / 5
    }
}

/// What a replica that does not lead does with the Lease it read.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    /// There is none: create it, held by this replica.
    Create,
    /// It is free, expired or already this replica's: write it as held by this replica.
    Take,
    /// Another replica holds it.
    Wait,
}

/// The holder of `lease`, if any.
fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|spec| spec.holder_identity.as_deref())
        .filter(|holder| !holder.is_empty())
}

/// Whether to take `lease`, which this replica has seen unchanged for `unchanged_for`.
fn claim(lease: Option<&Lease>, identity: &str, unchanged_for: Duration) -> Claim {
    let Some(lease) = lease else {
        return Claim::Create;
    };
    let Some(holder) = holder(lease) else {
        return Claim::Take;
    };
    if holder == identity {
        return Claim::Take;
    }
    let seconds = lease
        .spec
        .as_ref()
        .and_then(|spec| spec.lease_duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(0);
    if unchanged_for >= Duration::from_secs(seconds) {
        Claim::Take
    } else {
        Claim::Wait
    }
}

/// `lease` as this replica writes it to take or renew it at `now`.
fn claimed(lease: &Lease, identity: &str, duration: Duration, now: Timestamp) -> Lease {
    let spec = lease.spec.clone().unwrap_or_default();
    let renewing = holder(lease) == Some(identity);
    Lease {
        metadata: lease.metadata.clone(),
        spec: Some(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)),
            renew_time: Some(MicroTime(now)),
            acquire_time: if renewing {
                spec.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            lease_transitions: match (renewing, lease.spec.is_some()) {
                (true, _) => spec.lease_transitions,
                (false, true) => Some(spec.lease_transitions.unwrap_or(0) + 1),
                (false, false) => Some(0),
            },
            ..spec
        }),
    }
}

/// `lease` given up at `now`: no holder, and a duration of one second for readers that judge
/// expiry by it.
fn released(lease: &Lease, now: Timestamp) -> Lease {
    let spec = lease.spec.clone().unwrap_or_default();
    Lease {
        metadata: lease.metadata.clone(),
        spec: Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(MicroTime(now)),
            ..spec
        }),
    }
}

/// One replica's view of the Lease, and its writes to it.
struct Election {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    fence: Fence,
    /// The Lease as last read or written, and when this replica first saw that version.
    seen: Option<(Lease, Instant)>,
}

impl Election {
    /// Reads the Lease and takes it if it is free; `true` when this replica now holds it.
    async fn try_acquire(&mut self) -> Result<bool, kube::Error> {
        let lease = self.api.get_opt(&self.name).await?;
        let now = Instant::now();
        let first_seen = match (&lease, &self.seen) {
            (Some(lease), Some((seen, at)))
                if seen.metadata.resource_version == lease.metadata.resource_version =>
            {
                *at
            }
            _ => now,
        };
        let decision = claim(lease.as_ref(), &self.identity, now - first_seen);
        self.seen = lease.map(|lease| (lease, first_seen));
        match decision {
            Claim::Wait => Ok(false),
            Claim::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: None,
                };
                self.write(&lease, true).await
            }
            Claim::Take => match self.seen.as_ref().map(|(lease, _)| lease.clone()) {
                Some(lease) => self.write(&lease, false).await,
                None => Ok(false),
            },
        }
    }

    /// Renews the Lease as last written; on a conflict (someone else wrote it since), reads it
    /// and decides again. `true` while this replica holds it.
    async fn renew(&mut self) -> Result<bool, kube::Error> {
        if let Some((lease, _)) = &self.seen
            && holder(lease) == Some(self.identity.as_str())
        {
            let lease = lease.clone();
            if self.write(&lease, false).await? {
                return Ok(true);
            }
        }
        self.try_acquire().await
    }

    /// Writes `lease` as held by this replica (creating it when `create`), and opens the fence
    /// from the moment the write was sent. `false` on a conflict.
    async fn write(&mut self, lease: &Lease, create: bool) -> Result<bool, kube::Error> {
        let lease = claimed(
            lease,
            &self.identity,
            self.timing.duration,
            Timestamp::now(),
        );
        let sent = Instant::now();
        let written = if create {
            self.api.create(&PostParams::default(), &lease).await
        } else {
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
        };
        match written {
            Ok(lease) => {
                self.fence.open_until(sent + self.timing.fence());
                self.seen = Some((lease, Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up, if it is still this replica's to give.
    async fn release(&mut self) {
        let Some((lease, _)) = self.seen.take() else {
            return;
        };
        // A closed fence means another replica may hold the Lease by now.
        if !self.fence.allows_writes() || holder(&lease) != Some(self.identity.as_str()) {
            return;
        }
        let lease = released(&lease, Timestamp::now());
        self.fence.close();
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = self.name, "released the leader lease"),
            Err(e) => {
                warn!(lease = self.name, error = %e, "failed to release the leader lease; the standby takes over when it expires");
            }
        }
    }
}

/// Errors no retry fixes: the manager's RBAC or the namespace is missing.
fn is_fatal(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if matches!(status.code, 401 | 403 | 404 | 422))
}

/// The Lease while this replica leads; renewing it in a task of its own.
pub struct Leadership {
    release: oneshot::Sender<()>,
    task: JoinHandle<(Election, bool)>,
}

/// Who competes for which Lease.
pub struct Candidate {
    /// The election's client (see [`crate::client`]).
    pub client: Client,
    pub namespace: String,
    pub lease_name: String,
    /// This replica's name in the Lease.
    pub identity: String,
    pub timing: Timing,
}

/// Waits until this replica holds the Lease (then opens `fence`), or until `stop` turns true
/// (then `None`). While it leads, a lost Lease closes the fence and sends `true` on `on_loss`.
pub async fn acquire(
    candidate: Candidate,
    fence: Fence,
    mut stop: watch::Receiver<bool>,
    on_loss: watch::Sender<bool>,
) -> anyhow::Result<Option<Leadership>> {
    let Candidate {
        client,
        namespace,
        lease_name,
        identity,
        timing,
    } = candidate;
    let mut election = Election {
        api: Api::namespaced(client, &namespace),
        name: lease_name.clone(),
        identity: identity.clone(),
        timing,
        fence,
        seen: None,
    };
    info!(identity, lease = lease_name, "waiting for the leader lease");
    loop {
        match election.try_acquire().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) if is_fatal(&e) => {
                return Err(e).with_context(|| {
                    format!("failed to take the leader Lease {namespace}/{lease_name}")
                });
            }
            Err(e) => {
                warn!(error = %e, lease = lease_name, "failed to read the leader lease; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(timing.retry()) => {}
            _ = stop.wait_for(|stop| *stop) => return Ok(None),
        }
    }
    info!(identity, lease = lease_name, "acquired the leader lease");
    let (release, released) = oneshot::channel();
    let task = tokio::spawn(lead(election, released, on_loss));
    Ok(Some(Leadership { release, task }))
}

/// Renews the Lease until told to release it or until it is lost.
async fn lead(
    mut election: Election,
    mut release: oneshot::Receiver<()>,
    on_loss: watch::Sender<bool>,
) -> (Election, bool) {
    let timing = election.timing;
    let mut next = Instant::now() + timing.renew_every();
    loop {
        tokio::select! {
            _ = &mut release => return (election, false),
            () = tokio::time::sleep_until(next) => {}
        }
        if !election.fence.allows_writes() {
            error!(
                lease = election.name,
                "the leader lease expired before this replica could renew it; stopping"
            );
            break;
        }
        match election.renew().await {
            Ok(true) => next = Instant::now() + timing.renew_every(),
            Ok(false) => {
                let holder = election.seen.as_ref().and_then(|(l, _)| holder(l));
                error!(
                    lease = election.name,
                    holder, "another replica holds the leader lease; stopping"
                );
                break;
            }
            Err(e) => {
                warn!(lease = election.name, error = %e, "failed to renew the leader lease; retrying");
                next = Instant::now() + timing.retry();
            }
        }
    }
    election.fence.close();
    let _ = on_loss.send(true);
    (election, true)
}

impl Leadership {
    /// Stops renewing and releases the Lease; returns whether it had been lost before.
    pub async fn release(self) -> bool {
        let _ = self.release.send(());
        let Ok((mut election, lost)) = self.task.await else {
            return true;
        };
        if !lost {
            election.release().await;
        }
        lost
    }
}

#[cfg(test)]
mod tests;
