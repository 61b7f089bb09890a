//! The Job controller and the kubelet behind the fake API server (`super`), for one Job (the
//! test container itself runs in `fake_container.rs`).
//!
//! As Kubernetes 1.31+ does: pods carry `batch.kubernetes.io/controller-uid`, `controller-uid`,
//! `batch.kubernetes.io/job-name` and `job-name` labels and a controller owner reference; the
//! Job gets `FailureTarget` (or `SuccessCriteriaMet`) first and the terminal `Failed` (or
//! `Complete`) only once its pod has terminated; at `activeDeadlineSeconds` the container gets
//! SIGTERM and, if it ignores it, SIGKILL after `terminationGracePeriodSeconds` (default 30);
//! an evicted pod gets `DisruptionTarget` and, under a `podFailurePolicy` rule `Ignore` on it,
//! is replaced instead of failing the Job, and the controller's removal of its
//! `batch.kubernetes.io/job-tracking` finalizer updates it once the replacement runs; a pod
//! naming a service account that does not exist is never created (a `FailedCreate` Warning on
//! the Job, with the API server's message).
//! Container statuses are the kubelet's (`running`, then `terminated` with the exit code and
//! `Completed`, `Error`, or `OOMKilled` for a SIGKILL under a memory limit); the phase follows
//! `getPhase`: with a mesh sidecar ([`super::FakeKube::inject_sidecar`], an ordinary
//! container) the pod stays `Running` after `tests` exits, until the deadline or an eviction.
//!
//! A Job created suspended ([`super::FakeKube::queue_jobs_for`], as Kueue's webhook does) gets
//! `Suspended` and no pod until the queue admits it, then `JobResumed`, a new `startTime` and
//! its deadline from there.
//!
//! A pod the API server refuses ([`refused`]) is never created: a `FailedCreate` Warning on the
//! Job, folded and counted as the event recorder does, retried while the refusal may clear (a
//! quota). A pod that never runs, or is never created, is failed at `activeDeadlineSeconds`
//! (`DeadlineExceeded`) like one that runs too long.
//!
//! Image names trigger simulations: `no-such-image` never pulls, `flaky-pull` fails to pull for
//! a moment, `invalid-image` is an `InvalidImageName`, `inspect-error` an `ImageInspectError`,
//! `unschedulable` finds no node, `autoscaled` finds one after a moment (a node being added);
//! `root-image` runs as root and `named-user` as a user name, which the kubelet's
//! `verifyRunAsNonRoot` refuses under `runAsNonRoot` (`CreateContainerConfigError`, for as long
//! as the pod lives); any other image runs as user 65532.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{PodLog, Shared, admission, save, update};
use container::run_container;

#[path = "fake_container.rs"]
mod container;

/// The image of the mesh sidecar [`super::FakeKube::inject_sidecar`] adds.
const SIDECAR_IMAGE: &str = "docker.io/istio/proxyv2:1.24.0";
/// The finalizer the Job controller puts on its pods until it has counted their end.
const TRACKING: &str = "batch.kubernetes.io/job-tracking";
/// The Job controller's back-off between two attempts to create a pod.
const CREATE_RETRY: Duration = Duration::from_millis(100);
/// How long the transient simulations (`flaky-pull`, `autoscaled`) last.
const TRANSIENT: Duration = Duration::from_millis(600);

/// How a pod ended.
enum PodEnd {
    Succeeded,
    Failed,
    Deadline,
    Disrupted,
}

