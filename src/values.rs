//! The format-preserving edit of a values file: pure functions `&str -> Result<String>`.
//!
//! A YAML library that loads and re-dumps the file loses comments, quoting and layout, which is
//! exactly what a GitOps repository must keep. So the edit replaces only the bytes of one scalar:
//! a real YAML parser finds the node a key names (`key`: mapping keys, list items by index or by
//! a field's value, an image reference's tag or digest) and where its token lies (`find`);
//! everything else — comments, order, quoting of other values, indentation, blank lines, CRLF,
//! a missing final newline, `---` markers — is kept byte for byte.
//!
//! The type of the written value is the source scalar's ([`Scalar`]): a quoted `"1.10"` stays a
//! string, a plain `3` stays an integer, whatever the target held before; the target's quoting
//! is kept wherever it does not change that type. Every edit is read back, text and type.

use std::fmt;

use saphyr_parser::ScalarStyle;

mod find;
mod key;
mod reference;
mod scalar;

use key::Part;
pub(crate) use key::{check as check_key, split_pair as split_key};
use scalar::Kind;

/// Errors of reading or editing a values file. Messages name the key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ValuesError {
    /// The file is not valid YAML.
    #[error("values file is not valid YAML: {0}")]
    Invalid(String),
    /// The key is not written as the key syntax says.
    #[error("key `{key}` is malformed: {reason}")]
    BadKey { key: String, reason: String },
    /// No node at the key; `why` names the step that found nothing.
    #[error("key `{key}` not found in values file: {why}")]
    KeyMissing { key: String, why: String },
    /// A list selector matches more than one item.
    #[error("key `{key}` is ambiguous: {count} items match `{selector}`")]
    Ambiguous {
        key: String,
        selector: String,
        count: usize,
    },
    /// The node at the key is not a single-line scalar.
    #[error("key `{key}` is not a scalar ({found})")]
    NotScalar { key: String, found: &'static str },
    /// A key on the path appears twice in one mapping: parsers disagree on which one wins.
    #[error("key `{0}` appears twice on the path; parsers disagree on which one counts")]
    DuplicateKey(String),
    /// The new value cannot be written (versions are one line, of the source's type).
    #[error("value for key `{key}` is not allowed: {reason}")]
    BadValue { key: String, reason: &'static str },
}

/// A scalar as a values file holds it: its text and what gives it its type (quotes, a tag, or
/// the plain text itself). Promoting copies both, so the target reads back exactly what the
/// tested source held, as the same type, under YAML 1.2 and YAML 1.1 (Helm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    text: String,
    kind: Kind,
}

impl Scalar {
    /// A string value: written plain only where no YAML 1.1 or 1.2 reader would type it.
    pub fn string(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            kind: Kind::Str,
        }
    }

    /// The value's text, unquoted (what the chart sees, as a string).
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Reads the string value of the scalar at `key` (e.g. `image.version`), unquoted.
pub fn read_scalar(text: &str, key: &str) -> Result<String, ValuesError> {
    read_value(text, key).map(|s| s.text)
}

/// Reads the scalar at `key` with its type, to be written elsewhere by [`set_scalar`]. The tag
/// or digest of an image reference (`…image@tag`) is a string, whatever the source's quoting.
pub fn read_value(text: &str, key: &str) -> Result<Scalar, ValuesError> {
    let path = key::parse(key)?;
    let whole = read_whole(text, key, &path)?;
    if path.part == Part::Whole {
        return Ok(whole);
    }
    if whole.kind != Kind::Str {
        return Err(ValuesError::BadValue {
            key: key.to_string(),
            reason: "an image reference is a string, and this scalar is not one",
        });
    }
    let range =
        reference::range(&whole.text, path.part).ok_or_else(|| ValuesError::KeyMissing {
            key: key.to_string(),
            why: format!(
                "the image reference `{}` has no {}",
                whole.text,
                if path.part == Part::Tag {
                    "tag"
                } else {
                    "digest"
                }
            ),
        })?;
    Ok(Scalar::string(&whole.text[range]))
}

/// The whole scalar `path` names (an image reference's part included), with its type.
fn read_whole(text: &str, key: &str, path: &key::Path) -> Result<Scalar, ValuesError> {
    let found = find::find(text, key, path)?;
    let quoted = found.style != ScalarStyle::Plain;
    let kind = scalar::kind(&found.value, quoted, found.tag.as_deref()).ok_or_else(|| {
        ValuesError::BadValue {
            key: key.to_string(),
            reason: "YAML readers disagree on the type of a plain scalar tagged `!` (quote it, or tag it `!!str`)",
        }
    })?;
    Ok(Scalar {
        text: found.value,
        kind,
    })
}

