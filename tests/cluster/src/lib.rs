//! A real Kubernetes control plane for the end-to-end tests, and the kubelet's part for loader
//! Pods.
//!
//! Mocks cannot tell whether the CRDs are accepted, whether Pod Security admission admits the
//! loader Pods, whether RBAC gives the loader exactly what it needs, or whether garbage collection
//! cleans up. So the end-to-end tests run against the official binaries, built from their Go
//! modules by `hack/control-plane/build.sh` and cached outside the repository:
//!
//! - [`ControlPlane`] starts etcd, kube-apiserver (RBAC, service-account tokens, Pod Security and
//!   ResourceQuota admission) and kube-controller-manager (Job, garbage collector,
//!   TTL-after-finished, ServiceAccount, root CA publisher, ResourceQuota and Namespace
//!   controllers) on loopback with freshly generated certificates, and stops them when dropped or
//!   when the test process dies, however it dies.
//! - [`Kubelet`] stands in for the node: it runs a loader Pod's init and main containers as local
//!   processes of the built `crate-loader`, with the Pod's args, env and volumes (emptyDir, the
//!   crate's Secret, and a real projected service-account token from the TokenRequest API), and
//!   reports their exit codes and termination messages in the Pod's status, so the real Job
//!   controller completes or fails the Job.
//! - [`operator`] installs the operator on a control plane (`deploy/`), finds the built loader
//!   and runs `crate-operator run` processes as the install's ServiceAccount: what the
//!   end-to-end tests and the scale benchmark share.
//! - [`helm`] builds the pinned `helm` and runs it against a control plane, for the chart.
//! - [`audit`] counts a user's requests in the apiserver's audit log, for a control plane
//!   started with an audit policy ([`Options`]).
#![forbid(unsafe_code)]

pub mod audit;
mod certs;
mod control_plane;
mod guard;
pub mod helm;
mod kubelet;
pub mod node;
pub mod operator;

pub use control_plane::{ControlPlane, Options, binaries, free_port, token_kubeconfig};
pub use guard::{Guarded, log_tail};
pub use kubelet::{Kubelet, KubeletConfig, PodRun};

/// Result type of this crate: every failure is an [`std::io::Error`] saying what failed.
pub type Result<T> = std::io::Result<T>;

/// An [`std::io::Error`] with a message.
pub(crate) fn error(message: impl Into<String>) -> std::io::Error {
    std::io::Error::other(message.into())
}
