//! Bounded inputs over real gRPC: a spec key or a Sensor parameter beyond its bound is
//! `INVALID_ARGUMENT` naming the key and the limit before any run starts, and a run that fails
//! after it started still ends its history record and the in-flight gauge.

use crate::support::*;
use phasegate::{
    proto::runs::{ListRunsRequest, runs_client::RunsClient},
    sensor::Parameter,
};
use serde_json::json;
use tonic::Code;

/// Every run the server's history lists.
async fn runs(server: &TestServer) -> Vec<phasegate::proto::runs::Run> {
    let mut client = RunsClient::connect(server.url()).await.expect("connect");
    let request = ListRunsRequest::default();
    client.list(request).await.expect("list").into_inner().runs
}

#[tokio::test]
async fn a_spec_or_parameter_beyond_a_bound_is_refused_before_any_run_starts() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let commits = commit_count(&bare);
    let server = TestServer::start(test_config()).await;
    let keys: Vec<String> = (0..33).map(|i| format!("image.k{i}")).collect();
    let spec = petstore(
        &file_url(&bare),
        &[("test", "none"), ("key", &keys.join(","))],
    );
    let failed = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect_err("33 keys");
    assert_eq!(failed.step, "FetchResource");
    assert_eq!(failed.status.code(), Code::InvalidArgument);
    let message = failed.status.message();
    assert!(
        message.contains("`key`") && message.contains("at most 32"),
        "{message}"
    );

    // A Sensor parameter may rewrite any resource field: Execute checks the bounds again.
    let spec = petstore(
        &file_url(&bare),
        &[("test", "command"), ("testCommand", "true")],
    );
    let env: serde_json::Map<_, _> = (0..129).map(|i| (format!("V{i}"), json!("x"))).collect();
    let mut params = sync_event(&synced);
    params.push(Parameter {
        dest: "test.target".into(),
        value: json!("http://app.test"),
    });
    params.push(Parameter {
        dest: "test.env".into(),
        value: env.into(),
    });
    let failed = server
        .sensor()
        .await
        .fire(&spec, &params, FROM_TEST)
        .await
        .expect_err("129 env entries");
    assert_eq!(failed.step, "Execute");
    assert_eq!(failed.status.code(), Code::InvalidArgument);
    let message = failed.status.message();
    assert!(
        message.contains("`test.env`") && message.contains("at most 128"),
        "{message}"
    );

    assert!(
        runs(&server).await.is_empty(),
        "a refused request is no run"
    );
    let (_, scrape) = server.probe("/metrics").await;
    assert_eq!(metric(&scrape, "phasegate_runs_in_flight"), 0.0, "{scrape}");
    assert_eq!(commit_count(&bare), commits, "nothing pushed");
    server.stop().await;
}

#[tokio::test]
async fn a_run_that_fails_after_it_started_ends_its_record_and_the_in_flight_gauge() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(test_config()).await;
    // Valid as a spec; the key is missing from the values files, which only the run finds.
    let spec = petstore(
        &file_url(&bare),
        &[("test", "none"), ("key", "image.missing")],
    );
    let failed = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect_err("key missing");
    assert_eq!(failed.step, "Execute");
    assert_eq!(failed.status.code(), Code::NotFound);

    let listed = runs(&server).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].stage, "done");
    assert_eq!(listed[0].outcome, "error");
    assert!(listed[0].error.contains("image.missing"), "{:?}", listed[0]);
    let (_, scrape) = server.probe("/metrics").await;
    assert_eq!(metric(&scrape, "phasegate_runs_in_flight"), 0.0, "{scrape}");
    let ended = r#"phasegate_runs_total{outcome="error-not-found",runner="none"}"#;
    assert_eq!(metric(&scrape, ended), 1.0, "{scrape}");
    server.stop().await;
}

