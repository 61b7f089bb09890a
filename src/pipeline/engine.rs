//! What every run shares, built once by the pipeline and handed to each run as one `Arc`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{
    cluster::Cluster,
    credentials::{CredentialScopes, SecretStore},
    forge::{ForgeSettings, installation::AppTokens},
    git::{GitPromoter, GitSettings},
    history::History,
    metrics::Metrics,
    runner::RunnerSettings,
};

/// What every run shares, built once by the pipeline.
pub(super) struct Engine {
    pub(super) promoter: GitPromoter,
    pub(super) history: Arc<History>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) cluster: Option<Cluster>,
    pub(super) secrets: SecretStore,
    pub(super) runners: RunnerSettings,
    /// Ends the runs still in flight when the shutdown grace period is over.
    pub(super) interrupt: CancellationToken,
    pub(super) forge: ForgeSettings,
    /// The credential scopes: the password of the repository's credentials (its
    /// `credentialsSecret`'s, else `credentials_for` the repo) is the token for the forge API on
    /// the repository's host; a repo no scope covers gets no token.
    pub(super) scopes: CredentialScopes,
    /// GitHub App installation tokens, shared by the runs.
    pub(super) app_tokens: Arc<AppTokens>,
}

impl Engine {
    pub(super) fn new(
        git: GitSettings,
        history: Arc<History>,
        metrics: Arc<Metrics>,
        cluster: Option<Cluster>,
        runners: RunnerSettings,
        forge: ForgeSettings,
        scopes: CredentialScopes,
    ) -> Engine {
        Engine {
            promoter: GitPromoter::new(git),
            history,
            metrics,
            cluster,
            secrets: SecretStore::default(),
            runners,
            interrupt: CancellationToken::new(),
            forge,
            scopes,
            app_tokens: Arc::default(),
        }
    }
}
