//! The policy as the operator writes it: [`PolicyConfig`], the `policy:` section of the server
//! configuration, each list also a `--policy-*` flag and a `PHASEGATE_POLICY_*` variable.

use serde::Deserialize;

use crate::spec::PodSecurityLevel;

/// Allowlists as written in the server configuration, and as `--policy-*` flags and
/// `PHASEGATE_POLICY_*` variables (lists comma-separated).
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyConfig {
    /// Globs of repository URLs (`https://github.com/my-org/*`), matched on the normalised URL.
    #[arg(
        long = "policy-repos",
        env = "PHASEGATE_POLICY_REPOS",
        value_parser = comma_list,
        help = "Allowed repository URL globs"
    )]
    pub repos: List,
    /// Allowed transitions, `source->target` (`test->prod`); `*` matches any phase.
    #[arg(
        long = "policy-transitions",
        env = "PHASEGATE_POLICY_TRANSITIONS",
        value_parser = comma_list,
        help = "Allowed transitions (`test->prod`)"
    )]
    pub transitions: List,
    /// Globs of test images (`registry.example.com/tests/*`).
    #[arg(
        long = "policy-images",
        env = "PHASEGATE_POLICY_IMAGES",
        value_parser = comma_list,
        help = "Allowed test image globs"
    )]
    pub images: List,
    /// Globs of the canonical paths of programs the command runner may start.
    #[arg(
        long = "policy-commands",
        env = "PHASEGATE_POLICY_COMMANDS",
        value_parser = comma_list,
        help = "Allowed test command globs (canonical paths)"
    )]
    pub commands: List,
    /// Whether a spec may set `allowUnmergedSource` (promote a commit that is not on its
    /// branch). Off by default: only merged versions are promoted.
    #[arg(
        long = "policy-allow-unmerged-source",
        env = "PHASEGATE_POLICY_ALLOW_UNMERGED_SOURCE",
        action = clap::ArgAction::Set,
        help = "Let specs set allowUnmergedSource (promote commits that are not on their branch)"
    )]
    pub allow_unmerged_source: bool,
    /// Namespaces a test Job may run in besides the server's own (`testNamespace`).
    #[arg(
        long = "policy-test-namespaces",
        env = "PHASEGATE_POLICY_TEST_NAMESPACES",
        value_parser = comma_list,
        help = "Namespaces a test Job may run in besides the server's"
    )]
    pub test_namespaces: List,
    /// Service accounts a test Job may run as (`testServiceAccount`); without one the Job runs
    /// as its namespace's `default`.
    #[arg(
        long = "policy-test-service-accounts",
        env = "PHASEGATE_POLICY_TEST_SERVICE_ACCOUNTS",
        value_parser = comma_list,
        help = "Service accounts a test Job may run as"
    )]
    pub test_service_accounts: List,
    /// Globs of the test targets a spec's inline test may be given (`testTarget`, the event's
    /// `test_target`), matched on the target or its origin; a profile's `testTargets` replace
    /// them for its runs.
    #[arg(
        long = "policy-test-targets",
        env = "PHASEGATE_POLICY_TEST_TARGETS",
        value_parser = comma_list,
        help = "Allowed test target globs (the URL or its origin)"
    )]
    pub test_targets: List,
    /// Names (globs) of the environment variables a spec's inline `testEnv` may set; the
    /// variables that run code are refused whatever this lists.
    #[arg(
        long = "policy-test-env",
        env = "PHASEGATE_POLICY_TEST_ENV",
        value_parser = comma_list,
        help = "Environment variable names an inline testEnv may set"
    )]
    pub test_env: List,
    /// Globs of the command a spec's inline Job may give its container (`testCommand`'s first
    /// word); without one the image's entrypoint runs.
    #[arg(
        long = "policy-job-commands",
        env = "PHASEGATE_POLICY_JOB_COMMANDS",
        value_parser = comma_list,
        help = "Allowed test Job command globs (the first word of testCommand)"
    )]
    pub job_commands: List,
    /// Globs of the directories an inline command test may start in (`testWorkdir`).
    #[arg(
        long = "policy-test-workdirs",
        env = "PHASEGATE_POLICY_TEST_WORKDIRS",
        value_parser = comma_list,
        help = "Allowed testWorkdir globs"
    )]
    pub test_workdirs: List,
    /// The widest Pod Security level an inline test Job's security contexts may reach.
    #[arg(
        long = "policy-test-pod-security",
        env = "PHASEGATE_POLICY_TEST_POD_SECURITY",
        value_enum,
        default_value_t,
        help = "Widest Pod Security level of an inline test Job (restricted or baseline)"
    )]
    pub test_pod_security: PodSecurityLevel,
    /// Which Secrets a spec may name as `credentialsSecret`, and for which repositories (file
    /// only); none listed: no spec may name one.
    #[arg(skip)]
    pub credentials_secrets: Vec<SecretBinding>,
    /// Allow `file://` repositories when serving: a push there moves the ref without running
    /// the repository's `pre-receive`/`update` hooks (libgit2 writes the files directly).
    #[arg(
        long = "policy-allow-file-repos",
        env = "PHASEGATE_POLICY_ALLOW_FILE_REPOS",
        value_parser = clap::builder::FalseyValueParser::new(),
        help = "Allow file:// repositories (their hooks do not run)"
    )]
    pub allow_file_repos: bool,
    /// Allow `rollback: true` (promote an older version on purpose, the new baseline).
    #[arg(
        long = "policy-allow-rollback",
        env = "PHASEGATE_POLICY_ALLOW_ROLLBACK",
        value_parser = clap::builder::FalseyValueParser::new(),
        help = "Allow rollback: true"
    )]
    pub allow_rollback: bool,
    /// Allow a transition that skips phases of the spec's `phases` (`dev->prod` over `test`).
    #[arg(
        long = "policy-allow-phase-skips",
        env = "PHASEGATE_POLICY_ALLOW_PHASE_SKIPS",
        value_parser = clap::builder::FalseyValueParser::new(),
        help = "Allow transitions that skip phases of the spec's `phases`"
    )]
    pub allow_phase_skips: bool,
    /// Which values files and keys of which repositories a spec may name (file only); empty:
    /// any of an allowed repository.
    #[arg(skip)]
    pub files: Vec<FileRule>,
    /// Allow `test: none` (promote without testing).
    #[arg(
        long = "policy-allow-no-tests",
        env = "PHASEGATE_POLICY_ALLOW_NO_TESTS",
        value_parser = clap::builder::FalseyValueParser::new(),
        help = "Allow `test: none`"
    )]
    pub allow_no_tests: bool,
    /// Permissive mode: an empty policy list allows everything (warned about loudly), as
    /// before phasegate was closed by default.
    #[arg(
        long = "policy-permissive",
        env = "PHASEGATE_POLICY_PERMISSIVE",
        value_parser = clap::builder::FalseyValueParser::new(),
        help = "Permissive mode: an empty policy list allows everything (warned about loudly)"
    )]
    pub permissive: bool,
}

