//! Property tests of everything a Sensor (or a repository) can hand phasegate: the spec YAML,
//! the resource JSON, the payload, and the values-file edit. No input panics; errors only; an
//! edit changes nothing but the scalar, in mappings and in lists. CI runs 2,000 cases per
//! property (20,000 in all); for a longer run by hand:
//! `PROPTEST_CASES=1000000 cargo test --release --test integration fuzz::`.

use std::collections::BTreeMap;

use crate::support;
use phasegate::{
    Scalar, read_scalar, read_value,
    sensor::go_yaml,
    set_scalar,
    spec::{Plan, Resource, TestProfiles},
};
use proptest::{collection::btree_map, prelude::*, sample::select};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const KEYS: &[&str] = &[
    "repo",
    "branch",
    "path",
    "key",
    "phases",
    "sourcePhase",
    "sourceCommit",
    "targetPhase",
    "test",
    "testTarget",
    "testImage",
    "testCommand",
    "testArgs",
    "testEnv",
    "testResources",
    "testTimeout",
    "testPath",
    "testExpectStatus",
    "testExpectBody",
    "testAttempts",
    "testInterval",
    "commitMessage",
    "dryRun",
    "mode",
    "credentialsSecret",
    "argocdApp",
    "argocdTimeout",
    "bogus",
];

/// The twelve spellings of the four event fields.
const EVENT_NAMES: &[&str] = &[
    "source_commit",
    "sourceCommit",
    "source.commit",
    "source_phase",
    "sourcePhase",
    "source.phase",
    "target_phase",
    "targetPhase",
    "target.phase",
    "test_target",
    "testTarget",
    "test.target",
];
/// Names a payload may not use.
const FORBIDDEN_NAMES: &[&str] = &[
    "repo",
    "test.image",
    "testCommand",
    "dryRun",
    "app",
    "test.runner",
    "source.branch",
    "branch",
    "Source_commit",
];

fn spec_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("file:///tmp/gitops.git".to_string()),
        Just("a/{phase}/values.yaml".to_string()),
        Just("test,prod".to_string()),
        Just("none".to_string()),
        Just("[\"sh\", \"-c\", \"true\"]".to_string()),
        Just("{\"A\": \"b\"}".to_string()),
        Just("abcdef1234".to_string()),
        Just("10m".to_string()),
        "\\PC{0,24}",
    ]
}

/// A values file with the key `image.version` in one of many layouts, and its old token.
fn values_file() -> impl Strategy<Value = (String, String)> {
    (
        select(vec!["", "# values\n", "---\n", "# café ☕\n\n"]),
        1..5usize,
        select(vec!["", "'", "\""]),
        "[0-9a-z][0-9a-z.+-]{0,9}",
        select(vec!["", "  # bumped by CD", " #x"]),
        any::<bool>(),
        any::<bool>(),
        select(vec!["", "base: &b {pull: Always}\n", "version: 0.1\n", "list:\n- a\n- b\n"]),
    )
        .prop_map(|(head, indent, quote, version, comment, crlf, final_newline, extra)| {
            let pad = " ".repeat(indent);
            let token = format!("{quote}{version}{quote}");
            let mut doc = format!("{head}{extra}image:\n{pad}repository: r\n{pad}version: {token}{comment}\n{pad}tag: x\n");
            if !final_newline {
                doc.pop();
            }
            if crlf {
                doc = doc.replace('\n', "\r\n");
            }
            (doc, token)
        })
}

