//! One run's stages, a method each: [`RunTask::access`] (the `credentialsSecret`, the signing
//! key, the credentials choice) → [`RunTask::decided_before_testing`] → [`RunTask::gate`] (Argo
//! CD) → [`RunTask::test`] → [`RunTask::promote`] → [`RunTask::propose`] (pull-request mode).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::report_of;
use crate::{
    Error, Result,
    cluster::{Cluster, argocd},
    credentials::{CredentialScopes, Credentials, SecretStore, SigningKeySource},
    error::Need,
    forge::{
        ForgeSettings, PullRequest, StatusState,
        access::RunAccess,
        flow::{Concluded, ForgeRun, Proposal, proposal_branch},
        installation::AppTokens,
    },
    git::{
        GitPromoter, GitSettings, Promotion, PromotionOutcome, PromotionResult, ProposalBranch,
        Signer,
    },
    history::{History, RunRecord, Stage, now_unix_ms},
    metrics::Metrics,
    outcome::{Outcome, PullRequestRef, RunReport, Shared},
    runner::{self, LogSink, TestContext, TestReport},
    spec::{Plan, PromoteVia, PullRequestPlan, TestPlan},
};

/// What every run shares, built once by the pipeline.
pub(super) struct Engine {
    promoter: GitPromoter,
    pub(super) history: Arc<History>,
    pub(super) metrics: Arc<Metrics>,
    cluster: Option<Cluster>,
    secrets: SecretStore,
    http: reqwest::Client,
    /// Ends the runs still in flight when the shutdown grace period is over.
    pub(super) interrupt: CancellationToken,
    forge: ForgeSettings,
    /// The credential scopes: the password of the repository's credentials (its
    /// `credentialsSecret`'s, else `credentials_for` the repo) is the token for the forge API on
    /// the repository's host; a repo no scope covers gets no token.
    scopes: CredentialScopes,
    /// GitHub App installation tokens, shared by the runs.
    app_tokens: Arc<AppTokens>,
}

impl Engine {
    pub(super) fn new(
        git: GitSettings,
        history: Arc<History>,
        metrics: Arc<Metrics>,
        cluster: Option<Cluster>,
        http: reqwest::Client,
        forge: ForgeSettings,
        scopes: CredentialScopes,
    ) -> Engine {
        Engine {
            promoter: GitPromoter::new(git),
            history,
            metrics,
            cluster,
            secrets: SecretStore::default(),
            http,
            interrupt: CancellationToken::new(),
            forge,
            scopes,
            app_tokens: Arc::default(),
        }
    }
}

/// One run, moved into its task.
pub(super) struct RunTask {
    id: String,
    key: String,
    plan: Plan,
    engine: Arc<Engine>,
}

/// The credentials of a run, chosen before any test: a bad Secret, key or App fails first.
struct Access {
    run: RunAccess,
    credentials: Option<Credentials>,
    signer: Option<Arc<Signer>>,
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
            report: None,
            error: None,
            started_unix_ms: now_unix_ms(),
            edit: None,
            timeline: Vec::new(),
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
        if let Some(report) = self.decided_before_testing(&promotion).await? {
            return Ok(report);
        }
        self.engine.history.stage(&self.id, Stage::Testing);
        let ctx = self.test_context();
        self.gate(&ctx).await?;
        let test = self.test(&ctx, started).await?;
        let mut report = report_of(plan, self.id.clone(), Outcome::TestsFailed);
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

    /// The `credentialsSecret` (read from Kubernetes), its signing key (loaded), and the run's
    /// credentials (a GitHub App's token is minted here): all before any test.
    async fn access(&self) -> Result<Access> {
        let (plan, e) = (&self.plan, &self.engine);
        let (from_secret, signing_key) = match &plan.credentials_secret {
            Some(name) => {
                let cluster = self.cluster(Need::CredentialsSecret)?;
                let (auth, key) = e.secrets.credentials(cluster, name).await?;
                (Some(auth), key)
            }
            None => (None, None),
        };
        // Checked before testing: a key that cannot sign must not cost a test run.
        let email = from_secret
            .as_ref()
            .and_then(|a| a.email().map(str::to_string));
        let signer = self.signer(signing_key, email).await?;
        let run = RunAccess::choose(
            plan,
            from_secret,
            e.scopes.credentials_for(&plan.repo),
            &e.app_tokens,
            &e.forge,
        )?;
        let credentials = run.git().await?;
        Ok(Access {
            run,
            credentials,
            signer,
        })
    }

