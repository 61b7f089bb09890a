//! Server configuration: a YAML file, every field also settable by flag or `PHASEGATE_*`
//! environment variable ([`Overrides`]; a flag wins over its variable, both over the file).
//! Git credentials come from credential scopes (`credentials:`, bound to URL prefixes), and
//! the classic container's variables (`GIT_USER`, `GIT_PASSWORD`, `GIT_EMAIL`) or files, which
//! go only to the repositories `policy.repos` names.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{
    credentials::ScopeConfig,
    git::{DEFAULT_PUSH_ATTEMPTS, SigningFormat},
    policy::PolicyConfig,
};

mod forge;

pub use forge::{ForgeConfig, GitHubAppConfig};

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
    /// The read-only web console's listen address; no console unless set.
    pub console_listen: Option<SocketAddr>,
    /// Link to a commit on the forge, with `{repo}` (the repository path, e.g. `org/gitops`)
    /// and `{commit}`, e.g. `https://github.com/{repo}/commit/{commit}`.
    pub console_commit_link: Option<String>,
    /// Webhooks posted when a run ends.
    pub notifications: Vec<crate::notify::NotificationConfig>,
    /// Allowlists (closed by default).
    pub policy: PolicyConfig,
    /// Credential scopes: which credentials go to which remotes (URL prefixes).
    pub credentials: Vec<ScopeConfig>,
    /// Git author, credentials and push behaviour.
    pub git: GitConfig,
    /// Where the repository clones live (a volume, so restarts stay warm).
    pub cache_dir: PathBuf,
    /// Runs at once; the rest queue.
    pub max_runs: usize,
    /// How long SIGTERM waits for runs in flight, e.g. `60s`.
    #[serde(deserialize_with = "grace")]
    pub shutdown_grace: Duration,
    /// TLS for the gRPC listener (certificate and key files, reloaded when they change).
    pub tls: Option<TlsConfig>,
    /// Kubernetes: the job runner, `credentialsSecret`, the Argo CD gate.
    pub kubernetes: KubernetesConfig,
    /// The test runners' own settings.
    pub test: TestConfig,
    /// Forges: commit status links, retries of forge API calls.
    pub forge: ForgeConfig,
}

/// Settings of the test runners.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TestConfig {
    /// Extra CA bundle the HTTP runner trusts for `https` test targets, besides `git.caFile`.
    pub ca_file: Option<PathBuf>,
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
    /// How long a test pod may stay unschedulable or fail to pull its image or create its
    /// container before the run gives up (the cluster retries these: a node being added, a
    /// registry hiccup); default 5m.
    pub pod_problem_tolerance: Option<String>,
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
    /// Known hosts file (OpenSSH format) trusted for ssh remotes; `~/.ssh/known_hosts`
    /// otherwise.
    pub ssh_known_hosts: Option<PathBuf>,
    /// Extra CA bundle for HTTPS remotes.
    pub ca_file: Option<PathBuf>,
    pub push_attempts: u32,
    /// Private key (OpenSSH or armored OpenPGP) every promotion commit is signed with.
    pub signing_key: Option<PathBuf>,
    /// File holding the signing key's passphrase, when it is encrypted.
    pub signing_key_passphrase_file: Option<PathBuf>,
    /// `ssh` or `openpgp`: checked against the key, which tells its format itself.
    pub signing_format: Option<SigningFormat>,
    /// The email the key is registered for, used as author and committer email of signed
    /// commits; `GIT_EMAIL`, then `authorEmail` otherwise.
    pub signing_email: Option<String>,
    /// Allowed signers file (git's `gpg.ssh.allowedSignersFile`) that must list SSH signing
    /// keys for their email.
    pub signing_allowed_signers: Option<PathBuf>,
    /// The server's own credentials may go to `http://` remotes of `policy.repos` (clear text).
    pub allow_insecure_http: bool,
}

