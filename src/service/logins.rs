//! Who may call the action API: a user's password is checked with argon2id
//! once, then against the verified-password cache (a keyed MAC, so a
//! password change misses it).
//!
//! Guessing is made slow and cheap to refuse:
//! - at most [`VERIFY_SLOTS`] argon2 runs at once and [`VERIFY_QUEUE`]
//!   waiting; past that a check is refused at once ([`Verdict::Busy`],
//!   ret_code 1300 "busy, retry"), so queued guesses hold nothing;
//! - after [`FREE_FAILURES`] failures in a row, a peer (the connecting
//!   process's uid) waits before its next argon2 check, twice as long each
//!   time from 1 s up to [`PEER_BACKOFF_CAP`]; a user name that keeps
//!   failing does the same (up to [`USER_BACKOFF_CAP`], and only for peers
//!   that have failed themselves, so a guesser never locks the real user
//!   out); a request during a backoff is refused at once with the time to
//!   wait. A success resets both. A password verified before (the cache)
//!   is never held back;
//! - an unknown user costs one argon2 run against a dummy hash, as a known
//!   one does, so timing does not tell which names exist;
//! - argon2's 19 MiB buffers are given back to the kernel after a burst.

use crate::foundation::auth::{self, VerifiedCache};
use crate::foundation::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// argon2 verifications running at once.
pub const VERIFY_SLOTS: usize = 2;
/// Verifications that may wait for a slot; more are refused at once.
pub const VERIFY_QUEUE: usize = 8;
/// Failures in a row (per peer, per user) before backoff starts.
pub const FREE_FAILURES: u32 = 3;
/// The longest wait a peer that keeps failing is given.
pub const PEER_BACKOFF_CAP: Duration = Duration::from_secs(60);
/// The longest wait a user name that keeps failing is given.
pub const USER_BACKOFF_CAP: Duration = Duration::from_secs(8);
/// Failure records kept (peers and user names each); the stalest go first.
const TRACKED: usize = 4096;
/// Characters of a user name kept in a failure record or a log line (a
/// request may send a megabyte of USER_ID).
const NAME_KEPT: usize = 64;

/// `user_id` as recorded and logged: at most [`NAME_KEPT`] characters.
fn short(user_id: &str) -> String {
    user_id.chars().take(NAME_KEPT).collect()
}

/// Who is asking: the connecting process (SO_PEERCRED).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

impl Peer {
    fn key(&self) -> u32 {
        self.uid.unwrap_or(u32::MAX)
    }
}

/// The outcome of a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Unknown user or wrong password (which is not said).
    Wrong,
    /// Not checked: retry after the time given; the text says why.
    Busy {
        retry_after: Duration,
        why: String,
    },
}

/// Consecutive failures and when the next check may run.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    until: Instant,
    last: Instant,
}

#[derive(Default)]
struct Backoff {
    peers: HashMap<u32, Failures>,
    users: HashMap<String, Failures>,
}

fn delay(count: u32, base: Duration, cap: Duration) -> Duration {
    if count < FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (count - FREE_FAILURES).min(16);
    base.saturating_mul(1 << exp).min(cap)
}

fn bump<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Failures>,
    key: &K,
    now: Instant,
    base: Duration,
    cap: Duration,
) -> Failures {
    if map.len() >= TRACKED && !map.contains_key(key) {
        // The stalest record goes (its owner starts over).
        if let Some(stale) = map
            .iter()
            .min_by_key(|(_, f)| f.last)
            .map(|(k, _)| k.clone())
        {
            map.remove(&stale);
        }
    }
    let f = map.entry(key.clone()).or_insert(Failures {
        count: 0,
        until: now,
        last: now,
    });
    f.count = f.count.saturating_add(1);
    f.last = now;
    f.until = now + delay(f.count, base, cap);
    *f
}

/// The login checker.
pub struct Logins {
    store: Store,
    cache: VerifiedCache,
    verify_slots: Semaphore,
    waiting: AtomicUsize,
    backoff: Mutex<Backoff>,
    /// argon2 verifications run so far.
    runs: std::sync::atomic::AtomicU64,
}

/// An argon2id hash of a random password with the default parameters:
/// what an unknown user's password is checked against.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        auth::hash_password(&auth::generate_password())
            .unwrap_or_else(|_| "$argon2id$v=19$m=7168,t=5,p=1$c2FsdHNhbHRzYWx0$MzJieXRlc29mb3V0cHV0MzJieXRlc29mb3V0cA".into())
    })
}

