//! The git promotion engine against a real git smart-HTTP server with basic authentication:
//! races, concurrency, an unreachable remote, refused credentials, superseded versions, and a
//! sentinel password that must never show up in a log line or an error.

use std::sync::mpsc;

use crate::support::{engine::*, git_server::GitServer, *};
use phasegate::{
    ErrorKind,
    credentials::{Credentials, Secret},
    git::{GitError, GitPromoter, GitSettings, PromotionOutcome, PromotionResult, local},
    spec::Phase,
};

const WRONG: &str = "SENTINEL-wrong-91c2";

fn assert_no_secret_leaked(errors: &[String]) {
    let logs = logs();
    assert!(!logs.contains("SENTINEL"), "a password was logged:\n{logs}");
    for e in errors {
        assert!(!e.contains("SENTINEL"), "a password is in an error: {e}");
    }
}

#[tokio::test]
async fn promotes_over_authenticated_smart_http_and_keeps_others_commits() {
    let (_d, bare, server, synced) = served(&["petstore"]).await;
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    // Someone else pushes between phasegate's fetch and its push: the push is retried on the
    // new head and both commits survive.
    let other = bare.clone();
    server.before_next_push(move || {
        local::commit_files(
            &other,
            "main",
            &[("README.md", "hello\n")],
            "Someone else's commit",
        )
        .expect("commit");
    });

    let result = promoter
        .promote(promotion(&server.url("gitops"), "petstore", &synced))
        .await
        .expect("promotes");

    assert_eq!(result.outcome, PromotionOutcome::Promoted);
    assert_eq!(result.push_attempts, 2, "the first push lost the race");
    assert_eq!(
        (result.version.as_str(), result.previous.as_str()),
        ("2.0", "1.0")
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    let log = local::log(&bare, "main", 3).expect("log");
    assert_eq!(log[0].0, result.commit.expect("commit"));
    assert_eq!(log[1].1, "Someone else's commit");
    let shown = local::show(&bare, &log[0].0).expect("show");
    assert!(
        shown.contains("Author: phasegate <ci-bot@example.com>"),
        "{shown}"
    );
    assert_no_secret_leaked(&[]);
}

#[tokio::test]
async fn twenty_concurrent_promotions_of_twenty_apps_all_land() {
    let apps: Vec<String> = (0..20).map(|i| format!("app{i:02}")).collect();
    let names: Vec<&str> = apps.iter().map(String::as_str).collect();
    let (_d, bare, server, synced) = served(&names).await;
    let before = commit_count(&bare);
    // Four promoters with their own caches stand for four replicas racing on one branch.
    let caches: Vec<_> = (0..4).map(|_| tempdir()).collect();
    let promoters: Vec<GitPromoter> = caches
        .iter()
        .map(|c| GitPromoter::new(settings(&c.1, Some(PASSWORD))))
        .collect();

    let results: Vec<PromotionResult> = promote_at_once(apps.iter().enumerate().map(|(i, app)| {
        let p = promotion(&server.url("gitops"), app, &synced);
        (promoters[i % 4].clone(), p)
    }))
    .await
    .into_iter()
    .map(|r| r.expect("promotes"))
    .collect();

    assert!(
        results
            .iter()
            .all(|r| r.outcome == PromotionOutcome::Promoted)
    );
    assert_eq!(
        commit_count(&bare),
        before + 20,
        "20 commits landed, none lost"
    );
    for app in &apps {
        assert_eq!(version_of(&bare, app, "prod"), "2.0", "{app}");
    }
    assert_no_secret_leaked(&[]);
}

#[tokio::test]
async fn concurrent_promotions_in_one_process_share_pushes_but_keep_a_commit_each() {
    let apps: Vec<String> = (0..30).map(|i| format!("app{i:02}")).collect();
    let names: Vec<&str> = apps.iter().map(String::as_str).collect();
    let (_d, bare, server, synced) = served(&names).await;
    let before = commit_count(&bare);
    let pushes_before = server.pushes();
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let url = server.url("gitops");
    // One promotion in the crowd cannot work: its target file does not exist.
    let mut broken = promotion(&url, "app00", &synced);
    broken.target = Phase::parse("target", "staging").expect("phase");
    broken.run_id = "test-broken".into();
    let promotions = apps
        .iter()
        .map(|app| promotion(&url, app, &synced))
        .chain([broken]);

    let mut results = promote_at_once(promotions.map(|p| (promoter.clone(), p))).await;

    let failed = results
        .pop()
        .expect("the broken one")
        .expect_err("no staging file");
    assert_eq!(failed.kind(), ErrorKind::NotFound, "{failed}");
    assert!(
        failed.to_string().contains("values-staging.yaml"),
        "{failed}"
    );
    let results: Vec<PromotionResult> = results.into_iter().map(|r| r.expect("promotes")).collect();
    assert!(
        results
            .iter()
            .all(|r| r.outcome == PromotionOutcome::Promoted)
    );
    assert_eq!(commit_count(&bare), before + 30, "a commit per promotion");
    let commits: std::collections::HashSet<_> = results.iter().map(|r| r.commit.clone()).collect();
    assert_eq!(commits.len(), 30, "each answer names its own commit");
    for app in &apps {
        assert_eq!(version_of(&bare, app, "prod"), "2.0", "{app}");
    }
    let pushes = server.pushes() - pushes_before;
    assert!(
        pushes < 30,
        "promotions waiting for the clone went out together: {pushes} pushes"
    );
    let counted: u32 = results.iter().map(|r| r.push_attempts).sum();
    assert_eq!(counted as usize, pushes, "each push is counted once");
}

#[tokio::test]
async fn runs_admitted_a_few_at_a_time_still_share_pushes() {
    // As the server admits runs (`maxRuns`): each finished run lets one more in. A promotion
    // taken along by another's push must not then wait to lead the latecomers one by one.
    let apps: Vec<String> = (0..24).map(|i| format!("app{i:02}")).collect();
    let names: Vec<&str> = apps.iter().map(String::as_str).collect();
    let (_d, bare, server, synced) = served(&names).await;
    let (before, pushes_before) = (commit_count(&bare), server.pushes());
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(6));

    let tasks: Vec<_> = apps
        .iter()
        .map(|app| {
            let (promoter, permits) = (promoter.clone(), permits.clone());
            let p = promotion(&server.url("gitops"), app, &synced);
            tokio::spawn(async move {
                let _run = permits.acquire_owned().await.expect("permit");
                promoter.promote(p).await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("promotes");
    }

    assert_eq!(commit_count(&bare), before + 24);
    let pushes = server.pushes() - pushes_before;
    assert!(
        pushes <= 12,
        "24 promotions, 6 at a time, took {pushes} pushes"
    );
}

#[tokio::test]
async fn an_unreachable_remote_is_unavailable_and_left_unchanged() {
    let (_d, bare, mut server, synced) = served(&["petstore"]).await;
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let before = commit_count(&bare);
    let url = server.url("gitops");

    server.stop().await;
    let down = promoter
        .promote(promotion(&url, "petstore", &synced))
        .await
        .expect_err("down");
    assert_eq!(down.kind(), ErrorKind::Unavailable, "{down}");

    // Down in the middle of the run: the fetch went through, the push never arrives.
    server.restart().await;
    let (reached_tx, reached_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    server.before_next_push(move || {
        let _ = reached_tx.send(());
        let _ = release_rx.recv();
    });
    let run = tokio::spawn({
        let (promoter, p) = (promoter.clone(), promotion(&url, "petstore", &synced));
        async move { promoter.promote(p).await }
    });
    tokio::task::spawn_blocking(move || reached_rx.recv())
        .await
        .expect("join")
        .expect("push reached the server");
    server.stop().await;
    drop(release_tx);
    let mid = run.await.expect("task").expect_err("down mid-run");
    assert_eq!(mid.kind(), ErrorKind::Unavailable, "{mid}");
    assert_eq!(commit_count(&bare), before, "remote unchanged");
    // The remote is intact.
    succeed(
        std::process::Command::new("git")
            .args(["fsck", "--full", "--strict"])
            .current_dir(&bare),
        "git fsck",
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");

    server.restart().await;
    let retried = promoter
        .promote(promotion(&url, "petstore", &synced))
        .await
        .expect("a retry succeeds");
    assert_eq!(retried.outcome, PromotionOutcome::Promoted);
    assert_no_secret_leaked(&[
        down.to_string(),
        mid.to_string(),
        format!("{down:?}"),
        format!("{mid:?}"),
    ]);
}

#[tokio::test]
async fn refused_or_missing_credentials_are_permission_denied() {
    let (_d, bare, server, synced) = served(&["petstore"]).await;
    let before = commit_count(&bare);
    let mut errors = Vec::new();
    for password in [Some(WRONG), None] {
        let cache = tempdir();
        let promoter = GitPromoter::new(settings(&cache.1, password));
        let err = promoter
            .promote(promotion(&server.url("gitops"), "petstore", &synced))
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(matches!(err, GitError::AuthRejected(_)), "{err:?}");
        errors.push(err.to_string());
        errors.push(format!("{err:?}"));
    }
    // Per-request credentials (a Secret) win over the server's own.
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(WRONG)));
    let mut p = promotion(&server.url("gitops"), "petstore", &synced);
    p.credentials = Some(Credentials {
        username: USER.into(),
        password: Secret::new(PASSWORD),
        email: None,
    });
    promoter
        .promote(p)
        .await
        .expect("the request's credentials work");
    assert_eq!(commit_count(&bare), before + 1);
    assert_no_secret_leaked(&errors);
}

/// A front that lets phasegate fetch but refuses its push with a 403 (a path restriction
/// before the git server): the refusal comes with the answer to the push's POST, after the
/// refs were read, and is still `PERMISSION_DENIED` with the status, not `UNAVAILABLE`.
#[tokio::test]
async fn a_push_refused_with_403_after_the_refs_is_permission_denied() {
    capture_logs();
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let locked = axum::Router::new().route(
        "/gitops.git/git-receive-pack",
        axum::routing::post(|| async { axum::http::StatusCode::FORBIDDEN }),
    );
    let server = GitServer::start_with_api(&root, USER, PASSWORD, Some(locked)).await;
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));

    let err = promoter
        .promote(promotion(&server.url("gitops"), "petstore", &synced))
        .await
        .expect_err("refused");

    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        matches!(&err, GitError::AuthRejected(why) if why.contains("403")),
        "{err:?}"
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
}

/// A front answering the refs of `/{from}.git` with a redirect to `location(query)`.
fn redirecting(from: &str, location: fn(&str) -> String) -> axum::Router {
    axum::Router::new().route(
        &format!("/{from}.git/info/refs"),
        axum::routing::get(move |uri: axum::http::Uri| async move {
            let to = location(uri.query().unwrap_or_default());
            (
                axum::http::StatusCode::MOVED_PERMANENTLY,
                [("location", to)],
            )
        }),
    )
}

/// A repository moved on its own host: the first request is redirected, and every request
/// after it (the fetch's and the push's POSTs) goes where the redirect led, as git does.
#[tokio::test]
async fn a_remote_moved_on_its_own_host_is_followed_for_the_whole_promotion() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let moved = redirecting("moved", |query| format!("/gitops.git/info/refs?{query}"));
    let server = GitServer::start_with_api(&root, USER, PASSWORD, Some(moved)).await;
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));

    let result = promoter
        .promote(promotion(&server.url("moved"), "petstore", &synced))
        .await
        .expect("promotes through the redirect");

    assert_eq!(result.outcome, PromotionOutcome::Promoted);
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
}

