//! What a run is, as the history keeps it: one JSON line per run in `history.jsonl`, the same
//! shape the run history service and the console answer (docs/console.md).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{diff::Edit, outcome::RunReport};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Queued,
    Testing,
    Promoting,
    Done,
}

impl Stage {
    /// The stage's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Testing => "testing",
            Stage::Promoting => "promoting",
            Stage::Done => "done",
        }
    }
}

/// One run as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub id: String,
    /// The idempotency key, so duplicates of a past success are answered after a restart.
    pub key: String,
    pub repo: String,
    pub branch: String,
    pub path: String,
    /// The values keys promoted (the console reads the phases' versions with the first).
    #[serde(default)]
    pub keys: Vec<String>,
    pub source_phase: String,
    pub target_phase: String,
    pub source_commit: String,
    pub stage: Stage,
    /// The version under test and the target's before it, once read (before testing): shown
    /// while the run goes on, and kept when it ends in an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Execute's answer of a finished run.
    pub report: Option<RunReport>,
    /// The error of a failed run.
    pub error: Option<String>,
    pub started_unix_ms: i64,
    /// The changed lines of the promotion (or dry run) commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<Edit>,
    /// When each stage was entered, in order (the console's timeline).
    #[serde(default)]
    pub timeline: Vec<StageMark>,
    /// The source phase's health as the Argo CD gate (`argocdApp`) decided it: `Healthy` when
    /// it passed, `not ready: <why>` when it refused or timed out; none without a gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

/// A stage a run entered, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageMark {
    pub stage: Stage,
    pub at_unix_ms: i64,
}

impl RunRecord {
    /// The version the run tested or promoted, once read.
    pub fn version(&self) -> Option<&str> {
        let answered = self.report.as_ref().and_then(|r| r.version.as_deref());
        answered.or(self.version.as_deref())
    }

    /// The target's version before the run, once read.
    pub fn previous(&self) -> Option<&str> {
        let answered = self.report.as_ref().and_then(|r| r.previous.as_deref());
        answered.or(self.previous.as_deref())
    }

    /// The outcome name, `error`, or empty while running.
    pub fn outcome(&self) -> String {
        match (&self.report, &self.error) {
            (Some(r), _) => r.outcome.as_str().into(),
            (None, Some(_)) => "error".into(),
            (None, None) => String::new(),
        }
    }
}

/// Milliseconds since the Unix epoch, for records.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
