//! Every resource bounded (issue 22), over the real server: the queue of waiting runs and the
//! memory a flood of refused runs costs, the history file read at start.

use crate::support::memory::status_kib as memory_kib;
use crate::support::*;
use phasegate::{
    config::Config,
    proto::runs::{ListRunsRequest, runs_client::RunsClient},
};
use tonic::Code;

/// Every run the server's history lists.
async fn runs(server: &TestServer) -> Vec<phasegate::proto::runs::Run> {
    let mut client = RunsClient::connect(server.url()).await.expect("connect");
    let request = ListRunsRequest::default();
    client.list(request).await.expect("list").into_inner().runs
}

/// This process's resident memory in KiB (the test server runs in it).
fn rss_kib() -> u64 {
    memory_kib("VmRSS")
}

/// Refused runs keep no memory: 2000 distinct runs queued without the bound grew this process
/// by 156 MiB (80 KiB a queued run: its task, ledger entry and history record); refused, by
/// about 1 MiB. The margin is the runtime's own growth (the tests of this binary run alone).
const FLOOD: usize = 2000;
const FLOOD_MARGIN_KIB: u64 = 64 * 1024;

#[tokio::test]
async fn runs_beyond_the_queue_are_resource_exhausted_until_a_slot_frees() {
    let _alone = crate::support::memory::alone().await;
    let (_dir, root) = tempdir();
    let apps = ["a1", "a2", "a3", "a4", "a5"];
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &apps);
    // Each test waits until the test lets it end: the one slot stays taken until then.
    let release = root.join("release");
    let script = format!("while [ ! -e {0} ]; do sleep 0.05; done", release.display());
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
    let server = TestServer::start(Config {
        max_runs: 1,
        max_queued_runs: 2,
        ..test_config()
    })
    .await;
    let sensor = server.sensor().await;
    let spec_of = |app: &str| {
        let mut spec = petstore(
            &file_url(&bare),
            &[
                ("test", "command"),
                ("testCommand", &command),
                ("mode", "async"),
            ],
        );
        spec.insert("path".into(), PATH.replace("{app}", app));
        spec
    };
    let fire = |app: &str, sha: &str| {
        let (sensor, spec, params) = (sensor.clone(), spec_of(app), sync_event(sha));
        async move { sensor.fire(&spec, &params, FROM_TEST).await }
    };

    // One runs, two wait: the queue is full.
    for app in &apps[..3] {
        let fired = fire(app, &synced).await.expect("accepted");
        assert_eq!(fired.response["outcome"], "accepted");
    }
    let refused = fire(apps[3], &synced).await.expect_err("the queue is full");
    assert_eq!(refused.step, "Execute");
    assert_eq!(refused.status.code(), Code::ResourceExhausted);
    assert!(
        refused.status.message().contains("maxQueuedRuns"),
        "{}",
        refused.status.message()
    );
    // A duplicate of a queued run joins it: it is no new run.
    let joined = fire(apps[1], &synced).await.expect("a duplicate joins");
    assert_eq!(joined.response["outcome"], "accepted");
    assert_eq!(
        runs(&server).await.len(),
        3,
        "a refused run is not recorded"
    );

    // A flood of distinct runs is refused without keeping memory.
    let before = rss_kib();
    for i in 0..FLOOD {
        let err = fire(apps[4], &format!("{i:040x}")).await.expect_err("full");
        assert_eq!(err.status.code(), Code::ResourceExhausted);
    }
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < FLOOD_MARGIN_KIB,
        "{FLOOD} refused runs grew the process by {grown} KiB"
    );
    assert_eq!(runs(&server).await.len(), 3);
    let (_, scrape) = server.probe("/metrics").await;
    assert_eq!(metric(&scrape, "phasegate_runs_in_flight"), 3.0, "{scrape}");
    let refused = (FLOOD + 1) as f64;
    assert_eq!(
        metric(&scrape, "phasegate_runs_refused_total"),
        refused,
        "{scrape}"
    );

    // Once the runs end, a new one is accepted.
    std::fs::write(&release, "").expect("release");
    let mut ended = false;
    for _ in 0..1000 {
        if runs(&server).await.iter().all(|r| r.stage == "done") {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ended, "the released runs end within 20 s");
    let fired = fire(apps[3], &synced).await.expect("a slot is free again");
    assert_eq!(fired.response["outcome"], "accepted");
    server.stop().await;
}

