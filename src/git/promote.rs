//! The promotion algorithm, blocking (run it off the async threads): read at the tested commit,
//! write at the branch head without a work tree, push, and on a moved branch redo it on the new
//! head.

use std::{cell::RefCell, path::Path, rc::Rc, time::Duration};

use git2::{Commit, ErrorCode, Oid, PushOptions, Repository, Signature, Tree};
use tracing::{info, warn};

use super::{
    Credentials, GitError, GitSettings, Promotion, PromotionOutcome, PromotionResult, auth,
    cache::{self, RepoCache, git, tracking_ref},
};
use crate::values;

/// Values files are small; a huge one is a mistake or an attack, refused before parsing.
const MAX_VALUES_BYTES: usize = 1 << 20;
/// How far back to look for the last promotion into a target: far beyond any real gap.
const HISTORY_SCAN_LIMIT: usize = 20_000;

const FILE_MODES: [i32; 2] = [0o100644, 0o100755];

/// Runs one promotion against the cached clone of its remote.
pub fn run(
    cache: &RepoCache,
    settings: &GitSettings,
    p: &Promotion,
) -> Result<PromotionResult, GitError> {
    let started = std::time::Instant::now();
    let url = p.repo.as_str();
    let creds = p.credentials.as_ref().or(settings.credentials.as_ref());
    let branch_spec = format!("+refs/heads/{0}:{1}", p.branch, tracking_ref(&p.branch));
    let mut repo = cache.open(url)?;
    if let Err(e) = cache::fetch(&repo, url, &[&branch_spec], settings, creds) {
        if !cache::is_corruption(&e) {
            return Err(e);
        }
        warn!(error = %e, "fetch into the cached clone failed; cloning again");
        repo = cache.reset(url)?;
        cache::fetch(&repo, url, &[&branch_spec], settings, creds)?;
    }
    let fetched_ms = started.elapsed().as_millis() as u64;
    let source = find_source(&repo, p, settings, creds)?;
    let source_path = p.path.replace("{phase}", p.source.as_str());
    let target_path = p.path.replace("{phase}", p.target.as_str());
    let at = format!("at source commit {}", p.commit);
    let (_, source_text) = read_values(&repo, &git(source.tree())?, &source_path, &at)?;
    let versions = p
        .keys
        .iter()
        .map(|k| values::read_scalar(&source_text, k).map_err(values_error(&source_path)))
        .collect::<Result<Vec<_>, _>>()?;
    let version = versions[0].clone();

    for attempt in 1..=settings.push_attempts {
        if attempt > 1 {
            std::thread::sleep(backoff(attempt));
            cache::fetch(&repo, url, &[&branch_spec], settings, creds)?;
        }
        let head = repo
            .find_reference(&tracking_ref(&p.branch))
            .and_then(|r| r.peel_to_commit())
            .map_err(|_| GitError::NotFound(format!("branch `{}` not found", p.branch)))?;
        let head_tree = git(head.tree())?;
        let at_head = format!("at the head of branch `{}`", p.branch);
        let (mode, text) = read_values(&repo, &head_tree, &target_path, &at_head)?;
        let current = p
            .keys
            .iter()
            .map(|k| values::read_scalar(&text, k).map_err(values_error(&target_path)))
            .collect::<Result<Vec<_>, _>>()?;
        let result = |outcome, commit, push_attempts| PromotionResult {
            outcome,
            version: version.clone(),
            previous: current[0].clone(),
            commit,
            source_commit: source.id().to_string(),
            push_attempts,
        };
        if current == versions {
            return Ok(result(PromotionOutcome::AlreadyPromoted, None, attempt - 1));
        }
        let scan = std::time::Instant::now();
        let newer = promoted_after(&repo, &head, &target_path, p, source.id())?;
        let scan_ms = scan.elapsed().as_millis() as u64;
        if let Some(newer) = newer {
            info!(newer = %newer, "a newer source commit was already promoted");
            return Ok(result(PromotionOutcome::Superseded, None, attempt - 1));
        }
        let mut edited = text.clone();
        for (key, value) in p.keys.iter().zip(&versions) {
            edited = values::set_scalar(&edited, key, value).map_err(values_error(&target_path))?;
        }
        let blob = git(repo.blob(edited.as_bytes()))?;
        let tree = git(git2::build::TreeUpdateBuilder::new()
            .upsert(
                &target_path,
                blob,
                if mode == 0o100755 {
                    git2::FileMode::BlobExecutable
                } else {
                    git2::FileMode::Blob
                },
            )
            .create_updated(&repo, &head_tree))?;
        let message = commit_message(p, &versions, &current, &source);
        let sig = signature(settings, creds)?;
        let commit = git(repo.commit(
            None,
            &sig,
            &sig,
            &message,
            &git(repo.find_tree(tree))?,
            &[&head],
        ))?;
        if p.dry_run {
            return Ok(result(PromotionOutcome::DryRun, None, 0));
        }
        let pushing = std::time::Instant::now();
        if push(&repo, p, commit, head.id(), settings, creds)? {
            let push_ms = pushing.elapsed().as_millis() as u64;
            git(repo.reference(
                &tracking_ref(&p.branch),
                commit,
                true,
                "phasegate promotion",
            ))?;
            let total_ms = started.elapsed().as_millis() as u64;
            info!(commit = %commit, attempt, fetched_ms, scan_ms, push_ms, total_ms, "pushed promotion");
            return Ok(result(
                PromotionOutcome::Promoted,
                Some(commit.to_string()),
                attempt,
            ));
        }
        warn!(
            attempt,
            "push rejected: the branch moved; retrying on the new head"
        );
    }
    Err(GitError::PushRejected {
        branch: p.branch.clone(),
        attempts: settings.push_attempts,
    })
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
    let url = p.repo.as_str();
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

/// Reads a values file from a tree: a regular UTF-8 file of bounded size, nothing else.
fn read_values(
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
    let blob = git(repo.find_blob(entry.id()))?;
    if blob.size() > MAX_VALUES_BYTES {
        return Err(unsupported("is larger than 1 MiB"));
    }
    let text = std::str::from_utf8(blob.content()).map_err(|_| unsupported("is not UTF-8"))?;
    Ok((entry.filemode(), text.to_string()))
}

/// The source commit recorded by the last promotion into this target, if it is a descendant
/// of the one being promoted: then a newer version was promoted and this one must not win.
fn promoted_after(
    repo: &Repository,
    head: &Commit,
    target_path: &str,
    p: &Promotion,
    source: Oid,
) -> Result<Option<Oid>, GitError> {
    let mut walk = git(repo.revwalk())?;
    git(walk.push(head.id()))?;
    git(walk.simplify_first_parent())?;
    let needle = format!("Target-Phase: {}", p.target);
    for oid in walk.take(HISTORY_SCAN_LIMIT) {
        let commit = git(repo.find_commit(git(oid)?))?;
        let message = commit.message_raw().unwrap_or_default();
        if !message.contains(&needle) || !touches(&commit, target_path) {
            continue;
        }
        let trailers = git(git2::message_trailers_strs(message))?;
        let recorded = trailers
            .iter()
            .find(|(k, _)| *k == "Source-Commit")
            .and_then(|(_, v)| Oid::from_str(v).ok());
        let Some(recorded) = recorded else { continue };
        let newer =
            recorded != source && repo.graph_descendant_of(recorded, source).unwrap_or(false);
        return Ok(newer.then_some(recorded));
    }
    Ok(None)
}

/// True when `commit` changed `path` relative to its first parent.
fn touches(commit: &Commit, path: &str) -> bool {
    let id_in = |tree: Result<Tree, git2::Error>| {
        tree.ok()
            .and_then(|t| t.get_path(Path::new(path)).ok())
            .map(|e| e.id())
    };
    let parent = commit.parent(0).map(|p| id_in(p.tree()));
    parent.map_or(true, |before| before != id_in(commit.tree()))
}

fn commit_message(
    p: &Promotion,
    versions: &[String],
    previous: &[String],
    source: &Commit,
) -> String {
    let short: String = source.id().to_string().chars().take(12).collect();
    let subject = p
        .message
        .replace("{version}", &versions[0])
        .replace("{previous}", &previous[0])
        .replace("{key}", &p.keys.join(","))
        .replace("{source}", p.source.as_str())
        .replace("{target}", p.target.as_str())
        .replace("{commit}", &short);
    let mut body = String::new();
    for ((key, new), old) in p.keys.iter().zip(versions).zip(previous) {
        body.push_str(&format!("{key}: {old} -> {new}\n"));
    }
    format!(
        "{subject}\n\n{body}\nPromoted-Version: {}\nSource-Phase: {}\nSource-Commit: {}\nTarget-Phase: {}\nPromotion-Run: {}\n",
        versions[0],
        p.source,
        source.id(),
        p.target,
        p.run_id
    )
}

fn signature(
    settings: &GitSettings,
    creds: Option<&Credentials>,
) -> Result<Signature<'static>, GitError> {
    let sig = match creds {
        Some(Credentials {
            username,
            email: Some(email),
            ..
        }) => Signature::now(username, email),
        _ => Signature::now(&settings.author_name, &settings.author_email),
    };
    git(sig)
}

