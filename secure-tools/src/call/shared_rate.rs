//! Rate limits shared by replicas (feature `redis`): the GCRA state of each caller and tool kept in Redis, so a
//! caller allowed ten calls a minute gets ten in all, however many replicas serve it.
//!
//! Each check runs one Lua script on the Redis server ([`GCRA`]), atomic there: it reads the key's theoretical
//! arrival time, decides on the server's own clock (`TIME`, so replicas' clocks need not agree), and stores the
//! new one with an expiry, all at once. The algorithm is the one `governor` runs in process (a burst of `count`, one
//! call back every `period / count`), so a rate means the same with or without Redis.
//!
//! When Redis cannot be reached (a connection and an answer take longer than [`REDIS_TIMEOUT`]; a connection being
//! made goes on meanwhile, up to [`REDIS_CONNECT_TIMEOUT`], for the checks after), a call is refused
//! `rate_limit_unavailable` (outcome `limited`, retry after a second) by default, or let through
//! ([`WhenUnavailable::Allow`]) if configured so: fail closed unless asked otherwise. Either way the call is
//! audited, and a failure is logged at most once per outage.
//!
//! A connection that fails a check, but for an error Redis answered, is replaced (a dropped one within the check,
//! once; otherwise the next check connects anew): one that stops answering without
//! closing (a Redis behind a proxy whose backend died, a host lost without a reset) would otherwise hold every check
//! to a timeout until the kernel gives it up, many minutes later, and one that received an answer it could not read
//! (not Redis's) would fail every check after it. An error Redis answers (`OOM` under `maxmemory`, `READONLY` from a
//! replica, `LOADING`) refuses the check the same way, but keeps the connection, which works. A connection reads at
//! most [`MAX_UNASKED_REDIS_BYTES`] more than it has sent (every answer here is shorter than its command; what it
//! sent counts at most 1 MiB past what it read, so that room does not add up over its life), and is
//! closed past that: the client's reader would otherwise read an answer of any declared size whole.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::limits::Rate;
use super::refusal::{Refusal, codes};

/// How long a check may wait, for a connection and Redis's answer, before the store counts as unreachable for it.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// How long making a connection may take: it goes on past the check that began it (a Redis a 200 ms round trip
/// away needs three of them to connect, more than a check's bound, but answers every check after), and the checks
/// meanwhile wait for it within their own bound.
pub const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long what a health check learnt of Redis (whether it took the checks' script) is kept: `/healthz`, asked
/// without authentication as often as anyone likes, asks Redis at most this often (concurrent asks wait for one
/// answer).
pub const HEALTH_ANSWER_KEPT: Duration = Duration::from_secs(1);

/// A connection being made, shared by the checks that wait for it.
type Connecting = futures_util::future::Shared<
    futures_util::future::BoxFuture<'static, Result<MultiplexedConnection, Arc<str>>>,
>;

/// GCRA on the Redis server. `KEYS[1]`: the caller and tool's key. `ARGV[1]`: the emission interval (µs, `period /
/// count`); `ARGV[2]`: the burst's tolerance (µs, `(count - 1) * interval`). Returns `{1, 0}` when the call may go,
/// or `{0, wait_µs}`.
pub const GCRA: &str = r"
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now_us
if tat < now_us then tat = now_us end
local allow_at = tat - tolerance
if now_us < allow_at then
  return {0, allow_at - now_us}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now_us) / 1000) + 1)
return {1, 0}
";

/// What a rate check does when Redis cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// Refuse the call, `rate_limit_unavailable` (the default: a limit that cannot be checked is not waived).
    #[default]
    Refuse,
    /// Let the call through, unlimited, and log that the limit is not enforced.
    Allow,
}

impl std::str::FromStr for WhenUnavailable {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "refuse" => Ok(WhenUnavailable::Refuse),
            "allow" => Ok(WhenUnavailable::Allow),
            other => Err(format!(
                "`{}`: expected `refuse` or `allow`",
                other.escape_debug()
            )),
        }
    }
}

/// `work` ended at `bound` (a timeout, as Redis's own would be). On a runtime without a time driver (where a timer
/// panics) the connection's own timeout is the bound.
async fn bounded<T>(
    work: impl Future<Output = Result<T, redis::RedisError>>,
    bound: Duration,
) -> Result<T, redis::RedisError> {
    match super::panic::quietly(|| tokio::time::sleep(bound)) {
        Ok(sleep) => tokio::select! {
            answer = work => answer,
            () = sleep => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer from Redis in time",
            ))),
        },
        Err(()) => work.await,
    }
}

