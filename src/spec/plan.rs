//! [`Plan`]: a run's request in types that are valid by construction. Later code never re-checks.

use std::{fmt, sync::LazyLock, time::Duration};

use regex::Regex;

pub use super::testing::{CommandTest, HttpTest, JobTest, TestPlan};
use super::{
    Located, MessageTemplate, Mode, PathTemplate, RepoUrl, Resource, SpecError, TestProfiles,
    bounds,
    forge::{PromoteVia, forge_choice, located, promote_via},
    profile::only_target,
    testing::test_plan,
};

static PHASE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("valid regex"));
static COMMIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9a-fA-F]{7,64}$").expect("valid regex"));
static DNS_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$").expect("valid regex"));

/// A phase name: a DNS label, so it is safe in paths, labels and Job names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phase(String);

impl Phase {
    /// Parses a phase name, naming `field` on error.
    pub fn parse(field: &str, s: &str) -> Result<Phase, SpecError> {
        if s.len() <= 63 && PHASE.is_match(s) {
            Ok(Phase(s.to_string()))
        } else if s.is_empty() {
            Err(SpecError::invalid(field, "is required"))
        } else {
            Err(SpecError::invalid(
                field,
                format!("{s:?} is not a phase name (lowercase letters, digits and '-')"),
            ))
        }
    }

    /// The phase name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A (possibly abbreviated) git commit id, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitId(String);

impl CommitId {
    /// Parses 7–64 hex digits, naming `field` on error.
    pub fn parse(field: &str, s: &str) -> Result<CommitId, SpecError> {
        if COMMIT.is_match(s) {
            Ok(CommitId(s.to_ascii_lowercase()))
        } else if s.is_empty() {
            Err(SpecError::invalid(field, "is required"))
        } else {
            Err(SpecError::invalid(
                field,
                format!("{s:?} is not a commit id (7 to 64 hex digits)"),
            ))
        }
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Argo CD gate: wait until this Application runs the source commit and is Healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgoGate {
    pub namespace: String,
    pub name: String,
    pub timeout: Duration,
}

/// One promotion request, fully validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub repo: RepoUrl,
    pub branch: String,
    /// Values file path template with `{phase}`; safe by construction.
    pub path: PathTemplate,
    /// The source phase's values file when it is not `path`'s (the spec's `sourcePath`).
    pub source_path: Option<PathTemplate>,
    pub keys: Vec<String>,
    pub credentials_secret: Option<String>,
    /// The spec's `phases` (empty: none given).
    pub phases: Vec<Phase>,
    pub source: Phase,
    pub target: Phase,
    pub commit: CommitId,
    pub test: TestPlan,
    /// The operator's test profile `test` comes from; `None`: the spec's inline settings.
    pub profile: Option<String>,
    pub argocd: Option<ArgoGate>,
    pub commit_message: MessageTemplate,
    pub dry_run: bool,
    /// Promote an older version on purpose: never `superseded`, and the new baseline.
    pub rollback: bool,
    /// The source commit need not be on `branch` (else it must be the head or an ancestor).
    pub allow_unmerged_source: bool,
    pub mode: Mode,
    /// A push to `branch`, or a pull request against it.
    pub via: PromoteVia,
    /// The forge of the repository, located once: `None` when there is none to speak to
    /// (always `Some` in pull-request mode).
    pub located: Option<Located>,
}

/// What FetchResource and Execute both parse: every field but the event's and the tests'.
struct Static {
    repo: RepoUrl,
    branch: String,
    path: PathTemplate,
    source_path: Option<PathTemplate>,
    keys: Vec<String>,
    phases: Vec<Phase>,
    commit_message: MessageTemplate,
    via: PromoteVia,
    located: Option<Located>,
    argocd: Option<ArgoGate>,
}

/// Parses the static part of a resource, in the order its errors are reported. The per-event
/// fields are checked when set (a Sensor may fix them in the spec), but not kept: Execute
/// requires and parses them.
fn parse_static(r: &Resource) -> Result<Static, SpecError> {
    let repo = RepoUrl::parse(&r.repo)?;
    check_branch(&r.branch)?;
    let path = PathTemplate::parse(&r.path)?;
    let source_path = match r.source.path.as_str() {
        "" => None,
        p => Some(PathTemplate::parse(p).map_err(|e| match e {
            SpecError::Invalid { problem, .. } => SpecError::invalid("source.path", problem),
            other => other,
        })?),
    };
    check_keys(&r.keys)?;
    if let Some(secret) = &r.credentials_secret
        && !DNS_NAME.is_match(secret)
    {
        return Err(SpecError::invalid(
            "credentialsSecret",
            "is not a Kubernetes Secret name",
        ));
    }
    let phases = parse_phases(&r.phases)?;
    if !r.source.phase.is_empty() {
        Phase::parse("source.phase", &r.source.phase)?;
    }
    if !r.source.commit.is_empty() {
        CommitId::parse("source.commit", &r.source.commit)?;
    }
    if !r.target.phase.is_empty() {
        Phase::parse("target.phase", &r.target.phase)?;
    }
    let commit_message = MessageTemplate::parse(&r.commit_message)?;
    let via = promote_via(r)?;
    let forge = forge_choice(r)?;
    let argocd = argo_gate(r)?;
    let located = located(&repo, &forge, &via)?;
    Ok(Static {
        repo,
        branch: r.branch.clone(),
        path,
        source_path,
        keys: r.keys.clone(),
        phases,
        commit_message,
        via,
        located,
        argocd,
    })
}

impl Plan {
    /// Validates a complete resource (after parameters and payload) into a plan; a
    /// `testProfile` is looked up in `profiles` (the server's).
    pub fn from_resource(r: &Resource, profiles: &TestProfiles) -> Result<Plan, SpecError> {
        let s = parse_static(r)?;
        let source = Phase::parse("source.phase", &r.source.phase)?;
        let commit = CommitId::parse("source.commit", &r.source.commit)?;
        let target = if r.target.phase.is_empty() {
            next_phase(&s.phases, &source)?
        } else {
            Phase::parse("target.phase", &r.target.phase)?
        };
        if target == source {
            return Err(SpecError::invalid("target.phase", "equals source.phase"));
        }
        check_order(&s.phases, &source, &target)?;
        let test = match &r.test.profile {
            Some(name) => {
                only_target(&r.test)?;
                let mut test = profiles.named(name)?.test.clone();
                test.target.clone_from(&r.test.target);
                test_plan(&test)?
            }
            None => test_plan(&r.test)?,
        };
        Ok(Plan {
            repo: s.repo,
            branch: s.branch,
            path: s.path,
            source_path: s.source_path,
            keys: s.keys,
            credentials_secret: r.credentials_secret.clone(),
            phases: s.phases,
            source,
            target,
            commit,
            test: event_tested(test)?,
            profile: r.test.profile.clone(),
            argocd: s.argocd,
            commit_message: s.commit_message,
            dry_run: r.dry_run,
            rollback: r.rollback,
            allow_unmerged_source: r.allow_unmerged_source,
            mode: r.mode,
            via: s.via,
            located: s.located,
        })
    }

