//! The integration tests, as one test binary (`cargo test --test integration`): `support`, the
//! fixtures and fakes (6,000 lines), compiles once for all of them, and the compiler reports a
//! helper nobody uses. Each module is one former test file and says what it covers; run one
//! with a filter, e.g. `cargo test --test integration trigger::`.
//!
//! The tests share this process: none may change its environment or current directory, and a
//! credential a test hands phasegate must never show up in the captured log (`support::logs`),
//! which every test that inspects it reads whole.

mod support;

mod argocd;
mod attacks;
mod bitbucket_pull_requests;
mod bounds;
mod browser;
mod cli;
mod cluster;
mod console;
mod deploy;
mod forged_trailers;
mod fuzz;
mod git_conditions;
mod git_engine;
mod gitea_pull_requests;
mod github_app;
mod grpcurl;
mod image;
mod job_admission;
mod job_logs;
mod jobs;
mod kustomize;
mod merge_requests;
mod module_graph;
mod notifications;
mod observability;
mod payload;
mod pull_requests;
mod reliability;
mod security;
mod shallow_cache;
mod shutdown;
mod signing;
mod ssh;
mod test_runners;
mod tls;
mod trigger;
mod yaml_readers;
