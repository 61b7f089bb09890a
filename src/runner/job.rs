//! The Kubernetes Job runner: the classic test container, run by the cluster.
//!
//! The Job's name comes from the run's idempotency key, so a second replica or a restarted
//! server that gets the same event attaches to the Job already running instead of starting
//! another — but only to a Job whose annotation proves phasegate created it for this same run.
//! Its pods are followed by the Job's uid (`batch.kubernetes.io/controller-uid`), never by the
//! `job-name` label a replaced Job shares with its predecessor, and its log is read from the
//! test container by name. The verdict is the Job controller's ([`verdict`]), or the tests
//! container's exit code when a sidecar that is not a native one keeps its pod running; a pod
//! that cannot run ends the run early only once that is certain. A Job suspended in a queue
//! (Kueue) waits there without its time counting against the test's timeout. The Job is
//! deleted (with its pods: `propagationPolicy: Background`, since the REST API's default for
//! Jobs orphans them) on success, on a timeout and when it cannot run; a failed one is kept a
//! day for debugging (unless a sidecar would keep its pod running to the deadline).

mod clocks;
mod logs;
mod manifest;
mod verdict;
mod waiting;

use std::time::Duration;

use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};
use tracing::info;

use super::{RunnerError, TestContext, Tested};
use crate::{cluster::ClusterError, spec::JobTest};
use logs::LogFollower;
use manifest::{CONTAINER, RUN_KEY, manifest};
use verdict::{Verdict, job_verdict, tests_ended};
use waiting::Ending;

/// Past `activeDeadlineSeconds`, how long phasegate waits for the Job controller to say so
/// (its `FailureTarget` comes at the deadline; this only covers a controller that is down).
const DEADLINE_GRACE: Duration = Duration::from_secs(30);
/// A failed Job of the same event is deleted and created again; deletion may take a moment.
const RECREATE_ATTEMPTS: u32 = 10;

/// Runs the test image as a Job and waits for it.
pub(super) async fn run(test: &JobTest, ctx: &TestContext) -> Result<Tested, RunnerError> {
    let cluster = ctx
        .cluster
        .as_ref()
        .ok_or(RunnerError::KubernetesNotConfigured)?;
    let namespace = test.namespace.as_deref().unwrap_or(&cluster.namespace);
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let name = ctx.job_name.as_str();
    let what = format!("Job `{namespace}/{name}`");
    let job = manifest(test, name, namespace, &ctx.labels, &ctx.run_key)
        .map_err(RunnerError::InvalidJob)?;
    let uid = start(&jobs, &job, name, &what, ctx).await?;
    let selector = format!("batch.kubernetes.io/controller-uid={uid}");
    let mut follower = LogFollower::default();
    let watched = waiting::Watched {
        client: cluster.client.clone(),
        namespace,
        name,
        uid: &uid,
        what: &what,
        tolerance: cluster.pod_problem_tolerance,
        timeout: test.timeout + DEADLINE_GRACE,
    };
    let waited = waiting::wait(&watched, &pods, &mut follower, &ctx.log).await;
    let ended = matches!(&waited, Ok(w) if !matches!(w.ending, Ending::NotEnded));
    let log = follower.finish(&pods, &selector, &ctx.log, ended).await;
    info!(job = %name, log = %super::tail(&log, 1024), "test Job log");
    let waited = waited?;
    let (passed, keep, mut ending) = conclude(waited.ending, &what, test, &pods, &selector).await;
    if let Some((queued, why)) = waited.queued {
        let queued = humantime::format_duration(queued);
        ending.push_str(&format!(" (queued {queued} before it ran: {why})"));
    }
    if !keep {
        // Background: the Job's pods go with it (the REST default for Jobs orphans them).
        let _ = jobs.delete(name, &DeleteParams::background()).await;
    }
    ctx.sink(&ending);
    Ok(Tested {
        passed,
        attempts: 1,
        log: format!("{log}{ending}\n"),
    })
}

/// What the run reports for how the wait ended: passed, whether the Job is kept (for
/// `kubectl logs`), and the closing line of the log.
async fn conclude(
    ending: Ending,
    what: &str,
    test: &JobTest,
    pods: &Api<Pod>,
    selector: &str,
) -> (bool, bool, String) {
    match ending {
        Ending::Verdict(Verdict::Passed) => (true, false, format!("{what} succeeded")),
        Ending::Verdict(Verdict::TimedOut(reason)) => {
            (false, false, format!("{what} timed out: {reason}"))
        }
        Ending::Verdict(Verdict::Failed(reason)) => {
            let ended = match how_tests_ended(pods, selector).await {
                Some(ended) => format!(" (the {CONTAINER} container exited with {ended})"),
                None => String::new(),
            };
            let ending = format!("{what} failed: {reason}{ended} (kept for debugging)");
            (false, true, ending)
        }
        // Ended either way: kept, its pod would run until the deadline and then be deleted
        // with its log (which is in this answer).
        Ending::TestsExited(Verdict::Passed, note) => {
            (true, false, format!("{what} succeeded: {note}; Job ended"))
        }
        Ending::TestsExited(Verdict::Failed(reason) | Verdict::TimedOut(reason), note) => (
            false,
            false,
            format!("{what} failed: {reason}; {note}; Job ended"),
        ),
        Ending::CannotRun(reason) => (false, false, format!("{what} cannot run: {reason}")),
        Ending::NotEnded => (
            false,
            false,
            format!(
                "{what} timed out after {} (the cluster did not end it)",
                humantime::format_duration(test.timeout)
            ),
        ),
    }
}

