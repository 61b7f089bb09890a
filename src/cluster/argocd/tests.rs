//! The wait over a stream of watch events, on tokio's paused clock: the `Degraded` grace is
//! judged when it ends even if the Application does not change.

use std::time::Duration;

use kube::{api::DynamicObject, runtime::watcher};
use serde_json::json;

use super::follow;
use crate::cluster::ClusterError;

const SYNCED: &str = include_str!("../../../tests/fixtures/argocd/application-synced.yaml");
const COMMIT: &str = "ea8759964626a583667a2bfd08f334ec2070040a";

fn degraded() -> DynamicObject {
    let mut app: serde_json::Value = serde_yaml_ng::from_str(SYNCED).expect("fixture is YAML");
    app["status"]["health"]["status"] = json!("Degraded");
    serde_json::from_value(app).expect("an Application object")
}

#[tokio::test(start_paused = true)]
async fn a_degraded_app_that_does_not_change_is_refused_when_the_grace_ends() {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<
        Result<watcher::Event<DynamicObject>, ClusterError>,
    >();
    tx.send(Ok(watcher::Event::Init)).expect("send");
    tx.send(Ok(watcher::Event::InitApply(degraded())))
        .expect("send");
    tx.send(Ok(watcher::Event::InitDone)).expect("send");
    // The sender stays open: no further event ever comes.
    let events = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    let mut last = String::new();
    let started = tokio::time::Instant::now();

    let refused = tokio::time::timeout(
        Duration::from_secs(600),
        follow(events, "the app", COMMIT, &mut last),
    )
    .await
    .expect("decided before the timeout");

    let Err(ClusterError::Precondition(message)) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert!(message.contains("Degraded for 2m"), "{message}");
    assert_eq!(
        started.elapsed(),
        crate::cluster::app_status::DEGRADED_GRACE
    );
    drop(tx);
}
