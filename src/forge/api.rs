//! The REST client every forge module uses: JSON in and out, the token as a bearer header
//! (marked sensitive, never in a URL or message), and bounded retries of what forges answer when
//! they are busy (429, 403 with rate-limit headers, 5xx, no connection), honouring `Retry-After`.

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use reqwest::{
    Method, StatusCode,
    header::{AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;
use tracing::{debug, warn};
use url::Url;

use super::{
    ForgeError, ForgeSettings,
    retry::{Class, RetryPolicy, classify},
};
use crate::credentials::Secret;

/// A forge answer that is not a failure phasegate can do nothing about: the caller decides what
/// 404, 405, 409 or 422 mean for its request.
#[derive(Debug)]
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

/// One entry of an error answer's `errors` list: Bitbucket's `{message, exceptionName}`,
/// GitHub's validation details `{message}` or `{field, code}`. Every field is optional, and an
/// error answer is read leniently: what cannot be read must not hide the refusal itself.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Problem {
    pub message: Option<String>,
    pub field: Option<String>,
    pub code: Option<String>,
    /// Bitbucket's Java exception class, which tells conflicts apart.
    pub exception_name: Option<String>,
}

impl Answer {
    /// The forge's own message (`message`, GitLab's `error`, Bitbucket's `errors[].message`),
    /// cut to one short line.
    pub(super) fn message(&self) -> String {
        let text = ["message", "error", "errors"]
            .iter()
            .find_map(|k| self.body.get(k))
            .map(|v| match (v.as_str(), v.as_array()) {
                (Some(s), _) => s.to_string(),
                (None, Some(list)) if list.iter().all(|e| e["message"].is_string()) => list
                    .iter()
                    .filter_map(|e| e["message"].as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                _ => v.to_string(),
            })
            .unwrap_or_default();
        one_line(&text)
    }

    /// The answer's `errors` list; empty when it has none.
    pub(super) fn problems(&self) -> Vec<Problem> {
        match self.body["errors"].as_array() {
            Some(list) => problems(list).collect(),
            None => Vec::new(),
        }
    }

    /// GitHub's validation details (`errors: [{message}|{code, field}]`) in a few words, after
    /// a colon; nothing when there are none.
    fn details(&self) -> String {
        let Some(list) = self.body["errors"].as_array() else {
            return String::new();
        };
        let parts: Vec<String> = problems(list)
            .map(|p| match p.message {
                Some(message) => message,
                None => format!(
                    "{} {}",
                    p.field.unwrap_or_default(),
                    p.code.unwrap_or_default()
                ),
            })
            .collect();
        format!(": {}", one_line(&parts.join("; ")))
    }
}

/// Each entry of an `errors` list; one that is not of [`Problem`]'s shape reads as empty.
fn problems(list: &[Value]) -> impl Iterator<Item = Problem> + '_ {
    list.iter()
        .map(|entry| Problem::deserialize(entry).unwrap_or_default())
}

/// Where a client's token comes from: a fixed token (a personal or project access token), or
/// one minted and renewed before it expires (a GitHub App's installation token).
pub(super) trait TokenSource: Send + Sync {
    /// The token to send now.
    fn token(&self) -> BoxFuture<'_, Result<Secret, ForgeError>>;
}

impl TokenSource for Secret {
    fn token(&self) -> BoxFuture<'_, Result<Secret, ForgeError>> {
        Box::pin(async move { Ok(self.clone()) })
    }
}

impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    fn token(&self) -> BoxFuture<'_, Result<Secret, ForgeError>> {
        (**self).token()
    }
}

/// One forge API, one token.
pub(super) struct ApiClient {
    forge: &'static str,
    base: String,
    token: Box<dyn TokenSource>,
    http: reqwest::Client,
    headers: HeaderMap,
    retry: RetryPolicy,
    /// `Authorization: <scheme> <token>`.
    auth_scheme: &'static str,
    /// What a 404 says is missing or hidden from the token (`repository o/r or its pull
    /// request`), in [`ApiClient::failed`].
    subject: String,
    /// A refusal shows the `errors` list's validation details after the message (GitHub's).
    details: bool,
}

/// No forge call may hang a run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The most of a forge's answer read. phasegate reads single objects (a pull request, a
/// commit status list, a token) of a few KiB; GitHub's largest page of 100 pull requests is
/// about 1 MiB. A larger answer is refused, never held whole.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Why [`ApiClient::send`] got no answer to read.
enum SendError {
    /// The request failed (connection, timeout, TLS): worth another attempt.
    Http(reqwest::Error),
    /// The answer was larger than [`MAX_ANSWER_BYTES`]: another attempt would be too.
    TooLarge,
}

