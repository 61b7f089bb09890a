//! Which forge hosts a repository and where its API is: inferred from well-known hosts or set
//! with `forge` and `forgeApiUrl`, and only ever on the repository's own host (the forge token
//! is a credential of that repository: a spec must not be able to send it elsewhere). Pure:
//! decided from the spec alone, so FetchResource refuses what cannot be located.

use url::Url;

use super::{ForgeChoice, ForgeKind, RepoUrl, SpecError};

/// The forge of one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub kind: ForgeKind,
    /// The API root, e.g. `https://api.github.com` or `https://ghe.example.com/api/v3`.
    pub api: Url,
    /// The repository on the forge: `owner/name` (GitLab: `group/subgroup/…/name`; Bitbucket
    /// Data Center: `PROJECT/slug`).
    pub project: String,
}

/// Where a repository URL points: scheme, host, port (http(s) only, the default filled in)
/// and path.
struct RepoLocation<'a> {
    web: bool,
    secure: bool,
    host: &'a str,
    port: Option<u16>,
    path: &'a str,
}

/// `None` for a `file://` repository: no forge hosts it.
fn repo_location(repo: &RepoUrl) -> Option<RepoLocation<'_>> {
    let (web, secure) = match repo.scheme() {
        "https" => (true, true),
        "http" => (true, false),
        "ssh" => (false, true),
        _ => return None,
    };
    let default = if secure { 443 } else { 80 };
    Some(RepoLocation {
        web,
        secure,
        host: repo.host(),
        port: web.then(|| repo.port().unwrap_or(default)),
        path: repo.path(),
    })
}

/// The forge of `repo`: `None` when the spec names none and the host is not a well-known one.
pub fn locate(repo: &RepoUrl, choice: &ForgeChoice) -> Result<Option<Located>, SpecError> {
    let Some(at) = repo_location(repo) else {
        return match choice.kind.is_some() || choice.api_url.is_some() {
            true => Err(SpecError::Forge(
                "`forge` needs a repository on a forge (an https://, ssh:// or user@host:path URL)"
                    .into(),
            )),
            false => Ok(None),
        };
    };
    let well_known = match at.host {
        "github.com" => Some(ForgeKind::GitHub),
        "gitlab.com" => Some(ForgeKind::GitLab),
        "gitea.com" => Some(ForgeKind::Gitea),
        "codeberg.org" => Some(ForgeKind::Forgejo),
        _ => None,
    };
    let Some(kind) = choice.kind.or(well_known) else {
        return match choice.api_url {
            Some(_) => Err(SpecError::Forge(
                "`forgeApiUrl` is set but the forge is unknown: set `forge` too".into(),
            )),
            None => Ok(None),
        };
    };
    let (project, context) = match kind {
        ForgeKind::BitbucketDataCenter => bitbucket_project(&at)?,
        _ => (project(kind, at.path)?, String::new()),
    };
    let api = match &choice.api_url {
        Some(url) => {
            check_scope(url, &at)?;
            url.clone()
        }
        None => default_api(kind, &at, &context)?,
    };
    Ok(Some(Located { kind, api, project }))
}

/// `owner/name` from a repository path (`/owner/name.git`); GitLab nests groups
/// (`group/subgroup/name`).
fn project(kind: ForgeKind, path: &str) -> Result<String, SpecError> {
    let trimmed = path.trim_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let parts: Vec<&str> = trimmed.split('/').collect();
    let nested = kind == ForgeKind::GitLab;
    let ok = (parts.len() == 2 || (nested && parts.len() > 2))
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if !ok {
        return Err(SpecError::Forge(match nested {
            true => "the repository path is not `group/…/name` on GitLab".into(),
            false => "the repository path is not `owner/name` on the forge".into(),
        }));
    }
    Ok(parts.join("/"))
}

