//! Serving connections: hyper's HTTP/1.1 server, one task per connection, under three bounds.
//!
//! - **A header-read timeout** (hyper's own, [`DEFAULT_HEADER_READ_TIMEOUT`]): a client has that long to send a
//!   request head, from the moment the connection opens or goes idle after an answer; then it is closed. It bounds
//!   half-sent requests (slowloris) and idle keep-alive connections alike; and, ours, how long writes may wait for
//!   a client that reads nothing of its answers (whose answers the server holds meanwhile).
//! - **A connection cap** ([`DEFAULT_MAX_CONNECTIONS`], and never more than the process's descriptor limit allows):
//!   when every slot is taken, the oldest connection with no request in progress (one still in its TLS
//!   handshake, one that has not finished its request head, an idle keep-alive one) is closed to make room; failing
//!   that, the connection whose request body has been arriving longest, for longer than a head may take (no call has
//!   begun on it: red-team finding, bodies sent a byte at a time by 16 identities held every connection); when
//!   every connection is busy answering, the new one is refused. Clients that open connections and stall cannot
//!   keep a real client out: it takes the place of one of theirs.
//! - **A graceful stop**: at shutdown, connections finish the request they are answering and close.
//!
//! Connections closed by these bounds are audited as `connection_rejected` (and failed TLS handshakes as
//! `tls_rejected`), through the throttle of [`Rejections`]; not a keep-alive connection closed idle after its
//! answers, which is how clients pausing between calls end theirs.
//!
//! `axum::serve` has none of these settings; hyper has the first, and the other two are a few lines over it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::rejections::Rejections;
use crate::audit::AuditEvent;

/// How long a client has to send a request head, on a new connection or an idle one, unless configured.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connections may be open at once, unless configured (or the descriptor limit allows fewer).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Descriptors kept for everything but client connections: the listener, the audit log, files the tools open,
/// JWKS fetches.
const RESERVED_DESCRIPTORS: u64 = 64;
/// How long the stop waits for connections to close after their last answer.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The bounds on connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: Duration,
    /// Connections another listener of the process may hold (the metrics address's), left out of this one's share
    /// of the descriptors.
    pub(crate) shared: usize,
    /// How many bytes of request bodies still arriving may be held at once, all connections together.
    pub(crate) max_buffered_body_bytes: usize,
}

/// How many of the largest request bodies may be arriving at once: the bound on the bytes of unfinished bodies held,
/// all connections together, is this many times the largest body (`--max-message-bytes`; red-team finding:
/// unfinished bodies were held whole, about 4 MiB each and 64 per identity, 1.6 GB for six identities).
pub const BODIES_BUFFERED: usize = 64;

/// A request body refused because the bodies arriving at once hold all the bytes they may
/// ([`ConnectionLimits::max_buffered_body_bytes`]).
#[derive(Debug)]
pub(crate) struct BodyBudgetSpent;

impl std::fmt::Display for BodyBudgetSpent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request bodies arriving at once hold all the memory they may")
    }
}

impl std::error::Error for BodyBudgetSpent {}

/// Whether `error`, or an error it was caused by, is [`BodyBudgetSpent`].
pub(crate) fn is_body_budget_spent(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<BodyBudgetSpent>() {
            return true;
        }
        cause = error.source();
    }
    false
}

impl ConnectionLimits {
    /// The cap actually applied: the configured one, lowered to what the descriptor limit leaves for connections.
    pub(crate) fn effective_max(&self) -> usize {
        let by_descriptors = descriptor_limit()
            .map(|limit| {
                limit
                    .saturating_sub(RESERVED_DESCRIPTORS)
                    .saturating_sub(self.shared as u64)
                    .max(8)
            })
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(usize::MAX);
        self.max_connections.clamp(1, by_descriptors)
    }
}

/// The soft limit on open descriptors, where there is one.
fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes into the struct it is given, nothing else.
        let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        // `rlim_t` is `u64` on Linux, not everywhere.
        #[allow(clippy::unnecessary_cast)]
        let current = limit.rlim_cur as u64;
        (read == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(current)
    }
    #[cfg(not(unix))]
    None
}

