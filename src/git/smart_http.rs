//! git's smart HTTP protocol for `http://` and `https://` remotes, over phasegate's own HTTP
//! client, registered with git2's safe smart-subtransport API in place of libgit2's.
//!
//! libgit2 writes an HTTP request's headers and its body with separate writes and leaves
//! Nagle's algorithm on, so the body of every POST (each fetch negotiation round, each push)
//! waited for the server to acknowledge the headers: on Linux a delayed ACK, up to 40 ms per
//! request. This transport sends each request with a client whose connections have
//! `TCP_NODELAY` set ([`mod@client`]), and keeps them between requests: a fetch and the push after
//! it share one connection. libgit2 still speaks the protocol (negotiation, packs, progress,
//! the push report); this module only carries its requests. ssh remotes keep libgit2's own
//! transport, untouched.
//!
//! It does what libgit2's HTTP transport did for phasegate: the credentials of the operation
//! go with each of its requests ([`Scope`]); a redirect of the first request is followed only
//! on the same host, as libgit2 follows one (another port or `http` to `https` included), never
//! to another host ([`redirect`]); HTTP statuses are reported as libgit2 reports them, so
//! `cache::classify` reads them the same.

mod client;
mod exchange;
mod redirect;
mod session;

use std::sync::{Mutex, OnceLock};

use git2::{
    Error, ErrorClass, ErrorCode,
    transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport},
};
use reqwest::{
    StatusCode,
    blocking::{RequestBuilder, Response},
    header,
};
use url::Url;

use exchange::Exchange;
pub(super) use session::Scope;
use session::{authorized, has_credentials, report};

pub(super) use client::trust;

/// Makes libgit2 use this transport for `http://` and `https://` remotes (once per process;
/// later calls answer as the first).
pub(super) fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            for scheme in ["http", "https"] {
                // SAFETY: git2 asks that registering be synchronised with the creation of
                // transports (libgit2's list of them has no lock). Only fetches and pushes
                // create transports, and they run only after a `GitPromoter` exists, or after
                // `configure_process` at start-up: both register first, and others wait on
                // this `OnceLock` until registering is done.
                #[allow(unsafe_code)]
                unsafe {
                    git2::transport::register(scheme, |remote| {
                        Transport::smart(remote, true, SmartHttp::default())
                    })
                }
                .map_err(|e| format!("cannot register the {scheme} transport: {e}"))?;
            }
            Ok(())
        })
        .clone()
}

/// libgit2's bound on the requests one read may make (redirects and authentication replays).
const MAX_REPLAYS: usize = 15;

/// The remote service a request is for, and the names the protocol gives its parts.
#[derive(Debug, Clone, Copy)]
struct GitService(&'static str);

impl GitService {
    fn of(service: Service) -> GitService {
        match service {
            Service::UploadPackLs | Service::UploadPack => GitService("git-upload-pack"),
            Service::ReceivePackLs | Service::ReceivePack => GitService("git-receive-pack"),
        }
    }

    fn content_type(self, part: &str) -> String {
        format!("application/x-{}-{part}", self.0)
    }
}

/// One remote's transport: it remembers where a redirect of the first request led, as
/// libgit2 does, so the POSTs go there too.
#[derive(Default)]
struct SmartHttp {
    base: Mutex<Option<Url>>,
}

impl SmartSubtransport for SmartHttp {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, Error> {
        let service = GitService::of(action);
        let mut base = self.base.lock().unwrap_or_else(|p| p.into_inner());
        let remote = match base.as_ref() {
            Some(b) => b.clone(),
            None => Url::parse(url).map_err(|e| http_error(format!("invalid URL {url}: {e}")))?,
        };
        match action {
            Service::UploadPackLs | Service::ReceivePackLs => {
                let (refs, moved) = advertise(&remote, service).map_err(report)?;
                *base = Some(moved);
                Ok(Box::new(Exchange::Receiving(refs)))
            }
            Service::UploadPack | Service::ReceivePack => Ok(Box::new(Exchange::Sending {
                url: redirect::join(&remote, service.0, None),
                service,
                body: Vec::new(),
            })),
        }
    }

    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// GETs the refs the remote advertises for `service`, following same-host redirects; answers
/// the response and the remote's URL after them.
fn advertise(remote: &Url, service: GitService) -> Result<(Response, Url), Error> {
    let query = format!("service={}", service.0);
    let mut url = redirect::join(remote, "info/refs", Some(&query));
    let mut moved = None;
    for _ in 0..MAX_REPLAYS {
        let response = send(authorized(client(&url)?.get(url.clone())))?;
        if is_redirect(response.status()) {
            let next = redirect::follow(&url, response.headers().get(header::LOCATION))?;
            moved = Some(redirect::base_of(&next, "/info/refs", &query));
            url = next;
            continue;
        }
        accept(&response, &service.content_type("advertisement"))?;
        return Ok((response, moved.unwrap_or_else(|| remote.clone())));
    }
    Err(http_error(
        "too many redirects or authentication replays".into(),
    ))
}

fn client(url: &Url) -> Result<reqwest::blocking::Client, Error> {
    client::for_scheme(url.scheme())
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Sends `request`; a connection or TLS failure is libgit2's network error.
fn send(request: RequestBuilder) -> Result<Response, Error> {
    request.send().map_err(|e| {
        let host = e
            .url()
            .and_then(|u| u.host_str())
            .unwrap_or("the remote")
            .to_string();
        let (timeout, connect) = (e.is_timeout(), e.is_connect());
        // The URL names no secret, but says nothing the host does not.
        let why = chain(&e.without_url());
        let message = if timeout {
            format!("{host}: timed out: {why}")
        } else if connect {
            format!("failed to connect to {host}: {why}")
        } else {
            format!("{host}: {why}")
        };
        Error::new(ErrorCode::GenericError, ErrorClass::Net, message)
    })
}

/// `e` and its causes, each said once.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Checks a final answer as libgit2 does: 200 with the content type the service answers with.
fn accept(response: &Response, content_type: &str) -> Result<(), Error> {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        let why = if has_credentials() {
            "the remote did not accept phasegate's credentials"
        } else {
            "the remote asks for credentials, but no credential scope gives this repository any"
        };
        return Err(Error::new(ErrorCode::Auth, ErrorClass::Http, why));
    }
    if status != StatusCode::OK {
        // The one report `cache::http_status` reads a status from.
        return Err(http_error(format!(
            "unexpected http status code: {}",
            status.as_u16()
        )));
    }
    match response.headers().get(header::CONTENT_TYPE) {
        None => Err(http_error("no content-type header in response".into())),
        Some(t) if t.as_bytes() != content_type.as_bytes() => Err(http_error(format!(
            "invalid content-type: '{}'",
            String::from_utf8_lossy(t.as_bytes())
        ))),
        Some(_) => Ok(()),
    }
}

fn http_error(message: String) -> Error {
    Error::new(ErrorCode::GenericError, ErrorClass::Http, message)
}
