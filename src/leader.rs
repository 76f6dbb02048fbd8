//! Leader election over a `coordination.k8s.io` Lease (kube-lease-manager): with several
//! replicas, one runs the controller and the others wait, healthy and ready to take over.
//!
//! The leader releases the Lease when it shuts down, so the hand-over is immediate; after a
//! crash it takes at most the Lease duration. A leader that loses the Lease stops its
//! controller and exits, and comes back as a standby.

use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::controller::FIELD_MANAGER;

/// The Lease while this replica leads.
pub struct Leadership {
    is_leader: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
    /// The task of [`Leadership::stop_on_loss`]; it holds a receiver too.
    loss_watch: Option<JoinHandle<()>>,
}

/// Waits until this replica holds the Lease, or until `stop` turns true (then `None`).
pub async fn acquire(
    client: Client,
    lease_name: &str,
    namespace: &str,
    identity: &str,
    lease_duration: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<Leadership>> {
    let duration = lease_duration.as_secs().max(3);
    let manager = LeaseManagerBuilder::new(client, lease_name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .with_field_manager(FIELD_MANAGER)
        .build()
        .await
        .context("failed to set up leader election")?;
    let (mut is_leader, task) = manager.watch().await;
    info!(identity, lease = lease_name, "waiting for the leader lease");
    let won = tokio::select! {
        won = is_leader.wait_for(|leader| *leader) => { won.map(drop).context("leader election stopped")?; true }
        _ = stop.wait_for(|stop| *stop) => false,
    };
    if !won {
        drop(is_leader);
        let _ = task.await;
        return Ok(None);
    }
    info!(identity, lease = lease_name, "acquired the leader lease");
    Ok(Some(Leadership {
        is_leader,
        task,
        loss_watch: None,
    }))
}

impl Leadership {
    /// Sends `true` on `stop` when the Lease is lost.
    pub fn stop_on_loss(&mut self, stop: watch::Sender<bool>) {
        let mut lost = self.is_leader.clone();
        self.loss_watch = Some(tokio::spawn(async move {
            if lost.wait_for(|leader| !*leader).await.is_ok() {
                error!("lost the leader lease; stopping");
                let _ = stop.send(true);
            }
        }));
    }

    /// Releases the Lease; returns whether it had been lost before.
    ///
    /// kube-lease-manager releases the Lease and ends its task only once every receiver of its
    /// leadership channel is gone, so the loss watcher's copy must go first: left alive, it
    /// would make this wait forever and the hand-over wait for the Lease to expire.
    pub async fn release(self) -> bool {
        let lost = !*self.is_leader.borrow();
        if let Some(watch) = self.loss_watch {
            watch.abort();
            let _ = watch.await;
        }
        drop(self.is_leader);
        let _ = self.task.await;
        lost
    }
}
