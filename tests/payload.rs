//! Attacks through what an event reaches: the Execute payload, the Sensor's parameters on the
//! resource, and the test target, over real gRPC. Each refused request pushes nothing.

use std::path::Path;

use crate::support::*;
use phasegate::{PolicyConfig, config::Config, sensor::Parameter};
use serde_json::{Value, json};
use tonic::Code;

fn param(dest: &str, value: Value) -> Parameter {
    Parameter {
        dest: dest.into(),
        value,
    }
}

/// Fires the http-runner petstore spec with `payload`; the status of a refused Execute.
async fn refused(
    server: &TestServer,
    bare: &Path,
    params: &[Parameter],
    payload: &[u8],
) -> tonic::Status {
    let spec = petstore(&file_url(bare), &[("test", "http"), ("testPath", "/pet")]);
    let failed = server
        .sensor()
        .await
        .fire(&spec, params, payload)
        .await
        .expect_err("refused");
    assert_eq!(failed.step, "Execute", "{:?}", failed.response);
    failed.status
}

#[tokio::test]
async fn a_payload_sets_only_event_data_and_names_any_other_field() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let commits = commit_count(&bare);
    let server = TestServer::start(test_config()).await;
    let app = app(200, "Dog").await;
    let base = json!({"source_commit": synced, "source_phase": "test", "test_target": app});
    for (extra, named) in [
        (json!({"app": "petstore-test"}), "`app`"),
        (json!({"test": {"image": "evil:latest"}}), "`test.image`"),
        (json!({"testCommand": "sh -c id"}), "`testCommand`"),
        (json!({"test": {"runner": "none"}}), "`test.runner`"),
        (json!({"repo": "https://evil.example/x.git"}), "`repo`"),
        (json!({"path": "apps/other/{phase}.yaml"}), "`path`"),
        (json!({"dryRun": "true"}), "`dryRun`"),
        (json!({"commitMessage": "x"}), "`commitMessage`"),
        (json!({"source": {"branch": "evil"}}), "`source.branch`"),
        (
            json!({"targetPhase": "prod", "target_phase": "dev"}),
            "target.phase",
        ),
        (json!({"sourceCommit": "abcdef1"}), "source.commit"),
        (
            json!({"test_target": "http://user:pw@app.test/"}),
            "credentials",
        ),
        (json!({"test_target": "file:///etc/passwd"}), "test.target"),
        (
            json!({"test_target": "http://app.test/\u{2028}x"}),
            "test.target",
        ),
        (json!({"test_target": "http://app.test/ -x"}), "test.target"),
    ] {
        let mut payload = base.clone();
        payload
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        let status = refused(&server, &bare, &[], payload.to_string().as_bytes()).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{extra}");
        assert!(
            status.message().contains(named),
            "{extra}: {}",
            status.message()
        );
    }
    assert_eq!(commit_count(&bare), commits, "a refused event pushed");

    // The spec-style spelling is event data like the flat and nested ones.
    let spec = petstore(&file_url(&bare), &[("test", "http"), ("testPath", "/pet")]);
    let payload = json!({"sourceCommit": synced, "sourcePhase": "test", "targetPhase": "prod",
                         "testTarget": app, "source": {"phase": "test"}});
    let fired = server
        .sensor()
        .await
        .fire(&spec, &[], payload.to_string().as_bytes())
        .await
        .expect("spec-style payload promotes");
    assert_eq!(fired.response["outcome"], "promoted");
    server.stop().await;
}

#[tokio::test]
async fn parameters_cannot_add_fields_or_escape_validation_and_policy() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let commits = commit_count(&bare);
    let config = Config {
        policy: PolicyConfig {
            commands: vec!["/bin/true".into()],
            ..test_policy()
        },
        ..test_config()
    };
    let server = TestServer::start(config).await;
    let event = |extra: Vec<Parameter>| {
        let mut p = sync_event(&synced);
        p.push(param("test.target", json!("http://app.test/")));
        p.extend(extra);
        p
    };
    for (params, code, named) in [
        (
            vec![param("test.privileged", json!(true))],
            Code::InvalidArgument,
            "privileged",
        ),
        (
            vec![param("hostNetwork", json!(true))],
            Code::InvalidArgument,
            "hostNetwork",
        ),
        (
            vec![
                param("test.runner", json!("command")),
                param("test.command", json!(["sh", "-c", "curl {target}"])),
            ],
            Code::InvalidArgument,
            "{target}",
        ),
        (
            vec![
                param("test.runner", json!("command")),
                param("test.command", json!(["/bin/sh", "-c", "id"])),
            ],
            Code::PermissionDenied,
            "/bin/sh",
        ),
        (
            vec![param("path", json!("../{phase}.yaml"))],
            Code::InvalidArgument,
            "path",
        ),
        (
            vec![param("test.timeout", json!("500000000000y"))],
            Code::InvalidArgument,
            "test.timeout",
        ),
    ] {
        let status = refused(&server, &bare, &event(params.clone()), FROM_TEST).await;
        assert_eq!(status.code(), code, "{:?}", params[0].dest);
        assert!(status.message().contains(named), "{}", status.message());
    }
    assert_eq!(commit_count(&bare), commits);
    server.stop().await;
}

