//! Test infrastructure for the crate operator: fixture git repositories and real git servers.
//!
//! Everything here is for tests only (`publish = false`). It drives the real `git` and OpenSSH
//! tools and serves on loopback only, so the loader's libgit2 code can be tested end to end
//! against the same servers it meets in production:
//!
//! - [`RepoBuilder`] makes bare repositories with `git fast-import`: nested files, executables,
//!   symlinks, gitlinks (submodules), large incompressible blobs, many small objects, several
//!   branches, tags and later commits ([`BareRepo::update`]).
//! - [`GitDaemon`] serves a folder of bare repositories over `git://`.
//! - [`SmartHttp`] serves them over git's smart HTTP protocol (`git http-backend` behind hyper)
//!   with optional basic auth, a request log and byte counters.
//! - [`Sshd`] runs OpenSSH's `sshd` on a private configuration with generated keys.
//! - [`Tarpit`] accepts connections and never answers, for time-out tests.
//! - [`hostile`] has servers that follow a script instead of a repository
//!   ([`hostile::ScriptedGitDaemon`] for `git://`, [`hostile::ScriptedHttp`] for HTTP and HTTPS),
//!   crafted packfiles and deltas ([`hostile::PackBuilder`]), and repositories with refs and
//!   objects git refuses to make ([`hostile::repos`]).
//! - [`Relay`] forwards TCP connections to one address and counts them.
//!
//! Every server binds `127.0.0.1` only (or the one IP it is given, such as `127.0.0.2`), waits
//! for readiness by connecting (never by sleeping) and stops when dropped. Missing tools are reported with the Debian package that provides them.
//! Every git command run here is hermetic: [`git`] ignores the system and global configuration.
#![forbid(unsafe_code)]

mod daemon;
pub mod hostile;
mod http;
mod process;
mod relay;
mod repo;
mod rng;
mod server;
mod sshd;
mod tarpit;
mod tls;
mod web;

pub use daemon::GitDaemon;
pub use http::{Request, SmartHttp, SmartHttpBuilder};
pub use process::{git, run, run_ok};
pub use relay::Relay;
pub use repo::{BareRepo, MIB, RepoBuilder, TreeEntry};
pub use rng::XorShift64;
pub use sshd::Sshd;
pub use tarpit::Tarpit;

/// Result type of this crate: every failure is an [`std::io::Error`] whose message says what
/// failed (including the stderr of a failed command, or which package to install).
pub type Result<T> = std::io::Result<T>;
