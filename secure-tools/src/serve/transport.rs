//! Newline-delimited JSON-RPC over a byte stream, with the policy rmcp's own stream transport leaves out.
//!
//! rmcp's `AsyncRwTransport` drops a line over its size limit without answering (the caller waits forever),
//! ignores input that is not JSON, keeps the last of two duplicate keys, and ends the server when a notification
//! arrives before `initialize`. This transport answers each of those with the JSON-RPC error the specification
//! names, using rmcp's message types, and hands everything else to rmcp unchanged:
//!
//! | input | answer |
//! | --- | --- |
//! | not UTF-8, not JSON | `-32700` parse error (id if one can be read, else `null`) |
//! | over the size limit | `-32600` invalid request, with the id read from the line as it streams past, never buffered |
//! | duplicate key, nesting too deep, batch array, wrong `jsonrpc`, unknown shape | `-32600` invalid request |
//! | a `tools/call` whose params are not a name and an arguments object | `-32602` invalid params |
//! | an id other than a string or an integer as written (`1.0`, `1e2`, `-0`, past 64 bits) | `-32600`, id `null` |
//! | notification or response before the session starts | dropped (nobody waits for an answer) |
//!
//! Every refusal is audited as a `message_rejected` event; version refusals are audited as the messages that carry
//! them go out, and sessions as they start (at the answer to `initialize`; for a stateless first request, when rmcp
//! takes it).
//!
//! Everything written goes through one queue of [`OUTBOX_CAPACITY`] messages, which one task writes out in order.
//! A line is read only when the queue has room for its answer: a client that stops reading its answers stops
//! being read, rather than making the server hold an answer (once, a task) per line it sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rmcp::RoleServer;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, ClientRequest, ErrorCode, ErrorData, RequestId,
    ServerJsonRpcMessage, ServerResult,
};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::audit::{Audit, AuditEvent};

use super::id_scan::IdScanner;

/// The default limit on one incoming message: 4 MiB, the same as rmcp's streamable HTTP body limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How many messages may wait to be written. While the queue is full no input is read, so a client that does not
/// read its answers cannot make the server hold more than this, plus the answers of the requests already being
/// handled when it filled.
const OUTBOX_CAPACITY: usize = 64;

/// How long [`Transport::close`] waits for the queued messages to be written (a client that stopped reading
/// would otherwise hold the server's exit forever).
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A server transport over a reader and a writer (stdin and stdout for the stdio runner).
///
/// Cheap to clone; clones share the stream, so the runner can start a new rmcp session on the same stream after
/// a failed `initialize`.
pub struct LineTransport<R, W> {
    reader: Arc<Mutex<Reader<R>>>,
    outbox: Arc<Outbox<W>>,
    lifecycle: Arc<Lifecycle>,
    audit: Audit,
    hold_tool_arguments: bool,
    /// The JSON values a message may hold (see [`crate::strict_json::max_values`]).
    max_values: usize,
}

impl<R, W> Clone for LineTransport<R, W> {
    fn clone(&self) -> Self {
        LineTransport {
            reader: self.reader.clone(),
            outbox: self.outbox.clone(),
            lifecycle: self.lifecycle.clone(),
            audit: self.audit.clone(),
            hold_tool_arguments: self.hold_tool_arguments,
            max_values: self.max_values,
        }
    }
}

/// The queue of messages to write, and the task that writes them.
struct Outbox<W> {
    queue: mpsc::Sender<Outgoing>,
    /// The output and the queue's receiving end, until the writing task starts on first use (so a transport can
    /// be made outside a runtime).
    unstarted: std::sync::Mutex<Option<(W, mpsc::Receiver<Outgoing>)>>,
    /// Cancelled once the server is stopping: from then on a message waits for room in the queue, and the close
    /// for the queue to be written, [`GIVE_UP_WAIT`] at most (a client that stopped reading would otherwise hold
    /// the stop up, rmcp's waits and ours in turn, past a host's patience: red-team finding).
    give_up: tokio_util::sync::CancellationToken,
    /// A close gave up on the queue: later ones do not wait again.
    abandoned: AtomicBool,
}

/// How long, once the server is stopping, a message may wait for room in the output queue and a close for the
/// queue to be written: ample for a client that reads, short enough for a host that kills a server two seconds
/// after asking it to stop.
const GIVE_UP_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

enum Outgoing {
    /// One encoded message, with its newline.
    Line(Vec<u8>),
    /// Flush, then report: everything queued before is written.
    Flush(oneshot::Sender<std::io::Result<()>>),
}

impl<W: AsyncWrite + Unpin + Send + 'static> Outbox<W> {
    fn new(output: W) -> Self {
        let (queue, receiver) = mpsc::channel(OUTBOX_CAPACITY);
        Outbox {
            queue,
            unstarted: std::sync::Mutex::new(Some((output, receiver))),
            give_up: tokio_util::sync::CancellationToken::new(),
            abandoned: AtomicBool::new(false),
        }
    }

    /// Resolves [`GIVE_UP_WAIT`] after the server began to stop.
    async fn given_up(&self) {
        self.give_up.cancelled().await;
        tokio::time::sleep(GIVE_UP_WAIT).await;
    }

    /// The queue, its writing task started.
    fn queue(&self) -> &mpsc::Sender<Outgoing> {
        let unstarted = self
            .unstarted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((output, receiver)) = unstarted {
            tokio::spawn(write_queued(output, receiver));
        }
        &self.queue
    }
}

