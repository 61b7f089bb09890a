//! The fake Bitbucket's state and what its REST resources do with it: pull requests with
//! their versions, merges made with git, auto-merge requests, build statuses.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Fake, GIT, errors};

impl Fake {
    pub(super) fn respond(
        &mut self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Value,
    ) -> (u16, Value) {
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let param = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let id = |s: &str| s.parse::<u64>().unwrap_or(0);
        let (key, slug, rest) = match seg.as_slice() {
            ["application-properties"] => {
                let v = json!({"version": self.version, "buildNumber": "9004002",
                    "buildDate": "1730000000000", "displayName": "Bitbucket"});
                return (200, v);
            }
            ["projects", key, "repos", slug, rest @ ..] => (*key, *slug, rest),
            _ => return errors(404, "Not found", "rest.NotFoundException"),
        };
        if !self.bare(key, slug).exists() {
            let message = format!("Repository {key}/{slug} does not exist.");
            return errors(404, &message, "repository.NoSuchRepositoryException");
        }
        let pr_index = |fake: &Fake, n: &str| fake.prs.iter().position(|p| p["id"] == id(n));
        match (method, rest) {
            ("GET", ["pull-requests"]) => {
                let values: Vec<Value> = self
                    .prs
                    .iter()
                    .filter(|p| param("state").is_none_or(|s| s == "ALL" || p["state"] == s))
                    .filter(|p| param("at").is_none_or(|at| p["fromRef"]["id"] == at))
                    .map(|p| self.fresh(p))
                    .collect();
                let page = json!({"size": values.len(), "limit": 25, "start": 0,
                    "isLastPage": true, "values": values});
                (200, page)
            }
            ("POST", ["pull-requests"]) => self.open(key, slug, &body),
            ("GET", ["pull-requests", n]) => match pr_index(self, n) {
                Some(i) => (200, self.fresh(&self.prs[i])),
                None => errors(
                    404,
                    "No such pull request",
                    "pull.NoSuchPullRequestException",
                ),
            },
            ("PUT", ["pull-requests", n]) => {
                let Some(i) = pr_index(self, n) else {
                    return errors(
                        404,
                        "No such pull request",
                        "pull.NoSuchPullRequestException",
                    );
                };
                if std::mem::take(&mut self.race_update) {
                    let pr = &mut self.prs[i];
                    pr["version"] = json!(pr["version"].as_u64().unwrap_or(0) + 1);
                }
                if body["version"] != self.prs[i]["version"] {
                    return out_of_date(&self.prs[i]);
                }
                let pr = &mut self.prs[i];
                for k in ["title", "description", "reviewers"] {
                    if let Some(v) = body.get(k) {
                        pr[k] = v.clone();
                    }
                }
                pr["version"] = json!(pr["version"].as_u64().unwrap_or(0) + 1);
                (200, self.fresh(&self.prs[i]))
            }
            ("POST", ["pull-requests", n, "merge"]) => {
                let Some(i) = pr_index(self, n) else {
                    return errors(
                        404,
                        "No such pull request",
                        "pull.NoSuchPullRequestException",
                    );
                };
                if param("version") != Some(&self.prs[i]["version"].to_string()) {
                    return out_of_date(&self.prs[i]);
                }
                let strategy = body["strategyId"].as_str().unwrap_or("no-ff").to_string();
                if let Some(reason) = self.veto.clone() {
                    if body["autoMerge"] == true && self.auto_merge_enabled {
                        self.auto_merge.retain(|(pr, _)| *pr != id(n));
                        self.auto_merge.push((id(n), strategy));
                        return (200, self.fresh(&self.prs[i]));
                    }
                    return errors(409, &reason, "pull.PullRequestMergeVetoedException");
                }
                self.merge(id(n), &strategy)
            }
            ("GET", ["settings", "auto-merge"]) if self.at_least(8, 15) => {
                let v = json!({"enabled": self.auto_merge_enabled, "restrictionState": "NONE",
                    "scope": {"type": "REPOSITORY", "resourceId": 1}});
                (200, v)
            }
            ("GET", ["settings", "auto-merge"]) => (404, Value::Null),
            ("POST", ["commits", sha, "builds"]) => {
                self.builds.push((sha.to_string(), body));
                (204, Value::Null)
            }
            _ => errors(404, "Not found", "rest.NotFoundException"),
        }
    }

    fn at_least(&self, major: u64, minor: u64) -> bool {
        let mut parts = self
            .version
            .split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
    }

    fn bare(&self, key: &str, slug: &str) -> PathBuf {
        self.root
            .join(key.to_ascii_lowercase())
            .join(format!("{slug}.git"))
    }

    pub(super) fn pr_mut(&mut self, id: u64) -> Option<&mut Value> {
        self.prs.iter_mut().find(|p| p["id"] == id)
    }

