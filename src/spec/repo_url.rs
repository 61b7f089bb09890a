//! [`RepoUrl`]: a GitOps repository URL in normal form, so policy globs and credential scopes
//! match exactly what is fetched and pushed. A URL that is not already in normal form (upper
//! case host, default port written out, `.`/`..`/`//` in the path, a query, …) is refused, not
//! rewritten: what the Sensor asked for is what is checked and what is used.

use std::{fmt, sync::LazyLock};

use regex::Regex;

use super::SpecError;

static SCP_LIKE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?<user>[A-Za-z0-9._-]+)@(?<host>[A-Za-z0-9.-]+):(?<path>[^:\\]+)$")
        .expect("valid regex")
});

const FIELD: &str = "repo";

/// A GitOps repository URL without credentials, in normal form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoUrl {
    /// As given (and used to fetch and push): equal to its normal form.
    url: String,
    /// `scheme://host[:port]/path` without user and without a final `.git`.
    key: String,
}

impl RepoUrl {
    /// Accepts `https://`, `http://`, `ssh://`, `file://` and `user@host:path` in normal form.
    /// Never echoes the URL in an error: a user may have pasted a token into it.
    pub fn parse(s: &str) -> Result<RepoUrl, SpecError> {
        if s.is_empty() {
            return Err(SpecError::invalid(FIELD, "is required"));
        }
        if let Some(c) = SCP_LIKE.captures(s) {
            let (host, path) = (&c["host"], &c["path"]);
            not_normal_if(
                host.chars().any(|c| c.is_ascii_uppercase()) || host.ends_with('.'),
                "the host must be lower case, without a final '.'",
            )?;
            let path = path.strip_prefix('/').unwrap_or(path);
            check_path(path)?;
            let key = format!("ssh://{host}/{}", strip_git(path));
            return Ok(RepoUrl { url: s.into(), key });
        }
        let url = url::Url::parse(s).map_err(|_| {
            SpecError::invalid(FIELD, "must be https://, ssh://, user@host:path or file://")
        })?;
        let scheme = url.scheme();
        match scheme {
            "https" | "http" if !url.username().is_empty() || url.password().is_some() => {
                return Err(SpecError::invalid(
                    FIELD,
                    "must not carry credentials; use credentialsSecret",
                ));
            }
            "ssh" if url.password().is_some() => {
                return Err(SpecError::invalid(
                    FIELD,
                    "must not carry a password; use credentialsSecret",
                ));
            }
            "https" | "http" | "ssh" | "file" => {}
            other => {
                return Err(SpecError::invalid(
                    FIELD,
                    format!("scheme {other:?} is not supported (https, ssh, file)"),
                ));
            }
        }
        not_normal_if(
            url.query().is_some() || url.fragment().is_some(),
            "a query or fragment has no place in a repository URL",
        )?;
        let host = url.host_str().unwrap_or_default();
        not_normal_if(
            host.chars().any(|c| c.is_ascii_uppercase()) || host.ends_with('.'),
            "the host must be lower case, without a final '.'",
        )?;
        not_normal_if(
            (scheme == "ssh" && url.port() == Some(22)) || (scheme != "file" && host.is_empty()),
            "the host is missing, or the default port is written out",
        )?;
        not_normal_if(
            scheme == "file" && !host.is_empty(),
            "a file:// URL has no host (file:///path)",
        )?;
        // The WHATWG parser lower-cases hosts, drops default ports and resolves dot segments:
        // whatever it changed was not in normal form.
        not_normal_if(url.as_str() != s, "write it as the URL parser reads it")?;
        let path = url.path().strip_prefix('/').unwrap_or(url.path());
        check_path(path)?;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let key = format!("{scheme}://{host}{port}/{}", strip_git(path));
        Ok(RepoUrl { url: s.into(), key })
    }

    /// The URL, as given (it is in normal form).
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// What policy globs and credential scopes match: `scheme://host[:port]/path` without
    /// user and without a final `.git` (`git@host:org/x.git` is `ssh://host/org/x`).
    pub fn match_key(&self) -> &str {
        &self.key
    }