/// The listeners of `serve`, over the configuration file's.
#[derive(Debug, Default, clap::Args)]
pub struct ServeOverrides {
    /// gRPC listen address [default: 0.0.0.0:9000].
    #[arg(long, env = "PHASEGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Metrics and probes listen address.
    #[arg(long, env = "PHASEGATE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// The read-only web console's listen address (off unless set).
    #[arg(long, env = "PHASEGATE_CONSOLE_LISTEN")]
    pub console_listen: Option<SocketAddr>,
    /// The console's link to a commit on the forge (`{repo}`, `{commit}`).
    #[arg(long, env = "PHASEGATE_CONSOLE_COMMIT_LINK")]
    pub console_commit_link: Option<String>,
    /// TLS certificate (PEM) for the gRPC listener; needs --tls-key.
    #[arg(long, env = "PHASEGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "PHASEGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub rest: Overrides,
}

impl ServeOverrides {
    /// The configuration file (or the defaults) with these flags and variables over it.
    pub fn load(self) -> Result<Config, ConfigError> {
        let mut c = self.rest.load()?;
        c.listen = self.listen.unwrap_or(c.listen);
        c.metrics_listen = self.metrics_listen.or(c.metrics_listen);
        c.console_listen = self.console_listen.or(c.console_listen);
        c.console_commit_link = self.console_commit_link.or(c.console_commit_link);
        if let (Some(cert_file), Some(key_file)) = (self.tls_cert, self.tls_key) {
            c.tls = Some(TlsConfig {
                cert_file,
                key_file,
            });
        }
        Ok(c)
    }
}