#[tokio::test]
async fn a_hostile_target_reaches_the_test_command_as_one_argument_never_as_code() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let seen = root.join("seen");
    let pwned = root.join("pwned");
    let server = TestServer::start(test_config()).await;
    let script = format!("printf %s \"$1\" > {}", seen.display());
    let spec = petstore(
        &file_url(&bare),
        &[
            ("test", "command"),
            (
                "testCommand",
                &json!(["sh", "-c", script, "sh"]).to_string(),
            ),
            ("testArgs", r#"["{target}"]"#),
        ],
    );
    // Shell characters in the target are refused before anything runs.
    let hostile = format!("http://app.test/$(touch$IFS{});x", pwned.display());
    let mut params = sync_event(&synced);
    params.push(param("test.target", json!(hostile)));
    let failed = server
        .sensor()
        .await
        .fire(&spec, &params, FROM_TEST)
        .await
        .expect_err("refused");
    assert_eq!(failed.status.code(), tonic::Code::InvalidArgument);
    assert!(
        failed.status.message().contains("'$'"),
        "{}",
        failed.status.message()
    );
    assert!(!seen.exists(), "nothing ran");
    // What a URL may hold arrives as one argument, byte for byte.
    let target = "http://app.test/a?b=1&c=2,3#frag!";
    let mut params = sync_event(&synced);
    params.push(param("test.target", json!(target)));

    let fired = server
        .sensor()
        .await
        .fire(&spec, &params, FROM_TEST)
        .await
        .expect("fires");

    assert_eq!(fired.response["outcome"], "promoted", "{}", fired.response);
    assert_eq!(std::fs::read_to_string(&seen).expect("ran"), target);
    assert!(!pwned.exists(), "the target ran as code");
    server.stop().await;
}

#[tokio::test]
async fn a_runner_that_tests_a_deployment_refuses_a_missing_target_at_once() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let ran = root.join("ran");
    let server = TestServer::start(test_config()).await;
    let touch = json!(["touch", ran.display().to_string()]).to_string();
    for runner in [
        &[("test", "http")][..],
        &[("test", "command"), ("testCommand", &touch)],
        &[("testImage", "registry.example.com/tests:1")],
    ] {
        let spec = petstore(&file_url(&bare), runner);
        let failed = server
            .sensor()
            .await
            .fire(&spec, &sync_event(&synced)[..1], FROM_TEST)
            .await
            .expect_err("no target");
        assert_eq!(failed.step, "Execute");
        assert_eq!(failed.status.code(), Code::InvalidArgument, "{runner:?}");
        let message = failed.status.message();
        assert!(
            message.contains("test.target") && message.contains("required"),
            "{message}"
        );
    }
    assert!(!ran.exists(), "a test ran without a target");
    let (_, metrics) = server.probe("/metrics").await;
    assert!(metrics.contains("phasegate_runs_in_flight 0"), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn the_http_runner_reads_at_most_one_mebibyte_of_a_response() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    // 4 MiB of padding, then what the test looks for: beyond the cap, so never seen.
    let body: &'static str = Box::leak(format!("{}Dog", "x".repeat(4 << 20)).into_boxed_str());
    let app = app(200, body).await;
    let server = TestServer::start(test_config()).await;
    let spec = petstore(
        &file_url(&bare),
        &[
            ("test", "http"),
            ("testPath", "/pet"),
            ("testExpectBody", "Dog"),
            ("testAttempts", "1"),
        ],
    );
    let mut params = sync_event(&synced);
    params.push(param("test.target", json!(app)));

    let failed = server
        .sensor()
        .await
        .fire(&spec, &params, FROM_TEST)
        .await
        .expect_err("the tail is not read");

    let response = failed.response.expect("tests-failed answer");
    assert_eq!(response["outcome"], "tests-failed");
    let log = response["test"]["log"].as_str().expect("log");
    assert!(log.contains("(only the first 1048576 read)"), "{log}");
    server.stop().await;
}
