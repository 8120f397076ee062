//! The built-in limits: a rate per caller and tool, and how many calls may run at once. Both run in a stage of
//! their own, after the scope check and before any guard, inside the audited region, and refuse with outcome
//! `limited`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use super::refusal::{Refusal, codes};
/// A rate: at most `count` calls per `period` (see [`Rate::new`], and `FromStr` for `10/min`).
pub use crate::grammar::RateSpec as Rate;

/// Parses a duration such as `500ms`, `30s`, `5min`, `1h` (1 ms to one day), as `MCP_TOOL_TIMEOUT` and the
/// attribute's `timeout` take it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::grammar::duration(text).map_err(|reason| {
        format!(
            "invalid duration `{}`: {reason}; expected {}",
            text.escape_debug(),
            crate::grammar::DURATION_EXAMPLE
        )
    })
}

/// The GCRA quota of a rate: `count` at once, one back every `period / count`.
pub(crate) fn quota(rate: Rate) -> Quota {
    let burst = NonZeroU32::new(rate.count).unwrap_or(NonZeroU32::MIN);
    // `Rate` keeps the period at least a second and the count at most a million, so this is at least a
    // microsecond, never zero.
    Quota::with_period(rate.period / rate.count.max(1))
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}

/// How often the limiter drops the state of callers it has not seen for a while, in checks.
const SWEEP_EVERY: usize = 1024;

/// A rate limit keyed by caller and tool (GCRA, by `governor`): each caller gets `count` calls per period of each
/// tool it covers, all of which may be used at once, and one back every `period / count`.
///
/// With a shared store (feature `redis`), the state is kept there instead, for every replica to see.
pub(crate) struct RateLimiter {
    rate: Rate,
    limiter: DefaultKeyedRateLimiter<(Arc<str>, &'static str)>,
    checks: AtomicUsize,
    /// The shared store, and which of its limits this is (`set` or `tool`).
    #[cfg(feature = "redis")]
    shared: Option<(super::shared_rate::RedisRates, &'static str)>,
}

impl RateLimiter {
    pub(crate) fn new(rate: Rate) -> Self {
        RateLimiter {
            rate,
            limiter: DefaultKeyedRateLimiter::keyed(quota(rate)),
            checks: AtomicUsize::new(0),
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// The state kept in `store` (if given) rather than in this process, as the limit of `scope` (`set` or
    /// `tool`: each keeps its own state there, as each limiter does here).
    #[cfg(feature = "redis")]
    pub(crate) fn shared(
        mut self,
        store: Option<super::shared_rate::RedisRates>,
        scope: &'static str,
    ) -> Self {
        self.shared = store.map(|store| (store, scope));
        self
    }

    /// The shared store the state is kept in, if any.
    #[cfg(feature = "redis")]
    pub(crate) fn store(&self) -> Option<&super::shared_rate::RedisRates> {
        self.shared.as_ref().map(|(store, _)| store)
    }

    /// Whether a check may wait: one in a shared store is a round trip.
    pub(crate) fn waits(&self) -> bool {
        #[cfg(feature = "redis")]
        if self.shared.is_some() {
            return true;
        }
        false
    }

    pub(crate) fn rate(&self) -> Rate {
        self.rate
    }

    /// One call of `tool` by `caller`: refused `rate_limited` past the rate; `Ok(false)` when let through
    /// unchecked (a shared store that cannot be reached, configured to allow). A round trip to a shared store ends
    /// with the call's time limit (`limit`: when the call started, and its timeout), refused `timeout` (a red team's:
    /// calls limited to 100 ms waited 325 ms for Redis, then were stopped as if their tool had run).
    pub(crate) async fn check(
        &self,
        caller: &Arc<str>,
        tool: &'static str,
        limit: (std::time::Instant, std::time::Duration),
    ) -> Result<bool, Refusal> {
        // Boxed: a round trip to Redis is a large future, which every call's own future would otherwise carry.
        #[cfg(feature = "redis")]
        if let Some((store, scope)) = &self.shared {
            let (started, timeout) = limit;
            let until = started.checked_add(timeout);
            // No time left to ask in: asking would only cut a round trip short, and replace a working connection.
            if until.is_some_and(|until| std::time::Instant::now() >= until) {
                return Err(Refusal::timed_out_before_start(timeout));
            }
            let checked = Box::pin(store.check(self.rate, scope, caller, tool, until)).await;
            // The call's time ran out meanwhile: its tool would have none left.
            if until.is_some_and(|until| std::time::Instant::now() >= until) {
                return Err(Refusal::timed_out_before_start(timeout));
            }
            return checked.map(|checked| checked == super::shared_rate::Checked::Counted);
        }
        let _ = limit;
        self.check_here(caller, tool).map(|()| true)
    }

    fn check_here(&self, caller: &Arc<str>, tool: &'static str) -> Result<(), Refusal> {
        let verdict = self.limiter.check_key(&(caller.clone(), tool));
        // The state of each key is kept until it is back to full; without a sweep, a stream of new callers would
        // grow it without bound.
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        verdict.map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            // Whole seconds, rounded up, so a client that waits as told is let through.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Refusal::limited(
                codes::RATE_LIMITED,
                format!(
                    "the rate limit of {} for this tool is used up; retry in {secs} s",
                    self.rate
                ),
            )
            .retry_after(Duration::from_secs(secs))
        })
    }
}

/// How many calls may run at once (of one tool, or of a whole tool set). A call over the limit is refused at once,
/// not queued, so a counter does what a semaphore would, without its lock.
pub(crate) struct ConcurrencyLimit {
    max: u32,
    running: AtomicU32,
}

/// A place among the calls running; given back when dropped.
pub(crate) struct Slot<'a>(&'a AtomicU32);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl ConcurrencyLimit {
    pub(crate) fn new(max: u32) -> Self {
        ConcurrencyLimit {
            max,
            running: AtomicU32::new(0),
        }
    }

    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    pub(crate) fn acquire(&self, of_what: &str) -> Result<Slot<'_>, Refusal> {
        // Counting first and giving back on refusal can briefly count one call too many, which refuses another
        // call at the limit at worst; it never lets more than `max` run.
        if self.running.fetch_add(1, Ordering::Acquire) >= self.max {
            self.running.fetch_sub(1, Ordering::Release);
            return Err(Refusal::limited(
                codes::OVERLOADED,
                format!(
                    "{} calls of {of_what} are already running, the most allowed at once; retry shortly",
                    self.max
                ),
            )
            .retry_after(Duration::from_secs(1)));
        }
        Ok(Slot(&self.running))
    }
}

