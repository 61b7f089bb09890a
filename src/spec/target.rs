//! The test target: the one URL an event hands to the test runners, checked before it is
//! expanded anywhere (docs/events.md).

use super::{SpecError, forbidden_literal};

/// Longest test target: a URL of a deployment, not a document.
pub(super) const MAX_TARGET_LEN: usize = 2048;

/// The test target comes from the event: before it is expanded anywhere, it must be a plain
/// `http(s)` URL — ASCII, no whitespace or control characters, no credentials.
pub(super) fn check_target(target: &str) -> Result<(), SpecError> {
    const FIELD: &str = "test.target";
    if target.len() > MAX_TARGET_LEN {
        return Err(SpecError::invalid(
            FIELD,
            format!("is longer than {MAX_TARGET_LEN} characters"),
        ));
    }
    if let Some(c) = target
        .chars()
        .find(|c| !c.is_ascii_graphic() || SHELL_CHARACTERS.contains(*c))
    {
        return Err(SpecError::invalid(
            FIELD,
            format!("must be a plain http(s) URL; it holds {c:?} (percent-encode it)"),
        ));
    }
    let url = url::Url::parse(target)
        .map_err(|e| SpecError::invalid(FIELD, format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(SpecError::invalid(
            FIELD,
            "must be an http:// or https:// URL with a host",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SpecError::invalid(FIELD, "must not carry credentials"));
    }
    let forbidden = match url.host() {
        Some(url::Host::Domain(name)) => METADATA_NAMES
            .contains(&name.trim_end_matches('.'))
            .then_some("a cloud metadata service"),
        _ => forbidden_literal(&url).map(|_| "a link-local or cloud metadata address"),
    };
    if let Some(what) = forbidden {
        return Err(SpecError::invalid(
            FIELD,
            format!("names {what}, which no test may reach"),
        ));
    }
    Ok(())
}

/// Globs of the test targets a test may be given (`policy.testTargets`, a profile's
/// `testTargets`): a glob matches the target as given or its origin (`scheme://host[:port]`,
/// so `http://petstore.test.svc:8080` allows every path there); `*` never crosses `/`.
#[derive(Debug, Clone)]
pub struct TargetGlobs(globset::GlobSet);

impl TargetGlobs {
    /// Compiles the globs; `None` when there are none. The error names the glob.
    pub fn new(patterns: &[String]) -> Result<Option<TargetGlobs>, String> {
        Ok(super::glob_set(patterns)?.map(TargetGlobs))
    }

    /// True when a glob matches `target` or its origin.
    pub fn is_match(&self, target: &str) -> bool {
        let origin = url::Url::parse(target).map(|u| u.origin().ascii_serialization());
        self.0.is_match(target) || origin.is_ok_and(|o| self.0.is_match(o))
    }
}

/// Characters a shell gives a meaning to, refused in a test target although a URL may hold
/// some of them (`;`, `'`, `(`, `*`, `$`): the target is data, and a test script that expands
/// `$1` unquoted must not turn it into code. Percent-encode them (`%3B`).
const SHELL_CHARACTERS: &str = "\\\"`<>{}$;|()'*";

/// Host names of cloud metadata services (GCP's; AWS, Azure, Alibaba and OpenStack answer on
/// the addresses of [`super::is_forbidden_test_address`]).
const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata.goog", "metadata"];

/// Shells and interpreters: they run code given as words (`sh -c`, `perl -E`, `node -p`,
/// `pwsh -Command`) or the file named by their first operand. Compared with the program's file
/// name without a version suffix (`python3.12` is `python`).
const INTERPRETERS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "mksh",
    "ash",
    "yash",
    "fish",
    "csh",
    "tcsh",
    "pwsh",
    "powershell",
    "cmd",
    "perl",
    "python",
    "pypy",
    "node",
    "nodejs",
    "deno",
    "bun",
    "ruby",
    "php",
    "lua",
    "luajit",
    "tclsh",
    "wish",
    "expect",
    "rscript",
    "r",
    "awk",
    "gawk",
    "mawk",
    "nawk",
    "jshell",
    "groovy",
    "osascript",
];

/// Programs that start another program named by their words (`env`, `timeout`, `xargs`, …).
const WRAPPERS: &[&str] = &[
    "env", "timeout", "xargs", "nice", "nohup", "stdbuf", "setsid", "sudo", "doas", "su",
    "runuser", "time", "ionice", "chrt", "taskset", "flock", "unbuffer", "script", "watch",
    "strace", "ltrace", "gdb", "chroot", "unshare", "nsenter", "ssh", "busybox",
];

/// What the program does with its words, as far as `{target}` is concerned.
#[derive(PartialEq)]
enum Program {
    /// [`INTERPRETERS`].
    Interpreter,
    /// [`WRAPPERS`].
    Wrapper,
    /// Any other program, or one phasegate cannot see (a Job's image entrypoint).
    Other,
}

impl Program {
    fn of(program: Option<&str>) -> Program {
        let Some(program) = program else {
            return Program::Other;
        };
        let name = program.rsplit(['/', '\\']).next().unwrap_or(program);
        let name = name.to_ascii_lowercase();
        let name = name.strip_suffix(".exe").unwrap_or(&name);
        let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || matches!(c, '.' | '-'));
        if INTERPRETERS.contains(&base) {
            Program::Interpreter
        } else if WRAPPERS.contains(&base) {
            Program::Wrapper
        } else {
            Program::Other
        }
    }
}

