//! SSH signing keys (ed25519, ECDSA, RSA) and the `sshsig` signatures `ssh-keygen -Y sign -n
//! git` makes, which git verifies with `gpg.format=ssh`.

use ssh_key::{HashAlg, LineEnding, PrivateKey};

use super::{IdentityCheck, SigningError, allowed_signers};
use crate::git::Secret;

/// git signs and verifies commits in this sshsig namespace.
const NAMESPACE: &str = "git";

/// An OpenSSH private key, decrypted.
pub(super) struct SshKey(PrivateKey);

/// True for an OpenSSH private key file.
pub(super) fn is_ssh_key(text: &str) -> bool {
    text.trim_start()
        .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
}

impl SshKey {
    /// Parses and decrypts an OpenSSH private key.
    pub(super) fn load(text: &str, passphrase: Option<&Secret>) -> Result<SshKey, SigningError> {
        let key = PrivateKey::from_openssh(text.trim()).map_err(|e| {
            SigningError::Unreadable(format!(
                "signing key is not a valid OpenSSH private key: {e}"
            ))
        })?;
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        if !key.is_encrypted() {
            return Ok(SshKey(key));
        }
        let Some(passphrase) = passphrase else {
            return Err(SigningError::Encrypted(fingerprint));
        };
        key.decrypt(passphrase.expose().as_bytes())
            .map(SshKey)
            .map_err(|_| SigningError::WrongPassphrase(fingerprint))
    }

    /// `SHA256:…`, as `ssh-keygen -l` and the forges show it.
    pub(super) fn fingerprint(&self) -> String {
        self.0.public_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// With an allowed signers file, the key must be listed there for the committer email.
    pub(super) fn check_identity(&self, identity: &IdentityCheck) -> Result<(), SigningError> {
        let Some(file) = identity.allowed_signers else {
            return Ok(());
        };
        let text = std::fs::read_to_string(file).map_err(|e| {
            SigningError::Unreadable(format!(
                "cannot read allowed signers file {}: {e}",
                file.display()
            ))
        })?;
        if allowed_signers::lists(&text, identity.email, self.0.public_key().key_data()) {
            return Ok(());
        }
        Err(SigningError::IdentityMismatch(format!(
            "signing key {} is not listed for `{}` in the allowed signers file {}",
            self.fingerprint(),
            identity.email,
            file.display()
        )))
    }

    /// The armored sshsig signature of `data` (SHA-512, namespace `git`, as git asks for).
    pub(super) fn sign(&self, data: &[u8]) -> Result<String, String> {
        self.0
            .sign(NAMESPACE, HashAlg::Sha512, data)
            .and_then(|sig| sig.to_pem(LineEnding::LF))
            .map_err(|e| e.to_string())
    }
}