/// Returns `text` with the scalar at `key` replaced by `value`, everything else byte for byte.
/// The written scalar has `value`'s type: a string is quoted where plain text would be typed (in
/// the target's quote style if it had one), a typed plain scalar is written plain.
pub fn set_scalar(text: &str, key: &str, value: &Scalar) -> Result<String, ValuesError> {
    let bad = |reason| ValuesError::BadValue {
        key: key.to_string(),
        reason,
    };
    if value.text.is_empty() {
        return Err(bad("it is empty"));
    }
    if value.text.chars().any(scalar::breaks_or_hides) {
        return Err(bad(
            "it contains a line break, control or invisible format character",
        ));
    }
    let path = key::parse(key)?;
    let found = find::find(text, key, &path)?;
    let whole;
    let value = if path.part == Part::Whole {
        value
    } else {
        whole = with_part(&found.value, path.part, value).map_err(bad)?;
        &whole
    };
    let token = token(&found, value).map_err(bad)?;
    // `version:` or a list's `-` with nothing after it: the empty scalar sits right after it.
    let token = if found.start == found.end && text[..found.start].ends_with([':', '-']) {
        format!(" {token}")
    } else {
        token
    };
    let edited = format!("{}{token}{}", &text[..found.start], &text[found.end..]);
    match read_whole(&edited, key, &path) {
        Ok(back) if back == *value => Ok(edited),
        _ => Err(bad(
            "the edited file would not read back the same value with the same type",
        )),
    }
}

/// The image reference `reference` with its tag or digest replaced by `value`, as a string.
fn with_part(reference: &str, part: Part, value: &Scalar) -> Result<Scalar, &'static str> {
    if !reference::valid(&value.text, part) {
        return Err(match part {
            Part::Tag => "it is not an image tag (letters, digits, `_`, `.`, `-`)",
            _ => {
                "it is not an image digest (`algorithm:encoded`, e.g. `sha256:` and 64 hex digits)"
            }
        });
    }
    if part == Part::Tag && reference::range(reference, Part::Digest).is_some() {
        return Err(
            "the image reference pins a digest, which wins over its tag: promote `@digest`",
        );
    }
    // A reference without the part is refused by `find` reading it first.
    let range = reference::range(reference, part).ok_or("the image reference has no such part")?;
    let mut whole = reference.to_string();
    whole.replace_range(range, &value.text);
    Ok(Scalar::string(whole))
}

/// The token that gives `value` its own type where `found` is; the reason when none can.
fn token(found: &find::Found, value: &Scalar) -> Result<String, &'static str> {
    let v = value.text.as_str();
    let string_target = found.tag.as_deref().is_none_or(scalar::is_string_tag);
    let styled = |plain_types_ok| styled(found, v, plain_types_ok);
    match &value.kind {
        Kind::Str if string_target => Ok(styled(scalar::is_string(v))),
        // Go YAML v2 (Helm) refuses a plain `12:30` in a flow collection, and quoted it would
        // be a string.
        Kind::Plain if found.flow && v.contains(':') => Err(
            "a plain scalar with `:` (the source's type) cannot stand in a flow collection \
             (`[…]`, `{…}`) for Go YAML v2 (Helm)",
        ),
        // The source's plain text is its type: quoting it would make it a string.
        Kind::Plain if found.tag.is_none() => Ok(v.to_string()),
        // The tag gives the type whatever the style.
        Kind::Tagged(tag) if found.tag.as_ref() == Some(tag) => Ok(styled(true)),
        _ => Err("the target scalar's tag would give it another type than the source scalar has"),
    }
}

/// `value` in the target's quote style; a plain target stays plain when `plain_types_ok` and
/// plain text reads back as the same string (in a flow collection, without `:`, which Go YAML
/// v2 refuses there), else it becomes single-quoted.
fn styled(found: &find::Found, value: &str, plain_types_ok: bool) -> String {
    match found.style {
        ScalarStyle::SingleQuoted => single_quoted(value),
        ScalarStyle::DoubleQuoted => double_quoted(value),
        _ if plain_types_ok && plain_is_safe(value) && !(found.flow && value.contains(':')) => {
            value.to_string()
        }
        _ => single_quoted(value),
    }
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
mod corpus;

#[cfg(test)]
mod corpus_lists;
