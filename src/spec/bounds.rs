//! The most each list and map of a spec or resource may hold, each of their entries, and each
//! string field ([`TEXT_BOUNDS`]): a hand-written spec or a Sensor parameter must not make a run
//! carry unbounded argv, environment, commits or history records. Durations are bounded in
//! `plan.rs`; the payload, the resource and the test target in their own files. Every bound is
//! `INVALID_ARGUMENT` naming the key and the limit.

use std::collections::BTreeMap;

use serde_json::Value;

use super::SpecError;

/// Keys promoted together in one commit (an image tag, its digest, the app version …).
pub(super) const MAX_KEYS: usize = 32;
/// One dotted key: deeper than any chart's values, short enough for commit trailers.
pub(super) const MAX_KEY_LEN: usize = 256;
/// Phases of one chain (`dev,test,staging,prod`).
pub(super) const MAX_PHASES: usize = 32;
/// Words of `testCommand`, and of `testArgs`.
pub(super) const MAX_WORDS: usize = 256;
/// One word of the command or its arguments: a `sh -c` script fits, a megabyte does not.
pub(super) const MAX_WORD_LEN: usize = 32 * 1024;
/// Entries of `testEnv`.
pub(super) const MAX_ENV: usize = 128;
/// One `testEnv` name.
pub(super) const MAX_ENV_NAME_LEN: usize = 256;
/// One `testEnv` value: a small configuration file fits.
pub(super) const MAX_ENV_VALUE_LEN: usize = 32 * 1024;
/// Labels of a pull request.
pub(super) const MAX_LABELS: usize = 32;

/// The longest value of each string field of the resource (by its path; of each entry, for a
/// list), checked on the JSON before it is read into types, so that no later message echoes an
/// oversized value and no run records one. Each is far above any real value and far below what
/// would weigh on a history line (the history keeps 1000 runs). `keys`, `test.command`,
/// `test.args` and `test.env` have their own bounds above; `test.target` is also bounded (with
/// its other rules) in `target.rs`.
pub(super) const TEXT_BOUNDS: &[(&str, usize)] = &[
    // URLs: what browsers and proxies commonly accept.
    ("repo", 2048),
    // git stores a branch as a file name.
    ("branch", 255),
    ("path", 1024),
    ("source.path", 1024),
    // Kubernetes object names (DNS subdomains) and namespaces (DNS labels).
    ("credentialsSecret", 253),
    ("phases", 63),
    ("source.phase", 63),
    // The longest commit id: SHA-256's 64 hex digits.
    ("source.commit", 64),
    ("target.phase", 63),
    ("test.profile", 253),
    ("test.runner", 16),
    ("test.target", super::target::MAX_TARGET_LEN),
    // A registry host, a repository path, a tag and a digest.
    ("test.image", 1024),
    // Linux's PATH_MAX.
    ("test.workdir", 4096),
    ("test.namespace", 63),
    ("test.serviceAccount", 253),
    // `90s`, `1h 30m`: a duration is a few words.
    ("test.timeout", 64),
    ("test.path", 2048),
    ("test.expectBody", super::body_pattern::MAX_PATTERN_LEN),
    ("test.interval", 64),
    // `namespace/name`: a DNS label, a slash, a DNS subdomain.
    ("argocd.app", 317),
    ("argocd.timeout", 64),
    // A subject line template; the commit's trailers come on top.
    ("commitMessage", 4096),
    ("mode", 16),
    ("promoteVia", 32),
    ("forge.kind", 32),
    ("forge.apiUrl", 2048),
    ("pullRequest.labels", 256),
    ("pullRequest.mergeMethod", 16),
    ("pullRequest.waitForMerge", 64),
];

