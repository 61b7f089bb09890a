//! The decisions on objects shaped as a real cluster returns them (`tests/fixtures/kubernetes/`,
//! whose README says where they come from), as kube-runtime's `wait.rs` tests its conditions.

use k8s_openapi::api::{batch::v1::Job, core::v1::Event, core::v1::Pod};
use serde::de::DeserializeOwned;

use super::*;

fn fixture<T: DeserializeOwned>(yaml: &str) -> T {
    serde_yaml_ng::from_str(yaml).expect("fixture parses as the Kubernetes type")
}

macro_rules! load {
    ($file:literal) => {
        fixture(include_str!(concat!(
            "../../../../tests/fixtures/kubernetes/",
            $file
        )))
    };
}

#[test]
fn failure_target_deadline_exceeded_is_a_timeout_before_the_terminal_failed() {
    let job: Job = load!("job-deadline-exceeded.yaml");
    assert_eq!(
        job_verdict(&job),
        Some(Verdict::TimedOut(
            "DeadlineExceeded: Job was active longer than specified deadline".into()
        ))
    );
}

#[test]
fn a_failed_pod_is_a_failed_test_with_the_controllers_reason() {
    let job: Job = load!("job-backoff-limit-failed.yaml");
    assert!(
        matches!(job_verdict(&job), Some(Verdict::Failed(r)) if r.starts_with("BackoffLimitExceeded"))
    );
}

#[test]
fn success_criteria_met_passes_before_complete() {
    let job: Job = load!("job-success-criteria-met.yaml");
    assert_eq!(job_verdict(&job), Some(Verdict::Passed));
}

#[test]
fn a_disrupted_pod_being_replaced_is_no_verdict() {
    let job: Job = load!("job-disrupted-pod-replaced.yaml");
    assert_eq!(job_verdict(&job), None);
}

#[test]
fn unschedulable_and_image_pull_errors_are_transient() {
    let pod: Pod = load!("pod-unschedulable.yaml");
    assert!(
        matches!(pod_problem(&pod), Some(PodProblem::Transient { reason, detail })
        if reason == "Unschedulable" && detail.contains("Insufficient cpu"))
    );
    let pod: Pod = load!("pod-err-image-pull.yaml");
    assert!(
        matches!(pod_problem(&pod), Some(PodProblem::Transient { reason, .. }) if reason == "ErrImagePull")
    );
}

#[test]
fn an_invalid_image_name_is_permanent() {
    let pod: Pod = load!("pod-invalid-image-name.yaml");
    assert!(
        matches!(pod_problem(&pod), Some(PodProblem::Permanent(d)) if d.starts_with("InvalidImageName"))
    );
}

#[test]
fn an_evicted_pod_is_not_the_tests_problem() {
    let pod: Pod = load!("pod-evicted.yaml");
    assert_eq!(pod_problem(&pod), None);
}

#[test]
fn a_failed_create_warning_carries_the_admission_message() {
    let event: Event = load!("event-failed-create.yaml");
    let problem = failed_create(&event).expect("FailedCreate");
    assert!(
        matches!(&problem, PodProblem::Permanent(m) if m.contains("violates PodSecurity") && m.contains("testSecurityContext")),
        "{problem:?}"
    );
}

#[test]
fn a_failed_create_for_a_quota_or_a_webhook_timeout_is_retried_by_the_controller() {
    let mut event: Event = load!("event-failed-create.yaml");
    for message in [
        "Error creating: pods \"phasegate-1-x\" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=10, limited: pods=10",
        "Error creating: Internal error occurred: failed calling webhook \"sidecar-injector.istio.io\": failed to call webhook: Post \"https://istiod.istio-system.svc:443/inject\": context deadline exceeded",
        "Error creating: etcdserver: request timed out",
    ] {
        event.message = Some(message.into());
        assert!(
            matches!(failed_create(&event), Some(PodProblem::Transient { reason, .. }) if reason == "FailedCreate"),
            "{message}"
        );
    }
    event.message = Some(
        "Error creating: pods \"phasegate-1-x\" is forbidden: maximum cpu usage per Container is 1, but limit is 2".into(),
    );
    assert!(
        matches!(failed_create(&event), Some(PodProblem::Permanent(m)) if m.contains("testResources"))
    );
    event.message = Some(
        "Error creating: admission webhook \"policy.example.com\" denied the request: no latest tags".into(),
    );
    assert!(matches!(
        failed_create(&event),
        Some(PodProblem::Permanent(_))
    ));
}

