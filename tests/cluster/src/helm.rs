//! The `helm` binary, for the chart's tests and the install through the chart: built from the Go
//! module pinned in `hack/helm/go.mod` by `hack/helm/build.sh`, once per version, and cached
//! outside the repository like the control plane (or taken from `HELM_BIN_DIR`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::control_plane::run_build_script;
use crate::{ControlPlane, Result, error};

/// The chart, `charts/crate-operator`.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/crate-operator")
}

/// The built `helm`, built on first use by this process.
pub fn binary() -> Result<PathBuf> {
    static HELM: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    HELM.get_or_init(|| {
        run_build_script(
            "hack/helm/build.sh",
            "it needs Go and the Go module proxy, or HELM_BIN_DIR pointing at a helm binary",
        )
        .map(|dir| dir.join("helm"))
        .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(error)
}

/// A `helm` command that touches nothing of the user's: its caches, configuration and data
/// (repositories, plugins) live in `home`, and no kubeconfig is read unless one is given.
pub fn command(home: &Path) -> Result<Command> {
    let mut command = Command::new(binary()?);
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    Ok(command)
}

/// A `helm` command acting on `plane` as its cluster administrator.
pub fn on(plane: &ControlPlane) -> Result<Command> {
    let mut command = command(&plane.dir().join("helm"))?;
    command.arg(format!("--kubeconfig={}", plane.kubeconfig().display()));
    Ok(command)
}
