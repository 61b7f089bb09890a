//! Attacks on a served phasegate, each as a Sensor (or anyone reaching port 9000) would try
//! it: credentials sent to a hostile remote, URLs and command paths that try to escape the
//! policy, a closed server asked for what nobody allowed, and a test Job asking for
//! phasegate's own service account. SECURITY.md lists what each one gets.

use crate::support::{git_server::GitServer, *};
use phasegate::{PolicyConfig, config::Config, credentials::ScopeConfig, sensor::Failed};
use tonic::Code;

const PASSWORD: &str = "SENTINEL-scoped-77b1";

async fn refused(server: &TestServer, spec: &[(&str, &str)], repo: &str, sha: &str) -> Failed {
    server
        .sensor()
        .await
        .fire(
            &petstore(repo, spec),
            &event_at(sha, "http://app.test"),
            FROM_TEST,
        )
        .await
        .expect_err("refused")
}

/// A server whose only credential scope is `real`'s address, with the password
/// [`PASSWORD`] (plain http allowed), and whose policy admits any local port and host name.
fn scoped(root: &std::path::Path, real: &GitServer) -> Config {
    let password_file = root.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("write");
    // The operator's globs are broad (any local port, any host name for it), the credential
    // scope is not.
    let mut policy = test_policy();
    policy.repos.push("http://localhost:*/**".into());
    Config {
        policy,
        credentials: vec![ScopeConfig {
            url: real.base_url(),
            username: Some("ci-bot".into()),
            username_file: None,
            password_file,
            allow_insecure_http: true,
        }],
        ..test_config()
    }
}

#[tokio::test]
async fn a_hostile_remote_the_policy_lets_through_never_receives_the_scoped_password() {
    capture_logs();
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let real = GitServer::start(&root, "ci-bot", PASSWORD).await;
    let hostile = GitServer::start(&root, "attacker", "anything").await;
    let real_url = real.url("gitops");
    let server = TestServer::start(scoped(&root, &real)).await;

    for url in [hostile.url("gitops"), hostile.url_as("localhost", "gitops")] {
        let failed = refused(&server, &[("test", "none")], &url, &synced).await;
        assert_eq!(failed.status.code(), Code::PermissionDenied, "{url}");
        assert!(
            failed.status.message().contains("no credential scope"),
            "{}",
            failed.status.message()
        );
    }
    let seen = hostile.authorizations();
    assert!(
        !seen.is_empty(),
        "the hostile remote was asked, and asked for credentials"
    );
    assert!(
        seen.iter().all(String::is_empty),
        "no Authorization header ever reached the hostile remote: {seen:?}"
    );
    let fired = server
        .sensor()
        .await
        .fire(
            &petstore(&real_url, &[("test", "none")]),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect("the scoped remote gets its credentials");
    assert_eq!(fired.response["outcome"], "promoted");
    server.stop().await;
    assert!(!logs().contains("SENTINEL"), "leaked in the log");
}

/// A remote in the credential scope that redirects its first request to another host (as a
/// moved or compromised server would): the redirect is not followed, so neither the password
/// nor the header phasegate sends up front reaches the other host.
#[tokio::test]
async fn a_redirect_to_another_host_takes_no_credentials_there() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let hostile = GitServer::start(&root, "attacker", "anything").await;
    let elsewhere = hostile.url_as("localhost", "gitops");
    let moved = axum::Router::new().route(
        "/moved.git/info/refs",
        axum::routing::get(move |uri: axum::http::Uri| async move {
            let query = uri.query().unwrap_or_default().to_string();
            let location = format!("{elsewhere}/info/refs?{query}");
            (axum::http::StatusCode::FOUND, [("location", location)])
        }),
    );
    let real = GitServer::start_with_api(&root, "ci-bot", PASSWORD, Some(moved)).await;
    let server = TestServer::start(scoped(&root, &real)).await;

    let failed = refused(&server, &[("test", "none")], &real.url("moved"), &synced).await;

    assert!(
        failed.status.message().contains("cannot redirect"),
        "{}",
        failed.status.message()
    );
    assert!(
        hostile.authorizations().is_empty(),
        "a request reached the other host: {:?}",
        hostile.authorizations()
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    server.stop().await;
}

#[tokio::test]
async fn a_credentials_secret_is_never_sent_over_plain_http_unless_allowed() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let git = GitServer::start(&root, "ci-bot", PASSWORD).await;
    let server = TestServer::start(test_config()).await;
    let failed = refused(
        &server,
        &[
            ("test", "none"),
            ("credentialsSecret", "github-credentials"),
        ],
        &git.url("gitops"),
        &synced,
    )
    .await;
    assert_eq!(failed.status.code(), Code::PermissionDenied);
    assert!(
        failed.status.message().contains("plain http://"),
        "{}",
        failed.status.message()
    );
    assert!(git.authorizations().is_empty(), "refused before connecting");
    server.stop().await;
}

