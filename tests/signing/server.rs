//! Signing as users configure it: the server's key (`git.signingKey`, a passphrase file, the
//! identity it signs as) refused at start-up when it cannot sign as configured; the
//! `credentialsSecret`'s `signingKey` refused with `FAILED_PRECONDITION`; Execute's answer and
//! the run history naming the key; no passphrase in any answer or log line.

use std::{path::Path, process::Command};

use phasegate::{
    config::{Config, GitConfig, KubernetesConfig},
    git::SigningFormat,
    proto::runs::{GetRunRequest, runs_client::RunsClient},
};
use serde_json::{Value, json};
use tonic::Code;

use super::{
    EMAIL,
    keys::{self, Gpg, allowed_signers, ssh_fingerprint, ssh_key, verify_ssh},
};
use crate::support::{fake_kube::FakeKube, *};

const PASSPHRASE: &str = "SENTINEL-passphrase-6b1d";

fn signing_config(key: &Path, passphrase: Option<&Path>) -> Config {
    Config {
        git: GitConfig {
            signing_key: Some(key.to_path_buf()),
            signing_key_passphrase_file: passphrase.map(Path::to_path_buf),
            signing_email: Some(EMAIL.into()),
            ..GitConfig::default()
        },
        ..test_config()
    }
}

fn start_up_error(config: &Config) -> String {
    let err = phasegate::app::git_settings(config)
        .expect_err("the server must not start")
        .to_string();
    assert!(!err.contains("SENTINEL"), "a passphrase leaked: {err}");
    err
}

#[test]
fn a_server_key_that_cannot_sign_as_configured_stops_start_up() {
    let (_d, root) = tempdir();
    let pass = root.join("passphrase");
    std::fs::write(&pass, format!("{PASSPHRASE}\n")).expect("passphrase file");
    let wrong = root.join("wrong");
    std::fs::write(&wrong, "SENTINEL-not-the-passphrase").expect("file");
    let encrypted = ssh_key(&root, "ecdsa", PASSPHRASE);
    let plain = ssh_key(&root, "ed25519", "");
    let not_a_key = root.join("not-a-key");
    std::fs::write(&not_a_key, "SENTINEL-garbage").expect("file");
    let gpg = Gpg::new(&root);
    let other = gpg.generate("Ops <ops@example.com>", "");
    let pgp_file = root.join("ops.asc");
    std::fs::write(&pgp_file, gpg.export_secret(&other, "")).expect("key file");
    let locked_pgp = gpg.generate(&format!("Bot <{EMAIL}>"), PASSPHRASE);
    let locked_file = root.join("bot.asc");
    std::fs::write(&locked_file, gpg.export_secret(&locked_pgp, PASSPHRASE)).expect("key file");

    let cases: Vec<(Config, &str)> = vec![
        (signing_config(&root.join("missing"), None), "cannot read"),
        (
            signing_config(&not_a_key, None),
            "neither an OpenSSH private key",
        ),
        (
            signing_config(&encrypted, None),
            "is encrypted and no passphrase is configured",
        ),
        (
            signing_config(&encrypted, Some(&wrong)),
            "the passphrase does not decrypt",
        ),
        (
            signing_config(&locked_file, None),
            "is encrypted and no passphrase is configured",
        ),
        (
            signing_config(&pgp_file, None),
            "has no user id with the committer email `bot@example.com` (its emails: ops@example.com)",
        ),
        (
            Config {
                git: GitConfig {
                    signing_allowed_signers: Some(allowed_signers(
                        &root,
                        "ops@example.com",
                        &[&plain],
                    )),
                    ..signing_config(&plain, None).git
                },
                ..test_config()
            },
            "is not listed for `bot@example.com` in the allowed signers file",
        ),
        (
            Config {
                git: GitConfig {
                    signing_format: Some(SigningFormat::Openpgp),
                    ..signing_config(&plain, None).git
                },
                ..test_config()
            },
            "signing format is `openpgp` but the key is an SSH key",
        ),
        (
            Config {
                git: GitConfig {
                    signing_key_passphrase_file: Some(pass.clone()),
                    ..GitConfig::default()
                },
                ..test_config()
            },
            "need git.signingKey",
        ),
    ];
    for (config, expected) in &cases {
        let err = start_up_error(config);
        assert!(err.contains(expected), "expected `{expected}` in: {err}");
    }
    // The good ones load: the encrypted ECDSA key with its passphrase, the OpenPGP key with
    // its passphrase, an SSH key listed for the email.
    for config in [
        signing_config(&encrypted, Some(&pass)),
        signing_config(&locked_file, Some(&pass)),
        Config {
            git: GitConfig {
                signing_allowed_signers: Some(allowed_signers(&root, EMAIL, &[&plain])),
                ..signing_config(&plain, None).git
            },
            ..test_config()
        },
    ] {
        let settings = phasegate::app::git_settings(&config).expect("loads");
        assert!(settings.signer.is_some());
    }

    // As an operator meets it: `phasegate serve` exits at once, saying why.
    let out = Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PHASEGATE_GIT_SIGNING_KEY", &encrypted)
        .env("PHASEGATE_GIT_SIGNING_KEY_PASSPHRASE_FILE", &wrong)
        .env("PHASEGATE_GIT_SIGNING_EMAIL", EMAIL)
        .output()
        .expect("phasegate serve");
    let said = keys::text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("the passphrase does not decrypt"), "{said}");
    assert!(!said.contains("SENTINEL"), "{said}");
}

