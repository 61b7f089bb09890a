//! The HTTP client under the smart HTTP transport: one per process and scheme, kept for its
//! connections (a fetch and the push after it share one), with libgit2's bounds and trust.

use std::{
    path::Path,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use git2::{ErrorClass, ErrorCode};
use reqwest::blocking::Client;
use rustls_pki_types::{CertificateDer, pem::PemObject};

use super::super::{CONNECT_TIMEOUT_MS, IO_TIMEOUT_MS};

/// The certificates of `git.caFile`, read at start-up, trusted beside the system's CA bundle
/// for every `https` remote. (Added to, as libgit2's store was: the tests start many servers
/// in one process, each with its own.)
static EXTRA_ROOTS: Mutex<Vec<CertificateDer<'static>>> = Mutex::new(Vec::new());

/// Reads `git.caFile`; a file that cannot be read or holds no certificate stops the start.
pub(in crate::git) fn trust(ca_file: Option<&Path>) -> Result<(), String> {
    let Some(file) = ca_file else {
        return Ok(());
    };
    let bad = |why: String| format!("CA bundle {}: {why}", file.display());
    let roots = CertificateDer::pem_file_iter(file)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if roots.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let mut extra = EXTRA_ROOTS.lock().unwrap_or_else(|p| p.into_inner());
    for root in roots {
        if !extra.contains(&root) {
            extra.push(root);
        }
    }
    Ok(())
}

/// The client for `scheme`. The `https` one is built at the first `https` remote: it reads the
/// system's CA bundle then, so a process that never meets one never pays for decoding it.
pub(super) fn for_scheme(scheme: &str) -> Result<Client, git2::Error> {
    static PLAIN: OnceLock<Result<Client, String>> = OnceLock::new();
    /// The https client and how many of [`EXTRA_ROOTS`] it trusts.
    static TLS: Mutex<Option<(usize, Client)>> = Mutex::new(None);
    let fail = |why: &str| git2::Error::new(ErrorCode::GenericError, ErrorClass::Ssl, why);
    if scheme != "https" {
        return PLAIN
            .get_or_init(|| build(None))
            .clone()
            .map_err(|why| fail(&why));
    }
    // Every request asks: the roots are copied only when the client must be built again.
    let extra = EXTRA_ROOTS.lock().unwrap_or_else(|p| p.into_inner());
    let mut tls = TLS.lock().unwrap_or_else(|p| p.into_inner());
    match &*tls {
        Some((trusted, client)) if *trusted == extra.len() => Ok(client.clone()),
        _ => {
            let client = tls_config(extra.clone())
                .and_then(|config| build(Some(config)))
                .map_err(|why| fail(&why))?;
            *tls = Some((extra.len(), client.clone()));
            Ok(client)
        }
    }
}

/// Keep-alive probes on an idle connection, as libgit2's socket set them: a remote that
/// vanishes mid-fetch (a node gone, a NAT entry dropped) is noticed within two minutes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;

fn millis(ms: i32) -> Duration {
    Duration::from_millis(ms.unsigned_abs().into())
}

/// The user agent libgit2 sends: git hosts tell git clients by the `git/` product.
fn user_agent() -> String {
    let (major, minor, rev) = git2::Version::get().libgit2_version();
    format!("git/2.0 (libgit2 {major}.{minor}.{rev})")
}

fn build(tls: Option<rustls::ClientConfig>) -> Result<Client, String> {
    // `TCP_NODELAY`: a request's body must not wait for the server to acknowledge its headers
    // (Nagle's algorithm against a delayed ACK: up to 40 ms per POST on Linux).
    let builder = reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(millis(CONNECT_TIMEOUT_MS))
        .tcp_keepalive(KEEPALIVE_IDLE)
        .tcp_keepalive_interval(KEEPALIVE_INTERVAL)
        .tcp_keepalive_retries(KEEPALIVE_PROBES)
        // libgit2 uses no proxy unless told to (phasegate never tells it), nor HTTP/2.
        .no_proxy()
        .http1_only()
        // Redirects are followed by the transport, which checks each one (`redirect`).
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .user_agent(user_agent());
    // Sent data left unacknowledged this long ends the connection: the bound on a write.
    #[cfg(target_os = "linux")]
    let builder = builder.tcp_user_timeout(millis(IO_TIMEOUT_MS));
    let builder = match tls {
        Some(config) => builder.use_preconfigured_tls(config),
        None => builder,
    };
    reqwest::blocking::ClientBuilder::from(builder)
        // The blocking client bounds the wait for an answer's head and then each read of its
        // body, not the whole transfer: a large fetch may take longer, a stalled one may not.
        .timeout(millis(IO_TIMEOUT_MS))
        .build()
        .map_err(|e| format!("cannot build the git HTTP client: {}", super::chain(&e)))
}

/// TLS verified against the system's CA bundle (`SSL_CERT_FILE` and `SSL_CERT_DIR`, else the
/// usual places, as OpenSSL finds them) plus `extra` (`git.caFile`). Verification is never
/// turned off.
fn tls_config(extra: Vec<CertificateDer<'static>>) -> Result<rustls::ClientConfig, String> {
    static SYSTEM: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    let system = SYSTEM.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "part of the system CA bundle could not be read");
        }
        found.certs
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system.iter().cloned());
    roots.add_parsable_certificates(extra);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::TcpListener,
        os::fd::BorrowedFd,
    };

    use super::*;

    /// The inode of this process's TCP socket connected to `port` on 127.0.0.1, from
    /// `/proc/net/tcp` (`sl local rem st … inode`, ports in hex).
    fn socket_to(port: u16) -> Option<String> {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        let remote = format!("0100007F:{port:04X}");
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // 01: established.
            (fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"01"))
                .then(|| fields.get(9).map(|inode| inode.to_string()))
                .flatten()
        })
    }

    /// Whether the descriptor of this process holding socket `inode` has `TCP_NODELAY` set.
    fn nodelay_of(inode: &str) -> bool {
        let wanted = format!("socket:[{inode}]");
        for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
            let entry = entry.expect("fd");
            if std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy() == wanted) {
                let fd: i32 = entry.file_name().to_string_lossy().parse().expect("fd");
                // SAFETY: the descriptor is open in this process (the client keeps its idle
                // connection), and it is only borrowed for the duration of this call.
                #[allow(unsafe_code)]
                let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
                let own = borrowed.try_clone_to_owned().expect("dup");
                return std::net::TcpStream::from(own)
                    .nodelay()
                    .expect("getsockopt");
            }
        }
        panic!("no descriptor holds socket {inode}");
    }

    #[test]
    fn sends_its_requests_on_connections_without_nagles_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).expect("read") == 1 {
                head.push(byte[0]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .expect("answer");
            // Keep the connection open while the client's side is looked at.
            let _ = finished.recv();
        });
        let client = for_scheme("http").expect("client");
        let answer = client
            .get(format!("http://127.0.0.1:{port}/info/refs"))
            .send()
            .and_then(|r| r.text())
            .expect("answer");
        assert_eq!(answer, "ok");

        // The connection stays open in the client, ready for the next request.
        let inode = socket_to(port).expect("the client keeps its connection");
        assert!(
            nodelay_of(&inode),
            "TCP_NODELAY is set on the client's connection"
        );
        let _ = done.send(());
        server.join().expect("server");
    }
}
