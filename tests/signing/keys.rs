//! Test keys made by the real tools users have (`ssh-keygen`, `gpg` in a throw-away
//! GNUPGHOME), and `git verify-commit` run as a user would run it.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

/// Standard output and error of a command, for assertions and failure messages.
pub(super) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn checked(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", text(&out));
    out
}

/// `git --git-dir BARE args…`, its standard output.
pub(super) fn git(bare: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir").arg(bare).args(args);
    String::from_utf8_lossy(&checked(cmd, &format!("git {args:?}")).stdout).into_owned()
}

/// `git --git-dir BARE args…` reading `input`, its standard output.
pub(super) fn git_stdin(bare: &Path, args: &[&str], input: &str) -> String {
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new SSH key of `kind` (`ed25519`, `ecdsa`, `rsa`) under `dir`, encrypted with
/// `passphrase` unless it is empty. Returns the private key file (the public key is beside it).
pub(super) fn ssh_key(dir: &Path, kind: &str, passphrase: &str) -> PathBuf {
    let file = dir.join(format!("id_{kind}_{}", fastrand::u32(..)));
    let mut cmd = Command::new("ssh-keygen");
    // Two bcrypt rounds instead of 16: the same decryption code, fast in a debug build.
    cmd.args([
        "-q",
        "-a",
        "2",
        "-t",
        kind,
        "-N",
        passphrase,
        "-C",
        "phasegate test key",
        "-f",
    ])
    .arg(&file);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    checked(cmd, "ssh-keygen");
    file
}

/// The key's fingerprint as `ssh-keygen -l` prints it (`SHA256:…`).
pub(super) fn ssh_fingerprint(key: &Path) -> String {
    let mut cmd = Command::new("ssh-keygen");
    cmd.arg("-lf").arg(key.with_extension("pub"));
    let out = String::from_utf8_lossy(&checked(cmd, "ssh-keygen -l").stdout).into_owned();
    out.split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

/// An allowed signers file listing `keys` for `email`.
pub(super) fn allowed_signers(dir: &Path, email: &str, keys: &[&Path]) -> PathBuf {
    let file = dir.join(format!("allowed_signers_{}", fastrand::u32(..)));
    let lines: String = keys
        .iter()
        .map(|k| {
            let public = std::fs::read_to_string(k.with_extension("pub")).expect("public key");
            format!("{email} namespaces=\"git\" {}\n", public.trim())
        })
        .collect();
    std::fs::write(&file, lines).expect("allowed signers");
    file
}

/// `git verify-commit` of an SSH-signed commit, as a user configures it.
pub(super) fn verify_ssh(bare: &Path, id: &str, allowed: &Path) -> Output {
    Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(["-c", "gpg.format=ssh", "-c"])
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", "-v", id])
        .output()
        .expect("git verify-commit")
}

/// A throw-away gpg home (its agent is stopped on drop).
pub(super) struct Gpg {
    home: PathBuf,
}

impl Gpg {
    /// A fresh GNUPGHOME under `dir`.
    pub(super) fn new(dir: &Path) -> Gpg {
        let home = dir.join(format!("gnupg-{}", fastrand::u32(..)));
        std::fs::create_dir(&home).expect("gnupg home");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        // The fewest S2K iterations gpg-agent allows for the keys it exports: the same
        // decryption code, fast in a debug build.
        std::fs::write(home.join("gpg-agent.conf"), "s2k-count 65536\n").expect("agent conf");
        Gpg { home }
    }

    fn gpg(&self, passphrase: &str) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", &self.home).args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            passphrase,
        ]);
        cmd
    }

    /// A new ed25519 key for `user_id` (its primary key signs); returns its fingerprint.
    pub(super) fn generate(&self, user_id: &str, passphrase: &str) -> String {
        let mut cmd = self.gpg(passphrase);
        cmd.args(["--quick-gen-key", user_id, "ed25519", "sign,cert", "never"]);
        checked(cmd, "gpg --quick-gen-key");
        self.last_fingerprint(user_id)
    }

    /// Adds an ed25519 signing subkey to `primary`; returns the subkey's fingerprint.
    pub(super) fn add_signing_subkey(&self, primary: &str, passphrase: &str) -> String {
        let mut cmd = self.gpg(passphrase);
        cmd.args(["--quick-add-key", primary, "ed25519", "sign", "never"]);
        checked(cmd, "gpg --quick-add-key");
        self.last_fingerprint(primary)
    }

    /// The fingerprint gpg lists last for `key` (its newest subkey, or the primary key).
    fn last_fingerprint(&self, key: &str) -> String {
        let mut list = self.gpg("");
        list.args(["--with-colons", "--list-keys", key]);
        let out = String::from_utf8_lossy(&checked(list, "gpg --list-keys").stdout).into_owned();
        out.lines()
            .filter_map(|l| l.strip_prefix("fpr:"))
            .filter_map(|rest| rest.split(':').find(|f| !f.is_empty()))
            .next_back()
            .expect("a fingerprint")
            .to_string()
    }

    /// The armored secret key, as a user exports it for phasegate.
    pub(super) fn export_secret(&self, fpr: &str, passphrase: &str) -> String {
        let mut cmd = self.gpg(passphrase);
        cmd.args(["--armor", "--export-secret-keys", fpr]);
        String::from_utf8(checked(cmd, "gpg --export-secret-keys").stdout).expect("armored")
    }

    /// `git verify-commit --raw` of an OpenPGP-signed commit against this keyring.
    pub(super) fn verify(&self, bare: &Path, id: &str) -> Output {
        Command::new("git")
            .env("GNUPGHOME", &self.home)
            .arg("--git-dir")
            .arg(bare)
            .args(["verify-commit", "--raw", id])
            .output()
            .expect("git verify-commit")
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "all"])
            .status();
    }
}
