//! The server policy: which repositories, phase transitions, test images, local commands, Job
//! namespaces and service accounts a Sensor may ask for.
//!
//! Closed by default: with no configuration, `serve` refuses every repository that neither
//! `policy.repos` nor a credential scope names, the command runner (no `policy.commands`), the
//! Job runner (no `policy.images`), `test: none` (no `policy.allowNoTests`), and any
//! `testNamespace` or `testServiceAccount` not listed. Transitions are free unless listed (the
//! spec's `phases` chain them). `policy.permissive: true` brings back the old behaviour (an
//! empty list allows everything), loudly. Globs' `*` never crosses `/` (`**` does).

use std::path::{Path, PathBuf};

use globset::{GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::{
    credentials::CredentialScopes,
    spec::{Plan, RepoGlobs, TestPlan, strict_glob},
};

/// Why the policy refused a run.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A glob in the configuration does not parse.
    #[error("policy {list} has an invalid glob {reason}")]
    BadGlob { list: &'static str, reason: String },
    /// The request is outside the allowlists.
    #[error("server policy does not allow {what}")]
    Denied { what: String },
    /// The command cannot be checked: its `testWorkdir` is missing on this server.
    #[error("testWorkdir {0:?} is not a directory on this server")]
    NoWorkdir(String),
}

impl PolicyError {
    /// The kind of this error: a missing working directory is the server's state, not a refusal.
    pub fn kind(&self) -> crate::kind::ErrorKind {
        match self {
            PolicyError::NoWorkdir(_) => crate::kind::ErrorKind::FailedPrecondition,
            PolicyError::BadGlob { .. } | PolicyError::Denied { .. } => {
                crate::kind::ErrorKind::PermissionDenied
            }
        }
    }
}

/// Allowlists as written in the server configuration, and as `--policy-*` flags and
/// `PHASEGATE_POLICY_*` variables (lists comma-separated).
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyConfig {
    /// Globs of repository URLs (`https://github.com/my-org/*`), matched on the normalised URL.
    #[arg(
        long = "policy-repos",
        env = "PHASEGATE_POLICY_REPOS",
        value_parser = comma_list,
        help = "Allowed repository URL globs"
    )]
    pub repos: List,
    /// Allowed transitions, `source->target` (`test->prod`); `*` matches any phase.
    #[arg(
        long = "policy-transitions",
        env = "PHASEGATE_POLICY_TRANSITIONS",
        value_parser = comma_list,
        help = "Allowed transitions (`test->prod`)"
    )]
    pub transitions: List,
    /// Globs of test images (`registry.example.com/tests/*`).
    #[arg(
        long = "policy-images",
        env = "PHASEGATE_POLICY_IMAGES",
        value_parser = comma_list,
        help = "Allowed test image globs"
    )]
    pub images: List,
    /// Globs of the canonical paths of programs the command runner may start.
    #[arg(
        long = "policy-commands",
        env = "PHASEGATE_POLICY_COMMANDS",
        value_parser = comma_list,
        help = "Allowed test command globs (canonical paths)"
    )]
    pub commands: List,
    /// Whether a spec may set `allowUnmergedSource` (promote a commit that is not on its
    /// branch). Off by default: only merged versions are promoted.
    #[arg(
        long = "policy-allow-unmerged-source",
        env = "PHASEGATE_POLICY_ALLOW_UNMERGED_SOURCE",
        action = clap::ArgAction::Set,
        help = "Let specs set allowUnmergedSource (promote commits that are not on their branch)"
    )]
    pub allow_unmerged_source: bool,
    /// Namespaces a test Job may run in besides the server's own (`testNamespace`).
    #[arg(
        long = "policy-test-namespaces",
        env = "PHASEGATE_POLICY_TEST_NAMESPACES",
        value_parser = comma_list,
        help = "Namespaces a test Job may run in besides the server's"
    )]
    pub test_namespaces: List,
    /// Service accounts a test Job may run as (`testServiceAccount`); without one the Job runs
    /// as its namespace's `default`.
    #[arg(
        long = "policy-test-service-accounts",
        env = "PHASEGATE_POLICY_TEST_SERVICE_ACCOUNTS",
        value_parser = comma_list,
        help = "Service accounts a test Job may run as"
    )]
    pub test_service_accounts: List,
    /// Allow `test: none` (promote without testing).
    #[arg(
        long = "policy-allow-no-tests",
        env = "PHASEGATE_POLICY_ALLOW_NO_TESTS",
        value_parser = clap::builder::FalseyValueParser::new(),
        help = "Allow `test: none`"
    )]
    pub allow_no_tests: bool,
    /// Permissive mode: an empty policy list allows everything (warned about loudly), as
    /// before phasegate was closed by default.
    #[arg(
        long = "policy-permissive",
        env = "PHASEGATE_POLICY_PERMISSIVE",
        value_parser = clap::builder::FalseyValueParser::new(),
        help = "Permissive mode: an empty policy list allows everything (warned about loudly)"
    )]
    pub permissive: bool,
}

