//! `phasegate demo`: the whole promotion loop on this machine with nothing installed — a
//! throw-away GitOps repository with `test` and `prod` phases, a small app standing in for the
//! `test` deployment, the trigger server, and a client calling FetchResource → Execute →
//! ApplyPolicy exactly as an Argo Events Sensor does. The repository holds Helm values files, or
//! with `--kustomize` kustomize overlays whose `images:` entry is promoted.

use std::{collections::BTreeMap, io::Write};

use axum::{Router, routing::get};
use serde_json::json;
use tokio::net::TcpListener;

use crate::{
    app,
    config::{Config, KubernetesConfig},
    git::local,
    policy::PolicyConfig,
    sensor::{Parameter, SensorClient, go_yaml},
    server,
};

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Where the demo's GitOps repository keeps the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A Helm values file per phase, `image.version`.
    HelmValues,
    /// A kustomize overlay per phase, `images[name=petstore].newTag`.
    Kustomize,
}

impl Layout {
    /// The values file path template and the key of the version in it.
    fn path_and_key(self) -> (&'static str, &'static str) {
        match self {
            Layout::HelmValues => (
                "apps/petstore/overlays/{phase}/values-{phase}.yaml",
                "image.version",
            ),
            Layout::Kustomize => (
                "apps/petstore/overlays/{phase}/kustomization.yaml",
                "images[name=petstore].newTag",
            ),
        }
    }

    /// The files every phase shares: the kustomize base the overlays patch.
    fn shared(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Layout::HelmValues => &[],
            Layout::Kustomize => &[
                (
                    "apps/petstore/base/kustomization.yaml",
                    "resources:\n- deployment.yaml\n",
                ),
                (
                    "apps/petstore/base/deployment.yaml",
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: petstore\nspec:\n  \
                     selector:\n    matchLabels: {app: petstore}\n  template:\n    metadata:\n      \
                     labels: {app: petstore}\n    spec:\n      containers:\n      - name: app\n        \
                     image: petstore\n      - name: proxy\n        image: envoy\n",
                ),
            ],
        }
    }

    /// The phase's file holding `version`.
    fn file(self, phase: &str, version: &str) -> String {
        match self {
            Layout::HelmValues => values(phase, version),
            Layout::Kustomize => kustomization(phase, version),
        }
    }
}

fn kustomization(phase: &str, version: &str) -> String {
    format!(
        "# petstore in {phase} (managed by GitOps)\n\
         resources:\n- ../../base\n\
         images:\n\
         # the proxy, pinned by hand\n\
         - name: envoy\n  newTag: v1.30.1\n\
         - name: petstore\n  newName: registry.example.com/petstore\n  newTag: \"{version}\"  # promoted by phasegate\n"
    )
}

fn values(phase: &str, version: &str) -> String {
    format!(
        "# Helm values of petstore in {phase} (managed by GitOps)\n\
         replicaCount: 2\n\
         image:\n  repository: registry.example.com/petstore\n  version: \"{version}\"  # promoted by phasegate\n\
         \n\
         service:\n  port: 8080\n"
    )
}

