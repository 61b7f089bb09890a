//! The Job runner as a real cluster behaves (`support::fake_kube` with the Job controller and
//! kubelet of `fake_kubelet.rs`): the controller's verdicts with their intermediate conditions,
//! pod problems that are transient or permanent, pods never created, evictions, this run's pod
//! and container only, a Job that is not this run's, a Job deleted under the run.

use std::{collections::BTreeMap, path::Path, time::Duration};

use crate::support::{
    fake_kube::FakeKube,
    test_jobs::{JOBS, NS, job_spec, jobs, kube_config},
    *,
};
use phasegate::{
    config::Config,
    sensor::{Failed, Firing},
};
use serde_json::{Value, json};
use tonic::Code;

fn config(kube: &FakeKube, tolerance: &str) -> Config {
    kube_config(kube, Some(tolerance))
}

fn spec_of(bare: &Path, script: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    job_spec(&file_url(bare), script, extra)
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

fn log_of(failed: Failed) -> String {
    let response = failed
        .response
        .unwrap_or_else(|| panic!("an answer, not {}", failed.status));
    assert_eq!(response["outcome"], "tests-failed");
    response["test"]["log"].as_str().expect("log").to_string()
}

#[tokio::test]
async fn a_deadline_is_a_timeout_at_failure_target_not_after_the_pods_grace_period() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube, "5m")).await;
    // The container ignores SIGTERM: the terminal Failed comes only after the 30 s grace
    // period, with phasegate's own deadline; FailureTarget comes at the deadline.
    let spec = spec_of(
        &bare,
        "trap '' TERM; echo started; sleep 120",
        &[("testTimeout", "1s")],
    );

    let log = log_of(fire(&server, &spec, &synced).await.expect_err("times out"));

    assert!(
        log.contains("timed out: DeadlineExceeded: Job was active longer than specified deadline"),
        "{log}"
    );
    assert!(jobs(&kube).is_empty(), "a timed-out Job is deleted");
    server.stop().await;
}

/// Kueue holds a Job suspended until its queue admits it: the run is queued, not failed, and
/// the wait does not count against `testTimeout` (nor, in the cluster, against
/// `activeDeadlineSeconds`, which starts when the Job resumes).
#[tokio::test]
async fn a_job_suspended_in_a_queue_is_queued_and_its_queue_time_is_not_test_time() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    kube.queue_jobs_for(Duration::from_millis(1500));
    let server = TestServer::start(config(&kube, "10m")).await;
    let spec = spec_of(&bare, "echo 3 tests passed", &[("testTimeout", "1s")]);

    let fired = fire(&server, &spec, &synced).await.expect("passes");

    assert_eq!(fired.response["outcome"], "promoted");
    let log = fired.response["test"]["log"].as_str().expect("log");
    assert!(log.contains("3 tests passed"), "{log}");
    assert!(
        log.contains("queued 1s before it ran: Suspended: JobSuspended: Job suspended"),
        "{log}"
    );
    server.stop().await;
}

/// The Job's own message says only that the backoff limit was reached: the container's
/// terminated reason says why.
#[tokio::test]
async fn a_test_killed_for_memory_says_oom_killed() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube, "10m")).await;
    // Under a memory limit, a SIGKILL is the kernel's OOM killer.
    let spec = spec_of(
        &bare,
        "echo loading fixtures; kill -9 $$",
        &[("testResources", r#"{"limits":{"memory":"64Mi"}}"#)],
    );

    let log = log_of(fire(&server, &spec, &synced).await.expect_err("killed"));

    assert!(log.contains("loading fixtures"), "{log}");
    assert!(
        log.contains("BackoffLimitExceeded")
            && log.contains("the tests container exited with code 137 (OOMKilled)"),
        "{log}"
    );
    server.stop().await;
}

#[tokio::test]
async fn transient_pod_problems_are_waited_out_and_permanent_ones_end_the_run_at_once() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let patient = TestServer::start(config(&kube, "10m")).await;
    for image in [
        "registry.example.com/autoscaled:1",
        "registry.example.com/flaky-pull:1",
    ] {
        let mut spec = spec_of(&bare, "echo 3 tests passed", &[("dryRun", "true")]);
        spec.insert("testImage".into(), image.into());
        let fired = fire(&patient, &spec, &synced).await.expect(image);
        assert_eq!(fired.response["outcome"], "dry-run", "{image}");
    }
    // Permanent: ends at once although the tolerance is 10 minutes.
    let mut spec = spec_of(&bare, "true", &[]);
    spec.insert(
        "testImage".into(),
        "registry.example.com/invalid-image:1".into(),
    );
    let log = log_of(
        fire(&patient, &spec, &synced)
            .await
            .expect_err("invalid image"),
    );
    assert!(log.contains("cannot run: InvalidImageName"), "{log}");
    patient.stop().await;

    let impatient = TestServer::start(config(&kube, "300ms")).await;
    for (image, reason) in [
        ("registry.example.com/no-such-image:1", "ErrImagePull"),
        (
            "registry.example.com/unschedulable:1",
            "Unschedulable: 0/3 nodes are available",
        ),
    ] {
        let mut spec = spec_of(&bare, "true", &[]);
        spec.insert("testImage".into(), image.into());
        let log = log_of(fire(&impatient, &spec, &synced).await.expect_err(image));
        assert!(
            log.contains(reason) && log.contains("(for 300ms)"),
            "{image}: {log}"
        );
    }
    assert!(jobs(&kube).is_empty(), "a Job that cannot run is deleted");
    impatient.stop().await;
}

