//! Finding the scalar a key names with a real YAML 1.2 parser (`saphyr-parser`): where its
//! token starts and ends in the text (quotes included, anchor and tag excluded), its decoded
//! value, style and tag. Only the first document counts (the one Helm reads). The parser's
//! events become a small tree of nodes with their offsets, since a list item is chosen by a
//! field that may come after the scalar; then the key's steps walk it. A mapping key on the way
//! that appears twice is refused, since parsers disagree on which one wins; so is a selector
//! two items match.

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};

use super::ValuesError;
use super::key::{Path, Step};

/// A scalar found in the text: its decoded value, style, and the byte range of its token.
#[derive(Debug)]
pub(super) struct Found {
    pub(super) value: String,
    pub(super) style: ScalarStyle,
    /// The scalar's explicit tag, resolved (`!!str` is `tag:yaml.org,2002:str`).
    pub(super) tag: Option<String>,
    /// Inside a flow collection (`[…]`, `{…}`), where libyaml-based readers refuse some `:` in
    /// a plain scalar (Go YAML v2, under Helm, any `:` not followed by a space).
    pub(super) flow: bool,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// A node of the first document, as far as a key can name it.
enum Node {
    Scalar {
        value: String,
        style: ScalarStyle,
        tag: Option<String>,
        /// Byte offset where the parser puts the scalar (its properties included).
        at: usize,
        flow: bool,
    },
    Map(Vec<(Node, Node)>),
    Seq(Vec<Node>),
    Alias,
}

impl Node {
    /// What the node is, for messages.
    fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "scalar",
            Node::Map(_) => "mapping",
            Node::Seq(_) => "sequence",
            Node::Alias => "alias",
        }
    }

    /// The text of a plain or quoted scalar.
    fn text(&self) -> Option<&str> {
        match self {
            Node::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The values under `name` in a mapping (more than one: a duplicate key).
    fn values<'n, 'k>(
        entries: &'n [(Node, Node)],
        name: &'k str,
    ) -> impl Iterator<Item = &'n Node> + use<'n, 'k> {
        entries
            .iter()
            .filter(move |(k, _)| k.text() == Some(name))
            .map(|(_, v)| v)
    }
}

/// The scalar `path` (parsed from `key`, which messages name) names in the first document of
/// `text`; the image reference's part, if any, is the caller's.
pub(super) fn find(text: &str, key: &str, path: &Path) -> Result<Found, ValuesError> {
    let missing = |why: String| ValuesError::KeyMissing {
        key: key.to_string(),
        why,
    };
    let root = document(text)?.ok_or_else(|| missing("the file holds no document".into()))?;
    let node = walk(&root, path, key)?;
    let Node::Scalar {
        value,
        style,
        tag,
        at,
        flow,
    } = node
    else {
        return Err(ValuesError::NotScalar {
            key: key.to_string(),
            found: node.kind(),
        });
    };
    let found = locate(text, key, value, *style, tag.clone(), *at)?;
    Ok(Found {
        flow: *flow,
        ..found
    })
}

/// Follows the key's steps from the root; a step that finds nothing is named.
fn walk<'n>(root: &'n Node, path: &Path, key: &str) -> Result<&'n Node, ValuesError> {
    let missing = |why: String| ValuesError::KeyMissing {
        key: key.to_string(),
        why,
    };
    let mut node = root;
    let mut here = String::new();
    for (step, written) in &path.steps {
        let within = if here.is_empty() {
            "the file".to_string()
        } else {
            format!("`{here}`")
        };
        node = match (step, node) {
            (Step::Key(name), Node::Map(entries)) => {
                let mut found = Node::values(entries, name);
                let first = found.next();
                if found.next().is_some() {
                    return Err(ValuesError::DuplicateKey(key.to_string()));
                }
                first.ok_or_else(|| missing(format!("{within} has no key `{written}`")))?
            }
            (Step::Index(i), Node::Seq(items)) => items.get(*i).ok_or_else(|| {
                missing(format!(
                    "{within} has {} items, no `{written}`",
                    items.len()
                ))
            })?,
            (Step::Match { field, value }, Node::Seq(items)) => {
                match matching(items, field, value, key)?[..] {
                    [one] => one,
                    [] => return Err(missing(format!("no item of {within} matches `{written}`"))),
                    ref many => {
                        return Err(ValuesError::Ambiguous {
                            key: key.to_string(),
                            selector: written.clone(),
                            count: many.len(),
                        });
                    }
                }
            }
            (Step::Key(_), other) => {
                return Err(missing(format!(
                    "{within} is a {}, not a mapping with `{written}`",
                    other.kind()
                )));
            }
            (_, other) => {
                return Err(missing(format!(
                    "{within} is a {}, not a list to select `{written}` in",
                    other.kind()
                )));
            }
        };
        if !here.is_empty() && !written.starts_with('[') {
            here.push('.');
        }
        here.push_str(written);
    }
    Ok(node)
}

