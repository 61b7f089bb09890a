//! A stateful fake GitHub Enterprise Server: the REST paths and JSON of pull requests, their
//! labels and merging, and commit statuses under `/api/v3`, beside the real git smart-HTTP
//! server (tests/support/git_server.rs) on the same host, as GitHub serves both. Pull request
//! branches are real branches pushed with git, and a merge really moves the base branch (a
//! merge or squash commit made with git). Every request is checked against GitHub's official
//! OpenAPI description (tests/support/openapi.rs): one that does not match is answered 422 and
//! recorded, and [`FakeGitHub::assert_valid`] fails the test.
//!
//! A GitHub App can be installed ([`FakeGitHub::install_app`], tests/support/github_app.rs):
//! its JWT is checked and exchanged for installation tokens that the API and git accept.
//!
//! Does not model: reviews and required checks (one "mergeable" switch stands for them),
//! GraphQL (GitHub's own auto-merge), forks, rebase merges (done as a squash), pagination,
//! conditional requests, label existence, check runs, per-repository personal tokens
//! (one token; [`FakeGitHub::restrict_token`] takes its API write permissions away).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use axum::{body::Body, http::header, response::Response};
use serde_json::{Value, json};

use super::{
    fake_forge::{self, ApiRequest, ForgeApi, ForgeGit, Front, Fronted},
    git_server::GitServer,
    github_app::{AppAuthority, AppKey},
    openapi,
};

const GIT: ForgeGit = ForgeGit {
    name: "GitHub",
    email: "noreply@github.com",
};

#[derive(Default)]
struct Fake {
    root: PathBuf,
    base_url: String,
    token: String,
    front: Front,
    prs: Vec<Value>,
    statuses: Vec<(String, Value)>,
    unmergeable: Option<String>,
    app: Option<AppAuthority>,
}

/// The fake GitHub and its git server.
pub(crate) struct FakeGitHub {
    pub git: GitServer,
    fake: Arc<Mutex<Fake>>,
}

impl FakeGitHub {
    /// Serves the bare repositories under `root` with git (basic auth `user`/`token`) and the
    /// API (bearer `token`).
    pub(crate) async fn start(root: &Path, user: &str, token: &str) -> FakeGitHub {
        let fake = Arc::new(Mutex::new(Fake {
            root: root.to_path_buf(),
            token: token.to_string(),
            ..Fake::default()
        }));
        let git = fake_forge::start(&fake, root, user, token, None).await;
        fake.lock().expect("fake").base_url = git.base_url();
        FakeGitHub { git, fake }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.fake.lock().expect("fake github")
    }

    /// `http://HOST/org/<name>.git`: a repository this fake hosts (bare at `root/org/<name>.git`).
    pub(crate) fn repo_url(&self, name: &str) -> String {
        self.git.url(&format!("org/{name}"))
    }

    /// The API root, as GitHub Enterprise Server has it.
    pub(crate) fn api_url(&self) -> String {
        format!("{}{}", self.git.base_url(), Fake::PREFIX)
    }

    /// Installs GitHub App `app_id` (public key of `key`) as installation `installation_id` on
    /// the `org` account: its installation tokens then work for the API and for git.
    pub(crate) fn install_app(&self, app_id: &str, installation_id: u64, key: &AppKey) {
        self.state().app = Some(AppAuthority::new(app_id, installation_id, key));
        let fake = self.fake.clone();
        self.git.also_accept(move |authorization| {
            let decoded = authorization
                .strip_prefix("Basic ")
                .and_then(|b| {
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok()
                })
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let s = fake.lock().expect("fake github");
            match (decoded.split_once(':'), &s.app) {
                (Some(("x-access-token", token)), Some(app)) => app.accepts(token, None),
                _ => false,
            }
        });
    }

    /// The installed App's authority: the JWTs it accepted and the tokens it issued.
    pub(crate) fn app<T>(&self, f: impl FnOnce(&mut AppAuthority) -> T) -> T {
        f(self.state().app.as_mut().expect("an App is installed"))
    }

    /// Refuses merges with `reason` (pending checks or reviews); `None` allows them.
    pub(crate) fn set_unmergeable(&self, reason: Option<&str>) {
        self.state().unmergeable = reason.map(str::to_string);
    }

    /// The pull requests, as GitHub answers them.
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
        let mut s = self.state();
        let (status, body) = s.merge(number, None, "merge");
        assert_eq!(status, 200, "merge #{number}: {body}");
    }

    /// A reviewer closes pull request `number` without merging it.
    pub(crate) fn close(&self, number: u64) {
        let mut s = self.state();
        let pr = s.pr_mut(number).expect("pull request");
        pr["state"] = json!("closed");
    }

    /// Pull request `number`'s `html_url` becomes `url` (a forge answering an odd or hostile
    /// link: whoever shows it must escape it).
    pub(crate) fn set_html_url(&self, number: u64, url: &str) {
        let mut s = self.state();
        let pr = s.pr_mut(number).expect("pull request");
        pr["html_url"] = json!(url);
    }
}

