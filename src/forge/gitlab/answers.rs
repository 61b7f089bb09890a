//! GitLab's merge request JSON as phasegate reads it.

use serde::Deserialize;

use crate::forge::{PrState, PullRequest};

/// A merge request as GitLab answers it.
#[derive(Debug, Deserialize)]
pub(super) struct MergeRequest {
    iid: u64,
    web_url: String,
    state: String,
    /// The head commit; the target branch's new commit after a fast-forward merge.
    sha: Option<String>,
    /// Null unless merged with a merge commit.
    merge_commit_sha: Option<String>,
    /// Null unless squashed; absent on older GitLab versions.
    squash_commit_sha: Option<String>,
    /// `draft` on current GitLab, `work_in_progress` on older versions (now deprecated).
    draft: Option<bool>,
    work_in_progress: Option<bool>,
}

impl MergeRequest {
    /// Whether it is a draft (the title's mark, as GitLab reads it).
    pub(super) fn is_draft(&self) -> bool {
        self.draft == Some(true) || self.work_in_progress == Some(true)
    }
}

impl From<MergeRequest> for PullRequest {
    fn from(mr: MergeRequest) -> PullRequest {
        let state = match mr.state.as_str() {
            "merged" => PrState::Merged,
            "opened" | "locked" => PrState::Open,
            _ => PrState::ClosedUnmerged,
        };
        // The commit the target branch got: the merge commit, else the squash commit
        // (fast-forward with squash), else the head itself (fast-forward).
        let merge_commit = [mr.merge_commit_sha, mr.squash_commit_sha, mr.sha]
            .into_iter()
            .flatten()
            .find(|sha| !sha.is_empty())
            .filter(|_| state == PrState::Merged);
        PullRequest {
            number: mr.iid,
            url: mr.web_url,
            state,
            merge_commit,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::forge::api::read;

    fn merge_request(body: Value) -> PullRequest {
        read::<MergeRequest>("GitLab", "read the merge request", body)
            .expect("read")
            .into()
    }

    #[test]
    fn reads_the_commit_a_merge_gave_the_target_branch() {
        let merged = |extra: Value| {
            let mut v = json!({"iid": 3, "state": "merged", "web_url": "u", "sha": "head"});
            for (k, x) in extra.as_object().expect("object") {
                v[k] = x.clone();
            }
            merge_request(v).merge_commit
        };
        assert_eq!(merged(json!({"merge_commit_sha": "m"})), Some("m".into()));
        assert_eq!(
            merged(json!({"merge_commit_sha": null, "squash_commit_sha": "s"})),
            Some("s".into())
        );
        assert_eq!(merged(json!({})), Some("head".into()));
        let open =
            merge_request(json!({"iid": 3, "state": "locked", "web_url": "u", "sha": "head"}));
        assert_eq!((open.state, open.merge_commit), (PrState::Open, None));
        let closed = merge_request(json!({"iid": 3, "state": "closed", "web_url": "u"}));
        assert_eq!(closed.state, PrState::ClosedUnmerged);
    }

    #[test]
    fn names_a_renamed_merge_request_field_instead_of_reading_number_0() {
        let renamed = json!({"id": 3, "state": "opened", "web_url": "u", "sha": "head"});
        let err =
            read::<MergeRequest>("GitLab", "open a merge request", renamed).expect_err("renamed");
        assert!(err.to_string().contains("missing field `iid`"), "{err}");
        assert!(err.to_string().contains("open a merge request"), "{err}");
        let err = read::<MergeRequest>(
            "GitLab",
            "read the merge request",
            json!({"iid": "3", "state": "opened", "web_url": "u"}),
        )
        .expect_err("a string");
        assert!(err.to_string().contains("iid: invalid type"), "{err}");
    }
}
