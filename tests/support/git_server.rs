//! A real git smart-HTTP server for the tests: git's own `git http-backend` run as CGI behind
//! a small host on 127.0.0.1 that requires HTTP basic authentication.
//!
//! It speaks https too ([`GitServer::start_https`]), with a certificate of the tests' private
//! CA. Does not model: the dumb HTTP protocol, or per-repository permissions (one user may read
//! and write everything under the root).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{io::AsyncWriteExt, net::TcpListener, process::Command, task::JoinHandle};

type Hook = Box<dyn FnOnce() + Send>;
/// Decides on an `Authorization` header the fixed user and password do not match.
type Authorizer = Arc<dyn Fn(&str) -> bool + Send + Sync>;

struct Shared {
    root: PathBuf,
    authorization: String,
    /// Other credentials accepted (a forge's short-lived tokens).
    also: Mutex<Option<Authorizer>>,
    user: String,
    pushes: AtomicUsize,
    before_push: Mutex<Option<Hook>>,
    /// Every request's `Authorization` header ("" when it had none): what a hostile remote
    /// would have collected.
    seen: Mutex<Vec<String>>,
}

/// A git smart-HTTP server (git http-backend as CGI) on 127.0.0.1 with basic auth. Serves bare
/// repositories under `root` at `http://127.0.0.1:PORT/<name>.git`.
pub(crate) struct GitServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    /// Routes served beside git on the same host (a forge's API, as forges serve both).
    api: Option<Router>,
    /// Serves https with this instead of http.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl GitServer {
    /// Starts serving `root`; every request must carry basic auth `user`/`password`.
    pub(crate) async fn start(root: &Path, user: &str, password: &str) -> GitServer {
        GitServer::start_with_api(root, user, password, None).await
    }

    /// Starts serving `root`, and `api`'s routes beside it (they do their own auth).
    pub(crate) async fn start_with_api(
        root: &Path,
        user: &str,
        password: &str,
        api: Option<Router>,
    ) -> GitServer {
        GitServer::open(root, user, password, api, None, "127.0.0.1:0").await
    }

    /// [`GitServer::start`] on every address of this machine, so that a container reaches it
    /// through its gateway ([`GitServer::url_as`] with `host.containers.internal`).
    pub(crate) async fn start_for_containers(root: &Path, user: &str, password: &str) -> GitServer {
        GitServer::open(root, user, password, None, None, "0.0.0.0:0").await
    }

    /// [`GitServer::start_with_api`] over https as `localhost`, with `app.pem` and `app.key`
    /// from `ca_dir` (see `support::internal_ca`).
    pub(crate) async fn start_https_with_api(
        root: &Path,
        user: &str,
        password: &str,
        api: Router,
        ca_dir: &Path,
    ) -> GitServer {
        let tls = Some(tls_acceptor(ca_dir));
        GitServer::open(root, user, password, Some(api), tls, "127.0.0.1:0").await
    }

    async fn open(
        root: &Path,
        user: &str,
        password: &str,
        api: Option<Router>,
        tls: Option<tokio_rustls::TlsAcceptor>,
        bind: &str,
    ) -> GitServer {
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            authorization: format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
            also: Mutex::new(None),
            user: user.to_string(),
            pushes: AtomicUsize::new(0),
            before_push: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind(bind).await.expect("bind git server");
        let addr = listener.local_addr().expect("addr");
        let mut server = GitServer {
            addr,
            shared,
            task: None,
            api,
            tls,
        };
        server.serve(listener);
        server
    }

    /// Serves `root` over https as `localhost`, with `app.pem` and `app.key` from `ca_dir`
    /// (see `support::internal_ca`).
    pub(crate) async fn start_https(
        root: &Path,
        user: &str,
        password: &str,
        ca_dir: &Path,
    ) -> GitServer {
        GitServer::open(
            root,
            user,
            password,
            None,
            Some(tls_acceptor(ca_dir)),
            "127.0.0.1:0",
        )
        .await
    }

    /// `http://127.0.0.1:PORT` (`https://localhost:PORT` over https).
    pub(crate) fn base_url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    /// The port it serves on.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Clone URL of the bare repository `root/<name>.git` (no credentials in it).
    pub(crate) fn url(&self, name: &str) -> String {
        format!("{}/{name}.git", self.base_url())
    }

    /// Stops serving: later requests get "connection refused".
    pub(crate) async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Serves again on the same port.
    pub(crate) async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind git server");
        self.serve(listener);
    }

    /// Number of pushes (receive-pack POSTs) served so far.
    pub(crate) fn pushes(&self) -> usize {
        self.shared.pushes.load(Ordering::SeqCst)
    }

    /// Also accepts the `Authorization` headers `accept` approves (a forge's minted tokens).
    pub(crate) fn also_accept(&self, accept: impl Fn(&str) -> bool + Send + Sync + 'static) {
        *self.shared.also.lock().expect("authorizer") = Some(Arc::new(accept));
    }

    /// The `Authorization` header of every request served so far ("" for none).
    pub(crate) fn authorizations(&self) -> Vec<String> {
        self.shared.seen.lock().expect("seen").clone()
    }

    /// Clone URL with `host` (e.g. `localhost`) instead of 127.0.0.1: another host name.
    pub(crate) fn url_as(&self, host: &str, name: &str) -> String {
        format!("http://{host}:{}/{name}.git", self.addr.port())
    }

    /// Runs `f` once, just before the next push is served (to race a client's fetch and push).
    pub(crate) fn before_next_push(&self, f: impl FnOnce() + Send + 'static) {
        *self.shared.before_push.lock().expect("hook") = Some(Box::new(f));
    }

    /// Accepts connections itself (rather than `axum::serve`) so that stopping also drops the
    /// connections in flight, as a crashed or unplugged server would.
    fn serve(&mut self, listener: TcpListener) {
        let git = Router::new().fallback(cgi).with_state(self.shared.clone());
        let router = match &self.api {
            Some(api) => api.clone().merge(git),
            None => git,
        };
        let tls = self.tls.clone();
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                // As real git servers do: no Nagle delay on small answers.
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let tls = tls.clone();
                connections.spawn(async move {
                    let http = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        // A client that does not trust the certificate ends the handshake.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        }));
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn cgi(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let given = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    shared.seen.lock().expect("seen").push(given.to_string());
    let also = shared.also.lock().expect("authorizer").clone();
    let authorized = given == shared.authorization || also.is_some_and(|accept| accept(given));
    if !authorized {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, r#"Basic realm="git""#)
            .body(Body::empty())
            .expect("response");
    }
    let body: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    if parts.method == "POST" && path.ends_with("/git-receive-pack") {
        let hook = shared.before_push.lock().expect("hook").take();
        if let Some(hook) = hook {
            tokio::task::spawn_blocking(hook).await.expect("push hook");
        }
        shared.pushes.fetch_add(1, Ordering::SeqCst);
    }
    let header = |name: &str| header_text(&parts.headers, name);
    let exec_path = std::process::Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("git");
    let backend =
        PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim()).join("git-http-backend");
    let mut child = Command::new(backend)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_COUNT", "3")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GIT_CONFIG_KEY_1", "uploadpack.allowAnySHA1InWant")
        .env("GIT_CONFIG_VALUE_1", "true")
        .env("GIT_CONFIG_KEY_2", "uploadpack.allowReachableSHA1InWant")
        .env("GIT_CONFIG_VALUE_2", "true")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", &shared.user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start git http-backend");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child
        .wait_with_output()
        .await
        .expect("git http-backend output");
    let _ = writer.await;
    cgi_response(&output.stdout)
}

fn header_text(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Turns CGI output (headers, blank line, body) into an HTTP response.
fn cgi_response(out: &[u8]) -> Response {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let split = split.or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, gap)) = split else {
        return Response::builder()
            .status(502)
            .body(Body::empty())
            .expect("response");
    };
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(&out[..at]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            response = response.status(code);
        } else if let Ok(v) = HeaderValue::from_str(value) {
            response = response.header(name, v);
        }
    }
    response
        .body(Body::from(out[at + gap..].to_vec()))
        .expect("response")
}

/// A TLS acceptor serving `app.pem` and `app.key` of `support::internal_ca`.
pub(crate) fn tls_acceptor(dir: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("app.pem"))
        .expect("app.pem")
        .collect::<Result<_, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(dir.join("app.key")).expect("app.key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server certificate");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
