//! Which credentials a run uses for git and for its forge, chosen in this one place: the
//! `credentialsSecret`'s (a username and a password or token, or a GitHub App), else the
//! server's GitHub App for repositories on the API it is configured for, else the server's own
//! git credentials. A GitHub App's installation token serves both git (user `x-access-token`)
//! and the forge API; a password is also the forge token.

use std::sync::Arc;

use url::Url;

use super::{
    ForgeError, ForgeSettings,
    installation::{AppTokens, Installation},
};
use crate::{
    credentials::{Credentials, GitHubApp, RepoAuth, Secret},
    spec::{ForgeChoice, ForgeKind, Plan, locate},
};

/// The server's own GitHub App (`forge.githubApp`) and the one API it is for: its JWT and
/// tokens never go to another host, whatever a spec names.
#[derive(Debug, Clone)]
pub struct ServerApp {
    pub app: GitHubApp,
    pub api: Url,
}

/// How the forge client authenticates.
pub(crate) enum ForgeToken {
    /// A fixed token (the git credentials' password).
    Token(Secret),
    /// A GitHub App installation's tokens, renewed as they near expiry.
    App(Arc<Installation>),
}

/// The credentials of one run.
pub(crate) struct RunAccess {
    password: Option<Credentials>,
    app: Option<Arc<Installation>>,
}

impl RunAccess {
    /// Chooses the run's credentials: `from_secret` (its `credentialsSecret`), else the
    /// server's GitHub App when the repository's API is the App's, else `server` (the server's
    /// own git credentials).
    pub(crate) fn choose(
        plan: &Plan,
        from_secret: Option<RepoAuth>,
        server: Option<&Credentials>,
        tokens: &Arc<AppTokens>,
        settings: &ForgeSettings,
    ) -> Result<RunAccess, ForgeError> {
        let app = |app, located| {
            let installation = Installation::new(app, located, tokens.clone(), settings)?;
            Ok(RunAccess {
                password: None,
                app: Some(Arc::new(installation)),
            })
        };
        match from_secret {
            Some(RepoAuth::Password(c)) => Ok(RunAccess {
                password: Some(c),
                app: None,
            }),
            Some(RepoAuth::GitHubApp(github_app, api)) => {
                let Some(located) = &plan.located else {
                    // No forge was named (one named must be located, or the spec is refused):
                    // why the repository's own host gave none, if it is a forge's.
                    let why = match locate(&plan.repo, &ForgeChoice::default()) {
                        Err(e) => e.to_string(),
                        Ok(_) => "the credentialsSecret holds a GitHub App: the repository must \
                                  be on GitHub (github.com, or set `forge: github`)"
                            .into(),
                    };
                    return Err(ForgeError::Invalid(why));
                };
                // The JWT mints tokens for every installation of the App: it goes to the App's
                // own API only, never to one derived from the spec's repository host.
                if !same_api(&located.api, &api) {
                    return Err(ForgeError::Invalid(format!(
                        "the credentialsSecret holds a GitHub App of {api} (its \
                         githubAppEnterpriseBaseUrl, else api.github.com); this repository's API \
                         is {}: the App's key is never sent there",
                        located.api
                    )));
                }
                app(github_app, located)
            }
            None => {
                if let Some(server_app) = &settings.github_app
                    && let Some(located) = &plan.located
                    && located.kind == ForgeKind::GitHub
                    && same_api(&located.api, &server_app.api)
                {
                    return app(server_app.app.clone(), located);
                }
                Ok(RunAccess {
                    password: server.cloned(),
                    app: None,
                })
            }
        }
    }

    /// The git credentials to use now: for a GitHub App, a token with minutes left (ask again
    /// after a long test rather than keeping the first answer).
    pub(crate) async fn git(&self) -> Result<Option<Credentials>, ForgeError> {
        match &self.app {
            Some(installation) => Ok(Some(installation.git_credentials().await?)),
            None => Ok(self.password.clone()),
        }
    }

    /// The forge client's authentication, if the run has credentials.
    pub(crate) fn forge_token(&self) -> Option<ForgeToken> {
        match &self.app {
            Some(installation) => Some(ForgeToken::App(installation.clone())),
            None => self
                .password
                .as_ref()
                .map(|c| ForgeToken::Token(c.password.clone())),
        }
    }
}

fn same_api(a: &Url, b: &Url) -> bool {
    a.as_str().trim_end_matches('/') == b.as_str().trim_end_matches('/')
}
