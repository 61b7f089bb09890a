//! The git engine under conditions real repositories produce: a server hook that refuses one
//! promotion of a batch, promotions of other keys of the same file, merges, rollbacks, and a
//! cache left behind by a killed process.

use std::{os::unix::fs::PermissionsExt, path::Path};

use crate::support::{engine::*, *};
use phasegate::{
    ErrorKind,
    git::{GitPromoter, PromotionOutcome, local},
};

/// A `pre-receive` hook, as a server-side policy would be: refuses any push that changes a file
/// under `apps/{app}/`.
fn refuse_changes_under(bare: &Path, app: &str) {
    let hook = bare.join("hooks").join("pre-receive");
    std::fs::create_dir_all(hook.parent().expect("hooks dir")).expect("hooks dir");
    let script = format!(
        "#!/bin/sh\nwhile read old new ref; do\n  if git diff --name-only \"$old\" \"$new\" | grep -q '^apps/{app}/'; then\n    echo \"changes to apps/{app} are not allowed\" >&2\n    exit 1\n  fi\ndone\n"
    );
    std::fs::write(&hook, script).expect("write hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod hook");
}

#[tokio::test]
async fn a_push_refused_by_a_hook_fails_only_the_offending_promotion_of_its_batch() {
    let apps = ["app00", "app01", "forbidden", "app02"];
    let (_d, bare, server, synced) = served(&apps).await;
    refuse_changes_under(&bare, "forbidden");
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let url = server.url("gitops");

    // app00 holds the clone while the three others queue: they go out as one batch, which
    // the hook refuses because of one of its commits.
    let results = promote_at_once(
        apps.iter()
            .map(|app| (promoter.clone(), promotion(&url, app, &synced))),
    )
    .await;

    let refused = results[2].as_ref().expect_err("the hook refuses it");
    assert_eq!(refused.kind(), ErrorKind::PermissionDenied, "{refused}");
    assert!(
        refused.to_string().contains("pre-receive hook declined"),
        "{refused}"
    );
    for (i, app) in apps.iter().enumerate().filter(|(i, _)| *i != 2) {
        let result = results[i].as_ref().expect("promotes");
        assert_eq!(result.outcome, PromotionOutcome::Promoted, "{app}");
        assert_eq!(version_of(&bare, app, "prod"), "2.0", "{app}");
    }
    assert_eq!(version_of(&bare, "forbidden", "prod"), "1.0");
    assert!(
        logs().contains("batched push refused; pushing one by one"),
        "the three went out as a batch first"
    );
}

#[tokio::test]
async fn an_answer_known_from_the_target_starts_no_test() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced_2 = gitops_repo(&bare, &["petstore"]);
    let synced_3 = bump(&bare, &["petstore"], "test", "3.0");
    // A test campaign that leaves a line behind each time it is started.
    let started = root.join("tests-started");
    let script = format!("echo started >> {}", started.display());
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
    let spec = petstore(
        &file_url(&bare),
        &[("test", "command"), ("testCommand", &command)],
    );
    let server = TestServer::start(test_config()).await;
    let sensor = server.sensor().await;
    let fire = |commit: String| {
        let (sensor, spec) = (sensor.clone(), spec.clone());
        async move {
            sensor
                .fire(&spec, &sync_event(&commit), FROM_TEST)
                .await
                .expect("answers")
                .response
        }
    };
    let runs = || {
        std::fs::read_to_string(&started)
            .unwrap_or_default()
            .lines()
            .count()
    };

    assert_eq!(fire(synced_3.clone()).await["outcome"], "promoted");
    assert_eq!(runs(), 1);

    // The slow event of 2.0 arrives after 3.0 won; then an unrelated commit re-syncs test.
    let older = fire(synced_2).await;
    let unrelated = local::commit_files(&bare, "main", &[("README.md", "hi\n")], "docs")
        .expect("unrelated commit");
    let resynced = fire(unrelated).await;

    assert_eq!(older["outcome"], "superseded", "{older}");
    assert_eq!(resynced["outcome"], "already-promoted", "{resynced}");
    assert_eq!(resynced["version"], "3.0");
    assert!(older.get("test").is_none(), "no test ran: {older}");
    assert_eq!(runs(), 1, "neither started the test campaign");
    server.stop().await;
}

