//! One run from request to outcome: validate, check policy, claim the idempotency key, then run
//! the stages ([`run`]: access → decided before testing → Argo CD gate → test → promote →
//! propose). Runs are detached tasks: a caller that goes away does not cancel one. Each stage is
//! recorded in the history and measured in the metrics.

mod access;
mod answer;
mod engine;
mod ledger;
mod run;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, warn};

use crate::{
    Error, Result,
    cluster::Cluster,
    credentials::CredentialScopes,
    forge::ForgeSettings,
    git::GitSettings,
    history::History,
    metrics::Metrics,
    outcome::{Outcome, Shared},
    policy::Policy,
    runner::RunnerSettings,
    spec::{Mode, Plan, PromoteVia, Resource, SpecError},
};
use answer::report_of;
use engine::Engine;
use ledger::{Claim, RunLedger};
use run::RunTask;

/// The engine behind the gRPC adapter and the `promote` command.
pub struct Pipeline {
    policy: Policy,
    scopes: CredentialScopes,
    ledger: RunLedger,
    /// Slots of the runs that run (`maxRuns`).
    permits: Arc<Semaphore>,
    /// Places of the runs that run or wait (`maxRuns` + `maxQueuedRuns`): a run that finds
    /// none is refused before anything is spawned or recorded.
    admitted: Arc<Semaphore>,
    max_queued_runs: usize,
    tasks: TaskTracker,
    /// What every run shares: the promoter, the history, the cluster, the forge settings.
    engine: Arc<Engine>,
}

/// What a pipeline is built from: every part of the server that start-up (`app`) builds.
pub struct Parts {
    pub(crate) policy: Policy,
    pub(crate) git: GitSettings,
    pub(crate) cluster: Option<Cluster>,
    pub(crate) forge: ForgeSettings,
    /// The HTTP runner's client (with the configured CA bundles), the command runner's user.
    pub(crate) runners: RunnerSettings,
    pub(crate) history: Arc<History>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) max_runs: usize,
    /// Runs that may wait for a slot beyond `max_runs`.
    pub(crate) max_queued_runs: usize,
}

/// After the grace period, how long the interrupted runs get to record themselves.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

impl Pipeline {
    /// A pipeline over the server's parts: at most `max_runs` runs at once, at most
    /// `max_queued_runs` more waiting (the rest refused), answering duplicates of the successes
    /// in the history.
    pub fn new(parts: Parts) -> Pipeline {
        let ledger = RunLedger::default();
        for (key, report) in parts.history.successes() {
            ledger.remember(&key, Arc::new(report));
        }
        let scopes = parts.git.credentials.clone();
        Pipeline {
            policy: parts.policy,
            ledger,
            permits: Arc::new(Semaphore::new(parts.max_runs.max(1))),
            admitted: Arc::new(Semaphore::new(
                parts.max_runs.max(1).saturating_add(parts.max_queued_runs),
            )),
            max_queued_runs: parts.max_queued_runs,
            tasks: TaskTracker::new(),
            engine: Arc::new(Engine::new(
                parts.git,
                parts.history,
                parts.metrics,
                parts.cluster,
                parts.runners,
                parts.forge,
                scopes.clone(),
            )),
            scopes,
        }
    }

    /// The run history, for the Runs service.
    pub fn history(&self) -> &Arc<History> {
        &self.engine.history
    }

    /// FetchResource: the Sensor's spec YAML to the resource JSON.
    pub fn fetch_resource(&self, spec_yaml: &[u8]) -> Result<Vec<u8>> {
        let resource = Resource::from_spec_yaml(spec_yaml)?;
        self.policy.profiles().check(&resource)?;
        Ok(resource.to_json())
    }

    /// A resource's plan, its `testProfile` looked up in the server's profiles.
    pub fn plan(&self, resource: &Resource) -> std::result::Result<Plan, SpecError> {
        Plan::from_resource(resource, self.policy.profiles())
    }

    /// Execute: resource and payload to a run's answer.
    pub async fn execute(&self, resource: &[u8], payload: &[u8]) -> Shared {
        let plan = Resource::from_execute(resource, payload)
            .and_then(|r| self.plan(&r))
            .map_err(|e| Arc::new(e.into()))?;
        self.submit(plan).await
    }

