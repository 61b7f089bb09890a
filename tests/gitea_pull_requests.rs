//! Promotion through Gitea and Forgejo pull requests and their commit statuses, end to end
//! through the Sensor path, against the fake Gitea (tests/support/fake_gitea.rs: real git
//! underneath, every request checked against Forgejo's API description, the token only as
//! `Authorization: token …`).

mod support;

use phasegate::{config::Config, git::local};
use serde_json::{Value, json};
use support::{
    fake_gitea::FakeGitea,
    forge_bed::ForgeBed,
    forge_scenarios::{self, Reviewed},
    *,
};
use tonic::Code;

const TOKEN: &str = "gtea-SENTINEL-token-5d21";

type Tea = ForgeBed<FakeGitea>;

impl Tea {
    async fn start() -> Tea {
        Tea::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut Config)) -> Tea {
        Tea::open(TOKEN, configure).await
    }

    fn only_pull(&self) -> Value {
        let pulls = self.forge.pulls();
        assert_eq!(pulls.len(), 1, "{pulls:#?}");
        pulls[0].clone()
    }

    /// The body of the last merge request phasegate sent.
    fn last_merge_body(&self) -> Value {
        self.forge
            .requests()
            .into_iter()
            .rfind(|r| r.path.ends_with("/merge"))
            .and_then(|r| r.body)
            .expect("a merge request")
    }
}

