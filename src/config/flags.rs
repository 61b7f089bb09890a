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
const SERVE_ONLY: [&str; 7] = [
    "listen",
    "metrics_listen",
    "console_listen",
    "console_commit_link",
    "console_hosts",
    "cert_file",
    "key_file",
];

/// The configuration file (`--config`) and every setting's flag and variable; `SERVE` says
/// whether the command listens (`serve`) or not (`promote`).
#[derive(Debug, Clone)]
pub struct Settings<const SERVE: bool>(ArgMatches);

/// `serve`'s configuration.
pub type ServeOverrides = Settings<true>;

/// `promote`'s configuration: as `serve`'s, without the listeners.
pub type Overrides = Settings<false>;

impl<const SERVE: bool> Settings<SERVE> {
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

impl<const SERVE: bool> FromArgMatches for Settings<SERVE> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Settings(matches.clone()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0 = matches.clone();
        Ok(())
    }
}

impl<const SERVE: bool> Args for Settings<SERVE> {
    fn augment_args(cmd: Command) -> Command {
        with_settings(cmd, SERVE)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        with_settings(cmd, SERVE)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: ServeOverrides,
    }

    #[derive(Parser)]
    struct Promote {
        #[command(flatten)]
        config: Overrides,
    }

    /// `serve` with `flags` over a configuration file holding `yaml`.
    fn serve(yaml: &str, flags: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, yaml).expect("write");
        let file = file.to_str().expect("utf-8");
        let args = ["phasegate", "--config", file]
            .into_iter()
            .chain(flags.iter().copied());
        Serve::try_parse_from(args).expect("parses").config.load()
    }

    #[test]
    fn a_switch_turns_its_setting_on_and_never_off() {
        let yaml = "policy:\n  permissive: true\nkubernetes:\n  disabled: true\n";
        let c = serve(yaml, &["--policy-allow-no-tests"]).expect("loads");
        assert!(
            c.policy.permissive && c.kubernetes.disabled,
            "the file's stay on"
        );
        assert!(c.policy.allow_no_tests, "the switch turns it on");
        assert!(!c.git.allow_insecure_http, "the default stays off");
    }

    #[test]
    fn a_boolean_with_a_value_wins_over_the_file_both_ways() {
        let yaml = "policy:\n  allowUnmergedSource: true\n";
        let c = serve(yaml, &["--policy-allow-unmerged-source", "false"]).expect("loads");
        assert!(!c.policy.allow_unmerged_source);
        assert!(
            serve(yaml, &[])
                .expect("loads")
                .policy
                .allow_unmerged_source
        );
    }

    #[test]
    fn list_flags_drop_empty_items_and_replace_the_files_list() {
        let yaml = "policy:\n  images: [\"registry/*\"]\n  commands: [\"/bin/*\"]\n";
        let c = serve(yaml, &["--policy-repos", "a,,b,", "--policy-images="]).expect("loads");
        assert_eq!(c.policy.repos, ["a", "b"]);
        assert!(c.policy.images.is_empty(), "an empty flag empties the list");
        assert_eq!(c.policy.commands, ["/bin/*"], "no flag, the file's list");
    }

    #[test]
    fn tls_flags_replace_the_files_pair() {
        let yaml = "tls:\n  certFile: /file/cert\n  keyFile: /file/key\n";
        let tls = |c: Config| c.tls.map(|t| (t.cert_file, t.key_file));
        let file = tls(serve(yaml, &[]).expect("loads"));
        assert_eq!(file, Some(("/file/cert".into(), "/file/key".into())));
        let flags = ["--tls-cert", "/flag/cert", "--tls-key", "/flag/key"];
        let flags = tls(serve(yaml, &flags).expect("loads"));
        assert_eq!(flags, Some(("/flag/cert".into(), "/flag/key".into())));
    }

    #[test]
    fn promote_refuses_the_listeners_flags() {
        // Every id SERVE_ONLY names is a setting's (a renamed field would slip through).
        let longs: Vec<String> = settings()
            .get_arguments()
            .filter(|a| SERVE_ONLY.contains(&a.get_id().as_str()))
            .map(|a| format!("--{}", a.get_long().expect("a long flag")))
            .collect();
        assert_eq!(longs.len(), SERVE_ONLY.len(), "{longs:?}");
        for long in &longs {
            let flag = [long.as_str(), "127.0.0.1:1"];
            let err = Promote::try_parse_from(["phasegate"].into_iter().chain(flag))
                .err()
                .expect("refused");
            assert!(
                err.to_string().contains("only `phasegate serve` listens"),
                "{long}: {err}"
            );
        }
        let c = Promote::try_parse_from(["phasegate", "--max-runs", "3"]).expect("parses");
        assert_eq!(c.config.load().expect("loads").max_runs, 3);
    }

    #[test]
    fn a_list_flag_is_given_once_comma_separated() {
        let parse = |args: &[&str]| Serve::try_parse_from(["phasegate"].iter().chain(args));
        let once = parse(&["--policy-repos", "file:///a/**,file:///b/**"]).expect("parses");
        let repos = once.config.load().expect("loads").policy.repos;
        assert_eq!(repos, ["file:///a/**", "file:///b/**"]);
        let twice = parse(&[
            "--policy-repos",
            "file:///a/**",
            "--policy-repos",
            "file:///b/**",
        ]);
        assert!(twice.is_err(), "a repeated list flag is refused");
    }

    #[test]
    fn the_github_app_flags_an_app_needs_are_its_settings() {
        let ids: Vec<String> = GitHubAppConfig::augment_args(Command::new("app"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        for id in forge::GITHUB_APP_NEEDS {
            assert!(ids.iter().any(|i| i == id), "{id} is not in {ids:?}");
        }
    }

    #[test]
    fn github_app_flags_complete_the_files_app_or_name_a_whole_one() {
        let app = |c: Config| c.forge.github_app.expect("an App");
        let yaml = "forge:\n  githubApp:\n    appId: '1'\n    installationId: '2'\n    \
                    privateKeyFile: /k.pem\n    apiUrl: https://ghe.example.com/api/v3\n";
        let c = app(serve(yaml, &["--forge-github-app-id", "7"]).expect("loads"));
        assert_eq!((c.app_id.as_str(), c.installation_id.as_str()), ("7", "2"));
        assert_eq!(c.api_url, "https://ghe.example.com/api/v3");
        let err = serve("{}", &["--forge-github-app-id", "7"]).expect_err("half an App");
        assert!(
            err.to_string()
                .contains("--forge-github-app-installation-id"),
            "{err}"
        );
        let whole = [
            "--forge-github-app-id=7",
            "--forge-github-app-installation-id=8",
            "--forge-github-app-private-key-file=/k.pem",
        ];
        let c = app(serve("{}", &whole).expect("loads"));
        assert_eq!(c.private_key_file, Path::new("/k.pem"));
        assert_eq!(c.api_url, "https://api.github.com");
        assert!(serve("{}", &[]).expect("loads").forge.github_app.is_none());
    }
}
