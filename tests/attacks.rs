//! "Trust nothing, round 2": each attack of issue 20 as whoever reaches port 9000 or posts to
//! the webhook would try it, through the Sensor's calls (FetchResource → Execute →
//! ApplyPolicy) on a served phasegate. Each must fail for the attacker, and leave no trace:
//! no marker file, no commit, no request to the address it aimed at. SECURITY.md lists them.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::support::*;
use axum::{Router, routing::get};
use phasegate::{
    PolicyConfig,
    config::Config,
    sensor::{Failed, Parameter},
    spec::PodSecurityLevel,
};
use tokio::net::TcpListener;
use tonic::Code;

async fn fire(
    server: &TestServer,
    spec: &BTreeMap<String, String>,
    params: &[Parameter],
    payload: &[u8],
) -> Result<serde_json::Value, Failed> {
    let sensor = server.sensor().await;
    sensor
        .fire(spec, params, payload)
        .await
        .map(|fired| fired.response)
}

#[track_caller]
fn assert_refused(result: Result<serde_json::Value, Failed>, code: Code, needle: &str) {
    let failed = result.expect_err("the attack must be refused");
    let message = failed.status.message();
    assert_eq!(failed.status.code(), code, "{}: {message}", failed.step);
    assert!(message.contains(needle), "{needle:?} not in: {message}");
}

/// A counting HTTP server: every request to it is counted; `/pet` answers `body`.
async fn counted(body: &'static str) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let counter = hits.clone();
    tokio::spawn(async move {
        let router = Router::new().fallback(get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { body }
        }));
        axum::serve(listener, router).await
    });
    (url, hits)
}

/// A listed test script (bash, as campaigns often are) that echoes its target and passes.
fn listed_script(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("launchTests.sh");
    std::fs::write(&script, "#!/bin/bash\necho \"testing $1\"\n").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::canonicalize(script)
        .expect("canonical")
        .display()
        .to_string()
}

#[tokio::test]
async fn test_env_cannot_run_code_through_a_listed_program() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let script = listed_script(&root);
    let marker = root.join("MARKER");
    // The operator lists every name (`*`): the hard-wired refusal still holds.
    let server = TestServer::start(test_config()).await;
    let payload = format!("$(touch {})", marker.display());
    let value = serde_json::to_string(&payload).expect("json");
    for name in [
        "BASH_ENV",
        "ENV",
        "BASH_FUNC_echo%%",
        "PYTHONWARNINGS",
        "BROWSER",
        "LD_PRELOAD",
        "PATH",
        "NODE_OPTIONS",
        "PERL5OPT",
        "JAVA_TOOL_OPTIONS",
        "GIT_SSH_COMMAND",
    ] {
        let spec = petstore(
            &file_url(&bare),
            &[
                ("test", "command"),
                ("testCommand", &script),
                ("testEnv", &format!("{{\"{name}\": {value}}}")),
            ],
        );
        let result = fire(&server, &spec, &event_at(&synced, PETSTORE_TEST), FROM_TEST).await;
        assert_refused(result, Code::InvalidArgument, "testEnv");
    }
    assert!(!marker.exists(), "the environment ran code");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    server.stop().await;

    // A name the policy does not list is refused too, before the program starts.
    let mut policy = test_policy();
    policy.test_env = vec!["SUITE".into()];
    let server = TestServer::start(Config {
        policy,
        ..test_config()
    })
    .await;
    let spec = petstore(
        &file_url(&bare),
        &[
            ("test", "command"),
            ("testCommand", &script),
            ("testEnv", r#"{"SUITE": "smoke", "LOG_LEVEL": "debug"}"#),
        ],
    );
    let result = fire(&server, &spec, &event_at(&synced, PETSTORE_TEST), FROM_TEST).await;
    assert_refused(
        result,
        Code::PermissionDenied,
        "test environment variable LOG_LEVEL (policy.testEnv)",
    );
    server.stop().await;
}