/// How a connection is secured before HTTP is spoken on it.
#[derive(Clone)]
pub(crate) enum Security {
    Plain,
    /// HTTPS (feature `mtls`), requiring client certificates or not.
    #[cfg(feature = "mtls")]
    Tls(super::mtls::ServerTls),
}

/// The connections open, oldest first.
struct Registry {
    max: usize,
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
    next: AtomicU64,
    /// How long a request body may have been arriving before its connection may be closed to make room, when no
    /// connection is idle: as long as a request head may take.
    slow_body_after: Duration,
    /// The bytes of request bodies arriving now, and how many there may be.
    buffered: AtomicUsize,
    max_buffered: usize,
}

/// Milliseconds since the first time this was asked, never 0 (which [`Connection::body_since`] keeps for none).
fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(epoch.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

struct Connection {
    /// Requests being answered (until their response body is done).
    busy: AtomicUsize,
    /// Cancelled to close the connection to make room.
    evict: CancellationToken,
    /// Whether the client has sent anything since the last answer ended, or has had no answer yet: a connection
    /// closed by the header-read timeout without it was an idle keep-alive one, not a stalled request.
    awaited: AtomicBool,
    /// Claimed at the stop, with no request begun: closed then, not made room with.
    closed_at_stop: AtomicBool,
    /// Since when (see [`now_ms`]) its request's body has been arriving; 0 when none is.
    body_since: AtomicU64,
    /// Why it was closed to make room while its request's body was arriving, if it was: the reason recorded
    /// (`evicted_slow_body`, `evicted_body_budget`).
    evicted_for: Mutex<Option<&'static str>>,
    /// The bytes of its request's body arrived so far, while it arrives.
    body_bytes: AtomicUsize,
    /// Who its request is from, once authenticated ([`BodyOwner`]).
    body_owner: Mutex<Option<Arc<str>>>,
    /// Closed because its client read nothing of an answer for the header-read timeout (see [`Watched`]).
    answer_not_read: AtomicBool,
}

/// In a request's extensions: tells its connection whose body it is receiving (the identity the request
/// authenticated as), so that past the bound of unfinished bodies the identity holding the most gives way.
#[derive(Clone)]
pub(crate) struct BodyOwner(Arc<Connection>);

impl BodyOwner {
    pub(crate) fn set(&self, owner: Arc<str>) {
        *self
            .0
            .body_owner
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(owner);
    }
}

/// A connection's place in the registry, given back when the connection ends.
struct Slot {
    id: u64,
    registry: Arc<Registry>,
    connection: Arc<Connection>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Connection>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection: a free one, or one made by closing the oldest idle connection; `None` when
    /// every connection is busy.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.lock();
        if open.len() >= self.max
            && !Self::evict_oldest_idle(&mut open)
            && !Self::evict_slowest_body(&mut open, self.slow_body_after)
        {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            busy: AtomicUsize::new(0),
            evict: CancellationToken::new(),
            awaited: AtomicBool::new(true),
            closed_at_stop: AtomicBool::new(false),
            body_since: AtomicU64::new(0),
            evicted_for: Mutex::new(None),
            body_bytes: AtomicUsize::new(0),
            body_owner: Mutex::new(None),
            answer_not_read: AtomicBool::new(false),
        });
        open.insert(id, connection.clone());
        Some(Slot {
            id,
            registry: self.clone(),
            connection,
        })
    }

    /// Closes the oldest connection with no request in progress; whether there was one. The connection is
    /// claimed first (its count of requests set to [`EVICTED`] from zero, at once), so that a request it has just
    /// begun is not cut off halfway: such a request finds it claimed, and is refused.
    fn evict_oldest_idle(open: &mut BTreeMap<u64, Arc<Connection>>) -> bool {
        let idle = open
            .iter()
            .find(|(_, c)| {
                c.busy
                    .compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            })
            .map(|(id, _)| *id);
        match idle.and_then(|id| open.remove(&id)) {
            Some(connection) => {
                connection.evict.cancel();
                true
            }
            None => false,
        }
    }

    /// Closes the connection whose request body has been arriving longest, if for longer than `after`; whether
    /// there was one. Its request has not reached a handler (rmcp and the runner read a body whole first), so no
    /// call is cut.
    fn evict_slowest_body(open: &mut BTreeMap<u64, Arc<Connection>>, after: Duration) -> bool {
        let now = now_ms();
        let after = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        let slowest = open
            .iter()
            .filter_map(|(id, c)| {
                let since = c.body_since.load(Ordering::Acquire);
                (since != 0 && now.saturating_sub(since) >= after).then_some((since, *id))
            })
            .min()
            .map(|(_, id)| id);
        Self::evict_for_body(open, slowest, "evicted_slow_body")
    }

    /// Closes connection `id`, if it is open, whose request body is arriving, recorded with `reason`; whether it
    /// was.
    fn evict_for_body(
        open: &mut BTreeMap<u64, Arc<Connection>>,
        id: Option<u64>,
        reason: &'static str,
    ) -> bool {
        match id.and_then(|id| open.remove(&id)) {
            Some(connection) => {
                *connection
                    .evicted_for
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(reason);
                connection.evict.cancel();
                true
            }
            None => false,
        }
    }

    /// Past the bound of unfinished bodies, makes room for `asking`'s: the body arriving longest, if for longer than a
    /// head may take; or else the oldest body of the identity holding the most bytes of unfinished bodies, unless
    /// `asking`'s identity holds as much (a review's finding: one identity's 64 bodies took the whole bound, and every other client's
    /// `POST` was refused). Whether room was made.
    fn make_body_room(&self, asking: &Connection) -> bool {
        let mut open = self.lock();
        if Self::evict_slowest_body(&mut open, self.slow_body_after) {
            return true;
        }
        let owner_of = |c: &Connection| {
            c.body_owner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        };
        let mut held: std::collections::HashMap<Option<Arc<str>>, usize> =
            std::collections::HashMap::new();
        for connection in open.values() {
            if connection.body_since.load(Ordering::Acquire) != 0 {
                *held.entry(owner_of(connection)).or_default() +=
                    connection.body_bytes.load(Ordering::Acquire);
            }
        }
        let asking_owner = owner_of(asking);
        let mine = held.get(&asking_owner).copied().unwrap_or(0);
        let Some((most, _)) = held
            .into_iter()
            .filter(|(owner, bytes)| *owner != asking_owner && *bytes > mine)
            .max_by_key(|(_, bytes)| *bytes)
        else {
            return false;
        };
        let oldest = open
            .iter()
            .filter(|(_, c)| c.body_since.load(Ordering::Acquire) != 0 && owner_of(c) == most)
            .min_by_key(|(_, c)| c.body_since.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        // Not slow, maybe: its identity holds the most (a review's finding: recorded as slow, it was misread).
        Self::evict_for_body(&mut open, oldest, "evicted_body_budget")
    }
}

