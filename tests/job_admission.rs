//! The test Job as the API server and the kubelet admit it (`support::fake_kube` with
//! `fake_admission.rs`): a root image under `runAsNonRoot`, pods refused by Pod Security, a
//! LimitRange or an exhausted quota, an image that cannot be inspected, a Job the API server
//! finds invalid.

use std::{collections::BTreeMap, path::Path, time::Duration};

use crate::support::{
    fake_kube::FakeKube,
    test_jobs::{job_spec, jobs, kube_config},
    *,
};
use phasegate::{
    config::Config,
    sensor::{Failed, Firing},
    spec::PodSecurityLevel,
};
use tonic::Code;

fn config(kube: &FakeKube, tolerance: &str) -> Config {
    kube_config(kube, Some(tolerance))
}

fn spec_of(bare: &Path, image: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut spec = job_spec(&file_url(bare), "echo 3 tests passed", extra);
    spec.insert(
        "testImage".into(),
        format!("registry.example.com/{image}:1"),
    );
    spec
}

async fn fire(
    server: &TestServer,
    spec: &BTreeMap<String, String>,
    sha: &str,
) -> Result<Firing, Failed> {
    server
        .sensor()
        .await
        .fire(spec, &sync_event(sha), FROM_TEST)
        .await
}

/// The log of a run that ended `tests-failed`.
fn log_of(failed: Failed) -> String {
    let response = failed
        .response
        .unwrap_or_else(|| panic!("an answer, not {}", failed.status));
    assert_eq!(response["outcome"], "tests-failed");
    response["test"]["log"].as_str().expect("log").to_string()
}

/// Past this the Job controller ends a Job whose pod never runs ("DeadlineExceeded"): a run
/// that ends sooner was decided by phasegate, not by the deadline.
const DEADLINE: (&str, &str) = ("testTimeout", "4s");

#[tokio::test]
async fn a_root_test_image_under_run_as_non_root_fails_at_once_naming_test_pod_security_context() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube, "10m")).await;
    for (image, says) in [
        ("root-image", "image will run as root"),
        ("named-user", "image has non-numeric user (tester)"),
    ] {
        let spec = spec_of(&bare, image, &[DEADLINE]);
        let log = log_of(fire(&server, &spec, &synced).await.expect_err(image));
        assert!(
            log.contains("cannot run: CreateContainerConfigError") && log.contains(says),
            "{image}: {log}"
        );
        assert!(log.contains("testPodSecurityContext"), "{image}: {log}");
        assert!(!log.contains("DeadlineExceeded"), "{image}: {log}");
    }
    // What the message advises: a numeric non-root user.
    let spec = spec_of(
        &bare,
        "root-image",
        &[
            DEADLINE,
            ("testPodSecurityContext", r#"{"runAsUser":1000}"#),
        ],
    );
    let fired = fire(&server, &spec, &synced).await.expect("runs as 1000");
    assert_eq!(fired.response["outcome"], "promoted");
    server.stop().await;
}

#[tokio::test]
async fn an_image_that_cannot_be_inspected_ends_the_run_at_once() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube, "10m")).await;
    let spec = spec_of(&bare, "inspect-error", &[DEADLINE]);

    let log = log_of(fire(&server, &spec, &synced).await.expect_err("no image"));

    assert!(log.contains("cannot run: ImageInspectError"), "{log}");
    assert!(jobs(&kube).is_empty(), "a Job that cannot run is deleted");
    server.stop().await;
}

/// The Job controller retries a pod creation the API server refused: an exhausted quota
/// frees up, Pod Security and a LimitRange never change their mind.
#[tokio::test]
async fn failed_create_is_waited_out_for_a_quota_and_final_for_pod_security_or_a_limit_range() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let spec = spec_of(&bare, "tests", &[DEADLINE, ("dryRun", "true")]);

    let kube = FakeKube::start().await;
    kube.exhaust_quota_for(Duration::from_millis(800));
    let patient = TestServer::start(config(&kube, "10m")).await;
    let fired = fire(&patient, &spec, &synced).await.expect("quota freed");
    assert_eq!(fired.response["outcome"], "dry-run");
    patient.stop().await;
    kube.exhaust_quota_for(Duration::from_secs(60));
    let impatient = TestServer::start(config(&kube, "300ms")).await;
    let log = log_of(fire(&impatient, &spec, &synced).await.expect_err("quota"));
    assert!(
        log.contains("cannot run: FailedCreate") && log.contains("exceeded quota"),
        "{log}"
    );
    assert!(log.contains("(for 300ms)"), "{log}");
    impatient.stop().await;

    let kube = FakeKube::start().await;
    kube.limit_range("cpu", "1");
    let server = TestServer::start(config(&kube, "10m")).await;
    let greedy = spec_of(
        &bare,
        "tests",
        &[DEADLINE, ("testResources", r#"{"limits":{"cpu":"2"}}"#)],
    );
    let log = log_of(fire(&server, &greedy, &synced).await.expect_err("limit"));
    assert!(
        log.contains("maximum cpu usage per Container is 1, but limit is 2"),
        "{log}"
    );
    assert!(log.contains("testResources"), "{log}");
    assert!(!log.contains("DeadlineExceeded"), "{log}");
    server.stop().await;

    // The operator allows baseline; the namespace enforces restricted.
    let kube = FakeKube::start().await;
    kube.enforce_restricted();
    let mut config = config(&kube, "10m");
    config.policy.test_pod_security = PodSecurityLevel::Baseline;
    let server = TestServer::start(config).await;
    let as_root = spec_of(
        &bare,
        "tests",
        &[
            DEADLINE,
            ("testPodSecurityContext", r#"{"runAsNonRoot":false}"#),
        ],
    );
    let log = log_of(fire(&server, &as_root, &synced).await.expect_err("refused"));
    assert!(
        log.contains("violates PodSecurity \"restricted:latest\": runAsNonRoot != true"),
        "{log}"
    );
    assert!(!log.contains("DeadlineExceeded"), "{log}");
    server.stop().await;
}

#[tokio::test]
async fn a_job_the_api_server_finds_invalid_is_invalid_argument_naming_the_field() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube, "10m")).await;
    let resources = r#"{"requests":{"cpu":"2"},"limits":{"cpu":"1"}}"#;
    let spec = spec_of(&bare, "tests", &[("testResources", resources)]);

    let failed = fire(&server, &spec, &synced).await.expect_err("422");

    assert_eq!(
        failed.status.code(),
        Code::InvalidArgument,
        "{}",
        failed.status.message()
    );
    let message = failed.status.message();
    assert!(
        message.contains("spec.template.spec.containers[0].resources.requests"),
        "{message}"
    );
    assert!(
        message.contains("must be less than or equal to cpu limit of 1"),
        "{message}"
    );
    assert!(message.contains("testResources"), "{message}");
    assert!(jobs(&kube).is_empty());
    server.stop().await;
}
