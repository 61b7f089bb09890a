//! Credentials bound to the remotes they are for, as Argo CD's repository credential templates
//! and git's credential helpers do: a credential scope is a URL prefix (matched on the
//! normalised URL, at a path-segment boundary, the longest prefix wins), and a remote outside
//! every scope gets no credential at all, not even when it answers 401. Plain `http://` gets
//! one only where the operator allowed it for that scope.
//!
//! The server's own credentials of the classic container (`GIT_USER`/`GIT_PASSWORD` or
//! `git.usernameFile`/`git.passwordFile`) form one more scope: the repositories `policy.repos`
//! names, where no credential scope matches.

use std::{path::PathBuf, sync::Arc};

use serde::Deserialize;

use super::{Credentials, Secret};
use crate::spec::{RepoGlobs, RepoUrl};

/// A credential scope as written in the server configuration (`credentials:`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScopeConfig {
    /// URL prefix: `https://github.com/my-org` covers `https://github.com/my-org/…` (not
    /// `https://github.com/my-org-evil/…`); `git@host:org` covers the SSH remotes below it.
    pub url: String,
    /// The username, written out (not secret); or `usernameFile`.
    pub username: Option<String>,
    /// File holding the username (a mounted Secret).
    pub username_file: Option<PathBuf>,
    /// File holding the password or token (a mounted Secret).
    pub password_file: PathBuf,
    /// Also send these credentials to `http://` remotes below the prefix (cleartext!).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// A credential scope that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// The prefix is not a repository URL (prefix) in normal form.
    #[error("credential scope {url:?}: {problem}")]
    BadPrefix { url: String, problem: String },
    /// A credential file could not be read.
    #[error("credential scope {url:?}: cannot read {file}: {reason}")]
    Unreadable {
        url: String,
        file: String,
        reason: String,
    },
}

#[derive(Debug)]
struct Scope {
    /// Match key of the prefix: `scheme://host[:port][/path]`.
    prefix: String,
    credentials: Credentials,
    allow_insecure_http: bool,
}

/// The server's own credentials: for the repositories `policy.repos` names.
#[derive(Debug)]
struct Legacy {
    credentials: Credentials,
    repos: RepoGlobs,
}

/// Which credentials go to which remote. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CredentialScopes {
    scopes: Arc<Vec<Scope>>,
    legacy: Option<Arc<Legacy>>,
    /// `git.allowInsecureHttp`: outside every scope, credentials may go over `http://`.
    insecure_outside_scopes: bool,
}

impl CredentialScopes {
    /// Reads the scopes' credential files.
    pub fn load(configs: &[ScopeConfig]) -> Result<CredentialScopes, ScopeError> {
        let mut scopes = Vec::new();
        for c in configs {
            let read = |file: &PathBuf| {
                super::read_credential_file(file).map_err(|e| ScopeError::Unreadable {
                    url: c.url.clone(),
                    file: file.display().to_string(),
                    reason: e.to_string(),
                })
            };
            let username = match (&c.username, &c.username_file) {
                (Some(u), None) => u.clone(),
                (None, Some(f)) => read(f)?,
                _ => {
                    return Err(ScopeError::BadPrefix {
                        url: c.url.clone(),
                        problem: "needs exactly one of `username` and `usernameFile`".into(),
                    });
                }
            };
            let credentials = Credentials {
                username,
                password: Secret::new(read(&c.password_file)?),
                email: None,
            };
            scopes.push(Scope {
                prefix: prefix_key(&c.url, c.allow_insecure_http)?,
                credentials,
                allow_insecure_http: c.allow_insecure_http,
            });
        }
        Ok(CredentialScopes {
            scopes: Arc::new(scopes),
            ..CredentialScopes::default()
        })
    }

    /// Adds the server's own credentials (if any), for the repositories `repos` matches;
    /// `allow_insecure_http` (`git.allowInsecureHttp`) lets credentials go over `http://` to
    /// a remote outside every scope (the server's own, or a `credentialsSecret`).
    pub fn with_legacy(
        mut self,
        credentials: Option<Credentials>,
        repos: RepoGlobs,
        allow_insecure_http: bool,
    ) -> CredentialScopes {
        self.legacy = credentials.map(|credentials| Arc::new(Legacy { credentials, repos }));
        self.insecure_outside_scopes = allow_insecure_http;
        self
    }

    /// One scope (`prefix`) holding `credentials`: for tests and tools.
    pub fn single(
        prefix: &str,
        credentials: Credentials,
        allow_insecure_http: bool,
    ) -> Result<CredentialScopes, ScopeError> {
        Ok(CredentialScopes {
            scopes: Arc::new(vec![Scope {
                prefix: prefix_key(prefix, allow_insecure_http)?,
                credentials,
                allow_insecure_http,
            }]),
            ..CredentialScopes::default()
        })
    }

