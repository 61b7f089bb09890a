//! GitHub and GitHub Enterprise Server over the REST API (version 2022-11-28): pull requests,
//! their labels, merging, commit statuses. Auto-merge is a REST merge when GitHub allows it
//! (see docs/pull-requests.md: GitHub's own auto-merge is GraphQL-only and needs a repository
//! setting; a REST merge honours the same branch protection).

use reqwest::{
    Method, StatusCode,
    header::{ACCEPT, HeaderMap, HeaderValue},
};
use serde::{Deserialize, de::IgnoredAny};
use serde_json::json;

use super::{
    CommitStatus, Forge, ForgeError, ForgeSettings, Located, MergeAttempt, PrState, PullRequest,
    PullRequestDraft, Reply, StatusState,
    api::{ApiClient, TokenSource},
};
use crate::spec::MergeMethod;

/// GitHub caps a status description at 140 characters.
const MAX_DESCRIPTION: usize = 140;

/// One GitHub repository.
pub(super) struct GitHub {
    api: ApiClient,
    /// `owner/name`.
    repo: String,
}

impl GitHub {
    /// The repository at `located`, with a fixed token or a GitHub App's installation tokens.
    pub(super) fn new(
        located: &Located,
        token: impl TokenSource + 'static,
        settings: &ForgeSettings,
    ) -> Result<GitHub, ForgeError> {
        Ok(GitHub {
            api: ApiClient::new("GitHub", located.api.clone(), token, settings, headers())
                .about(format!(
                    "repository {} or its pull request",
                    located.project
                ))
                .with_details(),
            repo: located.project.clone(),
        })
    }

    fn owner(&self) -> &str {
        self.repo.split('/').next().unwrap_or_default()
    }

    async fn labels(&self, number: u64, labels: &[String]) -> Reply<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let path = format!("repos/{}/issues/{number}/labels", self.repo);
        let body = json!({ "labels": labels });
        self.api
            .success::<IgnoredAny>("label the pull request", Method::POST, &path, Some(&body))
            .await
            .map(drop)
    }
}

#[async_trait::async_trait]
impl Forge for GitHub {
    async fn find_open(&self, head: &str, base: &str) -> Reply<Option<PullRequest>> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", "open")
            .append_pair("head", &format!("{}:{head}", self.owner()))
            .append_pair("base", base)
            .finish();
        let path = format!("repos/{}/pulls?{query}", self.repo);
        let open: Vec<Pull> = self.api.get("list pull requests", &path).await?;
        Ok(open.into_iter().next().map(PullRequest::from))
    }

    async fn open(&self, draft: &PullRequestDraft) -> Reply<PullRequest> {
        let body = json!({
            "title": draft.title, "head": draft.head, "base": draft.base,
            "body": draft.body, "draft": draft.draft,
        });
        let path = format!("repos/{}/pulls", self.repo);
        let what = "open a pull request";
        let answer = self.api.call(Method::POST, &path, Some(&body)).await?;
        if answer.status != StatusCode::CREATED {
            return Err(self.api.failed(what, &answer));
        }
        let pr = PullRequest::from(self.api.read::<Pull>(what, answer)?);
        self.labels(pr.number, &draft.labels).await?;
        Ok(pr)
    }

    async fn update(&self, number: u64, draft: &PullRequestDraft) -> Reply<PullRequest> {
        let body = json!({ "title": draft.title, "body": draft.body });
        let path = format!("repos/{}/pulls/{number}", self.repo);
        let pr: Pull = self
            .api
            .success("update the pull request", Method::PATCH, &path, Some(&body))
            .await?;
        self.labels(number, &draft.labels).await?;
        Ok(pr.into())
    }

    async fn get(&self, number: u64) -> Reply<PullRequest> {
        let path = format!("repos/{}/pulls/{number}", self.repo);
        let pr: Pull = self.api.get("read the pull request", &path).await?;
        Ok(pr.into())
    }

    async fn merge(&self, number: u64, head_sha: &str, method: MergeMethod) -> Reply<MergeAttempt> {
        let body = json!({ "merge_method": method.as_str(), "sha": head_sha });
        let path = format!("repos/{}/pulls/{number}/merge", self.repo);
        let what = "merge the pull request";
        let answer = self.api.call(Method::PUT, &path, Some(&body)).await?;
        match answer.status.as_u16() {
            200 => Ok(MergeAttempt::Merged(
                self.api.read::<Merged>(what, answer)?.sha,
            )),
            // Not mergeable (checks, reviews, conflicts), or the head moved meanwhile.
            405 | 409 | 422 => Ok(MergeAttempt::NotMergeable(answer.message())),
            _ => Err(self.api.failed(what, &answer)),
        }
    }

    async fn set_status(&self, status: &CommitStatus) -> Reply<()> {
        post_status(&self.api, &self.repo, status, MAX_DESCRIPTION).await
    }
}

