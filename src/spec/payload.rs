//! The Execute payload: event data, and nothing else.
//!
//! An event (an Argo CD notification forwarded by the Sensor) may say which commit was synced,
//! from which phase to which phase, and where the synced deployment answers. Everything else —
//! repository, files, keys, test image, command — belongs to the operator's spec. A payload field
//! outside those four is refused by name rather than ignored: an ignored `targetPhase` would
//! promote somewhere else than the sender asked.

use serde_json::{Map, Value};

use super::SpecError;

/// Largest payload read: an event carries four short strings, a notification body a few more.
pub(super) const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// The event fields, by their resource path, with every spelling accepted for each.
const FIELDS: &[(&str, [&str; 3])] = &[
    (
        "source.commit",
        ["source.commit", "sourceCommit", "source_commit"],
    ),
    (
        "source.phase",
        ["source.phase", "sourcePhase", "source_phase"],
    ),
    (
        "target.phase",
        ["target.phase", "targetPhase", "target_phase"],
    ),
    ("test.target", ["test.target", "testTarget", "test_target"]),
];

/// The event data of one payload, by resource path, each given at most once.
#[derive(Debug, Default, PartialEq)]
pub(super) struct EventData(Vec<(&'static str, String)>);

impl EventData {
    /// Parses a payload: empty, a JSON object, or a JSON string holding one (Argo Events hands a
    /// forwarded body over either way).
    pub(super) fn parse(payload: &[u8]) -> Result<EventData, SpecError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(SpecError::BadPayload(format!(
                "it is {} bytes, more than the {MAX_PAYLOAD_BYTES} an event may carry",
                payload.len()
            )));
        }
        let mut data = EventData::default();
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Ok(data);
        }
        let bad = |e: &dyn std::fmt::Display| SpecError::BadPayload(e.to_string());
        let value: Value = serde_json::from_slice(payload).map_err(|e| bad(&e))?;
        let value = match value {
            Value::String(inner) => serde_json::from_str(&inner).map_err(|e| bad(&e))?,
            other => other,
        };
        let Value::Object(map) = value else {
            return Err(bad(&"expected an object"));
        };
        data.collect("", map)?;
        Ok(data)
    }

    /// The fields set, as (resource path, value).
    pub(super) fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(path, value)| (*path, value.as_str()))
    }

    /// Walks one object level; `prefix` is the path of the object (`""` at the top).
    fn collect(&mut self, prefix: &str, map: Map<String, Value>) -> Result<(), SpecError> {
        for (name, value) in map {
            let spelled = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}.{name}")
            };
            let group = matches!(spelled.as_str(), "source" | "target" | "test");
            match value {
                Value::Object(inner) if group => self.collect(&spelled, inner)?,
                _ if group => {
                    return Err(SpecError::invalid(
                        &spelled,
                        "must be an object (`source.commit`, `source.phase`, `target.phase`, \
                         `test.target`)",
                    ));
                }
                Value::String(text) => self.set(&spelled, text)?,
                _ if field_of(&spelled).is_some() => {
                    return Err(SpecError::invalid(&spelled, "must be a string"));
                }
                _ => return Err(SpecError::ForbiddenPayloadField(spelled)),
            }
        }
        Ok(())
    }

    fn set(&mut self, spelled: &str, text: String) -> Result<(), SpecError> {
        let path =
            field_of(spelled).ok_or_else(|| SpecError::ForbiddenPayloadField(spelled.into()))?;
        match self.0.iter().find(|(p, _)| *p == path) {
            Some((_, earlier)) if *earlier != text => Err(SpecError::invalid(
                path,
                format!(
                    "is given twice in the payload with different values (one spelled `{spelled}`)"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.0.push((path, text));
                Ok(())
            }
        }
    }
}

/// The resource path of an accepted spelling.
fn field_of(spelled: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .find(|(_, spellings)| spellings.contains(&spelled))
        .map(|(path, _)| *path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(payload: &str) -> Result<EventData, SpecError> {
        EventData::parse(payload.as_bytes())
    }

    #[test]
    fn reads_every_spelling_of_the_four_event_fields() {
        for payload in [
            r#"{"source":{"commit":"abc1234","phase":"test"},"target":{"phase":"prod"},"test":{"target":"http://a"}}"#,
            r#"{"sourceCommit":"abc1234","sourcePhase":"test","targetPhase":"prod","testTarget":"http://a"}"#,
            r#"{"source_commit":"abc1234","source_phase":"test","target_phase":"prod","test_target":"http://a"}"#,
            r#"{"source.commit":"abc1234","source.phase":"test","target.phase":"prod","test.target":"http://a"}"#,
        ] {
            let data = parse(payload).expect(payload);
            let fields: Vec<_> = data.fields().collect();
            assert_eq!(
                fields,
                [
                    ("source.commit", "abc1234"),
                    ("source.phase", "test"),
                    ("target.phase", "prod"),
                    ("test.target", "http://a"),
                ],
                "{payload}"
            );
        }
    }

    #[test]
    fn refuses_any_other_field_by_name() {
        for (payload, name) in [
            (r#"{"source_phase":"test","app":"petstore"}"#, "`app`"),
            (r#"{"test":{"image":"evil:1"}}"#, "`test.image`"),
            (r#"{"test":{"command":["sh"]}}"#, "`test.command`"),
            (r#"{"repo":"https://evil/x.git"}"#, "`repo`"),
            (r#"{"testCommand":"sh -c id"}"#, "`testCommand`"),
            (r#"{"dryRun":false}"#, "`dryRun`"),
            (
                r#"{"source":{"commit":"abc1234","branch":"x"}}"#,
                "`source.branch`",
            ),
            (r#"{"target_Phase":"prod"}"#, "`target_Phase`"),
        ] {
            let err = parse(payload).expect_err(payload);
            assert!(
                matches!(err, SpecError::ForbiddenPayloadField(_)),
                "{payload}: {err}"
            );
            assert!(err.to_string().contains(name), "{payload}: {err}");
        }
    }

    #[test]
    fn refuses_two_spellings_with_different_values() {
        let err =
            parse(r#"{"targetPhase":"prod","target_phase":"staging"}"#).expect_err("conflict");
        assert!(err.to_string().contains("target.phase"), "{err}");
        let err =
            parse(r#"{"target":{"phase":"prod"},"target.phase":"dev"}"#).expect_err("conflict");
        assert!(err.to_string().contains("twice"), "{err}");
        let same = parse(r#"{"targetPhase":"prod","target_phase":"prod"}"#).expect("same value");
        assert_eq!(same.fields().count(), 1);
    }

    #[test]
    fn refuses_values_that_are_not_strings_and_oversized_payloads() {
        for payload in [
            r#"{"source_commit":1234567}"#,
            r#"{"test":{"target":null}}"#,
            r#"{"source":"x"}"#,
        ] {
            assert!(
                matches!(parse(payload), Err(SpecError::Invalid { .. })),
                "{payload}"
            );
        }
        let huge = format!(r#"{{"source_phase":"{}"}}"#, "a".repeat(MAX_PAYLOAD_BYTES));
        assert!(matches!(parse(&huge), Err(SpecError::BadPayload(_))));
        assert_eq!(parse(" \n").expect("empty"), EventData::default());
    }
}
