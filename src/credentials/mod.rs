//! Which credential goes where, decided in this wing: the credential types (never printed),
//! the credential scopes of the server's own credentials (`scopes`), a spec's
//! `credentialsSecret` read from Kubernetes (`secret_store`) and a GitHub App's key and JWT
//! ([`github_app`]). The run's choice among them is `forge::access`, which needs the forge's
//! installation tokens.

pub mod github_app;
mod scopes;
mod secret_store;

use std::{fmt, path::Path};

pub use github_app::GitHubApp;
pub use scopes::{CredentialScopes, ScopeConfig, ScopeError, url_covers};
pub use secret_store::SecretStore;

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the places that hand it to a remote.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// HTTPS credentials (`username`, `password` or token) and the author email, as in the classic
/// setup's Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    pub email: Option<String>,
}

/// Credentials as a `credentialsSecret` holds them.
#[derive(Debug, Clone)]
pub enum RepoAuth {
    /// A username and a password or token (the token also authenticates the forge API).
    Password(Credentials),
    /// A GitHub App installation, and the one API its JWT and tokens may go to
    /// (`https://api.github.com`, or the Secret's `githubAppEnterpriseBaseUrl`). Its commits are
    /// authored as the server's configured author (`git.authorName`, `git.authorEmail`): an
    /// App has no user of its own to sign in as.
    GitHubApp(GitHubApp, url::Url),
}

impl RepoAuth {
    /// The commit author's email these credentials carry.
    pub fn email(&self) -> Option<&str> {
        match self {
            RepoAuth::Password(c) => c.email.as_deref(),
            RepoAuth::GitHubApp(..) => None,
        }
    }
}

/// What a signing key is loaded from: its text, and an optional passphrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeySource {
    /// The private key (OpenSSH PEM or armored OpenPGP), secret.
    pub key: Secret,
    /// Its passphrase, when it is encrypted.
    pub passphrase: Option<Secret>,
}

/// A credential's text without the line end a file or a `kubectl create secret --from-file`
/// leaves after it.
pub(crate) fn without_line_end(text: &str) -> String {
    text.trim_end_matches(['\r', '\n']).to_string()
}

/// A credential file's text, without its line end.
pub(crate) fn read_credential_file(file: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(file).map(|s| without_line_end(&s))
}
