//! GitHub App authentication end to end through the Sensor path: phasegate signs the App's
//! JWT, the fake GitHub verifies it with the App's public key and issues short-lived
//! installation tokens (tests/support/github_app.rs), and phasegate opens the pull request
//! with them through the API and pushes its branch with them over git. The servers here have
//! no git password: only the App's tokens can push. Every request, `access_tokens` included,
//! is checked against GitHub's OpenAPI description.

use std::time::Duration;

use crate::support::{
    fake_forge::Fronted, fake_github::FakeGitHub, fake_kube::FakeKube, forge_bed::ForgeBed,
    github_app::AppKey, test_jobs::NS, *,
};
use phasegate::config::{Config, GitHubAppConfig};
use serde_json::Value;
use tonic::Code;

const APP_ID: &str = "4242";
const INSTALLATION: u64 = 77;

type Bed = ForgeBed<FakeGitHub>;

/// The App's key pair, made with openssl (in a directory that lives as long as the guard).
fn app_key(name: &str) -> (tempfile::TempDir, AppKey) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = AppKey::generate(dir.path(), name);
    (dir, key)
}

/// The server has no git credentials of its own.
fn without_password(config: &mut Config) {
    config.git.username_file = None;
    config.git.password_file = None;
}

/// A bench whose server authenticates as GitHub App `app_id`'s installation `installation`
/// with the key `pem` (`forge.githubApp`, its file in `dir`, read as the server starts); the
/// fake has the App `key` installed.
async fn with_server_app(
    dir: &tempfile::TempDir,
    key: &AppKey,
    app_id: &str,
    installation: u64,
    pem: &str,
) -> Bed {
    let file = dir
        .path()
        .join(format!("server-key-{}.pem", fastrand::u32(..)));
    std::fs::write(&file, pem).expect("write key");
    let bed = Bed::open_with(|config, github| {
        without_password(config);
        config.forge.github_app = Some(GitHubAppConfig {
            app_id: app_id.into(),
            installation_id: installation.to_string(),
            private_key_file: file,
            api_url: github.api_url(),
        });
    })
    .await;
    bed.forge.install_app(APP_ID, INSTALLATION, key);
    bed
}

fn issued(bed: &Bed) -> Vec<String> {
    bed.forge
        .app(|a| a.issued.iter().map(|i| i.token.clone()).collect())
}

fn pr_head(bed: &Bed) -> String {
    let pulls = bed.forge.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    pulls[0]["head"]["ref"].as_str().expect("head").to_string()
}

/// A line of a PEM key's body, which must never show up anywhere.
fn key_body(pem: &str) -> String {
    pem.lines().nth(3).expect("key line").to_string()
}

#[tokio::test]
async fn a_server_github_app_opens_the_pull_request_and_pushes_with_installation_tokens() {
    capture_logs();
    let (k, key) = app_key("app");
    let bed = with_server_app(&k, &key, APP_ID, INSTALLATION, &key.pkcs8_pem).await;

    let r = bed
        .fire(&bed.pr_spec(&[]), &bed.synced)
        .await
        .expect("fires");

    assert_eq!(r["outcome"], "pr-opened", "{r}");
    assert_eq!(bed.prod_on(&pr_head(&bed)), "2.0", "pushed over git");
    assert_eq!(bed.prod_on("main"), "1.0");
    let statuses = bed.forge.statuses(&bed.synced);
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    // The JWT was issued a minute back and lives at most 10 minutes, as GitHub demands.
    let jwts = bed.forge.app(|a| a.jwts.clone());
    assert_eq!(jwts.len(), 1, "one token for the whole run: {jwts:?}");
    assert!(jwts[0].received - jwts[0].iat >= 59, "{jwts:?}");
    assert!(jwts[0].exp - jwts[0].iat <= 600, "{jwts:?}");
    let limited = bed.forge.app(|a| a.issued[0].repositories.clone());
    assert_eq!(
        limited,
        ["gitops"],
        "the token covers the run's repository only"
    );
    bed.forge.assert_valid();

    let logs = logs();
    for secret in [issued(&bed)[0].clone(), key_body(&key.pkcs8_pem)] {
        assert!(!logs.contains(&secret), "a credential was logged");
        assert!(
            !r.to_string().contains(&secret),
            "a credential was answered"
        );
    }
    bed.server.stop().await;
}

