//! Checks requests against GitHub's official REST API description, the npm package
//! `@octokit/openapi` (pinned in `.ci/test.sh`, which installs it): the method and path exist,
//! required path and query parameters are present and match their schemas, and the JSON body
//! matches the operation's request body schema.
//!
//! The description is OpenAPI 3.0.3: its schemas are validated as JSON Schema draft 4 (the
//! closest draft the validator has; 3.0 schemas are an extended subset of draft 5's core).
//! Differences that matter and how they are handled: `nullable: true` is an OpenAPI keyword a
//! JSON Schema validator ignores, so a `null` where 3.0 allows one would be refused (phasegate
//! sends no nulls); `example`, `x-*` and `discriminator` are annotations and ignored; `$ref`s
//! to `#/components/...` resolve against the components, attached to each schema. Not
//! checked: headers, response bodies, `format`s. The matching of operations and parameters is
//! shared with the Swagger 2.0 checker of Gitea's API (tests/support/swagger.rs).

use std::{path::PathBuf, sync::OnceLock};

use serde_json::{Map, Value, json};

/// The pinned package version (the same as `.ci/test.sh` installs).
pub(crate) const OCTOKIT_OPENAPI_VERSION: &str = "23.0.2";

/// Where `.ci/test.sh` installs the description; `PHASEGATE_OCTOKIT_OPENAPI` overrides.
fn description_path() -> PathBuf {
    std::env::var_os("PHASEGATE_OCTOKIT_OPENAPI")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/npm/node_modules/@octokit/openapi/generated/api.github.com.json")
        })
}

/// GitHub's REST API description, loaded once per test binary. Panics (fails the test) when it
/// is not installed: a test that cannot check its requests must not pass.
pub(crate) fn github() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = description_path();
        let text = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "GitHub's OpenAPI description is missing at {} ({e}): install it with \
                 `npm install --prefix target/npm @octokit/openapi@{OCTOKIT_OPENAPI_VERSION}` \
                 (.ci/test.sh does)",
                path.display()
            )
        });
        let doc: Value = serde_json::from_slice(&text).expect("the description is JSON");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.0")),
            "expected an OpenAPI 3.0 description"
        );
        doc
    })
}

/// Checks one request; `Err` says what is wrong with it. `path` is relative to the API root
/// (without `/api/v3`), `query` its decoded query pairs.
pub(crate) fn check(
    doc: &Value,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: Option<&Value>,
) -> Result<(), String> {
    let matched = operation(doc, "GitHub's API", method, path)?;
    check_parameters(doc, &matched, method, query, |p| p["schema"].clone())?;
    let template = &matched.template;
    let request_body = resolve(doc, &matched.op["requestBody"]);
    match (body, request_body.is_null()) {
        (Some(_), true) => Err(format!("{method} {template}: takes no request body")),
        (None, false) if request_body["required"] == true => {
            Err(format!("{method} {template}: request body required"))
        }
        (None, _) => Ok(()),
        (Some(body), false) => {
            let schema = &request_body["content"]["application/json"]["schema"];
            validate(doc, schema, body).map_err(|e| format!("{method} {template}: body: {e}"))
        }
    }
}

/// The operation of a description that a request calls.
pub(crate) struct Matched<'a> {
    /// The path template, e.g. `/repos/{owner}/{repo}/pulls`.
    pub template: String,
    /// The path parameters' values.
    pub params: Params,
    pub op: &'a Value,
    /// Every parameter of the path and the operation, `$ref`s resolved.
    pub declared: Vec<Value>,
}

/// The operation `method path` of `doc` (named `api` in messages), or what is missing.
pub(crate) fn operation<'a>(
    doc: &'a Value,
    api: &str,
    method: &str,
    path: &str,
) -> Result<Matched<'a>, String> {
    let (template, params) =
        find_path(doc, path).ok_or_else(|| format!("{method} {path}: no such path in {api}"))?;
    let item = &doc["paths"][&template];
    let op = item
        .get(method.to_ascii_lowercase())
        .ok_or_else(|| format!("{method} {template}: no such operation in {api}"))?;
    let declared = item["parameters"]
        .as_array()
        .into_iter()
        .chain(op["parameters"].as_array())
        .flatten()
        .map(|p| resolve(doc, p).clone())
        .collect();
    Ok(Matched {
        template,
        params,
        op,
        declared,
    })
}

