//! The Argo CD gate (`argocdApp`) against Application objects as Argo CD's controller writes
//! them (`support::argo_cd` on the fake API server): a commit is tested only once Argo CD
//! itself calls it deployed, and a sync that failed ends the run with Argo CD's reason.

use std::{path::Path, time::Duration};

use crate::{
    console::get_text,
    support::{argo_cd::ArgoApp, fake_kube::FakeKube, *},
};
use phasegate::{
    config::{Config, KubernetesConfig},
    sensor::{Failed, Firing},
};
use tonic::Code;

const OLD: &str = "1111111111111111111111111111111111111111";

fn config(kube: &FakeKube) -> Config {
    Config {
        kubernetes: KubernetesConfig {
            disabled: false,
            namespace: Some("argo-events".into()),
            api_url: Some(kube.url()),
            ..KubernetesConfig::default()
        },
        ..test_config()
    }
}

fn gated(bare: &Path, timeout: &str) -> std::collections::BTreeMap<String, String> {
    petstore(
        &file_url(bare),
        &[
            ("test", "none"),
            ("argocdApp", "argocd/petstore-test"),
            ("argocdTimeout", timeout),
        ],
    )
}

async fn fire(
    server: &TestServer,
    bare: &Path,
    timeout: &str,
    sha: &str,
) -> Result<Firing, Failed> {
    let spec = gated(bare, timeout);
    server
        .sensor()
        .await
        .fire(&spec, &sync_event(sha), FROM_TEST)
        .await
}

fn refused(result: Result<Firing, Failed>) -> String {
    let failed = result.expect_err("the gate refuses");
    assert_eq!(
        failed.status.code(),
        Code::FailedPrecondition,
        "{}",
        failed.status.message()
    );
    failed.status.message().to_string()
}

#[tokio::test]
async fn waits_through_the_sync_and_the_rollout_then_promotes() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD);
    let server = TestServer::start(config(&kube)).await;

    let run = fire_in_background(server.sensor().await, &gated(&bare, "1m"), &synced);
    app.start_sync(&synced);
    app.sync(&synced, "Succeeded", "successfully synced (all tasks run)");
    app.reconcile("Synced", "Progressing");
    assert_eq!(
        version_of(&bare, "petstore", "prod"),
        "1.0",
        "not while Progressing"
    );
    app.reconcile("Synced", "Healthy");

    let fired = run.await.expect("task").expect("promotes once deployed");
    assert_eq!(fired.response["outcome"], "promoted");
    // The console's board shows the source phase's health as the gate saw it.
    let board = get_text(server.console_url()).await;
    let test = board.find(">test<").expect("the test phase");
    let prod = board.find(">prod<").expect("the prod phase");
    assert!(board[test..prod].contains(">Healthy</span>"), "{board}");
    let run = fired.response["run"].as_str().expect("run");
    let page = get_text(format!("{}/runs/{run}", server.console_url())).await;
    assert!(page.contains("<dt>Argo CD</dt><dd>Healthy</dd>"), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn a_failed_sync_that_leaves_the_old_pods_healthy_is_refused_at_once() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD);
    app.sync(
        &synced,
        "Failed",
        "one or more objects failed to apply: Deployment.apps \"petstore\" is invalid",
    );
    app.reconcile("OutOfSync", "Healthy");
    let server = TestServer::start(config(&kube)).await;

    // The timeout is long: the refusal must come from the failed sync, not from waiting.
    let message = refused(fire(&server, &bare, "10m", &synced).await);

    assert!(message.contains("argocd/petstore-test"), "{message}");
    assert!(message.contains("ended Failed"), "{message}");
    assert!(message.contains("is invalid"), "{message}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    server.stop().await;
}

#[tokio::test]
async fn health_from_before_the_sync_finished_does_not_count() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD);
    // Synced and Healthy, but computed before the operation ended: the old pods' health.
    app.reconcile("Synced", "Healthy");
    app.sync(&synced, "Succeeded", "successfully synced (all tasks run)");
    let server = TestServer::start(config(&kube)).await;

    let message = refused(fire(&server, &bare, "500ms", &synced).await);

    assert!(message.contains("not yet reconciled"), "{message}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    server.stop().await;
}

