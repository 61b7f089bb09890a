//! How a promotion reaches the target branch (`promoteVia`), and which forge hosts the
//! repository (`forge`, `forgeApiUrl`): the resource fields and their validated plan types.

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};

use super::{Located, RepoUrl, Resource, SpecError, bounds, locate, plan::duration};

/// The forge keys as the resource carries them (`forge`, `forgeApiUrl`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ForgeSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// The pull-request keys as the resource carries them (`prLabels`, `prDraft`, `mergeMethod`,
/// `autoMerge`, `waitForMerge`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PullRequestSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    pub draft: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge_method: Option<String>,
    pub auto_merge: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for_merge: Option<String>,
}

/// The forges phasegate speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    /// github.com and GitHub Enterprise Server.
    GitHub,
    /// gitlab.com and self-managed GitLab (API v4).
    GitLab,
    /// Bitbucket Data Center (and Server), REST API 1.0: always self-hosted, so never inferred.
    BitbucketDataCenter,
    /// Gitea (gitea.com and self-hosted), API v1.
    Gitea,
    /// Forgejo (codeberg.org and self-hosted): Gitea's API v1, spoken by the same client.
    Forgejo,
}

impl ForgeKind {
    /// Parses the `forge` key.
    pub fn parse(s: &str) -> Result<ForgeKind, SpecError> {
        match s {
            "github" => Ok(ForgeKind::GitHub),
            "gitlab" => Ok(ForgeKind::GitLab),
            "bitbucket-datacenter" => Ok(ForgeKind::BitbucketDataCenter),
            "gitea" => Ok(ForgeKind::Gitea),
            "forgejo" => Ok(ForgeKind::Forgejo),
            other => Err(SpecError::invalid(
                "forge",
                format!(
                    "{other:?} is not a forge (github, gitlab, bitbucket-datacenter, gitea, forgejo)"
                ),
            )),
        }
    }
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForgeKind::GitHub => "github",
            ForgeKind::GitLab => "gitlab",
            ForgeKind::BitbucketDataCenter => "bitbucket-datacenter",
            ForgeKind::Gitea => "gitea",
            ForgeKind::Forgejo => "forgejo",
        })
    }
}

/// The forge the spec names (both optional: inferred from the repository's host otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForgeChoice {
    pub kind: Option<ForgeKind>,
    /// An http(s) URL, checked against the repository's host when the forge is located.
    pub api_url: Option<url::Url>,
}

/// How a pull request is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeMethod {
    #[default]
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    /// The method's name, as forges spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// What a pull-request promotion asks of the forge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullRequestPlan {
    pub labels: Vec<String>,
    pub draft: bool,
    pub merge_method: MergeMethod,
    /// Merge as soon as the forge allows it.
    pub auto_merge: bool,
    /// Sync mode: answer only once the pull request is merged or closed, or this passed.
    pub wait_for_merge: Option<Duration>,
}

/// `promoteVia`: a push to the branch, or a pull request against it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PromoteVia {
    #[default]
    Push,
    PullRequest(PullRequestPlan),
}

/// Validates the forge keys of a resource.
pub(super) fn forge_choice(r: &Resource) -> Result<ForgeChoice, SpecError> {
    let Some(spec) = &r.forge else {
        return Ok(ForgeChoice::default());
    };
    let kind = spec.kind.as_deref().map(ForgeKind::parse).transpose()?;
    let api_url = match spec.api_url.as_deref() {
        None => None,
        Some(s) => {
            let url = url::Url::parse(s)
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http") && u.has_host())
                .ok_or_else(|| SpecError::invalid("forgeApiUrl", "must be an http(s) URL"))?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(SpecError::invalid(
                    "forgeApiUrl",
                    "must not carry credentials",
                ));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(SpecError::invalid(
                    "forgeApiUrl",
                    "must not have a query or fragment: it is the API's root",
                ));
            }
            Some(url)
        }
    };
    Ok(ForgeChoice { kind, api_url })
}

