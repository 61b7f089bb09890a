//! What the shared scenarios need to know of each fake forge: how its pull requests and
//! statuses read, and how a reviewer merges or closes.

use serde_json::Value;

use super::super::{
    fake_bitbucket::FakeBitbucket,
    fake_forge::Fronted,
    fake_gitea::FakeGitea,
    fake_github::FakeGitHub,
    fake_gitlab::FakeGitLab,
    forge_bed::{FakeForge, ForgeBed},
};

/// A status phasegate set on a commit, as the forge shows it.
#[derive(Debug)]
pub(crate) struct Status {
    pub state: String,
    pub description: String,
    /// Where the status links to.
    pub link: String,
}

/// A fake forge with reviewers, and pull requests and statuses to read.
pub(crate) trait Reviewed: FakeForge + Fronted {
    /// The states of a status while testing, after a promotion and after failed tests, as the
    /// forge names them.
    const PENDING: &'static str = "pending";
    const SUCCESS: &'static str = "success";
    const FAILED: &'static str;
    /// Where a pull request's JSON holds its page, its description, its head branch and that
    /// branch's commit (JSON pointers).
    const PAGE: &'static str;
    const DESCRIPTION: &'static str;
    const HEAD: &'static str;
    const HEAD_SHA: &'static str;
    /// Every pull request, oldest first.
    fn prs(&self) -> Vec<Value>;
    /// How many pull requests were opened.
    fn opened(&self) -> usize {
        self.prs().len()
    }
    /// A reviewer merges pull request `number`.
    fn review_merge(&self, number: u64);
    /// A reviewer closes pull request `number` unmerged.
    fn review_close(&self, number: u64);
    /// The statuses on `sha`, oldest first; each is checked to have the context
    /// `phasegate/test->prod`.
    fn statuses_on(&self, sha: &str) -> Vec<Status>;
}

impl<F: Reviewed> ForgeBed<F> {
    /// The only pull request.
    pub(crate) fn only_pr(&self) -> Value {
        let prs = self.forge.prs();
        assert_eq!(prs.len(), 1, "{prs:#?}");
        prs[0].clone()
    }
}

/// The text at JSON pointer `at` of `v` ("" if there is none).
pub(crate) fn text(v: &Value, at: &str) -> String {
    v.pointer(at)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Statuses as a forge answers them, by its names for the context, the state and the link;
/// each must have the context `phasegate/test->prod`.
fn statuses(list: Vec<Value>, [context, state, link]: [&str; 3]) -> Vec<Status> {
    list.iter()
        .inspect(|s| assert_eq!(s[context], "phasegate/test->prod", "{s}"))
        .map(|s| Status {
            state: text(s, state),
            description: text(s, "/description"),
            link: text(s, link),
        })
        .collect()
}

/// Gitea's pull requests and statuses have GitHub's shape.
macro_rules! github_shaped {
    ($fake:ty) => {
        impl Reviewed for $fake {
            const FAILED: &'static str = "failure";
            const PAGE: &'static str = "/html_url";
            const DESCRIPTION: &'static str = "/body";
            const HEAD: &'static str = "/head/ref";
            const HEAD_SHA: &'static str = "/head/sha";
            fn prs(&self) -> Vec<Value> {
                self.pulls()
            }
            fn review_merge(&self, number: u64) {
                self.merge(number);
            }
            fn review_close(&self, number: u64) {
                self.close(number);
            }
            fn statuses_on(&self, sha: &str) -> Vec<Status> {
                statuses(self.statuses(sha), ["context", "/state", "/target_url"])
            }
        }
    };
}

github_shaped!(FakeGitHub);
github_shaped!(FakeGitea);

impl Reviewed for FakeGitLab {
    const FAILED: &'static str = "failed";
    const PAGE: &'static str = "/web_url";
    const DESCRIPTION: &'static str = "/description";
    const HEAD: &'static str = "/source_branch";
    const HEAD_SHA: &'static str = "/sha";
    fn prs(&self) -> Vec<Value> {
        self.merge_requests()
    }
    /// A reviewer marks it ready (a draft cannot be merged) and merges it.
    fn review_merge(&self, number: u64) {
        self.mark_ready(number);
        self.merge(number);
    }
    fn review_close(&self, number: u64) {
        self.close(number);
    }
    fn statuses_on(&self, sha: &str) -> Vec<Status> {
        statuses(self.statuses(sha), ["name", "/status", "/target_url"])
    }
}

/// Bitbucket Data Center's statuses are build statuses; its reviewers decline.
impl Reviewed for FakeBitbucket {
    const PENDING: &'static str = "INPROGRESS";
    const SUCCESS: &'static str = "SUCCESSFUL";
    const FAILED: &'static str = "FAILED";
    const PAGE: &'static str = "/links/self/0/href";
    const DESCRIPTION: &'static str = "/description";
    const HEAD: &'static str = "/fromRef/displayId";
    const HEAD_SHA: &'static str = "/fromRef/latestCommit";
    fn prs(&self) -> Vec<Value> {
        self.pull_requests()
    }
    fn review_merge(&self, number: u64) {
        self.merge(number);
    }
    fn review_close(&self, number: u64) {
        self.decline(number);
    }
    fn statuses_on(&self, sha: &str) -> Vec<Status> {
        statuses(self.builds(sha), ["key", "/state", "/url"])
    }
}
