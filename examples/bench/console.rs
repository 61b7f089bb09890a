//! The web console with a full history (issues 14 and 27): 1,000 runs over 200 pipelines
//! (four repositories of fifty apps, dev → test → staging → prod, [`fleet`]) written through
//! phasegate's own history store, then the release server's console on a local listener,
//! timed over HTTP as browsers fetch its pages (eight at once), and the first contentful paint
//! of its pages in headless Chromium.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use phasegate::sensor::SensorClient;

use super::{
    BenchResult, FROM_TEST, app_spec, chromium::Chromium, fleet, params, server::Server, summary,
};

/// Requests per page, over all clients (interleaved across the pages, so a load spike hits
/// them alike).
const REQUESTS: usize = 200;
/// Clients fetching at once: a team opening the console together.
const CLIENTS: usize = 8;
/// First renders after the board's version cache expired (3 s apart).
const COLD_BOARDS: usize = 5;
/// Navigations per page in Chromium.
const PAINTS: usize = 30;

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

/// The console's rows: each page's p50 / p95 over HTTP with 1,000 runs in the history and
/// [`CLIENTS`] clients at once, and first contentful paints in Chromium. The fleet's
/// repositories are created beside `gitops_url`'s, on the same git server.
pub(crate) async fn measure(
    bin: &Path,
    root: &Path,
    gitops_url: &str,
) -> BenchResult<Vec<(String, String, String)>> {
    let mut repos = Vec::new();
    let mut heads = Vec::new();
    for name in fleet::repo_names() {
        heads.push(fleet::generate(&root.join(format!("{name}.git")))?);
        repos.push(gitops_url.replace("/gitops.git", &format!("/{name}.git")));
    }
    let cache = root.join("console-cache");
    fleet::fill(&cache, &repos);
    let server = Server::spawn_with(bin, &cache, true)?;
    let console = server.console.clone().ok_or("no console")?;
    // One real run per repository: the server clones each, where the board reads versions.
    let sensor = SensorClient::connect(server.url.clone()).await?;
    for (repo, head) in repos.iter().zip(&heads) {
        let mut spec = app_spec(repo, &fleet::app(0));
        spec.insert("phases".into(), fleet::PHASES.join(","));
        sensor
            .fire(&spec, &params(head), FROM_TEST)
            .await
            .map_err(|f| f.status.to_string())?;
    }
    let client = reqwest::Client::new();
    let run_page = {
        // A recorded promotion with its test output and edit (not one of the real runs).
        let list = client
            .get(format!("{console}/runs?outcome=promoted&page=2"))
            .send()
            .await?
            .text()
            .await?;
        let id = list
            .split("<a class=\"run\" href=\"/runs/")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .ok_or("no promoted run listed")?
            .to_string();
        format!("/runs/{id}")
    };
    let team = url::form_urlencoded::byte_serialize(repos[1].as_bytes()).collect::<String>();
    let pages: Vec<(&str, String)> = vec![
        ("board, first page (50 of 200 pipelines)", "/".into()),
        (
            "board, filtered (repository, app)",
            format!("/?repo={team}&q=svc1"),
        ),
        ("board, page 4", "/?page=4".into()),
        ("runs list, first page", "/runs".into()),
        (
            "runs list, filtered (app, outcome)",
            "/runs?q=svc07&outcome=tests-failed".into(),
        ),
        ("runs list, last page (page 20)", "/runs?page=20".into()),
        ("run page (test output, edit, answer)", run_page.clone()),
    ];
    let mut cold = Vec::new();
    for _ in 0..COLD_BOARDS {
        tokio::time::sleep(Duration::from_millis(3_100)).await;
        cold.push(fetch(&client, &format!("{console}/")).await?.0);
    }
    let mut sizes = Vec::new();
    for (_, page) in &pages {
        sizes.push(fetch(&client, &format!("{console}{page}")).await?.1);
    }
    let urls: Arc<Vec<String>> =
        Arc::new(pages.iter().map(|(_, p)| format!("{console}{p}")).collect());
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (client, urls) = (client.clone(), urls.clone());
        clients.push(tokio::spawn(async move {
            let mut samples = vec![Vec::new(); urls.len()];
            for _ in 0..REQUESTS / CLIENTS {
                for (i, url) in urls.iter().enumerate() {
                    samples[i].push(fetch(&client, url).await?.0);
                }
            }
            BenchResult::Ok(samples)
        }));
    }
    let mut samples = vec![Vec::new(); pages.len()];
    for c in clients {
        for (all, mine) in samples.iter_mut().zip(c.await??) {
            all.extend(mine);
        }
    }
    let (cold_p50, cold_max) = {
        let (p50, _) = summary(cold.clone());
        (p50, cold.iter().copied().fold(0.0, f64::max))
    };
    let mut rows = vec![(
        format!(
            "Console, 1,000 runs, 200 pipelines: board reading versions from git (p50 / max of {COLD_BOARDS}, one client)"
        ),
        format!("{cold_p50:.1} / {cold_max:.1} ms"),
        "goal ≤ 50 ms".to_string(),
    )];
    for ((name, _), (times, bytes)) in pages.iter().zip(samples.into_iter().zip(sizes)) {
        let (p50, p95) = summary(times);
        rows.push((
            format!("Console, 1,000 runs, 200 pipelines: {name} (p50 / p95 of {REQUESTS}, {CLIENTS} clients at once)"),
            format!("{p50:.1} / {p95:.1} ms, {} KiB", bytes / 1024),
            "goal ≤ 50 ms p95".to_string(),
        ));
    }
    rows.extend(paints(&console, &run_page).await?);
    Ok(rows)
}

/// First contentful paints of the board, the runs list and a run page in headless Chromium.
async fn paints(console: &str, run_page: &str) -> BenchResult<Vec<(String, String, String)>> {
    let Some(chromium) = Chromium::start().await? else {
        return Ok(vec![(
            "Console: first contentful paint in Chromium".into(),
            "not measured: /usr/bin/chromium and chromedriver are not installed".into(),
            String::new(),
        )]);
    };
    let mut rows = Vec::new();
    for (name, page, goal) in [
        ("board (50 of 200 pipelines)", "/", "goal ≤ 80 ms p50"),
        ("runs list", "/runs", ""),
        ("run page", run_page, ""),
    ] {
        let times = chromium
            .first_paints(&format!("{console}{page}"), PAINTS)
            .await?;
        let elements = chromium.elements().await?;
        let (p50, p95) = summary(times);
        rows.push((
            format!("Console in headless Chromium: first contentful paint, {name} (p50 / p95 of {PAINTS})"),
            format!("{p50:.0} / {p95:.0} ms, {elements} elements"),
            goal.to_string(),
        ));
    }
    Ok(rows)
}