/// Writes the queued messages in order, flushing whenever the queue runs empty. Stops at the first write error
/// (the reader of the output is gone): the queue then closes, and senders learn it at once.
async fn write_queued<W: AsyncWrite + Unpin>(mut output: W, mut queue: mpsc::Receiver<Outgoing>) {
    while let Some(item) = queue.recv().await {
        let result = match item {
            Outgoing::Line(bytes) => match output.write_all(&bytes).await {
                Ok(()) if queue.is_empty() => output.flush().await,
                other => other,
            },
            Outgoing::Flush(done) => {
                let result = output.flush().await;
                let failed = result.is_err();
                let _ = done.send(result);
                if failed {
                    break;
                }
                continue;
            }
        };
        if let Err(err) = result {
            tracing::error!(error = %err, "writing to the output stream failed; nothing more is written");
            break;
        }
    }
}

fn output_closed() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the output stream is closed",
    )
}

#[derive(Default)]
struct Lifecycle {
    /// A session is running: `initialize` was answered, or rmcp took a stateless request. Set while `pending`'s
    /// lock is held, so that whoever finds the pending request gone also finds the session started.
    started: AtomicBool,
    /// The request that may start a session (an `initialize`, or a first stateless request with the metadata
    /// rmcp requires), until it is answered or, for a stateless one, rmcp takes it.
    pending: std::sync::Mutex<Option<PendingSession>>,
    /// The last request before a session that rmcp refuses (not an `initialize` or a `ping`, and without a
    /// stateless request's metadata), with its size: its refusal is audited.
    before_session: std::sync::Mutex<Option<(RequestId, usize)>>,
    /// The session started without `initialize` (the stateless revision): rmcp then requires every request's
    /// metadata.
    inline: AtomicBool,
    /// Requests within a session that rmcp refuses for incomplete metadata, with their sizes, until their refusal
    /// goes out (at most [`MAX_REFUSED_PENDING`]; rmcp answers them at once).
    refused: std::sync::Mutex<std::collections::VecDeque<(RequestId, usize)>>,
    /// Whether `refused` may hold anything, so that answers are not made to take its lock while it is empty.
    any_refused: AtomicBool,
    /// The id the session's calls carry in their records, for its `session` record (the runner sets it).
    session_id: std::sync::Mutex<Option<Arc<str>>>,
    /// The ids of the client's requests in progress (see `in_flight`): a request reusing one is refused.
    in_flight: Arc<super::in_flight::InFlight>,
    /// Cancelled when the input ends.
    input_ended: tokio_util::sync::CancellationToken,
}

/// How many requests refused within a session are remembered until their refusal goes out.
const MAX_REFUSED_PENDING: usize = 64;

struct PendingSession {
    request_id: RequestId,
    /// `None` for `initialize`, whose version is the one negotiated in the answer.
    inline_version: Option<String>,
    client_name: Option<String>,
    client_version: Option<String>,
}

struct Reader<R> {
    read: BufReader<R>,
    line: Vec<u8>,
    max: usize,
    /// Set while the tail of an over-long line is being skipped.
    discarding: Option<Discard>,
    /// A place in the output queue, taken before a line is read, for its answer if the line is refused. `None`
    /// before one is taken, and for good once the output is closed.
    room: Option<mpsc::OwnedPermit<Outgoing>>,
}

struct Discard {
    scanner: IdScanner,
    bytes: usize,
    /// The last byte passed over was `\r`: with a `\n` next, the line's end is two bytes.
    after_cr: bool,
}

