//! The byte-exact corpus of edits in lists (block, flow, nested, comments between items,
//! kustomize `images:`), and what a list key refuses: every edit is compared byte for byte and
//! read back, text and type.

use super::*;

/// The scalar a source values file holds as `token` (how it is written there: `'2.0'`, `3`).
fn source(token: &str) -> Scalar {
    read_value(&format!("v: {token}\n"), "v").expect(token)
}

/// (name, target file, key, source token, expected target file).
const CORPUS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "kustomize images: entry by name, comments between items",
        "images:\n# the front end\n- name: web\n  newTag: \"1.0\"\n\n# the API\n- name: petstore # pinned\n  newName: registry/petstore\n  newTag: \"1.0\"  # bumped by CD\n",
        "images[name=petstore].newTag",
        "'2.0'",
        "images:\n# the front end\n- name: web\n  newTag: \"1.0\"\n\n# the API\n- name: petstore # pinned\n  newName: registry/petstore\n  newTag: \"2.0\"  # bumped by CD\n",
    ),
    (
        "the selected field after the edited one",
        "images:\n  - newTag: v1\n    name: petstore\n  - newTag: v1\n    name: web\n",
        "images[name=petstore].newTag",
        "v2",
        "images:\n  - newTag: v2\n    name: petstore\n  - newTag: v1\n    name: web\n",
    ),
    (
        "a digest",
        "images:\n- name: app\n  digest: sha256:aaaa\n",
        "images[name=app].digest",
        "sha256:bbbb",
        "images:\n- name: app\n  digest: sha256:bbbb\n",
    ),
    (
        "index into a block sequence",
        "ports:\n  - containerPort: 8080\n  - containerPort: 9090 # metrics\n",
        "ports[1].containerPort",
        "9091",
        "ports:\n  - containerPort: 8080\n  - containerPort: 9091 # metrics\n",
    ),
    (
        "a list item that is the scalar",
        "args: [--port, '1.0', -v]\n",
        "args[1]",
        "\"2.0\"",
        "args: [--port, '2.0', -v]\n",
    ),
    (
        "flow sequence of flow mappings",
        "containers: [{name: side, tag: v1}, {name: app, tag: \"v1\"}]\n",
        "containers[name=app].tag",
        "v2",
        "containers: [{name: side, tag: v1}, {name: app, tag: \"v2\"}]\n",
    ),
    (
        "flow sequence over several lines with comments",
        "env: [\n  # first\n  {name: A, value: '1'},\n  # second\n  {name: VERSION, value: '1'},\n]\n",
        "env[name=VERSION].value",
        "'1.1'",
        "env: [\n  # first\n  {name: A, value: '1'},\n  # second\n  {name: VERSION, value: '1.1'},\n]\n",
    ),
    (
        "nested: a manifest's container image",
        "spec:\n  template:\n    spec:\n      containers:\n        - name: side\n          image: busybox:1\n        - name: app\n          image: registry:5000/team/app:1.0 # app\n          ports:\n            - containerPort: 80\n",
        "spec.template.spec.containers[name=app].image",
        "registry:5000/team/app:2.0",
        "spec:\n  template:\n    spec:\n      containers:\n        - name: side\n          image: busybox:1\n        - name: app\n          image: registry:5000/team/app:2.0 # app\n          ports:\n            - containerPort: 80\n",
    ),
    (
        "nested lists: list in a selected item",
        "jobs:\n- name: a\n  steps:\n  - run: x\n  - run: '1'\n- name: b\n  steps:\n  - run: '1'\n",
        "jobs[name=b].steps[0].run",
        "'2'",
        "jobs:\n- name: a\n  steps:\n  - run: x\n  - run: '1'\n- name: b\n  steps:\n  - run: '2'\n",
    ),
    (
        "list of lists",
        "matrix:\n- [a, b]\n- [c, '1']\n",
        "matrix[1][1]",
        "'2'",
        "matrix:\n- [a, b]\n- [c, '2']\n",
    ),
    (
        "CRLF, anchors and a quoted mapping key with dots",
        "metadata:\r\n  annotations:\r\n    example.com/version: &v \"1.0\"\r\nother: *v\r\n",
        "metadata.annotations.\"example.com/version\"",
        "'2.0'",
        "metadata:\r\n  annotations:\r\n    example.com/version: &v \"2.0\"\r\nother: *v\r\n",
    ),
    (
        "empty list items, with and without a space after the dash",
        "a:\n- \n-\n- x\n",
        "a[1]",
        "'2.0'",
        "a:\n- \n- '2.0'\n- x\n",
    ),
    (
        "an empty value in a flow mapping item",
        "a: [{n: x, v: }]\n",
        "a[n=x].v",
        "v2",
        "a: [{n: x, v: v2 }]\n",
    ),
    (
        "the tag of an image reference, the rest kept",
        "containers:\n- name: app\n  image: \"registry:5000/team/app:1.0\"\n",
        "containers[name=app].image@tag",
        "1.1",
        "containers:\n- name: app\n  image: \"registry:5000/team/app:1.1\"\n",
    ),
    (
        "the digest of an image reference",
        "image: registry/app:1.0@sha256:aaaa # pinned\n",
        "image@digest",
        "sha256:bbbb",
        "image: registry/app:1.0@sha256:bbbb # pinned\n",
    ),
];

