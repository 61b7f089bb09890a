//! Where the HTTP runner may go: only to the target's origin when redirected (at most
//! [`MAX_REDIRECTS`] times), and never to a link-local or cloud metadata address
//! ([`is_forbidden_test_address`]), whether the URL names it, a name resolves to it, or a
//! redirect hop leads to it. A test target is the event's to choose; these keep the check from
//! carrying a request (and its answer, in the test log) to the node's cloud credentials or to
//! another service.

use std::{fmt::Write, net::SocketAddr};

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
    redirect::{Attempt, Policy},
};

use crate::spec::is_forbidden_test_address;

/// Redirects followed at most, as reqwest's default: enough for a login or a trailing slash.
const MAX_REDIRECTS: usize = 10;

/// The most of a redirect URL a log line shows (its origin and path; never its query).
const MAX_SHOWN_URL: usize = 200;

/// The HTTP runner's redirect policy: follow a hop only on the first request's origin.
pub(super) fn redirect_policy() -> Policy {
    Policy::custom(|attempt: Attempt<'_>| {
        // reqwest lists the first request's URL first, then each hop followed so far.
        let decision = match attempt.previous() {
            [first, ..] => follow(first, attempt.url(), attempt.previous().len() - 1),
            [] => Err("a redirect without a first request".to_string()),
        };
        match decision {
            Ok(()) => attempt.follow(),
            Err(why) => attempt.error(why),
        }
    })
}

/// Whether a redirect from a request to `first` (after `followed` hops) to `next` is followed,
/// and why not: `next` must stay on `first`'s origin (scheme, host and port, so never https to
/// http), name no forbidden address, and come within [`MAX_REDIRECTS`] hops.
pub(super) fn follow(first: &Url, next: &Url, followed: usize) -> Result<(), String> {
    if next.origin() != first.origin() {
        return Err(format!(
            "redirect to {} not followed: it leaves the target's origin {}",
            shown(next),
            first.origin().ascii_serialization()
        ));
    }
    forbidden_literal(next)?;
    if followed >= MAX_REDIRECTS {
        return Err(format!(
            "redirect to {} not followed: {MAX_REDIRECTS} redirects followed already",
            shown(next)
        ));
    }
    Ok(())
}

/// Refuses a URL whose host is a forbidden IP literal (a literal is never resolved, so the
/// [`Resolver`] does not see it).
pub(super) fn forbidden_literal(url: &Url) -> Result<(), String> {
    match crate::spec::forbidden_literal(url) {
        Some(ip) => Err(format!(
            "{ip} is a link-local or cloud metadata address, which tests may not reach"
        )),
        None => Ok(()),
    }
}