/// Validates `promoteVia` and the pull-request keys of a resource.
pub(super) fn promote_via(r: &Resource) -> Result<PromoteVia, SpecError> {
    let pr = r.pull_request.clone().unwrap_or_default();
    match r.promote_via.as_str() {
        "push" => {
            if pr != PullRequestSpec::default() {
                return Err(SpecError::invalid(
                    "promoteVia",
                    "is `push`, but pull-request keys (prLabels, prDraft, mergeMethod, \
                     autoMerge, waitForMerge) are set: set promoteVia: pull-request",
                ));
            }
            Ok(PromoteVia::Push)
        }
        "pull-request" => {
            let merge_method = match pr.merge_method.as_deref() {
                None | Some("merge") => MergeMethod::Merge,
                Some("squash") => MergeMethod::Squash,
                Some("rebase") => MergeMethod::Rebase,
                Some(other) => {
                    return Err(SpecError::invalid(
                        "pullRequest.mergeMethod",
                        format!("{other:?} is not merge, squash or rebase"),
                    ));
                }
            };
            bounds::count(
                "pullRequest.labels",
                "labels",
                pr.labels.len(),
                bounds::MAX_LABELS,
            )?;
            for label in &pr.labels {
                if label.trim().is_empty() || label.len() > 50 {
                    return Err(SpecError::invalid(
                        "pullRequest.labels",
                        "labels must be 1 to 50 characters",
                    ));
                }
                // GitLab takes labels as one comma-separated string: a comma would split one
                // label into several (past the count bound); control characters are no name.
                if label.chars().any(|c| c == ',' || c.is_control()) {
                    return Err(SpecError::invalid(
                        "pullRequest.labels",
                        "a label must not contain a comma or a control character",
                    ));
                }
            }
            let wait_for_merge = match pr.wait_for_merge.as_deref() {
                None => None,
                Some(s) => {
                    // `duration` caps it at a day: a run holds its Sensor call while it waits.
                    let d = duration("pullRequest.waitForMerge", s)?;
                    if d.is_zero() {
                        return Err(SpecError::invalid(
                            "pullRequest.waitForMerge",
                            "must be between 1s and 24h",
                        ));
                    }
                    Some(d)
                }
            };
            Ok(PromoteVia::PullRequest(PullRequestPlan {
                labels: pr.labels,
                draft: pr.draft,
                merge_method,
                auto_merge: pr.auto_merge,
                wait_for_merge,
            }))
        }
        other => Err(SpecError::invalid(
            "promoteVia",
            format!("{other:?} is not push or pull-request"),
        )),
    }
}

/// Rebase is not a merge request's merge method on GitLab but the project's.
pub const NO_REBASE_ON_GITLAB: &str = "mergeMethod: rebase is not available on GitLab, where \
     rebasing is the project's merge method setting (fast-forward or semi-linear): use merge or \
     squash, and set the project's merge method in GitLab";

const NO_LABELS_ON_BITBUCKET: &str = "prLabels: Bitbucket Data Center pull requests have no \
     labels: remove prLabels (the title and description say what the pull request promotes)";

/// The forge a run speaks to, located once from the spec: `None` when there is none (a
/// repository on no well-known host, in push mode without `forge`). Pull-request mode needs
/// one; a forge the spec names must be locatable; otherwise commit statuses are simply not
/// set. Refuses what the forge cannot do for a pull-request plan, before anything is pushed.
pub(super) fn located(
    repo: &RepoUrl,
    choice: &ForgeChoice,
    via: &PromoteVia,
) -> Result<Option<Located>, SpecError> {
    let pull_request = matches!(via, PromoteVia::PullRequest(_));
    let explicit = pull_request || *choice != ForgeChoice::default();
    let located = match locate(repo, choice) {
        Ok(Some(located)) => located,
        Ok(None) if pull_request => {
            return Err(SpecError::Forge(
                "promoteVia: pull-request needs a forge: the repository's host is not a \
                 well-known one, set `forge` (and `forgeApiUrl` if the API is elsewhere on that \
                 host)"
                    .into(),
            ));
        }
        Err(e) if explicit => return Err(e),
        // No forge named, none to be had: no commit statuses.
        Ok(None) | Err(_) => return Ok(None),
    };
    if let PromoteVia::PullRequest(pr) = via {
        check_plan(located.kind, pr)?;
    }
    Ok(Some(located))
}

/// Refuses what the forge `kind` cannot do for a pull-request plan.
fn check_plan(kind: ForgeKind, plan: &PullRequestPlan) -> Result<(), SpecError> {
    let why = match kind {
        ForgeKind::GitLab if plan.merge_method == MergeMethod::Rebase => NO_REBASE_ON_GITLAB,
        ForgeKind::BitbucketDataCenter if !plan.labels.is_empty() => NO_LABELS_ON_BITBUCKET,
        _ => return Ok(()),
    };
    Err(SpecError::Forge(why.into()))
}

#[cfg(test)]
#[path = "forge_tests.rs"]
mod tests;
