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
    spec::{
        Plan, PodSecurityLevel, RepoGlobs, TargetGlobs, TestPlan, TestProfiles, check_pod_security,
        container_context, pod_context, strict_glob,
    },
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
    /// An inline test's security contexts are wider than `policy.testPodSecurity`.
    #[error("{0}")]
    PodSecurity(String),
    /// The command cannot be checked: its `testWorkdir` is missing on this server.
    #[error("testWorkdir {0:?} is not a directory on this server")]
    NoWorkdir(String),
}

impl PolicyError {
    /// The kind of this error: a missing working directory is the server's state, not a refusal.
    pub fn kind(&self) -> crate::kind::ErrorKind {
        match self {
            PolicyError::NoWorkdir(_) => crate::kind::ErrorKind::FailedPrecondition,
            PolicyError::BadGlob { .. }
            | PolicyError::Denied { .. }
            | PolicyError::PodSecurity(_) => crate::kind::ErrorKind::PermissionDenied,
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
    /// Globs of the test targets a spec's inline test may be given (`testTarget`, the event's
    /// `test_target`), matched on the target or its origin; a profile's `testTargets` replace
    /// them for its runs.
    #[arg(
        long = "policy-test-targets",
        env = "PHASEGATE_POLICY_TEST_TARGETS",
        value_parser = comma_list,
        help = "Allowed test target globs (the URL or its origin)"
    )]
    pub test_targets: List,
    /// Names (globs) of the environment variables a spec's inline `testEnv` may set; the
    /// variables that run code are refused whatever this lists.
    #[arg(
        long = "policy-test-env",
        env = "PHASEGATE_POLICY_TEST_ENV",
        value_parser = comma_list,
        help = "Environment variable names an inline testEnv may set"
    )]
    pub test_env: List,
    /// Globs of the command a spec's inline Job may give its container (`testCommand`'s first
    /// word); without one the image's entrypoint runs.
    #[arg(
        long = "policy-job-commands",
        env = "PHASEGATE_POLICY_JOB_COMMANDS",
        value_parser = comma_list,
        help = "Allowed test Job command globs (the first word of testCommand)"
    )]
    pub job_commands: List,
    /// Globs of the directories an inline command test may start in (`testWorkdir`).
    #[arg(
        long = "policy-test-workdirs",
        env = "PHASEGATE_POLICY_TEST_WORKDIRS",
        value_parser = comma_list,
        help = "Allowed testWorkdir globs"
    )]
    pub test_workdirs: List,
    /// The widest Pod Security level an inline test Job's security contexts may reach.
    #[arg(
        long = "policy-test-pod-security",
        env = "PHASEGATE_POLICY_TEST_POD_SECURITY",
        value_enum,
        default_value_t,
        help = "Widest Pod Security level of an inline test Job (restricted or baseline)"
    )]
    pub test_pod_security: PodSecurityLevel,
    /// Allow `rollback: true` (promote an older version on purpose, the new baseline).
    #[arg(
        long = "policy-allow-rollback",
        env = "PHASEGATE_POLICY_ALLOW_ROLLBACK",
        value_parser = clap::builder::FalseyValueParser::new(),
        help = "Allow rollback: true"
    )]
    pub allow_rollback: bool,
    /// Allow a transition that skips phases of the spec's `phases` (`dev->prod` over `test`).
    #[arg(
        long = "policy-allow-phase-skips",
        env = "PHASEGATE_POLICY_ALLOW_PHASE_SKIPS",
        value_parser = clap::builder::FalseyValueParser::new(),
        help = "Allow transitions that skip phases of the spec's `phases`"
    )]
    pub allow_phase_skips: bool,
    /// Which values files and keys of which repositories a spec may name (file only); empty:
    /// any of an allowed repository.
    #[arg(skip)]
    pub files: Vec<FileRule>,
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

