//! The ids of a client's requests in progress, on stdio or within an HTTP session: JSON-RPC ids are unique among
//! them, so a request reusing one is refused (rmcp would run both, and route one's answer to the other).
//!
//! An id is in progress from the moment its request is taken until its answer has gone out. A request its client
//! cancelled keeps its id for the rest of the session (MCP forbids reusing an id within a session): rmcp sends no
//! answer to it and keeps its state under the id for a moment after its handler ends (a handler past its point of
//! no return runs on after a cancellation, too), and a red team's reuse of a cancelled id in that moment was given
//! the old call's answer, had its cancellation token taken, or ran beside another call with the id. Such ids are
//! remembered by a keyed hash, the last [`MAX_RETIRED`] of them. A client hanging up is no cancellation. A request
//! dropped before rmcp had it leaves its id free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::model::RequestId;

/// How many cancelled ids a client (stdio) or session (HTTP) is refused for, the most recent ones.
pub(crate) const MAX_RETIRED: usize = 1024;

/// The ids in progress of one client (stdio) or session (HTTP).
#[derive(Default)]
pub(crate) struct InFlight {
    ids: Mutex<Ids>,
    /// Woken whenever an id is freed.
    freed: tokio::sync::Notify,
    /// The turn of the next id taken.
    turn: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Ids {
    in_progress: HashMap<RequestId, State>,
    /// Cancelled ids, by a keyed hash (an id may be megabytes long), oldest first.
    retired: std::collections::VecDeque<u64>,
    retired_set: std::collections::HashSet<u64>,
    hasher: std::hash::RandomState,
}

impl Ids {
    fn retired(&self, id: &RequestId) -> bool {
        !self.retired.is_empty()
            && self
                .retired_set
                .contains(&std::hash::BuildHasher::hash_one(&self.hasher, id))
    }

    fn retire(&mut self, id: &RequestId) {
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, id);
        if self.retired_set.insert(hash) {
            self.retired.push_back(hash);
            if self.retired.len() > MAX_RETIRED
                && let Some(oldest) = self.retired.pop_front()
            {
                self.retired_set.remove(&oldest);
            }
        }
    }
}

/// Where a request stands.
struct State {
    turn: u64,
    /// rmcp has the request.
    handed: bool,
    /// Its handler (or whatever holds the request) has not ended: the mark in its extensions lives.
    handler_live: bool,
    /// Its answer has gone out.
    answered: bool,
    /// Its client cancelled it (before rmcp had it, too: the cancellation may reach rmcp after the request).
    cancelled: bool,
}

impl State {
    fn done(&self) -> bool {
        self.handed && (self.answered || (self.cancelled && !self.handler_live))
    }

    /// Its answer may be on its way: rmcp has it, it is not cancelled, and its answer was not yet seen going out
    /// (its handler's end is no sure sign: a task the handler left may hold a copy of the request).
    #[cfg(feature = "http")]
    fn answer_due(&self) -> bool {
        self.handed && !self.answered && !self.cancelled
    }
}

