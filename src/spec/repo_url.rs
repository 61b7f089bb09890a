//! [`RepoUrl`]: a GitOps repository URL in normal form, so policy globs and credential scopes
//! match exactly what is fetched and pushed. A URL that is not already in normal form (upper
//! case host, default port written out, `.`/`..`/`//` in the path, a query, …) is refused, not
//! rewritten: what the Sensor asked for is what is checked and what is used.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::LazyLock,
};

use regex::Regex;

use super::SpecError;

static SCP_LIKE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?<user>[A-Za-z0-9._-]+)@(?<host>[A-Za-z0-9.-]+):(?<path>[^:\\]+)$")
        .expect("valid regex")
});

const FIELD: &str = "repo";

/// A GitOps repository URL without credentials, in normal form, with its parts kept: later
/// code asks for the host, port or path instead of splitting the URL again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoUrl {
    /// As given (and used to fetch and push): equal to its normal form.
    url: String,
    /// `scheme://host[:port]/path` without user and without a final `.git`.
    key: String,
    /// `https`, `http`, `ssh` (also for `user@host:path`) or `file`.
    scheme: &'static str,
    /// `user@host:path` rather than `ssh://`.
    scp_like: bool,
    /// As the URL writes it (IPv6 in brackets); empty for `file://`.
    host: String,
    /// The port written in the URL (never the scheme's default: normal form leaves it out).
    port: Option<u16>,
    /// Below the host, without the leading `/`, as written (a final `.git` kept).
    path: String,
    /// The directory of a `file://` repository.
    local_path: Option<PathBuf>,
}

impl RepoUrl {
    /// Accepts `https://`, `http://`, `ssh://`, `file://` and `user@host:path` in normal form.
    /// Never echoes the URL in an error: a user may have pasted a token into it.
    pub fn parse(s: &str) -> Result<RepoUrl, SpecError> {
        if s.is_empty() {
            return Err(SpecError::invalid(FIELD, "is required"));
        }
        if s.chars().any(char::is_control) {
            return Err(SpecError::invalid(FIELD, "holds a control character"));
        }
        if let Some(c) = SCP_LIKE.captures(s) {
            let (host, path) = (&c["host"], &c["path"]);
            not_normal_if(
                host.chars().any(|c| c.is_ascii_uppercase()) || host.ends_with('.'),
                "the host must be lower case, without a final '.'",
            )?;
            // `git@h:/org/x` is the server's /org/x, `git@h:org/x` is below the login's home:
            // two repositories one match key would confuse (a scope for one admitting the other).
            if path.starts_with('/') {
                return Err(SpecError::invalid(
                    FIELD,
                    "`user@host:/path` is ambiguous: write ssh://user@host/path for the \
                     absolute path, or user@host:path for a path below the login's home",
                ));
            }
            check_path(path)?;
            let key = format!("ssh://{host}/{}", strip_git(path));
            return Ok(RepoUrl {
                url: s.into(),
                key,
                scheme: "ssh",
                scp_like: true,
                host: host.into(),
                port: None,
                path: path.into(),
                local_path: None,
            });
        }
        let url = url::Url::parse(s).map_err(|_| {
            SpecError::invalid(FIELD, "must be https://, ssh://, user@host:path or file://")
        })?;
        let scheme = match url.scheme() {
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
            "https" => "https",
            "http" => "http",
            "ssh" => "ssh",
            "file" => "file",
            other => {
                return Err(SpecError::invalid(
                    FIELD,
                    format!("scheme {other:?} is not supported (https, ssh, file)"),
                ));
            }
        };
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
        let local_path = url.to_file_path().ok().filter(|_| scheme == "file");
        Ok(RepoUrl {
            url: s.into(),
            key,
            scheme,
            scp_like: false,
            host: host.into(),
            port: url.port(),
            path: path.into(),
            local_path,
        })
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

    /// The scheme of the match key (`https`, `http`, `ssh`, `file`): `ssh` also for
    /// `user@host:path`.
    pub fn scheme(&self) -> &str {
        self.scheme
    }

    /// True for `https://` and `http://`: git speaks HTTP to it (and a forge serves its web
    /// pages and API there).
    pub fn is_web(&self) -> bool {
        matches!(self.scheme, "https" | "http")
    }

    /// True for the scp-like `user@host:path` form of an SSH remote.
    pub fn is_scp_like(&self) -> bool {
        self.scp_like
    }

    /// The host as the URL writes it (lower case; an IPv6 address in brackets); empty for
    /// `file://`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port the URL writes out; `None` for the scheme's default (and for `user@host:path`).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path below the host, without the leading `/`, as written (with its `.git`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The local directory of a `file://` repository.
    pub fn local_path(&self) -> Option<&Path> {
        self.local_path.as_deref()
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
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
    fn keeps_the_host_port_and_path_of_every_form() {
        let parts = |u: &str| {
            let r = RepoUrl::parse(u).expect(u);
            (
                r.scheme().to_string(),
                r.host().to_string(),
                r.port(),
                r.path().to_string(),
            )
        };
        let of = |s: &str, h: &str, p, path: &str| (s.into(), h.into(), p, path.into());
        assert_eq!(
            parts("https://github.com/org/x.git"),
            of("https", "github.com", None, "org/x.git")
        );
        assert_eq!(
            parts("http://127.0.0.1:8080/org/x"),
            of("http", "127.0.0.1", Some(8080), "org/x")
        );
        assert_eq!(
            parts("ssh://git@git.internal:2222/org/x.git"),
            of("ssh", "git.internal", Some(2222), "org/x.git")
        );
        assert_eq!(
            parts("git@github.com:org/x.git"),
            of("ssh", "github.com", None, "org/x.git")
        );
        let file = RepoUrl::parse("file:///srv/gitops.git").expect("file");
        assert_eq!((file.host(), file.path()), ("", "srv/gitops.git"));
        assert_eq!(file.local_path(), Some(Path::new("/srv/gitops.git")));
        assert!(
            RepoUrl::parse("git@github.com:org/x.git")
                .expect("scp")
                .is_scp_like()
        );
    }

    #[test]
    fn refuses_an_ambiguous_scp_path_and_control_characters() {
        let err = RepoUrl::parse("git@github.com:/org/x.git")
            .expect_err("absolute scp path")
            .to_string();
        assert!(err.contains("ambiguous"), "{err}");
        RepoUrl::parse("ssh://git@github.com/org/x.git").expect("the absolute path, spelled out");
        for bad in [
            "git@github.com:org/x\u{1b}[2J.git",
            "git@github.com:org/x\n.git",
            "https://github.com/org/x\t.git",
        ] {
            let err = RepoUrl::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("control character"), "{bad:?}: {err}");
        }
    }
}
