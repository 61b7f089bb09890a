//! Scenarios that every forge passes the same way, end to end through the Sensor path: each
//! forge's test file runs them on its bench ([`ForgeBed`]); what differs between forges (how
//! a reviewer merges or closes, how statuses read) is in [`Reviewed`].

use std::time::Duration;

use tonic::Code;

use super::{
    app, bump, capture_logs, eventually,
    fake_bitbucket::FakeBitbucket,
    fake_gitea::FakeGitea,
    fake_github::{FakeGitHub, Recorded},
    fake_gitlab::FakeGitLab,
    fire_in_background,
    forge_bed::{FakeForge, ForgeBed},
    logs,
};

/// A fake forge with reviewers, and statuses to read.
pub trait Reviewed: FakeForge {
    /// The states of a status while testing, after a promotion and after failed tests, as the
    /// forge names them.
    const PENDING: &'static str = "pending";
    const SUCCESS: &'static str = "success";
    const FAILED: &'static str;
    /// How many pull requests were opened.
    fn opened(&self) -> usize;
    /// A reviewer merges pull request `number`.
    fn review_merge(&self, number: u64);
    /// A reviewer closes pull request `number` unmerged.
    fn review_close(&self, number: u64);
    /// (state, description) of the statuses on `sha`, oldest first; each is checked to have
    /// the context `phasegate/test->prod`.
    fn statuses_on(&self, sha: &str) -> Vec<(String, String)>;
    /// Fails the test if a request did not match the forge's API description.
    fn check_requests(&self);
    /// The next `times` requests are answered `status` with `headers`.
    fn fail_next(&self, times: usize, status: u16, headers: &[(&'static str, &str)]);
    /// Every request so far.
    fn requests(&self) -> Vec<Recorded>;
    /// The token keeps git access but loses the API's write permissions.
    fn restrict(&self);
}

fn text(v: &serde_json::Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

impl Reviewed for FakeGitHub {
    const FAILED: &'static str = "failure";
    fn restrict(&self) {
        self.restrict_token(true);
    }
    fn opened(&self) -> usize {
        self.pulls().len()
    }
    fn review_merge(&self, number: u64) {
        self.merge(number);
    }
    fn review_close(&self, number: u64) {
        self.close(number);
    }
    fn statuses_on(&self, sha: &str) -> Vec<(String, String)> {
        let statuses = self.statuses(sha);
        statuses
            .iter()
            .inspect(|s| assert_eq!(s["context"], "phasegate/test->prod"))
            .map(|s| (text(s, "state"), text(s, "description")))
            .collect()
    }
    fn check_requests(&self) {
        self.assert_valid();
    }
    fn fail_next(&self, times: usize, status: u16, headers: &[(&'static str, &str)]) {
        FakeGitHub::fail_next(self, times, status, headers);
    }
    fn requests(&self) -> Vec<Recorded> {
        FakeGitHub::requests(self)
    }
}

impl Reviewed for FakeGitLab {
    const FAILED: &'static str = "failed";
    fn restrict(&self) {
        self.restrict_token(true);
    }
    fn opened(&self) -> usize {
        self.merge_requests().len()
    }
    fn review_merge(&self, number: u64) {
        self.merge(number);
    }
    fn review_close(&self, number: u64) {
        self.close(number);
    }
    fn statuses_on(&self, sha: &str) -> Vec<(String, String)> {
        let statuses = self.statuses(sha);
        statuses
            .iter()
            .inspect(|s| assert_eq!(s["name"], "phasegate/test->prod"))
            .map(|s| (text(s, "status"), text(s, "description")))
            .collect()
    }
    fn check_requests(&self) {
        self.assert_valid();
    }
    fn fail_next(&self, times: usize, status: u16, headers: &[(&'static str, &str)]) {
        FakeGitLab::fail_next(self, times, status, headers);
    }
    fn requests(&self) -> Vec<Recorded> {
        FakeGitLab::requests(self)
    }
}

impl Reviewed for FakeGitea {
    const FAILED: &'static str = "failure";
    fn restrict(&self) {
        self.restrict_token(true);
    }
    fn opened(&self) -> usize {
        self.pulls().len()
    }
    fn review_merge(&self, number: u64) {
        self.merge(number);
    }
    fn review_close(&self, number: u64) {
        self.close(number);
    }
    fn statuses_on(&self, sha: &str) -> Vec<(String, String)> {
        let statuses = self.statuses(sha);
        statuses
            .iter()
            .inspect(|s| assert_eq!(s["context"], "phasegate/test->prod"))
            .map(|s| (text(s, "state"), text(s, "description")))
            .collect()
    }
    fn check_requests(&self) {
        self.assert_valid();
    }
    fn fail_next(&self, times: usize, status: u16, headers: &[(&'static str, &str)]) {
        FakeGitea::fail_next(self, times, status, headers);
    }
    fn requests(&self) -> Vec<Recorded> {
        FakeGitea::requests(self)
    }
}

/// Bitbucket Data Center's statuses are build statuses; its reviewers decline.
impl Reviewed for FakeBitbucket {
    const PENDING: &'static str = "INPROGRESS";
    const SUCCESS: &'static str = "SUCCESSFUL";
    const FAILED: &'static str = "FAILED";
    fn restrict(&self) {
        self.restrict_token(true);
    }
    fn opened(&self) -> usize {
        self.pull_requests().len()
    }
    fn review_merge(&self, number: u64) {
        self.merge(number);
    }
    fn review_close(&self, number: u64) {
        self.decline(number);
    }
    fn statuses_on(&self, sha: &str) -> Vec<(String, String)> {
        let builds = self.builds(sha);
        builds
            .iter()
            .inspect(|b| assert_eq!(b["key"], "phasegate/test->prod"))
            .map(|b| (text(b, "state"), text(b, "description")))
            .collect()
    }
    fn check_requests(&self) {
        self.assert_valid();
    }
    fn fail_next(&self, times: usize, status: u16, headers: &[(&'static str, &str)]) {
        self.fail_next(times, status, headers);
    }
    fn requests(&self) -> Vec<Recorded> {
        self.requests()
    }
}

/// `waitForMerge`: a reviewer merges (`promoted`), closes (`FAILED_PRECONDITION`), or nobody
/// reviews (`DEADLINE_EXCEEDED`).
pub async fn waits_for_a_reviewer<F: Reviewed>(f: &ForgeBed<F>) {
    let forge = &f.forge;
    let spec = f.pr_spec(&[("waitForMerge", "60s")]);
    let run = fire_in_background(f.server.sensor().await, &spec, &f.synced);
    eventually(|| forge.opened() == 1).await;
    forge.review_merge(1);
    let r = run.await.expect("task").expect("fires").response;
    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(f.prod_on("main"), "2.0");

    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");
    let run = fire_in_background(f.server.sensor().await, &spec, &v3);
    eventually(|| forge.opened() == 2).await;
    forge.review_close(2);
    let failed = run.await.expect("task").expect_err("closed").status;
    assert_eq!(failed.code(), Code::FailedPrecondition, "{failed:?}");
    assert!(
        failed.message().contains("closed without being merged"),
        "{failed:?}"
    );

    let v4 = bump(&f.bare, &["petstore"], "test", "4.0");
    let short = f.pr_spec(&[("waitForMerge", "1s")]);
    let status = f.fire(&short, &v4).await.expect_err("deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("still not merged"), "{status:?}");
    assert_eq!(f.prod_on("main"), "2.0");
    forge.check_requests();
}

/// Push mode with `extra` keys: pushed as before, with a status pending then success; failed
/// tests end in the forge's failed state.
pub async fn push_mode_statuses<F: Reviewed>(f: &ForgeBed<F>, extra: &[(&str, &str)]) {
    let r = f.fire(&f.spec(extra), &f.synced).await.expect("fires");
    assert_eq!(r["outcome"], "promoted", "{r}");
    assert!(r.get("pullRequest").is_none(), "{r}");
    assert_eq!(f.prod_on("main"), "2.0", "push mode pushes as before");
    let statuses = f.forge.statuses_on(&f.synced);
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(statuses[0].0, F::PENDING);
    assert_eq!(statuses[1].0, F::SUCCESS);
    assert!(
        statuses[1].1.contains("promoted 2.0 from test to prod"),
        "{statuses:?}"
    );
    assert_eq!(f.forge.opened(), 0);

    let broken = app(500, "down").await;
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");
    let mut failing = extra.to_vec();
    failing.extend([
        ("test", "http"),
        ("testTarget", &broken),
        ("testInterval", "10ms"),
    ]);
    let failed = f
        .fire(&f.spec(&failing), &v3)
        .await
        .expect_err("tests fail");
    assert_eq!(failed.code(), Code::FailedPrecondition);
    let statuses = f.forge.statuses_on(&v3);
    assert_eq!(statuses[0].0, F::PENDING);
    assert_eq!(statuses[1].0, F::FAILED);
    assert!(
        statuses[1].1.contains("tests of test failed"),
        "{statuses:?}"
    );
    f.forge.check_requests();
}

/// Two 502s are ridden out (`pr-opened`, the pending status set); a rate limit (`status` with
/// `headers`, among them `retry-after: 1`) is retried after the wait the forge asked for
/// (`pr-updated`).
pub async fn rides_out_an_outage_and_a_rate_limit<F: Reviewed>(
    f: &ForgeBed<F>,
    status: u16,
    headers: &[(&'static str, &str)],
) {
    let spec = f.pr_spec(&[]);
    f.forge.fail_next(2, 502, &[]);
    let r = f.fire(&spec, &f.synced).await.expect("fires");
    assert_eq!(r["outcome"], "pr-opened", "{r}");
    assert_eq!(f.forge.statuses_on(&f.synced)[0].0, "pending");

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
    f.forge.check_requests();
}

/// A token without the API's write permissions: `PERMISSION_DENIED` saying so, naming the
/// forge (`name`), never showing the token (`token`), nothing promoted. Answers the message.
pub async fn token_without_permission<F: Reviewed>(
    f: &ForgeBed<F>,
    name: &str,
    token: &str,
) -> String {
    capture_logs();
    f.forge.restrict();
    let status = f
        .fire(&f.pr_spec(&[]), &f.synced)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let message = status.message();
    assert!(
        message.contains(&format!("{name} refused phasegate's token")),
        "{message}"
    );
    assert!(message.contains("lacks a permission"), "{message}");
    assert!(!message.contains(token) && !logs().contains(token));
    assert_eq!(f.prod_on("main"), "1.0");
    message.to_string()
}
