//! The Kubernetes Job runner: the classic test container, run by the cluster.
//!
//! The Job's name comes from the run's idempotency key, so a second replica or a restarted
//! server that gets the same event attaches to the Job already running instead of starting
//! another. It waits with watches (the Job, and its pods for image-pull errors or an
//! unschedulable pod, which end the run at once instead of at the deadline), follows the pod's
//! log as it is written, deletes the Job on success and keeps a failed one until its TTL for
//! debugging.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::{batch::v1::Job, core::v1::Pod};
use kube::{
    Api,
    api::{DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams},
};
use serde_json::json;
use tokio::task::JoinHandle;
use tracing::info;

use super::{LogSink, RunnerError, TestContext};
use crate::{cluster::ClusterError, spec::JobTest};

/// Failed Jobs stay this long for `kubectl logs`, then the cluster removes them.
const FAILED_JOB_TTL_SECONDS: u64 = 24 * 3600;
/// Past `activeDeadlineSeconds`, how long phasegate waits for the cluster to say so.
const DEADLINE_GRACE: Duration = Duration::from_secs(30);
/// A failed Job of the same event is deleted and created again; deletion may take a moment.
const RECREATE_ATTEMPTS: u32 = 10;
/// Lines of the pod's log kept (the answer keeps the last 4 KiB of them).
const LOG_LINES: usize = 200;
/// Once the Job has ended, how long its log stream may take to deliver its last lines.
const LOG_DRAIN: Duration = Duration::from_secs(5);

enum Verdict {
    Passed,
    Failed(String),
    /// The pod can never run (bad image, no node): the Job is deleted, not kept.
    Stuck(String),
}

/// Runs the test image as a Job and waits for it. Returns (passed, attempts, log).
pub async fn run(test: &JobTest, ctx: &TestContext) -> Result<(bool, u32, String), RunnerError> {
    let cluster = ctx
        .cluster
        .as_ref()
        .ok_or(RunnerError::KubernetesNotConfigured)?;
    let namespace = test.namespace.as_deref().unwrap_or(&cluster.namespace);
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let name = ctx.job_name.as_str();
    let what = format!("Job `{namespace}/{name}`");
    let job = manifest(test, name, namespace, &ctx.labels);
    start(&jobs, &job, name, &what, ctx).await?;
    let mut follower = LogFollower::default();
    let waited = tokio::time::timeout(
        test.timeout + DEADLINE_GRACE,
        wait(&jobs, &pods, name, &what, &mut follower, &ctx.log),
    )
    .await;
    let log = follower.finish(&pods, name, &ctx.log, waited.is_ok()).await;
    info!(job = %name, log = %super::tail(&log, 1024), "test Job log");
    // The cluster's deadline (DeadlineExceeded) and phasegate's own are both timeouts; a Job
    // that can never run is no use for debugging either: both are deleted.
    let delete = match &waited {
        Ok(Ok(Verdict::Failed(reason))) => reason.starts_with("DeadlineExceeded"),
        Ok(Ok(Verdict::Stuck(_))) | Err(_) => true,
        Ok(_) => false,
    };
    let (passed, ending) = match waited {
        Ok(Ok(Verdict::Passed)) => (true, format!("{what} succeeded")),
        Ok(Ok(Verdict::Failed(reason))) if delete => (false, format!("{what} timed out: {reason}")),
        Ok(Ok(Verdict::Stuck(reason))) => (false, format!("{what} cannot run: {reason}")),
        Ok(Ok(Verdict::Failed(reason))) => (
            false,
            format!("{what} failed: {reason} (kept for debugging)"),
        ),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => (
            false,
            format!(
                "{what} timed out after {}",
                humantime::format_duration(test.timeout)
            ),
        ),
    };
    if passed || delete {
        let _ = jobs.delete(name, &DeleteParams::background()).await;
    }
    ctx.sink(&ending);
    Ok((passed, 1, format!("{log}{ending}\n")))
}

