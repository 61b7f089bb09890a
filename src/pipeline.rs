//! One run from request to outcome: validate, check policy, claim the idempotency key, test the
//! source phase, promote. Runs are detached tasks: a caller that goes away does not cancel one.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::{
    Error, Result,
    git::{GitPromoter, GitSettings, Promotion, PromotionOutcome},
    ledger::{self, Claim, RunLedger, Shared},
    outcome::{Outcome, RunReport},
    policy::Policy,
    runner,
    spec::{Mode, Plan, Resource, SourceRef, TargetRef},
};

/// The engine behind the gRPC adapter and the `promote` command.
pub struct Pipeline {
    policy: Policy,
    promoter: GitPromoter,
    ledger: RunLedger,
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
}

impl Pipeline {
    /// A pipeline running at most `max_runs` runs at once; the rest queue.
    pub fn new(policy: Policy, git: GitSettings, max_runs: usize) -> Pipeline {
        Pipeline {
            policy,
            promoter: GitPromoter::new(git),
            ledger: RunLedger::default(),
            permits: Arc::new(Semaphore::new(max_runs.max(1))),
            tasks: TaskTracker::new(),
        }
    }

    /// FetchResource: the Sensor's spec YAML to the resource JSON.
    pub fn fetch_resource(&self, spec_yaml: &[u8]) -> Result<Vec<u8>> {
        Ok(Resource::from_spec_yaml(spec_yaml)?.to_json())
    }

    /// Execute: resource and payload to a run's answer.
    pub async fn execute(
        &self,
        resource: &[u8],
        payload: &[u8],
    ) -> Result<Arc<RunReport>, Arc<Error>> {
        let plan = Resource::from_execute(resource, payload)
            .and_then(|r| Plan::from_resource(&r))
            .map_err(|e| Arc::new(e.into()))?;
        self.submit(plan).await
    }

    /// Runs a validated plan once per idempotency key.
    pub async fn submit(&self, plan: Plan) -> Result<Arc<RunReport>, Arc<Error>> {
        self.policy.check(&plan).map_err(|e| Arc::new(e.into()))?;
        let id = run_id();
        let waiter = match self.ledger.claim(&idempotency_key(&plan)) {
            Claim::Done(report) => return Ok(report),
            Claim::Join(rx) => {
                info!(run = %id, "duplicate joins the run in flight");
                rx
            }
            Claim::Lead(lease) => {
                let rx_plan = plan.clone();
                let (promoter, permits) = (self.promoter.clone(), self.permits.clone());
                let span = info_span!("run", run = %id, repo = %plan.repo, source = %plan.source,
                                      target = %plan.target, commit = %plan.commit);
                let run_id = id.clone();
                let rx = lease.subscribe();
                self.tasks.spawn(
                    async move {
                        let result = match permits.acquire_owned().await {
                            Ok(_permit) => run(&promoter, &rx_plan, &run_id)
                                .await
                                .map(Arc::new)
                                .map_err(Arc::new),
                            Err(_) => {
                                Err(Arc::new(Error::Internal("server is shutting down".into())))
                            }
                        };
                        log_result(&result);
                        lease.finish(result);
                    }
                    .instrument(span),
                );
                rx
            }
        };
        if plan.mode == Mode::Async {
            return Ok(Arc::new(accepted(&plan, id)));
        }
        ledger::wait(waiter).await
    }

    /// Stops taking runs and waits up to `grace` for the runs in flight.
    pub async fn drain(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                runs = self.tasks.len(),
                "shutdown grace period over with runs in flight"
            );
        }
    }
}

fn log_result(result: &Shared) {
    match result {
        Ok(report) => info!(outcome = ?report.outcome, "{}", report.summary()),
        Err(e) => warn!(error = %e, "run failed"),
    }
}

async fn run(promoter: &GitPromoter, plan: &Plan, id: &str) -> Result<RunReport> {
    let started = Instant::now();
    if plan.credentials_secret.is_some() {
        return Err(Error::Unconfigured(
            "credentialsSecret needs Kubernetes, which is not configured on this server",
        ));
    }
    info!(runner = plan.test.runner(), "testing");
    let test = runner::run(&plan.test).await?;
    let mut report = RunReport {
        run: id.to_string(),
        outcome: Outcome::TestsFailed,
        version: None,
        previous: None,
        commit: None,
        source: SourceRef {
            phase: plan.source.to_string(),
            commit: plan.commit.to_string(),
        },
        target: TargetRef {
            phase: plan.target.to_string(),
        },
        test: Some(test.clone()),
        duration_ms: 0,
    };
    if test.passed {
        let promoted = promoter.promote(promotion(plan, id)).await?;
        report.outcome = match promoted.outcome {
            PromotionOutcome::Promoted => Outcome::Promoted,
            PromotionOutcome::AlreadyPromoted => Outcome::AlreadyPromoted,
            PromotionOutcome::Superseded => Outcome::Superseded,
            PromotionOutcome::DryRun => Outcome::DryRun,
        };
        report.version = Some(promoted.version);
        report.previous = Some(promoted.previous);
        report.commit = promoted.commit;
        report.source.commit = promoted.source_commit;
    }
    report.duration_ms = millis(started.elapsed());
    Ok(report)
}

fn promotion(plan: &Plan, id: &str) -> Promotion {
    Promotion {
        repo: plan.repo.clone(),
        branch: plan.branch.clone(),
        path: plan.path.clone(),
        keys: plan.keys.clone(),
        source: plan.source.clone(),
        target: plan.target.clone(),
        commit: plan.commit.clone(),
        message: plan.commit_message.clone(),
        dry_run: plan.dry_run,
        run_id: id.to_string(),
        credentials: None,
    }
}

fn accepted(plan: &Plan, id: String) -> RunReport {
    RunReport {
        run: id,
        outcome: Outcome::Accepted,
        version: None,
        previous: None,
        commit: None,
        source: SourceRef {
            phase: plan.source.to_string(),
            commit: plan.commit.to_string(),
        },
        target: TargetRef {
            phase: plan.target.to_string(),
        },
        test: None,
        duration_ms: 0,
    }
}

/// CONTRACT §5: (repo, branch, path, keys, source commit, source phase, target phase); a dry
/// run is a different run, so it never answers for a real one.
fn idempotency_key(plan: &Plan) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        plan.repo,
        plan.branch,
        plan.path,
        plan.keys.join(","),
        plan.commit,
        plan.source,
        plan.target,
        plan.dry_run
    )
}

/// A run id: time-ordered, unique enough across restarts.
fn run_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms:x}-{:04x}", fastrand::u16(..))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
