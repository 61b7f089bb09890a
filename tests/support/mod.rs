//! Shared test fixtures: the real server on 127.0.0.1:0, GitOps repositories, a Sensor-like
//! client, an app under test, and captured logs (to prove no credential is ever logged).

pub(crate) mod argo_cd;
pub(crate) mod bitbucket_api;
pub(crate) mod engine;
pub(crate) mod fake_bitbucket;
pub(crate) mod fake_forge;
pub(crate) mod fake_gitea;
pub(crate) mod fake_github;
pub(crate) mod fake_gitlab;
pub(crate) mod fake_kube;
pub(crate) mod forge_bed;
pub(crate) mod forge_scenarios;
pub(crate) mod git_server;
pub(crate) mod github_app;
pub(crate) mod gitlab_api;
// Used by the `isolated` binary only (tests/isolated.rs).
#[allow(dead_code)]
pub(crate) mod memory;
pub(crate) mod openapi;
pub(crate) mod ssh_server;
pub(crate) mod swagger;
pub(crate) mod test_jobs;

use std::{
    collections::BTreeMap,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use axum::{Router, http::StatusCode, routing::get};
use phasegate::{
    PolicyConfig,
    config::Config,
    git::local,
    sensor::{Failed, Firing, Parameter, SensorClient},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// The policy the tests serve under, written out as an operator would (the server is closed
/// by default): every repository of this machine (`file://`, the local git servers over HTTP
/// and SSH), any program, test image, Job command, working directory, test target and
/// `testEnv` name, rollbacks and `test: none`. `tests/security.rs` narrows it.
pub(crate) fn test_policy() -> PolicyConfig {
    PolicyConfig {
        repos: vec![
            "file:///**".into(),
            "http://127.0.0.1:*/**".into(),
            "ssh://*@127.0.0.1:*/**".into(),
        ],
        commands: vec!["/**".into()],
        images: vec!["**".into()],
        job_commands: vec!["**".into()],
        test_workdirs: vec!["/**".into()],
        test_targets: vec!["**".into()],
        test_env: vec!["*".into()],
        allow_rollback: true,
        allow_file_repos: true,
        // The Secrets the tests' fake clusters hold, for every local repository.
        credentials_secrets: [
            "github-credentials",
            "github-app",
            "github-app-com",
            "broken-app",
            "half-secret",
            "no-such-secret",
            "ssh-rsa",
            "pgp",
            "no-passphrase",
            "wrong-passphrase",
            "other-email",
        ]
        .into_iter()
        .map(|name| phasegate::SecretBinding {
            name: name.into(),
            repos: vec!["**".into()],
        })
        .collect(),
        allow_no_tests: true,
        ..PolicyConfig::default()
    }
}

/// The default configuration with [`test_policy`].
pub(crate) fn test_config() -> Config {
    Config {
        policy: test_policy(),
        ..Config::default()
    }
}

/// The values file template of the fixtures.
pub(crate) const PATH: &str = "apps/{app}/{phase}/values-{phase}.yaml";

/// A values file with a comment on the version line, as real ones have.
pub(crate) fn values(version: &str) -> String {
    format!(
        "# petstore\nreplicaCount: 2\nimage:\n  repository: registry.example.com/petstore\n  version: \"{version}\"  # bumped by CD\n"
    )
}

/// The path of `app`'s values file in `phase`.
pub(crate) fn values_path(app: &str, phase: &str) -> String {
    PATH.replace("{app}", app).replace("{phase}", phase)
}

/// A bare GitOps repository with `app` at 1.0 in test and prod, then 2.0 in test.
/// Returns the commit that put 2.0 in test (what Argo CD synced).
pub(crate) fn gitops_repo(bare: &Path, apps: &[&str]) -> String {
    let mut files = Vec::new();
    for app in apps {
        files.push((values_path(app, "test"), values("1.0")));
        files.push((values_path(app, "prod"), values("1.0")));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    local::commit_files(bare, "main", &refs, "initial").expect("initial commit");
    bump(bare, apps, "test", "2.0")
}

/// Commits `version` into `phase` of each app; returns the commit.
pub(crate) fn bump(bare: &Path, apps: &[&str], phase: &str, version: &str) -> String {
    let files: Vec<(String, String)> = apps
        .iter()
        .map(|a| (values_path(a, phase), values(version)))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    local::commit_files(bare, "main", &refs, &format!("Deploy {version} to {phase}")).expect("bump")
}

/// The version in `app`'s `phase` values file at the head of main.
pub(crate) fn version_of(bare: &Path, app: &str, phase: &str) -> String {
    let text = local::read_file(bare, "main", &values_path(app, phase)).expect("values file");
    phasegate::read_scalar(&text, "image.version").expect("version")
}

/// Number of commits on main.
pub(crate) fn commit_count(bare: &Path) -> usize {
    local::log(bare, "main", 100_000).expect("log").len()
}

/// A running phasegate server.
pub(crate) struct TestServer {
    pub addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` answer.
    pub metrics_addr: SocketAddr,
    /// Where the web console answers.
    pub console_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), phasegate::app::StartError>>,
    _cache: tempfile::TempDir,
}

impl TestServer {
    /// Starts the real server on 127.0.0.1:0 with `config` (its cache in a fresh directory).
    pub(crate) async fn start(mut config: Config) -> TestServer {
        let cache = tempfile::tempdir().expect("cache dir");
        if config.cache_dir == Config::default().cache_dir {
            config.cache_dir = cache.path().join("cache");
        }
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind metrics");
        let console = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind console");
        let console_addr = console.local_addr().expect("addr");
        let addr = grpc.local_addr().expect("addr");
        let metrics_addr = metrics.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = phasegate::Listeners {
            grpc,
            metrics: Some(metrics),
            console: Some(console),
        };
        let handle = tokio::spawn(phasegate::app::serve_on(listeners, config, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            metrics_addr,
            console_addr,
            stop: Some(stop),
            handle,
            _cache: cache,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// GET `path` on the metrics listener: (status, body).
    pub(crate) async fn probe(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}{path}", self.metrics_addr))
            .await
            .expect("metrics listener answers");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    /// `http://127.0.0.1:PORT` of the web console.
    pub(crate) fn console_url(&self) -> String {
        format!("http://{}", self.console_addr)
    }

    /// A Sensor-like client of this server.
    pub(crate) async fn sensor(&self) -> SensorClient {
        SensorClient::connect(self.url()).await.expect("connect")
    }

    /// Stops accepting and waits for runs in flight.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle
            .await
            .expect("server task")
            .expect("server ends cleanly");
    }
}

/// The payload of an event from the `test` phase (the classic notification's flat name).
pub(crate) const FROM_TEST: &[u8] = br#"{"source_phase":"test"}"#;

/// `file://` URL of a bare repository.
pub(crate) fn file_url(bare: &Path) -> String {
    format!("file://{}", bare.display())
}

/// The fixtures' petstore spec for `repo` (phases test → prod), with `extra` keys.
pub(crate) fn petstore(repo: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let path = PATH.replace("{app}", "petstore");
    let mut s = spec(&[("repo", repo), ("path", &path), ("phases", "test,prod")]);
    s.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    s
}

/// Where the fixtures' synced petstore answers (the classic notification's `test_target`).
pub(crate) const PETSTORE_TEST: &str = "http://petstore.test.svc:8080";

/// The parameters of an event that synced `sha` to the source phase, deployed at
/// [`PETSTORE_TEST`].
pub(crate) fn sync_event(sha: &str) -> Vec<Parameter> {
    event_at(sha, PETSTORE_TEST)
}

/// The parameters of an event that synced `sha` to the source phase, deployed at `target`.
pub(crate) fn event_at(sha: &str, target: &str) -> Vec<Parameter> {
    vec![
        Parameter {
            dest: "source.commit".into(),
            value: serde_json::json!(sha),
        },
        Parameter {
            dest: "test.target".into(),
            value: serde_json::json!(target),
        },
    ]
}

/// Fires the trigger for the test phase's event of `sha`, in a task of its own.
pub(crate) fn fire_in_background(
    sensor: SensorClient,
    spec: &BTreeMap<String, String>,
    sha: &str,
) -> JoinHandle<Result<Firing, Failed>> {
    let (spec, params) = (spec.clone(), sync_event(sha));
    tokio::spawn(async move { sensor.fire(&spec, &params, FROM_TEST).await })
}

/// Waits until `ready` holds; fails the test when it does not within 20 s.
#[track_caller]
pub(crate) fn eventually(ready: impl Fn() -> bool) -> impl Future<Output = ()> {
    let caller = std::panic::Location::caller();
    async move {
        for _ in 0..1000 {
            if ready() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the condition awaited at {caller} did not hold within 20 s");
    }
}

/// A spec map as a Sensor's `custom.spec`.
pub(crate) fn spec(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The petstore app under test: `/pet` answers `body` with `status`. Returns its URL.
pub(crate) async fn app(status: u16, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let code = StatusCode::from_u16(status).expect("status");
    tokio::spawn(async move {
        let router = Router::new().route("/pet", get(move || async move { (code, body) }));
        axum::serve(listener, router).await
    });
    url
}

/// Everything logged by this test binary so far (installs the capturing subscriber once).
pub(crate) fn logs() -> String {
    let buf = log_buffer();
    String::from_utf8_lossy(&buf.lock().expect("log buffer")).into_owned()
}

/// Installs the capturing log subscriber; call at the start of a test that inspects logs.
pub(crate) fn capture_logs() {
    log_buffer();
}

fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,h2=info,hyper=info,tower=info")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs a tool the tests need (`needs` says how it gets installed), asserts it succeeded, and
/// returns its stdout; a failure names the command line and shows what it printed.
pub(crate) fn succeed(command: &mut std::process::Command, needs: &str) -> Vec<u8> {
    let out = command.output().expect(needs);
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs the openssl command line in `dir` (keys and certificates for the tests).
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let mut command = std::process::Command::new("openssl");
    succeed(
        command.current_dir(dir).args(args),
        "openssl must be installed",
    );
}

/// A private CA (`ca.pem`) and a certificate it signed for `localhost` (`app.pem`, `app.key`).
pub(crate) fn internal_ca(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "1", "-subj", "/CN=Internal test CA"],
        ]
        .concat()
        .into_iter()
        .chain(["-keyout", "ca.key", "-out", "ca.pem"])
        .collect::<Vec<_>>(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "app.key",
                "-out",
                "app.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "app.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "app.pem",
        ],
    );
}

/// A temp dir that lives as long as the returned guard.
pub(crate) fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// `phasegate runs watch ID` against `server`, in the background, writing to a [`Screen`].
pub(crate) fn watch_in_background(
    server: &TestServer,
    id: &str,
) -> (Screen, JoinHandle<phasegate::proto::runs::Run>) {
    let (url, id, screen) = (server.url(), id.to_string(), Screen::default());
    let mut out = screen.clone();
    let watcher = tokio::spawn(async move {
        phasegate::console::watch(&url, &id, &mut out)
            .await
            .expect("watch")
    });
    (screen, watcher)
}

/// A terminal the test can read while the watcher writes to it.
#[derive(Clone, Default)]
pub(crate) struct Screen(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Screen {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("screen")).into_owned()
    }
}

impl std::io::Write for Screen {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("screen").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The value of a metric line `name{labels} value` in a Prometheus scrape, 0 when absent.
pub(crate) fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Values of every class a plain scalar can be typed as under YAML 1.1 or 1.2 (booleans,
/// octals, sexagesimals, timestamps, specials…), and strings: the values-file tests' corpus.
pub(crate) const TYPED_SCALARS: &[&str] = &[
    "1.10",
    "yes",
    "on",
    "no",
    "off",
    "y",
    "N",
    "True",
    "0x1F",
    "0o17",
    "017",
    "0b101",
    "1_000",
    "12:30",
    "190:20:30.15",
    "~",
    "null",
    ".inf",
    "-.Inf",
    ".nan",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "1e3",
    ".5",
    "42",
    "-1",
    "+12",
    "1.2.3",
    "v1.10",
    "sha-4f2a9c",
    "latest",
    "true",
    "it's",
];

/// `value` as a YAML scalar token: plain (`quote` empty), single- or double-quoted.
pub(crate) fn yaml_token(value: &str, quote: &str) -> String {
    match quote {
        "'" => format!("'{}'", value.replace('\'', "''")),
        "\"" => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
        _ => value.to_string(),
    }
}
