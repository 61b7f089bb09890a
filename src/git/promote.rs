//! The promotion algorithm, blocking (run it off the async threads): read at the tested commit,
//! write at the branch head without a work tree, push, and on a moved branch redo it on the new
//! head.

use std::{collections::HashMap, path::Path};

use git2::{Commit, Oid, Repository, Signature, Tree};
use tracing::{Span, info, warn};

use super::{
    GitError, GitSettings, Promotion, PromotionOutcome, PromotionResult, blob,
    cache::{self, RepoCache, git, tracking_ref},
    index::{Latest, PromotionIndex},
    push::{backoff, push},
    shallow, signing, trailers,
};
use crate::{
    credentials::Credentials,
    diff::{Edit, changed_lines},
    values,
};

const FILE_MODES: [i32; 2] = [0o100644, 0o100755];

/// Runs promotions of one remote, branch and author as one batch against the cached clone:
/// one fetch, one commit per promotion (each on top of the previous), one push for all, and on
/// a moved branch all of it again on the new head. Answers in the order given. What concerns
/// one promotion is logged in its run's span (`spans`, one per promotion); `index` is the
/// branch's promotion index.
pub(super) fn run(
    cache: &RepoCache,
    settings: &GitSettings,
    batch: &[Promotion],
    spans: &[Span],
    index: &mut PromotionIndex,
) -> Vec<Result<PromotionResult, GitError>> {
    if batch.is_empty() {
        return Vec::new();
    }
    let mut answers: Vec<Option<Result<PromotionResult, GitError>>> =
        batch.iter().map(|_| None).collect();
    let mut failure = run_batch(cache, settings, batch, spans, index, &mut answers).err();
    let pending = answers.iter().filter(|a| a.is_none()).count();
    if matches!(failure, Some(GitError::PushRefused(_))) && pending > 1 {
        // The server refused the batch for something one of its commits did (a hook, a
        // ruleset, a path restriction), not for a race: push them one by one, so only the
        // offending promotion fails.
        warn!(error = ?failure, promotions = pending, "batched push refused; pushing one by one");
        failure = None;
        for i in 0..batch.len() {
            if answers[i].is_some() {
                continue;
            }
            let mut alone = [None];
            let one = (&batch[i..=i], &spans[i..=i]);
            let failed = run_batch(cache, settings, one.0, one.1, index, &mut alone).err();
            answers[i] = alone[0].take().or(failed.map(Err));
        }
    }
    answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| {
                Err(failure
                    .clone()
                    .unwrap_or_else(|| GitError::Other("promotion left unanswered".into())))
            })
        })
        .collect()
}

/// Fills `answers`; an error returned is the answer of every promotion still without one.
fn run_batch(
    cache: &RepoCache,
    settings: &GitSettings,
    batch: &[Promotion],
    spans: &[Span],
    index: &mut PromotionIndex,
    answers: &mut [Option<Result<PromotionResult, GitError>>],
) -> Result<(), GitError> {
    let started = std::time::Instant::now();
    let first = &batch[0]; // never empty: see run()
    let url = &first.repo;
    // A request's own Secret goes to its repo only, and never in clear text unless allowed;
    // otherwise the credential scopes decide (none for a remote outside every scope).
    let creds = settings
        .credentials
        .for_run(&first.repo, first.credentials.as_ref());
    let branch_spec = format!(
        "+refs/heads/{0}:{1}",
        first.branch,
        tracking_ref(&first.branch)
    );
    let (_held, mut repo) = cache.take(url)?;
    // A clone made from nothing starts shallow.
    let depth = |repo: &Repository| shallow::first_depth(repo, url);
    let fetched = cache::fetch_at_depth(&repo, url, &[&branch_spec], settings, creds, depth(&repo));
    if let Err(e) = fetched {
        if !cache::is_corruption(&e) {
            return Err(e);
        }
        warn!(error = %e, "fetch into the cached clone failed; cloning again");
        repo = cache.reset(url)?;
        cache::fetch_at_depth(&repo, url, &[&branch_spec], settings, creds, depth(&repo))?;
    }
    let fetched_ms = started.elapsed().as_millis() as u64;
    let batch = Batch {
        settings,
        creds,
        promotions: batch,
        spans,
        branch_spec: &branch_spec,
        started,
        fetched_ms,
    };
    let head = tracking_ref(&first.branch);
    let remote = (url, head.as_str(), branch_spec.as_str());
    let open = || cache.open(url);
    shallow::deepening(&mut repo, open, remote, (settings, creds), |repo| {
        answers.iter_mut().for_each(|answer| *answer = None);
        decide_and_push(repo, &batch, index, answers)
    })
}

