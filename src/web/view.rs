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

/// The link to `commit` on the forge: from the configured template, else from an `https://`
/// repository URL (`https://git.example/org/gitops.git` → `…/org/gitops/commit/<sha>`, the
/// page GitHub, GitLab, Gitea and Forgejo serve), else none; only for a hexadecimal commit id.
pub(super) fn forge_commit_link(
    template: Option<&str>,
    repo: &str,
    commit: &str,
) -> Option<String> {
    if commit.is_empty() || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if template.is_some() {
        return commit_link(template, repo, commit);
    }
    let url = url::Url::parse(repo).ok()?;
    if url.scheme() != "https" || !url.has_host() || url.query().is_some() {
        return None;
    }
    let path = repo_path(repo)?;
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str()?),
        None => url.host_str()?.to_string(),
    };
    Some(format!("https://{host}/{path}/commit/{commit}"))
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

/// How long ago `unix_ms` was, seen at `now_ms`: `just now`, `42 s ago`, `5 min ago`,
/// `3 h ago`, `12 d ago` (a moment in the future, from a skewed clock, is `just now`).
pub(super) fn ago(unix_ms: i64, now_ms: i64) -> String {
    let s = (now_ms - unix_ms).max(0) / 1000;
    match s {
        0..5 => "just now".into(),
        5..60 => format!("{s} s ago"),
        60..3_600 => format!("{} min ago", s / 60),
        3_600..86_400 => format!("{} h ago", s / 3_600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// Longest text a console query parameter keeps (characters): filters are typed by people,
/// and whatever arrives is echoed into the page and compared against every run.
pub(super) const QUERY_CHARS: usize = 200;

/// A query parameter as the console uses it: trimmed, at most [`QUERY_CHARS`] characters.
pub(super) fn bounded(text: &str) -> String {
    text.trim().chars().take(QUERY_CHARS).collect()
}

/// A console URL: `path` with the non-empty `pairs` and the page number.
pub(super) fn link(path: &str, pairs: &[(&str, &str)], page: usize) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    if page > 1 {
        s.append_pair("page", &page.to_string());
    }
    match s.finish() {
        q if q.is_empty() => path.to_string(),
        q => format!("{path}?{q}"),
    }
}

/// Why a run failed, in one line: ApplyPolicy's for `tests-failed` (the last line of the
/// output), the error's first line for an error; `None` for every other outcome.
pub(super) fn reason(run: &RunRecord) -> Option<String> {
    let line = match (&run.report, &run.error) {
        (Some(r), _) if !r.succeeded() => r.summary(),
        (None, Some(e)) => e.lines().next().unwrap_or_default().to_string(),
        _ => return None,
    };
    Some(line)
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
    fn a_tested_commit_links_to_an_https_forge() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            forge_commit_link(None, "https://git.example/org/gitops.git", sha).as_deref(),
            Some(format!("https://git.example/org/gitops/commit/{sha}").as_str())
        );
        assert_eq!(forge_commit_link(None, "file:///srv/gitops.git", sha), None);
        assert_eq!(
            forge_commit_link(None, "http://git.example/org/gitops.git", sha),
            None
        );
        assert_eq!(
            forge_commit_link(None, "https://git.example/o/g.git", "<x>"),
            None
        );
        let t = Some("https://forge.example/{repo}/-/commit/{commit}");
        assert_eq!(
            forge_commit_link(t, "git@forge.example:o/g.git", sha).as_deref(),
            Some(format!("https://forge.example/o/g/-/commit/{sha}").as_str())
        );
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

    #[test]
    fn times_read_as_how_long_ago() {
        let now = 1_000_000_000;
        assert_eq!(ago(now + 5_000, now), "just now");
        assert_eq!(ago(now - 42_000, now), "42 s ago");
        assert_eq!(ago(now - 300_000, now), "5 min ago");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(ago(now - 12 * 86_400_000, now), "12 d ago");
    }

    #[test]
    fn query_parameters_are_bounded_and_links_keep_only_what_is_set() {
        assert_eq!(bounded(&"x".repeat(10_000)).len(), QUERY_CHARS);
        assert_eq!(bounded("  pet  "), "pet");
        assert_eq!(link("/", &[("repo", ""), ("q", "a&b")], 1), "/?q=a%26b");
        assert_eq!(link("/runs", &[("q", "")], 2), "/runs?page=2");
        assert_eq!(link("/runs", &[], 1), "/runs");
    }
}