#[test]
fn edits_only_the_scalar_in_every_list_corpus_file() {
    for (name, input, key, token, expected) in CORPUS {
        let value = source(token);
        let out = set_scalar(input, key, &value).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&out, expected, "{name}");
        let back = read_value(&out, key).expect("reads back");
        assert_eq!(back.text(), value.text(), "{name}");
    }
}

#[test]
fn reads_the_tag_or_digest_of_an_image_reference_as_a_string() {
    let text = "a: registry:5000/app:1.2\nb: app@sha256:abc\nc: app\n";
    assert_eq!(
        read_value(text, "a@tag").expect("tag"),
        Scalar::string("1.2")
    );
    assert_eq!(
        read_value(text, "b@digest").expect("digest"),
        Scalar::string("sha256:abc")
    );
    for key in ["c@tag", "c@digest", "a@digest"] {
        let err = read_value(text, key).expect_err(key);
        assert!(
            matches!(err, ValuesError::KeyMissing { .. }),
            "{key}: {err}"
        );
        assert!(err.to_string().contains("has no"), "{key}: {err}");
    }
    let err = read_value("a: 1.2\n", "a@tag").expect_err("a float");
    assert!(err.to_string().contains("not one"), "{err}");
}

#[test]
fn promotes_a_plain_typed_tag_into_a_reference_and_a_tag_as_a_string() {
    // `newTag: 1.10` (a float to YAML) goes into the reference's text.
    let out = set_scalar("image: app:1.9\n", "image@tag", &source("1.10")).expect("tag");
    assert_eq!(out, "image: app:1.10\n");
    // A reference's tag is a string: over a plain `newTag` it is quoted, so it stays one.
    let tag = read_value("image: app:1.10\n", "image@tag").expect("reads");
    let out = set_scalar(
        "images:\n- name: app\n  newTag: 1.9\n",
        "images[name=app].newTag",
        &tag,
    )
    .expect("newTag");
    assert_eq!(out, "images:\n- name: app\n  newTag: '1.10'\n");
}

#[test]
fn refuses_a_tag_over_a_pinned_digest_and_a_malformed_part() {
    let pinned = "image: app:1.0@sha256:aaaa\n";
    let err = set_scalar(pinned, "image@tag", &source("2.0")).expect_err("digest wins");
    assert!(err.to_string().contains("promote `@digest`"), "{err}");
    for (key, value) in [("image@tag", "a/b"), ("image@digest", "1.2")] {
        let err =
            set_scalar("image: app:1.0@sha256:aa\n", key, &Scalar::string(value)).expect_err(value);
        assert!(matches!(err, ValuesError::BadValue { .. }), "{err}");
    }
}

