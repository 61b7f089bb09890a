//! The `phasegate` binary: parses the command line and calls into the library.

use std::{io::IsTerminal, process::ExitCode};

use clap::{Parser, Subcommand};
use phasegate::{
    app,
    config::{Overrides, ServeOverrides},
    spec::{Resource, RunnerKind},
};

/// A continuous-delivery promotion gate for GitOps, served as an Argo Events custom trigger.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format (level from RUST_LOG, default info).
    #[arg(
        long,
        global = true,
        env = "PHASEGATE_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// For people: one line per event.
    Text,
    /// For log collectors: one JSON object per line.
    Json,
}

/// The runners `promote` offers (a Job needs a cluster, so it is the server's).
#[derive(Clone, Copy, clap::ValueEnum)]
enum PromoteTest {
    Http,
    Command,
    None,
}

impl From<PromoteTest> for RunnerKind {
    fn from(t: PromoteTest) -> RunnerKind {
        match t {
            PromoteTest::Http => RunnerKind::Http,
            PromoteTest::Command => RunnerKind::Command,
            PromoteTest::None => RunnerKind::None,
        }
    }
}

#[derive(Subcommand)]
// Parsed once per process: the size of the `promote` variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve the custom trigger (gRPC, with health and reflection).
    Serve {
        #[command(flatten)]
        config: ServeOverrides,
    },
    /// One promotion from the shell (a drop-in for the classic promote.py step); prints
    /// Execute's JSON. Exit 0 on success, 1 on tests-failed, 2 on invalid input or errors.
    Promote {
        #[arg(long)]
        git_repo: String,
        #[arg(long)]
        source_commit: String,
        #[arg(long)]
        source_phase: String,
        #[arg(long)]
        target_phase: String,
        #[arg(
            long,
            default_value = "argo-projects/app/manifests/overlays/{phase}/values-{phase}.yaml"
        )]
        path: String,
        /// The source phase's values file when it is not `--path`'s (`sourcePath`).
        #[arg(long)]
        source_path: Option<String>,
        #[arg(long, default_value = "image.version")]
        key: String,
        #[arg(long, default_value = "main")]
        branch: String,
        #[arg(long, value_enum, default_value_t = PromoteTest::None)]
        test: PromoteTest,
        /// A test profile of the configuration (`testProfiles`) instead of `--test`.
        #[arg(long, conflicts_with_all = ["test", "test_command", "test_workdir"])]
        test_profile: Option<String>,
        #[arg(long)]
        test_target: Option<String>,
        /// Test command for `--test command` (split like a shell would); it gets the test
        /// target as its argument.
        #[arg(long)]
        test_command: Option<String>,
        /// Absolute directory the test command starts in (`testWorkdir`).
        #[arg(long)]
        test_workdir: Option<String>,
        #[arg(long)]
        dry_run: bool,
        /// Promote an older version on purpose: not refused as superseded, marked in the
        /// commit (`Promotion-Rollback: true`), and the baseline of later promotions.
        #[arg(long)]
        rollback: bool,
        /// `push`, or `pull-request` (docs/pull-requests.md).
        #[arg(long, value_parser = ["push", "pull-request"], default_value = "push")]
        promote_via: String,
        /// The forge (`github`); inferred for github.com.
        #[arg(long)]
        forge: Option<String>,
        /// The forge's API root, on the repository's host.
        #[arg(long)]
        forge_api_url: Option<String>,
        /// Pull-request mode: merge as soon as the forge allows it.
        #[arg(long)]
        auto_merge: bool,
        /// Pull-request mode: wait this long for the merge (`30m`).
        #[arg(long)]
        wait_for_merge: Option<String>,
        #[command(flatten)]
        config: Overrides,
    },
    /// The whole loop on this machine: a throw-away GitOps repo, an app, the server, a Sensor.
    Demo {
        /// Also serve the web console, and keep the server running after the promotion
        /// (Ctrl-C stops it).
        #[arg(long)]
        console: bool,
        /// Keep the versions in kustomize overlays (`images[name=petstore].newTag`) instead
        /// of Helm values files.
        #[arg(long)]
        kustomize: bool,
    },
    /// Recent runs as a table; `runs watch ID` follows one live and exits with its result.
    Runs {
        /// The phasegate server: HOST:PORT or http://HOST:PORT (plaintext), https://HOST:PORT
        /// (TLS, verified against the system roots; SSL_CERT_FILE adds a bundle).
        #[arg(
            long,
            global = true,
            env = "PHASEGATE_SERVER",
            default_value = "http://127.0.0.1:9000"
        )]
        server: String,
        /// Only runs of this repository URL.
        #[arg(long)]
        repo: Option<String>,
        /// Only runs from or to this phase.
        #[arg(long)]
        phase: Option<String>,
        /// Only runs with this outcome (`promoted`, `tests-failed`, `error`, …).
        #[arg(long)]
        outcome: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(subcommand)]
        action: Option<RunsAction>,
    },
}

