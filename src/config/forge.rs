//! The `forge:` part of the configuration: commit status links, retries of forge API calls,
//! and the server's own GitHub App.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// Forge settings of the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ForgeConfig {
    /// Link of phasegate's commit statuses, with `{run}` for the run id (e.g. a console URL).
    pub run_url: Option<String>,
    /// Calls per forge request at most, retries of rate limits and 5xx included.
    pub retry_attempts: u32,
    /// The longest wait between two calls (`Retry-After`); a longer one is UNAVAILABLE at once.
    pub max_retry_wait: String,
    /// The server's own GitHub App, for the repositories on its API that name no
    /// `credentialsSecret`.
    pub github_app: Option<GitHubAppConfig>,
}

/// A GitHub App of the configuration file (`forge.githubApp`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitHubAppConfig {
    /// The App's id (or client id).
    pub app_id: String,
    /// The installation on the organisation that owns the repositories.
    pub installation_id: String,
    /// File holding the App's private key, PEM (a mounted Secret).
    pub private_key_file: PathBuf,
    /// The API the App is for, and the only one its JWT and tokens go to: github.com's by
    /// default, `https://HOST/api/v3` for GitHub Enterprise Server.
    #[serde(default = "github_api")]
    pub api_url: String,
}

fn github_api() -> String {
    "https://api.github.com".into()
}

impl Default for ForgeConfig {
    fn default() -> Self {
        let retry = crate::forge::RetryPolicy::default();
        ForgeConfig {
            run_url: None,
            retry_attempts: retry.attempts,
            max_retry_wait: humantime::format_duration(retry.max_wait).to_string(),
            github_app: None,
        }
    }
}

impl GitHubAppConfig {
    /// Reads and checks the key: an App that cannot sign stops the server at start-up.
    fn load(&self) -> Result<crate::forge::access::ServerApp, ConfigError> {
        use crate::forge::github_app::{BadAppField, GitHubApp};
        let file = self.private_key_file.display();
        let pem = std::fs::read_to_string(&self.private_key_file)
            .map_err(|e| ConfigError(format!("forge.githubApp.privateKeyFile {file}: {e}")))?;
        let app = GitHubApp::new(&self.app_id, &self.installation_id, &pem).map_err(|bad| {
            let field = match bad {
                BadAppField::AppId => "appId".to_string(),
                BadAppField::InstallationId => "installationId".to_string(),
                BadAppField::PrivateKey => format!("privateKeyFile {file}"),
            };
            ConfigError(format!("forge.githubApp.{field} {}", bad.problem()))
        })?;
        // The JWT is a credential: over TLS, or to this machine (a local proxy).
        let api = url::Url::parse(&self.api_url)
            .ok()
            .filter(|u| match (u.scheme(), u.host()) {
                ("https", Some(_)) => true,
                ("http", Some(url::Host::Domain(d))) => d == "localhost",
                ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
                ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
                _ => false,
            })
            .ok_or_else(|| {
                ConfigError(format!(
                    "forge.githubApp.apiUrl {:?} is not an https:// URL",
                    self.api_url
                ))
            })?;
        Ok(crate::forge::access::ServerApp { app, api })
    }
}

impl ForgeConfig {
    /// Checks the settings and loads the server's GitHub App key.
    pub(crate) fn settings(
        &self,
        ca_file: Option<PathBuf>,
    ) -> Result<crate::forge::ForgeSettings, ConfigError> {
        if self.retry_attempts == 0 || self.retry_attempts > 20 {
            return Err(ConfigError("forge.retryAttempts must be 1 to 20".into()));
        }
        let max_wait = humantime::parse_duration(&self.max_retry_wait).map_err(|e| {
            ConfigError(format!("forge.maxRetryWait {:?}: {e}", self.max_retry_wait))
        })?;
        if let Some(url) = &self.run_url
            && url::Url::parse(&url.replace("{run}", "r")).is_err()
        {
            return Err(ConfigError("forge.runUrl is not a URL template".into()));
        }
        Ok(crate::forge::ForgeSettings {
            run_url: self.run_url.clone(),
            retry: crate::forge::RetryPolicy {
                attempts: self.retry_attempts,
                max_wait,
                ..Default::default()
            },
            ca_file,
            github_app: self
                .github_app
                .as_ref()
                .map(GitHubAppConfig::load)
                .transpose()?,
        })
    }
}

/// `forge.githubApp` with the flags over it; flags alone must name the id, the installation
/// and the key file.
pub(super) fn github_app_overrides(
    file: Option<GitHubAppConfig>,
    app_id: Option<String>,
    installation_id: Option<String>,
    private_key_file: Option<PathBuf>,
    api_url: Option<String>,
) -> Result<Option<GitHubAppConfig>, ConfigError> {
    let any = app_id.is_some()
        || installation_id.is_some()
        || private_key_file.is_some()
        || api_url.is_some();
    let app = match (file, app_id, installation_id, private_key_file) {
        (Some(f), id, installation, key) => GitHubAppConfig {
            app_id: id.unwrap_or(f.app_id),
            installation_id: installation.unwrap_or(f.installation_id),
            private_key_file: key.unwrap_or(f.private_key_file),
            api_url: f.api_url,
        },
        (None, Some(app_id), Some(installation_id), Some(private_key_file)) => GitHubAppConfig {
            app_id,
            installation_id,
            private_key_file,
            api_url: github_api(),
        },
        (None, ..) if any => {
            return Err(ConfigError(
                "the server's GitHub App needs --forge-github-app-id, \
                 --forge-github-app-installation-id and --forge-github-app-private-key-file"
                    .into(),
            ));
        }
        (None, ..) => return Ok(None),
    };
    Ok(Some(GitHubAppConfig {
        api_url: api_url.unwrap_or(app.api_url),
        ..app
    }))
}