    /// Before any test: when the target already holds the version or a newer source already
    /// won, the answer is known and no test (Job, HTTP check, command) is started. Every
    /// unrelated GitOps commit re-syncs the source phase; it must not cost a test campaign.
    /// With no test to save (`test: none`) the promotion itself decides, in one fetch.
    async fn decided_before_testing(&self, promotion: &Promotion) -> Result<Option<RunReport>> {
        if matches!(self.plan.test, TestPlan::None) {
            return Ok(None);
        }
        let started = Instant::now();
        let Some(decided) = self.engine.promoter.check(promotion).await? else {
            return Ok(None);
        };
        info!(outcome = ?decided.outcome, "decided before testing: no test started");
        let mut report = report_of(&self.plan, self.id.clone(), Outcome::TestsFailed);
        fill(&mut report, decided);
        report.duration_ms = millis(started.elapsed());
        Ok(Some(report))
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
        let ready = argocd::wait_synced(cluster, gate, self.plan.commit.as_str()).await?;
        ctx.log.as_ref()(&ready);
        Ok(())
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

    /// The `credentialsSecret`'s signing key, loaded to sign as the Secret's email.
    async fn signer(
        &self,
        key: Option<SigningKeySource>,
        email: Option<String>,
    ) -> Result<Option<Arc<Signer>>> {
        let Some(key) = key else {
            return Ok(None);
        };
        let promoter = self.engine.promoter.clone();
        // Decrypting a key is deliberately slow work: keep it off the async threads.
        let load = move || promoter.signer_for(&key, email.as_deref());
        let loaded = tokio::task::spawn_blocking(load)
            .await
            .map_err(|e| Error::Internal(format!("loading the signing key: {e}")))?;
        Ok(Some(loaded?))
    }

    fn cluster(&self, need: Need) -> Result<&Cluster> {
        self.engine
            .cluster
            .as_ref()
            .ok_or(Error::Unconfigured(need))
    }

    fn promotion(&self, access: &Access) -> Promotion {
        let plan = &self.plan;
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
            rollback: plan.rollback,
            allow_unmerged_source: plan.allow_unmerged_source,
            run_id: self.id.clone(),
            credentials: access.credentials.clone(),
            signer: access.signer.clone(),
            proposal: None,
        }
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
            http: e.http.clone(),
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

/// Puts what the promotion did into the run's answer.
fn fill(report: &mut RunReport, promoted: PromotionResult) {
    report.outcome = match promoted.outcome {
        PromotionOutcome::Promoted => Outcome::Promoted,
        PromotionOutcome::AlreadyPromoted => Outcome::AlreadyPromoted,
        PromotionOutcome::Superseded => Outcome::Superseded,
        PromotionOutcome::DryRun => Outcome::DryRun,
        // Pull-request mode: `apply` says which, once the forge has answered.
        PromotionOutcome::Proposed | PromotionOutcome::AlreadyProposed => Outcome::PrOpened,
    };
    report.version = Some(promoted.version);
    report.previous = Some(promoted.previous);
    report.commit = promoted.commit;
    report.signature = promoted.signature;
    report.source.commit = promoted.source_commit;
}

/// Puts what became of the pull request into the run's answer.
fn apply(report: &mut RunReport, concluded: Concluded) {
    let pr = concluded.pull_request();
    report.pull_request = Some(PullRequestRef {
        url: pr.url.clone(),
        number: pr.number,
    });
    report.outcome = match concluded {
        Concluded::Opened(_) => Outcome::PrOpened,
        Concluded::Updated(_) => Outcome::PrUpdated,
        Concluded::AlreadyOpen(_) => Outcome::AlreadyPromoted,
        Concluded::Merged { commit, .. } => {
            report.commit = Some(commit);
            Outcome::Promoted
        }
    };
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
