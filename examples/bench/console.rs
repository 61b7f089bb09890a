//! The web console with a full history (issue 14: "a page renders in well under 50 ms with
//! 1,000 runs"): 1,000 runs written through phasegate's own history store, with test output
//! and edits of realistic size over the benchmark's 200 apps, then the release server's console
//! on a local listener, timed over HTTP as a browser fetches its pages.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use phasegate::{
    ChangedLine, Edit, History, Outcome, RunRecord, RunReport, Stage, TestReport,
    sensor::SensorClient,
    spec::{SourceRef, TargetRef},
};

use super::{APPS, BenchResult, FROM_TEST, PATH, app_spec, params, server::Server, summary};

/// Runs in the history: what the server keeps.
const RUNS: usize = 1000;
/// Requests per page (interleaved across the pages, so a load spike hits them alike).
const REQUESTS: usize = 200;
/// First renders after the board's version cache expired (3 s apart).
const COLD_BOARDS: usize = 5;

fn hex(n: usize, len: usize) -> String {
    let mut s = String::new();
    let mut x = n as u64 ^ 0x9e37_79b9_7f4a_7c15;
    while s.len() < len {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        s.push_str(&format!("{:016x}", x));
    }
    s.truncate(len);
    s
}

/// A test campaign's output as the report keeps it: its last 4 KiB.
fn test_log(app: &str, passed: bool) -> String {
    let mut log = format!(
        "{rule}\nPetstore {app} :: API campaign\n{rule}\n",
        rule = "=".repeat(78)
    );
    for case in 0..45 {
        let verdict = if !passed && case == 31 {
            "FAIL"
        } else {
            "PASS"
        };
        log.push_str(&format!(
            "GET /pet/{case} answers the pet of the fixture{:>28}| {verdict} |\n",
            ""
        ));
    }
    log.push_str("45 tests, 45 passed, 0 failed\nOutput:  /work/output.xml\n");
    let cut = log.len().saturating_sub(4096);
    log[log.ceil_char_boundary(cut)..].to_string()
}

/// The `i`th run of the history: a mix of outcomes as a busy team has them.
fn run(i: usize, repo: &str, started: i64) -> (RunRecord, RunReport) {
    let app = format!("app{:03}", i % APPS);
    let (version, previous) = (format!("2.{i}"), format!("2.{}", i.saturating_sub(APPS)));
    let outcome = match i % 20 {
        0 | 10 => Outcome::TestsFailed,
        1 => Outcome::AlreadyPromoted,
        2 => Outcome::Superseded,
        _ => Outcome::Promoted,
    };
    let passed = outcome != Outcome::TestsFailed;
    let source_commit = hex(i, 40);
    let record = RunRecord {
        id: format!("{:x}-{:04x}", started, i),
        key: hex(i + RUNS, 64),
        repo: repo.to_string(),
        branch: "main".into(),
        path: PATH.replace("{app}", &app),
        keys: vec!["image.version".into()],
        source_phase: "test".into(),
        target_phase: "prod".into(),
        source_commit: source_commit.clone(),
        stage: Stage::Queued,
        version: None,
        previous: None,
        report: None,
        error: None,
        started_unix_ms: started,
        edit: None,
        timeline: Vec::new(),
        health: None,
    };
    let report = RunReport {
        run: record.id.clone(),
        outcome,
        version: Some(version),
        previous: Some(previous),
        commit: (outcome == Outcome::Promoted).then(|| hex(i + 2 * RUNS, 40)),
        signature: None,
        source: SourceRef {
            phase: "test".into(),
            commit: source_commit,
            path: String::new(),
        },
        target: TargetRef {
            phase: "prod".into(),
        },
        test: Some(TestReport {
            runner: "job".into(),
            passed,
            attempts: 1,
            duration_ms: 40_000 + (i as u64 % 7) * 3_000,
            log: test_log(&app, passed),
        }),
        pull_request: None,
        duration_ms: 41_000 + (i as u64 % 7) * 3_000,
    };
    (record, report)
}

