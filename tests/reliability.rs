//! Reliability: a server killed with SIGKILL in the middle of a run, credentials from the
//! environment that must never leak on any failure path, and inputs that try to escape the
//! repository or exhaust the server. The server runs here as the real binary.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use crate::support::{git_server::GitServer, *};
use phasegate::{
    proto::{ExecuteRequest, trigger_client::TriggerClient},
    sensor::SensorClient,
};
use tonic::Code;

/// The real `phasegate serve` as a child process, logging at debug level into a file.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    fn spawn(dir: &Path, env: &[(&str, &str)]) -> Server {
        // Closed by default: name what these tests use, as an operator would.
        let policy = ["--policy-repos", "file:///**,http://127.0.0.1:*/**"];
        Server::spawn_with(dir, env, &policy)
    }

    fn spawn_with(dir: &Path, env: &[(&str, &str)], policy: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let log = dir.join(format!("server-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_phasegate"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(policy)
            .args(["--policy-commands", "/**", "--policy-allow-no-tests"])
            .args([
                "--policy-test-targets",
                "**",
                "--policy-test-env",
                "PASSWORD_FILE",
                "--policy-allow-file-repos",
            ])
            .env("RUST_LOG", "debug")
            .env_remove("GIT_USER")
            .env_remove("GIT_PASSWORD")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start phasegate serve");
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_run_promotes_exactly_once_after_redelivery() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let before = commit_count(&bare);
    let (started, gate) = (root.join("started"), root.join("gate"));
    let script = format!(
        "touch {}; while [ ! -e {} ]; do sleep 0.05; done",
        started.display(),
        gate.display()
    );
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
    let spec = petstore(
        &format!("file://{}", bare.display()),
        &[("test", "command"), ("testCommand", &command)],
    );

    let mut first = Server::spawn(&root, &[]);
    let sensor = SensorClient::connect(first.url.clone())
        .await
        .expect("connect");
    let in_flight = fire_in_background(sensor, &spec, &synced);
    eventually(|| started.exists()).await;
    assert!(started.exists(), "the run reached its test");
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");
    let lost = in_flight.await.expect("task");
    assert!(lost.is_err(), "the Sensor sees the failure and will retry");
    assert_eq!(commit_count(&bare), before, "nothing half-pushed");

    // The Sensor's retry reaches a restarted server with the same cache.
    std::fs::write(&gate, "").expect("open the gate");
    let second = Server::spawn(&root, &[]);
    let sensor = SensorClient::connect(second.url.clone())
        .await
        .expect("connect");
    let fired = sensor
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("redelivery promotes");
    assert_eq!(fired.response["outcome"], "promoted");
    let again = sensor
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("another redelivery");
    assert_eq!(again.response, fired.response, "the recorded answer");
    assert_eq!(
        commit_count(&bare),
        before + 1,
        "exactly one promotion commit"
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_from_the_environment_never_leaks_on_any_failure_path() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let mut git = GitServer::start(&root, "bot", "the-real-password").await;
    // The signing key's passphrase must not leak either (the key is decrypted at start-up).
    let key = root.join("signing_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-a", "2", "-t", "ed25519", "-C", "bot", "-N"])
        .arg("SENTINEL-passphrase-0c4e")
        .arg("-f")
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(keygen.success());
    let passphrase = root.join("signing_passphrase");
    std::fs::write(&passphrase, "SENTINEL-passphrase-0c4e\n").expect("passphrase file");
    let hostile = GitServer::start(&root, "attacker", "anything").await;
    let env = [
        ("GIT_USER", "bot"),
        ("GIT_PASSWORD", "SENTINEL-env-5e1f"),
        ("GIT_EMAIL", "bot@example.com"),
        ("PHASEGATE_GIT_SIGNING_KEY", key.to_str().expect("utf-8")),
        (
            "PHASEGATE_GIT_SIGNING_KEY_PASSPHRASE_FILE",
            passphrase.to_str().expect("utf-8"),
        ),
        // The local git server speaks plain http: allowed, for policy.repos only.
        ("PHASEGATE_GIT_ALLOW_INSECURE_HTTP", "1"),
    ];
    let server = Server::spawn(&root, &env);
    let sensor = SensorClient::connect(server.url.clone())
        .await
        .expect("connect");
    let url = git.url("gitops");
    let mut messages = Vec::new();

    let refused = sensor
        .fire(
            &petstore(&url, &[("test", "none")]),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect_err("wrong password");
    assert_eq!(refused.status.code(), Code::PermissionDenied);
    messages.push(refused.status.message().to_string());
    let missing = sensor
        .fire(
            &petstore(&url, &[("test", "none"), ("key", "image.nope")]),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect_err("refused before the key is read");
    messages.push(missing.status.message().to_string());
    let failing = sensor
        .fire(
            &petstore(
                &url,
                &[("test", "command"), ("testCommand", "sh -c 'env; exit 1'")],
            ),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect_err("tests fail");
    messages.push(failing.status.message().to_string());
    messages.push(failing.response.map(|r| r.to_string()).unwrap_or_default());
    git.stop().await;
    let down = sensor
        .fire(
            &petstore(&url, &[("test", "none")]),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect_err("remote down");
    assert_eq!(down.status.code(), Code::Unavailable);
    messages.push(down.status.message().to_string());
    let bad_url = url.replace("http://", "http://bot:SENTINEL-env-5e1f@");
    let in_url = sensor
        .fire(
            &petstore(&bad_url, &[("test", "none")]),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect_err("credentials in the URL");
    assert_eq!(in_url.status.code(), Code::InvalidArgument);
    messages.push(in_url.status.message().to_string());

    // A hostile remote on another host name, which policy.repos does not name: refused
    // before a byte is sent.
    let elsewhere = sensor
        .fire(
            &petstore(&hostile.url_as("localhost", "gitops"), &[("test", "none")]),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect_err("hostile remote");
    assert_eq!(elsewhere.status.code(), Code::PermissionDenied);
    messages.push(elsewhere.status.message().to_string());
    assert!(hostile.authorizations().is_empty(), "never contacted");
    // A permissive server lets any remote through, but the server's own credentials go only
    // to what policy.repos names (here: nothing): the hostile remote asks and gets nothing.
    let permissive = Server::spawn_with(&root, &env, &["--policy-permissive"]);
    let open = SensorClient::connect(permissive.url.clone())
        .await
        .expect("connect");
    let asked = open
        .fire(
            &petstore(&hostile.url_as("localhost", "gitops"), &[("test", "none")]),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect_err("no credentials for the hostile remote");
    assert_eq!(asked.status.code(), Code::PermissionDenied);
    messages.push(asked.status.message().to_string());
    let seen = hostile.authorizations();
    assert!(!seen.is_empty(), "the hostile remote asked for credentials");
    assert!(seen.iter().all(String::is_empty), "and got none: {seen:?}");
    let permissive_log = permissive.log();
    assert!(
        permissive_log.contains("PERMISSIVE POLICY"),
        "{permissive_log}"
    );
    assert!(!permissive_log.contains("SENTINEL"), "leaked in the log");

    for m in &messages {
        assert!(!m.contains("SENTINEL"), "leaked in an answer: {m}");
    }
    let log = server.log();
    assert!(
        log.contains("run failed"),
        "the server logged the failures:\n{log}"
    );
    assert!(!log.contains("SENTINEL"), "leaked in the server log");
}

/// Commits a symlink (mode 120000) at `path` in the bare repository, with the git CLI.
fn commit_symlink(bare: &Path, work: &Path, path: &str, target: &str) {
    let git = |args: &[&str], dir: &Path| {
        let mut git = Command::new("git");
        succeed(
            git.args(args)
                .current_dir(dir)
                .env("GIT_TERMINAL_PROMPT", "0"),
            "git",
        );
    };
    git(
        &[
            "clone",
            "-q",
            &bare.display().to_string(),
            &work.display().to_string(),
        ],
        bare.parent().expect("parent"),
    );
    let link = work.join(path);
    std::fs::remove_file(&link).expect("remove file");
    std::os::unix::fs::symlink(target, &link).expect("symlink");
    git(
        &[
            "-c",
            "user.name=x",
            "-c",
            "user.email=x@example.com",
            "commit",
            "-qam",
            "prod values as a symlink",
        ],
        work,
    );
    git(&["push", "-q", "origin", "main"], work);
}

#[tokio::test]
async fn symlinks_oversized_files_and_oversized_messages_are_refused() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore", "huge"]);
    commit_symlink(
        &bare,
        &root.join("work"),
        &values_path("petstore", "prod"),
        "/etc/passwd",
    );
    let huge = format!("{}# {}\n", values("1.0"), "x".repeat(2 << 20));
    phasegate::git::local::commit_files(
        &bare,
        "main",
        &[(&values_path("huge", "prod"), &huge)],
        "a huge values file",
    )
    .expect("commit");
    let server = TestServer::start(test_config()).await;
    let sensor = server.sensor().await;
    let repo = format!("file://{}", bare.display());

    let link = sensor
        .fire(
            &petstore(&repo, &[("test", "none")]),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect_err("symlink");
    assert_eq!(link.status.code(), Code::InvalidArgument);
    assert!(
        link.status.message().contains("symbolic link"),
        "{}",
        link.status.message()
    );
    let mut big = petstore(&repo, &[("test", "none")]);
    big.insert("path".into(), PATH.replace("{app}", "huge"));
    let oversized = sensor
        .fire(&big, &sync_event(&synced), FROM_TEST)
        .await
        .expect_err("huge file");
    assert_eq!(oversized.status.code(), Code::InvalidArgument);
    assert!(
        oversized
            .status
            .message()
            .contains("more than the 1048576 bytes (1 MiB) a values file may hold"),
        "{}",
        oversized.status.message()
    );

    let mut client = TriggerClient::connect(server.url()).await.expect("connect");
    let payload = format!(
        r#"{{"pad":"{}"}}"#,
        "x".repeat(phasegate::MAX_REQUEST_BYTES)
    );
    let status = client
        .execute(ExecuteRequest {
            resource: b"{}".to_vec(),
            payload: payload.into_bytes(),
        })
        .await
        .expect_err("oversized message");
    assert_ne!(status.code(), Code::Ok);
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    assert_eq!(version_of(&bare, "huge", "prod"), "1.0");
    server.stop().await;
}

/// What a listed test command sees of the server (its parent).
const PROBE: &str = r#"
echo "fds: $(ls /proc/self/fd | tr '\n' ' ')"
cat /proc/$PPID/environ >/dev/null 2>&1 && echo "environ: READ" || echo "environ: refused"
(exec 3</proc/$PPID/mem) 2>/dev/null && echo "mem: OPENED" || echo "mem: refused"
readlink /proc/$PPID/fd/0 >/dev/null 2>&1 && echo "parent fds: READ" || echo "parent fds: refused"
tr '\0' '\n' < /proc/$PPID/environ 2>/dev/null
[ -r "$PASSWORD_FILE" ] && echo "password file: readable" || echo "password file: unreadable"
env
exit 1
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_test_command_cannot_read_the_servers_credentials() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let password_file = root.join("scope-password");
    std::fs::write(&password_file, "SENTINEL-file-0c4d\n").expect("write");
    let config = root.join("config.yaml");
    let scope = format!(
        "credentials:\n  - url: https://git.example.com/org\n    username: bot\n    passwordFile: {}\n",
        password_file.display()
    );
    std::fs::write(&config, scope).expect("write");
    let server = Server::spawn_with(
        &root,
        &[
            ("GIT_USER", "bot"),
            ("GIT_PASSWORD", "SENTINEL-env-9a7e"),
            ("PHASEGATE_CONFIG", config.to_str().expect("utf-8")),
        ],
        &["--policy-repos", "file:///**"],
    );
    let sensor = SensorClient::connect(server.url.clone())
        .await
        .expect("connect");
    // The probe runs as the server's user without privileges, as in the Deployment (non-root,
    // every capability dropped): as root here, setpriv first drops every capability (and
    // execs, so the server stays the probe's parent).
    let mut argv = vec!["sh", "-c", PROBE];
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("proc"));
    if uid == 0 {
        argv.splice(0..0, ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]);
    }
    let command = serde_json::to_string(&argv).expect("json");
    let env = serde_json::json!({ "PASSWORD_FILE": password_file }).to_string();
    let failed = sensor
        .fire(
            &petstore(
                &file_url(&bare),
                &[
                    ("test", "command"),
                    ("testCommand", &command),
                    ("testEnv", &env),
                ],
            ),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect_err("the probe fails on purpose");
    let answer = failed.response.map(|r| r.to_string()).unwrap_or_default();
    for line in [
        "fds: 0 1 2 3 ",
        "environ: refused",
        "mem: refused",
        "parent fds: refused",
        // As SECURITY.md says: files of the server's user stay readable to a command running
        // as that user; untrusted tests belong in the Job runner.
        "password file: readable",
    ] {
        assert!(
            answer.contains(line),
            "{line:?} not in the answer: {answer}"
        );
    }
    assert!(!answer.contains("SENTINEL"), "leaked to the test: {answer}");
    assert!(!server.log().contains("SENTINEL"), "leaked in the log");
}
