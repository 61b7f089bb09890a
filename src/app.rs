//! The composition root: the one place that turns the configuration (plain data) into the
//! server's parts — reading credential and key files and the classic `GIT_*` variables,
//! connecting to Kubernetes, building the HTTP clients, opening the history — for `serve`,
//! `promote` and `demo` alike. Everything it builds is handed to the pipeline and the gRPC
//! [`server`]; nothing below it reads the environment or the configuration again.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::net::TcpListener;
use tracing::warn;

use crate::{
    cluster::Cluster,
    config::{Config, ConfigError, GitHubAppConfig},
    credentials::{
        CredentialScopes, Credentials, Secret, SigningKeySource,
        github_app::{BadAppField, GitHubApp},
        read_credential_file,
    },
    forge::{ForgeSettings, RetryPolicy, access::ServerApp},
    git::{GitSettings, IdentityCheck, Signer},
    history::History,
    metrics::Metrics,
    notify::Notifier,
    outcome::Shared,
    pipeline::{Parts, Pipeline},
    policy::Policy,
    runner::RunnerSettings,
    server::{self, Listeners, ServeError},
    spec::{Resource, TestProfiles},
};

/// Why the server (or a one-shot promotion) could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot be used (a bad value, an unreadable file, a key that cannot
    /// sign).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for {what}: {reason}")]
    Listen {
        addr: std::net::SocketAddr,
        what: &'static str,
        reason: String,
    },
    /// The gRPC server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Builds the parts `config` describes: its history (persisted in the cache directory), its
/// credentials, its cluster.
async fn parts(config: &Config, metrics: Arc<Metrics>) -> Result<Parts, StartError> {
    crate::git::configure_process(config.git.ca_file.as_deref())
        .map_err(|e| ConfigError(e.to_string()))?;
    let policy = policy(config)?;
    metrics.set_permissive(policy.is_permissive());
    if policy.is_permissive() {
        warn!(
            "PERMISSIVE POLICY: an empty policy list allows everything; any caller of port \
             9000 may run listed-or-not commands and images and promote untested versions"
        );
    }
    let git = git_settings_under(config, &policy)?;
    if git.credentials.legacy_unused() {
        warn!(
            "GIT_USER/GIT_PASSWORD (or git.usernameFile/passwordFile) are set but policy.repos \
             is empty: they go to no remote; name the repos in policy.repos or use credentials:"
        );
    }
    crate::notify::validate(&config.notifications).map_err(|e| ConfigError(e.to_string()))?;
    if let Some(link) = &config.console_commit_link
        && !crate::web::valid_commit_link(link)
    {
        return Err(ConfigError(
            "consoleCommitLink must be an http:// or https:// URL template".into(),
        )
        .into());
    }
    // The clones and the history are phasegate's alone: a cache directory someone else owns or
    // may write stops the start, naming why.
    crate::hardening::private_dir(&config.cache_dir)
        .map_err(|e| ConfigError(format!("cacheDir {}: {e}", config.cache_dir.display())))?;
    crate::hardening::owned_dir(&config.cache_dir)
        .map_err(|why| ConfigError(format!("cacheDir is not phasegate's own: {why}")))?;
    // Each CA bundle is read once, for every client that trusts it.
    let git_ca = ca_bundle(config.git.ca_file.as_deref())?;
    let test_ca = ca_bundle(config.test.ca_file.as_deref())?;
    let runners = RunnerSettings {
        http: crate::runner::http_client(&[&git_ca[..], &test_ca[..]].concat())
            .map_err(ConfigError)?,
        run_as: config.test.run_as_user,
    };
    Ok(Parts {
        policy,
        git,
        cluster: cluster(config).await?,
        forge: forge_settings_trusting(config, &git_ca)?,
        runners,
        history: Arc::new(History::open(Some(&config.cache_dir))),
        metrics,
        max_runs: config.max_runs,
        max_queued_runs: config.max_queued_runs,
    })
}

/// The pipeline `config` describes, with fresh metrics.
pub async fn pipeline(config: &Config) -> Result<Pipeline, StartError> {
    Ok(Pipeline::new(parts(config, Default::default()).await?))
}

/// Serves on `config.listen`, and on `config.metricsListen` and `config.consoleListen` when
/// set, until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let bind = async |addr: std::net::SocketAddr, what| {
        TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Listen {
                addr,
                what,
                reason: e.to_string(),
            })
    };
    let listeners = Listeners {
        grpc: bind(config.listen, "gRPC").await?,
        metrics: match config.metrics_listen {
            Some(addr) => Some(bind(addr, "metrics").await?),
            None => None,
        },
        console: match config.console_listen {
            Some(addr) => Some(bind(addr, "the console").await?),
            None => None,
        },
    };
    serve_on(listeners, config, shutdown).await
}