/// A URL as a log line may show it: origin and path, at most [`MAX_SHOWN_URL`] characters.
pub(super) fn shown(url: &Url) -> String {
    let mut text = url.origin().ascii_serialization();
    text.push_str(url.path());
    if text.len() > MAX_SHOWN_URL {
        let mut end = MAX_SHOWN_URL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The system resolver without the addresses tests may not reach.
#[derive(Debug, Default)]
pub(super) struct Resolver;

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str();
            let found = tokio::net::lookup_host((host, 0)).await?;
            let kept = reachable(host, found)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The addresses `host` resolved to that a test may reach; an error naming the host and the
/// refused addresses when none is left.
pub(super) fn reachable(
    host: &str,
    found: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, String> {
    let (kept, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = found
        .into_iter()
        .partition(|a| !is_forbidden_test_address(a.ip()));
    if kept.is_empty() {
        if refused.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }
        let mut ips = String::new();
        for (i, a) in refused.iter().enumerate() {
            let _ = write!(ips, "{}{}", if i == 0 { "" } else { ", " }, a.ip());
        }
        return Err(format!(
            "{host} resolves only to link-local or cloud metadata addresses ({ips}), which tests \
             may not reach"
        ));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("a URL")
    }

    fn addrs(ips: &[&str]) -> Vec<SocketAddr> {
        ips.iter()
            .map(|ip| SocketAddr::new(ip.parse().expect("an IP"), 0))
            .collect()
    }

    #[test]
    fn follows_redirects_on_the_targets_origin() {
        let first = url("http://127.0.0.1:8080/pet");
        assert_eq!(
            follow(&first, &url("http://127.0.0.1:8080/pet/"), 0),
            Ok(())
        );
        assert_eq!(
            follow(&first, &url("http://127.0.0.1:8080/login?next=/pet"), 9),
            Ok(())
        );
        let default_port = url("https://app.test/pet");
        assert_eq!(
            follow(&default_port, &url("https://app.test:443/pets"), 0),
            Ok(())
        );
    }

    #[test]
    fn refuses_a_redirect_to_another_host_port_or_scheme() {
        let first = url("http://127.0.0.1:8080/pet");
        let err = follow(&first, &url("http://other:9/x?token=secret"), 0).expect_err("host");
        assert_eq!(
            err,
            "redirect to http://other:9/x not followed: it leaves the target's origin \
             http://127.0.0.1:8080"
        );
        assert!(
            follow(&first, &url("http://127.0.0.1:8081/pet"), 0).is_err(),
            "port"
        );
        assert!(
            follow(&first, &url("https://127.0.0.1:8080/pet"), 0).is_err(),
            "scheme"
        );
    }

    #[test]
    fn never_follows_https_to_http_even_on_the_same_host() {
        let first = url("https://app.test/pet");
        let err = follow(&first, &url("http://app.test/pet"), 0).expect_err("downgrade");
        assert!(
            err.contains("leaves the target's origin https://app.test"),
            "{err}"
        );
        let err = follow(&first, &url("http://app.test:443/pet"), 0).expect_err("downgrade");
        assert!(err.contains("http://app.test:443/pet"), "{err}");
    }

    #[test]
    fn stops_after_ten_redirects() {
        let first = url("http://app.test/a");
        let err = follow(&first, &url("http://app.test/b"), 10).expect_err("too many");
        assert!(err.contains("10 redirects"), "{err}");
    }

    #[test]
    fn refuses_metadata_literals_on_every_hop() {
        let first = url("http://169.254.169.254/latest/meta-data/");
        let err = follow(&first, &url("http://169.254.169.254/x"), 0).expect_err("metadata");
        assert!(err.contains("169.254.169.254 is a link-local"), "{err}");
        assert!(forbidden_literal(&url("http://[fd00:ec2::254]/")).is_err());
        assert!(forbidden_literal(&url("http://[::ffff:169.254.169.254]/")).is_err());
        assert!(forbidden_literal(&url("http://100.100.100.200/")).is_err());
        assert_eq!(forbidden_literal(&url("http://127.0.0.1:8080/")), Ok(()));
        assert_eq!(forbidden_literal(&url("http://metadata.test/")), Ok(()));
    }

    #[test]
    fn shows_only_origin_and_path_cut_short() {
        let long = format!("http://app.test/{}?secret=1#frag", "a".repeat(500));
        let text = shown(&url(&long));
        assert!(text.starts_with("http://app.test/aaa"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.chars().count() <= MAX_SHOWN_URL + 1, "{text}");
    }

    #[test]
    fn the_resolver_keeps_reachable_addresses_and_drops_the_others() {
        let kept = reachable(
            "app.test",
            addrs(&["169.254.169.254", "10.0.0.7", "fe80::1", "::1"]),
        )
        .expect("some are reachable");
        assert_eq!(kept, addrs(&["10.0.0.7", "::1"]));
    }

    #[test]
    fn a_name_that_resolves_only_to_metadata_addresses_fails_naming_it() {
        let err = reachable(
            "metadata.google.internal",
            addrs(&["169.254.169.254", "::ffff:169.254.169.254"]),
        )
        .expect_err("nothing left");
        assert_eq!(
            err,
            "metadata.google.internal resolves only to link-local or cloud metadata addresses \
             (169.254.169.254, ::ffff:169.254.169.254), which tests may not reach"
        );
        let err = reachable("nothing.test", []).expect_err("no address");
        assert!(err.contains("nothing.test resolves to no address"), "{err}");
    }

    async fn resolve(host: &str) -> Result<Vec<SocketAddr>, String> {
        let name: Name = host.parse().map_err(|_| "not a name".to_string())?;
        match Resolver.resolve(name).await {
            Ok(addrs) => Ok(addrs.collect()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[tokio::test]
    async fn the_system_resolver_answers_through_the_filter() {
        let local = resolve("localhost").await.expect("localhost resolves");
        assert!(local.iter().all(|a| a.ip().is_loopback()), "{local:?}");
        // The system resolver returns an address as itself: the filter sees it.
        let err = resolve("169.254.169.254").await.expect_err("refused");
        assert!(err.contains("169.254.169.254 resolves only to"), "{err}");
    }
}
