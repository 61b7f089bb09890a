//! The byte-exact corpus of values-file edits, and the type of what is written: every edit is
//! compared byte for byte and read back, text and type.

use super::*;

/// The scalar a source values file holds as `token` (how it is written there: `'2.0'`, `3`).
fn source(token: &str) -> Scalar {
    read_value(&format!("v: {token}\n"), "v").expect(token)
}

/// (name, target file, key, source token, expected target file).
const CORPUS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "same-line comment and double quotes",
        "image:\n  repository: r\n  version: \"1.0\"  # bumped by CD\n",
        "image.version",
        "'2.0'",
        "image:\n  repository: r\n  version: \"2.0\"  # bumped by CD\n",
    ),
    (
        "single quotes",
        "image:\n  version: '1.0'\n",
        "image.version",
        "\"2.0\"",
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
        "'2.0'",
        "image:\r\n  version: \"2.0\"\r\n  tag: x\r\n",
    ),
    (
        "missing final newline",
        "image:\n  version: 1.0",
        "image.version",
        "'2.0'",
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
        "'2.0'",
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
        "'2.0'",
        "image: {repository: r, version: \"2.0\"}\n",
    ),
    (
        "non-ASCII before the key",
        "# café ☕\nnaïve: ü\nimage:\n  version: 1.0\n",
        "image.version",
        "\"2.0\"",
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
        "'2.0'",
        "image:\n  version: '2.0'\n  tag: x\n",
    ),
    (
        "string value that needs quotes",
        "image:\n  version: 1.0\n",
        "image.version",
        "'2.0 #rc'",
        "image:\n  version: '2.0 #rc'\n",
    ),
    (
        "quote inside single quotes",
        "v: 'a'\n",
        "v",
        "\"it's\"",
        "v: 'it''s'\n",
    ),
    (
        "quoted key",
        "\"image\":\n  'version': 1.0\n",
        "image.version",
        "'2.0'",
        "\"image\":\n  'version': '2.0'\n",
    ),
    (
        "escapes in double quotes",
        "v: \"a\\\"b\" # c\n",
        "v",
        "'x\"y'",
        "v: \"x\\\"y\" # c\n",
    ),
    (
        "a string source over a float target is quoted",
        "image:\n  tag: 1.9 # c\n",
        "image.tag",
        "\"1.10\"",
        "image:\n  tag: '1.10' # c\n",
    ),
    (
        "an integer source over a quoted target is written plain",
        "replicas: \"2\"\n",
        "replicas",
        "3",
        "replicas: 3\n",
    ),
    (
        "a float source over a string target is written plain, in a flow mapping too",
        "image: {tag: '1.9', pull: Always}\n",
        "image.tag",
        "1.10",
        "image: {tag: 1.10, pull: Always}\n",
    ),
    (
        "a tagged string target stays a string",
        "tag: !!str 1.9\n",
        "tag",
        "'1.10'",
        "tag: !!str '1.10'\n",
    ),
    (
        "a tagged string source is a string",
        "tag: 1.9\n",
        "tag",
        "!!str 1.10",
        "tag: '1.10'\n",
    ),
    (
        "the same tag on both sides is kept",
        "n: !!int 2\n",
        "n",
        "!!int 3",
        "n: !!int 3\n",
    ),
];

#[test]
fn edits_only_the_scalar_in_every_corpus_file() {
    for (name, input, key, token, expected) in CORPUS {
        let value = source(token);
        let out = set_scalar(input, key, &value).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&out, expected, "{name}");
        assert_eq!(read_value(&out, key).expect("reads back"), value, "{name}");
    }
}

