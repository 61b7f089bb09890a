//! The remote's URLs: a service's URL under the remote's, and libgit2's rules for following a
//! redirect of the first request. The credentials go with every request, so a redirect to
//! another host is never followed; libgit2 compares host names only, so another port of the
//! same host is followed, and so is a move from `http` to `https` (never back).

use git2::{Error, ErrorClass, ErrorCode};
use reqwest::header::HeaderValue;
use url::Url;

/// `path` under the remote `remote` (`…/gitops.git/info/refs`), with `query`.
pub(super) fn join(remote: &Url, path: &str, query: Option<&str>) -> Url {
    let mut url = remote.clone();
    let under = format!("{}/{path}", remote.path().trim_end_matches('/'));
    url.set_path(&under);
    url.set_query(query);
    url
}

/// Where the redirect of a request to `from` leads, when libgit2 would follow it.
pub(super) fn follow(from: &Url, location: Option<&HeaderValue>) -> Result<Url, Error> {
    let http = |message: String| Error::new(ErrorCode::GenericError, ErrorClass::Http, message);
    let net = |message: String| Error::new(ErrorCode::GenericError, ErrorClass::Net, message);
    let location = location
        .ok_or_else(|| http("redirect without location".into()))?
        .to_str()
        .map_err(|_| http("redirect to a location that is not text".into()))?;
    if location.starts_with('/') {
        // Another path on the same server.
        let (path, query) = match location.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (location, None),
        };
        let mut to = from.clone();
        to.set_path(path);
        to.set_query(query);
        return Ok(to);
    }
    let to = Url::parse(location).map_err(|_| net(format!("malformed URL '{location}'")))?;
    if to.scheme() != from.scheme() && to.scheme() != "https" {
        return Err(net(format!(
            "cannot redirect from '{}' to '{}'",
            from.scheme(),
            to.scheme()
        )));
    }
    let (a, b) = (from.host_str().unwrap_or(""), to.host_str().unwrap_or(""));
    if !a.eq_ignore_ascii_case(b) {
        return Err(net(format!("cannot redirect from '{a}' to '{b}'")));
    }
    Ok(to)
}

/// The remote's URL after a redirect to `to` of a request for `suffix` (`/info/refs`) with
/// `query`: `to` without them, as libgit2 keeps it for the requests that follow.
pub(super) fn base_of(to: &Url, suffix: &str, query: &str) -> Url {
    let mut base = to.clone();
    let path = to.path();
    if path.ends_with(suffix) && to.query().is_none_or(|q| q == query) {
        let kept = &path[..path.len() - suffix.len()];
        base.set_path(if kept.is_empty() { "/" } else { kept });
        base.set_query(None);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect(s)
    }

    fn follows(from: &str, location: &str) -> Result<String, String> {
        let location = HeaderValue::from_str(location).expect("header");
        follow(&url(from), Some(&location))
            .map(|u| u.to_string())
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn puts_a_service_under_the_remote() {
        let remote = url("http://git.internal:8080/org/gitops.git/");
        assert_eq!(
            join(&remote, "info/refs", Some("service=git-upload-pack")).as_str(),
            "http://git.internal:8080/org/gitops.git/info/refs?service=git-upload-pack"
        );
        assert_eq!(
            join(&url("https://h/gitops"), "git-receive-pack", None).as_str(),
            "https://h/gitops/git-receive-pack"
        );
    }

    #[test]
    fn follows_a_redirect_on_the_same_host_to_another_port_path_or_to_https() {
        let from = "http://git.internal/old.git/info/refs?service=git-upload-pack";
        assert_eq!(
            follows(from, "/new.git/info/refs?service=git-upload-pack"),
            Ok("http://git.internal/new.git/info/refs?service=git-upload-pack".into())
        );
        assert_eq!(
            follows(from, "http://GIT.internal:8080/new.git/info/refs"),
            Ok("http://git.internal:8080/new.git/info/refs".into())
        );
        assert_eq!(
            follows(from, "https://git.internal/new.git/info/refs"),
            Ok("https://git.internal/new.git/info/refs".into())
        );
    }

    #[test]
    fn refuses_a_redirect_to_another_host_or_down_to_http() {
        let from = "https://git.internal/gitops.git/info/refs";
        assert_eq!(
            follows(from, "https://elsewhere.example/gitops.git/info/refs"),
            Err("cannot redirect from 'git.internal' to 'elsewhere.example'".into())
        );
        assert_eq!(
            follows(from, "http://git.internal/gitops.git/info/refs"),
            Err("cannot redirect from 'https' to 'http'".into())
        );
        assert_eq!(
            follow(&url(from), None).map_err(|e| e.message().to_string()),
            Err("redirect without location".into())
        );
    }

    #[test]
    fn keeps_the_redirected_remote_without_the_service_suffix() {
        let query = "service=git-upload-pack";
        let base = |to: &str| base_of(&url(to), "/info/refs", query).to_string();
        assert_eq!(
            base("http://h:81/new.git/info/refs?service=git-upload-pack"),
            "http://h:81/new.git"
        );
        assert_eq!(base("http://h/new.git/info/refs"), "http://h/new.git");
        assert_eq!(base("http://h/info/refs"), "http://h/");
        assert_eq!(base("http://h/elsewhere"), "http://h/elsewhere");
    }
}
