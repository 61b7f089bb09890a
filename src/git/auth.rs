//! Credentials for the git remote, handed to libgit2 only through its credential callback:
//! never in a URL, a log line, an error or a response.

use std::{
    cell::Cell,
    fmt,
    path::{Path, PathBuf},
    rc::Rc,
};

use git2::{Cred, CredentialType, RemoteCallbacks};

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that hands it to libgit2.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// HTTPS credentials (`username`, `password` or token) and the author email, as in the classic
/// setup's Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    pub email: Option<String>,
}

/// The `Authorization` header for an HTTP(S) remote, sent with the first request: without it
/// every fetch and push first collects a 401 and asks again, a round trip (and, behind a CGI
/// git server, a process) each time.
pub fn preemptive_header(url: &str, creds: Option<&Credentials>) -> Option<String> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let creds = creds?;
    let http = url.starts_with("https://") || url.starts_with("http://");
    http.then(|| {
        let pair = format!("{}:{}", creds.username, creds.password.expose());
        format!("Authorization: Basic {}", STANDARD.encode(pair))
    })
}

/// libgit2 asks again after a refused credential; give up after this many asks per operation.
const CREDENTIAL_ASKS: u32 = 3;

/// What the callback saw, so a failed fetch or push can be told apart from a network error.
#[derive(Debug, Default, Clone)]
pub struct AuthTrace {
    asks: Rc<Cell<u32>>,
    missing: Rc<Cell<bool>>,
}

impl AuthTrace {
    /// Why authentication failed, if it did.
    pub fn failure(&self) -> Option<&'static str> {
        if self.missing.get() {
            Some("the remote asks for credentials, but none are configured")
        } else if self.asks.get() > CREDENTIAL_ASKS {
            Some("the remote did not accept phasegate's credentials")
        } else {
            None
        }
    }
}

/// Callbacks answering credential requests with `creds` (HTTPS) or an SSH key (file or agent).
pub fn callbacks<'a>(
    creds: Option<&'a Credentials>,
    ssh_key: Option<&'a Path>,
) -> (RemoteCallbacks<'a>, AuthTrace) {
    let trace = AuthTrace::default();
    let seen = trace.clone();
    let ssh_key: Option<PathBuf> = ssh_key.map(Path::to_path_buf);
    let mut cb = RemoteCallbacks::new();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_password() {
        let c = Credentials {
            username: "bot".into(),
            password: Secret::new("SENTINEL-PASSWORD"),
            email: None,
        };
        assert!(!format!("{c:?}").contains("SENTINEL"));
    }
}