/// Runs the demo, printing each step to `out`. With `console`, the server also serves the web
/// console and keeps running after the promotion, until `console` resolves (Ctrl-C).
pub async fn run(
    layout: Layout,
    out: &mut (dyn Write + Send),
    console: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
) -> DemoResult<()> {
    let dir = tempfile::tempdir()?;
    let repo = dir.path().join("gitops.git");
    let (values_path, key) = layout.path_and_key();
    let path = |phase: &str| values_path.replace("{phase}", phase);
    let (test_file, prod_file) = (path("test"), path("prod"));
    let (test_1, prod_1) = (layout.file("test", "1.0"), layout.file("prod", "1.0"));
    let mut files: Vec<(&str, &str)> = layout.shared().to_vec();
    files.extend([(test_file.as_str(), test_1.as_str()), (&prod_file, &prod_1)]);
    local::commit_files(
        &repo,
        "main",
        &files,
        "Deploy petstore 1.0 to test and prod",
    )?;
    let synced = local::commit_files(
        &repo,
        "main",
        &[(&test_file, &layout.file("test", "2.0"))],
        "Deploy petstore 2.0 to test",
    )?;
    writeln!(
        out,
        "1. GitOps repository {}: test runs 2.0 (commit {}), prod runs 1.0",
        repo.display(),
        &synced[..12]
    )?;

    let app = TcpListener::bind("127.0.0.1:0").await?;
    let app_url = format!("http://{}", app.local_addr()?);
    let app_task = tokio::spawn(async move {
        let router = Router::new().route(
            "/pet",
            get(|| async { r#"{"name":"Dog","status":"available"}"# }),
        );
        axum::serve(app, router).await
    });
    writeln!(out, "2. petstore 2.0 answers in test at {app_url}/pet")?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server_url = format!("http://{}", listener.local_addr()?);
    // The operator's test profile: how petstore is tested, and the one target it may test.
    let profile = format!(
        "test: http\ntestPath: /pet\ntestExpectBody: Dog|Cat|Bird\ntestTargets: [\"{app_url}\"]\n"
    );
    let config = Config {
        cache_dir: dir.path().join("cache"),
        policy: PolicyConfig {
            repos: vec![format!("file://{}", repo.display())],
            transitions: vec!["test->prod".into()],
            // The demo's own throw-away repository: no hooks to run.
            allow_file_repos: true,
            ..PolicyConfig::default()
        },
        test_profiles: [(
            "petstore-smoke".to_string(),
            serde_yaml_ng::from_str(&profile)?,
        )]
        .into(),
        // The demo tests with the HTTP runner: no cluster needed.
        kubernetes: KubernetesConfig {
            disabled: true,
            ..KubernetesConfig::default()
        },
        ..Config::default()
    };
    let console_listener = match console {
        Some(_) => Some(TcpListener::bind("127.0.0.1:0").await?),
        None => None,
    };
    let console_url = match &console_listener {
        Some(l) => Some(format!("http://{}/", l.local_addr()?)),
        None => None,
    };
    let listeners = server::Listeners {
        grpc: listener,
        metrics: None,
        console: console_listener,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(app::serve_on(listeners, config, async {
        let _ = stopped.await;
    }));
    writeln!(
        out,
        "3. phasegate serves the Argo Events custom trigger at {server_url}; the operator's \
         test profile petstore-smoke GETs /pet, at {app_url} only"
    )?;

    let spec: BTreeMap<String, String> = [
        ("repo", format!("file://{}", repo.display())),
        ("path", values_path.to_string()),
        ("key", key.to_string()),
        ("phases", "test,prod".into()),
        ("testProfile", "petstore-smoke".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    writeln!(
        out,
        "4. the Sensor fires the trigger; custom.spec as the Sensor sends it:\n{}",
        indent(&go_yaml(&spec))
    )?;
    let parameters = [
        Parameter {
            dest: "source.commit".into(),
            value: json!(synced),
        },
        Parameter {
            dest: "test.target".into(),
            value: json!(app_url),
        },
    ];
    let payload = json!({"source_phase": "test"}).to_string();
    let client = SensorClient::connect(server_url).await?;
    let result = client.fire(&spec, &parameters, payload.as_bytes()).await;
    let firing = result.map_err(|f| format!("{} failed: {}", f.step, f.status.message()))?;
    writeln!(out, "   FetchResource → {}", firing.resource)?;
    writeln!(
        out,
        "   parameters    → source.commit, test.target set from the event"
    )?;
    writeln!(out, "   Execute       → {}", firing.response)?;
    writeln!(out, "   ApplyPolicy   → OK: {}", firing.policy_message)?;

    let commit = firing.response["commit"]
        .as_str()
        .ok_or("Execute answered no promotion commit")?;
    writeln!(
        out,
        "5. the promotion commit on main:\n{}",
        indent(&local::show(&repo, commit)?)
    )?;
    if let (Some(until), Some(url)) = (console, console_url) {
        writeln!(
            out,
            "6. the web console shows the promotion at {url} (Ctrl-C stops the demo)"
        )?;
        out.flush()?;
        until.await;
    }
    let _ = stop.send(());
    server_task.await??;
    app_task.abort();
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}\n")).collect()
}
