//! The key syntax: which scalar of a values file a key names.
//!
//! `image.version` names mapping keys, `images[name=petstore].newTag` the item of a list whose
//! field `name` is `petstore`, `ports[0]` a list's first item, and a final `@tag` or `@digest`
//! the tag or digest of the image reference held there (`containers[name=app].image@tag`). A
//! mapping key holding `.`, `[`, `]`, `"` or `@` (or spaces at its ends) is written in double
//! quotes, with `\"` and `\\` inside: `annotations."example.com/version"`. A promotion's key may
//! name the source's and the target's scalar apart: `image.tag->images[name=petstore].newTag`.

use super::ValuesError;

/// One step down from a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// A mapping's value under this key.
    Key(String),
    /// A list's item at this index.
    Index(usize),
    /// The one item of a list that is a mapping whose `field` holds the scalar `value`.
    Match { field: String, value: String },
}

/// Which part of the scalar the key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Whole,
    /// The tag of an image reference (`1.2` in `registry:5000/app:1.2`).
    Tag,
    /// The digest of an image reference (`sha256:…` in `app@sha256:…`).
    Digest,
}

impl Part {
    /// How a key ends to name this part.
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Part::Whole => "",
            Part::Tag => "@tag",
            Part::Digest => "@digest",
        }
    }
}

/// A parsed key: the steps from the document's root, each with its text as written (for
/// messages), and the part of the scalar.
#[derive(Debug)]
pub(super) struct Path {
    pub(super) steps: Vec<(Step, String)>,
    pub(super) part: Part,
}

/// The characters that end an unquoted mapping key.
const SPECIAL: &[char] = &['.', '[', ']', '"', '@'];

/// Splits a promotion's key into the source's and the target's (the same without `->`).
pub(crate) fn split_pair(key: &str) -> (&str, &str) {
    match outside_quotes(key, "->") {
        Some(at) => (key[..at].trim(), key[at + 2..].trim()),
        None => (key, key),
    }
}

/// Checks a promotion's key (either side of `->`): the message says what is wrong.
pub(crate) fn check(key: &str) -> Result<(), String> {
    // The comma separates keys in the spec and in `Promoted-Keys`; a line break would end the
    // trailer it is written in.
    if key.contains(',') || key.chars().any(char::is_control) {
        return Err(format!(
            "{key:?}: a key holds no comma (it separates keys) and no control character"
        ));
    }
    let (source, target) = split_pair(key);
    if outside_quotes(target, "->").is_some() {
        return Err(format!(
            "{key:?} has more than one `->` (a mapping key holding `->` is written in quotes)"
        ));
    }
    for side in [source, target] {
        parse(side).map_err(|e| match e {
            ValuesError::BadKey { reason, .. } => format!("{key:?}: {reason}"),
            other => other.to_string(),
        })?;
    }
    Ok(())
}

/// The byte offset of `needle` in `key` outside double quotes and brackets.
fn outside_quotes(key: &str, needle: &str) -> Option<usize> {
    let (mut quoted, mut escaped, mut depth) = (false, false, 0usize);
    for (i, c) in key.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth = depth.saturating_sub(1),
            _ if !quoted && depth == 0 && key[i..].starts_with(needle) => return Some(i),
            _ => {}
        }
    }
    None
}

/// Parses one side of a key.
pub(super) fn parse(key: &str) -> Result<Path, ValuesError> {
    let bad = |reason: String| ValuesError::BadKey {
        key: key.to_string(),
        reason,
    };
    let (body, part) = [Part::Tag, Part::Digest]
        .into_iter()
        .find_map(|p| key.strip_suffix(p.suffix()).map(|b| (b, p)))
        .unwrap_or((key, Part::Whole));
    let mut steps = Vec::new();
    let mut rest = body;
    loop {
        let (name, after) = name(rest, SPECIAL).map_err(bad)?;
        steps.push((
            Step::Key(name),
            rest[..rest.len() - after.len()].to_string(),
        ));
        rest = after;
        while let Some(inner) = rest.strip_prefix('[') {
            let (step, after) = selector(inner).map_err(bad)?;
            steps.push((step, rest[..rest.len() - after.len()].to_string()));
            rest = after;
        }
        match rest.strip_prefix('.') {
            Some(after) => rest = after,
            None if rest.is_empty() => return Ok(Path { steps, part }),
            None => {
                return Err(bad(format!(
                    "unexpected `{rest}` (a mapping key with `.`, `[`, `]`, `\"` or `@` is \
                     written in double quotes)"
                )));
            }
        }
    }
}

/// A mapping key at the start of `text`, plain or double-quoted, and the text after it.
fn name<'t>(text: &'t str, ends: &[char]) -> Result<(String, &'t str), String> {
    if let Some(quoted) = text.strip_prefix('"') {
        return unquote(quoted);
    }
    let end = text.find(ends).unwrap_or(text.len());
    let name = &text[..end];
    if name.trim().is_empty() {
        return Err(if text.starts_with('[') {
            "starts with a list selector: a key starts with a mapping key".to_string()
        } else {
            "has an empty segment".to_string()
        });
    }
    if name.trim() != name {
        return Err(format!(
            "segment `{name}` has spaces at its ends (quote it if the key has them)"
        ));
    }
    Ok((name.to_string(), &text[end..]))
}

/// The text of a double-quoted string whose opening quote is already consumed.
fn unquote(text: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => out.push(e),
                _ => return Err("has a `\\` in quotes not followed by `\"` or `\\`".into()),
            },
            c => out.push(c),
        }
    }
    Err("has an unclosed `\"`".into())
}

