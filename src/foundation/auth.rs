//! API authentication: argon2id password hashes, the first-start admin
//! password, and a per-process cache so that a user whose password was
//! verified once is checked with a keyed BLAKE2 MAC (microseconds) rather
//! than argon2 (tens of milliseconds) on every request.

use argon2::password_hash::{phc::PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2bMac512;
use rand::distr::Alphanumeric;
use rand::{Rng, RngExt};
use std::collections::HashMap;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// Shortest password accepted for a user.
pub const MIN_PASSWORD_LEN: usize = 8;

/// argon2id memory cost of new hashes, in KiB, and its number of passes:
/// the OWASP cheat sheet's 7 MiB / 5 passes, rated as strong as argon2's
/// default 19 MiB / 2 passes and about as slow, with a third of the memory
/// per check (two checks run at once: the daemon stays under 100 MB while
/// guessers hammer it). Hashes made with other parameters still verify (a
/// PHC string carries its own) and are replaced at the next good login.
pub const ARGON2_M_COST_KIB: u32 = 7168;
pub const ARGON2_T_COST: u32 = 5;

fn hasher() -> Argon2<'static> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, 1, None)
        .unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    hasher()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Whether `hash` was made with other argon2 parameters than new hashes
/// get (it is replaced after the next good login). Unparsable: no.
pub fn needs_rehash(hash: &str) -> bool {
    PasswordHash::new(hash)
        .ok()
        .and_then(|h| Params::try_from(&h).ok())
        .is_some_and(|p| p.m_cost() != ARGON2_M_COST_KIB || p.t_cost() != ARGON2_T_COST)
}

/// A random password of 24 alphanumeric characters.
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// Checks a new password against the policy.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password must be at least {MIN_PASSWORD_LEN} characters long"
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("the password must not contain control characters".to_string());
    }
    Ok(())
}

/// Remembers, per user and stored hash, a keyed MAC of the last password that
/// verified. The key is random per process and never stored; a changed hash
/// (password change) misses the cache by construction.
pub struct VerifiedCache {
    key: [u8; 32],
    entries: Mutex<HashMap<(String, String), [u8; 64]>>,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        VerifiedCache {
            key,
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl VerifiedCache {
    fn mac(&self, password: &str) -> [u8; 64] {
        let mut mac = <Blake2bMac512 as KeyInit>::new_from_slice(&self.key)
            .expect("32-byte key is valid for BLAKE2b");
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether this password was verified before against this very hash.
    pub fn hit(&self, user_id: &str, hash: &str, password: &str) -> bool {
        let tag = self.mac(password);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(user_id.to_string(), hash.to_string()))
            .is_some_and(|known| bool::from(known.ct_eq(&tag)))
    }

    /// Records a successful argon2 verification.
    pub fn remember(&self, user_id: &str, hash: &str, password: &str) {
        let tag = self.mac(password);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(u, _), _| u != user_id);
        entries.insert((user_id.to_string(), hash.to_string()), tag);
    }

    /// Drops what is known of `user_id` (deleted user).
    pub fn forget(&self, user_id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(u, _), _| u != user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn cache_hits_only_same_user_hash_and_password() {
        let c = VerifiedCache::default();
        c.remember("admin", "h1", "pw");
        assert!(c.hit("admin", "h1", "pw"));
        assert!(!c.hit("admin", "h1", "pw2"));
        assert!(!c.hit("admin", "h2", "pw"));
        assert!(!c.hit("other", "h1", "pw"));
        c.forget("admin");
        assert!(!c.hit("admin", "h1", "pw"));
    }

    #[test]
    fn generated_passwords_pass_the_policy() {
        let p = generate_password();
        assert_eq!(p.len(), 24);
        assert!(check_new_password(&p).is_ok());
        assert!(check_new_password("short").is_err());
    }
}
