//! The gate's decision on Application objects shaped as Argo CD writes them
//! (`tests/fixtures/argocd/`, each saying where it came from), and on the states a sync passes
//! through on its way there, as kube-runtime's `wait.rs` tests its conditions.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Follower, Gate, decide, follower::DEGRADED_GRACE};

const SYNCED: &str = include_str!("../../../tests/fixtures/argocd/application-synced.yaml");
const MULTI: &str = include_str!("../../../tests/fixtures/argocd/application-multi-source.yaml");
const COMMIT: &str = "ea8759964626a583667a2bfd08f334ec2070040a";
const NEXT: &str = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c";

fn app(yaml: &str) -> Value {
    serde_yaml_ng::from_str(yaml).expect("fixture is YAML")
}

fn with(mut app: Value, change: impl FnOnce(&mut Value)) -> Value {
    change(&mut app["status"]);
    app
}

fn refused(gate: Gate) -> String {
    match gate {
        Gate::Refused(reason) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn unsupported(gate: Gate) -> String {
    match gate {
        Gate::Unsupported(reason) => reason,
        other => panic!("expected the app or event to be unsupported, got {other:?}"),
    }
}

#[test]
fn a_succeeded_sync_of_the_commit_reconciled_synced_and_healthy_passes() {
    assert!(matches!(decide(&app(SYNCED), COMMIT), Gate::Passed(_)));
    assert!(matches!(
        decide(&app(SYNCED), &COMMIT[..12]),
        Gate::Passed(_)
    ));
}

#[test]
fn a_failed_sync_that_leaves_the_old_pods_healthy_is_refused_at_once() {
    // Argo CD after `kubectl apply` failed: the old pods still run and are Healthy, the app is
    // OutOfSync at the new commit, the operation Failed for it.
    let failed = with(app(SYNCED), |s| {
        s["operationState"]["phase"] = json!("Failed");
        s["operationState"]["message"] =
            json!("one or more objects failed to apply, reason: Deployment.apps is invalid");
        s["sync"]["status"] = json!("OutOfSync");
    });
    let reason = refused(decide(&failed, COMMIT));
    assert!(reason.contains("ended Failed"), "{reason}");
    assert!(reason.contains("Deployment.apps is invalid"), "{reason}");
    let errored = with(app(SYNCED), |s| {
        s["operationState"]["phase"] = json!("Error")
    });
    assert!(refused(decide(&errored, COMMIT)).contains("ended Error"));
}

#[test]
fn a_running_or_requested_sync_never_passes() {
    let running = with(app(SYNCED), |s| {
        s["operationState"]["phase"] = json!("Running");
        s["operationState"]["finishedAt"] = Value::Null;
    });
    assert!(matches!(decide(&running, COMMIT), Gate::Waiting(w) if w.contains("Running")));
    let terminating = with(app(SYNCED), |s| {
        s["operationState"]["phase"] = json!("Terminating")
    });
    assert!(matches!(decide(&terminating, COMMIT), Gate::Waiting(_)));
    let mut requested = app(SYNCED);
    requested["operation"] = json!({"sync": {"revision": COMMIT}});
    assert!(matches!(decide(&requested, COMMIT), Gate::Waiting(_)));
}

#[test]
fn health_counts_only_once_reconciled_after_the_sync_finished() {
    // The Healthy still shown is the previous state's until the controller looks again.
    let stale = with(app(SYNCED), |s| {
        s["reconciledAt"] = json!("2024-03-05T07:33:03Z")
    });
    assert!(matches!(decide(&stale, COMMIT), Gate::Waiting(w) if w.contains("reconciled")));
    let never = with(app(SYNCED), |s| s["reconciledAt"] = Value::Null);
    assert!(matches!(decide(&never, COMMIT), Gate::Waiting(_)));
}

#[test]
fn an_older_revision_waits_and_a_progressing_rollout_waits() {
    assert!(matches!(decide(&app(SYNCED), NEXT), Gate::Waiting(w) if w.contains(COMMIT)));
    let progressing = with(app(SYNCED), |s| {
        s["health"]["status"] = json!("Progressing")
    });
    assert!(
        matches!(decide(&progressing, COMMIT), Gate::Unhealthy { health, .. } if health == "Progressing")
    );
}

#[test]
fn missing_at_the_commit_is_refused_at_once() {
    let bad = with(app(SYNCED), |s| s["health"]["status"] = json!("Missing"));
    assert!(refused(decide(&bad, COMMIT)).contains("Missing"));
}

#[test]
fn a_degraded_app_first_seen_degraded_is_waited_out_for_the_grace() {
    // An HPA without metrics of the new pods: Degraded for about a minute, then Healthy.
    let degraded = with(app(SYNCED), |s| s["health"]["status"] = json!("Degraded"));
    let start = Instant::now();
    let mut follower = Follower::default();
    let first = follower.observe(&degraded, COMMIT, start);
    assert!(
        matches!(&first, Gate::Waiting(w) if w.contains("Degraded")),
        "{first:?}"
    );
    assert_eq!(follower.recheck_at(), Some(start + DEGRADED_GRACE));
    let later = follower.observe(&degraded, COMMIT, start + Duration::from_secs(60));
    assert!(matches!(later, Gate::Waiting(_)));
    let healed = follower.observe(&app(SYNCED), COMMIT, start + Duration::from_secs(70));
    assert!(matches!(healed, Gate::Passed(_)));
}

#[test]
fn a_degraded_app_that_stays_degraded_past_the_grace_is_refused() {
    let degraded = with(app(SYNCED), |s| s["health"]["status"] = json!("Degraded"));
    let start = Instant::now();
    let mut follower = Follower::default();
    follower.observe(&degraded, COMMIT, start);
    let reason = refused(follower.observe(&degraded, COMMIT, start + DEGRADED_GRACE));
    assert!(reason.contains("Degraded for 2m"), "{reason}");
}

#[test]
fn a_health_that_turns_degraded_is_refused_at_once_as_argocd_app_wait_does() {
    let health = |h: &str| with(app(SYNCED), |s| s["health"]["status"] = json!(h));
    let now = Instant::now();
    let mut follower = Follower::default();
    assert!(matches!(
        follower.observe(&health("Progressing"), COMMIT, now),
        Gate::Waiting(w) if w.contains("Progressing")
    ));
    let reason = refused(follower.observe(&health("Degraded"), COMMIT, now));
    assert!(reason.contains("from Progressing to Degraded"), "{reason}");
    // From Unknown it is no transition (upstream's rule), nor after a state that did not count
    // (the old state's health, before the controller reconciled after the sync).
    let mut follower = Follower::default();
    follower.observe(&health("Unknown"), COMMIT, now);
    assert!(matches!(
        follower.observe(&health("Degraded"), COMMIT, now),
        Gate::Waiting(_)
    ));
    let mut follower = Follower::default();
    let stale = with(health("Progressing"), |s| {
        s["reconciledAt"] = json!("2024-03-05T07:33:03Z")
    });
    follower.observe(&stale, COMMIT, now);
    assert!(matches!(
        follower.observe(&health("Degraded"), COMMIT, now),
        Gate::Waiting(_)
    ));
}

#[test]
fn degraded_at_an_older_revision_waits() {
    // Degraded at an older revision: the sync of the commit may still heal it.
    let old = with(app(SYNCED), |s| s["health"]["status"] = json!("Degraded"));
    assert!(matches!(decide(&old, NEXT), Gate::Waiting(_)));
}

#[test]
fn a_commit_that_changes_nothing_passes_when_synced_at_it_and_healthy() {
    // No sync happens: the last operation is the previous commit's, the comparison is at NEXT.
    let no_op = with(app(SYNCED), |s| {
        s["sync"]["revision"] = json!(NEXT);
        s["reconciledAt"] = json!("2024-03-05T07:40:00Z");
    });
    assert!(matches!(decide(&no_op, NEXT), Gate::Passed(p) if p.contains("nothing to sync")));
    let out_of_sync = with(no_op.clone(), |s| s["sync"]["status"] = json!("OutOfSync"));
    assert!(matches!(decide(&out_of_sync, NEXT), Gate::Waiting(_)));
}

#[test]
fn a_multi_source_app_is_read_from_its_revisions() {
    let commit = "9f1c2d3e4b5a69788796a5b4c3d2e1f009182736";
    assert!(matches!(decide(&app(MULTI), commit), Gate::Passed(_)));
    let failed = with(app(MULTI), |s| {
        s["operationState"]["phase"] = json!("Failed")
    });
    assert!(refused(decide(&failed, commit)).contains("Failed"));
    assert!(matches!(decide(&app(MULTI), NEXT), Gate::Waiting(_)));
}

#[test]
fn an_application_without_status_waits() {
    let bare = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                      "metadata": {"name": "petstore-test"}});
    assert!(matches!(decide(&bare, COMMIT), Gate::Waiting(_)));
}

