//! The classic test container's shapes, unchanged: a campaign script in its own folder that
//! takes the test target as `$1` and names its suite by a relative path, and an HTTP check of
//! an internal `https` deployment whose certificate a private CA signed (made with the openssl
//! command line, served with rustls).

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::support::{git_server::tls_acceptor, *};
use phasegate::config::{Config, TestConfig};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
};
use tonic::Code;

const TARGET: &str = "http://petstore.petstore-test.svc:8080";

/// The campaign folder of the classic test image: `launchTests.sh` runs `suites/petstore.robot`
/// from where it stands, against the target it gets as `$1`.
fn campaign(dir: &Path) {
    std::fs::create_dir_all(dir.join("suites")).expect("campaign folder");
    std::fs::write(dir.join("suites/petstore.robot"), "*** Test Cases ***\n").expect("suite");
    let script = dir.join("launchTests.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nsuite=suites/petstore.robot\n\
         [ -f \"$suite\" ] || { echo \"no $suite in $(pwd)\"; exit 3; }\n\
         echo \"running $suite against $1\"\n[ \"$1\" = \"$TEST_TARGET\" ]\n",
    )
    .expect("script");
    let chmod = Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .expect("chmod");
    assert!(chmod.success());
}

fn event(commit: &str, target: &str) -> Vec<phasegate::sensor::Parameter> {
    let mut params = sync_event(commit);
    params.push(phasegate::sensor::Parameter {
        dest: "test.target".into(),
        value: serde_json::json!(target),
    });
    params
}

#[tokio::test]
async fn the_classic_campaign_runs_from_its_folder_with_the_target_as_first_argument() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let folder = root.join("tests/petstore");
    campaign(&folder);
    let server = TestServer::start(test_config()).await;
    let spec = petstore(
        &file_url(&bare),
        &[
            ("test", "command"),
            ("testCommand", "./launchTests.sh"),
            ("testWorkdir", folder.to_str().expect("utf-8")),
        ],
    );

    let fired = server
        .sensor()
        .await
        .fire(&spec, &event(&synced, TARGET), FROM_TEST)
        .await
        .expect("fires");

    let log = fired.response["test"]["log"].as_str().unwrap_or_default();
    assert_eq!(fired.response["outcome"], "promoted", "{log}");
    assert!(
        log.contains(&format!("running suites/petstore.robot against {TARGET}")),
        "{log}"
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
}

#[tokio::test]
async fn a_working_directory_missing_on_the_server_is_a_failed_precondition() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let missing = root.join("tests/not-deployed");
    let server = TestServer::start(test_config()).await;
    let spec = petstore(
        &file_url(&bare),
        &[
            ("test", "command"),
            ("testCommand", "./launchTests.sh"),
            ("testWorkdir", missing.to_str().expect("utf-8")),
        ],
    );

    let failed = server
        .sensor()
        .await
        .fire(&spec, &event(&synced, TARGET), FROM_TEST)
        .await
        .expect_err("no such directory");

    assert_eq!(failed.status.code(), Code::FailedPrecondition);
    assert!(
        failed.status.message().contains("testWorkdir")
            && failed.status.message().contains("not-deployed"),
        "{}",
        failed.status.message()
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
}

/// What a test app answers to a request line (`GET /pet HTTP/1.1`), given its own port.
type Answer = fn(&str, u16) -> String;

/// The petstore app: every request gets `200` and `Dog`.
fn dog(_: &str, _: u16) -> String {
    "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nDog".into()
}

/// A redirect to `location`.
fn redirect(location: &str) -> String {
    format!(
        "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
}

/// A test app on 127.0.0.1, over TLS with `app.pem` when `tls` is given: `answer` answers each
/// request. Returns its port and the count of requests it received.
async fn app(tls: Option<&Path>, answer: Answer) -> (u16, Arc<AtomicUsize>) {
    let acceptor = tls.map(tls_acceptor);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        // A client that does not trust the CA ends the handshake: nothing to
                        // answer.
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            answer_one(tls, port, answer, &counted).await;
                        }
                    }
                    None => answer_one(tcp, port, answer, &counted).await,
                }
            });
        }
    });
    (port, requests)
}

