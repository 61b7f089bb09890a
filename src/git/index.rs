//! Which source commit the newest promotion of each key of each values file into each target
//! phase recorded (its `Source-Commit` trailer; `Promoted-Keys` names the keys), so
//! `superseded` is decided per key without walking the whole history for every promotion.
//!
//! History is read lazily, newest commit first over every parent (a promotion reached only
//! through a merge's second parent counts), and only as far as a question needs: until the
//! key's newest promotion is found, or until commits older than the promoted source commit
//! (less [`CLOCK_SKEW_SECS`]) — no promotion that could supersede it is older than that. What
//! was read is kept: later questions continue where the walk stopped, and a new head only adds
//! the commits that are new since; a rewritten branch is read again from its head.

use std::collections::{BinaryHeap, HashMap, HashSet, hash_map::Entry};

use git2::{Commit, Oid, Repository, Sort};
use tracing::warn;

use super::{
    GitError,
    cache::git,
    shallow::{self, CLOCK_SKEW_SECS},
    trailers::{self, Recorded},
};

/// Commits read per head before giving up on older promotions: far beyond any real gap
/// between two promotions of a file; past it, older promotions are not seen (a promotion is
/// then not refused as `superseded`) and a warning says so.
const HISTORY_SCAN_LIMIT: usize = 20_000;

/// (values file path, target phase).
type Target = (String, String);

/// What the newest promotion of a key recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Latest {
    /// Its source commit.
    pub source: Oid,
    /// On a deliberate rollback, the version it replaced (rolled back): kept out until another
    /// version is promoted.
    pub rolled_back: Option<String>,
}

/// What the promotions of one file into one phase recorded, newest first.
#[derive(Debug, Default, Clone)]
struct Record {
    /// Key → the newest promotion that changed it (`Promoted-Keys`).
    keys: HashMap<String, Latest>,
    /// The newest promotion that names no keys (made before `Promoted-Keys` existed): it
    /// stands for every key not in `keys`.
    all: Option<Oid>,
}

impl Record {
    /// Adds what an older promotion recorded: it never overrides a newer one.
    fn add_older(&mut self, keys: Option<Vec<(String, Latest)>>, source: Oid) {
        if self.all.is_some() {
            return;
        }
        match keys {
            Some(keys) => {
                for (key, latest) in keys {
                    self.keys.entry(key).or_insert(latest);
                }
            }
            None => self.all = Some(source),
        }
    }

    fn get(&self, key: &str) -> Option<Latest> {
        self.keys
            .get(key)
            .cloned()
            .or(self.all.map(|source| Latest {
                source,
                rolled_back: None,
            }))
    }
}

/// The promotions recorded in one branch's history, read as far as questions needed.
#[derive(Debug, Default)]
pub(super) struct PromotionIndex {
    head: Option<Oid>,
    records: HashMap<Target, Record>,
    /// Commits not read yet, newest (committer time) first; `seen` were queued once.
    pending: BinaryHeap<(i64, Oid)>,
    seen: HashSet<Oid>,
    read: usize,
}

impl PromotionIndex {
    /// Brings the index to `head`: reads the commits new since the indexed head, or starts
    /// over when the branch was rewritten (reading nothing until asked).
    pub(super) fn update(&mut self, repo: &Repository, head: Oid) -> Result<(), GitError> {
        let Some(old) = self.head.filter(|&old| old != head) else {
            if self.head.is_none() {
                self.restart(repo, head)?;
            }
            return Ok(());
        };
        if !repo.graph_descendant_of(head, old).unwrap_or(false) {
            return self.restart(repo, head);
        }
        let mut walk = git(repo.revwalk())?;
        git(walk.set_sorting(Sort::TIME))?;
        git(walk.push(head))?;
        git(walk.hide(old))?;
        let mut newer: HashMap<Target, Record> = HashMap::new();
        let roots = shallow::roots(repo);
        for (n, oid) in walk.enumerate() {
            if n == HISTORY_SCAN_LIMIT {
                return self.restart(repo, head);
            }
            let oid = git(oid)?;
            if roots.contains(&oid) {
                // What a commit changed is read against its parent, which is not here.
                return Err(GitError::NeedsHistory);
            }
            record(repo, &git(repo.find_commit(oid))?, &mut newer)?;
        }
        for (target, record) in newer {
            match self.records.entry(target) {
                Entry::Occupied(mut e) if record.all.is_none() => {
                    e.get_mut().keys.extend(record.keys)
                }
                Entry::Occupied(mut e) => *e.get_mut() = record,
                Entry::Vacant(e) => {
                    e.insert(record);
                }
            }
        }
        self.head = Some(head);
        Ok(())
    }

