//! Server configuration: a YAML file, and every setting also a flag and a `PHASEGATE_*`
//! environment variable (a flag wins over its variable, both over the file).
//!
//! Each setting is declared once, as a field of [`Config`] or of one of its sections: serde
//! reads it from the file (its `camelCase` key), clap from its flag and variable (`#[arg]`),
//! and [`ServeOverrides::load`] lays the flags over the file with clap's own update.
//!
//! Git credentials come from credential scopes (`credentials:`, bound to URL prefixes), and
//! the classic container's variables (`GIT_USER`, `GIT_PASSWORD`, `GIT_EMAIL`) or files, which
//! go only to the repositories `policy.repos` names.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::builder::FalseyValueParser;
use serde::Deserialize;

use crate::{
    credentials::ScopeConfig,
    git::{DEFAULT_MAX_FETCH_BYTES, DEFAULT_PUSH_ATTEMPTS, SigningFormat},
    policy::PolicyConfig,
};

pub use crate::runner::RunAs;

mod flags;
mod forge;

pub use flags::{Overrides, ServeOverrides};
pub use forge::{ForgeConfig, GitHubAppConfig};

/// Runs that may wait for a slot: eight rounds of the default `maxRuns`, far more than a burst
/// of Sensor events, far fewer than would hold memory an operator would notice (a queued run is
/// a task, a ledger entry and a history record: a few KiB).
pub const DEFAULT_MAX_QUEUED_RUNS: usize = 64;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// The server configuration: the file's keys, and the flags and variables over them.
#[derive(Debug, Clone, Deserialize, clap::Args)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address [default: 0.0.0.0:9000].
    #[arg(long, env = "PHASEGATE_LISTEN")]
    pub listen: SocketAddr,
    /// Metrics and probes listen address.
    #[arg(long, env = "PHASEGATE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// The read-only web console's listen address (off unless set).
    #[arg(long, env = "PHASEGATE_CONSOLE_LISTEN")]
    pub console_listen: Option<SocketAddr>,
    /// Link to a commit on the forge, with `{repo}` (the repository path, e.g. `org/gitops`)
    /// and `{commit}`, e.g. `https://github.com/{repo}/commit/{commit}`.
    #[arg(
        long,
        env = "PHASEGATE_CONSOLE_COMMIT_LINK",
        help = "The console's link to a commit on the forge (`{repo}`, `{commit}`)"
    )]
    pub console_commit_link: Option<String>,
    /// The host names the console answers to besides the loopback ones (`localhost`,
    /// `127.0.0.1`, `[::1]`): the name an authenticating proxy forwards, for instance.
    #[arg(
        long,
        env = "PHASEGATE_CONSOLE_HOSTS",
        value_parser = crate::policy::comma_list,
        help = "Host names the console answers to besides localhost (comma-separated)"
    )]
    pub console_hosts: crate::policy::List,
    /// Webhooks posted when a run ends (file only).
    #[arg(skip)]
    pub notifications: Vec<crate::notify::NotificationConfig>,
    /// Allowlists (closed by default).
    #[command(flatten)]
    pub policy: PolicyConfig,
    /// The operator's test profiles by name, written with the spec's `test*` keys plus
    /// `testTargets` (file only); a spec names one with `testProfile`.
    #[arg(skip)]
    pub test_profiles: std::collections::BTreeMap<String, serde_yaml_ng::Mapping>,
    /// Credential scopes: which credentials go to which remotes (URL prefixes; file only).
    #[arg(skip)]
    pub credentials: Vec<ScopeConfig>,
    /// Git author, credentials and push behaviour.
    #[command(flatten)]
    pub git: GitConfig,
    /// Directory of the repository clones and the run history.
    #[arg(long, env = "PHASEGATE_CACHE_DIR")]
    pub cache_dir: PathBuf,
    /// Runs at once; the rest queue.
    #[arg(long, env = "PHASEGATE_MAX_RUNS")]
    pub max_runs: usize,
    /// Runs waiting for one of the `maxRuns` slots; beyond them Execute answers
    /// `RESOURCE_EXHAUSTED` (a duplicate joining a run in flight is not a new run).
    #[arg(long, env = "PHASEGATE_MAX_QUEUED_RUNS")]
    pub max_queued_runs: usize,
    /// How long SIGTERM waits for runs in flight (`60s`).
    #[arg(long, env = "PHASEGATE_SHUTDOWN_GRACE", value_parser = humantime::parse_duration)]
    #[serde(deserialize_with = "grace")]
    pub shutdown_grace: Duration,
    /// TLS for the gRPC listener (certificate and key files, reloaded when they change); its
    /// flags are [`TlsConfig`]'s, taken as a pair.
    #[arg(skip)]
    pub tls: Option<TlsConfig>,
    /// Kubernetes: the job runner, `credentialsSecret`, the Argo CD gate.
    #[command(flatten)]
    pub kubernetes: KubernetesConfig,
    /// The test runners' own settings.
    #[command(flatten)]
    pub test: TestConfig,
    /// Forges: commit status links, retries of forge API calls.
    #[command(flatten)]
    pub forge: ForgeConfig,
}