#[derive(Subcommand)]
enum RunsAction {
    /// Follow one run live; exit 0 on success outcomes, 1 on tests-failed, 2 on errors.
    Watch { id: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: no other thread runs yet, and nothing has used libgit2.
    #[allow(unsafe_code)]
    let isolated = unsafe { phasegate::git::isolate_from_git_config() };
    if let Err(e) = isolated {
        eprintln!("phasegate: cannot keep libgit2 from reading the git configuration: {e}");
        return ExitCode::from(2);
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            eprintln!("phasegate: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    init_logs(cli.log_format, matches!(cli.command, Command::Demo { .. }));
    if matches!(cli.command, Command::Serve { .. } | Command::Promote { .. })
        && let Err(e) = phasegate::hardening::protect_process()
    {
        // Still safe to serve; a test command of the same user could read /proc/<pid>/environ.
        tracing::warn!(error = %e, "cannot mark the process non-dumpable");
    }
    match cli.command {
        Command::Serve { config } => {
            let result = async {
                let c = config.load()?;
                app::serve(c, shutdown_signal()).await
            }
            .await;
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("phasegate serve: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Promote {
            git_repo,
            source_commit,
            source_phase,
            target_phase,
            path,
            source_path,
            key,
            branch,
            test,
            test_profile,
            test_target,
            test_command,
            test_workdir,
            dry_run,
            rollback,
            promote_via,
            forge,
            forge_api_url,
            auto_merge,
            wait_for_merge,
            config,
        } => {
            let forge = (forge.is_some() || forge_api_url.is_some()).then_some(
                phasegate::spec::ForgeSpec {
                    kind: forge,
                    api_url: forge_api_url,
                },
            );
            let pull_request = (auto_merge || wait_for_merge.is_some()).then(|| {
                phasegate::spec::PullRequestSpec {
                    auto_merge,
                    wait_for_merge,
                    ..Default::default()
                }
            });
            let resource = Resource {
                repo: git_repo,
                branch,
                path,
                keys: key.split(',').map(|k| k.trim().to_string()).collect(),
                source: phasegate::spec::SourceRef {
                    phase: source_phase,
                    commit: source_commit,
                    path: source_path.unwrap_or_default(),
                },
                target: phasegate::spec::TargetRef {
                    phase: target_phase,
                },
                test: phasegate::spec::TestSpec {
                    runner: test_profile.is_none().then(|| test.into()),
                    profile: test_profile,
                    target: test_target.unwrap_or_default(),
                    command: test_command
                        .map(|c| shlex::split(&c).unwrap_or_else(|| vec![c]))
                        .unwrap_or_default(),
                    workdir: test_workdir,
                    ..Default::default()
                },
                dry_run,
                rollback,
                promote_via,
                forge,
                pull_request,
                ..Default::default()
            };
            promote(resource, config).await
        }
        Command::Runs {
            server,
            repo,
            phase,
            outcome,
            limit,
            action,
        } => {
            let mut out = std::io::stdout();
            let result = match action {
                Some(RunsAction::Watch { id }) => phasegate::console::watch(&server, &id, &mut out)
                    .await
                    .map(|run| match run.outcome.as_str() {
                        "tests-failed" => ExitCode::from(1),
                        "error" => ExitCode::from(2),
                        _ => ExitCode::SUCCESS,
                    }),
                None => {
                    let filter = phasegate::proto::runs::ListRunsRequest {
                        repo: repo.unwrap_or_default(),
                        phase: phase.unwrap_or_default(),
                        outcome: outcome.unwrap_or_default(),
                        limit,
                    };
                    phasegate::console::list(&server, filter, &mut out)
                        .await
                        .map(|()| ExitCode::SUCCESS)
                }
            };
            result.unwrap_or_else(|e| {
                eprintln!("phasegate runs: {e}");
                ExitCode::from(2)
            })
        }
        Command::Demo { console, kustomize } => match phasegate::demo::run(
            if kustomize {
                phasegate::demo::Layout::Kustomize
            } else {
                phasegate::demo::Layout::HelmValues
            },
            &mut std::io::stdout(),
            console.then(|| Box::pin(shutdown_signal()) as _),
        )
        .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("phasegate demo: {e}");
                ExitCode::from(2)
            }
        },
    }
}

async fn promote(resource: Resource, config: Overrides) -> ExitCode {
    let result = async {
        let config = config.load()?;
        app::promote(config, &resource).await
    }
    .await;
    let result = match result {
        Ok(run) => run.map_err(|e| e.to_string()),
        Err(start) => Err(start.to_string()),
    };
    match result {
        Ok(report) => {
            println!("{}", String::from_utf8_lossy(&report.to_json()));
            if report.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("phasegate promote: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logs(format: LogFormat, quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(std::io::stderr().is_terminal()))
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.fmt_fields(phasegate::shown::log_fields()).init();
    }
}

/// Colour codes only for a person at a terminal: never into pipes, container logs or a
/// Workflow's log, and never when `NO_COLOR` is set to anything (https://no-color.org).
fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every flag and `PHASEGATE_*` variable of every subcommand, so docs/contract.md cannot
    /// fall behind the command line.
    #[test]
    fn the_contract_documents_every_flag_and_variable() {
        let contract = include_str!("../docs/contract.md");
        let mut stack = vec![Cli::command()];
        while let Some(command) = stack.pop() {
            for arg in command.get_arguments() {
                if let Some(long) = arg.get_long().filter(|l| !matches!(*l, "help" | "version")) {
                    assert!(
                        contract.contains(&format!("`--{long}")),
                        "`{} --{long}` is not in docs/contract.md",
                        command.get_name()
                    );
                }
                if let Some(var) = arg.get_env().and_then(|v| v.to_str()) {
                    assert!(contract.contains(var), "{var} is not in docs/contract.md");
                }
            }
            stack.extend(command.get_subcommands().cloned());
        }
    }
}