/// A values file with two images, as an umbrella chart has.
fn two_images(frontend: &str, backend: &str) -> String {
    format!("frontend:\n  tag: \"{frontend}\"\nbackend:\n  tag: \"{backend}\"  # api\n")
}

#[tokio::test]
async fn superseded_is_decided_per_key_of_a_shared_file() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let (test, prod) = (values_path("shop", "test"), values_path("shop", "prod"));
    let one = two_images("1", "1");
    local::commit_files(&bare, "main", &[(&test, &one), (&prod, &one)], "initial").expect("init");
    let backend_2 = local::commit_files(&bare, "main", &[(&test, &two_images("1", "2"))], "b2")
        .expect("backend 2 in test");
    let frontend_2 = local::commit_files(&bare, "main", &[(&test, &two_images("2", "2"))], "f2")
        .expect("frontend 2 in test");
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, None));
    let promote = |key: &str, commit: &str| {
        let mut p = promotion(&file_url(&bare), "shop", commit);
        p.keys = vec![key.to_string()];
        let promoter = promoter.clone();
        async move { promoter.promote(p).await.expect("answers").outcome }
    };

    assert_eq!(
        promote("frontend.tag", &frontend_2).await,
        PromotionOutcome::Promoted
    );
    // backend's slow test of an older commit ends after frontend's newer one was promoted.
    assert_eq!(
        promote("backend.tag", &backend_2).await,
        PromotionOutcome::Promoted
    );
    let text = local::read_file(&bare, "main", &prod).expect("prod");
    assert_eq!(text, two_images("2", "2"));
    let head = local::log(&bare, "main", 1).expect("log")[0].0.clone();
    let shown = local::show(&bare, &head).expect("show");
    assert!(shown.contains("Promoted-Keys: backend.tag"), "{shown}");
    // But frontend from that older commit (frontend 1) is superseded by frontend's own newer
    // promotion.
    assert_eq!(
        promote("frontend.tag", &backend_2).await,
        PromotionOutcome::Superseded
    );
}

