//! The transport to a server the command starts itself, over the server's standard input and output, held to bounds
//! the server cannot move: the server is the party being checked, so it is treated as hostile (red-team findings
//! against rmcp's own child-process transport).
//!
//! - A message (one line) is at most [`MAX_MESSAGE_BYTES`], as rmcp's line codec holds it, and holds at most as many
//!   JSON objects and arrays, and values, as a lock may ([`MAX_LOCK_CONTAINERS`], [`MAX_LOCK_VALUES`]), counted on
//!   its text before it is parsed: a page of 15 MiB holding two million tiny objects took 5.5 GB to parse and hold.
//!   Past either the connection ends, saying why.
//! - Requests the server sends the client (pings, say) are passed on at most [`MAX_SERVER_REQUESTS_PER_SECOND`] a
//!   second, the rest dropped: a server flooding pings while never reading its input made rmcp queue the answers
//!   it could not write (3 GB).
//! - The result of each `tools/list` is kept as the server sent it ([`Stash`]), so the lock holds every member of a
//!   tool's definition, not only those rmcp's `Tool` type models (`execution`, annotations and icon members it does
//!   not know, members of no revision: changes to them went unseen).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{ClientRequest, JsonRpcMessage, RequestId, ServerJsonRpcMessage};
use rmcp::service::{RoleClient, RxJsonRpcMessage, TxJsonRpcMessage};
use secure_tools::integrity::{MAX_LOCK_CONTAINERS, MAX_LOCK_VALUES};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

/// The longest message read from the server, as rmcp's own transport holds it.
pub(crate) const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How many requests a second the server may send the client; the rest are dropped unanswered.
pub(crate) const MAX_SERVER_REQUESTS_PER_SECOND: u32 = 16;

/// How long a server may take to leave once its input is closed, and then once sent SIGTERM, before it is killed
/// (as rmcp's own transport gives it).
const LEAVE_WAIT: Duration = Duration::from_secs(3);

/// A page of `tools/list` as the server sent it, with its size in JSON containers and values.
pub(crate) struct Page {
    pub(crate) result: Value,
    pub(crate) containers: usize,
    pub(crate) values: usize,
}

/// What the reader keeps for the listing: the page asked for last, and why the connection ended, if it ended on a
/// bound.
#[derive(Default)]
pub(crate) struct Stash(Mutex<StashInner>);

#[derive(Default)]
struct StashInner {
    /// The id of the last `tools/list` request, and whether an answer to it came.
    pending: Option<(RequestId, bool)>,
    page: Option<Page>,
    failure: Option<String>,
}

impl Stash {
    fn lock(&self) -> std::sync::MutexGuard<'_, StashInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expect(&self, id: &RequestId) {
        let mut inner = self.lock();
        inner.pending = Some((id.clone(), false));
        inner.page = None;
    }

    /// An answer (`result` for a result, `None` for an error) with the id `id` came: kept if it answers the listing
    /// with its id exactly as sent; refused if the listing was answered already, or if, while it waits, an answer
    /// comes with any other id. Which answer a client takes is not for the lock to guess: clients match ids each
    /// their own way (rmcp takes `"+1"` and `"01"` for `1`, the Python SDK `" 1"` and `"0_1"`), and red teams'
    /// servers answered twice, an odd spelling first, so that the lock held one answer and clients another.
    fn answered(
        &self,
        id: &RequestId,
        result: Option<(&Value, usize, usize)>,
    ) -> Result<(), String> {
        let mut inner = self.lock();
        let Some((pending, done)) = inner.pending.as_mut() else {
            return Ok(());
        };
        let exact = pending == id;
        if *done {
            if exact {
                return Err("the server answered the listing more than once".to_owned());
            }
            return Ok(());
        }
        if !exact {
            return Err(
                "the server answered, while the listing waited for its answer, with an id the listing was not \
                 sent with"
                    .to_owned(),
            );
        }
        *done = true;
        inner.page = result.map(|(result, containers, values)| Page {
            result: result.clone(),
            containers,
            values,
        });
        Ok(())
    }

    /// The page answering the last `tools/list`, once.
    pub(crate) fn take_page(&self) -> Option<Page> {
        self.lock().page.take()
    }

    /// Why the connection ended, when a bound ended it.
    pub(crate) fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    fn fail(&self, why: String) {
        self.lock().failure.get_or_insert(why);
    }
}

