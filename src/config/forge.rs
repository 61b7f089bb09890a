//! The `forge:` part of the configuration: commit status links, retries of forge API calls,
//! and the server's own GitHub App.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// Forge settings of the configuration file.
#[derive(Debug, Clone, Deserialize, clap::Args)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ForgeConfig {
    /// Link of phasegate's commit statuses, with `{run}` for the run id (e.g. a console URL).
    #[arg(
        long = "forge-run-url",
        env = "PHASEGATE_FORGE_RUN_URL",
        help = "Link of commit statuses, with `{run}` for the run id"
    )]
    pub run_url: Option<String>,
    /// Calls per forge request at most (rate limits and 5xx are retried).
    #[arg(long = "forge-retry-attempts", env = "PHASEGATE_FORGE_RETRY_ATTEMPTS")]
    pub retry_attempts: u32,
    /// The longest wait between two forge calls (`60s`); a longer `Retry-After` is UNAVAILABLE
    /// at once.
    #[arg(
        long = "forge-max-retry-wait",
        env = "PHASEGATE_FORGE_MAX_RETRY_WAIT",
        help = "The longest wait between two forge calls (`60s`)"
    )]
    pub max_retry_wait: String,
    /// The server's own GitHub App, for the repositories on its API that name no
    /// `credentialsSecret`. Its flags are [`GitHubAppConfig`]'s, laid over it by
    /// [`github_app_overrides`].
    #[arg(skip)]
    pub github_app: Option<GitHubAppConfig>,
}

/// A GitHub App of the configuration file (`forge.githubApp`).
#[derive(Debug, Clone, Deserialize, clap::Args)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitHubAppConfig {
    /// The server's GitHub App: its id (with the installation id and the private key file).
    #[arg(long = "forge-github-app-id", env = "PHASEGATE_FORGE_GITHUB_APP_ID")]
    pub app_id: String,
    /// The server's GitHub App: the installation id.
    #[arg(
        long = "forge-github-app-installation-id",
        env = "PHASEGATE_FORGE_GITHUB_APP_INSTALLATION_ID"
    )]
    pub installation_id: String,
    /// The server's GitHub App: the file holding its private key (PEM).
    #[arg(
        long = "forge-github-app-private-key-file",
        env = "PHASEGATE_FORGE_GITHUB_APP_PRIVATE_KEY_FILE"
    )]
    pub private_key_file: PathBuf,
    /// The API the App is for, and the only one its JWT and tokens go to: github.com's by
    /// default, `https://HOST/api/v3` for GitHub Enterprise Server.
    #[serde(default = "github_api")]
    #[arg(
        id = "github_app_api_url",
        long = "forge-github-app-api-url",
        env = "PHASEGATE_FORGE_GITHUB_APP_API_URL",
        value_name = "API_URL",
        help = "The server's GitHub App: the API it is for (`https://api.github.com`)"
    )]
    pub api_url: String,
}

/// The flags an App named by flags alone needs (`apiUrl` has a default).
pub(super) const GITHUB_APP_NEEDS: [&str; 3] = ["app_id", "installation_id", "private_key_file"];

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

/// `forge.githubApp` with the flags over it; flags alone must name the id, the installation
/// and the key file.
pub(super) fn github_app_overrides(
    file: Option<GitHubAppConfig>,
    flags: &mut clap::ArgMatches,
) -> Result<Option<GitHubAppConfig>, ConfigError> {
    use clap::{Args, FromArgMatches};
    let given = GitHubAppConfig::augment_args(clap::Command::new("app"))
        .get_arguments()
        .any(|arg| flags.contains_id(arg.get_id().as_str()));
    let mut app = match file {
        _ if !given => return Ok(file),
        Some(app) => app,
        None if GITHUB_APP_NEEDS.iter().all(|id| flags.contains_id(id)) => GitHubAppConfig {
            app_id: String::new(),
            installation_id: String::new(),
            private_key_file: PathBuf::new(),
            api_url: github_api(),
        },
        None => {
            return Err(ConfigError(
                "the server's GitHub App needs --forge-github-app-id, \
                 --forge-github-app-installation-id and --forge-github-app-private-key-file"
                    .into(),
            ));
        }
    };
    app.update_from_arg_matches_mut(flags)
        .map_err(|e| ConfigError(e.to_string()))?;
    Ok(Some(app))
}
