//! The run ledger: idempotency (docs/contract.md §5). Runs with the same key are one run: a
//! duplicate that arrives while it is in flight waits for the same result; a duplicate after
//! success gets the recorded result. Failures are forgotten, so a retry tests again.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::{
    Error,
    outcome::{RunReport, Shared},
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

    /// Records a finished run: remembered only when it succeeded.
    fn settle(&self, key: &str, result: &Shared) {
        let mut inner = self.lock();
        inner.running.remove(key);
        if let Ok(report) = result
            && report.succeeded()
        {
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
    use crate::outcome::Outcome;
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