/// The connection in use, if one was made since the last was given up, and how many were given up.
#[derive(Default)]
struct Slot {
    generation: u64,
    connection: Option<MultiplexedConnection>,
    /// The connection being made, for `generation`.
    connecting: Option<Connecting>,
}

/// The connection being made for `generation` failed: the next check makes a new one.
fn forget_connecting(shared: &Shared, generation: u64) {
    let mut slot = shared
        .connection
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if slot.generation == generation {
        slot.connecting = None;
    }
}

/// How many bytes a connection to Redis may read beyond those it has written. Every command sent is longer than
/// its answer (a check's answer is two integers; `SCRIPT LOAD`'s the script's hash; an error a line), so a
/// connection past this reads what was never asked for (red-team finding: one answer declaring a 3 GB bulk string
/// was read whole, the server's memory peaking at twice that, after its check had given up).
pub const MAX_UNASKED_REDIS_BYTES: u64 = 64 * 1024;

/// How many bytes written and not yet answered count towards what a connection may read: far more than the
/// commands of every check waiting at once.
const MAX_UNANSWERED_REDIS_BYTES: u64 = 1024 * 1024;

/// A connection to Redis that fails once it has read [`MAX_UNASKED_REDIS_BYTES`] more than it has written (what it
/// wrote counted at most [`MAX_UNANSWERED_REDIS_BYTES`] past what it read): the client's reader has no bound of its
/// own on an answer's size.
struct Bounded<S> {
    inner: S,
    written: u64,
    read: u64,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Bounded<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.read > self.written.saturating_add(MAX_UNASKED_REDIS_BYTES) {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "Redis sent over {MAX_UNASKED_REDIS_BYTES} bytes more than it was sent: not the answers of a \
                     rate check"
                ),
            )));
        }
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.read = self.read.saturating_add(read);
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Bounded<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(written)) = &polled {
            // What was written and not answered counts up to a bound: the many bytes by which commands outweigh
            // their answers would otherwise add up over a connection's life into room for any answer (a review's
            // finding: 55 MB after 320,000 checks).
            self.written = self
                .written
                .saturating_add(*written as u64)
                .min(self.read.saturating_add(MAX_UNANSWERED_REDIS_BYTES));
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection to the Redis `client` names, over a [`Bounded`] stream, its driver spawned: set up (`AUTH`,
/// `SELECT`) as the client would, each answer awaited [`REDIS_TIMEOUT`] at most.
async fn connect_bounded(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let info = client.get_connection_info();
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(REDIS_TIMEOUT));
    macro_rules! over {
        ($stream:expr) => {{
            let stream = Bounded {
                inner: $stream,
                written: 0,
                read: 0,
            };
            let (connection, driver) =
                MultiplexedConnection::new_with_config(info.redis_settings(), stream, config)
                    .await?;
            tokio::spawn(driver);
            Ok(connection)
        }};
    }
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => {
            let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            let _ = stream.set_nodelay(true);
            over!(stream)
        }
        #[cfg(unix)]
        redis::ConnectionAddr::Unix(path) => over!(tokio::net::UnixStream::connect(path).await?),
        _ => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "only redis:// and redis+unix:// URLs are supported (no TLS)",
        ))),
    }
}

/// Where a tool set's rate limits keep their state when several replicas share it: a Redis server.
#[derive(Clone)]
pub struct RedisRates {
    client: redis::Client,
    script: Arc<redis::Script>,
    prefix: Arc<str>,
    /// Whether the namespace was given (else the runner names it after the server).
    named: bool,
    when_unavailable: WhenUnavailable,
    shared: Arc<Shared>,
}

struct Shared {
    /// Made on the first check, inside the runtime; it reconnects by itself after an I/O error, and is replaced
    /// after any other failure.
    connection: Mutex<Slot>,
    /// Whether the current outage has been logged.
    down: AtomicBool,
    /// What the last health check learnt (whether Redis took its script), and when.
    health: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

impl std::fmt::Debug for RedisRates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRates")
            .field("prefix", &self.prefix)
            .field("when_unavailable", &self.when_unavailable)
            .finish_non_exhaustive()
    }
}

/// How a call the store let through was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Within the rate, counted in Redis.
    Counted,
    /// Redis could not be reached, and [`WhenUnavailable::Allow`] let it through uncounted.
    Unchecked,
}

/// What the keys of `namespace` begin with: its length marks where it ends, so no namespace and caller can spell
/// another's.
fn prefix_of(namespace: &str) -> Arc<str> {
    Arc::from(format!(
        "secure-tools:rate:{}:{namespace}:",
        namespace.len()
    ))
}

