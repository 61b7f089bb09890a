//! The flat keys of a Sensor's `custom.spec` (Go YAML writes each value as one string) and
//! how each becomes a field of the resource JSON: one table drives the translation and the
//! error messages, so a message names the key the user wrote.

use serde_json::{Map, Value};

use super::SpecError;

/// How a spec value is turned into JSON.
#[derive(Clone, Copy)]
enum Shape {
    Str,
    /// Comma-separated list.
    List,
    Bool,
    Int,
    /// A command: a JSON array, or a string split like a shell would.
    Argv,
    JsonArray,
    JsonObject,
}

/// Every spec key, the resource path it fills, and its shape. One table drives both the
/// translation and the error messages, so a message can name the key the user wrote.
const SPEC_KEYS: &[(&str, &str, Shape)] = &[
    ("repo", "repo", Shape::Str),
    ("branch", "branch", Shape::Str),
    ("path", "path", Shape::Str),
    ("key", "keys", Shape::List),
    ("credentialsSecret", "credentialsSecret", Shape::Str),
    ("phases", "phases", Shape::List),
    ("sourcePhase", "source.phase", Shape::Str),
    ("sourceCommit", "source.commit", Shape::Str),
    ("sourcePath", "source.path", Shape::Str),
    ("targetPhase", "target.phase", Shape::Str),
    ("testProfile", "test.profile", Shape::Str),
    ("test", "test.runner", Shape::Str),
    ("testTarget", "test.target", Shape::Str),
    ("testImage", "test.image", Shape::Str),
    ("testCommand", "test.command", Shape::Argv),
    ("testArgs", "test.args", Shape::JsonArray),
    ("testWorkdir", "test.workdir", Shape::Str),
    ("testNamespace", "test.namespace", Shape::Str),
    ("testServiceAccount", "test.serviceAccount", Shape::Str),
    ("testResources", "test.resources", Shape::JsonObject),
    (
        "testSecurityContext",
        "test.securityContext",
        Shape::JsonObject,
    ),
    (
        "testPodSecurityContext",
        "test.podSecurityContext",
        Shape::JsonObject,
    ),
    ("testEnv", "test.env", Shape::JsonObject),
    ("testTimeout", "test.timeout", Shape::Str),
    ("testPath", "test.path", Shape::Str),
    ("testExpectStatus", "test.expectStatus", Shape::Int),
    ("testExpectBody", "test.expectBody", Shape::Str),
    ("testAttempts", "test.attempts", Shape::Int),
    ("testInterval", "test.interval", Shape::Str),
    ("argocdApp", "argocd.app", Shape::Str),
    ("argocdTimeout", "argocd.timeout", Shape::Str),
    ("commitMessage", "commitMessage", Shape::Str),
    ("dryRun", "dryRun", Shape::Bool),
    ("rollback", "rollback", Shape::Bool),
    ("allowUnmergedSource", "allowUnmergedSource", Shape::Bool),
    ("mode", "mode", Shape::Str),
    ("promoteVia", "promoteVia", Shape::Str),
    ("forge", "forge.kind", Shape::Str),
    ("forgeApiUrl", "forge.apiUrl", Shape::Str),
    ("prLabels", "pullRequest.labels", Shape::List),
    ("prDraft", "pullRequest.draft", Shape::Bool),
    ("mergeMethod", "pullRequest.mergeMethod", Shape::Str),
    ("autoMerge", "pullRequest.autoMerge", Shape::Bool),
    ("waitForMerge", "pullRequest.waitForMerge", Shape::Str),
];

/// The spec's map as the resource JSON: each key translated by [`SPEC_KEYS`].
pub(super) fn to_json(map: serde_yaml_ng::Mapping) -> Result<Value, SpecError> {
    let mut json = Value::Object(Map::new());
    for (k, v) in map {
        let key = scalar_text(&k).ok_or(SpecError::NotMap("a map with non-string keys"))?;
        let &(_, dest, shape) = SPEC_KEYS
            .iter()
            .find(|(name, _, _)| *name == key)
            .ok_or_else(|| SpecError::UnknownKey(key.clone()))?;
        let text = scalar_text(&v)
            .ok_or_else(|| SpecError::invalid(&key, "must be a string, not a nested value"))?;
        let value = convert(&text, shape).map_err(|p| SpecError::invalid(&key, p))?;
        set_path(&mut json, dest, value);
    }
    Ok(json)
}

/// Renames a resource path in an error to the spec key the user wrote.
pub(super) fn spec_named(err: SpecError) -> SpecError {
    match err {
        SpecError::Invalid { field, problem } => {
            let key = SPEC_KEYS
                .iter()
                .find(|(_, dest, _)| *dest == field)
                .map_or(field, |(name, _, _)| name.to_string());
            SpecError::Invalid {
                field: key,
                problem,
            }
        }
        other => other,
    }
}

/// The text of a YAML scalar; Go YAML quotes ambiguous strings, but a hand-written spec may not.
fn scalar_text(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Null => Some(String::new()),
        _ => None,
    }
}

fn convert(text: &str, shape: Shape) -> Result<Value, String> {
    let list = |t: &str| -> Value {
        t.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.into()))
            .collect()
    };
    Ok(match shape {
        Shape::Str => Value::String(text.into()),
        Shape::List => list(text),
        Shape::Bool => match text.trim() {
            "true" => Value::Bool(true),
            "false" | "" => Value::Bool(false),
            other => return Err(format!("{} is not true or false", shown(other))),
        },
        Shape::Int => Value::from(
            text.trim()
                .parse::<u64>()
                .map_err(|_| format!("{} is not a whole number", shown(text)))?,
        ),
        Shape::Argv if text.trim_start().starts_with('[') => json_of(text, Value::is_array)?,
        Shape::Argv => shlex::split(text)
            .ok_or("has unbalanced quotes")?
            .into_iter()
            .map(Value::String)
            .collect(),
        Shape::JsonArray => json_of(text, Value::is_array)?,
        Shape::JsonObject => json_of(text, Value::is_object)?,
    })
}

/// A value quoted in a message, or only its length when it is longer than any valid one would
/// be (a message never carries an oversized value).
fn shown(text: &str) -> String {
    const SHOWN: usize = 32;
    if text.len() <= SHOWN {
        format!("`{text}`")
    } else {
        format!("a value of {} bytes", text.len())
    }
}

fn json_of(text: &str, ok: fn(&Value) -> bool) -> Result<Value, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
    if ok(&v) {
        Ok(v)
    } else {
        Err("has the wrong JSON type".into())
    }
}

/// Sets `dotted.path` in a JSON object, creating objects on the way (like sjson's `set`).
pub fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let obj = node.as_object_mut().expect("made an object above");
        if parts.peek().is_none() {
            obj.insert(part.to_string(), value);
            return;
        }
        node = obj.entry(part).or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_documents_every_spec_key() {
        let contract = include_str!("../../docs/contract.md");
        for (key, _, _) in SPEC_KEYS {
            assert!(
                contract.contains(&format!("\n| `{key}` |")),
                "spec key `{key}` has no row in docs/contract.md §2"
            );
        }
    }
}
