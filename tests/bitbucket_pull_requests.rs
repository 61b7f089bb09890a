//! Promotion through Bitbucket Data Center pull requests and build statuses, end to end through
//! the Sensor path, against the fake Bitbucket (tests/support/fake_bitbucket.rs: real git
//! underneath, served under a context path, every request checked against the operations in
//! tests/support/bitbucket_api.rs).

use crate::support::{
    self,
    fake_bitbucket::FakeBitbucket,
    fake_forge::Fronted,
    forge_bed::ForgeBed,
    forge_scenarios::{self, failures},
    *,
};
use phasegate::git::local;
use serde_json::{Value, json};
use tonic::Code;

type Bed = ForgeBed<FakeBitbucket>;

#[tokio::test]
async fn opens_a_draft_pull_request_with_the_tested_version_and_leaves_the_branch_alone() {
    let f = Bed::start().await;
    let (r, pr) = forge_scenarios::opens_a_pull_request(&f, &[("prDraft", "true")]).await;
    assert!(
        r["pullRequest"]["url"]
            .as_str()
            .is_some_and(|u| u.contains("/bitbucket/projects/PLAT/repos/gitops/pull-requests/1")),
        "{r}"
    );
    assert_eq!(pr["title"], "Promote image.version 2.0 from test to prod");
    assert_eq!(pr["draft"], true);
    assert_eq!(pr["toRef"]["id"], "refs/heads/main");
    let requests = f.forge.requests();
    assert!(
        requests
            .iter()
            .all(|q| q.path.starts_with("/projects/PLAT/repos/gitops/")
                || q.path == "/application-properties"),
        "the project key is upper case in the API: {:?}",
        requests.iter().map(|q| &q.path).collect::<Vec<_>>()
    );
    f.server.stop().await;
}

#[tokio::test]
async fn newer_versions_update_the_pull_request_through_a_stale_version_older_ones_are_superseded()
{
    let f = Bed::start().await;
    // A reviewer edits the pull request between phasegate's read and its write.
    let race = |bitbucket: &FakeBitbucket| bitbucket.race_next_update();
    let title = "Promote image.version 3.1 from test to prod";
    forge_scenarios::updates_supersedes_and_does_not_reopen(&f, &[], race, title).await;
    let puts = f.forge.requests();
    let puts: Vec<_> = puts.iter().filter(|q| q.method == "PUT").collect();
    assert_eq!(puts.len(), 2, "the stale write was read again and retried");
    assert_ne!(
        puts[0].body.as_ref().map(|b| &b["version"]),
        puts[1].body.as_ref().map(|b| &b["version"])
    );
    f.server.stop().await;
}

