//! Promotion through pull requests and commit statuses, end to end through the Sensor path,
//! against the fake GitHub (tests/support/fake_github.rs: real git underneath, every request
//! checked against GitHub's OpenAPI description).

use crate::support::{
    self,
    fake_forge::Fronted,
    fake_github::FakeGitHub,
    forge_bed::ForgeBed,
    forge_scenarios::{self, failures},
    *,
};
use phasegate::git::local;
use serde_json::{Value, json};
use tonic::Code;

type Forge = ForgeBed<FakeGitHub>;

#[tokio::test]
async fn opens_a_pull_request_with_the_tested_version_and_leaves_the_branch_alone() {
    let f = Forge::start().await;
    let extra = [("prLabels", "promotion,prod"), ("prDraft", "true")];
    let (_, pr) = forge_scenarios::opens_a_pull_request(&f, &extra).await;
    assert_eq!(pr["title"], "Promote image.version 2.0 from test to prod");
    assert_eq!(pr["draft"], true);
    assert_eq!(
        pr["labels"],
        json!([{"name": "promotion"}, {"name": "prod"}])
    );
    let shown = local::show(&f.bare, pr["head"]["sha"].as_str().expect("sha")).expect("show");
    assert!(
        shown.contains(&format!("Source-Commit: {}", f.synced)),
        "{shown}"
    );
    f.server.stop().await;
}

#[tokio::test]
async fn newer_versions_update_the_pull_request_older_ones_are_superseded_the_same_is_not_reopened()
{
    let f = Forge::start().await;
    let title = "Promote image.version 3.1 from test to prod";
    forge_scenarios::updates_supersedes_and_does_not_reopen(&f, &[], |_| {}, title).await;
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
    assert_eq!(f.only_pr()["merged"], true);
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
    failures::rides_out_an_outage_and_a_rate_limit(&f, 403, &[("retry-after", "1")]).await;
    f.server.stop().await;
}

#[tokio::test]
async fn a_forge_that_stays_down_is_unavailable_with_the_reason() {
    failures::gives_up_on_a_forge_that_stays_down::<FakeGitHub>("GitHub").await;
}

#[tokio::test]
async fn a_missing_repository_is_not_found_and_a_refused_request_names_the_answer() {
    failures::not_found_or_refused::<FakeGitHub>("GitHub", "org/gitops").await;
}

#[tokio::test]
async fn a_token_without_permission_is_permission_denied_without_showing_it() {
    let f = Forge::start().await;
    failures::token_without_permission(&f, "GitHub", &[]).await;
    f.server.stop().await;
}

#[tokio::test]
async fn refuses_forge_settings_that_would_send_the_token_elsewhere() {
    let f = Forge::start().await;
    let spec = f.pr_spec(&[("forgeApiUrl", "https://collector.example.net/api/v3")]);
    let host = ["not on the repository's host"];
    f.refused(&spec, &f.synced, Code::InvalidArgument, &host)
        .await;

    let mut spec = f.pr_spec(&[]);
    spec.remove("forge");
    f.refused(&spec, &f.synced, Code::InvalidArgument, &["needs a forge"])
        .await;

    let spec = f.spec(&[("promoteVia", "carrier-pigeon")]);
    f.refused(&spec, &f.synced, Code::InvalidArgument, &["promoteVia"])
        .await;
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
