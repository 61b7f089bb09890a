//! The trigger server end to end, driven as an Argo Events Sensor drives it: spec YAML →
//! FetchResource → parameters on the JSON → Execute(payload) → ApplyPolicy, over real gRPC.

use std::{collections::BTreeMap, path::Path};

use crate::support::{self, *};
use phasegate::{
    PolicyConfig,
    config::Config,
    proto::{ExecuteRequest, FetchResourceRequest, trigger_client::TriggerClient},
    sensor::{Failed, Parameter},
};
use serde_json::{Value, json};
use tonic::Code;

fn petstore_spec(bare: &Path, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    petstore(&file_url(bare), extra)
}

fn event(commit: &str, target: &str) -> Vec<Parameter> {
    vec![
        Parameter {
            dest: "source.commit".into(),
            value: json!(commit),
        },
        Parameter {
            dest: "test.target".into(),
            value: json!(target),
        },
    ]
}

#[tokio::test]
async fn sensor_sequence_promotes_exactly_the_tested_version() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let before = phasegate::git::local::read_file(&bare, "main", &values_path("petstore", "prod"))
        .expect("prod");
    // A later commit moves test on to 3.0: the tested commit (2.0) must be what is promoted.
    bump(&bare, &["petstore"], "test", "3.0");
    let app = app(200, r#"{"name":"Cat"}"#).await;
    let server = TestServer::start(test_config()).await;
    let spec = petstore_spec(
        &bare,
        &[
            ("test", "http"),
            ("testPath", "/pet"),
            ("testExpectBody", "Dog|Cat|Bird"),
        ],
    );

    let fired = server
        .sensor()
        .await
        .fire(&spec, &event(&synced, &app), FROM_TEST)
        .await
        .expect("fires");

    assert_eq!(fired.resource["source"]["commit"], "");
    assert_eq!(fired.resource["test"]["runner"], "http");
    let r = &fired.response;
    assert_eq!(r["outcome"], "promoted", "{r}");
    assert_eq!(r["version"], "2.0");
    assert_eq!(r["previous"], "1.0");
    assert_eq!(r["source"], json!({"phase": "test", "commit": synced}));
    assert_eq!(r["target"]["phase"], "prod");
    assert_eq!(r["test"]["passed"], true);
    assert_eq!(r["test"]["attempts"], 1);
    assert!(
        fired.policy_message.contains("promoted 2.0"),
        "{}",
        fired.policy_message
    );
    let after = phasegate::git::local::read_file(&bare, "main", &values_path("petstore", "prod"))
        .expect("prod");
    assert_eq!(
        after,
        before.replace("version: \"1.0\"", "version: \"2.0\"")
    );
    let head = &phasegate::git::local::log(&bare, "main", 1).expect("log")[0];
    assert_eq!(r["commit"], head.0.as_str());
    assert_eq!(head.1, "Promote image.version 2.0 from test to prod");
    let shown = phasegate::git::local::show(&bare, &head.0).expect("show");
    for trailer in [
        "Promoted-Version: 2.0",
        "Source-Phase: test",
        &format!("Source-Commit: {synced}"),
        "Target-Phase: prod",
        "Promotion-Run: ",
    ] {
        assert!(shown.contains(trailer), "missing {trailer} in\n{shown}");
    }
    server.stop().await;
}

#[tokio::test]
async fn accepts_the_classic_notification_body_as_payload() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let app = app(200, "Dog").await;
    let server = TestServer::start(test_config()).await;
    let spec = petstore_spec(&bare, &[("test", "http"), ("testPath", "/pet")]);
    let body = json!({"test_target": app, "source_commit": synced, "source_phase": "test", "target_phase": "prod"});
    // Argo Events may hand the body over as a JSON string holding the object.
    let payload = serde_json::to_vec(&Value::String(body.to_string())).expect("json");

    let fired = server
        .sensor()
        .await
        .fire(&spec, &[], &payload)
        .await
        .expect("fires");

    assert_eq!(fired.response["outcome"], "promoted");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
    server.stop().await;
}

