//! One bare clone per remote under the cache directory, reused across runs and refreshed by
//! incremental fetch. A fresh clone per run is what makes the classic container slow on big
//! repositories.

use std::path::{Path, PathBuf};

use git2::{AutotagOption, ErrorClass, ErrorCode, FetchOptions, Oid, Repository};
use tracing::{info, warn};

use super::{GitError, GitSettings, auth};

/// The clones (the promoter serialises work on each one).
#[derive(Debug)]
pub struct RepoCache {
    dir: PathBuf,
}

impl RepoCache {
    /// A cache rooted at `dir` (created on first use).
    pub fn new(dir: PathBuf) -> RepoCache {
        RepoCache { dir }
    }

    /// The clone of `url` (only one promotion batch may use it at a time). A clone that
    /// cannot be opened is removed and started afresh.
    pub fn open(&self, url: &str) -> Result<Repository, GitError> {
        let path = self.path_of(url);
        if path.exists() {
            match Repository::open_bare(&path) {
                Ok(repo) => return Ok(repo),
                Err(e) => {
                    warn!(cache = %path.display(), error = %e, "cached clone is corrupt; cloning again");
                    self.discard(&path)?;
                }
            }
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| GitError::Other(format!("cannot create cache directory: {e}")))?;
        Repository::init_bare(&path).map_err(|e| GitError::Other(e.message().to_string()))
    }

    /// Removes the clone of `url`, e.g. after a fetch found its object store damaged.
    pub fn reset(&self, url: &str) -> Result<Repository, GitError> {
        self.discard(&self.path_of(url))?;
        self.open(url)
    }

    fn discard(&self, path: &Path) -> Result<(), GitError> {
        std::fs::remove_dir_all(path)
            .map_err(|e| GitError::Other(format!("cannot remove corrupt clone: {e}")))
    }

    /// Directory of a remote's clone: named by a hash of the URL, so any URL is a safe name.
    fn path_of(&self, url: &str) -> PathBuf {
        let id = Oid::hash_object(git2::ObjectType::Blob, url.as_bytes())
            .expect("hashing bytes in memory cannot fail");
        self.dir.join(format!("{id}.git"))
    }
}

/// Tracking ref of `branch` in a cached clone.
pub fn tracking_ref(branch: &str) -> String {
    format!("refs/remotes/origin/{branch}")
}

/// Fetches `refspecs` from `url` into `repo`.
pub fn fetch(
    repo: &Repository,
    url: &str,
    refspecs: &[&str],
    settings: &GitSettings,
    creds: Option<&super::Credentials>,
) -> Result<(), GitError> {
    let (callbacks, trace) = auth::callbacks(url, creds, settings);
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks)
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    let header = auth::preemptive_header(url, creds);
    if let Some(h) = &header {
        opts.custom_headers(&[h.as_str()]);
    }
    let mut remote = repo.remote_anonymous(url).map_err(|e| classify(e, None))?;
    let started = std::time::Instant::now();
    remote
        .fetch(refspecs, Some(&mut opts), None)
        .map_err(|e| classify(e, trace.failure()))?;
    let stats = remote.stats();
    info!(
        objects = stats.received_objects(),
        bytes = stats.received_bytes(),
        ms = started.elapsed().as_millis() as u64,
        "fetched"
    );
    Ok(())
}

/// Turns a libgit2 error into a [`GitError`] of the right kind. `auth` is what the credential
/// callback saw. libgit2 messages carry no credentials: they never are in a URL here.
pub fn classify(e: git2::Error, auth: Option<GitError>) -> GitError {
    if let Some(failure) = auth {
        return failure;
    }
    let msg = e.message().to_string();
    let lower = msg.to_ascii_lowercase();
    if e.code() == ErrorCode::Auth
        || lower.contains("401")
        || lower.contains("403")
        || lower.contains("authentication")
    {
        return GitError::AuthRejected(msg);
    }
    if lower.contains("unknown remote ssh hostkey") {
        return GitError::Unreachable(format!(
            "{msg}: the SSH host key is not in ~/.ssh/known_hosts; set git.sshKnownHosts \
             (PHASEGATE_GIT_SSH_KNOWN_HOSTS) to a known hosts file that holds it"
        ));
    }
    if lower.contains("404") || lower.contains("repository not found") {
        return GitError::NotFound(format!("repository not found: {msg}"));
    }
    match e.class() {
        ErrorClass::Net | ErrorClass::Os | ErrorClass::Ssl | ErrorClass::Ssh | ErrorClass::Http => {
            GitError::Unreachable(msg)
        }
        _ => GitError::Other(msg),
    }
}

/// A libgit2 result as a [`GitError`] of the right kind.
pub fn git<T>(r: Result<T, git2::Error>) -> Result<T, GitError> {
    r.map_err(|e| classify(e, None))
}

/// True when an error means the clone itself is damaged, not the remote or the network.
pub fn is_corruption(e: &GitError) -> bool {
    matches!(e, GitError::Other(_))
}
