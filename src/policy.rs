//! The server policy: which repositories, phase transitions, test images and local commands a
//! Sensor may ask for. An empty list allows everything (the server warns at startup).

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::spec::{Plan, TestPlan};

/// Why the policy refused a run.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A glob in the configuration does not parse.
    #[error("policy {list} has an invalid glob {glob:?}: {reason}")]
    BadGlob {
        list: &'static str,
        glob: String,
        reason: String,
    },
    /// The request is outside the allowlists.
    #[error("server policy does not allow {what}")]
    Denied { what: String },
}

/// Allowlists as written in the server configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyConfig {
    /// Globs of repository URLs (`https://github.com/my-org/*`).
    pub repos: Vec<String>,
    /// Allowed transitions, `source->target` (`test->prod`); `*` matches any phase.
    pub transitions: Vec<String>,
    /// Globs of test images (`registry.example.com/tests/*`).
    pub images: Vec<String>,
    /// Globs of programs the command runner may start.
    pub commands: Vec<String>,
    /// Whether a spec may set `allowUnmergedSource` (promote a commit that is not on its
    /// branch). Off by default: only merged versions are promoted.
    pub allow_unmerged_source: bool,
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    repos: Option<GlobSet>,
    transitions: Option<GlobSet>,
    images: Option<GlobSet>,
    commands: Option<GlobSet>,
    allow_unmerged_source: bool,
}

impl Policy {
    /// Compiles the allowlists.
    pub fn new(cfg: &PolicyConfig) -> Result<Policy, PolicyError> {
        Ok(Policy {
            repos: globs("repos", &cfg.repos)?,
            transitions: globs("transitions", &cfg.transitions)?,
            images: globs("images", &cfg.images)?,
            commands: globs("commands", &cfg.commands)?,
            allow_unmerged_source: cfg.allow_unmerged_source,
        })
    }

    /// True when no allowlist is set: any Sensor may push anywhere the credentials reach.
    pub fn is_open(&self) -> bool {
        self.repos.is_none() && self.transitions.is_none() && self.images.is_none()
    }

    /// Refuses a plan outside the allowlists.
    pub fn check(&self, plan: &Plan) -> Result<(), PolicyError> {
        allow(&self.repos, plan.repo.as_str(), || {
            format!("repository {}", plan.repo)
        })?;
        if plan.allow_unmerged_source && !self.allow_unmerged_source {
            return Err(PolicyError::Denied {
                what: "allowUnmergedSource (a source commit off the branch); the operator can \
                       allow it with policy.allowUnmergedSource"
                    .into(),
            });
        }
        let transition = format!("{}->{}", plan.source, plan.target);
        allow(&self.transitions, &transition, || {
            format!("transition {transition}")
        })?;
        match &plan.test {
            TestPlan::Job(job) => allow(&self.images, &job.image, || {
                format!("test image {}", job.image)
            }),
            TestPlan::Command(cmd) => {
                let program = cmd.program().display().to_string();
                allow(&self.commands, &program, || {
                    format!("test command {program}")
                })
            }
            TestPlan::Http(_) | TestPlan::None => Ok(()),
        }
    }
}

fn globs(list: &'static str, patterns: &[String]) -> Result<Option<GlobSet>, PolicyError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        // globset's `*` also matches `/`, so `https://github.com/org/*` matches any repo of org.
        let glob = Glob::new(p).map_err(|e| PolicyError::BadGlob {
            list,
            glob: p.clone(),
            reason: e.to_string(),
        })?;
        set.add(glob);
    }
    set.build().map(Some).map_err(|e| PolicyError::BadGlob {
        list,
        glob: patterns.join(","),
        reason: e.to_string(),
    })
}

fn allow(
    set: &Option<GlobSet>,
    value: &str,
    what: impl FnOnce() -> String,
) -> Result<(), PolicyError> {
    match set {
        Some(set) if !set.is_match(value) => Err(PolicyError::Denied { what: what() }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Resource, RunnerKind, SourceRef, TestSpec};

    fn plan(repo: &str, source: &str, target: &str) -> Plan {
        let r = Resource {
            repo: repo.into(),
            path: "a/{phase}.yaml".into(),
            source: SourceRef {
                phase: source.into(),
                commit: "abcdef1".into(),
            },
            target: crate::spec::TargetRef {
                phase: target.into(),
            },
            test: TestSpec {
                runner: Some(RunnerKind::Job),
                image: Some("evil.io/miner:1".into()),
                target: "http://app.test".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        Plan::from_resource(&r).expect("valid plan")
    }

    #[test]
    fn allows_everything_without_lists() {
        let p = Policy::new(&PolicyConfig::default()).expect("compiles");
        assert!(p.is_open());
        p.check(&plan("https://x/y.git", "test", "prod"))
            .expect("open");
    }

    #[test]
    fn refuses_repos_transitions_and_images_outside_the_lists() {
        let p = Policy::new(&PolicyConfig {
            repos: vec!["https://git.example.com/org/*".into()],
            transitions: vec!["dev->test".into(), "test->prod".into()],
            images: vec!["registry.example.com/*".into()],
            commands: vec![],
            allow_unmerged_source: false,
        })
        .expect("compiles");
        let err = p
            .check(&plan("https://other.com/x.git", "test", "prod"))
            .expect_err("repo");
        assert!(err.to_string().contains("repository"), "{err}");
        let err = p
            .check(&plan("https://git.example.com/org/a.git", "dev", "prod"))
            .expect_err("transition");
        assert!(err.to_string().contains("dev->prod"), "{err}");
        let err = p
            .check(&plan("https://git.example.com/org/a.git", "test", "prod"))
            .expect_err("image");
        assert!(err.to_string().contains("evil.io"), "{err}");
    }

    #[test]
    fn refuses_an_unmerged_source_unless_the_operator_allows_it() {
        let mut plan = plan("https://x/y.git", "test", "prod");
        plan.allow_unmerged_source = true;
        let closed = Policy::new(&PolicyConfig::default()).expect("compiles");
        let err = closed.check(&plan).expect_err("not allowed");
        assert!(err.to_string().contains("allowUnmergedSource"), "{err}");
        let open = Policy::new(&PolicyConfig {
            allow_unmerged_source: true,
            ..Default::default()
        })
        .expect("compiles");
        open.check(&plan).expect("allowed by the operator");
    }
}
