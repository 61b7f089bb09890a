//! What the cluster says about a test Job, decided as the Job controller and the kubelet mean
//! it (Kubernetes `pkg/controller/job`, the pod status API), as pure functions of the objects.
//!
//! - The Job's verdict comes from its conditions only. Since Kubernetes 1.31 the controller
//!   first sets `FailureTarget` (reason `DeadlineExceeded`, `BackoffLimitExceeded`,
//!   `PodFailurePolicy`…) or `SuccessCriteriaMet`, and the terminal `Failed`/`Complete` only
//!   once the pods are gone (after their grace period): the first one is the verdict. Counters
//!   (`failed`, `succeeded`) are not: a disrupted pod is replaced, not a failure.
//! - A pod problem is permanent (`ErrImageNeverPull`, `InvalidImageName`, `ImageInspectError`:
//!   no retry fixes them) or transient (`Unschedulable` makes a cluster autoscaler add a node,
//!   the kubelet retries `ErrImagePull`/`ImagePullBackOff`/`CreateContainerError`/
//!   `CreateContainerConfigError`): those end a run only once they have lasted a while. The
//!   message decides too: a `CreateContainerConfigError` from the kubelet's
//!   `verifyRunAsNonRoot` (the image runs as root, or as a user name, under `runAsNonRoot`)
//!   never clears for that pod, unlike one for a ConfigMap or Secret not created yet.
//! - A pod the Job controller cannot create leaves a `FailedCreate` Warning event on the Job;
//!   the controller retries, which helps when a ResourceQuota frees up or an admission webhook
//!   answers again, never against Pod Security, a LimitRange or a missing service account.
//! - A pod stays `Running` while any of its containers runs (kubelet `getPhase`): a mesh
//!   sidecar injected as an ordinary container keeps it up after the tests exit, and the Job
//!   never completes. The tests container's own exit code is then the verdict.

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{ContainerStateTerminated, Event, Pod},
};

use super::manifest::CONTAINER;

/// How the Job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Passed,
    /// The test failed (`reason: message` of the controller).
    Failed(String),
    /// The Job ran past `activeDeadlineSeconds` (the controller's message).
    TimedOut(String),
}

/// The Job's verdict, once the controller has given one.
pub(super) fn job_verdict(job: &Job) -> Option<Verdict> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let holds = |types: [&str; 2]| {
        conditions
            .iter()
            .find(|c| types.contains(&c.type_.as_str()) && c.status == "True")
    };
    if let Some(c) = holds(["FailureTarget", "Failed"]) {
        let reason = c.reason.as_deref().unwrap_or("Failed");
        let message = c.message.as_deref().unwrap_or("");
        return Some(if reason == "DeadlineExceeded" {
            Verdict::TimedOut(format!("{reason}: {message}"))
        } else {
            Verdict::Failed(format!("{reason}: {message}"))
        });
    }
    holds(["SuccessCriteriaMet", "Complete"]).map(|_| Verdict::Passed)
}

/// The verdict of the tests container that has exited while another container (a mesh
/// sidecar) keeps running and its pod `Running`, with a note naming that container; `None`
/// while the tests run, once the pod itself has ended or no other container runs (the Job
/// controller decides), and for a pod being deleted (its containers are being stopped).
pub(super) fn tests_exited(pod: &Pod) -> Option<(Verdict, String)> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let containers = status.container_statuses.as_deref()?;
    let ended = containers
        .iter()
        .find(|c| c.name == CONTAINER)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    let running: Vec<&str> = containers
        .iter()
        .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        .map(|c| c.name.as_str())
        .collect();
    if running.is_empty() {
        // The pod is ending (a native sidecar being stopped): the controller decides.
        return None;
    }
    let keeper = running.join(", ");
    let end = termination(ended);
    let note = format!(
        "the {CONTAINER} container exited ({end}) while {keeper} kept its pod Running (a sidecar \
         that is not a native one): its exit code is the verdict"
    );
    let verdict = if ended.exit_code == 0 {
        Verdict::Passed
    } else {
        Verdict::Failed(format!("the {CONTAINER} container exited with {end}"))
    };
    Some((verdict, note))
}

/// How the tests container of `pod` ended, once it has: `code 137 (OOMKilled)`. The Job's
/// own message (`BackoffLimitExceeded: Job has reached the specified backoff limit`) does not
/// say why its pod failed.
pub(super) fn tests_ended(pod: &Pod) -> Option<String> {
    let containers = pod.status.as_ref()?.container_statuses.as_deref()?;
    let tests = containers.iter().find(|c| c.name == CONTAINER)?;
    tests.state.as_ref()?.terminated.as_ref().map(termination)
}

/// How a container ended, as `kubectl describe` says it: `code 137 (OOMKilled)`.
fn termination(ended: &ContainerStateTerminated) -> String {
    match ended.reason.as_deref() {
        Some(reason) => format!("code {} ({reason})", ended.exit_code),
        None => format!("code {}", ended.exit_code),
    }
}

