//! When Argo CD itself calls a commit deployed: the decision of the `argocdApp` gate, a pure
//! function of the Application object, held to `argocd app wait`
//! (`cmd/argocd/commands/app.go`, `checkAppWaitConditions`) and to the status fields Argo CD's
//! controller writes (`pkg/apis/application/v1alpha1/types.go`).
//!
//! Passed: the last sync operation finished `Succeeded` for the commit (or, for a commit that
//! changes nothing in the app, no sync happened and the app compares `Synced` at that commit),
//! the controller reconciled the app after that operation ended (`reconciledAt` ≥
//! `operationState.finishedAt`, so the health is that of the new state), the sync status is
//! `Synced` at the commit and the health is `Healthy`. A `Failed`/`Error` sync of the commit and
//! `Degraded`/`Missing` health at the commit end the wait at once.

use serde::Deserialize;
use serde_json::Value;

/// What the gate makes of one observation of the Application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Gate {
    /// Deployed: test it.
    Passed(String),
    /// Not yet (the reason says what is awaited).
    Waiting(String),
    /// Will not get there by waiting: the sync failed, or the new state is unhealthy.
    Refused(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Application {
    /// A requested operation the controller has not yet taken up.
    #[serde(deserialize_with = "nullable")]
    operation: Option<Value>,
    #[serde(deserialize_with = "nullable")]
    status: Status,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Status {
    #[serde(deserialize_with = "nullable")]
    sync: Revisions,
    #[serde(deserialize_with = "nullable")]
    health: Health,
    #[serde(deserialize_with = "nullable")]
    operation_state: Option<OperationState>,
    #[serde(deserialize_with = "nullable")]
    reconciled_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Revisions {
    #[serde(deserialize_with = "nullable")]
    status: String,
    #[serde(deserialize_with = "nullable")]
    revision: String,
    /// Multi-source apps: one revision per source, `revision` empty.
    #[serde(deserialize_with = "nullable")]
    revisions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Health {
    #[serde(deserialize_with = "nullable")]
    status: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct OperationState {
    #[serde(deserialize_with = "nullable")]
    phase: String,
    #[serde(deserialize_with = "nullable")]
    message: String,
    #[serde(deserialize_with = "nullable")]
    finished_at: Option<String>,
    #[serde(deserialize_with = "nullable")]
    sync_result: Option<Revisions>,
}

impl Revisions {
    /// True when the recorded revision (or one source's) is `commit` (which may be abbreviated).
    fn at(&self, commit: &str) -> bool {
        let same =
            |r: &String| r.len() >= commit.len() && r[..commit.len()].eq_ignore_ascii_case(commit);
        std::iter::once(&self.revision)
            .chain(&self.revisions)
            .any(|r| !r.is_empty() && same(r))
    }

    fn shown(&self) -> String {
        if self.revisions.is_empty() {
            format!("{:?}", self.revision)
        } else {
            format!("{:?}", self.revisions)
        }
    }
}

/// Decides the gate for the Application `app` (the object as the API server returns it) and the
/// source commit `commit`.
pub(super) fn decide(app: &Value, commit: &str) -> Gate {
    let app: Application = match serde_json::from_value(app.clone()) {
        Ok(app) => app,
        Err(e) => return Gate::Waiting(format!("its status cannot be read yet ({e})")),
    };
    let s = &app.status;
    if app.operation.is_some() {
        return Gate::Waiting("a sync operation was requested and has not started".into());
    }
    let health = s.health.status.as_str();
    let mut no_op_sync = false;
    if let Some(op) = &s.operation_state {
        let ours = op.sync_result.as_ref().is_some_and(|r| r.at(commit));
        let finished = op.finished_at.is_some()
            && matches!(op.phase.as_str(), "Succeeded" | "Failed" | "Error");
        if !finished {
            return Gate::Waiting(format!(
                "its sync operation is {} (revision {})",
                if op.phase.is_empty() {
                    "starting"
                } else {
                    &op.phase
                },
                op.sync_result
                    .as_ref()
                    .map_or_else(|| "?".into(), Revisions::shown),
            ));
        }
        if ours && op.phase != "Succeeded" {
            return Gate::Refused(format!(
                "the sync of {commit} ended {}: {}",
                op.phase,
                op.message.trim()
            ));
        }
        if !reconciled_after(s.reconciled_at.as_deref(), op.finished_at.as_deref()) {
            return Gate::Waiting(
                "Argo CD has not yet reconciled the app since its last sync finished".into(),
            );
        }
        no_op_sync = !ours;
    } else if s.reconciled_at.is_none() {
        return Gate::Waiting("Argo CD has not reconciled the app yet".into());
    }
    if !s.sync.at(commit) {
        return Gate::Waiting(format!(
            "it is {} at revision {}, not {commit}",
            or_unknown(&s.sync.status),
            s.sync.shown()
        ));
    }
    if s.sync.status != "Synced" {
        return Gate::Waiting(format!("it is {} at {commit}", or_unknown(&s.sync.status)));
    }
    match health {
        "Healthy" if no_op_sync => Gate::Passed(format!(
            "Synced at {commit} (nothing to sync for it) and Healthy"
        )),
        "Healthy" => Gate::Passed(format!("synced {commit}: Synced and Healthy")),
        "Degraded" | "Missing" => Gate::Refused(format!("it is Synced at {commit} but {health}")),
        other => Gate::Waiting(format!(
            "it is Synced at {commit}, health {}",
            or_unknown(other)
        )),
    }
}

/// `null` reads as the default, as Go's JSON decoding that Argo CD uses reads it.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "Unknown" } else { s }
}

/// `argocd app wait`: health counts only once the controller reconciled after the operation.
fn reconciled_after(reconciled_at: Option<&str>, finished_at: Option<&str>) -> bool {
    let time = |t: Option<&str>| t.and_then(|t| humantime::parse_rfc3339_weak(t).ok());
    match (time(reconciled_at), time(finished_at)) {
        (Some(reconciled), Some(finished)) => reconciled >= finished,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