    /// The source commit recorded by the newest promotion of `key` of `path` into `target`
    /// that could be newer than a source commit made at `since` (seconds): older promotions
    /// are not looked for.
    pub(super) fn latest(
        &mut self,
        repo: &Repository,
        (path, target, key): (&str, &str, &str),
        since: i64,
    ) -> Result<Option<Latest>, GitError> {
        let wanted = (path.to_string(), target.to_string());
        let roots = shallow::roots(repo);
        loop {
            if let Some(found) = self.records.get(&wanted).and_then(|r| r.get(key)) {
                return Ok(Some(found));
            }
            let Some(&(time, oid)) = self.pending.peek() else {
                return Ok(None);
            };
            if time < since.saturating_sub(CLOCK_SKEW_SECS) {
                return Ok(None);
            }
            if self.read == HISTORY_SCAN_LIMIT {
                warn!(
                    commits = HISTORY_SCAN_LIMIT,
                    path, target, "history scan limit reached: older promotions are not considered"
                );
                self.read += 1;
            }
            if self.read > HISTORY_SCAN_LIMIT {
                return Ok(None);
            }
            if roots.contains(&oid) {
                // A shallow clone's boundary: the walk goes on once the clone is deeper.
                return Err(GitError::NeedsHistory);
            }
            self.pending.pop();
            self.read += 1;
            let commit = git(repo.find_commit(oid))?;
            record(repo, &commit, &mut self.records)?;
            for parent in commit.parents() {
                self.queue(&parent);
            }
        }
    }

    fn restart(&mut self, repo: &Repository, head: Oid) -> Result<(), GitError> {
        *self = PromotionIndex {
            head: Some(head),
            ..PromotionIndex::default()
        };
        self.queue(&git(repo.find_commit(head))?);
        Ok(())
    }

    fn queue(&mut self, commit: &Commit) {
        if self.seen.insert(commit.id()) {
            self.pending.push((commit.time().seconds(), commit.id()));
        }
    }
}

/// Adds what `commit` records (if it is a promotion), unless newer commits already did.
fn record(
    repo: &Repository,
    commit: &Commit,
    into: &mut HashMap<Target, Record>,
) -> Result<(), GitError> {
    let Some(Recorded {
        target,
        source,
        keys,
        rollback,
    }) = trailers::recorded(commit)
    else {
        return Ok(());
    };
    let parent_tree = match commit.parent(0) {
        Ok(parent) => Some(git(parent.tree())?),
        Err(_) => None,
    };
    let diff = git(repo.diff_tree_to_tree(parent_tree.as_ref(), Some(&git(commit.tree())?), None))?;
    for delta in diff.deltas() {
        let Some(path) = delta.new_file().path().and_then(|p| p.to_str()) else {
            continue;
        };
        let latest = keys.as_ref().map(|keys| {
            // What a rollback replaced is what the file held before it.
            let before = parent_tree
                .as_ref()
                .filter(|_| rollback)
                .and_then(|tree| tree.get_path(std::path::Path::new(path)).ok())
                .and_then(|entry| super::blob::values_blob(repo, entry.id(), path).ok())
                .and_then(|blob| String::from_utf8(blob.content().to_vec()).ok());
            keys.iter()
                .map(|key| {
                    let rolled_back = before
                        .as_deref()
                        .and_then(|text| crate::values::read_scalar(text, key).ok());
                    (
                        key.clone(),
                        Latest {
                            source,
                            rolled_back,
                        },
                    )
                })
                .collect()
        });
        into.entry((path.to_string(), target.clone()))
            .or_default()
            .add_older(latest, source);
    }
    Ok(())
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
