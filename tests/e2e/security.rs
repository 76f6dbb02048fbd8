//! Security on a real apiserver: Pod Security "restricted" admits the loader Pod (and really is
//! enforced), and the loader's token can do exactly what loading needs and nothing more.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::harness::{cluster, kubectl_ok};
use crate::{Fixture, TestNamespace};

#[tokio::test(flavor = "multi_thread")]
async fn the_loader_pod_is_admitted_where_pod_security_restricted_is_enforced() {
    let fx = Fixture::new("restricted").await;
    fx.create_crate("omop", |_| {}).await;
    fx.wait_ready_at("omop", &fx.head()).await;
    assert_eq!(cluster().kubelet.runs(&fx.ns.name).len(), 1);

    // The namespace really enforces it: a Pod that breaks "restricted" is refused there.
    let refused = cluster()
        .plane
        .kubectl()
        .args(["run", "privileged", "--image=busybox", "--dry-run=server", "-n"])
        .arg(&fx.ns.name)
        .args(["--overrides", r#"{"spec":{"containers":[{"name":"privileged","image":"busybox","securityContext":{"privileged":true}}]}}"#])
        .output()
        .expect("kubectl");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a privileged Pod was admitted");
    assert!(
        stderr.contains("violates PodSecurity \"restricted"),
        "{stderr}"
    );
}

/// Whether the loader's token may do `verb` on `resource` in `namespace`.
async fn loader_may(
    client: &kube::Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: &str,
) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("access review")
        .status
        .expect("review status")
        .allowed
}

#[tokio::test(flavor = "multi_thread")]
async fn the_loader_token_may_write_datasources_in_its_namespace_and_nothing_else() {
    let fx = Fixture::new("loader-rbac").await;
    fx.create_crate("omop", |_| {}).await;
    fx.wait_ready_at("omop", &fx.head()).await;
    let other = TestNamespace::new("loader-rbac-other");

    // A token for the loader's ServiceAccount, as the kubelet projects it into the Pod.
    let token = kubectl_ok(
        cluster()
            .plane
            .kubectl()
            .args(["create", "token", "crate-loader", "-n"])
            .arg(&fx.ns.name),
    )
    .expect("loader token")
    .stdout;
    let mut config = cluster().plane.admin_config().await.expect("config");
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.trim().to_owned().into()),
        ..kube::config::AuthInfo::default()
    };
    let loader = kube::Client::try_from(config).expect("loader client");

    let ns = fx.ns.name.as_str();
    let group = "xlscsde.nhs.uk";
    for verb in ["get", "create", "patch"] {
        assert!(
            loader_may(&loader, verb, group, "analyticsdatasources", ns).await,
            "{verb} datasources"
        );
    }
    let denied = [
        ("delete", group, "analyticsdatasources", ns),
        ("list", group, "analyticsdatasources", ns),
        ("get", group, "analyticscrates", ns),
        ("get", group, "analyticsdatasources", other.name.as_str()),
        ("patch", group, "analyticsdatasources", other.name.as_str()),
        ("get", "", "secrets", ns),
        ("list", "", "secrets", ns),
        ("get", "", "pods", ns),
        ("create", "", "pods", ns),
        ("get", "", "configmaps", ns),
        ("create", "batch", "jobs", ns),
    ];
    for (verb, group, resource, namespace) in denied {
        assert!(
            !loader_may(&loader, verb, group, resource, namespace).await,
            "the loader may {verb} {resource} in {namespace}"
        );
    }
}
