//! The test container's log: followed while it runs, so `runs watch` and the server log show its
//! lines as they happen, and read back from the pod when following did not see it end. Only the
//! test container ([`CONTAINER`]) of this run's pods is read: an injected sidecar has its own log.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{AsyncBufRead, AsyncBufReadExt};
use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::Time};
use kube::{Api, api::LogParams};
use tokio::task::JoinHandle;

use super::manifest::CONTAINER;
use crate::runner::{
    LogSink,
    lines::{LineCutter, MAX_LINE_BYTES},
};

/// Lines of the pod's log kept (the answer keeps the last 4 KiB of them).
const LOG_LINES: usize = 200;
/// The most of the pod's log read back when following did not see it end: its last
/// [`LOG_LINES`] lines, each cut at [`MAX_LINE_BYTES`] (the kubelet's `limitBytes`).
const LOG_READ_BYTES: usize = LOG_LINES * MAX_LINE_BYTES;
/// Once the Job has ended, how long its log stream may take to deliver its last lines.
const LOG_DRAIN: Duration = Duration::from_secs(5);

fn params() -> LogParams {
    LogParams {
        container: Some(CONTAINER.into()),
        ..LogParams::default()
    }
}

/// Follows the test container of the newest started pod of the run.
#[derive(Default)]
pub(super) struct LogFollower {
    lines: Arc<Mutex<VecDeque<String>>>,
    /// The pod followed, and the task following it: `true` when the stream ended with the
    /// container, `false` when it broke.
    task: Option<(String, JoinHandle<bool>)>,
    /// When the pod followed was created: an older pod never takes over again.
    created: Option<Time>,
}

impl LogFollower {
    /// Follows `pod` once its container has started (the kubelet refuses before). A pod that
    /// replaces a disrupted one takes over; a disrupted (evicted, preempted) or older pod,
    /// which a late update or a re-list shows again, never does.
    pub(super) fn follow(&mut self, pods: &Api<Pod>, pod: &Pod, sink: &LogSink) {
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref());
        let started = matches!(phase, Some("Running" | "Succeeded" | "Failed"));
        let disrupted = status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        });
        let Some(name) = pod.metadata.name.clone() else {
            return;
        };
        let created = pod.metadata.creation_timestamp.clone();
        let older = self
            .created
            .as_ref()
            .is_some_and(|followed| created.as_ref() < Some(followed));
        let followed = self.task.as_ref().map(|(p, _)| p.as_str());
        if !started
            || disrupted
            || older
            || pod.metadata.deletion_timestamp.is_some()
            || followed == Some(&name)
        {
            return;
        }
        if created.is_some() {
            self.created = created;
        }
        if let Some((old, task)) = self.task.take() {
            task.abort();
            sink(&format!(
                "(pod {old} was replaced by {name}; its log follows)"
            ));
        }
        let (pods, lines, sink) = (pods.clone(), self.lines.clone(), sink.clone());
        let pod_name = name.clone();
        let task = tokio::spawn(async move {
            let params = LogParams {
                follow: true,
                ..params()
            };
            let Ok(stream) = pods.log_stream(&pod_name, &params).await else {
                return false;
            };
            read_lines(stream, |line| {
                sink(&line);
                let mut kept = lines.lock().expect("log lines");
                if kept.len() == LOG_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            })
            .await
        });
        self.task = Some((name, task));
    }

    /// The log: as followed when the stream saw the container end, otherwise (never started,
    /// broken, or still open after the Job ended) the log tail read from the pod. When the Job
    /// did not end (`ended` false: phasegate's own timeout) its stream is not waited for.
    pub(super) async fn finish(
        self,
        pods: &Api<Pod>,
        selector: &str,
        sink: &LogSink,
        ended: bool,
    ) -> String {
        if let Some((_, task)) = self.task {
            let abort = task.abort_handle();
            let drain = if ended { LOG_DRAIN } else { Duration::ZERO };
            if let Ok(Ok(true)) = tokio::time::timeout(drain, task).await {
                let lines = self.lines.lock().expect("log lines");
                return lines.iter().map(|l| format!("{l}\n")).collect();
            }
            abort.abort();
            if !self.lines.lock().expect("log lines").is_empty() {
                sink("(the log stream broke; the pod's log tail follows)");
            }
        }
        let log = pod_log(pods, selector).await;
        for line in log.lines() {
            sink(line);
        }
        log
    }
}

/// The log tail of the test container of the run's newest pod ("" when there is none yet, or
/// it cannot be read). `selector` selects the run's pods by their Job's uid.
async fn pod_log(pods: &Api<Pod>, selector: &str) -> String {
    let Ok(list) = pods
        .list(&kube::api::ListParams::default().labels(selector))
        .await
    else {
        return String::new();
    };
    let newest = list
        .items
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.clone())
        .and_then(|p| p.metadata.name.clone());
    let Some(pod) = newest else {
        return String::new();
    };
    let params = LogParams {
        tail_lines: Some(LOG_LINES as i64),
        limit_bytes: Some(LOG_READ_BYTES as i64),
        ..params()
    };
    let Ok(stream) = pods.log_stream(&pod, &params).await else {
        return String::new();
    };
    let mut log = String::new();
    read_lines(stream, |line| {
        log.push_str(&line);
        log.push('\n');
    })
    .await;
    log
}

/// Reads a log stream to its end in lines cut at [`MAX_LINE_BYTES`], bytes that are not UTF-8
/// replaced ([`LineCutter`]); `false` when the stream broke.
async fn read_lines(stream: impl AsyncBufRead, mut line: impl FnMut(String)) -> bool {
    let mut stream = std::pin::pin!(stream);
    let mut cutter = LineCutter::default();
    loop {
        let Ok(chunk) = stream.fill_buf().await else {
            return false;
        };
        if chunk.is_empty() {
            cutter.finish(&mut line);
            return true;
        }
        let read = chunk.len();
        cutter.feed(chunk, &mut line);
        stream.consume_unpin(read);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_log_stream_in_cut_lines_with_bytes_that_are_not_utf8_replaced() {
        let mut log = b"start \xff\n".to_vec();
        log.extend(vec![b'x'; MAX_LINE_BYTES + 5]);
        log.extend(b"\nend");
        let mut lines = Vec::new();
        let ended = read_lines(futures_util::io::Cursor::new(log), |l| lines.push(l)).await;
        assert!(ended);
        let long = format!("{} … [cut: 5 bytes]", "x".repeat(MAX_LINE_BYTES));
        assert_eq!(lines, ["start \u{FFFD}", long.as_str(), "end"]);
    }
}
