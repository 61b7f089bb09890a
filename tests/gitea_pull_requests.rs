//! Promotion through Gitea and Forgejo pull requests and their commit statuses, end to end
//! through the Sensor path, against the fake Gitea (tests/support/fake_gitea.rs: real git
//! underneath, every request checked against Forgejo's API description, the token only as
//! `Authorization: token …`).

use crate::support::{
    self,
    fake_forge::Fronted,
    fake_gitea::FakeGitea,
    forge_bed::{FakeForge, ForgeBed},
    forge_scenarios::{self, failures},
    *,
};
use phasegate::git::local;
use serde_json::{Value, json};
use tonic::Code;

type Tea = ForgeBed<FakeGitea>;

/// The body of the last merge request phasegate sent.
fn last_merge_body(f: &Tea) -> Value {
    f.forge
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/merge"))
        .and_then(|r| r.body)
        .expect("a merge request")
}

/// Forge calls go through the one HTTP client the server builds at start-up, which trusts
/// `git.caFile` as git does: a forge whose certificate an internal CA signed is reached.
#[tokio::test]
async fn a_forge_on_https_signed_by_the_git_ca_file_is_trusted() {
    let (dir, root) = tempdir();
    support::internal_ca(&root);
    let forge = FakeGitea::start_https(&root, "bot", <FakeGitea as FakeForge>::TOKEN, &root).await;
    let ca = root.join("ca.pem");
    let f = Tea::around(dir, forge, |config, _| {
        config.git.ca_file = Some(ca);
        config.policy.repos.push("https://localhost:*/**".into());
    })
    .await;
    assert!(f.forge.repo_url("gitops").starts_with("https://localhost:"));
    let (_, pr) = forge_scenarios::opens_a_pull_request(&f, &[]).await;
    assert!(
        pr["html_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://localhost:")),
        "{pr}"
    );
    f.server.stop().await;
}

#[tokio::test]
async fn opens_a_wip_pull_request_with_label_ids_and_sets_statuses() {
    let f = Tea::start().await;
    let (promotion, prod) = (f.forge.add_label("promotion"), f.forge.add_label("prod"));
    f.forge.add_label("unrelated");
    let extra = [("prLabels", "promotion,prod"), ("prDraft", "true")];
    let (_, pr) = forge_scenarios::opens_a_pull_request(&f, &extra).await;
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
    f.server.stop().await;
}

#[tokio::test]
async fn a_label_the_repository_lacks_is_refused_naming_it() {
    let f = Tea::start().await;
    f.forge.add_label("promotion");

    let spec = f.pr_spec(&[("prLabels", "promotion,urgent")]);
    let missing = ["label(s) urgent do not exist in org/gitops"];

    f.refused(&spec, &f.synced, Code::FailedPrecondition, &missing)
        .await;

    assert!(f.forge.pulls().is_empty(), "no pull request opened");
    assert_eq!(f.prod_on("main"), "1.0");
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn newer_versions_update_the_pull_request_older_ones_are_superseded() {
    let f = Tea::start().await;
    f.forge.add_label("promotion");
    let extra = [("prDraft", "true"), ("prLabels", "promotion")];
    let title = "WIP: Promote image.version 3.1 from test to prod";
    let pr =
        forge_scenarios::updates_supersedes_and_does_not_reopen(&f, &extra, |_| {}, title).await;
    assert_eq!(pr["labels"].as_array().map(Vec::len), Some(1));
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
    let merged = f.only_pr();
    assert_eq!(merged["merged"], true);
    assert_eq!(r["commit"], merged["merge_commit_sha"]);
    let merge = last_merge_body(&f);
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
    assert_eq!(last_merge_body(&f)["Do"], "squash");
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
    failures::rides_out_an_outage_and_a_rate_limit(&f, 429, &[("retry-after", "1")]).await;
    f.server.stop().await;
    failures::gives_up_on_a_forge_that_stays_down::<FakeGitea>("Gitea").await;
}

#[tokio::test]
async fn a_missing_repository_is_not_found_and_a_refused_request_names_the_answer() {
    failures::not_found_or_refused::<FakeGitea>("Gitea", "org/gitops").await;
}

#[tokio::test]
async fn a_forgejo_token_without_permission_is_permission_denied_without_showing_it() {
    let f = Tea::start().await;
    let forgejo = [("forge", "forgejo")];
    let message = failures::token_without_permission(&f, "Forgejo", &forgejo).await;
    for part in ["HTTP 403", "write:repository"] {
        assert!(message.contains(part), "{part}: {message}");
    }
    f.server.stop().await;
}

#[tokio::test]
async fn refuses_an_api_url_on_another_host_before_anything_is_sent() {
    let f = Tea::start().await;
    let pushes = f.forge.git.pushes();
    let spec = f.pr_spec(&[("forgeApiUrl", "https://collector.example.net/api/v1")]);

    let host = ["not on the repository's host"];

    f.refused(&spec, &f.synced, Code::InvalidArgument, &host)
        .await;

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
