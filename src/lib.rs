//! crate-operator, the manager: reconciles `AnalyticsCrate`s into loader Jobs and reports their
//! outcome in the crate's status. It never touches git; `crate-loader` does, inside the Job.
//!
//! Flow of one reconcile: observe (crate, its Jobs) → decide (pure) → act (create a Job, ensure
//! the loader's RBAC) → report (status by server-side apply, events).
#![forbid(unsafe_code)]
pub mod decide;
pub mod status;

pub mod args;
pub mod client;
pub mod controller;
pub mod fence;
pub mod job;
pub mod leader;
pub mod loader_namespace;
pub mod metrics;
pub mod observe;
pub mod server;
