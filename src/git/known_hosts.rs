//! Trust in SSH host keys from a known-hosts file in OpenSSH's format, as `ssh-keyscan` prints it
//! and Argo CD's `argocd-ssh-known-hosts-cm` holds it: host patterns (`*` and `?` wildcards,
//! `!` negations, `[host]:port`), hashed names (`|1|salt|hash`), and `@revoked` lines.
//! `@cert-authority` lines are skipped: libssh2 does not do host certificates.
//!
//! Hand-parsed on purpose: a line is `[marker] patterns keytype base64-key [comment]`, and a
//! match only compares the key blob. The `ssh-key` crate parses the format too, but needs three
//! elliptic-curve crates just to read the ecdsa lines every `ssh-keyscan` prints.

use std::path::Path;

use base64::{Engine, engine::general_purpose::STANDARD};

/// One key line of the file.
struct Entry {
    revoked: bool,
    hosts: Hosts,
    key: Vec<u8>,
}

enum Hosts {
    Patterns(Vec<String>),
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// Checks the key `key` (the SSH wire blob the server showed) of `host:port` against `file`,
/// read afresh each time so a remounted ConfigMap takes effect. The error says what to do.
pub(super) fn check(file: &Path, host: &str, port: u16, key: &[u8]) -> Result<(), String> {
    let entries = load(file)?;
    // OpenSSH's own spelling of a host on another port than 22.
    let name = if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    };
    let fingerprint = fingerprint(key);
    let ours: Vec<&Entry> = entries.iter().filter(|e| e.hosts.matches(&name)).collect();
    if ours.iter().any(|e| e.revoked && e.key == key) {
        return Err(format!(
            "the SSH host key of {name} ({fingerprint}) is revoked in {}",
            file.display()
        ));
    }
    if ours.iter().any(|e| !e.revoked && e.key == key) {
        return Ok(());
    }
    if ours.iter().any(|e| !e.revoked) {
        return Err(format!(
            "the SSH host key of {name} ({fingerprint}) does not match the one in {}: the host \
             key changed, or someone is in between",
            file.display()
        ));
    }
    Err(format!(
        "{name} is not in the SSH known hosts file {}; its key is {fingerprint} (add the line \
         `ssh-keyscan -p {port} {host}` prints, after checking it)",
        file.display()
    ))
}

/// Reads and parses `file` (at start-up, so a damaged file is found before the first run).
pub fn validate(file: &Path) -> Result<(), String> {
    load(file).map(drop)
}

/// Reads and parses `file`; an error names the file and the line.
fn load(file: &Path) -> Result<Vec<Entry>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read SSH known hosts file {}: {e}", file.display()))?;
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let entry = parse(line).map_err(|why| {
            format!(
                "SSH known hosts file {} line {}: {why}",
                file.display(),
                n + 1
            )
        })?;
        entries.extend(entry);
    }
    Ok(entries)
}

/// One non-empty line; `None` for a line that is valid but not used (`@cert-authority`).
fn parse(line: &str) -> Result<Option<Entry>, String> {
    let mut fields = line.split_whitespace().peekable();
    let marker = fields.next_if(|f| f.starts_with('@'));
    let revoked = match marker {
        None => false,
        Some("@revoked") => true,
        Some("@cert-authority") => return Ok(None),
        Some(other) => return Err(format!("unknown marker {other}")),
    };
    let (Some(hosts), Some(_keytype), Some(key)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("expected `hosts keytype key`".into());
    };
    let key = STANDARD
        .decode(key)
        .map_err(|e| format!("the key is not base64: {e}"))?;
    let hosts = match hosts.strip_prefix("|1|") {
        Some(hashed) => {
            let (salt, hash) = hashed
                .split_once('|')
                .ok_or("a hashed name is |1|salt|hash")?;
            let decode = |s| STANDARD.decode(s).map_err(|e| format!("hashed name: {e}"));
            Hosts::Hashed {
                salt: decode(salt)?,
                hash: decode(hash)?,
            }
        }
        None => Hosts::Patterns(hosts.split(',').map(str::to_ascii_lowercase).collect()),
    };
    Ok(Some(Entry {
        revoked,
        hosts,
        key,
    }))
}

