//! Promotion through GitLab merge requests and GitLab commit statuses, end to end through the
//! Sensor path, against the fake self-managed GitLab (tests/support/fake_gitlab.rs: real git
//! underneath, every request checked against GitLab's parameter declarations). The project is
//! in a nested group, so every call proves the URL-encoded project path.

mod support;

use phasegate::{config::Config, git::local};
use serde_json::{Value, json};
use support::{
    fake_gitlab::FakeGitLab,
    forge_bed::ForgeBed,
    forge_scenarios::{self, Reviewed},
    *,
};
use tonic::Code;

const TOKEN: &str = "glpat-SENTINEL-token-41c9";

type Lab = ForgeBed<FakeGitLab>;

impl Lab {
    async fn start() -> Lab {
        Lab::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut Config)) -> Lab {
        Lab::open(TOKEN, configure).await
    }

    fn only_mr(&self) -> Value {
        let mrs = self.forge.merge_requests();
        assert_eq!(mrs.len(), 1, "{mrs:#?}");
        mrs[0].clone()
    }
}

#[tokio::test]
async fn opens_a_draft_merge_request_with_labels_and_sets_statuses() {
    capture_logs();
    let f = Lab::start().await;
    let spec = f.pr_spec(&[("prLabels", "promotion,prod"), ("prDraft", "true")]);

    let r = f.fire(&spec, &f.synced).await.expect("fires");

    assert_eq!(r["outcome"], "pr-opened", "{r}");
    assert_eq!(r["pullRequest"]["number"], 1);
    let mr = f.only_mr();
    assert_eq!(r["pullRequest"]["url"], mr["web_url"]);
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
    let description = mr["description"].as_str().expect("description");
    for part in [
        "`1.0`",
        "`2.0`",
        f.synced.as_str(),
        r["run"].as_str().expect("run"),
    ] {
        assert!(
            description.contains(part),
            "{part} missing in {description}"
        );
    }
    assert_eq!(f.prod_on("main"), "1.0", "nothing pushed to main");
    let head = mr["source_branch"].as_str().expect("source branch");
    assert!(head.starts_with("phasegate/prod/"), "{head}");
    assert_eq!(f.prod_on(head), "2.0");
    assert_eq!(r["commit"], mr["sha"]);
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

    // A reviewer marks it ready and merges it: now main has the version.
    f.forge.mark_ready(1);
    f.forge.merge(1);
    assert_eq!(f.prod_on("main"), "2.0");
    f.forge.assert_valid();
    assert!(!logs().contains(TOKEN), "the token was logged");
    f.server.stop().await;
}

#[tokio::test]
async fn newer_versions_update_the_merge_request_older_ones_are_superseded() {
    let f = Lab::start().await;
    let spec = f.pr_spec(&[("prDraft", "true"), ("prLabels", "promotion")]);
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");

    let opened = f.fire(&spec, &v3).await.expect("fires");
    assert_eq!(opened["outcome"], "pr-opened", "{opened}");
    let older = f.fire(&spec, &f.synced).await.expect("fires");
    assert_eq!(older["outcome"], "superseded", "{older}");
    // A reviewer marked it ready: an update does not make it a draft again.
    f.forge.mark_ready(1);
    let v31 = bump(&f.bare, &["petstore"], "test", "3.1");
    let updated = f.fire(&spec, &v31).await.expect("fires");
    assert_eq!(updated["outcome"], "pr-updated", "{updated}");
    assert_eq!(updated["pullRequest"], opened["pullRequest"]);
    let mr = f.only_mr();
    assert_eq!(mr["title"], "Promote image.version 3.1 from test to prod");
    assert_eq!(mr["labels"], json!(["promotion"]));
    let head = mr["source_branch"].as_str().expect("head").to_string();
    assert_eq!(f.prod_on(&head), "3.1");
    let tip = local::log(&f.bare, &head, 1).expect("log")[0].0.clone();
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
async fn auto_merge_merges_at_once_or_lets_gitlab_merge_when_the_pipeline_succeeds() {
    let f = Lab::start().await;
    // Nothing pending: GitLab merges right away.
    let spec = f.pr_spec(&[("autoMerge", "true")]);
    let r = f.fire(&spec, &f.synced).await.expect("fires");
    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(f.prod_on("main"), "2.0");
    let merged = f.only_mr();
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
    forge_scenarios::rides_out_an_outage_and_a_rate_limit(&f, 429, &headers).await;
    f.server.stop().await;

    let f = Lab::start_with(|c| c.forge.retry_attempts = 2).await;
    f.forge.fail_next(20, 503, &[]);
    let status = f.fire(&f.pr_spec(&[]), &f.synced).await.expect_err("down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    for part in [
        "GitLab API unavailable",
        "HTTP 503",
        "gave up after 2 attempts",
    ] {
        assert!(status.message().contains(part), "{part}: {status:?}");
    }
    f.server.stop().await;
}

#[tokio::test]
async fn a_token_without_permission_is_permission_denied_without_showing_it() {
    let f = Lab::start().await;
    let message = forge_scenarios::token_without_permission(&f, "GitLab", TOKEN).await;
    assert!(message.contains("insufficient_scope"), "{message}");

    // May open merge requests, but not merge into the protected branch.
    f.forge.restrict_token(false);
    f.forge.forbid_merge(true);
    let status = f
        .fire(&f.pr_spec(&[("autoMerge", "true")]), &f.synced)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("may not merge into the target branch"),
        "{status:?}"
    );
    assert!(!status.message().contains(TOKEN));
    assert_eq!(f.prod_on("main"), "1.0");
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn refuses_rebase_and_foreign_api_urls_before_anything_is_sent() {
    let f = Lab::start().await;
    let pushes = f.forge.git.pushes();

    let status = f
        .fire(&f.pr_spec(&[("mergeMethod", "rebase")]), &f.synced)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("rebase is not available on GitLab"),
        "{status:?}"
    );

    let spec = f.pr_spec(&[("forgeApiUrl", "https://gitlab.example.net/api/v4")]);
    let status = f.fire(&spec, &f.synced).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("not on the repository's host"),
        "{status:?}"
    );
    assert!(f.forge.requests().is_empty(), "no call reached GitLab");
    assert_eq!(f.forge.git.pushes(), pushes, "nothing pushed");
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
