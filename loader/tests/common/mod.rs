//! Fixtures shared by the loader's integration tests: the bundled example crate and a
//! repository holding it at the cr8tor path.

use crate_test_support::{BareRepo, RepoBuilder};
use serde_json::Value;

/// Where cr8tor puts the metadata file, as a tree path and as `--path`.
pub const META: &str = "bagit/data/ro-crate-metadata.json";
pub const PATH: &str = "/bagit/data/ro-crate-metadata.json";
/// The example crate the README previews.
pub const EXAMPLE_CRATE: &str =
    include_str!("../../../examples/demo-crate/bagit/data/ro-crate-metadata.json");

/// The root data entity (`./`) of the example crate.
pub fn example_root() -> Value {
    let doc: Value = serde_json::from_str(EXAMPLE_CRATE).expect("example crate is JSON");
    doc["@graph"]
        .as_array()
        .expect("@graph")
        .iter()
        .find(|e| e["@id"] == "./")
        .expect("root entity")
        .clone()
}

/// A bare repository with the example crate at [`META`] on `main`.
pub fn example_repo() -> BareRepo {
    RepoBuilder::new()
        .file(META, EXAMPLE_CRATE)
        .commit("crate")
        .build_bare()
        .expect("repo")
}
