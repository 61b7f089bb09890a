//! The gate over a sequence of observations: `Degraded` refuses only once it persists or is
//! seen as a transition, as `argocd app wait` (`waitOnApplicationStatus`) fails only on a
//! health that turned `Degraded` from anything but `Unknown` or `Degraded` while it watched.
//! A state first seen `Degraded` is often on its way to `Healthy`: an HPA reports `Degraded`
//! until metrics-server has a sample of the new pods, about a minute after a rollout.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Gate, decide};

/// How long a `Degraded` that was never seen arriving is waited out: twice the minute an HPA
/// stays `Degraded` after a rollout, short against the default `argocdTimeout` of 5m.
pub(in crate::cluster) const DEGRADED_GRACE: Duration = Duration::from_secs(120);

/// Follows one Application for one commit, remembering the healths it counted (those of the
/// app deployed at the commit and reconciled after the operation).
#[derive(Debug, Default)]
pub(in crate::cluster) struct Follower {
    /// The health of the last counted observation, `None` after one that did not count.
    before: Option<String>,
    /// Since when the counted observations have been `Degraded`.
    degraded_since: Option<Instant>,
}

impl Follower {
    /// Decides the gate for this observation of `app`, seen at `now`.
    pub(in crate::cluster) fn observe(&mut self, app: &Value, commit: &str, now: Instant) -> Gate {
        let (health, why) = match decide(app, commit) {
            Gate::Unhealthy { health, why } => (health, why),
            other => {
                self.before = None;
                self.degraded_since = None;
                return other;
            }
        };
        let before = self.before.replace(health.clone());
        if health != "Degraded" {
            self.degraded_since = None;
            return Gate::Waiting(why);
        }
        if let Some(before) = before.filter(|b| b != "Unknown" && b != "Degraded") {
            return Gate::Refused(format!(
                "it is Synced at {commit} and its health turned from {before} to Degraded"
            ));
        }
        let since = *self.degraded_since.get_or_insert(now);
        let lasted = now.saturating_duration_since(since);
        if lasted >= DEGRADED_GRACE {
            return Gate::Refused(format!(
                "it is Synced at {commit} but has been Degraded for {}",
                humantime::format_duration(whole_seconds(lasted))
            ));
        }
        Gate::Waiting(format!(
            "it is Synced at {commit} but Degraded (for {} so far; refused once it lasts {})",
            humantime::format_duration(whole_seconds(lasted)),
            humantime::format_duration(DEGRADED_GRACE)
        ))
    }
}

impl Follower {
    /// When a `Degraded` being waited out is to be judged again, whether or not the app
    /// changes by then.
    pub(in crate::cluster) fn recheck_at(&self) -> Option<Instant> {
        self.degraded_since.map(|since| since + DEGRADED_GRACE)
    }
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