/// A `policy.files` rule: the values files (globs of the paths read and written, the
/// `{phase}` filled in) and keys (globs; none: any) a spec may name in these repositories.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileRule {
    /// Repository URL globs, as in `policy.repos`.
    pub repos: Vec<String>,
    /// Globs of the values files' paths (`apps/*/overlays/*/values-*.yaml`).
    pub paths: Vec<String>,
    /// Globs of the keys (`image.version`); empty: any key.
    #[serde(default)]
    pub keys: Vec<String>,
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
    /// credentials), its command, test target and working directory, `--test none` and
    /// `--rollback`. Lists that are configured still apply.
    pub fn trust_command_line(&mut self, repo: &str) {
        if self.repos.is_empty() {
            self.repos.push(globset::escape(repo));
        }
        if self.commands.is_empty() {
            self.commands.push("/**".into());
        }
        if self.test_targets.is_empty() {
            self.test_targets.push("**".into());
        }
        if self.test_workdirs.is_empty() {
            self.test_workdirs.push("/**".into());
        }
        self.allow_no_tests = true;
        self.allow_rollback = true;
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
    test_targets: Option<TargetGlobs>,
    test_env: Option<GlobSet>,
    job_commands: Option<GlobSet>,
    test_workdirs: Option<GlobSet>,
    allow_rollback: bool,
    allow_phase_skips: bool,
    test_pod_security: PodSecurityLevel,
    files: Vec<Files>,
    profiles: TestProfiles,
}