/// Serves on bound `listeners` until `shutdown` resolves (see [`server::serve`]).
pub async fn serve_on(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new());
    let pipeline = Arc::new(Pipeline::new(parts(&config, metrics.clone()).await?));
    let notifier = Notifier::new(&config.notifications);
    Ok(server::serve(listeners, pipeline, metrics, config, notifier, shutdown).await?)
}

/// `phasegate promote`: one run of `resource`, whose repository the command line trusts.
pub async fn promote(mut config: Config, resource: &Resource) -> Result<Shared, StartError> {
    config.policy.trust_command_line(&resource.repo);
    let pipeline = pipeline(&config).await?;
    Ok(match pipeline.plan(resource) {
        Ok(plan) => pipeline.submit(plan).await,
        Err(e) => Err(Arc::new(e.into())),
    })
}

/// The Kubernetes cluster phasegate works with, if any.
async fn cluster(config: &Config) -> Result<Option<Cluster>, ConfigError> {
    let k = &config.kubernetes;
    if k.disabled {
        return Ok(None);
    }
    let tolerance = match &k.pod_problem_tolerance {
        Some(t) => Some(humantime::parse_duration(t).map_err(|e| {
            ConfigError(format!(
                "kubernetes.podProblemTolerance {t:?} is not a duration like 5m: {e}"
            ))
        })?),
        None => None,
    };
    let cluster = match &k.api_url {
        Some(url) => Cluster::at(url, k.namespace.as_deref().unwrap_or("default"))
            .map(Some)
            .map_err(|e| ConfigError(e.to_string()))?,
        None => Cluster::infer(k.namespace.as_deref()).await,
    };
    Ok(cluster.map(|c| match tolerance {
        Some(t) => c.with_pod_problem_tolerance(t),
        None => c,
    }))
}

/// The compiled policy.
pub fn policy(config: &Config) -> Result<Policy, ConfigError> {
    let profiles = TestProfiles::parse(&config.test_profiles).map_err(ConfigError)?;
    Policy::new(&config.policy)
        .map(|p| p.with_profiles(profiles))
        .map_err(|e| ConfigError(e.to_string()))
}

/// Forge settings: status links, retries, the server's GitHub App (its key file read and
/// checked: an App that cannot sign stops the server at start-up), the CA bundle git trusts.
pub fn forge_settings(config: &Config) -> Result<ForgeSettings, ConfigError> {
    forge_settings_trusting(config, &ca_bundle(config.git.ca_file.as_deref())?)
}

/// [`forge_settings`], its client trusting `git_ca` (read by the caller).
fn forge_settings_trusting(
    config: &Config,
    git_ca: &[reqwest::Certificate],
) -> Result<ForgeSettings, ConfigError> {
    let f = &config.forge;
    if f.retry_attempts == 0 || f.retry_attempts > 20 {
        return Err(ConfigError("forge.retryAttempts must be 1 to 20".into()));
    }
    let max_wait = humantime::parse_duration(&f.max_retry_wait)
        .map_err(|e| ConfigError(format!("forge.maxRetryWait {:?}: {e}", f.max_retry_wait)))?;
    if let Some(url) = &f.run_url
        && url::Url::parse(&url.replace("{run}", "r")).is_err()
    {
        return Err(ConfigError("forge.runUrl is not a URL template".into()));
    }
    Ok(ForgeSettings {
        run_url: f.run_url.clone(),
        retry: RetryPolicy {
            attempts: f.retry_attempts,
            max_wait,
            ..Default::default()
        },
        http: crate::forge::http_client(git_ca).map_err(|e| ConfigError(e.to_string()))?,
        github_app: f.github_app.as_ref().map(server_app).transpose()?,
    })
}

/// The certificates of the CA bundle `file` (PEM), if one is configured; a bundle that cannot
/// be read, or holds none, stops the start naming the file.
fn ca_bundle(file: Option<&Path>) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let bad = |reason: String| ConfigError(format!("CA bundle {}: {reason}", file.display()));
    let pem = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certificates.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certificates)
}

