//! The test target: the one URL an event hands to the test runners, checked before it is
//! expanded anywhere (docs/events.md).

use super::SpecError;

/// Longest test target: a URL of a deployment, not a document.
const MAX_TARGET_LEN: usize = 2048;

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
        .find(|c| !c.is_ascii_graphic() || matches!(c, '\\' | '"' | '`' | '<' | '>' | '{' | '}'))
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
    Ok(())
}

/// `{target}` comes from the event: it may be an argument of its own, part of an option
/// (`--url={target}`) or a positional argument after a script (`sh -c 'curl "$1"' sh {target}`),
/// but never part of the script a shell or interpreter runs (the argument after `sh -c`,
/// `python -c`, `node -e`), where `$(…)` or `;` in the URL would be code.
pub(super) fn check_no_target_in_script(argv: &[String]) -> Result<(), SpecError> {
    let is_script_flag = |a: &str| {
        let short = a.len() > 1
            && a.starts_with('-')
            && a[1..].chars().all(|c| c.is_ascii_alphabetic())
            && a.ends_with(['c', 'e']);
        short || matches!(a, "/c" | "/C" | "--command" | "--eval")
    };
    for pair in argv.windows(2) {
        if is_script_flag(&pair[0]) && pair[1].contains("{target}") {
            return Err(SpecError::invalid(
                "test.command",
                "puts {target} in a script; pass it as an argument of its own \
                 (`sh -c 'run \"$1\"' sh {target}`) so the event's URL is never code",
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
            "http://[::1]:8080/a;b",
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

    #[test]
    fn refuses_the_target_inside_a_script_but_not_as_an_argument() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for bad in [
            &["sh", "-c", "curl {target}/health"][..],
            &["bash", "-ec", "run --url={target}"],
            &["python3", "-c", "import t; t.run('{target}')"],
            &["node", "-e", "fetch('{target}')"],
            &["sh", "-c", "{target}"],
            &["sh", "-xc", "{target}"],
        ] {
            assert!(check_no_target_in_script(&argv(bad)).is_err(), "{bad:?}");
        }
        for ok in [
            &["./launchTests.sh", "{target}"][..],
            &["sh", "-c", "curl \"$1\"", "sh", "{target}"],
            &["pytest", "--base-url={target}"],
            &["sh", "-c", "echo \"$1\"", "ignored-by-sh", "{target}/pet"],
            &["robot", "--variable", "URL:{target}", "suite.robot"],
        ] {
            assert!(check_no_target_in_script(&argv(ok)).is_ok(), "{ok:?}");
        }
    }
}