/// A list of the policy. Spelled `List` rather than `Vec<String>` so that clap takes a flag's
/// or variable's whole comma-separated text as one value ([`comma_list`]) instead of
/// collecting one item per occurrence.
pub(crate) type List = Vec<String>;

/// A list setting's flag or variable: comma-separated, empty items dropped (so an empty
/// variable empties the list).
fn comma_list(text: &str) -> Result<Vec<String>, std::convert::Infallible> {
    Ok(text
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

impl PolicyConfig {
    /// The operator's own command line (`phasegate promote`) is trusted where the operator
    /// configured no list: the repository it names (which then gets the server's own
    /// credentials), its command, and `--test none`. Lists that are configured still apply.
    pub fn trust_command_line(&mut self, repo: &str) {
        if self.repos.is_empty() {
            self.repos.push(globset::escape(repo));
        }
        if self.commands.is_empty() {
            self.commands.push("/**".into());
        }
        self.allow_no_tests = true;
    }
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    repos: RepoGlobs,
    transitions: Option<GlobSet>,
    images: Option<GlobSet>,
    commands: Option<GlobSet>,
    allow_unmerged_source: bool,
    namespaces: Vec<String>,
    service_accounts: Vec<String>,
    allow_no_tests: bool,
    permissive: bool,
}

impl Policy {
    /// Compiles the allowlists.
    pub fn new(cfg: &PolicyConfig) -> Result<Policy, PolicyError> {
        Ok(Policy {
            repos: RepoGlobs::new(&cfg.repos).map_err(|reason| PolicyError::BadGlob {
                list: "repos",
                reason,
            })?,
            transitions: globs("transitions", &cfg.transitions)?,
            images: globs("images", &cfg.images)?,
            commands: globs("commands", &cfg.commands)?,
            allow_unmerged_source: cfg.allow_unmerged_source,
            namespaces: cfg.test_namespaces.clone(),
            service_accounts: cfg.test_service_accounts.clone(),
            allow_no_tests: cfg.allow_no_tests,
            permissive: cfg.permissive,
        })
    }

    /// True in permissive mode: any Sensor may push anywhere the credentials reach.
    pub fn is_permissive(&self) -> bool {
        self.permissive
    }

    /// The repository globs (the server's own credentials go to these repos only).
    pub fn repos(&self) -> &RepoGlobs {
        &self.repos
    }

    /// Refuses a plan outside the allowlists; a command's program is resolved to its
    /// canonical path, which is what is matched and what the runner starts.
    pub fn admit(&self, mut plan: Plan, scopes: &CredentialScopes) -> Result<Plan, PolicyError> {
        let repo_ok = self.repos.is_match(&plan.repo)
            || scopes.covers(&plan.repo)
            || (self.permissive && self.repos.is_empty());
        if !repo_ok {
            return denied(format!(
                "repository {} (neither policy.repos nor a credential scope names it)",
                plan.repo
            ));
        }
        if plan.credentials_secret.is_some() && !scopes.may_send_to(&plan.repo) {
            return denied(format!(
                "credentialsSecret for {}: credentials never go over plain http:// unless a \
                 credential scope (or git.allowInsecureHttp) allows it",
                plan.repo
            ));
        }
        if plan.allow_unmerged_source && !self.allow_unmerged_source {
            return denied(
                "allowUnmergedSource (a source commit off the branch); the operator can allow \
                 it with policy.allowUnmergedSource"
                    .into(),
            );
        }
        let transition = format!("{}->{}", plan.source, plan.target);
        if let Some(set) = &self.transitions
            && !set.is_match(&transition)
        {
            return denied(format!("transition {transition} (policy.transitions)"));
        }
        match &mut plan.test {
            TestPlan::Job(job) => {
                self.listed(&self.images, &job.image, "test image", "policy.images")?;
                if let Some(ns) = &job.namespace
                    && !self.names(&self.namespaces, ns)
                {
                    return denied(format!("test namespace {ns} (policy.testNamespaces)"));
                }
                if let Some(sa) = &job.service_account
                    && !self.names(&self.service_accounts, sa)
                {
                    return denied(format!(
                        "test service account {sa} (policy.testServiceAccounts)"
                    ));
                }
            }
            TestPlan::Command(cmd) => {
                if let Some(dir) = cmd.workdir.as_ref().filter(|d| !d.is_dir()) {
                    return Err(PolicyError::NoWorkdir(dir.display().to_string()));
                }
                // `program()` joins a relative path to `testWorkdir`; a bare name is on PATH.
                match canonical_program(&cmd.program()) {
                    Some(path) => {
                        let canonical = path.display().to_string();
                        let what = if canonical == cmd.argv[0] {
                            "test command".to_string()
                        } else {
                            format!("test command {} resolved to", cmd.argv[0])
                        };
                        self.listed(&self.commands, &canonical, &what, "policy.commands")?;
                        cmd.resolved = Some(path);
                    }
                    // Permissive and unlisted: the runner reports a missing program itself.
                    None if self.permissive && self.commands.is_none() => {}
                    None => {
                        return denied(format!(
                            "test command {} (not an executable file on PATH)",
                            cmd.argv[0]
                        ));
                    }
                }
            }
            TestPlan::None if !(self.allow_no_tests || self.permissive) => {
                return denied("test: none (policy.allowNoTests is off)".into());
            }
            TestPlan::Http(_) | TestPlan::None => {}
        }
        Ok(plan)
    }

    fn listed(
        &self,
        set: &Option<GlobSet>,
        value: &str,
        what: &str,
        key: &str,
    ) -> Result<(), PolicyError> {
        match set {
            Some(set) if set.is_match(value) => Ok(()),
            None if self.permissive => Ok(()),
            Some(_) => denied(format!("{what} {value} ({key})")),
            None => denied(format!("{what} {value} ({key} lists none)")),
        }
    }

    fn names(&self, list: &[String], value: &str) -> bool {
        list.iter().any(|v| v == value) || (self.permissive && list.is_empty())
    }
}

fn denied<T>(what: String) -> Result<T, PolicyError> {
    Err(PolicyError::Denied { what })
}

fn globs(list: &'static str, patterns: &[String]) -> Result<Option<GlobSet>, PolicyError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        set.add(strict_glob(p).map_err(|reason| PolicyError::BadGlob { list, reason })?);
    }
    set.build().map(Some).map_err(|e| PolicyError::BadGlob {
        list,
        reason: e.to_string(),
    })
}

/// The canonical path of `program`: looked up on the server's `PATH` when it has no `/`, then
/// with every symlink, `.` and `..` resolved; `None` unless it is an executable file.
fn canonical_program(program: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if program.components().count() > 1 {
        Some(program.to_path_buf())
    } else if program.as_os_str().is_empty() {
        None
    } else {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(program))
            .find(|p| executable(p))
    }?;
    std::fs::canonicalize(found).ok().filter(|p| executable(p))
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
