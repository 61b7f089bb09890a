//! A stateful fake Bitbucket Data Center under a context path (`/bitbucket`): REST API 1.0 at
//! `/bitbucket/rest/api/latest` (pull requests with their `version`, merging with merge
//! strategies and Bitbucket's own auto-merge, the auto-merge setting, build statuses, the
//! server version), answering Bitbucket's JSON and its `errors` array, beside the real git
//! smart-HTTP server (tests/support/git_server.rs) serving `/bitbucket/scm/PROJECT/slug.git`.
//! Branches are pushed with git for real, and a merge really moves the target branch (a merge
//! commit, or one squashed commit). Every request is checked against the operations in
//! tests/support/bitbucket_api.rs and needs `X-Atlassian-Token: no-check` to write; a bad one
//! is answered 400 and recorded, and [`FakeBitbucket::assert_valid`] fails the test.
//!
//! Does not model: reviewers, approvals and merge checks other than one veto switch (which also
//! stands for builds), the auto-merge answer of a real server (assumed: the pull request,
//! still open, when checks are pending), pagination, forks, conflicts, branch permissions,
//! personal projects, rate-limit headers other than `Retry-After`, and per-repository tokens
//! (one token; [`FakeBitbucket::restrict_token`] takes its write permissions away).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use axum::{body::Body, http::header, response::Response};
use serde_json::{Value, json};

use super::{
    bitbucket_api,
    fake_forge::{self, ApiRequest, ForgeApi, ForgeGit, Front, Fronted},
    git_server::GitServer,
};

mod model;

/// The web context Bitbucket is served under, as many installations are.
const CONTEXT: &str = "/bitbucket";

const GIT: ForgeGit = ForgeGit {
    name: "Bitbucket",
    email: "noreply@bitbucket.example.com",
};

struct Fake {
    root: PathBuf,
    base_url: String,
    token: String,
    front: Front,
    version: String,
    auto_merge_enabled: bool,
    prs: Vec<Value>,
    builds: Vec<(String, Value)>,
    veto: Option<String>,
    /// The next update meets a pull request someone edited meanwhile.
    race_update: bool,
    /// Pull requests Bitbucket merges by itself once nothing vetoes: (id, strategy).
    auto_merge: Vec<(u64, String)>,
}

/// The fake Bitbucket Data Center and its git server.
pub(crate) struct FakeBitbucket {
    pub git: GitServer,
    fake: Arc<Mutex<Fake>>,
}

fn errors(status: u16, message: &str, exception: &str) -> (u16, Value) {
    let exception = format!("com.atlassian.bitbucket.{exception}");
    (
        status,
        json!({"errors": [{"context": null, "message": message, "exceptionName": exception}]}),
    )
}

impl FakeBitbucket {
    /// Serves the bare repositories under `root` with git (basic auth `user`/`token`) and the
    /// API (bearer `token`), as Bitbucket Data Center 9.4 with auto-merge enabled.
    pub(crate) async fn start(root: &Path, user: &str, token: &str) -> FakeBitbucket {
        let fake = Arc::new(Mutex::new(Fake {
            root: root.join(CONTEXT.trim_start_matches('/')).join("scm"),
            base_url: String::new(),
            token: token.to_string(),
            version: "9.4.2".into(),
            front: Front::default(),
            auto_merge_enabled: true,
            prs: Vec::new(),
            builds: Vec::new(),
            veto: None,
            race_update: false,
            auto_merge: Vec::new(),
        }));
        let git = fake_forge::start(&fake, root, user, token, None).await;
        fake.lock().expect("fake").base_url = format!("{}{CONTEXT}", git.base_url());
        FakeBitbucket { git, fake }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.fake.lock().expect("fake bitbucket")
    }

    /// Where the bare repository of `project`/`slug` lives under the served root.
    pub(crate) fn bare_path(root: &Path, project: &str, slug: &str) -> PathBuf {
        root.join(CONTEXT.trim_start_matches('/'))
            .join("scm")
            .join(project.to_ascii_lowercase())
            .join(format!("{slug}.git"))
    }

    /// The clone URL, as Bitbucket shows it (project key in lower case).
    pub(crate) fn repo_url(&self, project: &str, slug: &str) -> String {
        let path = format!("{CONTEXT}/scm/{}/{slug}", project.to_ascii_lowercase());
        self.git.url(path.trim_start_matches('/'))
    }

