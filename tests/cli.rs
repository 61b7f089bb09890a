//! The command line: `promote` as a drop-in for the classic promote.py step, and `demo`.

use std::process::{Command, Output};

use crate::support::*;
use serde_json::Value;

fn phasegate(args: &[&str], cache: &std::path::Path) -> Output {
    phasegate_with(args, cache, &[])
}

fn phasegate_with(args: &[&str], cache: &std::path::Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .args(args)
        .env("PHASEGATE_CACHE_DIR", cache)
        .env_remove("GIT_USER")
        .env_remove("GIT_PASSWORD")
        .envs(env.iter().copied())
        .output()
        .expect("run phasegate")
}

/// `promote` of petstore from test to prod in the repository at `bare`, without the commit.
fn promote_args(bare: &std::path::Path) -> Vec<String> {
    let path = PATH.replace("{app}", "petstore");
    ["promote", "--git-repo", &file_url(bare), "--path", &path]
        .into_iter()
        .chain(["--source-phase", "test", "--target-phase", "prod"])
        .map(str::to_string)
        .collect()
}

#[test]
fn promote_runs_a_test_profile_of_the_configuration() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let cache = root.join("cache");
    let config = root.join("config.yaml");
    std::fs::write(
        &config,
        "testProfiles:\n  smoke:\n    test: command\n    testCommand: '[\"sh\", \"-c\", \"echo smoke at $1\", \"sh\"]'\n    testTargets: [\"http://petstore.test:8080\"]\n",
    )
    .expect("write");
    let config = config.to_str().expect("utf-8");
    let base = promote_args(&bare);
    let base: Vec<&str> = base.iter().map(String::as_str).collect();
    let run = |extra: &[&str]| {
        let args = [
            &base[..],
            &["--config", config, "--source-commit", &synced],
            extra,
        ];
        phasegate(&args.concat(), &cache)
    };
    let elsewhere = run(&[
        "--test-profile",
        "smoke",
        "--test-target",
        "http://other.test:8080",
    ]);
    assert_eq!(elsewhere.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(
        stderr.contains("testTargets of the test profile smoke"),
        "{stderr}"
    );
    let unknown = run(&[
        "--test-profile",
        "nope",
        "--test-target",
        "http://petstore.test:8080",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("(it has: smoke)"), "{stderr}");
    let both = run(&["--test-profile", "smoke", "--test", "none"]);
    assert_eq!(
        both.status.code(),
        Some(2),
        "a profile or a runner, not both"
    );

    let ok = run(&[
        "--test-profile",
        "smoke",
        "--test-target",
        "http://petstore.test:8080",
    ]);
    let answer: Value = serde_json::from_slice(&ok.stdout).expect("JSON on stdout");
    assert_eq!(answer["outcome"], "promoted", "{answer}");
    let log = answer["test"]["log"].as_str().expect("log");
    assert!(log.contains("smoke at http://petstore.test:8080"), "{log}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
}

#[test]
fn promote_exits_0_on_success_1_on_failed_tests_2_on_bad_input() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let cache = root.join("cache");
    let base = promote_args(&bare);
    let base: Vec<&str> = base.iter().map(String::as_str).collect();

    let failed = phasegate(
        &[
            &base[..],
            &[
                "--source-commit",
                &synced,
                "--test",
                "command",
                "--test-command",
                "sh -c 'echo campaign failed; exit 1'",
                "--test-target",
                "http://petstore.test:8080",
            ],
        ]
        .concat(),
        &cache,
    );
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    let answer: Value = serde_json::from_slice(&failed.stdout).expect("JSON on stdout");
    assert_eq!(answer["outcome"], "tests-failed");
    assert!(
        answer["test"]["log"]
            .as_str()
            .expect("log")
            .contains("campaign failed")
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");

    let bad = phasegate(&[&base[..], &["--source-commit", "xyz"]].concat(), &cache);
    assert_eq!(bad.status.code(), Some(2));
    let untargeted = phasegate(
        &[
            &base[..],
            &[
                "--source-commit",
                &synced,
                "--test",
                "command",
                "--test-command",
                "true",
            ],
        ]
        .concat(),
        &cache,
    );
    assert_eq!(untargeted.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&untargeted.stderr).contains("test.target"));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("source.commit"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let ok = phasegate(&[&base[..], &["--source-commit", &synced]].concat(), &cache);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let answer: Value = serde_json::from_slice(&ok.stdout).expect("JSON on stdout");
    assert_eq!(answer["outcome"], "promoted");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
}

#[test]
fn promote_reads_its_configuration_from_phasegate_variables() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let repo = file_url(&bare);
    let cache = root.join("cache");
    let mut args = promote_args(&bare);
    args.extend(["--source-commit".to_string(), synced]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let refused = phasegate_with(
        &args,
        &cache,
        &[(
            "PHASEGATE_POLICY_REPOS",
            "https://git.example.com/*,ssh://git@git.example.com/*",
        )],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&repo), "names the refused repo: {stderr}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");

    let promoted = phasegate_with(
        &args,
        &cache,
        &[
            ("PHASEGATE_POLICY_REPOS", "file:///**"),
            ("PHASEGATE_GIT_AUTHOR_NAME", "release-bot"),
            // A username that holds someone's email never becomes the author.
            ("GIT_USER", "ceo@example.com"),
            ("GIT_PASSWORD", "token"),
            ("GIT_EMAIL", "bot@example.com"),
        ],
    );
    assert_eq!(
        promoted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    let author = std::process::Command::new("git")
        .args(["log", "-1", "--format=%an <%ae>", "main"])
        .current_dir(&bare)
        .output()
        .expect("git log");
    assert_eq!(
        String::from_utf8_lossy(&author.stdout).trim(),
        "release-bot <bot@example.com>"
    );
    assert!(
        std::fs::read_dir(&cache).is_ok_and(|mut d| d.next().is_some()),
        "the clone lives in PHASEGATE_CACHE_DIR"
    );
}

#[test]
fn demo_ends_with_a_commit_changing_only_prods_version_line() {
    let (_dir, root) = tempdir();
    let out = phasegate(&["demo"], &root);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "FetchResource",
        "Execute",
        "ApplyPolicy",
        "promotion commit",
    ] {
        assert!(text.contains(step), "{step} missing:\n{text}");
    }
    let changed: Vec<&str> = text
        .lines()
        .map(str::trim_start)
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert_eq!(changed.len(), 2, "{text}");
    assert!(changed[0].starts_with("-  version: \"1.0\""), "{changed:?}");
    assert!(changed[1].starts_with("+  version: \"2.0\""), "{changed:?}");
    assert!(
        text.contains("+++ b/apps/petstore/overlays/prod/values-prod.yaml"),
        "{text}"
    );
}

#[test]
fn demo_with_kustomize_promotes_only_prods_images_new_tag() {
    let (_dir, root) = tempdir();
    let out = phasegate(&["demo", "--kustomize"], &root);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("images[name=petstore].newTag"), "{text}");
    let changed: Vec<&str> = text
        .lines()
        .map(str::trim_start)
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
                && !l.starts_with("- name:")
                && !l.starts_with("- ../")
        })
        .collect();
    assert_eq!(
        changed,
        [
            "-  newTag: \"1.0\"  # promoted by phasegate",
            "+  newTag: \"2.0\"  # promoted by phasegate"
        ],
        "{text}"
    );
    assert!(
        text.contains("+++ b/apps/petstore/overlays/prod/kustomization.yaml"),
        "{text}"
    );
    assert!(
        text.contains("Promoted-Keys: images[name=petstore].newTag"),
        "{text}"
    );
}

