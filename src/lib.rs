//! phasegate: a continuous-delivery promotion gate for GitOps, served as an Argo Events
//! custom trigger.
//!
//! ```text
//! Sensor ──gRPC──▶ server (tonic adapter: the only place that knows tonic and Status)
//!                    │ FetchResource: spec YAML ──▶ spec::Resource (JSON, defaults)
//!                    │ Execute:       resource + payload ──▶ spec::Plan ──▶ pipeline
//!                    │ ApplyPolicy:   outcome JSON ──▶ OK / FAILED_PRECONDITION
//!                    ▼
//!                 pipeline ── policy check ── ledger (one run per idempotency key)
//!                    │
//!                    ├─▶ runner  (none | http | command | job): test the source phase
//!                    └─▶ git     (cache ▸ read at source commit ▸ values edit ▸ commit ▸ push)
//! ```
//!
//! - [`spec`]: the trigger spec, the resource JSON, the payload, and the validated [`spec::Plan`].
//! - [`policy`]: allowlists of repositories, transitions, test images, commands, Job
//!   namespaces and service accounts; closed by default when serving.
//! - [`credentials`]: credential scopes — which credentials go to which remote;
//!   [`hardening`]: the process is non-dumpable, its cache private.
//! - [`runner`]: the test runners, one file each.
//! - [`cluster`]: Kubernetes client, `credentialsSecret` lookup, the Argo CD gate.
//! - [`values`]: the format-preserving edit of a values file (pure).
//! - [`git`]: the repository cache and the promotion (the only module that knows git2).
//! - [`forge`]: pull requests and commit statuses on GitHub, GitLab, Gitea/Forgejo and Bitbucket
//!   Data Center (one trait, one module per forge).
//! - [`ledger`]: idempotency — duplicates join the run in flight or get its recorded answer.
//! - [`history`]: every run's stages and result, persisted; watchers follow a run live.
//! - [`metrics`]: Prometheus metrics and the probes listener.
//! - [`pipeline`]: one run from plan to outcome; [`outcome`]: Execute's answer JSON.
//! - [`server`]: the gRPC adapter (trigger, run history, health, reflection);
//!   [`config`]: server configuration.
//! - [`sensor`]: a client that drives the server exactly as an Argo Events Sensor does.
//! - [`demo`]: the whole loop on this machine; [`console`]: `phasegate runs` for operators.

pub mod app;
mod cluster;
pub mod config;
pub mod console;
pub mod credentials;
pub mod demo;
pub mod diff;
mod error;
mod forge;
pub mod git;
pub mod hardening;
pub mod history;
mod kind;
mod metrics;
pub mod notify;
pub mod outcome;
mod pipeline;
pub mod policy;
pub mod proto;
pub mod runner;
pub mod sensor;
pub mod server;
pub mod spec;
pub mod values;
mod web;

pub use error::{Error, Need, Result};
pub use kind::ErrorKind;
