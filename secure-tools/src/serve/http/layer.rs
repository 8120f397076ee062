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
pub(super) type Handler = fn(Arc<Shared>, Request, Route) -> BoxFuture<'static, Response>;

/// Wraps routes in a [`Handler`].
#[derive(Clone)]
pub(super) struct Middleware {
    shared: Arc<Shared>,
    handler: Handler,
}

impl Middleware {
    pub(super) fn new(shared: Arc<Shared>, handler: Handler) -> Self {
        Middleware { shared, handler }
    }
}

impl tower::Layer<Route> for Middleware {
    type Service = Wrapped;

    fn layer(&self, inner: Route) -> Wrapped {
        Wrapped {
            shared: self.shared.clone(),
            handler: self.handler,
            inner,
        }
    }
}

/// A route wrapped in a [`Handler`].
#[derive(Clone)]
pub(super) struct Wrapped {
    shared: Arc<Shared>,
    handler: Handler,
    inner: Route,
}

impl tower::Service<Request> for Wrapped {
    type Response = Response;
    type Error = Infallible;
    type Future = Map<BoxFuture<'static, Response>, fn(Response) -> Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A route is always ready (axum's own contract for `Route`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        (self.handler)(self.shared.clone(), request, self.inner.clone()).map(Ok)
    }
}
