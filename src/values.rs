//! The format-preserving edit of a values file: pure functions `&str -> Result<String>`.
//!
//! A YAML library that loads and re-dumps the file loses comments, quoting and layout, which is
//! exactly what a GitOps repository must keep. So the edit replaces only the bytes of one scalar:
//! a real YAML parser (`saphyr-parser`, YAML 1.2) finds the node at the dotted key and where it
//! starts; the scalar token itself (quotes included, anchor excluded) is measured from there;
//! everything else — comments, order, quoting of other values, indentation, blank lines, CRLF,
//! a missing final newline, `---` markers — is kept byte for byte. Every edit is read back.

use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle};

mod scalar;

/// Errors of reading or editing a values file. Messages name the key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ValuesError {
    /// The file is not valid YAML.
    #[error("values file is not valid YAML: {0}")]
    Invalid(String),
    /// No node at the dotted key.
    #[error("key `{0}` not found in values file")]
    KeyMissing(String),
    /// The node at the key is not a single-line scalar.
    #[error("key `{key}` is not a scalar ({found})")]
    NotScalar { key: String, found: &'static str },
    /// A key on the path appears twice in one mapping: parsers disagree on which one wins.
    #[error("key `{0}` appears twice on the path; parsers disagree on which one counts")]
    DuplicateKey(String),
    /// The new value cannot be written (versions are one line).
    #[error("value for key `{key}` is not allowed: {reason}")]
    BadValue { key: String, reason: &'static str },
}

/// A scalar found in the text: its decoded value, style, and the byte range of its token.
#[derive(Debug)]
struct Found {
    value: String,
    style: ScalarStyle,
    start: usize,
    end: usize,
}

/// Reads the string value of the scalar at a dotted key path (e.g. `image.version`), unquoted.
pub fn read_scalar(text: &str, key: &str) -> Result<String, ValuesError> {
    find(text, key).map(|f| f.value)
}

/// Returns `text` with the scalar at `key` replaced by `value`, everything else byte for byte.
pub fn set_scalar(text: &str, key: &str, value: &str) -> Result<String, ValuesError> {
    let bad = |reason| ValuesError::BadValue {
        key: key.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(bad("it is empty"));
    }
    if value.chars().any(scalar::breaks_or_hides) {
        return Err(bad(
            "it contains a line break, control or invisible format character",
        ));
    }
    let found = find(text, key)?;
    let token = match found.style {
        ScalarStyle::SingleQuoted => single_quoted(value),
        ScalarStyle::DoubleQuoted => double_quoted(value),
        _ if plain_is_safe(value) && scalar::keeps_type(&found.value, value) => value.to_string(),
        _ => single_quoted(value),
    };
    // `version:` with nothing after the colon: the empty scalar sits right after it.
    let token = if found.start == found.end && text[..found.start].ends_with(':') {
        format!(" {token}")
    } else {
        token
    };
    let edited = format!("{}{token}{}", &text[..found.start], &text[found.end..]);
    match read_scalar(&edited, key) {
        Ok(back) if back == value => Ok(edited),
        _ => Err(bad("the edited file would not read back the same value")),
    }
}

/// A container on the way down to the key.
struct Frame {
    /// The key under which this container sits in its parent (None: root, list item, or a
    /// complex key — none of which a dotted key can name).
    name: Option<String>,
    /// For a mapping: whether the next node is a key, and the last key seen.
    map: Option<(bool, Option<String>)>,
    /// The keys of this mapping seen so far that lie on the path to the target key.
    keys: Vec<String>,
}

fn find(text: &str, key: &str) -> Result<Found, ValuesError> {
    let target: Vec<&str> = key.split('.').collect();
    let mut offsets: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
    offsets.push(text.len());
    let mut stack: Vec<Frame> = Vec::new();
    let mut found: Option<Result<Found, ValuesError>> = None;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| ValuesError::Invalid(e.to_string()))?;
        // Helm reads the first document only: a key in a later one is not in the values.
        if matches!(event, Event::DocumentEnd) {
            break;
        }
        let opens = matches!(event, Event::MappingStart(..) | Event::SequenceStart(..));
        let node = opens || matches!(event, Event::Scalar(..) | Event::Alias(_));
        if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
            stack.pop();
            toggle(&mut stack);
            continue;
        }
        if !node {
            continue;
        }
        let (is_key, key_here) = match stack.last().and_then(|f| f.map.as_ref()) {
            Some((true, _)) => (true, None),
            Some((false, k)) => (false, k.clone()),
            None => (false, None),
        };
        if is_key {
            let name = match &event {
                Event::Scalar(v, ..) => Some(v.to_string()),
                _ => None,
            };
            if let Some(n) = name.as_deref()
                && on_path(&stack, n, &target)
            {
                let frame = stack.last_mut().expect("a key is inside a mapping");
                if frame.keys.iter().any(|k| k == n) {
                    return Err(ValuesError::DuplicateKey(key.to_string()));
                }
                frame.keys.push(n.to_string());
            }
            if let Some(Frame {
                map: Some((_, k)), ..
            }) = stack.last_mut()
            {
                *k = name;
            }
        } else if found.is_none()
            && key_here.is_some()
            && path_is(&stack, key_here.as_deref(), &target)
        {
            let start = offsets[span.start.index().min(offsets.len() - 1)];
            found = Some(locate(text, key, &event, start));
        }
        if opens {
            let name = if is_key { None } else { key_here };
            let map = matches!(event, Event::MappingStart(..)).then_some((true, None));
            stack.push(Frame {
                name,
                map,
                keys: Vec::new(),
            });
        } else {
            toggle(&mut stack);
        }
    }
    found.unwrap_or_else(|| Err(ValuesError::KeyMissing(key.to_string())))
}

