//! Running in a cluster, against the fake Kubernetes API server (`support::fake_kube`): test
//! Jobs that pass, fail, time out, cannot pull or schedule, and are shared by replicas;
//! credentials from a Secret; the Argo CD gate; an API server that is down or refuses.

use std::collections::BTreeMap;

use crate::support::{
    fake_kube::FakeKube,
    git_server::GitServer,
    test_jobs::{JOBS, NS, job_spec, jobs, kube_config},
    *,
};
use phasegate::{
    PolicyConfig,
    config::{Config, GitConfig, KubernetesConfig},
    sensor::{Failed, Firing},
};
use serde_json::{Value, json};
use tonic::Code;

fn config(kube: &FakeKube) -> Config {
    Config {
        policy: PolicyConfig {
            test_service_accounts: vec!["petstore-tests".into()],
            ..test_policy()
        },
        ..kube_config(kube, None)
    }
}

async fn fire(
    server: &TestServer,
    spec: &BTreeMap<String, String>,
    sha: &str,
) -> Result<Firing, Failed> {
    server
        .sensor()
        .await
        .fire(spec, &sync_event(sha), FROM_TEST)
        .await
}

/// A spec naming a `credentialsSecret` for a repository the policy refuses is refused before
/// the Secret is read: its credentials never leave the cluster for a repository nobody allowed.
#[tokio::test]
async fn a_refused_repository_never_reads_its_credentials_secret() {
    let kube = FakeKube::start().await;
    kube.put_secret(
        NS,
        "github-credentials",
        &[("username", "ci-bot"), ("password", "SENTINEL-9c1d")],
    );
    let server = TestServer::start(config(&kube)).await;
    let spec = spec(&[
        ("repo", "https://git.example.com/org/gitops.git"),
        ("path", &PATH.replace("{app}", "petstore")),
        ("phases", "test,prod"),
        ("test", "none"),
        ("credentialsSecret", "github-credentials"),
    ]);

    let refused = fire(&server, &spec, "0123456789abcdef0123456789abcdef01234567")
        .await
        .expect_err("repository nobody allowed");

    assert_eq!(refused.status.code(), Code::PermissionDenied);
    assert!(
        refused.status.message().contains("policy.repos"),
        "{}",
        refused.status.message()
    );
    let requests = kube.requests();
    assert!(
        requests.iter().all(|r| !r.contains("/secrets")),
        "the Secret was read: {requests:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_passing_job_promotes_and_is_deleted() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube)).await;
    let spec = job_spec(
        &file_url(&bare),
        "echo testing $TEST_TARGET; echo \"$1\"; echo 3 tests passed",
        &[("testArgs", r#"["ignored-by-sh", "{target}"]"#)],
    );

    let fired = fire(&server, &spec, &synced).await.expect("promotes");

    assert_eq!(fired.response["outcome"], "promoted");
    assert_eq!(fired.response["test"]["runner"], "job");
    let log = fired.response["test"]["log"].as_str().expect("log");
    assert!(
        log.contains("testing http://petstore.test.svc:8080"),
        "{log}"
    );
    assert!(log.contains("3 tests passed"), "{log}");
    assert!(jobs(&kube).is_empty(), "a passed Job is deleted");
    // With its pods (propagationPolicy Background), once their grace period is over.
    eventually(|| kube.names("/api/v1", NS, "pods").is_empty()).await;
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    server.stop().await;
}

#[tokio::test]
async fn the_job_log_reaches_runs_watch_while_the_tests_run() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube)).await;
    let gate = root.join("gate");
    let script = format!(
        "echo campaign started; while [ ! -e {} ]; do sleep 0.05; done; echo campaign passed",
        gate.display()
    );
    let spec = job_spec(&file_url(&bare), &script, &[("mode", "async")]);
    let accepted = fire(&server, &spec, &synced).await.expect("accepted");
    let id = accepted.response["run"]
        .as_str()
        .expect("run id")
        .to_string();
    let (screen, watcher) = watch_in_background(&server, &id);

    // The Job cannot end before the gate opens: its first line arrives while it runs.
    eventually(|| screen.text().contains("campaign started")).await;
    assert!(!screen.text().contains("campaign passed"));
    assert_eq!(jobs(&kube).len(), 1, "the Job is still running");
    std::fs::write(&gate, "").expect("open the gate");
    let run = watcher.await.expect("watcher");

    assert_eq!(run.outcome, "promoted");
    let shown = screen.text();
    assert_eq!(shown.matches("campaign started").count(), 1, "{shown}");
    assert!(shown.contains("campaign passed"), "{shown}");
    server.stop().await;
}

