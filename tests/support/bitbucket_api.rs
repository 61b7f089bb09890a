//! The requests Bitbucket Data Center's REST API 1.0 accepts, for the operations phasegate
//! uses, written down from Atlassian's REST reference (8.x–9.x): method and path, the query
//! parameters each takes, the body's required fields and enums.
//!
//! Atlassian publishes no machine-readable description of the Data Center API on a package
//! registry (only on its own site, which the test machines cannot reach; the npm package that
//! carries TypeScript types generated from it is a third party's and ships no JSON), so unlike
//! GitHub's (tests/support/openapi.rs) this table is hand-written. It checks what phasegate
//! could get wrong: an unknown path or query parameter, a missing required field, a value
//! outside an enum, a field of the wrong type, a text longer than Bitbucket keeps.

use serde_json::Value;

/// The build states Bitbucket knows.
const BUILD_STATES: &[&str] = &["INPROGRESS", "SUCCESSFUL", "FAILED", "CANCELLED", "UNKNOWN"];

/// The merge strategies Bitbucket Data Center ships.
const STRATEGIES: &[&str] = &[
    "no-ff",
    "ff",
    "ff-only",
    "rebase-no-ff",
    "rebase-ff-only",
    "squash",
    "squash-ff-only",
];

/// Checks one request; `path` is relative to `/rest/api/latest`, `query` its decoded pairs.
pub(crate) fn check(
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: Option<&Value>,
) -> Result<(), String> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let known = |allowed: &[&str]| -> Result<(), String> {
        match query.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(format!("{method} {path}: unknown query parameter {k}")),
            None => Ok(()),
        }
    };
    let given = body;
    let body = || given.ok_or_else(|| format!("{method} {path}: a JSON body is required"));
    let rest = match seg.as_slice() {
        ["application-properties"] if method == "GET" => return known(&[]),
        ["projects", _, "repos", _, rest @ ..] => rest,
        _ => return Err(format!("{method} {path}: no such resource")),
    };
    match (method, rest) {
        ("GET", ["pull-requests"]) => {
            known(&[
                "at",
                "direction",
                "state",
                "order",
                "draft",
                "filterText",
                "withAttributes",
                "withProperties",
                "start",
                "limit",
            ])?;
            for (k, v) in query {
                let ok = match k.as_str() {
                    "direction" => ["INCOMING", "OUTGOING"].contains(&v.as_str()),
                    "state" => ["OPEN", "DECLINED", "MERGED", "ALL"].contains(&v.as_str()),
                    "at" => v.starts_with("refs/"),
                    _ => true,
                };
                if !ok {
                    return Err(format!("{method} {path}: {k}={v} is not allowed"));
                }
            }
            Ok(())
        }
        ("POST", ["pull-requests"]) => {
            known(&[])?;
            let b = body()?;
            string(b, "title", path)?;
            for r in ["fromRef", "toRef"] {
                let id = b[r]["id"].as_str().unwrap_or("");
                if !id.starts_with("refs/heads/") {
                    return Err(format!("POST {path}: {r}.id must be a refs/heads/ ref"));
                }
            }
            optional(b, "description", Value::is_string, path)?;
            optional(b, "draft", Value::is_boolean, path)
        }
        ("GET", ["pull-requests", _]) | ("GET", ["settings", "auto-merge"]) => known(&[]),
        ("PUT", ["pull-requests", _]) => {
            known(&[])?;
            let b = body()?;
            if !b["version"].is_u64() {
                return Err(format!(
                    "PUT {path}: the pull request's version is required"
                ));
            }
            optional(b, "title", Value::is_string, path)?;
            optional(b, "description", Value::is_string, path)?;
            optional(b, "reviewers", Value::is_array, path)
        }
        ("POST", ["pull-requests", _, "merge"]) => {
            known(&["version"])?;
            if !query
                .iter()
                .any(|(k, v)| k == "version" && v.parse::<u64>().is_ok())
            {
                return Err(format!("POST {path}: ?version= is required"));
            }
            if let Some(b) = given {
                optional(b, "autoMerge", Value::is_boolean, path)?;
                if let Some(s) = b.get("strategyId")
                    && !s.as_str().is_some_and(|s| STRATEGIES.contains(&s))
                {
                    return Err(format!("POST {path}: strategyId {s} is not a strategy"));
                }
            }
            Ok(())
        }
        ("POST", ["commits", sha, "builds"]) => {
            known(&[])?;
            if sha.len() != 40 {
                return Err(format!("POST {path}: the commit id is not a full one"));
            }
            let b = body()?;
            for field in ["key", "url"] {
                string(b, field, path)?;
            }
            let state = b["state"].as_str().unwrap_or("");
            if !BUILD_STATES.contains(&state) {
                return Err(format!("POST {path}: state {state:?} is not a build state"));
            }
            for field in ["key", "name", "description"] {
                if b[field].as_str().is_some_and(|s| s.chars().count() > 255) {
                    return Err(format!("POST {path}: {field} is longer than 255"));
                }
            }
            Ok(())
        }
        _ => Err(format!("{method} {path}: no such operation")),
    }
}

fn string(body: &Value, field: &str, path: &str) -> Result<(), String> {
    match body[field].as_str() {
        Some(s) if !s.is_empty() => Ok(()),
        _ => Err(format!("{path}: {field} is required (a non-empty string)")),
    }
}

fn optional(body: &Value, field: &str, ok: fn(&Value) -> bool, path: &str) -> Result<(), String> {
    match body.get(field) {
        Some(v) if !ok(v) => Err(format!("{path}: {field} has the wrong type")),
        _ => Ok(()),
    }
}