/// Creates the Job, or attaches to the one already running for this event. A Job that already
/// failed is replaced: failures are not remembered, a retry tests again.
async fn start(
    jobs: &Api<Job>,
    job: &Job,
    name: &str,
    what: &str,
    ctx: &TestContext,
) -> Result<(), ClusterError> {
    let kube_err = |e| ClusterError::from_kube(e, what);
    for _ in 0..RECREATE_ATTEMPTS {
        match jobs.create(&PostParams::default(), job).await {
            Ok(_) => {
                ctx.sink(&format!("created {what} running {}", job_image(job)));
                return Ok(());
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = match jobs.get(name).await {
                    Ok(existing) => existing,
                    Err(kube::Error::Api(s)) if s.code == 404 => continue, // deleted meanwhile
                    Err(e) => return Err(kube_err(e)),
                };
                if !matches!(finished(&existing), Some(Verdict::Failed(_))) {
                    ctx.sink(&format!(
                        "{what} already exists (another replica or an earlier run): attaching"
                    ));
                    return Ok(());
                }
                ctx.sink(&format!("{what} failed before: replacing it to test again"));
                jobs.delete(name, &DeleteParams::background())
                    .await
                    .map_err(kube_err)?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(kube_err(e)),
        }
    }
    Err(ClusterError::Other(format!("{what} could not be replaced")))
}

fn job_image(job: &Job) -> &str {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.as_deref())
        .unwrap_or("?")
}

fn manifest(test: &JobTest, name: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Job {
    let mut env: Vec<_> = test
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    env.push(json!({"name": "TEST_TARGET", "value": test.target}));
    let mut container =
        json!({"name": "tests", "image": test.image, "args": test.args, "env": env});
    if !test.command.is_empty() {
        container["command"] = json!(test.command);
    }
    if let Some(resources) = &test.resources {
        container["resources"] = resources.clone();
    }
    let mut pod_spec = json!({"restartPolicy": "Never", "containers": [container]});
    if let Some(sa) = &test.service_account {
        pod_spec["serviceAccountName"] = json!(sa);
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": test.timeout.as_secs().max(1),
            "ttlSecondsAfterFinished": FAILED_JOB_TTL_SECONDS,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }))
    .expect("the Job manifest matches the batch/v1 schema")
}

