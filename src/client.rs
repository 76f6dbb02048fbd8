//! The manager's two API clients, built once at start from the kubeconfig or the Pod's
//! ServiceAccount: the election's, and the controller's, which carries the write [`Fence`]
//! and a client-side rate limit.
//!
//! Two clients so that Lease renewals never queue behind the controller's requests at the rate
//! limit, and so that the fence, which the election opens, never refuses the election's own
//! writes. kube's built-in retry of 429/503 answers is off in both: a retry waits outside the
//! fence (up to the server's Retry-After) and could send a write long after the fence closed.
//! A refused or throttled write fails the reconcile instead, which backs off and tries again.
//! The controller client's connection tasks run under the fence too ([`FencedExecutor`]): a
//! request already handed to a connection when the process froze is not written on waking.

use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::Context as _;
use http::HeaderValue;
use http::header::USER_AGENT;
use kube::client::ClientBuilder;
use kube::{Client, Config};
use tower::limit::RateLimitLayer;

use crate::fence::{Fence, FenceLayer, FencedExecutor};

/// The clients of one manager process.
pub struct Clients {
    /// For leader election: unfenced, unthrottled.
    pub election: Client,
    /// For everything else: writes pass only while `fence` is open; at most `qps` requests
    /// leave per second.
    pub controller: Client,
}

/// Builds both clients. Every request names the replica in its User-Agent
/// (`crate-operator/<version> (<identity>)`), so the apiserver's audit log tells replicas apart.
pub async fn build(identity: &str, qps: NonZeroU32, fence: Fence) -> anyhow::Result<Clients> {
    let mut config = Config::infer().await.context(
        "failed to configure the Kubernetes client (no kubeconfig, no in-cluster ServiceAccount)",
    )?;
    config.default_retry = false;
    let agent = format!("crate-operator/{} ({identity})", env!("CARGO_PKG_VERSION"));
    if let Ok(agent) = HeaderValue::from_str(&agent) {
        config.headers.push((USER_AGENT, agent));
    }
    let election = ClientBuilder::try_from(config.clone())
        .context("failed to build the election's API client")?
        .build();
    let controller = ClientBuilder::try_from((config, FencedExecutor(fence.clone())))
        .context("failed to build the controller's API client")?
        .with_layer(&FenceLayer(fence))
        .with_layer(&RateLimitLayer::new(
            u64::from(qps.get()),
            Duration::from_secs(1),
        ))
        .build();
    Ok(Clients {
        election,
        controller,
    })
}
