//! The built-in HTTP check: GET the target, expect a status and a body pattern, retried
//! `attempts` times `interval` apart. Enough for the classic campaign ("GET /pet answers 200
//! with Dog, Cat or Bird; 3 tries, 0.5 s apart").

use std::{fmt::Write, sync::Arc, time::Duration};

use regex::Regex;
use tracing::warn;

use super::{
    RunnerError, TestContext, Tested,
    reach::{self, Resolver},
};
use crate::spec::HttpTest;

/// The most of a response body the check reads: enough for any health or API answer, and a
/// deployment under test (or whatever its URL points to) cannot fill the server's memory.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One request may not hang a run: the app under test is on the cluster network, close by.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long matching a body against `testExpectBody` may take: as long as the request that
/// fetched it. The pattern's bounds (`src/spec/body_pattern.rs`) keep a match well under a
/// second; this is the backstop for a node far slower or busier than measured.
const MATCH_DEADLINE: Duration = REQUEST_TIMEOUT;

/// The HTTP runner's client: the public roots plus `ca` (the certificates of `git.caFile` and
/// `test.caFile`: an internal CA signs the test deployments' certificates as it signs the git
/// server's). Verification is never turned off. Redirects are followed only on the target's
/// origin, and link-local and cloud metadata addresses are never connected to ([`reach`]).
pub(crate) fn client(ca: &[reqwest::Certificate]) -> Result<reqwest::Client, String> {
    ca.iter()
        .cloned()
        .fold(
            reqwest::Client::builder(),
            reqwest::ClientBuilder::add_root_certificate,
        )
        .timeout(REQUEST_TIMEOUT)
        .redirect(reach::redirect_policy())
        .dns_resolver(Arc::new(Resolver))
        .user_agent(concat!("phasegate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("the HTTP runner's client: {}", error_chain(&e)))
}

/// GETs the target until the check passes or the attempts are spent.
pub(super) async fn run(test: &HttpTest, ctx: &TestContext) -> Result<Tested, RunnerError> {
    let (client, sink) = (&ctx.http, &ctx.log);
    let mut log = String::new();
    for attempt in 1..=test.attempts {
        if attempt > 1 {
            tokio::time::sleep(test.interval).await;
        }
        let verdict = check(client, test).await;
        let line = match &verdict {
            Ok(ok) => format!("attempt {attempt}: GET {}: {ok}", test.url),
            Err(e) => format!("attempt {attempt}: GET {}: {e}", test.url),
        };
        sink(&line);
        let _ = writeln!(log, "{line}");
        if verdict.is_ok() {
            return Ok(Tested {
                passed: true,
                attempts: attempt,
                log,
            });
        }
    }
    Ok(Tested {
        passed: false,
        attempts: test.attempts,
        log,
    })
}

async fn check(client: &reqwest::Client, test: &HttpTest) -> Result<String, String> {
    // An IP literal is never resolved: the resolver's filter would not see it.
    if let Ok(url) = reqwest::Url::parse(&test.url) {
        reach::forbidden_literal(&url)?;
    }
    let response = client
        .get(&test.url)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", request_error(e, &test.url)))?;
    let status = response.status().as_u16();
    let (body, truncated) = read_capped(response)
        .await
        .map_err(|e| format!("reading the body failed: {e}"))?;
    let summary = if truncated {
        format!("{status}, more than {MAX_BODY_BYTES} bytes (only the first {MAX_BODY_BYTES} read)")
    } else {
        format!("{status}, {} bytes", body.len())
    };
    if status != test.expect_status {
        return Err(format!("{summary}: expected status {}", test.expect_status));
    }
    let Some(re) = &test.expect_body else {
        return Ok(format!("{summary}: ok"));
    };
    match matches(re, body).await {
        Ok(true) => Ok(format!("{summary}: ok")),
        Ok(false) => Err(format!("{summary}: body does not match /{re}/")),
        Err(e) => Err(format!("{summary}: {e}")),
    }
}

/// Whether `body` matches `re`, on a blocking thread: even a bounded pattern costs a fair part
/// of a second against a 1 MiB body, and on an async worker it would stall every other call
/// of the server meanwhile (two runs at once took both workers of a 2-core node, and the
/// health checks with them). Past [`MATCH_DEADLINE`] the attempt fails; the thread finishes
/// the match, whose cost the pattern's bounds limit, and its answer is dropped.
async fn matches(re: &Regex, body: String) -> Result<bool, String> {
    let pattern = re.clone();
    let task = tokio::task::spawn_blocking(move || pattern.is_match(&body));
    match tokio::time::timeout(MATCH_DEADLINE, task).await {
        Ok(Ok(matched)) => Ok(matched),
        Ok(Err(e)) => Err(format!("matching the body against /{re}/ failed: {e}")),
        Err(_) => {
            let why = format!(
                "matching the body against /{re}/ took longer than {} s: the attempt fails",
                MATCH_DEADLINE.as_secs()
            );
            warn!(pattern = %re, deadline_secs = MATCH_DEADLINE.as_secs(), "{why}");
            Err(why)
        }
    }
}

/// The body up to [`MAX_BODY_BYTES`] (as text, invalid UTF-8 replaced), and whether more came.
async fn read_capped(mut response: reqwest::Response) -> Result<(String, bool), reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((String::from_utf8_lossy(&bytes).into_owned(), true));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), false))
}

/// Why a request failed, without the query of a URL redirected to (the line names the target).
fn request_error(e: reqwest::Error, target: &str) -> String {
    if e.is_redirect()
        && let Some(why) = std::error::Error::source(&e)
    {
        // The policy's own sentence ([`reach::follow`]) names the hop as a log may show it.
        return why.to_string();
    }
    match e.url().filter(|u| u.as_str() != target).map(reach::shown) {
        Some(hop) => format!("{} (at {hop})", error_chain(&e.without_url())),
        None => error_chain(&e),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}