#[tokio::test]
async fn a_broken_app_fails_the_trigger_and_pushes_nothing() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let commits = commit_count(&bare);
    let server = TestServer::start(test_config()).await;
    let spec = petstore_spec(
        &bare,
        &[
            ("test", "http"),
            ("testPath", "/pet"),
            ("testExpectBody", "Dog|Cat|Bird"),
            ("testInterval", "10ms"),
        ],
    );
    for (status, body) in [(500, "Dog"), (200, r#"{"name":"Fish"}"#)] {
        let app = app(status, body).await;
        let failed: Failed = server
            .sensor()
            .await
            .fire(&spec, &event(&synced, &app), FROM_TEST)
            .await
            .expect_err("tests fail");
        assert_eq!(failed.step, "ApplyPolicy");
        assert_eq!(failed.status.code(), Code::FailedPrecondition);
        assert!(
            failed.status.message().contains("tests of test failed"),
            "{}",
            failed.status.message()
        );
        let response = failed.response.expect("Execute answered");
        assert_eq!(response["outcome"], "tests-failed");
        assert_eq!(response["test"]["attempts"], 3);
        assert_eq!(response["test"]["passed"], false);
    }
    assert_eq!(commit_count(&bare), commits, "nothing pushed");
    assert_eq!(version_of(&bare, "petstore", "prod"), "1.0");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let server = TestServer::start(test_config()).await;
    let mut client = TriggerClient::connect(server.url()).await.expect("connect");
    let base = "repo: file:///tmp/x\npath: a/{phase}.yaml\ntest: none\n";
    for (yaml, field) in [
        ("repo: [unclosed".to_string(), "YAML"),
        ("- a\n- b\n".into(), "map"),
        ("path: a/{phase}.yaml\ntest: none\n".into(), "repo"),
        (format!("{base}sourcePhase: ../x\n"), "sourcePhase"),
        (format!("{base}sourceCommit: xyz\n"), "sourceCommit"),
        (base.replace("test: none", "test: robot"), "test"),
        (
            format!("{base}path: ../../etc/{{phase}}\n").replace("path: a/{phase}.yaml\n", ""),
            "path",
        ),
    ] {
        let status = client
            .fetch_resource(FetchResourceRequest {
                resource: yaml.clone().into_bytes(),
            })
            .await
            .expect_err(&yaml);
        assert_eq!(status.code(), Code::InvalidArgument, "{yaml}");
        assert!(
            status.message().contains(field),
            "{yaml}: {}",
            status.message()
        );
    }
    let resource = client
        .fetch_resource(FetchResourceRequest {
            resource: base.as_bytes().to_vec(),
        })
        .await
        .expect("valid")
        .into_inner()
        .resource;
    for (payload, field) in [
        (&b"not json"[..], "payload"),
        (
            br#"{"source_commit":"xyz","source_phase":"test","target_phase":"prod"}"#,
            "source.commit",
        ),
        (
            br#"{"source_commit":"abcdef1","source_phase":"../x","target_phase":"prod"}"#,
            "source.phase",
        ),
    ] {
        let status = client
            .execute(ExecuteRequest {
                resource: resource.clone(),
                payload: payload.to_vec(),
            })
            .await
            .expect_err("bad payload");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }
    let status = client
        .execute(ExecuteRequest {
            resource: b"{not json".to_vec(),
            payload: vec![],
        })
        .await
        .expect_err("bad resource");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("resource"),
        "{}",
        status.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn two_hundred_identical_executes_share_one_run_and_one_commit() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let commits = commit_count(&bare);
    let counter = root.join("runs");
    let script = format!("echo run >> {}; sleep 1", counter.display());
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
    let server = TestServer::start(test_config()).await;
    let spec = petstore_spec(&bare, &[("test", "command"), ("testCommand", &command)]);
    let sensor = server.sensor().await;

    let firings = futures_join_all((0..200).map(|_| {
        let (sensor, spec, params) = (
            sensor.clone(),
            spec.clone(),
            event(&synced, "http://unused"),
        );
        tokio::spawn(async move {
            sensor
                .fire(&spec, &params, FROM_TEST)
                .await
                .expect("fires")
                .response
        })
    }))
    .await;

    assert_eq!(firings.len(), 200);
    assert!(
        firings.iter().all(|r| *r == firings[0]),
        "all answers identical"
    );
    assert_eq!(firings[0]["outcome"], "promoted");
    assert_eq!(
        std::fs::read_to_string(&counter)
            .expect("counter")
            .lines()
            .count(),
        1,
        "one test run"
    );
    assert_eq!(commit_count(&bare), commits + 1, "one promotion commit");
    server.stop().await;
}

