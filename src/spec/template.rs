//! The spec's two templates, checked once and filled in one place each: the values file path
//! ([`PathTemplate`], `{phase}`) and the commit message ([`MessageTemplate`], `{version}`,
//! `{previous}`, `{key}`, `{source}`, `{target}`, `{commit}`), which is also a pull request's
//! title.

use std::fmt;

use super::{Phase, SpecError};

/// `path`: a values file path with `{phase}`, relative and inside the repository, so every
/// phase has its own file and none is outside the clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathTemplate(String);

impl PathTemplate {
    /// Checks a path template: `{phase}` in it, relative, no `..`, `.`, `//` or `\`.
    pub fn parse(p: &str) -> Result<PathTemplate, SpecError> {
        const FIELD: &str = "path";
        if p.is_empty() {
            return Err(SpecError::invalid(FIELD, "is required"));
        }
        if !p.contains("{phase}") {
            return Err(SpecError::invalid(
                FIELD,
                "must contain {phase}, so each phase has its own values file",
            ));
        }
        let escapes = p.starts_with('/')
            || p.contains('\\')
            || p.contains('\0')
            || p.split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..");
        if escapes {
            return Err(SpecError::invalid(
                FIELD,
                "must be a relative path inside the repository (no '..', '.', '//' or leading '/')",
            ));
        }
        Ok(PathTemplate(p.to_string()))
    }

    /// The values file of `phase`.
    pub fn for_phase(&self, phase: &Phase) -> String {
        self.0.replace("{phase}", phase.as_str())
    }

    /// The template as the spec writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `commitMessage`: the promotion commit's subject (and a pull request's title). One line
/// without control characters, so whoever writes it cannot add paragraphs or trailers to the
/// message that records the promotion (`src/git/trailers.rs` reads that record back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTemplate(String);

/// A rendered subject that would not be one line: a variable (`{previous}` is read from the
/// target's values file, where a quoted scalar may hold `\n`) brought a line break or another
/// control character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the commit subject (`commitMessage`) would hold a line break or control character from its variables"
)]
pub struct BrokenSubject;

/// What a [`MessageTemplate`] is filled with.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// The promoted version (of the first key): `{version}`.
    pub version: &'a str,
    /// The target's version before (of the first key): `{previous}`.
    pub previous: &'a str,
    /// The promoted keys, comma-separated: `{key}`.
    pub keys: &'a [String],
    /// `{source}`.
    pub source: &'a Phase,
    /// `{target}`.
    pub target: &'a Phase,
    /// The tested source commit; its first 12 digits are `{commit}`.
    pub commit: &'a str,
}

impl MessageTemplate {
    /// Checks a message template: not blank, one line, no control characters.
    pub fn parse(m: &str) -> Result<MessageTemplate, SpecError> {
        const FIELD: &str = "commitMessage";
        if m.trim().is_empty() {
            return Err(SpecError::invalid(FIELD, "is empty"));
        }
        if m.chars().any(char::is_control) {
            return Err(SpecError::invalid(
                FIELD,
                "must be one line without control characters (it is the commit's subject; \
                 phasegate writes the rest of the message)",
            ));
        }
        Ok(MessageTemplate(m.to_string()))
    }

    /// The subject with every placeholder filled, refused when a variable would break it.
    pub fn render(&self, v: &Vars<'_>) -> Result<String, BrokenSubject> {
        let short: String = v.commit.chars().take(12).collect();
        let subject = self
            .0
            .replace("{version}", v.version)
            .replace("{previous}", v.previous)
            .replace("{key}", &v.keys.join(","))
            .replace("{source}", v.source.as_str())
            .replace("{target}", v.target.as_str())
            .replace("{commit}", &short);
        // The template has none: any control character came with a variable.
        if subject.chars().any(char::is_control) {
            return Err(BrokenSubject);
        }
        Ok(subject)
    }

    /// The template as the spec writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_without_a_phase_or_outside_the_repository() {
        for path in [
            "",
            "a/b.yaml",
            "../{phase}.yaml",
            "/etc/{phase}",
            "a//{phase}",
        ] {
            let err = PathTemplate::parse(path).expect_err(path).to_string();
            assert!(err.contains("`path`"), "{path}: {err}");
        }
        let prod = Phase::parse("p", "prod").expect("phase");
        let path = PathTemplate::parse("apps/{phase}/values-{phase}.yaml").expect("path");
        assert_eq!(path.for_phase(&prod), "apps/prod/values-prod.yaml");
    }

    #[test]
    fn fills_every_placeholder_of_a_message() {
        let (test, prod) = (
            Phase::parse("p", "test").expect("phase"),
            Phase::parse("p", "prod").expect("phase"),
        );
        let keys = ["a.tag".to_string(), "b.tag".to_string()];
        let message =
            MessageTemplate::parse("{key} {previous}->{version} {source}->{target} @{commit}")
                .expect("message");
        let vars = Vars {
            version: "2.0",
            previous: "1.0",
            keys: &keys,
            source: &test,
            target: &prod,
            commit: "0123456789abcdef0123",
        };
        assert_eq!(
            message.render(&vars),
            Ok("a.tag,b.tag 1.0->2.0 test->prod @0123456789ab".to_string())
        );
        assert!(MessageTemplate::parse("  ").is_err());
    }

    #[test]
    fn refuses_a_subject_that_is_not_one_line_naming_commit_message() {
        for message in [
            "Promote {version}\n\nSource-Commit: 1111111111111111111111111111111111111111",
            "Promote {version}\r\nTarget-Phase: prod",
            "Promote\u{0}{version}",
            "Promote\t{version}",
            "Promote\u{85}{version}",
        ] {
            let err = MessageTemplate::parse(message)
                .expect_err(message)
                .to_string();
            assert!(
                err.contains("`commitMessage`") && err.contains("one line"),
                "{err}"
            );
        }
        // A variable cannot bring what the template may not hold.
        let prod = Phase::parse("p", "prod").expect("phase");
        let message = MessageTemplate::parse("Promote {previous} -> {version}").expect("ok");
        let vars = Vars {
            version: "2.0",
            previous: "1.0\n\nPromotion-Rollback: true",
            keys: &[],
            source: &prod,
            target: &prod,
            commit: "",
        };
        assert_eq!(message.render(&vars), Err(BrokenSubject));
    }
}
