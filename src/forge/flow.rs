//! A run's business with the forge: the commit statuses on the tested source commit, and in
//! pull-request mode the pull request's life (open or update, auto-merge, wait for the merge).
//! The pipeline calls this without knowing which forge it talks to.

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{
    CommitStatus, Forge, ForgeError, ForgeSettings, MergeAttempt, PrState, PullRequest,
    PullRequestDraft, StatusState,
};
use crate::{
    forge::access::ForgeToken,
    spec::{Plan, PromoteVia, PullRequestPlan, Vars},
};

/// The forge of one run's repository.
pub(crate) struct ForgeRun {
    forge: Box<dyn Forge>,
    context: String,
    target_url: Option<String>,
}

impl ForgeRun {
    /// The forge of the run's repository, if one is configured (always in pull-request mode),
    /// with `token` (the password of the run's git credentials, or a GitHub App's tokens).
    pub(crate) fn for_plan(
        plan: &Plan,
        token: Option<ForgeToken>,
        run_id: &str,
        settings: &ForgeSettings,
    ) -> Result<Option<ForgeRun>, ForgeError> {
        let pull_request = matches!(plan.via, PromoteVia::PullRequest(_));
        // Located (and what it cannot do refused) when the spec was parsed.
        let Some(located) = &plan.located else {
            return Ok(None);
        };
        let Some(token) = token else {
            if pull_request {
                return Err(ForgeError::NoToken);
            }
            debug!("no forge token: no commit statuses");
            return Ok(None);
        };
        let client = match token {
            ForgeToken::Token(token) => super::connect(located, token, settings)?,
            ForgeToken::App(app) => super::installation::connect(located, app, settings)?,
        };
        Ok(Some(ForgeRun::new(client, plan, run_id, settings)))
    }

    /// The run `run_id` of `plan` on `forge`; statuses link to `settings.run_url`.
    fn new(forge: Box<dyn Forge>, plan: &Plan, run_id: &str, settings: &ForgeSettings) -> Self {
        ForgeRun {
            forge,
            context: format!("phasegate/{}->{}", plan.source, plan.target),
            target_url: settings.run_link(run_id),
        }
    }

    /// Sets the status of the source commit `sha`. A status is information, not the run:
    /// a failure is logged and the run goes on. Forges need the full commit id.
    pub(crate) async fn status(&self, sha: &str, state: StatusState, description: &str) {
        if sha.len() < 40 {
            info!(
                commit = sha,
                "commit status skipped: the forge needs the full commit id"
            );
            return;
        }
        let status = CommitStatus {
            sha: sha.to_string(),
            state,
            context: self.context.clone(),
            description: super::api::one_line(description),
            target_url: self.target_url.clone(),
        };
        if let Err(e) = self.forge.set_status(&status).await {
            warn!(error = %e, context = %self.context, "commit status not set");
        }
    }

    /// The open pull request from `head` into the plan's branch.
    pub(crate) async fn find_open(
        &self,
        head: &str,
        plan: &Plan,
    ) -> Result<Option<PullRequest>, ForgeError> {
        self.forge.find_open(head, &plan.branch).await
    }

    /// Opens the pull request, or updates `open`. Answers it and whether it is new.
    pub(crate) async fn publish(
        &self,
        open: Option<&PullRequest>,
        draft: &PullRequestDraft,
    ) -> Result<(PullRequest, bool), ForgeError> {
        match open {
            Some(pr) => Ok((self.forge.update(pr.number, draft).await?, false)),
            None => Ok((self.forge.open(draft).await?, true)),
        }
    }

    /// Auto-merge and the wait for the merge, as the plan asks. Answers the merge commit when
    /// the pull request was merged, `None` when it stays open.
    pub(crate) async fn settle(
        &self,
        pr: &PullRequest,
        head_sha: &str,
        plan: &PullRequestPlan,
    ) -> Result<Option<String>, ForgeError> {
        if plan.auto_merge
            && let Some(merged) = self.try_merge(pr, head_sha, plan).await?
        {
            return Ok(Some(merged));
        }
        let Some(wait) = plan.wait_for_merge else {
            return Ok(None);
        };
        let deadline = Instant::now() + wait;
        let mut poll = Duration::from_millis(250);
        loop {
            let now = self.forge.get(pr.number).await?;
            match now.state {
                PrState::Merged => return Ok(Some(now.merge_commit.unwrap_or_default())),
                PrState::ClosedUnmerged => {
                    return Err(ForgeError::ClosedUnmerged(format!(
                        "pull request #{} ({}) was closed without being merged",
                        pr.number, pr.url
                    )));
                }
                PrState::Open => {}
            }
            if plan.auto_merge
                && let Some(merged) = self.try_merge(pr, head_sha, plan).await?
            {
                return Ok(Some(merged));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ForgeError::MergeWaitExpired(format!(
                    "pull request #{} ({}) still not merged after waitForMerge {}",
                    pr.number,
                    pr.url,
                    humantime::format_duration(wait)
                )));
            }
            tokio::time::sleep(poll.min(left)).await;
            poll = (poll * 2).min(Duration::from_secs(5));
        }
    }

    async fn try_merge(
        &self,
        pr: &PullRequest,
        head_sha: &str,
        plan: &PullRequestPlan,
    ) -> Result<Option<String>, ForgeError> {
        match self
            .forge
            .merge(pr.number, head_sha, plan.merge_method)
            .await?
        {
            MergeAttempt::Merged(sha) => {
                info!(number = pr.number, merge = %sha, "pull request merged");
                Ok(Some(sha))
            }
            MergeAttempt::NotMergeable(reason) => {
                info!(number = pr.number, %reason, "pull request not mergeable yet");
                Ok(None)
            }
        }
    }
}