/// Sets a commit status through GitHub's statuses API, which Gitea and Forgejo copy: the
/// description cut to `max_description` characters.
pub(super) async fn post_status(
    api: &ApiClient,
    repo: &str,
    status: &CommitStatus,
    max_description: usize,
) -> Reply<()> {
    let state = match status.state {
        StatusState::Pending => "pending",
        StatusState::Success => "success",
        StatusState::Failure => "failure",
        StatusState::Error => "error",
    };
    let description: String = status.description.chars().take(max_description).collect();
    let mut body = json!({
        "state": state, "context": status.context, "description": description,
    });
    if let Some(url) = &status.target_url {
        body["target_url"] = json!(url);
    }
    let path = format!("repos/{repo}/statuses/{}", status.sha);
    api.success::<IgnoredAny>("set a commit status", Method::POST, &path, Some(&body))
        .await
        .map(drop)
}

/// The media type and API version every GitHub request names.
pub(super) fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        ACCEPT,
        HeaderValue::from_static("application/vnd.github+json"),
    );
    headers.insert(
        "x-github-api-version",
        HeaderValue::from_static("2022-11-28"),
    );
    headers
}

/// A pull request as GitHub answers it (`pull-request`, and `pull-request-simple` in lists).
#[derive(Debug, Deserialize)]
struct Pull {
    number: u64,
    html_url: String,
    state: String,
    /// Only in a single pull request's answer, not in lists: there `merged_at` tells.
    #[serde(default)]
    merged: bool,
    /// Null until merged.
    merged_at: Option<String>,
    /// Null until merged (and while GitHub computes the test merge).
    merge_commit_sha: Option<String>,
}

impl From<Pull> for PullRequest {
    fn from(pr: Pull) -> PullRequest {
        let merged = pr.merged || pr.merged_at.is_some();
        PullRequest {
            number: pr.number,
            url: pr.html_url,
            state: match (pr.state.as_str(), merged) {
                (_, true) => PrState::Merged,
                ("open", _) => PrState::Open,
                _ => PrState::ClosedUnmerged,
            },
            merge_commit: pr.merge_commit_sha.filter(|_| merged),
        }
    }
}

/// GitHub's answer to a merge.
#[derive(Debug, Deserialize)]
struct Merged {
    /// The commit the base branch got.
    sha: String,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::forge::api::read;

    fn pull(body: Value) -> Reply<PullRequest> {
        read::<Pull>("GitHub", "read the pull request", body).map(PullRequest::from)
    }

    #[test]
    fn reads_merged_open_and_listed_pull_requests() {
        let merged = pull(json!({
            "number": 4, "state": "closed", "merged": true, "merged_at": "2026-11-25T00:00:00Z",
            "merge_commit_sha": "m", "html_url": "https://github.com/o/r/pull/4",
        }))
        .expect("read");
        assert_eq!(
            (merged.number, merged.state, merged.merge_commit.as_deref()),
            (4, PrState::Merged, Some("m"))
        );
        assert_eq!(merged.url, "https://github.com/o/r/pull/4");
        // A list's entries have no `merged`; the test merge's commit is not a merge commit.
        let open = pull(json!({
            "number": 5, "state": "open", "merged_at": null, "merge_commit_sha": "test",
            "html_url": "u",
        }))
        .expect("read");
        assert_eq!((open.state, open.merge_commit), (PrState::Open, None));
    }

    #[test]
    fn names_a_renamed_pull_request_field_instead_of_reading_number_0() {
        let err = pull(json!({"id": 4, "state": "open", "html_url": "u"})).expect_err("renamed");
        assert!(err.to_string().contains("missing field `number`"), "{err}");
        assert!(err.to_string().contains("read the pull request"), "{err}");
        let listed = read::<Vec<Pull>>("GitHub", "list pull requests", json!([{"number": 4}]));
        let err = listed.expect_err("no link");
        assert!(
            err.to_string().contains("[0]: missing field `html_url`"),
            "{err}"
        );
    }

    #[test]
    fn names_a_merge_answer_without_its_commit() {
        let err = read::<Merged>("GitHub", "merge the pull request", json!({"merged": true}))
            .expect_err("no sha");
        assert!(err.to_string().contains("missing field `sha`"), "{err}");
    }
}
