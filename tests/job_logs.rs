//! The test Job's log as the cluster serves it (`support::fake_kube`): a test pod is untrusted
//! (SECURITY.md sends such tests to the Job runner), and one endless line must not grow
//! phasegate's memory, whether the log is followed or read back after the stream broke.

use crate::support::{
    fake_kube::FakeKube,
    test_jobs::{job_spec, kube_config},
    *,
};

/// Prints one 3 MB line without a newline, then a last line.
const ENDLESS_LINE: &str = "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo tests done";

async fn log_of_endless_line(kube: &FakeKube) -> String {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let server = TestServer::start(kube_config(kube, Some("10m"))).await;
    let spec = job_spec(&file_url(&bare), ENDLESS_LINE, &[("dryRun", "true")]);
    let fired = server
        .sensor()
        .await
        .fire(&spec, &sync_event(&synced), FROM_TEST)
        .await
        .expect("passes");
    server.stop().await;
    assert_eq!(fired.response["outcome"], "dry-run");
    fired.response["test"]["log"]
        .as_str()
        .expect("log")
        .to_string()
}

/// The answer keeps the log's last 4 KiB: the end of the cut line, its marker, the next line.
fn assert_cut(log: &str) {
    let cut = 3_000_000 - 16 * 1024;
    assert!(
        log.contains(&format!("xxxx … [cut: {cut} bytes]\ntests done\n")),
        "{}",
        log.get(log.len().saturating_sub(300)..).unwrap_or(log)
    );
}

#[tokio::test]
async fn an_endless_line_from_a_test_pod_is_cut_with_a_marker_when_followed() {
    let kube = FakeKube::start().await;
    let log = log_of_endless_line(&kube).await;
    assert_cut(&log);
}

#[tokio::test]
async fn an_endless_line_is_cut_when_the_log_is_read_back_after_the_stream_broke() {
    let kube = FakeKube::start().await;
    kube.break_log_streams_after(1000);
    let log = log_of_endless_line(&kube).await;
    assert_cut(&log);
    assert!(
        kube.requests()
            .iter()
            .any(|r| r.contains("/log?") && r.contains("limitBytes=")),
        "the read-back is bounded by limitBytes"
    );
}