/// How long a request reusing the id of one whose answer is on its way waits for it to go out: a client may reuse an
/// id as soon as it reads the answer, which it may do a moment before the answer is seen going out here.
#[cfg(feature = "http")]
pub(crate) const ANSWER_DUE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ids> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `id` for a request: `None` when a request in progress has it, or a cancelled one had it.
    pub(crate) fn take(self: &Arc<Self>, id: &RequestId) -> Option<Pending> {
        let mut ids = self.lock();
        if ids.in_progress.contains_key(id) || ids.retired(id) {
            return None;
        }
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ids.in_progress.insert(
            id.clone(),
            State {
                turn,
                handed: false,
                handler_live: true,
                answered: false,
                cancelled: false,
            },
        );
        Some(Pending {
            ids: Arc::clone(self),
            id: id.clone(),
            turn,
            handed: false,
        })
    }

    /// Whether `id` is refused for a cancelled request's (not one in progress).
    pub(crate) fn retired(&self, id: &RequestId) -> bool {
        let ids = self.lock();
        !ids.in_progress.contains_key(id) && ids.retired(id)
    }

    /// [`take`](Self::take), waiting up to `wait` while the request holding `id` may have its answer on its way (a
    /// request still running makes its reuse wait that long before it is refused).
    #[cfg(feature = "http")]
    pub(crate) async fn take_when_answered(
        self: &Arc<Self>,
        id: &RequestId,
        wait: std::time::Duration,
    ) -> Option<Pending> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so that a freeing between the look and the wait is not missed.
            freed.as_mut().enable();
            if let Some(pending) = self.take(id) {
                return Some(pending);
            }
            if !self
                .lock()
                .in_progress
                .get(id)
                .is_some_and(State::answer_due)
            {
                return None;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.take(id);
            }
        }
    }

    /// The answer to `id` has gone out.
    pub(crate) fn answered(&self, id: &RequestId) {
        self.update(id, None, |state| state.answered = true);
    }

    /// The client cancelled `id` (a red team's cancellation sent beside its request reached rmcp after it, and the
    /// id, taken for a cancellation ignored, waited for an answer for ever).
    pub(crate) fn cancelled(&self, id: &RequestId) {
        self.update(id, None, |state| state.cancelled = true);
    }

    /// Applies `change` to `id`'s state (at `turn`, when given), and frees the id if its request is done.
    fn update(&self, id: &RequestId, turn: Option<u64>, change: impl FnOnce(&mut State)) {
        let mut ids = self.lock();
        let Some(state) = ids
            .in_progress
            .get_mut(id)
            .filter(|s| turn.is_none_or(|t| s.turn == t))
        else {
            return;
        };
        change(state);
        if state.done() {
            let cancelled = state.cancelled;
            ids.in_progress.remove(id);
            if cancelled {
                ids.retire(id);
            }
            drop(ids);
            self.freed.notify_waiters();
        }
    }

    fn free(&self, id: &RequestId, turn: u64) {
        let mut ids = self.lock();
        if ids.in_progress.get(id).is_some_and(|s| s.turn == turn) {
            ids.in_progress.remove(id);
            drop(ids);
            self.freed.notify_waiters();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().in_progress.len()
    }
}

/// An id taken for a request not yet handed to rmcp: dropped before [`handed`](Self::handed), it frees the id (the
/// request never reached rmcp: refused, or its HTTP request dropped on the way).
pub(crate) struct Pending {
    ids: Arc<InFlight>,
    id: RequestId,
    turn: u64,
    handed: bool,
}

impl Pending {
    /// The mark to put into the request's extensions: its last copy dropped (the handler ended, the request with
    /// it) tells the handler ended.
    pub(crate) fn mark(&self) -> HandlerMark {
        HandlerMark(Arc::new(Mark {
            ids: Arc::clone(&self.ids),
            id: self.id.clone(),
            turn: self.turn,
        }))
    }

    /// rmcp has the request.
    pub(crate) fn handed(mut self) {
        self.handed = true;
        self.ids
            .update(&self.id, Some(self.turn), |state| state.handed = true);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.handed {
            self.ids.free(&self.id, self.turn);
        }
    }
}