#[test]
fn run_as_non_root_with_a_root_image_is_permanent_and_names_the_pod_security_context() {
    let pod: Pod = load!("pod-run-as-non-root-root-image.yaml");
    assert!(
        matches!(pod_problem(&pod), Some(PodProblem::Permanent(d))
            if d.starts_with("CreateContainerConfigError: container has runAsNonRoot and image will run as root")
            && d.contains("testPodSecurityContext")),
        "{:?}",
        pod_problem(&pod)
    );
    // A missing ConfigMap is another CreateContainerConfigError, which its creation clears.
    let mut pod = pod;
    let statuses = pod
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut());
    let waiting = statuses
        .and_then(|c| c[0].state.as_mut()?.waiting.as_mut())
        .expect("waiting");
    waiting.message = Some("configmap \"petstore-tests\" not found".into());
    assert!(matches!(
        pod_problem(&pod),
        Some(PodProblem::Transient { .. })
    ));
}

#[test]
fn an_image_that_cannot_be_inspected_is_permanent() {
    let mut pod: Pod = load!("pod-run-as-non-root-root-image.yaml");
    let statuses = pod
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut());
    let waiting = statuses
        .and_then(|c| c[0].state.as_mut()?.waiting.as_mut())
        .expect("waiting");
    waiting.reason = Some("ImageInspectError".into());
    assert!(
        matches!(pod_problem(&pod), Some(PodProblem::Permanent(d)) if d.starts_with("ImageInspectError"))
    );
}

#[test]
fn a_sidecar_keeping_the_pod_running_after_the_tests_exited_gives_the_exit_code_as_verdict() {
    let mut pod: Pod = load!("pod-sidecar-keeps-running.yaml");
    let (verdict, note) = tests_exited(&pod).expect("the tests exited");
    assert_eq!(
        verdict,
        Verdict::Failed("the tests container exited with code 1 (Error)".into())
    );
    assert!(note.contains("istio-proxy kept its pod Running"), "{note}");
    // Being deleted (the deadline, an eviction): the Job controller decides.
    pod.metadata.deletion_timestamp = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c[0].state.as_ref()?.running.as_ref()?.started_at.clone());
    assert_eq!(tests_exited(&pod), None);
}

#[test]
fn a_pod_whose_other_containers_have_stopped_too_is_left_to_the_controller() {
    let mut pod: Pod = load!("pod-sidecar-keeps-running.yaml");
    let statuses = pod
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut());
    if let Some(proxy) = statuses.and_then(|c| c.iter_mut().find(|c| c.name == "istio-proxy")) {
        proxy.state = None;
    }
    assert_eq!(tests_exited(&pod), None);
}

#[test]
fn a_pod_whose_tests_still_run_has_no_exit_verdict() {
    let pod: Pod = load!("pod-unschedulable.yaml");
    assert_eq!(tests_exited(&pod), None);
}

#[test]
fn a_terminated_tests_container_is_named_with_its_reason() {
    let pod: Pod = load!("pod-sidecar-keeps-running.yaml");
    assert_eq!(tests_ended(&pod).as_deref(), Some("code 1 (Error)"));
    let pod: Pod = load!("pod-unschedulable.yaml");
    assert_eq!(tests_ended(&pod), None);
}

#[test]
fn a_suspended_job_is_queued_in_the_controllers_words_and_no_verdict() {
    let job: Job = load!("job-suspended.yaml");
    assert_eq!(
        job_queued(&job).as_deref(),
        Some("Suspended: JobSuspended: Job suspended")
    );
    assert_eq!(job_verdict(&job), None);
    let job: Job = load!("job-success-criteria-met.yaml");
    assert_eq!(job_queued(&job), None);
}