async fn answer_one(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    port: u16,
    answer: Answer,
    requests: &AtomicUsize,
) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let text = String::from_utf8_lossy(&request);
    let line = text.lines().next().unwrap_or_default();
    let _ = stream.write_all(answer(line, port).as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The petstore app over TLS with `app.pem`. Returns `https://localhost:PORT`.
async fn https_app(dir: &Path) -> String {
    let (port, _) = app(Some(dir), dog).await;
    format!("https://localhost:{port}")
}

/// Execute's answer to the petstore HTTP check of `target` on a server configured with
/// `config` (a failed test fails the trigger at ApplyPolicy).
async fn http_check(config: Config, bare: &Path, synced: &str, target: &str) -> serde_json::Value {
    let server = TestServer::start(config).await;
    let spec = petstore(
        &file_url(bare),
        &[
            ("test", "http"),
            ("testPath", "/pet"),
            ("testExpectBody", "Dog"),
            ("testAttempts", "1"),
        ],
    );
    server
        .sensor()
        .await
        .fire(&spec, &event(synced, target), FROM_TEST)
        .await
        .map_or_else(
            |failed| failed.response.expect("Execute answered"),
            |fired| fired.response,
        )
}

#[tokio::test]
async fn the_http_runner_trusts_the_configured_ca_for_internal_https_targets() {
    let (_dir, root) = tempdir();
    internal_ca(&root);
    let target = https_app(&root).await;
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);

    let untrusted = http_check(test_config(), &bare, &synced, &target).await;
    assert_eq!(untrusted["outcome"], "tests-failed", "{untrusted}");
    let log = untrusted["test"]["log"].as_str().unwrap_or_default();
    assert!(log.contains("certificate"), "says why: {log}");

    let config = Config {
        test: TestConfig {
            ca_file: Some(root.join("ca.pem")),
            ..TestConfig::default()
        },
        ..test_config()
    };
    let trusted = http_check(config, &bare, &synced, &target).await;
    assert_eq!(trusted["outcome"], "promoted", "{trusted}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");

    // The CA bundle already given for the git server is trusted for test targets too.
    let other = root.join("other-gitops.git");
    let synced = gitops_repo(&other, &["petstore"]);
    let mut config = test_config();
    config.git.ca_file = Some(root.join("ca.pem"));
    let trusted = http_check(config, &other, &synced, &target).await;
    assert_eq!(trusted["outcome"], "promoted", "{trusted}");
}

