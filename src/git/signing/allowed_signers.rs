//! The allowed signers file of `ssh-keygen -Y verify` and git's `gpg.ssh.allowedSignersFile`:
//! one line per key, `principals [options] keytype base64 [comment]`, principals separated by
//! commas. phasegate reads it to check that an SSH signing key belongs to the committer email.

use ssh_key::public::{KeyData, PublicKey};

/// True when a line of `text` lists `key` for `email` (principals compared without case;
/// patterns with `*` or `?` are not expanded: name the email itself).
pub(super) fn lists(text: &str, email: &str, key: &KeyData) -> bool {
    text.lines().any(|line| line_lists(line, email, key))
}

fn line_lists(line: &str, email: &str, key: &KeyData) -> bool {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return false;
    }
    let mut fields = line.split_whitespace();
    let Some(principals) = fields.next() else {
        return false;
    };
    let named = principals
        .trim_matches('"')
        .split(',')
        .any(|p| p.eq_ignore_ascii_case(email));
    if !named {
        return false;
    }
    let rest: Vec<&str> = fields.collect();
    // The options field is optional; the key starts at its type.
    let start = usize::from(!rest.first().is_some_and(|t| is_key_type(t)));
    let Some(public) = rest.get(start..start + 2).map(|f| f.join(" ")) else {
        return false;
    };
    PublicKey::from_openssh(&public).is_ok_and(|k| k.key_data() == key)
}

fn is_key_type(token: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-", "rsa-"]
        .iter()
        .any(|prefix| token.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK9zaogPjaNczeKqEBiTAdAI2ipQ8iWJDxPg38UgbU7H";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7k+8LGL0O2hbMW/l/Qm8gyF0OVm4++dPUChVRTrfUM";

    fn data(openssh: &str) -> KeyData {
        PublicKey::from_openssh(openssh)
            .expect("a public key")
            .key_data()
            .clone()
    }

    #[test]
    fn finds_a_key_listed_for_the_email_with_or_without_options() {
        let key = data(KEY);
        assert!(lists(
            &format!("bot@example.com {KEY}\n"),
            "bot@example.com",
            &key
        ));
        assert!(lists(
            &format!("# bots\nops@x.org,Bot@Example.com namespaces=\"git\" {KEY} bot key\n"),
            "bot@example.com",
            &key
        ));
    }

    #[test]
    fn refuses_another_email_or_another_key() {
        let key = data(KEY);
        assert!(!lists(
            &format!("ops@example.com {KEY}\n"),
            "bot@example.com",
            &key
        ));
        assert!(!lists(
            &format!("bot@example.com {OTHER}\n"),
            "bot@example.com",
            &key
        ));
        assert!(!lists("bot@example.com\n\n", "bot@example.com", &key));
    }
}