#[tokio::test]
async fn execute_and_the_run_history_name_the_key_that_signed() {
    capture_logs();
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let key = ssh_key(&root, "ecdsa", PASSPHRASE);
    let pass = root.join("passphrase");
    std::fs::write(&pass, PASSPHRASE).expect("passphrase file");
    let allowed = allowed_signers(&root, EMAIL, &[&key]);
    let server = TestServer::start(signing_config(&key, Some(&pass))).await;

    let fired = server
        .sensor()
        .await
        .fire(
            &petstore(&file_url(&bare), &[("test", "none")]),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect("promotes");

    let fingerprint = ssh_fingerprint(&key);
    assert_eq!(fired.response["outcome"], "promoted");
    assert_eq!(
        fired.response["signature"],
        json!({"format": "ssh", "fingerprint": fingerprint})
    );
    assert!(
        fired
            .policy_message
            .contains(&format!("signed with ssh key {fingerprint}")),
        "{}",
        fired.policy_message
    );
    let commit = fired.response["commit"].as_str().expect("commit");
    assert!(verify_ssh(&bare, commit, &allowed).status.success());
    let mut runs = RunsClient::connect(server.url()).await.expect("connect");
    let run = runs
        .get(GetRunRequest {
            id: fired.response["run"].as_str().expect("run").into(),
        })
        .await
        .expect("the run is recorded")
        .into_inner();
    let report: Value = serde_json::from_str(&run.report_json).expect("report JSON");
    assert_eq!(report["signature"]["fingerprint"], fingerprint);
    server.stop().await;
    assert!(!logs().contains("SENTINEL"), "a passphrase was logged");
}

#[tokio::test]
async fn a_credentials_secret_key_signs_its_runs_or_fails_the_precondition() {
    capture_logs();
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let gpg = Gpg::new(&root);
    let fpr = gpg.generate(&format!("Bot <{EMAIL}>"), PASSPHRASE);
    let armored = gpg.export_secret(&fpr, PASSPHRASE);
    let rsa = ssh_key(&root, "rsa", "");
    let rsa_text = std::fs::read_to_string(&rsa).expect("key");
    let kube = FakeKube::start().await;
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let put = |name: &str, keys: &[(&str, &str)]| {
        let data: serde_json::Map<String, Value> = [("username", "ci-bot"), ("password", "pw")]
            .iter()
            .chain(keys)
            .map(|(k, v)| (k.to_string(), json!(b64(v))))
            .collect();
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "argo-events"}, "data": data});
        kube.put("/api/v1", "argo-events", "secrets", secret);
    };
    put(
        "pgp",
        &[
            ("email", EMAIL),
            ("signingKey", &armored),
            ("signingKeyPassphrase", PASSPHRASE),
        ],
    );
    put("ssh-rsa", &[("email", EMAIL), ("signingKey", &rsa_text)]);
    put(
        "no-passphrase",
        &[("email", EMAIL), ("signingKey", &armored)],
    );
    put(
        "wrong-passphrase",
        &[
            ("email", EMAIL),
            ("signingKey", &armored),
            ("signingKeyPassphrase", "SENTINEL-wrong"),
        ],
    );
    put(
        "other-email",
        &[
            ("email", "ops@example.com"),
            ("signingKey", &armored),
            ("signingKeyPassphrase", PASSPHRASE),
        ],
    );
    let server = TestServer::start(Config {
        kubernetes: KubernetesConfig {
            disabled: false,
            namespace: Some("argo-events".into()),
            api_url: Some(kube.url()),
            ..KubernetesConfig::default()
        },
        ..test_config()
    })
    .await;
    let sensor = server.sensor().await;
    let fire = |secret: &str| {
        let spec = petstore(
            &file_url(&bare),
            &[("test", "none"), ("credentialsSecret", secret)],
        );
        let (sensor, params) = (sensor.clone(), sync_event(&synced));
        async move { sensor.fire(&spec, &params, FROM_TEST).await }
    };
    let before = commit_count(&bare);

    let mut messages = Vec::new();
    for (secret, expected) in [
        (
            "no-passphrase",
            "is encrypted and no passphrase is configured",
        ),
        ("wrong-passphrase", "the passphrase does not decrypt"),
        (
            "other-email",
            "has no user id with the committer email `ops@example.com`",
        ),
    ] {
        let failed = fire(secret).await.expect_err("refused");
        assert_eq!(failed.status.code(), Code::FailedPrecondition, "{secret}");
        assert!(
            failed.status.message().contains(expected),
            "{secret}: {}",
            failed.status.message()
        );
        messages.push(failed.status.message().to_string());
    }
    assert_eq!(commit_count(&bare), before, "no unsigned commit instead");

    let pgp = fire("pgp").await.expect("promotes");
    assert_eq!(
        pgp.response["signature"],
        json!({"format": "openpgp", "fingerprint": fpr})
    );
    let commit = pgp.response["commit"].as_str().expect("commit");
    let verified = gpg.verify(&bare, commit);
    assert!(verified.status.success(), "{}", keys::text(&verified));
    // The next promotion of the same file, signed by the RSA key of another Secret.
    let newer = bump(&bare, &["petstore"], "test", "3.0");
    let spec = petstore(
        &file_url(&bare),
        &[("test", "none"), ("credentialsSecret", "ssh-rsa")],
    );
    let ssh = sensor
        .fire(&spec, &sync_event(&newer), FROM_TEST)
        .await
        .expect("promotes");
    assert_eq!(
        ssh.response["signature"]["fingerprint"],
        ssh_fingerprint(&rsa)
    );
    let allowed = allowed_signers(&root, EMAIL, &[&rsa]);
    let commit = ssh.response["commit"].as_str().expect("commit");
    let verified = verify_ssh(&bare, commit, &allowed);
    assert!(verified.status.success(), "{}", keys::text(&verified));

    server.stop().await;
    for m in &messages {
        assert!(!m.contains("SENTINEL"), "{m}");
    }
    assert!(!logs().contains("SENTINEL"), "a passphrase was logged");
}
