//! The names a test's environment (`testEnv`) may never set, whoever lists them: variables that
//! make a shell, a loader or an interpreter run code of their value (`BASH_ENV`,
//! `BASH_FUNC_x%%`, `LD_PRELOAD`, `PYTHONWARNINGS`, `NODE_OPTIONS`, `PERL5OPT`,
//! `JAVA_TOOL_OPTIONS`, …) or find programs and libraries elsewhere (`PATH`, `GIT_*`).

use super::SpecError;

/// Exact names refused.
const NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "CDPATH",
    "GLOBIGNORE",
    "ZDOTDIR",
    "BROWSER",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "MANPAGER",
    "LESSOPEN",
    "LESSCLOSE",
    "CLASSPATH",
    "GCONV_PATH",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "GLIBC_TUNABLES",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "TEST_TARGET",
    "_JAVA_OPTIONS",
    "TCLLIBPATH",
    "R_PROFILE",
    "R_PROFILE_USER",
    "PSMODULEPATH",
    "TERMINFO",
    "XDG_CONFIG_HOME",
    "XDG_CONFIG_DIRS",
    "XDG_DATA_HOME",
    "XDG_DATA_DIRS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "TMPDIR",
];

/// Prefixes refused: loaders, shells' exported functions, interpreters' option and module
/// variables, git's own.
const PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "BASH_",
    "PYTHON",
    "PERL",
    "RUBY",
    "GEM_",
    "BUNDLE_",
    "NODE_",
    "NPM_CONFIG_",
    "JAVA_",
    "JDK_",
    "MAVEN_",
    "GRADLE_",
    "LUA_",
    "PHP",
    "GIT_",
    "MALLOC_",
    "CORECLR_",
    "COMPLUS_",
    "DOTNET_",
    "KUBECONFIG",
    "DOCKER_",
    "ROBOT_",
];

/// Refuses an environment name that is not a portable name (`[A-Za-z_][A-Za-z0-9_]*`: so no
/// `BASH_FUNC_f%%`) or that is on the hard-wired list above, whatever a policy lists.
pub(super) fn check_env_name(name: &str) -> Result<(), SpecError> {
    let portable = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !portable {
        return Err(SpecError::invalid(
            "test.env",
            format!("{name:?} is not an environment variable name (letters, digits and '_')"),
        ));
    }
    let upper = name.to_ascii_uppercase();
    if NAMES.contains(&upper.as_str()) || PREFIXES.iter().any(|p| upper.starts_with(p)) {
        return Err(SpecError::invalid(
            "test.env",
            format!(
                "{name} is never set by a spec: a shell, loader or interpreter reads it as code \
                 or as where to find code (docs/events.md)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_variables_that_run_code() {
        for bad in [
            "BASH_ENV",
            "BASH_FUNC_echo%%",
            "PYTHONWARNINGS",
            "BROWSER",
            "LD_PRELOAD",
            "ld_preload",
            "PATH",
            "NODE_OPTIONS",
            "PERL5OPT",
            "JAVA_TOOL_OPTIONS",
            "GIT_SSH_COMMAND",
            "ENV",
            "A=B",
            "1X",
            "",
        ] {
            assert!(check_env_name(bad).is_err(), "{bad}");
        }
        for ok in ["SUITE", "BASE_URL", "TEST_USER", "LOG_LEVEL", "_X"] {
            check_env_name(ok).expect(ok);
        }
    }
}