#[tokio::test]
async fn a_rollback_promotes_an_older_version_and_becomes_the_baseline() {
    let (_d, bare, server, synced_2) = served(&["petstore"]).await;
    let initial = local::log(&bare, "main", 2).expect("log")[1].0.clone();
    let synced_3 = bump(&bare, &["petstore"], "test", "3.0");
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let url = server.url("gitops");
    let promote = |commit: &str, rollback: bool| {
        let mut p = promotion(&url, "petstore", commit);
        p.rollback = rollback;
        let promoter = promoter.clone();
        async move { promoter.promote(p).await.expect("answers") }
    };
    assert_eq!(
        promote(&synced_3, false).await.outcome,
        PromotionOutcome::Promoted
    );
    assert_eq!(
        promote(&synced_2, false).await.outcome,
        PromotionOutcome::Superseded
    );

    let rolled_back = promote(&synced_2, true).await;

    assert_eq!(rolled_back.outcome, PromotionOutcome::Promoted);
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    let shown = local::show(&bare, &rolled_back.commit.expect("commit")).expect("show");
    assert!(shown.contains("Promotion-Rollback: true"), "{shown}");
    // The rollback's source is the new baseline: older than it is superseded...
    assert_eq!(
        promote(&initial, false).await.outcome,
        PromotionOutcome::Superseded
    );
    // ...the rolled-back version stays out when its own source commit comes again (Argo CD
    // re-syncing the test phase at the same commit)...
    assert_eq!(
        promote(&synced_3, false).await.outcome,
        PromotionOutcome::Superseded
    );
    // ...the rolled-back version stays out when the source phase re-syncs with it (a newer
    // commit, the same 3.0), also for a fresh process reading it from history...
    let resynced = local::commit_files(&bare, "main", &[("README.md", "hi\n")], "docs")
        .expect("unrelated commit");
    assert_eq!(
        promote(&resynced, false).await.outcome,
        PromotionOutcome::Superseded
    );
    let fresh_cache = tempdir();
    let fresh = GitPromoter::new(settings(&fresh_cache.1, Some(PASSWORD)));
    let again = fresh.promote(promotion(&url, "petstore", &resynced)).await;
    assert_eq!(
        again.expect("answers").outcome,
        PromotionOutcome::Superseded
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    // ...and a newer version is promoted normally.
    let synced_4 = bump(&bare, &["petstore"], "test", "4.0");
    assert_eq!(
        promote(&synced_4, false).await.outcome,
        PromotionOutcome::Promoted
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "4.0");
}

#[tokio::test]
async fn the_rollback_spec_key_rolls_back_through_the_trigger() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced_2 = gitops_repo(&bare, &["petstore"]);
    let synced_3 = bump(&bare, &["petstore"], "test", "3.0");
    let plain = petstore(&file_url(&bare), &[("test", "none")]);
    let rollback = petstore(&file_url(&bare), &[("test", "none"), ("rollback", "true")]);
    let server = TestServer::start(test_config()).await;
    let sensor = server.sensor().await;
    let fire = |spec: &std::collections::BTreeMap<String, String>, commit: &str| {
        let (sensor, spec, event) = (sensor.clone(), spec.clone(), sync_event(commit));
        async move {
            sensor
                .fire(&spec, &event, FROM_TEST)
                .await
                .expect("answers")
                .response
        }
    };
    assert_eq!(fire(&plain, &synced_3).await["outcome"], "promoted");
    assert_eq!(fire(&plain, &synced_2).await["outcome"], "superseded");

    let rolled_back = fire(&rollback, &synced_2).await;

    assert_eq!(rolled_back["outcome"], "promoted", "{rolled_back}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    let resynced = fire(&plain, &synced_3).await;
    assert_eq!(
        (
            resynced["outcome"].as_str(),
            version_of(&bare, "petstore", "prod")
        ),
        (Some("superseded"), "2.0".to_string()),
        "{resynced}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cache_left_by_a_killed_process_heals_on_the_next_run() {
    let (_d, bare, server, synced_2) = served(&["petstore"]).await;
    let cache = tempdir();
    let url = server.url("gitops");
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    promoter
        .promote(promotion(&url, "petstore", &synced_2))
        .await
        .expect("warm");
    let clone = std::fs::read_dir(&cache.1)
        .expect("cache")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "git"))
        .expect("the clone");
    // What a process killed in the middle of a fetch or a push leaves behind.
    for debris in [
        "packed-refs.lock",
        "shallow.lock",
        "index.lock",
        "refs/remotes/origin/main.lock",
        "objects/pack/tmp_pack_a1b2c3",
    ] {
        std::fs::write(clone.join(debris), "half-written").expect("debris");
    }

    // A new process (a new promoter) promotes again with that cache.
    let synced_3 = bump(&bare, &["petstore"], "test", "3.0");
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let result = promoter
        .promote(promotion(&url, "petstore", &synced_3))
        .await
        .expect("heals the locks");
    assert_eq!(result.outcome, PromotionOutcome::Promoted);
    assert!(!clone.join("refs/remotes/origin/main.lock").exists());

    // A pack cut short (the process died while writing it): the clone is cloned again.
    for pack in std::fs::read_dir(clone.join("objects/pack"))
        .expect("packs")
        .flatten()
    {
        let path = pack.path();
        if path.extension().is_some_and(|e| e == "pack") {
            let len = std::fs::metadata(&path).expect("pack").len();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(len / 2))
                .expect("truncate");
        }
    }
    let synced_4 = bump(&bare, &["petstore"], "test", "4.0");
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let result = promoter
        .promote(promotion(&url, "petstore", &synced_4))
        .await
        .expect("clones again");
    assert_eq!(result.outcome, PromotionOutcome::Promoted);
    assert_eq!(version_of(&bare, "petstore", "prod"), "4.0");
}