/// A request's body, marking its connection as receiving one (see [`Connection::body_since`]) and counting its
/// bytes among those of the bodies arriving ([`Registry::buffered`]) until it has arrived, failed or been dropped.
struct Receiving {
    body: Incoming,
    connection: Arc<Connection>,
    registry: Arc<Registry>,
    counted: usize,
}

impl Receiving {
    fn new(body: Incoming, connection: Arc<Connection>, registry: Arc<Registry>) -> Self {
        connection.body_since.store(now_ms(), Ordering::Release);
        // Whose it is is told once the request is authenticated: not the connection's previous request's.
        *connection
            .body_owner
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        Receiving {
            body,
            connection,
            registry,
            counted: 0,
        }
    }

    fn done(&mut self) {
        self.connection.body_since.store(0, Ordering::Release);
        self.connection.body_bytes.store(0, Ordering::Release);
        self.registry
            .buffered
            .fetch_sub(std::mem::take(&mut self.counted), Ordering::AcqRel);
    }

    /// Counts `bytes` more of this body; whether they fit the bound, or room was made for them
    /// ([`Registry::make_body_room`]).
    fn count(&mut self, bytes: usize) -> bool {
        self.counted += bytes;
        self.connection
            .body_bytes
            .fetch_add(bytes, Ordering::AcqRel);
        let held = self.registry.buffered.fetch_add(bytes, Ordering::AcqRel) + bytes;
        held <= self.registry.max_buffered || self.registry.make_body_room(&self.connection)
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.done();
    }
}

