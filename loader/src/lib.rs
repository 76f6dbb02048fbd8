//! crate-loader: the only part of crate-operator that touches untrusted git content.
//!
//! Flow: [`source`] checks the request → [`fetch`] resolves the branch and reads one blob, in a
//! memory-capped child process ([`worker`]) over the loader's own transports (`transport`) →
//! [`rocrate`] parses, validates and maps it → [`render`] builds the datasource → [`apply`]
//! server-side-applies it (in-Job only) → the [`LoadResult`] goes to the termination message.
//! [`run`] composes the flows. Nothing here links the controller runtime.
//!
//! [`LoadResult`]: crate_operator_api::contract::LoadResult
// Denied, not forbidden: see src/transport/libgit2.rs, the one audited exception.
#![deny(unsafe_code)]

pub mod apply;
pub mod cli;
pub mod credentials;
pub mod escape;
pub mod fetch;
pub mod known_hosts;
pub mod render;
pub mod rocrate;
pub mod run;
pub mod source;
mod transport;
pub mod worker;
