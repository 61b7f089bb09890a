//! Reading a values key at a branch of a cached clone, without fetching: what the web console
//! shows as the version in each phase. It reads what the last promotion or fetch brought in.

use git2::Repository;

use super::{
    GitError,
    cache::{RepoCache, git, tracking_ref},
};
use crate::values;

/// The value of `key` in the file `path` at the cached head of `branch` of `url`. `Ok(None)`
/// when there is no clone yet, or the branch, file or key is not there; never touches the
/// network. Blocking (git2): call it from `spawn_blocking`.
pub fn value_at_branch(
    cache_dir: &std::path::Path,
    url: &str,
    branch: &str,
    path: &str,
    key: &str,
) -> Result<Option<String>, GitError> {
    let clone = RepoCache::new(cache_dir.to_path_buf()).path_of(url);
    if !clone.exists() {
        return Ok(None);
    }
    let repo = git(Repository::open_bare(&clone))?;
    let Ok(head) = repo
        .find_reference(&tracking_ref(branch))
        .and_then(|r| r.peel_to_commit())
    else {
        return Ok(None);
    };
    let tree = git(head.tree())?;
    let Ok(entry) = tree.get_path(std::path::Path::new(path)) else {
        return Ok(None);
    };
    let Ok(blob) = repo.find_blob(entry.id()) else {
        return Ok(None);
    };
    let Ok(text) = std::str::from_utf8(blob.content()) else {
        return Ok(None);
    };
    Ok(values::read_scalar(text, key).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_clone_there_is_no_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let value = value_at_branch(
            dir.path(),
            "https://git.example/x.git",
            "main",
            "a.yaml",
            "k",
        );
        assert_eq!(value.expect("no error"), None);
    }
}
