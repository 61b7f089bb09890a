//! How every forge's failures end: an outage ridden out, a forge that stays down, a token
//! without permission, a repository the token cannot see, a request the forge refuses.

use std::time::Duration;

use tonic::Code;

use super::{
    super::{bump, capture_logs, forge_bed::ForgeBed, logs},
    Reviewed,
};

/// Two 502s are ridden out (`pr-opened`, the pending status set); a rate limit (`status` with
/// `headers`, among them `retry-after: 1`) is retried after the wait the forge asked for
/// (`pr-updated`).
pub(crate) async fn rides_out_an_outage_and_a_rate_limit<F: Reviewed>(
    f: &ForgeBed<F>,
    status: u16,
    headers: &[(&'static str, &str)],
) {
    let spec = f.pr_spec(&[]);
    f.forge.fail_next(2, 502, &[]);
    let r = f.fire(&spec, &f.synced).await.expect("fires");
    assert_eq!(r["outcome"], "pr-opened", "{r}");
    assert_eq!(f.forge.statuses_on(&f.synced)[0].state, F::PENDING);

    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");
    let before = f.forge.requests().len();
    f.forge.fail_next(1, status, headers);
    let r = f.fire(&spec, &v3).await.expect("fires");
    assert_eq!(r["outcome"], "pr-updated", "{r}");
    let requests = f.forge.requests();
    let (limited, retried) = (&requests[before], &requests[before + 1]);
    assert_eq!(
        (&limited.method, &limited.path),
        (&retried.method, &retried.path)
    );
    assert!(
        retried.at.duration_since(limited.at) >= Duration::from_secs(1),
        "retried before Retry-After"
    );
    f.forge.assert_valid();
}

/// A forge that keeps answering 503 is `UNAVAILABLE` after the configured attempts, naming
/// the forge (`name`) and its answer; a rate limit longer than phasegate waits is not waited
/// out. Starts its own benches.
pub(crate) async fn gives_up_on_a_forge_that_stays_down<F: Reviewed>(name: &str) {
    let f = ForgeBed::<F>::open(|c| c.forge.retry_attempts = 2).await;
    f.forge.fail_next(20, 503, &[]);
    f.refused(
        &f.pr_spec(&[]),
        &f.synced,
        Code::Unavailable,
        &[
            &format!("{name} API unavailable"),
            "HTTP 503 (injected failure)",
            "gave up after 2 attempts",
        ],
    )
    .await;
    f.server.stop().await;

    let f = ForgeBed::<F>::start().await;
    f.forge.fail_next(20, 429, &[("retry-after", "3600")]);
    f.refused(
        &f.pr_spec(&[]),
        &f.synced,
        Code::Unavailable,
        &["asks to wait 3600s"],
    )
    .await;
    f.server.stop().await;
}

/// A token without the API's write permissions: `PERMISSION_DENIED` saying so, naming the
/// forge (`name`), never showing the token, nothing opened or promoted. The spec has `extra`
/// keys. Answers the message.
pub(crate) async fn token_without_permission<F: Reviewed>(
    f: &ForgeBed<F>,
    name: &str,
    extra: &[(&str, &str)],
) -> String {
    capture_logs();
    f.forge.restrict_token(true);
    let message = f
        .refused(
            &f.pr_spec(extra),
            &f.synced,
            Code::PermissionDenied,
            &[
                &format!("{name} refused phasegate's token"),
                "lacks a permission",
            ],
        )
        .await;
    assert!(!message.contains(F::TOKEN) && !logs().contains(F::TOKEN));
    assert_eq!(f.forge.opened(), 0);
    assert_eq!(f.prod_on("main"), "1.0");
    f.forge.assert_valid();
    message
}

/// A repository the token cannot see (every call 404) is `NOT_FOUND` naming it (`repo`, as
/// the forge names it); an answer the forge gives to a request it refuses (422) is
/// `FAILED_PRECONDITION` naming the forge (`name`) and the answer. Nothing promoted. Starts
/// its own benches.
pub(crate) async fn not_found_or_refused<F: Reviewed>(name: &str, repo: &str) {
    let f = ForgeBed::<F>::start().await;
    f.forge.fail_next(20, 404, &[]);
    f.refused(
        &f.pr_spec(&[]),
        &f.synced,
        Code::NotFound,
        &[repo, "not found, or the token cannot see it"],
    )
    .await;
    assert_eq!(f.prod_on("main"), "1.0");
    f.server.stop().await;

    let f = ForgeBed::<F>::start().await;
    f.forge.fail_next(20, 422, &[]);
    f.refused(
        &f.pr_spec(&[]),
        &f.synced,
        Code::FailedPrecondition,
        &[&format!("{name} refused to"), "HTTP 422 (injected failure"],
    )
    .await;
    assert_eq!(f.forge.opened(), 0);
    assert_eq!(f.prod_on("main"), "1.0");
    f.server.stop().await;
}