#[tokio::test]
async fn opens_a_wip_pull_request_with_label_ids_and_sets_statuses() {
    capture_logs();
    let f = Tea::start().await;
    let (promotion, prod) = (f.forge.add_label("promotion"), f.forge.add_label("prod"));
    f.forge.add_label("unrelated");
    let spec = f.pr_spec(&[("prLabels", "promotion,prod"), ("prDraft", "true")]);

    let r = f.fire(&spec, &f.synced).await.expect("fires");

    assert_eq!(r["outcome"], "pr-opened", "{r}");
    assert_eq!(r["pullRequest"]["number"], 1);
    let pr = f.only_pull();
    assert_eq!(r["pullRequest"]["url"], pr["html_url"]);
    assert!(
        pr["html_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/org/gitops/pulls/1")),
        "{pr}"
    );
    assert_eq!(
        pr["title"],
        "WIP: Promote image.version 2.0 from test to prod"
    );
    assert_eq!(pr["draft"], true);
    let labels: Vec<&Value> = pr["labels"].as_array().expect("labels").iter().collect();
    assert_eq!(
        labels.iter().map(|l| &l["id"]).collect::<Vec<_>>(),
        [&json!(promotion), &json!(prod)]
    );
    let open = f
        .forge
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/repos/org/gitops/pulls")
        .and_then(|r| r.body)
        .expect("open request");
    assert_eq!(
        open["labels"],
        json!([promotion, prod]),
        "label ids, not names"
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
async fn a_label_the_repository_lacks_is_refused_naming_it() {
    let f = Tea::start().await;
    f.forge.add_label("promotion");

    let status = f
        .fire(&f.pr_spec(&[("prLabels", "promotion,urgent")]), &f.synced)
        .await
        .expect_err("refused");

    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("label(s) urgent do not exist in org/gitops"),
        "{status:?}"
    );
    assert!(f.forge.pulls().is_empty(), "no pull request opened");
    assert_eq!(f.prod_on("main"), "1.0");
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn newer_versions_update_the_pull_request_older_ones_are_superseded() {
    let f = Tea::start().await;
    f.forge.add_label("promotion");
    let spec = f.pr_spec(&[("prDraft", "true"), ("prLabels", "promotion")]);
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
    assert_eq!(
        pr["title"],
        "WIP: Promote image.version 3.1 from test to prod"
    );
    assert_eq!(pr["labels"].as_array().map(Vec::len), Some(1));
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
async fn finds_its_pull_request_among_more_than_a_page_of_others() {
    let f = Tea::start().await;
    f.forge.open_others(60);
    let spec = f.pr_spec(&[]);

    let opened = f.fire(&spec, &f.synced).await.expect("fires");
    assert_eq!(opened["outcome"], "pr-opened", "{opened}");
    assert_eq!(opened["pullRequest"]["number"], 61);
    f.forge.open_others(5);
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");
    let updated = f.fire(&spec, &v3).await.expect("fires");

    assert_eq!(updated["outcome"], "pr-updated", "{updated}");
    assert_eq!(updated["pullRequest"], opened["pullRequest"]);
    // On page 2 of the open ones: read, so not opened twice (Gitea would refuse that, 409).
    assert_eq!(f.forge.pulls().len(), 66, "no second pull request");
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn auto_merge_merges_at_once_or_lets_gitea_merge_when_the_checks_succeed() {
    let f = Tea::start().await;
    // Nothing pending: Gitea merges right away, as asked (rebase).
    let r = f
        .fire(
            &f.pr_spec(&[("autoMerge", "true"), ("mergeMethod", "rebase")]),
            &f.synced,
        )
        .await
        .expect("fires");
    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(f.prod_on("main"), "2.0");
    let merged = f.only_pull();
    assert_eq!(merged["merged"], true);
    assert_eq!(r["commit"], merged["merge_commit_sha"]);
    let merge = f.last_merge_body();
    assert_eq!(merge["Do"], "rebase");
    assert_eq!(merge["head_commit_id"], merged["head"]["sha"]);
    assert_eq!(merge["merge_when_checks_succeed"], true);

    // Required checks are pending: the merge is scheduled, and Gitea merges when they pass.
    f.forge.require_checks();
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");
    let spec = f.pr_spec(&[
        ("autoMerge", "true"),
        ("waitForMerge", "60s"),
        ("mergeMethod", "squash"),
    ]);
    let run = fire_in_background(f.server.sensor().await, &spec, &v3);
    let gitea = &f.forge;
    eventually(|| {
        gitea
            .requests()
            .iter()
            .any(|r| r.path == "/repos/org/gitops/pulls/2/merge")
    })
    .await;
    assert_eq!(f.prod_on("main"), "2.0");
    gitea.pass_checks();
    let r = run.await.expect("task").expect("fires").response;

    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(r["pullRequest"]["number"], 2);
    assert_eq!(f.prod_on("main"), "3.0");
    let pr = &gitea.pulls()[1];
    assert_eq!(r["commit"], pr["merge_commit_sha"]);
    let subject = local::log(&f.bare, "main", 1).expect("log")[0].1.clone();
    assert_eq!(subject, "Promote image.version 3.0 from test to prod (#2)");
    assert_eq!(f.last_merge_body()["Do"], "squash");
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn waits_for_a_reviewer_closed_unmerged_fails_and_the_wait_has_a_deadline() {
    let f = Tea::start().await;
    forge_scenarios::waits_for_a_reviewer(&f).await;
    f.server.stop().await;
}

#[tokio::test]
async fn push_mode_sets_statuses_pending_then_success_or_failure() {
    let f = Tea::start().await;
    forge_scenarios::push_mode_statuses(&f, &[]).await;
    f.server.stop().await;
}

#[tokio::test]
async fn rides_out_an_outage_and_a_rate_limit_then_gives_up_with_the_reason() {
    let f = Tea::start().await;
    // A rate limit (a proxy in front of Codeberg or Gitea): 429 with Retry-After.
    forge_scenarios::rides_out_an_outage_and_a_rate_limit(&f, 429, &[("retry-after", "1")]).await;
    f.server.stop().await;

    let f = Tea::start_with(|c| c.forge.retry_attempts = 2).await;
    f.forge.fail_next(20, 503, &[]);
    let status = f.fire(&f.pr_spec(&[]), &f.synced).await.expect_err("down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    for part in [
        "Gitea API unavailable",
        "HTTP 503",
        "gave up after 2 attempts",
    ] {
        assert!(status.message().contains(part), "{part}: {status:?}");
    }
    f.server.stop().await;

    // A rate limit longer than phasegate waits is not waited out.
    let f = Tea::start().await;
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
async fn a_forgejo_token_without_permission_is_permission_denied_without_showing_it() {
    capture_logs();
    let f = Tea::start().await;
    f.forge.restrict_token(true);
    let spec = f.pr_spec(&[("forge", "forgejo")]);

    let status = f.fire(&spec, &f.synced).await.expect_err("refused");

    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let message = status.message();
    for part in [
        "Forgejo refused phasegate's token",
        "HTTP 403",
        "lacks a permission",
        "write:repository",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert!(!message.contains(TOKEN) && !logs().contains(TOKEN));
    assert!(f.forge.pulls().is_empty());
    assert_eq!(f.prod_on("main"), "1.0");
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn refuses_an_api_url_on_another_host_before_anything_is_sent() {
    let f = Tea::start().await;
    let pushes = f.forge.git.pushes();
    let spec = f.pr_spec(&[("forgeApiUrl", "https://collector.example.net/api/v1")]);

    let status = f.fire(&spec, &f.synced).await.expect_err("refused");

    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("not on the repository's host"),
        "{status:?}"
    );
    assert!(f.forge.requests().is_empty(), "no call reached Gitea");
    assert_eq!(f.forge.git.pushes(), pushes, "nothing pushed");
    f.server.stop().await;
}

#[test]
fn the_api_description_refuses_malformed_requests() {
    let doc = support::swagger::forgejo();
    let check = |m, p, q: &[(&str, &str)], b: Option<Value>| {
        let q: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        support::swagger::check(doc, m, p, &q, b.as_ref())
    };
    let merge = json!({"Do": "squash", "head_commit_id": "abc", "merge_when_checks_succeed": true});
    assert_eq!(
        check("POST", "/repos/o/r/pulls/1/merge", &[], Some(merge)),
        Ok(())
    );
    assert_eq!(
        check(
            "GET",
            "/repos/o/r/pulls",
            &[("state", "open"), ("page", "2"), ("limit", "50")],
            None
        ),
        Ok(())
    );
    for (m, p, q, b, why) in [
        (
            "POST",
            "/repos/o/r/pulls/1/merge",
            vec![],
            Some(json!({"Do": "octopus"})),
            "octopus",
        ),
        (
            "POST",
            "/repos/o/r/pulls/1/merge",
            vec![],
            Some(json!({"merge_method": "merge"})),
            "Do",
        ),
        (
            "POST",
            "/repos/o/r/pulls",
            vec![],
            Some(json!({"labels": ["prod"]})),
            "prod",
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
            vec![("page", "0")],
            None,
            "minimum",
        ),
        (
            "GET",
            "/repos/o/r/pulls",
            vec![("head", "x")],
            None,
            "unknown query parameter",
        ),
        (
            "PUT",
            "/repos/o/r/pulls/1/merge",
            vec![],
            None,
            "no such operation",
        ),
        ("GET", "/repos/o/r/pullz", vec![], None, "no such path"),
        ("GET", "/repos/o/r/pulls/one", vec![], None, "index"),
    ] {
        let err = check(m, p, &q, b).expect_err(why);
        assert!(err.contains(why), "{why}: {err}");
    }
}
