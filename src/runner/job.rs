//! The Kubernetes Job runner. Until the cluster support lands, it refuses clearly.

use super::{LogSink, RunnerError};
use crate::spec::JobTest;

/// Runs the test image as a Job. Not configured yet: answers `FAILED_PRECONDITION`.
pub async fn run(_test: &JobTest, _sink: &LogSink) -> Result<(bool, u32, String), RunnerError> {
    Err(RunnerError::KubernetesNotConfigured)
}
