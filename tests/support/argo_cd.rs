//! Plays Argo CD's application controller on the fake API server: an Application object (built
//! from the upstream-shaped fixture `tests/fixtures/argocd/application-synced.yaml`) moves
//! through the states a real sync writes — operation requested, running, finished
//! (Succeeded/Failed/Error), then reconciled with a fresh sync status and health — each
//! `status` field where Argo CD writes it (`operationState.phase/finishedAt/syncResult`,
//! `sync.status/revision(s)`, `health.status`, `reconciledAt`), and a successful sync appended
//! to `status.history` before its operation is marked finished, as `persistRevisionHistory`
//! (`controller/state.go`, called from `SyncAppState`) does.
//!
//! With [`ArgoApp::hydrated`], the app has a `spec.sourceHydrator` (Argo CD 3.x) and the
//! hydrator's steps are played as `controller/hydrator/hydrator.go` writes them to
//! `status.sourceHydrator`: `currentOperation` `Hydrating` without a `drySHA`, then `Hydrated`
//! with `drySHA`/`hydratedSHA` and `lastSuccessfulOperation`, or `Failed` with its message; a dry
//! commit without changes for the app only moves `lastComparedDryRevision`. The app then syncs
//! the hydrated commit.
//!
//! Does not model: the resource tree and per-resource health (the app's health is written
//! directly, e.g. `Degraded` then `Healthy` for an HPA without metrics after a rollout), hooks,
//! retries, `revisionHistoryLimit` (the history is never truncated), the hydrator's git pushes
//! (hydrated commits are made-up ids), its retry after a failure, the tool that merges a
//! `hydrateTo` branch.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::fake_kube::FakeKube;

const API: &str = "/apis/argoproj.io/v1alpha1";
const FIXTURE: &str = include_str!("../fixtures/argocd/application-synced.yaml");

/// One Application, written to the fake as Argo CD's controller would.
pub(crate) struct ArgoApp<'a> {
    kube: &'a FakeKube,
    namespace: String,
    object: Value,
    clock: u64,
    /// Multi-source: revisions are recorded as `[chart version, revision]`.
    multi_source: bool,
}

impl<'a> ArgoApp<'a> {
    /// The Application `namespace/name`, deployed at `revision`, Synced and Healthy.
    pub(crate) fn deployed(
        kube: &'a FakeKube,
        namespace: &str,
        name: &str,
        revision: &str,
    ) -> Self {
        let mut object: Value = serde_yaml_ng::from_str(FIXTURE).expect("fixture");
        object["metadata"] = json!({"name": name, "namespace": namespace});
        let mut app = ArgoApp {
            kube,
            namespace: namespace.into(),
            object,
            clock: 0,
            multi_source: false,
        };
        app.sync(revision, "Succeeded", "successfully synced (all tasks run)");
        app.reconcile("Synced", "Healthy");
        app
    }

    /// Records revisions per source, as for an app with a chart and a `$values` repository.
    pub(crate) fn multi_source(mut self) -> Self {
        self.multi_source = true;
        self
    }

    /// Gives the app a source hydrator: its dry source is the gitops repository's test overlay,
    /// the hydrated manifests go to `environments/test`, which the app syncs.
    pub(crate) fn hydrated(mut self) -> Self {
        let spec = &mut self.object["spec"];
        spec.as_object_mut().expect("object").remove("source");
        spec["sourceHydrator"] = json!({
            "drySource": {"repoURL": "https://github.com/my-org/gitops.git",
                          "path": "argo-projects/petstore/manifests/overlays/test",
                          "targetRevision": "main"},
            "syncSource": {"targetBranch": "environments/test", "path": "petstore-test"},
        });
        self.write();
        self
    }

    /// Hydrates to a staging branch (`hydrateTo`) that another tool merges into the synced one.
    pub(crate) fn hydrated_to(mut self, staging: &str) -> Self {
        self.object["spec"]["sourceHydrator"]["hydrateTo"] = json!({"targetBranch": staging});
        self.write();
        self
    }

    /// The hydrator starts on the dry source's new head: `Hydrating`, the dry commit not yet
    /// resolved (`markAppsHydrating`).
    pub(crate) fn start_hydrating(&mut self) {
        let started = self.now();
        let spec = self.object["spec"]["sourceHydrator"].clone();
        self.object["status"]["sourceHydrator"]["currentOperation"] = json!({
            "startedAt": started, "phase": "Hydrating", "message": "", "sourceHydrator": spec,
        });
        self.write();
    }

    /// The hydrator renders `dry` and pushes the result: returns the hydrated commit, which
    /// the app then syncs.
    pub(crate) fn hydrate(&mut self, dry: &str) -> String {
        self.start_hydrating();
        let hydrated = hydrated_commit(dry);
        let finished = self.now();
        let status = &mut self.object["status"]["sourceHydrator"];
        let op = &mut status["currentOperation"];
        op["phase"] = json!("Hydrated");
        op["finishedAt"] = json!(finished);
        op["drySHA"] = json!(dry);
        op["hydratedSHA"] = json!(hydrated);
        status["lastSuccessfulOperation"] = json!({
            "drySHA": dry, "hydratedSHA": hydrated, "sourceHydrator": op["sourceHydrator"],
        });
        status["lastComparedDryRevision"] = json!(dry);
        self.write();
        hydrated
    }