/// One batch of promotions, fetched.
struct Batch<'a> {
    settings: &'a GitSettings,
    creds: Option<&'a Credentials>,
    promotions: &'a [Promotion],
    spans: &'a [Span],
    branch_spec: &'a str,
    started: std::time::Instant,
    fetched_ms: u64,
}

/// Decides every promotion of the batch and pushes their commits, fetching again on a lost
/// race. [`GitError::NeedsHistory`] (a shallow clone must be deepened first) leaves every
/// answer to the next call.
fn decide_and_push(
    repo: &Repository,
    b: &Batch,
    index: &mut PromotionIndex,
    answers: &mut [Option<Result<PromotionResult, GitError>>],
) -> Result<(), GitError> {
    let Batch {
        settings,
        creds,
        promotions: batch,
        spans,
        branch_spec,
        started,
        fetched_ms,
    } = *b;
    let first = &batch[0];
    let url = &first.repo;
    let mut sources = Vec::with_capacity(batch.len());
    for ((p, answer), span) in batch.iter().zip(answers.iter_mut()).zip(spans) {
        match span.in_scope(|| read_source(repo, p, settings, creds)) {
            Ok(source) => sources.push(Some(source)),
            Err(GitError::NeedsHistory) => return Err(GitError::NeedsHistory),
            Err(e) => {
                *answer = Some(Err(e));
                sources.push(None);
            }
        }
    }

    for attempt in 1..=settings.push_attempts {
        if attempt > 1 {
            std::thread::sleep(backoff(attempt));
            cache::fetch(repo, url, &[branch_spec], settings, creds)?;
        }
        let head = repo
            .find_reference(&tracking_ref(&first.branch))
            .and_then(|r| r.peel_to_commit())
            .map_err(|_| GitError::NotFound(format!("branch `{}` not found", first.branch)))?;
        index.update(repo, head.id())?;
        // Outcomes hold only once the commits they stand on are pushed; so do their notes.
        let mut tentative = Vec::new();
        let mut tip = head.clone();
        let mut noted = Notes::new();
        for (i, p) in batch.iter().enumerate() {
            let Some((source, versions)) = sources[i].as_ref().filter(|_| answers[i].is_none())
            else {
                continue;
            };
            let edited = spans[i].in_scope(|| {
                edit(
                    repo,
                    settings,
                    creds,
                    p,
                    &tip,
                    source,
                    versions,
                    (&mut *index, &mut noted),
                )
            });
            match edited {
                Ok((result, commit)) => {
                    if let Some(commit) = commit {
                        tip = git(repo.find_commit(commit))?;
                    }
                    tentative.push((i, result, commit));
                }
                Err(GitError::NeedsHistory) => return Err(GitError::NeedsHistory),
                Err(e) => answers[i] = Some(Err(e)),
            }
        }
        let promoted = |r: &PromotionResult| r.outcome == PromotionOutcome::Promoted;
        if tip.id() == head.id() || first.dry_run {
            for (i, mut result, _) in tentative {
                if first.dry_run && promoted(&result) {
                    result.outcome = PromotionOutcome::DryRun;
                }
                answers[i] = Some(Ok(result));
            }
            return Ok(());
        }
        let pushing = std::time::Instant::now();
        if push(repo, first, tip.id(), head.id(), settings, creds)? {
            let push_ms = pushing.elapsed().as_millis() as u64;
            git(repo.reference(
                &tracking_ref(&first.branch),
                tip.id(),
                true,
                "phasegate promotion",
            ))?;
            let commits = tentative.iter().filter(|(_, r, _)| promoted(r)).count();
            // Promotions share a push only when they share a signer (see run_batches).
            let signer = first.signer.as_ref().or(settings.signer.as_ref());
            let total_ms = started.elapsed().as_millis() as u64;
            info!(head = %tip.id(), commits, attempt, fetched_ms, push_ms, total_ms, "pushed promotion");
            // The pushes are counted once, on the first promotion that made them.
            let mut counted = false;
            for (i, mut result, commit) in tentative {
                if promoted(&result) && !counted {
                    result.push_attempts = attempt;
                    counted = true;
                }
                result.commit = commit.map(|c| c.to_string());
                result.signature = commit.and(signer.map(|s| s.info().clone()));
                answers[i] = Some(Ok(result));
            }
            return Ok(());
        }
        warn!(
            attempt,
            "push rejected: the branch moved; retrying on the new head"
        );
    }
    Err(GitError::PushRejected {
        branch: first.branch.clone(),
        attempts: settings.push_attempts,
    })
}

