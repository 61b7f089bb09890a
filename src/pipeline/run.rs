//! One run's stages, a method each: [`RunTask::access`] (the `credentialsSecret`, the signing
//! key, the credentials choice) → [`RunTask::probe`] → [`RunTask::gate`] (Argo
//! CD) → [`RunTask::test`] → [`RunTask::promote`] → [`RunTask::propose`] (pull-request mode).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::{
    access::Access,
    answer::{apply, fill, report_of},
    engine::Engine,
};
use crate::{
    Error, Result,
    cluster::{Cluster, argocd},
    error::Need,
    forge::{
        PullRequest, StatusState,
        flow::{Concluded, ForgeRun, Proposal, proposal_branch},
    },
    git::{Promotion, PromotionOutcome, PromotionResult, ProposalBranch},
    history::{RunRecord, Stage, now_unix_ms},
    outcome::{Outcome, RunReport, Shared},
    runner::{self, LogSink, TestContext, TestReport},
    spec::{Plan, PromoteVia, PullRequestPlan, TestPlan},
};

/// One run, moved into its task.
pub(super) struct RunTask {
    pub(super) id: String,
    key: String,
    pub(super) plan: Plan,
    pub(super) engine: Arc<Engine>,
}

/// Pull-request mode: the proposal branch and the pull request already open from it.
struct Proposing<'a> {
    plan: &'a PullRequestPlan,
    forge: &'a ForgeRun,
    branch: String,
    open: Option<PullRequest>,
}

impl RunTask {
    /// Run `id` of `plan` (idempotency key `key`), recorded as queued.
    pub(super) fn new(id: String, key: String, plan: Plan, engine: Arc<Engine>) -> RunTask {
        let task = RunTask {
            id,
            key,
            plan,
            engine,
        };
        task.engine.history.start(task.record());
        task.engine.metrics.in_flight(1);
        task
    }

    fn record(&self) -> RunRecord {
        let p = &self.plan;
        RunRecord {
            id: self.id.clone(),
            key: self.key.clone(),
            repo: p.repo.to_string(),
            branch: p.branch.clone(),
            path: p.path.to_string(),
            keys: p.keys.clone(),
            source_phase: p.source.to_string(),
            target_phase: p.target.to_string(),
            source_commit: p.commit.to_string(),
            stage: Stage::Queued,
            version: None,
            previous: None,
            report: None,
            error: None,
            started_unix_ms: now_unix_ms(),
            edit: None,
            timeline: Vec::new(),
            health: None,
        }
    }

    /// Waits for a permit, runs, and records the result everywhere.
    pub(super) async fn run(self, permits: Arc<Semaphore>) -> Shared {
        let started = Instant::now();
        let e = &self.engine;
        let result = match permits.acquire_owned().await {
            Ok(_permit) => {
                e.metrics.stage("queue", started.elapsed().as_secs_f64());
                tokio::select! {
                    result = unpanicked(self.with_statuses()) => {
                        result.map(Arc::new).map_err(Arc::new)
                    }
                    // Dropping the run's future kills its test process group and stops
                    // waiting for a Job; a push already handed to git finishes on its own.
                    () = e.interrupt.cancelled() => Err(Arc::new(Error::Interrupted)),
                }
            }
            Err(_) => Err(Arc::new(Error::Internal("server is shutting down".into()))),
        };
        let outcome = match &result {
            Ok(report) => {
                info!(outcome = ?report.outcome, "{}", report.summary());
                report.outcome.as_str().to_string()
            }
            Err(e) => {
                warn!(error = %e, "run failed");
                format!("error-{}", e.kind().as_str())
            }
        };
        e.metrics.stage("total", started.elapsed().as_secs_f64());
        e.metrics.run_finished(outcome, self.plan.test.runner());
        e.metrics.in_flight(-1);
        e.history.finish(&self.id, &result);
        result
    }

    /// The stages, between a pending and a final commit status on the forge (if any).
    async fn with_statuses(&self) -> Result<RunReport> {
        let plan = &self.plan;
        let access = self.access().await?;
        let forge =
            ForgeRun::for_plan(plan, access.run.forge_token(), &self.id, &self.engine.forge)?;
        if let Some(f) = &forge {
            let doing = format!("testing {}, then promoting to {}", plan.source, plan.target);
            f.status(plan.commit.as_str(), StatusState::Pending, &doing)
                .await;
        }
        let result = self.stages(&access, forge.as_ref()).await;
        if let Some(f) = &forge {
            let (state, line, sha) = match &result {
                Ok(report) if report.outcome == Outcome::TestsFailed => (
                    StatusState::Failure,
                    report.summary(),
                    &report.source.commit,
                ),
                Ok(report) => (
                    StatusState::Success,
                    report.summary(),
                    &report.source.commit,
                ),
                Err(e) => (
                    StatusState::Error,
                    format!("promotion failed: {e}"),
                    &plan.commit.to_string(),
                ),
            };
            f.status(sha, state, &line).await;
        }
        result
    }

