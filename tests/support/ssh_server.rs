//! A real SSH git server for the tests: OpenSSH's `sshd` on 127.0.0.1 (a free port) with a
//! generated host key, accepting one generated client key for the user running the tests.
//! Repositories are reached by absolute path, and git runs `git-upload-pack` and
//! `git-receive-pack` through the user's shell, as on any plain SSH git host.
//!
//! Does not model: hosts' shared `git@` user with a forced command, password or
//! keyboard-interactive authentication, host certificates. Needs `/usr/sbin/sshd` and
//! `ssh-keygen` (the test command installs openssh-server); without them it fails loudly.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd; stopped when dropped.
pub(crate) struct SshServer {
    child: Child,
    port: u16,
    user: String,
    dir: tempfile::TempDir,
}

/// Generates an ed25519 key pair `dir/name` (+ `.pub`) without a passphrase.
pub(crate) fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen (openssh-client) must be installed");
    assert!(status.success(), "ssh-keygen failed");
    key
}

/// The public half of `key`, as one OpenSSH line.
pub(crate) fn public(key: &Path) -> String {
    let mut pub_file = key.as_os_str().to_owned();
    pub_file.push(".pub");
    std::fs::read_to_string(&pub_file)
        .expect("public key")
        .trim()
        .to_string()
}

impl SshServer {
    /// Starts sshd, and waits until it accepts connections.
    pub(crate) fn start() -> SshServer {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} not found: the test command installs openssh-server"
        );
        // sshd's privilege separation directory (created by the package's service scripts).
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().expect("tempdir");
        let host_key = keygen(dir.path(), "host_ed25519");
        let client_key = keygen(dir.path(), "client_ed25519");
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, public(&client_key) + "\n").expect("authorized_keys");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 StrictModes no\nUsePAM no\nPidFile none\nLogLevel VERBOSE\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .expect("sshd_config");
        let log = std::fs::File::create(dir.path().join("sshd.log")).expect("log");
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sshd exited ({status}):\n{log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let user = Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .expect("id -un");
        SshServer {
            child,
            port,
            user,
            dir,
        }
    }

    /// `ssh://USER@127.0.0.1:PORT/ABSOLUTE/PATH` of a bare repository.
    pub(crate) fn url(&self, bare: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            bare.display()
        )
    }

    /// The client key the server accepts.
    pub(crate) fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// The known-hosts line of this server, as `ssh-keyscan -p PORT 127.0.0.1` prints it.
    pub(crate) fn known_hosts_line(&self) -> String {
        let key = public(&self.dir.path().join("host_ed25519"));
        let mut fields = key.split_whitespace();
        let (kind, blob) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        format!("[127.0.0.1]:{} {kind} {blob}", self.port)
    }

    /// What sshd logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
