//! GitHub App authentication end to end through the Sensor path: phasegate signs the App's
//! JWT, the fake GitHub verifies it with the App's public key and issues short-lived
//! installation tokens (tests/support/github_app.rs), and phasegate opens the pull request
//! with them through the API and pushes its branch with them over git. Every request,
//! `access_tokens` included, is checked against GitHub's OpenAPI description.

mod support;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use phasegate::{
    config::{Config, GitHubAppConfig},
    git::local,
};
use serde_json::{Value, json};
use support::{fake_github::FakeGitHub, fake_kube::FakeKube, github_app::AppKey, test_jobs::NS, *};
use tonic::Code;

const APP_ID: &str = "4242";
const INSTALLATION: u64 = 77;
/// The personal token of the fake's git user: a server with an App must not need it.
const TOKEN: &str = "ghp_SENTINEL-unused-9c1d";

struct Site {
    dir: tempfile::TempDir,
    root: PathBuf,
    bare: PathBuf,
    github: FakeGitHub,
    key: AppKey,
    synced: String,
}

impl Site {
    /// The fake GitHub with the App installed (key pair made now).
    async fn start() -> Site {
        let (dir, root) = tempdir();
        let bare = root.join("org/gitops.git");
        let synced = gitops_repo(&bare, &["petstore"]);
        let github = FakeGitHub::start(&root, "bot", TOKEN).await;
        let key = AppKey::generate(dir.path(), "app");
        github.install_app(APP_ID, INSTALLATION, &key);
        Site {
            dir,
            root,
            bare,
            github,
            key,
            synced,
        }
    }

    /// A server whose own credentials are GitHub App `app_id`'s installation with key `pem`.
    async fn server_with_app(&self, app_id: &str, installation: u64, pem: &str) -> TestServer {
        let file = self
            .dir
            .path()
            .join(format!("server-key-{app_id}-{installation}.pem"));
        std::fs::write(&file, pem).expect("write key");
        let mut config = Config::default();
        config.forge.github_app = Some(GitHubAppConfig {
            app_id: app_id.into(),
            installation_id: installation.to_string(),
            private_key_file: file,
            api_url: self.github.api_url(),
        });
        TestServer::start(config).await
    }

    fn pr_spec(&self) -> BTreeMap<String, String> {
        petstore(
            &self.github.repo_url("gitops"),
            &[
                ("test", "none"),
                ("forge", "github"),
                ("promoteVia", "pull-request"),
            ],
        )
    }

    fn prod_on(&self, branch: &str) -> String {
        let text = local::read_file(&self.bare, branch, &values_path("petstore", "prod"))
            .expect("prod values");
        phasegate::values::read_scalar(&text, "image.version").expect("version")
    }

    fn issued(&self) -> Vec<String> {
        self.github
            .app(|a| a.issued.iter().map(|i| i.token.clone()).collect())
    }
}

async fn fire(
    server: &TestServer,
    spec: &BTreeMap<String, String>,
    sha: &str,
) -> Result<Value, tonic::Status> {
    let sensor = server.sensor().await;
    sensor
        .fire(spec, &sync_event(sha), FROM_TEST)
        .await
        .map(|f| f.response)
        .map_err(|f| f.status)
}

/// The base64 body of a PEM key, a piece of which must never show up anywhere.
fn key_body(pem: &str) -> String {
    pem.lines().nth(3).expect("key line").to_string()
}

