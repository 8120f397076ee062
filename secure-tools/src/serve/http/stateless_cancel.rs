//! Cancelling a call over HTTP without a session. rmcp serves each such request on its own and drops a
//! `notifications/cancelled` (it has no session to route it in), so a client that cancels by notification (the
//! TypeScript SDK v1, and v2 in its legacy mode) saw its call run to its end, audited `ok`. The runner keeps the
//! `tools/call` requests in progress without a session, by caller and request id; a cancellation from the same
//! caller naming one of them ends its request as a hang-up does: rmcp cancels the handler, and the call is audited
//! `cancelled`. A cancellation naming an id that more than one of the caller's calls in progress share cancels none
//! of them (two clients of one identity may both use id 7); another caller's calls are never reached. The request
//! cancelled is answered a JSON-RPC error saying so (its client, having cancelled, does not wait for it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::model::RequestId;
use tokio_util::sync::CancellationToken;

type Key = (Arc<str>, RequestId);

/// The calls in progress without a session, by caller and request id.
#[derive(Default)]
pub(super) struct Calls {
    map: Mutex<HashMap<Key, Vec<(u64, CancellationToken)>>>,
    next: AtomicU64,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<(u64, CancellationToken)>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `owner`'s call with request id `id` is in progress until the value returned is dropped.
    pub(super) fn register(self: &Arc<Self>, owner: Arc<str>, id: RequestId) -> Registered {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let key = (owner, id);
        self.lock()
            .entry(key.clone())
            .or_default()
            .push((serial, token.clone()));
        Registered {
            calls: self.clone(),
            key,
            serial,
            token,
        }
    }

    /// `owner` cancelled its request `id`: cancelled if exactly one of its calls in progress has that id.
    pub(super) fn cancel(&self, owner: Arc<str>, id: RequestId) -> bool {
        let map = self.lock();
        match map.get(&(owner, id)).map(Vec::as_slice) {
            Some([(_, token)]) => {
                token.cancel();
                true
            }
            _ => false,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A call in progress without a session (see [`Calls::register`]).
pub(super) struct Registered {
    calls: Arc<Calls>,
    key: Key,
    serial: u64,
    token: CancellationToken,
}

impl Registered {
    /// Cancelled when its client cancels it.
    pub(super) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Its request id.
    pub(super) fn id(&self) -> &RequestId {
        &self.key.1
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut map = self.calls.lock();
        if let Some(calls) = map.get_mut(&self.key) {
            calls.retain(|(serial, _)| *serial != self.serial);
            if calls.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

/// What a request body without a session is, as far as cancelling (and opening a session) goes.
#[derive(Debug, PartialEq)]
pub(super) enum Peeked {
    /// A `tools/call` with this id.
    Call(RequestId),
    /// A `notifications/cancelled` naming this request id.
    Cancel(RequestId),
    /// An `initialize` (which opens a session, in sessions mode).
    Initialize,
    /// Anything else (rmcp answers it as it is, a malformed body included).
    Other,
}

/// Reads what `body` is, without keeping any of it: the members that tell (`method`, `id`, and a cancellation's
/// `requestId`), the rest skipped.
pub(super) fn peek(body: &[u8]) -> Peeked {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        method: Option<std::borrow::Cow<'a, str>>,
        id: Option<RequestId>,
        params: Option<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Cancelled {
        params: CancelledParams,
    }
    #[derive(serde::Deserialize)]
    struct CancelledParams {
        #[serde(rename = "requestId")]
        request_id: RequestId,
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(body) else {
        return Peeked::Other;
    };
    let _ = envelope.params;
    match (envelope.method.as_deref(), envelope.id) {
        (Some("tools/call"), Some(id)) => Peeked::Call(id),
        (Some("initialize"), Some(_)) => Peeked::Initialize,
        (Some("notifications/cancelled"), None) => serde_json::from_slice::<Cancelled>(body)
            .map_or(Peeked::Other, |cancelled| {
                Peeked::Cancel(cancelled.params.request_id)
            }),
        _ => Peeked::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: i64) -> RequestId {
        RequestId::Number(n)
    }

    #[test]
    fn only_the_callers_own_unambiguous_call_is_cancelled() {
        let calls = Arc::new(Calls::default());
        let (alice, bob): (Arc<str>, Arc<str>) = (Arc::from("alice"), Arc::from("bob"));
        let first = calls.register(alice.clone(), number(7));
        // Another caller's id 7 is not alice's.
        assert!(!calls.cancel(bob.clone(), number(7)));
        assert!(!first.token().is_cancelled());
        // Two of alice's calls with id 7: which one she meant is not known, so neither.
        let second = calls.register(alice.clone(), number(7));
        assert!(!calls.cancel(alice.clone(), number(7)));
        assert!(!first.token().is_cancelled() && !second.token().is_cancelled());
        drop(second);
        assert!(calls.cancel(alice.clone(), number(7)));
        assert!(first.token().is_cancelled());
        // Ended calls leave nothing behind.
        drop(first);
        assert_eq!(calls.len(), 0);
        assert!(!calls.cancel(alice, number(7)));
    }

    #[test]
    fn a_call_and_a_cancellation_are_told_from_their_bodies() {
        let call = br#"{"method":"tools/call","params":{"name":"slow","arguments":{"id":9,"method":"x"}},"jsonrpc":"2.0","id":"a"}"#;
        assert_eq!(peek(call), Peeked::Call(RequestId::String("a".into())));
        let cancel = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"stop"}}"#;
        assert_eq!(peek(cancel), Peeked::Cancel(number(7)));
        let initialize = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#;
        assert_eq!(peek(initialize), Peeked::Initialize);
        for other in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#[..],
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}"#,
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","id":3,"params":{"requestId":7}}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"}]"#,
            b"not json",
        ] {
            assert_eq!(peek(other), Peeked::Other, "{}", String::from_utf8_lossy(other));
        }
    }
}