#[tokio::test]
async fn a_server_with_no_configuration_refuses_what_nobody_allowed() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let repo = file_url(&bare);
    let closed = TestServer::start(Config::default()).await;
    let failed = refused(&closed, &[("test", "none")], &repo, &synced).await;
    assert_eq!(failed.status.code(), Code::PermissionDenied);
    assert!(
        failed.status.message().contains("policy.repos"),
        "{}",
        failed.status.message()
    );
    closed.stop().await;

    let repos_only = TestServer::start(Config {
        policy: PolicyConfig {
            repos: vec!["file:///**".into()],
            allow_file_repos: true,
            ..PolicyConfig::default()
        },
        ..Config::default()
    })
    .await;
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("test", "none")], "policy.allowNoTests"),
        (
            &[("test", "command"), ("testCommand", "sh -c true")],
            "policy.commands lists none",
        ),
        (
            &[("testImage", "evil.io/miner:1")],
            "policy.images lists none",
        ),
        (
            &[("test", "command"), ("testCommand", "/nonexistent/run")],
            "not an executable",
        ),
    ];
    for (extra, needle) in cases {
        let failed = refused(&repos_only, extra, &repo, &synced).await;
        assert_eq!(failed.status.code(), Code::PermissionDenied, "{needle}");
        assert!(
            failed.status.message().contains(needle),
            "{}",
            failed.status.message()
        );
    }
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    // The HTTP runner reaches only listed targets (tests/attacks.rs tries the rest).
    let app = app(200, "Dog").await;
    let spec = petstore(&repo, &[("test", "http"), ("testPath", "/pet")]);
    let failed = repos_only
        .sensor()
        .await
        .fire(&spec, &event_at(&synced, &app), FROM_TEST)
        .await
        .expect_err("no target is listed");
    assert_eq!(failed.status.code(), Code::PermissionDenied);
    assert!(
        failed
            .status
            .message()
            .contains("policy.testTargets lists none"),
        "{}",
        failed.status.message()
    );
    repos_only.stop().await;
}