/// A node ended: in a mapping, a key is followed by a value and a value by a key.
fn toggle(stack: &mut [Frame]) {
    if let Some(Frame {
        map: Some((expect_key, _)),
        ..
    }) = stack.last_mut()
    {
        *expect_key = !*expect_key;
    }
}

/// True when `key` in the innermost mapping is the next segment of the dotted `target`.
fn on_path(stack: &[Frame], key: &str, target: &[&str]) -> bool {
    let names: Vec<Option<&str>> = stack.iter().skip(1).map(|f| f.name.as_deref()).collect();
    names.len() < target.len()
        && names.iter().zip(target).all(|(n, t)| *n == Some(*t))
        && target[names.len()] == key
}

/// True when the value under `key_here` in the innermost mapping sits at the dotted `target`.
fn path_is(stack: &[Frame], key_here: Option<&str>, target: &[&str]) -> bool {
    let names = stack.iter().skip(1).map(|f| f.name.as_deref());
    let path: Vec<Option<&str>> = names.chain(std::iter::once(key_here)).collect();
    path.len() == target.len() && path.iter().zip(target).all(|(p, t)| *p == Some(*t))
}

/// Measures the scalar token that starts at byte `start` (after any anchor or tag).
fn locate(text: &str, key: &str, event: &Event, start: usize) -> Result<Found, ValuesError> {
    let not_scalar = |found| ValuesError::NotScalar {
        key: key.to_string(),
        found,
    };
    let (value, style) = match event {
        Event::Scalar(v, style, ..) => (v, *style),
        Event::Alias(_) => return Err(not_scalar("alias")),
        Event::MappingStart(..) => return Err(not_scalar("mapping")),
        _ => return Err(not_scalar("sequence")),
    };
    if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
        return Err(not_scalar("block scalar"));
    }
    let mut start = skip_properties(text, start);
    // The parser puts an empty scalar (`key:` and nothing) at its key's colon.
    if value.is_empty() && style == ScalarStyle::Plain && text[start..].starts_with(':') {
        start += 1;
    }
    let rest = &text[start..];
    let len = match style {
        ScalarStyle::SingleQuoted => closing_quote(rest, '\''),
        ScalarStyle::DoubleQuoted => closing_quote(rest, '"'),
        // A one-line plain scalar is its own text; an empty one (`key:`) has no text.
        _ if value.is_empty() => Some(0),
        _ => rest.starts_with(value.as_ref()).then_some(value.len()),
    }
    .ok_or_else(|| not_scalar("multi-line scalar"))?;
    Ok(Found {
        value: Cow::as_ref(value).to_string(),
        style,
        start,
        end: start + len,
    })
}

/// Skips `&anchor` and `!tag` properties (and the spaces after them) before a scalar.
fn skip_properties(text: &str, mut at: usize) -> usize {
    while text[at..].starts_with(['&', '!']) {
        at += text[at..].find([' ', '\t']).unwrap_or(text.len() - at);
        at += text[at..].len() - text[at..].trim_start_matches([' ', '\t']).len();
    }
    at
}

/// Length of a quoted token starting at its opening quote, up to and including the closing one.
fn closing_quote(token: &str, quote: char) -> Option<usize> {
    let mut chars = token.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if quote == '"' => {
                chars.next();
            }
            '\'' if quote == '\'' && chars.peek().is_some_and(|(_, n)| *n == '\'') => {
                chars.next();
            }
            c if c == quote => return Some(i + 1),
            '\n' | '\r' => return None,
            _ => {}
        }
    }
    None
}