    /// Pretends to be another Bitbucket version (drafts since 8.18, auto-merge since 8.15).
    pub(crate) fn set_version(&self, version: &str) {
        self.state().version = version.to_string();
    }

    /// The repository's auto-merge setting.
    pub(crate) fn set_auto_merge_enabled(&self, enabled: bool) {
        self.state().auto_merge_enabled = enabled;
    }

    /// A merge check vetoes merges with `reason`; `None` lifts it, and Bitbucket then merges
    /// the pull requests whose auto-merge was requested.
    pub(crate) fn set_veto(&self, reason: Option<&str>) {
        let mut s = self.state();
        s.veto = reason.map(str::to_string);
        if s.veto.is_none() {
            for (id, strategy) in std::mem::take(&mut s.auto_merge) {
                let (status, body) = s.merge(id, &strategy);
                assert_eq!(status, 200, "auto-merge of #{id}: {body}");
            }
        }
    }

    /// Someone edits the pull request between phasegate's next read and its write: that
    /// write carries a stale version.
    pub(crate) fn race_next_update(&self) {
        self.state().race_update = true;
    }

    /// The pull requests, as Bitbucket answers them.
    pub(crate) fn pull_requests(&self) -> Vec<Value> {
        let s = self.state();
        s.prs.iter().map(|p| s.fresh(p)).collect()
    }

    /// The build statuses posted for `sha`, oldest first.
    pub(crate) fn builds(&self, sha: &str) -> Vec<Value> {
        let s = self.state();
        s.builds
            .iter()
            .filter(|(on, _)| on == sha)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A reviewer merges pull request `id` (a merge commit).
    pub(crate) fn merge(&self, id: u64) {
        let (status, body) = self.state().merge(id, "no-ff");
        assert_eq!(status, 200, "merge #{id}: {body}");
    }

    /// A reviewer declines pull request `id`.
    pub(crate) fn decline(&self, id: u64) {
        let mut s = self.state();
        let pr = s.pr_mut(id).expect("pull request");
        pr["state"] = json!("DECLINED");
        pr["open"] = json!(false);
        pr["closed"] = json!(true);
    }
}

fn answer(status: u16, body: &Value) -> Response {
    let body = match status {
        204 => Body::empty(),
        _ => Body::from(body.to_string()),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json;charset=UTF-8")
        .body(body)
        .expect("response")
}

impl Fronted for FakeBitbucket {
    const API_DESCRIPTION: &'static str = "Bitbucket Data Center";
    fn with_front<T>(&self, f: impl FnOnce(&mut Front) -> T) -> T {
        f(&mut self.state().front)
    }
}

impl ForgeApi for Fake {
    /// The REST API 1.0 under [`CONTEXT`].
    const PREFIX: &'static str = "/bitbucket/rest/api/latest";

    fn front(&mut self) -> &mut Front {
        &mut self.front
    }

    /// The operation's declaration, and the XSRF header every write needs.
    fn check(r: &ApiRequest) -> Result<(), String> {
        let (method, path) = (r.method.as_str(), r.path.as_str());
        bitbucket_api::check(method, path, &r.query, r.body.as_ref())?;
        if method != "GET" && r.header("x-atlassian-token") != Some("no-check") {
            return Err(format!(
                "{method} {path}: XSRF check failed (no X-Atlassian-Token)"
            ));
        }
        Ok(())
    }

    fn invalid(_: &ApiRequest, violation: &str) -> Response {
        let (status, body) = errors(400, violation, "rest.BadRequestException");
        answer(status, &body)
    }

    fn authenticated(&self, r: &ApiRequest) -> bool {
        let token = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "));
        token == Some(self.token.as_str())
    }

    fn unauthorized() -> Response {
        let (status, body) = errors(
            401,
            "Authentication failed. Please check your credentials and try again.",
            "auth.IncorrectPasswordAuthenticationException",
        );
        answer(status, &body)
    }

    fn failure(status: u16) -> Response {
        let (status, body) = errors(status, "injected failure", "ServiceException");
        answer(status, &body)
    }

    fn forbidden() -> Response {
        let (status, body) = errors(
            401,
            "You are not permitted to access this resource",
            "AuthorisationException",
        );
        answer(status, &body)
    }

    fn route(&mut self, r: ApiRequest) -> Response {
        let body = r.body.unwrap_or(Value::Null);
        let (status, body) = self.respond(&r.method, &r.path, &r.query, body);
        answer(status, &body)
    }
}