async fn futures_join_all<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn each_error_kind_has_its_status_code() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let policy = PolicyConfig {
        transitions: vec!["test->prod".into()],
        ..test_policy()
    };
    let server = TestServer::start(Config {
        policy,
        ..test_config()
    })
    .await;
    let sensor = server.sensor().await;
    let none = petstore_spec(&bare, &[("test", "none")]);
    type Case<'a> = (
        BTreeMap<String, String>,
        Vec<Parameter>,
        &'a [u8],
        Code,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            none.clone(),
            event("abcdef1234567", ""),
            FROM_TEST,
            Code::NotFound,
            "source commit abcdef1234567",
        ),
        (
            petstore_spec(&bare, &[("test", "none"), ("key", "image.tag")]),
            event(&synced, PETSTORE_TEST),
            FROM_TEST,
            Code::NotFound,
            "image.tag",
        ),
        (
            petstore_spec(
                &bare,
                &[
                    ("test", "none"),
                    ("path", "apps/missing/{phase}/values.yaml"),
                ],
            ),
            event(&synced, PETSTORE_TEST),
            FROM_TEST,
            Code::NotFound,
            "apps/missing/test/values.yaml",
        ),
        (
            petstore_spec(
                &bare,
                &[("test", "none"), ("key", "image[name=app].version")],
            ),
            event(&synced, PETSTORE_TEST),
            FROM_TEST,
            Code::NotFound,
            "`image` is a mapping, not a list to select `[name=app]` in",
        ),
        (
            petstore_spec(&bare, &[("test", "none"), ("key", "image")]),
            event(&synced, PETSTORE_TEST),
            FROM_TEST,
            Code::InvalidArgument,
            "not a scalar",
        ),
        (
            petstore_spec(&bare, &[("test", "none"), ("phases", "dev,test,prod")]),
            event(&synced, PETSTORE_TEST),
            br#"{"source_phase":"dev"}"#,
            Code::PermissionDenied,
            "dev->test",
        ),
        (
            petstore_spec(&bare, &[("testImage", "registry.example.com/tests:1")]),
            event(&synced, "http://app"),
            FROM_TEST,
            Code::FailedPrecondition,
            "Kubernetes",
        ),
        (
            none.clone(),
            event(&synced, PETSTORE_TEST),
            br#"{"source_phase":"prod"}"#,
            Code::InvalidArgument,
            "last phase",
        ),
    ];
    for (spec, params, payload, code, needle) in cases {
        let failed = sensor
            .fire(&spec, &params, payload)
            .await
            .expect_err(needle);
        assert_eq!(failed.step, "Execute", "{needle}");
        assert_eq!(
            failed.status.code(),
            code,
            "{needle}: {}",
            failed.status.message()
        );
        assert!(
            failed.status.message().contains(needle),
            "{needle}: {}",
            failed.status.message()
        );
    }
    server.stop().await;

    // A cache directory that cannot be created stops the start, naming it…
    let not_a_dir = root.join("file");
    std::fs::write(&not_a_dir, "x").expect("write");
    let unusable = Config {
        cache_dir: not_a_dir.join("cache"),
        ..test_config()
    };
    let err = phasegate::app::pipeline(&unusable)
        .await
        .err()
        .expect("refused at start");
    assert!(err.to_string().contains("cacheDir"), "{err}");
    // …and one that goes away while serving is the server's own fault: INTERNAL.
    let cache = root.join("cache");
    let server = TestServer::start(Config {
        cache_dir: cache.clone(),
        ..test_config()
    })
    .await;
    // Once it serves (its cache made at start), the cache goes away.
    assert_eq!(server.probe("/readyz").await.0, 200);
    std::fs::remove_dir_all(&cache).expect("remove the cache");
    std::fs::write(&cache, "x").expect("a file in its place");
    let failed = server
        .sensor()
        .await
        .fire(&none, &event(&synced, PETSTORE_TEST), FROM_TEST)
        .await
        .expect_err("no cache");
    assert_eq!(
        failed.status.code(),
        Code::Internal,
        "{}",
        failed.status.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn outcomes_after_the_first_promotion() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let spec = petstore_spec(&bare, &[("test", "none")]);
    let server = TestServer::start(test_config()).await;
    let sensor = server.sensor().await;

    let dry = petstore_spec(&bare, &[("test", "none"), ("dryRun", "true")]);
    let fired = sensor
        .fire(&dry, &event(&synced, PETSTORE_TEST), FROM_TEST)
        .await
        .expect("dry run");
    assert_eq!(fired.response["outcome"], "dry-run");
    assert_eq!(
        version_of(&bare, "petstore", "prod"),
        "1.0",
        "a dry run pushes nothing"
    );

    let first = sensor
        .fire(&spec, &event(&synced, PETSTORE_TEST), FROM_TEST)
        .await
        .expect("promotes")
        .response;
    assert_eq!(first["outcome"], "promoted");
    let again = sensor
        .fire(&spec, &event(&synced, PETSTORE_TEST), FROM_TEST)
        .await
        .expect("duplicate")
        .response;
    assert_eq!(
        again, first,
        "a duplicate after success gets the recorded answer"
    );
    server.stop().await;

    // A restarted server has no record, but the repository says it is done.
    let server = TestServer::start(test_config()).await;
    let fired = server
        .sensor()
        .await
        .fire(&spec, &event(&synced, PETSTORE_TEST), FROM_TEST)
        .await
        .expect("again");
    assert_eq!(fired.response["outcome"], "already-promoted");
    assert!(
        fired.policy_message.contains("already at 2.0"),
        "{}",
        fired.policy_message
    );
    server.stop().await;
}