    /// The pull request with its refs' latest commits as git has them now.
    pub(super) fn fresh(&self, pr: &Value) -> Value {
        let mut pr = pr.clone();
        let bare = self.bare(
            pr["toRef"]["repository"]["project"]["key"]
                .as_str()
                .unwrap_or(""),
            pr["toRef"]["repository"]["slug"].as_str().unwrap_or(""),
        );
        for r in ["fromRef", "toRef"] {
            let id = pr[r]["id"].as_str().unwrap_or("").to_string();
            if let Some(sha) = GIT.run(&bare, &["rev-parse", "--verify", &id]) {
                pr[r]["latestCommit"] = json!(sha);
            }
        }
        pr
    }

    fn open(&mut self, key: &str, slug: &str, body: &Value) -> (u16, Value) {
        let (from, to) = (
            body["fromRef"]["id"].as_str().unwrap_or(""),
            body["toRef"]["id"].as_str().unwrap_or(""),
        );
        let bare = self.bare(key, slug);
        for r in [from, to] {
            if GIT.run(&bare, &["rev-parse", "--verify", r]).is_none() {
                let message = format!("Repository \"{slug}\" of project {key} has no branch {r}");
                return errors(404, &message, "repository.NoSuchBranchException");
            }
        }
        if let Some(open) = self
            .prs
            .iter()
            .find(|p| p["state"] == "OPEN" && p["fromRef"]["id"] == from && p["toRef"]["id"] == to)
        {
            let message = format!(
                "Only one pull request may be open for a given source and target branch ({})",
                open["id"]
            );
            return errors(409, &message, "pull.DuplicatePullRequestException");
        }
        let id = self.prs.len() as u64 + 1;
        // Before 8.18 there are no drafts: the field is ignored.
        let draft = body["draft"] == true && self.at_least(8, 18);
        let repository = json!({"slug": slug, "project": {"key": key}});
        let reference = |r: &str| {
            json!({"id": r, "displayId": r.trim_start_matches("refs/heads/"),
                "repository": repository})
        };
        let pr = json!({
            "id": id, "version": 0, "title": body["title"], "description": body["description"],
            "state": "OPEN", "open": true, "closed": false, "draft": draft, "locked": false,
            "fromRef": reference(from), "toRef": reference(to), "reviewers": [],
            "author": {"user": {"name": "bot"}, "role": "AUTHOR", "approved": false},
            "links": {"self": [{"href": format!(
                "{}/projects/{key}/repos/{slug}/pull-requests/{id}", self.base_url
            )}]},
        });
        self.prs.push(pr);
        (201, self.fresh(&self.prs[id as usize - 1]))
    }

    /// Merges with git: a merge commit (`no-ff`), else one commit on the target (`squash`,
    /// `rebase-ff-only`: the fake's promotion branches hold one commit).
    pub(super) fn merge(&mut self, id: u64, strategy: &str) -> (u16, Value) {
        let Some(pr) = self
            .prs
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| self.fresh(p))
        else {
            return errors(
                404,
                "No such pull request",
                "pull.NoSuchPullRequestException",
            );
        };
        if pr["state"] != "OPEN" {
            return errors(
                409,
                "The pull request is not open",
                "pull.PullRequestClosedException",
            );
        }
        let bare = self.bare(
            pr["toRef"]["repository"]["project"]["key"]
                .as_str()
                .unwrap_or(""),
            pr["toRef"]["repository"]["slug"].as_str().unwrap_or(""),
        );
        let head = pr["fromRef"]["latestCommit"].as_str().unwrap_or("");
        let base = pr["toRef"]["latestCommit"].as_str().unwrap_or("");
        let tree = GIT.merge_tree(&bare, base, head).expect("merge-tree");
        let title = pr["title"].as_str().unwrap_or_default();
        let message = match strategy {
            "no-ff" => format!(
                "Pull request #{id}: {title}\n\nMerge in {}",
                pr["fromRef"]["id"]
            ),
            _ => format!("Pull request #{id}: {title}"),
        };
        let parents: &[&str] = match strategy {
            "no-ff" => &[base, head],
            _ => &[base],
        };
        let commit = GIT.commit(&bare, &tree, parents, &message);
        let to = pr["toRef"]["id"].as_str().unwrap_or("");
        GIT.run(&bare, &["update-ref", to, &commit, base])
            .expect("update-ref");
        let pr = self.pr_mut(id).expect("pull request");
        pr["state"] = json!("MERGED");
        pr["open"] = json!(false);
        pr["closed"] = json!(true);
        pr["version"] = json!(pr["version"].as_u64().unwrap_or(0) + 1);
        pr["properties"] = json!({"mergeCommit": {"id": commit, "displayId": &commit[..11]}});
        (200, pr.clone())
    }
}

fn out_of_date(pr: &Value) -> (u16, Value) {
    let (status, mut body) = errors(
        409,
        "You are attempting to modify a pull request based on out-of-date information.",
        "pull.PullRequestOutOfDateException",
    );
    body["errors"][0]["currentVersion"] = pr["version"].clone();
    (status, body)
}
