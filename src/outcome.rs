//! Execute's answer (docs/contract.md §6) and ApplyPolicy's verdict on it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    Error,
    git::SignatureInfo,
    runner::TestReport,
    spec::{SourceRef, SpecError, TargetRef},
};

/// A run's result as every caller of it shares it: its answer, or why it has none.
pub(crate) type Shared = Result<Arc<RunReport>, Arc<Error>>;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Promoted,
    AlreadyPromoted,
    Superseded,
    DryRun,
    Accepted,
    TestsFailed,
    /// Pull-request mode: a pull request with the promotion was opened.
    PrOpened,
    /// Pull-request mode: the open pull request now carries this promotion.
    PrUpdated,
}

impl Outcome {
    /// The outcome's name, as in the JSON and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Promoted => "promoted",
            Outcome::AlreadyPromoted => "already-promoted",
            Outcome::Superseded => "superseded",
            Outcome::DryRun => "dry-run",
            Outcome::Accepted => "accepted",
            Outcome::TestsFailed => "tests-failed",
            Outcome::PrOpened => "pr-opened",
            Outcome::PrUpdated => "pr-updated",
        }
    }
}

/// A pull request, as Execute's answer names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestRef {
    pub url: String,
    pub number: u64,
}

/// Execute's answer JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub run: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The key that signed the commit, when signing is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureInfo>,
    #[serde(default)]
    pub source: SourceRef,
    #[serde(default)]
    pub target: TargetRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestReport>,
    /// Pull-request mode: the pull request that carries (or already carried) the promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestRef>,
    #[serde(default)]
    pub duration_ms: u64,
}

impl RunReport {
    /// The JSON bytes Execute answers.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a RunReport always serialises")
    }

    /// True for the outcomes the CLI and ApplyPolicy treat as success.
    pub fn succeeded(&self) -> bool {
        self.outcome != Outcome::TestsFailed
    }

    /// One line saying what happened, for ApplyPolicy's message and the logs.
    pub fn summary(&self) -> String {
        let (source, target) = (&self.source.phase, &self.target.phase);
        let version = self.version.as_deref().unwrap_or("?");
        let previous = self.previous.as_deref().unwrap_or("?");
        match self.outcome {
            Outcome::Promoted => format!(
                "promoted {version} from {source} to {target} (was {previous}) in commit {}{}",
                self.commit.as_deref().unwrap_or("?"),
                self.signature
                    .as_ref()
                    .map(|s| format!(", signed with {} key {}", s.format, s.fingerprint))
                    .unwrap_or_default()
            ),
            Outcome::AlreadyPromoted => match &self.pull_request {
                Some(pr) => format!(
                    "{version} already proposed to {target} in pull request #{} ({}): nothing to do",
                    pr.number, pr.url
                ),
                None => format!("{target} already at {version}: nothing to do"),
            },
            Outcome::PrOpened | Outcome::PrUpdated => {
                let (number, url) = self
                    .pull_request
                    .as_ref()
                    .map_or((0, "?"), |pr| (pr.number, pr.url.as_str()));
                let did = match self.outcome {
                    Outcome::PrOpened => "opened",
                    _ => "updated",
                };
                format!(
                    "pull request #{number} {did} to promote {version} from {source} to {target} (was {previous}): {url}"
                )
            }
            Outcome::Superseded => format!(
                "{version} from {source} superseded: a newer source commit was already promoted to {target}"
            ),
            Outcome::DryRun => {
                format!(
                    "dry run: would promote {version} from {source} to {target} (was {previous})"
                )
            }
            Outcome::Accepted => format!(
                "run {} accepted: promotion from {source} to {target} goes on",
                self.run
            ),
            Outcome::TestsFailed => {
                let last = self
                    .test
                    .as_ref()
                    .and_then(|t| t.log.lines().rev().find(|l| !l.trim().is_empty()))
                    .unwrap_or("no output");
                format!("tests of {source} failed, nothing promoted to {target}: {last}")
            }
        }
    }
}

/// ApplyPolicy: `Ok(message)` for every outcome but `tests-failed`, which is `Err(reason)`
/// (the adapter turns it into `FAILED_PRECONDITION`: the Sensor ignores `success=false`).
pub(crate) fn verdict(execute_answer: &[u8]) -> Result<Verdict, SpecError> {
    let report: RunReport =
        serde_json::from_slice(execute_answer).map_err(|e| SpecError::BadAnswer(e.to_string()))?;
    let line = report.summary();
    Ok(if report.succeeded() {
        Verdict::Pass(line)
    } else {
        Verdict::Fail(line)
    })
}

/// ApplyPolicy's judgement of a run's answer, with its one-line summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The trigger succeeded (every outcome but `tests-failed`).
    Pass(String),
    /// The trigger failed: the Sensor retries it, or reports it failed.
    Fail(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_only_tests_failed() {
        for (outcome, ok) in [
            ("promoted", true),
            ("already-promoted", true),
            ("superseded", true),
            ("dry-run", true),
            ("accepted", true),
            ("tests-failed", false),
            ("pr-opened", true),
            ("pr-updated", true),
        ] {
            let json = format!(r#"{{"run":"r1","outcome":"{outcome}"}}"#);
            let v = verdict(json.as_bytes()).expect("parses");
            assert_eq!(matches!(v, Verdict::Pass(_)), ok, "{outcome}");
            let (Verdict::Pass(line) | Verdict::Fail(line)) = v;
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_execute_answer() {
        assert!(verdict(b"nope").is_err());
        assert!(verdict(br#"{"outcome":"exploded"}"#).is_err());
    }
}
