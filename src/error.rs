//! The crate error: one enum wrapping each module's error, and the small set of kinds that the
//! gRPC adapter and the CLI turn into status codes and exit codes.

use crate::{
    cluster::ClusterError, config::ConfigError, forge::ForgeError, git::GitError,
    policy::PolicyError, runner::RunnerError, spec::SpecError,
};

/// What kind of failure an error is, independent of the transport that reports it.
/// The gRPC adapter maps each kind to the status code of docs/contract.md §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or invalid spec, resource or payload.
    InvalidArgument,
    /// Server policy refused, or a remote refused phasegate's own credentials.
    PermissionDenied,
    /// Commit, file, branch or key missing.
    NotFound,
    /// A precondition of the server is missing (e.g. no Kubernetes for the job runner).
    FailedPrecondition,
    /// The push was still rejected after every retry.
    Aborted,
    /// The git remote, the Kubernetes API or the forge could not be reached.
    Unavailable,
    /// A wait the request asked for (`waitForMerge`) passed.
    DeadlineExceeded,
    /// A bug, or an environment failure nobody can fix by changing the request.
    Internal,
}

impl ErrorKind {
    /// A short name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid-argument",
            ErrorKind::PermissionDenied => "permission-denied",
            ErrorKind::NotFound => "not-found",
            ErrorKind::FailedPrecondition => "failed-precondition",
            ErrorKind::Aborted => "aborted",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::DeadlineExceeded => "deadline-exceeded",
            ErrorKind::Internal => "internal",
        }
    }
}

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
    /// The server configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The request needs a part of the server that is not configured.
    #[error("{0}")]
    Unconfigured(&'static str),
    /// The server shut down before the run ended: its grace period was over.
    #[error(
        "the server shut down before the run ended (shutdownGrace was over); a redelivered \
         event runs it again"
    )]
    Interrupted,
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
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
            Error::Config(_) => ErrorKind::InvalidArgument,
            Error::Unconfigured(_) => ErrorKind::FailedPrecondition,
            Error::Interrupted => ErrorKind::Unavailable,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