/// A remote whose redirects never end: phasegate stops after 15 hops, as libgit2 does.
#[tokio::test]
async fn a_remote_redirecting_without_end_is_refused() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let endless = redirecting("loop", |query| format!("/loop.git/info/refs?{query}"));
    let server = GitServer::start_with_api(&root, USER, PASSWORD, Some(endless)).await;
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));

    let err = promoter
        .promote(promotion(&server.url("loop"), "petstore", &synced))
        .await
        .expect_err("refused");

    assert!(err.to_string().contains("too many redirects"), "{err}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
}

#[tokio::test]
async fn an_older_version_never_overwrites_a_newer_promotion() {
    let (_d, bare, server, synced_2) = served(&["petstore"]).await;
    let synced_3 = bump(&bare, &["petstore"], "test", "3.0");
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let url = server.url("gitops");

    let newer = promoter
        .promote(promotion(&url, "petstore", &synced_3))
        .await
        .expect("3.0");
    assert_eq!(newer.outcome, PromotionOutcome::Promoted);
    // The slow test of 2.0 finishes after 3.0 was promoted.
    let older = promoter
        .promote(promotion(&url, "petstore", &synced_2))
        .await
        .expect("2.0");

    assert_eq!(older.outcome, PromotionOutcome::Superseded);
    assert_eq!(version_of(&bare, "petstore", "prod"), "3.0");
    let again = promoter
        .promote(promotion(&url, "petstore", &synced_3))
        .await
        .expect("3.0 again");
    assert_eq!(again.outcome, PromotionOutcome::AlreadyPromoted);
}

