//! The kubelet's side of the test container in the fake (`super`): the container runs as a
//! local process (its `command` + `args`, its `env`), its output becomes its log line by line,
//! and its status is written as the kubelet writes it (`running`, then `terminated` with the
//! exit code and reason; a SIGKILL under a memory limit is `OOMKilled`). At the deadline it
//! gets SIGTERM, then SIGKILL after the grace period; an eviction kills it. With a mesh
//! sidecar the pod stays `Running` after the tests exit (kubelet `getPhase`).

use std::{process::Stdio, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    task::JoinHandle,
    time::Instant,
};

use super::super::{PodLog, Shared, update};
use super::{PodEnd, SIDECAR_IMAGE, now};

/// The kubelet: runs the container's `command` + `args` as a local process.
pub(super) async fn run_container(
    shared: &Arc<Shared>,
    pods: &str,
    pod_name: &str,
    container: &Value,
    template: &Value,
    deadline: Instant,
    on_deadline: impl FnOnce(),
) -> PodEnd {
    let argv: Vec<String> = container["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(container["args"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let env = container["env"].as_array().into_iter().flatten().map(|e| {
        (
            e["name"].as_str().unwrap_or_default().to_string(),
            e["value"].as_str().unwrap_or_default().to_string(),
        )
    });
    let log = format!("{pod_name}/tests");
    shared
        .store
        .lock()
        .expect("store")
        .pod_logs
        .insert(log.clone(), PodLog::default());
    let image = container["image"].as_str().unwrap_or_default().to_string();
    let sidecar = shared.sidecar.load(std::sync::atomic::Ordering::SeqCst);
    let started = now();
    update(shared, pods, pod_name, |p| {
        p["status"]["phase"] = json!("Running");
        let mut statuses = vec![running("tests", &image, &started)];
        if sidecar {
            statuses.push(running("istio-proxy", SIDECAR_IMAGE, &started));
        }
        p["status"]["containerStatuses"] = json!(statuses);
    });
    let grace = Duration::from_secs(
        template["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30),
    );
    let memory_limit = container["resources"]["limits"]["memory"].is_string();
    let mut on_deadline = Some(on_deadline);
    let spawned =
        tokio::process::Command::new(argv.first().cloned().unwrap_or_else(|| "true".into()))
            .args(argv.iter().skip(1))
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
    // How the tests container stopped: its exit code and the kubelet's reason.
    let (stop, code, reason) = match spawned {
        Ok(mut child) => {
            let readers = [
                child.stdout.take().map(|o| append_lines(shared, &log, o)),
                child.stderr.take().map(|e| append_lines(shared, &log, e)),
            ];
            let stop = tokio::select! {
                exit = child.wait() => Stop::Exited(exit.map_or(128, exit_code)),
                () = tokio::time::sleep_until(deadline) => Stop::Deadline,
                () = evicted(shared, pod_name) => Stop::Disrupted,
            };
            let code = match stop {
                Stop::Exited(code) => code,
                Stop::Deadline => {
                    if let Some(mark) = on_deadline.take() {
                        mark();
                    }
                    terminate(&mut child, grace).await
                }
                Stop::Disrupted => {
                    let _ = child.kill().await;
                    137
                }
            };
            for reader in readers.into_iter().flatten() {
                // A grandchild may hold the pipe open after a kill: do not wait for it forever.
                let abort = reader.abort_handle();
                if tokio::time::timeout(Duration::from_secs(1), reader)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
            // The kernel's OOM killer sends SIGKILL; the kubelet reports it as OOMKilled.
            let reason = match (stop, code) {
                (Stop::Exited(_), 0) => "Completed",
                (Stop::Exited(_), 137) if memory_limit => "OOMKilled",
                _ => "Error",
            };
            (stop, code, reason)
        }
        Err(e) => {
            append(shared, &log, &format!("exec: {e}"));
            (Stop::Exited(128), 128, "StartError")
        }
    };
    if let Some(l) = shared.store.lock().expect("store").pod_logs.get_mut(&log) {
        l.done = true;
    }
    let ended = terminated("tests", &image, code, reason, &started);
    // An ordinary sidecar keeps running after `tests` has exited: the pod stays Running
    // (kubelet `getPhase`: Running while any container runs) until the Job's deadline or an
    // eviction stops it.
    let stop = match stop {
        Stop::Exited(_) if sidecar => {
            update(shared, pods, pod_name, |p| set_status(p, ended.clone()));
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if let Some(mark) = on_deadline.take() {
                        mark();
                    }
                    Stop::Deadline
                }
                () = evicted(shared, pod_name) => Stop::Disrupted,
            }
        }
        stop => stop,
    };
    let end = match stop {
        Stop::Exited(0) => PodEnd::Succeeded,
        Stop::Exited(_) => PodEnd::Failed,
        Stop::Deadline => PodEnd::Deadline,
        Stop::Disrupted => PodEnd::Disrupted,
    };
    update(shared, pods, pod_name, |p| {
        set_status(p, ended);
        if sidecar {
            set_status(
                p,
                terminated("istio-proxy", SIDECAR_IMAGE, 0, "Completed", &started),
            );
        }
        p["status"]["phase"] = json!(if matches!(end, PodEnd::Succeeded) {
            "Succeeded"
        } else {
            "Failed"
        });
        if matches!(end, PodEnd::Disrupted) {
            p["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True",
                "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting", "lastTransitionTime": now()}]);
        }
    });
    end
}

/// Why the tests container stopped.
#[derive(Clone, Copy)]
enum Stop {
    /// It exited on its own, with this code.
    Exited(i32),
    /// The Job's deadline.
    Deadline,
    /// An eviction.
    Disrupted,
}

/// A process's exit code as the kubelet reports it: 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(128)
}

/// A running container's status, as the kubelet writes it.
fn running(name: &str, image: &str, since: &str) -> Value {
    json!({"name": name, "image": image, "imageID": "", "ready": true, "started": true,
           "restartCount": 0, "state": {"running": {"startedAt": since}}})
}

/// A terminated container's status, as the kubelet writes it.
fn terminated(name: &str, image: &str, code: i32, reason: &str, since: &str) -> Value {
    json!({"name": name, "image": image, "imageID": "", "ready": false, "started": false,
           "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": reason,
           "startedAt": since, "finishedAt": now()}}})
}

/// Replaces the status of the container `status` names.
fn set_status(pod: &mut Value, status: Value) {
    if let Some(all) = pod["status"]["containerStatuses"].as_array_mut() {
        all.retain(|c| c["name"] != status["name"]);
        all.push(status);
    }
}

/// SIGTERM, then SIGKILL once the grace period is over, as the kubelet stops a container;
/// answers its exit code.
async fn terminate(child: &mut tokio::process::Child, grace: Duration) -> i32 {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(exit) => exit.map_or(143, exit_code),
        Err(_) => {
            let _ = child.kill().await;
            137
        }
    }
}

/// Resolves once the test asked the fake to evict `pod`.
async fn evicted(shared: &Shared, pod: &str) {
    while !shared.evictions.lock().expect("evictions").contains(pod) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Copies a container's output into its log line by line, as a kubelet would.
fn append_lines(
    shared: &Arc<Shared>,
    log: &str,
    out: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> JoinHandle<()> {
    let (shared, log) = (shared.clone(), log.to_string());
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            append(&shared, &log, &line);
        }
    })
}

fn append(shared: &Shared, log: &str, line: &str) {
    let mut store = shared.store.lock().expect("store");
    let log = store.pod_logs.entry(log.to_string()).or_default();
    log.text.push_str(line);
    log.text.push('\n');
}
