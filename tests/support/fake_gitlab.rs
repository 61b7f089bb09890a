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

mod model;

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
