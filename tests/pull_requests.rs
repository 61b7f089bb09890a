//! Promotion through pull requests and commit statuses, end to end through the Sensor path,
//! against the fake GitHub (tests/support/fake_github.rs: real git underneath, every request
//! checked against GitHub's OpenAPI description).

mod support;

use phasegate::{config::Config, git::local};
use serde_json::{Value, json};
use support::{
    fake_github::FakeGitHub,
    forge_bed::ForgeBed,
    forge_scenarios::{self, Reviewed},
    *,
};
use tonic::Code;

const TOKEN: &str = "ghp_SENTINEL-token-7f3e";

type Forge = ForgeBed<FakeGitHub>;

impl Forge {
    async fn start() -> Forge {
        Forge::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut Config)) -> Forge {
        Forge::open(TOKEN, configure).await
    }

    fn only_pull(&self) -> Value {
        let pulls = self.forge.pulls();
        assert_eq!(pulls.len(), 1, "{pulls:#?}");
        pulls[0].clone()
    }
}

#[tokio::test]
async fn opens_a_pull_request_with_the_tested_version_and_leaves_the_branch_alone() {
    capture_logs();
    let f = Forge::start().await;
    let spec = f.pr_spec(&[("prLabels", "promotion,prod"), ("prDraft", "true")]);

    let r = f.fire(&spec, &f.synced).await.expect("fires");

    assert_eq!(r["outcome"], "pr-opened", "{r}");
    assert_eq!(r["pullRequest"]["number"], 1);
    let pr = f.only_pull();
    assert_eq!(r["pullRequest"]["url"], pr["html_url"]);
    assert_eq!(pr["title"], "Promote image.version 2.0 from test to prod");
    assert_eq!(pr["draft"], true);
    assert_eq!(
        pr["labels"],
        json!([{"name": "promotion"}, {"name": "prod"}])
    );
    let body = pr["body"].as_str().expect("body");
    for part in [
        "`1.0`",
        "`2.0`",
        f.synced.as_str(),
        r["run"].as_str().expect("run"),
    ] {
        assert!(body.contains(part), "{part} missing in {body}");
    }
    assert_eq!(f.prod_on("main"), "1.0", "nothing pushed to main");
    let head = pr["head"]["ref"].as_str().expect("head");
    assert!(head.starts_with("phasegate/prod/"), "{head}");
    assert_eq!(f.prod_on(head), "2.0");
    let shown = local::show(&f.bare, pr["head"]["sha"].as_str().expect("sha")).expect("show");
    assert!(
        shown.contains(&format!("Source-Commit: {}", f.synced)),
        "{shown}"
    );
    assert_eq!(r["commit"], pr["head"]["sha"]);
    let statuses = f.forge.statuses_on(&f.synced);
    assert_eq!(statuses[0].0, "pending");
    assert_eq!(statuses[1].0, "success");
    assert!(
        statuses[1].1.contains("pull request #1 opened"),
        "{statuses:?}"
    );
    let run = r["run"].as_str().expect("run");
    assert_eq!(
        f.forge.statuses(&f.synced)[1]["target_url"],
        format!("https://phasegate.example.com/runs/{run}")
    );

    // A reviewer merges it: now main has the version.
    f.forge.merge(1);
    assert_eq!(f.prod_on("main"), "2.0");
    f.forge.assert_valid();
    assert!(!logs().contains(TOKEN), "the token was logged");
    f.server.stop().await;
}

