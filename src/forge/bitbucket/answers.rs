//! Bitbucket Data Center's JSON as phasegate reads it (pull requests, conflicts) and its merge
//! strategies.

use serde_json::Value;

use crate::{
    forge::{PrState, PullRequest, api::Answer},
    spec::MergeMethod,
};

/// Bitbucket's merge strategy for phasegate's merge method (the strategy must be enabled in
/// the repository's merge settings).
pub(super) fn strategy(method: MergeMethod) -> &'static str {
    match method {
        MergeMethod::Merge => "no-ff",
        MergeMethod::Squash => "squash",
        // As GitHub's rebase: the commits replayed on the base, no merge commit.
        MergeMethod::Rebase => "rebase-ff-only",
    }
}

/// A 409 because the `version` sent is no longer the pull request's.
pub(super) fn out_of_date(answer: &Answer) -> bool {
    answer.body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| {
            e["exceptionName"]
                .as_str()
                .is_some_and(|n| n.ends_with("PullRequestOutOfDateException"))
        })
}

pub(super) fn pull_request(v: &Value) -> PullRequest {
    let state = match v["state"].as_str() {
        Some("OPEN") => PrState::Open,
        Some("MERGED") => PrState::Merged,
        _ => PrState::ClosedUnmerged,
    };
    PullRequest {
        number: v["id"].as_u64().unwrap_or_default(),
        url: v["links"]["self"][0]["href"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        state,
        merge_commit: (state == PrState::Merged)
            .then(|| v["properties"]["mergeCommit"]["id"].as_str())
            .flatten()
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_pull_requests_as_bitbucket_answers_them() {
        let merged = json!({
            "id": 7, "version": 3, "state": "MERGED",
            "links": {"self": [{"href": "https://bb.example.com/projects/P/repos/r/pull-requests/7"}]},
            "properties": {"mergeCommit": {"id": "abc123", "displayId": "abc"}},
        });
        let pr = pull_request(&merged);
        assert_eq!(pr.number, 7);
        assert_eq!(pr.state, PrState::Merged);
        assert_eq!(pr.merge_commit.as_deref(), Some("abc123"));
        assert!(pr.url.ends_with("/pull-requests/7"));
        let declined = pull_request(&json!({"id": 8, "state": "DECLINED"}));
        assert_eq!(declined.state, PrState::ClosedUnmerged);
        assert_eq!(declined.merge_commit, None);
    }

    #[test]
    fn maps_merge_methods_to_strategies() {
        assert_eq!(strategy(MergeMethod::Merge), "no-ff");
        assert_eq!(strategy(MergeMethod::Squash), "squash");
        assert_eq!(strategy(MergeMethod::Rebase), "rebase-ff-only");
    }

    #[test]
    fn knows_a_stale_version_from_other_conflicts() {
        let answer = |name: &str| Answer {
            status: StatusCode::CONFLICT,
            body: json!({"errors": [{"context": null, "message": "m", "exceptionName": name}]}),
        };
        assert!(out_of_date(&answer(
            "com.atlassian.bitbucket.pull.PullRequestOutOfDateException"
        )));
        assert!(!out_of_date(&answer(
            "com.atlassian.bitbucket.pull.PullRequestMergeVetoedException"
        )));
    }
}