#[tokio::test]
async fn async_mode_answers_accepted_and_the_run_goes_on() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(test_config()).await;
    let spec = petstore_spec(
        &bare,
        &[
            ("test", "command"),
            ("testCommand", "sh -c 'sleep 0.3'"),
            ("mode", "async"),
        ],
    );

    let fired = server
        .sensor()
        .await
        .fire(&spec, &event(&synced, PETSTORE_TEST), FROM_TEST)
        .await
        .expect("accepted");

    assert_eq!(fired.response["outcome"], "accepted");
    assert_eq!(
        version_of(&bare, "petstore", "prod"),
        "1.0",
        "answered before the run ended"
    );
    // Stopping waits for the run in flight: a shutdown never leaves half a promotion.
    server.stop().await;
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
}

#[tokio::test]
async fn git_remote_failures_have_their_status_codes() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let mut git = support::git_server::GitServer::start(&root, "bot", "SENTINEL-right").await;
    let (user_file, password_file) = (root.join("username"), root.join("password"));
    std::fs::write(&user_file, "bot\n").expect("write");
    let config = |password: &str, push_attempts: u32| {
        std::fs::write(&password_file, password).expect("write");
        let mut c = test_config();
        c.git.username_file = Some(user_file.clone());
        c.git.password_file = Some(password_file.clone());
        c.git.push_attempts = push_attempts;
        // The local git server speaks plain http: the operator allows it explicitly.
        c.git.allow_insecure_http = true;
        c
    };
    let mut spec = petstore_spec(&bare, &[("test", "none")]);
    spec.insert("repo".into(), git.url("gitops"));
    let fire = |server: &TestServer| {
        let (spec, server_url) = (spec.clone(), server.url());
        let params = event(&synced, PETSTORE_TEST);
        async move {
            let sensor = phasegate::sensor::SensorClient::connect(server_url)
                .await
                .expect("connect");
            sensor.fire(&spec, &params, FROM_TEST).await
        }
    };

    let server = TestServer::start(config("SENTINEL-wrong", 10)).await;
    let denied = fire(&server).await.expect_err("wrong password");
    assert_eq!(
        denied.status.code(),
        Code::PermissionDenied,
        "{}",
        denied.status.message()
    );
    assert!(!denied.status.message().contains("SENTINEL"));
    server.stop().await;

    let server = TestServer::start(config("SENTINEL-right", 1)).await;
    let other = bare.clone();
    git.before_next_push(move || {
        phasegate::git::local::commit_files(&other, "main", &[("README.md", "x\n")], "race")
            .expect("commit");
    });
    let aborted = fire(&server).await.expect_err("push keeps failing");
    assert_eq!(
        aborted.status.code(),
        Code::Aborted,
        "{}",
        aborted.status.message()
    );
    git.stop().await;
    let down = fire(&server).await.expect_err("remote down");
    assert_eq!(
        down.status.code(),
        Code::Unavailable,
        "{}",
        down.status.message()
    );
    git.restart().await;
    let fired = fire(&server).await.expect("a retry tests and promotes");
    assert_eq!(fired.response["outcome"], "promoted");
    server.stop().await;
}