/// The server's stdio, as an rmcp transport.
pub(crate) struct ChildTransport {
    child: Option<Child>,
    stdin: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
    incoming: mpsc::Receiver<ServerJsonRpcMessage>,
    stash: Arc<Stash>,
}

impl ChildTransport {
    /// Starts `command` and reads its output; its standard error is shown on ours (see [`relay_stderr`]).
    pub(crate) fn spawn(mut command: Command) -> std::io::Result<(Self, Arc<Stash>)> {
        use std::process::Stdio;
        // Killed when dropped: a child that ignores the end of its input would otherwise be left running.
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(relay_stderr(stderr));
        }
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("the server's stdio was not piped"));
        };
        let (sender, incoming) = mpsc::channel(16);
        let stash = Arc::new(Stash::default());
        tokio::spawn(read(stdout, sender, stash.clone()));
        Ok((
            ChildTransport {
                child: Some(child),
                stdin: Arc::new(tokio::sync::Mutex::new(Some(stdin))),
                incoming,
                stash: stash.clone(),
            },
            stash,
        ))
    }
}

/// The most of a line of the server's standard error shown as one line (a longer one is shown in pieces).
const MAX_STDERR_LINE: u64 = 4096;

/// The most lines of the server's standard error waiting to be shown: past them, lines are dropped (and counted),
/// so that a standard error nobody reads does not stop the command (see [`relay_stderr`]).
const MAX_STDERR_WAITING: usize = 256;

/// Shows the server's standard error on ours, each line prefixed `server: `, what it holds that a reader would not
/// see, or a terminal would act on, escaped (`visible_line`): inherited as it was, a hostile server's `tool
/// definitions unchanged` and a control sequence concealing what followed passed for the command's own report
/// (red-team finding). The lines are written by a thread of their own, and dropped past [`MAX_STDERR_WAITING`]
/// waiting: written on the runtime's one thread, a flood of them into a standard error nobody read held the command
/// past its `--timeout` (a third round's: 20 s for a 3 s timeout).
async fn relay_stderr(stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncReadExt as _;
    let (lines, waiting) = std::sync::mpsc::sync_channel::<String>(MAX_STDERR_WAITING);
    std::thread::spawn(move || {
        use std::io::Write as _;
        for line in waiting {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    });
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut dropped = 0u64;
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_STDERR_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line);
        let mut shown = String::new();
        if dropped > 0 {
            shown = format!("server: ({dropped} lines of its standard error not shown)\n");
        }
        shown.push_str(&format!(
            "server: {}\n",
            secure_tools::integrity::visible_line(&text)
        ));
        match lines.try_send(shown) {
            Ok(()) => dropped = 0,
            Err(_) => dropped += 1,
        }
    }
}

/// Reads the server's messages, one a line, within the bounds; ends (closing the channel) at the end of its output
/// or past a bound, saying which in `stash`.
async fn read(stdout: ChildStdout, sender: mpsc::Sender<ServerJsonRpcMessage>, stash: Arc<Stash>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    let mut second = tokio::time::Instant::now();
    let mut requests = 0u32;
    loop {
        line.clear();
        match read_line(&mut reader, &mut line).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(why) => {
                stash.fail(why);
                return;
            }
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let (containers, values) = count(text);
        if containers > MAX_LOCK_CONTAINERS || values > MAX_LOCK_VALUES {
            stash.fail(format!(
                "the server sent a message of more than {MAX_LOCK_CONTAINERS} JSON objects and arrays or \
                 {MAX_LOCK_VALUES} values, more than a lock may hold"
            ));
            return;
        }
        // A line that is not a JSON-RPC message ends the connection: rmcp's transport would skip it, while another
        // client may read it (the Python SDK takes `NaN` and `1e999`; a red team's listing it read was not the one
        // locked), and a server that keeps to the protocol sends none.
        let Ok(value) = serde_json::from_slice::<Value>(text) else {
            stash.fail("the server sent a line that is not JSON".to_owned());
            return;
        };
        if value.get("method").is_some() && value.get("id").is_some() {
            let now = tokio::time::Instant::now();
            if now.duration_since(second) >= Duration::from_secs(1) {
                second = now;
                requests = 0;
            }
            requests += 1;
            if requests > MAX_SERVER_REQUESTS_PER_SECOND {
                continue;
            }
        }
        // Read as rmcp reads it first, so that what is kept of a listing is the answer rmcp gives the client.
        // Read from the value, not a copy of it: a page may be large.
        let Ok(message) = <ServerJsonRpcMessage as serde::Deserialize>::deserialize(&value) else {
            stash.fail("the server sent a line that is not a JSON-RPC message".to_owned());
            return;
        };
        let answer = match &message {
            JsonRpcMessage::Response(response) => Some((&response.id, value.get("result"))),
            JsonRpcMessage::Error(error) => error.id.as_ref().map(|id| (id, None)),
            _ => None,
        };
        if let Some((id, result)) = answer
            && let Err(why) = stash.answered(id, result.map(|result| (result, containers, values)))
        {
            stash.fail(why);
            return;
        }
        if sender.send(message).await.is_err() {
            return;
        }
    }
}

