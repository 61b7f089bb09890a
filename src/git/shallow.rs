//! Shallow clones: what a promotion needs, not the history.
//!
//! A promotion reads one file at the source commit and one at the branch head, and writes one
//! commit; its checks look back only as far as the source commit's day (see
//! [`CLOCK_SKEW_SECS`]). So a clone made from nothing fetches the branch's newest
//! [`FIRST_DEPTH`] commits only, and a check that reaches the shallow boundary before it has
//! its answer (a source commit deeper than that, the ancestry of two commits, the newest
//! promotion of a key, a rollback's parent) stops with [`GitError::NeedsHistory`]: the batch
//! deepens the clone ([`deepen`], [`DEEPEN_FACTOR`] times as deep each time, the whole history
//! last) and decides again from the start. Later fetches into a shallow clone keep its boundary
//! and bring only what is new. A clone that was ever deepened to the whole history stays whole.

use std::collections::HashSet;

use git2::{Oid, Repository, Sort};
use tracing::info;

use super::{GitError, GitSettings, cache, cache::git};
use crate::{credentials::Credentials, spec::RepoUrl};

/// Commits a cold clone fetches: far more than lie between a source commit and the head it is
/// promoted onto in practice, few enough to cost milliseconds on any history.
const FIRST_DEPTH: i32 = 64;

/// How much deeper each deepening goes than what the clone holds.
const DEEPEN_FACTOR: usize = 8;

/// Past this depth, the next deepening fetches the whole history.
const WHOLE_HISTORY_PAST: usize = 1 << 18;

/// More than the deepenings from [`FIRST_DEPTH`] to the whole history take.
const MAX_DEEPENINGS: usize = 8;

/// libgit2's `GIT_FETCH_DEPTH_UNSHALLOW`: fetch the whole history, ending the shallow clone.
const UNSHALLOW: i32 = i32::MAX;

/// A promotion commit is made after the source commit it records, which descends from (so is
/// made after) any commit it supersedes; clocks of different machines disagree, by far less
/// than this. Commits older than a commit's time less this are not looked at for its
/// descendants.
pub(super) const CLOCK_SKEW_SECS: i64 = 24 * 3600;

/// Opens the clone at `path` with its shallow boundary: `Repository::open_bare` does not read
/// git's `shallow` file, so libgit2 would look for the parents of the boundary's commits.
pub(super) fn open(path: &std::path::Path) -> Result<Repository, git2::Error> {
    use git2::RepositoryOpenFlags as Open;
    let flags = Open::NO_SEARCH | Open::BARE | Open::NO_DOTGIT;
    Repository::open_ext(path, flags, std::iter::empty::<&std::ffi::OsStr>())
}

