//! OpenPGP signing keys and the armored detached signatures `gpg -bsa` makes, which git stores
//! in the `gpgsig` header and verifies with `gpg`.

use pgp::{
    composed::{ArmorOptions, Deserializable, DetachedSignature, SignedSecretKey},
    crypto::hash::HashAlgorithm,
    packet::{SecretKey, SecretSubkey},
    types::{KeyDetails, Password},
};

use super::SigningError;
use crate::credentials::Secret;

/// The key that makes the signatures: a signing subkey when the key has one, as gpg picks.
enum Signing {
    Primary(SecretKey),
    Subkey(SecretSubkey),
}

/// An OpenPGP secret key, decrypted, and the email addresses of its user ids.
pub(super) struct PgpKey {
    signing: Signing,
    emails: Vec<String>,
}

/// True for an armored OpenPGP secret key.
pub(super) fn is_openpgp_key(text: &str) -> bool {
    text.trim_start()
        .starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----")
}

impl PgpKey {
    /// Parses an armored secret key and picks its signing key (still encrypted, if it is).
    pub(super) fn parse(text: &str) -> Result<PgpKey, SigningError> {
        let (key, _) = SignedSecretKey::from_string(text.trim()).map_err(|e| {
            SigningError::Unreadable(format!(
                "signing key is not a valid armored OpenPGP secret key: {e}"
            ))
        })?;
        let emails = key
            .details
            .users
            .iter()
            .filter_map(|u| u.id.as_str().and_then(email_of))
            .collect();
        let subkey = key.secret_subkeys.iter().find(|s| {
            s.signatures.iter().any(|sig| {
                sig.key_flags().sign() && s.verify_bindings(key.primary_key.public_key()).is_ok()
            })
        });
        let signing = match subkey {
            Some(s) => Signing::Subkey(s.key.clone()),
            None => Signing::Primary(key.primary_key.clone()),
        };
        Ok(PgpKey { signing, emails })
    }

    /// Decrypts the signing key with its passphrase (nothing to do when it is not encrypted).
    pub(super) fn unlock(&mut self, passphrase: Option<&Secret>) -> Result<(), SigningError> {
        let encrypted = match &self.signing {
            Signing::Primary(k) => k.secret_params().is_encrypted(),
            Signing::Subkey(k) => k.secret_params().is_encrypted(),
        };
        if !encrypted {
            return Ok(());
        }
        let fingerprint = self.fingerprint();
        let Some(passphrase) = passphrase else {
            return Err(SigningError::Encrypted(fingerprint));
        };
        let password = Password::from(passphrase.expose());
        let decrypted = match &mut self.signing {
            Signing::Primary(k) => k.remove_password(&password),
            Signing::Subkey(k) => k.remove_password(&password),
        };
        decrypted.map_err(|_| SigningError::WrongPassphrase(fingerprint))
    }

    /// The signing key's fingerprint, upper-case hex as gpg prints it.
    pub(super) fn fingerprint(&self) -> String {
        match &self.signing {
            Signing::Primary(k) => format!("{:X}", k.fingerprint()),
            Signing::Subkey(k) => format!("{:X}", k.fingerprint()),
        }
    }

    /// One of the key's user ids must carry the committer email.
    pub(super) fn check_identity(&self, email: &str) -> Result<(), SigningError> {
        if self.emails.iter().any(|e| e.eq_ignore_ascii_case(email)) {
            return Ok(());
        }
        let has = if self.emails.is_empty() {
            "none".to_string()
        } else {
            self.emails.join(", ")
        };
        Err(SigningError::IdentityMismatch(format!(
            "OpenPGP signing key {} has no user id with the committer email `{email}` (its emails: {has})",
            self.fingerprint()
        )))
    }

    /// The armored detached signature of `data`, as `gpg --detach-sign --armor` writes it.
    pub(super) fn sign(&self, data: &[u8]) -> Result<String, String> {
        let rng = rand_core::OsRng;
        let (pw, hash) = (Password::empty(), HashAlgorithm::Sha256);
        let signature = match &self.signing {
            Signing::Primary(k) => DetachedSignature::sign_binary_data(rng, k, &pw, hash, data),
            Signing::Subkey(k) => DetachedSignature::sign_binary_data(rng, k, &pw, hash, data),
        };
        signature
            .and_then(|s| s.to_armored_string(ArmorOptions::default()))
            .map_err(|e| e.to_string())
    }
}

/// The address of a user id: `Name (comment) <addr>` or a bare `addr`.
fn email_of(user_id: &str) -> Option<String> {
    match (user_id.rfind('<'), user_id.rfind('>')) {
        (Some(start), Some(end)) if start < end => Some(user_id[start + 1..end].to_string()),
        _ => user_id.contains('@').then(|| user_id.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_email_of_a_user_id() {
        assert_eq!(
            email_of("Phasegate Bot (ci) <bot@example.com>").as_deref(),
            Some("bot@example.com")
        );
        assert_eq!(
            email_of("bot@example.com").as_deref(),
            Some("bot@example.com")
        );
        assert_eq!(email_of("Phasegate Bot"), None);
    }
}
