//! Git promotion engine: the only module that knows git2.
//!
//! [`GitPromoter::promote`] reads the version(s) from the source phase's values file at the
//! tested commit, writes them into the target phase's values file at the head of the branch
//! (building the commit without a work tree), and pushes, retrying on a moved branch;
//! promotions waiting for the same remote go out in one push, a commit each.
//! [`cache`] keeps one bare clone per remote, refreshed by incremental fetch; [`auth`] answers
//! git2's credential and host key callbacks ([`known_hosts`] for SSH); [`smart_http`] carries
//! the requests of `http` and `https` remotes, with their credentials; [`promote`] is the
//! read-edit-commit algorithm ([`blob`] reads a values file, its size checked before it is
//! inflated), [`index`] remembers what the last promotion of each file
//! recorded (for `superseded`), and [`push`] puts the commits on the remote without ever losing
//! someone else's. [`signing`] writes every commit, signed with an SSH or OpenPGP key when
//! signing is configured.

mod auth;
mod blob;
mod cache;
mod heal;
mod index;
mod known_hosts;
pub mod local;
mod promote;
mod proposal;
mod push;
mod read;
mod shallow;
mod signing;
mod smart_http;
mod trailers;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use cache::RepoCache;
use index::PromotionIndex;
pub use known_hosts::validate as validate_known_hosts;
pub use read::values_at_branch;
pub use signing::{IdentityCheck, SignatureInfo, Signer, SigningError, SigningFormat};

use crate::{
    credentials::{CredentialScopes, Credentials, SigningKeySource},
    kind::ErrorKind,
    spec::{CommitId, MessageTemplate, PathTemplate, Phase, RepoUrl},
    values::ValuesError,
};

/// Other promoters and humans push to the same branch: retry a rejected push this often.
pub const DEFAULT_PUSH_ATTEMPTS: u32 = 10;

/// The most one fetch may receive (`git.maxFetchBytes`): far above any GitOps repository
/// (tens of MiB for years of history), far below what fills a cache volume or memory.
pub const DEFAULT_MAX_FETCH_BYTES: u64 = 1 << 30;

/// Why a promotion failed. Messages name the repository path, key or commit, never a credential.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GitError {
    /// A commit, branch or file is missing.
    #[error("{0}")]
    NotFound(String),
    /// The source commit exists, but not on the branch promotions go to (and the spec did not
    /// opt out): only committed, merged versions are promoted.
    #[error(
        "source commit {commit} is not on branch `{branch}` (not its head nor an ancestor of it); \
         merge it first, or set allowUnmergedSource where the server policy allows it"
    )]
    NotOnBranch { commit: String, branch: String },
    /// The values file could not be read or edited.
    #[error("{path}: {source}")]
    Values { path: String, source: ValuesError },
    /// The values file is not something phasegate may edit (a symlink, a directory, not UTF-8).
    #[error("{path}: {reason}")]
    Unsupported { path: String, reason: &'static str },
    /// The values file is larger than phasegate reads (refused before it is inflated).
    #[error(
        "{path}: is {size} bytes, more than the {} bytes (1 MiB) a values file may hold",
        blob::MAX_VALUES_BYTES
    )]
    TooLarge { path: String, size: u64 },
    /// A fetch received more than `git.maxFetchBytes` and was cancelled.
    #[error(
        "the fetch from {url} was cancelled after {received} bytes: more than git.maxFetchBytes \
         ({bound} bytes) allows"
    )]
    FetchTooLarge {
        url: String,
        received: u64,
        bound: u64,
    },
    /// The remote refused phasegate's credentials, or asked for some and none are configured.
    #[error("git remote refused the credentials: {0}")]
    AuthRejected(String),
    /// The remote could not be reached.
    #[error("git remote unreachable: {0}")]
    Unreachable(String),
    /// The remote refused the push for a reason other than a race (a pre-receive or update
    /// hook, a branch ruleset, a path restriction): retrying on a new head would not help.
    #[error("the remote refused the push: {0}")]
    PushRefused(String),
    /// Every push attempt was rejected because others kept moving the branch.
    #[error("push to branch `{branch}` still rejected after {attempts} attempts")]
    PushRejected { branch: String, attempts: u32 },
    /// The signing key cannot sign (a per-spec key from the `credentialsSecret`).
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// A check reached the boundary of a shallow clone before it had its answer: the clone is
    /// deepened and the batch decided again (see [`shallow`]); never an answer.
    #[error("git: the cached clone's history is not deep enough for this check")]
    NeedsHistory,
    /// Anything else libgit2 or the file system reported.
    #[error("git: {0}")]
    Other(String),
}