#[tokio::test]
async fn auto_merge_with_a_wait_merges_with_the_chosen_strategy() {
    let f = Bed::start().await;
    let spec = f.pr_spec(&[
        ("autoMerge", "true"),
        ("waitForMerge", "30s"),
        ("mergeMethod", "squash"),
    ]);

    let r = f.fire(&spec, &f.synced).await.expect("fires");

    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(f.prod_on("main"), "2.0");
    let head = local::log(&f.bare, "main", 1).expect("log")[0].clone();
    assert_eq!(r["commit"], head.0.as_str());
    assert_eq!(
        head.1,
        "Pull request #1: Promote image.version 2.0 from test to prod"
    );
    assert_eq!(f.only_pr()["state"], "MERGED");
    let merge = f.forge.requests();
    let merge = merge
        .iter()
        .find(|q| q.path.ends_with("/merge"))
        .expect("merge");
    assert_eq!(
        merge.body.as_ref().map(|b| b["strategyId"].clone()),
        Some(json!("squash"))
    );
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn bitbucket_merges_by_itself_once_its_merge_checks_pass() {
    let f = Bed::start().await;
    f.forge
        .set_veto(Some("You need 1 successful build before merging"));
    // Without a wait: the answer comes at once, Bitbucket's auto-merge does the rest.
    let r = f
        .fire(&f.pr_spec(&[("autoMerge", "true")]), &f.synced)
        .await
        .expect("fires");
    assert_eq!(r["outcome"], "pr-opened", "{r}");
    assert_eq!(f.prod_on("main"), "1.0");
    f.forge.set_veto(None);
    assert_eq!(
        f.prod_on("main"),
        "2.0",
        "Bitbucket's own auto-merge merged it"
    );

    // With a wait: answered `promoted` once Bitbucket merged it.
    f.forge
        .set_veto(Some("You need 1 successful build before merging"));
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");
    let spec = f.pr_spec(&[("autoMerge", "true"), ("waitForMerge", "60s")]);
    let run = fire_in_background(f.server.sensor().await, &spec, &v3);
    let bitbucket = &f.forge;
    eventually(|| {
        bitbucket
            .requests()
            .iter()
            .any(|q| q.path.ends_with("/2/merge"))
    })
    .await;
    assert_eq!(f.prod_on("main"), "2.0");
    bitbucket.set_veto(None);
    let r = run.await.expect("task").expect("fires").response;
    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(f.prod_on("main"), "3.0");
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn fetch_resource_refuses_labels_when_the_sensor_is_created() {
    let f = Bed::start().await;
    let spec = f.pr_spec(&[("prLabels", "prod")]);
    f.refused_by_fetch_resource(&spec, &["prLabels", "have no labels"])
        .await;
    assert!(f.forge.requests().is_empty());
    assert_eq!(f.forge.git.pushes(), 0);
    f.server.stop().await;
}

#[tokio::test]
async fn refuses_what_this_bitbucket_cannot_do_clearly() {
    let f = Bed::start().await;
    // Labels do not exist on Bitbucket: refused before anything is pushed or asked.
    let labels = f.pr_spec(&[("prLabels", "prod")]);
    f.refused(
        &labels,
        &f.synced,
        Code::InvalidArgument,
        &["have no labels"],
    )
    .await;
    assert!(f.forge.requests().is_empty());
    assert_eq!(f.forge.git.pushes(), 0);

    f.forge.set_auto_merge_enabled(false);
    let auto_merge = f.pr_spec(&[("autoMerge", "true")]);
    let disabled = ["auto-merge is not enabled for PLAT/gitops"];
    f.refused(&auto_merge, &f.synced, Code::FailedPrecondition, &disabled)
        .await;

    f.forge.set_version("8.14.3");
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");
    f.refused(
        &auto_merge,
        &v3,
        Code::FailedPrecondition,
        &["8.15 or later"],
    )
    .await;

    let g = Bed::start().await;
    g.forge.set_version("8.9.0");
    let draft = g.pr_spec(&[("prDraft", "true")]);
    let too_old = ["8.18 or later", "8.9.0"];
    g.refused(&draft, &g.synced, Code::FailedPrecondition, &too_old)
        .await;
    assert!(
        g.forge.pull_requests().is_empty(),
        "no ready pull request instead"
    );
    f.forge.assert_valid();
    g.forge.assert_valid();
    f.server.stop().await;
    g.server.stop().await;
}

#[tokio::test]
async fn waits_for_a_reviewer_declined_fails_and_the_wait_has_a_deadline() {
    let f = Bed::start().await;
    forge_scenarios::waits_for_a_reviewer(&f).await;
    f.server.stop().await;
}

#[tokio::test]
async fn push_mode_sets_build_statuses_linking_the_commit_without_a_run_url() {
    let f = Bed::open(|c| c.forge.run_url = None).await;
    forge_scenarios::push_mode_statuses(&f, &[]).await;
    // Bitbucket requires a link: without a run URL, the commit's page in Bitbucket.
    assert_eq!(
        f.forge.builds(&f.synced)[0]["url"],
        format!(
            "{}/bitbucket/projects/PLAT/repos/gitops/commits/{}",
            f.forge.git.base_url(),
            f.synced
        )
    );
    f.server.stop().await;
}

#[tokio::test]
async fn rides_out_an_outage_honours_retry_after_and_gives_up_with_the_reason() {
    let f = Bed::start().await;
    // Bitbucket's rate limiting: 429 with Retry-After.
    failures::rides_out_an_outage_and_a_rate_limit(&f, 429, &[("retry-after", "1")]).await;
    f.server.stop().await;
    let bitbucket = "Bitbucket Data Center";
    failures::gives_up_on_a_forge_that_stays_down::<FakeBitbucket>(bitbucket).await;
}

#[tokio::test]
async fn a_missing_repository_is_not_found_and_a_refused_request_names_the_answer() {
    let bitbucket = "Bitbucket Data Center";
    failures::not_found_or_refused::<FakeBitbucket>(bitbucket, "PLAT/gitops").await;
}

#[tokio::test]
async fn a_token_without_permission_is_permission_denied_without_showing_it() {
    let f = Bed::start().await;
    let bitbucket = "Bitbucket Data Center";
    let message = failures::token_without_permission(&f, bitbucket, &[]).await;
    for part in ["You are not permitted", "REPO_WRITE on PLAT/gitops"] {
        assert!(message.contains(part), "{part}: {message}");
    }
    f.server.stop().await;
}

#[test]
fn the_request_table_refuses_malformed_requests() {
    let check = |m, p, q: &[(&str, &str)], b: Option<Value>| {
        let q: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        support::bitbucket_api::check(m, p, &q, b.as_ref())
    };
    let sha = "a".repeat(40);
    let builds = format!("/projects/P/repos/r/commits/{sha}/builds");
    let ok = json!({"key": "k", "state": "SUCCESSFUL", "url": "https://x"});
    assert_eq!(check("POST", &builds, &[], Some(ok)), Ok(()));
    for (m, p, q, b, why) in [
        (
            "POST",
            builds.as_str(),
            vec![],
            Some(json!({"key": "k", "state": "SUCCESSFUL"})),
            "url is required",
        ),
        (
            "POST",
            builds.as_str(),
            vec![],
            Some(json!({"key": "k", "state": "success", "url": "u"})),
            "not a build state",
        ),
        (
            "POST",
            "/projects/P/repos/r/commits/abc/builds",
            vec![],
            None,
            "not a full one",
        ),
        (
            "POST",
            "/projects/P/repos/r/pull-requests",
            vec![],
            Some(json!({"title": "t", "fromRef": {"id": "x"}})),
            "fromRef.id",
        ),
        (
            "GET",
            "/projects/P/repos/r/pull-requests",
            vec![("state", "open")],
            None,
            "state=open",
        ),
        (
            "GET",
            "/projects/P/repos/r/pull-requests",
            vec![("head", "x")],
            None,
            "unknown query parameter",
        ),
        (
            "PUT",
            "/projects/P/repos/r/pull-requests/1",
            vec![],
            Some(json!({"title": "t"})),
            "version is required",
        ),
        (
            "POST",
            "/projects/P/repos/r/pull-requests/1/merge",
            vec![],
            None,
            "?version=",
        ),
        (
            "POST",
            "/projects/P/repos/r/pull-requests/1/merge",
            vec![("version", "0")],
            Some(json!({"strategyId": "octopus"})),
            "not a strategy",
        ),
        (
            "DELETE",
            "/projects/P/repos/r/pull-requests/1",
            vec![],
            None,
            "no such operation",
        ),
        ("GET", "/repos/r", vec![], None, "no such resource"),
    ] {
        let err = check(m, p, &q, b).expect_err(why);
        assert!(err.contains(why), "{why}: {err}");
    }
}