#[test]
fn names_the_selector_that_matches_nothing() {
    let text = "images:\n- name: web\n  newTag: '1'\nports: [80]\nimage: {tag: 1}\n";
    for (key, says) in [
        (
            "images[name=petstore].newTag",
            "no item of `images` matches `[name=petstore]`",
        ),
        ("images[3].newTag", "`images` has 1 items, no `[3]`"),
        (
            "images[name=web].digest",
            "`images[name=web]` has no key `digest`",
        ),
        ("image[0]", "`image` is a mapping, not a list"),
        (
            "ports.port",
            "`ports` is a sequence, not a mapping with `port`",
        ),
    ] {
        let err = read_value(text, key).expect_err(key);
        assert!(
            matches!(err, ValuesError::KeyMissing { .. }),
            "{key}: {err}"
        );
        assert!(err.to_string().contains(says), "{key}: {err}");
        assert!(
            err.to_string().contains(&format!("`{key}`")),
            "{key}: {err}"
        );
    }
}

#[test]
fn refuses_a_selector_two_items_match() {
    let text = "images:\n- name: app\n  newTag: '1'\n- name: app\n  newTag: '2'\n";
    let err = set_scalar(text, "images[name=app].newTag", &source("'3'")).expect_err("two");
    assert!(
        matches!(err, ValuesError::Ambiguous { count: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("`[name=app]`"), "{err}");
}

#[test]
fn refuses_a_duplicate_key_in_a_list_item_on_the_path() {
    for text in [
        "images:\n- name: app\n  newTag: '1'\n  newTag: '2'\n",
        "images:\n- name: app\n  name: web\n  newTag: '1'\n",
        "images: [{name: app, newTag: '1', newTag: '2'}]\n",
    ] {
        let err = read_value(text, "images[name=app].newTag").expect_err(text);
        assert!(matches!(err, ValuesError::DuplicateKey(_)), "{text}: {err}");
    }
}

#[test]
fn refuses_a_malformed_key_naming_it() {
    let err = read_value("a: 1\n", "a[x]").expect_err("bad");
    assert!(matches!(err, ValuesError::BadKey { .. }), "{err}");
    assert!(err.to_string().contains("`a[x]`"), "{err}");
}

#[test]
fn keeps_the_type_rules_in_lists() {
    // A plain integer over a quoted string: the source's type is written.
    let out = set_scalar("p: [{n: a, v: '1'}]\n", "p[n=a].v", &source("2")).expect("int");
    assert_eq!(out, "p: [{n: a, v: 2}]\n");
    // A string that plain text would type is quoted, in a flow list too.
    let out = set_scalar("p: [1.0]\n", "p[0]", &source("'1.10'")).expect("string");
    assert_eq!(out, "p: ['1.10']\n");
}

/// The parser's depth limit bounds the tree a key walks (and drops, recursively).
#[test]
fn a_deeply_nested_file_is_refused_as_invalid_not_overflowing_the_stack() {
    let depth = 200_000;
    let text = format!("a: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
    let err = read_value(&text, "a[0][0]").expect_err("too deep");
    assert!(matches!(err, ValuesError::Invalid(_)), "{err}");
}

/// Go YAML v2 (under Helm) refuses `a:b` plain in a flow collection, and libyaml `a:?` (the
/// YAML 1.2 spec allows both): a string with `:` is quoted there, and stays plain in block
/// context; a typed plain scalar with `:` cannot be written there.
#[test]
fn quotes_a_colon_in_a_flow_collection_and_refuses_a_typed_one() {
    for (target, written) in [
        ("a: [x]\n", "a: ['reg:5000/app:1']\n"),
        ("a: &l [x]\n", "a: &l ['reg:5000/app:1']\n"),
        ("a: {b: [x]}\n", "a: {b: ['reg:5000/app:1']}\n"),
        ("a:\n- x\n", "a:\n- reg:5000/app:1\n"),
    ] {
        let key = if target.contains("b:") {
            "a.b[0]"
        } else {
            "a[0]"
        };
        let out = set_scalar(target, key, &Scalar::string("reg:5000/app:1")).expect(target);
        assert_eq!(out, written, "{target}");
    }
    let err = set_scalar("a: [x]\n", "a[0]", &source("12:30")).expect_err("sexagesimal");
    assert!(err.to_string().contains("flow collection"), "{err}");
    let out = set_scalar("a:\n- x\n", "a[0]", &source("12:30")).expect("block");
    assert_eq!(out, "a:\n- 12:30\n");
}
