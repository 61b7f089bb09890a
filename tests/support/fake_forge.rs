//! The HTTP front the fake forges share: each reads a request the same way, records it, checks
//! it against its forge's API description, checks its credentials, answers an injected failure
//! and refuses writes with a restricted token, in that order, before its own routes; and each
//! commits in its bare repositories with git as its forge does. What differs per forge (the
//! description, the auth scheme, the error JSON, the routes) is a [`ForgeApi`].

use std::{
    collections::VecDeque,
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Router,
    extract::{Request, State},
    http::HeaderMap,
    response::Response,
    routing::any,
};
use serde_json::{Value, json};

use super::git_server::GitServer;

/// One request phasegate sent.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: String,
    /// Without the API prefix and the query.
    pub path: String,
    pub body: Option<Value>,
    pub at: Instant,
}

/// One API request, read once for the front and the forge's routes.
pub(crate) struct ApiRequest {
    pub method: String,
    /// The raw path (percent-encoding kept) without the API prefix.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The JSON body; one that is not JSON reads as `{"unparsable": true}`.
    pub body: Option<Value>,
    headers: HeaderMap,
}

impl ApiRequest {
    /// A header's value, if it is text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What every fake forge keeps for its front: the requests, the violations of the API
/// description, the canned failures and the token's restriction.
#[derive(Default)]
pub(crate) struct Front {
    pub requests: Vec<Recorded>,
    pub violations: Vec<String>,
    /// The token may read (and push with git) but not write through the API.
    pub restricted: bool,
    /// Canned answers for the next requests: (status, headers).
    failures: VecDeque<(u16, Vec<(&'static str, String)>)>,
    /// The next request with this method and path end is answered 200 with this many bytes
    /// of JSON whitespace.
    huge: Option<(&'static str, &'static str, usize)>,
}

impl Front {
    /// The next `times` requests are answered `status` with `headers`.
    pub(crate) fn fail_next(
        &mut self,
        times: usize,
        status: u16,
        headers: &[(&'static str, &str)],
    ) {
        let headers: Vec<_> = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        self.failures
            .extend(std::iter::repeat_n((status, headers), times));
    }

    /// The next `method` request to a path ending in `path_end` is answered `200` with a body
    /// of `bytes` spaces (JSON whitespace), streamed: the fake never holds it.
    // Used by the `isolated` binary only (tests/resources.rs).
    #[allow(dead_code)]
    pub(crate) fn answer_huge(
        &mut self,
        method: &'static str,
        path_end: &'static str,
        bytes: usize,
    ) {
        self.huge = Some((method, path_end, bytes));
    }

    /// Fails the test if any request broke the API description (`whose`: what refuses them).
    pub(crate) fn assert_valid(&self, whose: &str) {
        assert!(
            self.violations.is_empty(),
            "requests that {whose} refuses:\n{}",
            self.violations.join("\n")
        );
    }
}

/// A fake forge's handle, for the tests: the front's controls and records.
pub(crate) trait Fronted {
    /// What refuses the requests a test's client should not have made (for messages).
    const API_DESCRIPTION: &'static str;

    /// Runs `f` on the front, under the fake's lock.
    fn with_front<T>(&self, f: impl FnOnce(&mut Front) -> T) -> T;

    /// The token keeps git access (and may read the API) but loses the API's write
    /// permissions: API writes get the forge's 403.
    fn restrict_token(&self, restricted: bool) {
        self.with_front(|front| front.restricted = restricted);
    }

    /// The next `times` requests are answered `status` with `headers` (an outage, a limit).
    fn fail_next(&self, times: usize, status: u16, headers: &[(&'static str, &str)]) {
        self.with_front(|front| front.fail_next(times, status, headers));
    }

    /// Every request so far.
    fn requests(&self) -> Vec<Recorded> {
        self.with_front(|front| front.requests.clone())
    }

    /// Fails the test if any request did not match the forge's API description.
    fn assert_valid(&self) {
        self.with_front(|front| front.assert_valid(Self::API_DESCRIPTION));
    }
}

/// A fake forge's API behind the shared front.
pub(crate) trait ForgeApi: Send + 'static {
    /// Where the API is served, e.g. `/api/v3`.
    const PREFIX: &'static str;

    fn front(&mut self) -> &mut Front;

    /// Checks the request against the forge's API description (run off the async threads: a
    /// description loads once and slowly); the error is recorded as a violation.
    fn check(request: &ApiRequest) -> Result<(), String>;

    /// The forge's answer to a request its description refuses.
    fn invalid(request: &ApiRequest, violation: &str) -> Response;

    /// An answer before credentials are checked (a route with its own authentication).
    fn before_auth(&mut self, _request: &ApiRequest) -> Option<Response> {
        None
    }

    /// Whether the forge accepts the request's credentials.
    fn authenticated(&self, request: &ApiRequest) -> bool;

    /// The forge's answer to refused credentials.
    fn unauthorized() -> Response;

    /// The forge's error answer with `status` (for injected failures).
    fn failure(status: u16) -> Response;

    /// The forge's answer to a write with a restricted token.
    fn forbidden() -> Response;

    /// The forge's own routes.
    fn route(&mut self, request: ApiRequest) -> Response;
}

/// Starts the git server on `root` with `fake`'s API beside it; over https when `ca_dir` holds
/// the certificate of `support::internal_ca`.
pub(crate) async fn start<F: ForgeApi>(
    fake: &Arc<Mutex<F>>,
    root: &Path,
    user: &str,
    token: &str,
    ca_dir: Option<&Path>,
) -> GitServer {
    let api = Router::new()
        .route(&format!("{}/{{*rest}}", F::PREFIX), any(handle::<F>))
        .with_state(fake.clone());
    match ca_dir {
        Some(dir) => GitServer::start_https_with_api(root, user, token, api, dir).await,
        None => GitServer::start_with_api(root, user, token, Some(api)).await,
    }
}

async fn read(request: Request, prefix: &str) -> ApiRequest {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let body = (!bytes.is_empty())
        .then(|| serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"unparsable": true})));
    let query = url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    ApiRequest {
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path()
            .strip_prefix(prefix)
            .unwrap_or("")
            .to_string(),
        query,
        body,
        headers: parts.headers,
    }
}

async fn handle<F: ForgeApi>(State(fake): State<Arc<Mutex<F>>>, request: Request) -> Response {
    let request = read(request, F::PREFIX).await;
    let (request, valid) = tokio::task::spawn_blocking(move || {
        let valid = F::check(&request);
        (request, valid)
    })
    .await
    .expect("validation task");
    let mut s = fake.lock().expect("fake forge");
    s.front().requests.push(Recorded {
        method: request.method.clone(),
        path: request.path.clone(),
        body: request.body.clone(),
        at: Instant::now(),
    });
    if let Err(e) = valid {
        let answer = F::invalid(&request, &e);
        s.front().violations.push(e);
        return answer;
    }
    if let Some(answer) = s.before_auth(&request) {
        return answer;
    }
    if !s.authenticated(&request) {
        return F::unauthorized();
    }
    if let Some((method, end, bytes)) = s.front().huge
        && request.method == method
        && request.path.ends_with(end)
    {
        s.front().huge = None;
        return huge(bytes);
    }
    if let Some((status, headers)) = s.front().failures.pop_front() {
        let mut r = F::failure(status);
        for (k, v) in headers {
            r.headers_mut().insert(k, v.parse().expect("header value"));
        }
        return r;
    }
    if s.front().restricted && request.method != "GET" {
        return F::forbidden();
    }
    s.route(request)
}

/// A `200` answer of `bytes` spaces, streamed in 64 KiB chunks.
fn huge(bytes: usize) -> Response {
    static SPACES: [u8; 64 * 1024] = [b' '; 64 * 1024];
    let chunks = (0..bytes.div_ceil(SPACES.len()))
        .map(|_| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(&SPACES)));
    Response::new(axum::body::Body::from_stream(futures_util::stream::iter(
        chunks,
    )))
}

/// A forge's git identity: it commits in its bare repositories as the forge does.
pub(crate) struct ForgeGit {
    pub name: &'static str,
    pub email: &'static str,
}

impl ForgeGit {
    /// Runs git on `bare`: its trimmed output, or `None` when git fails.
    pub(crate) fn run(&self, bare: &Path, args: &[&str]) -> Option<String> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(bare)
            .args(args)
            .env("GIT_AUTHOR_NAME", self.name)
            .env("GIT_AUTHOR_EMAIL", self.email)
            .env("GIT_COMMITTER_NAME", self.name)
            .env("GIT_COMMITTER_EMAIL", self.email)
            .output()
            .expect("git");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The commit branch `name` points at ("" when there is none).
    pub(crate) fn branch(&self, bare: &Path, name: &str) -> String {
        self.run(bare, &["rev-parse", &format!("refs/heads/{name}")])
            .unwrap_or_default()
    }

    /// The tree merging `head` into `base`, or `None` on a conflict.
    pub(crate) fn merge_tree(&self, bare: &Path, base: &str, head: &str) -> Option<String> {
        let out = self.run(bare, &["merge-tree", "--write-tree", base, head])?;
        Some(out.lines().next().unwrap_or_default().to_string())
    }

    /// Commits `tree` on `parents` with `message`.
    pub(crate) fn commit(
        &self,
        bare: &Path,
        tree: &str,
        parents: &[&str],
        message: &str,
    ) -> String {
        let mut args = vec!["commit-tree", tree];
        for parent in parents {
            args.extend(["-p", parent]);
        }
        args.extend(["-m", message]);
        self.run(bare, &args).expect("commit-tree")
    }

    /// Moves branch `name` from `old` to `new`.
    pub(crate) fn advance(&self, bare: &Path, name: &str, new: &str, old: &str) {
        self.run(
            bare,
            &["update-ref", &format!("refs/heads/{name}"), new, old],
        )
        .expect("update-ref");
    }
}