    async fn stages(&self, access: &Access, forge: Option<&ForgeRun>) -> Result<RunReport> {
        let (plan, started) = (&self.plan, Instant::now());
        let mut promotion = self.promotion(access);
        let proposing = match (&plan.via, forge) {
            (PromoteVia::PullRequest(pr), Some(forge)) => {
                let branch = proposal_branch(plan);
                let open = forge.find_open(&branch, plan).await?;
                promotion.proposal = Some(ProposalBranch {
                    name: branch.clone(),
                    open: open.is_some(),
                });
                Some(Proposing {
                    plan: pr,
                    forge,
                    branch,
                    open,
                })
            }
            _ => None,
        };
        let probe = self.probe(&promotion).await?;
        if let Some(decided) = probe.clone().filter(PromotionResult::decides) {
            info!(outcome = ?decided.outcome, "decided before testing: no test started");
            let mut report = report_of(plan, self.id.clone(), Outcome::TestsFailed);
            fill(&mut report, decided);
            report.duration_ms = millis(started.elapsed());
            return Ok(report);
        }
        let mut report = report_of(plan, self.id.clone(), Outcome::TestsFailed);
        if let Some(probe) = probe {
            // The version under test, in the answer of every outcome and in the history at once.
            self.engine
                .history
                .under_test(&self.id, &probe.version, &probe.previous);
            report.version = Some(probe.version);
            report.previous = Some(probe.previous);
        }
        let under_test = report.version.clone().zip(report.previous.clone());
        let tested: Result<RunReport> = async {
            self.engine.history.stage(&self.id, Stage::Testing);
            let ctx = self.test_context();
            self.gate(&ctx).await?;
            let test = self.test(&ctx, started).await?;
            report.test = Some(test.clone());
            if test.passed {
                let promoted = self.promote(promotion, access).await?;
                fill(&mut report, promoted.clone());
                if let Some(proposing) = proposing
                    && let Some(concluded) = self.propose(proposing, &promoted, &test).await?
                {
                    apply(&mut report, concluded);
                }
            }
            report.duration_ms = millis(started.elapsed());
            Ok(report)
        }
        .await;
        // An error once the version under test is known names it, as a tests-failed answer does.
        tested.map_err(|e| match under_test {
            Some((version, previous)) => Error::AfterRead {
                version,
                previous,
                target: plan.target.to_string(),
                source: Box::new(e),
            },
            None => e,
        })
    }

    /// Before any test, what promoting would do: when the target already holds the version or
    /// a newer source already won, the answer is known and no test (Job, HTTP check, command)
    /// is started; every unrelated GitOps commit re-syncs the source phase, and it must not cost
    /// a test campaign. Otherwise it names the version under test. With no test to save
    /// (`test: none`) the promotion itself decides, in one fetch: `None`.
    async fn probe(&self, promotion: &Promotion) -> Result<Option<PromotionResult>> {
        if matches!(self.plan.test, TestPlan::None) {
            return Ok(None);
        }
        Ok(Some(self.engine.promoter.check(promotion).await?))
    }

    /// The Argo CD gate: waits until the Application is synced to the source commit and healthy.
    async fn gate(&self, ctx: &TestContext) -> Result<()> {
        let Some(gate) = &self.plan.argocd else {
            return Ok(());
        };
        ctx.log.as_ref()(&format!(
            "waiting for Argo CD Application {}/{}",
            gate.namespace, gate.name
        ));
        let cluster = self.cluster(Need::ArgocdApp)?;
        let history = &self.engine.history;
        match argocd::wait_synced(cluster, gate, self.plan.commit.as_str()).await {
            Ok(ready) => {
                history.gated(&self.id, "Healthy");
                ctx.log.as_ref()(&ready);
                Ok(())
            }
            Err(e) => {
                history.gated(&self.id, &format!("not ready: {e}"));
                Err(e.into())
            }
        }
    }

