//! The webhook's response cache: answers for recently seen tokens, and one
//! validator run for identical reviews that arrive together.
//!
//! Keys are an HMAC of token and audiences under a key drawn at start-up, so
//! the cache holds no tokens and its keys mean nothing outside this process.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::validators::Verdict;

type Key = [u8; 32];

/// Default bound of the memory cached answers take.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Cached verdicts with per-outcome TTLs, bounded in count and in bytes.
pub struct ReviewCache {
    key: ring::hmac::Key,
    positive_ttl: Duration,
    negative_ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

/// About how many bytes `verdict` takes in memory: a validator can make its
/// answers large (thousands of groups), so the cache counts them.
fn size_of(verdict: &Verdict) -> usize {
    const STRING: usize = std::mem::size_of::<String>();
    let strings = |list: &[String]| list.iter().map(|s| s.len() + STRING).sum::<usize>();
    std::mem::size_of::<(Key, Verdict, Instant)>() * 2
        + match verdict {
            Verdict::Authenticated { validator, user, audiences } => {
                validator.len()
                    + user.username.len()
                    + user.uid.len()
                    + strings(&user.groups)
                    + user.extra.iter().map(|(k, v)| k.len() + STRING + strings(v)).sum::<usize>()
                    + strings(audiences)
            }
            Verdict::Denied { reason } | Verdict::Transient { reason } | Verdict::Throttled { reason } => reason.len(),
            Verdict::Busy => 0,
        }
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, (Verdict, Instant, usize)>,
    /// Bytes the entries take.
    bytes: usize,
    /// Insertion order, for evicting the oldest when full.
    order: VecDeque<Key>,
    in_flight: HashMap<Key, Arc<OnceCell<Verdict>>>,
}

/// Whether an answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Reused.
    Hit,
    /// Computed now (possibly shared with identical concurrent reviews).
    Miss,
}

