//! One bare clone per remote under the cache directory, reused across runs and refreshed by
//! incremental fetch. A fresh clone per run is what makes the classic container slow on big
//! repositories.

use std::path::{Path, PathBuf};

use git2::{AutotagOption, ErrorClass, ErrorCode, FetchOptions, Oid, RemoteRedirect, Repository};
use tracing::{info, warn};

use super::{GitError, GitSettings, auth, heal, smart_http};
use crate::spec::RepoUrl;

/// A clone's whole configuration: what `git init --bare` writes, nothing a remote, a URL
/// rewrite or a hook path could hide in.
const CLONE_CONFIG: &str =
    "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n";

/// The clones (the promoter serialises work on each one).
#[derive(Debug)]
pub(super) struct RepoCache {
    dir: PathBuf,
}

impl RepoCache {
    /// A cache rooted at `dir` (created on first use).
    pub(super) fn new(dir: PathBuf) -> RepoCache {
        RepoCache { dir }
    }

    /// Takes the clone of `url` for one batch: waits while another process uses it, removes
    /// what a killed process left in it (lock files, half-written packs), and discards it when
    /// a pack is damaged. The clone is this batch's until the lock is dropped.
    pub(super) fn take(&self, url: &RepoUrl) -> Result<(heal::CloneLock, Repository), GitError> {
        let path = self.path_of(url.as_str());
        self.own_dir()?;
        let held = heal::lock(&path)?;
        // A clone someone else could have planted is not used (its objects are not ours); the
        // cache directory is private, so its mode does not matter.
        if path.exists()
            && let Err(why) = crate::hardening::ours(&path)
        {
            warn!(cache = %path.display(), %why, "cached clone is not phasegate's; cloning again");
            self.discard(&path)?;
        }
        if path.exists()
            && let heal::Healed::Damaged(why) = heal::heal(&path)?
        {
            warn!(cache = %path.display(), %why, "cached clone is damaged; cloning again");
            self.discard(&path)?;
        }
        Ok((held, self.open(url)?))
    }

    /// The clone of `url` (only one promotion batch may use it at a time). A clone that
    /// cannot be opened is removed and started afresh.
    pub(super) fn open(&self, url: &RepoUrl) -> Result<Repository, GitError> {
        let path = self.path_of(url.as_str());
        if path.exists() {
            // Only phasegate's own settings: a planted `url.<x>.insteadOf` would make libgit2
            // connect elsewhere than the URL the policy matched, credentials and all.
            std::fs::write(path.join("config"), CLONE_CONFIG)
                .map_err(|e| GitError::Other(format!("cannot reset the clone's config: {e}")))?;
            match super::shallow::open(&path) {
                Ok(repo) => return Ok(repo),
                Err(e) => {
                    warn!(cache = %path.display(), error = %e, "cached clone is corrupt; cloning again");
                    self.discard(&path)?;
                }
            }
        }
        // The cache directory was checked (and made) by `take`, which every batch starts with.
        Repository::init_bare(&path).map_err(|e| GitError::Other(e.message().to_string()))
    }

    /// The cache directory, created private when missing, and refused unless it is
    /// phasegate's own (owner, mode, not a symlink).
    fn own_dir(&self) -> Result<(), GitError> {
        crate::hardening::private_dir(&self.dir)
            .map_err(|e| GitError::Other(format!("cannot create cache directory: {e}")))?;
        crate::hardening::owned_dir(&self.dir).map_err(|why| {
            GitError::Other(format!(
                "the cache directory is not phasegate's own: {why}; remove it or set cacheDir"
            ))
        })
    }

    /// Removes the clone of `url`, e.g. after a fetch found its object store damaged.
    pub(super) fn reset(&self, url: &RepoUrl) -> Result<Repository, GitError> {
        self.discard(&self.path_of(url.as_str()))?;
        self.open(url)
    }

    fn discard(&self, path: &Path) -> Result<(), GitError> {
        std::fs::remove_dir_all(path)
            .map_err(|e| GitError::Other(format!("cannot remove corrupt clone: {e}")))
    }

    /// Directory of a remote's clone: named by a hash of the URL, so any URL is a safe name.
    pub(super) fn path_of(&self, url: &str) -> PathBuf {
        let id = Oid::hash_object(git2::ObjectType::Blob, url.as_bytes())
            .expect("hashing bytes in memory cannot fail");
        self.dir.join(format!("{id}.git"))
    }
}

/// Tracking ref of `branch` in a cached clone.
pub(super) fn tracking_ref(branch: &str) -> String {
    format!("refs/remotes/origin/{branch}")
}

/// Fetches `refspecs` from `url` into `repo` (a shallow clone stays shallow: only what is new
/// comes).
pub(super) fn fetch(
    repo: &Repository,
    url: &RepoUrl,
    refspecs: &[&str],
    settings: &GitSettings,
    creds: Option<&crate::credentials::Credentials>,
) -> Result<(), GitError> {
    fetch_at_depth(repo, url, refspecs, settings, creds, None)
}

