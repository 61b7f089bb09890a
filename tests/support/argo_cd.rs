//! Plays Argo CD's application controller on the fake API server: an Application object (built
//! from the upstream-shaped fixture `tests/fixtures/argocd/application-synced.yaml`) moves
//! through the states a real sync writes — operation requested, running, finished
//! (Succeeded/Failed/Error), then reconciled with a fresh sync status and health — each
//! `status` field where Argo CD writes it (`operationState.phase/finishedAt/syncResult`,
//! `sync.status/revision(s)`, `health.status`, `reconciledAt`), and a successful sync appended
//! to `status.history` before its operation is marked finished, as `persistRevisionHistory`
//! (`controller/state.go`, called from `SyncAppState`) does.
//!
//! Does not model: the resource tree, hooks, retries, the source hydrator,
//! `revisionHistoryLimit` (the history is never truncated).

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