/// Now, as the API server writes times.
pub(super) fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Plays the Job controller (and the kubelet) for one Job.
pub(super) async fn run_job(shared: Arc<Shared>, jobs: String, namespace: String, job: Value) {
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uid = job["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if job["spec"]["suspend"] == true {
        wait_in_queue(&shared, &jobs, &name, &uid).await;
    }
    // `activeDeadlineSeconds` counts from `startTime`, which a resumed Job gets anew.
    let deadline = Instant::now()
        + Duration::from_secs(
            job["spec"]["activeDeadlineSeconds"]
                .as_u64()
                .unwrap_or(3600),
        );
    let ignores_disruption = job["spec"]["podFailurePolicy"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["action"] == "Ignore" && r["onPodConditions"][0]["type"] == "DisruptionTarget");
    let condition = |kind: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": "True", "reason": reason, "message": message,
               "lastProbeTime": now(), "lastTransitionTime": now()})
    };
    loop {
        let suffix: String = (0..5).map(|_| fastrand::lowercase()).collect();
        let pod = format!("{name}-{suffix}");
        let end = match refused(&shared, &namespace, &job) {
            Some((refusal, lasting)) => {
                let message = format!("Error creating: pods \"{pod}\" is forbidden: {refusal}");
                warn_on_job(&shared, &namespace, &name, &uid, "FailedCreate", &message);
                if !lasting && Instant::now() < deadline {
                    // The controller retries the creation (with a back-off).
                    tokio::time::sleep(CREATE_RETRY).await;
                    continue;
                }
                None
            }
            None => run_pod(&shared, &jobs, &namespace, &job, &pod, deadline).await,
        };
        let end = match end {
            Some(end) => end,
            None => {
                // Never runs: at the deadline the controller fails the Job, deleting its pod.
                tokio::time::sleep_until(deadline).await;
                let pods = format!("/api/v1/namespaces/{namespace}/pods");
                let mut store = shared.store.lock().expect("store");
                if let Some(o) = store.objects.get(&(pods.clone(), pod.clone())).cloned() {
                    save(&shared, &mut store, &pods, &pod, o, "DELETED");
                }
                PodEnd::Deadline
            }
        };
        let (first, last) = match end {
            PodEnd::Disrupted if ignores_disruption => {
                tokio::spawn(account_when_replaced(
                    shared.clone(),
                    namespace.clone(),
                    pod,
                ));
                continue;
            }
            PodEnd::Succeeded => ("SuccessCriteriaMet", "Complete"),
            _ => ("FailureTarget", "Failed"),
        };
        let (reason, message) = match end {
            PodEnd::Succeeded => (
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ),
            PodEnd::Deadline => (
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ),
            _ => (
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ),
        };
        let counter = if first == "SuccessCriteriaMet" {
            "succeeded"
        } else {
            "failed"
        };
        let target = condition(first, reason, message);
        update_job(&shared, &jobs, &name, &uid, |j| {
            j["status"]["conditions"] = json!([target]);
            j["status"]["active"] = json!(0);
        });
        // The terminal condition once the pod's termination is accounted for.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let terminal = condition(last, reason, message);
        update_job(&shared, &jobs, &name, &uid, |j| {
            j["status"][counter] = json!(1);
            j["status"]["conditions"]
                .as_array_mut()
                .expect("conditions")
                .push(terminal);
        });
        return;
    }
}