/// Fetches `refspecs` from `url` into `repo`, `depth` commits deep from their heads when given
/// (see [`super::shallow`]).
pub(super) fn fetch_at_depth(
    repo: &Repository,
    url: &RepoUrl,
    refspecs: &[&str],
    settings: &GitSettings,
    creds: Option<&crate::credentials::Credentials>,
    depth: Option<i32>,
) -> Result<(), GitError> {
    let (mut callbacks, trace) = auth::callbacks(url, creds, settings);
    // Returning false from the progress callback cancels the fetch: a repository (or a
    // hostile server) sending more than the bound fills neither the cache volume nor memory.
    let (bound, received) = (settings.max_fetch_bytes, std::cell::Cell::new(0u64));
    callbacks.transfer_progress(|progress| {
        received.set(progress.received_bytes() as u64);
        received.get() <= bound
    });
    let mut opts = FetchOptions::new();
    // A redirect to another host would take the credentials with it: only the same host's
    // redirects are followed (for http(s), by `smart_http`, as libgit2 would).
    opts.remote_callbacks(callbacks)
        .download_tags(AutotagOption::None)
        .update_fetchhead(false)
        .follow_redirects(RemoteRedirect::None);
    if let Some(depth) = depth {
        opts.depth(depth);
    }
    let http = smart_http::Scope::enter(auth::preemptive_header(url, creds), bound);
    let mut remote = repo
        .remote_anonymous(url.as_str())
        .map_err(|e| classify(e, None))?;
    let started = std::time::Instant::now();
    let fetched = remote.fetch(refspecs, Some(&mut opts), None);
    drop(opts);
    // The pack's bytes as libgit2 counts them, or (http and https) everything the remote's
    // answers held, its refs included.
    if let Some(received) = http
        .over_bound()
        .or((received.get() > bound).then(|| received.get()))
    {
        return Err(GitError::FetchTooLarge {
            url: url.as_str().to_string(),
            received,
            bound,
        });
    }
    fetched.map_err(|e| classify(http.error(e), trace.failure()))?;
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
pub(super) fn classify(e: git2::Error, auth: Option<GitError>) -> GitError {
    if let Some(failure) = auth {
        return failure;
    }
    let msg = e.message().to_string();
    let status = http_status(&e);
    if e.code() == ErrorCode::Auth || matches!(status, Some(401 | 403 | 407)) {
        return GitError::AuthRejected(msg);
    }
    if msg
        .to_ascii_lowercase()
        .contains("unknown remote ssh hostkey")
    {
        return GitError::Unreachable(format!(
            "{msg}: the SSH host key is not in ~/.ssh/known_hosts; set git.sshKnownHosts \
             (PHASEGATE_GIT_SSH_KNOWN_HOSTS) to a known hosts file that holds it"
        ));
    }
    if status == Some(404) {
        return GitError::NotFound(format!("repository not found: {msg}"));
    }
    match e.class() {
        ErrorClass::Net | ErrorClass::Os | ErrorClass::Ssl | ErrorClass::Ssh | ErrorClass::Http => {
            GitError::Unreachable(msg)
        }
        _ => GitError::Other(msg),
    }
}

/// The HTTP status of libgit2's "unexpected http status code: N" (its only report of a
/// status it did not handle itself), read from that fixed message: never a number found
/// anywhere in a message, where it could be part of an object id or a path.
fn http_status(e: &git2::Error) -> Option<u16> {
    if e.class() != ErrorClass::Http {
        return None;
    }
    e.message()
        .strip_prefix("unexpected http status code: ")
        .and_then(|code| code.trim().parse().ok())
}

/// A libgit2 result as a [`GitError`] of the right kind.
pub(super) fn git<T>(r: Result<T, git2::Error>) -> Result<T, GitError> {
    r.map_err(|e| classify(e, None))
}

/// True when an error means the clone itself is damaged, not the remote or the network.
pub(super) fn is_corruption(e: &GitError) -> bool {
    matches!(e, GitError::Other(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(message: &str) -> git2::Error {
        git2::Error::new(ErrorCode::GenericError, ErrorClass::Http, message)
    }

    #[test]
    fn classifies_http_statuses_from_libgit2s_report_only() {
        let kind = |e| std::mem::discriminant(&classify(e, None));
        let auth = std::mem::discriminant(&GitError::AuthRejected(String::new()));
        let missing = std::mem::discriminant(&GitError::NotFound(String::new()));
        assert_eq!(kind(http("unexpected http status code: 403")), auth);
        assert_eq!(kind(http("unexpected http status code: 404")), missing);
        assert!(matches!(
            classify(http("unexpected http status code: 502"), None),
            GitError::Unreachable(_)
        ));
        // Digits inside an object id or a path are no status.
        let odb = git2::Error::new(
            ErrorCode::NotFound,
            ErrorClass::Odb,
            "object not found - no match for id (4014033a9f0c4040d1ee)",
        );
        assert!(matches!(classify(odb, None), GitError::Other(_)));
    }
}