#[test]
fn a_later_commit_with_nothing_to_sync_keeps_the_synced_commit_deployed() {
    // A busy monorepo: the comparison moved to NEXT (another app's commit), no operation ran.
    let later = with(app(SYNCED), |s| {
        s["sync"]["revision"] = json!(NEXT);
        s["reconciledAt"] = json!("2024-03-05T07:40:00Z");
    });
    assert!(matches!(decide(&later, COMMIT), Gate::Passed(p) if p.contains(NEXT)));
    // NEXT changes the app: OutOfSync until its own sync runs.
    let changed = with(later.clone(), |s| s["sync"]["status"] = json!("OutOfSync"));
    assert!(matches!(decide(&changed, COMMIT), Gate::Waiting(w) if w.contains("OutOfSync")));
}

#[test]
fn a_later_sync_after_the_commit_was_deployed_supersedes_it() {
    let deployed = json!([{"id": 0, "revision": COMMIT, "deployedAt": "2024-03-05T07:33:04Z"}]);
    let later = with(app(SYNCED), |s| {
        s["history"] = deployed.clone();
        s["operationState"]["syncResult"]["revision"] = json!(NEXT);
        s["operationState"]["phase"] = json!("Running");
        s["operationState"]["finishedAt"] = Value::Null;
    });
    assert!(matches!(decide(&later, COMMIT), Gate::Superseded(w) if w.contains(NEXT)));
    // Never deployed (the last operation is an older commit's): the sync of COMMIT is awaited.
    let older = with(later.clone(), |s| s["history"] = json!([]));
    assert!(matches!(decide(&older, COMMIT), Gate::Waiting(_)));
    // The deployed commit's own sync is never its own successor.
    let own = with(app(SYNCED), |s| s["history"] = deployed.clone());
    assert!(matches!(decide(&own, COMMIT), Gate::Passed(_)));
}

