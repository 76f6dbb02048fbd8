//! The harness itself: a control plane starts with the controllers the operator relies on, and
//! stopping it stops every process and removes its files.

use std::net::TcpStream;
use std::time::Duration;

use crate_test_cluster::ControlPlane;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::Api;
use kube::runtime::wait::await_condition;

fn kubectl(plane: &ControlPlane, args: &[&str]) -> String {
    let output = plane.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_control_plane_serves_the_pinned_release_with_its_controllers_and_stops_completely() {
    let plane = ControlPlane::start().expect("control plane starts");
    let version = kubectl(&plane, &["version", "-o", "json"]);
    let version: serde_json::Value = serde_json::from_str(&version).expect("version JSON");
    assert!(
        version["serverVersion"]["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.")),
        "{version}"
    );

    // The ServiceAccount and root-CA publisher controllers fill a new namespace: the loader
    // Pod's projected volume needs the kube-root-ca.crt ConfigMap.
    kubectl(&plane, &["create", "namespace", "harness"]);
    let client = plane.admin_client().await.expect("admin client");
    let filled = async {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "harness");
        let config_maps: Api<ConfigMap> = Api::namespaced(client, "harness");
        tokio::try_join!(
            await_condition(accounts, "default", |o: Option<&ServiceAccount>| o
                .is_some()),
            await_condition(config_maps, "kube-root-ca.crt", |o: Option<&ConfigMap>| {
                o.is_some()
            }),
        )
    };
    tokio::time::timeout(Duration::from_secs(60), filled)
        .await
        .expect("the namespace is filled within a minute")
        .expect("watching the namespace");

    let port = plane
        .server_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("port");
    let dir = plane.dir().to_owned();
    drop(plane);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the apiserver still listens after the control plane was dropped"
    );
    assert!(!dir.exists(), "{} was left behind", dir.display());
}
