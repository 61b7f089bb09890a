//! Signed promotion commits: the one place a commit object is written, signed with an SSH
//! (`sshsig`, as `gpg.format=ssh` writes it) or OpenPGP (armored detached) key when signing is
//! configured, in pure Rust (no `gpg` or `ssh-keygen` at run time).
//!
//! A [`Signer`] is loaded once (server key at start-up, per-spec key from the
//! `credentialsSecret`): the key is parsed, checked against the identity it signs as,
//! decrypted with its passphrase and tried once, so a key that cannot sign fails before any commit is
//! made, never by falling back to an unsigned commit.

mod allowed_signers;
mod openpgp;
mod ssh;

use std::{fmt, path::Path, sync::Arc};

use git2::{Commit, Oid, Repository, Signature, Tree};
use serde::{Deserialize, Serialize};

use super::{GitError, cache::git};
use crate::credentials::SigningKeySource;

/// Why a signing key cannot be used. Messages name the key by its fingerprint or file, never
/// its material or passphrase.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SigningError {
    /// The key text is not a private key phasegate can read.
    #[error("{0}")]
    Unreadable(String),
    /// The key is passphrase-protected and no passphrase was given.
    #[error("signing key {0} is encrypted and no passphrase is configured")]
    Encrypted(String),
    /// The passphrase does not decrypt the key.
    #[error("the passphrase does not decrypt signing key {0}")]
    WrongPassphrase(String),
    /// The configured format is not the key's.
    #[error("signing format is `{configured}` but the key is an {found} key")]
    FormatMismatch { configured: String, found: String },
    /// The key is not registered for the email the commits are made as.
    #[error("{0}")]
    IdentityMismatch(String),
    /// Signing itself failed.
    #[error("signing the commit with key {key} failed: {reason}")]
    Sign { key: String, reason: String },
}

/// The signature formats git knows (`gpg.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SigningFormat {
    /// `sshsig`, verified with `gpg.format=ssh` and an allowed signers file.
    Ssh,
    /// OpenPGP, verified with `gpg`.
    Openpgp,
}

impl fmt::Display for SigningFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SigningFormat::Ssh => "ssh",
            SigningFormat::Openpgp => "openpgp",
        })
    }
}

/// Which key signed a commit, as Execute's answer and the run history show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureInfo {
    /// `ssh` or `openpgp`.
    pub format: SigningFormat,
    /// `SHA256:…` for SSH keys (as `ssh-keygen -l` prints it), the 40-hex-digit key
    /// fingerprint for OpenPGP (as `gpg --list-keys` prints it).
    pub fingerprint: String,
}

/// Where the identity a key signs as is checked.
#[derive(Debug, Clone, Default)]
pub struct IdentityCheck<'a> {
    /// The committer email the key signs as.
    pub email: &'a str,
    /// For SSH keys: an allowed signers file (git's `gpg.ssh.allowedSignersFile` format) that
    /// must list the key for `email`; SSH keys carry no identity of their own.
    pub allowed_signers: Option<&'a Path>,
}

/// The private key, decrypted in memory.
enum Key {
    Ssh(Box<ssh::SshKey>),
    Openpgp(Box<openpgp::PgpKey>),
}