/// Every class a plain scalar can be typed as, written from a source of each type over a
/// target of each type: (source token, target token, written token). The written token always
/// has the source's type; the target's quotes stay where the value is a string.
const TYPED: &[(&str, &str, &str)] = &[
    ("1.10", "v1", "1.10"),
    ("'1.10'", "1.9", "'1.10'"),
    ("\"1.10\"", "\"1.9\"", "\"1.10\""),
    ("1.10", "'1.9'", "1.10"),
    ("yes", "'no'", "yes"),
    ("'yes'", "no", "'yes'"),
    ("on", "\"off\"", "on"),
    ("'on'", "v1", "'on'"),
    ("no", "v1", "no"),
    ("'n'", "41", "'n'"),
    ("0x1F", "'0x1E'", "0x1F"),
    ("'0x1F'", "0x1E", "'0x1F'"),
    ("'0o17'", "v1", "'0o17'"),
    ("'017'", "41", "'017'"),
    ("1_000", "'999'", "1_000"),
    ("'1_000'", "999", "'1_000'"),
    ("12:30", "\"12:29\"", "12:30"),
    ("'12:30'", "12:29", "'12:30'"),
    ("~", "'v1'", "~"),
    ("'~'", "v1", "'~'"),
    ("'null'", "~", "'null'"),
    (".inf", "\"1.0\"", ".inf"),
    ("'.inf'", "1.0", "'.inf'"),
    ("'.nan'", "v1", "'.nan'"),
    ("2001-12-14", "'2001-12-13'", "2001-12-14"),
    ("'2001-12-14'", "2001-12-13", "'2001-12-14'"),
    ("'1e3'", "v1", "'1e3'"),
    ("42", "\"41\"", "42"),
    ("42", "v1", "42"),
    ("'42'", "41", "'42'"),
    ("\"42\"", "'41'", "'42'"),
    ("1.2.3", "v1", "1.2.3"),
    ("1.2.3", "\"1.2.2\"", "\"1.2.3\""),
    ("'1.2.3'", "1.2", "1.2.3"),
    ("sha-4f2a9c", "'v1'", "'sha-4f2a9c'"),
    ("\"sha-4f2a9c\"", "41", "sha-4f2a9c"),
];

#[test]
fn writes_the_source_type_whatever_the_target_held() {
    for (from, old, token) in TYPED {
        let input = format!("image:\n  version: {old}  # c\n");
        let value = source(from);
        let out = set_scalar(&input, "image.version", &value).expect(from);
        assert_eq!(
            out,
            format!("image:\n  version: {token}  # c\n"),
            "{from} over {old}"
        );
        assert_eq!(read_value(&out, "image.version").expect("reads"), value);
    }
}

#[test]
fn refuses_a_target_tag_that_would_change_the_source_type() {
    for (target, from) in [
        ("v: !!str 1\n", "2"),
        ("v: !!int 1\n", "'2'"),
        ("v: !!int 1\n", "2"),
        ("v: 1\n", "!!float 2"),
        ("v: !!int 1\n", "!!float 2"),
    ] {
        let err = set_scalar(target, "v", &source(from)).expect_err(target);
        assert!(
            err.to_string().contains("another type"),
            "{target} {from}: {err}"
        );
    }
}

#[test]
fn refuses_a_source_whose_type_readers_disagree_on() {
    let err = read_value("image:\n  version: ! 0\n", "image.version").expect_err("ambiguous");
    assert!(err.to_string().contains("`image.version`"), "{err}");
    assert!(err.to_string().contains("disagree"), "{err}");
    // Quoted, or text no schema types, it is a string to every reader.
    for text in ["v: ! '0'\n", "v: ! v0\n"] {
        assert_eq!(
            read_value(text, "v").expect(text).text(),
            text[5..].trim().trim_matches('\'')
        );
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
        "2\n3",
        "",
    ] {
        let err = set_scalar("v: '1'\n", "v", &Scalar::string(value)).expect_err(value);
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
        let value = Scalar::string("3");
        assert!(set_scalar(text, "image.version", &value).is_err(), "{text}");
    }
    // Duplicates off the path are not phasegate's business.
    read_scalar("a: 1\na: 2\nimage:\n  version: 1\n", "image.version").expect("off path");
}

#[test]
fn reads_and_edits_only_the_first_document() {
    let text = "a: 1\n---\nimage:\n  version: 1\n";
    assert!(matches!(
        read_scalar(text, "image.version"),
        Err(ValuesError::KeyMissing { .. })
    ));
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
        matches!(&err, ValuesError::KeyMissing { key: k, .. } if k == "image.version"),
        "{err}"
    );
    for (text, key) in [
        ("a: 1\n", "image.version"),
        ("list:\n  - version: 1\n", "list.version"),
    ] {
        assert!(matches!(
            read_scalar(text, key),
            Err(ValuesError::KeyMissing { .. })
        ));
    }
}

#[test]
fn refuses_values_that_are_not_scalars() {
    for (text, found) in [
        ("image:\n  version:\n    a: 1\n", "mapping"),
        ("image:\n  version: [1, 2]\n", "sequence"),
        ("v: &a 1\nimage:\n  version: *a\n", "alias"),
        ("image:\n  version: |\n    1.0\n", "block scalar"),
    ] {
        let err = set_scalar(text, "image.version", &source("2")).expect_err(text);
        assert!(
            matches!(&err, ValuesError::NotScalar { found: f, .. } if *f == found),
            "{text}: {err}"
        );
    }
    assert!(matches!(
        read_scalar("a: [1, 2\n", "a"),
        Err(ValuesError::Invalid(_))
    ));
}
