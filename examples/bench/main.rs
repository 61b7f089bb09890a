//! phasegate's benchmark against the classic method: run with `bash bench/run.sh`.
//!
//! Generates a GitOps repository (10,000 commits, 2,000 files; `BENCH_COMMITS` and
//! `BENCH_FILES` change that), serves it with git's `http-backend` behind basic auth, runs the
//! release `phasegate serve` as a child process, and measures side by side: warm promotions
//! (phasegate, the classic fresh-clone + YAML re-dump script, the git CLI floor on a warm
//! clone), the cold first promotion against `git clone --bare`, the one-shot
//! `phasegate promote` (a fresh process per promotion, as in the classic container step) cold
//! and warm, 1,000 concurrent duplicates, a fan-in of 100 apps, the server's memory, and the
//! web console's pages with 1,000 runs over 200 pipelines, 8 clients at once, and their first
//! contentful paint in headless Chromium (`BENCH_CONSOLE_ONLY=1`: only those;
//! `BENCH_ONE_SHOT_ONLY=1`: only the one-shot rows; `BENCH_DELTA_HEAVY=1`: a delta-heavy history).
//! Prints a Markdown table.

mod chromium;
mod console;
mod fleet;
#[path = "../../tests/support/git_server.rs"]
#[allow(dead_code)]
mod git_server;
mod one_shot;
mod repo;
mod server;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use phasegate::{
    git::local,
    sensor::{Parameter, SensorClient},
};
use repo::{generate, path, values};
use serde_json::json;
use server::Server;

