//! Standard input for the runner, read on a thread of its own.
//!
//! `tokio::io::stdin` reads on tokio's blocking pool, and a runtime waits for its blocking tasks when it shuts
//! down: after SIGTERM the process would hang until the client closed the pipe. A plain thread blocked in `read`
//! does not keep the process alive, so the server exits as soon as `main` returns.

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

const CHUNK: usize = 64 * 1024;

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