/// How many calls one caller may have running at once, over a whole tool set: so that one caller cannot take every
/// place among the calls the set runs and keep the others out. Callers are told apart by their id; a caller with no
/// call running takes no room.
pub(crate) struct PerCallerLimit {
    max: u32,
    running: std::sync::Mutex<std::collections::HashMap<Arc<str>, u32>>,
}

/// A caller's place among its calls running; given back when dropped.
pub(crate) struct CallerSlot<'a> {
    limit: &'a PerCallerLimit,
    caller: Arc<str>,
}

impl Drop for CallerSlot<'_> {
    fn drop(&mut self) {
        let mut running = self.limit.lock();
        if let Some(count) = running.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.caller);
            }
        }
    }
}

impl PerCallerLimit {
    pub(crate) fn new(max: u32) -> Self {
        PerCallerLimit {
            max,
            running: std::sync::Mutex::default(),
        }
    }

    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Arc<str>, u32>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn acquire(&self, caller: &Arc<str>) -> Result<CallerSlot<'_>, Refusal> {
        let mut running = self.lock();
        let count = running.entry(caller.clone()).or_insert(0);
        if *count >= self.max {
            return Err(Refusal::limited(
                codes::OVERLOADED,
                format!(
                    "{} calls of this caller are already running, the most one caller may have at once; retry \
                     shortly",
                    self.max
                ),
            )
            .retry_after(Duration::from_secs(1)));
        }
        *count += 1;
        Ok(CallerSlot {
            limit: self,
            caller: caller.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_print_as_they_parse() {
        for text in ["10/min", "5/s", "100/hour", "30/5min", "1/day", "7/90s"] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.to_string().parse::<Rate>().unwrap(), rate, "{text}");
        }
        assert_eq!("60/min".parse::<Rate>().unwrap().to_string(), "60/min");
        assert!(
            "10/fortnight"
                .parse::<Rate>()
                .unwrap_err()
                .contains("10/min")
        );
    }

    #[test]
    fn a_rate_allows_its_count_at_once_per_caller_and_tool_and_says_when_to_retry() {
        let limiter = RateLimiter::new("3/min".parse().unwrap());
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        for _ in 0..3 {
            limiter.check_here(&alice, "read").unwrap();
        }
        let refused = limiter.check_here(&alice, "read").unwrap_err();
        assert_eq!(refused.code(), codes::RATE_LIMITED);
        let after = refused.retry_after_duration().unwrap();
        assert!(
            after > Duration::ZERO && after <= Duration::from_secs(20),
            "{after:?}"
        );
        assert!(refused.message().contains("3/min"), "{}", refused.message());
        // Another caller, or another tool, has its own allowance.
        limiter.check_here(&bob, "read").unwrap();
        limiter.check_here(&alice, "write").unwrap();
    }

    #[test]
    fn a_concurrency_limit_lets_its_count_run_and_refuses_the_next_at_once() {
        let limit = ConcurrencyLimit::new(2);
        let first = limit.acquire("t").unwrap();
        let _second = limit.acquire("t").unwrap();
        let refused = limit.acquire("t").err().unwrap();
        assert_eq!(refused.code(), codes::OVERLOADED);
        drop(first);
        let _third = limit.acquire("t").unwrap();
        assert!(limit.acquire("t").is_err());
    }

    #[test]
    fn a_limit_per_caller_counts_each_caller_apart_and_forgets_one_with_nothing_running() {
        let limit = PerCallerLimit::new(2);
        let (alice, bob): (Arc<str>, Arc<str>) = (Arc::from("alice"), Arc::from("bob"));
        let first = limit.acquire(&alice).unwrap();
        let _second = limit.acquire(&alice).unwrap();
        let refused = limit.acquire(&alice).err().unwrap();
        assert_eq!(refused.code(), codes::OVERLOADED);
        let bobs = limit.acquire(&bob).unwrap();
        drop(first);
        let _third = limit.acquire(&alice).unwrap();
        drop(bobs);
        assert!(!limit.lock().contains_key("bob"));
    }

    #[test]
    fn state_of_many_callers_is_swept() {
        // One call back every millisecond: a caller's state is back to full, and can go, a few milliseconds after
        // its last call.
        let limiter = RateLimiter::new("1000/s".parse().unwrap());
        for i in 0..(4 * SWEEP_EVERY) {
            let caller: Arc<str> = Arc::from(format!("caller-{i}"));
            limiter.check_here(&caller, "t").unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..SWEEP_EVERY {
            let caller: Arc<str> = Arc::from(format!("late-{i}"));
            limiter.check_here(&caller, "t").unwrap();
        }
        assert!(
            limiter.limiter.len() <= 2 * SWEEP_EVERY,
            "{}",
            limiter.limiter.len()
        );
    }
}
