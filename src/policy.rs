//! The server policy: which repositories, phase transitions, test images, local commands, Job
//! namespaces and service accounts a Sensor may ask for.
//!
//! Closed by default: with no configuration, `serve` refuses every repository that neither
//! `policy.repos` nor a credential scope names, the command runner (no `policy.commands`), the
//! Job runner (no `policy.images`), `test: none` (no `policy.allowNoTests`), and any
//! `testNamespace` or `testServiceAccount` not listed. Transitions are free unless listed (the
//! spec's `phases` chain them). `policy.permissive: true` brings back the old behaviour (an
//! empty list allows everything), loudly. Globs' `*` never crosses `/` (`**` does).

use globset::GlobSet;

use crate::{
    credentials::CredentialScopes,
    spec::{Plan, PodSecurityLevel, RepoGlobs, TargetGlobs, TestProfiles, glob_set},
};

mod config;
mod testing;

pub use config::{FileRule, PolicyConfig, SecretBinding};
pub(crate) use config::{List, comma_list};

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
    allow_file_repos: bool,
    /// `policy.credentialsSecrets`: each Secret's name and the repositories it serves.
    secrets: Vec<(String, RepoGlobs)>,
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
            allow_file_repos: cfg.allow_file_repos,
            secrets: cfg
                .credentials_secrets
                .iter()
                .map(|b| {
                    let globs =
                        RepoGlobs::new(&b.repos).map_err(|reason| PolicyError::BadGlob {
                            list: "credentialsSecrets.repos",
                            reason,
                        })?;
                    Ok((b.name.clone(), globs))
                })
                .collect::<Result<_, PolicyError>>()?,
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
        if plan.repo.local_path().is_some() && !(self.allow_file_repos || self.permissive) {
            return denied(format!(
                "repository {}: a push to a file:// repository skips its hooks \
                 (policy.allowFileRepos is off)",
                plan.repo
            ));
        }
        if let Some(name) = &plan.credentials_secret {
            let bound = self
                .secrets
                .iter()
                .any(|(secret, repos)| secret == name && repos.is_match(&plan.repo));
            if !(bound || (self.permissive && self.secrets.is_empty())) {
                return denied(format!(
                    "credentialsSecret {name} for {} (policy.credentialsSecrets does not bind \
                     it to this repository)",
                    plan.repo
                ));
            }
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
        self.admit_test(&mut plan)?;
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
            plan.source_path
                .as_ref()
                .unwrap_or(&plan.path)
                .for_phase(&plan.source),
            plan.path.for_phase(&plan.target),
        ];
        let allowed = self
            .files
            .iter()
            .filter(|f| f.repos.is_match(&plan.repo))
            .any(|f| {
                paths.iter().all(|p| f.paths.is_match(p))
                    && plan.keys.iter().all(|k| {
                        // Both the key read and the key written must be listed.
                        let (source, target) = crate::values::split_key(k);
                        f.keys
                            .as_ref()
                            .is_none_or(|keys| keys.is_match(source) && keys.is_match(target))
                    })
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
    glob_set(patterns).map_err(|reason| PolicyError::BadGlob { list, reason })
}

#[cfg(test)]
mod tests;
