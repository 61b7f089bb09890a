//! The settings' flags and `PHASEGATE_*` variables on the command line, and their merge over
//! the configuration file.
//!
//! The flags are those `#[arg]` declares on [`Config`]'s fields, none of them required (a
//! setting not given keeps the file's value). Clap parses them, a flag winning over its
//! variable; [`ServeOverrides::load`] reads the file and lets clap's own update overwrite the
//! settings that were given, so a setting is never named again here. What clap's update does
//! not do is said where it is done: `--config`, switches that only turn a setting on, the
//! TLS pair and the GitHub App.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use super::{Config, ConfigError, GitHubAppConfig, TlsConfig, forge};

/// The settings only `serve` has: `promote` does not listen.
const SERVE_ONLY: [&str; 6] = [
    "listen",
    "metrics_listen",
    "console_listen",
    "console_commit_link",
    "cert_file",
    "key_file",
];

/// `serve`'s configuration: the file (`--config`) and every setting's flag and variable.
#[derive(Debug, Clone, Default)]
pub struct ServeOverrides(ArgMatches);

/// `promote`'s configuration: as `serve`'s, without the listeners.
#[derive(Debug, Clone, Default)]
pub struct Overrides(ArgMatches);

impl ServeOverrides {
    /// The configuration file (or the defaults) with these flags and variables over it.
    pub fn load(self) -> Result<Config, ConfigError> {
        load(self.0)
    }
}

impl Overrides {
    /// The configuration file (or the defaults) with these flags and variables over it.
    pub fn load(self) -> Result<Config, ConfigError> {
        load(self.0)
    }
}

/// Every setting's flag: [`Config`]'s, the TLS pair and the GitHub App's.
fn settings() -> Command {
    let settings = Config::augment_args(Command::new("settings"));
    GitHubAppConfig::augment_args(TlsConfig::augment_args(settings))
}

/// `cmd` with `--config` and the settings' flags; `promote` keeps the listeners' flags hidden
/// and refuses them, so that clap's update of [`Config`] finds every id it asks for.
fn with_settings(cmd: Command, serve: bool) -> Command {
    let file = Arg::new("config")
        .long("config")
        .env("PHASEGATE_CONFIG")
        .value_name("CONFIG")
        .value_parser(clap::value_parser!(PathBuf))
        .help("Configuration file (YAML)");
    let settings = settings();
    let flags = settings.get_arguments().map(|arg| {
        let arg = arg.clone().required(false).display_order(None);
        if serve || !SERVE_ONLY.contains(&arg.get_id().as_str()) {
            arg
        } else {
            arg.hide(true).env(None).value_parser(serve_only)
        }
    });
    cmd.arg(file).args(flags)
}

fn serve_only(_: &str) -> Result<String, &'static str> {
    Err("only `phasegate serve` listens")
}

fn load(mut flags: ArgMatches) -> Result<Config, ConfigError> {
    let mut c = Config::load(flags.remove_one::<PathBuf>("config").as_deref())?;
    // A switch (`--no-kubernetes`, `--policy-permissive`, …) only turns its setting on: clap
    // reads it as `false` when absent or set to a falsey variable, which leaves the file's.
    for arg in settings().get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(arg.get_action(), ArgAction::SetTrue) && flags.get_one(id) == Some(&false) {
            flags.remove_one::<bool>(id);
        }
    }
    c.update_from_arg_matches_mut(&mut flags)
        .map_err(|e| ConfigError(e.to_string()))?;
    // `requires` makes the TLS flags a pair: given, they replace the file's.
    if flags.contains_id("cert_file") {
        let tls = TlsConfig::from_arg_matches_mut(&mut flags);
        c.tls = Some(tls.map_err(|e| ConfigError(e.to_string()))?);
    }
    c.forge.github_app = forge::github_app_overrides(c.forge.github_app.take(), &mut flags)?;
    Ok(c)
}

impl FromArgMatches for ServeOverrides {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(ServeOverrides(matches.clone()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0 = matches.clone();
        Ok(())
    }
}

impl Args for ServeOverrides {
    fn augment_args(cmd: Command) -> Command {
        with_settings(cmd, true)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        with_settings(cmd, true)
    }
}

impl FromArgMatches for Overrides {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Overrides(matches.clone()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0 = matches.clone();
        Ok(())
    }
}

impl Args for Overrides {
    fn augment_args(cmd: Command) -> Command {
        with_settings(cmd, false)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        with_settings(cmd, false)
    }
}
