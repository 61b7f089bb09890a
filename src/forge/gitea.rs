//! Gitea and Forgejo (Forgejo is Gitea's API, v1, under another name: one client, two names):
//! pull requests, their labels (by id: looked up by name), drafts (a `WIP:` title prefix, as
//! Gitea marks them), merging with Gitea's own auto-merge (`merge_when_checks_succeed`), and
//! commit statuses. The token goes as `Authorization: token …`, as both document it.

mod answers;

use std::collections::BTreeMap;

use reqwest::{Method, header::HeaderMap};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::json;

use self::answers::{Label, Pull, title};

use super::{
    CommitStatus, Forge, ForgeError, ForgeSettings, Located, MergeAttempt, PrState, PullRequest,
    PullRequestDraft, Reply, api::ApiClient,
};
use crate::{
    credentials::Secret,
    spec::{ForgeKind, MergeMethod},
};

/// Gitea's largest page (`MAX_RESPONSE_ITEMS`).
const PAGE: usize = 50;

/// Pages of open pull requests or labels read at most: a repository with more than this many
/// open pull requests is past what a promotion bot should search through.
const MAX_PAGES: usize = 20;

/// One Gitea or Forgejo repository.
pub(super) struct Gitea {
    api: ApiClient,
    /// `Gitea` or `Forgejo`, for messages.
    name: &'static str,
    /// `owner/name`.
    repo: String,
}

impl Gitea {
    pub(super) fn new(
        located: &Located,
        token: Secret,
        settings: &ForgeSettings,
    ) -> Result<Gitea, ForgeError> {
        let name = match located.kind {
            ForgeKind::Forgejo => "Forgejo",
            _ => "Gitea",
        };
        let api = ApiClient::new(name, located.api.clone(), token, settings, HeaderMap::new())
            .with_auth_scheme("token")
            .about(format!(
                "repository {} or its pull request",
                located.project
            ));
        Ok(Gitea {
            api,
            name,
            repo: located.project.clone(),
        })
    }

    /// Every item of a paged list (`?page=N&limit=50`), up to [`MAX_PAGES`] pages.
    async fn pages<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, ForgeError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .append_pair("page", &page.to_string())
                .append_pair("limit", &PAGE.to_string())
                .finish();
            let items: Vec<T> = self.api.get(what, &format!("{path}?{query}")).await?;
            let last = items.len() < PAGE;
            all.extend(items);
            if last {
                break;
            }
        }
        Ok(all)
    }

    /// The ids of the repository's labels named `names`; a missing one is an error naming it
    /// (Gitea takes label ids, and phasegate does not create labels).
    async fn label_ids(&self, names: &[String]) -> Result<Vec<u64>, ForgeError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let path = format!("repos/{}/labels", self.repo);
        let known: BTreeMap<String, u64> = self
            .pages::<Label>("list labels", &path, &[])
            .await?
            .into_iter()
            .map(|l| (l.name, l.id))
            .collect();
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !known.contains_key(*n))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(ForgeError::Refused(format!(
                "{}: label(s) {} do not exist in {}: create them in the repository (phasegate \
                 adds labels, it does not create them)",
                self.name,
                missing.join(", "),
                self.repo
            )));
        }
        Ok(names.iter().filter_map(|n| known.get(n).copied()).collect())
    }

    fn pull(&self, number: u64) -> String {
        format!("repos/{}/pulls/{number}", self.repo)
    }
}

#[async_trait::async_trait]
impl Forge for Gitea {
    async fn find_open(&self, head: &str, base: &str) -> Reply<Option<PullRequest>> {
        // Gitea's list has no head or base filter: read the open ones.
        let path = format!("repos/{}/pulls", self.repo);
        let open: Vec<Pull> = self
            .pages("list pull requests", &path, &[("state", "open")])
            .await?;
        Ok(open
            .into_iter()
            .find(|p| p.joins(head, base))
            .map(PullRequest::from))
    }

    async fn open(&self, draft: &PullRequestDraft) -> Reply<PullRequest> {
        let labels = self.label_ids(&draft.labels).await?;
        let mut body = json!({
            "head": draft.head, "base": draft.base,
            "title": title(&draft.title, draft.draft), "body": draft.body,
        });
        if !labels.is_empty() {
            body["labels"] = json!(labels);
        }
        let path = format!("repos/{}/pulls", self.repo);
        let pr: Pull = self
            .api
            .success("open a pull request", Method::POST, &path, Some(&body))
            .await?;
        Ok(pr.into())
    }

    async fn update(&self, number: u64, draft: &PullRequestDraft) -> Reply<PullRequest> {
        let labels = self.label_ids(&draft.labels).await?;
        // The title carries the draft mark: keep what the pull request has now (a reviewer
        // may have marked it ready), as on forges where draft is a flag.
        let path = self.pull(number);
        let now: Pull = self.api.get("read the pull request", &path).await?;
        let body = json!({
            "title": title(&draft.title, now.is_draft()), "body": draft.body,
        });
        let pr: Pull = self
            .api
            .success("update the pull request", Method::PATCH, &path, Some(&body))
            .await?;
        if !labels.is_empty() {
            let path = format!("repos/{}/issues/{number}/labels", self.repo);
            self.api
                .success::<IgnoredAny>(
                    "label the pull request",
                    Method::POST,
                    &path,
                    Some(&json!({ "labels": labels })),
                )
                .await?;
        }
        Ok(pr.into())
    }

    async fn get(&self, number: u64) -> Reply<PullRequest> {
        let pr: Pull = self
            .api
            .success(
                "read the pull request",
                Method::GET,
                &self.pull(number),
                None,
            )
            .await?;
        Ok(pr.into())
    }

    async fn merge(&self, number: u64, head_sha: &str, method: MergeMethod) -> Reply<MergeAttempt> {
        // Gitea's own auto-merge: merged now when the checks allow it, otherwise scheduled
        // (201) and merged by Gitea when they succeed.
        let body = json!({
            "Do": method.as_str(), "head_commit_id": head_sha,
            "merge_when_checks_succeed": true,
        });
        let path = format!("{}/merge", self.pull(number));
        let answer = self.api.call(Method::POST, &path, Some(&body)).await?;
        match answer.status.as_u16() {
            // Merged; the answer has no body: the merge commit is on the pull request.
            200 => {
                let pr = self.get(number).await?;
                Ok(match (pr.state, pr.merge_commit) {
                    (PrState::Merged, Some(sha)) => MergeAttempt::Merged(sha),
                    _ => MergeAttempt::NotMergeable(format!(
                        "{} accepted the merge but the pull request is not merged yet",
                        self.name
                    )),
                })
            }
            201 => Ok(MergeAttempt::NotMergeable(format!(
                "auto-merge is scheduled: {} merges it when its checks succeed",
                self.name
            ))),
            // 405: not mergeable (checks, approvals, work in progress, conflicts); 409: the
            // head moved, or auto-merge is already scheduled; 423: the repository is busy.
            405 | 409 | 423 => Ok(MergeAttempt::NotMergeable(answer.message())),
            _ => Err(self.api.failed("merge the pull request", &answer)),
        }
    }

    async fn set_status(&self, status: &CommitStatus) -> Reply<()> {
        // Gitea keeps a status's whole description (a text column).
        super::github::post_status(&self.api, &self.repo, status, usize::MAX).await
    }
}
