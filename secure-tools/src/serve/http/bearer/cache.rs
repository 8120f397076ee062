//! Tokens already verified, kept for their next use: a client sends the same access token with every request,
//! and checking its signature and claims each time is most of what authentication costs. An entry is used only
//! while the token is unexpired (its `exp`, without leeway), for at most [`TOKEN_CACHE_TTL`], and with the same
//! keys it was verified with (a JWKS refetch makes every entry stale). Only valid tokens are kept, and at most
//! [`TOKEN_CACHE_ENTRIES`] of them; a full cache drops its expired entries, or else all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::Authenticated;
use super::keys::VerificationKey;

/// How long a verified token is used without checking it again, at most.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);
/// How many verified tokens are kept, at most.
pub const TOKEN_CACHE_ENTRIES: usize = 4096;

pub(super) struct TokenCache {
    entries: Mutex<HashMap<Box<str>, Entry>>,
}

struct Entry {
    verified: Authenticated,
    /// Unix seconds after which the entry is not used.
    until: u64,
    /// The keys it was verified with.
    keys: Arc<[VerificationKey]>,
}

/// Seconds since the Unix epoch.
pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenCache {
    pub(super) fn new() -> Self {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The verified token, if it was verified with `keys` and is still valid at `now`.
    pub(super) fn get(
        &self,
        token: &str,
        keys: &Arc<[VerificationKey]>,
        now: u64,
    ) -> Option<Authenticated> {
        let entries = self.lock();
        let entry = entries.get(token)?;
        (now < entry.until && Arc::ptr_eq(&entry.keys, keys)).then(|| entry.verified.clone())
    }

    /// Keeps a token verified with `keys` at `now`, whose `exp` is `expires`.
    pub(super) fn put(
        &self,
        token: &str,
        verified: &Authenticated,
        expires: u64,
        keys: &Arc<[VerificationKey]>,
        now: u64,
    ) {
        let until = expires.min(now.saturating_add(TOKEN_CACHE_TTL.as_secs()));
        if until <= now {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= TOKEN_CACHE_ENTRIES {
            entries.retain(|_, entry| now < entry.until && Arc::ptr_eq(&entry.keys, keys));
            if entries.len() >= TOKEN_CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            token.into(),
            Entry {
                verified: verified.clone(),
                until,
                keys: keys.clone(),
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Caller;

    fn keys() -> Arc<[VerificationKey]> {
        Arc::from([])
    }

    fn verified() -> Authenticated {
        Authenticated {
            caller: Caller::anonymous(),
            token_id: None,
            valid_until: std::time::UNIX_EPOCH,
        }
    }

    #[test]
    fn an_entry_ends_with_its_token_or_its_keys() {
        let cache = TokenCache::new();
        let keys = keys();
        cache.put("t", &verified(), 1_000, &keys, 990);
        assert!(cache.get("t", &keys, 999).is_some());
        // Not at or after `exp`.
        assert!(cache.get("t", &keys, 1_000).is_none());
        // Not with other keys (a JWKS refetched).
        assert!(cache.get("t", &self::keys(), 995).is_none());
        // Not past the cache's own time, however late `exp` is.
        cache.put("u", &verified(), u64::MAX, &keys, 0);
        assert!(
            cache
                .get("u", &keys, TOKEN_CACHE_TTL.as_secs() - 1)
                .is_some()
        );
        assert!(cache.get("u", &keys, TOKEN_CACHE_TTL.as_secs()).is_none());
        // An expired token is not kept at all.
        cache.put("v", &verified(), 10, &keys, 10);
        assert!(cache.get("v", &keys, 9).is_none());
    }

    #[test]
    fn a_full_cache_stays_bounded() {
        let cache = TokenCache::new();
        let keys = keys();
        for i in 0..TOKEN_CACHE_ENTRIES + 10 {
            cache.put(&format!("token-{i}"), &verified(), 1_000, &keys, 0);
        }
        assert!(cache.len() <= TOKEN_CACHE_ENTRIES);
        assert!(
            cache
                .get(&format!("token-{}", TOKEN_CACHE_ENTRIES + 9), &keys, 1)
                .is_some()
        );
    }
}