#[tokio::test]
async fn a_failing_job_fails_the_trigger_and_is_kept_for_debugging() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    kube.put(
        "/api/v1",
        NS,
        "serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "petstore-tests", "namespace": NS}}),
    );
    let server = TestServer::start(config(&kube)).await;
    let spec = job_spec(
        &file_url(&bare),
        "echo 'FAIL: GET /pet answered 500'; exit 1",
        &[
            ("testEnv", r#"{"SUITE": "smoke"}"#),
            (
                "testResources",
                r#"{"limits": {"cpu": "500m", "memory": "256Mi"}}"#,
            ),
            ("testServiceAccount", "petstore-tests"),
        ],
    );

    let failed = fire(&server, &spec, &synced).await.expect_err("tests fail");

    assert_eq!(failed.status.code(), Code::FailedPrecondition);
    assert!(
        failed
            .status
            .message()
            .contains("FAIL: GET /pet answered 500")
            || failed.status.message().contains("failed"),
        "{}",
        failed.status.message()
    );
    let response = failed.response.expect("answer");
    assert!(
        response["test"]["log"]
            .as_str()
            .expect("log")
            .contains("FAIL: GET /pet answered 500"),
        "{response}"
    );
    let names = jobs(&kube);
    assert_eq!(names.len(), 1, "a failed Job is kept");
    let job = kube.get(JOBS.0, NS, JOBS.1, &names[0]).expect("job");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 600);
    assert!(
        job["spec"]["ttlSecondsAfterFinished"]
            .as_u64()
            .expect("ttl")
            > 0
    );
    let labels = &job["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "phasegate");
    assert_eq!(labels["phasegate.dev/source-phase"], "test");
    assert_eq!(labels["phasegate.dev/target-phase"], "prod");
    assert_eq!(labels["phasegate.dev/source-commit"], &synced[..12]);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "petstore-tests");
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["containers"][0]["resources"]["limits"]["cpu"], "500m");
    let env = pod["containers"][0]["env"].as_array().expect("env");
    assert!(env.contains(&json!({"name": "SUITE", "value": "smoke"})));
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    server.stop().await;
}

#[tokio::test]
async fn a_job_past_its_deadline_is_a_timeout_and_is_deleted() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube)).await;
    let spec = job_spec(&file_url(&bare), "sleep 30", &[("testTimeout", "1s")]);

    let failed = fire(&server, &spec, &synced).await.expect_err("times out");

    let response = failed.response.expect("answer");
    assert_eq!(response["outcome"], "tests-failed");
    assert!(
        response["test"]["log"]
            .as_str()
            .expect("log")
            .contains("timed out"),
        "{response}"
    );
    assert!(jobs(&kube).is_empty(), "a timed-out Job is deleted");
    server.stop().await;
}

#[tokio::test]
async fn a_second_replica_attaches_to_the_running_job() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    capture_logs();
    let kube = FakeKube::start().await;
    let gate = root.join("gate");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; echo passed",
        gate.display()
    );
    let spec = job_spec(&file_url(&bare), &script, &[]);
    let (first, second) = (
        TestServer::start(config(&kube)).await,
        TestServer::start(config(&kube)).await,
    );

    let a = fire_in_background(first.sensor().await, &spec, &synced);
    eventually(|| !jobs(&kube).is_empty()).await;
    let b = fire_in_background(second.sensor().await, &spec, &synced);
    // Let the second replica reach the Job before the test ends.
    eventually(|| logs().contains("already exists (another replica or an earlier run): attaching"))
        .await;
    std::fs::write(&gate, "").expect("open the gate");
    let (a, b) = (
        a.await.expect("a").expect("a passes"),
        b.await.expect("b").expect("b passes"),
    );

    assert_eq!(kube.jobs_created(), 1, "one Job for one event");
    let mut outcomes = [a.response["outcome"].clone(), b.response["outcome"].clone()];
    outcomes.sort_by_key(Value::to_string);
    assert_eq!(outcomes, [json!("already-promoted"), json!("promoted")]);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn an_unreachable_or_refusing_api_server_has_its_status_code() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let mut kube = FakeKube::start().await;
    let server = TestServer::start(config(&kube)).await;
    let spec = job_spec(&file_url(&bare), "true", &[]);

    kube.forbid(true);
    let denied = fire(&server, &spec, &synced).await.expect_err("403");
    assert_eq!(
        denied.status.code(),
        Code::PermissionDenied,
        "{}",
        denied.status.message()
    );
    kube.stop().await;
    let down = fire(&server, &spec, &synced).await.expect_err("down");
    assert_eq!(
        down.status.code(),
        Code::Unavailable,
        "{}",
        down.status.message()
    );
    server.stop().await;

    let no_kube = TestServer::start(Config {
        kubernetes: KubernetesConfig {
            disabled: true,
            ..Default::default()
        },
        ..test_config()
    })
    .await;
    let off = fire(&no_kube, &spec, &synced)
        .await
        .expect_err("no kubernetes");
    assert_eq!(off.status.code(), Code::FailedPrecondition);
    assert!(
        off.status.message().contains("Kubernetes"),
        "{}",
        off.status.message()
    );
    no_kube.stop().await;
}