/// Why the Job waits in a queue, if it does: `spec.suspend` is true (Kueue creates Jobs
/// suspended and unsuspends them once the queue admits them), in the words of the
/// controller's `Suspended` condition when it has written it. A suspended Job runs no pod, and
/// the controller starts `activeDeadlineSeconds` only when it resumes (`startTime`).
pub(super) fn job_queued(job: &Job) -> Option<String> {
    if job.spec.as_ref()?.suspend != Some(true) {
        return None;
    }
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let suspended = conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Suspended" && c.status == "True");
    Some(match suspended {
        Some(c) => format!(
            "Suspended: {}: {}",
            c.reason.as_deref().unwrap_or("Suspended"),
            c.message.as_deref().unwrap_or("")
        ),
        None => "spec.suspend is true".into(),
    })
}

/// Something keeping a pod from running its tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PodProblem {
    /// No retry will fix it.
    Permanent(String),
    /// The cluster retries it; `reason` names it so its duration can be measured.
    Transient { reason: String, detail: String },
}

/// Waiting reasons no retry fixes.
const PERMANENT: [&str; 3] = ["ErrImageNeverPull", "InvalidImageName", "ImageInspectError"];
/// Waiting reasons the kubelet retries.
const TRANSIENT: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "CreateContainerError",
    "CreateContainerConfigError",
];
/// Words of the kubelet's `verifyRunAsNonRoot` errors (`container has runAsNonRoot and image
/// will run as root`, `… image has non-numeric user …`, `container's runAsUser breaks non-root
/// policy`): the image's user does not change while the pod lives.
const NON_ROOT_REFUSALS: [&str; 2] = ["has runAsNonRoot and image", "breaks non-root policy"];
/// Words of `FailedCreate` messages no retry of the Job controller outlasts, with the spec key
/// to look at: Pod Security admission, a LimitRange, an admission webhook that answered with a
/// denial, a service account the namespace does not have (the controller retries it, but a
/// misnamed account is the usual cause). Every other `FailedCreate` (a used-up ResourceQuota, a
/// webhook that timed out, a passing API server error) is waited out within the tolerance, as
/// the controller retries it.
const LASTING_CREATE_REFUSALS: [(&str, &str); 5] = [
    (
        "violates PodSecurity",
        " (the namespace's Pod Security level refuses the test pod: see testSecurityContext \
         and testPodSecurityContext)",
    ),
    (
        "usage per Container",
        " (a LimitRange of the namespace: see testResources)",
    ),
    (
        "usage per Pod",
        " (a LimitRange of the namespace: see testResources)",
    ),
    (
        "denied the request",
        " (an admission webhook of the cluster)",
    ),
    (
        "error looking up service account",
        " (see testServiceAccount)",
    ),
];

/// What keeps `pod` from running, if anything. A disrupted pod (evicted, preempted, drained:
/// condition `DisruptionTarget`) is the cluster's business, not a problem of the test.
pub(super) fn pod_problem(pod: &Pod) -> Option<PodProblem> {
    let status = pod.status.as_ref()?;
    let conditions = status.conditions.iter().flatten();
    if conditions
        .clone()
        .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
    {
        return None;
    }
    let waiting = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref());
    for w in waiting {
        let Some(reason) = w.reason.as_deref() else {
            continue;
        };
        let message = w.message.as_deref().unwrap_or("");
        let detail = format!("{reason}: {message}");
        if PERMANENT.contains(&reason) {
            return Some(PodProblem::Permanent(detail));
        }
        if reason == "CreateContainerConfigError"
            && NON_ROOT_REFUSALS.iter().any(|w| message.contains(w))
        {
            return Some(PodProblem::Permanent(format!(
                "{detail}; the pod runs with runAsNonRoot (Pod Security \"restricted\"), so the \
                 image must run as a numeric non-root user: give testPodSecurityContext a \
                 runAsUser (e.g. {{\"runAsUser\": 1000}}) or the image a numeric USER"
            )));
        }
        if TRANSIENT.contains(&reason) {
            // Pull errors alternate with their back-off: one clock for both.
            let reason = if reason == "ImagePullBackOff" {
                "ErrImagePull"
            } else {
                reason
            };
            return Some(PodProblem::Transient {
                reason: reason.into(),
                detail,
            });
        }
    }
    conditions
        .filter(|c| c.type_ == "PodScheduled" && c.status == "False")
        .find(|c| c.reason.as_deref() == Some("Unschedulable"))
        .map(|c| PodProblem::Transient {
            reason: "Unschedulable".into(),
            detail: format!("Unschedulable: {}", c.message.as_deref().unwrap_or("")),
        })
}

/// A `FailedCreate` Warning on the Job: its pod could not be created (Pod Security admission,
/// a LimitRange, a quota, a missing service account, an admission webhook). Permanent when no
/// retry of the controller outlasts it ([`LASTING_CREATE_REFUSALS`]), transient otherwise.
pub(super) fn failed_create(event: &Event) -> Option<PodProblem> {
    if event.reason.as_deref() != Some("FailedCreate") || event.type_.as_deref() != Some("Warning")
    {
        return None;
    }
    let message = event.message.as_deref().unwrap_or("");
    let detail = format!("FailedCreate: {message}");
    match LASTING_CREATE_REFUSALS
        .iter()
        .find(|(words, _)| message.contains(words))
    {
        Some((_, hint)) => Some(PodProblem::Permanent(format!("{detail}{hint}"))),
        None => Some(PodProblem::Transient {
            reason: "FailedCreate".into(),
            detail,
        }),
    }
}

#[cfg(test)]
mod tests;