#[tokio::test]
async fn runs_beyond_max_runs_queue_instead_of_overlapping() {
    let (_dir, root) = tempdir();
    let apps = ["a1", "a2", "a3"];
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &apps);
    // Each test holds a lock directory while it runs: a second run at the same time fails.
    let lock = root.join("lock");
    let script = format!("mkdir {0} || exit 1; sleep 0.2; rmdir {0}", lock.display());
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
    let server = TestServer::start(Config {
        max_runs: 1,
        ..test_config()
    })
    .await;
    let sensor = server.sensor().await;

    let runs: Vec<_> = apps
        .iter()
        .map(|app| {
            let mut spec = petstore_spec(&bare, &[("test", "command"), ("testCommand", &command)]);
            spec.insert("path".into(), PATH.replace("{app}", app));
            let (sensor, params) = (sensor.clone(), event(&synced, PETSTORE_TEST));
            tokio::spawn(async move {
                sensor
                    .fire(&spec, &params, FROM_TEST)
                    .await
                    .map(|f| f.response)
            })
        })
        .collect();
    for run in runs {
        let response = run
            .await
            .expect("task")
            .expect("no overlap, so every test passes");
        assert_eq!(response["outcome"], "promoted");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_caller_that_goes_away_does_not_cancel_the_run() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let started = root.join("started");
    let script = format!("touch {}; sleep 0.5", started.display());
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
    let server = TestServer::start(test_config()).await;
    let spec = petstore_spec(&bare, &[("test", "command"), ("testCommand", &command)]);
    let sensor = server.sensor().await;

    let caller = tokio::spawn(async move {
        sensor
            .fire(&spec, &event(&synced, PETSTORE_TEST), FROM_TEST)
            .await
            .is_ok()
    });
    eventually(|| started.exists()).await;
    caller.abort();
    assert!(caller.await.is_err(), "the caller was cancelled mid-run");

    server.stop().await; // waits for runs in flight
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
}

#[tokio::test]
async fn warns_loudly_at_startup_in_permissive_mode() {
    capture_logs();
    let server = TestServer::start(Config {
        policy: PolicyConfig {
            permissive: true,
            ..PolicyConfig::default()
        },
        ..Config::default()
    })
    .await;
    let (_, scrape) = server.probe("/metrics").await;
    assert!(
        scrape.contains("phasegate_policy_permissive 1\n"),
        "{scrape}"
    );
    server.stop().await;
    assert!(logs().contains("PERMISSIVE POLICY"), "{}", logs());
    // A closed server says so too: an alert can watch the gauge.
    let closed = TestServer::start(test_config()).await;
    let (_, scrape) = closed.probe("/metrics").await;
    assert!(
        scrape.contains("phasegate_policy_permissive 0\n"),
        "{scrape}"
    );
    closed.stop().await;
}
