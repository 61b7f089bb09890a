//! The fake GitLab's model: merge requests and commit statuses with GitLab's rules, merges
//! made with git in the bare repositories, behind the REST paths of the endpoints phasegate
//! calls.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Fake, GIT, message};

impl Fake {
    pub(super) fn respond(
        &mut self,
        method: &str,
        project: &str,
        route: &[&str],
        query: &[(String, String)],
        body: Value,
    ) -> (u16, Value) {
        let iid = |s: &str| s.parse::<u64>().unwrap_or(0);
        let param = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let not_found = (404, message("404 Not found"));
        match (method, route) {
            ("GET", ["merge_requests"]) => {
                let state = param("state").unwrap_or("all");
                let list: Vec<Value> = self
                    .mrs
                    .iter()
                    .filter(|m| m["project"] == project)
                    .filter(|m| state == "all" || m["state"] == state)
                    .filter(|m| param("source_branch").is_none_or(|b| m["source_branch"] == b))
                    .filter(|m| param("target_branch").is_none_or(|b| m["target_branch"] == b))
                    .cloned()
                    .collect();
                (200, json!(list))
            }
            ("POST", ["merge_requests"]) => self.open(project, body),
            ("GET", ["merge_requests", n]) => {
                self.mr_mut(iid(n)).map_or(not_found, |m| (200, m.clone()))
            }
            ("PUT", ["merge_requests", n]) => match self.mr_mut(iid(n)) {
                Some(mr) => {
                    if let Some(title) = body["title"].as_str() {
                        mr["title"] = json!(title);
                        mr["draft"] = json!(title.starts_with("Draft:"));
                    }
                    if let Some(d) = body.get("description") {
                        mr["description"] = d.clone();
                    }
                    let mut labels = mr["labels"].as_array().cloned().unwrap_or_default();
                    for l in labels_of(&body["add_labels"]) {
                        if !labels.contains(&l) {
                            labels.push(l);
                        }
                    }
                    mr["labels"] = json!(labels);
                    (200, mr.clone())
                }
                None => not_found,
            },
            ("PUT", ["merge_requests", n, "merge"]) => {
                if self.merge_forbidden {
                    return (401, message("401 Unauthorized"));
                }
                let sha = body["sha"].as_str().map(str::to_string);
                let auto =
                    body["auto_merge"] == true || body["merge_when_pipeline_succeeds"] == true;
                let squash = body["squash"] == true;
                if let Some(mr) = self.mr_mut(iid(n))
                    && let Some(squash) = body["squash"].as_bool()
                {
                    mr["squash"] = json!(squash);
                }
                match self.pipeline_running {
                    true if auto => match self.mr_mut(iid(n)) {
                        Some(mr) if mr["state"] == "opened" => {
                            mr["merge_when_pipeline_succeeds"] = json!(true);
                            (200, mr.clone())
                        }
                        Some(_) => (405, message("405 Method Not Allowed")),
                        None => not_found,
                    },
                    true => (405, message("405 Method Not Allowed")),
                    false => self.merge(iid(n), sha, squash),
                }
            }
            ("POST", ["statuses", sha]) => self.set_status(project, sha, &body),
            _ => not_found,
        }
    }

    pub(super) fn bare(&self, project: &str) -> PathBuf {
        self.root.join(format!("{project}.git"))
    }

    fn open(&mut self, project: &str, body: Value) -> (u16, Value) {
        let (head, base) = (
            body["source_branch"].as_str().unwrap_or(""),
            body["target_branch"].as_str().unwrap_or(""),
        );
        let bare = self.bare(project);
        let Some(sha) = GIT.run(
            &bare,
            &["rev-parse", "--verify", &format!("refs/heads/{head}")],
        ) else {
            return (400, message("Invalid source branch"));
        };
        if self.mrs.iter().any(|m| {
            m["project"] == project && m["state"] == "opened" && m["source_branch"] == head
        }) {
            return (
                409,
                json!({"message": ["Another open merge request already exists for this source branch"]}),
            );
        }
        let iid = self.mrs.iter().filter(|m| m["project"] == project).count() as u64 + 1;
        let title = body["title"].as_str().unwrap_or_default();
        let mr = json!({
            "id": self.mrs.len() + 100, "iid": iid, "project": project, "state": "opened",
            "title": title, "description": body["description"], "draft": title.starts_with("Draft:"),
            "source_branch": head, "target_branch": base, "sha": sha,
            "labels": labels_of(&body["labels"]), "squash": body["squash"].as_bool().unwrap_or(false),
            "merge_when_pipeline_succeeds": false, "merge_commit_sha": null,
            "squash_commit_sha": null, "merged_at": null,
            "web_url": format!("{}/{project}/-/merge_requests/{iid}", self.base_url),
        });
        self.mrs.push(mr.clone());
        (201, mr)
    }

