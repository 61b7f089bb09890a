//! The git engine under conditions real repositories produce: a server hook that refuses one
//! promotion of a batch, promotions of other keys of the same file, merges, rollbacks, and a
//! cache left behind by a killed process.

mod support;

use std::{os::unix::fs::PermissionsExt, path::Path};

use phasegate::{
    ErrorKind,
    git::{GitPromoter, PromotionOutcome},
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
