//! The runs pages: the list with filters and paging, one run's page, and its live test output
//! as server-sent events (the output so far first, then each line as it comes).

use std::{convert::Infallible, sync::Arc};

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{
        Html, IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{Console, naming::app_name, page, view};
use crate::history::now_unix_ms;
use crate::history::{RunEvent, RunFilter, RunRecord};

/// Runs per page of the list.
const PAGE_SIZE: usize = 50;

/// The list's query string.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    repo: String,
    #[serde(default)]
    phase: String,
    #[serde(default)]
    outcome: String,
    /// Text in the app or the values path.
    #[serde(default)]
    q: String,
    #[serde(default)]
    version: String,
    /// The start of the tested or the promotion commit.
    #[serde(default)]
    commit: String,
    /// The start of the run id.
    #[serde(default)]
    run: String,
    #[serde(default)]
    page: Option<usize>,
}

impl ListQuery {
    /// Every filter bounded ([`view::bounded`]): they are echoed into the page and compared
    /// with every run.
    fn bounded(self) -> ListQuery {
        ListQuery {
            repo: view::bounded(&self.repo),
            phase: view::bounded(&self.phase),
            outcome: view::bounded(&self.outcome),
            q: view::bounded(&self.q),
            version: view::bounded(&self.version),
            commit: view::bounded(&self.commit),
            run: view::bounded(&self.run),
            page: self.page,
        }
    }

