//! Bitbucket Data Center (and Server) over REST API 1.0 (`/rest/api/latest`, 8.x and 9.x):
//! pull requests (every write carries the pull request's `version`: a stale one is re-read),
//! drafts (8.18+), merging with Bitbucket's own auto-merge (8.15+, when the repository allows
//! it), and build statuses on commits. Bitbucket has no pull-request labels (refused before
//! anything is pushed). Every request carries `X-Atlassian-Token: no-check`, which Bitbucket's
//! XSRF protection asks of API clients that write.

mod answers;
mod features;

use std::sync::atomic::AtomicBool;

use reqwest::{
    Method, StatusCode,
    header::{ACCEPT, HeaderMap, HeaderValue},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use self::answers::{Outcome, Page, Pull, out_of_date, strategy};
use super::{
    CommitStatus, Forge, ForgeError, ForgeSettings, Located, MergeAttempt, PrState, PullRequest,
    PullRequestDraft, Reply, StatusState,
    api::{Answer, ApiClient},
};
use crate::{credentials::Secret, spec::MergeMethod};

const FORGE: &str = "Bitbucket Data Center";

/// Bitbucket keeps a build's key and description to 255 characters.
const MAX_TEXT: usize = 255;

/// A pull request's `version` can move between our read and our write (a reviewer, a build
/// plugin): re-read and write again, a few times.
const WRITE_ATTEMPTS: u32 = 3;

/// One Bitbucket Data Center repository.
pub(super) struct BitbucketDataCenter {
    api: ApiClient,
    /// `PROJECT/slug`, for messages.
    project: String,
    /// `projects/PROJECT/repos/slug`, the root of every repository call.
    root: String,
    /// The web root (the API root without `/rest/api/…`): a status links to the commit there
    /// when no run URL is configured, since Bitbucket requires a link.
    web: String,
    /// The repository's auto-merge setting was found enabled (read once per run).
    auto_merge_ok: AtomicBool,
}

impl BitbucketDataCenter {
    pub(super) fn new(
        located: &Located,
        token: Secret,
        settings: &ForgeSettings,
    ) -> Result<BitbucketDataCenter, ForgeError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert("x-atlassian-token", HeaderValue::from_static("no-check"));
        let (key, slug) = located.project.split_once('/').ok_or_else(|| {
            ForgeError::Invalid("Bitbucket repository is not PROJECT/slug".into())
        })?;
        let api = located.api.as_str().trim_end_matches('/');
        let web = ["/rest/api/latest", "/rest/api/1.0"]
            .iter()
            .find_map(|suffix| api.strip_suffix(suffix))
            .unwrap_or(api)
            .to_string();
        Ok(BitbucketDataCenter {
            api: ApiClient::new(FORGE, located.api.clone(), token, settings, headers).about(
                format!("repository {} or its pull request", located.project),
            ),
            project: located.project.clone(),
            root: format!("projects/{key}/repos/{slug}"),
            web,
            auto_merge_ok: AtomicBool::new(false),
        })
    }

    /// One call; an answer that is not a success is an error naming the request. Bitbucket
    /// answers 401 both for a bad token and for one that lacks a permission: say so.
    async fn request(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ForgeError> {
        match self.api.call(method, path, body).await {
            Err(ForgeError::PermissionDenied { forge, reason }) => {
                Err(ForgeError::PermissionDenied {
                    forge,
                    reason: format!(
                        "{reason}; Bitbucket also answers this when the token lacks a permission \
                         this needs: to {what}, REPO_WRITE on {} (REPO_READ to read)",
                        self.project
                    ),
                })
            }
            other => other,
        }
    }

    /// `GET path` to `what`: only a success answers, read as `T`.
    async fn read<T: DeserializeOwned>(&self, what: &str, path: &str) -> Result<T, ForgeError> {
        let answer = self.request(what, Method::GET, path, None).await?;
        match answer.status.is_success() {
            true => self.api.read(what, answer),
            false => Err(self.api.failed(what, &answer)),
        }
    }

    fn pull_request_path(&self, id: u64) -> String {
        format!("{}/pull-requests/{id}", self.root)
    }
}

#[async_trait::async_trait]
impl Forge for BitbucketDataCenter {
    async fn find_open(&self, head: &str, base: &str) -> Reply<Option<PullRequest>> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("at", &format!("refs/heads/{head}"))
            .append_pair("direction", "OUTGOING")
            .append_pair("state", "OPEN")
            .finish();
        let path = format!("{}/pull-requests?{query}", self.root);
        let page: Page<Pull> = self.read("list pull requests", &path).await?;
        let base = format!("refs/heads/{base}");
        Ok(page
            .values
            .into_iter()
            .find(|pr| pr.to_ref.id == base)
            .map(PullRequest::from))
    }

    async fn open(&self, draft: &PullRequestDraft) -> Reply<PullRequest> {
        if draft.draft {
            self.check_drafts().await?;
        }
        let (key, slug) = self.project.split_once('/').unwrap_or_default();
        let repository = json!({ "slug": slug, "project": { "key": key } });
        let mut body = json!({
            "title": draft.title, "description": draft.body,
            "fromRef": { "id": format!("refs/heads/{}", draft.head), "repository": repository },
            "toRef": { "id": format!("refs/heads/{}", draft.base), "repository": repository },
        });
        if draft.draft {
            body["draft"] = json!(true);
        }
        let path = format!("{}/pull-requests", self.root);
        let what = "open a pull request";
        let answer = self.request(what, Method::POST, &path, Some(&body)).await?;
        match answer.status {
            StatusCode::CREATED => Ok(self.api.read::<Pull>(what, answer)?.into()),
            _ => Err(self.api.failed(what, &answer)),
        }
    }

    async fn update(&self, number: u64, draft: &PullRequestDraft) -> Reply<PullRequest> {
        let path = self.pull_request_path(number);
        let what = "update the pull request";
        let mut last = None;
        for _ in 0..WRITE_ATTEMPTS {
            let now: Pull = self.read("read the pull request", &path).await?;
            // A PUT sets the reviewers it is given: hand back the ones the pull request has.
            let reviewers: Vec<Value> = now
                .reviewers
                .iter()
                .map(|r| json!({ "user": { "name": r.user.name } }))
                .collect();
            let body = json!({
                "version": now.version, "title": draft.title, "description": draft.body,
                "reviewers": reviewers,
            });
            let answer = self.request(what, Method::PUT, &path, Some(&body)).await?;
            match answer.status {
                StatusCode::OK => return Ok(self.api.read::<Pull>(what, answer)?.into()),
                StatusCode::CONFLICT if out_of_date(&answer) => last = Some(answer),
                _ => return Err(self.api.failed(what, &answer)),
            }
        }
        Err(last.map_or_else(
            || ForgeError::Refused(format!("{FORGE} refused to {what}")),
            |answer| self.api.failed(what, &answer),
        ))
    }

    async fn get(&self, number: u64) -> Reply<PullRequest> {
        let now: Pull = self
            .read("read the pull request", &self.pull_request_path(number))
            .await?;
        Ok(now.into())
    }

    async fn merge(&self, number: u64, head_sha: &str, method: MergeMethod) -> Reply<MergeAttempt> {
        self.check_auto_merge().await?;
        let path = self.pull_request_path(number);
        let now: Pull = self.read("read the pull request", &path).await?;
        // The version pins what we merge; the head check pins which commit.
        let (version, moved) = (now.version, now.from_ref.latest_commit != head_sha);
        let pr = PullRequest::from(now);
        if pr.state != PrState::Open {
            return Ok(match (pr.state, pr.merge_commit) {
                (PrState::Merged, Some(sha)) => MergeAttempt::Merged(sha),
                _ => MergeAttempt::NotMergeable("the pull request is not open".into()),
            });
        }
        if moved {
            return Ok(MergeAttempt::NotMergeable(
                "its branch moved since phasegate pushed it".into(),
            ));
        }
        let body = json!({ "autoMerge": true, "strategyId": strategy(method) });
        let merge = format!("{path}/merge?version={version}");
        let what = "merge the pull request";
        let answer = self
            .request(what, Method::POST, &merge, Some(&body))
            .await?;
        match answer.status.as_u16() {
            200 => {
                let outcome: Outcome = self.api.read(what, answer)?;
                Ok(match outcome.state() {
                    (PrState::Merged, Some(sha)) => MergeAttempt::Merged(sha),
                    _ => MergeAttempt::NotMergeable(
                        "auto-merge is requested: Bitbucket merges it when its merge \
                         checks pass"
                            .into(),
                    ),
                })
            }
            // Conflicts, a vetoing merge check, a stale version (read again next time).
            409 => Ok(MergeAttempt::NotMergeable(answer.message())),
            _ => Err(self.api.failed(what, &answer)),
        }
    }

    async fn set_status(&self, status: &CommitStatus) -> Reply<()> {
        let state = match status.state {
            StatusState::Pending => "INPROGRESS",
            StatusState::Success => "SUCCESSFUL",
            StatusState::Failure | StatusState::Error => "FAILED",
        };
        let (key, slug) = self.project.split_once('/').unwrap_or_default();
        let url = status.target_url.clone().unwrap_or_else(|| {
            format!(
                "{}/projects/{key}/repos/{slug}/commits/{}",
                self.web, status.sha
            )
        });
        let cut = |s: &str| s.chars().take(MAX_TEXT).collect::<String>();
        let body = json!({
            "key": cut(&status.context), "name": cut(&status.context), "state": state,
            "description": cut(&status.description), "url": url,
        });
        let path = format!("{}/commits/{}/builds", self.root, status.sha);
        let what = "set a build status";
        let answer = self.request(what, Method::POST, &path, Some(&body)).await?;
        match answer.status.is_success() {
            true => Ok(()),
            false => Err(self.api.failed(what, &answer)),
        }
    }
}