#[tokio::test]
async fn installation_tokens_are_reused_then_renewed_when_they_near_expiry() {
    let (k, key) = app_key("app");
    let bed = with_server_app(&k, &key, APP_ID, INSTALLATION, &key.pkcs8_pem).await;
    let spec = bed.pr_spec(&[]);

    // An hour-long token serves two runs.
    let opened = bed.fire(&spec, &bed.synced).await.expect("fires");
    assert_eq!(opened["outcome"], "pr-opened", "{opened}");
    let v3 = bump(&bed.bare, &["petstore"], "test", "3.0");
    let updated = bed.fire(&spec, &v3).await.expect("fires");
    assert_eq!(updated["outcome"], "pr-updated", "{updated}");
    assert_eq!(issued(&bed).len(), 1, "the token was reused");
    bed.server.stop().await;

    // Tokens that live 4 minutes have less than the 5 phasegate keeps in reserve: each use
    // gets a new one, and the run goes through with them (the PKCS#1 form of the key).
    let bed = with_server_app(&k, &key, APP_ID, INSTALLATION, &key.pkcs1_pem).await;
    bed.forge.app(|a| a.lifetime = Duration::from_secs(4 * 60));
    let renewed = bed
        .fire(&bed.pr_spec(&[]), &bed.synced)
        .await
        .expect("fires");
    assert_eq!(renewed["outcome"], "pr-opened", "{renewed}");
    let tokens = issued(&bed);
    assert!(
        tokens.len() >= 3,
        "expiring tokens were renewed: {}",
        tokens.len()
    );
    let distinct: std::collections::BTreeSet<_> = tokens.iter().collect();
    assert_eq!(distinct.len(), tokens.len());
    assert_eq!(bed.prod_on(&pr_head(&bed)), "2.0");
    bed.forge.assert_valid();
    bed.server.stop().await;
}

#[tokio::test]
async fn a_wrong_key_or_an_unknown_installation_is_refused_naming_what_is_wrong() {
    capture_logs();
    let (k, key) = app_key("app");
    let (_o, other) = app_key("other");

    let bed = with_server_app(&k, &key, APP_ID, INSTALLATION, &other.pkcs8_pem).await;
    let wrong_key = ["GitHub App 4242", "private key is not this App's"];
    let message = bed
        .refused(
            &bed.pr_spec(&[]),
            &bed.synced,
            Code::PermissionDenied,
            &wrong_key,
        )
        .await;
    assert!(bed.forge.pulls().is_empty());
    bed.forge.assert_valid();
    bed.server.stop().await;

    let bed = with_server_app(&k, &key, APP_ID, 78, &key.pkcs8_pem).await;
    let unknown = ["GitHub App 4242 has no installation 78"];
    let second = bed
        .refused(
            &bed.pr_spec(&[]),
            &bed.synced,
            Code::FailedPrecondition,
            &unknown,
        )
        .await;
    assert_eq!(bed.prod_on("main"), "1.0");
    bed.server.stop().await;
    for pem in [&other.pkcs8_pem, &key.pkcs8_pem] {
        let body = key_body(pem);
        assert!(!message.contains(&body) && !second.contains(&body) && !logs().contains(&body));
    }

    // A key file that holds no key stops the server at start-up, naming the setting.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-key.pem");
    std::fs::write(&file, "ghp_not-a-key").expect("write");
    let mut config = Config::default();
    config.forge.github_app = Some(GitHubAppConfig {
        app_id: APP_ID.into(),
        installation_id: "77".into(),
        private_key_file: file,
        api_url: "https://api.github.com".into(),
    });
    let err = phasegate::app::forge_settings(&config)
        .expect_err("no key")
        .to_string();
    assert!(
        err.contains("forge.githubApp.privateKeyFile") && err.contains("not an RSA private key"),
        "{err}"
    );
    assert!(!err.contains("ghp_not-a-key"), "{err}");
}

