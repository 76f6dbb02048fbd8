//! crate-loader: the only part of crate-operator that touches untrusted git content.
//!
//! Flow: [`fetch`] resolves the branch and reads one blob → [`rocrate`] parses, validates and
//! maps it → [`apply`] server-side-applies the datasource (in-Job only) → the [`LoadResult`]
//! goes to the termination message. Nothing here links the controller runtime.
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
