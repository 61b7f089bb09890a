//! The run history service (`phasegate.v1.Runs`): list, get, and watch a run live.

use std::{pin::Pin, sync::Arc};

use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::status_of;
use crate::{
    history::{History, RunEvent, RunFilter, RunRecord},
    kind::ErrorKind,
    proto::runs::{
        GetRunRequest, ListRunsRequest, ListRunsResponse, Run, WatchRunRequest, run_event::Event,
        runs_server::Runs,
    },
};

/// The run history service.
pub(super) struct RunsService {
    history: Arc<History>,
    /// Cancelled on SIGTERM: watch streams end then, so they do not hold the server open.
    stopping: CancellationToken,
}

impl RunsService {
    /// The service over `history`; its watch streams end when `stopping` is cancelled.
    pub(super) fn new(history: Arc<History>, stopping: CancellationToken) -> RunsService {
        RunsService { history, stopping }
    }

    fn find(&self, id: &str) -> Result<RunRecord, Status> {
        self.history.get(id).ok_or_else(|| no_such_run(id))
    }
}

/// `GetRun` or `WatchRun` named a run the history does not hold.
fn no_such_run(id: &str) -> Status {
    status_of(ErrorKind::NotFound, format!("no run {id:?} in the history"))
}

/// A `runs watch` stream ends because the server is stopping.
fn shutting_down() -> Status {
    status_of(
        ErrorKind::Unavailable,
        "phasegate is shutting down; the run goes on within its grace period: watch it again \
         after the restart"
            .into(),
    )
}

type EventStream = Pin<Box<dyn Stream<Item = Result<crate::proto::runs::RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Runs for RunsService {
    async fn list(
        &self,
        request: Request<ListRunsRequest>,
    ) -> Result<Response<ListRunsResponse>, Status> {
        let r = request.into_inner();
        let filter = RunFilter {
            repo: r.repo,
            phase: r.phase,
            outcome: r.outcome,
            limit: usize::try_from(r.limit).unwrap_or(usize::MAX),
            ..RunFilter::default()
        };
        let runs = self.history.list(&filter).iter().map(to_proto).collect();
        Ok(Response::new(ListRunsResponse { runs }))
    }

    async fn get(&self, request: Request<GetRunRequest>) -> Result<Response<Run>, Status> {
        Ok(Response::new(to_proto(
            &self.find(&request.into_inner().id)?,
        )))
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<WatchRunRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let id = request.into_inner().id;
        let watch = self.history.watch(&id, 0).ok_or_else(|| no_such_run(&id))?;
        let (tx, rx) = mpsc::channel(64);
        let send = |event| crate::proto::runs::RunEvent { event: Some(event) };
        let Some(mut events) = watch.events else {
            let _ = tx
                .send(Ok(send(Event::Finished(to_proto(&watch.run)))))
                .await;
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        };
        let (run, lines) = (watch.run, watch.lines);
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            // Attaching mid-run: the current stage and the output so far, then what follows.
            let so_far = std::iter::once(Event::Stage(run.stage.as_str().into()))
                .chain(lines.into_iter().map(Event::LogLine));
            for event in so_far {
                if tx.send(Ok(send(event))).await.is_err() {
                    return;
                }
            }
            loop {
                let received = tokio::select! {
                    received = events.recv() => received,
                    () = stopping.cancelled() => {
                        let _ = tx.send(Err(shutting_down())).await;
                        break;
                    }
                };
                let event = match received {
                    Ok(RunEvent::Stage(stage)) => Event::Stage(stage.as_str().into()),
                    Ok(RunEvent::Log(line)) => Event::LogLine(line),
                    Ok(RunEvent::Finished(run)) => Event::Finished(to_proto(&run)),
                    // A slow watcher skips lines; the end still arrives.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                };
                let last = matches!(event, Event::Finished(_));
                if tx.send(Ok(send(event))).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn to_proto(r: &RunRecord) -> Run {
    let report = r.report.as_ref();
    Run {
        id: r.id.clone(),
        repo: r.repo.clone(),
        branch: r.branch.clone(),
        path: r.path.clone(),
        source_phase: r.source_phase.clone(),
        target_phase: r.target_phase.clone(),
        source_commit: r.source_commit.clone(),
        stage: r.stage.as_str().into(),
        outcome: r.outcome(),
        version: r.version().unwrap_or_default().to_string(),
        previous: r.previous().unwrap_or_default().to_string(),
        commit: report.and_then(|x| x.commit.clone()).unwrap_or_default(),
        error: r.error.clone().unwrap_or_default(),
        report_json: report
            .map(|x| String::from_utf8_lossy(&x.to_json()).into_owned())
            .unwrap_or_default(),
        started_unix_ms: r.started_unix_ms,
        duration_ms: report.map_or(0, |x| i64::try_from(x.duration_ms).unwrap_or(i64::MAX)),
    }
}