#[tokio::test]
async fn the_example_github_app_secret_promotes_through_a_pull_request() {
    capture_logs();
    let (_k, key) = app_key("app");
    let kube = FakeKube::start().await;
    let bed = Bed::open(|config| {
        without_password(config);
        config.kubernetes = test_jobs::kube_config(&kube, None).kubernetes;
        config.policy.repos.push("https://github.com/**".into());
    })
    .await;
    bed.forge.install_app(APP_ID, INSTALLATION, &key);
    // The Secret of deploy/examples, with this test's App in it.
    let example: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/examples/github-app-credentials.yaml"
        ))
        .expect("example Secret"),
    )
    .expect("YAML");
    let installation = INSTALLATION.to_string();
    let ours: Vec<(&str, &str)> = example["stringData"]
        .as_object()
        .expect("stringData")
        .keys()
        .filter_map(|k| match k.as_str() {
            "githubAppID" => Some(("githubAppID", APP_ID)),
            "githubAppInstallationID" => Some(("githubAppInstallationID", installation.as_str())),
            "githubAppPrivateKey" => Some(("githubAppPrivateKey", key.pkcs1_pem.as_str())),
            // The example's github.com organisation: this fake forge is elsewhere.
            "url" => None,
            other => panic!("the example Secret has an unexpected key {other}"),
        })
        .collect();
    assert_eq!(ours.len(), 3);
    // As it stands the example's App is github.com's: its JWT never goes to this GitHub
    // Enterprise on 127.0.0.1, whatever host the spec's repository names.
    kube.put_secret(NS, "github-app-com", &ours);
    let spec = bed.pr_spec(&[("credentialsSecret", "github-app-com")]);
    let elsewhere = ["the App's key is never sent there"];
    bed.refused(&spec, &bed.synced, Code::InvalidArgument, &elsewhere)
        .await;
    assert!(issued(&bed).is_empty(), "no token was minted");
    // With Argo CD's key naming this API, it is.
    let api = bed.forge.api_url();
    let ours = [&ours[..], &[("githubAppEnterpriseBaseUrl", api.as_str())]].concat();
    let name = example["metadata"]["name"].as_str().expect("name");
    kube.put_secret(NS, name, &ours);
    let broken_key = "-----BEGIN RSA PRIVATE KEY-----\nSENTINEL\n-----END RSA PRIVATE KEY-----";
    let mut broken = ours.clone();
    broken[ours
        .iter()
        .position(|(k, _)| *k == "githubAppPrivateKey")
        .expect("key")]
    .1 = broken_key;
    kube.put_secret(NS, "broken-app", &broken);

    // On github.com, but not `owner/name`: the App is refused saying so, before any call.
    let nested = "https://github.com/org/team/gitops.git";
    let spec = petstore(nested, &[("test", "none"), ("credentialsSecret", name)]);
    bed.refused(
        &spec,
        &bed.synced,
        Code::InvalidArgument,
        &["not `owner/name`"],
    )
    .await;

    let spec = bed.pr_spec(&[("credentialsSecret", "broken-app")]);
    let not_a_key = ["key `githubAppPrivateKey` is not an RSA private key"];
    let message = bed
        .refused(&spec, &bed.synced, Code::FailedPrecondition, &not_a_key)
        .await;
    assert!(!message.contains("SENTINEL"));

    let r = bed
        .fire(&bed.pr_spec(&[("credentialsSecret", name)]), &bed.synced)
        .await
        .expect("fires");
    assert_eq!(r["outcome"], "pr-opened", "{r}");
    assert_eq!(bed.prod_on(&pr_head(&bed)), "2.0");
    bed.forge.merge(1);
    assert_eq!(bed.prod_on("main"), "2.0", "a reviewer merged it");
    bed.forge.assert_valid();
    let logs = logs();
    assert!(!logs.contains("SENTINEL") && !logs.contains(&key_body(&key.pkcs1_pem)));
    assert!(!logs.contains(&issued(&bed)[0]));
    bed.server.stop().await;
}