#[tokio::test]
async fn newer_versions_update_the_pull_request_older_ones_are_superseded_the_same_is_not_reopened()
{
    let f = Forge::start().await;
    let spec = f.pr_spec(&[]);
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");

    let opened = f.fire(&spec, &v3).await.expect("fires");
    assert_eq!(opened["outcome"], "pr-opened", "{opened}");
    let older = f.fire(&spec, &f.synced).await.expect("fires");
    assert_eq!(older["outcome"], "superseded", "{older}");
    let v31 = bump(&f.bare, &["petstore"], "test", "3.1");
    let updated = f.fire(&spec, &v31).await.expect("fires");
    assert_eq!(updated["outcome"], "pr-updated", "{updated}");
    assert_eq!(updated["pullRequest"], opened["pullRequest"]);
    let pr = f.only_pull();
    assert_eq!(pr["title"], "Promote image.version 3.1 from test to prod");
    let head = pr["head"]["ref"].as_str().expect("head").to_string();
    assert_eq!(f.prod_on(&head), "3.1");
    let tip = local::log(&f.bare, &head, 1).expect("log")[0].0.clone();
    // Another commit deploys the same version to test: the pull request already has it.
    let same =
        local::commit_files(&f.bare, "main", &[("README.md", "docs\n")], "docs").expect("commit");
    let again = f.fire(&spec, &same).await.expect("fires");
    assert_eq!(again["outcome"], "already-promoted", "{again}");
    assert_eq!(again["pullRequest"], opened["pullRequest"]);
    assert_eq!(
        local::log(&f.bare, &head, 1).expect("log")[0].0,
        tip,
        "branch untouched"
    );
    assert_eq!(f.prod_on("main"), "1.0");
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn auto_merge_with_a_wait_answers_promoted_once_merged() {
    let f = Forge::start().await;
    let spec = f.pr_spec(&[
        ("autoMerge", "true"),
        ("waitForMerge", "30s"),
        ("mergeMethod", "squash"),
    ]);

    let r = f.fire(&spec, &f.synced).await.expect("fires");

    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(r["pullRequest"]["number"], 1);
    assert_eq!(f.prod_on("main"), "2.0");
    let head = local::log(&f.bare, "main", 1).expect("log")[0].clone();
    assert_eq!(r["commit"], head.0.as_str());
    assert_eq!(head.1, "Promote image.version 2.0 from test to prod (#1)");
    assert_eq!(f.only_pull()["merged"], true);
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn auto_merge_waits_until_the_forge_allows_the_merge() {
    let f = Forge::start().await;
    f.forge
        .set_unmergeable(Some("Required status check \"ci\" is expected."));
    let spec = f.pr_spec(&[("autoMerge", "true"), ("waitForMerge", "60s")]);
    let sensor = f.server.sensor().await;
    let run = fire_in_background(sensor, &spec, &f.synced);
    let github = &f.forge;
    eventually(|| github.requests().iter().any(|r| r.path.ends_with("/merge"))).await;
    assert_eq!(f.prod_on("main"), "1.0");

    github.set_unmergeable(None);
    let r = run.await.expect("task").expect("fires").response;

    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(f.prod_on("main"), "2.0");
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn waits_for_a_reviewer_closed_unmerged_fails_and_the_wait_has_a_deadline() {
    let f = Forge::start().await;
    forge_scenarios::waits_for_a_reviewer(&f).await;
    f.server.stop().await;
}

#[tokio::test]
async fn push_mode_sets_statuses_pending_then_success_or_failure() {
    let f = Forge::start().await;
    forge_scenarios::push_mode_statuses(&f, &[]).await;
    f.server.stop().await;
}

#[tokio::test]
async fn rides_out_a_forge_outage_and_honours_retry_after() {
    let f = Forge::start().await;
    // A secondary rate limit: 403 with Retry-After.
    forge_scenarios::rides_out_an_outage_and_a_rate_limit(&f, 403, &[("retry-after", "1")]).await;
    f.server.stop().await;
}

#[tokio::test]
async fn a_forge_that_stays_down_is_unavailable_with_the_reason() {
    let f = Forge::start_with(|c| c.forge.retry_attempts = 2).await;
    // Statuses are information: failing them does not fail the run; the pull request does.
    f.forge.fail_next(20, 503, &[]);
    let status = f.fire(&f.pr_spec(&[]), &f.synced).await.expect_err("down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("GitHub API unavailable"),
        "{status:?}"
    );
    assert!(status.message().contains("HTTP 503"), "{status:?}");
    assert!(
        status.message().contains("gave up after 2 attempts"),
        "{status:?}"
    );

    // A rate limit longer than phasegate waits is not waited out.
    let f = Forge::start().await;
    f.forge.fail_next(20, 429, &[("retry-after", "3600")]);
    let status = f
        .fire(&f.pr_spec(&[]), &f.synced)
        .await
        .expect_err("limited");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("asks to wait 3600s"),
        "{status:?}"
    );
    f.server.stop().await;
}

#[tokio::test]
async fn a_token_without_permission_is_permission_denied_without_showing_it() {
    let f = Forge::start().await;
    forge_scenarios::token_without_permission(&f, "GitHub", TOKEN).await;
    f.server.stop().await;
}

#[tokio::test]
async fn refuses_forge_settings_that_would_send_the_token_elsewhere() {
    let f = Forge::start().await;
    let spec = f.pr_spec(&[("forgeApiUrl", "https://collector.example.net/api/v3")]);
    let status = f.fire(&spec, &f.synced).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("not on the repository's host"),
        "{status:?}"
    );

    let mut spec = f.pr_spec(&[]);
    spec.remove("forge");
    let status = f.fire(&spec, &f.synced).await.expect_err("no forge");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("needs a forge"), "{status:?}");

    let status = f
        .fire(&f.spec(&[("promoteVia", "carrier-pigeon")]), &f.synced)
        .await
        .expect_err("bad");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("promoteVia"), "{status:?}");
    assert!(f.forge.requests().is_empty(), "no call reached GitHub");
    f.server.stop().await;
}

#[test]
fn the_api_description_refuses_malformed_requests() {
    let doc = support::openapi::github();
    let check = |m, p, q: &[(&str, &str)], b: Option<Value>| {
        let q: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        support::openapi::check(doc, m, p, &q, b.as_ref())
    };
    let ok = check(
        "POST",
        "/repos/o/r/statuses/abc",
        &[],
        Some(json!({"state": "success", "context": "c"})),
    );
    assert_eq!(ok, Ok(()));
    for (m, p, q, b, why) in [
        (
            "POST",
            "/repos/o/r/statuses/abc",
            vec![],
            Some(json!({"state": "passed"})),
            "passed",
        ),
        (
            "POST",
            "/repos/o/r/statuses/abc",
            vec![],
            None,
            "body required",
        ),
        (
            "POST",
            "/repos/o/r/pulls",
            vec![],
            Some(json!({"title": "t", "head": "h"})),
            "base",
        ),
        (
            "GET",
            "/repos/o/r/pulls",
            vec![("state", "merged")],
            None,
            "merged",
        ),
        (
            "GET",
            "/repos/o/r/pulls",
            vec![("colour", "red")],
            None,
            "unknown query parameter",
        ),
        (
            "DELETE",
            "/repos/o/r/statuses/abc",
            vec![],
            None,
            "no such operation",
        ),
        ("GET", "/repos/o/r/pullz", vec![], None, "no such path"),
        (
            "PUT",
            "/repos/o/r/pulls/1/merge",
            vec![],
            Some(json!({"merge_method": "octopus"})),
            "octopus",
        ),
    ] {
        let err = check(m, p, &q, b).expect_err(why);
        assert!(err.contains(why), "{why}: {err}");
    }
}
