//! Run-end notifications: webhooks from the server configuration (`notifications:`), posted in
//! the background when a run ends, as phasegate's JSON or a Slack-compatible body. A receiver
//! that fails or hangs never fails nor delays a run: each post has a timeout and a few retries,
//! and the result is logged and counted. URLs come only from the server's configuration (never
//! from a spec or an event); a webhook URL often is a secret, so only its host is ever logged.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::{history::RunRecord, metrics::Metrics, web::shown_repo};

/// Posts per notification: one, then retries with a doubling pause (a receiver restarting).
const ATTEMPTS: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// A receiver that accepts the connection and never answers is given up on after this.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Posts in flight at most (each ends within its attempts' timeouts, about half a minute): a
/// receiver that hangs while runs keep ending holds this many, and the next are dropped,
/// logged and counted, instead of piling up tasks and memory.
pub(crate) const MAX_POSTS_IN_FLIGHT: usize = 32;

/// A notification that cannot be configured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotifyError {
    #[error("notifications[{0}].url must be an http:// or https:// URL")]
    Url(usize),
    #[error("notifications[{index}].outcomes: unknown outcome {outcome:?}")]
    Outcome { index: usize, outcome: String },
}

/// The body's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// phasegate's own JSON (the run, its outcome and versions).
    #[default]
    Json,
    /// `{"text": "…"}`, as Slack's incoming webhooks (and Mattermost, Teams' adapters) take.
    Slack,
}

/// One webhook of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationConfig {
    pub url: String,
    /// Outcomes that are posted (`promoted`, `tests-failed`, `error`, …); all when empty.
    #[serde(default)]
    pub outcomes: Vec<String>,
    #[serde(default)]
    pub format: Format,
}

const OUTCOMES: [&str; 7] = [
    "promoted",
    "already-promoted",
    "superseded",
    "dry-run",
    "accepted",
    "tests-failed",
    "error",
];

/// Checks the webhooks of a configuration.
pub(crate) fn validate(targets: &[NotificationConfig]) -> Result<(), NotifyError> {
    for (index, t) in targets.iter().enumerate() {
        match url::Url::parse(&t.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(NotifyError::Url(index)),
        }
        if let Some(outcome) = t.outcomes.iter().find(|o| !OUTCOMES.contains(&o.as_str())) {
            return Err(NotifyError::Outcome {
                index,
                outcome: outcome.clone(),
            });
        }
    }
    Ok(())
}

/// The run-end webhooks and the one HTTP client that posts to them, built by `app`.
pub(crate) struct Notifier {
    targets: Vec<NotificationConfig>,
    http: reqwest::Client,
}

impl Notifier {
    /// The notifier of `targets` (checked at start-up by [`validate`]); none when there is no
    /// webhook, or (said in a warning) when no HTTP client can be built.
    pub(crate) fn new(targets: &[NotificationConfig]) -> Option<Notifier> {
        if targets.is_empty() {
            return None;
        }
        match reqwest::Client::builder().timeout(POST_TIMEOUT).build() {
            Ok(http) => Some(Notifier {
                targets: targets.to_vec(),
                http,
            }),
            Err(e) => {
                warn!(error = %e, "notifications are off: no HTTP client");
                None
            }
        }
    }

    /// Posts every run end of `ended` to the matching webhooks until the channel closes.
    pub(crate) async fn deliver_all(
        self,
        mut ended: tokio::sync::broadcast::Receiver<RunRecord>,
        metrics: Arc<Metrics>,
    ) {
        let Notifier {
            targets,
            http: client,
        } = self;
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_POSTS_IN_FLIGHT));
        loop {
            let run = match ended.recv().await {
                Ok(run) => run,
                Err(RecvError::Lagged(missed)) => {
                    warn!(
                        missed,
                        "run-end notifications skipped: too many runs ended at once"
                    );
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let outcome = run.outcome();
            for target in targets.iter() {
                if target.outcomes.is_empty() || target.outcomes.contains(&outcome) {
                    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                        warn!(
                            run = %run.id,
                            "notification dropped: {MAX_POSTS_IN_FLIGHT} posts are still in flight"
                        );
                        metrics.notification_dropped();
                        continue;
                    };
                    let body = body(&run, target.format);
                    let (client, metrics, url) =
                        (client.clone(), metrics.clone(), target.url.clone());
                    tokio::spawn(async move {
                        post(&client, &url, &body, &metrics).await;
                        drop(permit);
                    });
                }
            }
        }
    }
}

async fn post(client: &reqwest::Client, url: &str, body: &Value, metrics: &Metrics) {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=ATTEMPTS {
        let failure = match client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                debug!(host, attempt, "notification delivered");
                metrics.notified(true);
                return;
            }
            Ok(r) => format!("answered {}", r.status()),
            // Without the URL: it may carry a token.
            Err(e) => e.without_url().to_string(),
        };
        if attempt == ATTEMPTS {
            warn!(host, attempt, failure, "notification failed; giving up");
            metrics.notified(false);
            return;
        }
        warn!(host, attempt, failure, "notification failed; retrying");
        metrics.notification_retried();
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

/// The body posted for `run`: run data only (the repository without any userinfo).
pub(crate) fn body(run: &RunRecord, format: Format) -> Value {
    let report = run.report.as_ref();
    let (version, previous) = (run.version(), run.previous());
    let commit = report.and_then(|r| r.commit.clone());
    let outcome = run.outcome();
    match format {
        Format::Json => json!({
            "run": run.id,
            "outcome": outcome,
            "repo": shown_repo(&run.repo),
            "branch": run.branch,
            "path": run.path,
            "source": {"phase": run.source_phase, "commit": run.source_commit},
            "target": {"phase": run.target_phase},
            "version": version,
            "previous": previous,
            "commit": commit,
            "error": run.error,
            "startedUnixMs": run.started_unix_ms,
            "durationMs": report.map(|r| r.duration_ms),
        }),
        Format::Slack => {
            let what = match (version, previous) {
                (Some(v), Some(p)) => format!(" {p} → {v}"),
                (Some(v), None) => format!(" {v}"),
                _ => String::new(),
            };
            let mut text = format!(
                "phasegate: *{outcome}*{what} {} → {} in {} ({}), run {}",
                run.source_phase,
                run.target_phase,
                shown_repo(&run.repo),
                run.path.replace("{phase}", &run.target_phase),
                run.id
            );
            if let Some(e) = &run.error {
                text.push_str(&format!(": {e}"));
            }
            json!({"text": slack_escape(&text)})
        }
    }
}

/// Slack reads `<…>` as links and mentions and `&` as entities: escape all three.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_url_that_is_not_http_and_an_unknown_outcome() {
        let target = |url: &str, outcome: &str| NotificationConfig {
            url: url.into(),
            outcomes: vec![outcome.into()],
            format: Format::Json,
        };
        assert!(validate(&[target("https://hooks.example/x", "promoted")]).is_ok());
        let err = validate(&[target("file:///etc/passwd", "promoted")]).expect_err("file");
        assert!(err.to_string().contains("notifications[0].url"), "{err}");
        let err = validate(&[target("https://h/x", "promotd")]).expect_err("typo");
        assert!(err.to_string().contains("promotd"), "{err}");
    }

    #[test]
    fn slack_text_cannot_inject_links_or_mentions() {
        assert_eq!(
            slack_escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
    }
}