/// Whether a word is an option (`-x`, `--eval`, `+x`, `cmd`'s `/c`).
fn is_option(word: &str) -> bool {
    (word.len() > 1 && word.starts_with(['-', '+'])) || (word.len() == 2 && word.starts_with('/'))
}

/// Options that take code as their value in some program (`sh -c`, `-xc`, `perl -E`,
/// `node -p`, `php -r`, `pwsh -Command`, `--eval`, `cmd /c`).
fn takes_code(option: &str) -> bool {
    let short = option.strip_prefix('-').filter(|o| !o.starts_with('-'));
    let short_cluster = short.is_some_and(|o| {
        !o.is_empty()
            && o.chars().all(|c| c.is_ascii_alphabetic())
            && o.contains(['c', 'e', 'E', 'p', 'r'])
    });
    let long = option.trim_start_matches('-').to_ascii_lowercase();
    short_cluster
        || matches!(option, "/c" | "/C" | "/k" | "/K")
        || (option.starts_with('-')
            && matches!(
                long.as_str(),
                "command"
                    | "eval"
                    | "exec"
                    | "execute"
                    | "print"
                    | "script"
                    | "require"
                    | "import"
                    | "run"
                    | "encodedcommand"
                    | "file"
                    | "init-command"
            ))
}

/// `{target}` comes from the event, so it is data, never code (docs/events.md). Every word that
/// holds it must be `{target}` itself, or end with it after a plain prefix: an option's value
/// (`--base-url={target}`) or a name (`URL:{target}`, Robot Framework's `--variable`), never
/// the value of an option that takes code in some program ([`takes_code`]).
///
/// A shell or interpreter ([`INTERPRETERS`]) gets it only as a word of its own that follows no
/// option and is not its first operand (the script it would run): `sh -c 'curl "$1"' sh
/// {target}` passes the URL as `$1`, while `sh -c {target}`, `sh -cx 'echo {target}'`,
/// `node -p {target}` or `bash {target}` are refused whatever the option's spelling. A wrapper
/// ([`WRAPPERS`]) never gets it. `program` is `None` for a Job's image entrypoint.
pub(super) fn check_target_words(program: Option<&str>, words: &[String]) -> Result<(), SpecError> {
    let refuse = |why: String| Err(SpecError::invalid("test.args", why));
    let kind = Program::of(program);
    let name = program.unwrap_or("the image's entrypoint");
    let mut operands = 0;
    // `sh -c script`, `perl -e code`: the script is given, so every operand is data.
    let mut script_given = false;
    for (i, word) in words.iter().enumerate() {
        let previous = i.checked_sub(1).map(|j| words[j].as_str());
        // For an interpreter, an option's value is not an operand (`sh -c script`).
        let option_value = kind == Program::Interpreter && previous.is_some_and(is_option);
        script_given |= option_value && previous.is_some_and(takes_code) && !is_option(word);
        let operand = !is_option(word) && !option_value;
        operands += usize::from(operand);
        if !word.contains("{target}") {
            continue;
        }
        if kind == Program::Wrapper {
            return refuse(format!(
                "{name} starts other programs: {{target}} may not be one of its words"
            ));
        }
        if word != "{target}" {
            let prefix = word.strip_suffix("{target}").unwrap_or_default();
            let name_part = prefix.strip_suffix(['=', ':']).unwrap_or_default();
            let plain = !name_part.trim_start_matches('-').is_empty()
                && name_part
                    .trim_start_matches('-')
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if kind == Program::Interpreter || !plain {
                return refuse(format!(
                    "{word:?} puts {{target}} inside a word{}: give it as an argument of its \
                     own (`sh -c 'run \"$1\"' sh {{target}}`), so the event's URL is never code",
                    if kind == Program::Interpreter {
                        format!(" of {name}")
                    } else {
                        String::new()
                    }
                ));
            }
            if takes_code(name_part) {
                return refuse(format!(
                    "{word:?} hands {{target}} to an option that may run code"
                ));
            }
            continue;
        }
        match previous {
            Some(p) if kind == Program::Interpreter && is_option(p) => {
                return refuse(format!(
                    "{{target}} follows {p:?}, which may make {name} run it as code: pass it \
                     after the script (`sh -c 'run \"$1\"' sh {{target}}`)"
                ));
            }
            Some(p) if takes_code(p) => {
                return refuse(format!(
                    "{{target}} follows {p:?}, an option that may run code"
                ));
            }
            _ => {}
        }
        if kind == Program::Interpreter && operands == 1 && !script_given {
            return refuse(format!(
                "{{target}} is the first operand of {name}: the script it would run"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_http_and_https_targets() {
        for ok in [
            "http://petstore.test:8080",
            "https://app.example.com/base?x=1&y=2",
            "http://10.0.0.7/",
            "http://[::1]:8080/a,b",
            "http://10.0.0.7/a?x=1&y=%3B",
        ] {
            check_target(ok).expect(ok);
        }
    }

    #[test]
    fn refuses_targets_that_are_not_plain_http_urls() {
        for (bad, why) in [
            ("file:///etc/passwd", "http"),
            ("gopher://x", "http"),
            ("petstore.test:8080", "http"),
            ("http://user:pw@host/", "credentials"),
            ("http://token@host/", "credentials"),
            ("http://host/a b", "' '"),
            ("http://host/\n-x", "'\\n'"),
            ("http://host/\u{2028}", "u{2028}"),
            ("http://host/\u{85}", "u{85}"),
            ("http://host/`id`", "'`'"),
            ("http://host/\"", "'\"'"),
            ("http://hoşt/", "'ş'"),
            ("http://host\\@evil/", "'\\\\'"),
            ("http://", "URL"),
            ("http://x/;IFS=,;c=touch,MARKER;$c;#", "';'"),
            ("http://x/$(id)", "'$'"),
            ("http://x/'a'", "'\\''"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://[fe80::1]/", "link-local"),
            ("http://[::ffff:169.254.169.254]/", "link-local"),
            ("http://[fd00:ec2::254]/", "metadata"),
            ("http://100.100.100.200/", "metadata"),
            (
                "http://metadata.google.internal/computeMetadata/v1/",
                "metadata",
            ),
        ] {
            let err = check_target(bad).expect_err(bad).to_string();
            assert!(
                err.contains("test.target") && err.contains(why),
                "{bad}: {err}"
            );
        }
        let long = format!("http://host/{}", "a".repeat(MAX_TARGET_LEN));
        assert!(check_target(&long).is_err());
    }

    fn words(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn refuses_the_target_as_code_whatever_the_option_spelling() {
        for bad in [
            &["sh", "-c", "curl {target}/health"][..],
            &["bash", "-ec", "run --url={target}"],
            &["python3", "-c", "import t; t.run('{target}')"],
            &["node", "-e", "fetch('{target}')"],
            &["sh", "-c", "{target}"],
            &["sh", "-xc", "{target}"],
            &["sh", "-cx", "echo {target}"],
            &["sh", "-c", "-x", "{target}"],
            &["sh", "-c", "--", "{target}"],
            &["/usr/bin/perl", "-E", "{target}"],
            &["node", "-p", "{target}"],
            &["pwsh", "-Command", "{target}"],
            &["python3.12", "--", "{target}"],
            &["bash", "{target}"],
            &["env", "X=1", "{target}"],
            &["timeout", "5", "./t.sh", "{target}"],
            &["robot", "--variable", "URL:{target}/x"],
            &["./t.sh", "--eval={target}"],
            &["./t.sh", "-c", "{target}"],
            &["./t.sh", "x{target}"],
        ] {
            let err = check_target_words(Some(bad[0]), &words(&bad[1..]))
                .expect_err("refused")
                .to_string();
            assert!(
                err.contains("test.args") && err.contains("{target}"),
                "{bad:?}: {err}"
            );
        }
        assert!(check_target_words(None, &words(&["-c", "{target}"])).is_err());
        assert!(check_target_words(None, &words(&["--command={target}"])).is_err());
    }

    #[test]
    fn passes_the_target_as_data() {
        for ok in [
            &["./launchTests.sh", "{target}"][..],
            &["sh", "-c", "curl \"$1\"", "sh", "{target}"],
            &["sh", "-c", "echo \"$1\"", "ignored-by-sh", "{target}"],
            &["python3", "suite.py", "{target}"],
            &["sh", "-c", "exit 0", "{target}"],
            &["perl", "-e", "print @ARGV", "{target}"],
            &["pytest", "--base-url={target}"],
            &["pytest", "--base-url", "{target}"],
            &["robot", "--variable", "URL:{target}", "suite.robot"],
        ] {
            check_target_words(Some(ok[0]), &words(&ok[1..]))
                .unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        check_target_words(None, &words(&["{target}"])).expect("an entrypoint's argument");
        check_target_words(None, &words(&["--url", "{target}"])).expect("an option's value");
    }
}