#[tokio::test]
async fn urls_and_command_paths_cannot_escape_the_policy() {
    let (_d, root) = tempdir();
    let allowed = root.join("allowed");
    std::fs::create_dir_all(&allowed).expect("mkdir");
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let tests_dir = root.join("tests");
    std::fs::create_dir_all(&tests_dir).expect("mkdir");
    std::os::unix::fs::symlink("/bin/sh", tests_dir.join("sh")).expect("symlink");
    let real_root = std::fs::canonicalize(&root).expect("canonical");
    let server = TestServer::start(Config {
        policy: PolicyConfig {
            repos: vec![format!("file://{}/allowed/*", real_root.display())],
            commands: vec![format!("{}/tests/*", real_root.display())],
            test_service_accounts: vec!["petstore-tests".into()],
            images: vec!["registry.example.com/tests/*".into()],
            allow_no_tests: true,
            allow_file_repos: true,
            ..PolicyConfig::default()
        },
        ..Config::default()
    })
    .await;
    let escapes = [
        format!("file://{}/allowed/../gitops.git", real_root.display()),
        format!("file://{}/allowed/%2e%2e/gitops.git", real_root.display()),
        format!("file://{}/allowed//../gitops.git", real_root.display()),
        format!(
            "file://localhost{}/allowed/../gitops.git",
            real_root.display()
        ),
    ];
    for url in &escapes {
        let failed = refused(&server, &[("test", "none")], url, &synced).await;
        assert_eq!(failed.status.code(), Code::InvalidArgument, "{url}");
        assert!(
            failed.status.message().contains("normal form"),
            "{}",
            failed.status.message()
        );
    }
    let nested = format!("file://{}/allowed/x/../../gitops.git", real_root.display());
    assert_eq!(
        refused(&server, &[("test", "none")], &nested, &synced)
            .await
            .status
            .code(),
        Code::InvalidArgument
    );
    let outside = format!("file://{}/gitops.git", real_root.display());
    let failed = refused(&server, &[("test", "none")], &outside, &synced).await;
    assert_eq!(failed.status.code(), Code::PermissionDenied);

    let inside = format!("file://{}/allowed/gitops.git", real_root.display());
    std::fs::rename(&bare, allowed.join("gitops.git")).expect("move the repo in");
    let sneaky = [
        format!("{}/tests/sh -c true", real_root.display()),
        format!(
            "{}/tests/../../../../../../bin/sh -c true",
            real_root.display()
        ),
        "sh -c true".to_string(),
    ];
    for command in &sneaky {
        let failed = refused(
            &server,
            &[("test", "command"), ("testCommand", command)],
            &inside,
            &synced,
        )
        .await;
        assert_eq!(failed.status.code(), Code::PermissionDenied, "{command}");
        // The refusal names the program as written and the real file it resolves to.
        let shell = std::fs::canonicalize("/bin/sh").expect("sh");
        let program = command.split(' ').next().expect("program");
        let named = format!("test command {program} resolved to {} ", shell.display());
        assert!(
            failed.status.message().contains(&named),
            "{}",
            failed.status.message()
        );
    }
    let job = [
        ("testImage", "registry.example.com/tests/petstore:1"),
        ("testServiceAccount", "phasegate"),
    ];
    let failed = refused(&server, &job, &inside, &synced).await;
    assert_eq!(failed.status.code(), Code::PermissionDenied);
    assert!(
        failed
            .status
            .message()
            .contains("service account phasegate"),
        "{}",
        failed.status.message()
    );
    let nested_image = [("testImage", "registry.example.com/tests/deep/miner:1")];
    let failed = refused(&server, &nested_image, &inside, &synced).await;
    assert_eq!(
        failed.status.code(),
        Code::PermissionDenied,
        "* does not cross /"
    );
    server.stop().await;
}

/// A clone planted or changed in the cache (here: `url.<evil>.insteadOf = <good>` added to the
/// cached clone's config, as another process of the server's user could) does not move the
/// next promotion: phasegate keeps only its own settings in its clones.
#[tokio::test]
async fn a_url_rewrite_planted_in_a_cached_clone_does_not_move_the_promotion() {
    let (_d, root) = tempdir();
    let good = root.join("good.git");
    let synced = gitops_repo(&good, &["petstore"]);
    let evil = root.join("evil.git");
    gitops_repo(&evil, &["petstore"]);
    let cache = root.join("cache");
    let server = TestServer::start(Config {
        cache_dir: cache.clone(),
        ..test_config()
    })
    .await;
    let spec = petstore(&file_url(&good), &[("test", "none")]);
    let fired = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("first promotion");
    assert_eq!(fired.response["outcome"], "promoted");
    let clone = std::fs::read_dir(&cache)
        .expect("cache")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "git") && p.is_dir())
        .expect("a cached clone");
    let mut config = std::fs::read_to_string(clone.join("config")).expect("config");
    config.push_str(&format!(
        "[url \"{}\"]\n\tinsteadOf = {}\n",
        file_url(&evil),
        file_url(&good)
    ));
    std::fs::write(clone.join("config"), config).expect("plant");

    let newer = bump(&good, &["petstore"], "test", "3.0");
    let fired = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&newer), FROM_TEST)
        .await
        .expect("second promotion");
    assert_eq!(fired.response["outcome"], "promoted");
    assert_eq!(version_of(&good, "petstore", "prod"), "3.0");
    assert_eq!(version_of(&evil, "petstore", "prod"), "1.0", "rewritten");
    server.stop().await;
}