/// The tested commit and the version(s) its source values file holds.
pub(super) fn read_source<'r>(
    repo: &'r Repository,
    p: &Promotion,
    settings: &GitSettings,
    creds: Option<&Credentials>,
) -> Result<(Commit<'r>, Vec<values::Scalar>), GitError> {
    let source = find_source(repo, p, settings, creds)?;
    if !p.allow_unmerged_source {
        check_on_branch(repo, p, source.id())?;
    }
    let source_path = p.source_file();
    let at = format!("at source commit {}", p.commit);
    let (_, text) = read_values(repo, &git(source.tree())?, &source_path, &at)?;
    let versions = p
        .source_keys()
        .into_iter()
        .map(|k| values::read_value(&text, k).map_err(values_error(&source_path)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((source, versions))
}

/// The source commit each (values file, target phase, key) promoted by the commits of this
/// batch attempt records: they are not pushed yet, so not in the index.
pub(super) type Notes = HashMap<(String, String, String), Latest>;

/// Decides one promotion on top of `tip`: already there, superseded (a newer source commit
/// was promoted for one of its keys: in `noted` for this batch, else in the branch's index),
/// or a new commit (not yet pushed) whose id is returned beside the result and noted.
#[allow(clippy::too_many_arguments)]
pub(super) fn edit(
    repo: &Repository,
    settings: &GitSettings,
    creds: Option<&Credentials>,
    p: &Promotion,
    tip: &Commit,
    source: &Commit,
    versions: &[values::Scalar],
    (index, noted): (&mut PromotionIndex, &mut Notes),
) -> Result<(PromotionResult, Option<Oid>), GitError> {
    let target_path = p.path.for_phase(&p.target);
    let tip_tree = git(tip.tree())?;
    let at_head = format!("at the head of branch `{}`", p.branch);
    let (mode, text) = read_values(repo, &tip_tree, &target_path, &at_head)?;
    let keys = p.target_keys();
    let current = keys
        .iter()
        .map(|k| values::read_value(&text, k).map_err(values_error(&target_path)))
        .collect::<Result<Vec<_>, _>>()?;
    // The commit is named in the answer once it is pushed.
    let result = |outcome| PromotionResult {
        outcome,
        version: versions[0].to_string(),
        previous: current[0].to_string(),
        commit: None,
        source_commit: source.id().to_string(),
        push_attempts: 0,
        signature: None,
        edit: None,
    };
    // Same text and same type: a type-only difference (`"3"` where the source has `3`) is
    // promoted, so the target reads as the source does.
    if current == versions {
        return Ok((result(PromotionOutcome::AlreadyPromoted), None));
    }
    let target = p.target.as_str();
    // A deliberate rollback promotes an older version on purpose.
    for (&key, version) in keys.iter().zip(versions).filter(|_| !p.rollback) {
        let noted = noted.get(&(target_path.clone(), target.to_string(), key.to_string()));
        let recorded = match noted {
            Some(latest) => Some(latest.clone()),
            None => index.latest(repo, (&target_path, target, key), source.time().seconds())?,
        };
        let Some(recorded) = recorded else {
            continue;
        };
        if recorded.rolled_back.as_deref() == Some(version.text()) {
            info!(run = %p.run_id, key = %key, version = %version, "this version was rolled back; only a rollback promotes it again");
            return Ok((result(PromotionOutcome::Superseded), None));
        }
        if shallow::descends(repo, recorded.source, source.id())? {
            info!(run = %p.run_id, key = %key, newer = %recorded.source, "a newer source commit was already promoted");
            return Ok((result(PromotionOutcome::Superseded), None));
        }
    }
    let mut edited = text.clone();
    for (key, value) in keys.iter().zip(versions) {
        edited = values::set_scalar(&edited, key, value).map_err(values_error(&target_path))?;
    }
    let blob = git(repo.blob(edited.as_bytes()))?;
    let mode = if mode == 0o100755 {
        git2::FileMode::BlobExecutable
    } else {
        git2::FileMode::Blob
    };
    let tree = git(git2::build::TreeUpdateBuilder::new()
        .upsert(&target_path, blob, mode)
        .create_updated(repo, &tip_tree))?;
    let text_of = |scalars: &[values::Scalar]| scalars.iter().map(|s| s.to_string()).collect();
    let (new, old): (Vec<String>, Vec<String>) = (text_of(versions), text_of(&current));
    let message = trailers::message(p, &new, &old, source.id())?;
    let sig = signature(settings, creds)?;
    let signer = p.signer.as_ref().or(settings.signer.as_ref());
    let tree = git(repo.find_tree(tree))?;
    let commit = signing::write_commit(repo, signer, &sig, &message, &tree, tip)?;
    for (key, before) in keys.iter().zip(&current) {
        let latest = Latest {
            source: source.id(),
            rolled_back: p.rollback.then(|| before.to_string()),
        };
        noted.insert(
            (target_path.clone(), target.to_string(), key.to_string()),
            latest,
        );
    }
    let mut promoted = result(PromotionOutcome::Promoted);
    promoted.edit = Some(Edit {
        lines: changed_lines(&text, &edited),
        path: target_path,
        message,
    });
    Ok((promoted, Some(commit)))
}

fn values_error(path: &str) -> impl Fn(values::ValuesError) -> GitError + '_ {
    move |source| GitError::Values {
        path: path.to_string(),
        source,
    }
}

/// Finds the tested commit, fetching every branch (and the commit itself) when the branch
/// alone does not hold it: Argo CD may have synced a commit that is no longer on the head.
fn find_source<'r>(
    repo: &'r Repository,
    p: &Promotion,
    settings: &GitSettings,
    creds: Option<&Credentials>,
) -> Result<Commit<'r>, GitError> {
    let find = || repo.find_commit_by_prefix(p.commit.as_str()).ok();
    if let Some(c) = find() {
        return Ok(c);
    }
    if repo.is_shallow() {
        // Deeper on the branch, most likely: deepen before looking at other branches.
        return Err(GitError::NeedsHistory);
    }
    let url = &p.repo;
    cache::fetch(
        repo,
        url,
        &["+refs/heads/*:refs/remotes/origin/*"],
        settings,
        creds,
    )?;
    if find().is_none() && p.commit.as_str().len() == 40 {
        // Servers that allow fetching any reachable commit serve it even off every branch.
        let _ = cache::fetch(repo, url, &[p.commit.as_str()], settings, creds);
    }
    find().ok_or_else(|| {
        GitError::NotFound(format!(
            "source commit {} not found in the repository",
            p.commit
        ))
    })
}

