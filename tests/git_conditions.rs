//! The git engine under conditions real repositories produce: a server hook that refuses one
//! promotion of a batch, promotions of other keys of the same file, merges, rollbacks, and a
//! cache left behind by a killed process.

mod support;

use std::{os::unix::fs::PermissionsExt, path::Path};

use phasegate::{
    ErrorKind,
    git::{GitPromoter, PromotionOutcome, local},
};
use support::{engine::*, *};

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
    let server = TestServer::start(phasegate::config::Config::default()).await;
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
