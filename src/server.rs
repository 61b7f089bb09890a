//! The gRPC adapter: Argo Events' custom trigger service over the [`Pipeline`], plus gRPC
//! health and server reflection (v1 and v1alpha, so grpcurl 1.8 can `list` with no proto).
//! The only module that builds a `tonic::Status`.

use std::{future::Future, sync::Arc};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};
use tracing::{info, warn};

use crate::{
    Error, ErrorKind,
    config::{Config, ConfigError},
    outcome,
    pipeline::Pipeline,
    proto::{
        self, ApplyPolicyRequest, ApplyPolicyResponse, ExecuteRequest, ExecuteResponse,
        FetchResourceRequest, FetchResourceResponse,
        trigger_server::{Trigger, TriggerServer},
    },
};

/// The custom trigger service.
pub struct TriggerService {
    pipeline: Arc<Pipeline>,
}

/// Maps a crate error to the status code of CONTRACT §6. The one place a `Status` is built from
/// an error.
pub fn status(e: &Error) -> Status {
    let code = match e.kind() {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    };
    Status::new(code, e.to_string())
}

#[tonic::async_trait]
impl Trigger for TriggerService {
    async fn fetch_resource(
        &self,
        request: Request<FetchResourceRequest>,
    ) -> Result<Response<FetchResourceResponse>, Status> {
        let resource = self
            .pipeline
            .fetch_resource(&request.into_inner().resource)
            .map_err(|e| status(&e))?;
        Ok(Response::new(FetchResourceResponse { resource }))
    }

    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        let ExecuteRequest { resource, payload } = request.into_inner();
        let report = self
            .pipeline
            .execute(&resource, &payload)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(ExecuteResponse {
            response: report.to_json(),
        }))
    }

    async fn apply_policy(
        &self,
        request: Request<ApplyPolicyRequest>,
    ) -> Result<Response<ApplyPolicyResponse>, Status> {
        match outcome::verdict(&request.into_inner().request) {
            Ok(Ok(message)) => Ok(Response::new(ApplyPolicyResponse {
                success: true,
                message,
            })),
            // Not `success: false`: the Sensor ignores it; only a status fails the trigger.
            Ok(Err(reason)) => Err(Status::failed_precondition(reason)),
            Err(bad) => Err(Status::invalid_argument(bad)),
        }
    }
}

/// Builds the pipeline a configuration describes.
pub fn pipeline(config: &Config) -> Result<Pipeline, ConfigError> {
    crate::git::configure_process(config.git.ca_file.as_deref())
        .map_err(|e| ConfigError(e.to_string()))?;
    let policy = config.policy()?;
    if policy.is_open() {
        warn!("no policy configured: any Sensor may promote any repository, transition and image");
    }
    Ok(Pipeline::new(
        policy,
        config.git_settings()?,
        config.max_runs,
    ))
}

/// Serves the trigger on `listener` until `shutdown` resolves, then lets runs in flight finish
/// within the grace period, so no promotion is left half done.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> crate::Result<()> {
    let grace = config.shutdown_grace()?;
    let pipeline = Arc::new(pipeline(&config)?);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<TriggerServer<TriggerService>>().await;
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
    let addr = listener.local_addr().ok();
    info!(addr = ?addr, "serving the Argo Events custom trigger");
    let served = tonic::transport::Server::builder()
        .add_service(TriggerServer::new(TriggerService {
            pipeline: pipeline.clone(),
        }))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    info!("stopped accepting; waiting for runs in flight");
    pipeline.drain(grace).await;
    served.map_err(|e| Error::Internal(format!("gRPC server: {e}")))
}