    pub(super) fn mr_mut(&mut self, iid: u64) -> Option<&mut Value> {
        self.mrs.iter_mut().find(|m| m["iid"] == iid)
    }

    /// Merges with git into the target branch: a merge commit, of a squash commit if asked.
    pub(super) fn merge(&mut self, iid: u64, sha: Option<String>, squash: bool) -> (u16, Value) {
        let Some(mr) = self.mr_mut(iid).cloned() else {
            return (404, message("404 Not found"));
        };
        if mr["state"] != "opened" || mr["draft"] == true {
            return (405, message("405 Method Not Allowed"));
        }
        let bare = self.bare(mr["project"].as_str().unwrap_or_default());
        let (head, base) = (
            mr["source_branch"].as_str().unwrap_or(""),
            mr["target_branch"].as_str().unwrap_or(""),
        );
        let head_sha = GIT.branch(&bare, head);
        if sha.is_some_and(|s| s != head_sha) {
            return (409, message("SHA does not match HEAD of source branch"));
        }
        let base_sha = GIT.branch(&bare, base);
        let Some(tree) = GIT.merge_tree(&bare, &base_sha, &head_sha) else {
            return (422, message("Branch cannot be merged"));
        };
        let title = mr["title"].as_str().unwrap_or_default().to_string();
        let squash = squash || mr["squash"] == true;
        let squashed = squash.then(|| GIT.commit(&bare, &tree, &[&base_sha], &title));
        let message = format!(
            "Merge branch '{head}' into '{base}'\n\n{title}\n\nSee merge request {}!{iid}",
            mr["project"].as_str().unwrap_or_default()
        );
        let second = squashed.clone().unwrap_or(head_sha);
        let commit = GIT.commit(&bare, &tree, &[&base_sha, &second], &message);
        GIT.advance(&bare, base, &commit, &base_sha);
        let mr = self.mr_mut(iid).expect("merge request");
        mr["state"] = json!("merged");
        mr["merged_at"] = json!("2026-11-25T00:00:00Z");
        mr["merge_commit_sha"] = json!(commit);
        mr["squash_commit_sha"] = json!(squashed);
        (200, mr.clone())
    }

    /// As GitLab: a status of one name stays one job while pending or running (setting
    /// `pending` on a pending one is refused); a finished one is followed by a new job. Every
    /// accepted transition is kept, so that tests see pending → success.
    fn set_status(&mut self, project: &str, sha: &str, body: &Value) -> (u16, Value) {
        let bare = self.bare(project);
        if GIT
            .run(&bare, &["cat-file", "-e", &format!("{sha}^{{commit}}")])
            .is_none()
        {
            return (404, message("404 Commit Not Found"));
        }
        let name = body["name"]
            .as_str()
            .or(body["context"].as_str())
            .unwrap_or("default");
        let state = body["state"].as_str().unwrap_or_default();
        let last = self
            .statuses
            .iter()
            .rev()
            .find(|(on, s)| on == sha && s["name"] == name)
            .map(|(_, s)| s["status"].clone());
        if last.is_some_and(|l| l == state && matches!(state, "pending" | "running")) {
            return (
                400,
                message(&format!(
                    "Cannot transition status via :enqueue from :{state}"
                )),
            );
        }
        let status = json!({
            "sha": sha, "name": name, "status": state, "description": body["description"],
            "target_url": body["target_url"], "ref": "main",
        });
        self.statuses.push((sha.to_string(), status.clone()));
        (201, status)
    }
}

/// Label names from a comma-separated string or an array.
fn labels_of(v: &Value) -> Vec<Value> {
    match v {
        Value::String(s) => s.split(',').map(|l| json!(l.trim())).collect(),
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    }
}
