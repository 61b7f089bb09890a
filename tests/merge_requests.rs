//! Promotion through GitLab merge requests and GitLab commit statuses, end to end through the
//! Sensor path, against the fake self-managed GitLab (tests/support/fake_gitlab.rs: real git
//! underneath, every request checked against GitLab's parameter declarations). The project is
//! in a nested group, so every call proves the URL-encoded project path.

use crate::support::{
    self,
    fake_forge::Fronted,
    fake_gitlab::FakeGitLab,
    forge_bed::{FakeForge, ForgeBed},
    forge_scenarios::{self, failures},
    *,
};
use phasegate::git::local;
use serde_json::{Value, json};
use tonic::Code;

type Lab = ForgeBed<FakeGitLab>;

#[tokio::test]
async fn opens_a_draft_merge_request_with_labels_and_sets_statuses() {
    let f = Lab::start().await;
    let extra = [("prLabels", "promotion,prod"), ("prDraft", "true")];
    // A reviewer marks it ready and merges it.
    let (_, mr) = forge_scenarios::opens_a_pull_request(&f, &extra).await;
    assert!(
        mr["web_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/platform/team/gitops/-/merge_requests/1")),
        "{mr}"
    );
    assert_eq!(
        mr["title"],
        "Draft: Promote image.version 2.0 from test to prod"
    );
    assert_eq!(mr["draft"], true);
    assert_eq!(mr["labels"], json!(["promotion", "prod"]));
    assert_eq!(mr["target_branch"], "main");
    f.server.stop().await;
}

#[tokio::test]
async fn newer_versions_update_the_merge_request_older_ones_are_superseded() {
    let f = Lab::start().await;
    let extra = [("prDraft", "true"), ("prLabels", "promotion")];
    // A reviewer marked it ready: an update does not make it a draft again.
    let ready = |lab: &FakeGitLab| lab.mark_ready(1);
    let title = "Promote image.version 3.1 from test to prod";
    let mr =
        forge_scenarios::updates_supersedes_and_does_not_reopen(&f, &extra, ready, title).await;
    assert_eq!(mr["labels"], json!(["promotion"]));
    f.server.stop().await;
}

