//! Standard input and output for the runner.
//!
//! MCP hosts connect a stdio server through pipes, or (hosts on Node, whose `child_process` makes them with libuv)
//! through Unix sockets. Both are registered with the runtime's event loop, non-blocking (tokio's `pipe` module,
//! `UnixStream`): a message costs no thread hand-off, and nothing blocks shutdown. Anything else (a terminal, a
//! file) falls back to a plain thread for input, since `tokio::io::stdin` reads on the blocking pool and a runtime
//! waits for its blocking tasks when it shuts down (after SIGTERM the process would hang until the client closed
//! the pipe), and to the blocking pool for output. Non-blocking mode is never set on a terminal, where it would
//! leak to the shell that shares it. The transport writes through a duplicate of standard output, and the
//! process's standard output becomes standard error, so nothing but the protocol reaches the client.

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

const CHUNK: usize = 64 * 1024;

/// The reader and the writer for the process's standard input and output.
pub(crate) type Input = Box<dyn AsyncRead + Unpin + Send>;
/// See [`Input`].
pub(crate) type Output = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

pub(crate) fn stdio() -> std::io::Result<(Input, Output)> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use tokio::net::unix::pipe;

        let input: Input = match stream_of(std::io::stdin().as_fd())? {
            Stream::Pipe(file) => Box::new(pipe::Receiver::from_file(file)?),
            Stream::Socket(socket) => Box::new(socket),
            Stream::Other => Box::new(Stdin::spawn()),
        };
        let shares_stderr = same_file_as_stderr(std::io::stdout().as_fd());
        let output: Output = match stream_of(std::io::stdout().as_fd())? {
            // Standard error's own stream: written through it, under its lock (see `LockedStderr`).
            _ if shares_stderr => Box::new(LockedStderr::start()?),
            Stream::Pipe(file) => Box::new(pipe::Sender::from_file(file)?),
            Stream::Socket(socket) => Box::new(socket),
            // Through a duplicate too (written on the blocking pool, as `tokio::io::stdout` would), since the
            // process's own stdout is about to be standard error.
            Stream::Other => Box::new(tokio::fs::File::from_std(std::fs::File::from(
                std::io::stdout().as_fd().try_clone_to_owned()?,
            ))),
        };
        stdout_away(shares_stderr);
        Ok((input, output))
    }
    #[cfg(not(unix))]
    {
        Ok((Box::new(Stdin::spawn()), Box::new(tokio::io::stdout())))
    }
}

/// Points the process's standard output (file descriptor 1) at standard error, once the transport writes through a
/// duplicate of it: stdout belongs to the protocol, and a `println!` in a tool, a library or a default `tracing`
/// subscriber would write into the stream (a line of its own could forge an answer). With standard error closed,
/// or standard error the protocol's stream itself (a host's `2>&1`: red-team finding, a tool's `println!` still
/// reached the client), stdout is pointed at `/dev/null`. What was already buffered in Rust's `stdout` is flushed
/// first, to the client, where it was meant to go before the server started.
#[cfg(unix)]
fn stdout_away(shares_stderr: bool) {
    use std::io::Write as _;
    use std::os::fd::AsRawFd;

    let _ = std::io::stdout().lock().flush();
    // SAFETY: dup2 on the process's own standard descriptors; fd 1 stays open (it is replaced atomically), so no
    // other owner of it is invalidated.
    let moved =
        !shares_stderr && unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) } >= 0;
    if !moved && let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: as above; `null` is open for the call.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) };
    }
}

/// The protocol's output when standard output is standard error's stream too (a host's `2>&1`): each message is
/// written whole while holding the lock of Rust's standard error, under which the audit trail's lines
/// (`JsonLinesSink::stderr`), the log and the panic hook write theirs; so none of those lands inside a message
/// (red-team finding: an audit record split a 600 KB answer in two, and its request never got a valid answer). A
/// writer of fd 2 that bypasses that lock (a child process, raw `libc::write`) is not held to it.
///
/// The writes run on a thread of their own, not the runtime's blocking pool: a write blocked on a pipe its host no
/// longer reads would hold the runtime's shutdown, which waits for the pool (red-team finding). Whatever else writes
/// to standard error then waits for that host too (the audit trail when it goes there, the log), as it would on a
/// pipe of its own: nothing is dropped or cut short to let the server go (a review's: pointing standard error at
/// `/dev/null` once the transport gave up lost the `server_stop` record, and cut an answer, for a host that was
/// reading slowly).
#[cfg(unix)]
struct LockedStderr {
    messages: std::sync::mpsc::Sender<(Vec<u8>, tokio::sync::oneshot::Sender<std::io::Result<()>>)>,
    /// The message being written; the next waits for it, so they go out in order.
    writing: Option<tokio::sync::oneshot::Receiver<std::io::Result<()>>>,
}