const HYDRATED: &str = include_str!("../../../tests/fixtures/argocd/application-hydrated.yaml");
const DRY: &str = "c0ffee1d2e3f405162738495a6b7c8d9e0f1a2b3";
const HYDRATED_SHA: &str = "5e0a1f2b3c4d5e6f708192a3b4c5d6e7f8091a2b";

fn hydrator(app: &mut Value) -> &mut Value {
    &mut app["status"]["sourceHydrator"]
}

#[test]
fn a_hydrated_app_passes_for_the_dry_commit_of_its_synced_hydrated_commit() {
    let passed = decide(&app(HYDRATED), DRY);
    assert!(
        matches!(&passed, Gate::Passed(p) if p.contains(HYDRATED_SHA)),
        "{passed:?}"
    );
    assert!(matches!(
        decide(&app(HYDRATED), &DRY[..10]),
        Gate::Passed(_)
    ));
    // The hydrated commit itself is not what phasegate promotes: said at once.
    let reason = unsupported(decide(&app(HYDRATED), HYDRATED_SHA));
    assert!(reason.contains("not a dry commit"), "{reason}");
}

#[test]
fn a_dry_commit_being_hydrated_waits_and_a_failed_hydration_of_it_is_refused() {
    let mut hydrating = app(HYDRATED);
    hydrator(&mut hydrating)["currentOperation"] = json!({"phase": "Hydrating", "message": ""});
    assert!(matches!(decide(&hydrating, NEXT), Gate::Waiting(w) if w.contains("hydrating")));
    // The previous dry commit's hydrated commit still runs while a later one is hydrated.
    assert!(matches!(decide(&hydrating, DRY), Gate::Passed(_)));

    let mut failed = app(HYDRATED);
    hydrator(&mut failed)["currentOperation"] = json!({
        "phase": "Failed", "drySHA": NEXT,
        "message": "Failed to hydrate: failed to get manifests: helm template failed"});
    let reason = refused(decide(&failed, NEXT));
    assert!(reason.contains("helm template failed"), "{reason}");
    // Another dry commit's failure: this one is awaited, the failure named.
    let waiting = decide(&failed, COMMIT);
    assert!(
        matches!(&waiting, Gate::Waiting(w) if w.contains("Failed")),
        "{waiting:?}"
    );
}

#[test]
fn a_dry_commit_with_nothing_to_hydrate_for_the_app_keeps_its_hydrated_commit() {
    let mut unchanged = app(HYDRATED);
    hydrator(&mut unchanged)["lastComparedDryRevision"] = json!(NEXT);
    assert!(matches!(decide(&unchanged, NEXT), Gate::Passed(p) if p.contains("nothing")));
    // Not yet compared: waits.
    assert!(matches!(decide(&app(HYDRATED), NEXT), Gate::Waiting(_)));
}

#[test]
fn a_hydrated_app_with_a_staging_branch_is_refused_with_the_reason() {
    let mut staged = app(HYDRATED);
    staged["spec"]["sourceHydrator"]["hydrateTo"] =
        json!({"targetBranch": "environments/test-next"});
    let reason = unsupported(decide(&staged, DRY));
    assert!(reason.contains("hydrateTo"), "{reason}");
}