/// A values file holding the version in a list, and where.
#[derive(Debug, Clone)]
struct ListFile {
    doc: String,
    /// By selector or by index.
    key: String,
    /// The target token's byte offset and text.
    at: usize,
    token: String,
    /// The path to it for serde_yaml_ng (`None`: an index step).
    path: Vec<(Option<&'static str>, usize)>,
}

/// A kustomization-like `images:` list holding the version in one of its items: block or flow,
/// nested or not, comments and blank lines between items, the selected field before or after
/// the version.
fn list_file() -> impl Strategy<Value = ListFile> {
    (
        (1..5usize, 0..5usize),
        select(vec!["", "'", "\""]),
        "[0-9a-z][0-9a-z.+-]{0,9}",
        select(vec!["", "  # bumped by CD", " #x"]),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        (any::<bool>(), any::<bool>()),
        select(vec!["", "# item\n", "\n", "\n# the next one\n\n"]),
    )
        .prop_map(
            |(
                (n, t),
                quote,
                version,
                comment,
                (flow, nested, name_first),
                (by_index, crlf),
                between,
            )| {
                let t = t % n;
                let token = format!("{quote}{version}{quote}");
                let pad = if nested { "  " } else { "" };
                let name = |i: usize| {
                    if i == t {
                        "app".to_string()
                    } else {
                        format!("s{i}")
                    }
                };
                // The target's token is marked, then found, so every item may hold the same text.
                const MARK: &str = "\u{1}";
                let tag = |i: usize| {
                    if i == t {
                        MARK.to_string()
                    } else {
                        token.clone()
                    }
                };
                let mut doc = String::from(if nested { "spec:\n" } else { "" });
                if flow {
                    let items: Vec<String> = (0..n)
                        .map(|i| {
                            if name_first {
                                format!("{{name: {}, newTag: {}}}", name(i), tag(i))
                            } else {
                                format!("{{newTag: {}, name: {}}}", tag(i), name(i))
                            }
                        })
                        .collect();
                    let sep = format!(",\n{pad}  {}", between.replace('\n', &format!("\n{pad}  ")));
                    doc.push_str(&format!(
                        "{pad}images: [\n{pad}  {}\n{pad}]{comment}\n",
                        items.join(&sep)
                    ));
                } else {
                    doc.push_str(&format!("{pad}images:\n"));
                    for i in 0..n {
                        doc.push_str(between);
                        let (first, second) = (
                            format!("name: {}", name(i)),
                            format!("newTag: {}{comment}", tag(i)),
                        );
                        let (first, second) = if name_first {
                            (first, second)
                        } else {
                            (second, first)
                        };
                        doc.push_str(&format!("{pad}- {first}\n{pad}  {second}\n"));
                    }
                }
                if crlf {
                    doc = doc.replace('\n', "\r\n");
                }
                let at = doc.find(MARK).expect("marked");
                let doc = doc.replacen(MARK, &token, 1);
                let step = if by_index {
                    format!("[{t}]")
                } else {
                    "[name=app]".to_string()
                };
                let key = format!("{}images{step}.newTag", if nested { "spec." } else { "" });
                let mut path = Vec::new();
                if nested {
                    path.push((Some("spec"), 0));
                }
                path.extend([(Some("images"), 0), (None, t), (Some("newTag"), 0)]);
                ListFile {
                    doc,
                    key,
                    at,
                    token,
                    path,
                }
            },
        )
}

/// A source scalar token: a typed or arbitrary value, plain, single- or double-quoted.
fn source_token() -> impl Strategy<Value = String> {
    (
        select(vec!["", "'", "\""]),
        prop_oneof![
            select(support::TYPED_SCALARS.to_vec()).prop_map(String::from),
            "[ -~]{0,16}"
        ],
    )
        .prop_map(|(quote, value)| support::yaml_token(&value, quote))
}

/// The value at `path` as serde_yaml_ng (a YAML 1.2 loader of its own) reads it, type included.
/// It keeps the non-specific tag `!` as a tagged value where PyYAML and go-yaml drop it: the
/// value under it is what they read.
fn loaded(text: &str, path: &[&str]) -> String {
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("valid YAML");
    for key in path {
        value = value.get(key).cloned().expect("key");
    }
    match value {
        serde_yaml_ng::Value::Tagged(t) if t.tag == "!" => format!("{:?}", t.value),
        value => format!("{value:?}"),
    }
}

/// The value at `path` (a mapping key, or a list index where the key is `None`) as
/// serde_yaml_ng reads it, type included.
fn loaded_at(text: &str, path: &[(Option<&str>, usize)]) -> String {
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("valid YAML");
    for (key, index) in path {
        value = match key {
            Some(k) => value.get(k),
            None => value.get(index),
        }
        .cloned()
        .expect("key");
    }
    format!("{value:?}")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn spec_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Resource::from_spec_yaml(&bytes);
    }

