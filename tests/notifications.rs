//! Run-end webhooks from the server configuration, posted to a local receiver: the JSON and
//! Slack bodies, a retry after a 500, and a receiver that hangs never holding a run.

use std::sync::{Arc, Mutex};

use crate::support::*;
use axum::{Router, extract::State, http::StatusCode, routing::post};
use phasegate::{Format, NotificationConfig, config::Config};
use tokio::net::TcpListener;

/// What the receiver got, and how it answers: `fail_first` times 500, or never when `hang`.
#[derive(Default)]
struct Receiver {
    bodies: Mutex<Vec<serde_json::Value>>,
    fail_first: Mutex<usize>,
    hang: Option<tokio::sync::Notify>,
}

async fn receive(State(r): State<Arc<Receiver>>, body: String) -> StatusCode {
    r.bodies
        .lock()
        .expect("bodies")
        .push(serde_json::from_str(&body).expect("a JSON body"));
    if let Some(hang) = &r.hang {
        hang.notified().await;
    }
    let mut fail = r.fail_first.lock().expect("fail");
    if *fail > 0 {
        *fail -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

async fn receiver(r: Receiver) -> (Arc<Receiver>, String) {
    let r = Arc::new(r);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

fn hook(url: &str, format: Format, outcomes: &[&str]) -> NotificationConfig {
    NotificationConfig {
        url: url.into(),
        outcomes: outcomes.iter().map(|o| o.to_string()).collect(),
        format,
    }
}

#[tokio::test]
async fn a_promotion_is_posted_as_json_and_as_slack_text_and_outcomes_filter() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let (json, json_url) = receiver(Receiver::default()).await;
    let (slack, slack_url) = receiver(Receiver::default()).await;
    let (failures, failures_url) = receiver(Receiver::default()).await;
    let server = TestServer::start(Config {
        notifications: vec![
            hook(&json_url, Format::Json, &[]),
            hook(&slack_url, Format::Slack, &["promoted"]),
            hook(&failures_url, Format::Json, &["tests-failed", "error"]),
        ],
        ..test_config()
    })
    .await;
    let spec = petstore(&file_url(&bare), &[("test", "none")]);
    let answer = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("promotes");
    eventually(|| {
        !json.bodies.lock().expect("b").is_empty() && !slack.bodies.lock().expect("b").is_empty()
    })
    .await;

    let body = json.bodies.lock().expect("b")[0].clone();
    assert_eq!(body["run"], answer.response["run"]);
    assert_eq!(body["outcome"], "promoted");
    assert_eq!(body["version"], "2.0");
    assert_eq!(body["previous"], "1.0");
    assert_eq!(body["commit"], answer.response["commit"]);
    assert_eq!(body["source"]["phase"], "test");
    assert_eq!(body["target"]["phase"], "prod");
    assert_eq!(body["repo"], file_url(&bare));
    let text = slack.bodies.lock().expect("b")[0]["text"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(text.contains("*promoted* 1.0 → 2.0 test → prod"), "{text}");
    assert!(
        failures.bodies.lock().expect("b").is_empty(),
        "filtered out"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failed_post_is_retried_and_counted() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let (flaky, flaky_url) = receiver(Receiver {
        fail_first: Mutex::new(1),
        ..Receiver::default()
    })
    .await;
    let (down, down_url) = receiver(Receiver {
        fail_first: Mutex::new(usize::MAX),
        ..Receiver::default()
    })
    .await;
    let server = TestServer::start(Config {
        notifications: vec![
            hook(&flaky_url, Format::Json, &[]),
            hook(&down_url, Format::Json, &[]),
        ],
        ..test_config()
    })
    .await;
    let spec = petstore(&file_url(&bare), &[("test", "none")]);
    server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("promotes");
    eventually(|| {
        flaky.bodies.lock().expect("b").len() == 2 && down.bodies.lock().expect("b").len() == 3
    })
    .await;
    // The last failure is counted right after its answer arrives.
    let mut scrape = String::new();
    for _ in 0..500 {
        scrape = server.probe("/metrics").await.1;
        if scrape.contains(r#"phasegate_notifications_total{result="failed"} 1"#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        scrape.contains(r#"phasegate_notifications_total{result="delivered"} 1"#),
        "{scrape}"
    );
    assert!(
        scrape.contains(r#"phasegate_notifications_total{result="failed"} 1"#),
        "{scrape}"
    );
    assert!(
        scrape.contains("phasegate_notification_retries_total 3"),
        "{scrape}"
    );
    server.stop().await;
}

/// A receiver that never answers, and a server posting every run end to it.
async fn hanging_receiver() -> (Arc<Receiver>, TestServer) {
    let (hanging, url) = receiver(Receiver {
        hang: Some(tokio::sync::Notify::new()),
        ..Receiver::default()
    })
    .await;
    let server = TestServer::start(Config {
        notifications: vec![hook(&url, Format::Json, &[])],
        ..test_config()
    })
    .await;
    (hanging, server)
}

#[tokio::test]
async fn a_receiver_that_hangs_never_holds_a_run() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let (hanging, server) = hanging_receiver().await;
    let spec = petstore(&file_url(&bare), &[("test", "none")]);
    // The answer arrives while the receiver still holds the notification of the same run.
    let answer = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("promotes");
    assert_eq!(answer.response["outcome"], "promoted");
    eventually(|| !hanging.bodies.lock().expect("b").is_empty()).await;
    let second = petstore(&file_url(&bare), &[("test", "none"), ("dryRun", "true")]);
    let answer = server
        .sensor()
        .await
        .fire(&second, &sync_event(&synced), FROM_TEST)
        .await
        .expect("answers");
    assert_eq!(answer.response["outcome"], "already-promoted");
    server.stop().await;
    if let Some(hang) = &hanging.hang {
        hang.notify_waiters();
    }
}

/// Runs that keep ending while the receiver hangs hold at most 32 posts; the rest are dropped
/// and counted, not piled up.
#[tokio::test]
async fn posts_in_flight_are_bounded_while_a_receiver_hangs() {
    let (_dir, root) = tempdir();
    let bare = root.join("gitops.git");
    gitops_repo(&bare, &["petstore"]);
    let (hanging, server) = hanging_receiver().await;
    let spec = petstore(&file_url(&bare), &[("test", "none")]);
    // A commit the repository lacks: each run ends in an error, and failed runs are not
    // remembered, so each call is a new run and a new notification.
    let missing = sync_event("0123456789abcdef0123456789abcdef01234567");
    let sensor = server.sensor().await;
    for _ in 0..40 {
        sensor
            .fire(&spec, &missing, FROM_TEST)
            .await
            .expect_err("no such commit");
    }
    let mut scrape = String::new();
    for _ in 0..500 {
        scrape = server.probe("/metrics").await.1;
        if scrape.contains(r#"phasegate_notifications_total{result="dropped"} 8"#) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        scrape.contains(r#"phasegate_notifications_total{result="dropped"} 8"#),
        "{scrape}"
    );
    assert_eq!(hanging.bodies.lock().expect("bodies").len(), 32);
    server.stop().await;
    if let Some(hang) = &hanging.hang {
        hang.notify_waiters();
    }
}

#[tokio::test]
async fn a_webhook_that_is_not_an_http_url_is_refused_at_start() {
    let (_dir, root) = tempdir();
    let config = Config {
        cache_dir: root.join("cache"),
        notifications: vec![hook("ftp://hooks.example/x", Format::Json, &[])],
        ..test_config()
    };
    let err = phasegate::app::pipeline(&config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("notifications[0].url"), "{err}");
}