/// A list selector after its `[`: `[0]` or `[field=value]` (the value may be quoted), and
/// the text after its `]`.
fn selector(text: &str) -> Result<(Step, &str), String> {
    let close = |rest: &str| -> Result<usize, String> {
        rest.find(']')
            .ok_or_else(|| "has a `[` without its `]`".to_string())
    };
    let end = close(text)?;
    if !text[..end].contains('=') && !text[..end].starts_with('"') {
        let index = &text[..end];
        let index = index
            .parse::<usize>()
            .ok()
            .filter(|_| index.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                format!("`[{index}]` is neither an index like `[0]` nor `[field=value]`")
            })?;
        return Ok((Step::Index(index), &text[end + 1..]));
    }
    let (field, rest) =
        name(text, &[SPECIAL, &['=']].concat()).map_err(|e| format!("a selector's field {e}"))?;
    let rest = rest
        .strip_prefix('=')
        .ok_or_else(|| "a selector is `[field=value]`".to_string())?;
    let (value, rest) = match rest.strip_prefix('"') {
        Some(quoted) => unquote(quoted)?,
        None => {
            let end = close(rest)?;
            if rest[..end].contains(['[', '"']) {
                return Err(format!(
                    "selector value `{}` holds `[` or `\"`: quote it",
                    &rest[..end]
                ));
            }
            (rest[..end].to_string(), &rest[end..])
        }
    };
    if value.is_empty() {
        return Err(format!("selector `[{field}=]` has no value"));
    }
    let rest = rest
        .strip_prefix(']')
        .ok_or_else(|| "a selector's quoted value is followed by its `]`".to_string())?;
    Ok((Step::Match { field, value }, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(key: &str) -> Vec<Step> {
        parse(key)
            .expect(key)
            .steps
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    fn key(name: &str) -> Step {
        Step::Key(name.into())
    }

    fn pick(field: &str, value: &str) -> Step {
        Step::Match {
            field: field.into(),
            value: value.into(),
        }
    }

    #[test]
    fn reads_mapping_keys_selectors_and_indexes() {
        assert_eq!(steps("image.version"), [key("image"), key("version")]);
        assert_eq!(
            steps("images[name=petstore].newTag"),
            [key("images"), pick("name", "petstore"), key("newTag")]
        );
        assert_eq!(
            steps("spec.ports[0].port"),
            [key("spec"), key("ports"), Step::Index(0), key("port")]
        );
        assert_eq!(
            steps("matrix[1][name=a.b/c:d]"),
            [key("matrix"), Step::Index(1), pick("name", "a.b/c:d")]
        );
    }

    #[test]
    fn reads_quoted_keys_and_values() {
        assert_eq!(
            steps(r#"annotations."example.com/version""#),
            [key("annotations"), key("example.com/version")]
        );
        assert_eq!(steps(r#""a\"b\\c""#), [key("a\"b\\c")]);
        assert_eq!(
            steps(r#"env[name="X]Y"].value"#),
            [key("env"), pick("name", "X]Y"), key("value")]
        );
        assert_eq!(steps(r#""tag@x""#), [key("tag@x")]);
    }

    #[test]
    fn reads_the_tag_or_digest_part() {
        assert_eq!(parse("image").expect("whole").part, Part::Whole);
        assert_eq!(parse("c[0].image@tag").expect("tag").part, Part::Tag);
        assert_eq!(parse("image@digest").expect("digest").part, Part::Digest);
    }

    #[test]
    fn splits_a_source_and_a_target_key() {
        assert_eq!(
            split_pair("image.version"),
            ("image.version", "image.version")
        );
        assert_eq!(
            split_pair("image.tag -> images[name=app].newTag"),
            ("image.tag", "images[name=app].newTag")
        );
        assert_eq!(split_pair(r#""a->b""#), (r#""a->b""#, r#""a->b""#));
        assert_eq!(split_pair("x[n=a->b]"), ("x[n=a->b]", "x[n=a->b]"));
    }

    #[test]
    fn refuses_malformed_keys_saying_what_is_wrong() {
        for (key, says) in [
            ("a..b", "empty segment"),
            ("", "empty segment"),
            ("a.", "empty segment"),
            ("[0].a", "starts with a list selector"),
            ("a[x]", "neither an index"),
            ("a[-1]", "neither an index"),
            ("a[0", "without its `]`"),
            ("a[name=]", "has no value"),
            ("a]b", "double quotes"),
            ("a@b", "double quotes"),
            ("a\"b\"", "double quotes"),
            ("\"ab", "unclosed"),
            ("a[0]b", "unexpected `b`"),
            (" a", "spaces at its ends"),
            ("a[n=[x]]", "quote it"),
        ] {
            let err = parse(key).expect_err(key).to_string();
            assert!(err.contains(says), "{key:?}: {err}");
        }
        let err = check("image.tag->a..b").expect_err("target side");
        assert!(err.contains("empty segment"), "{err}");
        let err = check("a->b->c").expect_err("two arrows");
        assert!(err.contains("more than one `->`"), "{err}");
        check("\"a->b\"->c").expect("a quoted arrow");
        for key in ["\"a,b\"", "a[n=x,y]", "a\nPromoted-Keys: b", "a->b\r"] {
            let err = check(key).expect_err(key);
            assert!(err.contains("no comma"), "{key:?}: {err}");
        }
    }
}
