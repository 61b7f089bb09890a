//! `phasegate runs`: what an operator runs from a shell to see what happened to a promotion —
//! a table of recent runs, and `watch` following one run live until it ends.

use std::{io::Write, time::Instant};

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::proto::runs::{
    ListRunsRequest, Run, WatchRunRequest, run_event::Event, runs_client::RunsClient,
};

use crate::shown::escape_controls;

/// Why `phasegate runs` could not show what was asked; each says it in one line.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// `--server` is not an address phasegate can dial.
    #[error(
        "--server {server:?}: {problem} (expected HOST:PORT, http://HOST:PORT or https://HOST:PORT)"
    )]
    BadAddress { server: String, problem: String },
    /// The server could not be reached (refused, unknown host, TLS).
    #[error("cannot reach the phasegate server at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    /// The server answered with an error status.
    #[error("the phasegate server at {server} answered {code}: {message}")]
    Refused {
        server: String,
        code: String,
        message: String,
    },
    /// The watch stream ended before the run did (the server is shutting down).
    #[error(
        "the phasegate server at {0} ended the watch before the run finished (it may be shutting down)"
    )]
    WatchEnded(String),
    /// Writing to the terminal failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

type ConsoleResult<T> = Result<T, ConsoleError>;

/// The server's address as people type it, like grpcurl and the Sensor's `serverURL`:
/// `HOST:PORT` or `http://HOST:PORT` for plaintext, `https://HOST:PORT` for TLS (verified
/// against the system's roots; `SSL_CERT_FILE` adds a bundle).
fn endpoint(server: &str) -> ConsoleResult<(String, Endpoint)> {
    let bad = |problem: &str| ConsoleError::BadAddress {
        server: server.to_string(),
        problem: problem.to_string(),
    };
    let trimmed = server.trim();
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        Some((scheme, _)) => return Err(bad(&format!("scheme {scheme:?} is not http or https"))),
        None => ("http", trimmed),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(bad("no host"));
    }
    let url = format!("{scheme}://{rest}");
    let parsed = url::Url::parse(&url).map_err(|e| bad(&e.to_string()))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if parsed.path() != "/" || parsed.query().is_some() {
        return Err(bad("a server address has no path"));
    }
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| bad(&chain(&e)))?;
    if parsed.scheme() == "https" {
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().with_native_roots())
            .map_err(|e| bad(&chain(&e)))?;
    }
    Ok((url, endpoint))
}

async fn client(server: &str) -> ConsoleResult<(String, RunsClient<Channel>)> {
    let (url, endpoint) = endpoint(server)?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ConsoleError::Unreachable {
            server: url.clone(),
            reason: chain(&e),
        })?;
    Ok((url, RunsClient::new(channel)))
}

/// An error status as one line naming the server.
fn refused(server: &str, status: &tonic::Status) -> ConsoleError {
    let message = status.message().lines().next().unwrap_or_default();
    ConsoleError::Refused {
        server: server.to_string(),
        code: format!("{:?}", status.code()),
        message: if message.is_empty() {
            std::error::Error::source(status)
                .map(chain)
                .unwrap_or_default()
        } else {
            message.to_string()
        },
    }
}

/// An error with its causes on one line (`transport error` alone says nothing), each cause
/// once.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) && text != "transport error" {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// Prints recent runs as a table, newest first.
pub async fn list(
    server: &str,
    filter: ListRunsRequest,
    out: &mut (dyn Write + Send),
) -> ConsoleResult<()> {
    let (url, mut client) = client(server).await?;
    let runs = client
        .list(filter)
        .await
        .map_err(|s| refused(&url, &s))?
        .into_inner()
        .runs;
    row(
        out,
        [
            "RUN",
            "OUTCOME",
            "PHASES",
            "COMMIT",
            "VERSION",
            "STARTED",
            "REPO PATH",
        ],
    )?;
    for r in &runs {
        let phases = format!("{}->{}", r.source_phase, r.target_phase);
        let outcome = if r.outcome.is_empty() {
            r.stage.as_str()
        } else {
            r.outcome.as_str()
        };
        let version = if r.previous.is_empty() {
            r.version.clone()
        } else {
            format!("{}->{}", r.previous, r.version)
        };
        let started = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(u64::try_from(r.started_unix_ms).unwrap_or(0)),
        )
        .to_string();
        let commit: String = r.source_commit.chars().take(10).collect();
        let where_ = format!("{} {}", r.repo, r.path);
        row(
            out,
            [
                &r.id,
                outcome,
                &phases,
                &commit,
                &version,
                &started[11..19],
                &where_,
            ],
        )?;
    }
    if runs.is_empty() {
        writeln!(out, "(no runs)")?;
    }
    Ok(())
}

/// One line of `phasegate runs`; every column comes from the server, so none may hold a
/// control character raw ([`escape_controls`]).
fn row(out: &mut (dyn Write + Send), c: [&str; 7]) -> std::io::Result<()> {
    let [run, outcome, phases, commit, version, started, place] = c.map(escape_controls);
    writeln!(
        out,
        "{run:<18} {outcome:<16} {phases:<18} {commit:<10} {version:<12} {started:<9} {place}"
    )
}

/// Follows run `id` live, printing its stages and test output; returns the finished run.
pub async fn watch(server: &str, id: &str, out: &mut (dyn Write + Send)) -> ConsoleResult<Run> {
    let (url, mut client) = client(server).await?;
    let mut events = client
        .watch(WatchRunRequest { id: id.to_string() })
        .await
        .map_err(|s| refused(&url, &s))?
        .into_inner();
    let started = Instant::now();
    while let Some(event) = events.message().await.map_err(|s| refused(&url, &s))? {
        let at = started.elapsed().as_secs_f64();
        match event.event {
            Some(Event::Stage(stage)) => {
                writeln!(out, "[{at:6.1}s] ▶ {}", escape_controls(&stage))?;
            }
            // The test's output: it may try to drive the operator's terminal.
            Some(Event::LogLine(line)) => {
                writeln!(out, "[{at:6.1}s]   │ {}", escape_controls(&line))?;
            }
            Some(Event::Finished(run)) => {
                let result = if run.outcome == "error" {
                    format!("error: {}", run.error)
                } else {
                    run.outcome.clone()
                };
                writeln!(out, "[{at:6.1}s] ■ {}", escape_controls(&result))?;
                if !run.commit.is_empty() {
                    let promoted = format!(
                        "promoted {} -> {} in {}",
                        run.previous, run.version, run.commit
                    );
                    writeln!(out, "           {}", escape_controls(&promoted))?;
                }
                return Ok(run);
            }
            None => {}
        }
    }
    Err(ConsoleError::WatchEnded(url))
}
