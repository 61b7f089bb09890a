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

/// The YAML core schema's tag for strings, as the parser resolves `!!str`.
const STR_TAG: &str = "tag:yaml.org,2002:str";

/// What gives a scalar its type besides its text. Two scalars with the same text and kind read
/// as the same value of the same type under YAML 1.1 and 1.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// A string to every reader: quoted, tagged `!!str` or `!`, or plain text no schema types.
    Str,
    /// A plain scalar that YAML 1.1 or 1.2 takes for a number, boolean, null or timestamp:
    /// its type lives in its plain text, so it is only ever written plain and verbatim.
    Plain,
    /// Any other explicit tag (`!!int`, `!custom`): the tag gives the type.
    Tagged(String),
}

/// The kind of a scalar with this decoded value, style and resolved tag. None when readers
/// disagree on its type: a plain scalar with the non-specific tag `!` is a string by the YAML
/// spec (and to go-yaml v2), but PyYAML, go-yaml v3 and serde_yaml resolve `! 0` as if it had
/// no tag, a number.
pub(super) fn kind(value: &str, quoted: bool, tag: Option<&str>) -> Option<Kind> {
    Some(match tag {
        Some("!") if !quoted && !is_string(value) => return None,
        Some(tag) if is_string_tag(tag) => Kind::Str,
        Some(tag) => Kind::Tagged(tag.to_string()),
        None if quoted || is_string(value) => Kind::Str,
        None => Kind::Plain,
    })
}

/// True for the tags that make a scalar a string: `!!str`, and the non-specific `!` on a
/// quoted scalar or on plain text no schema types (other plain text makes [`kind`] refuse).
pub(super) fn is_string_tag(tag: &str) -> bool {
    tag == STR_TAG || tag == "!"
}

/// True when `plain`, written as a plain scalar, is a string to YAML 1.1 and 1.2 readers alike.
pub(super) fn is_string(plain: &str) -> bool {
    resolve(plain) == Resolved::Str
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
    fn a_plain_scalar_is_typed_unless_every_reader_takes_it_for_a_string() {
        assert_eq!(kind("1.2.3", false, None), Some(Kind::Str));
        assert_eq!(kind("1.10", true, None), Some(Kind::Str));
        assert_eq!(kind("1.10", false, None), Some(Kind::Plain));
        assert_eq!(kind("yes", false, None), Some(Kind::Plain));
        assert_eq!(kind("42", false, Some(STR_TAG)), Some(Kind::Str));
        assert_eq!(
            kind("42", true, Some("tag:yaml.org,2002:int")),
            Some(Kind::Tagged("tag:yaml.org,2002:int".into()))
        );
    }

    #[test]
    fn the_non_specific_tag_is_a_string_only_where_every_reader_agrees() {
        assert_eq!(kind("42", true, Some("!")), Some(Kind::Str));
        assert_eq!(kind("v1.2", false, Some("!")), Some(Kind::Str));
        // PyYAML and go-yaml v3 read `! 42` as the number 42, the YAML spec as the string "42".
        assert_eq!(kind("42", false, Some("!")), None);
        assert_eq!(kind("true", false, Some("!")), None);
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
