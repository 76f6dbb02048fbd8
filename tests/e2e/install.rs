//! The install (`deploy/`) and the CRDs on a real apiserver.

use crate::harness::{INSTALL_NAMESPACE, cluster, kubectl_ok};
use crate::{Fixture, PATH};
use kube::api::PostParams;

#[test]
fn the_install_applies_without_pod_security_warnings() {
    let cluster = cluster();
    // The apiserver warns at apply time when a workload's Pod template would be refused.
    assert!(
        !cluster
            .install
            .warnings
            .contains("would violate PodSecurity"),
        "{}",
        cluster.install.warnings
    );
    let labels = kubectl_ok(cluster.plane.kubectl().args([
        "get",
        "namespace",
        INSTALL_NAMESPACE,
        "-o",
        "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}",
    ]))
    .expect("install namespace");
    assert_eq!(labels.stdout, "restricted");
}

#[test]
fn the_manager_pod_of_the_install_is_admitted_under_pod_security_restricted() {
    let cluster = cluster();
    let template = crate::harness::manager_deployment(cluster.plane, "{.spec.template}");
    let mut pod: serde_json::Value = serde_json::from_str(&template).expect("template");
    pod["apiVersion"] = "v1".into();
    pod["kind"] = "Pod".into();
    pod["metadata"]["name"] = "admission-check".into();
    let created = crate::harness::create_dry_run(&pod.to_string(), INSTALL_NAMESPACE);
    assert!(created.is_ok(), "{created:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_crd_refuses_a_path_that_climbs_out_of_the_repository() {
    let fx = Fixture::without_manager("crd-validation").await;
    let mut bad = crate::harness::analytics_crate("bad", &fx.url(), "/data/../../etc/passwd");
    let err = fx
        .crates
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("the apiserver refuses it");
    assert!(err.to_string().contains("path"), "{err}");

    bad.spec.path = PATH.to_owned();
    bad.spec.repo.url = "ftp://example.org/repo.git".to_owned();
    let err = fx
        .crates
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("the apiserver refuses it");
    assert!(err.to_string().contains("url"), "{err}");
}