/// The Job controller accounts for a disrupted pod (removes its [`TRACKING`] finalizer) in a
/// later sync: here once its replacement runs, an update of the old pod arriving after the
/// new one's (the controller's syncs are not ordered with the kubelet's status updates).
async fn account_when_replaced(shared: Arc<Shared>, namespace: String, old: String) {
    let pods = format!("/api/v1/namespaces/{namespace}/pods");
    for _ in 0..500 {
        let replaced = {
            let store = shared.store.lock().expect("store");
            store
                .objects
                .iter()
                .any(|((c, n), o)| *c == pods && *n != old && o["status"]["phase"] == "Running")
        };
        if replaced {
            tokio::time::sleep(Duration::from_millis(100)).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    update(&shared, &pods, &old, |p| {
        p["metadata"]["finalizers"] = json!([]);
    });
}

/// Why the API server refuses to create the Job's next pod, if it does, and whether the
/// refusal lasts (a missing service account, Pod Security, a LimitRange) or may clear (an
/// exhausted ResourceQuota), in the admission plugins' order and words.
fn refused(shared: &Shared, namespace: &str, job: &Value) -> Option<(String, bool)> {
    let spec = &job["spec"]["template"]["spec"];
    if let Some(sa) = spec["serviceAccountName"].as_str() {
        let accounts = format!("/api/v1/namespaces/{namespace}/serviceaccounts");
        let store = shared.store.lock().expect("store");
        if !store.objects.contains_key(&(accounts, sa.to_string())) {
            return Some((
                format!(
                    "error looking up service account {namespace}/{sa}: serviceaccount \"{sa}\" not found"
                ),
                true,
            ));
        }
    }
    if shared.restricted.load(std::sync::atomic::Ordering::SeqCst) {
        let violations = admission::restricted_violations(spec);
        if !violations.is_empty() {
            let listed = violations.join(", ");
            return Some((
                format!("violates PodSecurity \"restricted:latest\": {listed}"),
                true,
            ));
        }
    }
    let limit = shared.limit_range.lock().expect("limit range").clone();
    if let Some((resource, max)) = limit
        && let Some(refusal) = admission::above_limit_range(spec, &resource, &max)
    {
        return Some((refusal, true));
    }
    let exhausted = *shared.quota_exhausted_until.lock().expect("quota");
    exhausted.filter(|until| Instant::now() < *until).map(|_| {
        (
            "exceeded quota: compute-resources, requested: pods=1, used: pods=10, limited: pods=10"
                .to_string(),
            false,
        )
    })
}

/// Runs one pod to its end; `None` when it never gets to run.
async fn run_pod(
    shared: &Arc<Shared>,
    jobs: &str,
    namespace: &str,
    job: &Value,
    pod_name: &str,
    deadline: Instant,
) -> Option<PodEnd> {
    let pods = format!("/api/v1/namespaces/{namespace}/pods");
    let (name, uid) = (
        job["metadata"]["name"].clone(),
        job["metadata"]["uid"].clone(),
    );
    let template = &job["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("job-name", &name),
    ] {
        labels[k] = v.clone();
    }
    let mut spec = template["spec"].clone();
    if shared.sidecar.load(std::sync::atomic::Ordering::SeqCst) {
        let sidecar = json!({"name": "istio-proxy", "image": SIDECAR_IMAGE});
        spec["containers"]
            .as_array_mut()
            .expect("containers")
            .push(sidecar);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": namespace, "labels": labels, "uid": format!("{pod_name}-uid"),
                     "creationTimestamp": now(), "finalizers": [TRACKING],
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                          "controller": true, "blockOwnerDeletion": true}]},
        "spec": spec, "status": {"phase": "Pending", "qosClass": "BestEffort"}});
    {
        let mut store = shared.store.lock().expect("store");
        store.pod_logs.insert(
            format!("{pod_name}/istio-proxy"),
            PodLog {
                text: "envoy: proxy ready\n".into(),
                done: false,
            },
        );
        save(shared, &mut store, &pods, pod_name, pod, "ADDED");
    }
    let name = name.as_str().unwrap_or_default().to_string();
    update_job(shared, jobs, &name, uid.as_str().unwrap_or_default(), |j| {
        j["status"]["active"] = json!(1);
        j["status"]["startTime"] = json!(now());
    });
    let container = &template["spec"]["containers"][0];
    let image = container["image"].as_str().unwrap_or_default();
    let waiting = |reason: &str, message: &str| {
        json!([{"name": "tests", "ready": false, "restartCount": 0, "started": false, "image": image, "imageID": "",
                "state": {"waiting": {"reason": reason, "message": message}}}])
    };
    let unschedulable = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient cpu.", "lastTransitionTime": now()}]);
    let pull = format!(
        "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found"
    );
    let problem = if image.contains("no-such-image") || image.contains("flaky-pull") {
        Some(("containerStatuses", waiting("ErrImagePull", &pull)))
    } else if image.contains("invalid-image") {
        Some((
            "containerStatuses",
            waiting(
                "InvalidImageName",
                &format!("couldn't parse image name \"{image}\""),
            ),
        ))
    } else if image.contains("inspect-error") {
        let message = format!(
            "Failed to inspect image \"{image}\": rpc error: code = Unknown desc = invalid image config"
        );
        Some(("containerStatuses", waiting("ImageInspectError", &message)))
    } else if image.contains("unschedulable") || image.contains("autoscaled") {
        Some(("conditions", unschedulable))
    } else {
        let kubelet_name = format!("{pod_name}_{namespace}({pod_name}-uid)");
        admission::verify_run_as_non_root(&template["spec"], container, &kubelet_name).map(|e| {
            (
                "containerStatuses",
                waiting("CreateContainerConfigError", &e),
            )
        })
    };
    if let Some((field, value)) = problem {
        update(shared, &pods, pod_name, |p| p["status"][field] = value);
        if !(image.contains("flaky-pull") || image.contains("autoscaled")) {
            return None;
        }
        tokio::time::sleep(TRANSIENT).await;
        update(shared, &pods, pod_name, |p| {
            p["status"].as_object_mut().expect("status").remove(field);
        });
    }
    // At the deadline the controller marks the Job before the kubelet stops the container.
    let jobs = jobs.to_string();
    let uid = uid.as_str().unwrap_or_default().to_string();
    let shared_for_deadline = shared.clone();
    let on_deadline = move || {
        let target = json!({"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded",
            "message": "Job was active longer than specified deadline",
            "lastProbeTime": now(), "lastTransitionTime": now()});
        update_job(&shared_for_deadline, &jobs, &name, &uid, |j| {
            j["status"]["conditions"] = json!([target]);
            j["status"]["terminating"] = json!(1);
        });
    };
    Some(
        run_container(
            shared,
            &pods,
            pod_name,
            container,
            template,
            deadline,
            on_deadline,
        )
        .await,
    )
}