fn single_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn double_quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// True when `value` written plain reads back as the same string in block and flow context.
fn plain_is_safe(value: &str) -> bool {
    const INDICATORS: &[char] = &[
        '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@',
        '`',
    ];
    !value.starts_with(INDICATORS)
        && value.trim() == value
        && !value.contains(": ")
        && !value.contains(" #")
        && !value.ends_with(':')
        && !value.contains([',', '[', ']', '{', '}'])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, input, key, new value, expected output): each edited and compared byte for byte.
    const CORPUS: &[(&str, &str, &str, &str, &str)] = &[
        (
            "same-line comment and double quotes",
            "image:\n  repository: r\n  version: \"1.0\"  # bumped by CD\n",
            "image.version",
            "2.0",
            "image:\n  repository: r\n  version: \"2.0\"  # bumped by CD\n",
        ),
        (
            "single quotes",
            "image:\n  version: '1.0'\n",
            "image.version",
            "2.0",
            "image:\n  version: '2.0'\n",
        ),
        (
            "plain",
            "image:\n  version: 1.0\n",
            "image.version",
            "2.0.1",
            "image:\n  version: 2.0.1\n",
        ),
        (
            "comments above, blank lines and key order",
            "# top\n\nzeta: 1\n\n# the image\nimage:\n\n  # pinned\n  version: v1   # note\n  alpha: x\n",
            "image.version",
            "v2",
            "# top\n\nzeta: 1\n\n# the image\nimage:\n\n  # pinned\n  version: v2   # note\n  alpha: x\n",
        ),
        (
            "four-space indentation and deep nesting",
            "a:\n    b:\n        c:\n            version: 1\n",
            "a.b.c.version",
            "2",
            "a:\n    b:\n        c:\n            version: 2\n",
        ),
        (
            "CRLF line endings",
            "image:\r\n  version: \"1.0\"\r\n  tag: x\r\n",
            "image.version",
            "2.0",
            "image:\r\n  version: \"2.0\"\r\n  tag: x\r\n",
        ),
        (
            "missing final newline",
            "image:\n  version: 1.0",
            "image.version",
            "2.0",
            "image:\n  version: '2.0'",
        ),
        (
            "anchors and aliases elsewhere",
            "base: &base\n  pull: Always\nimage:\n  <<: *base\n  version: 1.0\n",
            "image.version",
            "2.0.1",
            "base: &base\n  pull: Always\nimage:\n  <<: *base\n  version: 2.0.1\n",
        ),
        (
            "anchored scalar keeps its anchor",
            "image:\n  version: &v '1.0' # c\nother: *v\n",
            "image.version",
            "2.0",
            "image:\n  version: &v '2.0' # c\nother: *v\n",
        ),
        (
            "document markers: only the first document is edited (the one Helm reads)",
            "---\nimage:\n  version: v1\n---\nimage:\n  version: v1\n...\n",
            "image.version",
            "v2",
            "---\nimage:\n  version: v2\n---\nimage:\n  version: v1\n...\n",
        ),
        (
            "flow mapping",
            "image: {repository: r, version: \"1.0\"}\n",
            "image.version",
            "2.0",
            "image: {repository: r, version: \"2.0\"}\n",
        ),
        (
            "non-ASCII before the key",
            "# café ☕\nnaïve: ü\nimage:\n  version: 1.0\n",
            "image.version",
            "2.0",
            "# café ☕\nnaïve: ü\nimage:\n  version: '2.0'\n",
        ),
        (
            "same key name at another depth",
            "version: 0.1\nimage:\n  version: v1\n",
            "image.version",
            "v2",
            "version: 0.1\nimage:\n  version: v2\n",
        ),
        (
            "empty value",
            "image:\n  version:\n  tag: x\n",
            "image.version",
            "2.0",
            "image:\n  version: '2.0'\n  tag: x\n",
        ),
        (
            "plain value that needs quotes",
            "image:\n  version: 1.0\n",
            "image.version",
            "2.0 #rc",
            "image:\n  version: '2.0 #rc'\n",
        ),
        (
            "quote inside single quotes",
            "v: 'a'\n",
            "v",
            "it's",
            "v: 'it''s'\n",
        ),
        (
            "quoted key",
            "\"image\":\n  'version': 1.0\n",
            "image.version",
            "2.0",
            "\"image\":\n  'version': '2.0'\n",
        ),
        (
            "escapes in double quotes",
            "v: \"a\\\"b\" # c\n",
            "v",
            "x\"y",
            "v: \"x\\\"y\" # c\n",
        ),
    ];

    /// (plain value, how it is written where a plain `v1` or `41` was): whatever a YAML 1.1 or
    /// 1.2 reader would take for another type than the value's is quoted.
    const TYPED: &[(&str, &str, &str)] = &[
        ("v1", "1.10", "'1.10'"),
        ("v1", "yes", "'yes'"),
        ("v1", "on", "'on'"),
        ("v1", "n", "'n'"),
        ("v1", "0x1F", "'0x1F'"),
        ("v1", "0o17", "'0o17'"),
        ("41", "017", "'017'"),
        ("v1", "1_000", "'1_000'"),
        ("v1", "12:30", "'12:30'"),
        ("v1", "~", "'~'"),
        ("v1", "null", "'null'"),
        ("v1", ".inf", "'.inf'"),
        ("v1", ".nan", "'.nan'"),
        ("v1", "2001-12-14", "'2001-12-14'"),
        ("v1", "1e3", "'1e3'"),
        ("v1", "42", "'42'"),
        ("41", "42", "42"),
        ("v1", "1.2.3", "1.2.3"),
        ("v1", "sha-4f2a9c", "sha-4f2a9c"),
    ];

    #[test]
    fn quotes_a_value_a_plain_scalar_would_change_the_type_of() {
        for (old, value, token) in TYPED {
            let input = format!("image:\n  version: {old}  # c\n");
            let out = set_scalar(&input, "image.version", value).expect(value);
            assert_eq!(out, format!("image:\n  version: {token}  # c\n"), "{value}");
        }
    }

    #[test]
    fn refuses_line_breaks_controls_and_invisible_characters_in_values() {
        for value in [
            "1.0\u{85}x: y",
            "1.0\u{2028}x",
            "1.0\u{2029}",
            "\u{FEFF}1.0",
            "1.0\u{200B}",
            "1.\u{202E}0",
            "1.0\u{1B}[31m",
            "1.0\u{9B}",
            "1.0\tx",
        ] {
            let err = set_scalar("v: '1'\n", "v", value).expect_err(value);
            assert!(
                matches!(err, ValuesError::BadValue { .. }),
                "{value:?}: {err}"
            );
        }
    }

    #[test]
    fn refuses_a_key_that_appears_twice_on_the_path() {
        for text in [
            "image:\n  version: 1\n  version: 2\n",
            "image:\n  version: 1\nimage:\n  version: 2\n",
            "image: {version: 1, version: 2}\n",
        ] {
            let err = read_scalar(text, "image.version").expect_err(text);
            assert!(matches!(err, ValuesError::DuplicateKey(_)), "{text}: {err}");
            assert!(set_scalar(text, "image.version", "3").is_err(), "{text}");
        }
        // Duplicates off the path are not phasegate's business.
        read_scalar("a: 1\na: 2\nimage:\n  version: 1\n", "image.version").expect("off path");
    }

    #[test]
    fn reads_and_edits_only_the_first_document() {
        let text = "a: 1\n---\nimage:\n  version: 1\n";
        assert!(matches!(
            read_scalar(text, "image.version"),
            Err(ValuesError::KeyMissing(_))
        ));
    }

    #[test]
    fn edits_only_the_scalar_in_every_corpus_file() {
        for (name, input, key, value, expected) in CORPUS {
            let out = set_scalar(input, key, value).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&out, expected, "{name}");
            assert_eq!(
                read_scalar(&out, key).expect("reads back"),
                *value,
                "{name}"
            );
        }
    }

    #[test]
    fn reads_the_unquoted_value() {
        assert_eq!(
            read_scalar("image:\n  version: \"1.0\" # x\n", "image.version").expect("reads"),
            "1.0"
        );
        assert_eq!(read_scalar("v: 'it''s'\n", "v").expect("reads"), "it's");
    }

    #[test]
    fn names_the_missing_key() {
        let err = read_scalar("image:\n  tag: 1\n", "image.version").expect_err("missing");
        assert!(
            matches!(&err, ValuesError::KeyMissing(k) if k == "image.version"),
            "{err}"
        );
        assert!(matches!(
            read_scalar("a: 1\n", "image.version"),
            Err(ValuesError::KeyMissing(_))
        ));
        assert!(matches!(
            read_scalar("list:\n  - version: 1\n", "list.version"),
            Err(ValuesError::KeyMissing(_))
        ));
    }

    #[test]
    fn refuses_values_that_are_not_scalars() {
        for (text, found) in [
            ("image:\n  version:\n    a: 1\n", "mapping"),
            ("image:\n  version: [1, 2]\n", "sequence"),
            ("v: &a 1\nimage:\n  version: *a\n", "alias"),
            ("image:\n  version: |\n    1.0\n", "block scalar"),
        ] {
            let err = set_scalar(text, "image.version", "2").expect_err(text);
            assert!(
                matches!(&err, ValuesError::NotScalar { found: f, .. } if *f == found),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn refuses_invalid_yaml_and_bad_values() {
        assert!(matches!(
            read_scalar("a: [1, 2\n", "a"),
            Err(ValuesError::Invalid(_))
        ));
        assert!(matches!(
            set_scalar("v: 1\n", "v", "2\n3"),
            Err(ValuesError::BadValue { .. })
        ));
        assert!(matches!(
            set_scalar("v: 1\n", "v", ""),
            Err(ValuesError::BadValue { .. })
        ));
    }
}