#[tokio::test]
async fn a_rollout_that_turns_degraded_ends_the_wait_with_the_health() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD);
    app.sync(&synced, "Succeeded", "successfully synced (all tasks run)");
    app.reconcile("Synced", "Progressing");
    let server = TestServer::start(config(&kube)).await;

    // The timeout is long: the refusal must come from the transition, not from waiting.
    let run = fire_in_background(server.sensor().await, &gated(&bare, "10m"), &synced);
    eventually(|| kube.watches_started() >= 1).await;
    app.reconcile("Synced", "Degraded");
    let message = refused(run.await.expect("task"));

    assert!(
        message.contains("from Progressing to Degraded"),
        "{message}"
    );
    let board = get_text(server.console_url()).await;
    assert!(
        board.contains(">not ready</span>") && board.contains("from Progressing to Degraded"),
        "the board says the phase is not ready, and why on hover: {board}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_hpa_degraded_for_a_while_after_the_rollout_is_waited_out() {
    // Right after a rollout an HPA has no metrics of the new pods yet and Argo CD calls it
    // (and so the app) Degraded for about a minute, then Healthy.
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD);
    app.sync(&synced, "Succeeded", "successfully synced (all tasks run)");
    app.reconcile("Synced", "Degraded");
    let server = TestServer::start(config(&kube)).await;

    let run = fire_in_background(server.sensor().await, &gated(&bare, "1m"), &synced);
    eventually(|| kube.watches_started() >= 1 || run.is_finished()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!run.is_finished(), "a first Degraded is waited out");
    app.reconcile("Synced", "Healthy");

    let fired = run.await.expect("task").expect("promotes once Healthy");
    assert_eq!(fired.response["outcome"], "promoted");
    server.stop().await;
}

#[tokio::test]
async fn a_degraded_app_that_stays_degraded_says_so_at_the_timeout() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD);
    app.sync(&synced, "Succeeded", "successfully synced (all tasks run)");
    app.reconcile("Synced", "Degraded");
    let server = TestServer::start(config(&kube)).await;

    let message = refused(fire(&server, &bare, "1s", &synced).await);

    assert!(message.contains("within 1s"), "{message}");
    assert!(message.contains("Degraded"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn a_multi_source_app_and_a_commit_with_nothing_to_sync_pass() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let first = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD).multi_source();
    app.sync(&first, "Succeeded", "successfully synced (all tasks run)");
    app.reconcile("Synced", "Healthy");
    let server = TestServer::start(config(&kube)).await;

    let fired = fire(&server, &bare, "1m", &first)
        .await
        .expect("multi-source");
    assert_eq!(fired.response["outcome"], "promoted");

    // A commit that renders the same manifests: Argo CD compares at it and does not sync.
    let second = bump(&bare, &["petstore"], "test", "3.0");
    app.compare_at(&second);
    let fired = fire(&server, &bare, "1m", &second)
        .await
        .expect("no-op commit");
    assert_eq!(fired.response["outcome"], "promoted");
    server.stop().await;
}

#[tokio::test]
async fn the_gate_outlives_closed_watches_and_a_410() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    kube.close_watches_after(Duration::from_millis(200));
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD);
    let server = TestServer::start(config(&kube)).await;

    let run = fire_in_background(server.sensor().await, &gated(&bare, "1m"), &synced);
    eventually(|| kube.watches_started() >= 3).await;
    kube.compact();
    app.sync(&synced, "Succeeded", "successfully synced (all tasks run)");
    app.reconcile("Synced", "Healthy");

    let fired = run
        .await
        .expect("task")
        .expect("promotes after re-watching");
    assert_eq!(fired.response["outcome"], "promoted");
    server.stop().await;
}

#[tokio::test]
async fn a_missing_application_is_not_found() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube)).await;

    let failed = fire(&server, &bare, "1m", &synced)
        .await
        .expect_err("no app");

    assert_eq!(
        failed.status.code(),
        Code::NotFound,
        "{}",
        failed.status.message()
    );
    assert!(failed.status.message().contains("argocd/petstore-test"));
    server.stop().await;
}