/// Pushes `commit` to the branch only if the remote branch is still at `parent` (like
/// `--force-with-lease`, checked on every transport before any ref moves; the server checks
/// the old id again when it updates the ref). `Ok(false)` means the branch moved (retry).
fn push(
    repo: &Repository,
    p: &Promotion,
    commit: Oid,
    parent: Oid,
    settings: &GitSettings,
    creds: Option<&Credentials>,
) -> Result<bool, GitError> {
    // libgit2 pushes references, not bare commits: stage the commit under a private ref.
    let staging = format!("refs/phasegate/push/{}", p.run_id);
    git(repo.reference(&staging, commit, true, "phasegate push"))?;
    // libgit2's local transport moves the ref without checking its old value: for a `file://`
    // remote, write the objects and swap the branch here, atomically.
    let local = url::Url::parse(p.repo.as_str())
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok());
    let branch_ref = format!("refs/heads/{}", p.branch);
    if let Some(path) = local {
        let _ = repo.find_reference(&staging).and_then(|mut r| r.delete());
        return push_local(repo, &path, &branch_ref, commit, parent);
    }
    let (mut callbacks, trace) = auth::callbacks(creds, settings.ssh_key.as_deref());
    let moved = Rc::new(RefCell::new(false));
    let lease = moved.clone();
    let leased = branch_ref.clone();
    callbacks.push_negotiation(move |updates| {
        let on_branch = |u: &&git2::PushUpdate| u.dst_refname() == Some(leased.as_str());
        if updates.iter().filter(on_branch).any(|u| u.src() != parent) {
            *lease.borrow_mut() = true;
            return Err(git2::Error::from_str(
                "the remote branch moved since the fetch",
            ));
        }
        Ok(())
    });
    let refused = Rc::new(RefCell::new(None));
    let seen = refused.clone();
    callbacks.push_update_reference(move |_, status| {
        *seen.borrow_mut() = status.map(str::to_string);
        Ok(())
    });
    let mut opts = PushOptions::new();
    opts.remote_callbacks(callbacks);
    let header = auth::preemptive_header(p.repo.as_str(), creds);
    if let Some(h) = &header {
        opts.custom_headers(&[h.as_str()]);
    }
    let pushed = repo
        .remote_anonymous(p.repo.as_str())
        .and_then(|mut remote| remote.push(&[format!("{staging}:{branch_ref}")], Some(&mut opts)));
    if let Ok(mut r) = repo.find_reference(&staging) {
        let _ = r.delete();
    }
    match pushed {
        Err(_) if *moved.borrow() => Ok(false),
        Err(e) if e.code() == ErrorCode::NotFastForward => Ok(false),
        Err(e) => Err(cache::classify(e, trace.failure())),
        Ok(()) => match refused.borrow().as_deref() {
            None => Ok(true),
            Some(reason) if is_race(reason) => Ok(false),
            Some(reason) => Err(GitError::AuthRejected(format!(
                "the remote refused the push: {reason}"
            ))),
        },
    }
}

