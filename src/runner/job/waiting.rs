//! Waiting for the test Job: three watches (the Job, its pods by the Job's uid, the events on
//! the Job) through kube-runtime's watcher ([`crate::cluster::watch`]), until the controller
//! gives its verdict or it is certain the pod will never run.

use std::{collections::BTreeSet, pin::Pin, time::Duration};

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
    clocks::{CREATION, Clocks, Queue},
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
    /// The cluster did not end the Job within [`Watched::timeout`].
    NotEnded,
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
    /// How long the Job may run before phasegate gives up on the cluster ending it; time in a
    /// queue (suspended) does not count.
    pub timeout: Duration,
}

/// How the wait ended, and how long the Job was queued (suspended) before it ran, with the
/// controller's words for it.
pub(super) struct Waited {
    pub ending: Ending,
    pub queued: Option<(Duration, String)>,
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
) -> Result<Waited, ClusterError> {
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
    let mut progress = Progress::new(job);
    let ending = loop {
        let seen = tokio::select! {
            seen = all.next() => seen,
            () = sleep_until(progress.clocks.due()) => {
                let oldest = progress.clocks.oldest().expect("a problem is due");
                break Ending::CannotRun(oldest);
            }
            () = tokio::time::sleep_until(progress.queue.deadline()) => {
                break if progress.queue.queued() {
                    Ending::CannotRun(format!(
                        "still queued after {}: the queue did not admit it",
                        humantime::format_duration(super::clocks::QUEUE_LIMIT)
                    ))
                } else {
                    Ending::NotEnded
                };
            }
        };
        let Some(seen) = seen else {
            return Err(ClusterError::Unavailable(format!(
                "the watches of {} ended",
                job.what
            )));
        };
        if let Some(ending) = progress.on(seen?, pods, follower, sink)? {
            break ending;
        }
    };
    Ok(Waited {
        ending,
        queued: progress.queue.waited(),
    })
}

/// What the watches have shown so far.
struct Progress<'a> {
    job: &'a Watched<'a>,
    clocks: Clocks,
    /// The run's pods that exist.
    pods: BTreeSet<String>,
    /// The Job was listed since its watch last (re)started.
    job_seen: bool,
    /// The pods listed so far while the pod watch (re)lists: after `410 Gone` or a broken
    /// connection the watcher lists again, and a pod deleted meanwhile is simply not listed
    /// (no deletion is ever seen): its problem's clock must stop with it.
    pods_listed: Option<BTreeSet<String>>,
    /// While the event watch (re)lists: whether a retried `FailedCreate` was listed again.
    creation_listed: Option<bool>,
    /// The Job's time in a queue, and phasegate's deadline, which that time pushes back.
    queue: Queue,
}

impl<'a> Progress<'a> {
    fn new(job: &'a Watched<'a>) -> Progress<'a> {
        Progress {
            job,
            clocks: Clocks::new(job.tolerance),
            pods: BTreeSet::new(),
            job_seen: false,
            pods_listed: None,
            creation_listed: None,
            queue: Queue::new(job.timeout),
        }
    }

    /// Takes in one watch event; `Some` once the wait is over.
    fn on(
        &mut self,
        seen: Seen,
        pods: &Api<Pod>,
        follower: &mut LogFollower,
        sink: &LogSink,
    ) -> Result<Option<Ending>, ClusterError> {
        match seen {
            Seen::Job(event) => self.on_job(event, sink),
            Seen::Pod(event) => Ok(self.on_pod(event, pods, follower, sink)),
            Seen::Event(event) => Ok(self.on_event(event)),
        }
    }

    /// The Job: its verdict, its queue, or its deletion (an error, not a verdict).
    fn on_job(
        &mut self,
        event: watcher::Event<Job>,
        sink: &LogSink,
    ) -> Result<Option<Ending>, ClusterError> {
        let job = self.job;
        let gone =
            || ClusterError::Precondition(format!("{} was deleted while its tests ran", job.what));
        match event {
            watcher::Event::Init => self.job_seen = false,
            watcher::Event::InitDone if !self.job_seen => return Err(gone()),
            watcher::Event::InitDone => {}
            watcher::Event::Delete(_) => return Err(gone()),
            watcher::Event::Apply(j) | watcher::Event::InitApply(j) => {
                self.job_seen = true;
                if j.metadata.uid.as_deref() != Some(job.uid)
                    || j.metadata.deletion_timestamp.is_some()
                {
                    return Err(gone());
                }
                self.queue.saw(&j, sink, job.what);
                return Ok(job_verdict(&j).map(Ending::Verdict));
            }
        }
        Ok(None)
    }

    /// A pod of the run: the tests container's exit under a sidecar, a problem, or a pod to
    /// follow; a re-list forgets the pods it does not list again.
    fn on_pod(
        &mut self,
        event: watcher::Event<Pod>,
        pods: &Api<Pod>,
        follower: &mut LogFollower,
        sink: &LogSink,
    ) -> Option<Ending> {
        let pod = match event {
            watcher::Event::Init => {
                self.pods_listed = Some(BTreeSet::new());
                return None;
            }
            watcher::Event::InitDone => {
                let listed = self.pods_listed.take().unwrap_or_default();
                for gone in self.pods.difference(&listed) {
                    self.clocks.stop(gone);
                }
                self.pods = listed;
                return None;
            }
            watcher::Event::Delete(pod) => {
                let name = pod.metadata.name.unwrap_or_default();
                self.clocks.stop(&name);
                self.pods.remove(&name);
                return None;
            }
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => pod,
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Some(listed) = &mut self.pods_listed {
            listed.insert(name.clone());
        }
        // A pod exists: its creation is no problem (any more).
        self.clocks.stop(CREATION);
        self.pods.insert(name.clone());
        if let Some((verdict, note)) = tests_exited(&pod) {
            follower.follow(pods, &pod, sink);
            return Some(Ending::TestsExited(verdict, note));
        }
        match pod_problem(&pod) {
            Some(PodProblem::Permanent(detail)) => return Some(Ending::CannotRun(detail)),
            Some(PodProblem::Transient { reason, detail }) => {
                self.clocks.saw(&name, reason, detail);
            }
            None => {
                self.clocks.stop(&name);
                follower.follow(pods, &pod, sink);
            }
        }
        None
    }

    /// An event on the Job: a `FailedCreate`, permanent or retried by the controller.
    fn on_event(&mut self, event: watcher::Event<Event>) -> Option<Ending> {
        match event {
            watcher::Event::Init => self.creation_listed = Some(false),
            watcher::Event::InitDone => {
                let not_listed_again = self.creation_listed.take() == Some(false);
                if not_listed_again {
                    self.clocks.stop(CREATION);
                }
            }
            // Once a pod exists, an event about creating one is history (a re-list or an
            // attached Job replays events up to an hour old).
            watcher::Event::Apply(e) | watcher::Event::InitApply(e) if self.pods.is_empty() => {
                match failed_create(&e) {
                    Some(PodProblem::Permanent(detail)) => return Some(Ending::CannotRun(detail)),
                    // The controller retries.
                    Some(PodProblem::Transient { reason, detail }) => {
                        self.clocks.saw(CREATION, reason, detail);
                        if let Some(listed) = &mut self.creation_listed {
                            *listed = true;
                        }
                    }
                    None => {}
                }
            }
            watcher::Event::Apply(_) | watcher::Event::InitApply(_) | watcher::Event::Delete(_) => {
            }
        }
        None
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