#[tokio::test]
async fn a_server_github_app_opens_the_pull_request_and_pushes_with_installation_tokens() {
    capture_logs();
    let site = Site::start().await;
    let server = site
        .server_with_app(APP_ID, INSTALLATION, &site.key.pkcs8_pem)
        .await;

    let r = fire(&server, &site.pr_spec(), &site.synced)
        .await
        .expect("fires");

    assert_eq!(r["outcome"], "pr-opened", "{r}");
    let pulls = site.github.pulls();
    assert_eq!(pulls.len(), 1);
    let head = pulls[0]["head"]["ref"].as_str().expect("head");
    assert_eq!(site.prod_on(head), "2.0", "the branch was pushed over git");
    assert_eq!(site.prod_on("main"), "1.0");
    let statuses = site.github.statuses(&site.synced);
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    // The JWT was issued a minute back and lives at most 10 minutes, as GitHub demands.
    let jwts = site.github.app(|a| a.jwts.clone());
    assert_eq!(
        jwts.len(),
        1,
        "one token minted for the whole run: {jwts:?}"
    );
    assert!(jwts[0].received - jwts[0].iat >= 59, "{jwts:?}");
    assert!(jwts[0].exp - jwts[0].iat <= 600, "{jwts:?}");
    let limited = site.github.app(|a| a.issued[0].repositories.clone());
    assert_eq!(
        limited,
        ["gitops"],
        "the token covers the run's repository only"
    );
    site.github.assert_valid();

    let token = &site.issued()[0];
    let logs = logs();
    for secret in [token.as_str(), &key_body(&site.key.pkcs8_pem)] {
        assert!(!logs.contains(secret), "a credential was logged");
        assert!(!r.to_string().contains(secret), "a credential was answered");
    }
    server.stop().await;
}

#[tokio::test]
async fn installation_tokens_are_reused_then_renewed_when_they_near_expiry() {
    let site = Site::start().await;
    let server = site
        .server_with_app(APP_ID, INSTALLATION, &site.key.pkcs8_pem)
        .await;
    let spec = site.pr_spec();

    // An hour-long token serves two runs.
    let opened = fire(&server, &spec, &site.synced).await.expect("fires");
    assert_eq!(opened["outcome"], "pr-opened", "{opened}");
    let v3 = bump(&site.bare, &["petstore"], "test", "3.0");
    let updated = fire(&server, &spec, &v3).await.expect("fires");
    assert_eq!(updated["outcome"], "pr-updated", "{updated}");
    assert_eq!(site.issued().len(), 1, "the token was reused");

    // Tokens that live 4 minutes have less than the 5 phasegate keeps in reserve: each use
    // gets a new one, and the run still goes through with them.
    server.stop().await;
    let server = site
        .server_with_app(APP_ID, INSTALLATION, &site.key.pkcs1_pem)
        .await;
    site.github
        .app(|a| a.lifetime = Duration::from_secs(4 * 60));
    let v4 = bump(&site.bare, &["petstore"], "test", "4.0");
    let renewed = fire(&server, &spec, &v4).await.expect("fires");
    assert_eq!(renewed["outcome"], "pr-updated", "{renewed}");
    let issued = site.issued();
    assert!(
        issued.len() >= 3,
        "expiring tokens were renewed: {issued:?}"
    );
    let distinct: std::collections::BTreeSet<_> = issued.iter().collect();
    assert_eq!(distinct.len(), issued.len());
    let head = site.github.pulls()[0]["head"]["ref"]
        .as_str()
        .expect("head")
        .to_string();
    assert_eq!(site.prod_on(&head), "4.0");
    site.github.assert_valid();
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_key_or_an_unknown_installation_is_refused_naming_what_is_wrong() {
    capture_logs();
    let site = Site::start().await;
    let other = AppKey::generate(site.dir.path(), "other");

    let server = site
        .server_with_app(APP_ID, INSTALLATION, &other.pkcs8_pem)
        .await;
    let status = fire(&server, &site.pr_spec(), &site.synced)
        .await
        .expect_err("wrong key");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let message = status.message().to_string();
    assert!(message.contains("GitHub App 4242"), "{message}");
    assert!(
        message.contains("private key is not this App's"),
        "{message}"
    );
    server.stop().await;

    let server = site.server_with_app(APP_ID, 78, &site.key.pkcs8_pem).await;
    let status = fire(&server, &site.pr_spec(), &site.synced)
        .await
        .expect_err("unknown installation");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("GitHub App 4242 has no installation 78"),
        "{status:?}"
    );
    server.stop().await;

    assert!(site.github.pulls().is_empty());
    assert_eq!(site.prod_on("main"), "1.0");
    site.github.assert_valid();
    for pem in [&other.pkcs8_pem, &site.key.pkcs8_pem] {
        assert!(!message.contains(&key_body(pem)) && !logs().contains(&key_body(pem)));
    }

    // A key file that holds no key stops the server at start-up, naming the setting.
    let file = site.root.join("not-a-key.pem");
    std::fs::write(&file, "ghp_not-a-key").expect("write");
    let mut config = Config::default();
    config.forge.github_app = Some(GitHubAppConfig {
        app_id: APP_ID.into(),
        installation_id: "77".into(),
        private_key_file: file,
        api_url: "https://api.github.com".into(),
    });
    let err = config.forge_settings().expect_err("no key").to_string();
    assert!(
        err.contains("forge.githubApp.privateKeyFile") && err.contains("not an RSA private key"),
        "{err}"
    );
    assert!(!err.contains("ghp_not-a-key"), "{err}");
}

