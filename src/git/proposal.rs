//! Pull-request mode, blocking (run it off the async threads): the same promotion commit as a
//! push (same edit, message and trailers, on the head of the base branch), put on a
//! phasegate-owned branch instead, which phasegate force-updates (that branch and no other),
//! only while it is where the last fetch saw it.

use git2::{Commit, Oid, Repository};
use tracing::info;

use super::{
    GitError, GitSettings, Promotion, PromotionOutcome, PromotionResult, ProposalBranch,
    cache::{self, RepoCache, git, tracking_ref},
    index::PromotionIndex,
    promote::{Notes, edit, read_source, read_values},
    push::{Lease, backoff, push_to},
    shallow, trailers,
};
use crate::{credentials::Credentials, values};

/// Runs one pull-request promotion: decides against the base branch (`already-promoted`,
/// `superseded`), then against the open pull request's branch when there is one (the same
/// version is not proposed twice; a newer one proposed there supersedes this one), then pushes.
pub(super) fn run(
    cache: &RepoCache,
    settings: &GitSettings,
    p: &Promotion,
    index: &mut PromotionIndex,
) -> Result<PromotionResult, GitError> {
    let proposal = p
        .proposal
        .as_ref()
        .ok_or_else(|| GitError::Other("not a pull-request promotion".into()))?;
    let (url, branch) = (&p.repo, proposal.name.as_str());
    // A request's own Secret goes to its repo only; otherwise the credential scopes decide.
    let creds = settings
        .credentials
        .for_run(&p.repo, p.credentials.as_ref());
    let base_spec = format!("+refs/heads/{0}:{1}", p.branch, tracking_ref(&p.branch));
    let proposal_spec = format!("+refs/heads/{branch}:{}", tracking_ref(branch));
    // A clone made from nothing starts shallow.
    let fetch = |repo: &Repository| {
        let depth = shallow::first_depth(repo, url);
        cache::fetch_at_depth(
            repo,
            url,
            &[&base_spec, &proposal_spec],
            settings,
            creds,
            depth,
        )
    };
    let (_held, mut repo) = cache.take(url)?;
    let head = tracking_ref(&p.branch);
    let remote = (url, head.as_str(), base_spec.as_str());
    let open = || cache.open(url);
    shallow::deepening(&mut repo, open, remote, (settings, creds), |repo| {
        propose(repo, (settings, creds), (p, proposal), index, &fetch)
    })
}

/// [`run`] on the clone, for the pull request's `proposal` branch, fetching with `fetch`:
/// [`GitError::NeedsHistory`] when a shallow clone must be deepened first.
fn propose(
    repo: &Repository,
    (settings, creds): (&GitSettings, Option<&Credentials>),
    (p, proposal): (&Promotion, &ProposalBranch),
    index: &mut PromotionIndex,
    fetch: &dyn Fn(&Repository) -> Result<(), GitError>,
) -> Result<PromotionResult, GitError> {
    let branch = proposal.name.as_str();
    for attempt in 1..=settings.push_attempts {
        if attempt > 1 {
            std::thread::sleep(backoff(attempt));
        }
        // A proposal branch deleted on the remote (merged, cleaned up) must not linger here.
        if let Ok(mut stale) = repo.find_reference(&tracking_ref(branch)) {
            git(stale.delete())?;
        }
        fetch(repo)?;
        let (source, versions) = read_source(repo, p, settings, creds)?;
        let head = repo
            .find_reference(&tracking_ref(&p.branch))
            .and_then(|r| r.peel_to_commit())
            .map_err(|_| GitError::NotFound(format!("branch `{}` not found", p.branch)))?;
        index.update(repo, head.id())?;
        let mut noted = Notes::new();
        let (mut result, commit) = edit(
            repo,
            settings,
            creds,
            p,
            &head,
            &source,
            &versions,
            (&mut *index, &mut noted),
        )?;
        let Some(commit) = commit else {
            return Ok(result);
        };
        let tip = repo
            .find_reference(&tracking_ref(branch))
            .and_then(|r| r.peel_to_commit())
            .ok();
        if let Some(tip) = tip.as_ref().filter(|_| proposal.open) {
            if proposes(repo, tip, p, &versions)? {
                result.outcome = PromotionOutcome::AlreadyProposed;
                result.commit = Some(tip.id().to_string());
                return Ok(result);
            }
            // A deliberate rollback proposes an older version on purpose.
            if let Some(newer) = newer_source(repo, tip, source.id())?.filter(|_| !p.rollback) {
                info!(run = %p.run_id, newer = %newer, "the open pull request proposes a newer source commit");
                result.outcome = PromotionOutcome::Superseded;
                return Ok(result);
            }
        }
        if p.dry_run {
            result.outcome = PromotionOutcome::DryRun;
            return Ok(result);
        }
        let lease = Lease {
            branch,
            expected: tip.as_ref().map_or_else(Oid::zero, Commit::id),
            force: true,
        };
        if push_to(repo, p, commit, lease, settings, creds)? {
            git(repo.reference(&tracking_ref(branch), commit, true, "phasegate proposal"))?;
            info!(branch, commit = %commit, attempt, "pushed the pull request branch");
            result.outcome = PromotionOutcome::Proposed;
            result.commit = Some(commit.to_string());
            result.push_attempts = attempt;
            return Ok(result);
        }
    }
    Err(GitError::PushRejected {
        branch: branch.to_string(),
        attempts: settings.push_attempts,
    })
}

/// True when the branch tip's target values file already holds `versions`.
fn proposes(
    repo: &Repository,
    tip: &Commit,
    p: &Promotion,
    versions: &[values::Scalar],
) -> Result<bool, GitError> {
    let path = p.path.for_phase(&p.target);
    let Ok((_, text)) = read_values(repo, &git(tip.tree())?, &path, "") else {
        return Ok(false);
    };
    Ok(p.target_keys()
        .into_iter()
        .zip(versions)
        .all(|(k, v)| values::read_value(&text, k).ok().as_ref() == Some(v)))
}

/// The source commit the tip's promotion recorded (its own trailer block only), when it
/// descends from `source`.
fn newer_source(repo: &Repository, tip: &Commit, source: Oid) -> Result<Option<Oid>, GitError> {
    let Some(recorded) = trailers::recorded(tip).map(|r| r.source) else {
        return Ok(None);
    };
    Ok(shallow::descends(repo, recorded, source)?.then_some(recorded))
}
