//! A stateful fake Gitea / Forgejo (one API, v1): the REST paths and JSON of pull requests
//! (their label ids, `WIP:` drafts, merging with `Do` and Gitea's own auto-merge,
//! `merge_when_checks_succeed`), repository labels and commit statuses under `/api/v1`, beside
//! the real git smart-HTTP server (tests/support/git_server.rs) on the same host, as Gitea
//! serves both. Pull request branches are real branches pushed with git, and a merge really
//! moves the base branch (a merge, squash or rebased commit made with git). Every request is
//! checked against Forgejo's API description (tests/support/swagger.rs); one that does not
//! match is answered 422 and recorded, and [`FakeGitea::assert_valid`] fails the test. The API
//! takes only `Authorization: token …`, the scheme Gitea and Forgejo document.
//!
//! Does not model: reviews and approvals, branch protection other than required checks (one
//! switch, [`FakeGitea::require_checks`], and [`FakeGitea::pass_checks`] runs the scheduled
//! auto-merges as Gitea does when the checks succeed), organisation labels, forks and AGit,
//! configurable work-in-progress prefixes (the defaults `WIP:` and `[WIP]`), the paging
//! headers (`X-Total-Count`, `Link`), token scopes beyond one switch
//! ([`FakeGitea::restrict_token`] leaves the token `read:repository`), differences between
//! Gitea and Forgejo (none in what phasegate calls).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use axum::{body::Body, http::header, response::Response};
use serde_json::{Value, json};

use super::{
    fake_forge::{self, ApiRequest, ForgeApi, ForgeGit, Front, Fronted},
    git_server::GitServer,
    swagger,
};

const GIT: ForgeGit = ForgeGit {
    name: "Gitea",
    email: "gitea@example.com",
};

#[derive(Default)]
struct Fake {
    root: PathBuf,
    base_url: String,
    token: String,
    front: Front,
    prs: Vec<Value>,
    labels: Vec<Value>,
    statuses: Vec<(String, Value)>,
    /// Required checks are pending: a merge waits for them (scheduled when asked).
    checks_pending: bool,
    /// Pull requests scheduled to merge when the checks succeed, with their `Do`.
    scheduled: Vec<(u64, String)>,
}

/// The fake Gitea and its git server.
pub(crate) struct FakeGitea {
    pub git: GitServer,
    fake: Arc<Mutex<Fake>>,
}

impl FakeGitea {
    /// Serves the bare repositories under `root` with git (basic auth `user`/`token`) and the
    /// API (`Authorization: token <token>`).
    pub(crate) async fn start(root: &Path, user: &str, token: &str) -> FakeGitea {
        FakeGitea::serve(root, user, token, None).await
    }

    /// [`FakeGitea::start`] over https as `localhost`, its certificate signed by the CA in
    /// `ca_dir` (see `support::internal_ca`).
    pub(crate) async fn start_https(
        root: &Path,
        user: &str,
        token: &str,
        ca_dir: &Path,
    ) -> FakeGitea {
        FakeGitea::serve(root, user, token, Some(ca_dir)).await
    }

    async fn serve(root: &Path, user: &str, token: &str, ca_dir: Option<&Path>) -> FakeGitea {
        let fake = Arc::new(Mutex::new(Fake {
            root: root.to_path_buf(),
            token: token.to_string(),
            ..Fake::default()
        }));
        let git = fake_forge::start(&fake, root, user, token, ca_dir).await;
        fake.lock().expect("fake").base_url = git.base_url();
        FakeGitea { git, fake }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.fake.lock().expect("fake gitea")
    }

    /// `http://HOST/org/<name>.git`: a repository this fake hosts (bare at `root/org/<name>.git`).
    pub(crate) fn repo_url(&self, name: &str) -> String {
        self.git.url(&format!("org/{name}"))
    }

    /// Creates a repository label; answers its id.
    pub(crate) fn add_label(&self, name: &str) -> u64 {
        let mut s = self.state();
        let id = s.labels.len() as u64 + 11;
        s.labels
            .push(json!({"id": id, "name": name, "color": "00aabb"}));
        id
    }