impl GitError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GitError::NotFound(_) => ErrorKind::NotFound,
            GitError::NotOnBranch { .. } | GitError::FetchTooLarge { .. } => {
                ErrorKind::FailedPrecondition
            }
            GitError::Values { source, .. } => match source {
                ValuesError::KeyMissing { .. } => ErrorKind::NotFound,
                _ => ErrorKind::InvalidArgument,
            },
            GitError::Unsupported { .. } | GitError::TooLarge { .. } => ErrorKind::InvalidArgument,
            GitError::AuthRejected(_) | GitError::PushRefused(_) => ErrorKind::PermissionDenied,
            GitError::Unreachable(_) => ErrorKind::Unavailable,
            GitError::PushRejected { .. } => ErrorKind::Aborted,
            GitError::Signing(_) => ErrorKind::FailedPrecondition,
            GitError::Other(_) | GitError::NeedsHistory => ErrorKind::Internal,
        }
    }
}

/// Server-level git settings.
#[derive(Debug, Clone)]
pub struct GitSettings {
    /// Where the bare clones live; survives restarts when it is a volume.
    pub cache_dir: PathBuf,
    /// Push attempts before `ABORTED`.
    pub push_attempts: u32,
    /// The most one fetch may receive, in bytes; beyond it the fetch is cancelled.
    pub max_fetch_bytes: u64,
    /// Commit author when the credentials carry no email.
    pub author_name: String,
    /// Commit author email when the credentials carry none.
    pub author_email: String,
    /// Which credentials go to which remote: the credential scopes and the server's own
    /// (`GIT_USER`/`GIT_PASSWORD`/`GIT_EMAIL` or files, for the repos `policy.repos` names).
    pub credentials: CredentialScopes,
    /// SSH private key for `ssh://` and `user@host:path` remotes; the agent otherwise.
    pub ssh_key: Option<PathBuf>,
    /// Known hosts file trusted for SSH remotes; libgit2's `~/.ssh/known_hosts` otherwise.
    pub ssh_known_hosts: Option<PathBuf>,
    /// The server's signing key: every commit is signed with it unless the spec brings its own.
    pub signer: Option<Arc<Signer>>,
    /// The allowed signers file per-spec SSH signing keys are checked against.
    pub signing_allowed_signers: Option<PathBuf>,
}

/// One promotion to perform.
#[derive(Debug, Clone)]
pub struct Promotion {
    pub repo: RepoUrl,
    pub branch: String,
    /// Values file path template with `{phase}`.
    pub path: PathTemplate,
    /// The source phase's values file when it is not `path`'s (a Helm values file promoted
    /// into a kustomization).
    pub source_path: Option<PathTemplate>,
    /// The keys as the spec wrote them: `image.version`, or `source->target` when the source
    /// and target files hold the version at different keys.
    pub keys: Vec<String>,
    pub source: Phase,
    pub target: Phase,
    pub commit: CommitId,
    /// Subject template (docs/contract.md §2 `commitMessage`).
    pub message: MessageTemplate,
    pub dry_run: bool,
    /// A deliberate rollback: never `superseded`, marked `Promotion-Rollback: true`, and the
    /// baseline later promotions are decided against.
    pub rollback: bool,
    /// The source commit need not be on `branch`; by default it must be its head or an ancestor.
    pub allow_unmerged_source: bool,
    pub run_id: String,
    /// Per-request credentials (a `credentialsSecret`, for this repo only); the scopes'
    /// otherwise.
    pub credentials: Option<Credentials>,
    /// Per-request signing key (the Secret's `signingKey`); the server's own otherwise.
    pub signer: Option<Arc<Signer>>,
    /// Pull-request mode: the commit goes to this phasegate-owned branch, not to `branch`.
    pub proposal: Option<ProposalBranch>,
}

impl Promotion {
    /// The source phase's values file, read at the tested commit.
    pub(crate) fn source_file(&self) -> String {
        self.source_path
            .as_ref()
            .unwrap_or(&self.path)
            .for_phase(&self.source)
    }

    /// The key of each version in the source phase's values file.
    pub(crate) fn source_keys(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| crate::values::split_key(k).0)
            .collect()
    }

    /// The key of each version in the target phase's values file: what is edited, what
    /// `Promoted-Keys` records and what superseded is decided by.
    pub(crate) fn target_keys(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| crate::values::split_key(k).1)
            .collect()
    }
}

/// The branch a pull-request promotion is pushed to (force-updated: phasegate owns it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalBranch {
    /// e.g. `phasegate/prod/3f2a9c1d0b7e`.
    pub name: String,
    /// An open pull request comes from this branch: what its tip proposes counts for
    /// `already-promoted` and `superseded`.
    pub open: bool,
}

/// What the promotion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromotionOutcome {
    /// A commit was pushed.
    Promoted,
    /// The target already had the version: nothing to do.
    AlreadyPromoted,
    /// A newer source commit was already promoted: nothing done.
    Superseded,
    /// Everything but the push.
    DryRun,
    /// Pull-request mode: the commit was pushed to the proposal branch.
    Proposed,
    /// Pull-request mode: the open pull request already proposes this version.
    AlreadyProposed,
}