/// Every string field of a resource's JSON within its [`TEXT_BOUNDS`]; a field of another type
/// is left to the parse that follows.
pub(super) fn texts(resource: &Value) -> Result<(), SpecError> {
    for &(path, most) in TEXT_BOUNDS {
        match resource.pointer(&format!("/{}", path.replace('.', "/"))) {
            Some(Value::String(text)) => length(path, "the value", text, most)?,
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::String(text) = item {
                        length(path, &format!("entry {}", i + 1), text, most)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses more than `most` entries in `field`; `what` names them in the message.
pub(super) fn count(field: &str, what: &str, n: usize, most: usize) -> Result<(), SpecError> {
    if n > most {
        return Err(SpecError::invalid(
            field,
            format!("has {n} {what}; at most {most} are allowed"),
        ));
    }
    Ok(())
}

/// Refuses an entry of `field` longer than `most` bytes, without echoing it (it may be a
/// secret); `what` says which entry.
pub(super) fn length(field: &str, what: &str, text: &str, most: usize) -> Result<(), SpecError> {
    if text.len() > most {
        return Err(SpecError::invalid(
            field,
            format!(
                "{what} is {} bytes long; at most {most} are allowed",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// A list of words (`test.command`, `test.args`): how many, and how long each.
pub(super) fn words(field: &str, words: &[String]) -> Result<(), SpecError> {
    count(field, "words", words.len(), MAX_WORDS)?;
    for (i, word) in words.iter().enumerate() {
        length(field, &format!("word {}", i + 1), word, MAX_WORD_LEN)?;
    }
    Ok(())
}

/// `test.env`: how many entries, and names and values a process environment can hold (a name
/// without `=`, no NUL anywhere) of bounded length. Values are never echoed.
pub(super) fn env(env: &BTreeMap<String, String>) -> Result<(), SpecError> {
    const FIELD: &str = "test.env";
    count(FIELD, "entries", env.len(), MAX_ENV)?;
    for (name, value) in env {
        length(FIELD, "a name", name, MAX_ENV_NAME_LEN)?;
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(SpecError::invalid(
                FIELD,
                format!("{name:?} is not an environment variable name (empty, or has '=' or NUL)"),
            ));
        }
        length(
            FIELD,
            &format!("the value of `{name}`"),
            value,
            MAX_ENV_VALUE_LEN,
        )?;
        if value.contains('\0') {
            return Err(SpecError::invalid(
                FIELD,
                format!("the value of `{name}` contains a NUL character"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Resource;

    /// A spec key with a value beyond its bound, and what the error must say.
    fn beyond() -> Vec<(&'static str, String, &'static str)> {
        let list = |n: usize, item: &str| (0..n).map(|i| format!("{item}{i}")).collect::<Vec<_>>();
        let json = |v: serde_json::Value| v.to_string();
        let env: serde_json::Map<_, _> = (0..=MAX_ENV)
            .map(|i| (format!("V{i}"), serde_json::Value::from("x")))
            .collect();
        vec![
            ("key", list(33, "k").join(","), "has 33 keys; at most 32"),
            (
                "key",
                "k".repeat(257),
                "key 1 is 257 bytes long; at most 256",
            ),
            (
                "phases",
                list(33, "p").join(","),
                "has 33 phases; at most 32",
            ),
            ("testEnv", json(env.into()), "has 129 entries; at most 128"),
            (
                "testEnv",
                json(serde_json::json!({"N".repeat(257): "x"})),
                "a name is 257 bytes long; at most 256",
            ),
            (
                "testEnv",
                json(serde_json::json!({"N": "x".repeat(MAX_ENV_VALUE_LEN + 1)})),
                "the value of `N` is 32769 bytes long; at most 32768",
            ),
            (
                "testArgs",
                json(list(257, "a").into()),
                "has 257 words; at most 256",
            ),
            (
                "testCommand",
                json(list(257, "c").into()),
                "has 257 words; at most 256",
            ),
            (
                "prLabels",
                list(33, "l").join(","),
                "has 33 labels; at most 32",
            ),
        ]
    }

    #[test]
    fn every_list_and_map_of_a_spec_is_bounded_and_named_by_its_key() {
        for (key, value, expected) in beyond() {
            let mut spec = std::collections::BTreeMap::from([
                ("repo", "file:///r".to_string()),
                ("path", "a/{phase}.yaml".into()),
                ("test", "command".into()),
                ("testCommand", "./t".into()),
            ]);
            if key == "prLabels" {
                spec.insert("promoteVia", "pull-request".into());
            }
            spec.insert(key, value);
            let spec = spec.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let yaml = crate::sensor::go_yaml(&spec);
            let err = Resource::from_spec_yaml(yaml.as_bytes())
                .expect_err(key)
                .to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains(expected),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn names_the_field_and_the_limit() {
        let err = count("keys", "keys", 33, MAX_KEYS)
            .expect_err("33")
            .to_string();
        assert_eq!(err, "invalid `keys`: has 33 keys; at most 32 are allowed");
        count("keys", "keys", 32, MAX_KEYS).expect("32");
    }

    #[test]
    fn bounds_words_and_environment_entries_without_echoing_values() {
        let word = "w".repeat(MAX_WORD_LEN + 1);
        let err = words("test.args", &["a".into(), word]).expect_err("long word");
        assert!(
            err.to_string()
                .contains("word 2 is 32769 bytes long; at most 32768"),
            "{err}"
        );
        let many: Vec<String> = (0..=MAX_WORDS).map(|i| i.to_string()).collect();
        assert!(words("test.command", &many).is_err());
        words("test.command", &many[1..]).expect("256 words");

        let secret = "s3cret".repeat(MAX_ENV_VALUE_LEN);
        let err = env(&BTreeMap::from([("TOKEN".into(), secret)])).expect_err("long value");
        assert!(err.to_string().contains("the value of `TOKEN`"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        for bad in ["", "A=B", "A\0"] {
            assert!(
                env(&BTreeMap::from([(bad.into(), "v".into())])).is_err(),
                "{bad:?}"
            );
        }
        let value_nul = BTreeMap::from([("A".into(), "s3cret\0".into())]);
        let err = env(&value_nul).expect_err("NUL").to_string();
        assert!(err.contains("NUL") && !err.contains("s3cret"), "{err}");
        let too_many = (0..=MAX_ENV)
            .map(|i| (format!("V{i}"), String::new()))
            .collect();
        assert!(
            env(&too_many)
                .expect_err("129")
                .to_string()
                .contains("at most 128")
        );
    }

    #[test]
    fn bounds_every_string_field_and_list_entry_without_echoing_it() {
        for &(path, most) in TEXT_BOUNDS {
            let mut json = serde_json::json!({});
            crate::spec::keys::set_path(&mut json, path, Value::from("v".repeat(most)));
            texts(&json).expect("at the bound");
            let long = "v".repeat(most + 1);
            crate::spec::keys::set_path(&mut json, path, Value::from(vec![long.clone()]));
            let err = texts(&json).expect_err(path).to_string();
            let expected = format!("invalid `{path}`: entry 1 is {} bytes long", most + 1);
            assert!(err.starts_with(&expected), "{err}");
            assert!(!err.contains(&long), "{path}: echoed");
        }
    }
}
