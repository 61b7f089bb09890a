//! The run ledger: idempotency (docs/contract.md §5). Runs with the same key are one run: a
//! duplicate that arrives while it is in flight waits for the same result; a duplicate after
//! success gets the recorded result, until a later run promotes into the same values file and
//! phase: then the recorded answers of that place are stale (a re-sync of a version a rollback
//! replaced would be told "promoted" again), and a duplicate is judged anew. Failures are
//! forgotten, so a retry tests again.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::{
    Error,
    outcome::{Outcome, RunReport, Shared},
};

/// Successful runs remembered for duplicates; older ones are forgotten first.
const REMEMBERED_RUNS: usize = 10_000;

/// What a caller gets for a key.
pub(super) enum Claim {
    /// Nobody runs this key: the caller runs it and must [`Lease::finish`].
    Lead(Lease),
    /// A run is in flight: wait on it with [`wait`].
    Join {
        /// The id of the run in flight.
        run: String,
        rx: watch::Receiver<Option<Shared>>,
    },
    /// A run of this key already succeeded.
    Done(Arc<RunReport>),
    /// Nobody runs this key and no new run may start (the queue is full): nothing was
    /// recorded.
    Refused,
}

#[derive(Default)]
struct Inner {
    running: HashMap<String, (String, watch::Receiver<Option<Shared>>)>,
    done: HashMap<String, Arc<RunReport>>,
    order: VecDeque<String>,
}

/// In-memory ledger of runs in flight and recent successes.
#[derive(Default, Clone)]
pub(super) struct RunLedger {
    inner: Arc<Mutex<Inner>>,
}

/// The right and duty to run a key and publish its result. It holds the run's place in the
/// pipeline (its admission permit) until the result is published.
pub(super) struct Lease {
    key: String,
    tx: Option<watch::Sender<Option<Shared>>>,
    ledger: RunLedger,
    _admitted: OwnedSemaphorePermit,
}

impl RunLedger {
    /// Claims `key`: lead a new run (with id `run`) if `admit` gives it a place, join the one
    /// in flight, or get the recorded success. `admit` is asked only for a new run, under the
    /// ledger's lock, so a duplicate never takes a place and a refused run leaves no trace.
    pub(super) fn claim(
        &self,
        key: &str,
        run: &str,
        admit: impl FnOnce() -> Option<OwnedSemaphorePermit>,
    ) -> Claim {
        let mut inner = self.lock();
        if let Some(report) = inner.done.get(key) {
            return Claim::Done(report.clone());
        }
        if let Some((run, rx)) = inner.running.get(key) {
            return Claim::Join {
                run: run.clone(),
                rx: rx.clone(),
            };
        }
        let Some(admitted) = admit() else {
            return Claim::Refused;
        };
        let (tx, rx) = watch::channel(None);
        inner.running.insert(key.to_string(), (run.to_string(), rx));
        Claim::Lead(Lease {
            key: key.to_string(),
            tx: Some(tx),
            ledger: self.clone(),
            _admitted: admitted,
        })
    }

    /// Remembers a past success (from the persisted history) so its duplicates are answered.
    pub(super) fn remember(&self, key: &str, report: Arc<RunReport>) {
        self.settle(key, &Ok(report));
    }