/// Pushes to the repository at `path` on this machine: copies the new objects (children
/// first, so the remote never holds a tree with missing entries), then moves `branch` from
/// `parent` to `commit` only if nobody moved it meanwhile (compare-and-swap under git's lock).
fn push_local(
    repo: &Repository,
    path: &Path,
    branch: &str,
    commit: Oid,
    parent: Oid,
) -> Result<bool, GitError> {
    let remote = git(Repository::open(path))?;
    let (src, dst) = (git(repo.odb())?, git(remote.odb())?);
    let copy = |id: Oid| -> Result<(), git2::Error> {
        if !dst.exists(id) {
            let object = src.read(id)?;
            dst.write(object.kind(), object.data())?;
        }
        Ok(())
    };
    fn copy_tree(
        repo: &Repository,
        dst: &git2::Odb,
        id: Oid,
        copy: &dyn Fn(Oid) -> Result<(), git2::Error>,
    ) -> Result<(), git2::Error> {
        if dst.exists(id) {
            return Ok(());
        }
        for entry in repo.find_tree(id)?.iter() {
            match entry.kind() {
                Some(git2::ObjectType::Tree) => copy_tree(repo, dst, entry.id(), copy)?,
                Some(git2::ObjectType::Blob) => copy(entry.id())?,
                _ => {}
            }
        }
        copy(id)
    }
    let tree = git(repo.find_commit(commit))?.tree_id();
    git(copy_tree(repo, &dst, tree, &copy))?;
    git(copy(commit))?;
    match remote.reference_matching(branch, commit, true, parent, "phasegate promotion") {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.code(), ErrorCode::Modified | ErrorCode::Locked) => Ok(false),
        Err(e) => Err(cache::classify(e, None)),
    }
}

/// Rejections that mean "someone else pushed first" (as opposed to a hook or a protection).
fn is_race(reason: &str) -> bool {
    [
        "non-fast-forward",
        "fetch first",
        "stale info",
        "failed to update ref",
        // Another push holds the ref's lock file at this moment.
        "lock",
    ]
    .iter()
    .any(|r| reason.contains(r))
}

/// Jittered exponential backoff: 50 ms doubling to 2 s, so racing promoters spread out.
fn backoff(attempt: u32) -> Duration {
    let base = 50u64.saturating_mul(1 << attempt.min(6)).min(2000);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base))
}