fn answer(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header("x-ratelimit-remaining", "4999")
        .body(Body::from(body.to_string()))
        .expect("response")
}

impl Fronted for FakeGitHub {
    const API_DESCRIPTION: &'static str = "GitHub's API description";
    fn with_front<T>(&self, f: impl FnOnce(&mut Front) -> T) -> T {
        f(&mut self.state().front)
    }
}

impl ForgeApi for Fake {
    const PREFIX: &'static str = "/api/v3";

    fn front(&mut self) -> &mut Front {
        &mut self.front
    }

    fn check(r: &ApiRequest) -> Result<(), String> {
        openapi::check(
            openapi::github(),
            &r.method,
            &r.path,
            &r.query,
            r.body.as_ref(),
        )
    }

    fn invalid(_: &ApiRequest, violation: &str) -> Response {
        answer(422, json!({"message": violation}))
    }

    /// The App's installation token exchange, authenticated with the App's JWT.
    fn before_auth(&mut self, r: &ApiRequest) -> Option<Response> {
        let segments: Vec<&str> = r.path.split('/').collect();
        let ("POST", ["", "app", "installations", installation, "access_tokens"]) =
            (r.method.as_str(), segments.as_slice())
        else {
            return None;
        };
        let root = self.root.join("org");
        let exists = |name: &str| root.join(format!("{name}.git")).exists();
        let auth = r.header("authorization").unwrap_or("");
        let body = r.body.clone().unwrap_or(Value::Null);
        let (status, body) = match self.app.as_mut() {
            Some(app) => app.exchange(auth, installation, &body, exists),
            None => (404, json!({"message": "Not Found"})),
        };
        Some(answer(status, body))
    }