    /// The scheme of the match key (`https`, `http`, `ssh`, `file`).
    pub fn scheme(&self) -> &str {
        self.key.split_once("://").map_or("", |(s, _)| s)
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Globs over repository URLs (`policy.repos`). `*` stops at `/` (write `**` to cross it);
/// a glob matches the URL as given (it is in normal form), or its match key with or without
/// `.git`, so `https://github.com/org/*` and `https://github.com/org/*.git` both work.
#[derive(Debug, Clone, Default)]
pub struct RepoGlobs(Option<globset::GlobSet>);

impl RepoGlobs {
    /// Compiles the globs; the error names the glob that does not parse.
    pub fn new(patterns: &[String]) -> Result<RepoGlobs, String> {
        if patterns.is_empty() {
            return Ok(RepoGlobs(None));
        }
        let mut set = globset::GlobSetBuilder::new();
        for p in patterns {
            set.add(strict_glob(p)?);
        }
        set.build()
            .map(|s| RepoGlobs(Some(s)))
            .map_err(|e| e.to_string())
    }

    /// True when no glob is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// True when a glob matches `repo`.
    pub fn is_match(&self, repo: &RepoUrl) -> bool {
        self.0.as_ref().is_some_and(|set| {
            set.is_match(repo.as_str())
                || set.is_match(repo.match_key())
                || set.is_match(format!("{}.git", repo.match_key()))
        })
    }
}

/// A glob whose `*` and `?` never match `/` (only `**` crosses directories).
pub fn strict_glob(pattern: &str) -> Result<globset::Glob, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("{pattern:?}: {e}"))
}

fn strip_git(path: &str) -> &str {
    path.strip_suffix(".git").unwrap_or(path)
}

fn not_normal_if(bad: bool, why: &str) -> Result<(), SpecError> {
    if bad {
        return Err(SpecError::invalid(
            FIELD,
            format!("is not in normal form ({why}); policy matches normalised URLs only"),
        ));
    }
    Ok(())
}

/// The path below the host: no empty, `.` or `..` segment (also percent-encoded), no encoded
/// `/` or `\`, no final `/`.
fn check_path(path: &str) -> Result<(), SpecError> {
    let lower = path.to_ascii_lowercase();
    let bad = path.is_empty()
        || ["%2e", "%2f", "%5c", "%00"]
            .iter()
            .any(|e| lower.contains(e))
        || path.contains('\\')
        || path
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    not_normal_if(
        bad,
        "the path must not be empty or hold '.', '..', '//', a final '/' or encoded separators",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_urls_that_are_not_in_normal_form() {
        for url in [
            "https://GitHub.com/org/x.git",
            "https://github.com./org/x.git",
            "https://github.com:443/org/x.git",
            "http://github.com:80/org/x.git",
            "ssh://git@github.com:22/org/x.git",
            "https://github.com/org/../evil/x.git",
            "https://github.com/org/./x.git",
            "https://github.com/org/%2e%2e/evil/x.git",
            "https://github.com/org%2fevil/x.git",
            "https://github.com//org/x.git",
            "https://github.com/org/x.git/",
            "https://github.com/org/x.git?ref=evil",
            "https://github.com/org/x.git#frag",
            "https://github.com\\org\\x.git",
            "ssh://git@github.com/org/../evil/x.git",
            "ssh://git@GitHub.com/org/x.git",
            "git@GitHub.com:org/x.git",
            "git@github.com:org/../evil/x.git",
            "git@github.com:org//x.git",
            "file://localhost/srv/x.git",
            "file:///srv/org/../x.git",
            "https://github.com",
        ] {
            let err = RepoUrl::parse(url).expect_err(url).to_string();
            assert!(err.contains("`repo`"), "{url}: {err}");
        }
    }

    #[test]
    fn match_keys_drop_the_user_and_a_final_git() {
        let key = |u: &str| RepoUrl::parse(u).expect(u).match_key().to_string();
        assert_eq!(
            key("https://github.com/org/x.git"),
            "https://github.com/org/x"
        );
        assert_eq!(key("https://github.com/org/x"), "https://github.com/org/x");
        assert_eq!(
            key("http://git.internal:8080/org/x.git"),
            "http://git.internal:8080/org/x"
        );
        assert_eq!(key("git@github.com:org/x.git"), "ssh://github.com/org/x");
        assert_eq!(
            key("ssh://git@github.com:2222/org/x.git"),
            "ssh://github.com:2222/org/x"
        );
        assert_eq!(key("file:///srv/gitops.git"), "file:///srv/gitops");
    }

    #[test]
    fn a_glob_star_does_not_cross_a_slash() {
        let globs = RepoGlobs::new(&[
            "https://github.com/my-org/*".into(),
            "git@github.com:my-org/*.git".into(),
            "https://git.internal/**".into(),
        ])
        .expect("globs");
        let allowed = |u: &str| globs.is_match(&RepoUrl::parse(u).expect(u));
        assert!(allowed("https://github.com/my-org/gitops.git"));
        assert!(allowed("https://github.com/my-org/gitops"));
        assert!(allowed("git@github.com:my-org/gitops.git"));
        assert!(allowed("https://git.internal/a/b/c.git"));
        assert!(!allowed("https://github.com/my-org/fork/gitops.git"));
        assert!(!allowed("https://github.com/my-org-evil/gitops.git"));
        assert!(!allowed("git@github.com:my-org/sub/gitops.git"));
        assert!(!allowed("http://github.com/my-org/gitops.git"));
    }
}
