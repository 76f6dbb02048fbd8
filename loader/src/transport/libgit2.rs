//! The loader's only `unsafe` code: two process-wide libgit2 settings git2 offers no safe call
//! for. Kept in one small file so it can be audited at a glance.
//!
//! - [`register_transports`]: `git2::transport::register` is `unsafe` because libgit2's
//!   transport list must not change while another thread creates a transport. We register once,
//!   under a `Once`, and every transport the loader creates goes through [`super::register`],
//!   which calls this first, so no transport is ever created concurrently with the change.
//! - [`set_pack_limits`]: `git_libgit2_opts` is C-variadic, which Rust can only call unsafely.
//!   The two options take a `size_t` each, as passed here. They are global, so only the fetch
//!   worker (one fetch per process) sets them; in-process fetches keep libgit2's defaults.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use crate::fetch::FetchError;

static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Routes `crate-loader://` URLs to [`super::transport_for`], once per process.
pub(super) fn register_transports() -> Result<(), FetchError> {
    REGISTERED
        .get_or_init(|| {
            // SAFETY: runs once, before any transport this process creates (all of them are
            // created after this returns, see the module comment); the factory is 'static.
            unsafe { git2::transport::register("crate-loader", super::transport_for) }
                .map_err(|e| e.message().to_owned())
        })
        .clone()
        .map_err(|e| FetchError::Local(format!("failed to register the git transports: {e}")))
}

use libgit2_sys::{GIT_OPT_SET_PACK_MAX_OBJECT_SIZE, GIT_OPT_SET_PACK_MAX_OBJECTS};

/// Caps what libgit2's pack indexer accepts before it allocates: the object count a pack header
/// may claim (it sizes arrays by it), and the size of an object a delta may expand to (it
/// allocates the result whole). Call before any fetch; affects the whole process.
pub(crate) fn set_pack_limits(max_objects: u64, max_object_size: u64) -> Result<(), FetchError> {
    let objects = usize::try_from(max_objects).unwrap_or(usize::MAX);
    let size = usize::try_from(max_object_size).unwrap_or(usize::MAX);
    git2::opts::strict_hash_verification(true);
    for (option, value) in [
        (GIT_OPT_SET_PACK_MAX_OBJECTS, objects),
        (GIT_OPT_SET_PACK_MAX_OBJECT_SIZE, size),
    ] {
        // SAFETY: both options read exactly one size_t vararg (settings.c, libgit2 1.9).
        let rc = unsafe { libgit2_sys::git_libgit2_opts(option.cast_signed(), value) };
        if rc < 0 {
            return Err(FetchError::Local(format!(
                "failed to set libgit2 option {option}"
            )));
        }
    }
    Ok(())
}
