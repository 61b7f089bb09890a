//! The Kubernetes side: a client for the server's namespace and the Argo CD gate
//! ([`argocd`]). With the Job runner and the `credentialsSecret` lookup
//! (`credentials::SecretStore`), the only code that knows kube; it builds no git, forge or
//! credential types.

mod app_status;
pub(crate) mod argocd;
pub(crate) mod watch;

use std::time::Duration;

use kube::Client;
use tracing::{info, warn};

use crate::kind::ErrorKind;

/// Why a Kubernetes call failed. Messages never contain Secret data.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The API server could not be reached.
    #[error("Kubernetes API unreachable: {0}")]
    Unavailable(String),
    /// The API server refused phasegate's service account.
    #[error("Kubernetes refused phasegate's service account: {0}")]
    Forbidden(String),
    /// An object or a key in it is missing.
    #[error("{0}")]
    NotFound(String),
    /// The cluster answered, but not as needed (e.g. an Argo CD gate that timed out).
    #[error("{0}")]
    Precondition(String),
    /// Anything else the API server answered.
    #[error("Kubernetes API: {0}")]
    Other(String),
}

impl ClusterError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClusterError::Unavailable(_) => ErrorKind::Unavailable,
            ClusterError::Forbidden(_) => ErrorKind::PermissionDenied,
            ClusterError::NotFound(_) => ErrorKind::NotFound,
            ClusterError::Precondition(_) => ErrorKind::FailedPrecondition,
            ClusterError::Other(_) => ErrorKind::Internal,
        }
    }

    /// Classifies a kube error; `what` names the object for a 404.
    pub fn from_kube(e: kube::Error, what: &str) -> ClusterError {
        match e {
            kube::Error::Api(status) => match status.code {
                401 | 403 => ClusterError::Forbidden(status.message),
                404 => ClusterError::NotFound(format!("{what} not found")),
                _ => ClusterError::Other(format!("{} ({})", status.message, status.code)),
            },
            kube::Error::HyperError(e) => ClusterError::Unavailable(e.to_string()),
            kube::Error::Service(e) => ClusterError::Unavailable(e.to_string()),
            other => ClusterError::Other(other.to_string()),
        }
    }
}

/// A Kubernetes client and the namespace phasegate lives in.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// The server's namespace: Secrets are read here, and test Jobs run here by default.
    pub namespace: String,
    /// How long a test pod's transient problem (unschedulable, image pull, container
    /// creation) is waited out before the run gives up.
    pub pod_problem_tolerance: Duration,
}

/// Long enough for a cluster autoscaler to add a node and for the kubelet's image pull
/// back-off to retry a few times; short against the default 10m test timeout.
const POD_PROBLEM_TOLERANCE: Duration = Duration::from_secs(300);

impl Cluster {
    /// Connects to `api_url` without authentication (a local proxy or a test API server).
    pub fn at(api_url: &str, namespace: &str) -> Result<Cluster, ClusterError> {
        let uri = api_url
            .parse()
            .map_err(|e| ClusterError::Other(format!("API URL {api_url:?}: {e}")))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = namespace.to_string();
        let client = Client::try_from(config).map_err(|e| ClusterError::Other(e.to_string()))?;
        Ok(Cluster {
            client,
            namespace: namespace.to_string(),
            pod_problem_tolerance: POD_PROBLEM_TOLERANCE,
        })
    }

    /// The same cluster, with transient pod problems waited out for `tolerance`.
    pub fn with_pod_problem_tolerance(self, tolerance: Duration) -> Cluster {
        Cluster {
            pod_problem_tolerance: tolerance,
            ..self
        }
    }

    /// The in-cluster service account (or the local kubeconfig), if there is one: without it
    /// the job runner and `credentialsSecret` answer `FAILED_PRECONDITION`.
    pub async fn infer(namespace: Option<&str>) -> Option<Cluster> {
        match Client::try_default().await {
            Ok(client) => {
                let namespace = namespace
                    .map_or_else(|| client.default_namespace().to_string(), str::to_string);
                info!(namespace, "Kubernetes configured");
                Some(Cluster {
                    client,
                    namespace,
                    pod_problem_tolerance: POD_PROBLEM_TOLERANCE,
                })
            }
            Err(e) => {
                warn!(error = %e, "no Kubernetes configuration: the job runner and credentialsSecret are off");
                None
            }
        }
    }
}
