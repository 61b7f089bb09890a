//! A client that drives phasegate exactly as an Argo Events Sensor drives a custom trigger
//! (argo-events `pkg/sensors/triggers/custom-trigger`): spec map as Go-style YAML →
//! FetchResource → parameters applied to the JSON at sjson `dest` paths → Execute(payload) →
//! ApplyPolicy. Used by `phasegate demo` and the tests.

use std::collections::BTreeMap;

use serde_json::Value;
use tonic::{Status, transport::Channel};

use crate::proto::{
    ApplyPolicyRequest, ExecuteRequest, FetchResourceRequest, trigger_client::TriggerClient,
};

/// One `custom.parameters` entry: a value written at a `dest` path of the resource.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub dest: String,
    pub value: Value,
}

/// What each step of one trigger firing returned.
#[derive(Debug, Clone)]
pub struct Firing {
    /// FetchResource's answer.
    pub resource: Value,
    /// The resource after parameters, as sent to Execute.
    pub executed: Value,
    /// Execute's answer.
    pub response: Value,
    /// ApplyPolicy's message (its status is the `Err` of [`SensorClient::fire`]).
    pub policy_message: String,
}

/// Where a firing stopped, and with what status.
#[derive(Debug)]
pub struct Failed {
    pub step: &'static str,
    pub status: Status,
    /// Execute's answer, when ApplyPolicy was the step that failed.
    pub response: Option<Value>,
}

/// A Sensor-like caller of the trigger service.
#[derive(Clone)]
pub struct SensorClient {
    client: TriggerClient<Channel>,
}

impl SensorClient {
    /// Connects to `url` (`http://host:port`).
    pub async fn connect(url: String) -> Result<SensorClient, tonic::transport::Error> {
        Ok(SensorClient {
            client: TriggerClient::connect(url).await?,
        })
    }

    /// Fires the trigger once, as the Sensor does for one event.
    pub async fn fire(
        &self,
        spec: &BTreeMap<String, String>,
        parameters: &[Parameter],
        payload: &[u8],
    ) -> Result<Firing, Failed> {
        let mut client = self.client.clone();
        let fail = |step| {
            move |status| Failed {
                step,
                status,
                response: None,
            }
        };
        let yaml = go_yaml(spec);
        let resource = client
            .fetch_resource(FetchResourceRequest {
                resource: yaml.into_bytes(),
            })
            .await
            .map_err(fail("FetchResource"))?
            .into_inner()
            .resource;
        let resource: Value = serde_json::from_slice(&resource)
            .map_err(|e| fail("FetchResource")(Status::internal(e.to_string())))?;
        let mut executed = resource.clone();
        for p in parameters {
            crate::spec::set_json_path(&mut executed, &p.dest, p.value.clone());
        }
        let response = client
            .execute(ExecuteRequest {
                resource: executed.to_string().into_bytes(),
                payload: payload.to_vec(),
            })
            .await
            .map_err(fail("Execute"))?
            .into_inner()
            .response;
        let parsed: Value = serde_json::from_slice(&response)
            .map_err(|e| fail("Execute")(Status::internal(e.to_string())))?;
        let policy = client
            .apply_policy(ApplyPolicyRequest { request: response })
            .await
            .map_err(|status| Failed {
                step: "ApplyPolicy",
                status,
                response: Some(parsed.clone()),
            })?
            .into_inner();
        Ok(Firing {
            resource,
            executed,
            response: parsed,
            policy_message: policy.message,
        })
    }
}

/// The spec map as Go's YAML encoder writes a `map[string]string`: block style, keys sorted,
/// ambiguous values quoted, multi-line values as `|-`.
pub fn go_yaml(spec: &BTreeMap<String, String>) -> String {
    if spec.is_empty() {
        return "{}\n".into();
    }
    serde_yaml_ng::to_string(spec).expect("a map of strings always serialises")
}
