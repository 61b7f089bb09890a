//! Pushing a promotion commit: only over the head it was built on (a lease checked in the push
//! negotiation, and by the server again), atomically for `file://` remotes, with jittered
//! backoff between attempts.

use std::{cell::RefCell, path::Path, rc::Rc, time::Duration};

use git2::{ErrorCode, Oid, PushOptions, RemoteRedirect, Repository};

use super::{
    GitError, GitSettings, Promotion, auth,
    cache::{self, git},
    smart_http,
};
use crate::credentials::Credentials;

/// Pushes `commit` to the branch only if the remote branch is still at `parent` (like
/// `--force-with-lease`, checked on every transport before any ref moves; the server checks
/// the old id again when it updates the ref). `Ok(false)` means the branch moved (retry);
/// [`GitError::PushRefused`] that the server refused the update for another reason (a hook,
/// a protection rule), which no retry on a new head would change.
pub(super) fn push(
    repo: &Repository,
    p: &Promotion,
    commit: Oid,
    parent: Oid,
    settings: &GitSettings,
    creds: Option<&Credentials>,
) -> Result<bool, GitError> {
    let to = Lease {
        branch: &p.branch,
        expected: parent,
        force: false,
    };
    push_to(repo, p, commit, to, settings, creds)
}

/// Where a push goes and what it may replace.
pub(super) struct Lease<'a> {
    pub branch: &'a str,
    /// The id the remote branch must still have (zero: the branch must not exist).
    pub expected: Oid,
    /// Replace a commit that is not an ancestor (phasegate's own proposal branches only).
    pub force: bool,
}

/// Pushes `commit` to `to.branch` only while the remote branch is at `to.expected`.
pub(super) fn push_to(
    repo: &Repository,
    p: &Promotion,
    commit: Oid,
    to: Lease,
    settings: &GitSettings,
    creds: Option<&Credentials>,
) -> Result<bool, GitError> {
    let parent = to.expected;
    // libgit2 pushes references, not bare commits: stage the commit under a private ref.
    let staging = format!("refs/phasegate/push/{}", p.run_id);
    git(repo.reference(&staging, commit, true, "phasegate push"))?;
    // libgit2's local transport moves the ref without checking its old value: for a `file://`
    // remote, write the objects and swap the branch here, atomically.
    let local = p.repo.local_path();
    let branch_ref = format!("refs/heads/{}", to.branch);
    if let Some(path) = local {
        let _ = repo.find_reference(&staging).and_then(|mut r| r.delete());
        return push_local(repo, path, &branch_ref, commit, parent);
    }
    let (mut callbacks, trace) = auth::callbacks(&p.repo, creds, settings);
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
    // As for fetches: no redirect to another host.
    opts.remote_callbacks(callbacks)
        .follow_redirects(RemoteRedirect::None);
    let http = smart_http::Scope::enter(
        auth::preemptive_header(&p.repo, creds),
        settings.max_fetch_bytes,
    );
    let pushed = repo
        .remote_anonymous(p.repo.as_str())
        .and_then(|mut remote| {
            let plus = if to.force { "+" } else { "" };
            remote.push(&[format!("{plus}{staging}:{branch_ref}")], Some(&mut opts))
        });
    if let Ok(mut r) = repo.find_reference(&staging) {
        let _ = r.delete();
    }
    match pushed {
        Err(_) if *moved.borrow() => Ok(false),
        Err(e) if is_race_code(e.code()) => Ok(false),
        Err(e) => Err(cache::classify(http.error(e), trace.failure())),
        Ok(()) => match refused.borrow().as_deref() {
            None => Ok(true),
            Some(reason) if is_race(reason) => Ok(false),
            Some(reason) => Err(GitError::PushRefused(reason.to_string())),
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
        Err(e) if is_race_code(e.code()) => Ok(false),
        Err(e) => Err(cache::classify(e, None)),
    }
}

/// libgit2 error codes that mean "someone else moved or is moving the branch": a push that
/// would not fast-forward, a ref whose old value changed, a ref locked by another update.
fn is_race_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotFastForward | ErrorCode::Modified | ErrorCode::Locked
    )
}

/// The status of a refused ref update (`ng <ref> <status>` of the push protocol) that means
/// "someone else pushed first", as opposed to a hook, a ruleset or a path restriction. Only
/// the statuses servers send for a lost race count, matched whole (or by their fixed
/// beginning where the server appends the ref name), never a word searched anywhere in the
/// message: a hook's message may say anything.
pub(super) fn is_race(status: &str) -> bool {
    let status = status.trim();
    // git receive-pack: the ref is not an ancestor of the pushed commit; the ref transaction
    // (lock or old-value check) failed; libgit2/git client-side lease and fast-forward checks.
    const RACES: [&str; 6] = [
        "non-fast-forward",
        "fetch first",
        "stale info",
        "failed to update ref",
        "failed to lock",
        // GitLab (Gitaly) when the ref's old value changed under the push.
        "incorrect old value provided",
    ];
    // GitHub and git's ref backends: "cannot lock ref 'refs/heads/main': is at … but expected …"
    // or "… reference already exists"; the ref name follows the fixed words.
    RACES.contains(&status) || status.starts_with("cannot lock ref '")
}

/// Jittered exponential backoff: 50 ms doubling to 2 s, so racing promoters spread out.
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = 50u64.saturating_mul(1 << attempt.min(6)).min(2000);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_lost_races_from_the_servers_statuses() {
        for race in [
            "non-fast-forward",
            "fetch first",
            "stale info",
            "failed to update ref",
            "failed to lock",
            "incorrect old value provided",
            "cannot lock ref 'refs/heads/main': is at 401aa but expected 5b2c0",
        ] {
            assert!(is_race(race), "{race}");
        }
    }

    #[test]
    fn a_hook_or_rule_refusal_is_no_race_whatever_its_words() {
        for refusal in [
            "pre-receive hook declined",
            "hook declined",
            "protected branch hook declined",
            "push declined due to repository rule violations",
            // A hook's own words may mention locks or fast-forwards: still not a race.
            "hook declined: file is locked by policy, no fast-forward of releases",
            "deny updating a hidden ref",
        ] {
            assert!(!is_race(refusal), "{refusal}");
        }
        assert!(is_race_code(ErrorCode::Locked));
        assert!(!is_race_code(ErrorCode::Auth));
    }
}