/// The result of a promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionResult {
    pub outcome: PromotionOutcome,
    /// The promoted version (of the first key).
    pub version: String,
    /// The target's version before (of the first key).
    pub previous: String,
    /// The promotion commit, when one was pushed.
    pub commit: Option<String>,
    /// The full id of the tested source commit.
    pub source_commit: String,
    /// Pushes made for it: 1 when nobody raced it; 0 when none was needed, or when it went
    /// out in the push of another promotion of its batch (pushes are counted once).
    pub push_attempts: u32,
    /// The key that signed the pushed commit, when signing is configured.
    pub signature: Option<SignatureInfo>,
    /// The changed lines of the target values file, when a commit was made (also for a dry run).
    pub edit: Option<crate::diff::Edit>,
}

impl PromotionResult {
    /// The answer is known without testing: the target already holds the version, or a newer
    /// source already won.
    pub fn decides(&self) -> bool {
        matches!(
            self.outcome,
            PromotionOutcome::AlreadyPromoted | PromotionOutcome::Superseded
        )
    }
}

/// A remote that accepts the connection and then hangs must not hang a run forever.
const CONNECT_TIMEOUT_MS: i32 = 10_000;
const IO_TIMEOUT_MS: i32 = 60_000;

/// Makes libgit2 read no system, global (`~/.gitconfig`), XDG or ProgramData configuration:
/// an `url.<x>.insteadOf` there would connect elsewhere than the URL the policy matched, with
/// the credentials. phasegate's clones keep only their own minimal config (`cache.rs`).
///
/// # Safety
/// Changes libgit2's global settings: call it before any other thread runs.
#[allow(unsafe_code)]
pub unsafe fn isolate_from_git_config() -> Result<(), git2::Error> {
    use git2::ConfigLevel;
    for level in [
        ConfigLevel::System,
        ConfigLevel::Global,
        ConfigLevel::XDG,
        ConfigLevel::ProgramData,
    ] {
        // SAFETY: no other thread runs (the caller's promise).
        unsafe { git2::opts::set_search_path(level, "")? };
    }
    Ok(())
}

/// Sets libgit2's process-wide options: network timeouts (ssh's; the HTTP transport has the
/// same), and the transport for `http` and `https` remotes ([`smart_http`]: Nagle off, kept
/// connections), which trusts `ca_file` beside the system's CA bundle (TLS verification itself
/// is never turned off). Call once at start-up, before any git operation runs.
pub fn configure_process(ca_file: Option<&std::path::Path>) -> Result<(), GitError> {
    let fail = |e: git2::Error| GitError::Other(format!("libgit2 settings: {}", e.message()));
    // SAFETY: libgit2 reads these globals when it opens a connection; they are written here,
    // at start-up, before any thread runs a git operation.
    #[allow(unsafe_code)]
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS).map_err(fail)?;
        git2::opts::set_server_timeout_in_milliseconds(IO_TIMEOUT_MS).map_err(fail)?;
    }
    smart_http::trust(ca_file).map_err(GitError::Other)?;
    smart_http::register().map_err(GitError::Other)
}

/// A promotion waiting for its remote's clone, where its answer goes, and its run's span
/// (whoever pushes it logs its part there).
type Queued = (
    Promotion,
    tokio::sync::oneshot::Sender<Result<PromotionResult, GitError>>,
    tracing::Span,
);

/// One remote, in this process: the promotions waiting for its clone, and the clone's lock,
/// which also guards the promotion index of each branch (by branch name).
#[derive(Debug, Default)]
struct Remote {
    waiting: Mutex<Vec<Queued>>,
    clone: Arc<tokio::sync::Mutex<HashMap<String, PromotionIndex>>>,
}

/// Promotes versions through a cache of bare clones.
#[derive(Debug, Clone)]
pub struct GitPromoter {
    settings: Arc<GitSettings>,
    cache: Arc<RepoCache>,
    /// By remote URL.
    remotes: Arc<Mutex<HashMap<String, Arc<Remote>>>>,
}

impl GitPromoter {
    /// A promoter keeping its clones under `settings.cache_dir`.
    pub fn new(settings: GitSettings) -> GitPromoter {
        // Before any fetch or push: `configure_process` registered it already, unless the
        // promoter is used without it (the engine's tests).
        if let Err(e) = smart_http::register() {
            tracing::error!(error = %e, "the transport for http(s) remotes is not registered");
        }
        GitPromoter {
            cache: Arc::new(RepoCache::new(settings.cache_dir.clone())),
            settings: Arc::new(settings),
            remotes: Arc::default(),
        }
    }