/// Checks the path and query parameters of a request to `matched`: the required ones are
/// there, each value matches its schema (`schema_of` a declaration: OpenAPI 3 has it under
/// `schema`, Swagger 2 on the declaration itself), and no query parameter is unknown.
pub(crate) fn check_parameters(
    doc: &Value,
    matched: &Matched,
    method: &str,
    query: &[(String, String)],
    schema_of: impl Fn(&Value) -> Value,
) -> Result<(), String> {
    let template = &matched.template;
    for p in &matched.declared {
        let name = p["name"].as_str().unwrap_or_default();
        let given: Vec<&String> = match p["in"].as_str() {
            Some("path") => matched
                .params
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v)
                .collect(),
            Some("query") => query
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v)
                .collect(),
            _ => continue,
        };
        if given.is_empty() && p["required"] == true {
            return Err(format!(
                "{method} {template}: required parameter `{name}` missing"
            ));
        }
        let schema = schema_of(p);
        for value in given {
            let instance = typed(value, &schema);
            validate(doc, &schema, &instance)
                .map_err(|e| format!("{method} {template}: parameter `{name}`: {e}"))?;
        }
    }
    for (name, _) in query {
        let known = matched
            .declared
            .iter()
            .any(|p| p["in"] == "query" && p["name"] == name.as_str());
        if !known {
            return Err(format!(
                "{method} {template}: unknown query parameter `{name}`"
            ));
        }
    }
    Ok(())
}

/// Path parameters by name.
pub(crate) type Params = Vec<(String, String)>;

/// The path template matching `path`, with the path parameters' values; literal segments win
/// over parameters (`/pulls/comments` over `/pulls/{pull_number}`).
fn find_path(doc: &Value, path: &str) -> Option<(String, Params)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut best: Option<(usize, String, Params)> = None;
    for template in doc["paths"].as_object()?.keys() {
        let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let mut literal = 0;
        let fits = parts.iter().zip(&segments).all(|(t, s)| {
            if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                params.push((name.to_string(), s.to_string()));
                !s.is_empty()
            } else {
                literal += 1;
                t == s
            }
        });
        if fits && best.as_ref().is_none_or(|(l, _, _)| literal > *l) {
            best = Some((literal, template.clone(), params));
        }
    }
    best.map(|(_, t, p)| (t, p))
}

/// Follows a `$ref` to `#/components/...` (parameters, request bodies).
pub(crate) fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => doc.pointer(pointer).unwrap_or(&Value::Null),
        None => v,
    }
}

/// A path or query value as the JSON its schema expects (numbers, booleans).
fn typed(value: &str, schema: &Value) -> Value {
    match schema["type"].as_str() {
        Some("integer") | Some("number") => value
            .parse::<f64>()
            .ok()
            .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
            .map(|n| match value.parse::<i64>() {
                Ok(i) => json!(i),
                Err(_) => n,
            })
            .unwrap_or(json!(value)),
        Some("boolean") => value.parse::<bool>().map_or(json!(value), Value::Bool),
        _ => json!(value),
    }
}

pub(crate) fn validate(doc: &Value, schema: &Value, instance: &Value) -> Result<(), String> {
    let schema = inline(doc, schema, 0);
    let validator =
        jsonschema::draft4::new(&schema).map_err(|e| format!("schema does not compile: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at `{}`", e, e.instance_path()))
        .collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors.join("; ")),
    }
}

/// The schema with its `$ref`s to `#/components/...` replaced by what they point to (a small
/// self-contained schema instead of the whole description's components).
fn inline(doc: &Value, schema: &Value, depth: usize) -> Value {
    assert!(depth < 32, "$ref cycle in the API description");
    match schema {
        Value::Object(map) => match map.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let target = resolve(doc, schema);
                assert!(
                    !target.is_null(),
                    "unresolvable $ref {r} in the API description"
                );
                inline(doc, target, depth + 1)
            }
            None => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), inline(doc, v, depth + 1)))
                    .collect::<Map<_, _>>(),
            ),
        },
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| inline(doc, v, depth + 1)).collect())
        }
        other => other.clone(),
    }
}