/// A loaded, checked signing key and the committer email it signs as.
pub struct Signer {
    key: Key,
    email: String,
    info: SignatureInfo,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("email", &self.email)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Two signers are the same when they hold the same key for the same email: promotions
/// signed alike may share a push.
impl PartialEq for Signer {
    fn eq(&self, other: &Signer) -> bool {
        self.info == other.info && self.email == other.email
    }
}

impl Signer {
    /// Loads a key: the format is the key's own (`expected`, when configured, must agree),
    /// it is checked against `identity`, decrypted with the passphrase and tried once.
    pub fn load(
        source: &SigningKeySource,
        expected: Option<SigningFormat>,
        identity: &IdentityCheck,
    ) -> Result<Signer, SigningError> {
        let text = source.key.expose();
        let found = if ssh::is_ssh_key(text) {
            SigningFormat::Ssh
        } else if openpgp::is_openpgp_key(text) {
            SigningFormat::Openpgp
        } else {
            return Err(SigningError::Unreadable(
                "signing key is neither an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----) nor an armored OpenPGP secret key (-----BEGIN PGP PRIVATE KEY BLOCK-----)".into(),
            ));
        };
        if let Some(configured) = expected.filter(|&e| e != found) {
            return Err(SigningError::FormatMismatch {
                configured: configured.to_string(),
                found: match found {
                    SigningFormat::Ssh => "SSH".into(),
                    SigningFormat::Openpgp => "OpenPGP".into(),
                },
            });
        }
        let passphrase = source.passphrase.as_ref();
        // The identity is checked first: it needs no passphrase, and decrypting is slow.
        let (key, fingerprint) = match found {
            SigningFormat::Ssh => {
                let key = ssh::SshKey::parse(text)?;
                key.check_identity(identity)?;
                let key = key.unlock(passphrase)?;
                let fingerprint = key.fingerprint();
                (Key::Ssh(Box::new(key)), fingerprint)
            }
            SigningFormat::Openpgp => {
                let mut key = openpgp::PgpKey::parse(text)?;
                key.check_identity(identity.email)?;
                key.unlock(passphrase)?;
                let fingerprint = key.fingerprint();
                (Key::Openpgp(Box::new(key)), fingerprint)
            }
        };
        let signer = Signer {
            key,
            email: identity.email.to_string(),
            info: SignatureInfo {
                format: found,
                fingerprint,
            },
        };
        signer.sign(b"phasegate signing key check\n")?;
        Ok(signer)
    }

    /// Which key this is.
    pub fn info(&self) -> &SignatureInfo {
        &self.info
    }

    /// The committer email the key signs as.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The armored signature of `data`, as git stores it in the `gpgsig` header.
    fn sign(&self, data: &[u8]) -> Result<String, SigningError> {
        let failed = |reason: String| SigningError::Sign {
            key: self.info.fingerprint.clone(),
            reason,
        };
        match &self.key {
            Key::Ssh(k) => k.sign(data).map_err(failed),
            Key::Openpgp(k) => k.sign(data).map_err(failed),
        }
    }
}

/// Writes a commit object (no ref moves): signed by `signer` when one is given, whose email
/// then is the author's and committer's.
pub(in crate::git) fn write_commit(
    repo: &Repository,
    signer: Option<&Arc<Signer>>,
    who: &Signature,
    message: &str,
    tree: &Tree,
    parent: &Commit,
) -> Result<Oid, GitError> {
    let Some(signer) = signer else {
        return git(repo.commit(None, who, who, message, tree, &[parent]));
    };
    let who = git(Signature::new(
        who.name().unwrap_or("phasegate"),
        signer.email(),
        &who.when(),
    ))?;
    let buffer = git(repo.commit_create_buffer(&who, &who, message, tree, &[parent]))?;
    let content = std::str::from_utf8(&buffer)
        .map_err(|_| GitError::Other("commit buffer is not UTF-8".into()))?;
    let signature = signer.sign(content.as_bytes()).map_err(GitError::Signing)?;
    git(repo.commit_signed(content, &signature, Some("gpgsig")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_text_that_is_no_private_key_without_echoing_it() {
        let source = SigningKeySource {
            key: crate::credentials::Secret::new("SENTINEL-NOT-A-KEY"),
            passphrase: None,
        };
        let identity = IdentityCheck {
            email: "bot@example.com",
            allowed_signers: None,
        };
        let err = Signer::load(&source, None, &identity)
            .expect_err("not a key")
            .to_string();
        assert!(err.contains("neither an OpenSSH private key"), "{err}");
        assert!(!err.contains("SENTINEL"), "{err}");
    }
}
