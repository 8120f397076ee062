//! Sessions belong to the identity that opened them (HTTP session mode). A request naming another identity's
//! session, to post into it, read its stream or delete it, is answered `404` as if the session did not exist, and
//! audited `http_rejected` with reason `session_not_owned`.
//!
//! The owners are kept beside rmcp's session manager, and pruned of sessions it no longer holds whenever their
//! number has doubled since the last pruning, so the map stays as large as the live sessions, give or take.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

/// Sessions by id, each with the identity that opened it.
pub(super) struct Owners {
    owners: Mutex<Map>,
    manager: Arc<LocalSessionManager>,
}

struct Map {
    owners: HashMap<String, Arc<str>>,
    /// Places held by identity and kind: sessions being opened (their `initialize` not yet answered, counted with
    /// the open ones, so that requests racing in parallel cannot open more than the limit between them), and event
    /// streams open.
    held: HashMap<(Kind, Arc<str>), usize>,
    /// The size at which the map is next pruned.
    prune_at: usize,
}

/// How many event streams (`GET` on a session) one identity may hold open at once; one more is refused `429`,
/// reason `too_many_streams`. A stream holds a connection for as long as it lasts: without a bound, one identity's
/// sessions, each allowed several streams by rmcp, could hold every connection the server takes.
pub const MAX_STREAMS_PER_CALLER: usize = 64;

/// What an identity holds a bounded number of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    /// A session: [`MAX_SESSIONS_PER_CALLER`], the open ones and those being opened.
    Session,
    /// An event stream: [`MAX_STREAMS_PER_CALLER`].
    Stream,
}

impl Kind {
    /// The reason a request past the limit is refused with.
    pub(super) fn refusal(self) -> &'static str {
        match self {
            Kind::Session => "too_many_sessions",
            Kind::Stream => "too_many_streams",
        }
    }
}

/// A place held by an identity (see [`Owners::reserve`]), given back when dropped.
pub(super) struct Place {
    owners: Arc<Owners>,
    kind: Kind,
    owner: Arc<str>,
}

impl Place {
    /// The session this place was taken for opened as `id`.
    pub(super) fn bind(self, id: &str) {
        self.owners.bind(id, self.owner.clone());
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut map = self.owners.lock();
        let key = (self.kind, self.owner.clone());
        if let Some(count) = map.held.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                map.held.remove(&key);
            }
        }
    }
}

/// Never prune below this many sessions.
const MIN_PRUNE_AT: usize = 64;

/// How many sessions one identity may hold open at once; one more is refused `429`, reason `too_many_sessions`.
pub const MAX_SESSIONS_PER_CALLER: usize = 32;

