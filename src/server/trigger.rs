//! The custom trigger service of Argo Events (`triggers.Trigger`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{status, status_of};
use crate::{
    kind::ErrorKind,
    outcome::{self, Verdict},
    pipeline::Pipeline,
    proto::{
        ApplyPolicyRequest, ApplyPolicyResponse, ExecuteRequest, ExecuteResponse,
        FetchResourceRequest, FetchResourceResponse, trigger_server::Trigger,
    },
};

/// The custom trigger service.
pub(super) struct TriggerService {
    pipeline: Arc<Pipeline>,
}

impl TriggerService {
    /// The service over `pipeline`.
    pub(super) fn new(pipeline: Arc<Pipeline>) -> TriggerService {
        TriggerService { pipeline }
    }
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
        let verdict =
            outcome::verdict(&request.into_inner().request).map_err(|bad| status(&bad.into()))?;
        match verdict {
            Verdict::Pass(message) => Ok(Response::new(ApplyPolicyResponse {
                success: true,
                message,
            })),
            // Not `success: false`: the Sensor ignores it; only a status fails the trigger.
            Verdict::Fail(reason) => Err(status_of(ErrorKind::FailedPrecondition, reason)),
        }
    }
}
