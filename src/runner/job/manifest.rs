//! The test Job as phasegate creates it: one container named [`CONTAINER`], no retries, the
//! run's deadline, the spec's security contexts merged over the Pod Security "restricted"
//! defaults ([`crate::spec::pod_context`]), evictions not counted as failures, and
//! an annotation proving which run it belongs to.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use crate::spec::{JobTest, container_context, pod_context};

/// The test container's name: logs are read from it by name, since a mesh (Istio, Linkerd)
/// may inject a sidecar and a pod with two containers answers a log request without one 400.
pub(super) const CONTAINER: &str = "tests";
/// Annotation holding the digest of the run's idempotency key: phasegate attaches to an
/// existing Job of the same name only when it carries the same digest.
pub(super) const RUN_KEY: &str = "phasegate.dev/run-key";
/// Failed Jobs stay this long for `kubectl logs`, then the cluster removes them.
const FAILED_JOB_TTL_SECONDS: u64 = 24 * 3600;

/// Builds the Job; `Err` names the spec key whose JSON is not what Kubernetes accepts there.
pub(super) fn manifest(
    test: &JobTest,
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    run_key: &str,
) -> Result<Job, String> {
    let mut env: Vec<_> = test
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    env.push(json!({"name": "TEST_TARGET", "value": test.target}));
    let mut container = json!({
        "name": CONTAINER,
        "image": test.image,
        "args": test.args,
        "env": env,
        "securityContext": container_context(test.security_context.as_ref()),
    });
    if !test.command.is_empty() {
        container["command"] = json!(test.command);
    }
    if let Some(resources) = &test.resources {
        container["resources"] = resources.clone();
    }
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "containers": [container],
        "securityContext": pod_context(test.pod_security_context.as_ref()),
    });
    match &test.service_account {
        Some(sa) => pod_spec["serviceAccountName"] = json!(sa),
        // A test that names no service account has no use for an API token.
        None => pod_spec["automountServiceAccountToken"] = json!(false),
    }
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "annotations": {RUN_KEY: run_key}},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": test.timeout.as_secs().max(1),
            "ttlSecondsAfterFinished": FAILED_JOB_TTL_SECONDS,
            // An eviction, preemption or node drain is not the test's failure: the Job
            // controller starts the pod again instead of failing the Job (Kubernetes ≥ 1.26).
            // `status` is written: k8s-openapi would send the field as "", which an API
            // server without `SetDefaults_PodFailurePolicyOnPodConditionsPattern` refuses
            // ("onPodConditions[0].status: Required value", kubernetes#131512).
            "podFailurePolicy": {"rules": [
                {"action": "Ignore",
                 "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
            ]},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    });
    serde_json::from_value(job).map_err(|e| {
        format!("testResources, testSecurityContext or testPodSecurityContext is not valid for a Job: {e}")
    })
}

/// The spec keys behind the fields of the Job an API server's 422 message names (`… is
/// invalid: spec.template.spec.containers[0].resources.requests: Invalid value: …`), most
/// specific first; empty when it names none phasegate takes from the spec.
pub(super) fn spec_keys_in(message: &str) -> Vec<&'static str> {
    const FIELDS: [(&str, &str); 10] = [
        ("containers[0].resources", "testResources"),
        ("containers[0].securityContext", "testSecurityContext"),
        (
            "spec.template.spec.securityContext",
            "testPodSecurityContext",
        ),
        ("containers[0].env", "testEnv"),
        ("containers[0].image", "testImage"),
        ("containers[0].command", "testCommand"),
        ("containers[0].args", "testArgs"),
        ("serviceAccountName", "testServiceAccount"),
        ("activeDeadlineSeconds", "testTimeout"),
        ("metadata.namespace", "testNamespace"),
    ];
    FIELDS
        .iter()
        .filter(|(field, _)| message.contains(field))
        .map(|(_, key)| *key)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use super::*;

    fn test() -> JobTest {
        JobTest {
            image: "registry.example.com/petstore-tests:1.2".into(),
            command: vec!["./launchTests.sh".into()],
            args: vec!["http://petstore.test.svc:8080".into()],
            target: "http://petstore.test.svc:8080".into(),
            namespace: None,
            service_account: None,
            resources: None,
            env: BTreeMap::new(),
            timeout: Duration::from_secs(600),
            security_context: None,
            pod_security_context: None,
        }
    }

    fn as_json(test: &JobTest) -> Value {
        let job = manifest(test, "phasegate-1", "argo-events", &BTreeMap::new(), "k").expect("job");
        serde_json::to_value(job).expect("json")
    }

    #[test]
    fn the_default_template_passes_pod_security_restricted() {
        let job = as_json(&test());
        let pod = &job["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        // The checks of the "restricted" profile (Kubernetes Pod Security Standards).
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(c["name"], CONTAINER);
        assert_eq!(pod["automountServiceAccountToken"], false);
    }

    #[test]
    fn the_spec_is_merged_over_the_security_contexts() {
        let mut t = test();
        t.security_context = Some(json!({"runAsUser": 0, "capabilities": {"add": ["CHOWN"]}}));
        t.pod_security_context = Some(json!({"fsGroup": 1000, "runAsNonRoot": false}));
        let job = as_json(&t);
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"],
            json!({"runAsNonRoot": false, "seccompProfile": {"type": "RuntimeDefault"},
                   "fsGroup": 1000})
        );
        assert_eq!(
            pod["containers"][0]["securityContext"],
            json!({"allowPrivilegeEscalation": false, "capabilities": {"add": ["CHOWN"]},
                   "runAsUser": 0})
        );
    }

    #[test]
    fn the_job_carries_the_contexts_the_pod_security_check_reads() {
        let mut t = test();
        t.security_context = Some(json!({"readOnlyRootFilesystem": true}));
        t.pod_security_context = Some(json!({"runAsUser": 1000}));
        let job = as_json(&t);
        let pod = &job["spec"]["template"]["spec"];
        let container = &pod["containers"][0]["securityContext"];
        assert_eq!(
            pod["securityContext"],
            pod_context(t.pod_security_context.as_ref())
        );
        assert_eq!(*container, container_context(t.security_context.as_ref()));
        let level = crate::spec::PodSecurityLevel::Restricted;
        assert_eq!(
            crate::spec::check_pod_security(level, &pod["securityContext"], container),
            Ok(())
        );
    }

    #[test]
    fn a_malformed_security_context_is_an_error_naming_the_keys() {
        let mut t = test();
        t.security_context = Some(json!({"runAsUser": "root"}));
        let e = manifest(&t, "n", "ns", &BTreeMap::new(), "k").expect_err("invalid");
        assert!(e.contains("testSecurityContext"), "{e}");
    }

    #[test]
    fn a_refused_field_is_traced_back_to_its_spec_key() {
        let message = "Job.batch \"phasegate-1\" is invalid: [spec.template.spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1, spec.template.spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive]";
        assert_eq!(
            spec_keys_in(message),
            ["testResources", "testPodSecurityContext"]
        );
        assert!(spec_keys_in("spec.completions: Invalid value").is_empty());
    }

    #[test]
    fn evictions_are_not_counted_as_failures() {
        let job = as_json(&test());
        let rule = &job["spec"]["podFailurePolicy"]["rules"][0];
        assert_eq!(rule["action"], "Ignore");
        assert_eq!(rule["onPodConditions"][0]["type"], "DisruptionTarget");
        assert_eq!(rule["onPodConditions"][0]["status"], "True");
        assert_eq!(job["metadata"]["annotations"][RUN_KEY], "k");
    }
}
