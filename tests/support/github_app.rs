//! GitHub Apps for the fake GitHub: an App key pair made with the openssl command line, and
//! the authority that checks an App's JWT as GitHub does (RS256 signature verified with the
//! App's public key by ring, not by the library phasegate signs with; `iss` the App id; `iat`
//! not in the future; `exp` not past and at most 10 minutes after `iat`) and issues
//! installation tokens that expire, for the API and for git (`x-access-token`).
//!
//! Does not model: App permissions (an installation may do everything its tokens ask), several
//! Apps or accounts, tokens for `repository_ids`, the `/app` endpoints other than
//! `access_tokens`.

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::openssl;

/// An App's RSA key pair, in the forms GitHub hands out and verifies.
pub(crate) struct AppKey {
    /// `BEGIN PRIVATE KEY` (PKCS#8), as openssl writes it.
    pub pkcs8_pem: String,
    /// `BEGIN RSA PRIVATE KEY` (PKCS#1), as GitHub's "Generate a private key" downloads it.
    pub pkcs1_pem: String,
    /// The public key, DER `RSAPublicKey`.
    pub public_der: Vec<u8>,
}

impl AppKey {
    /// A fresh 2048-bit key made with openssl in `dir`.
    pub(crate) fn generate(dir: &Path, name: &str) -> AppKey {
        let (key, pkcs1, public) = (
            format!("{name}.pem"),
            format!("{name}.rsa.pem"),
            format!("{name}.pub.der"),
        );
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &key,
            ],
        );
        openssl(dir, &["rsa", "-in", &key, "-traditional", "-out", &pkcs1]);
        openssl(
            dir,
            &[
                "rsa",
                "-in",
                &key,
                "-RSAPublicKey_out",
                "-outform",
                "DER",
                "-out",
                &public,
            ],
        );
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("key file");
        let key = AppKey {
            pkcs8_pem: read(&key),
            pkcs1_pem: read(&pkcs1),
            public_der: std::fs::read(dir.join(&public)).expect("public key"),
        };
        assert!(key.pkcs8_pem.contains("BEGIN PRIVATE KEY"));
        assert!(key.pkcs1_pem.contains("BEGIN RSA PRIVATE KEY"));
        key
    }
}

/// A JWT the authority accepted, as a test checks it.
#[derive(Debug, Clone)]
pub(crate) struct SeenJwt {
    pub iat: u64,
    pub exp: u64,
    /// When the fake received it (seconds since the epoch).
    pub received: u64,
}

/// One installation token the authority issued.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub token: String,
    pub expires: u64,
    /// The repository names the token was limited to.
    pub repositories: Vec<String>,
}

/// One App with one installation on the fake GitHub.
pub(crate) struct AppAuthority {
    pub app_id: String,
    pub installation_id: u64,
    public_der: Vec<u8>,
    /// How long the tokens it issues live.
    pub lifetime: Duration,
    pub jwts: Vec<SeenJwt>,
    pub issued: Vec<Issued>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl AppAuthority {
    pub(crate) fn new(app_id: &str, installation_id: u64, key: &AppKey) -> AppAuthority {
        AppAuthority {
            app_id: app_id.to_string(),
            installation_id,
            public_der: key.public_der.clone(),
            lifetime: Duration::from_secs(3600),
            jwts: Vec::new(),
            issued: Vec::new(),
        }
    }

    /// Whether `token` is an unexpired installation token valid for `repo` (a name).
    pub(crate) fn accepts(&self, token: &str, repo: Option<&str>) -> bool {
        self.issued.iter().any(|i| {
            i.token == token
                && i.expires > now()
                && repo.is_none_or(|r| i.repositories.iter().any(|n| n == r))
        })
    }

    /// `POST /app/installations/{installation}/access_tokens` with `authorization`.
    pub(crate) fn exchange(
        &mut self,
        authorization: &str,
        installation: &str,
        body: &Value,
        exists: impl Fn(&str) -> bool,
    ) -> (u16, Value) {
        let jwt = authorization.strip_prefix("Bearer ").unwrap_or("");
        if let Err(why) = self.verify(jwt) {
            return (
                401,
                json!({"message": why, "documentation_url": "https://docs.github.com/rest"}),
            );
        }
        if installation != self.installation_id.to_string() {
            return (404, json!({"message": "Not Found"}));
        }
        let repositories: Vec<String> = body["repositories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        if repositories.iter().any(|r| !exists(r)) {
            return (
                422,
                json!({"message": "There is at least one repository that does not exist or is not accessible to the parent installation."}),
            );
        }
        let token = format!("ghs_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let expires = now() + self.lifetime.as_secs();
        self.issued.push(Issued {
            token: token.clone(),
            expires,
            repositories: repositories.clone(),
        });
        let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(expires));
        (
            201,
            json!({
                "token": token, "expires_at": at.to_string(),
                "permissions": {"contents": "write", "pull_requests": "write", "statuses": "write"},
                "repository_selection": "selected",
            }),
        )
    }

    /// GitHub's checks of an App JWT; `Err` is GitHub's message.
    fn verify(&mut self, jwt: &str) -> Result<(), String> {
        let undecodable = || "A JSON web token could not be decoded".to_string();
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header, claims, signature] = parts.as_slice() else {
            return Err(undecodable());
        };
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| undecodable());
        let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| undecodable())?;
        if header["alg"] != "RS256" {
            return Err(undecodable());
        }
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.public_der,
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        key.verify(signed.as_bytes(), &decode(signature)?)
            .map_err(|_| {
                "A JSON web token could not be decoded (signature does not verify)".to_string()
            })?;
        let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|_| undecodable())?;
        let iss = match &claims["iss"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        if iss != self.app_id {
            return Err("Integration not found".into());
        }
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap_or(u64::MAX),
            claims["exp"].as_u64().unwrap_or(0),
        );
        let received = now();
        if iat > received + 1 {
            return Err(
                "'Issued at' claim ('iat') must be an Integer representing a time in the past."
                    .into(),
            );
        }
        if exp <= received {
            return Err("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.".into());
        }
        if exp.saturating_sub(iat) > 600 {
            return Err("'Expiration time' claim ('exp') is too far in the future.".into());
        }
        self.jwts.push(SeenJwt { iat, exp, received });
        Ok(())
    }
}