impl Logins {
    pub fn new(store: Store) -> Logins {
        Logins {
            store,
            cache: VerifiedCache::default(),
            verify_slots: Semaphore::new(VERIFY_SLOTS),
            waiting: AtomicUsize::new(0),
            backoff: Mutex::new(Backoff::default()),
            runs: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `user_id` exists and `password` is theirs, asked by `peer`.
    pub async fn verify(
        &self,
        user_id: &str,
        password: &str,
        peer: Peer,
    ) -> Result<Verdict, StoreError> {
        let user = self.store.get_user(user_id).await?;
        if let Some(u) = &user {
            if self.cache.hit(user_id, &u.password_hash, password) {
                return Ok(Verdict::Ok);
            }
        }
        if let Some(busy) = self.held_back(user_id, peer) {
            tracing::warn!(user = ?short(user_id), peer_uid = ?peer.uid, peer_pid = ?peer.pid, "login refused: {}", busy_text(&busy));
            return Ok(busy);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= VERIFY_QUEUE {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Ok(Verdict::Busy {
                retry_after: Duration::from_secs(1),
                why: format!(
                    "{VERIFY_SLOTS} password checks are running and {VERIFY_QUEUE} waiting"
                ),
            });
        }
        let slot = self.verify_slots.acquire().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let _slot = slot.map_err(|_| StoreError::Invalid("the daemon is stopping".into()))?;
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| dummy_hash().to_string());
        let pw = password.to_string();
        self.runs.fetch_add(1, Ordering::Relaxed);
        let matched = tokio::task::spawn_blocking(move || auth::verify_password(&pw, &hash))
            .await
            .unwrap_or(false);
        let ok = matched && user.is_some();
        if self.verify_slots.available_permits() == VERIFY_SLOTS - 1
            && self.waiting.load(Ordering::Acquire) == 0
        {
            // The last check of a burst: argon2's buffers go back now.
            tokio::task::spawn_blocking(release_free_memory);
        }
        if ok {
            if let Some(u) = &user {
                let hash = self.upgrade_hash(user_id, &u.password_hash, password).await;
                self.cache.remember(user_id, &hash, password);
            }
            let mut b = self.backoff();
            b.peers.remove(&peer.key());
            b.users.remove(&short(user_id));
            return Ok(Verdict::Ok);
        }
        let now = Instant::now();
        let (p, u) = {
            let mut b = self.backoff();
            let p = bump(
                &mut b.peers,
                &peer.key(),
                now,
                Duration::from_secs(1),
                PEER_BACKOFF_CAP,
            );
            let u = bump(
                &mut b.users,
                &short(user_id),
                now,
                Duration::from_millis(500),
                USER_BACKOFF_CAP,
            );
            (p, u)
        };
        tracing::warn!(
            user = ?short(user_id),
            peer_uid = ?peer.uid,
            peer_pid = ?peer.pid,
            peer_failures = p.count,
            user_failures = u.count,
            "login failed: unknown user or wrong password"
        );
        Ok(Verdict::Wrong)
    }

    /// A refusal when `peer`, or `user_id` for a peer that failed too, is
    /// in its backoff.
    fn held_back(&self, user_id: &str, peer: Peer) -> Option<Verdict> {
        let now = Instant::now();
        let b = self.backoff();
        let peer_failed = b.peers.get(&peer.key());
        if let Some(f) = peer_failed.filter(|f| f.until > now) {
            return Some(Verdict::Busy {
                retry_after: f.until - now,
                why: format!(
                    "{} failed logins in a row from uid {}",
                    f.count,
                    peer.uid.map(|u| u.to_string()).unwrap_or("?".into())
                ),
            });
        }
        if peer_failed.is_some() {
            if let Some(f) = b.users.get(&short(user_id)).filter(|f| f.until > now) {
                return Some(Verdict::Busy {
                    retry_after: f.until - now,
                    why: format!(
                        "{} failed logins in a row for user {:?}",
                        f.count,
                        short(user_id)
                    ),
                });
            }
        }
        None
    }

    /// How many argon2 verifications have run.
    pub fn argon2_runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// After a good login with a hash of older argon2 parameters: stores a
    /// new one (see [`auth::ARGON2_M_COST_KIB`]) and returns the hash in force.
    async fn upgrade_hash(&self, user_id: &str, hash: &str, password: &str) -> String {
        if !auth::needs_rehash(hash) {
            return hash.to_string();
        }
        let pw = password.to_string();
        let new = match tokio::task::spawn_blocking(move || auth::hash_password(&pw)).await {
            Ok(Ok(h)) => h,
            _ => return hash.to_string(),
        };
        match self.store.set_user_password(user_id, new.clone()).await {
            Ok(()) => {
                tracing::info!(user = %user_id, "password hash moved to the current argon2 parameters");
                new
            }
            Err(e) => {
                tracing::warn!(user = %user_id, "cannot store the upgraded password hash: {e}");
                hash.to_string()
            }
        }
    }

    /// Drops what the cache knows of `user_id` (password changed, user
    /// deleted).
    pub fn forget(&self, user_id: &str) {
        self.cache.forget(user_id);
    }
}

fn busy_text(v: &Verdict) -> String {
    match v {
        Verdict::Busy { retry_after, why } => {
            format!("{why}; retry in {} s", retry_after.as_secs().max(1))
        }
        _ => String::new(),
    }
}

/// Returns free heap pages to the kernel.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases unused memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn logins() -> (Logins, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store
            .insert_user("admin", auth::hash_password("right password").unwrap())
            .await
            .unwrap();
        (Logins::new(store), dir)
    }

