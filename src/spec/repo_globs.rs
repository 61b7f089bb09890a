//! [`RepoGlobs`]: the `policy.repos` globs over repository URLs in normal form.

use super::RepoUrl;

/// Globs over repository URLs (`policy.repos`). `*` stops at `/` (write `**` to cross it);
/// a glob matches the URL as given (it is in normal form), or its match key with or without
/// `.git`, so `https://github.com/org/*` and `https://github.com/org/*.git` both work.
#[derive(Debug, Clone, Default)]
pub struct RepoGlobs(Option<globset::GlobSet>);

impl RepoGlobs {
    /// Compiles the globs; the error names the glob that does not parse.
    pub fn new(patterns: &[String]) -> Result<RepoGlobs, String> {
        glob_set(patterns).map(RepoGlobs)
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

/// The [`strict_glob`]s of `patterns` as one set; `None` when there are none. The error names
/// the glob that does not parse.
pub fn glob_set(patterns: &[String]) -> Result<Option<globset::GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = globset::GlobSetBuilder::new();
    for p in patterns {
        set.add(strict_glob(p)?);
    }
    set.build().map(Some).map_err(|e| e.to_string())
}

/// A glob whose `*` and `?` never match `/` (only `**` crosses directories).
fn strict_glob(pattern: &str) -> Result<globset::Glob, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("{pattern:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