/// See [`Pending::mark`].
#[derive(Clone)]
pub(crate) struct HandlerMark(#[allow(dead_code)] Arc<Mark>);

struct Mark {
    ids: Arc<InFlight>,
    id: RequestId,
    turn: u64,
}

impl Drop for Mark {
    fn drop(&mut self) {
        self.ids.update(&self.id, Some(self.turn), |state| {
            state.handler_live = false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: i64) -> RequestId {
        RequestId::Number(n)
    }

    #[test]
    fn an_id_is_free_once_answered() {
        let ids = Arc::new(InFlight::default());
        let pending = ids.take(&id(5)).unwrap();
        let mark = pending.mark();
        pending.handed();
        assert!(ids.take(&id(5)).is_none(), "in progress");
        drop(mark);
        assert!(ids.take(&id(5)).is_none(), "its answer on its way");
        ids.answered(&id(5));
        assert_eq!(ids.len(), 0);
        assert!(ids.take(&id(5)).is_some());
    }

    /// Review finding: a cancellation freed the id while a handler past its point of no return still ran; a new
    /// request with the id then had its answer and its cancellation token taken by the old one.
    #[test]
    fn a_cancelled_id_is_done_once_its_handler_ended_and_never_reused() {
        let ids = Arc::new(InFlight::default());
        let pending = ids.take(&id(5)).unwrap();
        let mark = pending.mark();
        let copy = mark.clone();
        pending.handed();
        ids.cancelled(&id(5));
        assert!(ids.take(&id(5)).is_none(), "its handler still runs");
        drop(mark);
        assert!(ids.take(&id(5)).is_none(), "a copy of the request lives");
        drop(copy);
        assert_eq!(ids.len(), 0);
        // And refused for the rest of the session: rmcp may still hold the call's state under it.
        assert!(ids.take(&id(5)).is_none(), "a cancelled id is not reused");
        assert!(ids.take(&id(6)).is_some());
    }

    /// A red team's reuses of cancelled ids, at the moment the handler ended, got the old call's answer or ran beside
    /// another call with the id: a cancelled id is never taken again, the last `MAX_RETIRED` of them.
    #[test]
    fn cancelled_ids_stay_refused_the_last_of_them() {
        let ids = Arc::new(InFlight::default());
        for n in 0..=MAX_RETIRED as i64 {
            let pending = ids.take(&id(n)).unwrap();
            drop(pending.mark());
            pending.handed();
            ids.cancelled(&id(n));
        }
        assert_eq!(ids.len(), 0);
        assert!(ids.take(&id(0)).is_some(), "the oldest is forgotten");
        assert!(ids.take(&id(1)).is_none());
        assert!(ids.take(&id(MAX_RETIRED as i64)).is_none());
    }

    /// Review finding: a cancellation that overtook its request (sent on another HTTP request) freed the id though
    /// rmcp, which then ignores it, answers the request. Red-team finding: one that came before the request was
    /// handed but reached rmcp after it left the id waiting for an answer for ever. Either way the id is done once
    /// the handler has ended (or the answer gone out), and not reused.
    #[test]
    fn a_cancellation_before_rmcp_has_the_request_still_counts() {
        for answered in [false, true] {
            let ids = Arc::new(InFlight::default());
            let pending = ids.take(&id(5)).unwrap();
            let mark = pending.mark();
            ids.cancelled(&id(5));
            pending.handed();
            if answered {
                ids.answered(&id(5));
            }
            drop(mark);
            assert_eq!(ids.len(), 0, "answered: {answered}");
            assert!(ids.take(&id(5)).is_none());
        }
    }

    /// Review finding: a request dropped before rmcp had it (its HTTP request timed out, say) left its id taken for
    /// the rest of the session.
    #[test]
    fn a_request_dropped_before_rmcp_had_it_leaves_its_id_free() {
        let ids = Arc::new(InFlight::default());
        let pending = ids.take(&id(5)).unwrap();
        let mark = pending.mark();
        drop(pending);
        assert_eq!(ids.len(), 0);
        // Its mark, dropped later, touches nothing of a new request's.
        let again = ids.take(&id(5)).unwrap();
        drop(mark);
        again.handed();
        assert!(ids.take(&id(5)).is_none());
    }

    /// Review finding: a client reusing an id as soon as it read the answer could be refused, the answer not yet
    /// seen going out here.
    #[cfg(feature = "http")]
    #[tokio::test]
    async fn a_reuse_waits_for_an_answer_on_its_way() {
        let ids = Arc::new(InFlight::default());
        let pending = ids.take(&id(5)).unwrap();
        drop(pending.mark());
        pending.handed();
        let answering = {
            let ids = Arc::clone(&ids);
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                ids.answered(&id(5));
            })
        };
        assert!(
            ids.take_when_answered(&id(5), ANSWER_DUE_WAIT)
                .await
                .is_some()
        );
        answering.await.unwrap();
        // A reuse waits too while the first request's handler, or a copy of the request, lives (the answer may be
        // on its way): refused after the wait.
        let running = ids.take(&id(6)).unwrap();
        let _mark = running.mark();
        running.handed();
        let started = std::time::Instant::now();
        assert!(
            ids.take_when_answered(&id(6), ANSWER_DUE_WAIT)
                .await
                .is_none()
        );
        assert!(started.elapsed() >= ANSWER_DUE_WAIT);
        // A cancelled one is refused at once, and said to be.
        ids.cancelled(&id(6));
        drop(_mark);
        let started = std::time::Instant::now();
        assert!(
            ids.take_when_answered(&id(6), ANSWER_DUE_WAIT)
                .await
                .is_none()
        );
        assert!(started.elapsed() < ANSWER_DUE_WAIT);
        assert!(ids.retired(&id(6)));
    }
}
