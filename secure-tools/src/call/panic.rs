//! Keeps handler panics from leaking what they carry, on every thread a handler uses.
//!
//! A panic in a handler is caught by the pipeline, but Rust's panic hook runs first and would print its message to
//! stderr, and that message may hold an argument the tool declared redacted. While a handler runs (its future is
//! polled, or a closure it gave to [`spawn_blocking`] runs, or a task it started with [`spawn`] is polled), the
//! hook installed here prints only the tool name and the panic's location; every other panic goes to the hook that
//! was there before.

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::io::Write as _;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

use futures_util::FutureExt;

/// Whose code is running, for the panic hook's line.
#[derive(Clone, Copy)]
pub(crate) enum Running {
    /// A secure tool's, by name.
    Tool(&'static str),
    /// A merged handler's own method's, declared to the tool set (`resources/read`).
    Method(&'static str),
    /// A merged handler's own custom method's, declared to the tool set.
    CustomMethod,
}

impl std::fmt::Display for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Running::Tool(name) => write!(f, "secure tool `{name}`"),
            Running::Method(method) => write!(f, "method `{method}` served under the policy"),
            Running::CustomMethod => write!(f, "a custom method served under the policy"),
        }
    }
}

thread_local! {
    static RUNNING_TOOL: Cell<Option<Running>> = const { Cell::new(None) };
    /// Set while the pipeline tries something whose panic it expects and handles itself.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(install_panic_hook);
}

/// Installs the panic hook that withholds the message of a panic in a secure tool's code (it may quote a redacted
/// argument), printing only the tool and the location; other panics go on to the hook that was there before.
///
/// Building a [`ToolSet`](crate::ToolSet) installs it once. A hook set later (an error-reporting crate's, say)
/// replaces it, and tool panics would reach that hook with their message: call this again after setting yours; it
/// wraps the hook in place.
pub fn install_panic_hook() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| match RUNNING_TOOL.with(Cell::get) {
        _ if QUIET.with(Cell::get) => {}
        Some(running) => {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            // Written, not `eprintln!`ed: a hook that panics (standard error closed, a full disk) aborts the process.
            let _ = writeln!(
                std::io::stderr(),
                "{running} panicked at {location} (message withheld: it may hold redacted input)"
            );
        }
        None => previous(info),
    }));
}

fn running_tool() -> Option<Running> {
    RUNNING_TOOL.with(Cell::get)
}

fn with_tool<R>(tool: Option<Running>, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<Running>);
    impl Drop for Reset {
        fn drop(&mut self) {
            RUNNING_TOOL.with(|cell| cell.set(self.0));
        }
    }
    let _reset = Reset(RUNNING_TOOL.with(|cell| cell.replace(tool)));
    f()
}

/// Runs `f`, catching a panic without printing it: for a panic the pipeline expects and handles.
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> Result<R, ()> {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            QUIET.with(|cell| cell.set(self.0));
        }
    }
    let _reset = Reset(QUIET.with(|cell| cell.replace(true)));
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(drop)
}

/// Runs `f` as part of `tool`, catching a panic.
pub(crate) fn catch<R>(tool: &'static str, f: impl FnOnce() -> R) -> Result<R, ()> {
    with_tool(Some(Running::Tool(tool)), || {
        panic::catch_unwind(AssertUnwindSafe(f)).map_err(drop)
    })
}

/// A future whose polls, and whose drop, count as running `tool`: the user's code runs in both (a value it holds
/// across an await may panic as it is dropped, when the call times out, say).
pub(crate) struct Guarded<F> {
    tool: Option<Running>,
    /// Dropped in place by `Guarded`'s own drop, under the tool's name.
    future: ManuallyDrop<F>,
}

impl<F> Guarded<F> {
    pub(crate) fn new(tool: &'static str, future: F) -> Self {
        Self::running(Running::Tool(tool), future)
    }

    /// `future`, its polls and its drop counting as `running`'s code.
    pub(crate) fn running(running: Running, future: F) -> Self {
        Guarded {
            tool: Some(running),
            future: ManuallyDrop::new(future),
        }
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let tool = self.tool;
        // SAFETY: `future` is pinned with `self` (structural pinning): it is never moved out, only dropped in place
        // by `drop` below.
        let future = unsafe { self.map_unchecked_mut(|guarded| &mut *guarded.future) };
        with_tool(tool, || future.poll(cx))
    }
}