#[tokio::test]
async fn auto_merge_merges_at_once_or_lets_gitlab_merge_when_the_pipeline_succeeds() {
    let f = Lab::start().await;
    // Nothing pending: GitLab merges right away.
    let spec = f.pr_spec(&[("autoMerge", "true")]);
    let r = f.fire(&spec, &f.synced).await.expect("fires");
    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(f.prod_on("main"), "2.0");
    let merged = f.only_pr();
    assert_eq!(merged["state"], "merged");
    assert_eq!(r["commit"], merged["merge_commit_sha"]);

    // A pipeline runs: GitLab's auto-merge is set, and GitLab merges when it succeeds.
    f.forge.run_pipeline();
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");
    let spec = f.pr_spec(&[
        ("autoMerge", "true"),
        ("waitForMerge", "60s"),
        ("mergeMethod", "squash"),
    ]);
    let run = fire_in_background(f.server.sensor().await, &spec, &v3);
    let gitlab = &f.forge;
    eventually(|| {
        gitlab
            .merge_requests()
            .iter()
            .any(|m| m["merge_when_pipeline_succeeds"] == true)
    })
    .await;
    assert_eq!(f.prod_on("main"), "2.0");
    gitlab.finish_pipeline();
    let r = run.await.expect("task").expect("fires").response;

    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(r["pullRequest"]["number"], 2);
    assert_eq!(f.prod_on("main"), "3.0");
    let mr = &gitlab.merge_requests()[1];
    assert_eq!(r["commit"], mr["merge_commit_sha"]);
    let squash = mr["squash_commit_sha"].as_str().expect("squashed");
    assert!(
        local::show(&f.bare, squash)
            .expect("show")
            .contains("Promote image.version 3.0 from test to prod"),
    );
    let merge = gitlab
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/merge"))
        .and_then(|r| r.body)
        .expect("merge request body");
    assert_eq!(merge["squash"], true);
    assert_eq!(merge["auto_merge"], true);
    assert_eq!(merge["sha"], mr["sha"]);
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn waits_for_a_reviewer_closed_unmerged_fails_and_the_wait_has_a_deadline() {
    let f = Lab::start().await;
    forge_scenarios::waits_for_a_reviewer(&f).await;
    f.server.stop().await;
}

#[tokio::test]
async fn push_mode_sets_statuses_pending_then_success_or_failed() {
    let f = Lab::start().await;
    // Self-managed GitLab with its API named explicitly.
    let api = f.forge.api_url();
    forge_scenarios::push_mode_statuses(&f, &[("forgeApiUrl", &api)]).await;
    f.server.stop().await;
}

#[tokio::test]
async fn rides_out_an_outage_and_honours_gitlab_rate_limits() {
    let f = Lab::start().await;
    // GitLab's rate limit: 429 with Retry-After and its RateLimit-* headers.
    let headers = [
        ("retry-after", "1"),
        ("ratelimit-remaining", "0"),
        ("ratelimit-name", "throttle_authenticated_api"),
    ];
    failures::rides_out_an_outage_and_a_rate_limit(&f, 429, &headers).await;
    f.server.stop().await;
    failures::gives_up_on_a_forge_that_stays_down::<FakeGitLab>("GitLab").await;
}

#[tokio::test]
async fn a_missing_project_is_not_found_and_a_refused_request_names_the_answer() {
    failures::not_found_or_refused::<FakeGitLab>("GitLab", "platform/team/gitops").await;
}

#[tokio::test]
async fn a_token_without_permission_is_permission_denied_without_showing_it() {
    let f = Lab::start().await;
    let message = failures::token_without_permission(&f, "GitLab", &[]).await;
    assert!(message.contains("insufficient_scope"), "{message}");

    // May open merge requests, but not merge into the protected branch.
    f.forge.restrict_token(false);
    f.forge.forbid_merge(true);
    let spec = f.pr_spec(&[("autoMerge", "true")]);
    let protected = ["may not merge into the target branch"];
    let message = f
        .refused(&spec, &f.synced, Code::PermissionDenied, &protected)
        .await;
    assert!(!message.contains(FakeGitLab::TOKEN));
    assert_eq!(f.prod_on("main"), "1.0");
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn refuses_rebase_and_foreign_api_urls_before_anything_is_sent() {
    let f = Lab::start().await;
    let pushes = f.forge.git.pushes();

    let spec = f.pr_spec(&[("mergeMethod", "rebase")]);
    let rebase = ["rebase is not available on GitLab"];
    f.refused(&spec, &f.synced, Code::InvalidArgument, &rebase)
        .await;

    let spec = f.pr_spec(&[("forgeApiUrl", "https://gitlab.example.net/api/v4")]);
    let host = ["not on the repository's host"];
    f.refused(&spec, &f.synced, Code::InvalidArgument, &host)
        .await;
    assert!(f.forge.requests().is_empty(), "no call reached GitLab");
    assert_eq!(f.forge.git.pushes(), pushes, "nothing pushed");
    f.server.stop().await;
}

#[tokio::test]
async fn fetch_resource_refuses_rebase_when_the_sensor_is_created() {
    let f = Lab::start().await;
    let spec = f.pr_spec(&[("mergeMethod", "rebase")]);
    let parts = ["mergeMethod", "rebase is not available on GitLab"];
    f.refused_by_fetch_resource(&spec, &parts).await;
    assert!(f.forge.requests().is_empty(), "no call reached GitLab");
    f.server.stop().await;
}

#[test]
fn the_declarations_refuse_malformed_requests() {
    let check = |m, route: &[&str], q: &[(&str, &str)], b: Option<Value>| {
        let q: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        support::gitlab_api::check(m, route, &q, b.as_ref())
    };
    let ok = check(
        "POST",
        &["statuses", ":id"],
        &[],
        Some(json!({"state": "success", "name": "c"})),
    );
    assert_eq!(ok, Ok(()));
    for (m, route, q, b, why) in [
        (
            "POST",
            vec!["statuses", ":id"],
            vec![],
            Some(json!({"state": "failure"})),
            "state does not have a valid value",
        ),
        (
            "POST",
            vec!["statuses", ":id"],
            vec![],
            None,
            "state is missing",
        ),
        (
            "POST",
            vec!["merge_requests"],
            vec![],
            Some(json!({"title": "t", "source_branch": "h"})),
            "target_branch is missing",
        ),
        (
            "POST",
            vec!["merge_requests"],
            vec![],
            Some(json!({"title": "t", "source_branch": "h", "target_branch": "m", "draft": true})),
            "draft is not a parameter",
        ),
        (
            "GET",
            vec!["merge_requests"],
            vec![("state", "open")],
            None,
            "state does not have a valid value",
        ),
        (
            "PUT",
            vec!["merge_requests", ":id"],
            vec![],
            Some(json!({})),
            "at least one parameter",
        ),
        (
            "PUT",
            vec!["merge_requests", ":id", "merge"],
            vec![],
            Some(json!({"merge_method": "rebase"})),
            "merge_method is not a parameter",
        ),
        (
            "DELETE",
            vec!["statuses", ":id"],
            vec![],
            None,
            "no such endpoint",
        ),
    ] {
        let err = check(m, &route, &q, b).expect_err(why);
        assert!(err.contains(why), "{why}: {err}");
    }
}
