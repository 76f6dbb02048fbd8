//! Fixtures of the hostile-server suites (`hostile.rs`, `hostile_v2.rs`, `redirects.rs`): a
//! one-file crate as a pack, a library fetch of it, and `crate-loader preview` run as a Job
//! would run it, with a memory budget, reporting the peaks the kernel measured.
#![allow(
    dead_code,
    reason = "each suite that shares this file uses a part of it"
)]

use std::path::Path;

use crate_operator_api::contract::Outcome;
use crate_test_support::MIB;
use crate_test_support::hostile::{PackBuilder, TreeItem};

use super::binary::loader;
pub use super::fetching::CRATE;
use super::fetching::Fetch;

/// The metadata file at the repository root.
pub const META: &str = "ro-crate-metadata.json";

/// A valid one-file crate as a pack: (commit id, pack bytes).
pub fn crate_pack(extra: impl FnOnce(&mut PackBuilder)) -> (String, Vec<u8>) {
    let mut pack = PackBuilder::new();
    let blob = pack.blob(CRATE.to_vec());
    let tree = pack.tree(&[TreeItem::file(META, blob)]);
    let commit = pack.commit(tree, &[], "crate");
    extra(&mut pack);
    (commit.hex(), pack.build())
}

/// `crate-loader preview` as a Job would run it, with a memory budget, and what it reported.
pub struct Run {
    pub code: i32,
    pub stderr: String,
    /// Peak resident memory of the fetch worker and of the loader, in bytes, as measured by
    /// the kernel (the loader's "fetch worker finished" log line).
    pub peaks: Option<(u64, u64)>,
}

pub const TEST_MEMORY: u64 = 128 * MIB;

pub fn preview(url: &str, args: &[&str], env: &[(&str, &Path)]) -> Run {
    let mut cmd = loader();
    cmd.args([
        "--log-format",
        "json",
        "preview",
        "--allow-insecure-transport",
        "--repo",
        url,
    ])
    .args(["--path", META])
    .args(["--max-memory-bytes", &TEST_MEMORY.to_string()])
    .args(args);
    if !args.contains(&"--timeout") {
        cmd.args(["--timeout", "60s"]);
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("crate-loader runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let peaks = stderr.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v["message"] == "fetch worker finished").then(|| {
            (
                v["worker_peak_kib"].as_u64().unwrap_or(u64::MAX) * 1024,
                v["loader_peak_kib"].as_u64().unwrap_or(u64::MAX) * 1024,
            )
        })
    });
    Run {
        code: out.status.code().expect("exited, not killed"),
        stderr,
        peaks,
    }
}

impl Run {
    /// Asserts a permanent limit failure whose message mentions `words`, within the memory cap.
    pub fn limit_exceeded(&self, words: &str) {
        assert_eq!(
            self.code,
            Outcome::LimitExceeded.exit_code(),
            "{}",
            self.stderr
        );
        assert!(self.stderr.contains(words), "{}", self.stderr);
        self.within_memory();
    }

    /// The worker stayed under its cap (plus what RLIMIT_DATA does not count: the binary and
    /// shared libraries), and the loader itself stayed small.
    pub fn within_memory(&self) {
        let (worker, loader) = self
            .peaks
            .expect("the loader reports the worker's peak memory");
        eprintln!(
            "peak memory: worker {} KiB, loader {} KiB",
            worker / 1024,
            loader / 1024
        );
        assert!(
            worker <= TEST_MEMORY + 32 * MIB,
            "worker peak {} MiB over the {} MiB budget",
            worker / MIB,
            TEST_MEMORY / MIB
        );
        assert!(loader <= 64 * MIB, "loader peak {} MiB", loader / MIB);
    }
}

/// A library fetch of the crate at the repository root (no worker, no memory cap).
pub fn fetch_of(url: impl Into<String>) -> Fetch {
    Fetch {
        path: format!("/{META}"),
        ..Fetch::of(url)
    }
}
