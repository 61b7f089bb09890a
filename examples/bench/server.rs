//! The release `phasegate serve` as a child process, as it runs in a cluster.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use super::{BenchResult, PASSWORD, USER};

/// A running server, killed when dropped.
pub(crate) struct Server {
    child: std::process::Child,
    pub url: String,
    metrics: String,
    /// The web console's root, when it was asked for.
    pub console: Option<String>,
}

fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

impl Server {
    /// The server on `cache`, without the web console.
    pub(crate) fn spawn(bin: &Path, cache: &Path) -> BenchResult<Server> {
        Server::spawn_with(bin, cache, false)
    }

    /// The server on `cache`, with the web console on its own listener if `console`.
    pub(crate) fn spawn_with(bin: &Path, cache: &Path, console: bool) -> BenchResult<Server> {
        let (port, metrics) = (free_port()?, free_port()?);
        let console = console.then(free_port).transpose()?;
        // A fan-in of 100 apps queues more runs than the default queue holds.
        let config = cache.with_extension("config.yaml");
        std::fs::write(&config, "maxQueuedRuns: 256\n")?;
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-listen",
                &format!("127.0.0.1:{metrics}"),
                "--max-runs",
                "16",
            ])
            .arg("--cache-dir")
            .arg(cache);
        if let Some(c) = console {
            command.args(["--console-listen", &format!("127.0.0.1:{c}")]);
        }
        let child = command
            .env("GIT_USER", USER)
            .env("GIT_PASSWORD", PASSWORD)
            // The bench's git server speaks plain http on 127.0.0.1.
            .env("PHASEGATE_GIT_ALLOW_INSECURE_HTTP", "1")
            // A served phasegate refuses what nobody allowed: the bench's repository, its
            // `test: none` promotions, its test script and that script's target.
            .env("PHASEGATE_POLICY_REPOS", "http://127.0.0.1:*/**")
            .env("PHASEGATE_POLICY_ALLOW_NO_TESTS", "1")
            .env("PHASEGATE_POLICY_COMMANDS", "/**")
            // The duplicate Executes' command test names a target (nothing listens there).
            .env("PHASEGATE_POLICY_TEST_TARGETS", "http://127.0.0.1:9")
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVER_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stderr(match std::env::var_os("BENCH_SERVER_LOG") {
                Some(file) => Stdio::from(std::fs::File::create(file)?),
                None => Stdio::null(),
            })
            .spawn()?;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            metrics: format!("http://127.0.0.1:{metrics}/metrics"),
            console: console.map(|c| format!("http://127.0.0.1:{c}")),
        })
    }

    /// (current RSS, peak RSS) in MiB, from /proc.
    pub(crate) fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib = |field: &str| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
    }

    pub(crate) async fn metric(&self, series: &str) -> f64 {
        let text = match reqwest::get(&self.metrics).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
