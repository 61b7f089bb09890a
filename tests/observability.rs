//! What an operator sees: Prometheus metrics and probes, the run history over gRPC, `runs
//! watch` following a run live, and history that survives a restart (even a damaged file).

use crate::support::*;
use phasegate::{
    config::Config,
    proto::runs::{GetRunRequest, ListRunsRequest, runs_client::RunsClient},
};

#[tokio::test]
async fn metrics_count_promotions_failed_tests_and_duplicates() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(test_config()).await;
    assert_eq!(server.probe("/healthz").await.0, 200);
    assert_eq!(server.probe("/readyz").await.0, 200);
    let sensor = server.sensor().await;

    let failing = petstore(
        &file_url(&bare),
        &[("test", "command"), ("testCommand", "false")],
    );
    sensor
        .fire(&failing, &sync_event(&synced), FROM_TEST)
        .await
        .expect_err("tests fail");
    let passing = petstore(&file_url(&bare), &[("test", "none")]);
    sensor
        .fire(&passing, &sync_event(&synced), FROM_TEST)
        .await
        .expect("promotes");
    sensor
        .fire(&passing, &sync_event(&synced), FROM_TEST)
        .await
        .expect("duplicate");

    let (status, scrape) = server.probe("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &scrape,
            r#"phasegate_runs_total{outcome="promoted",runner="none"}"#
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        metric(
            &scrape,
            r#"phasegate_runs_total{outcome="tests-failed",runner="command"}"#
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        metric(
            &scrape,
            r#"phasegate_tests_total{runner="command",result="failed"}"#
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        metric(
            &scrape,
            r#"phasegate_duplicate_joins_total{kind="recorded"}"#
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        metric(&scrape, "phasegate_push_attempts_total"),
        1.0,
        "{scrape}"
    );
    assert_eq!(metric(&scrape, "phasegate_runs_in_flight"), 0.0, "{scrape}");
    assert_eq!(
        metric(
            &scrape,
            r#"phasegate_stage_duration_seconds_count{stage="total"}"#
        ),
        2.0,
        "{scrape}"
    );
    assert!(!scrape.contains(&synced), "no commit ids as labels");
    server.stop().await;
}

/// A gated test printing `before`, then `after` once the watcher follows it: the finished run
/// and what `runs watch` showed.
async fn watched(before: &str, after: &str) -> (phasegate::proto::runs::Run, String) {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let gate = root.join("gate");
    let server = TestServer::start(test_config()).await;
    let id = gated_run(&server, &bare, &synced, &gate, before, after).await;
    let (screen, watcher) = watch_in_background(&server, &id);
    // The test ends only once the watcher is following the run (it shows the current stage).
    eventually(|| screen.text().contains('▶')).await;
    std::fs::write(&gate, "").expect("open the gate");
    let run = watcher.await.expect("watcher");
    server.stop().await;
    (run, screen.text())
}

#[tokio::test]
async fn runs_watch_streams_the_stages_in_order_and_ends_with_the_outcome() {
    let (run, shown) = watched("campaign started", "campaign passed").await;

    assert_eq!(run.outcome, "promoted");
    let order: Vec<usize> = ["▶ testing", "campaign passed", "▶ promoting", "■ promoted"]
        .iter()
        .map(|needle| {
            shown
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} missing in\n{shown}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order:\n{shown}"
    );
}

#[tokio::test]
async fn a_test_cannot_drive_the_operators_terminal_through_runs_watch() {
    // A window title, a cleared screen, then a fake verdict.
    let (_, shown) = watched(
        "'\u{1b}]0;pwned\u{7}started'",
        "'\u{1b}[2J\u{1b}[Hall tests passed\u{9b}31m'",
    )
    .await;
    assert!(!shown.contains(['\u{1b}', '\u{7}', '\u{9b}']), "{shown:?}");
    assert!(shown.contains("\\x1b]0;pwned\\x07started"), "{shown}");
    assert!(
        shown.contains("\\x1b[2J\\x1b[Hall tests passed\\u{9b}31m"),
        "{shown}"
    );
}

#[tokio::test]
async fn runs_watch_attaching_mid_run_first_shows_the_output_so_far() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let gate = root.join("gate");
    let server = TestServer::start(test_config()).await;
    let id = gated_run(&server, &bare, &synced, &gate, "early line", "late line").await;
    // A first watcher sees the line live: from then on it is output "so far".
    let (first, first_watcher) = watch_in_background(&server, &id);
    eventually(|| first.text().contains("early line")).await;

    let (late, late_watcher) = watch_in_background(&server, &id);
    eventually(|| late.text().contains("early line")).await;
    std::fs::write(&gate, "").expect("open the gate");
    late_watcher.await.expect("watcher");
    first_watcher.await.expect("watcher");
    let shown = late.text();

    assert_eq!(shown.matches("early line").count(), 1, "once:\n{shown}");
    let early = shown.find("early line").expect("early");
    assert!(shown[early..].contains("late line"), "{shown}");
    assert!(shown.contains("■ promoted"), "{shown}");
    server.stop().await;
}

#[tokio::test]
async fn history_and_duplicate_answers_survive_a_restart_and_a_damaged_file() {
    capture_logs();
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let cache = root.join("cache");
    let config = || Config {
        cache_dir: cache.clone(),
        ..test_config()
    };
    let spec = petstore(&file_url(&bare), &[("test", "none")]);

    let server = TestServer::start(config()).await;
    let first = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("promotes")
        .response;
    server.stop().await;
    // A crash mid-write leaves a truncated line; a disk error leaves garbage.
    let file = cache.join("history.jsonl");
    let mut text = std::fs::read_to_string(&file).expect("history persisted");
    text.push_str("{\"id\":\"truncated\",\"key\n\u{0}\u{1}garbage\n");
    std::fs::write(&file, text).expect("damage");

    let server = TestServer::start(config()).await;
    let again = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("duplicate")
        .response;
    assert_eq!(
        again, first,
        "the duplicate gets the recorded answer, not a new run"
    );
    let mut runs = RunsClient::connect(server.url()).await.expect("connect");
    let listed = runs
        .list(ListRunsRequest {
            phase: "prod".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .runs;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, first["run"].as_str().expect("id"));
    assert_eq!(listed[0].outcome, "promoted");
    assert_eq!(listed[0].version, "2.0");
    let none = runs
        .list(ListRunsRequest {
            outcome: "tests-failed".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .runs;
    assert!(none.is_empty());
    let missing = runs
        .get(GetRunRequest { id: "nope".into() })
        .await
        .expect_err("unknown run");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    server.stop().await;
    assert!(
        logs().contains("ignored corrupt lines of the run history"),
        "{}",
        logs()
    );
    // The damaged file was rewritten without its bad lines; a clean one is left as it is.
    use std::os::unix::fs::MetadataExt;
    let clean = std::fs::read_to_string(&file).expect("history");
    assert!(
        !clean.contains("garbage") && clean.ends_with('\n'),
        "{clean}"
    );
    let inode = std::fs::metadata(&file).expect("history").ino();
    TestServer::start(config()).await.stop().await;
    assert_eq!(std::fs::metadata(&file).expect("history").ino(), inode);
    assert_eq!(std::fs::read_to_string(&file).expect("history"), clean);
}

#[tokio::test]
async fn runs_lists_as_a_table_from_the_command_line() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(test_config()).await;
    server
        .sensor()
        .await
        .fire(
            &petstore(&file_url(&bare), &[("test", "none")]),
            &sync_event(&synced),
            FROM_TEST,
        )
        .await
        .expect("promotes");
    let bin = env!("CARGO_BIN_EXE_phasegate");
    let url = server.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["runs", "--server", &url])
            .output()
    })
    .await
    .expect("join")
    .expect("run phasegate runs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.lines().next().expect("header").starts_with("RUN"),
        "{table}"
    );
    let row = table.lines().nth(1).expect("one run");
    for cell in ["promoted", "test->prod", &synced[..10], "1.0->2.0"] {
        assert!(row.contains(cell), "{cell} missing in {row}");
    }
    server.stop().await;
}

/// Starts an async command run that prints `before`, waits until `gate` exists, then prints
/// `after`; answers its run id.
async fn gated_run(
    server: &TestServer,
    bare: &std::path::Path,
    synced: &str,
    gate: &std::path::Path,
    before: &str,
    after: &str,
) -> String {
    let script = format!(
        "echo {before}; while [ ! -e {} ]; do sleep 0.05; done; echo {after}",
        gate.display()
    );
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
    let spec = petstore(
        &file_url(bare),
        &[
            ("test", "command"),
            ("testCommand", &command),
            ("mode", "async"),
        ],
    );
    let accepted = server
        .sensor()
        .await
        .fire(&spec, &sync_event(synced), FROM_TEST)
        .await
        .expect("accepted");
    let id = accepted.response["run"]
        .as_str()
        .expect("run id")
        .to_string();
    assert!(!id.is_empty());
    id
}