/// One line into `line`, without its newline: `Ok(false)` at the end of the output; an error past
/// [`MAX_MESSAGE_BYTES`] or when reading fails.
async fn read_line(
    reader: &mut BufReader<ChildStdout>,
    line: &mut Vec<u8>,
) -> Result<bool, String> {
    loop {
        let available = reader
            .fill_buf()
            .await
            .map_err(|e| format!("reading the server's output failed: {e}"))?;
        if available.is_empty() {
            return Ok(!line.is_empty());
        }
        let (taken, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        let end = if done { taken - 1 } else { taken };
        if line.len() + end > MAX_MESSAGE_BYTES {
            return Err(format!(
                "the server sent a message longer than {} MiB",
                MAX_MESSAGE_BYTES >> 20
            ));
        }
        line.extend_from_slice(&available[..end]);
        reader.consume(taken);
        if done {
            return Ok(true);
        }
    }
}

/// The JSON objects and arrays in `text`, and about how many values (each container, and each value a comma or
/// colon follows or a container opens with, counted from its text without parsing it; at least as many as it
/// holds).
fn count(text: &[u8]) -> (usize, usize) {
    let mut containers = 0;
    let mut values = 1;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                containers += 1;
                values += 1;
            }
            b',' | b':' => values += 1,
            _ => {}
        }
    }
    (containers, values)
}

impl rmcp::transport::Transport<RoleClient> for ChildTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        if let JsonRpcMessage::Request(request) = &item
            && matches!(request.request, ClientRequest::ListToolsRequest(_))
        {
            self.stash.expect(&request.id);
        }
        let line = serde_json::to_vec(&item).map(|mut line| {
            line.push(b'\n');
            line
        });
        let stdin = self.stdin.clone();
        async move {
            let line = line.map_err(std::io::Error::other)?;
            let mut stdin = stdin.lock().await;
            let Some(stdin) = stdin.as_mut() else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the server's input is closed",
                ));
            };
            stdin.write_all(&line).await?;
            stdin.flush().await
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.incoming.recv()
    }

    /// Closes the server's input and gives it [`LEAVE_WAIT`] to leave, then SIGTERM and as long again, then kills
    /// it.
    async fn close(&mut self) -> Result<(), Self::Error> {
        drop(self.stdin.lock().await.take());
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if tokio::time::timeout(LEAVE_WAIT, child.wait()).await.is_ok() {
            return Ok(());
        }
        if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
            // SAFETY: a signal to the child's process id, which it keeps until it is waited for.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(LEAVE_WAIT, child.wait()).await.is_ok() {
            return Ok(());
        }
        child.kill().await
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn containers_and_values_are_counted_outside_strings() {
        assert_eq!(count(br#"{"a":[1,2,{"b":"x,{[:"}]}"#), (3, 8));
        assert_eq!(count(br#""\"{""#), (0, 1));
        let many = format!("[{}]", vec!["{}"; 1000].join(","));
        assert_eq!(count(many.as_bytes()).0, 1001);
    }
}
