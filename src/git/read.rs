//! Reading a values key at a branch of a cached clone, without fetching: what the web console
//! shows as the version in each phase. It reads what the last promotion or fetch brought in.

use std::collections::HashMap;

use git2::Repository;

use super::{
    GitError, blob,
    cache::{RepoCache, git, tracking_ref},
};
use crate::values;

/// The values of (file, key) pairs at the cached head of `branch` of `url`, in the order
/// asked: the clone is opened and the branch resolved once for all of them (the board asks
/// for every phase of every pipeline at once; opening a clone per value cost ~0.25 ms each,
/// 100 ms for 200 pipelines). `None` where there is no clone yet, or the branch, file or key is
/// not there; never touches the network. Blocking (git2): call it from `spawn_blocking`.
pub fn values_at_branch(
    cache_dir: &std::path::Path,
    url: &str,
    branch: &str,
    wanted: &[(&str, &str)],
) -> Result<Vec<Option<String>>, GitError> {
    let clone = RepoCache::new(cache_dir.to_path_buf()).path_of(url);
    if !clone.exists() {
        return Ok(vec![None; wanted.len()]);
    }
    let repo = git(super::shallow::open(&clone))?;
    let Ok(head) = repo
        .find_reference(&tracking_ref(branch))
        .and_then(|r| r.peel_to_commit())
    else {
        return Ok(vec![None; wanted.len()]);
    };
    let mut trees = Trees {
        repo: &repo,
        dirs: HashMap::from([(String::new(), Some(git(head.tree())?))]),
    };
    let mut texts: HashMap<&str, Option<String>> = HashMap::new();
    Ok(wanted
        .iter()
        .map(|&(path, key)| {
            let text = texts.entry(path).or_insert_with(|| {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                let entry = trees.get(dir)?.get_name(name)?.id();
                let blob = blob::values_blob(&repo, entry, path).ok()?;
                String::from_utf8(blob.content().to_vec()).ok()
            });
            text.as_deref()
                .and_then(|t| values::read_scalar(t, key).ok())
        })
        .collect())
}

/// The directories of one commit's tree, each looked up once. libgit2 keeps no tree over
/// 4 KiB in its object cache, so a large directory (`apps/` with hundreds of apps) would
/// otherwise be inflated again, through its delta chain, for every file below it.
struct Trees<'r> {
    repo: &'r Repository,
    dirs: HashMap<String, Option<git2::Tree<'r>>>,
}

impl<'r> Trees<'r> {
    fn get(&mut self, dir: &str) -> Option<&git2::Tree<'r>> {
        if !self.dirs.contains_key(dir) {
            let (parent, name) = dir.rsplit_once('/').unwrap_or(("", dir));
            let id = self
                .get(parent)
                .and_then(|t| t.get_name(name))
                .map(|e| e.id());
            let tree = id.and_then(|id| self.repo.find_tree(id).ok());
            self.dirs.insert(dir.to_string(), tree);
        }
        self.dirs.get(dir).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_clone_there_is_no_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let value = values_at_branch(
            dir.path(),
            "https://git.example/x.git",
            "main",
            &[("a.yaml", "k")],
        );
        assert_eq!(value.expect("no error"), [None]);
    }

    #[test]
    fn reads_every_value_asked_at_the_cached_head_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = "https://git.example/gitops.git";
        let clone = RepoCache::new(dir.path().to_path_buf()).path_of(url);
        let files = [
            ("test/values.yaml", "image:\n  version: \"2.0\"\n"),
            (
                "prod/values.yaml",
                "image:\n  version: \"1.0\"\nreplicas: 3\n",
            ),
        ];
        let head = super::super::local::commit_files(&clone, "work", &files, "m").expect("commit");
        let repo = Repository::open_bare(&clone).expect("open");
        let id = git2::Oid::from_str(&head).expect("oid");
        repo.reference(&tracking_ref("main"), id, true, "cached head")
            .expect("tracking ref");
        let values = values_at_branch(
            dir.path(),
            url,
            "main",
            &[
                ("prod/values.yaml", "image.version"),
                ("test/values.yaml", "image.version"),
                ("prod/values.yaml", "replicas"),
                ("staging/values.yaml", "image.version"),
                ("prod/values.yaml", "image.tag"),
            ],
        )
        .expect("reads");
        let values: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
        assert_eq!(values, [Some("1.0"), Some("2.0"), Some("3"), None, None]);
        let other = values_at_branch(
            dir.path(),
            url,
            "release",
            &[("prod/values.yaml", "replicas")],
        );
        assert_eq!(other.expect("no error"), [None], "no such branch");
    }
}
