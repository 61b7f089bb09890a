//! How a forge's busy answers are retried: which HTTP answers mean "later" (429, 403 with
//! rate-limit headers, 5xx), how long the forge asks to wait, and phasegate's own backoff.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{
    StatusCode,
    header::{HeaderMap, RETRY_AFTER},
};

/// How rate-limited and failed calls are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls per request at most (the first one included).
    pub attempts: u32,
    /// The longest wait phasegate accepts between two calls; a forge that asks for a longer
    /// one (`Retry-After`, a rate-limit reset) gets `UNAVAILABLE` at once, with its reason.
    pub max_wait: Duration,
    /// First backoff when the forge says nothing about when to come back (doubles).
    pub backoff: Duration,
}

impl RetryPolicy {
    /// The wait before call `attempt + 1` when the forge named none: doubling, at most
    /// `max_wait`.
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        self.backoff
            .saturating_mul(1 << (attempt - 1).min(6))
            .min(self.max_wait)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            max_wait: Duration::from_secs(60),
            backoff: Duration::from_millis(500),
        }
    }
}

/// What an HTTP answer means for the call.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Class {
    /// The caller reads it (success, or a refusal about the request itself).
    Answer,
    /// The credentials were refused or lack a permission.
    Refused,
    /// Try again later: after the forge's wait if it named one.
    Later(Option<Duration>),
}

pub(super) fn classify(status: StatusCode, headers: &HeaderMap) -> Class {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = header(RETRY_AFTER.as_str()).and_then(parse_retry_after);
    // GitHub's names, and GitLab's (`RateLimit-Remaining`, `RateLimit-Reset`).
    let either = |name: &str| header(&format!("x-{name}")).or_else(|| header(name));
    let exhausted = either("ratelimit-remaining") == Some("0");
    let reset = either("ratelimit-reset")
        .and_then(|s| s.parse::<u64>().ok())
        .map(|at| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Duration::from_secs(at.saturating_sub(now).max(1))
        });
    match status.as_u16() {
        429 => Class::Later(retry_after.or(reset).or(Some(Duration::from_secs(1)))),
        // GitHub's secondary rate limits are 403 with Retry-After; primary ones 403 with
        // x-ratelimit-remaining: 0 and the reset time.
        403 if retry_after.is_some() || exhausted => Class::Later(retry_after.or(reset)),
        401 | 403 => Class::Refused,
        500 | 502 | 503 | 504 => Class::Later(retry_after),
        _ => Class::Answer,
    }
}

/// `Retry-After` as delay-seconds (HTTP-date forms are rare on forges: then back off).
fn parse_retry_after(s: &str) -> Option<Duration> {
    s.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn tells_rate_limits_from_refused_tokens() {
        let code = |c| StatusCode::from_u16(c).expect("code");
        assert_eq!(
            classify(code(403), &headers(&[("retry-after", "7")])),
            Class::Later(Some(Duration::from_secs(7)))
        );
        assert!(matches!(
            classify(code(403), &headers(&[("x-ratelimit-remaining", "0")])),
            Class::Later(_)
        ));
        assert_eq!(
            classify(code(403), &headers(&[("x-ratelimit-remaining", "12")])),
            Class::Refused
        );
        assert!(matches!(
            classify(code(429), &headers(&[("ratelimit-reset", "1")])),
            Class::Later(Some(_))
        ));
        assert!(matches!(
            classify(code(403), &headers(&[("ratelimit-remaining", "0")])),
            Class::Later(_)
        ));
        assert_eq!(classify(code(401), &headers(&[])), Class::Refused);
        assert_eq!(
            classify(code(429), &headers(&[("retry-after", "2")])),
            Class::Later(Some(Duration::from_secs(2)))
        );
        assert_eq!(classify(code(502), &headers(&[])), Class::Later(None));
        assert_eq!(classify(code(422), &headers(&[])), Class::Answer);
        assert_eq!(classify(code(404), &headers(&[])), Class::Answer);
    }
}
