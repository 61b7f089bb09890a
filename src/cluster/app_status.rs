//! When Argo CD itself calls a commit deployed: the decision of the `argocdApp` gate, a pure
//! function of the Application object, held to `argocd app wait`
//! (`cmd/argocd/commands/app.go`, `checkAppWaitConditions`) and to the status fields Argo CD's
//! controller writes (`pkg/apis/application/v1alpha1/types.go`).
//!
//! Passed: the last sync operation finished `Succeeded` for the commit (or, for a commit that
//! changes nothing in the app, no sync happened and the app compares `Synced` at that commit),
//! the controller reconciled the app after that operation ended (`reconciledAt` ≥
//! `operationState.finishedAt`, so the health is that of the new state), the sync status is
//! `Synced` and the health is `Healthy`. `Synced` counts at the commit, or at a later revision
//! when the last operation is the commit's: `CompareAppState` compares at the branch head, and
//! a later commit that renders the same manifests causes no operation (a busy monorepo).
//!
//! Ended at once: a `Failed`/`Error` sync of the commit, `Missing` health at the commit, and a
//! later sync once the commit was deployed (it is in `status.history`, which
//! `persistRevisionHistory` appends to on every successful sync): superseded. `Degraded` is
//! the [`Follower`]'s to judge, over several observations. A hydrated app is decided on the
//! commit the hydrator pushed for the event's dry commit ([`hydrator`]).

use serde::Deserialize;
use serde_json::Value;