    fn authenticated(&self, r: &ApiRequest) -> bool {
        let auth = r.header("authorization").unwrap_or("");
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("token "));
        let repo = r.path.split('/').nth(3);
        let app_token =
            token.is_some_and(|t| self.app.as_ref().is_some_and(|a| a.accepts(t, repo)));
        token == Some(self.token.as_str()) || app_token
    }

    fn unauthorized() -> Response {
        answer(401, json!({"message": "Bad credentials"}))
    }

    fn failure(status: u16) -> Response {
        answer(status, json!({"message": "injected failure"}))
    }

    fn forbidden() -> Response {
        answer(
            403,
            json!({"message": "Resource not accessible by personal access token"}),
        )
    }

    fn route(&mut self, r: ApiRequest) -> Response {
        let (status, body) =
            self.respond(&r.method, &r.path, &r.query, r.body.unwrap_or(Value::Null));
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
    ) -> (u16, Value) {
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let [_, owner, repo, rest @ ..] = seg.as_slice() else {
            return (404, json!({"message": "Not Found"}));
        };
        if !self.bare(owner, repo).exists() {
            return (404, json!({"message": "Not Found"}));
        }
        let number = |s: &str| s.parse::<u64>().unwrap_or(0);
        match (method, rest) {
            ("GET", ["pulls"]) => {
                let param = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
                let head = param("head").map(|h| h.split_once(':').map_or(h, |(_, b)| b));
                let state = param("state").unwrap_or("open");
                let list: Vec<Value> = self
                    .prs
                    .iter()
                    .filter(|p| state == "all" || p["state"] == state)
                    .filter(|p| head.is_none_or(|h| p["head"]["ref"] == h))
                    .filter(|p| param("base").is_none_or(|b| p["base"]["ref"] == b))
                    .cloned()
                    .collect();
                (200, json!(list))
            }
            ("POST", ["pulls"]) => self.open(owner, repo, body),
            ("GET", ["pulls", n]) => match self.pr_mut(number(n)) {
                Some(pr) => (200, pr.clone()),
                None => (404, json!({"message": "Not Found"})),
            },
            ("PATCH", ["pulls", n]) => match self.pr_mut(number(n)) {
                Some(pr) => {
                    for k in ["title", "body"] {
                        if let Some(v) = body.get(k) {
                            pr[k] = v.clone();
                        }
                    }
                    (200, pr.clone())
                }
                None => (404, json!({"message": "Not Found"})),
            },
            ("PUT", ["pulls", n, "merge"]) => {
                let sha = body["sha"].as_str().map(str::to_string);
                let method = body["merge_method"].as_str().unwrap_or("merge").to_string();
                self.merge(number(n), sha, &method)
            }
            ("POST", ["issues", n, "labels"]) => match self.pr_mut(number(n)) {
                Some(pr) => {
                    let mut labels = pr["labels"].as_array().cloned().unwrap_or_default();
                    for l in body["labels"].as_array().into_iter().flatten() {
                        if !labels.iter().any(|x| x["name"] == *l) {
                            labels.push(json!({"name": l}));
                        }
                    }
                    pr["labels"] = json!(labels);
                    (200, json!(labels))
                }
                None => (404, json!({"message": "Not Found"})),
            },
            ("POST", ["statuses", sha]) => {
                let status = json!({
                    "state": body["state"], "context": body["context"],
                    "description": body["description"], "target_url": body["target_url"],
                });
                self.statuses.push((sha.to_string(), status.clone()));
                (201, status)
            }
            _ => (404, json!({"message": "Not Found"})),
        }
    }

    fn bare(&self, owner: &str, repo: &str) -> PathBuf {
        self.root.join(owner).join(format!("{repo}.git"))
    }

    fn open(&mut self, owner: &str, repo: &str, body: Value) -> (u16, Value) {
        let (head, base) = (
            body["head"].as_str().unwrap_or(""),
            body["base"].as_str().unwrap_or(""),
        );
        let bare = self.bare(owner, repo);
        let Some(head_sha) = GIT.run(
            &bare,
            &["rev-parse", "--verify", &format!("refs/heads/{head}")],
        ) else {
            return (
                422,
                json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]}),
            );
        };
        if self
            .prs
            .iter()
            .any(|p| p["state"] == "open" && p["head"]["ref"] == head && p["base"]["ref"] == base)
        {
            return (
                422,
                json!({"message": "Validation Failed", "errors": [{"message": format!("A pull request already exists for {owner}:{head}.")}]}),
            );
        }
        let number = self.prs.len() as u64 + 1;
        let pr = json!({
            "number": number, "state": "open", "title": body["title"], "body": body["body"],
            "draft": body["draft"].as_bool().unwrap_or(false), "merged": false,
            "merged_at": null, "merge_commit_sha": null, "mergeable": true, "labels": [],
            "html_url": format!("{}/{owner}/{repo}/pull/{number}", self.base_url),
            "head": {"ref": head, "sha": head_sha}, "base": {"ref": base},
            "repo": format!("{owner}/{repo}"),
        });
        self.prs.push(pr.clone());
        (201, pr)
    }

    fn pr_mut(&mut self, number: u64) -> Option<&mut Value> {
        self.prs.iter_mut().find(|p| p["number"] == number)
    }

    /// Merges with git into the base branch: a merge commit, or a squash (also for rebase).
    fn merge(&mut self, number: u64, sha: Option<String>, method: &str) -> (u16, Value) {
        if let Some(reason) = self.unmergeable.clone() {
            return (405, json!({"message": reason}));
        }
        let Some(pr) = self.pr_mut(number).cloned() else {
            return (404, json!({"message": "Not Found"}));
        };
        if pr["state"] != "open" {
            return (405, json!({"message": "Pull Request is not mergeable"}));
        }
        let (owner, repo) = pr["repo"]
            .as_str()
            .unwrap_or("/")
            .split_once('/')
            .expect("repo");
        let bare = self.bare(owner, repo);
        let (head, base) = (
            pr["head"]["ref"].as_str().unwrap_or(""),
            pr["base"]["ref"].as_str().unwrap_or(""),
        );
        let head_sha = GIT.branch(&bare, head);
        if sha.is_some_and(|s| s != head_sha) {
            return (
                409,
                json!({"message": "Head branch was modified. Review and try the merge again."}),
            );
        }
        let base_sha = GIT.branch(&bare, base);
        let Some(tree) = GIT.merge_tree(&bare, &base_sha, &head_sha) else {
            return (405, json!({"message": "Pull Request is not mergeable"}));
        };
        let title = pr["title"].as_str().unwrap_or_default();
        let message = match method {
            "merge" => format!("Merge pull request #{number} from {owner}/{head}\n\n{title}"),
            _ => format!("{title} (#{number})"),
        };
        let parents: &[&str] = match method {
            "merge" => &[&base_sha, &head_sha],
            _ => &[&base_sha],
        };
        let commit = GIT.commit(&bare, &tree, parents, &message);
        GIT.advance(&bare, base, &commit, &base_sha);
        let pr = self.pr_mut(number).expect("pull request");
        pr["state"] = json!("closed");
        pr["merged"] = json!(true);
        pr["merged_at"] = json!("2026-11-25T00:00:00Z");
        pr["merge_commit_sha"] = json!(commit);
        (
            200,
            json!({"sha": commit, "merged": true, "message": "Pull Request successfully merged"}),
        )
    }
}