/// The commits whose parents a shallow clone does not hold (git's `shallow` file).
pub(super) fn roots(repo: &Repository) -> HashSet<Oid> {
    std::fs::read_to_string(repo.path().join("shallow"))
        .map(|text| {
            text.lines()
                .filter_map(|line| Oid::from_str(line.trim()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// True when `a` descends from `b` (false when they are the same commit), as
/// `graph_descendant_of`, a missing commit being no descendant. In a shallow clone an answer
/// that depends on history it does not hold is [`GitError::NeedsHistory`]: a missing commit,
/// or a walk from `a` (skipping `b`'s ancestors) that meets the boundary among commits newer
/// than `b`'s time less [`CLOCK_SKEW_SECS`].
pub(super) fn descends(repo: &Repository, a: Oid, b: Oid) -> Result<bool, GitError> {
    if a == b {
        return Ok(false);
    }
    let answer = repo.graph_descendant_of(a, b);
    if !repo.is_shallow() || matches!(answer, Ok(true)) {
        return Ok(answer.unwrap_or(false));
    }
    let (Ok(_), Ok(older)) = (repo.find_commit(a), repo.find_commit(b)) else {
        return Err(GitError::NeedsHistory);
    };
    let since = older.time().seconds().saturating_sub(CLOCK_SKEW_SECS);
    let roots = roots(repo);
    let mut walk = git(repo.revwalk())?;
    git(walk.set_sorting(Sort::TIME))?;
    git(walk.push(a))?;
    git(walk.hide(b))?;
    for oid in walk {
        let oid = git(oid)?;
        if git(repo.find_commit(oid))?.time().seconds() < since {
            break;
        }
        if roots.contains(&oid) {
            return Err(GitError::NeedsHistory);
        }
    }
    Ok(false)
}

/// The depth of a fetch into `repo` from `url`: [`FIRST_DEPTH`] when the clone holds no
/// reference yet, unless the remote is a local directory (libgit2's local transport fetches no
/// shallow history; copying it costs no network).
pub(super) fn first_depth(repo: &Repository, url: &RepoUrl) -> Option<i32> {
    let cold = repo
        .references()
        .map(|mut refs| refs.next().is_none())
        .unwrap_or(false);
    (cold && url.scheme() != "file").then_some(FIRST_DEPTH)
}

/// Runs `decide` on the clone until it answers without asking for more history, deepening the
/// clone (fetching `refspec` of `url`; `head` is its tracking ref) and opening it again with
/// `open` between tries. Past [`MAX_DEEPENINGS`] (a server that does not deepen), an error.
pub(super) fn deepening<T>(
    repo: &mut Repository,
    open: impl Fn() -> Result<Repository, GitError>,
    (url, head, refspec): (&RepoUrl, &str, &str),
    (settings, creds): (&GitSettings, Option<&Credentials>),
    mut decide: impl FnMut(&Repository) -> Result<T, GitError>,
) -> Result<T, GitError> {
    for _ in 0..MAX_DEEPENINGS {
        match decide(repo) {
            Err(GitError::NeedsHistory) => {
                deepen(repo, head, (url, refspec), settings, creds)?;
                *repo = open()?;
            }
            done => return done,
        }
    }
    Err(GitError::Other(format!(
        "the cached clone of {url} is still shallow after deepening it {MAX_DEEPENINGS} times"
    )))
}

/// Deepens a shallow clone: fetches `refspec` again, [`DEEPEN_FACTOR`] times as deep as the
/// commits reachable from `head` in the clone, or the whole history past
/// [`WHOLE_HISTORY_PAST`]. Callers open the clone again afterwards: libgit2 keeps commits it
/// parsed as they were.
fn deepen(
    repo: &Repository,
    head: &str,
    (url, refspec): (&RepoUrl, &str),
    settings: &GitSettings,
    creds: Option<&Credentials>,
) -> Result<(), GitError> {
    if !repo.is_shallow() {
        return Err(GitError::Other(
            "a check asked for more history than the whole history of the clone".into(),
        ));
    }
    let held = match repo.find_reference(head).and_then(|r| r.peel_to_commit()) {
        Ok(tip) => {
            let mut walk = git(repo.revwalk())?;
            git(walk.push(tip.id()))?;
            walk.take(WHOLE_HISTORY_PAST).count()
        }
        Err(_) => 0,
    };
    let depth = held.max(FIRST_DEPTH as usize) * DEEPEN_FACTOR;
    let depth = if depth > WHOLE_HISTORY_PAST {
        UNSHALLOW
    } else {
        depth as i32
    };
    let started = std::time::Instant::now();
    cache::fetch_at_depth(repo, url, &[refspec], settings, creds, Some(depth))?;
    info!(
        held,
        depth = (depth != UNSHALLOW).then_some(depth),
        ms = started.elapsed().as_millis() as u64,
        "deepened the shallow clone"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use git2::{Signature, Time};

    use super::*;

    /// A repository with commits `times` (seconds) in a line, oldest first; returns their ids.
    fn line(dir: &std::path::Path, times: &[i64]) -> (Repository, Vec<Oid>) {
        let repo = Repository::init_bare(dir).expect("init");
        let tree = repo
            .find_tree(
                repo.treebuilder(None)
                    .and_then(|b| b.write())
                    .expect("tree"),
            )
            .expect("tree");
        let mut ids: Vec<Oid> = Vec::new();
        for &time in times {
            let sig = Signature::new("a", "a@example.com", &Time::new(time, 0)).expect("sig");
            let parent = ids.last().map(|&id| repo.find_commit(id).expect("parent"));
            let parents: Vec<&git2::Commit> = parent.iter().collect();
            let message = format!("at {time}");
            let id = repo
                .commit(
                    Some("refs/heads/main"),
                    &sig,
                    &sig,
                    &message,
                    &tree,
                    &parents,
                )
                .expect("commit");
            ids.push(id);
        }
        drop(tree);
        (repo, ids)
    }

    /// Makes `root` the boundary of a shallow clone, as a shallow fetch leaves it.
    fn cut_below(repo: &Repository, root: Oid) -> Repository {
        std::fs::write(repo.path().join("shallow"), format!("{root}\n")).expect("shallow");
        open(repo.path()).expect("reopen")
    }

    const DAY: i64 = 24 * 3600;

    #[test]
    fn a_whole_history_answers_as_libgit2_does() {
        let dir = tempfile::tempdir().expect("dir");
        let (repo, c) = line(dir.path(), &[DAY, 2 * DAY, 3 * DAY]);
        assert!(descends(&repo, c[2], c[0]).expect("answers"));
        assert!(!descends(&repo, c[0], c[2]).expect("answers"));
        assert!(!descends(&repo, c[1], c[1]).expect("answers"));
        assert!(!descends(&repo, c[1], Oid::zero()).expect("a missing commit descends from none"));
    }

    #[test]
    fn an_answer_below_the_boundary_asks_for_history() {
        let dir = tempfile::tempdir().expect("dir");
        let (repo, c) = line(
            dir.path(),
            &[10 * DAY, 10 * DAY + 60, 10 * DAY + 120, 10 * DAY + 180],
        );
        let repo = cut_below(&repo, c[1]);
        assert_eq!(roots(&repo), HashSet::from([c[1]]));
        // Above the boundary the walk needs nothing more.
        assert!(descends(&repo, c[3], c[2]).expect("answers"));
        assert!(descends(&repo, c[3], c[1]).expect("answers"));
        // c[0] is below it: its descendants cannot be told.
        assert!(matches!(
            descends(&repo, c[3], c[0]),
            Err(GitError::NeedsHistory)
        ));
        // A commit the clone does not hold.
        let elsewhere = Oid::from_str("4b825dc642cb6eb9a060e54bf8d69288fbee4904").expect("oid");
        assert!(matches!(
            descends(&repo, elsewhere, c[2]),
            Err(GitError::NeedsHistory)
        ));
    }

    #[test]
    fn a_boundary_older_than_the_commits_day_is_not_reached_for() {
        let dir = tempfile::tempdir().expect("dir");
        // c[1] (the boundary) is three days older than c[2]; an unrelated commit of c[2]'s day.
        let (repo, c) = line(dir.path(), &[DAY, 2 * DAY, 5 * DAY, 5 * DAY + 60]);
        let unrelated = {
            let sig =
                Signature::new("a", "a@example.com", &Time::new(5 * DAY + 30, 0)).expect("sig");
            let tree = repo.find_commit(c[2]).and_then(|c| c.tree()).expect("tree");
            repo.commit(None, &sig, &sig, "other", &tree, &[])
                .expect("commit")
        };
        let repo = cut_below(&repo, c[1]);
        // Whether c[3] descends from it: the walk stops at commits older than its day, before
        // the boundary.
        assert!(!descends(&repo, c[3], unrelated).expect("answers without deepening"));
    }

    #[test]
    fn a_deepening_that_cannot_fetch_ends_with_its_error() {
        let dir = tempfile::tempdir().expect("dir");
        let (clone, c) = line(&dir.path().join("clone"), &[DAY, 2 * DAY]);
        let mut clone = cut_below(&clone, c[1]);
        // libgit2's local transport refuses any shallow fetch: the deepening fails.
        let origin = dir.path().join("origin");
        line(&origin, &[DAY]);
        let url = RepoUrl::parse(&format!("file://{}", origin.display())).expect("url");
        let settings = GitSettings {
            cache_dir: dir.path().to_path_buf(),
            push_attempts: 1,
            max_fetch_bytes: super::super::DEFAULT_MAX_FETCH_BYTES,
            author_name: "phasegate".into(),
            author_email: "phasegate@example.com".into(),
            credentials: Default::default(),
            ssh_key: None,
            ssh_known_hosts: None,
            signer: None,
            signing_allowed_signers: None,
        };
        let remote = (
            &url,
            "refs/remotes/origin/main",
            "+refs/heads/main:refs/remotes/origin/main",
        );
        let mut tries = 0;

        let answer = deepening(
            &mut clone,
            || Err(GitError::Other("opened again".into())),
            remote,
            (&settings, None),
            |_| {
                tries += 1;
                Err::<(), _>(GitError::NeedsHistory)
            },
        );

        let error = answer.expect_err("the fetch fails");
        assert!(
            error.to_string().contains("shallow fetch is not supported"),
            "{error}"
        );
        assert_eq!(tries, 1, "decided once, not again after a failed deepening");
    }
}
