//! `phasegate runs`: what an operator runs from a shell to see what happened to a promotion —
//! a table of recent runs, and `watch` following one run live until it ends.

use std::{io::Write, time::Instant};

use tonic::transport::Channel;

use crate::proto::runs::{
    ListRunsRequest, Run, WatchRunRequest, run_event::Event, runs_client::RunsClient,
};

type ConsoleResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn client(server: &str) -> ConsoleResult<RunsClient<Channel>> {
    Ok(RunsClient::connect(server.to_string()).await?)
}

/// Prints recent runs as a table, newest first.
pub async fn list(
    server: &str,
    filter: ListRunsRequest,
    out: &mut (dyn Write + Send),
) -> ConsoleResult<()> {
    let runs = client(server).await?.list(filter).await?.into_inner().runs;
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

fn row(out: &mut (dyn Write + Send), c: [&str; 7]) -> std::io::Result<()> {
    let [run, outcome, phases, commit, version, started, place] = c;
    writeln!(
        out,
        "{run:<18} {outcome:<16} {phases:<18} {commit:<10} {version:<12} {started:<9} {place}"
    )
}

/// Follows run `id` live, printing its stages and test output; returns the finished run.
pub async fn watch(server: &str, id: &str, out: &mut (dyn Write + Send)) -> ConsoleResult<Run> {
    let mut events = client(server)
        .await?
        .watch(WatchRunRequest { id: id.to_string() })
        .await?
        .into_inner();
    let started = Instant::now();
    while let Some(event) = events.message().await? {
        let at = started.elapsed().as_secs_f64();
        match event.event {
            Some(Event::Stage(stage)) => writeln!(out, "[{at:6.1}s] ▶ {stage}")?,
            Some(Event::LogLine(line)) => writeln!(out, "[{at:6.1}s]   │ {line}")?,
            Some(Event::Finished(run)) => {
                let result = if run.outcome == "error" {
                    format!("error: {}", run.error)
                } else {
                    run.outcome.clone()
                };
                writeln!(out, "[{at:6.1}s] ■ {result}")?;
                if !run.commit.is_empty() {
                    writeln!(
                        out,
                        "           promoted {} -> {} in {}",
                        run.previous, run.version, run.commit
                    )?;
                }
                return Ok(run);
            }
            None => {}
        }
    }
    Err("the server ended the watch before the run finished".into())
}
