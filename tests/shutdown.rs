//! SIGTERM with work open, as Kubernetes stops a pod: readiness turns false at once, `runs watch`
//! ends, a run that outlives the grace period is interrupted and recorded, the caller of a
//! synchronous Execute gets an answer, and the process exits instead of waiting for its
//! connections. The real binary, a real signal, the real CLI as the watcher.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::*;
use nix::{sys::signal::Signal, unistd::Pid};
use phasegate::proto::runs::{ListRunsRequest, runs_client::RunsClient};
use tonic::Code;

/// Not a timing assertion: only a bound for "the process ends at all" (it should end within
/// the 3 s grace period and a moment).
const ENDS_AT_ALL: Duration = Duration::from_secs(90);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits for `child` to exit; fails the test if it is still running after [`ENDS_AT_ALL`].
fn exit_of(child: &mut Child) -> std::process::ExitStatus {
    let since = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if since.elapsed() > ENDS_AT_ALL {
            let _ = child.kill();
            panic!("the process did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True while `pid` is a live (not zombie) process.
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn serve(root: &Path, grpc: u16, metrics: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .args(["serve", "--no-kubernetes"])
        // Closed by default: the operator names the repositories and programs it allows.
        .args(["--policy-repos", "file:///**", "--policy-commands", "/**"])
        .args(["--policy-test-targets", "**", "--policy-allow-file-repos"])
        .args(["--listen", &format!("127.0.0.1:{grpc}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .arg("--cache-dir")
        .arg(root.join("cache"))
        .env("PHASEGATE_SHUTDOWN_GRACE", "3s")
        .env_remove("GIT_USER")
        .env_remove("GIT_PASSWORD")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join("server.log")).expect("log"))
        .spawn()
        .expect("start phasegate serve")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_watches_interrupts_a_slow_test_and_exits() {
    let (_d, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    // A campaign far longer than the grace period; its child's pid tells whether it was killed.
    let (started, sleeper) = (root.join("started"), root.join("sleeper.pid"));
    let script = format!(
        "sleep 300 & echo $! > {}; touch {}; wait",
        sleeper.display(),
        started.display()
    );
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("json");
    let (grpc, metrics) = (free_port(), free_port());
    let mut server = serve(&root, grpc, metrics);
    let url = format!("http://127.0.0.1:{grpc}");
    let readyz = format!("http://127.0.0.1:{metrics}/readyz");
    let ready = || async {
        match reqwest::get(&readyz).await {
            Ok(r) => Some(r.status().as_u16()),
            Err(_) => None,
        }
    };
    for _ in 0..400 {
        if ready().await == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(ready().await, Some(200), "the server became ready");

    let sensor = phasegate::sensor::SensorClient::connect(url.clone())
        .await
        .expect("connect");
    let spec = petstore(
        &file_url(&bare),
        &[("test", "command"), ("testCommand", &command)],
    );
    let execute = fire_in_background(sensor, &spec, &synced);
    eventually(|| started.exists()).await;
    let run = RunsClient::connect(url.clone())
        .await
        .expect("runs client")
        .list(ListRunsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .runs
        .remove(0)
        .id;
    let mut watch = Command::new(env!("CARGO_BIN_EXE_phasegate"))
        .args([
            "runs",
            "--server",
            &format!("127.0.0.1:{grpc}"),
            "watch",
            &run,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start runs watch");
    // The watcher is connected once it printed the run's stage.
    let shown = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = watch.stdout.take().expect("stdout");
    let reader = {
        let shown = shown.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = std::io::Read::read(&mut stdout, &mut buf) {
                shown
                    .lock()
                    .expect("watch output")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    eventually(|| shown.lock().expect("watch output").contains("testing")).await;
    let log = root.join("server.log");

    let pid = Pid::from_raw(i32::try_from(server.id()).expect("pid"));
    nix::sys::signal::kill(pid, Signal::SIGTERM).expect("SIGTERM");

    // Readiness turns false while the runs still have their grace period.
    let mut seen = None;
    for _ in 0..400 {
        seen = ready().await;
        if seen != Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, Some(503), "/readyz during the grace period");

    let watched = tokio::task::spawn_blocking(move || {
        let status = exit_of(&mut watch);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut watch.stderr.take().expect("stderr"), &mut stderr)
            .expect("read");
        (status, stderr)
    })
    .await
    .expect("watch");
    reader.join().expect("watch output");
    assert_eq!(watched.0.code(), Some(2), "{}", watched.1);
    assert!(watched.1.contains("shutting down"), "{}", watched.1);

    let status = tokio::task::spawn_blocking(move || exit_of(&mut server))
        .await
        .expect("server");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "the server exits cleanly: {status}\n{log}"
    );

    let failed = execute
        .await
        .expect("task")
        .expect_err("the run was interrupted");
    assert_eq!(failed.step, "Execute");
    assert_eq!(
        failed.status.code(),
        Code::Unavailable,
        "{}",
        failed.status.message()
    );
    assert!(
        failed
            .status
            .message()
            .contains("shut down before the run ended"),
        "{}",
        failed.status.message()
    );
    let history = std::fs::read_to_string(root.join("cache/history.jsonl")).expect("history file");
    let recorded = history
        .lines()
        .find(|l| l.contains(&run))
        .expect("the interrupted run is recorded");
    assert!(
        recorded.contains("shut down before the run ended"),
        "{recorded}"
    );
    let sleeper = std::fs::read_to_string(&sleeper).expect("sleeper pid");
    eventually(|| !alive(&sleeper)).await;
    assert_eq!(
        version_of(&bare, "petstore", "prod"),
        "1.0",
        "nothing promoted"
    );
}