#[cfg(unix)]
impl LockedStderr {
    fn start() -> std::io::Result<Self> {
        let (messages, queue) = std::sync::mpsc::channel::<(
            Vec<u8>,
            tokio::sync::oneshot::Sender<std::io::Result<()>>,
        )>();
        SHARED.store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::Builder::new()
            .name("protocol-output".into())
            .spawn(move || {
                use std::io::Write as _;
                for (message, written) in queue {
                    let mut stderr = std::io::stderr().lock();
                    let result = stderr.write_all(&message).and_then(|()| stderr.flush());
                    drop(stderr);
                    let _ = written.send(result);
                }
            })?;
        Ok(LockedStderr {
            messages,
            writing: None,
        })
    }

    /// Until the message being written is out; its error, if it failed.
    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(writing) = &mut self.writing else {
            return Poll::Ready(Ok(()));
        };
        let written = std::task::ready!(std::future::Future::poll(Pin::new(writing), cx));
        self.writing = None;
        Poll::Ready(
            written.unwrap_or_else(|_| Err(std::io::Error::other("the output's writer ended"))),
        )
    }
}

#[cfg(unix)]
impl tokio::io::AsyncWrite for LockedStderr {
    /// Takes `buf` whole, as one message: the transport writes each message, its newline included, with one
    /// `write_all`, which hands all of it to the first call.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_written(cx))?;
        let (written, writing) = tokio::sync::oneshot::channel();
        this.messages
            .send((buf.to_vec(), written))
            .map_err(|_| std::io::Error::other("the output's writer ended"))?;
        this.writing = Some(writing);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().poll_written(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().poll_written(cx)
    }
}

/// Set when the protocol's output is standard error's stream too ([`LockedStderr`]).
#[cfg(unix)]
static SHARED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the protocol's output is standard error's stream too ([`LockedStderr`]): a line written to standard error
/// about that stream (that its client is not reading) would only wait on it.
pub(crate) fn output_is_stderr() -> bool {
    #[cfg(unix)]
    return SHARED.load(std::sync::atomic::Ordering::SeqCst);
    #[cfg(not(unix))]
    false
}

/// Whether `fd` is open on the same file as standard error.
#[cfg(unix)]
fn same_file_as_stderr(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    let metadata = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .and_then(|owned| std::fs::File::from(owned).metadata())
    };
    match (metadata(fd), metadata(std::io::stderr().as_fd())) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// What a standard stream is connected to.
#[cfg(unix)]
enum Stream {
    /// A pipe (a FIFO), as shells and most hosts connect one.
    Pipe(std::fs::File),
    /// A socket, as Node's `child_process` (libuv) connects a child's standard streams: registered with the event
    /// loop like a pipe.
    Socket(tokio::net::UnixStream),
    /// A terminal, a file, anything else.
    Other,
}

/// A duplicate of `fd`, as what it is connected to. A stream that is also standard error (`2>&1` into a pipe) is
/// `Other`: non-blocking mode is the open file's, so standard error would share it, and a write to it (a log line,
/// a panic hook's message) could fail with `WouldBlock` while the reader lags, where it should wait.
#[cfg(unix)]
fn stream_of(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<Stream> {
    use std::os::unix::fs::FileTypeExt;

    if same_file_as_stderr(fd) {
        return Ok(Stream::Other);
    }
    let owned = fd.try_clone_to_owned()?;
    let file = std::fs::File::from(owned);
    let metadata = file.metadata()?;
    let kind = metadata.file_type();
    if kind.is_fifo() {
        return Ok(Stream::Pipe(file));
    }
    if kind.is_socket() {
        let socket = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(file));
        // The flag is the open file's, shared with the other standard stream if it is the same socket, which is
        // then registered too; the host's end of the pair is another open file.
        socket.set_nonblocking(true)?;
        return Ok(Stream::Socket(tokio::net::UnixStream::from_std(socket)?));
    }
    Ok(Stream::Other)
}

/// An `AsyncRead` over the process's standard input. At most a few chunks are buffered ahead of the reader.
pub(crate) struct Stdin {
    chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    offset: usize,
    done: bool,
}

impl Stdin {
    pub(crate) fn spawn() -> Self {
        let (tx, chunks) = mpsc::channel(4);
        std::thread::Builder::new()
            .name("secure-tools-stdin".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                loop {
                    let mut buf = vec![0; CHUNK];
                    let result = match stdin.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            buf.truncate(n);
                            Ok(buf)
                        }
                        Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(err) => Err(err),
                    };
                    let failed = result.is_err();
                    if tx.blocking_send(result).is_err() || failed {
                        break;
                    }
                }
            })
            .expect("spawn the stdin thread");
        Stdin {
            chunks,
            current: Vec::new(),
            offset: 0,
            done: false,
        }
    }
}

impl AsyncRead for Stdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if self.offset < self.current.len() {
                let n = buf.remaining().min(self.current.len() - self.offset);
                let start = self.offset;
                buf.put_slice(&self.current[start..start + n]);
                self.offset += n;
                return Poll::Ready(Ok(()));
            }
            if self.done {
                return Poll::Ready(Ok(()));
            }
            match self.chunks.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.done = true,
                Poll::Ready(Some(Err(err))) => {
                    self.done = true;
                    return Poll::Ready(Err(err));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    self.current = chunk;
                    self.offset = 0;
                }
            }
        }
    }
}
