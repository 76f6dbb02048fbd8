//! The `crate-loader` binary, for the suites that run it (`cli.rs`, `load.rs`, `partial.rs`,
//! and the hostile-server suites through `hostile.rs` in this directory).

use std::process::Command;

/// `crate-loader` without the `CRATE_LOADER_*` variables of the environment the tests run in:
/// every flag reads one, and a developer's settings must not change a test.
pub fn loader() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crate-loader"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CRATE_LOADER_") {
            cmd.env_remove(key);
        }
    }
    cmd
}
