//! How long each transient problem of a test Job has lasted: a pod's (keyed by the pod's name)
//! or its creation's ([`CREATION`]). A problem ends the run once it has lasted the tolerance; a
//! different problem of the same key starts its clock again, the same one keeps it.

use std::{collections::BTreeMap, time::Duration};

use tokio::time::Instant;

/// The key of the pod creation's problem (a `FailedCreate` the controller retries): no pod
/// name looks like it.
pub(super) const CREATION: &str = "(pod creation)";

/// The clocks of the problems seen, one per key.
pub(super) struct Clocks {
    tolerance: Duration,
    running: BTreeMap<String, Clock>,
}

struct Clock {
    reason: String,
    detail: String,
    since: Instant,
}

impl Clocks {
    /// No problem yet; each will be waited out for `tolerance`.
    pub(super) fn new(tolerance: Duration) -> Clocks {
        Clocks {
            tolerance,
            running: BTreeMap::new(),
        }
    }

    /// `key` has the transient problem `reason` (`detail` says it as the cluster does).
    pub(super) fn saw(&mut self, key: &str, reason: String, detail: String) {
        match self.running.get_mut(key) {
            Some(clock) if clock.reason == reason => clock.detail = detail,
            _ => {
                let since = Instant::now();
                let clock = Clock {
                    reason,
                    detail,
                    since,
                };
                self.running.insert(key.to_string(), clock);
            }
        }
    }

    /// `key` has no problem (any more).
    pub(super) fn stop(&mut self, key: &str) {
        self.running.remove(key);
    }

    /// When the oldest problem will have lasted the tolerance.
    pub(super) fn due(&self) -> Option<Instant> {
        self.running
            .values()
            .map(|c| c.since + self.tolerance)
            .min()
    }

    /// The oldest problem, as the run's end once it is due: `detail (for 5m)`.
    pub(super) fn oldest(&self) -> Option<String> {
        let clock = self.running.values().min_by_key(|c| c.since)?;
        let tolerance = humantime::format_duration(self.tolerance);
        Some(format!("{} (for {tolerance})", clock.detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(300);

    #[test]
    fn the_same_problem_keeps_its_clock_and_another_starts_it_again() {
        let mut clocks = Clocks::new(TOLERANCE);
        clocks.saw("pod-a", "ErrImagePull".into(), "ErrImagePull: one".into());
        let first = clocks.due().expect("due");
        clocks.saw("pod-a", "ErrImagePull".into(), "ErrImagePull: two".into());
        assert_eq!(clocks.due(), Some(first));
        assert_eq!(
            clocks.oldest().as_deref(),
            Some("ErrImagePull: two (for 5m)")
        );
        clocks.saw("pod-a", "Unschedulable".into(), "Unschedulable: x".into());
        assert!(clocks.due() >= Some(first));
        assert_eq!(
            clocks.oldest().as_deref(),
            Some("Unschedulable: x (for 5m)")
        );
        clocks.stop("pod-a");
        assert_eq!(clocks.due(), None);
    }
}