#[tokio::test]
async fn credentials_come_from_the_secret_and_never_reach_a_log() {
    capture_logs();
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let git = GitServer::start(&root, "ci-bot", "SENTINEL-secret-4d2a").await;
    let kube = FakeKube::start().await;
    kube.put_secret(
        NS,
        "github-credentials",
        &[
            ("username", "ci-bot"),
            ("password", "SENTINEL-secret-4d2a"),
            ("email", "ci-bot@example.com"),
        ],
    );
    kube.put_secret(NS, "half-secret", &[("username", "ci-bot")]);
    // The local git server speaks plain http: allowed here, explicitly.
    let server = TestServer::start(Config {
        git: GitConfig {
            allow_insecure_http: true,
            ..GitConfig::default()
        },
        ..config(&kube)
    })
    .await;
    let base = |secret: &str| {
        spec(&[
            ("repo", &git.url("gitops")),
            ("path", &PATH.replace("{app}", "petstore")),
            ("phases", "test,prod"),
            ("test", "none"),
            ("credentialsSecret", secret),
        ])
    };

    let missing = fire(&server, &base("no-such-secret"), &synced)
        .await
        .expect_err("missing Secret");
    assert_eq!(missing.status.code(), Code::NotFound);
    assert!(
        missing
            .status
            .message()
            .contains("Secret `no-such-secret` in namespace `argo-events`"),
        "{}",
        missing.status.message()
    );
    let half = fire(&server, &base("half-secret"), &synced)
        .await
        .expect_err("no password");
    assert_eq!(half.status.code(), Code::NotFound);
    assert!(
        half.status.message().contains("no key `password`"),
        "{}",
        half.status.message()
    );

    let fired = fire(&server, &base("github-credentials"), &synced)
        .await
        .expect("promotes with the Secret");
    assert_eq!(fired.response["outcome"], "promoted");
    let read = format!("GET /api/v1/namespaces/{NS}/secrets/github-credentials");
    assert!(kube.requests().contains(&read), "{:?}", kube.requests());
    let head = phasegate::git::local::log(&bare, "main", 1).expect("log")[0]
        .0
        .clone();
    assert!(
        phasegate::git::local::show(&bare, &head)
            .expect("show")
            .contains("Author: phasegate <ci-bot@example.com>")
    );

    server.stop().await;
    let logs = logs();
    assert!(!logs.contains("SENTINEL"), "a credential was logged");
    for m in [missing.status.message(), half.status.message()] {
        assert!(!m.contains("SENTINEL"));
    }
}

/// `policy.credentialsSecrets` binds each Secret to repositories: a Secret named for another
/// repository is refused before it is read, and a Secret whose own `url` (Argo CD's key) names
/// another repository is never sent anywhere else.
#[tokio::test]
async fn a_credentials_secret_serves_only_the_repositories_it_is_bound_to() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let git = GitServer::start(&root, "ci-bot", "SENTINEL-bound-51e0").await;
    let kube = FakeKube::start().await;
    let creds = [("username", "ci-bot"), ("password", "SENTINEL-bound-51e0")];
    kube.put_secret(NS, "team-a", &creds);
    let elsewhere = [&creds[..], &[("url", "https://github.com/team-a")]].concat();
    kube.put_secret(NS, "team-a-github", &elsewhere);
    let gitops = git.url("gitops");
    let ours = [&creds[..], &[("url", gitops.as_str())]].concat();
    kube.put_secret(NS, "team-a-gitops", &ours);
    let mut policy = config(&kube).policy;
    policy.credentials_secrets = ["team-a-github", "team-a-gitops"]
        .into_iter()
        .map(|name| phasegate::SecretBinding {
            name: name.into(),
            repos: vec!["http://127.0.0.1:*/**".into()],
        })
        .chain([phasegate::SecretBinding {
            name: "team-a".into(),
            repos: vec!["https://git.example.com/team-a/*".into()],
        }])
        .collect();
    let server = TestServer::start(Config {
        policy,
        git: GitConfig {
            allow_insecure_http: true,
            ..GitConfig::default()
        },
        ..config(&kube)
    })
    .await;
    let spec = |secret: &str| {
        spec(&[
            ("repo", &gitops),
            ("path", &PATH.replace("{app}", "petstore")),
            ("phases", "test,prod"),
            ("test", "none"),
            ("credentialsSecret", secret),
        ])
    };
    // Bound to another repository: refused, and never read.
    let refused = fire(&server, &spec("team-a"), &synced)
        .await
        .expect_err("unbound");
    assert_eq!(refused.status.code(), Code::PermissionDenied);
    assert!(
        refused
            .status
            .message()
            .contains("policy.credentialsSecrets"),
        "{}",
        refused.status.message()
    );
    assert!(
        kube.requests()
            .iter()
            .all(|r| !r.ends_with("/secrets/team-a")),
        "{:?}",
        kube.requests()
    );
    // Bound here, but its own `url` names github.com: read, never sent.
    let refused = fire(&server, &spec("team-a-github"), &synced)
        .await
        .expect_err("its url is elsewhere");
    assert_eq!(refused.status.code(), Code::PermissionDenied);
    assert!(
        refused
            .status
            .message()
            .contains("`url` key names https://github.com/team-a"),
        "{}",
        refused.status.message()
    );
    assert!(
        git.authorizations().is_empty(),
        "{:?}",
        git.authorizations()
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    // Bound here and its `url` is this repository: used.
    let fired = fire(&server, &spec("team-a-gitops"), &synced)
        .await
        .expect("promotes");
    assert_eq!(fired.response["outcome"], "promoted");
    server.stop().await;
}