/// A `policy.files` rule: the values files (globs of the paths read and written, the
/// `{phase}` filled in) and keys (globs; none: any) a spec may name in these repositories.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileRule {
    /// Repository URL globs, as in `policy.repos`.
    pub repos: Vec<String>,
    /// Globs of the values files' paths (`apps/*/overlays/*/values-*.yaml`).
    pub paths: Vec<String>,
    /// Globs of the keys (`image.version`); empty: any key.
    #[serde(default)]
    pub keys: Vec<String>,
}

/// A `policy.credentialsSecrets` entry: the Secret `name` may serve the repositories `repos`
/// (globs, as in `policy.repos`), and its signing key signs only for them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretBinding {
    /// The Secret's name in phasegate's namespace.
    pub name: String,
    /// Repository URL globs it may serve.
    pub repos: Vec<String>,
}

/// A list of the policy. Spelled `List` rather than `Vec<String>` so that clap takes a flag's
/// or variable's whole comma-separated text as one value ([`comma_list`]) instead of
/// collecting one item per occurrence.
pub(crate) type List = Vec<String>;

/// A list setting's flag or variable: comma-separated, empty items dropped (so an empty
/// variable empties the list).
pub(crate) fn comma_list(text: &str) -> Result<Vec<String>, std::convert::Infallible> {
    Ok(text
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

impl PolicyConfig {
    /// The operator's own command line (`phasegate promote`) is trusted where the operator
    /// configured no list: the repository it names (which then gets the server's own
    /// credentials), its command, test target and working directory, `--test none` and
    /// `--rollback`. Lists that are configured still apply.
    pub fn trust_command_line(&mut self, repo: &str) {
        if self.repos.is_empty() {
            self.repos.push(globset::escape(repo));
        }
        if self.commands.is_empty() {
            self.commands.push("/**".into());
        }
        if self.test_targets.is_empty() {
            self.test_targets.push("**".into());
        }
        if self.test_workdirs.is_empty() {
            self.test_workdirs.push("/**".into());
        }
        self.allow_no_tests = true;
        self.allow_rollback = true;
        self.allow_file_repos = true;
    }
}
