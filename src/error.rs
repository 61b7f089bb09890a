//! The run error: what a caller of `Execute` (or `phasegate promote`) sees when a run cannot
//! end with an outcome. One enum wrapping each module's error; its [`ErrorKind`] is what the
//! gRPC adapter and the CLI turn into status codes and exit codes. Start-up failures are not
//! here: they are `app::StartError`.

use crate::{
    cluster::ClusterError, forge::ForgeError, git::GitError, kind::ErrorKind, policy::PolicyError,
    runner::RunnerError, spec::SpecError,
};

/// Every failure phasegate reports. Messages never contain a credential.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec, resource or payload is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The server policy refuses the run.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Reading, editing or pushing the GitOps repository failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// A test runner could not run (not: the tests failed, which is an outcome).
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// A Kubernetes call failed (Secret lookup, Argo CD gate).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A forge call failed (pull request, commit status).
    #[error(transparent)]
    Forge(#[from] ForgeError),
    /// The request needs a part of the server that is not configured.
    #[error("{0}")]
    Unconfigured(Need),
    /// The server shut down before the run ended: its grace period was over.
    #[error(
        "the server shut down before the run ended (shutdownGrace was over); a redelivered \
         event runs it again"
    )]
    Interrupted,
    /// `maxQueuedRuns` runs already wait for a slot: the run was not queued (nor recorded).
    #[error(
        "{0} runs already wait for a slot (maxQueuedRuns): the run was not queued; retry later"
    )]
    QueueFull(usize),
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
    /// A run failed after reading the version under test: its error answer names the version
    /// (and the target's), as a `tests-failed` answer does.
    #[error("{source} (version under test {version}, {target} at {previous})")]
    AfterRead {
        version: String,
        previous: String,
        target: String,
        source: Box<Error>,
    },
}

impl Error {
    /// The transport-independent kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Spec(_) => ErrorKind::InvalidArgument,
            Error::Policy(e) => e.kind(),
            Error::Git(e) => e.kind(),
            Error::Runner(e) => e.kind(),
            Error::Cluster(e) => e.kind(),
            Error::Forge(e) => e.kind(),
            Error::Unconfigured(_) => ErrorKind::FailedPrecondition,
            Error::Interrupted => ErrorKind::Unavailable,
            Error::QueueFull(_) => ErrorKind::ResourceExhausted,
            Error::Internal(_) => ErrorKind::Internal,
            Error::AfterRead { source, .. } => source.kind(),
        }
    }
}

/// A part of the server that a request needs and this server may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A `credentialsSecret` is read from Kubernetes.
    CredentialsSecret,
    /// The Argo CD gate reads the Application from Kubernetes.
    ArgocdApp,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Need::CredentialsSecret => {
                "credentialsSecret needs Kubernetes, which is not configured on this server"
            }
            Need::ArgocdApp => "argocdApp needs Kubernetes, which is not configured on this server",
        })
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
