//! phasegate: a continuous-delivery promotion gate for GitOps, served as an Argo Events
//! custom trigger. The map (docs/architecture.md says the same, with the rules the tests keep):
//!
//! ```text
//! main (clap) ──▶ app: the composition root (files, GIT_* variables, Kubernetes, HTTP clients)
//!                  │ builds pipeline::Parts once, for serve, promote and demo
//!                  ▼
//! Sensor ──gRPC──▶ server (the only tonic code; server::status the only Status builder)
//!                  │ FetchResource: spec YAML ──▶ spec (one parse of the static part)
//!                  │ Execute:       resource + payload ──▶ spec::Plan ──▶ policy ──▶ pipeline
//!                  │ ApplyPolicy:   outcome JSON ──▶ outcome::Verdict
//!                  ▼
//!               pipeline (ledger: one run per idempotency key; run.rs: a method per stage)
//!                  ├─ access ───────▶ credentials (credentialsSecret via cluster, scopes,
//!                  │                  GitHub App key) ──▶ forge::access (the run's choice)
//!                  ├─ decided? ─────▶ git (read the target at the source commit)
//!                  ├─ gate ─────────▶ cluster (Argo CD Application synced and healthy)
//!                  ├─ test ─────────▶ runner (none | http | command | job ──▶ cluster)
//!                  ├─ promote ──────▶ git (cache ▸ values edit ▸ commit ▸ sign ▸ push)
//!                  └─ propose ──────▶ forge (pull request, merge, commit statuses)
//!                  ▼
//!               outcome (Execute's answer) ──▶ history ──▶ web console, notify, metrics
//! ```
//!
//! - [`app`]: start-up; the only place that reads credential, key and CA files and the
//!   `GIT_*` variables, connects to Kubernetes and builds HTTP clients (the configuration file
//!   is read by `config`, the TLS files, reloaded when they change, by `server`). [`config`]: the configuration as plain data, each
//!   setting declared once (file key, flag and variable on one field).
//! - [`spec`]: the trigger spec, the resource JSON, the payload, and the validated [`spec::Plan`]
//!   ([`spec::RepoUrl`] with its parts, path and message templates, the forge located).
//! - `policy`: allowlists of repositories, transitions, test images, commands, Job
//!   namespaces and service accounts; closed by default when serving.
//! - `pipeline`: one run from plan to outcome, a method per stage; its ledger answers
//!   duplicates. `outcome`: Execute's answer JSON and ApplyPolicy's verdict.
//! - [`credentials`]: which credential goes where (scopes, `credentialsSecret`, GitHub App key);
//!   [`hardening`]: the process is non-dumpable, its cache private.
//! - `runner`: the test runners, one file each, one signature.
//! - `cluster`: the Kubernetes client and the Argo CD gate.
//! - `values`: the format-preserving edit of a values file (pure); `diff`: its changed lines.
//! - [`git`]: the repository cache and the promotion (the only module that knows git2).
//! - `forge`: pull requests and commit statuses on GitHub, GitLab, Gitea/Forgejo and Bitbucket
//!   Data Center (one trait, one module per forge, typed answers).
//! - `history`: every run's stages and result, persisted; watchers follow a run live.
//!   `web`: the console; `notify`: run-end webhooks; `metrics`: Prometheus and the probes;
//!   `http`: serves those two listeners with header and idle timeouts and a connection cap.
//! - `server`: the gRPC adapter (trigger, run history, health, reflection).
//! - Our own clients: [`sensor`] drives the server exactly as an Argo Events Sensor does;
//!   [`demo`] plays the whole loop on this machine; [`console`] is `phasegate runs`.
//! - `kind`: [`ErrorKind`], which imports nothing from the crate; `error`: the run [`Error`].
//!
//! Modules are private unless something outside the crate (the binary, the tests, the bench)
//! names them, and the few names of private modules that are used outside are re-exported
//! below; `unreachable_pub` keeps every other item `pub(crate)`.

pub mod app;
mod cluster;
pub mod config;
pub mod console;
pub mod credentials;
pub mod demo;
mod diff;
mod error;
mod forge;
pub mod git;
pub mod hardening;
mod history;
mod http;
mod kind;
mod metrics;
mod notify;
mod outcome;
mod pipeline;
mod policy;
pub mod proto;
mod runner;
pub mod sensor;
mod server;
pub mod shown;
pub mod spec;
mod values;
mod web;

pub use diff::{ChangedLine, Edit};
pub use error::{Error, Need, Result};
pub use history::{History, RunRecord, Stage, now_unix_ms};
pub use kind::ErrorKind;
pub use notify::{Format, NotificationConfig};
pub use outcome::{Outcome, RunReport};
pub use policy::{FileRule, PolicyConfig, SecretBinding};
pub use runner::TestReport;
pub use server::{Listeners, MAX_REQUEST_BYTES};
pub use values::{Scalar, read_scalar, read_value, set_scalar};