#[tokio::test]
async fn the_events_test_target_never_becomes_shell_code() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let marker = root.join("MARKER");
    let server = TestServer::start(test_config()).await;
    let repo = file_url(&bare);
    // Scripts that hold {target}, whatever the option spelling: refused at FetchResource.
    for command in [
        r#"["sh", "-cx", "echo {target}"]"#,
        r#"["sh", "-c", "-x", "echo {target}"]"#,
        r#"["sh", "-c", "--", "{target}"]"#,
        r#"["perl", "-E", "{target}"]"#,
        r#"["node", "-p", "{target}"]"#,
        r#"["bash", "{target}"]"#,
        r#"["env", "{target}"]"#,
    ] {
        let spec = petstore(
            &repo,
            &[
                ("test", "command"),
                ("testCommand", command),
                ("testArgs", "[]"),
            ],
        );
        let failed = server
            .sensor()
            .await
            .fire(&spec, &event_at(&synced, PETSTORE_TEST), FROM_TEST)
            .await
            .expect_err(command);
        assert_eq!(failed.step, "FetchResource", "{command}");
        assert_eq!(failed.status.code(), Code::InvalidArgument, "{command}");
        assert!(failed.status.message().contains("{target}"), "{command}");
    }
    // The payload's target, shell code for a script that expands $1 unquoted: refused before
    // any test starts, on a spec that passes it as data.
    let spec = petstore(
        &repo,
        &[
            ("test", "command"),
            (
                "testCommand",
                r#"["sh", "-c", "eval echo $1", "sh", "{target}"]"#,
            ),
            ("testArgs", "[]"),
        ],
    );
    for target in [
        format!("http://x/;IFS=,;c=touch,{};$c;#", marker.display()),
        format!("http://x/$(touch${{IFS}}{})", marker.display()),
        "http://x/;exit${IFS}0;#".to_string(),
    ] {
        let payload = serde_json::json!({"source_phase": "test", "test_target": target});
        let result = fire(
            &server,
            &spec,
            &event_at(&synced, PETSTORE_TEST)[..1],
            payload.to_string().as_bytes(),
        )
        .await;
        assert_refused(result, Code::InvalidArgument, "test.target");
    }
    assert!(!marker.exists(), "the target ran as code");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    server.stop().await;
}

#[tokio::test]
async fn tests_reach_only_the_targets_the_operator_lists() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let repo = file_url(&bare);
    let (listed, listed_hits) = counted("Dog").await;
    let (secret, secret_hits) = counted("SECRET-7f3a").await;
    let mut policy = test_policy();
    policy.test_targets = vec![listed.clone()];
    let server = TestServer::start(Config {
        policy,
        ..test_config()
    })
    .await;
    let oracle = petstore(
        &repo,
        &[
            ("test", "http"),
            ("testPath", "/pet"),
            ("testExpectBody", "^SECRET-7"),
            ("dryRun", "true"),
        ],
    );
    // The secret on another loopback port: no probe reaches it, whatever the body regex.
    let result = fire(&server, &oracle, &event_at(&synced, &secret), FROM_TEST).await;
    assert_refused(result, Code::PermissionDenied, "policy.testTargets");
    // Link-local and metadata addresses: refused whatever the policy says.
    for target in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ] {
        let result = fire(&server, &oracle, &event_at(&synced, target), FROM_TEST).await;
        assert_refused(result, Code::InvalidArgument, "no test may reach");
    }
    assert_eq!(
        secret_hits.load(Ordering::SeqCst),
        0,
        "the secret was probed"
    );
    // The listed target is tested.
    let ok = petstore(&repo, &[("test", "http"), ("testPath", "/pet")]);
    let answer = fire(&server, &ok, &event_at(&synced, &listed), FROM_TEST)
        .await
        .expect("a listed target");
    assert_eq!(answer["outcome"], "promoted");
    assert!(listed_hits.load(Ordering::SeqCst) > 0);
    server.stop().await;

    // A closed server (no policy.testTargets) tests nothing inline.
    let mut policy = test_policy();
    policy.test_targets.clear();
    let closed = TestServer::start(Config {
        policy,
        ..test_config()
    })
    .await;
    let result = fire(&closed, &ok, &event_at(&synced, &listed), FROM_TEST).await;
    assert_refused(
        result,
        Code::PermissionDenied,
        "policy.testTargets lists none",
    );
    closed.stop().await;
}