impl From<reqwest::Error> for SendError {
    fn from(e: reqwest::Error) -> SendError {
        SendError::Http(e)
    }
}

/// The forges' HTTP client: the public roots plus `ca` (the certificates of `git.caFile`, the
/// bundle git trusts).
pub(crate) fn http_client(ca: &[reqwest::Certificate]) -> Result<reqwest::Client, ForgeError> {
    ca.iter()
        .cloned()
        .fold(
            reqwest::Client::builder(),
            reqwest::ClientBuilder::add_root_certificate,
        )
        .build()
        .map_err(|e| ForgeError::Invalid(format!("HTTP client: {e}")))
}

impl ApiClient {
    /// A client of the API at `base`; `headers` go with every request (API version, media type).
    pub(super) fn new(
        forge: &'static str,
        base: Url,
        token: impl TokenSource + 'static,
        settings: &ForgeSettings,
        headers: HeaderMap,
    ) -> ApiClient {
        ApiClient {
            forge,
            base: base.as_str().trim_end_matches('/').to_string(),
            token: Box::new(token),
            http: settings.http.clone(),
            headers,
            retry: settings.retry.clone(),
            auth_scheme: "Bearer",
            subject: String::new(),
            details: false,
        }
    }

    /// Names what a 404 answer means is missing (see [`ApiClient::failed`]).
    pub(super) fn about(mut self, subject: String) -> ApiClient {
        self.subject = subject;
        self
    }

    /// Shows GitHub's validation details (`errors: [{message}|{code, field}]`) after the
    /// message of a refusal.
    pub(super) fn with_details(mut self) -> ApiClient {
        self.details = true;
        self
    }

    /// Sends the token as `Authorization: <scheme> <token>` instead of `Bearer` (Gitea and
    /// Forgejo document `token`).
    pub(super) fn with_auth_scheme(mut self, scheme: &'static str) -> ApiClient {
        self.auth_scheme = scheme;
        self
    }

    /// Calls `method path` (relative to the API root) with an optional JSON body. Retries
    /// within the policy; refused credentials are `PermissionDenied`; any other answer is the
    /// caller's to read.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ForgeError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            // Asked on every attempt: a minted token is renewed when it nears its expiry.
            let token = self.token.token().await?;
            let wait = match self.send(&token, &method, path, body).await {
                Err(SendError::TooLarge) => {
                    return Err(ForgeError::Refused(format!(
                        "{}: {what}: the answer is larger than {MAX_ANSWER_BYTES} bytes \
                         (4 MiB), more than phasegate reads",
                        self.forge
                    )));
                }
                Err(SendError::Http(e)) => {
                    last = format!("{what}: {}", redact(&token, &e.without_url().to_string()));
                    self.retry.backoff(attempt)
                }
                Ok((status, headers, body)) => {
                    let answer = Answer { status, body };
                    debug!(forge = self.forge, request = %what, status = status.as_u16(), "forge call");
                    match classify(status, &headers) {
                        Class::Answer => return Ok(answer),
                        Class::Refused => {
                            let hint = if status == StatusCode::UNAUTHORIZED {
                                "the token is invalid or expired"
                            } else {
                                "the token lacks a permission this needs"
                            };
                            return Err(ForgeError::PermissionDenied {
                                forge: self.forge,
                                reason: format!(
                                    "{what}: HTTP {}: {hint} ({})",
                                    status.as_u16(),
                                    redact(&token, &answer.message())
                                ),
                            });
                        }
                        Class::Later(asked) => {
                            last = format!(
                                "{what}: HTTP {}{} ({})",
                                status.as_u16(),
                                if asked.is_some() {
                                    ", rate limited"
                                } else {
                                    ""
                                },
                                redact(&token, &answer.message())
                            );
                            match asked {
                                Some(wait) if wait > self.retry.max_wait => {
                                    return Err(self.unavailable(format!(
                                        "{last}; the forge asks to wait {}s, longer than \
                                         phasegate waits ({}s)",
                                        wait.as_secs(),
                                        self.retry.max_wait.as_secs()
                                    )));
                                }
                                Some(wait) => wait,
                                None => self.retry.backoff(attempt),
                            }
                        }
                    }
                }
            };
            if attempt < self.retry.attempts {
                warn!(forge = self.forge, attempt, wait_ms = wait.as_millis() as u64, reason = %last, "forge call failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
        Err(self.unavailable(format!(
            "{last} (gave up after {} attempts)",
            self.retry.attempts
        )))
    }

    /// GETs `path` and reads the answer (`what` names the call in errors).
    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
    ) -> Result<T, ForgeError> {
        self.success(what, Method::GET, path, None).await
    }

