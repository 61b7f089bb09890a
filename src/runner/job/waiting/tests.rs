//! The wait's bookkeeping on watch events carrying objects shaped as a real cluster returns
//! them (`tests/fixtures/kubernetes/`).

use super::*;

fn pod(yaml: &str, name: &str) -> Pod {
    let mut pod: Pod = serde_yaml_ng::from_str(yaml).expect("fixture parses as a Pod");
    pod.metadata.name = Some(name.into());
    pod
}

const UNSCHEDULABLE: &str =
    include_str!("../../../../tests/fixtures/kubernetes/pod-unschedulable.yaml");
const ERR_IMAGE_PULL: &str =
    include_str!("../../../../tests/fixtures/kubernetes/pod-err-image-pull.yaml");

#[tokio::test]
async fn a_relist_stops_the_clock_of_a_pod_deleted_while_the_watch_was_away() {
    // Never contacted: pods with problems are not followed.
    let url = "http://127.0.0.1:9".parse().expect("url");
    let client = Client::try_from(kube::Config::new(url)).expect("client");
    let job = Watched {
        client: client.clone(),
        namespace: "argo-events",
        name: "phasegate-5d1f0c9a2b3e4f60",
        uid: "6b0e1c7a-3f51-4d8e-9a0c-2f7d5e4b1a93",
        what: "Job `argo-events/phasegate-5d1f0c9a2b3e4f60`",
        tolerance: Duration::from_secs(300),
        timeout: Duration::from_secs(630),
    };
    let pods: Api<Pod> = Api::namespaced(client, "argo-events");
    let mut follower = LogFollower::default();
    let sink: LogSink = std::sync::Arc::new(|_: &str| {});
    let mut progress = Progress::new(&job);
    let events = [
        watcher::Event::Init,
        watcher::Event::InitApply(pod(UNSCHEDULABLE, "first")),
        watcher::Event::InitDone,
        // The watch broke (410 Gone); `first` was evicted and deleted meanwhile, `second`
        // replaces it and has a problem of its own.
        watcher::Event::Init,
        watcher::Event::InitApply(pod(ERR_IMAGE_PULL, "second")),
        watcher::Event::InitDone,
    ];
    for event in events {
        let ended = progress.on(Seen::Pod(event), &pods, &mut follower, &sink);
        assert!(matches!(ended, Ok(None)));
    }

    let oldest = progress.clocks.oldest().expect("second's problem");
    assert!(oldest.starts_with("ErrImagePull"), "{oldest}");
    assert_eq!(progress.pods, BTreeSet::from(["second".to_string()]));
}
