//! How run data is shown: times, durations, outcome classes, repository URLs without userinfo,
//! commit links. Pure functions, shared by the pages (and the notifications' bodies).

use crate::{history::RunRecord, spec::RepoUrl};

/// A repository URL as shown anywhere outside the server: without user name or password
/// (a URL never carries credentials into phasegate, but what is shown must not depend on it).
pub(crate) fn shown_repo(repo: &str) -> String {
    match url::Url::parse(repo) {
        Ok(mut u) if u.has_host() && (!u.username().is_empty() || u.password().is_some()) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => repo.to_string(),
    }
}

/// The repository's path on its forge (`org/gitops`), for commit links; `None` for a URL
/// that is not in normal form (only a history written before issue 10 can hold one).
fn repo_path(repo: &str) -> Option<String> {
    let repo = RepoUrl::parse(repo).ok()?;
    Some(repo.path().trim_end_matches(".git").to_string())
}

/// The link to `commit` on the forge, from the configured template (`{repo}`, `{commit}`).
pub(super) fn commit_link(template: Option<&str>, repo: &str, commit: &str) -> Option<String> {
    let path = repo_path(repo)?;
    template.map(|t| t.replace("{repo}", &path).replace("{commit}", commit))
}

/// Checks a commit link template: an http(s) URL (never `javascript:` or a relative link).
pub(crate) fn valid_commit_link(template: &str) -> bool {
    template.starts_with("https://") || template.starts_with("http://")
}

/// True for an absolute http(s) URL: the only kind of link a page makes from run data (a
/// forge's answer could carry `javascript:…`, which escaping alone does not defuse).
pub(super) fn valid_link(link: &str) -> bool {
    url::Url::parse(link).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

/// A moment as `2026-11-25 21:40:03Z`.
pub(super) fn when(unix_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replacen('T', " ", 1)
}

/// A duration as `340 ms`, `12.3 s` or `4 min 05 s`.
pub(super) fn took(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// The outcome, or the stage while the run goes on.
pub(super) fn status(run: &RunRecord) -> String {
    match run.outcome() {
        o if o.is_empty() => run.stage.as_str().to_string(),
        o => o,
    }
}

/// The CSS class of an outcome: `ok`, `fail` or `running`.
pub(super) fn class(run: &RunRecord) -> &'static str {
    match run.outcome().as_str() {
        "" | "accepted" => "running",
        "tests-failed" | "error" => "fail",
        _ => "ok",
    }
}

/// `previous → version`, or what is known of it.
pub(super) fn versions(run: &RunRecord) -> String {
    match (run.previous(), run.version()) {
        (Some(p), Some(v)) if p != v => format!("{p} → {v}"),
        (_, Some(v)) => v.to_string(),
        _ => String::new(),
    }
}

/// How long a run took (or has been going).
pub(super) fn duration(run: &RunRecord) -> String {
    match &run.report {
        Some(r) => took(r.duration_ms),
        None => match run.timeline.last() {
            Some(last) => took(u64::try_from(last.at_unix_ms - run.started_unix_ms).unwrap_or(0)),
            None => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_is_shown_without_userinfo() {
        assert_eq!(
            shown_repo("https://bot:s3cret@git.example/org/gitops.git"),
            "https://git.example/org/gitops.git"
        );
        assert_eq!(
            shown_repo("git@github.com:org/gitops.git"),
            "git@github.com:org/gitops.git"
        );
    }

    #[test]
    fn commit_links_name_the_repository_path_and_commit() {
        let t = Some("https://github.com/{repo}/commit/{commit}");
        assert_eq!(
            commit_link(t, "https://github.com/org/gitops.git", "abc").as_deref(),
            Some("https://github.com/org/gitops/commit/abc")
        );
        assert_eq!(
            commit_link(t, "git@github.com:org/gitops.git", "abc").as_deref(),
            Some("https://github.com/org/gitops/commit/abc")
        );
        assert_eq!(
            commit_link(t, "file:///srv/org/gitops.git", "abc").as_deref(),
            Some("https://github.com/srv/org/gitops/commit/abc")
        );
        assert!(!valid_commit_link("javascript:alert(1)//{commit}"));
    }

    #[test]
    fn only_http_urls_become_pull_request_links() {
        assert!(valid_link("https://github.com/org/gitops/pull/7"));
        assert!(valid_link("HTTP://git.example/pr/7"));
        assert!(!valid_link("javascript:alert(1)"));
        assert!(!valid_link(" javascript://github.com/%0aalert(1)"));
        assert!(!valid_link("/org/gitops/pull/7"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(took(340), "340 ms");
        assert_eq!(took(12_345), "12.3 s");
        assert_eq!(took(245_000), "4 min 05 s");
        assert_eq!(when(0), "1970-01-01 00:00:00Z");
    }
}