impl RedisRates {
    /// The Redis server at `url` (`redis://host:6379/0`, `redis+unix:///run/redis.sock`), keys under
    /// `secure-tools:rate:{length}:{namespace}:` (the same for every replica that shares the limits, and another for
    /// each other server sharing the Redis: not a replica's own id; the length marks where the namespace ends, so no
    /// namespace and caller can spell another's). Nothing is
    /// connected until the first check.
    pub fn open(url: &str, namespace: &str) -> Result<Self, redis::RedisError> {
        let mut rates = Self::open_unnamed(url)?;
        rates.prefix = prefix_of(namespace);
        rates.named = true;
        Ok(rates)
    }

    /// [`RedisRates::open`] with a namespace to come: see [`RedisRates::named_if_unnamed`].
    pub(crate) fn open_unnamed(url: &str) -> Result<Self, redis::RedisError> {
        Ok(RedisRates {
            client: redis::Client::open(url)?,
            script: Arc::new(redis::Script::new(GCRA)),
            prefix: prefix_of("secure-tools"),
            named: false,
            when_unavailable: WhenUnavailable::Refuse,
            shared: Arc::new(Shared {
                connection: Mutex::new(Slot::default()),
                down: AtomicBool::new(false),
                health: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Whether the URL the store was opened with holds a password.
    pub(crate) fn has_password(&self) -> bool {
        self.client
            .get_connection_info()
            .redis_settings()
            .password()
            .is_some()
    }

    /// Authenticates with `password` (and the URL's user, if it names one): for a password kept out of the URL.
    pub fn password(self, password: &str) -> Result<Self, redis::RedisError> {
        let info = self.client.get_connection_info().clone();
        let settings = info.redis_settings().clone().set_password(password);
        Ok(RedisRates {
            client: redis::Client::open(info.set_redis_settings(settings))?,
            ..self
        })
    }

    /// Keys under `namespace` unless the store was opened with one.
    pub(crate) fn named_if_unnamed(mut self, namespace: &str) -> Self {
        if !self.named {
            self.prefix = prefix_of(namespace);
            self.named = true;
        }
        self
    }

    /// What every key begins with.
    #[cfg(test)]
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// What a check does when Redis cannot be reached (default: refuse).
    pub fn when_unavailable(mut self, mode: WhenUnavailable) -> Self {
        self.when_unavailable = mode;
        self
    }

    /// Whether calls are refused while Redis cannot be reached (for the HTTP runner's health check).
    #[cfg(feature = "http")]
    pub(crate) fn refuses_when_unavailable(&self) -> bool {
        self.when_unavailable == WhenUnavailable::Refuse
    }

    /// Whether Redis takes a check now: the checks' own script run on a key of its own (`{prefix}health`), within a
    /// check's bound ([`REDIS_TIMEOUT`]), on the checks' connection (made if there is none; replaced, as after a
    /// failed check, if it fails), so that what refuses checks (no answer, out of memory, a read-only replica,
    /// writes paused) fails it too (a second round's: a `PING` passed while every check was refused `OOM`). For the
    /// HTTP runner's health check and the start, which log an outage as a check does. An answer is kept for
    /// [`HEALTH_ANSWER_KEPT`], and asks meanwhile wait for the one under way, so that health checks reach Redis at
    /// most about once a second.
    pub(crate) async fn answers(&self) -> bool {
        let mut last = self.shared.health.lock().await;
        if let Some((at, answered)) = *last
            && at.elapsed() < HEALTH_ANSWER_KEPT
        {
            return answered;
        }
        let mut generation = None;
        let work = async {
            let (made, mut connection) = self.connection().await?;
            generation = Some(made);
            let mut script = self.script.key(format!("{}health", self.prefix));
            script.arg(1).arg(0);
            script.invoke_async::<(i64, i64)>(&mut connection).await
        };
        let answer = bounded(work, REDIS_TIMEOUT).await;
        self.after(&answer, generation);
        let answered = answer.is_ok();
        *last = Some((std::time::Instant::now(), answered));
        answered
    }

    /// What follows a round trip to Redis, a check's or a health check's, on the connection of `generation` (if one was had):
    /// the connection replaced after any failure but an error Redis answered, and the outage's start and end
    /// logged once each.
    fn after<T>(&self, answer: &Result<T, redis::RedisError>, generation: Option<u64>) {
        // Any failure but an error Redis answered replaces the connection: after a timeout it may never answer
        // again, and after an answer it could not read (red-team finding: an HTTP error from whatever held the port
        // while Redis was down) what comes next on it is unreadable too. An error Redis answered (out of memory, a
        // read-only replica, loading its data) says the connection works: a new one would meet the same answer, at
        // the cost of a connection a check.
        match answer {
            Ok(_) => {
                if self.shared.down.swap(false, Ordering::Relaxed) {
                    tracing::warn!("the rate limit's Redis answers again");
                }
            }
            Err(error) => {
                let answered = matches!(
                    error.kind(),
                    redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
                );
                if let Some(generation) = generation
                    && !answered
                {
                    self.give_up(generation);
                }
                if !self.shared.down.swap(true, Ordering::Relaxed) {
                    if answered {
                        tracing::error!(
                            code = error.code().unwrap_or_default(),
                            %error,
                            mode = ?self.when_unavailable,
                            "the rate limit's Redis answers its checks with an error"
                        );
                    } else {
                        tracing::error!(%error, mode = ?self.when_unavailable, "the rate limit's Redis cannot be reached");
                    }
                }
            }
        }
    }

    /// The connection to use, and its generation (for [`Self::give_up`]). One not made yet is made on a task of its
    /// own, which goes on if the check waiting for it gives up (red-team finding: made within the check, a connection
    /// to a Redis 200 ms away never fit in a check's bound, and every check was refused for as long as the latency
    /// lasted).
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), redis::RedisError> {
        use futures_util::FutureExt as _;
        let (generation, connecting) = {
            let mut slot = self
                .shared
                .connection
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(connection) = &slot.connection {
                return Ok((slot.generation, connection.clone()));
            }
            let connecting = match &slot.connecting {
                Some(connecting) => connecting.clone(),
                None => {
                    let client = self.client.clone();
                    let shared = self.shared.clone();
                    let generation = slot.generation;
                    let made = tokio::spawn(async move {
                        let made = tokio::time::timeout(REDIS_CONNECT_TIMEOUT, async move {
                            let mut connection = connect_bounded(&client).await?;
                            // The script loaded with the connection, so that the first check is one round trip,
                            // not two (a refused `EVALSHA`, then `EVAL`): with Redis 200 ms away the two did not
                            // fit in a check's bound, and its timeout gave the connection up again (red-team
                            // finding). A failure to load is only a slower first check. Sent as a plain command:
                            // the crate's `load_async` asserts the hash Redis answers (in debug builds), and one
                            // that answers another made every connection panic (red-team finding).
                            let _ = redis::cmd("SCRIPT")
                                .arg("LOAD")
                                .arg(GCRA)
                                .query_async::<String>(&mut connection)
                                .await;
                            Ok::<_, redis::RedisError>(connection)
                        })
                        .await;
                        if !matches!(made, Ok(Ok(_))) {
                            // Forgotten as it fails: kept, it would be the answer of the next check, which may come
                            // when Redis answers again (the check that began it may have given up long before).
                            forget_connecting(&shared, generation);
                        }
                        made
                    });
                    let connecting = async move {
                        match made.await {
                            Ok(Ok(Ok(connection))) => Ok(connection),
                            Ok(Ok(Err(error))) => Err(Arc::from(error.to_string())),
                            Ok(Err(_)) => Err(Arc::from("connecting took too long")),
                            Err(_) => Err(Arc::from("connecting failed")),
                        }
                    }
                    .boxed()
                    .shared();
                    slot.connecting = Some(connecting.clone());
                    connecting
                }
            };
            (slot.generation, connecting)
        };
        let made = connecting.clone().await;
        let mut slot = self
            .shared
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only the connection this check waited for: once it failed, another may have been begun in its place.
        if slot.generation == generation
            && slot
                .connecting
                .as_ref()
                .is_some_and(|current| current.ptr_eq(&connecting))
        {
            slot.connecting = None;
            if let Ok(connection) = &made {
                slot.connection = Some(connection.clone());
            }
        }
        made.map(|connection| (generation, connection))
            .map_err(|message| {
                redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    message.to_string(),
                ))
            })
    }

    /// The connection of `generation` failed a check: the next check makes a new one (unless another check
    /// has already replaced it). Checks still waiting on it keep it until they end.
    fn give_up(&self, generation: u64) {
        let mut slot = self
            .shared
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.generation == generation {
            slot.generation += 1;
            slot.connection = None;
            slot.connecting = None;
        }
    }

    /// One call of `tool` by `caller` under `rate`, the limit of `scope` (`set` or `tool`: the set's rate and a
    /// tool's own are two limits, each with its own state).
    pub(crate) async fn check(
        &self,
        rate: Rate,
        scope: &str,
        caller: &str,
        tool: &str,
        until: Option<std::time::Instant>,
    ) -> Result<Checked, Refusal> {
        let interval = (rate.period / rate.count.max(1)).as_micros().max(1);
        let tolerance = interval * u128::from(rate.count.saturating_sub(1));
        // The caller's length first, so that no caller and tool pair can spell another's key.
        let key = format!("{}{scope}:{}:{caller}:{tool}", self.prefix, caller.len());
        let mut script = self.script.key(key);
        script.arg(interval.to_string()).arg(tolerance.to_string());
        let mut generation = None;
        let work = async {
            let (made, mut connection) = self.connection().await?;
            generation = Some(made);
            // A connection Redis dropped (a restart) fails the command sent on it: it is given up, and the command
            // tried once more on a new connection, within the same bound. (A step that ran before its answer was
            // lost is counted twice: the error is on the limit's side.)
            match script.invoke_async::<(i64, i64)>(&mut connection).await {
                // Not after a timeout: the bound is already spent.
                Err(error) if error.is_connection_dropped() && !error.is_timeout() => {
                    self.give_up(made);
                    let (made, mut connection) = self.connection().await?;
                    generation = Some(made);
                    script.invoke_async::<(i64, i64)>(&mut connection).await
                }
                answer => answer,
            }
        };
        // The connection's own timeout bounds each answer; this bounds the whole, waiting for a connection
        // being made, reconnecting and retrying included, to the time documented (red-team finding: the wait for a
        // connection was outside it, and a Redis that took connections and never answered held each check 5 s).
        // A connection being made goes on past it. On a runtime without a time driver (where a timer panics) the
        // connection's own timeout is the bound. A call's time limit (`until`) that comes first ends it too, as
        // its own bound would: the connection is replaced all the same (a red team's: cut short by a 200 ms time
        // limit, before the bound's end replaced it, a connection that no longer answered was kept for good).
        let bound = until.map_or(REDIS_TIMEOUT, |until| {
            REDIS_TIMEOUT.min(until.saturating_duration_since(std::time::Instant::now()))
        });
        let answer = bounded(work, bound).await;
        // A script's answer (counted or not) is an answer: only an error is an outage.
        self.after(&answer, generation);
        match answer {
            Ok((1, _)) => Ok(Checked::Counted),
            Ok((_, wait_us)) => {
                let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(Refusal::limited(
                    codes::RATE_LIMITED,
                    format!("the rate limit of {rate} for this tool is used up; retry in {secs} s"),
                )
                .retry_after(Duration::from_secs(secs)))
            }
            Err(_) => match self.when_unavailable {
                WhenUnavailable::Allow => Ok(Checked::Unchecked),
                WhenUnavailable::Refuse => Err(Refusal::limited(
                    codes::RATE_LIMIT_UNAVAILABLE,
                    "the rate limit cannot be checked now; retry shortly",
                )
                .retry_after(Duration::from_secs(1))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A review's finding: the room a connection had to read grew by what each command outweighed its answer, so
    /// that after 320,000 checks it read a 55 MB answer. What was written counts at most 1 MiB past what was read.
    #[tokio::test]
    async fn the_room_to_read_does_not_add_up_over_a_connections_life() {
        let (ours, mut redis) = tokio::io::duplex(1 << 20);
        let mut bounded = Bounded {
            inner: ours,
            written: 0,
            read: 0,
        };
        let mut answer = [0u8; 20];
        for _ in 0..20_000 {
            bounded.write_all(&[b'c'; 200]).await.unwrap();
            let mut command = [0u8; 200];
            redis.read_exact(&mut command).await.unwrap();
            redis.write_all(&[b'a'; 20]).await.unwrap();
            bounded.read_exact(&mut answer).await.unwrap();
        }
        // 3.6 MB more written than read over its life; an answer of 2 MiB is more than it may read.
        let flood = tokio::spawn(async move {
            let _ = redis.write_all(&vec![b'x'; 2 << 20]).await;
            redis
        });
        let mut sink = vec![0u8; 64 * 1024];
        let mut read = 0usize;
        let refused = loop {
            match bounded.read(&mut sink).await {
                Ok(0) => break false,
                Ok(n) => read += n,
                Err(error) => break error.to_string().contains("more than it was sent"),
            }
            if read >= 2 << 20 {
                break false;
            }
        };
        assert!(refused, "read {read} bytes of the flood");
        assert!(
            read <= (MAX_UNANSWERED_REDIS_BYTES + MAX_UNASKED_REDIS_BYTES) as usize + 64 * 1024
        );
        drop(bounded);
        let _ = flood.await;
    }
}
