//! One run from request to outcome: validate, check policy, claim the idempotency key, test the
//! source phase, promote. Runs are detached tasks: a caller that goes away does not cancel one.
//! Each stage is recorded in the history and measured in the metrics.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{
    Error, Result,
    cluster::{Cluster, argocd, secrets::SecretStore},
    credentials::CredentialScopes,
    forge::{
        ForgeSettings, StatusState,
        access::RunAccess,
        flow::{ForgeRun, Proposal, proposal_branch},
        installation::AppTokens,
    },
    git::{
        Credentials, GitPromoter, GitSettings, Promotion, PromotionOutcome, PromotionResult,
        ProposalBranch, Signer, SigningKeySource,
    },
    history::{History, RunRecord, Stage, now_unix_ms},
    ledger::{self, Claim, RunLedger, Shared},
    metrics::Metrics,
    outcome::{Outcome, RunReport},
    policy::Policy,
    runner::{self, LogSink, TestContext},
    spec::{Mode, Plan, PromoteVia, Resource, SourceRef, TargetRef, TestPlan},
};

/// The engine behind the gRPC adapter and the `promote` command.
pub struct Pipeline {
    policy: Policy,
    scopes: CredentialScopes,
    promoter: GitPromoter,
    ledger: RunLedger,
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
    history: Arc<History>,
    metrics: Arc<Metrics>,
    cluster: Option<Cluster>,
    secrets: Arc<SecretStore>,
    http: reqwest::Client,
    /// Ends the runs still in flight when the shutdown grace period is over.
    interrupt: CancellationToken,
    forges: Arc<Forges>,
}

/// What the forge steps of a run need from the server.
#[derive(Debug, Default)]
struct Forges {
    settings: ForgeSettings,
    /// The credential scopes: the password of the repository's credentials (its
    /// `credentialsSecret`'s, else `credentials_for` the repo) is the token for the forge API on
    /// the repository's host; a repo no scope covers gets no token.
    credentials: CredentialScopes,
    /// GitHub App installation tokens, shared by the runs.
    app_tokens: Arc<AppTokens>,
}

/// After the grace period, how long the interrupted runs get to record themselves.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// What one run needs, moved into its task.
struct RunTask {
    id: String,
    key: String,
    plan: Plan,
    promoter: GitPromoter,
    history: Arc<History>,
    metrics: Arc<Metrics>,
    cluster: Option<Cluster>,
    secrets: Arc<SecretStore>,
    http: reqwest::Client,
    interrupt: CancellationToken,
    forges: Arc<Forges>,
}

impl Pipeline {
    /// A pipeline running at most `max_runs` runs at once (the rest queue), answering
    /// duplicates of the successes in `history`; `cluster` enables the job runner,
    /// `credentialsSecret` and the Argo CD gate.
    pub fn new(
        policy: Policy,
        git: GitSettings,
        max_runs: usize,
        history: Arc<History>,
        metrics: Arc<Metrics>,
        cluster: Option<Cluster>,
    ) -> Pipeline {
        let forges = Arc::new(Forges {
            settings: ForgeSettings::default(),
            credentials: git.credentials.clone(),
            app_tokens: Arc::default(),
        });
        let ledger = RunLedger::default();
        for (key, report) in history.successes() {
            ledger.remember(&key, Arc::new(report));
        }
        Pipeline {
            policy,
            scopes: git.credentials.clone(),
            promoter: GitPromoter::new(git),
            ledger,
            permits: Arc::new(Semaphore::new(max_runs.max(1))),
            tasks: TaskTracker::new(),
            history,
            metrics,
            cluster,
            secrets: Arc::default(),
            http: runner::http_client(&[]).expect("a client without extra CA bundles builds"),
            interrupt: CancellationToken::new(),
            forges,
        }
    }

    /// Forge settings: the commit status link, retries of forge calls.
    pub fn with_forges(mut self, settings: ForgeSettings) -> Pipeline {
        self.forges = Arc::new(Forges {
            settings,
            credentials: self.forges.credentials.clone(),
            app_tokens: self.forges.app_tokens.clone(),
        });
        self
    }

    /// The HTTP runner uses `client` ([`runner::http_client`], with the configured CA bundles).
    pub fn with_http_client(mut self, client: reqwest::Client) -> Pipeline {
        self.http = client;
        self
    }

    /// The run history, for the Runs service.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// FetchResource: the Sensor's spec YAML to the resource JSON.
    pub fn fetch_resource(&self, spec_yaml: &[u8]) -> Result<Vec<u8>> {
        Ok(Resource::from_spec_yaml(spec_yaml)?.to_json())
    }