/// The repository's size: `BENCH_COMMITS` commits over `BENCH_FILES` files.
fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
const APPS: usize = 200;
const USER: &str = "bench";
const PASSWORD: &str = "bench-password";
const PATH: &str = "apps/{app}/{phase}/values-{phase}.yaml";

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn spec(repo: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("repo", repo),
        ("path", PATH),
        ("phases", "test,prod"),
        ("test", "none"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn app_spec(repo: &str, app: &str) -> std::collections::BTreeMap<String, String> {
    let mut s = spec(repo);
    s.insert("path".into(), PATH.replace("{app}", app));
    s
}

fn params(commit: &str) -> Vec<Parameter> {
    vec![Parameter {
        dest: "source.commit".into(),
        value: json!(commit),
    }]
}

const FROM_TEST: &[u8] = br#"{"source_phase":"test"}"#;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 0.5), percentile(&samples, 0.95))
}

fn timed(f: impl FnOnce() -> BenchResult<()>) -> BenchResult<f64> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

fn sh(cmd: &mut Command) -> BenchResult<()> {
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!("{cmd:?} failed: {stderr}").into())
    }
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let root = tempfile::tempdir()?;
    let bare = root.path().join("gitops.git");
    let bin = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: bench PATH_TO_RELEASE_PHASEGATE")?,
    );
    let (commits, files) = (size("BENCH_COMMITS", 10_000), size("BENCH_FILES", 2_000));
    eprintln!("generating {commits} commits over {files} files…");
    generate(&bare, commits, files)?;
    let git = git_server::GitServer::start(root.path(), USER, PASSWORD).await;
    let url = git.url("gitops");
    let auth = format!(
        "Authorization: Basic {}",
        STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let mut version = 0usize;
    let mut bump = |app: &str| -> BenchResult<(String, String)> {
        version += 1;
        let v = format!("2.{version}");
        let id = local::commit_files(
            &bare,
            "main",
            &[(&path(app, "test"), &values(app, &v))],
            &format!("Deploy {v} to test"),
        )?;
        Ok((id, v))
    };
    let mut rows: Vec<(String, String, String)> = Vec::new();
    if std::env::var_os("BENCH_CONSOLE_ONLY").is_some() {
        rows.extend(console::measure(&bin, root.path(), &url).await?);
        print(rows);
        return Ok(());
    }
    let one_shot = one_shot::OneShot {
        bin: &bin,
        root: root.path(),
        url: &url,
        auth: &auth,
    };
    if std::env::var_os("BENCH_ONE_SHOT_ONLY").is_some() {
        rows.push(one_shot.cold(&mut bump)?);
        rows.push(one_shot.cold_deep(&mut bump)?);
        rows.push(one_shot.warm(&mut bump, runs)?);
        print(rows);
        return Ok(());
    }

    // Cold: the first promotion of an empty cache against `git clone --bare`.
    let mut cold = Vec::new();
    let mut clone = Vec::new();
    for i in 0..5 {
        let cache = root.path().join(format!("cold-{i}"));
        let server = Server::spawn(&bin, &cache)?;
        let sensor = SensorClient::connect(server.url.clone()).await?;
        let (commit, _) = bump("app000")?;
        let started = Instant::now();
        sensor
            .fire(&app_spec(&url, "app000"), &params(&commit), FROM_TEST)
            .await
            .map_err(|f| f.status.to_string())?;
        cold.push(started.elapsed().as_secs_f64() * 1000.0);
        let target = root.path().join(format!("clone-{i}.git"));
        clone.push(timed(|| {
            sh(Command::new("git")
                .args([
                    "-c",
                    &format!("http.extraHeader={auth}"),
                    "clone",
                    "-q",
                    "--bare",
                    &url,
                ])
                .arg(&target))
        })?);
    }
    let (cold_p50, _) = summary(cold);
    let (clone_p50, _) = summary(clone);
    rows.push((
        "Cold first promotion (p50 of 5)".into(),
        format!("{cold_p50:.0} ms vs git clone --bare {clone_p50:.0} ms"),
        format!(
            "{:.2}× (goal ≤ 0.7× at 10,000 commits, ≤ 0.5× at 100,000)",
            cold_p50 / clone_p50
        ),
    ));

    // Warm promotions through the server, runner none.
    let server = Server::spawn(&bin, &root.path().join("cache"))?;
    let idle = server.memory().0;
    let sensor = SensorClient::connect(server.url.clone()).await?;
    let (commit, _) = bump("app001")?;
    sensor
        .fire(&app_spec(&url, "app001"), &params(&commit), FROM_TEST)
        .await
        .map_err(|f| f.status.to_string())?;
    let mut warm = Vec::new();
    for _ in 0..runs {
        let (commit, _) = bump("app001")?;
        let started = Instant::now();
        let fired = sensor
            .fire(&app_spec(&url, "app001"), &params(&commit), FROM_TEST)
            .await
            .map_err(|f| f.status.to_string())?;
        warm.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(fired.response["outcome"], "promoted");
    }
    let (warm_p50, warm_p95) = summary(warm);

    if std::env::var_os("BENCH_WARM_ONLY").is_some() {
        println!("warm p50 {warm_p50:.0} ms, p95 {warm_p95:.0} ms");
        return Ok(());
    }
    // The classic method: fresh clone, checkout, YAML load/dump, commit, push.
    let mut classic = Vec::new();
    for _ in 0..runs {
        let (commit, _) = bump("app002")?;
        classic.push(timed(|| {
            sh(Command::new("python3")
                .args([
                    "bench/classic_promote.py",
                    "--git-repo",
                    &url,
                    "--auth-header",
                    &auth,
                    "--source-commit",
                    &commit,
                ])
                .args([
                    "--source-phase",
                    "test",
                    "--target-phase",
                    "prod",
                    "--path",
                    &PATH.replace("{app}", "app002"),
                ]))
        })?);
    }
    let (classic_p50, classic_p95) = summary(classic);

    // The floor: git CLI on a warm clone.
    let warm_clone = root.path().join("warm-clone");
    sh(Command::new("git")
        .args([
            "-c",
            &format!("http.extraHeader={auth}"),
            "clone",
            "-q",
            &url,
        ])
        .arg(&warm_clone))?;
    let mut floor = Vec::new();
    for _ in 0..runs {
        let (_, v) = bump("app003")?;
        floor.push(timed(|| {
            sh(Command::new("bash")
                .arg("bench/floor_promote.sh")
                .arg(&warm_clone)
                .args([&auth, &path("app003", "prod"), &v]))
        })?);
    }
    let (floor_p50, floor_p95) = summary(floor);
    rows.push(one_shot.cold(&mut bump)?);
    rows.push(one_shot.cold_deep(&mut bump)?);
    rows.push(one_shot.warm(&mut bump, runs)?);
    rows.push((
        format!("Warm promotion, phasegate (p50 / p95 of {runs})"),
        format!("{warm_p50:.0} / {warm_p95:.0} ms"),
        String::new(),
    ));
    rows.push((
        format!("Warm promotion, classic clone + YAML re-dump (p50 / p95 of {runs})"),
        format!("{classic_p50:.0} / {classic_p95:.0} ms"),
        format!(
            "phasegate {:.1}× faster (goal ≥ 20×)",
            classic_p50 / warm_p50
        ),
    ));
    rows.push((
        format!("Warm promotion, floor: git CLI on a warm clone (p50 / p95 of {runs})"),
        format!("{floor_p50:.0} / {floor_p95:.0} ms"),
        format!(
            "phasegate at {:.2}× the floor (goal ≤ 2×)",
            warm_p50 / floor_p50
        ),
    ));

    // 1,000 concurrent identical Executes.
    let counter = root.path().join("test-runs");
    let (commit, _) = bump("app004")?;
    let mut dup_spec = app_spec(&url, "app004");
    dup_spec.insert("test".into(), "command".into());
    // The command runner needs a test target (it is the command's argument).
    dup_spec.insert("testTarget".into(), "http://127.0.0.1:9/".into());
    let script = format!("echo run >> {}; sleep 0.2", counter.display());
    dup_spec.insert(
        "testCommand".into(),
        serde_json::to_string(&["/bin/sh", "-c", &script])?,
    );
    let before = local::log(&bare, "main", commits * 2)?.len();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (sensor, spec, p) = (sensor.clone(), dup_spec.clone(), params(&commit));
            tokio::spawn(async move {
                let started = Instant::now();
                let failure = sensor.fire(&spec, &p, FROM_TEST).await.err();
                let failure = failure.map(|f| f.status.message().to_string());
                (failure, started.elapsed().as_secs_f64() * 1000.0)
            })
        })
        .collect();
    let mut answers = Vec::new();
    let (mut failures, mut first_failure) = (0, None);
    for t in tasks {
        let (failure, ms) = t.await?;
        failures += usize::from(failure.is_some());
        first_failure = first_failure.or(failure);
        answers.push(ms);
    }
    if let Some(why) = first_failure {
        eprintln!("a duplicate Execute failed: {why}");
    }
    answers.sort_by(f64::total_cmp);
    let test_runs = std::fs::read_to_string(&counter)
        .unwrap_or_default()
        .lines()
        .count();
    let dup_commits = local::log(&bare, "main", commits * 2)?.len() - before;
    rows.push((
        "1,000 concurrent identical Executes".into(),
        format!("{test_runs} test run, {dup_commits} commit, {failures} failed answers"),
        format!(
            "answer p50 {:.0} ms, p99 {:.0} ms (goal: 1 run, 1 commit)",
            percentile(&answers, 0.5),
            percentile(&answers, 0.99)
        ),
    ));

    // Fan-in: 100 apps at once into one branch.
    let rejections_before = server.metric("phasegate_push_rejections_total").await;
    let mut fan = Vec::new();
    for a in 100..200 {
        let app = format!("app{a:03}");
        fan.push((app.clone(), bump(&app)?.0));
    }
    let before = local::log(&bare, "main", commits * 3)?.len();
    let started = Instant::now();
    let tasks: Vec<_> = fan
        .into_iter()
        .map(|(app, commit)| {
            let (sensor, spec) = (sensor.clone(), app_spec(&url, &app));
            tokio::spawn(async move {
                sensor
                    .fire(&spec, &params(&commit), FROM_TEST)
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await?);
    }
    let wall = started.elapsed().as_secs_f64();
    let landed = local::log(&bare, "main", commits * 3)?.len() - before;
    let retries = server.metric("phasegate_push_rejections_total").await - rejections_before;
    let (_, peak) = server.memory();
    rows.push((
        "Fan-in: 100 apps into one branch".into(),
        format!("{landed} commits landed ({ok} OK), {wall:.1} s wall"),
        format!("{retries} push retries (goal: 100 commits)"),
    ));
    rows.push((
        "Server memory".into(),
        format!("{idle:.1} MiB idle, {peak:.1} MiB peak"),
        "goal < 30 MiB idle, < 150 MiB peak".into(),
    ));
    drop(server);
    rows.extend(console::measure(&bin, root.path(), &url).await?);
    print(rows);
    drop(git);
    Ok(())
}

fn print(rows: Vec<(String, String, String)>) {
    println!("| measure | result | ratio / goal |\n|---|---|---|");
    for (m, r, g) in rows {
        println!("| {m} | {r} | {g} |");
    }
}