#[tokio::test]
async fn an_older_version_waiting_beside_a_newer_one_does_not_win() {
    let (_d, bare, server, synced_2) = served(&["petstore", "cart"]).await;
    let synced_3 = bump(&bare, &["petstore"], "test", "3.0");
    let pushes_before = server.pushes();
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let url = server.url("gitops");
    let mut older = promotion(&url, "petstore", &synced_2);
    older.run_id = "test-older".into();
    // cart holds the clone while both petstore versions queue behind it, the newer first:
    // they go out together, the older one decided against the newer one's unpushed commit.
    let promotions = [
        promotion(&url, "cart", &synced_2),
        promotion(&url, "petstore", &synced_3),
        older,
    ];

    let outcomes: Vec<PromotionOutcome> =
        promote_at_once(promotions.into_iter().map(|p| (promoter.clone(), p)))
            .await
            .into_iter()
            .map(|r| r.expect("answers").outcome)
            .collect();

    use PromotionOutcome::{Promoted, Superseded};
    assert_eq!(outcomes, [Promoted, Promoted, Superseded]);
    assert_eq!(version_of(&bare, "petstore", "prod"), "3.0");
    assert_eq!(
        server.pushes() - pushes_before,
        2,
        "cart, then both petstores"
    );
}

#[tokio::test]
async fn refuses_a_commit_only_on_another_branch_unless_the_spec_opts_out() {
    let (_d, bare, server, _) = served(&["petstore"]).await;
    let file = values_path("petstore", "test");
    let hotfix = local::commit_files(
        &bare,
        "hotfix",
        &[(&file, &values("2.1"))],
        "hotfix in test",
    )
    .expect("hotfix");
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let url = server.url("gitops");
    // Warm the cache with main only, then promote a commit that lives only on another branch
    // of the served repository (a feature branch, a pull request head).
    promoter
        .promote(promotion(
            &url,
            "petstore",
            &local::log(&bare, "main", 1).expect("log")[0].0,
        ))
        .await
        .expect("warm");

    let prod = version_of(&bare, "petstore", "prod");
    let refused = promoter
        .promote(promotion(&url, "petstore", &hotfix[..10]))
        .await
        .expect_err("not on main");
    assert_eq!(refused.kind(), ErrorKind::FailedPrecondition, "{refused}");
    let message = refused.to_string();
    assert!(
        message.contains(&hotfix)
            && message.contains("`main`")
            && message.contains("allowUnmergedSource"),
        "{message}"
    );
    assert_eq!(
        version_of(&bare, "petstore", "prod"),
        prod,
        "nothing pushed"
    );

    let mut opted_out = promotion(&url, "petstore", &hotfix[..10]);
    opted_out.allow_unmerged_source = true;
    let result = promoter.promote(opted_out).await.expect("found");

    assert_eq!(result.version, "2.1");
    assert_eq!(result.source_commit, hotfix);
    let missing = promoter
        .promote(promotion(&url, "petstore", "abcdef0123456789"))
        .await
        .expect_err("no such commit");
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
}