enum Line {
    Complete,
    TooLarge { id: Option<RequestId>, bytes: usize },
    Eof,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads one line into `self.line`, never holding more than `max` bytes of it. Cancel-safe: a partial line
    /// stays in `self.line` (or in `self.discarding`) for the next call.
    async fn read_line(&mut self) -> std::io::Result<Line> {
        loop {
            let available = self.read.fill_buf().await?;
            if available.is_empty() {
                // The input ends: a last line without its newline is still a line (and an over-long one still
                // refused), not dropped unanswered.
                if let Some(discard) = self.discarding.take() {
                    return Ok(Line::TooLarge {
                        id: discard.scanner.id(),
                        bytes: discard.bytes,
                    });
                }
                // (One without its end may have taken the two bytes of room an end would have.)
                if self.line.len() > self.max {
                    let mut scanner = IdScanner::default();
                    scanner.feed(&self.line);
                    let bytes = self.line.len();
                    self.line.clear();
                    return Ok(Line::TooLarge {
                        id: scanner.id(),
                        bytes,
                    });
                }
                if !self.line.is_empty() {
                    return Ok(Line::Complete);
                }
                return Ok(Line::Eof);
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let take = newline.map_or(available.len(), |i| i + 1);
            let chunk = &available[..take];
            // The limit is the message's: its line's end (`\n`, or `\r\n`) is not counted (red-team finding: a
            // message of exactly the limit was refused). Until the end is seen, the line may hold two bytes more.
            let after_cr = match &self.discarding {
                Some(discard) => discard.after_cr,
                None => self.line.last() == Some(&b'\r'),
            };
            let end = match newline {
                Some(_) if after_cr && take == 1 => 2,
                Some(_) if chunk.ends_with(b"\r\n") => 2,
                Some(_) => 1,
                None => 0,
            };
            let room = if newline.is_some() {
                self.max + end
            } else {
                self.max + 2
            };
            let mut finished = None;
            if let Some(discard) = &mut self.discarding {
                discard.scanner.feed(chunk);
                discard.bytes += take;
                discard.after_cr = chunk.last() == Some(&b'\r');
                if newline.is_some() {
                    let discard = self.discarding.take().expect("discarding");
                    finished = Some(Line::TooLarge {
                        id: discard.scanner.id(),
                        bytes: discard.bytes - end,
                    });
                }
            } else if self.line.len() + take > room {
                let mut scanner = IdScanner::default();
                scanner.feed(&self.line);
                scanner.feed(chunk);
                let bytes = self.line.len() + take - end;
                self.line.clear();
                self.line.shrink_to(64 * 1024);
                if newline.is_some() {
                    finished = Some(Line::TooLarge {
                        id: scanner.id(),
                        bytes,
                    });
                } else {
                    self.discarding = Some(Discard {
                        scanner,
                        bytes,
                        after_cr: chunk.last() == Some(&b'\r'),
                    });
                }
            } else {
                self.line.extend_from_slice(chunk);
                if newline.is_some() {
                    finished = Some(Line::Complete);
                }
            }
            self.read.consume(take);
            if let Some(line) = finished {
                return Ok(line);
            }
        }
    }
}

/// Why a line was refused, and how to answer it.
struct Refusal {
    id: Option<RequestId>,
    reason: &'static str,
    /// `None`: do not answer (a malformed notification).
    error: Option<ErrorData>,
}

impl<R, W> LineTransport<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    /// The id of the session, once it has begun (its `session` record written), for the records of the messages
    /// refused in it.
    fn session_in_force(&self) -> Option<String> {
        if !self.session_started() {
            return None;
        }
        self.lifecycle
            .session_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            .map(str::to_owned)
    }

    /// The id of the session about to be served, which its calls' records carry, for its `session` record.
    pub(crate) fn set_session_id(&self, id: Option<Arc<str>>) {
        *self
            .lifecycle
            .session_id
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = id;
    }

    /// A transport reading from `read` and writing to `write`, refusing messages over `max_message_bytes`.
    pub fn new(read: R, write: W, max_message_bytes: usize, audit: Audit) -> Self {
        LineTransport {
            reader: Arc::new(Mutex::new(Reader {
                read: BufReader::with_capacity(64 * 1024, read),
                line: Vec::new(),
                max: max_message_bytes,
                discarding: None,
                room: None,
            })),
            outbox: Arc::new(Outbox::new(write)),
            lifecycle: Arc::default(),
            audit,
            hold_tool_arguments: false,
            max_values: crate::strict_json::max_values(max_message_bytes),
        }
    }

    /// Hands rmcp each `tools/call` with its arguments (and, under the stateless revision, its answers:
    /// `inputResponses` and `requestState`) held in the request's extensions rather than in its params. rmcp logs
    /// every request it receives whole, params included, at `debug` (`received request`) and `trace` (`new
    /// event`), but shows extensions only as `Extensions`: this keeps redacted arguments and a user's answers out
    /// of those events whatever level a subscriber listens at. (While no subscriber listens at `debug` or more,
    /// rmcp's events are not built and the arguments stay where they are.)
    ///
    /// Only for a handler that takes the arguments back from there: [`SecureServer`](super::SecureServer) and
    /// the routes of [`ToolSet::tool_router`](crate::ToolSet::tool_router) do; a tool of rmcp's own `#[tool]`
    /// served over this transport would see none. The stdio runner sets it.
    pub fn hold_tool_arguments(mut self) -> Self {
        self.hold_tool_arguments = true;
        self
    }

    /// Whether a session has started on this stream.
    pub fn session_started(&self) -> bool {
        self.lifecycle.started.load(Ordering::SeqCst)
    }

    fn audit(&self, event: AuditEvent) {
        if let Err(err) = self.audit.record(event) {
            tracing::error!(error = %err, "audit record not written");
        }
    }