/// The phasegate-owned branch of a promotion: one per (repository, base branch, target phase,
/// values file, keys), so a newer tested version updates the same pull request.
pub(crate) fn proposal_branch(plan: &Plan) -> String {
    let identity = format!(
        "{}\n{}\n{}\n{}\n{}",
        plan.repo,
        plan.branch,
        plan.target,
        plan.path.for_phase(&plan.target),
        plan.keys.join(",")
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, identity.as_bytes());
    let short: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("phasegate/{}/{short}", plan.target)
}

/// What a pull request says about the promotion it carries.
pub(crate) struct Proposal<'a> {
    pub plan: &'a Plan,
    pub run_id: &'a str,
    pub version: &'a str,
    pub previous: &'a str,
    /// The full id of the tested source commit.
    pub source_commit: &'a str,
    /// One line about the tests (runner, result, attempts).
    pub tests: String,
    pub run_url: Option<String>,
}

impl Proposal<'_> {
    /// The pull request's title, body, labels and draft flag, from `head`.
    pub(crate) fn draft(&self, head: &str, pr: &PullRequestPlan) -> PullRequestDraft {
        let p = self.plan;
        let title = p
            .commit_message
            .render(&Vars {
                version: self.version,
                previous: self.previous,
                keys: &p.keys,
                source: &p.source,
                target: &p.target,
                commit: self.source_commit,
            })
            // Not reached: the proposed commit's subject was rendered from the same versions,
            // and refused them. A title names the promotion without them all the same.
            .unwrap_or_else(|_| {
                format!(
                    "Promote {} from {} to {}",
                    p.keys.join(","),
                    p.source,
                    p.target
                )
            });
        let keys = p
            .keys
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let run = match &self.run_url {
            Some(url) => format!("[`{}`]({url})", self.run_id),
            None => format!("`{}`", self.run_id),
        };
        let body = format!(
            "phasegate promotes {keys} from **{source}** to **{target}**.\n\n\
             | key | {target} now | proposed |\n|---|---|---|\n| {first} | `{previous}` | `{version}` |\n\n\
             - Source: phase `{source}`, commit `{commit}` (what was deployed there and tested)\n\
             - Tests: {tests}\n\
             - Run: {run}\n\n\
             The branch `{head}` belongs to phasegate: a newer tested version force-updates it \
             and this pull request. Merge to promote; close to refuse this version.\n",
            source = p.source,
            target = p.target,
            first = format_args!("`{}`", p.keys[0]),
            previous = self.previous,
            version = self.version,
            commit = self.source_commit,
            tests = self.tests,
        );
        PullRequestDraft {
            head: head.to_string(),
            base: p.branch.clone(),
            title: title.lines().next().unwrap_or_default().to_string(),
            body,
            labels: pr.labels.clone(),
            draft: pr.draft,
        }
    }
}

/// What became of a proposed promotion on the forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Concluded {
    /// A new pull request carries the promotion.
    Opened(PullRequest),
    /// The open pull request now carries the promotion.
    Updated(PullRequest),
    /// The open pull request carried this promotion already.
    AlreadyOpen(PullRequest),
    /// The pull request was merged: the promotion is on the base branch at `commit`.
    Merged { pr: PullRequest, commit: String },
}

impl Concluded {
    /// The pull request that carries the promotion.
    pub(crate) fn pull_request(&self) -> &PullRequest {
        match self {
            Concluded::Opened(pr) | Concluded::Updated(pr) | Concluded::AlreadyOpen(pr) => pr,
            Concluded::Merged { pr, .. } => pr,
        }
    }
}

impl ForgeRun {
    /// After the promotion commit went to the proposal branch `head` (at `head_sha`), or was
    /// found there already (`already`): opens or updates the pull request, and merges or waits
    /// as the plan asks.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn conclude(
        &self,
        open: Option<PullRequest>,
        proposal: &Proposal<'_>,
        head: &str,
        head_sha: &str,
        plan: &PullRequestPlan,
        already: bool,
    ) -> Result<Concluded, ForgeError> {
        let concluded = match open {
            Some(pr) if already => Concluded::AlreadyOpen(pr),
            open => {
                let draft = proposal.draft(head, plan);
                match self.publish(open.as_ref(), &draft).await? {
                    (pr, true) => Concluded::Opened(pr),
                    (pr, false) => Concluded::Updated(pr),
                }
            }
        };
        let pr = concluded.pull_request();
        info!(number = pr.number, url = %pr.url, opened = matches!(concluded, Concluded::Opened(_)),
              "pull request");
        Ok(match self.settle(pr, head_sha, plan).await? {
            Some(commit) => Concluded::Merged {
                pr: pr.clone(),
                commit,
            },
            None => concluded,
        })
    }
}