    const GUESSER: Peer = Peer {
        uid: Some(1000),
        pid: Some(4242),
    };
    const ADMIN: Peer = Peer {
        uid: Some(0),
        pid: Some(1),
    };

    #[tokio::test]
    async fn a_guesser_is_slowed_and_the_real_user_is_not() {
        let (l, _dir) = logins().await;
        for _ in 0..FREE_FAILURES {
            assert_eq!(
                l.verify("admin", "guess", GUESSER).await.unwrap(),
                Verdict::Wrong
            );
        }
        // Past the free failures, the guesser waits (refused at once, no argon2).
        let runs = l.argon2_runs();
        match l.verify("admin", "guess", GUESSER).await.unwrap() {
            Verdict::Busy { retry_after, why } => {
                assert!(retry_after > Duration::ZERO && retry_after <= PEER_BACKOFF_CAP);
                assert!(why.contains("uid 1000"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.argon2_runs(), runs, "refused without an argon2 run");
        // The real admin, from another uid, is not held back, even the
        // first time (no cache).
        assert_eq!(
            l.verify("admin", "right password", ADMIN).await.unwrap(),
            Verdict::Ok
        );
        // Cached: never held back, whoever asks.
        assert_eq!(
            l.verify("admin", "right password", GUESSER).await.unwrap(),
            Verdict::Ok
        );
    }

    #[tokio::test]
    async fn unknown_users_are_checked_like_known_ones() {
        let (l, _dir) = logins().await;
        let known = Peer {
            uid: Some(1),
            pid: None,
        };
        let unknown = Peer {
            uid: Some(2),
            pid: None,
        };
        assert_eq!(
            l.verify("admin", "wrong", known).await.unwrap(),
            Verdict::Wrong
        );
        assert_eq!(l.argon2_runs(), 1);
        // The same work (one argon2 run with the same parameters) for a
        // name that does not exist.
        assert_eq!(
            l.verify("nobody", "wrong", unknown).await.unwrap(),
            Verdict::Wrong
        );
        assert_eq!(l.argon2_runs(), 2);
        assert_eq!(
            auth::hash_password("x").unwrap().split('$').nth(3),
            dummy_hash().split('$').nth(3),
            "same argon2 parameters"
        );
    }

    #[tokio::test]
    async fn a_hash_of_older_parameters_is_replaced_at_the_next_good_login() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        // As rackboot hashed before: argon2's defaults (19 MiB, 2 passes).
        use argon2::password_hash::PasswordHasher;
        let old = argon2::Argon2::default()
            .hash_password(b"right password")
            .unwrap()
            .to_string();
        assert!(old.contains("m=19456,t=2"), "{old}");
        assert!(auth::needs_rehash(&old));
        store.insert_user("admin", old.clone()).await.unwrap();
        let l = Logins::new(store.clone());
        // A wrong password changes nothing.
        assert_eq!(
            l.verify("admin", "wrong", ADMIN).await.unwrap(),
            Verdict::Wrong
        );
        assert_eq!(
            store
                .get_user("admin")
                .await
                .unwrap()
                .unwrap()
                .password_hash,
            old
        );
        assert_eq!(
            l.verify("admin", "right password", ADMIN).await.unwrap(),
            Verdict::Ok
        );
        let new = store
            .get_user("admin")
            .await
            .unwrap()
            .unwrap()
            .password_hash;
        assert!(new.contains("m=7168,t=5,p=1"), "{new}");
        assert!(!auth::needs_rehash(&new));
        // The new hash holds the same password, for a fresh daemon too.
        let fresh = Logins::new(store.clone());
        assert_eq!(
            fresh
                .verify("admin", "right password", ADMIN)
                .await
                .unwrap(),
            Verdict::Ok
        );
        assert_eq!(
            fresh.verify("admin", "wrong", ADMIN).await.unwrap(),
            Verdict::Wrong
        );
    }

    #[tokio::test]
    async fn excess_checks_are_refused_at_once() {
        let (l, _dir) = logins().await;
        let l = std::sync::Arc::new(l);
        // Many concurrent first-time checks from distinct peers: at most
        // the slots plus the queue run; the rest are told to retry.
        let tasks: Vec<_> = (0..40u32)
            .map(|i| {
                let l = l.clone();
                tokio::spawn(async move {
                    l.verify(
                        "admin",
                        "wrong",
                        Peer {
                            uid: Some(5000 + i),
                            pid: None,
                        },
                    )
                    .await
                    .unwrap()
                })
            })
            .collect();
        let mut busy = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Verdict::Busy { .. }) {
                busy += 1;
            }
        }
        assert!(busy > 0, "no check was refused");
        assert!(l.argon2_runs() as usize + busy == 40);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let base = Duration::from_secs(1);
        let cap = PEER_BACKOFF_CAP;
        assert_eq!(delay(FREE_FAILURES - 1, base, cap), Duration::ZERO);
        assert_eq!(delay(FREE_FAILURES, base, cap), base);
        assert_eq!(delay(FREE_FAILURES + 2, base, cap), base * 4);
        assert_eq!(delay(FREE_FAILURES + 40, base, cap), cap);
    }
}
