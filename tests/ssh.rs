//! Git over SSH against OpenSSH's real sshd (`support::ssh_server`): a key file or the SSH agent,
//! the server's host key checked against a known-hosts file, and what happens when the host key
//! is unknown or changed, or the server refuses the key.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::support::{
    ssh_server::{SshServer, keygen, public},
    *,
};
use phasegate::{
    config::{Config, GitConfig},
    sensor::{Failed, Firing},
};
use tonic::Code;

/// A GitOps repository served by sshd, and a known-hosts file that trusts that sshd.
struct Served {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bare: PathBuf,
    /// The commit that put 2.0 in test.
    synced: String,
    ssh: SshServer,
    known_hosts: PathBuf,
}

fn served() -> Served {
    let (dir, root) = tempdir();
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let ssh = SshServer::start();
    let known_hosts = root.join("known_hosts");
    std::fs::write(&known_hosts, ssh.known_hosts_line() + "\n").expect("known_hosts");
    Served {
        _dir: dir,
        root,
        bare,
        synced,
        ssh,
        known_hosts,
    }
}

impl Served {
    /// Fires the Sensor's sequence for `sha` at a server with `config`.
    async fn fire(&self, config: Config, sha: &str) -> Result<Firing, Failed> {
        let server = TestServer::start(config).await;
        let spec = petstore(&self.ssh.url(&self.bare), &[("test", "none")]);
        let fired = server
            .sensor()
            .await
            .fire(&spec, &sync_event(sha), FROM_TEST)
            .await;
        server.stop().await;
        fired
    }
}

fn config(key: &Path, known_hosts: Option<&Path>) -> Config {
    Config {
        git: GitConfig {
            ssh_key: Some(key.to_path_buf()),
            ssh_known_hosts: known_hosts.map(Path::to_path_buf),
            ..GitConfig::default()
        },
        ..test_config()
    }
}

#[tokio::test]
async fn promotes_over_ssh_with_a_key_file_and_a_known_hosts_file() {
    let at = served();
    let key = at.ssh.client_key();

    let first = at
        .fire(config(&key, Some(&at.known_hosts)), &at.synced)
        .await
        .unwrap_or_else(|f| panic!("{}\n{}", f.status.message(), at.ssh.log()));
    assert_eq!(first.response["outcome"], "promoted");
    assert_eq!(version_of(&at.bare, "petstore", "prod"), "2.0");
    let newer = bump(&at.bare, &["petstore"], "test", "3.0");
    let second = at
        .fire(config(&key, Some(&at.known_hosts)), &newer)
        .await
        .expect("promotes again");
    assert_eq!(second.response["outcome"], "promoted");
    assert_eq!(version_of(&at.bare, "petstore", "prod"), "3.0");
    assert!(
        at.ssh.log().contains("Accepted publickey"),
        "{}",
        at.ssh.log()
    );
}

#[tokio::test]
async fn an_unknown_or_changed_host_key_is_refused_before_anything_is_sent() {
    let at = served();
    let commits = commit_count(&at.bare);
    let impostor = keygen(&at.root, "impostor");
    let line = at.ssh.known_hosts_line();
    let port_pattern = line.split_whitespace().next().expect("hosts");
    let cases = [
        (
            format!("{port_pattern} {}\n", public(&impostor)),
            "does not match",
        ),
        (
            "other.example.com ssh-ed25519 AAAA\n".to_string(),
            "is not in the SSH known hosts file",
        ),
    ];
    for (text, expected) in cases {
        let known_hosts = at.root.join("untrusting_known_hosts");
        std::fs::write(&known_hosts, text).expect("known_hosts");

        let refused = at
            .fire(config(&at.ssh.client_key(), Some(&known_hosts)), &at.synced)
            .await
            .expect_err("an untrusted host");

        let message = refused.status.message();
        assert_eq!(refused.status.code(), Code::Unavailable, "{message}");
        assert!(message.contains(expected), "{message}");
        assert!(message.contains(port_pattern), "names the host: {message}");
        assert!(
            !at.ssh.log().contains("Accepted publickey"),
            "{}",
            at.ssh.log()
        );
    }
    assert_eq!(commit_count(&at.bare), commits);
    assert_eq!(version_of(&at.bare, "petstore", "prod"), "1.0");
}

#[tokio::test]
async fn without_a_known_hosts_file_an_unknown_host_says_how_to_trust_it() {
    let at = served();

    let refused = at
        .fire(config(&at.ssh.client_key(), None), &at.synced)
        .await
        .expect_err("libgit2 knows no such host");

    let message = refused.status.message();
    assert_eq!(refused.status.code(), Code::Unavailable, "{message}");
    assert!(message.contains("git.sshKnownHosts"), "{message}");
    assert_eq!(version_of(&at.bare, "petstore", "prod"), "1.0");
}

#[tokio::test]
async fn a_key_the_server_refuses_is_permission_denied() {
    let at = served();
    let stranger = keygen(&at.root, "stranger");

    let refused = at
        .fire(config(&stranger, Some(&at.known_hosts)), &at.synced)
        .await
        .expect_err("refused key");

    let message = refused.status.message();
    assert_eq!(refused.status.code(), Code::PermissionDenied, "{message}");
    assert_eq!(version_of(&at.bare, "petstore", "prod"), "1.0");
}

/// The agent is process-wide (`SSH_AUTH_SOCK`), so this runs the `phasegate promote` binary.
#[test]
fn the_ssh_agent_holds_the_key_when_no_key_file_is_set() {
    let Served {
        root,
        bare,
        synced,
        ssh,
        known_hosts,
        _dir: _guard,
    } = served();
    let socket = root.join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent (openssh-client) must be installed");
    let added = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        Command::new("ssh-add")
            .arg(ssh.client_key())
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(added, "ssh-add could not reach the agent");

    let promote = |agent_socket: &Path| {
        Command::new(env!("CARGO_BIN_EXE_phasegate"))
            .args([
                "promote",
                "--git-repo",
                &ssh.url(&bare),
                "--source-commit",
                &synced,
            ])
            .args([
                "--source-phase",
                "test",
                "--target-phase",
                "prod",
                "--test",
                "none",
            ])
            .args(["--path", &PATH.replace("{app}", "petstore")])
            .arg("--git-ssh-known-hosts")
            .arg(&known_hosts)
            .env("PHASEGATE_CACHE_DIR", root.join("cache"))
            .env("PHASEGATE_KUBERNETES_DISABLED", "1")
            .env("SSH_AUTH_SOCK", agent_socket)
            .output()
            .expect("run phasegate")
    };
    let without = promote(&root.join("no-agent.sock"));
    let with = promote(&socket);
    let _ = agent.kill();
    let _ = agent.wait();

    assert_eq!(without.status.code(), Some(2), "no agent, no key: an error");
    assert!(
        with.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&with.stderr),
        ssh.log()
    );
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");
}
