//! The gRPC adapter: Argo Events' custom trigger service ([`trigger`]) and the run history
//! service ([`runs`]) over the [`Pipeline`], plus gRPC health and server reflection (v1 and
//! v1alpha, so grpcurl 1.8 can `list` with no proto files), and the metrics listener.
//! The only module that knows tonic; [`status`] is the one place a `Status` is built from an
//! error.

mod runs;
mod tls;
mod trigger;

use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::{StreamExt, wrappers::TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tonic_health::ServingStatus;
use tracing::{info, warn};

use crate::{
    Error,
    config::{Config, ConfigError},
    kind::ErrorKind,
    metrics::{self, Metrics},
    notify::Notifier,
    pipeline::Pipeline,
    proto::{self, runs::runs_server::RunsServer, trigger_server::TriggerServer},
};

/// A spec, resource or payload is a few KiB; anything near this is a mistake or an attack, and
/// is refused before it is parsed.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Small gRPC messages must not wait for Nagle's algorithm (40 ms per answer on loopback).
fn no_delay(stream: std::io::Result<TcpStream>) -> std::io::Result<TcpStream> {
    if let Ok(s) = &stream {
        let _ = s.set_nodelay(true);
    }
    stream
}

/// Maps a crate error to the status code of docs/contract.md §6.
pub(crate) fn status(e: &Error) -> Status {
    status_of(e.kind(), e.to_string())
}

/// The status of an answer that is not a run's error (a failed test's verdict, an unknown run),
/// with the same code for the same kind as [`status`].
pub(crate) fn status_of(kind: ErrorKind, message: String) -> Status {
    let code = match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Internal => Code::Internal,
    };
    // A message may quote a remote, a forge or a test: no raw control character reaches the
    // Sensor's log.
    Status::new(code, crate::shown::escape_controls(&message).into_owned())
}

/// The sockets the server answers on.
pub struct Listeners {
    /// gRPC: the trigger, the run history, health and reflection.
    pub grpc: TcpListener,
    /// `/metrics`, `/healthz`, `/readyz`, if wanted.
    pub metrics: Option<TcpListener>,
    /// The read-only web console, if wanted.
    pub console: Option<TcpListener>,
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS files or the reflection service cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(String),
}

/// Once the runs are over, how long answers still being written may keep their connections.
const ANSWER_FLUSH: Duration = Duration::from_secs(1);

/// Serves until `shutdown` resolves. Then, at once: readiness (`/readyz` and gRPC health)
/// turns false, no new call is accepted, and `runs watch` streams end. Runs in flight get the
/// grace period; those still running after it are interrupted (recorded, and answered with
/// `UNAVAILABLE`). Connections still open a moment later are closed: tonic alone would wait
/// for every one of them, so one open stream could hold the pod past its grace period.
/// `config` gives the grace period, the TLS files and the console's settings; `pipeline` and
/// `notifier` (the run-end webhooks, if any) were built from it by `app`.
pub(crate) async fn serve(
    listeners: Listeners,
    pipeline: Arc<Pipeline>,
    metrics: Arc<Metrics>,
    config: Config,
    notifier: Option<Notifier>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let grace = config.shutdown_grace;
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = listeners.metrics.map(|l| {
        info!(addr = ?l.local_addr().ok(), "serving metrics and probes");
        tokio::spawn(metrics::serve(l, metrics.clone(), async {
            let _ = metrics_stopped.await;
        }))
    });
    let stop_console = CancellationToken::new();
    let console_task = listeners.console.map(|l| {
        info!(addr = ?l.local_addr().ok(), "serving the web console");
        let console = crate::web::Console::new(
            pipeline.history().clone(),
            config.cache_dir.clone(),
            config.console_commit_link.clone(),
            config.console_hosts.clone(),
            stop_console.clone(),
        );
        tokio::spawn(crate::web::serve(l, Arc::new(console)))
    });
    let notify_task =
        notifier.map(|n| tokio::spawn(n.deliver_all(pipeline.history().ended(), metrics.clone())));
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<TriggerServer<trigger::TriggerService>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ConfigError(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ConfigError(format!("reflection: {e}")))?;
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    info!(addr = ?listeners.grpc.local_addr().ok(), tls = tls.is_some(), "serving the Argo Events custom trigger");
    metrics.set_ready(true);
    let stopping = CancellationToken::new();
    let on_signal = {
        let (stopping, metrics, health) = (stopping.clone(), metrics.clone(), health.clone());
        async move {
            shutdown.await;
            metrics.set_ready(false);
            health
                .set_not_serving::<TriggerServer<trigger::TriggerService>>()
                .await;
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            info!(grace = %humantime::format_duration(grace), "shutting down: not ready, watch streams end, runs in flight get the grace period");
            stopping.cancel();
        }
    };
    let router = tonic::transport::Server::builder()
        .add_service(
            TriggerServer::new(trigger::TriggerService::new(pipeline.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(RunsServer::new(runs::RunsService::new(
            pipeline.history().clone(),
            stopping.clone(),
        )))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let serving = async {
        match tls {
            Some(acceptor) => {
                router
                    .serve_with_incoming_shutdown(
                        tls::incoming(listeners.grpc, acceptor),
                        on_signal,
                    )
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(
                        TcpListenerStream::new(listeners.grpc).map(no_delay),
                        on_signal,
                    )
                    .await
            }
        }
    };
    let drained = async {
        stopping.cancelled().await;
        pipeline.drain(grace).await;
    };
    tokio::pin!(serving, drained);
    let served = tokio::select! {
        served = &mut serving => {
            // Every connection closed (or the listener failed): the runs may still be going.
            stopping.cancel();
            drained.await;
            served
        }
        () = &mut drained => match tokio::time::timeout(ANSWER_FLUSH, &mut serving).await {
            Ok(served) => served,
            Err(_) => {
                warn!("closing the connections still open after the grace period");
                Ok(())
            }
        },
    };
    metrics.set_ready(false);
    let _ = stop_metrics.send(());
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    // The console is read-only: it stops with the server, its live streams with it.
    stop_console.cancel();
    if let Some(task) = console_task {
        let _ = task.await;
    }
    // Runs that ended during the drain are handed on; posts already started go on detached.
    tokio::task::yield_now().await;
    if let Some(task) = notify_task {
        task.abort();
    }
    served.map_err(|e| ServeError::Grpc(e.to_string()))
}