#[test]
fn promote_writes_a_helm_values_tag_into_a_kustomization_with_source_path_and_a_key_pair() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let prod = "images:\n- name: petstore # the app\n  newTag: '1.2'\n";
    let synced = phasegate::git::local::commit_files(
        &bare,
        "main",
        &[
            ("helm/values-test.yaml", "image:\n  tag: 1.3.0\n"),
            ("overlays/prod/kustomization.yaml", prod),
        ],
        "Deploy 1.3.0 to test",
    )
    .expect("commit");
    let out = phasegate(
        &[
            "promote",
            "--git-repo",
            &file_url(&bare),
            "--path",
            "overlays/{phase}/kustomization.yaml",
            "--source-path",
            "helm/values-{phase}.yaml",
            "--key",
            "image.tag->images[name=petstore].newTag",
            "--source-phase",
            "test",
            "--target-phase",
            "prod",
            "--source-commit",
            &synced,
        ],
        &root.join("cache"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = phasegate::git::local::read_file(&bare, "main", "overlays/prod/kustomization.yaml")
        .expect("prod");
    assert_eq!(after, prod.replace("'1.2'", "'1.3.0'"));
}

/// `phasegate runs ARGS…`, its stdout, and its stderr, which must be one line when it fails.
fn runs(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .arg("runs")
        .args(args)
        .env_remove("PHASEGATE_SERVER")
        .output()
        .expect("run phasegate");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_takes_the_server_address_as_grpcurl_and_the_sensor_do() {
    let server = TestServer::start(test_config()).await;
    for address in [
        server.addr.to_string(),
        server.url(),
        format!("{}/", server.url()),
    ] {
        let (code, stdout, stderr) =
            tokio::task::spawn_blocking(move || runs(&["--server", &address]))
                .await
                .expect("runs");
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stdout.contains("(no runs)"), "{stdout}");
    }
}

#[test]
fn runs_says_in_one_line_why_the_server_cannot_be_reached() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let (code, _, stderr) = runs(&["--server", &closed]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!(
            "cannot reach the phasegate server at http://{closed}"
        )) && stderr.contains("refused"),
        "{stderr}"
    );

    let (code, _, stderr) = runs(&["--server", "phasegate.nosuchhost.invalid:9000"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("phasegate.nosuchhost.invalid") && stderr.contains("dns error"),
        "{stderr}"
    );
    assert!(!stderr.contains("transport error"), "{stderr}");

    for (address, problem) in [
        ("ftp://phasegate:9000", "not http or https"),
        ("http://phasegate:9000/runs", "no path"),
        ("http://", "--server"),
    ] {
        let (code, _, stderr) = runs(&["--server", address]);
        assert_eq!(code, Some(2), "{address}");
        assert!(
            stderr.contains(problem) && stderr.contains("HOST:PORT"),
            "{address}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_watch_of_an_unknown_run_says_so_in_one_line() {
    let server = TestServer::start(test_config()).await;
    let address = server.addr.to_string();
    let (code, _, stderr) =
        tokio::task::spawn_blocking(move || runs(&["--server", &address, "watch", "no-such-run"]))
            .await
            .expect("runs");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("NotFound") && stderr.contains("no-such-run"),
        "{stderr}"
    );
}

#[test]
fn serve_says_in_one_line_why_it_cannot_start() {
    let (_dir, root) = tempdir();
    let missing = root.join("missing.yaml");
    let out = phasegate(
        &["serve", "--config", missing.to_str().expect("utf-8")],
        &root,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("missing.yaml"), "{stderr}");
}

/// The stderr of a promotion that fails (its log lines, then the error), with stderr on a
/// terminal (through `script`, which gives the command a pseudo-terminal) or on a pipe.
fn promote_logs(terminal: bool, env: &[(&str, &str)]) -> String {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    gitops_repo(&bare, &["petstore"]);
    let mut args = promote_args(&bare);
    args.extend(["--source-commit".into(), "abcdef1".into()]);
    let exe = env!("CARGO_BIN_EXE_phasegate");
    let mut command = if terminal {
        let line = std::iter::once(exe.to_string())
            .chain(args.iter().map(|a| format!("'{a}'")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut c = Command::new("script");
        c.args(["-qec", &line, "/dev/null"]);
        c
    } else {
        let mut c = Command::new(exe);
        c.args(&args);
        c
    };
    let out = command
        .env("PHASEGATE_CACHE_DIR", root.join("cache"))
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .output()
        .expect("run phasegate");
    // `script` puts the terminal's output on its stdout.
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("run failed"),
        "the run logged its failure: {text}"
    );
    text
}

#[test]
fn logs_carry_colour_codes_only_on_a_terminal_and_never_with_no_color() {
    const ESC: char = '\u{1b}';
    assert!(
        !promote_logs(false, &[]).contains(ESC),
        "piped logs are plain text"
    );
    assert!(
        promote_logs(true, &[]).contains(ESC),
        "a terminal gets colour"
    );
    assert!(
        !promote_logs(true, &[("NO_COLOR", "1")]).contains(ESC),
        "NO_COLOR turns it off"
    );
}

#[test]
fn flags_are_parsed_where_they_are_given() {
    let (_dir, root) = tempdir();
    for (args, flag) in [
        (&["--log-format", "xml", "runs"][..], "--log-format"),
        (
            &["serve", "--shutdown-grace", "forever"][..],
            "--shutdown-grace",
        ),
        (&["promote", "--test", "job"][..], "--test"),
    ] {
        let out = phasegate(args, &root);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.lines().next().is_some_and(|l| l.contains(flag)),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn demo_with_the_console_keeps_serving_the_board_of_its_promotion_until_stopped() {
    use std::io::BufRead;
    let (_dir, root) = tempdir();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .args(["demo", "--console"])
        .env("PHASEGATE_CACHE_DIR", &root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the demo");
    let stdout = demo.stdout.take().expect("stdout");
    let url = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with("http://") && l.contains("web console"))
                    .map(str::to_string)
            })
    })
    .await
    .expect("reader")
    .expect("the demo prints the console's URL");
    let board = reqwest::get(&url)
        .await
        .expect("the console answers")
        .text()
        .await
        .expect("board");
    assert_eq!(
        board.matches("class=\"version\">2.0<").count(),
        2,
        "test and prod at 2.0:\n{board}"
    );
    assert!(board.contains(">promoted<"), "{board}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(demo.id()).expect("pid")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("Ctrl-C");
    let status = tokio::task::spawn_blocking(move || demo.wait())
        .await
        .expect("waiter")
        .expect("the demo ends");
    assert!(status.success(), "{status}");
}

/// A port already taken stops `serve` at once (exit 2), naming the address and the listener:
/// gRPC, metrics or the console.
#[test]
fn serve_stops_naming_a_listen_address_already_in_use() {
    let (_dir, root) = tempdir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    for (flag, what) in [
        ("--listen", "gRPC"),
        ("--metrics-listen", "metrics"),
        ("--console-listen", "the console"),
    ] {
        let mut args = vec!["serve", "--no-kubernetes"];
        if flag != "--listen" {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        args.extend([flag, addr.as_str()]);
        let out = phasegate(&args, &root.join("cache"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {addr} for {what}:")),
            "{flag}: {stderr}"
        );
    }
}

/// A cache directory others may write is refused before anything is fetched: whoever can
/// write there could plant a clone that sends the credentials elsewhere.
#[test]
fn promote_refuses_a_cache_directory_others_can_write() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let mut args = promote_args(&bare);
    args.extend(["--source-commit".to_string(), synced]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let open_cache = root.join("open-cache");
    std::fs::create_dir(&open_cache).expect("mkdir");
    {
        use std::os::unix::fs::PermissionsExt;
        let open = std::fs::Permissions::from_mode(0o777);
        std::fs::set_permissions(&open_cache, open).expect("chmod");
    }
    let refused = phasegate(&args, &open_cache);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cacheDir is not phasegate's own"),
        "{stderr}"
    );
    assert!(
        stderr.contains("writable by its group or others"),
        "{stderr}"
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");

    let promoted = phasegate(&args, &root.join("cache"));
    let stderr = String::from_utf8_lossy(&promoted.stderr);
    assert_eq!(promoted.status.code(), Some(0), "{stderr}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
}

/// Issue 25: after `--rollback` from 3.0 to 2.0, Argo CD's next re-sync of the test phase at
/// 3.0's own source commit must not promote 3.0 again.
#[test]
fn a_rollback_holds_when_the_rolled_back_versions_source_commit_comes_again() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced_2 = gitops_repo(&bare, &["petstore"]);
    let synced_3 = bump(&bare, &["petstore"], "test", "3.0");
    let cache = root.join("cache");
    let base = promote_args(&bare);
    let outcome = |commit: &str, extra: &[&str]| {
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend(["--source-commit", commit]);
        args.extend(extra);
        let out = phasegate(&args, &cache);
        let answer: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        answer["outcome"].as_str().expect("outcome").to_string()
    };
    assert_eq!(outcome(&synced_2, &[]), "promoted");
    assert_eq!(outcome(&synced_3, &[]), "promoted");
    assert_eq!(outcome(&synced_2, &["--rollback"]), "promoted");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");

    let commits = commit_count(&bare);
    assert_eq!(outcome(&synced_3, &[]), "superseded");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    assert_eq!(commit_count(&bare), commits, "nothing pushed");
}