impl Owners {
    pub(super) fn new(manager: Arc<LocalSessionManager>) -> Self {
        Owners {
            owners: Mutex::new(Map {
                owners: HashMap::new(),
                held: HashMap::new(),
                prune_at: MIN_PRUNE_AT,
            }),
            manager,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Who opened the session `id`, if it is known.
    pub(super) fn owner(&self, id: &str) -> Option<Arc<str>> {
        self.lock().owners.get(id).cloned()
    }

    /// The session `id` was just opened by `owner`.
    pub(super) fn bind(&self, id: &str, owner: Arc<str>) {
        let mut map = self.lock();
        map.owners.insert(id.to_owned(), owner);
        if map.owners.len() >= map.prune_at {
            // Sessions rmcp dropped (expired, closed) leave the map. If the manager is busy, at the next session
            // opened (the threshold is raised only once the map has been pruned).
            if let Ok(live) = self.manager.sessions.try_read() {
                map.owners.retain(|id, _| live.contains_key(id.as_str()));
                map.prune_at = (map.owners.len() * 2).max(MIN_PRUNE_AT);
            }
        }
    }

    /// How many of `kind` `owner` holds: for sessions, those rmcp's manager still keeps (if the manager is busy,
    /// every session known to be `owner`'s) and those being opened.
    fn count(map: &Map, manager: &LocalSessionManager, kind: Kind, owner: &Arc<str>) -> usize {
        let held = map.held.get(&(kind, owner.clone())).copied().unwrap_or(0);
        if kind == Kind::Stream {
            return held;
        }
        let owned = map.owners.iter().filter(|(_, o)| *o == owner);
        let open = match manager.sessions.try_read() {
            Ok(live) => owned
                .filter(|(id, _)| live.contains_key(id.as_str()))
                .count(),
            Err(_) => owned.count(),
        };
        open + held
    }

    /// A place for one more of `kind` for `owner`, if it holds fewer than the limit: checked and taken at once.
    /// Given back when dropped (with a stream's body; with a request that opened no session), or for a session
    /// turned into it by [`Place::bind`].
    pub(super) fn reserve(self: &Arc<Self>, kind: Kind, owner: Arc<str>) -> Option<Place> {
        let limit = match kind {
            Kind::Session => MAX_SESSIONS_PER_CALLER,
            Kind::Stream => MAX_STREAMS_PER_CALLER,
        };
        let mut map = self.lock();
        if Self::count(&map, &self.manager, kind, &owner) >= limit {
            return None;
        }
        *map.held.entry((kind, owner.clone())).or_default() += 1;
        Some(Place {
            owners: self.clone(),
            kind,
            owner,
        })
    }

    /// The session `id` was deleted.
    pub(super) fn release(&self, id: &str) {
        self.lock().owners.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit counts sessions being opened: requests racing in parallel, each checked before rmcp answers
    /// the one before, once went past it (a count of open sessions only, then the session bound after).
    #[test]
    fn sessions_being_opened_count_towards_the_limit() {
        let owners = Arc::new(Owners::new(Arc::new(LocalSessionManager::default())));
        let alice: Arc<str> = Arc::from("alice");
        let opening: Vec<Place> = (0..MAX_SESSIONS_PER_CALLER)
            .map(|_| {
                owners
                    .reserve(Kind::Session, alice.clone())
                    .expect("a place")
            })
            .collect();
        assert!(owners.reserve(Kind::Session, alice.clone()).is_none());
        // Another identity is not held back by alice's, nor are alice's streams.
        assert!(owners.reserve(Kind::Session, Arc::from("bob")).is_some());
        assert!(owners.reserve(Kind::Stream, alice.clone()).is_some());
        // A request that opened no session gives its place back.
        drop(opening);
        assert!(owners.reserve(Kind::Session, alice).is_some());
        assert!(owners.lock().held.is_empty());
    }

    #[test]
    fn an_identity_holds_a_bounded_number_of_event_streams() {
        let owners = Arc::new(Owners::new(Arc::new(LocalSessionManager::default())));
        let alice: Arc<str> = Arc::from("alice");
        let held: Vec<Place> = (0..MAX_STREAMS_PER_CALLER)
            .map(|_| {
                owners
                    .reserve(Kind::Stream, alice.clone())
                    .expect("a place")
            })
            .collect();
        assert!(owners.reserve(Kind::Stream, alice.clone()).is_none());
        assert!(owners.reserve(Kind::Stream, Arc::from("bob")).is_some());
        drop(held);
        assert!(owners.reserve(Kind::Stream, alice).is_some());
        assert!(owners.lock().held.is_empty());
    }

    #[test]
    fn owners_of_sessions_the_manager_dropped_are_pruned() {
        let owners = Owners::new(Arc::new(LocalSessionManager::default()));
        for i in 0..MIN_PRUNE_AT - 1 {
            owners.bind(&format!("s{i}"), Arc::from("alice"));
        }
        assert_eq!(owners.owner("s0").as_deref(), Some("alice"));
        // The manager holds none of them: the bind that reaches the threshold prunes them all.
        owners.bind("last", Arc::from("bob"));
        assert!(owners.owner("s0").is_none());
        assert_eq!(owners.lock().owners.len(), 0);
        owners.release("last");
        assert!(owners.owner("last").is_none());
    }
}
