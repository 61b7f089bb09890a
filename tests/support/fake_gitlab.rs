//! A stateful fake self-managed GitLab: the REST API v4 paths and JSON of merge requests (with
//! labels, `Draft:` titles, merging and GitLab's own auto-merge) and commit statuses under
//! `/api/v4/projects/<URL-encoded path>/…`, beside the real git smart-HTTP server
//! (tests/support/git_server.rs) on the same host, as GitLab serves both. Merge request
//! branches are real branches pushed with git, and a merge really moves the target branch (a
//! merge commit, after a squash commit when asked, made with git). Every request's parameters
//! are checked against GitLab's declarations (tests/support/gitlab_api.rs: GitLab's OpenAPI
//! description is not installable from a package registry); one that does not match is
//! answered 400 and recorded, and [`FakeGitLab::assert_valid`] fails the test.
//!
//! Does not model: approvals, discussions and merge checks other than a running pipeline (one
//! switch, [`FakeGitLab::run_pipeline`], stands for CI), merge trains, fast-forward and
//! semi-linear projects, numeric project ids, pagination, label objects (labels are names),
//! forks, per-project tokens and roles (one token; [`FakeGitLab::restrict_token`] leaves it
//! `read_api`, [`FakeGitLab::forbid_merge`] takes away the right to merge).

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::header,
    response::Response,
    routing::any,
};
use serde_json::{Value, json};

use super::{fake_github::Recorded, git_server::GitServer, gitlab_api};