impl hyper::body::Body for Receiving {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let receiving = self.get_mut();
        let polled = Pin::new(&mut receiving.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && !receiving.count(data.len())
        {
            receiving.done();
            return Poll::Ready(Some(Err(Box::new(BodyBudgetSpent))));
        }
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => receiving.body.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            receiving.done();
        }
        polled.map(|frame| frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's count of requests once it is claimed to be closed: far above any real count.
const EVICTED: usize = usize::MAX / 2;

impl Connection {
    /// Whether it was claimed to be closed to make room.
    fn claimed(&self) -> bool {
        self.busy.load(Ordering::Acquire) >= EVICTED && !self.closed_at_stop.load(Ordering::Acquire)
    }

    /// Claims it at the stop if it has no request in progress (idle, or with a request head still coming, which
    /// would be refused anyway): `true` if it may be closed at once.
    fn claim_at_stop(&self) -> bool {
        self.closed_at_stop.store(true, Ordering::Release);
        let claimed = self
            .busy
            .compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !claimed {
            self.closed_at_stop.store(false, Ordering::Release);
        }
        claimed
    }
}

/// A request in progress on a connection, until its response body is done or dropped.
struct Busy(Arc<Connection>);

impl Busy {
    /// `None` when the connection is being closed to make room: the request is not begun.
    fn new(connection: &Arc<Connection>) -> Option<Self> {
        let before = connection.busy.fetch_add(1, Ordering::AcqRel);
        let busy = Busy(connection.clone());
        (before < EVICTED).then_some(busy)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // An answer ended: the connection awaits nothing until the client sends more.
        self.0.awaited.store(false, Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's stream, noting when the client sends anything (see [`Connection::awaited`]), and cutting off a
/// client that reads nothing of its answers for `stall_limit` (the header-read timeout): the answers waiting for it
/// are held in memory until the connection closes (a red team's: 100 connections never read held 418 MiB for as
/// long as they stayed open).
struct Watched<I> {
    io: I,
    connection: Arc<Connection>,
    stall_limit: Duration,
    /// Running while a write waits for the client to read.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The connection's socket, whose queue of bytes not yet taken by the client tells a slow reader from one that
    /// reads nothing: the kernel says a socket is writable again only once a third of its buffer has drained (a red
    /// team's clients reading 128 KB/s were cut off), so a write waiting is no sign the client reads nothing.
    socket: Option<Socket>,
    /// The bytes queued in the socket when the stall's timer was last set.
    queued: Option<usize>,
}

/// A connection's socket, for [`Watched`].
#[cfg(unix)]
type Socket = std::os::fd::RawFd;
#[cfg(not(unix))]
type Socket = ();

/// The socket of a connection.
fn socket_of(tcp: &TcpStream) -> Option<Socket> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd as _;
        Some(tcp.as_raw_fd())
    }
    #[cfg(not(unix))]
    {
        let _ = tcp;
        None
    }
}

/// The bytes a socket holds that its peer has not yet taken (Linux's `SIOCOUTQ`); none elsewhere.
fn send_queue(socket: Option<Socket>) -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        let socket = socket?;
        let mut queued: libc::c_int = 0;
        // SAFETY: `socket` is the connection's open socket for as long as its `Watched` lives; `queued` is a
        // `c_int` the ioctl writes.
        let done = unsafe { libc::ioctl(socket, libc::TIOCOUTQ, &mut queued) };
        (done == 0).then(|| usize::try_from(queued).ok()).flatten()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        None
    }
}

impl<I> Watched<I> {
    fn new(
        io: I,
        connection: Arc<Connection>,
        stall_limit: Duration,
        socket: Option<Socket>,
    ) -> Self {
        Watched {
            io,
            connection,
            stall_limit,
            stall: None,
            socket,
            queued: None,
        }
    }

