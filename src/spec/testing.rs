//! How the source phase is tested: [`TestPlan`], one variant per runner, built from the
//! resource's `test` settings with the runner's defaults.

use std::{
    collections::BTreeMap,
    path::{Component, Path, PathBuf},
    time::Duration,
};

use regex::Regex;
use serde_json::Value;

use super::{
    RunnerKind, SpecError, TestSpec, body_pattern, bounds,
    plan::duration,
    resource::default_args,
    target::{check_target, check_target_words},
    test_env::check_env_name,
};

/// The built-in HTTP check: GET `url`, expect a status and a body pattern, retried.
#[derive(Debug, Clone)]
pub struct HttpTest {
    pub url: String,
    /// The deployment's URL as given (`url` is it joined with the path).
    pub target: String,
    pub expect_status: u16,
    /// `testExpectBody`, compiled within [`body_pattern`]'s bounds.
    pub expect_body: Option<Regex>,
    pub attempts: u32,
    pub interval: Duration,
}

/// A local process: `program args…` with `{target}` expanded, killed with its children on timeout.
#[derive(Debug, Clone)]
pub struct CommandTest {
    pub argv: Vec<String>,
    /// The directory the command starts in (`testWorkdir`): absolute, without `.` or `..`.
    /// The server's own working directory otherwise.
    pub workdir: Option<PathBuf>,
    /// The canonical path of `argv[0]`, set when the policy admits the plan: what was matched
    /// is what runs (`argv[0]` stays the process name, for multi-call binaries).
    pub resolved: Option<PathBuf>,
    pub target: String,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
}

/// A Kubernetes Job running the test image.
#[derive(Debug, Clone)]
pub struct JobTest {
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub target: String,
    pub namespace: Option<String>,
    pub service_account: Option<String>,
    pub resources: Option<Value>,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
    /// The spec's container securityContext, merged over Pod Security "restricted"
    /// ([`super::container_context`]).
    pub security_context: Option<Value>,
    /// The spec's pod securityContext, merged over Pod Security "restricted"
    /// ([`super::pod_context`]).
    pub pod_security_context: Option<Value>,
}

/// How the source phase is tested.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one plan per run, never in a collection: boxing the Job variant would buy nothing"
)]
pub enum TestPlan {
    /// Skip tests (asked for explicitly).
    None,
    /// The built-in HTTP check.
    Http(HttpTest),
    /// A local command.
    Command(CommandTest),
    /// A Kubernetes Job.
    Job(JobTest),
}

impl CommandTest {
    /// The program as it will be started: a relative path with a `/` (`./launchTests.sh`)
    /// belongs to the working directory, so it is joined to it (what the policy matches is
    /// what runs); a bare name is looked up on `PATH`.
    pub fn program(&self) -> PathBuf {
        let program = Path::new(&self.argv[0]);
        match &self.workdir {
            Some(dir) if program.is_relative() && self.argv[0].contains('/') => {
                let mut joined = dir.clone();
                for part in program.components() {
                    match part {
                        Component::ParentDir => {
                            joined.pop();
                        }
                        Component::Normal(p) => joined.push(p),
                        Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                    }
                }
                joined
            }
            _ => program.to_path_buf(),
        }
    }
}

impl TestPlan {
    /// The test target, for the runners that test a deployment.
    pub fn target(&self) -> Option<&str> {
        match self {
            TestPlan::Http(h) => Some(&h.target),
            TestPlan::Command(c) => Some(&c.target),
            TestPlan::Job(j) => Some(&j.target),
            TestPlan::None => None,
        }
    }

    /// The runner's name as it appears in the outcome JSON.
    pub fn runner(&self) -> &'static str {
        match self {
            TestPlan::None => "none",
            TestPlan::Http(_) => "http",
            TestPlan::Command(_) => "command",
            TestPlan::Job(_) => "job",
        }
    }
}

/// `testWorkdir`: an absolute directory without `.` or `..`, so what it names is what it looks
/// like (no relative base the server would have to choose, no escape by `..`).
fn workdir(dir: &str) -> Result<PathBuf, SpecError> {
    const FIELD: &str = "test.workdir";
    let path = Path::new(dir);
    if !path.is_absolute() {
        return Err(SpecError::invalid(FIELD, "must be an absolute path"));
    }
    let plain = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !plain || dir.contains('\0') || dir.split('/').skip(1).any(|s| s == ".") {
        return Err(SpecError::invalid(
            FIELD,
            "must not contain '.' or '..' segments",
        ));
    }
    Ok(path.to_path_buf())
}

