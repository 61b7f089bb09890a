//! Waiting for the test Job: three watches (the Job, its pods by the Job's uid, the events on
//! the Job) through kube-runtime's watcher ([`crate::cluster::watch`]), until the controller
//! gives its verdict or it is certain the pod will never run.

use std::{collections::BTreeMap, pin::Pin, time::Duration};

use futures_util::{Stream, StreamExt, stream};
use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Event, Pod},
};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use tokio::time::Instant;

use super::{
    logs::LogFollower,
    verdict::{PodProblem, Verdict, failed_create, job_verdict, pod_problem, tests_exited},
};
use crate::{
    cluster::{ClusterError, watch},
    runner::LogSink,
};

/// How the wait ended (an `Err` is the cluster's, not the test's).
pub(super) enum Ending {
    /// The Job controller's verdict.
    Verdict(Verdict),
    /// The tests container's exit code, while another container (a mesh sidecar) keeps its
    /// pod Running and the Job would run to its deadline; the note says so.
    TestsExited(Verdict, String),
    /// The pod can never run its tests (bad image, never created, no node for too long).
    CannotRun(String),
}

/// The Job waited for.
pub(super) struct Watched<'a> {
    pub client: Client,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The uid of the Job this run created or attached to: a Job of the same name with another
    /// uid is another run's.
    pub uid: &'a str,
    pub what: &'a str,
    /// How long a transient pod problem is waited out.
    pub tolerance: Duration,
}

#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per watch event; boxing would only add allocations"
)]
enum Seen {
    Job(watcher::Event<Job>),
    Pod(watcher::Event<Pod>),
    Event(watcher::Event<Event>),
}

type Events = Pin<Box<dyn Stream<Item = Result<Seen, ClusterError>> + Send>>;

fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &str,
    seen: fn(watcher::Event<K>) -> Seen,
) -> Events
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watch::tolerant(watcher(api, config).default_backoff(), what)
        .map(move |e| e.map(seen))
        .boxed()
}

/// Watches until the Job ends or a pod cannot run; follows the log of the run's pods.
pub(super) async fn wait(
    job: &Watched<'_>,
    pods: &Api<Pod>,
    follower: &mut LogFollower,
    sink: &LogSink,
) -> Result<Ending, ClusterError> {
    let ns = job.namespace;
    let mut all = stream::select_all([
        watched(
            Api::<Job>::namespaced(job.client.clone(), ns),
            watch::config().fields(&format!("metadata.name={}", job.name)),
            job.what,
            Seen::Job,
        ),
        watched(
            pods.clone(),
            watch::config().labels(&format!("batch.kubernetes.io/controller-uid={}", job.uid)),
            job.what,
            Seen::Pod,
        ),
        watched(
            Api::<Event>::namespaced(job.client.clone(), ns),
            watch::config().fields(&format!("involvedObject.uid={}", job.uid)),
            job.what,
            Seen::Event,
        ),
    ]);
    let gone =
        || ClusterError::Precondition(format!("{} was deleted while its tests ran", job.what));
    // Transient problems per pod: (reason, detail, first seen).
    let mut problems: BTreeMap<String, (String, String, Instant)> = BTreeMap::new();
    let mut job_seen = false;
    loop {
        let due = problems
            .values()
            .map(|(_, _, since)| *since + job.tolerance)
            .min();
        let seen = tokio::select! {
            seen = all.next() => seen,
            () = sleep_until(due) => {
                let (_, detail, _) = problems
                    .values()
                    .min_by_key(|(_, _, since)| *since)
                    .expect("a problem is due");
                return Ok(Ending::CannotRun(format!(
                    "{detail} (for {})",
                    humantime::format_duration(job.tolerance)
                )));
            }
        };
        let Some(seen) = seen else {
            return Err(ClusterError::Unavailable(format!(
                "the watches of {} ended",
                job.what
            )));
        };
        match seen? {
            Seen::Job(watcher::Event::Init) => job_seen = false,
            Seen::Job(watcher::Event::InitDone) if !job_seen => return Err(gone()),
            Seen::Job(watcher::Event::Delete(_)) => return Err(gone()),
            Seen::Job(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => {
                job_seen = true;
                if j.metadata.uid.as_deref() != Some(job.uid)
                    || j.metadata.deletion_timestamp.is_some()
                {
                    return Err(gone());
                }
                if let Some(v) = job_verdict(&j) {
                    return Ok(Ending::Verdict(v));
                }
            }
            Seen::Pod(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if let Some((verdict, note)) = tests_exited(&pod) {
                    follower.follow(pods, &pod, sink);
                    return Ok(Ending::TestsExited(verdict, note));
                }
                match pod_problem(&pod) {
                    Some(PodProblem::Permanent(detail)) => return Ok(Ending::CannotRun(detail)),
                    Some(PodProblem::Transient { reason, detail }) => {
                        let entry = problems
                            .entry(name)
                            .or_insert_with(|| (reason.clone(), detail.clone(), Instant::now()));
                        if entry.0 != reason {
                            *entry = (reason, detail, Instant::now());
                        } else {
                            entry.1 = detail;
                        }
                    }
                    None => {
                        problems.remove(&name);
                        follower.follow(pods, &pod, sink);
                    }
                }
            }
            Seen::Pod(watcher::Event::Delete(pod)) => {
                problems.remove(&pod.metadata.name.unwrap_or_default());
            }
            Seen::Event(watcher::Event::Apply(e) | watcher::Event::InitApply(e)) => {
                if let Some(message) = failed_create(&e) {
                    return Ok(Ending::CannotRun(message));
                }
            }
            _ => {}
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
