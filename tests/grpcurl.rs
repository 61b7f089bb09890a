//! grpcurl (the real binary, installed by the test command) against the running server, with no
//! proto files: reflection, health, and the three trigger calls.

use std::process::Command;

use crate::support::*;
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::Value;

/// Runs grpcurl; a machine without it fails loudly instead of skipping.
fn grpcurl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl must be on PATH: run the README's test command, which installs it");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `phasegate.v1.Runs/List` through grpcurl and reflection.
fn call_runs(addr: &str, body: &str) -> Value {
    let (ok, out, err) = tokio::task::block_in_place(|| {
        grpcurl(&["-plaintext", "-d", body, addr, "phasegate.v1.Runs/List"])
    });
    assert!(ok, "{err}");
    serde_json::from_str(&out).expect("grpcurl prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_describes_checks_health_and_calls_the_trigger() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(test_config()).await;
    let addr = server.addr.to_string();

    let (ok, list, err) = tokio::task::block_in_place(|| grpcurl(&["-plaintext", &addr, "list"]));
    assert!(ok, "{err}");
    for service in [
        "triggers.Trigger",
        "grpc.health.v1.Health",
        "phasegate.v1.Runs",
    ] {
        assert!(
            list.lines().any(|l| l == service),
            "{service} missing from\n{list}"
        );
    }
    let (ok, described, err) = tokio::task::block_in_place(|| {
        grpcurl(&["-plaintext", &addr, "describe", "triggers.Trigger"])
    });
    assert!(ok, "{err}");
    for rpc in ["rpc FetchResource", "rpc Execute", "rpc ApplyPolicy"] {
        assert!(described.contains(rpc), "{rpc} missing from\n{described}");
    }
    let (ok, health, err) = tokio::task::block_in_place(|| {
        grpcurl(&[
            "-plaintext",
            "-d",
            r#"{"service":"triggers.Trigger"}"#,
            &addr,
            "grpc.health.v1.Health/Check",
        ])
    });
    assert!(ok, "{err}");
    assert!(health.contains("SERVING"), "{health}");

    let spec = format!(
        "repo: file://{}\npath: {}\nphases: test,prod\ntest: none\nsourceCommit: \"{synced}\"\n",
        bare.display(),
        PATH.replace("{app}", "petstore")
    );
    let call = |method: &str, body: Value| -> Value {
        let (ok, out, err) = tokio::task::block_in_place(|| {
            grpcurl(&[
                "-plaintext",
                "-d",
                &body.to_string(),
                &addr,
                &format!("triggers.Trigger/{method}"),
            ])
        });
        assert!(ok, "{method}: {err}");
        serde_json::from_str(&out).expect("grpcurl prints JSON")
    };
    let fetched = call(
        "FetchResource",
        serde_json::json!({"resource": STANDARD.encode(&spec)}),
    );
    let resource = STANDARD
        .decode(fetched["resource"].as_str().expect("bytes"))
        .expect("base64");
    let resource: Value = serde_json::from_slice(&resource).expect("resource JSON");
    assert_eq!(resource["source"]["commit"], synced);

    let payload = STANDARD.encode(r#"{"source_phase":"test"}"#);
    let executed = call(
        "Execute",
        serde_json::json!({"resource": STANDARD.encode(resource.to_string()), "payload": payload}),
    );
    let answer = STANDARD
        .decode(executed["response"].as_str().expect("bytes"))
        .expect("base64");
    let answer_json: Value = serde_json::from_slice(&answer).expect("answer JSON");
    assert_eq!(answer_json["outcome"], "promoted");

    let policy = call(
        "ApplyPolicy",
        serde_json::json!({"request": STANDARD.encode(&answer)}),
    );
    assert_eq!(policy["success"], true);
    assert!(
        policy["message"]
            .as_str()
            .expect("message")
            .contains("promoted 2.0"),
        "{policy}"
    );

    let failed =
        serde_json::json!({"run": "r1", "outcome": "tests-failed", "source": {"phase": "test"}});
    let (ok, _, err) = tokio::task::block_in_place(|| {
        grpcurl(&[
            "-plaintext",
            "-d",
            &serde_json::json!({"request": STANDARD.encode(failed.to_string())}).to_string(),
            &addr,
            "triggers.Trigger/ApplyPolicy",
        ])
    });
    assert!(!ok, "tests-failed must be a non-OK status");
    assert!(err.contains("FailedPrecondition"), "{err}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");

    let runs = call_runs(&addr, r#"{"phase":"prod"}"#);
    assert_eq!(runs["runs"][0]["outcome"], "promoted", "{runs}");
    assert_eq!(runs["runs"][0]["sourceCommit"], synced.as_str());
    server.stop().await;
}