#[derive(Default)]
struct Fake {
    root: PathBuf,
    base_url: String,
    token: String,
    /// The token has only the `read_api` scope: API writes are refused.
    restricted: bool,
    /// The token's user may not merge into target branches (a Developer on a protected one).
    merge_forbidden: bool,
    /// A pipeline runs on every merge request: merges wait for it (auto-merge) or are refused.
    pipeline_running: bool,
    mrs: Vec<Value>,
    statuses: Vec<(String, Value)>,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    /// Canned answers for the next requests: (status, headers).
    failures: VecDeque<(u16, Vec<(&'static str, String)>)>,
}

/// The fake GitLab and its git server.
pub struct FakeGitLab {
    pub git: GitServer,
    fake: Arc<Mutex<Fake>>,
}

impl FakeGitLab {
    /// Serves the bare repositories under `root` with git (basic auth `user`/`token`) and the
    /// API (`PRIVATE-TOKEN` or bearer `token`).
    pub async fn start(root: &Path, user: &str, token: &str) -> FakeGitLab {
        let fake = Arc::new(Mutex::new(Fake {
            root: root.to_path_buf(),
            token: token.to_string(),
            ..Fake::default()
        }));
        let api = Router::new()
            .route("/api/v4/{*rest}", any(handle))
            .with_state(fake.clone());
        let git = GitServer::start_with_api(root, user, token, Some(api)).await;
        fake.lock().expect("fake").base_url = git.base_url();
        FakeGitLab { git, fake }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.fake.lock().expect("fake gitlab")
    }

    /// `http://HOST/<path>.git`: a project this fake hosts (bare at `root/<path>.git`).
    pub fn repo_url(&self, path: &str) -> String {
        self.git.url(path)
    }

    /// The API root, as self-managed GitLab has it.
    pub fn api_url(&self) -> String {
        format!("{}/api/v4", self.git.base_url())
    }

    /// The token keeps git access but only `read_api`: API writes get GitLab's 403.
    pub fn restrict_token(&self, restricted: bool) {
        self.state().restricted = restricted;
    }

    /// The token's user may not merge: merges get GitLab's 401.
    pub fn forbid_merge(&self, forbidden: bool) {
        self.state().merge_forbidden = forbidden;
    }

    /// The next `times` requests are answered `status` with `headers` (an outage, a limit).
    pub fn fail_next(&self, times: usize, status: u16, headers: &[(&'static str, &str)]) {
        let headers: Vec<_> = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut s = self.state();
        for _ in 0..times {
            s.failures.push_back((status, headers.clone()));
        }
    }

    /// A pipeline starts running on the merge requests: a merge now is refused, an auto-merge
    /// waits for [`FakeGitLab::finish_pipeline`].
    pub fn run_pipeline(&self) {
        self.state().pipeline_running = true;
    }

    /// The pipeline succeeds: GitLab merges the merge requests set to auto-merge.
    pub fn finish_pipeline(&self) {
        let mut s = self.state();
        s.pipeline_running = false;
        let waiting: Vec<u64> = s
            .mrs
            .iter()
            .filter(|m| m["state"] == "opened" && m["merge_when_pipeline_succeeds"] == true)
            .filter_map(|m| m["iid"].as_u64())
            .collect();
        for iid in waiting {
            let (status, body) = s.merge(iid, None, false);
            assert_eq!(status, 200, "auto-merge of !{iid}: {body}");
        }
    }

    /// The merge requests, as GitLab answers them.
    pub fn merge_requests(&self) -> Vec<Value> {
        self.state().mrs.clone()
    }

    /// The statuses set on `sha`, oldest first, as GitLab answers them.
    pub fn statuses(&self, sha: &str) -> Vec<Value> {
        let s = self.state();
        s.statuses
            .iter()
            .filter(|(on, _)| on == sha)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// A reviewer merges merge request `iid` (a merge commit on the target branch).
    pub fn merge(&self, iid: u64) {
        let (status, body) = self.state().merge(iid, None, false);
        assert_eq!(status, 200, "merge !{iid}: {body}");
    }

    /// A reviewer closes merge request `iid` without merging it.
    pub fn close(&self, iid: u64) {
        self.state().mr_mut(iid).expect("merge request")["state"] = json!("closed");
    }

    /// A reviewer marks draft merge request `iid` as ready (GitLab drops the title's prefix).
    pub fn mark_ready(&self, iid: u64) {
        let mut s = self.state();
        let mr = s.mr_mut(iid).expect("merge request");
        let title = mr["title"].as_str().unwrap_or_default();
        mr["title"] = json!(title.strip_prefix("Draft: ").unwrap_or(title));
        mr["draft"] = json!(false);
    }

    /// Fails the test if any request did not match GitLab's parameter declarations.
    pub fn assert_valid(&self) {
        let s = self.state();
        assert!(
            s.violations.is_empty(),
            "requests that GitLab's API declarations refuse:\n{}",
            s.violations.join("\n")
        );
    }
}

fn answer(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("ratelimit-remaining", "1999")
        .body(Body::from(body.to_string()))
        .expect("response")
}

fn message(text: &str) -> Value {
    json!({ "message": text })
}

async fn handle(State(fake): State<Arc<Mutex<Fake>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let body: Option<Value> = (!bytes.is_empty())
        .then(|| serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"unparsable": true})));
    // The raw path: the project id must arrive URL-encoded (`group%2Fname`), as GitLab needs.
    let path = parts.uri.path().strip_prefix("/api/v4").unwrap_or("");
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let method = parts.method.as_str().to_string();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (auth, private) = (header("authorization"), header("private-token"));
    let mut s = fake.lock().expect("fake gitlab");
    s.requests.push(Recorded {
        method: method.clone(),
        path: path.to_string(),
        body: body.clone(),
        at: Instant::now(),
    });
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["projects", id, route @ ..] = seg.as_slice() else {
        return answer(404, message("404 Not Found"));
    };
    let shape: Vec<&str> = route
        .iter()
        .enumerate()
        .map(|(i, r)| if i == 1 { ":id" } else { r })
        .collect();
    if let Err(e) = gitlab_api::check(&method, &shape, &query, body.as_ref()) {
        s.violations.push(format!("{method} {path}: {e}"));
        return answer(400, json!({ "error": e }));
    }
    let token = auth.strip_prefix("Bearer ").unwrap_or(&private);
    if token != s.token {
        return answer(401, message("401 Unauthorized"));
    }
    if let Some((status, headers)) = s.failures.pop_front() {
        let mut r = answer(status, message("injected failure"));
        for (k, v) in headers {
            r.headers_mut().insert(k, v.parse().expect("header value"));
        }
        return r;
    }
    if s.restricted && method != "GET" {
        return answer(
            403,
            json!({"error": "insufficient_scope", "error_description": "The request requires higher privileges than provided by the access token.", "scope": "api"}),
        );
    }
    let project = id.replace("%2F", "/").replace("%2f", "/");
    if project.contains('%') || !s.bare(&project).exists() {
        return answer(404, message("404 Project Not Found"));
    }
    let (status, body) = s.route(
        &method,
        &project,
        route,
        &query,
        body.unwrap_or(Value::Null),
    );
    answer(status, body)
}

impl Fake {
    fn route(
        &mut self,
        method: &str,
        project: &str,
        route: &[&str],
        query: &[(String, String)],
        body: Value,
    ) -> (u16, Value) {
        let iid = |s: &str| s.parse::<u64>().unwrap_or(0);
        let param = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let not_found = (404, message("404 Not found"));
        match (method, route) {
            ("GET", ["merge_requests"]) => {
                let state = param("state").unwrap_or("all");
                let list: Vec<Value> = self
                    .mrs
                    .iter()
                    .filter(|m| m["project"] == project)
                    .filter(|m| state == "all" || m["state"] == state)
                    .filter(|m| param("source_branch").is_none_or(|b| m["source_branch"] == b))
                    .filter(|m| param("target_branch").is_none_or(|b| m["target_branch"] == b))
                    .cloned()
                    .collect();
                (200, json!(list))
            }
            ("POST", ["merge_requests"]) => self.open(project, body),
            ("GET", ["merge_requests", n]) => {
                self.mr_mut(iid(n)).map_or(not_found, |m| (200, m.clone()))
            }
            ("PUT", ["merge_requests", n]) => match self.mr_mut(iid(n)) {
                Some(mr) => {
                    if let Some(title) = body["title"].as_str() {
                        mr["title"] = json!(title);
                        mr["draft"] = json!(title.starts_with("Draft:"));
                    }
                    if let Some(d) = body.get("description") {
                        mr["description"] = d.clone();
                    }
                    let mut labels = mr["labels"].as_array().cloned().unwrap_or_default();
                    for l in labels_of(&body["add_labels"]) {
                        if !labels.contains(&l) {
                            labels.push(l);
                        }
                    }
                    mr["labels"] = json!(labels);
                    (200, mr.clone())
                }
                None => not_found,
            },
            ("PUT", ["merge_requests", n, "merge"]) => {
                if self.merge_forbidden {
                    return (401, message("401 Unauthorized"));
                }
                let sha = body["sha"].as_str().map(str::to_string);
                let auto =
                    body["auto_merge"] == true || body["merge_when_pipeline_succeeds"] == true;
                let squash = body["squash"] == true;
                if let Some(mr) = self.mr_mut(iid(n))
                    && let Some(squash) = body["squash"].as_bool()
                {
                    mr["squash"] = json!(squash);
                }
                match self.pipeline_running {
                    true if auto => match self.mr_mut(iid(n)) {
                        Some(mr) if mr["state"] == "opened" => {
                            mr["merge_when_pipeline_succeeds"] = json!(true);
                            (200, mr.clone())
                        }
                        Some(_) => (405, message("405 Method Not Allowed")),
                        None => not_found,
                    },
                    true => (405, message("405 Method Not Allowed")),
                    false => self.merge(iid(n), sha, squash),
                }
            }
            ("POST", ["statuses", sha]) => self.set_status(project, sha, &body),
            _ => not_found,
        }
    }

    fn bare(&self, project: &str) -> PathBuf {
        self.root.join(format!("{project}.git"))
    }

    fn git(&self, bare: &Path, args: &[&str]) -> Option<String> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(bare)
            .args(args)
            .env("GIT_AUTHOR_NAME", "GitLab")
            .env("GIT_AUTHOR_EMAIL", "gitlab@example.com")
            .env("GIT_COMMITTER_NAME", "GitLab")
            .env("GIT_COMMITTER_EMAIL", "gitlab@example.com")
            .output()
            .expect("git");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn open(&mut self, project: &str, body: Value) -> (u16, Value) {
        let (head, base) = (
            body["source_branch"].as_str().unwrap_or(""),
            body["target_branch"].as_str().unwrap_or(""),
        );
        let bare = self.bare(project);
        let Some(sha) = self.git(
            &bare,
            &["rev-parse", "--verify", &format!("refs/heads/{head}")],
        ) else {
            return (400, message("Invalid source branch"));
        };
        if self.mrs.iter().any(|m| {
            m["project"] == project && m["state"] == "opened" && m["source_branch"] == head
        }) {
            return (
                409,
                json!({"message": ["Another open merge request already exists for this source branch"]}),
            );
        }
        let iid = self.mrs.iter().filter(|m| m["project"] == project).count() as u64 + 1;
        let title = body["title"].as_str().unwrap_or_default();
        let mr = json!({
            "id": self.mrs.len() + 100, "iid": iid, "project": project, "state": "opened",
            "title": title, "description": body["description"], "draft": title.starts_with("Draft:"),
            "source_branch": head, "target_branch": base, "sha": sha,
            "labels": labels_of(&body["labels"]), "squash": body["squash"].as_bool().unwrap_or(false),
            "merge_when_pipeline_succeeds": false, "merge_commit_sha": null,
            "squash_commit_sha": null, "merged_at": null,
            "web_url": format!("{}/{project}/-/merge_requests/{iid}", self.base_url),
        });
        self.mrs.push(mr.clone());
        (201, mr)
    }

    fn mr_mut(&mut self, iid: u64) -> Option<&mut Value> {
        self.mrs.iter_mut().find(|m| m["iid"] == iid)
    }

    /// Merges with git into the target branch: a merge commit, of a squash commit if asked.
    fn merge(&mut self, iid: u64, sha: Option<String>, squash: bool) -> (u16, Value) {
        let Some(mr) = self.mr_mut(iid).cloned() else {
            return (404, message("404 Not found"));
        };
        if mr["state"] != "opened" || mr["draft"] == true {
            return (405, message("405 Method Not Allowed"));
        }
        let bare = self.bare(mr["project"].as_str().unwrap_or_default());
        let (head, base) = (
            mr["source_branch"].as_str().unwrap_or(""),
            mr["target_branch"].as_str().unwrap_or(""),
        );
        let head_sha = self
            .git(&bare, &["rev-parse", &format!("refs/heads/{head}")])
            .unwrap_or_default();
        if sha.is_some_and(|s| s != head_sha) {
            return (409, message("SHA does not match HEAD of source branch"));
        }
        let base_sha = self
            .git(&bare, &["rev-parse", &format!("refs/heads/{base}")])
            .unwrap_or_default();
        let Some(tree) = self.git(&bare, &["merge-tree", "--write-tree", &base_sha, &head_sha])
        else {
            return (422, message("Branch cannot be merged"));
        };
        let tree = tree.lines().next().unwrap_or_default().to_string();
        let title = mr["title"].as_str().unwrap_or_default().to_string();
        let squash = squash || mr["squash"] == true;
        let squashed = squash.then(|| {
            self.git(
                &bare,
                &["commit-tree", &tree, "-p", &base_sha, "-m", &title],
            )
            .expect("squash commit")
        });
        let message = format!(
            "Merge branch '{head}' into '{base}'\n\n{title}\n\nSee merge request {}!{iid}",
            mr["project"].as_str().unwrap_or_default()
        );
        let second = squashed.clone().unwrap_or(head_sha);
        let commit = self
            .git(
                &bare,
                &[
                    "commit-tree",
                    &tree,
                    "-p",
                    &base_sha,
                    "-p",
                    &second,
                    "-m",
                    &message,
                ],
            )
            .expect("merge commit");
        self.git(
            &bare,
            &[
                "update-ref",
                &format!("refs/heads/{base}"),
                &commit,
                &base_sha,
            ],
        )
        .expect("update-ref");
        let mr = self.mr_mut(iid).expect("merge request");
        mr["state"] = json!("merged");
        mr["merged_at"] = json!("2026-11-25T00:00:00Z");
        mr["merge_commit_sha"] = json!(commit);
        mr["squash_commit_sha"] = json!(squashed);
        (200, mr.clone())
    }

    /// As GitLab: a status of one name stays one job while pending or running (setting
    /// `pending` on a pending one is refused); a finished one is followed by a new job. Every
    /// accepted transition is kept, so that tests see pending → success.
    fn set_status(&mut self, project: &str, sha: &str, body: &Value) -> (u16, Value) {
        let bare = self.bare(project);
        if self
            .git(&bare, &["cat-file", "-e", &format!("{sha}^{{commit}}")])
            .is_none()
        {
            return (404, message("404 Commit Not Found"));
        }
        let name = body["name"]
            .as_str()
            .or(body["context"].as_str())
            .unwrap_or("default");
        let state = body["state"].as_str().unwrap_or_default();
        let last = self
            .statuses
            .iter()
            .rev()
            .find(|(on, s)| on == sha && s["name"] == name)
            .map(|(_, s)| s["status"].clone());
        if last.is_some_and(|l| l == state && matches!(state, "pending" | "running")) {
            return (
                400,
                message(&format!(
                    "Cannot transition status via :enqueue from :{state}"
                )),
            );
        }
        let status = json!({
            "sha": sha, "name": name, "status": state, "description": body["description"],
            "target_url": body["target_url"], "ref": "main",
        });
        self.statuses.push((sha.to_string(), status.clone()));
        (201, status)
    }
}

/// Label names from a comma-separated string or an array.
fn labels_of(v: &Value) -> Vec<Value> {
    match v {
        Value::String(s) => s.split(',').map(|l| json!(l.trim())).collect(),
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    }
}
