//! The trigger spec (docs/contract.md §2), the resource JSON the Sensor sees (§3) and the
//! payload (§4).
//!
//! Three shapes of the same request, parsed once each:
//! `custom.spec` YAML (a map of strings) → [`Resource`] (JSON with defaults, stable `dest` paths
//! for Sensor parameters) → payload merged in → [`Plan`] (validated types, valid by construction).

mod body_pattern;
mod bounds;
mod controls;
mod forge;
mod keys;
mod locate;
mod payload;
mod plan;
mod pod_security;
mod profile;
mod reach;
mod repo_globs;
mod repo_url;
mod resource;
mod target;
mod template;
mod test_env;
mod testing;

pub use forge::{
    ForgeChoice, ForgeKind, ForgeSpec, MergeMethod, NO_REBASE_ON_GITLAB, PromoteVia,
    PullRequestPlan, PullRequestSpec,
};
pub use keys::set_path as set_json_path;
pub use locate::{Located, locate};
pub use plan::{ArgoGate, CommandTest, CommitId, HttpTest, JobTest, Phase, Plan, TestPlan};
pub use pod_security::{
    PodSecurityLevel, check as check_pod_security, container_context, pod_context,
};
pub use profile::{TestProfile, TestProfiles};
pub(crate) use reach::{forbidden_literal, is_forbidden_test_address};
pub use repo_globs::{RepoGlobs, glob_set};
pub use repo_url::RepoUrl;
pub use resource::{Mode, Resource, RunnerKind, SourceRef, TargetRef, TestSpec};
pub use target::TargetGlobs;
pub use template::{BrokenSubject, MessageTemplate, PathTemplate, Vars};

/// Why a spec, resource or payload was refused. Every message names the field.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec bytes are not YAML at all.
    #[error("spec is not valid YAML: {0}")]
    NotYaml(String),
    /// The spec is YAML, but not a map of strings.
    #[error("spec must be a map of strings (custom.spec), got {0}")]
    NotMap(&'static str),
    /// A spec key phasegate does not know (most often a typo).
    #[error("unknown spec key `{0}`")]
    UnknownKey(String),
    /// The resource handed to Execute is not the JSON object FetchResource produced.
    #[error("resource is not a valid phasegate resource: {0}")]
    BadResource(String),
    /// The payload is not a JSON object (or a JSON string holding one).
    #[error("payload is not a JSON object: {0}")]
    BadPayload(String),
    /// ApplyPolicy's request is not the answer Execute gave.
    #[error("request is not Execute's answer JSON: {0}")]
    BadAnswer(String),
    /// A payload field that is not event data (CONTRACT: the payload sets only the source
    /// commit, the phases and the test target).
    #[error(
        "payload field `{0}` is not accepted: an event may set only source.commit, source.phase, \
         target.phase and test.target (spelled nested, sourceCommit-style or source_commit-style)"
    )]
    ForbiddenPayloadField(String),
    /// The forge the spec names or the repository's host implies cannot serve the spec as it
    /// stands (no forge for a pull request, an API on another host, what that forge cannot
    /// do); the message names the key.
    #[error("{0}")]
    Forge(String),
    /// A field has a value phasegate cannot use.
    #[error("invalid `{field}`: {problem}")]
    Invalid {
        /// The field as the user wrote it (spec key or resource path).
        field: String,
        /// What is wrong, without echoing secrets.
        problem: String,
    },
}

impl SpecError {
    /// An invalid field, named by its resource path (e.g. `source.commit`).
    pub(crate) fn invalid(field: &str, problem: impl Into<String>) -> Self {
        SpecError::Invalid {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}