    /// Classifies one complete line: a message for rmcp, a refusal to answer, or nothing (blank line).
    fn classify(&self, raw: &[u8]) -> Result<Option<ClientJsonRpcMessage>, Refusal> {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let scanned_id = || {
            let mut scanner = IdScanner::default();
            scanner.feed(line);
            scanner.id()
        };
        let Ok(text) = std::str::from_utf8(line) else {
            return Err(Refusal {
                id: scanned_id(),
                reason: "not_utf8",
                error: Some(ErrorData::parse_error(
                    "Parse error: the message is not valid UTF-8",
                    None,
                )),
            });
        };
        // The common case first: a well-formed message, checked for duplicate keys and counted without building
        // it, then parsed by rmcp's types once. Everything else takes the slow path below, which explains the
        // refusal; a message of too many values is refused before anything builds it (it would take about a
        // hundred times its size: red-team finding).
        match crate::strict_json::check_bounded(text, self.max_values) {
            Ok(()) => {
                if let Ok(message) = serde_json::from_str::<ClientJsonRpcMessage>(text)
                    && id_as_written(&message, line)
                {
                    return refuse_misshapen_call(message).map(Some);
                }
            }
            Err(error)
                if error
                    .to_string()
                    .starts_with(crate::strict_json::TOO_MANY_VALUES) =>
            {
                return Err(Refusal {
                    id: scanned_id(),
                    reason: "too_many_values",
                    error: Some(invalid_request(format!(
                        "Invalid request: the message holds more than {} JSON values (one per 16 bytes of the \
                         message size limit)",
                        self.max_values
                    ))),
                });
            }
            Err(_) => {}
        }
        let value = match crate::strict_json::from_str_strict(text) {
            Ok(value) => value,
            Err(err) => {
                let message = err.to_string();
                let (reason, error) = if message.starts_with("duplicate key") {
                    (
                        "duplicate_key",
                        invalid_request(format!("Invalid request: {message}")),
                    )
                } else if message.starts_with("recursion limit exceeded") {
                    (
                        "too_deep",
                        invalid_request("Invalid request: the message is nested too deeply"),
                    )
                } else {
                    (
                        "parse_error",
                        ErrorData::parse_error("Parse error: the message is not valid JSON", None),
                    )
                };
                return Err(Refusal {
                    id: scanned_id(),
                    reason,
                    error: Some(error),
                });
            }
        };
        let Value::Object(object) = &value else {
            let reason = if value.is_array() {
                "batch"
            } else {
                "not_an_object"
            };
            let text = if value.is_array() {
                "Invalid request: batches are not supported"
            } else {
                "Invalid request: a message is a JSON object"
            };
            return Err(Refusal {
                id: None,
                reason,
                error: Some(invalid_request(text)),
            });
        };
        let id = object.get("id").and_then(valid_id);
        let is_notification = !object.contains_key("id") && object.contains_key("method");
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(Refusal {
                id,
                reason: "bad_jsonrpc_version",
                error: Some(invalid_request(
                    "Invalid request: `jsonrpc` must be \"2.0\"",
                )),
            });
        }
        if object.contains_key("id") && id.is_none() {
            return Err(Refusal {
                id: None,
                reason: "bad_id",
                error: Some(invalid_request(
                    "Invalid request: `id` must be a string or an integer (no fraction, no exponent, no `-0`, \
                     within 64 bits)",
                )),
            });
        }
        match serde_json::from_value::<ClientJsonRpcMessage>(value) {
            Ok(message) => refuse_misshapen_call(message).map(Some),
            Err(err) => {
                tracing::debug!(error = %err, "message does not match any MCP message shape");
                Err(Refusal {
                    id,
                    reason: "invalid_message",
                    error: (!is_notification)
                        .then(|| invalid_request("Invalid request: not a valid MCP message")),
                })
            }
        }
    }

    /// Queues a message for writing; resolves once it is in the queue.
    async fn write_message(&self, message: &ServerJsonRpcMessage) -> std::io::Result<()> {
        let bytes = encode(message)?;
        let queue = self.outbox.queue();
        tokio::select! {
            biased;
            permit = queue.reserve() => {
                permit.map_err(|_| output_closed())?.send(Outgoing::Line(bytes));
                Ok(())
            }
            () = self.outbox.given_up() => Err(output_closed()),
        }
    }

    /// Once `stop` is cancelled (the server is stopping), answers nobody reads are not waited for long: see
    /// [`GIVE_UP_WAIT`].
    pub(crate) fn give_up_unread_at(&self, stop: &tokio_util::sync::CancellationToken) {
        let give_up = self.outbox.give_up.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            give_up.cancel();
        });
    }

    /// Cancelled when the input has ended (or failed): no request will come.
    pub(crate) fn input_ended(&self) -> tokio_util::sync::CancellationToken {
        self.lifecycle.input_ended.clone()
    }

    /// Keeps the ids of the requests in progress: a request whose id is one of them is refused (a red team's second
    /// request with a call's id ran too, and the client got one answer for the two). The request is marked (in its
    /// extensions) so that its handler's end is known; it is handed to rmcp as this returns. A cancellation frees its
    /// id once the handler has ended (see `in_flight`).
    fn track_incoming(&self, message: &mut ClientJsonRpcMessage) -> Option<Refusal> {
        match message {
            ClientJsonRpcMessage::Request(request) => {
                if let Some(pending) = self.lifecycle.in_flight.take(&request.id) {
                    use rmcp::model::GetExtensions as _;
                    request.request.extensions_mut().insert(pending.mark());
                    pending.handed();
                    return None;
                }
                Some(Refusal {
                    id: Some(request.id.clone()),
                    reason: DUPLICATE_ID_REASON,
                    error: Some(duplicate_id_error(
                        self.lifecycle.in_flight.retired(&request.id),
                    )),
                })
            }
            ClientJsonRpcMessage::Notification(notification) => {
                if let ClientNotification::CancelledNotification(cancelled) =
                    &notification.notification
                    && let Some(id) = &cancelled.params.request_id
                {
                    self.lifecycle.in_flight.cancelled(id);
                }
                None
            }
            _ => None,
        }
    }

    fn observe_incoming(&self, message: &ClientJsonRpcMessage, bytes: usize) {
        let ClientJsonRpcMessage::Request(request) = message else {
            return;
        };
        // What rmcp refuses before a session, as it decides it: a request other than `initialize` and `ping`
        // without a stateless request's metadata (the handler never sees it).
        let refused_before_session = || {
            let meta = rmcp::model::GetMeta::get_meta(&request.request);
            meta.protocol_version().is_none()
                || !meta
                    .missing_required_keys(&rmcp::model::ProtocolVersion::V_2026_07_28)
                    .is_empty()
        };
        // Within a session, what rmcp refuses as it decides it: a request other than `initialize` that must carry
        // the stateless revision's metadata (a `server/discover`, any request of a session that started without
        // `initialize`, or one whose `_meta` names 2026-07-28 or later) and lacks some of it.
        if self.session_started() && !matches!(request.request, ClientRequest::InitializeRequest(_))
        {
            let meta = rmcp::model::GetMeta::get_meta(&request.request);
            let v2026 = &rmcp::model::ProtocolVersion::V_2026_07_28;
            let required = matches!(request.request, ClientRequest::DiscoverRequest(_))
                || self.lifecycle.inline.load(Ordering::Relaxed)
                || meta
                    .protocol_version()
                    .is_some_and(|version| version.as_str() >= v2026.as_str());
            if required && !meta.missing_required_keys(v2026).is_empty() {
                let mut refused = self
                    .lifecycle
                    .refused
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if refused.len() >= MAX_REFUSED_PENDING {
                    refused.pop_front();
                }
                refused.push_back((request.id.clone(), bytes));
                self.lifecycle.any_refused.store(true, Ordering::Release);
            }
        }
        if !self.session_started()
            && !matches!(
                request.request,
                ClientRequest::InitializeRequest(_) | ClientRequest::PingRequest(_)
            )
            && refused_before_session()
        {
            *self
                .lifecycle
                .before_session
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some((request.id.clone(), bytes));
        }
        let pending = match &request.request {
            // Refused by the handler (`already_initialized`, audited there): a session is initialized once.
            ClientRequest::InitializeRequest(_) if self.session_started() => return,
            ClientRequest::InitializeRequest(init) => PendingSession {
                request_id: request.id.clone(),
                inline_version: None,
                client_name: Some(crate::audit::shorten_str(&init.params.client_info.name)),
                client_version: Some(crate::audit::shorten_str(&init.params.client_info.version)),
            },
            ClientRequest::PingRequest(_) | ClientRequest::DiscoverRequest(_) => return,
            // Refused by rmcp for its metadata (audited as such), so it starts nothing.
            _ if self.session_started() || refused_before_session() => return,
            other => {
                let meta = rmcp::model::GetMeta::get_meta(other);
                let Some(version) = meta.protocol_version() else {
                    return;
                };
                let client = meta.get("io.modelcontextprotocol/clientInfo");
                let field = |name: &str| {
                    client
                        .and_then(|c| c.get(name))
                        .and_then(Value::as_str)
                        .map(crate::audit::shorten_str)
                };
                PendingSession {
                    request_id: request.id.clone(),
                    inline_version: Some(version.to_string()),
                    client_name: field("name"),
                    client_version: field("version"),
                }
            }
        };
        *self
            .lifecycle
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(pending);
    }

    /// Starts the session of `session`, taken from `pending` (whose lock is held until `started` is set), and
    /// audits it: after `initialize` with the version negotiated, else stateless with its request's version.
    fn start_session(
        &self,
        pending: std::sync::MutexGuard<'_, Option<PendingSession>>,
        session: PendingSession,
        negotiated: Option<String>,
    ) {
        let (lifecycle, protocol_version) = match (negotiated, session.inline_version) {
            (Some(negotiated), _) => ("initialize", negotiated),
            (None, Some(inline)) => ("stateless", inline),
            (None, None) => return,
        };
        self.lifecycle
            .inline
            .store(lifecycle == "stateless", Ordering::Relaxed);
        self.lifecycle.started.store(true, Ordering::SeqCst);
        drop(pending);
        self.audit(AuditEvent::Session {
            lifecycle,
            protocol_version,
            client_name: session.client_name,
            client_version: session.client_version,
            // Over stdio the caller is the one on the other end of the pipe, named in every call's record.
            caller: None,
            remote_addr: None,
            forwarded_for: None,
            token_id: None,
            session_id: self
                .lifecycle
                .session_id
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_deref()
                .map(str::to_owned),
        });
    }

    /// Before a session, rmcp answers a stateless request it refuses (for its version) before it reads again: one
    /// still pending when rmcp reads the next message was taken, and its session runs from then on, not from its
    /// answer (which may come after the client's cancellation of it, or be an error).
    fn start_if_taken(&self) {
        if self.session_started() {
            return;
        }
        let mut pending = self
            .lifecycle
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if pending.as_ref().is_some_and(|p| p.inline_version.is_some()) {
            let session = pending.take().expect("checked above");
            self.start_session(pending, session, None);
        }
    }

    /// Audits the lifecycle facts an outgoing message carries.
    fn observe_outgoing(&self, message: &ServerJsonRpcMessage) {
        // An answered request's id is free again.
        let answered = match message {
            ServerJsonRpcMessage::Response(response) => Some(&response.id),
            ServerJsonRpcMessage::Error(error) => error.id.as_ref(),
            _ => None,
        };
        if let Some(id) = answered {
            self.lifecycle.in_flight.answered(id);
        }
        match message {
            ServerJsonRpcMessage::Response(response) => {
                // A request foreseen refused that rmcp answered after all leaves its place: a later error with its
                // id is not taken for that refusal.
                if self.lifecycle.any_refused.load(Ordering::Acquire) {
                    let mut refused = self
                        .lifecycle
                        .refused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    refused.retain(|(pending, _)| *pending != response.id);
                    if refused.is_empty() {
                        self.lifecycle.any_refused.store(false, Ordering::Release);
                    }
                }
                let initialized = match &response.result {
                    ServerResult::InitializeResult(result) => {
                        Some(result.protocol_version.to_string())
                    }
                    _ if self.session_started() => return,
                    _ => None,
                };
                let mut pending = self
                    .lifecycle
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if pending.as_ref().is_none_or(|p| p.request_id != response.id) {
                    return;
                }
                let session = pending.take().expect("checked above");
                self.start_session(pending, session, initialized);
            }
            ServerJsonRpcMessage::Error(error)
                if error.error.code == ErrorCode::UNSUPPORTED_PROTOCOL_VERSION =>
            {
                // rmcp checks the version first: a request also short of metadata is not refused for that.
                if let Some(id) = &error.id {
                    self.lifecycle
                        .refused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|(pending, _)| pending != id);
                    // A stateless request refused for its version starts nothing.
                    let mut pending = self
                        .lifecycle
                        .pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if pending
                        .as_ref()
                        .is_some_and(|p| p.inline_version.is_some() && p.request_id == *id)
                    {
                        pending.take();
                    }
                }
                let data = error.error.data.clone().unwrap_or(Value::Null);
                self.audit(AuditEvent::VersionRejected {
                    request_id: error.id.clone(),
                    requested: data.get("requested").cloned().unwrap_or(Value::Null),
                    supported: data.get("supported").cloned().unwrap_or(Value::Null),
                    // Over stdio the caller is the one on the other end of the pipe.
                    caller: None,
                    remote_addr: None,
                    forwarded_for: None,
                    token_id: None,
                    session_id: self.session_in_force(),
                });
            }
            // rmcp's refusal of a request within a session for incomplete metadata: it never reaches the handler,
            // so it is audited here.
            ServerJsonRpcMessage::Error(error) if self.session_started() => {
                let refused = error.id.as_ref().and_then(|id| {
                    let mut refused = self
                        .lifecycle
                        .refused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    let at = refused.iter().position(|(pending, _)| pending == id)?;
                    refused.remove(at)
                });
                if let Some((id, bytes)) = refused {
                    self.audit(AuditEvent::MessageRejected {
                        request_id: Some(id),
                        method: None,
                        target: None,
                        reason: "incomplete_meta",
                        code: Some(error.error.code.0),
                        bytes,
                        caller: None,
                        remote_addr: None,
                        forwarded_for: None,
                        token_id: None,
                        session_id: self.session_in_force(),
                        transport: None,
                        client_name: None,
                        client_version: None,
                    });
                }
            }
            // rmcp's refusal of a request that came before any session (not an `initialize`, and without a
            // stateless request's metadata): it never reaches the handler, so it is audited here. Any other error
            // answering a stateless first request is its handler's (rmcp refuses such a request only for its
            // version, above): rmcp took it, and the session runs.
            ServerJsonRpcMessage::Error(error) if !self.session_started() => {
                let mut pending = self
                    .lifecycle
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if let Some(id) = &error.id
                    && pending
                        .as_ref()
                        .is_some_and(|p| p.inline_version.is_some() && p.request_id == *id)
                {
                    let session = pending.take().expect("checked above");
                    self.start_session(pending, session, None);
                    return;
                }
                drop(pending);
                let refused = {
                    let mut before = self
                        .lifecycle
                        .before_session
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    match before.take() {
                        Some((id, bytes)) if error.id.as_ref() == Some(&id) => Some((id, bytes)),
                        other => {
                            *before = other;
                            None
                        }
                    }
                };
                if let Some((id, bytes)) = refused {
                    self.audit(AuditEvent::MessageRejected {
                        request_id: Some(id),
                        method: None,
                        target: None,
                        reason: "no_session",
                        code: Some(error.error.code.0),
                        bytes,
                        caller: None,
                        remote_addr: None,
                        forwarded_for: None,
                        token_id: None,
                        session_id: None,
                        transport: None,
                        client_name: None,
                        client_version: None,
                    });
                }
            }
            _ => {}
        }
    }
}

