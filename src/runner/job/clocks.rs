//! The clocks of a test Job's wait. How long each transient problem has lasted ([`Clocks`]): a
//! pod's (keyed by the pod's name) or its creation's ([`CREATION`]); a problem ends the run once
//! it has lasted the tolerance, a different problem of the same key starts its clock again, the
//! same one keeps it. And how long the Job has been queued ([`Queue`]), which pushes back
//! phasegate's own deadline.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::batch::v1::Job;
use tokio::time::Instant;

use super::verdict::job_queued;
use crate::runner::LogSink;

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

/// How long a Job may stay queued at a stretch: a queue that never admits it (no LocalQueue,
/// no quota, a Job suspended by hand) would otherwise hold the run, and its slot, for ever.
pub(super) const QUEUE_LIMIT: Duration = Duration::from_secs(3600);

/// A Job's time in a queue (`spec.suspend`, as Kueue holds it until admitted) and phasegate's
/// deadline for the Job, which does not run while queued: the Job controller too starts
/// `activeDeadlineSeconds` only when the Job resumes.
pub(super) struct Queue {
    deadline: Instant,
    /// Since when the Job is queued, and the controller's words for it.
    since: Option<(Instant, String)>,
    /// The time queued so far, with the last words for it.
    waited: Option<(Duration, String)>,
}

impl Queue {
    /// Not queued; the deadline `timeout` from now.
    pub(super) fn new(timeout: Duration) -> Queue {
        Queue {
            deadline: Instant::now() + timeout,
            since: None,
            waited: None,
        }
    }

    /// The Job as the cluster shows it: queued (`Some` words) or not; the queue's start and
    /// end are said in the run's log.
    pub(super) fn saw(&mut self, job: &Job, sink: &LogSink, what: &str) {
        match (job_queued(job), self.since.take()) {
            (Some(why), None) => {
                sink(&format!(
                    "{what} is queued ({why}): waiting for the queue to admit it; the time \
                     queued does not count against testTimeout"
                ));
                self.since = Some((Instant::now(), why));
            }
            (Some(why), Some((since, _))) => self.since = Some((since, why)),
            (None, Some((since, why))) => {
                let queued = since.elapsed();
                self.deadline += queued;
                let total = self.waited.take().map_or(Duration::ZERO, |(d, _)| d) + queued;
                sink(&format!(
                    "{what} left the queue after {}",
                    humantime::format_duration(whole_seconds(queued))
                ));
                self.waited = Some((total, why));
            }
            (None, None) => {}
        }
    }

    /// When phasegate stops waiting: for the cluster to end the Job, or, while it is queued,
    /// for the queue to admit it ([`QUEUE_LIMIT`] after it was queued).
    pub(super) fn deadline(&self) -> Instant {
        match &self.since {
            Some((since, _)) => *since + QUEUE_LIMIT,
            None => self.deadline,
        }
    }

    /// Whether the Job is queued now.
    pub(super) fn queued(&self) -> bool {
        self.since.is_some()
    }

    /// The time queued, in whole seconds, and the controller's words for it; `None` if the Job
    /// was never queued.
    pub(super) fn waited(&self) -> Option<(Duration, String)> {
        let now = self
            .since
            .as_ref()
            .map(|(since, why)| (since.elapsed(), why.clone()));
        let (mut total, why) = match (&self.waited, now) {
            (Some((d, _)), Some((q, why))) => (*d + q, why),
            (Some((d, why)), None) => (*d, why.clone()),
            (None, Some((q, why))) => (q, why),
            (None, None) => return None,
        };
        total = whole_seconds(total);
        Some((total, why))
    }
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
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

    #[tokio::test(start_paused = true)]
    async fn a_queued_job_waits_for_the_queue_at_most_an_hour_and_its_queue_time_pushes_the_deadline_back()
     {
        let suspended: Job = serde_yaml_ng::from_str(include_str!(
            "../../../tests/fixtures/kubernetes/job-suspended.yaml"
        ))
        .expect("fixture parses as a Job");
        let mut resumed = suspended.clone();
        if let Some(spec) = resumed.spec.as_mut() {
            spec.suspend = Some(false);
        }
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = lines.clone();
        let sink: LogSink = std::sync::Arc::new(move |l: &str| {
            kept.lock().expect("lines").push(l.to_string());
        });
        let mut queue = Queue::new(Duration::from_secs(630));
        let deadline = queue.deadline();

        queue.saw(&suspended, &sink, "Job `j`");
        assert!(queue.queued());
        assert_eq!(queue.deadline(), Instant::now() + QUEUE_LIMIT);
        tokio::time::advance(Duration::from_secs(60)).await;
        queue.saw(&resumed, &sink, "Job `j`");

        assert!(!queue.queued());
        assert_eq!(queue.deadline(), deadline + Duration::from_secs(60));
        let (waited, why) = queue.waited().expect("was queued");
        assert_eq!(waited, Duration::from_secs(60));
        assert_eq!(why, "Suspended: JobSuspended: Job suspended");
        let lines = lines.lock().expect("lines");
        assert!(
            lines[0].starts_with("Job `j` is queued (Suspended"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("Job `j` left the queue after"),
            "{lines:?}"
        );
    }
}
