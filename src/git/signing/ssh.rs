//! SSH signing keys (ed25519, ECDSA, RSA) and the `sshsig` signatures `ssh-keygen -Y sign -n
//! git` makes, which git verifies with `gpg.format=ssh`.

use rsa::signature::{SignatureEncoding, Signer};
use ssh_key::{
    Algorithm, HashAlg, LineEnding, Mpint, PrivateKey, SshSig, private::KeypairData,
    private::RsaKeypair,
};

use super::{IdentityCheck, SigningError, allowed_signers};
use crate::credentials::Secret;

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
    /// Parses an OpenSSH private key (still encrypted, if it is).
    pub(super) fn parse(text: &str) -> Result<SshKey, SigningError> {
        PrivateKey::from_openssh(text.trim())
            .map(SshKey)
            .map_err(|e| {
                SigningError::Unreadable(format!(
                    "signing key is not a valid OpenSSH private key: {e}"
                ))
            })
    }

    /// The key decrypted with its passphrase (as it is, when it is not encrypted).
    pub(super) fn unlock(self, passphrase: Option<&Secret>) -> Result<SshKey, SigningError> {
        if !self.0.is_encrypted() {
            return Ok(self);
        }
        let Some(passphrase) = passphrase else {
            return Err(SigningError::Encrypted(self.fingerprint()));
        };
        self.0
            .decrypt(passphrase.expose().as_bytes())
            .map(SshKey)
            .map_err(|_| SigningError::WrongPassphrase(self.fingerprint()))
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
        let signature = match self.0.key_data() {
            KeypairData::Rsa(rsa) => sign_rsa(&self.0, rsa, data),
            _ => self.0.sign(NAMESPACE, HashAlg::Sha512, data),
        };
        signature
            .and_then(|sig| sig.to_pem(LineEnding::LF))
            .map_err(|e| e.to_string())
    }
}

/// ssh-key 0.6.7 cannot sign with RSA keys (its key conversion fails with rsa >= 0.9.7:
/// RustCrypto/SSH#318, #387): sign the sshsig payload with the rsa crate itself, as
/// `rsa-sha2-512`, the algorithm `ssh-keygen -Y sign` uses.
fn sign_rsa(key: &PrivateKey, rsa_key: &RsaKeypair, data: &[u8]) -> ssh_key::Result<SshSig> {
    let big = |m: &Mpint| rsa::BigUint::from_bytes_be(m.as_positive_bytes().unwrap_or_default());
    let private = rsa::RsaPrivateKey::from_components(
        big(&rsa_key.public.n),
        big(&rsa_key.public.e),
        big(&rsa_key.private.d),
        vec![big(&rsa_key.private.p), big(&rsa_key.private.q)],
    )
    .map_err(|_| ssh_key::Error::Crypto)?;
    let signed = SshSig::signed_data(NAMESPACE, HashAlg::Sha512, data)?;
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(private)
        .try_sign(&signed)
        .map_err(|_| ssh_key::Error::Crypto)?;
    let algorithm = Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    };
    SshSig::new(
        key.public_key().key_data().clone(),
        NAMESPACE,
        HashAlg::Sha512,
        ssh_key::Signature::new(algorithm, signature.to_vec())?,
    )
}
