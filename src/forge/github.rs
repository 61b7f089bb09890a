//! GitHub and GitHub Enterprise Server over the REST API (version 2022-11-28): pull requests,
//! their labels, merging, commit statuses. Auto-merge is a REST merge when GitHub allows it
//! (see docs/pull-requests.md: GitHub's own auto-merge is GraphQL-only and needs a repository
//! setting; a REST merge honours the same branch protection).

use futures_util::future::BoxFuture;
use reqwest::{
    Method, StatusCode,
    header::{ACCEPT, HeaderMap, HeaderValue},
};
use serde_json::{Value, json};

use super::{
    CommitStatus, Forge, ForgeError, ForgeSettings, Located, MergeAttempt, PrState, PullRequest,
    PullRequestDraft, StatusState,
    api::{Answer, ApiClient, TokenSource},
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
            api: ApiClient::new("GitHub", located.api.clone(), token, settings, headers())?.about(
                format!("repository {} or its pull request", located.project),
            ),
            repo: located.project.clone(),
        })
    }

    fn owner(&self) -> &str {
        self.repo.split('/').next().unwrap_or_default()
    }

    /// An answer that should have been a success, as an error naming the request and
    /// GitHub's validation details.
    fn failed(&self, what: &str, answer: &Answer) -> ForgeError {
        self.api.failed_with(what, answer, &errors(&answer.body))
    }

    async fn labels(&self, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        if labels.is_empty() {
            return Ok(());
        }
        let path = format!("repos/{}/issues/{number}/labels", self.repo);
        let answer = self
            .api
            .call(Method::POST, &path, Some(&json!({ "labels": labels })))
            .await?;
        match answer.status.is_success() {
            true => Ok(()),
            false => Err(self.failed("label the pull request", &answer)),
        }
    }
}

impl Forge for GitHub {
    fn name(&self) -> &'static str {
        "GitHub"
    }

    fn find_open<'a>(
        &'a self,
        head: &'a str,
        base: &'a str,
    ) -> BoxFuture<'a, Result<Option<PullRequest>, ForgeError>> {
        Box::pin(async move {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("state", "open")
                .append_pair("head", &format!("{}:{head}", self.owner()))
                .append_pair("base", base)
                .finish();
            let path = format!("repos/{}/pulls?{query}", self.repo);
            let answer = self.api.call(Method::GET, &path, None).await?;
            if !answer.status.is_success() {
                return Err(self.failed("list pull requests", &answer));
            }
            Ok(answer
                .body
                .as_array()
                .and_then(|prs| prs.first())
                .map(pull_request))
        })
    }

    fn open<'a>(
        &'a self,
        draft: &'a PullRequestDraft,
    ) -> BoxFuture<'a, Result<PullRequest, ForgeError>> {
        Box::pin(async move {
            let body = json!({
                "title": draft.title, "head": draft.head, "base": draft.base,
                "body": draft.body, "draft": draft.draft,
            });
            let path = format!("repos/{}/pulls", self.repo);
            let answer = self.api.call(Method::POST, &path, Some(&body)).await?;
            if answer.status != StatusCode::CREATED {
                return Err(self.failed("open a pull request", &answer));
            }
            let pr = pull_request(&answer.body);
            self.labels(pr.number, &draft.labels).await?;
            Ok(pr)
        })
    }

    fn update<'a>(
        &'a self,
        number: u64,
        draft: &'a PullRequestDraft,
    ) -> BoxFuture<'a, Result<PullRequest, ForgeError>> {
        Box::pin(async move {
            let body = json!({ "title": draft.title, "body": draft.body });
            let path = format!("repos/{}/pulls/{number}", self.repo);
            let answer = self.api.call(Method::PATCH, &path, Some(&body)).await?;
            if !answer.status.is_success() {
                return Err(self.failed("update the pull request", &answer));
            }
            self.labels(number, &draft.labels).await?;
            Ok(pull_request(&answer.body))
        })
    }

    fn get(&self, number: u64) -> BoxFuture<'_, Result<PullRequest, ForgeError>> {
        Box::pin(async move {
            let path = format!("repos/{}/pulls/{number}", self.repo);
            let answer = self.api.call(Method::GET, &path, None).await?;
            if !answer.status.is_success() {
                return Err(self.failed("read the pull request", &answer));
            }
            Ok(pull_request(&answer.body))
        })
    }

    fn merge<'a>(
        &'a self,
        number: u64,
        head_sha: &'a str,
        method: MergeMethod,
    ) -> BoxFuture<'a, Result<MergeAttempt, ForgeError>> {
        Box::pin(async move {
            let body = json!({ "merge_method": method.as_str(), "sha": head_sha });
            let path = format!("repos/{}/pulls/{number}/merge", self.repo);
            let answer = self.api.call(Method::PUT, &path, Some(&body)).await?;
            match answer.status.as_u16() {
                200 => Ok(MergeAttempt::Merged(
                    answer.body["sha"].as_str().unwrap_or_default().to_string(),
                )),
                // Not mergeable (checks, reviews, conflicts), or the head moved meanwhile.
                405 | 409 | 422 => Ok(MergeAttempt::NotMergeable(answer.message())),
                _ => Err(self.failed("merge the pull request", &answer)),
            }
        })
    }

    fn set_status<'a>(&'a self, status: &'a CommitStatus) -> BoxFuture<'a, Result<(), ForgeError>> {
        Box::pin(async move {
            let state = match status.state {
                StatusState::Pending => "pending",
                StatusState::Success => "success",
                StatusState::Failure => "failure",
                StatusState::Error => "error",
            };
            let description: String = status.description.chars().take(MAX_DESCRIPTION).collect();
            let mut body = json!({
                "state": state, "context": status.context, "description": description,
            });
            if let Some(url) = &status.target_url {
                body["target_url"] = json!(url);
            }
            let path = format!("repos/{}/statuses/{}", self.repo, status.sha);
            let answer = self.api.call(Method::POST, &path, Some(&body)).await?;
            match answer.status.is_success() {
                true => Ok(()),
                false => Err(self.failed("set a commit status", &answer)),
            }
        })
    }
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

fn pull_request(v: &Value) -> PullRequest {
    let merged = v["merged"].as_bool().unwrap_or(false) || !v["merged_at"].is_null();
    PullRequest {
        number: v["number"].as_u64().unwrap_or_default(),
        url: v["html_url"].as_str().unwrap_or_default().to_string(),
        state: match (v["state"].as_str(), merged) {
            (_, true) => PrState::Merged,
            (Some("open"), _) => PrState::Open,
            _ => PrState::ClosedUnmerged,
        },
        merge_commit: merged
            .then(|| v["merge_commit_sha"].as_str().map(str::to_string))
            .flatten(),
    }
}

/// GitHub's validation details (`errors: [{message}|{code, field}]`), in a few words.
fn errors(body: &Value) -> String {
    let Some(list) = body["errors"].as_array() else {
        return String::new();
    };
    let parts: Vec<String> = list
        .iter()
        .map(|e| {
            e["message"].as_str().map_or_else(
                || {
                    format!(
                        "{} {}",
                        e["field"].as_str().unwrap_or(""),
                        e["code"].as_str().unwrap_or("")
                    )
                },
                str::to_string,
            )
        })
        .collect();
    format!(": {}", super::api::one_line(&parts.join("; ")))
}
