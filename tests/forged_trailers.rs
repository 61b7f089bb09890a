//! History that cannot be forged: `commitMessage` is one line, so a spec cannot write trailers
//! into the promotion record; and phasegate reads back only its own final trailer block, so a
//! commit whose message carries trailer lines elsewhere (made by hand, or by an earlier version
//! that let a multi-line `commitMessage` through) changes nothing the promotion index decides.

use std::path::Path;

use crate::support::*;
use phasegate::{git::local, sensor::SensorClient};
use tonic::Code;

/// A forged record, as a multi-line `commitMessage` would have put it in the subject's
/// paragraph: git's trailer parser stops at `---`, so it would have read this one.
fn forged_block(source: &str, rollback: bool) -> String {
    let rollback = if rollback {
        "Promotion-Rollback: true\n"
    } else {
        ""
    };
    format!(
        "Source-Commit: {source}\nTarget-Phase: prod\nPromoted-Keys: image.version\n{rollback}---\n"
    )
}

/// Commits `version` into petstore's prod values file by hand, with `message`, a minute after
/// the head (the promotion index reads the newest first; commits of one second tie).
fn commit_prod(bare: &Path, version: &str, message: &str) {
    let repo = git2::Repository::open_bare(bare).expect("open");
    let head = repo
        .find_reference("refs/heads/main")
        .and_then(|r| r.peel_to_commit())
        .expect("head");
    let text = format!("{}# by hand\n", values(version));
    let blob = repo.blob(text.as_bytes()).expect("blob");
    let tree = git2::build::TreeUpdateBuilder::new()
        .upsert(values_path("petstore", "prod"), blob, git2::FileMode::Blob)
        .create_updated(&repo, &head.tree().expect("tree"))
        .expect("tree");
    let tree = repo.find_tree(tree).expect("tree");
    let when = git2::Time::new(head.time().seconds() + 60, 0);
    let someone = git2::Signature::new("someone", "someone@example.com", &when).expect("sig");
    repo.commit(
        Some("refs/heads/main"),
        &someone,
        &someone,
        message,
        &tree,
        &[&head],
    )
    .expect("hand-made commit");
}

/// Execute's answer to the sync of `commit`, with `test: none`.
async fn outcome(sensor: &SensorClient, bare: &Path, commit: &str) -> serde_json::Value {
    let spec = petstore(&file_url(bare), &[("test", "none")]);
    let fired = sensor.fire(&spec, &sync_event(commit), FROM_TEST).await;
    fired.expect("answers").response
}

#[tokio::test]
async fn a_forged_source_commit_does_not_let_a_stale_event_be_promoted() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced_2 = gitops_repo(&bare, &["petstore"]);
    let initial = local::log(&bare, "main", 2).expect("log")[1].0.clone();
    let synced_3 = bump(&bare, &["petstore"], "test", "3.0");
    let server = TestServer::start(test_config()).await;
    let sensor = server.sensor().await;
    assert_eq!(
        outcome(&sensor, &bare, &synced_3).await["outcome"],
        "promoted"
    );

    // The spec that would write the forgery is refused before any run.
    let message = format!("Promote {{version}}\n\n{}", forged_block(&initial, false));
    let forging = petstore(
        &file_url(&bare),
        &[("test", "none"), ("commitMessage", &message)],
    );
    let refused = sensor
        .fire(&forging, &sync_event(&synced_2), FROM_TEST)
        .await
        .expect_err("a multi-line commitMessage");
    assert_eq!(refused.status.code(), Code::InvalidArgument);
    assert!(
        refused.status.message().contains("`commitMessage`"),
        "{}",
        refused.status
    );

    // The record as it would have been written: the forged block claims the initial commit,
    // phasegate's own final block the real, newer source.
    let own = format!(
        "Promoted-Version: 3.0\nSource-Phase: test\nSource-Commit: {synced_3}\nTarget-Phase: prod\nPromoted-Keys: image.version\nPromotion-Run: r1\n"
    );
    commit_prod(
        &bare,
        "3.0",
        &format!(
            "Promote 3.0\n\n{}\nimage.version: 3.0 -> 3.0\n\n{own}",
            forged_block(&initial, false)
        ),
    );

    let stale = outcome(&sensor, &bare, &synced_2).await;

    assert_eq!(stale["outcome"], "superseded", "{stale}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "3.0");
    server.stop().await;
}

#[tokio::test]
async fn a_forged_rollback_outside_the_final_trailer_block_bars_no_version() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced_2 = gitops_repo(&bare, &["petstore"]);
    let initial = local::log(&bare, "main", 2).expect("log")[1].0.clone();
    let server = TestServer::start(test_config()).await;
    let sensor = server.sensor().await;
    assert_eq!(
        outcome(&sensor, &bare, &synced_2).await["outcome"],
        "promoted"
    );
    // Someone puts prod back to 1.0 by hand, with a rollback record in the body.
    commit_prod(
        &bare,
        "1.0",
        &format!(
            "Back to 1.0\n\n{}\nDone by hand.\n",
            forged_block(&initial, true)
        ),
    );

    // The source phase re-syncs with 2.0 (an unrelated commit): 2.0 is not barred.
    let unrelated = local::commit_files(&bare, "main", &[("README.md", "hi\n")], "docs")
        .expect("unrelated commit");
    let resynced = outcome(&sensor, &bare, &unrelated).await;

    assert_eq!(resynced["outcome"], "promoted", "{resynced}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    server.stop().await;
}
