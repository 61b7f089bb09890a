//! One request of the protocol after the refs: libgit2 writes its body, then reads its
//! answer; the POST goes out at the first read.

use std::io::{self, Read, Write};

use git2::{Error, ErrorClass, ErrorCode};
use reqwest::{blocking::Response, header};
use url::Url;

use super::{
    GitService, accept, chain, client, http_error, is_redirect, send,
    session::{authorized, count, report},
};

/// One request and its answer: libgit2 writes the request's body, then reads the answer.
pub(super) enum Exchange {
    /// A POST whose body is being written; it is sent at the first read.
    Sending {
        url: Url,
        service: GitService,
        body: Vec<u8>,
    },
    Receiving(Response),
    /// A failed exchange; its error was reported.
    Failed,
}

/// The most of an answer's unread end that is read to keep its connection for the next
/// request (libgit2 stops reading at the protocol's last packet, before the HTTP body's end).
const DRAIN_BYTES: u64 = 64 * 1024;

impl Exchange {
    fn post(url: &Url, service: GitService, body: Vec<u8>) -> Result<Response, Error> {
        let request = client(url)?
            .post(url.clone())
            .header(header::CONTENT_TYPE, service.content_type("request"))
            .header(header::ACCEPT, service.content_type("result"))
            .body(body);
        let response = send(authorized(request))?;
        if is_redirect(response.status()) {
            // libgit2 follows a redirect only on the first request of a fetch or push.
            return Err(http_error("unexpected redirect".into()));
        }
        accept(&response, &service.content_type("result"))?;
        Ok(response)
    }
}

impl Read for Exchange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Exchange::Sending { url, service, body } = self {
            match Exchange::post(url, *service, std::mem::take(body)) {
                Ok(response) => *self = Exchange::Receiving(response),
                Err(e) => {
                    *self = Exchange::Failed;
                    return Err(io::Error::other(report(e).message().to_string()));
                }
            }
        }
        let Exchange::Receiving(response) = self else {
            return Err(io::Error::other("the request failed"));
        };
        let n = response.read(buf).map_err(|e| {
            let message = if e.kind() == io::ErrorKind::TimedOut {
                "reading from the remote timed out".to_string()
            } else {
                format!("could not read from the remote: {}", chain(&e))
            };
            report(Error::new(
                ErrorCode::GenericError,
                ErrorClass::Net,
                message.clone(),
            ));
            io::Error::new(e.kind(), message)
        })?;
        if let Err(e) = count(n) {
            // Nothing more of this answer is read, nor drained.
            *self = Exchange::Failed;
            return Err(io::Error::other(e.message().to_string()));
        }
        Ok(n)
    }
}

impl Write for Exchange {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Exchange::Sending { body, .. } => {
                body.extend_from_slice(data);
                Ok(data.len())
            }
            _ => Err(io::Error::other(
                "a request's body written after its answer",
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Exchange::Receiving(response) = self {
            // Read to the end of the body (a few bytes at most), so its connection goes back
            // to the client for the next request.
            let _ = io::copy(&mut response.take(DRAIN_BYTES), &mut io::sink());
        }
    }
}
