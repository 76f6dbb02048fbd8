//! The write fence: a tower layer under the controller's API client that refuses every mutating
//! request once this replica can no longer be sure it holds the leader Lease.
//!
//! Leader election alone does not stop a paused leader (SIGSTOP, a frozen VM, a long GC-like
//! stall of the node) from writing when it wakes: it still believes it leads until its election
//! task runs again, and its reconciles may be a poll away from their next write. The fence
//! closes by the clock instead: [`crate::leader`] opens it until a fixed time after it *sent*
//! each successful renewal, well before a standby may take the Lease over, and every write
//! checks it on its way out. Reads (GET, LIST, WATCH) pass, so caches stay warm for a
//! standby that becomes leader again.
//!
//! The check runs when the request enters this layer and again each time its future is polled,
//! so a request still waiting for a connection when the process froze is dropped when it wakes.
//! A request a connection has already taken is covered by [`FencedExecutor`], which runs the
//! connection tasks only while the fence is open.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use http::{Method, Request};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

/// Whether writes may go out now. Cloned into the client stack and into the election.
#[derive(Clone, Debug)]
pub struct Fence(Arc<Mutex<Gate>>);

#[derive(Clone, Copy, Debug)]
enum Gate {
    /// No leader election: this is the only replica.
    Unfenced,
    /// Writes may go out until then.
    Until(Instant),
}

/// The error a refused write fails with.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused to {method} {path}: this replica no longer holds the leader Lease (a newer leader may be writing)"
)]
pub struct Refused {
    method: Method,
    path: String,
}

impl Fence {
    /// A fence that never closes, for a manager running without leader election.
    pub fn unfenced() -> Fence {
        Fence(Arc::new(Mutex::new(Gate::Unfenced)))
    }

    /// A closed fence, until [`Fence::open_until`].
    pub fn closed() -> Fence {
        Fence(Arc::new(Mutex::new(Gate::Until(Instant::now()))))
    }

    /// Lets writes out until `until` (never moving an earlier-granted time back).
    pub fn open_until(&self, until: Instant) {
        let mut gate = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Gate::Until(current) = *gate {
            *gate = Gate::Until(current.max(until));
        }
    }

    /// Refuses writes from now on.
    pub fn close(&self) {
        let mut gate = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Gate::Until(_) = *gate {
            *gate = Gate::Until(Instant::now());
        }
    }

    /// Whether a write may go out now.
    pub fn allows_writes(&self) -> bool {
        match *self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            Gate::Unfenced => true,
            Gate::Until(until) => Instant::now() < until,
        }
    }
}

/// Puts a [`Fence`] in front of a service.
#[derive(Clone, Debug)]
pub struct FenceLayer(pub Fence);

impl<S> Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced {
            inner,
            fence: self.0.clone(),
        }
    }
}

/// A service whose mutating requests pass only while its fence is open.
#[derive(Clone, Debug)]
pub struct Fenced<S> {
    inner: S,
    fence: Fence,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, B> Service<Request<B>> for Fenced<S>
where
    S: Service<Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let writes = !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
        let refused = move |request: (Method, String)| Refused {
            method: request.0,
            path: request.1,
        };
        let what = (request.method().clone(), request.uri().path().to_owned());
        if writes && !self.fence.allows_writes() {
            return Box::pin(std::future::ready(Err(refused(what).into())));
        }
        // Checked again on every poll until the response: a request still waiting for its
        // connection (a TCP or TLS handshake) when the process froze is dropped on waking
        // rather than sent.
        let fence = self.fence.clone();
        let mut response = Box::pin(self.inner.call(request));
        let mut what = Some(what);
        Box::pin(std::future::poll_fn(move |cx| {
            if writes && !fence.allows_writes() {
                let what = what.take().unwrap_or_default();
                return Poll::Ready(Err(refused(what).into()));
            }
            response.as_mut().poll(cx).map_err(Into::into)
        }))
    }
}

/// Runs the controller client's connection tasks, each only while the fence is open.
///
/// The layer above refuses a write before it is handed to a connection; this covers the one it
/// cannot: a request already handed to a connection when the process froze. On waking, the
/// connection task is polled again and would write it out. Here that task is dropped instead
/// (its socket closes, the request is never written or arrives cut short), so a replica whose
/// fence closed sends no further byte on any of the controller client's connections, reads
/// included: it is about to stop anyway.
#[derive(Clone, Debug)]
pub struct FencedExecutor(pub Fence);

