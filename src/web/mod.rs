//! The read-only web console (`--console-listen`): the phase board, the runs and each run's
//! page with its live test output. Server-rendered HTML (askama: compile-time-checked
//! templates that escape everything by default) and two small static files embedded in the
//! binary; every answer carries a strict Content-Security-Policy (no inline script or style).
//! Not to be confused with [`crate::console`], the `phasegate runs` command line.

mod board;
mod naming;
mod runs;
mod view;

use std::{path::PathBuf, sync::Arc};

use askama::Template;
use axum::{
    Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(crate) use view::{shown_repo, valid_commit_link};

use crate::history::History;

/// Scripts, styles and images only from the console itself; nothing inline, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const SCRIPT: &str = include_str!("static/console.js");
const STYLE: &str = include_str!("static/console.css");

/// What the pages are made from.
pub(crate) struct Console {
    history: Arc<History>,
    cache_dir: PathBuf,
    commit_link: Option<String>,
    /// Host names answered besides the loopback ones, lower-case.
    hosts: Vec<String>,
    versions: board::Versions,
    /// Cancelled at shutdown: ends the live streams, which would otherwise hold the server.
    stop: CancellationToken,
}

impl Console {
    /// A console over `history`, reading versions from the clones in `cache_dir`, linking
    /// commits with `commit_link` (`{repo}`, `{commit}`), answering on the loopback names and
    /// `hosts`.
    pub(crate) fn new(
        history: Arc<History>,
        cache_dir: PathBuf,
        commit_link: Option<String>,
        hosts: Vec<String>,
        stop: CancellationToken,
    ) -> Console {
        Console {
            history,
            cache_dir,
            commit_link,
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            versions: board::Versions::default(),
            stop,
        }
    }
}

/// The console's routes (GET only: it changes nothing).
pub(crate) fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(board_page))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/events", get(runs::events))
        .route(
            "/static/console.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .route(
            "/static/console.css",
            get(|| async { asset("text/css", STYLE) }),
        )
        .fallback(|| async { not_found("No such page.") })
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            own_host,
        ))
        .layer(axum::middleware::map_response(secure))
        .with_state(console)
}

/// Answers only requests addressed to the console's own names: a page of another site that a
/// DNS name rebound to 127.0.0.1 (a port-forward on the operator's machine) reads nothing.
/// 421 Misdirected Request otherwise.
async fn own_host(
    State(c): State<Arc<Console>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .map(|h| host_name(h).to_ascii_lowercase());
    let allowed = host.is_some_and(|h| {
        matches!(h.as_str(), "localhost" | "127.0.0.1" | "[::1]") || c.hosts.contains(&h)
    });
    if allowed {
        return next.run(request).await;
    }
    let mut r = page(Missing {
        title: "Not this host".into(),
        message: "This console answers only on localhost and the names in consoleHosts.",
    });
    *r.status_mut() = StatusCode::MISDIRECTED_REQUEST;
    r
}

/// The host of a `Host` header, without its port (`[::1]:8080` → `[::1]`).
fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() => name,
        _ => host,
    }
}

/// Serves the console on `listener` until `console`'s stop token is cancelled.
pub(crate) async fn serve(listener: TcpListener, console: Arc<Console>) -> std::io::Result<()> {
    let stop = console.stop.clone();
    crate::http::serve(
        listener,
        router(console),
        async move { stop.cancelled().await },
    )
    .await
}

async fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[derive(Template)]
#[template(path = "board.html", whitespace = "minimize")]
struct BoardPage {
    title: String,
    board: board::Board,
    /// The filter as typed, echoed into the form.
    repo: String,
    q: String,
    previous: Option<String>,
    next: Option<String>,
}

/// The board's query string (docs/console.md): `repo`, `q` (text in the app or path), `page`.
#[derive(Debug, Default, serde::Deserialize)]
struct BoardQuery {
    #[serde(default)]
    repo: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<usize>,
}

/// `GET /`.
async fn board_page(
    State(c): State<Arc<Console>>,
    axum::extract::Query(q): axum::extract::Query<BoardQuery>,
) -> Response {
    let filter = board::Filter {
        repo: view::bounded(&q.repo),
        text: view::bounded(&q.q),
    };
    let page_no = q.page.unwrap_or(1).clamp(1, 10_000);
    let console = c.clone();
    let (repo, text) = (filter.repo.clone(), filter.text.clone());
    // Reading versions opens git clones (blocking): off the async workers.
    let board = tokio::task::spawn_blocking(move || {
        board::board(
            &console
                .history
                .scan(|runs| runs.map(board::slim).collect::<Vec<_>>()),
            &filter,
            page_no,
            &console.cache_dir,
            &console.versions,
            crate::history::now_unix_ms(),
        )
    })
    .await;
    let Ok(board) = board else {
        return not_found("The board could not be read.");
    };
    let link = |n: usize| view::link("/", &[("repo", &repo), ("q", &text)], n);
    page(BoardPage {
        title: "Phases".into(),
        previous: (page_no > 1).then(|| link(page_no - 1)),
        next: board.more.then(|| link(page_no + 1)),
        board,
        repo,
        q: text,
    })
}

#[derive(Template)]
#[template(path = "missing.html")]
struct Missing<'a> {
    title: String,
    message: &'a str,
}

fn not_found(message: &str) -> Response {
    let mut r = page(Missing {
        title: "Not found".into(),
        message,
    });
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

fn page<T: Template>(t: T) -> Response {
    runs::html(&t)
}
