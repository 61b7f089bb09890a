//! Watches that cannot hang, shared by the Argo CD gate and the Job runner: kube-runtime's
//! watcher asks for a server-side timeout on every watch request and re-establishes it when it
//! ends, relists after `410 Gone`, follows bookmarks, and reconnects a connection that went
//! silent. What is left here is deciding which of its errors are worth waiting out.

use futures_util::{Stream, StreamExt};
use kube::runtime::watcher;

use super::ClusterError;

/// Server-side `timeoutSeconds` of each watch request: the API server ends it cleanly and the
/// watcher starts the next one, so no proxy or load balancer idle timeout cuts it first.
const WATCH_TIMEOUT_SECONDS: u32 = 240;
/// Errors in a row (with the watcher's backoff between them) before the API server counts as
/// unreachable: enough to ride out an API server restart, not a dead cluster.
const ERRORS_IN_A_ROW: u32 = 6;

/// The watcher configuration every watch of phasegate uses.
pub(crate) fn config() -> watcher::Config {
    watcher::Config::default().timeout(WATCH_TIMEOUT_SECONDS)
}

/// Passes the watcher's events on; recoverable errors (410 Gone, a dropped connection, an
/// `ERROR` event) are waited out, those that waiting cannot fix (403, a missing resource type)
/// and [`ERRORS_IN_A_ROW`] failures end the stream with a [`ClusterError`].
pub(crate) fn tolerant<K, S>(
    events: S,
    what: &str,
) -> impl Stream<Item = Result<watcher::Event<K>, ClusterError>> + use<K, S>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let what = what.to_string();
    let mut in_a_row = 0;
    events.filter_map(move |event| {
        let out = match event {
            Ok(event) => {
                in_a_row = 0;
                Some(Ok(event))
            }
            Err(e) => {
                in_a_row += 1;
                match lasting(e, &what) {
                    Some(e) => Some(Err(e)),
                    None if in_a_row >= ERRORS_IN_A_ROW => Some(Err(ClusterError::Unavailable(
                        format!("watching {what} failed {in_a_row} times in a row"),
                    ))),
                    None => None,
                }
            }
        };
        std::future::ready(out)
    })
}

/// The error, if waiting cannot fix it.
fn lasting(e: watcher::Error, what: &str) -> Option<ClusterError> {
    let api = match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(status) => *status,
            _ => return None,
        },
        watcher::Error::WatchError(status) => *status,
        watcher::Error::NoResourceVersion => return None,
    };
    match api.code {
        401 | 403 | 404 => Some(ClusterError::from_kube(
            kube::Error::Api(Box::new(api)),
            what,
        )),
        _ => None,
    }
}