    /// The hydration of `dry` fails (`setAppHydratorError`): nothing is pushed or synced.
    pub(crate) fn hydration_fails(&mut self, dry: &str, error: &str) {
        self.start_hydrating();
        let finished = self.now();
        let status = &mut self.object["status"]["sourceHydrator"];
        let op = &mut status["currentOperation"];
        op["phase"] = json!("Failed");
        op["finishedAt"] = json!(finished);
        op["drySHA"] = json!(dry);
        op["message"] = json!(format!("Failed to hydrate: {error}"));
        status["lastComparedDryRevision"] = json!(dry);
        self.write();
    }

    /// A dry commit that changes nothing under the app's dry path: the hydrator compares it
    /// and does not hydrate (`appNeedsHydration`: "hydration not needed").
    pub(crate) fn compare_dry(&mut self, dry: &str) {
        self.object["status"]["sourceHydrator"]["lastComparedDryRevision"] = json!(dry);
        self.write();
    }

    fn now(&mut self) -> String {
        self.clock += 7;
        let at = UNIX_EPOCH + Duration::from_secs(1_780_000_000 + self.clock);
        humantime::format_rfc3339_seconds(at).to_string()
    }

    fn revision(&self, status: &mut Value, revision: &str) {
        if self.multi_source {
            status.as_object_mut().expect("object").remove("revision");
            status["revisions"] = json!(["1.4.2", revision]);
        } else {
            status["revision"] = json!(revision);
        }
    }

    /// A sync of `revision` starts: the operation is Running, the old pods are still what runs.
    pub(crate) fn start_sync(&mut self, revision: &str) {
        let started = self.now();
        let mut op = self.object["status"]["operationState"].clone();
        op["phase"] = json!("Running");
        op["message"] = json!("one or more tasks are running");
        op["startedAt"] = json!(started);
        op.as_object_mut().expect("object").remove("finishedAt");
        self.revision(&mut op["syncResult"], revision);
        self.revision(&mut op["operation"]["sync"], revision);
        self.object["status"]["operationState"] = op;
        let mut sync = self.object["status"]["sync"].clone();
        sync["status"] = json!("OutOfSync");
        self.revision(&mut sync, revision);
        self.object["status"]["sync"] = sync;
        self.write();
    }

    /// The sync of `revision` ends in `phase` (`Succeeded`, `Failed`, `Error`) — not yet
    /// reconciled: health and sync status are still those computed before. A successful one is
    /// first recorded in `status.history` (only successful syncs are).
    pub(crate) fn sync(&mut self, revision: &str, phase: &str, message: &str) {
        self.start_sync(revision);
        if phase == "Succeeded" {
            self.record_history(revision);
        }
        let finished = self.now();
        let op = &mut self.object["status"]["operationState"];
        op["phase"] = json!(phase);
        op["message"] = json!(message);
        op["finishedAt"] = json!(finished);
        self.write();
    }

    fn record_history(&mut self, revision: &str) {
        let deployed = self.now();
        let op = &self.object["status"]["operationState"];
        let mut entry = json!({
            "deployedAt": deployed,
            "deployStartedAt": op["startedAt"],
            "initiatedBy": op["operation"]["initiatedBy"],
        });
        self.revision(&mut entry, revision);
        let history = &mut self.object["status"]["history"];
        if !history.is_array() {
            *history = json!([]);
        }
        let entries = history.as_array_mut().expect("array");
        let id = entries
            .last()
            .and_then(|e| e["id"].as_i64())
            .map_or(0, |id| id + 1);
        entry["id"] = json!(id);
        entries.push(entry);
        self.write();
    }

    /// The controller reconciles: a fresh comparison and health, `reconciledAt` now.
    pub(crate) fn reconcile(&mut self, sync_status: &str, health: &str) {
        let now = self.now();
        let status = &mut self.object["status"];
        status["sync"]["status"] = json!(sync_status);
        status["health"]["status"] = json!(health);
        status["reconciledAt"] = json!(now);
        self.write();
    }

    /// A commit that changes nothing the app renders: no sync, the comparison moves to it.
    pub(crate) fn compare_at(&mut self, revision: &str) {
        let mut sync = self.object["status"]["sync"].clone();
        self.revision(&mut sync, revision);
        self.object["status"]["sync"] = sync;
        self.reconcile("Synced", "Healthy");
    }

    fn write(&self) {
        self.kube
            .put(API, &self.namespace, "applications", self.object.clone());
    }
}

/// A made-up id for the commit the hydrator pushes for `dry`: a different id of the same shape.
pub(crate) fn hydrated_commit(dry: &str) -> String {
    dry.chars()
        .rev()
        .map(|c| match c {
            '0' => 'f',
            c => c,
        })
        .collect()
}
