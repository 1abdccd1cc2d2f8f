//! API keys kept in memory, so authenticating a request costs no database round trip.
//!
//! A cached key is only as good as the news of its revocation. Every change to an `api_keys`
//! row notifies `herald_api_keys` from a trigger (in the changing transaction), and each api
//! process listens and forgets that key. The cache is used only while the listener is
//! connected: when it is lost, everything is forgotten and lookups go to the database until it
//! listens again. A lookup that raced a notification is not stored (the generation check), and
//! nothing is kept longer than [`MAX_AGE`] even if all of that failed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use herald_shared::notify::Notice;
use uuid::Uuid;

/// The longest a key is trusted without looking at the database.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Beyond this many keys the cache starts over (a bound on memory, not a policy).
const MAX_ENTRIES: usize = 100_000;

/// A key as authentication needs it, found by the SHA-256 of its secret.
#[derive(Debug)]
pub struct StoredKey {
    pub id: Uuid,
    pub project_id: Uuid,
    pub key_hash: Vec<u8>,
    pub environment: herald_shared::domain::api_key::Environment,
    pub scopes: Vec<String>,
    pub platforms: Option<Vec<String>>,
    pub accounts: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub requests_per_minute: i32,
    pub requests_per_day: i32,
    pub allowed_ips: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A cached key and when this process last recorded its use.
#[derive(Debug)]
pub struct KnownKey {
    pub stored: StoredKey,
    /// Unix seconds of the last `api_key_usage` write, so concurrent requests write it once.
    last_recorded: AtomicI64,
}

impl KnownKey {
    pub fn new(stored: StoredKey) -> Self {
        let last = stored.last_used_at.map_or(0, |at| at.timestamp());
        Self { stored, last_recorded: AtomicI64::new(last) }
    }

    /// True for the one caller that should record a use now: at most once a minute per key and
    /// process.
    pub fn claim_usage_write(&self, now: DateTime<Utc>) -> bool {
        let now = now.timestamp();
        let last = self.last_recorded.load(Ordering::Relaxed);
        now - last >= 60 && self.last_recorded.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

/// Keys by the SHA-256 of their secret, with when each was read from the database.
type Entries = HashMap<Vec<u8>, (Arc<KnownKey>, Instant)>;

#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<Entries>,
    /// Bumped by every invalidation; a lookup stores its result only if none happened since it
    /// started.
    generation: AtomicU64,
    listening: AtomicBool,
}

impl KeyCache {
    /// The key whose secret hashes to `digest`, if cached and fresh.
    pub fn get(&self, digest: &[u8]) -> Option<Arc<KnownKey>> {
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (key, stored_at) = entries.get(digest)?;
        (stored_at.elapsed() < MAX_AGE).then(|| key.clone())
    }

    /// Call before reading a key from the database; pass the result to [`KeyCache::store`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps `key`, unless the cache was invalidated since `generation` or is not listening.
    pub fn store(&self, digest: Vec<u8>, key: Arc<KnownKey>, generation: u64) {
        if !self.listening.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Checked under the lock that invalidation also takes, so none can slip in between.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(digest, (key, Instant::now()));
    }

    /// What the `herald_api_keys` listener heard.
    pub fn on_notice(&self, notice: Notice<'_>) {
        match notice {
            Notice::Message { payload, .. } => match payload.parse::<Uuid>() {
                Ok(id) => self.invalidate(|key| key.stored.id == id),
                Err(_) => self.invalidate(|_| true),
            },
            Notice::Listening => {
                self.invalidate(|_| true);
                self.listening.store(true, Ordering::Release);
            }
            Notice::Lost => {
                self.listening.store(false, Ordering::Release);
                self.invalidate(|_| true);
            }
        }
    }

    fn invalidate(&self, doomed: impl Fn(&KnownKey) -> bool) {
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, (key, _)| !doomed(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: Uuid) -> Arc<KnownKey> {
        Arc::new(KnownKey::new(StoredKey {
            id,
            project_id: Uuid::nil(),
            key_hash: vec![1],
            environment: herald_shared::domain::api_key::Environment::Live,
            scopes: vec![],
            platforms: None,
            accounts: None,
            expires_at: None,
            revoked_at: None,
            requests_per_minute: 60,
            requests_per_day: 10_000,
            allowed_ips: vec![],
            allowed_origins: vec![],
            last_used_at: None,
        }))
    }

    #[test]
    fn nothing_is_cached_or_served_while_not_listening() {
        let cache = KeyCache::default();
        cache.store(vec![1], key(Uuid::new_v4()), cache.generation());
        assert!(cache.get(&[1]).is_none());
    }

    #[test]
    fn a_notification_forgets_the_key_and_a_lookup_that_raced_it_is_not_stored() {
        let cache = KeyCache::default();
        cache.on_notice(Notice::Listening);
        let (id, other) = (Uuid::new_v4(), Uuid::new_v4());
        cache.store(vec![1], key(id), cache.generation());
        cache.store(vec![2], key(other), cache.generation());
        assert!(cache.get(&[1]).is_some());

        let before = cache.generation();
        let payload = id.to_string();
        cache.on_notice(Notice::Message { channel: "herald_api_keys", payload: &payload });
        assert!(cache.get(&[1]).is_none(), "the changed key is forgotten");
        assert!(cache.get(&[2]).is_some(), "the others stay");
        cache.store(vec![1], key(id), before);
        assert!(cache.get(&[1]).is_none(), "a read from before the change is not kept");
    }

    #[test]
    fn losing_the_listener_forgets_everything() {
        let cache = KeyCache::default();
        cache.on_notice(Notice::Listening);
        cache.store(vec![1], key(Uuid::new_v4()), cache.generation());
        cache.on_notice(Notice::Lost);
        cache.on_notice(Notice::Listening);
        assert!(cache.get(&[1]).is_none());
    }

    #[test]
    fn one_caller_a_minute_records_a_use() {
        let known = key(Uuid::new_v4());
        let now = Utc::now();
        assert!(known.claim_usage_write(now));
        assert!(!known.claim_usage_write(now));
        assert!(known.claim_usage_write(now + chrono::Duration::seconds(61)));
    }
}