    /// The credentials for `repo`: the longest matching scope's, else the server's own where
    /// `policy.repos` names the repo; none for any other remote, and none over plain `http://`
    /// unless the scope allows it.
    pub fn credentials_for(&self, repo: &RepoUrl) -> Option<&Credentials> {
        if let Some(scope) = self.scope_of(repo) {
            return self
                .usable(repo, scope.allow_insecure_http)
                .then_some(&scope.credentials);
        }
        if self.below_a_secure_scope(repo) {
            return None;
        }
        let legacy = self.legacy.as_deref()?;
        (legacy.repos.is_match(repo) && self.usable(repo, self.insecure_outside_scopes))
            .then_some(&legacy.credentials)
    }

    /// The credentials a run of `repo` uses, for git and for the forge's API on the same
    /// host: its spec's own (`credentialsSecret`, never over plain `http://` unless allowed),
    /// otherwise [`credentials_for`](Self::credentials_for).
    pub fn for_run<'a>(
        &'a self,
        repo: &RepoUrl,
        own: Option<&'a Credentials>,
    ) -> Option<&'a Credentials> {
        match own {
            Some(c) => Some(c).filter(|_| self.may_send_to(repo)),
            None => self.credentials_for(repo),
        }
    }

    /// True when a scope covers `repo` (the closed policy then allows it).
    pub fn covers(&self, repo: &RepoUrl) -> bool {
        self.scope_of(repo).is_some()
    }

    /// True when credentials may be sent to `repo` at all: not plain `http://`, unless the
    /// scope covering it (or, outside every scope, `git.allowInsecureHttp`) allows it. A
    /// `credentialsSecret` is sent only where this holds.
    pub fn may_send_to(&self, repo: &RepoUrl) -> bool {
        let insecure_ok = match self.scope_of(repo) {
            Some(scope) => scope.allow_insecure_http,
            None => self.insecure_outside_scopes && !self.below_a_secure_scope(repo),
        };
        self.usable(repo, insecure_ok)
    }

    /// An `http://` repository whose `https://` form an https-only scope covers: the scheme is
    /// part of the scope, so it is not "outside every scope", and `git.allowInsecureHttp` does
    /// not send it anything in clear text.
    fn below_a_secure_scope(&self, repo: &RepoUrl) -> bool {
        let Some(rest) = repo.match_key().strip_prefix("http://") else {
            return false;
        };
        let as_https = format!("https://{rest}");
        self.scopes
            .iter()
            .any(|s| !s.allow_insecure_http && under(&as_https, &s.prefix))
    }

    /// True when the server's own credentials are set but `policy.repos` is empty, so they
    /// go nowhere (worth a warning at startup).
    pub fn legacy_unused(&self) -> bool {
        self.legacy.as_ref().is_some_and(|l| l.repos.is_empty())
    }

    fn usable(&self, repo: &RepoUrl, insecure_ok: bool) -> bool {
        repo.scheme() != "http" || insecure_ok
    }

    fn scope_of(&self, repo: &RepoUrl) -> Option<&Scope> {
        let key = repo.match_key();
        // An insecure scope written as https:// also covers the same prefix over http://.
        let as_https = key
            .strip_prefix("http://")
            .map(|rest| format!("https://{rest}"));
        self.scopes
            .iter()
            .filter(|s| {
                under(key, &s.prefix)
                    || (s.allow_insecure_http
                        && as_https.as_deref().is_some_and(|k| under(k, &s.prefix)))
            })
            .max_by_key(|s| s.prefix.len())
    }
}

