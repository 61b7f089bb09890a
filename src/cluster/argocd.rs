//! The Argo CD gate (`argocdApp`): before testing, wait until the Application's applied revision
//! is the source commit and it is Healthy. A notification can arrive before the health that
//! matters (e.g. on sync, while pods still roll).

use futures_util::StreamExt;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, WatchEvent, WatchParams},
};
use serde_json::Value;

use super::{Cluster, ClusterError};
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

/// (applied revision, health) of an Application object.
fn state(app: &DynamicObject) -> (String, String) {
    let at = |path: &[&str]| {
        path.iter()
            .try_fold(&app.data, |v, k| v.get(*k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (
        at(&["status", "operationState", "syncResult", "revision"]),
        at(&["status", "health", "status"]),
    )
}

/// Waits (bounded by the gate's timeout) until the Application runs `commit` and is Healthy.
pub async fn wait_synced(
    cluster: &Cluster,
    gate: &ArgoGate,
    commit: &str,
) -> Result<String, ClusterError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &gate.namespace, &application());
    let what = format!("Argo CD Application `{}/{}`", gate.namespace, gate.name);
    let ready =
        |(revision, health): &(String, String)| revision.starts_with(commit) && health == "Healthy";
    let mut last = (String::new(), String::new());
    let waited = tokio::time::timeout(gate.timeout, async {
        loop {
            let app = api
                .get(&gate.name)
                .await
                .map_err(|e| ClusterError::from_kube(e, &what))?;
            last = state(&app);
            if ready(&last) {
                return Ok(());
            }
            let version = app
                .metadata
                .resource_version
                .clone()
                .unwrap_or_else(|| "0".into());
            let params = WatchParams::default().fields(&format!("metadata.name={}", gate.name));
            let mut events = api
                .watch(&params, &version)
                .await
                .map_err(|e| ClusterError::from_kube(e, &what))?
                .boxed();
            while let Some(event) = events.next().await {
                if let Ok(WatchEvent::Added(app) | WatchEvent::Modified(app)) = event {
                    last = state(&app);
                    if ready(&last) {
                        return Ok(());
                    }
                }
            }
            // The API server ends watches after a while: look again and watch again.
        }
    })
    .await;
    match waited {
        Ok(Ok(())) => Ok(format!("{what} runs {commit} and is Healthy")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ClusterError::Precondition(format!(
            "{what} did not reach revision {commit} and Healthy within {} (revision {:?}, health {:?})",
            humantime::format_duration(gate.timeout),
            last.0,
            last.1
        ))),
    }
}
