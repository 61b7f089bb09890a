//! What a plain YAML scalar means to the parsers that read a values file: YAML 1.2's core
//! schema (phasegate's parser, most tools) and YAML 1.1 as Helm's Go YAML reads it (`yes` and
//! `on` are booleans, `0o17` and `017` octal, `1_000` and `12:30` numbers, dates timestamps).
//! A promoted value must mean the same in both, so the file's structure and types never change.

use std::sync::LazyLock;

use regex::Regex;

/// The type a plain scalar resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    Null,
    Bool,
    Int,
    Float,
    Timestamp,
    Str,
}

static NULL: LazyLock<Regex> = LazyLock::new(|| re(r"^(~|null|Null|NULL|)$"));
static BOOL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$")
});
static INT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^[-+]?(0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*",
        r"|[1-9][0-9_]*(:[0-5]?[0-9])+)$"
    ))
});
static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^([-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+]?[0-9]+)?",
        r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+",
        r"|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*",
        r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$"
    ))
});
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}",
        r"([Tt ]+[0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]*)?[ \t]*(Z|[-+][0-9]{1,2}(:[0-9]{2})?)?)?$"
    ))
});

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid regex")
}

/// The type a plain scalar has under YAML 1.1 or 1.2, whichever is not a string: the union of
/// both schemas, so "string" means string for every reader.
fn resolve(plain: &str) -> Resolved {
    if NULL.is_match(plain) {
        Resolved::Null
    } else if BOOL.is_match(plain) {
        Resolved::Bool
    } else if INT.is_match(plain) {
        Resolved::Int
    } else if FLOAT.is_match(plain) {
        Resolved::Float
    } else if TIMESTAMP.is_match(plain) || matches!(plain, "=" | "<<") {
        Resolved::Timestamp
    } else {
        Resolved::Str
    }
}

/// True when `new`, written plain where the plain scalar `old` was, has the type `old` had
/// (a string stays a string, `41` → `42` stays an integer) under YAML 1.1 and 1.2. Otherwise
/// the caller quotes it, which makes it a string.
pub(super) fn keeps_type(old: &str, new: &str) -> bool {
    let new_type = resolve(new);
    // Both readers agree on plain integers and strings of this shape only when the value is
    // a decimal integer; other numbers (`1.10`, `0o17`, `1_000`) differ between them.
    let same_in_both = |v: &str| v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0');
    match new_type {
        Resolved::Str => true,
        Resolved::Int => resolve(old) == Resolved::Int && same_in_both(new) && same_in_both(old),
        _ => false,
    }
}

/// Characters a YAML parser may treat as a line break, that are control characters, or that
/// are invisible (Unicode format characters, category Cf, the byte-order mark among them).
pub(super) fn breaks_or_hides(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}')
        || matches!(
            c,
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_non_string_plain_scalar_of_yaml_1_1_and_1_2() {
        for (plain, expected) in [
            ("~", Resolved::Null),
            ("null", Resolved::Null),
            ("yes", Resolved::Bool),
            ("on", Resolved::Bool),
            ("N", Resolved::Bool),
            ("False", Resolved::Bool),
            ("0x1F", Resolved::Int),
            ("0o17", Resolved::Int),
            ("017", Resolved::Int),
            ("0b101", Resolved::Int),
            ("1_000", Resolved::Int),
            ("12:30", Resolved::Int),
            ("-42", Resolved::Int),
            ("1.10", Resolved::Float),
            ("1e3", Resolved::Float),
            (".5", Resolved::Float),
            ("190:20:30.15", Resolved::Float),
            (".inf", Resolved::Float),
            ("-.Inf", Resolved::Float),
            (".NaN", Resolved::Float),
            ("2001-12-14", Resolved::Timestamp),
            ("2001-12-14t21:59:43.10-05:00", Resolved::Timestamp),
            ("<<", Resolved::Timestamp),
        ] {
            assert_eq!(resolve(plain), expected, "{plain}");
        }
        for string in [
            "1.2.3",
            "v1.10",
            "2.0.1-rc1",
            "sha-4f2a9c",
            "latest",
            "yesterday",
            "1.2.3_4",
        ] {
            assert_eq!(resolve(string), Resolved::Str, "{string}");
        }
    }

    #[test]
    fn keeps_plain_only_when_the_type_holds() {
        assert!(keeps_type("1.2.2", "1.2.3"));
        assert!(keeps_type("41", "42"));
        assert!(!keeps_type("1.0", "1.10"));
        assert!(!keeps_type("v1", "yes"));
        assert!(!keeps_type("41", "017"));
        assert!(!keeps_type("v1", "42"));
    }

    #[test]
    fn spots_line_breaks_controls_and_invisible_characters() {
        for c in [
            '\n', '\r', '\u{85}', '\u{2028}', '\u{2029}', '\u{FEFF}', '\u{0}', '\u{1B}', '\u{9B}',
            '\u{200B}', '\u{202E}', '\u{2066}', '\u{AD}', '\t',
        ] {
            assert!(breaks_or_hides(c), "{c:?}");
        }
        for c in ['a', '1', '.', '-', 'é', '☕', ' '] {
            assert!(!breaks_or_hides(c), "{c:?}");
        }
    }
}
