//! TLS as a Sensor with `secure: true` and a `certSecret` uses it: the client trusts the
//! certificate file as its root CA and overrides the server name. Certificates are made with
//! the openssl command line; grpcurl is the client. And git remotes over https, verified
//! against the system CA bundle or `git.caFile`.

use std::{path::Path, process::Command};

use crate::support::{git_server::GitServer, *};
use phasegate::config::{Config, TlsConfig};

const NAME: &str = "phasegate.argo-events.svc";

/// A self-signed server certificate for `dns` into `dir/cert.pem` and `dir/key.pem`.
fn certificate(dir: &Path, dns: &str) {
    let (subject, san) = (format!("/CN={dns}"), format!("subjectAltName=DNS:{dns}"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &subject,
            "-addext",
            &san,
            // A server certificate, not a CA (rustls refuses a CA as the end entity).
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "key.pem.new",
            "-out",
            "cert.pem.new",
        ],
    );
    // Replace both files by rename, as a Secret volume update does.
    std::fs::rename(dir.join("key.pem.new"), dir.join("key.pem")).expect("key");
    std::fs::rename(dir.join("cert.pem.new"), dir.join("cert.pem")).expect("cert");
}

fn grpcurl(args: &[&str]) -> (bool, String) {
    let out = Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl must be on PATH (the test command installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_tls_to_a_client_trusting_the_certificate_and_reloads_it() {
    let (_d, dir) = tempdir();
    certificate(&dir, NAME);
    let copy = |name: &str| {
        let to = dir.join(format!("trusted-{name}"));
        std::fs::copy(dir.join("cert.pem"), &to).expect("copy");
        to.display().to_string()
    };
    let first_ca = copy("1.pem");
    let tls = TlsConfig {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
    };
    let server = TestServer::start(Config {
        tls: Some(tls),
        ..test_config()
    })
    .await;
    let addr = server.addr.to_string();

    let (ok, out) = tokio::task::block_in_place(|| {
        grpcurl(&["-cacert", &first_ca, "-servername", NAME, &addr, "list"])
    });
    assert!(ok, "{out}");
    assert!(out.contains("triggers.Trigger"), "{out}");
    let (ok, out) = tokio::task::block_in_place(|| {
        grpcurl(&["-connect-timeout", "3", "-plaintext", &addr, "list"])
    });
    assert!(!ok, "a plaintext client must fail: {out}");
    let (ok, out) = tokio::task::block_in_place(|| {
        grpcurl(&[
            "-cacert",
            &first_ca,
            "-servername",
            "other.example.com",
            &addr,
            "list",
        ])
    });
    assert!(!ok, "a wrong server name must fail: {out}");

    // cert-manager renews the certificate: the next handshake uses the new one, no restart.
    std::thread::sleep(std::time::Duration::from_millis(20));
    certificate(&dir, NAME);
    let second_ca = copy("2.pem");
    let (ok, out) = tokio::task::block_in_place(|| {
        grpcurl(&["-cacert", &second_ca, "-servername", NAME, &addr, "list"])
    });
    assert!(ok, "the renewed certificate is served: {out}");
    let (ok, _) = tokio::task::block_in_place(|| {
        grpcurl(&["-cacert", &first_ca, "-servername", NAME, &addr, "list"])
    });
    assert!(!ok, "the old certificate is no longer served");
    server.stop().await;
}

#[tokio::test]
async fn a_missing_certificate_stops_start_up_with_a_clear_error() {
    let (_d, dir) = tempdir();
    let tls = TlsConfig {
        cert_file: dir.join("nope.pem"),
        key_file: dir.join("nope.key"),
    };
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        tls: Some(tls),
        cache_dir: dir.join("cache"),
        ..test_config()
    };
    let err = phasegate::app::serve(config, std::future::pending())
        .await
        .expect_err("no certificate");
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_reaches_a_tls_server_by_https_url_verifying_its_certificate() {
    let (_d, dir) = tempdir();
    certificate(&dir, "localhost");
    let server = TestServer::start(Config {
        tls: Some(TlsConfig {
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
        }),
        ..test_config()
    })
    .await;
    let url = format!("https://localhost:{}", server.addr.port());
    let runs = move |trusted: Option<std::path::PathBuf>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_phasegate"));
            command.args(["runs", "--server", &url]);
            match trusted {
                Some(ca) => command.env("SSL_CERT_FILE", ca),
                None => command.env("SSL_CERT_FILE", "/nonexistent/no-extra-roots.pem"),
            };
            command.output().expect("run phasegate")
        })
    };

    let trusted = runs(Some(dir.join("cert.pem"))).await.expect("runs");
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(String::from_utf8_lossy(&trusted.stdout).contains("(no runs)"));

    let untrusted = runs(None).await.expect("runs");
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert_eq!(untrusted.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("certificate"), "says why: {stderr}");
}

/// `promote` over an https git remote: the system CA bundle (`SSL_CERT_FILE`), which libgit2
/// loads only when the first https remote is met, and `git.caFile` each make the remote
/// trusted; a remote signed by neither is refused before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn promote_verifies_an_https_remote_against_the_system_bundle_or_git_ca_file() {
    let (_d, root) = tempdir();
    internal_ca(&root);
    let stranger = root.join("stranger");
    std::fs::create_dir(&stranger).expect("dir");
    internal_ca(&stranger);
    let bare = root.join("gitops.git");
    let synced = gitops_repo(&bare, &["petstore"]);
    let git = GitServer::start_https(&root, "bot", "SENTINEL-https-71d2", &root).await;
    let url = git.url("gitops");
    let path = PATH.replace("{app}", "petstore");
    // Each run its own cache: a repeated promotion is otherwise answered from the history.
    let promote = |cache: &str, bundle: &Path, ca_file: Option<&Path>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_phasegate"));
        command
            .args([
                "promote",
                "--git-repo",
                &url,
                "--path",
                &path,
                "--test",
                "none",
            ])
            .args(["--source-phase", "test", "--target-phase", "prod"])
            .args(["--source-commit", &synced])
            .env("PHASEGATE_CACHE_DIR", root.join(cache))
            .env("SSL_CERT_FILE", bundle)
            .env_remove("SSL_CERT_DIR")
            .env("GIT_USER", "bot")
            .env("GIT_PASSWORD", "SENTINEL-https-71d2");
        if let Some(file) = ca_file {
            command.env("PHASEGATE_GIT_CA_FILE", file);
        }
        async move {
            let out = command.output().await.expect("run phasegate");
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.code(), text)
        }
    };

    let (code, text) = promote("untrusted", &stranger.join("ca.pem"), None).await;
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(!text.contains("SENTINEL"), "{text}");
    assert!(
        git.authorizations().is_empty(),
        "a request reached an untrusted remote"
    );

    let (code, text) = promote(
        "ca-file",
        &stranger.join("ca.pem"),
        Some(&root.join("ca.pem")),
    )
    .await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(r#""outcome":"promoted""#), "{text}");
    assert_eq!(version_of(&bare, "petstore", "prod"), "2.0");

    let (code, text) = promote("bundle", &root.join("ca.pem"), None).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(r#""outcome":"already-promoted""#), "{text}");
}