impl Hosts {
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Patterns(patterns) => {
                let mut hit = false;
                for p in patterns {
                    match p.strip_prefix('!') {
                        Some(negated) if wildcard(negated.as_bytes(), name.as_bytes()) => {
                            return false;
                        }
                        Some(_) => {}
                        None => hit |= wildcard(p.as_bytes(), name.as_bytes()),
                    }
                }
                hit
            }
            Hosts::Hashed { salt, hash } => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
                ring::hmac::verify(&key, name.as_bytes(), hash).is_ok()
            }
        }
    }
}

/// OpenSSH's host pattern match: `*` any run of characters, `?` any one.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            wildcard(rest, name) || (!name.is_empty() && wildcard(pattern, &name[1..]))
        }
        (Some((b'?', p)), Some((_, n))) => wildcard(p, n),
        (Some((a, p)), Some((b, n))) if a == b => wildcard(p, n),
        _ => false,
    }
}

/// `SHA256:…`, as `ssh-keygen -l` shows a key.
pub(super) fn fingerprint(key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.as_ref());
    format!("SHA256:{b64}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"\0\0\0\x0bssh-ed25519\0\0\0\x20the server's thirty-two byte key";
    const OTHER: &[u8] = b"\0\0\0\x0bssh-ed25519\0\0\0\x20another thirty-two byte host key";

    fn check_text(text: &str, host: &str, port: u16, key: &[u8]) -> Result<(), String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, text).expect("write");
        check(&file, host, port, key)
    }

    fn line(hosts: &str, key: &[u8]) -> String {
        format!("{hosts} ssh-ed25519 {} a comment\n", STANDARD.encode(key))
    }

    #[test]
    fn plain_ported_wildcard_and_negated_patterns() {
        let text = format!(
            "# Argo CD's known hosts\n\n{}{}{}",
            line("github.com,140.82.112.3", KEY),
            line("[git.internal]:2222", KEY),
            line("*.example.com,!evil.example.com", KEY),
        );
        assert_eq!(check_text(&text, "GitHub.com", 22, KEY), Ok(()));
        assert_eq!(check_text(&text, "git.internal", 2222, KEY), Ok(()));
        let err = check_text(&text, "git.internal", 22, KEY).expect_err("port 22 is not 2222");
        assert!(
            err.contains("git.internal is not in the SSH known hosts file"),
            "{err}"
        );
        assert!(err.contains("ssh-keyscan -p 22 git.internal"), "{err}");
        assert_eq!(check_text(&text, "git.example.com", 22, KEY), Ok(()));
        assert!(check_text(&text, "evil.example.com", 22, KEY).is_err());
    }

    #[test]
    fn a_changed_key_is_refused_naming_the_fingerprint() {
        let err =
            check_text(&line("github.com", KEY), "github.com", 22, OTHER).expect_err("another key");
        assert!(err.contains("does not match"), "{err}");
        assert!(err.contains(&fingerprint(OTHER)), "{err}");
    }

    #[test]
    fn hashed_names_and_revoked_keys() {
        let salt = b"0123456789abcdefghij";
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
        let hash = ring::hmac::sign(&key, b"[git.internal]:2222");
        let hashed = format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(hash.as_ref())
        );
        assert_eq!(
            check_text(&line(&hashed, KEY), "git.internal", 2222, KEY),
            Ok(())
        );
        assert!(check_text(&line(&hashed, KEY), "other.internal", 2222, KEY).is_err());
        let revoked = format!(
            "@revoked {}{}",
            line("github.com", KEY),
            line("github.com", KEY)
        );
        let err = check_text(&revoked, "github.com", 22, KEY).expect_err("revoked");
        assert!(err.contains("revoked"), "{err}");
    }

    #[test]
    fn a_damaged_file_names_the_line() {
        let text = format!("{}github.com ssh-ed25519 not-base64!\n", line("a", KEY));
        let err = check_text(&text, "github.com", 22, KEY).expect_err("bad line");
        assert!(err.contains("line 2"), "{err}");
        let err = check_text("github.com ssh-ed25519\n", "github.com", 22, KEY).expect_err("short");
        assert!(err.contains("line 1: expected"), "{err}");
    }
}
