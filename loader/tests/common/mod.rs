//! Fixtures shared by the loader's integration tests: the bundled example crate and a
//! repository holding it, with the files it describes, at the cr8tor path.

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

/// The files the example crate describes (its payload), as tree paths and contents.
pub const EXAMPLE_PAYLOAD: [(&str, &str); 3] = [
    (
        "bagit/data/governance/cr8-governance.yaml",
        include_str!("../../../examples/demo-crate/bagit/data/governance/cr8-governance.yaml"),
    ),
    (
        "bagit/data/metadata/dataset_abx_prescribing.toml",
        include_str!(
            "../../../examples/demo-crate/bagit/data/metadata/dataset_abx_prescribing.toml"
        ),
    ),
    (
        "bagit/data/data/cr8-ingress.yaml",
        include_str!("../../../examples/demo-crate/bagit/data/data/cr8-ingress.yaml"),
    ),
];

/// A bare repository with the example crate at [`META`] and its payload on `main`.
pub fn example_repo() -> BareRepo {
    example_repo_without(&[])
}

/// [`example_repo`] with the payload files at the tree paths `left_out` missing.
pub fn example_repo_without(left_out: &[&str]) -> BareRepo {
    EXAMPLE_PAYLOAD
        .iter()
        .filter(|(path, _)| !left_out.contains(path))
        .fold(
            RepoBuilder::new().file(META, EXAMPLE_CRATE),
            |b, (path, text)| b.file(path, *text),
        )
        .commit("crate")
        .build_bare()
        .expect("repo")
}
