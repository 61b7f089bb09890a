//! Finding the scalar at a dotted key with a real YAML 1.2 parser (`saphyr-parser`): where
//! its token starts and ends in the text (quotes included, anchor and tag excluded), its
//! decoded value, style and tag. Only the first document counts (the one Helm reads), and a key
//! that appears twice on the path is refused, since parsers disagree on which one wins.

use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};

use super::ValuesError;

/// A scalar found in the text: its decoded value, style, and the byte range of its token.
#[derive(Debug)]
pub(super) struct Found {
    pub(super) value: String,
    pub(super) style: ScalarStyle,
    /// The scalar's explicit tag, resolved (`!!str` is `tag:yaml.org,2002:str`).
    pub(super) tag: Option<String>,
    pub(super) start: usize,
    pub(super) end: usize,
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

/// The scalar at the dotted `key` of the first document of `text`.
pub(super) fn find(text: &str, key: &str) -> Result<Found, ValuesError> {
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
    let (value, style, tag) = match event {
        Event::Scalar(v, style, _, tag) => (v, *style, tag.as_deref().map(tag_name)),
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
        tag,
        start,
        end: start + len,
    })
}

/// A tag as one string: its handle as resolved by the parser, then its suffix.
fn tag_name(tag: &Tag) -> String {
    format!("{}{}", tag.handle, tag.suffix)
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
