//! Small operations on a local bare repository, for the demo's throw-away GitOps repository
//! and for tests: commit files to a branch without a work tree, show a commit as a patch.

use std::path::Path;

use git2::{DiffFormat, DiffOptions, Repository, Signature, build::TreeUpdateBuilder};

use super::{GitError, cache::git};

/// Commits `files` (path, content) onto `branch` of the bare repository at `bare`, creating
/// the repository and the branch if needed. Returns the new commit id.
pub fn commit_files(
    bare: &Path,
    branch: &str,
    files: &[(&str, &str)],
    message: &str,
) -> Result<String, GitError> {
    let repo = match Repository::open_bare(bare) {
        Ok(r) => r,
        Err(_) => git(Repository::init_bare(bare))?,
    };
    let refname = format!("refs/heads/{branch}");
    let parent = repo
        .find_reference(&refname)
        .and_then(|r| r.peel_to_commit())
        .ok();
    let base = match &parent {
        Some(c) => git(c.tree())?,
        None => git(repo.find_tree(git(repo.treebuilder(None).and_then(|b| b.write()))?))?,
    };
    let mut update = TreeUpdateBuilder::new();
    for (path, content) in files {
        update.upsert(
            *path,
            git(repo.blob(content.as_bytes()))?,
            git2::FileMode::Blob,
        );
    }
    let tree = git(repo.find_tree(git(update.create_updated(&repo, &base))?))?;
    let sig = git(Signature::now("GitOps Author", "author@example.com"))?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let id = git(repo.commit(Some(&refname), &sig, &sig, message, &tree, &parents))?;
    if parent.is_none() {
        git(repo.set_head(&refname))?;
    }
    Ok(id.to_string())
}

/// The commit `id` of the repository at `path` as `git show` would print it: message and patch.
pub fn show(path: &Path, id: &str) -> Result<String, GitError> {
    let repo = git(Repository::open(path))?;
    let commit = git(repo.find_commit_by_prefix(id))?;
    let parent_tree = commit.parent(0).ok().and_then(|p| p.tree().ok());
    let diff = git(repo.diff_tree_to_tree(
        parent_tree.as_ref(),
        Some(&git(commit.tree())?),
        Some(DiffOptions::new().context_lines(3)),
    ))?;
    let mut out = format!(
        "commit {}\nAuthor: {}\n\n{}\n",
        commit.id(),
        commit.author(),
        commit.message().unwrap_or_default().trim_end()
    );
    git(diff.print(DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            out.push(line.origin());
        }
        out.push_str(&String::from_utf8_lossy(line.content()));
        true
    }))?;
    Ok(out)
}

/// The content of `path` at the head of `branch` in the repository at `repo_path`.
pub fn read_file(repo_path: &Path, branch: &str, path: &str) -> Result<String, GitError> {
    let repo = git(Repository::open(repo_path))?;
    let tree = git(repo
        .find_reference(&format!("refs/heads/{branch}"))
        .and_then(|r| r.peel_to_tree()))?;
    let entry = git(tree.get_path(Path::new(path)))?;
    let blob = git(repo.find_blob(entry.id()))?;
    Ok(String::from_utf8_lossy(blob.content()).into_owned())
}

/// Commits on `branch` (first-parent), newest first, up to `max`: (id, subject).
pub fn log(repo_path: &Path, branch: &str, max: usize) -> Result<Vec<(String, String)>, GitError> {
    let repo = git(Repository::open(repo_path))?;
    let mut walk = git(repo.revwalk())?;
    git(walk.push_ref(&format!("refs/heads/{branch}")))?;
    git(walk.simplify_first_parent())?;
    walk.take(max)
        .map(|oid| {
            let c = git(repo.find_commit(git(oid)?))?;
            Ok((
                c.id().to_string(),
                c.summary().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}
