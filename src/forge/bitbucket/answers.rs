//! Bitbucket Data Center's JSON as phasegate reads it (pull requests, pages, conflicts, server
//! properties and settings) and its merge strategies.

use serde::{Deserialize, Deserializer, de::Error as _};

use crate::{
    forge::{PrState, PullRequest, api::Answer},
    spec::MergeMethod,
};

/// Bitbucket's merge strategy for phasegate's merge method (the strategy must be enabled in
/// the repository's merge settings).
pub(super) fn strategy(method: MergeMethod) -> &'static str {
    match method {
        MergeMethod::Merge => "no-ff",
        MergeMethod::Squash => "squash",
        // As GitHub's rebase: the commits replayed on the base, no merge commit.
        MergeMethod::Rebase => "rebase-ff-only",
    }
}

/// A 409 because the `version` sent is no longer the pull request's.
pub(super) fn out_of_date(answer: &Answer) -> bool {
    answer.problems().iter().any(|p| {
        p.exception_name
            .as_deref()
            .is_some_and(|n| n.ends_with("PullRequestOutOfDateException"))
    })
}

/// One page of a paged list (phasegate reads the first: it asks for few items).
#[derive(Debug, Deserialize)]
pub(super) struct Page<T> {
    pub values: Vec<T>,
}

/// A pull request as Bitbucket answers it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Pull {
    id: u64,
    /// Every write names it: a stale one is refused.
    pub version: u64,
    state: String,
    properties: Option<Properties>,
    links: Links,
    pub from_ref: Ref,
    pub to_ref: Ref,
    /// A write sets the reviewers it is given: phasegate hands back these.
    pub reviewers: Vec<Reviewer>,
}

/// Where a pull request stands: all a merge's answer (a pull request) is read for.
#[derive(Debug, Deserialize)]
pub(super) struct Outcome {
    state: String,
    /// Bitbucket's extra facts; the merge commit once merged.
    properties: Option<Properties>,
}

#[derive(Debug, Deserialize)]
struct Properties {
    #[serde(rename = "mergeCommit")]
    merge_commit: Option<Commit>,
}

#[derive(Debug, Deserialize)]
struct Commit {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Links {
    /// Where a reviewer opens it: the first link.
    #[serde(rename = "self", deserialize_with = "first")]
    web: Link,
}

#[derive(Debug, Deserialize)]
struct Link {
    href: String,
}

/// A pull request's source or target branch.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Ref {
    /// `refs/heads/<branch>`.
    pub id: String,
    /// The branch's head commit.
    pub latest_commit: String,
}

/// A reviewer, by user name (what a write needs to keep them).
#[derive(Debug, Deserialize)]
pub(super) struct Reviewer {
    pub user: User,
}

#[derive(Debug, Deserialize)]
pub(super) struct User {
    pub name: String,
}

/// The first item of a list that must have one.
fn first<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Vec::<T>::deserialize(d)?
        .into_iter()
        .next()
        .ok_or_else(|| D::Error::invalid_length(0, &"one item or more"))
}

impl Outcome {
    /// Its state, and the commit the target branch got once merged.
    pub(super) fn state(self) -> (PrState, Option<String>) {
        let state = match self.state.as_str() {
            "OPEN" => PrState::Open,
            "MERGED" => PrState::Merged,
            _ => PrState::ClosedUnmerged,
        };
        let merge_commit = self
            .properties
            .and_then(|p| p.merge_commit)
            .map(|c| c.id)
            .filter(|_| state == PrState::Merged);
        (state, merge_commit)
    }
}

impl From<Pull> for PullRequest {
    fn from(pr: Pull) -> PullRequest {
        let (state, merge_commit) = Outcome {
            state: pr.state,
            properties: pr.properties,
        }
        .state();
        PullRequest {
            number: pr.id,
            url: pr.links.web.href,
            state,
            merge_commit,
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use serde_json::{Value, json};

    use super::*;
    use crate::forge::{ForgeError, api::read};

    fn pull(body: Value) -> Result<Pull, ForgeError> {
        read("Bitbucket Data Center", "read the pull request", body)
    }

    fn answer(id: u64, state: &str) -> Value {
        let branch = |name: &str| json!({"id": format!("refs/heads/{name}"), "latestCommit": "c"});
        json!({
            "id": id, "version": 3, "state": state, "reviewers": [],
            "fromRef": branch("promote"), "toRef": branch("main"),
            "links": {"self": [{"href": format!("https://bb.example.com/projects/P/repos/r/pull-requests/{id}")}]},
        })
    }

    #[test]
    fn reads_pull_requests_as_bitbucket_answers_them() {
        let mut merged = answer(7, "MERGED");
        merged["properties"] = json!({"mergeCommit": {"id": "abc123", "displayId": "abc"}});
        let pr = PullRequest::from(pull(merged).expect("read"));
        assert_eq!(pr.number, 7);
        assert_eq!(pr.state, PrState::Merged);
        assert_eq!(pr.merge_commit.as_deref(), Some("abc123"));
        assert!(pr.url.ends_with("/pull-requests/7"));
        let declined = PullRequest::from(pull(answer(8, "DECLINED")).expect("read"));
        assert_eq!(declined.state, PrState::ClosedUnmerged);
        assert_eq!(declined.merge_commit, None);
    }

    #[test]
    fn maps_merge_methods_to_strategies() {
        assert_eq!(strategy(MergeMethod::Merge), "no-ff");
        assert_eq!(strategy(MergeMethod::Squash), "squash");
        assert_eq!(strategy(MergeMethod::Rebase), "rebase-ff-only");
    }

    #[test]
    fn knows_a_stale_version_from_other_conflicts() {
        let answer = |name: &str| Answer {
            status: StatusCode::CONFLICT,
            body: json!({"errors": [{"context": null, "message": "m", "exceptionName": name}]}),
        };
        assert!(out_of_date(&answer(
            "com.atlassian.bitbucket.pull.PullRequestOutOfDateException"
        )));
        assert!(!out_of_date(&answer(
            "com.atlassian.bitbucket.pull.PullRequestMergeVetoedException"
        )));
    }

    #[test]
    fn names_a_renamed_pull_request_field_instead_of_reading_a_default() {
        let mut renamed = answer(7, "OPEN");
        renamed["number"] = renamed["id"].take();
        renamed.as_object_mut().expect("object").remove("id");
        let err = pull(renamed).expect_err("renamed");
        assert!(err.to_string().contains("missing field `id`"), "{err}");
        let mut linkless = answer(7, "OPEN");
        linkless["links"]["self"] = json!([]);
        let err = pull(linkless).expect_err("no link");
        assert!(
            err.to_string().contains("links.self: invalid length 0"),
            "{err}"
        );
        let mut headless = answer(7, "OPEN");
        headless["fromRef"]["latestCommit"].take();
        let err = pull(headless).expect_err("no head");
        assert!(err.to_string().contains("fromRef.latestCommit"), "{err}");
        let page = read::<Page<Pull>>(
            "Bitbucket Data Center",
            "list pull requests",
            json!({"size": 0}),
        );
        let err = page.expect_err("no values");
        assert!(err.to_string().contains("missing field `values`"), "{err}");
    }
}