/// `phasegate serve` with `args`, which must stop it at start-up (exit 2): its stderr.
fn refused_at_start(root: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-kubernetes"])
        .args(args)
        .env("PHASEGATE_CACHE_DIR", root.join("cache"))
        .output()
        .expect("run phasegate");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

#[test]
fn a_ca_file_that_holds_no_certificate_stops_the_server_with_its_name() {
    let (_dir, root) = tempdir();
    let bad = root.join("not-a-ca.pem");
    std::fs::write(&bad, "hello\n").expect("write");
    let stderr = refused_at_start(&root, &["--test-ca-file".as_ref(), bad.as_os_str()]);
    assert!(stderr.contains("not-a-ca.pem"), "{stderr}");
}

/// The port of the app a redirect leads away to (set before the redirecting app answers).
static ELSEWHERE: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

#[tokio::test]
async fn the_http_runner_follows_redirects_only_on_the_targets_origin() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let (elsewhere, reached) = app(None, dog).await;
    ELSEWHERE.store(elsewhere, Ordering::SeqCst);
    let (away, _) = app(None, |_, _| {
        let port = ELSEWHERE.load(Ordering::SeqCst);
        redirect(&format!("http://127.0.0.1:{port}/pet?token=secret"))
    })
    .await;

    let refused = http_check(
        test_config(),
        &bare,
        &synced,
        &format!("http://127.0.0.1:{away}"),
    )
    .await;
    assert_eq!(refused["outcome"], "tests-failed", "{refused}");
    let log = refused["test"]["log"].as_str().unwrap_or_default();
    assert!(
        log.contains(&format!(
            "redirect to http://127.0.0.1:{elsewhere}/pet not followed: it leaves the target's \
             origin http://127.0.0.1:{away}"
        )),
        "{log}"
    );
    assert!(!log.contains("secret"), "a log shows no query: {log}");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the other port got a request"
    );

    // A redirect on the same origin (here with a query) is followed.
    let (same, requests) = app(None, |line, _| {
        if line.starts_with("GET /pet/dogs?") {
            dog(line, 0)
        } else {
            redirect("/pet/dogs?kind=all")
        }
    })
    .await;
    let followed = http_check(
        test_config(),
        &bare,
        &synced,
        &format!("http://127.0.0.1:{same}"),
    )
    .await;
    assert_eq!(followed["outcome"], "promoted", "{followed}");
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_http_runner_never_follows_https_to_http() {
    let (_dir, root) = tempdir();
    internal_ca(&root);
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    // The same host and port, over plain http.
    let (port, requests) = app(Some(&root), |_, port| {
        redirect(&format!("http://localhost:{port}/pet"))
    })
    .await;
    let config = Config {
        test: TestConfig {
            ca_file: Some(root.join("ca.pem")),
            ..TestConfig::default()
        },
        ..test_config()
    };

    let refused = http_check(config, &bare, &synced, &format!("https://localhost:{port}")).await;
    assert_eq!(refused["outcome"], "tests-failed", "{refused}");
    let log = refused["test"]["log"].as_str().unwrap_or_default();
    assert!(
        log.contains(&format!(
            "redirect to http://localhost:{port}/pet not followed: it leaves the target's origin \
             https://localhost:{port}"
        )),
        "{log}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1, "only the https request");
}

/// The lines of `/proc/self/status` that say what a process may do.
const PRIVILEGES: &str =
    "grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status";

/// What `/proc/self/status` says of a test command started by a server configured with `config`.
async fn test_command_status(config: Config) -> serde_json::Value {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let command = serde_json::to_string(&["sh", "-c", PRIVILEGES]).expect("json");
    let spec = petstore(
        &file_url(&bare),
        &[("test", "command"), ("testCommand", &command)],
    );
    let server = TestServer::start(config).await;
    server
        .sensor()
        .await
        .fire(&spec, &event(&synced, TARGET), FROM_TEST)
        .await
        .map_or_else(
            |failed| {
                serde_json::json!({
                    "error": failed.status.message(),
                    "response": failed.response,
                })
            },
            |fired| fired.response,
        )
}

/// The value of `field` in a `/proc/<pid>/status` text, whitespace collapsed.
fn status_field(status: &str, field: &str) -> Option<String> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        Some(value.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

#[tokio::test]
async fn a_test_command_runs_without_capabilities_and_with_no_new_privs() {
    let own = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let root = status_field(&own, "Uid").is_some_and(|uid| uid.starts_with("0 "));

    let answer = test_command_status(test_config()).await;
    assert_eq!(answer["outcome"], "promoted", "{answer}");
    let log = answer["test"]["log"].as_str().unwrap_or_default();
    let field = |name| status_field(log, name);
    const NONE: &str = "0000000000000000";
    // Whoever runs the server, the test gets no capability and cannot gain any by exec.
    assert_eq!(field("NoNewPrivs").as_deref(), Some("1"), "{log}");
    assert_eq!(field("CapEff").as_deref(), Some(NONE), "{log}");
    assert_eq!(field("CapPrm").as_deref(), Some(NONE), "{log}");
    assert_eq!(field("CapInh").as_deref(), Some(NONE), "{log}");
    assert_eq!(field("CapAmb").as_deref(), Some(NONE), "{log}");
    if root {
        // A root server holds CAP_SETPCAP: it empties the bounding set too.
        assert_ne!(
            status_field(&own, "CapEff").as_deref(),
            Some(NONE),
            "root has some"
        );
        assert_eq!(field("CapBnd").as_deref(), Some(NONE), "{log}");
        assert_eq!(field("Uid").as_deref(), Some("0 0 0 0"), "{log}");
    } else {
        // Not root (this machine's CI runs as root): the bounding set is the server's, which
        // may not shrink it; no_new_privs and the empty sets above are what still holds.
        eprintln!("not root: the bounding set and test.runAsUser are not checked");
    }

    let config = Config {
        test: TestConfig {
            run_as_user: Some("65534".parse().expect("a user")),
            ..TestConfig::default()
        },
        ..test_config()
    };
    let answer = test_command_status(config).await;
    if root {
        assert_eq!(answer["outcome"], "promoted", "{answer}");
        let log = answer["test"]["log"].as_str().unwrap_or_default();
        let field = |name| status_field(log, name);
        assert_eq!(
            field("Uid").as_deref(),
            Some("65534 65534 65534 65534"),
            "{log}"
        );
        assert_eq!(
            field("Gid").as_deref(),
            Some("65534 65534 65534 65534"),
            "{log}"
        );
        assert_eq!(
            field("Groups").as_deref(),
            Some(""),
            "no supplementary group: {log}"
        );
        assert_eq!(field("CapEff").as_deref(), Some(NONE), "{log}");
        assert_eq!(field("CapBnd").as_deref(), Some(NONE), "{log}");
        assert_eq!(field("NoNewPrivs").as_deref(), Some("1"), "{log}");
    } else {
        // Only root may start a process as another user: the test cannot start.
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("could not be started"), "{answer}");
    }
}

#[test]
fn a_test_run_as_user_of_root_or_not_a_number_stops_the_server() {
    let (_dir, root) = tempdir();
    for (user, says) in [
        ("0", "uid 0"),
        ("0:0", "uid 0"),
        ("nobody", "is not UID[:GID]"),
    ] {
        let stderr = refused_at_start(&root, &["--test-run-as-user".as_ref(), user.as_ref()]);
        assert!(stderr.contains(says), "{user}: {stderr}");
    }
    let file = root.join("config.yaml");
    std::fs::write(&file, "test:\n  runAsUser: 0\n").expect("write");
    let stderr = refused_at_start(&root, &["--config".as_ref(), file.as_os_str()]);
    assert!(stderr.contains("uid 0"), "{stderr}");
}
