//! GitHub App installation tokens: a fresh App JWT is exchanged at
//! `POST /app/installations/{id}/access_tokens` for a token limited to the run's repository;
//! the token is kept per installation and repository and a new one minted before it expires.
//! It authenticates the REST API (bearer) and git over https (user `x-access-token`), as
//! GitHub documents for Apps. The JWT only goes to the API of the repository's own host
//! (located by [`crate::spec::locate`]); no token reaches a log line, an error or an answer.

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures_util::future::BoxFuture;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tracing::info;
use url::Url;

use super::{
    Forge, ForgeError, ForgeSettings, Located,
    api::{ApiClient, TokenSource},
    github::{self, GitHub},
};
use crate::{
    credentials::{
        Credentials, Secret,
        github_app::{BadAppField, GitHubApp},
    },
    spec::ForgeKind,
};

/// A token is renewed when less than this is left: a run's later steps (the push after its
/// tests, the final status) must not meet an expired token.
pub(crate) const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// The git username GitHub expects with an installation token.
const GIT_USER: &str = "x-access-token";

/// The installation tokens phasegate holds, shared by every run of a server.
#[derive(Default)]
pub(crate) struct AppTokens {
    /// One lock for all: minting is rare, and two runs must not mint the same token twice.
    minted: tokio::sync::Mutex<HashMap<TokenKey, Minted>>,
}

impl fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppTokens(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    api: String,
    app_id: String,
    installation_id: u64,
    fingerprint: String,
    repo: String,
}

struct Minted {
    token: Secret,
    expires: SystemTime,
}

/// A GitHub App installation, for one repository at one API: hands out its installation
/// token, renewed before it expires.
pub(crate) struct Installation {
    app: GitHubApp,
    api: Url,
    /// `owner/name`.
    repo: String,
    settings: ForgeSettings,
    tokens: Arc<AppTokens>,
}

impl Installation {
    /// The installation of `app` for the repository at `located` (a GitHub repository).
    pub(crate) fn new(
        app: GitHubApp,
        located: &Located,
        tokens: Arc<AppTokens>,
        settings: &ForgeSettings,
    ) -> Result<Installation, ForgeError> {
        if located.kind != ForgeKind::GitHub {
            return Err(ForgeError::Invalid(format!(
                "GitHub App credentials are for GitHub repositories; this one is on {}",
                located.kind
            )));
        }
        Ok(Installation {
            app,
            api: located.api.clone(),
            repo: located.project.clone(),
            settings: settings.clone(),
            tokens,
        })
    }

    /// An installation token with at least [`RENEW_BEFORE`] left: the one held, or a new one.
    pub(crate) async fn token(&self) -> Result<Secret, ForgeError> {
        let key = TokenKey {
            api: self.api.to_string(),
            app_id: self.app.app_id().to_string(),
            installation_id: self.app.installation_id(),
            fingerprint: self.app.fingerprint.clone(),
            repo: self.repo.clone(),
        };
        let mut minted = self.tokens.minted.lock().await;
        if let Some(held) = minted.get(&key)
            && held.expires > SystemTime::now() + RENEW_BEFORE
        {
            return Ok(held.token.clone());
        }
        let fresh = self.mint().await?;
        let token = fresh.token.clone();
        minted.insert(key, fresh);
        Ok(token)
    }

    /// Git credentials: user `x-access-token`, the installation token as password, no email
    /// (commits are authored as the server's configured author).
    pub(crate) async fn git_credentials(&self) -> Result<Credentials, ForgeError> {
        Ok(Credentials {
            username: GIT_USER.to_string(),
            password: self.token().await?,
            email: None,
        })
    }