/// A compiled [`FileRule`].
#[derive(Debug, Clone)]
struct Files {
    repos: RepoGlobs,
    paths: GlobSet,
    keys: Option<GlobSet>,
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
            test_targets: TargetGlobs::new(&cfg.test_targets).map_err(|reason| {
                PolicyError::BadGlob {
                    list: "testTargets",
                    reason,
                }
            })?,
            test_env: globs("testEnv", &cfg.test_env)?,
            job_commands: globs("jobCommands", &cfg.job_commands)?,
            test_workdirs: globs("testWorkdirs", &cfg.test_workdirs)?,
            allow_rollback: cfg.allow_rollback,
            allow_phase_skips: cfg.allow_phase_skips,
            test_pod_security: cfg.test_pod_security,
            files: cfg
                .files
                .iter()
                .map(|rule| {
                    Ok(Files {
                        repos: RepoGlobs::new(&rule.repos).map_err(|reason| {
                            PolicyError::BadGlob {
                                list: "files.repos",
                                reason,
                            }
                        })?,
                        paths: globs("files.paths", &rule.paths)?.ok_or(PolicyError::BadGlob {
                            list: "files.paths",
                            reason: "is empty: list the values files".into(),
                        })?,
                        keys: globs("files.keys", &rule.keys)?,
                    })
                })
                .collect::<Result<_, PolicyError>>()?,
            profiles: TestProfiles::default(),
        })
    }

    /// The policy with the operator's test profiles (`testProfiles`).
    pub fn with_profiles(mut self, profiles: TestProfiles) -> Policy {
        self.profiles = profiles;
        self
    }

    /// The operator's test profiles.
    pub fn profiles(&self) -> &TestProfiles {
        &self.profiles
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
        if plan.rollback && !(self.allow_rollback || self.permissive) {
            return denied("rollback: true (policy.allowRollback is off)".into());
        }
        let transition = format!("{}->{}", plan.source, plan.target);
        if let Some(set) = &self.transitions
            && !set.is_match(&transition)
        {
            return denied(format!("transition {transition} (policy.transitions)"));
        }
        self.check_skips(&plan)?;
        self.check_files(&plan)?;
        if plan.profile.is_some() {
            self.check_target(&plan)?;
            // The operator's own test: only where its command is.
            if let TestPlan::Command(cmd) = &mut plan.test {
                cmd.resolved =
                    Some(
                        canonical_program(&cmd.program()).ok_or_else(|| PolicyError::Denied {
                            what: format!(
                                "test command {} of the test profile (not an executable file)",
                                cmd.argv[0]
                            ),
                        })?,
                    );
            }
            return Ok(plan);
        }
        match &mut plan.test {
            TestPlan::Job(job) => {
                if let Some(program) = job.command.first() {
                    self.listed(
                        &self.job_commands,
                        program,
                        "test Job command",
                        "policy.jobCommands",
                    )?;
                }
                self.check_env(job.env.keys())?;
                let pod = pod_context(job.pod_security_context.as_ref());
                let container = container_context(job.security_context.as_ref());
                check_pod_security(self.test_pod_security, &pod, &container)
                    .map_err(PolicyError::PodSecurity)?;
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
                self.check_env(cmd.env.keys())?;
                if let Some(dir) = &cmd.workdir {
                    let dir = dir.display().to_string();
                    self.listed(
                        &self.test_workdirs,
                        &dir,
                        "testWorkdir",
                        "policy.testWorkdirs",
                    )?;
                }
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
        self.check_target(&plan)?;
        Ok(plan)
    }

    /// With the spec's `phases`, a transition that skips some needs `policy.allowPhaseSkips`.
    fn check_skips(&self, plan: &Plan) -> Result<(), PolicyError> {
        let at = |p| plan.phases.iter().position(|x| x == p);
        if let (Some(from), Some(to)) = (at(&plan.source), at(&plan.target))
            && to > from + 1
            && !(self.allow_phase_skips || self.permissive)
        {
            let skipped: Vec<_> = plan.phases[from + 1..to]
                .iter()
                .map(|p| p.as_str())
                .collect();
            return denied(format!(
                "transition {}->{} over {} (policy.allowPhaseSkips is off)",
                plan.source,
                plan.target,
                skipped.join(", ")
            ));
        }
        Ok(())
    }

    /// With `policy.files`, the files read and written and the keys must be one rule's of
    /// the repository: a spec cannot read (and a dry run echo) what the operator did not list.
    fn check_files(&self, plan: &Plan) -> Result<(), PolicyError> {
        if self.files.is_empty() {
            return Ok(());
        }
        let paths = [
            plan.path.for_phase(&plan.source),
            plan.path.for_phase(&plan.target),
        ];
        let allowed = self
            .files
            .iter()
            .filter(|f| f.repos.is_match(&plan.repo))
            .any(|f| {
                paths.iter().all(|p| f.paths.is_match(p))
                    && plan
                        .keys
                        .iter()
                        .all(|k| f.keys.as_ref().is_none_or(|keys| keys.is_match(k)))
            });
        if allowed {
            return Ok(());
        }
        denied(format!(
            "values files {} and {} with keys {} of {} (no policy.files rule lists them)",
            paths[0],
            paths[1],
            plan.keys.join(","),
            plan.repo
        ))
    }

    /// The test target must be one the operator lists: the profile's `testTargets`, else
    /// `policy.testTargets`.
    fn check_target(&self, plan: &Plan) -> Result<(), PolicyError> {
        let Some(target) = plan.test.target() else {
            return Ok(());
        };
        let profile = plan.profile.as_deref().and_then(|name| {
            self.profiles
                .get(name)
                .and_then(|p| p.targets.as_ref())
                .map(|globs| (globs, format!("testTargets of the test profile {name}")))
        });
        let (globs, key) = match profile {
            Some((globs, key)) => (Some(globs), key),
            None => (self.test_targets.as_ref(), "policy.testTargets".to_string()),
        };
        match globs {
            Some(globs) if globs.is_match(target) => Ok(()),
            None if self.permissive => Ok(()),
            Some(_) => denied(format!("test target {target} ({key})")),
            None => denied(format!("test target {target} ({key} lists none)")),
        }
    }

    /// An inline `testEnv` sets only the names `policy.testEnv` lists.
    fn check_env<'a>(
        &self,
        mut names: impl Iterator<Item = &'a String>,
    ) -> Result<(), PolicyError> {
        names.try_for_each(|name| {
            self.listed(
                &self.test_env,
                name,
                "test environment variable",
                "policy.testEnv",
            )
        })
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