    /// Opens `count` pull requests from other branches (people's work), before phasegate's.
    pub(crate) fn open_others(&self, count: usize) {
        let mut s = self.state();
        for i in 0..count {
            let number = s.prs.len() as u64 + 1;
            let url = format!("{}/org/gitops/pulls/{number}", s.base_url);
            s.prs.push(json!({
                "id": number + 100, "number": number, "state": "open", "title": format!("Feature {i}"),
                "body": "", "draft": false, "merged": false, "labels": [], "html_url": url,
                "head": {"ref": format!("feature-{i}"), "sha": "0".repeat(40)},
                "base": {"ref": "main"},
            }));
        }
    }

    /// Required checks become pending: merges wait for them.
    pub(crate) fn require_checks(&self) {
        self.state().checks_pending = true;
    }

    /// The checks succeed: Gitea merges the pull requests scheduled for auto-merge.
    pub(crate) fn pass_checks(&self) {
        let mut s = self.state();
        s.checks_pending = false;
        for (number, method) in std::mem::take(&mut s.scheduled) {
            let (status, body) = s.merge(number, None, &method);
            assert_eq!(status, 200, "auto-merge of #{number}: {body:?}");
        }
    }

    /// The pull requests, as Gitea answers them.
    pub(crate) fn pulls(&self) -> Vec<Value> {
        self.state().prs.clone()
    }

    /// The statuses set on `sha`, oldest first.
    pub(crate) fn statuses(&self, sha: &str) -> Vec<Value> {
        let s = self.state();
        s.statuses
            .iter()
            .filter(|(on, _)| on == sha)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A reviewer merges pull request `number` (a merge commit on the base branch).
    pub(crate) fn merge(&self, number: u64) {
        let (status, body) = self.state().merge(number, None, "merge");
        assert_eq!(status, 200, "merge #{number}: {body:?}");
    }

    /// A reviewer closes pull request `number` without merging it.
    pub(crate) fn close(&self, number: u64) {
        let mut s = self.state();
        s.pr_mut(number).expect("pull request")["state"] = json!("closed");
    }
}

fn answer(status: u16, body: Option<Value>) -> Response {
    let builder = Response::builder().status(status);
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json;charset=utf-8")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("response")
}

fn message(status: u16, text: &str) -> (u16, Option<Value>) {
    (
        status,
        Some(json!({"message": text, "url": "https://gitea.example.com/api/swagger"})),
    )
}

impl Fronted for FakeGitea {
    const API_DESCRIPTION: &'static str = "Forgejo's API description";
    fn with_front<T>(&self, f: impl FnOnce(&mut Front) -> T) -> T {
        f(&mut self.state().front)
    }
}

impl ForgeApi for Fake {
    const PREFIX: &'static str = "/api/v1";

    fn front(&mut self) -> &mut Front {
        &mut self.front
    }

    fn check(r: &ApiRequest) -> Result<(), String> {
        swagger::check(
            swagger::forgejo(),
            &r.method,
            &r.path,
            &r.query,
            r.body.as_ref(),
        )
    }

    fn invalid(_: &ApiRequest, violation: &str) -> Response {
        let (status, body) = message(422, violation);
        answer(status, body)
    }

    /// Only `Authorization: token …`, the scheme Gitea and Forgejo document.
    fn authenticated(&self, r: &ApiRequest) -> bool {
        let token = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("token "));
        token == Some(self.token.as_str())
    }

    fn unauthorized() -> Response {
        let (status, body) = message(401, "user does not exist [uid: 0, name: ]");
        answer(status, body)
    }

    fn failure(status: u16) -> Response {
        let (status, body) = message(status, "injected failure");
        answer(status, body)
    }

    fn forbidden() -> Response {
        let (status, body) = message(
            403,
            "token does not have at least one of required scope(s): [write:repository]",
        );
        answer(status, body)
    }

    fn route(&mut self, r: ApiRequest) -> Response {
        let body = r.body.unwrap_or(Value::Null);
        let (status, body) = self.respond(&r.method, &r.path, &r.query, body);
        answer(status, body)
    }
}

