//! Scenarios that every forge passes the same way, end to end through the Sensor path: each
//! forge's test file runs them on its bench ([`ForgeBed`]); what differs between forges (how
//! a reviewer merges or closes, how statuses read) is in [`Reviewed`].

pub(crate) mod failures;
pub(crate) mod reviewed;

use phasegate::git::local;
use serde_json::Value;
use tonic::Code;

use reviewed::{Reviewed, text};

use super::{app, bump, capture_logs, eventually, fire_in_background, forge_bed::ForgeBed, logs};

/// A pull request opened for 2.0 with `extra` spec keys: it carries the versions, the source
/// commit and the run, its branch has 2.0 and main is untouched; the statuses on the source
/// commit go pending then success, linking the run. A reviewer merges it: main has 2.0.
/// Answers the trigger's answer and the pull request as opened.
pub(crate) async fn opens_a_pull_request<F: Reviewed>(
    f: &ForgeBed<F>,
    extra: &[(&str, &str)],
) -> (Value, Value) {
    capture_logs();
    let r = f.fire(&f.pr_spec(extra), &f.synced).await.expect("fires");
    assert_eq!(r["outcome"], "pr-opened", "{r}");
    assert_eq!(r["pullRequest"]["number"], 1);
    let pr = f.only_pr();
    assert_eq!(r["pullRequest"]["url"], text(&pr, F::PAGE), "{pr}");
    let run = r["run"].as_str().expect("run");
    let description = text(&pr, F::DESCRIPTION);
    for part in ["`1.0`", "`2.0`", f.synced.as_str(), run] {
        assert!(
            description.contains(part),
            "{part} missing in {description}"
        );
    }
    assert_eq!(f.prod_on("main"), "1.0", "nothing pushed to main");
    let head = text(&pr, F::HEAD);
    assert!(head.starts_with("phasegate/prod/"), "{head}");
    assert_eq!(f.prod_on(&head), "2.0");
    assert_eq!(r["commit"], text(&pr, F::HEAD_SHA));
    let statuses = f.forge.statuses_on(&f.synced);
    assert_eq!(statuses[0].state, F::PENDING);
    assert_eq!(statuses[1].state, F::SUCCESS);
    assert!(
        statuses[1].description.contains("pull request #1 opened"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses[1].link,
        format!("https://phasegate.example.com/runs/{run}")
    );

    f.forge.review_merge(1);
    assert_eq!(f.prod_on("main"), "2.0");
    f.forge.assert_valid();
    assert!(!logs().contains(F::TOKEN), "the token was logged");
    (r, pr)
}

/// With `extra` spec keys: 3.0 opens a pull request, the older 2.0 is `superseded`, 3.1 updates
/// the same pull request (after `between`, what a reviewer does meanwhile) to `title`, and a
/// commit that deploys the same version is `already-promoted` without touching the branch.
/// Main is untouched. Answers the pull request as updated.
pub(crate) async fn updates_supersedes_and_does_not_reopen<F: Reviewed>(
    f: &ForgeBed<F>,
    extra: &[(&str, &str)],
    between: impl FnOnce(&F),
    title: &str,
) -> Value {
    let spec = f.pr_spec(extra);
    let v3 = bump(&f.bare, &["petstore"], "test", "3.0");
    let opened = f.fire(&spec, &v3).await.expect("fires");
    assert_eq!(opened["outcome"], "pr-opened", "{opened}");
    let older = f.fire(&spec, &f.synced).await.expect("fires");
    assert_eq!(older["outcome"], "superseded", "{older}");

    between(&f.forge);
    let v31 = bump(&f.bare, &["petstore"], "test", "3.1");
    let updated = f.fire(&spec, &v31).await.expect("fires");
    assert_eq!(updated["outcome"], "pr-updated", "{updated}");
    assert_eq!(updated["pullRequest"], opened["pullRequest"]);
    let pr = f.only_pr();
    assert_eq!(pr["title"], title);
    let head = text(&pr, F::HEAD);
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
    pr
}

/// `waitForMerge`: a reviewer merges (`promoted`), closes (`FAILED_PRECONDITION`), or nobody
/// reviews (`DEADLINE_EXCEEDED`).
pub(crate) async fn waits_for_a_reviewer<F: Reviewed>(f: &ForgeBed<F>) {
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
    forge.assert_valid();
}

/// Push mode with `extra` keys: pushed as before, with a status pending then success; failed
/// tests end in the forge's failed state.
pub(crate) async fn push_mode_statuses<F: Reviewed>(f: &ForgeBed<F>, extra: &[(&str, &str)]) {
    let r = f.fire(&f.spec(extra), &f.synced).await.expect("fires");
    assert_eq!(r["outcome"], "promoted", "{r}");
    assert!(r.get("pullRequest").is_none(), "{r}");
    assert_eq!(f.prod_on("main"), "2.0", "push mode pushes as before");
    let statuses = f.forge.statuses_on(&f.synced);
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(statuses[0].state, F::PENDING);
    assert_eq!(statuses[1].state, F::SUCCESS);
    assert!(
        statuses[1]
            .description
            .contains("promoted 2.0 from test to prod"),
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
    assert_eq!(statuses[0].state, F::PENDING);
    assert_eq!(statuses[1].state, F::FAILED);
    assert!(
        statuses[1].description.contains("tests of test failed"),
        "{statuses:?}"
    );
    f.forge.assert_valid();
}