    /// Calls `method path` to `what` (for messages); only a success answers, with its body
    /// read as `T` (see [`ApiClient::read`]).
    pub(super) async fn success<T: DeserializeOwned>(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ForgeError> {
        let answer = self.call(method, path, body).await?;
        match answer.status.is_success() {
            true => self.read(what, answer),
            false => Err(self.failed(what, &answer)),
        }
    }

    /// The body of the answer to `what` as `T` (see [`read`]).
    pub(super) fn read<T: DeserializeOwned>(
        &self,
        what: &str,
        answer: Answer,
    ) -> Result<T, ForgeError> {
        read(self.forge, what, answer.body)
    }

    /// An answer that should have been a success, as an error naming the request `what`: a
    /// 404 is the subject not found (or hidden from the token), anything else the forge's
    /// refusal with its message.
    pub(super) fn failed(&self, what: &str, answer: &Answer) -> ForgeError {
        let (forge, message) = (self.forge, answer.message());
        match answer.status {
            StatusCode::NOT_FOUND => ForgeError::NotFound(format!(
                "{forge}: {what}: {} not found, or the token cannot see it ({message})",
                self.subject
            )),
            status => ForgeError::Refused(format!(
                "{forge} refused to {what}: HTTP {} ({message}{})",
                status.as_u16(),
                if self.details {
                    answer.details()
                } else {
                    String::new()
                }
            )),
        }
    }

    async fn send(
        &self,
        token: &Secret,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, HeaderMap, Value), SendError> {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let mut auth = HeaderValue::from_str(&format!("{} {}", self.auth_scheme, token.expose()))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        auth.set_sensitive(true);
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(REQUEST_TIMEOUT)
            .headers(self.headers.clone())
            .header(USER_AGENT, "phasegate")
            .header(AUTHORIZATION, auth);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let mut response = request.send().await?;
        let (status, headers) = (response.status(), response.headers().clone());
        // Read chunk by chunk up to the bound: `bytes()` would hold any size the forge sends.
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(SendError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, headers, body))
    }

    fn unavailable(&self, reason: String) -> ForgeError {
        ForgeError::Unavailable {
            forge: self.forge,
            reason,
        }
    }
}

/// `forge`'s answer to `what` (for messages) as `T`, which holds what phasegate reads of it.
/// A field missing or of another type (the forge's API changed) is an error naming it, never
/// a default: a pull request numbered 0 or an empty link would go unnoticed.
pub(super) fn read<T: DeserializeOwned>(
    forge: &str,
    what: &str,
    body: Value,
) -> Result<T, ForgeError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let at = match e.path().to_string() {
            root if root == "." => String::new(),
            path => format!("{path}: "),
        };
        // The inner error may quote the forge's text: one short line of it.
        ForgeError::Refused(format!(
            "{forge}'s answer to the request to {what} cannot be read: {at}{}",
            one_line(&e.inner().to_string())
        ))
    })
}

/// A forge never echoes the token, but if one did, it would not reach a message.
fn redact(token: &Secret, text: &str) -> String {
    match token.expose() {
        "" => text.to_string(),
        token => text.replace(token, "***"),
    }
}

/// One line of at most 200 characters.
pub(super) fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_forges_own_error_message() {
        let message = |body: Value| {
            Answer {
                status: StatusCode::CONFLICT,
                body,
            }
            .message()
        };
        assert_eq!(
            message(serde_json::json!({"message": "Not Found"})),
            "Not Found"
        );
        assert_eq!(
            message(serde_json::json!({"errors": [
                {"context": null, "message": "a", "exceptionName": "X"},
                {"context": "title", "message": "b"}
            ]})),
            "a; b"
        );
        assert_eq!(message(serde_json::json!({})), "");
    }

    #[test]
    fn cuts_forge_messages_to_one_short_line() {
        assert_eq!(one_line("a\n b\tc"), "a b c");
        assert_eq!(one_line(&"x".repeat(300)).chars().count(), 201);
    }
}
