//! Which source commit the last promotion into each values file and target phase recorded (its
//! `Source-Commit` trailer), so `superseded` is decided without walking the whole history for
//! every promotion. Built once per clone and branch by walking first-parent history back from the
//! head (at most [`HISTORY_SCAN_LIMIT`] commits), then extended by walking only the commits that
//! are new since; a rewritten branch (the indexed head no longer in its history) is walked again.

use std::collections::HashMap;

use git2::{Commit, Oid, Repository};

use super::{GitError, cache::git};

/// How far back to look for the last promotion into a target: far beyond any real gap.
const HISTORY_SCAN_LIMIT: usize = 20_000;

/// (values file path, target phase) → the source commit its last promotion recorded.
#[derive(Debug, Default, Clone)]
pub struct PromotionIndex {
    head: Option<Oid>,
    latest: HashMap<(String, String), Oid>,
}

impl PromotionIndex {
    /// Brings the index to `head`.
    pub fn update(&mut self, repo: &Repository, head: Oid) -> Result<(), GitError> {
        if self.head == Some(head) {
            return Ok(());
        }
        let mut walk = git(repo.revwalk())?;
        git(walk.push(head))?;
        git(walk.simplify_first_parent())?;
        let mut newer = HashMap::new();
        let mut reached = false;
        for oid in walk.take(HISTORY_SCAN_LIMIT) {
            let oid = git(oid)?;
            if Some(oid) == self.head {
                reached = true;
                break;
            }
            record(repo, &git(repo.find_commit(oid))?, &mut newer)?;
        }
        if !reached {
            self.latest.clear();
        }
        self.latest.extend(newer);
        self.head = Some(head);
        Ok(())
    }

    /// The source commit recorded by the last promotion of `path` into `target`.
    pub fn get(&self, path: &str, target: &str) -> Option<Oid> {
        self.latest
            .get(&(path.to_string(), target.to_string()))
            .copied()
    }

    /// Notes a promotion commit built on top of the indexed head (not yet pushed).
    pub fn note(&mut self, path: &str, target: &str, source: Oid) {
        self.latest
            .insert((path.to_string(), target.to_string()), source);
    }
}

/// Adds what `commit` records, unless a newer commit already recorded that file and phase.
fn record(
    repo: &Repository,
    commit: &Commit,
    into: &mut HashMap<(String, String), Oid>,
) -> Result<(), GitError> {
    let message = commit.message_raw().unwrap_or_default();
    if !message.contains("Target-Phase:") {
        return Ok(());
    }
    let trailers = git(git2::message_trailers_strs(message))?;
    let trailer = |name| trailers.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
    let (Some(target), Some(source)) = (
        trailer("Target-Phase"),
        trailer("Source-Commit").and_then(|v| Oid::from_str(v).ok()),
    ) else {
        return Ok(());
    };
    let parent_tree = match commit.parent(0) {
        Ok(parent) => Some(git(parent.tree())?),
        Err(_) => None,
    };
    let diff = git(repo.diff_tree_to_tree(parent_tree.as_ref(), Some(&git(commit.tree())?), None))?;
    for delta in diff.deltas() {
        if let Some(path) = delta.new_file().path().and_then(|p| p.to_str()) {
            into.entry((path.to_string(), target.to_string()))
                .or_insert(source);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::local::commit_files;

    const SRC_A: &str = "1111111111111111111111111111111111111111";
    const SRC_B: &str = "2222222222222222222222222222222222222222";

    fn promotion(target: &str, source: &str) -> String {
        format!("Promote\n\nPromoted-Version: 1\nSource-Commit: {source}\nTarget-Phase: {target}\n")
    }

    fn head(repo: &Repository) -> Oid {
        repo.refname_to_id("refs/heads/main").expect("main")
    }

    #[test]
    fn follows_new_commits_newest_first_and_walks_again_after_a_rewrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("r.git");
        commit_files(&bare, "main", &[("README", "hi")], "initial").expect("commit");
        let before = commit_files(
            &bare,
            "main",
            &[("a/prod.yaml", "1")],
            &promotion("prod", SRC_A),
        )
        .expect("commit");
        let repo = Repository::open_bare(&bare).expect("open");
        let mut index = PromotionIndex::default();
        index.update(&repo, head(&repo)).expect("index");
        assert_eq!(index.get("a/prod.yaml", "prod"), Oid::from_str(SRC_A).ok());
        assert_eq!(
            index.get("a/prod.yaml", "staging"),
            None,
            "per target phase"
        );

        // A human commit with trailers touching two files, then an unrelated one.
        commit_files(
            &bare,
            "main",
            &[("a/prod.yaml", "2"), ("b/prod.yaml", "2")],
            &promotion("prod", SRC_B),
        )
        .expect("commit");
        commit_files(&bare, "main", &[("README", "bye")], "docs").expect("commit");
        index.update(&repo, head(&repo)).expect("index");
        assert_eq!(
            index.get("a/prod.yaml", "prod"),
            Oid::from_str(SRC_B).ok(),
            "newest wins"
        );
        assert_eq!(index.get("b/prod.yaml", "prod"), Oid::from_str(SRC_B).ok());

        // The branch is rewritten back to before those commits: their records go.
        repo.reference(
            "refs/heads/main",
            Oid::from_str(&before).expect("oid"),
            true,
            "reset",
        )
        .expect("reset");
        index.update(&repo, head(&repo)).expect("index");
        assert_eq!(index.get("a/prod.yaml", "prod"), Oid::from_str(SRC_A).ok());
        assert_eq!(index.get("b/prod.yaml", "prod"), None);
    }
}