/// Settings of the test runners.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TestConfig {
    /// Extra CA bundle for https test targets (the HTTP runner also trusts --git-ca-file).
    #[arg(
        id = "test_ca_file",
        long = "test-ca-file",
        env = "PHASEGATE_TEST_CA_FILE",
        value_name = "CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// The user and group test commands run as, `UID[:GID]` (numeric; the group is the uid's
    /// number when not given; never 0); phasegate's own otherwise. Test commands never get
    /// capabilities either way.
    #[arg(
        id = "test_run_as_user",
        long = "test-run-as-user",
        env = "PHASEGATE_TEST_RUN_AS_USER",
        value_name = "UID[:GID]",
        help = "User (and group) test commands run as, numeric UID[:GID], never 0"
    )]
    pub run_as_user: Option<RunAs>,
}

/// The default cache: the user's own (`$XDG_CACHE_HOME/phasegate`, else
/// `$HOME/.cache/phasegate`), never a name in the shared temporary directory another user could
/// create first; without a home, `$TMPDIR/phasegate-cache-<uid>` (whose owner and mode are
/// checked before use like any cache).
fn default_cache_dir() -> PathBuf {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").and_then(absolute) {
        return dir.join("phasegate");
    }
    if let Some(home) = std::env::var_os("HOME").and_then(absolute) {
        return home.join(".cache/phasegate");
    }
    std::env::temp_dir().join(format!("phasegate-cache-{}", nix::unistd::geteuid()))
}

/// TLS files of the gRPC listener.
#[derive(Debug, Clone, Deserialize, clap::Args)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// TLS certificate (PEM) for the gRPC listener; needs --tls-key.
    #[arg(long = "tls-cert", env = "PHASEGATE_TLS_CERT", requires = "key_file")]
    pub cert_file: PathBuf,
    /// TLS private key (PEM).
    #[arg(long = "tls-key", env = "PHASEGATE_TLS_KEY", requires = "cert_file")]
    pub key_file: PathBuf,
}

/// How phasegate reaches Kubernetes.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesConfig {
    /// No Kubernetes: the job runner and `credentialsSecret` are off.
    #[arg(
        long = "no-kubernetes",
        env = "PHASEGATE_KUBERNETES_DISABLED",
        value_parser = FalseyValueParser::new()
    )]
    pub disabled: bool,
    /// The server's namespace (Secrets, default namespace of test Jobs); the service
    /// account's namespace otherwise.
    #[arg(
        long = "kubernetes-namespace",
        env = "PHASEGATE_KUBERNETES_NAMESPACE",
        help = "Namespace of Secrets and test Jobs"
    )]
    pub namespace: Option<String>,
    /// Kubernetes API server URL reached without authentication (`kubectl proxy`).
    #[arg(long = "kubernetes-api-url", env = "PHASEGATE_KUBERNETES_API_URL")]
    pub api_url: Option<String>,
    /// How long a test pod may stay unschedulable or fail to pull its image or create its
    /// container before the run gives up (the cluster retries these: a node being added, a
    /// registry hiccup); default 5m.
    #[arg(
        long = "kubernetes-pod-problem-tolerance",
        env = "PHASEGATE_KUBERNETES_POD_PROBLEM_TOLERANCE",
        help = "How long an unschedulable test pod or an image pull error is waited out (e.g. 5m)"
    )]
    pub pod_problem_tolerance: Option<String>,
}