#[tokio::test]
async fn a_corrupt_cache_is_detected_and_cloned_again() {
    let (_d, bare, server, synced) = served(&["petstore"]).await;
    let cache = tempdir();
    let promoter = GitPromoter::new(settings(&cache.1, Some(PASSWORD)));
    let url = server.url("gitops");
    promoter
        .promote(promotion(&url, "petstore", &synced))
        .await
        .expect("warm");
    for clone in std::fs::read_dir(&cache.1).expect("cache") {
        let clone = clone.expect("entry").path();
        if !clone.is_dir() {
            continue; // the clone's lock file beside it
        }
        std::fs::remove_dir_all(clone.join("objects")).expect("break objects");
        std::fs::write(clone.join("HEAD"), "garbage").expect("break HEAD");
    }
    let synced_3 = bump(&bare, &["petstore"], "test", "3.0");

    let result = promoter
        .promote(promotion(&url, "petstore", &synced_3))
        .await
        .expect("recovers");

    assert_eq!(result.outcome, PromotionOutcome::Promoted);
    assert_eq!(version_of(&bare, "petstore", "prod"), "3.0");
}

#[tokio::test]
async fn gives_up_with_aborted_when_the_branch_keeps_moving() {
    let (_d, bare, server, synced) = served(&["petstore"]).await;
    let cache = tempdir();
    let promoter = GitPromoter::new(GitSettings {
        push_attempts: 1,
        ..settings(&cache.1, Some(PASSWORD))
    });
    let other = bare.clone();
    server.before_next_push(move || {
        local::commit_files(&other, "main", &[("README.md", "race\n")], "racing commit")
            .expect("commit");
    });

    let err = promoter
        .promote(promotion(&server.url("gitops"), "petstore", &synced))
        .await
        .expect_err("aborted");

    assert_eq!(err.kind(), ErrorKind::Aborted, "{err}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    assert_eq!(
        local::log(&bare, "main", 1).expect("log")[0].1,
        "racing commit"
    );
}

#[tokio::test]
async fn racing_promoters_on_a_local_remote_lose_no_commit() {
    // libgit2's local transport does not refuse a non-fast-forward push by itself: the lease
    // on the fetched head must.
    let apps = ["a1", "a2", "a3", "a4"];
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &apps);
    let before = commit_count(&bare);
    let url = format!("file://{}", bare.display());
    let caches: Vec<_> = apps.iter().map(|_| tempdir()).collect();
    let results = promote_at_once(apps.iter().zip(&caches).map(|(app, cache)| {
        let promoter = GitPromoter::new(settings(&cache.1, None));
        (promoter, promotion(&url, app, &synced))
    }))
    .await;
    for r in results {
        assert_eq!(r.expect("promotes").outcome, PromotionOutcome::Promoted);
    }
    assert_eq!(commit_count(&bare), before + apps.len());
    for app in apps {
        assert_eq!(version_of(&bare, app, "prod"), "2.0", "{app}");
    }
}