/// Watches the Job and its pods until the Job ends or a pod cannot start; follows the log of
/// the pod once its container has started.
async fn wait(
    jobs: &Api<Job>,
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    follower: &mut LogFollower,
    sink: &LogSink,
) -> Result<Verdict, ClusterError> {
    let kube_err = |e| ClusterError::from_kube(e, what);
    loop {
        let job = jobs.get(name).await.map_err(kube_err)?;
        if let Some(v) = finished(&job) {
            return Ok(v);
        }
        let version = job.metadata.resource_version.unwrap_or_else(|| "0".into());
        let by_name = WatchParams::default().fields(&format!("metadata.name={name}"));
        let by_job = WatchParams::default().labels(&format!("job-name={name}"));
        let mut job_events = jobs
            .watch(&by_name, &version)
            .await
            .map_err(kube_err)?
            .boxed();
        let mut pod_events = pods.watch(&by_job, "0").await.map_err(kube_err)?.boxed();
        loop {
            tokio::select! {
                event = job_events.next() => match event {
                    Some(Ok(WatchEvent::Added(job) | WatchEvent::Modified(job))) => {
                        if let Some(v) = finished(&job) {
                            return Ok(v);
                        }
                    }
                    Some(Ok(WatchEvent::Deleted(_))) => return Ok(Verdict::Failed("the Job was deleted".into())),
                    Some(_) => {}
                    None => break,
                },
                event = pod_events.next() => match event {
                    Some(Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod))) => {
                        if let Some(reason) = stuck(&pod) {
                            return Ok(Verdict::Stuck(reason));
                        }
                        follower.follow(pods, &pod, sink);
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
        // A watch ended (the API server closes them after a while): look again, watch again.
    }
}

fn finished(job: &Job) -> Option<Verdict> {
    let status = job.status.as_ref()?;
    if status.succeeded.unwrap_or(0) > 0 {
        return Some(Verdict::Passed);
    }
    let failed = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True");
    match failed {
        Some(c) => Some(Verdict::Failed(format!(
            "{}: {}",
            c.reason.as_deref().unwrap_or("Failed"),
            c.message.as_deref().unwrap_or("")
        ))),
        None if status.failed.unwrap_or(0) > 0 => {
            Some(Verdict::Failed("the test container failed".into()))
        }
        None => None,
    }
}

/// Why a pod will never run its tests, if it will not: a bad image or no node for it.
fn stuck(pod: &Pod) -> Option<String> {
    const HOPELESS: [&str; 5] = [
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    ];
    let status = pod.status.as_ref()?;
    for c in status.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = w.reason.as_deref().filter(|r| HOPELESS.contains(r))
        {
            return Some(format!("{reason}: {}", w.message.as_deref().unwrap_or("")));
        }
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| format!("Unschedulable: {}", c.message.as_deref().unwrap_or("")))
}

/// Follows the test container's log while it runs, so `runs watch` and the server log show
/// its lines as they happen (keeping the last [`LOG_LINES`] for the answer).
#[derive(Default)]
struct LogFollower {
    lines: Arc<Mutex<VecDeque<String>>>,
    /// Ends `true` when the stream ended with the container, `false` when it broke.
    task: Option<JoinHandle<bool>>,
}

impl LogFollower {
    /// Starts following `pod` once its container has started (the kubelet refuses before).
    fn follow(&mut self, pods: &Api<Pod>, pod: &Pod, sink: &LogSink) {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let started = matches!(phase, Some("Running" | "Succeeded" | "Failed"));
        // A pod of a replaced Job may linger while it is deleted: not ours.
        if self.task.is_some() || !started || pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        let Some(name) = pod.metadata.name.clone() else {
            return;
        };
        let (pods, lines, sink) = (pods.clone(), self.lines.clone(), sink.clone());
        self.task = Some(tokio::spawn(async move {
            let params = LogParams {
                follow: true,
                ..LogParams::default()
            };
            let Ok(stream) = pods.log_stream(&name, &params).await else {
                return false;
            };
            let mut stream = stream.lines();
            while let Some(line) = stream.next().await {
                let Ok(line) = line else {
                    return false;
                };
                sink(&line);
                let mut kept = lines.lock().expect("log lines");
                if kept.len() == LOG_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
            true
        }));
    }

    /// The log: as followed when the stream saw the container end, otherwise (never started,
    /// broken, or still open after the Job ended) the log tail read from the pod. When the Job
    /// did not end (`ended` false: phasegate's own timeout) its stream is not waited for.
    async fn finish(self, pods: &Api<Pod>, job: &str, sink: &LogSink, ended: bool) -> String {
        if let Some(task) = self.task {
            let abort = task.abort_handle();
            let drain = if ended { LOG_DRAIN } else { Duration::ZERO };
            if let Ok(Ok(true)) = tokio::time::timeout(drain, task).await {
                let lines = self.lines.lock().expect("log lines");
                return lines.iter().map(|l| format!("{l}\n")).collect();
            }
            abort.abort();
            if !self.lines.lock().expect("log lines").is_empty() {
                sink("(the log stream broke; the pod's log tail follows)");
            }
        }
        let log = pod_log(pods, job).await;
        for line in log.lines() {
            sink(line);
        }
        log
    }
}

/// The log tail of the Job's pod ("" when there is none yet, or it cannot be read).
async fn pod_log(pods: &Api<Pod>, job: &str) -> String {
    let Ok(list) = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
    else {
        return String::new();
    };
    let Some(pod) = list.items.last().and_then(|p| p.metadata.name.clone()) else {
        return String::new();
    };
    let params = LogParams {
        tail_lines: Some(LOG_LINES as i64),
        ..LogParams::default()
    };
    pods.logs(&pod, &params).await.unwrap_or_default()
}

/// A stable name for the Job of a run: the same event always names the same Job.
pub fn job_name(idempotency_key: &str) -> String {
    // FNV-1a: stable across processes and releases, unlike std's hasher.
    let hash = idempotency_key
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("phasegate-{hash:016x}")
}
