//! Forges (GitHub, GitLab, Bitbucket Data Center, Gitea, Forgejo): pull requests and commit
//! statuses behind one trait, so the pipeline never knows which forge hosts a repository.
//!
//! [`crate::spec::locate`] decides, when the spec is parsed, which forge and which API a
//! repository has (well-known hosts, or the spec's `forge` and `forgeApiUrl`, never another
//! host than the repository's: the token goes only to the API of the repository it was given
//! for); [`api`] is the small REST client with
//! bounded retries; one module per forge implements [`Forge`]; [`flow`] is the pull-request
//! lifecycle and the commit statuses of a run; [`installation`] authenticates as a GitHub App (its key: `credentials::github_app`);
//! [`access`] chooses a run's credentials for git and its forge.

pub(crate) mod access;
mod api;
mod bitbucket;
pub(crate) mod flow;
mod gitea;
mod github;
mod gitlab;
pub(crate) mod installation;
mod retry;

pub(crate) use crate::spec::Located;
pub(crate) use api::http_client;
pub(crate) use retry::RetryPolicy;

use crate::{
    credentials::Secret,
    kind::ErrorKind,
    spec::{ForgeKind, MergeMethod},
};

/// What a forge call replies: its value, or why it failed.
pub(crate) type Reply<T> = Result<T, ForgeError>;

/// Why a forge call failed. Messages never contain the token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForgeError {
    /// The forge could not be reached, or kept answering "later" (5xx, rate limit).
    #[error("{forge} API unavailable: {reason}")]
    Unavailable { forge: &'static str, reason: String },
    /// The token was refused or lacks a permission.
    #[error("{forge} refused phasegate's token: {reason}")]
    PermissionDenied { forge: &'static str, reason: String },
    /// The repository or pull request does not exist (or the token cannot see it).
    #[error("{0}")]
    NotFound(String),
    /// The forge refused the request as it stands (validation failed, not mergeable, …).
    #[error("{0}")]
    Refused(String),
    /// The spec names a forge or API phasegate cannot use for this repository.
    #[error("{0}")]
    Invalid(String),
    /// The forge credentials cannot be used as configured (a GitHub App key that is not one,
    /// an installation that does not exist or does not cover the repository).
    #[error("{0}")]
    Credentials(String),
    /// The pull request was closed without being merged.
    #[error("{0}")]
    ClosedUnmerged(String),
    /// `waitForMerge` passed with the pull request still open.
    #[error("{0}")]
    MergeWaitExpired(String),
    /// Pull-request mode, and no credential gives a forge token for the repository.
    #[error(
        "promoteVia: pull-request needs a forge token for this repository: a \
         credentialsSecret, the server's GitHub App (forge.githubApp), a credential \
         scope covering it, or the server's git credentials (GIT_PASSWORD) with \
         policy.repos naming it"
    )]
    NoToken,
}

impl ForgeError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ForgeError::Unavailable { .. } => ErrorKind::Unavailable,
            ForgeError::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            ForgeError::NotFound(_) => ErrorKind::NotFound,
            ForgeError::Refused(_)
            | ForgeError::ClosedUnmerged(_)
            | ForgeError::Credentials(_)
            | ForgeError::NoToken => ErrorKind::FailedPrecondition,
            ForgeError::Invalid(_) => ErrorKind::InvalidArgument,
            ForgeError::MergeWaitExpired(_) => ErrorKind::DeadlineExceeded,
        }
    }
}

/// A pull request (GitLab: merge request) as phasegate needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PullRequest {
    pub number: u64,
    /// Where a reviewer opens it.
    pub url: String,
    pub state: PrState,
    /// The commit the base branch got from merging it, once merged.
    pub merge_commit: Option<String>,
}

/// Where a pull request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrState {
    Open,
    Merged,
    ClosedUnmerged,
}

/// What phasegate asks for when it opens or updates a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PullRequestDraft {
    /// The phasegate-owned branch holding the promotion commit.
    pub head: String,
    /// The branch it goes to.
    pub base: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub draft: bool,
}

/// What a merge request to the forge came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MergeAttempt {
    /// Merged, into this commit.
    Merged(String),
    /// Not (yet) mergeable: checks or reviews pending, a conflict; the forge's reason.
    NotMergeable(String),
}

/// State of a commit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

/// A commit status (GitHub: status, GitLab: commit status) phasegate sets on a source commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitStatus {
    pub sha: String,
    pub state: StatusState,
    /// `phasegate/<source>-><target>`.
    pub context: String,
    /// One line, cut to what forges accept.
    pub description: String,
    pub target_url: Option<String>,
}

/// One forge's API for one repository. Every call is retried within bounds on rate limits and
/// transient failures (see [`RetryPolicy`]).
// A boxed future per call (`async_trait`): the pipeline holds a `dyn Forge` of whichever forge
// hosts the repository.
#[async_trait::async_trait]
pub(crate) trait Forge: Send + Sync {
    /// The open pull request from `head` into `base`, if any.
    async fn find_open(&self, head: &str, base: &str) -> Reply<Option<PullRequest>>;
    /// Opens a pull request (with its labels).
    async fn open(&self, draft: &PullRequestDraft) -> Reply<PullRequest>;
    /// Rewrites an open pull request's title and body (and adds its labels).
    async fn update(&self, number: u64, draft: &PullRequestDraft) -> Reply<PullRequest>;
    /// The pull request as it stands now.
    async fn get(&self, number: u64) -> Reply<PullRequest>;
    /// Merges the pull request if the forge allows it now, only while its head is `head_sha`.
    async fn merge(&self, number: u64, head_sha: &str, method: MergeMethod) -> Reply<MergeAttempt>;
    /// Sets a commit status.
    async fn set_status(&self, status: &CommitStatus) -> Reply<()>;
}

/// Server-wide forge settings.
#[derive(Debug, Clone, Default)]
pub struct ForgeSettings {
    /// Link of a commit status, with `{run}` (the run id); none when unset.
    pub run_url: Option<String>,
    /// Retries of rate-limited and failed calls.
    pub retry: RetryPolicy,
    /// The one HTTP client of every forge call: the public roots plus `git.caFile`, built once
    /// by the composition root ([`http_client`]).
    pub http: reqwest::Client,
    /// The server's own GitHub App (`forge.githubApp`), for repositories on its API only.
    pub github_app: Option<access::ServerApp>,
}

impl ForgeSettings {
    /// The link of run `run`'s commit statuses and pull request, if `run_url` is set.
    pub fn run_link(&self, run: &str) -> Option<String> {
        self.run_url.as_ref().map(|t| t.replace("{run}", run))
    }
}

/// The client of the forge at `located`, authenticated with `token`.
pub(crate) fn connect(
    located: &Located,
    token: Secret,
    settings: &ForgeSettings,
) -> Result<Box<dyn Forge>, ForgeError> {
    Ok(match located.kind {
        ForgeKind::GitHub => Box::new(github::GitHub::new(located, token, settings)?),
        ForgeKind::GitLab => Box::new(gitlab::GitLab::new(located, token, settings)?),
        ForgeKind::BitbucketDataCenter => Box::new(bitbucket::BitbucketDataCenter::new(
            located, token, settings,
        )?),
        ForgeKind::Gitea | ForgeKind::Forgejo => {
            Box::new(gitea::Gitea::new(located, token, settings)?)
        }
    })
}
