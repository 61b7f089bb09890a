//! What the Job runner's tests share: a server configuration pointing at the fake API server,
//! a spec whose test Job runs a shell script, and the Jobs in the fake.

use std::collections::BTreeMap;

use phasegate::config::{Config, KubernetesConfig};

use super::{PATH, fake_kube::FakeKube, spec, test_config};

/// The namespace of the server's Secrets and of the test Jobs.
pub(crate) const NS: &str = "argo-events";
/// The API group path and resource of Jobs.
pub(crate) const JOBS: (&str, &str) = ("/apis/batch/v1", "jobs");

/// A server configuration using `kube`, with transient pod problems waited out for
/// `tolerance` (the default when `None`).
pub(crate) fn kube_config(kube: &FakeKube, tolerance: Option<&str>) -> Config {
    Config {
        kubernetes: KubernetesConfig {
            namespace: Some(NS.into()),
            api_url: Some(kube.url()),
            pod_problem_tolerance: tolerance.map(str::to_string),
            ..KubernetesConfig::default()
        },
        ..test_config()
    }
}

/// The petstore spec of `repo` whose test Job runs `sh -c script`, with `extra` keys.
pub(crate) fn job_spec(
    repo: &str,
    script: &str,
    extra: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let command = serde_json::to_string(&["sh", "-c", script]).expect("json");
    let mut s = spec(&[
        ("repo", repo),
        ("path", &PATH.replace("{app}", "petstore")),
        ("phases", "test,prod"),
        ("testImage", "registry.example.com/petstore-tests:1.2"),
        ("testCommand", &command),
        ("testTarget", "http://petstore.test.svc:8080"),
    ]);
    s.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    s
}

/// Names of the Jobs in the fake.
pub(crate) fn jobs(kube: &FakeKube) -> Vec<String> {
    kube.names(JOBS.0, NS, JOBS.1)
}
