//! GitHub App credentials, which organisations increasingly require instead of personal
//! tokens: the App id, the installation id and the App's private key, checked when they are
//! read, and the short-lived JWT (RS256) that authenticates as the App. `forge::installation`
//! exchanges the JWT for installation tokens.
//!
//! The key and the JWT are credentials: they never reach a log line, an error or an answer.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::Secret;

/// GitHub's clock may run behind phasegate's: the JWT says it was issued a minute ago, as
/// GitHub advises.
const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// GitHub refuses a JWT that expires more than 10 minutes after it was issued.
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);

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

/// The API root a GitHub App's JWT may go to: the JWT is a credential, so https, or http to
/// this machine only (a local proxy); no credentials, query or fragment in it.
pub fn app_api_root(text: &str) -> Option<url::Url> {
    url::Url::parse(text).ok().filter(|u| {
        let secure_or_local = match (u.scheme(), u.host()) {
            ("https", Some(_)) => true,
            ("http", Some(url::Host::Domain(d))) => d == "localhost",
            ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
            ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
            _ => false,
        };
        secure_or_local
            && u.username().is_empty()
            && u.password().is_none()
            && u.query().is_none()
            && u.fragment().is_none()
    })
}

/// A GitHub App installation's credentials: app id, installation id and private key.
#[derive(Clone)]
pub struct GitHubApp {
    app_id: String,
    installation_id: u64,
    key: Arc<EncodingKey>,
    /// Tells keys apart in the token cache without keeping the key's text.
    pub(crate) fingerprint: String,
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
    pub(crate) fn jwt(&self, now: SystemTime) -> Result<Secret, jsonwebtoken::errors::Error> {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims {
            iat: now.saturating_sub(JWT_BACKDATE.as_secs()),
            exp: now + JWT_LIFETIME.as_secs(),
            iss: &self.app_id,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apps_jwt_goes_over_tls_or_to_this_machine_only() {
        for ok in [
            "https://api.github.com",
            "https://ghe.example.com/api/v3",
            "http://127.0.0.1:8080/api/v3",
            "http://localhost/api/v3",
        ] {
            assert!(app_api_root(ok).is_some(), "{ok}");
        }
        for bad in [
            "http://ghe.internal/api/v3",
            "https://bot:pw@ghe.example.com/api/v3",
            "https://ghe.example.com/api/v3?x=1",
            "ftp://ghe.example.com/",
            "not a url",
        ] {
            assert!(app_api_root(bad).is_none(), "{bad}");
        }
    }

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