    /// The filters as (name, value), in the order of the form.
    fn pairs(&self) -> [(&'static str, &str); 7] {
        [
            ("q", &self.q),
            ("repo", &self.repo),
            ("phase", &self.phase),
            ("outcome", &self.outcome),
            ("version", &self.version),
            ("commit", &self.commit),
            ("run", &self.run),
        ]
    }
}

/// A row of the list.
pub(super) struct RunRow {
    pub id: String,
    pub status: String,
    pub class: &'static str,
    /// Why it failed, in one line (ApplyPolicy's for `tests-failed`).
    pub reason: Option<String>,
    pub app: String,
    pub transition: String,
    pub versions: String,
    /// When it started: how long ago, and the moment.
    pub ago: String,
    pub started: String,
    pub took: String,
    pub repo: String,
    pub path: String,
    /// The values file the run writes (the path with the target phase).
    pub file: String,
}

impl RunRow {
    fn of(r: &RunRecord, now_ms: i64) -> RunRow {
        RunRow {
            id: r.id.clone(),
            status: view::status(r),
            class: view::class(r),
            reason: view::reason(r),
            app: app_name(&r.path),
            transition: format!("{} → {}", r.source_phase, r.target_phase),
            versions: view::versions(r),
            ago: view::ago(r.started_unix_ms, now_ms),
            started: view::when(r.started_unix_ms),
            took: view::duration(r),
            repo: view::shown_repo(&r.repo),
            path: r.path.clone(),
            file: r.path.replace("{phase}", &r.target_phase),
        }
    }
}

#[derive(Template)]
#[template(path = "runs.html", whitespace = "minimize")]
struct RunsPage {
    title: String,
    rows: Vec<RunRow>,
    /// The filters as typed, echoed into the form.
    query: ListQuery,
    /// (value, shown, selected) of each filter's choices.
    repos: Vec<(String, String, bool)>,
    phases: Vec<(String, bool)>,
    outcomes: Vec<(String, bool)>,
    /// Runs that match, the first and last shown (1-based).
    total: usize,
    from: usize,
    to: usize,
    filtered: bool,
    previous: Option<String>,
    next: Option<String>,
    page: usize,
}

const OUTCOMES: [&str; 9] = [
    "promoted",
    "pr-opened",
    "pr-updated",
    "already-promoted",
    "superseded",
    "dry-run",
    "tests-failed",
    "error",
    "accepted",
];

/// `GET /runs`.
pub(super) async fn list(State(c): State<Arc<Console>>, Query(q): Query<ListQuery>) -> Response {
    let q = q.bounded();
    let page_no = q.page.unwrap_or(1).clamp(1, 10_000);
    let filter = RunFilter {
        repo: q.repo.clone(),
        phase: q.phase.clone(),
        outcome: q.outcome.clone(),
        text: q.q.clone(),
        version: q.version.clone(),
        commit: q.commit.clone(),
        run: q.run.clone(),
        offset: (page_no - 1).saturating_mul(PAGE_SIZE),
        limit: PAGE_SIZE,
    };
    let (total, runs) = c.history.find(&filter);
    // The filters' choices: a few strings of every run, read under the history's lock.
    let (repos, phases) = c.history.scan(|runs| {
        let mut repos = std::collections::BTreeSet::new();
        let mut phases = std::collections::BTreeSet::new();
        for r in runs {
            repos.insert(r.repo.clone());
            phases.insert(r.source_phase.clone());
            phases.insert(r.target_phase.clone());
        }
        (repos, phases)
    });
    let link = |page: usize| view::link("/runs", &q.pairs(), page);
    let now = now_unix_ms();
    page(RunsPage {
        title: "Runs".into(),
        rows: runs.iter().map(|r| RunRow::of(r, now)).collect(),
        repos: repos
            .into_iter()
            .map(|r| {
                let selected = r == q.repo;
                (view::shown_repo(&r), r, selected)
            })
            .map(|(shown, r, selected)| (r, shown, selected))
            .collect(),
        phases: phases
            .into_iter()
            .map(|p| {
                let selected = p == q.phase;
                (p, selected)
            })
            .collect(),
        outcomes: OUTCOMES
            .iter()
            .map(|o| (o.to_string(), *o == q.outcome))
            .collect(),
        from: if runs.is_empty() {
            0
        } else {
            filter.offset + 1
        },
        to: filter.offset + runs.len(),
        filtered: q.pairs().iter().any(|(_, v)| !v.is_empty()),
        previous: (page_no > 1).then(|| link(page_no - 1)),
        next: (total > filter.offset + runs.len()).then(|| link(page_no + 1)),
        total,
        page: page_no,
        query: q,
    })
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    title: String,
    run: RunRow,
    branch: String,
    source_commit: String,
    /// The tested commit on the forge, when the repository URL or `consoleCommitLink` says.
    source_commit_url: Option<String>,
    /// What the Argo CD gate decided of the source phase, when there was one.
    health: Option<String>,
    timeline: Vec<(String, String)>,
    error: Option<String>,
    commit: Option<String>,
    commit_url: Option<String>,
    /// Pull-request mode: the pull request's number, and its URL when it is an http(s) link.
    pull_request: Option<(u64, String, Option<String>)>,
    edit: Option<crate::diff::Edit>,
    answer: Option<String>,
    log: String,
    /// The live output's events URL while the run goes on.
    events: Option<String>,
}

/// `GET /runs/{id}`.
pub(super) async fn show(State(c): State<Arc<Console>>, Path(id): Path<String>) -> Response {
    let Some(watch) = c.history.watch(&id, 0) else {
        return super::not_found(&format!("No run {id} in the history."));
    };
    let r = &watch.run;
    let report = r.report.as_ref();
    let commit = report.and_then(|x| x.commit.clone());
    let log = match (&watch.events, report.and_then(|x| x.test.as_ref())) {
        (Some(_), _) => watch.lines.iter().map(|l| format!("{l}\n")).collect(),
        (None, Some(test)) => test.log.clone(),
        (None, None) => String::new(),
    };
    let mut timeline = vec![("queued".to_string(), view::when(r.started_unix_ms))];
    timeline.extend(r.timeline.iter().map(|m| {
        let since = u64::try_from(m.at_unix_ms - r.started_unix_ms).unwrap_or(0);
        (
            m.stage.as_str().to_string(),
            format!("+{}", view::took(since)),
        )
    }));
    page(RunPage {
        title: format!("Run {}", r.id),
        run: RunRow::of(r, now_unix_ms()),
        branch: r.branch.clone(),
        source_commit_url: view::forge_commit_link(
            c.commit_link.as_deref(),
            &r.repo,
            &r.source_commit,
        ),
        source_commit: r.source_commit.clone(),
        health: r.health.clone(),
        timeline,
        error: r.error.clone(),
        commit_url: commit
            .as_deref()
            .and_then(|sha| view::forge_commit_link(c.commit_link.as_deref(), &r.repo, sha)),
        commit,
        pull_request: report.and_then(|x| x.pull_request.as_ref()).map(|pr| {
            (
                pr.number,
                pr.url.clone(),
                view::valid_link(&pr.url).then(|| pr.url.clone()),
            )
        }),
        edit: r.edit.clone(),
        answer: report.and_then(|x| serde_json::to_string_pretty(x).ok()),
        log,
        events: watch.events.as_ref().map(|_| {
            format!(
                "/runs/{}/events?from={}",
                r.id,
                watch.first + watch.lines.len()
            )
        }),
    })
}

/// Where the live output resumes.
#[derive(Debug, Default, Deserialize)]
pub(super) struct EventsQuery {
    #[serde(default)]
    from: usize,
}

/// `GET /runs/{id}/events`: `log` events (numbered, so a reconnecting browser resumes after
/// `Last-Event-ID`), `stage` events, and one `end` event with the outcome.
pub(super) async fn events(
    State(c): State<Arc<Console>>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(0, |last| last + 1);
    let Some(watch) = c.history.watch(&id, q.from.max(resume)) else {
        return super::not_found(&format!("No run {id} in the history."));
    };
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let mut n = watch.first;
        for line in watch.lines {
            if tx.send(log_event(n, &line)).await.is_err() {
                return;
            }
            n += 1;
        }
        let Some(mut events) = watch.events else {
            let _ = tx.send(end_event(&watch.run)).await;
            return;
        };
        loop {
            let event = match events.recv().await {
                Ok(RunEvent::Log(line)) => {
                    n += 1;
                    log_event(n - 1, &line)
                }
                Ok(RunEvent::Stage(stage)) => Event::default().event("stage").data(stage.as_str()),
                Ok(RunEvent::Finished(run)) => end_event(&run),
                // A slow browser skips lines; the end still arrives.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    // The stream ends with the server's shutdown too: an open page must not hold the server.
    let stop = c.stop.clone();
    let stream = ReceiverStream::new(rx)
        .map(Ok::<_, Infallible>)
        .take_until(async move { stop.cancelled().await });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn log_event(n: usize, line: &str) -> Event {
    Event::default().event("log").id(n.to_string()).data(line)
}

fn end_event(run: &RunRecord) -> Event {
    Event::default().event("end").data(view::status(run))
}

/// The page's HTML.
pub(super) fn html<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console page failed to render");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "page failed to render",
            )
                .into_response()
        }
    }
}