    /// Runs a validated plan once per idempotency key.
    pub async fn submit(&self, plan: Plan) -> Shared {
        let plan = self
            .policy
            .admit(plan, &self.scopes)
            .map_err(|e| Arc::new(e.into()))?;
        let key = idempotency_key(&plan);
        let id = run_id();
        let metrics = &self.engine.metrics;
        let admit = || self.admitted.clone().try_acquire_owned().ok();
        let (run, waiter) = match self.ledger.claim(&key, &id, admit) {
            Claim::Refused => {
                metrics.refused();
                warn!(
                    queued = self.max_queued_runs,
                    "run refused: the queue is full"
                );
                return Err(Arc::new(Error::QueueFull(self.max_queued_runs)));
            }
            Claim::Done(report) => {
                metrics.duplicate(false);
                return Ok(report);
            }
            Claim::Join { run, rx } => {
                metrics.duplicate(true);
                debug!(run = %run, "duplicate joins the run in flight");
                (run, rx)
            }
            Claim::Lead(lease) => {
                let task = RunTask::new(id.clone(), key, plan.clone(), self.engine.clone());
                let span = info_span!("run", run = %id, repo = %plan.repo, source = %plan.source,
                                      target = %plan.target, commit = %plan.commit);
                let rx = lease.subscribe();
                let permits = self.permits.clone();
                self.tasks.spawn(
                    async move {
                        let result = task.run(permits).await;
                        lease.finish(result);
                    }
                    .instrument(span),
                );
                (id, rx)
            }
        };
        if plan.mode == Mode::Async {
            return Ok(Arc::new(report_of(&plan, run, Outcome::Accepted)));
        }
        ledger::wait(waiter).await
    }

    /// Stops taking runs and waits up to `grace` for the runs in flight; then ends those still
    /// running (their test processes are killed), so each is recorded as interrupted and its
    /// caller gets an answer (`UNAVAILABLE`) instead of a cut connection.
    pub async fn drain(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            return;
        }
        warn!(
            runs = self.tasks.len(),
            "shutdown grace period over: interrupting the runs in flight"
        );
        self.engine.interrupt.cancel();
        if tokio::time::timeout(INTERRUPT_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                runs = self.tasks.len(),
                "runs still busy after the interruption"
            );
        }
    }
}

/// docs/contract.md §5: (repo, branch, path, keys, source commit, source phase, target
/// phase, and the source file when `sourcePath` names one); a dry run, a rollback or a pull
/// request is a different run, so it never answers for a plain one (a rollback of a commit once
/// answered `superseded` must not get that answer back). The layout is kept across versions (the
/// history's recorded answers and the Job names depend on it): a new field goes at the end. The
/// ledger reads the place a run writes from fields 0, 1, 2 and 6 (`ledger::place`).
fn idempotency_key(plan: &Plan) -> String {
    let mut key = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        plan.repo,
        plan.branch,
        plan.path,
        plan.keys.join(","),
        plan.commit,
        plan.source,
        plan.target,
        plan.dry_run,
        plan.rollback,
        matches!(plan.via, PromoteVia::PullRequest(_))
    );
    if let Some(source_path) = &plan.source_path {
        key.push_str(&format!("\nsource-path {source_path}"));
    }
    key
}

/// A run id: time-ordered, unique enough across restarts.
fn run_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms:x}-{:04x}", fastrand::u16(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Resource, SourceRef, TargetRef, TestProfiles};

    #[test]
    fn the_ledger_reads_the_file_and_phase_a_run_writes_from_its_key() {
        let resource = Resource {
            repo: "https://git.example/gitops.git".into(),
            path: "apps/petstore/{phase}/values.yaml".into(),
            source: SourceRef {
                phase: "test".into(),
                path: "apps/petstore/{phase}/chart-values.yaml".into(),
                commit: "abcdef1".into(),
            },
            target: TargetRef {
                phase: "prod".into(),
            },
            test: crate::spec::TestSpec {
                runner: Some(crate::spec::RunnerKind::None),
                ..Default::default()
            },
            ..Default::default()
        };
        let plan = Plan::from_resource(&resource, &TestProfiles::default()).expect("a plan");
        assert!(
            plan.source_path.is_some(),
            "the source file is part of the key"
        );
        let key = idempotency_key(&plan);
        assert_eq!(
            ledger::place(&key),
            [
                plan.repo.to_string().as_str(),
                plan.branch.as_str(),
                plan.path.to_string().as_str(),
                "prod"
            ]
        );
        // The layout of keys recorded before `sourcePath` existed is unchanged.
        let without = Plan {
            source_path: None,
            ..plan.clone()
        };
        assert_eq!(idempotency_key(&without).lines().count(), 10);
        assert!(key.starts_with(&idempotency_key(&without)));
    }
}