/// Writes [`RUNS`] finished runs through the history store into `cache`'s history file, as a
/// server that ran them would have.
fn fill(cache: &Path, repo: &str) {
    let history = History::open(Some(cache));
    let now = phasegate::now_unix_ms();
    for i in 0..RUNS {
        let started = now - i64::try_from((RUNS - i) * 300_000).unwrap_or(0);
        let (record, report) = run(i, repo, started);
        let id = record.id.clone();
        let file = record.path.replace("{phase}", "prod");
        history.start(record);
        history.stage(&id, Stage::Testing);
        for line in report.test.iter().flat_map(|t| t.log.lines()) {
            history.log(&id, line);
        }
        if let Some(commit) = &report.commit {
            history.stage(&id, Stage::Promoting);
            let version = report.version.clone().unwrap_or_default();
            history.edited(
                &id,
                Edit {
                    path: file,
                    message: format!(
                        "Promote image.version {version} from test to prod\n\n\
                         Promoted-Version: {version}\nSource-Phase: test\n\
                         Source-Commit: {}\nTarget-Phase: prod\nPromotion-Run: {id}\n\
                         Promoted-Keys: image.version\n",
                        report.source.commit
                    ),
                    lines: vec![ChangedLine {
                        line: 5,
                        before: format!(
                            "  version: \"{}\"  # bumped by CD",
                            report.previous.clone().unwrap_or_default()
                        ),
                        after: format!("  version: \"{version}\"  # bumped by CD ({commit})"),
                    }],
                },
            );
        }
        history.finish(&id, &Ok(Arc::new(report)));
    }
}

/// GETs `url`, checking the answer; (milliseconds, bytes).
async fn fetch(client: &reqwest::Client, url: &str) -> BenchResult<(f64, usize)> {
    let started = Instant::now();
    let r = client.get(url).send().await?;
    let status = r.status();
    let body = r.bytes().await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if !status.is_success() {
        return Err(format!("{url}: {status}").into());
    }
    Ok((ms, body.len()))
}

/// The console's rows: each page's p50 / p95 over HTTP with 1,000 runs in the history.
pub(crate) async fn measure(
    bin: &Path,
    root: &Path,
    url: &str,
    head: &str,
) -> BenchResult<Vec<(String, String, String)>> {
    let cache = root.join("console-cache");
    fill(&cache, url);
    let server = Server::spawn_with(bin, &cache, true)?;
    let console = server.console.clone().ok_or("no console")?;
    // One real promotion: the server clones the repository, where the board reads versions.
    SensorClient::connect(server.url.clone())
        .await?
        .fire(&app_spec(url, "app000"), &params(head), FROM_TEST)
        .await
        .map_err(|f| f.status.to_string())?;
    let client = reqwest::Client::new();
    let run_page = {
        let list = client.get(format!("{console}/runs")).send().await?;
        let list = list.text().await?;
        // The newest recorded promotion with its test output and edit (not the clone's run).
        let id = list
            .split("<td><a href=\"/runs/")
            .skip(2)
            .find_map(|s| s.split('"').next().filter(|_| s.contains(">promoted<")))
            .ok_or("no promoted run listed")?
            .to_string();
        format!("/runs/{id}")
    };
    let filtered = format!(
        "/runs?repo={}&phase=prod&outcome=tests-failed",
        url::form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
    );
    let pages: [(&str, String); 5] = [
        ("board (200 pipelines, versions cached)", "/".into()),
        ("runs list, first page", "/runs".into()),
        ("runs list, filtered (repo, phase, outcome)", filtered),
        ("runs list, last page (page 20)", "/runs?page=20".into()),
        ("run page (test output, edit, answer)", run_page),
    ];
    let mut cold = Vec::new();
    for _ in 0..COLD_BOARDS {
        tokio::time::sleep(Duration::from_millis(3_100)).await;
        cold.push(fetch(&client, &format!("{console}/")).await?.0);
    }
    let mut samples = vec![Vec::new(); pages.len()];
    let mut sizes = vec![0; pages.len()];
    for _ in 0..REQUESTS {
        for (i, (_, page)) in pages.iter().enumerate() {
            let (ms, bytes) = fetch(&client, &format!("{console}{page}")).await?;
            samples[i].push(ms);
            sizes[i] = bytes;
        }
    }
    let (cold_p50, cold_max) = {
        let (p50, _) = summary(cold.clone());
        (p50, cold.iter().copied().fold(0.0, f64::max))
    };
    let mut rows = vec![(
        format!(
            "Console, 1,000 runs: board reading versions from git (p50 / max of {COLD_BOARDS})"
        ),
        format!("{cold_p50:.1} / {cold_max:.1} ms"),
        "goal well under 50 ms".to_string(),
    )];
    for ((name, _), (times, bytes)) in pages.iter().zip(samples.into_iter().zip(sizes)) {
        let (p50, p95) = summary(times);
        rows.push((
            format!("Console, 1,000 runs: {name} (p50 / p95 of {REQUESTS})"),
            format!("{p50:.1} / {p95:.1} ms, {} KiB", bytes / 1024),
            "goal well under 50 ms".to_string(),
        ));
    }
    Ok(rows)
}