/// A suspended Job (Kueue's webhook creates it so): the controller says `Suspended` and runs
/// no pod until the queue admits it (unsuspends it), then says `JobResumed` and starts it.
async fn wait_in_queue(shared: &Arc<Shared>, jobs: &str, name: &str, uid: &str) {
    let suspended = |status: &str, reason: &str, message: &str| {
        json!({"type": "Suspended", "status": status, "reason": reason, "message": message,
               "lastProbeTime": now(), "lastTransitionTime": now()})
    };
    let condition = suspended("True", "JobSuspended", "Job suspended");
    update_job(shared, jobs, name, uid, |j| {
        j["status"]["conditions"] = json!([condition]);
    });
    let queued = *shared.queue.lock().expect("queue");
    tokio::time::sleep(queued.unwrap_or_default()).await;
    // Kueue admits the workload: it unsuspends the Job.
    update_job(shared, jobs, name, uid, |j| {
        j["spec"]["suspend"] = json!(false)
    });
    let condition = suspended("False", "JobResumed", "Job resumed");
    update_job(shared, jobs, name, uid, |j| {
        j["status"]["conditions"] = json!([condition]);
        j["status"]["startTime"] = json!(now());
    });
}

/// Changes the Job `name` if it is still the one with `uid` (not a successor of that name).
fn update_job(shared: &Shared, jobs: &str, name: &str, uid: &str, change: impl FnOnce(&mut Value)) {
    update(shared, jobs, name, |j| {
        if j["metadata"]["uid"] == uid {
            change(j);
        }
    });
}

/// Records a Warning event on the Job, as the Job controller's event recorder does.
fn warn_on_job(
    shared: &Shared,
    namespace: &str,
    job: &str,
    uid: &str,
    reason: &str,
    message: &str,
) {
    let events = format!("/api/v1/namespaces/{namespace}/events");
    let name = format!("{job}.{uid}");
    let event = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "name": job, "namespace": namespace, "uid": uid},
        "reason": reason, "type": "Warning", "message": message, "count": 1,
        "source": {"component": "job-controller"}, "reportingComponent": "job-controller",
        "firstTimestamp": now(), "lastTimestamp": now()});
    let mut store = shared.store.lock().expect("store");
    // The event recorder folds a repeated event into one, counting it.
    let (kind, event) = match store.objects.get(&(events.clone(), name.clone())) {
        Some(old) => {
            let mut event = event;
            event["count"] = json!(old["count"].as_u64().unwrap_or(1) + 1);
            event["firstTimestamp"] = old["firstTimestamp"].clone();
            ("MODIFIED", event)
        }
        None => ("ADDED", event),
    };
    save(shared, &mut store, &events, &name, event, kind);
}
