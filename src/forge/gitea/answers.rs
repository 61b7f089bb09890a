//! Gitea's and Forgejo's JSON as phasegate reads it (pull requests, labels), and the draft
//! mark phasegate writes into a title and reads back.

use serde::Deserialize;

use crate::forge::{PrState, PullRequest};

/// How phasegate marks a draft: Gitea's first default work-in-progress prefix.
const DRAFT: &str = "WIP: ";

/// Gitea's default work-in-progress prefixes (`WORK_IN_PROGRESS_PREFIXES`), matched as it
/// does, ignoring case.
const WIP_PREFIXES: [&str; 2] = ["wip:", "[wip]"];

/// The title Gitea shows, with the draft mark when `draft`.
pub(super) fn title(title: &str, draft: bool) -> String {
    match draft {
        true => format!("{DRAFT}{title}"),
        false => title.to_string(),
    }
}

/// A pull request as Gitea and Forgejo answer it.
#[derive(Debug, Deserialize)]
pub(super) struct Pull {
    number: u64,
    html_url: String,
    state: String,
    title: String,
    merged: bool,
    /// Null until merged.
    merge_commit_sha: Option<String>,
    /// Gitea 1.22+ says so; older versions only show the title's prefix.
    draft: Option<bool>,
    head: Branch,
    base: Branch,
}

/// A pull request's head or base.
#[derive(Debug, Deserialize)]
struct Branch {
    #[serde(rename = "ref")]
    name: String,
}

/// A repository's label: phasegate adds labels by id.
#[derive(Debug, Deserialize)]
pub(super) struct Label {
    pub id: u64,
    pub name: String,
}

impl Pull {
    /// Whether it goes from the branch `head` into `base`.
    pub(super) fn joins(&self, head: &str, base: &str) -> bool {
        self.head.name == head && self.base.name == base
    }

    /// Whether it is a draft: the flag, or the prefix Gitea matches, ignoring case.
    pub(super) fn is_draft(&self) -> bool {
        let title = self.title.to_ascii_lowercase();
        self.draft == Some(true) || WIP_PREFIXES.iter().any(|p| title.starts_with(p))
    }
}

impl From<Pull> for PullRequest {
    fn from(pr: Pull) -> PullRequest {
        PullRequest {
            number: pr.number,
            url: pr.html_url,
            state: match (pr.state.as_str(), pr.merged) {
                (_, true) => PrState::Merged,
                ("open", _) => PrState::Open,
                _ => PrState::ClosedUnmerged,
            },
            merge_commit: pr.merge_commit_sha.filter(|_| pr.merged),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::forge::{ForgeError, api::read};

    fn pull(mut body: Value) -> Result<Pull, ForgeError> {
        for (k, v) in [
            ("head", json!({"ref": "h"})),
            ("base", json!({"ref": "main"})),
        ] {
            body.as_object_mut().expect("object").entry(k).or_insert(v);
        }
        read("Gitea", "read the pull request", body)
    }

    fn titled(title: &str, draft: Option<bool>) -> Pull {
        let pr = json!({"number": 4, "state": "open", "merged": false, "html_url": "u",
            "title": title, "draft": draft});
        pull(pr).expect("read")
    }

    #[test]
    fn marks_drafts_with_the_wip_prefix_and_reads_them_back() {
        assert_eq!(title("Promote", true), "WIP: Promote");
        assert_eq!(title("Promote", false), "Promote");
        assert!(titled("WIP: Promote", None).is_draft());
        assert!(titled("[wip] Promote", None).is_draft());
        assert!(titled("Promote", Some(true)).is_draft());
        assert!(!titled("Promote", Some(false)).is_draft());
    }

    #[test]
    fn reads_merged_open_and_closed_pull_requests() {
        let read = |body| PullRequest::from(pull(body).expect("read"));
        let merged = read(json!({
            "number": 4, "state": "closed", "merged": true, "merge_commit_sha": "m",
            "html_url": "https://codeberg.org/o/r/pulls/4", "title": "t",
        }));
        assert_eq!(
            (merged.state, merged.merge_commit.as_deref(), merged.number),
            (PrState::Merged, Some("m"), 4)
        );
        assert_eq!(merged.url, "https://codeberg.org/o/r/pulls/4");
        let open = read(
            json!({"number": 4, "state": "open", "merged": false, "html_url": "u",
            "title": "t"}),
        );
        assert_eq!((open.state, open.merge_commit), (PrState::Open, None));
        let closed = read(json!({"number": 4, "state": "closed", "merged": false,
            "html_url": "u", "title": "t"}));
        assert_eq!(closed.state, PrState::ClosedUnmerged);
    }

    #[test]
    fn names_a_renamed_pull_request_or_label_field_instead_of_reading_a_default() {
        let renamed = json!({"index": 4, "state": "open", "merged": false, "html_url": "u",
            "title": "t"});
        let err = pull(renamed).expect_err("renamed");
        assert!(err.to_string().contains("missing field `number`"), "{err}");
        let branchless = json!({"number": 4, "state": "open", "merged": false,
            "html_url": "u", "title": "t", "head": {"name": "h"}});
        let err = pull(branchless).expect_err("no ref");
        assert!(
            err.to_string().contains("head: missing field `ref`"),
            "{err}"
        );
        let labels = read::<Vec<Label>>("Forgejo", "list labels", json!([{"name": "prod"}]));
        let err = labels.expect_err("no id");
        assert!(err.to_string().starts_with("Forgejo's answer"), "{err}");
        assert!(err.to_string().contains("[0]: missing field `id`"), "{err}");
    }
}