/// A message as one line of JSON.
fn encode(message: &ServerJsonRpcMessage) -> std::io::Result<Vec<u8>> {
    let mut bytes = match message {
        // JSON-RPC 2.0 wants `"id": null` on an error whose request id could not be read; rmcp leaves the
        // member out, which strict clients refuse.
        ServerJsonRpcMessage::Error(error) if error.id.is_none() => {
            let mut value = serde_json::to_value(message).map_err(std::io::Error::other)?;
            if let Value::Object(object) = &mut value {
                object.insert("id".into(), Value::Null);
            }
            serde_json::to_vec(&value)
        }
        _ => serde_json::to_vec(message),
    }
    .map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn invalid_request(message: impl Into<std::borrow::Cow<'static, str>>) -> ErrorData {
    ErrorData::invalid_request(message, None)
}

/// Whether the message's id, as rmcp read it, is the id the client wrote. rmcp reads a number in float form that
/// stands for an integer (`1.0`, `1e2`, `-0`) as that integer, and an answer would then carry an id the client never
/// sent; such a message takes the slow path, which refuses it. A numeric id is confirmed by scanning the line for
/// its literal, which stops at the id (near the start, as clients write messages); where the scan cannot confirm it,
/// the slow path decides from the parsed value.
fn id_as_written(message: &ClientJsonRpcMessage, line: &[u8]) -> bool {
    let id = match message {
        ClientJsonRpcMessage::Request(request) => Some(&request.id),
        ClientJsonRpcMessage::Response(response) => Some(&response.id),
        ClientJsonRpcMessage::Error(error) => error.id.as_ref(),
        ClientJsonRpcMessage::Notification(_) => None,
    };
    match id {
        Some(id @ RequestId::Number(_)) => {
            let mut scanner = IdScanner::default();
            scanner.feed(line);
            scanner.id().as_ref() == Some(id)
        }
        _ => true,
    }
}

/// rmcp takes a `tools/call` whose params do not have its shape (arguments that are not an object, a name that is
/// missing or not a string) for a request of a method it does not know: it answers `-32601` and logs the params
/// whole at `debug`. Such a call is refused here as invalid params, and rmcp never sees it.
///
/// A `tools/call` sent as a notification (without an id) is refused too, with no answer (a notification gets
/// none): rmcp would drop it unanswered and unaudited, after logging it whole at `info`.
fn refuse_misshapen_call(message: ClientJsonRpcMessage) -> Result<ClientJsonRpcMessage, Refusal> {
    if let ClientJsonRpcMessage::Notification(notification) = &message
        && let ClientNotification::CustomNotification(custom) = &notification.notification
        && custom.method == "tools/call"
    {
        return Err(Refusal {
            id: None,
            reason: "call_without_id",
            error: None,
        });
    }
    if let ClientJsonRpcMessage::Request(request) = &message
        && let ClientRequest::CustomRequest(custom) = &request.request
        && let Some(error) = misshapen_params_error(&custom.method)
    {
        return Err(Refusal {
            id: Some(request.id.clone()),
            reason: MISSHAPEN_CALL_REASON,
            error: Some(error),
        });
    }
    Ok(message)
}

/// The requests MCP defines for a client to send, which rmcp reads as requests of a method it does not know when
/// their params do not have the method's shape.
const DEFINED_METHODS: [&str; 14] = [
    "initialize",
    "ping",
    "server/discover",
    "completion/complete",
    "logging/setLevel",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "tools/call",
    "tools/list",
];

/// The answer to a request of a method MCP defines that rmcp did not read as one (its params do not have the
/// method's shape): invalid params (`-32602`), not the `-32601` "method not found" rmcp would answer (red-team
/// finding: a second `initialize` without `clientInfo` was answered so, with no record). `None` for any other
/// method.
pub(super) fn misshapen_params_error(method: &str) -> Option<ErrorData> {
    if method == "tools/call" {
        return Some(misshapen_call_error());
    }
    let method = DEFINED_METHODS.iter().find(|defined| **defined == method)?;
    Some(ErrorData::invalid_params(
        format!("Invalid params: the params of `{method}` do not have the shape MCP gives them"),
        None,
    ))
}

/// The `message_rejected` reason of a request of a method MCP defines (a `tools/call`, an `initialize`, ...) whose
/// params do not have its shape.
pub(super) const MISSHAPEN_CALL_REASON: &str = "invalid_params";

/// The `message_rejected` reason of an `initialize` in a session already initialized.
pub(super) const ALREADY_INITIALIZED_REASON: &str = "already_initialized";

/// The `message_rejected` reason of a request whose id is that of one in progress (on stdio, or within an HTTP
/// session).
pub(super) const DUPLICATE_ID_REASON: &str = "duplicate_id";

/// The answer to a request whose id is that of one in progress, or of one its client cancelled (`cancelled`). The
/// id is the answer's own: not repeated in its message (it may be megabytes long).
pub(super) fn duplicate_id_error(cancelled: bool) -> ErrorData {
    if cancelled {
        invalid_request(
            "Invalid request: the id is that of a request the client cancelled (an id is not used twice in a \
             session)",
        )
    } else {
        invalid_request("Invalid request: the id is that of a request still in progress")
    }
}

/// The answer to a `tools/call` whose params do not have its shape: here, and from the secure handler where rmcp
/// parsed the call (over HTTP, or rmcp's own transports).
pub(super) fn misshapen_call_error() -> ErrorData {
    ErrorData::invalid_params(
        "Invalid params: `tools/call` takes a `name` string and an `arguments` object, and under the stateless \
         revision an `inputResponses` object and a `requestState` string",
        None,
    )
}

/// A JSON-RPC id MCP accepts: a string, or an integer written as one (serde_json keeps `1.0`, `1e2` and `-0` as
/// floats) that fits an `i64`.
fn valid_id(value: &Value) -> Option<RequestId> {
    match value {
        Value::String(s) => Some(RequestId::String(s.as_str().into())),
        Value::Number(n) => n.as_i64().map(RequestId::Number),
        _ => None,
    }
}

impl<R, W> Transport<RoleServer> for LineTransport<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let this = self.clone();
        async move {
            this.observe_outgoing(&item);
            this.write_message(&item).await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        self.start_if_taken();
        // rmcp polls `receive` inside a `select!` and may drop it at any await: every await below is cancel-safe
        // (a partial line and a place taken in the queue stay in the reader), and from a complete line to its
        // answer being queued nothing awaits.
        let mut reader = self.reader.lock().await;
        loop {
            if reader.room.is_none() {
                // Backpressure: no line is read while the output queue is full.
                reader.room = self.outbox.queue().clone().reserve_owned().await.ok();
            }
            let line = match reader.read_line().await {
                Ok(line) => line,
                Err(err) => {
                    tracing::error!(error = %err, "reading the input stream failed");
                    self.lifecycle.input_ended.cancel();
                    return None;
                }
            };
            let (refusal, bytes) = match line {
                Line::Eof => {
                    self.lifecycle.input_ended.cancel();
                    return None;
                }
                Line::TooLarge { id, bytes } => {
                    let refusal = Refusal {
                        id,
                        reason: "too_large",
                        error: Some(invalid_request(format!(
                            "Invalid request: the message is {bytes} bytes; the limit is {}",
                            reader.max
                        ))),
                    };
                    (refusal, bytes)
                }
                Line::Complete => {
                    let bytes = reader.line.len();
                    let classified = self.classify(&reader.line);
                    reader.line.clear();
                    match classified {
                        Ok(None) => continue,
                        Ok(Some(mut message)) => {
                            if !self.session_started()
                                && !matches!(message, ClientJsonRpcMessage::Request(_))
                            {
                                // rmcp ends the server on anything but a request before a session starts.
                                tracing::debug!(
                                    "dropping a notification or response that came before the session"
                                );
                                continue;
                            }
                            if let Some(refusal) = self.track_incoming(&mut message) {
                                (refusal, bytes)
                            } else {
                                self.observe_incoming(&message, bytes);
                                if self.hold_tool_arguments
                                    && super::handler::HeldArguments::needed()
                                {
                                    super::handler::HeldArguments::hold(&mut message);
                                }
                                // Its answer, if any, is rmcp's to send: the place goes back to the queue, and the
                                // next line waits for one of its own.
                                reader.room = None;
                                return Some(message);
                            }
                        }
                        Err(refusal) => (refusal, bytes),
                    }
                }
            };
            self.audit(AuditEvent::MessageRejected {
                request_id: refusal.id.clone(),
                method: None,
                target: None,
                reason: refusal.reason,
                code: refusal.error.as_ref().map(|e| e.code.0),
                bytes,
                // Over stdio the caller is the one on the other end of the pipe, as on the session's record.
                caller: None,
                remote_addr: None,
                forwarded_for: None,
                token_id: None,
                session_id: self.session_in_force(),
                transport: None,
                client_name: None,
                client_version: None,
            });
            if let Some(error) = refusal.error {
                let answer = ServerJsonRpcMessage::error(error, refusal.id);
                match (reader.room.take(), encode(&answer)) {
                    (Some(room), Ok(bytes)) => {
                        room.send(Outgoing::Line(bytes));
                    }
                    (None, _) => {
                        tracing::error!(
                            "the output stream is closed; an error answer is not written"
                        );
                    }
                    (Some(_), Err(err)) => {
                        tracing::error!(error = %err, "an error answer could not be encoded");
                    }
                }
            }
        }
    }

    /// Waits (for a few seconds at most) until everything queued is written and flushed.
    async fn close(&mut self) -> Result<(), Self::Error> {
        if self.outbox.abandoned.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (done, written) = oneshot::channel();
        let queue = self.outbox.queue().clone();
        let drained = async move {
            queue
                .send(Outgoing::Flush(done))
                .await
                .map_err(|_| output_closed())?;
            written.await.map_err(|_| output_closed())?
        };
        let outbox = self.outbox.clone();
        let given_up = async move { outbox.given_up().await };
        tokio::select! {
            result = tokio::time::timeout(CLOSE_WAIT, drained) => match result {
                Ok(result) => result,
                Err(_) => {
                    self.outbox.abandoned.store(true, Ordering::SeqCst);
                    // Not said on the very stream the client does not read, where it would wait with the answers.
                    if !super::stdin::output_is_stderr() {
                        tracing::warn!(
                            "answers still queued were not written within {CLOSE_WAIT:?}: the client is not reading"
                        );
                    }
                    Ok(())
                }
            },
            () = given_up => {
                self.outbox.abandoned.store(true, Ordering::SeqCst);
                if !super::stdin::output_is_stderr() {
                    tracing::warn!("answers still queued were not written: the client is not reading, and the server is stopping");
                }
                Ok(())
            }
        }
    }
}
