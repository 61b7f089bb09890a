//! The policy over how a run tests: an operator's test profile is trusted for everything but
//! its targets; a spec's inline test settings pass only where a list names each one.

use std::path::{Path, PathBuf};

use super::{Policy, PolicyError, denied};
use crate::spec::{Plan, TestPlan, check_pod_security, container_context, pod_context};

impl Policy {
    /// Admits the plan's test: a profile's as the operator wrote it (its program resolved),
    /// inline settings against the lists; then the target against the profile's or
    /// `policy.testTargets`. A command's program is resolved to its canonical path, which is
    /// what is matched and what the runner starts.
    pub(super) fn admit_test(&self, plan: &mut Plan) -> Result<(), PolicyError> {
        if plan.profile.is_some() {
            if let TestPlan::Command(cmd) = &mut plan.test {
                let program =
                    canonical_program(&cmd.program()).ok_or_else(|| PolicyError::Denied {
                        what: format!(
                            "test command {} of the test profile (not an executable file)",
                            cmd.argv[0]
                        ),
                    })?;
                cmd.resolved = Some(program);
            }
        } else {
            self.admit_inline(&mut plan.test)?;
        }
        self.check_target(plan)
    }

    /// A spec's own test settings, each within its list.
    fn admit_inline(&self, test: &mut TestPlan) -> Result<(), PolicyError> {
        match test {
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
        Ok(())
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