impl Fake {
    fn respond(
        &mut self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Value,
    ) -> (u16, Option<Value>) {
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let [_, owner, repo, rest @ ..] = seg.as_slice() else {
            return message(404, "Not Found");
        };
        if !self.bare(owner, repo).exists() {
            return message(404, "The target couldn't be found.");
        }
        let number = |s: &str| s.parse::<u64>().unwrap_or(0);
        let param = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let page = |items: Vec<Value>| {
            let limit = param("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(30usize)
                .min(50);
            let page = param("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1usize)
                .max(1);
            let items: Vec<Value> = items
                .into_iter()
                .skip((page - 1) * limit)
                .take(limit)
                .collect();
            (200, Some(json!(items)))
        };
        match (method, rest) {
            ("GET", ["pulls"]) => {
                let state = param("state").unwrap_or("open");
                let list = self
                    .prs
                    .iter()
                    .filter(|p| state == "all" || p["state"] == state)
                    .cloned()
                    .collect();
                page(list)
            }
            ("POST", ["pulls"]) => self.open(owner, repo, body),
            ("GET", ["pulls", n]) => match self.pr_mut(number(n)) {
                Some(pr) => (200, Some(pr.clone())),
                None => message(404, "The target couldn't be found."),
            },
            ("PATCH", ["pulls", n]) => match self.pr_mut(number(n)) {
                Some(pr) => {
                    for k in ["title", "body"] {
                        if let Some(v) = body.get(k) {
                            pr[k] = v.clone();
                        }
                    }
                    pr["draft"] = json!(is_wip(&pr["title"]));
                    (201, Some(pr.clone()))
                }
                None => message(404, "The target couldn't be found."),
            },
            ("POST", ["pulls", n, "merge"]) => self.merge_request(number(n), &body),
            ("GET", ["labels"]) => page(self.labels.clone()),
            ("POST", ["issues", n, "labels"]) => {
                let labels = match self.labels_by_id(&body["labels"]) {
                    Ok(labels) => labels,
                    Err(e) => return e,
                };
                match self.pr_mut(number(n)) {
                    Some(pr) => {
                        let mut now = pr["labels"].as_array().cloned().unwrap_or_default();
                        for l in labels {
                            if !now.iter().any(|x| x["id"] == l["id"]) {
                                now.push(l);
                            }
                        }
                        pr["labels"] = json!(now);
                        (200, Some(json!(now)))
                    }
                    None => message(404, "The target couldn't be found."),
                }
            }
            ("POST", ["statuses", sha]) => {
                let state = body["state"].as_str().unwrap_or("");
                if !["pending", "success", "error", "failure", "warning"].contains(&state) {
                    return message(422, &format!("invalid state {state:?}"));
                }
                let status = json!({
                    "state": state, "context": body["context"],
                    "description": body["description"], "target_url": body["target_url"],
                });
                self.statuses.push((sha.to_string(), status.clone()));
                (201, Some(status))
            }
            _ => message(404, "Not Found"),
        }
    }

    fn bare(&self, owner: &str, repo: &str) -> PathBuf {
        self.root.join(owner).join(format!("{repo}.git"))
    }

    /// The labels with these ids; an unknown id is Gitea's 422.
    fn labels_by_id(&self, ids: &Value) -> Result<Vec<Value>, (u16, Option<Value>)> {
        ids.as_array()
            .into_iter()
            .flatten()
            .map(|id| {
                self.labels
                    .iter()
                    .find(|l| l["id"] == *id)
                    .cloned()
                    .ok_or_else(|| message(422, &format!("label does not exist [id: {id}]")))
            })
            .collect()
    }

    fn open(&mut self, owner: &str, repo: &str, body: Value) -> (u16, Option<Value>) {
        let (head, base) = (
            body["head"].as_str().unwrap_or(""),
            body["base"].as_str().unwrap_or(""),
        );
        let bare = self.bare(owner, repo);
        let Some(head_sha) = GIT.run(
            &bare,
            &["rev-parse", "--verify", &format!("refs/heads/{head}")],
        ) else {
            return message(404, "The target couldn't be found.");
        };
        if let Some(p) = self
            .prs
            .iter()
            .find(|p| p["state"] == "open" && p["head"]["ref"] == head && p["base"]["ref"] == base)
        {
            return message(
                409,
                &format!(
                    "pull request already exists for these targets [id: {0}, issue_id: {0}, \
                     head_repo_id: 1, base_repo_id: 1, head_branch: {head}, base_branch: {base}]",
                    p["number"]
                ),
            );
        }
        let labels = match self.labels_by_id(&body["labels"]) {
            Ok(labels) => labels,
            Err(e) => return e,
        };
        let number = self.prs.len() as u64 + 1;
        let pr = json!({
            "id": number + 100, "number": number, "state": "open", "title": body["title"],
            "body": body["body"], "draft": is_wip(&body["title"]), "merged": false,
            "merged_at": null, "merge_commit_sha": null, "mergeable": true, "labels": labels,
            "html_url": format!("{}/{owner}/{repo}/pulls/{number}", self.base_url),
            "head": {"ref": head, "sha": head_sha, "label": head},
            "base": {"ref": base, "label": base},
        });
        self.prs.push(pr.clone());
        (201, Some(pr))
    }

    fn pr_mut(&mut self, number: u64) -> Option<&mut Value> {
        self.prs.iter_mut().find(|p| p["number"] == number)
    }

    /// `POST …/merge`: 200 with no body when merged; 201 when scheduled to merge once the
    /// checks succeed; 405 when not mergeable; 409 when the head moved or already scheduled.
    fn merge_request(&mut self, number: u64, body: &Value) -> (u16, Option<Value>) {
        let method = body["Do"].as_str().unwrap_or("").to_string();
        if !["merge", "rebase", "squash"].contains(&method.as_str()) {
            return message(422, &format!("unsupported merge style {method:?}"));
        }
        let Some(pr) = self.pr_mut(number).cloned() else {
            return message(404, "The target couldn't be found.");
        };
        if is_wip(&pr["title"]) {
            return message(
                405,
                "The pull request is a work in progress and cannot be merged",
            );
        }
        if self.checks_pending {
            if body["merge_when_checks_succeed"] != true {
                return message(405, "Not all required status checks successful");
            }
            if self.scheduled.iter().any(|(n, _)| *n == number) {
                return message(
                    409,
                    "pull request is already scheduled to auto merge when checks succeed",
                );
            }
            self.scheduled.push((number, method));
            return (201, None);
        }
        let sha = body["head_commit_id"].as_str().map(str::to_string);
        self.merge(number, sha, &method)
    }

    /// Merges with git into the base branch: a merge commit, a squash, or the head's commit
    /// rebased (one commit on the base, with its message).
    fn merge(&mut self, number: u64, sha: Option<String>, method: &str) -> (u16, Option<Value>) {
        let Some(pr) = self.pr_mut(number).cloned() else {
            return message(404, "The target couldn't be found.");
        };
        if pr["state"] != "open" {
            return message(405, "The pull request is closed and cannot be merged");
        }
        let (owner, repo) = pr["html_url"]
            .as_str()
            .and_then(|u| u.strip_prefix(&format!("{}/", self.base_url)))
            .and_then(|rest| {
                let mut parts = rest.split('/');
                Some((parts.next()?.to_string(), parts.next()?.to_string()))
            })
            .expect("repository of the pull request");
        let bare = self.bare(&owner, &repo);
        let (head, base) = (
            pr["head"]["ref"].as_str().unwrap_or(""),
            pr["base"]["ref"].as_str().unwrap_or(""),
        );
        let head_sha = GIT.branch(&bare, head);
        if sha.is_some_and(|s| s != head_sha) {
            return message(409, "head out of date");
        }
        let base_sha = GIT.branch(&bare, base);
        let Some(tree) = GIT.merge_tree(&bare, &base_sha, &head_sha) else {
            return message(405, "Please try again later: merge conflict");
        };
        let title = pr["title"].as_str().unwrap_or_default();
        let message_text = match method {
            "merge" => format!("Merge pull request '{title}' (#{number}) from {head} into {base}"),
            "squash" => format!("{title} (#{number})"),
            _ => GIT
                .run(&bare, &["log", "-1", "--format=%B", &head_sha])
                .unwrap_or_default(),
        };
        let parents: &[&str] = match method {
            "merge" => &[&base_sha, &head_sha],
            _ => &[&base_sha],
        };
        let commit = GIT.commit(&bare, &tree, parents, &message_text);
        GIT.advance(&bare, base, &commit, &base_sha);
        let pr = self.pr_mut(number).expect("pull request");
        pr["state"] = json!("closed");
        pr["merged"] = json!(true);
        pr["merged_at"] = json!("2026-11-25T00:00:00Z");
        pr["merge_commit_sha"] = json!(commit);
        (200, None)
    }
}

/// Whether a title has one of Gitea's default work-in-progress prefixes.
fn is_wip(title: &Value) -> bool {
    let title = title.as_str().unwrap_or_default().to_ascii_lowercase();
    title.starts_with("wip:") || title.starts_with("[wip]")
}
