//! A request body left unread is read to its end after the answer, up to a bound. A refusal needs only the head (a
//! token refused, a host not allowed), and is answered before the body arrives when the client writes it apart;
//! hyper then closes the connection with the body unread and says nothing of it (no `Connection: close`), and a
//! client that sends its next request on the same connection, as the Python SDK does, finds it reset and reports a
//! disconnection instead of the refusal. Read to its end, the body frees the connection for the next request. One
//! larger than [`MAX_DRAINED`], or slower than [`DRAIN_TIME`], is left: the connection is closed as before.
//!
//! The bound is four times the default body limit, so that a body refused for its size is read and dropped too
//! (what servers call a lingering close): closed under it, a client still sending it gets a reset instead of the
//! `413` (the TypeScript SDK's fetch failed with `EPIPE` 7 times in 8). Nothing read is kept.
//!
//! Whether the connection is kept is known only once the body is read (a chunked body says no length up front): the
//! runner waits for it ([`DrainReport`]) before it sends an answer to a request whose body is being read, so that
//! the answer says `Connection: close` when the connection will close (red-team finding: a `413` for a chunked
//! body over the bound said how long the connection would be kept).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Frame, SizeHint};

/// The most of a body left unread that is read (and dropped) after the answer: 16 MiB, four times the default body
/// limit.
pub(super) const MAX_DRAINED: usize = 4 * crate::serve::transport::DEFAULT_MAX_MESSAGE_BYTES;

/// The longest a body left unread is waited for after the answer.
pub(super) const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Set when a request's body could not be read (bad chunking, a connection broken mid-body): the client's doing,
/// whatever the protocol layer answers.
#[derive(Clone, Default)]
pub(super) struct BodyFailed(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl BodyFailed {
    pub(super) fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Says, once a request's body has been dropped, whether it was read to its end (the connection can carry the next
/// request) or not (it closes). Put in a request's extensions by the runner, taken by [`draining`].
/// (Shared, as a request's extensions must be cloneable; the first to send it sends it.)
#[derive(Clone)]
pub(super) struct DrainReport(
    std::sync::Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<bool>>>>,
);

impl DrainReport {
    /// A report, and what receives it: `true` when the body ended, `false` when the connection closes unread, and
    /// closed without a word when no body was watched (one that had ended before it was looked at).
    pub(super) fn new() -> (DrainReport, tokio::sync::oneshot::Receiver<bool>) {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        (
            DrainReport(std::sync::Arc::new(std::sync::Mutex::new(Some(sender)))),
            receiver,
        )
    }

    fn send(self, ended: bool) {
        let sender = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(ended);
        }
    }
}

/// `body`, read to its end when dropped unread if `drain` (see the module's documentation); `failed` set if it
/// cannot be read; `report` told how it ended.
pub(super) fn draining(
    body: Body,
    failed: BodyFailed,
    drain: bool,
    report: Option<DrainReport>,
) -> Body {
    if hyper::body::Body::is_end_stream(&body) {
        return body;
    }
    Body::new(Draining {
        body: Some(body),
        failed,
        drain,
        report,
    })
}

struct Draining {
    /// The body, until it has ended.
    body: Option<Body>,
    failed: BodyFailed,
    /// Whether to read it to its end when dropped unread.
    drain: bool,
    report: Option<DrainReport>,
}

impl hyper::body::Body for Draining {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let Some(body) = &mut this.body else {
            return Poll::Ready(None);
        };
        let poll = Pin::new(body).poll_frame(cx);
        match poll {
            Poll::Ready(None) => {
                this.body = None;
                if let Some(report) = this.report.take() {
                    report.send(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.failed
                    .0
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                this.body = None;
                if let Some(report) = this.report.take() {
                    report.send(false);
                }
            }
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body
            .as_ref()
            .is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), hyper::body::Body::size_hint)
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        let report = self.report.take();
        let tell = |ended: bool| {
            if let Some(report) = report {
                report.send(ended);
            }
        };
        let failed = self.failed.is_set();
        let Some(mut body) = self.body.take() else {
            // Read to its end, or broken off (the connection with it).
            return tell(!failed);
        };
        if hyper::body::Body::is_end_stream(&body) {
            return tell(true);
        }
        // Not to be read (it waits for `100 Continue`), or larger than is worth reading (as its length says): the
        // connection is closed instead.
        if !self.drain || hyper::body::Body::size_hint(&body).lower() > MAX_DRAINED as u64 {
            return tell(false);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return tell(false);
        };
        runtime.spawn(async move {
            let drained = async {
                let mut read = 0;
                loop {
                    match body.frame().await {
                        None => return true,
                        Some(Err(_)) => return false,
                        Some(Ok(frame)) => {
                            read += frame.data_ref().map_or(0, Bytes::len);
                            if read > MAX_DRAINED {
                                return false;
                            }
                        }
                    }
                }
            };
            let ended = tokio::time::timeout(DRAIN_TIME, drained)
                .await
                .unwrap_or(false);
            tell(ended);
        });
    }
}