    /// Tests the source phase with the plan's runner.
    async fn test(&self, ctx: &TestContext, started: Instant) -> Result<TestReport> {
        let (plan, e) = (&self.plan, &self.engine);
        info!(runner = plan.test.runner(), "testing");
        let test = runner::run(&plan.test, ctx).await?;
        e.metrics.stage("test", started.elapsed().as_secs_f64());
        e.metrics.tested(plan.test.runner(), test.passed);
        Ok(test)
    }

    /// Commits the tested version (to the branch, or to the proposal branch).
    async fn promote(&self, mut promotion: Promotion, access: &Access) -> Result<PromotionResult> {
        let e = &self.engine;
        e.history.stage(&self.id, Stage::Promoting);
        let promoting = Instant::now();
        // Tests may have taken long enough for a GitHub App token to near its expiry.
        promotion.credentials = access.run.git().await?;
        let mut promoted = e.promoter.promote(promotion).await?;
        if let Some(edit) = promoted.edit.take() {
            e.history.edited(&self.id, edit);
        }
        e.metrics
            .stage("promote", promoting.elapsed().as_secs_f64());
        if promoted.outcome == PromotionOutcome::Promoted {
            e.metrics.pushed(promoted.push_attempts);
        }
        Ok(promoted)
    }

    /// Pull-request mode: opens or updates the pull request for the proposal branch's commit,
    /// and merges or waits as the plan asks. `None` when nothing was proposed.
    async fn propose(
        &self,
        proposing: Proposing<'_>,
        promoted: &PromotionResult,
        test: &TestReport,
    ) -> Result<Option<Concluded>> {
        let already = match promoted.outcome {
            PromotionOutcome::Proposed => false,
            PromotionOutcome::AlreadyProposed => true,
            _ => return Ok(None),
        };
        let proposal = Proposal {
            plan: &self.plan,
            run_id: &self.id,
            version: &promoted.version,
            previous: &promoted.previous,
            source_commit: &promoted.source_commit,
            tests: format!(
                "`{}` runner passed ({} attempt(s), {} ms)",
                test.runner, test.attempts, test.duration_ms
            ),
            run_url: self.engine.forge.run_link(&self.id),
        };
        let head_sha = promoted.commit.clone().unwrap_or_default();
        let Proposing {
            plan,
            forge,
            branch,
            open,
        } = proposing;
        let concluded = forge
            .conclude(open, &proposal, &branch, &head_sha, plan, already)
            .await?;
        Ok(Some(concluded))
    }

    pub(super) fn cluster(&self, need: Need) -> Result<&Cluster> {
        self.engine
            .cluster
            .as_ref()
            .ok_or(Error::Unconfigured(need))
    }

    /// Test output goes to watchers of the run and to the server log (with the run's span).
    fn test_context(&self) -> TestContext {
        let e = &self.engine;
        let (history, id) = (e.history.clone(), self.id.clone());
        let span = tracing::Span::current();
        let log: LogSink = Arc::new(move |line: &str| {
            span.in_scope(|| debug!(line, "test output"));
            history.log(&id, line);
        });
        let p = &self.plan;
        let labels = [
            ("app.kubernetes.io/managed-by", "phasegate".to_string()),
            ("phasegate.dev/source-phase", p.source.to_string()),
            ("phasegate.dev/target-phase", p.target.to_string()),
            (
                "phasegate.dev/source-commit",
                p.commit.as_str().chars().take(12).collect(),
            ),
        ];
        TestContext {
            log,
            http: e.runners.http.clone(),
            run_as: e.runners.run_as,
            cluster: e.cluster.clone(),
            job_name: runner::job_name(&self.key),
            run_key: runner::run_key(&self.key),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// `run`'s result, or an internal error if it panicked: a bug in one run still ends its
/// record, its metrics and its callers' wait, and leaves the server serving.
async fn unpanicked<T>(run: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(run)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::Internal(format!("the run stopped on a bug: {why}")))
        })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_that_panics_ends_as_an_internal_error() {
        let panicked = unpanicked(async {
            if true {
                panic!("index out of bounds");
            }
            Ok(())
        })
        .await
        .expect_err("panicked");
        assert_eq!(panicked.kind(), crate::kind::ErrorKind::Internal);
        assert!(
            panicked.to_string().contains("index out of bounds"),
            "{panicked}"
        );
        assert_eq!(unpanicked(async { Ok(7) }).await.expect("no panic"), 7);
    }
}