#[tokio::test]
async fn a_pod_that_is_never_created_ends_the_run_with_the_event_message() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    // The policy lets Jobs run as the account, which the cluster does not have.
    let mut config = config(&kube, "10m");
    config.policy.test_service_accounts = vec!["no-such-account".into()];
    let server = TestServer::start(config).await;
    let spec = spec_of(&bare, "true", &[("testServiceAccount", "no-such-account")]);

    let log = log_of(fire(&server, &spec, &synced).await.expect_err("no pod"));

    assert!(
        log.contains("cannot run: FailedCreate: Error creating"),
        "{log}"
    );
    assert!(
        log.contains("serviceaccount \"no-such-account\" not found"),
        "{log}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_evicted_pod_is_replaced_and_its_replacement_decides() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube, "10m")).await;
    let gate = root.join("drained");
    // The replacement runs a while: the controller's late update of the evicted pod comes
    // meanwhile.
    let script = format!(
        "if [ -e {g} ]; then echo second pod; sleep 1; echo 3 tests passed; \
         else touch {g}; echo first pod; sleep 60; fi",
        g = gate.display()
    );
    let spec = spec_of(&bare, &script, &[]);

    let run = fire_in_background(server.sensor().await, &spec, &synced);
    eventually(|| gate.exists()).await;
    let pods = kube.names("/api/v1", NS, "pods");
    kube.evict(&pods[0]);
    let fired = run.await.expect("task").expect("the replacement passes");

    assert_eq!(fired.response["outcome"], "promoted");
    let log = fired.response["test"]["log"].as_str().expect("log");
    assert!(log.contains("second pod\n3 tests passed"), "{log}");
    assert!(
        !log.contains(&format!("was replaced by {}", pods[0])),
        "the log follower went back to the evicted pod: {log}"
    );
    server.stop().await;
}

#[tokio::test]
async fn only_this_runs_pod_is_read() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube, "10m")).await;
    let fixed = root.join("fixed");
    let script = format!(
        "if [ -e {} ]; then echo NEW-RUN 3 tests passed; else echo OLD-RUN failed; exit 1; fi",
        fixed.display()
    );
    let spec = spec_of(&bare, &script, &[]);
    let old = log_of(
        fire(&server, &spec, &synced)
            .await
            .expect_err("first run fails"),
    );
    assert!(old.contains("OLD-RUN failed"), "{old}");
    // Someone deletes the kept Job through the REST API, without propagationPolicy: its
    // pod is orphaned, and keeps its job-name label.
    let name = jobs(&kube).remove(0);
    let url = format!("{}/apis/batch/v1/namespaces/{NS}/jobs/{name}", kube.url());
    let deleted = reqwest::Client::new()
        .delete(url)
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success());
    assert_eq!(
        kube.names("/api/v1", NS, "pods").len(),
        1,
        "the REST default orphans pods"
    );
    std::fs::write(&fixed, "").expect("fix");

    let fired = fire(&server, &spec, &synced)
        .await
        .expect("second run passes");

    let log = fired.response["test"]["log"].as_str().expect("log");
    assert!(log.contains("NEW-RUN 3 tests passed"), "{log}");
    assert!(
        !log.contains("OLD-RUN"),
        "the orphaned pod's log was read: {log}"
    );
    server.stop().await;
}

