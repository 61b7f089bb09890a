//! The local command runner: starts the test program in its own process group, captures its
//! output (stdout and stderr as one pipe, in the order written), and on timeout kills the whole group (a test script's children included).
//! The process runs without any privilege, as `test.runAsUser` when set ([`privileges`]).

use std::{process::Stdio, sync::Arc};

use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    net::unix::pipe,
    process::Command,
    sync::Mutex,
};

use super::{
    LOG_TAIL_BYTES, LogSink, RunnerError, TestContext, Tested, lines::LineCutter, privileges, tail,
};
use crate::spec::CommandTest;

/// The only variables of phasegate's environment a test command inherits.
const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "USER",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Runs the command once.
pub(super) async fn run(test: &CommandTest, ctx: &TestContext) -> Result<Tested, RunnerError> {
    let sink = &ctx.log;
    let (program, args) = test.argv.split_first().expect("the plan has a program");
    let mut command = Command::new(test.resolved.clone().unwrap_or_else(|| test.program()));
    if let Some(dir) = &test.workdir {
        if !dir.is_dir() {
            return Err(RunnerError::Workdir(dir.display().to_string()));
        }
        command.current_dir(dir);
    }
    privileges::unprivileged(&mut command, ctx.run_as);
    let spawn_error = |e: std::io::Error| RunnerError::Spawn {
        program: program.clone(),
        reason: e.to_string(),
    };
    // stdout and stderr are one pipe, as `2>&1` makes them: the lines arrive in the order the
    // test wrote them (two pipes read by two tasks would race).
    let (output, writer) = std::io::pipe().map_err(spawn_error)?;
    let also_writer = writer.try_clone().map_err(spawn_error)?;
    let spawned = command
        // The program's own name as the spec wrote it (`$0`), whatever path it was found by.
        .arg0(program)
        .args(args)
        // The test sees a clean environment: never phasegate's own credentials (GIT_PASSWORD).
        .env_clear()
        .envs(
            INHERITED
                .iter()
                .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
        )
        .envs(&test.env)
        .env("TEST_TARGET", &test.target)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(also_writer))
        // Its own process group, so a timeout can kill the script and everything it started.
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    // Our copies of the write end go with the command, so the output ends when the test's do.
    drop(command);
    let mut child = spawned.map_err(spawn_error)?;
    let mut group = ProcessGroup(child.id().and_then(|id| i32::try_from(id).ok()));
    let log = Arc::new(Mutex::new(String::new()));
    let output = pipe::Receiver::from_owned_fd(output.into()).map_err(spawn_error)?;
    let reader = collect(output, log.clone(), sink.clone());
    let (passed, ending) = match tokio::time::timeout(test.timeout, child.wait()).await {
        Ok(Ok(status)) => (status.success(), format!("{program} exited: {status}")),
        Ok(Err(e)) => (false, format!("waiting for {program} failed: {e}")),
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            let timeout = humantime::format_duration(test.timeout);
            (
                false,
                format!("{program} timed out after {timeout}: killed"),
            )
        }
    };
    group.0 = None;
    // A child that escaped the group (setsid) may hold the pipe open: do not wait for it.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), reader).await;
    sink(&ending);
    let mut log = log.lock().await.clone();
    log.push_str(&ending);
    log.push('\n');
    Ok(Tested {
        passed,
        attempts: 1,
        log,
    })
}

/// The test's process group, killed when the run is dropped before the test ended (the
/// server's shutdown grace period is over): the script's children must not outlive it.
struct ProcessGroup(Option<i32>);

impl ProcessGroup {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Appends lines of `out` to `log`, keeping only a bounded tail in memory. Reads chunks, not
/// lines: a line is cut at its bound ([`LineCutter`]), and bytes that are not UTF-8 are
/// replaced, so the pipe is read to its end (a reader that stopped would kill the test with
/// SIGPIPE on its next write).
fn collect(
    mut out: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<String>>,
    sink: LogSink,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut cutter = LineCutter::default();
        let mut chunk = vec![0; 64 * 1024];
        let mut lines = Vec::new();
        loop {
            let read = out.read(&mut chunk).await.unwrap_or(0);
            if read == 0 {
                std::mem::take(&mut cutter).finish(&mut |l| lines.push(l));
            } else {
                cutter.feed(&chunk[..read], &mut |l| lines.push(l));
            }
            if !lines.is_empty() {
                let mut log = log.lock().await;
                for line in lines.drain(..) {
                    sink(&line);
                    log.push_str(&line);
                    log.push('\n');
                    if log.len() > 4 * LOG_TAIL_BYTES {
                        *log = tail(&log, LOG_TAIL_BYTES);
                    }
                }
            }
            if read == 0 {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn run_quiet(t: &CommandTest) -> Result<(bool, u32, String), RunnerError> {
        let tested = run(t, &TestContext::quiet()).await?;
        Ok((tested.passed, tested.attempts, tested.log))
    }

    fn test(script: &str, timeout: Duration) -> CommandTest {
        CommandTest {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            workdir: None,
            resolved: None,
            target: "http://app.test".into(),
            env: [("GREETING".to_string(), "hi".to_string())].into(),
            timeout,
        }
    }

    #[tokio::test]
    async fn output_keeps_the_order_in_which_stdout_and_stderr_were_written() {
        // A TAP-style suite: the header and results on stdout, the failure on stderr.
        let script = "i=0; while [ $i -lt 200 ]; do echo \"ok $i\"; echo \"not ok $i\" >&2; \
                      i=$((i+1)); done";
        let (_, _, log) = run_quiet(&test(script, Duration::from_secs(10)))
            .await
            .expect("runs");
        let written: String = (0..200).map(|i| format!("ok {i}\nnot ok {i}\n")).collect();
        assert!(log.starts_with(&written), "out of order:\n{log}");
    }

    #[tokio::test]
    async fn passes_on_exit_zero_and_captures_output() {
        let (passed, _, log) = run_quiet(&test(
            "echo $GREETING $TEST_TARGET; echo err >&2",
            Duration::from_secs(10),
        ))
        .await
        .expect("runs");
        assert!(passed);
        assert!(log.contains("hi http://app.test"), "{log}");
        assert!(log.contains("err"), "{log}");
    }

    #[tokio::test]
    async fn fails_on_nonzero_exit() {
        let (passed, _, log) = run_quiet(&test("echo broken; exit 3", Duration::from_secs(10)))
            .await
            .expect("runs");
        assert!(!passed);
        assert!(log.contains("broken"), "{log}");
    }

    #[tokio::test]
    async fn kills_the_script_and_its_children_on_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("survived");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let (passed, _, log) = run_quiet(&test(&script, Duration::from_millis(300)))
            .await
            .expect("runs");
        assert!(!passed);
        assert!(log.contains("timed out"), "{log}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "a child of the test outlived the timeout");
    }

    #[tokio::test]
    async fn reports_a_program_that_cannot_start() {
        let mut t = test("", Duration::from_secs(1));
        t.argv = vec!["/nonexistent/tests.sh".into()];
        let err = run_quiet(&t).await.expect_err("no such program");
        assert!(err.to_string().contains("/nonexistent/tests.sh"), "{err}");
    }
}