/// The items of a list that are mappings whose `field` holds the scalar `value`; an item holding
/// `field` twice is refused, as parsers disagree on which one counts.
fn matching<'n>(
    items: &'n [Node],
    field: &str,
    value: &str,
    key: &str,
) -> Result<Vec<&'n Node>, ValuesError> {
    let mut found = Vec::new();
    for item in items {
        let Node::Map(entries) = item else { continue };
        let mut fields = Node::values(entries, field);
        let first = fields.next();
        if fields.next().is_some() {
            return Err(ValuesError::DuplicateKey(key.to_string()));
        }
        if first.and_then(Node::text) == Some(value) {
            found.push(item);
        }
    }
    Ok(found)
}

/// The first document of `text` as a tree (None: no document).
fn document(text: &str) -> Result<Option<Node>, ValuesError> {
    let mut offsets: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
    offsets.push(text.len());
    // Open containers, each with a mapping's pending key and whether it is a flow collection.
    let mut open: Vec<(Node, Option<Node>, bool)> = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| ValuesError::Invalid(e.to_string()))?;
        let at = offsets[span.start.index().min(offsets.len() - 1)];
        // Nothing in a flow collection is block; a flow collection opens with its bracket.
        let flow = open.last().is_some_and(|o| o.2)
            || text[skip_properties(text, at)..].starts_with(['[', '{']);
        let node = match event {
            // Helm reads the first document only: a key in a later one is not in the values.
            Event::DocumentEnd => break,
            Event::MappingStart(..) => {
                open.push((Node::Map(Vec::new()), None, flow));
                continue;
            }
            Event::SequenceStart(..) => {
                open.push((Node::Seq(Vec::new()), None, flow));
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => match open.pop() {
                Some((node, ..)) => node,
                None => continue,
            },
            Event::Scalar(value, style, _, tag) => Node::Scalar {
                value: value.to_string(),
                style,
                tag: tag.as_deref().map(tag_name),
                at,
                flow: open.last().is_some_and(|o| o.2),
            },
            Event::Alias(_) => Node::Alias,
            _ => continue,
        };
        match open.last_mut() {
            None => return Ok(Some(node)),
            Some((Node::Seq(items), ..)) => items.push(node),
            Some((Node::Map(entries), pending, _)) => match pending.take() {
                Some(k) => entries.push((k, node)),
                None => *pending = Some(node),
            },
            Some(_) => {}
        }
    }
    Ok(None)
}

/// Measures the scalar token the parser puts at byte `at` (after any anchor or tag).
fn locate(
    text: &str,
    key: &str,
    value: &str,
    style: ScalarStyle,
    tag: Option<String>,
    at: usize,
) -> Result<Found, ValuesError> {
    let not_scalar = |found| ValuesError::NotScalar {
        key: key.to_string(),
        found,
    };
    if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
        return Err(not_scalar("block scalar"));
    }
    let mut start = skip_properties(text, at);
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
        _ => rest.starts_with(value).then_some(value.len()),
    }
    .ok_or_else(|| not_scalar("multi-line scalar"))?;
    Ok(Found {
        value: value.to_string(),
        style,
        tag,
        flow: false,
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