/// A history file of a bad disk or another program: 64 MiB on one line, then 32 MiB of short
/// garbage lines, then one real record.
fn damaged_history(file: &std::path::Path) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).expect("create"));
    let chunk = vec![b'{'; 1 << 20];
    for _ in 0..64 {
        out.write_all(&chunk).expect("write");
    }
    out.write_all(b"\n").expect("write");
    let mut garbage = vec![b'g'; 1023];
    garbage.push(b'\n');
    for _ in 0..32 * 1024 {
        out.write_all(&garbage).expect("write");
    }
    let record = r#"{"id":"newest","key":"k","repo":"file:///r","branch":"main","path":"a/{phase}.yaml","sourcePhase":"test","targetPhase":"prod","sourceCommit":"abcdef1","stage":"done","report":null,"error":"boom","startedUnixMs":0}"#;
    writeln!(out, "{record}").expect("write");
    out.flush().expect("flush");
}

/// What reading the 96 MiB damaged history may cost at its peak: its last 32 MiB are read a
/// line (at most 256 KiB) at a time.
const HISTORY_MARGIN_KIB: u64 = 32 * 1024;

#[tokio::test]
async fn a_huge_damaged_history_file_neither_blows_memory_nor_stops_the_start() {
    let _alone = crate::support::memory::alone().await;
    let (_dir, root) = tempdir();
    let cache = root.join("cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let file = cache.join("history.jsonl");
    damaged_history(&file);
    // Reset the peak (Linux: `5` to clear_refs), so that the start's own peak is measured.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak before measuring it");
    let before = memory_kib("VmHWM");
    let server = TestServer::start(Config {
        cache_dir: cache.clone(),
        ..test_config()
    })
    .await;
    let listed = runs(&server).await;
    let peak = memory_kib("VmHWM").saturating_sub(before);
    assert!(
        peak < HISTORY_MARGIN_KIB,
        "reading a 96 MiB history raised the peak by {peak} KiB"
    );
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, "newest");
    let size = std::fs::metadata(&file).expect("history file").len();
    assert!(size < 4096, "rewritten with what was kept: {size} bytes");
    server.stop().await;
}

/// The console's and the metrics listener's bounds (docs/contract.md §8).
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 128;

/// Reads `stream` to its end; fails the test when the server keeps it open for twice the
/// header read timeout.
async fn closed_by_the_server(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let read = tokio::time::timeout(2 * HEADER_READ_TIMEOUT, stream.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    seen
}

#[tokio::test]
async fn a_slow_or_idle_client_is_disconnected_from_the_console_and_the_metrics() {
    let _alone = crate::support::memory::alone().await;
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(test_config()).await;
    let mut clients = Vec::new();
    for (addr, path) in [
        (server.console_addr, "/"),
        (server.metrics_addr, "/healthz"),
    ] {
        // Half a request header, never finished.
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let start = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
        slow.write_all(start.as_bytes()).await.expect("write");
        clients.push((addr, slow, false));
        // A keep-alive connection that stays idle after its answer.
        let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let whole = format!("{start}\r\n");
        idle.write_all(whole.as_bytes()).await.expect("write");
        clients.push((addr, idle, true));
    }
    for (addr, mut stream, answered) in clients {
        let seen = closed_by_the_server(&mut stream).await;
        let seen = String::from_utf8_lossy(&seen);
        assert_eq!(seen.starts_with("HTTP/1.1 200"), answered, "{addr}: {seen}");
    }
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_others_close() {
    let _alone = crate::support::memory::alone().await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(test_config()).await;
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let stream = tokio::net::TcpStream::connect(server.console_addr)
            .await
            .expect("connect");
        held.push(stream);
    }
    // Every place is taken: the next connection's request is not served…
    let mut waiting = tokio::net::TcpStream::connect(server.console_addr)
        .await
        .expect("the backlog takes it");
    waiting
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let early = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        waiting.read_to_end(&mut answer),
    )
    .await;
    assert!(
        early.is_err(),
        "served beyond the limit: {}",
        String::from_utf8_lossy(&answer)
    );
    // …until the others go: then it is, and the console answers again.
    drop(held);
    let read = tokio::time::timeout(HEADER_READ_TIMEOUT, waiting.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "not served after the others closed");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{answer:?}"
    );
    let page = reqwest::get(server.console_url()).await.expect("console");
    assert!(page.status().is_success());
    server.stop().await;
}