impl<F> Drop for Guarded<F> {
    fn drop(&mut self) {
        let tool = self.tool;
        // A panic while the future drops counts as the tool's (its message withheld), and goes no further: the
        // call's outcome is already decided.
        let _ = with_tool(tool, || {
            panic::catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: dropped once, here, in place; `self.future` is not used again.
                unsafe { ManuallyDrop::drop(&mut self.future) }
            }))
        });
    }
}

/// One value of the user's held for a call (its decoded arguments, until the handler takes them), dropped under the
/// tool's name if a stage refuses first: a type's own `Drop` may panic quoting what it holds (red-team finding: it
/// printed the value on standard error).
pub(crate) struct Held<T> {
    tool: &'static str,
    value: Option<T>,
}

impl<T> Held<T> {
    pub(crate) fn new(tool: &'static str, value: T) -> Self {
        Held {
            tool,
            value: Some(value),
        }
    }

    pub(crate) fn get(&self) -> &T {
        self.value.as_ref().expect("held until taken")
    }

    pub(crate) fn take(mut self) -> T {
        self.value.take().expect("held until taken")
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            let _ = catch(self.tool, move || drop(value));
        }
    }
}

/// Values of the user's held for a call (a guard's passes), dropped under the tool's name like its future.
pub(crate) struct HeldBy<T> {
    tool: &'static str,
    items: Vec<T>,
}

impl<T> HeldBy<T> {
    pub(crate) fn new(tool: &'static str) -> Self {
        HeldBy {
            tool,
            items: Vec::new(),
        }
    }

    pub(crate) fn items(&mut self) -> &mut Vec<T> {
        &mut self.items
    }
}

impl<T> Drop for HeldBy<T> {
    fn drop(&mut self) {
        // Most calls hold nothing: no guard, or guards that passed without holding.
        if self.items.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.items);
        let _ = catch(self.tool, move || drop(items));
    }
}

/// Runs blocking work on tokio's blocking pool, as [`tokio::task::spawn_blocking`] does, for a handler: a panic in
/// `f` has its message withheld like a panic in the handler itself, and is resumed in the handler when it awaits
/// the result, so the call's outcome is `panic` (not `error`) and nothing the panic carried is printed or logged.
///
/// ```
/// # use secure_tools::{secure_tool, task, ToolError};
/// /// Hashes a secret.
/// #[secure_tool(scope = "crypto.hash", audit_redact = ["secret"])]
/// async fn hash(secret: String) -> Result<String, ToolError> {
///     let digest = task::spawn_blocking(move || expensive_hash(&secret)).await?;
///     Ok(digest)
/// }
/// # fn expensive_hash(s: &str) -> String { s.len().to_string() }
/// ```
///
/// Outside a secure tool it behaves like tokio's, but still resumes a panic in the task that awaits it.
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let tool = running_tool();
    JoinHandle(tokio::task::spawn_blocking(move || {
        with_tool(tool, || panic::catch_unwind(AssertUnwindSafe(f)))
    }))
}

/// Starts a task, as [`tokio::spawn`] does, for a handler: its polls count as the handler's, so a panic in it has
/// its message withheld, and is resumed in the handler when it awaits the [`JoinHandle`] (the call's outcome is
/// then `panic`).
///
/// The task is not stopped when the call ends; give it the call's
/// [`CancellationToken`](crate::CancellationToken) to watch if it should stop with the call.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tool = running_tool();
    let guarded = Guarded {
        tool,
        future: ManuallyDrop::new(AssertUnwindSafe(future).catch_unwind()),
    };
    JoinHandle(tokio::spawn(guarded))
}

/// The handle of a task started by [`spawn`] or [`spawn_blocking`]: awaiting it gives the task's output, resumes
/// its panic in the awaiting task, and fails only if the task was aborted or its runtime shut down.
#[derive(Debug)]
pub struct JoinHandle<T>(tokio::task::JoinHandle<Result<T, Box<dyn Any + Send>>>);

impl<T> JoinHandle<T> {
    /// Aborts the task (a blocking closure that has started runs to its end regardless).
    pub fn abort(&self) {
        self.0.abort();
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// The task was aborted, or its runtime shut down, before it finished.
#[derive(Debug, thiserror::Error)]
#[error("the task was aborted before it finished")]
pub struct Aborted;

impl From<Aborted> for crate::Refusal {
    fn from(error: Aborted) -> Self {
        crate::Refusal::internal(error)
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, Aborted>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Ok(output))) => Poll::Ready(Ok(output)),
            // The hook has already run, on the task's thread, and withheld the message; resuming does not run it
            // again.
            Poll::Ready(Ok(Err(payload))) => panic::resume_unwind(payload),
            Poll::Ready(Err(_)) => Poll::Ready(Err(Aborted)),
        }
    }
}
