//! The built-in HTTP check: GET the target, expect a status and a body pattern, retried
//! `attempts` times `interval` apart. Enough for the classic campaign ("GET /pet answers 200
//! with Dog, Cat or Bird; 3 tries, 0.5 s apart").

use std::{fmt::Write, sync::LazyLock, time::Duration};

use super::LogSink;
use crate::spec::HttpTest;

/// One request may not hang a run: the app under test is on the cluster network, close by.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("phasegate/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client without custom TLS roots always builds")
});

/// Returns (passed, attempts made, log).
pub async fn run(test: &HttpTest, sink: &LogSink) -> (bool, u32, String) {
    let mut log = String::new();
    for attempt in 1..=test.attempts {
        if attempt > 1 {
            tokio::time::sleep(test.interval).await;
        }
        let verdict = check(test).await;
        let line = match &verdict {
            Ok(ok) => format!("attempt {attempt}: GET {}: {ok}", test.url),
            Err(e) => format!("attempt {attempt}: GET {}: {e}", test.url),
        };
        sink(&line);
        let _ = writeln!(log, "{line}");
        if verdict.is_ok() {
            return (true, attempt, log);
        }
    }
    (false, test.attempts, log)
}

async fn check(test: &HttpTest) -> Result<String, String> {
    let response = CLIENT
        .get(&test.url)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| format!("reading the body failed: {e}"))?;
    let summary = format!("{status}, {} bytes", body.len());
    if status != test.expect_status {
        return Err(format!("{summary}: expected status {}", test.expect_status));
    }
    match &test.expect_body {
        Some(re) if !re.is_match(&body) => Err(format!("{summary}: body does not match /{re}/")),
        _ => Ok(format!("{summary}: ok")),
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