/// `PROJECT/slug` and the web context (`/bitbucket`, often empty) from a Bitbucket Data Center
/// clone URL: `https://host[/context]/scm/PROJECT/slug.git`, or `ssh://git@host:7999/PROJECT/
/// slug.git`. Project keys are upper case in the API (clone URLs often show them lower case);
/// personal projects (`~user`) keep theirs.
fn bitbucket_project(at: &RepoLocation) -> Result<(String, String), SpecError> {
    let trimmed = at.path.trim_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let parts: Vec<&str> = trimmed.split('/').collect();
    let (context, key, slug) = match (at.web, parts.as_slice()) {
        (true, [context @ .., "scm", key, slug]) => (context.join("/"), *key, *slug),
        (false, [key, slug]) => (String::new(), *key, *slug),
        _ => {
            return Err(SpecError::Forge(
                "the repository is not a Bitbucket Data Center clone URL \
                 (https://host[/context]/scm/PROJECT/repo.git or ssh://git@host:port/PROJECT/repo.git)"
                    .into(),
            ));
        }
    };
    let fine = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
    };
    if !fine(key) || !fine(slug) || !context.split('/').all(|c| c.is_empty() || fine(c)) {
        return Err(SpecError::Forge(
            "the Bitbucket project key, repository slug or context path has characters \
             phasegate does not send to the API"
                .into(),
        ));
    }
    let key = match key.starts_with('~') {
        true => key.to_string(),
        false => key.to_ascii_uppercase(),
    };
    let context = match context.is_empty() {
        true => context,
        false => format!("/{context}"),
    };
    Ok((format!("{key}/{slug}"), context))
}

/// The API root when the spec sets none; `context` is Bitbucket's web context path.
fn default_api(kind: ForgeKind, at: &RepoLocation, context: &str) -> Result<Url, SpecError> {
    // GitHub Enterprise Server, GitLab, Gitea and Forgejo serve their API beside the
    // repositories.
    let beside = |root: &str| {
        let scheme = if at.secure { "https" } else { "http" };
        match at.port.filter(|_| at.web) {
            Some(port) => format!("{scheme}://{}:{port}{root}", at.host),
            None => format!("{scheme}://{}{root}", at.host),
        }
    };
    let text = match (kind, at.host) {
        (ForgeKind::GitHub, "github.com") => "https://api.github.com".to_string(),
        (ForgeKind::GitHub, _) => beside("/api/v3"),
        (ForgeKind::GitLab, _) => beside("/api/v4"),
        (ForgeKind::Gitea | ForgeKind::Forgejo, _) => beside("/api/v1"),
        // REST API 1.0 (`latest` is its alias on every Data Center version).
        (ForgeKind::BitbucketDataCenter, _) => beside(&format!("{context}/rest/api/latest")),
    };
    Url::parse(&text).map_err(|e| SpecError::Forge(format!("forge API URL: {e}")))
}