    #[test]
    fn spec_maps_give_a_resource_or_a_named_error(map in btree_map(select(KEYS.to_vec()), spec_value(), 0..10)) {
        let map: BTreeMap<String, String> = map.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        match Resource::from_spec_yaml(go_yaml(&map).as_bytes()) {
            Ok(resource) => {
                // What FetchResource answers, Execute reads back unchanged.
                let again = Resource::from_execute(&resource.to_json(), b"").expect("own resource reads back");
                prop_assert_eq!(again, resource);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn resources_and_payloads_never_panic(resource in "\\PC{0,64}", payload in "\\PC{0,64}", flat in any::<bool>()) {
        let _ = Resource::from_execute(resource.as_bytes(), payload.as_bytes());
        let base = br#"{"repo":"file:///r","path":"a/{phase}.yaml","test":{"runner":"none"},"phases":["test","prod"]}"#;
        let payload = if flat { format!(r#"{{"source_commit":{payload:?},"source_phase":"test"}}"#) } else { payload };
        if let Ok(r) = Resource::from_execute(base, payload.as_bytes()) {
            let _ = Plan::from_resource(&r, &TestProfiles::default());
        }
    }

    #[test]
    fn payloads_set_only_event_fields(fields in btree_map(select([EVENT_NAMES, FORBIDDEN_NAMES].concat()), "\\PC{0,16}", 1..4)) {
        let base = br#"{"repo":"file:///r","path":"a/{phase}.yaml","test":{"runner":"none"},"phases":["test","prod"]}"#;
        let payload = serde_json::to_vec(&fields).expect("json");
        let event = fields.keys().all(|k| EVENT_NAMES.contains(k));
        match Resource::from_execute(base, &payload) {
            Ok(r) => {
                prop_assert!(event, "accepted a non-event field: {:?}", fields);
                // Nothing but the event fields moved.
                prop_assert_eq!(&r.repo, "file:///r");
                prop_assert_eq!(&r.path, "a/{phase}.yaml");
                prop_assert!(!r.dry_run);
            }
            Err(e) if !event => {
                let named = fields.keys().filter(|k| !EVENT_NAMES.contains(k)).any(|k| e.to_string().contains(&format!("`{k}`")));
                // A conflict met before the forbidden field is an error of its own.
                let named = named || e.to_string().contains("twice");
                prop_assert!(named, "{} does not name the field of {:?}", e, fields);
            }
            Err(e) => prop_assert!(e.to_string().contains("twice"), "{}", e),
        }
    }

    #[test]
    fn event_targets_are_plain_http_urls_or_refused(target in "(https?://|file://|)[a-z.]{0,8}(:[0-9]{1,5})?(/\\PC{0,12})?") {
        let base = br#"{"repo":"file:///r","path":"a/{phase}.yaml","test":{"runner":"command","command":["./t"],"args":["{target}"]},"phases":["test","prod"]}"#;
        let payload = serde_json::to_vec(&serde_json::json!({"source_commit": "abcdef1", "source_phase": "test", "test_target": target})).expect("json");
        let r = Resource::from_execute(base, &payload).expect("event fields");
        if let Ok(plan) = Plan::from_resource(&r, &TestProfiles::default()) {
            prop_assert!(target.starts_with("http"), "{}", target);
            prop_assert!(target.chars().all(|c| c.is_ascii_graphic()), "{:?}", target);
            let phasegate::spec::TestPlan::Command(cmd) = plan.test else { unreachable!("command runner") };
            prop_assert_eq!(cmd.argv, vec!["./t".to_string(), target]);
        }
    }

    #[test]
    fn values_edits_write_the_source_type_and_change_only_the_scalar((doc, token) in values_file(), from in source_token()) {
        prop_assert_eq!(read_scalar(&doc, "image.version").is_ok(), true);
        let source = format!("v: {from}\n");
        let Ok(value) = read_value(&source, "v") else { return Ok(()) };
        // libyaml's anchors are stricter than the spec's (`&: $`): a source only the spec accepts
        // cannot be compared.
        if serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&source).is_err() {
            return Ok(());
        }
        let at = doc.rfind("version: ").expect("key") + "version: ".len();
        match set_scalar(&doc, "image.version", &value) {
            Ok(out) => {
                // Same text, same type: by phasegate's reading and by another YAML loader's.
                prop_assert_eq!(read_value(&out, "image.version").expect("reads back"), value.clone());
                prop_assert_eq!(loaded(&out, &["image", "version"]), loaded(&source, &["v"]), "{:?}", out);
                prop_assert_eq!(&out[..at], &doc[..at]);
                let rest = &doc[at + token.len()..];
                prop_assert!(out.ends_with(rest), "suffix changed:\n{:?}\n{:?}", doc, out);
            }
            Err(e) => {
                // Printable text always has a way to be written: only an empty value is refused,
                // one whose tag (`!0 a`) the untagged target cannot carry, or one whose escapes
                // (`"\a"`) decode to a control or invisible character.
                let e = e.to_string();
                let tagged = from.starts_with('!') && e.contains("tag");
                let hidden = value.text().chars().any(|c| c.is_control() || !c.is_ascii())
                    && e.contains("control or invisible");
                prop_assert!(value.text().is_empty() || tagged || hidden, "{} refused: {}", from, e);
                prop_assert!(e.contains("image.version"));
            }
        }
    }

    #[test]
    fn values_edits_of_any_text_never_panic(text in "\\PC{0,200}", key in prop_oneof![
        "[a-z]{1,3}(\\.[a-z]{1,3}){0,2}",
        "[a-z]{1,3}(\\[[0-9]\\]|\\[n=[a-z:]{1,3}\\])?(\\.(\"[a-z.]{1,3}\"|[a-z]{1,3})){0,2}(@tag|@digest)?",
        "\\PC{0,24}",
    ], value in "\\PC{0,12}") {
        let _ = read_scalar(&text, &key);
        let value = Scalar::string(value);
        if let Ok(out) = set_scalar(&text, &key, &value) {
            prop_assert_eq!(read_value(&out, &key).expect("reads back"), value);
        }
    }

    #[test]
    fn yaml_shaped_values_files_never_panic(lines in proptest::collection::vec(select(vec![
        "a:", "  b: 1", "  c: 'x'", "- d", "  - e: \"y\"", "k: &a v", "m: *a", "n: [1, {o: p}]", "q: |", "  text", "---", "# c", "", "r: {s: t}",
    ]), 0..12), from in source_token()) {
        let text = lines.join("\n");
        let Ok(value) = read_value(&format!("v: {from}\n"), "v") else { return Ok(()) };
        for key in ["a.b", "a.c", "k", "m", "n", "q", "r.s", "a"] {
            if let Ok(out) = set_scalar(&text, key, &value) {
                prop_assert_eq!(read_value(&out, key).expect("reads back"), value.clone());
            }
        }
    }

    #[test]
    fn list_edits_write_the_source_type_and_change_only_the_scalar(file in list_file(), from in source_token()) {
        let ListFile { doc, key, at, token, path } = file;
        prop_assert_eq!(read_value(&doc, &key).is_ok(), true, "{:?} {}", doc, key);
        let source = format!("v: {from}\n");
        let Ok(value) = read_value(&source, "v") else { return Ok(()) };
        if serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&source).is_err() || value.text().is_empty() {
            return Ok(());
        }
        match set_scalar(&doc, &key, &value) {
            Ok(out) => {
                prop_assert_eq!(read_value(&out, &key).expect("reads back"), value.clone());
                prop_assert_eq!(loaded_at(&out, &path), loaded(&source, &["v"]), "{:?}", out);
                prop_assert_eq!(&out[..at], &doc[..at]);
                prop_assert!(out.ends_with(&doc[at + token.len()..]), "suffix changed:\n{:?}\n{:?}", doc, out);
            }
            Err(e) => {
                let e = e.to_string();
                let tagged = from.starts_with('!') && e.contains("tag");
                let hidden = value.text().chars().any(|c| c.is_control() || !c.is_ascii())
                    && e.contains("control or invisible");
                // libyaml refuses a plain `12:30` in a flow collection; quoted, it is a string.
                let flow_colon = e.contains("flow collection") && value.text().contains(':');
                prop_assert!(tagged || hidden || flow_colon, "{} refused: {}", from, e);
                prop_assert!(e.contains(&key));
            }
        }
    }

    #[test]
    fn list_keys_over_any_yaml_shaped_file_never_panic(lines in proptest::collection::vec(select(vec![
        "a:", "- b: 1", "  c: 'x'", "- [d, e]", "  - n: a", "    v: \"y\"", "k: [{n: a, v: 1}, {n: a}]", "m: *a", "l: &a [1]", "# c", "", "---",
    ]), 0..12), from in source_token(), key in select(vec![
        "a[0].b", "a[1].c", "a[n=a].v", "[0]", "a[0][1]", "k[n=a].v", "k[1].n", "l[0]", "m[0]", "a[0].c@tag", "k[0].v@digest",
    ])) {
        let text = lines.join("\n");
        let _ = read_scalar(&text, key);
        let Ok(value) = read_value(&format!("v: {from}\n"), "v") else { return Ok(()) };
        if let Ok(out) = set_scalar(&text, key, &value) {
            let back = read_value(&out, key).expect("reads back");
            prop_assert_eq!(back.text(), value.text());
        }
    }
}