    /// Records a finished run: remembered only when it succeeded. A promotion makes the
    /// remembered answers of its place stale: they are forgotten.
    fn settle(&self, key: &str, result: &Shared) {
        let mut inner = self.lock();
        inner.running.remove(key);
        if let Ok(report) = result
            && report.succeeded()
        {
            if report.outcome == Outcome::Promoted {
                let here = place(key);
                let Inner { done, order, .. } = &mut *inner;
                done.retain(|other, _| place(other) != here);
                order.retain(|other| done.contains_key(other));
            }
            inner.done.insert(key.to_string(), report.clone());
            inner.order.push_back(key.to_string());
            while inner.order.len() > REMEMBERED_RUNS {
                if let Some(old) = inner.order.pop_front() {
                    inner.done.remove(&old);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Lease {
    /// A receiver of this run's result, for the caller that leads it.
    pub(super) fn subscribe(&self) -> watch::Receiver<Option<Shared>> {
        self.tx
            .as_ref()
            .expect("a live lease has a sender")
            .subscribe()
    }

    /// Publishes the result to every waiting duplicate and records it.
    pub(super) fn finish(mut self, result: Shared) {
        self.ledger.settle(&self.key, &result);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(result));
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            // The run ended without a result (it panicked): free the key and tell the waiters.
            let result: Shared = Err(Arc::new(Error::Internal(
                "run ended without a result".into(),
            )));
            self.ledger.settle(&self.key, &result);
            tx.send_replace(Some(result));
        }
    }
}

/// Where a run of `key` writes: its repository, branch, values file and target phase (fields
/// 0, 1, 2 and 6 of the pipeline's `idempotency_key`; none of them can hold a newline).
pub(super) fn place(key: &str) -> [&str; 4] {
    let mut fields = key.split('\n');
    let mut next = || fields.next().unwrap_or_default();
    let (repo, branch, path) = (next(), next(), next());
    let (_keys, _commit, _source) = (next(), next(), next());
    [repo, branch, path, next()]
}

/// Waits for the result of a run in flight.
pub(super) async fn wait(mut rx: watch::Receiver<Option<Shared>>) -> Shared {
    match rx.wait_for(Option::is_some).await {
        Ok(value) => value.clone().expect("waited for Some"),
        Err(_) => Err(Arc::new(Error::Internal(
            "run ended without a result".into(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    /// An admission that always has a place.
    fn free() -> Option<OwnedSemaphorePermit> {
        Arc::new(Semaphore::new(1)).try_acquire_owned().ok()
    }

    fn report(outcome: Outcome) -> Shared {
        Ok(Arc::new(RunReport {
            run: "r".into(),
            outcome,
            version: None,
            previous: None,
            commit: None,
            signature: None,
            source: Default::default(),
            target: Default::default(),
            test: None,
            pull_request: None,
            duration_ms: 0,
        }))
    }

    #[tokio::test]
    async fn duplicates_in_flight_join_and_get_the_same_answer() {
        let ledger = RunLedger::default();
        let Claim::Lead(lease) = ledger.claim("k", "r1", free) else {
            panic!("first claim leads")
        };
        let Claim::Join { rx, .. } = ledger.claim("k", "r2", free) else {
            panic!("second claim joins")
        };
        lease.finish(report(Outcome::Promoted));
        let joined = wait(rx).await.expect("success");
        assert_eq!(joined.outcome, Outcome::Promoted);
        assert!(matches!(ledger.claim("k", "r1", free), Claim::Done(_)));
    }

    #[test]
    fn forgets_failures_so_a_retry_runs_again() {
        let ledger = RunLedger::default();
        let Claim::Lead(lease) = ledger.claim("k", "r1", free) else {
            panic!("leads")
        };
        lease.finish(report(Outcome::TestsFailed));
        assert!(matches!(ledger.claim("k", "r1", free), Claim::Lead(_)));
    }

    /// A key as the pipeline writes it, of `commit` into prod's values file of `path`.
    fn key(path: &str, commit: &str, rollback: bool) -> String {
        format!(
            "https://git.example/gitops\nmain\n{path}\nimage.tag\n{commit}\ntest\nprod\nfalse\n{rollback}\nfalse"
        )
    }

    fn settle(ledger: &RunLedger, key: &str, outcome: Outcome) {
        let Claim::Lead(lease) = ledger.claim(key, "r", free) else {
            panic!("leads")
        };
        lease.finish(report(outcome));
    }

    #[test]
    fn a_promotion_makes_the_recorded_answers_of_its_file_and_phase_stale() {
        let ledger = RunLedger::default();
        let (two, three) = (key("a.yaml", "c2", false), key("a.yaml", "c3", false));
        let elsewhere = key("b.yaml", "c2", false);
        settle(&ledger, &two, Outcome::Promoted);
        settle(&ledger, &elsewhere, Outcome::Promoted);
        settle(&ledger, &three, Outcome::Promoted);
        // 3.0 landed after 2.0: 2.0's "promoted" is no longer true of a.yaml.
        assert!(matches!(ledger.claim(&two, "r", free), Claim::Lead(_)));
        assert!(matches!(
            ledger.claim(&elsewhere, "r", free),
            Claim::Done(_)
        ));

        // A rollback to 2.0's commit: 3.0's recorded "promoted" goes too.
        let ledger = RunLedger::default();
        settle(&ledger, &three, Outcome::Promoted);
        settle(&ledger, &key("a.yaml", "c2", true), Outcome::Promoted);
        assert!(matches!(ledger.claim(&three, "r", free), Claim::Lead(_)));

        // What pushes nothing changes nothing.
        let ledger = RunLedger::default();
        settle(&ledger, &three, Outcome::Promoted);
        settle(&ledger, &two, Outcome::Superseded);
        settle(&ledger, &key("a.yaml", "c4", false), Outcome::DryRun);
        assert!(matches!(ledger.claim(&three, "r", free), Claim::Done(_)));
    }

    #[tokio::test]
    async fn a_lease_dropped_without_result_frees_the_key() {
        let ledger = RunLedger::default();
        let Claim::Lead(lease) = ledger.claim("k", "r1", free) else {
            panic!("leads")
        };
        let Claim::Join { rx, .. } = ledger.claim("k", "r2", free) else {
            panic!("joins")
        };
        drop(lease);
        assert!(wait(rx).await.is_err());
        assert!(matches!(ledger.claim("k", "r1", free), Claim::Lead(_)));
    }

    #[test]
    fn a_full_pipeline_refuses_a_new_key_but_lets_duplicates_join() {
        let places = Arc::new(Semaphore::new(1));
        let admit = || places.clone().try_acquire_owned().ok();
        let ledger = RunLedger::default();
        let Claim::Lead(lease) = ledger.claim("k", "r1", admit) else {
            panic!("the one place leads")
        };
        assert!(matches!(ledger.claim("k", "r2", admit), Claim::Join { .. }));
        assert!(matches!(ledger.claim("other", "r3", admit), Claim::Refused));
        assert!(
            ledger.lock().running.len() == 1,
            "a refused run leaves no trace"
        );
        lease.finish(report(Outcome::TestsFailed));
        assert!(matches!(ledger.claim("other", "r4", admit), Claim::Lead(_)));
    }
}
