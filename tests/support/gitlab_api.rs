//! The parameters GitLab's REST API v4 declares for the endpoints phasegate calls, and a check
//! of a request against them, for the fake GitLab (tests/support/fake_gitlab.rs).
//!
//! GitLab publishes no machine-readable description of these endpoints in a package registry
//! (its OpenAPI v2 file lives in GitLab's own repository, covers only part of the API, and no
//! npm or PyPI package ships it), so the declarations are written here from GitLab's API
//! documentation and its Grape `params` blocks (lib/api/merge_requests.rb,
//! lib/api/commit_statuses.rb), GitLab 16 to 18. The check is stricter than GitLab on one
//! point on purpose: GitLab silently ignores a parameter it does not declare, so a misspelt one
//! would go unnoticed against a real GitLab; here it is a violation.

use serde_json::Value;

/// What a parameter's value must be.
#[derive(Clone, Copy)]
enum Kind {
    /// A non-blank string.
    Text,
    Bool,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A comma-separated string or an array of strings (labels).
    List,
}

use Kind::*;

/// (name, kind, required).
type Param = (&'static str, Kind, bool);

const LIST_MERGE_REQUESTS: &[Param] = &[
    (
        "state",
        OneOf(&["opened", "closed", "locked", "merged", "all"]),
        false,
    ),
    ("source_branch", Text, false),
    ("target_branch", Text, false),
    ("labels", List, false),
    ("per_page", Text, false),
    ("page", Text, false),
];

const CREATE_MERGE_REQUEST: &[Param] = &[
    ("source_branch", Text, true),
    ("target_branch", Text, true),
    ("title", Text, true),
    ("description", Text, false),
    ("labels", List, false),
    ("remove_source_branch", Bool, false),
    ("squash", Bool, false),
    ("allow_collaboration", Bool, false),
];

const UPDATE_MERGE_REQUEST: &[Param] = &[
    ("title", Text, false),
    ("description", Text, false),
    ("target_branch", Text, false),
    ("state_event", OneOf(&["close", "reopen"]), false),
    ("labels", List, false),
    ("add_labels", List, false),
    ("remove_labels", List, false),
    ("remove_source_branch", Bool, false),
    ("squash", Bool, false),
];

const MERGE: &[Param] = &[
    ("merge_commit_message", Text, false),
    ("squash_commit_message", Text, false),
    ("should_remove_source_branch", Bool, false),
    ("merge_when_pipeline_succeeds", Bool, false),
    ("auto_merge", Bool, false),
    ("sha", Text, false),
    ("squash", Bool, false),
];

const SET_STATUS: &[Param] = &[
    (
        "state",
        OneOf(&[
            "pending", "running", "success", "failed", "canceled", "skipped",
        ]),
        true,
    ),
    ("ref", Text, false),
    ("name", Text, false),
    ("context", Text, false),
    ("target_url", Text, false),
    ("description", Text, false),
    ("coverage", Text, false),
    ("pipeline_id", Text, false),
];

/// Checks `method` on `route` (the path after `/projects/:id/`, `:iid` and `:sha` in place of
/// numbers and commits) with its parameters (the query for GET, the JSON body otherwise), as
/// GitLab's declarations have it. The error reads as GitLab's 400 answers do.
pub(crate) fn check(
    method: &str,
    route: &[&str],
    query: &[(String, String)],
    body: Option<&Value>,
) -> Result<(), String> {
    let declared = match (method, route) {
        ("GET", ["merge_requests"]) => LIST_MERGE_REQUESTS,
        ("POST", ["merge_requests"]) => CREATE_MERGE_REQUEST,
        ("GET", ["merge_requests", _]) => &[],
        ("PUT", ["merge_requests", _]) => UPDATE_MERGE_REQUEST,
        ("PUT", ["merge_requests", _, "merge"]) => MERGE,
        ("POST", ["statuses", _]) => SET_STATUS,
        _ => {
            return Err(format!(
                "{method} /projects/:id/{}: no such endpoint",
                route.join("/")
            ));
        }
    };
    let given: Vec<(String, Value)> = match method {
        "GET" => query
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
        _ => match body {
            None => Vec::new(),
            Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Some(_) => return Err("the body is not a JSON object".into()),
        },
    };
    if method != "GET" && !query.is_empty() {
        return Err("phasegate sends parameters in the JSON body, not the query".into());
    }
    for (name, value) in &given {
        let Some((_, kind, _)) = declared.iter().find(|(n, _, _)| n == name) else {
            return Err(format!(
                "{name} is not a parameter of this endpoint (GitLab ignores it)"
            ));
        };
        let valid = match (kind, value) {
            (Text, Value::String(s)) => !s.trim().is_empty(),
            (Text, Value::Number(_)) => true,
            (Bool, Value::Bool(_)) => true,
            (OneOf(values), Value::String(s)) => values.contains(&s.as_str()),
            (List, Value::String(_)) => true,
            (List, Value::Array(items)) => items.iter().all(Value::is_string),
            _ => false,
        };
        if !valid {
            return Err(format!("{name} does not have a valid value"));
        }
    }
    for (name, _, required) in declared {
        if *required && !given.iter().any(|(n, _)| n == name) {
            return Err(format!("{name} is missing"));
        }
    }
    if method == "PUT" && route.len() == 2 && given.is_empty() {
        return Err("at least one parameter must be provided".into());
    }
    Ok(())
}
