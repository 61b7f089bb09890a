//! Promotion through Bitbucket Data Center pull requests and build statuses, end to end through
//! the Sensor path, against the fake Bitbucket (tests/support/fake_bitbucket.rs: real git
//! underneath, served under a context path, every request checked against the operations in
//! tests/support/bitbucket_api.rs).

mod support;

use std::time::Duration;

use phasegate::git::local;
use serde_json::{Value, json};
use support::{fake_bitbucket::FakeBitbucket, forge_bed::ForgeBed, forge_scenarios, *};
use tonic::Code;

const TOKEN: &str = "BBDC-SENTINEL-token-41c9";

type Bed = ForgeBed<FakeBitbucket>;

async fn start() -> Bed {
    Bed::open(TOKEN, |_| {}).await
}

fn only_pr(f: &Bed) -> Value {
    let prs = f.forge.pull_requests();
    assert_eq!(prs.len(), 1, "{prs:#?}");
    prs[0].clone()
}

/// (state, description) of the build statuses on `sha`, in order.
fn build_states(f: &Bed, sha: &str) -> Vec<(String, String)> {
    f.forge
        .builds(sha)
        .iter()
        .map(|b| {
            assert_eq!(b["key"], "phasegate/test->prod");
            (
                b["state"].as_str().unwrap_or("").to_string(),
                b["description"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn opens_a_draft_pull_request_with_the_tested_version_and_leaves_the_branch_alone() {
    capture_logs();
    let f = start().await;
    let spec = f.pr_spec(&[("prDraft", "true")]);

    let r = f.fire(&spec, &f.synced).await.expect("fires");

    assert_eq!(r["outcome"], "pr-opened", "{r}");
    assert_eq!(r["pullRequest"]["number"], 1);
    let pr = only_pr(&f);
    assert_eq!(r["pullRequest"]["url"], pr["links"]["self"][0]["href"]);
    assert!(
        r["pullRequest"]["url"]
            .as_str()
            .is_some_and(|u| u.contains("/bitbucket/projects/PLAT/repos/gitops/pull-requests/1")),
        "{r}"
    );
    assert_eq!(pr["title"], "Promote image.version 2.0 from test to prod");
    assert_eq!(pr["draft"], true);
    assert_eq!(pr["toRef"]["id"], "refs/heads/main");
    let description = pr["description"].as_str().expect("description");
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
    let head = pr["fromRef"]["displayId"].as_str().expect("head");
    assert!(head.starts_with("phasegate/prod/"), "{head}");
    assert_eq!(f.prod_on(head), "2.0");
    assert_eq!(r["commit"], pr["fromRef"]["latestCommit"]);
    let builds = build_states(&f, &f.synced);
    assert_eq!(builds[0].0, "INPROGRESS");
    assert_eq!(builds[1].0, "SUCCESSFUL");
    assert!(builds[1].1.contains("pull request #1 opened"), "{builds:?}");
    let run = r["run"].as_str().expect("run");
    assert_eq!(
        f.forge.builds(&f.synced)[1]["url"],
        format!("https://phasegate.example.com/runs/{run}")
    );
    let requests = f.forge.requests();
    assert!(
        requests
            .iter()
            .all(|q| q.path.starts_with("/projects/PLAT/repos/gitops/")
                || q.path == "/application-properties"),
        "the project key is upper case in the API: {:?}",
        requests.iter().map(|q| &q.path).collect::<Vec<_>>()
    );

    f.forge.merge(1);
    assert_eq!(f.prod_on("main"), "2.0");
    f.forge.assert_valid();
    assert!(!logs().contains(TOKEN), "the token was logged");
    f.server.stop().await;
}

#[tokio::test]
async fn newer_versions_update_the_pull_request_through_a_stale_version_older_ones_are_superseded()
{
    let f = start().await;
    let spec = f.pr_spec(&[]);
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");

    let opened = f.fire(&spec, &v3).await.expect("fires");
    assert_eq!(opened["outcome"], "pr-opened", "{opened}");
    let older = f.fire(&spec, &f.synced).await.expect("fires");
    assert_eq!(older["outcome"], "superseded", "{older}");

    // A reviewer edits the pull request between phasegate's read and its write.
    f.forge.race_next_update();
    let v31 = bump(&f.bare, &["petstore"], "test", "3.1");
    let updated = f.fire(&spec, &v31).await.expect("fires");
    assert_eq!(updated["outcome"], "pr-updated", "{updated}");
    assert_eq!(updated["pullRequest"], opened["pullRequest"]);
    let puts = f.forge.requests();
    let puts: Vec<_> = puts.iter().filter(|q| q.method == "PUT").collect();
    assert_eq!(puts.len(), 2, "the stale write was read again and retried");
    assert_ne!(
        puts[0].body.as_ref().map(|b| &b["version"]),
        puts[1].body.as_ref().map(|b| &b["version"])
    );
    let pr = only_pr(&f);
    assert_eq!(pr["title"], "Promote image.version 3.1 from test to prod");
    let head = pr["fromRef"]["displayId"]
        .as_str()
        .expect("head")
        .to_string();
    assert_eq!(f.prod_on(&head), "3.1");
    let tip = local::log(&f.bare, &head, 1).expect("log")[0].0.clone();

    let same =
        local::commit_files(&f.bare, "main", &[("README.md", "docs\n")], "docs").expect("commit");
    let again = f.fire(&spec, &same).await.expect("fires");
    assert_eq!(again["outcome"], "already-promoted", "{again}");
    assert_eq!(again["pullRequest"], opened["pullRequest"]);
    assert_eq!(local::log(&f.bare, &head, 1).expect("log")[0].0, tip);
    assert_eq!(f.prod_on("main"), "1.0");
    f.forge.assert_valid();
    f.server.stop().await;
}

#[tokio::test]
async fn auto_merge_with_a_wait_merges_with_the_chosen_strategy() {
    let f = start().await;
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
    assert_eq!(only_pr(&f)["state"], "MERGED");
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
    let f = start().await;
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
async fn refuses_what_this_bitbucket_cannot_do_clearly() {
    let f = start().await;
    // Labels do not exist on Bitbucket: refused before anything is pushed or asked.
    let status = f
        .fire(&f.pr_spec(&[("prLabels", "prod")]), &f.synced)
        .await
        .expect_err("labels");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("have no labels"), "{status:?}");
    assert!(f.forge.requests().is_empty());
    assert_eq!(f.forge.git.pushes(), 0);

    f.forge.set_auto_merge_enabled(false);
    let status = f
        .fire(&f.pr_spec(&[("autoMerge", "true")]), &f.synced)
        .await
        .expect_err("auto-merge disabled");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("auto-merge is not enabled for PLAT/gitops"),
        "{status:?}"
    );

    f.forge.set_version("8.14.3");
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");
    let status = f
        .fire(&f.pr_spec(&[("autoMerge", "true")]), &v3)
        .await
        .expect_err("too old for auto-merge");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("8.15 or later"), "{status:?}");

    let g = start().await;
    g.forge.set_version("8.9.0");
    let status = g
        .fire(&g.pr_spec(&[("prDraft", "true")]), &g.synced)
        .await
        .expect_err("too old for drafts");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("8.18 or later"), "{status:?}");
    assert!(status.message().contains("8.9.0"), "{status:?}");
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
    let f = start().await;
    forge_scenarios::waits_for_a_reviewer(&f).await;
    f.server.stop().await;
}

#[tokio::test]
async fn push_mode_sets_build_statuses_linking_the_commit_without_a_run_url() {
    let f = Bed::open(TOKEN, |c| c.forge.run_url = None).await;
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
    let f = start().await;
    let spec = f.pr_spec(&[]);
    f.forge.fail_next(2, 503, &[]);
    let r = f.fire(&spec, &f.synced).await.expect("fires");
    assert_eq!(r["outcome"], "pr-opened", "{r}");

    // Bitbucket's rate limiting: 429 with Retry-After.
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");
    let before = f.forge.requests().len();
    f.forge.fail_next(1, 429, &[("retry-after", "1")]);
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
    f.server.stop().await;

    let f = Bed::open(TOKEN, |c| c.forge.retry_attempts = 2).await;
    f.forge.fail_next(20, 502, &[]);
    let status = f.fire(&f.pr_spec(&[]), &f.synced).await.expect_err("down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let message = status.message();
    assert!(
        message.contains("Bitbucket Data Center API unavailable"),
        "{message}"
    );
    assert!(message.contains("HTTP 502 (injected failure)"), "{message}");
    assert!(message.contains("gave up after 2 attempts"), "{message}");
    f.server.stop().await;
}

#[tokio::test]
async fn a_token_without_permission_is_permission_denied_without_showing_it() {
    capture_logs();
    let f = start().await;
    f.forge.restrict_token(true);

    let status = f
        .fire(&f.pr_spec(&[]), &f.synced)
        .await
        .expect_err("refused");

    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let message = status.message();
    assert!(
        message.contains("Bitbucket Data Center refused phasegate's token"),
        "{message}"
    );
    assert!(message.contains("You are not permitted"), "{message}");
    assert!(message.contains("lacks a permission"), "{message}");
    assert!(message.contains("REPO_WRITE on PLAT/gitops"), "{message}");
    assert!(!message.contains(TOKEN) && !logs().contains(TOKEN));
    assert_eq!(f.prod_on("main"), "1.0");
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
