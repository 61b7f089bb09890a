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
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use axum::{body::Body, http::header, response::Response};
use serde_json::{Value, json};

use super::{
    fake_forge::{self, ApiRequest, ForgeApi, ForgeGit, Front, Fronted},
    git_server::GitServer,
    gitlab_api,
};

mod model;

const GIT: ForgeGit = ForgeGit {
    name: "GitLab",
    email: "gitlab@example.com",
};

#[derive(Default)]
struct Fake {
    root: PathBuf,
    base_url: String,
    token: String,
    front: Front,
    /// The token's user may not merge into target branches (a Developer on a protected one).
    merge_forbidden: bool,
    /// A pipeline runs on every merge request: merges wait for it (auto-merge) or are refused.
    pipeline_running: bool,
    mrs: Vec<Value>,
    statuses: Vec<(String, Value)>,
}

/// The fake GitLab and its git server.
pub(crate) struct FakeGitLab {
    pub git: GitServer,
    fake: Arc<Mutex<Fake>>,
}

impl FakeGitLab {
    /// Serves the bare repositories under `root` with git (basic auth `user`/`token`) and the
    /// API (`PRIVATE-TOKEN` or bearer `token`).
    pub(crate) async fn start(root: &Path, user: &str, token: &str) -> FakeGitLab {
        let fake = Arc::new(Mutex::new(Fake {
            root: root.to_path_buf(),
            token: token.to_string(),
            ..Fake::default()
        }));
        let git = fake_forge::start(&fake, root, user, token, None).await;
        fake.lock().expect("fake").base_url = git.base_url();
        FakeGitLab { git, fake }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.fake.lock().expect("fake gitlab")
    }

    /// `http://HOST/<path>.git`: a project this fake hosts (bare at `root/<path>.git`).
    pub(crate) fn repo_url(&self, path: &str) -> String {
        self.git.url(path)
    }

    /// The API root, as self-managed GitLab has it.
    pub(crate) fn api_url(&self) -> String {
        format!("{}{}", self.git.base_url(), Fake::PREFIX)
    }

    /// The token's user may not merge: merges get GitLab's 401.
    pub(crate) fn forbid_merge(&self, forbidden: bool) {
        self.state().merge_forbidden = forbidden;
    }

    /// A pipeline starts running on the merge requests: a merge now is refused, an auto-merge
    /// waits for [`FakeGitLab::finish_pipeline`].
    pub(crate) fn run_pipeline(&self) {
        self.state().pipeline_running = true;
    }

    /// The pipeline succeeds: GitLab merges the merge requests set to auto-merge.
    pub(crate) fn finish_pipeline(&self) {
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
    pub(crate) fn merge_requests(&self) -> Vec<Value> {
        self.state().mrs.clone()
    }

    /// The statuses set on `sha`, oldest first, as GitLab answers them.
    pub(crate) fn statuses(&self, sha: &str) -> Vec<Value> {
        let s = self.state();
        s.statuses
            .iter()
            .filter(|(on, _)| on == sha)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A reviewer merges merge request `iid` (a merge commit on the target branch).
    pub(crate) fn merge(&self, iid: u64) {
        let (status, body) = self.state().merge(iid, None, false);
        assert_eq!(status, 200, "merge !{iid}: {body}");
    }

    /// A reviewer closes merge request `iid` without merging it.
    pub(crate) fn close(&self, iid: u64) {
        self.state().mr_mut(iid).expect("merge request")["state"] = json!("closed");
    }

    /// A reviewer marks draft merge request `iid` as ready (GitLab drops the title's prefix).
    pub(crate) fn mark_ready(&self, iid: u64) {
        let mut s = self.state();
        let mr = s.mr_mut(iid).expect("merge request");
        let title = mr["title"].as_str().unwrap_or_default();
        mr["title"] = json!(title.strip_prefix("Draft: ").unwrap_or(title));
        mr["draft"] = json!(false);
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

/// The project id (URL-encoded) and the route under it, of a path under `/projects`.
fn project_route(path: &str) -> Option<(&str, Vec<&str>)> {
    let mut segments = path.trim_matches('/').split('/');
    let ("projects", Some(id)) = (segments.next()?, segments.next()) else {
        return None;
    };
    Some((id, segments.collect()))
}

impl Fronted for FakeGitLab {
    const API_DESCRIPTION: &'static str = "GitLab's API declarations";
    fn with_front<T>(&self, f: impl FnOnce(&mut Front) -> T) -> T {
        f(&mut self.state().front)
    }
}

impl ForgeApi for Fake {
    const PREFIX: &'static str = "/api/v4";

    fn front(&mut self) -> &mut Front {
        &mut self.front
    }

    fn check(r: &ApiRequest) -> Result<(), String> {
        let Some((_, route)) = project_route(&r.path) else {
            return Ok(());
        };
        let shape: Vec<&str> = route
            .iter()
            .enumerate()
            .map(|(i, r)| if i == 1 { ":id" } else { r })
            .collect();
        gitlab_api::check(&r.method, &shape, &r.query, r.body.as_ref())
            .map_err(|e| format!("{} {}: {e}", r.method, r.path))
    }

    fn invalid(r: &ApiRequest, violation: &str) -> Response {
        let prefix = format!("{} {}: ", r.method, r.path);
        let e = violation.strip_prefix(&prefix).unwrap_or(violation);
        answer(400, json!({ "error": e }))
    }

    /// Paths other than a project's are not found, whatever the credentials.
    fn before_auth(&mut self, r: &ApiRequest) -> Option<Response> {
        project_route(&r.path)
            .is_none()
            .then(|| answer(404, message("404 Not Found")))
    }

    fn authenticated(&self, r: &ApiRequest) -> bool {
        let private = r.header("private-token").unwrap_or("");
        let token = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or(private);
        token == self.token
    }

    fn unauthorized() -> Response {
        answer(401, message("401 Unauthorized"))
    }

    fn failure(status: u16) -> Response {
        answer(status, message("injected failure"))
    }

    fn forbidden() -> Response {
        answer(
            403,
            json!({"error": "insufficient_scope", "error_description": "The request requires higher privileges than provided by the access token.", "scope": "api"}),
        )
    }

    fn route(&mut self, r: ApiRequest) -> Response {
        let (id, route) = project_route(&r.path).expect("a project's path");
        // The project id must arrive URL-encoded (`group%2Fname`), as GitLab needs.
        let project = id.replace("%2F", "/").replace("%2f", "/");
        if project.contains('%') || !self.bare(&project).exists() {
            return answer(404, message("404 Project Not Found"));
        }
        let body = r.body.clone().unwrap_or(Value::Null);
        let (status, body) = self.respond(&r.method, &project, &route, &r.query, body);
        answer(status, body)
    }
}
