//! The fetch or push a request belongs to: libgit2 runs the transport on the thread that
//! started the operation and passes it nothing of the operation's own, so its credentials and
//! the transport's report of a failure are kept here, per thread.

use std::{cell::RefCell, marker::PhantomData};

use git2::Error;
use reqwest::{
    blocking::RequestBuilder,
    header::{self, HeaderValue},
};

/// What one fetch or push brings to the transport, which libgit2 cannot pass to it: the
/// `Authorization` header, the most its answers may hold, and where the transport's own
/// report of a failure is kept. Outside a [`Scope`] the bound is 0: a fetch or push that
/// opened none reads nothing.
#[derive(Default)]
struct Session {
    authorization: Option<HeaderValue>,
    /// Bytes read from the remote's answers so far, and the most that may be read.
    received: u64,
    bound: u64,
    failure: Option<Error>,
}

thread_local! {
    /// libgit2 runs a fetch or push, its transport included, on the thread that started it.
    static SESSION: RefCell<Session> = RefCell::default();
}

/// One fetch or push on this thread: its credentials go with every request the transport
/// sends until the scope ends (the transport never leaves the remote's host).
pub(in crate::git) struct Scope {
    /// The session is this thread's.
    _thread: PhantomData<*const ()>,
}

impl Scope {
    /// Opens the scope with `authorization` (an `Authorization` header value, when the
    /// operation has credentials). The remote's answers may hold `bound` bytes in all (the
    /// refs it advertises included, which libgit2 keeps in memory and counts nowhere).
    pub(in crate::git) fn enter(authorization: Option<String>, bound: u64) -> Scope {
        let authorization = authorization.and_then(|v| {
            let mut value = HeaderValue::from_str(&v).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        SESSION.set(Session {
            authorization,
            received: 0,
            bound,
            failure: None,
        });
        Scope {
            _thread: PhantomData,
        }
    }

    /// The error that ended the operation, as the transport reported it: a failure while
    /// reading a POST's answer reaches git2 only as text of class `Net`, losing its status.
    pub(in crate::git) fn error(&self, from_libgit2: Error) -> Error {
        SESSION
            .with_borrow_mut(|s| s.failure.take())
            .unwrap_or(from_libgit2)
    }

    /// The bytes the operation read from the remote's answers, when more than its bound
    /// (the transport then ended it).
    pub(in crate::git) fn over_bound(&self) -> Option<u64> {
        SESSION.with_borrow(|s| (s.received > s.bound).then_some(s.received))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        SESSION.take();
    }
}

/// Keeps `e` as the operation's failure and returns it.
pub(super) fn report(e: Error) -> Error {
    SESSION.with_borrow_mut(|s| s.failure = Some(Error::new(e.code(), e.class(), e.message())));
    e
}

/// A request with the scope's credentials.
pub(super) fn authorized(request: RequestBuilder) -> RequestBuilder {
    match SESSION.with_borrow(|s| s.authorization.clone()) {
        Some(value) => request.header(header::AUTHORIZATION, value),
        None => request,
    }
}

/// Whether the scope has credentials to send.
pub(super) fn has_credentials() -> bool {
    SESSION.with_borrow(|s| s.authorization.is_some())
}

/// Counts `n` bytes read from an answer; past the scope's bound, the error that ends the
/// operation.
pub(super) fn count(n: usize) -> Result<(), Error> {
    let (received, bound) = SESSION.with_borrow_mut(|s| {
        s.received = s.received.saturating_add(n as u64);
        (s.received, s.bound)
    });
    if received <= bound {
        return Ok(());
    }
    Err(report(Error::new(
        git2::ErrorCode::GenericError,
        git2::ErrorClass::Net,
        format!("the remote's answers held more than {bound} bytes"),
    )))
}