/// Every other configuration field as a flag and a `PHASEGATE_*` variable, over the file's
/// value. List values are comma-separated.
#[derive(Debug, Default, clap::Args)]
pub struct Overrides {
    /// Configuration file (YAML).
    #[arg(long, env = "PHASEGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the repository clones and the run history.
    #[arg(long, env = "PHASEGATE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Runs at once; the rest queue.
    #[arg(long, env = "PHASEGATE_MAX_RUNS")]
    pub max_runs: Option<usize>,
    /// How long SIGTERM waits for runs in flight (`60s`).
    #[arg(long, env = "PHASEGATE_SHUTDOWN_GRACE", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// Allowed repository URL globs.
    #[arg(long, env = "PHASEGATE_POLICY_REPOS", value_delimiter = ',')]
    pub policy_repos: Option<Vec<String>>,
    /// Allowed transitions (`test->prod`).
    #[arg(long, env = "PHASEGATE_POLICY_TRANSITIONS", value_delimiter = ',')]
    pub policy_transitions: Option<Vec<String>>,
    /// Allowed test image globs.
    #[arg(long, env = "PHASEGATE_POLICY_IMAGES", value_delimiter = ',')]
    pub policy_images: Option<Vec<String>>,
    /// Allowed test command globs (canonical paths).
    #[arg(long, env = "PHASEGATE_POLICY_COMMANDS", value_delimiter = ',')]
    pub policy_commands: Option<Vec<String>>,
    /// Let specs set allowUnmergedSource (promote commits that are not on their branch).
    #[arg(long, env = "PHASEGATE_POLICY_ALLOW_UNMERGED_SOURCE")]
    pub policy_allow_unmerged_source: Option<bool>,
    /// Namespaces a test Job may run in besides the server's.
    #[arg(long, env = "PHASEGATE_POLICY_TEST_NAMESPACES", value_delimiter = ',')]
    pub policy_test_namespaces: Option<Vec<String>>,
    /// Service accounts a test Job may run as.
    #[arg(
        long,
        env = "PHASEGATE_POLICY_TEST_SERVICE_ACCOUNTS",
        value_delimiter = ','
    )]
    pub policy_test_service_accounts: Option<Vec<String>>,
    /// Allow `test: none`.
    #[arg(
        long,
        env = "PHASEGATE_POLICY_ALLOW_NO_TESTS",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub policy_allow_no_tests: bool,
    /// Permissive mode: an empty policy list allows everything (warned about loudly).
    #[arg(
        long,
        env = "PHASEGATE_POLICY_PERMISSIVE",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub policy_permissive: bool,
    /// Commit author name.
    #[arg(long, env = "PHASEGATE_GIT_AUTHOR_NAME")]
    pub git_author_name: Option<String>,
    /// Commit author email when the credentials carry none.
    #[arg(long, env = "PHASEGATE_GIT_AUTHOR_EMAIL")]
    pub git_author_email: Option<String>,
    /// File holding the HTTPS username; `GIT_USER` otherwise.
    #[arg(long, env = "PHASEGATE_GIT_USERNAME_FILE")]
    pub git_username_file: Option<PathBuf>,
    /// File holding the HTTPS password or token; `GIT_PASSWORD` otherwise.
    #[arg(long, env = "PHASEGATE_GIT_PASSWORD_FILE")]
    pub git_password_file: Option<PathBuf>,
    /// SSH private key for ssh remotes; the SSH agent otherwise.
    #[arg(long, env = "PHASEGATE_GIT_SSH_KEY")]
    pub git_ssh_key: Option<PathBuf>,
    /// Known hosts file trusted for ssh remotes; `~/.ssh/known_hosts` otherwise.
    #[arg(long, env = "PHASEGATE_GIT_SSH_KNOWN_HOSTS")]
    pub git_ssh_known_hosts: Option<PathBuf>,
    /// Extra CA bundle for HTTPS remotes.
    #[arg(long, env = "PHASEGATE_GIT_CA_FILE")]
    pub git_ca_file: Option<PathBuf>,
    /// Extra CA bundle for https test targets (the HTTP runner also trusts --git-ca-file).
    #[arg(long, env = "PHASEGATE_TEST_CA_FILE")]
    pub test_ca_file: Option<PathBuf>,
    /// The server's own credentials may go to http:// remotes of policy.repos (clear text).
    #[arg(
        long,
        env = "PHASEGATE_GIT_ALLOW_INSECURE_HTTP",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub git_allow_insecure_http: bool,
    /// Push attempts before ABORTED.
    #[arg(long, env = "PHASEGATE_PUSH_ATTEMPTS")]
    pub push_attempts: Option<u32>,
    /// Private key (OpenSSH or armored OpenPGP) to sign every promotion commit with.
    #[arg(long, env = "PHASEGATE_GIT_SIGNING_KEY")]
    pub git_signing_key: Option<PathBuf>,
    /// File holding the signing key's passphrase.
    #[arg(long, env = "PHASEGATE_GIT_SIGNING_KEY_PASSPHRASE_FILE")]
    pub git_signing_key_passphrase_file: Option<PathBuf>,
    /// Signing format, checked against the key: ssh or openpgp.
    #[arg(long, env = "PHASEGATE_GIT_SIGNING_FORMAT")]
    pub git_signing_format: Option<SigningFormat>,
    /// Email the signing key is registered for (author and committer of signed commits).
    #[arg(long, env = "PHASEGATE_GIT_SIGNING_EMAIL")]
    pub git_signing_email: Option<String>,
    /// Allowed signers file that must list SSH signing keys for their email.
    #[arg(long, env = "PHASEGATE_GIT_SIGNING_ALLOWED_SIGNERS")]
    pub git_signing_allowed_signers: Option<PathBuf>,
    /// Namespace of Secrets and test Jobs.
    #[arg(long, env = "PHASEGATE_KUBERNETES_NAMESPACE")]
    pub kubernetes_namespace: Option<String>,
    /// Kubernetes API server URL reached without authentication (`kubectl proxy`).
    #[arg(long, env = "PHASEGATE_KUBERNETES_API_URL")]
    pub kubernetes_api_url: Option<String>,
    /// How long an unschedulable test pod or an image pull error is waited out (e.g. 5m).
    #[arg(long, env = "PHASEGATE_KUBERNETES_POD_PROBLEM_TOLERANCE")]
    pub kubernetes_pod_problem_tolerance: Option<String>,
    /// No Kubernetes: the job runner and `credentialsSecret` are off.
    #[arg(
        long,
        env = "PHASEGATE_KUBERNETES_DISABLED",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub no_kubernetes: bool,
    /// Link of commit statuses, with `{run}` for the run id.
    #[arg(long, env = "PHASEGATE_FORGE_RUN_URL")]
    pub forge_run_url: Option<String>,
    /// Calls per forge request at most (rate limits and 5xx are retried).
    #[arg(long, env = "PHASEGATE_FORGE_RETRY_ATTEMPTS")]
    pub forge_retry_attempts: Option<u32>,
    /// The longest wait between two forge calls (`60s`).
    #[arg(long, env = "PHASEGATE_FORGE_MAX_RETRY_WAIT")]
    pub forge_max_retry_wait: Option<String>,
    /// The server's GitHub App: its id (with the installation id and the private key file).
    #[arg(long, env = "PHASEGATE_FORGE_GITHUB_APP_ID")]
    pub forge_github_app_id: Option<String>,
    /// The server's GitHub App: the installation id.
    #[arg(long, env = "PHASEGATE_FORGE_GITHUB_APP_INSTALLATION_ID")]
    pub forge_github_app_installation_id: Option<String>,
    /// The server's GitHub App: the file holding its private key (PEM).
    #[arg(long, env = "PHASEGATE_FORGE_GITHUB_APP_PRIVATE_KEY_FILE")]
    pub forge_github_app_private_key_file: Option<PathBuf>,
    /// The server's GitHub App: the API it is for (`https://api.github.com`).
    #[arg(long, env = "PHASEGATE_FORGE_GITHUB_APP_API_URL")]
    pub forge_github_app_api_url: Option<String>,
}

