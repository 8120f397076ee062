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

/// `body`, read to its end when dropped unread if `drain` (see the module's documentation); `failed` set if it
/// cannot be read.
pub(super) fn draining(body: Body, failed: BodyFailed, drain: bool) -> Body {
    if hyper::body::Body::is_end_stream(&body) {
        return body;
    }
    Body::new(Draining {
        body: Some(body),
        failed,
        drain,
    })
}

struct Draining {
    /// The body, until it has ended.
    body: Option<Body>,
    failed: BodyFailed,
    /// Whether to read it to its end when dropped unread.
    drain: bool,
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
            Poll::Ready(None) => this.body = None,
            Poll::Ready(Some(Err(_))) => {
                this.failed
                    .0
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                this.body = None;
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
        let Some(mut body) = self.body.take().filter(|_| self.drain) else {
            return;
        };
        // Ended, or larger than is worth reading (as its length says): the connection is closed instead.
        if hyper::body::Body::is_end_stream(&body)
            || hyper::body::Body::size_hint(&body).lower() > MAX_DRAINED as u64
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drained = async {
                let mut read = 0;
                while let Some(Ok(frame)) = body.frame().await {
                    read += frame.data_ref().map_or(0, Bytes::len);
                    if read > MAX_DRAINED {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drained).await;
        });
    }
}
