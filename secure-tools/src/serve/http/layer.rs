//! Our middleware as a plain tower layer. axum's `from_fn` costs several allocations a request per layer (the
//! inner service cloned and boxed again for `Next`, the request taken apart and put back for its extractors, a
//! boxed future); a function given the shared state, the request and the inner route costs its future's box and
//! the route's clone.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use axum::routing::Route;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Map};

use super::Shared;

/// A middleware: answers `request`, calling `inner` (once, at most) for what it lets through.
pub(super) type Handler<S> = fn(Arc<Shared>, Request, S) -> BoxFuture<'static, Response>;

/// Wraps routes in a [`Handler`].
#[derive(Clone)]
pub(super) struct Middleware {
    shared: Arc<Shared>,
    handler: Handler<Route>,
}

impl Middleware {
    pub(super) fn new(shared: Arc<Shared>, handler: Handler<Route>) -> Self {
        Middleware { shared, handler }
    }
}

impl tower::Layer<Route> for Middleware {
    type Service = Wrapped<Route>;

    fn layer(&self, inner: Route) -> Wrapped<Route> {
        Wrapped::new(self.shared.clone(), self.handler, inner)
    }
}

/// A service (a route, or an endpoint mounted with one middleware of its own) wrapped in a [`Handler`].
pub(super) struct Wrapped<S> {
    shared: Arc<Shared>,
    handler: Handler<S>,
    inner: S,
}

impl<S> Wrapped<S> {
    pub(super) fn new(shared: Arc<Shared>, handler: Handler<S>, inner: S) -> Self {
        Wrapped {
            shared,
            handler,
            inner,
        }
    }
}

impl<S: Clone> Clone for Wrapped<S> {
    fn clone(&self) -> Self {
        Wrapped::new(self.shared.clone(), self.handler, self.inner.clone())
    }
}

impl<S: Clone> tower::Service<Request> for Wrapped<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = Map<BoxFuture<'static, Response>, fn(Response) -> Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The services wrapped are always ready (a route, by axum's contract; rmcp's endpoint).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        (self.handler)(self.shared.clone(), request, self.inner.clone()).map(Ok)
    }
}