/// The server's GitHub App, its key read and checked, and the one API it is for.
fn server_app(c: &GitHubAppConfig) -> Result<ServerApp, ConfigError> {
    let file = c.private_key_file.display();
    let pem = read_credential_file(&c.private_key_file)
        .map_err(|e| ConfigError(format!("forge.githubApp.privateKeyFile {file}: {e}")))?;
    let app = GitHubApp::new(&c.app_id, &c.installation_id, &pem).map_err(|bad| {
        let field = match bad {
            BadAppField::AppId => "appId".to_string(),
            BadAppField::InstallationId => "installationId".to_string(),
            BadAppField::PrivateKey => format!("privateKeyFile {file}"),
        };
        ConfigError(format!("forge.githubApp.{field} {}", bad.problem()))
    })?;
    let api = crate::credentials::github_app::app_api_root(&c.api_url).ok_or_else(|| {
        ConfigError(format!(
            "forge.githubApp.apiUrl {:?} is not an https:// URL",
            c.api_url
        ))
    })?;
    Ok(ServerApp { app, api })
}

/// Git settings, with the server's own credentials from files or the environment and its
/// signing key loaded.
pub fn git_settings(config: &Config) -> Result<GitSettings, ConfigError> {
    git_settings_under(config, &policy(config)?)
}

/// A non-empty environment variable.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// [`git_settings`], the legacy credentials going to the repositories `policy` names.
fn git_settings_under(config: &Config, policy: &Policy) -> Result<GitSettings, ConfigError> {
    let g = &config.git;
    let read = |file: &Option<PathBuf>, name: &str| -> Result<Option<String>, ConfigError> {
        match file {
            Some(f) => read_credential_file(f)
                .map(Some)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", f.display()))),
            None => Ok(var(name)),
        }
    };
    let username = read(&g.username_file, "GIT_USER")?;
    let password = read(&g.password_file, "GIT_PASSWORD")?;
    let legacy = match (username, password) {
        (Some(username), Some(password)) => Some(Credentials {
            username,
            password: Secret::new(password),
            email: var("GIT_EMAIL"),
        }),
        (None, None) => None,
        _ => {
            return Err(ConfigError(
                "git credentials need both a username and a password".into(),
            ));
        }
    };
    let credentials = CredentialScopes::load(&config.credentials)
        .map_err(|e| ConfigError(e.to_string()))?
        .with_legacy(legacy, policy.repos().clone(), g.allow_insecure_http);
    if g.push_attempts == 0 {
        return Err(ConfigError("git.pushAttempts must be at least 1".into()));
    }
    if g.max_fetch_bytes == 0 {
        return Err(ConfigError("git.maxFetchBytes must be at least 1".into()));
    }
    if let Some(file) = &g.ssh_known_hosts {
        crate::git::validate_known_hosts(file).map_err(ConfigError)?;
    }
    Ok(GitSettings {
        cache_dir: config.cache_dir.clone(),
        push_attempts: g.push_attempts,
        max_fetch_bytes: g.max_fetch_bytes,
        author_name: g.author_name.clone(),
        author_email: g.author_email.clone(),
        credentials,
        ssh_key: g.ssh_key.clone(),
        ssh_known_hosts: g.ssh_known_hosts.clone(),
        signer: signer(config)?.map(Arc::new),
        signing_allowed_signers: g.signing_allowed_signers.clone(),
    })
}

/// The server's signing key, loaded and checked: a key that cannot sign as the configured
/// email stops the server at start-up rather than letting it push unsigned commits.
fn signer(config: &Config) -> Result<Option<Signer>, ConfigError> {
    let g = &config.git;
    let Some(file) = &g.signing_key else {
        if g.signing_key_passphrase_file.is_some() || g.signing_format.is_some() {
            return Err(ConfigError(
                "git.signingKeyPassphraseFile and git.signingFormat need git.signingKey".into(),
            ));
        }
        return Ok(None);
    };
    let read = |f: &PathBuf| {
        read_credential_file(f)
            .map(Secret::new)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", f.display())))
    };
    let source = SigningKeySource {
        key: read(file)?,
        passphrase: g
            .signing_key_passphrase_file
            .as_ref()
            .map(read)
            .transpose()?,
    };
    let email = g.signing_email.clone().or_else(|| var("GIT_EMAIL"));
    let identity = IdentityCheck {
        email: email.as_deref().unwrap_or(&g.author_email),
        allowed_signers: g.signing_allowed_signers.as_deref(),
    };
    Signer::load(&source, g.signing_format, &identity)
        .map(Some)
        .map_err(|e| ConfigError(format!("git.signingKey {}: {e}", file.display())))
}
