//! No control character in a spec or resource string (issue 22): a repo URL, path, key,
//! branch or any other field holding ESC or a newline would forge a line of the text log, of
//! `phasegate runs` and of the Sensor's status message. Only the test's own words (a `sh -c`
//! script spans lines) and its environment values may hold them; they go to the test alone.

use serde_json::Value;

use super::SpecError;

/// Resource paths whose strings may hold control characters.
const FREE_TEXT: &[&str] = &["test.command", "test.args", "test.env"];

/// Refuses the first control character (C0, DEL, C1; the tab too) in a string or object key of
/// the resource, naming its path and the character's code, never the value.
pub(super) fn check_controls(json: &Value) -> Result<(), SpecError> {
    walk(json, "")
}

fn walk(value: &Value, path: &str) -> Result<(), SpecError> {
    if FREE_TEXT.contains(&path) {
        return Ok(());
    }
    match value {
        Value::String(text) => plain(path, text),
        Value::Array(items) => items.iter().try_for_each(|item| walk(item, path)),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            // A bad key is named by the object holding it, never echoed.
            plain(if path.is_empty() { "resource" } else { path }, key)?;
            let inner = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            walk(item, &inner)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn plain(path: &str, text: &str) -> Result<(), SpecError> {
    match text.chars().find(|c| c.is_control()) {
        Some(c) => Err(SpecError::invalid(
            path,
            format!("holds the control character U+{:04X}", u32::from(c)),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_control_characters_outside_the_tests_own_words() {
        for (json, path) in [
            (r#"{"repo":"https://x/y\u001b[2J.git"}"#, "repo"),
            (r#"{"path":"a/{phase}\n.yaml"}"#, "path"),
            (r#"{"keys":["image.version","x\u0085"]}"#, "keys"),
            (r#"{"test":{"image":"t:1\r"}}"#, "test.image"),
            (
                r#"{"test":{"resources":{"li\u0007mits":{}}}}"#,
                "`test.resources`",
            ),
        ] {
            let err = check_controls(&serde_json::from_str(json).expect("json"))
                .expect_err(json)
                .to_string();
            assert!(err.contains(path) && err.contains("U+"), "{json}: {err}");
        }
        let scripts = r#"{"test":{"command":["sh","-c","a\nb"],"args":["x\ty"],
                          "env":{"CONF":"a: 1\nb: 2"}}}"#;
        check_controls(&serde_json::from_str(scripts).expect("json")).expect("free text");
    }
}
