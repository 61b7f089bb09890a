//! The Argo CD gate (`argocdApp`): before testing, wait until Argo CD itself calls the source
//! commit deployed ([`app_status::decide`](super::app_status::decide)). A notification can
//! arrive before the state that matters (on sync, while pods still roll), and a failed sync can
//! leave the old pods Healthy: neither may be tested as the new version.
//!
//! The Application is followed with kube-runtime's watcher: a server-side timeout on every
//! watch, re-established when it ends or the connection drops, a fresh list on 410 Gone,
//! bookmarks understood.

use futures_util::TryStreamExt;
use kube::{
    Api,
    api::{ApiResource, DynamicObject},
    runtime::{WatchStreamExt, watcher},
};

use super::{Cluster, ClusterError, app_status::Gate, watch};
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
    let waited = tokio::time::timeout(gate.timeout, async {
        let mut events = std::pin::pin!(watch::tolerant(events, &what));
        let mut seen = false;
        while let Some(event) = events.try_next().await? {
            let app = match event {
                watcher::Event::Init => {
                    seen = false;
                    continue;
                }
                watcher::Event::InitDone if !seen => {
                    return Err(ClusterError::NotFound(format!("{what} not found")));
                }
                watcher::Event::InitDone => continue,
                watcher::Event::Delete(_) => {
                    return Err(ClusterError::NotFound(format!("{what} was deleted")));
                }
                watcher::Event::Apply(app) | watcher::Event::InitApply(app) => app,
            };
            seen = true;
            let object = serde_json::to_value(&app)
                .map_err(|e| ClusterError::Other(format!("{what} cannot be read: {e}")))?;
            match super::app_status::decide(&object, commit) {
                Gate::Passed(why) => return Ok(why),
                Gate::Refused(why) => {
                    return Err(ClusterError::Precondition(format!(
                        "{what} is not deployed at {commit}: {why}"
                    )));
                }
                Gate::Superseded(why) => {
                    return Err(ClusterError::Precondition(format!(
                        "{what} no longer runs {commit}: {why}"
                    )));
                }
                Gate::Waiting(why) => last = why,
            }
        }
        Err(ClusterError::Unavailable(format!(
            "the watch of {what} ended"
        )))
    })
    .await;
    match waited {
        Ok(Ok(why)) => Ok(format!("{what}: {why}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ClusterError::Precondition(format!(
            "{what} was not deployed at {commit} within {}: {last}",
            humantime::format_duration(gate.timeout),
        ))),
    }
}