    /// Exchanges a fresh JWT for an installation token limited to the run's repository.
    async fn mint(&self) -> Result<Minted, ForgeError> {
        let (app, installation) = (self.app.app_id(), self.app.installation_id());
        let jwt = self.app.jwt(SystemTime::now()).map_err(|_| {
            ForgeError::Credentials(format!(
                "GitHub App {app}: its private key {}",
                BadAppField::PrivateKey.problem()
            ))
        })?;
        let api = ApiClient::new(
            "GitHub",
            self.api.clone(),
            jwt,
            &self.settings,
            github::headers(),
        );
        let name = self.repo.rsplit('/').next().unwrap_or_default();
        let path = format!("app/installations/{installation}/access_tokens");
        let answer = api
            .call(
                Method::POST,
                &path,
                Some(&json!({ "repositories": [name] })),
            )
            .await
            .map_err(|e| match e {
                ForgeError::PermissionDenied { forge, reason } => ForgeError::PermissionDenied {
                    forge,
                    reason: format!(
                        "the JWT of GitHub App {app} was refused: the private key is not this \
                         App's, or the App id is wrong ({reason})"
                    ),
                },
                other => other,
            })?;
        let message = answer.message();
        let what = "mint an installation token";
        let minted: AccessToken = match answer.status.as_u16() {
            201 => api.read(what, answer)?,
            404 => {
                return Err(ForgeError::Credentials(format!(
                    "GitHub App {app} has no installation {installation}: check the installation \
                     id (githubAppInstallationID) ({message})"
                )));
            }
            422 => {
                return Err(ForgeError::Credentials(format!(
                    "GitHub App {app}, installation {installation}, cannot access repository {}: \
                     install the App on it ({message})",
                    self.repo
                )));
            }
            status => {
                return Err(ForgeError::Refused(format!(
                    "GitHub refused an installation token for App {app}, installation \
                     {installation}: HTTP {status} ({message})"
                )));
            }
        };
        if minted.token.is_empty() {
            return Err(ForgeError::Refused(
                "GitHub answered no installation token".into(),
            ));
        }
        // An expiry that is not a time counts as expiring now: the token serves this call only.
        let expires =
            humantime::parse_rfc3339(&minted.expires_at).unwrap_or_else(|_| SystemTime::now());
        info!(app = %app, installation, repo = %self.repo, "GitHub App installation token minted");
        Ok(Minted {
            token: Secret::new(minted.token),
            expires,
        })
    }
}

/// GitHub's answer to `POST /app/installations/{id}/access_tokens`.
#[derive(Deserialize)]
struct AccessToken {
    /// The installation token: a credential, so this type has no `Debug`.
    token: String,
    /// RFC 3339.
    expires_at: String,
}

impl TokenSource for Installation {
    fn token(&self) -> BoxFuture<'_, Result<Secret, ForgeError>> {
        Box::pin(Installation::token(self))
    }
}

/// The GitHub client of the repository at `located`, authenticated as `installation`.
pub(crate) fn connect(
    located: &Located,
    installation: Arc<Installation>,
    settings: &ForgeSettings,
) -> Result<Box<dyn Forge>, ForgeError> {
    Ok(Box::new(GitHub::new(located, installation, settings)?))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::forge::api::read;

    #[test]
    fn names_a_renamed_installation_token_field_without_showing_the_token() {
        let what = "mint an installation token";
        let answer = json!({"access_token": "ghs_secret", "expires_at": "2026-11-25T00:00:00Z"});
        let err = read::<AccessToken>("GitHub", what, answer)
            .err()
            .expect("renamed");
        assert!(err.to_string().contains("missing field `token`"), "{err}");
        assert!(!err.to_string().contains("ghs_secret"), "{err}");
        let answer = json!({"token": "ghs_secret", "expires": "2026-11-25T00:00:00Z"});
        let err = read::<AccessToken>("GitHub", what, answer)
            .err()
            .expect("renamed");
        assert!(
            err.to_string().contains("missing field `expires_at`"),
            "{err}"
        );
        let answer = json!({"token": "ghs_secret", "expires_at": "2026-11-25T00:00:00Z"});
        let minted = read::<AccessToken>("GitHub", what, answer).expect("read");
        assert_eq!(minted.token, "ghs_secret");
    }
}
