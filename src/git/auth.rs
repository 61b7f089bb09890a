//! Credentials for the git remote, handed to libgit2 only through its credential callback
//! (ssh) and to the HTTP transport as the `Authorization` header of its requests
//! (`smart_http`): never in a URL, a log line, an error or a response.

use std::{
    cell::{Cell, RefCell},
    path::PathBuf,
    rc::Rc,
};

use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};

use super::{GitError, GitSettings, known_hosts};
use crate::{credentials::Credentials, spec::RepoUrl};

/// The `Authorization` header value for an HTTP(S) remote, sent with every request: without it
/// every fetch and push would first collect a 401 and ask again, a round trip (and, behind a
/// CGI git server, a process) each time.
pub(super) fn preemptive_header(repo: &RepoUrl, creds: Option<&Credentials>) -> Option<String> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let creds = creds?;
    repo.is_web().then(|| {
        let pair = format!("{}:{}", creds.username, creds.password.expose());
        format!("Basic {}", STANDARD.encode(pair))
    })
}

/// libgit2 asks again after a refused credential; give up after this many asks per operation.
const CREDENTIAL_ASKS: u32 = 3;

/// What the callbacks saw, so a failed fetch or push can be told apart from a network error.
#[derive(Debug, Default, Clone)]
pub(super) struct AuthTrace {
    asks: Rc<Cell<u32>>,
    missing: Rc<Cell<bool>>,
    untrusted_host: Rc<RefCell<Option<String>>>,
}

impl AuthTrace {
    /// Why authentication failed, if it did.
    pub(super) fn failure(&self) -> Option<GitError> {
        if let Some(why) = self.untrusted_host.borrow().clone() {
            Some(GitError::Unreachable(why))
        } else if self.missing.get() {
            Some(GitError::AuthRejected(
                "the remote asks for credentials, but no credential scope gives this repository any".into(),
            ))
        } else if self.asks.get() > CREDENTIAL_ASKS {
            Some(GitError::AuthRejected(
                "the remote did not accept phasegate's credentials".into(),
            ))
        } else {
            None
        }
    }
}

/// Callbacks for the remote `repo`: credential requests answered with `creds` (HTTPS) or an
/// SSH key (file or agent), and an SSH server's host key checked against the known hosts file
/// when one is configured (libgit2 checks `~/.ssh/known_hosts` otherwise).
pub(super) fn callbacks<'a>(
    repo: &RepoUrl,
    creds: Option<&'a Credentials>,
    settings: &GitSettings,
) -> (RemoteCallbacks<'a>, AuthTrace) {
    let trace = AuthTrace::default();
    let seen = trace.clone();
    let ssh_key: Option<PathBuf> = settings.ssh_key.clone();
    let mut cb = RemoteCallbacks::new();
    if let (Some(file), Some((host, port))) = (&settings.ssh_known_hosts, ssh_host(repo)) {
        let (file, untrusted) = (file.clone(), trace.untrusted_host.clone());
        cb.certificate_check(move |cert, _| {
            let Some(key) = cert.as_hostkey().and_then(|k| k.hostkey()) else {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            known_hosts::check(&file, &host, port, key)
                .map(|()| CertificateCheckStatus::CertificateOk)
                .map_err(|why| {
                    *untrusted.borrow_mut() = Some(why);
                    git2::Error::from_str("untrusted SSH host key")
                })
        });
    }
    cb.credentials(move |_url, user_from_url, allowed| {
        seen.asks.set(seen.asks.get() + 1);
        if seen.asks.get() > CREDENTIAL_ASKS {
            return Err(git2::Error::from_str("credentials refused"));
        }
        let ssh_user = user_from_url.unwrap_or("git");
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let Some(c) = creds {
                return Cred::userpass_plaintext(&c.username, c.password.expose());
            }
        } else if allowed.contains(CredentialType::SSH_KEY) {
            return match &ssh_key {
                Some(key) => Cred::ssh_key(ssh_user, None, key, None),
                None => Cred::ssh_key_from_agent(ssh_user),
            };
        } else if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(ssh_user);
        }
        seen.missing.set(true);
        Err(git2::Error::from_str("no credentials configured"))
    });
    (cb, trace)
}

/// Host (an IPv6 address without brackets) and port of an SSH remote
/// (`ssh://[user@]host[:port]/path` or `[user@]host:path`).
fn ssh_host(repo: &RepoUrl) -> Option<(String, u16)> {
    (repo.scheme() == "ssh").then(|| {
        (
            repo.host().trim_matches(['[', ']']).to_string(),
            repo.port().unwrap_or(22),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_host_and_port_of_ssh_remotes() {
        let of = |url: &str| ssh_host(&RepoUrl::parse(url).expect(url));
        assert_eq!(
            of("ssh://git@git.internal:2222/org/gitops.git"),
            Some(("git.internal".into(), 2222))
        );
        assert_eq!(
            of("ssh://git.internal/gitops"),
            Some(("git.internal".into(), 22))
        );
        assert_eq!(
            of("git@github.com:org/gitops.git"),
            Some(("github.com".into(), 22))
        );
        assert_eq!(of("https://github.com/org/gitops.git"), None);
        assert_eq!(of("file:///srv/gitops.git"), None);
        assert_eq!(
            of("ssh://git@[::1]:2222/gitops"),
            Some(("::1".into(), 2222))
        );
    }

    #[test]
    fn never_prints_the_password() {
        let c = Credentials {
            username: "bot".into(),
            password: crate::credentials::Secret::new("SENTINEL-PASSWORD"),
            email: None,
        };
        assert!(!format!("{c:?}").contains("SENTINEL"));
    }
}