    /// Loads a per-spec signing key (from the `credentialsSecret`), signing as `email` (the
    /// Secret's), or the server's author email when it has none. A key that cannot sign is
    /// `FAILED_PRECONDITION`: the run never falls back to an unsigned commit.
    pub fn signer_for(
        &self,
        source: &SigningKeySource,
        email: Option<&str>,
    ) -> Result<Arc<Signer>, GitError> {
        let s = &self.settings;
        let email = email.unwrap_or(&s.author_email);
        let identity = IdentityCheck {
            email,
            allowed_signers: s.signing_allowed_signers.as_deref(),
        };
        Ok(Arc::new(Signer::load(source, None, &identity)?))
    }

    fn remote(&self, url: &str) -> Arc<Remote> {
        let mut remotes = self.remotes.lock().unwrap_or_else(|p| p.into_inner());
        remotes.entry(url.to_string()).or_default().clone()
    }

    /// Runs one promotion. Work on one remote is serialised within this process (other
    /// processes are handled by the push retry), and promotions that queued for the remote
    /// meanwhile go together: whoever gets the clone takes every waiting promotion into one
    /// fetch and one push, with a commit each (a fan-in of many apps costs one round trip).
    pub async fn promote(&self, promotion: Promotion) -> Result<PromotionResult, GitError> {
        let remote = self.remote(promotion.repo.as_str());
        let waiting = || remote.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let (answer, mut answered) = tokio::sync::oneshot::channel();
        waiting().push((promotion, answer, tracing::Span::current()));
        let unanswered = |_| GitError::Other("the promotion task ended without an answer".into());
        // Another holder of the clone may take this promotion along: then its answer is here
        // before the clone is free, and waiting to lead a batch of latecomers would only delay it.
        let mut indexes = tokio::select! {
            biased;
            answer = &mut answered => return answer.map_err(unanswered)?,
            guard = remote.clone.clone().lock_owned() => guard,
        };
        let taken = std::mem::take(&mut *waiting());
        let (settings, cache) = (self.settings.clone(), self.cache.clone());
        let span = tracing::Span::current();
        // git2 is blocking (network and disk): keep it off the async worker threads. The clone
        // stays locked until the batch is done (the guard goes with it).
        let work = move || span.in_scope(|| run_batches(&cache, &settings, taken, &mut indexes));
        if let Err(e) = tokio::task::spawn_blocking(work).await {
            tracing::error!(error = %e, "promotion task failed");
        }
        answered.await.map_err(unanswered)?
    }
}

impl GitPromoter {
    /// What promoting `promotion` would do, found before any test runs: fetches the branch
    /// and decides exactly as [`GitPromoter::promote`] would, but pushes nothing. The answer is
    /// a dry run's ([`PromotionResult::decides`] when the target already holds the version or
    /// a newer source already won), with the version under test and the target's before it.
    pub async fn check(&self, promotion: &Promotion) -> Result<PromotionResult, GitError> {
        let mut probe = promotion.clone();
        probe.dry_run = true;
        self.promote(probe).await
    }
}

/// Groups promotions that can share a push (same branch and author; a dry run goes alone)
/// and runs each group as one batch.
fn run_batches(
    cache: &RepoCache,
    settings: &GitSettings,
    taken: Vec<Queued>,
    indexes: &mut HashMap<String, PromotionIndex>,
) {
    let mut groups: Vec<Vec<Queued>> = Vec::new();
    for queued in taken {
        let p = &queued.0;
        let fits = |g: &Vec<Queued>| {
            let q = &g[0].0;
            !p.dry_run
                && !q.dry_run
                && p.proposal.is_none()
                && q.proposal.is_none()
                && q.branch == p.branch
                && q.credentials == p.credentials
                && q.signer == p.signer
        };
        match groups.iter_mut().find(|g| fits(g)) {
            Some(group) => group.push(queued),
            None => groups.push(vec![queued]),
        }
    }
    for group in groups {
        let (mut promotions, mut answers, mut spans) = (Vec::new(), Vec::new(), Vec::new());
        for (promotion, answer, span) in group {
            promotions.push(promotion);
            answers.push(answer);
            spans.push(span);
        }
        if promotions.len() > 1 {
            let runs: Vec<&str> = promotions.iter().map(|p| p.run_id.as_str()).collect();
            tracing::info!(?runs, "promoting together");
        }
        let index = indexes.entry(promotions[0].branch.clone()).or_default();
        if promotions[0].proposal.is_some() {
            // A pull-request promotion goes alone (see `fits`).
            let result =
                spans[0].in_scope(|| proposal::run(cache, settings, &promotions[0], index));
            for answer in answers {
                let _ = answer.send(result.clone());
            }
            continue;
        }
        let results = promote::run(cache, settings, &promotions, &spans, index);
        for (result, answer) in results.into_iter().zip(answers) {
            let _ = answer.send(result);
        }
    }
}
