//! The committed CRDs, `deploy/crds/crds.yaml` for kustomize and the chart's
//! `charts/crate-operator/files/crds.yaml`, must both be exactly what the Rust types generate.

use std::process::Command;

#[test]
fn committed_crds_match_the_rust_types() {
    let out = Command::new(env!("CARGO_BIN_EXE_crate-operator"))
        .arg("crd")
        .output()
        .expect("run crate-operator crd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("utf-8");
    for file in [
        "deploy/crds/crds.yaml",
        "charts/crate-operator/files/crds.yaml",
    ] {
        let committed =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            generated == committed,
            "{file} is stale; regenerate both with: \
             cargo run -q -- crd | tee deploy/crds/crds.yaml > charts/crate-operator/files/crds.yaml"
        );
    }
}

#[test]
fn the_crds_keep_the_upstream_names() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/crds/crds.yaml"
    ))
    .expect("crds");
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&committed)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .collect();
    let names: Vec<_> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "analyticscrates.xlscsde.nhs.uk",
            "analyticsdatasources.xlscsde.nhs.uk"
        ]
    );
    for (doc, short) in docs.iter().zip(["ac", "ads"]) {
        let spec = &doc["spec"];
        assert_eq!(spec["group"], "xlscsde.nhs.uk");
        assert_eq!(spec["scope"], "Namespaced");
        assert_eq!(spec["names"]["shortNames"][0], short);
        assert_eq!(
            spec["names"]["categories"],
            serde_yaml::to_value(["krap", "krap-core"]).expect("v")
        );
        assert_eq!(spec["versions"][0]["name"], "v1");
        assert!(spec["versions"][0]["subresources"]["status"].is_mapping());
    }
}