impl ReviewCache {
    /// A cache keeping authenticated answers for `positive_ttl` and denials for
    /// `negative_ttl`, at most `max_entries` of them.
    pub fn new(positive_ttl: Duration, negative_ttl: Duration, max_entries: usize) -> Self {
        let rng = ring::rand::SystemRandom::new();
        // Failure to draw randomness is not recoverable in any useful way; a
        // fixed key would only weaken the (already private) cache keys.
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &std::process::id().to_le_bytes()));
        Self { key, positive_ttl, negative_ttl, max_entries, max_bytes: DEFAULT_MAX_BYTES, state: Mutex::default() }
    }

    /// Bound the memory the cached answers take to `bytes`.
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key_of(&self, token: &str, audiences: &[String]) -> Key {
        let mut context = ring::hmac::Context::with_key(&self.key);
        context.update(token.as_bytes());
        for audience in audiences {
            // Length-prefixed, so ["ab"] and ["a", "b"] differ.
            context.update(&(audience.len() as u64).to_le_bytes());
            context.update(audience.as_bytes());
        }
        let mut key = [0; 32];
        key.copy_from_slice(context.sign().as_ref());
        key
    }

    /// Forget everything (after a reload, answers may differ).
    pub fn clear(&self) {
        let mut state = self.state();
        state.entries.clear();
        state.order.clear();
        state.bytes = 0;
    }

    /// Number of cached answers.
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached verdict for the review, or the result of `compute`, run once
    /// for all identical reviews in flight and cached by outcome.
    pub async fn get_or_compute<F, Fut>(&self, token: &str, audiences: &[String], compute: F) -> (Verdict, Source)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Verdict>,
    {
        let key = self.key_of(token, audiences);
        let cell = {
            let mut state = self.state();
            if let Some((verdict, expires, _)) = state.entries.get(&key) {
                if *expires > Instant::now() {
                    return (verdict.clone(), Source::Hit);
                }
                if let Some((_, _, bytes)) = state.entries.remove(&key) {
                    state.bytes -= bytes;
                }
            }
            Arc::clone(state.in_flight.entry(key).or_default())
        };
        let verdict = cell.get_or_init(compute).await.clone();
        let mut state = self.state();
        if state.in_flight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            state.in_flight.remove(&key);
            let ttl = match verdict {
                Verdict::Authenticated { .. } => self.positive_ttl,
                Verdict::Denied { .. } => self.negative_ttl,
                Verdict::Transient { .. } | Verdict::Busy | Verdict::Throttled { .. } => Duration::ZERO,
            };
            if !ttl.is_zero() && self.max_entries > 0 {
                self.insert(&mut state, key, verdict.clone(), ttl);
            }
        }
        (verdict, Source::Miss)
    }

    fn insert(&self, state: &mut State, key: Key, verdict: Verdict, ttl: Duration) {
        let now = Instant::now();
        let bytes = size_of(&verdict);
        if bytes > self.max_bytes {
            return;
        }
        while state.entries.len() >= self.max_entries || state.bytes + bytes > self.max_bytes {
            // Drop the oldest; entries already gone (expired and removed) are skipped.
            match state.order.pop_front() {
                Some(old) => {
                    if let Some((_, _, freed)) = state.entries.remove(&old) {
                        state.bytes -= freed;
                    }
                }
                None => break,
            }
        }
        state.bytes += bytes;
        match state.entries.insert(key, (verdict, now + ttl, bytes)) {
            None => state.order.push_back(key),
            Some((_, _, replaced)) => state.bytes -= replaced,
        }
        // Keep the order queue from growing with keys that are long gone.
        if state.order.len() > self.max_entries.saturating_mul(2) {
            let entries = &state.entries;
            state.order.retain(|k| entries.contains_key(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn denied() -> Verdict {
        Verdict::Denied { reason: "no".into() }
    }

    #[tokio::test]
    async fn answers_are_reused_by_token_and_audiences() {
        let cache = ReviewCache::new(Duration::from_secs(60), Duration::from_secs(60), 10);
        let runs = AtomicUsize::new(0);
        let compute = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            denied()
        };
        assert_eq!(cache.get_or_compute("t", &[], compute).await.1, Source::Miss);
        assert_eq!(cache.get_or_compute("t", &[], compute).await.1, Source::Hit);
        assert_eq!(cache.get_or_compute("t", &["a".into()], compute).await.1, Source::Miss);
        assert_eq!(cache.get_or_compute("u", &[], compute).await.1, Source::Miss);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        cache.clear();
        assert_eq!(cache.get_or_compute("t", &[], compute).await.1, Source::Miss);
    }

    #[tokio::test]
    async fn transient_answers_and_zero_ttls_are_not_kept() {
        let cache = ReviewCache::new(Duration::ZERO, Duration::from_secs(60), 10);
        let transient = || async { Verdict::Transient { reason: "down".into() } };
        cache.get_or_compute("t", &[], transient).await;
        assert!(cache.is_empty());
        let ok =
            || async { Verdict::Authenticated { validator: "v".into(), user: Default::default(), audiences: vec![] } };
        cache.get_or_compute("t", &[], ok).await;
        assert!(cache.is_empty(), "positive TTL 0 means no caching");
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let cache = ReviewCache::new(Duration::from_secs(60), Duration::from_secs(60), 3);
        for i in 0..10 {
            cache.get_or_compute(&format!("t{i}"), &[], || async { denied() }).await;
        }
        assert_eq!(cache.len(), 3);
    }

    #[tokio::test]
    async fn huge_answers_cannot_fill_memory() {
        let cache = ReviewCache::new(Duration::from_secs(60), Duration::from_secs(60), 1000).with_max_bytes(1 << 20);
        let huge = || async {
            let user = crate::webhook::review::UserInfo { groups: vec![String::new(); 100_000], ..Default::default() };
            Verdict::Authenticated { validator: "v".into(), user, audiences: vec![] }
        };
        cache.get_or_compute("big", &[], huge).await;
        assert!(cache.is_empty(), "an answer over the byte bound is not kept");
        for i in 0..1000 {
            cache
                .get_or_compute(&format!("t{i}"), &[], || async { Verdict::Denied { reason: "x".repeat(10_000) } })
                .await;
        }
        assert!(cache.state().bytes <= 1 << 20);
        assert!(cache.len() < 1000 && !cache.is_empty());
    }

    #[tokio::test]
    async fn identical_concurrent_reviews_run_once() {
        let cache = Arc::new(ReviewCache::new(Duration::from_secs(60), Duration::from_secs(60), 10));
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let runs = Arc::clone(&runs);
                tokio::spawn(async move {
                    cache
                        .get_or_compute("same", &[], || async {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            denied()
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().0, denied());
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