#[tokio::test]
async fn an_event_promotes_only_forward_along_the_specs_phases() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let repo = file_url(&bare);
    let commits = commit_count(&bare);
    let server = TestServer::start(test_config()).await;
    let spec = petstore(&repo, &[("phases", "dev,test,prod"), ("test", "none")]);
    let params = &event_at(&synced, PETSTORE_TEST)[..1];
    for (payload, needle) in [
        (
            r#"{"source_phase":"test","target_phase":"base"}"#,
            "`base` is not one of `phases`",
        ),
        (
            r#"{"source_phase":"test","target_phase":"dev"}"#,
            "forward only",
        ),
        (
            r#"{"source_phase":"qa","target_phase":"prod"}"#,
            "`qa` is not one of `phases`",
        ),
    ] {
        let result = fire(&server, &spec, params, payload.as_bytes()).await;
        assert_refused(result, Code::InvalidArgument, needle);
    }
    let skip = fire(
        &server,
        &spec,
        params,
        br#"{"source_phase":"dev","target_phase":"prod"}"#,
    )
    .await;
    assert_refused(
        skip,
        Code::PermissionDenied,
        "over test (policy.allowPhaseSkips",
    );
    assert_eq!(commit_count(&bare), commits, "nothing was committed");
    server.stop().await;

    let mut policy = test_policy();
    policy.allow_phase_skips = true;
    let skips = TestServer::start(Config {
        policy,
        ..test_config()
    })
    .await;
    // Admitted now: the run goes on to read dev's values file, which this repository lacks.
    let skip = fire(
        &skips,
        &spec,
        params,
        br#"{"source_phase":"dev","target_phase":"prod"}"#,
    )
    .await;
    assert_refused(skip, Code::NotFound, "dev");
    skips.stop().await;
}

#[tokio::test]
async fn a_dry_run_echoes_no_value_the_policy_does_not_list() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let repo = file_url(&bare);
    let mut policy = test_policy();
    policy.files = vec![phasegate::FileRule {
        repos: vec!["file:///**".into()],
        paths: vec!["apps/petstore/*/values-*.yaml".into()],
        keys: vec!["image.version".into()],
    }];
    let server = TestServer::start(Config {
        policy,
        ..test_config()
    })
    .await;
    let params = &event_at(&synced, PETSTORE_TEST)[..1];
    // `image.repository` stands for any key nobody listed (a password in a real file).
    for (key, path) in [
        ("image.repository", PATH.replace("{app}", "petstore")),
        (
            "image.version",
            "apps/other/{phase}/values.yaml".to_string(),
        ),
    ] {
        let mut spec = petstore(&repo, &[("key", key), ("test", "none"), ("dryRun", "true")]);
        spec.insert("path".into(), path);
        let result = fire(&server, &spec, params, FROM_TEST).await;
        let failed = result.expect_err("not listed");
        assert_eq!(failed.status.code(), Code::PermissionDenied, "{key}");
        assert!(failed.status.message().contains("policy.files"), "{key}");
        assert!(!failed.status.message().contains("registry"), "echoed");
    }
    let spec = petstore(&repo, &[("test", "none"), ("dryRun", "true")]);
    let answer = fire(&server, &spec, params, FROM_TEST)
        .await
        .expect("listed");
    assert_eq!(answer["outcome"], "dry-run");
    server.stop().await;
}

#[tokio::test]
async fn a_spec_names_the_operators_test_profile_and_cannot_change_it() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let repo = file_url(&bare);
    let (listed, hits) = counted("Dog").await;
    let (other, other_hits) = counted("Dog").await;
    let profile =
        format!("test: http\ntestPath: /pet\ntestExpectBody: Dog\ntestTargets: [\"{listed}\"]\n");
    // A closed server: nothing inline is allowed, the profile is.
    let server = TestServer::start(Config {
        policy: PolicyConfig {
            repos: vec!["file:///**".into()],
            allow_file_repos: true,
            ..PolicyConfig::default()
        },
        test_profiles: [(
            "petstore-smoke".to_string(),
            serde_yaml_ng::from_str(&profile).expect("yaml"),
        )]
        .into(),
        ..Config::default()
    })
    .await;
    let spec = petstore(&repo, &[("testProfile", "petstore-smoke")]);
    // The spec may not add to the profile, by key or by parameter.
    let mut widened = spec.clone();
    widened.insert("testImage".into(), "evil.io/miner:1".into());
    let result = fire(&server, &widened, &event_at(&synced, &listed), FROM_TEST).await;
    assert_refused(result, Code::InvalidArgument, "testImage");
    let mut params = event_at(&synced, &listed);
    params.push(Parameter {
        dest: "test.command".into(),
        value: serde_json::json!(["sh", "-c", "id"]),
    });
    let result = fire(&server, &spec, &params, FROM_TEST).await;
    assert_refused(result, Code::InvalidArgument, "profile");
    let unknown = petstore(&repo, &[("testProfile", "nope")]);
    let result = fire(&server, &unknown, &event_at(&synced, &listed), FROM_TEST).await;
    assert_refused(result, Code::InvalidArgument, "petstore-smoke");
    // Only the profile's targets.
    let result = fire(&server, &spec, &event_at(&synced, &other), FROM_TEST).await;
    assert_refused(
        result,
        Code::PermissionDenied,
        "testTargets of the test profile",
    );
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
    let answer = fire(&server, &spec, &event_at(&synced, &listed), FROM_TEST)
        .await
        .expect("the profile runs");
    assert_eq!(answer["outcome"], "promoted");
    assert_eq!(answer["test"]["runner"], "http");
    assert!(hits.load(Ordering::SeqCst) > 0);
    server.stop().await;
}

