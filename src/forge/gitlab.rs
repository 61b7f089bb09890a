//! GitLab (gitlab.com and self-managed) over the REST API v4: merge requests, their labels,
//! drafts (a `Draft:` title prefix, as GitLab has it), merging with GitLab's own auto-merge, and
//! commit statuses. The project is addressed by its URL-encoded path (`group%2Fgitops`), which
//! works on every GitLab version and needs no lookup of the numeric id.

mod answers;

use reqwest::{Method, header::HeaderMap};
use serde::de::IgnoredAny;
use serde_json::json;

use self::answers::MergeRequest;
use super::{
    CommitStatus, Forge, ForgeError, ForgeSettings, Located, MergeAttempt, PrState, PullRequest,
    PullRequestDraft, Reply, StatusState, api::ApiClient,
};
use crate::{
    credentials::Secret,
    spec::{MergeMethod, NO_REBASE_ON_GITLAB as NO_REBASE},
};

/// A commit status description is one short line in GitLab's pipeline view: phasegate keeps it
/// to 255 characters, the size of GitLab's short string columns.
const MAX_DESCRIPTION: usize = 255;

/// How GitLab marks a draft merge request: a title prefix.
const DRAFT: &str = "Draft: ";

/// One GitLab project.
pub(super) struct GitLab {
    api: ApiClient,
    /// `projects/<URL-encoded path>`, the root of every call.
    root: String,
}

impl GitLab {
    pub(super) fn new(
        located: &Located,
        token: Secret,
        settings: &ForgeSettings,
    ) -> Result<GitLab, ForgeError> {
        Ok(GitLab {
            api: ApiClient::new(
                "GitLab",
                located.api.clone(),
                token,
                settings,
                HeaderMap::new(),
            )
            .about(format!("project {} or its merge request", located.project)),
            // Project paths are letters, digits, `-`, `_` and `.` (checked by locate): only
            // the separators need encoding.
            root: format!("projects/{}", located.project.replace('/', "%2F")),
        })
    }

    fn merge_request(&self, iid: u64) -> String {
        format!("{}/merge_requests/{iid}", self.root)
    }
}

#[async_trait::async_trait]
impl Forge for GitLab {
    async fn find_open(&self, head: &str, base: &str) -> Reply<Option<PullRequest>> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", "opened")
            .append_pair("source_branch", head)
            .append_pair("target_branch", base)
            .finish();
        let path = format!("{}/merge_requests?{query}", self.root);
        let open: Vec<MergeRequest> = self.api.get("list merge requests", &path).await?;
        Ok(open.into_iter().next().map(PullRequest::from))
    }

    async fn open(&self, draft: &PullRequestDraft) -> Reply<PullRequest> {
        let mut body = json!({
            "source_branch": draft.head, "target_branch": draft.base,
            "title": title(&draft.title, draft.draft), "description": draft.body,
        });
        if !draft.labels.is_empty() {
            body["labels"] = json!(draft.labels.join(","));
        }
        let path = format!("{}/merge_requests", self.root);
        let mr: MergeRequest = self
            .api
            .success("open a merge request", Method::POST, &path, Some(&body))
            .await?;
        Ok(mr.into())
    }

    async fn update(&self, number: u64, draft: &PullRequestDraft) -> Reply<PullRequest> {
        // The title carries the draft mark: keep what the merge request has now (a
        // reviewer may have marked it ready), as on forges where draft is a flag.
        let path = self.merge_request(number);
        let now: MergeRequest = self.api.get("read the merge request", &path).await?;
        let mut body = json!({
            "title": title(&draft.title, now.is_draft()), "description": draft.body,
        });
        if !draft.labels.is_empty() {
            body["add_labels"] = json!(draft.labels.join(","));
        }
        let mr: MergeRequest = self
            .api
            .success("update the merge request", Method::PUT, &path, Some(&body))
            .await?;
        Ok(mr.into())
    }

    async fn get(&self, number: u64) -> Reply<PullRequest> {
        let path = self.merge_request(number);
        let mr: MergeRequest = self.api.get("read the merge request", &path).await?;
        Ok(mr.into())
    }

    async fn merge(&self, number: u64, head_sha: &str, method: MergeMethod) -> Reply<MergeAttempt> {
        if method == MergeMethod::Rebase {
            return Err(ForgeError::Invalid(NO_REBASE.into()));
        }
        // GitLab's own auto-merge: merged now if nothing is pending, otherwise GitLab
        // merges when the checks pass. `auto_merge` since GitLab 17.11, before it
        // `merge_when_pipeline_succeeds` (still accepted): send both.
        let body = json!({
            "sha": head_sha, "squash": method == MergeMethod::Squash,
            "auto_merge": true, "merge_when_pipeline_succeeds": true,
        });
        let path = format!("{}/merge", self.merge_request(number));
        let what = "merge the merge request";
        let answer = match self.api.call(Method::PUT, &path, Some(&body)).await {
            Ok(answer) => answer,
            // GitLab answers 401 also when the token's user may not merge into the
            // target branch.
            Err(ForgeError::PermissionDenied { forge, reason }) => {
                return Err(ForgeError::PermissionDenied {
                    forge,
                    reason: format!(
                        "{reason}; GitLab also answers this when the token's user may not \
                         merge into the target branch"
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        match answer.status.as_u16() {
            200 => {
                let mr = PullRequest::from(self.api.read::<MergeRequest>(what, answer)?);
                Ok(match (mr.state, mr.merge_commit) {
                    (PrState::Merged, Some(sha)) => MergeAttempt::Merged(sha),
                    _ => MergeAttempt::NotMergeable(
                        "auto-merge is set: GitLab merges it when its checks pass".into(),
                    ),
                })
            }
            // 405: not mergeable yet (draft, checks, approvals, discussions), 406 on older
            // versions; 409: the head moved; 422: conflicts.
            405 | 406 | 409 | 422 => Ok(MergeAttempt::NotMergeable(answer.message())),
            _ => Err(self.api.failed(what, &answer)),
        }
    }

    async fn set_status(&self, status: &CommitStatus) -> Reply<()> {
        let state = match status.state {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            // GitLab has no "error": a promotion that failed is a failed status.
            StatusState::Failure | StatusState::Error => "failed",
        };
        let description: String = status.description.chars().take(MAX_DESCRIPTION).collect();
        let mut body = json!({
            "state": state, "name": status.context, "description": description,
        });
        if let Some(url) = &status.target_url {
            body["target_url"] = json!(url);
        }
        let path = format!("{}/statuses/{}", self.root, status.sha);
        self.api
            .success::<IgnoredAny>("set a commit status", Method::POST, &path, Some(&body))
            .await
            .map(drop)
    }
}

/// The title GitLab shows, with the draft mark when `draft`.
fn title(title: &str, draft: bool) -> String {
    match draft {
        true => format!("{DRAFT}{title}"),
        false => title.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_drafts_in_the_title() {
        assert_eq!(title("Promote", true), "Draft: Promote");
        assert_eq!(title("Promote", false), "Promote");
    }
}
