//! Hydrated apps (Argo CD 3.x `spec.sourceHydrator`): the event names the dry commit (the one
//! phasegate promotes), while the app syncs the commit the hydrator pushed with the rendered
//! manifests. The dry commit is mapped through `status.sourceHydrator` as
//! `argocd app wait --hydrated` reads it (`checkAppWaitConditions`: the current operation
//! `Hydrated` for the same dry commit as the last successful one), with the phases
//! `controller/hydrator/hydrator.go` writes.

use serde::Deserialize;
use serde_json::Value;

use super::{Gate, names, nullable};

/// `spec.sourceHydrator`, as far as the gate reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct SourceHydrator {
    /// Set when the hydrator pushes to a staging branch that another tool (such as GitOps
    /// Promoter) merges into the synced one.
    #[serde(deserialize_with = "nullable")]
    hydrate_to: Option<Value>,
}

/// `status.sourceHydrator`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct HydratorStatus {
    #[serde(deserialize_with = "nullable")]
    current_operation: Option<HydrateOperation>,
    #[serde(deserialize_with = "nullable")]
    last_successful_operation: Option<HydrateOperation>,
    /// The dry commit last compared, even when it changed nothing for the app and was not
    /// hydrated.
    #[serde(deserialize_with = "nullable")]
    last_compared_dry_revision: String,
}

/// A hydrate operation (`HydrateOperation`, `SuccessfulHydrateOperation`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct HydrateOperation {
    /// `Hydrating`, `Failed` or `Hydrated`; empty in a `lastSuccessfulOperation`.
    #[serde(deserialize_with = "nullable")]
    phase: String,
    #[serde(deserialize_with = "nullable")]
    message: String,
    /// Empty while `Hydrating`: the dry source is resolved when the operation ends.
    #[serde(rename = "drySHA", deserialize_with = "nullable")]
    dry_sha: String,
    #[serde(rename = "hydratedSHA", deserialize_with = "nullable")]
    hydrated_sha: String,
}

/// The commit the app syncs for the dry commit `dry` (and why), or what the gate makes of the
/// hydrator's state when there is none yet.
pub(super) fn deployed_commit(
    spec: &SourceHydrator,
    status: &HydratorStatus,
    dry: &str,
) -> Result<(String, String), Gate> {
    if spec.hydrate_to.is_some() {
        return Err(Gate::Unsupported(
            "its spec.sourceHydrator.hydrateTo sends the hydrated manifests to a staging branch \
             that another tool merges into the synced one, so the synced commit cannot be \
             traced back to a dry commit; gate on an app without hydrateTo"
                .into(),
        ));
    }
    let Some(current) = &status.current_operation else {
        return Err(Gate::Waiting("the source hydrator has not run yet".into()));
    };
    let last = status.last_successful_operation.as_ref();
    if std::iter::once(current)
        .chain(last)
        .any(|op| names(&op.hydrated_sha, dry))
    {
        return Err(Gate::Unsupported(format!(
            "{dry} is the commit the source hydrator pushed, not a dry commit: the event must \
             name the dry commit (status.sourceHydrator.lastSuccessfulOperation.drySHA, as \
             deploy/examples/argocd-notifications-cm.yaml sends it)"
        )));
    }
    match current.phase.as_str() {
        "Hydrated" if names(&current.dry_sha, dry) => {
            return hydrated(&current.hydrated_sha, dry, "was hydrated as");
        }
        "Failed" if names(&current.dry_sha, dry) => {
            return Err(Gate::Refused(format!(
                "the source hydrator failed for {dry}: {}",
                current.message.trim()
            )));
        }
        _ => {}
    }
    if let Some(last) = last.filter(|l| names(&l.dry_sha, dry)) {
        // A later dry commit is being hydrated (or failed): the hydrated commit of this one
        // is still what the app syncs until a later one succeeds.
        return hydrated(&last.hydrated_sha, dry, "was hydrated as");
    }
    if current.phase == "Hydrated" && names(&status.last_compared_dry_revision, dry) {
        // Nothing to hydrate for this app (`appNeedsHydration`: "hydration not needed"): the
        // last hydrated commit still holds its manifests.
        if let Some(last) = last {
            return hydrated(
                &last.hydrated_sha,
                dry,
                "changes nothing the hydrator renders for it, still",
            );
        }
    }
    Err(Gate::Waiting(match current.phase.as_str() {
        "Hydrating" => format!("the source hydrator is hydrating (not yet {dry})"),
        "" => format!("the source hydrator has not hydrated {dry}"),
        phase => format!(
            "the source hydrator has not hydrated {dry}: its last operation is {phase} for {}{}",
            if current.dry_sha.is_empty() {
                "an unresolved dry commit"
            } else {
                &current.dry_sha
            },
            if current.message.trim().is_empty() {
                String::new()
            } else {
                format!(" ({})", current.message.trim())
            }
        ),
    }))
}

fn hydrated(hydrated: &str, dry: &str, how: &str) -> Result<(String, String), Gate> {
    if hydrated.is_empty() {
        return Err(Gate::Waiting(format!(
            "the source hydrator recorded no hydrated commit for {dry}"
        )));
    }
    Ok((hydrated.to_string(), format!("{dry} {how} {hydrated}")))
}
