//! What kind of failure an error is, independent of the transport that reports it. A leaf:
//! it imports nothing from the crate, so every module's error can name its kind without the
//! module depending on the crate error (which wraps them all).

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
    /// The server is at a bound (e.g. `maxQueuedRuns`): a retry later may succeed.
    ResourceExhausted,
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
            ErrorKind::ResourceExhausted => "resource-exhausted",
            ErrorKind::Internal => "internal",
        }
    }
}