    /// A write's outcome, or an error once writes have waited `stall_limit` without the client reading.
    fn unless_stalled<T>(
        &mut self,
        cx: &mut TaskContext<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stall = None;
            return polled;
        }
        let limit = self.stall_limit;
        if self.stall.is_none() {
            self.queued = send_queue(self.socket);
        }
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stall.as_mut().poll(cx).is_ready() {
            // The client took some of what was queued: it reads, slowly. The timer starts again.
            let now = send_queue(self.socket);
            if let (Some(now), Some(before)) = (now, self.queued)
                && now < before
            {
                self.queued = Some(now);
                stall.as_mut().reset(tokio::time::Instant::now() + limit);
                let _ = stall.as_mut().poll(cx);
                return Poll::Pending;
            }
            self.connection
                .answer_not_read
                .store(true, Ordering::Relaxed);
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing of its answer",
            )));
        }
        Poll::Pending
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.connection.awaited.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.unless_stalled(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.unless_stalled(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.unless_stalled(cx, polled)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that keeps its connection busy until it is sent or dropped. Everything else is the body's own,
/// its size included: a body of unknown size goes out chunked, and an answer of known length then loses its
/// `Content-Length` (clients dropped about one connection in a hundred calls after chunked answers).
///
/// A standalone stream of events (an answer to a `GET` as `text/event-stream`, in sessions mode) ends at the stop,
/// once it has sent what it holds: it never finishes by itself, and the stop waits for the connections' answers
/// (at most 5 s) before it ends the protocol service (whose end would otherwise cut the answers of calls that just
/// finished).
struct Tracked {
    body: Body,
    _busy: Busy,
    ends: Option<Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>>,
}

impl hyper::body::Body for Tracked {
    type Data = hyper::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let tracked = self.get_mut();
        match Pin::new(&mut tracked.body).poll_frame(cx) {
            // What the stream has ready still goes out; it ends at the stop only while it waits for more.
            Poll::Pending => match &mut tracked.ends {
                Some(ends) => ends.as_mut().poll(cx).map(|()| None),
                None => Poll::Pending,
            },
            ready => ready,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Accepts and serves connections until `stop` is cancelled; then lets them finish their answers and close.
pub(crate) async fn serve(
    listener: TcpListener,
    security: Security,
    app: Router,
    limits: ConnectionLimits,
    rejections: Arc<Rejections>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry {
        max: limits.effective_max(),
        open: Mutex::new(BTreeMap::new()),
        next: AtomicU64::new(0),
        slow_body_after: limits.header_read_timeout,
        buffered: AtomicUsize::new(0),
        max_buffered: limits.max_buffered_body_bytes,
    });
    let tracker = TaskTracker::new();
    #[cfg(feature = "mtls")]
    let revocation_lists = match &security {
        Security::Tls(tls) => Some(tokio::spawn(
            tls.clone().watch_revocation_lists(stop.clone()),
        )),
        Security::Plain => None,
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) if is_out_of_descriptors(&error) => {
                // Make room, then wait a moment for the descriptor to be given back.
                Registry::evict_oldest_idle(&mut registry.lock());
                tracing::warn!(%error, "out of descriptors; closed the oldest idle connection");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            // A connection that went away before it was accepted, and the like: nothing to do.
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                continue;
            }
        };
        let Some(slot) = registry.admit() else {
            rejections.record(AuditEvent::ConnectionRejected {
                reason: "too_many_connections",
                peer: peer.to_string(),
            });
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tracker.spawn(connection(
            tcp,
            peer,
            slot,
            security.clone(),
            app.clone(),
            limits,
            rejections.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    #[cfg(feature = "mtls")]
    if let Some(watcher) = revocation_lists {
        watcher.abort();
    }
    tracker.close();
    let _ = tokio::time::timeout(STOP_WAIT, tracker.wait()).await;
    Ok(())
}

fn is_out_of_descriptors(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

/// One connection: its TLS handshake if any, then HTTP until it closes, is closed to make room, or the server
/// stops.
#[allow(clippy::too_many_arguments)]
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    security: Security,
    app: Router,
    limits: ConnectionLimits,
    rejections: Arc<Rejections>,
    stop: CancellationToken,
) {
    let evict = slot.connection.evict.clone();
    let evicted = || {
        let reason = slot
            .connection
            .evicted_for
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or("evicted_idle");
        rejections.record(AuditEvent::ConnectionRejected {
            reason,
            peer: peer.to_string(),
        })
    };
    match security {
        Security::Plain => {
            let socket = socket_of(&tcp);
            let served = http(tcp, ConnectInfo(peer), &slot, app, limits, &stop, socket);
            tokio::select! {
                // Claimed to make room, it may have ended by itself first (refusing a request it had read).
                outcome = served => if slot.connection.claimed() {
                    evicted()
                } else {
                    report(outcome, peer, &slot.connection, &rejections)
                },
                () = evict.cancelled() => evicted(),
            }
        }
        #[cfg(feature = "mtls")]
        Security::Tls(tls) => {
            let (acceptor, timeout, under) = tls.acceptor();
            let handshake = tokio::select! {
                handshake = super::mtls::handshake(&acceptor, timeout, under, tcp, peer) => handshake,
                () = evict.cancelled() => return evicted(),
                () = stop.cancelled() => return,
            };
            let (stream, tls_peer) = match handshake {
                Ok(pair) => pair,
                Err(event) => return rejections.record(event),
            };
            let socket = socket_of(stream.get_ref().0);
            let served = http(
                stream,
                ConnectInfo(tls_peer),
                &slot,
                app,
                limits,
                &stop,
                socket,
            );
            tokio::select! {
                // Claimed to make room, it may have ended by itself first (refusing a request it had read).
                outcome = served => if slot.connection.claimed() {
                    evicted()
                } else {
                    report(outcome, peer, &slot.connection, &rejections)
                },
                () = evict.cancelled() => evicted(),
            }
        }
    }
}

/// What ended a connection that hyper served: a header-read timeout on a request head begun, or on a connection
/// that never sent one, and a request head hyper could not parse and answered itself (`400`, or `431` for one too
/// large), before any layer of the runner's, are audited (red-team finding: the second left no record); anything
/// else is not: a client that went away, and a keep-alive connection idle after its answers (a trial's client
/// pausing between calls had each close recorded as a refusal, eating the throttle's room for real ones).
fn report(
    outcome: Result<(), hyper::Error>,
    peer: SocketAddr,
    connection: &Connection,
    rejections: &Rejections,
) {
    if let Err(error) = outcome {
        let reason = if connection.answer_not_read.load(Ordering::Relaxed) {
            Some("answer_not_read")
        } else if error.is_timeout() {
            connection
                .awaited
                .load(Ordering::Relaxed)
                .then_some("header_timeout")
        } else if error.is_parse() || error.is_parse_too_large() {
            Some("malformed_request")
        } else {
            None
        };
        if let Some(reason) = reason {
            rejections.record(AuditEvent::ConnectionRejected {
                reason,
                peer: peer.to_string(),
            });
        } else {
            tracing::debug!(%error, %peer, "connection ended");
        }
    }
}

/// Speaks HTTP/1.1 on `io` until the connection closes; at `stop`, finishes the request in progress and closes.
async fn http<I, P>(
    io: I,
    info: ConnectInfo<P>,
    slot: &Slot,
    app: Router,
    limits: ConnectionLimits,
    stop: &CancellationToken,
    socket: Option<Socket>,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    P: Clone + Send + Sync + 'static,
{
    let connection = slot.connection.clone();
    let registry = slot.registry.clone();
    let stopped = stop.clone();
    // How long the connection is kept idle between requests (the header-read timeout runs from an answer's end),
    // told on every answer as Node's own server tells it: a client that reads it (Node's `fetch`) does not send a
    // request on a connection as it closes (trial finding: a call racing the close failed in the client).
    let keep_alive = hyper::header::HeaderValue::try_from(format!(
        "timeout={}",
        limits.header_read_timeout.as_secs()
    ))
    .expect("digits are a header value");
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        // Not on an answer after which the connection closes as its client asked: `Connection: close`, or HTTP/1.0
        // without `Connection: keep-alive` (red-team finding: those answers said how long it would be kept).
        let asks = |token: &[u8]| {
            request
                .headers()
                .get_all(hyper::header::CONNECTION)
                .iter()
                .any(|v| {
                    v.as_bytes()
                        .split(|b| *b == b',')
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
                })
        };
        let kept = !asks(b"close")
            && (request.version() != hyper::Version::HTTP_10 || asks(b"keep-alive"));
        let keep_alive = kept.then(|| keep_alive.clone());
        // A body declared larger than is read and dropped after a refusal (`drain`): the connection closes with it
        // unread, and the refusal says so (red-team finding: a `413` for one said how long it would be kept).
        let undrained = request
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|length| length > super::drain::MAX_DRAINED as u64);
        let busy = Busy::new(&connection);
        let get = request.method() == hyper::Method::GET;
        let stopped = stopped.clone();
        let receiving = !hyper::body::Body::is_end_stream(request.body());
        let body_owner = BodyOwner(connection.clone());
        let mut request = request.map(|body| match receiving {
            true => Body::new(Receiving::new(body, connection.clone(), registry.clone())),
            false => Body::new(body),
        });
        request.extensions_mut().insert(info.clone());
        request.extensions_mut().insert(body_owner);
        let (report, mut drained) = super::drain::DrainReport::new();
        request.extensions_mut().insert(report);
        let app = app.clone();
        let connection = connection.clone();
        async move {
            // The connection is being closed to make room: nothing is begun on it.
            let Some(busy) = busy else {
                return Ok::<_, Infallible>(super::refusal::connection_closing());
            };
            let Ok(mut response) = app.oneshot(request).await;
            // A refusal may leave the body unread, read after it up to a bound: whether the connection is kept is
            // known once that ends, which the answer waits for (2 s at most), so that it says so either way
            // (red-team finding: a `413` for a chunked body over the bound said it would be kept).
            let refused = !response.status().is_success();
            let (busy, body_kept) = match drained.try_recv() {
                _ if !refused => (busy, true),
                Ok(ended) => (busy, ended),
                // No body was watched.
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => (busy, true),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    // Its body still being read and dropped, the connection has no request in progress: it may be
                    // closed to make room as an idle one (red-team finding: counted busy meanwhile, slow bodies of
                    // refused requests, no token needed, held every connection).
                    drop(busy);
                    let ended = matches!(
                        tokio::time::timeout(
                            super::drain::DRAIN_TIME + Duration::from_millis(100),
                            drained
                        )
                        .await,
                        // Read to its end, or no body was watched.
                        Ok(Ok(true) | Err(_))
                    );
                    match Busy::new(&connection) {
                        Some(busy) => (busy, ended),
                        // Closed to make room meanwhile: the refusal goes nowhere.
                        None => return Ok(super::refusal::connection_closing()),
                    }
                }
            };
            if (undrained || !body_kept) && refused {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            let closing = response
                .headers()
                .get(hyper::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            if let Some(keep_alive) = keep_alive.filter(|_| !closing) {
                response.headers_mut().insert(
                    hyper::header::HeaderName::from_static("keep-alive"),
                    keep_alive,
                );
            }
            // A standalone stream of events: any other answer finishes by itself.
            let ends = (get
                && response
                    .headers()
                    .get(hyper::header::CONTENT_TYPE)
                    .is_some_and(|kind| kind.as_bytes().starts_with(b"text/event-stream")))
            .then(|| Box::pin(stopped.cancelled_owned()));
            // The connection stays busy until the whole body is sent: a stream of events counts as a request
            // in progress.
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _busy: busy,
                    ends,
                })
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let io = Watched::new(
        io,
        slot.connection.clone(),
        limits.header_read_timeout,
        socket,
    );
    let served = builder.serve_connection(TokioIo::new(io), service);
    let mut served = std::pin::pin!(served);
    tokio::select! {
        outcome = served.as_mut() => outcome,
        () = stop.cancelled() => {
            // No request in progress (idle, or a head still coming): closed now. hyper's graceful shutdown waits
            // for a head begun, and the stop waited its 5 s for it (red-team finding).
            if slot.connection.claim_at_stop() {
                return Ok(());
            }
            served.as_mut().graceful_shutdown();
            served.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize) -> Arc<Registry> {
        Arc::new(Registry {
            max,
            open: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            slow_body_after: Duration::from_secs(10),
            buffered: AtomicUsize::new(0),
            max_buffered: usize::MAX,
        })
    }

    #[test]
    fn a_full_registry_closes_the_oldest_idle_connection_to_admit_a_new_one() {
        let registry = registry(3);
        let first = registry.admit().unwrap();
        let second = registry.admit().unwrap();
        let third = registry.admit().unwrap();
        // The first is answering a request; the second is the oldest idle one.
        let busy = Busy::new(&first.connection);
        let fourth = registry.admit().expect("room made");
        assert!(!first.connection.evict.is_cancelled());
        assert!(second.connection.evict.is_cancelled());
        assert!(!third.connection.evict.is_cancelled());
        assert_eq!(registry.lock().len(), 3);
        // A request the closed connection had just read is not begun (it was cut off halfway).
        assert!(Busy::new(&second.connection).is_none());
        // The evicted connection's slot is already given back; dropping it changes nothing.
        drop(second);
        assert_eq!(registry.lock().len(), 3);
        // Every connection busy: the next is refused.
        let _busy = [Busy::new(&third.connection), Busy::new(&fourth.connection)];
        assert!(registry.admit().is_none());
        drop(busy);
        assert!(registry.admit().is_some(), "the first is idle again");
    }

    /// Review finding: a stream of events ended at the stop before what it held was sent. It sends what its body
    /// has ready, and ends at the stop only while it waits for more.
    #[tokio::test]
    async fn a_stream_of_events_sends_what_it_holds_then_ends_at_the_stop() {
        use http_body_util::BodyExt;
        let registry = registry(4);
        let slot = registry.admit().unwrap();
        let (frames, mut body) =
            tokio::sync::mpsc::unbounded_channel::<Result<hyper::body::Bytes, Infallible>>();
        let stop = CancellationToken::new();
        let mut tracked = Tracked {
            body: Body::from_stream(futures_util::stream::poll_fn(move |cx| body.poll_recv(cx))),
            _busy: Busy::new(&slot.connection).unwrap(),
            ends: Some(Box::pin(stop.clone().cancelled_owned())),
        };
        frames.send(Ok("data: an answer\n\n".into())).unwrap();
        stop.cancel();
        let first = tracked.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "data: an answer\n\n");
        // Nothing more is ready: the stop ends it, though its sender is still open.
        assert!(tracked.frame().await.is_none());
        drop(frames);
    }

    #[test]
    fn the_cap_never_exceeds_what_the_descriptor_limit_leaves() {
        let limits = ConnectionLimits {
            max_connections: usize::MAX,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            shared: 0,
            max_buffered_body_bytes: usize::MAX,
        };
        let max = limits.effective_max();
        if let Some(descriptors) = descriptor_limit() {
            assert!((max as u64) <= descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(8));
        }
        assert!(max >= 1);
    }
}
