//! Keeps handler panics from leaking what they carry.
//!
//! A panic in a handler is caught by the pipeline, but Rust's panic hook has already printed its message to stderr
//! by then, and that message may hold an argument the tool declared redacted. While a handler runs, the hook
//! installed here prints only the tool name and the panic's location; every other panic goes to the hook that was
//! there before.

use std::cell::Cell;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

thread_local! {
    static RUNNING_TOOL: Cell<Option<&'static str>> = const { Cell::new(None) };
}

pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| match RUNNING_TOOL.with(Cell::get) {
            Some(tool) => {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                eprintln!("secure tool `{tool}` panicked at {location} (message withheld: it may hold redacted input)");
            }
            None => previous(info),
        }));
    });
}

fn with_tool<R>(tool: &'static str, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<&'static str>);
    impl Drop for Reset {
        fn drop(&mut self) {
            RUNNING_TOOL.with(|cell| cell.set(self.0));
        }
    }
    let _reset = Reset(RUNNING_TOOL.with(|cell| cell.replace(Some(tool))));
    f()
}

/// Runs `f`, catching a panic.
pub(crate) fn guard<R>(tool: &'static str, f: impl FnOnce() -> R) -> Result<R, ()> {
    with_tool(tool, || {
        panic::catch_unwind(AssertUnwindSafe(f)).map_err(drop)
    })
}

/// A future whose polls count as running `tool`.
pub(crate) struct Guarded<F: ?Sized> {
    tool: &'static str,
    future: Pin<Box<F>>,
}

impl<F: ?Sized> Guarded<F> {
    pub(crate) fn new(tool: &'static str, future: Pin<Box<F>>) -> Self {
        Guarded { tool, future }
    }
}

impl<F: Future + ?Sized> Future for Guarded<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let tool = self.tool;
        with_tool(tool, || self.future.as_mut().poll(cx))
    }
}
