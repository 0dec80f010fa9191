//! An in-memory cache of API keys for the SQLite store: the authentication lookup by token
//! hash, and each merchant's key list. It makes an authenticated request read no key row, while
//! every change to a key is still seen by the very next request, in this daemon and in any
//! other daemon or CLI process that shares the same SQLite file.
//!
//! How: the cache is valid for one *generation*. Every committed change to a key or to a
//! merchant's state moves the generation, both in memory and in a small file beside the
//! database (`<database>-hooksign-keys`), which every process sharing that database reads with
//! one `pread` per lookup. A generation that moved empties the cache. An entry read from the
//! database is kept only if the generation did not move while it was being read, so a change
//! that commits during the read is never hidden. Entries also expire after `max_age`, which
//! bounds how long a change made behind hooksign's back (raw SQL) can go unseen. Their age is
//! measured on the daemon's [`Clock`] (so tests can age them without sleeping); an entry that
//! seems read in the future, the clock having been set back, counts as expired.
//!
//! PostgreSQL daemons can run on different machines, where a shared file is no signal, so the
//! PostgreSQL store does not use this cache: it reads the key on every request.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ApiKeyRecord, AuthRecord};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::ids::MerchantId;
use crate::keys::Mode;

/// Entries kept per map at most; past that the map is emptied (it refills from use).
const MAX_ENTRIES: usize = 10_000;

/// The generation a lookup saw: in-process changes and the shared file's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Generation {
    local: u64,
    shared: u64,
}

/// What a miss hands back: the generation to tag the database read with.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Ticket(Option<Generation>);

/// Cached values with the time each was read, at most [`MAX_ENTRIES`].
struct Entries<K, V>(HashMap<K, (Timestamp, V)>);

impl<K: std::hash::Hash + Eq, V: Clone> Entries<K, V> {
    fn fresh<Q>(&self, key: &Q, max_age: Duration, now: Timestamp) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let (at, value) = self.0.get(key)?;
        let age = (now - *at).to_std().ok()?;
        (age < max_age).then(|| value.clone())
    }

    fn insert(&mut self, key: K, value: V, now: Timestamp) {
        if self.0.len() >= MAX_ENTRIES {
            self.0.clear();
        }
        self.0.insert(key, (now, value));
    }
}

impl<K, V> Default for Entries<K, V> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

#[derive(Default)]
struct State {
    generation: Option<Generation>,
    by_hash: Entries<String, AuthRecord>,
    lists: Entries<(MerchantId, Mode), Vec<ApiKeyRecord>>,
}

impl State {
    /// Forgets every entry; they were read at `generation` (`None`: unknown).
    fn reset(&mut self, generation: Option<Generation>) {
        self.by_hash.0.clear();
        self.lists.0.clear();
        self.generation = generation;
    }
}