/// Only committed versions that reached the branch are promoted: the source commit must be the
/// branch's head (as just fetched) or one of its ancestors. A commit pushed to another ref —
/// a feature branch, a pull request head — is refused, whoever names it in an event.
fn check_on_branch(repo: &Repository, p: &Promotion, source: Oid) -> Result<(), GitError> {
    let head = repo
        .find_reference(&tracking_ref(&p.branch))
        .and_then(|r| r.peel_to_commit())
        .map_err(|_| GitError::NotFound(format!("branch `{}` not found", p.branch)))?
        .id();
    if head == source || shallow::descends(repo, head, source)? {
        return Ok(());
    }
    Err(GitError::NotOnBranch {
        commit: source.to_string(),
        branch: p.branch.clone(),
    })
}

/// Reads a values file from a tree: a regular UTF-8 file of bounded size, nothing else.
pub(super) fn read_values(
    repo: &Repository,
    tree: &Tree,
    path: &str,
    at: &str,
) -> Result<(i32, String), GitError> {
    let entry = tree
        .get_path(Path::new(path))
        .map_err(|_| GitError::NotFound(format!("values file `{path}` not found {at}")))?;
    let unsupported = |reason| GitError::Unsupported {
        path: path.to_string(),
        reason,
    };
    match entry.filemode() {
        m if FILE_MODES.contains(&m) => {}
        0o120000 => {
            return Err(unsupported(
                "is a symbolic link; phasegate edits regular files only",
            ));
        }
        _ => return Err(unsupported("is not a regular file")),
    }
    let blob = blob::values_blob(repo, entry.id(), path)?;
    let text = std::str::from_utf8(blob.content()).map_err(|_| unsupported("is not UTF-8"))?;
    Ok((entry.filemode(), text.to_string()))
}

/// The author: always `git.authorName`, never the credentials' username (a username is a
/// login, and one holding an email would pose as that person); the credentials' email (the
/// classic `GIT_EMAIL`, a Secret's `email`) else `git.authorEmail`.
fn signature(
    settings: &GitSettings,
    creds: Option<&Credentials>,
) -> Result<Signature<'static>, GitError> {
    let email = creds
        .and_then(|c| c.email.as_deref())
        .unwrap_or(&settings.author_email);
    git(Signature::now(&settings.author_name, email))
}
