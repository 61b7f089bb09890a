//! Test runners: one enum ([`TestPlan`]) dispatches, one file per runner, each the same shape:
//! `async fn run(&Test, &TestContext) -> Result<Tested, RunnerError>`. A failing test is a
//! report with `passed: false`; an error means the test could not be run at all. The runners
//! that read an output stream (command, Job) read it through [`lines`]: lines of bounded
//! length, decoded lossily.

mod command;
mod http;
mod job;
mod lines;
mod privileges;
mod reach;

use std::{collections::BTreeMap, time::Instant};

use serde::{Deserialize, Serialize};

pub(crate) use http::client as http_client;
pub(crate) use job::{job_name, run_key};
pub use privileges::RunAs;

use crate::{
    cluster::{Cluster, ClusterError},
    kind::ErrorKind,
    spec::TestPlan,
};

/// The most of a test's output kept in the outcome (docs/contract.md §6).
pub(crate) const LOG_TAIL_BYTES: usize = 4096;

/// What a test run found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TestReport {
    pub runner: String,
    pub passed: bool,
    pub attempts: u32,
    pub duration_ms: u64,
    /// The last lines of the output, at most [`LOG_TAIL_BYTES`].
    pub log: String,
}

/// A test that could not be run (as opposed to one that failed).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// `testWorkdir` names no directory on this server.
    #[error("testWorkdir {0:?} is not a directory on this server")]
    Workdir(String),
    /// The Job built from the spec is not what Kubernetes accepts (a malformed
    /// `testResources`, `testSecurityContext` or `testPodSecurityContext`).
    #[error("{0}")]
    InvalidJob(String),
    /// The job runner was asked for, but this server has no Kubernetes client.
    #[error("the job runner needs Kubernetes, which is not configured on this server")]
    KubernetesNotConfigured,
    /// The test command could not be started.
    #[error("test command {program:?} could not be started: {reason}")]
    Spawn { program: String, reason: String },
    /// The Kubernetes API failed the Job runner.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl RunnerError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RunnerError::KubernetesNotConfigured
            | RunnerError::Spawn { .. }
            | RunnerError::Workdir(_) => ErrorKind::FailedPrecondition,
            RunnerError::Cluster(e) => e.kind(),
            RunnerError::InvalidJob(_) => ErrorKind::InvalidArgument,
        }
    }
}

/// What one runner found: the shape every runner answers in.
struct Tested {
    passed: bool,
    /// Attempts made (the HTTP runner retries; the others run once).
    attempts: u32,
    /// The whole output; the report keeps its tail.
    log: String,
}

/// Receives each line of test output as it happens (for watchers and the server log).
pub(crate) type LogSink = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// What start-up builds for the runners, once: the HTTP runner's client and the command
/// runner's user.
#[derive(Clone)]
pub(crate) struct RunnerSettings {
    /// The HTTP runner's client, trusting the configured CA bundles ([`http_client`]).
    pub(crate) http: reqwest::Client,
    /// The user and group test commands run as (`test.runAsUser`); phasegate's otherwise.
    pub(crate) run_as: Option<RunAs>,
}

/// What a runner needs besides its test: where output goes, and for Jobs the cluster.
pub(crate) struct TestContext {
    pub log: LogSink,
    /// The HTTP runner's client, trusting the configured CA bundles ([`http_client`]).
    pub http: reqwest::Client,
    /// The user and group test commands run as ([`RunnerSettings::run_as`]).
    pub run_as: Option<RunAs>,
    pub cluster: Option<Cluster>,
    /// The Job's name, derived from the run's idempotency key ([`job_name`]).
    pub job_name: String,
    /// The digest of the run's idempotency key ([`run_key`]): proves a Job is this run's.
    pub run_key: String,
    /// Labels of the Job and its pod.
    pub labels: BTreeMap<String, String>,
}

impl TestContext {
    fn sink(&self, line: &str) {
        (self.log)(line);
    }

    /// A context whose output goes nowhere, without a cluster: for the runners' own tests.
    #[cfg(test)]
    fn quiet() -> TestContext {
        TestContext {
            log: std::sync::Arc::new(|_: &str| {}),
            http: reqwest::Client::new(),
            run_as: None,
            cluster: None,
            job_name: String::new(),
            run_key: String::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// Runs the planned test of the source phase.
pub(crate) async fn run(plan: &TestPlan, ctx: &TestContext) -> Result<TestReport, RunnerError> {
    let started = Instant::now();
    let Tested {
        passed,
        attempts,
        log,
    } = match plan {
        TestPlan::None => {
            ctx.sink("tests skipped (test: none)");
            Tested {
                passed: true,
                attempts: 0,
                log: "tests skipped (test: none)\n".to_string(),
            }
        }
        TestPlan::Http(test) => http::run(test, ctx).await?,
        TestPlan::Command(test) => command::run(test, ctx).await?,
        TestPlan::Job(test) => job::run(test, ctx).await?,
    };
    Ok(TestReport {
        runner: plan.runner().to_string(),
        passed,
        attempts,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        log: tail(&log, LOG_TAIL_BYTES),
    })
}

/// The last `max` bytes of `s`, cut at a line start when one is near (within a quarter of
/// `max`), never inside a character. Otherwise the first line kept is the end of a long one,
/// marked `…`: its end (a cut line's `[cut: N bytes]`) is what a reader looks for.
pub(crate) fn tail(s: &str, max: usize) -> String {
    const MARK: &str = "…";
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max + MARK.len();
    while !s.is_char_boundary(start) {
        start += 1;
    }
    let cut = &s[start..];
    match cut.find('\n') {
        Some(nl) if nl + 1 < cut.len() && nl < max / 4 => cut[nl + 1..].to_string(),
        _ => format!("{MARK}{cut}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_whole_lines_within_the_limit() {
        let log: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        let t = tail(&log, LOG_TAIL_BYTES);
        assert!(t.len() <= LOG_TAIL_BYTES);
        assert!(t.starts_with("line "));
        assert!(t.ends_with("line 1999\n"));
    }

    #[test]
    fn keeps_the_end_of_a_long_line_marked() {
        let log = format!("{} … [cut: 9 bytes]\nexited: 0\n", "x".repeat(16 * 1024));
        let t = tail(&log, LOG_TAIL_BYTES);
        assert!(t.len() <= LOG_TAIL_BYTES);
        assert!(t.starts_with("…xxx"), "{t}");
        assert!(t.ends_with("x … [cut: 9 bytes]\nexited: 0\n"), "{t}");
    }

    #[test]
    fn never_cuts_inside_a_character() {
        let log = "é".repeat(3000);
        assert!(tail(&log, 4095).len() <= 4095);
    }
}