impl Overrides {
    /// The configuration file (or the defaults) with these flags and variables over it.
    pub fn load(self) -> Result<Config, ConfigError> {
        fn set<T>(field: &mut T, value: Option<T>) {
            if let Some(v) = value {
                *field = v;
            }
        }
        let mut c = Config::load(self.config.as_deref())?;
        set(&mut c.cache_dir, self.cache_dir);
        set(&mut c.max_runs, self.max_runs);
        set(&mut c.shutdown_grace, self.shutdown_grace);
        let set_list = |field: &mut Vec<String>, value: Option<Vec<String>>| {
            if let Some(v) = value {
                *field = v.into_iter().filter(|s| !s.is_empty()).collect();
            }
        };
        set_list(&mut c.policy.repos, self.policy_repos);
        set_list(&mut c.policy.transitions, self.policy_transitions);
        set_list(&mut c.policy.images, self.policy_images);
        set_list(&mut c.policy.commands, self.policy_commands);
        set(
            &mut c.policy.allow_unmerged_source,
            self.policy_allow_unmerged_source,
        );
        set_list(&mut c.policy.test_namespaces, self.policy_test_namespaces);
        set_list(
            &mut c.policy.test_service_accounts,
            self.policy_test_service_accounts,
        );
        c.policy.allow_no_tests |= self.policy_allow_no_tests;
        c.policy.permissive |= self.policy_permissive;
        let g = &mut c.git;
        set(&mut g.author_name, self.git_author_name);
        set(&mut g.author_email, self.git_author_email);
        g.username_file = self.git_username_file.or(g.username_file.take());
        g.password_file = self.git_password_file.or(g.password_file.take());
        g.ssh_key = self.git_ssh_key.or(g.ssh_key.take());
        g.ssh_known_hosts = self.git_ssh_known_hosts.or(g.ssh_known_hosts.take());
        g.ca_file = self.git_ca_file.or(g.ca_file.take());
        set(&mut g.push_attempts, self.push_attempts);
        g.signing_key = self.git_signing_key.or(g.signing_key.take());
        g.signing_key_passphrase_file = self
            .git_signing_key_passphrase_file
            .or(g.signing_key_passphrase_file.take());
        g.signing_format = self.git_signing_format.or(g.signing_format);
        g.signing_email = self.git_signing_email.or(g.signing_email.take());
        g.signing_allowed_signers = self
            .git_signing_allowed_signers
            .or(g.signing_allowed_signers.take());
        c.test.ca_file = self.test_ca_file.or(c.test.ca_file.take());
        g.allow_insecure_http |= self.git_allow_insecure_http;
        let k = &mut c.kubernetes;
        k.namespace = self.kubernetes_namespace.or(k.namespace.take());
        k.api_url = self.kubernetes_api_url.or(k.api_url.take());
        k.pod_problem_tolerance = self
            .kubernetes_pod_problem_tolerance
            .or(k.pod_problem_tolerance.take());
        k.disabled |= self.no_kubernetes;
        let f = &mut c.forge;
        f.run_url = self.forge_run_url.or(f.run_url.take());
        set(&mut f.retry_attempts, self.forge_retry_attempts);
        set(&mut f.max_retry_wait, self.forge_max_retry_wait);
        f.github_app = forge::github_app_overrides(
            f.github_app.take(),
            self.forge_github_app_id,
            self.forge_github_app_installation_id,
            self.forge_github_app_private_key_file,
            self.forge_github_app_api_url,
        )?;
        Ok(c)
    }
}