/// An API URL set in the spec must be on the repository's origin: its host (github.com's is
/// api.github.com) and port, over TLS when the repository is. An ssh repository's port says
/// nothing of its web server's, so its API (and api.github.com) must be on the default port.
fn check_scope(api: &Url, at: &RepoLocation) -> Result<(), SpecError> {
    let host = api.host_str().unwrap_or("").to_ascii_lowercase();
    let same_host = host == at.host || (at.host == "github.com" && host == "api.github.com");
    let port = api.port_or_known_default();
    let same_port = if at.web && host == at.host {
        port == at.port
    } else {
        port == Some(if at.secure { 443 } else { 80 })
    };
    if at.secure && api.scheme() != "https" {
        return Err(SpecError::Forge(
            "`forgeApiUrl` must be https:// for an https:// or ssh repository".into(),
        ));
    }
    if !same_host || !same_port {
        return Err(SpecError::Forge(
            "`forgeApiUrl` is not on the repository's host: the forge token is only sent to \
             the API of the repository it is for"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locate_str(repo: &str, kind: Option<ForgeKind>, api: Option<&str>) -> String {
        let choice = ForgeChoice {
            kind,
            api_url: api.map(|a| Url::parse(a).expect("url")),
        };
        match locate(&RepoUrl::parse(repo).expect("repo"), &choice) {
            Ok(Some(l)) => format!("{:?} {} {}", l.kind, l.api, l.project),
            Ok(None) => "none".into(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn infers_github_from_its_host_in_every_url_form() {
        for repo in [
            "https://github.com/my-org/gitops.git",
            "ssh://git@github.com/my-org/gitops.git",
            "git@github.com:my-org/gitops.git",
        ] {
            assert_eq!(
                locate_str(repo, None, None),
                "GitHub https://api.github.com/ my-org/gitops",
                "{repo}"
            );
        }
    }

    #[test]
    fn finds_github_enterprise_apis_beside_the_repositories() {
        assert_eq!(
            locate_str(
                "https://ghe.example.com/org/app.git",
                Some(ForgeKind::GitHub),
                None
            ),
            "GitHub https://ghe.example.com/api/v3 org/app"
        );
        assert_eq!(
            locate_str(
                "http://127.0.0.1:8080/org/app.git",
                Some(ForgeKind::GitHub),
                None
            ),
            "GitHub http://127.0.0.1:8080/api/v3 org/app"
        );
    }

    #[test]
    fn has_no_forge_for_unknown_hosts_and_local_repositories() {
        assert_eq!(
            locate_str("https://git.example.com/a/b.git", None, None),
            "none"
        );
        assert_eq!(locate_str("file:///tmp/x.git", None, None), "none");
        let err = locate_str("file:///tmp/x.git", Some(ForgeKind::GitHub), None);
        assert!(err.contains("needs a repository on a forge"), "{err}");
    }

    #[test]
    fn never_sends_the_token_to_another_host() {
        for api in [
            "https://evil.example.com/api/v3",
            "https://ghe.example.com:8443/api/v3",
        ] {
            let err = locate_str(
                "https://ghe.example.com/org/app.git",
                Some(ForgeKind::GitHub),
                Some(api),
            );
            assert!(err.contains("not on the repository's host"), "{api}: {err}");
        }
        let err = locate_str(
            "https://ghe.example.com/org/app.git",
            Some(ForgeKind::GitHub),
            Some("http://ghe.example.com/api/v3"),
        );
        assert!(err.contains("must be https"), "{err}");
        assert_eq!(
            locate_str(
                "https://github.com/o/r.git",
                None,
                Some("https://api.github.com")
            ),
            "GitHub https://api.github.com/ o/r"
        );
    }

    #[test]
    fn infers_gitlab_and_finds_self_managed_apis_with_nested_groups() {
        for repo in [
            "https://gitlab.com/my-group/gitops.git",
            "git@gitlab.com:my-group/gitops.git",
        ] {
            assert_eq!(
                locate_str(repo, None, None),
                "GitLab https://gitlab.com/api/v4 my-group/gitops",
                "{repo}"
            );
        }
        assert_eq!(
            locate_str(
                "https://git.example.com:8443/platform/team/gitops.git",
                Some(ForgeKind::GitLab),
                None
            ),
            "GitLab https://git.example.com:8443/api/v4 platform/team/gitops"
        );
        assert_eq!(
            locate_str(
                "ssh://git@git.example.com:2222/platform/gitops.git",
                Some(ForgeKind::GitLab),
                None
            ),
            "GitLab https://git.example.com/api/v4 platform/gitops"
        );
        let err = locate_str(
            "https://gitlab.com/my-group/gitops.git",
            None,
            Some("https://gitlab.example.net/api/v4"),
        );
        assert!(err.contains("not on the repository's host"), "{err}");
        let err = locate_str("https://gitlab.com/gitops.git", None, None);
        assert!(err.contains("`group/…/name` on GitLab"), "{err}");
        let err = locate_str("https://github.com/a/b/c.git", None, None);
        assert!(err.contains("owner/name"), "{err}");
    }

    #[test]
    fn infers_gitea_and_forgejo_and_finds_self_hosted_apis() {
        assert_eq!(
            locate_str("https://gitea.com/my-org/gitops.git", None, None),
            "Gitea https://gitea.com/api/v1 my-org/gitops"
        );
        for repo in [
            "https://codeberg.org/my-org/gitops.git",
            "git@codeberg.org:my-org/gitops.git",
        ] {
            assert_eq!(
                locate_str(repo, None, None),
                "Forgejo https://codeberg.org/api/v1 my-org/gitops",
                "{repo}"
            );
        }
        assert_eq!(
            locate_str(
                "http://127.0.0.1:3000/org/app.git",
                Some(ForgeKind::Gitea),
                None
            ),
            "Gitea http://127.0.0.1:3000/api/v1 org/app"
        );
        assert_eq!(
            locate_str(
                "ssh://git@git.example.com:2222/org/app.git",
                Some(ForgeKind::Forgejo),
                None
            ),
            "Forgejo https://git.example.com/api/v1 org/app"
        );
        let err = locate_str(
            "https://codeberg.org/org/app.git",
            None,
            Some("https://evil.example.com/api/v1"),
        );
        assert!(err.contains("not on the repository's host"), "{err}");
        // An ssh repository's port is not its API's: any other than 443 is another server.
        for api in [
            "https://git.example.com:8443/api/v1",
            "https://git.example.com:22/api/v1",
        ] {
            let err = locate_str(
                "ssh://git@git.example.com:2222/org/app.git",
                Some(ForgeKind::Forgejo),
                Some(api),
            );
            assert!(err.contains("not on the repository's host"), "{api}: {err}");
        }
        let err = locate_str(
            "https://github.com/org/app.git",
            None,
            Some("https://api.github.com:8443"),
        );
        assert!(err.contains("not on the repository's host"), "{err}");
        assert_eq!(
            locate_str(
                "ssh://git@git.example.com:2222/org/app.git",
                Some(ForgeKind::Forgejo),
                Some("https://git.example.com/api/v1"),
            ),
            "Forgejo https://git.example.com/api/v1 org/app"
        );
    }

    #[test]
    fn finds_bitbucket_apis_from_clone_urls_with_and_without_a_context_path() {
        let bitbucket = Some(ForgeKind::BitbucketDataCenter);
        for (repo, expected) in [
            (
                "https://bitbucket.example.com/scm/plat/gitops.git",
                "https://bitbucket.example.com/rest/api/latest PLAT/gitops",
            ),
            (
                "https://git.example.com:8443/bitbucket/scm/PLAT/gitops.git",
                "https://git.example.com:8443/bitbucket/rest/api/latest PLAT/gitops",
            ),
            (
                "http://127.0.0.1:7990/scm/~jdoe/gitops.git",
                "http://127.0.0.1:7990/rest/api/latest ~jdoe/gitops",
            ),
            (
                "ssh://git@bitbucket.example.com:7999/plat/gitops.git",
                "https://bitbucket.example.com/rest/api/latest PLAT/gitops",
            ),
        ] {
            assert_eq!(
                locate_str(repo, bitbucket, None),
                format!("BitbucketDataCenter {expected}"),
                "{repo}"
            );
        }
        assert_eq!(
            locate_str(
                "https://bitbucket.example.com/scm/plat/gitops.git",
                bitbucket,
                Some("https://bitbucket.example.com/bb/rest/api/1.0")
            ),
            "BitbucketDataCenter https://bitbucket.example.com/bb/rest/api/1.0 PLAT/gitops"
        );
        let err = locate_str(
            "https://bitbucket.example.com/plat/gitops.git",
            bitbucket,
            None,
        );
        assert!(
            err.contains("not a Bitbucket Data Center clone URL"),
            "{err}"
        );
        assert_eq!(
            locate_str("https://bitbucket.example.com/scm/p/r.git", None, None),
            "none",
            "Bitbucket Data Center has no well-known host"
        );
    }

    #[test]
    fn refuses_paths_that_are_not_owner_and_name() {
        let err = locate_str("https://github.com/only-one.git", None, None);
        assert!(err.contains("owner/name"), "{err}");
    }
}