/// `key` is `prefix` or below it (at a `/` boundary: `org` does not cover `org-evil`).
fn under(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether a Secret's `url` (Argo CD's repository-credential key: a repository URL or a prefix
/// of them) covers `repo`: its match key is `url`'s or below it at a `/` boundary, same scheme.
pub fn url_covers(url: &str, repo: &RepoUrl) -> Result<bool, ScopeError> {
    Ok(under(repo.match_key(), &prefix_key(url, true)?))
}

/// The match key of a scope's URL prefix, which may stop at the host or at any directory.
fn prefix_key(url: &str, allow_insecure_http: bool) -> Result<String, ScopeError> {
    let bad = |problem: String| ScopeError::BadPrefix {
        url: url.to_string(),
        problem,
    };
    let trimmed = url.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    // A repository URL one segment below the prefix, parsed and normalised like a spec's.
    let probe = if trimmed.ends_with(':') {
        format!("{trimmed}x")
    } else {
        format!("{trimmed}/x")
    };
    let repo = RepoUrl::parse(&probe).map_err(|e| bad(e.to_string().replace("`repo`", "url")))?;
    let key = repo
        .match_key()
        .strip_suffix("/x")
        .ok_or_else(|| bad("is not a URL prefix".into()))?
        .to_string();
    if repo.scheme() == "http" && !allow_insecure_http {
        return Err(bad(
            "is plain http://: credentials would travel in clear text; set allowInsecureHttp: true to accept that".into(),
        ));
    }
    if repo.scheme() == "file" {
        return Err(bad("file:// remotes take no credentials".into()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str) -> Credentials {
        Credentials {
            username: user.into(),
            password: Secret::new("SENTINEL"),
            email: None,
        }
    }

    fn scopes(list: &[(&str, &str, bool)]) -> CredentialScopes {
        let scopes = list
            .iter()
            .map(|(url, user, insecure)| Scope {
                prefix: prefix_key(url, *insecure).expect(url),
                credentials: creds(user),
                allow_insecure_http: *insecure,
            })
            .collect();
        CredentialScopes {
            scopes: Arc::new(scopes),
            ..CredentialScopes::default()
        }
    }

    fn user_for(s: &CredentialScopes, url: &str) -> Option<String> {
        let repo = RepoUrl::parse(url).expect(url);
        s.credentials_for(&repo).map(|c| c.username.clone())
    }

    #[test]
    fn the_longest_prefix_wins_at_a_segment_boundary() {
        let s = scopes(&[
            ("https://github.com/", "host", false),
            ("https://github.com/my-org", "org", false),
            ("https://github.com/my-org/gitops.git", "repo", false),
            ("git@github.com:my-org", "ssh", false),
        ]);
        let of = |u| user_for(&s, u);
        assert_eq!(
            of("https://github.com/my-org/gitops.git").as_deref(),
            Some("repo")
        );
        assert_eq!(
            of("https://github.com/my-org/gitops").as_deref(),
            Some("repo")
        );
        assert_eq!(
            of("https://github.com/my-org/other.git").as_deref(),
            Some("org")
        );
        assert_eq!(
            of("https://github.com/my-org-evil/x.git").as_deref(),
            Some("host")
        );
        assert_eq!(
            of("ssh://git@github.com/my-org/x.git").as_deref(),
            Some("ssh")
        );
        assert_eq!(of("https://github.com.evil.io/my-org/x.git"), None);
        assert_eq!(of("https://github.com:8443/my-org/x.git"), None);
        assert_eq!(of("https://gitlab.com/my-org/x.git"), None);
    }

    #[test]
    fn plain_http_gets_credentials_only_where_the_scope_allows_it() {
        let s = scopes(&[
            ("https://git.internal/secure", "secure", false),
            ("https://git.internal/lab", "lab", true),
        ]);
        assert_eq!(user_for(&s, "http://git.internal/secure/x.git"), None);
        assert_eq!(
            user_for(&s, "http://git.internal/lab/x.git").as_deref(),
            Some("lab")
        );
        assert_eq!(
            user_for(&s, "https://git.internal/lab/x.git").as_deref(),
            Some("lab")
        );
        let err = prefix_key("http://git.internal/lab", false).expect_err("cleartext");
        assert!(err.to_string().contains("allowInsecureHttp"), "{err}");
        prefix_key("http://git.internal/lab", true).expect("allowed");
    }

    #[test]
    fn an_http_twin_of_an_https_only_scope_is_not_outside_every_scope() {
        // git.allowInsecureHttp sends the server's own credentials (and a credentialsSecret)
        // over http:// outside the scopes; an https-only scope's http:// twin is not outside.
        let repos = RepoGlobs::new(&["**".into()]).expect("globs");
        let s = scopes(&[("https://git.internal/secure", "secure", false)]).with_legacy(
            Some(creds("legacy")),
            repos,
            true,
        );
        let twin = RepoUrl::parse("http://git.internal/secure/x.git").expect("url");
        assert_eq!(s.credentials_for(&twin).map(|c| c.username.clone()), None);
        assert!(!s.may_send_to(&twin), "no credentialsSecret there either");
        let outside = RepoUrl::parse("http://git.internal/lab/x.git").expect("url");
        assert_eq!(
            s.credentials_for(&outside).map(|c| c.username.as_str()),
            Some("legacy"),
            "outside every scope, as configured"
        );
        assert!(s.may_send_to(&outside));
    }

    #[test]
    fn the_servers_own_credentials_go_only_to_repos_the_policy_names() {
        let repos = RepoGlobs::new(&["https://git.example.com/org/*".into()]).expect("globs");
        let s = scopes(&[("https://git.example.com/org/special", "scoped", false)]).with_legacy(
            Some(creds("legacy")),
            repos,
            false,
        );
        let of = |u| user_for(&s, u);
        assert_eq!(
            of("https://git.example.com/org/a.git").as_deref(),
            Some("legacy")
        );
        assert_eq!(
            of("https://git.example.com/org/special.git").as_deref(),
            Some("scoped")
        );
        assert_eq!(
            of("https://git.example.com/org/sub/a.git"),
            None,
            "* stops at /"
        );
        assert_eq!(of("https://evil.example.com/org/a.git"), None);
        assert_eq!(of("http://git.example.com/org/a.git"), None, "no cleartext");
    }

    #[test]
    fn refuses_prefixes_that_are_not_normalised() {
        for bad in [
            "https://GitHub.com/org",
            "https://github.com/org/../evil",
            "https://user:pw@github.com/org",
            "file:///srv",
            "github.com/org",
        ] {
            assert!(prefix_key(bad, false).is_err(), "{bad}");
        }
    }
}
