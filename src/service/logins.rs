//! Who may call the action API: a user's password is checked with argon2id
//! once, then against the verified-password cache (a keyed MAC, so a
//! password change misses it); at most [`VERIFY_SLOTS`] argon2 runs at
//! once, so a flood of wrong passwords costs at most that many cores.

use crate::foundation::auth::{self, VerifiedCache};
use crate::foundation::store::{Store, StoreError};
use tokio::sync::Semaphore;

/// argon2 verifications running at once.
pub const VERIFY_SLOTS: usize = 2;

/// The login checker.
pub struct Logins {
    store: Store,
    cache: VerifiedCache,
    verify_slots: Semaphore,
}

impl Logins {
    pub fn new(store: Store) -> Logins {
        Logins {
            store,
            cache: VerifiedCache::default(),
            verify_slots: Semaphore::new(VERIFY_SLOTS),
        }
    }

    /// Whether `user_id` exists and `password` is theirs.
    pub async fn verify(&self, user_id: &str, password: &str) -> Result<bool, StoreError> {
        let Some(user) = self.store.get_user(user_id).await? else {
            return Ok(false);
        };
        if self.cache.hit(user_id, &user.password_hash, password) {
            return Ok(true);
        }
        let _slot = self
            .verify_slots
            .acquire()
            .await
            .map_err(|_| StoreError::Invalid("the daemon is stopping".into()))?;
        let hash = user.password_hash.clone();
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&pw, &hash))
            .await
            .unwrap_or(false);
        if ok {
            self.cache.remember(user_id, &user.password_hash, password);
        }
        Ok(ok)
    }

    /// Drops what the cache knows of `user_id` (password changed, user
    /// deleted).
    pub fn forget(&self, user_id: &str) {
        self.cache.forget(user_id);
    }
}