/// Creates the Job, or attaches to the one already running for this run, and answers its uid.
/// A Job of that name that phasegate did not create for this run is refused; one that already
/// failed or timed out is replaced (neither is remembered: a retry tests again).
async fn start(
    jobs: &Api<Job>,
    job: &Job,
    name: &str,
    what: &str,
    ctx: &TestContext,
) -> Result<String, RunnerError> {
    let kube_err = |e| ClusterError::from_kube(e, what);
    for _ in 0..RECREATE_ATTEMPTS {
        let existing = match jobs.create(&PostParams::default(), job).await {
            Ok(created) => {
                ctx.sink(&format!("created {what} running {}", job_image(job)));
                return Ok(uid_of(&created, what)?);
            }
            Err(kube::Error::Api(status)) if status.code == 409 => match jobs.get(name).await {
                Ok(existing) => existing,
                Err(kube::Error::Api(s)) if s.code == 404 => continue, // deleted meanwhile
                Err(e) => return Err(kube_err(e).into()),
            },
            Err(kube::Error::Api(status)) if status.code == 422 => {
                return Err(RunnerError::InvalidJob(refused_job(what, &status.message)));
            }
            Err(e) => return Err(kube_err(e).into()),
        };
        let annotations = existing.metadata.annotations.as_ref();
        if annotations.and_then(|a| a.get(RUN_KEY)) != Some(&ctx.run_key) {
            return Err(RunnerError::Cluster(ClusterError::Precondition(format!(
                "{what} exists but phasegate did not create it for this run (its annotation \
                 {RUN_KEY} differs): refusing to let someone else's Job decide the outcome; \
                 delete it or use another testNamespace"
            ))));
        }
        if existing.metadata.deletion_timestamp.is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await; // being deleted: wait it out
            continue;
        }
        let ended = match job_verdict(&existing) {
            Some(Verdict::Failed(_)) => "failed",
            Some(Verdict::TimedOut(_)) => "timed out",
            Some(Verdict::Passed) | None => {
                ctx.sink(&format!(
                    "{what} already exists (another replica or an earlier run): attaching"
                ));
                return Ok(uid_of(&existing, what)?);
            }
        };
        ctx.sink(&format!(
            "{what} {ended} before: replacing it to test again"
        ));
        jobs.delete(name, &DeleteParams::background())
            .await
            .map_err(kube_err)?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(ClusterError::Other(format!("{what} could not be replaced")).into())
}

/// The API server's 422 on the Job, with the spec keys behind the fields it names: the spec
/// gave something Kubernetes does not accept there (`INVALID_ARGUMENT`).
fn refused_job(what: &str, message: &str) -> String {
    let keys = manifest::spec_keys_in(message);
    let hint = if keys.is_empty() {
        String::new()
    } else {
        format!(" (set by {})", keys.join(", "))
    };
    format!("Kubernetes refused {what} as invalid: {message}{hint}")
}

/// How the tests container of the run's newest pod ended (`code 137 (OOMKilled)`), read once
/// the Job failed: the controller's message (`BackoffLimitExceeded: Job has reached the
/// specified backoff limit`) does not say why, and the pod watch may not have delivered the
/// pod's end before the Job's.
async fn how_tests_ended(pods: &Api<Pod>, selector: &str) -> Option<String> {
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .ok()?;
    let newest = list
        .items
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.clone())?;
    tests_ended(newest)
}

fn uid_of(job: &Job, what: &str) -> Result<String, ClusterError> {
    job.metadata
        .uid
        .clone()
        .ok_or_else(|| ClusterError::Other(format!("{what} has no uid")))
}

fn job_image(job: &Job) -> &str {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.as_deref())
        .unwrap_or("?")
}

/// A stable name for the Job of a run: the same event always names the same Job.
pub(crate) fn job_name(idempotency_key: &str) -> String {
    // FNV-1a: stable across processes and releases, unlike std's hasher.
    let hash = idempotency_key
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("phasegate-{hash:016x}")
}

/// The value of the Job's [`RUN_KEY`] annotation for a run: the SHA-256 of its idempotency key
/// (the key names the repository; the digest proves the run without showing it).
pub(crate) fn run_key(idempotency_key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, idempotency_key.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