/// What the gate makes of one observation of the Application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Gate {
    /// Deployed: test it.
    Passed(String),
    /// Not yet (the reason says what is awaited).
    Waiting(String),
    /// Will not get there by waiting: the sync (or the hydration) of the commit failed, or the
    /// new state is unhealthy.
    Refused(String),
    /// Deployed at the commit and reconciled, but not `Healthy` yet: [`Follower`] decides
    /// from the healths seen before whether this is still worth waiting for.
    Unhealthy {
        /// `status.health.status` (`Unknown` when empty).
        health: String,
        /// What is awaited.
        why: String,
    },
    /// The gate cannot tell for this app or this commit (a hydrated app with `hydrateTo`, an
    /// event naming the hydrated commit): waiting would never end.
    Unsupported(String),
    /// The commit was deployed, but a later sync has replaced (or is replacing) it: what runs
    /// is no longer the commit.
    Superseded(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Application {
    #[serde(deserialize_with = "nullable")]
    spec: Spec,
    /// A requested operation the controller has not yet taken up.
    #[serde(deserialize_with = "nullable")]
    operation: Option<Value>,
    #[serde(deserialize_with = "nullable")]
    status: Status,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Spec {
    /// Argo CD 3.x: the app syncs what the hydrator renders from a dry source.
    #[serde(deserialize_with = "nullable")]
    source_hydrator: Option<hydrator::SourceHydrator>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Status {
    #[serde(deserialize_with = "nullable")]
    source_hydrator: hydrator::HydratorStatus,
    #[serde(deserialize_with = "nullable")]
    sync: Revisions,
    #[serde(deserialize_with = "nullable")]
    health: Health,
    #[serde(deserialize_with = "nullable")]
    operation_state: Option<OperationState>,
    #[serde(deserialize_with = "nullable")]
    reconciled_at: Option<String>,
    /// The successful syncs, oldest first (`persistRevisionHistory`).
    #[serde(deserialize_with = "nullable")]
    history: Vec<Revisions>,
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
        std::iter::once(&self.revision)
            .chain(&self.revisions)
            .any(|r| names(r, commit))
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
    let Some(spec) = &app.spec.source_hydrator else {
        return decide_at(&app, commit);
    };
    match hydrator::deployed_commit(spec, &app.status.source_hydrator, commit) {
        Ok((synced, how)) => decide_at(&app, &synced).explained(&how),
        Err(gate) => gate,
    }
}

/// Decides the gate for the commit the app syncs.
fn decide_at(app: &Application, commit: &str) -> Gate {
    let s = &app.status;
    if let Some(why) = superseded(s, commit) {
        return Gate::Superseded(why);
    }
    if app.operation.is_some() {
        return Gate::Waiting("a sync operation was requested and has not started".into());
    }
    let health = s.health.status.as_str();
    let mut ours = false;
    if let Some(op) = &s.operation_state {
        ours = op.sync_result.as_ref().is_some_and(|r| r.at(commit));
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
    } else if s.reconciled_at.is_none() {
        return Gate::Waiting("Argo CD has not reconciled the app yet".into());
    }
    let deployed = match (s.sync.at(commit), ours) {
        (true, true) => format!("synced {commit}"),
        // A commit that changes nothing the app renders: no operation, compared at it.
        (true, false) => format!("Synced at {commit} (nothing to sync for it)"),
        // A busy monorepo: a later commit compared the app Synced without an operation, so
        // the live state is still what the sync of the commit applied.
        (false, true) if s.sync.status == "Synced" => format!(
            "synced {commit}, which still runs at the later revision {}",
            s.sync.shown()
        ),
        (false, _) => {
            return Gate::Waiting(format!(
                "it is {} at revision {}, not {commit}",
                or_unknown(&s.sync.status),
                s.sync.shown()
            ));
        }
    };
    if s.sync.status != "Synced" {
        return Gate::Waiting(format!("it is {} at {commit}", or_unknown(&s.sync.status)));
    }
    match health {
        "Healthy" => Gate::Passed(format!("{deployed}: Synced and Healthy")),
        "Missing" => Gate::Refused(format!("it is Synced at {commit} but {health}")),
        other => Gate::Unhealthy {
            health: or_unknown(other).to_string(),
            why: format!("it is Synced at {commit}, health {}", or_unknown(other)),
        },
    }
}

impl Gate {
    /// The same decision, its reason prefixed with `how` (how the commit was found).
    fn explained(self, how: &str) -> Gate {
        let explain = |why: String| format!("{how}; {why}");
        match self {
            Gate::Passed(why) => Gate::Passed(explain(why)),
            Gate::Waiting(why) => Gate::Waiting(explain(why)),
            Gate::Refused(why) => Gate::Refused(explain(why)),
            Gate::Superseded(why) => Gate::Superseded(explain(why)),
            Gate::Unsupported(why) => Gate::Unsupported(explain(why)),
            Gate::Unhealthy { health, why } => Gate::Unhealthy {
                health,
                why: explain(why),
            },
        }
    }
}

/// A later sync replaced the commit: a successful sync of it is in `status.history`, and the
/// last operation (which started after that one ended) is for another revision.
fn superseded(s: &Status, commit: &str) -> Option<String> {
    let op = s.operation_state.as_ref()?;
    let later = op.sync_result.as_ref()?;
    if later.at(commit) || !s.history.iter().any(|h| h.at(commit)) {
        return None;
    }
    let how = match op.phase.as_str() {
        "Succeeded" => "synced".to_string(),
        "Failed" | "Error" if op.finished_at.is_some() => format!("ran a sync ({}) of", op.phase),
        _ => "is syncing".to_string(),
    };
    Some(format!(
        "superseded: Argo CD deployed {commit}, then {how} revision {}",
        later.shown()
    ))
}

/// True when the recorded revision `recorded` is `commit` (which may be abbreviated).
fn names(recorded: &str, commit: &str) -> bool {
    !recorded.is_empty()
        && recorded
            .get(..commit.len())
            .is_some_and(|r| r.eq_ignore_ascii_case(commit))
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

mod follower;
mod hydrator;
#[cfg(test)]
pub(super) use follower::DEGRADED_GRACE;
pub(super) use follower::Follower;

#[cfg(test)]
mod tests;
