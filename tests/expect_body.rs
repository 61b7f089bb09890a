//! `testExpectBody` at its bounds, over real gRPC: the costliest pattern the spec accepts,
//! matched against the most of a body the HTTP runner reads (1 MiB) by as many runs at once
//! as the node has cores, leaves the server answering its health checks (one step past the
//! bound is `INVALID_ARGUMENT` before any run starts: `tests/bounds.rs`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::support::*;
use axum::{Router, routing::get};
use tokio::net::TcpListener;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The costliest pattern accepted: 32 characters and classes, the most allowed, shaped so the
/// regex's lazy DFA thrashes and every position stays alive against random `0`s and `1`s.
const COSTLIEST: &str = "1[01]{30}[^01]";

/// The cores of the node the attack took down: the server's runtime below has as many workers.
const CORES: usize = 2;

/// Runs at once: one more than the workers.
const RUNS: usize = CORES + 1;

/// An app whose `/pet` answers 1 MiB of random `0`s and `1`s. Returns its URL and how many
/// bodies it has sent.
async fn binary_noise_app() -> (String, Arc<AtomicUsize>) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let body: String = (0..1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x & 1 == 0 { '0' } else { '1' }
        })
        .collect();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = Router::new().route(
        "/pet",
        get(move || async move {
            count.fetch_add(1, Ordering::SeqCst);
            body
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, served)
}

/// `grpc.health.v1.Health/Check` of `url`, `times` times, each answer awaited at most
/// `patience`.
async fn health_checks(url: String, times: usize, patience: Duration) {
    let channel = tonic::transport::Endpoint::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    for check in 1..=times {
        let answer = tokio::time::timeout(patience, health.check(HealthCheckRequest::default()))
            .await
            .unwrap_or_else(|_| panic!("health check {check} unanswered after {patience:?}"))
            .expect("health check");
        assert_eq!(answer.into_inner().status(), ServingStatus::Serving);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A runtime of `workers` threads.
fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn the_costliest_accepted_body_pattern_leaves_the_server_answering_health_checks() {
    let _alone = crate::support::memory::alone_blocking();
    // The server alone on a runtime with a worker per core; the app and the clients on
    // another, so whatever stalls is the server, and the clock judging it is not.
    let (server_side, clients) = (runtime(CORES), runtime(2));
    let server = server_side.block_on(TestServer::start(test_config()));
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let apps = ["a", "b", "c"];
    let synced = gitops_repo(&bare, &apps);
    clients.block_on(async {
        let (target, served) = binary_noise_app().await;
        let mut runs = Vec::new();
        // One app each: runs of one event would be the same run.
        for app in &apps[..RUNS] {
            let path = PATH.replace("{app}", app);
            let spec = spec(&[
                ("repo", &file_url(&bare)),
                ("path", &path),
                ("phases", "test,prod"),
                ("test", "http"),
                ("testPath", "/pet"),
                ("testExpectBody", COSTLIEST),
                ("testAttempts", "1"),
            ]);
            let (sensor, event) = (server.sensor().await, event_at(&synced, &target));
            runs.push(tokio::spawn(async move {
                sensor.fire(&spec, &event, FROM_TEST).await
            }));
        }
        // A body per worker is sent: that many matches run now (a server matching on its
        // workers would not even ask for the next body), and the server still answers, quickly.
        eventually(|| served.load(Ordering::SeqCst) >= CORES).await;
        health_checks(server.url(), 5, Duration::from_secs(2)).await;

        for run in runs {
            let failed = run.await.expect("run").expect_err("no body matches");
            let answer = failed.response.expect("Execute answered");
            assert_eq!(answer["outcome"], "tests-failed", "{answer}");
        }
    });
    assert_eq!(version_of(&bare, "a", "prod"), "1.0");
    // A match past its deadline still finishes on its thread: do not wait for it.
    server_side.shutdown_background();
}