#[tokio::test]
async fn rollbacks_job_commands_and_workdirs_need_the_operators_policy() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let repo = file_url(&bare);
    let script = listed_script(&root);
    let mut policy = test_policy();
    policy.allow_rollback = false;
    policy.job_commands.clear();
    policy.test_workdirs = vec!["/opt/tests/*".into()];
    let server = TestServer::start(Config {
        policy,
        ..test_config()
    })
    .await;
    let params = event_at(&synced, PETSTORE_TEST);
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("test", "none"), ("rollback", "true")],
            "policy.allowRollback",
        ),
        (
            &[
                ("testImage", "registry.example.com/tests:1"),
                ("testCommand", "/bin/sh"),
                ("testArgs", "[\"-c\", \"id\"]"),
            ],
            "test Job command /bin/sh (policy.jobCommands lists none)",
        ),
        (
            &[
                ("test", "command"),
                ("testCommand", &script),
                ("testWorkdir", "/tmp"),
            ],
            "testWorkdir /tmp (policy.testWorkdirs)",
        ),
    ];
    for (extra, needle) in cases {
        let result = fire(&server, &petstore(&repo, extra), &params, FROM_TEST).await;
        assert_refused(result, Code::PermissionDenied, needle);
    }
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    server.stop().await;
}

#[tokio::test]
async fn a_spec_cannot_make_a_privileged_test_pod() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let repo = file_url(&bare);
    let image = ("testImage", "registry.example.com/tests:1");
    let params = event_at(&synced, PETSTORE_TEST);
    for level in [PodSecurityLevel::Restricted, PodSecurityLevel::Baseline] {
        let mut policy = test_policy();
        policy.test_pod_security = level;
        let server = TestServer::start(Config {
            policy,
            ..test_config()
        })
        .await;
        for (key, context, needle) in [
            (
                "testSecurityContext",
                r#"{"privileged":true,"capabilities":{"add":["SYS_ADMIN"]}}"#,
                "privileged",
            ),
            (
                "testSecurityContext",
                r#"{"capabilities":{"drop":["ALL"],"add":["SYS_ADMIN"]}}"#,
                "SYS_ADMIN",
            ),
            (
                "testPodSecurityContext",
                r#"{"hostNetwork":true}"#,
                "hostNetwork",
            ),
        ] {
            let spec = petstore(&repo, &[image, (key, context)]);
            let result = fire(&server, &spec, &params, FROM_TEST).await;
            assert_refused(result, Code::PermissionDenied, needle);
        }
        // Root is baseline, not restricted.
        let root_user = petstore(
            &repo,
            &[image, ("testPodSecurityContext", r#"{"runAsUser":0}"#)],
        );
        let result = fire(&server, &root_user, &params, FROM_TEST).await;
        match level {
            PodSecurityLevel::Restricted => {
                assert_refused(result, Code::PermissionDenied, "runAsUser");
            }
            // Admitted: the run goes on to the Job runner, which this server lacks.
            PodSecurityLevel::Baseline => {
                let failed = result.expect_err("no cluster");
                assert_ne!(failed.status.code(), Code::PermissionDenied, "{failed:?}");
            }
        }
        server.stop().await;
    }
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
}

#[tokio::test]
async fn a_served_file_repository_whose_hooks_would_not_run_is_refused_unless_allowed() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    // The repository's own hook refuses every push; libgit2's local push would not run it.
    let hook = bare.join("hooks/pre-receive");
    std::fs::create_dir_all(bare.join("hooks")).expect("hooks");
    std::fs::write(&hook, "#!/bin/sh\necho refused by policy >&2\nexit 1\n").expect("hook");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let mut policy = test_policy();
    policy.allow_file_repos = false;
    let server = TestServer::start(Config {
        policy,
        ..test_config()
    })
    .await;
    let spec = petstore(&file_url(&bare), &[("test", "none")]);
    let result = fire(&server, &spec, &event_at(&synced, PETSTORE_TEST), FROM_TEST).await;
    assert_refused(result, Code::PermissionDenied, "policy.allowFileRepos");
    assert_eq!(
        version_of(&bare, "petstore", "prod"),
        "1.0",
        "the hook was bypassed"
    );
    server.stop().await;
}