#[tokio::test]
async fn a_credentials_secret_with_argo_cds_github_app_keys_promotes_through_a_pull_request() {
    capture_logs();
    let site = Site::start().await;
    let kube = FakeKube::start().await;
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let secret = |name: &str, keys: &[(&str, &str)]| {
        let data: serde_json::Map<String, Value> = keys
            .iter()
            .map(|(k, v)| (k.to_string(), json!(b64(v))))
            .collect();
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
               "type": "Opaque", "data": data})
    };
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
        .map(|k| match k.as_str() {
            "githubAppID" => ("githubAppID", APP_ID),
            "githubAppInstallationID" => ("githubAppInstallationID", installation.as_str()),
            "githubAppPrivateKey" => ("githubAppPrivateKey", site.key.pkcs1_pem.as_str()),
            other => panic!("the example Secret has an unexpected key {other}"),
        })
        .collect();
    assert_eq!(ours.len(), 3);
    kube.put(
        "/api/v1",
        NS,
        "secrets",
        secret(example["metadata"]["name"].as_str().expect("name"), &ours),
    );
    kube.put(
        "/api/v1",
        NS,
        "secrets",
        secret(
            "broken-app",
            &[
                ("githubAppID", APP_ID),
                ("githubAppInstallationID", &installation),
                (
                    "githubAppPrivateKey",
                    "-----BEGIN RSA PRIVATE KEY-----\nSENTINEL\n-----END RSA PRIVATE KEY-----",
                ),
            ],
        ),
    );
    let server = TestServer::start(test_jobs::kube_config(&kube, None)).await;
    let with_secret = |name: &str| {
        let mut spec = site.pr_spec();
        spec.insert("credentialsSecret".into(), name.into());
        spec
    };

    let broken = fire(&server, &with_secret("broken-app"), &site.synced)
        .await
        .expect_err("broken key");
    assert_eq!(broken.code(), Code::FailedPrecondition, "{broken:?}");
    assert!(
        broken
            .message()
            .contains("key `githubAppPrivateKey` is not an RSA private key"),
        "{broken:?}"
    );
    assert!(!broken.message().contains("SENTINEL"));

    let r = fire(&server, &with_secret("github-app"), &site.synced)
        .await
        .expect("fires");
    assert_eq!(r["outcome"], "pr-opened", "{r}");
    let head = site.github.pulls()[0]["head"]["ref"]
        .as_str()
        .expect("head")
        .to_string();
    assert_eq!(site.prod_on(&head), "2.0");
    site.github.merge(1);
    assert_eq!(site.prod_on("main"), "2.0", "a reviewer merged it");
    site.github.assert_valid();
    let logs = logs();
    assert!(!logs.contains("SENTINEL") && !logs.contains(&key_body(&site.key.pkcs1_pem)));
    assert!(!logs.contains(&site.issued()[0]));
    server.stop().await;
}