/// Every string key of the spec, the resource path a Sensor parameter sets it at, and its
/// documented longest value in bytes (docs/events.md#bounds).
const TEXT_BOUNDS: &[(&str, &str, usize)] = &[
    ("repo", "repo", 2048),
    ("branch", "branch", 255),
    ("path", "path", 1024),
    ("credentialsSecret", "credentialsSecret", 253),
    ("phases", "phases", 63),
    ("sourcePhase", "source.phase", 63),
    ("sourceCommit", "source.commit", 64),
    ("targetPhase", "target.phase", 63),
    ("testProfile", "test.profile", 253),
    ("test", "test.runner", 16),
    ("testTarget", "test.target", 2048),
    ("testImage", "test.image", 1024),
    ("testWorkdir", "test.workdir", 4096),
    ("testNamespace", "test.namespace", 63),
    ("testServiceAccount", "test.serviceAccount", 253),
    ("testTimeout", "test.timeout", 64),
    ("testPath", "test.path", 2048),
    ("testExpectBody", "test.expectBody", 1024),
    ("testInterval", "test.interval", 64),
    ("argocdApp", "argocd.app", 317),
    ("argocdTimeout", "argocd.timeout", 64),
    ("commitMessage", "commitMessage", 4096),
    ("mode", "mode", 16),
    ("promoteVia", "promoteVia", 32),
    ("forge", "forge.kind", 32),
    ("forgeApiUrl", "forge.apiUrl", 2048),
    ("prLabels", "pullRequest.labels", 256),
    ("mergeMethod", "pullRequest.mergeMethod", 16),
    ("waitForMerge", "pullRequest.waitForMerge", 64),
];

#[tokio::test]
async fn every_string_field_beyond_its_length_is_refused_naming_it_without_echoing_it() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(test_config()).await;
    let sensor = server.sensor().await;
    for &(key, path, most) in TEXT_BOUNDS {
        let long = "Z".repeat(most + 1);
        let expected = format!("{} bytes long; at most {most} are allowed", most + 1);

        // In the spec: FetchResource refuses it, naming the spec key.
        let spec = petstore(&file_url(&bare), &[("test", "none"), (key, &long)]);
        let failed = sensor
            .fire(&spec, &sync_event(&synced), FROM_TEST)
            .await
            .expect_err(key);
        assert_eq!(failed.step, "FetchResource", "{key}");
        assert_eq!(failed.status.code(), Code::InvalidArgument, "{key}");
        let message = failed.status.message();
        assert!(
            message.contains(&format!("`{key}`")) && message.contains(&expected),
            "{key}: {message}"
        );
        assert!(!message.contains("ZZZZ"), "{key}: the value is echoed");

        // From a Sensor parameter: Execute refuses it, naming the resource path.
        let spec = petstore(&file_url(&bare), &[("test", "none")]);
        let mut params = sync_event(&synced);
        let value = if matches!(path, "phases" | "pullRequest.labels") {
            json!([long])
        } else {
            json!(long)
        };
        params.push(Parameter {
            dest: path.into(),
            value,
        });
        // The payload's `source_phase` would win over the parameter.
        let payload: &[u8] = if path == "source.phase" {
            b"{}"
        } else {
            FROM_TEST
        };
        let failed = sensor.fire(&spec, &params, payload).await.expect_err(path);
        assert_eq!(failed.step, "Execute", "{path}");
        assert_eq!(failed.status.code(), Code::InvalidArgument, "{path}");
        let message = failed.status.message();
        assert!(
            message.contains(&format!("`{path}`")) && message.contains(&expected),
            "{path}: {message}"
        );
        assert!(!message.contains("ZZZZ"), "{path}: the value is echoed");
    }
    assert!(
        runs(&server).await.is_empty(),
        "a refused request is no run"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_body_pattern_past_the_bound_is_refused_naming_the_key_and_the_limit() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(test_config()).await;
    let spec = petstore(
        &file_url(&bare),
        &[
            ("test", "http"),
            ("testPath", "/pet"),
            ("testExpectBody", "1[01]{2000}[^01]"),
        ],
    );
    let failed = server
        .sensor()
        .await
        .fire(&spec, &event_at(&synced, "http://app.test"), FROM_TEST)
        .await
        .expect_err("refused");
    assert_eq!(failed.status.code(), Code::InvalidArgument);
    let message = failed.status.message();
    assert!(
        message.contains("`testExpectBody`") && message.contains("at most 32"),
        "{message}"
    );
}