#[tokio::test]
async fn a_later_commit_for_another_app_does_not_hide_the_synced_commit() {
    // A busy monorepo: the commit was synced, then a commit that changes only another app moved
    // the comparison past it. No operation ran since: what runs is still what the sync applied.
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore", "catalog"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD);
    app.sync(&synced, "Succeeded", "successfully synced (all tasks run)");
    app.reconcile("Synced", "Healthy");
    let other_app = bump(&bare, &["catalog"], "test", "3.0");
    app.compare_at(&other_app);
    let server = TestServer::start(config(&kube)).await;

    let fired = fire(&server, &bare, "5s", &synced)
        .await
        .expect("the synced commit is still what runs");

    assert_eq!(fired.response["outcome"], "promoted");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    server.stop().await;
}

#[tokio::test]
async fn a_commit_whose_deployment_a_later_sync_replaced_is_answered_at_once() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD);
    app.sync(&synced, "Succeeded", "successfully synced (all tasks run)");
    app.reconcile("Synced", "Healthy");
    let later = bump(&bare, &["petstore"], "test", "3.0");
    app.sync(&later, "Succeeded", "successfully synced (all tasks run)");
    app.reconcile("Synced", "Healthy");
    let server = TestServer::start(config(&kube)).await;

    // The timeout is long: the answer must come from the later sync, not from waiting.
    let answered = tokio::time::timeout(
        Duration::from_secs(20),
        fire(&server, &bare, "10m", &synced),
    )
    .await
    .expect("answered at once, not at argocdTimeout");
    let message = refused(answered);

    assert!(message.contains("superseded"), "{message}");
    assert!(message.contains(&later), "{message}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    server.stop().await;
}

#[tokio::test]
async fn a_hydrated_app_is_gated_on_the_commit_hydrated_from_the_event_dry_commit() {
    // Argo CD 3.x source hydrator: the event names the dry commit (what phasegate promotes),
    // the app syncs the commit the hydrator pushed for it.
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let dry = gitops_repo(&bare, &["petstore", "catalog"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD).hydrated();
    let server = TestServer::start(config(&kube)).await;

    let run = fire_in_background(server.sensor().await, &gated(&bare, "10s"), &dry);
    let hydrated = app.hydrate(&dry);
    app.sync(
        &hydrated,
        "Succeeded",
        "successfully synced (all tasks run)",
    );
    app.reconcile("Synced", "Progressing");
    app.reconcile("Synced", "Healthy");

    let fired = run.await.expect("task").expect("promotes once deployed");
    assert_eq!(fired.response["outcome"], "promoted");

    // A dry commit for another app: the hydrator has nothing to render for this one, and its
    // hydrated commit is still what runs.
    let other_app = bump(&bare, &["catalog"], "test", "3.0");
    app.compare_dry(&other_app);
    let fired = fire(&server, &bare, "10s", &other_app)
        .await
        .expect("nothing to hydrate");
    assert_eq!(fired.response["outcome"], "already-promoted");
    server.stop().await;
}

#[tokio::test]
async fn a_failed_hydration_of_the_dry_commit_is_refused_at_once() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let dry = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD).hydrated();
    app.hydration_fails(
        &dry,
        "failed to get manifests: kustomize build failed: accumulating resources",
    );
    let server = TestServer::start(config(&kube)).await;

    // The timeout is long: the refusal must come from the failed hydration, not from waiting.
    let answered = tokio::time::timeout(Duration::from_secs(20), fire(&server, &bare, "10m", &dry))
        .await
        .expect("answered at once, not at argocdTimeout");
    let message = refused(answered);

    assert!(message.contains("hydrat"), "{message}");
    assert!(message.contains("kustomize build failed"), "{message}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    server.stop().await;
}

#[tokio::test]
async fn an_app_hydrated_to_a_staging_branch_is_refused_up_front() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let dry = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let mut app = ArgoApp::deployed(&kube, "argocd", "petstore-test", OLD)
        .hydrated()
        .hydrated_to("environments/test-next");
    app.hydrate(&dry);
    let server = TestServer::start(config(&kube)).await;

    let message = refused(fire(&server, &bare, "10m", &dry).await);

    assert!(message.contains("cannot be gated"), "{message}");
    assert!(message.contains("hydrateTo"), "{message}");
    server.stop().await;
}