/// `shutdownGrace` as people write it (`60s`, `2m 30s`), parsed once, where the file is read.
fn grace<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "shutdownGrace {text:?} is not a duration like 60s: {e}"
        ))
    })
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: ([0, 0, 0, 0], 9000).into(),
            metrics_listen: None,
            console_listen: None,
            console_commit_link: None,
            notifications: Vec::new(),
            policy: PolicyConfig::default(),
            credentials: Vec::new(),
            git: GitConfig::default(),
            cache_dir: std::env::temp_dir().join("phasegate-cache"),
            max_runs: 8,
            shutdown_grace: Duration::from_secs(60),
            tls: None,
            kubernetes: KubernetesConfig::default(),
            test: TestConfig::default(),
            forge: ForgeConfig::default(),
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
            ssh_known_hosts: None,
            ca_file: None,
            push_attempts: DEFAULT_PUSH_ATTEMPTS,
            signing_key: None,
            signing_key_passphrase_file: None,
            signing_format: None,
            signing_email: None,
            signing_allowed_signers: None,
            allow_insecure_http: false,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

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
        assert!(!Policy::new(&c.policy).expect("policy").is_permissive());
        std::fs::write(&file, "shutdownGrace: 2m 30s\n").expect("write");
        let c = Config::load(Some(&file)).expect("loads");
        assert_eq!(c.shutdown_grace, Duration::from_secs(150));
        std::fs::write(&file, "shutdownGrace: forever\n").expect("write");
        let err = Config::load(Some(&file))
            .expect_err("not a duration")
            .to_string();
        assert!(err.contains("shutdownGrace \"forever\""), "{err}");
        std::fs::write(&file, "lisen: 1\n").expect("write");
        let err = Config::load(Some(&file)).expect_err("typo").to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        overrides: ServeOverrides,
    }

    #[test]
    fn flags_win_over_the_file_and_lists_are_comma_separated() {
        use clap::Parser;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "maxRuns: 2\ngit:\n  authorName: from-file\n  pushAttempts: 3\npolicy:\n  repos: [\"https://a/*\"]\n",
        )
        .expect("write");
        let flags = [
            "phasegate",
            "--config",
            file.to_str().expect("utf-8"),
            "--max-runs",
            "5",
            "--policy-repos",
            "https://git.example.com/org/*,ssh://git@git.example.com/*",
            "--policy-transitions=test->prod",
            "--git-ssh-key",
            "/keys/id",
            "--kubernetes-namespace",
            "gitops",
            "--no-kubernetes",
            "--listen",
            "127.0.0.1:9100",
        ];
        let c = Cli::parse_from(flags).overrides.load().expect("loads");

        assert_eq!(c.max_runs, 5, "the flag wins");
        assert_eq!(
            c.git.push_attempts, 3,
            "the file stays where no flag is given"
        );
        assert_eq!(c.git.author_name, "from-file");
        assert_eq!(
            c.policy.repos,
            [
                "https://git.example.com/org/*",
                "ssh://git@git.example.com/*"
            ]
        );
        assert_eq!(c.policy.transitions, ["test->prod"]);
        assert_eq!(c.git.ssh_key.as_deref(), Some(Path::new("/keys/id")));
        assert_eq!(c.kubernetes.namespace.as_deref(), Some("gitops"));
        assert!(c.kubernetes.disabled);
        assert_eq!(c.listen.port(), 9100);
        let err = Cli::try_parse_from(["phasegate", "--tls-cert", "c.pem"])
            .map(|_| ())
            .expect_err("a certificate without a key");
        assert!(err.to_string().contains("--tls-key"), "{err}");
    }
}