    /// Execute: resource and payload to a run's answer.
    pub async fn execute(&self, resource: &[u8], payload: &[u8]) -> Shared {
        let plan = Resource::from_execute(resource, payload)
            .and_then(|r| Plan::from_resource(&r))
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
        let (run, waiter) = match self.ledger.claim(&key, &id) {
            Claim::Done(report) => {
                self.metrics.duplicate(false);
                return Ok(report);
            }
            Claim::Join { run, rx } => {
                self.metrics.duplicate(true);
                debug!(run = %run, "duplicate joins the run in flight");
                (run, rx)
            }
            Claim::Lead(lease) => {
                let task = RunTask {
                    id: id.clone(),
                    key,
                    plan: plan.clone(),
                    promoter: self.promoter.clone(),
                    history: self.history.clone(),
                    metrics: self.metrics.clone(),
                    cluster: self.cluster.clone(),
                    secrets: self.secrets.clone(),
                    http: self.http.clone(),
                    interrupt: self.interrupt.clone(),
                    forges: self.forges.clone(),
                };
                task.history.start(task.record());
                task.metrics.in_flight(1);
                let span = info_span!("run", run = %task.id, repo = %plan.repo, source = %plan.source,
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
        self.interrupt.cancel();
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

impl RunTask {
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
    async fn run(self, permits: Arc<Semaphore>) -> Shared {
        let started = Instant::now();
        let result = match permits.acquire_owned().await {
            Ok(_permit) => {
                self.metrics.stage("queue", started.elapsed().as_secs_f64());
                tokio::select! {
                    result = unpanicked(self.test_and_promote()) => {
                        result.map(Arc::new).map_err(Arc::new)
                    }
                    // Dropping the run's future kills its test process group and stops
                    // waiting for a Job; a push already handed to git finishes on its own.
                    () = self.interrupt.cancelled() => Err(Arc::new(Error::Interrupted)),
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
        self.metrics.stage("total", started.elapsed().as_secs_f64());
        self.metrics.run_finished(outcome, self.plan.test.runner());
        self.metrics.in_flight(-1);
        self.history.finish(&self.id, &result);
        result
    }

    async fn test_and_promote(&self) -> Result<RunReport> {
        let plan = &self.plan;
        let (from_secret, signing_key) = match &plan.credentials_secret {
            Some(name) => {
                let (auth, key) = self
                    .secrets
                    .credentials(self.cluster("credentialsSecret")?, name)
                    .await?;
                (Some(auth), key)
            }
            None => (None, None),
        };
        // Checked before testing: a key that cannot sign must not cost a test run.
        let email = from_secret
            .as_ref()
            .and_then(|a| a.email().map(str::to_string));
        let signer = self.signer(signing_key, email).await?;
        let access = RunAccess::choose(
            plan,
            from_secret,
            self.forges.credentials.credentials_for(&plan.repo),
            &self.forges.app_tokens,
            &self.forges.settings,
        )?;
        // A GitHub App's token is minted here: bad App credentials fail before any test.
        let credentials = access.git().await?;
        let forge =
            ForgeRun::for_plan(plan, access.forge_token(), &self.id, &self.forges.settings)?;
        if let Some(f) = &forge {
            let doing = format!("testing {}, then promoting to {}", plan.source, plan.target);
            f.status(plan.commit.as_str(), StatusState::Pending, &doing)
                .await;
        }
        let result = self
            .test_then_promote(&access, credentials, signer, forge.as_ref())
            .await;
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

    async fn test_then_promote(
        &self,
        access: &RunAccess,
        credentials: Option<Credentials>,
        signer: Option<Arc<Signer>>,
        forge: Option<&ForgeRun>,
    ) -> Result<RunReport> {
        let (plan, started) = (&self.plan, Instant::now());
        let mut promotion = promotion(plan, &self.id);
        promotion.credentials = credentials;
        promotion.signer = signer;
        let mut open = None;
        let pull_request = match (&plan.via, forge) {
            (PromoteVia::PullRequest(pr), Some(f)) => {
                let branch = proposal_branch(plan);
                open = f.find_open(&branch, plan).await?;
                promotion.proposal = Some(ProposalBranch {
                    name: branch.clone(),
                    open: open.is_some(),
                });
                Some((pr, f, branch))
            }
            _ => None,
        };
        if let Some(report) = self.decided_before_testing(&promotion).await? {
            return Ok(report);
        }
        self.history.stage(&self.id, Stage::Testing);
        let ctx = self.test_context();
        if let Some(gate) = &plan.argocd {
            ctx.log.as_ref()(&format!(
                "waiting for Argo CD Application {}/{}",
                gate.namespace, gate.name
            ));
            let ready =
                argocd::wait_synced(self.cluster("argocdApp")?, gate, plan.commit.as_str()).await?;
            ctx.log.as_ref()(&ready);
        }
        info!(runner = plan.test.runner(), "testing");
        let test = runner::run(&plan.test, &ctx).await?;
        self.metrics.stage("test", started.elapsed().as_secs_f64());
        self.metrics.tested(plan.test.runner(), test.passed);
        let mut report = report_of(plan, self.id.clone(), Outcome::TestsFailed);
        report.test = Some(test.clone());
        if test.passed {
            self.history.stage(&self.id, Stage::Promoting);
            let promoting = Instant::now();
            // Tests may have taken long enough for a GitHub App token to near its expiry.
            promotion.credentials = access.git().await?;
            let mut promoted = self.promoter.promote(promotion).await?;
            if let Some(edit) = promoted.edit.take() {
                self.history.edited(&self.id, edit);
            }
            self.metrics
                .stage("promote", promoting.elapsed().as_secs_f64());
            if promoted.outcome == PromotionOutcome::Promoted {
                self.metrics.pushed(promoted.push_attempts);
            }
            let proposed = matches!(
                promoted.outcome,
                PromotionOutcome::Proposed | PromotionOutcome::AlreadyProposed
            );
            let already = promoted.outcome == PromotionOutcome::AlreadyProposed;
            fill(&mut report, promoted.clone());
            if let (Some((pr, f, branch)), true) = (pull_request, proposed) {
                let proposal = Proposal {
                    plan,
                    run_id: &self.id,
                    version: &promoted.version,
                    previous: &promoted.previous,
                    source_commit: &promoted.source_commit,
                    tests: format!(
                        "`{}` runner passed ({} attempt(s), {} ms)",
                        test.runner, test.attempts, test.duration_ms
                    ),
                    run_url: self
                        .forges
                        .settings
                        .run_url
                        .as_ref()
                        .map(|t| t.replace("{run}", &self.id)),
                };
                let head_sha = promoted.commit.clone().unwrap_or_default();
                f.conclude(
                    open,
                    &proposal,
                    &branch,
                    &head_sha,
                    pr,
                    already,
                    &mut report,
                )
                .await?;
            }
        }
        report.duration_ms = millis(started.elapsed());
        Ok(report)
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
        let Some(decided) = self.promoter.check(promotion).await? else {
            return Ok(None);
        };
        info!(outcome = ?decided.outcome, "decided before testing: no test started");
        let mut report = report_of(&self.plan, self.id.clone(), Outcome::TestsFailed);
        fill(&mut report, decided);
        report.duration_ms = millis(started.elapsed());
        Ok(Some(report))
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
        let promoter = self.promoter.clone();
        // Decrypting a key is deliberately slow work: keep it off the async threads.
        let load = move || promoter.signer_for(&key, email.as_deref());
        let loaded = tokio::task::spawn_blocking(load)
            .await
            .map_err(|e| Error::Internal(format!("loading the signing key: {e}")))?;
        Ok(Some(loaded?))
    }

    fn cluster(&self, needed_by: &'static str) -> Result<&Cluster> {
        self.cluster
            .as_ref()
            .ok_or(Error::Unconfigured(match needed_by {
                "credentialsSecret" => {
                    "credentialsSecret needs Kubernetes, which is not configured on this server"
                }
                _ => "argocdApp needs Kubernetes, which is not configured on this server",
            }))
    }

    /// Test output goes to watchers of the run and to the server log (with the run's span).
    fn test_context(&self) -> TestContext {
        let (history, id) = (self.history.clone(), self.id.clone());
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
            http: self.http.clone(),
            cluster: self.cluster.clone(),
            job_name: runner::job_name(&self.key),
            run_key: runner::run_key(&self.key),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
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
        rollback: plan.rollback,
        allow_unmerged_source: plan.allow_unmerged_source,
        run_id: id.to_string(),
        credentials: None,
        signer: None,
        proposal: None,
    }
}

/// Puts what the promotion did into the run's answer.
fn fill(report: &mut RunReport, promoted: PromotionResult) {
    report.outcome = match promoted.outcome {
        PromotionOutcome::Promoted => Outcome::Promoted,
        PromotionOutcome::AlreadyPromoted => Outcome::AlreadyPromoted,
        PromotionOutcome::Superseded => Outcome::Superseded,
        PromotionOutcome::DryRun => Outcome::DryRun,
        // Pull-request mode: the forge step says which (ForgeRun::conclude).
        PromotionOutcome::Proposed | PromotionOutcome::AlreadyProposed => Outcome::PrOpened,
    };
    report.version = Some(promoted.version);
    report.previous = Some(promoted.previous);
    report.commit = promoted.commit;
    report.signature = promoted.signature;
    report.source.commit = promoted.source_commit;
}

fn report_of(plan: &Plan, run: String, outcome: Outcome) -> RunReport {
    RunReport {
        run,
        outcome,
        version: None,
        previous: None,
        commit: None,
        signature: None,
        source: SourceRef {
            phase: plan.source.to_string(),
            commit: plan.commit.to_string(),
        },
        target: TargetRef {
            phase: plan.target.to_string(),
        },
        test: None,
        pull_request: None,
        duration_ms: 0,
    }
}

/// docs/contract.md §5: (repo, branch, path, keys, source commit, source phase, target
/// phase); a dry run, a rollback or a pull request is a different run, so it never answers
/// for a plain one (a rollback of a commit once answered `superseded` must not get that answer
/// back).
fn idempotency_key(plan: &Plan) -> String {
    format!(
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
        assert_eq!(panicked.kind(), crate::ErrorKind::Internal);
        assert!(
            panicked.to_string().contains("index out of bounds"),
            "{panicked}"
        );
        assert_eq!(unpanicked(async { Ok(7) }).await.expect("no panic"), 7);
    }
}