/// Git settings of the configuration file.
#[derive(Debug, Clone, Deserialize, clap::Args)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct GitConfig {
    /// Commit author name.
    #[arg(long = "git-author-name", env = "PHASEGATE_GIT_AUTHOR_NAME")]
    pub author_name: String,
    /// Commit author email when the credentials carry none.
    #[arg(long = "git-author-email", env = "PHASEGATE_GIT_AUTHOR_EMAIL")]
    pub author_email: String,
    /// File holding the HTTPS username (a mounted Secret); `GIT_USER` otherwise.
    #[arg(
        long = "git-username-file",
        env = "PHASEGATE_GIT_USERNAME_FILE",
        help = "File holding the HTTPS username; `GIT_USER` otherwise"
    )]
    pub username_file: Option<PathBuf>,
    /// File holding the HTTPS password or token; `GIT_PASSWORD` otherwise.
    #[arg(long = "git-password-file", env = "PHASEGATE_GIT_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// SSH private key for ssh remotes; the SSH agent otherwise.
    #[arg(long = "git-ssh-key", env = "PHASEGATE_GIT_SSH_KEY")]
    pub ssh_key: Option<PathBuf>,
    /// Known hosts file (OpenSSH format) trusted for ssh remotes; `~/.ssh/known_hosts`
    /// otherwise.
    #[arg(
        long = "git-ssh-known-hosts",
        env = "PHASEGATE_GIT_SSH_KNOWN_HOSTS",
        help = "Known hosts file trusted for ssh remotes; `~/.ssh/known_hosts` otherwise"
    )]
    pub ssh_known_hosts: Option<PathBuf>,
    /// Extra CA bundle for HTTPS remotes.
    #[arg(long = "git-ca-file", env = "PHASEGATE_GIT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Push attempts before ABORTED.
    #[arg(long = "push-attempts", env = "PHASEGATE_PUSH_ATTEMPTS")]
    pub push_attempts: u32,
    /// The most one fetch may receive, in bytes; a larger fetch is cancelled.
    #[arg(long = "git-max-fetch-bytes", env = "PHASEGATE_GIT_MAX_FETCH_BYTES")]
    pub max_fetch_bytes: u64,
    /// Private key (OpenSSH or armored OpenPGP) to sign every promotion commit with.
    #[arg(long = "git-signing-key", env = "PHASEGATE_GIT_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// File holding the signing key's passphrase.
    #[arg(
        long = "git-signing-key-passphrase-file",
        env = "PHASEGATE_GIT_SIGNING_KEY_PASSPHRASE_FILE"
    )]
    pub signing_key_passphrase_file: Option<PathBuf>,
    /// Signing format, checked against the key: ssh or openpgp.
    #[arg(long = "git-signing-format", env = "PHASEGATE_GIT_SIGNING_FORMAT")]
    pub signing_format: Option<SigningFormat>,
    /// The email the key is registered for, used as author and committer email of signed
    /// commits; `GIT_EMAIL`, then `authorEmail` otherwise.
    #[arg(
        long = "git-signing-email",
        env = "PHASEGATE_GIT_SIGNING_EMAIL",
        help = "Email the signing key is registered for (author and committer of signed commits)"
    )]
    pub signing_email: Option<String>,
    /// Allowed signers file that must list SSH signing keys for their email (git's
    /// `gpg.ssh.allowedSignersFile`).
    #[arg(
        long = "git-signing-allowed-signers",
        env = "PHASEGATE_GIT_SIGNING_ALLOWED_SIGNERS",
        help = "Allowed signers file that must list SSH signing keys for their email"
    )]
    pub signing_allowed_signers: Option<PathBuf>,
    /// The server's own credentials may go to http:// remotes of policy.repos (clear text).
    #[arg(
        long = "git-allow-insecure-http",
        env = "PHASEGATE_GIT_ALLOW_INSECURE_HTTP",
        value_parser = FalseyValueParser::new()
    )]
    pub allow_insecure_http: bool,
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
            console_hosts: Vec::new(),
            notifications: Vec::new(),
            policy: PolicyConfig::default(),
            test_profiles: Default::default(),
            credentials: Vec::new(),
            git: GitConfig::default(),
            cache_dir: default_cache_dir(),
            max_runs: 8,
            max_queued_runs: DEFAULT_MAX_QUEUED_RUNS,
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
            max_fetch_bytes: DEFAULT_MAX_FETCH_BYTES,
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
            "maxRuns: 2\nmaxQueuedRuns: 7\ngit:\n  authorName: from-file\n  pushAttempts: 3\n  maxFetchBytes: 1048576\npolicy:\n  repos: [\"https://a/*\"]\n",
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
        assert_eq!(c.max_queued_runs, 7);
        assert_eq!(
            c.git.push_attempts, 3,
            "the file stays where no flag is given"
        );
        assert_eq!(c.git.author_name, "from-file");
        assert_eq!(c.git.max_fetch_bytes, 1 << 20);
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