    /// Checks every field but the test settings, allowing the per-event ones to be empty
    /// (FetchResource): the same parse as Execute's, so a spec Execute would refuse for its
    /// static part is refused when the Sensor is created.
    pub fn check_static(r: &Resource) -> Result<(), SpecError> {
        parse_static(r).map(drop)
    }

    /// Checks the test settings of a resource whose runner is known, or that names a profile
    /// (whose existence the server checks: [`TestProfiles`]).
    pub fn check_test(r: &Resource) -> Result<(), SpecError> {
        match &r.test.profile {
            Some(_) => only_target(&r.test),
            None => test_plan(&r.test).map(drop),
        }
    }
}

/// A runner that tests a deployment needs to know where it answers: without a target it could
/// only fail, after every pointless attempt. The target may come late (from the event), so
/// only a complete request is refused.
fn event_tested(test: TestPlan) -> Result<TestPlan, SpecError> {
    if test.target().is_some_and(str::is_empty) {
        return Err(SpecError::invalid(
            "test.target",
            format!(
                "is required for the {} runner: set testTarget in the spec, or test_target \
                 (testTarget, test.target) in the event",
                test.runner()
            ),
        ));
    }
    Ok(test)
}

fn parse_phases(phases: &[String]) -> Result<Vec<Phase>, SpecError> {
    bounds::count("phases", "phases", phases.len(), bounds::MAX_PHASES)?;
    let parsed = phases
        .iter()
        .map(|p| Phase::parse("phases", p))
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.len() == 1 {
        return Err(SpecError::invalid("phases", "needs at least two phases"));
    }
    if (1..parsed.len()).any(|i| parsed[..i].contains(&parsed[i])) {
        return Err(SpecError::invalid("phases", "lists a phase twice"));
    }
    Ok(parsed)
}

/// With `phases`, an event moves a version forward along them: the source and the target are
/// both listed, the target after the source (whether it may skip phases is the policy's).
fn check_order(phases: &[Phase], source: &Phase, target: &Phase) -> Result<(), SpecError> {
    if phases.is_empty() {
        return Ok(());
    }
    let at = |phase: &Phase, field: &str| {
        phases
            .iter()
            .position(|p| p == phase)
            .ok_or_else(|| SpecError::invalid(field, format!("`{phase}` is not one of `phases`")))
    };
    if at(target, "target.phase")? < at(source, "source.phase")? {
        return Err(SpecError::invalid(
            "target.phase",
            format!("`{target}` comes before `{source}` in `phases`: versions move forward only"),
        ));
    }
    Ok(())
}

fn next_phase(phases: &[Phase], source: &Phase) -> Result<Phase, SpecError> {
    if phases.is_empty() {
        return Err(SpecError::invalid(
            "target.phase",
            "is required when `phases` is not set",
        ));
    }
    let at = phases.iter().position(|p| p == source).ok_or_else(|| {
        SpecError::invalid("source.phase", format!("{source:?} is not one of `phases`"))
    })?;
    phases.get(at + 1).cloned().ok_or_else(|| {
        SpecError::invalid(
            "source.phase",
            format!("`{source}` is the last phase: there is nothing to promote to"),
        )
    })
}

fn check_branch(b: &str) -> Result<(), SpecError> {
    let bad = b.is_empty()
        || b.starts_with(['-', '/', '.'])
        || b.ends_with(['/', '.'])
        || b.ends_with(".lock")
        || b.contains("..")
        || b.contains("//")
        || b.contains("@{")
        || b.chars().any(|c| {
            c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
        });
    if bad {
        return Err(SpecError::invalid(
            "branch",
            "is not a valid git branch name",
        ));
    }
    Ok(())
}

fn check_keys(keys: &[String]) -> Result<(), SpecError> {
    if keys.is_empty() {
        return Err(SpecError::invalid("key", "is empty"));
    }
    bounds::count("keys", "keys", keys.len(), bounds::MAX_KEYS)?;
    for (i, k) in keys.iter().enumerate() {
        bounds::length("keys", &format!("key {}", i + 1), k, bounds::MAX_KEY_LEN)?;
        crate::values::check_key(k).map_err(|problem| SpecError::invalid("key", problem))?;
    }
    Ok(())
}

fn argo_gate(r: &Resource) -> Result<Option<ArgoGate>, SpecError> {
    let Some(argo) = &r.argocd else {
        return Ok(None);
    };
    let (namespace, name) = argo.app.split_once('/').unwrap_or(("argocd", &argo.app));
    for part in [namespace, name] {
        if !DNS_NAME.is_match(part) {
            return Err(SpecError::invalid(
                "argocd.app",
                "must be `name` or `namespace/name` of an Argo CD Application",
            ));
        }
    }
    Ok(Some(ArgoGate {
        namespace: namespace.to_string(),
        name: name.to_string(),
        timeout: duration("argocd.timeout", argo.timeout.as_deref().unwrap_or("5m"))?,
    }))
}

/// The longest each duration a spec, parameter or payload may set: a run must not wait for
/// ever (`500000000000y` parses, and would hold a run and its permit in `testing` for ever, or
/// overflow a deadline). Any other duration field is bounded by [`MAX_DURATION`].
const DURATION_BOUNDS: &[(&str, Duration)] = &[
    ("test.timeout", MAX_DURATION),
    ("test.interval", Duration::from_secs(600)),
    ("argocd.timeout", MAX_DURATION),
];

/// A day: longer than any test campaign or sync, short enough that a stuck run ends.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses a duration like `10m` within its field's bounds.
pub(super) fn duration(field: &str, s: &str) -> Result<Duration, SpecError> {
    let d = humantime::parse_duration(s)
        .map_err(|e| SpecError::invalid(field, format!("{s:?} is not a duration like 10m: {e}")))?;
    let most = DURATION_BOUNDS
        .iter()
        .find(|(name, _)| *name == field)
        .map_or(MAX_DURATION, |&(_, most)| most);
    if d > most {
        return Err(SpecError::invalid(
            field,
            format!(
                "{s:?} is out of range: at most {}",
                humantime::format_duration(most)
            ),
        ));
    }
    Ok(d)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
