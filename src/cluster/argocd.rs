//! The Argo CD gate (`argocdApp`): before testing, wait until Argo CD itself calls the source
//! commit deployed ([`app_status::decide`](super::app_status::decide)). A notification can
//! arrive before the state that matters (on sync, while pods still roll), and a failed sync can
//! leave the old pods Healthy: neither may be tested as the new version.
//!
//! The Application is followed with kube-runtime's watcher: a server-side timeout on every
//! watch, re-established when it ends or the connection drops, a fresh list on 410 Gone,
//! bookmarks understood.

use futures_util::{Stream, TryStreamExt};
use kube::{
    Api,
    api::{ApiResource, DynamicObject},
    runtime::{WatchStreamExt, watcher},
};

use super::{
    Cluster, ClusterError,
    app_status::{Follower, Gate},
    watch,
};
use crate::spec::ArgoGate;

fn application() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: "applications".into(),
    }
}

/// Waits (bounded by the gate's timeout) until the Application is deployed at `commit`; a
/// failed sync or an unhealthy new state ends the wait early with Argo CD's reason.
pub(crate) async fn wait_synced(
    cluster: &Cluster,
    gate: &ArgoGate,
    commit: &str,
) -> Result<String, ClusterError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &gate.namespace, &application());
    let what = format!("Argo CD Application `{}/{}`", gate.namespace, gate.name);
    let mut last = "it was not seen yet".to_string();
    let config = watch::config().fields(&format!("metadata.name={}", gate.name));
    let events = watcher(api, config).default_backoff();
    let events = watch::tolerant(events, &what);
    let waited = tokio::time::timeout(gate.timeout, follow(events, &what, commit, &mut last)).await;
    match waited {
        Ok(Ok(why)) => Ok(format!("{what}: {why}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ClusterError::Precondition(format!(
            "{what} was not deployed at {commit} within {}: {}",
            humantime::format_duration(gate.timeout),
            last,
        ))),
    }
}

/// Follows the Application's watch events until the gate decides; `last` keeps what it is
/// still waiting for, for the message at the timeout.
async fn follow<S>(
    events: S,
    what: &str,
    commit: &str,
    last: &mut String,
) -> Result<String, ClusterError>
where
    S: Stream<Item = Result<watcher::Event<DynamicObject>, ClusterError>>,
{
    let mut events = std::pin::pin!(events);
    let mut follower = Follower::default();
    let mut latest: Option<serde_json::Value> = None;
    // tokio's clock (the same as std's, unless a test pauses it).
    let now = || tokio::time::Instant::now().into_std();
    loop {
        // A `Degraded` being waited out is judged again when its grace ends, even if the
        // Application does not change by then.
        let next = match (follower.recheck_at(), &latest) {
            (Some(at), Some(object)) => {
                let at = tokio::time::Instant::from_std(at);
                match tokio::time::timeout_at(at, events.try_next()).await {
                    Ok(next) => next?,
                    Err(_) => {
                        match step(follower.observe(object, commit, now()), what, commit) {
                            Step::Done(done) => return done,
                            Step::Wait(why) => *last = why,
                        }
                        continue;
                    }
                }
            }
            _ => events.try_next().await?,
        };
        let Some(event) = next else { break };
        let app = match event {
            watcher::Event::Init => {
                latest = None;
                continue;
            }
            watcher::Event::InitDone if latest.is_none() => {
                return Err(ClusterError::NotFound(format!("{what} not found")));
            }
            watcher::Event::InitDone => continue,
            watcher::Event::Delete(_) => {
                return Err(ClusterError::NotFound(format!("{what} was deleted")));
            }
            watcher::Event::Apply(app) | watcher::Event::InitApply(app) => app,
        };
        let object = serde_json::to_value(&app)
            .map_err(|e| ClusterError::Other(format!("{what} cannot be read: {e}")))?;
        let gate = follower.observe(&object, commit, now());
        latest = Some(object);
        match step(gate, what, commit) {
            Step::Done(done) => return done,
            Step::Wait(why) => *last = why,
        }
    }
    Err(ClusterError::Unavailable(format!(
        "the watch of {what} ended"
    )))
}

/// What one observation means for the wait.
enum Step {
    /// The wait is over: passed (why) or refused.
    Done(Result<String, ClusterError>),
    /// Still waiting, for this.
    Wait(String),
}

fn step(gate: Gate, what: &str, commit: &str) -> Step {
    Step::Done(match gate {
        Gate::Passed(why) => Ok(why),
        Gate::Refused(why) => Err(ClusterError::Precondition(format!(
            "{what} is not deployed at {commit}: {why}"
        ))),
        Gate::Superseded(why) => Err(ClusterError::Precondition(format!(
            "{what} no longer runs {commit}: {why}"
        ))),
        Gate::Unsupported(why) => Err(ClusterError::Precondition(format!(
            "{what} cannot be gated on {commit}: {why}"
        ))),
        Gate::Waiting(why) | Gate::Unhealthy { why, .. } => return Step::Wait(why),
    })
}

#[cfg(test)]
mod tests;
