//! GitHub App authentication, which organisations increasingly require instead of personal
//! tokens: phasegate signs a short-lived JWT (RS256) with the App's private key, exchanges it
//! at `POST /app/installations/{id}/access_tokens` for an installation token limited to the
//! run's repository, keeps that token per installation and repository, and mints a new one
//! before it expires. The token authenticates the REST API (bearer) and git over https (user
//! `x-access-token`), as GitHub documents for Apps.
//!
//! The JWT and the tokens are credentials: they never reach a log line, an error or an answer,
//! and the JWT only goes to the API of the repository's own host (located by [`super::locate`]).

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use tracing::info;
use url::Url;

use super::{
    Forge, ForgeError, ForgeSettings, Located,
    api::{ApiClient, TokenSource},
    github::{self, GitHub},
};
use crate::{
    git::{Credentials, Secret},
    spec::ForgeKind,
};

/// GitHub's clock may run behind phasegate's: the JWT says it was issued a minute ago, as
/// GitHub advises.
const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// GitHub refuses a JWT that expires more than 10 minutes after it was issued.
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// A token is renewed when less than this is left: a run's later steps (the push after its
/// tests, the final status) must not meet an expired token.
pub const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// The git username GitHub expects with an installation token.
const GIT_USER: &str = "x-access-token";

/// Which part of a GitHub App's credentials cannot be used (its source names the field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadAppField {
    AppId,
    InstallationId,
    PrivateKey,
}

impl BadAppField {
    /// What is wrong with it, in words a user can act on (never the value).
    pub fn problem(self) -> &'static str {
        match self {
            BadAppField::AppId => "is not a GitHub App id (a number, or the App's client id)",
            BadAppField::InstallationId => "is not an installation id (a positive number)",
            BadAppField::PrivateKey => {
                "is not an RSA private key in PEM (`BEGIN RSA PRIVATE KEY`, PKCS#1, or \
                 `BEGIN PRIVATE KEY`, PKCS#8) as GitHub generates for an App"
            }
        }
    }
}

/// A GitHub App installation's credentials: app id, installation id and private key.
#[derive(Clone)]
pub struct GitHubApp {
    app_id: String,
    installation_id: u64,
    key: Arc<EncodingKey>,
    /// Tells keys apart in the token cache without keeping the key's text.
    fingerprint: String,
}

impl fmt::Debug for GitHubApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubApp")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: u64,
    exp: u64,
    iss: &'a str,
}

impl GitHubApp {
    /// Parses the three values as a Secret or the config file holds them; the key is checked
    /// by signing with it, so a key that cannot sign is refused before any run needs it.
    pub fn new(
        app_id: &str,
        installation_id: &str,
        private_key_pem: &str,
    ) -> Result<GitHubApp, BadAppField> {
        let app_id = app_id.trim();
        let id_like = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if !id_like(app_id) {
            return Err(BadAppField::AppId);
        }
        let installation_id = installation_id
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or(BadAppField::InstallationId)?;
        let pem = private_key_pem.trim();
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| BadAppField::PrivateKey)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, pem.as_bytes());
        let app = GitHubApp {
            app_id: app_id.to_string(),
            installation_id,
            key: Arc::new(key),
            fingerprint: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        };
        app.jwt(SystemTime::now())
            .map_err(|_| BadAppField::PrivateKey)?;
        Ok(app)
    }

    /// The App's id, for messages.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The installation's id, for messages.
    pub fn installation_id(&self) -> u64 {
        self.installation_id
    }

    /// A JWT that authenticates as the App for a few minutes from `now`.
    fn jwt(&self, now: SystemTime) -> Result<Secret, jsonwebtoken::errors::Error> {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims {
            iat: now.saturating_sub(JWT_BACKDATE.as_secs()),
            exp: now + JWT_LIFETIME.as_secs(),
            iss: &self.app_id,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key).map(Secret::new)
    }
}

/// The installation tokens phasegate holds, shared by every run of a server.
#[derive(Default)]
pub struct AppTokens {
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
pub struct Installation {
    app: GitHubApp,
    api: Url,
    /// `owner/name`.
    repo: String,
    settings: ForgeSettings,
    tokens: Arc<AppTokens>,
}

impl Installation {
    /// The installation of `app` for the repository at `located` (a GitHub repository).
    pub fn new(
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
    pub async fn token(&self) -> Result<Secret, ForgeError> {
        let key = TokenKey {
            api: self.api.to_string(),
            app_id: self.app.app_id.clone(),
            installation_id: self.app.installation_id,
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
    pub async fn git_credentials(&self) -> Result<Credentials, ForgeError> {
        Ok(Credentials {
            username: GIT_USER.to_string(),
            password: self.token().await?,
            email: None,
        })
    }

    /// Exchanges a fresh JWT for an installation token limited to the run's repository.
    async fn mint(&self) -> Result<Minted, ForgeError> {
        let (app, installation) = (&self.app.app_id, self.app.installation_id);
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
        )?;
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
        match answer.status.as_u16() {
            201 => {}
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
        }
        let token = answer.body["token"].as_str().unwrap_or_default();
        if token.is_empty() {
            return Err(ForgeError::Refused(
                "GitHub answered no installation token".into(),
            ));
        }
        // An unreadable expiry counts as expiring now: the token serves this call only.
        let expires = answer.body["expires_at"]
            .as_str()
            .and_then(|at| humantime::parse_rfc3339(at).ok())
            .unwrap_or_else(SystemTime::now);
        info!(app = %app, installation, repo = %self.repo, "GitHub App installation token minted");
        Ok(Minted {
            token: Secret::new(token),
            expires,
        })
    }
}

impl TokenSource for Installation {
    fn token(&self) -> BoxFuture<'_, Result<Secret, ForgeError>> {
        Box::pin(Installation::token(self))
    }
}

/// The GitHub client of the repository at `located`, authenticated as `installation`.
pub fn connect(
    located: &Located,
    installation: Arc<Installation>,
    settings: &ForgeSettings,
) -> Result<Box<dyn Forge>, ForgeError> {
    Ok(Box::new(GitHub::new(located, installation, settings)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_values_that_are_not_app_credentials_without_echoing_them() {
        let not_a_key = "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            GitHubApp::new("12 34", "1", not_a_key).map(|_| ()),
            Err(BadAppField::AppId)
        );
        for id in ["0", "-1", "x", ""] {
            assert_eq!(
                GitHubApp::new("1234", id, not_a_key).map(|_| ()),
                Err(BadAppField::InstallationId),
                "{id:?}"
            );
        }
        for key in [
            not_a_key,
            "",
            "ghp_token",
            "-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----",
        ] {
            assert_eq!(
                GitHubApp::new("1234", "99", key).map(|_| ()),
                Err(BadAppField::PrivateKey)
            );
        }
        assert!(!BadAppField::PrivateKey.problem().contains("c2VjcmV0"));
    }
}