/// See the module documentation.
pub struct KeyCache {
    max_age: Option<Duration>,
    clock: Arc<dyn Clock>,
    shared: Option<File>,
    local: AtomicU64,
    state: Mutex<State>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("max_age", &self.max_age)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    /// A cache that never holds anything: every lookup reads the database.
    pub fn disabled() -> Self {
        Self {
            max_age: None,
            clock: Arc::new(SystemClock),
            shared: None,
            local: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    /// A cache whose entries live at most `max_age` on `clock` (zero disables it). With
    /// `database`, the generation is shared through a file beside that database file; without
    /// (an in-memory database), it is this process's own.
    pub fn new(
        max_age: Duration,
        database: Option<&Path>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        if max_age.is_zero() {
            return Ok(Self::disabled());
        }
        let shared = match database {
            Some(path) => Some(open_generation_file(&generation_file(path))?),
            None => None,
        };
        Ok(Self {
            max_age: Some(max_age),
            clock,
            shared,
            local: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        })
    }

    fn current(&self) -> Option<Generation> {
        self.max_age?;
        let shared = self.shared.as_ref().map_or(0, |file| {
            let mut bytes = [0u8; 8];
            match file.read_at(&mut bytes, 0) {
                Ok(8) => u64::from_le_bytes(bytes),
                // Never written yet.
                Ok(_) => 0,
                // Unreadable: a fresh value each time, so nothing cached is ever served.
                Err(_) => rand::random(),
            }
        });
        Some(Generation {
            local: self.local.load(Ordering::SeqCst),
            shared,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks a value up at the current generation (emptying the cache when the generation
    /// moved), or hands back the ticket to cache a database read with.
    fn lookup<V>(
        &self,
        get: impl FnOnce(&State, Duration, Timestamp) -> Option<V>,
    ) -> Result<V, Ticket> {
        let (Some(generation), Some(max_age)) = (self.current(), self.max_age) else {
            return Err(Ticket(None));
        };
        let mut state = self.lock();
        if state.generation != Some(generation) {
            state.reset(Some(generation));
        }
        get(&state, max_age, self.clock.now()).ok_or(Ticket(Some(generation)))
    }

    /// The cached authentication record of a token hash, or the ticket to cache a read with.
    pub fn find(&self, token_hash: &str) -> Result<AuthRecord, Ticket> {
        self.lookup(|state, max_age, now| state.by_hash.fresh(token_hash, max_age, now))
    }

    /// Keeps a record read from the database after a [`KeyCache::find`] miss, unless a change
    /// happened since the miss.
    pub fn keep(&self, ticket: Ticket, token_hash: &str, record: &AuthRecord) {
        if let Some(mut state) = self.unchanged_since(ticket) {
            let now = self.clock.now();
            state
                .by_hash
                .insert(token_hash.to_owned(), record.clone(), now);
        }
    }

    /// The cached key list of a merchant and mode, or the ticket to cache a read with.
    pub fn list(&self, merchant: MerchantId, mode: Mode) -> Result<Vec<ApiKeyRecord>, Ticket> {
        self.lookup(|state, max_age, now| state.lists.fresh(&(merchant, mode), max_age, now))
    }

    /// Keeps a list read from the database after a [`KeyCache::list`] miss, unless a change
    /// happened since the miss.
    pub fn keep_list(
        &self,
        ticket: Ticket,
        merchant: MerchantId,
        mode: Mode,
        keys: &[ApiKeyRecord],
    ) {
        if let Some(mut state) = self.unchanged_since(ticket) {
            let now = self.clock.now();
            state.lists.insert((merchant, mode), keys.to_vec(), now);
        }
    }

    fn unchanged_since(&self, ticket: Ticket) -> Option<std::sync::MutexGuard<'_, State>> {
        let seen = ticket.0?;
        if self.current() != Some(seen) {
            return None;
        }
        let state = self.lock();
        (state.generation == Some(seen)).then_some(state)
    }

    /// Records that keys or merchants changed (call after the change committed): every cache
    /// sharing this database drops what it holds before its next lookup.
    pub fn changed(&self) {
        if self.max_age.is_none() {
            return;
        }
        self.local.fetch_add(1, Ordering::SeqCst);
        if let Some(file) = &self.shared {
            // A fresh random value rather than an increment: no read-modify-write race
            // between processes can make two changes leave the same value behind.
            let value: u64 = rand::random::<u64>() | 1;
            if let Err(err) = file.write_at(&value.to_le_bytes(), 0) {
                tracing::error!(error = %err, "cannot publish an API key change to other processes");
            }
        }
        self.lock().reset(None);
    }
}

/// The generation file of a SQLite database file.
pub fn generation_file(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-hooksign-keys");
    PathBuf::from(name)
}

/// Opens (or creates) the generation file, private to its owner like the database beside it;
/// one an older version left readable by others is narrowed.
fn open_generation_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        let file = options.open(path)?;
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ApiKeyId;
    use crate::keys::ScopeSet;
    use crate::store::KeyKind;

    fn record(active: bool) -> AuthRecord {
        AuthRecord {
            key: ApiKeyRecord {
                id: ApiKeyId::new(),
                merchant_id: Some(MerchantId::new()),
                kind: KeyKind::Merchant(Mode::Live),
                name: "k".into(),
                display_prefix: "hk_live_abcd".into(),
                scopes: ScopeSet::all(),
                active,
                revoked_at: None,
                expires_at: None,
                last_used_at: None,
                created_at: chrono::Utc::now(),
            },
            merchant_disabled: false,
        }
    }

    #[test]
    fn a_hit_needs_a_keep_and_a_change_drops_it() {
        let cache = KeyCache::new(Duration::from_secs(60), None, system()).unwrap();
        let ticket = cache.find("h").unwrap_err();
        cache.keep(ticket, "h", &record(true));
        assert!(cache.find("h").unwrap().key.active);
        cache.changed();
        assert!(cache.find("h").is_err());
    }

    #[test]
    fn a_read_overtaken_by_a_change_is_not_kept() {
        let cache = KeyCache::new(Duration::from_secs(60), None, system()).unwrap();
        let ticket = cache.find("h").unwrap_err();
        // The key is revoked while the (now stale) row is being read.
        cache.changed();
        cache.keep(ticket, "h", &record(true));
        assert!(cache.find("h").is_err(), "the stale read was not cached");
    }

    #[test]
    fn a_change_in_another_process_is_seen_through_the_shared_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hooksign.db");
        let here = KeyCache::new(Duration::from_secs(60), Some(&db), system()).unwrap();
        let there = KeyCache::new(Duration::from_secs(60), Some(&db), system()).unwrap();
        let merchant = MerchantId::new();
        let ticket = here.list(merchant, Mode::Test).unwrap_err();
        here.keep_list(ticket, merchant, Mode::Test, &[record(true).key]);
        assert_eq!(here.list(merchant, Mode::Test).unwrap().len(), 1);
        there.changed();
        assert!(here.list(merchant, Mode::Test).is_err());
        assert!(generation_file(&db).exists());
    }

    fn system() -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }

    #[test]
    fn entries_expire_and_a_zero_age_disables_the_cache() {
        let clock = crate::clock::ManualClock::new(chrono::Utc::now());
        let cache = KeyCache::new(Duration::from_secs(20), None, Arc::new(clock.clone())).unwrap();
        let ticket = cache.find("h").unwrap_err();
        cache.keep(ticket, "h", &record(true));
        clock.advance(chrono::Duration::milliseconds(19_999));
        assert!(cache.find("h").is_ok(), "fresh until its age is up");
        clock.advance(chrono::Duration::milliseconds(1));
        assert!(cache.find("h").is_err(), "expired at max_age");

        let ticket = cache.find("h").unwrap_err();
        cache.keep(ticket, "h", &record(true));
        clock.advance(chrono::Duration::seconds(-1));
        assert!(
            cache.find("h").is_err(),
            "read in the future: the clock was set back"
        );

        let off = KeyCache::new(Duration::ZERO, None, system()).unwrap();
        let ticket = off.find("h").unwrap_err();
        off.keep(ticket, "h", &record(true));
        assert!(off.find("h").is_err());
    }
}