/// A mesh sidecar injected as an ordinary container (Istio before native sidecars) keeps the
/// pod Running after the tests exit, so the Job never completes: the verdict is the tests
/// container's exit code, and the Job is ended rather than left to its deadline.
#[tokio::test]
async fn a_mesh_sidecar_keeping_the_pod_running_does_not_hold_the_verdict() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    kube.inject_sidecar();
    let server = TestServer::start(config(&kube, "10m")).await;
    // Past this deadline the Job controller would end the Job "DeadlineExceeded".
    let deadline = ("testTimeout", "5s");

    let fails = spec_of(&bare, "echo 1 test failed; exit 3", &[deadline]);
    let log = log_of(fire(&server, &fails, &synced).await.expect_err("fails"));
    assert!(log.contains("1 test failed"), "{log}");
    assert!(log.contains("exited with code 3 (Error)"), "{log}");
    assert!(!log.contains("DeadlineExceeded"), "{log}");
    assert!(jobs(&kube).is_empty(), "the Job is ended");

    let passes = spec_of(&bare, "echo 3 tests passed", &[deadline]);
    let fired = fire(&server, &passes, &synced).await.expect("passes");
    assert_eq!(fired.response["outcome"], "promoted");
    let log = fired.response["test"]["log"].as_str().expect("log");
    assert!(log.contains("3 tests passed"), "{log}");
    assert!(log.contains("istio-proxy kept its pod Running"), "{log}");
    assert!(!log.contains("envoy"), "the sidecar's log was read: {log}");
    eventually(|| kube.names("/api/v1", NS, "pods").is_empty()).await;
    assert!(jobs(&kube).is_empty(), "the Job is ended");
    server.stop().await;
}

#[tokio::test]
async fn a_job_of_the_same_name_that_is_not_this_runs_is_refused() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube, "10m")).await;
    let spec = spec_of(&bare, "echo failed; exit 1", &[]);
    log_of(
        fire(&server, &spec, &synced)
            .await
            .expect_err("first run fails"),
    );
    let name = jobs(&kube).remove(0);
    let mut foreign: Value = kube.get(JOBS.0, NS, JOBS.1, &name).expect("job");
    foreign["metadata"]["annotations"] = json!({"phasegate.dev/run-key": "someone-else"});
    kube.put(JOBS.0, NS, JOBS.1, foreign);

    let failed = fire(&server, &spec, &synced).await.expect_err("refused");

    assert_eq!(
        failed.status.code(),
        Code::FailedPrecondition,
        "{}",
        failed.status.message()
    );
    assert!(
        failed
            .status
            .message()
            .contains("did not create it for this run"),
        "{}",
        failed.status.message()
    );
    assert_eq!(
        kube.jobs_created(),
        1,
        "the foreign Job was neither replaced nor attached to"
    );
    server.stop().await;
}

/// A replica that saw its Job time out and died before deleting it leaves it behind: a retry
/// of the event tests again instead of repeating the old timeout.
#[tokio::test]
async fn a_job_of_this_run_that_already_timed_out_is_replaced_not_attached_to() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube, "10m")).await;
    let fixed = root.join("fixed");
    let script = format!(
        "if [ -e {} ]; then echo 3 tests passed; else echo failed; exit 1; fi",
        fixed.display()
    );
    let spec = spec_of(&bare, &script, &[]);
    log_of(fire(&server, &spec, &synced).await.expect_err("fails"));
    let name = jobs(&kube).remove(0);
    let mut timed_out: Value = kube.get(JOBS.0, NS, JOBS.1, &name).expect("job");
    timed_out["status"]["conditions"] = json!([{"type": "FailureTarget", "status": "True",
        "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline",
        "lastProbeTime": "2026-05-12T09:00:00Z", "lastTransitionTime": "2026-05-12T09:00:00Z"}]);
    kube.put(JOBS.0, NS, JOBS.1, timed_out);
    std::fs::write(&fixed, "").expect("fix");

    let fired = fire(&server, &spec, &synced).await.expect("tested again");

    assert_eq!(fired.response["outcome"], "promoted");
    let log = fired.response["test"]["log"].as_str().expect("log");
    assert!(log.contains("3 tests passed"), "{log}");
    assert_eq!(kube.jobs_created(), 2, "the timed-out Job was replaced");
    server.stop().await;
}

#[tokio::test]
async fn a_job_deleted_under_the_run_is_an_error_not_a_failed_test() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    kube.close_watches_after(Duration::from_millis(300));
    let server = TestServer::start(config(&kube, "10m")).await;
    let spec = spec_of(&bare, "echo running; sleep 60", &[]);

    let run = fire_in_background(server.sensor().await, &spec, &synced);
    eventually(|| !kube.names("/api/v1", NS, "pods").is_empty()).await;
    // Watches are re-established after the server closes them, and see the deletion.
    eventually(|| kube.watches_started() >= 6).await;
    let name = jobs(&kube).remove(0);
    let url = format!("{}/apis/batch/v1/namespaces/{NS}/jobs/{name}", kube.url());
    let body =
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
    let request = reqwest::Client::new().delete(url).body(body.to_string());
    request.send().await.expect("DELETE");
    let failed = run.await.expect("task").expect_err("interrupted");

    assert!(
        failed.response.is_none(),
        "not a test verdict: {:?}",
        failed.response
    );
    assert_eq!(failed.status.code(), Code::FailedPrecondition);
    assert!(
        failed
            .status
            .message()
            .contains("was deleted while its tests ran"),
        "{}",
        failed.status.message()
    );
    server.stop().await;
}