impl<F> hyper::rt::Executor<F> for FencedExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, connection: F) {
        let fence = self.0.clone();
        let mut connection = Box::pin(connection);
        tokio::spawn(std::future::poll_fn(move |cx| {
            if !fence.allows_writes() {
                return Poll::Ready(());
            }
            connection.as_mut().poll(cx)
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::ServiceExt as _;

    use super::*;

    /// A service answering every request with its method, through a fence.
    fn fenced(fence: &Fence) -> impl Service<Request<()>, Response = String, Error = BoxError> {
        FenceLayer(fence.clone()).layer(tower::service_fn(|request: Request<()>| async move {
            Ok::<_, BoxError>(request.method().to_string())
        }))
    }

    fn request(method: Method) -> Request<()> {
        Request::builder()
            .method(method)
            .uri("/apis/batch/v1/namespaces/a/jobs")
            .body(())
            .expect("request")
    }

    #[tokio::test(start_paused = true)]
    async fn writes_pass_only_until_the_time_the_fence_was_opened_for() {
        let fence = Fence::closed();
        fence.open_until(Instant::now() + Duration::from_secs(10));
        let answer = fenced(&fence).oneshot(request(Method::POST)).await;
        assert_eq!(answer.expect("write passes"), "POST");

        tokio::time::advance(Duration::from_secs(10)).await;
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let refused = fenced(&fence)
                .oneshot(request(method.clone()))
                .await
                .expect_err("write refused");
            assert_eq!(
                refused.to_string(),
                format!(
                    "refused to {method} /apis/batch/v1/namespaces/a/jobs: this replica no longer \
                     holds the leader Lease (a newer leader may be writing)"
                )
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_still_waiting_to_go_out_when_the_fence_closes_is_dropped() {
        let fence = Fence::closed();
        fence.open_until(Instant::now() + Duration::from_secs(10));
        let slow = tower::service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>("sent")
        });
        let pending = FenceLayer(fence.clone())
            .layer(slow)
            .call(request(Method::PATCH));
        // The process "freezes" before the request's future runs again.
        tokio::time::advance(Duration::from_secs(10)).await;
        let refused = pending.await.expect_err("dropped, not sent");
        assert!(
            refused.to_string().starts_with("refused to PATCH"),
            "{refused}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_task_is_dropped_once_the_fence_closes() {
        use hyper::rt::Executor as _;

        let fence = Fence::closed();
        fence.open_until(Instant::now() + Duration::from_secs(10));
        let (wrote_tx, mut wrote_rx) = tokio::sync::mpsc::unbounded_channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        FencedExecutor(fence.clone()).execute(async move {
            // The connection's write, which waits for the process to run it.
            let _ = go_rx.await;
            let _ = wrote_tx.send("written");
        });
        tokio::task::yield_now().await;
        // The process "freezes" with the write queued; on waking, the fence is closed.
        tokio::time::advance(Duration::from_secs(10)).await;
        let _ = go_tx.send(());
        assert_eq!(
            wrote_rx.recv().await,
            None,
            "the connection task was dropped unwritten"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_task_runs_while_the_fence_is_open() {
        use hyper::rt::Executor as _;

        let fence = Fence::closed();
        fence.open_until(Instant::now() + Duration::from_secs(10));
        let (wrote_tx, mut wrote_rx) = tokio::sync::mpsc::unbounded_channel();
        FencedExecutor(fence).execute(async move {
            let _ = wrote_tx.send("written");
        });
        assert_eq!(wrote_rx.recv().await, Some("written"));
    }

    #[tokio::test(start_paused = true)]
    async fn reads_pass_a_closed_fence() {
        let fence = Fence::closed();
        let answer = fenced(&fence).oneshot(request(Method::GET)).await;
        assert_eq!(answer.expect("read passes"), "GET");
    }

    #[tokio::test(start_paused = true)]
    async fn closing_refuses_at_once_and_a_late_renewal_does_not_shorten_the_grant() {
        let fence = Fence::closed();
        let now = Instant::now();
        fence.open_until(now + Duration::from_secs(10));
        fence.open_until(now + Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert!(fence.allows_writes(), "the later grant stands");
        fence.close();
        assert!(!fence.allows_writes());
        fence.open_until(Instant::now() + Duration::from_secs(10));
        assert!(fence.allows_writes(), "a new renewal opens it again");
    }

    #[tokio::test(start_paused = true)]
    async fn without_election_the_fence_never_closes() {
        let fence = Fence::unfenced();
        fence.close();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let answer = fenced(&fence).oneshot(request(Method::DELETE)).await;
        assert_eq!(answer.expect("write passes"), "DELETE");
    }
}