fn expand(args: &[String], target: &str) -> Vec<String> {
    args.iter().map(|a| a.replace("{target}", target)).collect()
}

/// The plan of a test spec: the spec's own (inline) or a profile's with the event's target.
pub(super) fn test_plan(t: &TestSpec) -> Result<TestPlan, SpecError> {
    let timeout = || duration("test.timeout", t.timeout.as_deref().unwrap_or("10m"));
    let env = t.env.clone().unwrap_or_default();
    bounds::env(&env)?;
    env.keys().try_for_each(|name| check_env_name(name))?;
    bounds::words("test.command", &t.command)?;
    bounds::words("test.args", t.args.as_deref().unwrap_or_default())?;
    // A bad duration is a mistake whatever the runner: say so rather than ignore it.
    for (field, value) in [("test.timeout", &t.timeout), ("test.interval", &t.interval)] {
        if let Some(v) = value {
            duration(field, v)?;
        }
    }
    if t.workdir.is_some() && t.runner != Some(RunnerKind::Command) {
        return Err(SpecError::invalid(
            "test.workdir",
            "is for the command runner only (a Job starts in its image's WORKDIR)",
        ));
    }
    if !t.target.is_empty() {
        check_target(&t.target)?;
    }
    Ok(match t.runner {
        Some(RunnerKind::None) => TestPlan::None,
        Some(RunnerKind::Http) => {
            let path = t.path.as_deref().unwrap_or("/");
            if !path.starts_with('/') {
                return Err(SpecError::invalid("test.path", "must start with '/'"));
            }
            let status = t.expect_status.unwrap_or(200);
            if !(100..=599).contains(&status) {
                return Err(SpecError::invalid(
                    "test.expectStatus",
                    "must be an HTTP status (100-599)",
                ));
            }
            let expect_body = t
                .expect_body
                .as_deref()
                .map(body_pattern::compile)
                .transpose()?;
            let attempts = t.attempts.unwrap_or(3);
            if !(1..=100).contains(&attempts) {
                return Err(SpecError::invalid("test.attempts", "must be 1 to 100"));
            }
            TestPlan::Http(HttpTest {
                url: format!("{}{path}", t.target.trim_end_matches('/')),
                target: t.target.clone(),
                expect_status: status,
                expect_body,
                attempts,
                interval: duration("test.interval", t.interval.as_deref().unwrap_or("500ms"))?,
            })
        }
        Some(RunnerKind::Command) => {
            if t.command.is_empty() {
                return Err(SpecError::invalid(
                    "test.command",
                    "is required for the command runner",
                ));
            }
            let mut argv = t.command.clone();
            argv.extend(t.args.clone().unwrap_or_else(default_args));
            check_target_words(Some(&argv[0]), &argv[1..])?;
            TestPlan::Command(CommandTest {
                argv: expand(&argv, &t.target),
                workdir: t.workdir.as_deref().map(workdir).transpose()?,
                resolved: None,
                target: t.target.clone(),
                env,
                timeout: timeout()?,
            })
        }
        Some(RunnerKind::Job) => {
            let image = t
                .image
                .clone()
                .filter(|i| !i.trim().is_empty())
                .ok_or_else(|| {
                    SpecError::invalid("test.image", "is required for the job runner")
                })?;
            let args = t.args.clone().unwrap_or_else(default_args);
            match t.command.split_first() {
                Some((program, words)) => {
                    check_target_words(Some(program), &[words, &args[..]].concat())?;
                }
                None => check_target_words(None, &args)?,
            }
            TestPlan::Job(JobTest {
                image,
                command: expand(&t.command, &t.target),
                args: expand(&args, &t.target),
                target: t.target.clone(),
                namespace: t.namespace.clone(),
                service_account: t.service_account.clone(),
                resources: t.resources.clone(),
                env,
                timeout: timeout()?,
                security_context: t.security_context.clone(),
                pod_security_context: t.pod_security_context.clone(),
            })
        }
        None => return Err(SpecError::invalid("test.runner", "is not set")),
    })
}
