//! Server configuration: a YAML file, every field also settable by flag or `PHASEGATE_*`
//! environment variable (flags win). Git credentials come from the classic container's
//! variables (`GIT_USER`, `GIT_PASSWORD`, `GIT_EMAIL`) or from files.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{
    git::{Credentials, DEFAULT_PUSH_ATTEMPTS, GitSettings, Secret},
    policy::{Policy, PolicyConfig},
};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// The server configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Metrics and probes listen address.
    pub metrics_listen: Option<SocketAddr>,
    /// Allowlists.
    pub policy: PolicyConfig,
    /// Git author, credentials and push behaviour.
    pub git: GitConfig,
    /// Where the repository clones live (a volume, so restarts stay warm).
    pub cache_dir: PathBuf,
    /// Runs at once; the rest queue.
    pub max_runs: usize,
    /// How long SIGTERM waits for runs in flight, e.g. `60s`.
    pub shutdown_grace: String,
    /// TLS for the gRPC listener (certificate and key files, reloaded when they change).
    pub tls: Option<TlsConfig>,
    /// Kubernetes: the job runner, `credentialsSecret`, the Argo CD gate.
    pub kubernetes: KubernetesConfig,
}

/// TLS files of the gRPC listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// How phasegate reaches Kubernetes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesConfig {
    /// `false` turns Kubernetes off even inside a cluster.
    pub disabled: bool,
    /// The server's namespace (Secrets, default namespace of test Jobs); the service
    /// account's namespace otherwise.
    pub namespace: Option<String>,
    /// An API server URL reached without authentication (e.g. `kubectl proxy`); the
    /// in-cluster service account or the kubeconfig otherwise.
    pub api_url: Option<String>,
}

/// Git settings of the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct GitConfig {
    pub author_name: String,
    pub author_email: String,
    /// File holding the HTTPS username (a mounted Secret); `GIT_USER` otherwise.
    pub username_file: Option<PathBuf>,
    /// File holding the HTTPS password or token; `GIT_PASSWORD` otherwise.
    pub password_file: Option<PathBuf>,
    /// SSH private key for ssh remotes; the SSH agent otherwise.
    pub ssh_key: Option<PathBuf>,
    /// Extra CA bundle for HTTPS remotes.
    pub ca_file: Option<PathBuf>,
    pub push_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: ([0, 0, 0, 0], 9000).into(),
            metrics_listen: None,
            policy: PolicyConfig::default(),
            git: GitConfig::default(),
            cache_dir: std::env::temp_dir().join("phasegate-cache"),
            max_runs: 8,
            shutdown_grace: "60s".into(),
            tls: None,
            kubernetes: KubernetesConfig::default(),
        }
    }
}

impl Default for GitConfig {
    fn default() -> Self {
        GitConfig {
            author_name: "phasegate".into(),
            author_email: "phasegate@localhost".into(),
            username_file: None,
            password_file: None,
            ssh_key: None,
            ca_file: None,
            push_attempts: DEFAULT_PUSH_ATTEMPTS,
        }
    }
}

impl Config {
    /// Reads a configuration file; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        serde_yaml_ng::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    /// The compiled policy.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        Policy::new(&self.policy).map_err(|e| ConfigError(e.to_string()))
    }

    /// The Kubernetes cluster phasegate works with, if any.
    pub async fn cluster(&self) -> Result<Option<crate::cluster::Cluster>, ConfigError> {
        let k = &self.kubernetes;
        if k.disabled {
            return Ok(None);
        }
        match &k.api_url {
            Some(url) => {
                crate::cluster::Cluster::at(url, k.namespace.as_deref().unwrap_or("default"))
                    .map(Some)
                    .map_err(|e| ConfigError(e.to_string()))
            }
            None => Ok(crate::cluster::Cluster::infer(k.namespace.as_deref()).await),
        }
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Result<Duration, ConfigError> {
        humantime::parse_duration(&self.shutdown_grace)
            .map_err(|e| ConfigError(format!("shutdownGrace {:?}: {e}", self.shutdown_grace)))
    }

    /// Git settings, with the server's own credentials from files or the environment.
    pub fn git_settings(&self) -> Result<GitSettings, ConfigError> {
        let g = &self.git;
        let read = |file: &Option<PathBuf>, var: &str| -> Result<Option<String>, ConfigError> {
            match file {
                Some(f) => std::fs::read_to_string(f)
                    .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_string()))
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", f.display()))),
                None => Ok(std::env::var(var).ok().filter(|v| !v.is_empty())),
            }
        };
        let username = read(&g.username_file, "GIT_USER")?;
        let password = read(&g.password_file, "GIT_PASSWORD")?;
        let credentials = match (username, password) {
            (Some(username), Some(password)) => Some(Credentials {
                username,
                password: Secret::new(password),
                email: std::env::var("GIT_EMAIL").ok().filter(|v| !v.is_empty()),
            }),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "git credentials need both a username and a password".into(),
                ));
            }
        };
        if g.push_attempts == 0 {
            return Err(ConfigError("git.pushAttempts must be at least 1".into()));
        }
        Ok(GitSettings {
            cache_dir: self.cache_dir.clone(),
            push_attempts: g.push_attempts,
            author_name: g.author_name.clone(),
            author_email: g.author_email.clone(),
            credentials,
            ssh_key: g.ssh_key.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_config_file_and_refuses_unknown_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:9100\npolicy:\n  transitions: [\"test->prod\"]\nmaxRuns: 2\n",
        )
        .expect("write");
        let c = Config::load(Some(&file)).expect("loads");
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.max_runs, 2);
        assert!(!c.policy().expect("policy").is_open());
        std::fs::write(&file, "lisen: 1\n").expect("write");
        let err = Config::load(Some(&file)).expect_err("typo").to_string();
        assert!(err.contains("lisen"), "{err}");
    }
}
